/* models.c - the models table: every model file the service knows, its lineage and status.
 *
 * DESIGN: exactly one model may be 'active' (a partial unique index enforces it, so no code path
 * can leave two); activation demotes the previous active model to 'retired' and promotes the new
 * one in one write transaction, so readers see either the old or the new active model, never none
 * or two. Metadata is a JSON object checked by SQLite's json_valid.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clmr/error.h"
#include "store/store_internal.h"

static const char *const STATUS_NAMES[] = {"candidate", "active", "retired"};

const char *clmr_model_status_name(clmr_model_status_t st)
{
    return (unsigned)st < 3 ? STATUS_NAMES[st] : "unknown";
}

int clmr_model_status_parse(const char *name)
{
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, STATUS_NAMES[i]) == 0) return i;
    return -1;
}

void clmr_store_model_clear(clmr_store_model_t *m)
{
    if (!m) return;
    free(m->name);
    free(m->path);
    free(m->parent_id);
    free(m->metadata_json);
    memset(m, 0, sizeof *m);
}

void clmr_store_model_list_free(clmr_store_model_t *items, size_t n)
{
    if (!items) return;
    for (size_t i = 0; i < n; i++)
        clmr_store_model_clear(&items[i]);
    free(items);
}

#define MODEL_COLS "id, name, path, parent_id, status, metadata, created_at"

static void read_model(sqlite3_stmt *st, clmr_store_model_t *m)
{
    memset(m, 0, sizeof *m);
    const unsigned char *id = sqlite3_column_text(st, 0);
    snprintf(m->id, sizeof m->id, "%s", id ? (const char *)id : "");
    m->name = clmr__col_dup(st, 1);
    m->path = clmr__col_dup(st, 2);
    m->parent_id = clmr__col_dup(st, 3);
    int status = clmr_model_status_parse((const char *)sqlite3_column_text(st, 4));
    m->status = status < 0 ? CLMR_MODEL_RETIRED : (clmr_model_status_t)status;
    m->metadata_json = clmr__col_dup(st, 5);
    m->created_at = sqlite3_column_int64(st, 6);
}

static int exec_w(clmr_store_t *s, const char *sql, const char *arg, char **errmsg)
{
    sqlite3_stmt *st;
    int rc = clmr__prep(s->writer, sql, &st, errmsg);
    if (rc) return rc;
    if (arg) sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src != SQLITE_DONE) rc = clmr__db_err(s->writer, src, "update models", errmsg);
    sqlite3_finalize(st);
    return rc;
}

static int model_exists(clmr_store_t *s, const char *id, int *exists, char **errmsg)
{
    sqlite3_stmt *st;
    *exists = 0;
    int rc = clmr__prep(s->writer, "SELECT 1 FROM models WHERE id = ?", &st, errmsg);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW)
        *exists = 1;
    else if (src != SQLITE_DONE)
        rc = clmr__db_err(s->writer, src, "find model", errmsg);
    sqlite3_finalize(st);
    return rc;
}

static int insert_model(clmr_store_t *s, const clmr_store_model_t *m, int or_ignore, int *created,
                        char **errmsg)
{
    int exists = 0;
    int rc0 = model_exists(s, m->id, &exists, errmsg);
    if (rc0) return rc0;
    if (exists) {
        if (created) *created = 0;
        return or_ignore ? 0 : clmr_set_err(errmsg, CLMR_EBUSY, "model %s already exists", m->id);
    }
    if (m->status == CLMR_MODEL_ACTIVE) {
        int rc = exec_w(s,
                        "UPDATE models SET status = 'retired' WHERE status = 'active' AND "
                        "id <> ?",
                        m->id, errmsg);
        if (rc) return rc;
    }
    sqlite3_stmt *st;
    int rc = clmr__prep(s->writer,
                        or_ignore ? "INSERT INTO models(" MODEL_COLS ") VALUES (?, ?, ?, ?, ?, "
                                    "coalesce(?, '{}'), ?) ON CONFLICT(id) DO NOTHING"
                                  : "INSERT INTO models(" MODEL_COLS
                                    ") VALUES (?, ?, ?, ?, ?, coalesce(?, '{}'), ?)",
                        &st, errmsg);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, m->name ? m->name : m->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->path ? m->path : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, m->parent_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, clmr_model_status_name(m->status), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, m->metadata_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, m->created_at ? m->created_at : clmr__now_ms());
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE) {
        if (created) *created = sqlite3_changes(s->writer) > 0;
    } else if (src == SQLITE_CONSTRAINT_PRIMARYKEY) {
        rc = clmr_set_err(errmsg, CLMR_EBUSY, "model %s already exists", m->id);
    } else if (src == SQLITE_CONSTRAINT_FOREIGNKEY) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "unknown parent model %s", m->parent_id);
    } else if (src == SQLITE_CONSTRAINT_CHECK) {
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "invalid model record (id length or metadata JSON)");
    } else {
        rc = clmr__db_err(s->writer, src, "insert model", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

static int check_model(const clmr_store_model_t *m, char **errmsg)
{
    if (!m || !m->id[0] || (unsigned)m->status > CLMR_MODEL_RETIRED)
        return clmr_set_err(errmsg, CLMR_EINVAL, "model needs an id and a valid status");
    return 0;
}

int clmr_store_model_put(clmr_store_t *s, const clmr_store_model_t *m, char **errmsg)
{
    int rc = check_model(m, errmsg);
    if (rc || (rc = clmr__store_wbegin(s, errmsg))) return rc;
    rc = insert_model(s, m, 0, NULL, errmsg);
    return clmr__store_wend(s, rc, errmsg);
}

int clmr_store_model_ensure(clmr_store_t *s, const clmr_store_model_t *m, int *created,
                            char **errmsg)
{
    int rc = check_model(m, errmsg);
    if (rc || (rc = clmr__store_wbegin(s, errmsg))) return rc;
    /* insert_model checks existence first, so an existing model never demotes the active one. */
    int made = 0;
    rc = insert_model(s, m, 1, &made, errmsg);
    rc = clmr__store_wend(s, rc, errmsg);
    if (!rc && created) *created = made;
    return rc;
}

static int get_one(clmr_store_t *s, const char *sql, const char *arg, clmr_store_model_t *out,
                   char **errmsg)
{
    memset(out, 0, sizeof *out);
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, sql, &st, errmsg);
    if (!rc) {
        if (arg) sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            read_model(st, out);
        else if (src == SQLITE_DONE)
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no such model%s%s", arg ? " " : "",
                              arg ? arg : "");
        else
            rc = clmr__db_err(db, src, "get model", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

int clmr_store_model_get(clmr_store_t *s, const char *id, clmr_store_model_t *out, char **errmsg)
{
    if (!id || !out) return CLMR_EINVAL;
    return get_one(s, "SELECT " MODEL_COLS " FROM models WHERE id = ?", id, out, errmsg);
}

int clmr_store_model_get_active(clmr_store_t *s, clmr_store_model_t *out, char **errmsg)
{
    if (!out) return CLMR_EINVAL;
    return get_one(s, "SELECT " MODEL_COLS " FROM models WHERE status = 'active'", NULL, out,
                   errmsg);
}

int clmr_store_model_list(clmr_store_t *s, clmr_store_model_t **items, size_t *n, char **errmsg)
{
    *items = NULL;
    *n = 0;
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    clmr_store_model_t *arr = NULL;
    size_t got = 0, cap = 0;
    int rc =
        clmr__prep(db, "SELECT " MODEL_COLS " FROM models ORDER BY created_at, rowid", &st, errmsg);
    if (!rc) {
        int src;
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            if (got == cap) {
                size_t nc = cap ? cap * 2 : 8;
                clmr_store_model_t *na = realloc(arr, nc * sizeof *arr);
                if (!na) {
                    rc = CLMR_ENOMEM;
                    break;
                }
                arr = na;
                cap = nc;
            }
            read_model(st, &arr[got++]);
        }
        if (!rc && src != SQLITE_DONE) rc = clmr__db_err(db, src, "list models", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    if (rc) {
        clmr_store_model_list_free(arr, got);
        return rc;
    }
    *items = arr;
    *n = got;
    return 0;
}

int clmr_store_model_activate(clmr_store_t *s, const char *id, char **errmsg)
{
    if (!id) return CLMR_EINVAL;
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    rc = exec_w(s, "UPDATE models SET status = 'retired' WHERE status = 'active' AND id <> ?", id,
                errmsg);
    if (!rc) rc = exec_w(s, "UPDATE models SET status = 'active' WHERE id = ?", id, errmsg);
    if (!rc && sqlite3_changes(s->writer) == 0)
        rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no such model %s", id);
    return clmr__store_wend(s, rc, errmsg);
}

int clmr_store_model_update(clmr_store_t *s, const char *id, clmr_model_status_t status,
                            const char *metadata_json, char **errmsg)
{
    if (!id || (status != CLMR_MODEL_CANDIDATE && status != CLMR_MODEL_RETIRED))
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "status must be candidate or retired "
                            "(use activate for active)");
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer,
                    "UPDATE models SET status = ?, metadata = coalesce(?, metadata) WHERE id = ?",
                    &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, clmr_model_status_name(status), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, metadata_json, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src == SQLITE_CONSTRAINT_CHECK)
            rc = clmr_set_err(errmsg, CLMR_EINVAL, "metadata is not valid JSON");
        else if (src != SQLITE_DONE)
            rc = clmr__db_err(s->writer, src, "update model", errmsg);
        else if (sqlite3_changes(s->writer) == 0)
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no such model %s", id);
        sqlite3_finalize(st);
    }
    return clmr__store_wend(s, rc, errmsg);
}

int clmr_store_model_delete(clmr_store_t *s, const char *id, char **errmsg)
{
    if (!id) return CLMR_EINVAL;
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer, "SELECT status FROM models WHERE id = ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src == SQLITE_DONE)
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no such model %s", id);
        else if (src != SQLITE_ROW)
            rc = clmr__db_err(s->writer, src, "find model", errmsg);
        else if (strcmp((const char *)sqlite3_column_text(st, 0), "active") == 0)
            rc = clmr_set_err(errmsg, CLMR_EBUSY, "model %s is active; activate another first", id);
        sqlite3_finalize(st);
    }
    if (!rc) rc = exec_w(s, "DELETE FROM models WHERE id = ?", id, errmsg);
    return clmr__store_wend(s, rc, errmsg);
}
