/* admin.h - the /v1/admin API: bearer-token authentication, fine-tuning jobs and model roll-over.
 *
 * DESIGN: admin routes are matched before any other /v1 route. When no token is configured they
 * answer 404 as if they did not exist; otherwise every request must carry `Authorization: Bearer
 * <token>`, compared in constant time; a token-like query argument is refused with 401 even when
 * the header is right (URLs end up in proxies' and browsers' logs), and the access log only ever
 * prints the path (libmicrohttpd hands the URL over without its query string). One fine-tuning job
 * runs at a time on its own thread (store.h enforces it with a transaction; the thread is joined
 * before the next one starts) with `finetune-threads` OpenMP threads, so the request workers keep
 * their cores.
 */
#ifndef CLMR_HTTP_ADMIN_H
#define CLMR_HTTP_ADMIN_H

#include <stddef.h>

typedef struct clmr_server clmr_server_t;
typedef struct clmr_http_req clmr_http_req_t;

/* Reads the token (admin-token-file first, else admin-token / CLMRD_ADMIN_TOKEN). Returns 0, or
 * CLMR_EIO / CLMR_EINVAL (unreadable or empty token file) with *errmsg. */
int clmr__admin_open(clmr_server_t *s, char **errmsg);

/* Cancels a running job (it is recorded as failed: "interrupted by shutdown", its checkpoint
 * kept) and joins the job thread. */
void clmr__admin_close(clmr_server_t *s);

/* For a URL under /v1/admin: authenticates and matches the route. Returns 0 when the request may
 * proceed (req->route = R_ADMIN, *body_limit set), else -1 with the 401/404/405 prepared. */
int clmr__admin_match(clmr_http_req_t *req, const char *method, const char *url,
                      size_t *body_limit);

/* Runs a matched admin request (catalogue pool). */
void clmr__admin_handle(clmr_http_req_t *req);

/* Constant-time equality of two byte strings (time depends only on the lengths). */
int clmr__admin_token_equal(const char *a, size_t na, const char *b, size_t nb);

#endif
