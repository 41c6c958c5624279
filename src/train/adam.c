/* adam.c - Adam and gradient clipping (see adam.h).
 *
 * DESIGN: the hyper-parameters are doubles (as Python floats are) and are rounded to float at the
 * same points PyTorch rounds its scalars, so a C step and a torch step agree to rounding.
 */
#include "train/adam.h"

#include <math.h>

clmr_adam_params_t clmr_adam_default_params(void)
{
    return (clmr_adam_params_t){
        .lr = 3e-4, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0, .clip_norm = 0};
}

double clmr_adam_clip_grad_norm(float *grad, size_t n, double max_norm)
{
    double sq = 0;
    for (size_t i = 0; i < n; i++)
        sq += (double)grad[i] * grad[i];
    double norm = sqrt(sq);
    if (max_norm > 0) {
        double coef = max_norm / (norm + 1e-6);
        if (coef < 1.0) {
            float c = (float)coef;
            for (size_t i = 0; i < n; i++)
                grad[i] *= c;
        }
    }
    return norm;
}

void clmr_adam_update(float *param, const float *grad, float *m, float *v, size_t n, long step,
                      const clmr_adam_params_t *p)
{
    float b1 = (float)p->beta1, b2 = (float)p->beta2;
    float a1 = (float)(1.0 - p->beta1), a2 = (float)(1.0 - p->beta2);
    float wd = (float)p->weight_decay, eps = (float)p->eps;
    double bc1 = 1.0 - pow(p->beta1, (double)step);
    double bc2 = 1.0 - pow(p->beta2, (double)step);
    float step_size = (float)(p->lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        if (wd != 0.0f) g = g + wd * param[i];
        m[i] = m[i] * b1 + a1 * g;
        v[i] = v[i] * b2 + a2 * g * g;
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        param[i] = param[i] - step_size * (m[i] / denom);
    }
}
