/* stop_signal.c - the graceful stop of long CLI jobs (pretrain, fit-supervised), shared.
 *
 * The first SIGINT/SIGTERM only sets a flag the job polls between steps, so it can finish the step
 * in flight and write its checkpoint or best model; the handler then restores the default action,
 * so a second signal terminates at once (a user who presses Ctrl-C twice means it).
 */
#include "cli/cli.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    g_stop = sig;
    signal(sig, SIG_DFL);
}

void clmr_cli_catch_stop_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int clmr_cli_stop_requested(void)
{
    return g_stop != 0;
}
