/* test_admin.c - the admin token comparison (equal only for identical bytes and lengths) and the
 * workers' model source (contexts rebuilt lazily when the served model changes, references
 * balanced). */
#include "harness.h"
#include "http/admin.h"
#include "http/auth.h"
#include "http/workers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static void test_token_equal(void)
{
    const char *t = "s3cret-token";
    size_t n = strlen(t);
    CHECK(clmr__auth_equal(t, n, "s3cret-token", n));
    CHECK(!clmr__auth_equal(t, n, "s3cret-tokeN", n));
    CHECK(!clmr__auth_equal(t, n, "s3cret-toke", n - 1));   /* prefix */
    CHECK(!clmr__auth_equal(t, n, "s3cret-token2", n + 1)); /* longer */
    CHECK(!clmr__auth_equal(t, n, "", 0));
    CHECK(!clmr__auth_equal(t, n, "x3cret-token", n)); /* first byte */
    char nul[13] = "s3cret-token";
    nul[5] = 0; /* an embedded NUL with the right length is still wrong */
    CHECK(!clmr__auth_equal(t, n, nul, n));
}

/* Issue 12: short, low-entropy and placeholder admin tokens are refused at start-up. */
static void test_token_strength(void)
{
    const char *why = NULL;
    const char *bad[] = {"x",
                         "s3cret-admin-token-0123456789", /* 29 characters */
                         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                         "abababababababababababababababababab", /* 2 distinct */
                         "change-me-to-a-long-random-string",
                         "a token with spaces in it that is long enough",
                         "0123456789abcdef0123456789abcde"}; /* 31 */
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why = NULL;
        CHECKF(!clmr__auth_token_ok(bad[i], strlen(bad[i]), &why) && why, "accepted '%s'", bad[i]);
    }
    const char *good[] = {"0123456789abcdef0123456789abcdef", "Zq3kP9vX2mW8nR4tY6uB1cD5eF7gH0jL",
                          "u7K+2mQ9/xW3pL8vN4rT6yB1cZ5dF0hJ=="};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CHECKF(clmr__auth_token_ok(good[i], strlen(good[i]), &why), "refused '%s'", good[i]);
}

/* A fake model source: the "model" is a counter value; references are counted. */
static atomic_int refs_out, current_gen = 1;
static int gens[64];

static void *acquire(void *ud, const clmr_model_t **model)
{
    atomic_fetch_add(&refs_out, 1);
    *model = NULL; /* no inference context is built for a NULL model */
    return &gens[atomic_load(&current_gen)];
}

static void release(void *ud, void *ref)
{
    atomic_fetch_sub(&refs_out, 1);
}

static atomic_int seen[64];

static void job(void *arg, clmr_infer_t *ctx)
{
    int *g = clmr_workers_model_ref();
    atomic_fetch_add(&seen[g - gens], 1);
}

static void test_model_source(void)
{
    clmr_workers_t *w = NULL;
    CHECK(clmr_workers_open_source(&w, NULL, acquire, release, NULL, 2, 0, 100, NULL) == 0);
    for (int i = 0; i < 20; i++)
        CHECK(clmr_workers_submit(w, job, NULL) == 0);
    while (clmr_workers_queued(w) || clmr_workers_running(w))
        usleep(1000);
    atomic_store(&current_gen, 2);
    for (int i = 0; i < 20; i++)
        CHECK(clmr_workers_submit(w, job, NULL) == 0);
    clmr_workers_close(&w);
    CHECKF(atomic_load(&seen[1]) == 20 && atomic_load(&seen[2]) == 20, "gen1 %d gen2 %d",
           atomic_load(&seen[1]), atomic_load(&seen[2]));
    CHECKF(atomic_load(&refs_out) == 0, "%d references not released", atomic_load(&refs_out));
}

int main(void)
{
    RUN_TEST(test_token_equal);
    RUN_TEST(test_token_strength);
    RUN_TEST(test_model_source);
    return TEST_END();
}
