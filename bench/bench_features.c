/* bench_features.c - the ingest's extra cost (issue 17): descriptors (aubio tempo/onsets,
 * libebur128 loudness) and the Chromaprint fingerprint, against SampleCNN inference on the same
 * decoded audio, measured side by side in one run.
 *
 * DESIGN: each file is decoded once; then inference (clmr_track_analyze on a context with
 * `threads` threads), descriptors and fingerprint each run `-r N` times (default 3) and the best
 * wall time of each is kept. The ratio (descriptors + fingerprint) / inference is what the
 * daemon adds to an ingest's latency; cpu% is the same ratio in CPU seconds of all threads (what
 * it costs a busy server: inference runs on THREADS threads, the descriptors' rhythm and
 * loudness passes on two). -p picks the inference precision (fp32, bf16 or auto; default fp32).
 * Usage: bench_features [-r N] [-t THREADS] [-p PRECISION] MODEL FILE...
 */
#include "audio/descriptors.h"
#include "audio/fingerprint.h"
#include "clmr/audio.h"
#include "clmr/error.h"
#include "clmr/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* CPU seconds of the whole process (every thread), user + system. */
static double cpu_now(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec * 1e-6 +
           (double)u.ru_stime.tv_sec + (double)u.ru_stime.tv_usec * 1e-6;
}

int main(int argc, char **argv)
{
    int reps = 3, threads = 2, a = 1;
    const char *precision = "fp32";
    while (a + 1 < argc && argv[a][0] == '-') {
        if (!strcmp(argv[a], "-r"))
            reps = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "-t"))
            threads = atoi(argv[a + 1]);
        else if (!strcmp(argv[a], "-p"))
            precision = argv[a + 1];
        else
            break;
        a += 2;
    }
    if (a + 1 >= argc || reps < 1 || threads < 1) {
        fprintf(stderr, "usage: %s [-r N] [-t THREADS] [-p fp32|bf16|auto] MODEL FILE...\n",
                argv[0]);
        return 2;
    }
    clmr_model_t *m = NULL;
    clmr_infer_t *ctx = NULL;
    char *err = NULL;
    if (clmr_model_load(&m, argv[a], &err)) {
        fprintf(stderr, "model: %s\n", err ? err : "");
        return 1;
    }
    clmr_infer_params_t ip = clmr_infer_default_params();
    ip.threads = threads;
    if (clmr_precision_parse(precision, &ip.precision)) {
        fprintf(stderr, "-p: '%s' is not fp32, bf16 or auto\n", precision);
        return 2;
    }
    if (clmr_infer_open(&ctx, m, &ip, &err)) {
        fprintf(stderr, "infer: %s\n", err ? err : "");
        return 1;
    }
    printf("inference: %s, %d threads\n", clmr_precision_name(clmr_infer_precision(ctx)), threads);
    printf("%-32s %7s %9s %9s %9s %9s %7s %7s\n", "file", "audio_s", "infer_s", "descr_s",
           "fprint_s", "extra_s", "ratio", "cpu%");
    int status = 0;
    for (int i = a + 1; i < argc; i++) {
        clmr_audio_t au;
        clmr_audio_params_t p = clmr_audio_default_params();
        if (clmr_audio_decode_file(&au, argv[i], &p, &err)) {
            printf("%-32s error: %s\n", argv[i], err ? err : "");
            free(err);
            err = NULL;
            status = 1;
            continue;
        }
        double bi = 1e30, bd = 1e30, bf = 1e30, ci = 1e30, cd = 1e30, cf = 1e30;
        for (int r = 0; r < reps; r++) {
            clmr_track_t tr;
            double c0 = cpu_now(), t0 = now();
            if (clmr_track_analyze(&tr, ctx, au.samples, au.n_samples)) {
                status = 1;
                break;
            }
            double t1 = now(), c1 = cpu_now();
            clmr_track_free(&tr);
            clmr_descriptors_t d;
            clmr_descriptors_compute(&d, au.samples, au.n_samples, CLMR_SAMPLE_RATE, NULL);
            double t2 = now(), c2 = cpu_now();
            uint32_t *fp = NULL;
            int n = 0;
            clmr_fingerprint_compute(&fp, &n, au.samples, au.n_samples, CLMR_SAMPLE_RATE, NULL);
            double t3 = now(), c3 = cpu_now();
            free(fp);
            if (t1 - t0 < bi) bi = t1 - t0;
            if (t2 - t1 < bd) bd = t2 - t1;
            if (t3 - t2 < bf) bf = t3 - t2;
            if (c1 - c0 < ci) ci = c1 - c0;
            if (c2 - c1 < cd) cd = c2 - c1;
            if (c3 - c2 < cf) cf = c3 - c2;
        }
        printf("%-32s %7.1f %9.4f %9.4f %9.4f %9.4f %6.1f%% %6.1f%%\n", argv[i], au.duration_s, bi,
               bd, bf, bd + bf, 100 * (bd + bf) / bi, 100 * (cd + cf) / ci);
        clmr_audio_free(&au);
    }
    clmr_infer_close(&ctx);
    clmr_model_close(&m);
    return status;
}
