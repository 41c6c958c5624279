/* keys.c - API keys (issue 12): generation, hashing, and their rows in api_keys.
 *
 * DESIGN: a key is 32 bytes from getrandom written as "clmr_" + base64url, so it carries 256
 * bits and needs no further stretching: the stored sha256 cannot be inverted, and a plain hash
 * is enough to look a presented key up (the HTTP layer compares digests in constant time).
 * Revocation sets revoked_at and keeps the row, so `keys list --all` can still name it.
 */
#include "clmr/error.h"
#include "store/store_internal.h"

#include <libavutil/mem.h>
#include <libavutil/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char *const SCOPE_NAMES[] = {NULL, "read", "write", "admin"};

const char *clmr_key_scope_name(clmr_key_scope_t scope)
{
    return scope >= CLMR_KEY_READ && scope <= CLMR_KEY_ADMIN ? SCOPE_NAMES[scope] : "unknown";
}

int clmr_key_scope_parse(const char *name)
{
    for (int i = CLMR_KEY_READ; name && i <= CLMR_KEY_ADMIN; i++)
        if (strcmp(name, SCOPE_NAMES[i]) == 0) return i;
    return -1;
}

void clmr_store_key_clear(clmr_store_key_t *k)
{
    if (!k) return;
    free(k->name);
    memset(k, 0, sizeof *k);
}

void clmr_store_key_list_free(clmr_store_key_t *items, size_t n)
{
    if (!items) return;
    for (size_t i = 0; i < n; i++)
        clmr_store_key_clear(&items[i]);
    free(items);
}

void clmr_store_key_hash(const char *key, size_t n, char hex[65])
{
    struct AVSHA *sha = av_sha_alloc();
    uint8_t d[32];
    memset(d, 0, sizeof d);
    if (sha && av_sha_init(sha, 256) == 0) {
        av_sha_update(sha, (const uint8_t *)key, (unsigned)(n > (1u << 20) ? (1u << 20) : n));
        av_sha_final(sha, d);
    }
    av_free(sha);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

#define KEY_COLS "id, name, scope, prefix, hash, created_at, coalesce(revoked_at, 0)"

static void read_key(sqlite3_stmt *st, clmr_store_key_t *k)
{
    memset(k, 0, sizeof *k);
    k->id = sqlite3_column_int64(st, 0);
    k->name = clmr__col_dup(st, 1);
    int sc = clmr_key_scope_parse((const char *)sqlite3_column_text(st, 2));
    k->scope = sc < 0 ? CLMR_KEY_READ : (clmr_key_scope_t)sc;
    snprintf(k->prefix, sizeof k->prefix, "%s",
             sqlite3_column_text(st, 3) ? (const char *)sqlite3_column_text(st, 3) : "");
    snprintf(k->hash, sizeof k->hash, "%s",
             sqlite3_column_text(st, 4) ? (const char *)sqlite3_column_text(st, 4) : "");
    k->created_at = sqlite3_column_int64(st, 5);
    k->revoked_at = sqlite3_column_int64(st, 6);
}

static int get_key(sqlite3 *db, int64_t id, clmr_store_key_t *out, char **errmsg)
{
    sqlite3_stmt *st;
    int rc = clmr__prep(db, "SELECT " KEY_COLS " FROM api_keys WHERE id = ?", &st, errmsg);
    if (rc) return rc;
    sqlite3_bind_int64(st, 1, id);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
        if (out) read_key(st, out);
    } else if (src == SQLITE_DONE) {
        rc = clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no key %lld", (long long)id);
    } else {
        rc = clmr__db_err(db, src, "get key", errmsg);
    }
    sqlite3_finalize(st);
    return rc;
}

static void base64url(const unsigned char *in, size_t n, char *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = A[v >> 18 & 63];
        out[o++] = A[v >> 12 & 63];
        if (i + 1 < n) out[o++] = A[v >> 6 & 63];
        if (i + 2 < n) out[o++] = A[v & 63];
    }
    out[o] = 0;
}

int clmr_store_key_create(clmr_store_t *s, const char *name, clmr_key_scope_t scope,
                          char key_out[CLMR_KEY_TEXT_MAX], clmr_store_key_t *out, char **errmsg)
{
    if (out) memset(out, 0, sizeof *out);
    if (!name || !*name || strlen(name) > 128)
        return clmr_set_err(errmsg, CLMR_EINVAL, "a key name is 1 to 128 bytes");
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return clmr_set_err(errmsg, CLMR_EINVAL, "a key name must not hold control characters");
    if (scope < CLMR_KEY_READ || scope > CLMR_KEY_ADMIN)
        return clmr_set_err(errmsg, CLMR_EINVAL, "the scope must be read, write or admin");
    unsigned char rnd[32];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
        return clmr_set_err(errmsg, CLMR_EIO, "getrandom failed: no key was made");
    char key[CLMR_KEY_TEXT_MAX];
    memcpy(key, "clmr_", 5);
    base64url(rnd, sizeof rnd, key + 5);
    memset(rnd, 0, sizeof rnd);
    char hash[65], prefix[CLMR_KEY_PREFIX_LEN + 1];
    clmr_store_key_hash(key, strlen(key), hash);
    snprintf(prefix, sizeof prefix, "%.*s", CLMR_KEY_PREFIX_LEN, key);
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    int64_t id = 0;
    rc = clmr__prep(s->writer,
                    "INSERT INTO api_keys(name, scope, prefix, hash, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    &st, errmsg);
    if (!rc) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, clmr_key_scope_name(scope), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, prefix, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, clmr__now_ms());
        int src = sqlite3_step(st);
        if (src != SQLITE_DONE) rc = clmr__db_err(s->writer, src, "insert key", errmsg);
        id = sqlite3_last_insert_rowid(s->writer);
        sqlite3_finalize(st);
    }
    if (!rc && out) rc = get_key(s->writer, id, out, errmsg);
    rc = clmr__store_wend(s, rc, errmsg);
    if (rc) {
        if (out) clmr_store_key_clear(out);
        memset(key, 0, sizeof key);
        return rc;
    }
    memcpy(key_out, key, strlen(key) + 1);
    memset(key, 0, sizeof key);
    return 0;
}

int clmr_store_key_list(clmr_store_t *s, int include_revoked, clmr_store_key_t **items, size_t *n,
                        char **errmsg)
{
    *items = NULL;
    *n = 0;
    sqlite3 *db = clmr__store_racquire(s);
    sqlite3_stmt *st = NULL;
    int rc = clmr__prep(db,
                        include_revoked ? "SELECT " KEY_COLS " FROM api_keys ORDER BY id"
                                        : "SELECT " KEY_COLS
                                          " FROM api_keys WHERE revoked_at IS NULL ORDER BY id",
                        &st, errmsg);
    size_t cap = 0;
    int src = SQLITE_DONE;
    while (!rc && (src = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            clmr_store_key_t *a = realloc(*items, cap * sizeof *a);
            if (!a) {
                rc = CLMR_ENOMEM;
                break;
            }
            *items = a;
        }
        read_key(st, &(*items)[(*n)++]);
    }
    if (!rc && src != SQLITE_DONE) rc = clmr__db_err(db, src, "list keys", errmsg);
    if (st) sqlite3_finalize(st);
    clmr__store_rrelease(s, db);
    if (rc) {
        clmr_store_key_list_free(*items, *n);
        *items = NULL;
        *n = 0;
    }
    return rc;
}

int clmr_store_key_revoke(clmr_store_t *s, int64_t id, clmr_store_key_t *out, char **errmsg)
{
    if (out) memset(out, 0, sizeof *out);
    int rc = clmr__store_wbegin(s, errmsg);
    if (rc) return rc;
    sqlite3_stmt *st;
    rc = clmr__prep(s->writer,
                    "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", &st,
                    errmsg);
    if (!rc) {
        sqlite3_bind_int64(st, 1, clmr__now_ms());
        sqlite3_bind_int64(st, 2, id);
        int src = sqlite3_step(st);
        if (src != SQLITE_DONE) rc = clmr__db_err(s->writer, src, "revoke key", errmsg);
        sqlite3_finalize(st);
    }
    if (!rc) rc = get_key(s->writer, id, out, errmsg);
    return clmr__store_wend(s, rc, errmsg);
}
