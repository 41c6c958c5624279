/* test_rollover.c - model activation in a real in-process server (tiny model, real SQLite store,
 * real FLAC pool files), issue 12:
 *  - concurrent activations are serialised: each returns 0 or CLMR_EBUSY, the re-embedding thread
 *    is started and joined by one caller at a time (run under TSan in suite 'concurrency'), and
 *    the store's active model always equals the served one afterwards;
 *  - an activation while a re-embedding runs is CLMR_EBUSY;
 *  - a track deleted after the new index was loaded but before it was published is not in it;
 *  - a failed re-embedding leaves no index, and activating the model again re-embeds it.
 * A second model is the tiny model with one byte of its description changed (another id). */
#include "clmr/error.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "http/http_internal.h"
#include "http/rollover.h"
#include "http/server.h"
#include "index/index.h"
#include "store/pool.h"
#include "store/store.h"
#include "store/test_util.h"

#include <math.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TINY CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors"

static char *dir;
static char variant_path[4096], base_id[CLMR_STORE_ID_MAX + 1], variant_id[CLMR_STORE_ID_MAX + 1];

static int make_variant(void)
{
    FILE *f = fopen(TINY, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n);
    if (!b || fread(b, 1, (size_t)n, f) != (size_t)n) return -1;
    fclose(f);
    char *p = memmem(b, (size_t)n, "random test model", 17);
    if (!p) return -1;
    p[0] = 'R'; /* same length: the header stays valid, the content id changes */
    snprintf(variant_path, sizeof variant_path, "%s/variant.safetensors", dir);
    f = fopen(variant_path, "wb");
    if (!f || fwrite(b, 1, (size_t)n, f) != (size_t)n) return -1;
    fclose(f);
    free(b);
    return 0;
}

static clmr_server_t *open_server(void)
{
    clmr_config_t cfg;
    clmr_config_defaults(&cfg);
    snprintf(cfg.model, sizeof cfg.model, "%s", TINY);
    snprintf(cfg.data_dir, sizeof cfg.data_dir, "%s/data", dir);
    snprintf(cfg.listen_host, sizeof cfg.listen_host, "127.0.0.1");
    cfg.listen_port = 0;
    cfg.workers = 1;
    clmr_server_t *s = NULL;
    char *msg = NULL;
    int rc = clmr_server_open(&s, &cfg, &msg);
    CHECKF(rc == 0, "server open: %s", msg ? msg : "");
    free(msg);
    return s;
}

static void register_variant(clmr_server_t *s)
{
    clmr_model_t *m = NULL;
    clmr_http_model_info_t info;
    CHECK(clmr_http_model_open(&m, &info, variant_path, NULL) == 0);
    snprintf(variant_id, sizeof variant_id, "%s", info.id);
    clmr_http_model_close(&m, &info);
    clmr_served_t *a = clmr__served_active(s);
    snprintf(base_id, sizeof base_id, "%s", a->info.id);
    clmr__served_release(a);
    clmr_store_model_t sm = {0};
    snprintf(sm.id, sizeof sm.id, "%s", variant_id);
    sm.name = "variant";
    sm.path = variant_path;
    sm.status = CLMR_MODEL_CANDIDATE;
    CHECK(clmr_store_model_put(s->store, &sm, NULL) == 0);
}

/* A catalogued track with a real FLAC pool file (1 s of a tone). */
static void add_track(clmr_server_t *s, int i, char id[65])
{
    for (int k = 0; k < 64; k++)
        id[k] = "0123456789abcdef"[(i * 5 + k * 3) % 16];
    id[64] = 0;
    float x[22050];
    for (int k = 0; k < 22050; k++)
        x[k] = 0.3f * sinf(2.0f * 3.14159265f * (200.0f + 50.0f * i) * k / 22050.0f);
    char full[4096], rel[128];
    const char *pool = clmr_store_pool_dir(s->store);
    CHECK(clmr_pool_path(pool, id, full, sizeof full, rel, sizeof rel) == 0);
    CHECK(clmr_pool_write(pool, id, x, 22050, NULL) == 0);
    clmr_track_record_t t = {0};
    memcpy(t.id, id, 65);
    t.duration_s = 1;
    t.audio_path = rel;
    float emb[16];
    for (int k = 0; k < 16; k++)
        emb[k] = (float)(k + i + 1);
    CHECK(clmr_store_track_ingest(s->store, &t, base_id, emb, 16, NULL, 0, NULL, NULL) == 0);
}

/* Waits (deadline 120 s) until no re-embedding runs; returns its final state. */
static void wait_idle(clmr_server_t *s, char state[32])
{
    double until = clmr__http_now() + 120;
    for (;;) {
        json_t *j = clmr__rollover_state(s);
        const char *st =
            json_string_value(json_object_get(json_object_get(j, "reembedding"), "state"));
        snprintf(state, 32, "%s", st ? st : "?");
        json_decref(j);
        if (strcmp(state, "running") || clmr__http_now() > until) return;
        usleep(10 * 1000);
    }
}

static void check_store_agrees(clmr_server_t *s)
{
    clmr_store_model_t act = {0};
    CHECK(clmr_store_model_get_active(s->store, &act, NULL) == 0);
    clmr_served_t *a = clmr__served_active(s);
    CHECKF(!strcmp(act.id, a->info.id), "store says %s, served %s", act.id, a->info.id);
    clmr__served_release(a);
    clmr_store_model_clear(&act);
}

typedef struct {
    clmr_server_t *s;
    const char *id;
    pthread_barrier_t *bar;
    int rc;
} act_arg_t;

static void *activate_main(void *p)
{
    act_arg_t *a = p;
    pthread_barrier_wait(a->bar);
    char *msg = NULL;
    a->rc = clmr__rollover_activate(a->s, a->id, &msg);
    free(msg);
    return NULL;
}

static void test_concurrent_activations(void)
{
    clmr_server_t *s = open_server();
    register_variant(s);
    char id[65];
    add_track(s, 1, id);
    int ok = 0, busy = 0;
    for (int round = 0; round < 12; round++) {
        pthread_barrier_t bar;
        pthread_barrier_init(&bar, NULL, 3);
        act_arg_t a[3];
        pthread_t th[3];
        for (int i = 0; i < 3; i++) {
            a[i] = (act_arg_t){s, (round + i) % 2 ? variant_id : base_id, &bar, 0};
            pthread_create(&th[i], NULL, activate_main, &a[i]);
        }
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            CHECKF(a[i].rc == 0 || a[i].rc == CLMR_EBUSY, "round %d: %s", round,
                   clmr_err_name(a[i].rc));
            ok += a[i].rc == 0;
            busy += a[i].rc == CLMR_EBUSY;
        }
        pthread_barrier_destroy(&bar);
        char state[32];
        wait_idle(s, state);
        CHECKF(!strcmp(state, "complete") || !strcmp(state, "idle"), "round %d: %s", round, state);
        check_store_agrees(s);
    }
    printf("# %d activations succeeded, %d were refused as busy\n", ok, busy);
    CHECK(ok >= 12);
    /* three activations meeting at a barrier overlap: without the state machine all of them
     * went through (each loading a model and racing to record it) */
    CHECK(busy >= 1);
    CHECK(clmr_server_shutdown(&s, 5) == 0);
}

static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hook_cv = PTHREAD_COND_INITIALIZER;
static int hook_mode, hook_entered, hook_release, hook_failures;
static char hook_delete_id[65];

/* 1: wait until released; 2: delete hook_delete_id like DELETE /v1/tracks/{id}; 3: fail once. */
static int hook(clmr_server_t *s, const char *stage)
{
    if (strcmp(stage, "before_publish")) return 0;
    pthread_mutex_lock(&hook_mu);
    hook_entered++;
    pthread_cond_broadcast(&hook_cv);
    int mode = hook_mode;
    while (mode == 1 && !hook_release)
        pthread_cond_wait(&hook_cv, &hook_mu);
    pthread_mutex_unlock(&hook_mu);
    if (mode == 2) {
        CHECK(clmr_store_track_delete(s->store, hook_delete_id, NULL) == 0);
        clmr__rollover_forget(s, hook_delete_id);
    }
    if (mode == 3 && hook_failures++ == 0) return CLMR_EIO;
    return 0;
}

static void test_activation_while_reembedding_is_busy(void)
{
    clmr_server_t *s = open_server();
    register_variant(s);
    char id[65];
    add_track(s, 2, id);
    hook_mode = 1;
    hook_entered = hook_release = 0;
    clmr__rollover_test_hook = hook;
    CHECK(clmr__rollover_activate(s, variant_id, NULL) == 0);
    pthread_mutex_lock(&hook_mu);
    while (!hook_entered)
        pthread_cond_wait(&hook_cv, &hook_mu);
    pthread_mutex_unlock(&hook_mu);
    char *msg = NULL;
    CHECK(clmr__rollover_activate(s, base_id, &msg) == CLMR_EBUSY);
    free(msg);
    CHECK(clmr__rollover_activate(s, variant_id, NULL) == CLMR_EBUSY);
    pthread_mutex_lock(&hook_mu);
    hook_release = 1;
    pthread_cond_broadcast(&hook_cv);
    pthread_mutex_unlock(&hook_mu);
    char state[32];
    wait_idle(s, state);
    CHECK(!strcmp(state, "complete"));
    check_store_agrees(s);
    clmr__rollover_test_hook = NULL;
    CHECK(clmr_server_shutdown(&s, 5) == 0);
}

static void test_delete_during_index_build(void)
{
    clmr_server_t *s = open_server();
    register_variant(s);
    char keep[65], gone[65];
    add_track(s, 3, keep);
    add_track(s, 4, gone);
    memcpy(hook_delete_id, gone, 65);
    hook_mode = 2;
    clmr__rollover_test_hook = hook;
    CHECK(clmr__rollover_activate(s, variant_id, NULL) == 0);
    char state[32];
    wait_idle(s, state);
    CHECK(!strcmp(state, "complete"));
    clmr_served_t *srch = clmr__served_search(s);
    CHECK(!strcmp(srch->info.id, variant_id));
    clmr_index_t *idx = atomic_load(&srch->index);
    float v[16];
    CHECK(idx && clmr_index_get(idx, keep, v) == 0);
    CHECKF(idx && clmr_index_get(idx, gone, v) == CLMR_ENOT_FOUND,
           "the track deleted during the build is still searchable");
    clmr_index_hit_t hits[4];
    int n = 0;
    CHECK(idx && clmr_index_search(idx, v, 4, NULL, hits, &n) == 0 && n == 1);
    clmr__served_release(srch);
    clmr__rollover_test_hook = NULL;
    CHECK(clmr_server_shutdown(&s, 5) == 0);
}

static void test_failed_reembedding_is_retried(void)
{
    clmr_server_t *s = open_server();
    register_variant(s);
    char id[65];
    add_track(s, 5, id);
    hook_mode = 3;
    hook_failures = 0;
    clmr__rollover_test_hook = hook;
    CHECK(clmr__rollover_activate(s, variant_id, NULL) == 0);
    char state[32];
    wait_idle(s, state);
    CHECK(!strcmp(state, "failed"));
    clmr_served_t *a = clmr__served_active(s);
    CHECK(!strcmp(a->info.id, variant_id) && atomic_load(&a->index) == NULL);
    clmr__served_release(a);
    /* activating the same model again re-embeds it (the hook lets the second run through) */
    CHECK(clmr__rollover_activate(s, variant_id, NULL) == 0);
    wait_idle(s, state);
    CHECK(!strcmp(state, "complete"));
    a = clmr__served_active(s);
    clmr_served_t *srch = clmr__served_search(s);
    CHECKF(atomic_load(&a->index) != NULL, "the active model still has no index");
    CHECK(srch == a);
    clmr__served_release(srch);
    clmr__served_release(a);
    /* and once it has one, activating it again changes nothing */
    CHECK(clmr__rollover_activate(s, variant_id, NULL) == 0);
    wait_idle(s, state);
    CHECK(!strcmp(state, "complete"));
    clmr__rollover_test_hook = NULL;
    CHECK(clmr_server_shutdown(&s, 5) == 0);
}

#define WITH_DIR(fn)                                                                               \
    do {                                                                                           \
        dir = t_mkdtemp("rollover");                                                               \
        if (make_variant()) {                                                                      \
            printf("Bail out! cannot make the variant model\n");                                   \
            return 1;                                                                              \
        }                                                                                          \
        RUN_TEST(fn);                                                                              \
        t_rmdir(dir);                                                                              \
    } while (0)

int main(void)
{
    WITH_DIR(test_concurrent_activations);
    WITH_DIR(test_activation_while_reembedding_is_busy);
    WITH_DIR(test_delete_during_index_build);
    WITH_DIR(test_failed_reembedding_is_retried);
    return TEST_END();
}
