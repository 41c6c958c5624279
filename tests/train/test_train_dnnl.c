/* test_train_dnnl.c - the oneDNN encoder training pass against the naive twin.
 *
 * DESIGN: the naive trainer (samplecnn_train_ref) runs a contrastive forward/backward; the oneDNN
 * trainer, bound to a copy of the same parameters and running statistics, runs its forward on the
 * same audio and its backward from the naive trainer's embedding gradient dh. Compared (scale =
 * max |naive| of the tensor), per shape:
 *  - 5 layers, widths 4..10, chunk 81 (short sums): h 1e-4, gradients 1e-3, running stats 1e-5.
 *    Measured ~1e-6 / 1e-5 / 2e-7.
 *  - 11 layers, widths 8..16, full 59,049-sample chunks: h 1e-3, gradients 2e-2, running stats
 *    1e-4. oneDNN sums the BatchNorm statistics of 4 x 19,683 values per channel in float in its
 *    own order (mean/variance within ~1e-5 relative of double sums); eleven train-mode
 *    BatchNorms, the last over only 4 values, amplify that to ~1.4e-4 in h and up to ~2.6e-3 in
 *    the first layers' weight gradients (measured with the jit kernels on avx512; with oneDNN's
 *    reference BN kernel it was 1.2e-2, hence the margin for other CPUs). A layout or indexing
 *    bug gives O(1) errors, so these bounds still bite.
 *  - conv-bias gradients (exactly 0 in exact arithmetic before a train-mode BN): below 1e-4 x the
 *    layer's weight-gradient scale.
 * Two steps with different audio run through the same primitives, so stale buffers would show;
 * a net whose widths narrow checks the buffers the memory plan sizes for the larger of a layer's
 * conv output and input gradient. The memory plan itself is checked against its written rules.
 */
#include "harness.h"

#include "clmr/error.h"
#include "train/samplecnn_train_ref.h"
#include "train/train_dnnl.h"
#include "train/train_head.h"

#include <stdint.h>
#include <string.h>

static double max_abs(const float *a, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(a[i]));
    return m;
}

static double max_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static void fill_lcg(float *x, size_t n, uint64_t seed, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = lo + (hi - lo) * (float)((double)(seed >> 11) / 9007199254740992.0);
    }
}

/* h_tol, g_tol, s_tol: tolerances on h, gradients and running statistics, x scale; b_tol on the
 * conv-bias gradients (noise around 0), x the layer's weight-gradient scale. Also reports the
 * cosine between each whole gradient block and the naive one (min_cos: smallest allowed). */
static void compare_prec(int n_layers, const int *widths, int B, const char *label,
                         clmr_train_precision_t prec, double h_tol, double g_tol, double s_tol,
                         double b_tol, double min_cos, double min_wcos_tol)
{
    clmr_train_config_t cfg;
    clmr_ref_trainer_t rt;
    int D = widths[n_layers];
    CHECK(clmr_train_config_init(&cfg, n_layers, widths, D, 6, 0) == 0);
    CHECK(clmr_ref_trainer_open(&rt, &cfg, B) == 0);
    const clmr_samplecnn_config_t *e = &cfg.enc;
    /* kaiming-like conv weights so activations stay O(1) through the depth */
    for (int i = 0; i < e->n_layers; i++) {
        const clmr_layer_shape_t *l = &e->layer[i];
        float a = sqrtf(6.0f / (float)(l->in_ch * l->kernel));
        size_t oc = (size_t)l->out_ch;
        fill_lcg(rt.params.conv_w[i], oc * l->in_ch * l->kernel, 11 + i, -a, a);
        fill_lcg(rt.params.conv_b[i], oc, 101 + i, -0.1f, 0.1f);
        fill_lcg(rt.params.bn_gamma[i], oc, 201 + i, 0.5f, 1.5f);
        fill_lcg(rt.params.bn_beta[i], oc, 301 + i, -0.1f, 0.1f);
        fill_lcg(rt.run_mean[i], oc, 401 + i, -0.05f, 0.05f);
        fill_lcg(rt.run_var[i], oc, 501 + i, 0.5f, 1.5f);
    }
    fill_lcg(rt.params.proj_w1, (size_t)cfg.proj_hidden * D, 7, -0.5f, 0.5f);
    fill_lcg(rt.params.proj_w2, (size_t)cfg.proj_out * cfg.proj_hidden, 8, -0.5f, 0.5f);

    /* the oneDNN side's own blocks, copies of the naive trainer's */
    float *pmem = malloc(sizeof(float) * rt.n_params), *gmem = calloc(rt.n_params, sizeof(float));
    float *stats = malloc(sizeof(float) * 2 * 16 * CLMR_MAX_LAYERS * 64);
    memcpy(pmem, rt.params_mem, sizeof(float) * rt.n_params);
    clmr_train_params_t dp, dg;
    clmr_train_params_bind(&dp, &cfg, pmem);
    clmr_train_params_bind(&dg, &cfg, gmem);
    float *rm[CLMR_MAX_LAYERS], *rv[CLMR_MAX_LAYERS], *sp = stats;
    for (int i = 0; i < e->n_layers; i++) {
        size_t oc = (size_t)e->layer[i].out_ch;
        rm[i] = sp, sp += oc;
        rv[i] = sp, sp += oc;
        memcpy(rm[i], rt.run_mean[i], sizeof(float) * oc);
        memcpy(rv[i], rt.run_var[i], sizeof(float) * oc);
    }
    clmr_train_dnnl_t *dt = NULL;
    char *msg = NULL;
    clmr_train_blocks_t blk = {.params = pmem, .grads = gmem};
    memcpy(blk.run_mean, rm, sizeof(rm));
    memcpy(blk.run_var, rv, sizeof(rv));
    int err = clmr_train_dnnl_open_prec(&dt, &cfg, B, &blk, prec, &msg);
    CHECKF(err == 0, "%s: open: %s", label, msg ? msg : "?");
    CHECK(!dt || clmr_train_dnnl_precision(dt) == prec);
    free(msg);
    size_t nx = (size_t)B * e->chunk_samples;
    float *x = malloc(sizeof(float) * nx), *x_copy = malloc(sizeof(float) * nx);
    for (int step = 0; step < 2 && dt; step++) {
        for (size_t i = 0; i < nx; i++)
            x[i] = (float)(sin(0.001 * (double)i * (step + 1) * (1 + (double)(i % 7))) * 0.8);
        memcpy(x_copy, x, sizeof(float) * nx);
        float loss = 0;
        CHECK(clmr_ref_trainer_grads_contrastive(&rt, x, 0.5f, &loss) == 0);
        const float *h = NULL;
        CHECK(clmr_train_dnnl_forward(dt, x, rt.bn_momentum, &h) == 0);
        CHECK(memcmp(x, x_copy, sizeof(float) * nx) == 0);
        size_t nh = (size_t)B * D;
        double hd = max_diff(h, rt.h, nh), hs = max_abs(rt.h, nh);
        CHECKF(hd <= h_tol * hs && hs > 0, "%s step %d: h differs by %g (scale %g)", label, step,
               hd, hs);
        memset(gmem, 0x7f, sizeof(float) * rt.n_params); /* garbage: the backward must write */
        CHECK(clmr_train_dnnl_backward(dt, rt.dh) == 0);
        double worst = 0, worst_s = 0, worst_b = 0, dot = 0, n_me = 0, n_ref = 0, min_wcos = 1;
        for (int i = 0; i < e->n_layers; i++) {
            const clmr_layer_shape_t *l = &e->layer[i];
            size_t oc = (size_t)l->out_ch, nw = oc * l->in_ch * l->kernel;
            const float *mine[3] = {dg.conv_w[i], dg.bn_gamma[i], dg.bn_beta[i]};
            const float *ref[3] = {rt.grads.conv_w[i], rt.grads.bn_gamma[i], rt.grads.bn_beta[i]};
            size_t ns[3] = {nw, oc, oc};
            for (int k = 0; k < 3; k++) {
                double s = max_abs(ref[k], ns[k]), d = max_diff(mine[k], ref[k], ns[k]);
                worst = fmax(worst, d / s);
                CHECKF(d <= g_tol * s && s > 0, "%s step %d layer %d tensor %d: %g > %g x %g",
                       label, step, i, k, d, g_tol, s);
                for (size_t j = 0; j < ns[k]; j++) {
                    dot += (double)mine[k][j] * ref[k][j];
                    n_me += (double)mine[k][j] * mine[k][j];
                    n_ref += (double)ref[k][j] * ref[k][j];
                }
            }
            double wd = 0, wm = 0, wr = 0; /* this layer's weight gradient alone */
            for (size_t j = 0; j < nw; j++) {
                wd += (double)mine[0][j] * ref[0][j];
                wm += (double)mine[0][j] * mine[0][j];
                wr += (double)ref[0][j] * ref[0][j];
            }
            min_wcos = fmin(min_wcos, wd / sqrt(wm * wr));
            double ws = max_abs(ref[0], nw);
            worst_b = fmax(worst_b, max_abs(dg.conv_b[i], oc) / ws);
            CHECKF(max_abs(dg.conv_b[i], oc) <= b_tol * ws, "%s layer %d: conv bias grad %g", label,
                   i, max_abs(dg.conv_b[i], oc));
            worst_s = fmax(worst_s, max_diff(rm[i], rt.run_mean[i], oc) /
                                        fmax(max_abs(rt.run_mean[i], oc), 1e-30));
            worst_s =
                fmax(worst_s, max_diff(rv[i], rt.run_var[i], oc) / max_abs(rt.run_var[i], oc));
        }
        CHECKF(worst_s <= s_tol, "%s step %d: running stats differ by %g", label, step, worst_s);
        double cosine = dot / sqrt(n_me * n_ref);
        CHECKF(cosine >= min_cos, "%s step %d: gradient cosine %.6f < %g", label, step, cosine,
               min_cos);
        CHECKF(min_wcos >= min_wcos_tol,
               "%s step %d: a layer's weight-gradient cosine is %.6f < %g", label, step, min_wcos,
               min_wcos_tol);
        printf("# %s step %d: h diff %.3g x scale, worst grad diff %.3g x scale, stats %.3g, "
               "bias grads %.3g, gradient cosine %.6f (worst layer's weights %.6f)\n",
               label, step, hd / hs, worst, worst_s, worst_b, cosine, min_wcos);
    }
    clmr_train_dnnl_close(&dt);
    CHECK(dt == NULL);
    clmr_train_dnnl_close(&dt); /* NULL is fine */
    clmr_ref_trainer_close(&rt);
    free(pmem), free(gmem), free(stats), free(x), free(x_copy);
}

static void compare_vs_ref(int n_layers, const int *widths, int B, const char *label, double h_tol,
                           double g_tol, double s_tol)
{
    compare_prec(n_layers, widths, B, label, CLMR_TRAIN_PREC_FP32, h_tol, g_tol, s_tol, 1e-4,
                 0.99999, 0.9999);
}

static void test_small_net(void)
{
    static const int widths[6] = {1, 4, 6, 8, 8, 10};
    compare_vs_ref(5, widths, 4, "depth5", 1e-4, 1e-3, 1e-5);
}

static void test_full_depth_net(void)
{
    static const int widths[12] = {1, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16};
    compare_vs_ref(11, widths, 4, "depth11", 1e-3, 2e-2, 1e-4);
}

static void test_narrowing_net(void)
{
    static const int widths[6] = {1, 8, 4, 8, 8, 10};
    compare_vs_ref(5, widths, 4, "narrowing", 1e-4, 1e-3, 1e-5);
}

/* Mixed bf16 against the naive fp32 twin (tolerances: docs/training-numerics.md). At 16 views:
 * the 5-layer nets (chunk 81) measured h within 0.026 x scale, gradient cosine >= 0.975 (each
 * layer's weight gradient >= 0.956), stats 0.0044, bias noise 0.0042; the 11-layer net with
 * widths 8..16 is ill-conditioned (eleven train-mode BNs, the last over 16 values): h 0.11-0.16,
 * cosine 0.71-0.82, worst layer 0.45-0.72, and the fp32 trainer itself, fed only bf16-rounded
 * weights and audio, lands about as far from the oracle (h 0.05-0.07, cosine 0.86-0.95 at 16
 * views; 0.64-0.93 at 4). Its bounds only catch gross errors (a layout or conversion bug gives a
 * cosine near 0); the 5-layer bounds are the tight ones. */
static void test_bf16_vs_ref(void)
{
    if (!clmr_cpu_has_native_bf16()) {
        printf("# no native bf16 on this CPU: oneDNN emulates it, checked all the same\n");
    }
    static const int small[6] = {1, 4, 6, 8, 8, 10}, narrow[6] = {1, 8, 4, 8, 8, 10};
    static const int deep[12] = {1, 8, 8, 8, 16, 16, 16, 16, 16, 16, 16, 16};
    compare_prec(5, small, 16, "bf16 depth5", CLMR_TRAIN_PREC_BF16, 0.06, 3, 0.015, 0.02, 0.95,
                 0.9);
    compare_prec(5, narrow, 16, "bf16 narrowing", CLMR_TRAIN_PREC_BF16, 0.06, 3, 0.015, 0.02, 0.95,
                 0.9);
    compare_prec(11, deep, 16, "bf16 depth11", CLMR_TRAIN_PREC_BF16, 0.35, 6, 0.04, 0.08, 0.55,
                 0.3);
}

static size_t r16(size_t n)
{
    return (n + 15) / 16 * 16;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* The memory plan of the DESIGN comment in train_dnnl.c, in floats, from the shapes: kept are
 * layer 0's BN output, every later layer's conv output (large enough for its input gradient),
 * the pooling outputs, the top's BN output (the embedding) and the batch statistics; one shared
 * buffer takes layer 0's conv output, the pooled layers' BN outputs and conv-output gradients
 * and dh; then dh and the head scratch. Every buffer starts on 16 floats. */
static size_t plan_floats(const clmr_train_config_t *cfg, int B)
{
    const clmr_samplecnn_config_t *e = &cfg->enc;
    size_t n = 0, shared = (size_t)B * e->embed_dim;
    for (int i = 0; i < e->n_layers; i++) {
        const clmr_layer_shape_t *l = &e->layer[i];
        size_t conv = (size_t)B * l->out_ch * l->conv_len, in = (size_t)B * l->in_ch * l->in_len;
        if (i == 0)
            shared = max_sz(shared, conv);
        else
            n += r16(max_sz(conv, in));
        if (l->pool) {
            shared = max_sz(shared, conv);
            n += r16((size_t)B * l->out_ch * l->out_len);
        } else {
            n += r16(conv);
        }
        n += r16(2 * (size_t)l->out_ch);
    }
    return n + r16(shared) + r16((size_t)B * e->embed_dim) +
           r16(clmr_train_head_scratch_floats(cfg, B));
}

/* What the trainer allocated before the plan (per layer conv output + BN output + pooling output
 * + statistics, two gradient buffers at least as large as the largest conv output), floats. */
static size_t old_plan_floats_at_least(const clmr_train_config_t *cfg, int B)
{
    const clmr_samplecnn_config_t *e = &cfg->enc;
    size_t n = 0, largest = 0;
    for (int i = 0; i < e->n_layers; i++) {
        const clmr_layer_shape_t *l = &e->layer[i];
        size_t conv = (size_t)B * l->out_ch * l->conv_len;
        n += 2 * conv + (l->pool ? (size_t)B * l->out_ch * l->out_len : 0) + 2 * l->out_ch;
        largest = max_sz(largest, conv);
    }
    return n + 2 * largest;
}

/* The trainer allocates exactly the plan (its own block), the plan follows its rules, and at the
 * paper's batch (48 pairs, official widths) it stays within a budget that keeps pretraining under
 * 6 GB resident: 4.5 GiB for the block (it is 3,897 MiB; with oneDNN's workspaces and weight
 * copies 4,130 MiB; peak RSS of a step 4,238 MiB), and under 60% of what the trainer allocated
 * before the plan (7,280 MiB). */
static void test_memory_plan(void)
{
    static const int small[6] = {1, 4, 6, 8, 8, 10}, narrow[6] = {1, 8, 4, 8, 8, 10};
    static const int official[12] = {1, 128, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512};
    const int *widths[2] = {small, narrow};
    for (int k = 0; k < 2; k++) {
        clmr_train_config_t cfg;
        CHECK(clmr_train_config_init(&cfg, 5, widths[k], 10, 6, 0) == 0);
        int B = 4;
        size_t plan = sizeof(float) * plan_floats(&cfg, B);
        CHECKF(clmr_train_dnnl_plan_bytes(&cfg, B) == plan, "plan %zu bytes, rules say %zu",
               clmr_train_dnnl_plan_bytes(&cfg, B), plan);
        CHECK(plan < sizeof(float) * old_plan_floats_at_least(&cfg, B));
        size_t n = clmr_train_param_count(&cfg);
        float *mem = calloc(2 * n + 2 * 64, sizeof(float)), *st = mem + 2 * n;
        clmr_train_blocks_t blk = {.params = mem, .grads = mem + n};
        for (int i = 0; i < cfg.enc.n_layers; i++) {
            blk.run_mean[i] = st, st += cfg.enc.layer[i].out_ch;
            blk.run_var[i] = st, st += cfg.enc.layer[i].out_ch;
        }
        clmr_train_dnnl_t *t = NULL;
        CHECK(clmr_train_dnnl_open(&t, &cfg, B, &blk, NULL) == 0);
        if (t) {
            size_t own = 0, all = clmr_train_dnnl_bytes(t, &own);
            CHECKF(own == plan, "allocated %zu bytes, plan %zu", own, plan);
            CHECK(all > own); /* plus oneDNN's workspaces */
        }
        clmr_train_dnnl_close(&t);
        CHECK(clmr_train_dnnl_open_prec(&t, &cfg, B, &blk, CLMR_TRAIN_PREC_BF16, NULL) == 0);
        if (t) {
            size_t own = 0;
            clmr_train_dnnl_bytes(t, &own);
            CHECK(own == clmr_train_dnnl_plan_bytes_prec(&cfg, B, CLMR_TRAIN_PREC_BF16));
            CHECK(own < plan);
        }
        clmr_train_dnnl_close(&t);
        free(mem);
    }
    clmr_train_config_t cfg;
    CHECK(clmr_train_config_init(&cfg, 11, official, 512, 64, 0) == 0);
    size_t plan = clmr_train_dnnl_plan_bytes(&cfg, 96), old = old_plan_floats_at_least(&cfg, 96);
    printf("# 48 pairs, official widths: plan %.0f MiB, old plan at least %.0f MiB\n",
           (double)plan / 1048576.0, (double)(sizeof(float) * old) / 1048576.0);
    CHECK(plan == sizeof(float) * plan_floats(&cfg, 96));
    /* bf16 halves every activation; plus a bf16 copy of x and an fp32 copy of h */
    size_t plan16 = clmr_train_dnnl_plan_bytes_prec(&cfg, 96, CLMR_TRAIN_PREC_BF16);
    printf("# 48 pairs, official widths, bf16: plan %.0f MiB\n", (double)plan16 / 1048576.0);
    CHECK(plan16 < plan * 55 / 100 && plan16 > plan * 45 / 100);
    CHECK(plan <= (size_t)4608 << 20);
    CHECK(plan < sizeof(float) * old * 6 / 10);
}

static void test_open_refuses(void)
{
    static const int widths[6] = {1, 4, 6, 8, 8, 10};
    clmr_train_config_t cfg;
    CHECK(clmr_train_config_init(&cfg, 5, widths, 0, 0, 0) == 0);
    clmr_train_dnnl_t *dt = (clmr_train_dnnl_t *)&cfg; /* must be reset to NULL */
    char *msg = NULL;
    float dummy[1];
    clmr_train_blocks_t blk = {.params = dummy, .grads = dummy};
    CHECK(clmr_train_dnnl_open(&dt, &cfg, 1, &blk, &msg) == CLMR_EINVAL);
    CHECK(dt == NULL && msg != NULL);
    free(msg);
    msg = NULL;
    blk.grads = NULL;
    CHECK(clmr_train_dnnl_open(&dt, &cfg, 4, &blk, &msg) == CLMR_EINVAL);
    CHECK(dt == NULL && msg != NULL);
    free(msg);
    msg = NULL;
    blk.grads = dummy;
    cfg.enc.layer[cfg.enc.n_layers - 1].pool = 3; /* the embedding is the top's BN output */
    CHECK(clmr_train_dnnl_open(&dt, &cfg, 4, &blk, &msg) == CLMR_EINVAL);
    CHECK(dt == NULL && msg != NULL);
    free(msg);
}

/* Whole steps: the oneDNN step functions against the naive trainer's steps from the same state.
 * Three steps: loss within 1e-5 relative (step 1) and 1e-4 (steps 2, 3: after updates, which
 * also catches gradients leaking from one step into the next); after step 1, weights
 * whose naive gradient exceeds 1e-3 x its tensor's max (far above the ~1e-5 x scale the two
 * gradients differ by, so Adam sees the same sign) must match to 1e-3 x lr; the rest (including
 * the noise-level conv biases) may differ by at most 2 lr (each side moves at most lr). A frozen
 * supervised step leaves the encoder untouched. */
static void step_case(int supervised)
{
    static const int widths[6] = {1, 4, 6, 8, 8, 10};
    clmr_train_config_t cfg;
    clmr_ref_trainer_t rt;
    int B = 4;
    CHECK(clmr_train_config_init(&cfg, 5, widths, supervised ? 0 : 10, supervised ? 0 : 6,
                                 supervised ? 5 : 0) == 0);
    CHECK(clmr_ref_trainer_open(&rt, &cfg, B) == 0);
    fill_lcg(rt.params_mem, rt.n_params, 77 + supervised, -0.5f, 0.5f);
    for (int i = 0; i < cfg.enc.n_layers; i++)
        for (int c = 0; c < cfg.enc.layer[i].out_ch; c++)
            rt.params.bn_gamma[i][c] += 1.0f;
    size_t n = rt.n_params;
    float *pm = malloc(sizeof(float) * n), *gm = calloc(n, sizeof(float));
    float *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float)),
          *p0 = malloc(sizeof(float) * n);
    float stats[2][CLMR_MAX_LAYERS][16];
    memcpy(pm, rt.params_mem, sizeof(float) * n);
    memcpy(p0, rt.params_mem, sizeof(float) * n);
    clmr_train_blocks_t blk = {.params = pm, .grads = gm, .m = m, .v = v};
    for (int i = 0; i < cfg.enc.n_layers; i++) {
        size_t oc = (size_t)cfg.enc.layer[i].out_ch;
        blk.run_mean[i] = stats[0][i], blk.run_var[i] = stats[1][i];
        memcpy(stats[0][i], rt.run_mean[i], sizeof(float) * oc);
        memcpy(stats[1][i], rt.run_var[i], sizeof(float) * oc);
    }
    clmr_train_dnnl_t *dt = NULL;
    CHECK(clmr_train_dnnl_open(&dt, &cfg, B, &blk, NULL) == 0);
    if (!dt) return;
    float x[4 * 81], y[4 * 5];
    for (int i = 0; i < 4 * 81; i++)
        x[i] = (float)sin(0.7 * i + 0.001 * i * i);
    for (int i = 0; i < 4 * 5; i++)
        y[i] = (float)((i * 3) % 2);
    clmr_adam_params_t ap = rt.adam;
    for (int step = 1; step <= 3; step++) {
        float lr_loss = 0, ld_loss = 0;
        double gn = 0;
        int e1 = supervised ? clmr_ref_train_step_supervised(&rt, x, y, 0, &lr_loss)
                            : clmr_ref_train_step_contrastive(&rt, x, 0.5f, &lr_loss);
        int e2 = supervised
                     ? clmr_train_dnnl_step_supervised(dt, x, y, 0, &ap, step, &ld_loss, &gn)
                     : clmr_train_dnnl_step_contrastive(dt, x, 0.5f, &ap, step, &ld_loss, &gn);
        CHECK(e1 == 0 && e2 == 0);
        CHECKF(fabs(ld_loss - lr_loss) <= (step == 1 ? 1e-5 : 1e-4) * fabs(lr_loss),
               "step %d: loss %.8f vs naive %.8f", step, ld_loss, lr_loss);
        CHECK_NEAR(gn, rt.last_grad_norm, 1e-3 * rt.last_grad_norm);
        if (step != 1) continue;
        /* per tensor (same layout on both sides): the encoder tensors, then projector/head */
        clmr_train_params_t rg = rt.grads;
        size_t off = 0;
        int n_tight = 0;
        while (off < n) {
            /* find the tensor containing off: walk the bound pointers of the naive grads */
            size_t len = n - off;
            const float *starts[4 * CLMR_MAX_LAYERS + 4];
            int ns = 0;
            for (int i = 0; i < cfg.enc.n_layers; i++) {
                starts[ns++] = rg.conv_w[i], starts[ns++] = rg.conv_b[i];
                starts[ns++] = rg.bn_gamma[i], starts[ns++] = rg.bn_beta[i];
            }
            if (rg.proj_w1) starts[ns++] = rg.proj_w1, starts[ns++] = rg.proj_w2;
            if (rg.fc_w) starts[ns++] = rg.fc_w, starts[ns++] = rg.fc_b;
            int is_bias = 0;
            for (int k = 0; k < ns; k++) {
                size_t so = (size_t)(starts[k] - rt.grads_mem);
                if (so == off) {
                    is_bias = k < 4 * cfg.enc.n_layers && k % 4 == 1;
                    len = (k + 1 < ns ? (size_t)(starts[k + 1] - rt.grads_mem) : n) - off;
                }
            }
            double scale = max_abs(rt.grads_mem + off, len);
            for (size_t j = off; j < off + len; j++) {
                double dref = (double)rt.params_mem[j] - p0[j], dd = (double)pm[j] - p0[j];
                if (!is_bias && fabs(rt.grads_mem[j]) > 1e-3 * scale) {
                    n_tight++;
                    CHECKF(fabs(dd - dref) <= 1e-3 * ap.lr, "param %zu: update %g vs naive %g", j,
                           dd, dref);
                } else {
                    CHECKF(fabs(dd - dref) <= 2 * ap.lr * 1.001, "param %zu: %g vs %g", j, dd,
                           dref);
                }
            }
            off += len;
        }
        printf("# %s step 1: %d of %zu updates compared tightly\n",
               supervised ? "supervised" : "contrastive", n_tight, n);
        CHECK(n_tight > (int)(n / 2));
    }
    if (supervised) { /* frozen: the encoder stays, the head moves */
        memcpy(p0, pm, sizeof(float) * n);
        float loss = 0;
        CHECK(clmr_train_dnnl_step_supervised(dt, x, y, 1, &ap, 4, &loss, NULL) == 0);
        size_t head = clmr_train_head_offset(&cfg);
        CHECK(memcmp(p0, pm, sizeof(float) * head) == 0);
        CHECK(memcmp(p0 + head, pm + head, sizeof(float) * (n - head)) != 0);
    } else { /* a contrastive step needs Adam state */
        float loss;
        blk.m = NULL;
        clmr_train_dnnl_close(&dt);
        CHECK(clmr_train_dnnl_open(&dt, &cfg, B, &blk, NULL) == 0);
        CHECK(clmr_train_dnnl_step_contrastive(dt, x, 0.5f, &ap, 1, &loss, NULL) == CLMR_EINVAL);
    }
    clmr_train_dnnl_close(&dt);
    clmr_ref_trainer_close(&rt);
    free(pm), free(gm), free(m), free(v), free(p0);
}

static void test_contrastive_step(void)
{
    step_case(0);
}

static void test_supervised_step(void)
{
    step_case(1);
}

/* Run-to-run determinism with the same thread count: two forward/backward passes over the same
 * parameters and audio give bit-identical embeddings and gradients (the running statistics move
 * between them, but train-mode outputs do not depend on them). */
static void deterministic(clmr_train_precision_t prec)
{
    static const int widths[6] = {1, 16, 16, 32, 32, 64};
    clmr_train_config_t cfg;
    CHECK(clmr_train_config_init(&cfg, 5, widths, 0, 0, 0) == 0);
    size_t n = clmr_train_param_count(&cfg);
    float *mem = calloc(3 * n + 1024, sizeof(float));
    clmr_train_blocks_t blk = {.params = mem, .grads = mem + n};
    float *g1 = mem + 2 * n, *st = mem + 3 * n;
    fill_lcg(mem, n, 5, -0.3f, 0.3f);
    for (int i = 0; i < cfg.enc.n_layers; i++) {
        blk.run_mean[i] = st, st += widths[i + 1];
        blk.run_var[i] = st, st += widths[i + 1];
    }
    int B = 8;
    float x[8 * 81], dh[8 * 64], h1[8 * 64];
    fill_lcg(x, sizeof x / sizeof x[0], 6, -1, 1);
    fill_lcg(dh, sizeof dh / sizeof dh[0], 7, -1, 1);
    clmr_train_dnnl_t *t = NULL;
    CHECK(clmr_train_dnnl_open_prec(&t, &cfg, B, &blk, prec, NULL) == 0);
    if (!t) return;
    const float *h = NULL;
    CHECK(clmr_train_dnnl_forward(t, x, 0.1f, &h) == 0 && clmr_train_dnnl_backward(t, dh) == 0);
    memcpy(h1, h, sizeof h1);
    memcpy(g1, blk.grads, sizeof(float) * n);
    CHECK(clmr_train_dnnl_forward(t, x, 0.1f, &h) == 0 && clmr_train_dnnl_backward(t, dh) == 0);
    CHECK(memcmp(h1, h, sizeof h1) == 0);
    CHECK(memcmp(g1, blk.grads, sizeof(float) * n) == 0);
    clmr_train_dnnl_close(&t);
    free(mem);
}

static void test_deterministic(void)
{
    deterministic(CLMR_TRAIN_PREC_FP32);
    deterministic(CLMR_TRAIN_PREC_BF16);
}

int main(void)
{
    RUN_TEST(test_small_net);
    RUN_TEST(test_full_depth_net);
    RUN_TEST(test_narrowing_net);
    RUN_TEST(test_bf16_vs_ref);
    RUN_TEST(test_memory_plan);
    RUN_TEST(test_open_refuses);
    RUN_TEST(test_contrastive_step);
    RUN_TEST(test_supervised_step);
    RUN_TEST(test_deterministic);
    return TEST_END();
}
