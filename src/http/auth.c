/* auth.c - the access model (see auth.h): admin token, API key table, per-route decisions.
 *
 * DESIGN: the key table is an immutable array swapped under a mutex by refresh; a lookup copies
 * the pointer and a reference count keeps the array alive while it is read, so the polling thread
 * never waits for a reload. A presented key is hashed once and compared with every stored hash in
 * constant time (no early exit), so timing says nothing about which keys exist.
 */
#include "http/auth.h"

#include "clmr/error.h"
#include "http/http_internal.h"
#include "store/store.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define TOKEN_MAX 255

typedef struct {
    unsigned char hash[32];
    int scope;
    long long id;
} key_entry_t;

typedef struct {
    atomic_int refs;
    size_t n;
    int any_admin;
    key_entry_t keys[];
} key_table_t;

struct clmr_auth {
    char token[TOKEN_MAX + 1];
    size_t token_len;
    pthread_mutex_t mu;
    key_table_t *table; /* under mu; never NULL after open */
    clmr_ipnet_list_t loopback;
};

int clmr__auth_equal(const char *a, size_t na, const char *b, size_t nb)
{
    /* Walk the full length of a (the secret) whatever b is, so the time depends only on na. */
    volatile unsigned char d = (unsigned char)(na != nb);
    for (size_t i = 0; i < na; i++)
        d |= (unsigned char)(a[i] ^ (i < nb ? b[i] : 0));
    return d == 0;
}

int clmr__auth_token_ok(const char *tok, size_t n, const char **why)
{
    static const char *const placeholders[] = {"change-me", "changeme", "replace-me", "example"};
    if (n < CLMR_AUTH_TOKEN_MIN) {
        *why = "it is shorter than 32 characters (make one with `head -c 32 /dev/urandom | "
               "base64`)";
        return 0;
    }
    int seen[256] = {0}, distinct = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)tok[i];
        if (c <= 0x20 || c >= 0x7f) {
            *why = "it must be printable ASCII without spaces";
            return 0;
        }
        if (!seen[c]++) distinct++;
    }
    if (distinct < 8) {
        *why = "it has fewer than 8 distinct characters (not random)";
        return 0;
    }
    for (size_t i = 0; i < sizeof placeholders / sizeof placeholders[0]; i++) {
        size_t pl = strlen(placeholders[i]);
        for (size_t j = 0; j + pl <= n; j++)
            if (!strncasecmp(tok + j, placeholders[i], pl)) {
                *why = "it is a placeholder from the documentation, not a secret";
                return 0;
            }
    }
    return 1;
}

static int read_token_file(const char *path, char *out, size_t cap, size_t *len, char **errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return clmr_set_err(errmsg, CLMR_EIO,
                            "configuration key 'admin-token-file': cannot open '%s': %s", path,
                            strerror(errno));
    char buf[TOKEN_MAX + 2];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0) return clmr_set_err(errmsg, CLMR_EIO, "cannot read the admin token file");
    buf[n] = 0;
    while (n > 0 && isspace((unsigned char)buf[n - 1]))
        buf[--n] = 0;
    if (n == 0 || (size_t)n >= cap)
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "configuration key 'admin-token-file': the token must be 1 to %d "
                            "characters on one line",
                            TOKEN_MAX);
    memcpy(out, buf, (size_t)n + 1);
    *len = (size_t)n;
    memset(buf, 0, sizeof buf);
    return 0;
}

static void table_release(key_table_t *t)
{
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) free(t);
}

static key_table_t *table_get(struct clmr_auth *a)
{
    pthread_mutex_lock(&a->mu);
    key_table_t *t = a->table;
    atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&a->mu);
    return t;
}

static int hex_byte(const char *h)
{
    int v = 0;
    for (int i = 0; i < 2; i++) {
        char c = h[i];
        v = v * 16 + (c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0);
    }
    return v;
}

int clmr__auth_refresh(clmr_server_t *s)
{
    struct clmr_auth *a = s->auth;
    if (!a || !s->store) return 0;
    clmr_store_key_t *items = NULL;
    size_t n = 0;
    char *msg = NULL;
    int rc = clmr_store_key_list(s->store, 0, &items, &n, &msg);
    if (rc) {
        CLMR_LOG_WARN("cannot reload the API keys (the previous table stays): %s",
                      msg ? msg : clmr_strerror(rc));
        free(msg);
        return rc;
    }
    key_table_t *t = calloc(1, sizeof *t + n * sizeof t->keys[0]);
    if (!t) {
        clmr_store_key_list_free(items, n);
        return CLMR_ENOMEM;
    }
    atomic_store(&t->refs, 1);
    for (size_t i = 0; i < n; i++) {
        if (strlen(items[i].hash) != 64) continue;
        key_entry_t *e = &t->keys[t->n++];
        for (int b = 0; b < 32; b++)
            e->hash[b] = (unsigned char)hex_byte(items[i].hash + 2 * b);
        e->scope = (int)items[i].scope;
        e->id = (long long)items[i].id;
        if (e->scope == CLMR_SCOPE_ADMIN) t->any_admin = 1;
    }
    clmr_store_key_list_free(items, n);
    pthread_mutex_lock(&a->mu);
    key_table_t *old = a->table;
    a->table = t;
    pthread_mutex_unlock(&a->mu);
    table_release(old);
    return 0;
}

int clmr__auth_open(clmr_server_t *s, char **errmsg)
{
    struct clmr_auth *a = calloc(1, sizeof *a);
    if (!a) return CLMR_ENOMEM;
    pthread_mutex_init(&a->mu, NULL);
    s->auth = a;
    a->table = calloc(1, sizeof *a->table);
    if (!a->table) return CLMR_ENOMEM;
    atomic_store(&a->table->refs, 1);
    clmr_ipnet_list_parse(&a->loopback, "127.0.0.0/8,::1", NULL);
    const char *key = "admin-token";
    if (s->cfg.admin_token_file[0]) {
        key = "admin-token-file";
        int rc = read_token_file(s->cfg.admin_token_file, a->token, sizeof a->token, &a->token_len,
                                 errmsg);
        if (rc) return rc;
    } else if (s->cfg.admin_token[0]) {
        a->token_len = strlen(s->cfg.admin_token);
        memcpy(a->token, s->cfg.admin_token, a->token_len + 1);
    }
    const char *why = NULL;
    if (a->token_len && !clmr__auth_token_ok(a->token, a->token_len, &why))
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "configuration key '%s': the admin token is refused: %s", key, why);
    int rc = clmr__auth_refresh(s);
    if (rc) return clmr_set_err(errmsg, rc, "cannot read the API keys from the database");
    key_table_t *t = table_get(a);
    CLMR_LOG_INFO("access: admin token %s, %zu API key(s) in force%s",
                  a->token_len ? "set" : "not set", t->n,
                  a->token_len || t->n ? ""
                                       : "; writes only from local clients (no proxy) until a key "
                                         "exists");
    table_release(t);
    return 0;
}

void clmr__auth_close(clmr_server_t *s)
{
    struct clmr_auth *a = s->auth;
    if (!a) return;
    table_release(a->table);
    pthread_mutex_destroy(&a->mu);
    memset(a->token, 0, sizeof a->token);
    free(a);
    s->auth = NULL;
}

int clmr__auth_admin_enabled(clmr_server_t *s)
{
    struct clmr_auth *a = s->auth;
    if (!a) return 0;
    if (a->token_len) return 1;
    key_table_t *t = table_get(a);
    int on = t->any_admin;
    table_release(t);
    return on;
}

static int refuse(clmr_http_req_t *req, unsigned status, const char *code, const char *why)
{
    clmr__http_error(req, status, code, "%s", why);
    if (status == 401)
        snprintf(req->www_auth, sizeof req->www_auth, "Bearer realm=\"clmrd\"");
    else if (status == 403 && !strcmp(code, "insufficient_scope"))
        snprintf(req->www_auth, sizeof req->www_auth,
                 "Bearer realm=\"clmrd\", error=\"insufficient_scope\"");
    return -1;
}

/* The scope of the presented bearer credential, 0 when it matches nothing. */
static int credential_scope(struct clmr_auth *a, const char *tok, size_t n, long long *key_id)
{
    if (a->token_len && clmr__auth_equal(a->token, a->token_len, tok, n)) {
        *key_id = -1;
        return CLMR_SCOPE_ADMIN;
    }
    char hex[65];
    unsigned char h[32];
    clmr_store_key_hash(tok, n, hex);
    for (int b = 0; b < 32; b++)
        h[b] = (unsigned char)hex_byte(hex + 2 * b);
    key_table_t *t = table_get(a);
    int scope = 0;
    for (size_t i = 0; i < t->n; i++) {
        volatile unsigned char d = 0;
        for (int b = 0; b < 32; b++)
            d |= (unsigned char)(t->keys[i].hash[b] ^ h[b]);
        int match = d == 0;
        /* no early exit: every entry is compared */
        scope = match ? t->keys[i].scope : scope;
        *key_id = match ? t->keys[i].id : *key_id;
    }
    table_release(t);
    return scope;
}

int clmr__auth_allow(clmr_http_req_t *req, clmr_scope_t need)
{
    clmr_server_t *s = req->srv;
    struct clmr_auth *a = s->auth;
    req->key_id = 0;
    if (need == CLMR_SCOPE_PUBLIC || !a) return 0;
    if (need == CLMR_SCOPE_ADMIN && !clmr__auth_admin_enabled(s))
        return refuse(req, 404, "not_found",
                      "the admin API is disabled: no admin token (admin-token-file or "
                      "CLMRD_ADMIN_TOKEN) and no admin key (`clmrd keys create --scope admin`)");
    static const char *const query_keys[] = {"token",         "access_token", "admin_token",
                                             "api_key",       "apikey",       "key",
                                             "authorization", "auth",         "bearer"};
    for (size_t i = 0; i < sizeof query_keys / sizeof query_keys[0]; i++)
        if (MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, query_keys[i]))
            return refuse(req, 401, "unauthorized",
                          "credentials are never accepted in the query string; send "
                          "'Authorization: Bearer <key>'");
    const char *h = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Authorization");
    if (h) {
        if (strncasecmp(h, "Bearer ", 7) != 0)
            return refuse(req, 401, "unauthorized",
                          "the Authorization header must use the Bearer scheme");
        const char *tok = h + 7;
        while (*tok == ' ')
            tok++;
        long long id = 0;
        int have = credential_scope(a, tok, strlen(tok), &id);
        if (!have) return refuse(req, 401, "unauthorized", "unknown or revoked key");
        if (have < (int)need) {
            clmr__http_error(req, 403, "insufficient_scope",
                             "this key has scope '%s'; the route needs '%s'",
                             clmr_key_scope_name((clmr_key_scope_t)have),
                             clmr_key_scope_name((clmr_key_scope_t)need));
            snprintf(req->www_auth, sizeof req->www_auth,
                     "Bearer realm=\"clmrd\", error=\"insufficient_scope\"");
            return -1;
        }
        req->key_id = id;
        return 0;
    }
    if (need == CLMR_SCOPE_READ)
        return s->cfg.require_read_key
                   ? refuse(req, 401, "unauthorized",
                            "this service needs a key for every route (require-read-key = 1); "
                            "send 'Authorization: Bearer <key>'")
                   : 0;
    if (need == CLMR_SCOPE_ADMIN)
        return refuse(req, 401, "unauthorized",
                      "admin endpoints need 'Authorization: Bearer <admin key or token>'");
    /* A write without a key. */
    key_table_t *t = table_get(a);
    int any = a->token_len || t->n;
    table_release(t);
    if (any)
        return refuse(req, 401, "unauthorized",
                      "writes need a key with write scope: send 'Authorization: Bearer <key>'");
    if (!req->local)
        return refuse(req, 403, "forbidden",
                      "no API key exists yet, so writes are accepted only from local clients "
                      "(loopback, not through a proxy); create one with `clmrd keys create "
                      "--scope write --name NAME` and send it as 'Authorization: Bearer <key>'");
    return 0;
}

int clmr__auth_is_loopback(clmr_server_t *s, const clmr_ipnet_addr_t *peer)
{
    return s->auth && clmr_ipnet_list_contains(&s->auth->loopback, peer);
}
