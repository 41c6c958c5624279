/* client_addr.c - the rightmost-untrusted X-Forwarded-For walk (see client_addr.h).
 *
 * DESIGN: the header lines are scanned from the end of the last one backwards, one entry (the
 * text between two commas) at a time, so a long header costs nothing beyond the entries actually
 * needed, and the byte and hop budgets bound the work for any input.
 */
#include "http/client_addr.h"

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

clmr_client_addr_source_t clmr_client_addr_resolve(clmr_ipnet_addr_t *client,
                                                   const clmr_ipnet_list_t *trusted,
                                                   const clmr_ipnet_addr_t *peer,
                                                   const char *const *values, const size_t *lens,
                                                   size_t n)
{
    *client = *peer;
    if (n == 0 || !clmr_ipnet_list_contains(trusted, peer)) return CLMR_CLIENT_FROM_PEER;
    if (n > CLMR_CLIENT_ADDR_MAX_HEADERS) return CLMR_CLIENT_BAD_HEADER;
    size_t budget = CLMR_CLIENT_ADDR_MAX_BYTES;
    int hops = 0;
    clmr_ipnet_addr_t addr = *peer;
    for (size_t h = n; h-- > 0;) {
        const char *v = values[h];
        size_t end = lens[h];
        if (!v) return CLMR_CLIENT_BAD_HEADER;
        for (;;) {
            /* the entry is v[start..end) */
            size_t start = end;
            while (start > 0 && v[start - 1] != ',') {
                if (budget-- == 0) return CLMR_CLIENT_BAD_HEADER;
                start--;
            }
            size_t a = start, b = end;
            while (a < b && blank(v[a]))
                a++;
            while (b > a && blank(v[b - 1]))
                b--;
            if (++hops > CLMR_CLIENT_ADDR_MAX_HOPS || clmr_ipnet_addr_parse(&addr, v + a, b - a))
                return CLMR_CLIENT_BAD_HEADER;
            if (!clmr_ipnet_list_contains(trusted, &addr)) {
                *client = addr;
                return CLMR_CLIENT_FROM_HEADER;
            }
            if (start == 0) break;
            if (budget-- == 0) return CLMR_CLIENT_BAD_HEADER; /* the comma */
            end = start - 1;
        }
    }
    /* Every address on the list is a trusted proxy: the leftmost one is the client. */
    *client = addr;
    return CLMR_CLIENT_FROM_HEADER;
}
