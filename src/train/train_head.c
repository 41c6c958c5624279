/* train_head.c - projector/NT-Xent and linear-head/BCE step tops (see train_head.h). */
#include "train/train_head.h"

#include "clmr/error.h"
#include "nn/ref_ops.h"
#include "train/ntxent.h"
#include "train/ref_backward.h"

typedef struct {
    float *p1, *z, *logits, *dp1, *dz, *dlogits, *ws;
} head_scratch_t;

static head_scratch_t split(const clmr_train_config_t *cfg, int batch, float *s)
{
    size_t B = (size_t)batch, H = (size_t)cfg->proj_hidden, P = (size_t)cfg->proj_out,
           T = (size_t)cfg->enc.n_tags;
    head_scratch_t h;
    h.p1 = s, s += B * H;
    h.z = s, s += B * P;
    h.logits = s, s += B * T;
    h.dp1 = s, s += B * H;
    h.dz = s, s += B * P;
    h.dlogits = s, s += B * T;
    h.ws = s;
    return h;
}

size_t clmr_train_head_scratch_floats(const clmr_train_config_t *cfg, int batch)
{
    size_t B = (size_t)batch;
    size_t n = 2 * B * ((size_t)cfg->proj_hidden + cfg->proj_out + cfg->enc.n_tags);
    if (cfg->proj_out > 0) n += clmr_ntxent_workspace_floats(batch, cfg->proj_out);
    return n;
}

float *clmr_train_head_z(const clmr_train_config_t *cfg, int batch, float *scratch)
{
    return split(cfg, batch, scratch).z;
}

float *clmr_train_head_logits(const clmr_train_config_t *cfg, int batch, float *scratch)
{
    return split(cfg, batch, scratch).logits;
}

int clmr_train_head_contrastive(float *loss, float *dh, const float *h,
                                const clmr_train_params_t *p, const clmr_train_params_t *g,
                                const clmr_train_config_t *cfg, int batch, float tau,
                                float *scratch)
{
    int B = batch, D = cfg->enc.embed_dim, H = cfg->proj_hidden, P = cfg->proj_out;
    if (H <= 0 || P <= 0 || B < 2 || B % 2 || !(tau > 0)) return CLMR_EINVAL;
    head_scratch_t s = split(cfg, batch, scratch);
    clmr_ref_linear(s.p1, h, p->proj_w1, NULL, B, D, H);
    clmr_ref_relu(s.p1, s.p1, (size_t)B * H);
    clmr_ref_linear(s.z, s.p1, p->proj_w2, NULL, B, H, P);
    int err = clmr_ntxent_forward(loss, s.ws, s.z, B, P, tau);
    if (err) return err;
    clmr_ntxent_backward(s.dz, s.ws, 1.0f, B, P, tau);
    clmr_ref_linear_backward(s.dp1, g->proj_w2, NULL, s.dz, s.p1, p->proj_w2, B, H, P);
    clmr_ref_relu_backward(s.dp1, s.dp1, s.p1, (size_t)B * H);
    clmr_ref_linear_backward(dh, g->proj_w1, NULL, s.dp1, h, p->proj_w1, B, D, H);
    return 0;
}

int clmr_train_head_supervised(float *loss, float *dh, const float *h, const float *y,
                               const clmr_train_params_t *p, const clmr_train_params_t *g,
                               const clmr_train_config_t *cfg, int batch, float *scratch)
{
    int B = batch, D = cfg->enc.embed_dim, T = cfg->enc.n_tags;
    if (T <= 0 || B < 1) return CLMR_EINVAL;
    head_scratch_t s = split(cfg, batch, scratch);
    clmr_ref_linear(s.logits, h, p->fc_w, p->fc_b, B, D, T);
    *loss = (float)clmr_ref_bce_logits(s.dlogits, s.logits, y, (size_t)B * T);
    clmr_ref_linear_backward(dh, g->fc_w, g->fc_b, s.dlogits, h, p->fc_w, B, D, T);
    return 0;
}
