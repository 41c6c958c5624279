/* bench_train_mem.c - where the oneDNN trainer's memory goes, per layer, and how that compares
 * with the peak resident memory of real steps.
 *
 * Usage: bench_train_mem [VIEWS=96] [STEPS=0] [fp32|bf16 (default fp32)]
 * Opens the trainer for the official SampleCNN + projector 512-512-64 at VIEWS chunks and prints
 * clmr_train_dnnl_fprint_memory's table (bytes allocated per layer and kind). With STEPS > 0 it
 * then runs that many contrastive steps and prints the peak RSS next to the allocated total.
 *
 * DESIGN: opening allocates without touching, so STEPS=0 costs no resident memory even at 96
 * views and shows the plan in a second; the steps show what the plan leaves out (oneDNN's
 * primitives and code, libc, the input and the caller's parameter blocks).
 */
#include "train/train_dnnl.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

int main(int argc, char **argv)
{
    int B = argc > 1 ? atoi(argv[1]) : 96, steps = argc > 2 ? atoi(argv[2]) : 0;
    clmr_train_precision_t prec = CLMR_TRAIN_PREC_FP32;
    if (argc > 3 && clmr_train_precision_parse(argv[3], &prec)) {
        fprintf(stderr, "bench_train_mem: precision must be fp32, bf16 or auto\n");
        return 2;
    }
    static const int widths[12] = {1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512};
    clmr_train_config_t cfg;
    if (B < 2 || B % 2 || steps < 0 || clmr_train_config_init(&cfg, 11, widths, 512, 64, 0)) {
        fprintf(stderr, "usage: bench_train_mem [EVEN_VIEWS>=2] [STEPS>=0]\n");
        return 2;
    }
    size_t n = clmr_train_param_count(&cfg), nst = 0;
    for (int i = 0; i < 11; i++)
        nst += 2 * (size_t)widths[i + 1];
    float *mem = calloc(4 * n + nst, sizeof(float));
    if (!mem) return 1;
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
    clmr_train_dnnl_t *t = NULL;
    char *msg = NULL;
    if (clmr_train_dnnl_open_prec(&t, &cfg, B, &blk, prec, &msg)) {
        fprintf(stderr, "open: %s\n", msg ? msg : "?");
        return 1;
    }
    clmr_train_dnnl_fprint_memory(t, stdout);
    if (steps > 0) {
        size_t nx = (size_t)B * cfg.enc.chunk_samples;
        float *x = malloc(sizeof(float) * nx);
        if (!x) return 1;
        for (size_t i = 0; i < nx; i++)
            x[i] = 0.5f * (float)((i * 2654435761u) % 1000) / 1000.0f - 0.25f;
        clmr_adam_params_t ap = clmr_adam_default_params();
        float loss = 0;
        for (int k = 1; k <= steps; k++)
            if (clmr_train_dnnl_step_contrastive(t, x, 0.5f, &ap, k, &loss, NULL)) return 1;
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("after %d steps: loss %.5f, peak RSS %.0f MiB, input %.0f MiB\n", steps,
               (double)loss, ru.ru_maxrss / 1024.0, (double)(sizeof(float) * nx) / 1048576.0);
        free(x);
    }
    clmr_train_dnnl_close(&t);
    free(mem);
    return 0;
}
