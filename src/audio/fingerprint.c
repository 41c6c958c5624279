/* fingerprint.c - Chromaprint fingerprints and their comparison; see fingerprint.h. */
#include "audio/fingerprint.h"

#include "clmr/error.h"

#include <chromaprint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FEED 4096 /* samples converted to int16 per chromaprint_feed call */

int clmr_fingerprint_compute(uint32_t **fp, int *n_items, const float *x, size_t n, int rate,
                             char **errmsg)
{
    *fp = NULL;
    *n_items = 0;
    if (rate < 8000 || rate > 192000)
        return clmr_set_err(errmsg, CLMR_EINVAL, "fingerprint: sample rate %d out of range", rate);
    size_t max_n = (size_t)(CLMR_FINGERPRINT_MAX_S * rate);
    if (n > max_n) n = max_n;
    ChromaprintContext *ctx = chromaprint_new(CHROMAPRINT_ALGORITHM_DEFAULT);
    if (!ctx) return clmr_set_err(errmsg, CLMR_ENOMEM, "fingerprint: out of memory");
    int rc = CLMR_ENOMEM;
    int16_t buf[FEED];
    uint32_t *raw = NULL;
    int size = 0;
    if (!chromaprint_start(ctx, rate, 1)) goto out;
    for (size_t pos = 0; pos < n; pos += FEED) {
        size_t m = n - pos < FEED ? n - pos : FEED;
        for (size_t i = 0; i < m; i++) {
            float v = x[pos + i] * 32767.0f; /* clip: decoded audio may exceed full scale */
            buf[i] = (int16_t)(v > 32767.0f ? 32767 : v < -32768.0f ? -32768 : lrintf(v));
        }
        if (!chromaprint_feed(ctx, buf, (int)m)) goto out;
    }
    if (!chromaprint_finish(ctx)) goto out;
    if (!chromaprint_get_raw_fingerprint(ctx, &raw, &size)) goto out;
    if (size < CLMR_FINGERPRINT_MIN_ITEMS) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "fingerprint: audio too short (%d items)", size);
        goto out;
    }
    /* Copy out of Chromaprint's allocator so callers free() as everywhere else. */
    if (!(*fp = malloc((size_t)size * sizeof **fp))) goto out;
    memcpy(*fp, raw, (size_t)size * sizeof **fp);
    *n_items = size;
    rc = 0;
out:
    if (rc == CLMR_ENOMEM) clmr_set_err(errmsg, rc, "fingerprint: chromaprint failed");
    if (raw) chromaprint_dealloc(raw);
    chromaprint_free(ctx);
    return rc;
}

double clmr_fingerprint_similarity(const uint32_t *a, int na, const uint32_t *b, int nb)
{
    double best = 0;
    for (int shift = -CLMR_FINGERPRINT_MAX_SHIFT; shift <= CLMR_FINGERPRINT_MAX_SHIFT; shift++) {
        /* a[i] is compared with b[i + shift] */
        int i0 = shift < 0 ? -shift : 0;
        int i1 = na < nb - shift ? na : nb - shift;
        int overlap = i1 - i0;
        if (overlap < CLMR_FINGERPRINT_MIN_ITEMS) continue;
        long long bits = 0;
        for (int i = i0; i < i1; i++)
            bits += __builtin_popcount(a[i] ^ b[i + shift]);
        double sim = 1.0 - (double)bits / (32.0 * overlap);
        if (sim > best) best = sim;
    }
    return best;
}

double clmr_fingerprint_length_tolerance(double d_s)
{
    double t = 0.02 * fabs(d_s);
    return t > 1.5 ? t : 1.5;
}

int clmr_fingerprint_same_length(double a_s, double b_s)
{
    double m = a_s > b_s ? a_s : b_s;
    return fabs(a_s - b_s) <= clmr_fingerprint_length_tolerance(m);
}
