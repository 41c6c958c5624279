/* test_head_fit.c - the linear-evaluation loop: one full-batch epoch equals one Adam step computed
 * here from a naive double-precision BCE gradient; separable data is learnt; the split is by
 * file; early stopping keeps the best epoch; a seed fixes the result; a built head model saves
 * and loads with the parent's encoder. */
#include "clmr/error.h"
#include "harness.h"
#include "nn/model_internal.h"
#include "train/head_fit.h"

#include <string.h>
#include <unistd.h>

enum { D = 6, T = 3, F = 40 };

static uint64_t rng = 1234567;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

/* F files of 1..3 chunks; tag t is on when feature t of the file's centre is positive, so the
 * tags are linearly separable up to the chunk noise. */
static float data[F * 3 * D];
static const float *emb[F];
static int nch[F];
static uint8_t y[F * T];

static void make_data(double noise)
{
    float *p = data;
    for (int f = 0; f < F; f++) {
        double c[D];
        for (int d = 0; d < D; d++)
            c[d] = 2 * urand() - 1;
        for (int t = 0; t < T; t++)
            y[f * T + t] = c[t] > 0;
        nch[f] = 1 + f % 3;
        emb[f] = p;
        for (int k = 0; k < nch[f]; k++)
            for (int d = 0; d < D; d++)
                *p++ = (float)(c[d] + noise * (2 * urand() - 1));
    }
}

static void test_one_epoch_is_one_adam_step(void)
{
    make_data(0.1);
    float init[T * D + T], w[T * D], b[T];
    for (int i = 0; i < T * D + T; i++)
        init[i] = (float)(0.5 * (2 * urand() - 1));
    clmr_head_fit_params_t p = clmr_head_fit_default_params();
    p.epochs = 1, p.batch = 1000, p.val_fraction = 0, p.init = init, p.lr = 1e-2;
    clmr_head_fit_result_t r;
    CHECK(clmr_head_fit(w, b, &r, emb, nch, F, D, y, T, &p, NULL, NULL, NULL) == 0);
    /* naive gradient of mean BCE over all chunks x tags, in double */
    double g[T * D + T] = {0};
    int n = 0;
    for (int f = 0; f < F; f++)
        n += nch[f];
    for (int f = 0; f < F; f++)
        for (int k = 0; k < nch[f]; k++) {
            const float *h = emb[f] + k * D;
            for (int t = 0; t < T; t++) {
                double z = init[T * D + t];
                for (int d = 0; d < D; d++)
                    z += (double)init[t * D + d] * h[d];
                double dz = (1 / (1 + exp(-z)) - y[f * T + t]) / ((double)n * T);
                for (int d = 0; d < D; d++)
                    g[t * D + d] += dz * h[d];
                g[T * D + t] += dz;
            }
        }
    /* Adam's first step: m_hat = g, v_hat = g^2, so the update is lr * g / (|g| + eps). */
    double worst = 0;
    for (int i = 0; i < T * D + T; i++) {
        double want = init[i] - p.lr * g[i] / (fabs(g[i]) + 1e-8);
        double got = i < T * D ? w[i] : b[i - T * D];
        worst = fmax(worst, fabs(got - want));
    }
    CHECKF(worst < 1e-6, "max |w - expected| = %g (tolerance 1e-6: float params, lr 1e-2)", worst);
    CHECK(r.epochs_run == 1 && r.best_epoch == 1 && isnan(r.best_val_loss));
    CHECK(r.train_files == F && r.val_files == 0 && r.train_chunks == (size_t)n);
}

static int calls;
static void count_cb(void *ud, int epoch, double tl, double vl, int is_best)
{
    (void)ud, (void)tl, (void)vl, (void)is_best;
    calls = epoch;
}

static void test_learns_separable_tags_and_is_seeded(void)
{
    make_data(0.05);
    float w[T * D], b[T], w2[T * D], b2[T];
    clmr_head_fit_params_t p = clmr_head_fit_default_params();
    p.batch = 16, p.epochs = 300, p.lr = 3e-2, p.val_fraction = 0.25, p.patience = 300;
    clmr_head_fit_result_t r, r2;
    CHECK(clmr_head_fit(w, b, &r, emb, nch, F, D, y, T, &p, count_cb, NULL, NULL) == 0);
    CHECK(calls == r.epochs_run && r.epochs_run == 300);
    CHECK(r.val_files == 10 && r.train_files == 30);
    size_t total = 0;
    for (int f = 0; f < F; f++)
        total += (size_t)nch[f];
    CHECK(r.train_chunks + r.val_chunks == total);
    int wrong = 0;
    for (int f = 0; f < F; f++)
        for (int t = 0; t < T; t++) {
            double z = b[t];
            for (int d = 0; d < D; d++)
                z += (double)w[t * D + d] * emb[f][d];
            wrong += (z > 0) != y[f * T + t];
        }
    CHECKF(wrong <= 3, "%d of %d file-tag decisions wrong", wrong, F * T);
    CHECKF(r.best_val_loss < 0.25, "val loss %g", r.best_val_loss);
    CHECK(clmr_head_fit(w2, b2, &r2, emb, nch, F, D, y, T, &p, NULL, NULL, NULL) == 0);
    CHECK(memcmp(w, w2, sizeof(w)) == 0 && memcmp(b, b2, sizeof(b)) == 0);
    p.threads = 2; /* rows and tags are split across threads, never a sum: bit-identical */
    CHECK(clmr_head_fit(w2, b2, &r2, emb, nch, F, D, y, T, &p, NULL, NULL, NULL) == 0);
    CHECK(memcmp(w, w2, sizeof(w)) == 0 && memcmp(b, b2, sizeof(b)) == 0);
    p.threads = 1, p.seed = 7;
    CHECK(clmr_head_fit(w2, b2, &r2, emb, nch, F, D, y, T, &p, NULL, NULL, NULL) == 0);
    CHECK(memcmp(w, w2, sizeof(w)) != 0);
}

static void test_early_stopping_keeps_best(void)
{
    make_data(0.05);
    /* labels unrelated to the features: the validation loss soon rises */
    for (int i = 0; i < F * T; i++)
        y[i] = urand() < 0.5;
    float w[T * D], b[T];
    clmr_head_fit_params_t p = clmr_head_fit_default_params();
    p.batch = 8, p.lr = 5e-2, p.patience = 5, p.val_fraction = 0.3;
    clmr_head_fit_result_t r;
    CHECK(clmr_head_fit(w, b, &r, emb, nch, F, D, y, T, &p, NULL, NULL, NULL) == 0);
    CHECKF(r.epochs_run < 200 && r.epochs_run == r.best_epoch + 5, "ran %d, best %d", r.epochs_run,
           r.best_epoch);
    CHECK(isfinite(r.best_val_loss));
    p.patience = 0;
    CHECK(clmr_head_fit(w, b, &r, emb, nch, F, D, y, T, &p, NULL, NULL, NULL) == CLMR_EINVAL);
}

static void test_head_model_build_and_save(void)
{
    int widths[] = {1, 4, 4, 6};
    clmr_samplecnn_config_t cfg;
    CHECK(clmr_samplecnn_config_init(&cfg, 3, widths, 0) == 0);
    clmr_model_t *parent = NULL, *m = NULL, *back = NULL;
    CHECK(clmr__model_alloc(&parent, &cfg) == 0);
    size_t np = clmr_samplecnn_param_count(&cfg);
    for (size_t i = 0; i < np; i++)
        parent->params[i] = (float)(urand() + 0.1);
    clmr__model_fold_bn(parent);
    CHECK(clmr_model_set_name(parent, "enc") == 0);
    float fw[2 * 6], fb[2] = {0.5f, -0.5f};
    for (int i = 0; i < 12; i++)
        fw[i] = (float)i;
    const char *tags[] = {"low", "high"};
    CHECK(clmr_head_model_build(&m, parent, tags, 2, fw, fb) == 0);
    CHECK(clmr_model_n_tags(m) == 2 && strcmp(clmr_model_tag(m, 1), "high") == 0);
    CHECK(memcmp(m->params, parent->params, np * sizeof(float)) == 0);
    char path[] = "/tmp/clmr-headmodel-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    char *err = NULL;
    CHECK(clmr_model_save(m, path, &err) == 0);
    CHECK(clmr_model_load(&back, path, &err) == 0);
    CHECK(back && memcmp(back->w.fc_w, fw, sizeof(fw)) == 0 && back->w.fc_b[1] == -0.5f);
    CHECK(back && memcmp(back->params, parent->params, np * sizeof(float)) == 0);
    const char *dup[] = {"a", "a"};
    clmr_model_t *bad = NULL;
    CHECK(clmr_head_model_build(&bad, parent, dup, 2, fw, fb) == CLMR_EINVAL && !bad);
    unlink(path);
    free(err);
    clmr_model_close(&back);
    clmr_model_close(&m);
    clmr_model_close(&parent);
}

int main(void)
{
    RUN_TEST(test_one_epoch_is_one_adam_step);
    RUN_TEST(test_learns_separable_tags_and_is_seeded);
    RUN_TEST(test_early_stopping_keeps_best);
    RUN_TEST(test_head_model_build_and_save);
    return TEST_END();
}
