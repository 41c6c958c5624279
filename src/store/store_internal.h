/* store_internal.h - what the store's .c files share: the struct, connection handling, the
 * SQLite -> clmr error mapping and small helpers. Not for use outside src/store and tests.
 *
 * DESIGN: write functions bracket their work with clmr__store_wbegin/wend, which take the writer
 * mutex and open BEGIN IMMEDIATE, or - when the calling thread already holds the writer through
 * clmr_store_write_begin() - open a SAVEPOINT, so each API call stays atomic inside a caller's
 * bulk transaction. Read functions borrow a connection from the reader pool.
 */
#ifndef CLMR_STORE_INTERNAL_H
#define CLMR_STORE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdint.h>

#include "store/store.h"

typedef struct {
    int version;
    const char *name;
    const char *sql;
} clmr__migration_t;

/* Generated at build time (store_migrations.c). */
extern const clmr__migration_t clmr__migrations[];
extern const int clmr__n_migrations;

struct clmr_store {
    char *data_dir, *pool_dir, *db_path;
    int busy_timeout_ms;

    sqlite3 *writer;
    pthread_mutex_t wmu;
    /* Address of a thread-local of the thread holding the writer, NULL when free. Atomic because
     * every writer reads it (relaxed) before taking the mutex to detect "I already hold it"; only
     * the owner ever stores its own token, so that read can only match for the owner. */
    _Atomic(const void *) wowner;
    int wdepth;  /* owner only: 0 none; 1 BEGIN IMMEDIATE; >1 savepoints */
    int wdoomed; /* owner only: SQLite rolled the outer transaction back behind our back */

    int64_t cache_max_rows, cache_max_age_s, pool_max_bytes; /* bounds (store.h params) */

    sqlite3 **readers;
    int n_readers, n_free;
    sqlite3 **free_readers;
    pthread_mutex_t rmu;
    pthread_cond_t rcv;
};

/* Maps rc (and the connection's state) to CLMR_EDB_FULL / CLMR_EDB / CLMR_ENOMEM, writing
 * "what: sqlite message" to errmsg. */
int clmr__db_err(sqlite3 *db, int rc, const char *what, char **errmsg);

/* Writer bracket (see DESIGN). wbegin returns 0 with the writer held, or an error with nothing
 * held; wend(ok = 0) rolls the bracket back. wend returns ok ? commit result : 0 ... callers pass
 * their own rc through: `rc = clmr__store_wend(s, rc, errmsg)` keeps rc when non-zero, else
 * returns the commit's result. */
int clmr__store_wbegin(clmr_store_t *s, char **errmsg);
int clmr__store_wend(clmr_store_t *s, int rc, char **errmsg);

/* Reader pool: blocks until a connection is free. Never returns NULL. */
sqlite3 *clmr__store_racquire(clmr_store_t *s);
void clmr__store_rrelease(clmr_store_t *s, sqlite3 *db);
/* Same, waiting at most timeout_ms; NULL when no connection came free in time. */
sqlite3 *clmr__store_racquire_timed(clmr_store_t *s, int timeout_ms);

/* Prepares sql on db; on failure maps the error (CLMR_EDB...) into errmsg. */
int clmr__prep(sqlite3 *db, const char *sql, sqlite3_stmt **st, char **errmsg);

int64_t clmr__now_ms(void);
char *clmr__dup(const char *s);                 /* strdup accepting NULL; NULL on NULL */
char *clmr__col_dup(sqlite3_stmt *st, int col); /* malloc'd copy of a TEXT column or NULL */
int clmr__is_sha256_hex(const char *s);

/* Allocates n floats copied from a BLOB column holding exactly 4*n bytes; CLMR_EDB when the size
 * disagrees. */
int clmr__col_floats(sqlite3_stmt *st, int col, int n, float **out, char **errmsg);

#endif
