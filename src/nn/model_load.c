/* model_load.c - loads and validates a SampleCNN safetensors model (clmr_model_load*).
 *
 * DESIGN: a model file is untrusted input (users upload or convert their own), so everything is
 * checked before a single weight is used, in this order: the container (safetensors.c: bounds,
 * sizes, overlaps), metadata format, tensor names, shapes and their consistency, the remaining
 * metadata, then values (all finite, running variances >= 0). Every failure returns a
 * CLMR_EMODEL_* code and a message naming the tensor or key and what is wrong with it.
 *
 * Tensor names are the official CLMR state_dict names: sequential.<i>.0.{weight,bias} (Conv1d),
 * sequential.<i>.1.{weight,bias,running_mean,running_var} (BatchNorm1d) and the optional I64
 * sequential.<i>.1.num_batches_tracked (ignored), for i = 0..L-1 contiguous; the optional tag head
 * is either linear fc.{weight,bias} or CLMR's MLP head fc.0.{weight,bias} (H, D) -> ReLU ->
 * fc.2.{weight,bias} (T, H) (encoder-only model without). The depth L and all widths come from
 * the shapes.
 * Unknown tensors: a "projector.*" group (the SimCLR projection head some checkpoints carry) is
 * accepted and ignored, since it is a legitimate part of a pretraining checkpoint that inference
 * does not use; any other name is refused with a message listing it, because silently ignoring a
 * misspelt or foreign tensor would run a model that is not what the user thinks it is.
 *
 * Metadata: format=clmr-samplecnn; sample_rate=22050 (the only rate CLMR models are trained at and
 * the rate clmrd decodes to; other rates are refused, not resampled); chunk_samples = 3^(L-1);
 * name non-empty; tags = JSON array of unique non-empty strings, one per fc row (required iff fc
 * exists; "[]" is tolerated without fc). All key/values are kept (clmr_model_meta).
 * The id is the first 16 hex digits of the sha256 of the file bytes (libavutil's av_sha).
 */
#include "nn/model_internal.h"
#include "nn/safetensors.h"

#include "clmr/error.h"

#include <errno.h>
#include <jansson.h>
#include <libavutil/mem.h>
#include <libavutil/sha.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Larger files are refused before reading: the official model is ~10 MB. */
#define MODEL_MAX_FILE_BYTES ((size_t)1 << 30)

enum { P_CONV_W, P_CONV_B, P_BN_W, P_BN_B, P_BN_MEAN, P_BN_VAR, P_NBT, P_COUNT };
static const char *const part_names[P_COUNT] = {"0.weight",
                                                "0.bias",
                                                "1.weight",
                                                "1.bias",
                                                "1.running_mean",
                                                "1.running_var",
                                                "1.num_batches_tracked"};

typedef struct {
    const clmr_st_tensor_t *layer[CLMR_MAX_LAYERS][P_COUNT];
    const clmr_st_tensor_t *fc_w, *fc_b;
    const clmr_st_tensor_t *mlp[4]; /* fc.0.weight, fc.0.bias, fc.2.weight, fc.2.bias */
    int n_layers;
} tensor_map_t;

static int model_id(char out[17], const void *buf, size_t n)
{
    struct AVSHA *sha = av_sha_alloc();
    if (!sha) return CLMR_ENOMEM;
    uint8_t digest[32];
    av_sha_init(sha, 256);
    av_sha_update(sha, buf, n);
    av_sha_final(sha, digest);
    av_free(sha);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

/* Strict non-negative decimal integer; returns -1 when s is not one (or is absurdly large). */
static long parse_count(const char *s)
{
    if (!s || !*s || strlen(s) > 9) return -1;
    long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
    }
    if (s[0] == '0' && s[1]) return -1; /* no leading zeros: one spelling per value */
    return v;
}

/* Maps tensor names to roles; refuses unknown names (see DESIGN). */
static int map_tensors(tensor_map_t *map, const clmr_st_file_t *f, char **errmsg)
{
    memset(map, 0, sizeof(*map));
    char unknown[512] = "";
    int n_unknown = 0;
    for (int i = 0; i < f->n; i++) {
        const clmr_st_tensor_t *t = &f->t[i];
        const char *name = t->name;
        if (strncmp(name, "sequential.", 11) == 0) {
            const char *num = name + 11;
            const char *dot = strchr(num, '.');
            char idx[16];
            if (dot && (size_t)(dot - num) < sizeof(idx)) {
                memcpy(idx, num, (size_t)(dot - num));
                idx[dot - num] = 0;
                long li = parse_count(idx);
                int part = -1;
                for (int p = 0; p < P_COUNT; p++)
                    if (strcmp(dot + 1, part_names[p]) == 0) part = p;
                if (li >= CLMR_MAX_LAYERS && part >= 0)
                    return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                                        "tensor '%s': layer index %ld, but at most %d layers are "
                                        "supported",
                                        name, li, CLMR_MAX_LAYERS);
                if (li >= 0 && part >= 0) {
                    map->layer[li][part] = t;
                    if (li + 1 > map->n_layers) map->n_layers = (int)li + 1;
                    continue;
                }
            }
        } else if (strcmp(name, "fc.weight") == 0) {
            map->fc_w = t;
            continue;
        } else if (strcmp(name, "fc.bias") == 0) {
            map->fc_b = t;
            continue;
        } else if (strncmp(name, "fc.", 3) == 0) {
            static const char *const mlp_names[4] = {"fc.0.weight", "fc.0.bias", "fc.2.weight",
                                                     "fc.2.bias"};
            int k = -1;
            for (int j = 0; j < 4; j++)
                if (strcmp(name, mlp_names[j]) == 0) k = j;
            if (k >= 0) {
                map->mlp[k] = t;
                continue;
            }
        } else if (strncmp(name, "projector.", 10) == 0) {
            continue;
        }
        if (n_unknown < 5) {
            size_t len = strlen(unknown);
            snprintf(unknown + len, sizeof(unknown) - len, "%s'%s'", n_unknown ? ", " : "", name);
        }
        n_unknown++;
    }
    if (n_unknown)
        return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                            "%d unexpected tensor%s: %s%s (expected only sequential.<i>.0.*, "
                            "sequential.<i>.1.*, fc.{weight,bias} or fc.{0,2}.{weight,bias} and "
                            "projector.*)",
                            n_unknown, n_unknown > 1 ? "s" : "", unknown,
                            n_unknown > 5 ? ", ..." : "");
    if (map->n_layers == 0)
        return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                            "no sequential.<i>.* tensors: not a SampleCNN model");
    if (map->n_layers < 3)
        return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                            "only %d layer(s) (sequential.0..%d); SampleCNN needs at least 3",
                            map->n_layers, map->n_layers - 1);
    for (int i = 0; i < map->n_layers; i++)
        for (int p = 0; p < P_NBT; p++)
            if (!map->layer[i][p])
                return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                                    "missing tensor 'sequential.%d.%s' (the model has layers "
                                    "0..%d)",
                                    i, part_names[p], map->n_layers - 1);
    if (!map->fc_w != !map->fc_b)
        return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR, "missing tensor '%s' (fc needs both)",
                            map->fc_w ? "fc.bias" : "fc.weight");
    int n_mlp = !!map->mlp[0] + !!map->mlp[1] + !!map->mlp[2] + !!map->mlp[3];
    if (n_mlp && map->fc_w)
        return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                            "both a linear head (fc.weight) and MLP head tensors (fc.0/fc.2)");
    if (n_mlp && n_mlp < 4)
        return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                            "incomplete MLP head: fc.0.weight, fc.0.bias, fc.2.weight and "
                            "fc.2.bias are all needed");
    return 0;
}

static int shape_err(char **errmsg, const clmr_st_tensor_t *t, const char *want)
{
    char got[128] = "(";
    for (int d = 0; d < t->ndim; d++) {
        size_t len = strlen(got);
        snprintf(got + len, sizeof(got) - len, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    }
    strncat(got, ")", sizeof(got) - strlen(got) - 1);
    return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR, "tensor '%s' has shape %s, expected %s",
                        t->name, got, want);
}

static int is_vec(const clmr_st_tensor_t *t, int64_t n)
{
    return t->ndim == 1 && t->shape[0] == n;
}

/* Checks dtypes and shape consistency; fills widths (widths[0] = 1), *n_tags and *hidden (the
 * MLP head's hidden width, 0 for a linear head). */
static int check_shapes(const tensor_map_t *map, int *widths, int *n_tags, int *hidden,
                        char **errmsg)
{
    char want[96];
    widths[0] = 1;
    for (int i = 0; i < map->n_layers; i++) {
        for (int p = 0; p < P_NBT; p++)
            if (strcmp(map->layer[i][p]->dtype, "F32") != 0)
                return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                                    "tensor '%s' has dtype %s; parameters must be F32",
                                    map->layer[i][p]->name, map->layer[i][p]->dtype);
        const clmr_st_tensor_t *w = map->layer[i][P_CONV_W];
        if (w->ndim != 3 || w->shape[0] < 1 || w->shape[0] > 65536 || w->shape[1] != widths[i] ||
            w->shape[2] != 3) {
            snprintf(want, sizeof(want), "(out_channels, %d, 3)%s", widths[i],
                     i == 0 ? ": layer 0 takes the 1-channel waveform" : "");
            return shape_err(errmsg, w, want);
        }
        int oc = (int)w->shape[0];
        widths[i + 1] = oc;
        for (int p = P_CONV_B; p < P_NBT; p++)
            if (!is_vec(map->layer[i][p], oc)) {
                snprintf(want, sizeof(want), "(%d) like sequential.%d.0.weight's out_channels", oc,
                         i);
                return shape_err(errmsg, map->layer[i][p], want);
            }
        const clmr_st_tensor_t *nbt = map->layer[i][P_NBT];
        if (nbt && (strcmp(nbt->dtype, "I64") != 0 || nbt->n_elems != 1))
            return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                                "tensor '%s' must be a single I64 (it is ignored)", nbt->name);
    }
    *n_tags = 0;
    *hidden = 0;
    if (map->mlp[0]) { /* MLP head: fc.0 (H, D) -> ReLU -> fc.2 (T, H) */
        int d = widths[map->n_layers];
        for (int k = 0; k < 4; k++)
            if (strcmp(map->mlp[k]->dtype, "F32") != 0)
                return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                                    "tensor '%s' has dtype %s; parameters must be F32",
                                    map->mlp[k]->name, map->mlp[k]->dtype);
        const clmr_st_tensor_t *w0 = map->mlp[0], *w2 = map->mlp[2];
        if (w0->ndim != 2 || w0->shape[0] < 1 || w0->shape[0] > CLMR_HEAD_MAX_HIDDEN ||
            w0->shape[1] != d) {
            snprintf(want, sizeof(want), "(hidden <= %d, %d): %d = the last layer's out_channels",
                     CLMR_HEAD_MAX_HIDDEN, d, d);
            return shape_err(errmsg, w0, want);
        }
        int h = (int)w0->shape[0];
        if (!is_vec(map->mlp[1], h)) {
            snprintf(want, sizeof(want), "(%d) like fc.0.weight's rows", h);
            return shape_err(errmsg, map->mlp[1], want);
        }
        if (w2->ndim != 2 || w2->shape[0] < 1 || w2->shape[0] > 100000 || w2->shape[1] != h) {
            snprintf(want, sizeof(want), "(n_tags, %d): %d = fc.0.weight's rows", h, h);
            return shape_err(errmsg, w2, want);
        }
        *n_tags = (int)w2->shape[0];
        *hidden = h;
        if (!is_vec(map->mlp[3], *n_tags)) {
            snprintf(want, sizeof(want), "(%d) like fc.2.weight's rows", *n_tags);
            return shape_err(errmsg, map->mlp[3], want);
        }
    }
    if (map->fc_w) {
        int d = widths[map->n_layers];
        for (int k = 0; k < 2; k++) {
            const clmr_st_tensor_t *t = k ? map->fc_b : map->fc_w;
            if (strcmp(t->dtype, "F32") != 0)
                return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                                    "tensor '%s' has dtype %s; parameters must be F32", t->name,
                                    t->dtype);
        }
        if (map->fc_w->ndim != 2 || map->fc_w->shape[0] < 1 || map->fc_w->shape[0] > 100000 ||
            map->fc_w->shape[1] != d) {
            snprintf(want, sizeof(want), "(n_tags, %d): %d = the last layer's out_channels", d, d);
            return shape_err(errmsg, map->fc_w, want);
        }
        *n_tags = (int)map->fc_w->shape[0];
        if (!is_vec(map->fc_b, *n_tags)) {
            snprintf(want, sizeof(want), "(%d) like fc.weight's rows", *n_tags);
            return shape_err(errmsg, map->fc_b, want);
        }
    }
    return 0;
}

/* Parses and checks the tags metadata into a NULL-terminated-free array of n strings. */
static int parse_tags(char ***out, const char *s, int n, char **errmsg)
{
    *out = NULL;
    json_error_t jerr;
    json_t *arr = json_loads(s, 0, &jerr);
    int rc = 0;
    char **tags = NULL;
    if (!json_is_array(arr)) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata 'tags' is not a JSON array of strings");
        goto out;
    }
    if ((int)json_array_size(arr) != n) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata 'tags' has %zu names but fc.weight has %d rows",
                          json_array_size(arr), n);
        goto out;
    }
    tags = calloc((size_t)n, sizeof(char *));
    if (!tags) {
        rc = CLMR_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const char *tag = json_string_value(json_array_get(arr, (size_t)i));
        if (!tag || !*tag) {
            rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                              "metadata 'tags'[%d] is not a non-empty string", i);
            goto out;
        }
        for (int j = 0; j < i; j++)
            if (strcmp(tags[j], tag) == 0) {
                rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                                  "metadata 'tags' names '%s' twice (at %d and %d)", tag, j, i);
                goto out;
            }
        if (!(tags[i] = strdup(tag))) {
            rc = CLMR_ENOMEM;
            goto out;
        }
    }
    *out = tags;
    tags = NULL;
out:
    if (tags)
        for (int i = 0; i < n; i++)
            free(tags[i]);
    free(tags);
    json_decref(arr);
    return rc;
}

/* Copies an F32 tensor into dst and checks its values. */
static int copy_tensor(float *dst, const clmr_st_tensor_t *t, int nonneg, char **errmsg)
{
    clmr__st_read_f32(t, dst);
    for (size_t i = 0; i < t->n_elems; i++) {
        if (!isfinite(dst[i]))
            return clmr_set_err(errmsg, CLMR_EMODEL_NONFINITE,
                                "tensor '%s' has a non-finite value (%g) at index %zu", t->name,
                                (double)dst[i], i);
        if (nonneg && dst[i] < 0)
            return clmr_set_err(errmsg, CLMR_EMODEL_TENSOR,
                                "tensor '%s' has a negative variance (%g) at index %zu", t->name,
                                (double)dst[i], i);
    }
    return 0;
}

int clmr_model_load_memory(clmr_model_t **out, const void *data, size_t size, char **errmsg)
{
    *out = NULL;
    clmr_st_file_t f;
    clmr_model_t *m = NULL;
    tensor_map_t map;
    int widths[CLMR_MAX_LAYERS + 1], n_tags = 0, hidden = 0;
    int rc = clmr__st_parse(&f, data, size, errmsg);
    if (rc) return rc;

    if (!f.meta) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "no __metadata__ (a clmrd model needs format=clmr-samplecnn, "
                          "sample_rate, chunk_samples, name and tags; import PyTorch checkpoints "
                          "with clmrd import)");
        goto fail;
    }
    const char *format = clmr__st_meta(&f, "format");
    if (!format || strcmp(format, "clmr-samplecnn") != 0) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata 'format' is %s%s%s, expected 'clmr-samplecnn'",
                          format ? "'" : "", format ? format : "missing", format ? "'" : "");
        goto fail;
    }
    if ((rc = map_tensors(&map, &f, errmsg))) goto fail;
    if ((rc = check_shapes(&map, widths, &n_tags, &hidden, errmsg))) goto fail;

    const char *sr = clmr__st_meta(&f, "sample_rate");
    if (parse_count(sr) != 22050) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata 'sample_rate' is %s%s%s; it must be 22050 (CLMR models are "
                          "trained on 22,050 Hz audio and clmrd decodes to that rate)",
                          sr ? "'" : "", sr ? sr : "missing", sr ? "'" : "");
        goto fail;
    }
    clmr_samplecnn_config_t cfg;
    if (clmr_samplecnn_config_init(&cfg, map.n_layers, widths, n_tags)) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_TENSOR, "invalid layer configuration (%d layers)",
                          map.n_layers);
        goto fail;
    }
    cfg.head_hidden = hidden;
    const char *cs = clmr__st_meta(&f, "chunk_samples");
    if (parse_count(cs) != cfg.chunk_samples) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata 'chunk_samples' is %s%s%s, but a %d-layer SampleCNN takes "
                          "3^%d = %d samples",
                          cs ? "'" : "", cs ? cs : "missing", cs ? "'" : "", cfg.n_layers,
                          cfg.n_layers - 1, cfg.chunk_samples);
        goto fail;
    }
    const char *name = clmr__st_meta(&f, "name");
    if (!name || !*name) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA, "metadata 'name' is %s",
                          name ? "empty" : "missing");
        goto fail;
    }
    const char *tags = clmr__st_meta(&f, "tags");
    if (n_tags > 0 && !tags) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata 'tags' is missing (fc.weight has %d rows: give their names "
                          "as a JSON array)",
                          n_tags);
        goto fail;
    }
    if (n_tags == 0 && tags && strspn(tags, " []") != strlen(tags)) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata 'tags' is given but the model has no fc head");
        goto fail;
    }
    if (json_object_size(f.meta) > CLMR_MODEL_MAX_META) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA, "%zu metadata entries (max %d)",
                          json_object_size(f.meta), CLMR_MODEL_MAX_META);
        goto fail;
    }

    if ((rc = clmr__model_alloc(&m, &cfg))) goto fail;
    for (int i = 0; i < cfg.n_layers; i++) {
        float *dst[P_NBT] = {m->w.conv_w[i],  m->w.conv_b[i],  m->w.bn_gamma[i],
                             m->w.bn_beta[i], m->w.bn_mean[i], m->w.bn_var[i]};
        for (int p = 0; p < P_NBT; p++)
            if ((rc = copy_tensor(dst[p], map.layer[i][p], p == P_BN_VAR, errmsg))) goto fail;
    }
    if (n_tags > 0 && hidden > 0) {
        if ((rc = copy_tensor(m->w.hid_w, map.mlp[0], 0, errmsg))) goto fail;
        if ((rc = copy_tensor(m->w.hid_b, map.mlp[1], 0, errmsg))) goto fail;
        if ((rc = copy_tensor(m->w.fc_w, map.mlp[2], 0, errmsg))) goto fail;
        if ((rc = copy_tensor(m->w.fc_b, map.mlp[3], 0, errmsg))) goto fail;
    } else if (n_tags > 0) {
        if ((rc = copy_tensor(m->w.fc_w, map.fc_w, 0, errmsg))) goto fail;
        if ((rc = copy_tensor(m->w.fc_b, map.fc_b, 0, errmsg))) goto fail;
    }
    if (n_tags > 0) {
        if ((rc = parse_tags(&m->tags, tags, n_tags, errmsg))) goto fail;
    }
    if (!(m->name = strdup(name))) {
        rc = CLMR_ENOMEM;
        goto fail;
    }
    const char *key;
    json_t *val;
    json_object_foreach(f.meta, key, val)
    {
        if ((rc = clmr__model_meta_put(m, key, json_string_value(val)))) goto fail;
    }
    if ((rc = model_id(m->id, data, size))) goto fail;
    clmr__model_fold_bn(m);
    clmr__st_free(&f);
    *out = m;
    return 0;
fail:
    if (rc == CLMR_ENOMEM) clmr_set_err(errmsg, rc, "out of memory loading the model");
    clmr_model_close(&m);
    clmr__st_free(&f);
    return rc;
}

int clmr_model_load(clmr_model_t **out, const char *path, char **errmsg)
{
    *out = NULL;
    int rc = 0;
    unsigned char *buf = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return clmr_set_err(errmsg, CLMR_EMODEL_IO, "cannot open model '%s': %s", path,
                            strerror(errno));
    struct stat st;
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_IO, "model '%s' is not a regular file", path);
        goto out;
    }
    size_t size = (size_t)st.st_size;
    if (size > MODEL_MAX_FILE_BYTES) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_IO, "model '%s' is %zu bytes (limit %zu)", path, size,
                          MODEL_MAX_FILE_BYTES);
        goto out;
    }
    buf = malloc(size ? size : 1);
    if (!buf) {
        rc = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory reading model '%s'", path);
        goto out;
    }
    if (fread(buf, 1, size, fp) != size) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_IO, "cannot read model '%s': %s", path,
                          ferror(fp) ? strerror(errno) : "unexpected end of file");
        goto out;
    }
    rc = clmr_model_load_memory(out, buf, size, errmsg);
    if (rc && errmsg && *errmsg) {
        /* prefix the path so a user with several models knows which one is bad */
        char *msg = *errmsg;
        *errmsg = NULL;
        clmr_set_err(errmsg, rc, "model '%s': %s", path, msg);
        free(msg);
    }
out:
    free(buf);
    fclose(fp);
    return rc;
}
