/* model.c - clmr_model_t lifetime, accessors and BatchNorm folding. Loading is in model_load.c. */
#include "nn/model_internal.h"

#include "clmr/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int clmr__model_alloc(clmr_model_t **out, const clmr_samplecnn_config_t *cfg)
{
    *out = NULL;
    clmr_model_t *m = calloc(1, sizeof(*m));
    if (!m) return CLMR_ENOMEM;
    m->cfg = *cfg;
    m->sample_rate = 22050;
    size_t n = clmr_samplecnn_param_count(cfg);
    size_t nfold = 0;
    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        nfold += (size_t)l->out_ch * l->in_ch * l->kernel + (size_t)l->out_ch;
    }
    m->params = calloc(n, sizeof(float));
    m->fold_mem = calloc(nfold, sizeof(float));
    if (!m->params || !m->fold_mem) {
        clmr_model_close(&m);
        return CLMR_ENOMEM;
    }
    clmr_samplecnn_weights_bind(&m->w, cfg, m->params);
    float *p = m->fold_mem;
    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        m->fold_w[i] = p, p += (size_t)l->out_ch * l->in_ch * l->kernel;
        m->fold_b[i] = p, p += (size_t)l->out_ch;
    }
    *out = m;
    return 0;
}

int clmr__model_copy_head(clmr_model_t *dst, const clmr_model_t *src)
{
    const clmr_samplecnn_config_t *a = &dst->cfg, *b = &src->cfg;
    if (a->embed_dim != b->embed_dim || a->n_tags != b->n_tags ||
        a->head_hidden != b->head_hidden || b->n_tags <= 0)
        return CLMR_EINVAL;
    /* the head is the tail of the parameter block (clmr_samplecnn_weights_bind) */
    size_t nh = clmr_samplecnn_head_param_count(b);
    memcpy(dst->params + clmr_samplecnn_param_count(a) - nh,
           src->params + clmr_samplecnn_param_count(b) - nh, nh * sizeof(float));
    return 0;
}

void clmr__model_fold_bn(clmr_model_t *m)
{
    for (int i = 0; i < m->cfg.n_layers; i++) {
        const clmr_layer_shape_t *l = &m->cfg.layer[i];
        size_t per_oc = (size_t)l->in_ch * l->kernel;
        for (int oc = 0; oc < l->out_ch; oc++) {
            double s = m->w.bn_gamma[i][oc] / sqrt((double)m->w.bn_var[i][oc] + CLMR_BN_EPS);
            for (size_t j = 0; j < per_oc; j++)
                m->fold_w[i][oc * per_oc + j] = (float)(m->w.conv_w[i][oc * per_oc + j] * s);
            m->fold_b[i][oc] =
                (float)((m->w.conv_b[i][oc] - m->w.bn_mean[i][oc]) * s + m->w.bn_beta[i][oc]);
        }
    }
}

void clmr_model_close(clmr_model_t **mp)
{
    if (!mp || !*mp) return;
    clmr_model_t *m = *mp;
    free(m->params);
    free(m->fold_mem);
    free(m->name);
    if (m->tags)
        for (int i = 0; i < m->cfg.n_tags; i++)
            free(m->tags[i]);
    free(m->tags);
    for (int i = 0; i < m->n_meta; i++) {
        free(m->meta_key[i]);
        free(m->meta_val[i]);
    }
    free(m);
    *mp = NULL;
}

const char *clmr_model_name(const clmr_model_t *m)
{
    return m->name ? m->name : "";
}
const char *clmr_model_id(const clmr_model_t *m)
{
    return m->id;
}
int clmr_model_sample_rate(const clmr_model_t *m)
{
    return m->sample_rate;
}
int clmr_model_chunk_samples(const clmr_model_t *m)
{
    return m->cfg.chunk_samples;
}
int clmr_model_embed_dim(const clmr_model_t *m)
{
    return m->cfg.embed_dim;
}
int clmr_model_n_tags(const clmr_model_t *m)
{
    return m->cfg.n_tags;
}
const char *clmr_model_tag(const clmr_model_t *m, int i)
{
    if (i < 0 || i >= m->cfg.n_tags || !m->tags) return NULL;
    return m->tags[i];
}
const char *clmr_model_meta(const clmr_model_t *m, const char *key)
{
    for (int i = 0; i < m->n_meta; i++)
        if (strcmp(m->meta_key[i], key) == 0) return m->meta_val[i];
    return NULL;
}
