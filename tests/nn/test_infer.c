/* test_infer.c - oneDNN inference (infer_dnnl.c) and track analysis (track.c) against the naive
 * reference forward and hand computations.
 *
 * DESIGN: random full-depth (11-layer, 59,049-sample) models with small widths are built in memory,
 * with non-trivial BatchNorm statistics, then folded. The oracle is clmr_ref_samplecnn_forward on the
 * UNFOLDED weights, so the test also covers the folding. Tolerance: max |a - b| / max(1, |b|) <=
 * 1e-4 (fp32 convolutions in a different summation order over 11 layers, against a double-
 * accumulating reference).
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "harness.h"
#include "nn/model_internal.h"
#include "nn/ref_ops.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-4

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(float lo, float hi) /* xorshift64*, uniform in [lo, hi) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 2685821657736338717ull;
    return lo + (hi - lo) * (float)((r >> 40) / 16777216.0);
}

/* A random model with the given widths (widths[0] = 1), kaiming-uniform conv weights and BN stats
 * far enough from identity that an unfolded/folded mix-up would show. */
static clmr_model_t *random_model(int n_layers, const int *widths, int n_tags)
{
    clmr_samplecnn_config_t cfg;
    if (clmr_samplecnn_config_init(&cfg, n_layers, widths, n_tags)) return NULL;
    clmr_model_t *m;
    if (clmr__model_alloc(&m, &cfg)) return NULL;
    for (int i = 0; i < n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg.layer[i];
        float bound = sqrtf(6.0f / (float)(l->in_ch * l->kernel));
        for (int j = 0; j < l->out_ch * l->in_ch * l->kernel; j++)
            m->w.conv_w[i][j] = frand(-bound, bound);
        for (int c = 0; c < l->out_ch; c++) {
            m->w.conv_b[i][c] = frand(-0.1f, 0.1f);
            m->w.bn_gamma[i][c] = frand(0.5f, 1.5f);
            m->w.bn_beta[i][c] = frand(-0.2f, 0.3f);
            m->w.bn_mean[i][c] = frand(-0.3f, 0.3f);
            m->w.bn_var[i][c] = frand(0.3f, 2.0f);
        }
    }
    for (int j = 0; j < n_tags * cfg.embed_dim; j++) m->w.fc_w[j] = frand(-0.3f, 0.3f);
    for (int t = 0; t < n_tags; t++) m->w.fc_b[t] = frand(-0.5f, 0.5f);
    clmr__model_fold_bn(m);
    return m;
}

static const int small_widths[12] = {1, 8, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32};

static float *random_audio(size_t n)
{
    float *x = malloc(sizeof(float) * n);
    for (size_t i = 0; i < n; i++) x[i] = frand(-1.0f, 1.0f);
    return x;
}

/* Reference embeddings and sigmoid scores for n chunks. */
static void reference(const clmr_model_t *m, const float *x, int n, float *emb, float *scores)
{
    int T = m->cfg.n_tags;
    float *logits = T ? malloc(sizeof(float) * n * T) : NULL;
    CHECK(clmr_ref_samplecnn_forward(&m->cfg, &m->w, x, n, emb, logits) == 0);
    if (T) clmr_ref_sigmoid(scores, logits, (size_t)n * T);
    free(logits);
}

/* oneDNN vs reference at batch 1, an odd size, exactly max_batch and more than max_batch, all on
 * one context (so cached nets of several batch sizes are reused in any order). */
static void test_matches_reference(void)
{
    const int T = 7, max_batch = 4;
    clmr_model_t *m = random_model(11, small_widths, T);
    CHECK(m != NULL);
    if (!m) return;
    const int L = m->cfg.chunk_samples, D = m->cfg.embed_dim;
    const int sizes[] = {1, 3, 4, 9, 1};
    float *x = random_audio((size_t)9 * L);
    float *e_ref = malloc(sizeof(float) * 9 * D), *s_ref = malloc(sizeof(float) * 9 * T);
    float *e = malloc(sizeof(float) * 9 * D), *s = malloc(sizeof(float) * 9 * T);
    reference(m, x, 9, e_ref, s_ref);
    clmr_infer_params_t p = clmr_infer_default_params();
    p.max_batch = max_batch;
    p.threads = 2;
    clmr_infer_t *ctx = NULL;
    char *msg = NULL;
    int err = clmr_infer_open(&ctx, m, &p, &msg);
    CHECKF(err == 0, "open: %s", msg ? msg : "");
    free(msg);
    for (size_t k = 0; ctx && k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        int n = sizes[k];
        memset(e, 0xff, sizeof(float) * 9 * D); /* NaN: unwritten outputs fail */
        memset(s, 0xff, sizeof(float) * 9 * T);
        CHECK(clmr_infer_run(ctx, x, n, e, s) == 0);
        double de = t_max_rel_diff(e, e_ref, (size_t)n * D);
        double ds = t_max_rel_diff(s, s_ref, (size_t)n * T);
        CHECKF(de <= TOL, "n=%d embedding max rel diff %g", n, de);
        CHECKF(ds <= TOL, "n=%d score max rel diff %g", n, ds);
        /* The net does something: embeddings are not all zero. */
        double mag = 0;
        for (int i = 0; i < n * D; i++) mag += fabs(e[i]);
        CHECK(mag > 0);
    }
    /* Outputs are optional. */
    if (ctx) CHECK(clmr_infer_run(ctx, x, 2, NULL, s) == 0);
    if (ctx) CHECK(t_max_rel_diff(s, s_ref, 2 * (size_t)T) <= TOL);
    if (ctx) CHECK(clmr_infer_run(ctx, x, 0, e, s) == CLMR_EINVAL);
    clmr_infer_close(&ctx);
    CHECK(ctx == NULL);
    clmr_infer_close(&ctx); /* NULL is accepted */
    clmr_model_close(&m);
    free(x), free(e_ref), free(s_ref), free(e), free(s);
}

/* Another depth and uneven widths (widths not multiples of oneDNN's 16-channel blocks). */
static void test_other_depth(void)
{
    const int widths[6] = {1, 5, 12, 7, 19, 24};
    clmr_model_t *m = random_model(5, widths, 3);
    CHECK(m != NULL);
    if (!m) return;
    const int L = m->cfg.chunk_samples, D = m->cfg.embed_dim, n = 5;
    CHECK(L == 81);
    float *x = random_audio((size_t)n * L);
    float e_ref[5 * 24], s_ref[5 * 3], e[5 * 24], s[5 * 3];
    reference(m, x, n, e_ref, s_ref);
    clmr_infer_params_t p = {.max_batch = 2, .threads = 1};
    clmr_infer_t *ctx = NULL;
    CHECK(clmr_infer_open(&ctx, m, &p, NULL) == 0);
    if (ctx) {
        CHECK(clmr_infer_run(ctx, x, n, e, s) == 0);
        CHECKF(t_max_rel_diff(e, e_ref, (size_t)n * D) <= TOL, "emb %g",
               t_max_rel_diff(e, e_ref, (size_t)n * D));
        CHECK(t_max_rel_diff(s, s_ref, (size_t)n * 3) <= TOL);
    }
    clmr_infer_close(&ctx);
    clmr_model_close(&m);
    free(x);
}

typedef struct {
    const clmr_model_t *m;
    const float *x;
    int n;
    float *emb, *scores;
    int err;
} thread_job_t;

static void *thread_main(void *arg)
{
    thread_job_t *j = arg;
    clmr_infer_params_t p = {.max_batch = 3, .threads = 1};
    clmr_infer_t *ctx = NULL;
    j->err = clmr_infer_open(&ctx, j->m, &p, NULL);
    for (int rep = 0; rep < 3 && !j->err; rep++) j->err = clmr_infer_run(ctx, j->x, j->n, j->emb, j->scores);
    clmr_infer_close(&ctx);
    return NULL;
}

/* Two threads sharing one model, each with its own context, match a single thread bit for bit. */
static void test_threads_share_model(void)
{
    const int T = 5, n = 4;
    clmr_model_t *m = random_model(11, small_widths, T);
    CHECK(m != NULL);
    if (!m) return;
    const int L = m->cfg.chunk_samples, D = m->cfg.embed_dim;
    float *x = random_audio((size_t)n * L);
    thread_job_t single = {m, x, n, malloc(sizeof(float) * n * D), malloc(sizeof(float) * n * T), 0};
    thread_main(&single);
    CHECK(single.err == 0);
    thread_job_t jobs[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (thread_job_t){m, x, n, malloc(sizeof(float) * n * D),
                                 malloc(sizeof(float) * n * T), 0};
        CHECK(pthread_create(&th[i], NULL, thread_main, &jobs[i]) == 0);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].err == 0);
        CHECK(memcmp(jobs[i].emb, single.emb, sizeof(float) * n * D) == 0);
        CHECK(memcmp(jobs[i].scores, single.scores, sizeof(float) * n * T) == 0);
        free(jobs[i].emb), free(jobs[i].scores);
    }
    free(single.emb), free(single.scores), free(x);
    clmr_model_close(&m);
}

/* Track analysis against a hand computation from clmr_infer_run outputs. */
static void check_track(clmr_infer_t *ctx, const clmr_model_t *m, const float *x, size_t ns)
{
    const int L = m->cfg.chunk_samples, D = m->cfg.embed_dim, T = m->cfg.n_tags;
    int nc = ns < (size_t)L ? 1 : (int)(ns / L);
    float *chunks = calloc((size_t)nc * L, sizeof(float)); /* zero padding for a short track */
    memcpy(chunks, x, sizeof(float) * (ns < (size_t)nc * L ? ns : (size_t)nc * L));
    float *e = malloc(sizeof(float) * nc * D), *s = T ? malloc(sizeof(float) * nc * T) : NULL;
    CHECK(clmr_infer_run(ctx, chunks, nc, e, s) == 0);
    clmr_track_t tr;
    int err = clmr_track_analyze(&tr, ctx, x, ns);
    CHECKF(err == 0, "err %d", err);
    if (err) goto out;
    CHECK(tr.n_chunks == nc && tr.embed_dim == D && tr.n_tags == T);
    CHECK(t_max_rel_diff(tr.chunk_emb, e, (size_t)nc * D) <= 1e-6);
    double norm = 0, mean[64];
    for (int d = 0; d < D; d++) {
        mean[d] = 0;
        for (int c = 0; c < nc; c++) mean[d] += e[c * D + d];
        mean[d] /= nc;
        norm += mean[d] * mean[d];
    }
    norm = sqrt(norm);
    double unit = 0;
    for (int d = 0; d < D; d++) {
        CHECK_NEAR(tr.emb[d], mean[d] / norm, 1e-6);
        unit += (double)tr.emb[d] * tr.emb[d];
    }
    CHECK_NEAR(unit, 1.0, 1e-5);
    if (T == 0) {
        CHECK(tr.scores == NULL && tr.chunk_scores == NULL);
    } else {
        CHECK(t_max_rel_diff(tr.chunk_scores, s, (size_t)nc * T) <= 1e-6);
        for (int t = 0; t < T; t++) {
            double ms = 0;
            for (int c = 0; c < nc; c++) ms += s[c * T + t];
            CHECK_NEAR(tr.scores[t], ms / nc, 1e-6);
        }
    }
    clmr_track_free(&tr);
    CHECK(tr.emb == NULL && tr.n_chunks == 0);
out:
    free(chunks), free(e), free(s);
}

static void test_track(void)
{
    for (int T = 0; T <= 4; T += 4) { /* T == 0: encoder-only model */
        clmr_model_t *m = random_model(11, small_widths, T);
        CHECK(m != NULL);
        if (!m) return;
        CHECK(clmr_model_n_tags(m) == T);
        const size_t L = (size_t)m->cfg.chunk_samples;
        float *x = random_audio(3 * L + 100);
        clmr_infer_params_t p = {.max_batch = 2, .threads = 2};
        clmr_infer_t *ctx = NULL;
        CHECK(clmr_infer_open(&ctx, m, &p, NULL) == 0);
        if (ctx) {
            check_track(ctx, m, x, 3 * L + 100); /* tail of 100 samples dropped, 2 batches */
            check_track(ctx, m, x, 2 * L);       /* exact multiple */
            check_track(ctx, m, x, L / 3);       /* short: zero-padded to one chunk */
            check_track(ctx, m, x, 1);
            /* The dropped tail really is ignored. */
            clmr_track_t a, b;
            x[3 * L + 50] = 123.0f;
            CHECK(clmr_track_analyze(&a, ctx, x, 3 * L + 100) == 0);
            CHECK(clmr_track_analyze(&b, ctx, x, 3 * L) == 0);
            CHECK(a.n_chunks == 3 && b.n_chunks == 3);
            CHECK(memcmp(a.emb, b.emb, sizeof(float) * a.embed_dim) == 0);
            clmr_track_free(&a), clmr_track_free(&b);
            clmr_track_t z;
            CHECK(clmr_track_analyze(&z, ctx, x, 0) == CLMR_EINVAL);
            CHECK(z.emb == NULL);
        }
        clmr_infer_close(&ctx);
        clmr_model_close(&m);
        free(x);
    }
}

int main(void)
{
    RUN_TEST(test_matches_reference);
    RUN_TEST(test_other_depth);
    RUN_TEST(test_threads_share_model);
    RUN_TEST(test_track);
    return TEST_END();
}
