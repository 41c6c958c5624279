/* finetune.h - one background fine-tuning run: contrastive (NT-Xent) training of a parent model's
 * encoder on pool audio with a tag-distillation term, then the evaluation that feeds the gate.
 *
 * DESIGN: the loop is the offline pretraining loop's library parts (train/pretrain.h state and
 * oneDNN step, train/loader.h augmented views) with one addition: for every batch the parent
 * (eval mode, its own inference context) scores the same views, and train/distill.h keeps the
 * student's tag probabilities, through the parent's frozen head, close to those scores (learning
 * without forgetting). The run knows nothing about HTTP or SQLite: the caller passes file lists
 * and a progress callback that can cancel, and receives the saved model and the gate metrics.
 * Thread budget: the caller's thread runs the oneDNN primitives with `threads` OpenMP threads
 * (omp_set_num_threads applies to the calling thread only), the loader uses one producer thread.
 */
#ifndef CLMR_TRAIN_FINETUNE_H
#define CLMR_TRAIN_FINETUNE_H

/* Forward declaration keeps this header independent of clmr/model.h. */
typedef struct clmr_model clmr_model_t;

#include "train/precision.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    long step, steps;    /* steps done / planned */
    float contrastive;   /* this step's NT-Xent loss */
    float distillation;  /* this step's distillation term (already weighted) */
    double chunks_per_s; /* training views per second so far (2N per step) */
    double eta_s;        /* estimated seconds to the last step */
} clmr_finetune_progress_t;

typedef struct {
    long steps;          /* >= 1 */
    int batch_pairs;     /* N (2N views per step), >= 1 */
    float learning_rate; /* Adam lr */
    uint64_t seed;
    int threads; /* OpenMP threads of the calling thread (>= 1) */
    /* trainer arithmetic (precision.h; zero = fp32); auto is resolved silently, so callers
     * that must log a fallback resolve it themselves */
    clmr_train_precision_t precision;
    float distill_weight;        /* 0 = no distillation; ignored for encoder-only parents */
    long checkpoint_every;       /* steps between checkpoints (>= 1) */
    const char *checkpoint_path; /* required: written atomically (pretrain.h format) */
    const char *out_path;        /* required: the new model (.safetensors) */
    const char *name;            /* model name */
    const char *labels_path;     /* labelled evaluation set (labels.h JSON lines) or NULL */
    const char *provenance_json; /* JSON object text stored as metadata "finetune" (may be NULL) */
    /* Called after every step; a non-zero return cancels the run (a checkpoint is written and
     * CLMR_ECANCELLED returned). May be NULL. */
    int (*progress)(void *ud, const clmr_finetune_progress_t *p);
    /* Polled during the evaluation that follows training (per held-out track, per retrieval
     * batch, per labelled model): a non-zero return stops it with CLMR_ECANCELLED (the new
     * model file is left for the caller to remove). May be NULL. */
    int (*stop)(void *ud);
    void *ud;
} clmr_finetune_params_t;

typedef struct {
    long steps_done;
    double chunks_per_s;
    float first_loss, last_loss; /* contrastive + distillation, first and last step */
    /* evaluation on the held-out files */
    int heldout;
    double tag_drift;    /* mean |p_new - p_parent| over held-out tracks and tags (0 w/o head) */
    double top5_overlap; /* mean |top5_new & top5_parent| / 5 (1 w/o head) */
    double retrieval_new, retrieval_parent; /* top-1 accuracy of finding a view's pair */
    /* with labels_path and a tag head: macro ROC-AUC / PR-AUC (metrics.h) of both models; NaN
     * otherwise */
    double roc_auc_new, pr_auc_new, roc_auc_parent, pr_auc_parent;
    char model_id[17]; /* id of the saved model file */
} clmr_finetune_result_t;

/* Runs the fine-tuning of parent (read only; must outlive the call) on the train files and
 * evaluates on the held-out files (both lists of pool audio paths, owned by the caller; n_held
 * >= 1). Returns 0 with *res filled and the model saved at out_path; CLMR_ECANCELLED when the
 * progress callback cancelled (checkpoint written, no model); CLMR_EINVAL (bad parameters, widths),
 * CLMR_EIO, CLMR_ENOMEM, CLMR_EDNNL with *errmsg. Not thread-safe with respect to shared
 * arguments; any number of runs may use different arguments concurrently. */
int clmr_finetune_run(const clmr_model_t *parent, const char *const *train, size_t n_train,
                      const char *const *held, size_t n_held, const clmr_finetune_params_t *p,
                      clmr_finetune_result_t *res, char **errmsg);

#endif
