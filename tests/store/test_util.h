/* test_util.h - temp directories and small helpers shared by the store and index tests. */
#ifndef CLMR_TEST_STORE_UTIL_H
#define CLMR_TEST_STORE_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A fresh directory under TMPDIR (or /tmp); caller frees and removes it with t_rmdir. */
static inline char *t_mkdtemp(const char *tag)
{
    const char *base = getenv("TMPDIR");
    char *p = NULL;
    if (asprintf(&p, "%s/clmr-%s-XXXXXX", base && base[0] ? base : "/tmp", tag) < 0) return NULL;
    if (!mkdtemp(p)) {
        free(p);
        return NULL;
    }
    return p;
}

static inline int t__rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void t_rmdir(char *dir)
{
    if (!dir) return;
    nftw(dir, t__rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

/* Deterministic "sha256-like" id from a number: 64 lowercase hex chars. */
static inline void t_fake_id(char out[65], uint64_t n, uint64_t salt)
{
    uint64_t x = n * 0x9E3779B97F4A7C15ull ^ salt;
    for (int i = 0; i < 4; i++) {
        x ^= x >> 31;
        x *= 0xBF58476D1CE4E5B9ull;
        x ^= x >> 29;
        snprintf(out + 16 * i, 17, "%016llx", (unsigned long long)(x + (uint64_t)i));
    }
    out[64] = '\0';
}

/* xorshift PRNG: uniform in [-1, 1). */
static inline float t_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static inline int t_file_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

#endif
