/* track.c - whole-track analysis (clmr_track_analyze): the CLMR evaluation protocol over chunks.
 *
 * DESIGN: the track is cut into consecutive non-overlapping chunks of chunk_samples; the tail that
 * does not fill a chunk is dropped, and a track shorter than one chunk is zero-padded to exactly
 * one chunk. All full chunks are passed to clmr_infer_run straight from the caller's samples (no
 * copy; the context splits them into its batches), only the padded short track needs a buffer.
 * Track scores are the mean of the per-chunk sigmoid scores (mean of probabilities, as the paper
 * evaluates), the track embedding the L2-normalised mean of the raw chunk embeddings. Means are
 * accumulated in double so long tracks do not lose precision.
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "nn/infer_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>


void clmr_track_free(clmr_track_t *t)
{
    if (!t) return;
    free(t->chunk_emb);
    free(t->chunk_scores);
    free(t->emb);
    free(t->scores);
    memset(t, 0, sizeof(*t));
}

int clmr_track_analyze(clmr_track_t *out, clmr_infer_t *ctx, const float *samples, size_t n_samples)
{
    memset(out, 0, sizeof(*out));
    if (!ctx || !samples || n_samples == 0) return CLMR_EINVAL;
    const clmr_model_t *m = clmr__infer_model(ctx);
    const size_t L = (size_t)clmr_model_chunk_samples(m);
    const int D = clmr_model_embed_dim(m), T = clmr_model_n_tags(m);
    size_t nc = n_samples / L;
    if (nc > (size_t)INT32_MAX / 2) return CLMR_EINVAL;
    int err = 0;
    float *padded = NULL;
    double *acc = NULL;
    const float *x = samples;
    if (nc == 0) {
        padded = calloc(L, sizeof(float));
        if (!padded) return CLMR_ENOMEM;
        memcpy(padded, samples, n_samples * sizeof(float));
        x = padded;
        nc = 1;
    }
    out->n_chunks = (int)nc;
    out->embed_dim = D;
    out->n_tags = T;
    out->chunk_emb = malloc(sizeof(float) * nc * D);
    out->emb = malloc(sizeof(float) * D);
    acc = malloc(sizeof(double) * (size_t)(D > T ? D : T));
    if (T > 0) {
        out->chunk_scores = malloc(sizeof(float) * nc * T);
        out->scores = malloc(sizeof(float) * T);
    }
    if (!out->chunk_emb || !out->emb || !acc || (T > 0 && (!out->chunk_scores || !out->scores))) {
        err = CLMR_ENOMEM;
        goto done;
    }
    if ((err = clmr_infer_run(ctx, x, (int)nc, out->chunk_emb, out->chunk_scores))) goto done;

    for (int d = 0; d < D; d++) acc[d] = 0;
    for (size_t c = 0; c < nc; c++)
        for (int d = 0; d < D; d++) acc[d] += out->chunk_emb[c * D + d];
    double norm = 0;
    for (int d = 0; d < D; d++) {
        acc[d] /= (double)nc;
        norm += acc[d] * acc[d];
    }
    norm = sqrt(norm);
    /* An all-zero mean (e.g. every ReLU dead on silence) stays zero rather than dividing by 0. */
    for (int d = 0; d < D; d++) out->emb[d] = norm > 0 ? (float)(acc[d] / norm) : 0.0f;

    for (int t = 0; t < T; t++) acc[t] = 0;
    for (size_t c = 0; c < nc && T > 0; c++)
        for (int t = 0; t < T; t++) acc[t] += out->chunk_scores[c * T + t];
    for (int t = 0; t < T; t++) out->scores[t] = (float)(acc[t] / (double)nc);
done:
    free(padded);
    free(acc);
    if (err) clmr_track_free(out);
    return err;
}
