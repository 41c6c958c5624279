/* test_train_step.c - the naive whole training step against PyTorch, and against finite
 * differences on a tiny model.
 *
 * DESIGN: the fixtures come from tests/golden/make_train_step.py (torch 1.13, float32): one CLMR
 * pretraining step (11-layer SampleCNN widths 8..16, projector 16->20->12, 2N = 4 views, NT-Xent
 * tau 0.5, Adam lr 3e-4), one supervised step (same encoder + 5-tag head, BCE-with-logits) and
 * three Adam steps with weight decay and clipping. The input audio is rebuilt here from the same
 * integer formula. The fixture also holds the same step's gradients computed by torch in float64:
 * our naive code sums in double, so it is compared tightly with those and loosely with torch's
 * float32 ones, whose own summation error reaches 3e-3 of the scale on the first layers of the
 * supervised step. Tolerances ("scale" = max |reference| of the tensor):
 *  - loss: 1e-5 relative to torch float32, 1e-6 relative to torch float64.
 *  - h, z, logits: max |diff| <= 1e-4 x scale.
 *  - gradients: <= 2e-4 x scale against float64 torch, <= 5e-3 x scale against float32 torch.
 *  - conv biases before a train-mode BN have a gradient that is exactly 0 in exact arithmetic (the
 *    batch mean removes them); ours must stay below 1e-5 x the layer's weight-gradient scale.
 *    torch's float32 values there are pure rounding noise and are not compared.
 *  - updated weights: Adam's first step moves a weight by lr g / (|g| + eps), about lr sign(g).
 *    Where |g_f64| exceeds twice the two float32 gradients' measured errors the sign is determined
 *    and the update must match torch's to 1e-3 x lr; elsewhere (noise-level gradients, the conv
 *    biases) only |update| <= lr is required. The test prints how many weights fell in each class.
 *  - BN running statistics: max |diff| <= 1e-5 x the layer's max |statistic|.
 *  - Adam alone on torch's own gradients (3 steps, weight decay, clipping): 2e-6 relative.
 * A tiny model (depth 4, chunk 27) is also checked against central differences of the loss.
 */
#include "harness.h"

#include "clmr/error.h"
#include "st_fixture.h"
#include "train/adam.h"
#include "train/samplecnn_train_ref.h"

#include <stdint.h>
#include <string.h>

#define GRAD_TOL_F64 2e-4
#define GRAD_TOL_F32 5e-3

#define ACT_TOL 1e-4

typedef struct {
    char name[32];
    float *param, *grad;
    size_t n;
    int zero_grad; /* conv bias feeding a train-mode BN: gradient is 0 in exact arithmetic */
} tensor_ref_t;

static int list_tensors(tensor_ref_t *out, clmr_ref_trainer_t *t)
{
    const clmr_train_config_t *c = &t->cfg;
    int k = 0;
    for (int i = 0; i < c->enc.n_layers; i++) {
        const clmr_layer_shape_t *l = &c->enc.layer[i];
        size_t oc = (size_t)l->out_ch;
        static const char *nm[4] = {"conv_w", "conv_b", "bn_gamma", "bn_beta"};
        float *ps[4] = {t->params.conv_w[i], t->params.conv_b[i], t->params.bn_gamma[i],
                        t->params.bn_beta[i]};
        float *gs[4] = {t->grads.conv_w[i], t->grads.conv_b[i], t->grads.bn_gamma[i],
                        t->grads.bn_beta[i]};
        size_t ns[4] = {oc * l->in_ch * l->kernel, oc, oc, oc};
        for (int j = 0; j < 4; j++, k++) {
            snprintf(out[k].name, sizeof out[k].name, "layer%d.%s", i, nm[j]);
            out[k].param = ps[j], out[k].grad = gs[j], out[k].n = ns[j], out[k].zero_grad = j == 1;
        }
    }
    size_t d = (size_t)c->enc.embed_dim;
    if (c->proj_hidden > 0) {
        out[k] = (tensor_ref_t){"proj_w1", t->params.proj_w1, t->grads.proj_w1,
                                (size_t)c->proj_hidden * d, 0};
        k++;
        out[k] = (tensor_ref_t){"proj_w2", t->params.proj_w2, t->grads.proj_w2,
                                (size_t)c->proj_out * c->proj_hidden, 0};
        k++;
    }
    if (c->enc.n_tags > 0) {
        out[k] =
            (tensor_ref_t){"fc_w", t->params.fc_w, t->grads.fc_w, (size_t)c->enc.n_tags * d, 0};
        k++;
        out[k] = (tensor_ref_t){"fc_b", t->params.fc_b, t->grads.fc_b, (size_t)c->enc.n_tags, 0};
        k++;
    }
    return k;
}

/* The fixture's input formula (see make_train_step.py input_batch). */
static void input_batch(float *x, int views, int chunk)
{
    for (int v = 0; v < views; v++) {
        int64_t b = v % (views / 2);
        for (int64_t t = 0; t < chunk; t++) {
            int64_t saw = (t * (37 + 16 * b)) % 4096 - 2048;
            int64_t noise = ((t * t + 7 * v) % 7919) % 1024 - 512;
            int64_t k = saw + noise * (1 + v / (views / 2));
            /* Python's // floors; C's / truncates toward zero */
            int64_t q = k >= 0 ? k / 2 : -((-k + 1) / 2);
            x[(size_t)v * chunk + t] = (float)q / 4096.0f;
        }
    }
}

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
        if (!(d <= m)) m = d; /* NaN fails */
    }
    return m;
}

static const float *need(const st_fixture_t *f, const char *prefix, const char *name, size_t n)
{
    char key[64];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    size_t cnt = 0;
    const float *p = st_get(f, key, &cnt);
    CHECKF(p && cnt == n, "%s: missing or %zu floats, want %zu", key, cnt, n);
    return p && cnt == n ? p : NULL;
}

/* Runs one step of `kind` from the fixture's init and compares everything it recorded. */
static void step_vs_torch(const char *kind)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", TRAIN_FIXTURE_DIR, kind);
    st_fixture_t f;
    if (st_open(&f, path)) {
        CHECKF(0, "cannot read %s", path);
        return;
    }
    int widths[CLMR_MAX_LAYERS + 1], nw = 0;
    const char *ws = st_meta(&f, "widths");
    for (const char *p = ws; p && *p && nw <= CLMR_MAX_LAYERS; nw++) {
        widths[nw] = (int)strtol(p, (char **)&p, 10);
        if (*p == ',') p++;
    }
    int views = atoi(st_meta(&f, "views")), ph = atoi(st_meta(&f, "proj_hidden"));
    int po = atoi(st_meta(&f, "proj_out")), nt = atoi(st_meta(&f, "n_tags"));
    float tau = strtof(st_meta(&f, "tau"), NULL);
    clmr_train_config_t cfg;
    clmr_ref_trainer_t t;
    CHECK(clmr_train_config_init(&cfg, nw - 1, widths, ph, po, nt) == 0);
    CHECK(clmr_ref_trainer_open(&t, &cfg, views) == 0);
    t.adam.lr = strtod(st_meta(&f, "lr"), NULL);

    tensor_ref_t tens[4 * CLMR_MAX_LAYERS + 4];
    int ntens = list_tensors(tens, &t);
    for (int i = 0; i < ntens; i++) {
        const float *p = need(&f, "init.", tens[i].name, tens[i].n);
        if (p) memcpy(tens[i].param, p, sizeof(float) * tens[i].n);
    }
    size_t nstats = 0;
    for (int i = 0; i < cfg.enc.n_layers; i++) {
        char key[48];
        size_t oc = (size_t)cfg.enc.layer[i].out_ch;
        snprintf(key, sizeof key, "layer%d.run_mean", i);
        const float *m = need(&f, "init.", key, oc);
        snprintf(key, sizeof key, "layer%d.run_var", i);
        const float *v = need(&f, "init.", key, oc);
        if (m) memcpy(t.run_mean[i], m, sizeof(float) * oc);
        if (v) memcpy(t.run_var[i], v, sizeof(float) * oc);
        nstats += oc;
    }
    int B = views, D = cfg.enc.embed_dim;
    float *x = malloc(sizeof(float) * (size_t)B * cfg.enc.chunk_samples);
    input_batch(x, B, cfg.enc.chunk_samples);
    float *init = malloc(sizeof(float) * t.n_params);
    memcpy(init, t.params_mem, sizeof(float) * t.n_params);

    float loss = 0;
    int err;
    const float *out_ref;
    size_t nout;
    const float *tl = need(&f, "", "loss", 1);
    if (!strcmp(kind, "contrastive")) {
        err = clmr_ref_train_step_contrastive(&t, x, tau, &loss);
        out_ref = need(&f, "", "z", (size_t)B * po), nout = (size_t)B * po;
        if (out_ref) CHECK(max_diff(t.z, out_ref, nout) <= ACT_TOL * max_abs(out_ref, nout));
    } else {
        float *y = malloc(sizeof(float) * (size_t)B * nt);
        for (int b = 0; b < B; b++)
            for (int k = 0; k < nt; k++)
                y[b * nt + k] = (float)((3 * b + k) % 2);
        err = clmr_ref_train_step_supervised(&t, x, y, 0, &loss);
        out_ref = need(&f, "", "logits", (size_t)B * nt), nout = (size_t)B * nt;
        if (out_ref) CHECK(max_diff(t.logits, out_ref, nout) <= ACT_TOL * max_abs(out_ref, nout));
        free(y);
    }
    CHECK(err == 0);
    const float *href = need(&f, "", "h", (size_t)B * D);
    if (href)
        CHECKF(max_diff(t.h, href, (size_t)B * D) <= ACT_TOL * max_abs(href, (size_t)B * D),
               "h differs by %g", max_diff(t.h, href, (size_t)B * D));
    const float *tl64 = need(&f, "", "loss_f64", 1);
    if (tl)
        CHECKF(fabs(loss - tl[0]) <= 1e-5 * fabs(tl[0]), "loss %.8f vs torch %.8f", loss, tl[0]);
    if (tl64)
        CHECKF(fabs(loss - tl64[0]) <= 1e-6 * fabs(tl64[0]), "loss %.8f vs torch f64 %.8f", loss,
               tl64[0]);
    printf("# %s: loss %.7f (torch f32 %.7f, f64 %.7f)\n", kind, loss, tl ? tl[0] : NAN,
           tl64 ? tl64[0] : NAN);

    double worst_g64 = 0, worst_g32 = 0, worst_u = 0;
    int n_loose = 0;
    for (int i = 0; i < ntens; i++) {
        tensor_ref_t *r = &tens[i];
        const float *g = need(&f, "grad.", r->name, r->n);
        const float *g64 = need(&f, "grad_f64.", r->name, r->n);
        const float *u = need(&f, "updated.", r->name, r->n);
        size_t off = (size_t)(r->param - t.params_mem);
        if (!g || !g64 || !u) continue;
        double d64 = max_diff(r->grad, g64, r->n), d32 = max_diff(r->grad, g, r->n);
        double torch_noise = max_diff(g, g64, r->n); /* torch float32 vs torch float64 */
        if (r->zero_grad) {
            /* exactly 0 in exact arithmetic: bounded by this layer's weight-gradient scale (the
             * previous table entry); a missing BN mean term would make it O(that scale) */
            double wscale = max_abs(tens[i - 1].grad, tens[i - 1].n);
            CHECKF(max_abs(r->grad, r->n) <= 1e-5 * wscale, "%s: |g| %g > 1e-5 x %g", r->name,
                   max_abs(r->grad, r->n), wscale);
        } else {
            double scale = max_abs(g64, r->n);
            worst_g64 = fmax(worst_g64, d64 / scale);
            worst_g32 = fmax(worst_g32, d32 / scale);
            CHECKF(scale > 0 && d64 <= GRAD_TOL_F64 * scale, "%s: grad vs float64 torch %g > %g",
                   r->name, d64, GRAD_TOL_F64 * scale);
            CHECKF(d32 <= GRAD_TOL_F32 * scale, "%s: grad vs float32 torch %g > %g", r->name, d32,
                   GRAD_TOL_F32 * scale);
        }
        /* where both float32 gradients are farther from 0 than their errors, the sign and so
         * Adam's first update (~ lr sign(g)) are determined */
        double det = 2 * (torch_noise + d64);
        for (size_t j = 0; j < r->n; j++) {
            double mine = (double)r->param[j] - init[off + j];
            double theirs = (double)u[j] - init[off + j];
            if (!r->zero_grad && fabs(g64[j]) > det) {
                worst_u = fmax(worst_u, fabs(mine - theirs) / t.adam.lr);
                CHECKF(fabs(mine - theirs) <= 1e-3 * t.adam.lr, "%s[%zu]: update %g vs torch %g",
                       r->name, j, mine, theirs);
            } else {
                n_loose++;
                CHECKF(fabs(mine) <= t.adam.lr * 1.001, "%s[%zu]: |update| %g > lr", r->name, j,
                       mine);
            }
        }
    }
    printf("# %s: worst grad diff vs torch f64 %.3g, vs torch f32 %.3g (x tensor scale); worst "
           "update diff %.3g x lr; %d of %zu params with an undetermined gradient sign\n",
           kind, worst_g64, worst_g32, worst_u, n_loose, t.n_params);
    double worst_s = 0;
    for (int i = 0; i < cfg.enc.n_layers; i++) {
        char key[48];
        size_t oc = (size_t)cfg.enc.layer[i].out_ch;
        snprintf(key, sizeof key, "layer%d.run_mean", i);
        const float *m = need(&f, "updated.", key, oc);
        snprintf(key, sizeof key, "layer%d.run_var", i);
        const float *v = need(&f, "updated.", key, oc);
        if (!m || !v) continue;
        worst_s = fmax(worst_s, max_diff(t.run_mean[i], m, oc) / max_abs(m, oc));
        worst_s = fmax(worst_s, max_diff(t.run_var[i], v, oc) / max_abs(v, oc));
    }
    printf("# %s: running stats worst diff %.3g x layer scale\n", kind, worst_s);
    CHECKF(worst_s <= 1e-5, "running stats differ by %g x layer scale", worst_s);
    CHECK(t.step == 1);
    (void)nstats;
    free(x);
    free(init);
    clmr_ref_trainer_close(&t);
    st_close(&f);
}

static void test_contrastive_step_vs_torch(void)
{
    step_vs_torch("contrastive");
}

static void test_supervised_step_vs_torch(void)
{
    step_vs_torch("supervised");
}

static void test_adam_vs_torch(void)
{
    st_fixture_t f;
    if (st_open(&f, TRAIN_FIXTURE_DIR "/adam.safetensors")) {
        CHECK(0);
        return;
    }
    size_t n = 0;
    const float *p0 = st_get(&f, "p0", &n);
    CHECK(p0 && n > 0);
    if (!p0) return;
    float *p = malloc(sizeof(float) * n), *m = calloc(n, sizeof(float));
    float *v = calloc(n, sizeof(float)), *g = malloc(sizeof(float) * n);
    memcpy(p, p0, sizeof(float) * n);
    clmr_adam_params_t ap = clmr_adam_default_params();
    ap.lr = strtod(st_meta(&f, "lr"), NULL);
    ap.weight_decay = strtod(st_meta(&f, "weight_decay"), NULL);
    ap.clip_norm = strtod(st_meta(&f, "clip"), NULL);
    for (int s = 1; s <= 3; s++) {
        char key[16];
        snprintf(key, sizeof key, "g%d", s);
        const float *gs = st_get(&f, key, NULL);
        snprintf(key, sizeof key, "norm%d", s);
        const float *norm = st_get(&f, key, NULL);
        snprintf(key, sizeof key, "p%d", s);
        const float *ps = st_get(&f, key, NULL);
        if (!gs || !norm || !ps) {
            CHECK(0);
            break;
        }
        memcpy(g, gs, sizeof(float) * n);
        double nr = clmr_adam_clip_grad_norm(g, n, ap.clip_norm);
        CHECK_NEAR(nr, norm[0], 1e-6 * norm[0]);
        CHECK(nr > ap.clip_norm); /* the fixture exercises clipping */
        clmr_adam_update(p, g, m, v, n, s, &ap);
        double d = t_max_rel_diff(p, ps, n);
        CHECKF(d <= 2e-6, "step %d: params differ by %g", s, d);
    }
    free(p), free(m), free(v), free(g);
    st_close(&f);
}

/* ---- tiny model: whole-network gradients against central differences ---- */
typedef struct {
    clmr_ref_trainer_t *t;
    const float *x, *y;
    int supervised;
} tiny_ctx;

static double tiny_loss(tiny_ctx *c, float *grads_out)
{
    float loss = 0;
    int err = c->supervised ? clmr_ref_trainer_grads_supervised(c->t, c->x, c->y, 0, &loss)
                            : clmr_ref_trainer_grads_contrastive(c->t, c->x, 0.5f, &loss);
    CHECK(err == 0);
    if (grads_out) memcpy(grads_out, c->t->grads_mem, sizeof(float) * c->t->n_params);
    return loss;
}

/* Central differences of the float loss at two steps, h = 1e-3 and 1e-4: a ReLU/max-pool kink or
 * the strong curvature of a small-batch BatchNorm within h spoils the first, the float rounding
 * of the loss (~5e-8, i.e. ~2e-4 after dividing by 2e-4) limits the second. A parameter passes
 * when either agrees with the analytic gradient within 2e-3 x max|g| + 2e-5; at most 2% of the
 * parameters may fail both. */
static void tiny_fd(int supervised)
{
    static const int widths[5] = {1, 3, 4, 5, 6};
    clmr_train_config_t cfg;
    clmr_ref_trainer_t t;
    CHECK(clmr_train_config_init(&cfg, 4, widths, supervised ? 0 : 7, supervised ? 0 : 5,
                                 supervised ? 3 : 0) == 0);
    int B = 6;
    CHECK(clmr_ref_trainer_open(&t, &cfg, B) == 0);
    uint64_t s = 12345 + (uint64_t)supervised;
    for (size_t i = 0; i < t.n_params; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t.params_mem[i] = (float)((double)(s >> 11) / 9007199254740992.0 - 0.5);
    }
    for (int i = 0; i < cfg.enc.n_layers; i++) /* BN gammas away from 0 */
        for (int c = 0; c < cfg.enc.layer[i].out_ch; c++)
            t.params.bn_gamma[i][c] += 1.0f;
    float x[6 * 27], y[6 * 3];
    for (int i = 0; i < 6 * 27; i++)
        x[i] = (float)sin(0.37 * i * i + 0.5) * (1 + (i % 5));
    for (int i = 0; i < 6 * 3; i++)
        y[i] = (float)((i * 7) % 3 == 0);
    tiny_ctx c = {&t, x, y, supervised};
    float *g = malloc(sizeof(float) * t.n_params);
    tiny_loss(&c, g);
    double gmax = max_abs(g, t.n_params);
    int outliers = 0;
    double worst = 0;
    for (size_t i = 0; i < t.n_params; i++) {
        double tol = 2e-3 * gmax + 2e-5, best = INFINITY;
        for (int k = 0; k < 2; k++) {
            float keep = t.params_mem[i], h = k ? 1e-4f : 1e-3f;
            t.params_mem[i] = keep + h;
            double hp = (double)t.params_mem[i] - keep, lp = tiny_loss(&c, NULL);
            t.params_mem[i] = keep - h;
            double hm = keep - (double)t.params_mem[i], lm = tiny_loss(&c, NULL);
            t.params_mem[i] = keep;
            best = fmin(best, fabs((lp - lm) / (hp + hm) - g[i]));
        }
        worst = fmax(worst, best / tol);
        if (best > tol) outliers++;
    }
    printf("# tiny %s: %zu params, max|g| %.3g, worst |fd - g| %.3g x tol, %d outliers\n",
           supervised ? "supervised" : "contrastive", t.n_params, gmax, worst, outliers);
    CHECK(gmax > 0);
    CHECK(outliers <= (int)(t.n_params / 50));
    free(g);
    clmr_ref_trainer_close(&t);
}

static void test_tiny_model_fd(void)
{
    tiny_fd(0);
    tiny_fd(1);
}

/* A frozen-encoder head fit changes the head only, yet still updates the BN running statistics
 * (train mode); an odd batch is refused by the contrastive step. */
static void test_frozen_head_step(void)
{
    static const int widths[5] = {1, 3, 4, 5, 6};
    clmr_train_config_t cfg;
    clmr_ref_trainer_t t;
    CHECK(clmr_train_config_init(&cfg, 4, widths, 0, 0, 3) == 0);
    CHECK(clmr_ref_trainer_open(&t, &cfg, 3) == 0);
    for (size_t i = 0; i < t.n_params; i++)
        t.params_mem[i] = (float)sin(1.0 + i) * 0.5f;
    float *before = malloc(sizeof(float) * t.n_params), x[3 * 27], y[9], loss = 0;
    for (int i = 0; i < 81; i++)
        x[i] = (float)cos(0.3 * i * i);
    for (int i = 0; i < 9; i++)
        y[i] = (float)(i % 2);
    memcpy(before, t.params_mem, sizeof(float) * t.n_params);
    float rv0 = t.run_var[0][0];
    CHECK(clmr_ref_train_step_supervised(&t, x, y, 1, &loss) == 0);
    size_t head = clmr_train_head_offset(&cfg);
    CHECK(head + 3 * 6 + 3 == t.n_params);
    CHECK(memcmp(before, t.params_mem, sizeof(float) * head) == 0);
    int moved = 0;
    for (size_t i = head; i < t.n_params; i++)
        moved += t.params_mem[i] != before[i];
    CHECK(moved == (int)(t.n_params - head));
    CHECK(t.run_var[0][0] != rv0);
    CHECK(clmr_ref_train_step_contrastive(&t, x, 0.5f, &loss) == CLMR_EINVAL); /* no projector */
    free(before);
    clmr_ref_trainer_close(&t);
}

int main(void)
{
    RUN_TEST(test_contrastive_step_vs_torch);
    RUN_TEST(test_supervised_step_vs_torch);
    RUN_TEST(test_adam_vs_torch);
    RUN_TEST(test_tiny_model_fd);
    RUN_TEST(test_frozen_head_step);
    return TEST_END();
}
