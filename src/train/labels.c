/* labels.c - the labels file (JSON lines) and vocabulary file readers, plus file/sha256 helpers.
 *
 * DESIGN: the file is read whole (labels files are small), split on '\n' and each non-blank line
 * parsed with jansson on its own, so errors carry the line number. Tag lookups are linear over the
 * vocabulary (tens of tags); the label matrix is grown by doubling.
 */
#include "train/labels.h"

#include "clmr/error.h"

#include <errno.h>
#include <jansson.h>
#include <libavutil/mem.h>
#include <libavutil/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LABELS_MAX_BYTES ((size_t)256 << 20)

int clmr__sha256_hex(char out[65], const void *data, size_t n)
{
    struct AVSHA *sha = av_sha_alloc();
    if (!sha) return CLMR_ENOMEM;
    uint8_t d[32];
    av_sha_init(sha, 256);
    /* av_sha_update takes an unsigned int length in FFmpeg 5.1: feed large inputs in pieces. */
    const uint8_t *p = data;
    while (n > 0) {
        size_t k = n > (1u << 30) ? (1u << 30) : n;
        av_sha_update(sha, p, (unsigned)k);
        p += k, n -= k;
    }
    av_sha_final(sha, d);
    av_free(sha);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    return 0;
}

int clmr__read_file(char **data, size_t *size, const char *path, size_t max_bytes, char **errmsg)
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return clmr_set_err(errmsg, CLMR_EIO, "%s: %s", path, strerror(errno));
    int err = 0;
    char *buf = NULL;
    long len = -1;
    if (fseek(f, 0, SEEK_END) == 0) len = ftell(f);
    if (len < 0 || fseek(f, 0, SEEK_SET) != 0) {
        err = clmr_set_err(errmsg, CLMR_EIO, "%s: cannot determine the size", path);
        goto out;
    }
    if ((size_t)len > max_bytes) {
        err = clmr_set_err(errmsg, CLMR_EIO, "%s: larger than %zu bytes", path, max_bytes);
        goto out;
    }
    buf = malloc((size_t)len + 1);
    if (!buf) {
        err = CLMR_ENOMEM;
        goto out;
    }
    if (fread(buf, 1, (size_t)len, f) != (size_t)len) {
        err = clmr_set_err(errmsg, CLMR_EIO, "%s: read error", path);
        goto out;
    }
    buf[len] = 0;
    *data = buf, buf = NULL;
    *size = (size_t)len;
out:
    free(buf);
    fclose(f);
    return err;
}

void clmr_labels_free_vocab(char **tags, int n)
{
    if (!tags) return;
    for (int i = 0; i < n; i++)
        free(tags[i]);
    free(tags);
}

void clmr_labels_free(clmr_labels_t *l)
{
    if (!l) return;
    for (int i = 0; i < l->n_items; i++)
        free(l->paths[i]);
    free(l->paths);
    free(l->lines);
    clmr_labels_free_vocab(l->vocab, l->n_vocab);
    free(l->y);
    memset(l, 0, sizeof(*l));
}

static int vocab_find(char **vocab, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(vocab[i], name) == 0) return i;
    return -1;
}

int clmr_labels_read_vocab(char ***tags, int *n, const char *path, char **errmsg)
{
    *tags = NULL;
    *n = 0;
    char *data;
    size_t size;
    int err = clmr__read_file(&data, &size, path, LABELS_MAX_BYTES, errmsg);
    if (err) return err;
    char **v = NULL;
    int nv = 0, cap = 0, line = 0;
    for (char *s = data, *next; s && *s; s = next) {
        line++;
        char *nl = strchr(s, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl) *nl = 0;
        while (*s == ' ' || *s == '\t')
            s++;
        char *e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
            *--e = 0;
        if (!*s || *s == '#') continue;
        if (vocab_find(v, nv, s) >= 0) {
            err =
                clmr_set_err(errmsg, CLMR_EINVAL, "%s:%d: tag \"%s\" listed twice", path, line, s);
            goto fail;
        }
        if (nv == cap) {
            cap = cap ? 2 * cap : 64;
            char **nvv = realloc(v, (size_t)cap * sizeof(*v));
            if (!nvv) goto nomem;
            v = nvv;
        }
        if (!(v[nv] = strdup(s))) goto nomem;
        nv++;
    }
    if (nv == 0) {
        err = clmr_set_err(errmsg, CLMR_EINVAL, "%s: no tags in the file", path);
        goto fail;
    }
    free(data);
    *tags = v;
    *n = nv;
    return 0;
nomem:
    err = CLMR_ENOMEM;
fail:
    clmr_labels_free_vocab(v, nv);
    free(data);
    return err;
}

/* Joins the labels file's folder and a relative path (absolute paths are copied). */
static char *resolve_path(const char *labels_path, const char *p)
{
    if (p[0] == '/') return strdup(p);
    const char *slash = strrchr(labels_path, '/');
    size_t dl = slash ? (size_t)(slash - labels_path) + 1 : 0;
    char *r = malloc(dl + strlen(p) + 1);
    if (!r) return NULL;
    memcpy(r, labels_path, dl);
    strcpy(r + dl, p);
    return r;
}

/* Grows the per-item arrays and the label matrix (columns = vcap) to hold at least need items. */
static int grow_items(clmr_labels_t *l, int *icap, int need, int vcap)
{
    if (need <= *icap) return 0;
    int cap = *icap ? 2 * *icap : 64;
    char **p = realloc(l->paths, (size_t)cap * sizeof(*p));
    if (!p) return CLMR_ENOMEM;
    l->paths = p;
    int *ln = realloc(l->lines, (size_t)cap * sizeof(*ln));
    if (!ln) return CLMR_ENOMEM;
    l->lines = ln;
    uint8_t *y = realloc(l->y, (size_t)cap * (size_t)vcap);
    if (!y) return CLMR_ENOMEM;
    l->y = y;
    *icap = cap;
    return 0;
}

/* Widens the first `rows` rows of the label matrix from oldc to newc columns (growing vocabulary).
 */
static int widen(clmr_labels_t *l, int rows, int icap, int oldc, int newc)
{
    uint8_t *y = calloc((size_t)(icap ? icap : 1) * (size_t)newc, 1);
    if (!y) return CLMR_ENOMEM;
    for (int i = 0; i < rows; i++)
        memcpy(y + (size_t)i * newc, l->y + (size_t)i * oldc, oldc);
    free(l->y);
    l->y = y;
    return 0;
}

int clmr_labels_load(clmr_labels_t *out, const char *path, const char *const *vocab, int n_vocab,
                     char **errmsg)
{
    memset(out, 0, sizeof(*out));
    char *data;
    size_t size;
    int err = clmr__read_file(&data, &size, path, LABELS_MAX_BYTES, errmsg);
    if (err) return err;
    json_t *obj = NULL;
    int fixed = vocab != NULL, icap = 0, vcap = fixed ? n_vocab : 16, line = 0;
    if ((err = clmr__sha256_hex(out->sha256, data, size))) goto fail;
    if (fixed && n_vocab < 1) {
        err = clmr_set_err(errmsg, CLMR_EINVAL, "empty tag vocabulary");
        goto fail;
    }
    out->vocab = calloc((size_t)vcap, sizeof(char *));
    if (!out->vocab) goto nomem;
    for (int i = 0; fixed && i < n_vocab; i++) {
        if (!(out->vocab[i] = strdup(vocab[i]))) goto nomem;
        out->n_vocab++;
    }
    for (char *s = data, *next; s && *s; s = next) {
        line++;
        char *nl = strchr(s, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl) *nl = 0;
        if (strspn(s, " \t\r") == strlen(s)) continue;
        json_error_t je;
        obj = json_loads(s, JSON_REJECT_DUPLICATES, &je);
        if (!obj) {
            err = clmr_set_err(errmsg, CLMR_EINVAL, "%s:%d: bad JSON (column %d): %s", path, line,
                               je.column, je.text);
            goto fail;
        }
        json_t *jp = json_object_get(obj, "path"), *jt = json_object_get(obj, "tags");
        if (!json_is_object(obj) || !json_is_string(jp) || !*json_string_value(jp)) {
            err = clmr_set_err(errmsg, CLMR_EINVAL,
                               "%s:%d: expected an object with a non-empty string \"path\"", path,
                               line);
            goto fail;
        }
        if (!json_is_array(jt)) {
            err = clmr_set_err(errmsg, CLMR_EINVAL, "%s:%d: \"tags\" must be an array of strings",
                               path, line);
            goto fail;
        }
        if ((err = grow_items(out, &icap, out->n_items + 1, vcap))) goto fail;
        int it = out->n_items;
        memset(out->y + (size_t)it * vcap, 0, (size_t)vcap);
        size_t k;
        json_t *tag;
        json_array_foreach(jt, k, tag)
        {
            const char *name = json_string_value(tag);
            if (!name || !*name) {
                err = clmr_set_err(errmsg, CLMR_EINVAL, "%s:%d: tag %zu is not a non-empty string",
                                   path, line, k + 1);
                goto fail;
            }
            int ti = vocab_find(out->vocab, out->n_vocab, name);
            if (ti < 0 && fixed) {
                err = clmr_set_err(errmsg, CLMR_EINVAL,
                                   "%s:%d: unknown tag \"%s\" (not in the model's tag list)", path,
                                   line, name);
                goto fail;
            }
            if (ti < 0) {
                if (out->n_vocab == vcap) {
                    char **nv = realloc(out->vocab, (size_t)vcap * 2 * sizeof(char *));
                    if (!nv) goto nomem;
                    out->vocab = nv;
                    if ((err = widen(out, it + 1, icap, vcap, vcap * 2))) goto fail;
                    vcap *= 2;
                }
                if (!(out->vocab[out->n_vocab] = strdup(name))) goto nomem;
                ti = out->n_vocab++;
            }
            out->y[(size_t)it * vcap + ti] = 1;
        }
        out->lines[it] = line;
        if (!(out->paths[it] = resolve_path(path, json_string_value(jp)))) goto nomem;
        out->n_items++;
        json_decref(obj);
        obj = NULL;
    }
    if (out->n_items == 0) {
        err = clmr_set_err(errmsg, CLMR_EINVAL, "%s: no labelled files", path);
        goto fail;
    }
    if (out->n_vocab == 0) {
        err = clmr_set_err(errmsg, CLMR_EINVAL, "%s: no tags used", path);
        goto fail;
    }
    if (vcap != out->n_vocab) { /* compact the matrix to n_vocab columns */
        for (int i = 0; i < out->n_items; i++)
            memmove(out->y + (size_t)i * out->n_vocab, out->y + (size_t)i * vcap,
                    (size_t)out->n_vocab);
    }
    free(data);
    return 0;
nomem:
    err = CLMR_ENOMEM;
fail:
    json_decref(obj);
    free(data);
    clmr_labels_free(out);
    return err;
}
