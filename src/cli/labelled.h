/* labelled.h - pieces shared by `clmrd fit-head` and `clmrd eval`: embedding a labels file with
 * progress on a terminal. */
#ifndef CLMR_CLI_LABELLED_H
#define CLMR_CLI_LABELLED_H

#include "cli/cli.h"
#include "clmr/model.h"
#include "train/embed_set.h"
#include "train/labels.h"

/* Embeds every labelled file (clmr_embed_set_build) with a progress line on stderr when it is a
 * terminal, and a summary line "CMD: embedded N files, C chunks (encoder runs X, cache hits Y)"
 * unless quiet. Prints any error or cache warning prefixed with "clmrd CMD: ". Returns 0 or the
 * error code. */
int clmr_cli_embed_labelled(clmr_embed_set_t *set, const clmr_model_t *m, const clmr_labels_t *l,
                            const char *cache_dir, int threads, int quiet, const char *cmd);

#endif
