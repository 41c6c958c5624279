/* test_log.c - one log call is one line in both formats: control characters from client text
 * (a decoded URL path with %0A, an escape sequence) are escaped, never written raw. stderr is
 * redirected to a temporary file and read back. */
#include "harness.h"
#include "util/log.h"

#include <string.h>
#include <unistd.h>

static char captured[8192];

/* Runs one log call with stderr sent to a temp file; the text lands in captured. */
static void capture(clmr_log_format_t format, const char *path)
{
    char tmpl[] = "/tmp/clmr-test-log-XXXXXX";
    int fd = mkstemp(tmpl);
    CHECK(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    clmr_log_configure(CLMR_LOG_LEVEL_INFO, format);
    CLMR_RLOG_INFO("rid-1", "GET %s -> 404", path);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    ssize_t n = pread(fd, captured, sizeof captured - 1, 0);
    captured[n > 0 ? n : 0] = 0;
    close(fd);
    unlink(tmpl);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_text_escapes_control_characters(void)
{
    const char *evil =
        "/v1/x\n2026-01-01T00:00:00.000Z error [forged] admin: token leaked\r\t\x1b[2J";
    capture(CLMR_LOG_TEXT, evil);
    printf("# %s", captured);
    CHECKF(count_lines(captured) == 1, "%d lines", count_lines(captured));
    CHECK(strstr(captured, "/v1/x\\n2026-01-01") != NULL);
    CHECK(strstr(captured, "\\r\\t\\x1b[2J -> 404") != NULL);
    CHECK(strchr(captured, '\r') == NULL && strchr(captured, '\x1b') == NULL);
    CHECK(strchr(captured, '\t') == NULL);
}

static void test_json_is_one_line_too(void)
{
    capture(CLMR_LOG_JSON, "/a\nb\x01");
    CHECKF(count_lines(captured) == 1, "%d lines", count_lines(captured));
    CHECK(strstr(captured, "/a\\nb\\u0001") != NULL);
}

int main(void)
{
    RUN_TEST(test_text_escapes_control_characters);
    RUN_TEST(test_json_is_one_line_too);
    return TEST_END();
}
