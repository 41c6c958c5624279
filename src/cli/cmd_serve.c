/* cmd_serve.c - `clmrd serve`: run the HTTP tagging service until SIGTERM/SIGINT.
 *
 * DESIGN: configuration comes from the one table in src/config (defaults < file < environment <
 * flags); a bad value stops start-up with exit status 2 and a message naming the key. SIGTERM and
 * SIGINT are blocked before any thread starts and collected with sigwait in the main thread, so
 * no signal handler runs inside libmicrohttpd, oneDNN or SQLite; the main thread then drains the
 * service and returns 0.
 */
#include "cli/cli.h"
#include "cli/model_path.h"
#include "clmr/error.h"
#include "config/config.h"
#include "http/server.h"
#include "train/precision.h"
#include "util/dirlock.h"
#include "util/log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int clmr_cli_serve(int argc, char **argv);

int clmr_cli_serve(int argc, char **argv)
{
    clmr_config_t cfg;
    int help = 0;
    char *msg = NULL;
    if (clmr_config_parse(&cfg, argc, argv, &help, &msg)) {
        fprintf(stderr, "clmrd serve: %s\n", msg ? msg : "bad configuration");
        free(msg);
        return 2;
    }
    if (help) {
        clmr_config_print_help(stdout);
        return 0;
    }
    clmr_log_level_t level;
    clmr_log_format_t format;
    clmr_log_level_parse(cfg.log_level, &level); /* validated by the table */
    clmr_log_format_parse(cfg.log_format, &format);
    clmr_log_configure(level, format);

    clmr_train_precision_t tprec;
    const char *tnote = NULL;
    clmr_train_precision_parse(cfg.train_precision, &tprec); /* validated by the table */
    if (clmr_train_precision_resolve(tprec, &tprec, &tnote, &msg)) {
        fprintf(stderr, "clmrd serve: configuration key 'train-precision': %s\n", msg);
        free(msg);
        return 2;
    }
    if (tnote) CLMR_LOG_WARN("train-precision: %s (fine-tuning jobs)", tnote);

    char model[CLMR_CONFIG_PATH_MAX];
    if (clmr_cli_resolve_model(cfg.model[0] ? cfg.model : NULL, model, sizeof model)) {
        fprintf(stderr, "clmrd serve: configuration key 'model': %s\n", model);
        return 2;
    }
    snprintf(cfg.model, sizeof cfg.model, "%s", model);
    if (cfg.admin_token_file[0]) {
        struct stat st;
        if (stat(cfg.admin_token_file, &st) != 0 || !S_ISREG(st.st_mode)) {
            fprintf(
                stderr,
                "clmrd serve: configuration key 'admin-token-file': '%s' is not a readable file\n",
                cfg.admin_token_file);
            return 2;
        }
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL); /* inherited by every thread started below */
    signal(SIGPIPE, SIG_IGN);

    /* Before anything opens the database: a second daemon on the same directory stops here. */
    int lock_fd = -1;
    int rc = clmr_dirlock_acquire(&lock_fd, cfg.data_dir, &msg);
    if (rc) {
        CLMR_LOG_ERROR("cannot start: %s", msg ? msg : clmr_strerror(rc));
        free(msg);
        return 1;
    }
    clmr_server_t *srv = NULL;
    rc = clmr_server_open(&srv, &cfg, &msg);
    if (rc) {
        CLMR_LOG_ERROR("cannot start: %s", msg ? msg : clmr_strerror(rc));
        free(msg);
        clmr_dirlock_release(&lock_fd);
        return 1;
    }
    CLMR_LOG_INFO("clmrd listening on %s (workers %d, queue %d, max upload %lld bytes)", cfg.listen,
                  cfg.workers, cfg.queue_depth, cfg.max_upload_bytes);
    int sig = 0;
    sigwait(&sigs, &sig);
    CLMR_LOG_INFO("%s: draining in-flight requests", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* shutdown-grace-s, aligned with the deploy files' grace periods (systemd TimeoutStopSec,
     * compose stop_grace_period, Kubernetes terminationGracePeriodSeconds are 40 s): the drain
     * ends in time for the job checkpoint and a clean exit before the SIGKILL. */
    int left = clmr_server_shutdown(&srv, cfg.shutdown_grace_s);
    CLMR_LOG_INFO("stopped (%d requests abandoned)", left);
    clmr_dirlock_release(&lock_fd);
    return left ? 1 : 0;
}
