/* samplecnn.c - SampleCNN shape arithmetic and parameter layout. */
#include "nn/samplecnn.h"

#include "clmr/error.h"

int clmr_samplecnn_config_init(clmr_samplecnn_config_t *cfg, int n_layers, const int *widths,
                               int n_tags)
{
    if (n_layers < 3 || n_layers > CLMR_MAX_LAYERS || widths[0] != 1 || n_tags < 0)
        return CLMR_EINVAL;
    int len = 1;
    for (int i = 0; i < n_layers - 1; i++)
        len *= 3;
    cfg->n_layers = n_layers;
    cfg->chunk_samples = len;
    cfg->n_tags = n_tags;
    cfg->head_hidden = 0;
    for (int i = 0; i < n_layers; i++) {
        clmr_layer_shape_t *l = &cfg->layer[i];
        if (widths[i + 1] < 1) return CLMR_EINVAL;
        l->in_ch = widths[i];
        l->out_ch = widths[i + 1];
        l->kernel = 3;
        l->in_len = len;
        if (i == 0) {
            l->stride = 3;
            l->pad = 0;
            l->pool = 0;
        } else {
            l->stride = 1;
            l->pad = 1;
            l->pool = (i == n_layers - 1) ? 0 : 3;
        }
        l->conv_len = (len + 2 * l->pad - l->kernel) / l->stride + 1;
        l->out_len = l->pool ? l->conv_len / l->pool : l->conv_len;
        len = l->out_len;
    }
    if (len != 1) return CLMR_EINVAL;
    cfg->embed_dim = cfg->layer[n_layers - 1].out_ch;
    return 0;
}

void clmr_samplecnn_config_official(clmr_samplecnn_config_t *cfg, int n_tags)
{
    static const int widths[12] = {1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512};
    (void)clmr_samplecnn_config_init(cfg, 11, widths, n_tags);
}

size_t clmr_samplecnn_param_count(const clmr_samplecnn_config_t *cfg)
{
    size_t n = 0;
    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        n += (size_t)l->out_ch * l->in_ch * l->kernel + 5 * (size_t)l->out_ch;
    }
    return n + clmr_samplecnn_head_param_count(cfg);
}

int clmr_samplecnn_fc_in(const clmr_samplecnn_config_t *cfg)
{
    return cfg->head_hidden > 0 ? cfg->head_hidden : cfg->embed_dim;
}

size_t clmr_samplecnn_head_param_count(const clmr_samplecnn_config_t *cfg)
{
    if (cfg->n_tags <= 0) return 0;
    size_t n = (size_t)cfg->n_tags * clmr_samplecnn_fc_in(cfg) + cfg->n_tags;
    if (cfg->head_hidden > 0) n += (size_t)cfg->head_hidden * cfg->embed_dim + cfg->head_hidden;
    return n;
}

void clmr_samplecnn_weights_bind(clmr_samplecnn_weights_t *w, const clmr_samplecnn_config_t *cfg,
                                 float *mem)
{
    float *p = mem;
    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        size_t oc = (size_t)l->out_ch;
        w->conv_w[i] = p, p += oc * l->in_ch * l->kernel;
        w->conv_b[i] = p, p += oc;
        w->bn_gamma[i] = p, p += oc;
        w->bn_beta[i] = p, p += oc;
        w->bn_mean[i] = p, p += oc;
        w->bn_var[i] = p, p += oc;
    }
    w->hid_w = w->hid_b = w->fc_w = w->fc_b = NULL;
    if (cfg->n_tags > 0) {
        if (cfg->head_hidden > 0) {
            w->hid_w = p, p += (size_t)cfg->head_hidden * cfg->embed_dim;
            w->hid_b = p, p += (size_t)cfg->head_hidden;
        }
        w->fc_w = p, p += (size_t)cfg->n_tags * clmr_samplecnn_fc_in(cfg);
        w->fc_b = p;
    }
}

double clmr_samplecnn_macs(const clmr_samplecnn_config_t *cfg)
{
    double macs = 0;
    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        macs += (double)l->conv_len * l->out_ch * l->in_ch * l->kernel;
    }
    if (cfg->n_tags > 0 && cfg->head_hidden > 0) macs += (double)cfg->embed_dim * cfg->head_hidden;
    return macs + (double)clmr_samplecnn_fc_in(cfg) * cfg->n_tags;
}
