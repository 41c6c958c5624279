/* pretrain.c - contrastive pretraining state: PyTorch-like initialisation, steps, checkpoints and
 * export (see pretrain.h).
 *
 * DESIGN: one allocation holds params | grads | m | v | running statistics, so a checkpoint is a
 * header plus three contiguous slices (params, m, v) and the statistics. The oneDNN trainer wraps
 * these blocks in place, so nothing is copied per step. The file hash is FNV-1a 64 (detects a
 * truncated or corrupted file; not a security measure). Floats are written in host byte order,
 * which is little-endian on every machine we build for (x86-64, aarch64); the loader refuses other
 * hosts rather than misreading.
 */
#include "train/pretrain.h"

#include "clmr/error.h"
#include "nn/model_internal.h"
#include "train/train_dnnl.h"
#include "util/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char CKPT_MAGIC[8] = {'C', 'L', 'M', 'R', 'C', 'K', 'P', 'T'};

struct clmr_pretrain {
    clmr_pretrain_params_t p;
    clmr_train_config_t cfg;
    size_t n_params, n_stats;
    float *mem; /* params | grads | m | v | stats */
    clmr_train_blocks_t blk;
    clmr_train_dnnl_t *dnnl;
    long step;
};

clmr_pretrain_params_t clmr_pretrain_default_params(void)
{
    static const int official[12] = {1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512};
    clmr_pretrain_params_t p;
    memset(&p, 0, sizeof(p));
    p.n_layers = 11;
    memcpy(p.widths, official, sizeof(official));
    p.proj_hidden = 512;
    p.proj_out = 64;
    p.batch_pairs = 48;
    p.tau = 0.5f;
    p.bn_momentum = 0.1f;
    p.adam = clmr_adam_default_params();
    p.seed = 0;
    return p;
}

int clmr_pretrain_parse_widths(clmr_pretrain_params_t *p, const char *s, char **errmsg)
{
    if (!s || !*s) return clmr_set_err(errmsg, CLMR_EINVAL, "empty widths");
    if (strcmp(s, "official") == 0) {
        clmr_pretrain_params_t d = clmr_pretrain_default_params();
        p->n_layers = d.n_layers;
        memcpy(p->widths, d.widths, sizeof(p->widths));
        return 0;
    }
    int w[CLMR_MAX_LAYERS + 1] = {1}, n = 0;
    const char *c = s;
    while (*c) {
        char *end;
        errno = 0;
        long v = strtol(c, &end, 10);
        if (end == c || errno || v < 1 || v > 4096 || (*end && *end != ','))
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "widths '%s': expected 'official' or a comma list of channel "
                                "counts 1..4096",
                                s);
        if (n == CLMR_MAX_LAYERS)
            return clmr_set_err(errmsg, CLMR_EINVAL, "widths '%s': more than %d layers", s,
                                CLMR_MAX_LAYERS);
        w[++n] = (int)v;
        c = *end ? end + 1 : end;
        if (*end == ',' && !*c)
            return clmr_set_err(errmsg, CLMR_EINVAL, "widths '%s': trailing comma", s);
    }
    if (n < 3)
        return clmr_set_err(errmsg, CLMR_EINVAL, "widths '%s': need 3..%d layers, got %d", s,
                            CLMR_MAX_LAYERS, n);
    p->n_layers = n;
    memset(p->widths, 0, sizeof(p->widths));
    memcpy(p->widths, w, sizeof(int) * (size_t)(n + 1));
    return 0;
}

/* Allocates the blocks and opens the oneDNN trainer; parameters and statistics left zero. */
static int pt_alloc(clmr_pretrain_t **out, const clmr_pretrain_params_t *p, char **errmsg)
{
    *out = NULL;
    if (p->batch_pairs < 1 || p->batch_pairs > 4096 || !(p->tau > 0) || p->proj_hidden < 1 ||
        p->proj_out < 1 || !(p->adam.lr > 0) || p->adam.weight_decay < 0)
        return clmr_set_err(errmsg, CLMR_EINVAL, "invalid pretraining parameters");
    clmr_pretrain_t *pt = calloc(1, sizeof(*pt));
    if (!pt) return CLMR_ENOMEM;
    pt->p = *p;
    int err =
        clmr_train_config_init(&pt->cfg, p->n_layers, p->widths, p->proj_hidden, p->proj_out, 0);
    if (err) {
        free(pt);
        return clmr_set_err(errmsg, CLMR_EINVAL, "invalid encoder widths");
    }
    pt->n_params = clmr_train_param_count(&pt->cfg);
    for (int i = 0; i < p->n_layers; i++)
        pt->n_stats += 2 * (size_t)pt->cfg.enc.layer[i].out_ch;
    pt->mem = calloc(4 * pt->n_params + pt->n_stats, sizeof(float));
    if (!pt->mem) {
        size_t np = pt->n_params;
        free(pt);
        return clmr_set_err(errmsg, CLMR_ENOMEM, "cannot allocate %zu parameters", np);
    }
    pt->blk.params = pt->mem;
    pt->blk.grads = pt->mem + pt->n_params;
    pt->blk.m = pt->mem + 2 * pt->n_params;
    pt->blk.v = pt->mem + 3 * pt->n_params;
    float *s = pt->mem + 4 * pt->n_params;
    for (int i = 0; i < p->n_layers; i++) {
        int oc = pt->cfg.enc.layer[i].out_ch;
        pt->blk.run_mean[i] = s, s += oc;
        pt->blk.run_var[i] = s, s += oc;
    }
    if ((err = clmr_train_dnnl_open_prec(&pt->dnnl, &pt->cfg, 2 * p->batch_pairs, &pt->blk,
                                         p->precision, errmsg))) {
        free(pt->mem);
        free(pt);
        return err;
    }
    *out = pt;
    return 0;
}

static void fill_uniform(float *x, size_t n, double bound, clmr_rng_t *r)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)clmr_rng_range(r, -bound, bound);
}

void clmr_pretrain_init_encoder(const clmr_train_params_t *w, float *const *run_mean,
                                float *const *run_var, const clmr_samplecnn_config_t *enc,
                                const clmr_model_t *init, clmr_rng_t *r)
{
    for (int i = 0; i < enc->n_layers; i++) {
        const clmr_layer_shape_t *l = &enc->layer[i];
        size_t nw = (size_t)l->out_ch * l->in_ch * l->kernel;
        double fan_in = (double)l->in_ch * l->kernel;
        /* CLMR's SampleCNN: kaiming_uniform_(fan_in, relu) -> bound sqrt(6 / fan_in); the conv
         * bias keeps PyTorch's default U(+-1/sqrt(fan_in)). Drawn even with --init so what is
         * drawn after (projector, head) gets the same numbers either way. */
        fill_uniform(w->conv_w[i], nw, sqrt(6.0 / fan_in), r);
        fill_uniform(w->conv_b[i], (size_t)l->out_ch, 1.0 / sqrt(fan_in), r);
        for (int c = 0; c < l->out_ch; c++) {
            w->bn_gamma[i][c] = 1.0f;
            w->bn_beta[i][c] = 0.0f;
            run_mean[i][c] = 0.0f;
            run_var[i][c] = 1.0f;
        }
        if (init) {
            memcpy(w->conv_w[i], init->w.conv_w[i], nw * sizeof(float));
            memcpy(w->conv_b[i], init->w.conv_b[i], (size_t)l->out_ch * sizeof(float));
            memcpy(w->bn_gamma[i], init->w.bn_gamma[i], (size_t)l->out_ch * sizeof(float));
            memcpy(w->bn_beta[i], init->w.bn_beta[i], (size_t)l->out_ch * sizeof(float));
            memcpy(run_mean[i], init->w.bn_mean[i], (size_t)l->out_ch * sizeof(float));
            memcpy(run_var[i], init->w.bn_var[i], (size_t)l->out_ch * sizeof(float));
        }
    }
}

int clmr_pretrain_open(clmr_pretrain_t **out, const clmr_pretrain_params_t *p,
                       const clmr_model_t *init, char **errmsg)
{
    *out = NULL;
    if (init) { /* checked before anything is allocated */
        if (init->cfg.n_layers != p->n_layers)
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "--init model has %d layers, the requested widths %d (pass "
                                "--widths matching the model)",
                                init->cfg.n_layers, p->n_layers);
        for (int i = 0; i < p->n_layers; i++)
            if (init->cfg.layer[i].out_ch != p->widths[i + 1])
                return clmr_set_err(errmsg, CLMR_EINVAL,
                                    "--init model layer %d has %d channels, the requested "
                                    "widths %d (pass --widths matching the model)",
                                    i, init->cfg.layer[i].out_ch, p->widths[i + 1]);
    }
    clmr_pretrain_t *pt;
    int err = pt_alloc(&pt, p, errmsg);
    if (err) return err;
    const clmr_samplecnn_config_t *enc = &pt->cfg.enc;
    clmr_train_params_t w;
    clmr_train_params_bind(&w, &pt->cfg, pt->blk.params);
    clmr_rng_t r;
    clmr_rng_seed(&r, p->seed, 0x696e6974 /* "init" */);
    clmr_pretrain_init_encoder(&w, pt->blk.run_mean, pt->blk.run_var, enc, init, &r);
    /* nn.Linear default (kaiming_uniform a = sqrt(5)): U(+-1/sqrt(fan_in)). */
    int D = enc->embed_dim, H = pt->cfg.proj_hidden, P = pt->cfg.proj_out;
    fill_uniform(w.proj_w1, (size_t)H * D, 1.0 / sqrt((double)D), &r);
    fill_uniform(w.proj_w2, (size_t)P * H, 1.0 / sqrt((double)H), &r);
    *out = pt;
    return 0;
}

int clmr_pretrain_step(clmr_pretrain_t *pt, const float *x, float *loss, double *grad_norm)
{
    if (!pt->dnnl) return CLMR_EINVAL; /* a failed clmr_pretrain_set_precision */
    int err = clmr_train_dnnl_step_contrastive(pt->dnnl, x, pt->p.tau, &pt->p.adam, pt->step + 1,
                                               loss, grad_norm);
    if (!err) pt->step++;
    return err;
}

int clmr_pretrain_step_aux(clmr_pretrain_t *pt, const float *x, clmr_train_aux_fn aux, void *aux_ud,
                           float *loss, float *aux_loss, double *grad_norm)
{
    if (!pt->dnnl) return CLMR_EINVAL;
    int err = clmr_train_dnnl_step_contrastive_aux(
        pt->dnnl, x, pt->p.tau, &pt->p.adam, pt->step + 1, aux, aux_ud, loss, aux_loss, grad_norm);
    if (!err) pt->step++;
    return err;
}

long clmr_pretrain_steps_done(const clmr_pretrain_t *pt)
{
    return pt->step;
}

const clmr_pretrain_params_t *clmr_pretrain_params(const clmr_pretrain_t *pt)
{
    return &pt->p;
}

int clmr_pretrain_chunk_samples(const clmr_pretrain_t *pt)
{
    return pt->cfg.enc.chunk_samples;
}

/* ---- checkpoints ---- */

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
#define FNV_INIT 0xcbf29ce484222325ULL

static json_t *header_json(const clmr_pretrain_t *pt, json_t *extra)
{
    const clmr_pretrain_params_t *p = &pt->p;
    json_t *w = json_array();
    for (int i = 1; i <= p->n_layers; i++)
        json_array_append_new(w, json_integer(p->widths[i]));
    json_t *h = json_pack(
        "{s:s, s:i, s:i, s:o, s:i, s:i, s:i, s:f, s:f, s:{s:f, s:f, s:f, s:f, s:f, s:f}, s:I, "
        "s:I, s:I, s:I}",
        "format", "clmrd-pretrain-checkpoint", "version", CLMR_CKPT_VERSION, "n_layers",
        p->n_layers, "widths", w, "proj_hidden", p->proj_hidden, "proj_out", p->proj_out,
        "batch_pairs", p->batch_pairs, "tau", (double)p->tau, "bn_momentum", (double)p->bn_momentum,
        "adam", "lr", p->adam.lr, "beta1", p->adam.beta1, "beta2", p->adam.beta2, "eps",
        p->adam.eps, "weight_decay", p->adam.weight_decay, "clip_norm", p->adam.clip_norm, "seed",
        (json_int_t)p->seed, "step", (json_int_t)pt->step, "n_params", (json_int_t)pt->n_params,
        "n_stats", (json_int_t)pt->n_stats);
    if (h && extra) json_object_set(h, "extra", extra);
    return h;
}

static int write_all(int fd, const void *buf, size_t n, uint64_t *hash)
{
    const char *b = buf;
    if (hash) *hash = fnv1a(*hash, buf, n);
    while (n) {
        ssize_t k = write(fd, b, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

int clmr_pretrain_save_checkpoint(const clmr_pretrain_t *pt, const char *path,
                                  const char *extra_json, char **errmsg)
{
    json_t *extra = NULL;
    if (extra_json) {
        extra = json_loads(extra_json, 0, NULL);
        if (!extra || !json_is_object(extra)) {
            json_decref(extra);
            return clmr_set_err(errmsg, CLMR_EINVAL, "checkpoint extra is not a JSON object");
        }
    }
    json_t *h = header_json(pt, extra);
    json_decref(extra);
    char *text = h ? json_dumps(h, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(h);
    if (!text) return clmr_set_err(errmsg, CLMR_ENOMEM, "cannot build checkpoint header");
    int rc = 0, fd = -1;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16), *dcopy = strdup(path);
    if (!tmp || !dcopy) {
        rc = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    fd = mkstemp(tmp);
    if (fd >= 0) (void)fchmod(fd, 0644); /* mkstemp makes 0600; a checkpoint is not secret */
    if (fd < 0) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot create '%s': %s", tmp, strerror(errno));
        goto done;
    }
    uint32_t ver = CLMR_CKPT_VERSION, hlen = (uint32_t)strlen(text);
    uint64_t hash = FNV_INIT;
    const size_t np = pt->n_params;
    int bad = write_all(fd, CKPT_MAGIC, 8, &hash) || write_all(fd, &ver, 4, &hash) ||
              write_all(fd, &hlen, 4, &hash) || write_all(fd, text, hlen, &hash) ||
              write_all(fd, pt->blk.params, np * sizeof(float), &hash) ||
              write_all(fd, pt->blk.m, np * sizeof(float), &hash) ||
              write_all(fd, pt->blk.v, np * sizeof(float), &hash) ||
              write_all(fd, pt->mem + 4 * np, pt->n_stats * sizeof(float), &hash);
    bad = bad || write_all(fd, &hash, 8, NULL);
    if (bad || fsync(fd) != 0) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot write '%s': %s", tmp, strerror(errno));
        goto done;
    }
    int cr = close(fd);
    fd = -1;
    if (cr != 0 || rename(tmp, path) != 0) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot %s '%s': %s", cr ? "close" : "rename to", path,
                          strerror(errno));
        goto done;
    }
    tmp[0] = 0; /* renamed: nothing to remove */
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY);
    if (dfd < 0 || fsync(dfd) != 0)
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot fsync the folder of '%s': %s", path,
                          strerror(errno));
    if (dfd >= 0) close(dfd);
done:
    if (fd >= 0) close(fd);
    if (tmp && tmp[0]) unlink(tmp);
    free(tmp);
    free(dcopy);
    free(text);
    return rc;
}

static int read_file(const char *path, unsigned char **data, size_t *size, char **errmsg)
{
    FILE *f = fopen(path, "rb");
    if (!f) return clmr_set_err(errmsg, CLMR_EIO, "cannot open '%s': %s", path, strerror(errno));
    int rc = 0;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0) n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return clmr_set_err(errmsg, CLMR_EIO, "cannot read '%s'", path);
    }
    unsigned char *buf = malloc((size_t)n + 1);
    if (!buf)
        rc = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory reading '%s'", path);
    else if (fread(buf, 1, (size_t)n, f) != (size_t)n)
        rc = clmr_set_err(errmsg, CLMR_EIO, "cannot read '%s'", path);
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *data = buf;
    *size = (size_t)n;
    return 0;
}

int clmr_pretrain_open_checkpoint(clmr_pretrain_t **out, const char *path, char **info,
                                  char **errmsg)
{
    *out = NULL;
    if (info) *info = NULL;
    const uint16_t one = 1;
    if (*(const unsigned char *)&one != 1)
        return clmr_set_err(errmsg, CLMR_EINVAL, "checkpoints need a little-endian host");
    unsigned char *d = NULL;
    size_t n = 0;
    int rc = read_file(path, &d, &n, errmsg);
    if (rc) return rc;
    json_t *h = NULL;
    clmr_pretrain_t *pt = NULL;
    uint32_t ver, hlen;
    uint64_t stored;
    if (n < 24 || memcmp(d, CKPT_MAGIC, 8) != 0) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "'%s' is not a clmrd pretraining checkpoint", path);
        goto done;
    }
    memcpy(&ver, d + 8, 4);
    memcpy(&hlen, d + 12, 4);
    if (ver != CLMR_CKPT_VERSION) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "'%s': checkpoint version %u, this clmrd reads %d",
                          path, ver, CLMR_CKPT_VERSION);
        goto done;
    }
    if ((size_t)hlen > n - 24) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "'%s': truncated checkpoint", path);
        goto done;
    }
    memcpy(&stored, d + n - 8, 8);
    if (fnv1a(FNV_INIT, d, n - 8) != stored) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "'%s': checkpoint is corrupt or truncated (hash)",
                          path);
        goto done;
    }
    json_error_t je;
    h = json_loadb((const char *)d + 16, hlen, 0, &je);
    clmr_pretrain_params_t p = clmr_pretrain_default_params();
    json_t *w = h ? json_object_get(h, "widths") : NULL;
    json_int_t seed = 0, step = -1, np = -1, ns = -1;
    double tau = 0, mom = 0;
    if (!h ||
        json_unpack(h,
                    "{s:i, s:i, s:i, s:i, s:F, s:F, s:{s:F, s:F, s:F, s:F, s:F, s:F}, s:I, s:I, "
                    "s:I, s:I}",
                    "n_layers", &p.n_layers, "proj_hidden", &p.proj_hidden, "proj_out", &p.proj_out,
                    "batch_pairs", &p.batch_pairs, "tau", &tau, "bn_momentum", &mom, "adam", "lr",
                    &p.adam.lr, "beta1", &p.adam.beta1, "beta2", &p.adam.beta2, "eps", &p.adam.eps,
                    "weight_decay", &p.adam.weight_decay, "clip_norm", &p.adam.clip_norm, "seed",
                    &seed, "step", &step, "n_params", &np, "n_stats", &ns) != 0 ||
        !json_is_array(w) || p.n_layers < 3 || p.n_layers > CLMR_MAX_LAYERS ||
        json_array_size(w) != (size_t)p.n_layers || step < 0) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "'%s': invalid checkpoint header", path);
        goto done;
    }
    p.tau = (float)tau;
    p.bn_momentum = (float)mom;
    p.seed = (uint64_t)seed;
    memset(p.widths, 0, sizeof(p.widths));
    p.widths[0] = 1;
    for (int i = 0; i < p.n_layers; i++)
        p.widths[i + 1] = (int)json_integer_value(json_array_get(w, (size_t)i));
    if ((rc = pt_alloc(&pt, &p, errmsg))) goto done;
    size_t need = 16 + hlen + (3 * pt->n_params + pt->n_stats) * sizeof(float) + 8;
    if ((size_t)np != pt->n_params || (size_t)ns != pt->n_stats || need != n) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "'%s': checkpoint sizes do not match its header",
                          path);
        goto done;
    }
    const unsigned char *q = d + 16 + hlen;
    size_t bytes = pt->n_params * sizeof(float);
    memcpy(pt->blk.params, q, bytes), q += bytes;
    memcpy(pt->blk.m, q, bytes), q += bytes;
    memcpy(pt->blk.v, q, bytes), q += bytes;
    memcpy(pt->mem + 4 * pt->n_params, q, pt->n_stats * sizeof(float));
    pt->step = (long)step;
    if (info) {
        *info = strndup((const char *)d + 16, hlen);
        if (!*info) {
            rc = CLMR_ENOMEM;
            goto done;
        }
    }
    *out = pt;
    pt = NULL;
done:
    clmr_pretrain_close(&pt);
    json_decref(h);
    free(d);
    return rc;
}

int clmr_pretrain_export(const clmr_pretrain_t *pt, const clmr_model_t *head, clmr_model_t **out,
                         char **errmsg)
{
    *out = NULL;
    clmr_samplecnn_config_t cfg = pt->cfg.enc;
    int has_head = head && head->cfg.n_tags > 0;
    if (has_head && head->cfg.embed_dim != cfg.embed_dim)
        return clmr_set_err(errmsg, CLMR_EINVAL, "head model has %d inputs, the encoder gives %d",
                            head->cfg.embed_dim, cfg.embed_dim);
    cfg.n_tags = has_head ? head->cfg.n_tags : 0;
    cfg.head_hidden = has_head ? head->cfg.head_hidden : 0; /* linear or MLP head, kept as is */
    clmr_model_t *m;
    int rc = clmr__model_alloc(&m, &cfg);
    if (rc) return clmr_set_err(errmsg, rc, "cannot allocate the model");
    clmr_train_params_t w;
    clmr_train_params_bind(&w, &pt->cfg, pt->blk.params);
    for (int i = 0; i < cfg.n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg.layer[i];
        size_t oc = (size_t)l->out_ch;
        memcpy(m->w.conv_w[i], w.conv_w[i], oc * l->in_ch * l->kernel * sizeof(float));
        memcpy(m->w.conv_b[i], w.conv_b[i], oc * sizeof(float));
        memcpy(m->w.bn_gamma[i], w.bn_gamma[i], oc * sizeof(float));
        memcpy(m->w.bn_beta[i], w.bn_beta[i], oc * sizeof(float));
        memcpy(m->w.bn_mean[i], pt->blk.run_mean[i], oc * sizeof(float));
        memcpy(m->w.bn_var[i], pt->blk.run_var[i], oc * sizeof(float));
    }
    if (has_head) {
        clmr__model_copy_head(m, head); /* same head configuration by construction */
        if ((rc = clmr_model_set_tags(m, (const char *const *)head->tags, cfg.n_tags))) {
            clmr_model_close(&m);
            return clmr_set_err(errmsg, rc, "cannot copy the head's tags");
        }
    }
    clmr__model_fold_bn(m);
    *out = m;
    return 0;
}

int clmr_pretrain_set_precision(clmr_pretrain_t *pt, clmr_train_precision_t precision,
                                char **errmsg)
{
    if (precision == CLMR_TRAIN_PREC_AUTO) {
        int rc = clmr_train_precision_resolve(precision, &precision, NULL, errmsg);
        if (rc) return rc;
    }
    if (pt->dnnl && clmr_train_dnnl_precision(pt->dnnl) == precision) return 0;
    /* the trainer only wraps the blocks: closing it first keeps the peak at one trainer */
    clmr_train_dnnl_close(&pt->dnnl);
    int rc = clmr_train_dnnl_open_prec(&pt->dnnl, &pt->cfg, 2 * pt->p.batch_pairs, &pt->blk,
                                       precision, errmsg);
    if (!rc) pt->p.precision = precision;
    return rc;
}

clmr_train_precision_t clmr_pretrain_precision(const clmr_pretrain_t *pt)
{
    return clmr_train_dnnl_precision(pt->dnnl);
}

void clmr_pretrain_close(clmr_pretrain_t **ptp)
{
    if (!ptp || !*ptp) return;
    clmr_pretrain_t *pt = *ptp;
    clmr_train_dnnl_close(&pt->dnnl);
    free(pt->mem);
    free(pt);
    *ptp = NULL;
}
