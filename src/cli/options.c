/* options.c - strict parsers for numeric option values, shared by every sub-command. */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int clmr_cli_parse_int(int *out, const char *s, long lo, long hi, const char *cmd, const char *opt)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "clmrd %s: %s: expected an integer in [%ld, %ld], got '%s'\n", cmd, opt, lo,
                hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int clmr_cli_parse_double(double *out, const char *s, double lo, double hi, const char *cmd,
                          const char *opt)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        fprintf(stderr, "clmrd %s: %s: expected a number in [%g, %g], got '%s'\n", cmd, opt, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

int clmr_cli_bad_option(const char *cmd, char **argv, int c)
{
    /* getopt_long with opterr = 0 and ':' leading the option string: ':' is a missing value, '?'
     * an unknown option; either way the offending word is the one just consumed. */
    const char *word = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':')
        fprintf(stderr, "clmrd %s: %s: needs a value (see 'clmrd %s --help')\n", cmd, word, cmd);
    else if (optopt && optopt < 256 && word[0] == '-' && word[1] != '-')
        fprintf(stderr, "clmrd %s: -%c: unknown option (see 'clmrd %s --help')\n", cmd, optopt,
                cmd);
    else
        fprintf(stderr, "clmrd %s: %s: unknown option (see 'clmrd %s --help')\n", cmd, word, cmd);
    return 2;
}

void clmr_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "clmrd %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'clmrd %s --help')\n", cmd);
}
