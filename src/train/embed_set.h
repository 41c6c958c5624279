/* embed_set.h - chunk embeddings of a labelled file list, through an on-disk cache.
 *
 * DESIGN: fit-head and eval both need, for every labelled file, the frozen encoder's embedding of
 * each chunk (clmr_track_analyze's chunk_emb: consecutive chunks, tail dropped, short files padded
 * to one chunk). The encoder dominates their cost, so embeddings are cached on disk keyed by
 * (sha256 of the audio file bytes, encoder id). The encoder id hashes the encoder's tensors and
 * widths, not the whole file, so a model produced by fit-head (same encoder, new head) finds the
 * embeddings its parent cached. Cache files are written atomically (temporary file + rename) and
 * anything unreadable or of the wrong shape is treated as a miss and recomputed.
 */
#ifndef CLMR_TRAIN_EMBED_SET_H
#define CLMR_TRAIN_EMBED_SET_H

#include "clmr/model.h"
#include "train/labels.h"

typedef struct {
    int n_files;
    int embed_dim;
    int *n_chunks;    /* (n_files) */
    float **emb;      /* (n_files) arrays of (n_chunks[i], embed_dim) raw encoder outputs */
    int encoder_runs; /* files that went through the encoder (cache misses) */
    int cache_hits;   /* files read from the cache */
} clmr_embed_set_t;

/* Encoder id: the first 16 hex digits of sha256(widths, encoder tensors and BN statistics).
 * Identical for a model and any head refit from it. Returns 0 or CLMR_ENOMEM. */
int clmr_embed_encoder_id(char out[17], const clmr_model_t *m);

/* Progress callback: file i (0-based) of n done, from the cache or not. */
typedef void (*clmr_embed_progress_cb)(void *ud, int i, int n, int from_cache);

/* Embeds every file of labels with m's encoder (inference context with `threads` threads, opened
 * only if some file misses the cache). cache_dir may be NULL (no cache); it is created if missing
 * (one level). Returns 0, or the first failure (CLMR_EIO, CLMR_EAUDIO_*, CLMR_EDNNL, CLMR_ENOMEM)
 * with *errmsg naming the audio file and its labels line. *out owns its arrays
 * (clmr_embed_set_free), zeroed on failure. Cache write failures are reported through *warn
 * (malloc'd, may be NULL) and do not fail the call. Not thread-safe per cache entry. */
int clmr_embed_set_build(clmr_embed_set_t *out, const clmr_model_t *m, const clmr_labels_t *labels,
                         const char *cache_dir, int threads, clmr_embed_progress_cb cb, void *ud,
                         char **warn, char **errmsg);

void clmr_embed_set_free(clmr_embed_set_t *s);

/* Track scores from chunk embeddings: mean over chunks of sigmoid(fc_w h + fc_b), in double, as
 * clmr_track_analyze's scores (the mean of chunk probabilities). scores: (n_tags). Needs a head. */
void clmr_embed_track_scores(double *scores, const clmr_model_t *m, const float *chunk_emb,
                             int n_chunks);

/* The cache file layer, exposed for tests: path of an entry (malloc'd), read (0, or
 * CLMR_ENOT_FOUND for a missing or invalid entry; *emb malloc'd) and atomic write. */
char *clmr__emb_cache_path(const char *dir, const char *enc_id, const char *audio_sha);
int clmr__emb_cache_read(float **emb, int *n_chunks, const char *path, int embed_dim);
int clmr__emb_cache_write(const char *path, const float *emb, int n_chunks, int embed_dim,
                          char **errmsg);

#endif
