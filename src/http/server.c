/* server.c - libmicrohttpd plumbing: connections, bodies, limits, suspend/resume, shutdown.
 *
 * DESIGN: the access handler is a small state machine per request. First call: assign a request
 * id, decide the client address (http/client_addr.h: the peer, or X-Forwarded-For from a trusted
 * proxy), match the route (404/405 at once), refuse a declared Content-Length over the route's
 * limit (413 before any body byte is read) and copy the query arguments the handler needs. Body
 * calls: append to one growing buffer with a running byte count, answering 413 as soon as a chunked
 * body passes the limit and 408 when the absolute request deadline passes (MHD's own timeout only
 * covers idle connections). Last call: cheap routes are answered inline; uploads are queued on the
 * worker pool (503 + Retry-After when it is full) and the connection is suspended until the worker
 * has prepared the answer and resumes it. The completion callback records metrics, writes the
 * access log line and frees the request. Nothing else in the service sends responses.
 */
#include "http/server.h"

#include "clmr/error.h"
#include "http/admin.h"
#include "http/auth.h"
#include "http/catalog_api.h"
#include "http/client_addr.h"
#include "http/http_internal.h"
#include "http/rollover.h"
#include "store/store.h"
#include "util/log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define CATALOGUE_THREADS 2
#define CHECKPOINT_PERIOD_S 60

double clmr__http_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* An incoming X-Request-Id is echoed only when it is short and made of safe characters, so it
 * cannot inject anything into logs or headers. */
static void assign_request_id(clmr_server_t *s, clmr_http_req_t *req, const char *incoming)
{
    if (incoming) {
        size_t n = strlen(incoming), i;
        for (i = 0; i < n; i++) {
            char c = incoming[i];
            if (!(isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == ':')) break;
        }
        if (n >= 1 && n <= 64 && i == n) {
            memcpy(req->request_id, incoming, n + 1);
            return;
        }
    }
    unsigned long long seq = atomic_fetch_add(&s->next_id, 1);
    unsigned int rnd = 0;
    if (getrandom(&rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd) rnd = (unsigned)time(NULL);
    snprintf(req->request_id, sizeof req->request_id, "%08x%08llx", rnd, seq);
}

/* One slot more than the resolver accepts, so that too many lines reach it and are refused. */
#define XFF_SLOTS (CLMR_CLIENT_ADDR_MAX_HEADERS + 1)

typedef struct {
    const char *values[XFF_SLOTS];
    size_t lens[XFF_SLOTS];
    size_t n; /* lines seen (only the first XFF_SLOTS are stored) */
} xff_lines_t;

static enum MHD_Result collect_xff(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size)
{
    xff_lines_t *x = cls;
    if (key_size != 15 || strncasecmp(key, "X-Forwarded-For", 15) != 0) return MHD_YES;
    if (x->n < XFF_SLOTS) {
        x->values[x->n] = value;
        x->lens[x->n] = value ? value_size : 0;
    }
    x->n++;
    return MHD_YES;
}

/* The client address for the access log: the TCP peer, or behind a trusted proxy the address it
 * put in X-Forwarded-For. libmicrohttpd keeps every header line (a repeated X-Forwarded-For is
 * several entries, in arrival order), so all of them are read; only a parsed address is kept. */
static void identify_client(clmr_server_t *s, clmr_http_req_t *req, struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    clmr_ipnet_addr_t peer, client;
    clmr_ipnet_addr_from_sockaddr(&peer, ci ? ci->client_addr : NULL);
    xff_lines_t x = {.n = 0};
    if (clmr_ipnet_list_contains(&s->trusted_proxies, &peer))
        MHD_get_connection_values_n(c, MHD_HEADER_KIND, collect_xff, &x);
    size_t n = x.n < XFF_SLOTS ? x.n : XFF_SLOTS;
    req->client_source =
        (int)clmr_client_addr_resolve(&client, &s->trusted_proxies, &peer, x.values, x.lens, n);
    clmr_ipnet_addr_format(&peer, req->peer, sizeof req->peer);
    /* "Local" (auth.h: keyless writes while no key exists) means the TCP peer is loopback and
     * nothing says the request was forwarded: a proxy on the same host is a loopback peer too. */
    req->local = clmr__auth_is_loopback(s, &peer) &&
                 !MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Forwarded-For") &&
                 !MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Forwarded") &&
                 !MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Real-IP");
    clmr_ipnet_addr_format(&client, req->client, sizeof req->client);
}

/* The service-wide budget for buffered request bodies: without it, connection-limit uploads of
 * max-upload-bytes each could take connection-limit x max-upload-bytes of memory. */
static int charge(clmr_server_t *s, clmr_http_req_t *req, size_t bytes)
{
    unsigned long long now = atomic_fetch_add(&s->buffered, bytes) + bytes;
    if (now > (unsigned long long)s->cfg.max_buffered_bytes) {
        atomic_fetch_sub(&s->buffered, bytes);
        return 0;
    }
    req->charged += bytes;
    return 1;
}

static void release(clmr_server_t *s, clmr_http_req_t *req)
{
    atomic_fetch_sub(&s->buffered, req->charged);
    req->charged = 0;
}

static enum MHD_Result send_response(clmr_http_req_t *req)
{
    if (!req->done) clmr__http_error(req, 500, "internal", "no response was prepared");
    /* A handler may have built the response itself (a file with Range, a streamed export). */
    struct MHD_Response *r = req->resp_custom;
    req->resp_custom = NULL;
    if (!r)
        r = MHD_create_response_from_buffer(req->resp_len, req->resp_body, MHD_RESPMEM_MUST_FREE);
    else
        free(req->resp_body);
    if (!r) return MHD_NO;
    req->resp_body = NULL; /* owned by the response now */
    MHD_add_response_header(r, "Content-Type",
                            req->resp_type ? req->resp_type : "application/json");
    MHD_add_response_header(r, "X-Request-Id", req->request_id);
    if (req->allow[0]) MHD_add_response_header(r, "Allow", req->allow);
    if (req->location[0]) MHD_add_response_header(r, "Location", req->location);
    if (req->www_auth[0]) MHD_add_response_header(r, "WWW-Authenticate", req->www_auth);
    clmr__cors_add_headers(req, r);
    if (req->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", req->retry_after);
        MHD_add_response_header(r, "Retry-After", ra);
    }
    /* After an early 413/408 the rest of the body is unread: the connection cannot be reused. */
    if (req->too_large || req->timed_out) MHD_add_response_header(r, "Connection", "close");
    enum MHD_Result ret = MHD_queue_response(req->conn, req->status, r);
    MHD_destroy_response(r);
    return ret;
}

static void copy_arg(struct MHD_Connection *c, const char *key, char *dst, size_t cap)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c, MHD_GET_ARGUMENT_KIND, key, strlen(key), &v, &n) !=
            MHD_YES ||
        !v)
        return;
    /* An over-long number, or one with a %00 inside (C would see only the part before it), is
     * malformed: keep a marker that fails parsing. */
    if (n >= cap || strlen(v) != n) {
        snprintf(dst, cap, "x");
        return;
    }
    snprintf(dst, cap, "%s", v);
}

/* A copy of a header or query argument. A value with a NUL inside (a query's %00) would be cut
 * short silently by every C string function, so it sets *nul and the route refuses the request. */
static char *dup_arg(struct MHD_Connection *c, enum MHD_ValueKind kind, const char *key, int *nul)
{
    const char *v = NULL;
    size_t n = 0;
    if (MHD_lookup_connection_value_n(c, kind, key, strlen(key), &v, &n) != MHD_YES || !v)
        return NULL;
    if (strlen(v) != n) *nul = 1;
    return strdup(v);
}

static void job_entry(void *arg, clmr_infer_t *ctx)
{
    clmr_http_req_t *req = arg;
    /* ctx serves req->sm, the model active when the request arrived (submit_inference). */
    clmr__route_job(req, ctx);
    if (!req->done) clmr__http_error(req, 500, "internal", "the job prepared no response");
    MHD_resume_connection(req->conn);
}

/* Queues an upload on the inference pool with its own model: an in-flight request finishes on
 * the model it started with, even when an activation happens while it waits in the queue. */
static int submit_inference(clmr_server_t *s, clmr_http_req_t *req)
{
    atomic_fetch_add(&req->sm->refs, 1); /* the pool's reference, released by the worker */
    int rc = clmr_workers_submit_ref(s->workers, job_entry, req, req->sm, req->sm->model);
    if (rc) atomic_fetch_sub(&req->sm->refs, 1); /* never the last one: req still holds one */
    return rc;
}

/* POST /v1/tag first runs here, on the catalogue pool: a cache hit is answered at once; a miss
 * moves on to the inference queue (the connection stays suspended). */
static void probe_entry(void *arg, clmr_infer_t *ctx)
{
    clmr_http_req_t *req = arg;
    clmr_server_t *s = req->srv;
    if (!clmr__route_cache_probe(req)) {
        int rc = submit_inference(s, req);
        if (rc == 0) return; /* job_entry resumes the connection */
        clmr__metrics_rejected(&s->metrics);
        req->retry_after = s->cfg.retry_after_s;
        clmr__http_error(req, 503, rc == CLMR_EBUSY ? "overloaded" : "shutting_down",
                         rc == CLMR_EBUSY
                             ? "all workers are busy and the queue is full; retry later"
                             : "the service is shutting down");
    }
    MHD_resume_connection(req->conn);
}

static void catalogue_entry(void *arg, clmr_infer_t *ctx)
{
    clmr_http_req_t *req = arg;
    clmr__route_inline(req);
    MHD_resume_connection(req->conn);
}

static enum MHD_Result access_cb(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    clmr_server_t *s = cls;
    clmr_http_req_t *req = *con_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req) return MHD_NO;
        *con_cls = req;
        atomic_fetch_add(&s->inflight, 1);
        req->srv = s;
        req->conn = c;
        req->start = clmr__http_now();
        req->deadline = req->start + s->cfg.request_timeout_s;
        req->sm = clmr__served_active(s);
        req->ss = clmr__served_search(s);
        assign_request_id(s, req, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id"));
        identify_client(s, req, c);
        snprintf(req->method, sizeof req->method, "%s", method);
        snprintf(req->path, sizeof req->path, "%s", url);
        int pool = CLMR_POOL_INLINE;
        size_t limit = 0;
        clmr__cors_note_origin(req, c);
        if (clmr__cors_preflight(req, c)) return send_response(req);
        if (clmr__route_match(req, method, url, &pool, &limit) || clmr__query_check(req, c))
            return send_response(req);
        req->body_limit = limit;
        req->pool = pool;
        if (pool != CLMR_POOL_INLINE && atomic_load(&s->draining)) {
            req->retry_after = s->cfg.retry_after_s;
            clmr__http_error(req, 503, "shutting_down", "the service is shutting down");
            return send_response(req);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            unsigned long long n = strtoull(cl, &end, 10);
            if (end != cl && !*end && n > limit) {
                req->too_large = 1;
                clmr__http_error(req, 413, "input_too_large",
                                 "the body is %llu bytes, over the limit of %zu bytes (%s)", n,
                                 limit, clmr__route_limit_name(req));
                return send_response(req);
            }
            if (end != cl && !*end && n > 0 &&
                atomic_load(&s->buffered) + n > (unsigned long long)s->cfg.max_buffered_bytes) {
                req->too_large = 1; /* the body is not read: close the connection after this */
                req->retry_after = s->cfg.retry_after_s;
                clmr__http_error(req, 503, "overloaded",
                                 "too many uploads are being received; retry later");
                return send_response(req);
            }
        }
        copy_arg(c, "top", req->q_top, sizeof req->q_top);
        copy_arg(c, "threshold", req->q_threshold, sizeof req->q_threshold);
        copy_arg(c, "per_chunk", req->q_per_chunk, sizeof req->q_per_chunk);
        copy_arg(c, "embedding", req->q_embedding, sizeof req->q_embedding);
        copy_arg(c, "k", req->q_k, sizeof req->q_k);
        copy_arg(c, "limit", req->q_limit, sizeof req->q_limit);
        copy_arg(c, "all", req->q_all, sizeof req->q_all);
        req->q_cursor = dup_arg(c, MHD_GET_ARGUMENT_KIND, "cursor", &req->q_nul);
        req->q_title = dup_arg(c, MHD_GET_ARGUMENT_KIND, "title", &req->q_nul);
        req->q_artist = dup_arg(c, MHD_GET_ARGUMENT_KIND, "artist", &req->q_nul);
        req->q_external_id = dup_arg(c, MHD_GET_ARGUMENT_KIND, "external_id", &req->q_nul);
        req->content_type = dup_arg(c, MHD_HEADER_KIND, "Content-Type", &req->q_nul);
        req->h_range = dup_arg(c, MHD_HEADER_KIND, "Range", &req->q_nul);
        clmr__qargs_collect(req, c);
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (clmr__http_now() > req->deadline) {
            /* libmicrohttpd 0.9.75 cannot queue a response in the middle of a body: close. */
            req->timed_out = 1;
            clmr__http_error(req, 408, "request_timeout",
                             "the request was not received within %g s", s->cfg.request_timeout_s);
            CLMR_RLOG_WARN(req->request_id, "request deadline passed during the upload; closing");
            return MHD_NO;
        }
        if (req->too_large) return MHD_YES; /* discard the rest; 413 is sent at the end */
        if (n > req->body_limit - req->body_len) {
            /* A chunked body passed the limit: free it, stop storing, answer 413 once the client
             * has finished sending (MHD cannot answer mid-body). Memory stays bounded, and the
             * request deadline bounds how long we keep discarding. */
            req->too_large = 1;
            free(req->body);
            req->body = NULL;
            req->body_cap = 0;
            release(s, req);
            clmr__http_error(req, 413, "input_too_large",
                             "the body passed the limit of %zu bytes (%s)", req->body_limit,
                             clmr__route_limit_name(req));
            return MHD_YES;
        }
        if (req->body_len + n > req->body_cap) {
            size_t cap = req->body_cap ? req->body_cap : 64 * 1024;
            while (cap < req->body_len + n)
                cap *= 2;
            if (cap > req->body_limit) cap = req->body_limit;
            unsigned char *nb = NULL;
            if (charge(s, req, cap - req->body_cap)) nb = realloc(req->body, cap);
            if (!nb) {
                /* Over the service-wide buffer budget (or out of memory): discard like a 413. */
                req->too_large = 1;
                free(req->body);
                req->body = NULL;
                req->body_cap = 0;
                release(s, req);
                req->retry_after = s->cfg.retry_after_s;
                clmr__http_error(req, 503, "overloaded",
                                 "too many uploads are being received; retry later");
                return MHD_YES;
            }
            req->body = nb;
            req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, upload_data, n);
        req->body_len += n;
        return MHD_YES;
    }
    if (req->done) return send_response(req); /* a refused body, or a worker resumed us */
    /* The whole body is here. */
    if (req->pool == CLMR_POOL_INLINE) {
        clmr__route_inline(req);
        return send_response(req);
    }
    /* Suspend before submitting, so a worker that finishes at once resumes a connection that is
     * already suspended. A refused job is answered by resuming at once with the 503 prepared. */
    MHD_suspend_connection(c);
    int rc = req->route == R_TAG ? clmr_workers_submit(s->catalogue, probe_entry, req)
             : req->pool == CLMR_POOL_INFERENCE
                 ? submit_inference(s, req)
                 : clmr_workers_submit(s->catalogue, catalogue_entry, req);
    if (rc) {
        clmr__metrics_rejected(&s->metrics);
        req->retry_after = s->cfg.retry_after_s;
        clmr__http_error(req, 503, rc == CLMR_EBUSY ? "overloaded" : "shutting_down",
                         rc == CLMR_EBUSY
                             ? "all workers are busy and the queue is full; retry later"
                             : "the service is shutting down");
        MHD_resume_connection(c);
    }
    return MHD_YES;
}

static void completed_cb(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    clmr_server_t *s = cls;
    clmr_http_req_t *req = *con_cls;
    if (!req) return;
    double dt = clmr__http_now() - req->start;
    unsigned status = req->done ? req->status : 499; /* 499: client went away before an answer */
    clmr__metrics_request(&s->metrics, req->route, status, dt);
    /* client= always; peer= too when a trusted proxy named someone else (or sent a header that
     * could not be used, which usually means the proxy is misconfigured). */
    int show_peer = strcmp(req->client, req->peer) != 0;
    char key[32] = "";
    if (req->key_id > 0)
        snprintf(key, sizeof key, " key=%lld", req->key_id);
    else if (req->key_id < 0)
        snprintf(key, sizeof key, " key=admin-token");
    CLMR_RLOG_INFO(req->request_id, "%s %s -> %u (%.1f ms, %zu bytes in) client=%s%s%s%s%s%s",
                   req->method, req->path, status, dt * 1e3, req->body_len, req->client,
                   show_peer ? " peer=" : "", show_peer ? req->peer : "", key,
                   req->client_source == CLMR_CLIENT_BAD_HEADER ? " [bad X-Forwarded-For]" : "",
                   toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " [connection ended early]");
    free(req->body);
    release(s, req);
    free(req->resp_body);
    free(req->q_title);
    free(req->q_artist);
    free(req->q_external_id);
    free(req->q_cursor);
    free(req->content_type);
    free(req->h_range);
    clmr__qargs_free(req);
    if (req->resp_custom) MHD_destroy_response(req->resp_custom);
    clmr__served_release(req->sm);
    clmr__served_release(req->ss);
    free(req);
    *con_cls = NULL;
    atomic_fetch_sub(&s->inflight, 1);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = 0;
    CLMR_LOG_WARN("libmicrohttpd: %s", msg);
}

/* Periodic passive WAL checkpoints, so the WAL shrinks back soon after a long reader is done,
 * and reloads of the API key table, so keys made or revoked with the CLI take effect. */
static void *maint_main(void *p)
{
    clmr_server_t *s = p;
    double next_ckpt = clmr__http_now() + CHECKPOINT_PERIOD_S;
    pthread_mutex_lock(&s->maint_mu);
    while (!s->maint_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += CLMR_AUTH_REFRESH_S;
        pthread_cond_timedwait(&s->maint_cv, &s->maint_mu, &ts);
        if (s->maint_stop) break;
        pthread_mutex_unlock(&s->maint_mu);
        clmr__auth_refresh(s);
        if (clmr__http_now() >= next_ckpt) {
            next_ckpt = clmr__http_now() + CHECKPOINT_PERIOD_S;
            char *msg = NULL;
            if (clmr_store_checkpoint(s->store, &msg))
                CLMR_LOG_WARN("WAL checkpoint failed: %s", msg ? msg : "");
            free(msg);
        }
        pthread_mutex_lock(&s->maint_mu);
    }
    pthread_mutex_unlock(&s->maint_mu);
    return NULL;
}

int clmr_server_open(clmr_server_t **out, const clmr_config_t *cfg, char **errmsg)
{
    *out = NULL;
    clmr_server_t *s = calloc(1, sizeof *s);
    if (!s) return CLMR_ENOMEM;
    s->cfg = *cfg;
    clmr__metrics_init(&s->metrics);
    /* validated by the configuration already; checked again for callers that filled cfg alone */
    int rc = clmr_ipnet_list_parse(&s->trusted_proxies, cfg->trusted_proxies, errmsg);
    if (!rc) rc = clmr__cors_validate(cfg->cors_origins, errmsg);
    if (rc) goto fail;
    if ((rc = clmr_http_infer_configure(cfg->precision, errmsg))) goto fail;
    if ((rc = clmr__rollover_open(s, errmsg))) goto fail;
    if ((rc = clmr__admin_open(s, errmsg))) goto fail;
    if ((rc = clmr__routes_open(s, errmsg))) goto fail;
    if ((rc = clmr__auth_open(s, errmsg))) goto fail;
    if ((rc = clmr_workers_open_source(&s->workers, NULL, clmr__rollover_acquire,
                                       clmr__rollover_release, s, cfg->workers,
                                       cfg->inference_threads, cfg->queue_depth, errmsg)))
        goto fail;
    {
        clmr_served_t *m = clmr__served_active(s); /* before listening, so /readyz implies warm */
        clmr__rollover_preload(s, m);
        clmr__served_release(m);
    }
    /* Every connection has at most one request in flight, so a queue as long as the connection
     * limit never refuses a catalogue request. */
    if ((rc = clmr_workers_open(&s->catalogue, NULL, CATALOGUE_THREADS, 0, cfg->connection_limit,
                                errmsg)))
        goto fail;
    pthread_mutex_init(&s->maint_mu, NULL);
    pthread_cond_init(&s->maint_cv, NULL);
    if (pthread_create(&s->maint, NULL, maint_main, s) == 0) s->maint_started = 1;

    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof port, "%d", cfg->listen_port);
    int gai = getaddrinfo(cfg->listen_host, port, &hints, &ai);
    if (gai) {
        rc =
            clmr_set_err(errmsg, CLMR_EINVAL, "configuration key 'listen': cannot resolve '%s': %s",
                         cfg->listen_host, gai_strerror(gai));
        goto fail;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->listen_port, NULL, NULL, access_cb, s, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_logger, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)cfg->connection_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned int)cfg->connection_limit, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)cfg->connection_memory_limit, MHD_OPTION_NOTIFY_COMPLETED, completed_cb, s,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        rc = clmr_set_err(errmsg, CLMR_EIO,
                          "cannot listen on %s (configuration key 'listen'; address in use or not "
                          "local?)",
                          cfg->listen);
        goto fail;
    }
    s->port = cfg->listen_port;
    *out = s;
    return 0;
fail:
    clmr_server_shutdown(&s, 0);
    return rc;
}

int clmr_server_port(const clmr_server_t *s)
{
    return s->port;
}

int clmr_server_shutdown(clmr_server_t **ps, double drain_s)
{
    clmr_server_t *s = ps ? *ps : NULL;
    if (!s) return 0;
    int left = 0;
    if (s->daemon) {
        atomic_store(&s->draining, 1);
        MHD_quiesce_daemon(s->daemon); /* the listening socket stops accepting */
        double until = clmr__http_now() + drain_s;
        while ((left = atomic_load(&s->inflight)) > 0 && clmr__http_now() < until)
            usleep(20 * 1000);
        if (left)
            CLMR_LOG_WARN("%d requests still in flight after %g s; stopping anyway", left, drain_s);
    }
    /* Workers first: they finish queued jobs and resume their connections, so no connection is
     * left suspended when the daemon stops. */
    clmr_workers_drain(s->workers);
    clmr_workers_drain(s->catalogue);
    clmr__admin_close(s); /* a running job stops at its next step, keeping its checkpoint */
    if (s->maint_started) {
        pthread_mutex_lock(&s->maint_mu);
        s->maint_stop = 1;
        pthread_cond_signal(&s->maint_cv);
        pthread_mutex_unlock(&s->maint_mu);
        pthread_join(s->maint, NULL);
        pthread_mutex_destroy(&s->maint_mu);
        pthread_cond_destroy(&s->maint_cv);
    }
    if (s->daemon) MHD_stop_daemon(s->daemon);
    /* Freed only now: until MHD_stop_daemon returns, a late request on a kept-alive connection
     * may still call submit, which a drained pool refuses safely. */
    clmr_workers_close(&s->workers);
    clmr_workers_close(&s->catalogue);
    clmr__rollover_close(s);
    clmr__auth_close(s);
    clmr__routes_close(s);
    clmr__metrics_destroy(&s->metrics);
    free(s);
    *ps = NULL;
    return left;
}
