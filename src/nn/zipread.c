/* zipread.c - bounded zip reader (see zipread.h). */
#include "nn/zipread.h"

#include "clmr/error.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define EOCD_SIZE 22
#define CENTRAL_SIZE 46
#define LOCAL_SIZE 30

static uint16_t rd16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int clmr_zip_is_zip(const void *buf, size_t size)
{
    return size >= 4 && rd32(buf) == SIG_LOCAL;
}

void clmr_zip_close(clmr_zip_t *z)
{
    if (!z) return;
    for (int i = 0; i < z->n; i++)
        free(z->e[i].name);
    free(z->e);
    memset(z, 0, sizeof(*z));
}

/* The end-of-central-directory record is the last 22 bytes plus a comment of at most 65535
 * bytes; scan backwards for its signature with a comment length that reaches the end exactly. */
static const unsigned char *find_eocd(const unsigned char *b, size_t size)
{
    if (size < EOCD_SIZE) return NULL;
    size_t lo = size > EOCD_SIZE + 65535 ? size - EOCD_SIZE - 65535 : 0;
    for (size_t p = size - EOCD_SIZE + 1; p-- > lo;)
        if (rd32(b + p) == SIG_EOCD && p + EOCD_SIZE + rd16(b + p + 20) == size) return b + p;
    return NULL;
}

int clmr_zip_open(clmr_zip_t *z, const void *buf, size_t size, char **errmsg)
{
    memset(z, 0, sizeof(*z));
    const unsigned char *b = buf;
    const unsigned char *eocd = find_eocd(b, size);
    if (!eocd)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "zip: no end-of-central-directory record (truncated or not a zip)");
    unsigned n = rd16(eocd + 10);
    uint32_t cd_size = rd32(eocd + 12), cd_off = rd32(eocd + 16);
    if (rd16(eocd + 4) != 0 || rd16(eocd + 6) != 0 || rd16(eocd + 8) != n)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "zip: multi-disk archives are not supported");
    if (n == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "zip: zip64 archives are not supported (the checkpoint is > 4 GiB "
                            "or has > 65534 entries)");
    if ((size_t)cd_off > size || (size_t)cd_size > size - cd_off || b + cd_off + cd_size > eocd)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "zip: the central directory lies outside the file");
    z->e = calloc(n ? n : 1, sizeof(*z->e));
    if (!z->e) return CLMR_ENOMEM;
    z->buf = b;
    z->buf_size = size;
    const unsigned char *p = b + cd_off, *end = b + cd_off + cd_size;
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        if ((size_t)(end - p) < CENTRAL_SIZE || rd32(p) != SIG_CENTRAL) {
            rc =
                clmr_set_err(errmsg, CLMR_ECHECKPOINT, "zip: central directory entry %u is bad", i);
            goto fail;
        }
        unsigned flags = rd16(p + 8), method = rd16(p + 10);
        uint32_t crc = rd32(p + 16), csize = rd32(p + 20), usize = rd32(p + 24);
        unsigned nlen = rd16(p + 28), xlen = rd16(p + 30), clen = rd16(p + 32);
        uint32_t loff = rd32(p + 42);
        if ((size_t)(end - p) - CENTRAL_SIZE < (size_t)nlen + xlen + clen) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                              "zip: central directory entry %u runs past the directory", i);
            goto fail;
        }
        if (nlen == 0 || nlen > CLMR_ZIP_MAX_NAME || memchr(p + CENTRAL_SIZE, 0, nlen)) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                              "zip: entry %u has an empty, over-long or NUL-containing name", i);
            goto fail;
        }
        clmr_zip_entry_t *e = &z->e[i];
        if (!(e->name = malloc(nlen + 1u))) {
            rc = CLMR_ENOMEM;
            goto fail;
        }
        z->n = (int)i + 1;
        memcpy(e->name, p + CENTRAL_SIZE, nlen);
        e->name[nlen] = 0;
        if (flags & 1u) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT, "zip: entry '%s' is encrypted", e->name);
            goto fail;
        }
        if (csize == 0xffffffffu || usize == 0xffffffffu || loff == 0xffffffffu) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                              "zip: entry '%s' uses zip64 sizes (not supported)", e->name);
            goto fail;
        }
        e->method = (int)method;
        e->crc32 = crc;
        e->comp_size = csize;
        e->size = usize;
        /* the local header repeats name and method; its extra field length may differ (PyTorch
         * pads it to align tensor data), so the data offset comes from the local header */
        if ((size_t)loff > size || size - loff < LOCAL_SIZE || rd32(b + loff) != SIG_LOCAL) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT, "zip: entry '%s' has no local header",
                              e->name);
            goto fail;
        }
        const unsigned char *lh = b + loff;
        unsigned lnlen = rd16(lh + 26), lxlen = rd16(lh + 28);
        size_t doff = (size_t)loff + LOCAL_SIZE + lnlen + lxlen;
        if (lnlen != nlen || memcmp(lh + LOCAL_SIZE, e->name, nlen) != 0 ||
            rd16(lh + 8) != method) {
            rc =
                clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                             "zip: entry '%s': local header disagrees with the directory", e->name);
            goto fail;
        }
        if (doff > size || size - doff < e->comp_size) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT, "zip: entry '%s' runs past the file end",
                              e->name);
            goto fail;
        }
        e->data_off = doff;
        p += CENTRAL_SIZE + nlen + xlen + clen;
    }
    return 0;
fail:
    clmr_zip_close(z);
    return rc;
}

int clmr_zip_find(const clmr_zip_t *z, const char *name)
{
    for (int i = 0; i < z->n; i++)
        if (strcmp(z->e[i].name, name) == 0) return i;
    return -1;
}

int clmr_zip_read(const clmr_zip_t *z, int i, const unsigned char **data, unsigned char **owned,
                  char **errmsg)
{
    *data = NULL;
    *owned = NULL;
    if (i < 0 || i >= z->n) return CLMR_EINVAL;
    const clmr_zip_entry_t *e = &z->e[i];
    const unsigned char *src = z->buf + e->data_off;
    if (e->size > CLMR_ZIP_MAX_ENTRY_BYTES)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "zip: entry '%s' is %zu bytes (limit %zu)",
                            e->name, e->size, CLMR_ZIP_MAX_ENTRY_BYTES);
    const unsigned char *out = NULL;
    unsigned char *buf = NULL;
    if (e->method == 0) {
        if (e->comp_size != e->size)
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                                "zip: stored entry '%s' has different packed and unpacked sizes",
                                e->name);
        out = src;
    } else if (e->method == 8) {
        buf = malloc(e->size ? e->size : 1);
        if (!buf) return clmr_set_err(errmsg, CLMR_ENOMEM, "zip: out of memory for '%s'", e->name);
        z_stream s;
        memset(&s, 0, sizeof(s));
        if (inflateInit2(&s, -MAX_WBITS) != Z_OK) {
            free(buf);
            return CLMR_ENOMEM;
        }
        /* zlib counts in uInt: feed and drain in bounded steps */
        size_t in_left = e->comp_size, out_done = 0;
        const unsigned char *in = src;
        int zr = Z_OK;
        while (zr == Z_OK) {
            uInt ci = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
            size_t room = e->size - out_done;
            uInt co = room > (1u << 30) ? (1u << 30) : (uInt)room;
            unsigned char spare;
            s.next_in = (Bytef *)in;
            s.avail_in = ci;
            s.next_out = co ? buf + out_done : &spare; /* room 0: detect extra output */
            s.avail_out = co ? co : 1;
            zr = inflate(&s, Z_NO_FLUSH);
            size_t used_in = ci - s.avail_in, made = (co ? co : 1) - s.avail_out;
            in += used_in;
            in_left -= used_in;
            if (!co && made) {
                zr = Z_DATA_ERROR; /* more output than declared */
                break;
            }
            out_done += made;
            if (zr == Z_OK && used_in == 0 && made == 0) zr = Z_BUF_ERROR; /* no progress */
        }
        inflateEnd(&s);
        if (zr != Z_STREAM_END || out_done != e->size) {
            free(buf);
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                                "zip: entry '%s' does not inflate to its declared %zu bytes",
                                e->name, e->size);
        }
        out = buf;
    } else {
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "zip: entry '%s' uses compression method %d (only stored and deflate "
                            "are supported)",
                            e->name, e->method);
    }
    /* crc32 takes uInt lengths: run it in chunks */
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t off = 0; off < e->size;) {
        size_t n = e->size - off > (1u << 30) ? (1u << 30) : e->size - off;
        crc = crc32(crc, out + off, (uInt)n);
        off += n;
    }
    if ((uint32_t)crc != e->crc32) {
        free(buf);
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "zip: entry '%s' fails its CRC-32 check",
                            e->name);
    }
    *data = out;
    *owned = buf;
    return 0;
}
