/* ref_ops.c - naive SampleCNN layers (see ref_ops.h). */
#include "nn/ref_ops.h"

#include "clmr/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void clmr_ref_conv1d(float *out, const float *in, const float *w, const float *b, int B, int IC,
                     int IL, int OC, int K, int stride, int pad)
{
    int OL = (IL + 2 * pad - K) / stride + 1;
    for (int n = 0; n < B; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int ol = 0; ol < OL; ol++) {
                double acc = b ? b[oc] : 0.0;
                for (int ic = 0; ic < IC; ic++) {
                    const float *xi = in + ((size_t)n * IC + ic) * IL;
                    const float *wk = w + ((size_t)oc * IC + ic) * K;
                    for (int k = 0; k < K; k++) {
                        int il = ol * stride - pad + k;
                        if (il >= 0 && il < IL) acc += (double)wk[k] * xi[il];
                    }
                }
                out[((size_t)n * OC + oc) * OL + ol] = (float)acc;
            }
}

void clmr_ref_batchnorm(float *out, const float *in, const float *gamma, const float *beta,
                        const float *mean, const float *var, int B, int C, int L)
{
    for (int n = 0; n < B; n++)
        for (int c = 0; c < C; c++) {
            float inv = 1.0f / sqrtf(var[c] + CLMR_BN_EPS);
            size_t off = ((size_t)n * C + c) * L;
            for (int l = 0; l < L; l++)
                out[off + l] = (in[off + l] - mean[c]) * inv * gamma[c] + beta[c];
        }
}

void clmr_ref_relu(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

void clmr_ref_maxpool1d(float *out, const float *in, int B, int C, int L, int P)
{
    int OL = L / P;
    for (size_t r = 0; r < (size_t)B * C; r++)
        for (int o = 0; o < OL; o++) {
            float m = in[r * L + (size_t)o * P];
            for (int p = 1; p < P; p++) {
                float v = in[r * L + (size_t)o * P + p];
                if (v > m) m = v;
            }
            out[r * OL + o] = m;
        }
}

void clmr_ref_linear(float *out, const float *in, const float *w, const float *b, int B, int D,
                     int T)
{
    for (int n = 0; n < B; n++)
        for (int t = 0; t < T; t++) {
            double acc = b ? b[t] : 0.0;
            for (int d = 0; d < D; d++)
                acc += (double)w[(size_t)t * D + d] * in[(size_t)n * D + d];
            out[(size_t)n * T + t] = (float)acc;
        }
}

void clmr_ref_sigmoid(float *out, const float *in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = 1.0f / (1.0f + expf(-in[i]));
}

int clmr_ref_samplecnn_forward(const clmr_samplecnn_config_t *cfg,
                               const clmr_samplecnn_weights_t *w, const float *x, int B, float *emb,
                               float *logits)
{
    size_t max_act = 0;
    for (int i = 0; i < cfg->n_layers; i++) {
        size_t a = (size_t)cfg->layer[i].out_ch * cfg->layer[i].conv_len;
        if (a > max_act) max_act = a;
    }
    float *buf_a = malloc(sizeof(float) * max_act * B);
    float *buf_b = malloc(sizeof(float) * max_act * B);
    if (!buf_a || !buf_b) {
        free(buf_a);
        free(buf_b);
        return CLMR_ENOMEM;
    }
    const float *cur = x;
    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        float *conv = (cur == buf_a) ? buf_b : buf_a;
        clmr_ref_conv1d(conv, cur, w->conv_w[i], w->conv_b[i], B, l->in_ch, l->in_len, l->out_ch,
                        l->kernel, l->stride, l->pad);
        size_t n = (size_t)B * l->out_ch * l->conv_len;
        clmr_ref_batchnorm(conv, conv, w->bn_gamma[i], w->bn_beta[i], w->bn_mean[i], w->bn_var[i],
                           B, l->out_ch, l->conv_len);
        clmr_ref_relu(conv, conv, n);
        if (l->pool) {
            float *pooled = (conv == buf_a) ? buf_b : buf_a;
            clmr_ref_maxpool1d(pooled, conv, B, l->out_ch, l->conv_len, l->pool);
            cur = pooled;
        } else {
            cur = conv;
        }
    }
    memcpy(emb, cur, sizeof(float) * (size_t)B * cfg->embed_dim);
    free(buf_a);
    free(buf_b);
    if (cfg->n_tags > 0 && logits) return clmr_ref_head_logits(cfg, w, emb, B, logits);
    return 0;
}

int clmr_ref_head_logits(const clmr_samplecnn_config_t *cfg, const clmr_samplecnn_weights_t *w,
                         const float *emb, int B, float *logits)
{
    const int D = cfg->embed_dim, H = cfg->head_hidden, T = cfg->n_tags;
    if (H <= 0) {
        clmr_ref_linear(logits, emb, w->fc_w, w->fc_b, B, D, T);
        return 0;
    }
    float *hid = malloc(sizeof(float) * (size_t)B * H);
    if (!hid) return CLMR_ENOMEM;
    clmr_ref_linear(hid, emb, w->hid_w, w->hid_b, B, D, H);
    clmr_ref_relu(hid, hid, (size_t)B * H);
    clmr_ref_linear(logits, hid, w->fc_w, w->fc_b, B, H, T);
    free(hid);
    return 0;
}
