/* ipnet.c - IPv4/IPv6 addresses and CIDR prefixes (see ipnet.h).
 *
 * DESIGN: every text is copied into a bounded stack buffer and handed to inet_pton whole; the
 * address family is chosen by the presence of ':'. Prefix lengths are parsed digit by digit (no
 * sign, no spaces, at most three digits) so "/+8", "/ 8" or "/008" are refused. Error messages
 * quote the offending entry cut to 64 bytes, since an entry may come from an environment variable
 * of any length.
 */
#include "util/ipnet.h"

#include "clmr/error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define ENTRY_QUOTE 64 /* bytes of a bad entry quoted in a message */

static const unsigned char v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

/* ::ffff:a.b.c.d -> a.b.c.d */
static void unmap(clmr_ipnet_addr_t *a)
{
    if (a->family == 6 && memcmp(a->bytes, v4_mapped, sizeof v4_mapped) == 0) {
        memmove(a->bytes, a->bytes + 12, 4);
        memset(a->bytes + 4, 0, 12);
        a->family = 4;
    }
}

/* inet_pton on exactly s[0..len) without unmapping; 0 or CLMR_EINVAL. */
static int parse_raw(clmr_ipnet_addr_t *out, const char *s, size_t len)
{
    char buf[CLMR_IPNET_ADDRSTRLEN];
    memset(out, 0, sizeof *out);
    if (len == 0 || len >= sizeof buf || memchr(s, '\0', len)) return CLMR_EINVAL;
    memcpy(buf, s, len);
    buf[len] = 0;
    if (memchr(buf, ':', len)) {
        if (inet_pton(AF_INET6, buf, out->bytes) != 1) return CLMR_EINVAL;
        out->family = 6;
    } else {
        if (inet_pton(AF_INET, buf, out->bytes) != 1) return CLMR_EINVAL;
        out->family = 4;
    }
    return 0;
}

int clmr_ipnet_addr_parse(clmr_ipnet_addr_t *out, const char *s, size_t len)
{
    int rc = parse_raw(out, s, len);
    if (rc) return rc;
    unmap(out);
    return 0;
}

int clmr_ipnet_addr_from_sockaddr(clmr_ipnet_addr_t *out, const struct sockaddr *sa)
{
    memset(out, 0, sizeof *out);
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memcpy(out->bytes, &in->sin_addr, 4);
        out->family = 4;
        return 0;
    }
    if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(out->bytes, &in6->sin6_addr, 16);
        out->family = 6;
        unmap(out);
        return 0;
    }
    return CLMR_EINVAL;
}

void clmr_ipnet_addr_format(const clmr_ipnet_addr_t *a, char *buf, size_t cap)
{
    if (!cap) return;
    int af = a->family == 4 ? AF_INET : a->family == 6 ? AF_INET6 : 0;
    if (!af || !inet_ntop(af, a->bytes, buf, (socklen_t)cap)) snprintf(buf, cap, "unknown");
}

int clmr_ipnet_addr_equal(const clmr_ipnet_addr_t *a, const clmr_ipnet_addr_t *b)
{
    return a->family == b->family && memcmp(a->bytes, b->bytes, sizeof a->bytes) == 0;
}

/* 1 when a and b agree on their first `bits` bits. */
static int same_bits(const unsigned char *a, const unsigned char *b, int bits)
{
    int whole = bits / 8, rest = bits % 8;
    if (memcmp(a, b, (size_t)whole) != 0) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff00 >> rest);
    return (a[whole] & mask) == (b[whole] & mask);
}

int clmr_ipnet_prefix_parse(clmr_ipnet_prefix_t *out, const char *s, size_t len, char **errmsg)
{
    int q = len > ENTRY_QUOTE ? ENTRY_QUOTE : (int)len;
    const char *more = len > ENTRY_QUOTE ? "..." : "";
    const char *slash = memchr(s, '/', len);
    size_t alen = slash ? (size_t)(slash - s) : len;
    clmr_ipnet_prefix_t p;
    memset(&p, 0, sizeof p);
    if (parse_raw(&p.addr, s, alen))
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "'%.*s%s' is not an IPv4 or IPv6 address or CIDR prefix (examples: "
                            "127.0.0.1, 10.0.0.0/8, ::1, fd00::/8)",
                            q, s, more);
    int max = p.addr.family == 4 ? 32 : 128;
    if (slash) {
        const char *d = slash + 1, *end = s + len;
        int bits = 0;
        if (d == end || end - d > 3 || (end - d > 1 && *d == '0')) bits = -1;
        for (; bits >= 0 && d < end; d++)
            bits = *d >= '0' && *d <= '9' ? bits * 10 + (*d - '0') : -1;
        if (bits < 0 || bits > max)
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "'%.*s%s': the prefix length after '/' must be a number from 0 to "
                                "%d for an IPv%d address",
                                q, s, more, max, p.addr.family);
        p.bits = bits;
    } else {
        p.bits = max;
    }
    if (p.bits < max) {
        /* the host part (bits p.bits..max) must be zero */
        clmr_ipnet_addr_t net = p.addr;
        int whole = p.bits / 8, rest = p.bits % 8;
        if (rest) net.bytes[whole++] &= (unsigned char)(0xff00 >> rest);
        memset(net.bytes + whole, 0, (size_t)(16 - whole));
        if (!clmr_ipnet_addr_equal(&net, &p.addr)) {
            char ntext[CLMR_IPNET_ADDRSTRLEN];
            clmr_ipnet_addr_format(&net, ntext, sizeof ntext);
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "'%.*s%s' has bits set after the /%d prefix; the network is %s/%d",
                                q, s, more, p.bits, ntext, p.bits);
        }
    }
    /* ::ffff:a.b.c.d/96+n is the IPv4 prefix a.b.c.d/n (IPv4 peers are matched as IPv4). */
    if (p.addr.family == 6 && p.bits >= 96 &&
        memcmp(p.addr.bytes, v4_mapped, sizeof v4_mapped) == 0) {
        unmap(&p.addr);
        p.bits -= 96;
    }
    *out = p;
    return 0;
}

int clmr_ipnet_prefix_contains(const clmr_ipnet_prefix_t *p, const clmr_ipnet_addr_t *a)
{
    return a->family != 0 && a->family == p->addr.family &&
           same_bits(a->bytes, p->addr.bytes, p->bits);
}

static int blank(char c)
{
    return c == ' ' || c == '\t';
}

int clmr_ipnet_list_parse(clmr_ipnet_list_t *out, const char *text, char **errmsg)
{
    static clmr_ipnet_list_t empty;
    const char *s = text ? text : "";
    size_t n = strlen(s);
    size_t i = 0;
    while (i < n && blank(s[i]))
        i++;
    if (i == n) {
        *out = empty;
        return 0;
    }
    clmr_ipnet_prefix_t got[CLMR_IPNET_LIST_MAX];
    int count = 0;
    for (size_t start = 0;;) {
        const char *comma = memchr(s + start, ',', n - start);
        size_t end = comma ? (size_t)(comma - s) : n;
        size_t a = start, b = end;
        while (a < b && blank(s[a]))
            a++;
        while (b > a && blank(s[b - 1]))
            b--;
        if (a == b)
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "empty entry in the list '%.*s%s' (entries are separated by single "
                                "commas)",
                                ENTRY_QUOTE, s, n > ENTRY_QUOTE ? "..." : "");
        if (count == CLMR_IPNET_LIST_MAX)
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "more than %d entries; use CIDR prefixes to cover ranges",
                                CLMR_IPNET_LIST_MAX);
        int rc = clmr_ipnet_prefix_parse(&got[count], s + a, b - a, errmsg);
        if (rc) return rc;
        count++;
        if (!comma) break;
        start = end + 1;
    }
    memcpy(out->prefix, got, (size_t)count * sizeof got[0]);
    out->n = count;
    return 0;
}

int clmr_ipnet_list_contains(const clmr_ipnet_list_t *l, const clmr_ipnet_addr_t *a)
{
    for (int i = 0; l && i < l->n; i++)
        if (clmr_ipnet_prefix_contains(&l->prefix[i], a)) return 1;
    return 0;
}
