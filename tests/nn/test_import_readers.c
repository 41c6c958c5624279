/* test_import_readers.c - the pieces behind `clmrd import`: the restricted pickle reader
 * (pickle.c), the zip reader (zipread.c) and the checkpoint containers (torch_ckpt.c) on
 * hand-built and committed inputs, and the MLP tag head (head.c, model_load/save) against the
 * naive twin (ref_ops.c). End-to-end import against PyTorch is tests/python/test_import.py.
 *
 * Tolerances: MLP head scores oneDNN path vs naive twin, max |a - b| / max(1, |b|) <= 1e-5 on the
 * head alone (same embeddings; double sums in both) and <= 1e-4 end to end (as test_infer.c).
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "nn/model_internal.h"
#include "nn/pickle.h"
#include "nn/ref_ops.h"
#include "nn/torch_ckpt.h"
#include "nn/zipread.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int parse(const char *bytes, size_t n, clmr_pk_result_t *r, char **err)
{
    return clmr_pk_parse(r, bytes, n, err);
}

static void test_pickle_values(void)
{
    /* pickle.dumps({'a': [1, -2, 3.5, True, None, b'xy'], 'big': 2**80}, protocol=3) */
    static const unsigned char p[] = {
        0x80, 0x03, 0x7d, 0x71, 0x00, 0x28, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71, 0x01,
        0x5d, 0x71, 0x02, 0x28, 0x4b, 0x01, 0x4a, 0xfe, 0xff, 0xff, 0xff, 0x47, 0x40, 0x0c,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x88, 0x4e, 0x43, 0x02, 0x78, 0x79, 0x71, 0x03,
        0x65, 0x58, 0x03, 0x00, 0x00, 0x00, 0x62, 0x69, 0x67, 0x71, 0x04, 0x8a, 0x0b, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x75, 0x2e};
    clmr_pk_result_t r;
    char *err = NULL;
    CHECK(parse((const char *)p, sizeof(p), &r, &err) == 0);
    CHECK(r.root && r.root->kind == CLMR_PK_DICT && r.root->n == 4);
    const clmr_pk_value_t *a = clmr_pk_dict_get(r.root, "a");
    CHECK(a && a->kind == CLMR_PK_LIST && a->n == 6);
    if (a && a->n == 6) {
        CHECK(a->items[0]->i == 1 && a->items[1]->i == -2 && a->items[2]->f == 3.5);
        CHECK(a->items[3]->kind == CLMR_PK_BOOL && a->items[4]->kind == CLMR_PK_NONE);
        CHECK(a->items[5]->kind == CLMR_PK_BYTES && a->items[5]->len == 2);
    }
    const clmr_pk_value_t *big = clmr_pk_dict_get(r.root, "big");
    CHECK(big && big->kind == CLMR_PK_INT && big->len == 11);
    CHECK(r.consumed == sizeof(p) && r.n_unsafe_total == 0);
    clmr_pk_free(&r);
    free(err);
}

static void test_pickle_globals_inert(void)
{
    /* os.system('x') through GLOBAL + REDUCE, and argparse.Namespace via NEWOBJ + BUILD: parsed,
     * never called; only the first is unsafe. */
    static const char p[] = "\x80\x02(cos\nsystem\nX\x01\x00\x00\x00x\x85R"
                            "cargparse\nNamespace\n)\x81}X\x02\x00\x00\x00lrK\x03sbt.";
    clmr_pk_result_t r;
    char *err = NULL;
    CHECK(parse(p, sizeof(p) - 1, &r, &err) == 0);
    CHECK(r.root && r.root->kind == CLMR_PK_TUPLE && r.root->n == 2);
    if (r.root && r.root->n == 2) {
        CHECK(r.root->items[0]->kind == CLMR_PK_OBJECT &&
              strcmp(r.root->items[0]->s, "os.system") == 0);
        CHECK(r.root->items[1]->kind == CLMR_PK_OBJECT &&
              strcmp(r.root->items[1]->s, "argparse.Namespace") == 0);
    }
    CHECK(r.n_unsafe_total == 1 && strcmp(r.unsafe[0], "os.system") == 0);
    clmr_pk_free(&r);
    free(err);
}

static void test_pickle_bounds(void)
{
    static const struct {
        const char *what;
        const char *bytes;
        size_t n;
    } bad[] = {
        {"BINUNICODE longer than the input",
         "\x80\x02X\xff\xff\xff\x7f"
         "abc.",
         11},
        {"BINUNICODE8 over the bound", "\x80\x04\x8d\x00\x00\x00\x00\x00\x00\x01\x00.", 12},
        {"extension opcode", "\x80\x02\x82\x01.", 5},
        {"memo key never set", "\x80\x02h\x05.", 5},
        {"REDUCE on an empty stack", "\x80\x02R.", 4},
        {"two values at STOP", "\x80\x02K\x01K\x02.", 7},
        {"no STOP", "\x80\x02K\x01", 4},
        {"APPEND to a dict",
         "\x80\x02}K\x01"
         "a.",
         6},
        {"LONG_BINPUT out of range", "\x80\x02K\x01r\xff\xff\xff\xff.", 9},
        {"tensor with a non-storage",
         "\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(K\x01K\x00)"
         ")tR.",
         43},
        {"bad persistent id", "\x80\x02K\x01Q.", 6},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        clmr_pk_result_t r;
        char *err = NULL;
        int rc = parse(bad[i].bytes, bad[i].n, &r, &err);
        CHECKF(rc == CLMR_ECHECKPOINT && err && !r.root, "%s: rc %d", bad[i].what, rc);
        free(err);
        clmr_pk_free(&r);
    }
}

static unsigned char *slurp(const char *rel, size_t *n)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", CLMRD_SOURCE_ROOT, rel);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static void test_containers(void)
{
    static const char *const files[] = {"plain.pt",       "legacy.pt", "release.zip",
                                        "lightning.ckpt", "views.pt",  "views_legacy.pt"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char rel[256];
        snprintf(rel, sizeof(rel), "fuzz/corpus/fuzz_torch_ckpt/%s", files[i]);
        size_t n = 0;
        unsigned char *b = slurp(rel, &n);
        CHECKF(b != NULL, "%s missing", rel);
        if (!b) continue;
        clmr_ckpt_t *c = NULL;
        char *err = NULL;
        CHECKF(clmr_ckpt_open_memory(&c, b, n, files[i], &err) == 0, "%s: %s", files[i],
               err ? err : "");
        if (c) {
            const char *fmt = clmr_ckpt_format(c);
            if (strstr(files[i], "legacy")) CHECK(strstr(fmt, "legacy") != NULL);
            if (strstr(files[i], ".zip")) CHECK(strstr(fmt, "release zip") != NULL);
            CHECK(clmr_ckpt_root(c)->kind == CLMR_PK_DICT);
        }
        if (c && strstr(files[i], "views")) {
            /* t = arange(12).view(3, 4).t() (strides 1, 4); o = arange(12)[5:9] (offset 5) */
            const clmr_pk_value_t *t = clmr_pk_dict_get(clmr_ckpt_root(c), "t");
            const clmr_pk_value_t *o = clmr_pk_dict_get(clmr_ckpt_root(c), "o");
            float tv[12], ov[4];
            CHECK(clmr_ckpt_read_f32(c, t, tv, 12, "t", &err) == 0);
            CHECK(clmr_ckpt_read_f32(c, o, ov, 4, "o", &err) == 0);
            for (int r = 0; r < 4; r++)
                for (int k = 0; k < 3; k++)
                    CHECK(tv[r * 3 + k] == (float)(k * 4 + r));
            for (int k = 0; k < 4; k++)
                CHECK(ov[k] == (float)(5 + k));
            CHECK(clmr_ckpt_read_f32(c, o, ov, 3, "o", &err) == CLMR_ECHECKPOINT); /* count */
        }
        clmr_ckpt_close(&c);
        free(err);
        err = NULL;
        /* every truncation and a flipped byte in the middle fail cleanly (or, for a flipped
         * byte in ignored padding, still parse) */
        for (size_t cut = 0; cut < n; cut += n / 13 + 1) {
            CHECK(clmr_ckpt_open_memory(&c, b, cut, files[i], &err) != 0 && !c && err);
            free(err);
            err = NULL;
        }
        b[n / 2] ^= 0x5a;
        int rc = clmr_ckpt_open_memory(&c, b, n, files[i], &err);
        CHECK(rc == 0 || (rc == CLMR_ECHECKPOINT && err && !c));
        clmr_ckpt_close(&c);
        free(err);
        free(b);
    }
}

static void test_dtypes(void)
{
    size_t n = 0;
    unsigned char *b = slurp("fuzz/corpus/fuzz_torch_ckpt/dtypes.pt", &n);
    CHECK(b != NULL);
    if (!b) return;
    clmr_ckpt_t *c = NULL;
    char *err = NULL;
    CHECK(clmr_ckpt_open_memory(&c, b, n, "dtypes", &err) == 0);
    if (c) {
        const clmr_pk_value_t *root = clmr_ckpt_root(c);
        float v[4];
        CHECK(clmr_ckpt_read_f32(c, clmr_pk_dict_get(root, "a"), v, 3, "a", &err) == 0);
        CHECK(v[0] == 1.0f && v[2] == 1.0f); /* float16 ones */
        CHECK(clmr_ckpt_read_f32(c, clmr_pk_dict_get(root, "b"), v, 4, "b", &err) == 0);
        CHECK(v[0] == 1.0f && v[3] == 1.0f); /* bfloat16 ones */
        CHECK(clmr_ckpt_read_f32(c, clmr_pk_dict_get(root, "c"), v, 4, "c", &err) == 0);
        CHECK(v[0] == 0.0f && v[3] == 3.0f); /* float64 arange */
        free(err);
        err = NULL;
        CHECK(clmr_ckpt_read_f32(c, clmr_pk_dict_get(root, "d"), v, 2, "d", &err) ==
              CLMR_ECHECKPOINT); /* int64 refused */
        CHECK(err && strstr(err, "int64"));
    }
    clmr_ckpt_close(&c);
    free(err);
    free(b);
}

static uint64_t rs = 0x1234567887654321ull;
static float frand(float lo, float hi)
{
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    return lo + (hi - lo) * (float)(((rs * 2685821657736338717ull) >> 40) / 16777216.0);
}

static clmr_model_t *mlp_model(int H, int T)
{
    static const int widths[12] = {1, 8, 8, 8, 12, 12, 12, 12, 12, 12, 16, 16};
    clmr_samplecnn_config_t cfg;
    clmr_samplecnn_config_init(&cfg, 11, widths, T);
    cfg.head_hidden = H;
    clmr_model_t *m = NULL;
    if (clmr__model_alloc(&m, &cfg)) return NULL;
    size_t np = clmr_samplecnn_param_count(&cfg);
    for (size_t i = 0; i < np; i++)
        m->params[i] = frand(-0.5f, 0.5f);
    for (int i = 0; i < cfg.n_layers; i++)
        for (int c = 0; c < cfg.layer[i].out_ch; c++) {
            m->w.bn_var[i][c] = frand(0.3f, 2.0f);
            m->w.bn_gamma[i][c] = frand(0.5f, 1.5f);
        }
    clmr__model_fold_bn(m);
    clmr_model_set_name(m, "mlp");
    char names[64][8];
    const char *tags[64];
    for (int t = 0; t < T; t++) {
        snprintf(names[t], sizeof(names[t]), "t%d", t);
        tags[t] = names[t];
    }
    clmr_model_set_tags(m, tags, T);
    return m;
}

static void test_mlp_head(void)
{
    const int H = 24, T = 5, n = 3;
    clmr_model_t *m = mlp_model(H, T);
    CHECK(m != NULL && clmr_model_head_hidden(m) == H);
    if (!m) return;
    const int L = m->cfg.chunk_samples, D = m->cfg.embed_dim;
    float *x = malloc(sizeof(float) * (size_t)n * L), emb[3 * 16], ref_emb[3 * 16], sc[3 * 5],
          lg[3 * 5], ref_sc[3 * 5];
    for (int i = 0; i < n * L; i++)
        x[i] = frand(-1, 1);
    clmr_infer_params_t ip = clmr_infer_default_params();
    ip.threads = 1;
    clmr_infer_t *ctx = NULL;
    CHECK(clmr_infer_open(&ctx, m, &ip, NULL) == 0);
    CHECK(clmr_infer_run(ctx, x, n, emb, sc) == 0);
    CHECK(clmr_ref_samplecnn_forward(&m->cfg, &m->w, x, n, ref_emb, lg) == 0);
    clmr_ref_sigmoid(ref_sc, lg, (size_t)n * T);
    CHECKF(t_max_rel_diff(sc, ref_sc, (size_t)n * T) <= 1e-4, "end to end %g",
           t_max_rel_diff(sc, ref_sc, (size_t)n * T));
    /* the head alone on identical embeddings: fast (head.c) vs naive twin */
    float fast[3 * 5];
    clmr__model_head_logits(m, ref_emb, n, fast);
    CHECKF(t_max_rel_diff(fast, lg, (size_t)n * T) <= 1e-5, "head %g",
           t_max_rel_diff(fast, lg, (size_t)n * T));
    /* the hidden layer matters: a linear head on the same fc rows would give other numbers */
    int active = 0;
    for (int h = 0; h < H; h++) {
        double a = m->w.hid_b[h];
        for (int d = 0; d < D; d++)
            a += (double)m->w.hid_w[h * D + d] * ref_emb[d];
        active += a > 0;
    }
    CHECKF(active > 0 && active < H, "%d of %d hidden units active", active, H);
    /* save / load keeps it an MLP head with identical outputs */
    char path[] = "/tmp/clmr_mlp_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    char *err = NULL;
    CHECK(clmr_model_save(m, path, &err) == 0);
    clmr_model_t *b = NULL;
    CHECKF(clmr_model_load(&b, path, &err) == 0, "%s", err ? err : "");
    if (b) {
        CHECK(clmr_model_head_hidden(b) == H && clmr_model_n_tags(b) == T);
        CHECK(memcmp(b->params, m->params, clmr_samplecnn_param_count(&m->cfg) * 4) == 0);
    }
    clmr_model_close(&b);
    unlink(path);
    free(err);
    clmr_infer_close(&ctx);
    clmr_model_close(&m);
    free(x);
}

int main(void)
{
    RUN_TEST(test_pickle_values);
    RUN_TEST(test_pickle_globals_inert);
    RUN_TEST(test_pickle_bounds);
    RUN_TEST(test_containers);
    RUN_TEST(test_dtypes);
    RUN_TEST(test_mlp_head);
    return TEST_END();
}
