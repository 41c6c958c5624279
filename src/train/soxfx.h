/* soxfx.h - run a chain of libsox effects over an in-memory float buffer (no files).
 *
 * DESIGN: libsox is used only through its effects-chain API, with our own input effect (drains a
 * float buffer) and output effect (collects into a caller buffer, down-mixing any channels the
 * effects created by averaging). Samples cross into libsox as 32-bit integers, so the input is
 * scaled to a peak of 1/8 (18 dB headroom for reverb build-up, still 28 bits of resolution) and
 * scaled back on output. libsox keeps process-wide state (its globals, the subsystem name written
 * by every message, an FFT cache), so it is initialised once with pthread_once and every chain
 * runs under one process-wide mutex: concurrent callers are safe but serialise. Any other code in
 * the process that uses libsox must go through this file (or take the same lock) to stay safe.
 */
#ifndef CLMR_TRAIN_SOXFX_H
#define CLMR_TRAIN_SOXFX_H

#include <stddef.h>

#define CLMR_SOX_MAX_ARGS 8

typedef struct {
    const char *name;                    /* libsox effect name, e.g. "pitch", "rate", "reverb" */
    int argc;                            /* number of entries used in argv */
    const char *argv[CLMR_SOX_MAX_ARGS]; /* arguments as on the sox command line */
} clmr_sox_effect_t;

/* Runs `in` (n_in mono samples at in_rate Hz, remains owned by the caller) through the effects in
 * order and writes at most out_cap mono samples to `out` (caller-owned); *n_out receives how many
 * were written (output beyond out_cap is computed and discarded). out_rate_hint is the rate
 * effects such as "rate" without arguments convert to; *out_rate (may be NULL) receives the rate
 * the chain actually ends at. Returns 0; CLMR_EINVAL for non-finite input, unknown effects or bad
 * arguments; CLMR_EIO when libsox fails. *errmsg (may be NULL) receives details.
 * Thread-safe (serialised by a process-wide lock, see DESIGN). */
int clmr_sox_apply(const float *in, size_t n_in, double in_rate, const clmr_sox_effect_t *effects,
                   int n_effects, double out_rate_hint, float *out, size_t out_cap, size_t *n_out,
                   double *out_rate, char **errmsg);

/* Initialises libsox once for the process (also done lazily by clmr_sox_apply). Returns 0 or
 * CLMR_EIO. Thread-safe. */
int clmr_sox_init(void);

#endif
