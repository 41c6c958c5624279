/* ntxent.c - NT-Xent loss (see ntxent.h).
 *
 * DESIGN: with u_i = z_i / |z_i|, s_ik = u_i . u_k / tau and p_ik the softmax of row i over k != i,
 * L = (1 / V) sum_i (log sum_{k != i} exp s_ik - s_i,pos(i)). Then dL/ds_ik = (p_ik - [k = pos(i)])
 * / V =: G_ik, du_i = (sum_k (G_ik + G_ki) u_k) / tau (s is symmetric), and the normalisation's
 * backward is dz_i = (du_i - u_i (u_i . du_i)) / |z_i|. Sums in double; V is small (<= a few
 * hundred) so the V x V loops are negligible next to the encoder.
 */
#include "train/ntxent.h"

#include "clmr/error.h"

#include <math.h>

#define NORM_FLOOR 1e-8

size_t clmr_ntxent_workspace_floats(int n_views, int dim)
{
    size_t v = (size_t)n_views;
    return v * (size_t)dim + v + v * v;
}

int clmr_ntxent_forward(float *loss, float *ws, const float *z, int n_views, int dim, float tau)
{
    int V = n_views, D = dim, N = n_views / 2;
    if (V < 2 || V % 2 || D < 1 || !(tau > 0)) return CLMR_EINVAL;
    float *u = ws, *norm = ws + (size_t)V * D, *prob = norm + V;
    for (int i = 0; i < V; i++) {
        double sq = 0;
        for (int d = 0; d < D; d++)
            sq += (double)z[(size_t)i * D + d] * z[(size_t)i * D + d];
        double nr = fmax(sqrt(sq), NORM_FLOOR);
        norm[i] = (float)nr;
        for (int d = 0; d < D; d++)
            u[(size_t)i * D + d] = (float)(z[(size_t)i * D + d] / nr);
    }
    double total = 0;
    for (int i = 0; i < V; i++) {
        float *p = prob + (size_t)i * V;
        double mx = -INFINITY;
        for (int k = 0; k < V; k++) {
            if (k == i) continue;
            double s = 0;
            for (int d = 0; d < D; d++)
                s += (double)u[(size_t)i * D + d] * u[(size_t)k * D + d];
            s /= tau;
            p[k] = (float)s; /* logits for now; replaced by the softmax below */
            if (s > mx) mx = s;
        }
        double se = 0;
        for (int k = 0; k < V; k++)
            if (k != i) se += exp((double)p[k] - mx);
        double lse = mx + log(se);
        int pos = (i + N) % V;
        total += lse - p[pos];
        for (int k = 0; k < V; k++)
            p[k] = k == i ? 0.0f : (float)exp((double)p[k] - lse);
    }
    *loss = (float)(total / V);
    return 0;
}

void clmr_ntxent_backward(float *dz, const float *ws, float dloss, int n_views, int dim, float tau)
{
    int V = n_views, D = dim, N = n_views / 2;
    const float *u = ws, *norm = ws + (size_t)V * D, *prob = norm + V;
    double g_scale = (double)dloss / V;
    for (int i = 0; i < V; i++) {
        /* du_i[d] = sum_k g_ik u_k[d] is recomputed per d (two passes: first for u_i . du_i, then
         * for dz) instead of stored: V^2 D is tiny and no D-sized scratch is needed. */
        double dot = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int d = 0; d < D; d++) {
                double du = 0;
                for (int k = 0; k < V; k++) {
                    if (k == i) continue;
                    double gik = prob[(size_t)i * V + k] - (k == (i + N) % V);
                    double gki = prob[(size_t)k * V + i] - (i == (k + N) % V);
                    du += (gik + gki) * u[(size_t)k * D + d];
                }
                du *= g_scale / tau;
                if (pass == 0) {
                    dot += du * u[(size_t)i * D + d];
                } else {
                    /* below the norm floor u = z / const: no projection term */
                    double proj = norm[i] <= (float)NORM_FLOOR ? 0.0 : u[(size_t)i * D + d] * dot;
                    dz[(size_t)i * D + d] = (float)((du - proj) / norm[i]);
                }
            }
    }
}
