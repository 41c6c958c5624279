/* labelled.c - progress-reporting embedding shared by fit-head and eval.
 *
 * DESIGN: progress goes to stderr and only when stderr is a terminal (a carriage-return line that
 * is overwritten), so logs and pipes get just the one-line summary, which tests read.
 */
#include "cli/labelled.h"

#include "clmr/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void progress_cb(void *ud, int i, int n, int from_cache)
{
    (void)ud;
    fprintf(stderr, "\rembedding %d/%d files%s", i + 1, n,
            from_cache ? " (cached)  " : "           ");
    if (i + 1 == n) fputc('\n', stderr);
}

int clmr_cli_embed_labelled(clmr_embed_set_t *set, const clmr_model_t *m, const clmr_labels_t *l,
                            const char *cache_dir, int threads, int quiet, const char *cmd)
{
    char *warn = NULL, *err = NULL;
    int tty = !quiet && isatty(STDERR_FILENO);
    int rc = clmr_embed_set_build(set, m, l, cache_dir, threads, tty ? progress_cb : NULL, NULL,
                                  &warn, &err);
    if (warn) fprintf(stderr, "clmrd %s: warning: %s\n", cmd, warn);
    free(warn);
    if (rc) {
        if (tty) fputc('\n', stderr);
        fprintf(stderr, "clmrd %s: %s (%s)\n", cmd, err ? err : clmr_strerror(rc),
                clmr_err_name(rc));
        free(err);
        return rc;
    }
    size_t chunks = 0;
    for (int i = 0; i < set->n_files; i++)
        chunks += (size_t)set->n_chunks[i];
    if (!quiet)
        fprintf(stderr, "%s: embedded %d files, %zu chunks (encoder runs %d, cache hits %d)\n", cmd,
                set->n_files, chunks, set->encoder_runs, set->cache_hits);
    return 0;
}
