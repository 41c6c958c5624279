/* db.c - opening the store: pragmas, integrity check, migrations, the writer and reader
 * connections, write transactions and the SQLite -> clmr error mapping.
 *
 * DESIGN: durability first. journal_mode=WAL lets readers run beside the single writer;
 * synchronous=FULL fsyncs the WAL at every commit, so an acknowledged write survives power loss
 * (NORMAL would only survive a process crash). foreign_keys=ON makes deletes cascade. Every
 * connection gets busy_timeout because another process (sqlite3 CLI, backup) may hold locks; our
 * own writers never meet SQLITE_BUSY because they queue on one mutex and start with BEGIN
 * IMMEDIATE (a deferred transaction upgrading to a write can fail with BUSY without waiting).
 * Migrations run in one BEGIN IMMEDIATE transaction each, so a crash mid-migration leaves the
 * previous version intact; the names recorded in schema_migrations must match the compiled ones,
 * and a database from a newer binary is refused rather than misread.
 */
#include "store/store_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clmr/error.h"

clmr_store_params_t clmr_store_default_params(void)
{
    clmr_store_params_t p = {0};
    p.readers = 4;
    p.busy_timeout_ms = 10000;
    p.journal_size_limit = 64 << 20;
    p.max_page_count = 0;
    p.quick_check = 1;
    p.cache_max_rows = 100000;
    p.cache_max_age_s = 30 * 86400;
    p.pool_max_bytes = 0;
    return p;
}

int64_t clmr__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

char *clmr__dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

char *clmr__col_dup(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    return t ? strdup((const char *)t) : NULL;
}

int clmr__is_sha256_hex(const char *s)
{
    if (!s) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return s[64] == '\0';
}

int clmr__col_floats(sqlite3_stmt *st, int col, int n, float **out, char **errmsg)
{
    const void *b = sqlite3_column_blob(st, col);
    int bytes = sqlite3_column_bytes(st, col);
    *out = NULL;
    if (n <= 0 || bytes != 4 * n || !b)
        return clmr_set_err(errmsg, CLMR_EDB, "stored vector has %d bytes, expected %d", bytes,
                            4 * n);
    float *v = malloc((size_t)bytes);
    if (!v) return clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory reading a vector");
    memcpy(v, b, (size_t)bytes);
    *out = v;
    return 0;
}

int clmr__db_err(sqlite3 *db, int rc, const char *what, char **errmsg)
{
    int prim = rc & 0xff;
    const char *msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    if (prim == SQLITE_FULL || (prim == SQLITE_IOERR && db && sqlite3_system_errno(db) == ENOSPC))
        return clmr_set_err(errmsg, CLMR_EDB_FULL, "%s: %s", what, msg);
    if (prim == SQLITE_NOMEM) return clmr_set_err(errmsg, CLMR_ENOMEM, "%s: %s", what, msg);
    return clmr_set_err(errmsg, CLMR_EDB, "%s: %s", what, msg);
}

int clmr__prep(sqlite3 *db, const char *sql, sqlite3_stmt **st, char **errmsg)
{
    int rc = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return clmr__db_err(db, rc, "prepare", errmsg);
    }
    return 0;
}

static int exec(sqlite3 *db, const char *sql, const char *what, char **errmsg)
{
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : clmr__db_err(db, rc, what, errmsg);
}

/* ---- write transactions ---- */

static _Thread_local char tl_token; /* its address identifies the calling thread */

static int held_by_me(clmr_store_t *s)
{
    return atomic_load_explicit(&s->wowner, memory_order_relaxed) == &tl_token;
}

int clmr__store_wbegin(clmr_store_t *s, char **errmsg)
{
    if (held_by_me(s)) {
        if (s->wdoomed)
            return clmr_set_err(errmsg, CLMR_EDB, "the enclosing write transaction failed");
        char sql[48];
        snprintf(sql, sizeof sql, "SAVEPOINT sp%d", s->wdepth);
        int rc = exec(s->writer, sql, "savepoint", errmsg);
        if (rc) return rc;
        s->wdepth++;
        return 0;
    }
    pthread_mutex_lock(&s->wmu);
    int rc = exec(s->writer, "BEGIN IMMEDIATE", "begin", errmsg);
    if (rc) {
        pthread_mutex_unlock(&s->wmu);
        return rc;
    }
    atomic_store_explicit(&s->wowner, &tl_token, memory_order_relaxed);
    s->wdepth = 1;
    s->wdoomed = 0;
    return 0;
}

int clmr__store_wend(clmr_store_t *s, int rc, char **errmsg)
{
    if (s->wdepth > 1) {
        char sql[80];
        int d = s->wdepth - 1;
        s->wdepth--;
        if (sqlite3_get_autocommit(s->writer)) {
            /* SQLite already rolled the whole transaction back (SQLITE_FULL, IOERR...). */
            s->wdoomed = 1;
            return rc ? rc : clmr_set_err(errmsg, CLMR_EDB, "write transaction was rolled back");
        }
        if (rc == 0) {
            snprintf(sql, sizeof sql, "RELEASE sp%d", d);
            rc = exec(s->writer, sql, "release", errmsg);
        } else {
            snprintf(sql, sizeof sql, "ROLLBACK TO sp%d; RELEASE sp%d", d, d);
            sqlite3_exec(s->writer, sql, NULL, NULL, NULL);
        }
        return rc;
    }
    if (rc == 0 && !s->wdoomed) {
        int src = sqlite3_exec(s->writer, "COMMIT", NULL, NULL, NULL);
        if (src != SQLITE_OK) rc = clmr__db_err(s->writer, src, "commit", errmsg);
    } else if (rc == 0) {
        rc = clmr_set_err(errmsg, CLMR_EDB, "write transaction was rolled back");
    }
    if (!sqlite3_get_autocommit(s->writer)) sqlite3_exec(s->writer, "ROLLBACK", NULL, NULL, NULL);
    s->wdepth = 0;
    s->wdoomed = 0;
    atomic_store_explicit(&s->wowner, NULL, memory_order_relaxed);
    pthread_mutex_unlock(&s->wmu);
    return rc;
}

int clmr_store_write_begin(clmr_store_t *s, char **errmsg)
{
    if (!s) return CLMR_EINVAL;
    return clmr__store_wbegin(s, errmsg);
}

int clmr_store_write_end(clmr_store_t *s, int commit, char **errmsg)
{
    if (!s || !held_by_me(s))
        return clmr_set_err(errmsg, CLMR_EINVAL, "no write transaction held by this thread");
    if (commit) return clmr__store_wend(s, 0, errmsg);
    clmr__store_wend(s, CLMR_ECANCELLED, NULL);
    return 0;
}

/* ---- reader pool ---- */

sqlite3 *clmr__store_racquire(clmr_store_t *s)
{
    pthread_mutex_lock(&s->rmu);
    while (s->n_free == 0)
        pthread_cond_wait(&s->rcv, &s->rmu);
    sqlite3 *db = s->free_readers[--s->n_free];
    pthread_mutex_unlock(&s->rmu);
    return db;
}

sqlite3 *clmr__store_racquire_timed(clmr_store_t *s, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    sqlite3 *db = NULL;
    pthread_mutex_lock(&s->rmu);
    while (s->n_free == 0)
        if (pthread_cond_timedwait(&s->rcv, &s->rmu, &until) != 0) break;
    if (s->n_free > 0) db = s->free_readers[--s->n_free];
    pthread_mutex_unlock(&s->rmu);
    return db;
}

void clmr__store_rrelease(clmr_store_t *s, sqlite3 *db)
{
    /* A statement left unfinalised would pin a WAL snapshot; catch it in debug builds. */
    pthread_mutex_lock(&s->rmu);
    s->free_readers[s->n_free++] = db;
    pthread_cond_signal(&s->rcv);
    pthread_mutex_unlock(&s->rmu);
}

/* ---- open / close ---- */

static int mkdir_p(const char *path, char **errmsg)
{
    char *tmp = strdup(path);
    if (!tmp) return CLMR_ENOMEM;
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                int e = errno;
                free(tmp);
                return clmr_set_err(errmsg, CLMR_EIO, "cannot create directory %s: %s", path,
                                    strerror(e));
            }
            *p = c;
            if (c == '\0') break;
        }
    }
    free(tmp);
    return 0;
}

static int open_conn(const char *path, int flags, int busy_ms, sqlite3 **out, char **errmsg)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = clmr__db_err(db, rc, path, errmsg);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, busy_ms);
    *out = db;
    return 0;
}

static int pragma_text(sqlite3 *db, const char *sql, char *buf, size_t size, char **errmsg)
{
    sqlite3_stmt *st;
    int rc = clmr__prep(db, sql, &st, errmsg);
    if (rc) return rc;
    buf[0] = '\0';
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(buf, size, "%s", t ? (const char *)t : "");
        src = SQLITE_DONE;
    }
    if (src != SQLITE_DONE) rc = clmr__db_err(db, src, sql, errmsg);
    sqlite3_finalize(st);
    return rc;
}

static int quick_check(sqlite3 *db, char **errmsg)
{
    char res[512];
    int rc = pragma_text(db, "PRAGMA quick_check", res, sizeof res, errmsg);
    if (rc) return rc;
    if (strcmp(res, "ok") != 0)
        return clmr_set_err(errmsg, CLMR_EDB, "database integrity check failed: %s", res);
    return 0;
}

static int migrate(sqlite3 *db, char **errmsg)
{
    int rc = exec(db,
                  "CREATE TABLE IF NOT EXISTS schema_migrations ("
                  " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                  "create schema_migrations", errmsg);
    if (rc) return rc;
    /* Compare what the database recorded with what this binary carries. */
    sqlite3_stmt *st;
    rc =
        clmr__prep(db, "SELECT version, name FROM schema_migrations ORDER BY version", &st, errmsg);
    if (rc) return rc;
    int have = 0, src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        int v = sqlite3_column_int(st, 0);
        const char *name = (const char *)sqlite3_column_text(st, 1);
        if (v > clmr__n_migrations) {
            rc = clmr_set_err(errmsg, CLMR_EDB,
                              "database schema version %d is newer than this clmrd knows (%d); "
                              "use a newer clmrd",
                              v, clmr__n_migrations);
            break;
        }
        if (v != have + 1 || !name || strcmp(name, clmr__migrations[v - 1].name) != 0) {
            rc = clmr_set_err(errmsg, CLMR_EDB,
                              "schema_migrations row %d (%s) does not match this clmrd's "
                              "migration %d (%s)",
                              v, name ? name : "?", have + 1, clmr__migrations[have].name);
            break;
        }
        have = v;
    }
    if (!rc && src != SQLITE_DONE) rc = clmr__db_err(db, src, "read schema_migrations", errmsg);
    sqlite3_finalize(st);
    if (rc) return rc;

    for (int i = have; i < clmr__n_migrations; i++) {
        const clmr__migration_t *m = &clmr__migrations[i];
        rc = exec(db, "BEGIN IMMEDIATE", "begin migration", errmsg);
        if (rc) return rc;
        int erc = sqlite3_exec(db, m->sql, NULL, NULL, NULL);
        if (erc == SQLITE_OK) {
            sqlite3_stmt *ins;
            rc = clmr__prep(db,
                            "INSERT INTO schema_migrations(version, name, applied_at) "
                            "VALUES (?, ?, ?)",
                            &ins, errmsg);
            if (!rc) {
                sqlite3_bind_int(ins, 1, m->version);
                sqlite3_bind_text(ins, 2, m->name, -1, SQLITE_STATIC);
                sqlite3_bind_int64(ins, 3, clmr__now_ms());
                erc = sqlite3_step(ins);
                erc = erc == SQLITE_DONE ? SQLITE_OK : erc;
                sqlite3_finalize(ins);
            }
        }
        if (!rc && erc == SQLITE_OK) erc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
        if (!rc && erc != SQLITE_OK) {
            char what[96];
            snprintf(what, sizeof what, "migration %04d_%s", m->version, m->name);
            rc = clmr__db_err(db, erc, what, errmsg);
        }
        if (rc) {
            if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
    return 0;
}

int clmr_store_migration_count(void)
{
    return clmr__n_migrations;
}

int clmr_store_open(clmr_store_t **out, const clmr_store_params_t *params, char **errmsg)
{
    if (!out || !params || !params->data_dir || !params->data_dir[0] || params->readers < 1 ||
        params->readers > 64 || params->busy_timeout_ms < 0)
        return clmr_set_err(errmsg, CLMR_EINVAL, "invalid store parameters");
    *out = NULL;
    int rc;
    clmr_store_t *s = calloc(1, sizeof *s);
    if (!s) return CLMR_ENOMEM;
    pthread_mutex_init(&s->wmu, NULL);
    pthread_mutex_init(&s->rmu, NULL);
    pthread_cond_init(&s->rcv, NULL);
    s->busy_timeout_ms = params->busy_timeout_ms;
    s->data_dir = strdup(params->data_dir);
    if (asprintf(&s->pool_dir, "%s/pool", params->data_dir) < 0) s->pool_dir = NULL;
    if (params->db_path)
        s->db_path = strdup(params->db_path);
    else if (asprintf(&s->db_path, "%s/clmrd.sqlite", params->data_dir) < 0)
        s->db_path = NULL;
    if (!s->data_dir || !s->pool_dir || !s->db_path) {
        rc = CLMR_ENOMEM;
        goto fail;
    }
    if ((rc = mkdir_p(s->data_dir, errmsg)) || (rc = mkdir_p(s->pool_dir, errmsg))) goto fail;
    /* Resolved once: every path derived from the data directory is then absolute, whatever the
     * working directory of a later reader (issue 12: "./data" used to be prefixed twice). */
    char *abs_dir = realpath(s->data_dir, NULL);
    if (abs_dir) {
        free(s->data_dir);
        free(s->pool_dir);
        s->data_dir = abs_dir;
        if (asprintf(&s->pool_dir, "%s/pool", abs_dir) < 0) s->pool_dir = NULL;
        if (!params->db_path) {
            free(s->db_path);
            if (asprintf(&s->db_path, "%s/clmrd.sqlite", abs_dir) < 0) s->db_path = NULL;
        }
        if (!s->pool_dir || !s->db_path) {
            rc = CLMR_ENOMEM;
            goto fail;
        }
    }
    s->cache_max_rows = params->cache_max_rows;
    s->cache_max_age_s = params->cache_max_age_s;
    s->pool_max_bytes = params->pool_max_bytes;

    rc = open_conn(s->db_path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, s->busy_timeout_ms,
                   &s->writer, errmsg);
    if (rc) goto fail;
    /* 8 KiB pages for a new file: a 512-d embedding row (~2.1 KB) packs 3 to a page instead of
     * 1 to a 4 KiB page (ignored for an existing database). Must precede the switch to WAL. */
    if ((rc = exec(s->writer, "PRAGMA page_size=8192", "pragma", errmsg))) goto fail;
    char mode[32];
    if ((rc = pragma_text(s->writer, "PRAGMA journal_mode=WAL", mode, sizeof mode, errmsg)))
        goto fail;
    if (strcmp(mode, "wal") != 0) {
        rc = clmr_set_err(errmsg, CLMR_EDB, "cannot switch %s to WAL mode (got %s)", s->db_path,
                          mode);
        goto fail;
    }
    char sql[128];
    snprintf(sql, sizeof sql, "PRAGMA journal_size_limit=%lld",
             (long long)params->journal_size_limit);
    if ((rc = exec(s->writer, "PRAGMA synchronous=FULL", "pragma", errmsg)) ||
        (rc = exec(s->writer, "PRAGMA foreign_keys=ON", "pragma", errmsg)) ||
        (rc = exec(s->writer, sql, "pragma", errmsg)))
        goto fail;
    if (params->quick_check && (rc = quick_check(s->writer, errmsg))) goto fail;
    if ((rc = migrate(s->writer, errmsg))) goto fail;
    if (params->max_page_count > 0) {
        /* Set after migrating so tests can fill an otherwise healthy database. */
        snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld", (long long)params->max_page_count);
        if ((rc = exec(s->writer, sql, "pragma", errmsg))) goto fail;
    }

    s->readers = calloc((size_t)params->readers, sizeof *s->readers);
    s->free_readers = calloc((size_t)params->readers, sizeof *s->free_readers);
    if (!s->readers || !s->free_readers) {
        rc = CLMR_ENOMEM;
        goto fail;
    }
    for (int i = 0; i < params->readers; i++) {
        rc = open_conn(s->db_path, SQLITE_OPEN_READWRITE, s->busy_timeout_ms, &s->readers[i],
                       errmsg);
        if (rc) goto fail;
        s->n_readers++;
        /* query_only: a reader can never write by mistake and bypass the writer mutex. */
        if ((rc = exec(s->readers[i], "PRAGMA foreign_keys=ON; PRAGMA query_only=ON", "pragma",
                       errmsg)))
            goto fail;
        s->free_readers[s->n_free++] = s->readers[i];
    }
    *out = s;
    return 0;
fail:
    clmr_store_close(&s);
    return rc;
}

void clmr_store_close(clmr_store_t **sp)
{
    if (!sp || !*sp) return;
    clmr_store_t *s = *sp;
    for (int i = 0; i < s->n_readers; i++)
        sqlite3_close(s->readers[i]);
    if (s->writer) {
        sqlite3_wal_checkpoint_v2(s->writer, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        sqlite3_close(s->writer);
    }
    free(s->readers);
    free(s->free_readers);
    pthread_mutex_destroy(&s->wmu);
    pthread_mutex_destroy(&s->rmu);
    pthread_cond_destroy(&s->rcv);
    free(s->data_dir);
    free(s->pool_dir);
    free(s->db_path);
    free(s);
    *sp = NULL;
}

const char *clmr_store_data_dir(const clmr_store_t *s)
{
    return s->data_dir;
}

const char *clmr_store_pool_dir(const clmr_store_t *s)
{
    return s->pool_dir;
}

int clmr_store_schema_version(clmr_store_t *s, int *version, char **errmsg)
{
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", &st, errmsg);
    if (!rc) {
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            *version = sqlite3_column_int(st, 0);
        else
            rc = clmr__db_err(db, src, "schema version", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

int clmr_store_ping(clmr_store_t *s, int timeout_ms, int *version, char **errmsg)
{
    sqlite3 *db = clmr__store_racquire_timed(s, timeout_ms);
    if (!db)
        return clmr_set_err(errmsg, CLMR_EBUSY, "no database connection came free within %d ms",
                            timeout_ms);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, "SELECT coalesce(max(version), 0) FROM schema_migrations", &st, errmsg);
    if (!rc) {
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            *version = sqlite3_column_int(st, 0);
        else
            rc = clmr__db_err(db, src, "schema version", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

int clmr_store_check(clmr_store_t *s, char **errmsg)
{
    sqlite3 *db = clmr__store_racquire(s);
    int rc = quick_check(db, errmsg);
    clmr__store_rrelease(s, db);
    return rc;
}

int clmr_store_checkpoint(clmr_store_t *s, char **errmsg)
{
    /* PASSIVE: copies what it can without waiting for readers (TRUNCATE/RESTART would block the
     * writer mutex for up to busy_timeout behind a long reader). Once the whole WAL is copied the
     * next write restarts it from the beginning and journal_size_limit trims the file. */
    pthread_mutex_lock(&s->wmu);
    int rc = sqlite3_wal_checkpoint_v2(s->writer, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    int ret = rc == SQLITE_OK ? 0 : clmr__db_err(s->writer, rc, "checkpoint", errmsg);
    pthread_mutex_unlock(&s->wmu);
    return ret;
}
