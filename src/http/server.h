/* server.h - the clmrd HTTP service: libmicrohttpd daemon, routes, worker pool, metrics.
 *
 * DESIGN: clmr_server_open loads the model, opens the store and the similarity index, starts the
 * worker pool and then the libmicrohttpd daemon (internal epoll polling thread). The polling
 * thread only parses requests, accumulates bodies (with byte and time limits) and answers cheap
 * routes; decoding and inference run on the bounded worker pool while the connection is
 * suspended. clmr_server_shutdown stops accepting (MHD_quiesce_daemon), waits until every
 * in-flight request has been answered, then stops everything.
 */
#ifndef CLMR_HTTP_SERVER_H
#define CLMR_HTTP_SERVER_H

#include "config/config.h"

typedef struct clmr_server clmr_server_t;

/* Starts the service with cfg (copied; model path already resolved in cfg->model). Returns 0 or
 * an error code with *errmsg naming what failed (model, data directory, address in use...). */
int clmr_server_open(clmr_server_t **out, const clmr_config_t *cfg, char **errmsg);

/* The port actually bound (useful with tests). */
int clmr_server_port(const clmr_server_t *s);

/* Graceful stop: refuses new connections, waits up to drain_s seconds for in-flight requests to
 * be answered, then stops the daemon and the workers and frees everything. Accepts NULL; sets *s
 * to NULL. Returns the number of requests still in flight when the wait ended (0 = clean). */
int clmr_server_shutdown(clmr_server_t **s, double drain_s);

#endif
