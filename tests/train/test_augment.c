/* test_augment.c - every CLMR augmentation checked by what it must do to a signal, plus the RNG and
 * the whole chain (length, finiteness, reproducibility, probabilities).
 *
 * Tolerances, stated once: gain within 1e-3 dB; noise std within 3% of the requested fraction of
 * std(x) (59,049 samples give a ~0.3% sampling error); delay exact to float rounding (1e-6); FIR
 * filters: within 2e-6 of a naive double-precision twin (3e-7 seen); pass band within 0.1 dB, -6 +-
 * 0.5 dB at the cutoff, stop band at most -40 dB from 1.2 x cutoff (low-pass) / below 0.8 x cutoff
 * (high-pass); pitch: measured frequency of a 440 Hz sine within 0.2% of 440 * 2^(cents/1200), RMS
 * within 1 dB; reverb: tail energy strictly grows with room size and with reverberance.
 */
#include "clmr/error.h"
#include "harness.h"
#include "train/augment.h"
#include "train/soxfx.h"
#include "util/rng.h"

#include <pthread.h>
#include <string.h>

#define N CLMR_AUGMENT_CHUNK
#define RATE 22050
static const double PI = 3.14159265358979323846;

static clmr_augment_t *aug;

static void sine(float *x, size_t n, double f, double amp)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(amp * sin(2 * PI * f * (double)i / RATE));
}

static double rms(const float *x, size_t a, size_t b)
{
    double s = 0;
    for (size_t i = a; i < b; i++)
        s += (double)x[i] * x[i];
    return sqrt(s / (double)(b - a));
}

/* Frequency from positive-going zero crossings (linear interpolation between samples). */
static double zc_freq(const float *x, size_t a, size_t b)
{
    double first = -1, last = -1;
    int cycles = 0;
    for (size_t i = a + 1; i < b; i++)
        if (x[i - 1] < 0 && x[i] >= 0) {
            double t = (double)(i - 1) + (double)(-x[i - 1]) / (double)(x[i] - x[i - 1]);
            if (first < 0)
                first = t;
            else
                cycles++;
            last = t;
        }
    return cycles > 0 ? cycles / ((last - first) / RATE) : 0;
}

static void test_rng(void)
{
    clmr_rng_t a, b, c;
    clmr_rng_seed(&a, 42, 0);
    clmr_rng_seed(&b, 42, 0);
    clmr_rng_seed(&c, 42, 1);
    int same = 1, differ = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t x = clmr_rng_u64(&a), y = clmr_rng_u64(&b), z = clmr_rng_u64(&c);
        same &= x == y;
        differ += x != z;
    }
    CHECK(same);
    CHECK(differ > 95);
    int seen_lo = 0, seen_hi = 0, out = 0;
    for (int i = 0; i < 10000; i++) {
        int64_t v = clmr_rng_int(&a, -3, 3);
        seen_lo |= v == -3;
        seen_hi |= v == 3;
        out += v < -3 || v > 3;
    }
    CHECK(seen_lo && seen_hi && out == 0);
    double m = 0, m2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double v = clmr_rng_normal(&a);
        m += v;
        m2 += v * v;
    }
    m /= n;
    CHECK_NEAR(m, 0.0, 0.01);
    CHECK_NEAR(sqrt(m2 / n - m * m), 1.0, 0.01);
}

static void test_crop(void)
{
    size_t ns = 3 * N;
    float *src = malloc(ns * sizeof(float)), *out = malloc(N * sizeof(float));
    for (size_t i = 0; i < ns; i++)
        src[i] = (float)i;
    clmr_rng_t r;
    clmr_rng_seed(&r, 7, 0);
    size_t offs[8];
    for (int t = 0; t < 8; t++) {
        offs[t] = clmr_augment_crop(out, N, src, ns, &r);
        CHECK(offs[t] <= ns - N);
        CHECK(out[0] == (float)offs[t] && out[N - 1] == (float)(offs[t] + N - 1));
    }
    int distinct = 0;
    for (int t = 1; t < 8; t++)
        distinct += offs[t] != offs[0];
    CHECK(distinct >= 6);
    /* Shorter input: copied at the start, zero-padded after. */
    size_t off = clmr_augment_crop(out, N, src + 1, 1000, &r);
    CHECK(off == 0);
    CHECK(out[0] == 1.0f && out[999] == 1000.0f && out[1000] == 0.0f && out[N - 1] == 0.0f);
    free(src);
    free(out);
}

static void test_polarity_and_gain(void)
{
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    sine(x, N, 330, 0.7);
    memcpy(y, x, N * sizeof(float));
    clmr_augment_polarity(y, N);
    int ok = 1;
    for (size_t i = 0; i < N; i++)
        ok &= y[i] == -x[i];
    CHECK(ok);
    const double dbs[] = {-20, -13.5, -6, -1};
    for (int k = 0; k < 4; k++) {
        memcpy(y, x, N * sizeof(float));
        clmr_augment_gain(y, N, dbs[k]);
        double got = 20 * log10(rms(y, 0, N) / rms(x, 0, N));
        CHECKF(fabs(got - dbs[k]) < 1e-3, "gain %g dB measured %g dB", dbs[k], got);
    }
    free(x);
    free(y);
}

static void test_noise(void)
{
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    sine(x, N, 250, 0.3);
    clmr_rng_t r;
    clmr_rng_seed(&r, 3, 0);
    const double rel[] = {1e-4, 1e-3, 1e-2};
    for (int k = 0; k < 3; k++) {
        memcpy(y, x, N * sizeof(float));
        double used = clmr_augment_noise(y, N, rel[k], &r);
        double sdx = rms(x, 0, N); /* zero-mean sine: rms == std */
        CHECK_NEAR(used / sdx, rel[k], rel[k] * 1e-3);
        double m = 0, s = 0;
        for (size_t i = 0; i < N; i++) {
            double d = (double)y[i] - x[i];
            m += d;
            s += d * d;
        }
        m /= N;
        double sd = sqrt(s / N - m * m);
        CHECKF(fabs(sd / sdx / rel[k] - 1) < 0.03, "noise std %g x std(x), wanted %g", sd / sdx,
               rel[k]);
        CHECK(fabs(m) < 5 * sd / sqrt((double)N));
    }
    free(x);
    free(y);
}

static void test_delay(void)
{
    float *x = malloc(N * sizeof(float));
    for (int ms = 200; ms <= 450; ms += 50) {
        memset(x, 0, N * sizeof(float));
        x[1000] = 1.0f;
        clmr_augment_delay(x, N, ms, RATE, 0.5);
        size_t d = (size_t)ms * RATE / 1000;
        CHECK_NEAR(x[1000], 0.5, 1e-6);
        CHECK_NEAR(x[1000 + d], 0.25, 1e-6);
        double rest = 0;
        for (size_t i = 0; i < N; i++)
            if (i != 1000 && i != 1000 + d) rest += fabs(x[i]);
        CHECKF(rest == 0, "delay %d ms: energy outside the two taps", ms);
    }
    free(x);
}

static double filter_gain_db(int hp, double fc, double f, float *x)
{
    sine(x, N, f, 1.0);
    int err = hp ? clmr_augment_highpass(aug, x, N, fc) : clmr_augment_lowpass(aug, x, N, fc);
    CHECK(err == 0);
    /* Skip the edges (replicate padding transients; longest filter is 441 taps each side). */
    return 20 * log10(rms(x, 5000, N - 5000) / sqrt(0.5));
}

static void test_filters(void)
{
    float *x = malloc(N * sizeof(float));
    const double lps[] = {2200, 3000, 4000}, hps[] = {200, 700, 1200};
    for (int k = 0; k < 3; k++) {
        double fc = lps[k], g;
        CHECKF(fabs(g = filter_gain_db(0, fc, 0.5 * fc, x)) < 0.1, "LP %g pass %g dB", fc, g);
        CHECKF(fabs(g = filter_gain_db(0, fc, 0.8 * fc, x)) < 0.1, "LP %g pass %g dB", fc, g);
        CHECKF(fabs((g = filter_gain_db(0, fc, fc, x)) + 6) < 0.5, "LP %g at fc %g dB", fc, g);
        CHECKF((g = filter_gain_db(0, fc, 1.2 * fc, x)) < -40, "LP %g stop %g dB", fc, g);
        CHECKF((g = filter_gain_db(0, fc, 2.0 * fc, x)) < -40, "LP %g stop %g dB", fc, g);
        fc = hps[k];
        CHECKF(fabs(g = filter_gain_db(1, fc, 2.0 * fc, x)) < 0.1, "HP %g pass %g dB", fc, g);
        CHECKF(fabs(g = filter_gain_db(1, fc, 1.2 * fc, x)) < 0.1, "HP %g pass %g dB", fc, g);
        CHECKF(fabs((g = filter_gain_db(1, fc, fc, x)) + 6) < 0.5, "HP %g at fc %g dB", fc, g);
        CHECKF((g = filter_gain_db(1, fc, 0.8 * fc, x)) < -40, "HP %g stop %g dB", fc, g);
        CHECKF((g = filter_gain_db(1, fc, 0.4 * fc, x)) < -40, "HP %g stop %g dB", fc, g);
    }
    CHECK(clmr_augment_lowpass(aug, x, N, 5.0) != 0);         /* below 20 Hz */
    CHECK(clmr_augment_highpass(aug, x, N, RATE / 2.0) != 0); /* at Nyquist */
    CHECK(clmr_augment_lowpass(aug, x, N + 1, 1000) != 0);    /* longer than the workspace */
    free(x);
}

/* The blocked, vectorised FIR against a naive double-precision twin on a music-like signal. */
static void music(float *x, size_t n, uint64_t seed);
static void test_fir_naive_twin(void)
{
    float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
    const double cutoffs[] = {200, 1000, 2200, 4000};
    size_t maxhalf = clmr_augment_fir_half(200, RATE);
    float *h = malloc((2 * maxhalf + 1) * sizeof(float));
    for (int c = 0; c < 4; c++) {
        for (int hp = 0; hp < 2; hp++) {
            music(x, N, 5);
            memcpy(y, x, N * sizeof(float));
            CHECK((hp ? clmr_augment_highpass(aug, y, N, cutoffs[c])
                      : clmr_augment_lowpass(aug, y, N, cutoffs[c])) == 0);
            size_t half = clmr_augment_fir_half(cutoffs[c], RATE);
            clmr_augment_fir_design(h, half, cutoffs[c], RATE);
            double sum = 0, worst = 0;
            for (size_t k = 0; k < 2 * half + 1; k++)
                sum += h[k];
            CHECK_NEAR(sum, 1.0, 1e-5); /* unit DC gain */
            for (size_t i = 0; i < N; i++) {
                double acc = 0;
                for (size_t k = 0; k < 2 * half + 1; k++) {
                    ptrdiff_t j = (ptrdiff_t)i + (ptrdiff_t)k - (ptrdiff_t)half;
                    j = j < 0 ? 0 : j >= (ptrdiff_t)N ? (ptrdiff_t)N - 1 : j; /* replicate */
                    acc += (double)h[k] * x[j];
                }
                double want = hp ? x[i] - acc : acc;
                double d = fabs(want - y[i]);
                if (d > worst) worst = d;
            }
            /* float accumulation over up to 883 taps of a signal with |x| < 0.7 */
            CHECKF(worst < 2e-6, "%s %g Hz: max |diff| %g", hp ? "HP" : "LP", cutoffs[c], worst);
        }
    }
    free(h);
    free(x);
    free(y);
}

/* The libsox runner itself: resampling keeps a tone's frequency and scales the length; unknown
 * effects, bad arguments and non-finite input are refused with CLMR_EINVAL. */
static void test_soxfx(void)
{
    size_t n_in = 44100, cap = 30000, got = 0;
    float *in = malloc(n_in * sizeof(float)), *out = malloc(cap * sizeof(float));
    for (size_t i = 0; i < n_in; i++)
        in[i] = (float)(0.5 * sin(2 * PI * 1000 * (double)i / 44100));
    const clmr_sox_effect_t rate[1] = {{"rate", 1, {"22050"}}};
    double out_rate = 0;
    CHECK(clmr_sox_apply(in, n_in, 44100, rate, 1, 22050, out, cap, &got, &out_rate, NULL) == 0);
    CHECK(out_rate == 22050);
    CHECKF(got >= 22040 && got <= 22060, "resampled length %zu", got);
    CHECK_NEAR(zc_freq(out, 500, got - 500), 1000.0, 0.5);
    CHECK_NEAR(rms(out, 500, got - 500), 0.5 / sqrt(2), 0.01);
    char *msg = NULL;
    const clmr_sox_effect_t bogus[1] = {{"no-such-effect", 0, {NULL}}};
    CHECK(clmr_sox_apply(in, n_in, 44100, bogus, 1, 0, out, cap, &got, NULL, &msg) == CLMR_EINVAL);
    CHECK(msg && strstr(msg, "no-such-effect"));
    const clmr_sox_effect_t badarg[1] = {{"reverb", 1, {"abc"}}};
    CHECK(clmr_sox_apply(in, n_in, 44100, badarg, 1, 0, out, cap, &got, NULL, &msg) == CLMR_EINVAL);
    in[7] = INFINITY;
    CHECK(clmr_sox_apply(in, n_in, 44100, rate, 1, 22050, out, cap, &got, NULL, &msg) ==
          CLMR_EINVAL);
    free(msg);
    free(in);
    free(out);
}

static void test_pitch(void)
{
    float *x = malloc(N * sizeof(float));
    const int cents[] = {-700, -300, 0, 300, 700};
    for (int k = 0; k < 5; k++) {
        sine(x, N, 440, 0.5);
        CHECK(clmr_augment_pitch(aug, x, N, cents[k]) == 0);
        double want = 440 * pow(2, cents[k] / 1200.0);
        double got = zc_freq(x, 5000, N - 5000);
        CHECKF(fabs(got / want - 1) < 2e-3, "%+d cents: %.2f Hz, want %.2f", cents[k], got, want);
        double level = 20 * log10(rms(x, 5000, N - 5000) / (0.5 / sqrt(2)));
        CHECKF(fabs(level) < 1, "%+d cents: level changed by %.2f dB", cents[k], level);
    }
    /* Non-finite input: refused and left unchanged (the chain keeps its input). */
    sine(x, N, 440, 0.5);
    x[10] = NAN;
    CHECK(clmr_augment_pitch(aug, x, N, 300) != 0);
    CHECK(isnan(x[10]) && x[11] == (float)(0.5 * sin(2 * PI * 440 * 11.0 / RATE)));
    free(x);
}

static double reverb_tail(float *x, int reverberance, int room)
{
    memset(x, 0, N * sizeof(float));
    x[100] = 1.0f;
    CHECK(clmr_augment_reverb(aug, x, N, reverberance, 50, room) == 0);
    CHECK_NEAR(x[100], 1.0, 0.05); /* the dry impulse stays */
    double e = 0;
    for (size_t i = 100 + RATE / 10; i < 100 + RATE; i++)
        e += (double)x[i] * x[i];
    return e; /* energy from 100 ms to 1 s after the impulse */
}

static void test_reverb(void)
{
    float *x = malloc(N * sizeof(float));
    double prev = 0;
    for (int room = 0; room <= 99; room += 33) {
        double e = reverb_tail(x, 50, room);
        CHECKF(e > prev, "room %d: tail %g not above %g", room, e, prev);
        prev = e;
    }
    prev = 0;
    for (int rv = 0; rv <= 99; rv += 33) {
        double e = reverb_tail(x, rv, 50);
        CHECKF(e > prev, "reverberance %d: tail %g not above %g", rv, e, prev);
        prev = e;
    }
    CHECK(reverb_tail(x, 99, 99) > 100 * reverb_tail(x, 0, 0));
    CHECK(clmr_augment_reverb(aug, x, N, 101, 0, 0) != 0);
    free(x);
}

/* A music-like source: a few partials with a slow envelope and some noise. */
static void music(float *x, size_t n, uint64_t seed)
{
    clmr_rng_t r;
    clmr_rng_seed(&r, seed, 99);
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / RATE;
        x[i] = (float)(0.3 * sin(2 * PI * 220 * t) * (0.6 + 0.4 * sin(2 * PI * 0.7 * t)) +
                       0.2 * sin(2 * PI * 660 * t) + 0.1 * sin(2 * PI * 3520 * t) +
                       0.02 * clmr_rng_normal(&r));
    }
}

static void test_chain(void)
{
    size_t ns = 4 * N;
    float *src = malloc(ns * sizeof(float)), *a = malloc(N * sizeof(float)),
          *b = malloc(N * sizeof(float));
    music(src, ns, 1);
    int all_same = 1, any_differ = 0, finite = 1, pitched = 0, reverbed = 0;
    for (uint64_t seed = 0; seed < 6; seed++) {
        clmr_rng_t r1, r2, r3;
        clmr_rng_seed(&r1, seed, 0);
        clmr_rng_seed(&r2, seed, 0);
        clmr_rng_seed(&r3, seed + 100, 0);
        clmr_augment_record_t rec;
        CHECK(clmr_augment_view(aug, &r1, src, ns, a, &rec) == 0);
        pitched += rec.pitch && !rec.pitch_fallback;
        reverbed += rec.reverb && !rec.reverb_fallback;
        CHECK(rec.nonfinite == 0);
        CHECK(clmr_augment_view(aug, &r2, src, ns, b, NULL) == 0);
        all_same &= memcmp(a, b, N * sizeof(float)) == 0;
        CHECK(clmr_augment_view(aug, &r3, src, ns, b, NULL) == 0);
        any_differ += memcmp(a, b, N * sizeof(float)) != 0;
        for (size_t i = 0; i < N; i++)
            finite &= isfinite(a[i]) && isfinite(b[i]);
    }
    CHECK(all_same);
    CHECK(any_differ == 6);
    CHECK(finite);
    CHECK(pitched > 0 && reverbed > 0); /* seeds 0..5 exercise both libsox effects */
    /* Short source and a NaN inside the crop: still chunk-long, finite, and the NaN is reported. */
    clmr_rng_t r;
    clmr_rng_seed(&r, 5, 0);
    clmr_augment_record_t rec;
    CHECK(clmr_augment_view(aug, &r, src, 1000, a, &rec) == 0);
    CHECK(rec.crop_offset == 0 && rec.nonfinite == 0);
    src[500] = NAN;
    finite = 1;
    CHECK(clmr_augment_view(aug, &r, src, 1000, a, &rec) == 0);
    for (size_t i = 0; i < N; i++)
        finite &= isfinite(a[i]);
    CHECK(finite && rec.nonfinite > 0);
    free(src);
    free(a);
    free(b);
}

/* Coin frequencies with the cheap transforms only (libsox effects switched off to keep it fast). */
static void test_probabilities(void)
{
    clmr_augment_params_t p = clmr_augment_default_params();
    p.p_pitch = p.p_reverb = 0;
    p.hp_min_hz = 1000; /* short filters */
    clmr_augment_t *cheap = NULL;
    CHECK(clmr_augment_open(&cheap, &p, NULL) == 0);
    if (!cheap) return;
    float *src = malloc(2 * N * sizeof(float)), *out = malloc(N * sizeof(float));
    music(src, 2 * N, 2);
    clmr_rng_t r;
    clmr_rng_seed(&r, 11, 0);
    const int T = 300;
    int pol = 0, gain = 0, filt = 0, hp = 0, delay = 0, delays[6] = {0}, gain_range = 1;
    for (int t = 0; t < T; t++) {
        clmr_augment_record_t rec;
        CHECK(clmr_augment_view(cheap, &r, src, 2 * N, out, &rec) == 0);
        pol += rec.polarity;
        gain += rec.gain;
        if (rec.gain) gain_range &= rec.gain_db >= -20 && rec.gain_db <= -1;
        filt += rec.filter != 0;
        hp += rec.filter == 1;
        delay += rec.delay;
        if (rec.delay) delays[(rec.delay_ms - 200) / 50]++;
    }
    /* Binomial counts within 4.5 standard deviations of T * p. */
#define NEAR_P(count, prob)                                                                        \
    CHECKF(fabs((count)-T *(prob)) < 4.5 * sqrt(T * (prob) * (1 - (prob))), "%s = %d", #count,     \
           count)
    NEAR_P(pol, 0.8);
    NEAR_P(gain, 0.3);
    NEAR_P(filt, 0.8);
    NEAR_P(delay, 0.3);
    CHECK(gain_range);
    CHECK(hp > filt / 4 && hp < 3 * filt / 4);
    for (int k = 0; k < 6; k++)
        CHECKF(delays[k] > 0, "delay %d ms never drawn", 200 + 50 * k);
    free(src);
    free(out);
    clmr_augment_close(&cheap);
    CHECK(cheap == NULL);
}

typedef struct {
    float *x;
    int cents;
} job_t;

static void *pitch_job(void *arg)
{
    job_t *j = arg;
    clmr_augment_t *w = NULL;
    if (clmr_augment_open(&w, NULL, NULL) == 0) {
        for (int k = 0; k < 2; k++) {
            sine(j->x, N, 440, 0.5);
            clmr_augment_pitch(w, j->x, N, j->cents);
        }
    }
    clmr_augment_close(&w);
    return NULL;
}

/* libsox from two threads at once (each with its own workspace) gives what one thread gives. */
static void test_threads(void)
{
    float *ref = malloc(N * sizeof(float));
    job_t jobs[2] = {{malloc(N * sizeof(float)), 300}, {malloc(N * sizeof(float)), 300}};
    sine(ref, N, 440, 0.5);
    CHECK(clmr_augment_pitch(aug, ref, N, 300) == 0);
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, pitch_job, &jobs[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++) {
        CHECK(memcmp(ref, jobs[i].x, N * sizeof(float)) == 0);
        free(jobs[i].x);
    }
    free(ref);
}

static void test_params(void)
{
    clmr_augment_params_t p = clmr_augment_default_params();
    CHECK(p.p_polarity == 0.8 && p.p_noise == 0.01 && p.p_gain == 0.3 && p.p_filter == 0.8 &&
          p.p_delay == 0.3 && p.p_pitch == 0.6 && p.p_reverb == 0.6 && p.chunk == 59049);
    clmr_augment_t *w = NULL;
    char *msg = NULL;
    p.hp_max_hz = 20000;
    CHECK(clmr_augment_open(&w, &p, &msg) == CLMR_EINVAL && w == NULL);
    CHECK(msg && strstr(msg, "high-pass"));
    free(msg);
}

int main(void)
{
    char *msg = NULL;
    if (clmr_augment_open(&aug, NULL, &msg) != 0) {
        printf("Bail out! %s\n", msg ? msg : "augment_open failed");
        return 1;
    }
    RUN_TEST(test_rng);
    RUN_TEST(test_crop);
    RUN_TEST(test_polarity_and_gain);
    RUN_TEST(test_noise);
    RUN_TEST(test_delay);
    RUN_TEST(test_filters);
    RUN_TEST(test_fir_naive_twin);
    RUN_TEST(test_soxfx);
    RUN_TEST(test_pitch);
    RUN_TEST(test_reverb);
    RUN_TEST(test_chain);
    RUN_TEST(test_probabilities);
    RUN_TEST(test_threads);
    RUN_TEST(test_params);
    clmr_augment_close(&aug);
    return TEST_END();
}
