/* bench_infer.c - chunks/s of the oneDNN SampleCNN forward (clmr_infer_run) on a model file.
 *
 * DESIGN: for every (threads, batch) pair asked for, one context is opened with max_batch = batch,
 * warmed up with two calls (primitive creation, first touch), then clmr_infer_run is called on
 * `batch` chunks repeatedly for at least --seconds; the rate is the total over that window. One
 * line per configuration, `RESULT clmr <threads> <batch> <chunks/s> <GFLOP/s> <fraction of peak>`,
 * is what bench/run.sh parses. GFLOP/s uses the model's own MAC count (2 FLOP per MAC; 3.4572 GFLOP
 * per chunk for the official widths) and --peak (default 428 GFLOP/s, 2 cores of AVX-512 FMA here).
 *
 * --precision fp32|bf16|auto picks the context's arithmetic (default fp32); the label then defaults
 * to "clmr" for fp32 and "clmr-bf16" for bf16. The first-call cost is reported per configuration
 * as `FIRST <label> <threads> <batch> <open s> <first call s> <steady call s> <warm s>`: the
 * time clmr_infer_open takes, the first clmr_infer_run on a fresh context (after open), the
 * median of the measured calls, and the time clmr_infer_warm takes on another fresh context.
 *
 * Usage: bench_infer MODEL.safetensors [--threads 1,2] [--batch 1,8,32] [--seconds 3] [--peak 428]
 *                    [--label NAME] [--precision fp32|bf16|auto]
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "nn/model_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1) return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: %s MODEL.safetensors [--threads 1,2] [--batch 1,8,32] "
                "[--seconds S] [--peak GFLOPS]\n",
                argv[0]);
        return 2;
    }
    int threads[8] = {1, 2}, n_threads = 2, batches[8] = {1, 8, 32}, n_batches = 3;
    double seconds = 3.0, peak = 428.0;
    const char *label = NULL;
    clmr_precision_t prec = CLMR_PRECISION_FP32;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--threads") == 0)
            n_threads = parse_list(argv[i + 1], threads, 8);
        else if (strcmp(argv[i], "--batch") == 0)
            n_batches = parse_list(argv[i + 1], batches, 8);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--peak") == 0)
            peak = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--label") == 0)
            label = argv[i + 1];
        else if (strcmp(argv[i], "--precision") == 0) {
            if (clmr_precision_parse(argv[i + 1], &prec)) n_threads = -1;
        } else
            n_threads = -1;
        if (n_threads < 1 || n_batches < 1) {
            fprintf(stderr, "bad argument %s\n", argv[i]);
            return 2;
        }
    }
    clmr_model_t *m = NULL;
    char *msg = NULL;
    clmr_precision_t eff;
    if (clmr_infer_resolve_precision(prec, &eff, &msg)) {
        fprintf(stderr, "%s\n", msg);
        return 1;
    }
    if (!label) label = eff == CLMR_PRECISION_BF16 ? "clmr-bf16" : "clmr";
    int err = clmr_model_load(&m, argv[1], &msg);
    if (err) {
        fprintf(stderr, "%s: %s\n", argv[1], msg ? msg : clmr_strerror(err));
        free(msg);
        return 1;
    }
    const int L = clmr_model_chunk_samples(m);
    const double gflop = 2.0 * clmr_samplecnn_macs(&m->cfg) * 1e-9;
    int max_b = 0;
    for (int i = 0; i < n_batches; i++)
        max_b = batches[i] > max_b ? batches[i] : max_b;
    float *x = malloc(sizeof(float) * (size_t)max_b * L);
    float *emb = malloc(sizeof(float) * (size_t)max_b * clmr_model_embed_dim(m));
    float *scores = malloc(sizeof(float) * (size_t)max_b * (clmr_model_n_tags(m) + 1));
    if (!x || !emb || !scores) return 1;
    uint32_t r = 12345;
    for (size_t i = 0; i < (size_t)max_b * L; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = ((float)(r >> 8) / 16777216.0f - 0.5f) * 0.6f;
    }
    printf("# model %s: %d-sample chunks, %.4f GFLOP per chunk, peak %.0f GFLOP/s\n", argv[1], L,
           gflop, peak);
    for (int ti = 0; ti < n_threads; ti++)
        for (int bi = 0; bi < n_batches; bi++) {
            clmr_infer_params_t p = clmr_infer_default_params();
            p.threads = threads[ti];
            p.max_batch = batches[bi];
            p.precision = prec;
            clmr_infer_t *ctx = NULL;
            double t_open = now_s();
            if ((err = clmr_infer_open(&ctx, m, &p, &msg))) {
                fprintf(stderr, "open: %s\n", msg ? msg : clmr_strerror(err));
                return 1;
            }
            t_open = now_s() - t_open;
            double t_first = now_s();
            clmr_infer_run(ctx, x, batches[bi], emb, scores);
            t_first = now_s() - t_first;
            clmr_infer_run(ctx, x, batches[bi], emb, scores);
            long chunks = 0;
            int calls = 0;
            double call_t[4096];
            double t0 = now_s(), t, tc = t0;
            do {
                if ((err = clmr_infer_run(ctx, x, batches[bi], emb, scores))) {
                    fprintf(stderr, "run: %s\n", clmr_strerror(err));
                    return 1;
                }
                chunks += batches[bi];
                double tn = now_s();
                if (calls < 4096) call_t[calls] = tn - tc;
                tc = tn;
                calls++;
                t = tn - t0;
            } while (t < seconds || calls < 3);
            double cps = chunks / t;
            printf("RESULT %s %d %d %.2f %.1f %.3f\n", label, threads[ti], batches[bi], cps,
                   cps * gflop, cps * gflop / peak);
            int nc = calls < 4096 ? calls : 4096;
            qsort(call_t, (size_t)nc, sizeof(double), cmp_double);
            clmr_infer_t *cold = NULL;
            double t_warm = -1;
            if (clmr_infer_open(&cold, m, &p, NULL) == 0) {
                double tw = now_s();
                if (clmr_infer_warm(cold, NULL) == 0) t_warm = now_s() - tw;
                clmr_infer_close(&cold);
            }
            printf("FIRST %s %d %d %.4f %.4f %.4f %.4f\n", label, threads[ti], batches[bi], t_open,
                   t_first, call_t[nc / 2], t_warm);
            fflush(stdout);
            clmr_infer_close(&ctx);
        }
    free(x), free(emb), free(scores);
    clmr_model_close(&m);
    return 0;
}
