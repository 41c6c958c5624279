/* test_store.c - the SQLite store against real database files in temp directories: migrations
 * (fresh and from the committed v1 fixture), CRUD, cursor pagination under concurrent change,
 * cascading deletes, the tag cache, models, jobs, bulk transactions, SQLITE_FULL mapping and
 * 8 concurrent writers + readers without SQLITE_BUSY. */
#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <string.h>

#include "clmr/error.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "store/pool.h"
#include "store/store.h"
#include "store/store_internal.h"
#include "test_util.h"

#define MODEL "base-test"

static clmr_store_t *open_store(const char *dir, int64_t max_pages)
{
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    p.max_page_count = max_pages;
    p.cache_max_age_s = 0; /* the v1 fixture's cached result is older than the default age */
    clmr_store_t *s = NULL;
    char *err = NULL;
    int rc = clmr_store_open(&s, &p, &err);
    CHECKF(rc == 0, "open %s: %d %s", dir, rc, err ? err : "");
    free(err);
    return s;
}

static void add_model(clmr_store_t *s, const char *id, clmr_model_status_t st)
{
    clmr_store_model_t m = {0};
    snprintf(m.id, sizeof m.id, "%s", id);
    m.name = (char *)"test model";
    m.path = (char *)"/nowhere/model.safetensors";
    m.status = st;
    CHECK(clmr_store_model_put(s, &m, NULL) == 0);
}

static int put_track(clmr_store_t *s, uint64_t n, const char *title)
{
    clmr_track_record_t t = {0};
    t_fake_id(t.id, n, 0);
    t.title = (char *)title;
    t.duration_s = 1.0 + (double)n;
    int created = -1;
    int rc = clmr_store_track_put(s, &t, &created, NULL);
    return rc ? rc : created;
}

static int64_t raw_count(clmr_store_t *s, const char *sql)
{
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return n;
}

/* ---- migrations ---- */

static void test_migrations_fresh(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    int v = -1;
    CHECK(clmr_store_schema_version(s, &v, NULL) == 0);
    CHECKF(v == clmr_store_migration_count() && v >= 2, "version %d of %d", v,
           clmr_store_migration_count());
    CHECK(raw_count(s, "SELECT count(*) FROM schema_migrations WHERE applied_at > 0") == v);
    CHECK(raw_count(s, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs'") == 1);
    /* Settings the durability promise rests on. */
    sqlite3_stmt *st;
    sqlite3_prepare_v2(s->writer, "PRAGMA journal_mode", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW &&
          strcmp((const char *)sqlite3_column_text(st, 0), "wal") == 0);
    sqlite3_finalize(st);
    sqlite3_prepare_v2(s->writer, "PRAGMA synchronous", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 2); /* FULL */
    sqlite3_finalize(st);
    sqlite3_prepare_v2(s->writer, "PRAGMA foreign_keys", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1);
    sqlite3_finalize(st);
    CHECK(clmr_store_check(s, NULL) == 0);
    clmr_store_close(&s);
    CHECK(s == NULL);
    /* Re-opening applies nothing twice. */
    s = open_store(dir, 0);
    CHECK(raw_count(s, "SELECT count(*) FROM schema_migrations") == clmr_store_migration_count());
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void test_migrations_all_files_embedded(void)
{
    /* Every migrations/NNNN_*.sql in the source tree must be listed in src/store/meson.build. */
    DIR *d = opendir(CLMRD_SOURCE_ROOT "/migrations");
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len > 9 && strcmp(e->d_name + len - 4, ".sql") == 0) n++;
    }
    if (d) closedir(d);
    CHECKF(n == clmr_store_migration_count(), "%d files, %d embedded", n,
           clmr_store_migration_count());
}

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    int ok = a && b;
    char buf[8192];
    size_t k;
    while (ok && (k = fread(buf, 1, sizeof buf, a)) > 0)
        ok = fwrite(buf, 1, k, b) == k;
    if (a) fclose(a);
    if (b) fclose(b);
    return ok ? 0 : -1;
}

static void test_migrations_upgrade_v1_fixture(void)
{
    char *dir = t_mkdtemp("store");
    char db[4096];
    snprintf(db, sizeof db, "%s/clmrd.sqlite", dir);
    CHECK(copy_file(CLMRD_SOURCE_ROOT "/tests/fixtures/db/schema_v1.sqlite", db) == 0);
    /* The fixture really is at version 1 before we open it. */
    sqlite3 *raw;
    CHECK(sqlite3_open(db, &raw) == SQLITE_OK);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(raw, "SELECT max(version) FROM schema_migrations", -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1);
    sqlite3_finalize(st);
    sqlite3_close(raw);

    clmr_store_t *s = open_store(dir, 0);
    int v = 0;
    CHECK(clmr_store_schema_version(s, &v, NULL) == 0 && v == clmr_store_migration_count());
    int64_t n = 0;
    CHECK(clmr_store_track_count(s, &n, NULL) == 0 && n == 3);
    clmr_track_record_t t;
    CHECK(clmr_store_track_get(s,
                               "1111111111111111111111111111111111111111111111111111111111111111",
                               &t, NULL) == 0);
    CHECK(t.title && strcmp(t.title, "First") == 0 && t.artist && strcmp(t.artist, "Ann") == 0);
    CHECK(t.external_id && strcmp(t.external_id, "ext-1") == 0);
    CHECK_NEAR(t.duration_s, 30.5, 0);
    CHECK(t.created_at == 1764000000010);
    clmr_track_record_clear(&t);
    float *e = NULL;
    int dim = 0;
    CHECK(clmr_store_embedding_get(
              s, "2222222222222222222222222222222222222222222222222222222222222222", "base-v1", &e,
              &dim, NULL) == 0);
    CHECK(dim == 4 && e && e[0] == 4.0f && e[1] == 3.0f && e[2] == 2.0f && e[3] == -1.0f);
    free(e);
    clmr_tag_result_t r;
    CHECK(clmr_store_cache_get(s,
                               "abababababababababababababababababababababababababababababababab",
                               "base-v1", &r, NULL) == 0);
    CHECK(r.n_scores == 2 && r.scores && r.scores[0] == 0.5f && r.scores[1] == 0.25f);
    CHECK(r.chunks == 1 && r.embedding == NULL);
    CHECK(strcmp(r.precision, "fp32") == 0); /* 0005: rows from before bf16 were fp32 */
    clmr_tag_result_clear(&r);
    clmr_store_model_t m;
    CHECK(clmr_store_model_get_active(s, &m, NULL) == 0 && strcmp(m.id, "base-v1") == 0);
    clmr_store_model_clear(&m);
    /* The table added by 0002 works on the upgraded file. */
    int64_t job = 0;
    CHECK(clmr_store_job_create(s, "base-v1", "{\"steps\":3}", 3, &job, NULL) == 0 && job > 0);
    /* And the pagination key of old rows is intact. */
    clmr_track_record_t *items = NULL;
    size_t ni = 0;
    char *next = NULL;
    CHECK(clmr_store_track_list(s, NULL, 2, &items, &ni, &next, NULL) == 0 && ni == 2 && next);
    CHECK(ni == 2 && strncmp(items[0].id, "1111", 4) == 0 && strncmp(items[1].id, "2222", 4) == 0);
    clmr_track_list_free(items, ni);
    free(next);
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void test_migrations_refuse_newer_or_foreign(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    clmr_store_close(&s);
    char db[4096];
    snprintf(db, sizeof db, "%s/clmrd.sqlite", dir);
    sqlite3 *raw;
    CHECK(sqlite3_open(db, &raw) == SQLITE_OK);
    CHECK(sqlite3_exec(raw, "INSERT INTO schema_migrations VALUES (99, 'future', 1)", NULL, NULL,
                       NULL) == SQLITE_OK);
    sqlite3_close(raw);
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    char *err = NULL;
    int rc = clmr_store_open(&s, &p, &err);
    CHECKF(rc == CLMR_EDB && s == NULL && err && strstr(err, "newer"), "rc %d %s", rc,
           err ? err : "");
    free(err);
    err = NULL;
    /* A renamed migration means two diverging schemas: refuse too. */
    CHECK(sqlite3_open(db, &raw) == SQLITE_OK);
    sqlite3_exec(raw,
                 "DELETE FROM schema_migrations WHERE version = 99;"
                 "UPDATE schema_migrations SET name = 'other' WHERE version = 2",
                 NULL, NULL, NULL);
    sqlite3_close(raw);
    rc = clmr_store_open(&s, &p, &err);
    CHECKF(rc == CLMR_EDB && err && strstr(err, "does not match"), "rc %d %s", rc, err ? err : "");
    free(err);
    t_rmdir(dir);
}

static void test_open_corrupt_file_fails_cleanly(void)
{
    char *dir = t_mkdtemp("store");
    char db[4096];
    snprintf(db, sizeof db, "%s/clmrd.sqlite", dir);
    FILE *f = fopen(db, "wb");
    fputs("this is not a database, just text that is long enough to have a header.........", f);
    fclose(f);
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    clmr_store_t *s = NULL;
    char *err = NULL;
    int rc = clmr_store_open(&s, &p, &err);
    CHECKF(rc == CLMR_EDB && s == NULL && err, "rc %d", rc);
    free(err);
    p.data_dir = NULL;
    CHECK(clmr_store_open(&s, &p, NULL) == CLMR_EINVAL);
    t_rmdir(dir);
}

/* ---- tracks ---- */

static void test_track_crud(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    CHECK(put_track(s, 1, "One") == 1);
    CHECK(put_track(s, 1, "Changed") == 0); /* already present: untouched */
    clmr_track_record_t t, bad = {0};
    char id[65];
    t_fake_id(id, 1, 0);
    CHECK(clmr_store_track_get(s, id, &t, NULL) == 0);
    CHECK(strcmp(t.id, id) == 0 && t.title && strcmp(t.title, "One") == 0);
    CHECK(t.artist == NULL && t.audio_path == NULL && t.created_at > 1700000000000);
    CHECK_NEAR(t.duration_s, 2.0, 0);
    clmr_track_record_clear(&t);
    t_fake_id(id, 2, 0);
    CHECK(clmr_store_track_get(s, id, &t, NULL) == CLMR_ENOT_FOUND);
    snprintf(bad.id, sizeof bad.id, "%s", "ABCDEF"); /* not a sha256 hex */
    CHECK(clmr_store_track_put(s, &bad, NULL, NULL) == CLMR_EINVAL);
    t_fake_id(bad.id, 3, 0);
    bad.duration_s = NAN;
    CHECK(clmr_store_track_put(s, &bad, NULL, NULL) == CLMR_EINVAL);
    int64_t n = 0;
    CHECK(clmr_store_track_count(s, &n, NULL) == 0 && n == 1);
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void test_pagination_stable_under_changes(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    enum { N = 25 };
    for (uint64_t i = 0; i < N; i++)
        CHECK(put_track(s, i, "x") == 1);
    int seen[N] = {0};
    char *cursor = NULL;
    int pages = 0, total = 0, order_ok = 1;
    uint64_t extra = 1000;
    int64_t prev_created = 0;
    for (;;) {
        clmr_track_record_t *items = NULL;
        size_t ni = 0;
        char *next = NULL;
        int rc = clmr_store_track_list(s, cursor, 7, &items, &ni, &next, NULL);
        CHECK(rc == 0);
        if (rc) break;
        for (size_t j = 0; j < ni; j++) {
            for (uint64_t i = 0; i < N; i++) {
                char id[65];
                t_fake_id(id, i, 0);
                if (strcmp(id, items[j].id) == 0) seen[i]++;
            }
            if (items[j].created_at < prev_created) order_ok = 0;
            prev_created = items[j].created_at;
            total++;
        }
        clmr_track_list_free(items, ni);
        free(cursor);
        cursor = next;
        pages++;
        /* Between pages: new tracks arrive and an unseen one (number 20) is deleted. */
        CHECK(put_track(s, extra++, "late") == 1);
        if (pages == 1) {
            char id[65];
            t_fake_id(id, 20, 0);
            CHECK(clmr_store_track_delete(s, id, NULL) == 0);
        }
        if (!cursor) break;
        if (pages > 50) break;
    }
    for (int i = 0; i < N; i++)
        CHECKF(seen[i] == (i == 20 ? 0 : 1), "track %d seen %d times", i, seen[i]);
    /* Inserted during the walk: they come after the originals, so the walk reaches them. */
    CHECKF(total == N - 1 + pages - 1, "total %d pages %d", total, pages);
    CHECK(order_ok);
    CHECK(pages >= 4);
    clmr_track_record_t *items;
    size_t ni;
    char *next;
    CHECK(clmr_store_track_list(s, "garbage", 5, &items, &ni, &next, NULL) == CLMR_EINVAL);
    CHECK(clmr_store_track_list(s, "c1zzzzzzzzzzzzzzzz", 5, &items, &ni, &next, NULL) ==
          CLMR_EINVAL);
    CHECK(clmr_store_track_list(s, NULL, 0, &items, &ni, &next, NULL) == CLMR_EINVAL);
    CHECK(clmr_store_track_list(s, NULL, 1001, &items, &ni, &next, NULL) == CLMR_EINVAL);
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void test_ingest_and_delete_cascade(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    add_model(s, MODEL, CLMR_MODEL_ACTIVE);
    add_model(s, "other", CLMR_MODEL_CANDIDATE);
    clmr_track_record_t t = {0};
    t_fake_id(t.id, 7, 0);
    t.title = (char *)"Song";
    t.artist = (char *)"Band";
    t.duration_s = 3;
    char path[4200], rel[100];
    CHECK(clmr_pool_path(clmr_store_pool_dir(s), t.id, path, sizeof path, rel, sizeof rel) == 0);
    float samples[2205];
    for (int i = 0; i < 2205; i++)
        samples[i] = 0.5f * sinf((float)i * 0.05f);
    CHECK(clmr_pool_write(clmr_store_pool_dir(s), t.id, samples, 2205, NULL) == 0);
    CHECK(t_file_exists(path));
    t.audio_path = rel;
    float emb[8] = {1, 2, 3, 4, 5, 6, 7, 8}, sc[3] = {0.1f, 0.2f, 0.7f};
    int created = -1;
    CHECK(clmr_store_track_ingest(s, &t, MODEL, emb, 8, sc, 3, &created, NULL) == 0 &&
          created == 1);
    CHECK(clmr_store_embedding_put(s, t.id, "other", emb, 4, NULL) == 0);
    /* Unknown model: nothing of the ingest may remain (one transaction). */
    clmr_track_record_t t2 = t;
    t_fake_id(t2.id, 8, 0);
    t2.audio_path = NULL;
    CHECK(clmr_store_track_ingest(s, &t2, "nope", emb, 8, sc, 3, NULL, NULL) == CLMR_ENOT_FOUND);
    clmr_track_record_t got;
    CHECK(clmr_store_track_get(s, t2.id, &got, NULL) == CLMR_ENOT_FOUND);
    float bad[2] = {1, NAN};
    CHECK(clmr_store_track_ingest(s, &t2, MODEL, bad, 2, NULL, 0, NULL, NULL) == CLMR_EINVAL);

    float *v = NULL;
    int n = 0;
    CHECK(clmr_store_embedding_get(s, t.id, MODEL, &v, &n, NULL) == 0 && n == 8 && v &&
          memcmp(v, emb, sizeof emb) == 0);
    free(v);
    CHECK(clmr_store_scores_get(s, t.id, MODEL, &v, &n, NULL) == 0 && n == 3 && v &&
          memcmp(v, sc, sizeof sc) == 0);
    free(v);
    CHECK(clmr_store_track_get(s, t.id, &got, NULL) == 0 && got.audio_path &&
          strcmp(got.audio_path, rel) == 0);
    clmr_track_record_clear(&got);
    clmr_tag_result_t r = {0};
    snprintf(r.sha256, sizeof r.sha256, "%s", t.id);
    snprintf(r.model_id, sizeof r.model_id, "%s", MODEL);
    r.scores = sc;
    r.n_scores = 3;
    CHECK(clmr_store_cache_put(s, &r, NULL) == 0);
    int64_t cnt = 0;
    CHECK(clmr_store_embedding_count(s, MODEL, &cnt, NULL) == 0 && cnt == 1);

    CHECK(clmr_store_track_delete(s, t.id, NULL) == 0);
    CHECK(clmr_store_embedding_get(s, t.id, MODEL, &v, &n, NULL) == CLMR_ENOT_FOUND);
    CHECK(clmr_store_scores_get(s, t.id, MODEL, &v, &n, NULL) == CLMR_ENOT_FOUND);
    CHECK(raw_count(s, "SELECT count(*) FROM embeddings") == 0);
    CHECK(raw_count(s, "SELECT count(*) FROM tag_scores") == 0);
    CHECK(raw_count(s, "SELECT count(*) FROM tag_cache") == 0);
    CHECK(!t_file_exists(path));
    CHECK(clmr_store_track_delete(s, t.id, NULL) == CLMR_ENOT_FOUND);
    CHECK(clmr_store_track_delete(s, "../../etc/passwd", NULL) == CLMR_ENOT_FOUND);
    /* Embeddings need an existing track. */
    CHECK(clmr_store_embedding_put(s, t.id, MODEL, emb, 8, NULL) == CLMR_ENOT_FOUND);
    clmr_store_close(&s);
    t_rmdir(dir);
}

static int count_cb(void *ud, const char *id, const float *v, int dim)
{
    int *c = ud;
    if (dim == 4 && v[0] == (float)strlen(id)) c[0]++;
    c[1]++;
    return 0;
}

static int track_cb(void *ud, const clmr_track_record_t *t)
{
    (*(int *)ud)++;
    return 0;
}

static void test_foreach(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    add_model(s, MODEL, CLMR_MODEL_ACTIVE);
    add_model(s, "m2", CLMR_MODEL_CANDIDATE);
    for (uint64_t i = 0; i < 10; i++) {
        clmr_track_record_t t = {0};
        t_fake_id(t.id, i, 0);
        t.created_at = 1000 + (int64_t)i;
        float e[4] = {64, 1, 2, (float)i};
        CHECK(clmr_store_track_ingest(s, &t, i < 6 ? MODEL : "m2", e, 4, NULL, 0, NULL, NULL) == 0);
    }
    int c[2] = {0, 0};
    CHECK(clmr_store_embedding_foreach(s, MODEL, count_cb, c, NULL) == 0);
    CHECK(c[0] == 6 && c[1] == 6);
    int nt = 0;
    CHECK(clmr_store_track_foreach(s, 1004, track_cb, &nt, NULL) == 0 && nt == 5);
    clmr_store_close(&s);
    t_rmdir(dir);
}

/* ---- cache ---- */

static void test_cache_keyed_by_sha_and_model(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    add_model(s, "m1", CLMR_MODEL_ACTIVE);
    add_model(s, "m2", CLMR_MODEL_CANDIDATE);
    float sc[4] = {0.9f, 0.1f, 0.3f, 0.4f}, emb[16];
    for (int i = 0; i < 16; i++)
        emb[i] = (float)i - 7.5f;
    clmr_tag_result_t r = {0}, got;
    t_fake_id(r.sha256, 42, 1);
    snprintf(r.model_id, sizeof r.model_id, "m1");
    r.duration_s = 29.9;
    r.chunks = 11;
    r.scores = sc;
    r.n_scores = 4;
    r.embedding = emb;
    r.dim = 16;
    CHECK(clmr_store_cache_put(s, &r, NULL) == 0);
    CHECK(clmr_store_cache_get(s, r.sha256, "m2", &got, NULL) == CLMR_ENOT_FOUND);
    char other[65];
    t_fake_id(other, 43, 1);
    CHECK(clmr_store_cache_get(s, other, "m1", &got, NULL) == CLMR_ENOT_FOUND);
    CHECK(clmr_store_cache_get(s, r.sha256, "m1", &got, NULL) == 0);
    CHECK(got.chunks == 11 && got.n_scores == 4 && got.dim == 16);
    CHECK_NEAR(got.duration_s, 29.9, 0);
    CHECK(got.scores && memcmp(got.scores, sc, sizeof sc) == 0);
    CHECK(got.embedding && memcmp(got.embedding, emb, sizeof emb) == 0);
    CHECK(strcmp(got.precision, "fp32") == 0); /* not given: fp32 */
    clmr_tag_result_clear(&got);
    /* The precision is recorded and replaced with the row; other values are refused. */
    snprintf(r.precision, sizeof r.precision, "bf16");
    CHECK(clmr_store_cache_put(s, &r, NULL) == 0);
    CHECK(clmr_store_cache_get(s, r.sha256, "m1", &got, NULL) == 0 &&
          strcmp(got.precision, "bf16") == 0);
    clmr_tag_result_clear(&got);
    snprintf(r.precision, sizeof r.precision, "fp16");
    CHECK(clmr_store_cache_put(s, &r, NULL) != 0);
    r.precision[0] = 0;
    /* Same sha, other model: a separate entry. Upsert replaces. */
    snprintf(r.model_id, sizeof r.model_id, "m2");
    r.embedding = NULL;
    r.chunks = 5;
    CHECK(clmr_store_cache_put(s, &r, NULL) == 0);
    CHECK(clmr_store_cache_get(s, r.sha256, "m2", &got, NULL) == 0 && got.chunks == 5 &&
          got.embedding == NULL && got.dim == 0);
    clmr_tag_result_clear(&got);
    r.chunks = 6;
    CHECK(clmr_store_cache_put(s, &r, NULL) == 0);
    CHECK(clmr_store_cache_get(s, r.sha256, "m2", &got, NULL) == 0 && got.chunks == 6);
    clmr_tag_result_clear(&got);
    CHECK(raw_count(s, "SELECT count(*) FROM tag_cache") == 2);
    sc[1] = INFINITY;
    CHECK(clmr_store_cache_put(s, &r, NULL) == CLMR_EINVAL);
    sc[1] = 0.1f;
    snprintf(r.model_id, sizeof r.model_id, "unknown-model");
    CHECK(clmr_store_cache_put(s, &r, NULL) == CLMR_ENOT_FOUND);
    clmr_store_close(&s);
    t_rmdir(dir);
}

/* ---- models ---- */

static void test_models(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    clmr_store_model_t m = {0}, got;
    CHECK(clmr_store_model_get_active(s, &got, NULL) == CLMR_ENOT_FOUND);
    snprintf(m.id, sizeof m.id, "base");
    m.name = (char *)"base";
    m.path = (char *)"/m/base.safetensors";
    m.status = CLMR_MODEL_ACTIVE;
    int created = -1;
    CHECK(clmr_store_model_ensure(s, &m, &created, NULL) == 0 && created == 1);
    CHECK(clmr_store_model_ensure(s, &m, &created, NULL) == 0 && created == 0);
    CHECK(clmr_store_model_put(s, &m, NULL) == CLMR_EBUSY);
    clmr_store_model_t ft = {0};
    snprintf(ft.id, sizeof ft.id, "ft-1");
    ft.path = (char *)"models/ft-1.safetensors";
    ft.parent_id = (char *)"base";
    ft.metadata_json = (char *)"{\"steps\": 100, \"agreement\": 0.93}";
    CHECK(clmr_store_model_put(s, &ft, NULL) == 0);
    ft.parent_id = (char *)"missing";
    snprintf(ft.id, sizeof ft.id, "ft-2");
    CHECK(clmr_store_model_put(s, &ft, NULL) == CLMR_EINVAL);
    ft.parent_id = NULL;
    ft.metadata_json = (char *)"{not json";
    CHECK(clmr_store_model_put(s, &ft, NULL) == CLMR_EINVAL);

    CHECK(clmr_store_model_get(s, "ft-1", &got, NULL) == 0);
    CHECK(got.status == CLMR_MODEL_CANDIDATE && got.parent_id && !strcmp(got.parent_id, "base"));
    CHECK(got.metadata_json && strstr(got.metadata_json, "0.93"));
    CHECK(got.name && strcmp(got.name, "ft-1") == 0); /* name defaults to the id */
    clmr_store_model_clear(&got);

    CHECK(clmr_store_model_activate(s, "ft-1", NULL) == 0);
    CHECK(clmr_store_model_get_active(s, &got, NULL) == 0 && strcmp(got.id, "ft-1") == 0);
    clmr_store_model_clear(&got);
    CHECK(clmr_store_model_get(s, "base", &got, NULL) == 0 && got.status == CLMR_MODEL_RETIRED);
    clmr_store_model_clear(&got);
    CHECK(raw_count(s, "SELECT count(*) FROM models WHERE status = 'active'") == 1);
    /* Rollback = activate the parent again. */
    CHECK(clmr_store_model_activate(s, "base", NULL) == 0);
    CHECK(clmr_store_model_activate(s, "nope", NULL) == CLMR_ENOT_FOUND);
    CHECK(clmr_store_model_get_active(s, &got, NULL) == 0 && strcmp(got.id, "base") == 0);
    clmr_store_model_clear(&got);
    CHECK(clmr_store_model_update(s, "ft-1", CLMR_MODEL_CANDIDATE, "{\"gate\":\"failed\"}", NULL) ==
          0);
    CHECK(clmr_store_model_update(s, "ft-1", CLMR_MODEL_CANDIDATE, "[", NULL) == CLMR_EINVAL);
    CHECK(clmr_store_model_update(s, "ft-1", CLMR_MODEL_ACTIVE, NULL, NULL) == CLMR_EINVAL);
    CHECK(clmr_store_model_update(s, "zz", CLMR_MODEL_RETIRED, NULL, NULL) == CLMR_ENOT_FOUND);
    clmr_store_model_t *items = NULL;
    size_t n = 0;
    CHECK(clmr_store_model_list(s, &items, &n, NULL) == 0 && n == 2);
    CHECK(n == 2 && strcmp(items[0].id, "base") == 0 && items[1].metadata_json &&
          strstr(items[1].metadata_json, "gate"));
    clmr_store_model_list_free(items, n);
    /* Delete: never the active one; cascades to the model's vectors and cached results. */
    CHECK(clmr_store_model_delete(s, "base", NULL) == CLMR_EBUSY);
    clmr_track_record_t tr = {0};
    t_fake_id(tr.id, 77, 0);
    float e2[2] = {1, 2};
    CHECK(clmr_store_track_ingest(s, &tr, "ft-1", e2, 2, e2, 2, NULL, NULL) == 0);
    CHECK(clmr_store_track_ingest(s, &tr, "base", e2, 2, NULL, 0, NULL, NULL) == 0);
    CHECK(clmr_store_model_delete(s, "ft-1", NULL) == 0);
    CHECK(clmr_store_model_delete(s, "ft-1", NULL) == CLMR_ENOT_FOUND);
    CHECK(raw_count(s, "SELECT count(*) FROM embeddings") == 1);
    CHECK(raw_count(s, "SELECT count(*) FROM tag_scores") == 0);
    clmr_track_record_t tg;
    CHECK(clmr_store_track_get(s, tr.id, &tg, NULL) == 0); /* the track itself stays */
    clmr_track_record_clear(&tg);
    CHECK(clmr_model_status_parse("retired") == CLMR_MODEL_RETIRED);
    CHECK(clmr_model_status_parse("x") == -1);
    clmr_store_close(&s);
    t_rmdir(dir);
}

/* ---- jobs ---- */

static void test_jobs(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    add_model(s, "base", CLMR_MODEL_ACTIVE);
    int64_t id = 0, id2 = 0;
    CHECK(clmr_store_job_create(s, "base", "{\"steps\":10}", 10, &id, NULL) == 0 && id > 0);
    CHECK(clmr_store_job_create(s, "base", NULL, 10, &id2, NULL) == CLMR_EBUSY);
    clmr_store_job_t j;
    CHECK(clmr_store_job_get_active(s, &j, NULL) == 0 && j.id == id && j.state == CLMR_JOB_QUEUED);
    CHECK(j.steps == 10 && j.started_at == 0 && j.losses_json && strcmp(j.losses_json, "[]") == 0);
    clmr_store_job_clear(&j);
    CHECK(clmr_store_job_set_state(s, id, CLMR_JOB_RUNNING, NULL, NULL, NULL) == 0);
    CHECK(clmr_store_job_progress(s, id, 4, "[{\"step\":4,\"loss\":3.1}]", NULL) == 0);
    CHECK(clmr_store_job_progress(s, id, 5, "{bad", NULL) == CLMR_EINVAL);
    CHECK(clmr_store_job_get(s, id, &j, NULL) == 0 && j.state == CLMR_JOB_RUNNING && j.step == 4);
    CHECK(j.started_at > 0 && j.losses_json && strstr(j.losses_json, "3.1"));
    clmr_store_job_clear(&j);
    add_model(s, "ft-1", CLMR_MODEL_CANDIDATE);
    CHECK(clmr_store_job_set_state(s, id, CLMR_JOB_EVALUATING, NULL, "ft-1", NULL) == 0);
    CHECK(clmr_store_job_set_state(s, id, CLMR_JOB_SUCCEEDED, NULL, NULL, NULL) == 0);
    CHECK(clmr_store_job_get(s, id, &j, NULL) == 0 && j.state == CLMR_JOB_SUCCEEDED);
    CHECK(j.finished_at >= j.started_at && j.result_model_id && !strcmp(j.result_model_id, "ft-1"));
    clmr_store_job_clear(&j);
    /* Finished jobs are immutable; unknown ids are not found. */
    CHECK(clmr_store_job_set_state(s, id, CLMR_JOB_RUNNING, NULL, NULL, NULL) == CLMR_EINVAL);
    CHECK(clmr_store_job_progress(s, id, 9, NULL, NULL) == CLMR_EINVAL);
    CHECK(clmr_store_job_set_state(s, 999, CLMR_JOB_RUNNING, NULL, NULL, NULL) == CLMR_ENOT_FOUND);
    CHECK(clmr_store_job_get(s, 999, &j, NULL) == CLMR_ENOT_FOUND);
    /* A second job, "crashed" while running: start-up recovery marks it failed. */
    CHECK(clmr_store_job_create(s, "base", NULL, 5, &id2, NULL) == 0 && id2 > id);
    CHECK(clmr_store_job_set_state(s, id2, CLMR_JOB_RUNNING, NULL, NULL, NULL) == 0);
    clmr_store_close(&s);
    s = open_store(dir, 0);
    int n = -1;
    CHECK(clmr_store_job_fail_unfinished(s, "interrupted by a restart", &n, NULL) == 0 && n == 1);
    CHECK(clmr_store_job_get(s, id2, &j, NULL) == 0 && j.state == CLMR_JOB_FAILED && j.error &&
          strstr(j.error, "restart"));
    clmr_store_job_clear(&j);
    CHECK(clmr_store_job_get_active(s, &j, NULL) == CLMR_ENOT_FOUND);
    clmr_store_job_t *items;
    size_t ni;
    CHECK(clmr_store_job_list(s, 10, &items, &ni, NULL) == 0 && ni == 2 && items[0].id == id2);
    clmr_store_job_list_free(items, ni);
    CHECK(clmr_store_job_delete(s, id, NULL) == 0);
    CHECK(clmr_store_job_delete(s, id, NULL) == CLMR_ENOT_FOUND);
    int64_t id3 = 0;
    CHECK(clmr_store_job_create(s, "base", NULL, 5, &id3, NULL) == 0);
    CHECK(clmr_store_job_delete(s, id3, NULL) == CLMR_EBUSY);
    CHECK(clmr_store_job_set_state(s, id3, CLMR_JOB_CANCELLED, NULL, NULL, NULL) == 0);
    CHECK(clmr_store_job_delete(s, id3, NULL) == 0);
    CHECK(clmr_job_state_parse("cancelled") == CLMR_JOB_CANCELLED);
    CHECK(strcmp(clmr_job_state_name(CLMR_JOB_EVALUATING), "evaluating") == 0);
    clmr_store_close(&s);
    t_rmdir(dir);
}

/* ---- transactions, disk full ---- */

static void test_bulk_transactions(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    CHECK(clmr_store_write_begin(s, NULL) == 0);
    for (uint64_t i = 0; i < 50; i++)
        CHECK(put_track(s, i, "bulk") == 1);
    CHECK(clmr_store_write_end(s, 0, NULL) == 0); /* roll back */
    int64_t n = -1;
    CHECK(clmr_store_track_count(s, &n, NULL) == 0 && n == 0);
    CHECK(clmr_store_write_begin(s, NULL) == 0);
    for (uint64_t i = 0; i < 50; i++)
        CHECK(put_track(s, i, "bulk") == 1);
    /* A failing call inside the transaction rolls back only itself (savepoint). */
    float e[2] = {1, 2};
    CHECK(clmr_store_embedding_put(
              s, "0000000000000000000000000000000000000000000000000000000000000000", "none", e, 2,
              NULL) == CLMR_ENOT_FOUND);
    CHECK(clmr_store_write_end(s, 1, NULL) == 0);
    CHECK(clmr_store_track_count(s, &n, NULL) == 0 && n == 50);
    CHECK(clmr_store_write_end(s, 1, NULL) == CLMR_EINVAL); /* not held */
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void test_disk_full_maps_and_recovers(void)
{
    char *dir = t_mkdtemp("store");
    /* Create the schema, then re-open with a page cap a little above the current size. */
    clmr_store_t *s = open_store(dir, 0);
    int64_t pages = raw_count(s, "PRAGMA page_count");
    add_model(s, MODEL, CLMR_MODEL_ACTIVE);
    clmr_store_close(&s);
    s = open_store(dir, pages + 40);
    static float emb[2048];
    for (int i = 0; i < 2048; i++)
        emb[i] = (float)i;
    int rc = 0, stored = 0;
    char *err = NULL;
    for (uint64_t i = 0; i < 200 && rc == 0; i++) {
        clmr_track_record_t t = {0};
        t_fake_id(t.id, i, 5);
        rc = clmr_store_track_ingest(s, &t, MODEL, emb, 2048, NULL, 0, NULL, &err);
        if (!rc) stored++;
    }
    CHECKF(rc == CLMR_EDB_FULL, "rc %d (%s) after %d tracks", rc, err ? err : "", stored);
    CHECK(stored > 2);
    free(err);
    /* The failed ingest left nothing behind, reads still work, the database is intact. */
    int64_t n = -1;
    CHECK(clmr_store_track_count(s, &n, NULL) == 0 && n == stored);
    CHECK(raw_count(s, "SELECT count(*) FROM embeddings") == stored);
    CHECK(clmr_store_check(s, NULL) == 0);
    /* Recovery without restart: free space by deleting, then writes succeed again. */
    for (uint64_t i = 0; i < 3; i++) {
        char id[65];
        t_fake_id(id, i, 5);
        CHECK(clmr_store_track_delete(s, id, NULL) == 0);
    }
    clmr_track_record_t t = {0};
    t_fake_id(t.id, 999, 5);
    CHECK(clmr_store_track_ingest(s, &t, MODEL, emb, 2048, NULL, 0, NULL, NULL) == 0);
    clmr_store_close(&s);
    t_rmdir(dir);
}

/* ---- concurrency ---- */

typedef struct {
    clmr_store_t *s;
    int thread;
    int errors;
    atomic_int *stop;
    int reads;
    const char *db_path;
} worker_t;

static void *writer_main(void *arg)
{
    worker_t *w = arg;
    float emb[512];
    for (int i = 0; i < 512; i++)
        emb[i] = (float)(i + w->thread);
    for (int i = 0; i < 40; i++) {
        clmr_track_record_t t = {0};
        t_fake_id(t.id, (uint64_t)(w->thread * 1000 + i), 9);
        t.title = (char *)"concurrent";
        char *err = NULL;
        int rc = clmr_store_track_ingest(w->s, &t, MODEL, emb, 512, emb, 50, NULL, &err);
        if (rc) {
            printf("# writer %d: %d %s\n", w->thread, rc, err ? err : "");
            w->errors++;
        }
        free(err);
        if (i % 10 == 0 && clmr_store_cache_put(
                               w->s,
                               &(clmr_tag_result_t){
                                   .sha256 = {0}, .model_id = MODEL, .scores = emb, .n_scores = 50},
                               NULL) != CLMR_EINVAL)
            w->errors++; /* empty sha: must be refused, not reach SQLite */
    }
    return NULL;
}

static void *reader_main(void *arg)
{
    worker_t *w = arg;
    while (!*w->stop) {
        int64_t n;
        clmr_track_record_t *items = NULL;
        size_t ni = 0;
        char *next = NULL;
        if (clmr_store_track_count(w->s, &n, NULL)) w->errors++;
        if (clmr_store_track_list(w->s, NULL, 50, &items, &ni, &next, NULL)) w->errors++;
        clmr_track_list_free(items, ni);
        free(next);
        int c[2] = {0, 0};
        if (clmr_store_embedding_foreach(w->s, MODEL, count_cb, c, NULL)) w->errors++;
        w->reads++;
    }
    return NULL;
}

/* An independent connection (another process, e.g. `sqlite3` or a backup) reading in long
 * transactions; it must not make the store's writers fail. */
static void *foreign_reader_main(void *arg)
{
    worker_t *w = arg;
    sqlite3 *db;
    if (sqlite3_open_v2(w->db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        w->errors++;
        return NULL;
    }
    sqlite3_busy_timeout(db, 5000);
    while (!*w->stop) {
        sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
        sqlite3_stmt *st;
        if (sqlite3_prepare_v2(db, "SELECT count(*), sum(length(vec)) FROM embeddings", -1, &st,
                               NULL) == SQLITE_OK) {
            if (sqlite3_step(st) != SQLITE_ROW) w->errors++;
            sqlite3_finalize(st);
        } else {
            w->errors++;
        }
        usleep(2000);
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        w->reads++;
    }
    sqlite3_close(db);
    return NULL;
}

static void test_concurrent_writers_and_readers(void)
{
    char *dir = t_mkdtemp("store");
    clmr_store_t *s = open_store(dir, 0);
    add_model(s, MODEL, CLMR_MODEL_ACTIVE);
    char db[4096];
    snprintf(db, sizeof db, "%s/clmrd.sqlite", dir);
    enum { W = 8 };
    atomic_int stop = 0;
    worker_t ws[W + 2];
    pthread_t th[W + 2];
    for (int i = 0; i < W + 2; i++) {
        ws[i] = (worker_t){.s = s, .thread = i, .stop = &stop, .db_path = db};
    }
    pthread_create(&th[W], NULL, reader_main, &ws[W]);
    pthread_create(&th[W + 1], NULL, foreign_reader_main, &ws[W + 1]);
    for (int i = 0; i < W; i++)
        pthread_create(&th[i], NULL, writer_main, &ws[i]);
    int errors = 0;
    for (int i = 0; i < W; i++) {
        pthread_join(th[i], NULL);
        errors += ws[i].errors;
    }
    stop = 1;
    pthread_join(th[W], NULL);
    pthread_join(th[W + 1], NULL);
    CHECKF(errors == 0, "%d writer errors", errors);
    CHECKF(ws[W].errors == 0 && ws[W + 1].errors == 0, "reader errors %d / %d", ws[W].errors,
           ws[W + 1].errors);
    CHECK(ws[W].reads > 0 && ws[W + 1].reads > 0);
    int64_t n = 0;
    CHECK(clmr_store_track_count(s, &n, NULL) == 0 && n == W * 40);
    CHECK(clmr_store_embedding_count(s, MODEL, &n, NULL) == 0 && n == W * 40);
    CHECK(clmr_store_checkpoint(s, NULL) == 0);
    CHECK(clmr_store_check(s, NULL) == 0);
    clmr_store_close(&s);
    t_rmdir(dir);
}

/* ---- crash safety ---- */

/* Child: ingest tracks (pool file first, then the row) forever, acknowledging each committed one
 * on the pipe - the equivalent of the daemon answering 2xx. */
static void crash_child(const char *dir, int ack_fd)
{
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    clmr_store_t *s = NULL;
    if (clmr_store_open(&s, &p, NULL)) _exit(3);
    float x[4410], emb[512];
    for (int i = 0; i < 4410; i++)
        x[i] = 0.3f * sinf((float)i * 0.01f);
    for (uint32_t i = 0; i < 100000; i++) {
        clmr_track_record_t t = {0};
        char rel[100], path[4200];
        t_fake_id(t.id, i, 77);
        clmr_pool_path(clmr_store_pool_dir(s), t.id, path, sizeof path, rel, sizeof rel);
        t.audio_path = rel;
        for (int j = 0; j < 512; j++)
            emb[j] = (float)(j + i);
        if (clmr_pool_write(clmr_store_pool_dir(s), t.id, x, 4410, NULL)) _exit(4);
        if (clmr_store_track_ingest(s, &t, MODEL, emb, 512, emb, 50, NULL, NULL)) _exit(5);
        if (write(ack_fd, &i, sizeof i) != sizeof i) _exit(6);
    }
    _exit(0);
}

static int count_tmp_files(const char *pool)
{
    int n = 0;
    DIR *top = opendir(pool);
    struct dirent *e;
    while (top && (e = readdir(top))) {
        if (e->d_name[0] == '.') continue;
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/%s", pool, e->d_name);
        DIR *d = opendir(sub);
        struct dirent *f;
        while (d && (f = readdir(d)))
            if (strstr(f->d_name, ".tmp.")) n++;
        if (d) closedir(d);
    }
    if (top) closedir(top);
    return n;
}

static void test_kill9_during_ingest(void)
{
    char *dir = t_mkdtemp("crash");
    clmr_store_t *s = open_store(dir, 0);
    add_model(s, MODEL, CLMR_MODEL_ACTIVE);
    clmr_store_close(&s); /* never fork with an open connection */
    uint64_t seed = (uint64_t)getpid() * 2654435761u + 1;
    uint32_t acked_total = 0;
    for (int round = 0; round < 3; round++) {
        int fds[2];
        CHECK(pipe(fds) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            crash_child(dir, fds[1]);
        }
        close(fds[1]);
        /* Kill at a random moment after 5..40 acknowledgements, plus 0..3 ms. */
        int target = 5 + (int)((t_rand(&seed) + 1.0f) * 17.5f);
        uint32_t *acked = malloc(sizeof *acked * 200000), nack = 0, v;
        while (nack < (uint32_t)target && read(fds[0], &v, sizeof v) == sizeof v)
            acked[nack++] = v;
        usleep((useconds_t)((t_rand(&seed) + 1.0f) * 1500.0f));
        kill(pid, SIGKILL);
        int status = 0;
        waitpid(pid, &status, 0);
        CHECKF(WIFSIGNALED(status), "child exited with %d instead of being killed",
               WEXITSTATUS(status));
        while (read(fds[0], &v, sizeof v) == sizeof v) /* acks sent before the kill */
            acked[nack++] = v;
        close(fds[0]);
        acked_total += nack;

        s = open_store(dir, 0); /* quick_check runs here */
        if (!s) {
            free(acked);
            break;
        }
        CHECK(clmr_store_check(s, NULL) == 0);
        int removed = -1;
        CHECK(clmr_store_pool_sweep(s, &removed, NULL) == 0 && removed >= 0);
        CHECK(count_tmp_files(clmr_store_pool_dir(s)) == 0);
        int missing = 0;
        for (uint32_t i = 0; i < nack; i++) {
            char id[65];
            t_fake_id(id, acked[i], 77);
            float *e = NULL;
            int dim = 0;
            if (clmr_store_embedding_get(s, id, MODEL, &e, &dim, NULL) || dim != 512 ||
                e[1] != (float)(1 + acked[i]) || !clmr_pool_exists(clmr_store_pool_dir(s), id))
                missing++;
            free(e);
        }
        CHECKF(missing == 0, "round %d: %d of %u acknowledged tracks missing", round, missing,
               nack);
        /* Every committed row has its audio: the pool file is written first. */
        CHECK(raw_count(s, "SELECT count(*) FROM tracks WHERE audio_path IS NULL") == 0);
        int64_t n = 0;
        clmr_store_track_count(s, &n, NULL);
        int orphan_rows = 0;
        clmr_track_record_t *items = NULL;
        size_t ni = 0;
        char *next = NULL, *cur = NULL;
        do {
            if (clmr_store_track_list(s, cur, 1000, &items, &ni, &next, NULL)) break;
            for (size_t i = 0; i < ni; i++)
                if (!clmr_pool_exists(clmr_store_pool_dir(s), items[i].id)) orphan_rows++;
            clmr_track_list_free(items, ni);
            free(cur);
            cur = next;
        } while (cur);
        CHECK(orphan_rows == 0);
        CHECK(n >= (int64_t)nack);
        /* The next round continues where this one stopped: reset by deleting everything. */
        clmr_store_close(&s);
        free(acked);
        char db[4200];
        snprintf(db, sizeof db, "%s/clmrd.sqlite", dir);
        sqlite3 *raw;
        if (sqlite3_open(db, &raw) == SQLITE_OK) {
            sqlite3_exec(raw, "PRAGMA foreign_keys=ON; DELETE FROM tracks", NULL, NULL, NULL);
            sqlite3_close(raw);
        }
    }
    CHECK(acked_total >= 15);
    t_rmdir(dir);
}

int main(void)
{
    RUN_TEST(test_migrations_fresh);
    RUN_TEST(test_migrations_all_files_embedded);
    RUN_TEST(test_migrations_upgrade_v1_fixture);
    RUN_TEST(test_migrations_refuse_newer_or_foreign);
    RUN_TEST(test_open_corrupt_file_fails_cleanly);
    RUN_TEST(test_track_crud);
    RUN_TEST(test_pagination_stable_under_changes);
    RUN_TEST(test_ingest_and_delete_cascade);
    RUN_TEST(test_foreach);
    RUN_TEST(test_cache_keyed_by_sha_and_model);
    RUN_TEST(test_models);
    RUN_TEST(test_jobs);
    RUN_TEST(test_bulk_transactions);
    RUN_TEST(test_disk_full_maps_and_recovers);
    RUN_TEST(test_concurrent_writers_and_readers);
    RUN_TEST(test_kill9_during_ingest);
    return TEST_END();
}
