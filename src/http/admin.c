/* admin.c - /v1/admin: fine-tuning jobs (POST/GET/DELETE), model activation and API keys.
 *
 * DESIGN: see admin.h. The job thread owns everything it uses (its parameters, the pool file list,
 * its own copy of the parent model loaded from the parent's file), so it never touches the models
 * the request path is serving. Progress goes to SQLite after every step (state survives a crash;
 * GET reads it back) and to a small in-memory snapshot for the live numbers (chunks/s, ETA) that
 * are not worth a column. Cancellation is a flag the trainer's progress callback reads once per
 * step: the run writes its checkpoint and stops.
 */
#include "http/admin.h"

#include "http/auth.h"

#include "clmr/error.h"
#include "http/http_internal.h"
#include "http/rollover.h"
#include "store/store.h"
#include "train/finetune.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LOSS_RING 32 /* loss records kept in the job row */

struct clmr_admin {
    pthread_mutex_t mu;
    pthread_t th;
    int th_live; /* started and not joined */
    atomic_int cancel;
    atomic_int shutting_down;
    /* live numbers of the running job (under mu) */
    int64_t job_id;
    double chunks_per_s, eta_s;
};

typedef struct {
    clmr_server_t *s;
    int64_t id;
    char parent_id[CLMR_STORE_ID_MAX + 1];
    char parent_path[CLMR_CONFIG_PATH_MAX + 64];
    char *params_json;
    char **paths;
    size_t n_paths;
    long steps, ckpt_every;
    int batch, tracks_all;
    double lr, distill;
    uint64_t seed;
    /* losses ring */
    json_t *losses;
    double last_write; /* monotonic seconds of the last progress row written */
} job_ctx_t;

int clmr__admin_open(clmr_server_t *s, char **errmsg)
{
    struct clmr_admin *a = calloc(1, sizeof *a);
    if (!a) return CLMR_ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    s->admin = a;
    return 0;
}

static void join_job(struct clmr_admin *a)
{
    pthread_mutex_lock(&a->mu);
    int live = a->th_live;
    a->th_live = 0;
    pthread_mutex_unlock(&a->mu);
    if (live) pthread_join(a->th, NULL);
}

void clmr__admin_close(clmr_server_t *s)
{
    struct clmr_admin *a = s->admin;
    if (!a) return;
    atomic_store(&a->shutting_down, 1);
    atomic_store(&a->cancel, 1);
    join_job(a);
    pthread_mutex_destroy(&a->mu);
    free(a);
    s->admin = NULL;
}

/* ---------------------------------------------------------------- JSON */

static json_t *job_json(clmr_server_t *s, const clmr_store_job_t *j)
{
    json_t *o = json_pack("{s:I,s:s,s:I,s:I,s:I}", "id", (json_int_t)j->id, "state",
                          clmr_job_state_name(j->state), "step", (json_int_t)j->step, "steps",
                          (json_int_t)j->steps, "created_at", (json_int_t)j->created_at);
    json_object_set_new(o, "base_model_id",
                        j->base_model_id ? json_string(j->base_model_id) : json_null());
    json_t *params = j->params_json ? json_loads(j->params_json, 0, NULL) : NULL;
    json_object_set_new(o, "params", params ? params : json_object());
    json_t *losses = j->losses_json ? json_loads(j->losses_json, 0, NULL) : NULL;
    json_object_set_new(o, "losses", losses ? losses : json_array());
    json_object_set_new(o, "result_model_id",
                        j->result_model_id ? json_string(j->result_model_id) : json_null());
    json_object_set_new(o, "error", j->error ? json_string(j->error) : json_null());
    json_object_set_new(o, "started_at", j->started_at ? json_integer(j->started_at) : json_null());
    json_object_set_new(o, "finished_at",
                        j->finished_at ? json_integer(j->finished_at) : json_null());
    double cps = 0, eta = -1;
    struct clmr_admin *a = s->admin;
    pthread_mutex_lock(&a->mu);
    if (a->job_id == j->id) {
        cps = a->chunks_per_s;
        eta = a->eta_s;
    }
    pthread_mutex_unlock(&a->mu);
    if (j->state == CLMR_JOB_RUNNING && eta >= 0) {
        json_object_set_new(o, "chunks_per_s", json_real(cps));
        json_object_set_new(o, "eta_s", json_real(eta));
    } else {
        /* After the run: the rate recorded with the last loss record, no ETA. */
        json_t *last = losses ? json_array_get(losses, json_array_size(losses) - 1) : NULL;
        json_t *c = last ? json_object_get(last, "chunks_per_s") : NULL;
        json_object_set_new(o, "chunks_per_s", c ? json_incref(c) : json_null());
        json_object_set_new(o, "eta_s",
                            j->state == CLMR_JOB_SUCCEEDED ? json_real(0) : json_null());
    }
    json_object_set_new(o, "checkpoint",
                        json_sprintf("jobs/%lld/checkpoint.ckpt", (long long)j->id));
    return o;
}

/* ---------------------------------------------------------------- the job thread */

static void job_ctx_free(job_ctx_t *c)
{
    if (!c) return;
    for (size_t i = 0; i < c->n_paths; i++)
        free(c->paths[i]);
    free(c->paths);
    free(c->params_json);
    json_decref(c->losses);
    free(c);
}

static int job_progress(void *ud, const clmr_finetune_progress_t *p)
{
    job_ctx_t *c = ud;
    struct clmr_admin *a = c->s->admin;
    json_array_append_new(c->losses,
                          json_pack("{s:I,s:f,s:f,s:f,s:f}", "step", (json_int_t)p->step, "loss",
                                    (double)(p->contrastive + p->distillation), "contrastive",
                                    (double)p->contrastive, "distillation", (double)p->distillation,
                                    "chunks_per_s", p->chunks_per_s));
    while (json_array_size(c->losses) > LOSS_RING)
        json_array_remove(c->losses, 0);
    int cancel = atomic_load(&a->cancel);
    /* Each progress row is an fsync'd transaction: at most one per second (plus the first and the
     * last step, and at a cancel), so small models do not spend their steps waiting on the disk. */
    double now = clmr__http_now();
    if (p->step == 1 || p->step == p->steps || cancel || now - c->last_write >= 1.0) {
        c->last_write = now;
        char *lj = json_dumps(c->losses, JSON_COMPACT);
        char *msg = NULL;
        if (clmr_store_job_progress(c->s->store, c->id, p->step, lj, &msg))
            CLMR_LOG_WARN("job %lld: progress not recorded: %s", (long long)c->id, msg ? msg : "");
        free(msg);
        free(lj);
    }
    pthread_mutex_lock(&a->mu);
    a->chunks_per_s = p->chunks_per_s;
    a->eta_s = p->eta_s;
    pthread_mutex_unlock(&a->mu);
    if (!cancel && p->step == p->steps)
        clmr_store_job_set_state(c->s->store, c->id, CLMR_JOB_EVALUATING, NULL, NULL, NULL);
    return cancel;
}

/* Polled by the evaluation phase: a cancel (or shutdown) stops it too (issue 12). */
static int job_stop(void *ud)
{
    job_ctx_t *c = ud;
    return atomic_load(&c->s->admin->cancel);
}

static void mkdir_p2(const char *a, const char *b)
{
    mkdir(a, 0755);
    if (b) mkdir(b, 0755);
}

static void *job_main(void *arg)
{
    job_ctx_t *c = arg;
    clmr_server_t *s = c->s;
    struct clmr_admin *a = s->admin;
    char *msg = NULL;
    clmr_model_t *parent = NULL;
    clmr_http_model_info_t pinfo;
    memset(&pinfo, 0, sizeof pinfo);
    char dir[CLMR_CONFIG_PATH_MAX + 64], ckpt[CLMR_CONFIG_PATH_MAX + 96],
        mdir[CLMR_CONFIG_PATH_MAX + 64], out[CLMR_CONFIG_PATH_MAX + 128],
        jdir[CLMR_CONFIG_PATH_MAX + 32];
    snprintf(jdir, sizeof jdir, "%s/jobs", clmr_store_data_dir(s->store));
    snprintf(dir, sizeof dir, "%s/%lld", jdir, (long long)c->id);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.ckpt", dir);
    snprintf(mdir, sizeof mdir, "%s/models", clmr_store_data_dir(s->store));
    snprintf(out, sizeof out, "%s/job-%lld.safetensors", mdir, (long long)c->id);
    /* The store keeps the path relative to the data directory (readers resolve it with
     * clmr__data_path), so the data directory can move and "./data" is never prefixed twice. */
    char out_rel[64];
    snprintf(out_rel, sizeof out_rel, "models/job-%lld.safetensors", (long long)c->id);
    mkdir_p2(jdir, dir);
    mkdir(mdir, 0755);

    clmr_store_job_set_state(s->store, c->id, CLMR_JOB_RUNNING, NULL, NULL, NULL);
    /* start-up refused an explicit bf16 without native bf16, so this only resolves auto */
    clmr_train_precision_t tprec = CLMR_TRAIN_PREC_FP32;
    if (clmr_train_precision_parse(s->cfg.train_precision, &tprec) ||
        clmr_train_precision_resolve(tprec, &tprec, NULL, NULL))
        tprec = CLMR_TRAIN_PREC_FP32;
    CLMR_LOG_INFO("job %lld: fine-tuning %s for %ld steps on %zu tracks (%d threads, %s)",
                  (long long)c->id, c->parent_id, c->steps, c->n_paths, s->cfg.finetune_threads,
                  clmr_train_precision_name(tprec));
    int rc = clmr_http_model_open(&parent, &pinfo, c->parent_path, &msg);
    if (rc) goto done;

    /* Deterministic split: a quarter (at least one) of the shuffled tracks is held out. */
    uint64_t r = c->seed * 6364136223846793005ULL + 1442695040888963407ULL;
    for (size_t i = c->n_paths; i > 1; i--) {
        r = r * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t j = (size_t)((r >> 33) % i);
        char *t = c->paths[i - 1];
        c->paths[i - 1] = c->paths[j];
        c->paths[j] = t;
    }
    size_t n_held = c->n_paths / 4 ? c->n_paths / 4 : 1;
    size_t n_train = c->n_paths - n_held;

    json_t *prov =
        json_pack("{s:s,s:I,s:s,s:I,s:I,s:I}", "parent", c->parent_id, "job", (json_int_t)c->id,
                  "tracks", c->tracks_all ? "all" : "new", "n_train", (json_int_t)n_train,
                  "n_heldout", (json_int_t)n_held, "steps", (json_int_t)c->steps);
    json_object_set_new(prov, "params", json_loads(c->params_json, 0, NULL));
    char *prov_s = json_dumps(prov, JSON_COMPACT);
    json_decref(prov);

    char name[160];
    snprintf(name, sizeof name, "%.100s-ft%lld", pinfo.name[0] ? pinfo.name : "model",
             (long long)c->id);
    clmr_finetune_params_t fp = {
        .steps = c->steps,
        .batch_pairs = c->batch,
        .learning_rate = (float)c->lr,
        .seed = c->seed,
        .threads = s->cfg.finetune_threads,
        .precision = tprec,
        .distill_weight = (float)c->distill,
        .checkpoint_every = c->ckpt_every,
        .checkpoint_path = ckpt,
        .out_path = out,
        .name = name,
        .labels_path = s->cfg.finetune_eval_labels,
        .provenance_json = prov_s,
        .progress = job_progress,
        .stop = job_stop,
        .ud = c,
    };
    clmr_finetune_result_t res;
    rc = clmr_finetune_run(parent, (const char *const *)c->paths, n_train,
                           (const char *const *)c->paths + n_train, n_held, &fp, &res, &msg);
    free(prov_s);
    if (rc == CLMR_ECANCELLED) remove(out); /* stopped while evaluating: no candidate model */
    if (rc) goto done;

    /* The gate. */
    const clmr_config_t *cfg = &s->cfg;
    int pass_drift = res.tag_drift <= cfg->gate_max_tag_drift;
    int pass_top5 = res.top5_overlap >= cfg->gate_min_top5_overlap;
    int pass_ret = res.retrieval_new >= cfg->gate_min_retrieval_ratio * res.retrieval_parent;
    int labelled = isfinite(res.roc_auc_new) && isfinite(res.roc_auc_parent);
    int pass_auc = !labelled || res.roc_auc_new >= res.roc_auc_parent - cfg->gate_max_auc_drop;
    int pass = pass_drift && pass_top5 && pass_ret && pass_auc;
    json_t *meta = json_pack(
        "{s:s,s:I,s:I,s:s,s:{s:I,s:I},s:{s:f,s:f},s:{s:f,s:f,s:f,s:f,s:i,s:f},"
        "s:{s:b,s:b,s:b,s:b,s:f,s:f,s:f}}",
        "parent", c->parent_id, "job", (json_int_t)c->id, "steps", (json_int_t)res.steps_done,
        "tracks", c->tracks_all ? "all" : "new", "data", "n_train", (json_int_t)n_train,
        "n_heldout", (json_int_t)n_held, "loss", "first", (double)res.first_loss, "last",
        (double)res.last_loss, "metrics", "tag_drift", res.tag_drift, "top5_overlap",
        res.top5_overlap, "retrieval_top1", res.retrieval_new, "parent_retrieval_top1",
        res.retrieval_parent, "heldout", res.heldout, "chunks_per_s", res.chunks_per_s, "gate",
        "pass", pass, "tag_drift_ok", pass_drift, "top5_overlap_ok", pass_top5, "retrieval_ok",
        pass_ret, "max_tag_drift", cfg->gate_max_tag_drift, "min_top5_overlap",
        cfg->gate_min_top5_overlap, "min_retrieval_ratio", cfg->gate_min_retrieval_ratio);
    json_object_set_new(meta, "params", json_loads(c->params_json, 0, NULL));
    if (labelled) {
        json_t *mm = json_object_get(meta, "metrics");
        json_object_set_new(mm, "roc_auc", json_real(res.roc_auc_new));
        json_object_set_new(mm, "pr_auc", json_real(res.pr_auc_new));
        json_object_set_new(mm, "parent_roc_auc", json_real(res.roc_auc_parent));
        json_object_set_new(mm, "parent_pr_auc", json_real(res.pr_auc_parent));
        json_object_set_new(json_object_get(meta, "gate"), "roc_auc_ok", json_boolean(pass_auc));
    }
    char *meta_s = json_dumps(meta, JSON_COMPACT);
    json_decref(meta);
    clmr_store_model_t m;
    memset(&m, 0, sizeof m);
    snprintf(m.id, sizeof m.id, "%s", res.model_id);
    m.name = name;
    m.path = out_rel;
    m.parent_id = c->parent_id;
    m.status = CLMR_MODEL_CANDIDATE;
    m.metadata_json = meta_s;
    rc = clmr_store_model_put(s->store, &m, &msg);
    free(meta_s);
    if (rc) goto done;
    CLMR_LOG_INFO("job %lld: model %s (tag drift %.4f, top-5 overlap %.3f, retrieval %.3f vs "
                  "%.3f): gate %s",
                  (long long)c->id, res.model_id, res.tag_drift, res.top5_overlap,
                  res.retrieval_new, res.retrieval_parent, pass ? "passed" : "failed");
    if (pass && cfg->finetune_auto_activate) {
        char *am = NULL;
        if (clmr__rollover_activate(s, res.model_id, &am))
            CLMR_LOG_WARN("job %lld: auto-activation failed: %s", (long long)c->id, am ? am : "");
        free(am);
    }
    clmr_store_job_set_state(s->store, c->id, CLMR_JOB_SUCCEEDED, NULL, res.model_id, NULL);
done:
    if (rc == CLMR_ECANCELLED) {
        if (atomic_load(&a->shutting_down))
            clmr_store_job_set_state(s->store, c->id, CLMR_JOB_FAILED,
                                     "interrupted by shutdown (checkpoint kept)", NULL, NULL);
        else
            clmr_store_job_set_state(s->store, c->id, CLMR_JOB_CANCELLED, NULL, NULL, NULL);
        CLMR_LOG_INFO("job %lld: stopped (checkpoint %s)", (long long)c->id, ckpt);
    } else if (rc) {
        char e[512];
        snprintf(e, sizeof e, "%s", msg ? msg : clmr_strerror(rc));
        clmr_store_job_set_state(s->store, c->id, CLMR_JOB_FAILED, e, NULL, NULL);
        CLMR_LOG_WARN("job %lld failed: %s", (long long)c->id, e);
    }
    free(msg);
    clmr_http_model_close(&parent, &pinfo);
    pthread_mutex_lock(&a->mu);
    a->job_id = 0;
    pthread_mutex_unlock(&a->mu);
    job_ctx_free(c);
    return NULL;
}

/* ---------------------------------------------------------------- handlers */

typedef struct {
    job_ctx_t *c;
    const char *data_dir;
} collect_t;

static int collect_track(void *ud, const clmr_track_record_t *t)
{
    collect_t *k = ud;
    if (!t->audio_path) return 0;
    char **np = realloc(k->c->paths, (k->c->n_paths + 1) * sizeof *np);
    if (!np) return CLMR_ENOMEM;
    k->c->paths = np;
    size_t n = strlen(k->data_dir) + strlen(t->audio_path) + 2;
    char *p = malloc(n);
    if (!p) return CLMR_ENOMEM;
    if (t->audio_path[0] == '/')
        snprintf(p, n, "%s", t->audio_path);
    else
        snprintf(p, n, "%s/%s", k->data_dir, t->audio_path);
    np[k->c->n_paths++] = p;
    return 0;
}

static int get_int(clmr_http_req_t *req, json_t *body, const char *key, long long def, long long lo,
                   long long hi, long long *out)
{
    json_t *v = json_object_get(body, key);
    *out = def;
    if (!v) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        clmr__http_error(req, 400, "invalid_argument", "'%s' must be an integer from %lld to %lld",
                         key, lo, hi);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static int get_num(clmr_http_req_t *req, json_t *body, const char *key, double def, double lo,
                   double hi, double *out)
{
    json_t *v = json_object_get(body, key);
    *out = def;
    if (!v) return 0;
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi)) {
        clmr__http_error(req, 400, "invalid_argument", "'%s' must be a number from %g to %g", key,
                         lo, hi);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static void h_finetune(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    struct clmr_admin *a = s->admin;
    json_t *body = NULL;
    if (req->body_len) {
        json_error_t je;
        body = json_loadb((const char *)req->body, req->body_len, 0, &je);
        if (!body || !json_is_object(body)) {
            clmr__http_error(req, 400, "invalid_json", "the body must be a JSON object");
            json_decref(body);
            return;
        }
    } else {
        body = json_object();
    }
    static const char *const known[] = {"steps", "batch_size",     "learning_rate",   "tracks",
                                        "seed",  "distill_weight", "checkpoint_every"};
    const char *key;
    json_t *val;
    json_object_foreach(body, key, val)
    {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(known[i], key))
            i++;
        if (i == sizeof known / sizeof known[0]) {
            clmr__http_error(req, 400, "invalid_argument", "unknown field '%.64s'", key);
            json_decref(body);
            return;
        }
    }
    long long steps, batch, seed, ckpt_every;
    double lr, distill;
    if (get_int(req, body, "steps", 200, 1, 1000000, &steps) ||
        get_int(req, body, "batch_size", 8, 1, 256, &batch) ||
        get_num(req, body, "learning_rate", 1e-4, 1e-8, 1.0, &lr) ||
        get_int(req, body, "seed", 0, 0, (long long)1 << 53, &seed) ||
        get_num(req, body, "distill_weight", 1.0, 0, 1000, &distill) ||
        get_int(req, body, "checkpoint_every", steps / 10 > 0 ? steps / 10 : 1, 1, 1000000,
                &ckpt_every)) {
        json_decref(body);
        return;
    }
    char tracks[4] = "new"; /* copied: the body is freed below */
    json_t *tv = json_object_get(body, "tracks");
    if (tv) {
        if (!json_is_string(tv) ||
            (strcmp(json_string_value(tv), "new") && strcmp(json_string_value(tv), "all"))) {
            clmr__http_error(req, 400, "invalid_argument", "'tracks' must be \"new\" or \"all\"");
            json_decref(body);
            return;
        }
        snprintf(tracks, sizeof tracks, "%s", json_string_value(tv));
    }
    json_t *params = json_pack("{s:I,s:I,s:f,s:s,s:I,s:f,s:I}", "steps", (json_int_t)steps,
                               "batch_size", (json_int_t)batch, "learning_rate", lr, "tracks",
                               tracks, "seed", (json_int_t)seed, "distill_weight", distill,
                               "checkpoint_every", (json_int_t)ckpt_every);
    json_decref(body);

    char *msg = NULL;
    job_ctx_t *c = calloc(1, sizeof *c);
    clmr_store_model_t pm;
    memset(&pm, 0, sizeof pm);
    clmr_store_job_t job;
    memset(&job, 0, sizeof job);
    int rc = c ? clmr_store_model_get_active(s->store, &pm, &msg) : CLMR_ENOMEM;
    if (rc) {
        clmr__http_error_clmr(req, rc, msg);
        goto out;
    }
    c->s = s;
    c->losses = json_array();
    c->steps = (long)steps;
    c->batch = (int)batch;
    c->lr = lr;
    c->seed = (uint64_t)seed;
    c->distill = distill;
    c->ckpt_every = (long)ckpt_every;
    c->tracks_all = !strcmp(tracks, "all");
    snprintf(c->parent_id, sizeof c->parent_id, "%s", pm.id);
    clmr__data_path(s, pm.path, c->parent_path, sizeof c->parent_path);
    collect_t k = {c, clmr_store_data_dir(s->store)};
    rc = clmr_store_track_foreach(s->store, c->tracks_all ? 0 : pm.created_at, collect_track, &k,
                                  &msg);
    if (rc) {
        clmr__http_error_clmr(req, rc, msg);
        goto out;
    }
    long need = s->cfg.finetune_min_tracks;
    if ((long)c->n_paths < need) {
        clmr__http_error(req, 422, "too_little_audio",
                         "too little audio: %ld more tracks needed (%zu in the pool for "
                         "tracks='%s', the minimum is %ld: configuration key "
                         "'finetune-min-tracks')",
                         need - (long)c->n_paths, c->n_paths, tracks, need);
        goto out;
    }
    c->params_json = json_dumps(params, JSON_COMPACT);
    int64_t id = 0;
    rc = clmr_store_job_create(s->store, pm.id, c->params_json, steps, &id, &msg);
    if (rc == CLMR_EBUSY) {
        clmr__http_error(req, 409, "job_running", "a fine-tuning job is already running");
        goto out;
    }
    if (rc) {
        clmr__http_error_clmr(req, rc, msg);
        goto out;
    }
    c->id = id;
    /* The store says no job is unfinished, so a previous thread is at most unwinding: join it. */
    join_job(a);
    pthread_mutex_lock(&a->mu);
    atomic_store(&a->cancel, 0);
    a->job_id = id;
    a->chunks_per_s = 0;
    a->eta_s = -1;
    rc = pthread_create(&a->th, NULL, job_main, c);
    if (rc == 0) a->th_live = 1;
    pthread_mutex_unlock(&a->mu);
    if (rc) {
        clmr_store_job_set_state(s->store, id, CLMR_JOB_FAILED, "cannot start a thread", NULL,
                                 NULL);
        clmr__http_error(req, 503, "overloaded", "cannot start the job thread");
        goto out;
    }
    c = NULL; /* owned by the thread */
    if (clmr_store_job_get(s->store, id, &job, NULL) == 0)
        clmr__http_json(req, 202, json_pack("{s:o}", "job", job_json(s, &job)));
    else
        clmr__http_json(req, 202, json_pack("{s:{s:I}}", "job", "id", (json_int_t)id));
    snprintf(req->location, sizeof req->location, "/v1/admin/jobs/%lld", (long long)id);
out:
    json_decref(params);
    clmr_store_job_clear(&job);
    clmr_store_model_clear(&pm);
    job_ctx_free(c);
    free(msg);
}

static void h_jobs(clmr_http_req_t *req)
{
    clmr_store_job_t *items = NULL;
    size_t n = 0;
    char *msg = NULL;
    int rc = clmr_store_job_list(req->srv->store, 100, &items, &n, &msg);
    if (rc) {
        clmr__http_error_clmr(req, rc, msg);
    } else {
        json_t *arr = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(arr, job_json(req->srv, &items[i]));
        clmr__http_json(req, 200, json_pack("{s:o}", "jobs", arr));
    }
    clmr_store_job_list_free(items, n);
    free(msg);
}

/* Flags the running job id for cancellation; 1 when it is the running one. Not inlined: GCC 12
 * with -fsanitize=address at -O2 warns about a zero-size region otherwise (a false positive). */
__attribute__((noinline)) static int request_cancel(struct clmr_admin *a, int64_t id)
{
    pthread_mutex_lock(&a->mu);
    int mine = a->job_id == id;
    if (mine) atomic_store(&a->cancel, 1);
    pthread_mutex_unlock(&a->mu);
    return mine;
}

static void h_job(clmr_http_req_t *req, int del)
{
    clmr_server_t *s = req->srv;
    int64_t id = strtoll(req->id, NULL, 10);
    clmr_store_job_t j;
    memset(&j, 0, sizeof j);
    char *msg = NULL;
    int rc = clmr_store_job_get(s->store, id, &j, &msg);
    if (rc == CLMR_ENOT_FOUND) {
        clmr__http_error(req, 404, "not_found", "no job %lld", (long long)id);
    } else if (rc) {
        clmr__http_error_clmr(req, rc, msg);
    } else if (!del) {
        clmr__http_json(req, 200, json_pack("{s:o}", "job", job_json(s, &j)));
    } else if (j.state >= CLMR_JOB_SUCCEEDED) {
        clmr__http_error(req, 409, "job_finished", "job %lld is already %s", (long long)id,
                         clmr_job_state_name(j.state));
    } else {
        int mine = request_cancel(s->admin, id);
        if (!mine) /* a queued row without a thread (cannot normally happen) */
            clmr_store_job_set_state(s->store, id, CLMR_JOB_CANCELLED, NULL, NULL, NULL);
        clmr_store_job_clear(&j);
        memset(&j, 0, sizeof j);
        clmr_store_job_get(s->store, id, &j, NULL);
        json_t *o = job_json(s, &j);
        json_object_set_new(o, "cancel_requested", json_true());
        clmr__http_json(req, 202, json_pack("{s:o}", "job", o));
    }
    clmr_store_job_clear(&j);
    free(msg);
}

static void h_activate(clmr_http_req_t *req, int rollback)
{
    clmr_server_t *s = req->srv;
    clmr_store_model_t m;
    memset(&m, 0, sizeof m);
    char *msg = NULL;
    int rc = clmr_store_model_get(s->store, req->id, &m, &msg);
    if (rc == CLMR_ENOT_FOUND) {
        clmr__http_error(req, 404, "not_found", "no model %s", req->id);
        goto out;
    }
    if (rc) {
        clmr__http_error_clmr(req, rc, msg);
        goto out;
    }
    if (rollback && m.status != CLMR_MODEL_RETIRED) {
        clmr__http_error(req, 409, "not_retired",
                         "rollback-to needs a model that was active before (status retired); %s "
                         "is %s",
                         m.id, clmr_model_status_name(m.status));
        goto out;
    }
    rc = clmr__rollover_activate(s, m.id, &msg);
    if (rc) {
        clmr__http_error_clmr(req, rc, msg);
        goto out;
    }
    json_t *st = clmr__rollover_state(s);
    clmr__http_json(req, 200, st);
out:
    clmr_store_model_clear(&m);
    free(msg);
}

static json_t *key_json(const clmr_store_key_t *k)
{
    json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:I}", "id", (json_int_t)k->id, "name",
                          k->name ? k->name : "", "scope", clmr_key_scope_name(k->scope), "prefix",
                          k->prefix, "created_at", (json_int_t)k->created_at);
    json_object_set_new(o, "revoked_at", k->revoked_at ? json_integer(k->revoked_at) : json_null());
    return o;
}

/* GET /v1/admin/keys lists keys (?all=1 adds revoked ones); POST makes one ({"name","scope"})
 * and answers its secret once. */
static void h_keys(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    char *msg = NULL;
    if (strcmp(req->method, "POST") != 0) {
        clmr_store_key_t *items = NULL;
        size_t n = 0;
        const char *all = MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, "all");
        int rc = clmr_store_key_list(s->store, all && !strcmp(all, "1"), &items, &n, &msg);
        if (rc) {
            clmr__http_error_clmr(req, rc, msg);
        } else {
            json_t *arr = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(arr, key_json(&items[i]));
            clmr__http_json(req, 200, json_pack("{s:o}", "keys", arr));
        }
        clmr_store_key_list_free(items, n);
        free(msg);
        return;
    }
    json_error_t je;
    json_t *body = json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &je);
    json_t *name = body ? json_object_get(body, "name") : NULL;
    json_t *scope = body ? json_object_get(body, "scope") : NULL;
    int sc = json_is_string(scope) ? clmr_key_scope_parse(json_string_value(scope)) : -1;
    if (!body || !json_is_object(body) || json_object_size(body) != 2 || !json_is_string(name) ||
        sc < 0) {
        clmr__http_error(req, 400, "invalid_argument",
                         "the body must be {\"name\": \"...\", \"scope\": \"read\"|\"write\"|"
                         "\"admin\"}");
        json_decref(body);
        return;
    }
    char key[CLMR_KEY_TEXT_MAX];
    clmr_store_key_t k;
    int rc = clmr_store_key_create(s->store, json_string_value(name), (clmr_key_scope_t)sc, key, &k,
                                   &msg);
    json_decref(body);
    if (rc) {
        clmr__http_error_clmr(req, rc, msg);
        free(msg);
        return;
    }
    clmr__auth_refresh(s);
    json_t *o = key_json(&k);
    json_object_set_new(o, "key", json_string(key));
    memset(key, 0, sizeof key);
    CLMR_RLOG_INFO(req->request_id, "API key %lld (%s, scope %s) created", (long long)k.id,
                   k.prefix, clmr_key_scope_name(k.scope));
    snprintf(req->location, sizeof req->location, "/v1/admin/keys/%lld", (long long)k.id);
    clmr_store_key_clear(&k);
    clmr__http_json(req, 201, json_pack("{s:o}", "key", o));
}

/* DELETE /v1/admin/keys/{id}: revokes the key (takes effect before the answer is sent). */
static void h_key_revoke(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    clmr_store_key_t k;
    char *msg = NULL;
    int rc = clmr_store_key_revoke(s->store, strtoll(req->id, NULL, 10), &k, &msg);
    if (rc == CLMR_ENOT_FOUND) {
        clmr__http_error(req, 404, "not_found", "no key %s", req->id);
    } else if (rc) {
        clmr__http_error_clmr(req, rc, msg);
    } else {
        clmr__auth_refresh(s);
        CLMR_RLOG_INFO(req->request_id, "API key %lld (%s) revoked", (long long)k.id, k.prefix);
        clmr__http_json(req, 200, json_pack("{s:o}", "key", key_json(&k)));
        clmr_store_key_clear(&k);
    }
    free(msg);
}

void clmr__admin_handle(clmr_http_req_t *req)
{
    switch (req->admin_op) {
    case ADMIN_KEYS:
        h_keys(req);
        break;
    case ADMIN_KEY:
        h_key_revoke(req);
        break;
    case ADMIN_FINETUNE:
        h_finetune(req);
        break;
    case ADMIN_JOBS:
        h_jobs(req);
        break;
    case ADMIN_JOB:
        h_job(req, !strcmp(req->method, "DELETE"));
        break;
    case ADMIN_ACTIVATE:
        h_activate(req, 0);
        break;
    case ADMIN_ROLLBACK:
        h_activate(req, 1);
        break;
    default:
        clmr__http_error(req, 404, "not_found", "no route");
    }
}
