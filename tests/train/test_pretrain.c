/* test_pretrain.c - the pretraining state (train/pretrain.h): PyTorch-like initialisation, widths
 * parsing, checkpoint round trip (a reopened checkpoint continues bit for bit), damaged checkpoints
 * refused, export with and without an --init head. Small widths (7 layers, 729-sample chunks).
 * Tolerances: the init std check allows 10% (sampling error of >= 768 draws is ~2.6%).
 */
#include "clmr/error.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "nn/model_internal.h"
#include "train/pretrain.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *TINY = CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors";

static clmr_pretrain_params_t small_params(void)
{
    clmr_pretrain_params_t p = clmr_pretrain_default_params();
    char *err = NULL;
    int rc = clmr_pretrain_parse_widths(&p, "16,16,32,32,32,32,64", &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    free(err);
    p.batch_pairs = 3;
    p.proj_hidden = 32;
    p.proj_out = 8;
    p.seed = 5;
    return p;
}

static void fill_x(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * (0.2f + 0.1f * (float)(i % 5));
    }
}

static void test_widths_parse(void)
{
    clmr_pretrain_params_t p = clmr_pretrain_default_params();
    CHECK(clmr_pretrain_parse_widths(&p, "official", NULL) == 0 && p.n_layers == 11 &&
          p.widths[0] == 1 && p.widths[1] == 128 && p.widths[11] == 512);
    CHECK(clmr_pretrain_parse_widths(&p, "4,5,6", NULL) == 0 && p.n_layers == 3 &&
          p.widths[3] == 6);
    const char *bad[] = {
        "", "4,5", "4,,5,6", "4,5,6,", "a,b,c", "0,4,4", "4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4,4"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        char *err = NULL;
        CHECKF(clmr_pretrain_parse_widths(&p, bad[i], &err) == CLMR_EINVAL && err, "'%s'", bad[i]);
        free(err);
    }
}

static void test_init_like_pytorch(void)
{
    clmr_pretrain_params_t p = small_params();
    clmr_pretrain_t *a = NULL, *b = NULL;
    clmr_model_t *ma = NULL, *mb = NULL;
    CHECK(clmr_pretrain_open(&a, &p, NULL, NULL) == 0);
    p.seed = 6;
    CHECK(clmr_pretrain_open(&b, &p, NULL, NULL) == 0);
    if (!a || !b) goto out;
    CHECK(clmr_pretrain_export(a, NULL, &ma, NULL) == 0 && ma->cfg.n_tags == 0);
    CHECK(clmr_pretrain_export(b, NULL, &mb, NULL) == 0);
    if (!ma || !mb) goto out;
    for (int i = 0; i < ma->cfg.n_layers; i++) {
        const clmr_layer_shape_t *l = &ma->cfg.layer[i];
        size_t n = (size_t)l->out_ch * l->in_ch * l->kernel;
        double fan_in = (double)l->in_ch * l->kernel, bound = sqrt(6.0 / fan_in), ss = 0,
               bb = 1.0 / sqrt(fan_in);
        int inside = 1, differs = 0;
        for (size_t j = 0; j < n; j++) {
            inside &= fabs(ma->w.conv_w[i][j]) <= bound;
            ss += (double)ma->w.conv_w[i][j] * ma->w.conv_w[i][j];
            differs |= ma->w.conv_w[i][j] != mb->w.conv_w[i][j];
        }
        CHECKF(inside, "layer %d weights outside +-%g", i, bound);
        CHECKF(differs, "layer %d: seeds 5 and 6 give the same weights", i);
        if (n >= 768) CHECK_NEAR(sqrt(ss / (double)n) / (bound / sqrt(3.0)), 1.0, 0.1);
        for (int c = 0; c < l->out_ch; c++) {
            inside &= fabs(ma->w.conv_b[i][c]) <= bb;
            inside &= ma->w.bn_gamma[i][c] == 1.0f && ma->w.bn_beta[i][c] == 0.0f;
            inside &= ma->w.bn_mean[i][c] == 0.0f && ma->w.bn_var[i][c] == 1.0f;
        }
        CHECKF(inside, "layer %d bias/BN init", i);
    }
    /* same seed, same numbers */
    clmr_pretrain_t *c = NULL;
    clmr_model_t *mc = NULL;
    p.seed = 5;
    CHECK(clmr_pretrain_open(&c, &p, NULL, NULL) == 0);
    if (c && clmr_pretrain_export(c, NULL, &mc, NULL) == 0)
        CHECK(memcmp(mc->params, ma->params,
                     clmr_samplecnn_param_count(&ma->cfg) * sizeof(float)) == 0);
    clmr_model_close(&mc);
    clmr_pretrain_close(&c);
out:
    clmr_model_close(&ma);
    clmr_model_close(&mb);
    clmr_pretrain_close(&a);
    clmr_pretrain_close(&b);
}

static void test_checkpoint_roundtrip_continues_exactly(void)
{
    clmr_pretrain_params_t p = small_params();
    p.adam.weight_decay = 1e-4; /* must survive the round trip too */
    clmr_pretrain_t *a = NULL, *b = NULL;
    clmr_model_t *ma = NULL, *mb = NULL;
    char path[64], *info = NULL, *err = NULL;
    snprintf(path, sizeof path, "/tmp/clmr_pretrain_test_%d.ckpt", (int)getpid());
    const size_t nx = (size_t)2 * p.batch_pairs * 729;
    float *x = malloc(nx * sizeof(float));
    fill_x(x, nx, 1);
    CHECK(clmr_pretrain_open(&a, &p, NULL, NULL) == 0);
    if (!a) goto out;
    CHECK(clmr_pretrain_chunk_samples(a) == 729);
    float l1, l2a, l2b;
    CHECK(clmr_pretrain_step(a, x, &l1, NULL) == 0 && isfinite(l1));
    CHECK(clmr_pretrain_save_checkpoint(a, path, "{\"note\":\"hi\"}", &err) == 0);
    CHECK(clmr_pretrain_save_checkpoint(a, path, "[1]", NULL) == CLMR_EINVAL);
    CHECK(clmr_pretrain_open_checkpoint(&b, path, &info, &err) == 0);
    if (!b) goto out;
    CHECK(info && strstr(info, "\"note\":\"hi\"") && strstr(info, "\"step\":1"));
    CHECK(clmr_pretrain_steps_done(b) == 1);
    CHECK(clmr_pretrain_params(b)->adam.weight_decay == 1e-4);
    CHECK(clmr_pretrain_params(b)->seed == 5 && clmr_pretrain_params(b)->batch_pairs == 3);
    fill_x(x, nx, 2);
    CHECK(clmr_pretrain_step(a, x, &l2a, NULL) == 0);
    CHECK(clmr_pretrain_step(b, x, &l2b, NULL) == 0);
    CHECKF(l2a == l2b, "loss after reopen %.9g vs %.9g", l2a, l2b);
    CHECK(clmr_pretrain_export(a, NULL, &ma, NULL) == 0);
    CHECK(clmr_pretrain_export(b, NULL, &mb, NULL) == 0);
    if (ma && mb)
        CHECK(memcmp(ma->params, mb->params,
                     clmr_samplecnn_param_count(&ma->cfg) * sizeof(float)) == 0);

    /* damage: a flipped byte anywhere and a truncation are refused with a message */
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, n / 2, SEEK_SET);
    int ch = fgetc(f);
    fseek(f, n / 2, SEEK_SET);
    fputc(ch ^ 1, f);
    fclose(f);
    clmr_pretrain_t *d = NULL;
    free(err);
    err = NULL;
    CHECK(clmr_pretrain_open_checkpoint(&d, path, NULL, &err) == CLMR_EINVAL && !d && err &&
          strstr(err, "corrupt"));
    CHECK(truncate(path, 20) == 0);
    CHECK(clmr_pretrain_open_checkpoint(&d, path, NULL, NULL) == CLMR_EINVAL && !d);
    CHECK(clmr_pretrain_open_checkpoint(&d, TINY, NULL, NULL) == CLMR_EINVAL && !d);
    CHECK(clmr_pretrain_open_checkpoint(&d, "/nonexistent/x.ckpt", NULL, NULL) == CLMR_EIO);
out:
    unlink(path);
    free(x);
    free(info);
    free(err);
    clmr_model_close(&ma);
    clmr_model_close(&mb);
    clmr_pretrain_close(&a);
    clmr_pretrain_close(&b);
}

static void test_init_from_model_and_head_export(void)
{
    clmr_model_t *tiny = NULL, *out = NULL;
    char *err = NULL;
    CHECK(clmr_model_load(&tiny, TINY, &err) == 0);
    if (!tiny) goto out;
    clmr_pretrain_params_t p = clmr_pretrain_default_params();
    CHECK(clmr_pretrain_parse_widths(&p, "8,8,8,12,12,12,12,12,12,16,16", NULL) == 0);
    p.batch_pairs = 1;
    clmr_pretrain_t *pt = NULL;
    CHECK(clmr_pretrain_open(&pt, &p, tiny, &err) == 0);
    if (!pt) goto out;
    CHECK(clmr_pretrain_export(pt, tiny, &out, &err) == 0);
    if (out) {
        /* before any step the exported model is the init model, head and statistics included */
        CHECK(out->cfg.n_tags == tiny->cfg.n_tags && strcmp(out->tags[0], tiny->tags[0]) == 0);
        CHECK(memcmp(out->params, tiny->params,
                     clmr_samplecnn_param_count(&tiny->cfg) * sizeof(float)) == 0);
    }
    clmr_pretrain_close(&pt);
    /* mismatched widths are refused with a message */
    p = small_params();
    free(err);
    err = NULL;
    CHECK(clmr_pretrain_open(&pt, &p, tiny, &err) == CLMR_EINVAL && !pt && err);
out:
    free(err);
    clmr_model_close(&out);
    clmr_model_close(&tiny);
}

int main(void)
{
    RUN_TEST(test_widths_parse);
    RUN_TEST(test_init_like_pytorch);
    RUN_TEST(test_checkpoint_roundtrip_continues_exactly);
    RUN_TEST(test_init_from_model_and_head_export);
    return TEST_END();
}
