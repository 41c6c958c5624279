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

/* Loads and validates a safetensors model (see src/nn/model_load.c and docs/model-format.md for
 * the rules). Returns 0 or a CLMR_EMODEL_* code (CLMR_ENOMEM) with *errmsg (malloc'd, caller
 * frees; may be NULL) naming the file, the tensor or key at fault and the problem; *out is NULL
 * on failure. On success the caller owns *out (clmr_model_close). Thread-safe: no shared state. */
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
/* Hidden width of an MLP tag head (fc.0 -> ReLU -> fc.2, CLMR's MLP evaluation head); 0 for a
 * linear head or no head. */
int clmr_model_head_hidden(const clmr_model_t *m);
const char *clmr_model_tag(const clmr_model_t *m, int i);
/* A metadata value from the file's __metadata__, or NULL. */
const char *clmr_model_meta(const clmr_model_t *m, const char *key);

/* Introspection (clmrd inspect, /v1/models). Layer i of n_layers has clmr_model_width(m, i) output
 * channels (0 for an out-of-range i); param_count counts every float parameter (conv, BatchNorm
 * affine and running statistics, head). */
int clmr_model_n_layers(const clmr_model_t *m);
int clmr_model_width(const clmr_model_t *m, int i);
size_t clmr_model_param_count(const clmr_model_t *m);
/* Metadata entry i (0 <= i < n_meta) in file order: returns its key and stores its value in *val;
 * NULL when i is out of range. Pointers stay valid until the entry changes or the model closes. */
int clmr_model_n_meta(const clmr_model_t *m);
const char *clmr_model_meta_at(const clmr_model_t *m, int i, const char **val);

/* Editing, for code that builds or trains a model (training, fit-head, tests). A model is only
 * edited before it is shared with other threads; none of these are thread-safe. Strings are
 * copied (they remain owned by the caller).
 *
 * clmr_model_set_meta sets (val != NULL) or removes (val == NULL) a free-form metadata entry.
 * The keys format, sample_rate, chunk_samples, name and tags are derived from the model and are
 * refused here (use set_name/set_tags). Returns 0, CLMR_EINVAL (empty/reserved key, or more than
 * 64 entries) or CLMR_ENOMEM. */
int clmr_model_set_meta(clmr_model_t *m, const char *key, const char *val);
/* Sets the model name (non-empty). Returns 0, CLMR_EINVAL or CLMR_ENOMEM. */
int clmr_model_set_name(clmr_model_t *m, const char *name);
/* Sets the head's tag names: n must equal clmr_model_n_tags(m) and the names must be non-empty
 * and unique. Returns 0, CLMR_EINVAL or CLMR_ENOMEM; on failure the old tags are kept. */
int clmr_model_set_tags(clmr_model_t *m, const char *const *tags, int n);

/* Writes m to path in the format clmr_model_load reads (official tensor names, num_batches_tracked
 * written as 0, metadata = every entry of m plus the derived format, sample_rate, chunk_samples,
 * name and tags), atomically: a temporary file in the same directory is written, fsync'd and
 * renamed over path, then the directory is fsync'd, so readers see the old file or the complete
 * new one. The model needs a name, and tags if it has a head. m is not modified (its id stays
 * that of the file it was loaded from; load the saved file to get the new id). Safe to call
 * concurrently with inference on m. Returns 0, CLMR_EINVAL (no name or missing tags),
 * CLMR_ENOMEM or CLMR_EIO with *errmsg naming the path and the failing step. */
int clmr_model_save(const clmr_model_t *m, const char *path, char **errmsg);

/* Arithmetic of the convolutions. fp32 everywhere, or bf16 activations and weights with fp32
 * accumulation, bias, head and embeddings (docs/inference.md has the measured accuracy). AUTO is
 * bf16 where the CPU has native bf16 instructions (AVX512-BF16, AMX) and fp32 elsewhere. */
typedef enum {
    CLMR_PRECISION_FP32 = 0, /* zero: params initialised without it keep today's fp32 */
    CLMR_PRECISION_BF16 = 1,
    CLMR_PRECISION_AUTO = 2,
} clmr_precision_t;

/* "auto", "fp32" or "bf16" (NULL for other values). */
const char *clmr_precision_name(clmr_precision_t p);
/* Parses "auto|fp32|bf16" into *out; returns 0 or CLMR_EINVAL. */
int clmr_precision_parse(const char *s, clmr_precision_t *out);
/* 1 when oneDNN may use native bf16 instructions on this CPU (its effective ISA, which
 * ONEDNN_MAX_CPU_ISA can lower), else 0. Thread-safe. */
int clmr_infer_cpu_has_bf16(void);
/* Resolves a requested precision to the one a context will run: AUTO becomes BF16 or FP32 (by
 * clmr_infer_cpu_has_bf16), FP32 stays, BF16 stays where the CPU has it and is refused with
 * CLMR_EINVAL and a sentence in *errmsg (malloc'd, may be NULL) where it would be emulated. */
int clmr_infer_resolve_precision(clmr_precision_t req, clmr_precision_t *out, char **errmsg);

typedef struct {
    int max_batch;              /* chunks per oneDNN call, default 8 */
    int threads;                /* OpenMP threads for this context, 0 = all cores */
    clmr_precision_t precision; /* default CLMR_PRECISION_FP32 (callers opt in to AUTO/BF16) */
} clmr_infer_params_t;

clmr_infer_params_t clmr_infer_default_params(void);

/* Builds an inference context for model (which must outlive it). Not thread-safe: one context
 * per thread. Returns 0, CLMR_ENOMEM, CLMR_EDNNL, or CLMR_EINVAL for a precision the CPU cannot
 * run (see clmr_infer_resolve_precision). */
int clmr_infer_open(clmr_infer_t **out, const clmr_model_t *model,
                    const clmr_infer_params_t *params, char **errmsg);
void clmr_infer_close(clmr_infer_t **ctx);

/* The precision the context runs (FP32 or BF16, never AUTO). */
clmr_precision_t clmr_infer_precision(const clmr_infer_t *ctx);

/* Builds every primitive a call of any n can need (each batch size up to max_batch, each lane)
 * and runs each once on silence, so that the first real request pays no JIT, layout or
 * first-touch cost. Same threading rule as clmr_infer_run. Returns 0, CLMR_ENOMEM or
 * CLMR_EDNNL. */
int clmr_infer_warm(clmr_infer_t *ctx, char **errmsg);

/* Runs n chunks (n x chunk_samples floats at x) through the encoder and head. Writes the raw
 * encoder outputs to emb (n x embed_dim, may be NULL) and sigmoid tag scores to scores
 * (n x n_tags, may be NULL; ignored for encoder-only models). Any n >= 1 is accepted; it is split
 * into batches of at most max_batch. Returns 0 or CLMR_EDNNL. */
int clmr_infer_run(clmr_infer_t *ctx, const float *x, int n, float *emb, float *scores);

/* Whole-track analysis following the CLMR evaluation protocol: consecutive non-overlapping chunks,
 * the tail that does not fill a chunk dropped, a track shorter than one chunk zero-padded to one.
 */
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
int clmr_track_analyze(clmr_track_t *out, clmr_infer_t *ctx, const float *samples,
                       size_t n_samples);
void clmr_track_free(clmr_track_t *t);

#endif
