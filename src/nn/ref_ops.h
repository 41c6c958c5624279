/* ref_ops.h - naive C versions of every SampleCNN layer: the test oracle for oneDNN code.
 *
 * DESIGN: plain loops in the most obvious order, fp32 storage with double accumulation where a
 * sum is long, NCW layout (batch, channels, length) everywhere, like PyTorch. Slow on purpose.
 */
#ifndef CLMR_NN_REF_OPS_H
#define CLMR_NN_REF_OPS_H

#include "nn/samplecnn.h"

/* out (B, OC, OL) = conv1d(in (B, IC, IL), w (OC, IC, K)) + b (OC), zero padding `pad` both ends,
 * OL = (IL + 2 pad - K) / stride + 1. b may be NULL. */
void clmr_ref_conv1d(float *out, const float *in, const float *w, const float *b, int B, int IC,
                     int IL, int OC, int K, int stride, int pad);

/* Eval-mode BatchNorm with running statistics, in place allowed (out == in). x: (B, C, L). */
void clmr_ref_batchnorm(float *out, const float *in, const float *gamma, const float *beta,
                        const float *mean, const float *var, int B, int C, int L);

void clmr_ref_relu(float *out, const float *in, size_t n);

/* out (B, C, L / P) = max over non-overlapping windows of P (tail dropped, as PyTorch). */
void clmr_ref_maxpool1d(float *out, const float *in, int B, int C, int L, int P);

/* out (B, T) = in (B, D) w^T (T, D) + b (T); b may be NULL. */
void clmr_ref_linear(float *out, const float *in, const float *w, const float *b, int B, int D,
                     int T);

void clmr_ref_sigmoid(float *out, const float *in, size_t n);

/* The tag head on emb (B, embed_dim): logits (B, n_tags) = fc(emb) for a linear head, or
 * fc(relu(hid(emb))) for an MLP head (cfg->head_hidden > 0). Returns 0 or CLMR_ENOMEM. */
int clmr_ref_head_logits(const clmr_samplecnn_config_t *cfg, const clmr_samplecnn_weights_t *w,
                         const float *emb, int B, float *logits);

/* Whole eval-mode forward of B chunks x (B, chunk_samples): writes emb (B, embed_dim) and, when
 * cfg->n_tags > 0 and logits != NULL, logits (B, n_tags) before the sigmoid. Allocates its own
 * scratch. Returns 0 or CLMR_ENOMEM. */
int clmr_ref_samplecnn_forward(const clmr_samplecnn_config_t *cfg,
                               const clmr_samplecnn_weights_t *w, const float *x, int B, float *emb,
                               float *logits);

#endif
