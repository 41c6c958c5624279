/* workers.c - bounded worker pool (see workers.h).
 *
 * DESIGN: a ring buffer of queue_depth slots guarded by one mutex and one condition variable;
 * close() sets a flag and broadcasts, and the threads leave only once the ring is empty, so every
 * accepted request gets its answer during a graceful shutdown.
 */
#include "http/workers.h"

#include "clmr/error.h"
#include "clmr/model.h"
#include "http/analysis.h"

#include <pthread.h>
#include <stdlib.h>
#include <xmmintrin.h>

typedef struct {
    clmr_workers_fn fn;
    void *arg;
    void *ref; /* model reference the job must run on (owned by the job), NULL = current */
    const clmr_model_t *model;
} job_t;

typedef struct {
    clmr_workers_t *pool;
    clmr_infer_t *ctx;
    void *ref; /* model reference ctx was built for (model source), NULL otherwise */
    /* A warm context built ahead by clmr_workers_preload for model reference next_ref (which it
     * holds), adopted by the worker when that model becomes current; under the pool mutex. */
    clmr_infer_t *next_ctx;
    void *next_ref;
    pthread_t thread;
    int started;
} worker_t;

struct clmr_workers {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *ring;
    int cap, head, count, running, closing;
    worker_t *workers;
    int n;
    clmr_infer_params_t ip;
    clmr_workers_acquire_fn acquire;
    clmr_workers_release_fn release;
    void *src_ud;
};

static _Thread_local void *tl_ref;

void *clmr_workers_model_ref(void)
{
    return tl_ref;
}

/* A context with every primitive built and run once (clmr_infer_warm), so no request pays the
 * first-call cost. */
static int open_warm(clmr_infer_t **ctx, const clmr_model_t *m, int threads, char **errmsg)
{
    int rc = clmr_http_infer_open(ctx, m, threads, errmsg);
    if (!rc && (rc = clmr_infer_warm(*ctx, errmsg))) clmr_infer_close(ctx);
    return rc;
}

/* Rebuilds the worker's context when the source's current model changed since the last job.
 * The new context is built before the old one is closed and the old reference released, so the
 * model under a context is always alive. */
static void refresh_ctx(clmr_workers_t *w, worker_t *self)
{
    const clmr_model_t *m = NULL;
    void *ref = w->acquire(w->src_ud, &m);
    if (ref == self->ref) {
        w->release(w->src_ud, ref);
        return;
    }
    clmr_infer_t *ctx = NULL;
    pthread_mutex_lock(&w->mu);
    if (self->next_ref == ref) { /* preloaded: adopt it, no build in the request path */
        ctx = self->next_ctx;
        self->next_ctx = NULL;
    }
    void *held = ctx ? self->next_ref : NULL;
    if (held) self->next_ref = NULL;
    pthread_mutex_unlock(&w->mu);
    if (held) w->release(w->src_ud, held);
    if (!ctx && m && open_warm(&ctx, m, w->ip.threads, NULL)) ctx = NULL; /* job answers 500 */
    clmr_infer_close(&self->ctx);
    if (self->ref) w->release(w->src_ud, self->ref);
    self->ctx = ctx;
    self->ref = ref;
}

/* Makes the worker's context serve the job's own model reference (taken when its request
 * arrived), which the job hands over: kept when the context is rebuilt for it, else released. */
static void use_job_ref(clmr_workers_t *w, worker_t *self, void *ref, const clmr_model_t *m)
{
    if (ref == self->ref) {
        w->release(w->src_ud, ref);
        return;
    }
    clmr_infer_t *ctx = NULL;
    if (m && clmr_infer_open(&ctx, m, &w->ip, NULL)) ctx = NULL; /* the job answers 500 */
    clmr_infer_close(&self->ctx);
    if (self->ref) w->release(w->src_ud, self->ref);
    self->ctx = ctx;
    self->ref = ref;
}

static void *worker_main(void *p)
{
    worker_t *self = p;
    clmr_workers_t *w = self->pool;
    /* FTZ/DAZ: denormals in tiny activations would cost ~100x per op and change nothing. */
    _mm_setcsr(_mm_getcsr() | 0x8040);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->count == 0 && !w->closing)
            pthread_cond_wait(&w->cv, &w->mu);
        if (w->count == 0 && w->closing) break;
        job_t j = w->ring[w->head];
        w->head = (w->head + 1) % w->cap;
        w->count--;
        w->running++;
        pthread_mutex_unlock(&w->mu);
        if (j.ref)
            use_job_ref(w, self, j.ref, j.model);
        else if (w->acquire)
            refresh_ctx(w, self);
        tl_ref = self->ref;
        j.fn(j.arg, self->ctx);
        pthread_mutex_lock(&w->mu);
        w->running--;
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

int clmr_workers_open(clmr_workers_t **out, const clmr_model_t *model, int n, int infer_threads,
                      int queue_depth, char **errmsg)
{
    return clmr_workers_open_source(out, model, NULL, NULL, NULL, n, infer_threads, queue_depth,
                                    errmsg);
}

int clmr_workers_open_source(clmr_workers_t **out, const clmr_model_t *model,
                             clmr_workers_acquire_fn acquire, clmr_workers_release_fn release,
                             void *src_ud, int n, int infer_threads, int queue_depth, char **errmsg)
{
    *out = NULL;
    if (n < 1 || queue_depth < 1)
        return clmr_set_err(errmsg, CLMR_EINVAL, "workers and queue depth must be >= 1");
    clmr_workers_t *w = calloc(1, sizeof *w);
    if (!w) return CLMR_ENOMEM;
    int rc = CLMR_ENOMEM;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->cap = queue_depth;
    w->ring = calloc((size_t)queue_depth, sizeof *w->ring);
    w->workers = calloc((size_t)n, sizeof *w->workers);
    if (!w->ring || !w->workers) goto fail;
    w->n = n;
    w->ip = clmr_infer_default_params();
    w->ip.threads = infer_threads;
    w->acquire = acquire;
    w->release = release;
    w->src_ud = src_ud;
    for (int i = 0; i < n; i++) {
        w->workers[i].pool = w;
        if (model && !acquire && (rc = open_warm(&w->workers[i].ctx, model, w->ip.threads, errmsg)))
            goto fail;
    }
    for (int i = 0; i < n; i++) {
        if (pthread_create(&w->workers[i].thread, NULL, worker_main, &w->workers[i])) {
            rc = clmr_set_err(errmsg, CLMR_ENOMEM, "cannot start worker thread %d", i);
            goto fail;
        }
        w->workers[i].started = 1;
    }
    *out = w;
    return 0;
fail:
    clmr_workers_close(&w);
    return rc;
}

int clmr_workers_preload(clmr_workers_t *w, const clmr_model_t *model, void *ref,
                         void *(*retain)(void *ref), char **errmsg)
{
    if (!w || !w->acquire || !model || !ref || !retain) return CLMR_EINVAL;
    for (int i = 0; i < w->n; i++) {
        clmr_infer_t *ctx = NULL;
        int rc = open_warm(&ctx, model, w->ip.threads, errmsg);
        if (rc) return rc;
        void *r = retain(ref);
        pthread_mutex_lock(&w->mu);
        clmr_infer_t *old_ctx = w->workers[i].next_ctx;
        void *old_ref = w->workers[i].next_ref;
        w->workers[i].next_ctx = ctx;
        w->workers[i].next_ref = r;
        pthread_mutex_unlock(&w->mu);
        clmr_infer_close(&old_ctx);
        if (old_ref) w->release(w->src_ud, old_ref);
    }
    return 0;
}

int clmr_workers_submit(clmr_workers_t *w, clmr_workers_fn fn, void *arg)
{
    return clmr_workers_submit_ref(w, fn, arg, NULL, NULL);
}

int clmr_workers_submit_ref(clmr_workers_t *w, clmr_workers_fn fn, void *arg, void *ref,
                            const clmr_model_t *model)
{
    int rc = 0;
    pthread_mutex_lock(&w->mu);
    if (w->closing) {
        rc = CLMR_ECANCELLED;
    } else if (w->count >= w->cap) {
        rc = CLMR_EBUSY;
    } else {
        w->ring[(w->head + w->count) % w->cap] = (job_t){fn, arg, w->acquire ? ref : NULL, model};
        w->count++;
        pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int clmr_workers_queued(clmr_workers_t *w)
{
    pthread_mutex_lock(&w->mu);
    int n = w->count;
    pthread_mutex_unlock(&w->mu);
    return n;
}

int clmr_workers_running(clmr_workers_t *w)
{
    pthread_mutex_lock(&w->mu);
    int n = w->running;
    pthread_mutex_unlock(&w->mu);
    return n;
}

void clmr_workers_drain(clmr_workers_t *w)
{
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->closing = 1;
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; w->workers && i < w->n; i++) {
        if (w->workers[i].started) pthread_join(w->workers[i].thread, NULL);
        w->workers[i].started = 0;
    }
}

void clmr_workers_close(clmr_workers_t **pw)
{
    clmr_workers_t *w = pw ? *pw : NULL;
    if (!w) return;
    clmr_workers_drain(w);
    for (int i = 0; w->workers && i < w->n; i++) {
        clmr_infer_close(&w->workers[i].ctx);
        if (w->workers[i].ref) w->release(w->src_ud, w->workers[i].ref);
        clmr_infer_close(&w->workers[i].next_ctx);
        if (w->workers[i].next_ref) w->release(w->src_ud, w->workers[i].next_ref);
    }
    free(w->workers);
    free(w->ring);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    free(w);
    *pw = NULL;
}
