/* adam.h - the Adam optimiser and global-norm gradient clipping over one contiguous block.
 *
 * DESIGN: parameters, gradients, first and second moments are four contiguous float blocks of the
 * same length (llm.c), so one loop updates a whole model. The arithmetic mirrors PyTorch 1.13's
 * single-tensor Adam in float32 with the same operation order, so a step matches torch to a few
 * ulps. weight_decay is PyTorch Adam's (coupled L2: wd * param is added to the gradient before the
 * moments), not AdamW's decoupled decay; we chose it because the CLMR reference optimiser is
 * torch.optim.Adam. Clipping is PyTorch's clip_grad_norm_: one L2 norm over the whole gradient,
 * scaled by max_norm / (norm + 1e-6) when that is below 1.
 */
#ifndef CLMR_TRAIN_ADAM_H
#define CLMR_TRAIN_ADAM_H

#include <stddef.h>

typedef struct {
    double lr;           /* 3e-4 */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8 */
    double weight_decay; /* 0 = none; L2 added to the gradient (PyTorch Adam) */
    double clip_norm;    /* <= 0 = no clipping; else the max global gradient L2 norm */
} clmr_adam_params_t;

/* The CLMR pretraining defaults above (no weight decay, no clipping). */
clmr_adam_params_t clmr_adam_default_params(void);

/* Returns the global L2 norm of grad (n floats, double accumulation) and, when max_norm > 0 and
 * the norm exceeds it, scales grad in place by max_norm / (norm + 1e-6). */
double clmr_adam_clip_grad_norm(float *grad, size_t n, double max_norm);

/* One Adam update of param (n floats) from grad, with moments m and v (n floats each, zero before
 * the first step, owned by the caller). step is the 1-based index of this update (bias correction).
 * Does NOT clip; call clmr_adam_clip_grad_norm first when p->clip_norm > 0. grad is not modified.
 * Thread-safe on distinct blocks. */
void clmr_adam_update(float *param, const float *grad, float *m, float *v, size_t n, long step,
                      const clmr_adam_params_t *p);

#endif
