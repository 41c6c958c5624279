/* labels.h - labelled audio lists for fit-head and eval: JSON lines {"path": ..., "tags": [...]}.
 *
 * DESIGN: one object per line so an error can name its line. Paths are relative to the labels
 * file's folder (absolute paths are kept). Tags are checked against a vocabulary (the model's tag
 * list, or a --tags file for a new head); an unknown tag is an error naming the line and the tag,
 * because a typo silently becoming a new, all-negative column would corrupt the metrics. Only
 * when no vocabulary is given does the list grow one, in order of first appearance.
 */
#ifndef CLMR_TRAIN_LABELS_H
#define CLMR_TRAIN_LABELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int n_items;
    char **paths; /* (n_items) resolved paths, owned */
    int *lines;   /* (n_items) 1-based line numbers in the labels file */
    int n_vocab;
    char **vocab;    /* (n_vocab) tag names, owned */
    uint8_t *y;      /* (n_items, n_vocab) 1 where the item carries the tag */
    char sha256[65]; /* of the labels file bytes, hex */
} clmr_labels_t;

/* Reads the labels file at path into *out. vocab (n_vocab names, copied) fixes the tag list and
 * makes any other tag an error; vocab == NULL builds the list from the file. Blank lines are
 * skipped. Returns 0, CLMR_EIO (unreadable), CLMR_EINVAL (bad JSON, missing/ill-typed "path" or
 * "tags", unknown tag, no items; *errmsg names the file and line) or CLMR_ENOMEM; *out is zeroed
 * on failure. Thread-safe. */
int clmr_labels_load(clmr_labels_t *out, const char *path, const char *const *vocab, int n_vocab,
                     char **errmsg);

/* Reads a vocabulary file: one tag per line (surrounding spaces trimmed; blank lines and lines
 * starting with '#' skipped), names unique. *tags (n strings) is owned by the caller: free with
 * clmr_labels_free_vocab. Returns 0, CLMR_EIO, CLMR_EINVAL (empty, duplicate) or CLMR_ENOMEM. */
int clmr_labels_read_vocab(char ***tags, int *n, const char *path, char **errmsg);
void clmr_labels_free_vocab(char **tags, int n);

/* Frees out's arrays; accepts a zeroed struct. */
void clmr_labels_free(clmr_labels_t *out);

/* Hex sha256 of n bytes (out: 65 chars). Returns 0 or CLMR_ENOMEM. Thread-safe. */
int clmr__sha256_hex(char out[65], const void *data, size_t n);

/* Reads a whole file into a malloc'd buffer (*size bytes, one extra NUL after them). Refuses files
 * larger than max_bytes. Returns 0, CLMR_EIO (unreadable, too large) or CLMR_ENOMEM. */
int clmr__read_file(char **data, size_t *size, const char *path, size_t max_bytes, char **errmsg);

#endif
