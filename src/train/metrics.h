/* metrics.h - multi-label evaluation metrics: ROC-AUC and average precision per tag, macro means.
 *
 * DESIGN: the definitions are scikit-learn's (roc_auc_score, average_precision_score), because
 * the CLMR paper's numbers come from them and users compare against them. ROC-AUC is the
 * Mann-Whitney statistic (a tie between a positive and a negative counts one half), computed from
 * average ranks; average precision is the step-wise sum over distinct score thresholds of
 * (recall increase) x precision, all tracks sharing a score entering at once. Scores are double
 * so track means are not rounded twice. Tags without both positive and negative tracks have no
 * defined ROC-AUC; they are excluded from the macro means and flagged, never silently scored.
 */
#ifndef CLMR_TRAIN_METRICS_H
#define CLMR_TRAIN_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* ROC-AUC of scores (n) against binary labels (n, 0 or nonzero). Returns 0 and stores the AUC in
 * *auc, or CLMR_EINVAL when the labels do not contain both classes (or n == 0), CLMR_ENOMEM.
 * Thread-safe; allocates a sort buffer per call. */
int clmr_metrics_roc_auc(double *auc, const double *scores, const uint8_t *labels, size_t n);

/* Average precision (sklearn's average_precision_score, ties grouped). Returns 0, CLMR_EINVAL when
 * there is no positive label (or n == 0), CLMR_ENOMEM. Thread-safe. */
int clmr_metrics_average_precision(double *ap, const double *scores, const uint8_t *labels,
                                   size_t n);

typedef struct {
    int n_tags;
    int n_included;    /* tags with both positive and negative tracks */
    double roc_auc;    /* macro mean over included tags; NaN when none */
    double pr_auc;     /* macro mean of average precision over included tags; NaN when none */
    double *tag_roc;   /* (n_tags) NaN for excluded tags */
    double *tag_ap;    /* (n_tags) NaN when the tag has no positive track */
    int *positives;    /* (n_tags) positive tracks per tag */
    uint8_t *included; /* (n_tags) 1 = in the macro means */
} clmr_metrics_t;

/* Scores every tag of n_items x n_tags row-major scores against labels of the same shape. *out
 * owns its arrays (clmr_metrics_free). Returns 0, CLMR_EINVAL (n_items or n_tags < 1) or
 * CLMR_ENOMEM (out zeroed). Thread-safe. */
int clmr_metrics_compute(clmr_metrics_t *out, const double *scores, const uint8_t *labels,
                         size_t n_items, int n_tags);

/* Frees out's arrays; accepts a zeroed struct. */
void clmr_metrics_free(clmr_metrics_t *m);

#endif
