/* bench_train_step.c - throughput of the oneDNN contrastive training step on the official
 * SampleCNN (11 layers, 128..512 channels) + projector 512->512->64.
 *
 * DESIGN: one trainer built for B views, one warm-up step (primitive first-touch), then timed
 * steps on fixed pseudo-random audio; prints chunks/s, ms per step split into encoder
 * forward, head and encoder backward, and peak resident memory. Compare with
 * bench/bench_train_step.py (PyTorch) run right after it: only same-run ratios mean anything on a
 * shared machine. Usage: bench_train_step [VIEWS=8] [STEPS=3] [fp32|bf16|auto (default fp32)]
 */
#include "train/samplecnn_train_ref.h"
#include "train/train_dnnl.h"
#include "train/train_head.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int B = argc > 1 ? atoi(argv[1]) : 8, steps = argc > 2 ? atoi(argv[2]) : 3;
    clmr_train_precision_t prec = CLMR_TRAIN_PREC_FP32;
    if (argc > 3 && clmr_train_precision_parse(argv[3], &prec)) {
        fprintf(stderr, "bench_train_step: precision must be fp32, bf16 or auto\n");
        return 2;
    }
    static const int widths[12] = {1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512};
    clmr_train_config_t cfg;
    if (B < 2 || B % 2 || steps < 1 || clmr_train_config_init(&cfg, 11, widths, 512, 64, 0)) {
        fprintf(stderr, "usage: bench_train_step [EVEN_VIEWS>=2] [STEPS>=1]\n");
        return 2;
    }
    size_t n = clmr_train_param_count(&cfg), nst = 0;
    for (int i = 0; i < 11; i++)
        nst += 2 * (size_t)widths[i + 1];
    float *mem = calloc(4 * n + nst, sizeof(float));
    float *x = malloc(sizeof(float) * (size_t)B * cfg.enc.chunk_samples);
    if (!mem || !x) return 1;
    clmr_train_blocks_t blk = {mem, mem + n, mem + 2 * n, mem + 3 * n, {0}, {0}};
    clmr_train_params_t p;
    clmr_train_params_bind(&p, &cfg, blk.params);
    unsigned s = 1;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        blk.params[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.1f;
    }
    float *st = mem + 4 * n;
    for (int i = 0; i < 11; i++) {
        blk.run_mean[i] = st, st += widths[i + 1];
        blk.run_var[i] = st, st += widths[i + 1];
        for (int c = 0; c < widths[i + 1]; c++)
            blk.run_var[i][c] = 1, p.bn_gamma[i][c] = 1;
    }
    for (size_t i = 0; i < (size_t)B * cfg.enc.chunk_samples; i++)
        x[i] = 0.5f * sinf(0.01f * (float)(i % 100003) * (1.0f + (float)(i % 7)));
    clmr_train_dnnl_t *t = NULL;
    char *msg = NULL;
    if (clmr_train_dnnl_open_prec(&t, &cfg, B, &blk, prec, &msg)) {
        fprintf(stderr, "open: %s\n", msg ? msg : "?");
        return 1;
    }
    clmr_adam_params_t ap = clmr_adam_default_params();
    float loss = 0;
    clmr_train_dnnl_step_contrastive(t, x, 0.5f, &ap, 1, &loss, NULL); /* warm-up */
    double t_fwd = 0, t_bwd = 0, t_head = 0, t0 = now();
    float *dh = malloc(sizeof(float) * (size_t)B * 512);
    float *scratch = malloc(sizeof(float) * clmr_train_head_scratch_floats(&cfg, B));
    clmr_train_params_t g;
    clmr_train_params_bind(&g, &cfg, blk.grads);
    for (int k = 0; k < steps; k++) { /* the step's parts timed one by one */
        const float *h;
        double a = now();
        clmr_train_dnnl_forward(t, x, 0.1f, &h);
        double b = now();
        clmr_train_head_contrastive(&loss, dh, h, &p, &g, &cfg, B, 0.5f, scratch);
        double c = now();
        clmr_train_dnnl_backward(t, dh);
        double d = now();
        clmr_adam_update(blk.params, blk.grads, blk.m, blk.v, n, k + 2, &ap);
        t_fwd += b - a, t_head += c - b, t_bwd += d - c;
    }
    double total = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("oneDNN %s: views %d steps %d: %.2f chunks/s (%.0f ms/step: fwd %.0f, head %.0f, bwd "
           "%.0f); "
           "loss %.4f; peak RSS %.0f MB\n",
           clmr_train_precision_name(clmr_train_dnnl_precision(t)), B, steps, B * steps / total,
           1e3 * total / steps, 1e3 * t_fwd / steps, 1e3 * t_head / steps, 1e3 * t_bwd / steps,
           loss, ru.ru_maxrss / 1024.0);
    clmr_train_dnnl_close(&t);
    free(mem), free(x), free(dh), free(scratch);
    return 0;
}
