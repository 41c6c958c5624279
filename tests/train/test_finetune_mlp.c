/* test_finetune_mlp.c - background fine-tuning (clmr_finetune_run) from a parent with CLMR's MLP
 * tag head: the distillation term runs through the frozen MLP (clmr_distill_bce_mlp), the job
 * finishes, and the new model keeps the parent's MLP head bit for bit with a moved encoder.
 *
 * DESIGN: a full-depth (59,049-sample) model with small widths, built in memory; six 3-chunk WAV
 * files (16-bit PCM, 22,050 Hz, tones + noise) written here; 3 steps of 2 pairs on one thread.
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "harness.h"
#include "nn/model_internal.h"
#include "train/finetune.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rs = 0x243f6a8885a308d3ull;
static float frand(float lo, float hi)
{
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    return lo + (hi - lo) * (float)(((rs * 2685821657736338717ull) >> 40) / 16777216.0);
}

static void put32(FILE *f, uint32_t v)
{
    unsigned char b[4] = {v & 255, (v >> 8) & 255, (v >> 16) & 255, v >> 24};
    fwrite(b, 1, 4, f);
}
static void put16(FILE *f, uint16_t v)
{
    unsigned char b[2] = {v & 255, v >> 8};
    fwrite(b, 1, 2, f);
}

static int write_wav(const char *path, int n, double freq)
{
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite("RIFF", 1, 4, f);
    put32(f, 36 + 2 * (uint32_t)n);
    fwrite("WAVEfmt ", 1, 8, f);
    put32(f, 16);
    put16(f, 1);
    put16(f, 1);
    put32(f, 22050);
    put32(f, 44100);
    put16(f, 2);
    put16(f, 16);
    fwrite("data", 1, 4, f);
    put32(f, 2 * (uint32_t)n);
    for (int i = 0; i < n; i++) {
        double v = 0.4 * sin(2 * M_PI * freq * i / 22050.0) + 0.05 * frand(-1, 1);
        put16(f, (uint16_t)(int16_t)lrint(v * 32767));
    }
    return fclose(f);
}

static clmr_model_t *mlp_parent(int H, int T)
{
    static const int widths[12] = {1, 8, 8, 8, 12, 12, 12, 12, 12, 12, 16, 16};
    clmr_samplecnn_config_t cfg;
    clmr_samplecnn_config_init(&cfg, 11, widths, T);
    cfg.head_hidden = H;
    clmr_model_t *m = NULL;
    if (clmr__model_alloc(&m, &cfg)) return NULL;
    for (size_t i = 0; i < clmr_samplecnn_param_count(&cfg); i++)
        m->params[i] = frand(-0.4f, 0.4f);
    for (int i = 0; i < cfg.n_layers; i++)
        for (int c = 0; c < cfg.layer[i].out_ch; c++) {
            m->w.bn_var[i][c] = frand(0.3f, 2.0f);
            m->w.bn_gamma[i][c] = frand(0.5f, 1.5f);
        }
    clmr__model_fold_bn(m);
    const char *tags[3] = {"a", "b", "c"};
    clmr_model_set_tags(m, tags, T);
    clmr_model_set_name(m, "mlp-parent");
    return m;
}

static void test_finetune_with_mlp_head(void)
{
    char dir[] = "/tmp/clmr_ftmlp_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char paths[6][256];
    const char *files[6];
    for (int i = 0; i < 6; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s/f%d.wav", dir, i);
        CHECK(write_wav(paths[i], 3 * 59049, 110.0 * (i + 1)) == 0);
        files[i] = paths[i];
    }
    clmr_model_t *parent = mlp_parent(10, 3);
    CHECK(parent != NULL);
    if (!parent) return;
    char ckpt[300], out[300];
    snprintf(ckpt, sizeof(ckpt), "%s/job.ckpt", dir);
    snprintf(out, sizeof(out), "%s/out.safetensors", dir);
    clmr_finetune_params_t p;
    memset(&p, 0, sizeof(p));
    p.steps = 3;
    p.batch_pairs = 2;
    p.learning_rate = 1e-3f;
    p.seed = 7;
    p.threads = 1;
    p.distill_weight = 1.0f;
    p.checkpoint_every = 10;
    p.checkpoint_path = ckpt;
    p.out_path = out;
    p.name = "ft";
    clmr_finetune_result_t res;
    char *err = NULL;
    int rc = clmr_finetune_run(parent, files, 4, files + 4, 2, &p, &res, &err);
    CHECKF(rc == 0, "finetune: %s", err ? err : clmr_strerror(rc));
    if (rc == 0) {
        CHECK(res.steps_done == 3 && isfinite(res.first_loss) && isfinite(res.tag_drift));
        clmr_model_t *m = NULL;
        CHECK(clmr_model_load(&m, out, &err) == 0);
        if (m) {
            CHECK(clmr_model_head_hidden(m) == 10 && clmr_model_n_tags(m) == 3);
            size_t nh = clmr_samplecnn_head_param_count(&m->cfg);
            size_t np = clmr_samplecnn_param_count(&m->cfg);
            CHECK(nh > 0 && np == clmr_samplecnn_param_count(&parent->cfg));
            /* the head is the parent's, bit for bit; the encoder moved */
            CHECK(memcmp(m->params + np - nh, parent->params + np - nh, nh * 4) == 0);
            CHECK(memcmp(m->params, parent->params, (np - nh) * 4) != 0);
        }
        clmr_model_close(&m);
    }
    free(err);
    clmr_model_close(&parent);
    for (int i = 0; i < 6; i++)
        unlink(paths[i]);
    unlink(ckpt);
    unlink(out);
    char tmp[320];
    snprintf(tmp, sizeof(tmp), "%s.tmp", ckpt);
    unlink(tmp);
    rmdir(dir);
}

int main(void)
{
    RUN_TEST(test_finetune_with_mlp_head);
    return TEST_END();
}
