/* samplecnn_train_ref.h - a whole naive training step of SampleCNN: contrastive (encoder +
 * projector + NT-Xent) or supervised (encoder + linear head + BCE-with-logits), then Adam.
 *
 * DESIGN: the oracle for the oneDNN trainer, written like llm.c's train_gpt2.c: a config, one
 * contiguous block each for the trainable parameters, their gradients and Adam's m and v (same
 * layout, bound by clmr_train_params_bind), a separate block for the BatchNorm running
 * statistics (they are state, not trained, so Adam and weight decay never touch them), and the
 * activations of every layer kept from the forward for the backward. Every buffer is sized once
 * for a batch size at open and reused by each step. Layers come from nn/ref_ops.h and
 * train/ref_backward.h; any depth and widths clmr_samplecnn_config_init accepts work. Slow on
 * purpose: use it on small widths (tests) only.
 */
#ifndef CLMR_TRAIN_SAMPLECNN_TRAIN_REF_H
#define CLMR_TRAIN_SAMPLECNN_TRAIN_REF_H

#include "nn/samplecnn.h"
#include "train/adam.h"

#include <stddef.h>

typedef struct {
    clmr_samplecnn_config_t enc; /* encoder shapes; enc.n_tags > 0 adds the supervised head */
    int proj_hidden;             /* projector Linear(D -> H, no bias); 0 = no projector */
    int proj_out;                /* projector Linear(H -> P, no bias), the NT-Xent input */
} clmr_train_config_t;

/* Pointers into one block of trainable floats, in this order (also the order of the gradient,
 * m and v blocks). */
typedef struct {
    float *conv_w[CLMR_MAX_LAYERS];   /* (OC, IC, K) */
    float *conv_b[CLMR_MAX_LAYERS];   /* (OC) */
    float *bn_gamma[CLMR_MAX_LAYERS]; /* (OC) */
    float *bn_beta[CLMR_MAX_LAYERS];  /* (OC) */
    float *proj_w1;                   /* (H, D) or NULL */
    float *proj_w2;                   /* (P, H) or NULL */
    float *fc_w;                      /* (T, D) or NULL */
    float *fc_b;                      /* (T) or NULL */
} clmr_train_params_t;

/* Fills cfg for the given encoder widths (see clmr_samplecnn_config_init), projector sizes (0, 0
 * for none) and head size (0 for none). Returns 0 or CLMR_EINVAL. */
int clmr_train_config_init(clmr_train_config_t *cfg, int n_layers, const int *widths,
                           int proj_hidden, int proj_out, int n_tags);

/* Number of trainable floats (conv w/b, BN gamma/beta, projector, head). */
size_t clmr_train_param_count(const clmr_train_config_t *cfg);

/* Offset (in floats) of the supervised head (fc_w then fc_b) in the block: the range
 * [offset, param_count) is what a frozen-encoder head fit updates. */
size_t clmr_train_head_offset(const clmr_train_config_t *cfg);

/* Points p's fields into mem (clmr_train_param_count floats, owned by the caller). */
void clmr_train_params_bind(clmr_train_params_t *p, const clmr_train_config_t *cfg, float *mem);

typedef struct {
    clmr_train_config_t cfg;
    int batch; /* views per step the buffers were built for */
    size_t n_params;
    float *params_mem, *grads_mem, *m_mem, *v_mem; /* n_params floats each */
    clmr_train_params_t params, grads;
    float *run_mean[CLMR_MAX_LAYERS], *run_var[CLMR_MAX_LAYERS]; /* (OC), in stats_mem */
    float *stats_mem;
    clmr_adam_params_t adam;
    float bn_momentum; /* 0.1 */
    long step;         /* Adam updates done */
    double last_grad_norm;
    /* forward activations, kept for the backward (all in acts_mem) */
    float *conv_out[CLMR_MAX_LAYERS]; /* (B, OC, conv_len) before BN */
    float *act[CLMR_MAX_LAYERS];      /* (B, OC, conv_len) after BN + ReLU */
    float *pool[CLMR_MAX_LAYERS];     /* (B, OC, out_len) after max-pool, NULL without pool */
    float *bn_mean[CLMR_MAX_LAYERS], *bn_rstd[CLMR_MAX_LAYERS]; /* (OC) batch statistics */
    float *h; /* (B, D) embedding (aliases the last act) */
    float *acts_mem;
    /* backward scratch */
    float *dbuf[2];      /* two ping-pong buffers of the largest activation */
    float *dh;           /* (B, D) gradient of the embedding */
    float *head_scratch; /* projector/head intermediates (train_head.h layout) */
    float *z, *logits;   /* (B, P) projector output, (B, T) head output, in head_scratch */
    float *bwd_mem;
} clmr_ref_trainer_t;

/* Builds a trainer for cfg and `batch` views per step (>= 2; even for contrastive steps):
 * allocates every block once, parameters zero, running mean 0, running var 1 (PyTorch's init),
 * Adam defaults, momentum 0.1. Returns 0, CLMR_EINVAL or CLMR_ENOMEM (nothing left allocated). */
int clmr_ref_trainer_open(clmr_ref_trainer_t *t, const clmr_train_config_t *cfg, int batch);

/* Frees everything; accepts a zeroed or closed trainer. */
void clmr_ref_trainer_close(clmr_ref_trainer_t *t);

/* Copies encoder (and head, when both have one) parameters and running statistics from w (bound
 * with clmr_samplecnn_weights_bind for the same encoder config) into the trainer, and back. */
void clmr_ref_trainer_import(clmr_ref_trainer_t *t, const clmr_samplecnn_weights_t *w);
void clmr_ref_trainer_export(const clmr_ref_trainer_t *t, clmr_samplecnn_weights_t *w);

/* Contrastive loss and gradients without the update: training-mode forward of x (batch,
 * chunk_samples) where views i and i + batch/2 are the positive pairs, NT-Xent with temperature
 * tau, full backward into the gradient block (zeroed first). Updates the BN running statistics.
 * Needs a projector. Returns 0 or CLMR_EINVAL. */
int clmr_ref_trainer_grads_contrastive(clmr_ref_trainer_t *t, const float *x, float tau,
                                       float *loss);

/* Supervised loss and gradients: forward, head, BCE-with-logits (mean) against y (batch, n_tags)
 * in [0, 1], backward. freeze_encoder != 0 stops the backward at the head (encoder gradients stay
 * zero; the BN running statistics still update, as in PyTorch's train mode). Needs a head. */
int clmr_ref_trainer_grads_supervised(clmr_ref_trainer_t *t, const float *x, const float *y,
                                      int freeze_encoder, float *loss);

/* Clips (when t->adam.clip_norm > 0) and applies one Adam update to params [first, n_params);
 * first = 0 for everything, clmr_train_head_offset for a head-only fit. */
void clmr_ref_trainer_update(clmr_ref_trainer_t *t, size_t first);

/* One whole step: grads_contrastive then update(0). */
int clmr_ref_train_step_contrastive(clmr_ref_trainer_t *t, const float *x, float tau, float *loss);

/* One whole step: grads_supervised then update (head only when freeze_encoder). */
int clmr_ref_train_step_supervised(clmr_ref_trainer_t *t, const float *x, const float *y,
                                   int freeze_encoder, float *loss);

#endif
