/* test_finetune_stop.c - a fine-tuning run can be stopped during its evaluation phase (issue 12:
 * DELETE on an evaluating job used to be refused because nothing polled the cancel flag after the
 * last training step). Real FLAC files written with the pool writer, the tiny model, one step. */
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "store/pool.h"
#include "store/test_util.h"
#include "train/finetune.h"

#include <math.h>
#include <string.h>
#include <sys/stat.h>

#define TINY CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors"
#define N_FILES 6

static int steps_seen, stop_calls, stop_answer;

static int progress(void *ud, const clmr_finetune_progress_t *p)
{
    steps_seen = (int)p->step;
    return 0;
}

static int stop(void *ud)
{
    stop_calls++;
    return stop_answer;
}

static void run(int answer, int want_rc)
{
    char *dir = t_mkdtemp("ftstop");
    char *paths[N_FILES];
    float *x = malloc(sizeof(float) * 3 * 22050);
    for (int i = 0; i < N_FILES; i++) {
        char id[65];
        for (int k = 0; k < 64; k++)
            id[k] = "0123456789abcdef"[(i + k) % 16];
        id[64] = 0;
        for (int k = 0; k < 3 * 22050; k++)
            x[k] = 0.3f * sinf(6.2831853f * (150.0f + 70.0f * i) * k / 22050.0f);
        CHECK(clmr_pool_write(dir, id, x, 3 * 22050, NULL) == 0);
        char full[4096], rel[128];
        CHECK(clmr_pool_path(dir, id, full, sizeof full, rel, sizeof rel) == 0);
        paths[i] = strdup(full);
    }
    free(x);
    clmr_model_t *parent = NULL;
    CHECK(clmr_model_load(&parent, TINY, NULL) == 0);
    char ckpt[4096], out[4096];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    clmr_finetune_params_t p = {.steps = 1,
                                .batch_pairs = 2,
                                .learning_rate = 1e-4f,
                                .seed = 1,
                                .threads = 1,
                                .distill_weight = 1.0f,
                                .checkpoint_every = 1,
                                .checkpoint_path = ckpt,
                                .out_path = out,
                                .name = "t",
                                .progress = progress,
                                .stop = stop,
                                .ud = NULL};
    clmr_finetune_result_t res;
    char *msg = NULL;
    steps_seen = stop_calls = 0;
    stop_answer = answer;
    int rc = clmr_finetune_run(parent, (const char *const *)paths, 4,
                               (const char *const *)paths + 4, 2, &p, &res, &msg);
    CHECKF(rc == want_rc, "got %s (%s)", clmr_err_name(rc), msg ? msg : "");
    CHECK(steps_seen == 1); /* training finished... */
    CHECK(stop_calls >= 1); /* ...and the evaluation asked whether to stop */
    struct stat sb;
    CHECK(stat(out, &sb) == 0); /* the model was written before the evaluation */
    free(msg);
    clmr_model_close(&parent);
    for (int i = 0; i < N_FILES; i++)
        free(paths[i]);
    t_rmdir(dir);
}

static void test_stop_during_evaluation(void)
{
    run(1, CLMR_ECANCELLED);
}

static void test_runs_to_the_end_when_not_stopped(void)
{
    run(0, 0);
}

int main(void)
{
    RUN_TEST(test_stop_during_evaluation);
    RUN_TEST(test_runs_to_the_end_when_not_stopped);
    return TEST_END();
}
