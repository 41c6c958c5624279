/* supervised.h - fully supervised SampleCNN training: the whole encoder and a linear tag head
 * trained together from labelled audio (the CLMR paper's supervised baseline).
 *
 * DESIGN: every labelled file is decoded once and cut into chunks as clmr_track_analyze does
 * (consecutive, the tail dropped, a file shorter than one chunk zero-padded to one); each chunk is
 * a training example carrying its file's labels. All chunks sit in one block in RAM, validation
 * files first (the split is made by file, seeded, as fit-head's), so the validation chunks are one
 * contiguous run that the inference path reads in place. A step is clmr_train_dnnl_step_supervised
 * (train-mode BatchNorm, head, BCE-with-logits mean over batch x tags, backward, Adam) on a
 * batch gathered from a seeded per-epoch shuffle of the training chunks; the trainer is built for
 * one batch size, so the last partial batch of an epoch is dropped (a different one each epoch).
 * Validation runs in eval mode (BatchNorm with running statistics) through the ordinary inference
 * path on a model rebuilt from the current weights: see supervised.c for why. The best epoch's
 * weights (lowest validation loss) are kept and written; training stops after `patience` epochs
 * without improvement. The initialisation is PyTorch's for CLMR (clmr_pretrain_init_encoder) and
 * nn.Linear's for the head, all drawn from the seed.
 */
#ifndef CLMR_TRAIN_SUPERVISED_H
#define CLMR_TRAIN_SUPERVISED_H

#include "clmr/model.h"
#include "nn/samplecnn.h"
#include "train/labels.h"
#include "train/precision.h"
#include "train/samplecnn_train_ref.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n_layers;                     /* 0 = the init model's widths, or the official ones */
    int widths[CLMR_MAX_LAYERS + 1];  /* widths[0] = 1, widths[i + 1] = layer i's channels */
    int epochs;                       /* maximum, default 30 */
    int batch;                        /* chunks per step (>= 2), default 16 */
    double lr;                        /* Adam learning rate, default 3e-4 */
    double weight_decay;              /* Adam (coupled L2) weight decay, default 0 */
    int patience;                     /* epochs without a lower val loss before stopping, 5 */
    double val_fraction;              /* of the files, default 0.1; 0 = no validation */
    uint64_t seed;                    /* init, split and shuffle seed, default 42 */
    int threads;                      /* validation inference threads, 0 = all cores */
    clmr_train_precision_t precision; /* trainer arithmetic (precision.h), default fp32 */
} clmr_supervised_params_t;

clmr_supervised_params_t clmr_supervised_default_params(void);

/* The training config for p and n_tags tags: p's widths, or init's when p->n_layers is 0 and init
 * is not NULL, or the official widths. Returns 0 or CLMR_EINVAL (bad widths, or widths given and
 * different from init's) with *errmsg. */
int clmr_supervised_config(clmr_train_config_t *cfg, const clmr_supervised_params_t *p,
                           const clmr_model_t *init, int n_tags, char **errmsg);

/* The decoded chunks of a labels file. */
typedef struct {
    int chunk_samples;
    int n_files, n_val_files;
    size_t n_chunks, n_val_chunks; /* chunks [0, n_val_chunks) validate, the rest train */
    float *x;                      /* (n_chunks, chunk_samples) */
    int *item;                     /* (n_chunks) the labels item (row of labels->y) of each chunk */
} clmr_supervised_data_t;

/* Progress callback of the decoding: file i (0-based) of n done. */
typedef void (*clmr_supervised_load_cb)(void *ud, int i, int n);

/* Splits labels' files (a seeded permutation by seed; round(val_fraction x files), at least 1 and
 * at most files - 1 when val_fraction > 0 and there are 2 files or more) and decodes every file
 * once (clmr_audio_decode_file, default limits) into chunks of chunk_samples, validation files
 * first. Returns 0, or CLMR_EIO / CLMR_EAUDIO_* with *errmsg naming the file and its labels line,
 * or CLMR_ENOMEM. *out owns its arrays (clmr_supervised_data_free); zeroed on failure. */
int clmr_supervised_data_load(clmr_supervised_data_t *out, const clmr_labels_t *labels,
                              int chunk_samples, double val_fraction, uint64_t seed,
                              clmr_supervised_load_cb cb, void *ud, char **errmsg);

/* Frees d's arrays; accepts a zeroed struct. */
void clmr_supervised_data_free(clmr_supervised_data_t *d);

/* What the progress callback sees. After every step epoch_done is 0 and val_loss NaN; at the end
 * of an epoch (also a partial one cut short by a stop request) epoch_done is 1. */
typedef struct {
    int epoch, epochs;         /* 1-based current epoch; the maximum */
    int step, steps_per_epoch; /* 1-based step within the epoch */
    long total_steps;          /* Adam updates so far */
    double loss;               /* of the last step */
    double train_loss;         /* mean over this epoch's steps so far */
    double val_loss;           /* NaN before the epoch ends or without validation */
    int epoch_done, is_best;   /* is_best: this epoch's weights are now the kept ones */
    double chunks_per_s;       /* training throughput of this epoch (steps only) */
    double elapsed_s, epoch_s; /* since the fit started; this epoch (with validation) */
} clmr_supervised_progress_t;

/* Called after every step and at the end of every epoch; a non-zero return asks to stop: the
 * epoch in progress ends there (it is validated like a full one) and training stops. */
typedef int (*clmr_supervised_cb)(void *ud, const clmr_supervised_progress_t *p);

typedef struct {
    int train_files, val_files;
    size_t train_chunks, val_chunks;
    int steps_per_epoch;
    int epochs_run;       /* epochs (the last possibly partial) trained */
    int best_epoch;       /* 1-based epoch whose weights were kept */
    long steps;           /* Adam updates done */
    double best_val_loss; /* NaN without validation */
    double train_loss;    /* mean training loss of the kept epoch */
    int stopped;          /* 1 when the callback asked to stop */
    double wall_s;
} clmr_supervised_result_t;

/* Trains from d (labels->y gives each chunk's targets; labels->vocab the tags) starting from
 * init's encoder (NULL = random init), with p. Writes a new model to *out (the caller owns it:
 * clmr_model_close): the best epoch's encoder and running statistics, its head, the labels'
 * vocabulary, name "clmr-supervised", no metadata (callers add provenance). Returns 0, CLMR_EINVAL
 * (bad parameters, fewer training chunks than p->batch, non-finite loss: *errmsg says what to
 * change), CLMR_ENOMEM or CLMR_EDNNL; *out is NULL on failure. Not thread-safe (sets the calling
 * thread's OpenMP settings through the inference path). */
int clmr_supervised_fit(clmr_model_t **out, clmr_supervised_result_t *res,
                        const clmr_supervised_data_t *d, const clmr_labels_t *labels,
                        const clmr_model_t *init, const clmr_supervised_params_t *p,
                        clmr_supervised_cb cb, void *ud, char **errmsg);

#endif
