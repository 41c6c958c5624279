/* fuzz_json_request.c - libFuzzer target: the daemon's request routing and JSON request bodies.
 *
 * DESIGN: JSON request parsing is not a pure function in src/http: it lives in the route
 * handlers (h_search: json_loadb + validation of "embedding" and "k"), which need a server.
 * So this harness builds the part of a clmr_server_t those handlers use, with real components:
 * config defaults, the tiny test model (tests/fixtures/models/tiny.safetensors), a real SQLite
 * store in a temp dir and the similarity index holding a few embeddings. Each input is
 *   line 1: "METHOD URL"        -> clmr__route_match (path tricks, ids, 404/405)
 *   line 2: a query value        -> copied into the k/top/threshold query fields
 *   rest:   the request body     -> the handler (POST /v1/search parses it as JSON)
 * and routes that run without inference are executed with clmr__route_inline, as the polling
 * thread or the catalogue pool does. Checked: the request either fails routing with a 4xx or
 * gets a response; no response is 5xx; every error body is JSON {"error":{"code","message"}}.
 * Left out: the upload routes (they need the worker pool and audio; fuzz_decode and
 * fuzz_multipart cover their parsing), GET /v1/tracks (its handler reads query arguments from
 * the libmicrohttpd connection, which a harness cannot provide) and /metrics (needs the pools).
 */
#include "clmrd_build_config.h"
#include "config/config.h"
#include "http/admin.h"
#include "http/http_internal.h"
#include "http/rollover.h"
#include "index/index.h"
#include "util/log.h"

#include "clmr/error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static clmr_server_t *srv;
static char data_dir[64];

static void teardown(void)
{
    if (!srv) return;
    clmr__admin_close(srv);
    clmr__rollover_close(srv);
    clmr__routes_close(srv);
    clmr__metrics_destroy(&srv->metrics);
    free(srv);
    srv = NULL;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", data_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", data_dir);
}

static void setup(void)
{
    clmr_log_configure(CLMR_LOG_LEVEL_OFF, CLMR_LOG_TEXT);
    snprintf(data_dir, sizeof data_dir, "/tmp/clmr-fuzz-json-XXXXXX");
    srv = calloc(1, sizeof *srv);
    if (!srv || !mkdtemp(data_dir)) abort();
    clmr_config_defaults(&srv->cfg);
    snprintf(srv->cfg.data_dir, sizeof srv->cfg.data_dir, "%s", data_dir);
    clmr__metrics_init(&srv->metrics);
    char *err = NULL;
    snprintf(srv->cfg.model, sizeof srv->cfg.model, "%s/tests/fixtures/models/tiny.safetensors",
             CLMRD_SOURCE_ROOT);
    if (clmr__rollover_open(srv, &err) || clmr__admin_open(srv, &err) ||
        clmr__routes_open(srv, &err)) {
        fprintf(stderr, "fuzz_json_request: setup failed: %s\n", err ? err : "?");
        abort();
    }
    /* a few catalogued embeddings, so searches rank real hits */
    float v[512];
    clmr_served_t *ss = clmr__served_search(srv);
    clmr_index_t *index = atomic_load(&ss->index);
    for (int t = 0; t < 3 && ss->info.dim <= 512; t++) {
        char id[65];
        for (int i = 0; i < 64; i++)
            id[i] = "0123456789abcdef"[(i + t) & 15];
        id[64] = 0;
        for (int i = 0; i < ss->info.dim; i++)
            v[i] = (float)((i + t) % 5) - 2.0f;
        if (!index || clmr_index_upsert(index, id, v)) abort();
    }
    clmr__served_release(ss);
    atexit(teardown);
}

static void copy_field(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = 0;
}

static void check_response(const clmr_http_req_t *req)
{
    if (getenv("CLMR_FUZZ_VERBOSE")) /* replay aid: what the client would get */
        printf("# -> %u %.*s\n", req->status, (int)(req->resp_len < 160 ? req->resp_len : 160),
               req->resp_body ? req->resp_body : "");
    if (req->status < 200 || req->status >= 500) __builtin_trap();
    if (req->status < 400) return;
    json_error_t jerr;
    json_t *j = json_loadb(req->resp_body, req->resp_len, 0, &jerr);
    json_t *e = j ? json_object_get(j, "error") : NULL;
    if (!json_is_string(json_object_get(e, "code")) ||
        !json_is_string(json_object_get(e, "message")))
        __builtin_trap();
    json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!srv) setup();
    const uint8_t *end = data + size;
    const uint8_t *l1 = memchr(data, '\n', size);
    if (!l1) return 0;
    const uint8_t *l2 = memchr(l1 + 1, '\n', (size_t)(end - l1 - 1));
    if (!l2) l2 = end;
    char line[300], method[8], url[256];
    size_t n1 = (size_t)(l1 - data);
    if (n1 >= sizeof line || memchr(data, 0, n1)) return 0;
    memcpy(line, data, n1);
    line[n1] = 0;
    /* MHD hands the route a method token and a NUL-terminated path (query string removed) */
    const char *sp = strchr(line, ' ');
    if (!sp || (size_t)(sp - line) >= sizeof method || strlen(sp + 1) >= sizeof url) return 0;
    memcpy(method, line, (size_t)(sp - line));
    method[sp - line] = 0;
    snprintf(url, sizeof url, "%s", sp + 1);

    clmr_http_req_t req;
    memset(&req, 0, sizeof req);
    req.srv = srv;
    snprintf(req.request_id, sizeof req.request_id, "fuzz");
    snprintf(req.method, sizeof req.method, "%s", method);
    snprintf(req.path, sizeof req.path, "%s", url);
    int pool = 0;
    size_t limit = 0;
    if (clmr__route_match(&req, method, url, &pool, &limit)) {
        if (req.status < 400 || req.status >= 500) __builtin_trap(); /* refusals are 4xx */
        check_response(&req);
        free(req.resp_body);
        return 0;
    }
    if (pool == CLMR_POOL_INFERENCE || req.route == R_TRACKS || req.route == R_METRICS ||
        req.route == R_ADMIN) {
        free(req.resp_body);
        return 0;
    }
    /* the server takes both model references at a request's first callback */
    req.sm = clmr__served_active(srv);
    req.ss = clmr__served_search(srv);
    size_t q = (size_t)(l2 - l1 - 1);
    if (!memchr(l1 + 1, 0, q)) { /* truncated to each field, as the server's copy does */
        copy_field(req.q_k, sizeof req.q_k, l1 + 1, q);
        copy_field(req.q_top, sizeof req.q_top, l1 + 1, q);
        copy_field(req.q_threshold, sizeof req.q_threshold, l1 + 1, q);
    }
    size_t blen = l2 < end ? (size_t)(end - l2 - 1) : 0;
    if (blen > limit && limit > 0) { /* the server answers 413 before the handler */
        clmr__served_release(req.sm);
        clmr__served_release(req.ss);
        return 0;
    }
    unsigned char *body = malloc(blen ? blen : 1); /* exact size: overreads hit the redzone */
    if (!body) abort();
    if (blen) memcpy(body, l2 + 1, blen);
    req.body = body;
    req.body_len = blen;
    req.body_cap = blen;
    req.body_limit = limit;
    clmr__route_inline(&req);
    check_response(&req);
    clmr__served_release(req.sm);
    clmr__served_release(req.ss);
    free(req.resp_body);
    free(body);
    return 0;
}
