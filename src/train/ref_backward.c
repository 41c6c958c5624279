/* ref_backward.c - naive layer backward passes and training-mode BatchNorm (see ref_backward.h).
 *
 * DESIGN: each gradient is written as the sum it is mathematically (one loop nest per output
 * element, double accumulator), not as the scatter a fast kernel would do, so the code can be
 * checked by reading it against the formula.
 */
#include "train/ref_backward.h"

#include "clmr/error.h"
#include "nn/samplecnn.h"

#include <math.h>
#include <string.h>

void clmr_ref_conv1d_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, int B, int IC, int IL, int OC,
                              int K, int stride, int pad)
{
    int OL = (IL + 2 * pad - K) / stride + 1;
    if (db)
        for (int oc = 0; oc < OC; oc++) {
            double acc = 0;
            for (int n = 0; n < B; n++)
                for (int ol = 0; ol < OL; ol++)
                    acc += dout[((size_t)n * OC + oc) * OL + ol];
            db[oc] += (float)acc;
        }
    if (dw)
        for (int oc = 0; oc < OC; oc++)
            for (int ic = 0; ic < IC; ic++)
                for (int k = 0; k < K; k++) {
                    double acc = 0;
                    for (int n = 0; n < B; n++) {
                        const float *g = dout + ((size_t)n * OC + oc) * OL;
                        const float *x = inp + ((size_t)n * IC + ic) * IL;
                        for (int ol = 0; ol < OL; ol++) {
                            int il = ol * stride - pad + k;
                            if (il >= 0 && il < IL) acc += (double)g[ol] * x[il];
                        }
                    }
                    dw[((size_t)oc * IC + ic) * K + k] += (float)acc;
                }
    if (dinp)
        for (int n = 0; n < B; n++)
            for (int ic = 0; ic < IC; ic++)
                for (int il = 0; il < IL; il++) {
                    /* out[ol] reads in[il] through tap k when ol * stride - pad + k == il. */
                    double acc = 0;
                    for (int oc = 0; oc < OC; oc++)
                        for (int k = 0; k < K; k++) {
                            int num = il + pad - k;
                            if (num < 0 || num % stride) continue;
                            int ol = num / stride;
                            if (ol >= OL) continue;
                            acc += (double)dout[((size_t)n * OC + oc) * OL + ol] *
                                   w[((size_t)oc * IC + ic) * K + k];
                        }
                    dinp[((size_t)n * IC + ic) * IL + il] = (float)acc;
                }
}

int clmr_ref_batchnorm_train_forward(float *out, float *mean, float *rstd, float *run_mean,
                                     float *run_var, const float *inp, const float *gamma,
                                     const float *beta, float momentum, int B, int C, int L)
{
    size_t cnt = (size_t)B * L;
    if (cnt < 2) return CLMR_EINVAL;
    for (int c = 0; c < C; c++) {
        double sum = 0, sq = 0;
        for (int n = 0; n < B; n++) {
            const float *x = inp + ((size_t)n * C + c) * L;
            for (int l = 0; l < L; l++)
                sum += x[l];
        }
        double mu = sum / (double)cnt;
        /* Two passes: the variance of (x - mean), not E[x^2] - mean^2, which cancels badly. */
        for (int n = 0; n < B; n++) {
            const float *x = inp + ((size_t)n * C + c) * L;
            for (int l = 0; l < L; l++)
                sq += ((double)x[l] - mu) * ((double)x[l] - mu);
        }
        double var = sq / (double)cnt;
        double rs = 1.0 / sqrt(var + (double)CLMR_BN_EPS);
        mean[c] = (float)mu;
        rstd[c] = (float)rs;
        for (int n = 0; n < B; n++) {
            size_t off = ((size_t)n * C + c) * L;
            for (int l = 0; l < L; l++)
                out[off + l] = (float)(((double)inp[off + l] - mu) * rs * gamma[c] + beta[c]);
        }
        if (run_mean && run_var) {
            double unbiased = sq / (double)(cnt - 1);
            run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + momentum * mu);
            run_var[c] = (float)((1.0 - momentum) * run_var[c] + momentum * unbiased);
        }
    }
    return 0;
}

void clmr_ref_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                 const float *inp, const float *mean, const float *rstd,
                                 const float *gamma, int B, int C, int L)
{
    double cnt = (double)B * L;
    for (int c = 0; c < C; c++) {
        /* xhat = (x - mean) rstd; y = gamma xhat + beta.
         * dx = gamma rstd / n * (n dy - sum(dy) - xhat sum(dy xhat)). */
        double sdy = 0, sdyx = 0;
        for (int n = 0; n < B; n++) {
            size_t off = ((size_t)n * C + c) * L;
            for (int l = 0; l < L; l++) {
                double xh = ((double)inp[off + l] - mean[c]) * rstd[c];
                sdy += dout[off + l];
                sdyx += dout[off + l] * xh;
            }
        }
        if (dbeta) dbeta[c] += (float)sdy;
        if (dgamma) dgamma[c] += (float)sdyx;
        if (!dinp) continue;
        double scale = (double)gamma[c] * rstd[c] / cnt;
        for (int n = 0; n < B; n++) {
            size_t off = ((size_t)n * C + c) * L;
            for (int l = 0; l < L; l++) {
                double xh = ((double)inp[off + l] - mean[c]) * rstd[c];
                dinp[off + l] = (float)(scale * (cnt * dout[off + l] - sdy - xh * sdyx));
            }
        }
    }
}

void clmr_ref_relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

void clmr_ref_maxpool1d_backward(float *dinp, const float *dout, const float *inp, int B, int C,
                                 int L, int P)
{
    int OL = L / P;
    memset(dinp, 0, sizeof(float) * (size_t)B * C * L);
    for (size_t r = 0; r < (size_t)B * C; r++)
        for (int o = 0; o < OL; o++) {
            size_t base = r * L + (size_t)o * P;
            int arg = 0;
            for (int p = 1; p < P; p++)
                if (inp[base + p] > inp[base + arg]) arg = p; /* strict: first max wins */
            dinp[base + arg] += dout[r * OL + o];
        }
}

void clmr_ref_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *w, int B, int D, int T)
{
    if (dinp)
        for (int n = 0; n < B; n++)
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int t = 0; t < T; t++)
                    acc += (double)dout[(size_t)n * T + t] * w[(size_t)t * D + d];
                dinp[(size_t)n * D + d] = (float)acc;
            }
    if (dw)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++) {
                double acc = 0;
                for (int n = 0; n < B; n++)
                    acc += (double)dout[(size_t)n * T + t] * inp[(size_t)n * D + d];
                dw[(size_t)t * D + d] += (float)acc;
            }
    if (db)
        for (int t = 0; t < T; t++) {
            double acc = 0;
            for (int n = 0; n < B; n++)
                acc += dout[(size_t)n * T + t];
            db[t] += (float)acc;
        }
}

double clmr_ref_bce_logits(float *dlogits, const float *logits, const float *targets, size_t n)
{
    double loss = 0;
    for (size_t i = 0; i < n; i++) {
        double x = logits[i], y = targets[i];
        loss += fmax(x, 0.0) - x * y + log1p(exp(-fabs(x)));
        if (dlogits) {
            /* sigmoid written so exp never overflows */
            double s = x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
            dlogits[i] = (float)((s - y) / (double)n);
        }
    }
    return n ? loss / (double)n : 0.0;
}
