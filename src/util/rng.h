/* rng.h - a small explicit-state pseudo-random generator (xoshiro256**, seeded with splitmix64).
 *
 * DESIGN: every consumer of randomness (augmentations, data loader, trainer) owns a clmr_rng_t and
 * passes it explicitly, so a seed fully determines the outcome and independent streams never
 * share hidden state. clmr_rng_seed(seed, stream) derives unrelated streams from one user seed
 * (e.g. stream = batch index), which lets several threads produce the same data as one thread.
 * The state is 32 bytes and can be saved in a checkpoint by copying the struct.
 */
#ifndef CLMR_UTIL_RNG_H
#define CLMR_UTIL_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} clmr_rng_t;

/* Seeds *r from (seed, stream); different streams of the same seed are statistically independent.
 * Thread-safety: touches only *r. */
void clmr_rng_seed(clmr_rng_t *r, uint64_t seed, uint64_t stream);

/* Next 64 random bits. */
uint64_t clmr_rng_u64(clmr_rng_t *r);

/* Uniform double in [0, 1) with 53 random bits. */
double clmr_rng_uniform(clmr_rng_t *r);

/* Uniform double in [lo, hi). */
double clmr_rng_range(clmr_rng_t *r, double lo, double hi);

/* Uniform integer in [lo, hi] (inclusive, unbiased); returns lo when hi <= lo. */
int64_t clmr_rng_int(clmr_rng_t *r, int64_t lo, int64_t hi);

/* Uniform integer in [0, n) for n > 0 (unbiased); 0 when n == 0. */
uint64_t clmr_rng_below(clmr_rng_t *r, uint64_t n);

/* True with probability p (p <= 0 never, p >= 1 always; one draw is consumed either way, so the
 * sequence of later draws does not depend on p). */
int clmr_rng_bernoulli(clmr_rng_t *r, double p);

/* Standard normal sample (Box-Muller; consumes two uniforms per call, no cached spare, so the
 * state alone determines the stream). */
double clmr_rng_normal(clmr_rng_t *r);

#endif
