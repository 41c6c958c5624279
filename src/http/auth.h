/* auth.h - the access model of the HTTP API: who may call which route (issue 12).
 *
 * DESIGN: every route declares one scope in the route table (routes.c): public (health, metrics,
 * the OpenAPI document), read (tagging, search, listing), write (ingest, delete) or admin
 * (everything under /v1/admin). Scopes are ordered: a write key may read, an admin key may do
 * everything. Credentials are `Authorization: Bearer <key>`: API keys (store.h, kept hashed in
 * the database, made with `clmrd keys create` or POST /v1/admin/keys) and the configured admin
 * token, which counts as an admin key. Credentials in the query string are refused (URLs end up
 * in logs).
 *
 * Without a credential:
 *  - public routes always answer;
 *  - read routes answer unless require-read-key = 1;
 *  - write routes answer only when NO key and no admin token exists at all AND the request is
 *    local: its TCP peer is a loopback address and it carries no X-Forwarded-For, Forwarded or
 *    X-Real-IP header (anything that came through a proxy is treated as remote); once any key or
 *    token exists, every write needs a write key, from any address;
 *  - admin routes answer 404 while no admin credential exists (the admin API is off), else 401.
 *
 * The polling thread decides from an in-memory copy of the key table (hashes and scopes only),
 * so authentication never waits for SQLite; the copy is reloaded after every change made through
 * the admin API and every couple of seconds by the maintenance thread (keys made or revoked with
 * the CLI while the daemon runs take effect within CLMR_AUTH_REFRESH_S).
 */
#ifndef CLMR_HTTP_AUTH_H
#define CLMR_HTTP_AUTH_H

#include "util/ipnet.h"

#include <stddef.h>

typedef struct clmr_server clmr_server_t;
typedef struct clmr_http_req clmr_http_req_t;

typedef enum {
    CLMR_SCOPE_PUBLIC = 0,
    CLMR_SCOPE_READ = 1, /* == CLMR_KEY_READ */
    CLMR_SCOPE_WRITE = 2,
    CLMR_SCOPE_ADMIN = 3,
} clmr_scope_t;

#define CLMR_AUTH_REFRESH_S 2
#define CLMR_AUTH_TOKEN_MIN 32 /* shortest admin token accepted */

/* Reads the admin token (admin-token-file first, else admin-token) and checks its strength, then
 * loads the key table. Returns 0, or CLMR_EIO / CLMR_EINVAL with *errmsg naming the key. */
int clmr__auth_open(clmr_server_t *s, char **errmsg);
void clmr__auth_close(clmr_server_t *s);

/* Reloads the key table from the store (any thread). Returns 0 or a store error (the previous
 * table stays in force). */
int clmr__auth_refresh(clmr_server_t *s);

/* 1 when an admin credential (token or admin key) exists: the admin API is on. */
int clmr__auth_admin_enabled(clmr_server_t *s);

/* Decides whether req may use a route of the given scope (polling thread, first callback; reads
 * only the request's headers and the in-memory table). Returns 0 when allowed (req->key_id is
 * the key used, 0 for none, -1 for the admin token), else -1 with 401, 403 or 404 prepared. */
int clmr__auth_allow(clmr_http_req_t *req, clmr_scope_t scope);

/* 1 when peer is a loopback address (127.0.0.0/8, ::1). */
int clmr__auth_is_loopback(clmr_server_t *s, const clmr_ipnet_addr_t *peer);

/* Refuses weak secrets: fewer than CLMR_AUTH_TOKEN_MIN characters, characters outside printable
 * ASCII without spaces, fewer than 8 distinct characters, or a documented placeholder. Returns 1
 * when acceptable, else 0 with *why (static text). */
int clmr__auth_token_ok(const char *tok, size_t n, const char **why);

/* Constant-time equality of two byte strings (time depends only on the lengths). */
int clmr__auth_equal(const char *a, size_t na, const char *b, size_t nb);

#endif
