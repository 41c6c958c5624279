/* test_labels.c - the labels (JSON lines) and vocabulary readers: parsing, path resolution, and
 * the errors a user sees (each must name the line). */
#include "clmr/error.h"
#include "harness.h"
#include "train/labels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static const char *write_file(const char *name, const char *text)
{
    static char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_parse_and_resolve(void)
{
    const char *p =
        write_file("a.jsonl", "{\"path\": \"x/one.wav\", \"tags\": [\"low\", \"slow\"]}\n"
                              "\n"
                              "{\"path\": \"/abs/two.wav\", \"tags\": []}\n"
                              "{\"tags\": [\"high\"], \"path\": \"three.wav\"}\r\n");
    clmr_labels_t l;
    char *err = NULL;
    CHECK(clmr_labels_load(&l, p, NULL, 0, &err) == 0);
    CHECK(l.n_items == 3 && l.n_vocab == 3);
    char want[128];
    snprintf(want, sizeof(want), "%s/x/one.wav", dir);
    CHECK(strcmp(l.paths[0], want) == 0);
    CHECK(strcmp(l.paths[1], "/abs/two.wav") == 0);
    CHECK(l.lines[0] == 1 && l.lines[1] == 3 && l.lines[2] == 4);
    CHECK(strcmp(l.vocab[0], "low") == 0 && strcmp(l.vocab[1], "slow") == 0 &&
          strcmp(l.vocab[2], "high") == 0);
    const uint8_t y[9] = {1, 1, 0, 0, 0, 0, 0, 0, 1};
    CHECK(memcmp(l.y, y, 9) == 0);
    CHECK(strlen(l.sha256) == 64);
    clmr_labels_free(&l);
    clmr_labels_free(&l);
    /* with a fixed vocabulary the columns follow it */
    const char *vocab[] = {"high", "mid", "low", "slow"};
    CHECK(clmr_labels_load(&l, p, vocab, 4, &err) == 0);
    CHECK(l.n_vocab == 4);
    const uint8_t y2[12] = {0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0};
    CHECK(memcmp(l.y, y2, 12) == 0);
    clmr_labels_free(&l);
    free(err);
}

static void test_vocabulary_growth_keeps_rows(void)
{
    /* more than the initial 16 columns, introduced one per line */
    char text[4096] = "";
    for (int i = 0; i < 40; i++) {
        char line[96];
        snprintf(line, sizeof(line), "{\"path\": \"f%d.wav\", \"tags\": [\"t%d\", \"t0\"]}\n", i,
                 i);
        strcat(text, line);
    }
    const char *p = write_file("grow.jsonl", text);
    clmr_labels_t l;
    CHECK(clmr_labels_load(&l, p, NULL, 0, NULL) == 0);
    CHECK(l.n_items == 40 && l.n_vocab == 40);
    int bad = 0;
    for (int i = 0; i < 40; i++)
        for (int t = 0; t < 40; t++)
            bad += l.y[i * 40 + t] != (t == i || t == 0);
    CHECK(bad == 0);
    clmr_labels_free(&l);
}

static void expect_error(const char *text, const char *const *vocab, int nv, const char *needle)
{
    const char *p = write_file("bad.jsonl", text);
    clmr_labels_t l;
    char *err = NULL;
    int rc = clmr_labels_load(&l, p, vocab, nv, &err);
    CHECKF(rc == CLMR_EINVAL, "rc %d for %s", rc, text);
    CHECKF(err && strstr(err, needle), "message '%s' lacks '%s'", err ? err : "(null)", needle);
    CHECK(l.n_items == 0 && l.paths == NULL);
    free(err);
}

static void test_errors_name_the_line(void)
{
    const char *vocab[] = {"low", "high"};
    expect_error(
        "{\"path\": \"a.wav\", \"tags\": [\"low\"]}\n{\"path\": \"b.wav\", \"tags\": [\"lo\"]}\n",
        vocab, 2, ":2: unknown tag \"lo\"");
    expect_error(
        "{\"path\": \"a.wav\", \"tags\": [\"low\"]}\n\n{\"path\": \"b.wav\", \"tags\": [\n", vocab,
        2, ":3: bad JSON");
    expect_error("{\"tags\": [\"low\"]}\n", vocab, 2, ":1: expected an object");
    expect_error("[1, 2]\n", vocab, 2, ":1: expected an object");
    expect_error("{\"path\": \"a.wav\", \"tags\": \"low\"}\n", vocab, 2, ":1: \"tags\" must be");
    expect_error("{\"path\": \"a.wav\", \"tags\": [3]}\n", vocab, 2, ":1: tag 1 is not");
    expect_error("\n\n", vocab, 2, "no labelled files");
    expect_error("{\"path\": \"a.wav\", \"tags\": []}\n", NULL, 0, "no tags used");
    clmr_labels_t l;
    char *err = NULL;
    CHECK(clmr_labels_load(&l, "/nonexistent/labels.jsonl", NULL, 0, &err) == CLMR_EIO);
    CHECK(err && strstr(err, "/nonexistent/labels.jsonl"));
    free(err);
}

static void test_vocab_file(void)
{
    char **tags;
    int n;
    char *err = NULL;
    CHECK(clmr_labels_read_vocab(&tags, &n, write_file("v.txt", "# tags\nlow\n  high \n\nnoise"),
                                 &err) == 0);
    CHECK(n == 3 && strcmp(tags[0], "low") == 0 && strcmp(tags[1], "high") == 0 &&
          strcmp(tags[2], "noise") == 0);
    clmr_labels_free_vocab(tags, n);
    CHECK(clmr_labels_read_vocab(&tags, &n, write_file("v.txt", "low\nhigh\nlow\n"), &err) ==
          CLMR_EINVAL);
    CHECK(err && strstr(err, ":3: tag \"low\" listed twice"));
    CHECK(clmr_labels_read_vocab(&tags, &n, write_file("v.txt", "# nothing\n"), &err) ==
          CLMR_EINVAL);
    free(err);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/clmr-labels-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN_TEST(test_parse_and_resolve);
    RUN_TEST(test_vocabulary_growth_keeps_rows);
    RUN_TEST(test_errors_name_the_line);
    RUN_TEST(test_vocab_file);
    const char *names[] = {"a.jsonl", "grow.jsonl", "bad.jsonl", "v.txt"};
    for (int i = 0; i < 4; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    return TEST_END();
}
