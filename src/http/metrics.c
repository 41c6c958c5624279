/* metrics.c - counters and histograms for GET /metrics (Prometheus text format 0.0.4).
 *
 * DESIGN: one mutex around plain counters; it is taken once per request (completion callback)
 * and once per analysed upload, which is negligible next to decoding. Status codes get a slot on
 * first use (at most CLMR_HTTP_N_STATUS distinct codes; more fall into the last slot).
 */
#include "http/http_internal.h"
#include "http/rollover.h"

#include "clmr/error.h"
#include "index/index.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const route_names[R__COUNT] = {
    "unknown",
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/openapi.json",
    "/v1/config",
    "/v1/tags",
    "/v1/models",
    "/v1/tag",
    "/v1/tracks",
    "/v1/tracks/{id}",
    "/v1/tracks/{id}/similar",
    "/v1/similar",
    "/v1/search",
    "/v1/admin",
    "/v1/tracks/{id}/audio",
    "/v1/tracks/{id}/embedding",
    "/v1/export",
};

static const double buckets[CLMR_HTTP_N_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,    1,     2.5,  5,     10,   30};

const char *clmr__route_name(clmr_route_t r)
{
    return r < R__COUNT ? route_names[r] : "unknown";
}

void clmr__metrics_init(clmr_http_metrics_t *m)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
}

void clmr__metrics_destroy(clmr_http_metrics_t *m)
{
    pthread_mutex_destroy(&m->mu);
}

void clmr__metrics_request(clmr_http_metrics_t *m, clmr_route_t r, unsigned status, double secs)
{
    if (r >= R__COUNT) r = R_UNKNOWN;
    pthread_mutex_lock(&m->mu);
    int slot = CLMR_HTTP_N_STATUS - 1;
    for (int i = 0; i < CLMR_HTTP_N_STATUS; i++) {
        if (m->status_codes[i] == (int)status) {
            slot = i;
            break;
        }
        if (m->status_codes[i] == 0) {
            m->status_codes[i] = (int)status;
            slot = i;
            break;
        }
    }
    m->requests[r][slot]++;
    int b = 0;
    while (b < CLMR_HTTP_N_BUCKETS && secs > buckets[b])
        b++;
    m->latency_bucket[r][b]++;
    m->latency_sum[r] += secs;
    m->latency_count[r]++;
    pthread_mutex_unlock(&m->mu);
}

void clmr__metrics_add(clmr_http_metrics_t *m, double decode_s, double infer_s, int cache_hit,
                       int cache_miss)
{
    pthread_mutex_lock(&m->mu);
    if (decode_s > 0) {
        m->decode_seconds += decode_s;
        m->decode_count++;
    }
    if (infer_s > 0) {
        m->infer_seconds += infer_s;
        m->infer_count++;
    }
    m->cache_hits += (unsigned)cache_hit;
    m->cache_misses += (unsigned)cache_miss;
    pthread_mutex_unlock(&m->mu);
}

void clmr__metrics_error(clmr_http_metrics_t *m, int err)
{
    int i = -err;
    if (i < 0 || i >= 64) i = 0;
    pthread_mutex_lock(&m->mu);
    m->errors_by_code[i]++;
    pthread_mutex_unlock(&m->mu);
}

void clmr__metrics_rejected(clmr_http_metrics_t *m)
{
    pthread_mutex_lock(&m->mu);
    m->queue_rejected++;
    pthread_mutex_unlock(&m->mu);
}

char *clmr__metrics_render(clmr_server_t *s, size_t *len)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) return NULL;
    clmr_http_metrics_t *m = &s->metrics;
    int queued = s->workers ? clmr_workers_queued(s->workers) : 0;
    int running = s->workers ? clmr_workers_running(s->workers) : 0;
    clmr_served_t *sv = clmr__served_search(s);
    clmr_index_t *sidx = atomic_load(&sv->index);
    size_t catalogue = sidx ? clmr_index_size(sidx) : 0;
    const char *ibackend = sidx ? clmr_index_backend_name(sidx) : "exact";
    int ipending = sidx ? clmr_index_approx_pending(sidx) : 0;
    clmr__served_release(sv);
    pthread_mutex_lock(&m->mu);
    fprintf(f, "# HELP clmrd_http_requests_total HTTP requests by route and status.\n"
               "# TYPE clmrd_http_requests_total counter\n");
    for (int r = 0; r < R__COUNT; r++)
        for (int i = 0; i < CLMR_HTTP_N_STATUS; i++)
            if (m->requests[r][i])
                fprintf(f, "clmrd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                        route_names[r], m->status_codes[i], m->requests[r][i]);
    fprintf(f,
            "# HELP clmrd_http_request_duration_seconds Request latency (first byte to answer).\n"
            "# TYPE clmrd_http_request_duration_seconds histogram\n");
    for (int r = 0; r < R__COUNT; r++) {
        if (!m->latency_count[r]) continue;
        unsigned long long cum = 0;
        for (int b = 0; b < CLMR_HTTP_N_BUCKETS; b++) {
            cum += m->latency_bucket[r][b];
            fprintf(f, "clmrd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                    route_names[r], buckets[b], cum);
        }
        cum += m->latency_bucket[r][CLMR_HTTP_N_BUCKETS];
        fprintf(f, "clmrd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                route_names[r], cum);
        fprintf(f, "clmrd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", route_names[r],
                m->latency_sum[r]);
        fprintf(f, "clmrd_http_request_duration_seconds_count{route=\"%s\"} %llu\n", route_names[r],
                m->latency_count[r]);
    }
    fprintf(
        f,
        "# HELP clmrd_queue_depth Jobs waiting for a worker.\n# TYPE clmrd_queue_depth gauge\n"
        "clmrd_queue_depth %d\n"
        "# HELP clmrd_workers_busy Workers running a job.\n# TYPE clmrd_workers_busy gauge\n"
        "clmrd_workers_busy %d\n"
        "# HELP clmrd_queue_rejected_total Requests refused with 503 because the queue was full.\n"
        "# TYPE clmrd_queue_rejected_total counter\nclmrd_queue_rejected_total %llu\n"
        "# HELP clmrd_decode_seconds Time spent decoding uploads.\n# TYPE clmrd_decode_seconds "
        "summary\n"
        "clmrd_decode_seconds_sum %.6f\nclmrd_decode_seconds_count %llu\n"
        "# HELP clmrd_inference_seconds Time spent in model inference.\n"
        "# TYPE clmrd_inference_seconds summary\n"
        "clmrd_inference_seconds_sum %.6f\nclmrd_inference_seconds_count %llu\n"
        "# HELP clmrd_cache_hits_total Uploads answered from the result cache.\n"
        "# TYPE clmrd_cache_hits_total counter\nclmrd_cache_hits_total %llu\n"
        "# HELP clmrd_cache_misses_total Uploads that had to be decoded and analysed.\n"
        "# TYPE clmrd_cache_misses_total counter\nclmrd_cache_misses_total %llu\n"
        "# HELP clmrd_catalogue_tracks Tracks in the similarity index.\n"
        "# TYPE clmrd_catalogue_tracks gauge\nclmrd_catalogue_tracks %zu\n"
        "# HELP clmrd_inflight_requests Requests being handled.\n"
        "# TYPE clmrd_inflight_requests gauge\nclmrd_inflight_requests %d\n",
        queued, running, m->queue_rejected, m->decode_seconds, m->decode_count, m->infer_seconds,
        m->infer_count, m->cache_hits, m->cache_misses, catalogue, atomic_load(&s->inflight));
    fprintf(f,
            "# HELP clmrd_index_backend The similarity index searches use now (1 = this one).\n"
            "# TYPE clmrd_index_backend gauge\nclmrd_index_backend{backend=\"%s\"} 1\n"
            "# HELP clmrd_index_build_pending 1 while an approximate index is being built.\n"
            "# TYPE clmrd_index_build_pending gauge\nclmrd_index_build_pending %d\n",
            ibackend, ipending);
    fprintf(f, "# HELP clmrd_errors_total Error answers by machine code.\n"
               "# TYPE clmrd_errors_total counter\n");
    for (int i = 1; i < 64; i++)
        if (m->errors_by_code[i])
            fprintf(f, "clmrd_errors_total{code=\"%s\"} %llu\n", clmr_err_name(-i),
                    m->errors_by_code[i]);
    if (m->errors_by_code[0])
        fprintf(f, "clmrd_errors_total{code=\"http\"} %llu\n", m->errors_by_code[0]);
    pthread_mutex_unlock(&m->mu);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}
