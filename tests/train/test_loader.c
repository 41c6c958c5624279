/* test_loader.c - the training data pipeline on a pool of real files made with sox in the test:
 * batch layout, crops that match the files exactly (identity augmentation), stereo down-mix,
 * 44.1 kHz resampling, FFmpeg fallback for an AAC file libsndfile cannot read, independent views of
 * one track, determinism across runs, worker counts and resume, skipping bad files, and shutting
 * down with workers busy or blocked.
 */
#include "clmr/audio.h"
#include "clmr/error.h"
#include "harness.h"
#include "train/loader.h"

#include <sndfile.h>
#include <string.h>
#include <unistd.h>

#define CHUNK CLMR_AUGMENT_CHUNK
static char dir[] = "/tmp/clmr-loader-XXXXXX";
static char path_buf[16][512];
static int n_skip_cb;

static int sh(const char *fmt, const char *a)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, dir, a);
    return system(cmd);
}

/* The pool: 6 mono 22,050 Hz tones (4 FLAC, 2 WAV), one stereo WAV, one 44.1 kHz WAV, one 1 s
 * FLAC (shorter than a chunk, in a subdirectory), a corrupt .wav and a text file. */
static int make_pool(void)
{
    if (!mkdtemp(dir)) return -1;
    int rc = 0;
    const char *tones[] = {"t0.flac 6 sine 300", "t1.flac 7 sine 450", "t2.flac 5 sine 600",
                           "t3.flac 8 sine 750", "t4.wav 6 sine 900",  "t5.wav 5 sine 1050"};
    for (int i = 0; i < 6; i++) {
        char name[64], dur[8], fn[16], f[16];
        sscanf(tones[i], "%63s %7s %15s %15s", name, dur, fn, f);
        char cmd[1024];
        snprintf(cmd, sizeof cmd,
                 "sox -n -r 22050 -c 1 -b 16 %s/%s synth %s %s %s vol 0.5 2>/dev/null", dir, name,
                 dur, fn, f);
        rc |= system(cmd);
    }
    rc |= sh("sox -n -r 22050 -c 2 -b 16 %s/%s synth 5 sine 500 sine 1500 vol 0.5", "stereo.wav");
    rc |= sh("sox -n -r 44100 -c 1 -b 16 %s/%s synth 5 sine 440 vol 0.5", "rate44k.wav");
    rc |= sh("mkdir -p %s/%s", "sub");
    rc |= sh("sox -n -r 22050 -c 1 -b 16 %s/%s synth 1 sine 200 vol 0.5", "sub/short.flac");
    rc |= sh("head -c 3000 /dev/urandom > %s/%s", "bad.wav");
    rc |= sh("echo hello > %s/%s", "notes.txt");
    return rc;
}

static void skip_cb(void *ud, const char *path, const char *reason)
{
    (void)ud;
    (void)reason;
    n_skip_cb += strstr(path, "bad.wav") != NULL;
}

static clmr_loader_params_t identity_params(size_t pairs)
{
    clmr_loader_params_t p = clmr_loader_default_params();
    p.batch_pairs = pairs;
    p.augment.p_polarity = p.augment.p_noise = p.augment.p_gain = p.augment.p_filter = 0;
    p.augment.p_delay = p.augment.p_pitch = p.augment.p_reverb = 0;
    return p;
}

/* Reads `n` frames of a file at `off`, averaged over channels, as the loader should deliver. */
static int read_ref(const char *path, uint64_t off, float *out, size_t n)
{
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    if (!f) return -1;
    float *raw = calloc(n * (size_t)info.channels, sizeof(float));
    sf_seek(f, (sf_count_t)off, SEEK_SET);
    sf_count_t got = sf_readf_float(f, raw, (sf_count_t)n);
    for (size_t i = 0; i < n; i++) {
        float s = 0;
        for (int c = 0; c < info.channels; c++)
            s += raw[i * (size_t)info.channels + (size_t)c];
        out[i] = i < (size_t)got ? s / (float)info.channels : 0.0f;
    }
    free(raw);
    sf_close(f);
    return 0;
}

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
    return cycles > 0 ? cycles / ((last - first) / 22050.0) : 0;
}

static void test_open_dir(void)
{
    clmr_loader_params_t p = identity_params(4);
    p.on_skip = skip_cb;
    clmr_loader_t *ld = NULL;
    char *msg = NULL;
    n_skip_cb = 0;
    CHECK(clmr_loader_open_dir(&ld, dir, &p, &msg) == 0);
    if (!ld) {
        printf("# %s\n", msg ? msg : "?");
        free(msg);
        return;
    }
    CHECK(clmr_loader_n_tracks(ld) == 9); /* 6 tones + stereo + 44.1k + short; bad.wav skipped */
    CHECK(n_skip_cb == 1);
    clmr_loader_stats_t st;
    clmr_loader_stats(ld, &st);
    CHECK(st.skipped == 1 && st.resampled == 1 && st.tracks == 9);
    /* Sorted order: the subdirectory's file sorts after "stereo.wav", before "t0.flac". */
    CHECK(strstr(clmr_loader_track_path(ld, 0), "rate44k.wav") != NULL);
    CHECK(strstr(clmr_loader_track_path(ld, 2), "sub/short.flac") != NULL);
    clmr_loader_close(&ld);
    CHECK(ld == NULL);

    p.skip_bad = 0;
    CHECK(clmr_loader_open_dir(&ld, dir, &p, &msg) == CLMR_EINVAL && ld == NULL);
    CHECK(msg && strstr(msg, "bad.wav"));
    free(msg);
    msg = NULL;
    char empty[600];
    snprintf(empty, sizeof empty, "%s/sub", dir);
    p.recursive = 0;
    CHECK(clmr_loader_open_dir(&ld, dir, &p, NULL) == CLMR_EINVAL); /* skip_bad = 0 still */
    p.skip_bad = 1;
    CHECK(sh("mkdir -p %s/%s", "empty") == 0);
    snprintf(empty, sizeof empty, "%s/empty", dir);
    CHECK(clmr_loader_open_dir(&ld, empty, &p, &msg) == CLMR_ENOT_FOUND && ld == NULL);
    free(msg);
    p.batch_pairs = 0;
    CHECK(clmr_loader_open_dir(&ld, dir, &p, NULL) == CLMR_EINVAL);
}

/* With every augmentation off, each view must be exactly the file's samples at its offset. */
static void test_crops_match_files(void)
{
    clmr_loader_params_t p = identity_params(9); /* the whole pool in one batch (one epoch) */
    clmr_loader_t *ld = NULL;
    CHECK(clmr_loader_open_dir(&ld, dir, &p, NULL) == 0);
    if (!ld) return;
    float *ref = malloc(CHUNK * sizeof(float));
    for (int b = 0; b < 2; b++) {
        clmr_batch_t batch;
        CHECK(clmr_loader_next(ld, &batch, NULL) == 0);
        CHECK(batch.n_pairs == 9 && batch.chunk == CHUNK && batch.index == (uint64_t)b);
        int seen[9] = {0};
        for (size_t i = 0; i < 9; i++) {
            uint32_t t = batch.track[i];
            CHECK(t < 9);
            if (t >= 9) continue;
            seen[t]++;
            const char *path = clmr_loader_track_path(ld, t);
            const float *v0 = batch.x + i * CHUNK, *v1 = batch.x + (i + 9) * CHUNK;
            if (strstr(path, "rate44k")) {
                /* Resampled from 44.1 kHz: the 440 Hz tone must still be 440 Hz. */
                CHECK_NEAR(zc_freq(v0, 1000, CHUNK - 1000), 440.0, 0.5);
                CHECK_NEAR(zc_freq(v1, 1000, CHUNK - 1000), 440.0, 0.5);
                continue;
            }
            for (int v = 0; v < 2; v++) {
                read_ref(path, batch.offset[v * 9 + i], ref, CHUNK);
                CHECKF(memcmp(ref, v ? v1 : v0, CHUNK * sizeof(float)) == 0,
                       "batch %d pair %zu view %d differs from %s at %llu", b, i, v, path,
                       (unsigned long long)batch.offset[v * 9 + i]);
            }
            if (!strstr(path, "short")) { /* independent crops of one track */
                CHECK(batch.offset[i] != batch.offset[i + 9]);
            } else {
                CHECK(batch.offset[i] == 0 && v0[22050 + 100] == 0.0f); /* zero-padded */
            }
        }
        for (int t = 0; t < 9; t++)
            CHECKF(seen[t] == 1, "track %d appears %d times", t, seen[t]);
    }
    free(ref);
    clmr_loader_close(&ld);
}

static void test_augmented_batches(void)
{
    clmr_loader_params_t p = clmr_loader_default_params();
    p.batch_pairs = 4;
    p.seed = 1234;
    clmr_loader_t *ld = NULL;
    CHECK(clmr_loader_open_dir(&ld, dir, &p, NULL) == 0);
    if (!ld) return;
    clmr_batch_t b;
    for (int k = 0; k < 3; k++) {
        CHECK(clmr_loader_next(ld, &b, NULL) == 0);
        int finite = 1, pairs_differ = 1;
        for (size_t i = 0; i < 2 * 4 * CHUNK; i++)
            finite &= isfinite(b.x[i]);
        for (size_t i = 0; i < 4; i++)
            pairs_differ &= memcmp(b.x + i * CHUNK, b.x + (i + 4) * CHUNK, CHUNK * 4) != 0;
        CHECK(finite && pairs_differ);
        for (size_t i = 0; i < 4; i++)
            for (size_t j = i + 1; j < 4; j++)
                CHECK(b.track[i] != b.track[j]);
    }
    clmr_loader_stats_t st;
    clmr_loader_stats(ld, &st);
    CHECK(st.batches == 3 && st.views >= 24 && st.read_errors == 0 && st.nonfinite == 0);
    CHECK(st.waits <= st.batches && st.wait_s >= 0 && st.max_wait_s <= st.wait_s + 1e-9);
    CHECK(st.produce_s > 0);
    clmr_loader_close(&ld);
}

/* Batches k of two loaders: same seed -> identical bits, for 1 and 2 workers and on resume. */
static float *run(uint64_t seed, int workers, uint64_t start, int n_batches)
{
    clmr_loader_params_t p = clmr_loader_default_params();
    p.batch_pairs = 3;
    p.seed = seed;
    p.n_workers = workers;
    p.start_batch = start;
    size_t per = 2 * 3 * CHUNK;
    float *all = malloc((size_t)n_batches * per * sizeof(float));
    clmr_loader_t *ld = NULL;
    if (clmr_loader_open_dir(&ld, dir, &p, NULL) != 0) {
        free(all);
        return NULL;
    }
    for (int k = 0; k < n_batches; k++) {
        clmr_batch_t b;
        if (clmr_loader_next(ld, &b, NULL) != 0 || b.index != start + (uint64_t)k) {
            free(all);
            clmr_loader_close(&ld);
            return NULL;
        }
        memcpy(all + (size_t)k * per, b.x, per * sizeof(float));
    }
    clmr_loader_close(&ld);
    return all;
}

static void test_determinism(void)
{
    size_t per = 2 * 3 * CHUNK * sizeof(float);
    float *a = run(77, 1, 0, 3), *b = run(77, 1, 0, 3), *c = run(77, 2, 0, 3),
          *d = run(77, 1, 2, 1), *e = run(78, 1, 0, 3);
    CHECK(a && b && c && d && e);
    if (a && b && c && d && e) {
        CHECK(memcmp(a, b, 3 * per) == 0);
        CHECK(memcmp(a, c, 3 * per) == 0);               /* worker count does not matter */
        CHECK(memcmp((char *)a + 2 * per, d, per) == 0); /* resume at batch 2 */
        CHECK(memcmp(a, e, per) != 0);
        CHECK(memcmp(a, (char *)a + per, per) != 0); /* consecutive batches differ */
    }
    free(a);
    free(b);
    free(c);
    free(d);
    free(e);
}

/* Closing must not hang: right after open, with the ring full and workers blocked, and while a
 * worker is producing. */
static void test_shutdown(void)
{
    clmr_loader_params_t p = clmr_loader_default_params();
    p.batch_pairs = 2;
    p.n_workers = 2;
    p.ring = 3;
    clmr_loader_t *ld = NULL;
    CHECK(clmr_loader_open_dir(&ld, dir, &p, NULL) == 0);
    clmr_loader_close(&ld);
    CHECK(ld == NULL);
    p.augment.p_pitch = p.augment.p_reverb = 0; /* fill the ring quickly */
    CHECK(clmr_loader_open_dir(&ld, dir, &p, NULL) == 0);
    if (!ld) return;
    clmr_batch_t b;
    CHECK(clmr_loader_next(ld, &b, NULL) == 0);
    usleep(300 * 1000); /* workers fill the other slots, then block on a full ring */
    clmr_loader_close(&ld);
    p.batch_pairs = 16;
    p.augment.p_pitch = p.augment.p_reverb = 0.6;
    CHECK(clmr_loader_open_dir(&ld, dir, &p, NULL) == 0);
    usleep(20 * 1000); /* mid-batch */
    clmr_loader_close(&ld);
    CHECK(ld == NULL);
    clmr_loader_close(NULL);
}

/* A file that disappears after the scan is replaced by another track and counted. */
static void test_vanished_file(void)
{
    char victim[600], *paths[2];
    snprintf(victim, sizeof victim, "%s/victim.flac", dir);
    CHECK(sh("sox -n -r 22050 -c 1 -b 16 %s/%s synth 4 sine 330", "victim.flac") == 0);
    snprintf(path_buf[0], sizeof path_buf[0], "%s/t0.flac", dir);
    paths[0] = path_buf[0];
    paths[1] = victim;
    clmr_loader_params_t p = identity_params(2);
    p.ring = 2;
    p.n_workers = 1;
    clmr_loader_t *ld = NULL;
    CHECK(clmr_loader_open(&ld, (const char *const *)paths, 2, &p, NULL) == 0);
    if (!ld) return;
    clmr_batch_t b;
    CHECK(clmr_loader_next(ld, &b, NULL) == 0); /* produced before the file went away */
    unlink(victim);
    for (uint64_t k = 1; k <= 3; k++) {
        CHECK(clmr_loader_next(ld, &b, NULL) == 0 && b.index == k);
        /* Batch 1 may have been read before the unlink; batches 2 and 3 were produced after it
         * (their slot was busy until now) and must use the surviving track for both pairs. */
        if (k >= 2) CHECK(b.track[0] == 0 && b.track[1] == 0);
    }
    clmr_loader_stats_t st;
    clmr_loader_stats(ld, &st);
    CHECKF(st.read_errors >= 2, "read_errors %llu", (unsigned long long)st.read_errors);
    clmr_loader_close(&ld);
}

static char last_reason[512];
static void reason_cb(void *ud, const char *path, const char *reason)
{
    (void)ud;
    (void)path;
    snprintf(last_reason, sizeof last_reason, "%s", reason);
}

/* An AAC .m4a (libsndfile cannot read it) is decoded by FFmpeg at open and cropped from memory;
 * a budget too small for it skips it with a reason. */
static void test_ffmpeg_fallback(void)
{
    CHECK(sh("mkdir -p %s/%s", "aac") == 0);
    CHECK(sh("ffmpeg -loglevel error -f lavfi -i sine=frequency=440:duration=5:sample_rate=22050 "
             "-ac 1 -c:a aac -b:a 96k %s/%s",
             "aac/tone.m4a") == 0);
    CHECK(sh("sox -n -r 22050 -c 1 -b 16 %s/%s synth 4 sine 330", "aac/other.flac") == 0);
    char sub[600], m4a[600];
    snprintf(sub, sizeof sub, "%s/aac", dir);
    snprintf(m4a, sizeof m4a, "%s/aac/tone.m4a", dir);
    clmr_loader_params_t p = identity_params(2);
    clmr_loader_t *ld = NULL;
    char *msg = NULL;
    CHECK(clmr_loader_open_dir(&ld, sub, &p, &msg) == 0);
    if (!ld) {
        printf("# %s\n", msg ? msg : "?");
        free(msg);
        return;
    }
    clmr_loader_stats_t st;
    clmr_loader_stats(ld, &st);
    CHECK(st.tracks == 2 && st.decoded == 1 && st.skipped == 0);
    clmr_audio_t ref;
    CHECK(clmr_audio_decode_file(&ref, m4a, NULL, NULL) == 0);
    clmr_batch_t b;
    CHECK(clmr_loader_next(ld, &b, NULL) == 0);
    int found = 0;
    for (size_t i = 0; i < 2 && ref.samples; i++) {
        if (!strstr(clmr_loader_track_path(ld, b.track[i]), "tone.m4a")) continue;
        found = 1;
        for (int v = 0; v < 2; v++) {
            uint64_t off = b.offset[v * 2 + i];
            CHECK(off + CHUNK <= ref.n_samples);
            if (off + CHUNK <= ref.n_samples)
                CHECK(memcmp(b.x + (v * 2 + i) * CHUNK, ref.samples + off, CHUNK * 4) == 0);
            CHECK_NEAR(zc_freq(b.x + (v * 2 + i) * CHUNK, 100, CHUNK - 100), 440.0, 0.5);
        }
    }
    CHECK(found);
    clmr_audio_free(&ref);
    clmr_loader_close(&ld);

    p.max_decoded_bytes = 1000; /* far less than 5 s of audio */
    p.on_skip = reason_cb;
    last_reason[0] = 0;
    CHECK(clmr_loader_open_dir(&ld, sub, &p, NULL) == 0);
    if (ld) CHECK(clmr_loader_n_tracks(ld) == 1);
    CHECK(strstr(last_reason, "max_decoded_bytes") != NULL);
    clmr_loader_close(&ld);
}

int main(void)
{
    if (make_pool() != 0) {
        printf("Bail out! cannot create the test pool with sox in %s\n", dir);
        return 1;
    }
    RUN_TEST(test_open_dir);
    RUN_TEST(test_crops_match_files);
    RUN_TEST(test_augmented_batches);
    RUN_TEST(test_determinism);
    RUN_TEST(test_shutdown);
    RUN_TEST(test_vanished_file);
    RUN_TEST(test_ffmpeg_fallback);
    sh("rm -rf %s%s", "");
    return TEST_END();
}
