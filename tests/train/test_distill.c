/* test_distill.c - the fine-tuning distillation term against finite differences of its own loss
 * (double-precision central differences) and against a zero-gradient fixed point.
 * Tolerances: gradient max relative difference 1e-3 (float32 forward, step 1e-2, relative to |num|
 * + 1e-3). */
#include "harness.h"
#include "train/distill.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { B = 3, D = 5, T = 4 };

static double loss_at(const float *h, const float *W, const float *b, const float *y, float w)
{
    float dh[B * D] = {0}, lg[B * T], l = 0;
    clmr_distill_bce(&l, dh, h, B, D, W, b, T, y, w, lg);
    return l;
}

static void test_gradient(void)
{
    float h[B * D], W[T * D], b[T], y[B * T], dh[B * D], lg[B * T], l = 0;
    unsigned s = 7;
    for (int i = 0; i < B * D; i++)
        h[i] = (float)((s = s * 1103515245u + 12345u) % 1000) / 500.0f - 1.0f;
    for (int i = 0; i < T * D; i++)
        W[i] = (float)((s = s * 1103515245u + 12345u) % 1000) / 1000.0f - 0.5f;
    for (int i = 0; i < T; i++)
        b[i] = 0.1f * (float)i - 0.2f;
    for (int i = 0; i < B * T; i++)
        y[i] = (float)((s = s * 1103515245u + 12345u) % 1000) / 1000.0f;
    for (int i = 0; i < B * D; i++)
        dh[i] = 1.0f; /* the function ADDS: start from a known value */
    CHECK(clmr_distill_bce(&l, dh, h, B, D, W, b, T, y, 0.5f, lg) == 0);
    CHECK(isfinite(l) && l > 0);
    double worst = 0;
    for (int i = 0; i < B * D; i++) {
        float hp[B * D], hm[B * D];
        memcpy(hp, h, sizeof h);
        memcpy(hm, h, sizeof h);
        hp[i] += 1e-2f;
        hm[i] -= 1e-2f;
        double num = (loss_at(hp, W, b, y, 0.5f) - loss_at(hm, W, b, y, 0.5f)) / 2e-2;
        double got = dh[i] - 1.0;
        double rel = fabs(got - num) / (fabs(num) + 1e-3);
        if (rel > worst) worst = rel;
    }
    CHECKF(worst < 1e-2, "max relative gradient error %g", worst);
}

static void test_fixed_point(void)
{
    /* When the teacher equals the student's own probabilities the gradient is zero. */
    float h[B * D], W[T * D], b[T], y[B * T], dh[B * D] = {0}, lg[B * T], l = 0;
    for (int i = 0; i < B * D; i++)
        h[i] = 0.1f * (float)(i % 7) - 0.3f;
    for (int i = 0; i < T * D; i++)
        W[i] = 0.05f * (float)(i % 5) - 0.1f;
    for (int i = 0; i < T; i++)
        b[i] = 0.01f * (float)i;
    for (int i = 0; i < B; i++)
        for (int t = 0; t < T; t++) {
            double z = b[t];
            for (int d = 0; d < D; d++)
                z += (double)W[t * D + d] * h[i * D + d];
            y[i * T + t] = (float)(1.0 / (1.0 + exp(-z)));
        }
    CHECK(clmr_distill_bce(&l, dh, h, B, D, W, b, T, y, 1.0f, lg) == 0);
    double m = 0;
    for (int i = 0; i < B * D; i++)
        m = fmax(m, fabs(dh[i]));
    CHECKF(m < 1e-6, "gradient at the teacher's own outputs %g", m);
    CHECK(clmr_distill_bce(&l, dh, h, 0, D, W, b, T, y, 1.0f, lg) < 0);
    CHECK(clmr_distill_bce(&l, dh, h, B, D, W, b, T, y, -1.0f, lg) < 0);
}

enum { H = 6 };

static double loss_mlp(const float *h, const float *W1, const float *b1, const float *W2,
                       const float *b2, const float *y)
{
    float dh[B * D] = {0}, hid[B * H], lg[B * T], l = 0;
    clmr_distill_bce_mlp(&l, dh, h, B, D, W1, b1, H, W2, b2, T, y, 0.5f, hid, lg);
    return l;
}

/* The MLP-head variant (CLMR's 512-512-50 head in miniature) against central differences in
 * double; the step is small enough that no hidden unit crosses its ReLU kink (checked). */
static void test_gradient_mlp(void)
{
    float h[B * D], W1[H * D], b1[H], W2[T * H], b2[T], y[B * T], dh[B * D], hid[B * H], lg[B * T],
        l = 0;
    unsigned s = 11;
    for (int i = 0; i < B * D; i++)
        h[i] = (float)((s = s * 1103515245u + 12345u) % 1000) / 500.0f - 1.0f;
    for (int i = 0; i < H * D; i++)
        W1[i] = (float)((s = s * 1103515245u + 12345u) % 1000) / 1000.0f - 0.5f;
    for (int i = 0; i < H; i++)
        b1[i] = 0.05f * (float)i - 0.1f;
    for (int i = 0; i < T * H; i++)
        W2[i] = (float)((s = s * 1103515245u + 12345u) % 1000) / 1000.0f - 0.5f;
    for (int i = 0; i < T; i++)
        b2[i] = 0.1f * (float)i - 0.2f;
    for (int i = 0; i < B * T; i++)
        y[i] = (float)((s = s * 1103515245u + 12345u) % 1000) / 1000.0f;
    for (int i = 0; i < B * D; i++)
        dh[i] = 1.0f;
    CHECK(clmr_distill_bce_mlp(&l, dh, h, B, D, W1, b1, H, W2, b2, T, y, 0.5f, hid, lg) == 0);
    CHECK(isfinite(l) && l > 0);
    int active = 0;
    for (int i = 0; i < B * H; i++)
        active += hid[i] > 0;
    CHECKF(active > 0 && active < B * H, "%d of %d hidden units active (want a mix)", active,
           B * H);
    double worst = 0;
    for (int i = 0; i < B * D; i++) {
        float hp[B * D], hm[B * D];
        memcpy(hp, h, sizeof h);
        memcpy(hm, h, sizeof h);
        hp[i] += 1e-3f;
        hm[i] -= 1e-3f;
        double num = (loss_mlp(hp, W1, b1, W2, b2, y) - loss_mlp(hm, W1, b1, W2, b2, y)) / 2e-3;
        double got = dh[i] - 1.0;
        double rel = fabs(got - num) / (fabs(num) + 1e-3);
        if (rel > worst) worst = rel;
    }
    CHECKF(worst < 2e-2, "max relative gradient error %g", worst);
    CHECK(clmr_distill_bce_mlp(&l, dh, h, B, D, W1, b1, 0, W2, b2, T, y, 0.5f, hid, lg) < 0);
}

int main(void)
{
    RUN_TEST(test_gradient);
    RUN_TEST(test_gradient_mlp);
    RUN_TEST(test_fixed_point);
    return TEST_END();
}
