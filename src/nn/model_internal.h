/* model_internal.h - the layout of clmr_model_t, shared by the loader, inference and training. */
#ifndef CLMR_NN_MODEL_INTERNAL_H
#define CLMR_NN_MODEL_INTERNAL_H

#include "clmr/model.h"
#include "nn/samplecnn.h"

#define CLMR_MODEL_MAX_META 64

struct clmr_model {
    clmr_samplecnn_config_t cfg;
    clmr_samplecnn_weights_t w; /* pointers into params */
    float *params;              /* clmr_samplecnn_param_count(&cfg) floats, owned */
    /* BatchNorm folded into the convolutions (eval mode), computed at load: */
    float *fold_w[CLMR_MAX_LAYERS]; /* (OC, IC, K) */
    float *fold_b[CLMR_MAX_LAYERS]; /* (OC) */
    float *fold_mem;                /* owned block behind fold_w/fold_b */
    int sample_rate;
    char id[17]; /* 16 hex digits of the sha256 of the file */
    char *name;  /* owned */
    char **tags; /* (n_tags) owned strings */
    int n_meta;
    char *meta_key[CLMR_MODEL_MAX_META]; /* owned */
    char *meta_val[CLMR_MODEL_MAX_META]; /* owned */
};

/* Allocates a model with cfg's shapes, zeroed parameters, no tags and no metadata. Used by the
 * loader, by tests that build models in memory and by training. Returns 0 or CLMR_ENOMEM. */
int clmr__model_alloc(clmr_model_t **out, const clmr_samplecnn_config_t *cfg);

/* Recomputes fold_w/fold_b from the conv and BatchNorm parameters (eval mode, eps 1e-5):
 * s = gamma / sqrt(var + eps); fold_w = w * s; fold_b = (b - mean) * s + beta. */
void clmr__model_fold_bn(clmr_model_t *m);

/* Sets (or with val == NULL removes) a metadata entry, copying key and val; no checks on reserved
 * keys (the loader stores the file's metadata verbatim). Returns 0, CLMR_ENOMEM or CLMR_EINVAL
 * (more than CLMR_MODEL_MAX_META entries). */
int clmr__model_meta_put(clmr_model_t *m, const char *key, const char *val);

/* Tag head on encoder outputs emb (B, embed_dim): logits (B, n_tags), or sigmoid scores (B,
 * n_tags), for a linear or MLP head (head.c; the model must have a head). Thread-safe. */
void clmr__model_head_logits(const clmr_model_t *m, const float *emb, int B, float *logits);
void clmr__model_head_scores(const clmr_model_t *m, const float *emb, int B, float *scores);
/* scores (n_tags) = mean over n_chunks embeddings of the sigmoid head scores (CLMR's track
 * score), in double. No allocation. */
void clmr__model_head_mean_scores(const clmr_model_t *m, const float *emb, int n_chunks,
                                  double *scores);

/* Copies src's head parameters (linear or MLP) into dst, whose cfg must have the same embed_dim,
 * n_tags and head_hidden (tags are not copied). Returns 0 or CLMR_EINVAL when the heads differ. */
int clmr__model_copy_head(clmr_model_t *dst, const clmr_model_t *src);

#endif
