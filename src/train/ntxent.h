/* ntxent.h - the NT-Xent contrastive loss of SimCLR/CLMR, forward and backward.
 *
 * DESIGN: V = 2N views in one (V, D) matrix; view i and view (i + N) mod V are a positive pair,
 * every other view except i itself is a negative (2N - 2 of them). Similarities are cosines
 * (rows L2-normalised) divided by the temperature tau; the loss is the cross-entropy of picking
 * the positive, summed over the V rows and divided by V, exactly as the reference
 * (CrossEntropyLoss(reduction="sum") / 2N). The forward keeps the normalised rows, their norms and
 * the softmax rows in a caller-owned workspace that the backward reads, so nothing is allocated
 * per step and the small V x V matrix is computed once. Log-sum-exp subtracts each row's maximum.
 */
#ifndef CLMR_TRAIN_NTXENT_H
#define CLMR_TRAIN_NTXENT_H

#include <stddef.h>

#define CLMR_NTXENT_DEFAULT_TAU 0.5f

/* Floats of workspace the forward and backward need for V views of dimension D: V D + V + V V. */
size_t clmr_ntxent_workspace_floats(int n_views, int dim);

/* Computes the loss of z (V, D) into *loss. ws (clmr_ntxent_workspace_floats floats, owned by the
 * caller) receives the state clmr_ntxent_backward needs. Rows with norm below 1e-8 are divided by
 * 1e-8 instead (no NaN for a zero embedding). Returns 0, or CLMR_EINVAL when V is odd or < 2,
 * D < 1 or tau <= 0. Thread-safe on distinct buffers. */
int clmr_ntxent_forward(float *loss, float *ws, const float *z, int n_views, int dim, float tau);

/* Writes dz (V, D) = d loss / d z, scaled by dloss (1 for a plain step), from the workspace of the
 * clmr_ntxent_forward call on the same z, V, D and tau. */
void clmr_ntxent_backward(float *dz, const float *ws, float dloss, int n_views, int dim, float tau);

#endif
