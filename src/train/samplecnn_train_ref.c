/* samplecnn_train_ref.c - naive whole training step (see samplecnn_train_ref.h).
 *
 * DESIGN: forward keeps, per layer, the convolution output (BN backward needs its input), the
 * post-ReLU activation (ReLU backward reads the output, max-pool backward finds its argmax in it)
 * and the pooled output (the next layer's input). The backward walks the layers in reverse with
 * two ping-pong gradient buffers: pool backward fills one, ReLU and BN backward work in place on
 * it, conv backward writes the previous layer's output gradient into the other.
 */
#include "train/samplecnn_train_ref.h"

#include "clmr/error.h"
#include "nn/ref_ops.h"
#include "train/ref_backward.h"
#include "train/train_head.h"

#include <stdlib.h>
#include <string.h>

int clmr_train_config_init(clmr_train_config_t *cfg, int n_layers, const int *widths,
                           int proj_hidden, int proj_out, int n_tags)
{
    memset(cfg, 0, sizeof(*cfg));
    if (proj_hidden < 0 || proj_out < 0 || (proj_hidden == 0) != (proj_out == 0))
        return CLMR_EINVAL;
    int err = clmr_samplecnn_config_init(&cfg->enc, n_layers, widths, n_tags);
    if (err) return err;
    cfg->proj_hidden = proj_hidden;
    cfg->proj_out = proj_out;
    return 0;
}

size_t clmr_train_head_offset(const clmr_train_config_t *cfg)
{
    size_t n = 0;
    for (int i = 0; i < cfg->enc.n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->enc.layer[i];
        n += (size_t)l->out_ch * l->in_ch * l->kernel + 3 * (size_t)l->out_ch;
    }
    size_t d = (size_t)cfg->enc.embed_dim, hh = (size_t)cfg->proj_hidden;
    return n + hh * d + (size_t)cfg->proj_out * hh;
}

size_t clmr_train_param_count(const clmr_train_config_t *cfg)
{
    size_t t = (size_t)cfg->enc.n_tags;
    return clmr_train_head_offset(cfg) + t * cfg->enc.embed_dim + t;
}

void clmr_train_params_bind(clmr_train_params_t *p, const clmr_train_config_t *cfg, float *mem)
{
    float *q = mem;
    memset(p, 0, sizeof(*p));
    for (int i = 0; i < cfg->enc.n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->enc.layer[i];
        size_t oc = (size_t)l->out_ch;
        p->conv_w[i] = q, q += oc * l->in_ch * l->kernel;
        p->conv_b[i] = q, q += oc;
        p->bn_gamma[i] = q, q += oc;
        p->bn_beta[i] = q, q += oc;
    }
    size_t d = (size_t)cfg->enc.embed_dim;
    if (cfg->proj_hidden > 0) {
        p->proj_w1 = q, q += (size_t)cfg->proj_hidden * d;
        p->proj_w2 = q, q += (size_t)cfg->proj_out * cfg->proj_hidden;
    }
    if (cfg->enc.n_tags > 0) {
        p->fc_w = q, q += (size_t)cfg->enc.n_tags * d;
        p->fc_b = q;
    }
}

void clmr_ref_trainer_close(clmr_ref_trainer_t *t)
{
    if (!t) return;
    free(t->params_mem);
    free(t->grads_mem);
    free(t->m_mem);
    free(t->v_mem);
    free(t->stats_mem);
    free(t->acts_mem);
    free(t->bwd_mem);
    memset(t, 0, sizeof(*t));
}

int clmr_ref_trainer_open(clmr_ref_trainer_t *t, const clmr_train_config_t *cfg, int batch)
{
    memset(t, 0, sizeof(*t));
    if (batch < 2) return CLMR_EINVAL;
    const clmr_samplecnn_config_t *e = &cfg->enc;
    size_t B = (size_t)batch, D = (size_t)e->embed_dim, T = (size_t)e->n_tags;
    t->cfg = *cfg;
    t->batch = batch;
    t->adam = clmr_adam_default_params();
    t->bn_momentum = 0.1f;
    t->n_params = clmr_train_param_count(cfg);

    size_t n_stats = 0, n_acts = 0, max_act = 0;
    for (int i = 0; i < e->n_layers; i++) {
        const clmr_layer_shape_t *l = &e->layer[i];
        size_t conv = B * l->out_ch * l->conv_len;
        n_stats += 2 * (size_t)l->out_ch;
        n_acts += 2 * conv + (l->pool ? B * l->out_ch * l->out_len : 0) + 2 * (size_t)l->out_ch;
        if (conv > max_act) max_act = conv;
        if (B * l->in_ch * l->in_len > max_act) max_act = B * l->in_ch * l->in_len;
    }
    size_t n_bwd = 2 * max_act + B * D + clmr_train_head_scratch_floats(cfg, batch);

    t->params_mem = calloc(t->n_params, sizeof(float));
    t->grads_mem = calloc(t->n_params, sizeof(float));
    t->m_mem = calloc(t->n_params, sizeof(float));
    t->v_mem = calloc(t->n_params, sizeof(float));
    t->stats_mem = calloc(n_stats, sizeof(float));
    t->acts_mem = calloc(n_acts, sizeof(float));
    t->bwd_mem = calloc(n_bwd, sizeof(float));
    if (!t->params_mem || !t->grads_mem || !t->m_mem || !t->v_mem || !t->stats_mem ||
        !t->acts_mem || !t->bwd_mem) {
        clmr_ref_trainer_close(t);
        return CLMR_ENOMEM;
    }
    clmr_train_params_bind(&t->params, cfg, t->params_mem);
    clmr_train_params_bind(&t->grads, cfg, t->grads_mem);

    float *s = t->stats_mem, *a = t->acts_mem, *g = t->bwd_mem;
    for (int i = 0; i < e->n_layers; i++) {
        const clmr_layer_shape_t *l = &e->layer[i];
        size_t oc = (size_t)l->out_ch, conv = B * oc * l->conv_len;
        t->run_mean[i] = s, s += oc;
        t->run_var[i] = s, s += oc;
        for (size_t c = 0; c < oc; c++)
            t->run_var[i][c] = 1.0f;
        t->conv_out[i] = a, a += conv;
        t->act[i] = a, a += conv;
        if (l->pool) t->pool[i] = a, a += B * oc * l->out_len;
        t->bn_mean[i] = a, a += oc;
        t->bn_rstd[i] = a, a += oc;
    }
    t->h = t->act[e->n_layers - 1];
    t->dbuf[0] = g, g += max_act;
    t->dbuf[1] = g, g += max_act;
    t->dh = g, g += B * D;
    t->head_scratch = g;
    t->z = cfg->proj_out > 0 ? clmr_train_head_z(cfg, batch, g) : NULL;
    t->logits = T > 0 ? clmr_train_head_logits(cfg, batch, g) : NULL;
    return 0;
}

void clmr_ref_trainer_import(clmr_ref_trainer_t *t, const clmr_samplecnn_weights_t *w)
{
    const clmr_samplecnn_config_t *e = &t->cfg.enc;
    for (int i = 0; i < e->n_layers; i++) {
        const clmr_layer_shape_t *l = &e->layer[i];
        size_t oc = (size_t)l->out_ch;
        memcpy(t->params.conv_w[i], w->conv_w[i], sizeof(float) * oc * l->in_ch * l->kernel);
        memcpy(t->params.conv_b[i], w->conv_b[i], sizeof(float) * oc);
        memcpy(t->params.bn_gamma[i], w->bn_gamma[i], sizeof(float) * oc);
        memcpy(t->params.bn_beta[i], w->bn_beta[i], sizeof(float) * oc);
        memcpy(t->run_mean[i], w->bn_mean[i], sizeof(float) * oc);
        memcpy(t->run_var[i], w->bn_var[i], sizeof(float) * oc);
    }
    if (e->n_tags > 0 && w->fc_w && w->fc_b) {
        memcpy(t->params.fc_w, w->fc_w, sizeof(float) * e->n_tags * e->embed_dim);
        memcpy(t->params.fc_b, w->fc_b, sizeof(float) * e->n_tags);
    }
}

void clmr_ref_trainer_export(const clmr_ref_trainer_t *t, clmr_samplecnn_weights_t *w)
{
    const clmr_samplecnn_config_t *e = &t->cfg.enc;
    for (int i = 0; i < e->n_layers; i++) {
        const clmr_layer_shape_t *l = &e->layer[i];
        size_t oc = (size_t)l->out_ch;
        memcpy(w->conv_w[i], t->params.conv_w[i], sizeof(float) * oc * l->in_ch * l->kernel);
        memcpy(w->conv_b[i], t->params.conv_b[i], sizeof(float) * oc);
        memcpy(w->bn_gamma[i], t->params.bn_gamma[i], sizeof(float) * oc);
        memcpy(w->bn_beta[i], t->params.bn_beta[i], sizeof(float) * oc);
        memcpy(w->bn_mean[i], t->run_mean[i], sizeof(float) * oc);
        memcpy(w->bn_var[i], t->run_var[i], sizeof(float) * oc);
    }
    if (e->n_tags > 0 && w->fc_w && w->fc_b) {
        memcpy(w->fc_w, t->params.fc_w, sizeof(float) * e->n_tags * e->embed_dim);
        memcpy(w->fc_b, t->params.fc_b, sizeof(float) * e->n_tags);
    }
}

/* Training-mode encoder forward of x (B, chunk) into the kept activations; t->h is the result. */
static int encoder_forward(clmr_ref_trainer_t *t, const float *x)
{
    const clmr_samplecnn_config_t *e = &t->cfg.enc;
    const clmr_train_params_t *p = &t->params;
    int B = t->batch;
    const float *cur = x;
    for (int i = 0; i < e->n_layers; i++) {
        const clmr_layer_shape_t *l = &e->layer[i];
        clmr_ref_conv1d(t->conv_out[i], cur, p->conv_w[i], p->conv_b[i], B, l->in_ch, l->in_len,
                        l->out_ch, l->kernel, l->stride, l->pad);
        int err = clmr_ref_batchnorm_train_forward(
            t->act[i], t->bn_mean[i], t->bn_rstd[i], t->run_mean[i], t->run_var[i], t->conv_out[i],
            p->bn_gamma[i], p->bn_beta[i], t->bn_momentum, B, l->out_ch, l->conv_len);
        if (err) return err;
        clmr_ref_relu(t->act[i], t->act[i], (size_t)B * l->out_ch * l->conv_len);
        if (l->pool) {
            clmr_ref_maxpool1d(t->pool[i], t->act[i], B, l->out_ch, l->conv_len, l->pool);
            cur = t->pool[i];
        } else {
            cur = t->act[i];
        }
    }
    return 0;
}

/* Backward from dh (B, D) through every encoder layer into the gradient block. */
static void encoder_backward(clmr_ref_trainer_t *t, const float *x, const float *dh)
{
    const clmr_samplecnn_config_t *e = &t->cfg.enc;
    const clmr_train_params_t *p = &t->params;
    clmr_train_params_t *g = &t->grads;
    int B = t->batch, cur = 0;
    memcpy(t->dbuf[cur], dh, sizeof(float) * (size_t)B * e->embed_dim);
    /* invariant: dbuf[cur] holds the gradient of layer i's output (pooled when it pools) */
    for (int i = e->n_layers - 1; i >= 0; i--) {
        const clmr_layer_shape_t *l = &e->layer[i];
        size_t n = (size_t)B * l->out_ch * l->conv_len;
        float *dact = t->dbuf[cur];
        if (l->pool) {
            dact = t->dbuf[!cur];
            clmr_ref_maxpool1d_backward(dact, t->dbuf[cur], t->act[i], B, l->out_ch, l->conv_len,
                                        l->pool);
            cur = !cur;
        }
        clmr_ref_relu_backward(dact, dact, t->act[i], n);
        clmr_ref_batchnorm_backward(dact, g->bn_gamma[i], g->bn_beta[i], dact, t->conv_out[i],
                                    t->bn_mean[i], t->bn_rstd[i], p->bn_gamma[i], B, l->out_ch,
                                    l->conv_len);
        const float *inp = i == 0 ? x : (e->layer[i - 1].pool ? t->pool[i - 1] : t->act[i - 1]);
        /* layer 0's input is the audio: no gradient needed */
        clmr_ref_conv1d_backward(i == 0 ? NULL : t->dbuf[!cur], g->conv_w[i], g->conv_b[i], dact,
                                 inp, p->conv_w[i], B, l->in_ch, l->in_len, l->out_ch, l->kernel,
                                 l->stride, l->pad);
        cur = !cur;
    }
}

int clmr_ref_trainer_grads_contrastive(clmr_ref_trainer_t *t, const float *x, float tau,
                                       float *loss)
{
    const clmr_train_config_t *c = &t->cfg;
    if (c->proj_hidden <= 0 || t->batch % 2 || !(tau > 0)) return CLMR_EINVAL;
    memset(t->grads_mem, 0, sizeof(float) * t->n_params);
    int err = encoder_forward(t, x);
    if (!err)
        err = clmr_train_head_contrastive(loss, t->dh, t->h, &t->params, &t->grads, c, t->batch,
                                          tau, t->head_scratch);
    if (!err) encoder_backward(t, x, t->dh);
    return err;
}

int clmr_ref_trainer_grads_supervised(clmr_ref_trainer_t *t, const float *x, const float *y,
                                      int freeze_encoder, float *loss)
{
    const clmr_train_config_t *c = &t->cfg;
    if (c->enc.n_tags <= 0) return CLMR_EINVAL;
    memset(t->grads_mem, 0, sizeof(float) * t->n_params);
    int err = encoder_forward(t, x);
    if (!err)
        err = clmr_train_head_supervised(loss, freeze_encoder ? NULL : t->dh, t->h, y, &t->params,
                                         &t->grads, c, t->batch, t->head_scratch);
    if (!err && !freeze_encoder) encoder_backward(t, x, t->dh);
    return err;
}

void clmr_ref_trainer_update(clmr_ref_trainer_t *t, size_t first)
{
    if (first > t->n_params) first = t->n_params;
    size_t n = t->n_params - first;
    t->last_grad_norm = clmr_adam_clip_grad_norm(t->grads_mem + first, n, t->adam.clip_norm);
    t->step++;
    clmr_adam_update(t->params_mem + first, t->grads_mem + first, t->m_mem + first,
                     t->v_mem + first, n, t->step, &t->adam);
}

int clmr_ref_train_step_contrastive(clmr_ref_trainer_t *t, const float *x, float tau, float *loss)
{
    int err = clmr_ref_trainer_grads_contrastive(t, x, tau, loss);
    if (!err) clmr_ref_trainer_update(t, 0);
    return err;
}

int clmr_ref_train_step_supervised(clmr_ref_trainer_t *t, const float *x, const float *y,
                                   int freeze_encoder, float *loss)
{
    int err = clmr_ref_trainer_grads_supervised(t, x, y, freeze_encoder, loss);
    if (!err) clmr_ref_trainer_update(t, freeze_encoder ? clmr_train_head_offset(&t->cfg) : 0);
    return err;
}
