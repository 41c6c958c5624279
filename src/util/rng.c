/* rng.c - xoshiro256** with splitmix64 seeding (see rng.h).
 *
 * DESIGN: xoshiro256** (Blackman & Vigna) is fast, has 256 bits of state and passes the usual
 * statistical batteries; splitmix64 expands a 64-bit seed into a full state that is never all
 * zero. Written from the published algorithm descriptions.
 */
#include "util/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void clmr_rng_seed(clmr_rng_t *r, uint64_t seed, uint64_t stream)
{
    /* Mix the stream through splitmix first so that adjacent streams start far apart. */
    uint64_t t = stream;
    uint64_t x = seed ^ splitmix64(&t);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t clmr_rng_u64(clmr_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double clmr_rng_uniform(clmr_rng_t *r)
{
    return (double)(clmr_rng_u64(r) >> 11) * 0x1.0p-53;
}

double clmr_rng_range(clmr_rng_t *r, double lo, double hi)
{
    return lo + (hi - lo) * clmr_rng_uniform(r);
}

uint64_t clmr_rng_below(clmr_rng_t *r, uint64_t n)
{
    if (n == 0) return 0;
    /* Rejection on the top of the range keeps the result exactly uniform. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t v;
    do {
        v = clmr_rng_u64(r);
    } while (v >= limit);
    return v % n;
}

int64_t clmr_rng_int(clmr_rng_t *r, int64_t lo, int64_t hi)
{
    if (hi <= lo) return lo;
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1; /* 0 only for the full 64-bit range */
    uint64_t v = span ? clmr_rng_below(r, span) : clmr_rng_u64(r);
    return (int64_t)((uint64_t)lo + v);
}

int clmr_rng_bernoulli(clmr_rng_t *r, double p)
{
    return clmr_rng_uniform(r) < p;
}

double clmr_rng_normal(clmr_rng_t *r)
{
    double u1 = 1.0 - clmr_rng_uniform(r); /* (0, 1]: log stays finite */
    double u2 = clmr_rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
