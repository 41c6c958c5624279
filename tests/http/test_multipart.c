/* test_multipart.c - the multipart/form-data parser on well-formed, binary and malformed bodies. */
#include "harness.h"
#include "http/multipart.h"

#include "clmr/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static size_t build(unsigned char *out, const char *boundary, const unsigned char *file,
                    size_t file_len)
{
    size_t n = 0;
    n += (size_t)sprintf((char *)out + n,
                         "--%s\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nA Song\r\n"
                         "--%s\r\ncontent-disposition: form-data; name=\"file\"; "
                         "filename=\"a b.wav\"\r\nContent-Type: audio/wav\r\n\r\n",
                         boundary, boundary);
    memcpy(out + n, file, file_len);
    n += file_len;
    n += (size_t)sprintf((char *)out + n, "\r\n--%s--\r\n", boundary);
    return n;
}

static void test_boundary_header(void)
{
    char b[80];
    CHECK(clmr_multipart_boundary("multipart/form-data; boundary=abc123", b, sizeof b, NULL) == 0);
    CHECK(strcmp(b, "abc123") == 0);
    CHECK(clmr_multipart_boundary("Multipart/Form-Data; charset=utf-8; boundary=\"q r\"", b,
                                  sizeof b, NULL) == 0);
    CHECK(strcmp(b, "q r") == 0);
    char *msg = NULL;
    CHECK(clmr_multipart_boundary("application/json", b, sizeof b, &msg) == CLMR_EINVAL);
    CHECK(msg && strstr(msg, "multipart"));
    free(msg);
    CHECK(clmr_multipart_boundary("multipart/form-data", b, sizeof b, NULL) == CLMR_EINVAL);
    CHECK(clmr_multipart_boundary("multipart/form-data; boundary=", b, sizeof b, NULL) ==
          CLMR_EINVAL);
    char longb[200] = "multipart/form-data; boundary=";
    memset(longb + strlen(longb), 'x', 80);
    CHECK(clmr_multipart_boundary(longb, b, sizeof b, NULL) == CLMR_EINVAL);
}

static void test_binary_file_part(void)
{
    /* File bytes containing CR, LF, NUL, "--" and a near-boundary must come back unchanged. */
    unsigned char file[4096];
    for (size_t i = 0; i < sizeof file; i++)
        file[i] = (unsigned char)(i * 131u + 7u);
    memcpy(file + 100, "\r\n--XYZ", 7); /* prefix of the real boundary "XYZb0undary" */
    memset(file + 200, 0, 16);
    unsigned char body[8192];
    size_t n = build(body, "XYZb0undary", file, sizeof file);
    clmr_multipart_part_t parts[8];
    int np = -1;
    CHECK(clmr_multipart_parse(body, n, "XYZb0undary", parts, 8, &np, NULL) == 0);
    CHECK(np == 2);
    const clmr_multipart_part_t *f = clmr_multipart_find(parts, np, "file");
    CHECK(f != NULL);
    if (f) {
        CHECK(f->size == sizeof file);
        CHECK(memcmp(f->data, file, sizeof file) == 0);
        CHECK(f->filename && f->filename_len == 7 && memcmp(f->filename, "a b.wav", 7) == 0);
        CHECK(f->content_type && f->content_type_len == 9);
    }
    const clmr_multipart_part_t *t = clmr_multipart_find(parts, np, "title");
    CHECK(t && t->size == 6 && memcmp(t->data, "A Song", 6) == 0 && t->filename == NULL);
    CHECK(clmr_multipart_find(parts, np, "artist") == NULL);
}

static void test_malformed(void)
{
    unsigned char file[10] = "0123456789";
    unsigned char body[1024];
    size_t n = build(body, "bnd", file, sizeof file);
    clmr_multipart_part_t parts[4];
    int np;
    char *msg = NULL;
    /* Every truncation of a valid body must fail cleanly (or succeed only when nothing is lost). */
    int failures = 0;
    for (size_t cut = 0; cut < n; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1); /* exact size so ASan sees overreads */
        memcpy(copy, body, cut);
        int rc = clmr_multipart_parse(copy, cut, "bnd", parts, 4, &np, NULL);
        if (rc == 0) CHECKF(cut >= n - 2, "truncated body of %zu/%zu bytes accepted", cut, n);
        failures += rc != 0;
        free(copy);
    }
    CHECK(failures >= (int)n - 2);
    CHECK(clmr_multipart_parse(body, n, "other", parts, 4, &np, &msg) == CLMR_EINVAL);
    CHECK(msg != NULL);
    CHECK(clmr_multipart_parse(body, n, "bnd", parts, 1, &np, &msg) == CLMR_EINVAL);
    CHECK(msg && strstr(msg, "too many"));
    const char *noname = "--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--";
    CHECK(clmr_multipart_parse(noname, strlen(noname), "b", parts, 4, &np, NULL) == CLMR_EINVAL);
    const char *nodisp = "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--";
    CHECK(clmr_multipart_parse(nodisp, strlen(nodisp), "b", parts, 4, &np, NULL) == CLMR_EINVAL);
    const char *empty = "--b\r\n\r\nx\r\n--b--";
    CHECK(clmr_multipart_parse(empty, strlen(empty), "b", parts, 4, &np, NULL) == CLMR_EINVAL);
    const char *unq = "--b\r\nContent-Disposition: form-data; name=\"x\r\n\r\nx\r\n--b--";
    CHECK(clmr_multipart_parse(unq, strlen(unq), "b", parts, 4, &np, NULL) == CLMR_EINVAL);
    free(msg);
}

static void test_preamble_and_empty_part(void)
{
    const char *s = "preamble\r\n--b\r\nContent-Disposition: form-data; name=e\r\n\r\n\r\n--b--";
    clmr_multipart_part_t parts[2];
    int np = 0;
    CHECK(clmr_multipart_parse(s, strlen(s), "b", parts, 2, &np, NULL) == 0);
    CHECK(np == 1 && parts[0].size == 0 && parts[0].name_len == 1 && parts[0].name[0] == 'e');
}

/* Random mutations of a valid body: the parser must never read out of bounds (ASan build) and
 * every returned part must lie inside the body. */
static void test_random_mutations(void)
{
    unsigned char file[64];
    for (size_t i = 0; i < sizeof file; i++)
        file[i] = (unsigned char)i;
    unsigned char base[1024];
    size_t n = build(base, "zz", file, sizeof file);
    uint32_t rng = 12345;
    int ok = 0, bad_parts = 0;
    for (int iter = 0; iter < 20000; iter++) {
        unsigned char *m = malloc(n);
        memcpy(m, base, n);
        int flips = 1 + (int)(rng % 4);
        for (int f = 0; f < flips; f++) {
            rng = rng * 1664525u + 1013904223u;
            size_t pos = (rng >> 8) % n;
            rng = rng * 1664525u + 1013904223u;
            m[pos] = "\r\n-\"=;zZ:\0x"[(rng >> 8) % 11];
        }
        rng = rng * 1664525u + 1013904223u;
        size_t len = n - (rng >> 8) % 8;
        clmr_multipart_part_t parts[4];
        int np = 0;
        if (clmr_multipart_parse(m, len, "zz", parts, 4, &np, NULL) == 0) {
            ok++;
            for (int i = 0; i < np; i++)
                if (parts[i].data < m || parts[i].data + parts[i].size > m + len ||
                    (const unsigned char *)parts[i].name < m)
                    bad_parts++;
        }
        free(m);
    }
    CHECK(bad_parts == 0);
    CHECK(ok > 0); /* some mutations leave the framing intact */
}

int main(void)
{
    RUN_TEST(test_boundary_header);
    RUN_TEST(test_binary_file_part);
    RUN_TEST(test_malformed);
    RUN_TEST(test_preamble_and_empty_part);
    RUN_TEST(test_random_mutations);
    return TEST_END();
}
