/* test_pool.c - the FLAC audio pool: round trip within 24-bit quantisation, clipping, refusal of
 * non-finite samples, atomic writes (no temp leftovers, concurrent writers of one id), delete,
 * and the start-up orphan sweep through the store. */
#include <dirent.h>
#include <pthread.h>
#include <sndfile.h>
#include <string.h>

#include "clmr/error.h"
#include "harness.h"
#include "store/pool.h"
#include "store/store.h"
#include "test_util.h"

/* Files in dir whose name contains needle. */
static int count_files(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && strstr(e->d_name, needle)) n++;
    closedir(d);
    return n;
}

static void test_roundtrip_24bit(void)
{
    char *dir = t_mkdtemp("pool");
    char id[65];
    t_fake_id(id, 1, 0);
    enum { N = 3 * CLMR_POOL_RATE };
    float *x = malloc(N * sizeof *x);
    uint64_t seed = 12345;
    for (int i = 0; i < N; i++)
        x[i] = i < N / 2 ? 0.8f * sinf(2 * 3.14159265f * 440.0f * (float)i / CLMR_POOL_RATE)
                         : t_rand(&seed) * 0.999f;
    CHECK(clmr_pool_write(dir, id, x, N, NULL) == 0);
    CHECK(clmr_pool_exists(dir, id) == 1);
    char path[4200], rel[100];
    CHECK(clmr_pool_path(dir, id, path, sizeof path, rel, sizeof rel) == 0);
    CHECK(strncmp(rel, "pool/", 5) == 0 && strncmp(rel + 5, id, 2) == 0);
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    CHECK(sf != NULL);
    CHECK(info.format == (SF_FORMAT_FLAC | SF_FORMAT_PCM_24));
    CHECK(info.samplerate == CLMR_POOL_RATE && info.channels == 1 && info.frames == N);
    if (sf) sf_close(sf);
    float *y = NULL;
    size_t n = 0;
    CHECK(clmr_pool_read(dir, id, &y, &n, NULL) == 0 && n == N);
    /* 24-bit PCM: one quantisation step is 2^-23; rounding keeps the error within one step. */
    double tol = 1.0 / 8388608.0, worst = 0;
    for (size_t i = 0; y && i < n; i++) {
        double d = fabs((double)x[i] - y[i]);
        if (!(d <= worst)) worst = d;
    }
    CHECKF(worst <= tol, "max |x - y| = %g > %g", worst, tol);
    CHECK(worst > 0); /* it really is quantised PCM, not a float copy */
    free(y);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/%.2s", dir, id);
    CHECK(count_files(sub, ".tmp.") == 0);
    /* The FLAC is smaller than the raw floats (noise half compresses poorly; sine well). */
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long bytes = ftell(f);
    fclose(f);
    CHECKF(bytes < (long)(N * sizeof(float)), "%ld bytes", bytes);
    free(x);
    t_rmdir(dir);
}

static void test_clipping_and_refusals(void)
{
    char *dir = t_mkdtemp("pool");
    char id[65];
    t_fake_id(id, 2, 0);
    float x[4] = {1.5f, -3.0f, 0.25f, 1.0f};
    CHECK(clmr_pool_write(dir, id, x, 4, NULL) == 0);
    float *y = NULL;
    size_t n = 0;
    CHECK(clmr_pool_read(dir, id, &y, &n, NULL) == 0 && n == 4);
    /* Clipped to full scale instead of wrapping around to the opposite sign. */
    CHECK(y && y[0] > 0.9999f && y[0] <= 1.0f);
    CHECK(y && y[1] < -0.9999f && y[1] >= -1.0f);
    CHECK(y && fabsf(y[2] - 0.25f) < 1e-6f);
    free(y);
    char id2[65];
    t_fake_id(id2, 3, 0);
    float bad[3] = {0, NAN, 0};
    char *err = NULL;
    CHECK(clmr_pool_write(dir, id2, bad, 3, &err) == CLMR_EINVAL && err);
    free(err);
    bad[1] = INFINITY;
    CHECK(clmr_pool_write(dir, id2, bad, 3, NULL) == CLMR_EINVAL);
    CHECK(clmr_pool_write(dir, id2, bad, 0, NULL) == CLMR_EINVAL);
    CHECK(clmr_pool_exists(dir, id2) == 0);
    CHECK(clmr_pool_write(dir, "../../../../tmp/x", x, 4, NULL) == CLMR_EINVAL);
    CHECK(clmr_pool_write(dir, "ABCDEF", x, 4, NULL) == CLMR_EINVAL);
    CHECK(clmr_pool_read(dir, id2, &y, &n, NULL) == CLMR_ENOT_FOUND);
    CHECK(clmr_pool_delete(dir, id2, NULL) == CLMR_ENOT_FOUND);
    CHECK(clmr_pool_delete(dir, id, NULL) == 0);
    CHECK(clmr_pool_exists(dir, id) == 0);
    /* A corrupt pool file is an I/O error, not a crash. */
    char path[4200];
    clmr_pool_path(dir, id, path, sizeof path, NULL, 0);
    FILE *f = fopen(path, "wb");
    fputs("fLaC but not really", f);
    fclose(f);
    CHECK(clmr_pool_read(dir, id, &y, &n, NULL) == CLMR_EIO);
    t_rmdir(dir);
}

typedef struct {
    const char *dir;
    const char *id;
    float value;
    int rc;
} wr_t;

static void *write_main(void *arg)
{
    wr_t *w = arg;
    float x[22050];
    for (int i = 0; i < 22050; i++)
        x[i] = w->value;
    w->rc = clmr_pool_write(w->dir, w->id, x, 22050, NULL);
    return NULL;
}

static void test_concurrent_same_id(void)
{
    char *dir = t_mkdtemp("pool");
    char id[65];
    t_fake_id(id, 4, 0);
    enum { T = 4 };
    wr_t w[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        w[i] = (wr_t){dir, id, 0.1f * (float)(i + 1), -99};
        pthread_create(&th[i], NULL, write_main, &w[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK(w[i].rc == 0);
    }
    /* Exactly one complete file from one writer: every sample equals the same writer's value. */
    float *y = NULL;
    size_t n = 0;
    CHECK(clmr_pool_read(dir, id, &y, &n, NULL) == 0 && n == 22050);
    int uniform = y != NULL;
    for (size_t i = 1; y && i < n; i++)
        if (y[i] != y[0]) uniform = 0;
    CHECK(uniform);
    CHECK(y && y[0] > 0.05f && y[0] < 0.45f);
    free(y);
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/%.2s", dir, id);
    CHECK(count_files(sub, ".tmp.") == 0);
    CHECK(count_files(sub, ".flac") == 1);
    t_rmdir(dir);
}

static void test_orphan_sweep(void)
{
    char *dir = t_mkdtemp("pool");
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    clmr_store_t *s = NULL;
    CHECK(clmr_store_open(&s, &p, NULL) == 0);
    if (!s) return;
    const char *pool = clmr_store_pool_dir(s);
    float x[100];
    for (int i = 0; i < 100; i++)
        x[i] = 0.01f * (float)i;
    clmr_track_record_t keep = {0};
    t_fake_id(keep.id, 10, 0);
    char orphan[65];
    t_fake_id(orphan, 11, 0);
    CHECK(clmr_pool_write(pool, keep.id, x, 100, NULL) == 0);
    CHECK(clmr_store_track_put(s, &keep, NULL, NULL) == 0);
    CHECK(clmr_pool_write(pool, orphan, x, 100, NULL) == 0);
    char tmp[4300], foreign[4300];
    snprintf(tmp, sizeof tmp, "%s/%.2s/%s.flac.tmp.Ab12Cd", pool, keep.id, keep.id);
    snprintf(foreign, sizeof foreign, "%s/%.2s/notes.txt", pool, keep.id);
    fclose(fopen(tmp, "wb"));
    fclose(fopen(foreign, "wb"));
    int removed = -1;
    CHECK(clmr_store_pool_sweep(s, &removed, NULL) == 0);
    CHECKF(removed == 2, "removed %d", removed);
    CHECK(clmr_pool_exists(pool, keep.id) == 1);
    CHECK(clmr_pool_exists(pool, orphan) == 0);
    CHECK(!t_file_exists(tmp));
    CHECK(t_file_exists(foreign)); /* never delete what we did not name */
    clmr_store_close(&s);
    t_rmdir(dir);
}

int main(void)
{
    RUN_TEST(test_roundtrip_24bit);
    RUN_TEST(test_clipping_and_refusals);
    RUN_TEST(test_concurrent_same_id);
    RUN_TEST(test_orphan_sweep);
    return TEST_END();
}
