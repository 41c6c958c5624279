/* multipart.c - multipart/form-data framing (see multipart.h).
 *
 * DESIGN: the body is walked with memmem for "\r\n--BOUNDARY", which is the only way a part can
 * end, so binary data containing CR, LF, NUL or partial boundaries is handled by construction.
 * Part headers are bounded (8 KiB per part) and parsed case-insensitively; parameter values may be
 * quoted. Every index is checked against len before it is read.
 */
#include "http/multipart.h"

#include "clmr/error.h"

#include <string.h>
#include <strings.h>

#define HEADER_BLOCK_MAX 8192

int clmr_multipart_boundary(const char *ct, char *out, size_t cap, char **errmsg)
{
    if (!ct || strncasecmp(ct, "multipart/form-data", 19) != 0)
        return clmr_set_err(errmsg, CLMR_EINVAL, "Content-Type is not multipart/form-data");
    const char *p = ct + 19;
    while (*p) {
        while (*p == ';' || *p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "boundary=", 9) == 0) {
            p += 9;
            size_t n = 0;
            if (*p == '"') {
                p++;
                while (p[n] && p[n] != '"')
                    n++;
                if (p[n] != '"') break;
            } else {
                while (p[n] && p[n] != ';' && p[n] != ' ' && p[n] != '\t')
                    n++;
            }
            if (n == 0 || n > CLMR_MULTIPART_BOUNDARY_MAX || n >= cap) break;
            memcpy(out, p, n);
            out[n] = 0;
            return 0;
        }
        while (*p && *p != ';')
            p++;
    }
    return clmr_set_err(errmsg, CLMR_EINVAL,
                        "multipart/form-data without a valid boundary (1-%d characters)",
                        CLMR_MULTIPART_BOUNDARY_MAX);
}

/* Finds parameter `key` (e.g. "name") in a Content-Disposition value [p, end). Returns 1 and the
 * value span when present. Quoted values end at the next quote (browsers percent-encode quotes). */
static int disposition_param(const char *p, const char *end, const char *key, const char **val,
                             size_t *val_len)
{
    size_t kl = strlen(key);
    while (p < end) {
        while (p < end && (*p == ';' || *p == ' ' || *p == '\t'))
            p++;
        const char *name = p;
        while (p < end && *p != '=' && *p != ';')
            p++;
        size_t nl = (size_t)(p - name);
        while (nl && (name[nl - 1] == ' ' || name[nl - 1] == '\t'))
            nl--;
        if (p >= end || *p == ';') continue; /* a bare token such as "form-data" */
        p++;                                 /* '=' */
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        const char *v;
        size_t vl;
        if (p < end && *p == '"') {
            v = ++p;
            while (p < end && *p != '"')
                p++;
            if (p >= end) return 0; /* unterminated quote */
            vl = (size_t)(p - v);
            p++;
        } else {
            v = p;
            while (p < end && *p != ';' && *p != ' ' && *p != '\t')
                p++;
            vl = (size_t)(p - v);
        }
        if (nl == kl && strncasecmp(name, key, kl) == 0) {
            *val = v;
            *val_len = vl;
            return 1;
        }
    }
    return 0;
}

/* Parses the header block [p, end) of one part into *part. */
static int parse_part_headers(const char *p, const char *end, clmr_multipart_part_t *part,
                              char **errmsg)
{
    int have_disp = 0;
    while (p < end) {
        const char *eol = memchr(p, '\r', (size_t)(end - p));
        if (!eol) eol = end;
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon) return clmr_set_err(errmsg, CLMR_EINVAL, "multipart part header without ':'");
        size_t hl = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < eol && (*v == ' ' || *v == '\t'))
            v++;
        if (hl == 19 && strncasecmp(p, "Content-Disposition", 19) == 0) {
            if ((size_t)(eol - v) < 9 || strncasecmp(v, "form-data", 9) != 0)
                return clmr_set_err(errmsg, CLMR_EINVAL, "multipart part is not form-data");
            if (!disposition_param(v + 9, eol, "name", &part->name, &part->name_len))
                return clmr_set_err(errmsg, CLMR_EINVAL, "multipart part without a name");
            if (!disposition_param(v + 9, eol, "filename", &part->filename, &part->filename_len))
                part->filename = NULL;
            have_disp = 1;
        } else if (hl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
            part->content_type = v;
            part->content_type_len = (size_t)(eol - v);
        }
        p = eol + 2; /* header lines end with CRLF; end sits on the CRLF CRLF */
    }
    if (!have_disp)
        return clmr_set_err(errmsg, CLMR_EINVAL, "multipart part without Content-Disposition");
    return 0;
}

int clmr_multipart_parse(const void *body, size_t len, const char *boundary,
                         clmr_multipart_part_t *parts, int max_parts, int *n_parts, char **errmsg)
{
    const char *b = body, *end = b + len;
    size_t bl = boundary ? strlen(boundary) : 0;
    *n_parts = 0;
    if (bl == 0 || bl > CLMR_MULTIPART_BOUNDARY_MAX)
        return clmr_set_err(errmsg, CLMR_EINVAL, "bad multipart boundary");
    char delim[CLMR_MULTIPART_BOUNDARY_MAX + 5]; /* "\r\n--" + boundary */
    memcpy(delim, "\r\n--", 4);
    memcpy(delim + 4, boundary, bl);
    size_t dl = bl + 4;

    /* The first delimiter may start the body without the leading CRLF; a preamble is allowed. */
    const char *p;
    if (len >= dl - 2 && memcmp(b, delim + 2, dl - 2) == 0) {
        p = b + dl - 2;
    } else {
        p = memmem(b, len, delim, dl);
        if (!p) return clmr_set_err(errmsg, CLMR_EINVAL, "multipart body without its boundary");
        p += dl;
    }
    for (;;) {
        /* p is just past a delimiter: "--" closes the body, CRLF starts a part. */
        if (end - p >= 2 && p[0] == '-' && p[1] == '-') return 0;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++; /* transport padding */
        if (end - p < 2 || p[0] != '\r' || p[1] != '\n')
            return clmr_set_err(errmsg, CLMR_EINVAL, "malformed multipart delimiter line");
        p += 2;
        if (*n_parts >= max_parts)
            return clmr_set_err(errmsg, CLMR_EINVAL, "too many multipart parts (at most %d)",
                                max_parts);
        size_t avail = (size_t)(end - p);
        const char *hend;
        if (avail >= 2 && p[0] == '\r' && p[1] == '\n') {
            hend = p; /* no headers at all: rejected below (no Content-Disposition) */
        } else {
            size_t lim = avail < HEADER_BLOCK_MAX ? avail : HEADER_BLOCK_MAX;
            hend = memmem(p, lim, "\r\n\r\n", 4);
            if (!hend)
                return clmr_set_err(errmsg, CLMR_EINVAL,
                                    "multipart part headers unterminated or longer than %d bytes",
                                    HEADER_BLOCK_MAX);
        }
        clmr_multipart_part_t *part = &parts[*n_parts];
        memset(part, 0, sizeof *part);
        int rc = parse_part_headers(p, hend, part, errmsg);
        if (rc) return rc;
        const char *data = hend + (hend == p ? 2 : 4);
        const char *next = memmem(data, (size_t)(end - data), delim, dl);
        if (!next) return clmr_set_err(errmsg, CLMR_EINVAL, "multipart part is not terminated");
        part->data = (const unsigned char *)data;
        part->size = (size_t)(next - data);
        (*n_parts)++;
        p = next + dl;
    }
}

const clmr_multipart_part_t *clmr_multipart_find(const clmr_multipart_part_t *parts, int n,
                                                 const char *name)
{
    size_t nl = strlen(name);
    for (int i = 0; i < n; i++)
        if (parts[i].name_len == nl && memcmp(parts[i].name, name, nl) == 0) return &parts[i];
    return NULL;
}
