/* labelled.h - pieces shared by `clmrd fit-head` and `clmrd eval`: strict option parsing and
 * embedding a labels file with progress on a terminal. */
#ifndef CLMR_CLI_LABELLED_H
#define CLMR_CLI_LABELLED_H

#include "clmr/model.h"
#include "train/embed_set.h"
#include "train/labels.h"

/* Strict parsers for option values: the whole string must be a number within [lo, hi]. On failure
 * they print "clmrd CMD: --OPT: ..." to stderr and return -1. */
int clmr_cli_parse_int(int *out, const char *s, long lo, long hi, const char *cmd, const char *opt);
int clmr_cli_parse_double(double *out, const char *s, double lo, double hi, const char *cmd,
                          const char *opt);

/* Embeds every labelled file (clmr_embed_set_build) with a progress line on stderr when it is a
 * terminal, and a summary line "CMD: embedded N files, C chunks (encoder runs X, cache hits Y)"
 * unless quiet. Prints any error or cache warning prefixed with "clmrd CMD: ". Returns 0 or the
 * error code. */
int clmr_cli_embed_labelled(clmr_embed_set_t *set, const clmr_model_t *m, const clmr_labels_t *l,
                            const char *cache_dir, int threads, int quiet, const char *cmd);

#endif
