/* test_ann.c - the approximate backends (src/index/ann.c on FAISS, and clmr_index with an HNSW /
 * IVF-PQ backend) against the exact scan as the oracle, on clustered synthetic vectors: recall,
 * exact re-scored scores, delete/replace/add after and during a background build, the auto
 * threshold, and save/load.
 *
 * Data: C cluster centres uniform on the sphere, vector = normalise(centre + sigma * noise) with
 * uniform noise in [-1, 1) per dimension; queries are fresh draws. Small dimensions (32/64) keep
 * the HNSW inserts cheap on a loaded CI machine; docs/scaling.md has the 512-d measurements.
 *
 * Recall bounds: measured with these seeds and sizes (2026-12-04, build/tests/index/test_ann):
 * ann HNSW top-10 1.000, its 36 candidates 1.000; ann IVF-PQ 36 candidates 0.999; clmr_index
 * with HNSW 1.000, with IVF-PQ (32-d, 4 bytes per vector) 0.940. The bounds (0.95, 0.97, 0.90,
 * 0.97, 0.85) leave a margin for FAISS's multithreaded insertion order, which changes the graph
 * slightly between runs, while a broken backend (wrong metric, label or tombstone mapping: recall
 * near 0.1 or deleted ids returned) always fails them. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "clmr/error.h"
#include "harness.h"
#include "index/ann.h"
#include "index/index.h"
#include "store/test_util.h"

typedef struct {
    int dim, n;
    float *v; /* n * dim, unit */
    char (*ids)[65];
} data_t;

static void unit(float *v, int dim)
{
    double ss = 0;
    for (int i = 0; i < dim; i++)
        ss += (double)v[i] * v[i];
    for (int i = 0; i < dim; i++)
        v[i] = (float)(v[i] / sqrt(ss));
}

/* n clustered vectors; the same seed gives the same centres whatever n. */
static data_t make_clustered(int n, int dim, int clusters, float sigma, uint64_t seed)
{
    data_t d = {dim, n, malloc(sizeof(float) * (size_t)n * dim), malloc(65 * (size_t)n)};
    float *c = malloc(sizeof(float) * (size_t)clusters * dim);
    uint64_t s = 0xC0FFEE ^ (uint64_t)dim;
    for (int i = 0; i < clusters * dim; i++)
        c[i] = t_rand(&s);
    for (int k = 0; k < clusters; k++)
        unit(c + (size_t)k * dim, dim);
    s = seed;
    for (int i = 0; i < n; i++) {
        int k = (int)((t_rand(&s) + 1.0f) * 0.5f * (float)clusters) % clusters;
        for (int j = 0; j < dim; j++)
            d.v[(size_t)i * dim + j] = c[(size_t)k * dim + j] + sigma * t_rand(&s);
        unit(d.v + (size_t)i * dim, dim);
        t_fake_id(d.ids[i], (uint64_t)i, seed);
    }
    free(c);
    return d;
}

static void free_data(data_t *d)
{
    free(d->v);
    free(d->ids);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Waits (deadline 120 s: CI is loaded) until idx serves with `want`. */
static int wait_backend(clmr_index_t *idx, const char *want)
{
    double end = now_s() + 120;
    while (now_s() < end) {
        if (!strcmp(clmr_index_backend_name(idx), want)) return 1;
        usleep(10000);
    }
    return 0;
}

static clmr_index_t *exact_of(const data_t *d)
{
    clmr_index_t *x = NULL;
    CHECK(clmr_index_create(&x, d->dim, (size_t)d->n) == 0);
    for (int i = 0; i < d->n; i++)
        CHECK(clmr_index_upsert(x, d->ids[i], d->v + (size_t)i * d->dim) == 0);
    return x;
}

static int id_in(const char *id, const clmr_index_hit_t *h, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(h[i].id, id)) return 1;
    return 0;
}

/* Mean |approx top-10 & exact top-10| / 10 over the queries, through the clmr_index API. */
static double index_recall(clmr_index_t *ax, clmr_index_t *ex, const data_t *q)
{
    double sum = 0;
    for (int i = 0; i < q->n; i++) {
        clmr_index_hit_t a[10], e[10];
        int na = 0, ne = 0;
        CHECK(clmr_index_search(ax, q->v + (size_t)i * q->dim, 10, NULL, a, &na) == 0);
        CHECK(clmr_index_search(ex, q->v + (size_t)i * q->dim, 10, NULL, e, &ne) == 0);
        int hit = 0;
        for (int j = 0; j < na; j++) {
            hit += id_in(a[j].id, e, ne);
            /* scores are re-scored against the exact rows: equal to the exact scan's for the
             * same id (the same fp32 kernel on the same row) */
            for (int m = 0; m < ne; m++)
                if (!strcmp(a[j].id, e[m].id)) CHECK_NEAR(a[j].score, e[m].score, 1e-6);
        }
        /* ordering: best first */
        for (int j = 1; j < na; j++)
            CHECK(a[j - 1].score >= a[j].score);
        sum += hit / 10.0;
    }
    return sum / q->n;
}

/* ---- ann.c directly ---- */

static double ann_recall(clmr_ann_t *a, clmr_index_t *ex, const data_t *d, const data_t *q, int kc)
{
    double sum = 0;
    for (int i = 0; i < q->n; i++) {
        int64_t lab[64];
        float sc[64];
        int m = 0;
        clmr_index_hit_t e[10];
        int ne = 0;
        CHECK(clmr_ann_search(a, q->v + (size_t)i * q->dim, kc, lab, sc, &m, NULL) == 0);
        CHECK(clmr_index_search(ex, q->v + (size_t)i * q->dim, 10, NULL, e, &ne) == 0);
        int hit = 0;
        for (int j = 0; j < m; j++) {
            CHECK(lab[j] >= 0 && lab[j] < d->n);
            if (lab[j] >= 0 && lab[j] < d->n) hit += id_in(d->ids[lab[j]], e, ne);
        }
        sum += hit / 10.0;
    }
    return sum / q->n;
}

static void test_ann_hnsw_recall(void)
{
    data_t d = make_clustered(3000, 64, 60, 0.15f, 1), q = make_clustered(100, 64, 60, 0.15f, 2);
    clmr_index_t *ex = exact_of(&d);
    clmr_ann_params_t p = clmr_ann_default_params(CLMR_ANN_HNSW, d.dim, (size_t)d.n);
    clmr_ann_t *a = NULL;
    CHECK(clmr_ann_open(&a, &p, NULL) == 0);
    CHECK(!clmr_ann_needs_training(a));
    const char **ids = malloc(sizeof *ids * (size_t)d.n);
    for (int i = 0; i < d.n; i++)
        ids[i] = d.ids[i];
    CHECK(clmr_ann_add(a, (size_t)d.n, d.v, ids, NULL) == 0);
    CHECK(clmr_ann_labels(a) == 3000 && clmr_ann_live(a) == 3000);
    CHECK(!strcmp(clmr_ann_id(a, 17), d.ids[17]) && clmr_ann_id(a, 3000) == NULL);
    double r10 = ann_recall(a, ex, &d, &q, 10), r36 = ann_recall(a, ex, &d, &q, 36);
    printf("# hnsw recall@10 %.3f, of 36 candidates %.3f\n", r10, r36);
    CHECKF(r10 >= 0.95, "%.3f", r10);
    CHECKF(r36 >= 0.97, "%.3f", r36);
    /* scores: cosine from the L2 distance of unit vectors; the top hit of a stored vector is
     * itself at ~1 */
    int64_t lab[10];
    float sc[10];
    int m = 0;
    CHECK(clmr_ann_search(a, d.v + 5 * 64, 10, lab, sc, &m, NULL) == 0);
    CHECK(m == 10 && lab[0] == 5);
    CHECK_NEAR(sc[0], 1.0, 1e-5);
    /* deleted labels are never returned, even when they are the exact answer */
    for (int i = 0; i < 3000; i += 3)
        clmr_ann_delete(a, i);
    CHECK(clmr_ann_live(a) == 2000);
    for (int i = 0; i < 3000; i += 3) {
        CHECK(clmr_ann_search(a, d.v + (size_t)i * 64, 10, lab, sc, &m, NULL) == 0);
        CHECK(m == 10);
        for (int j = 0; j < m; j++)
            CHECKF(lab[j] % 3 != 0, "deleted label %lld returned", (long long)lab[j]);
    }
    /* bad arguments */
    CHECK(clmr_ann_search(a, d.v, 0, lab, sc, &m, NULL) == CLMR_EINVAL);
    clmr_ann_params_t bad = p;
    bad.hnsw_m = 2;
    clmr_ann_t *b = NULL;
    CHECK(clmr_ann_open(&b, &bad, NULL) == CLMR_EINVAL && b == NULL);
    clmr_ann_close(&a);
    clmr_ann_close(&a); /* NULL is fine */
    free(ids);
    clmr_index_destroy(&ex);
    free_data(&d);
    free_data(&q);
}

static void test_ann_ivfpq_recall_and_files(void)
{
    data_t d = make_clustered(6000, 64, 60, 0.15f, 3), q = make_clustered(100, 64, 60, 0.15f, 4);
    clmr_index_t *ex = exact_of(&d);
    clmr_ann_params_t p = clmr_ann_default_params(CLMR_ANN_IVFPQ, d.dim, (size_t)d.n);
    CHECK(p.nlist == 256 && p.pq_m == 8 && p.nprobe == 16);
    p.pq_m = 16; /* 4 dims per byte at 64-d */
    clmr_ann_t *a = NULL;
    CHECK(clmr_ann_open(&a, &p, NULL) == 0);
    CHECK(clmr_ann_needs_training(a));
    const char *one[] = {d.ids[0]};
    CHECK(clmr_ann_add(a, 1, d.v, one, NULL) == CLMR_EINVAL); /* untrained */
    CHECK(clmr_ann_train(a, 100, d.v, NULL) == CLMR_EINVAL);  /* fewer than nlist */
    CHECK(clmr_ann_train(a, (size_t)d.n, d.v, NULL) == 0);
    CHECK(!clmr_ann_needs_training(a));
    const char **ids = malloc(sizeof *ids * (size_t)d.n);
    for (int i = 0; i < d.n; i++)
        ids[i] = d.ids[i];
    CHECK(clmr_ann_add(a, (size_t)d.n, d.v, ids, NULL) == 0);
    double r36 = ann_recall(a, ex, &d, &q, 36);
    printf("# ivfpq recall of 36 candidates %.3f\n", r36);
    CHECKF(r36 >= 0.90, "%.3f", r36);
    for (int i = 0; i < d.n; i += 2)
        clmr_ann_delete(a, i);

    /* save / load: same answers, same live set, same ids */
    char *dir = t_mkdtemp("ann");
    char path[512];
    snprintf(path, sizeof path, "%s/ann.faiss", dir);
    CHECK(clmr_ann_save(a, path, NULL) == 0);
    clmr_ann_t *b = NULL;
    CHECK(clmr_ann_load(&b, path, NULL) == 0);
    CHECK(b && clmr_ann_live(b) == 3000 && clmr_ann_labels(b) == 6000);
    CHECK(b && !strcmp(clmr_ann_id(b, 4321), d.ids[4321]));
    CHECK(b && clmr_ann_params(b).kind == CLMR_ANN_IVFPQ && clmr_ann_params(b).nprobe == 16);
    for (int i = 0; b && i < q.n; i++) {
        int64_t la[20], lb[20];
        float sa[20], sb[20];
        int ma = 0, mb = 0;
        CHECK(clmr_ann_search(a, q.v + (size_t)i * 64, 20, la, sa, &ma, NULL) == 0);
        CHECK(clmr_ann_search(b, q.v + (size_t)i * 64, 20, lb, sb, &mb, NULL) == 0);
        CHECK(ma == mb && !memcmp(la, lb, sizeof(int64_t) * (size_t)ma));
        for (int j = 0; j < mb; j++)
            CHECK(lb[j] % 2 == 1);
    }
    clmr_ann_close(&b);
    /* a truncated sidecar is refused, not half-loaded */
    char side[600];
    snprintf(side, sizeof side, "%s.ids", path);
    CHECK(truncate(side, 100) == 0);
    char *msg = NULL;
    CHECK(clmr_ann_load(&b, path, &msg) == CLMR_EINVAL && b == NULL && msg);
    free(msg);
    unlink(side);
    CHECK(clmr_ann_load(&b, path, NULL) == CLMR_EINVAL);
    unlink(path);
    t_rmdir(dir);
    clmr_ann_close(&a);
    free(ids);
    clmr_index_destroy(&ex);
    free_data(&d);
    free_data(&q);
}

/* ---- clmr_index with an approximate backend ---- */

static void test_index_hnsw_backend(void)
{
    data_t d = make_clustered(3000, 64, 60, 0.15f, 5), q = make_clustered(100, 64, 60, 0.15f, 6);
    clmr_index_t *ex = exact_of(&d), *ax = exact_of(&d);
    CHECK(!strcmp(clmr_index_backend_name(ax), "exact") && !clmr_index_approx_pending(ax));
    CHECK(clmr_index_set_backend(ax, CLMR_INDEX_HNSW, 0) == 0);
    CHECK(wait_backend(ax, "hnsw"));
    double r = index_recall(ax, ex, &q);
    printf("# index hnsw recall@10 %.3f\n", r);
    CHECKF(r >= 0.97, "%.3f", r);
    CHECK(clmr_index_memory(ax) > clmr_index_memory(ex));

    /* search_id excludes the track itself */
    clmr_index_hit_t h[10];
    int n = 0;
    CHECK(clmr_index_search_id(ax, d.ids[7], 10, h, &n) == 0 && n == 10 && !id_in(d.ids[7], h, n));

    /* delete: never returned again, though each removed vector is its own best match */
    for (int i = 0; i < 300; i++)
        CHECK(clmr_index_remove(ax, d.ids[i]) == 0);
    for (int i = 0; i < 300; i++) {
        CHECK(clmr_index_search(ax, d.v + (size_t)i * 64, 10, NULL, h, &n) == 0 && n == 10);
        CHECKF(!id_in(d.ids[i], h, n), "removed %d returned", i);
    }
    /* replace: the new vector is what is found, with its exact score */
    float v[64];
    memcpy(v, d.v + 1000 * 64, sizeof v); /* track 500 now sounds like track 1000 */
    CHECK(clmr_index_upsert(ax, d.ids[500], v) == 0);
    CHECK(clmr_index_search(ax, v, 2, NULL, h, &n) == 0 && n == 2);
    CHECK(id_in(d.ids[500], h, n) && id_in(d.ids[1000], h, n));
    CHECK_NEAR(h[0].score, 1.0, 1e-5);
    CHECK(clmr_index_search(ax, d.v + 500 * 64, 10, NULL, h, &n) == 0);
    for (int j = 0; j < n; j++)
        if (!strcmp(h[j].id, d.ids[500])) CHECK(h[j].score < 0.999);
    /* add: found at once */
    data_t extra = make_clustered(50, 64, 60, 0.15f, 7);
    for (int i = 0; i < extra.n; i++)
        CHECK(clmr_index_upsert(ax, extra.ids[i], extra.v + (size_t)i * 64) == 0);
    for (int i = 0; i < extra.n; i++) {
        CHECK(clmr_index_search(ax, extra.v + (size_t)i * 64, 1, NULL, h, &n) == 0 && n == 1);
        CHECK(!strcmp(h[0].id, extra.ids[i]));
    }
    CHECK(clmr_index_size(ax) == 3000 - 300 + 50);
    /* back to exact: answers equal the exact scan's */
    CHECK(clmr_index_set_backend(ax, CLMR_INDEX_EXACT, 0) == 0);
    CHECK(!strcmp(clmr_index_backend_name(ax), "exact"));
    clmr_index_destroy(&ax);
    clmr_index_destroy(&ex);
    free_data(&extra);
    free_data(&d);
    free_data(&q);
}

typedef struct {
    clmr_index_t *x;
    const data_t *d, *extra;
    int removed_from, removed_to;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    /* interleaved with the background build: removals of old rows, additions of new ones */
    for (int i = 0; i < w->extra->n; i++) {
        clmr_index_upsert(w->x, w->extra->ids[i], w->extra->v + (size_t)i * w->extra->dim);
        int r = w->removed_from + i;
        if (r < w->removed_to) clmr_index_remove(w->x, w->d->ids[r]);
    }
    return NULL;
}

/* Rows removed and added while the builder runs: its catch-up pass must leave the removed ones
 * out and put the new ones in. */
static void test_index_build_catch_up(void)
{
    data_t d = make_clustered(4000, 64, 60, 0.15f, 8),
           extra = make_clustered(400, 64, 60, 0.15f, 9);
    clmr_index_t *ax = exact_of(&d);
    CHECK(clmr_index_set_backend(ax, CLMR_INDEX_HNSW, 0) == 0);
    writer_t w = {ax, &d, &extra, 100, 500};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer_main, &w) == 0);
    pthread_join(th, NULL);
    CHECK(wait_backend(ax, "hnsw"));
    CHECK(clmr_index_size(ax) == 4000 - 400 + 400);
    clmr_index_hit_t h[10];
    int n = 0, self = 0;
    for (int i = 100; i < 500; i++) {
        CHECK(clmr_index_search(ax, d.v + (size_t)i * 64, 10, NULL, h, &n) == 0);
        CHECKF(!id_in(d.ids[i], h, n), "removed %d returned", i);
    }
    for (int i = 0; i < extra.n; i++) {
        CHECK(clmr_index_search(ax, extra.v + (size_t)i * 64, 1, NULL, h, &n) == 0);
        self += n == 1 && !strcmp(h[0].id, extra.ids[i]);
    }
    CHECKF(self >= extra.n * 99 / 100, "%d of %d added rows find themselves", self, extra.n);
    clmr_index_destroy(&ax);
    free_data(&extra);
    free_data(&d);
}

/* AUTO: exact below the threshold, a background build when an upsert reaches it; destroying an
 * index while its builder runs is safe. */
static void test_index_auto_threshold(void)
{
    data_t d = make_clustered(1200, 32, 30, 0.15f, 10);
    clmr_index_backend_t b;
    CHECK(clmr_index_backend_parse("auto", &b) == 0 && b == CLMR_INDEX_AUTO);
    CHECK(clmr_index_backend_parse("faiss", &b) == CLMR_EINVAL);
    clmr_index_set_default_backend(CLMR_INDEX_AUTO, 1000);
    clmr_index_t *x = NULL;
    CHECK(clmr_index_create(&x, 32, 0) == 0);
    clmr_index_set_default_backend(CLMR_INDEX_EXACT, 0);
    for (int i = 0; i < 999; i++)
        CHECK(clmr_index_upsert(x, d.ids[i], d.v + (size_t)i * 32) == 0);
    CHECK(!strcmp(clmr_index_backend_name(x), "exact") && !clmr_index_approx_pending(x));
    for (int i = 999; i < 1200; i++)
        CHECK(clmr_index_upsert(x, d.ids[i], d.v + (size_t)i * 32) == 0);
    CHECK(wait_backend(x, "hnsw"));
    clmr_index_hit_t h[5];
    int n = 0;
    CHECK(clmr_index_search(x, d.v + 1100 * 32, 5, NULL, h, &n) == 0 && n == 5);
    CHECK(!strcmp(h[0].id, d.ids[1100]));
    clmr_index_destroy(&x);
    /* destroy during a build */
    clmr_index_t *y = NULL;
    CHECK(clmr_index_create(&y, 32, 0) == 0);
    for (int i = 0; i < 1200; i++)
        CHECK(clmr_index_upsert(y, d.ids[i], d.v + (size_t)i * 32) == 0);
    CHECK(clmr_index_set_backend(y, CLMR_INDEX_HNSW, 0) == 0);
    clmr_index_destroy(&y);
    CHECK(y == NULL);
    free_data(&d);
}

/* IVF-PQ as the index backend: needs CLMR_INDEX_IVFPQ_MIN_ROWS rows before it builds. */
static void test_index_ivfpq_backend(void)
{
    data_t d = make_clustered(CLMR_INDEX_IVFPQ_MIN_ROWS + 200, 32, 100, 0.15f, 11),
           q = make_clustered(100, 32, 100, 0.15f, 12);
    clmr_index_t *ex = exact_of(&d), *ax = NULL;
    CHECK(clmr_index_create(&ax, 32, 0) == 0);
    CHECK(clmr_index_set_backend(ax, CLMR_INDEX_IVFPQ, 0) == 0);
    for (int i = 0; i < CLMR_INDEX_IVFPQ_MIN_ROWS - 1; i++)
        CHECK(clmr_index_upsert(ax, d.ids[i], d.v + (size_t)i * 32) == 0);
    CHECK(!strcmp(clmr_index_backend_name(ax), "exact") && !clmr_index_approx_pending(ax));
    for (int i = CLMR_INDEX_IVFPQ_MIN_ROWS - 1; i < d.n; i++)
        CHECK(clmr_index_upsert(ax, d.ids[i], d.v + (size_t)i * 32) == 0);
    CHECK(wait_backend(ax, "ivfpq"));
    double r = index_recall(ax, ex, &q);
    printf("# index ivfpq recall@10 %.3f\n", r);
    CHECKF(r >= 0.85, "%.3f", r);
    clmr_index_hit_t h[10];
    int n = 0;
    for (int i = 0; i < 200; i++)
        CHECK(clmr_index_remove(ax, d.ids[i]) == 0);
    for (int i = 0; i < 200; i++) {
        CHECK(clmr_index_search(ax, d.v + (size_t)i * 32, 10, NULL, h, &n) == 0);
        CHECKF(!id_in(d.ids[i], h, n), "removed %d returned", i);
    }
    clmr_index_destroy(&ax);
    clmr_index_destroy(&ex);
    free_data(&d);
    free_data(&q);
}

int main(void)
{
    RUN_TEST(test_ann_hnsw_recall);
    RUN_TEST(test_ann_ivfpq_recall_and_files);
    RUN_TEST(test_index_hnsw_backend);
    RUN_TEST(test_index_build_catch_up);
    RUN_TEST(test_index_auto_threshold);
    RUN_TEST(test_index_ivfpq_backend);
    return TEST_END();
}
