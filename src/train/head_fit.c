/* head_fit.c - the linear-evaluation training loop over cached chunk embeddings.
 *
 * DESIGN: the train and validation chunks are gathered once into contiguous matrices (X, Y), and
 * every buffer (logits, gradients, Adam moments, the best weights) is allocated once before the
 * first epoch. The head is small (D x T, 25,600 weights at the official size), so a batch is three
 * plain loops; the per-row dot products are float (vectorised), the loss sums are double. Random
 * numbers come from splitmix64 so results do not depend on the C library.
 */
#include "train/head_fit.h"

#include "clmr/error.h"
#include "nn/model_internal.h"
#include "train/adam.h"
#include "train/ref_backward.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

clmr_head_fit_params_t clmr_head_fit_default_params(void)
{
    return (clmr_head_fit_params_t){.epochs = 200,
                                    .batch = 256,
                                    .lr = 1e-3,
                                    .patience = 20,
                                    .val_fraction = 0.1,
                                    .seed = 42,
                                    .threads = 1};
}

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) / 9007199254740992.0;
}

static void shuffle_int(int *a, size_t n, uint64_t *s)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(splitmix64(s) % i);
        int t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* logits (B, T) = X rows (B, D) W^T + b, rows picked by idx (NULL = consecutive from x). wt is W
 * transposed, (D, T): the inner loop then runs over tags with no reduction, which the compiler
 * vectorises without reassociating float sums (a dot-product loop would stay scalar). */
static void head_forward(float *logits, const float *x, const int *idx, int B, int D, int T,
                         const float *wt, const float *b, int threads)
{
#pragma omp parallel for num_threads(threads) if (threads > 1 && B >= 64)
    for (int i = 0; i < B; i++) {
        const float *h = x + (size_t)(idx ? idx[i] : i) * D;
        float *z = logits + (size_t)i * T;
        for (int t = 0; t < T; t++)
            z[t] = b[t];
        for (int d = 0; d < D; d++) {
            const float hd = h[d], *w = wt + (size_t)d * T;
            for (int t = 0; t < T; t++)
                z[t] += hd * w[t];
        }
    }
}

static void transpose(float *wt, const float *w, int T, int D)
{
    for (int t = 0; t < T; t++)
        for (int d = 0; d < D; d++)
            wt[(size_t)d * T + t] = w[(size_t)t * D + d];
}

/* Mean BCE-with-logits over n rows of X against Y, in chunks of `chunk` rows through logits. */
static double eval_loss(const float *x, const float *y, size_t n, int D, int T, const float *wt,
                        const float *b, float *logits, int chunk, int threads)
{
    double sum = 0;
    for (size_t i = 0; i < n; i += (size_t)chunk) {
        int B = (int)(n - i < (size_t)chunk ? n - i : (size_t)chunk);
        head_forward(logits, x + i * D, NULL, B, D, T, wt, b, threads);
        sum += clmr_ref_bce_logits(NULL, logits, y + i * T, (size_t)B * T) * B;
    }
    return sum / (double)n;
}

/* The split by file (a seeded permutation; the first n_val files validate) and the chunk rows
 * gathered into X (N, D) and Y (N, T): validation rows [0, nv), training rows [nv, N). Consumes
 * the random stream exactly once per call (same seed, same split). */
static int split_gather(float **Xo, float **Yo, size_t *nvo, size_t *nto,
                        clmr_head_fit_result_t *res, const float *const *emb, const int *n_chunks,
                        int n_files, int D, const uint8_t *y, int T,
                        const clmr_head_fit_params_t *p, uint64_t *rng)
{
    int n_val = 0;
    int *perm = calloc((size_t)n_files, sizeof(int));
    if (!perm) return CLMR_ENOMEM;
    for (int f = 0; f < n_files; f++)
        perm[f] = f;
    shuffle_int(perm, (size_t)n_files, rng);
    if (p->val_fraction > 0 && n_files >= 2) {
        n_val = (int)lround(p->val_fraction * n_files);
        if (n_val < 1) n_val = 1;
        if (n_val > n_files - 1) n_val = n_files - 1;
    }
    size_t nv = 0, nt = 0;
    for (int k = 0; k < n_files; k++)
        *(k < n_val ? &nv : &nt) += (size_t)n_chunks[perm[k]];
    res->train_files = n_files - n_val, res->val_files = n_val;
    res->train_chunks = nt, res->val_chunks = nv;
    const size_t N = nt + nv;
    float *X = malloc(N * D * sizeof(float)), *Y = malloc(N * T * sizeof(float));
    if (!X || !Y) {
        free(X);
        free(Y);
        free(perm);
        return CLMR_ENOMEM;
    }
    size_t row = 0;
    for (int k = 0; k < n_files; k++) {
        int f = perm[k];
        for (int c = 0; c < n_chunks[f]; c++, row++) {
            memcpy(X + row * D, emb[f] + (size_t)c * D, (size_t)D * sizeof(float));
            for (int t = 0; t < T; t++)
                Y[row * T + t] = y[(size_t)f * T + t] ? 1.0f : 0.0f;
        }
    }
    free(perm);
    *Xo = X, *Yo = Y, *nvo = nv, *nto = nt;
    return 0;
}

static int check_params(const float *const *emb, const int *n_chunks, int n_files, int D, int T,
                        const clmr_head_fit_params_t *p, char **errmsg)
{
    (void)emb;
    if (n_files < 1 || D < 1 || T < 1 || p->epochs < 1 || p->batch < 1 || !(p->lr > 0) ||
        p->patience < 1 || !(p->val_fraction >= 0 && p->val_fraction < 1))
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "head fit: need files, epochs >= 1, batch >= 1, lr > 0, patience >= 1 "
                            "and 0 <= val-fraction < 1");
    for (int f = 0; f < n_files; f++)
        if (n_chunks[f] < 1)
            return clmr_set_err(errmsg, CLMR_EINVAL, "head fit: file %d has no chunk", f);
    return 0;
}

int clmr_head_fit(float *fc_w, float *fc_b, clmr_head_fit_result_t *res, const float *const *emb,
                  const int *n_chunks, int n_files, int D, const uint8_t *y, int T,
                  const clmr_head_fit_params_t *p, clmr_head_fit_cb cb, void *ud, char **errmsg)
{
    memset(res, 0, sizeof(*res));
    res->best_val_loss = NAN;
    int perr = check_params(emb, n_chunks, n_files, D, T, p, errmsg);
    if (perr) return perr;
    uint64_t rng = p->seed;
    const int threads = p->threads > 0 ? p->threads : omp_get_max_threads();
    int err = CLMR_ENOMEM;
    float *X = NULL, *Y = NULL, *blk = NULL, *logits = NULL;
    int *order = NULL;
    size_t nv = 0, nt = 0;
    if ((err = split_gather(&X, &Y, &nv, &nt, res, emb, n_chunks, n_files, D, y, T, p, &rng)))
        goto out;
    err = CLMR_ENOMEM;
    const size_t nw = (size_t)T * D + (size_t)T;
    const int B = p->batch;
    /* params | grads | m | v | best params | W transposed */
    blk = calloc(6 * nw, sizeof(float));
    logits = malloc(3 * (size_t)B * T * sizeof(float)); /* logits | dlogits | targets */
    order = malloc((nt ? nt : 1) * sizeof(int));
    if (!blk || !logits || !order) goto out;
    float *W = blk, *bias = blk + (size_t)T * D, *G = blk + nw, *M = blk + 2 * nw,
          *V = blk + 3 * nw, *best = blk + 4 * nw, *WT = blk + 5 * nw;
    float *dlogits = logits + (size_t)B * T, *yb = logits + 2 * (size_t)B * T;
    const float *Xt = X + nv * D, *Yt = Y + nv * T;
    double bound = 1.0 / sqrt((double)D); /* nn.Linear's default initialisation */
    for (size_t i = 0; i < nw; i++)
        W[i] = (float)((2 * uniform01(&rng) - 1) * bound);
    if (p->init) memcpy(W, p->init, nw * sizeof(float));
    memcpy(best, W, nw * sizeof(float));
    clmr_adam_params_t adam = clmr_adam_default_params();
    adam.lr = p->lr;
    long step = 0;
    double best_loss = INFINITY;
    for (size_t i = 0; i < nt; i++)
        order[i] = (int)i;
    for (int epoch = 1; epoch <= p->epochs; epoch++) {
        shuffle_int(order, nt, &rng);
        double tsum = 0;
        for (size_t s = 0; s < nt; s += (size_t)B) {
            int b = (int)(nt - s < (size_t)B ? nt - s : (size_t)B);
            transpose(WT, W, T, D);
            head_forward(logits, Xt, order + s, b, D, T, WT, bias, threads);
            for (int i = 0; i < b; i++)
                memcpy(yb + (size_t)i * T, Yt + (size_t)order[s + i] * T,
                       (size_t)T * sizeof(float));
            tsum += clmr_ref_bce_logits(dlogits, logits, yb, (size_t)b * T) * b;
            /* dW (T, D) = dlogits^T X_batch, db = column sums; G is overwritten */
            float *dW = G, *db = G + (size_t)T * D;
#pragma omp parallel for num_threads(threads) if (threads > 1)
            for (int t = 0; t < T; t++) {
                float *gw = dW + (size_t)t * D;
                memset(gw, 0, (size_t)D * sizeof(float));
                double gb = 0;
                for (int i = 0; i < b; i++) {
                    float g = dlogits[(size_t)i * T + t];
                    const float *h = Xt + (size_t)order[s + i] * D;
                    for (int d = 0; d < D; d++)
                        gw[d] += g * h[d];
                    gb += g;
                }
                db[t] = (float)gb;
            }
            clmr_adam_update(W, G, M, V, nw, ++step, &adam);
        }
        double tl = nt ? tsum / (double)nt : NAN;
        if (nv) transpose(WT, W, T, D);
        double vl = nv ? eval_loss(X, Y, nv, D, T, WT, bias, logits, B, threads) : NAN;
        int is_best = nv ? vl < best_loss : 1;
        if (is_best) {
            best_loss = nv ? vl : best_loss;
            memcpy(best, W, nw * sizeof(float));
            res->best_epoch = epoch;
            res->train_loss = tl;
            res->best_val_loss = nv ? vl : NAN;
        }
        res->epochs_run = epoch;
        if (cb) cb(ud, epoch, tl, vl, is_best);
        if (nv && epoch - res->best_epoch >= p->patience) break;
    }
    memcpy(fc_w, best, (size_t)T * D * sizeof(float));
    memcpy(fc_b, best + (size_t)T * D, (size_t)T * sizeof(float));
    err = 0;
out:
    if (err) clmr_set_err(errmsg, err, "head fit: out of memory");
    free(order);
    free(X);
    free(Y);
    free(blk);
    free(logits);
    return err;
}

/* MLP head forward for B rows (idx or consecutive): hid (B, H) = relu(x W1^T + b1), logits (B, T)
 * = hid W2^T + b2, with W1t (D, H) and W2t (H, T) transposed so the inner loops are axpys. */
static void mlp_forward(float *hid, float *logits, const float *x, const int *idx, int B, int D,
                        int H, int T, const float *W1t, const float *b1, const float *W2t,
                        const float *b2, int threads)
{
#pragma omp parallel for num_threads(threads) if (threads > 1 && B >= 64)
    for (int i = 0; i < B; i++) {
        const float *xi = x + (size_t)(idx ? idx[i] : i) * D;
        float *hi = hid + (size_t)i * H, *z = logits + (size_t)i * T;
        for (int h = 0; h < H; h++)
            hi[h] = b1[h];
        for (int d = 0; d < D; d++) {
            const float xd = xi[d], *w = W1t + (size_t)d * H;
            for (int h = 0; h < H; h++)
                hi[h] += xd * w[h];
        }
        for (int h = 0; h < H; h++)
            hi[h] = hi[h] > 0 ? hi[h] : 0;
        for (int t = 0; t < T; t++)
            z[t] = b2[t];
        for (int h = 0; h < H; h++) {
            const float hh = hi[h], *w = W2t + (size_t)h * T;
            if (hh == 0) continue;
            for (int t = 0; t < T; t++)
                z[t] += hh * w[t];
        }
    }
}

int clmr_head_fit_mlp(float *hid_w, float *hid_b, float *fc_w, float *fc_b,
                      clmr_head_fit_result_t *res, const float *const *emb, const int *n_chunks,
                      int n_files, int D, const uint8_t *y, int T, int H,
                      const clmr_head_fit_params_t *p, clmr_head_fit_cb cb, void *ud, char **errmsg)
{
    memset(res, 0, sizeof(*res));
    res->best_val_loss = NAN;
    int err = check_params(emb, n_chunks, n_files, D, T, p, errmsg);
    if (err) return err;
    if (H < 1 || H > 4096)
        return clmr_set_err(errmsg, CLMR_EINVAL, "head fit: hidden width %d not in 1..4096", H);
    uint64_t rng = p->seed;
    const int threads = p->threads > 0 ? p->threads : omp_get_max_threads();
    float *X = NULL, *Y = NULL, *blk = NULL, *buf = NULL;
    int *order = NULL;
    size_t nv = 0, nt = 0;
    if ((err = split_gather(&X, &Y, &nv, &nt, res, emb, n_chunks, n_files, D, y, T, p, &rng)))
        goto out;
    err = CLMR_ENOMEM;
    /* block: W1 (H, D) | b1 (H) | W2 (T, H) | b2 (T) */
    const size_t n1 = (size_t)H * D, n2 = (size_t)T * H, nw = n1 + H + n2 + T;
    const int B = p->batch;
    /* params | grads | m | v | best | W1t (D, H) + W2t (H, T) */
    blk = calloc(6 * nw, sizeof(float));
    /* hid | dhid | logits | dlogits | targets */
    buf = malloc(((size_t)2 * B * H + (size_t)3 * B * T) * sizeof(float));
    order = malloc((nt ? nt : 1) * sizeof(int));
    if (!blk || !buf || !order) goto out;
    float *W1 = blk, *b1 = W1 + n1, *W2 = b1 + H, *b2 = W2 + n2;
    float *G = blk + nw, *M = blk + 2 * nw, *V = blk + 3 * nw, *best = blk + 4 * nw;
    float *W1t = blk + 5 * nw, *W2t = W1t + n1;
    float *gW1 = G, *gb1 = gW1 + n1, *gW2 = gb1 + H, *gb2 = gW2 + n2;
    float *hid = buf, *dhid = hid + (size_t)B * H, *logits = dhid + (size_t)B * H,
          *dlogits = logits + (size_t)B * T, *yb = dlogits + (size_t)B * T;
    const float *Xt = X + nv * D, *Yt = Y + nv * T;
    /* nn.Linear's default initialisation for both layers */
    double bd = 1.0 / sqrt((double)D), bh = 1.0 / sqrt((double)H);
    for (size_t i = 0; i < n1 + H; i++)
        W1[i] = (float)((2 * uniform01(&rng) - 1) * bd);
    for (size_t i = n1 + H; i < nw; i++)
        blk[i] = (float)((2 * uniform01(&rng) - 1) * bh);
    memcpy(best, blk, nw * sizeof(float));
    clmr_adam_params_t adam = clmr_adam_default_params();
    adam.lr = p->lr;
    long step = 0;
    double best_loss = INFINITY;
    for (size_t i = 0; i < nt; i++)
        order[i] = (int)i;
    for (int epoch = 1; epoch <= p->epochs; epoch++) {
        shuffle_int(order, nt, &rng);
        double tsum = 0;
        for (size_t s = 0; s < nt; s += (size_t)B) {
            int b = (int)(nt - s < (size_t)B ? nt - s : (size_t)B);
            transpose(W1t, W1, H, D);
            transpose(W2t, W2, T, H);
            mlp_forward(hid, logits, Xt, order + s, b, D, H, T, W1t, b1, W2t, b2, threads);
            for (int i = 0; i < b; i++)
                memcpy(yb + (size_t)i * T, Yt + (size_t)order[s + i] * T,
                       (size_t)T * sizeof(float));
            tsum += clmr_ref_bce_logits(dlogits, logits, yb, (size_t)b * T) * b;
            /* dhid (b, H) = dlogits W2, zero where the ReLU was off */
#pragma omp parallel for num_threads(threads) if (threads > 1 && b >= 64)
            for (int i = 0; i < b; i++) {
                float *dh = dhid + (size_t)i * H;
                const float *hi = hid + (size_t)i * H;
                memset(dh, 0, (size_t)H * sizeof(float));
                for (int t = 0; t < T; t++) {
                    const float g = dlogits[(size_t)i * T + t], *w = W2 + (size_t)t * H;
                    for (int h = 0; h < H; h++)
                        dh[h] += g * w[h];
                }
                for (int h = 0; h < H; h++)
                    if (hi[h] <= 0) dh[h] = 0;
            }
            /* dW2 (T, H) = dlogits^T hid, db2; dW1 (H, D) = dhid^T X, db1 */
#pragma omp parallel for num_threads(threads) if (threads > 1)
            for (int t = 0; t < T; t++) {
                float *gw = gW2 + (size_t)t * H;
                memset(gw, 0, (size_t)H * sizeof(float));
                double gb = 0;
                for (int i = 0; i < b; i++) {
                    const float g = dlogits[(size_t)i * T + t], *hi = hid + (size_t)i * H;
                    for (int h = 0; h < H; h++)
                        gw[h] += g * hi[h];
                    gb += g;
                }
                gb2[t] = (float)gb;
            }
#pragma omp parallel for num_threads(threads) if (threads > 1)
            for (int h = 0; h < H; h++) {
                float *gw = gW1 + (size_t)h * D;
                memset(gw, 0, (size_t)D * sizeof(float));
                double gb = 0;
                for (int i = 0; i < b; i++) {
                    const float g = dhid[(size_t)i * H + h];
                    if (g == 0) continue;
                    const float *xi = Xt + (size_t)order[s + i] * D;
                    for (int d = 0; d < D; d++)
                        gw[d] += g * xi[d];
                    gb += g;
                }
                gb1[h] = (float)gb;
            }
            clmr_adam_update(blk, G, M, V, nw, ++step, &adam);
        }
        double tl = nt ? tsum / (double)nt : NAN, vl = NAN;
        if (nv) {
            transpose(W1t, W1, H, D);
            transpose(W2t, W2, T, H);
            double sum = 0;
            for (size_t i = 0; i < nv; i += (size_t)B) {
                int b = (int)(nv - i < (size_t)B ? nv - i : (size_t)B);
                mlp_forward(hid, logits, X + i * D, NULL, b, D, H, T, W1t, b1, W2t, b2, threads);
                sum += clmr_ref_bce_logits(NULL, logits, Y + i * T, (size_t)b * T) * b;
            }
            vl = sum / (double)nv;
        }
        int is_best = nv ? vl < best_loss : 1;
        if (is_best) {
            best_loss = nv ? vl : best_loss;
            memcpy(best, blk, nw * sizeof(float));
            res->best_epoch = epoch;
            res->train_loss = tl;
            res->best_val_loss = nv ? vl : NAN;
        }
        res->epochs_run = epoch;
        if (cb) cb(ud, epoch, tl, vl, is_best);
        if (nv && epoch - res->best_epoch >= p->patience) break;
    }
    memcpy(hid_w, best, n1 * sizeof(float));
    memcpy(hid_b, best + n1, (size_t)H * sizeof(float));
    memcpy(fc_w, best + n1 + H, n2 * sizeof(float));
    memcpy(fc_b, best + n1 + H + n2, (size_t)T * sizeof(float));
    err = 0;
out:
    if (err == CLMR_ENOMEM) clmr_set_err(errmsg, err, "head fit: out of memory");
    free(order);
    free(X);
    free(Y);
    free(blk);
    free(buf);
    return err;
}

int clmr_head_model_build_mlp(clmr_model_t **out, const clmr_model_t *parent,
                              const char *const *tags, int T, int H, const float *hid_w,
                              const float *hid_b, const float *fc_w, const float *fc_b)
{
    *out = NULL;
    if (T < 1 || H < 1 || H > CLMR_HEAD_MAX_HIDDEN) return CLMR_EINVAL;
    clmr_samplecnn_config_t cfg = parent->cfg, enc = parent->cfg;
    cfg.n_tags = T;
    cfg.head_hidden = H;
    enc.n_tags = 0;
    clmr_model_t *m = NULL;
    int err = clmr__model_alloc(&m, &cfg);
    if (err) return err;
    const int D = cfg.embed_dim;
    memcpy(m->params, parent->params, clmr_samplecnn_param_count(&enc) * sizeof(float));
    memcpy(m->w.hid_w, hid_w, (size_t)H * D * sizeof(float));
    memcpy(m->w.hid_b, hid_b, (size_t)H * sizeof(float));
    memcpy(m->w.fc_w, fc_w, (size_t)T * H * sizeof(float));
    memcpy(m->w.fc_b, fc_b, (size_t)T * sizeof(float));
    clmr__model_fold_bn(m);
    m->sample_rate = parent->sample_rate;
    if ((err = clmr_model_set_tags(m, tags, T)) ||
        (err = clmr_model_set_name(m, clmr_model_name(parent)[0] ? clmr_model_name(parent)
                                                                 : "clmr"))) {
        clmr_model_close(&m);
        return err;
    }
    *out = m;
    return 0;
}

int clmr_head_model_build(clmr_model_t **out, const clmr_model_t *parent, const char *const *tags,
                          int T, const float *fc_w, const float *fc_b)
{
    *out = NULL;
    if (T < 1) return CLMR_EINVAL;
    clmr_samplecnn_config_t cfg = parent->cfg, enc = parent->cfg;
    cfg.n_tags = T;
    cfg.head_hidden = 0; /* a linear head, whatever the parent's (it may be an MLP) */
    enc.n_tags = 0;
    clmr_model_t *m = NULL;
    int err = clmr__model_alloc(&m, &cfg);
    if (err) return err;
    /* the encoder is the same prefix of the parameter block whatever the head */
    memcpy(m->params, parent->params, clmr_samplecnn_param_count(&enc) * sizeof(float));
    memcpy(m->w.fc_w, fc_w, (size_t)T * cfg.embed_dim * sizeof(float));
    memcpy(m->w.fc_b, fc_b, (size_t)T * sizeof(float));
    clmr__model_fold_bn(m);
    m->sample_rate = parent->sample_rate;
    if ((err = clmr_model_set_tags(m, tags, T)) ||
        (err = clmr_model_set_name(m, clmr_model_name(parent)[0] ? clmr_model_name(parent)
                                                                 : "clmr"))) {
        clmr_model_close(&m);
        return err;
    }
    *out = m;
    return 0;
}
