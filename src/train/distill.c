/* distill.c - tag-probability distillation term (see distill.h).
 *
 * DESIGN: logits first (one pass over W per row), then BCE with the numerically stable
 * max(z, 0) - z y + log1p(exp(-|z|)) form, then dh += weight (sigmoid(z) - y) W / (B T).
 */
#include "train/distill.h"

#include "clmr/error.h"

#include <math.h>
#include <stddef.h>

int clmr_distill_bce(float *loss, float *dh, const float *h, int B, int D, const float *W,
                     const float *b, int T, const float *teacher, float weight, float *logits)
{
    if (B < 1 || D < 1 || T < 1 || !(weight >= 0)) return CLMR_EINVAL;
    double total = 0;
    const double scale = 1.0 / ((double)B * T);
    for (int i = 0; i < B; i++) {
        const float *hi = h + (size_t)i * D;
        for (int t = 0; t < T; t++) {
            const float *wt = W + (size_t)t * D;
            double z = b ? b[t] : 0.0;
            for (int d = 0; d < D; d++)
                z += (double)wt[d] * hi[d];
            logits[(size_t)i * T + t] = (float)z;
            double y = teacher[(size_t)i * T + t];
            total += (z > 0 ? z : 0) - z * y + log1p(exp(-fabs(z)));
        }
    }
    for (int i = 0; i < B; i++) {
        float *dhi = dh + (size_t)i * D;
        for (int t = 0; t < T; t++) {
            double z = logits[(size_t)i * T + t];
            double g = weight * (1.0 / (1.0 + exp(-z)) - teacher[(size_t)i * T + t]) * scale;
            const float *wt = W + (size_t)t * D;
            for (int d = 0; d < D; d++)
                dhi[d] += (float)(g * wt[d]);
        }
    }
    *loss = (float)(weight * total * scale);
    return 0;
}

int clmr_distill_bce_mlp(float *loss, float *dh, const float *h, int B, int D, const float *W1,
                         const float *b1, int H, const float *W2, const float *b2, int T,
                         const float *teacher, float weight, float *hidden, float *logits)
{
    if (B < 1 || D < 1 || H < 1 || H > 4096 || T < 1 || !(weight >= 0)) return CLMR_EINVAL;
    /* forward: the frozen hidden layer, then the linear term on its activations */
    for (int i = 0; i < B; i++)
        for (int k = 0; k < H; k++) {
            const float *w = W1 + (size_t)k * D, *hi = h + (size_t)i * D;
            double a = b1 ? b1[k] : 0.0;
            for (int d = 0; d < D; d++)
                a += (double)w[d] * hi[d];
            hidden[(size_t)i * H + k] = a > 0 ? (float)a : 0.0f;
        }
    double total = 0;
    const double scale = 1.0 / ((double)B * T);
    double dr[4096];
    for (int i = 0; i < B; i++) {
        const float *ri = hidden + (size_t)i * H;
        for (int k = 0; k < H; k++)
            dr[k] = 0;
        for (int t = 0; t < T; t++) {
            const float *wt = W2 + (size_t)t * H;
            double z = b2 ? b2[t] : 0.0;
            for (int k = 0; k < H; k++)
                z += (double)wt[k] * ri[k];
            logits[(size_t)i * T + t] = (float)z;
            double y = teacher[(size_t)i * T + t];
            total += (z > 0 ? z : 0) - z * y + log1p(exp(-fabs(z)));
            double g = weight * (1.0 / (1.0 + exp(-z)) - y) * scale;
            for (int k = 0; k < H; k++)
                dr[k] += g * wt[k];
        }
        /* back through the ReLU (active where the activation is positive) and W1 */
        float *dhi = dh + (size_t)i * D;
        for (int k = 0; k < H; k++) {
            if (ri[k] <= 0) continue;
            const float *w = W1 + (size_t)k * D;
            for (int d = 0; d < D; d++)
                dhi[d] += (float)(dr[k] * w[d]);
        }
    }
    *loss = (float)(weight * total * scale);
    return 0;
}
