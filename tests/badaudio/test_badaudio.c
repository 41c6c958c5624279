/* test_badaudio.c - replays the bad-audio corpus through clmr_audio_decode_memory with the
 * service's default limits: each file must give the code in tests/badaudio/expected.json, fast,
 * with bounded memory.
 *
 * DESIGN: the committed files are read from tests/badaudio/corpus/; the big ones (10 h
 * decompression bombs, 50 MB cover art) are generated into a temp dir by make_corpus.py --big
 * (Debian's /usr/bin/python3 and ffmpeg; a generation failure fails the test, it is never
 * skipped). Limits are the daemon's defaults (src/config: max-upload-bytes 100M,
 * max-duration-s 900; the decoder's own 60 s deadline is below the 120 s request timeout, so
 * the service passes 60 s). Per file we check: the code; a non-empty message on errors; the
 * decoded duration where expected.json gives one (so "ok" means the right audio came out); the
 * wall time against a bound far below the decoder deadline (so a hang that only the deadline
 * stops still fails); the output size against the duration limit; and the growth of the
 * process's peak RSS (getrusage, monotone, so a per-file delta catches the file that raises it).
 */
#include "badaudio_corpus.h"
#include "clmrd_build_config.h"
#include "harness.h"

#include "clmr/audio.h"
#include "clmr/error.h"

#include <dirent.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The daemon's defaults (src/config/config.c on the http branch). */
#define SERVICE_MAX_UPLOAD_BYTES ((size_t)100 << 20)
#define SERVICE_MAX_DURATION_S 900.0
#define SERVICE_DEADLINE_S 60.0

/* No corpus file needs more than a few seconds even under ASan on a loaded 2-core machine;
 * 20 s is a third of the deadline, so a decode that only the deadline ends fails here. */
#define WALL_BOUND_S 20.0

/* Peak RSS growth allowed for one file: the input, FFmpeg's copy of a 50 MB cover picture, at
 * most 900 s of output (79 MB) and a resampler, plus slack; ASan's quarantine and shadow memory
 * roughly double it. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_SLACK_MB 1024.0
#else
#define RSS_SLACK_MB 256.0
#endif

static char big_dir[128];
static badaudio_case_t *cases;
static size_t n_cases;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double maxrss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        fclose(f);
        return NULL;
    }
    unsigned char *b = malloc((size_t)st.st_size + 1);
    *n = b ? fread(b, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (b && *n != (size_t)st.st_size) {
        free(b);
        return NULL;
    }
    return b;
}

static void remove_big_dir(void)
{
    if (!big_dir[0]) return;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", big_dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", big_dir);
}

/* Every committed file is specified, every specified file exists, the spec is non-trivial. */
static void test_spec_matches_corpus(void)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/badaudio/corpus", CLMRD_SOURCE_ROOT);
    DIR *d = opendir(dir);
    CHECKF(d != NULL, "cannot open %s", dir);
    size_t n_files = 0;
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        n_files++;
        int listed = 0;
        for (size_t i = 0; i < n_cases; i++)
            listed |= !cases[i].generated && strcmp(cases[i].name, e->d_name) == 0;
        CHECKF(listed, "%s is in corpus/ but not in expected.json", e->d_name);
    }
    if (d) closedir(d);
    size_t n_committed = 0, n_gen = 0, n_ok = 0, n_codes = 0;
    int seen[128] = {0}; /* error codes are small negatives */
    for (size_t i = 0; i < n_cases; i++) {
        n_committed += !cases[i].generated;
        n_gen += cases[i].generated;
        int code = badaudio_code(cases[i].expect);
        n_ok += code == 0;
        if (code < 0 && code > -128 && !seen[-code]++) n_codes++;
        CHECKF(access(cases[i].path, R_OK) == 0, "%s is listed but missing", cases[i].path);
    }
    printf("# %zu committed files (%zu in corpus/), %zu generated, %zu expected to decode, "
           "%zu distinct error codes expected\n",
           n_committed, n_files, n_gen, n_ok, n_codes);
    CHECK(n_committed == n_files);
    CHECK(n_gen >= 3);
    /* the corpus must exercise most audio error codes, not just one or two */
    CHECK(n_committed >= 60 && n_codes >= 10);
}

static void test_replay(void)
{
    clmr_audio_params_t p = clmr_audio_default_params();
    p.max_input_bytes = SERVICE_MAX_UPLOAD_BYTES;
    p.max_duration_s = SERVICE_MAX_DURATION_S;
    p.deadline_s = SERVICE_DEADLINE_S;
    const size_t max_out = (size_t)(SERVICE_MAX_DURATION_S * CLMR_SAMPLE_RATE) + CLMR_SAMPLE_RATE;
    double worst_wall = 0, worst_rss = 0;
    const char *worst_wall_name = "", *worst_rss_name = "";
    for (size_t i = 0; i < n_cases; i++) {
        const badaudio_case_t *c = &cases[i];
        size_t n = 0;
        unsigned char *b = slurp(c->path, &n);
        CHECKF(b != NULL, "cannot read %s", c->path);
        if (!b) continue;
        int want = badaudio_code(c->expect);
        double rss0 = maxrss_mb(), t0 = now_s();
        clmr_audio_t a;
        char *err = NULL;
        int rc = clmr_audio_decode_memory(&a, b, n, &p, &err);
        double wall = now_s() - t0, drss = maxrss_mb() - rss0;
        printf("# %-34s %9zu B %6.2f s %+7.1f MB -> %-18s %s%s%.1f s\n", c->name, n, wall, drss,
               clmr_err_name(rc), err ? err : "", err ? " " : "", a.duration_s);
        CHECKF(rc == want, "%s: got %s, want %s", c->name, rc ? clmr_err_name(rc) : "ok",
               c->expect);
        if (rc != 0) {
            CHECKF(err && strlen(err) > 10, "%s: no useful message", c->name);
            CHECK(a.samples == NULL && a.n_samples == 0);
        } else {
            CHECKF(a.samples && a.n_samples > 0 && a.n_samples <= max_out, "%s: %zu samples",
                   c->name, a.n_samples);
            if (c->dur_hi >= 0)
                CHECKF(a.duration_s >= c->dur_lo && a.duration_s <= c->dur_hi,
                       "%s: %.4f s decoded, expected %.4f-%.4f s", c->name, a.duration_s, c->dur_lo,
                       c->dur_hi);
        }
        CHECKF(wall < WALL_BOUND_S, "%s: %.1f s (bound %.0f s)", c->name, wall, WALL_BOUND_S);
        double rss_bound = 3.0 * (double)n / 1e6 + RSS_SLACK_MB;
        CHECKF(drss < rss_bound, "%s: peak RSS grew %.0f MB (bound %.0f MB)", c->name, drss,
               rss_bound);
        if (wall > worst_wall) worst_wall = wall, worst_wall_name = c->name;
        if (drss > worst_rss) worst_rss = drss, worst_rss_name = c->name;
        free(err);
        clmr_audio_free(&a);
        free(b);
    }
    printf("# slowest: %s %.2f s; largest peak RSS growth: %s %.1f MB; peak RSS %.0f MB\n",
           worst_wall_name, worst_wall, worst_rss_name, worst_rss, maxrss_mb());
}

int main(void)
{
    snprintf(big_dir, sizeof big_dir, "/tmp/clmr-badaudio-XXXXXX");
    if (!mkdtemp(big_dir)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(remove_big_dir);
    const char *py = getenv("CLMR_PYTHON") ? getenv("CLMR_PYTHON") : "/usr/bin/python3";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s '%s/tests/badaudio/make_corpus.py' --big '%s'", py,
             CLMRD_SOURCE_ROOT, big_dir);
    double t0 = now_s();
    int gen_rc = system(cmd);
    printf("# generated the big files in %.1f s (exit %d)\n", now_s() - t0, gen_rc);
    if (badaudio_load(CLMRD_SOURCE_ROOT, gen_rc == 0 ? big_dir : NULL, &cases, &n_cases) != 0) {
        printf("Bail out! cannot load tests/badaudio/expected.json\n");
        return 1;
    }
    RUN_TEST(test_spec_matches_corpus);
    RUN_TEST(test_replay);
    badaudio_free(cases);
    if (gen_rc != 0) {
        /* the generated cases were left out: count that as a failure, not a skip */
        printf("not ok %d - generate big corpus files (make_corpus.py --big)\n", ++t__count);
        t__failed++;
    }
    return TEST_END();
}
