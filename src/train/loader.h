/* loader.h - the contrastive training data pipeline: random crops from a pool of audio files, two
 * augmented views per track, batches of N pairs produced by background threads.
 *
 * DESIGN: the pool is scanned once at open (libsndfile header of every file: frames, rate,
 * channels, seekable); each crop then opens its file, seeks and reads only the frames it needs
 * (never a whole file), down-mixes to mono and, for rates other than 22,050 Hz, resamples with
 * libsox "rate". Files libsndfile cannot read go through the FFmpeg decoder (clmr/audio.h) once
 * at open and stay in memory within a byte budget (convert large pools of them to FLAC). Batches
 * live in a small ring of buffers allocated once at open. Batch k is a pure function of (seed, k):
 * its tracks come from per-epoch permutations of the pool (every track once per epoch, as a
 * dataset epoch would) and its random draws from RNG stream k, so any number of worker threads
 * yields the same batches in the same order, and a trainer resumes exactly by opening with
 * start_batch = the next batch index. The consumer's blocking time is measured.
 */
#ifndef CLMR_TRAIN_LOADER_H
#define CLMR_TRAIN_LOADER_H

#include "train/augment.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    size_t batch_pairs;   /* N: tracks per batch, the batch has 2N views (default 48) */
    int n_workers;        /* producer threads (default 1) */
    int ring;             /* batch buffers (default n_workers + 2, minimum 2) */
    uint64_t seed;        /* default 0 */
    uint64_t start_batch; /* index of the first batch delivered (resume), default 0 */
    int same_crop;        /* 0 (default, as the reference): each view crops independently;
                             1: both views share one crop */
    int recursive;        /* clmr_loader_open_dir descends into subdirectories (default 1) */
    int skip_bad;         /* 1 (default): unreadable or unsuitable files are skipped and reported
                             through on_skip; 0: the first one fails the open */
    size_t max_decoded_bytes; /* files libsndfile cannot read (m4a, aac, mka, webm, wv...) are
                                 decoded whole with FFmpeg at open (clmr_audio_decode_file) and
                                 kept in memory up to this many bytes in total (default 1 GiB,
                                 about 3.4 h of audio); 0 disables that fallback */
    void (*on_skip)(void *ud, const char *path, const char *reason); /* may be NULL */
    void *on_skip_ud;
    clmr_augment_params_t augment; /* chain parameters (chunk length, probabilities) */
} clmr_loader_params_t;

/* One batch, valid until the next clmr_loader_next or clmr_loader_close call. */
typedef struct {
    const float *x; /* (2N, chunk) row-major; rows i and i + N are the two views of track[i] */
    size_t n_pairs; /* N */
    size_t chunk;   /* 59049 */
    uint64_t index; /* batch number: start_batch, start_batch + 1, ... */
    const uint32_t *track;  /* (N) pool index of pair i's track (clmr_loader_track_path) */
    const uint64_t *offset; /* (2N) crop start of each view, in frames of the file */
} clmr_batch_t;

typedef struct {
    uint64_t batches;     /* delivered to the consumer */
    uint64_t waits;       /* clmr_loader_next calls that found no batch ready */
    double wait_s;        /* total time the consumer spent blocked */
    double max_wait_s;    /* longest single block */
    double produce_s;     /* worker time spent producing batches (summed over workers) */
    double produce_cpu_s; /* CPU time of the workers for those batches (contention-free cost) */
    uint64_t views;       /* views produced */
    uint64_t read_errors; /* crops that failed to read and were replaced by another track */
    uint64_t fallbacks;   /* pitch/reverb results rejected (view kept the unshifted signal) */
    uint64_t nonfinite;   /* non-finite samples replaced by 0 (input files or the chain) */
    size_t tracks;        /* usable files in the pool */
    size_t skipped;       /* files skipped at open */
    size_t resampled;     /* usable files not at 22,050 Hz (resampled per crop) */
    size_t decoded;       /* usable files decoded whole by FFmpeg at open (held in memory) */
} clmr_loader_stats_t;

typedef struct clmr_loader clmr_loader_t;

/* Defaults listed above (augment = clmr_augment_default_params()). */
clmr_loader_params_t clmr_loader_default_params(void);

/* Opens a loader over n_paths files (strings remain owned by the caller; copied) and starts the
 * workers. params may be NULL for defaults. Returns 0, CLMR_EINVAL (bad parameters, no usable file,
 * or with skip_bad = 0 the first unusable one), CLMR_ENOMEM, CLMR_EIO. *errmsg (may be NULL)
 * receives a message naming the file and the reason. */
int clmr_loader_open(clmr_loader_t **out, const char *const *paths, size_t n_paths,
                     const clmr_loader_params_t *params, char **errmsg);

/* As clmr_loader_open over the audio files found in dir (extensions wav, flac, ogg, oga, opus,
 * mp3, aif, aiff, aifc, au, w64, caf, m4a, mp4, aac, mka, webm, wv; names starting with '.'
 * ignored), in sorted path order.
 * CLMR_ENOT_FOUND when dir has no audio file, CLMR_EIO when it cannot be read. */
int clmr_loader_open_dir(clmr_loader_t **out, const char *dir, const clmr_loader_params_t *params,
                         char **errmsg);

/* Hands out the next batch (blocking until it is ready) and gives the previous one back to the
 * workers. Returns 0, or CLMR_EIO when a batch could not be produced (a track kept failing to
 * read; *errmsg says which). Call from one consumer thread only. */
int clmr_loader_next(clmr_loader_t *ld, clmr_batch_t *batch, char **errmsg);

/* Counters so far. Thread-safe. */
void clmr_loader_stats(clmr_loader_t *ld, clmr_loader_stats_t *st);

/* Number of usable tracks and the path of track i (owned by the loader). */
size_t clmr_loader_n_tracks(const clmr_loader_t *ld);
const char *clmr_loader_track_path(const clmr_loader_t *ld, size_t i);

/* Stops and joins the workers, frees everything; accepts NULL and *ld == NULL, sets *ld to NULL. */
void clmr_loader_close(clmr_loader_t **ld);

#endif
