/* audio_test_util.h - helpers for the decoder tests: a temp dir, making files with ffmpeg at test
 * time, building WAV bytes by hand, and measuring a decoded sine (frequency, amplitude).
 *
 * DESIGN: every test file is produced by the real ffmpeg CLI in a fresh temp dir (removed at
 * exit), so the tests exercise real encoders' output instead of committed blobs; hand-built
 * WAV bytes cover headers no encoder would write. Measurements use the middle half of a
 * signal so encoder/resampler edges do not matter.
 */
#ifndef CLMR_AUDIO_TEST_UTIL_H
#define CLMR_AUDIO_TEST_UTIL_H

#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char t_dir[128];

static inline void tdir_remove(void)
{
    if (!t_dir[0]) return;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t_dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", t_dir);
}

static inline void tdir_make(void)
{
    snprintf(t_dir, sizeof(t_dir), "/tmp/clmr-audio-test-XXXXXX");
    if (!mkdtemp(t_dir)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(tdir_remove);
}

/* Path of `name` inside the temp dir (rotating static buffers: up to 4 live at once). */
static inline const char *tpath(const char *name)
{
    static char bufs[4][256];
    static int k;
    char *b = bufs[k++ & 3];
    snprintf(b, 256, "%s/%s", t_dir, name);
    return b;
}

/* Runs a shell command (printf-style), in the temp dir; returns its exit status. */
__attribute__((format(printf, 1, 2))) static inline int sh(const char *fmt, ...)
{
    char cmd[2048], full[2300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(full, sizeof(full), "cd '%s' && %s", t_dir, cmd);
    int st = system(full);
    if (st != 0) printf("# command failed (%d): %s\n", st, cmd);
    return st;
}

/* ffmpeg with the flags every generator shares. */
#define FFMPEG "ffmpeg -nostdin -hide_banner -v error -y "

static inline unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    *n = 0;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    if (b) *n = (size_t)len;
    return b;
}

static inline int write_all(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = fwrite(data, 1, n, f);
    return fclose(f) == 0 && k == n ? 0 : -1;
}

static inline void put16(unsigned char *p, unsigned v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static inline void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A canonical 44-byte-header WAV with every field given explicitly (so it can lie). */
static inline unsigned char *wav_bytes(unsigned tag, unsigned ch, uint32_t rate, unsigned bits,
                                       unsigned block_align, uint32_t data_size_field,
                                       const void *payload, size_t payload_len, size_t *n)
{
    *n = 44 + payload_len;
    unsigned char *b = calloc(1, *n);
    memcpy(b, "RIFF", 4);
    put32(b + 4, (uint32_t)(36 + payload_len));
    memcpy(b + 8, "WAVEfmt ", 8);
    put32(b + 16, 16);
    put16(b + 20, tag);
    put16(b + 22, ch);
    put32(b + 24, rate);
    put32(b + 28, rate * block_align);
    put16(b + 32, block_align);
    put16(b + 34, bits);
    memcpy(b + 36, "data", 4);
    put32(b + 40, data_size_field);
    if (payload_len) memcpy(b + 44, payload, payload_len);
    return b;
}

/* Frequency of a clean sine by linearly interpolated rising zero crossings over the middle half. */
static inline double measure_freq(const float *x, size_t n, double rate)
{
    size_t a = n / 4, b = 3 * n / 4;
    double first = -1, last = -1;
    long count = 0;
    for (size_t i = a; i + 1 < b; i++) {
        if (x[i] < 0 && x[i + 1] >= 0) {
            double t = (double)i + (double)(-x[i]) / (double)(x[i + 1] - x[i]);
            if (first < 0) first = t;
            last = t;
            count++;
        }
    }
    if (count < 2) return 0;
    return (double)(count - 1) * rate / (last - first);
}

/* Peak amplitude of a sine from its RMS (sqrt(2) * rms) over the middle half. */
static inline double measure_amp(const float *x, size_t n)
{
    size_t a = n / 4, b = 3 * n / 4;
    double s = 0;
    for (size_t i = a; i < b; i++)
        s += (double)x[i] * x[i];
    return b > a ? sqrt(2.0 * s / (double)(b - a)) : 0;
}

static inline double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif
