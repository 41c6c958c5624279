/* cli.h - the clmrd sub-commands. Each returns the process exit status. */
#ifndef CLMR_CLI_H
#define CLMR_CLI_H

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;
} clmr_cli_command_t;

/* The command table, terminated by a {NULL} entry (src/cli/commands.c). */
extern const clmr_cli_command_t clmr_cli_commands[];

/* Strict parsers for option values: the whole string must be a number within [lo, hi]. On failure
 * they print "clmrd CMD: OPT: expected ..." to stderr and return -1 (src/cli/options.c). */
/* SIGINT/SIGTERM set a flag (polled with clmr_cli_stop_requested) instead of killing; a second
 * signal kills (stop_signal.c). */
void clmr_cli_catch_stop_signals(void);
int clmr_cli_stop_requested(void);

int clmr_cli_parse_int(int *out, const char *s, long lo, long hi, const char *cmd, const char *opt);
int clmr_cli_parse_double(double *out, const char *s, double lo, double hi, const char *cmd,
                          const char *opt);

/* The one format of bad-option messages: "clmrd CMD: --opt: unknown option (see 'clmrd CMD
 * --help')" or "...: needs a value ...". For the default case of a getopt_long loop run with
 * opterr = 0 and an option string starting with ':'; c is what getopt_long returned. Returns 2
 * (the usage-error exit status). */
int clmr_cli_bad_option(const char *cmd, char **argv, int c);
/* Prints "clmrd CMD: <message> (see 'clmrd CMD --help')" to stderr. */
void clmr_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
