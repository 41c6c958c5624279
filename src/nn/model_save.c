/* model_save.c - writes a model as a clmrd safetensors file (clmr_model_save).
 *
 * DESIGN: the output is exactly what model_load.c accepts and what the converter writes: official
 * tensor names in layer order (num_batches_tracked included as an I64 0 so PyTorch's strict
 * load_state_dict accepts the file), the header padded with spaces to a multiple of 8 so tensor
 * data is aligned, and metadata = the model's free-form entries plus the derived keys written from
 * the model's own fields. The write is atomic (temp file in the target directory, fsync, rename,
 * fsync of the directory) because the service may be loading the model another process is saving: a
 * reader must see either the old file or the complete new one, never a torn write.
 */
#include "nn/model_internal.h"

#include "clmr/error.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const void *data;
    size_t bytes;
} blob_t;

static int add_tensor(json_t *hdr, blob_t *blobs, int *nb, size_t *offset, const char *name,
                      const char *dtype, const int64_t *shape, int ndim, const void *data,
                      size_t bytes)
{
    json_t *sh = json_array();
    json_t *desc = json_object();
    json_t *off = json_array();
    int bad = !sh || !desc || !off;
    for (int d = 0; d < ndim && !bad; d++)
        bad |= json_array_append_new(sh, json_integer(shape[d]));
    bad = bad || json_array_append_new(off, json_integer((json_int_t)*offset)) ||
          json_array_append_new(off, json_integer((json_int_t)(*offset + bytes)));
    bad = bad || json_object_set_new(desc, "dtype", json_string(dtype)) ||
          json_object_set(desc, "shape", sh) || json_object_set(desc, "data_offsets", off) ||
          json_object_set(hdr, name, desc);
    json_decref(sh);
    json_decref(off);
    json_decref(desc);
    if (bad) return CLMR_ENOMEM;
    blobs[*nb].data = data;
    blobs[*nb].bytes = bytes;
    (*nb)++;
    *offset += bytes;
    return 0;
}

/* Builds the JSON header (tensors + metadata) and the list of data blobs in file order. */
static int build_header(const clmr_model_t *m, json_t **out, blob_t *blobs, int *nb, char **errmsg)
{
    static const int64_t zero = 0;
    const clmr_samplecnn_config_t *c = &m->cfg;
    json_t *hdr = json_object(), *meta = json_object();
    size_t off = 0;
    char name[64], num[32];
    int rc = CLMR_ENOMEM;
    *nb = 0;
    if (!hdr || !meta) goto out;
    for (int i = 0; i < c->n_layers; i++) {
        const clmr_layer_shape_t *l = &c->layer[i];
        int64_t wshape[3] = {l->out_ch, l->in_ch, l->kernel}, vshape[1] = {l->out_ch};
        size_t vbytes = sizeof(float) * (size_t)l->out_ch;
        const struct {
            const char *part;
            const float *p;
        } vecs[5] = {{"0.bias", m->w.conv_b[i]},
                     {"1.weight", m->w.bn_gamma[i]},
                     {"1.bias", m->w.bn_beta[i]},
                     {"1.running_mean", m->w.bn_mean[i]},
                     {"1.running_var", m->w.bn_var[i]}};
        snprintf(name, sizeof(name), "sequential.%d.0.weight", i);
        if (add_tensor(hdr, blobs, nb, &off, name, "F32", wshape, 3, m->w.conv_w[i],
                       vbytes * (size_t)l->in_ch * (size_t)l->kernel))
            goto out;
        for (int k = 0; k < 5; k++) {
            snprintf(name, sizeof(name), "sequential.%d.%s", i, vecs[k].part);
            if (add_tensor(hdr, blobs, nb, &off, name, "F32", vshape, 1, vecs[k].p, vbytes))
                goto out;
        }
        snprintf(name, sizeof(name), "sequential.%d.1.num_batches_tracked", i);
        if (add_tensor(hdr, blobs, nb, &off, name, "I64", NULL, 0, &zero, sizeof(zero))) goto out;
    }
    if (c->n_tags > 0 && c->head_hidden > 0) {
        /* MLP head: the names of nn.Sequential(Linear, ReLU, Linear) stored as "fc" */
        const int H = c->head_hidden, D = c->embed_dim, T = c->n_tags;
        int64_t w0[2] = {H, D}, b0[1] = {H}, w2[2] = {T, H}, b2[1] = {T};
        if (add_tensor(hdr, blobs, nb, &off, "fc.0.weight", "F32", w0, 2, m->w.hid_w,
                       sizeof(float) * (size_t)H * (size_t)D) ||
            add_tensor(hdr, blobs, nb, &off, "fc.0.bias", "F32", b0, 1, m->w.hid_b,
                       sizeof(float) * (size_t)H) ||
            add_tensor(hdr, blobs, nb, &off, "fc.2.weight", "F32", w2, 2, m->w.fc_w,
                       sizeof(float) * (size_t)T * (size_t)H) ||
            add_tensor(hdr, blobs, nb, &off, "fc.2.bias", "F32", b2, 1, m->w.fc_b,
                       sizeof(float) * (size_t)T))
            goto out;
    } else if (c->n_tags > 0) {
        int64_t wshape[2] = {c->n_tags, c->embed_dim}, bshape[1] = {c->n_tags};
        if (add_tensor(hdr, blobs, nb, &off, "fc.weight", "F32", wshape, 2, m->w.fc_w,
                       sizeof(float) * (size_t)c->n_tags * (size_t)c->embed_dim) ||
            add_tensor(hdr, blobs, nb, &off, "fc.bias", "F32", bshape, 1, m->w.fc_b,
                       sizeof(float) * (size_t)c->n_tags))
            goto out;
    }

    if (!m->name || !*m->name) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "the model has no name (clmr_model_set_name)");
        goto out;
    }
    if (c->n_tags > 0 && !m->tags) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL,
                          "the model has a %d-tag head but no tag names (clmr_model_set_tags)",
                          c->n_tags);
        goto out;
    }
    /* The tags entry is kept verbatim when present (the loader validated it and set_tags keeps it
     * in step with m->tags), so a load/save round trip does not even change its spacing. */
    char *tags_s = NULL;
    const char *tags_meta = clmr_model_meta(m, "tags");
    if (c->n_tags > 0 && tags_meta) {
        tags_s = strdup(tags_meta);
    } else {
        json_t *tags = json_array();
        for (int i = 0; tags && i < c->n_tags; i++)
            json_array_append_new(tags, json_string(m->tags[i]));
        tags_s = tags ? json_dumps(tags, JSON_COMPACT) : NULL;
        json_decref(tags);
    }
    if (!tags_s) goto out;
    int bad = json_object_set_new(meta, "format", json_string("clmr-samplecnn"));
    snprintf(num, sizeof(num), "%d", m->sample_rate);
    bad |= json_object_set_new(meta, "sample_rate", json_string(num));
    snprintf(num, sizeof(num), "%d", c->chunk_samples);
    bad |= json_object_set_new(meta, "chunk_samples", json_string(num));
    bad |= json_object_set_new(meta, "name", json_string(m->name));
    if (c->n_tags > 0) bad |= json_object_set_new(meta, "tags", json_string(tags_s));
    free(tags_s);
    for (int i = 0; i < m->n_meta && !bad; i++)
        if (!json_object_get(meta, m->meta_key[i]) &&
            strcmp(m->meta_key[i], "tags") != 0) /* encoder-only: no tags entry */
            bad |= json_object_set_new(meta, m->meta_key[i], json_string(m->meta_val[i]));
    if (bad || json_object_set(hdr, "__metadata__", meta)) goto out;
    *out = hdr;
    hdr = NULL;
    rc = 0;
out:
    json_decref(hdr);
    json_decref(meta);
    return rc;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int clmr_model_save(const clmr_model_t *m, const char *path, char **errmsg)
{
    /* per layer: conv w, conv b, 4 BN vectors, num_batches_tracked; then fc w, b */
    blob_t blobs[CLMR_MAX_LAYERS * 7 + 4];
    int nb = 0, fd = -1, created = 0, rc;
    json_t *hdr = NULL;
    char *json = NULL, *tmp = NULL, *dir = NULL;
    if ((rc = build_header(m, &hdr, blobs, &nb, errmsg))) {
        if (rc == CLMR_ENOMEM) clmr_set_err(errmsg, rc, "out of memory saving the model");
        return rc;
    }
    json = json_dumps(hdr, JSON_COMPACT);
    size_t plen = strlen(path);
    tmp = malloc(plen + 16);
    dir = strdup(path);
    if (!json || !tmp || !dir) {
        rc = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory saving the model");
        goto out;
    }
    size_t hlen = strlen(json), padded = (hlen + 7) / 8 * 8;
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        slash[1] = 0; /* "/model.safetensors" lives in "/" */
    else
        *slash = 0;
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot create a temporary file next to '%s': %s", path,
                          strerror(errno));
        goto out;
    }
    created = 1;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    int bad = fchmod(fd, 0644) || write_all(fd, len8, 8) || write_all(fd, json, hlen) ||
              write_all(fd, spaces, padded - hlen);
    for (int i = 0; i < nb && !bad; i++)
        bad = write_all(fd, blobs[i].data, blobs[i].bytes);
    if (bad || fsync(fd) != 0) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot write '%s': %s", tmp, strerror(errno));
        goto out;
    }
    int cr = close(fd);
    fd = -1;
    if (cr != 0 || rename(tmp, path) != 0) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot %s '%s': %s", cr ? "close" : "rename to", path,
                          strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL; /* renamed: nothing to clean up */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd) != 0) {
        rc =
            clmr_set_err(errmsg, CLMR_EIO, "cannot fsync directory '%s': %s", dir, strerror(errno));
    }
    if (dfd >= 0) close(dfd);
out:
    if (fd >= 0) close(fd);
    if (tmp && created) unlink(tmp);
    free(tmp);
    free(dir);
    free(json);
    json_decref(hdr);
    return rc;
}
