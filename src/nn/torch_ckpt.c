/* torch_ckpt.c - PyTorch checkpoint containers (see torch_ckpt.h). */
#include "nn/torch_ckpt.h"

#include "clmr/error.h"
#include "nn/zipread.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    const char *key;           /* borrowed from the pickle arena or the zip directory */
    const unsigned char *data; /* the storage bytes */
    unsigned char *owned;      /* inflated copy, or NULL */
    size_t nbytes;
} storage_t;

struct clmr_ckpt {
    unsigned char *file;  /* owned file bytes (open_file) or NULL */
    unsigned char *inner; /* owned bytes of a checkpoint inflated from a wrapper zip, or NULL */
    clmr_zip_t zip;       /* the torch zip archive (when zip format) */
    int is_zip;
    char prefix[CLMR_ZIP_MAX_NAME + 2]; /* "<prefix>/" of data.pkl ("" when at the top) */
    unsigned char *pkl_owned;
    clmr_pk_result_t pk;
    storage_t *st;
    size_t n_st, cap_st;
    char format[CLMR_ZIP_MAX_NAME + 160];
};

static const unsigned char LEGACY_MAGIC[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                               0x20, 0x6a, 0xa8, 0x50, 0x19};

void clmr_ckpt_close(clmr_ckpt_t **cp)
{
    if (!cp || !*cp) return;
    clmr_ckpt_t *c = *cp;
    for (size_t i = 0; i < c->n_st; i++)
        free(c->st[i].owned);
    free(c->st);
    clmr_pk_free(&c->pk);
    free(c->pkl_owned);
    clmr_zip_close(&c->zip);
    free(c->inner);
    free(c->file);
    free(c);
    *cp = NULL;
}

const clmr_pk_value_t *clmr_ckpt_root(const clmr_ckpt_t *c)
{
    return c->pk.root;
}

const char *clmr_ckpt_format(const clmr_ckpt_t *c)
{
    return c->format;
}

int clmr_ckpt_unsafe(const clmr_ckpt_t *c, int i, const char **name)
{
    if (name) *name = i >= 0 && i < c->pk.n_unsafe ? c->pk.unsafe[i] : NULL;
    return c->pk.n_unsafe_total;
}

static int ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

static int add_storage(clmr_ckpt_t *c, const char *key, const unsigned char *data,
                       unsigned char *owned, size_t nbytes)
{
    if (c->n_st == c->cap_st) {
        size_t cap = c->cap_st ? 2 * c->cap_st : 64;
        storage_t *s = realloc(c->st, cap * sizeof(*s));
        if (!s) {
            free(owned);
            return CLMR_ENOMEM;
        }
        c->st = s;
        c->cap_st = cap;
    }
    c->st[c->n_st++] = (storage_t){key, data, owned, nbytes};
    return 0;
}

/* The torch zip format: data.pkl under one prefix, storages under <prefix>data/. */
static int open_torch_zip(clmr_ckpt_t *c, int pkl, const char *label, char **errmsg)
{
    const char *pname = c->zip.e[pkl].name;
    size_t plen = strlen(pname) - strlen("data.pkl");
    memcpy(c->prefix, pname, plen);
    c->prefix[plen] = 0;
    char name[sizeof(c->prefix) + 16];
    snprintf(name, sizeof(name), "%sbyteorder", c->prefix);
    int bo = clmr_zip_find(&c->zip, name);
    if (bo >= 0) {
        const unsigned char *d;
        unsigned char *own;
        int rc = clmr_zip_read(&c->zip, bo, &d, &own, errmsg);
        if (rc) return rc;
        int big = c->zip.e[bo].size >= 3 && memcmp(d, "big", 3) == 0;
        free(own);
        if (big)
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                                "%s: saved on a big-endian machine (not supported)", label);
    }
    const unsigned char *d;
    int rc = clmr_zip_read(&c->zip, pkl, &d, &c->pkl_owned, errmsg);
    if (rc) return rc;
    if ((rc = clmr_pk_parse(&c->pk, d, c->zip.e[pkl].size, errmsg))) return rc;
    snprintf(c->format, sizeof(c->format), "zip (%s)", pname);
    return 0;
}

/* The legacy format: magic, protocol, sys info, object, storage keys, raw storages. */
static int open_legacy(clmr_ckpt_t *c, const unsigned char *b, size_t size, const char *label,
                       char **errmsg)
{
    size_t pos = 0;
    clmr_pk_result_t tmp;
    int rc;
    /* 1: magic number */
    if ((rc = clmr_pk_parse(&tmp, b, size, errmsg))) return rc;
    const clmr_pk_value_t *v = tmp.root;
    int ok = v->kind == CLMR_PK_INT && v->len == 10 && memcmp(v->s, LEGACY_MAGIC, 10) == 0;
    pos += tmp.consumed;
    clmr_pk_free(&tmp);
    if (!ok)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: a pickle without PyTorch's magic number (not a checkpoint)",
                            label);
    /* 2: protocol version */
    if ((rc = clmr_pk_parse(&tmp, b + pos, size - pos, errmsg))) return rc;
    ok = tmp.root->kind == CLMR_PK_INT && tmp.root->len == 0 && tmp.root->i == 1001;
    pos += tmp.consumed;
    clmr_pk_free(&tmp);
    if (!ok)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: legacy checkpoint with an unknown protocol version", label);
    /* 3: sys info */
    if ((rc = clmr_pk_parse(&tmp, b + pos, size - pos, errmsg))) return rc;
    const clmr_pk_value_t *le = clmr_pk_dict_get(tmp.root, "little_endian");
    ok = !le || (le->kind == CLMR_PK_BOOL && le->i == 1);
    pos += tmp.consumed;
    clmr_pk_free(&tmp);
    if (!ok)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: saved on a big-endian machine (not supported)", label);
    /* 4: the object */
    if ((rc = clmr_pk_parse(&c->pk, b + pos, size - pos, errmsg))) return rc;
    pos += c->pk.consumed;
    /* 5: storage keys, then each storage: int64 element count + raw bytes */
    if ((rc = clmr_pk_parse(&tmp, b + pos, size - pos, errmsg))) return rc;
    pos += tmp.consumed;
    const clmr_pk_value_t *keys = tmp.root;
    if (keys->kind != CLMR_PK_LIST) {
        clmr_pk_free(&tmp);
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: legacy storage key list is not a list",
                            label);
    }
    for (size_t i = 0; i < keys->n && !rc; i++) {
        const clmr_pk_value_t *kv = keys->items[i];
        const clmr_pk_value_t *sv = NULL;
        for (size_t j = 0; kv->kind == CLMR_PK_STR && j < c->pk.n_storages && !sv; j++)
            if (strcmp(c->pk.storages[j]->s, kv->s) == 0) sv = c->pk.storages[j];
        if (!sv) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                              "%s: legacy storage %zu is not referenced by any tensor", label, i);
            break;
        }
        if (size - pos < 8) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: truncated before storage '%s'", label,
                              sv->s);
            break;
        }
        uint64_t numel = 0;
        for (int k = 7; k >= 0; k--)
            numel = numel << 8 | b[pos + (size_t)k];
        pos += 8;
        size_t es = (size_t)clmr_dtype_size(sv->dtype);
        if (numel > (size - pos) / es) {
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                              "%s: storage '%s' claims %llu elements, more than the file holds",
                              label, sv->s, (unsigned long long)numel);
            break;
        }
        /* the key string lives in c->pk's arena, which outlives the table */
        rc = add_storage(c, sv->s, b + pos, NULL, (size_t)numel * es);
        pos += (size_t)numel * es;
    }
    clmr_pk_free(&tmp);
    if (!rc) snprintf(c->format, sizeof(c->format), "legacy (pre-1.6 torch.save)");
    return rc;
}

static int is_candidate(const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strncmp(name, "__MACOSX/", 9) == 0 || base[0] == '.' || base[0] == 0) return 0;
    if (ends_with(name, "_optim.pt")) return 0;
    return ends_with(name, ".pt") || ends_with(name, ".pth") || ends_with(name, ".ckpt");
}

static int open_buffer(clmr_ckpt_t *c, const unsigned char *b, size_t size, const char *label,
                       int depth, char **errmsg)
{
    if (!clmr_zip_is_zip(b, size)) {
        if (size >= 2 && b[0] == 0x80) return open_legacy(c, b, size, label, errmsg);
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: neither a zip archive nor a legacy PyTorch pickle (a PyTorch "
                            ".pt/.ckpt file or a release .zip is expected)",
                            label);
    }
    int rc = clmr_zip_open(&c->zip, b, size, errmsg);
    if (rc) return rc;
    int pkl = -1, n_pkl = 0;
    for (int i = 0; i < c->zip.n; i++)
        if (strcmp(c->zip.e[i].name, "data.pkl") == 0 || ends_with(c->zip.e[i].name, "/data.pkl")) {
            if (strncmp(c->zip.e[i].name, "__MACOSX/", 9) == 0) continue;
            pkl = i;
            n_pkl++;
        }
    if (n_pkl > 1)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: %d data.pkl entries (one checkpoint per archive expected)", label,
                            n_pkl);
    if (pkl >= 0) {
        c->is_zip = 1;
        return open_torch_zip(c, pkl, label, errmsg);
    }
    /* a release wrapper: one checkpoint inside */
    if (depth > 0)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: a zip inside a zip without data.pkl (not a checkpoint)", label);
    int pick = -1, n_cand = 0;
    char list[512] = "";
    for (int i = 0; i < c->zip.n; i++)
        if (is_candidate(c->zip.e[i].name)) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof(list) - l, "%s'%s'", n_cand ? ", " : "", c->zip.e[i].name);
            pick = i;
            n_cand++;
        }
    if (n_cand != 1)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: a zip without data.pkl holding %d checkpoint files (*.pt, *.pth, "
                            "*.ckpt, not *_optim.pt)%s%s; expected exactly one",
                            label, n_cand, n_cand ? ": " : "", list);
    const unsigned char *d;
    unsigned char *own;
    if ((rc = clmr_zip_read(&c->zip, pick, &d, &own, errmsg))) return rc;
    size_t isize = c->zip.e[pick].size;
    char inner_name[CLMR_ZIP_MAX_NAME + 1];
    snprintf(inner_name, sizeof(inner_name), "%s", c->zip.e[pick].name);
    if (!own) { /* stored: copy, because the outer directory is about to go */
        if (!(own = malloc(isize ? isize : 1))) return CLMR_ENOMEM;
        memcpy(own, d, isize);
    }
    clmr_zip_close(&c->zip);
    c->inner = own;
    char sub[CLMR_ZIP_MAX_NAME + 600];
    snprintf(sub, sizeof(sub), "%s:%s", label, inner_name);
    if ((rc = open_buffer(c, own, isize, sub, depth + 1, errmsg))) return rc;
    char fmt[sizeof(c->format)];
    snprintf(fmt, sizeof(fmt), "%.200s in a release zip as '%.600s'", c->format, inner_name);
    memcpy(c->format, fmt, sizeof(fmt));
    return 0;
}

int clmr_ckpt_open_memory(clmr_ckpt_t **out, const void *buf, size_t size, const char *label,
                          char **errmsg)
{
    *out = NULL;
    if (size > CLMR_CKPT_MAX_BYTES)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: %zu bytes (limit %zu)", label, size,
                            CLMR_CKPT_MAX_BYTES);
    clmr_ckpt_t *c = calloc(1, sizeof(*c));
    if (!c) return CLMR_ENOMEM;
    int rc = open_buffer(c, buf, size, label, 0, errmsg);
    if (rc) {
        if (rc == CLMR_ENOMEM) clmr_set_err(errmsg, rc, "%s: out of memory", label);
        clmr_ckpt_close(&c);
        return rc;
    }
    *out = c;
    return 0;
}

int clmr_ckpt_open_file(clmr_ckpt_t **out, const char *path, char **errmsg)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return clmr_set_err(errmsg, CLMR_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    unsigned char *buf = NULL;
    int rc = 0;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "'%s' is not a regular file", path);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    if (size > CLMR_CKPT_MAX_BYTES) {
        rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT, "'%s' is %zu bytes (limit %zu)", path, size,
                          CLMR_CKPT_MAX_BYTES);
        goto out;
    }
    if (!(buf = malloc(size ? size : 1))) {
        rc = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory reading '%s'", path);
        goto out;
    }
    if (fread(buf, 1, size, fp) != size) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot read '%s'", path);
        goto out;
    }
    if ((rc = clmr_ckpt_open_memory(out, buf, size, path, errmsg))) goto out;
    (*out)->file = buf;
    buf = NULL;
out:
    free(buf);
    fclose(fp);
    return rc;
}

/* The bytes of the storage called key (zip entries are read and CRC-checked once, then cached). */
static int get_storage(clmr_ckpt_t *c, const char *key, const storage_t **out, const char *what,
                       char **errmsg)
{
    for (size_t i = 0; i < c->n_st; i++)
        if (strcmp(c->st[i].key, key) == 0) {
            *out = &c->st[i];
            return 0;
        }
    if (!c->is_zip)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: storage '%s' is missing", what, key);
    char name[sizeof(c->prefix) + 256];
    snprintf(name, sizeof(name), "%sdata/%s", c->prefix, key);
    int e = clmr_zip_find(&c->zip, name);
    if (e < 0)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: storage entry '%s' is missing", what,
                            name);
    const unsigned char *d;
    unsigned char *own;
    int rc = clmr_zip_read(&c->zip, e, &d, &own, errmsg);
    if (rc) return rc;
    if ((rc = add_storage(c, c->zip.e[e].name + strlen(c->prefix) + 5, d, own, c->zip.e[e].size)))
        return rc;
    *out = &c->st[c->n_st - 1];
    return 0;
}

static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | (uint32_t)(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 127 - 15) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int clmr_ckpt_read_f32(clmr_ckpt_t *c, const clmr_pk_value_t *t, float *out, size_t n,
                       const char *what, char **errmsg)
{
    if (!t || t->kind != CLMR_PK_TENSOR)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s is not a tensor", what);
    const clmr_pk_tensor_t *ts = t->t;
    const clmr_pk_value_t *sv = ts->storage;
    clmr_dtype_t dt = sv->dtype;
    if (dt != CLMR_DT_F32 && dt != CLMR_DT_F16 && dt != CLMR_DT_BF16 && dt != CLMR_DT_F64)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s has dtype %s; float32, float16, bfloat16 or float64 expected", what,
                            clmr_dtype_name(dt));
    size_t count = 1;
    for (int d = 0; d < ts->ndim; d++)
        if (__builtin_mul_overflow(count, (size_t)ts->shape[d], &count))
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: shape overflows", what);
    if (count != n)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s has %zu elements, %zu expected", what,
                            count, n);
    const storage_t *s;
    int rc = get_storage(c, sv->s, &s, what, errmsg);
    if (rc) return rc;
    const size_t es = (size_t)clmr_dtype_size(dt);
    const size_t numel = s->nbytes / es;
    /* first element (tensor offset + legacy view offset) and the last one the strides reach */
    uint64_t base = (uint64_t)ts->offset + (sv->t ? (uint64_t)sv->t->offset : 0), last = base;
    if (n > 0)
        for (int d = 0; d < ts->ndim; d++) {
            uint64_t step;
            if (__builtin_mul_overflow((uint64_t)(ts->shape[d] - 1), (uint64_t)ts->stride[d],
                                       &step) ||
                __builtin_add_overflow(last, step, &last))
                return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: strides overflow", what);
        }
    if (n > 0 && last >= numel)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: offset %llu and strides reach element %llu of a %zu-element "
                            "storage",
                            what, (unsigned long long)base, (unsigned long long)last, numel);
    int64_t idx[CLMR_PK_MAX_DIMS] = {0};
    for (size_t i = 0; i < n; i++) {
        uint64_t e = base;
        for (int d = 0; d < ts->ndim; d++)
            e += (uint64_t)idx[d] * (uint64_t)ts->stride[d];
        const unsigned char *p = s->data + e * es;
        switch (dt) {
        case CLMR_DT_F32:
            memcpy(&out[i], p, 4);
            break;
        case CLMR_DT_F64: {
            double v;
            memcpy(&v, p, 8);
            out[i] = (float)v;
            break;
        }
        case CLMR_DT_F16:
            out[i] = half_to_float((uint16_t)(p[0] | p[1] << 8));
            break;
        default: { /* BF16: the top half of a float32 */
            uint32_t bits = (uint32_t)(p[0] | p[1] << 8) << 16;
            memcpy(&out[i], &bits, 4);
            break;
        }
        }
        for (int d = ts->ndim - 1; d >= 0; d--) { /* next index, C order */
            if (++idx[d] < ts->shape[d]) break;
            idx[d] = 0;
        }
    }
    return 0;
}
