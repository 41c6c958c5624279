/* http_internal.h - types shared by the files of src/http (server, routes, errors, metrics).
 *
 * DESIGN: one clmr_http_req_t per request, allocated at the first libmicrohttpd callback and freed
 * in the completion callback. A handler never queues a response itself: it fills status, body and
 * headers in the request, and server.c sends it (inline for cheap routes, after resume for jobs
 * that ran on the worker pool), so error formatting, request ids and metrics live in one place.
 */
#ifndef CLMR_HTTP_INTERNAL_H
#define CLMR_HTTP_INTERNAL_H

#include "config/config.h"
#include "http/analysis.h"
#include "http/workers.h"
#include "util/ipnet.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

typedef struct clmr_store clmr_store_t;
typedef struct clmr_index clmr_index_t;

/* Route labels for metrics; the order matches clmr__route_names in metrics.c. */
typedef enum {
    R_UNKNOWN = 0,
    R_HEALTHZ,
    R_READYZ,
    R_METRICS,
    R_OPENAPI,
    R_CONFIG,
    R_TAGS,
    R_MODELS,
    R_TAG,
    R_TRACKS,      /* /v1/tracks (POST, GET) */
    R_TRACK,       /* /v1/tracks/{id} (GET, DELETE) */
    R_TRACK_SIM,   /* /v1/tracks/{id}/similar */
    R_SIMILAR,     /* POST /v1/similar */
    R_SEARCH,      /* POST /v1/search */
    R_ADMIN,       /* /v1/admin/... (admin.c) */
    R_TRACK_AUDIO, /* GET /v1/tracks/{id}/audio (catalog_api.c) */
    R_TRACK_EMB,   /* GET /v1/tracks/{id}/embedding */
    R_EXPORT,      /* GET /v1/export */
    R__COUNT
} clmr_route_t;

#define CLMR_HTTP_N_STATUS 16 /* distinct status codes tracked per route */
#define CLMR_HTTP_N_BUCKETS 14

typedef struct {
    pthread_mutex_t mu;
    int status_codes[CLMR_HTTP_N_STATUS]; /* 0 = free slot */
    unsigned long long requests[R__COUNT][CLMR_HTTP_N_STATUS];
    unsigned long long latency_bucket[R__COUNT][CLMR_HTTP_N_BUCKETS + 1];
    double latency_sum[R__COUNT];
    unsigned long long latency_count[R__COUNT];
    double decode_seconds, infer_seconds;
    unsigned long long decode_count, infer_count;
    unsigned long long cache_hits, cache_misses, queue_rejected;
    unsigned long long errors_by_code[64]; /* index = -clmr error code (1..63), 0 = HTTP-only */
} clmr_http_metrics_t;

typedef struct clmr_server clmr_server_t;

typedef struct clmr_http_req {
    clmr_server_t *srv;
    struct MHD_Connection *conn;
    char request_id[65];
    /* who sent it (http/client_addr.h), decided in the polling thread at the first callback */
    char client[CLMR_IPNET_ADDRSTRLEN]; /* the client: the peer, or from X-Forwarded-For */
    char peer[CLMR_IPNET_ADDRSTRLEN];   /* the TCP peer */
    int client_source;                  /* clmr_client_addr_source_t */
    int local;        /* loopback peer and no forwarding header (auth.h: keyless writes) */
    long long key_id; /* API key that authorised the request; -1 admin token; 0 none */
    char method[8];
    char path[256];
    clmr_route_t route;
    char id[65];            /* {id} path segment, validated */
    double start, deadline; /* monotonic seconds */
    /* body */
    unsigned char *body;
    size_t body_len, body_cap, body_limit;
    size_t charged; /* bytes counted in srv->buffered */
    int too_large;  /* 413 already decided */
    int timed_out;  /* deadline passed during upload */
    int pool;       /* CLMR_POOL_* */
    int done;       /* response prepared (status/body set) */
    /* response */
    unsigned status;
    char *resp_body; /* malloc'd */
    size_t resp_len;
    const char *resp_type;
    char allow[64];     /* Allow header for 405 */
    int retry_after;    /* > 0: Retry-After header */
    char location[128]; /* Location header for 201 */
    char www_auth[64];  /* WWW-Authenticate header for 401 */
    int admin_op;       /* ADMIN_* for R_ADMIN */
    /* models this request uses (rollover.h), held from the first callback to completion */
    struct clmr_served *sm; /* active: tagging, ingest */
    struct clmr_served *ss; /* search: the similarity index and query embeddings */
    /* query arguments copied in the polling thread (workers must not touch the connection) */
    char q_top[16], q_threshold[32], q_per_chunk[8], q_embedding[8], q_k[16], q_limit[16];
    char q_all[8]; /* ?all=: show tags the model's tag policy does not trust (tag_policy.h) */
    char *q_title, *q_artist, *q_external_id, *q_cursor, *content_type;
    int q_nul; /* one of the strings above had a NUL inside (%00): refused with 400 */
    /* catalogue routes (catalog_api.c): every query argument, the Range header, and a response
     * built by the handler itself (a file or a stream) that server.c sends instead of resp_body */
    struct clmr_qarg *qargs;
    int n_qargs;
    char *h_range;
    struct MHD_Response *resp_custom;
    /* CORS (cors.c): the request's Origin when cors-origins lists it, else empty */
    char cors_origin[256];
    int cors_preflight; /* answered as an OPTIONS preflight */
} clmr_http_req_t;

enum {
    ADMIN_NONE = 0,
    ADMIN_FINETUNE,
    ADMIN_JOBS,
    ADMIN_JOB,
    ADMIN_ACTIVATE,
    ADMIN_ROLLBACK,
    ADMIN_KEYS,
    ADMIN_KEY
};

struct clmr_server {
    clmr_config_t cfg;
    clmr_ipnet_list_t trusted_proxies; /* parsed cfg.trusted_proxies; read-only once open */
    struct MHD_Daemon *daemon;
    int port;
    struct clmr_rollover *ro; /* served models (rollover.c) */
    struct clmr_admin *admin; /* admin API state (admin.c) */
    struct clmr_auth *auth;   /* admin token and API key table (auth.c) */
    clmr_store_t *store;
    clmr_workers_t *workers;   /* decode + inference, one clmr_infer_t per thread */
    clmr_workers_t *catalogue; /* catalogue reads and searches, no model context */
    pthread_t maint;           /* periodic WAL checkpoints */
    int maint_started;
    pthread_mutex_t maint_mu;
    pthread_cond_t maint_cv;
    int maint_stop;
    clmr_http_metrics_t metrics;
    atomic_int inflight;
    atomic_ullong buffered; /* request body bytes held, all connections */
    atomic_int draining;
    atomic_ullong next_id;
};

double clmr__http_now(void);

/* errors.c: the one place that maps clmr error codes to HTTP statuses and builds error bodies. */
unsigned clmr__http_status_for(int clmr_err);
/* Prepares {"error":{"code","message"}} with status on req. code = machine name. */
void clmr__http_error(clmr_http_req_t *req, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Prepares the error for a clmr error code (status from the table, code = clmr_err_name). */
void clmr__http_error_clmr(clmr_http_req_t *req, int err, const char *msg);
/* Prepares a JSON body (steals the reference to j). */
void clmr__http_json(clmr_http_req_t *req, unsigned status, json_t *j);

/* metrics.c */
void clmr__metrics_init(clmr_http_metrics_t *m);
void clmr__metrics_destroy(clmr_http_metrics_t *m);
void clmr__metrics_request(clmr_http_metrics_t *m, clmr_route_t r, unsigned status, double secs);
void clmr__metrics_add(clmr_http_metrics_t *m, double decode_s, double infer_s, int cache_hit,
                       int cache_miss);
void clmr__metrics_error(clmr_http_metrics_t *m, int clmr_err);
void clmr__metrics_rejected(clmr_http_metrics_t *m);
/* Renders Prometheus text exposition (malloc'd). */
char *clmr__metrics_render(clmr_server_t *s, size_t *len);
const char *clmr__route_name(clmr_route_t r);

/* routes.c */
/* Where a route runs. */
enum { CLMR_POOL_INLINE = 0, CLMR_POOL_INFERENCE = 1, CLMR_POOL_CATALOGUE = 2 };

/* Classifies method + path into req->route / req->id; on failure prepares 404/405/400. Sets
 * *pool (CLMR_POOL_*) and *body_limit for the route's body. Returns 0 when the request may
 * proceed. */
int clmr__route_match(clmr_http_req_t *req, const char *method, const char *url, int *pool,
                      size_t *body_limit);
/* Runs a route without inference (polling thread or catalogue pool); prepares the response. */
void clmr__route_inline(clmr_http_req_t *req);
/* Worker-pool entry point for heavy routes. */
void clmr__route_job(void *arg, clmr_infer_t *ctx);
/* Catalogue-pool step before an upload queues for inference: answers POST /v1/tag from the tag
 * cache (or with a 400 for bad arguments) and returns 1; returns 0 when inference is needed. Keeps
 * cache hits out of the inference queue, so they never wait behind decodes or get its 503s. */
int clmr__route_cache_probe(clmr_http_req_t *req);
/* Opens the store and index for the loaded model (called by server open). */
int clmr__routes_open(clmr_server_t *s, char **errmsg);
void clmr__routes_close(clmr_server_t *s);

/* query.c: 400 unknown_parameter (prepared on req) when the query has a parameter the route's
 * row of the allow-list does not name; returns -1 then, else 0. Polling thread (reads c). */
int clmr__query_check(clmr_http_req_t *req, struct MHD_Connection *c);
/* What sets the body limit of req's route, for 413 messages (static text). */
const char *clmr__route_limit_name(const clmr_http_req_t *req);

/* cors.c (configuration key cors-origins). */
/* Checks the cors-origins list at start-up; CLMR_EINVAL with *errmsg naming the bad entry. */
int clmr__cors_validate(const char *list, char **errmsg);
/* Copies the Origin header into req->cors_origin when it is listed. Polling thread. */
void clmr__cors_note_origin(clmr_http_req_t *req, struct MHD_Connection *c);
/* Answers OPTIONS (preflight 204, or 403/405) and returns 1; returns 0 for other methods. */
int clmr__cors_preflight(clmr_http_req_t *req, struct MHD_Connection *c);
/* Adds the Access-Control-* headers of req (none when its origin is not listed). */
void clmr__cors_add_headers(const clmr_http_req_t *req, struct MHD_Response *r);

/* openapi_json.c (generated from docs/openapi.json at build time) */
extern const char clmr__openapi_json[];
extern const size_t clmr__openapi_json_len;

#endif
