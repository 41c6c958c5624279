/* head_fit.h - linear evaluation: fit Linear(D -> T) on frozen chunk embeddings (CLMR protocol).
 *
 * DESIGN: the paper's recipe: every chunk of a file is a training example carrying the file's
 * labels; BCE-with-logits (mean over batch x tags, PyTorch's default), Adam lr 1e-3, batch 256,
 * up to 200 epochs, early stopping on the loss of a validation split made by FILE (chunks of one
 * file never straddle the split, so the validation loss is honest), keeping the best epoch's
 * weights. Weights start as PyTorch's nn.Linear (uniform +-1/sqrt(D)). Adam is train/adam.h's
 * (the same arithmetic as torch.optim.Adam) over one block [W | b]; BCE is ref_backward.h's.
 * Everything is seeded: same inputs and seed, same weights.
 */
#ifndef CLMR_TRAIN_HEAD_FIT_H
#define CLMR_TRAIN_HEAD_FIT_H

#include "clmr/model.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int epochs;          /* maximum, default 200 */
    int batch;           /* default 256 */
    double lr;           /* default 1e-3 */
    int patience;        /* stop after this many epochs without a better val loss; default 20 */
    double val_fraction; /* of the files, default 0.1; 0 = no validation (keep the last epoch) */
    uint64_t seed;       /* default 42 */
    int threads;         /* OpenMP threads for the batch loops, default 1; 0 = all cores. Results
                            do not depend on it (rows and tags are split, sums are not). */
    const float *init;   /* NULL = nn.Linear's random init; else T x D weights then T biases
                            (warm start from an existing head; remains owned by the caller) */
} clmr_head_fit_params_t;

clmr_head_fit_params_t clmr_head_fit_default_params(void);

typedef struct {
    int train_files, val_files;
    size_t train_chunks, val_chunks;
    int epochs_run;       /* epochs trained before stopping */
    int best_epoch;       /* 1-based epoch whose weights were kept */
    double best_val_loss; /* NaN without validation */
    double train_loss;    /* mean training loss of the kept epoch */
} clmr_head_fit_result_t;

/* Called after every epoch (1-based); val_loss is NaN without validation. */
typedef void (*clmr_head_fit_cb)(void *ud, int epoch, double train_loss, double val_loss,
                                 int is_best);

/* Fits the head. emb[f] holds n_chunks[f] chunk embeddings (D floats each) of file f; y is
 * (n_files, T) 0/1 labels. Writes fc_w (T, D) and fc_b (T) (caller-owned) and *res. Returns 0,
 * CLMR_EINVAL (bad sizes or parameters, no training file) or CLMR_ENOMEM, with *errmsg.
 * Thread-safe on distinct outputs. */
int clmr_head_fit(float *fc_w, float *fc_b, clmr_head_fit_result_t *res, const float *const *emb,
                  const int *n_chunks, int n_files, int D, const uint8_t *y, int T,
                  const clmr_head_fit_params_t *p, clmr_head_fit_cb cb, void *ud, char **errmsg);

/* Builds a new model: parent's encoder (tensors and BatchNorm statistics copied), a head of T tags
 * with weights fc_w (T, D) and fc_b (T) and the given tag names, parent's name; no metadata
 * (callers add provenance with clmr_model_set_meta). parent, tags, fc_w and fc_b remain owned by
 * the caller; *out is the caller's (clmr_model_close). Returns 0, CLMR_EINVAL (bad tags) or
 * CLMR_ENOMEM; *out is NULL on failure. Thread-safe (parent is only read). */

int clmr_head_model_build(clmr_model_t **out, const clmr_model_t *parent, const char *const *tags,
                          int T, const float *fc_w, const float *fc_b);

/* The same protocol for CLMR's MLP head: Linear(D, H) -> ReLU -> Linear(H, T), both layers
 * initialised like nn.Linear and trained together with Adam on BCE-with-logits, same split, early
 * stopping and seeding. Writes hid_w (H, D), hid_b (H), fc_w (T, H), fc_b (T). Returns 0,
 * CLMR_EINVAL (as above, or H outside 1..4096) or CLMR_ENOMEM, with *errmsg. */
int clmr_head_fit_mlp(float *hid_w, float *hid_b, float *fc_w, float *fc_b,
                      clmr_head_fit_result_t *res, const float *const *emb, const int *n_chunks,
                      int n_files, int D, const uint8_t *y, int T, int H,
                      const clmr_head_fit_params_t *p, clmr_head_fit_cb cb, void *ud,
                      char **errmsg);

/* clmr_head_model_build with an MLP head (hid_w (H, D), hid_b (H), fc_w (T, H), fc_b (T)). */
int clmr_head_model_build_mlp(clmr_model_t **out, const clmr_model_t *parent,
                              const char *const *tags, int T, int H, const float *hid_w,
                              const float *hid_b, const float *fc_w, const float *fc_b);

#endif
