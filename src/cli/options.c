/* options.c - strict parsers for numeric option values, shared by every sub-command. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
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
