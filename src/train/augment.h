/* augment.h - the CLMR augmentation chain: random crop, polarity, noise, gain, high/low-pass,
 * delay, pitch shift, reverb (order and probabilities of the CLMR reference, see
 * docs/training-data.md).
 *
 * DESIGN: a clmr_augment_t is a per-thread workspace (scratch buffers allocated once at open, sized
 * for the chunk) plus the chain's parameters. All randomness comes from the caller's clmr_rng_t,
 * so a seed determines every view bit for bit. Each transform is a public function of its own
 * (tests and the trainer call them directly); clmr_augment_view draws the coins and parameters
 * and applies them in order. High/low-pass are windowed-sinc FIR filters written here; pitch and
 * reverb run libsox's "pitch"+"rate" and "reverb" effects in memory (see soxfx.h: those two calls
 * serialise on a process-wide lock, everything else runs in parallel).
 */
#ifndef CLMR_TRAIN_AUGMENT_H
#define CLMR_TRAIN_AUGMENT_H

#include "util/rng.h"

#include <stddef.h>

#define CLMR_AUGMENT_CHUNK 59049

typedef struct {
    int sample_rate;                 /* 22050 */
    size_t chunk;                    /* output length, 59049 */
    double p_polarity;               /* 0.8 */
    double p_noise;                  /* 0.01 */
    double noise_min, noise_max;     /* 1e-4, 1e-2: noise std as a fraction of std(x) */
    double p_gain;                   /* 0.3 */
    double gain_min_db, gain_max_db; /* -20, -1 (continuous uniform) */
    double p_filter;                 /* 0.8; then a fair coin picks high- or low-pass */
    double hp_min_hz, hp_max_hz;     /* 200, 1200 */
    double lp_min_hz, lp_max_hz;     /* 2200, 4000 */
    double p_delay;                  /* 0.3 */
    int delay_min_ms, delay_max_ms;  /* 200, 450 */
    int delay_step_ms;               /* 50: delays {200, 250, ..., 450} */
    double delay_volume;             /* 0.5: y = (x + volume * x_delayed) / 2 */
    double p_pitch;                  /* 0.6 */
    int pitch_min_cents;             /* -700 */
    int pitch_max_cents;             /* 700 */
    double p_reverb;                 /* 0.6 */
    int reverb_max;                  /* 99: reverberance, damping, room size uniform in 0..max */
} clmr_augment_params_t;

/* What one clmr_augment_view call did (for tests, logs and debugging). */
typedef struct {
    size_t crop_offset;
    int polarity;
    int noise;
    double noise_std; /* absolute std of the added noise */
    int gain;
    double gain_db;
    int filter; /* 0 none, 1 high-pass, 2 low-pass */
    double cutoff_hz;
    int delay;
    int delay_ms;
    int pitch;
    int pitch_cents;
    int pitch_fallback; /* 1 when the shifted signal was rejected and the input kept */
    int reverb;
    int reverberance, damping, room_size;
    int reverb_fallback;
    size_t nonfinite; /* non-finite output samples replaced by 0 (should stay 0) */
} clmr_augment_record_t;

typedef struct clmr_augment clmr_augment_t;

/* The CLMR reference values listed above. */
clmr_augment_params_t clmr_augment_default_params(void);

/* Creates a workspace in *out (NULL on failure). params may be NULL for the defaults and is
 * copied. Returns 0, CLMR_EINVAL (bad ranges, *errmsg names the field), CLMR_ENOMEM, or CLMR_EIO
 * when libsox cannot initialise. A workspace must be used by one thread at a time. */
int clmr_augment_open(clmr_augment_t **out, const clmr_augment_params_t *params, char **errmsg);

/* Frees the workspace; accepts NULL and *a == NULL, sets *a to NULL. */
void clmr_augment_close(clmr_augment_t **a);

/* The parameters the workspace was opened with. */
const clmr_augment_params_t *clmr_augment_params(const clmr_augment_t *a);

/* One augmented view: writes params.chunk samples to out (caller-owned) from src (n_src samples,
 * caller-owned, any length >= 1; shorter sources are zero-padded at the end), drawing every coin
 * and parameter from rng. rec (may be NULL) receives what was applied. Returns 0 or CLMR_EINVAL.
 * Pitch/reverb failures are not errors: the view keeps the unshifted signal (rec says so). */
int clmr_augment_view(clmr_augment_t *a, clmr_rng_t *rng, const float *src, size_t n_src,
                      float *out, clmr_augment_record_t *rec);

/* --- single transforms (x is modified in place, n <= params.chunk where a workspace is used) ---
 */

/* Copies n_out samples of src starting at a uniformly drawn offset in [0, n_src - n_out] into out;
 * when n_src < n_out copies all of src and zero-pads. Returns the offset. */
size_t clmr_augment_crop(float *out, size_t n_out, const float *src, size_t n_src, clmr_rng_t *rng);

/* x -> -x. */
void clmr_augment_polarity(float *x, size_t n);

/* Adds Gaussian noise of std rel_std * std(x); returns the absolute std used. */
double clmr_augment_noise(float *x, size_t n, double rel_std, clmr_rng_t *rng);

/* Multiplies by 10^(db/20). */
void clmr_augment_gain(float *x, size_t n, double db);

/* Half length of the FIR used for a cutoff: floor(8 * rate / (2 * cutoff)) taps each side, i.e.
 * 8 zero crossings of the sinc on each side (2 * half + 1 taps in total). */
size_t clmr_augment_fir_half(double cutoff_hz, int rate);

/* Hann-windowed sinc low-pass taps (2 * half + 1 values to h), normalised to unit DC gain. */
void clmr_augment_fir_design(float *h, size_t half, double cutoff_hz, int rate);

/* Windowed-sinc low-pass / high-pass (high-pass = x - low-pass(x)) at cutoff_hz, edges padded by
 * repeating the end samples. 20 Hz <= cutoff < rate/2. Returns 0 or CLMR_EINVAL. */
int clmr_augment_lowpass(clmr_augment_t *a, float *x, size_t n, double cutoff_hz);
int clmr_augment_highpass(clmr_augment_t *a, float *x, size_t n, double cutoff_hz);

/* y[i] = (x[i] + volume * x[i - d]) / 2 with d = floor(ms * rate / 1000) and x[i - d] = 0 before
 * the start. */
void clmr_augment_delay(float *x, size_t n, double ms, int rate, double volume);

/* libsox "pitch <cents>" then "rate <rate>", trimmed or zero-padded back to n. On libsox failure
 * or non-finite output x is left unchanged and CLMR_EIO / CLMR_EINVAL is returned. */
int clmr_augment_pitch(clmr_augment_t *a, float *x, size_t n, int cents);

/* libsox "reverb <reverberance> <damping> <room_size>" (each 0..100), channels averaged back to
 * mono, first n samples kept. On failure x is left unchanged and an error is returned. */
int clmr_augment_reverb(clmr_augment_t *a, float *x, size_t n, int reverberance, int damping,
                        int room_size);

#endif
