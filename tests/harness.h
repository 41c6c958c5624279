/* harness.h - a tiny TAP test harness for the C unit tests (meson runs them with protocol 'tap').
 *
 * Usage: static void test_x(void) { CHECK(...); }  int main(void) { RUN_TEST(test_x); return
 * TEST_END(); }. A failed CHECK prints a diagnostic and marks the current case "not ok" but lets
 * the case continue, so one run shows every mismatch.
 */
#ifndef CLMR_TEST_HARNESS_H
#define CLMR_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int t__count, t__failed, t__case_failed;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("# %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                      \
            t__case_failed = 1;                                                                    \
        }                                                                                          \
    } while (0)

#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("# %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);                      \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            t__case_failed = 1;                                                                    \
        }                                                                                          \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double t__a = (double)(a), t__b = (double)(b);                                             \
        if (!(fabs(t__a - t__b) <= (tol))) {                                                       \
            printf("# %s:%d: |%s - %s| = |%g - %g| > %g\n", __FILE__, __LINE__, #a, #b, t__a,      \
                   t__b, (double)(tol));                                                           \
            t__case_failed = 1;                                                                    \
        }                                                                                          \
    } while (0)

#define RUN_TEST(fn)                                                                               \
    do {                                                                                           \
        t__case_failed = 0;                                                                        \
        fn();                                                                                      \
        t__count++;                                                                                \
        printf("%s %d - %s\n", t__case_failed ? "not ok" : "ok", t__count, #fn);                   \
        fflush(stdout);                                                                            \
        t__failed += t__case_failed;                                                               \
    } while (0)

#define TEST_END() (printf("1..%d\n", t__count), t__failed ? 1 : 0)

/* Largest |a[i] - b[i]| relative to max(1, |b[i]|): the tolerance measure the golden tests use. */
static inline double t_max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= worst)) worst = d; /* NaN propagates as a failure */
    }
    return worst;
}

#endif
