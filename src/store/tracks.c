/* tracks.c - the catalogue: tracks, their per-model embeddings and tag scores, the tag-result
 * cache, and the start-up sweep of pool files without a track.
 *
 * DESIGN: tracks.seq (INTEGER PRIMARY KEY AUTOINCREMENT, never reused) is the pagination key: a
 * page is "seq > cursor ORDER BY seq LIMIT n", which stays stable under concurrent inserts (new
 * rows get larger seqs) and deletes (a missing seq is simply not returned). The cursor string is
 * "c1" + 16 hex digits of the last seq, so it can change representation later (the "1") while
 * callers treat it as opaque. Vectors are float32 BLOBs whose length the schema checks against
 * their stored dimension; NaN/Inf are refused on the way in (SQLite cannot keep NaN and a NaN
 * would poison similarity ordering).
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clmr/error.h"
#include "store/pool.h"
#include "store/store_internal.h"

void clmr_track_record_clear(clmr_track_record_t *t)
{
    if (!t) return;
    free(t->title);
    free(t->artist);
    free(t->external_id);
    free(t->audio_path);
    memset(t, 0, sizeof *t);
}

void clmr_track_list_free(clmr_track_record_t *items, size_t n)
{
    if (!items) return;
    for (size_t i = 0; i < n; i++)
        clmr_track_record_clear(&items[i]);
    free(items);
}

void clmr_tag_result_clear(clmr_tag_result_t *r)
{
    if (!r) return;
    free(r->scores);
    free(r->embedding);
    memset(r, 0, sizeof *r);
}

static int finite_vec(const float *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

static int valid_model_id(const char *id)
{
    return id && id[0] && strlen(id) <= CLMR_STORE_ID_MAX;
}

/* Runs a prepared write statement to completion: 0, CLMR_ENOT_FOUND for a foreign key miss, or
 * the mapped SQLite error. */
static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what, char **errmsg)
{
    int src = sqlite3_step(st);
    if (src == SQLITE_DONE || src == SQLITE_ROW) return 0;
    if (src == SQLITE_CONSTRAINT_FOREIGNKEY)
        return clmr_set_err(errmsg, CLMR_ENOT_FOUND, "%s: unknown track or model", what);
    return clmr__db_err(db, src, what, errmsg);
}

static void read_track(sqlite3_stmt *st, clmr_track_record_t *t)
{
    /* columns: id, title, artist, external_id, duration_s, created_at, audio_path, audio_bytes */
    memset(t, 0, sizeof *t);
    const unsigned char *id = sqlite3_column_text(st, 0);
    snprintf(t->id, sizeof t->id, "%s", id ? (const char *)id : "");
    t->title = clmr__col_dup(st, 1);
    t->artist = clmr__col_dup(st, 2);
    t->external_id = clmr__col_dup(st, 3);
    t->duration_s = sqlite3_column_double(st, 4);
    t->created_at = sqlite3_column_int64(st, 5);
    t->audio_path = clmr__col_dup(st, 6);
    t->audio_bytes = sqlite3_column_int64(st, 7);
}

#define TRACK_COLS "id, title, artist, external_id, duration_s, created_at, audio_path, audio_bytes"

/* ---- tracks ---- */

static int insert_track(clmr_store_t *s, const clmr_track_record_t *t, int *created, char **errmsg)
{
    sqlite3_stmt *st;
    int rc = clmr__prep(s->writer,
                        "INSERT INTO tracks(" TRACK_COLS ") VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(id) DO NOTHING",
                        &st, errmsg);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, t->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, t->title, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, t->artist, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, t->external_id, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 5, t->duration_s);
    sqlite3_bind_int64(st, 6, t->created_at ? t->created_at : clmr__now_ms());
    sqlite3_bind_text(st, 7, t->audio_path, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, t->audio_bytes > 0 ? t->audio_bytes : 0);
    rc = step_done(s->writer, st, "insert track", errmsg);
    sqlite3_finalize(st);
    if (!rc && created) *created = sqlite3_changes(s->writer) > 0;
    return rc;
}

static int check_track(const clmr_track_record_t *t, char **errmsg)
{
    if (!t || !clmr__is_sha256_hex(t->id))
        return clmr_set_err(errmsg, CLMR_EINVAL, "track id must be 64 lowercase hex characters");
    if (!isfinite(t->duration_s) || t->duration_s < 0)
        return clmr_set_err(errmsg, CLMR_EINVAL, "track duration must be finite and >= 0");
    return 0;
}

int clmr_store_track_put(clmr_store_t *s, const clmr_track_record_t *t, int *created, char **errmsg)
{
    int rc = check_track(t, errmsg);
    if (rc) return rc;
    if ((rc = clmr__store_wbegin(s, errmsg))) return rc;
    rc = insert_track(s, t, created, errmsg);
    return clmr__store_wend(s, rc, errmsg);
}

static int put_vec(clmr_store_t *s, const char *sql, const char *what, const char *track_id,
                   const char *model_id, const float *v, int n, char **errmsg)
{
    sqlite3_stmt *st;
    int rc = clmr__prep(s->writer, sql, &st, errmsg);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, track_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, model_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, n);
    sqlite3_bind_blob(st, 4, v, 4 * n, SQLITE_STATIC);
    rc = step_done(s->writer, st, what, errmsg);
    sqlite3_finalize(st);
    return rc;
}

static const char *const EMB_PUT_SQL =
    "INSERT INTO embeddings(track_id, model_id, dim, vec) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(track_id, model_id) DO UPDATE SET dim = excluded.dim, vec = excluded.vec";
static const char *const SCORES_PUT_SQL =
    "INSERT INTO tag_scores(track_id, model_id, n, scores) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(track_id, model_id) DO UPDATE SET n = excluded.n, scores = excluded.scores";

static int check_vec(const char *model_id, const float *v, int n, const char *what, char **errmsg)
{
    if (!valid_model_id(model_id))
        return clmr_set_err(errmsg, CLMR_EINVAL, "model id must be 1..%d bytes", CLMR_STORE_ID_MAX);
    if (!v || n < 1 || n > (1 << 24))
        return clmr_set_err(errmsg, CLMR_EINVAL, "%s: bad vector size %d", what, n);
    if (!finite_vec(v, n))
        return clmr_set_err(errmsg, CLMR_EINVAL, "%s contains NaN or infinite values", what);
    return 0;
}

int clmr_store_track_ingest(clmr_store_t *s, const clmr_track_record_t *t, const char *model_id,
                            const float *emb, int dim, const float *scores, int n_scores,
                            int *created, char **errmsg)
{
    int rc = check_track(t, errmsg);
    if (!rc && emb) rc = check_vec(model_id, emb, dim, "embedding", errmsg);
    if (!rc && scores) rc = check_vec(model_id, scores, n_scores, "tag scores", errmsg);
    if (rc) return rc;
    if ((rc = clmr__store_wbegin(s, errmsg))) return rc;
    int made = 0;
    rc = insert_track(s, t, &made, errmsg);
    if (!rc && made && s->pool_max_bytes > 0) {
        /* Checked after the insert, inside the transaction, so concurrent ingests cannot both
         * pass the budget; a refusal rolls the row back. */
        int64_t used = 0;
        sqlite3_stmt *st;
        rc = clmr__prep(s->writer, "SELECT coalesce(sum(audio_bytes), 0) FROM tracks", &st, errmsg);
        if (!rc) {
            if (sqlite3_step(st) == SQLITE_ROW) used = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
            if (used > s->pool_max_bytes)
                rc = clmr_set_err(errmsg, CLMR_EDB_FULL,
                                  "the audio pool budget is used up: %lld of %lld bytes "
                                  "(configuration key 'max-pool-bytes'); delete tracks or raise it",
                                  (long long)(used - t->audio_bytes), (long long)s->pool_max_bytes);
        }
    }
    if (!rc && !made && t->audio_path) {
        /* Re-ingest of a track stored without audio: remember the audio now kept. */
        sqlite3_stmt *st;
        rc = clmr__prep(s->writer,
                        "UPDATE tracks SET audio_path = ?1, audio_bytes = ?3 WHERE id = ?2 AND "
                        "audio_path IS NULL",
                        &st, errmsg);
        if (!rc) {
            sqlite3_bind_text(st, 1, t->audio_path, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, t->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, t->audio_bytes > 0 ? t->audio_bytes : 0);
            rc = step_done(s->writer, st, "update track", errmsg);
            sqlite3_finalize(st);
        }
    }
    if (!rc && emb)
        rc = put_vec(s, EMB_PUT_SQL, "put embedding", t->id, model_id, emb, dim, errmsg);
    if (!rc && scores)
        rc = put_vec(s, SCORES_PUT_SQL, "put scores", t->id, model_id, scores, n_scores, errmsg);
    rc = clmr__store_wend(s, rc, errmsg);
    if (!rc && created) *created = made;
    return rc;
}

int clmr_store_track_get(clmr_store_t *s, const char *id, clmr_track_record_t *out, char **errmsg)
{
    if (!id || !out) return CLMR_EINVAL;
    memset(out, 0, sizeof *out);
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, "SELECT " TRACK_COLS " FROM tracks WHERE id = ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            read_track(st, out);
        else if (src == SQLITE_DONE)
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no track %s", id);
        else
            rc = clmr__db_err(db, src, "get track", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

static int parse_cursor(const char *c, int64_t *seq)
{
    *seq = 0;
    if (!c || !c[0]) return 0;
    if (strlen(c) != 18 || c[0] != 'c' || c[1] != '1') return CLMR_EINVAL;
    uint64_t v = 0;
    for (int i = 2; i < 18; i++) {
        char ch = c[i];
        int d = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 : -1;
        if (d < 0) return CLMR_EINVAL;
        v = v << 4 | (uint64_t)d;
    }
    if (v > INT64_MAX) return CLMR_EINVAL;
    *seq = (int64_t)v;
    return 0;
}

int clmr_store_track_list(clmr_store_t *s, const char *cursor, int limit,
                          clmr_track_record_t **items, size_t *n, char **next_cursor, char **errmsg)
{
    int64_t after;
    *items = NULL;
    *n = 0;
    *next_cursor = NULL;
    if (limit < 1 || limit > 1000)
        return clmr_set_err(errmsg, CLMR_EINVAL, "limit must be between 1 and 1000");
    if (parse_cursor(cursor, &after)) return clmr_set_err(errmsg, CLMR_EINVAL, "invalid cursor");
    clmr_track_record_t *arr = calloc((size_t)limit, sizeof *arr);
    if (!arr) return CLMR_ENOMEM;
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    size_t got = 0;
    int64_t last = 0;
    int more = 0;
    /* Fetch one extra row to know whether another page exists. */
    int rc =
        clmr__prep(db, "SELECT " TRACK_COLS ", seq FROM tracks WHERE seq > ? ORDER BY seq LIMIT ?",
                   &st, errmsg);
    if (!rc) {
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int(st, 2, limit + 1);
        int src;
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            if (got == (size_t)limit) {
                more = 1;
                break;
            }
            read_track(st, &arr[got++]);
            last = sqlite3_column_int64(st, 8);
        }
        if (src != SQLITE_ROW && src != SQLITE_DONE) rc = clmr__db_err(db, src, "list", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    if (!rc && more && asprintf(next_cursor, "c1%016" PRIx64, (uint64_t)last) < 0) {
        *next_cursor = NULL;
        rc = CLMR_ENOMEM;
    }
    if (rc) {
        clmr_track_list_free(arr, got);
        return rc;
    }
    *items = arr;
    *n = got;
    return 0;
}

int clmr_store_track_foreach(clmr_store_t *s, int64_t created_after, clmr_store_track_cb cb,
                             void *ud, char **errmsg)
{
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, "SELECT " TRACK_COLS " FROM tracks WHERE created_at > ? ORDER BY seq",
                        &st, errmsg);
    if (!rc) {
        sqlite3_bind_int64(st, 1, created_after);
        int src;
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            clmr_track_record_t t;
            read_track(st, &t);
            rc = cb(ud, &t);
            clmr_track_record_clear(&t);
            if (rc) break;
        }
        if (!rc && src != SQLITE_DONE) rc = clmr__db_err(db, src, "foreach track", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

int clmr_store_track_delete(clmr_store_t *s, const char *id, char **errmsg)
{
    if (!clmr__is_sha256_hex(id))
        return clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no track %s", id ? id : "(null)");
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer, "DELETE FROM tracks WHERE id = ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = step_done(s->writer, st, "delete track", errmsg);
        sqlite3_finalize(st);
        if (!rc && sqlite3_changes(s->writer) == 0)
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no track %s", id);
    }
    if (!rc) {
        /* Deleting a song also forgets what was derived from its bytes. */
        rc = clmr__prep(s->writer, "DELETE FROM tag_cache WHERE sha256 = ?", &st, errmsg);
        if (!rc) {
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
            rc = step_done(s->writer, st, "delete cached results", errmsg);
            sqlite3_finalize(st);
        }
    }
    rc = clmr__store_wend(s, rc, errmsg);
    if (!rc) {
        /* After the commit: a crash between commit and unlink leaves an orphan file, which the
         * start-up sweep removes; the reverse order could leave a row without its audio. */
        (void)clmr_pool_delete(s->pool_dir, id, NULL);
    }
    return rc;
}

static int count_query(clmr_store_t *s, const char *sql, const char *arg, int64_t *count,
                       char **errmsg)
{
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, sql, &st, errmsg);
    if (!rc) {
        if (arg) sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            *count = sqlite3_column_int64(st, 0);
        else
            rc = clmr__db_err(db, src, "count", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

int clmr_store_track_count(clmr_store_t *s, int64_t *count, char **errmsg)
{
    return count_query(s, "SELECT count(*) FROM tracks", NULL, count, errmsg);
}

/* ---- embeddings and scores ---- */

int clmr_store_embedding_put(clmr_store_t *s, const char *track_id, const char *model_id,
                             const float *v, int dim, char **errmsg)
{
    int rc = check_vec(model_id, v, dim, "embedding", errmsg);
    if (rc) return rc;
    if ((rc = clmr__store_wbegin(s, errmsg))) return rc;
    rc = put_vec(s, EMB_PUT_SQL, "put embedding", track_id, model_id, v, dim, errmsg);
    return clmr__store_wend(s, rc, errmsg);
}

int clmr_store_scores_put(clmr_store_t *s, const char *track_id, const char *model_id,
                          const float *v, int n, char **errmsg)
{
    int rc = check_vec(model_id, v, n, "tag scores", errmsg);
    if (rc) return rc;
    if ((rc = clmr__store_wbegin(s, errmsg))) return rc;
    rc = put_vec(s, SCORES_PUT_SQL, "put scores", track_id, model_id, v, n, errmsg);
    return clmr__store_wend(s, rc, errmsg);
}

static int get_vec(clmr_store_t *s, const char *sql, const char *track_id, const char *model_id,
                   float **v, int *n, char **errmsg)
{
    *v = NULL;
    *n = 0;
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, sql, &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, track_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, model_id, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            int k = sqlite3_column_int(st, 0);
            rc = clmr__col_floats(st, 1, k, v, errmsg);
            if (!rc) *n = k;
        } else if (src == SQLITE_DONE) {
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no vector for track %s and model %s",
                              track_id, model_id);
        } else {
            rc = clmr__db_err(db, src, "get vector", errmsg);
        }
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

int clmr_store_embedding_get(clmr_store_t *s, const char *track_id, const char *model_id, float **v,
                             int *dim, char **errmsg)
{
    return get_vec(s, "SELECT dim, vec FROM embeddings WHERE track_id = ? AND model_id = ?",
                   track_id, model_id, v, dim, errmsg);
}

int clmr_store_scores_get(clmr_store_t *s, const char *track_id, const char *model_id, float **v,
                          int *n, char **errmsg)
{
    return get_vec(s, "SELECT n, scores FROM tag_scores WHERE track_id = ? AND model_id = ?",
                   track_id, model_id, v, n, errmsg);
}

int clmr_store_embedding_foreach(clmr_store_t *s, const char *model_id, clmr_store_embedding_cb cb,
                                 void *ud, char **errmsg)
{
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    float *buf = NULL;
    int cap = 0;
    int rc =
        clmr__prep(db, "SELECT track_id, dim, vec FROM embeddings WHERE model_id = ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
        int src;
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            int dim = sqlite3_column_int(st, 1);
            const void *b = sqlite3_column_blob(st, 2);
            if (dim < 1 || !b || sqlite3_column_bytes(st, 2) != 4 * dim) {
                rc = clmr_set_err(errmsg, CLMR_EDB, "malformed embedding row");
                break;
            }
            /* BLOB memory need not be float-aligned: copy into an aligned buffer reused for
             * every row. */
            if (dim > cap) {
                float *nb = realloc(buf, (size_t)dim * sizeof *buf);
                if (!nb) {
                    rc = CLMR_ENOMEM;
                    break;
                }
                buf = nb;
                cap = dim;
            }
            memcpy(buf, b, (size_t)dim * 4);
            rc = cb(ud, (const char *)sqlite3_column_text(st, 0), buf, dim);
            if (rc) break;
        }
        if (!rc && src != SQLITE_DONE) rc = clmr__db_err(db, src, "foreach embedding", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    free(buf);
    return rc;
}

int clmr_store_embedding_count(clmr_store_t *s, const char *model_id, int64_t *count, char **errmsg)
{
    return count_query(s, "SELECT count(*) FROM embeddings WHERE model_id = ?", model_id, count,
                       errmsg);
}

/* ---- tag-result cache ---- */

/* Keeps the cache within its bounds, in the writer transaction of the put that may have passed
 * them: rows older than cache_max_age_s go, then the oldest rows beyond cache_max_rows. Both
 * deletes walk an index (created_at; rowid), so each put costs O(rows evicted). An upsert
 * counts as new (created_at moves), so a result in use stays. */
static int cache_evict(clmr_store_t *s, char **errmsg)
{
    sqlite3_stmt *st;
    int rc = 0;
    if (s->cache_max_age_s > 0) {
        rc = clmr__prep(s->writer, "DELETE FROM tag_cache WHERE created_at < ?", &st, errmsg);
        if (rc) return rc;
        sqlite3_bind_int64(st, 1, clmr__now_ms() - s->cache_max_age_s * 1000);
        rc = step_done(s->writer, st, "evict old cached results", errmsg);
        sqlite3_finalize(st);
        if (rc) return rc;
    }
    if (s->cache_max_rows > 0) {
        /* Deletes everything but the newest cache_max_rows rows by rowid (rowids grow with every
         * insert, and an ON CONFLICT update keeps its rowid but is rare next to new uploads). */
        rc = clmr__prep(s->writer,
                        "DELETE FROM tag_cache WHERE rowid <= (SELECT rowid FROM tag_cache "
                        "ORDER BY rowid DESC LIMIT 1 OFFSET ?)",
                        &st, errmsg);
        if (rc) return rc;
        sqlite3_bind_int64(st, 1, s->cache_max_rows);
        rc = step_done(s->writer, st, "evict cached results", errmsg);
        sqlite3_finalize(st);
    }
    return rc;
}

int clmr_store_cache_count(clmr_store_t *s, int64_t *count, char **errmsg)
{
    return count_query(s, "SELECT count(*) FROM tag_cache", NULL, count, errmsg);
}

int clmr_store_pool_bytes(clmr_store_t *s, int64_t *bytes, char **errmsg)
{
    return count_query(s, "SELECT coalesce(sum(audio_bytes), 0) FROM tracks", NULL, bytes, errmsg);
}

int clmr_store_cache_put(clmr_store_t *s, const clmr_tag_result_t *r, char **errmsg)
{
    if (!r || !clmr__is_sha256_hex(r->sha256))
        return clmr_set_err(errmsg, CLMR_EINVAL, "cache key must be a sha256 hex string");
    int rc = check_vec(r->model_id, r->scores, r->n_scores, "cached scores", errmsg);
    if (!rc && r->embedding) rc = check_vec(r->model_id, r->embedding, r->dim, "embedding", errmsg);
    if (!rc && (!isfinite(r->duration_s) || r->duration_s < 0 || r->chunks < 0))
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "bad duration or chunk count");
    if (rc) return rc;
    if ((rc = clmr__store_wbegin(s, errmsg))) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer,
                    "INSERT INTO tag_cache(sha256, model_id, duration_s, chunks, n_scores, scores,"
                    " dim, embedding, created_at, precision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(sha256, model_id) DO UPDATE SET duration_s = excluded.duration_s,"
                    " chunks = excluded.chunks, n_scores = excluded.n_scores,"
                    " scores = excluded.scores, dim = excluded.dim,"
                    " embedding = excluded.embedding, created_at = excluded.created_at,"
                    " precision = excluded.precision",
                    &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, r->sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r->model_id, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, r->duration_s);
        sqlite3_bind_int(st, 4, r->chunks);
        sqlite3_bind_int(st, 5, r->n_scores);
        sqlite3_bind_blob(st, 6, r->scores, 4 * r->n_scores, SQLITE_STATIC);
        sqlite3_bind_int(st, 7, r->embedding ? r->dim : 0);
        if (r->embedding)
            sqlite3_bind_blob(st, 8, r->embedding, 4 * r->dim, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 8);
        sqlite3_bind_int64(st, 9, r->created_at ? r->created_at : clmr__now_ms());
        sqlite3_bind_text(st, 10, r->precision[0] ? r->precision : "fp32", -1, SQLITE_STATIC);
        rc = step_done(s->writer, st, "put cached result", errmsg);
        sqlite3_finalize(st);
    }
    if (!rc) rc = cache_evict(s, errmsg);
    return clmr__store_wend(s, rc, errmsg);
}

int clmr_store_cache_get(clmr_store_t *s, const char *sha256, const char *model_id,
                         clmr_tag_result_t *out, char **errmsg)
{
    if (!out) return CLMR_EINVAL;
    memset(out, 0, sizeof *out);
    if (!sha256 || !model_id) return CLMR_EINVAL;
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db,
                        "SELECT duration_s, chunks, n_scores, scores, dim, embedding, created_at, "
                        "precision FROM tag_cache WHERE sha256 = ? AND model_id = ? AND "
                        "created_at >= ?",
                        &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, sha256, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, model_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(
            st, 3, s->cache_max_age_s > 0 ? clmr__now_ms() - s->cache_max_age_s * 1000 : INT64_MIN);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            snprintf(out->sha256, sizeof out->sha256, "%s", sha256);
            snprintf(out->model_id, sizeof out->model_id, "%s", model_id);
            out->duration_s = sqlite3_column_double(st, 0);
            out->chunks = sqlite3_column_int(st, 1);
            out->created_at = sqlite3_column_int64(st, 6);
            const unsigned char *prec = sqlite3_column_text(st, 7);
            snprintf(out->precision, sizeof out->precision, "%s", prec ? (const char *)prec : "");
            int ns = sqlite3_column_int(st, 2), dim = sqlite3_column_int(st, 4);
            rc = clmr__col_floats(st, 3, ns, &out->scores, errmsg);
            if (!rc) out->n_scores = ns;
            if (!rc && sqlite3_column_type(st, 5) != SQLITE_NULL) {
                rc = clmr__col_floats(st, 5, dim, &out->embedding, errmsg);
                if (!rc) out->dim = dim;
            }
            if (rc) clmr_tag_result_clear(out);
        } else if (src == SQLITE_DONE) {
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no cached result");
        } else {
            rc = clmr__db_err(db, src, "get cached result", errmsg);
        }
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

/* ---- pool sweep ---- */

typedef struct {
    sqlite3_stmt *st;
    int removed;
} sweep_ctx_t;

static int sweep_known(void *ud, const char *sha256)
{
    sweep_ctx_t *c = ud;
    sqlite3_reset(c->st);
    sqlite3_bind_text(c->st, 1, sha256, -1, SQLITE_TRANSIENT);
    int src = sqlite3_step(c->st);
    /* On a database error keep the file: deleting audio on a guess is not recoverable. */
    return src != SQLITE_DONE;
}

static int sweep_remove(void *ud, const char *path, int is_tmp)
{
    sweep_ctx_t *c = ud;
    if (remove(path) == 0) c->removed++;
    return 0;
}

/* Tracks stored before migration 0003 have audio_bytes 0: fill it from their files, once, so
 * the pool budget counts them. */
static int backfill_sizes(clmr_store_t *s, char **errmsg)
{
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    char **ids = NULL, **paths = NULL;
    size_t n = 0, cap = 0;
    int rc = clmr__prep(db,
                        "SELECT id, audio_path FROM tracks WHERE audio_bytes = 0 AND "
                        "audio_path IS NOT NULL",
                        &st, errmsg);
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **a = realloc(ids, cap * sizeof *a),
                 **b = a ? realloc(paths, cap * sizeof *b) : NULL;
            if (a) ids = a;
            if (b) paths = b;
            if (!a || !b) {
                rc = CLMR_ENOMEM;
                break;
            }
        }
        ids[n] = clmr__col_dup(st, 0);
        paths[n] = clmr__col_dup(st, 1);
        n++;
    }
    if (st) sqlite3_finalize(st);
    clmr__store_rrelease(s, db);
    if (!rc && n && !(rc = clmr__store_wbegin(s, errmsg))) {
        rc = clmr__prep(s->writer, "UPDATE tracks SET audio_bytes = ? WHERE id = ?", &st, errmsg);
        for (size_t i = 0; !rc && i < n; i++) {
            char full[4096];
            struct stat sb;
            snprintf(full, sizeof full, "%s/%s", s->data_dir, paths[i] ? paths[i] : "");
            if (!ids[i] || !paths[i] || stat(full, &sb) != 0) continue;
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, (int64_t)sb.st_size);
            sqlite3_bind_text(st, 2, ids[i], -1, SQLITE_STATIC);
            rc = step_done(s->writer, st, "record pool file size", errmsg);
        }
        if (st) sqlite3_finalize(st);
        rc = clmr__store_wend(s, rc, errmsg);
    }
    for (size_t i = 0; i < n; i++) {
        free(ids[i]);
        free(paths[i]);
    }
    free(ids);
    free(paths);
    return rc;
}

int clmr_store_pool_sweep(clmr_store_t *s, int *removed, char **errmsg)
{
    sweep_ctx_t c = {0};
    sqlite3 *db = clmr__store_racquire(s);
    int rc = clmr__prep(db, "SELECT 1 FROM tracks WHERE id = ?", &c.st, errmsg);
    if (!rc) {
        rc = clmr_pool_list_orphans(s->pool_dir, sweep_known, &c, sweep_remove, &c, errmsg);
        sqlite3_finalize(c.st);
    }
    clmr__store_rrelease(s, db);
    if (removed) *removed = c.removed;
    if (!rc) rc = backfill_sizes(s, errmsg);
    return rc;
}
