/* bench_augment.c - throughput of the CLMR augmentation chain and of the training data pipeline.
 *
 * Usage: bench_augment [--views N] [--batches B] [--pairs N] [--pool DIR]
 * Prints: per-transform cost (ms per 59,049-sample view), the whole chain's views/s on one thread,
 * and the loader's batches/s (and views/s) with 1 and 2 workers on a pool of FLAC files (made with
 * sox in a temporary directory unless --pool is given), each compared with the rate the trainer
 * consumes (PyTorch's ~13 chunks/s at 48 pairs here; the C trainer's target is 1.5x that).
 *
 * DESIGN: everything runs in one process so the numbers are same-run ratios; the machine is shared,
 * so the margins, not the absolute figures, are what to read.
 */
#include "train/augment.h"
#include "train/loader.h"
#include "util/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N CLMR_AUGMENT_CHUNK
#define RATE 22050

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

static void music(float *x, size_t n, uint64_t seed)
{
    clmr_rng_t r;
    clmr_rng_seed(&r, seed, 1);
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE;
        x[i] = (float)(0.3 * sin(2 * M_PI * 220 * t) * (0.6 + 0.4 * sin(2 * M_PI * 0.7 * t)) +
                       0.2 * sin(2 * M_PI * 660 * t) + 0.05 * clmr_rng_normal(&r));
    }
}

static double loader_rate(const char *pool, size_t pairs, int workers, int batches, double *wait,
                          double *views_s, double *views_cpu_s)
{
    clmr_loader_params_t p = clmr_loader_default_params();
    p.batch_pairs = pairs;
    p.n_workers = workers;
    clmr_loader_t *ld = NULL;
    char *msg = NULL;
    if (clmr_loader_open_dir(&ld, pool, &p, &msg) != 0) {
        fprintf(stderr, "loader: %s\n", msg ? msg : "?");
        free(msg);
        return 0;
    }
    clmr_batch_t b;
    clmr_loader_next(ld, &b, NULL); /* warm-up: the first batch includes thread start */
    double t0 = now_s();
    for (int k = 0; k < batches; k++)
        clmr_loader_next(ld, &b, NULL);
    double dt = now_s() - t0;
    clmr_loader_stats_t st;
    clmr_loader_stats(ld, &st);
    *wait = st.wait_s;
    *views_cpu_s = (double)st.views / st.produce_cpu_s;
    clmr_loader_close(&ld);
    *views_s = batches * 2.0 * (double)pairs / dt;
    return batches / dt;
}

int main(int argc, char **argv)
{
    int views = 200, batches = 3;
    size_t pairs = 48;
    const char *pool = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--views"))
            views = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batches"))
            batches = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pairs"))
            pairs = (size_t)atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--pool"))
            pool = argv[i + 1];
    }
    clmr_augment_t *a = NULL;
    char *msg = NULL;
    if (clmr_augment_open(&a, NULL, &msg) != 0) {
        fprintf(stderr, "augment: %s\n", msg ? msg : "?");
        return 1;
    }
    size_t ns = 10 * RATE;
    float *src = malloc(ns * sizeof(float)), *x = malloc(N * sizeof(float));
    music(src, ns, 1);
    clmr_rng_t r;
    clmr_rng_seed(&r, 1, 0);

    /* Per-transform cost, each on a fresh crop. */
    const int reps = 20;
    double t[8] = {0};
    const char *names[8] = {"crop",           "polarity",       "noise",       "gain",
                            "highpass 200Hz", "lowpass 2200Hz", "pitch +-700", "reverb 50/50/50"};
    for (int k = 0; k < reps; k++) {
        double t0 = now_s();
        clmr_augment_crop(x, N, src, ns, &r);
        double t1 = now_s();
        clmr_augment_polarity(x, N);
        double t2 = now_s();
        clmr_augment_noise(x, N, 1e-3, &r);
        double t3 = now_s();
        clmr_augment_gain(x, N, -6);
        double t4 = now_s();
        clmr_augment_highpass(a, x, N, 200);
        double t5 = now_s();
        clmr_augment_lowpass(a, x, N, 2200);
        double t6 = now_s();
        clmr_augment_pitch(a, x, N, k % 2 ? 700 : -700);
        double t7 = now_s();
        clmr_augment_reverb(a, x, N, 50, 50, 50);
        double t8 = now_s();
        double d[8] = {t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6, t8 - t7};
        for (int j = 0; j < 8; j++)
            t[j] += d[j];
    }
    printf("per-transform cost (ms per view, mean of %d):\n", reps);
    for (int j = 0; j < 8; j++)
        printf("  %-16s %8.3f\n", names[j], 1e3 * t[j] / reps);

    /* Whole chain with the reference probabilities, one thread. */
    double t0 = now_s(), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    clmr_augment_record_t rec;
    int pitched = 0, reverbed = 0, filtered = 0;
    for (int k = 0; k < views; k++) {
        clmr_augment_view(a, &r, src, ns, x, &rec);
        pitched += rec.pitch;
        reverbed += rec.reverb;
        filtered += rec.filter != 0;
    }
    double dt = now_s() - t0, dc = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    double vps = views / dt, vpc = views / dc;
    printf("chain (1 thread): %d views in %.2f s wall = %.1f views/s; %.2f s CPU = %.1f views per "
           "CPU-second (pitch %d, reverb %d, filter %d)\n",
           views, dt, vps, dc, vpc, pitched, reverbed, filtered);
    printf("  wall rate vs PyTorch training 13 chunks/s: %.1fx; vs the 1.5x target 19.5 chunks/s: "
           "%.1fx; at 19.5 chunks/s the chain needs %.0f%% of one core (CPU time)\n",
           vps / 13, vps / 19.5, 100 * 19.5 / vpc);

    /* The pipeline on a pool of FLAC files. */
    char tmp[] = "/tmp/clmr-bench-pool-XXXXXX";
    if (!pool) {
        if (!mkdtemp(tmp)) return 1;
        for (int i = 0; i < 12; i++) {
            char cmd[512];
            snprintf(cmd, sizeof cmd,
                     "sox -n -r 22050 -c 1 -b 16 %s/t%02d.flac synth 30 pluck %d pinknoise vol 0.3 "
                     "2>/dev/null",
                     tmp, i, 200 + 37 * i);
            if (system(cmd) != 0) return 1;
        }
        pool = tmp;
    }
    for (int w = 1; w <= 2; w++) {
        double wait = 0, lvps = 0, lvpc = 0;
        double bps = loader_rate(pool, pairs, w, batches, &wait, &lvps, &lvpc);
        printf("loader (%d worker%s, %zu pairs): %.3f batches/s = %.1f views/s wall (%.1fx the 13 "
               "chunks/s of PyTorch), %.1f views per worker CPU-second (%d batches; the "
               "consumer, which computes nothing, waited %.2f s)\n",
               w, w > 1 ? "s" : "", pairs, bps, lvps, lvps / 13, lvpc, batches, wait);
    }
    /* A simulated trainer: it spends 2N / 19.5 s per batch (the C trainer's target rate) sleeping
     * (no CPU, which flatters the pipeline; the CPU figures above cover that), and we count how
     * long it waits for batches after the first. */
    {
        clmr_loader_params_t p = clmr_loader_default_params();
        p.batch_pairs = 8;
        clmr_loader_t *ld = NULL;
        if (clmr_loader_open_dir(&ld, pool, &p, NULL) == 0) {
            clmr_batch_t b;
            clmr_loader_next(ld, &b, NULL);
            clmr_loader_stats_t s0, s1;
            clmr_loader_stats(ld, &s0);
            double step = 2.0 * (double)p.batch_pairs / 19.5;
            const int steps = 6;
            for (int k = 0; k < steps; k++) {
                struct timespec ts = {(time_t)step, (long)((step - (double)(time_t)step) * 1e9)};
                nanosleep(&ts, NULL);
                clmr_loader_next(ld, &b, NULL);
            }
            clmr_loader_stats(ld, &s1);
            printf("simulated trainer (8 pairs, %.2f s per step, %d steps): waited %llu times, "
                   "%.3f s in total (%.1f%% of the run)\n",
                   step, steps, (unsigned long long)(s1.waits - s0.waits), s1.wait_s - s0.wait_s,
                   100 * (s1.wait_s - s0.wait_s) / (steps * step));
            clmr_loader_close(&ld);
        }
    }
    if (pool == tmp) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmp);
    }
    clmr_augment_close(&a);
    free(src);
    free(x);
    return 0;
}
