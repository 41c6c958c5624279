/* bench_model.c - a stop-gap safetensors reader for the benchmark until src/nn/model_load.c (the
 * `model` branch) is merged: reads official CLMR key names into an in-memory model and folds BN.
 *
 * DESIGN: deliberately minimal (no validation beyond shapes and bounds): it only ever reads the
 * file bench/make_model.py wrote. Widths come from the tensor shapes, as in the real loader.
 */
#include "bench/bench_model.h"

#include "clmr/error.h"
#include "nn/model_internal.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies tensor `name` (float32, n elements) into dst; returns 0 or -1. */
static int get_tensor(json_t *hdr, const unsigned char *data, size_t data_len, const char *name,
                      float *dst, size_t n)
{
    json_t *t = json_object_get(hdr, name);
    json_t *off = json_object_get(t, "data_offsets");
    if (!t || !json_is_array(off) || strcmp(json_string_value(json_object_get(t, "dtype")), "F32"))
        return -1;
    size_t b = (size_t)json_integer_value(json_array_get(off, 0));
    size_t e = (size_t)json_integer_value(json_array_get(off, 1));
    if (e > data_len || e < b || e - b != n * sizeof(float)) return -1;
    memcpy(dst, data + b, e - b);
    return 0;
}

int bench_model_load(clmr_model_t **out, const char *path)
{
    int err = CLMR_EMODEL_FORMAT;
    *out = NULL;
    unsigned char *buf = NULL;
    json_t *hdr = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return CLMR_EMODEL_IO;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf || size < 8 || fread(buf, 1, (size_t)size, f) != (size_t)size) goto done;
    uint64_t hl;
    memcpy(&hl, buf, 8);
    if (hl > (uint64_t)size - 8) goto done;
    hdr = json_loadb((const char *)buf + 8, hl, 0, NULL);
    if (!hdr) goto done;
    const unsigned char *data = buf + 8 + hl;
    size_t data_len = (size_t)size - 8 - hl;
    int widths[CLMR_MAX_LAYERS + 1] = {1}, n_layers = 0, n_tags = 0;
    char name[64];
    for (; n_layers < CLMR_MAX_LAYERS; n_layers++) {
        snprintf(name, sizeof(name), "sequential.%d.0.weight", n_layers);
        json_t *shape = json_object_get(json_object_get(hdr, name), "shape");
        if (!shape) break;
        widths[n_layers + 1] = (int)json_integer_value(json_array_get(shape, 0));
    }
    json_t *fcs = json_object_get(json_object_get(hdr, "fc.weight"), "shape");
    if (fcs) n_tags = (int)json_integer_value(json_array_get(fcs, 0));
    clmr_samplecnn_config_t cfg;
    if (clmr_samplecnn_config_init(&cfg, n_layers, widths, n_tags)) goto done;
    clmr_model_t *m;
    if ((err = clmr__model_alloc(&m, &cfg))) goto done;
    err = CLMR_EMODEL_TENSOR;
    for (int i = 0; i < n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg.layer[i];
        size_t oc = (size_t)l->out_ch;
        static const char *bn[4] = {"weight", "bias", "running_mean", "running_var"};
        float *bnp[4] = {m->w.bn_gamma[i], m->w.bn_beta[i], m->w.bn_mean[i], m->w.bn_var[i]};
        snprintf(name, sizeof(name), "sequential.%d.0.weight", i);
        if (get_tensor(hdr, data, data_len, name, m->w.conv_w[i], oc * l->in_ch * l->kernel))
            goto fail_model;
        snprintf(name, sizeof(name), "sequential.%d.0.bias", i);
        if (get_tensor(hdr, data, data_len, name, m->w.conv_b[i], oc)) goto fail_model;
        for (int k = 0; k < 4; k++) {
            snprintf(name, sizeof(name), "sequential.%d.1.%s", i, bn[k]);
            if (get_tensor(hdr, data, data_len, name, bnp[k], oc)) goto fail_model;
        }
    }
    if (n_tags && (get_tensor(hdr, data, data_len, "fc.weight", m->w.fc_w,
                              (size_t)n_tags * cfg.embed_dim) ||
                   get_tensor(hdr, data, data_len, "fc.bias", m->w.fc_b, (size_t)n_tags)))
        goto fail_model;
    clmr__model_fold_bn(m);
    *out = m;
    err = 0;
    goto done;
fail_model:
    clmr_model_close(&m);
done:
    json_decref(hdr);
    free(buf);
    if (f) fclose(f);
    return err;
}
