/* test_ipnet.c - addresses and CIDR prefixes: parsing, canonical text, matching at the edges,
 * IPv4-mapped peers, list syntax and the messages that name a bad entry. */
#include "harness.h"
#include "util/ipnet.h"

#include "clmr/error.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

static clmr_ipnet_addr_t addr(const char *s)
{
    clmr_ipnet_addr_t a;
    int rc = clmr_ipnet_addr_parse(&a, s, strlen(s));
    CHECKF(rc == 0, "address %s rejected", s);
    return a;
}

static int parses(const char *s)
{
    clmr_ipnet_addr_t a;
    return clmr_ipnet_addr_parse(&a, s, strlen(s)) == 0;
}

static int in_list(const char *list, const char *a)
{
    clmr_ipnet_list_t l;
    char *msg = NULL;
    int rc = clmr_ipnet_list_parse(&l, list, &msg);
    CHECKF(rc == 0, "list '%s' rejected: %s", list, msg ? msg : "");
    free(msg);
    clmr_ipnet_addr_t x = addr(a);
    return rc == 0 && clmr_ipnet_list_contains(&l, &x);
}

/* The error message for a list, or NULL when it was accepted (caller frees). */
static char *list_error(const char *list)
{
    clmr_ipnet_list_t l;
    char *msg = NULL;
    if (clmr_ipnet_list_parse(&l, list, &msg) == 0) {
        free(msg);
        return NULL;
    }
    return msg ? msg : strdup("(no message)");
}

static void test_addr_parse_and_format(void)
{
    struct {
        const char *in, *canonical;
        int family;
    } ok[] = {
        {"127.0.0.1", "127.0.0.1", 4},
        {"0.0.0.0", "0.0.0.0", 4},
        {"255.255.255.255", "255.255.255.255", 4},
        {"::1", "::1", 6},
        {"2001:DB8:0:0:0:0:0:1", "2001:db8::1", 6},
        {"fe80::1:2", "fe80::1:2", 6},
        {"::ffff:127.0.0.1", "127.0.0.1", 4}, /* mapped: stored as IPv4 */
        {"::FFFF:7f00:1", "127.0.0.1", 4},
        {"::127.0.0.1", "::127.0.0.1", 6}, /* compatible (not mapped) stays IPv6 */
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        clmr_ipnet_addr_t a = addr(ok[i].in);
        char buf[CLMR_IPNET_ADDRSTRLEN];
        clmr_ipnet_addr_format(&a, buf, sizeof buf);
        CHECKF(a.family == ok[i].family && strcmp(buf, ok[i].canonical) == 0, "%s -> %s (v%d)",
               ok[i].in, buf, a.family);
    }
    const char *bad[] = {"",
                         " 127.0.0.1",
                         "127.0.0.1 ",
                         "127.0.0.1:80",
                         "[::1]",
                         "[::1]:80",
                         "fe80::1%eth0",
                         "127.1",
                         "127.0.0.256",
                         "127.0.0.01",
                         "0x7f.0.0.1",
                         "1.2.3.4.5",
                         "unknown",
                         "_hidden",
                         "localhost",
                         "::1::2",
                         "12345::",
                         "127.0.0.1/32", /* a prefix is not an address */
                         "1:2:3:4:5:6:7:8:9",
                         "1111:2222:3333:4444:5555:6666:255.255.255.255x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECKF(!parses(bad[i]), "'%s' accepted", bad[i]);
    /* the length is explicit: a NUL inside, or bytes past len, are not read as a shorter text */
    clmr_ipnet_addr_t a;
    CHECK(clmr_ipnet_addr_parse(&a, "1.2.3.4\0junk", 12) == CLMR_EINVAL);
    CHECK(clmr_ipnet_addr_parse(&a, "1.2.3.45", 7) == 0);
    char buf[CLMR_IPNET_ADDRSTRLEN];
    clmr_ipnet_addr_format(&a, buf, sizeof buf);
    CHECK(strcmp(buf, "1.2.3.4") == 0);
    /* over-long text (longer than any address) */
    char longtxt[200];
    memset(longtxt, '1', sizeof longtxt - 1);
    longtxt[sizeof longtxt - 1] = 0;
    CHECK(!parses(longtxt));
    /* unknown family formats as "unknown" */
    clmr_ipnet_addr_t none = {0};
    clmr_ipnet_addr_format(&none, buf, sizeof buf);
    CHECK(strcmp(buf, "unknown") == 0);
}

static void test_from_sockaddr(void)
{
    char buf[CLMR_IPNET_ADDRSTRLEN];
    struct sockaddr_in in = {.sin_family = AF_INET};
    inet_pton(AF_INET, "192.0.2.9", &in.sin_addr);
    clmr_ipnet_addr_t a;
    CHECK(clmr_ipnet_addr_from_sockaddr(&a, (struct sockaddr *)&in) == 0 && a.family == 4);
    clmr_ipnet_addr_format(&a, buf, sizeof buf);
    CHECK(strcmp(buf, "192.0.2.9") == 0);

    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:127.0.0.1", &in6.sin6_addr); /* a dual-stack socket's IPv4 peer */
    CHECK(clmr_ipnet_addr_from_sockaddr(&a, (struct sockaddr *)&in6) == 0 && a.family == 4);
    clmr_ipnet_addr_format(&a, buf, sizeof buf);
    CHECK(strcmp(buf, "127.0.0.1") == 0);
    clmr_ipnet_list_t l;
    CHECK(clmr_ipnet_list_parse(&l, "127.0.0.0/8", NULL) == 0);
    CHECK(clmr_ipnet_list_contains(&l, &a));

    inet_pton(AF_INET6, "2001:db8::7", &in6.sin6_addr);
    CHECK(clmr_ipnet_addr_from_sockaddr(&a, (struct sockaddr *)&in6) == 0 && a.family == 6);
    clmr_ipnet_addr_format(&a, buf, sizeof buf);
    CHECK(strcmp(buf, "2001:db8::7") == 0);

    struct sockaddr_un un = {.sun_family = AF_UNIX};
    CHECK(clmr_ipnet_addr_from_sockaddr(&a, (struct sockaddr *)&un) == CLMR_EINVAL);
    CHECK(a.family == 0 && !clmr_ipnet_list_contains(&l, &a));
    CHECK(clmr_ipnet_addr_from_sockaddr(&a, NULL) == CLMR_EINVAL && a.family == 0);
}

static void test_prefix_edges_v4(void)
{
    /* /0 matches every IPv4 address and no IPv6 one */
    CHECK(in_list("0.0.0.0/0", "0.0.0.0"));
    CHECK(in_list("0.0.0.0/0", "255.255.255.255"));
    CHECK(!in_list("0.0.0.0/0", "::1"));
    /* /32 and a bare address: exactly one */
    CHECK(in_list("192.0.2.1/32", "192.0.2.1"));
    CHECK(!in_list("192.0.2.1/32", "192.0.2.0"));
    CHECK(!in_list("192.0.2.1/32", "192.0.2.2"));
    CHECK(in_list("192.0.2.1", "192.0.2.1") && !in_list("192.0.2.1", "192.0.2.3"));
    /* /8 */
    CHECK(in_list("127.0.0.0/8", "127.255.255.255") && in_list("127.0.0.0/8", "127.0.0.1"));
    CHECK(!in_list("127.0.0.0/8", "128.0.0.0") && !in_list("127.0.0.0/8", "126.255.255.255"));
    /* prefixes that do not end on an octet */
    CHECK(in_list("172.16.0.0/12", "172.16.0.0") && in_list("172.16.0.0/12", "172.31.255.255"));
    CHECK(!in_list("172.16.0.0/12", "172.32.0.0") && !in_list("172.16.0.0/12", "172.15.255.255"));
    CHECK(in_list("10.0.0.128/25", "10.0.0.255") && !in_list("10.0.0.128/25", "10.0.0.127"));
    CHECK(in_list("192.0.2.4/30", "192.0.2.7") && !in_list("192.0.2.4/30", "192.0.2.8"));
    CHECK(in_list("128.0.0.0/1", "200.1.1.1") && !in_list("128.0.0.0/1", "127.255.255.255"));
    CHECK(in_list("192.0.2.2/31", "192.0.2.3") && !in_list("192.0.2.2/31", "192.0.2.1"));
    /* an IPv4-mapped IPv6 peer matches IPv4 prefixes; a mapped prefix is an IPv4 prefix */
    CHECK(in_list("127.0.0.0/8", "::ffff:127.0.0.1"));
    CHECK(in_list("::ffff:127.0.0.1", "127.0.0.1"));
    CHECK(in_list("::ffff:10.0.0.0/104", "10.9.8.7") &&
          !in_list("::ffff:10.0.0.0/104", "11.0.0.1"));
}

static void test_prefix_edges_v6(void)
{
    CHECK(in_list("::/0", "::") && in_list("::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
    CHECK(!in_list("::/0", "127.0.0.1")); /* families never mix */
    CHECK(!in_list("::/0", "::ffff:127.0.0.1"));
    CHECK(in_list("::1/128", "::1") && !in_list("::1/128", "::2") && !in_list("::1/128", "::"));
    CHECK(in_list("::1", "::1") && !in_list("::1", "127.0.0.1"));
    CHECK(in_list("2001:db8::/32", "2001:db8:ffff::1") && !in_list("2001:db8::/32", "2001:db9::"));
    CHECK(in_list("fd00::/8", "fdff::1") && !in_list("fd00::/8", "fe00::"));
    CHECK(in_list("fc00::/7", "fd12::1") && in_list("fc00::/7", "fc00::") &&
          !in_list("fc00::/7", "fe00::1"));
    CHECK(in_list("2001:db8::80/121", "2001:db8::ff") &&
          !in_list("2001:db8::80/121", "2001:db8::7f"));
    CHECK(in_list("2001:db8::/127", "2001:db8::1") && !in_list("2001:db8::/127", "2001:db8::2"));
    CHECK(in_list("8000::/1", "ffff::") && !in_list("8000::/1", "7fff::"));
}

static void test_list_syntax(void)
{
    clmr_ipnet_list_t l;
    CHECK(clmr_ipnet_list_parse(&l, "", NULL) == 0 && l.n == 0);
    CHECK(clmr_ipnet_list_parse(&l, "  \t ", NULL) == 0 && l.n == 0);
    CHECK(clmr_ipnet_list_parse(&l, NULL, NULL) == 0 && l.n == 0);
    clmr_ipnet_addr_t lo = addr("127.0.0.1");
    CHECK(!clmr_ipnet_list_contains(&l, &lo)); /* empty list trusts nobody */
    CHECK(!clmr_ipnet_list_contains(NULL, &lo));
    CHECK(clmr_ipnet_list_parse(&l, " 127.0.0.1 ,\t::1,10.0.0.0/8 ", NULL) == 0 && l.n == 3);
    CHECK(l.prefix[0].bits == 32 && l.prefix[1].bits == 128 && l.prefix[2].bits == 8);

    /* every bad entry is named in the message */
    struct {
        const char *list, *must_contain;
    } bad[] = {
        {"localhost", "'localhost' is not an IPv4 or IPv6 address"},
        {"127.0.0.1,nginx", "'nginx'"},
        {"127.0.0.1,,::1", "empty entry"},
        {"127.0.0.1,", "empty entry"},
        {",127.0.0.1", "empty entry"},
        {"10.0.0.0/33", "'10.0.0.0/33': the prefix length after '/' must be a number from 0 to 32"},
        {"::/129", "from 0 to 128"},
        {"10.0.0.0/", "'10.0.0.0/'"},
        {"10.0.0.0/-1", "'10.0.0.0/-1'"},
        {"10.0.0.0/+8", "'10.0.0.0/+8'"},
        {"10.0.0.0/08", "'10.0.0.0/08'"},
        {"10.0.0.0/8x", "'10.0.0.0/8x'"},
        {"10.0.0.0/ 8", "'10.0.0.0/ 8'"},
        {"10.0.0.0/1000", "'10.0.0.0/1000'"},
        {"10.1.2.3/8", "the network is 10.0.0.0/8"},
        {"192.168.1.1/24", "the network is 192.168.1.0/24"},
        {"2001:db8::1/32", "the network is 2001:db8::/32"},
        {"127.0.0.1:8080", "'127.0.0.1:8080'"},
        {"[::1]", "'[::1]'"},
        {"127.0.0.1;::1", "'127.0.0.1;::1'"},
        {"127.0.0.1 ::1", "'127.0.0.1 ::1'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *msg = list_error(bad[i].list);
        CHECKF(msg && strstr(msg, bad[i].must_contain), "'%s': %s", bad[i].list,
               msg ? msg : "(accepted)");
        free(msg);
    }
    /* a failed parse leaves the output alone */
    CHECK(clmr_ipnet_list_parse(&l, "::1", NULL) == 0 && l.n == 1);
    CHECK(clmr_ipnet_list_parse(&l, "1.2.3.4,bad", NULL) == CLMR_EINVAL && l.n == 1);
    /* a long bad entry is quoted only in part */
    char longv[600];
    memset(longv, 'z', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    char *msg = list_error(longv);
    CHECK(msg && strlen(msg) < 200 && strstr(msg, "zzz..."));
    free(msg);
    /* the size limit */
    char many[CLMR_IPNET_LIST_MAX * 16 + 16] = "";
    for (int i = 0; i <= CLMR_IPNET_LIST_MAX; i++) {
        char one[16];
        snprintf(one, sizeof one, "%s10.0.%d.1", i ? "," : "", i);
        strcat(many, one);
    }
    msg = list_error(many);
    CHECK(msg && strstr(msg, "more than 64 entries"));
    free(msg);
    *strrchr(many, ',') = 0; /* exactly the maximum */
    CHECK(clmr_ipnet_list_parse(&l, many, NULL) == 0 && l.n == CLMR_IPNET_LIST_MAX);
}

int main(void)
{
    RUN_TEST(test_addr_parse_and_format);
    RUN_TEST(test_from_sockaddr);
    RUN_TEST(test_prefix_edges_v4);
    RUN_TEST(test_prefix_edges_v6);
    RUN_TEST(test_list_syntax);
    return TEST_END();
}
