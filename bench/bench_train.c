/* bench_train.c - throughput and memory of the production pretraining step (clmr_pretrain_step:
 * official SampleCNN on oneDNN + projector 512-512-64 + NT-Xent + Adam) and the cost of the
 * augmentation chain that feeds it.
 *
 * Usage: bench_train PAIRS [STEPS=2] [AUG_VIEWS=8] [PRECISION=fp32|bf16|auto (default fp32)]
 * Prints one JSON line: pairs, chunks, steps, chunks_per_s, ms_per_step, first_step_ms (primitive
 * first touch), peak_rss_mb, aug_ms_per_view (the whole CLMR chain on one thread) and
 * aug_views_per_s_per_thread.
 *
 * DESIGN: one configuration per process so peak RSS is that configuration's. Input is fixed
 * pseudo-random "music" (sum of decaying partials + noise), not the loader, so the step time does
 * not include waiting for data; the loader runs on other threads in `clmrd pretrain`, and whether
 * it keeps up is read from aug_views_per_s_per_thread against chunks_per_s. Per-primitive times
 * (forward / backward-data / backward-weights per layer) come from running this with oneDNN's
 * verbose mode (bench/train_bench.sh does that and sums the lines). Compare only with
 * bench_train_torch.py run in the same driver invocation: the machine is shared.
 */
#include "train/augment.h"
#include "train/pretrain.h"
#include "util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void music(float *x, size_t n, uint64_t seed)
{
    clmr_rng_t r;
    clmr_rng_seed(&r, seed, 7);
    double f0 = clmr_rng_range(&r, 80, 600);
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / 22050.0, env = exp(-3.0 * fmod(t, 0.5)), s = 0;
        for (int k = 1; k <= 4; k++)
            s += sin(2 * M_PI * f0 * k * t) / k;
        x[i] = (float)(0.3 * env * s + 0.01 * clmr_rng_normal(&r));
    }
}

int main(int argc, char **argv)
{
    int pairs = argc > 1 ? atoi(argv[1]) : 16, steps = argc > 2 ? atoi(argv[2]) : 2;
    int aug_views = argc > 3 ? atoi(argv[3]) : 8;
    clmr_train_precision_t prec = CLMR_TRAIN_PREC_FP32;
    if (pairs < 1 || steps < 1 || aug_views < 0 ||
        (argc > 4 && clmr_train_precision_parse(argv[4], &prec))) {
        fprintf(stderr, "usage: bench_train PAIRS [STEPS=2] [AUG_VIEWS=8] [fp32|bf16|auto]\n");
        return 2;
    }
    clmr_pretrain_params_t p = clmr_pretrain_default_params();
    p.batch_pairs = pairs;
    p.precision = prec;
    clmr_pretrain_t *pt = NULL;
    char *err = NULL;
    if (clmr_pretrain_open(&pt, &p, NULL, &err)) {
        fprintf(stderr, "bench_train: %s\n", err ? err : "open failed");
        return 1;
    }
    const size_t chunk = (size_t)clmr_pretrain_chunk_samples(pt), views = 2 * (size_t)pairs;
    float *x = malloc(views * chunk * sizeof(float));
    if (!x) return 1;
    for (size_t v = 0; v < views; v++)
        music(x + v * chunk, chunk, v % (size_t)pairs);
    float loss = 0;
    double t0 = now_s();
    if (clmr_pretrain_step(pt, x, &loss, NULL)) return 1; /* warm-up: first touch */
    double first = now_s() - t0;
    t0 = now_s();
    for (int k = 0; k < steps; k++)
        if (clmr_pretrain_step(pt, x, &loss, NULL)) return 1;
    double dt = now_s() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    const char *prec_name = clmr_train_precision_name(clmr_pretrain_precision(pt));
    clmr_pretrain_close(&pt);

    /* the augmentation chain, one thread, on 10 s of source per view */
    double aug_ms = NAN;
    if (aug_views > 0) {
        clmr_augment_params_t ap = clmr_augment_default_params();
        clmr_augment_t *a = NULL;
        float *src = malloc(220500 * sizeof(float)), *out = malloc(chunk * sizeof(float));
        if (!src || !out || clmr_augment_open(&a, &ap, NULL)) return 1;
        music(src, 220500, 99);
        clmr_rng_t r;
        clmr_rng_seed(&r, 1, 2);
        double a0 = now_s();
        for (int i = 0; i < aug_views; i++)
            clmr_augment_view(a, &r, src, 220500, out, NULL);
        aug_ms = 1e3 * (now_s() - a0) / aug_views;
        clmr_augment_close(&a);
        free(src);
        free(out);
    }
    char aug[96] = "\"aug_ms_per_view\":null,\"aug_views_per_s_per_thread\":null";
    if (isfinite(aug_ms))
        snprintf(aug, sizeof aug, "\"aug_ms_per_view\":%.2f,\"aug_views_per_s_per_thread\":%.2f",
                 aug_ms, 1e3 / aug_ms);
    printf(
        "{\"impl\":\"clmrd-onednn-%s\",\"variant\":\"%s\",\"pairs\":%d,\"chunks\":%zu,\"steps\":%d,"
        "\"chunks_per_s\":%.3f,\"ms_per_step\":%.1f,\"first_step_ms\":%.1f,"
        "\"peak_rss_mb\":%.0f,\"loss\":%.5f,%s}\n",
        prec_name, prec_name, pairs, views, steps, (double)views * steps / dt, 1e3 * dt / steps,
        1e3 * first, ru.ru_maxrss / 1024.0, (double)loss, aug);
    free(x);
    return 0;
}
