/* model.h - CLMR SampleCNN models: loading safetensors files and running inference.
 *
 * DESIGN: a clmr_model_t is immutable after loading and may be shared by any number of threads.
 * Inference state (oneDNN engine, stream, primitives, buffers) lives in a clmr_infer_t, one per
 * thread: primitives are built once per batch size and reused, buffers are allocated once.
 * Layer widths and depth come from the tensor shapes, so small test models run like the real one.
 */
#ifndef CLMR_MODEL_H
#define CLMR_MODEL_H

#include <stddef.h>

typedef struct clmr_model clmr_model_t;
typedef struct clmr_infer clmr_infer_t;

/* Loads and validates a safetensors model (see src/nn/model_load.c for the rules). Returns 0 or a
 * CLMR_EMODEL_* code with *errmsg naming the tensor or key at fault. */
int clmr_model_load(clmr_model_t **out, const char *path, char **errmsg);

/* Same from memory; data remains owned by the caller and is not referenced after return. */
int clmr_model_load_memory(clmr_model_t **out, const void *data, size_t size, char **errmsg);

/* Frees the model; accepts NULL and *m == NULL; sets *m to NULL. No clmr_infer_t built on the
 * model may be used afterwards. */
void clmr_model_close(clmr_model_t **m);

const char *clmr_model_name(const clmr_model_t *m);
/* Stable id: first 16 hex digits of the sha256 of the model file bytes. */
const char *clmr_model_id(const clmr_model_t *m);
int clmr_model_sample_rate(const clmr_model_t *m);
int clmr_model_chunk_samples(const clmr_model_t *m);
int clmr_model_embed_dim(const clmr_model_t *m);
/* 0 for an encoder-only model. */
int clmr_model_n_tags(const clmr_model_t *m);
const char *clmr_model_tag(const clmr_model_t *m, int i);
/* A metadata value from the file's __metadata__, or NULL. */
const char *clmr_model_meta(const clmr_model_t *m, const char *key);

typedef struct {
    int max_batch; /* chunks per oneDNN call, default 8 */
    int threads;   /* OpenMP threads for this context, 0 = all cores */
} clmr_infer_params_t;

clmr_infer_params_t clmr_infer_default_params(void);

/* Builds an inference context for model (which must outlive it). Not thread-safe: one context
 * per thread. Returns 0, CLMR_ENOMEM or CLMR_EDNNL. */
int clmr_infer_open(clmr_infer_t **out, const clmr_model_t *model, const clmr_infer_params_t *params,
                    char **errmsg);
void clmr_infer_close(clmr_infer_t **ctx);

/* Runs n chunks (n x chunk_samples floats at x) through the encoder and head. Writes the raw
 * encoder outputs to emb (n x embed_dim, may be NULL) and sigmoid tag scores to scores
 * (n x n_tags, may be NULL; ignored for encoder-only models). Any n >= 1 is accepted; it is split
 * into batches of at most max_batch. Returns 0 or CLMR_EDNNL. */
int clmr_infer_run(clmr_infer_t *ctx, const float *x, int n, float *emb, float *scores);

/* Whole-track analysis following the CLMR evaluation protocol: consecutive non-overlapping chunks,
 * the tail that does not fill a chunk dropped, a track shorter than one chunk zero-padded to one. */
typedef struct {
    int n_chunks;
    int embed_dim;
    int n_tags;
    float *chunk_emb;    /* (n_chunks, embed_dim) raw encoder outputs */
    float *chunk_scores; /* (n_chunks, n_tags) sigmoid scores; NULL when n_tags == 0 */
    float *emb;          /* (embed_dim) L2-normalised mean of chunk_emb */
    float *scores;       /* (n_tags) mean of chunk_scores; NULL when n_tags == 0 */
} clmr_track_t;

/* Analyses n_samples (> 0) samples at the model's rate. *out owns its arrays; free with
 * clmr_track_free. Returns 0, CLMR_EINVAL (no samples), CLMR_ENOMEM or CLMR_EDNNL. */
int clmr_track_analyze(clmr_track_t *out, clmr_infer_t *ctx, const float *samples, size_t n_samples);
void clmr_track_free(clmr_track_t *t);

#endif
