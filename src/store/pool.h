/* pool.h - the audio pool: ingested tracks kept as 22,050 Hz mono FLAC files for fine-tuning.
 *
 * DESIGN: one file per track at POOL_DIR/<first 2 hex of sha256>/<sha256>.flac (256 fan-out
 * directories keep directories small at 1M tracks). Writes are atomic: samples go to a temp file
 * "<sha256>.flac.tmp.<random>" in the same directory, which is fsync'd, renamed over the final
 * name and followed by an fsync of the directory, so after a crash a file either exists complete
 * or not at all (temp leftovers are removed by clmr_pool_sweep). Samples are stored as 24-bit PCM
 * FLAC (SF_FORMAT_FLAC | SF_FORMAT_PCM_24): the decoder's float samples in [-1, 1] come back
 * within 2^-23 (far below the model's sensitivity and below 16-bit's 2^-15), at roughly half the
 * size of raw float; values outside [-1, 1] are clipped (libsndfile's clipping mode), NaN/Inf
 * are refused.
 *
 * All functions are thread-safe for different sha256 values; concurrent writes of the SAME sha256
 * are safe too (each uses its own temp file and rename is atomic; the last rename wins).
 */
#ifndef CLMR_STORE_POOL_H
#define CLMR_STORE_POOL_H

#include <stddef.h>

#define CLMR_POOL_RATE 22050

/* Writes the pool path of sha256 into buf (size >= strlen(pool_dir) + 80): 0, or CLMR_EINVAL when
 * sha256 is not 64 lowercase hex characters or buf is too small. rel (optional, size >= 80)
 * receives the path relative to the data directory ("pool/ab/<sha>.flac"). */
int clmr_pool_path(const char *pool_dir, const char *sha256, char *buf, size_t size, char *rel,
                   size_t rel_size);

/* Atomically writes n mono samples at 22,050 Hz as FLAC (see DESIGN). x remains owned by the
 * caller. CLMR_EINVAL for n == 0 or non-finite samples, CLMR_EDB_FULL when the disk is full
 * (ENOSPC/EDQUOT), CLMR_EIO for other file errors (errmsg says which). */
int clmr_pool_write(const char *pool_dir, const char *sha256, const float *x, size_t n,
                    char **errmsg);

/* Reads the track back: *x malloc'd (free()) with *n samples. CLMR_ENOT_FOUND when no file,
 * CLMR_EIO when unreadable or not 22,050 Hz mono. */
int clmr_pool_read(const char *pool_dir, const char *sha256, float **x, size_t *n, char **errmsg);

/* 1 when the file exists, 0 otherwise. */
int clmr_pool_exists(const char *pool_dir, const char *sha256);

/* Removes the file (and fsyncs its directory). CLMR_ENOT_FOUND when absent, CLMR_EIO otherwise. */
int clmr_pool_delete(const char *pool_dir, const char *sha256, char **errmsg);

/* Walks the pool and calls cb for every orphan: temp leftovers (is_tmp = 1) and FLAC files whose
 * sha256 is_known() rejects (is_known returns 1 for a catalogued id). path is absolute-ish
 * (pool_dir + relative) and valid only during the call; cb returns non-zero to stop. Files with
 * unexpected names are ignored (never deleted by the sweep). */
typedef int (*clmr_pool_known_cb)(void *ud, const char *sha256);
typedef int (*clmr_pool_orphan_cb)(void *ud, const char *path, int is_tmp);
int clmr_pool_list_orphans(const char *pool_dir, clmr_pool_known_cb is_known, void *known_ud,
                           clmr_pool_orphan_cb cb, void *ud, char **errmsg);

#endif
