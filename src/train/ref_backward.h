/* ref_backward.h - naive training-mode forward pieces and the backward pass of every SampleCNN
 * layer: the test oracle for the oneDNN trainer.
 *
 * DESIGN: shaped like llm.c's layer_backward(dinp, dweight, dbias, dout, inp, weight, ...), NCW
 * layout (batch, channels, length) as PyTorch and ref_ops.h, plain loops in the most obvious
 * order with double accumulation of every long sum. Conventions, the same for every function:
 * activation gradients (dinp) are OVERWRITTEN; parameter gradients (dw, db, dgamma, dbeta) are
 * ACCUMULATED (+=), so a training step zeroes its one gradient block once and layers that share
 * nothing need no bookkeeping. Any gradient output may be NULL to skip it. All functions are
 * thread-safe on distinct buffers and allocate nothing. Slow on purpose.
 */
#ifndef CLMR_TRAIN_REF_BACKWARD_H
#define CLMR_TRAIN_REF_BACKWARD_H

#include <stddef.h>

/* Backward of clmr_ref_conv1d (out (B, OC, OL) = conv(in (B, IC, IL), w (OC, IC, K)) + b, zero
 * padding `pad` at both ends, any stride). dout: (B, OC, OL) with OL = (IL + 2 pad - K)/stride + 1.
 * Writes dinp (B, IC, IL) (positions no output window reads get 0); adds into dw (OC, IC, K) and
 * db (OC). Any of dinp, dw, db may be NULL. */
void clmr_ref_conv1d_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, int B, int IC, int IL, int OC,
                              int K, int stride, int pad);

/* Training-mode BatchNorm1d forward on x (B, C, L): statistics over (B, L) per channel, the biased
 * variance normalises (eps CLMR_BN_EPS), out = (x - mean) * rstd * gamma + beta (out == inp is
 * allowed). Saves mean (C) and rstd = 1/sqrt(var + eps) (C) for the backward. When run_mean and
 * run_var are not NULL they are updated as PyTorch does: r = (1 - momentum) r + momentum s, with
 * the UNBIASED variance (n / (n - 1)) for run_var. Returns 0, or CLMR_EINVAL when B * L < 2 (a
 * variance needs two values; PyTorch refuses the same input). */
int clmr_ref_batchnorm_train_forward(float *out, float *mean, float *rstd, float *run_mean,
                                     float *run_var, const float *inp, const float *gamma,
                                     const float *beta, float momentum, int B, int C, int L);

/* Backward of the training-mode BatchNorm (the batch statistics depend on the input, so dinp has
 * the two extra mean terms). inp is the forward input, mean/rstd what the forward saved. Writes
 * dinp (B, C, L) (dinp == dout is allowed), adds into dgamma (C) and dbeta (C). */
void clmr_ref_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                 const float *inp, const float *mean, const float *rstd,
                                 const float *gamma, int B, int C, int L);

/* ReLU backward from the forward OUTPUT (as PyTorch: the gradient passes where out > 0).
 * dinp == dout is allowed. */
void clmr_ref_relu_backward(float *dinp, const float *dout, const float *out, size_t n);

/* Backward of clmr_ref_maxpool1d (non-overlapping windows of P over (B, C, L), tail dropped): each
 * output gradient goes to its window's argmax, the FIRST maximum on ties (PyTorch's CPU kernel).
 * inp: forward input (B, C, L); dout (B, C, L / P); writes all of dinp (B, C, L). */
void clmr_ref_maxpool1d_backward(float *dinp, const float *dout, const float *inp, int B, int C,
                                 int L, int P);

/* Backward of clmr_ref_linear (out (B, T) = inp (B, D) w^T + b, w (T, D)). Writes dinp (B, D),
 * adds into dw (T, D) and db (T). Any output may be NULL (db NULL for bias-free layers). */
void clmr_ref_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, int B, int D, int T);

/* BCE-with-logits, mean over all n elements (PyTorch's default reduction), computed stably as
 * max(x, 0) - x y + log1p(exp(-|x|)). Returns the loss; when dlogits is not NULL writes
 * d loss / d logits = (sigmoid(x) - y) / n. targets may be soft labels in [0, 1]. */
double clmr_ref_bce_logits(float *dlogits, const float *logits, const float *targets, size_t n);

#endif
