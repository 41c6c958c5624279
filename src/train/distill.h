/* distill.h - the "learning without forgetting" term of background fine-tuning: BCE between the
 * parent model's tag probabilities (teacher) and the student's tag head on the student's embedding.
 *
 * DESIGN: the tag head (T x D linear, or CLMR's D-H-T MLP, + sigmoid) is the parent's and stays
 * frozen; only the encoder
 * moves, so the term's gradient flows to the embedding only. The loss is the mean over B x T of
 * BCE(teacher, sigmoid(W h + b)), whose gradient w.r.t. the logits is (sigmoid - teacher) / (B T),
 * the same convention as the supervised step (BCE-with-logits, mean). It is a small (B x D x T)
 * computation, so it is written plainly; tests/train/test_distill.c checks it against finite
 * differences of the loss in double precision.
 */
#ifndef CLMR_TRAIN_DISTILL_H
#define CLMR_TRAIN_DISTILL_H

/* Computes *loss = weight * mean BCE(teacher, sigmoid(h W^T + b)) for h (B, D), W (T, D), b (T),
 * teacher (B, T) in [0, 1], and ADDS weight * d mean-BCE / d h into dh (B, D). logits (B, T) is
 * caller scratch. Returns 0 or CLMR_EINVAL (B, D or T < 1, weight < 0). Thread-safe on distinct
 * buffers. */
int clmr_distill_bce(float *loss, float *dh, const float *h, int B, int D, const float *W,
                     const float *b, int T, const float *teacher, float weight, float *logits);

/* The same term through CLMR's MLP head: logits = W2 relu(W1 h + b1) + b2 with W1 (H, D), b1 (H),
 * W2 (T, H), b2 (T); both layers stay frozen and the gradient flows back through the ReLU to h
 * (ADDED into dh). hidden (B, H) and logits (B, T) are caller scratch; H <= 4096. Returns 0 or
 * CLMR_EINVAL (a size < 1 or H too large, weight < 0). Thread-safe on distinct buffers. */
int clmr_distill_bce_mlp(float *loss, float *dh, const float *h, int B, int D, const float *W1,
                         const float *b1, int H, const float *W2, const float *b2, int T,
                         const float *teacher, float weight, float *hidden, float *logits);

#endif
