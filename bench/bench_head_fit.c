/* bench_head_fit.c - throughput of the linear-evaluation loop (clmr_head_fit) at the official
 * size: D = 512, T = 50, batch 256, 10% validation. Prints training chunks per second per epoch
 * (including the validation pass), for comparison with bench/bench_head_torch.py in the same run.
 *
 * Usage: bench_head_fit [CHUNKS [EPOCHS [THREADS]]]   (default 20000 chunks, 3 epochs, 1 thread;
 * 10 chunks per file)
 */
#include "train/head_fit.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 20000, epochs = argc > 2 ? atoi(argv[2]) : 3;
    enum { D = 512, T = 50, PER_FILE = 10 };
    int files = n / PER_FILE;
    float *x = malloc((size_t)n * D * sizeof(float)), *w = malloc((size_t)T * D * sizeof(float));
    float b[T];
    const float **emb = malloc((size_t)files * sizeof(float *));
    int *nch = malloc((size_t)files * sizeof(int));
    uint8_t *y = malloc((size_t)files * T);
    unsigned s = 1;
    for (size_t i = 0; i < (size_t)n * D; i++)
        x[i] = (float)((s = s * 1103515245u + 12345u) >> 16) / 65536.0f;
    for (int f = 0; f < files; f++) {
        emb[f] = x + (size_t)f * PER_FILE * D, nch[f] = PER_FILE;
        for (int t = 0; t < T; t++)
            y[f * T + t] = emb[f][t] > 0.7f;
    }
    clmr_head_fit_params_t p = clmr_head_fit_default_params();
    p.epochs = epochs, p.patience = epochs, p.threads = argc > 3 ? atoi(argv[3]) : 1;
    clmr_head_fit_result_t r;
    double t0 = now();
    int rc = clmr_head_fit(w, b, &r, emb, nch, files, D, y, T, &p, NULL, NULL, NULL);
    double dt = now() - t0;
    printf("clmr_head_fit (%d threads): %d chunks (%zu train), %d epochs, %.3f s/epoch, %.0f train "
           "chunks/s, "
           "val loss %.4f, rc %d\n",
           p.threads, n, r.train_chunks, r.epochs_run, dt / r.epochs_run,
           (double)r.train_chunks * r.epochs_run / dt, r.best_val_loss, rc);
    free(x), free(w), free(emb), free(nch), free(y);
    return rc ? 1 : 0;
}
