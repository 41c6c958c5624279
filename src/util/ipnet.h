/* ipnet.h - IPv4/IPv6 addresses and CIDR prefixes: parse, match, format.
 *
 * DESIGN: plain values (no allocation) so the configuration can validate a list once at start-up
 * and the HTTP layer can match an address per request without locks. Text goes through
 * inet_pton only, so nothing but a canonical address is ever accepted or printed. An IPv4-mapped
 * IPv6 address (::ffff:a.b.c.d, what a dual-stack socket reports for an IPv4 peer) is stored as
 * the IPv4 address, so it matches IPv4 prefixes such as 127.0.0.0/8; otherwise an IPv4 address
 * matches only IPv4 prefixes and an IPv6 address only IPv6 prefixes (::/0 is not "everything").
 */
#ifndef CLMR_UTIL_IPNET_H
#define CLMR_UTIL_IPNET_H

#include <stddef.h>

struct sockaddr;

#define CLMR_IPNET_ADDRSTRLEN 46 /* INET6_ADDRSTRLEN: longest text form plus the NUL */
#define CLMR_IPNET_LIST_MAX 64   /* prefixes in one list */

typedef struct {
    int family;              /* 4 or 6; 0 = no address (e.g. a Unix-socket peer) */
    unsigned char bytes[16]; /* network order; IPv4 uses the first 4 */
} clmr_ipnet_addr_t;

typedef struct {
    clmr_ipnet_addr_t addr; /* host bits are zero */
    int bits;               /* prefix length: 0..32 (IPv4), 0..128 (IPv6) */
} clmr_ipnet_prefix_t;

typedef struct {
    clmr_ipnet_prefix_t prefix[CLMR_IPNET_LIST_MAX];
    int n;
} clmr_ipnet_list_t;

/* Parses one address, exactly the len bytes at s (no surrounding space, no brackets, no port, no
 * zone id). Returns 0, or CLMR_EINVAL for anything inet_pton does not accept as a whole (including
 * text with a NUL inside or longer than an address can be). Thread-safe. */
int clmr_ipnet_addr_parse(clmr_ipnet_addr_t *out, const char *s, size_t len);

/* The address of an AF_INET or AF_INET6 socket address (IPv4-mapped IPv6 becomes IPv4). Any other
 * family, or NULL, gives family 0 and CLMR_EINVAL. Thread-safe. */
int clmr_ipnet_addr_from_sockaddr(clmr_ipnet_addr_t *out, const struct sockaddr *sa);

/* Writes the canonical text of a into buf (cap >= CLMR_IPNET_ADDRSTRLEN); "unknown" for family 0.
 * Thread-safe. */
void clmr_ipnet_addr_format(const clmr_ipnet_addr_t *a, char *buf, size_t cap);

/* 1 when a and b are the same address, else 0. */
int clmr_ipnet_addr_equal(const clmr_ipnet_addr_t *a, const clmr_ipnet_addr_t *b);

/* Parses "ADDR" (a prefix of the full length) or "ADDR/BITS", exactly the len bytes at s. Bits
 * set after the prefix ("10.1.2.3/8") are an error rather than silently masked, since they are
 * usually a typo. Returns 0 or CLMR_EINVAL with *errmsg (optional) quoting the entry. */
int clmr_ipnet_prefix_parse(clmr_ipnet_prefix_t *out, const char *s, size_t len, char **errmsg);

/* 1 when a lies inside p, else 0 (always 0 across families). */
int clmr_ipnet_prefix_contains(const clmr_ipnet_prefix_t *p, const clmr_ipnet_addr_t *a);

/* Parses a comma-separated list of prefixes; spaces and tabs around entries are ignored. An empty
 * (or all-blank) text is the empty list. Empty entries ("a,,b", a trailing comma) and more than
 * CLMR_IPNET_LIST_MAX entries are errors. Returns 0 or CLMR_EINVAL with *errmsg (optional) naming
 * the first bad entry; *out is only written on success. Thread-safe. */
int clmr_ipnet_list_parse(clmr_ipnet_list_t *out, const char *text, char **errmsg);

/* 1 when a lies inside any prefix of l (NULL or empty list: 0). Thread-safe for a list that is
 * no longer being written. */
int clmr_ipnet_list_contains(const clmr_ipnet_list_t *l, const clmr_ipnet_addr_t *a);

#endif
