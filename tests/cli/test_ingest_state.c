/* test_ingest_state.c - the state journal of `clmrd ingest` (src/cli/ingest_state.c): lookups by
 * path + size + mtime, paths with tabs and newlines, a line cut short by a crash, later lines
 * winning, compaction, and the audio-name filter of the walk. */
#include "cli/ingest.h"
#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *tmpfile_path(void)
{
    char *p = malloc(64);
    snprintf(p, 64, "/tmp/clmr-ingest-XXXXXX");
    int fd = mkstemp(p);
    close(fd);
    unlink(p); /* the journal creates it */
    return p;
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && (c = fgetc(f)) != EOF)
        n += c == '\n';
    if (f) fclose(f);
    return n;
}

static void test_roundtrip_and_lookup(void)
{
    char *path = tmpfile_path();
    clmr_ingest_state_t *st = NULL;
    CHECK(clmr_ingest_state_open(&st, path, NULL) == 0);
    const char *odd = "/music/a\ttab\nnewline\\slash.flac";
    CHECK(clmr_ingest_state_lookup(st, odd, 10, 20, NULL) == 0);
    CHECK(clmr_ingest_state_record(st, odd, 10, 20, "ab", CLMR_INGEST_DONE, NULL) == 0);
    CHECK(clmr_ingest_state_record(st, "/music/bad.mp3", 5, 6, "cd", CLMR_INGEST_REFUSED,
                                   "HTTP 415 not_audio:\tnot audio") == 0);
    clmr_ingest_state_close(&st);
    CHECK(st == NULL);

    CHECK(clmr_ingest_state_open(&st, path, NULL) == 0);
    const char *why = NULL;
    CHECK(clmr_ingest_state_lookup(st, odd, 10, 20, NULL) == CLMR_INGEST_DONE);
    CHECK(clmr_ingest_state_lookup(st, odd, 11, 20, NULL) == 0); /* size changed */
    CHECK(clmr_ingest_state_lookup(st, odd, 10, 21, NULL) == 0); /* mtime changed */
    CHECK(clmr_ingest_state_lookup(st, "/music/bad.mp3", 5, 6, &why) == CLMR_INGEST_REFUSED);
    CHECK(why && !strcmp(why, "HTTP 415 not_audio:\tnot audio"));
    /* a later record for the same path wins */
    CHECK(clmr_ingest_state_record(st, "/music/bad.mp3", 7, 8, "ef", CLMR_INGEST_DONE, NULL) == 0);
    clmr_ingest_state_close(&st);
    CHECK(clmr_ingest_state_open(&st, path, NULL) == 0);
    CHECK(clmr_ingest_state_lookup(st, "/music/bad.mp3", 5, 6, NULL) == 0);
    CHECK(clmr_ingest_state_lookup(st, "/music/bad.mp3", 7, 8, NULL) == CLMR_INGEST_DONE);
    clmr_ingest_state_close(&st);
    unlink(path);
    free(path);
}

static void test_crash_cut_line_is_ignored(void)
{
    char *path = tmpfile_path();
    FILE *f = fopen(path, "w");
    fprintf(f, "v1\td\t1\t2\tab\t/a.wav\t\n");
    fprintf(f, "garbage line\n");
    fprintf(f, "v1\td\t3\t4\tcd\t/b.wav"); /* no newline: the process died mid-write */
    fclose(f);
    clmr_ingest_state_t *st = NULL;
    CHECK(clmr_ingest_state_open(&st, path, NULL) == 0);
    CHECK(clmr_ingest_state_lookup(st, "/a.wav", 1, 2, NULL) == CLMR_INGEST_DONE);
    CHECK(clmr_ingest_state_lookup(st, "/b.wav", 3, 4, NULL) == 0);
    clmr_ingest_state_close(&st);
    unlink(path);
    free(path);
}

static void test_compaction(void)
{
    char *path = tmpfile_path();
    clmr_ingest_state_t *st = NULL;
    CHECK(clmr_ingest_state_open(&st, path, NULL) == 0);
    for (int i = 0; i < 300; i++) /* one path recorded 300 times */
        CHECK(clmr_ingest_state_record(st, "/same.flac", i, i, "ab", CLMR_INGEST_DONE, NULL) == 0);
    clmr_ingest_state_close(&st);
    CHECK(count_lines(path) == 300);
    CHECK(clmr_ingest_state_open(&st, path, NULL) == 0); /* rewritten: one line per path */
    CHECK(count_lines(path) == 1);
    CHECK(clmr_ingest_state_lookup(st, "/same.flac", 299, 299, NULL) == CLMR_INGEST_DONE);
    clmr_ingest_state_close(&st);
    unlink(path);
    free(path);
}

static void test_default_path_and_names(void)
{
    char buf[4096];
    setenv("XDG_STATE_HOME", "/xdg", 1);
    CHECK(clmr_ingest_state_default_path(buf, sizeof buf, "http://127.0.0.1:8080") == 0);
    CHECK(!strncmp(buf, "/xdg/clmrd/ingest-", 18) && strlen(buf) == 18 + 16 + 4);
    char other[4096];
    CHECK(clmr_ingest_state_default_path(other, sizeof other, "http://127.0.0.1:8081") == 0);
    CHECK(strcmp(buf, other) != 0); /* one journal per server */
    CHECK(clmr_ingest_is_audio_name("a.FLAC") && clmr_ingest_is_audio_name("x.y.mp3"));
    CHECK(!clmr_ingest_is_audio_name("cover.jpg") && !clmr_ingest_is_audio_name("flac") &&
          !clmr_ingest_is_audio_name(".mp3"));
}

int main(void)
{
    RUN_TEST(test_roundtrip_and_lookup);
    RUN_TEST(test_crash_cut_line_is_ignored);
    RUN_TEST(test_compaction);
    RUN_TEST(test_default_path_and_names);
    return TEST_END();
}
