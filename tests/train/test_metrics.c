/* test_metrics.c - ROC-AUC and average precision against brute-force twins and exact cases.
 *
 * The twins follow the definitions literally: ROC-AUC as the fraction of (positive, negative)
 * pairs ordered correctly, ties counting 1/2 (O(P N)); AP as the sum over every distinct
 * threshold of (recall gain) x precision, counting the items at or above it (O(n^2)). Tolerance
 * 1e-12: both are double sums over at most a few hundred terms. scikit-learn itself is compared in
 * tests/python/test_fit_eval.py through metrics_check.
 */
#include "clmr/error.h"
#include "harness.h"
#include "train/metrics.h"

#include <stdint.h>
#include <string.h>

static double twin_auc(const double *s, const uint8_t *y, size_t n)
{
    double good = 0, pairs = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            if (y[i] && !y[j]) {
                pairs += 1;
                good += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
            }
    return good / pairs;
}

static double twin_ap(const double *s, const uint8_t *y, size_t n)
{
    double P = 0, ap = 0, prev = 0;
    for (size_t i = 0; i < n; i++)
        P += y[i] != 0;
    /* thresholds: distinct scores, descending */
    double thr = INFINITY;
    for (;;) {
        double next = -INFINITY;
        int found = 0;
        for (size_t i = 0; i < n; i++)
            if (s[i] < thr && (!found || s[i] > next)) next = s[i], found = 1;
        if (!found) break;
        thr = next;
        double tp = 0, k = 0;
        for (size_t i = 0; i < n; i++)
            if (s[i] >= thr) k += 1, tp += y[i] != 0;
        ap += (tp / P - prev) * (tp / k);
        prev = tp / P;
    }
    return ap;
}

static uint64_t rng = 88172645463325252ull;
static double urand(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static void test_exact_cases(void)
{
    double s[4] = {0.9, 0.8, 0.3, 0.1}, v;
    uint8_t y[4] = {1, 1, 0, 0};
    CHECK(clmr_metrics_roc_auc(&v, s, y, 4) == 0 && v == 1.0);
    CHECK(clmr_metrics_average_precision(&v, s, y, 4) == 0 && v == 1.0);
    uint8_t r[4] = {0, 0, 1, 1}; /* reversed: AUC 0; AP = (1/2)(1/3) + (1/2)(2/4) */
    CHECK(clmr_metrics_roc_auc(&v, s, r, 4) == 0 && v == 0.0);
    CHECK(clmr_metrics_average_precision(&v, s, r, 4) == 0);
    CHECK_NEAR(v, 0.5 / 3 + 0.5 * 0.5, 1e-15);
    double same[4] = {0.5, 0.5, 0.5, 0.5}; /* one tie group: AUC 1/2, AP = prevalence */
    CHECK(clmr_metrics_roc_auc(&v, same, y, 4) == 0 && v == 0.5);
    CHECK(clmr_metrics_average_precision(&v, same, y, 4) == 0 && v == 0.5);
    uint8_t none[4] = {0}, all[4] = {1, 1, 1, 1};
    CHECK(clmr_metrics_roc_auc(&v, s, none, 4) == CLMR_EINVAL && isnan(v));
    CHECK(clmr_metrics_roc_auc(&v, s, all, 4) == CLMR_EINVAL);
    CHECK(clmr_metrics_average_precision(&v, s, none, 4) == CLMR_EINVAL);
    CHECK(clmr_metrics_average_precision(&v, s, all, 4) == 0 && v == 1.0);
}

static void test_random_against_twins(void)
{
    enum { N = 300 };
    double s[N], v;
    uint8_t y[N];
    for (int trial = 0; trial < 40; trial++) {
        int levels = trial % 2 ? 4 + trial : 0; /* odd trials: heavy ties */
        for (int i = 0; i < N; i++) {
            y[i] = urand() < 0.1 + 0.02 * trial;
            double x = urand() + (y[i] ? 0.3 : 0.0);
            s[i] = levels ? (double)(int)(x * levels) / levels : x;
        }
        CHECK(clmr_metrics_roc_auc(&v, s, y, N) == 0);
        CHECK_NEAR(v, twin_auc(s, y, N), 1e-12);
        CHECK(clmr_metrics_average_precision(&v, s, y, N) == 0);
        CHECK_NEAR(v, twin_ap(s, y, N), 1e-12);
    }
}

static void test_macro_excludes_single_class_tags(void)
{
    enum { N = 50, T = 3 };
    double s[N * T];
    uint8_t y[N * T];
    for (int i = 0; i < N; i++) {
        for (int t = 0; t < T; t++)
            s[i * T + t] = urand();
        y[i * T + 0] = i % 3 == 0;
        y[i * T + 1] = 0; /* no positives: excluded, AP undefined */
        y[i * T + 2] = 1; /* no negatives: excluded, AP defined (1.0) */
    }
    clmr_metrics_t m;
    CHECK(clmr_metrics_compute(&m, s, y, N, T) == 0);
    CHECK(m.n_included == 1 && m.included[0] && !m.included[1] && !m.included[2]);
    CHECK(m.positives[0] == 17 && m.positives[1] == 0 && m.positives[2] == N);
    double col[N];
    uint8_t lab[N];
    for (int i = 0; i < N; i++)
        col[i] = s[i * T], lab[i] = y[i * T];
    CHECK_NEAR(m.roc_auc, twin_auc(col, lab, N), 1e-12);
    CHECK_NEAR(m.pr_auc, twin_ap(col, lab, N), 1e-12);
    CHECK(isnan(m.tag_roc[1]) && isnan(m.tag_ap[1]) && isnan(m.tag_roc[2]) && m.tag_ap[2] == 1.0);
    clmr_metrics_free(&m);
    clmr_metrics_free(&m); /* zeroed: harmless */
    CHECK(clmr_metrics_compute(&m, s, y, 0, T) == CLMR_EINVAL);
}

int main(void)
{
    RUN_TEST(test_exact_cases);
    RUN_TEST(test_random_against_twins);
    RUN_TEST(test_macro_excludes_single_class_tags);
    return TEST_END();
}
