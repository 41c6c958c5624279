/* multipart.h - a small multipart/form-data parser over a complete request body.
 *
 * DESIGN: a pure function over a buffer (no allocation, no I/O), so it can be unit-tested and
 * fuzzed directly. Parts are returned as pointers into the caller's buffer, so binary file data is
 * never copied or NUL-terminated. Only what form uploads need is accepted (RFC 7578): CRLF line
 * ends, a Content-Disposition: form-data header with a name, optional filename and Content-Type;
 * anything else in the framing is an error rather than a guess.
 */
#ifndef CLMR_HTTP_MULTIPART_H
#define CLMR_HTTP_MULTIPART_H

#include <stddef.h>

#define CLMR_MULTIPART_BOUNDARY_MAX 70 /* RFC 2046 */

typedef struct {
    const char *name; /* form field name (not NUL-terminated), points into the body */
    size_t name_len;
    const char *filename; /* NULL when absent */
    size_t filename_len;
    const char *content_type; /* NULL when absent */
    size_t content_type_len;
    const unsigned char *data; /* part content, points into the body */
    size_t size;
} clmr_multipart_part_t;

/* Extracts the boundary parameter from a Content-Type header value
 * ("multipart/form-data; boundary=xyz" or boundary="xyz") into out (cap bytes, NUL-terminated).
 * Returns 0 or CLMR_EINVAL (not multipart/form-data, missing or over-long boundary). */
int clmr_multipart_boundary(const char *content_type, char *out, size_t cap, char **errmsg);

/* Splits body (len bytes, remains owned by the caller and must outlive parts) into at most
 * max_parts parts. *n_parts receives the count. Returns 0 or CLMR_EINVAL with *errmsg saying what
 * is malformed (missing boundary, unterminated part, header without name, too many parts...).
 * Thread-safe and allocation-free (except *errmsg). */
int clmr_multipart_parse(const void *body, size_t len, const char *boundary,
                         clmr_multipart_part_t *parts, int max_parts, int *n_parts, char **errmsg);

/* Returns the first part named `name`, or NULL. */
const clmr_multipart_part_t *clmr_multipart_find(const clmr_multipart_part_t *parts, int n,
                                                 const char *name);

#endif
