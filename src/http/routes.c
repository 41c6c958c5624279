/* routes.c - the /v1 API: route table, request parsing and the handlers.
 *
 * DESIGN: every user number is parsed with explicit bounds and every id must be 64 hex digits
 * before anything touches the store. Cheap routes (catalogue reads, search over the in-memory
 * index) run in the polling thread; uploads (/v1/tag, /v1/tracks, /v1/similar) run on the worker
 * pool: sha256 of the bytes first, then the (sha256, model id) cache, and only on a miss decoding
 * and inference. An ingest writes the FLAC pool file before the database row, so a committed row
 * always has its audio, and updates the similarity index after the commit.
 */
#include "clmr/error.h"
#include "audio/fingerprint.h"
#include "clmr/tag_policy.h"
#include "http/admin.h"
#include "http/auth.h"
#include "http/catalog_api.h"
#include "http/http_internal.h"
#include "http/multipart.h"
#include "http/rollover.h"
#include "index/index.h"
#include "store/pool.h"
#include "store/store.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <libavutil/mem.h>
#include <libavutil/sha.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PATCH_BODY_LIMIT (64u << 10) /* a few metadata fields */
#define SEARCH_BODY_LIMIT (1u << 20) /* JSON bodies: 512 floats fit in well under 16 KiB */
#define K_MAX 100
#define META_MAX 1024 /* bytes of title / artist / external_id */
#define READYZ_DB_WAIT_MS 1000

/* ---------------------------------------------------------------- parsing helpers */

static int is_hex64(const char *s, size_t n)
{
    if (n != 64) return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i])) return 0;
    return 1;
}

static int parse_int_arg(clmr_http_req_t *req, const char *name, const char *v, int def, int lo,
                         int hi, int *out)
{
    if (!v || !*v) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || *end || x < lo || x > hi) {
        clmr__http_error(req, 400, "invalid_argument",
                         "query parameter '%s' must be an integer from %d to %d", name, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_bool_arg(clmr_http_req_t *req, const char *name, const char *v, int *out)
{
    *out = 0;
    if (!v || !*v || !strcmp(v, "false") || !strcmp(v, "0")) return 0;
    if (!strcmp(v, "true") || !strcmp(v, "1")) {
        *out = 1;
        return 0;
    }
    clmr__http_error(req, 400, "invalid_argument", "query parameter '%s' must be true or false",
                     name);
    return -1;
}

static void sha256_hex(const void *data, size_t n, char out[65])
{
    struct AVSHA *sha = av_sha_alloc();
    uint8_t d[32];
    if (!sha || av_sha_init(sha, 256) < 0) {
        memset(d, 0, sizeof d); /* cannot happen short of OOM; an all-zero id is refused below */
    } else {
        const uint8_t *p = data;
        while (n) { /* av_sha_update takes an unsigned int length */
            unsigned int step = n > (1u << 30) ? (1u << 30) : (unsigned int)n;
            av_sha_update(sha, p, step);
            p += step;
            n -= step;
        }
        av_sha_final(sha, d);
    }
    av_free(sha);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* ---------------------------------------------------------------- route table */

enum { BODY_NONE = 0, BODY_UPLOAD, BODY_JSON, BODY_ADMIN, BODY_PATCH };
#define ADMIN_BODY_LIMIT (64u * 1024u)

/* One row per (method, path): where it runs, what body it takes and the scope a caller needs
 * (auth.h). A GET row answers HEAD too. Path segments in braces are parameters: {track} is a
 * track id (64 hex digits; anything else is a 400), {job} and {key} positive integers, {model} a
 * model id. New routes only add a row here: matching, 405's Allow, the body limit and the access
 * check all come from the table. */
typedef struct {
    const char *method;
    const char *path;
    clmr_route_t route;
    clmr_scope_t scope;
    int pool;
    int body;
    int admin_op;
} route_def_t;

static const route_def_t ROUTES[] = {
    {"GET", "/healthz", R_HEALTHZ, CLMR_SCOPE_PUBLIC, CLMR_POOL_INLINE, BODY_NONE, 0},
    /* the database probe may wait (bounded) for a reader: off the polling thread */
    {"GET", "/readyz", R_READYZ, CLMR_SCOPE_PUBLIC, CLMR_POOL_CATALOGUE, BODY_NONE, 0},
    {"GET", "/metrics", R_METRICS, CLMR_SCOPE_PUBLIC, CLMR_POOL_INLINE, BODY_NONE, 0},
    {"GET", "/v1/openapi.json", R_OPENAPI, CLMR_SCOPE_PUBLIC, CLMR_POOL_INLINE, BODY_NONE, 0},
    {"GET", "/v1/config", R_CONFIG, CLMR_SCOPE_READ, CLMR_POOL_INLINE, BODY_NONE, 0},
    {"GET", "/v1/tags", R_TAGS, CLMR_SCOPE_READ, CLMR_POOL_INLINE, BODY_NONE, 0},
    {"GET", "/v1/models", R_MODELS, CLMR_SCOPE_READ, CLMR_POOL_CATALOGUE, BODY_NONE, 0},
    {"POST", "/v1/tag", R_TAG, CLMR_SCOPE_READ, CLMR_POOL_INFERENCE, BODY_UPLOAD, 0},
    {"POST", "/v1/similar", R_SIMILAR, CLMR_SCOPE_READ, CLMR_POOL_INFERENCE, BODY_UPLOAD, 0},
    {"POST", "/v1/search", R_SEARCH, CLMR_SCOPE_READ, CLMR_POOL_CATALOGUE, BODY_JSON, 0},
    {"GET", "/v1/tracks", R_TRACKS, CLMR_SCOPE_READ, CLMR_POOL_CATALOGUE, BODY_NONE, 0},
    {"POST", "/v1/tracks", R_TRACKS, CLMR_SCOPE_WRITE, CLMR_POOL_INFERENCE, BODY_UPLOAD, 0},
    {"GET", "/v1/tracks/{track}", R_TRACK, CLMR_SCOPE_READ, CLMR_POOL_CATALOGUE, BODY_NONE, 0},
    {"PATCH", "/v1/tracks/{track}", R_TRACK, CLMR_SCOPE_WRITE, CLMR_POOL_CATALOGUE, BODY_PATCH, 0},
    {"DELETE", "/v1/tracks/{track}", R_TRACK, CLMR_SCOPE_WRITE, CLMR_POOL_CATALOGUE, BODY_NONE, 0},
    {"GET", "/v1/tracks/{track}/similar", R_TRACK_SIM, CLMR_SCOPE_READ, CLMR_POOL_CATALOGUE,
     BODY_NONE, 0},
    {"GET", "/v1/tracks/{track}/audio", R_TRACK_AUDIO, CLMR_SCOPE_READ, CLMR_POOL_CATALOGUE,
     BODY_NONE, 0},
    {"GET", "/v1/tracks/{track}/embedding", R_TRACK_EMB, CLMR_SCOPE_READ, CLMR_POOL_CATALOGUE,
     BODY_NONE, 0},
    {"GET", "/v1/export", R_EXPORT, CLMR_SCOPE_READ, CLMR_POOL_CATALOGUE, BODY_NONE, 0},
    {"POST", "/v1/admin/finetune", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE, BODY_ADMIN,
     ADMIN_FINETUNE},
    {"GET", "/v1/admin/jobs", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE, BODY_NONE,
     ADMIN_JOBS},
    {"GET", "/v1/admin/jobs/{job}", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE, BODY_NONE,
     ADMIN_JOB},
    {"DELETE", "/v1/admin/jobs/{job}", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE, BODY_NONE,
     ADMIN_JOB},
    {"POST", "/v1/admin/models/{model}/activate", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE,
     BODY_ADMIN, ADMIN_ACTIVATE},
    {"POST", "/v1/admin/models/{model}/rollback-to", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE,
     BODY_ADMIN, ADMIN_ROLLBACK},
    {"GET", "/v1/admin/keys", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE, BODY_NONE,
     ADMIN_KEYS},
    {"POST", "/v1/admin/keys", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE, BODY_ADMIN,
     ADMIN_KEYS},
    {"DELETE", "/v1/admin/keys/{key}", R_ADMIN, CLMR_SCOPE_ADMIN, CLMR_POOL_CATALOGUE, BODY_NONE,
     ADMIN_KEY},
};
#define N_ROUTES (sizeof ROUTES / sizeof ROUTES[0])

/* 1 for a path a client should never send: empty segments, "." or ".." segments (also once
 * percent-decoded: libmicrohttpd hands the path over decoded), a '%' left after decoding (double
 * encoding) or a backslash. A proxy's allow-list matches text, so such paths could reach a route
 * its rule was meant to cover under another spelling. */
static int path_unsafe(const char *url)
{
    if (url[0] != '/' || strchr(url, '%') || strchr(url, '\\')) return 1;
    for (const char *p = url; *p; p++) {
        if (*p != '/') continue;
        const char *seg = p + 1, *end = strchr(seg, '/');
        size_t n = end ? (size_t)(end - seg) : strlen(seg);
        if (n == 0 && (end || p != url)) return 1; /* "//" or a trailing slash */
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.')) return 1;
    }
    return 0;
}

/* Matches url against pattern; fills req->id from the parameter. Returns 1 on a match, 0
 * otherwise, and -1 when the shape matches but a {track} id is malformed (a 400). */
static int path_match(clmr_http_req_t *req, const char *pattern, const char *url)
{
    const char *p = pattern, *u = url;
    char id[65] = "";
    int bad = 0;
    while (*p && *u) {
        if (*p == '{') {
            const char *pe = strchr(p, '}'), *ue = strchr(u, '/');
            size_t pn = (size_t)(pe - p) + 1, un = ue ? (size_t)(ue - u) : strlen(u);
            if (un == 0) return 0;
            if (!strncmp(p, "{track}", pn)) {
                if (!is_hex64(u, un)) {
                    bad = 1;
                } else {
                    for (size_t i = 0; i < 64; i++)
                        id[i] = (char)tolower((unsigned char)u[i]);
                    id[64] = 0;
                }
            } else if (!strncmp(p, "{model}", pn)) {
                if (un >= sizeof id) return 0;
                for (size_t i = 0; i < un; i++)
                    if (!isalnum((unsigned char)u[i]) && u[i] != '-' && u[i] != '_' && u[i] != '.')
                        return 0;
                memcpy(id, u, un);
                id[un] = 0;
            } else { /* {job}, {key}: a positive integer */
                if (un > 18) return 0;
                for (size_t i = 0; i < un; i++)
                    if (!isdigit((unsigned char)u[i])) return 0;
                long long v = strtoll(u, NULL, 10);
                if (v < 1) return 0;
                snprintf(id, sizeof id, "%lld", v);
            }
            p += pn;
            u += un;
            continue;
        }
        if (*p != *u) return 0;
        p++;
        u++;
    }
    if (*p || *u) return 0;
    if (bad) return -1;
    memcpy(req->id, id, sizeof id);
    return 1;
}

int clmr__route_match(clmr_http_req_t *req, const char *method, const char *url, int *pool,
                      size_t *body_limit)
{
    *pool = CLMR_POOL_INLINE;
    *body_limit = 0;
    req->route = R_UNKNOWN;
    if (path_unsafe(url)) {
        clmr__http_error(req, 400, "invalid_path",
                         "the path must not contain empty, '.' or '..' segments, '%%' or '\\'");
        return -1;
    }
    int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
    /* Nothing about the admin API is revealed (not even 404 vs 405) without an admin
     * credential. */
    if (!strcmp(url, "/v1/admin") || !strncmp(url, "/v1/admin/", 10)) {
        req->route = R_ADMIN;
        if (clmr__auth_allow(req, CLMR_SCOPE_ADMIN)) return -1;
    }
    const route_def_t *hit = NULL;
    char allow[64] = "";
    int shape = 0, bad_id = 0;
    for (size_t i = 0; i < N_ROUTES; i++) {
        const route_def_t *r = &ROUTES[i];
        int m = path_match(req, r->path, url);
        if (m < 0) bad_id = 1;
        if (m <= 0) continue;
        shape = 1;
        req->route = r->route;
        size_t al = strlen(allow);
        snprintf(allow + al, sizeof allow - al, "%s%s", al ? ", " : "",
                 !strcmp(r->method, "GET") ? "GET, HEAD" : r->method);
        if (!hit && (!strcmp(r->method, method) || (is_get && !strcmp(r->method, "GET")))) hit = r;
    }
    if (!shape) {
        if (bad_id) {
            req->route = R_TRACK;
            clmr__http_error(req, 400, "invalid_id",
                             "track ids are 64 hexadecimal digits (sha256)");
            return -1;
        }
        if (req->route != R_ADMIN) req->route = R_UNKNOWN;
        clmr__http_error(req, 404, "not_found", "no route %s %s", method, url);
        return -1;
    }
    if (!hit) {
        snprintf(req->allow, sizeof req->allow, "%s", allow);
        clmr__http_error(req, 405, "method_not_allowed", "%s is not allowed here; allowed: %s",
                         method, allow);
        return -1;
    }
    req->route = hit->route;
    req->admin_op = hit->admin_op;
    if (hit->scope != CLMR_SCOPE_ADMIN && clmr__auth_allow(req, hit->scope)) return -1;
    *pool = hit->pool;
    *body_limit = hit->body == BODY_UPLOAD  ? (size_t)req->srv->cfg.max_upload_bytes
                  : hit->body == BODY_JSON  ? SEARCH_BODY_LIMIT
                  : hit->body == BODY_ADMIN ? ADMIN_BODY_LIMIT
                  : hit->body == BODY_PATCH ? PATCH_BODY_LIMIT
                                            : 0;
    return 0;
}

/* ---------------------------------------------------------------- JSON builders */

typedef struct {
    int tag;
    float score;
} ranked_t;

static int by_score_desc(const void *a, const void *b)
{
    const ranked_t *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->tag - y->tag;
}

/* One tag of a response: its score, whether the model's tag policy trusts it on real audio, and
 * the policy's decision threshold with the yes/no decision (null without a threshold). */
static json_t *tag_entry_json(const clmr_http_model_info_t *info, int tag, float score)
{
    const char *name = tag < info->n_tags ? info->tags[tag] : "?";
    double thr = clmr_tag_policy_threshold(info->policy, tag);
    json_t *e = json_pack("{s:s,s:f,s:b}", "tag", name, "score", (double)score, "trusted",
                          clmr_tag_policy_trusted(info->policy, tag));
    json_object_set_new(e, "threshold", thr >= 0 ? json_real(thr) : json_null());
    json_object_set_new(e, "decision", thr >= 0 ? json_boolean(score >= (float)thr) : json_null());
    return e;
}

/* [{"tag","score",...}...] highest first, score >= threshold, at most top entries; tags the model's
 * policy does not trust are left out unless all (?all=1). */
json_t *clmr__tags_json(const clmr_http_model_info_t *info, const float *scores, int n, int top,
                        double threshold, int all)
{
    json_t *a = json_array();
    if (!scores || n <= 0) return a;
    ranked_t *r = malloc((size_t)n * sizeof *r);
    if (!r) return a;
    for (int i = 0; i < n; i++)
        r[i] = (ranked_t){i, scores[i]};
    qsort(r, (size_t)n, sizeof *r, by_score_desc);
    for (int i = 0, shown = 0; i < n && shown < top; i++) {
        if (!(r[i].score >= (float)threshold)) break; /* compare as the float that was printed */
        if (!all && !clmr_tag_policy_trusted(info->policy, r[i].tag)) continue;
        json_array_append_new(a, tag_entry_json(info, r[i].tag, r[i].score));
        shown++;
    }
    free(r);
    return a;
}

/* Sets "tags" and "tags_hidden" (how many untrusted tags were left out) on a response object. */
static void set_tags(json_t *j, const clmr_http_model_info_t *info, const float *scores, int n,
                     int top, double threshold, int all)
{
    json_object_set_new(j, "tags", clmr__tags_json(info, scores, n, top, threshold, all));
    json_object_set_new(j, "tags_hidden",
                        json_integer(all ? 0 : clmr_tag_policy_n_untrusted(info->policy)));
}

/* ?all= (show untrusted tags); on a bad value the 400 is prepared and -1 returned. */
static int all_arg(clmr_http_req_t *req, int *all)
{
    return parse_bool_arg(req, "all", req->q_all, all);
}

static json_t *floats_json(const float *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(isfinite(v[i]) ? v[i] : 0.0));
    return a;
}

json_t *clmr__track_json(const clmr_track_record_t *t)
{
    json_t *j = json_pack("{s:s,s:f,s:I}", "id", t->id, "duration_s", t->duration_s, "created_at",
                          (json_int_t)t->created_at);
    json_object_set_new(j, "title", t->title ? json_string(t->title) : json_null());
    json_object_set_new(j, "artist", t->artist ? json_string(t->artist) : json_null());
    json_object_set_new(j, "external_id",
                        t->external_id ? json_string(t->external_id) : json_null());
    return j;
}

/* Track JSON plus its metadata, descriptors and tags for the active model (when stored). */
json_t *clmr__track_full_json(clmr_http_req_t *req, const clmr_track_record_t *t)
{
    const clmr_http_model_info_t *info = &req->sm->info;
    json_t *j = clmr__track_json(t);
    clmr_track_extra_t x;
    if (clmr_store_track_extra_get(req->srv->store, t->id, &x, NULL) == 0)
        clmr__track_extra_json(j, &x);
    clmr_track_extra_clear(&x);
    float *sc = NULL;
    int n = 0;
    if (clmr_store_scores_get(req->srv->store, t->id, info->id, &sc, &n, NULL) == 0) {
        /* the route validated ?all= with all_arg before rendering */
        int all = !strcmp(req->q_all, "1") || !strcmp(req->q_all, "true");
        json_object_set_new(j, "model", json_string(info->id));
        set_tags(j, info, sc, n, n, 0.0, all);
    }
    free(sc);
    return j;
}

/* [{"code","message"}...]: what looked wrong with a file that still decoded. */
static json_t *warnings_json(const clmr_http_analysis_t *a)
{
    json_t *w = json_array();
    for (int i = 0; i < a->n_warnings; i++)
        json_array_append_new(w, json_pack("{s:s,s:s}", "code", a->warnings[i].code, "message",
                                           a->warnings[i].message));
    return w;
}

/* Search results with their metadata. */
static json_t *hits_json(clmr_server_t *s, const clmr_index_hit_t *hits, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++) {
        clmr_track_record_t t;
        memset(&t, 0, sizeof t);
        json_t *h;
        if (clmr_store_track_get(s->store, hits[i].id, &t, NULL) == 0) {
            h = clmr__track_json(&t);
            clmr_track_record_clear(&t);
        } else { /* deleted between the search and now: still report the hit */
            h = json_pack("{s:s}", "id", hits[i].id);
        }
        /* "similarity" is the cosine similarity; "score" is its old name (deprecated: in tag
         * lists "score" is a probability), kept until the next major version. */
        json_object_set_new(h, "similarity", json_real(hits[i].score));
        json_object_set_new(h, "score", json_real(hits[i].score));
        json_array_append_new(a, h);
    }
    return a;
}

static void store_error(clmr_http_req_t *req, int rc, char *msg, const char *what)
{
    if (clmr__http_status_for(rc) >= 500)
        CLMR_RLOG_ERROR(req->request_id, "%s: %s (%s)", what, clmr_strerror(rc), msg ? msg : "");
    clmr__http_error_clmr(req, rc, msg);
}

/* ---------------------------------------------------------------- cheap routes */

static void h_readyz(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    int version = 0;
    char *msg = NULL;
    /* Bounded: with every reader connection held by long reads the probe answers 503 within
     * READYZ_DB_WAIT_MS instead of waiting (it runs on the catalogue pool, never the polling
     * thread). */
    int rc = s->store ? clmr_store_ping(s->store, READYZ_DB_WAIT_MS, &version, &msg) : CLMR_EDB;
    if (!req->sm->model || rc) {
        req->retry_after = s->cfg.retry_after_s;
        clmr__http_error(req, 503, "not_ready", "%s",
                         !req->sm->model    ? "model not loaded"
                         : rc == CLMR_EBUSY ? "database busy: no connection came free in time"
                                            : "database not usable");
    } else {
        clmr__http_json(req, 200,
                        json_pack("{s:s,s:s,s:i}", "status", "ready", "model", req->sm->info.id,
                                  "schema_version", version));
    }
    free(msg);
}

static void h_config(clmr_http_req_t *req)
{
    json_t *j = json_object();
    for (const clmr_config_key_t *k = clmr_config_keys; k->name; k++) {
        if (k->secret) {
            /* The token file path is no secret in itself, but say only whether it is set. */
            const char *v = (const char *)&req->srv->cfg + k->offset;
            json_object_set_new(j, k->name, json_string(*v ? "(set)" : ""));
            continue;
        }
        char buf[CLMR_CONFIG_PATH_MAX + 32];
        clmr_config_format_value(&req->srv->cfg, k, buf, sizeof buf);
        if (k->type == CLMR_CFG_INT || k->type == CLMR_CFG_BYTES)
            json_object_set_new(j, k->name, json_integer(strtoll(buf, NULL, 10)));
        else if (k->type == CLMR_CFG_DOUBLE)
            json_object_set_new(j, k->name, json_real(strtod(buf, NULL)));
        else
            json_object_set_new(j, k->name, json_string(buf));
    }
    clmr__http_json(req, 200, j);
}

static void h_models(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    const clmr_http_model_info_t *info = &req->sm->info;
    clmr_store_model_t *items = NULL;
    size_t n = 0;
    char *msg = NULL;
    int rc = clmr_store_model_list(s->store, &items, &n, &msg);
    if (rc) {
        store_error(req, rc, msg, "model list");
        free(msg);
        return;
    }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_pack("{s:s,s:s,s:b,s:I}", "id", items[i].id, "status",
                              clmr_model_status_name(items[i].status), "loaded",
                              strcmp(items[i].id, info->id) == 0, "created_at",
                              (json_int_t)items[i].created_at);
        json_object_set_new(m, "name", items[i].name ? json_string(items[i].name) : json_null());
        json_object_set_new(m, "parent_id",
                            items[i].parent_id ? json_string(items[i].parent_id) : json_null());
        if (!strcmp(items[i].id, info->id)) {
            json_object_set_new(m, "n_tags", json_integer(info->n_tags));
            json_object_set_new(m, "embedding_dim", json_integer(info->dim));
            json_object_set_new(m, "chunk_samples", json_integer(info->chunk_samples));
            /* the arithmetic it runs with (configuration key precision, auto resolved) */
            json_object_set_new(m, "precision", json_string(clmr_http_infer_precision()));
        }
        json_t *meta = items[i].metadata_json ? json_loads(items[i].metadata_json, 0, NULL) : NULL;
        if (meta) json_object_set_new(m, "metadata", meta);
        json_array_append_new(a, m);
    }
    clmr_store_model_list_free(items, n);
    /* "active" serves tags and ingest; "search" is the model whose embeddings the similarity
     * index holds (it differs from "active" only while the catalogue is being re-embedded). */
    json_t *st = clmr__rollover_state(s);
    json_object_set_new(st, "models", a);
    clmr__http_json(req, 200, st);
}

static void h_track_get(clmr_http_req_t *req)
{
    clmr_track_record_t t;
    memset(&t, 0, sizeof t);
    char *msg = NULL;
    int all;
    if (all_arg(req, &all)) return;
    int rc = clmr_store_track_get(req->srv->store, req->id, &t, &msg);
    if (rc == CLMR_ENOT_FOUND)
        clmr__http_error(req, 404, "not_found", "no track %s", req->id);
    else if (rc)
        store_error(req, rc, msg, "track get");
    else
        clmr__http_json(req, 200, clmr__track_full_json(req, &t));
    clmr_track_record_clear(&t);
    free(msg);
}

static void h_track_delete(clmr_http_req_t *req)
{
    char *msg = NULL;
    int rc = clmr_store_track_delete(req->srv->store, req->id, &msg);
    if (rc == CLMR_ENOT_FOUND) {
        clmr__http_error(req, 404, "not_found", "no track %s", req->id);
    } else if (rc) {
        store_error(req, rc, msg, "track delete");
    } else {
        /* Through roll-over, not this request's models: the served indexes may have changed
         * since the request started, and an index being built must hear of it too. */
        clmr__rollover_forget(req->srv, req->id);
        req->status = 204;
        req->resp_body = NULL;
        req->resp_len = 0;
        req->done = 1;
    }
    free(msg);
}

static void h_track_similar(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    int k, include_dups;
    if (parse_int_arg(req, "k", req->q_k, 10, 1, K_MAX, &k) || clmr__dup_arg(req, &include_dups))
        return;
    clmr_index_hit_t hits[K_MAX];
    int n = 0;
    int rc = clmr__search_filtered(s, atomic_load(&req->ss->index), NULL, req->id, NULL, k,
                                   include_dups, hits, &n);
    if (rc == CLMR_ENOT_FOUND) {
        clmr__http_error(req, 404, "not_found", "no track %s with an embedding for model %s",
                         req->id, req->ss->info.id);
    } else if (rc) {
        clmr__http_error_clmr(req, rc, "similarity search failed");
    } else {
        clmr__http_json(req, 200,
                        json_pack("{s:s,s:s,s:o}", "id", req->id, "model", req->ss->info.id,
                                  "results", hits_json(s, hits, n)));
    }
}

static void h_search(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    json_error_t jerr;
    json_t *j = NULL;
    float *q = NULL;
    if (req->body_len == 0) {
        clmr__http_error(req, 400, "empty_body",
                         "POST /v1/search needs a JSON body: {\"embedding\": [%d numbers], "
                         "\"k\": 10}",
                         req->ss->info.dim);
        goto out;
    }
    j = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) {
        clmr__http_error(req, 400, "invalid_json",
                         "the body is not valid JSON (line %d, column %d: %s)", jerr.line,
                         jerr.column, jerr.text);
        goto out;
    }
    if (!json_is_object(j)) {
        clmr__http_error(req, 400, "invalid_json",
                         "the body must be a JSON object {\"embedding\": [...], \"k\": N}");
        goto out;
    }
    json_t *emb = json_object_get(j, "embedding"), *kj = json_object_get(j, "k");
    json_t *dj = json_object_get(j, "include_duplicates");
    int k = 10;
    if (dj && !json_is_boolean(dj)) {
        clmr__http_error(req, 400, "invalid_argument",
                         "'include_duplicates' must be true or false");
        goto out;
    }
    if (kj) {
        if (!json_is_integer(kj) || json_integer_value(kj) < 1 || json_integer_value(kj) > K_MAX) {
            clmr__http_error(req, 400, "invalid_argument", "'k' must be an integer from 1 to %d",
                             K_MAX);
            goto out;
        }
        k = (int)json_integer_value(kj);
    }
    if (!json_is_array(emb) || (int)json_array_size(emb) != req->ss->info.dim) {
        clmr__http_error(req, 400, "invalid_argument", "'embedding' must be an array of %d numbers",
                         req->ss->info.dim);
        goto out;
    }
    q = malloc((size_t)req->ss->info.dim * sizeof *q);
    if (!q) {
        clmr__http_error_clmr(req, CLMR_ENOMEM, NULL);
        goto out;
    }
    double norm = 0;
    for (int i = 0; i < req->ss->info.dim; i++) {
        json_t *x = json_array_get(emb, (size_t)i);
        double v = json_number_value(x);
        if (!json_is_number(x) || !isfinite(v) || !isfinite((float)v)) {
            clmr__http_error(req, 400, "invalid_argument", "'embedding'[%d] is not a finite number",
                             i);
            goto out;
        }
        q[i] = (float)v;
        norm += v * v;
    }
    if (!(norm > 0)) {
        clmr__http_error(req, 400, "invalid_argument", "'embedding' must not be all zeros");
        goto out;
    }
    clmr_index_hit_t hits[K_MAX];
    int n = 0;
    int rc = clmr__search_filtered(s, atomic_load(&req->ss->index), q, NULL, NULL, k,
                                   json_is_true(dj), hits, &n);
    if (rc)
        clmr__http_error_clmr(req, rc, "search failed");
    else
        clmr__http_json(
            req, 200,
            json_pack("{s:s,s:o}", "model", req->ss->info.id, "results", hits_json(s, hits, n)));
out:
    free(q);
    json_decref(j);
}

void clmr__route_inline(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    switch (req->route) {
    case R_HEALTHZ:
        clmr__http_json(req, 200, json_pack("{s:s}", "status", "ok"));
        break;
    case R_READYZ:
        h_readyz(req);
        break;
    case R_METRICS: {
        size_t n = 0;
        char *text = clmr__metrics_render(s, &n);
        if (!text) {
            clmr__http_error_clmr(req, CLMR_ENOMEM, NULL);
            break;
        }
        req->resp_body = text;
        req->resp_len = n;
        req->resp_type = "text/plain; version=0.0.4; charset=utf-8";
        req->status = 200;
        req->done = 1;
        break;
    }
    case R_OPENAPI:
        req->resp_body = malloc(clmr__openapi_json_len);
        if (!req->resp_body) {
            clmr__http_error_clmr(req, CLMR_ENOMEM, NULL);
            break;
        }
        memcpy(req->resp_body, clmr__openapi_json, clmr__openapi_json_len);
        req->resp_len = clmr__openapi_json_len;
        req->resp_type = "application/json";
        req->status = 200;
        req->done = 1;
        break;
    case R_CONFIG:
        h_config(req);
        break;
    case R_TAGS: {
        json_t *a = json_array();
        json_t *pol = json_array(); /* the tag policy per tag (tag_policy.h) */
        for (int i = 0; i < req->sm->info.n_tags; i++) {
            json_array_append_new(a, json_string(req->sm->info.tags[i]));
            double thr = clmr_tag_policy_threshold(req->sm->info.policy, i);
            json_t *e = json_pack("{s:s,s:b}", "tag", req->sm->info.tags[i], "trusted",
                                  clmr_tag_policy_trusted(req->sm->info.policy, i));
            json_object_set_new(e, "threshold", thr >= 0 ? json_real(thr) : json_null());
            json_array_append_new(pol, e);
        }
        clmr__http_json(req, 200,
                        json_pack("{s:s,s:o,s:b,s:o}", "model", req->sm->info.id, "tags", a,
                                  "has_tag_policy", req->sm->info.policy != NULL, "tag_policy",
                                  pol));
        break;
    }
    case R_MODELS:
        h_models(req);
        break;
    case R_TRACKS:
        clmr__h_tracks_query(req);
        break;
    case R_TRACK:
        if (!strcmp(req->method, "DELETE"))
            h_track_delete(req);
        else if (!strcmp(req->method, "PATCH"))
            clmr__h_track_patch(req);
        else
            h_track_get(req);
        break;
    case R_TRACK_AUDIO:
        clmr__h_track_audio(req);
        break;
    case R_TRACK_EMB:
        clmr__h_track_embedding(req);
        break;
    case R_EXPORT:
        clmr__h_export(req);
        break;
    case R_TRACK_SIM:
        h_track_similar(req);
        break;
    case R_ADMIN:
        clmr__admin_handle(req);
        break;
    case R_SEARCH:
        h_search(req);
        break;
    default:
        clmr__http_error(req, 404, "not_found", "no route %s %s", req->method, req->path);
    }
}

/* ---------------------------------------------------------------- upload routes (workers) */

typedef struct {
    const unsigned char *audio;
    size_t audio_len;
    char *title, *artist, *external_id;        /* malloc'd copies, NUL-terminated */
    char *album, *genre, *year, *track_number; /* idem (issue 17; numbers parsed at ingest) */
} upload_t;

static char *dup_span(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* Metadata must be short, valid UTF-8 text without NULs. */
static int meta_ok(clmr_http_req_t *req, const char *name, const char *v)
{
    if (!v) return 1;
    size_t n = strlen(v);
    json_t *probe = n <= META_MAX ? json_stringn(v, n) : NULL;
    if (!probe) {
        clmr__http_error(req, 400, "invalid_argument",
                         "'%s' must be UTF-8 text of at most %d bytes", name, META_MAX);
        return 0;
    }
    json_decref(probe);
    return 1;
}

/* An optional integer form field / query parameter from 1 to hi. */
static int upload_int(clmr_http_req_t *req, const char *name, const char *v, int hi)
{
    if (!v) return 0;
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < 1 || x > hi) {
        clmr__http_error(req, 400, "invalid_argument", "'%s' must be an integer from 1 to %d", name,
                         hi);
        return -1;
    }
    return 0;
}

static int read_upload(clmr_http_req_t *req, upload_t *u)
{
    memset(u, 0, sizeof *u);
    u->audio = req->body;
    u->audio_len = req->body_len;
    if (req->content_type && !strncasecmp(req->content_type, "multipart/form-data", 19)) {
        char boundary[CLMR_MULTIPART_BOUNDARY_MAX + 1], *msg = NULL;
        clmr_multipart_part_t parts[16];
        int np = 0;
        if (clmr_multipart_boundary(req->content_type, boundary, sizeof boundary, &msg) ||
            clmr_multipart_parse(req->body, req->body_len, boundary, parts, 16, &np, &msg)) {
            clmr__http_error(req, 400, "invalid_multipart", "%s",
                             msg ? msg : "malformed multipart body");
            free(msg);
            return -1;
        }
        const clmr_multipart_part_t *f = clmr_multipart_find(parts, np, "file");
        if (!f) {
            clmr__http_error(req, 400, "invalid_multipart",
                             "multipart body without a 'file' field");
            return -1;
        }
        u->audio = f->data;
        u->audio_len = f->size;
        static const char *const names[7] = {"title", "artist", "external_id", "album",
                                             "genre", "year",   "track_number"};
        char **dst[7] = {&u->title, &u->artist, &u->external_id, &u->album,
                         &u->genre, &u->year,   &u->track_number};
        for (int i = 0; i < 7; i++) {
            const clmr_multipart_part_t *p = clmr_multipart_find(parts, np, names[i]);
            if (!p) continue;
            if (memchr(p->data, 0, p->size) || p->size > META_MAX) {
                clmr__http_error(req, 400, "invalid_argument",
                                 "'%s' must be text of at most %d bytes", names[i], META_MAX);
                return -1;
            }
            if (!(*dst[i] = dup_span(p->data, p->size)))
                return clmr__http_error_clmr(req, CLMR_ENOMEM, NULL), -1;
        }
    }
    if (req->q_nul) {
        clmr__http_error(req, 400, "invalid_argument",
                         "query parameters must not contain NUL bytes");
        return -1;
    }
    /* Query parameters fill what the form did not give. */
    if (!u->title && req->q_title) u->title = strdup(req->q_title);
    if (!u->artist && req->q_artist) u->artist = strdup(req->q_artist);
    if (!u->external_id && req->q_external_id) u->external_id = strdup(req->q_external_id);
    static const char *const more[4] = {"album", "genre", "year", "track_number"};
    char **mdst[4] = {&u->album, &u->genre, &u->year, &u->track_number};
    for (int i = 0; i < 4; i++) {
        const char *v = clmr__qarg(req, more[i]);
        if (!*mdst[i] && v && *v && !(*mdst[i] = strdup(v)))
            return clmr__http_error_clmr(req, CLMR_ENOMEM, NULL), -1;
    }
    if (!meta_ok(req, "title", u->title) || !meta_ok(req, "artist", u->artist) ||
        !meta_ok(req, "external_id", u->external_id) || !meta_ok(req, "album", u->album) ||
        !meta_ok(req, "genre", u->genre))
        return -1;
    if (upload_int(req, "year", u->year, 9999) ||
        upload_int(req, "track_number", u->track_number, 99999))
        return -1;
    if (u->audio_len == 0) {
        clmr__http_error(req, 400, "empty_input", "the request carries no audio bytes");
        return -1;
    }
    return 0;
}

static void upload_free(upload_t *u)
{
    free(u->title);
    free(u->artist);
    free(u->external_id);
    free(u->album);
    free(u->genre);
    free(u->year);
    free(u->track_number);
}

/* Decodes + analyses; on failure the error response is prepared and -1 returned. */
static int analyze(clmr_http_req_t *req, clmr_infer_t *ctx, const upload_t *u,
                   clmr_http_analysis_t *a)
{
    clmr_server_t *s = req->srv;
    char *msg = NULL;
    double left = req->deadline - clmr__http_now();
    int rc = clmr_http_analyze(a, ctx, u->audio, u->audio_len, (size_t)s->cfg.max_upload_bytes,
                               s->cfg.max_duration_s, left, &msg);
    if (rc == CLMR_EAUDIO_TIMEOUT && clmr__http_now() >= req->deadline) {
        /* The decode was cut short by the request's own deadline (time spent uploading and
         * queued counts): the server was too slow, not the file too hard. */
        req->retry_after = s->cfg.retry_after_s;
        clmr__http_error(req, 503, "deadline_exceeded",
                         "the request deadline of %g s passed while decoding",
                         s->cfg.request_timeout_s);
        free(msg);
        return -1;
    }
    if (rc) {
        if (clmr__http_status_for(rc) >= 500)
            CLMR_RLOG_ERROR(req->request_id, "analysis: %s (%s)", clmr_strerror(rc),
                            msg ? msg : "");
        else
            CLMR_RLOG_INFO(req->request_id, "refused upload: %s (%s)", clmr_err_name(rc),
                           msg ? msg : "");
        if (rc == CLMR_EAUDIO_TOO_LONG || rc == CLMR_EAUDIO_TOO_LARGE) {
            char *m2 = NULL; /* name the setting an operator would change */
            clmr_set_err(&m2, rc, "%s (configuration key '%s')", msg ? msg : clmr_strerror(rc),
                         rc == CLMR_EAUDIO_TOO_LONG ? "max-duration-s" : "max-upload-bytes");
            free(msg);
            msg = m2;
        }
        clmr__http_error_clmr(req, rc, msg);
        free(msg);
        return -1;
    }
    clmr__metrics_add(&s->metrics, a->decode_s, a->infer_s, 0, 1);
    return 0;
}

static void cache_store(clmr_http_req_t *req, const char *model_id, const char *sha,
                        const clmr_http_analysis_t *a)
{
    clmr_tag_result_t r;
    memset(&r, 0, sizeof r);
    snprintf(r.sha256, sizeof r.sha256, "%s", sha);
    snprintf(r.model_id, sizeof r.model_id, "%s", model_id);
    r.duration_s = a->duration_s;
    r.chunks = a->n_chunks;
    r.scores = a->scores;
    r.n_scores = a->n_tags;
    r.embedding = a->emb;
    r.dim = a->dim;
    snprintf(r.precision, sizeof r.precision, "%s", clmr_http_infer_precision());
    char *msg = NULL;
    /* A failed cache write only costs a later recomputation. */
    if (clmr_store_cache_put(req->srv->store, &r, &msg))
        CLMR_RLOG_WARN(req->request_id, "cache write failed: %s", msg ? msg : "");
    free(msg);
}

/* The query arguments of POST /v1/tag; on a bad one the 400 is prepared and -1 returned. */
static int tag_args(clmr_http_req_t *req, int *top, int *per_chunk, int *want_emb,
                    double *threshold, int *all)
{
    *threshold = 0;
    if (parse_int_arg(req, "top", req->q_top, req->sm->info.n_tags, 1,
                      req->sm->info.n_tags > 0 ? req->sm->info.n_tags : 1, top) ||
        parse_bool_arg(req, "per_chunk", req->q_per_chunk, per_chunk) || all_arg(req, all) ||
        parse_bool_arg(req, "embedding", req->q_embedding, want_emb))
        return -1;
    if (req->q_threshold[0]) {
        char *end;
        *threshold = strtod(req->q_threshold, &end);
        if (*end || !(*threshold >= 0 && *threshold <= 1)) {
            clmr__http_error(req, 400, "invalid_argument",
                             "query parameter 'threshold' must be a number from 0 to 1");
            return -1;
        }
    }
    return 0;
}

/* Answers from the tag cache when it holds (sha, active model) with what the request needs.
 * Returns 1 when the response is prepared, 0 on a miss. Per-chunk scores are not cached. */
static int tag_from_cache(clmr_http_req_t *req, const char *sha, int top, int per_chunk,
                          int want_emb, double threshold, int all)
{
    clmr_server_t *s = req->srv;
    if (per_chunk) return 0;
    clmr_tag_result_t r;
    memset(&r, 0, sizeof r);
    /* A result computed in another precision (the daemon was restarted with another
     * `precision`) is a miss: recomputed, and the row replaced. */
    int hit = clmr_store_cache_get(s->store, sha, req->sm->info.id, &r, NULL) == 0 &&
              (!want_emb || r.embedding) && !strcmp(r.precision, clmr_http_infer_precision());
    if (hit) {
        clmr__metrics_add(&s->metrics, 0, 0, 1, 0);
        json_t *j = json_pack("{s:s,s:s,s:s,s:f,s:i,s:b}", "id", sha, "model", req->sm->info.id,
                              "precision", r.precision, "duration_s", r.duration_s, "chunks",
                              r.chunks, "cached", 1);
        set_tags(j, &req->sm->info, r.scores, r.n_scores, top, threshold, all);
        if (want_emb) json_object_set_new(j, "embedding", floats_json(r.embedding, r.dim));
        clmr__http_json(req, 200, j);
    }
    clmr_tag_result_clear(&r);
    return hit;
}

static void job_tag(clmr_http_req_t *req, clmr_infer_t *ctx, const upload_t *u, const char *sha)
{
    int top, per_chunk, want_emb, all;
    double threshold;
    if (tag_args(req, &top, &per_chunk, &want_emb, &threshold, &all)) return;
    /* A hit here is rare (the cache probe answered it before queueing) but possible when the
     * same song was being analysed while this request waited. */
    if (tag_from_cache(req, sha, top, per_chunk, want_emb, threshold, all)) return;
    json_t *j = NULL;
    clmr_http_analysis_t a;
    if (analyze(req, ctx, u, &a)) return;
    cache_store(req, req->sm->info.id, sha, &a);
    j = json_pack("{s:s,s:s,s:s,s:f,s:i,s:b}", "id", sha, "model", req->sm->info.id, "precision",
                  clmr_http_infer_precision(), "duration_s", a.duration_s, "chunks", a.n_chunks,
                  "cached", 0);
    set_tags(j, &req->sm->info, a.scores, a.n_tags, top, threshold, all);
    if (want_emb) json_object_set_new(j, "embedding", floats_json(a.emb, a.dim));
    json_object_set_new(j, "warnings", warnings_json(&a));
    if (per_chunk) {
        json_t *pc = json_array();
        double step = (double)req->sm->info.chunk_samples /
                      (req->sm->info.sample_rate > 0 ? req->sm->info.sample_rate : 22050);
        for (int c = 0; c < a.n_chunks; c++)
            json_array_append_new(
                pc,
                json_pack("{s:f,s:o,s:o}", "start_s", c * step, "tags",
                          clmr__tags_json(&req->sm->info, a.chunk_scores + (size_t)c * a.n_tags,
                                          a.n_tags, top, threshold, all),
                          "scores", floats_json(a.chunk_scores + (size_t)c * a.n_tags, a.n_tags)));
        json_object_set_new(j, "per_chunk", pc);
    }
    clmr_http_analysis_free(&a);
    clmr__http_json(req, 200, j);
}

static void job_ingest(clmr_http_req_t *req, clmr_infer_t *ctx, const upload_t *u, const char *sha)
{
    clmr_server_t *s = req->srv;
    char *msg = NULL;
    int all;
    if (all_arg(req, &all)) return;
    clmr_track_record_t t;
    memset(&t, 0, sizeof t);
    int rc = clmr_store_track_get(s->store, sha, &t, &msg);
    int had_track = rc == 0;
    if (rc == 0) {
        float *sc = NULL;
        int n = 0;
        int have = clmr_store_scores_get(s->store, sha, req->sm->info.id, &sc, &n, NULL) == 0;
        free(sc);
        if (have) { /* already catalogued for this model: 200 with the stored track */
            snprintf(req->location, sizeof req->location, "/v1/tracks/%s", sha);
            clmr__http_json(req, 200, clmr__track_full_json(req, &t));
            clmr_track_record_clear(&t);
            return;
        }
    } else if (rc != CLMR_ENOT_FOUND) {
        store_error(req, rc, msg, "track get");
        free(msg);
        return;
    }
    clmr_track_record_clear(&t);
    free(msg);
    msg = NULL;

    clmr_http_analysis_t a;
    if (analyze(req, ctx, u, &a)) return;
    char rel[128];
    char full[CLMR_CONFIG_PATH_MAX + 128];
    rc = clmr_pool_path(clmr_store_pool_dir(s->store), sha, full, sizeof full, rel, sizeof rel);
    if (!rc) rc = clmr_pool_write(clmr_store_pool_dir(s->store), sha, a.samples, a.n_samples, &msg);
    if (rc) {
        store_error(req, rc, msg, "pool write");
        goto out;
    }
    memset(&t, 0, sizeof t);
    snprintf(t.id, sizeof t.id, "%s", sha);
    /* The upload's fields win over the file's own tags. */
    t.title = u->title ? u->title : (char *)a.meta_title;
    t.artist = u->artist ? u->artist : (char *)a.meta_artist;
    t.external_id = u->external_id;
    t.duration_s = a.duration_s;
    t.audio_path = rel;
    struct stat sb;
    t.audio_bytes = stat(full, &sb) == 0 ? (int64_t)sb.st_size : 0; /* for max-pool-bytes */
    clmr_track_extra_t x;
    clmr_track_extra_init(&x);
    x.album = u->album ? u->album : (char *)a.meta_album;
    x.genre = u->genre ? u->genre : (char *)a.meta_genre;
    x.year = u->year ? atoi(u->year) : a.meta_year;
    x.track_number = u->track_number ? atoi(u->track_number) : a.meta_track_number;
    uint32_t *fp = NULL;
    int fp_n = 0;
    double feat_s = clmr__ingest_features(req, a.samples, a.n_samples, &x, &fp, &fp_n);
    CLMR_RLOG_INFO(req->request_id,
                   "ingest: decode %.1f ms, inference %.1f ms, descriptors+fingerprint %.1f ms",
                   a.decode_s * 1e3, a.infer_s * 1e3, feat_s * 1e3);
    clmr_catalog_ingest_t in = {.track = &t,
                                .extra = &x,
                                .model_id = req->sm->info.id,
                                .emb = a.emb,
                                .dim = a.dim,
                                .scores = a.scores,
                                .n_scores = a.n_tags,
                                .fp = fp,
                                .fp_n = fp_n,
                                .similarity = clmr_fingerprint_similarity,
                                .match_threshold = CLMR_FINGERPRINT_MATCH,
                                .duration_tolerance_s =
                                    clmr_fingerprint_length_tolerance(a.duration_s)};
    int created = 0;
    char dup[65] = "";
    double sim = 0;
    rc = clmr_store_catalog_ingest(s->store, &in, &created, dup, &sim, &msg);
    free(fp);
    if (rc == CLMR_EDB_FULL && !had_track)
        clmr_pool_delete(clmr_store_pool_dir(s->store), sha, NULL); /* refused: no orphan */
    if (rc) {
        store_error(req, rc, msg, "ingest");
        goto out;
    }
    if (dup[0])
        CLMR_RLOG_INFO(req->request_id, "ingest: %s is a duplicate of %s (similarity %.3f)", sha,
                       dup, sim);
    /* Into the active model's index; while the catalogue is being re-embedded for it the index
     * does not exist yet, and the re-embedding picks this row up from the store. */
    clmr_index_t *idx = atomic_load(&req->sm->index);
    if (idx && (rc = clmr_index_upsert(idx, sha, a.emb)))
        CLMR_RLOG_WARN(req->request_id, "index upsert failed: %s", clmr_strerror(rc));
    cache_store(req, req->sm->info.id, sha, &a);
    clmr_track_record_t stored;
    memset(&stored, 0, sizeof stored);
    if (clmr_store_track_get(s->store, sha, &stored, NULL) == 0) {
        snprintf(req->location, sizeof req->location, "/v1/tracks/%s", sha);
        clmr__http_json(req, created ? 201 : 200, clmr__track_full_json(req, &stored));
    } else {
        clmr__http_error_clmr(req, CLMR_EDB, "the track vanished right after ingest");
    }
    clmr_track_record_clear(&stored);
out:
    free(msg);
    clmr_http_analysis_free(&a);
}

static void job_similar(clmr_http_req_t *req, clmr_infer_t *ctx, const upload_t *u, const char *sha)
{
    clmr_server_t *s = req->srv;
    int k, include_dups;
    if (parse_int_arg(req, "k", req->q_k, 10, 1, K_MAX, &k) || clmr__dup_arg(req, &include_dups))
        return;
    float *q = NULL;
    clmr_tag_result_t r;
    memset(&r, 0, sizeof r);
    clmr_http_analysis_t a;
    memset(&a, 0, sizeof a);
    int cached = 0;
    if (clmr_store_cache_get(s->store, sha, req->ss->info.id, &r, NULL) == 0 && r.embedding &&
        r.dim == req->ss->info.dim) {
        q = r.embedding;
        cached = 1;
        clmr__metrics_add(&s->metrics, 0, 0, 1, 0);
    } else {
        /* Query embeddings must come from the model the index holds. During a roll-over that is
         * not the model this worker's context serves: use a temporary context on it. */
        clmr_infer_t *tmp = NULL;
        if (req->ss != req->sm) {
            char *m = NULL;
            if (clmr_http_infer_open(&tmp, req->ss->model, s->cfg.inference_threads, &m)) {
                clmr__http_error_clmr(req, CLMR_EDNNL, m);
                free(m);
                goto out;
            }
        }
        int bad = analyze(req, tmp ? tmp : ctx, u, &a);
        clmr_http_infer_close(&tmp);
        if (bad) goto out;
        cache_store(req, req->ss->info.id, sha, &a);
        q = a.emb;
    }
    clmr_index_hit_t hits[K_MAX];
    int n = 0;
    /* An upload that is itself catalogued is left out, as for GET /v1/tracks/{id}/similar. */
    int rc = clmr__search_filtered(s, atomic_load(&req->ss->index), q, NULL, sha, k, include_dups,
                                   hits, &n);
    if (rc) {
        clmr__http_error_clmr(req, rc, "search failed");
        goto out;
    }
    clmr__http_json(req, 200,
                    json_pack("{s:s,s:s,s:b,s:o}", "id", sha, "model", req->ss->info.id, "cached",
                              cached, "results", hits_json(s, hits, n)));
out:
    clmr_tag_result_clear(&r);
    clmr_http_analysis_free(&a);
}

void clmr__route_job(void *arg, clmr_infer_t *ctx)
{
    clmr_http_req_t *req = arg;
    if (clmr__http_now() > req->deadline) {
        req->retry_after = req->srv->cfg.retry_after_s;
        clmr__http_error(req, 503, "deadline_exceeded",
                         "the request waited in the queue past its deadline of %g s",
                         req->srv->cfg.request_timeout_s);
        return;
    }
    upload_t u;
    if (read_upload(req, &u)) {
        upload_free(&u);
        return;
    }
    char sha[65];
    sha256_hex(u.audio, u.audio_len, sha);
    switch (req->route) {
    case R_TAG:
        job_tag(req, ctx, &u, sha);
        break;
    case R_TRACKS:
        job_ingest(req, ctx, &u, sha);
        break;
    case R_SIMILAR:
        job_similar(req, ctx, &u, sha);
        break;
    default:
        clmr__http_error(req, 404, "not_found", "no route");
    }
    upload_free(&u);
}

int clmr__route_cache_probe(clmr_http_req_t *req)
{
    if (req->route != R_TAG) return 0;
    int top, per_chunk, want_emb, all;
    double threshold;
    if (tag_args(req, &top, &per_chunk, &want_emb, &threshold, &all)) return 1;
    if (per_chunk) return 0;
    upload_t u;
    if (read_upload(req, &u)) {
        upload_free(&u);
        return 1;
    }
    char sha[65];
    sha256_hex(u.audio, u.audio_len, sha);
    upload_free(&u);
    return tag_from_cache(req, sha, top, per_chunk, want_emb, threshold, all);
}

/* ---------------------------------------------------------------- start-up */

int clmr__routes_open(clmr_server_t *s, char **errmsg)
{
    clmr_store_params_t sp = clmr_store_default_params();
    sp.data_dir = s->cfg.data_dir;
    sp.cache_max_rows = s->cfg.tag_cache_max_rows;
    sp.cache_max_age_s = s->cfg.tag_cache_max_age_s;
    sp.pool_max_bytes = s->cfg.max_pool_bytes;
    int rc = clmr_store_open(&s->store, &sp, errmsg);
    if (rc) return rc;
    int failed = 0; /* a fine-tuning job cannot survive a restart */
    if (clmr_store_job_fail_unfinished(s->store, "interrupted by a restart of the daemon", &failed,
                                       NULL) == 0 &&
        failed)
        CLMR_LOG_WARN("marked %d unfinished fine-tuning job(s) failed", failed);
    /* A fine-tuned model activated through the admin API stays active across restarts (it has a
     * parent); any other active model gives way to the --model file, as before. */
    clmr_store_model_t act;
    memset(&act, 0, sizeof act);
    int keep = 0;
    if (clmr_store_model_get_active(s->store, &act, NULL) == 0 && act.parent_id && act.path) {
        clmr_served_t *b = clmr__served_active(s);
        int differs = strcmp(b->info.id, act.id) != 0;
        clmr__served_release(b);
        char path[CLMR_CONFIG_PATH_MAX + 160];
        clmr__data_path(s, act.path, path, sizeof path);
        keep = differs && clmr__rollover_boot_replace(s, path, act.id) == 0;
    }
    clmr_store_model_clear(&act);
    clmr_served_t *boot = clmr__served_active(s);
    const clmr_http_model_info_t *info = &boot->info;
    clmr_store_model_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "%s", info->id);
    m.name = (char *)info->name;
    m.path = (char *)info->path;
    m.status = CLMR_MODEL_ACTIVE;
    int created = 0;
    if (keep) { /* the served model is already the active row */
        rc = 0;
    } else {
        rc = clmr_store_model_ensure(s->store, &m, &created, errmsg);
        if (!rc && !created) rc = clmr_store_model_activate(s->store, info->id, errmsg);
    }
    clmr__served_release(boot);
    if (rc) return rc;
    int removed = 0;
    if (clmr_store_pool_sweep(s->store, &removed, NULL) == 0 && removed)
        CLMR_LOG_INFO("removed %d orphan files from the audio pool", removed);
    /* every index created from now on (start-up and model activations) gets this backend */
    clmr_index_backend_t ib = CLMR_INDEX_EXACT;
    clmr_index_backend_parse(s->cfg.index_backend, &ib); /* the config table validated it */
    clmr_index_set_default_backend(ib, CLMR_INDEX_AUTO_MIN_DEFAULT);
    return clmr__rollover_open_index(s, errmsg);
}

void clmr__routes_close(clmr_server_t *s)
{
    clmr_store_close(&s->store);
}
