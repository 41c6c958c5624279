/* test_index.c - exact cosine top-k against a brute-force double-precision oracle (both the
 * AVX-512 and the scalar kernel), exclusion, update/remove, ties, refusals, loading from a real
 * store, and concurrent searches with writers.
 *
 * Tolerance: scores are float32 dot products of unit vectors accumulated in different orders by
 * the kernels, so they may differ from the double oracle by a few ulps of the sum; 1e-5 absolute
 * is far above that (dim <= 512: ~512 * 6e-8) and far below the gaps between random neighbours. */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "clmr/error.h"
#include "harness.h"
#include "index/index.h"
#include "store/store.h"
#include "store/test_util.h"

#define TOL 1e-5

typedef struct {
    int dim, n;
    float *v; /* n * dim, raw (unnormalised) */
    char (*ids)[65];
    int *alive;
} data_t;

static data_t make_data(int n, int dim, uint64_t seed)
{
    data_t d = {dim, n, malloc(sizeof(float) * (size_t)n * dim), malloc(65 * (size_t)n),
                malloc(sizeof(int) * (size_t)n)};
    for (int i = 0; i < n * dim; i++)
        d.v[i] = t_rand(&seed);
    for (int i = 0; i < n; i++) {
        t_fake_id(d.ids[i], (uint64_t)i, seed);
        d.alive[i] = 1;
    }
    return d;
}

static void free_data(data_t *d)
{
    free(d->v);
    free(d->ids);
    free(d->alive);
}

static double cosine(const float *a, const float *b, int dim)
{
    double ab = 0, aa = 0, bb = 0;
    for (int i = 0; i < dim; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / sqrt(aa * bb);
}

typedef struct {
    double s;
    int i;
} bf_t;

static int bf_cmp(const void *a, const void *b)
{
    const bf_t *x = a, *y = b;
    return x->s < y->s ? 1 : x->s > y->s ? -1 : 0;
}

/* Checks hits against the brute-force ranking of the live rows (minus exclude). */
static int check_against_oracle(const data_t *d, const float *q, int k, int exclude,
                                const clmr_index_hit_t *hits, int nh)
{
    bf_t *all = malloc(sizeof *all * (size_t)d->n);
    int m = 0, ok = 1;
    for (int i = 0; i < d->n; i++)
        if (d->alive[i] && i != exclude)
            all[m++] = (bf_t){cosine(q, d->v + (size_t)i * d->dim, d->dim), i};
    qsort(all, (size_t)m, sizeof *all, bf_cmp);
    int want = k < m ? k : m;
    if (nh != want) {
        printf("# got %d hits, want %d\n", nh, want);
        ok = 0;
    }
    for (int j = 0; ok && j < nh; j++) {
        /* Same score at every rank, and the same id unless the oracle has a near-tie there. */
        if (fabs(hits[j].score - all[j].s) > TOL) {
            printf("# rank %d: score %.7f, oracle %.7f\n", j, hits[j].score, all[j].s);
            ok = 0;
        }
        int tie = (j > 0 && all[j - 1].s - all[j].s < TOL) ||
                  (j + 1 < m && all[j].s - all[j + 1].s < TOL);
        if (!tie && strcmp(hits[j].id, d->ids[all[j].i]) != 0) {
            printf("# rank %d: id %.8s, oracle %.8s\n", j, hits[j].id, d->ids[all[j].i]);
            ok = 0;
        }
        if (j > 0 && hits[j].score > hits[j - 1].score) ok = 0;
    }
    free(all);
    return ok;
}

static clmr_index_t *build(const data_t *d, size_t cap)
{
    clmr_index_t *x = NULL;
    CHECK(clmr_index_create(&x, d->dim, cap) == 0);
    for (int i = 0; i < d->n; i++)
        CHECK(clmr_index_upsert(x, d->ids[i], d->v + (size_t)i * d->dim) == 0);
    return x;
}

static void run_exact(const char *kernel, int dim)
{
    CHECK(clmr_index_set_kernel(kernel) == 0);
    data_t d = make_data(1503, dim, 77 + (uint64_t)dim); /* odd n: exercises the tail rows */
    clmr_index_t *x = build(&d, 1);                      /* capacity 1: exercises growth */
    CHECK(clmr_index_size(x) == 1503);
    uint64_t seed = 5;
    clmr_index_hit_t hits[50];
    float *q = malloc(sizeof(float) * (size_t)dim);
    for (int t = 0; t < 20; t++) {
        for (int i = 0; i < dim; i++)
            q[i] = t_rand(&seed);
        int k = t % 2 ? 10 : 50, nh = -1;
        CHECK(clmr_index_search(x, q, k, NULL, hits, &nh) == 0);
        CHECK(check_against_oracle(&d, q, k, -1, hits, nh));
        /* Excluding the best hit gives the oracle without that row. */
        int best = -1;
        for (int i = 0; i < d.n; i++)
            if (strcmp(d.ids[i], hits[0].id) == 0) best = i;
        CHECK(clmr_index_search(x, q, k, d.ids[best], hits, &nh) == 0);
        CHECK(check_against_oracle(&d, q, k, best, hits, nh));
    }
    free(q);
    clmr_index_destroy(&x);
    CHECK(x == NULL);
    free_data(&d);
    clmr_index_set_kernel("auto");
}

/* Every kernel set this CPU can run; the run says which were covered. */
static const char *const KERNEL_NAMES[] = {"avx512", "avx2", "scalar"};

static void test_exact_topk_every_kernel_512(void)
{
    printf("# auto kernel: %s\n", clmr_index_kernel_name());
    int ran = 0;
    for (int i = 0; i < 3; i++) {
        if (clmr_index_set_kernel(KERNEL_NAMES[i]) != 0) {
            printf("# kernel %s not supported by this CPU: not covered here\n", KERNEL_NAMES[i]);
            continue;
        }
        run_exact(KERNEL_NAMES[i], 512);
        ran++;
    }
    CHECK(ran >= 1);
    CHECK(clmr_index_set_kernel("bogus") == CLMR_EINVAL);
}

static void test_exact_topk_odd_dim(void)
{
    for (int i = 0; i < 3; i++) /* 37 is not a multiple of 16: padding must stay zero */
        if (clmr_index_set_kernel(KERNEL_NAMES[i]) == 0) run_exact(KERNEL_NAMES[i], 37);
    clmr_index_set_kernel("auto");
}

static void test_kernels_agree(void)
{
    data_t d = make_data(333, 512, 3);
    clmr_index_t *x = build(&d, 0);
    clmr_index_hit_t a[20], b[20];
    int na, nb;
    CHECK(clmr_index_set_kernel("scalar") == 0);
    CHECK(clmr_index_search(x, d.v, 20, NULL, a, &na) == 0);
    clmr_index_set_kernel("auto");
    CHECK(clmr_index_search(x, d.v, 20, NULL, b, &nb) == 0);
    CHECK(na == 20 && nb == 20);
    for (int i = 0; i < 20 && i < na && i < nb; i++)
        CHECK_NEAR(a[i].score, b[i].score, TOL);
    CHECK(na > 0 && strcmp(a[0].id, d.ids[0]) == 0); /* a row is its own best match */
    CHECK_NEAR(a[0].score, 1.0, TOL);
    clmr_index_destroy(&x);
    free_data(&d);
}

/* The int8 prefilter must return exactly what the full fp32 scan returns (same kernel for the
 * re-scored rows, so identical ids AND bit-identical scores), also on clustered data where many
 * rows sit within the quantisation error of each other. */
static void prefilter_vs_full(const data_t *d, const float *queries, int nq, int k)
{
    clmr_index_t *x = build(d, 0);
    clmr_index_hit_t *a = malloc(sizeof *a * (size_t)k), *b = malloc(sizeof *b * (size_t)k);
    for (int kn = 0; kn < 2; kn++) { /* the kernels that have a prefilter */
        if (clmr_index_set_kernel(KERNEL_NAMES[kn]) != 0) continue;
        for (int t = 0; t < nq; t++) {
            int na = -1, nb = -2;
            clmr_index_set_prefilter(1);
            CHECK(clmr_index_search(x, queries + (size_t)t * d->dim, k, NULL, a, &na) == 0);
            clmr_index_set_prefilter(0);
            CHECK(clmr_index_search(x, queries + (size_t)t * d->dim, k, NULL, b, &nb) == 0);
            CHECKF(na == nb, "%d vs %d hits", na, nb);
            for (int i = 0; i < na && i < nb; i++)
                CHECKF(strcmp(a[i].id, b[i].id) == 0 && a[i].score == b[i].score,
                       "query %d rank %d: %.8s %.9g vs %.8s %.9g", t, i, a[i].id, a[i].score,
                       b[i].id, b[i].score);
        }
    }
    clmr_index_set_prefilter(1);
    clmr_index_set_kernel("auto");
    free(a);
    free(b);
    clmr_index_destroy(&x);
}

static void test_prefilter_equals_full_scan(void)
{
    data_t d = make_data(3001, 512, 31);
    float q[512 * 10];
    uint64_t seed = 4;
    for (int i = 0; i < 512 * 10; i++)
        q[i] = t_rand(&seed);
    prefilter_vs_full(&d, q, 10, 10);
    /* Clustered: 20 centres, rows = centre + 1% noise, queries = centres (dense near-ties). */
    for (int i = 0; i < d.n; i++)
        for (int j = 0; j < 512; j++)
            d.v[(size_t)i * 512 + j] = d.v[(size_t)(i % 20) * 512 + j] + 0.01f * t_rand(&seed);
    prefilter_vs_full(&d, d.v, 10, 100);
    free_data(&d);
}

/* Regression: when n is not a multiple of 4, the last rows are scored one at a time; each must
 * get its own approximate score (a tail row must never borrow its neighbour's). */
static void test_tail_rows_found(void)
{
    for (int n = 401; n <= 404; n++) {
        data_t d = make_data(n, 512, 60 + (uint64_t)n);
        clmr_index_t *x = build(&d, 0);
        for (int last = n - 3; last < n; last++) {
            clmr_index_hit_t h[5];
            int nh = 0;
            for (int kn = 0; kn < 3; kn++) {
                if (clmr_index_set_kernel(KERNEL_NAMES[kn]) != 0) continue;
                CHECK(clmr_index_search(x, d.v + (size_t)last * 512, 5, NULL, h, &nh) == 0);
                CHECKF(nh == 5 && strcmp(h[0].id, d.ids[last]) == 0,
                       "n %d row %d kernel %s: top hit %.8s", n, last, KERNEL_NAMES[kn],
                       nh ? h[0].id : "-");
                CHECK(check_against_oracle(&d, d.v + (size_t)last * 512, 5, -1, h, nh));
            }
            clmr_index_set_kernel("auto");
        }
        clmr_index_destroy(&x);
        free_data(&d);
    }
}

static void test_search_id_remove_update(void)
{
    data_t d = make_data(800, 64, 11);
    clmr_index_t *x = build(&d, 0);
    clmr_index_hit_t h1[10], h2[10];
    int n1, n2;
    CHECK(clmr_index_search_id(x, d.ids[5], 10, h1, &n1) == 0);
    CHECK(clmr_index_search(x, d.v + 5 * 64, 10, d.ids[5], h2, &n2) == 0);
    CHECK(n1 == 10 && n2 == 10);
    /* Same ranking; scores may differ by rounding (stored normalised query vs re-normalised). */
    for (int i = 0; i < n1 && i < n2; i++) {
        CHECK(strcmp(h1[i].id, h2[i].id) == 0);
        CHECK_NEAR(h1[i].score, h2[i].score, TOL);
        CHECK(strcmp(h1[i].id, d.ids[5]) != 0);
    }
    CHECK(clmr_index_search_id(x, "unknown", 10, h1, &n1) == CLMR_ENOT_FOUND);

    /* Remove every third row, then the index must equal the oracle over the survivors. */
    for (int i = 0; i < d.n; i += 3) {
        CHECK(clmr_index_remove(x, d.ids[i]) == 0);
        d.alive[i] = 0;
    }
    CHECK(clmr_index_remove(x, d.ids[0]) == CLMR_ENOT_FOUND);
    CHECK(clmr_index_size(x) == (size_t)(d.n - (d.n + 2) / 3));
    float g[64];
    CHECK(clmr_index_get(x, d.ids[0], g) == CLMR_ENOT_FOUND);
    CHECK(clmr_index_get(x, d.ids[1], g) == 0);
    double norm = 0;
    for (int i = 0; i < 64; i++)
        norm += (double)g[i] * g[i];
    CHECK_NEAR(norm, 1.0, 1e-5);
    uint64_t seed = 99;
    float q[64];
    for (int t = 0; t < 10; t++) {
        for (int i = 0; i < 64; i++)
            q[i] = t_rand(&seed);
        CHECK(clmr_index_search(x, q, 10, NULL, h1, &n1) == 0);
        CHECK(check_against_oracle(&d, q, 10, -1, h1, n1));
    }
    /* Update: the row now points the other way; size unchanged. */
    size_t before = clmr_index_size(x);
    float neg[64];
    for (int i = 0; i < 64; i++)
        neg[i] = -d.v[1 * 64 + i];
    CHECK(clmr_index_upsert(x, d.ids[1], neg) == 0);
    CHECK(clmr_index_size(x) == before);
    memcpy(d.v + 64, neg, sizeof neg);
    CHECK(clmr_index_search(x, neg, 1, NULL, h1, &n1) == 0 && n1 == 1 &&
          strcmp(h1[0].id, d.ids[1]) == 0);
    CHECK_NEAR(h1[0].score, 1.0, TOL);
    /* Re-add removed ids: found again. */
    for (int i = 0; i < d.n; i += 3) {
        CHECK(clmr_index_upsert(x, d.ids[i], d.v + (size_t)i * 64) == 0);
        d.alive[i] = 1;
    }
    CHECK(clmr_index_size(x) == (size_t)d.n);
    CHECK(clmr_index_search(x, q, 10, NULL, h1, &n1) == 0);
    CHECK(check_against_oracle(&d, q, 10, -1, h1, n1));
    clmr_index_destroy(&x);
    free_data(&d);
}

static void test_edge_cases(void)
{
    clmr_index_t *x = NULL;
    CHECK(clmr_index_create(&x, 0, 0) == CLMR_EINVAL);
    CHECK(clmr_index_create(&x, 4, 0) == 0);
    clmr_index_hit_t h[5];
    int nh = -1;
    float q[4] = {1, 0, 0, 0};
    CHECK(clmr_index_search(x, q, 5, NULL, h, &nh) == 0 && nh == 0); /* empty index */
    float z[4] = {0, 0, 0, 0}, nan[4] = {1, NAN, 0, 0}, inf[4] = {INFINITY, 0, 0, 0};
    CHECK(clmr_index_upsert(x, "z", z) == CLMR_EINVAL);
    CHECK(clmr_index_upsert(x, "n", nan) == CLMR_EINVAL);
    CHECK(clmr_index_upsert(x, "i", inf) == CLMR_EINVAL);
    CHECK(clmr_index_upsert(x, "", q) == CLMR_EINVAL);
    char longid[80];
    memset(longid, 'a', 79);
    longid[79] = '\0';
    CHECK(clmr_index_upsert(x, longid, q) == CLMR_EINVAL);
    CHECK(clmr_index_size(x) == 0);
    /* Ties: identical vectors rank by id. */
    float v[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    CHECK(clmr_index_upsert(x, "bb", v) == 0);
    CHECK(clmr_index_upsert(x, "cc", v) == 0);
    CHECK(clmr_index_upsert(x, "aa", v) == 0);
    float w[4] = {-1, 0, 0, 0};
    CHECK(clmr_index_upsert(x, "dd", w) == 0);
    CHECK(clmr_index_search(x, v, 5, NULL, h, &nh) == 0 && nh == 4);
    CHECK(nh == 4 && !strcmp(h[0].id, "aa") && !strcmp(h[1].id, "bb") && !strcmp(h[2].id, "cc") &&
          !strcmp(h[3].id, "dd"));
    CHECK_NEAR(h[3].score, -0.5, TOL);
    CHECK(clmr_index_search(x, v, 2, "aa", h, &nh) == 0 && nh == 2 && !strcmp(h[0].id, "bb"));
    CHECK(clmr_index_search(x, z, 2, NULL, h, &nh) == CLMR_EINVAL);
    CHECK(clmr_index_search(x, nan, 2, NULL, h, &nh) == CLMR_EINVAL);
    CHECK(clmr_index_search(x, v, 0, NULL, h, &nh) == CLMR_EINVAL);
    CHECK(clmr_index_memory(x) > 4 * 4 * 4);
    clmr_index_destroy(&x);
    clmr_index_destroy(&x); /* NULL-safe */
}

static void test_load_from_store(void)
{
    char *dir = t_mkdtemp("index");
    clmr_store_params_t p = clmr_store_default_params();
    p.data_dir = dir;
    clmr_store_t *s = NULL;
    CHECK(clmr_store_open(&s, &p, NULL) == 0);
    if (!s) return;
    const char *models[2] = {"m1", "m2"};
    for (int m = 0; m < 2; m++) {
        clmr_store_model_t rec = {0};
        snprintf(rec.id, sizeof rec.id, "%s", models[m]);
        rec.status = m == 0 ? CLMR_MODEL_ACTIVE : CLMR_MODEL_CANDIDATE;
        CHECK(clmr_store_model_put(s, &rec, NULL) == 0);
    }
    data_t d = make_data(300, 32, 21);
    CHECK(clmr_store_write_begin(s, NULL) == 0);
    for (int i = 0; i < d.n; i++) {
        clmr_track_record_t t = {0};
        memcpy(t.id, d.ids[i], 65);
        CHECK(clmr_store_track_ingest(s, &t, "m1", d.v + (size_t)i * 32, 32, NULL, 0, NULL, NULL) ==
              0);
        if (i < 40) CHECK(clmr_store_embedding_put(s, t.id, "m2", d.v, 16, NULL) == 0);
    }
    CHECK(clmr_store_write_end(s, 1, NULL) == 0);
    clmr_index_t *x = NULL;
    CHECK(clmr_index_create(&x, 32, 0) == 0);
    size_t loaded = 0;
    CHECK(clmr_index_load(x, s, "m1", &loaded, NULL) == 0 && loaded == 300);
    CHECK(clmr_index_size(x) == 300);
    clmr_index_hit_t h[10];
    int nh;
    CHECK(clmr_index_search(x, d.v + 7 * 32, 10, NULL, h, &nh) == 0);
    CHECK(check_against_oracle(&d, d.v + 7 * 32, 10, -1, h, nh));
    clmr_index_destroy(&x);
    /* m2's embeddings are 16-d: an index of 32 refuses them with a message. */
    CHECK(clmr_index_create(&x, 32, 0) == 0);
    char *err = NULL;
    CHECK(clmr_index_load(x, s, "m2", &loaded, &err) == CLMR_EINVAL && err);
    free(err);
    clmr_index_destroy(&x);
    free_data(&d);
    clmr_store_close(&s);
    t_rmdir(dir);
}

typedef struct {
    clmr_index_t *x;
    const data_t *d;
    int errors, searches;
    atomic_int *stop;
} conc_t;

static void *searcher_main(void *arg)
{
    conc_t *c = arg;
    clmr_index_hit_t h[10];
    int i = 0;
    while (!*c->stop || c->searches < 50) {
        int nh = 0;
        if (clmr_index_search(c->x, c->d->v + (size_t)(i++ % 100) * c->d->dim, 10, NULL, h, &nh))
            c->errors++;
        else if (nh != 10)
            c->errors++;
        for (int j = 1; j < nh; j++)
            if (h[j].score > h[j - 1].score) c->errors++;
        c->searches++;
    }
    return NULL;
}

static void test_concurrent_search_and_write(void)
{
    data_t d = make_data(2000, 128, 8);
    clmr_index_t *x = NULL;
    CHECK(clmr_index_create(&x, 128, 0) == 0);
    for (int i = 0; i < 100; i++) /* never removed below: searches always find >= 10 rows */
        CHECK(clmr_index_upsert(x, d.ids[i], d.v + (size_t)i * 128) == 0);
    atomic_int stop = 0;
    conc_t c[2] = {{x, &d, 0, 0, &stop}, {x, &d, 0, 0, &stop}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, searcher_main, &c[i]);
    int werr = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 100; i < d.n; i++)
            werr += clmr_index_upsert(x, d.ids[i], d.v + (size_t)i * 128) != 0;
        for (int i = 100; i < d.n; i += 2)
            werr += clmr_index_remove(x, d.ids[i]) != 0;
    }
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    CHECK(werr == 0);
    CHECKF(c[0].errors == 0 && c[1].errors == 0, "errors %d %d", c[0].errors, c[1].errors);
    CHECK(clmr_index_size(x) == 100 + 950);
    clmr_index_destroy(&x);
    free_data(&d);
}

static void *size_reader(void *p)
{
    static size_t got;
    got = clmr_index_size(p);
    return &got;
}

/* Issue 12 item 7: /metrics reads the catalogue size on the polling thread; it must not wait
 * while a writer holds the index (growth copies the whole matrix under the write lock). */
static void test_size_does_not_wait_for_writers(void)
{
    clmr_index_t *idx = NULL;
    CHECK(clmr_index_create(&idx, 8, 4) == 0);
    float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    CHECK(clmr_index_upsert(idx, "a", v) == 0 && clmr_index_upsert(idx, "b", v) == 0);
    clmr__index_hold_lock(idx, 1);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, size_reader, idx) == 0);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10; /* a deadline, not a timing: the old size() never returns here */
    void *res = NULL;
    int rc = pthread_timedjoin_np(th, &res, &until);
    CHECKF(rc == 0, "clmr_index_size waited for the write lock");
    clmr__index_hold_lock(idx, 0);
    if (rc) pthread_join(th, &res);
    CHECK(res && *(size_t *)res == 2);
    clmr_index_destroy(&idx);
}

int main(void)
{
    RUN_TEST(test_size_does_not_wait_for_writers);
    RUN_TEST(test_exact_topk_every_kernel_512);
    RUN_TEST(test_exact_topk_odd_dim);
    RUN_TEST(test_kernels_agree);
    RUN_TEST(test_prefilter_equals_full_scan);
    RUN_TEST(test_tail_rows_found);
    RUN_TEST(test_search_id_remove_update);
    RUN_TEST(test_edge_cases);
    RUN_TEST(test_load_from_store);
    RUN_TEST(test_concurrent_search_and_write);
    return TEST_END();
}
