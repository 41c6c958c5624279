/* rollover.c - served models, activation and background re-embedding (see rollover.h).
 *
 * DESIGN: one mutex guards the two server references and the re-embedding status; reference
 * counts are atomics so dropping a reference never takes the mutex. The re-embedding thread
 * lists the tracks first (short snapshot), then works track by track with its own inference
 * context (finetune-threads OpenMP threads) so the request workers keep their cores; it writes
 * each track's embedding and tag scores for the new model and skips tracks that already have
 * them (a rollback to an earlier model only embeds the tracks ingested since). After the new
 * index is built and published as `search`, the index is loaded once more from the store so
 * tracks ingested during the switch are not missed (upserts are idempotent).
 */
#include "http/rollover.h"

#include "clmr/error.h"
#include "http/http_internal.h"
#include "index/index.h"
#include "store/store.h"
#include "util/log.h"

#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct clmr_rollover {
    pthread_mutex_t mu;
    clmr_served_t *active, *search;
    pthread_t th;
    int th_live;
    atomic_int stop;
    /* The activation state machine (under mu): idle -> activating (one caller loads the model and
     * records it) -> re-embedding ("running") -> complete | failed | cancelled. A second
     * activation while either of the first two is under way gets CLMR_EBUSY, so only one thread
     * ever starts, joins or replaces the re-embedding thread. */
    int activating;
    /* Tracks deleted while a new index is being built (state "running"): removed from it once it
     * is complete, so a delete landing between its load and its publication is not lost. */
    char (*pending)[65];
    size_t n_pending, cap_pending;
    /* re-embedding status (under mu) */
    char model[CLMR_STORE_ID_MAX + 1];
    char state[16]; /* "idle", "running", "complete", "failed" */
    long long done, total;
    char error[256];
};

static clmr_served_t *served_load(const char *path, char **errmsg)
{
    clmr_served_t *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    if (clmr_http_model_open(&m->model, &m->info, path, errmsg)) {
        free(m);
        return NULL;
    }
    atomic_store(&m->refs, 1);
    return m;
}

void clmr__served_release(clmr_served_t *m)
{
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) return;
    clmr_index_t *idx = atomic_load(&m->index);
    clmr_index_destroy(&idx);
    clmr_http_model_close(&m->model, &m->info);
    free(m);
}

static clmr_served_t *ref(clmr_served_t *m)
{
    atomic_fetch_add(&m->refs, 1);
    return m;
}

clmr_served_t *clmr__served_active(clmr_server_t *s)
{
    pthread_mutex_lock(&s->ro->mu);
    clmr_served_t *m = ref(s->ro->active);
    pthread_mutex_unlock(&s->ro->mu);
    return m;
}

clmr_served_t *clmr__served_search(clmr_server_t *s)
{
    pthread_mutex_lock(&s->ro->mu);
    clmr_served_t *m = ref(s->ro->search);
    pthread_mutex_unlock(&s->ro->mu);
    return m;
}

void *clmr__rollover_acquire(void *ud, const clmr_model_t **model)
{
    clmr_served_t *m = clmr__served_active(ud);
    *model = m->model;
    return m;
}

void clmr__rollover_release(void *ud, void *r)
{
    clmr__served_release(r);
}

static void *retain_served(void *r)
{
    return ref(r);
}

void clmr__rollover_preload(clmr_server_t *s, clmr_served_t *m)
{
    char *msg = NULL;
    if (clmr_workers_preload(s->workers, m->model, m, retain_served, &msg))
        CLMR_LOG_WARN("model %s: inference contexts not built ahead (%s); workers build them at "
                      "their first job",
                      m->info.id, msg ? msg : "error");
    free(msg);
}

int clmr__rollover_open(clmr_server_t *s, char **errmsg)
{
    struct clmr_rollover *ro = calloc(1, sizeof *ro);
    if (!ro) return CLMR_ENOMEM;
    pthread_mutex_init(&ro->mu, NULL);
    snprintf(ro->state, sizeof ro->state, "idle");
    s->ro = ro;
    char *msg = NULL;
    /* An absolute path: the store keeps it, and jobs load the parent from it later. */
    char abs[PATH_MAX];
    clmr_served_t *m = served_load(realpath(s->cfg.model, abs) ? abs : s->cfg.model, &msg);
    if (!m) {
        int rc = clmr_set_err(errmsg, CLMR_EMODEL_IO, "%s", msg ? msg : "cannot load the model");
        free(msg);
        return rc;
    }
    ro->active = m;
    ro->search = ref(m);
    CLMR_LOG_INFO("model %s (%s): %d tags, %d-d embeddings, %d-sample chunks", m->info.id,
                  m->info.name, m->info.n_tags, m->info.dim, m->info.chunk_samples);
    return 0;
}

int clmr__rollover_boot_replace(clmr_server_t *s, const char *path, const char *id)
{
    struct clmr_rollover *ro = s->ro;
    char *msg = NULL;
    clmr_served_t *m = served_load(path, &msg);
    if (!m || strcmp(m->info.id, id)) {
        CLMR_LOG_WARN("the active model %s cannot be served (%s); serving the --model file", id,
                      m ? "its file changed" : (msg ? msg : "load failed"));
        clmr__served_release(m);
        free(msg);
        return -1;
    }
    clmr__served_release(ro->active);
    clmr__served_release(ro->search);
    ro->active = m;
    ro->search = ref(m);
    CLMR_LOG_INFO("serving the fine-tuned model %s activated earlier (%s)", id, path);
    return 0;
}

int clmr__rollover_open_index(clmr_server_t *s, char **errmsg)
{
    clmr_served_t *m = s->ro->active;
    clmr_index_t *idx = NULL;
    int rc = clmr_index_create(&idx, m->info.dim, 0);
    if (rc) return clmr_set_err(errmsg, rc, "cannot create the similarity index");
    size_t loaded = 0;
    if ((rc = clmr_index_load(idx, s->store, m->info.id, &loaded, errmsg))) {
        clmr_index_destroy(&idx);
        return rc;
    }
    atomic_store(&m->index, idx);
    CLMR_LOG_INFO("catalogue: %zu tracks with embeddings for model %s", loaded, m->info.id);
    return 0;
}

static void join_reembed(struct clmr_rollover *ro)
{
    pthread_mutex_lock(&ro->mu);
    int live = ro->th_live;
    ro->th_live = 0;
    pthread_mutex_unlock(&ro->mu);
    if (live) pthread_join(ro->th, NULL);
}

void clmr__rollover_close(clmr_server_t *s)
{
    struct clmr_rollover *ro = s->ro;
    if (!ro) return;
    atomic_store(&ro->stop, 1);
    join_reembed(ro);
    clmr__served_release(ro->active);
    clmr__served_release(ro->search);
    free(ro->pending);
    pthread_mutex_destroy(&ro->mu);
    free(ro);
    s->ro = NULL;
}

/* ---------------------------------------------------------------- re-embedding */

typedef struct {
    char (*ids)[65];
    char **paths;
    size_t n, cap;
    const char *data_dir;
} track_list_t;

static int list_track(void *ud, const clmr_track_record_t *t)
{
    track_list_t *l = ud;
    if (!t->audio_path) return 0;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        void *a = realloc(l->ids, cap * sizeof *l->ids), *b = NULL;
        if (a) l->ids = a;
        if (a) b = realloc(l->paths, cap * sizeof *l->paths);
        if (!a || !b) return CLMR_ENOMEM;
        l->paths = b;
        l->cap = cap;
    }
    size_t n = strlen(l->data_dir) + strlen(t->audio_path) + 2;
    if (!(l->paths[l->n] = malloc(n))) return CLMR_ENOMEM;
    if (t->audio_path[0] == '/')
        snprintf(l->paths[l->n], n, "%s", t->audio_path);
    else
        snprintf(l->paths[l->n], n, "%s/%s", l->data_dir, t->audio_path);
    memcpy(l->ids[l->n], t->id, 65);
    l->n++;
    return 0;
}

static void set_status(struct clmr_rollover *ro, const char *state, long long done, long long total,
                       const char *err)
{
    pthread_mutex_lock(&ro->mu);
    snprintf(ro->state, sizeof ro->state, "%s", state);
    if (done >= 0) ro->done = done;
    if (total >= 0) ro->total = total;
    if (err) snprintf(ro->error, sizeof ro->error, "%s", err);
    pthread_mutex_unlock(&ro->mu);
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    size_t cap = 0, len = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 1 << 20;
            unsigned char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    fclose(f);
    *n = len;
    return buf;
}

typedef struct {
    clmr_server_t *s;
    clmr_served_t *m; /* reference owned by the thread */
} reembed_arg_t;

static void *reembed_main(void *p)
{
    reembed_arg_t *a = p;
    clmr_server_t *s = a->s;
    struct clmr_rollover *ro = s->ro;
    clmr_served_t *m = a->m;
    free(a);
    track_list_t l = {NULL, NULL, 0, 0, clmr_store_data_dir(s->store)};
    char *msg = NULL;
    clmr_infer_t *ctx = NULL;
    clmr_index_t *idx = NULL;
    long long done = 0, embedded = 0;
    int rc = clmr_store_track_foreach(s->store, 0, list_track, &l, &msg);
    if (!rc) rc = clmr_http_infer_open(&ctx, m->model, s->cfg.finetune_threads, &msg);
    if (rc) goto out;
    omp_set_num_threads(s->cfg.finetune_threads);
    set_status(ro, "running", 0, (long long)l.n, NULL);
    for (size_t i = 0; i < l.n; i++) {
        if (atomic_load(&ro->stop)) {
            rc = CLMR_ECANCELLED;
            goto out;
        }
        float *v = NULL;
        int dim = 0;
        if (clmr_store_embedding_get(s->store, l.ids[i], m->info.id, &v, &dim, NULL) == 0) {
            free(v);
            set_status(ro, "running", ++done, -1, NULL);
            continue;
        }
        size_t n = 0;
        unsigned char *bytes = read_file(l.paths[i], &n);
        clmr_http_analysis_t an;
        int arc = bytes ? clmr_http_analyze(&an, ctx, bytes, n, (size_t)1 << 32,
                                            s->cfg.max_duration_s, 0, NULL)
                        : CLMR_EIO;
        free(bytes);
        if (arc == 0) {
            int prc =
                clmr_store_embedding_put(s->store, l.ids[i], m->info.id, an.emb, an.dim, NULL);
            if (!prc && an.n_tags > 0)
                prc = clmr_store_scores_put(s->store, l.ids[i], m->info.id, an.scores, an.n_tags,
                                            NULL);
            clmr_http_analysis_free(&an);
            if (prc == 0) embedded++;
            /* a track deleted meanwhile (ENOT_FOUND) is simply skipped */
        } else {
            CLMR_LOG_WARN("re-embedding: track %s skipped: %s", l.ids[i], clmr_strerror(arc));
        }
        set_status(ro, "running", ++done, -1, NULL);
    }
    if ((rc = clmr_index_create(&idx, m->info.dim, l.n))) goto out;
    if ((rc = clmr_index_load(idx, s->store, m->info.id, NULL, &msg))) goto out;
    if (clmr__rollover_test_hook && (rc = clmr__rollover_test_hook(s, "before_publish"))) goto out;
    atomic_store(&m->index, idx);
    idx = NULL;
    pthread_mutex_lock(&ro->mu);
    clmr_served_t *old = NULL;
    if (ro->active == m) { /* still the active model: switch search to it */
        old = ro->search;
        ro->search = ref(m);
    }
    pthread_mutex_unlock(&ro->mu);
    clmr__served_release(old);
    /* Tracks ingested while the index was being built: their rows are in the store now. */
    clmr_index_load(atomic_load(&m->index), s->store, m->info.id, NULL, NULL);
    /* Deletes that landed since the track list was read: the loads above may have picked their
     * rows up before they were deleted. Applied under the mutex together with the state change,
     * so a later delete finds the index published (and removes from it directly). */
    pthread_mutex_lock(&ro->mu);
    for (size_t i = 0; i < ro->n_pending; i++)
        clmr_index_remove(atomic_load(&m->index), ro->pending[i]);
    ro->n_pending = 0;
    snprintf(ro->state, sizeof ro->state, "complete");
    ro->done = done;
    pthread_mutex_unlock(&ro->mu);
    CLMR_LOG_INFO("re-embedding for model %s complete: %lld tracks embedded, %lld total; "
                  "similarity search now uses it",
                  m->info.id, embedded, done);
out:
    if (rc) {
        char e[256];
        snprintf(e, sizeof e, "%s", msg ? msg : clmr_strerror(rc));
        pthread_mutex_lock(&ro->mu);
        ro->n_pending = 0;
        pthread_mutex_unlock(&ro->mu);
        set_status(ro, rc == CLMR_ECANCELLED ? "cancelled" : "failed", -1, -1, e);
        if (rc != CLMR_ECANCELLED)
            CLMR_LOG_WARN("re-embedding for model %s failed (activating it again retries): %s",
                          m->info.id, e);
    }
    clmr_index_destroy(&idx);
    clmr_http_infer_close(&ctx);
    for (size_t i = 0; i < l.n; i++)
        free(l.paths[i]);
    free(l.paths);
    free(l.ids);
    free(msg);
    clmr__served_release(m);
    return NULL;
}

int (*clmr__rollover_test_hook)(clmr_server_t *s, const char *stage);

void clmr__data_path(clmr_server_t *s, const char *rel, char *buf, size_t cap)
{
    if (rel && rel[0] == '/')
        snprintf(buf, cap, "%s", rel);
    else
        snprintf(buf, cap, "%s/%s", s->store ? clmr_store_data_dir(s->store) : s->cfg.data_dir,
                 rel ? rel : "");
}

void clmr__rollover_forget(clmr_server_t *s, const char *track_id)
{
    struct clmr_rollover *ro = s->ro;
    pthread_mutex_lock(&ro->mu);
    clmr_index_t *ia = atomic_load(&ro->active->index), *is = atomic_load(&ro->search->index);
    if (ia) clmr_index_remove(ia, track_id);
    if (is && is != ia) clmr_index_remove(is, track_id);
    if (!strcmp(ro->state, "running")) {
        if (ro->n_pending == ro->cap_pending) {
            size_t cap = ro->cap_pending ? 2 * ro->cap_pending : 16;
            void *p = realloc(ro->pending, cap * sizeof *ro->pending);
            if (p) {
                ro->pending = p;
                ro->cap_pending = cap;
            }
        }
        if (ro->n_pending < ro->cap_pending)
            snprintf(ro->pending[ro->n_pending++], 65, "%s", track_id);
        else
            CLMR_LOG_WARN("out of memory: the delete of %s may reappear in search until restart",
                          track_id);
    }
    pthread_mutex_unlock(&ro->mu);
}

/* Under ro->mu. Not inlined: GCC 12 with -fsanitize=address at -O2 takes ro->state for a
 * zero-size region once inlined here (-Wstringop-overread, a false positive). */
__attribute__((noinline)) static int reembedding_running(const struct clmr_rollover *ro)
{
    return strcmp(ro->state, "running") == 0;
}

static void activation_done(struct clmr_rollover *ro)
{
    pthread_mutex_lock(&ro->mu);
    ro->activating = 0;
    pthread_mutex_unlock(&ro->mu);
}

int clmr__rollover_activate(clmr_server_t *s, const char *id, char **errmsg)
{
    struct clmr_rollover *ro = s->ro;
    clmr_store_model_t sm;
    memset(&sm, 0, sizeof sm);
    int rc = clmr_store_model_get(s->store, id, &sm, errmsg);
    if (rc) return rc;
    char path[CLMR_CONFIG_PATH_MAX + 160];
    clmr__data_path(s, sm.path, path, sizeof path);
    clmr_store_model_clear(&sm);

    /* Enter the state machine: one activation at a time, none while a re-embedding runs. */
    pthread_mutex_lock(&ro->mu);
    if (ro->activating || reembedding_running(ro)) {
        pthread_mutex_unlock(&ro->mu);
        return clmr_set_err(errmsg, CLMR_EBUSY,
                            "another activation is in progress or the catalogue is being "
                            "re-embedded for the previous one; retry when GET /v1/models says "
                            "it is complete");
    }
    int same = !strcmp(ro->active->info.id, id);
    if (same && atomic_load(&ro->active->index)) { /* already active and searchable */
        pthread_mutex_unlock(&ro->mu);
        return 0;
    }
    ro->activating = 1;
    /* The active model without an index (its re-embedding failed): re-embed it again. */
    clmr_served_t *m = same ? ref(ro->active) : NULL;
    pthread_mutex_unlock(&ro->mu);

    if (!m) {
        char *msg = NULL;
        m = served_load(path, &msg);
        if (!m) {
            rc = clmr_set_err(errmsg, CLMR_EMODEL_IO, "%s", msg ? msg : "cannot load the model");
            free(msg);
            activation_done(ro);
            return rc;
        }
        if (strcmp(m->info.id, id)) {
            clmr__served_release(m);
            activation_done(ro);
            return clmr_set_err(errmsg, CLMR_EMODEL_FORMAT,
                                "the file of model %s has changed (its content id is now "
                                "different)",
                                id);
        }
    }
    join_reembed(ro); /* a finished previous run (only the activating caller gets here) */
    if (!same) clmr__rollover_preload(s, m); /* before m is served: no request builds a context */
    if (!same && (rc = clmr_store_model_activate(s->store, id, errmsg))) {
        clmr__served_release(m);
        activation_done(ro);
        return rc;
    }
    reembed_arg_t *a = malloc(sizeof *a);
    pthread_mutex_lock(&ro->mu);
    clmr_served_t *old = NULL;
    if (!same) { /* our reference from served_load becomes the active one */
        old = ro->active;
        ro->active = m;
    }
    snprintf(ro->model, sizeof ro->model, "%s", id);
    snprintf(ro->state, sizeof ro->state, "running");
    ro->done = ro->total = 0;
    ro->error[0] = 0;
    ro->n_pending = 0;
    if (a) {
        a->s = s;
        a->m = ref(m);
        if (pthread_create(&ro->th, NULL, reembed_main, a) == 0) {
            ro->th_live = 1;
        } else {
            clmr__served_release(m);
            free(a);
            a = NULL;
        }
    }
    if (!a) {
        snprintf(ro->state, sizeof ro->state, "failed");
        snprintf(ro->error, sizeof ro->error, "cannot start the re-embedding thread");
    }
    ro->activating = 0;
    pthread_mutex_unlock(&ro->mu);
    clmr__served_release(old);
    if (same) clmr__served_release(m); /* the temporary reference taken above */
    CLMR_LOG_INFO("model %s is %s; re-embedding the catalogue in the background", id,
                  same ? "active again" : "now active");
    return 0;
}

json_t *clmr__rollover_state(clmr_server_t *s)
{
    struct clmr_rollover *ro = s->ro;
    pthread_mutex_lock(&ro->mu);
    json_t *j =
        json_pack("{s:s,s:s,s:{s:s?,s:s,s:I,s:I}}", "active", ro->active->info.id, "search",
                  ro->search->info.id, "reembedding", "model", ro->model[0] ? ro->model : NULL,
                  "state", ro->state, "done", (json_int_t)ro->done, "total", (json_int_t)ro->total);
    if (ro->error[0])
        json_object_set_new(json_object_get(j, "reembedding"), "error", json_string(ro->error));
    pthread_mutex_unlock(&ro->mu);
    return j;
}
