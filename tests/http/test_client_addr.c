/* test_client_addr.c - the rightmost-untrusted X-Forwarded-For walk: who is trusted, forged
 * chains, several header lines, malformed and garbage headers, and the work bounds. */
#include "harness.h"
#include "http/client_addr.h"

#include <stdlib.h>
#include <string.h>

static clmr_ipnet_list_t trusted(const char *text)
{
    clmr_ipnet_list_t l;
    int rc = clmr_ipnet_list_parse(&l, text, NULL);
    CHECKF(rc == 0, "list %s", text);
    return l;
}

/* Resolves with header lines hdr[0..n) and returns the client's text; *src gets the source. */
static const char *resolve_n(const char *trust, const char *peer, const char *const *hdr, size_t n,
                             clmr_client_addr_source_t *src)
{
    static char out[CLMR_IPNET_ADDRSTRLEN];
    clmr_ipnet_list_t l = trusted(trust);
    clmr_ipnet_addr_t p, c;
    int rc = clmr_ipnet_addr_parse(&p, peer, strlen(peer));
    CHECKF(rc == 0, "peer %s", peer);
    size_t lens[64];
    for (size_t i = 0; i < n && i < 64; i++)
        lens[i] = hdr[i] ? strlen(hdr[i]) : 0;
    *src = clmr_client_addr_resolve(&c, &l, &p, hdr, lens, n);
    clmr_ipnet_addr_format(&c, out, sizeof out);
    return out;
}

static const char *resolve(const char *trust, const char *peer, const char *hdr,
                           clmr_client_addr_source_t *src)
{
    const char *lines[1] = {hdr};
    return resolve_n(trust, peer, lines, hdr ? 1 : 0, src);
}

#define EXPECT(trust, peer, hdr, want_addr, want_src)                                              \
    do {                                                                                           \
        clmr_client_addr_source_t got_src;                                                         \
        const char *got = resolve((trust), (peer), (hdr), &got_src);                               \
        CHECKF(strcmp(got, (want_addr)) == 0 && got_src == (want_src),                             \
               "trusted '%s' peer %s XFF '%.80s': got %s (source %d), want %s (source %d)",        \
               (trust), (peer), (hdr) ? (hdr) : "(none)", got, (int)got_src, (want_addr),          \
               (int)(want_src));                                                                   \
    } while (0)

#define PEER CLMR_CLIENT_FROM_PEER
#define HDR CLMR_CLIENT_FROM_HEADER
#define BAD CLMR_CLIENT_BAD_HEADER

static void test_untrusted_peer_ignores_header(void)
{
    /* nobody trusted (the default): the header never matters */
    EXPECT("", "127.0.0.1", "203.0.113.7", "127.0.0.1", PEER);
    EXPECT("", "127.0.0.1", NULL, "127.0.0.1", PEER);
    /* a peer outside the list cannot forge its address */
    EXPECT("127.0.0.1", "198.51.100.1", "203.0.113.7", "198.51.100.1", PEER);
    EXPECT("10.0.0.0/8", "2001:db8::1", "203.0.113.7", "2001:db8::1", PEER);
    /* ...not even with garbage: it is not read at all */
    EXPECT("127.0.0.1", "198.51.100.1", "\x01garbage", "198.51.100.1", PEER);
    /* a trusted peer without the header is the client */
    EXPECT("127.0.0.1", "127.0.0.1", NULL, "127.0.0.1", PEER);
}

static void test_trusted_peer_single_hop(void)
{
    EXPECT("127.0.0.1", "127.0.0.1", "203.0.113.7", "203.0.113.7", HDR);
    EXPECT("127.0.0.0/8", "127.0.0.1", "203.0.113.7", "203.0.113.7", HDR);
    EXPECT("127.0.0.0/8", "::ffff:127.0.0.1", "203.0.113.7", "203.0.113.7", HDR); /* mapped peer */
    EXPECT("::1", "::1", "2001:db8::42", "2001:db8::42", HDR);
    EXPECT("::1", "::1", "2001:DB8:0::42", "2001:db8::42", HDR); /* printed canonical */
    EXPECT("127.0.0.1", "127.0.0.1", " \t203.0.113.7\t ", "203.0.113.7", HDR);
    EXPECT("127.0.0.1", "127.0.0.1", "::ffff:203.0.113.7", "203.0.113.7", HDR);
}

static void test_rightmost_untrusted_walk(void)
{
    /* a forged left part is never read: the rightmost untrusted address wins */
    EXPECT("127.0.0.1", "127.0.0.1", "1.2.3.4, 203.0.113.9", "203.0.113.9", HDR);
    EXPECT("127.0.0.1", "127.0.0.1", "1.2.3.4,203.0.113.9", "203.0.113.9", HDR);
    /* trusted hops on the right are skipped */
    EXPECT("127.0.0.1,10.0.0.0/8", "127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.1.1, 10.2.2.2",
           "203.0.113.9", HDR);
    /* an untrusted hop between two trusted ones stops the walk there */
    EXPECT("127.0.0.1,10.0.0.0/8", "127.0.0.1", "10.9.9.9, 203.0.113.9, 10.1.1.1", "203.0.113.9",
           HDR);
    /* garbage left of the answer does not matter: it is never examined */
    EXPECT("127.0.0.1", "127.0.0.1", "unknown, [::1]:80, , 203.0.113.9", "203.0.113.9", HDR);
    /* every address is a trusted proxy: the leftmost one (as nginx's real_ip_recursive) */
    EXPECT("127.0.0.1,10.0.0.0/8", "127.0.0.1", "10.0.0.5, 10.0.0.6", "10.0.0.5", HDR);
    EXPECT("127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", HDR);
    /* mixed families */
    EXPECT("127.0.0.1,fd00::/8", "127.0.0.1", "2001:db8::5, fd00::1", "2001:db8::5", HDR);
}

static void test_malformed_falls_back_to_peer(void)
{
    const char *bad[] = {
        "",                        /* empty header */
        " ",                       /* blank */
        ",",                       /* empty entries */
        "203.0.113.7,",            /* trailing empty entry: the rightmost one */
        "203.0.113.7:4711",        /* a port */
        "[2001:db8::1]",           /* brackets */
        "[2001:db8::1]:443",       /* brackets and port */
        "unknown",                 /* RFC 7239 style obfuscation */
        "_hidden",                 /* RFC 7239 style obfuscation */
        "for=203.0.113.7",         /* a Forwarded header value in the wrong header */
        "203.0.113.7 1.2.3.4",     /* missing comma */
        "203.0.113.7;1.2.3.4",     /* wrong separator */
        "0x7f.0.0.1",              /* not dotted decimal */
        "127.1",                   /* short form */
        "203.0.113.07",            /* leading zero */
        "fe80::1%eth0",            /* zone id */
        "203.0.113.7\r\nX: y",     /* header injection attempt */
        "\xff\xfe\x00\x01",        /* binary */
        "' OR 1=1 --",             /* SQL-looking junk */
        "1.2.3.4, 203.0.113.9/24", /* a prefix is not an address */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        EXPECT("127.0.0.1", "127.0.0.1", bad[i], "127.0.0.1", BAD);
    /* a malformed trusted hop on the right stops the walk too */
    EXPECT("127.0.0.1,10.0.0.0/8", "127.0.0.1", "203.0.113.9, 10.0.0.1:80", "127.0.0.1", BAD);

    /* a NUL inside the value (the length says where it ends, not the NUL) */
    clmr_ipnet_list_t l = trusted("127.0.0.1");
    clmr_ipnet_addr_t p, c;
    clmr_ipnet_addr_parse(&p, "127.0.0.1", 9);
    const char v[] = "203.0.113.7\0junk";
    const char *vals[1] = {v};
    size_t lens[1] = {sizeof v - 1};
    CHECK(clmr_client_addr_resolve(&c, &l, &p, vals, lens, 1) == CLMR_CLIENT_BAD_HEADER);
    CHECK(clmr_ipnet_addr_equal(&c, &p));
    /* only len bytes are read (the value need not be NUL-terminated) */
    const char w[] = "203.0.113.7XXXX";
    vals[0] = w;
    lens[0] = 11;
    CHECK(clmr_client_addr_resolve(&c, &l, &p, vals, lens, 1) == CLMR_CLIENT_FROM_HEADER);
    char out[CLMR_IPNET_ADDRSTRLEN];
    clmr_ipnet_addr_format(&c, out, sizeof out);
    CHECK(strcmp(out, "203.0.113.7") == 0);
    /* a NULL value */
    vals[0] = NULL;
    lens[0] = 0;
    CHECK(clmr_client_addr_resolve(&c, &l, &p, vals, lens, 1) == CLMR_CLIENT_BAD_HEADER);
}

static void test_long_headers(void)
{
    clmr_client_addr_source_t src;
    /* a long forged prefix: only the right end is read, so the answer is still right */
    size_t big = 60000;
    char *h = malloc(big + 64);
    CHECK(h != NULL);
    if (!h) return;
    memset(h, 'A', big);
    strcpy(h + big, ", 203.0.113.9");
    CHECK(strcmp(resolve("127.0.0.1", "127.0.0.1", h, &src), "203.0.113.9") == 0 && src == HDR);
    /* the same garbage as the rightmost entry: malformed, the peer, and bounded work */
    memset(h, 'A', big);
    h[big] = 0;
    CHECK(strcmp(resolve("127.0.0.1", "127.0.0.1", h, &src), "127.0.0.1") == 0 && src == BAD);
    /* blanks padding an address past the byte budget */
    memset(h, ' ', big);
    strcpy(h + big, "203.0.113.9");
    CHECK(strcmp(resolve("127.0.0.1", "127.0.0.1", h, &src), "127.0.0.1") == 0 && src == BAD);
    /* ...but within it, blanks are fine */
    memset(h, ' ', 1000);
    strcpy(h + 1000, "203.0.113.9");
    CHECK(strcmp(resolve("127.0.0.1", "127.0.0.1", h, &src), "203.0.113.9") == 0 && src == HDR);
    /* many commas (all empty entries): malformed at the first */
    memset(h, ',', big);
    h[big] = 0;
    CHECK(strcmp(resolve("127.0.0.1", "127.0.0.1", h, &src), "127.0.0.1") == 0 && src == BAD);
    /* a chain of trusted hops: up to the hop limit it is walked, beyond it the peer is used */
    h[0] = 0;
    strcat(h, "203.0.113.9");
    for (int i = 0; i < CLMR_CLIENT_ADDR_MAX_HOPS - 1; i++)
        strcat(h, ", 10.0.0.1");
    CHECK(strcmp(resolve("127.0.0.1,10.0.0.0/8", "127.0.0.1", h, &src), "203.0.113.9") == 0 &&
          src == HDR);
    strcat(h, ", 10.0.0.1");
    CHECK(strcmp(resolve("127.0.0.1,10.0.0.0/8", "127.0.0.1", h, &src), "127.0.0.1") == 0 &&
          src == BAD);
    /* an over-long single entry */
    CHECK(strcmp(resolve("127.0.0.1", "127.0.0.1",
                         "2001:0db8:0000:0000:0000:0000:0000:0001:0001:0001", &src),
                 "127.0.0.1") == 0 &&
          src == BAD);
    free(h);
}

static void test_several_header_lines(void)
{
    /* libmicrohttpd keeps each header line; several X-Forwarded-For lines are one list in order */
    clmr_client_addr_source_t src;
    const char *two[] = {"1.2.3.4", "203.0.113.9"};
    CHECK(strcmp(resolve_n("127.0.0.1", "127.0.0.1", two, 2, &src), "203.0.113.9") == 0 &&
          src == HDR);
    const char *hops[] = {"1.2.3.4, 203.0.113.9", "10.0.0.1", "10.0.0.2, 10.0.0.3"};
    CHECK(strcmp(resolve_n("127.0.0.1,10.0.0.0/8", "127.0.0.1", hops, 3, &src), "203.0.113.9") ==
              0 &&
          src == HDR);
    const char *all_trusted[] = {"10.0.0.7", "10.0.0.1"};
    CHECK(strcmp(resolve_n("127.0.0.1,10.0.0.0/8", "127.0.0.1", all_trusted, 2, &src),
                 "10.0.0.7") == 0 &&
          src == HDR);
    /* an empty line in the middle is an empty entry on the walk */
    const char *gap[] = {"203.0.113.9", "", "10.0.0.1"};
    CHECK(strcmp(resolve_n("127.0.0.1,10.0.0.0/8", "127.0.0.1", gap, 3, &src), "127.0.0.1") == 0 &&
          src == BAD);
    /* a malformed line left of the answer is never read */
    const char *junk_left[] = {"junk", "203.0.113.9"};
    CHECK(strcmp(resolve_n("127.0.0.1", "127.0.0.1", junk_left, 2, &src), "203.0.113.9") == 0 &&
          src == HDR);
    /* too many lines */
    const char *many[CLMR_CLIENT_ADDR_MAX_HEADERS + 1];
    for (size_t i = 0; i < CLMR_CLIENT_ADDR_MAX_HEADERS + 1; i++)
        many[i] = "203.0.113.9";
    CHECK(strcmp(resolve_n("127.0.0.1", "127.0.0.1", many, CLMR_CLIENT_ADDR_MAX_HEADERS, &src),
                 "203.0.113.9") == 0 &&
          src == HDR);
    CHECK(strcmp(resolve_n("127.0.0.1", "127.0.0.1", many, CLMR_CLIENT_ADDR_MAX_HEADERS + 1, &src),
                 "127.0.0.1") == 0 &&
          src == BAD);
}

int main(void)
{
    RUN_TEST(test_untrusted_peer_ignores_header);
    RUN_TEST(test_trusted_peer_single_hop);
    RUN_TEST(test_rightmost_untrusted_walk);
    RUN_TEST(test_malformed_falls_back_to_peer);
    RUN_TEST(test_long_headers);
    RUN_TEST(test_several_header_lines);
    return TEST_END();
}
