/* client_addr.h - who sent a request: the TCP peer, or, when the peer is a trusted reverse proxy,
 * the address that proxy recorded in X-Forwarded-For.
 *
 * DESIGN: a pure function over the peer address and the header values (no libmicrohttpd, no
 * allocation), so it is unit-tested directly. The walk is the standard rightmost-untrusted rule
 * (nginx's real_ip_recursive on): the list is read right to left, addresses that are themselves
 * trusted proxies are skipped, and the first one that is not is the client. Each proxy appends
 * the address it saw, so everything left of that point may be forged by the client and is never
 * read. When every address is a trusted proxy, the leftmost one is the client (as nginx does).
 * Several X-Forwarded-For header lines are one list in arrival order (RFC 9110 section 5.3).
 * Anything malformed on the walk (an entry that inet_pton does not accept: a port, brackets,
 * "unknown", an empty entry, a NUL) means the proxy's header cannot be trusted, so the answer is
 * the peer. The work is bounded: at most CLMR_CLIENT_ADDR_MAX_HOPS entries and the last
 * CLMR_CLIENT_ADDR_MAX_BYTES bytes of the header are examined; a walk that needs more also falls
 * back to the peer. The raw header is never copied out: only a parsed address is returned.
 */
#ifndef CLMR_HTTP_CLIENT_ADDR_H
#define CLMR_HTTP_CLIENT_ADDR_H

#include "util/ipnet.h"

#include <stddef.h>

#define CLMR_CLIENT_ADDR_MAX_HOPS 32    /* X-Forwarded-For entries examined */
#define CLMR_CLIENT_ADDR_MAX_BYTES 4096 /* header bytes examined, from the right */
#define CLMR_CLIENT_ADDR_MAX_HEADERS 16 /* X-Forwarded-For header lines taken into account */

typedef enum {
    CLMR_CLIENT_FROM_PEER = 0,   /* peer not trusted, no trusted proxies, or no header */
    CLMR_CLIENT_FROM_HEADER = 1, /* taken from X-Forwarded-For */
    CLMR_CLIENT_BAD_HEADER = 2,  /* peer trusted but the header was malformed: the peer is used */
} clmr_client_addr_source_t;

/* Decides the client address of a request. trusted: the proxies whose X-Forwarded-For is believed
 * (NULL or empty: nobody; the header is ignored). peer: the TCP peer. values[i] / lens[i]: the
 * X-Forwarded-For header lines in arrival order (n may be 0; a value need not be NUL-terminated
 * and may contain NUL bytes, which make it malformed); more than CLMR_CLIENT_ADDR_MAX_HEADERS
 * lines is malformed. Writes the answer to *client (the peer unless the header decided) and says
 * where it came from. All pointers remain owned by the caller. Thread-safe. */
clmr_client_addr_source_t clmr_client_addr_resolve(clmr_ipnet_addr_t *client,
                                                   const clmr_ipnet_list_t *trusted,
                                                   const clmr_ipnet_addr_t *peer,
                                                   const char *const *values, const size_t *lens,
                                                   size_t n);

#endif
