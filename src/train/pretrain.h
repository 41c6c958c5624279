/* pretrain.h - CLMR/SimCLR contrastive pretraining state: initialisation, steps on the oneDNN
 * trainer, exact checkpoints and export to a model file.
 *
 * DESIGN: a clmr_pretrain_t owns the four trainable blocks (params, grads, Adam m and v, laid out
 * by clmr_train_params_bind), the BatchNorm running statistics and the oneDNN trainer built on
 * them. Everything the next step depends on is in those blocks plus the step counter: the data a
 * step sees is batch number `step` of a loader opened with the checkpointed seed (loader.h makes
 * batch k a pure function of (seed, k)), so a checkpoint needs no RNG state beyond the seed and
 * the step, and resuming reproduces the uninterrupted run (bit for bit when oneDNN's kernels are
 * run-to-run deterministic, which tests/train/test_train_dnnl.c checks on this machine).
 * Checkpoint file: "CLMRCKPT" magic, u32 version, u32 JSON header length, the JSON header (config,
 * hyper-parameters, step, provenance), then params, m, v and running statistics as little-endian
 * float32, then a u64 FNV-1a hash of everything before it. Written to a temporary file in the same
 * folder, fsync'd, renamed over the target and the folder fsync'd (readers never see a partial
 * checkpoint). Gradients are not saved: every step rewrites them.
 */
#ifndef CLMR_TRAIN_PRETRAIN_H
#define CLMR_TRAIN_PRETRAIN_H

#include "clmr/model.h"
#include "train/adam.h"
#include "train/train_dnnl.h"
#include "train/samplecnn_train_ref.h"
#include "util/rng.h"

#include <stdint.h>

#define CLMR_CKPT_VERSION 1

typedef struct {
    int n_layers;                    /* encoder depth (11 official) */
    int widths[CLMR_MAX_LAYERS + 1]; /* widths[0] = 1, widths[i + 1] = layer i's channels */
    int proj_hidden, proj_out;       /* projector 512 -> 512 -> 64 (official) */
    int batch_pairs;                 /* N: tracks per step (2N views), default 48 */
    float tau;                       /* NT-Xent temperature, 0.5 */
    float bn_momentum;               /* 0.1 */
    clmr_adam_params_t adam;         /* lr 3e-4, no weight decay, no clipping */
    uint64_t seed;                   /* initialisation and data seed */
    /* trainer arithmetic (precision.h; default fp32): not saved in checkpoints, a run's choice */
    clmr_train_precision_t precision;
} clmr_pretrain_params_t;

/* Official widths, projector 512/64, 48 pairs, tau 0.5, momentum 0.1, Adam defaults, seed 0,
 * fp32. */
clmr_pretrain_params_t clmr_pretrain_default_params(void);

/* Parses "official" or a comma list of per-layer channel counts (3..16 entries, each 1..4096) into
 * p->n_layers / p->widths. Returns 0 or CLMR_EINVAL (with *errmsg). */
int clmr_pretrain_parse_widths(clmr_pretrain_params_t *p, const char *s, char **errmsg);

typedef struct clmr_pretrain clmr_pretrain_t;

/* Builds the state for p: parameters initialised as PyTorch does for CLMR (conv weights
 * kaiming_uniform fan_in/ReLU, conv biases U(+-1/sqrt(fan_in)), BN gamma 1 beta 0, running mean 0
 * var 1, projector U(+-1/sqrt(fan_in))) from p->seed, or, when init is not NULL, the encoder
 * weights and running statistics copied from init (whose widths must match p; the projector is
 * still freshly initialised). init remains owned by the caller and is not referenced afterwards.
 * Returns 0, CLMR_EINVAL (bad params or widths mismatch), CLMR_ENOMEM or CLMR_EDNNL. */
int clmr_pretrain_open(clmr_pretrain_t **out, const clmr_pretrain_params_t *p,
                       const clmr_model_t *init, char **errmsg);

/* The encoder part of clmr_pretrain_open's initialisation, shared with fully supervised training
 * (train/supervised.h): draws every layer's conv weights and biases from r (PyTorch's CLMR init,
 * above), sets BN gamma 1, beta 0, running mean 0, var 1; then, when init is not NULL, copies
 * init's encoder tensors and running statistics over them (init must have enc's widths; the
 * caller checks). The draws happen either way, so what the caller draws from r afterwards does
 * not depend on init. w's encoder fields and run_mean/run_var[i] (OC floats each) are written;
 * init remains owned by the caller. Thread-safe on distinct outputs. */
void clmr_pretrain_init_encoder(const clmr_train_params_t *w, float *const *run_mean,
                                float *const *run_var, const clmr_samplecnn_config_t *enc,
                                const clmr_model_t *init, clmr_rng_t *r);

/* Opens the state saved in a checkpoint (its own params; the file is checked: magic, version,
 * sizes, hash). *info, when not NULL, receives the header JSON text (malloc'd, caller frees) so
 * callers can read their own provenance keys. Returns 0, CLMR_EIO, CLMR_EINVAL (not a valid
 * checkpoint: the message says why), CLMR_ENOMEM or CLMR_EDNNL. */
int clmr_pretrain_open_checkpoint(clmr_pretrain_t **out, const char *path, char **info,
                                  char **errmsg);

/* One contrastive step on x (2N views, chunk samples each; views i and i + N are pairs): forward,
 * projector, NT-Xent, backward, Adam. Increments the step counter. *loss gets the loss and
 * *grad_norm (may be NULL) the gradient norm. Returns 0 or CLMR_EDNNL / CLMR_EINVAL. Not
 * thread-safe. */
int clmr_pretrain_step(clmr_pretrain_t *pt, const float *x, float *loss, double *grad_norm);

/* As clmr_pretrain_step with an extra loss term on the embedding (train_dnnl.h's aux hook; NULL =
 * none): *loss = contrastive term, *aux_loss (may be NULL) = the extra term. */
int clmr_pretrain_step_aux(clmr_pretrain_t *pt, const float *x, clmr_train_aux_fn aux, void *aux_ud,
                           float *loss, float *aux_loss, double *grad_norm);

/* Rebuilds the oneDNN trainer in another precision (fp32, bf16, or auto resolved silently; a
 * no-op when it already runs in it), keeping every block: used after
 * clmr_pretrain_open_checkpoint, whose trainer is fp32. On failure the state has no trainer and
 * must only be closed. Returns 0, CLMR_EINVAL, CLMR_ENOMEM or CLMR_EDNNL. Not thread-safe. */
int clmr_pretrain_set_precision(clmr_pretrain_t *pt, clmr_train_precision_t precision,
                                char **errmsg);

/* The precision the trainer runs in (fp32 or bf16). */
clmr_train_precision_t clmr_pretrain_precision(const clmr_pretrain_t *pt);

/* Steps done so far (the index of the next data batch). */
long clmr_pretrain_steps_done(const clmr_pretrain_t *pt);
const clmr_pretrain_params_t *clmr_pretrain_params(const clmr_pretrain_t *pt);
int clmr_pretrain_chunk_samples(const clmr_pretrain_t *pt);

/* Writes a checkpoint atomically (see DESIGN). extra_json, when not NULL, is a JSON object text
 * whose keys are added under "extra" in the header (provenance: data, wall time, last loss...).
 * Returns 0, CLMR_EINVAL (extra_json not an object) or CLMR_EIO naming the failing step. */
int clmr_pretrain_save_checkpoint(const clmr_pretrain_t *pt, const char *path,
                                  const char *extra_json, char **errmsg);

/* Builds a model from the current encoder weights and running statistics. When head is not NULL
 * and has a tag head, its head (fc weights, bias, tags) is copied as is; otherwise the model is
 * encoder-only. The caller owns *out (clmr_model_close); set a name and metadata before saving.
 * Returns 0, CLMR_EINVAL (head's embedding size differs) or CLMR_ENOMEM. */
int clmr_pretrain_export(const clmr_pretrain_t *pt, const clmr_model_t *head, clmr_model_t **out,
                         char **errmsg);

/* Frees everything; accepts NULL and *pt == NULL; sets *pt to NULL. */
void clmr_pretrain_close(clmr_pretrain_t **pt);

#endif
