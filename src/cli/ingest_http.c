/* ingest_http.c - the HTTP side of `clmrd ingest`: look a sha256 up, upload a file, retry.
 *
 * DESIGN: one libcurl easy handle per worker thread, so its connection is kept alive across
 * files (also through a proxy). Overload answers (503, 429, 408, 502, 504) and connection errors
 * are retried: the wait is the server's Retry-After or an exponential backoff, whichever is
 * longer, plus up to a quarter of random jitter so that parallel workers do not return in step;
 * waits are cut short when the user stops the run. An answer about the file itself (400, 413,
 * 415, 422) is final, and its JSON error message becomes the reason shown to the user. The API
 * key is sent only as a header and never printed.
 */
#include "cli/ingest.h"
#include "clmr/error.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#define BODY_MAX (64 * 1024) /* error bodies are small; anything past this is dropped */

struct clmr_ingest_http {
    clmr_ingest_http_params_t p;
    CURL *curl;
    struct curl_slist *headers;
    char body[BODY_MAX + 1];
    size_t body_len;
    int retry_after; /* seconds from the last answer's Retry-After, 0 when absent */
};

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
    clmr_ingest_http_t *h = ud;
    size_t len = size * n, room = BODY_MAX - h->body_len;
    size_t take = len < room ? len : room;
    memcpy(h->body + h->body_len, data, take);
    h->body_len += take;
    h->body[h->body_len] = 0;
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    clmr_ingest_http_t *h = ud;
    size_t len = size * n;
    if (len > 12 && !strncasecmp(data, "Retry-After:", 12)) {
        /* Only the delay-seconds form; an HTTP date falls back to the backoff. */
        long v = strtol(data + 12, NULL, 10);
        h->retry_after = v > 0 && v < 24 * 3600 ? (int)v : 0;
    }
    return len;
}

int clmr_ingest_http_open(clmr_ingest_http_t **out, const clmr_ingest_http_params_t *p)
{
    *out = NULL;
    clmr_ingest_http_t *h = calloc(1, sizeof *h);
    if (!h) return CLMR_ENOMEM;
    h->p = *p;
    h->curl = curl_easy_init();
    h->headers = curl_slist_append(NULL, "Expect:"); /* no 100-continue round trip */
    if (h->headers && p->api_key && p->api_key[0]) {
        size_t n = strlen(p->api_key) + 32;
        char *line = malloc(n);
        if (line) {
            snprintf(line, n, "Authorization: Bearer %s", p->api_key);
            struct curl_slist *l = curl_slist_append(h->headers, line);
            if (l)
                h->headers = l;
            else {
                curl_slist_free_all(h->headers);
                h->headers = NULL;
            }
            /* the key is no longer needed in this buffer */
            memset(line, 0, n);
            free(line);
        } else {
            curl_slist_free_all(h->headers);
            h->headers = NULL;
        }
    }
    if (!h->curl || !h->headers) {
        clmr_ingest_http_close(&h);
        return CLMR_ENOMEM;
    }
    *out = h;
    return 0;
}

void clmr_ingest_http_close(clmr_ingest_http_t **ph)
{
    clmr_ingest_http_t *h = ph ? *ph : NULL;
    if (!h) return;
    if (h->curl) curl_easy_cleanup(h->curl);
    curl_slist_free_all(h->headers);
    free(h);
    *ph = NULL;
}

/* The server's error message ({"error":{"message"}}), else the start of the body. */
static void error_text(const clmr_ingest_http_t *h, long status, char *msg, size_t cap)
{
    json_t *j = json_loadb(h->body, h->body_len, 0, NULL);
    json_t *e = j ? json_object_get(j, "error") : NULL;
    const char *code = json_string_value(json_object_get(e, "code"));
    const char *text = json_string_value(json_object_get(e, "message"));
    if (text)
        snprintf(msg, cap, "HTTP %ld %s: %s", status, code ? code : "", text);
    else
        snprintf(msg, cap, "HTTP %ld%s%.200s", status, h->body_len ? ": " : "", h->body);
    json_decref(j);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Sleeps s seconds in short steps; returns -1 when the stop callback fires. */
static int wait_s(const clmr_ingest_http_t *h, double s)
{
    double until = now_s() + s;
    while (now_s() < until) {
        if (h->p.stop && h->p.stop()) return -1;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int transient(long status)
{
    return status == 503 || status == 429 || status == 408 || status == 502 || status == 504;
}

/* Performs the prepared request with retries. Returns the final HTTP status, or 0 when the last
 * try failed below HTTP (msg says why), or -1 when stopped. */
static long perform(clmr_ingest_http_t *h, char *msg, size_t cap, int *retried)
{
    for (int attempt = 0;; attempt++) {
        h->body_len = 0;
        h->body[0] = 0;
        h->retry_after = 0;
        CURLcode cc = curl_easy_perform(h->curl);
        long status = 0;
        if (cc == CURLE_OK) curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
        if (cc == CURLE_OK && !transient(status)) return status;
        if (cc != CURLE_OK)
            snprintf(msg, cap, "%s", curl_easy_strerror(cc));
        else
            error_text(h, status, msg, cap);
        if (attempt >= h->p.retries) return cc == CURLE_OK ? status : 0;
        if (retried && cc == CURLE_OK) (*retried)++;
        double backoff = 0.5 * (double)(1u << (attempt < 16 ? attempt : 16));
        if (backoff > h->p.max_backoff_s) backoff = h->p.max_backoff_s;
        double wait = h->retry_after > backoff ? h->retry_after : backoff;
        unsigned r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r) r = (unsigned)attempt * 2654435761u;
        wait += 0.25 * backoff * (double)(r % 1000) / 1000.0;
        if (wait_s(h, wait)) return -1;
    }
}

static void common_opts(clmr_ingest_http_t *h, const char *url)
{
    curl_easy_reset(h->curl);
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, h->headers);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h->curl, CURLOPT_HEADERDATA, h);
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT, 10L);
    /* A stalled transfer (no byte for 2 minutes) is a failure; a slow one is not. */
    curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h->curl, CURLOPT_LOW_SPEED_TIME, 120L);
    curl_easy_setopt(h->curl, CURLOPT_USERAGENT, "clmrd-ingest");
}

static void url_for(const clmr_ingest_http_t *h, const char *path, char *out, size_t cap)
{
    size_t n = strlen(h->p.server);
    while (n && h->p.server[n - 1] == '/')
        n--;
    snprintf(out, cap, "%.*s%s", (int)n, h->p.server, path);
}

clmr_ingest_result_t clmr_ingest_http_exists(clmr_ingest_http_t *h, const char *sha256, char *msg,
                                             size_t msgcap)
{
    char path[96], url[4096];
    snprintf(path, sizeof path, "/v1/tracks/%s", sha256);
    url_for(h, path, url, sizeof url);
    common_opts(h, url);
    curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
    long st = perform(h, msg, msgcap, NULL);
    if (st < 0) return CLMR_INGEST_STOPPED;
    if (st == 200) return CLMR_INGEST_EXISTS;
    if (st == 404) return CLMR_INGEST_MISSING;
    if (st == 401 || st == 403) {
        error_text(h, st, msg, msgcap);
        return CLMR_INGEST_AUTH;
    }
    if (st > 0 && !transient(st)) error_text(h, st, msg, msgcap);
    return CLMR_INGEST_FAIL;
}

clmr_ingest_result_t clmr_ingest_http_upload(clmr_ingest_http_t *h, const char *path, char *msg,
                                             size_t msgcap, int *retried)
{
    char url[4096];
    url_for(h, "/v1/tracks", url, sizeof url);
    common_opts(h, url);
    curl_mime *mime = curl_mime_init(h->curl);
    curl_mimepart *part = mime ? curl_mime_addpart(mime) : NULL;
    if (!part || curl_mime_name(part, "file") != CURLE_OK ||
        curl_mime_filedata(part, path) != CURLE_OK ||
        curl_mime_type(part, "application/octet-stream") != CURLE_OK) {
        curl_mime_free(mime);
        snprintf(msg, msgcap, "cannot prepare the upload");
        return CLMR_INGEST_FAIL;
    }
    curl_easy_setopt(h->curl, CURLOPT_MIMEPOST, mime);
    long st = perform(h, msg, msgcap, retried);
    curl_mime_free(mime);
    if (st < 0) return CLMR_INGEST_STOPPED;
    if (st == 200 || st == 201) return CLMR_INGEST_OK;
    if (st == 401 || st == 403) {
        error_text(h, st, msg, msgcap);
        return CLMR_INGEST_AUTH;
    }
    if (st == 400 || st == 413 || st == 415 || st == 422) {
        error_text(h, st, msg, msgcap);
        return CLMR_INGEST_REFUSE;
    }
    if (st > 0 && !transient(st)) error_text(h, st, msg, msgcap);
    return CLMR_INGEST_FAIL;
}
