/* test_descriptors.c - tempo, onsets, loudness (descriptors.c), fingerprints (fingerprint.c) and
 * file metadata (metadata.c) against signals with known answers.
 *
 * Known answers: a click track at B BPM has tempo B and B/60 onsets per second; a 1 kHz sine of
 * peak amplitude A measured as dual mono reads 20*log10(A) LUFS (the EBU R128 calibration: a
 * -23 dBFS stereo sine reads -23 LUFS) and a true peak of 20*log10(A) dBTP even when no sample
 * lands on the peak; a tone switching between two levels 10 dB apart has a loudness range of
 * about 10 LU, a steady one about 0. Metadata comes from real files written by ffmpeg.
 */
#include "audio_test_util.h"

#include "audio/audio_internal.h"
#include "audio/descriptors.h"
#include "audio/fingerprint.h"
#include "clmr/audio.h"
#include "clmr/error.h"

#include <pthread.h>

#define SR 22050

static float *click_track(double bpm, double secs, size_t *n)
{
    *n = (size_t)(secs * SR);
    float *x = malloc(*n * sizeof *x);
    unsigned seed = 1; /* a -56 dBFS noise floor, as in any recording (see descriptors.c) */
    for (size_t i = 0; i < *n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = 0.003f * ((float)(seed >> 8) / 16777216.0f - 0.5f);
    }
    double period = 60.0 / bpm * SR;
    for (double t = 0.25 * SR; t < (double)*n; t += period) {
        size_t s = (size_t)t;
        for (size_t i = 0; i < 220 && s + i < *n; i++) /* 10 ms decaying 2 kHz click */
            x[s + i] += (float)(0.8 * exp(-(double)i / 40.0) * sin(2 * M_PI * 2000.0 * i / SR));
    }
    return x;
}

static void test_tempo_click_tracks(void)
{
    /* the last one is longer than the 90 s excerpt the rhythm descriptors read */
    const double tempi[] = {90, 120, 140, 100}, secs[] = {30, 30, 30, 130};
    for (int k = 0; k < 4; k++) {
        size_t n;
        float *x = click_track(tempi[k], secs[k], &n);
        clmr_descriptors_t d;
        char *msg = NULL;
        int rc = clmr_descriptors_compute(&d, x, n, SR, &msg);
        CHECKF(rc == 0, "%s", msg ? msg : "");
        printf("# %g BPM click: bpm %.2f conf %.3f onsets/s %.3f\n", tempi[k], d.bpm,
               d.bpm_confidence, d.onset_rate);
        CHECKF(fabs(d.bpm - tempi[k]) <= 0.01 * tempi[k], "bpm %g for %g", d.bpm, tempi[k]);
        CHECK(d.bpm_confidence > 1.0);
        CHECK_NEAR(d.onset_rate, tempi[k] / 60.0, 0.1 * tempi[k] / 60.0);
        free(msg);
        free(x);
    }
}

static float *sine(double freq, double amp, double phase, double secs, size_t *n)
{
    *n = (size_t)(secs * SR);
    float *x = malloc(*n * sizeof *x);
    for (size_t i = 0; i < *n; i++)
        x[i] = (float)(amp * sin(2 * M_PI * freq * (double)i / SR + phase));
    return x;
}

static void test_loudness_tones(void)
{
    const double levels[] = {-23, -14, -6};
    for (int k = 0; k < 3; k++) {
        size_t n;
        float *x = sine(1000, pow(10, levels[k] / 20), 0, 20, &n);
        clmr_descriptors_t d;
        CHECK(clmr_descriptors_compute(&d, x, n, SR, NULL) == 0);
        printf("# 1 kHz at %g dBFS: %.3f LUFS, LRA %.3f, TP %.3f dBTP\n", levels[k],
               d.loudness_lufs, d.loudness_range_lu, d.true_peak_dbtp);
        CHECK_NEAR(d.loudness_lufs, levels[k], 0.2);
        CHECK_NEAR(d.true_peak_dbtp, levels[k], 0.2);
        CHECK(d.loudness_range_lu >= 0 && d.loudness_range_lu < 0.5);
        /* aubio still reports a tempo for a steady tone, with a confidence 10x below a beat's */
        CHECKF(isnan(d.bpm) || d.bpm_confidence < 0.3, "tone: bpm %g conf %g", d.bpm,
               d.bpm_confidence);
        CHECK(d.onset_rate < 0.2);
        free(x);
    }
}

/* A sine at a quarter of the sample rate with a 45 degree phase: every sample is at 0.707 of the
 * peak, so the sample peak is 3 dB under the true peak that libebur128 must reconstruct. */
static void test_true_peak_between_samples(void)
{
    size_t n;
    float *x = sine(SR / 4.0, 0.5, M_PI / 4, 10, &n);
    float sp = 0;
    for (size_t i = 0; i < n; i++)
        sp = fabsf(x[i]) > sp ? fabsf(x[i]) : sp;
    clmr_descriptors_t d;
    CHECK(clmr_descriptors_compute(&d, x, n, SR, NULL) == 0);
    printf("# fs/4 sine: sample peak %.2f dBFS, true peak %.2f dBTP\n", 20 * log10(sp),
           d.true_peak_dbtp);
    CHECK_NEAR(20 * log10(sp), -9.03, 0.05);
    CHECK_NEAR(d.true_peak_dbtp, -6.02, 0.5);
    free(x);
}

static void test_loudness_range(void)
{
    /* 10 s at -20 dBFS, 10 s at -30, 10 s at -20, 10 s at -30 */
    size_t n = (size_t)40 * SR;
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        double amp = pow(10, ((i / (10 * SR)) % 2 ? -30.0 : -20.0) / 20);
        x[i] = (float)(amp * sin(2 * M_PI * 1000.0 * (double)i / SR));
    }
    clmr_descriptors_t d;
    CHECK(clmr_descriptors_compute(&d, x, n, SR, NULL) == 0);
    printf("# two-level tone: LRA %.3f LU, %.3f LUFS\n", d.loudness_range_lu, d.loudness_lufs);
    CHECK_NEAR(d.loudness_range_lu, 10.0, 1.0);
    free(x);
}

/* The rhythm and loudness passes run on two threads for signals of 10 s and more: the same
 * signal must give bit-identical descriptors whether it is measured alone or by several callers
 * at once, and the split must agree with the single-thread path on a short prefix. */
typedef struct {
    const float *x;
    size_t n;
    clmr_descriptors_t d;
    int rc;
} desc_call_t;

static void *desc_call(void *arg)
{
    desc_call_t *c = arg;
    c->rc = clmr_descriptors_compute(&c->d, c->x, c->n, SR, NULL);
    return NULL;
}

static int same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static void test_concurrent_calls_agree(void)
{
    size_t n;
    float *x = click_track(120, 40, &n);
    for (size_t i = 0; i < n; i++) /* add a level change so the loudness range is not 0 */
        if (i > n / 2) x[i] *= 0.3f;
    clmr_descriptors_t ref;
    CHECK(clmr_descriptors_compute(&ref, x, n, SR, NULL) == 0);
    desc_call_t calls[4];
    pthread_t th[4];
    for (int k = 0; k < 4; k++) {
        calls[k] = (desc_call_t){.x = x, .n = n, .rc = -1};
        CHECK(pthread_create(&th[k], NULL, desc_call, &calls[k]) == 0);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(th[k], NULL);
        CHECK(calls[k].rc == 0);
        CHECK(same_double(calls[k].d.bpm, ref.bpm));
        CHECK(same_double(calls[k].d.onset_rate, ref.onset_rate));
        CHECK(same_double(calls[k].d.loudness_lufs, ref.loudness_lufs));
        CHECK(same_double(calls[k].d.loudness_range_lu, ref.loudness_range_lu));
        CHECK(same_double(calls[k].d.true_peak_dbtp, ref.true_peak_dbtp));
    }
    CHECK(isfinite(ref.loudness_range_lu) && ref.loudness_range_lu > 5);
    free(x);
}

static void test_silence_and_errors(void)
{
    size_t n = (size_t)5 * SR;
    float *x = calloc(n, sizeof *x);
    clmr_descriptors_t d;
    CHECK(clmr_descriptors_compute(&d, x, n, SR, NULL) == 0);
    CHECK(isnan(d.loudness_lufs) && isnan(d.loudness_range_lu) && isnan(d.true_peak_dbtp));
    printf("# silence: bpm %g conf %g onsets/s %g\n", d.bpm, d.bpm_confidence, d.onset_rate);
    CHECK(isnan(d.bpm) && d.bpm_confidence == 0 && d.onset_rate == 0);
    char *msg = NULL;
    CHECK(clmr_descriptors_compute(&d, x, 0, SR, &msg) == CLMR_EINVAL && msg);
    free(msg);
    CHECK(clmr_descriptors_compute(&d, x, n, 100, NULL) == CLMR_EINVAL);
    free(x);
}

/* A tune: notes of a random pentatonic melody (seeded) with three harmonics each, 4 per second. */
static float *melody(unsigned seed, double secs, size_t *n)
{
    static const double pent[] = {0, 2, 4, 7, 9, 12, 14, 16};
    *n = (size_t)(secs * SR);
    float *x = calloc(*n, sizeof *x);
    size_t note = SR / 4;
    double f = 220;
    for (size_t s = 0; s < *n; s += note) {
        seed = seed * 1103515245u + 12345u;
        f = 220.0 * pow(2, pent[(seed >> 16) % 8] / 12.0);
        for (size_t i = 0; i < note && s + i < *n; i++) {
            double env = exp(-(double)i / (0.12 * SR)), t = (double)i / SR;
            x[s + i] = (float)(0.3 * env *
                               (sin(2 * M_PI * f * t) + 0.5 * sin(4 * M_PI * f * t) +
                                0.25 * sin(6 * M_PI * f * t)));
        }
    }
    return x;
}

static void test_fingerprint_similarity_pure(void)
{
    uint32_t a[100], b[100];
    unsigned s = 7;
    for (int i = 0; i < 100; i++) {
        a[i] = s = s * 1664525u + 1013904223u;
        b[i] = (s = s * 1664525u + 1013904223u) ^ 0x5a5a5a5au;
    }
    CHECK_NEAR(clmr_fingerprint_similarity(a, 100, a, 100), 1.0, 1e-12);
    /* b is a shifted by 3 items: found within the searched alignments */
    CHECK_NEAR(clmr_fingerprint_similarity(a + 3, 97, a, 100), 1.0, 1e-12);
    double r = clmr_fingerprint_similarity(a, 100, b, 100);
    CHECKF(r > 0.45 && r < 0.62, "random pair %g", r);
    CHECK(clmr_fingerprint_similarity(a, 10, a, 10) == 0); /* too short to compare */
    CHECK(clmr_fingerprint_same_length(180.0, 181.2) && !clmr_fingerprint_same_length(180, 184));
    CHECK(clmr_fingerprint_same_length(600.0, 610.0) && !clmr_fingerprint_same_length(60, 40));
}

static void test_fingerprint_audio(void)
{
    size_t n, m;
    float *x = melody(1, 30, &n), *y = melody(2, 30, &m);
    /* the same tune, quieter, with faint noise, 300 samples later */
    float *z = calloc(n, sizeof *z);
    unsigned s = 99;
    for (size_t i = 300; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        z[i] = 0.7f * x[i - 300] + 0.003f * ((float)(s >> 8) / (float)(1u << 24) - 0.5f);
    }
    uint32_t *fx = NULL, *fy = NULL, *fz = NULL;
    int nx = 0, ny = 0, nz = 0;
    char *msg = NULL;
    CHECKF(clmr_fingerprint_compute(&fx, &nx, x, n, SR, &msg) == 0, "%s", msg ? msg : "");
    CHECK(clmr_fingerprint_compute(&fy, &ny, y, m, SR, NULL) == 0);
    CHECK(clmr_fingerprint_compute(&fz, &nz, z, n, SR, NULL) == 0);
    double same = clmr_fingerprint_similarity(fx, nx, fz, nz);
    double diff = clmr_fingerprint_similarity(fx, nx, fy, ny);
    printf("# fingerprints: %d items; same tune %.3f, other tune %.3f\n", nx, same, diff);
    CHECK(nx > 200);
    CHECK(same >= CLMR_FINGERPRINT_MATCH);
    CHECK(diff < CLMR_FINGERPRINT_MATCH - 0.1);
    free(fx);
    free(fy);
    free(fz);
    /* under about 3 s there is nothing to fingerprint */
    CHECK(clmr_fingerprint_compute(&fx, &nx, x, SR, SR, &msg) == CLMR_EINVAL && !fx);
    free(msg);
    free(x);
    free(y);
    free(z);
}

static void check_meta(const char *name, const char *fmt_args)
{
    CHECK(sh("ffmpeg -nostdin -v error -y -f lavfi -i sine=frequency=440:duration=2 %s "
             "-metadata title='Song Ä' -metadata artist='The Band' -metadata album='Album' "
             "-metadata genre='Jazz' -metadata date='1999-05-01' -metadata track='3/12' '%s'",
             fmt_args, tpath(name)) == 0);
    size_t size;
    unsigned char *bytes = read_all(tpath(name), &size);
    clmr_audio_t a;
    char *msg = NULL;
    int rc = clmr_audio_decode_memory(&a, bytes, size, NULL, &msg);
    CHECKF(rc == 0, "%s: %s", name, msg ? msg : "");
    if (rc == 0) {
        CHECKF(a.meta.title && !strcmp(a.meta.title, "Song \xc3\x84"), "%s title %s", name,
               a.meta.title ? a.meta.title : "(null)");
        CHECKF(a.meta.artist && !strcmp(a.meta.artist, "The Band"), "%s artist", name);
        CHECKF(a.meta.album && !strcmp(a.meta.album, "Album"), "%s album", name);
        CHECKF(a.meta.genre && !strcmp(a.meta.genre, "Jazz"), "%s genre", name);
        CHECKF(a.meta.year == 1999, "%s year %d", name, a.meta.year);
        CHECKF(a.meta.track_number == 3, "%s track %d", name, a.meta.track_number);
    }
    clmr_audio_free(&a);
    CHECK(a.meta.title == NULL);
    free(msg);
    free(bytes);
}

static void test_metadata_from_files(void)
{
    check_meta("t.mp3", "-c:a libmp3lame -id3v2_version 3");
    check_meta("t.flac", "-c:a flac");
    check_meta("t.ogg", "-c:a libvorbis");
    check_meta("t.m4a", "-c:a aac");
    /* a file without tags has none */
    CHECK(sh("ffmpeg -nostdin -v error -y -f lavfi -i sine=duration=1 -map_metadata -1 '%s'",
             tpath("bare.wav")) == 0);
    clmr_audio_t a;
    CHECK(clmr_audio_decode_file(&a, tpath("bare.wav"), NULL, NULL) == 0);
    CHECK(!a.meta.title && !a.meta.artist && !a.meta.album && a.meta.year == 0 &&
          a.meta.track_number == 0);
    clmr_audio_free(&a);
}

static void test_utf8(void)
{
    CHECK(clmr__utf8_valid("abc \xc3\xa4 \xe2\x82\xac \xf0\x9f\x8e\xb5", 15));
    CHECK(!clmr__utf8_valid("\xc3", 1));         /* cut */
    CHECK(!clmr__utf8_valid("\xc0\xaf", 2));     /* overlong */
    CHECK(!clmr__utf8_valid("\xed\xa0\x80", 3)); /* surrogate */
    CHECK(!clmr__utf8_valid("a\0b", 3));         /* NUL */
    CHECK(!clmr__utf8_valid("\xe9t\xe9", 3));    /* Latin-1 */
}

int main(void)
{
    tdir_make();
    RUN_TEST(test_tempo_click_tracks);
    RUN_TEST(test_loudness_tones);
    RUN_TEST(test_true_peak_between_samples);
    RUN_TEST(test_loudness_range);
    RUN_TEST(test_concurrent_calls_agree);
    RUN_TEST(test_silence_and_errors);
    RUN_TEST(test_fingerprint_similarity_pure);
    RUN_TEST(test_fingerprint_audio);
    RUN_TEST(test_metadata_from_files);
    RUN_TEST(test_utf8);
    return TEST_END();
}
