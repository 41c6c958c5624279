/* rollover.h - the models the daemon serves, reference-counted, and switching between them.
 *
 * DESIGN: a clmr_served_t bundles a loaded model, its facts and its similarity index. The server
 * keeps two references: `active` (tagging and ingest: what new work uses) and `search` (the model
 * whose embeddings the similarity index holds; query embeddings are computed with it). Each
 * request takes a reference to both at its start and drops them at its end, so a request sees one
 * consistent pair however many switches happen meanwhile, and a model is freed only when the last
 * request using it is gone. Workers rebuild their inference context lazily (workers.h's model
 * source). Activating a model makes it `active` at once; a background thread then embeds every
 * catalogued track the new model has no embedding for (decoding the pool FLAC), builds its index
 * and only then makes it `search`, so similarity search never mixes two models' embeddings.
 */
#ifndef CLMR_HTTP_ROLLOVER_H
#define CLMR_HTTP_ROLLOVER_H

#include "http/analysis.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>

typedef struct clmr_server clmr_server_t;
typedef struct clmr_index clmr_index_t;

typedef struct clmr_served {
    clmr_model_t *model;
    clmr_http_model_info_t info;
    _Atomic(clmr_index_t *) index; /* NULL until the model's embeddings are complete */
    atomic_int refs;
} clmr_served_t;

/* Loads the start-up model (cfg->model) as active; the index is built by
 * clmr__rollover_open_index once the store is open. */
int clmr__rollover_open(clmr_server_t *s, char **errmsg);
int clmr__rollover_open_index(clmr_server_t *s, char **errmsg);
/* Start-up only (no request is served yet): serve the model at path (whose content id must be
 * id) instead of the --model file. Returns 0, or -1 (logged) leaving the --model file served. */
int clmr__rollover_boot_replace(clmr_server_t *s, const char *path, const char *id);
/* Stops the re-embedding thread and drops the server's references. */
void clmr__rollover_close(clmr_server_t *s);

/* New references (never NULL after open); release each with clmr__served_release. */
clmr_served_t *clmr__served_active(clmr_server_t *s);
clmr_served_t *clmr__served_search(clmr_server_t *s);
void clmr__served_release(clmr_served_t *m);

/* Makes model id (registered in the store) active and starts re-embedding the catalogue.
 * Activations are serialised: CLMR_EBUSY while another activation is loading its model or a
 * re-embedding runs; CLMR_ENOT_FOUND; model load errors. Activating the active model is a no-op,
 * unless its re-embedding failed (it has no index): then the re-embedding starts again.
 * Thread-safe. */
int clmr__rollover_activate(clmr_server_t *s, const char *id, char **errmsg);

/* A track was deleted from the store: removes it from the served indexes now and, while a new
 * index is being built, again once that index is complete. Thread-safe. */
void clmr__rollover_forget(clmr_server_t *s, const char *track_id);

/* DATA_DIR/rel, or rel itself when absolute (model and pool paths in the store). */
void clmr__data_path(clmr_server_t *s, const char *rel, char *buf, size_t cap);

/* Tests only: when set, called by the re-embedding thread at "before_publish" (the new index is
 * loaded but not yet published); a non-zero return makes that re-embedding fail with it. */
extern int (*clmr__rollover_test_hook)(clmr_server_t *s, const char *stage);

/* {"active","search","reembedding":{"model","state","done","total"}} (new reference). */
json_t *clmr__rollover_state(clmr_server_t *s);

/* workers.h model source callbacks (ud = server). */
void *clmr__rollover_acquire(void *ud, const clmr_model_t **model);
void clmr__rollover_release(void *ud, void *ref);
/* Cold starts: warm inference contexts for served model m handed to every worker before m is
 * served (start-up, activation); see clmr_workers_preload. A failure is logged and left to the
 * workers' lazy build. */
void clmr__rollover_preload(clmr_server_t *s, clmr_served_t *m);

#endif
