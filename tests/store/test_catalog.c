/* test_catalog.c - src/store/catalog.c on real SQLite files: upgrading a database made by the
 * old schema, duplicate links through fingerprints (ingest, promotion on delete, PATCH), metadata
 * corrections, and filtered / sorted / searched queries with counts and both cursor kinds.
 */
#include "harness.h"
#include "test_util.h"

#include "audio/fingerprint.h"
#include "clmr/error.h"
#include "clmrd_build_config.h"
#include "store/catalog.h"
#include "store/store.h"

#include <math.h>
#include <string.h>

#define MODEL "m1"

static clmr_store_t *open_store(const char *dir)
{
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    clmr_store_t *s = NULL;
    char *err = NULL;
    int rc = clmr_store_open(&s, &p, &err);
    CHECKF(rc == 0, "open %s: %d %s", dir, rc, err ? err : "");
    free(err);
    return s;
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

static size_t query_ids(clmr_store_t *s, const clmr_track_query_t *q, char ids[][65], size_t cap,
                        int64_t *total)
{
    clmr_track_row_t *rows = NULL;
    size_t n = 0;
    char *next = NULL, *msg = NULL;
    int rc = clmr_store_track_query(s, q, &rows, &n, total, &next, &msg);
    CHECKF(rc == 0, "query: %d %s", rc, msg ? msg : "");
    for (size_t i = 0; i < n && i < cap; i++)
        memcpy(ids[i], rows[i].t.id, 65);
    clmr_track_rows_free(rows, n);
    free(next);
    free(msg);
    return n;
}

/* A database written by the schema of migration 0001 (committed fixture) upgrades: old rows get
 * NULL metadata/descriptors, are found by text search and listed with a total. */
static void test_upgrade_old_database(void)
{
    char *dir = t_mkdtemp("catalog");
    char db[4096];
    snprintf(db, sizeof db, "%s/clmrd.sqlite", dir);
    CHECK(copy_file(CLMRD_SOURCE_ROOT "/tests/fixtures/db/schema_v1.sqlite", db) == 0);
    clmr_store_t *s = open_store(dir);
    int v = 0;
    CHECK(clmr_store_schema_version(s, &v, NULL) == 0 && v == clmr_store_migration_count() &&
          v >= 4);
    clmr_track_extra_t x;
    const char *first = "1111111111111111111111111111111111111111111111111111111111111111";
    CHECK(clmr_store_track_extra_get(s, first, &x, NULL) == 0);
    CHECK(!x.album && x.year == 0 && isnan(x.bpm) && isnan(x.loudness_lufs) && !x.duplicate_of[0]);
    clmr_track_extra_clear(&x);
    clmr_track_query_t q = clmr_track_query_default();
    q.model_id = "base-v1";
    char ids[8][65];
    int64_t total = -1;
    CHECK(query_ids(s, &q, ids, 8, &total) == 3 && total == 3);
    q.text = "fir";
    CHECK(query_ids(s, &q, ids, 8, &total) == 1 && total == 1 && !strcmp(ids[0], first));
    q.text = NULL;
    q.artist = "BOB";
    CHECK(query_ids(s, &q, ids, 8, &total) == 1 && ids[0][0] == '3');
    q.artist = NULL;
    /* tag 0 of base-v1: only track 1 has scores (0.5, 0.25) */
    q.tag = 0;
    q.tag_min = 0.4;
    CHECK(query_ids(s, &q, ids, 8, &total) == 1 && !strcmp(ids[0], first));
    q.tag = 1;
    CHECK(query_ids(s, &q, ids, 8, &total) == 0 && total == 0);
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void fp_make(uint32_t *fp, int n, uint64_t seed)
{
    for (int i = 0; i < n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        fp[i] = (uint32_t)seed;
    }
}

static int ingest(clmr_store_t *s, uint64_t k, const char *title, const char *artist, double dur,
                  double bpm, double lufs, const uint32_t *fp, float score0, char dup[65])
{
    char id[65];
    t_fake_id(id, k, 77);
    clmr_track_record_t t = {.title = (char *)title, .artist = (char *)artist, .duration_s = dur};
    memcpy(t.id, id, 65);
    clmr_track_extra_t x;
    clmr_track_extra_init(&x);
    x.album = "Album";
    x.year = 2000 + (int)k;
    x.bpm = bpm;
    x.loudness_lufs = lufs;
    float emb[4] = {1, 0, 0, (float)k}, scores[2] = {score0, 1 - score0};
    clmr_catalog_ingest_t in = {.track = &t,
                                .extra = &x,
                                .model_id = MODEL,
                                .emb = emb,
                                .dim = 4,
                                .scores = scores,
                                .n_scores = 2,
                                .fp = fp,
                                .fp_n = fp ? 200 : 0,
                                .similarity = clmr_fingerprint_similarity,
                                .match_threshold = CLMR_FINGERPRINT_MATCH,
                                .duration_tolerance_s = 1.5};
    int created = 0;
    double sim = 0;
    char *msg = NULL;
    int rc = clmr_store_catalog_ingest(s, &in, &created, dup, &sim, &msg);
    CHECKF(rc == 0 && created, "ingest %llu: %d %s", (unsigned long long)k, rc, msg ? msg : "");
    CHECK(dup[0] ? sim >= CLMR_FINGERPRINT_MATCH : sim == 0);
    free(msg);
    return rc;
}

static void id_of(char out[65], uint64_t k)
{
    t_fake_id(out, k, 77);
}

static void test_duplicates(void)
{
    char *dir = t_mkdtemp("catalog");
    clmr_store_t *s = open_store(dir);
    clmr_store_model_t m = {.id = MODEL, .name = "m", .path = "/m"};
    CHECK(clmr_store_model_put(s, &m, NULL) == 0);
    uint32_t a[200], b[200], c[200], d[200];
    fp_make(a, 200, 1);
    fp_make(c, 200, 2);
    memcpy(b, a, sizeof a);
    memcpy(d, a + 2, sizeof a - 8); /* shifted by two items */
    fp_make(d + 198, 2, 3);
    for (int i = 0; i < 200; i += 3)
        b[i] ^= 0x00010001u; /* a few flipped bits: another encoding */
    char dup[65], A[65], B[65];
    id_of(A, 1);
    id_of(B, 2);
    ingest(s, 1, "Blue Song", "Ann", 180.0, 120, -14, a, 0.9f, dup);
    CHECK(dup[0] == 0);
    ingest(s, 2, "Blue Song (flac)", "Ann", 180.4, 120, -14, b, 0.8f, dup);
    CHECK(!strcmp(dup, A));
    ingest(s, 3, "Other", "Bob", 180.2, 90, -20, c, 0.1f, dup);
    CHECK(dup[0] == 0); /* different audio, same length */
    ingest(s, 4, "Blue Song (mp3)", "Ann", 179.9, 120, -14.2, d, 0.7f, dup);
    CHECK(!strcmp(dup, A)); /* root, even when the best match were B */
    ingest(s, 5, "Blue Song edit", "Ann", 150.0, 120, -14, a, 0.6f, dup);
    CHECK(dup[0] == 0); /* same fingerprint but 30 s shorter: another edit */
    ingest(s, 6, "No fingerprint", "Cy", 10.0, NAN, NAN, NULL, 0.5f, dup);
    CHECK(dup[0] == 0);
    uint32_t *fp = NULL;
    int n = 0;
    CHECK(clmr_store_fingerprint_get(s, A, &fp, &n, NULL) == 0 && n == 200 && fp[7] == a[7]);
    free(fp);

    /* listing without duplicates */
    clmr_track_query_t q = clmr_track_query_default();
    q.model_id = MODEL;
    q.duplicates = 0;
    char ids[8][65];
    int64_t total;
    CHECK(query_ids(s, &q, ids, 8, &total) == 4 && total == 4);
    q.duplicates = 1;
    CHECK(query_ids(s, &q, ids, 8, &total) == 2 && total == 2);

    /* PATCH: bad links, unlink, re-link */
    clmr_track_patch_t p = {.set = CLMR_PATCH_DUPLICATE_OF, .duplicate_of = B};
    char *msg = NULL;
    CHECK(clmr_store_track_patch(s, A, &p, &msg) == CLMR_EINVAL && msg &&
          strstr(msg, "duplicate_of"));
    free(msg);
    char nope[65];
    id_of(nope, 99);
    p.duplicate_of = nope;
    CHECK(clmr_store_track_patch(s, A, &p, NULL) == CLMR_EINVAL);
    CHECK(clmr_store_track_patch(s, nope, &p, NULL) == CLMR_ENOT_FOUND);
    p.duplicate_of = NULL;
    clmr_track_extra_t x;
    CHECK(clmr_store_track_patch(s, B, &p, NULL) == 0);
    CHECK(clmr_store_track_extra_get(s, B, &x, NULL) == 0 && x.duplicate_of[0] == 0);
    clmr_track_extra_clear(&x);
    /* linking root A to B moves A's duplicates (track 4) to B */
    p.duplicate_of = A;
    CHECK(clmr_store_track_patch(s, B, &p, NULL) == 0);
    char T4[65];
    id_of(T4, 4);
    /* deleting root A promotes its oldest duplicate (B), the others follow */
    CHECK(clmr_store_track_delete(s, A, NULL) == 0);
    CHECK(clmr_store_track_extra_get(s, B, &x, NULL) == 0 && x.duplicate_of[0] == 0);
    clmr_track_extra_clear(&x);
    CHECK(clmr_store_track_extra_get(s, T4, &x, NULL) == 0 && !strcmp(x.duplicate_of, B));
    clmr_track_extra_clear(&x);
    CHECK(clmr_store_fingerprint_get(s, A, &fp, &n, NULL) == CLMR_ENOT_FOUND);

    /* metadata corrections reach the text index */
    clmr_track_patch_t mp = {.set = CLMR_PATCH_TITLE | CLMR_PATCH_YEAR | CLMR_PATCH_GENRE,
                             .title = "Crimson Tide",
                             .year = 1987};
    CHECK(clmr_store_track_patch(s, B, &mp, NULL) == 0);
    q = clmr_track_query_default();
    q.model_id = MODEL;
    q.text = "crims";
    CHECK(query_ids(s, &q, ids, 8, &total) == 1 && !strcmp(ids[0], B));
    q.text = "blue";
    CHECK(query_ids(s, &q, ids, 8, &total) == 2); /* tracks 4 and 5 */
    CHECK(clmr_store_track_extra_get(s, B, &x, NULL) == 0 && x.year == 1987 && !x.genre &&
          x.album && !strcmp(x.album, "Album"));
    clmr_track_extra_clear(&x);
    clmr_track_record_t t;
    CHECK(clmr_store_track_get(s, B, &t, NULL) == 0 && !strcmp(t.title, "Crimson Tide"));
    clmr_track_record_clear(&t);
    q.text = "\"*()";
    clmr_track_row_t *rows = NULL;
    size_t nr = 0;
    char *next = NULL;
    CHECK(clmr_store_track_query(s, &q, &rows, &nr, NULL, &next, NULL) == CLMR_EINVAL);
    q.text = "\"unbalanced AND OR NEAR(";
    CHECK(clmr_store_track_query(s, &q, &rows, &nr, NULL, &next, NULL) == 0);
    clmr_track_rows_free(rows, nr);
    free(next);
    clmr_store_close(&s);
    t_rmdir(dir);
}

static void test_query_filters_sort_pages(void)
{
    char *dir = t_mkdtemp("catalog");
    clmr_store_t *s = open_store(dir);
    clmr_store_model_t m = {.id = MODEL, .name = "m", .path = "/m"};
    CHECK(clmr_store_model_put(s, &m, NULL) == 0);
    char dup[65];
    for (int k = 1; k <= 10; k++) /* bpm 70..160, lufs -25..-16, score0 0.1..1.0 */
        ingest(s, (uint64_t)k, "Song", k % 2 ? "Odd" : "Even", 10.0 * k, 60 + 10 * k, -26 + k, NULL,
               0.1f * (float)k, dup);
    ingest(s, 11, "Silent", "Odd", 5, NAN, NAN, NULL, 0.0f, dup);
    clmr_track_query_t q = clmr_track_query_default();
    q.model_id = MODEL;
    char ids[16][65], want[65];
    int64_t total;
    q.bpm_min = 100;
    q.bpm_max = 130.5;
    CHECK(query_ids(s, &q, ids, 16, &total) == 4 && total == 4); /* 100, 110, 120, 130 */
    q.bpm_min = q.bpm_max = NAN;
    q.lufs_min = -18;
    CHECK(query_ids(s, &q, ids, 16, &total) == 3);
    q.lufs_min = NAN;
    q.duration_min = 25;
    q.duration_max = 45;
    CHECK(query_ids(s, &q, ids, 16, &total) == 2);
    q.duration_min = q.duration_max = NAN;
    q.tag = 0;
    q.tag_min = 0.75;
    q.sort = CLMR_SORT_TAG_SCORE;
    q.descending = 1;
    CHECK(query_ids(s, &q, ids, 16, &total) == 3);
    id_of(want, 10);
    CHECK(!strcmp(ids[0], want));
    q.tag = -1;
    q.sort = CLMR_SORT_BPM;
    q.descending = 0;
    /* sorted by bpm, pages of 4 through the offset cursor; the unknown bpm comes last */
    q.limit = 4;
    char seen[16][65];
    size_t got = 0;
    char *cursor = NULL;
    for (int page = 0; page < 5; page++) {
        clmr_track_row_t *rows = NULL;
        size_t n = 0;
        char *next = NULL;
        q.cursor = cursor;
        CHECK(clmr_store_track_query(s, &q, &rows, &n, &total, &next, NULL) == 0);
        CHECK(total == 11);
        for (size_t i = 0; i < n && got < 16; i++)
            memcpy(seen[got++], rows[i].t.id, 65);
        if (n) CHECK(rows[0].n_scores == 2 && !rows[0].emb);
        clmr_track_rows_free(rows, n);
        free(cursor);
        cursor = next;
        if (!next) break;
    }
    CHECK(got == 11 && !cursor);
    id_of(want, 1);
    CHECK(!strcmp(seen[0], want));
    id_of(want, 11);
    CHECK(!strcmp(seen[10], want));
    free(cursor);
    /* keyset pages in insertion order, descending, with embeddings */
    q = clmr_track_query_default();
    q.model_id = MODEL;
    q.descending = 1;
    q.limit = 5;
    q.with_embedding = 1;
    clmr_track_row_t *rows = NULL;
    size_t n = 0;
    char *next = NULL;
    CHECK(clmr_store_track_query(s, &q, &rows, &n, NULL, &next, NULL) == 0 && n == 5 && next &&
          next[0] == 'c');
    id_of(want, 11);
    CHECK(!strcmp(rows[0].t.id, want) && rows[0].dim == 4 && rows[0].emb[3] == 11.0f);
    clmr_track_rows_free(rows, n);
    q.cursor = next;
    CHECK(clmr_store_track_query(s, &q, &rows, &n, NULL, &cursor, NULL) == 0 && n == 5);
    id_of(want, 6);
    CHECK(!strcmp(rows[0].t.id, want));
    clmr_track_rows_free(rows, n);
    free(cursor);
    /* an offset cursor is not a keyset cursor */
    q.cursor = "o10000000000000004";
    CHECK(clmr_store_track_query(s, &q, &rows, &n, NULL, &cursor, NULL) == CLMR_EINVAL);
    free(next);
    q = clmr_track_query_default();
    q.model_id = MODEL;
    q.sort = CLMR_SORT_TAG_SCORE;
    CHECK(clmr_store_track_query(s, &q, &rows, &n, NULL, &cursor, NULL) == CLMR_EINVAL);
    clmr_store_close(&s);
    t_rmdir(dir);
}

int main(void)
{
    RUN_TEST(test_upgrade_old_database);
    RUN_TEST(test_duplicates);
    RUN_TEST(test_query_filters_sort_pages);
    return TEST_END();
}
