/* finetune.c - background fine-tuning run and its evaluation (see finetune.h).
 *
 * DESIGN: buffers (teacher scores, logits scratch, evaluation embeddings) are allocated once
 * before the loop. Evaluation uses eval-mode inference contexts for both models: tag agreement on
 * whole held-out tracks (at most EVAL_MAX_CHUNKS chunks each, to bound the cost), and view
 * retrieval on EVAL_BATCHES loader batches of the held-out files (each view's nearest neighbour by
 * cosine among the other views must be its pair).
 */
#include "train/finetune.h"

#include "clmr/audio.h"
#include "clmr/error.h"
#include "clmr/tag_policy.h"
#include "nn/model_internal.h"
#include "train/distill.h"
#include "train/embed_set.h"
#include "train/labels.h"
#include "train/loader.h"
#include "train/metrics.h"
#include "train/pretrain.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVAL_MAX_CHUNKS 8
#define EVAL_BATCHES 2

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    const clmr_model_t *parent;
    const float *teacher; /* (2N, T) */
    float weight;
    float *logits; /* (2N, T) */
    float *hidden; /* (2N, H) for an MLP head, else NULL */
} distill_ud_t;

static int distill_aux(void *ud, const float *h, float *dh, int batch, int dim, float *loss)
{
    distill_ud_t *d = ud;
    const clmr_model_t *m = d->parent;
    if (m->cfg.head_hidden > 0) /* CLMR's MLP head: the term's gradient goes through its ReLU */
        return clmr_distill_bce_mlp(loss, dh, h, batch, dim, m->w.hid_w, m->w.hid_b,
                                    m->cfg.head_hidden, m->w.fc_w, m->w.fc_b, m->cfg.n_tags,
                                    d->teacher, d->weight, d->hidden, d->logits);
    return clmr_distill_bce(loss, dh, h, batch, dim, m->w.fc_w, m->w.fc_b, m->cfg.n_tags,
                            d->teacher, d->weight, d->logits);
}

/* Fraction of the 2N views whose nearest other view (cosine) is its pair. */
static double retrieval_top1(const float *emb, int V, int D)
{
    int N = V / 2, hits = 0;
    for (int i = 0; i < V; i++) {
        const float *a = emb + (size_t)i * D;
        double na = 0;
        for (int d = 0; d < D; d++)
            na += (double)a[d] * a[d];
        int best = -1;
        double bs = -INFINITY;
        for (int j = 0; j < V; j++) {
            if (j == i) continue;
            const float *b = emb + (size_t)j * D;
            double dot = 0, nb = 0;
            for (int d = 0; d < D; d++) {
                dot += (double)a[d] * b[d];
                nb += (double)b[d] * b[d];
            }
            double c = dot / (sqrt(na * nb) + 1e-12);
            if (c > bs) {
                bs = c;
                best = j;
            }
        }
        if (best == (i + N) % V) hits++;
    }
    return V ? (double)hits / V : 0;
}

static void top5(const float *s, int T, int out[5])
{
    for (int k = 0; k < 5; k++)
        out[k] = -1;
    for (int k = 0; k < 5 && k < T; k++) {
        int best = -1;
        for (int t = 0; t < T; t++) {
            int used = 0;
            for (int q = 0; q < k; q++)
                used |= out[q] == t;
            if (!used && (best < 0 || s[t] > s[best])) best = t;
        }
        out[k] = best;
    }
}

/* Macro ROC-AUC / PR-AUC of m's tags on the labelled set. */
static int labelled_auc(const clmr_model_t *m, const clmr_labels_t *l, int threads, double *roc,
                        double *pr, char **errmsg)
{
    clmr_embed_set_t es;
    memset(&es, 0, sizeof es);
    clmr_metrics_t mt;
    memset(&mt, 0, sizeof mt);
    const int T = clmr_model_n_tags(m);
    double *scores = malloc(sizeof(double) * (size_t)l->n_items * (size_t)T);
    int rc = scores ? clmr_embed_set_build(&es, m, l, NULL, threads, NULL, NULL, NULL, errmsg)
                    : CLMR_ENOMEM;
    if (!rc) {
        for (int i = 0; i < l->n_items; i++)
            clmr_embed_track_scores(scores + (size_t)i * T, m, es.emb[i], es.n_chunks[i]);
        rc = clmr_metrics_compute(&mt, scores, l->y, (size_t)l->n_items, T);
    }
    if (!rc) {
        *roc = mt.roc_auc;
        *pr = mt.pr_auc;
    }
    clmr_metrics_free(&mt);
    clmr_embed_set_free(&es);
    free(scores);
    return rc;
}

/* Tag agreement and retrieval on the held-out files. */
static int evaluate(const clmr_model_t *parent, const clmr_model_t *student,
                    const char *const *held, size_t n_held, const clmr_finetune_params_t *p,
                    clmr_finetune_result_t *res, char **errmsg)
{
    clmr_infer_params_t ip = clmr_infer_default_params();
    ip.threads = p->threads;
    clmr_infer_t *cp = NULL, *cs = NULL;
    clmr_loader_t *ld = NULL;
    float *ep = NULL, *es = NULL;
    int rc = clmr_infer_open(&cp, parent, &ip, errmsg);
    if (!rc) rc = clmr_infer_open(&cs, student, &ip, errmsg);
    if (rc) goto out;
    const int T = clmr_model_n_tags(parent), chunk = clmr_model_chunk_samples(parent);
    double drift = 0, overlap = 0;
    int counted = 0;
#define STOPPED() (p->stop && p->stop(p->ud))
    for (size_t i = 0; i < n_held && T > 0; i++) {
        if (STOPPED()) {
            rc = CLMR_ECANCELLED;
            goto out;
        }
        clmr_audio_t a;
        memset(&a, 0, sizeof a);
        char *m = NULL;
        if (clmr_audio_decode_file(&a, held[i], NULL, &m)) { /* unreadable: not counted */
            free(m);
            continue;
        }
        size_t n = a.n_samples;
        if (n > (size_t)EVAL_MAX_CHUNKS * chunk) n = (size_t)EVAL_MAX_CHUNKS * chunk;
        clmr_track_t tp, ts;
        memset(&tp, 0, sizeof tp);
        memset(&ts, 0, sizeof ts);
        rc = clmr_track_analyze(&tp, cp, a.samples, n);
        if (!rc) rc = clmr_track_analyze(&ts, cs, a.samples, n);
        clmr_audio_free(&a);
        if (!rc) {
            double d = 0;
            for (int t = 0; t < T; t++)
                d += fabs((double)ts.scores[t] - tp.scores[t]);
            drift += d / T;
            int a5[5], b5[5], same = 0;
            top5(tp.scores, T, a5);
            top5(ts.scores, T, b5);
            for (int x = 0; x < 5; x++)
                for (int y = 0; y < 5; y++)
                    same += a5[x] >= 0 && a5[x] == b5[y];
            overlap += same / (double)(T < 5 ? T : 5);
            counted++;
        }
        clmr_track_free(&tp);
        clmr_track_free(&ts);
        if (rc) {
            clmr_set_err(errmsg, rc, "evaluation: inference failed on %s", held[i]);
            goto out;
        }
    }
    res->heldout = (int)n_held;
    res->tag_drift = counted ? drift / counted : 0;
    res->top5_overlap = counted ? overlap / counted : 1;

    clmr_loader_params_t lp = clmr_loader_default_params();
    lp.batch_pairs = n_held;
    lp.seed = p->seed ^ 0x5eedULL;
    lp.augment.chunk = (size_t)chunk;
    if ((rc = clmr_loader_open(&ld, held, n_held, &lp, errmsg))) goto out;
    const int V = (int)(2 * n_held), D = clmr_model_embed_dim(parent);
    ep = malloc(sizeof(float) * (size_t)V * D);
    es = malloc(sizeof(float) * (size_t)V * D);
    if (!ep || !es) {
        rc = CLMR_ENOMEM;
        goto out;
    }
    double rp = 0, rs = 0;
    for (int b = 0; b < EVAL_BATCHES; b++) {
        if (STOPPED()) {
            rc = CLMR_ECANCELLED;
            goto out;
        }
        clmr_batch_t bt;
        if ((rc = clmr_loader_next(ld, &bt, errmsg))) goto out;
        if ((rc = clmr_infer_run(cp, bt.x, V, ep, NULL)) ||
            (rc = clmr_infer_run(cs, bt.x, V, es, NULL)))
            goto out;
        rp += retrieval_top1(ep, V, D);
        rs += retrieval_top1(es, V, D);
    }
    res->retrieval_parent = rp / EVAL_BATCHES;
    res->retrieval_new = rs / EVAL_BATCHES;
    res->roc_auc_new = res->pr_auc_new = res->roc_auc_parent = res->pr_auc_parent = NAN;
    if (p->labels_path && *p->labels_path && T > 0) {
        clmr_labels_t l;
        memset(&l, 0, sizeof l);
        const char **vocab = malloc(sizeof *vocab * (size_t)T);
        if (!vocab) {
            rc = CLMR_ENOMEM;
            goto out;
        }
        for (int t = 0; t < T; t++)
            vocab[t] = clmr_model_tag(parent, t);
        rc = clmr_labels_load(&l, p->labels_path, vocab, T, errmsg);
        free(vocab);
        if (!rc && STOPPED()) rc = CLMR_ECANCELLED;
        if (!rc)
            rc = labelled_auc(parent, &l, p->threads, &res->roc_auc_parent, &res->pr_auc_parent,
                              errmsg);
        if (!rc && STOPPED()) rc = CLMR_ECANCELLED;
        if (!rc)
            rc = labelled_auc(student, &l, p->threads, &res->roc_auc_new, &res->pr_auc_new, errmsg);
        clmr_labels_free(&l);
    }
#undef STOPPED
out:
    free(ep);
    free(es);
    clmr_loader_close(&ld);
    clmr_infer_close(&cp);
    clmr_infer_close(&cs);
    return rc;
}

int clmr_finetune_run(const clmr_model_t *parent, const char *const *train, size_t n_train,
                      const char *const *held, size_t n_held, const clmr_finetune_params_t *p,
                      clmr_finetune_result_t *res, char **errmsg)
{
    memset(res, 0, sizeof *res);
    if (!parent || !train || !n_train || !held || !n_held || p->steps < 1 || p->batch_pairs < 1 ||
        !(p->learning_rate > 0) || p->threads < 1 || p->checkpoint_every < 1 ||
        !p->checkpoint_path || !p->out_path || !(p->distill_weight >= 0))
        return clmr_set_err(errmsg, CLMR_EINVAL, "fine-tuning: invalid parameters");
    omp_set_num_threads(p->threads);
    clmr_pretrain_t *pt = NULL;
    clmr_loader_t *ld = NULL;
    clmr_infer_t *teacher_ctx = NULL;
    clmr_model_t *out = NULL, *saved = NULL;
    float *teacher = NULL, *logits = NULL, *hidden = NULL;
    int rc;

    clmr_pretrain_params_t pp = clmr_pretrain_default_params();
    pp.n_layers = clmr_model_n_layers(parent);
    pp.widths[0] = 1;
    for (int i = 0; i < pp.n_layers; i++)
        pp.widths[i + 1] = clmr_model_width(parent, i);
    const int D = clmr_model_embed_dim(parent);
    /* The projector is thrown away after training; a small one fits small encoders. */
    pp.proj_hidden = D;
    pp.proj_out = D < 64 ? D : 64;
    pp.batch_pairs = p->batch_pairs;
    pp.adam.lr = p->learning_rate;
    pp.seed = p->seed;
    pp.precision = p->precision;
    if ((rc = clmr_pretrain_open(&pt, &pp, parent, errmsg))) goto out;

    const int V = 2 * p->batch_pairs, T = clmr_model_n_tags(parent);
    const int distill = T > 0 && p->distill_weight > 0;
    clmr_infer_params_t ip = clmr_infer_default_params();
    ip.threads = p->threads;
    if (distill) {
        teacher = malloc(sizeof(float) * (size_t)V * T);
        logits = malloc(sizeof(float) * (size_t)V * T);
        const int H = parent->cfg.head_hidden;
        if (H > 0) hidden = malloc(sizeof(float) * (size_t)V * H);
        if (!teacher || !logits || (H > 0 && !hidden)) {
            rc = CLMR_ENOMEM;
            goto out;
        }
        if ((rc = clmr_infer_open(&teacher_ctx, parent, &ip, errmsg))) goto out;
    }
    clmr_loader_params_t lp = clmr_loader_default_params();
    lp.batch_pairs = (size_t)p->batch_pairs;
    lp.seed = p->seed;
    lp.augment.chunk = (size_t)clmr_pretrain_chunk_samples(pt);
    if ((rc = clmr_loader_open(&ld, train, n_train, &lp, errmsg))) goto out;

    distill_ud_t du = {parent, teacher, p->distill_weight, logits, hidden};
    const double t0 = now_s();
    while (clmr_pretrain_steps_done(pt) < p->steps) {
        clmr_batch_t b;
        if ((rc = clmr_loader_next(ld, &b, errmsg))) goto out;
        if (distill && (rc = clmr_infer_run(teacher_ctx, b.x, V, NULL, teacher))) {
            clmr_set_err(errmsg, rc, "fine-tuning: teacher inference failed");
            goto out;
        }
        float lc = 0, ldist = 0;
        if ((rc = clmr_pretrain_step_aux(pt, b.x, distill ? distill_aux : NULL, &du, &lc, &ldist,
                                         NULL))) {
            clmr_set_err(errmsg, rc, "fine-tuning: training step failed");
            goto out;
        }
        long k = clmr_pretrain_steps_done(pt);
        if (!isfinite(lc) || !isfinite(ldist)) {
            rc = clmr_set_err(errmsg, CLMR_EINVAL,
                              "fine-tuning: the loss is not finite at step %ld", k);
            goto out;
        }
        if (k == 1) res->first_loss = lc + ldist;
        res->last_loss = lc + ldist;
        double el = now_s() - t0;
        clmr_finetune_progress_t pr = {k,
                                       p->steps,
                                       lc,
                                       ldist,
                                       el > 0 ? (double)k * V / el : 0,
                                       el / k * (double)(p->steps - k)};
        res->steps_done = k;
        res->chunks_per_s = pr.chunks_per_s;
        int cancel = p->progress ? p->progress(p->ud, &pr) : 0;
        if (cancel || k % p->checkpoint_every == 0 || k == p->steps) {
            if ((rc = clmr_pretrain_save_checkpoint(pt, p->checkpoint_path, p->provenance_json,
                                                    errmsg)))
                goto out;
        }
        if (cancel) {
            rc = CLMR_ECANCELLED;
            goto out;
        }
    }
    if ((rc = clmr_pretrain_export(pt, T > 0 ? parent : NULL, &out, errmsg))) goto out;
    if ((rc = clmr_model_set_name(out, p->name && *p->name ? p->name : "fine-tuned"))) goto out;
    if (p->provenance_json && (rc = clmr_model_set_meta(out, "finetune", p->provenance_json)))
        goto out;
    if ((rc = clmr_model_set_meta(out, "parent_id", clmr_model_id(parent)))) goto out;
    /* The parent's tag policy (clmr/tag_policy.h) stays with its head: the distillation term
     * keeps the child's tags close to the parent's, so a tag hidden as untrusted on real audio
     * must not reappear just because the model was fine-tuned. */
    const char *policy = T > 0 ? clmr_model_meta(parent, CLMR_TAG_POLICY_KEY) : NULL;
    if (policy && (rc = clmr_model_set_meta(out, CLMR_TAG_POLICY_KEY, policy))) goto out;
    if ((rc = clmr_model_save(out, p->out_path, errmsg))) goto out;
    if ((rc = clmr_model_load(&saved, p->out_path, errmsg))) goto out;
    snprintf(res->model_id, sizeof res->model_id, "%s", clmr_model_id(saved));
    clmr_loader_close(&ld); /* free the training loader's threads before evaluating */
    rc = evaluate(parent, saved, held, n_held, p, res, errmsg);
out:
    free(teacher);
    free(logits);
    free(hidden);
    clmr_loader_close(&ld);
    clmr_infer_close(&teacher_ctx);
    clmr_model_close(&out);
    clmr_model_close(&saved);
    clmr_pretrain_close(&pt);
    return rc;
}
