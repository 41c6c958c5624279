/* test_decode.c - the decoder on real files of every accepted format, made with ffmpeg here.
 *
 * DESIGN: one 3 s sine (440 Hz, amplitude 0.5) per format/rate/layout; each decode must keep
 * the pitch, the amplitude and the duration after downmixing and resampling to 22,050 Hz.
 * Tolerances: duration +-2 output samples for lossless codecs and +-50 ms for lossy ones (their
 * encoder delay/padding is trimmed by FFmpeg from gapless metadata, not perfectly); frequency
 * +-0.2 Hz lossless / +-1 Hz lossy; amplitude +-0.01 lossless / +-0.05 lossy. The identity path
 * (22,050 Hz mono float) must be bit-exact.
 */
#include "audio_test_util.h"

#include "clmr/audio.h"
#include "clmr/error.h"

#include <libavutil/mem.h>
#include <pthread.h>

typedef struct {
    const char *file, *codec_args;
    int rate, channels;
    const char *format, *codec;
    int lossy;
} fmt_case_t;

static const fmt_case_t k_cases[] = {
    {"s16_44k.wav", "-c:a pcm_s16le", 44100, 2, "wav", "pcm_s16le", 0},
    {"f32_48k.wav", "-c:a pcm_f32le", 48000, 2, "wav", "pcm_f32le", 0},
    {"s16_22k_mono.wav", "-c:a pcm_s16le", 22050, 1, "wav", "pcm_s16le", 0},
    {"u8_8k_mono.wav", "-c:a pcm_u8", 8000, 1, "wav", "pcm_u8", 0},
    {"a.flac", "-c:a flac", 44100, 2, "flac", "flac", 0},
    {"a96k.flac", "-c:a flac", 96000, 2, "flac", "flac", 0},
    {"a.mp3", "-c:a libmp3lame -b:a 192k", 44100, 2, "mp3", "mp3float", 1},
    {"a.ogg", "-c:a libvorbis -q:a 5", 44100, 2, "ogg", "vorbis", 1},
    {"a.opus", "-c:a libopus -b:a 128k", 48000, 2, "ogg", "opus", 1},
    {"a.m4a", "-c:a aac -b:a 192k", 44100, 2, "mp4", "aac", 1},
    {"a_faststart.m4a", "-c:a aac -b:a 192k -movflags +faststart", 44100, 2, "mp4", "aac", 1},
    {"a.aiff", "-c:a pcm_s16be", 44100, 2, "aiff", "pcm_s16be", 0},
    {"a.webm", "-c:a libopus -b:a 128k", 48000, 2, "matroska", "opus", 1},
    {"a.mka", "-c:a flac", 44100, 2, "matroska", "flac", 0},
    {"a.w64", "-c:a pcm_s24le", 44100, 2, "w64", "pcm_s24le", 0},
    {"a.caf", "-c:a pcm_s16le", 44100, 2, "caf", "pcm_s16le", 0},
    {"a.au", "-c:a pcm_s16be", 44100, 2, "au", "pcm_s16be", 0},
    {"a.wv", "-c:a wavpack", 44100, 2, "wv", "wavpack", 0},
    {"a_alac.m4a", "-c:a alac", 44100, 2, "mp4", "alac", 0},
    {"a.aac", "-c:a aac -b:a 192k -f adts", 44100, 2, "aac", "aac", 1},
    {"flac.oga", "-c:a flac -f ogg", 44100, 2, "ogg", "flac", 0},
    {"mp3_in.mp4", "-c:a libmp3lame -b:a 192k", 44100, 2, "mp4", "mp3float", 1},
    {"ima.wav", "-c:a adpcm_ima_wav", 44100, 2, "wav", "adpcm_ima_wav", 1},
    {"alaw_8k.wav", "-c:a pcm_alaw", 8000, 1, "wav", "pcm_alaw", 1},
};

#define SINE "0.5*sin(2*PI*440*t)"

static void gen_sine(const char *file, const char *codec_args, int rate, int ch, double dur)
{
    CHECK(sh(FFMPEG "-f lavfi -i 'aevalsrc=%s%s:s=%d:d=%g' %s %s", SINE, ch == 2 ? "|" SINE : "",
             rate, dur, codec_args, file) == 0);
}

static void check_sine(const clmr_audio_t *a, double dur, int lossy, double amp)
{
    double dtol = lossy ? 0.05 : 2.0 / CLMR_SAMPLE_RATE;
    CHECK_NEAR(a->duration_s, dur, dtol);
    CHECK_NEAR(a->duration_s, (double)a->n_samples / CLMR_SAMPLE_RATE, 1e-12);
    CHECK_NEAR(measure_freq(a->samples, a->n_samples, CLMR_SAMPLE_RATE), 440.0, lossy ? 1.0 : 0.2);
    CHECK_NEAR(measure_amp(a->samples, a->n_samples), amp, lossy ? 0.05 : 0.01);
}

static void test_every_format(void)
{
    for (size_t i = 0; i < sizeof(k_cases) / sizeof(k_cases[0]); i++) {
        const fmt_case_t *c = &k_cases[i];
        gen_sine(c->file, c->codec_args, c->rate, c->channels, 3.0);
        clmr_audio_t a;
        char *err = NULL;
        int rc = clmr_audio_decode_file(&a, tpath(c->file), NULL, &err);
        CHECKF(rc == 0, "%s: %s: %s", c->file, clmr_err_name(rc), err ? err : "");
        if (rc == 0) {
            printf("# %-18s %-9s %-10s %6d Hz %d ch -> %zu samples\n", c->file, a.format, a.codec,
                   a.source_rate, a.source_channels, a.n_samples);
            CHECKF(strcmp(a.format, c->format) == 0, "%s: format %s", c->file, a.format);
            CHECKF(strcmp(a.codec, c->codec) == 0, "%s: codec %s", c->file, a.codec);
            CHECK(a.source_rate == c->rate);
            CHECK(a.source_channels == c->channels);
            check_sine(&a, 3.0, c->lossy, 0.5);
        }
        free(err);
        clmr_audio_free(&a);
        CHECK(a.samples == NULL && a.n_samples == 0);
    }
}

/* 22,050 Hz mono float input must come out bit for bit, s16 exactly as x / 32768. */
static void test_identity_exact(void)
{
    enum { N = 30000 };
    float *x = malloc(N * sizeof(float));
    int16_t *s = malloc(N * sizeof(int16_t));
    uint32_t r = 12345;
    for (int i = 0; i < N; i++) {
        r = r * 1664525u + 1013904223u;
        x[i] = ((float)(r >> 8) / (float)(1u << 24)) * 2.0f - 1.0f;
        x[i] *= (i % 7 == 0) ? 1e-3f : 1.0f; /* some small values too */
        s[i] = (int16_t)(r >> 16);
    }
    size_t n;
    unsigned char *w = wav_bytes(3, 1, CLMR_SAMPLE_RATE, 32, 4, N * 4, x, N * 4, &n);
    clmr_audio_t a;
    int rc = clmr_audio_decode_memory(&a, w, n, NULL, NULL);
    CHECK(rc == 0);
    CHECK(a.n_samples == N);
    if (rc == 0 && a.n_samples == N) CHECK(memcmp(a.samples, x, N * sizeof(float)) == 0);
    clmr_audio_free(&a);
    free(w);

    w = wav_bytes(1, 1, CLMR_SAMPLE_RATE, 16, 2, N * 2, s, N * 2, &n);
    rc = clmr_audio_decode_memory(&a, w, n, NULL, NULL);
    CHECK(rc == 0);
    CHECK(a.n_samples == N);
    long mismatches = 0;
    for (size_t i = 0; rc == 0 && i < a.n_samples && i < N; i++)
        mismatches += a.samples[i] != (float)s[i] / 32768.0f;
    CHECKF(mismatches == 0, "%ld samples differ from s16/32768", mismatches);
    clmr_audio_free(&a);
    free(w);
    free(x);
    free(s);
}

/* Downmix is the mean of the channels: a sine on one channel of two is halved, of six is /6. */
static void test_downmix_mean(void)
{
    CHECK(sh(FFMPEG "-f lavfi -i 'aevalsrc=%s|0:s=44100:d=3' -c:a pcm_s16le left_only.wav", SINE) ==
          0);
    clmr_audio_t a;
    int rc = clmr_audio_decode_file(&a, tpath("left_only.wav"), NULL, NULL);
    CHECK(rc == 0);
    if (rc == 0) check_sine(&a, 3.0, 0, 0.25);
    clmr_audio_free(&a);

    CHECK(sh(FFMPEG "-f lavfi -i 'aevalsrc=%s|0|0|0|0|0:s=48000:d=3:c=5.1' -c:a pcm_f32le "
                    "six.wav",
             SINE) == 0);
    rc = clmr_audio_decode_file(&a, tpath("six.wav"), NULL, NULL);
    CHECK(rc == 0);
    CHECK(a.source_channels == 6);
    if (rc == 0) check_sine(&a, 3.0, 0, 0.5 / 6);
    clmr_audio_free(&a);
}

/* A 10 ms clip decodes to its ~220 samples: no padding here (the model pads to a chunk). */
static void test_ten_ms_clip(void)
{
    gen_sine("tiny.wav", "-c:a pcm_s16le", 44100, 2, 0.01);
    clmr_audio_t a;
    int rc = clmr_audio_decode_file(&a, tpath("tiny.wav"), NULL, NULL);
    CHECK(rc == 0);
    CHECKF(a.n_samples >= 219 && a.n_samples <= 222, "n = %zu", a.n_samples);
    clmr_audio_free(&a);

    const char *lossy[][2] = {{"tiny.mp3", "-c:a libmp3lame"},
                              {"tiny.opus", "-c:a libopus"},
                              {"tiny.m4a", "-c:a aac"},
                              {"tiny.ogg", "-c:a libvorbis"}};
    for (int i = 0; i < 4; i++) {
        gen_sine(lossy[i][0], lossy[i][1], 44100, 2, 0.01);
        char *err = NULL;
        rc = clmr_audio_decode_file(&a, tpath(lossy[i][0]), NULL, &err);
        CHECKF(rc == 0, "%s: %s", lossy[i][0], err ? err : "");
        /* lossy codecs work in frames; allow one frame (<= 2048 samples at 44.1k) of padding */
        CHECKF(rc != 0 || (a.n_samples > 0 && a.n_samples <= 221 + 1024), "%s: n = %zu",
               lossy[i][0], a.n_samples);
        free(err);
        clmr_audio_free(&a);
    }
}

/* Parameters changing mid-stream (concatenated MP3s, chained Ogg): the resampler is re-made, so
 * both halves keep their pitch and the total duration is the sum. A resampler left at the first
 * rate would play the second half an octave off and at half or double the length. */
static void test_param_change_midstream(void)
{
    const char *mp3 = "-c:a libmp3lame -write_xing 0 -id3v2_version 0";
    gen_sine("c1.mp3", mp3, 44100, 2, 2.0);
    gen_sine("c2.mp3", mp3, 22050, 1, 2.0);
    gen_sine("c1.ogg", "-c:a libvorbis", 44100, 2, 2.0);
    gen_sine("c2.ogg", "-c:a libvorbis", 16000, 1, 2.0);
    CHECK(sh("cat c1.mp3 c2.mp3 > chain.mp3 && cat c1.ogg c2.ogg > chain.ogg") == 0);
    const char *files[] = {"chain.mp3", "chain.ogg"};
    for (int i = 0; i < 2; i++) {
        clmr_audio_t a;
        char *err = NULL;
        int rc = clmr_audio_decode_file(&a, tpath(files[i]), NULL, &err);
        CHECKF(rc == 0, "%s: %s", files[i], err ? err : "");
        if (rc == 0) {
            CHECK_NEAR(a.duration_s, 4.0, 0.1);
            CHECK(a.source_rate == 44100 && a.source_channels == 2);
            size_t half = a.n_samples / 2;
            CHECK_NEAR(measure_freq(a.samples, half, CLMR_SAMPLE_RATE), 440.0, 1.0);
            CHECK_NEAR(measure_freq(a.samples + half, a.n_samples - half, CLMR_SAMPLE_RATE), 440.0,
                       1.0);
            CHECK_NEAR(measure_amp(a.samples + half, a.n_samples - half), 0.5, 0.05);
        }
        free(err);
        clmr_audio_free(&a);
    }
}

/* decode_file and decode_memory agree; an ID3v2 tag with a cover image larger than the probe
 * window (1 MB) does not hide the MP3 behind it. */
static void test_file_memory_and_big_cover(void)
{
    CHECK(sh("head -c 3000000 /dev/urandom > cover.raw && " FFMPEG
             "-f rawvideo -pix_fmt gray -s 1000x3000 -i cover.raw -frames:v 1 -c:v png "
             "-compression_level 0 cover.png") == 0);
    CHECK(sh(FFMPEG "-f lavfi -i 'aevalsrc=%s:s=44100:d=3' -i cover.png -map 0 -map 1 -c:a "
                    "libmp3lame -c:v copy -id3v2_version 3 covered.mp3",
             SINE) == 0);
    size_t n;
    unsigned char *b = read_all(tpath("covered.mp3"), &n);
    CHECK(b && n > 2000000);
    clmr_audio_t a, m;
    char *err = NULL;
    int rc = clmr_audio_decode_file(&a, tpath("covered.mp3"), NULL, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    int rc2 = clmr_audio_decode_memory(&m, b, n, NULL, NULL);
    CHECK(rc2 == 0);
    if (rc == 0 && rc2 == 0) {
        CHECK(strcmp(a.format, "mp3") == 0);
        check_sine(&a, 3.0, 1, 0.5);
        CHECK(a.n_samples == m.n_samples);
        CHECK(memcmp(a.samples, m.samples, a.n_samples * sizeof(float)) == 0);
    }
    free(err);
    free(b);
    clmr_audio_free(&a);
    clmr_audio_free(&m);
}

typedef struct {
    const unsigned char *b;
    size_t n;
    clmr_audio_t a;
    int rc;
} job_t;

static void *decode_job(void *arg)
{
    job_t *j = arg;
    j->rc = clmr_audio_decode_memory(&j->a, j->b, j->n, NULL, NULL);
    return NULL;
}

/* Concurrent decodes of the same bytes give identical results (no shared mutable state). */
static void test_threads(void)
{
    size_t n;
    unsigned char *b = read_all(tpath("a.mp3"), &n);
    CHECK(b != NULL);
    if (!b) return;
    job_t j[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        j[i] = (job_t){.b = b, .n = n};
        CHECK(pthread_create(&th[i], NULL, decode_job, &j[i]) == 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        CHECK(j[i].rc == 0);
        CHECK(j[i].a.n_samples == j[0].a.n_samples);
        if (j[i].rc == 0 && j[0].rc == 0 && j[i].a.n_samples == j[0].a.n_samples)
            CHECK(memcmp(j[i].a.samples, j[0].a.samples, j[0].a.n_samples * 4) == 0);
    }
    for (int i = 0; i < 4; i++)
        clmr_audio_free(&j[i].a);
    free(b);
}

/* Issue 12: FFmpeg's per-allocation cap is lowered from INT_MAX once a decode has run. */
static void test_ffmpeg_allocation_cap(void)
{
    clmr_audio_t a;
    CHECK(clmr_audio_decode_memory(&a, "x", 1, NULL, NULL) != 0); /* any call installs the cap */
    void *big = av_malloc(CLMR_AUDIO_FFMPEG_MAX_ALLOC + 1);
    CHECKF(big == NULL, "av_malloc of %zu bytes succeeded", CLMR_AUDIO_FFMPEG_MAX_ALLOC + 1);
    av_free(big);
    void *ok = av_malloc(1 << 20);
    CHECK(ok != NULL);
    av_free(ok);
}

int main(void)
{
    RUN_TEST(test_ffmpeg_allocation_cap);
    tdir_make();
    RUN_TEST(test_every_format);
    RUN_TEST(test_identity_exact);
    RUN_TEST(test_downmix_mean);
    RUN_TEST(test_ten_ms_clip);
    RUN_TEST(test_param_change_midstream);
    RUN_TEST(test_file_memory_and_big_cover);
    RUN_TEST(test_threads);
    return TEST_END();
}
