/* metrics_check.c - prints clmr_metrics_compute's figures for a predictions file, as JSON, for
 * tests/python/test_fit_eval.py to compare with scikit-learn (not a meson test itself).
 *
 * Input (text): "N T", then N lines of T scores followed by T 0/1 labels. Scores are read with
 * strtod, so the 17-digit repr Python writes round-trips exactly.
 */
#include "train/metrics.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static json_t *num(double v)
{
    return isnan(v) ? json_null() : json_real(v);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: metrics_check PREDICTIONS\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "r");
    size_t n;
    int T;
    if (!f || fscanf(f, "%zu %d", &n, &T) != 2 || n < 1 || T < 1) return 2;
    double *s = malloc(n * (size_t)T * sizeof(double));
    uint8_t *y = malloc(n * (size_t)T);
    if (!s || !y) return 2;
    for (size_t i = 0; i < n; i++) {
        for (int t = 0; t < T; t++)
            if (fscanf(f, "%lf", &s[i * T + t]) != 1) return 2;
        for (int t = 0; t < T; t++) {
            int v;
            if (fscanf(f, "%d", &v) != 1) return 2;
            y[i * T + t] = (uint8_t)v;
        }
    }
    fclose(f);
    clmr_metrics_t m;
    if (clmr_metrics_compute(&m, s, y, n, T)) return 1;
    json_t *o = json_object(), *roc = json_array(), *ap = json_array(), *inc = json_array();
    for (int t = 0; t < T; t++) {
        json_array_append_new(roc, num(m.tag_roc[t]));
        json_array_append_new(ap, num(m.tag_ap[t]));
        json_array_append_new(inc, json_boolean(m.included[t]));
    }
    json_object_set_new(o, "roc_auc", num(m.roc_auc));
    json_object_set_new(o, "pr_auc", num(m.pr_auc));
    json_object_set_new(o, "tag_roc", roc);
    json_object_set_new(o, "tag_ap", ap);
    json_object_set_new(o, "included", inc);
    char *out = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    puts(out);
    free(out);
    json_decref(o);
    clmr_metrics_free(&m);
    free(s);
    free(y);
    return 0;
}
