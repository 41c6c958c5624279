/* metrics.c - ROC-AUC and average precision (scikit-learn's definitions) and their macro means.
 *
 * DESIGN: both metrics sort (score, label) pairs once per tag. ROC-AUC = (R+ - P(P+1)/2) / (P N)
 * with R+ the sum of the positives' average ranks; rank sums of up to 2^53 are exact in double,
 * so the figure equals sklearn's trapezoid over the tie-grouped ROC curve up to rounding.
 * Average precision walks the scores from the highest down, one group of equal scores at a time,
 * and adds (tp/P - previous recall) x tp/(tp+fp) after each group, the step function sklearn
 * integrates (no interpolation).
 */
#include "train/metrics.h"

#include "clmr/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double s;
    int pos;
} scored_t;

static int cmp_desc(const void *a, const void *b)
{
    double x = ((const scored_t *)a)->s, y = ((const scored_t *)b)->s;
    return (x < y) - (x > y);
}

/* Sorted copy (descending scores) of the pairs, with the positive count; NULL on ENOMEM. */
static scored_t *sorted_pairs(const double *scores, const uint8_t *labels, size_t n, size_t *npos)
{
    scored_t *v = malloc((n ? n : 1) * sizeof(*v));
    if (!v) return NULL;
    size_t p = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].s = scores[i];
        v[i].pos = labels[i] != 0;
        p += (size_t)v[i].pos;
    }
    qsort(v, n, sizeof(*v), cmp_desc);
    *npos = p;
    return v;
}

int clmr_metrics_roc_auc(double *auc, const double *scores, const uint8_t *labels, size_t n)
{
    *auc = NAN;
    size_t P;
    scored_t *v = sorted_pairs(scores, labels, n, &P);
    if (!v) return CLMR_ENOMEM;
    size_t N = n - P;
    if (n == 0 || P == 0 || N == 0) {
        free(v);
        return CLMR_EINVAL;
    }
    /* Ascending rank r (1-based) of the element at descending position i is n - i. */
    double rank_sum = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, pos = 0;
        while (j < n && v[j].s == v[i].s)
            pos += (size_t)v[j++].pos;
        /* positions i..j-1 share ascending ranks n-j+1 .. n-i: mean (2n - i - j + 1) / 2 */
        rank_sum += (double)pos * ((double)(2 * n - i - j + 1) / 2.0);
        i = j;
    }
    *auc = (rank_sum - (double)P * ((double)P + 1) / 2.0) / ((double)P * (double)N);
    free(v);
    return 0;
}

int clmr_metrics_average_precision(double *ap, const double *scores, const uint8_t *labels,
                                   size_t n)
{
    *ap = NAN;
    size_t P;
    scored_t *v = sorted_pairs(scores, labels, n, &P);
    if (!v) return CLMR_ENOMEM;
    if (n == 0 || P == 0) {
        free(v);
        return CLMR_EINVAL;
    }
    double sum = 0, prev_recall = 0;
    size_t tp = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j].s == v[i].s)
            tp += (size_t)v[j++].pos;
        double recall = (double)tp / (double)P, precision = (double)tp / (double)j;
        sum += (recall - prev_recall) * precision;
        prev_recall = recall;
        i = j;
    }
    *ap = sum;
    free(v);
    return 0;
}

void clmr_metrics_free(clmr_metrics_t *m)
{
    if (!m) return;
    free(m->tag_roc);
    free(m->tag_ap);
    free(m->positives);
    free(m->included);
    memset(m, 0, sizeof(*m));
}

int clmr_metrics_compute(clmr_metrics_t *out, const double *scores, const uint8_t *labels,
                         size_t n_items, int n_tags)
{
    memset(out, 0, sizeof(*out));
    if (n_items < 1 || n_tags < 1) return CLMR_EINVAL;
    int err = CLMR_ENOMEM;
    double *col = malloc(n_items * sizeof(*col));
    uint8_t *lab = malloc(n_items);
    out->n_tags = n_tags;
    out->tag_roc = malloc((size_t)n_tags * sizeof(double));
    out->tag_ap = malloc((size_t)n_tags * sizeof(double));
    out->positives = calloc((size_t)n_tags, sizeof(int));
    out->included = calloc((size_t)n_tags, 1);
    if (!col || !lab || !out->tag_roc || !out->tag_ap || !out->positives || !out->included)
        goto fail;
    double roc_sum = 0, ap_sum = 0;
    for (int t = 0; t < n_tags; t++) {
        int pos = 0;
        for (size_t i = 0; i < n_items; i++) {
            col[i] = scores[i * (size_t)n_tags + (size_t)t];
            lab[i] = labels[i * (size_t)n_tags + (size_t)t] != 0;
            pos += lab[i];
        }
        out->positives[t] = pos;
        out->tag_roc[t] = out->tag_ap[t] = NAN;
        if (pos > 0) {
            err = clmr_metrics_average_precision(&out->tag_ap[t], col, lab, n_items);
            if (err) goto fail;
        }
        if (pos > 0 && (size_t)pos < n_items) {
            err = clmr_metrics_roc_auc(&out->tag_roc[t], col, lab, n_items);
            if (err) goto fail;
            out->included[t] = 1;
            out->n_included++;
            roc_sum += out->tag_roc[t];
            ap_sum += out->tag_ap[t];
        }
    }
    out->roc_auc = out->n_included ? roc_sum / out->n_included : NAN;
    out->pr_auc = out->n_included ? ap_sum / out->n_included : NAN;
    free(col);
    free(lab);
    return 0;
fail:
    free(col);
    free(lab);
    clmr_metrics_free(out);
    return err;
}
