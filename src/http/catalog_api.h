/* catalog_api.h - the catalogue routes of issue 17 inside src/http: query arguments, track JSON
 * with metadata and descriptors, GET /v1/tracks filters, PATCH /v1/tracks/{id}, stored audio with
 * Range, embeddings, the streaming export, duplicate-aware similar results and the ingest's
 * descriptors + fingerprint step.
 *
 * DESIGN: routes.c keeps the route table and dispatch; everything issue 17 added lives here so it
 * can be read (and merged) on its own. Handlers parse and validate every argument first (a 400
 * names the parameter), then call the store (src/store/catalog.h), then render. Query arguments
 * are copied in the polling thread (clmr__qargs_collect) because handlers run on pool threads
 * that must not touch the connection.
 */
#ifndef CLMR_HTTP_CATALOG_API_H
#define CLMR_HTTP_CATALOG_API_H

#include "http/http_internal.h"
#include "index/index.h"
#include "store/catalog.h"

#include <jansson.h>

/* Copies every query argument of c into req (polling thread). A value with a NUL inside sets
 * req->q_nul. Frees with clmr__qargs_free (completion callback). */
void clmr__qargs_collect(clmr_http_req_t *req, struct MHD_Connection *c);
void clmr__qargs_free(clmr_http_req_t *req);
/* The value of query argument name, NULL when absent. */
const char *clmr__qarg(const clmr_http_req_t *req, const char *name);

/* Renderers shared with routes.c (defined there): a track's base fields; [{"tag","score",
 * "trusted","threshold","decision"}...] highest first, untrusted tags left out unless all; a track
 * with its metadata, descriptors and tags for the active model. */
json_t *clmr__track_json(const clmr_track_record_t *t);
json_t *clmr__tags_json(const clmr_http_model_info_t *info, const float *scores, int n, int top,
                        double threshold, int all);
json_t *clmr__track_full_json(clmr_http_req_t *req, const clmr_track_record_t *t);

/* Adds metadata and descriptors of x to a track object j (null for unknown values). */
void clmr__track_extra_json(json_t *j, const clmr_track_extra_t *x);

/* Handlers (catalogue pool). */
void clmr__h_tracks_query(clmr_http_req_t *req);    /* GET /v1/tracks */
void clmr__h_track_patch(clmr_http_req_t *req);     /* PATCH /v1/tracks/{id} */
void clmr__h_track_audio(clmr_http_req_t *req);     /* GET /v1/tracks/{id}/audio */
void clmr__h_track_embedding(clmr_http_req_t *req); /* GET /v1/tracks/{id}/embedding */
void clmr__h_export(clmr_http_req_t *req);          /* GET /v1/export */

/* Reads include_duplicates (default false) into *include; 400 prepared and -1 on a bad value. */
int clmr__dup_arg(clmr_http_req_t *req, int *include);

/* Keeps at most k of the n hits (best first): unless include_dups, drops hits in the same
 * duplicate group as self_id (may be NULL) and all but the best hit of every other group.
 * Returns the number kept (hits compacted in place). Reads the store (catalogue rows). */
int clmr__filter_duplicate_hits(clmr_server_t *s, const char *self_id, clmr_index_hit_t *hits,
                                int n, int k, int include_dups);

/* Index search (q, or the stored vector of by_id when q is NULL; exclude_id skipped) returning
 * up to k hits into out after clmr__filter_duplicate_hits (self: by_id or exclude_id); asks the
 * index for more candidates when filtering removed too many. Returns the index's error codes. */
int clmr__search_filtered(clmr_server_t *s, clmr_index_t *idx, const float *q, const char *by_id,
                          const char *exclude_id, int k, int include_dups, clmr_index_hit_t *out,
                          int *n_out);

/* Descriptors and fingerprint of decoded audio for an ingest: fills *x's descriptors and *fp
 * (malloc'd, *fp_n words; NULL when the audio is too short to fingerprint). Returns the seconds
 * spent. Never fails the ingest: an error only leaves the values unknown (logged). */
double clmr__ingest_features(clmr_http_req_t *req, const float *samples, size_t n,
                             clmr_track_extra_t *x, uint32_t **fp, int *fp_n);

#endif
