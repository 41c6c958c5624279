/* golden_check.c - compares the C forward paths with expected values computed elsewhere (torch).
 *
 * Usage: golden_check MODEL INPUTS EXPECTED [--path NAME]... [--tol T]
 *   MODEL     a clmrd model (.safetensors), loaded with clmr_model_load
 *   INPUTS    safetensors with "input" (B, chunk_samples) F32
 *   EXPECTED  safetensors with "embedding" (B, D) and, for a model with a head, "scores" (B, T)
 *   --path    run only the named path(s) (default: all); --tol relative tolerance (default 1e-4,
 *             measured as max |c - expected| / max(1, |expected|))
 * Prints one line per path and exits 0 when every path is within the tolerance, 1 when one is not,
 * 2 on usage or input errors. Used by tests/python/test_golden_full.py on an official-width model.
 *
 * DESIGN: each forward implementation is one function with the same signature in the `paths`
 * table, so adding a path (oneDNN: clmr_infer_open + clmr_infer_run) is one function and one table
 * row; the loading, comparison and reporting are shared.
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "nn/model_internal.h"
#include "nn/ref_ops.h"
#include "nn/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest |a[i] - b[i]| / max(1, |b[i]|), NaN counting as a failure (same measure as harness.h). */
static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / fmax(1.0, fabs((double)b[i]));
        if (!(d <= worst)) worst = d;
    }
    return worst;
}

/* Runs B chunks x through one implementation: emb (B, D); scores (B, T) when the model has a
 * head. Returns 0 or an error code with *errmsg. */
typedef int (*golden_forward_fn)(const clmr_model_t *m, const float *x, int B, float *emb,
                                 float *scores, char **errmsg);

/* The naive reference (src/nn/ref_ops.c): conv + batchnorm unfused, double accumulation. */
static int forward_ref(const clmr_model_t *m, const float *x, int B, float *emb, float *scores,
                       char **errmsg)
{
    int T = m->cfg.n_tags;
    float *logits = T ? malloc(sizeof(float) * (size_t)B * (size_t)T) : NULL;
    int rc = clmr_ref_samplecnn_forward(&m->cfg, &m->w, x, B, emb, logits);
    if (rc == 0 && T) clmr_ref_sigmoid(scores, logits, (size_t)B * (size_t)T);
    free(logits);
    if (rc) clmr_set_err(errmsg, rc, "reference forward failed");
    return rc;
}

/* The oneDNN path (src/nn/infer_dnnl.c): folded BN, chosen layouts. max_batch 3 with 2 threads, so
 * a 4-chunk input runs one split-lane batch of 3 and one intra-op batch of 1. */
static int forward_dnnl(const clmr_model_t *m, const float *x, int B, float *emb, float *scores,
                        char **errmsg)
{
    clmr_infer_params_t p = clmr_infer_default_params();
    p.max_batch = 3;
    p.threads = 2;
    clmr_infer_t *ctx = NULL;
    int rc = clmr_infer_open(&ctx, m, &p, errmsg);
    if (rc == 0) rc = clmr_infer_run(ctx, x, B, emb, m->cfg.n_tags ? scores : NULL);
    if (rc && errmsg && !*errmsg) clmr_set_err(errmsg, rc, "oneDNN forward failed");
    clmr_infer_close(&ctx);
    return rc;
}

static const struct {
    const char *name;
    golden_forward_fn fn;
} paths[] = {
    {"ref", forward_ref},
    {"dnnl", forward_dnnl},
};
#define N_PATHS (int)(sizeof(paths) / sizeof(paths[0]))

typedef struct {
    unsigned char *buf;
    clmr_st_file_t st;
} st_blob_t;

static int open_st(st_blob_t *b, const char *path)
{
    memset(b, 0, sizeof(*b));
    FILE *f = fopen(path, "rb");
    if (!f) return fprintf(stderr, "golden_check: cannot open %s\n", path), -1;
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    b->buf = malloc(n ? n : 1);
    size_t got = fread(b->buf, 1, n, f);
    fclose(f);
    char *err = NULL;
    if (got != n || clmr__st_parse(&b->st, b->buf, n, &err) != 0) {
        fprintf(stderr, "golden_check: %s: %s\n", path, err ? err : "read error");
        free(err);
        return -1;
    }
    return 0;
}

static void close_st(st_blob_t *b)
{
    clmr__st_free(&b->st);
    free(b->buf);
}

/* The F32 tensor `name` with exactly n elements, copied; NULL (and a message) otherwise. */
static float *get_f32(const st_blob_t *b, const char *name, size_t n, const char *file)
{
    const clmr_st_tensor_t *t = clmr__st_find(&b->st, name);
    if (!t || strcmp(t->dtype, "F32") != 0 || t->n_elems != n) {
        fprintf(stderr, "golden_check: %s: need F32 tensor '%s' with %zu values\n", file, name, n);
        return NULL;
    }
    float *v = malloc(n * sizeof(float));
    clmr__st_read_f32(t, v);
    return v;
}

int main(int argc, char **argv)
{
    const char *files[3] = {0};
    const char *only[8];
    int n_files = 0, n_only = 0, status = 2;
    double tol = 1e-4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tol") == 0 && i + 1 < argc)
            tol = atof(argv[++i]);
        else if (strcmp(argv[i], "--path") == 0 && i + 1 < argc && n_only < 8)
            only[n_only++] = argv[++i];
        else if (argv[i][0] != '-' && n_files < 3)
            files[n_files++] = argv[i];
        else
            n_files = 99;
    }
    if (n_files != 3) {
        fprintf(stderr, "usage: golden_check MODEL INPUTS EXPECTED [--path NAME]... [--tol T]\n");
        return 2;
    }
    clmr_model_t *m = NULL;
    char *err = NULL;
    st_blob_t in = {0}, ex = {0};
    float *x = NULL, *want_emb = NULL, *want_scores = NULL, *emb = NULL, *scores = NULL;
    if (clmr_model_load(&m, files[0], &err) != 0) {
        fprintf(stderr, "golden_check: %s\n", err);
        goto out;
    }
    if (open_st(&in, files[1]) || open_st(&ex, files[2])) goto out;
    const clmr_st_tensor_t *ti = clmr__st_find(&in.st, "input");
    int chunk = clmr_model_chunk_samples(m), D = clmr_model_embed_dim(m), T = clmr_model_n_tags(m);
    if (!ti || ti->ndim != 2 || ti->shape[1] != chunk || ti->shape[0] < 1) {
        fprintf(stderr, "golden_check: %s: need 'input' of shape (B, %d)\n", files[1], chunk);
        goto out;
    }
    int B = (int)ti->shape[0];
    x = get_f32(&in, "input", (size_t)B * chunk, files[1]);
    want_emb = get_f32(&ex, "embedding", (size_t)B * D, files[2]);
    want_scores = T ? get_f32(&ex, "scores", (size_t)B * T, files[2]) : NULL;
    if (!x || !want_emb || (T && !want_scores)) goto out;
    emb = malloc(sizeof(float) * (size_t)B * D);
    scores = malloc(sizeof(float) * (size_t)B * (T ? T : 1));

    status = 0;
    int ran = 0;
    for (int p = 0; p < N_PATHS; p++) {
        int wanted = n_only == 0;
        for (int k = 0; k < n_only; k++)
            wanted |= strcmp(only[k], paths[p].name) == 0;
        if (!wanted) continue;
        ran++;
        if (paths[p].fn(m, x, B, emb, scores, &err) != 0) {
            printf("%s: FAILED to run: %s\n", paths[p].name, err ? err : "");
            status = 1;
            continue;
        }
        double de = max_rel_diff(emb, want_emb, (size_t)B * D);
        double ds = T ? max_rel_diff(scores, want_scores, (size_t)B * T) : 0.0;
        int ok = de <= tol && ds <= tol;
        printf("%s: %d chunks, embedding max rel diff %.3g, scores max rel diff %.3g, tolerance "
               "%.3g: %s\n",
               paths[p].name, B, de, ds, tol, ok ? "OK" : "MISMATCH");
        if (!ok) status = 1;
    }
    if (!ran) {
        fprintf(stderr, "golden_check: no such path\n");
        status = 2;
    }
out:
    free(x), free(want_emb), free(want_scores), free(emb), free(scores), free(err);
    close_st(&in);
    close_st(&ex);
    clmr_model_close(&m);
    return status;
}
