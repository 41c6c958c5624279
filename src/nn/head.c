/* head.c - the tag head on encoder outputs: linear fc, or CLMR's MLP head fc.0 -> ReLU -> fc.2.
 *
 * DESIGN: the head is tiny next to the encoder (25.6k MACs per chunk for the linear 512x50 head,
 * 288k for the 512-512-50 MLP, against 1.7G for the convolutions), so it is plain C in one place
 * that every caller shares (inference, whole-track scoring from stored embeddings, fine-tuning's
 * teacher), not a oneDNN primitive. Sums are accumulated in double, like the naive twin
 * (clmr_ref_head_logits in ref_ops.c) that tests compare it with. Thread-safe: reads the model.
 */
#include "nn/model_internal.h"

#include <math.h>
#include <stddef.h>

/* The logit of tag t for one embedding e; hid holds the MLP's hidden activations for e. */
static double logit_one(const clmr_model_t *m, const float *e, const double *hid, int t)
{
    const clmr_samplecnn_weights_t *w = &m->w;
    const int D = m->cfg.embed_dim, H = m->cfg.head_hidden;
    double acc = w->fc_b[t];
    if (H > 0) {
        const float *wr = w->fc_w + (size_t)t * H;
        for (int h = 0; h < H; h++)
            acc += wr[h] * hid[h];
    } else {
        const float *wr = w->fc_w + (size_t)t * D;
        for (int d = 0; d < D; d++)
            acc += (double)wr[d] * e[d];
    }
    return acc;
}

static void hidden_one(const clmr_model_t *m, const float *e, double *hid)
{
    const clmr_samplecnn_weights_t *w = &m->w;
    const int D = m->cfg.embed_dim, H = m->cfg.head_hidden;
    for (int h = 0; h < H; h++) {
        const float *wr = w->hid_w + (size_t)h * D;
        double acc = w->hid_b[h];
        for (int d = 0; d < D; d++)
            acc += (double)wr[d] * e[d];
        hid[h] = acc > 0 ? acc : 0; /* ReLU */
    }
}

void clmr__model_head_mean_scores(const clmr_model_t *m, const float *emb, int n_chunks,
                                  double *scores)
{
    const int D = m->cfg.embed_dim, T = m->cfg.n_tags;
    double hid[CLMR_HEAD_MAX_HIDDEN];
    for (int t = 0; t < T; t++)
        scores[t] = 0;
    for (int c = 0; c < n_chunks; c++) {
        const float *e = emb + (size_t)c * D;
        hidden_one(m, e, hid);
        for (int t = 0; t < T; t++)
            scores[t] += 1.0 / (1.0 + exp(-logit_one(m, e, hid, t)));
    }
    for (int t = 0; t < T && n_chunks > 0; t++)
        scores[t] /= n_chunks;
}

void clmr__model_head_logits(const clmr_model_t *m, const float *emb, int B, float *logits)
{
    const int D = m->cfg.embed_dim, T = m->cfg.n_tags;
    double hid[CLMR_HEAD_MAX_HIDDEN];
    for (int n = 0; n < B; n++) {
        const float *e = emb + (size_t)n * D;
        hidden_one(m, e, hid);
        for (int t = 0; t < T; t++)
            logits[(size_t)n * T + t] = (float)logit_one(m, e, hid, t);
    }
}

void clmr__model_head_scores(const clmr_model_t *m, const float *emb, int B, float *scores)
{
    clmr__model_head_logits(m, emb, B, scores);
    const size_t n = (size_t)B * m->cfg.n_tags;
    for (size_t i = 0; i < n; i++)
        scores[i] = (float)(1.0 / (1.0 + exp(-(double)scores[i])));
}
