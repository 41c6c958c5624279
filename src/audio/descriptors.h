/* descriptors.h - tempo, onset density and EBU R128 loudness of decoded audio (issue 17).
 *
 * DESIGN: computed once per ingest from the 22,050 Hz mono float signal the decoder already
 * produced for inference, so no second decode. Tempo and onsets come from libaubio (the library
 * Essentia/AudioMuse users know), loudness from libebur128 (the reference EBU R128
 * implementation). The mono signal is measured as "dual mono" (EBUR128_DUAL_MONO): a centre-panned
 * stereo mix downmixed to mono then reads the same LUFS as the stereo original. No musical key:
 * Debian ships no key-detection library. Tempo and onset density are measured on at most the
 * middle 90 s of a track (aubio's trackers dominate the cost); loudness and peaks on all of it.
 */
#ifndef CLMR_AUDIO_DESCRIPTORS_H
#define CLMR_AUDIO_DESCRIPTORS_H

#include <stddef.h>

typedef struct {
    double bpm;               /* beats per minute; NAN when no beat was found */
    double bpm_confidence;    /* aubio's tempo confidence (>= 0; about 0.1+ for a steady beat) */
    double onset_rate;        /* detected onsets per second of audio (>= 0) */
    double loudness_lufs;     /* integrated loudness, LUFS; NAN for silence (below the gate) */
    double loudness_range_lu; /* EBU R128 loudness range (LRA), LU; NAN when undefined */
    double true_peak_dbtp;    /* true peak, dBTP (4x oversampled); NAN for digital silence */
} clmr_descriptors_t;

/* Computes the descriptors of x (n mono samples at `rate` Hz, caller-owned, not modified) into
 * *out. Returns 0, CLMR_EINVAL (n == 0, rate outside 8000..192000) or CLMR_ENOMEM, with *errmsg
 * (optional, malloc'd) on error. Thread-safe: every call builds its own aubio / libebur128
 * state. Cost against inference: bench/bench_features.c (docs/api.md has a measurement). */
int clmr_descriptors_compute(clmr_descriptors_t *out, const float *x, size_t n, int rate,
                             char **errmsg);

#endif
