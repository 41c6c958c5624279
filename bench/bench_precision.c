/* bench_precision.c - the bf16 accuracy gate: bf16 against fp32 on the same model and inputs.
 *
 * DESIGN: two contexts on one model (precision fp32 and bf16, same threads and batch); every input
 * goes through both and the differences are accumulated:
 *   - chunk level: max and mean |score_bf16 - score_fp32| over every (chunk, tag), the smallest
 *     cosine between the two raw chunk embeddings, and in how many chunks the top-5 tags (as a set)
 *     are the same;
 *   - track level (audio files; whole-track analysis as the service does it): the same on the
 *     track scores (mean of chunk scores) and the L2-normalised track embedding.
 * Inputs are audio files (decoded with clmr_audio_decode_file as the daemon and `clmrd tag` do) or,
 * with --chunks FILE.safetensors, the "input" tensor (B, chunk_samples) of a golden fixture.
 * The summary lines start with GATE and are what docs/inference.md quotes.
 *
 * Usage: bench_precision MODEL [--threads N] [--batch N] (--chunks INPUTS.safetensors | FILE...)
 */
#include "clmr/audio.h"
#include "clmr/error.h"
#include "clmr/model.h"
#include "nn/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double max_abs, sum_abs, min_cos;
    long n_scores, n_items, top5_same;
} gate_t;

static void top5(const float *s, int T, int *idx)
{
    for (int k = 0; k < 5; k++)
        idx[k] = -1;
    for (int k = 0; k < 5 && k < T; k++) {
        int best = -1;
        for (int t = 0; t < T; t++) {
            int used = 0;
            for (int j = 0; j < k; j++)
                used |= idx[j] == t;
            if (!used && (best < 0 || s[t] > s[best])) best = t;
        }
        idx[k] = best;
    }
}

static double cosine(const float *a, const float *b, int D)
{
    double ab = 0, aa = 0, bb = 0;
    for (int d = 0; d < D; d++) {
        ab += (double)a[d] * b[d];
        aa += (double)a[d] * a[d];
        bb += (double)b[d] * b[d];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

/* Adds n items (scores (n, T), embeddings (n, D)) of both precisions to g. */
static void gate_add(gate_t *g, const float *s32, const float *s16, const float *e32,
                     const float *e16, int n, int T, int D)
{
    for (int i = 0; i < n; i++) {
        for (int t = 0; t < T; t++) {
            double d = fabs((double)s32[(size_t)i * T + t] - s16[(size_t)i * T + t]);
            g->max_abs = d > g->max_abs ? d : g->max_abs;
            g->sum_abs += d;
            g->n_scores++;
        }
        if (T >= 5) {
            int a[5], b[5], same = 1;
            top5(s32 + (size_t)i * T, T, a);
            top5(s16 + (size_t)i * T, T, b);
            for (int k = 0; k < 5; k++) {
                int found = 0;
                for (int j = 0; j < 5; j++)
                    found |= a[k] == b[j];
                same &= found;
            }
            g->top5_same += same;
        }
        double c = cosine(e32 + (size_t)i * D, e16 + (size_t)i * D, D);
        g->min_cos = g->n_items == 0 || c < g->min_cos ? c : g->min_cos;
        g->n_items++;
    }
}

static void gate_print(const char *what, const gate_t *g)
{
    printf("GATE %-6s items %ld: scores max |diff| %.5f mean %.6f; top-5 set equal in %ld/%ld; "
           "embedding cosine min %.6f\n",
           what, g->n_items, g->max_abs, g->n_scores ? g->sum_abs / g->n_scores : 0.0, g->top5_same,
           g->n_items, g->min_cos);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr,
                "usage: %s MODEL [--threads N] [--batch N] (--chunks IN.safetensors | FILE...)\n",
                argv[0]);
        return 2;
    }
    clmr_infer_params_t p = clmr_infer_default_params();
    p.threads = 2;
    const char *chunks = NULL;
    int first_file = argc;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            p.threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            p.max_batch = atoi(argv[++i]);
        else if (strcmp(argv[i], "--chunks") == 0 && i + 1 < argc)
            chunks = argv[++i];
        else {
            first_file = i;
            break;
        }
    }
    clmr_model_t *m = NULL;
    char *msg = NULL;
    int err = clmr_model_load(&m, argv[1], &msg);
    if (err) {
        fprintf(stderr, "%s: %s\n", argv[1], msg ? msg : clmr_strerror(err));
        return 1;
    }
    clmr_infer_t *c32 = NULL, *c16 = NULL;
    p.precision = CLMR_PRECISION_FP32;
    if (!(err = clmr_infer_open(&c32, m, &p, &msg))) {
        p.precision = CLMR_PRECISION_BF16;
        err = clmr_infer_open(&c16, m, &p, &msg);
    }
    if (err) {
        fprintf(stderr, "%s\n", msg ? msg : clmr_strerror(err));
        return 1;
    }
    const int L = clmr_model_chunk_samples(m), D = clmr_model_embed_dim(m),
              T = clmr_model_n_tags(m);
    gate_t chunk_g = {0}, track_g = {0};
    int status = 0;
    if (chunks) {
        clmr_st_file_t f;
        unsigned char *buf = NULL;
        size_t size = 0;
        FILE *fp = fopen(chunks, "rb");
        if (fp && fseek(fp, 0, SEEK_END) == 0) {
            long sz = ftell(fp);
            size = sz > 0 ? (size_t)sz : 0;
            buf = size ? malloc(size) : NULL;
            rewind(fp);
            if (!buf || fread(buf, 1, size, fp) != size) size = 0;
        }
        if (fp) fclose(fp);
        if (!size || (err = clmr__st_parse(&f, buf, size, &msg))) {
            fprintf(stderr, "%s: %s\n", chunks, msg ? msg : "cannot read");
            return 1;
        }
        const clmr_st_tensor_t *t = clmr__st_find(&f, "input");
        if (!t || t->n_elems % (size_t)L) {
            fprintf(stderr, "%s: no input tensor of whole chunks\n", chunks);
            return 1;
        }
        int n = (int)(t->n_elems / (size_t)L);
        float *x = malloc(t->n_elems * sizeof(float));
        float *e32 = malloc(sizeof(float) * n * D), *e16 = malloc(sizeof(float) * n * D);
        float *s32 = malloc(sizeof(float) * n * (T + 1)),
              *s16 = malloc(sizeof(float) * n * (T + 1));
        clmr__st_read_f32(t, x);
        if (clmr_infer_run(c32, x, n, e32, s32) || clmr_infer_run(c16, x, n, e16, s16)) return 1;
        gate_add(&chunk_g, s32, s16, e32, e16, n, T, D);
        free(x), free(e32), free(e16), free(s32), free(s16);
        clmr__st_free(&f);
        free(buf);
    }
    clmr_audio_params_t ap = clmr_audio_default_params();
    double seconds = 0;
    for (int i = first_file; i < argc; i++) {
        clmr_audio_t a = {0};
        clmr_track_t t32 = {0}, t16 = {0};
        if ((err = clmr_audio_decode_file(&a, argv[i], &ap, &msg))) {
            fprintf(stderr, "%s: %s\n", argv[i], msg ? msg : clmr_strerror(err));
            free(msg);
            msg = NULL;
            status = 1;
            continue;
        }
        seconds += a.duration_s;
        if (clmr_track_analyze(&t32, c32, a.samples, a.n_samples) ||
            clmr_track_analyze(&t16, c16, a.samples, a.n_samples)) {
            fprintf(stderr, "%s: inference failed\n", argv[i]);
            status = 1;
        } else {
            gate_t one = {0};
            gate_add(&one, t32.scores, t16.scores, t32.emb, t16.emb, 1, T, D);
            printf("FILE %s %.1f s %d chunks: track max |diff| %.5f, cosine %.6f, top-5 %s\n",
                   argv[i], a.duration_s, t32.n_chunks, one.max_abs, one.min_cos,
                   one.top5_same ? "same" : "DIFFERENT");
            gate_add(&track_g, t32.scores, t16.scores, t32.emb, t16.emb, 1, T, D);
            gate_add(&chunk_g, t32.chunk_scores, t16.chunk_scores, t32.chunk_emb, t16.chunk_emb,
                     t32.n_chunks, T, D);
        }
        clmr_track_free(&t32);
        clmr_track_free(&t16);
        clmr_audio_free(&a);
    }
    printf("# model %s (%s), %d tags, %.1f s of audio, threads %d, batch %d\n", argv[1],
           clmr_model_name(m), T, seconds, p.threads, p.max_batch);
    gate_print("chunks", &chunk_g);
    if (track_g.n_items) gate_print("tracks", &track_g);
    clmr_infer_close(&c32);
    clmr_infer_close(&c16);
    clmr_model_close(&m);
    return status;
}
