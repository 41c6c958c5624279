/* supervised.c - fully supervised SampleCNN training loop (see supervised.h).
 *
 * DESIGN: everything is allocated before the first epoch and reused: one block for params | grads
 * | Adam m | Adam v | best params and one for the running statistics and their best copy (the
 * oneDNN trainer wraps the first four and the statistics in place), the batch buffers, the
 * validation embeddings, logits and targets, and the model validation runs on. The chunk block is
 * grown with realloc while files are decoded (large blocks are mmap'd, so glibc moves them with
 * mremap and never touches their pages again) and trimmed once at the end.
 *
 * Validation in eval mode: the oneDNN trainer (train_dnnl.h) has only the training-mode forward
 * (batch statistics). Rather than add an eval-mode net there (new primitives needing their own
 * oracle), validation copies the current weights and running statistics into a clmr_model_t,
 * folds BatchNorm and runs the ordinary inference path (clmr_infer_*), which is what `clmrd eval`
 * and `clmrd tag` run on the saved file and is already checked against PyTorch: the validation
 * loss is exactly that of the model that would be written. The inference context is opened per
 * validation because it reorders the weights into its kernels' layouts when it opens; that is one
 * net build per epoch, small beside an epoch of training steps. Logits come from the embeddings
 * and the current head in double (the inference path only gives sigmoids).
 */
#include "train/supervised.h"

#include "clmr/audio.h"
#include "clmr/error.h"
#include "nn/model_internal.h"
#include "train/adam.h"
#include "train/pretrain.h"
#include "train/ref_backward.h"
#include "train/train_dnnl.h"
#include "util/rng.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

clmr_supervised_params_t clmr_supervised_default_params(void)
{
    clmr_supervised_params_t p;
    memset(&p, 0, sizeof(p));
    p.epochs = 30;
    p.batch = 16;
    p.lr = 3e-4;
    p.weight_decay = 0;
    p.patience = 5;
    p.val_fraction = 0.1;
    p.seed = 42;
    return p;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void shuffle(int *a, size_t n, clmr_rng_t *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)clmr_rng_below(r, i);
        int t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

int clmr_supervised_config(clmr_train_config_t *cfg, const clmr_supervised_params_t *p,
                           const clmr_model_t *init, int n_tags, char **errmsg)
{
    int n = p->n_layers, w[CLMR_MAX_LAYERS + 1] = {1};
    if (n > 0) {
        if (n > CLMR_MAX_LAYERS) return clmr_set_err(errmsg, CLMR_EINVAL, "too many layers");
        memcpy(w, p->widths, sizeof(int) * (size_t)(n + 1));
        w[0] = 1;
        if (init && init->cfg.n_layers != n)
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "--model has %d layers, --widths %d (leave --widths out to use "
                                "the model's)",
                                init->cfg.n_layers, n);
        for (int i = 0; init && i < n; i++)
            if (init->cfg.layer[i].out_ch != w[i + 1])
                return clmr_set_err(errmsg, CLMR_EINVAL,
                                    "--model layer %d has %d channels, --widths %d (leave "
                                    "--widths out to use the model's)",
                                    i, init->cfg.layer[i].out_ch, w[i + 1]);
    } else if (init) {
        n = init->cfg.n_layers;
        for (int i = 0; i < n; i++)
            w[i + 1] = init->cfg.layer[i].out_ch;
    } else {
        clmr_pretrain_params_t d = clmr_pretrain_default_params();
        n = d.n_layers;
        memcpy(w, d.widths, sizeof(w));
    }
    if (n_tags < 1 || clmr_train_config_init(cfg, n, w, 0, 0, n_tags))
        return clmr_set_err(errmsg, CLMR_EINVAL, "invalid encoder widths or tag count");
    return 0;
}

void clmr_supervised_data_free(clmr_supervised_data_t *d)
{
    if (!d) return;
    free(d->x);
    free(d->item);
    memset(d, 0, sizeof(*d));
}

int clmr_supervised_data_load(clmr_supervised_data_t *out, const clmr_labels_t *labels,
                              int chunk_samples, double val_fraction, uint64_t seed,
                              clmr_supervised_load_cb cb, void *ud, char **errmsg)
{
    memset(out, 0, sizeof(*out));
    const int n = labels->n_items;
    const size_t L = (size_t)chunk_samples;
    if (n < 1 || chunk_samples < 1 || !(val_fraction >= 0 && val_fraction < 1))
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "no labelled files, or a bad chunk size or "
                            "validation fraction");
    int *perm = malloc((size_t)n * sizeof(int)), err = 0, k = 0;
    char *msg = NULL;
    clmr_audio_t a = {0};
    clmr_audio_params_t ap = clmr_audio_default_params();
    size_t cap = 0, used = 0;
    if (!perm) goto nomem;
    /* the split: a seeded permutation of the files, the first n_val validate */
    clmr_rng_t r;
    clmr_rng_seed(&r, seed, 0x73706c6974 /* "split" */);
    for (int f = 0; f < n; f++)
        perm[f] = f;
    shuffle(perm, (size_t)n, &r);
    int n_val = 0;
    if (val_fraction > 0 && n >= 2) {
        n_val = (int)lround(val_fraction * n);
        if (n_val < 1) n_val = 1;
        if (n_val > n - 1) n_val = n - 1;
    }
    out->chunk_samples = chunk_samples;
    out->n_files = n;
    out->n_val_files = n_val;
    for (k = 0; k < n; k++) {
        const int f = perm[k];
        if ((err = clmr_audio_decode_file(&a, labels->paths[f], &ap, &msg))) goto file_fail;
        size_t nc = a.n_samples / L;
        int pad = nc == 0;
        if (pad) nc = 1;
        if (used + nc > cap) {
            size_t ncap = cap ? 2 * cap : 64;
            if (ncap < used + nc) ncap = used + nc;
            float *nx = realloc(out->x, ncap * L * sizeof(float));
            if (!nx) goto nomem;
            out->x = nx;
            int *ni = realloc(out->item, ncap * sizeof(int));
            if (!ni) goto nomem;
            out->item = ni;
            cap = ncap;
        }
        float *dst = out->x + used * L;
        if (pad) {
            memcpy(dst, a.samples, a.n_samples * sizeof(float));
            memset(dst + a.n_samples, 0, (L - a.n_samples) * sizeof(float));
        } else {
            memcpy(dst, a.samples, nc * L * sizeof(float));
        }
        for (size_t c = 0; c < nc; c++)
            out->item[used + c] = f;
        used += nc;
        if (k == n_val - 1) out->n_val_chunks = used;
        clmr_audio_free(&a);
        if (cb) cb(ud, k, n);
    }
    out->n_chunks = used;
    if (used < cap) { /* give back the slack of the last doubling */
        float *nx = realloc(out->x, used * L * sizeof(float));
        if (nx) out->x = nx;
    }
    free(perm);
    return 0;
file_fail:
    clmr_set_err(errmsg, err, "%s (labels line %d): %s", labels->paths[perm[k]],
                 labels->lines[perm[k]], msg ? msg : clmr_strerror(err));
    goto fail;
nomem:
    err = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory holding %zu chunks of %zu samples", used,
                       L);
fail:
    free(msg);
    free(perm);
    clmr_audio_free(&a);
    clmr_supervised_data_free(out);
    return err;
}

/* Copies trainer-layout params (clmr_train_params_bind) and running statistics (per layer OC
 * means then OC variances) into m and refolds its BatchNorm. */
static void params_to_model(clmr_model_t *m, const clmr_train_config_t *cfg, float *params,
                            const float *stats)
{
    clmr_train_params_t w;
    clmr_train_params_bind(&w, cfg, params);
    for (int i = 0; i < cfg->enc.n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->enc.layer[i];
        size_t oc = (size_t)l->out_ch;
        memcpy(m->w.conv_w[i], w.conv_w[i], oc * l->in_ch * l->kernel * sizeof(float));
        memcpy(m->w.conv_b[i], w.conv_b[i], oc * sizeof(float));
        memcpy(m->w.bn_gamma[i], w.bn_gamma[i], oc * sizeof(float));
        memcpy(m->w.bn_beta[i], w.bn_beta[i], oc * sizeof(float));
        memcpy(m->w.bn_mean[i], stats, oc * sizeof(float)), stats += oc;
        memcpy(m->w.bn_var[i], stats, oc * sizeof(float)), stats += oc;
    }
    size_t T = (size_t)cfg->enc.n_tags;
    memcpy(m->w.fc_w, w.fc_w, T * cfg->enc.embed_dim * sizeof(float));
    memcpy(m->w.fc_b, w.fc_b, T * sizeof(float));
    clmr__model_fold_bn(m);
}

/* Mean BCE-with-logits of model m over the n validation chunks x against targets (n, T). */
static int validate(double *loss, const clmr_model_t *m, const float *x, size_t n,
                    const float *targets, float *emb, float *logits, int threads, char **errmsg)
{
    const int D = m->cfg.embed_dim, T = m->cfg.n_tags;
    const int omp_before = omp_get_max_threads(); /* clmr_infer_run sets this thread's count */
    clmr_infer_params_t ip = clmr_infer_default_params();
    ip.threads = threads;
    clmr_infer_t *ctx = NULL;
    int err = clmr_infer_open(&ctx, m, &ip, errmsg);
    if (!err && (err = clmr_infer_run(ctx, x, (int)n, emb, NULL)))
        clmr_set_err(errmsg, err, "validation: oneDNN inference failed");
    clmr_infer_close(&ctx);
    omp_set_num_threads(omp_before);
    if (err) return err;
    for (size_t c = 0; c < n; c++) {
        const float *h = emb + c * D;
        for (int t = 0; t < T; t++) {
            const float *w = m->w.fc_w + (size_t)t * D;
            double z = m->w.fc_b[t];
            for (int d = 0; d < D; d++)
                z += (double)w[d] * h[d];
            logits[c * T + t] = (float)z;
        }
    }
    *loss = clmr_ref_bce_logits(NULL, logits, targets, n * (size_t)T);
    return 0;
}

int clmr_supervised_fit(clmr_model_t **out, clmr_supervised_result_t *res,
                        const clmr_supervised_data_t *d, const clmr_labels_t *labels,
                        const clmr_model_t *init, const clmr_supervised_params_t *p,
                        clmr_supervised_cb cb, void *ud, char **errmsg)
{
    *out = NULL;
    memset(res, 0, sizeof(*res));
    res->best_val_loss = NAN;
    const int T = labels->n_vocab, B = p->batch;
    if (T < 1 || p->epochs < 1 || B < 2 || !(p->lr > 0) || !(p->weight_decay >= 0) ||
        p->patience < 1 || !(p->val_fraction >= 0 && p->val_fraction < 1))
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "supervised fit: need tags, epochs >= 1, batch >= 2, lr > 0, "
                            "weight decay >= 0, patience >= 1 and 0 <= val-fraction < 1");
    clmr_train_config_t cfg;
    int err = clmr_supervised_config(&cfg, p, init, T, errmsg);
    if (err) return err;
    if (cfg.enc.chunk_samples != d->chunk_samples)
        return clmr_set_err(errmsg, CLMR_EINVAL, "data cut in %d-sample chunks, the model takes %d",
                            d->chunk_samples, cfg.enc.chunk_samples);
    const size_t nv = d->n_val_chunks, nt = d->n_chunks - nv, L = (size_t)d->chunk_samples;
    const int D = cfg.enc.embed_dim;
    res->train_files = d->n_files - d->n_val_files, res->val_files = d->n_val_files;
    res->train_chunks = nt, res->val_chunks = nv;
    if (nt < (size_t)B)
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            nt < 2 ? "%zu training chunks (from %d files) for batch %d: a step "
                                     "needs 2; add labelled files or lower --val-fraction"
                                   : "%zu training chunks (from %d files) do not fill one batch "
                                     "of %d: lower --batch to that many or less",
                            nt, res->train_files, B);
    const int spe = (int)(nt / (size_t)B);
    res->steps_per_epoch = spe;

    const size_t np = clmr_train_param_count(&cfg);
    size_t ns = 0;
    for (int i = 0; i < cfg.enc.n_layers; i++)
        ns += 2 * (size_t)cfg.enc.layer[i].out_ch;
    float *mem = NULL, *stats = NULL, *xb = NULL, *yb = NULL, *vbuf = NULL;
    int *order = NULL;
    clmr_model_t *vm = NULL;
    clmr_train_dnnl_t *tr = NULL;
    clmr_samplecnn_config_t mcfg = cfg.enc;
    mem = calloc(5 * np, sizeof(float));   /* params | grads | m | v | best params */
    stats = calloc(2 * ns, sizeof(float)); /* running statistics | best copy */
    xb = malloc((size_t)B * L * sizeof(float));
    yb = malloc((size_t)B * T * sizeof(float));
    order = malloc(nt * sizeof(int));
    /* validation: embeddings (nv, D) | logits (nv, T) | targets (nv, T) */
    vbuf = malloc((nv * (size_t)D + 2 * nv * (size_t)T + 1) * sizeof(float));
    if (!mem || !stats || !xb || !yb || !order || !vbuf || clmr__model_alloc(&vm, &mcfg) ||
        clmr_model_set_tags(vm, (const char *const *)labels->vocab, T) ||
        clmr_model_set_name(vm, "clmr-supervised")) {
        err = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory (%zu parameters, batch %d)", np, B);
        goto out;
    }
    float *best = mem + 4 * np, *best_stats = stats + ns;
    float *vemb = vbuf, *vlogits = vbuf + nv * (size_t)D, *vtargets = vlogits + nv * (size_t)T;
    clmr_train_blocks_t blk = {
        .params = mem, .grads = mem + np, .m = mem + 2 * np, .v = mem + 3 * np};
    float *s = stats;
    for (int i = 0; i < cfg.enc.n_layers; i++) {
        int oc = cfg.enc.layer[i].out_ch;
        blk.run_mean[i] = s, s += oc;
        blk.run_var[i] = s, s += oc;
    }

    /* initialisation: the encoder as pretraining's, then the head as nn.Linear (U(+-1/sqrt(D))
     * for weights and bias), from the seed's "init" stream */
    clmr_train_params_t w;
    clmr_train_params_bind(&w, &cfg, blk.params);
    clmr_rng_t r;
    clmr_rng_seed(&r, p->seed, 0x696e6974 /* "init" */);
    clmr_pretrain_init_encoder(&w, blk.run_mean, blk.run_var, &cfg.enc, init, &r);
    const double bound = 1.0 / sqrt((double)D);
    for (size_t i = 0; i < (size_t)T * D; i++)
        w.fc_w[i] = (float)clmr_rng_range(&r, -bound, bound);
    for (int t = 0; t < T; t++)
        w.fc_b[t] = (float)clmr_rng_range(&r, -bound, bound);
    memcpy(best, blk.params, np * sizeof(float));
    memcpy(best_stats, stats, ns * sizeof(float));

    if ((err = clmr_train_dnnl_open_prec(&tr, &cfg, B, &blk, p->precision, errmsg))) goto out;
    for (size_t c = 0; c < nv; c++)
        for (int t = 0; t < T; t++)
            vtargets[c * T + t] = labels->y[(size_t)d->item[c] * T + t] ? 1.0f : 0.0f;
    for (size_t i = 0; i < nt; i++)
        order[i] = (int)(nv + i);

    clmr_adam_params_t adam = clmr_adam_default_params();
    adam.lr = p->lr;
    adam.weight_decay = p->weight_decay;
    clmr_rng_t shuf;
    clmr_rng_seed(&shuf, p->seed, 0x73687566 /* "shuf" */);
    const double t_fit = now_s();
    double best_loss = INFINITY;
    long step = 0;
    int stop = 0;
    for (int epoch = 1; epoch <= p->epochs && !stop; epoch++) {
        const double t_epoch = now_s();
        double t_train = 0, lsum = 0;
        shuffle(order, nt, &shuf);
        clmr_supervised_progress_t pr = {
            .epoch = epoch, .epochs = p->epochs, .steps_per_epoch = spe, .val_loss = NAN};
        int k;
        for (k = 0; k < spe && !stop; k++) {
            const double t0 = now_s();
            for (int i = 0; i < B; i++) {
                size_t c = (size_t)order[(size_t)k * B + i];
                memcpy(xb + (size_t)i * L, d->x + c * L, L * sizeof(float));
                const uint8_t *yr = labels->y + (size_t)d->item[c] * T;
                for (int t = 0; t < T; t++)
                    yb[(size_t)i * T + t] = yr[t] ? 1.0f : 0.0f;
            }
            float loss = 0;
            if ((err =
                     clmr_train_dnnl_step_supervised(tr, xb, yb, 0, &adam, ++step, &loss, NULL))) {
                clmr_set_err(errmsg, err, "oneDNN training step failed (epoch %d, step %d)", epoch,
                             k + 1);
                goto out;
            }
            t_train += now_s() - t0;
            res->steps = step;
            if (!isfinite(loss)) {
                err = clmr_set_err(errmsg, CLMR_EINVAL,
                                   "non-finite training loss at epoch %d, step %d: lower --lr",
                                   epoch, k + 1);
                goto out;
            }
            lsum += loss;
            pr.step = k + 1, pr.total_steps = step, pr.loss = loss;
            pr.train_loss = lsum / (k + 1);
            pr.chunks_per_s = (double)(k + 1) * B / t_train;
            pr.elapsed_s = now_s() - t_fit, pr.epoch_s = now_s() - t_epoch;
            if (cb && cb(ud, &pr)) stop = 1;
        }
        const double tl = lsum / k; /* k >= 1: a stop is only asked after a step */
        double vl = NAN;
        if (nv) {
            params_to_model(vm, &cfg, blk.params, stats);
            if ((err = validate(&vl, vm, d->x, nv, vtargets, vemb, vlogits, p->threads, errmsg)))
                goto out;
        }
        const int is_best = nv ? vl < best_loss : 1;
        if (is_best) {
            best_loss = vl;
            memcpy(best, blk.params, np * sizeof(float));
            memcpy(best_stats, stats, ns * sizeof(float));
            res->best_epoch = epoch;
            res->train_loss = tl;
            res->best_val_loss = vl;
        }
        res->epochs_run = epoch;
        pr.train_loss = tl, pr.val_loss = vl, pr.epoch_done = 1, pr.is_best = is_best;
        pr.elapsed_s = now_s() - t_fit, pr.epoch_s = now_s() - t_epoch;
        if (cb && cb(ud, &pr)) stop = 1;
        if (nv && epoch - res->best_epoch >= p->patience) break;
    }
    res->stopped = stop;
    res->wall_s = now_s() - t_fit;
    if (res->best_epoch == 0) {
        err = clmr_set_err(errmsg, CLMR_EINVAL,
                           "the validation loss was never finite (%d epochs): lower --lr",
                           res->epochs_run);
        goto out;
    }
    params_to_model(vm, &cfg, best, best_stats);
    *out = vm, vm = NULL;
out:
    clmr_train_dnnl_close(&tr);
    clmr_model_close(&vm);
    free(mem);
    free(stats);
    free(xb);
    free(yb);
    free(order);
    free(vbuf);
    return err;
}
