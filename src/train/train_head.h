/* train_head.h - the small top of a training step, shared by the naive and the oneDNN trainers:
 * projector + NT-Xent (contrastive) or linear head + BCE-with-logits (supervised), forward and
 * backward from the encoder's embedding h to its gradient dh.
 *
 * DESIGN: these layers are (batch x 512) matrices, a few percent of a step's work, so they use the
 * naive layers (ref_ops.h, ref_backward.h) in both trainers and one implementation serves both.
 * All intermediates live in one caller-owned scratch block with a fixed layout (below) so tests
 * and callers can read z or the logits after a call.
 */
#ifndef CLMR_TRAIN_TRAIN_HEAD_H
#define CLMR_TRAIN_TRAIN_HEAD_H

#include "train/samplecnn_train_ref.h"

/* Scratch layout, in floats from its start, for batch B (H, P, T from cfg):
 * p1 (B, H) projector hidden after ReLU | z (B, P) | logits (B, T) | dp1 (B, H) | dz (B, P) |
 * dlogits (B, T) | NT-Xent workspace (clmr_ntxent_workspace_floats(B, P), when P > 0). */
size_t clmr_train_head_scratch_floats(const clmr_train_config_t *cfg, int batch);
float *clmr_train_head_z(const clmr_train_config_t *cfg, int batch, float *scratch);
float *clmr_train_head_logits(const clmr_train_config_t *cfg, int batch, float *scratch);

/* Projector forward on h (batch, D), NT-Xent (views i and i + batch/2 positive, temperature tau)
 * into *loss, backward: ADDS projector weight gradients into g, WRITES dh (batch, D). Returns 0,
 * or CLMR_EINVAL (no projector, odd batch, tau <= 0). Thread-safe on distinct buffers. */
int clmr_train_head_contrastive(float *loss, float *dh, const float *h,
                                const clmr_train_params_t *p, const clmr_train_params_t *g,
                                const clmr_train_config_t *cfg, int batch, float tau,
                                float *scratch);

/* Linear head on h, BCE-with-logits (mean) against y (batch, T) into *loss, backward: ADDS fc_w,
 * fc_b gradients into g; WRITES dh unless dh is NULL (frozen encoder). CLMR_EINVAL without head. */
int clmr_train_head_supervised(float *loss, float *dh, const float *h, const float *y,
                               const clmr_train_params_t *p, const clmr_train_params_t *g,
                               const clmr_train_config_t *cfg, int batch, float *scratch);

#endif
