/* fuzz_multipart.c - libFuzzer target: the daemon's multipart/form-data parsing, as read_upload
 * in src/http/routes.c calls it.
 *
 * DESIGN: input line 1 is the Content-Type header value (boundary extraction is fuzzed too; at
 * most 1 KiB, as MHD's header memory limit would allow), the rest is the body. Like the daemon we
 * accept 16 parts and look up "file", "title", "artist" and "external_id". Checked beyond the
 * sanitizers: a boundary is NUL-terminated and within the RFC 2046 length; on success the part
 * count is within the cap and every returned pointer (name, filename, content type, data) lies
 * inside the body; on failure there is a message. tests/http/fuzz_multipart.c (the http
 * engineer's) checks a subset; this one is the target fuzz/run.sh and CI use.
 */
#include "http/multipart.h"

#include "clmr/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int inside(const void *p, size_t n, const uint8_t *b, size_t blen)
{
    const uint8_t *q = p;
    return q >= b && n <= blen && q - b <= (ptrdiff_t)(blen - n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size < 1024 ? size : 1024);
    if (!nl) return 0;
    size_t cl = (size_t)(nl - data);
    char *ct = malloc(cl + 1);
    if (!ct) return 0;
    memcpy(ct, data, cl);
    ct[cl] = 0;
    char boundary[CLMR_MULTIPART_BOUNDARY_MAX + 1];
    char *err = NULL;
    int rc = clmr_multipart_boundary(ct, boundary, sizeof boundary, &err);
    free(ct);
    if (rc) {
        if (rc != CLMR_EINVAL || !err) __builtin_trap();
        free(err);
        return 0;
    }
    if (!memchr(boundary, 0, sizeof boundary) || strlen(boundary) == 0) __builtin_trap();
    size_t blen = size - cl - 1;
    uint8_t *body = malloc(blen ? blen : 1); /* exact-size copy: overreads hit the redzone */
    if (!body) return 0;
    memcpy(body, nl + 1, blen);
    clmr_multipart_part_t parts[16];
    int n = -1;
    rc = clmr_multipart_parse(body, blen, boundary, parts, 16, &n, &err);
    if (rc == 0) {
        if (n < 0 || n > 16 || err) __builtin_trap();
        for (int i = 0; i < n; i++) {
            const clmr_multipart_part_t *p = &parts[i];
            if (!p->name || !inside(p->name, p->name_len, body, blen) ||
                !inside(p->data, p->size, body, blen) ||
                (p->filename && !inside(p->filename, p->filename_len, body, blen)) ||
                (p->content_type && !inside(p->content_type, p->content_type_len, body, blen)))
                __builtin_trap();
        }
        static const char *names[] = {"file", "title", "artist", "external_id"};
        for (int i = 0; i < 4; i++) {
            const clmr_multipart_part_t *f = clmr_multipart_find(parts, n, names[i]);
            if (f && (f < parts || f >= parts + n)) __builtin_trap();
        }
    } else if (rc != CLMR_EINVAL || !err) {
        __builtin_trap();
    }
    free(err);
    free(body);
    return 0;
}
