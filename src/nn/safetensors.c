/* safetensors.c - strict safetensors container parser (see safetensors.h).
 *
 * DESIGN: every number in the header is untrusted. The header length is bounded before it is
 * used, integer products are overflow-checked, each tensor's byte range must lie inside the data
 * section and match its shape and dtype exactly, and ranges may not overlap (checked after sorting
 * by offset, O(n log n)). Duplicate JSON keys are refused (jansson JSON_REJECT_DUPLICATES) so a
 * tensor cannot be named twice with the last one silently winning.
 */
#include "nn/safetensors.h"

#include "clmr/error.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    int size;
} st_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8},
};

static int dtype_size(const char *name)
{
    for (size_t i = 0; i < sizeof(st_dtypes) / sizeof(st_dtypes[0]); i++)
        if (strcmp(st_dtypes[i].name, name) == 0) return st_dtypes[i].size;
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const clmr_st_tensor_t *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Fills t from the JSON description of one tensor; returns 0 or CLMR_EMODEL_FORMAT. */
static int parse_tensor(clmr_st_tensor_t *t, const char *name, json_t *desc,
                        const unsigned char *data, size_t data_size, char **errmsg)
{
    t->name = name;
    if (!json_is_object(desc))
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                            "tensor '%s': header entry is not an object", name);
    json_t *jd = json_object_get(desc, "dtype");
    json_t *js = json_object_get(desc, "shape");
    json_t *jo = json_object_get(desc, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                            "tensor '%s': needs string 'dtype', array 'shape' and array "
                            "'data_offsets'",
                            name);
    t->dtype = json_string_value(jd);
    t->elem_size = dtype_size(t->dtype);
    if (!t->elem_size)
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT, "tensor '%s': unknown dtype '%s'", name,
                            t->dtype);
    size_t nd = json_array_size(js);
    if (nd > CLMR_ST_MAX_DIMS)
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT, "tensor '%s': %zu dimensions (max %d)",
                            name, nd, CLMR_ST_MAX_DIMS);
    t->ndim = (int)nd;
    size_t n = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                                "tensor '%s': shape[%zu] is not a non-negative integer", name, i);
        t->shape[i] = (int64_t)json_integer_value(d);
        if ((uint64_t)t->shape[i] > SIZE_MAX || __builtin_mul_overflow(n, (size_t)t->shape[i], &n))
            return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT, "tensor '%s': shape is too large",
                                name);
    }
    t->n_elems = n;
    size_t bytes;
    if (__builtin_mul_overflow(n, (size_t)t->elem_size, &bytes))
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT, "tensor '%s': shape is too large", name);
    if (json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                            "tensor '%s': data_offsets must be [begin, end] integers", name);
    json_int_t b = json_integer_value(json_array_get(jo, 0));
    json_int_t e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b || (uint64_t)e > data_size)
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                            "tensor '%s': data_offsets [%lld, %lld] are outside the %zu-byte data "
                            "section (file truncated?)",
                            name, (long long)b, (long long)e, data_size);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    if (t->end - t->begin != bytes)
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                            "tensor '%s': data_offsets span %zu bytes but its shape and dtype %s "
                            "need %zu",
                            name, t->end - t->begin, t->dtype, bytes);
    t->data = data + t->begin;
    return 0;
}

int clmr__st_parse(clmr_st_file_t *f, const void *buf, size_t size, char **errmsg)
{
    memset(f, 0, sizeof(*f));
    const unsigned char *p = buf;
    if (size < 8)
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                            "file is %zu bytes, too short for a safetensors header", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | p[i];
    if (hlen > size - 8)
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                            "header length %llu exceeds the %zu bytes that follow it (not a "
                            "safetensors file, or truncated)",
                            (unsigned long long)hlen, size - 8);
    if (hlen > CLMR_ST_MAX_HEADER)
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                            "header length %llu is larger than the %u-byte limit",
                            (unsigned long long)hlen, CLMR_ST_MAX_HEADER);
    const unsigned char *data = p + 8 + hlen;
    size_t data_size = size - 8 - (size_t)hlen;
    json_error_t jerr;
    json_t *h = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!h)
        return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT, "header is not valid JSON: %s (at byte %d)",
                            jerr.text, jerr.position);
    int rc = 0;
    if (!json_is_object(h)) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_FORMAT, "header JSON is not an object");
        goto fail;
    }
    size_t n = json_object_size(h);
    f->t = calloc(n ? n : 1, sizeof(*f->t));
    if (!f->t) {
        rc = CLMR_ENOMEM;
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(h, key, val)
    {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                rc = clmr_set_err(errmsg, CLMR_EMODEL_FORMAT, "__metadata__ is not an object");
                goto fail;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv)
            {
                if (!json_is_string(mv)) {
                    rc = clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                                      "__metadata__ key '%s': value is not a string", mk);
                    goto fail;
                }
            }
            f->meta = val;
            continue;
        }
        rc = parse_tensor(&f->t[f->n], key, val, data, data_size, errmsg);
        if (rc) goto fail;
        f->n++;
    }
    qsort(f->t, (size_t)f->n, sizeof(*f->t), cmp_begin);
    /* Sorted by begin, a non-empty tensor overlaps an earlier one exactly when it begins before
     * the largest end seen so far; comparing neighbours only would miss a small tensor inside a
     * big one with another (or an empty one) sorted between them. Empty tensors hold no bytes. */
    const clmr_st_tensor_t *widest = NULL; /* the non-empty tensor with the largest end so far */
    for (int i = 0; i < f->n; i++) {
        const clmr_st_tensor_t *b = &f->t[i];
        if (b->end <= b->begin) continue;
        if (widest && widest->end > b->begin) {
            rc = clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                              "tensors '%s' [%zu, %zu) and '%s' [%zu, %zu) overlap", widest->name,
                              widest->begin, widest->end, b->name, b->begin, b->end);
            goto fail;
        }
        if (!widest || b->end > widest->end) widest = b;
    }
    f->header = h;
    f->data_size = data_size;
    return 0;
fail:
    free(f->t);
    json_decref(h);
    memset(f, 0, sizeof(*f));
    return rc;
}

const clmr_st_tensor_t *clmr__st_find(const clmr_st_file_t *f, const char *name)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

const char *clmr__st_meta(const clmr_st_file_t *f, const char *key)
{
    if (!f->meta) return NULL;
    return json_string_value(json_object_get(f->meta, key));
}

void clmr__st_read_f32(const clmr_st_tensor_t *t, float *out)
{
    memcpy(out, t->data, t->n_elems * sizeof(float));
}

void clmr__st_read_i32(const clmr_st_tensor_t *t, int32_t *out)
{
    memcpy(out, t->data, t->n_elems * sizeof(int32_t));
}

void clmr__st_free(clmr_st_file_t *f)
{
    if (!f) return;
    free(f->t);
    json_decref(f->header);
    memset(f, 0, sizeof(*f));
}
