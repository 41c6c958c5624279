/* test_ref_backward.c - finite-difference checks of every naive layer backward, NT-Xent and BCE.
 *
 * DESIGN: each check evaluates a scalar objective L = sum_j r_j out_j (r fixed pseudo-random, so
 * every output matters with a different weight) in double from the float forward, and compares
 * the analytic gradient (backward with dout = r) with central differences
 * (L(x + h) - L(x - h)) / 2h, h = 1e-3, for every input/parameter element. Tolerance: the worst
 * |fd - analytic| must stay below 5e-3 x the largest |analytic| of that tensor (float rounding of
 * the forward outputs, divided by 2h, is ~1e-4 of the gradient scale at these sizes; the
 * O(h^2) truncation error is far smaller). Inputs are drawn away from ReLU/max-pool kinks where
 * a kink could be crossed (see each test).
 */
#include "harness.h"

#include "clmr/error.h"
#include "nn/ref_ops.h"
#include "train/ntxent.h"
#include "train/ref_backward.h"

#include <stdint.h>
#include <string.h>

#define FD_H 1e-3
#define FD_TOL 5e-3

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float frand(void) /* uniform [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void fill(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand() * scale;
}

typedef double (*objective_fn)(void *ctx);

/* Compares analytic (n) with central differences of L over the elements of x (n), perturbed in
 * place and restored. Returns the worst error relative to max |analytic|. */
static double fd_check(const char *what, float *x, size_t n, const float *analytic, objective_fn L,
                       void *ctx)
{
    double amax = 0, worst = 0;
    for (size_t i = 0; i < n; i++)
        amax = fmax(amax, fabs(analytic[i]));
    for (size_t i = 0; i < n; i++) {
        float keep = x[i];
        x[i] = (float)(keep + FD_H);
        double hp = (double)x[i] - keep; /* the step actually taken in float */
        double lp = L(ctx);
        x[i] = (float)(keep - FD_H);
        double hm = keep - (double)x[i];
        double lm = L(ctx);
        x[i] = keep;
        double fd = (lp - lm) / (hp + hm);
        double err = fabs(fd - analytic[i]);
        if (err > worst) worst = err;
    }
    double rel = worst / fmax(amax, 1e-12);
    CHECKF(rel <= FD_TOL && amax > 0, "%s: worst |fd - analytic| = %g, max |analytic| = %g", what,
           worst, amax);
    return rel;
}

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* ---- conv1d ---- */
typedef struct {
    int B, IC, IL, OC, K, stride, pad, OL;
    float *x, *w, *b, *out, *r;
} conv_ctx;

static double conv_L(void *p)
{
    conv_ctx *c = p;
    clmr_ref_conv1d(c->out, c->x, c->w, c->b, c->B, c->IC, c->IL, c->OC, c->K, c->stride, c->pad);
    return dot_d(c->out, c->r, (size_t)c->B * c->OC * c->OL);
}

static void conv_case(int B, int IC, int IL, int OC, int K, int stride, int pad)
{
    conv_ctx c = {B, IC, IL, OC, K, stride, pad, (IL + 2 * pad - K) / stride + 1, 0, 0, 0, 0, 0};
    size_t nx = (size_t)B * IC * IL, nw = (size_t)OC * IC * K, no = (size_t)B * OC * c.OL;
    c.x = malloc(sizeof(float) * nx), c.w = malloc(sizeof(float) * nw);
    c.b = malloc(sizeof(float) * OC), c.out = malloc(sizeof(float) * no);
    c.r = malloc(sizeof(float) * no);
    float *dx = malloc(sizeof(float) * nx), *dw = calloc(nw, sizeof(float));
    float *db = calloc((size_t)OC, sizeof(float));
    fill(c.x, nx, 1), fill(c.w, nw, 0.5f), fill(c.b, (size_t)OC, 0.5f), fill(c.r, no, 1);
    memset(dx, 0x7f, sizeof(float) * nx); /* garbage: dinp must be overwritten, not added to */
    clmr_ref_conv1d_backward(dx, dw, db, c.r, c.x, c.w, B, IC, IL, OC, K, stride, pad);
    char what[96];
    snprintf(what, sizeof what, "conv k%d s%d p%d dinp", K, stride, pad);
    fd_check(what, c.x, nx, dx, conv_L, &c);
    snprintf(what, sizeof what, "conv k%d s%d p%d dw", K, stride, pad);
    fd_check(what, c.w, nw, dw, conv_L, &c);
    snprintf(what, sizeof what, "conv k%d s%d p%d db", K, stride, pad);
    fd_check(what, c.b, (size_t)OC, db, conv_L, &c);
    /* parameter gradients accumulate: a second call doubles them */
    float dw0 = dw[1];
    clmr_ref_conv1d_backward(NULL, dw, NULL, c.r, c.x, c.w, B, IC, IL, OC, K, stride, pad);
    CHECK_NEAR(dw[1], 2 * dw0, 1e-5 * fabs(dw0) + 1e-7);
    free(c.x), free(c.w), free(c.b), free(c.out), free(c.r), free(dx), free(dw), free(db);
}

static void test_conv1d_backward(void)
{
    conv_case(2, 1, 27, 3, 3, 3, 0); /* SampleCNN layer 0 */
    conv_case(2, 3, 9, 4, 3, 1, 1);  /* SampleCNN blocks */
    conv_case(3, 2, 11, 3, 4, 2, 2); /* general: even kernel, stride 2, wide padding, tail */
}

/* ---- batchnorm (training mode) ---- */
typedef struct {
    int B, C, L;
    float *x, *gamma, *beta, *out, *r, *mean, *rstd;
} bn_ctx;

static double bn_L(void *p)
{
    bn_ctx *c = p;
    int err = clmr_ref_batchnorm_train_forward(c->out, c->mean, c->rstd, NULL, NULL, c->x, c->gamma,
                                               c->beta, 0.1f, c->B, c->C, c->L);
    CHECK(err == 0);
    return dot_d(c->out, c->r, (size_t)c->B * c->C * c->L);
}

static void test_batchnorm_train(void)
{
    bn_ctx c = {3, 4, 5, 0, 0, 0, 0, 0, 0, 0};
    size_t n = (size_t)c.B * c.C * c.L;
    c.x = malloc(sizeof(float) * n), c.out = malloc(sizeof(float) * n);
    c.r = malloc(sizeof(float) * n), c.gamma = malloc(sizeof(float) * c.C);
    c.beta = malloc(sizeof(float) * c.C), c.mean = malloc(sizeof(float) * c.C);
    c.rstd = malloc(sizeof(float) * c.C);
    float *dx = malloc(sizeof(float) * n), *dg = calloc((size_t)c.C, sizeof(float));
    float *dbeta = calloc((size_t)c.C, sizeof(float));
    float rm[4], rv[4];
    fill(c.x, n, 2), fill(c.r, n, 1), fill(c.gamma, (size_t)c.C, 1), fill(c.beta, (size_t)c.C, 1);
    for (int i = 0; i < c.C; i++)
        rm[i] = 0.25f * i, rv[i] = 1.0f + i;
    CHECK(clmr_ref_batchnorm_train_forward(c.out, c.mean, c.rstd, rm, rv, c.x, c.gamma, c.beta,
                                           0.1f, c.B, c.C, c.L) == 0);
    /* statistics and running updates recomputed here from their definitions */
    for (int ch = 0; ch < c.C; ch++) {
        double s = 0, s2 = 0, m = c.B * c.L;
        for (int b = 0; b < c.B; b++)
            for (int l = 0; l < c.L; l++)
                s += c.x[((size_t)b * c.C + ch) * c.L + l];
        double mu = s / m;
        for (int b = 0; b < c.B; b++)
            for (int l = 0; l < c.L; l++) {
                double d = c.x[((size_t)b * c.C + ch) * c.L + l] - mu;
                s2 += d * d;
            }
        CHECK_NEAR(c.mean[ch], mu, 1e-6);
        CHECK_NEAR(c.rstd[ch], 1.0 / sqrt(s2 / m + 1e-5), 1e-5 / sqrt(s2 / m + 1e-5));
        CHECK_NEAR(rm[ch], 0.9 * 0.25 * ch + 0.1 * mu, 1e-6);
        CHECK_NEAR(rv[ch], 0.9 * (1.0 + ch) + 0.1 * s2 / (m - 1), 1e-5); /* unbiased */
        /* normalised output has the batch mean beta and biased std |gamma| (up to eps) */
        double om = 0;
        for (int b = 0; b < c.B; b++)
            for (int l = 0; l < c.L; l++)
                om += c.out[((size_t)b * c.C + ch) * c.L + l];
        CHECK_NEAR(om / m, c.beta[ch], 1e-5);
    }
    memset(dx, 0x7f, sizeof(float) * n);
    clmr_ref_batchnorm_backward(dx, dg, dbeta, c.r, c.x, c.mean, c.rstd, c.gamma, c.B, c.C, c.L);
    fd_check("bn dinp", c.x, n, dx, bn_L, &c);
    fd_check("bn dgamma", c.gamma, (size_t)c.C, dg, bn_L, &c);
    fd_check("bn dbeta", c.beta, (size_t)c.C, dbeta, bn_L, &c);
    /* in place (dinp == dout) gives the same result */
    float *dd = malloc(sizeof(float) * n);
    memcpy(dd, c.r, sizeof(float) * n);
    clmr_ref_batchnorm_backward(dd, NULL, NULL, dd, c.x, c.mean, c.rstd, c.gamma, c.B, c.C, c.L);
    CHECK(memcmp(dd, dx, sizeof(float) * n) == 0);
    /* a single value per channel has no variance: refused like PyTorch */
    CHECK(clmr_ref_batchnorm_train_forward(c.out, c.mean, c.rstd, NULL, NULL, c.x, c.gamma, c.beta,
                                           0.1f, 1, c.C, 1) == CLMR_EINVAL);
    free(c.x), free(c.out), free(c.r), free(c.gamma), free(c.beta), free(c.mean), free(c.rstd);
    free(dx), free(dg), free(dbeta), free(dd);
}

/* ---- relu + maxpool ---- */
typedef struct {
    int B, C, L, P;
    float *x, *act, *out, *r;
} pool_ctx;

static double pool_L(void *p)
{
    pool_ctx *c = p;
    size_t n = (size_t)c->B * c->C * c->L;
    clmr_ref_relu(c->act, c->x, n);
    clmr_ref_maxpool1d(c->out, c->act, c->B, c->C, c->L, c->P);
    return dot_d(c->out, c->r, (size_t)c->B * c->C * (c->L / c->P));
}

static void test_relu_maxpool_backward(void)
{
    pool_ctx c = {2, 3, 14, 3, 0, 0, 0, 0}; /* 14 = 4 windows + a dropped tail of 2 */
    size_t n = (size_t)c.B * c.C * c.L, no = (size_t)c.B * c.C * (c.L / c.P);
    c.x = malloc(sizeof(float) * n), c.act = malloc(sizeof(float) * n);
    c.out = malloc(sizeof(float) * no), c.r = malloc(sizeof(float) * no);
    float *dact = malloc(sizeof(float) * n), *dx = malloc(sizeof(float) * n);
    /* distinct values at least 0.02 apart and 0.01 away from 0, so +-h crosses no kink */
    for (size_t i = 0; i < n; i++) {
        size_t k = (i * 37) % n;
        c.x[i] = (float)(((double)k - n / 2.0) * 0.02 + 0.01);
    }
    fill(c.r, no, 1);
    pool_L(&c);
    clmr_ref_maxpool1d_backward(dact, c.r, c.act, c.B, c.C, c.L, c.P);
    clmr_ref_relu_backward(dx, dact, c.act, n);
    fd_check("relu+maxpool dinp", c.x, n, dx, pool_L, &c);
    for (size_t i = 0; i < (size_t)c.B * c.C; i++) /* the dropped tail gets no gradient */
        CHECK(dact[i * c.L + 12] == 0 && dact[i * c.L + 13] == 0);
    /* ties go to the first maximum, as PyTorch */
    float tie[6] = {1, 3, 3, 2, 2, 2}, g[2] = {5, 7}, d[6];
    clmr_ref_maxpool1d_backward(d, g, tie, 1, 1, 6, 3);
    CHECK(d[0] == 0 && d[1] == 5 && d[2] == 0 && d[3] == 7 && d[4] == 0 && d[5] == 0);
    /* ReLU passes the gradient only where the output is positive (0 at 0, as PyTorch) */
    float ro[3] = {0, 2, 0}, rg[3] = {1, 1, 1}, rd[3];
    clmr_ref_relu_backward(rd, rg, ro, 3);
    CHECK(rd[0] == 0 && rd[1] == 1 && rd[2] == 0);
    free(c.x), free(c.act), free(c.out), free(c.r), free(dact), free(dx);
}

/* ---- linear ---- */
typedef struct {
    int B, D, T;
    float *x, *w, *b, *out, *r;
} lin_ctx;

static double lin_L(void *p)
{
    lin_ctx *c = p;
    clmr_ref_linear(c->out, c->x, c->w, c->b, c->B, c->D, c->T);
    return dot_d(c->out, c->r, (size_t)c->B * c->T);
}

static void lin_case(int with_bias)
{
    lin_ctx c = {3, 5, 4, 0, 0, 0, 0, 0};
    size_t nx = 15, nw = 20, no = 12;
    float x[15], w[20], b[4], out[12], r[12], dx[15], dw[20] = {0}, db[4] = {0};
    c.x = x, c.w = w, c.b = with_bias ? b : NULL, c.out = out, c.r = r;
    fill(x, nx, 1), fill(w, nw, 1), fill(b, 4, 1), fill(r, no, 1);
    clmr_ref_linear_backward(dx, dw, with_bias ? db : NULL, r, x, w, c.B, c.D, c.T);
    fd_check(with_bias ? "linear dinp" : "linear(no bias) dinp", x, nx, dx, lin_L, &c);
    fd_check(with_bias ? "linear dw" : "linear(no bias) dw", w, nw, dw, lin_L, &c);
    if (with_bias) fd_check("linear db", b, 4, db, lin_L, &c);
}

static void test_linear_backward(void)
{
    lin_case(1);
    lin_case(0);
}

/* ---- losses ---- */
typedef struct {
    int V, D;
    float tau;
    float *z, *ws;
} nt_ctx;

static double nt_L(void *p)
{
    nt_ctx *c = p;
    float loss = 0;
    CHECK(clmr_ntxent_forward(&loss, c->ws, c->z, c->V, c->D, c->tau) == 0);
    return loss;
}

static void test_ntxent(void)
{
    for (int tcase = 0; tcase < 2; tcase++) {
        nt_ctx c = {tcase ? 6 : 4, tcase ? 3 : 5, tcase ? 0.2f : 0.5f, 0, 0};
        size_t n = (size_t)c.V * c.D;
        c.z = malloc(sizeof(float) * n);
        c.ws = malloc(sizeof(float) * clmr_ntxent_workspace_floats(c.V, c.D));
        float *dz = malloc(sizeof(float) * n);
        fill(c.z, n, 2);
        nt_L(&c);
        clmr_ntxent_backward(dz, c.ws, 1.0f, c.V, c.D, c.tau);
        fd_check(tcase ? "ntxent V6 D3 tau0.2 dz" : "ntxent V4 D5 tau0.5 dz", c.z, n, dz, nt_L, &c);
        /* scale invariance of the cosine: dz is orthogonal to z row by row */
        for (int i = 0; i < c.V; i++) {
            double d = 0, nz = 0, ng = 0;
            for (int k = 0; k < c.D; k++) {
                d += (double)dz[i * c.D + k] * c.z[i * c.D + k];
                nz += (double)c.z[i * c.D + k] * c.z[i * c.D + k];
                ng += (double)dz[i * c.D + k] * dz[i * c.D + k];
            }
            CHECK(fabs(d) <= 1e-5 * sqrt(nz * ng) + 1e-9);
        }
        free(c.z), free(c.ws), free(dz);
    }
    /* Positives aligned, everything else orthogonal: each row has one logit 1/tau and 2N - 2
     * logits 0, so loss = log(exp(1/tau) + 2N - 2) - 1/tau. Vectors scaled to show the cosine. */
    float z[4 * 2] = {3, 0, 0, 2, 0.5f, 0, 0, 7}, ws[64], loss = 0;
    CHECK(clmr_ntxent_forward(&loss, ws, z, 4, 2, 0.5f) == 0);
    /* views 0,2 = e0 and views 1,3 = e1: negatives of row 0 are rows 1 (cos 0) and 3 (cos 0) */
    CHECK_NEAR(loss, log(exp(2.0) + 2.0) - 2.0, 1e-6);
    CHECK(clmr_ntxent_forward(&loss, ws, z, 3, 2, 0.5f) == CLMR_EINVAL);
    CHECK(clmr_ntxent_forward(&loss, ws, z, 4, 2, 0.0f) == CLMR_EINVAL);
    /* a zero row gives a finite loss and gradient (norm floor) */
    float z0[8] = {0, 0, 1, 2, 3, 1, 1, 1}, dz0[8];
    CHECK(clmr_ntxent_forward(&loss, ws, z0, 4, 2, 0.5f) == 0 && isfinite(loss));
    clmr_ntxent_backward(dz0, ws, 1.0f, 4, 2, 0.5f);
    for (int i = 0; i < 8; i++)
        CHECK(isfinite(dz0[i]));
}

typedef struct {
    float *x, *y;
    size_t n;
} bce_ctx;

static double bce_L(void *p)
{
    bce_ctx *c = p;
    return clmr_ref_bce_logits(NULL, c->x, c->y, c->n);
}

static void test_bce(void)
{
    float x[12], y[12], dx[12];
    fill(x, 12, 4);
    for (int i = 0; i < 12; i++)
        y[i] = (i % 3 == 0) ? 1.0f : (i % 3 == 1 ? 0.0f : 0.25f);
    bce_ctx c = {x, y, 12};
    double l = clmr_ref_bce_logits(dx, x, y, 12);
    fd_check("bce dlogits", x, 12, dx, bce_L, &c);
    /* against the textbook -[y log s + (1 - y) log(1 - s)], fine at moderate logits */
    double want = 0;
    for (int i = 0; i < 12; i++) {
        double s = 1 / (1 + exp(-(double)x[i]));
        want -= y[i] * log(s) + (1 - y[i]) * log(1 - s);
    }
    CHECK_NEAR(l, want / 12, 1e-9);
    /* stable at huge logits where the textbook form overflows */
    float bx[2] = {200, -200}, by[2] = {0, 1}, bd[2];
    double big = clmr_ref_bce_logits(bd, bx, by, 2);
    CHECK_NEAR(big, 200.0, 1e-9);
    CHECK_NEAR(bd[0], 0.5, 1e-7);
    CHECK_NEAR(bd[1], -0.5, 1e-7);
}

int main(void)
{
    RUN_TEST(test_conv1d_backward);
    RUN_TEST(test_batchnorm_train);
    RUN_TEST(test_relu_maxpool_backward);
    RUN_TEST(test_linear_backward);
    RUN_TEST(test_ntxent);
    RUN_TEST(test_bce);
    return TEST_END();
}
