/* test_workers.c - the bounded worker pool: every accepted job runs exactly once, a full queue is
 * refused at once with CLMR_EBUSY, drain runs what was queued and then refuses new jobs. */
#include "harness.h"
#include "http/workers.h"

#include "clmr/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

static atomic_int ran;
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static int gate_open;

static void count_job(void *arg, clmr_infer_t *ctx)
{
    (void)ctx;
    atomic_fetch_add(&ran, 1);
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Blocks until the test opens the gate, so the queue fills deterministically. */
static void gated_job(void *arg, clmr_infer_t *ctx)
{
    (void)ctx;
    pthread_mutex_lock(&gate_mu);
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void test_all_jobs_run_once(void)
{
    clmr_workers_t *w = NULL;
    CHECK(clmr_workers_open(&w, NULL, 3, 0, 1000, NULL) == 0);
    atomic_int per[500];
    atomic_store(&ran, 0);
    for (int i = 0; i < 500; i++) {
        atomic_init(&per[i], 0);
        CHECK(clmr_workers_submit(w, count_job, &per[i]) == 0);
    }
    clmr_workers_close(&w);
    CHECK(w == NULL);
    CHECK(atomic_load(&ran) == 500);
    int once = 1;
    for (int i = 0; i < 500; i++)
        once &= atomic_load(&per[i]) == 1;
    CHECK(once);
}

static void test_full_queue_refused(void)
{
    clmr_workers_t *w = NULL;
    gate_open = 0;
    CHECK(clmr_workers_open(&w, NULL, 1, 0, 2, NULL) == 0);
    atomic_int done;
    atomic_init(&done, 0);
    CHECK(clmr_workers_submit(w, gated_job, &done) == 0);
    /* wait until the single worker holds the first job, so exactly 2 more fit in the queue */
    for (int i = 0; i < 2000 && clmr_workers_running(w) != 1; i++)
        usleep(1000);
    CHECK(clmr_workers_running(w) == 1);
    CHECK(clmr_workers_submit(w, gated_job, &done) == 0);
    CHECK(clmr_workers_submit(w, gated_job, &done) == 0);
    CHECK(clmr_workers_queued(w) == 2);
    CHECK(clmr_workers_submit(w, gated_job, &done) == CLMR_EBUSY);
    pthread_mutex_lock(&gate_mu);
    gate_open = 1;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    clmr_workers_drain(w);
    CHECK(atomic_load(&done) == 3); /* the refused job never ran */
    CHECK(clmr_workers_submit(w, gated_job, &done) == CLMR_ECANCELLED);
    CHECK(clmr_workers_queued(w) == 0 && clmr_workers_running(w) == 0);
    clmr_workers_close(&w);
    clmr_workers_close(&w); /* NULL is accepted */
}

static void test_bad_params(void)
{
    clmr_workers_t *w = (clmr_workers_t *)1;
    CHECK(clmr_workers_open(&w, NULL, 0, 0, 1, NULL) == CLMR_EINVAL && w == NULL);
    CHECK(clmr_workers_open(&w, NULL, 1, 0, 0, NULL) == CLMR_EINVAL && w == NULL);
}

int main(void)
{
    RUN_TEST(test_all_jobs_run_once);
    RUN_TEST(test_full_queue_refused);
    RUN_TEST(test_bad_params);
    return TEST_END();
}
