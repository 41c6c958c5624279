/* catalog.c - metadata, descriptors, duplicates, queries and corrections; see catalog.h.
 *
 * DESIGN: queries are assembled from fixed SQL fragments chosen by the query struct, and every
 * user value is a bound parameter, so no input ever becomes SQL text. Free text becomes an FTS5
 * query of quoted prefix terms ("word"*), which FTS5 cannot misread as its own syntax. Tag
 * filters read one float out of the stored score BLOB with a small SQL function (clmr_f32)
 * registered on the reader connection that runs the query. The count and the page use the same
 * FROM/WHERE text and the same bindings.
 */
#include "store/catalog.h"

#include "clmr/error.h"
#include "store/store_internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_WORDS_MAX 16

void clmr_track_extra_init(clmr_track_extra_t *x)
{
    memset(x, 0, sizeof *x);
    x->bpm = x->bpm_confidence = x->onset_rate = NAN;
    x->loudness_lufs = x->loudness_range_lu = x->true_peak_dbtp = NAN;
}

void clmr_track_extra_clear(clmr_track_extra_t *x)
{
    if (!x) return;
    free(x->album);
    free(x->genre);
    clmr_track_extra_init(x);
}

void clmr_track_rows_free(clmr_track_row_t *rows, size_t n)
{
    if (!rows) return;
    for (size_t i = 0; i < n; i++) {
        clmr_track_record_clear(&rows[i].t);
        clmr_track_extra_clear(&rows[i].x);
        free(rows[i].scores);
        free(rows[i].emb);
    }
    free(rows);
}

clmr_track_query_t clmr_track_query_default(void)
{
    return (clmr_track_query_t){.tag = -1,
                                .bpm_min = NAN,
                                .bpm_max = NAN,
                                .lufs_min = NAN,
                                .lufs_max = NAN,
                                .duration_min = NAN,
                                .duration_max = NAN,
                                .duplicates = -1,
                                .limit = 50};
}

/* ---- columns ---- */

/* The columns every row read uses, in this order (read_row depends on it). */
#define ROW_COLS                                                                                   \
    "t.id, t.title, t.artist, t.external_id, t.duration_s, t.created_at, t.audio_path, t.seq, "    \
    "t.album, t.genre, t.year, t.track_number, t.duplicate_of, t.bpm, t.bpm_confidence, "          \
    "t.onset_rate, t.loudness_lufs, t.loudness_range_lu, t.true_peak_dbtp"
#define ROW_NCOLS 19

static double col_real(sqlite3_stmt *st, int c)
{
    return sqlite3_column_type(st, c) == SQLITE_NULL ? NAN : sqlite3_column_double(st, c);
}

static void read_extra(sqlite3_stmt *st, int c0, clmr_track_extra_t *x)
{
    /* columns from c0: album, genre, year, track_number, duplicate_of, bpm, bpm_confidence,
     * onset_rate, loudness_lufs, loudness_range_lu, true_peak_dbtp */
    clmr_track_extra_init(x);
    x->album = clmr__col_dup(st, c0);
    x->genre = clmr__col_dup(st, c0 + 1);
    x->year = sqlite3_column_int(st, c0 + 2);
    x->track_number = sqlite3_column_int(st, c0 + 3);
    const unsigned char *d = sqlite3_column_text(st, c0 + 4);
    snprintf(x->duplicate_of, sizeof x->duplicate_of, "%s", d ? (const char *)d : "");
    x->bpm = col_real(st, c0 + 5);
    x->bpm_confidence = col_real(st, c0 + 6);
    x->onset_rate = col_real(st, c0 + 7);
    x->loudness_lufs = col_real(st, c0 + 8);
    x->loudness_range_lu = col_real(st, c0 + 9);
    x->true_peak_dbtp = col_real(st, c0 + 10);
}

static void read_record(sqlite3_stmt *st, clmr_track_record_t *t)
{
    memset(t, 0, sizeof *t);
    const unsigned char *id = sqlite3_column_text(st, 0);
    snprintf(t->id, sizeof t->id, "%s", id ? (const char *)id : "");
    t->title = clmr__col_dup(st, 1);
    t->artist = clmr__col_dup(st, 2);
    t->external_id = clmr__col_dup(st, 3);
    t->duration_s = sqlite3_column_double(st, 4);
    t->created_at = sqlite3_column_int64(st, 5);
    t->audio_path = clmr__col_dup(st, 6);
}

int clmr_store_track_extra_get(clmr_store_t *s, const char *id, clmr_track_extra_t *out,
                               char **errmsg)
{
    clmr_track_extra_init(out);
    if (!id) return CLMR_EINVAL;
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, "SELECT " ROW_COLS " FROM tracks t WHERE t.id = ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW)
            read_extra(st, 8, out);
        else if (src == SQLITE_DONE)
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no track %s", id);
        else
            rc = clmr__db_err(db, src, "get track", errmsg);
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

/* ---- ingest ---- */

static void bind_real_or_null(sqlite3_stmt *st, int i, double v)
{
    if (isfinite(v))
        sqlite3_bind_double(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static void bind_int_or_null(sqlite3_stmt *st, int i, int v)
{
    if (v > 0)
        sqlite3_bind_int(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

static int run_done(sqlite3 *db, sqlite3_stmt *st, const char *what, char **errmsg)
{
    int src = sqlite3_step(st);
    int rc = src == SQLITE_DONE || src == SQLITE_ROW ? 0 : clmr__db_err(db, src, what, errmsg);
    sqlite3_finalize(st);
    return rc;
}

/* Best fingerprint match among stored tracks of similar duration (writer connection, inside the
 * ingest transaction). root receives the matched track's root id, "" when none passes. */
static int find_duplicate(clmr_store_t *s, const clmr_catalog_ingest_t *in, char root[65],
                          double *best, char **errmsg)
{
    root[0] = 0;
    *best = 0;
    sqlite3_stmt *st;
    int rc = clmr__prep(s->writer,
                        "SELECT f.track_id, f.n, f.fp, t.duplicate_of FROM fingerprints f "
                        "JOIN tracks t ON t.id = f.track_id WHERE f.duration_s BETWEEN ? AND ? "
                        "AND f.track_id <> ?",
                        &st, errmsg);
    if (rc) return rc;
    double d = in->track->duration_s, tol = in->duration_tolerance_s;
    sqlite3_bind_double(st, 1, d - tol);
    sqlite3_bind_double(st, 2, d + tol);
    sqlite3_bind_text(st, 3, in->track->id, -1, SQLITE_STATIC);
    int src;
    while ((src = sqlite3_step(st)) == SQLITE_ROW) {
        int n = sqlite3_column_int(st, 1);
        const void *blob = sqlite3_column_blob(st, 2);
        if (!blob || n <= 0 || sqlite3_column_bytes(st, 2) != 4 * n) continue;
        double sim = in->similarity(in->fp, in->fp_n, blob, n);
        if (sim >= in->match_threshold && sim > *best) {
            *best = sim;
            const unsigned char *dup = sqlite3_column_text(st, 3);
            const unsigned char *id = sqlite3_column_text(st, 0);
            snprintf(root, 65, "%s", dup ? (const char *)dup : id ? (const char *)id : "");
        }
    }
    if (src != SQLITE_DONE) rc = clmr__db_err(s->writer, src, "match fingerprints", errmsg);
    sqlite3_finalize(st);
    if (!root[0]) *best = 0;
    return rc;
}

int clmr_store_catalog_ingest(clmr_store_t *s, const clmr_catalog_ingest_t *in, int *created,
                              char *duplicate_of, double *similarity, char **errmsg)
{
    if (duplicate_of) duplicate_of[0] = 0;
    if (similarity) *similarity = 0;
    if (!in || !in->track || !in->extra || (in->fp && (in->fp_n <= 0 || !in->similarity)))
        return clmr_set_err(errmsg, CLMR_EINVAL, "catalog ingest: missing arguments");
    int rc = clmr_store_write_begin(s, errmsg);
    if (rc) return rc;
    char root[65] = "";
    double best = 0;
    int exists = 0;
    sqlite3_stmt *st;
    if (!(rc = clmr__prep(s->writer, "SELECT 1 FROM tracks WHERE id = ?", &st, errmsg))) {
        sqlite3_bind_text(st, 1, in->track->id, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        exists = src == SQLITE_ROW;
        if (src != SQLITE_ROW && src != SQLITE_DONE)
            rc = clmr__db_err(s->writer, src, "find track", errmsg);
        sqlite3_finalize(st);
    }
    if (!rc && !exists && in->fp) rc = find_duplicate(s, in, root, &best, errmsg);
    int made = 0;
    if (!rc)
        rc = clmr_store_track_ingest(s, in->track, in->model_id, in->emb, in->dim, in->scores,
                                     in->n_scores, &made, errmsg);
    const clmr_track_extra_t *x = in->extra;
    if (!rc && made) {
        rc = clmr__prep(s->writer,
                        "UPDATE tracks SET album = ?, genre = ?, year = ?, track_number = ?, "
                        "duplicate_of = ? WHERE id = ?",
                        &st, errmsg);
        if (!rc) {
            sqlite3_bind_text(st, 1, x->album, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, x->genre, -1, SQLITE_STATIC);
            bind_int_or_null(st, 3, x->year);
            bind_int_or_null(st, 4, x->track_number);
            if (root[0])
                sqlite3_bind_text(st, 5, root, -1, SQLITE_STATIC);
            else
                sqlite3_bind_null(st, 5);
            sqlite3_bind_text(st, 6, in->track->id, -1, SQLITE_STATIC);
            rc = run_done(s->writer, st, "set metadata", errmsg);
        }
    }
    if (!rc) {
        rc = clmr__prep(s->writer,
                        "UPDATE tracks SET bpm = ?, bpm_confidence = ?, onset_rate = ?, "
                        "loudness_lufs = ?, loudness_range_lu = ?, true_peak_dbtp = ? WHERE id = ?",
                        &st, errmsg);
        if (!rc) {
            bind_real_or_null(st, 1, x->bpm);
            bind_real_or_null(st, 2, x->bpm_confidence);
            bind_real_or_null(st, 3, x->onset_rate);
            bind_real_or_null(st, 4, x->loudness_lufs);
            bind_real_or_null(st, 5, x->loudness_range_lu);
            bind_real_or_null(st, 6, x->true_peak_dbtp);
            sqlite3_bind_text(st, 7, in->track->id, -1, SQLITE_STATIC);
            rc = run_done(s->writer, st, "set descriptors", errmsg);
        }
    }
    if (!rc && in->fp) {
        rc = clmr__prep(s->writer,
                        "INSERT INTO fingerprints(track_id, duration_s, n, fp) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(track_id) DO UPDATE SET duration_s = excluded.duration_s, "
                        "n = excluded.n, fp = excluded.fp",
                        &st, errmsg);
        if (!rc) {
            sqlite3_bind_text(st, 1, in->track->id, -1, SQLITE_STATIC);
            sqlite3_bind_double(st, 2, in->track->duration_s);
            sqlite3_bind_int(st, 3, in->fp_n);
            sqlite3_bind_blob(st, 4, in->fp, 4 * in->fp_n, SQLITE_STATIC);
            rc = run_done(s->writer, st, "put fingerprint", errmsg);
        }
    }
    int erc = clmr_store_write_end(s, rc == 0, rc ? NULL : errmsg);
    if (!rc) rc = erc;
    if (!rc) {
        if (created) *created = made;
        if (made && duplicate_of) snprintf(duplicate_of, 65, "%s", root);
        if (made && similarity) *similarity = best;
    }
    return rc;
}

int clmr_store_fingerprint_get(clmr_store_t *s, const char *id, uint32_t **fp, int *n,
                               char **errmsg)
{
    *fp = NULL;
    *n = 0;
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st;
    int rc = clmr__prep(db, "SELECT n, fp FROM fingerprints WHERE track_id = ?", &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        int src = sqlite3_step(st);
        if (src == SQLITE_ROW) {
            int k = sqlite3_column_int(st, 0);
            const void *b = sqlite3_column_blob(st, 1);
            if (k <= 0 || !b || sqlite3_column_bytes(st, 1) != 4 * k)
                rc = clmr_set_err(errmsg, CLMR_EDB, "fingerprint of %s is malformed", id);
            else if (!(*fp = malloc((size_t)k * 4)))
                rc = CLMR_ENOMEM;
            else {
                memcpy(*fp, b, (size_t)k * 4);
                *n = k;
            }
        } else if (src == SQLITE_DONE) {
            rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no fingerprint for %s", id);
        } else {
            rc = clmr__db_err(db, src, "get fingerprint", errmsg);
        }
        sqlite3_finalize(st);
    }
    clmr__store_rrelease(s, db);
    return rc;
}

/* ---- corrections ---- */

/* *root = the root of track id ("" when id does not exist). */
static int root_of(clmr_store_t *s, const char *id, char root[65], char **errmsg)
{
    root[0] = 0;
    sqlite3_stmt *st;
    int rc = clmr__prep(s->writer, "SELECT coalesce(duplicate_of, id) FROM tracks WHERE id = ?",
                        &st, errmsg);
    if (rc) return rc;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        const unsigned char *r = sqlite3_column_text(st, 0);
        snprintf(root, 65, "%s", r ? (const char *)r : "");
    } else if (src != SQLITE_DONE) {
        rc = clmr__db_err(s->writer, src, "find root", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

int clmr_store_track_patch(clmr_store_t *s, const char *id, const clmr_track_patch_t *p,
                           char **errmsg)
{
    static const struct {
        unsigned bit;
        const char *col;
    } text_cols[] = {{CLMR_PATCH_TITLE, "title"},
                     {CLMR_PATCH_ARTIST, "artist"},
                     {CLMR_PATCH_ALBUM, "album"},
                     {CLMR_PATCH_GENRE, "genre"},
                     {CLMR_PATCH_EXTERNAL_ID, "external_id"}};
    if (!clmr__is_sha256_hex(id) || !p) return clmr_set_err(errmsg, CLMR_EINVAL, "bad arguments");
    int rc = clmr_store_write_begin(s, errmsg);
    if (rc) return rc;
    char self[65], root[65] = "";
    rc = root_of(s, id, self, errmsg);
    if (!rc && !self[0]) rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no track %s", id);
    if (!rc && (p->set & CLMR_PATCH_DUPLICATE_OF) && p->duplicate_of) {
        rc = root_of(s, p->duplicate_of, root, errmsg);
        if (!rc && !root[0])
            rc = clmr_set_err(errmsg, CLMR_EINVAL, "duplicate_of: no track %s", p->duplicate_of);
        else if (!rc && !strcmp(root, id))
            rc = clmr_set_err(errmsg, CLMR_EINVAL,
                              "duplicate_of: %s is this track or one of its own duplicates",
                              p->duplicate_of);
    }
    const char *tv[5] = {p->title, p->artist, p->album, p->genre, p->external_id};
    for (int i = 0; !rc && i < 5; i++) {
        if (!(p->set & text_cols[i].bit)) continue;
        char sql[96];
        snprintf(sql, sizeof sql, "UPDATE tracks SET %s = ? WHERE id = ?", text_cols[i].col);
        sqlite3_stmt *st;
        if ((rc = clmr__prep(s->writer, sql, &st, errmsg))) break;
        sqlite3_bind_text(st, 1, tv[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        rc = run_done(s->writer, st, "patch track", errmsg);
    }
    const struct {
        unsigned bit;
        const char *sql;
        int v;
    } int_cols[] = {{CLMR_PATCH_YEAR, "UPDATE tracks SET year = ? WHERE id = ?", p->year},
                    {CLMR_PATCH_TRACK_NUMBER, "UPDATE tracks SET track_number = ? WHERE id = ?",
                     p->track_number}};
    for (int i = 0; !rc && i < 2; i++) {
        if (!(p->set & int_cols[i].bit)) continue;
        sqlite3_stmt *st;
        if ((rc = clmr__prep(s->writer, int_cols[i].sql, &st, errmsg))) break;
        bind_int_or_null(st, 1, int_cols[i].v);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        rc = run_done(s->writer, st, "patch track", errmsg);
    }
    if (!rc && (p->set & CLMR_PATCH_DUPLICATE_OF)) {
        sqlite3_stmt *st;
        rc = clmr__prep(s->writer, "UPDATE tracks SET duplicate_of = ? WHERE id = ?", &st, errmsg);
        if (!rc) {
            if (root[0])
                sqlite3_bind_text(st, 1, root, -1, SQLITE_STATIC);
            else
                sqlite3_bind_null(st, 1);
            sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
            rc = run_done(s->writer, st, "patch duplicate_of", errmsg);
        }
        /* A root that becomes a duplicate hands its own duplicates to the new root. */
        if (!rc && root[0] &&
            !(rc =
                  clmr__prep(s->writer, "UPDATE tracks SET duplicate_of = ? WHERE duplicate_of = ?",
                             &st, errmsg))) {
            sqlite3_bind_text(st, 1, root, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
            rc = run_done(s->writer, st, "re-link duplicates", errmsg);
        }
    }
    int erc = clmr_store_write_end(s, rc == 0, rc ? NULL : errmsg);
    return rc ? rc : erc;
}

/* ---- queries ---- */

/* clmr_f32(blob, i): the i-th little-endian float32 of blob, NULL when out of range. */
static void f32_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *b = sqlite3_value_blob(argv[0]);
    int bytes = sqlite3_value_bytes(argv[0]);
    sqlite3_int64 i = sqlite3_value_int64(argv[1]);
    if (!b || i < 0 || (i + 1) * 4 > bytes) {
        sqlite3_result_null(ctx);
        return;
    }
    float f;
    memcpy(&f, b + 4 * i, 4);
    sqlite3_result_double(ctx, f);
}

typedef struct {
    char sql[2048];
    size_t len;
    int overflow;
    /* bindings in order: type 'd' double, 'i' int64, 't' text */
    char type[32];
    double d[32];
    int64_t i[32];
    const char *t[32];
    int n;
} qbuild_t;

static void q_add(qbuild_t *b, const char *s)
{
    size_t k = strlen(s);
    if (b->len + k + 1 > sizeof b->sql) {
        b->overflow = 1;
        return;
    }
    memcpy(b->sql + b->len, s, k + 1);
    b->len += k;
}

static void q_bind_d(qbuild_t *b, double v)
{
    if (b->n < 32) b->type[b->n] = 'd', b->d[b->n++] = v;
}
static void q_bind_i(qbuild_t *b, int64_t v)
{
    if (b->n < 32) b->type[b->n] = 'i', b->i[b->n++] = v;
}
static void q_bind_t(qbuild_t *b, const char *v)
{
    if (b->n < 32) b->type[b->n] = 't', b->t[b->n++] = v;
}

static void q_apply(const qbuild_t *b, sqlite3_stmt *st)
{
    for (int k = 0; k < b->n; k++) {
        if (b->type[k] == 'd')
            sqlite3_bind_double(st, k + 1, b->d[k]);
        else if (b->type[k] == 'i')
            sqlite3_bind_int64(st, k + 1, b->i[k]);
        else
            sqlite3_bind_text(st, k + 1, b->t[k], -1, SQLITE_STATIC);
    }
}

/* Appends to out (room for 2*strlen(text) + 16*TEXT_WORDS_MAX more bytes) an FTS5 query for
 * user words: each word with a letter or digit becomes [col : ]"word"* (quotes doubled), all
 * joined by spaces (every one must match). Returns the number of words added. */
static int fts_append(char *out, size_t *o, const char *text, const char *col)
{
    int words = 0;
    for (const char *p = text; *p && words < TEXT_WORDS_MAX;) {
        while (*p && isspace((unsigned char)*p))
            p++;
        const char *w = p;
        int searchable = 0;
        while (*p && !isspace((unsigned char)*p)) {
            unsigned char c = (unsigned char)*p++;
            if (isalnum(c) || c >= 0x80) searchable = 1;
        }
        if (!searchable) continue;
        if (*o) out[(*o)++] = ' ';
        if (col) *o += (size_t)sprintf(out + *o, "%s : ", col);
        out[(*o)++] = '"';
        for (const char *c = w; c < p; c++) {
            if (*c == '"') out[(*o)++] = '"';
            out[(*o)++] = *c;
        }
        out[(*o)++] = '"';
        out[(*o)++] = '*';
        words++;
    }
    out[*o] = 0;
    return words;
}

/* The FTS5 query of q (malloc'd), or NULL: *none = 1 when a given text has no searchable word,
 * else (no text given, or out of memory: *nomem) nothing. */
static char *fts_query(const clmr_track_query_t *q, int *none, int *nomem)
{
    const char *texts[3] = {q->text, q->title_text, q->album_text};
    const char *cols[3] = {NULL, "title", "album"};
    size_t need = 1;
    for (int i = 0; i < 3; i++)
        if (texts[i]) need += 2 * strlen(texts[i]) + 16 * TEXT_WORDS_MAX;
    *none = *nomem = 0;
    if (need == 1) return NULL;
    char *out = malloc(need);
    if (!out) {
        *nomem = 1;
        return NULL;
    }
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < 3; i++)
        if (texts[i] && fts_append(out, &o, texts[i], cols[i]) == 0) *none = 1;
    if (*none) {
        free(out);
        return NULL;
    }
    return out;
}

static int parse_cursor(const char *c, char kind, int64_t *v)
{
    *v = 0;
    if (!c || !c[0]) return 0;
    if (strlen(c) != 18 || c[0] != kind || c[1] != '1') return CLMR_EINVAL;
    uint64_t x = 0;
    for (int i = 2; i < 18; i++) {
        char ch = c[i];
        int d = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 : -1;
        if (d < 0) return CLMR_EINVAL;
        x = x << 4 | (uint64_t)d;
    }
    if (x > INT64_MAX) return CLMR_EINVAL;
    *v = (int64_t)x;
    return 0;
}

static void range(qbuild_t *b, const char *col, double lo, double hi)
{
    char frag[96];
    if (!isnan(lo)) {
        snprintf(frag, sizeof frag, " AND %s >= ?", col);
        q_add(b, frag);
        q_bind_d(b, lo);
    }
    if (!isnan(hi)) {
        snprintf(frag, sizeof frag, " AND %s <= ?", col);
        q_add(b, frag);
        q_bind_d(b, hi);
    }
}

int clmr_store_track_query(clmr_store_t *s, const clmr_track_query_t *q, clmr_track_row_t **rows,
                           size_t *n, int64_t *total, char **next_cursor, char **errmsg)
{
    *rows = NULL;
    *n = 0;
    *next_cursor = NULL;
    if (total) *total = 0;
    if (!q || !q->model_id) return clmr_set_err(errmsg, CLMR_EINVAL, "query without a model");
    if (q->limit < 1 || q->limit > 1000)
        return clmr_set_err(errmsg, CLMR_EINVAL, "limit must be between 1 and 1000");
    if (q->sort == CLMR_SORT_TAG_SCORE && q->tag < 0)
        return clmr_set_err(errmsg, CLMR_EINVAL, "sorting by tag score needs a tag");
    if (q->sort == CLMR_SORT_RELEVANCE && !q->text && !q->title_text && !q->album_text)
        return clmr_set_err(errmsg, CLMR_EINVAL, "sorting by relevance needs a text search");
    int keyset = q->sort == CLMR_SORT_CREATED;
    int64_t after = 0, offset = 0;
    if (parse_cursor(q->cursor, keyset ? 'c' : 'o', keyset ? &after : &offset))
        return clmr_set_err(errmsg, CLMR_EINVAL, "malformed cursor");
    int none = 0, nomem = 0;
    char *fts = fts_query(q, &none, &nomem);
    if (none) return clmr_set_err(errmsg, CLMR_EINVAL, "the text search has no searchable word");
    if (nomem) return CLMR_ENOMEM;

    /* FROM + WHERE, shared by the count and the page. Binding 1 is the model id. */
    qbuild_t *w = calloc(1, sizeof *w);
    qbuild_t *pg = calloc(1, sizeof *pg);
    if (!w || !pg) {
        free(fts);
        free(w);
        free(pg);
        return CLMR_ENOMEM;
    }
    q_add(w, " FROM tracks t LEFT JOIN tag_scores ts ON ts.track_id = t.id AND ts.model_id = ?");
    q_bind_t(w, q->model_id);
    if (q->with_embedding) {
        q_add(w, " LEFT JOIN embeddings e ON e.track_id = t.id AND e.model_id = ?");
        q_bind_t(w, q->model_id);
    }
    if (fts) q_add(w, " JOIN tracks_fts ON tracks_fts.rowid = t.seq");
    q_add(w, " WHERE 1");
    if (fts) {
        q_add(w, " AND tracks_fts MATCH ?");
        q_bind_t(w, fts);
    }
    if (q->tag >= 0) {
        q_add(w, " AND clmr_f32(ts.scores, ?) >= ?");
        q_bind_i(w, q->tag);
        /* Compare in float32, as scores are stored: a threshold copied from a printed score
         * (9 significant digits) then keeps that track. */
        q_bind_d(w, (double)(float)q->tag_min);
    }
    if (q->artist) {
        q_add(w, " AND t.artist = ? COLLATE NOCASE");
        q_bind_t(w, q->artist);
    }
    range(w, "t.bpm", q->bpm_min, q->bpm_max);
    range(w, "t.loudness_lufs", q->lufs_min, q->lufs_max);
    range(w, "t.duration_s", q->duration_min, q->duration_max);
    if (q->created_since > 0) {
        q_add(w, " AND t.created_at >= ?");
        q_bind_i(w, q->created_since);
    }
    if (q->duplicates == 0) q_add(w, " AND t.duplicate_of IS NULL");
    if (q->duplicates == 1) q_add(w, " AND t.duplicate_of IS NOT NULL");

    /* The page: the same bindings, then the keyset bound, ORDER BY, LIMIT/OFFSET. */
    *pg = *w;
    pg->len = 0;
    pg->sql[0] = 0;
    q_add(pg, "SELECT " ROW_COLS ", ts.n, ts.scores");
    q_add(pg, q->with_embedding ? ", e.dim, e.vec" : ", NULL, NULL");
    q_add(pg, w->sql);
    const char *dir = q->descending ? " DESC" : " ASC";
    if (keyset && after > 0) {
        q_add(pg, q->descending ? " AND t.seq < ?" : " AND t.seq > ?");
        q_bind_i(pg, after);
    }
    static const char *const keys[] = {
        [CLMR_SORT_CREATED] = NULL,
        [CLMR_SORT_TITLE] = "t.title COLLATE NOCASE",
        [CLMR_SORT_ARTIST] = "t.artist COLLATE NOCASE",
        [CLMR_SORT_ALBUM] = "t.album COLLATE NOCASE",
        [CLMR_SORT_YEAR] = "t.year",
        [CLMR_SORT_DURATION] = "t.duration_s",
        [CLMR_SORT_BPM] = "t.bpm",
        [CLMR_SORT_LOUDNESS] = "t.loudness_lufs",
        [CLMR_SORT_TAG_SCORE] = "clmr_f32(ts.scores, ?)",
        [CLMR_SORT_RELEVANCE] = "tracks_fts.rank",
    };
    q_add(pg, " ORDER BY ");
    if (q->sort > CLMR_SORT_CREATED && q->sort <= CLMR_SORT_RELEVANCE) {
        q_add(pg, keys[q->sort]);
        q_add(pg, dir);
        q_add(pg, " NULLS LAST, ");
        if (q->sort == CLMR_SORT_TAG_SCORE) q_bind_i(pg, q->tag);
    }
    q_add(pg, "t.seq");
    q_add(pg, dir);
    q_add(pg, " LIMIT ? OFFSET ?");
    q_bind_i(pg, q->limit + 1); /* one extra row says whether another page exists */
    q_bind_i(pg, offset);
    int rc = 0;
    if (w->overflow || pg->overflow || w->n >= 32 || pg->n >= 32)
        rc = clmr_set_err(errmsg, CLMR_EINVAL, "query too complex");

    clmr_track_row_t *arr = rc ? NULL : calloc((size_t)q->limit, sizeof *arr);
    if (!rc && !arr) rc = CLMR_ENOMEM;
    size_t got = 0;
    int64_t last = 0;
    int more = 0;
    sqlite3 *db = clmr__store_racquire(s);
    if (!rc && (q->tag >= 0) &&
        sqlite3_create_function_v2(db, "clmr_f32", 2,
                                   SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                   f32_fn, NULL, NULL, NULL) != SQLITE_OK)
        rc = clmr__db_err(db, sqlite3_errcode(db), "register clmr_f32", errmsg);
    sqlite3_stmt *st = NULL;
    if (!rc && !(rc = clmr__prep(db, pg->sql, &st, errmsg))) {
        q_apply(pg, st);
        int src;
        while ((src = sqlite3_step(st)) == SQLITE_ROW) {
            if (got == (size_t)q->limit) {
                more = 1;
                break;
            }
            clmr_track_row_t *r = &arr[got++];
            read_record(st, &r->t);
            read_extra(st, 8, &r->x);
            last = sqlite3_column_int64(st, 7);
            int ns = sqlite3_column_int(st, ROW_NCOLS);
            if (ns > 0 && clmr__col_floats(st, ROW_NCOLS + 1, ns, &r->scores, errmsg) == 0)
                r->n_scores = ns;
            int dim = sqlite3_column_int(st, ROW_NCOLS + 2);
            if (dim > 0 && clmr__col_floats(st, ROW_NCOLS + 3, dim, &r->emb, errmsg) == 0)
                r->dim = dim;
        }
        if (src != SQLITE_ROW && src != SQLITE_DONE) rc = clmr__db_err(db, src, "query", errmsg);
        sqlite3_finalize(st);
    }
    if (!rc && total) {
        char sql[2100];
        snprintf(sql, sizeof sql, "SELECT count(*)%s", w->sql);
        if (!(rc = clmr__prep(db, sql, &st, errmsg))) {
            q_apply(w, st);
            int src = sqlite3_step(st);
            if (src == SQLITE_ROW)
                *total = sqlite3_column_int64(st, 0);
            else
                rc = clmr__db_err(db, src, "count", errmsg);
            sqlite3_finalize(st);
        }
    }
    clmr__store_rrelease(s, db);
    if (!rc && more) {
        int k = keyset ? asprintf(next_cursor, "c1%016" PRIx64, (uint64_t)last)
                       : asprintf(next_cursor, "o1%016" PRIx64, (uint64_t)(offset + (int64_t)got));
        if (k < 0) {
            *next_cursor = NULL;
            rc = CLMR_ENOMEM;
        }
    }
    free(fts);
    free(w);
    free(pg);
    if (rc) {
        clmr_track_rows_free(arr, got);
        return rc;
    }
    *rows = arr;
    *n = got;
    return 0;
}
