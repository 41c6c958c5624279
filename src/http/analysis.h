/* analysis.h - what the HTTP layer needs from the decoder and the model, behind one small API.
 *
 * DESIGN: include/clmr/model.h and src/store/store.h both define a type named clmr_track_t, so no
 * translation unit can include both; this file is the only place the HTTP layer touches the model
 * and decoder headers, and it exposes plain arrays the route handlers can use next to the store.
 */
#ifndef CLMR_HTTP_ANALYSIS_H
#define CLMR_HTTP_ANALYSIS_H

#include "clmr/audio.h"

#include <stddef.h>

typedef struct clmr_model clmr_model_t;
typedef struct clmr_infer clmr_infer_t;
typedef struct clmr_tag_policy clmr_tag_policy_t;

/* Facts about the loaded model, copied at start-up; immutable afterwards (thread-safe to read). */
typedef struct {
    char id[64];
    char name[128];
    char path[1024];
    int n_tags, dim, chunk_samples, sample_rate;
    char **tags;               /* (n_tags) */
    clmr_tag_policy_t *policy; /* trusted tags and thresholds; NULL = none (all tags shown) */
} clmr_http_model_info_t;

/* Loads the model file and fills *info (including its tag policy, clmr/tag_policy.h: a malformed
 * policy refuses the model). Returns 0 or a CLMR_EMODEL_* code with *errmsg. */
int clmr_http_model_open(clmr_model_t **model, clmr_http_model_info_t *info, const char *path,
                         char **errmsg);
void clmr_http_model_close(clmr_model_t **model, clmr_http_model_info_t *info);

/* Result of decoding + analysing one upload. */
typedef struct {
    float *samples; /* (n_samples) decoded 22,050 Hz mono audio (kept for the FLAC pool) */
    size_t n_samples;
    double duration_s;
    int n_chunks, dim, n_tags;
    float *emb;          /* (dim) L2-normalised track embedding */
    float *scores;       /* (n_tags) mean sigmoid scores */
    float *chunk_scores; /* (n_chunks, n_tags) */
    double decode_s, infer_s;
    /* the file's own tags (clmr_audio_meta_t), NULL / 0 when absent; owned by priv */
    const char *meta_title, *meta_artist, *meta_album, *meta_genre;
    int meta_year, meta_track_number;
    clmr_audio_warning_t warnings[2]; /* a truncated or damaged file (clmr_audio_warnings) */
    int n_warnings;
    void *priv; /* owns the arrays above (decoder and model results) */
} clmr_http_analysis_t;

/* Decodes data (size bytes, caller-owned) with the given limits and analyses it on ctx.
 * deadline_s bounds the decode. Returns 0 or the decoder's / model's error code with *errmsg. */
int clmr_http_analyze(clmr_http_analysis_t *out, clmr_infer_t *ctx, const void *data, size_t size,
                      size_t max_input_bytes, double max_duration_s, double deadline_s,
                      char **errmsg);
void clmr_http_analysis_free(clmr_http_analysis_t *a);

/* An inference context on model with `threads` OpenMP threads (clmr_infer_open); one per thread. */
int clmr_http_infer_open(clmr_infer_t **ctx, const clmr_model_t *model, int threads, char **errmsg);

/* Sets the precision every later clmr_http_infer_open uses, from the configuration's text value
 * (auto|fp32|bf16): auto resolves to bf16 or fp32 with one log line saying which and why; an
 * explicit bf16 on a CPU without native bf16 returns CLMR_EINVAL with a sentence naming the key.
 * Called once at start-up, before any worker runs. */
int clmr_http_infer_configure(const char *precision, char **errmsg);
/* The resolved precision (fp32 until configured). Thread-safe after start-up. */
const char *clmr_http_infer_precision(void);
void clmr_http_infer_close(clmr_infer_t **ctx);

#endif
