/* augment.c - the CLMR augmentation chain (see augment.h).
 *
 * DESIGN: transforms work in place on one chunk-sized buffer. The FIR filters are Hann-windowed
 * sincs with 8 zero crossings each side (2 * floor(4 * rate / cutoff) + 1 taps: 883 taps at 200 Hz,
 * 81 at 2200 Hz), normalised to unit DC gain; the high-pass is the complementary x - lowpass(x), so
 * both have the same transition band (about 0.2 x cutoff wide) and Hann's ~44 dB stop band. The
 * convolution is a blocked "axpy over taps" (an output block of 1024 stays in L1 while every tap
 * streams over it), which compilers vectorise without reassociating sums, so results are the same
 * on every run. Scratch: a padded input and an output block, allocated at open for the lowest
 * cutoff accepted (20 Hz).
 */
#include "train/augment.h"

#include "clmr/error.h"
#include "train/soxfx.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_CUTOFF_HZ 20.0
#define FIR_ZEROS 8.0

struct clmr_augment {
    clmr_augment_params_t p;
    size_t cap;      /* samples a workspace transform accepts (params.chunk) */
    size_t max_half; /* largest FIR half length (at MIN_CUTOFF_HZ) */
    float *taps;     /* (2 * max_half + 1) */
    float *xpad;     /* (cap + 2 * max_half) */
    float *tmp;      /* (cap) libsox output / filter output */
};

clmr_augment_params_t clmr_augment_default_params(void)
{
    clmr_augment_params_t p = {
        .sample_rate = 22050,
        .chunk = CLMR_AUGMENT_CHUNK,
        .p_polarity = 0.8,
        .p_noise = 0.01,
        .noise_min = 1e-4,
        .noise_max = 1e-2,
        .p_gain = 0.3,
        .gain_min_db = -20,
        .gain_max_db = -1,
        .p_filter = 0.8,
        .hp_min_hz = 200,
        .hp_max_hz = 1200,
        .lp_min_hz = 2200,
        .lp_max_hz = 4000,
        .p_delay = 0.3,
        .delay_min_ms = 200,
        .delay_max_ms = 450,
        .delay_step_ms = 50,
        .delay_volume = 0.5,
        .p_pitch = 0.6,
        .pitch_min_cents = -700,
        .pitch_max_cents = 700,
        .p_reverb = 0.6,
        .reverb_max = 99,
    };
    return p;
}

static int check_params(const clmr_augment_params_t *p, char **errmsg)
{
#define BAD(cond, what)                                                                            \
    if (cond) return clmr_set_err(errmsg, CLMR_EINVAL, "augment: invalid %s", what)
    BAD(p->sample_rate < 1000 || p->sample_rate > 384000, "sample_rate");
    BAD(p->chunk < 1 || p->chunk > (size_t)1 << 26, "chunk");
    BAD(!(p->noise_min >= 0 && p->noise_max >= p->noise_min), "noise range");
    BAD(!(p->gain_max_db >= p->gain_min_db), "gain range");
    BAD(!(p->hp_min_hz >= MIN_CUTOFF_HZ && p->hp_max_hz >= p->hp_min_hz &&
          p->hp_max_hz < p->sample_rate / 2.0),
        "high-pass range");
    BAD(!(p->lp_min_hz >= MIN_CUTOFF_HZ && p->lp_max_hz >= p->lp_min_hz &&
          p->lp_max_hz < p->sample_rate / 2.0),
        "low-pass range");
    BAD(p->delay_min_ms < 0 || p->delay_max_ms < p->delay_min_ms || p->delay_step_ms <= 0,
        "delay range");
    BAD(p->pitch_min_cents < -2400 || p->pitch_max_cents > 2400 ||
            p->pitch_max_cents < p->pitch_min_cents,
        "pitch range");
    BAD(p->reverb_max < 0 || p->reverb_max > 100, "reverb_max");
#undef BAD
    return 0;
}

int clmr_augment_open(clmr_augment_t **out, const clmr_augment_params_t *params, char **errmsg)
{
    *out = NULL;
    clmr_augment_params_t p = params ? *params : clmr_augment_default_params();
    int err = check_params(&p, errmsg);
    if (err) return err;
    if (clmr_sox_init() != 0) return clmr_set_err(errmsg, CLMR_EIO, "libsox failed to initialise");
    clmr_augment_t *a = calloc(1, sizeof *a);
    if (!a) return clmr_set_err(errmsg, CLMR_ENOMEM, "augment: out of memory");
    a->p = p;
    a->cap = p.chunk;
    a->max_half = clmr_augment_fir_half(MIN_CUTOFF_HZ, p.sample_rate);
    a->taps = malloc((2 * a->max_half + 1) * sizeof(float));
    a->xpad = malloc((a->cap + 2 * a->max_half) * sizeof(float));
    a->tmp = malloc(a->cap * sizeof(float));
    if (!a->taps || !a->xpad || !a->tmp) {
        clmr_augment_close(&a);
        return clmr_set_err(errmsg, CLMR_ENOMEM, "augment: out of memory");
    }
    /* Touch the scratch once so the first view does not pay the page faults. */
    memset(a->xpad, 0, (a->cap + 2 * a->max_half) * sizeof(float));
    memset(a->tmp, 0, a->cap * sizeof(float));
    *out = a;
    return 0;
}

void clmr_augment_close(clmr_augment_t **a)
{
    if (!a || !*a) return;
    free((*a)->taps);
    free((*a)->xpad);
    free((*a)->tmp);
    free(*a);
    *a = NULL;
}

const clmr_augment_params_t *clmr_augment_params(const clmr_augment_t *a)
{
    return &a->p;
}

size_t clmr_augment_crop(float *out, size_t n_out, const float *src, size_t n_src, clmr_rng_t *rng)
{
    if (n_src < n_out) {
        memcpy(out, src, n_src * sizeof(float));
        memset(out + n_src, 0, (n_out - n_src) * sizeof(float));
        return 0;
    }
    size_t off = (size_t)clmr_rng_below(rng, (uint64_t)(n_src - n_out) + 1);
    memcpy(out, src + off, n_out * sizeof(float));
    return off;
}

void clmr_augment_polarity(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = -x[i];
}

double clmr_augment_noise(float *x, size_t n, double rel_std, clmr_rng_t *rng)
{
    if (n == 0) return 0;
    double mean = 0, var = 0;
    for (size_t i = 0; i < n; i++)
        mean += x[i];
    mean /= (double)n;
    for (size_t i = 0; i < n; i++)
        var += ((double)x[i] - mean) * ((double)x[i] - mean);
    /* Unbiased estimate, as torch.std (the reference) uses. */
    double sd = n > 1 ? sqrt(var / (double)(n - 1)) : 0;
    double noise_sd = rel_std * sd;
    if (noise_sd > 0)
        for (size_t i = 0; i < n; i++)
            x[i] = (float)(x[i] + noise_sd * clmr_rng_normal(rng));
    return noise_sd;
}

void clmr_augment_gain(float *x, size_t n, double db)
{
    float g = (float)pow(10.0, db / 20.0);
    for (size_t i = 0; i < n; i++)
        x[i] *= g;
}

size_t clmr_augment_fir_half(double cutoff_hz, int rate)
{
    return (size_t)floor(FIR_ZEROS * rate / (2.0 * cutoff_hz));
}

void clmr_augment_fir_design(float *h, size_t half, double cutoff_hz, int rate)
{
    const double pi = 3.14159265358979323846;
    double fc = cutoff_hz / rate; /* cycles per sample */
    size_t taps = 2 * half + 1;
    double sum = 0;
    for (size_t k = 0; k < taps; k++) {
        double t = (double)k - (double)half;
        double w = half ? 0.5 - 0.5 * cos(2 * pi * (double)k / (double)(taps - 1)) : 1.0;
        double arg = 2 * pi * fc * t;
        double sinc = t == 0 ? 1.0 : sin(arg) / arg;
        double v = 2 * fc * w * sinc;
        h[k] = (float)v;
        sum += v;
    }
    for (size_t k = 0; k < taps; k++)
        h[k] = (float)(h[k] / sum);
}

/* y[i] = sum_k h[k] * xp[i + k] for i < n, blocked so each output block stays in L1. Compiled for
 * AVX-512, AVX2 and baseline x86-64 (picked at load time): the build does not assume -march=native,
 * and the wide versions are faster (about 1.5x here, same-run ratio to pitch). Every version does
 * the same operations in the same order per output sample (no reassociation, and ISO C mode keeps
 * GCC from contracting into FMA), so results do not depend on the machine. */
/* Not under the sanitizers: their runtimes are not initialised yet when the ifunc resolver runs
 * (the thread-sanitizer build crashes in it at load time). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) &&                             \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void
fir_convolve(float *restrict y, const float *restrict xp, const float *restrict h, size_t taps,
             size_t n)
{
    enum { BLOCK = 1024 };
    for (size_t b = 0; b < n; b += BLOCK) {
        size_t m = n - b < BLOCK ? n - b : BLOCK;
        float *restrict yb = y + b;
        memset(yb, 0, m * sizeof(float));
        for (size_t k = 0; k < taps; k++) {
            const float hk = h[k];
            const float *restrict xs = xp + b + k;
            for (size_t i = 0; i < m; i++)
                yb[i] += hk * xs[i];
        }
    }
}

static int fir_filter(clmr_augment_t *a, float *x, size_t n, double cutoff_hz, int highpass)
{
    int rate = a->p.sample_rate;
    if (!x || n == 0 || n > a->cap || !(cutoff_hz >= MIN_CUTOFF_HZ && cutoff_hz < rate / 2.0))
        return CLMR_EINVAL;
    size_t half = clmr_augment_fir_half(cutoff_hz, rate);
    clmr_augment_fir_design(a->taps, half, cutoff_hz, rate);
    float *xp = a->xpad;
    for (size_t i = 0; i < half; i++) {
        xp[i] = x[0];
        xp[half + n + i] = x[n - 1];
    }
    memcpy(xp + half, x, n * sizeof(float));
    fir_convolve(a->tmp, xp, a->taps, 2 * half + 1, n);
    if (highpass)
        for (size_t i = 0; i < n; i++)
            x[i] -= a->tmp[i];
    else
        memcpy(x, a->tmp, n * sizeof(float));
    return 0;
}

int clmr_augment_lowpass(clmr_augment_t *a, float *x, size_t n, double cutoff_hz)
{
    return fir_filter(a, x, n, cutoff_hz, 0);
}

int clmr_augment_highpass(clmr_augment_t *a, float *x, size_t n, double cutoff_hz)
{
    return fir_filter(a, x, n, cutoff_hz, 1);
}

void clmr_augment_delay(float *x, size_t n, double ms, int rate, double volume)
{
    size_t d = (size_t)floor(ms * rate / 1000.0 + 1e-9); /* truncation, as the reference */
    /* Walk backwards so x[i - d] is still the original sample when x[i] is rewritten. */
    for (size_t i = n; i-- > 0;) {
        double delayed = i >= d ? x[i - d] : 0.0;
        x[i] = (float)((x[i] + volume * delayed) * 0.5);
    }
}

/* Runs a libsox chain on x, copies the result back (zero-padded to n) when it is finite. */
static int sox_in_place(clmr_augment_t *a, float *x, size_t n, const clmr_sox_effect_t *fx,
                        int n_fx)
{
    if (!x || n == 0 || n > a->cap) return CLMR_EINVAL;
    size_t got = 0;
    int err = clmr_sox_apply(x, n, a->p.sample_rate, fx, n_fx, a->p.sample_rate, a->tmp, n, &got,
                             NULL, NULL);
    if (err) return err;
    for (size_t i = 0; i < got; i++)
        if (!isfinite(a->tmp[i])) return CLMR_EINVAL;
    memcpy(x, a->tmp, got * sizeof(float));
    memset(x + got, 0, (n - got) * sizeof(float));
    return 0;
}

int clmr_augment_pitch(clmr_augment_t *a, float *x, size_t n, int cents)
{
    char c[16], r[16];
    snprintf(c, sizeof c, "%d", cents);
    snprintf(r, sizeof r, "%d", a->p.sample_rate);
    const clmr_sox_effect_t fx[2] = {{"pitch", 1, {c}}, {"rate", 1, {r}}};
    return sox_in_place(a, x, n, fx, 2);
}

int clmr_augment_reverb(clmr_augment_t *a, float *x, size_t n, int reverberance, int damping,
                        int room_size)
{
    if (reverberance < 0 || reverberance > 100 || damping < 0 || damping > 100 || room_size < 0 ||
        room_size > 100)
        return CLMR_EINVAL;
    char r[8], d[8], s[8];
    snprintf(r, sizeof r, "%d", reverberance);
    snprintf(d, sizeof d, "%d", damping);
    snprintf(s, sizeof s, "%d", room_size);
    const clmr_sox_effect_t fx[1] = {{"reverb", 3, {r, d, s}}};
    return sox_in_place(a, x, n, fx, 1);
}

int clmr_augment_view(clmr_augment_t *a, clmr_rng_t *rng, const float *src, size_t n_src,
                      float *out, clmr_augment_record_t *rec)
{
    clmr_augment_record_t local;
    if (!rec) rec = &local;
    memset(rec, 0, sizeof *rec);
    if (!a || !rng || !src || !n_src || !out) return CLMR_EINVAL;
    const clmr_augment_params_t *p = &a->p;
    size_t n = p->chunk;
    int rate = p->sample_rate;

    rec->crop_offset = clmr_augment_crop(out, n, src, n_src, rng);
    if ((rec->polarity = clmr_rng_bernoulli(rng, p->p_polarity))) clmr_augment_polarity(out, n);
    if ((rec->noise = clmr_rng_bernoulli(rng, p->p_noise)))
        rec->noise_std =
            clmr_augment_noise(out, n, clmr_rng_range(rng, p->noise_min, p->noise_max), rng);
    if ((rec->gain = clmr_rng_bernoulli(rng, p->p_gain))) {
        rec->gain_db = clmr_rng_range(rng, p->gain_min_db, p->gain_max_db);
        clmr_augment_gain(out, n, rec->gain_db);
    }
    if (clmr_rng_bernoulli(rng, p->p_filter)) {
        int hp = clmr_rng_bernoulli(rng, 0.5);
        rec->filter = hp ? 1 : 2;
        rec->cutoff_hz = hp ? clmr_rng_range(rng, p->hp_min_hz, p->hp_max_hz)
                            : clmr_rng_range(rng, p->lp_min_hz, p->lp_max_hz);
        int err = fir_filter(a, out, n, rec->cutoff_hz, hp);
        if (err) return err;
    }
    if ((rec->delay = clmr_rng_bernoulli(rng, p->p_delay))) {
        int steps = (p->delay_max_ms - p->delay_min_ms) / p->delay_step_ms;
        rec->delay_ms = p->delay_min_ms + p->delay_step_ms * (int)clmr_rng_int(rng, 0, steps);
        clmr_augment_delay(out, n, rec->delay_ms, rate, p->delay_volume);
    }
    if ((rec->pitch = clmr_rng_bernoulli(rng, p->p_pitch))) {
        rec->pitch_cents = (int)clmr_rng_int(rng, p->pitch_min_cents, p->pitch_max_cents);
        rec->pitch_fallback = clmr_augment_pitch(a, out, n, rec->pitch_cents) != 0;
    }
    if ((rec->reverb = clmr_rng_bernoulli(rng, p->p_reverb))) {
        rec->reverberance = (int)clmr_rng_int(rng, 0, p->reverb_max);
        rec->damping = (int)clmr_rng_int(rng, 0, p->reverb_max);
        rec->room_size = (int)clmr_rng_int(rng, 0, p->reverb_max);
        rec->reverb_fallback =
            clmr_augment_reverb(a, out, n, rec->reverberance, rec->damping, rec->room_size) != 0;
    }
    /* Non-finite samples would poison the batch statistics of the whole step: never emit them. */
    for (size_t i = 0; i < n; i++)
        if (!isfinite(out[i])) {
            out[i] = 0;
            rec->nonfinite++;
        }
    return 0;
}
