/* test_store_bounds.c - issue 12 in the store: the tag cache stays within its row and age bounds,
 * the pool budget refuses new tracks past max-pool-bytes, API keys are made, listed and revoked
 * with only their hash stored, the readiness ping gives up instead of waiting for a reader, and a
 * relative data directory is resolved once at open. Real SQLite files in temp directories. */
#include "clmr/error.h"
#include "harness.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "test_util.h"

#include <sys/stat.h>

static clmr_store_t *open_with(const char *dir, clmr_store_params_t p)
{
    p.data_dir = dir;
    clmr_store_t *s = NULL;
    char *err = NULL;
    int rc = clmr_store_open(&s, &p, &err);
    CHECKF(rc == 0, "open %s: %d %s", dir, rc, err ? err : "");
    free(err);
    return s;
}

static void add_model(clmr_store_t *s, const char *id)
{
    clmr_store_model_t m = {0};
    snprintf(m.id, sizeof m.id, "%s", id);
    m.name = "m";
    m.path = "/m.safetensors";
    m.status = CLMR_MODEL_ACTIVE;
    CHECK(clmr_store_model_put(s, &m, NULL) == 0);
}

static void sha_of(int i, char out[65])
{
    for (int k = 0; k < 64; k++)
        out[k] = "0123456789abcdef"[(i * 7 + k) % 16];
    snprintf(out, 9, "%08x", (unsigned)i); /* distinct prefixes */
    out[8] = 'a';
    out[64] = 0;
}

static int cache_put(clmr_store_t *s, int i, int64_t created_at)
{
    float sc[2] = {0.5f, 0.25f};
    clmr_tag_result_t r = {0};
    sha_of(i, r.sha256);
    snprintf(r.model_id, sizeof r.model_id, "m1");
    r.duration_s = 1;
    r.chunks = 1;
    r.scores = sc;
    r.n_scores = 2;
    r.created_at = created_at;
    return clmr_store_cache_put(s, &r, NULL);
}

static int cache_has(clmr_store_t *s, int i)
{
    char sha[65];
    sha_of(i, sha);
    clmr_tag_result_t r;
    int rc = clmr_store_cache_get(s, sha, "m1", &r, NULL);
    clmr_tag_result_clear(&r);
    return rc == 0;
}

static void test_cache_row_bound(void)
{
    char *dir = t_mkdtemp("bounds");
    clmr_store_params_t p = clmr_store_default_params();
    p.cache_max_rows = 5;
    clmr_store_t *s = open_with(dir, p);
    add_model(s, "m1");
    for (int i = 0; i < 40; i++) {
        CHECK(cache_put(s, i, 0) == 0);
        int64_t n = -1;
        CHECK(clmr_store_cache_count(s, &n, NULL) == 0);
        CHECKF(n >= 0 && n <= 5, "after %d puts: %lld rows", i + 1, (long long)n);
    }
    for (int i = 35; i < 40; i++)
        CHECKF(cache_has(s, i), "newest entry %d evicted", i);
    CHECK(!cache_has(s, 0) && !cache_has(s, 34));
    /* an upsert of a kept entry neither grows the table nor loses it */
    CHECK(cache_put(s, 39, 0) == 0 && cache_has(s, 39));
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void test_cache_age_bound(void)
{
    char *dir = t_mkdtemp("bounds");
    clmr_store_params_t p = clmr_store_default_params();
    p.cache_max_age_s = 60;
    clmr_store_t *s = open_with(dir, p);
    add_model(s, "m1");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000;
    CHECK(cache_put(s, 1, now - 120 * 1000) == 0); /* two minutes old: expired */
    CHECK(!cache_has(s, 1));                       /* an expired entry is a miss */
    CHECK(cache_put(s, 2, 0) == 0);                /* the next write evicts it */
    int64_t n = -1;
    CHECK(clmr_store_cache_count(s, &n, NULL) == 0 && n == 1);
    CHECK(cache_has(s, 2));
    clmr_store_close(&s);
    t_rmdir(dir);
}

static int ingest(clmr_store_t *s, int i, int64_t bytes, char **msg)
{
    clmr_track_record_t t = {0};
    sha_of(100 + i, t.id);
    t.duration_s = 1;
    t.audio_path = "pool/x.flac";
    t.audio_bytes = bytes;
    return clmr_store_track_ingest(s, &t, "m1", NULL, 0, NULL, 0, NULL, msg);
}

static void test_pool_budget(void)
{
    char *dir = t_mkdtemp("bounds");
    clmr_store_params_t p = clmr_store_default_params();
    p.pool_max_bytes = 1000;
    clmr_store_t *s = open_with(dir, p);
    add_model(s, "m1");
    char *msg = NULL;
    CHECK(ingest(s, 1, 600, &msg) == 0);
    int rc = ingest(s, 2, 600, &msg);
    CHECKF(rc == CLMR_EDB_FULL, "got %s", clmr_err_name(rc));
    CHECK(msg && strstr(msg, "max-pool-bytes"));
    int64_t used = 0, n = 0;
    CHECK(clmr_store_pool_bytes(s, &used, NULL) == 0 && used == 600);
    CHECK(clmr_store_track_count(s, &n, NULL) == 0 && n == 1); /* the refused row rolled back */
    CHECK(ingest(s, 3, 400, &msg) == 0);                       /* exactly at the budget */
    char id[65];
    sha_of(101, id);
    CHECK(clmr_store_track_delete(s, id, NULL) == 0);
    CHECK(ingest(s, 2, 600, &msg) == 0); /* room again after a delete */
    free(msg);
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void test_keys(void)
{
    char *dir = t_mkdtemp("bounds");
    clmr_store_t *s = open_with(dir, clmr_store_default_params());
    char k1[CLMR_KEY_TEXT_MAX], k2[CLMR_KEY_TEXT_MAX];
    clmr_store_key_t a, b;
    CHECK(clmr_store_key_create(s, "nightly-ingest", CLMR_KEY_WRITE, k1, &a, NULL) == 0);
    CHECK(clmr_store_key_create(s, "reader", CLMR_KEY_READ, k2, &b, NULL) == 0);
    CHECKF(strlen(k1) == 48 && !strncmp(k1, "clmr_", 5), "key '%s'", k1);
    CHECK(strcmp(k1, k2) != 0);
    char h[65];
    clmr_store_key_hash(k1, strlen(k1), h);
    CHECK(!strcmp(h, a.hash) && a.scope == CLMR_KEY_WRITE && !strncmp(a.prefix, k1, 12));
    CHECK(!strstr(a.hash, k1 + 5));
    CHECK(clmr_store_key_create(s, "", CLMR_KEY_READ, k2, NULL, NULL) == CLMR_EINVAL);
    CHECK(clmr_store_key_create(s, "x", (clmr_key_scope_t)7, k2, NULL, NULL) == CLMR_EINVAL);
    /* nothing in the database holds the key itself */
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(db,
                             "SELECT count(*) FROM api_keys WHERE hash = ?1 OR prefix = ?1 "
                             "OR name = ?1",
                             -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_text(st, 1, k1, -1, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0);
    sqlite3_finalize(st);
    clmr__store_rrelease(s, db);
    clmr_store_key_t *items = NULL;
    size_t n = 0;
    CHECK(clmr_store_key_list(s, 0, &items, &n, NULL) == 0 && n == 2);
    clmr_store_key_list_free(items, n);
    clmr_store_key_t r;
    CHECK(clmr_store_key_revoke(s, a.id, &r, NULL) == 0 && r.revoked_at > 0);
    clmr_store_key_clear(&r);
    CHECK(clmr_store_key_list(s, 0, &items, &n, NULL) == 0 && n == 1 && items[0].id == b.id);
    clmr_store_key_list_free(items, n);
    CHECK(clmr_store_key_list(s, 1, &items, &n, NULL) == 0 && n == 2);
    clmr_store_key_list_free(items, n);
    CHECK(clmr_store_key_revoke(s, 999, NULL, NULL) == CLMR_ENOT_FOUND);
    clmr_store_key_clear(&a);
    clmr_store_key_clear(&b);
    clmr_store_close(&s);
    t_rmdir(dir);
}

/* Issue 12 item 7: /readyz's database probe must not wait without bound for a reader. */
static void test_ping_gives_up(void)
{
    char *dir = t_mkdtemp("bounds");
    clmr_store_params_t p = clmr_store_default_params();
    p.readers = 1;
    clmr_store_t *s = open_with(dir, p);
    int v = 0;
    CHECK(clmr_store_ping(s, 100, &v, NULL) == 0 && v == clmr_store_migration_count());
    sqlite3 *held = clmr__store_racquire(s); /* a long reader holds the only connection */
    char *msg = NULL;
    int rc = clmr_store_ping(s, 100, &v, &msg);
    CHECKF(rc == CLMR_EBUSY, "got %s", clmr_err_name(rc));
    free(msg);
    clmr__store_rrelease(s, held);
    CHECK(clmr_store_ping(s, 100, &v, NULL) == 0);
    clmr_store_close(&s);
    t_rmdir(dir);
}

/* Issue 12 item 5: a relative data directory is made absolute once, at open. */
static void test_relative_data_dir(void)
{
    char *dir = t_mkdtemp("bounds");
    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(dir) == 0);
    clmr_store_t *s = open_with("./data", clmr_store_default_params());
    CHECK(chdir(cwd) == 0);
    const char *d = clmr_store_data_dir(s), *pd = clmr_store_pool_dir(s);
    CHECKF(d[0] == '/' && strstr(d, dir) && !strstr(d, "/./"), "data dir '%s'", d);
    CHECKF(pd[0] == '/' && !strstr(pd, "/./"), "pool dir '%s'", pd);
    clmr_store_close(&s);
    t_rmdir(dir);
}

int main(void)
{
    RUN_TEST(test_cache_row_bound);
    RUN_TEST(test_cache_age_bound);
    RUN_TEST(test_pool_budget);
    RUN_TEST(test_keys);
    RUN_TEST(test_ping_gives_up);
    RUN_TEST(test_relative_data_dir);
    return TEST_END();
}
