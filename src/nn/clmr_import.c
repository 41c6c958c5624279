/* clmr_import.c - official CLMR checkpoint layouts -> clmr_model_t (see clmr_import.h). */
#include "nn/clmr_import.h"

#include "clmr/error.h"
#include "nn/model_internal.h"
#include "nn/torch_ckpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const clmr_import_mtt50_tags[50] = {
    "guitar",    "classical",   "slow",     "techno",  "strings",    "drums",        "electronic",
    "rock",      "fast",        "piano",    "ambient", "beat",       "violin",       "vocal",
    "synth",     "female",      "indian",   "opera",   "male",       "singing",      "vocals",
    "no vocals", "harpsichord", "loud",     "quiet",   "flute",      "woman",        "male vocal",
    "no vocal",  "pop",         "soft",     "sitar",   "solo",       "man",          "classic",
    "choir",     "voice",       "new age",  "dance",   "male voice", "female vocal", "beats",
    "harp",      "cello",       "no voice", "weird",   "country",    "metal",        "female voice",
    "choral"};

enum { NAMING_SEQUENTIAL, NAMING_CONV };
enum { HEAD_NONE, HEAD_LINEAR, HEAD_MLP };

#define KEY_MAX 256

typedef struct {
    const char *path;
    clmr_ckpt_t *ck;
    const clmr_pk_value_t *sd; /* the state dict (borrowed from ck) */
    int lightning;
} src_t;

typedef struct {
    int kind;
    char w[KEY_MAX], b[KEY_MAX], w2[KEY_MAX], b2[KEY_MAX];
    int D, H, T;
} head_t;

static const char *const part_names[6] = {"0.weight", "0.bias",         "1.weight",
                                          "1.bias",   "1.running_mean", "1.running_var"};

static const clmr_pk_value_t *tensor_at(const clmr_pk_value_t *sd, const char *key)
{
    const clmr_pk_value_t *v = clmr_pk_dict_get(sd, key);
    return v && v->kind == CLMR_PK_TENSOR ? v : NULL;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *dims)
{
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && len < n; d++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", d ? ", " : "", (long long)dims[d]);
    if (len < n) snprintf(buf + len, n - len, "]");
}

static void close_src(src_t *s)
{
    clmr_ckpt_close(&s->ck);
}

static int open_src(src_t *s, const char *path, FILE *rep, const char *role, char **errmsg)
{
    memset(s, 0, sizeof(*s));
    s->path = path;
    int rc = clmr_ckpt_open_file(&s->ck, path, errmsg);
    if (rc) return rc == CLMR_EIO || rc == CLMR_ENOMEM ? rc : CLMR_ECHECKPOINT;
    const char *bad;
    int n_bad = clmr_ckpt_unsafe(s->ck, 0, &bad);
    if (n_bad > 0) {
        char list[600] = "";
        for (int i = 0; i < n_bad; i++) {
            if (clmr_ckpt_unsafe(s->ck, i, &bad), !bad) break;
            size_t l = strlen(list);
            snprintf(list + l, sizeof(list) - l, "%s%s", i ? ", " : "", bad);
        }
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT_UNSAFE,
                            "%s: the pickle references %s%s, which PyTorch's loader would call "
                            "(clmrd ran nothing); refusing to import a checkpoint that runs code",
                            path, list, n_bad > CLMR_PK_MAX_UNSAFE ? ", ..." : "");
    }
    const clmr_pk_value_t *root = clmr_ckpt_root(s->ck);
    if (root->kind != CLMR_PK_DICT)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                            "%s: the checkpoint holds a %s, not a state dict (save "
                            "model.state_dict(), not the model object)",
                            path, root->kind == CLMR_PK_OBJECT ? root->s : "non-dict value");
    const clmr_pk_value_t *sd = clmr_pk_dict_get(root, "state_dict");
    if (sd && sd->kind == CLMR_PK_DICT) {
        s->sd = sd;
        s->lightning = 1;
        char others[400] = "";
        for (size_t i = 0; i + 1 < root->n; i += 2) {
            const clmr_pk_value_t *k = root->items[i];
            if (k->kind != CLMR_PK_STR || strcmp(k->s, "state_dict") == 0) continue;
            size_t l = strlen(others);
            if (l < sizeof(others) - 40)
                snprintf(others + l, sizeof(others) - l, "%s%.32s", l ? ", " : "", k->s);
        }
        fprintf(rep, "%s: %s, %s; Lightning checkpoint: state_dict used, ignored: %s\n", role, path,
                clmr_ckpt_format(s->ck), others[0] ? others : "(nothing else)");
    } else {
        s->sd = root;
        fprintf(rep, "%s: %s, %s; plain state dict\n", role, path, clmr_ckpt_format(s->ck));
    }
    size_t n_t = 0;
    for (size_t i = 1; i < s->sd->n; i += 2)
        n_t += s->sd->items[i]->kind == CLMR_PK_TENSOR;
    if (n_t == 0)
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: the state dict holds no tensors", path);
    return 0;
}

/* Reads tensor key (shape ndim x dims exactly) as fp32 into dst and checks its values. */
static int read_tensor(src_t *s, const char *key, float *dst, int ndim, const int64_t *dims,
                       int nonneg, char **errmsg)
{
    const clmr_pk_value_t *t = tensor_at(s->sd, key);
    if (!t) return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: missing tensor '%s'", s->path, key);
    int same = t->t->ndim == ndim;
    size_t n = 1;
    for (int d = 0; d < ndim; d++) {
        same = same && t->t->shape[d] == dims[d];
        n *= (size_t)dims[d];
    }
    if (!same) {
        char got[128], want[128];
        shape_str(got, sizeof(got), t->t->ndim, t->t->shape);
        shape_str(want, sizeof(want), ndim, dims);
        return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: tensor '%s' has shape %s, expected %s",
                            s->path, key, got, want);
    }
    char what[KEY_MAX + 64];
    snprintf(what, sizeof(what), "tensor '%s'", key);
    int rc = clmr_ckpt_read_f32(s->ck, t, dst, n, what, errmsg);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(dst[i]))
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: tensor '%s' has a non-finite value",
                                s->path, key);
        if (nonneg && dst[i] < 0)
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: tensor '%s' has a negative variance",
                                s->path, key);
    }
    return 0;
}

static void layer_key(char *buf, const char *prefix, int naming, int i, const char *part)
{
    if (naming == NAMING_CONV)
        snprintf(buf, KEY_MAX, "%sconv%d.%s", prefix, i + 1, part);
    else
        snprintf(buf, KEY_MAX, "%ssequential.%d.%s", prefix, i, part);
}

static const char *const enc_prefixes[] = {
    "", "encoder.", "model.encoder.", "module.", "module.encoder.", "model.", "net.", NULL};

/* Finds an encoder under a prefix; *naming receives its layer naming. Returns the prefix index
 * or -1. Starts searching at index `from`. */
static int find_encoder(const clmr_pk_value_t *sd, int from, int *naming)
{
    char key[KEY_MAX];
    for (int i = from; enc_prefixes[i]; i++)
        for (int nm = NAMING_SEQUENTIAL; nm <= NAMING_CONV; nm++) {
            layer_key(key, enc_prefixes[i], nm, 0, "0.weight");
            if (tensor_at(sd, key)) {
                *naming = nm;
                return i;
            }
        }
    return -1;
}

/* Depth and widths of the encoder at prefix (widths[0] = 1). */
static int encoder_shape(src_t *s, const char *prefix, int naming, int *n_layers, int *widths,
                         char **errmsg)
{
    char key[KEY_MAX];
    int n = 0;
    widths[0] = 1;
    for (;; n++) {
        layer_key(key, prefix, naming, n, "0.weight");
        const clmr_pk_value_t *t = tensor_at(s->sd, key);
        if (!t) break;
        if (n >= CLMR_MAX_LAYERS)
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT, "%s: more than %d encoder layers",
                                s->path, CLMR_MAX_LAYERS);
        if (t->t->ndim != 3 || t->t->shape[1] != widths[n] || t->t->shape[2] != 3 ||
            t->t->shape[0] < 1 || t->t->shape[0] > 65536) {
            char got[128];
            shape_str(got, sizeof(got), t->t->ndim, t->t->shape);
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                                "%s: tensor '%s' has shape %s, expected [out_channels, %d, 3]",
                                s->path, key, got, widths[n]);
        }
        widths[n + 1] = (int)t->t->shape[0];
    }
    *n_layers = n;
    return 0;
}

/* Reads the encoder at prefix into m (whose cfg matches). */
static int read_encoder(src_t *s, const char *prefix, int naming, clmr_model_t *m, char **errmsg)
{
    char key[KEY_MAX];
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const clmr_layer_shape_t *l = &m->cfg.layer[i];
        float *dst[6] = {m->w.conv_w[i],  m->w.conv_b[i],  m->w.bn_gamma[i],
                         m->w.bn_beta[i], m->w.bn_mean[i], m->w.bn_var[i]};
        for (int p = 0; p < 6; p++) {
            int64_t wd[3] = {l->out_ch, l->in_ch, l->kernel}, vd[1] = {l->out_ch};
            layer_key(key, prefix, naming, i, part_names[p]);
            int rc = read_tensor(s, key, dst[p], p == 0 ? 3 : 1, p == 0 ? wd : vd, p == 5, errmsg);
            if (rc) return rc;
        }
    }
    return 0;
}

static int has_pair(const clmr_pk_value_t *sd, const char *w, const char *b)
{
    return tensor_at(sd, w) && tensor_at(sd, b);
}

/* Finds a tag head in sd (see DESIGN): MLP first, decided by the second layer's presence. */
static int find_head(src_t *s, const char *enc_prefix, head_t *h, char **errmsg)
{
    memset(h, 0, sizeof(*h));
    char encfc[KEY_MAX];
    snprintf(encfc, sizeof(encfc), "%sfc.", enc_prefix ? enc_prefix : "");
    const char *mlp_prefixes[] = {"model.", "", "fc.", "head.", "module.", encfc};
    for (size_t i = 0; i < sizeof(mlp_prefixes) / sizeof(mlp_prefixes[0]); i++) {
        const char *q = mlp_prefixes[i];
        char w0[KEY_MAX], w2[KEY_MAX];
        snprintf(w0, sizeof(w0), "%s0.weight", q);
        snprintf(w2, sizeof(w2), "%s2.weight", q);
        if (!tensor_at(s->sd, w0) || !tensor_at(s->sd, w2)) continue;
        h->kind = HEAD_MLP;
        snprintf(h->w, KEY_MAX, "%s0.weight", q);
        snprintf(h->b, KEY_MAX, "%s0.bias", q);
        snprintf(h->w2, KEY_MAX, "%s2.weight", q);
        snprintf(h->b2, KEY_MAX, "%s2.bias", q);
        const clmr_pk_value_t *a = tensor_at(s->sd, h->w), *c = tensor_at(s->sd, h->w2);
        if (a->t->ndim != 2 || c->t->ndim != 2 || c->t->shape[1] != a->t->shape[0] ||
            a->t->shape[0] < 1 || a->t->shape[0] > CLMR_HEAD_MAX_HIDDEN || c->t->shape[0] < 1 ||
            c->t->shape[0] > 100000) {
            char sa[128], sc[128];
            shape_str(sa, sizeof(sa), a->t->ndim, a->t->shape);
            shape_str(sc, sizeof(sc), c->t->ndim, c->t->shape);
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                                "%s: MLP head '%s' %s -> '%s' %s: expected [H, D] and [T, H] with "
                                "H <= %d",
                                s->path, h->w, sa, h->w2, sc, CLMR_HEAD_MAX_HIDDEN);
        }
        char w1[KEY_MAX];
        snprintf(w1, sizeof(w1), "%s1.weight", q);
        if (tensor_at(s->sd, w1))
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                                "%s: head '%s*' has a parameterised layer 1 ('%s'); only "
                                "Linear -> ReLU -> Linear MLP heads are supported",
                                s->path, q, w1);
        h->H = (int)a->t->shape[0];
        h->D = (int)a->t->shape[1];
        h->T = (int)c->t->shape[0];
        return 0;
    }
    const char *lin[][2] = {{"model.0.weight", "model.0.bias"},
                            {"0.weight", "0.bias"},
                            {"fc.weight", "fc.bias"},
                            {"head.weight", "head.bias"},
                            {"module.fc.weight", "module.fc.bias"}};
    char ew[KEY_MAX + 8], eb[KEY_MAX + 8];
    snprintf(ew, sizeof(ew), "%sweight", encfc);
    snprintf(eb, sizeof(eb), "%sbias", encfc);
    for (size_t i = 0; i <= sizeof(lin) / sizeof(lin[0]); i++) {
        const char *w = i < sizeof(lin) / sizeof(lin[0]) ? lin[i][0] : ew;
        const char *b = i < sizeof(lin) / sizeof(lin[0]) ? lin[i][1] : eb;
        if (!has_pair(s->sd, w, b)) continue;
        const clmr_pk_value_t *a = tensor_at(s->sd, w);
        if (a->t->ndim != 2 || a->t->shape[0] < 1 || a->t->shape[0] > 100000) {
            char sa[128];
            shape_str(sa, sizeof(sa), a->t->ndim, a->t->shape);
            return clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                                "%s: linear head '%s' has shape %s, expected [T, D]", s->path, w,
                                sa);
        }
        h->kind = HEAD_LINEAR;
        snprintf(h->w, KEY_MAX, "%.*s", KEY_MAX - 1, w);
        snprintf(h->b, KEY_MAX, "%.*s", KEY_MAX - 1, b);
        h->T = (int)a->t->shape[0];
        h->D = (int)a->t->shape[1];
        return 0;
    }
    return 0;
}

/* Lists up to 6 keys of sd for "not found" messages. */
static void some_keys(const clmr_pk_value_t *sd, char *buf, size_t n)
{
    buf[0] = 0;
    int shown = 0;
    for (size_t i = 0; i + 1 < sd->n && shown < 6; i += 2) {
        const clmr_pk_value_t *k = sd->items[i];
        if (k->kind != CLMR_PK_STR) continue;
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s'%.60s'", shown ? ", " : "", k->s);
        shown++;
    }
    if (sd->n / 2 > 6) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, ", ... (%zu keys)", sd->n / 2);
    }
}

static void report_projector(const src_t *s, FILE *rep)
{
    const char *pp[] = {"projector.", "model.projector.", "encoder.projector.", NULL};
    char k0[64], k2[64];
    for (int i = 0; pp[i]; i++) {
        snprintf(k0, sizeof(k0), "%s0.weight", pp[i]);
        snprintf(k2, sizeof(k2), "%s2.weight", pp[i]);
        const clmr_pk_value_t *a = tensor_at(s->sd, k0), *b = tensor_at(s->sd, k2);
        if (!a || !b || a->t->ndim != 2 || b->t->ndim != 2) continue;
        fprintf(rep,
                "projector: '%s' [%lld, %lld] -> ReLU -> '%s' [%lld, %lld] (SimCLR projection to "
                "%lld dimensions, read from the shape; used only in pretraining, not imported)\n",
                k0, (long long)a->t->shape[0], (long long)a->t->shape[1], k2,
                (long long)b->t->shape[0], (long long)b->t->shape[1], (long long)b->t->shape[0]);
        return;
    }
}

int clmr_import_checkpoint(clmr_model_t **out, const clmr_import_params_t *p, char **report,
                           char **errmsg)
{
    *out = NULL;
    if (report) *report = NULL;
    char *rbuf = NULL;
    size_t rlen = 0;
    FILE *rep = open_memstream(&rbuf, &rlen);
    if (!rep) return CLMR_ENOMEM;
    src_t enc, hs;
    memset(&enc, 0, sizeof(enc));
    memset(&hs, 0, sizeof(hs));
    clmr_model_t *m = NULL, *dup = NULL;
    int rc = open_src(&enc, p->encoder_path, rep, "encoder", errmsg);
    if (rc) goto out;

    int naming = 0, pi = find_encoder(enc.sd, 0, &naming);
    if (pi < 0) {
        char keys[512];
        some_keys(enc.sd, keys, sizeof(keys));
        rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                          "%s: no SampleCNN encoder (looked for sequential.0.0.weight and "
                          "conv1.0.weight under '', 'encoder.', 'model.encoder.', 'module.'); "
                          "keys: %s",
                          enc.path, keys);
        goto out;
    }
    const char *prefix = enc_prefixes[pi];
    int n_layers, widths[CLMR_MAX_LAYERS + 1];
    if ((rc = encoder_shape(&enc, prefix, naming, &n_layers, widths, errmsg))) goto out;
    clmr_samplecnn_config_t cfg;
    if (clmr_samplecnn_config_init(&cfg, n_layers, widths, 0)) {
        rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                          "%s: %d encoder layers under '%s' do not form a SampleCNN (3 to %d "
                          "layers, the last one reducing the input to length 1)",
                          enc.path, n_layers, prefix, CLMR_MAX_LAYERS);
        goto out;
    }
    {
        char first[KEY_MAX];
        layer_key(first, prefix, naming, 0, "0.weight");
        const clmr_pk_value_t *t0 = tensor_at(enc.sd, first);
        fprintf(rep, "encoder layout: %s'%s' names, %d layers, widths", prefix[0] ? "prefix " : "",
                naming == NAMING_CONV ? "conv1..convN (1.0 era, mapped to sequential.N-1)"
                                      : "sequential.<i>",
                n_layers);
        for (int i = 1; i <= n_layers; i++)
            fprintf(rep, "%s%d", i == 1 ? " " : "-", widths[i]);
        fprintf(rep, ", %s, chunk %d samples\n", clmr_dtype_name(t0->t->storage->dtype),
                cfg.chunk_samples);
        if (prefix[0]) fprintf(rep, "encoder prefix: '%s'\n", prefix);
    }

    /* the head: --head's file, else the encoder file's */
    head_t head;
    src_t *hsrc = &enc;
    if (p->head_path) {
        if ((rc = open_src(&hs, p->head_path, rep, "head file", errmsg))) goto out;
        hsrc = &hs;
        int hn, hp = find_encoder(hs.sd, 0, &hn);
        if ((rc = find_head(&hs, hp >= 0 ? enc_prefixes[hp] : "", &head, errmsg))) goto out;
        if (head.kind == HEAD_NONE) {
            char keys[512];
            some_keys(hs.sd, keys, sizeof(keys));
            rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                              "%s: no tag head (looked for model.0/model.2, 0/2, fc, head); "
                              "keys: %s",
                              hs.path, keys);
            goto out;
        }
        head_t other;
        char *ignore = NULL;
        if (!find_head(&enc, prefix, &other, &ignore) && other.kind != HEAD_NONE)
            fprintf(rep, "note: the encoder file's own head ('%s') is replaced by --head's\n",
                    other.w);
        free(ignore);
    } else if ((rc = find_head(&enc, prefix, &head, errmsg))) {
        goto out;
    }
    if (head.kind != HEAD_NONE && head.D != cfg.embed_dim) {
        rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                          "%s: head '%s' takes %d inputs but the encoder gives %d", hsrc->path,
                          head.w, head.D, cfg.embed_dim);
        goto out;
    }
    const char *const *tags = p->tags ? p->tags : clmr_import_mtt50_tags;
    int n_tags = p->tags ? p->n_tags : 50;
    if (head.kind != HEAD_NONE && head.T != n_tags) {
        char hint[200] = "";
        if (head.kind == HEAD_LINEAR && head.T == head.D)
            snprintf(hint, sizeof(hint),
                     " ('%.60s' is square: if it is the first layer of an MLP head, its "
                     "second layer is missing from the file)",
                     head.w);
        rc = clmr_set_err(errmsg, CLMR_ECHECKPOINT,
                          "%s: the head has %d outputs but %d tag names are given (%s)%s",
                          hsrc->path, head.T, n_tags, p->tags ? "--tags" : "the MTT-50 default",
                          hint);
        goto out;
    }
    if (head.kind == HEAD_MLP)
        fprintf(rep, "head: MLP '%s' [%d, %d] -> ReLU -> '%s' [%d, %d], %d tags\n", head.w, head.H,
                head.D, head.w2, head.T, head.H, head.T);
    else if (head.kind == HEAD_LINEAR)
        fprintf(rep, "head: linear '%s' [%d, %d], %d tags\n", head.w, head.T, head.D, head.T);
    else
        fprintf(rep, "head: none (an encoder-only model: embeddings and search, no tags; give "
                     "--head to add one)\n");
    report_projector(&enc, rep);

    cfg.n_tags = head.kind != HEAD_NONE ? head.T : 0;
    cfg.head_hidden = head.kind == HEAD_MLP ? head.H : 0;
    if ((rc = clmr__model_alloc(&m, &cfg))) goto out;
    if ((rc = read_encoder(&enc, prefix, naming, m, errmsg))) goto out;

    /* Lightning keeps the encoder twice (encoder.* and model.encoder.*): check they agree */
    int dn, di = find_encoder(enc.sd, pi + 1, &dn);
    if (di >= 0 && strcmp(enc_prefixes[di], "model.") != 0) {
        clmr_samplecnn_config_t ec = cfg;
        ec.n_tags = 0;
        ec.head_hidden = 0;
        char *ignore = NULL;
        int dl, dw[CLMR_MAX_LAYERS + 1];
        int same = 0;
        if (!encoder_shape(&enc, enc_prefixes[di], dn, &dl, dw, &ignore) && dl == n_layers &&
            !clmr__model_alloc(&dup, &ec) &&
            !read_encoder(&enc, enc_prefixes[di], dn, dup, &ignore))
            same = memcmp(dup->params, m->params,
                          clmr_samplecnn_param_count(&ec) * sizeof(float)) == 0;
        free(ignore);
        fprintf(rep, "encoder copy under '%s': %s\n", enc_prefixes[di],
                same ? "identical, ignored" : "DIFFERENT (unexpected); the first one is used");
    }

    if (head.kind == HEAD_MLP) {
        int64_t w0[2] = {head.H, head.D}, b0[1] = {head.H}, w2[2] = {head.T, head.H},
                b2[1] = {head.T};
        if ((rc = read_tensor(hsrc, head.w, m->w.hid_w, 2, w0, 0, errmsg)) ||
            (rc = read_tensor(hsrc, head.b, m->w.hid_b, 1, b0, 0, errmsg)) ||
            (rc = read_tensor(hsrc, head.w2, m->w.fc_w, 2, w2, 0, errmsg)) ||
            (rc = read_tensor(hsrc, head.b2, m->w.fc_b, 1, b2, 0, errmsg)))
            goto out;
    } else if (head.kind == HEAD_LINEAR) {
        int64_t w[2] = {head.T, head.D}, b[1] = {head.T};
        if ((rc = read_tensor(hsrc, head.w, m->w.fc_w, 2, w, 0, errmsg)) ||
            (rc = read_tensor(hsrc, head.b, m->w.fc_b, 1, b, 0, errmsg)))
            goto out;
    }
    clmr__model_fold_bn(m);
    if ((rc = clmr_model_set_name(m, p->name && *p->name ? p->name : "clmr-imported"))) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "bad model name");
        goto out;
    }
    if (cfg.n_tags > 0 && (rc = clmr_model_set_tags(m, tags, n_tags))) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "the tag names must be non-empty and unique");
        goto out;
    }
    if (cfg.n_tags > 0)
        fprintf(rep, "tags: %d (%s)\n", n_tags,
                p->tags ? "from --tags" : "MagnaTagATune-50 in CLMR's output order");
    {
        const char *eb = strrchr(enc.path, '/'),
                   *hb = p->head_path ? strrchr(p->head_path, '/') : NULL;
        char src[600];
        snprintf(src, sizeof(src), "%.250s%s%.250s", eb ? eb + 1 : enc.path,
                 p->head_path ? " + " : "", p->head_path ? (hb ? hb + 1 : p->head_path) : "");
        if ((rc = clmr_model_set_meta(m, "imported_from", src)) ||
            (rc = clmr_model_set_meta(m, "head_type",
                                      head.kind == HEAD_MLP      ? "mlp"
                                      : head.kind == HEAD_LINEAR ? "linear"
                                                                 : "none")))
            goto out;
    }
    *out = m;
    m = NULL;
out:
    if (rc == CLMR_ENOMEM) clmr_set_err(errmsg, rc, "out of memory importing the checkpoint");
    clmr_model_close(&m);
    clmr_model_close(&dup);
    close_src(&hs);
    close_src(&enc);
    fclose(rep);
    if (report && !rc)
        *report = rbuf;
    else
        free(rbuf);
    return rc;
}
