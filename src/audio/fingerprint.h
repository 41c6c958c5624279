/* fingerprint.h - acoustic fingerprints for duplicate detection (issue 17), on libchromaprint.
 *
 * DESIGN: the raw Chromaprint fingerprint (one 32-bit sub-fingerprint per ~0.124 s of audio, the
 * same features AcoustID uses) is computed from the decoded 22,050 Hz mono signal the ingest
 * already holds, over at most the first CLMR_FINGERPRINT_MAX_S seconds (as fpcalc does). Two
 * fingerprints are compared by their bit error rate at the best alignment within
 * +-CLMR_FINGERPRINT_MAX_SHIFT items (encoder delays and padding shift audio by tens of ms): the
 * same recording in another codec or with other tags differs in a few percent of bits, unrelated
 * audio in about half. Matching also requires similar durations (clmr_fingerprint_same_length), so
 * a shared intro does not make two different edits one recording.
 */
#ifndef CLMR_AUDIO_FINGERPRINT_H
#define CLMR_AUDIO_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#define CLMR_FINGERPRINT_MAX_S 120.0  /* seconds of audio fingerprinted */
#define CLMR_FINGERPRINT_MAX_SHIFT 8  /* items (~1 s) of alignment searched each way */
#define CLMR_FINGERPRINT_MIN_ITEMS 16 /* shortest overlap compared (~2 s) */
#define CLMR_FINGERPRINT_MATCH 0.85   /* similarity at or above which two are one recording */

/* Computes the raw fingerprint of x (n mono samples at `rate` Hz, caller-owned) into *fp, a
 * malloc'd array (free()) of *n_items words. Returns 0, CLMR_EINVAL (too short to fingerprint:
 * under about 3 s, or a bad rate) or CLMR_ENOMEM, with *errmsg (optional). Thread-safe (one
 * Chromaprint context per call). */
int clmr_fingerprint_compute(uint32_t **fp, int *n_items, const float *x, size_t n, int rate,
                             char **errmsg);

/* Similarity of two raw fingerprints: 1 - (bit error rate at the best alignment), in [0, 1];
 * 0 when they overlap by fewer than CLMR_FINGERPRINT_MIN_ITEMS items. Pure function. */
double clmr_fingerprint_similarity(const uint32_t *a, int na, const uint32_t *b, int nb);

/* 1 when durations a_s and b_s (seconds) are close enough for one recording in two encodings
 * (within max(1.5 s, 2%)), else 0. */
int clmr_fingerprint_same_length(double a_s, double b_s);

/* Duration tolerance used by clmr_fingerprint_same_length around d_s (seconds), for range
 * queries in the store. */
double clmr_fingerprint_length_tolerance(double d_s);

#endif
