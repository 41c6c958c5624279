/* store.h - clmrd's SQLite catalogue: tracks, per-model embeddings and tag scores, the tag-result
 * cache, models and fine-tuning jobs.
 *
 * DESIGN: one SQLite file (DATA_DIR/clmrd.sqlite) in WAL mode with synchronous=FULL, so a write
 * that returned 0 survives a process crash AND a power loss (the WAL is fsync'd at every commit).
 * There is ONE writer connection serialised by a mutex; every write runs in BEGIN IMMEDIATE, so
 * writers queue on the mutex instead of meeting SQLITE_BUSY. Reads run on a small pool of reader
 * connections and never wait for writers (WAL snapshot isolation). Schema changes are numbered SQL
 * files in migrations/ compiled into the binary and applied at open, one transaction each.
 *
 * Conventions for every function below:
 *  - return 0 or a negative clmr_error_t; CLMR_ENOT_FOUND for an unknown id, CLMR_EINVAL for bad
 *    arguments (including a malformed cursor), CLMR_EDB_FULL when the disk / database is full
 *    (SQLITE_FULL: HTTP answers 507), CLMR_EDB for any other SQLite error (errmsg says why),
 *    CLMR_EBUSY where documented;
 *  - `char **errmsg` is optional (may be NULL); on error it receives a malloc'd message (free());
 *  - every function is thread-safe on one clmr_store_t shared by all threads;
 *  - string and array arguments remain owned by the caller and are copied; results written into
 *    caller structs are malloc'd and released with the matching *_clear() function;
 *  - times are Unix milliseconds (int64_t); a created_at of 0 on input means "now";
 *  - float vectors are stored as little-endian float32 BLOBs (x86-64 native order).
 */
#ifndef CLMR_STORE_STORE_H
#define CLMR_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#define CLMR_STORE_ID_MAX 128 /* longest model id accepted (bytes, without the NUL) */

typedef struct clmr_store clmr_store_t;

typedef struct {
    const char *data_dir;       /* required: holds clmrd.sqlite and pool/ (created if missing) */
    const char *db_path;        /* optional override of DATA_DIR/clmrd.sqlite */
    int readers;                /* reader connections (default 4, 1..64) */
    int busy_timeout_ms;        /* SQLite busy_timeout on every connection (default 10000) */
    int64_t journal_size_limit; /* WAL size kept after checkpoints (default 64 MiB) */
    int64_t max_page_count;     /* >0: PRAGMA max_page_count on the writer (tests of SQLITE_FULL) */
    int quick_check;            /* run PRAGMA quick_check at open (default 1) */
    /* Bounds (issue 12): the tag cache keeps at most cache_max_rows rows (0 = no limit, default
     * 100000) no older than cache_max_age_s seconds (0 = no limit, default 30 days), evicting the
     * oldest on every write; new tracks are refused with CLMR_EDB_FULL once the pool files of
     * all tracks would pass pool_max_bytes (0 = no limit, the default here; the daemon passes
     * its max-pool-bytes). */
    int64_t cache_max_rows;
    int64_t cache_max_age_s;
    int64_t pool_max_bytes;
} clmr_store_params_t;

/* Defaults for every field (data_dir NULL: the caller must set it). Thread-safe. */
clmr_store_params_t clmr_store_default_params(void);

/* Opens (creating if needed) the database and pool directory, applies pragmas, runs quick_check,
 * applies pending migrations and opens the reader connections. On success *out owns everything and
 * must be closed with clmr_store_close(). Returns CLMR_EDB on a corrupt database (quick_check
 * failure, message in errmsg), CLMR_EIO when the data directory cannot be created. Not thread-safe
 * with respect to the same *out (call once at start-up). Never fork() while a store is open. */
int clmr_store_open(clmr_store_t **out, const clmr_store_params_t *params, char **errmsg);

/* Closes every connection (a final passive checkpoint first); accepts NULL / *s == NULL and sets
 * *s to NULL. No other thread may use the store during or after the call. */
void clmr_store_close(clmr_store_t **s);

/* Highest migration version applied (1, 2, ...). */
int clmr_store_schema_version(clmr_store_t *s, int *version, char **errmsg);

/* Number of migrations compiled into this binary (the version a fresh database reaches). */
int clmr_store_migration_count(void);

/* DATA_DIR (made absolute at open) and DATA_DIR/pool; static for the life of the store. */
const char *clmr_store_data_dir(const clmr_store_t *s);
const char *clmr_store_pool_dir(const clmr_store_t *s);

/* The schema version, read on a reader connection that must come free within timeout_ms:
 * CLMR_EBUSY otherwise, so a readiness probe never waits behind long readers. */
int clmr_store_ping(clmr_store_t *s, int timeout_ms, int *version, char **errmsg);

/* Runs PRAGMA quick_check on a reader connection: 0 when "ok", CLMR_EDB with the first problem in
 * errmsg otherwise. Used by /readyz and tests. */
int clmr_store_check(clmr_store_t *s, char **errmsg);

/* Runs a PASSIVE WAL checkpoint (never waits for readers). SQLite also checkpoints automatically
 * every ~1000 pages; the daemon may call this periodically (e.g. every minute, from any thread)
 * so that after a long reader (a training job) finishes, the WAL is copied back promptly. Briefly
 * takes the writer mutex. */
int clmr_store_checkpoint(clmr_store_t *s, char **errmsg);

/* --- Explicit write transactions (bulk loads) -------------------------------------------------
 * clmr_store_write_begin() takes the writer mutex and opens BEGIN IMMEDIATE; every write function
 * called by the SAME thread until clmr_store_write_end() joins that transaction (and no other
 * thread can write meanwhile). write_end(s, 1) commits, write_end(s, 0) rolls back. Use it to
 * insert many rows with one fsync. Calls nest (only the outermost end commits). */
int clmr_store_write_begin(clmr_store_t *s, char **errmsg);
int clmr_store_write_end(clmr_store_t *s, int commit, char **errmsg);

/* --- Tracks ----------------------------------------------------------------------------------- */

typedef struct {
    char id[65];       /* sha256 hex (64 lowercase hex chars) of the uploaded bytes */
    char *title;       /* NULL when unknown */
    char *artist;      /* NULL when unknown */
    char *external_id; /* NULL when unknown */
    double duration_s;
    int64_t created_at;
    char *audio_path; /* pool file relative to DATA_DIR ("pool/ab/<id>.flac"), NULL if none kept */
    int64_t audio_bytes; /* size of the pool file (counted against pool_max_bytes) */
} clmr_track_record_t;

/* Frees the strings of *t and zeroes it (accepts NULL). */
void clmr_track_record_clear(clmr_track_record_t *t);

/* Inserts the track if no track has this id; *created (optional) = 1 when inserted, 0 when it was
 * already present (the existing row is left untouched). On insert, t->created_at 0 means now.
 * t->id must be 64 lowercase hex characters (CLMR_EINVAL otherwise). */
int clmr_store_track_put(clmr_store_t *s, const clmr_track_record_t *t, int *created,
                         char **errmsg);

/* Ingest in ONE transaction: clmr_store_track_put() plus the track's embedding and tag scores for
 * model_id (which must exist in models). emb/scores may be NULL (dim/n_scores then ignored). When
 * the track already exists, its metadata is kept, and embedding/scores are upserted. Write the pool
 * file (clmr_pool_write) BEFORE calling this, so a committed row always has its audio. A new track
 * whose audio_bytes would take the pool past pool_max_bytes is refused with CLMR_EDB_FULL (the
 * caller removes the file it wrote). */
int clmr_store_track_ingest(clmr_store_t *s, const clmr_track_record_t *t, const char *model_id,
                            const float *emb, int dim, const float *scores, int n_scores,
                            int *created, char **errmsg);

/* Reads one track into *out (caller clears it). CLMR_ENOT_FOUND when absent. */
int clmr_store_track_get(clmr_store_t *s, const char *id, clmr_track_record_t *out, char **errmsg);

/* One page of tracks in insertion order (oldest first). cursor: NULL or "" for the first page,
 * else a next_cursor returned earlier (opaque; CLMR_EINVAL when malformed). limit 1..1000.
 * On success *items is a malloc'd array of *n tracks (free with clmr_track_list_free) and
 * *next_cursor a malloc'd cursor, or NULL when this is the last page. Pages are stable: inserts
 * and deletes between calls never repeat or skip a track that exists across both calls. */
int clmr_store_track_list(clmr_store_t *s, const char *cursor, int limit,
                          clmr_track_record_t **items, size_t *n, char **next_cursor,
                          char **errmsg);
void clmr_track_list_free(clmr_track_record_t *items, size_t n);

/* Calls cb for every track created strictly after created_after (ms; 0 = all), oldest first, on a
 * reader connection (a consistent snapshot). The track passed to cb is only valid during the
 * call. cb returns 0 to go on, non-zero to stop (that value is returned). cb may call store
 * WRITE functions but should not call store read functions: it would hold a second reader
 * connection, and with every reader held that way threads could wait on each other forever.
 * A long iteration holds one snapshot and delays WAL checkpoints until it ends. */
typedef int (*clmr_store_track_cb)(void *ud, const clmr_track_record_t *t);
int clmr_store_track_foreach(clmr_store_t *s, int64_t created_after, clmr_store_track_cb cb,
                             void *ud, char **errmsg);

/* Deletes the track, its embeddings and tag scores (one transaction) and then its pool file.
 * CLMR_ENOT_FOUND when absent. A pool file that cannot be removed is left for the orphan sweep
 * (clmr_store_pool_sweep) and does not fail the call. */
int clmr_store_track_delete(clmr_store_t *s, const char *id, char **errmsg);

/* Number of catalogued tracks. */
int clmr_store_track_count(clmr_store_t *s, int64_t *count, char **errmsg);

/* --- Embeddings and tag scores per (track, model) ------------------------------------------- */

/* Upsert. CLMR_ENOT_FOUND when the track or model does not exist. dim / n >= 1. */
int clmr_store_embedding_put(clmr_store_t *s, const char *track_id, const char *model_id,
                             const float *v, int dim, char **errmsg);
int clmr_store_scores_put(clmr_store_t *s, const char *track_id, const char *model_id,
                          const float *v, int n, char **errmsg);

/* Reads into a malloc'd array *v (free()) of *n floats. CLMR_ENOT_FOUND when absent. */
int clmr_store_embedding_get(clmr_store_t *s, const char *track_id, const char *model_id, float **v,
                             int *dim, char **errmsg);
int clmr_store_scores_get(clmr_store_t *s, const char *track_id, const char *model_id, float **v,
                          int *n, char **errmsg);

/* Calls cb for every embedding of model_id (one snapshot on a reader connection; order
 * unspecified); track_id and v are valid only during the call. cb returns non-zero to stop.
 * Same callback rules as clmr_store_track_foreach. */
typedef int (*clmr_store_embedding_cb)(void *ud, const char *track_id, const float *v, int dim);
int clmr_store_embedding_foreach(clmr_store_t *s, const char *model_id, clmr_store_embedding_cb cb,
                                 void *ud, char **errmsg);

/* Number of tracks that have an embedding for model_id (re-embedding progress). */
int clmr_store_embedding_count(clmr_store_t *s, const char *model_id, int64_t *count,
                               char **errmsg);

/* --- Tag-result cache for uploads (catalogued or not), keyed by (sha256, model id) ---------- */

typedef struct {
    char sha256[65];
    char model_id[CLMR_STORE_ID_MAX + 1];
    double duration_s;
    int chunks;
    float *scores; /* n_scores floats (overall track scores), malloc'd */
    int n_scores;
    float *embedding; /* dim floats (track embedding), malloc'd; NULL/0 when not stored */
    int dim;
    int64_t created_at;
    char precision[8]; /* "fp32" or "bf16" (what computed it); empty on put = "fp32" */
} clmr_tag_result_t;

void clmr_tag_result_clear(clmr_tag_result_t *r);

/* Upsert of one cached result (model must exist: CLMR_ENOT_FOUND otherwise). */
int clmr_store_cache_put(clmr_store_t *s, const clmr_tag_result_t *r, char **errmsg);

/* CLMR_ENOT_FOUND on a miss (an entry older than cache_max_age_s is a miss); *out filled
 * (caller clears it) on a hit. */
int clmr_store_cache_get(clmr_store_t *s, const char *sha256, const char *model_id,
                         clmr_tag_result_t *out, char **errmsg);

/* --- Models --------------------------------------------------------------------------------- */

typedef enum {
    CLMR_MODEL_CANDIDATE = 0,
    CLMR_MODEL_ACTIVE = 1,
    CLMR_MODEL_RETIRED = 2,
} clmr_model_status_t;

/* "candidate", "active", "retired"; parse returns -1 for an unknown name. */
const char *clmr_model_status_name(clmr_model_status_t st);
int clmr_model_status_parse(const char *name);

typedef struct {
    char id[CLMR_STORE_ID_MAX + 1]; /* caller-chosen, e.g. "base-<sha256 prefix>" or "ft-0003" */
    char *name;
    char *path;      /* safetensors file (absolute, or relative to DATA_DIR) */
    char *parent_id; /* NULL for a root model */
    clmr_model_status_t status;
    char *metadata_json; /* a JSON object (provenance, metrics); NULL on input means "{}" */
    int64_t created_at;
} clmr_store_model_t;

void clmr_store_model_clear(clmr_store_model_t *m);
void clmr_store_model_list_free(clmr_store_model_t *items, size_t n);

/* Inserts a model. CLMR_EBUSY when the id exists; CLMR_EINVAL for invalid JSON metadata or an
 * unknown parent. Inserting with status ACTIVE demotes the current active model to RETIRED in the
 * same transaction (exactly one active model at any time, enforced by a unique index). */
int clmr_store_model_put(clmr_store_t *s, const clmr_store_model_t *m, char **errmsg);

/* Inserts m unless a model with m->id exists (then nothing changes). *created optional. Used at
 * start-up to register the --model file. */
int clmr_store_model_ensure(clmr_store_t *s, const clmr_store_model_t *m, int *created,
                            char **errmsg);

int clmr_store_model_get(clmr_store_t *s, const char *id, clmr_store_model_t *out, char **errmsg);

/* The active model; CLMR_ENOT_FOUND when none is active. */
int clmr_store_model_get_active(clmr_store_t *s, clmr_store_model_t *out, char **errmsg);

/* All models, oldest first (malloc'd array, free with clmr_store_model_list_free). */
int clmr_store_model_list(clmr_store_t *s, clmr_store_model_t **items, size_t *n, char **errmsg);

/* Makes id the active model and the previous active one RETIRED, atomically. */
int clmr_store_model_activate(clmr_store_t *s, const char *id, char **errmsg);

/* Deletes a model row with its embeddings, tag scores and cached results (cascade); the model
 * file itself is the caller's to remove. CLMR_EBUSY for the active model (activate another one
 * first), CLMR_ENOT_FOUND when absent. Jobs and child models keep their rows (their references
 * become NULL). */
int clmr_store_model_delete(clmr_store_t *s, const char *id, char **errmsg);

/* Sets status (CANDIDATE or RETIRED; use activate for ACTIVE) and/or replaces the metadata
 * (metadata_json NULL = unchanged). */
int clmr_store_model_update(clmr_store_t *s, const char *id, clmr_model_status_t status,
                            const char *metadata_json, char **errmsg);

/* --- Fine-tuning jobs ---------------------------------------------------------------------- */

typedef enum {
    CLMR_JOB_QUEUED = 0,
    CLMR_JOB_RUNNING = 1,
    CLMR_JOB_EVALUATING = 2,
    CLMR_JOB_SUCCEEDED = 3,
    CLMR_JOB_FAILED = 4,
    CLMR_JOB_CANCELLED = 5,
} clmr_job_state_t;

/* "queued", "running", ...; parse returns -1 for an unknown name. */
const char *clmr_job_state_name(clmr_job_state_t st);
int clmr_job_state_parse(const char *name);

typedef struct {
    int64_t id;
    clmr_job_state_t state;
    char *base_model_id; /* model being fine-tuned */
    char *params_json;   /* request parameters, a JSON object */
    int64_t step, steps;
    char *losses_json;     /* JSON array of recent loss records ("[]" initially) */
    char *result_model_id; /* NULL until a model is produced */
    char *error;           /* NULL unless failed */
    int64_t created_at, started_at, finished_at, updated_at; /* 0 = not yet */
} clmr_store_job_t;

void clmr_store_job_clear(clmr_store_job_t *j);
void clmr_store_job_list_free(clmr_store_job_t *items, size_t n);

/* Creates a QUEUED job. CLMR_EBUSY when another job is queued, running or evaluating (one job at
 * a time: HTTP 409; the check and insert are one write transaction). *id receives the new id. */
int clmr_store_job_create(clmr_store_t *s, const char *base_model_id, const char *params_json,
                          int64_t steps, int64_t *id, char **errmsg);

int clmr_store_job_get(clmr_store_t *s, int64_t id, clmr_store_job_t *out, char **errmsg);

/* The queued/running/evaluating job, CLMR_ENOT_FOUND when none. */
int clmr_store_job_get_active(clmr_store_t *s, clmr_store_job_t *out, char **errmsg);

/* Newest first, at most limit (1..1000). */
int clmr_store_job_list(clmr_store_t *s, int limit, clmr_store_job_t **items, size_t *n,
                        char **errmsg);

/* Records progress: step and (when not NULL) the losses JSON array. */
int clmr_store_job_progress(clmr_store_t *s, int64_t id, int64_t step, const char *losses_json,
                            char **errmsg);

/* Moves the job to state; error (for FAILED) and result_model_id may be NULL (= unchanged).
 * Sets started_at on RUNNING and finished_at on SUCCEEDED/FAILED/CANCELLED. CLMR_EINVAL when the
 * job is already finished (finished jobs never change state). */
int clmr_store_job_set_state(clmr_store_t *s, int64_t id, clmr_job_state_t state, const char *error,
                             const char *result_model_id, char **errmsg);

/* Deletes a finished job's record. CLMR_EBUSY while it is unfinished, CLMR_ENOT_FOUND when absent.
 */
int clmr_store_job_delete(clmr_store_t *s, int64_t id, char **errmsg);

/* Start-up recovery: every queued/running/evaluating job becomes FAILED with reason (e.g.
 * "interrupted by a restart"). *n (optional) = number of jobs changed. */
int clmr_store_job_fail_unfinished(clmr_store_t *s, const char *reason, int *n, char **errmsg);

/* Rows in the tag cache (tests of the bound). */
int clmr_store_cache_count(clmr_store_t *s, int64_t *count, char **errmsg);

/* Sum of audio_bytes over all tracks (the pool budget's use). */
int clmr_store_pool_bytes(clmr_store_t *s, int64_t *bytes, char **errmsg);

/* --- API keys (issue 12) ---------------------------------------------------------------------
 * A key is "clmr_" + 43 base64url characters (32 random bytes from getrandom). Only its sha256
 * (64 hex digits) is stored; the key itself is returned once, by create. Scopes are ordered: a
 * write key may also read, an admin key may do everything. */

typedef enum { CLMR_KEY_READ = 1, CLMR_KEY_WRITE = 2, CLMR_KEY_ADMIN = 3 } clmr_key_scope_t;

#define CLMR_KEY_TEXT_MAX 64   /* buffer for a key as text, NUL included */
#define CLMR_KEY_PREFIX_LEN 12 /* characters of the key kept to tell keys apart */

/* "read", "write", "admin"; parse returns -1 for anything else. */
const char *clmr_key_scope_name(clmr_key_scope_t scope);
int clmr_key_scope_parse(const char *name);

typedef struct {
    int64_t id;
    char *name;
    clmr_key_scope_t scope;
    char prefix[CLMR_KEY_PREFIX_LEN + 1];
    char hash[65];                  /* sha256 of the key, lowercase hex */
    int64_t created_at, revoked_at; /* revoked_at 0 = in force */
} clmr_store_key_t;

void clmr_store_key_clear(clmr_store_key_t *k);
void clmr_store_key_list_free(clmr_store_key_t *items, size_t n);

/* sha256 of n bytes of key as 64 lowercase hex digits. Thread-safe. */
void clmr_store_key_hash(const char *key, size_t n, char hex[65]);

/* Makes a new key: writes it (NUL-terminated) to key_out and its row to *out (caller clears).
 * name: 1..128 bytes of text. CLMR_EINVAL for a bad name or scope, CLMR_EIO when the system has
 * no randomness to give. */
int clmr_store_key_create(clmr_store_t *s, const char *name, clmr_key_scope_t scope,
                          char key_out[CLMR_KEY_TEXT_MAX], clmr_store_key_t *out, char **errmsg);

/* Keys oldest first; revoked ones only when include_revoked. */
int clmr_store_key_list(clmr_store_t *s, int include_revoked, clmr_store_key_t **items, size_t *n,
                        char **errmsg);

/* Revokes key id (revoking a revoked key changes nothing); *out (optional) receives the row.
 * CLMR_ENOT_FOUND when absent. */
int clmr_store_key_revoke(clmr_store_t *s, int64_t id, clmr_store_key_t *out, char **errmsg);

/* --- Pool maintenance ----------------------------------------------------------------------- */

/* Start-up sweep of DATA_DIR/pool: removes temp leftovers of interrupted writes and FLAC files
 * that no track row references. *removed (optional) = files removed. See pool.h. Call it BEFORE
 * serving requests: an ingest in progress writes its pool file before committing its row, and
 * the sweep would take that file for an orphan. */
int clmr_store_pool_sweep(clmr_store_t *s, int *removed, char **errmsg);

#endif
