/* st_fixture.h - reads the float32 tensors of a safetensors fixture for the training tests.
 *
 * DESIGN: test-only and header-only (static functions), so the training tests depend on no
 * model-loading code another branch owns. The whole file is read once; tensors are looked up by
 * name through jansson and returned as pointers into that buffer (8-byte aligned by the writer).
 */
#ifndef CLMR_TESTS_TRAIN_ST_FIXTURE_H
#define CLMR_TESTS_TRAIN_ST_FIXTURE_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    unsigned char *buf;
    size_t size;
    json_t *header;
    const unsigned char *data;
} st_fixture_t;

static void st_close(st_fixture_t *f)
{
    if (f->header) json_decref(f->header);
    free(f->buf);
    memset(f, 0, sizeof(*f));
}

/* Returns 0 or -1 (with a message on stdout as a TAP comment). */
static int st_open(st_fixture_t *f, const char *path)
{
    memset(f, 0, sizeof(*f));
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        printf("# cannot open %s\n", path);
        return -1;
    }
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    f->buf = malloc(sz > 0 ? (size_t)sz : 1);
    f->size = (size_t)sz;
    if (!f->buf || fread(f->buf, 1, f->size, fp) != f->size || f->size < 8) {
        fclose(fp);
        st_close(f);
        return -1;
    }
    fclose(fp);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | f->buf[i];
    if (n > f->size - 8) {
        st_close(f);
        return -1;
    }
    json_error_t jerr;
    f->header = json_loadb((const char *)f->buf + 8, (size_t)n, 0, &jerr);
    if (!f->header) {
        printf("# %s: bad header: %s\n", path, jerr.text);
        st_close(f);
        return -1;
    }
    f->data = f->buf + 8 + n;
    return 0;
}

/* The float32 tensor `name`, its element count in *count (may be NULL); NULL when absent. */
static const float *st_get(const st_fixture_t *f, const char *name, size_t *count)
{
    json_t *t = json_object_get(f->header, name);
    if (!t) {
        printf("# fixture has no tensor %s\n", name);
        return NULL;
    }
    const char *dtype = json_string_value(json_object_get(t, "dtype"));
    json_t *off = json_object_get(t, "data_offsets");
    if (!dtype || strcmp(dtype, "F32") || json_array_size(off) != 2) return NULL;
    size_t b = (size_t)json_integer_value(json_array_get(off, 0));
    size_t e = (size_t)json_integer_value(json_array_get(off, 1));
    if (e < b || f->data + e > f->buf + f->size) return NULL;
    if (count) *count = (e - b) / sizeof(float);
    return (const float *)(const void *)(f->data + b);
}

/* A string metadata value, or NULL. */
static const char *st_meta(const st_fixture_t *f, const char *key)
{
    return json_string_value(json_object_get(json_object_get(f->header, "__metadata__"), key));
}

#endif
