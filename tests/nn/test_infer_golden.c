/* test_infer_golden.c - the oneDNN forward (clmr_infer_run) and track analysis against the PyTorch
 * golden fixtures (tests/golden/make_golden.py: widths 16-32, 50 tags, calibrated BatchNorm, a
 * float64 torch forward of four chunks: two music-like, digital silence, a full-scale clipped
 * sine).
 *
 * Tolerance: max |c - torch| / max(1, |torch|) <= 1e-4, the same as test_golden.c uses for the
 * naive path. Batching is varied (max_batch 1, 3 and 4; 1 and 2 threads) so intra-op nets, split
 * lanes and remainder batches all meet the fixture.
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "nn/safetensors.h"

#include <string.h>

#define GOLDEN CLMRD_SOURCE_ROOT "/tests/fixtures/golden/"
#define TOL 1e-4

static clmr_model_t *model;
static clmr_st_file_t data;
static unsigned char *data_buf;

static float *read_f32(const char *name, size_t want)
{
    const clmr_st_tensor_t *t = clmr__st_find(&data, name);
    if (!t || strcmp(t->dtype, "F32") != 0 || t->n_elems != want) {
        printf("Bail out! fixture tensor %s missing or mis-sized\n", name);
        exit(1);
    }
    float *v = malloc(t->n_elems * sizeof(float));
    clmr__st_read_f32(t, v);
    return v;
}

static void test_dnnl_matches_torch(void)
{
    const int B = 4, L = clmr_model_chunk_samples(model), D = clmr_model_embed_dim(model),
              T = clmr_model_n_tags(model);
    float *x = read_f32("input", (size_t)B * L), *we = read_f32("embedding", (size_t)B * D),
          *ws = read_f32("scores", (size_t)B * T);
    float *e = malloc(sizeof(float) * B * D), *s = malloc(sizeof(float) * B * T);
    const clmr_infer_params_t cases[] = {{1, 1, CLMR_PRECISION_FP32},
                                         {3, 2, CLMR_PRECISION_FP32},
                                         {4, 2, CLMR_PRECISION_FP32},
                                         {4, 1, CLMR_PRECISION_FP32}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        clmr_infer_t *ctx = NULL;
        char *msg = NULL;
        int err = clmr_infer_open(&ctx, model, &cases[k], &msg);
        CHECKF(err == 0, "open: %s", msg ? msg : "");
        free(msg);
        if (err) continue;
        memset(e, 0xff, sizeof(float) * B * D);
        memset(s, 0xff, sizeof(float) * B * T);
        CHECK(clmr_infer_run(ctx, x, B, e, s) == 0);
        double de = t_max_rel_diff(e, we, (size_t)B * D), ds = t_max_rel_diff(s, ws, (size_t)B * T);
        printf("# max_batch %d threads %d: embedding %.3g, scores %.3g\n", cases[k].max_batch,
               cases[k].threads, de, ds);
        CHECKF(de <= TOL, "embedding max rel diff %g", de);
        CHECKF(ds <= TOL, "scores max rel diff %g", ds);
        clmr_infer_close(&ctx);
    }
    free(x), free(we), free(ws), free(e), free(s);
}

/* Track of the two music-like chunks back to back: scores = mean of torch's chunk scores,
 * embedding = normalised mean of torch's chunk embeddings. */
static void test_track_matches_torch(void)
{
    const int B = 4, L = clmr_model_chunk_samples(model), D = clmr_model_embed_dim(model),
              T = clmr_model_n_tags(model);
    float *x = read_f32("input", (size_t)B * L), *we = read_f32("embedding", (size_t)B * D),
          *ws = read_f32("scores", (size_t)B * T);
    clmr_infer_t *ctx = NULL;
    clmr_infer_params_t p = clmr_infer_default_params();
    CHECK(clmr_infer_open(&ctx, model, &p, NULL) == 0);
    clmr_track_t tr;
    CHECK(ctx && clmr_track_analyze(&tr, ctx, x, 2 * (size_t)L + 1000) == 0);
    if (ctx && tr.n_chunks == 2) {
        double norm = 0;
        for (int d = 0; d < D; d++)
            norm += 0.25 * (we[d] + we[D + d]) * (we[d] + we[D + d]);
        norm = sqrt(norm);
        for (int d = 0; d < D; d++)
            CHECK_NEAR(tr.emb[d], 0.5 * (we[d] + we[D + d]) / norm, 1e-4);
        for (int t = 0; t < T; t++)
            CHECK_NEAR(tr.scores[t], 0.5 * (ws[t] + ws[T + t]), 1e-4);
        clmr_track_free(&tr);
    } else {
        CHECK(0);
    }
    clmr_infer_close(&ctx);
    free(x), free(we), free(ws);
}

int main(void)
{
    char *msg = NULL;
    if (clmr_model_load(&model, GOLDEN "model.safetensors", &msg) != 0) {
        printf("Bail out! cannot load the golden model: %s\n", msg ? msg : "");
        return 1;
    }
    FILE *f = fopen(GOLDEN "data.safetensors", "rb");
    if (!f) return printf("Bail out! no golden data\n"), 1;
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    data_buf = malloc(n);
    if (fread(data_buf, 1, n, f) != n || clmr__st_parse(&data, data_buf, n, &msg) != 0) {
        printf("Bail out! cannot parse golden data\n");
        return 1;
    }
    fclose(f);
    RUN_TEST(test_dnnl_matches_torch);
    RUN_TEST(test_track_matches_torch);
    clmr__st_free(&data);
    free(data_buf);
    clmr_model_close(&model);
    return TEST_END();
}
