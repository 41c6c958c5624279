/* workers.h - the bounded decode/inference worker pool of the daemon.
 *
 * DESIGN: N threads and one FIFO of at most queue_depth waiting jobs. Each thread owns its own
 * clmr_infer_t (oneDNN primitives and buffers are built once per thread and reused for every
 * job), and runs with flush-to-zero / denormals-are-zero set. Submitting never blocks: a full queue
 * is reported to the caller at once (the HTTP layer answers 503 + Retry-After) instead of letting
 * work pile up in memory.
 */
#ifndef CLMR_HTTP_WORKERS_H
#define CLMR_HTTP_WORKERS_H

/* Forward declarations keep this header independent of clmr/model.h. */
typedef struct clmr_model clmr_model_t;
typedef struct clmr_infer clmr_infer_t;

typedef struct clmr_workers clmr_workers_t;

/* A job: fn(arg, ctx) runs on a worker thread with that thread's inference context (NULL when the
 * pool was opened without a model). */
typedef void (*clmr_workers_fn)(void *arg, clmr_infer_t *ctx);

/* Starts n (>= 1) threads, each with a clmr_infer_t for model (which must outlive the pool;
 * model may be NULL for a pool without inference) using infer_threads OpenMP threads. queue_depth
 * (>= 1) jobs may wait. Returns 0, CLMR_ENOMEM, CLMR_EDNNL (errmsg says which). */
int clmr_workers_open(clmr_workers_t **out, const clmr_model_t *model, int n, int infer_threads,
                      int queue_depth, char **errmsg);

/* Model source for roll-over: acquire(ud, &model) returns a reference (non-NULL) to the model to
 * serve now and sets *model; release(ud, ref) drops one reference. Before each job a worker
 * acquires the current model; when it differs from the one its context was built for, the worker
 * builds a new context (lazily, one worker at a time, never during a job), then closes the old one
 * and releases the old reference. A job in progress keeps its model alive, so switching models
 * never fails or drops a request. model must be NULL with a source (contexts are built at the
 * first job). */
typedef void *(*clmr_workers_acquire_fn)(void *ud, const clmr_model_t **model);
typedef void (*clmr_workers_release_fn)(void *ud, void *ref);
int clmr_workers_open_source(clmr_workers_t **out, const clmr_model_t *model,
                             clmr_workers_acquire_fn acquire, clmr_workers_release_fn release,
                             void *src_ud, int n, int infer_threads, int queue_depth,
                             char **errmsg);

/* Cold starts: builds, in the calling thread, one warm inference context per worker for model
 * (clmr_infer_warm: every primitive built and run once) and hands them over; a worker adopts its
 * context instead of building one when ref becomes the source's current model. Each handed
 * context holds its own reference, retain(ref), released when adopted, replaced or at close.
 * Call it before the source returns the model (start-up, model switch) so no request pays the
 * build. Pool opened with a source only. Returns 0, CLMR_EINVAL, CLMR_ENOMEM or CLMR_EDNNL. */
int clmr_workers_preload(clmr_workers_t *w, const clmr_model_t *model, void *ref,
                         void *(*retain)(void *ref), char **errmsg);

/* Inside a job: the model reference the job's context was built for (NULL without a source). */
void *clmr_workers_model_ref(void);

/* Queues a job. Returns 0, or CLMR_EBUSY when queue_depth jobs are already waiting, or
 * CLMR_ECANCELLED after clmr_workers_close began. Thread-safe; never blocks on the job. */
int clmr_workers_submit(clmr_workers_t *w, clmr_workers_fn fn, void *arg);

/* Same, for a pool with a model source: the job runs on model, whose reference ref (obtained
 * like the source's acquire, e.g. an extra reference the caller took) passes to the pool; the
 * worker builds its context for that model when it serves another one, and releases ref when
 * it no longer needs it. So a queued request keeps the model it started with however many
 * activations happen while it waits. On an error return the caller keeps ref. ref NULL = as
 * clmr_workers_submit. */
int clmr_workers_submit_ref(clmr_workers_t *w, clmr_workers_fn fn, void *arg, void *ref,
                            const clmr_model_t *model);

/* Jobs waiting (not yet started) and jobs running right now. Thread-safe. */
int clmr_workers_queued(clmr_workers_t *w);
int clmr_workers_running(clmr_workers_t *w);

/* Stops accepting jobs (later submits return CLMR_ECANCELLED), runs every queued job to
 * completion and joins the threads. The pool stays valid (submit, queued, running may still be
 * called) until clmr_workers_close. Accepts NULL. */
void clmr_workers_drain(clmr_workers_t *w);

/* Drains (see above), frees the contexts and the pool. Accepts NULL and sets *w to NULL. No other
 * thread may use the pool during or after the call. */
void clmr_workers_close(clmr_workers_t **w);

#endif
