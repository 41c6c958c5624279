/* test_supervised.c - fully supervised training (train/supervised.h) on real WAV files written here
 * with libsndfile and decoded by the real decoder. Small widths (7 layers, 729-sample chunks).
 * Checks: chunking as clmr_track_analyze (tail dropped, a short file zero-padded to one chunk),
 * validation files first and split by file; the reported best validation loss equals the BCE of
 * the WRITTEN model's eval-mode logits computed by the naive reference forward (so validation runs
 * in eval mode and the best epoch's weights are the ones written; tolerance 1e-4: oneDNN with
 * folded BN against the naive float forward); same seed, same weights; a stop request validates
 * the partial epoch; starting from a model keeps its encoder (lr 1e-12); clear errors.
 */
#include "clmr/audio.h"
#include "clmr/error.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "nn/model_internal.h"
#include "nn/ref_ops.h"
#include "train/ref_backward.h"
#include "train/supervised.h"

#include <omp.h>
#include <sndfile.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static const char *TINY = CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors";
enum { L = 729, N_FILES = 8 };

static void write_wav(const char *name, int kind, int n, unsigned seed)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    SF_INFO info = {.samplerate = 22050, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    float *x = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = kind ? 0.3f * ((float)(seed >> 8) / 16777216.0f - 0.5f)
                    : (float)(0.5 * sin(2 * M_PI * (200.0 + 40 * (seed % 3)) * i / 22050.0));
    }
    sf_write_float(f, x, n);
    sf_close(f);
    free(x);
}

static int file_len(int i)
{
    return i == 5 ? 500 : 3 * L + 100 + 37 * i; /* file 5 is shorter than one chunk */
}

/* Eight files, tone (tag "tone") and noise ("noise") alternating; returns the labels path. */
static const char *make_set(void)
{
    static char lp[128];
    snprintf(lp, sizeof lp, "%s/labels.jsonl", dir);
    FILE *f = fopen(lp, "w");
    for (int i = 0; i < N_FILES; i++) {
        char name[32];
        snprintf(name, sizeof name, "f%d.wav", i);
        write_wav(name, i % 2, file_len(i), 7u + (unsigned)i);
        fprintf(f, "{\"path\": \"%s\", \"tags\": [\"%s\"]}\n", name, i % 2 ? "noise" : "tone");
    }
    fclose(f);
    return lp;
}

static clmr_supervised_params_t small_params(void)
{
    clmr_supervised_params_t p = clmr_supervised_default_params();
    static const int w[] = {1, 8, 8, 16, 16, 16, 16, 32};
    p.n_layers = 7;
    memcpy(p.widths, w, sizeof(w));
    p.epochs = 3;
    p.batch = 4;
    p.lr = 1e-3;
    p.val_fraction = 0.25;
    p.seed = 3;
    p.threads = 1;
    return p;
}

static void test_data_load_chunks_like_track_analyze(const clmr_labels_t *lab)
{
    clmr_supervised_data_t d;
    char *err = NULL;
    int rc = clmr_supervised_data_load(&d, lab, L, 0.25, 3, NULL, NULL, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    free(err);
    if (rc) return;
    size_t want = 0;
    for (int i = 0; i < N_FILES; i++)
        want += file_len(i) < L ? 1 : (size_t)(file_len(i) / L);
    CHECK(d.n_files == N_FILES && d.n_val_files == 2 && d.n_chunks == want);
    /* validation files first: the items of the first n_val_chunks chunks are 2 files, never seen
     * again in the training part */
    int seen_val[N_FILES] = {0}, nv_files = 0;
    for (size_t c = 0; c < d.n_val_chunks; c++)
        if (!seen_val[d.item[c]]++) nv_files++;
    CHECK(nv_files == 2);
    for (size_t c = d.n_val_chunks; c < d.n_chunks; c++)
        CHECK(!seen_val[d.item[c]]);
    /* each file's chunks are consecutive decoded samples; the short file is zero-padded */
    for (size_t c = 0; c < d.n_chunks;) {
        int f = d.item[c];
        clmr_audio_t a;
        CHECK(clmr_audio_decode_file(&a, lab->paths[f], NULL, NULL) == 0);
        size_t nc = a.n_samples < L ? 1 : a.n_samples / L;
        for (size_t k = 0; k < nc; k++, c++) {
            CHECK(d.item[c] == f);
            size_t have = a.n_samples < L ? a.n_samples : L;
            CHECK(memcmp(d.x + c * L, a.samples + k * L, have * sizeof(float)) == 0);
            for (size_t j = have; j < L; j++)
                CHECK(d.x[c * L + j] == 0.0f);
        }
        clmr_audio_free(&a);
    }
    clmr_supervised_data_free(&d);
}

typedef struct {
    int epochs_seen, steps_seen, stop_at_step;
    double val[16];
} cb_state_t;

static int record_cb(void *ud, const clmr_supervised_progress_t *p)
{
    cb_state_t *s = ud;
    if (p->epoch_done) {
        if (s->epochs_seen < 16) s->val[s->epochs_seen] = p->val_loss;
        s->epochs_seen++;
        return 0;
    }
    s->steps_seen++;
    return s->stop_at_step && s->steps_seen >= s->stop_at_step;
}

/* BCE of m's eval-mode logits (naive forward) on the validation chunks of d. */
static double ref_val_loss(const clmr_model_t *m, const clmr_supervised_data_t *d,
                           const clmr_labels_t *lab)
{
    const size_t nv = d->n_val_chunks;
    const int T = m->cfg.n_tags, D = m->cfg.embed_dim;
    float *emb = malloc(nv * D * sizeof(float)), *lg = malloc(nv * T * sizeof(float)),
          *y = malloc(nv * T * sizeof(float));
    CHECK(clmr_ref_samplecnn_forward(&m->cfg, &m->w, d->x, (int)nv, emb, lg) == 0);
    for (size_t c = 0; c < nv; c++)
        for (int t = 0; t < T; t++)
            y[c * T + t] = lab->y[(size_t)d->item[c] * T + t];
    double l = clmr_ref_bce_logits(NULL, lg, y, nv * T);
    free(emb), free(lg), free(y);
    return l;
}

static void test_fit_validates_the_written_model(const clmr_labels_t *lab)
{
    clmr_supervised_params_t p = small_params();
    clmr_supervised_data_t d;
    clmr_model_t *a = NULL, *b = NULL;
    clmr_supervised_result_t ra, rb;
    cb_state_t st = {0};
    char *err = NULL;
    CHECK(clmr_supervised_data_load(&d, lab, L, p.val_fraction, p.seed, NULL, NULL, NULL) == 0);
    int rc = clmr_supervised_fit(&a, &ra, &d, lab, NULL, &p, record_cb, &st, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    free(err), err = NULL;
    if (rc) goto out;
    size_t nt = d.n_chunks - d.n_val_chunks;
    CHECK(ra.epochs_run == 3 && st.epochs_seen == 3 && !ra.stopped);
    CHECK(ra.steps_per_epoch == (int)(nt / 4) && ra.steps == 3L * ra.steps_per_epoch);
    CHECK(st.steps_seen == ra.steps);
    CHECK(ra.train_chunks == nt && ra.val_chunks == d.n_val_chunks && ra.val_files == 2);
    int argmin = 0;
    for (int e = 1; e < 3; e++)
        if (st.val[e] < st.val[argmin]) argmin = e;
    CHECK(ra.best_epoch == argmin + 1 && ra.best_val_loss == st.val[argmin]);
    CHECK(a->cfg.n_tags == 2 && strcmp(a->tags[0], "tone") == 0 && a->cfg.chunk_samples == L);
    double ref = ref_val_loss(a, &d, lab);
    CHECK_NEAR(ra.best_val_loss, ref, 1e-4);
    printf("# val losses %.5f %.5f %.5f, best epoch %d, reference %.6f\n", st.val[0], st.val[1],
           st.val[2], ra.best_epoch, ref);
    /* same seed, same data: the same weights */
    CHECK(clmr_supervised_fit(&b, &rb, &d, lab, NULL, &p, NULL, NULL, NULL) == 0);
    CHECK(b &&
          memcmp(a->params, b->params, clmr_samplecnn_param_count(&a->cfg) * sizeof(float)) == 0);
out:
    clmr_model_close(&a);
    clmr_model_close(&b);
    clmr_supervised_data_free(&d);
}

static void test_stop_validates_the_partial_epoch(const clmr_labels_t *lab)
{
    clmr_supervised_params_t p = small_params();
    clmr_supervised_data_t d;
    clmr_model_t *m = NULL;
    clmr_supervised_result_t r;
    cb_state_t st = {.stop_at_step = 2};
    CHECK(clmr_supervised_data_load(&d, lab, L, p.val_fraction, p.seed, NULL, NULL, NULL) == 0);
    CHECK(clmr_supervised_fit(&m, &r, &d, lab, NULL, &p, record_cb, &st, NULL) == 0);
    CHECK(m && r.stopped && r.steps == 2 && r.epochs_run == 1 && r.best_epoch == 1);
    CHECK(st.epochs_seen == 1 && isfinite(st.val[0]));
    if (m) CHECK_NEAR(r.best_val_loss, ref_val_loss(m, &d, lab), 1e-4);
    clmr_model_close(&m);
    clmr_supervised_data_free(&d);
}

static void test_errors(const clmr_labels_t *lab)
{
    clmr_supervised_params_t p = small_params();
    clmr_supervised_data_t d;
    clmr_model_t *m = NULL, *tiny = NULL;
    clmr_supervised_result_t r;
    char *err = NULL;
    CHECK(clmr_supervised_data_load(&d, lab, L, p.val_fraction, p.seed, NULL, NULL, NULL) == 0);
    p.batch = (int)(d.n_chunks - d.n_val_chunks) + 1;
    CHECK(clmr_supervised_fit(&m, &r, &d, lab, NULL, &p, NULL, NULL, &err) == CLMR_EINVAL && !m);
    CHECKF(err && strstr(err, "lower --batch"), "%s", err ? err : "(null)");
    free(err), err = NULL;
    /* widths that are not the --model's */
    CHECK(clmr_model_load(&tiny, TINY, NULL) == 0);
    clmr_train_config_t cfg;
    p = small_params();
    CHECK(clmr_supervised_config(&cfg, &p, tiny, 2, &err) == CLMR_EINVAL);
    CHECKF(err && strstr(err, "--widths"), "%s", err ? err : "(null)");
    free(err), err = NULL;
    p.n_layers = 0;
    CHECK(clmr_supervised_config(&cfg, &p, tiny, 2, NULL) == 0 && cfg.enc.chunk_samples == 59049);
    clmr_model_close(&tiny);
    clmr_supervised_data_free(&d);
    /* an unreadable file is named with its labels line */
    clmr_labels_t bad = *lab;
    char *paths[N_FILES];
    memcpy(paths, lab->paths, sizeof(paths));
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing.wav", dir);
    paths[3] = missing;
    bad.paths = paths;
    CHECK(clmr_supervised_data_load(&d, &bad, L, 0.25, 3, NULL, NULL, &err) != 0 && !d.x);
    CHECKF(err && strstr(err, "missing.wav (labels line 4)"), "%s", err ? err : "(null)");
    free(err);
}

static void test_init_keeps_the_models_encoder(void)
{
    clmr_model_t *tiny = NULL, *m = NULL;
    CHECK(clmr_model_load(&tiny, TINY, NULL) == 0);
    if (!tiny) return;
    char lp[128];
    snprintf(lp, sizeof lp, "%s/full.jsonl", dir);
    FILE *f = fopen(lp, "w");
    for (int i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "full%d.wav", i);
        write_wav(name, i % 2, 59049, 100u + (unsigned)i);
        fprintf(f, "{\"path\": \"%s\", \"tags\": [\"%s\"]}\n", name, i % 2 ? "noise" : "tone");
    }
    fclose(f);
    clmr_labels_t lab;
    CHECK(clmr_labels_load(&lab, lp, NULL, 0, NULL) == 0);
    clmr_supervised_params_t p = clmr_supervised_default_params();
    p.epochs = 1, p.batch = 2, p.lr = 1e-12, p.val_fraction = 0.25, p.threads = 1;
    clmr_supervised_data_t d;
    clmr_supervised_result_t r;
    CHECK(clmr_supervised_data_load(&d, &lab, 59049, p.val_fraction, p.seed, NULL, NULL, NULL) ==
          0);
    char *err = NULL;
    int rc = clmr_supervised_fit(&m, &r, &d, &lab, tiny, &p, NULL, NULL, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    free(err);
    if (m) {
        CHECK(m->cfg.n_layers == tiny->cfg.n_layers && m->cfg.n_tags == 2);
        double worst = 0;
        for (int i = 0; i < m->cfg.n_layers; i++) {
            const clmr_layer_shape_t *l = &m->cfg.layer[i];
            size_t n = (size_t)l->out_ch * l->in_ch * l->kernel;
            double dd = t_max_rel_diff(m->w.conv_w[i], tiny->w.conv_w[i], n);
            worst = dd > worst ? dd : worst;
        }
        CHECKF(worst < 1e-6, "encoder moved by %g", worst);
    }
    clmr_model_close(&m);
    clmr_model_close(&tiny);
    clmr_supervised_data_free(&d);
    clmr_labels_free(&lab);
}

static clmr_labels_t g_lab;
static void t_data(void)
{
    test_data_load_chunks_like_track_analyze(&g_lab);
}
static void t_fit(void)
{
    test_fit_validates_the_written_model(&g_lab);
}
static void t_stop(void)
{
    test_stop_validates_the_partial_epoch(&g_lab);
}
static void t_errors(void)
{
    test_errors(&g_lab);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/clmr_test_sup_%d", (int)getpid());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return 1;
    omp_set_num_threads(1); /* the trainer's kernels are run-to-run deterministic per count */
    char *err = NULL;
    if (clmr_labels_load(&g_lab, make_set(), NULL, 0, &err) != 0) {
        printf("Bail out! labels: %s\n", err ? err : "?");
        return 1;
    }
    RUN_TEST(t_data);
    RUN_TEST(t_fit);
    RUN_TEST(t_stop);
    RUN_TEST(t_errors);
    RUN_TEST(test_init_keeps_the_models_encoder);
    clmr_labels_free(&g_lab);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return TEST_END();
}
