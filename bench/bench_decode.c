/* bench_decode.c - how fast clmr_audio_decode_memory turns files into 22,050 Hz mono.
 *
 * DESIGN: each file is read into memory once (disk time excluded), then decoded `-r N` times
 * (default 3); the best wall time and CPU time are printed with the x-realtime factor
 * (decoded seconds / wall seconds). A failing file prints its error and the run continues.
 * Usage: bench_decode [-r N] FILE...
 */
#include "clmr/audio.h"
#include "clmr/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0;
    *n = 0;
    for (;;) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 1 << 20;
            unsigned char *q = realloc(buf, cap);
            if (!q) break;
            buf = q;
        }
        size_t k = fread(buf + *n, 1, cap - *n, f);
        if (k == 0) break;
        *n += k;
    }
    fclose(f);
    return buf;
}

int main(int argc, char **argv)
{
    int reps = 3, first = 1, status = 0;
    if (argc > 2 && strcmp(argv[1], "-r") == 0) {
        reps = atoi(argv[2]);
        first = 3;
    }
    if (first >= argc || reps < 1) {
        fprintf(stderr, "usage: %s [-r N] FILE...\n", argv[0]);
        return 2;
    }
    clmr_audio_params_t p = clmr_audio_default_params();
    p.max_duration_s = 4 * 3600; /* benchmark long files too */
    printf("%-40s %8s %8s %9s %9s %10s\n", "file", "format", "audio_s", "wall_s", "cpu_s",
           "x_realtime");
    for (int i = first; i < argc; i++) {
        size_t n = 0;
        unsigned char *buf = slurp(argv[i], &n);
        if (!buf) {
            printf("%-40s cannot read\n", argv[i]);
            status = 1;
            continue;
        }
        double best_wall = 1e30, best_cpu = 1e30, dur = 0;
        char fmt[32] = "";
        for (int r = 0; r < reps; r++) {
            clmr_audio_t a;
            char *err = NULL;
            double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
            int rc = clmr_audio_decode_memory(&a, buf, n, &p, &err);
            double w = now(CLOCK_MONOTONIC) - w0, c = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
            if (rc) {
                printf("%-40s error %s: %s\n", argv[i], clmr_err_name(rc), err ? err : "");
                free(err);
                status = 1;
                break;
            }
            dur = a.duration_s;
            snprintf(fmt, sizeof(fmt), "%s", a.codec);
            clmr_audio_free(&a);
            if (w < best_wall) best_wall = w;
            if (c < best_cpu) best_cpu = c;
        }
        if (dur > 0)
            printf("%-40s %8s %8.1f %9.4f %9.4f %10.0f\n", argv[i], fmt, dur, best_wall, best_cpu,
                   dur / best_wall);
        free(buf);
    }
    return status;
}
