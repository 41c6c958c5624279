/* test_golden.c - the naive C forward against PyTorch fixtures (tests/golden/make_golden.py).
 *
 * The fixture model (11 layers, widths 16-32, 50 tags, random weights with calibrated BatchNorm
 * statistics) is loaded with clmr_model_load; four input chunks (two music-like, digital silence,
 * a full-scale clipped sine) go through
 *   1. the reference layers one by one (conv, batchnorm, relu, maxpool from ref_ops.c), compared
 *      with torch after every block (a fixed random subset of the big early outputs);
 *   2. the same with BatchNorm folded into the convolution (fold_w/fold_b from the loader), which
 *      is what the oneDNN path runs;
 *   3. clmr_ref_samplecnn_forward end to end: embeddings, logits and sigmoid scores.
 * Tolerance: max |c - torch| / max(1, |torch|) <= 1e-4 everywhere (the expected values come from a
 * float64 torch forward, so this bounds the C code's own float32 rounding; observed ~1e-6).
 * A sensitivity check shows the comparison can fail: changing one running variance by 1% moves
 * the outputs far beyond the tolerance.
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "nn/model_internal.h"
#include "nn/ref_ops.h"
#include "nn/safetensors.h"

#include <string.h>

#define GOLDEN CLMRD_SOURCE_ROOT "/tests/fixtures/golden/"
#define TOL 1e-4

static clmr_model_t *model;
static clmr_st_file_t data;
static unsigned char *data_buf;
static float *input;
static int B;

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

static float *read_f32(const char *name, size_t *n)
{
    const clmr_st_tensor_t *t = clmr__st_find(&data, name);
    if (!t || strcmp(t->dtype, "F32") != 0) {
        printf("Bail out! fixture tensor %s missing\n", name);
        exit(1);
    }
    float *v = malloc(t->n_elems * sizeof(float));
    clmr__st_read_f32(t, v);
    if (n) *n = t->n_elems;
    return v;
}

/* max relative difference of out[idx[k]] against val[k] for the subset stored for layer i */
static double layer_diff(int i, const float *out, size_t out_n)
{
    char name[32];
    snprintf(name, sizeof(name), "layer%d.idx", i);
    const clmr_st_tensor_t *ti = clmr__st_find(&data, name);
    snprintf(name, sizeof(name), "layer%d.val", i);
    size_t n;
    float *val = read_f32(name, &n);
    int32_t *idx = malloc(n * sizeof(int32_t));
    clmr__st_read_i32(ti, idx);
    float *got = malloc(n * sizeof(float));
    double worst = 0;
    for (size_t k = 0; k < n; k++) {
        if (idx[k] < 0 || (size_t)idx[k] >= out_n) {
            worst = INFINITY;
            break;
        }
        got[k] = out[idx[k]];
    }
    if (worst == 0) worst = t_max_rel_diff(got, val, n);
    free(got);
    free(idx);
    free(val);
    return worst;
}

/* Runs the blocks one by one; folded selects fold_w/fold_b instead of conv + batchnorm.
 * Returns the worst per-layer difference and writes the final (B, D) output to emb. */
static double run_layers(const clmr_model_t *m, int folded, float *emb, int verbose)
{
    const clmr_samplecnn_config_t *c = &m->cfg;
    size_t maxn = 0;
    for (int i = 0; i < c->n_layers; i++) {
        size_t n = (size_t)B * c->layer[i].out_ch * c->layer[i].conv_len;
        if (n > maxn) maxn = n;
    }
    float *x = malloc(maxn * sizeof(float)), *y = malloc(maxn * sizeof(float));
    memcpy(x, input, (size_t)B * c->chunk_samples * sizeof(float));
    double worst = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const clmr_layer_shape_t *l = &c->layer[i];
        size_t n = (size_t)B * l->out_ch * l->conv_len;
        if (folded) {
            clmr_ref_conv1d(y, x, m->fold_w[i], m->fold_b[i], B, l->in_ch, l->in_len, l->out_ch,
                            l->kernel, l->stride, l->pad);
        } else {
            clmr_ref_conv1d(y, x, m->w.conv_w[i], m->w.conv_b[i], B, l->in_ch, l->in_len, l->out_ch,
                            l->kernel, l->stride, l->pad);
            clmr_ref_batchnorm(y, y, m->w.bn_gamma[i], m->w.bn_beta[i], m->w.bn_mean[i],
                               m->w.bn_var[i], B, l->out_ch, l->conv_len);
        }
        clmr_ref_relu(y, y, n);
        if (l->pool) {
            clmr_ref_maxpool1d(x, y, B, l->out_ch, l->conv_len, l->pool);
        } else {
            memcpy(x, y, n * sizeof(float));
        }
        double d = layer_diff(i, x, (size_t)B * l->out_ch * l->out_len);
        if (verbose)
            printf("# %s layer %2d: max rel diff %.2e\n", folded ? "folded" : "plain", i, d);
        CHECKF(d <= TOL || !verbose, "layer %d: %g > %g", i, d, TOL);
        if (!(d <= worst)) worst = d;
    }
    memcpy(emb, x, (size_t)B * c->embed_dim * sizeof(float));
    free(x);
    free(y);
    return worst;
}

static void test_fixture_shapes(void)
{
    CHECK(clmr_model_n_layers(model) == 11);
    CHECK(clmr_model_embed_dim(model) == 32);
    CHECK(clmr_model_n_tags(model) == 50);
    CHECK(B == 4);
    /* the fixture is not degenerate: the silence chunk's scores differ from the music chunk's */
    float *scores = read_f32("scores", NULL);
    double d = 0;
    for (int t = 0; t < 50; t++)
        d += fabs(scores[t] - scores[2 * 50 + t]);
    CHECK(d > 0.5);
    free(scores);
}

static void test_layers_plain(void)
{
    float *emb = malloc((size_t)B * 32 * sizeof(float));
    double d = run_layers(model, 0, emb, 1);
    CHECK(d <= TOL);
    free(emb);
}

static void test_layers_folded(void)
{
    float *emb = malloc((size_t)B * 32 * sizeof(float));
    double d = run_layers(model, 1, emb, 1);
    CHECK(d <= TOL);
    float *want = read_f32("embedding", NULL);
    double e = t_max_rel_diff(emb, want, (size_t)B * 32);
    CHECKF(e <= TOL, "embedding %g", e);
    free(want);
    free(emb);
}

static void test_end_to_end(void)
{
    const clmr_samplecnn_config_t *c = &model->cfg;
    float *emb = malloc((size_t)B * c->embed_dim * sizeof(float));
    float *logits = malloc((size_t)B * c->n_tags * sizeof(float));
    float *scores = malloc((size_t)B * c->n_tags * sizeof(float));
    CHECK(clmr_ref_samplecnn_forward(c, &model->w, input, B, emb, logits) == 0);
    clmr_ref_sigmoid(scores, logits, (size_t)B * c->n_tags);
    float *we = read_f32("embedding", NULL), *wl = read_f32("logits", NULL),
          *ws = read_f32("scores", NULL);
    double de = t_max_rel_diff(emb, we, (size_t)B * c->embed_dim);
    double dl = t_max_rel_diff(logits, wl, (size_t)B * c->n_tags);
    double ds = t_max_rel_diff(scores, ws, (size_t)B * c->n_tags);
    printf("# end to end: embedding %.2e, logits %.2e, scores %.2e (tolerance %.0e)\n", de, dl, ds,
           TOL);
    CHECK(de <= TOL);
    CHECK(dl <= TOL);
    CHECK(ds <= TOL);
    free(we), free(wl), free(ws), free(emb), free(logits), free(scores);
}

static void test_sensitivity(void)
{
    /* one running variance of layer 5 changed by 1%: the comparison must notice */
    float *emb = malloc((size_t)B * 32 * sizeof(float));
    float keep = model->w.bn_var[5][3];
    model->w.bn_var[5][3] *= 1.01f;
    double d = run_layers(model, 0, emb, 0);
    model->w.bn_var[5][3] = keep;
    printf("# perturbed running_var: max rel diff %.2e\n", d);
    CHECK(d > 10 * TOL);
    free(emb);
}

/* The committed tiny model other modules test with gives usable numbers on music: finite,
 * embeddings not dead (ReLU all zero), scores spread out rather than saturated or constant. */
static void test_tiny_model_is_usable(void)
{
    clmr_model_t *tiny = NULL;
    char *err = NULL;
    CHECK(clmr_model_load(&tiny, CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors",
                          &err) == 0);
    if (!tiny) return;
    const clmr_samplecnn_config_t *c = &tiny->cfg;
    float emb[4 * 16], logits[4 * 50], scores[4 * 50];
    CHECK(clmr_ref_samplecnn_forward(c, &tiny->w, input, 4, emb, logits) == 0);
    clmr_ref_sigmoid(scores, logits, 4 * 50);
    int nonzero = 0, mid = 0;
    double spread = 0;
    for (int i = 0; i < 4 * 16; i++)
        nonzero += emb[i] > 0;
    for (int i = 0; i < 4 * 50; i++) {
        CHECK(isfinite(scores[i]));
        mid += scores[i] > 0.05f && scores[i] < 0.95f;
    }
    for (int t = 0; t < 50; t++)
        spread += fabs(scores[t] - scores[50 + t]);
    printf("# tiny: %d/64 embedding values > 0, %d/200 scores in (0.05, 0.95), chunk 0 vs 1 "
           "score distance %.2f\n",
           nonzero, mid, spread);
    CHECK(nonzero >= 16);
    CHECK(mid >= 50);
    CHECK(spread > 0.1);
    clmr_model_close(&tiny);
    free(err);
}

int main(void)
{
    char *err = NULL;
    if (clmr_model_load(&model, GOLDEN "model.safetensors", &err) != 0) {
        printf("Bail out! %s\n", err);
        return 1;
    }
    size_t n = 0;
    data_buf = slurp(GOLDEN "data.safetensors", &n);
    if (!data_buf || clmr__st_parse(&data, data_buf, n, &err) != 0) {
        printf("Bail out! golden data: %s\n", err ? err : "cannot read");
        return 1;
    }
    size_t ni;
    input = read_f32("input", &ni);
    B = (int)(ni / (size_t)clmr_model_chunk_samples(model));
    RUN_TEST(test_fixture_shapes);
    RUN_TEST(test_layers_plain);
    RUN_TEST(test_layers_folded);
    RUN_TEST(test_end_to_end);
    RUN_TEST(test_sensitivity);
    RUN_TEST(test_tiny_model_is_usable);
    free(input);
    clmr__st_free(&data);
    free(data_buf);
    clmr_model_close(&model);
    return TEST_END();
}
