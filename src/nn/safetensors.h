/* safetensors.h - a strict, bounds-checked parser for the safetensors container (private to src/nn
 * and the tests).
 *
 * DESIGN: the file is an 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
 * tensor bytes; offsets are relative to the start of the data section. The parser checks the
 * container only (bounds, dtypes, byte sizes against shapes, overlaps, string metadata); what the
 * tensors mean is the model loader's business. It copies nothing: tensors point into the caller's
 * buffer, which must outlive the parsed file. Tensor data may be unaligned, so read it with
 * clmr__st_read_f32 (memcpy), never through a cast pointer. Hosts are little-endian (x86-64).
 */
#ifndef CLMR_NN_SAFETENSORS_H
#define CLMR_NN_SAFETENSORS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Headers larger than this are refused before any allocation (real model headers are ~10 KB). */
#define CLMR_ST_MAX_HEADER (16u << 20)
#define CLMR_ST_MAX_DIMS 8

typedef struct {
    const char *name;  /* points into the parsed JSON, valid until clmr__st_free */
    const char *dtype; /* "F32", "F16", "BF16", "F64", "I64", "I32", ... */
    int elem_size;     /* bytes per element */
    int ndim;
    int64_t shape[CLMR_ST_MAX_DIMS];
    size_t n_elems;
    const unsigned char *data; /* first byte, inside the caller's buffer */
    size_t begin, end;         /* byte offsets within the data section */
} clmr_st_tensor_t;

typedef struct {
    json_t *header; /* owned; the whole parsed JSON */
    json_t *meta;   /* borrowed from header: the __metadata__ object, or NULL */
    int n;
    clmr_st_tensor_t *t; /* (n) owned, in file order of data_offsets */
    size_t data_size;
} clmr_st_file_t;

/* Parses the container in buf (size bytes, remains owned by the caller and must outlive *f).
 * Returns 0, CLMR_ENOMEM or CLMR_EMODEL_FORMAT with *errmsg naming the tensor/field at fault.
 * On failure *f is left empty (clmr__st_free is still safe). Thread-safe (no shared state). */
int clmr__st_parse(clmr_st_file_t *f, const void *buf, size_t size, char **errmsg);

/* The tensor called name, or NULL. */
const clmr_st_tensor_t *clmr__st_find(const clmr_st_file_t *f, const char *name);

/* The __metadata__ string for key, or NULL (absent key or no metadata). */
const char *clmr__st_meta(const clmr_st_file_t *f, const char *key);

/* Copies t (which must be F32) to out (t->n_elems floats). */
void clmr__st_read_f32(const clmr_st_tensor_t *t, float *out);

/* Copies t (which must be I32) to out (t->n_elems ints). */
void clmr__st_read_i32(const clmr_st_tensor_t *t, int32_t *out);

void clmr__st_free(clmr_st_file_t *f);

#endif
