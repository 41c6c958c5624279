/* admin.h - the /v1/admin API: fine-tuning jobs, model roll-over and API keys.
 *
 * DESIGN: the route table (routes.c) matches admin routes and auth.h authorises them (admin
 * scope: an admin key or the admin token; 404 while neither exists). One fine-tuning job
 * runs at a time on its own thread (store.h enforces it with a transaction; the thread is joined
 * before the next one starts) with `finetune-threads` OpenMP threads, so the request workers keep
 * their cores.
 */
#ifndef CLMR_HTTP_ADMIN_H
#define CLMR_HTTP_ADMIN_H

#include <stddef.h>

typedef struct clmr_server clmr_server_t;
typedef struct clmr_http_req clmr_http_req_t;

/* Starts the admin API state (jobs). Returns 0 or CLMR_ENOMEM. Credentials are auth.h's. */
int clmr__admin_open(clmr_server_t *s, char **errmsg);

/* Cancels a running job (it is recorded as failed: "interrupted by shutdown", its checkpoint
 * kept) and joins the job thread. */
void clmr__admin_close(clmr_server_t *s);

/* Runs a matched admin request (catalogue pool); routes.c's table has matched and authorised it
 * and set req->admin_op. */
void clmr__admin_handle(clmr_http_req_t *req);

#endif
