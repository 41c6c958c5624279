/* samplecnn.h - SampleCNN shapes and parameters, shared by inference and training.
 *
 * DESIGN: shaped like llm.c. A config struct derived from tensor shapes; a weights struct of
 * pointers into one allocation, each commented with its shape. Layer 0 is Conv1d(k=3, stride=3,
 * pad=0)+BN+ReLU; layers 1..L-2 are Conv1d(k=3, stride=1, pad=1)+BN+ReLU+MaxPool(3,3); layer L-1
 * is Conv1d(k=3, pad=1)+BN+ReLU. The official model has L = 11 and a 59,049-sample chunk;
 * chunk_samples = 3^(L-1) for any depth.
 */
#ifndef CLMR_NN_SAMPLECNN_H
#define CLMR_NN_SAMPLECNN_H

#include <stddef.h>

#define CLMR_MAX_LAYERS 16
#define CLMR_BN_EPS 1e-5f
#define CLMR_HEAD_MAX_HIDDEN 4096

typedef struct {
    int in_ch, out_ch;
    int kernel, stride, pad;
    int pool;     /* max-pool size and stride, 0 = none */
    int in_len;   /* input length */
    int conv_len; /* length after the convolution */
    int out_len;  /* length after pooling (== conv_len without pool) */
} clmr_layer_shape_t;

typedef struct {
    int n_layers;
    int chunk_samples;
    int embed_dim; /* out_ch of the last layer (its out_len is 1) */
    int n_tags;    /* 0 = encoder only */
    /* 0: linear tag head fc (T, D). H > 0: MLP head Linear(D, H) + ReLU + Linear(H, T), the
     * shape of CLMR's published MLP evaluation head; needs n_tags > 0. */
    int head_hidden;
    clmr_layer_shape_t layer[CLMR_MAX_LAYERS];
} clmr_samplecnn_config_t;

typedef struct {
    float *conv_w[CLMR_MAX_LAYERS];   /* (OC, IC, K) */
    float *conv_b[CLMR_MAX_LAYERS];   /* (OC) */
    float *bn_gamma[CLMR_MAX_LAYERS]; /* (OC) */
    float *bn_beta[CLMR_MAX_LAYERS];  /* (OC) */
    float *bn_mean[CLMR_MAX_LAYERS];  /* (OC) running mean */
    float *bn_var[CLMR_MAX_LAYERS];   /* (OC) running variance */
    float *hid_w;                     /* (H, D) MLP head's first layer, or NULL */
    float *hid_b;                     /* (H) or NULL */
    float *fc_w;                      /* (T, D), (T, H) after an MLP's hidden layer, or NULL */
    float *fc_b;                      /* (T) or NULL */
} clmr_samplecnn_weights_t;

/* Fills cfg from per-layer channel widths: widths[0] = 1 (input), widths[i+1] = out channels of
 * layer i, for n_layers layers (3 <= n_layers <= CLMR_MAX_LAYERS), with a linear head
 * (head_hidden 0; set it afterwards for an MLP head). Returns 0 or CLMR_EINVAL. */
int clmr_samplecnn_config_init(clmr_samplecnn_config_t *cfg, int n_layers, const int *widths,
                               int n_tags);

/* The official CLMR widths: 11 layers, 128..512 channels. */
void clmr_samplecnn_config_official(clmr_samplecnn_config_t *cfg, int n_tags);

/* Number of floats all parameters take (conv w/b, 4 BN vectors per layer, the head). */
size_t clmr_samplecnn_param_count(const clmr_samplecnn_config_t *cfg);

/* Floats of the head alone (0 without one); the head is the last part of the parameter block. */
size_t clmr_samplecnn_head_param_count(const clmr_samplecnn_config_t *cfg);

/* Inputs of the final fc layer: head_hidden for an MLP head, else embed_dim. */
int clmr_samplecnn_fc_in(const clmr_samplecnn_config_t *cfg);

/* Points every field of w into mem (clmr_samplecnn_param_count floats, owned by the caller), in
 * the order: per layer conv_w, conv_b, bn_gamma, bn_beta, bn_mean, bn_var; then (MLP head only)
 * hid_w, hid_b; then fc_w, fc_b. */
void clmr_samplecnn_weights_bind(clmr_samplecnn_weights_t *w, const clmr_samplecnn_config_t *cfg,
                                 float *mem);

/* Multiply-accumulates per chunk of the encoder + head (for GFLOP/s figures). */
double clmr_samplecnn_macs(const clmr_samplecnn_config_t *cfg);

#endif
