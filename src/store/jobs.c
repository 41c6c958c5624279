/* jobs.c - fine-tuning job records (issue 5): creation, progress, state changes, recovery.
 *
 * DESIGN: job state lives in SQLite so a restart can tell what happened. Only one job may be
 * unfinished (queued/running/evaluating): the check and the insert share one write transaction and
 * a partial unique index backs it up. Finished jobs (succeeded/failed/cancelled) are immutable, so
 * a late progress report from a cancelled trainer cannot resurrect it. At start-up the daemon calls
 * clmr_store_job_fail_unfinished(): no job is ever left "running" by a crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clmr/error.h"
#include "store/store_internal.h"

static const char *const STATE_NAMES[] = {"queued",    "running", "evaluating",
                                          "succeeded", "failed",  "cancelled"};

const char *clmr_job_state_name(clmr_job_state_t st)
{
    return (unsigned)st < 6 ? STATE_NAMES[st] : "unknown";
}

int clmr_job_state_parse(const char *name)
{
    for (int i = 0; name && i < 6; i++)
        if (strcmp(name, STATE_NAMES[i]) == 0) return i;
    return -1;
}

void clmr_store_job_clear(clmr_store_job_t *j)
{
    if (!j) return;
    free(j->base_model_id);
    free(j->params_json);
    free(j->losses_json);
    free(j->result_model_id);
    free(j->error);
    memset(j, 0, sizeof *j);
}

void clmr_store_job_list_free(clmr_store_job_t *items, size_t n)
{
    if (!items) return;
    for (size_t i = 0; i < n; i++)
        clmr_store_job_clear(&items[i]);
    free(items);
}

#define JOB_COLS                                                                                   \
    "id, state, base_model_id, params, step, steps, losses, result_model_id, error, created_at, "  \
    "coalesce(started_at, 0), coalesce(finished_at, 0), updated_at"
#define UNFINISHED "('queued', 'running', 'evaluating')"

static void read_job(sqlite3_stmt *st, clmr_store_job_t *j)
{
    memset(j, 0, sizeof *j);
    j->id = sqlite3_column_int64(st, 0);
    int state = clmr_job_state_parse((const char *)sqlite3_column_text(st, 1));
    j->state = state < 0 ? CLMR_JOB_FAILED : (clmr_job_state_t)state;
    j->base_model_id = clmr__col_dup(st, 2);
    j->params_json = clmr__col_dup(st, 3);
    j->step = sqlite3_column_int64(st, 4);
    j->steps = sqlite3_column_int64(st, 5);
    j->losses_json = clmr__col_dup(st, 6);
    j->result_model_id = clmr__col_dup(st, 7);
    j->error = clmr__col_dup(st, 8);
    j->created_at = sqlite3_column_int64(st, 9);
    j->started_at = sqlite3_column_int64(st, 10);
    j->finished_at = sqlite3_column_int64(st, 11);
    j->updated_at = sqlite3_column_int64(st, 12);
}

int clmr_store_job_create(clmr_store_t *s, const char *base_model_id, const char *params_json,
                          int64_t steps, int64_t *id, char **errmsg)
{
    if (steps < 0) return clmr_set_err(errmsg, CLMR_EINVAL, "steps must be >= 0");
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer, "SELECT id FROM jobs WHERE state IN " UNFINISHED, &st, errmsg);
    if (!rc) {
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            rc = clmr_set_err(errmsg, CLMR_EBUSY, "job %lld is still unfinished",
                              (long long)sqlite3_column_int64(st, 0));
        else if (src != SQLITE_DONE)
            rc = clmr__db_err(s->writer, src, "find unfinished job", errmsg);
        sqlite3_finalize(st);
    }
    if (!rc)
        rc = clmr__prep(s->writer,
                        "INSERT INTO jobs(state, base_model_id, params, steps, created_at, "
                        "updated_at) VALUES ('queued', ?, coalesce(?, '{}'), ?, ?, ?)",
                        &st, errmsg);
    if (!rc) {
        int64_t now = clmr__now_ms();
        sqlite3_bind_text(st, 1, base_model_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, params_json, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, steps);
        sqlite3_bind_int64(st, 4, now);
        sqlite3_bind_int64(st, 5, now);
        int src = sqlite3_step(st);
        if (src == SQLITE_DONE) {
            if (id) *id = sqlite3_last_insert_rowid(s->writer);
        } else if (src == SQLITE_CONSTRAINT_FOREIGNKEY) {
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "unknown base model %s",
                              base_model_id ? base_model_id : "");
        } else if (src == SQLITE_CONSTRAINT_CHECK) {
            rc = clmr_set_err(errmsg, CLMR_EINVAL, "job parameters are not valid JSON");
        } else {
            rc = clmr__db_err(s->writer, src, "create job", errmsg);
        }
        sqlite3_finalize(st);
    }
    return clmr__store_wend(s, rc, errmsg);
}

static int get_one(clmr_store_t *s, const char *sql, int64_t id, clmr_store_job_t *out,
                   char **errmsg)
{
    memset(out, 0, sizeof *out);
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, sql, &st, errmsg);
    if (!rc) {
        if (id > 0) sqlite3_bind_int64(st, 1, id);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            read_job(st, out);
        else if (src == SQLITE_DONE)
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no such job");
        else
            rc = clmr__db_err(db, src, "get job", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

int clmr_store_job_get(clmr_store_t *s, int64_t id, clmr_store_job_t *out, char **errmsg)
{
    if (!out) return CLMR_EINVAL;
    if (id <= 0) {
        memset(out, 0, sizeof *out);
        return clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no such job");
    }
    return get_one(s, "SELECT " JOB_COLS " FROM jobs WHERE id = ?", id, out, errmsg);
}

int clmr_store_job_get_active(clmr_store_t *s, clmr_store_job_t *out, char **errmsg)
{
    if (!out) return CLMR_EINVAL;
    return get_one(s, "SELECT " JOB_COLS " FROM jobs WHERE state IN " UNFINISHED " LIMIT 1", 0, out,
                   errmsg);
}

int clmr_store_job_list(clmr_store_t *s, int limit, clmr_store_job_t **items, size_t *n,
                        char **errmsg)
{
    *items = NULL;
    *n = 0;
    if (limit < 1 || limit > 1000)
        return clmr_set_err(errmsg, CLMR_EINVAL, "limit must be between 1 and 1000");
    clmr_store_job_t *arr = calloc((size_t)limit, sizeof *arr);
    if (!arr) return CLMR_ENOMEM;
    size_t got = 0;
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, "SELECT " JOB_COLS " FROM jobs ORDER BY id DESC LIMIT ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_int(st, 1, limit);
        int src;
        while ((src = sqlite3_step(st)) == SQLITE_ROW)
            read_job(st, &arr[got++]);
        if (src != SQLITE_DONE) rc = clmr__db_err(db, src, "list jobs", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    if (rc) {
        clmr_store_job_list_free(arr, got);
        return rc;
    }
    *items = arr;
    *n = got;
    return 0;
}

/* Runs an UPDATE on one unfinished job; CLMR_ENOT_FOUND when the id is unknown and CLMR_EINVAL
 * when it exists but is finished. */
static int update_unfinished(clmr_store_t *s, sqlite3_stmt *st, int64_t id, char **errmsg)
{
    int src = sqlite3_step(st);
    if (src == SQLITE_CONSTRAINT_FOREIGNKEY)
        return clmr_set_err(errmsg, CLMR_ENOT_FOUND, "unknown result model");
    if (src == SQLITE_CONSTRAINT_CHECK)
        return clmr_set_err(errmsg, CLMR_EINVAL, "job update is not valid (JSON?)");
    if (src != SQLITE_DONE) return clmr__db_err(s->writer, src, "update job", errmsg);
    if (sqlite3_changes(s->writer) > 0) return 0;
    sqlite3_stmt *q;
    int rc = clmr__prep(s->writer, "SELECT 1 FROM jobs WHERE id = ?", &q, errmsg);
    if (rc) return rc;
    sqlite3_bind_int64(q, 1, id);
    src = sqlite3_step(q);
    sqlite3_finalize(q);
    if (src == SQLITE_ROW)
        return clmr_set_err(errmsg, CLMR_EINVAL, "job %lld is finished", (long long)id);
    return clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no such job %lld", (long long)id);
}

int clmr_store_job_progress(clmr_store_t *s, int64_t id, int64_t step, const char *losses_json,
                            char **errmsg)
{
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer,
                    "UPDATE jobs SET step = ?, losses = coalesce(?, losses), updated_at = ? "
                    "WHERE id = ? AND state IN " UNFINISHED,
                    &st, errmsg);
    if (!rc) {
        sqlite3_bind_int64(st, 1, step);
        sqlite3_bind_text(st, 2, losses_json, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, clmr__now_ms());
        sqlite3_bind_int64(st, 4, id);
        rc = update_unfinished(s, st, id, errmsg);
        sqlite3_finalize(st);
    }
    return clmr__store_wend(s, rc, errmsg);
}

int clmr_store_job_set_state(clmr_store_t *s, int64_t id, clmr_job_state_t state, const char *error,
                             const char *result_model_id, char **errmsg)
{
    if ((unsigned)state > CLMR_JOB_CANCELLED)
        return clmr_set_err(errmsg, CLMR_EINVAL, "invalid job state");
    int finished = state >= CLMR_JOB_SUCCEEDED;
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer,
                    "UPDATE jobs SET state = ?1, error = coalesce(?2, error),"
                    " result_model_id = coalesce(?3, result_model_id), updated_at = ?4,"
                    " started_at = CASE WHEN ?1 = 'running' AND started_at IS NULL THEN ?4"
                    "                   ELSE started_at END,"
                    " finished_at = CASE WHEN ?5 THEN ?4 ELSE finished_at END "
                    "WHERE id = ?6 AND state IN " UNFINISHED,
                    &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, clmr_job_state_name(state), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, result_model_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, clmr__now_ms());
        sqlite3_bind_int(st, 5, finished);
        sqlite3_bind_int64(st, 6, id);
        rc = update_unfinished(s, st, id, errmsg);
        sqlite3_finalize(st);
    }
    return clmr__store_wend(s, rc, errmsg);
}

int clmr_store_job_fail_unfinished(clmr_store_t *s, const char *reason, int *n, char **errmsg)
{
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer,
                    "UPDATE jobs SET state = 'failed', error = ?, finished_at = ?2, "
                    "updated_at = ?2 WHERE state IN " UNFINISHED,
                    &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, reason ? reason : "interrupted by a restart", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, clmr__now_ms());
        int src = sqlite3_step(st);
        if (src != SQLITE_DONE)
            rc = clmr__db_err(s->writer, src, "fail unfinished jobs", errmsg);
        else if (n)
            *n = sqlite3_changes(s->writer);
        sqlite3_finalize(st);
    }
    return clmr__store_wend(s, rc, errmsg);
}

int clmr_store_job_delete(clmr_store_t *s, int64_t id, char **errmsg)
{
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc =
        clmr__prep(s->writer, "SELECT state IN " UNFINISHED " FROM jobs WHERE id = ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_int64(st, 1, id);
        int src = sqlite3_step(st);
        if (src == SQLITE_DONE)
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no such job %lld", (long long)id);
        else if (src != SQLITE_ROW)
            rc = clmr__db_err(s->writer, src, "find job", errmsg);
        else if (sqlite3_column_int(st, 0))
            rc = clmr_set_err(errmsg, CLMR_EBUSY, "job %lld is unfinished; cancel it first",
                              (long long)id);
        sqlite3_finalize(st);
    }
    if (!rc) rc = clmr__prep(s->writer, "DELETE FROM jobs WHERE id = ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_int64(st, 1, id);
        int src = sqlite3_step(st);
        if (src != SQLITE_DONE) rc = clmr__db_err(s->writer, src, "delete job", errmsg);
        sqlite3_finalize(st);
    }
    return clmr__store_wend(s, rc, errmsg);
}
