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

int main(void)
{
    RUN_TEST(test_gradient);
    RUN_TEST(test_fixed_point);
    return TEST_END();
}
