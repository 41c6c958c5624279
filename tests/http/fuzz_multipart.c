/* fuzz_multipart.c - fuzz target for the multipart/form-data parser.
 *
 * DESIGN: the input's first line is the Content-Type header value (so boundary extraction is
 * fuzzed too), the rest is the body. Built two ways: with clang -fsanitize=fuzzer,address as a
 * libFuzzer target (see docs/api.md), and as a plain program (meson test 'http_fuzz_replay') that
 * replays every file of tests/http/corpus/multipart on each test run, so past crashes stay fixed.
 */
#include "http/multipart.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 256 ? size : 256);
    if (!nl) return 0;
    char ct[257];
    size_t cl = (size_t)(nl - data);
    memcpy(ct, data, cl);
    ct[cl] = 0;
    char boundary[CLMR_MULTIPART_BOUNDARY_MAX + 1];
    if (clmr_multipart_boundary(ct, boundary, sizeof boundary, NULL)) return 0;
    size_t blen = size - cl - 1;
    uint8_t *body = malloc(blen ? blen : 1); /* exact-size copy: overreads hit the redzone */
    if (!body) return 0;
    memcpy(body, nl + 1, blen);
    clmr_multipart_part_t parts[8];
    int n = 0;
    if (clmr_multipart_parse(body, blen, boundary, parts, 8, &n, NULL) == 0) {
        for (int i = 0; i < n; i++) /* every part must lie inside the body */
            if (parts[i].data < body || parts[i].data + parts[i].size > body + blen ||
                (const uint8_t *)parts[i].name < body ||
                (const uint8_t *)parts[i].name + parts[i].name_len > body + blen)
                abort();
    }
    free(body);
    return 0;
}

#ifndef CLMR_LIBFUZZER
#include <dirent.h>
#include <stdio.h>

/* Replays every file in the directory argv[1]; prints TAP. */
int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    DIR *d = opendir(argv[1]);
    if (!d) {
        printf("not ok 1 - cannot open corpus %s\n1..1\n", argv[1]);
        return 1;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, len);
        printf("ok %d - %s\n", ++n, e->d_name);
    }
    closedir(d);
    printf("1..%d\n", n);
    return n > 0 ? 0 : 1;
}
#endif
