/* train_dnnl.h - SampleCNN encoder training-mode forward and backward on oneDNN primitives.
 *
 * DESIGN: the fast twin of the encoder part of samplecnn_train_ref (which is its test oracle).
 * Per layer: convolution forward (training), batch normalisation forward-training with the ReLU
 * fused (its workspace keeps the ReLU mask), max pooling forward-training (its workspace keeps the
 * argmax); backward: pooling backward, batch-normalisation backward (diff scale/shift = dgamma,
 * dbeta), convolution backward-weights (with bias) and backward-data. Every primitive, memory
 * object and buffer is built once at open for one batch size and only executed per step (two
 * arrays of {primitive, args}, like oneDNN's cpu_cnn_training_f32 example); backward primitives are
 * created with the forward ones as hints. Activations use the channels-last (nwc) layout, which
 * oneDNN's jit kernels prefer; the caller's blocks keep the (OC, IC, K) clmr_train_params_t
 * layout shared with the naive trainer and Adam, and are reordered to/from the kernels' weight
 * formats inside the nets (BN parameters and gradients are used in place). The network input (B, 1,
 * L) and the embedding (B, D, 1) have the same bytes in nwc and ncw, so callers see plain (B,
 * chunk) in and (B, D) out.
 *
 * Mixed precision (clmr_train_dnnl_open_prec with CLMR_TRAIN_PREC_BF16): every activation and
 * activation gradient the nets keep or pass on is bf16, the convolutions run on bf16 copies of
 * the weights (reordered from the fp32 master block before each forward) and write their weight
 * and bias gradients in fp32; BatchNorm computes its batch statistics, scale/shift and their
 * gradients in fp32 from bf16 data; the caller-facing x, h and dh stay fp32 (x is converted by a
 * oneDNN reorder into a bf16 copy, h widened exactly, dh rounded to nearest even), and Adam, the
 * head and the running statistics are the fp32 code of the fp32 path. The naive fp32 trainer is
 * the oracle (docs/training-numerics.md gives the tolerance).
 */
#ifndef CLMR_TRAIN_TRAIN_DNNL_H
#define CLMR_TRAIN_TRAIN_DNNL_H

#include "nn/samplecnn.h"
#include "train/adam.h"
#include "train/precision.h"
#include "train/samplecnn_train_ref.h"

#include <stdio.h>

typedef struct clmr_train_dnnl clmr_train_dnnl_t;

/* The caller-owned state a trainer works on: four blocks of clmr_train_param_count floats with
 * the clmr_train_params_bind layout, and each layer's BN running statistics (OC floats each). */
typedef struct {
    float *params, *grads, *m, *v;
    float *run_mean[CLMR_MAX_LAYERS], *run_var[CLMR_MAX_LAYERS];
} clmr_train_blocks_t;

/* Builds the nets for cfg (encoder, plus its projector and/or head for the step functions) and
 * `batch` chunks per step. Everything in blocks remains owned by the caller and must stay at the
 * same addresses while the trainer is open (oneDNN memory objects wrap them); m and v may be NULL
 * when only forward/backward are used. Returns 0, CLMR_EINVAL, CLMR_ENOMEM or CLMR_EDNNL (with a
 * message in *errmsg when errmsg is not NULL). */
int clmr_train_dnnl_open(clmr_train_dnnl_t **out, const clmr_train_config_t *cfg, int batch,
                         const clmr_train_blocks_t *blocks, char **errmsg);

/* As clmr_train_dnnl_open in the given precision: CLMR_TRAIN_PREC_FP32, CLMR_TRAIN_PREC_BF16
 * (mixed bf16, see DESIGN; on a CPU without native bf16 oneDNN emulates it slowly or refuses it
 * with CLMR_EDNNL, so resolve the user's choice with clmr_train_precision_resolve first) or
 * CLMR_TRAIN_PREC_AUTO (resolved silently; CLMR_EINVAL never happens for it). clmr_train_dnnl_open
 * is this with CLMR_TRAIN_PREC_FP32. */
int clmr_train_dnnl_open_prec(clmr_train_dnnl_t **out, const clmr_train_config_t *cfg, int batch,
                              const clmr_train_blocks_t *blocks, clmr_train_precision_t precision,
                              char **errmsg);

/* CLMR_TRAIN_PREC_FP32 or CLMR_TRAIN_PREC_BF16: what t runs in. */
clmr_train_precision_t clmr_train_dnnl_precision(const clmr_train_dnnl_t *t);

/* Training-mode forward of x (batch, chunk_samples; read only, must stay valid until the next
 * backward, which reads it for layer 0's weight gradient). Updates the running statistics with
 * `momentum` (unbiased variance, as PyTorch). *h receives the embedding (batch, embed_dim), owned
 * by the trainer and valid until the next forward. Returns 0 or CLMR_EDNNL. Not thread-safe per
 * trainer (oneDNN parallelises inside each primitive). */
int clmr_train_dnnl_forward(clmr_train_dnnl_t *t, const float *x, float momentum, const float **h);

/* Backward from dh (batch, embed_dim) through the encoder of the last forward: WRITES (does not
 * accumulate) every encoder gradient in the caller's gradient block. It overwrites the saved
 * activations with gradients, so each backward needs its own forward before it (h stays valid).
 * Returns 0 or CLMR_EDNNL. */
int clmr_train_dnnl_backward(clmr_train_dnnl_t *t, const float *dh);

/* One whole contrastive step: zeroes the gradient block, forward (running statistics with momentum
 * 0.1), projector + NT-Xent with temperature tau (views i and i + batch/2 are pairs), backward,
 * optional clipping (adam->clip_norm) and an Adam update of the whole parameter block; `step` is
 * the 1-based index of this update. *loss gets the loss, *grad_norm (may be NULL) the gradient
 * norm before clipping. Returns 0, CLMR_EINVAL (no projector, odd batch, no m/v) or CLMR_EDNNL. */
int clmr_train_dnnl_step_contrastive(clmr_train_dnnl_t *t, const float *x, float tau,
                                     const clmr_adam_params_t *adam, long step, float *loss,
                                     double *grad_norm);

/* An extra loss term on the embedding: reads h (batch, D), ADDS its gradient into dh (batch, D),
 * writes its value to *loss. Returns 0 or a negative error code. */
typedef int (*clmr_train_aux_fn)(void *ud, const float *h, float *dh, int batch, int dim,
                                 float *loss);

/* As clmr_train_dnnl_step_contrastive with an extra term aux (may be NULL) added to the
 * embedding gradient before the encoder backward (used by fine-tuning for tag distillation).
 * *loss gets the contrastive term, *aux_loss (may be NULL) the extra term. */
int clmr_train_dnnl_step_contrastive_aux(clmr_train_dnnl_t *t, const float *x, float tau,
                                         const clmr_adam_params_t *adam, long step,
                                         clmr_train_aux_fn aux, void *aux_ud, float *loss,
                                         float *aux_loss, double *grad_norm);

/* One whole supervised step: as above with the linear head and BCE-with-logits against y
 * (batch, n_tags). freeze_encoder != 0 skips the encoder backward and updates the head only. */
int clmr_train_dnnl_step_supervised(clmr_train_dnnl_t *t, const float *x, const float *y,
                                    int freeze_encoder, const clmr_adam_params_t *adam, long step,
                                    float *loss, double *grad_norm);

/* Bytes of the trainer's own buffer block for cfg at `batch` chunks (activations kept for the
 * backward, batch statistics, the shared buffer, dh, head scratch), computed from the shapes
 * without allocating: what clmr_train_dnnl_open would malloc. oneDNN's workspaces and weight
 * copies come on top (about 3% at the official shapes). Thread-safe. */
size_t clmr_train_dnnl_plan_bytes(const clmr_train_config_t *cfg, int batch);

/* As clmr_train_dnnl_plan_bytes for a precision (bf16 halves the activations and adds a bf16 copy
 * of x and an fp32 copy of h; AUTO counts as fp32). Thread-safe. */
size_t clmr_train_dnnl_plan_bytes_prec(const clmr_train_config_t *cfg, int batch,
                                       clmr_train_precision_t precision);

/* Bytes of memory the trainer allocated at open: its own block (also written to *own when own is
 * not NULL; equals clmr_train_dnnl_plan_bytes), the memory oneDNN allocated for workspaces and
 * weight copies, and the largest scratchpad of its primitives. Caller-owned blocks (and x) are
 * not counted. Thread-safe. */
size_t clmr_train_dnnl_bytes(const clmr_train_dnnl_t *t, size_t *own);

/* Writes the allocation table behind clmr_train_dnnl_bytes (MiB per layer and kind, then the
 * shared buffers) to f, for debugging the memory plan. */
void clmr_train_dnnl_fprint_memory(const clmr_train_dnnl_t *t, FILE *f);

/* Frees everything; accepts NULL or *t == NULL and sets *t to NULL. */
void clmr_train_dnnl_close(clmr_train_dnnl_t **t);

#endif
