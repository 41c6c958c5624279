/* test_config.c - the configuration table: defaults, precedence, validation messages. */
#include "harness.h"
#include "config/config.h"

#include "clmr/error.h"

#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

static void test_defaults_valid(void)
{
    /* Every default in the table must pass its own validation. */
    clmr_config_t c;
    memset(&c, 0, sizeof c);
    for (const clmr_config_key_t *k = clmr_config_keys; k->name; k++) {
        char *msg = NULL;
        int rc = clmr_config_set(&c, k->name, k->def, "test", &msg);
        CHECKF(rc == 0, "default of %s rejected: %s", k->name, msg ? msg : "");
        free(msg);
        CHECKF(strncmp(k->env, "CLMRD_", 6) == 0, "env var of %s", k->name);
    }
    clmr_config_defaults(&c);
    CHECK(strcmp(c.listen_host, "127.0.0.1") == 0 && c.listen_port == 8080);
    CHECK(c.max_upload_bytes == 100LL << 20);
    CHECK_NEAR(c.max_duration_s, 900, 0);
    CHECK(c.connection_memory_limit == 65536);
}

static void test_validation_messages(void)
{
    clmr_config_t c;
    clmr_config_defaults(&c);
    char *msg = NULL;
    CHECK(clmr_config_set(&c, "workers", "0", "--workers", &msg) == CLMR_EINVAL);
    CHECK(msg && strstr(msg, "workers") && strstr(msg, "1 to 64") && strstr(msg, "--workers"));
    CHECK(clmr_config_set(&c, "workers", "3x", "f", NULL) == CLMR_EINVAL);
    CHECK(clmr_config_set(&c, "max-duration-s", "nan", "f", NULL) == CLMR_EINVAL);
    CHECK(clmr_config_set(&c, "log-format", "xml", "f", &msg) == CLMR_EINVAL);
    CHECK(msg && strstr(msg, "text|json"));
    CHECK(clmr_config_set(&c, "listen", "localhost", "f", NULL) == CLMR_EINVAL);
    CHECK(clmr_config_set(&c, "listen", "1.2.3.4:0", "f", NULL) == CLMR_EINVAL);
    CHECK(clmr_config_set(&c, "listen", "[::1]:9000", "f", NULL) == 0);
    CHECK(strcmp(c.listen_host, "::1") == 0 && c.listen_port == 9000);
    CHECK(clmr_config_set(&c, "max-upload-bytes", "2MiB", "f", NULL) == 0);
    CHECK(c.max_upload_bytes == 2 << 20);
    CHECK(clmr_config_set(&c, "max-upload-bytes", "9999999999999G", "f", NULL) == CLMR_EINVAL);
    CHECK(clmr_config_set(&c, "no-such-key", "1", "f", &msg) == CLMR_EINVAL);
    CHECK(msg && strstr(msg, "no-such-key"));
    free(msg);
}

static void test_precedence(void)
{
    char path[] = "/tmp/clmr-config-test-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    const char *text = "# comment\nworkers = 3\nqueue-depth=7\nlog-level = \"debug\"\n\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    setenv("CLMRD_QUEUE_DEPTH", "9", 1);
    setenv("CLMRD_CONNECTION_LIMIT", "11", 1);
    char *argv[] = {"serve", "--config",           path, "--connection-limit",
                    "12",    "--listen=0.0.0.0:1", NULL};
    clmr_config_t c;
    int help = -1;
    char *msg = NULL;
    int rc = clmr_config_parse(&c, 6, argv, &help, &msg);
    CHECKF(rc == 0, "%s", msg ? msg : "");
    CHECK(help == 0);
    CHECK(c.workers == 3);           /* file over default */
    CHECK(c.queue_depth == 9);       /* env over file */
    CHECK(c.connection_limit == 12); /* flag over env */
    CHECK(strcmp(c.log_level, "debug") == 0);
    CHECK(c.listen_port == 1);
    CHECK(strcmp(c.config_file, path) == 0);
    unsetenv("CLMRD_QUEUE_DEPTH");
    unsetenv("CLMRD_CONNECTION_LIMIT");

    /* A bad line in the file names the file, line and key. */
    fd = open(path, O_WRONLY | O_TRUNC);
    const char *badtext = "workers = 2\nworkers = 100\n";
    CHECK(write(fd, badtext, strlen(badtext)) == (ssize_t)strlen(badtext));
    close(fd);
    rc = clmr_config_parse(&c, 3, argv, &help, &msg);
    CHECK(rc == CLMR_EINVAL);
    CHECK(msg && strstr(msg, ":2") && strstr(msg, "workers"));
    unlink(path);
    char *argv2[] = {"serve", "--workers", NULL};
    CHECK(clmr_config_parse(&c, 2, argv2, &help, &msg) == CLMR_EINVAL);
    char *argv3[] = {"serve", "--help", NULL};
    CHECK(clmr_config_parse(&c, 2, argv3, &help, &msg) == 0 && help == 1);
    char *argv4[] = {"serve", "--config", "/nonexistent/clmrd.conf", NULL};
    CHECK(clmr_config_parse(&c, 3, argv4, &help, &msg) == CLMR_EIO);
    free(msg);
}

static void test_trusted_proxies(void)
{
    clmr_config_t c;
    clmr_config_defaults(&c);
    CHECK(c.trusted_proxies[0] == 0); /* default: trust nobody */
    char *msg = NULL;
    CHECK(clmr_config_set(&c, "trusted-proxies", "127.0.0.1, ::1,10.0.0.0/8", "f", &msg) == 0);
    CHECK(strcmp(c.trusted_proxies, "127.0.0.1, ::1,10.0.0.0/8") == 0);
    /* a bad entry is named, with the key and where it came from; the old value stays */
    CHECK(clmr_config_set(&c, "trusted-proxies", "127.0.0.1,nginx", "CLMRD_TRUSTED_PROXIES",
                          &msg) == CLMR_EINVAL);
    CHECKF(msg && strstr(msg, "'trusted-proxies'") && strstr(msg, "CLMRD_TRUSTED_PROXIES") &&
               strstr(msg, "'nginx'"),
           "%s", msg ? msg : "");
    CHECK(strcmp(c.trusted_proxies, "127.0.0.1, ::1,10.0.0.0/8") == 0);
    CHECK(clmr_config_set(&c, "trusted-proxies", "10.0.0.0/33", "--trusted-proxies", &msg) ==
          CLMR_EINVAL);
    CHECK(msg && strstr(msg, "'10.0.0.0/33'") && strstr(msg, "--trusted-proxies"));
    CHECK(clmr_config_set(&c, "trusted-proxies", "10.1.0.0/8", "f", &msg) == CLMR_EINVAL);
    CHECK(msg && strstr(msg, "10.0.0.0/8"));
    CHECK(clmr_config_set(&c, "trusted-proxies", "1.2.3.4,", "f", NULL) == CLMR_EINVAL);
    char longv[2000];
    memset(longv, 'x', sizeof longv - 1);
    longv[sizeof longv - 1] = 0;
    CHECK(clmr_config_set(&c, "trusted-proxies", longv, "f", &msg) == CLMR_EINVAL);
    CHECK(msg && strstr(msg, "trusted-proxies") && strlen(msg) < 400);
    CHECK(clmr_config_set(&c, "trusted-proxies", "", "f", NULL) == 0 && !c.trusted_proxies[0]);
    free(msg);
}

/* A secret that fails validation is never echoed (the message reaches terminals and logs). */
static void test_secret_not_echoed(void)
{
    clmr_config_t c;
    clmr_config_defaults(&c);
    char *msg = NULL;
    char longv[400];
    memset(longv, 'k', sizeof longv - 1);
    memcpy(longv, "TOPSECRET", 9);
    longv[sizeof longv - 1] = 0;
    CHECK(clmr_config_set(&c, "admin-token", longv, "CLMRD_ADMIN_TOKEN", &msg) == CLMR_EINVAL);
    printf("# %s\n", msg ? msg : "");
    CHECK(msg && !strstr(msg, "TOPSECRET") && strstr(msg, "(hidden)") &&
          strstr(msg, "admin-token"));
    free(msg);
}

int main(void)
{
    RUN_TEST(test_defaults_valid);
    RUN_TEST(test_validation_messages);
    RUN_TEST(test_precedence);
    RUN_TEST(test_trusted_proxies);
    RUN_TEST(test_secret_not_echoed);
    return TEST_END();
}
