/* zipread.h - a bounded, read-only zip reader over a buffer in memory (private to src/nn).
 *
 * DESIGN: PyTorch checkpoints (since 1.6) are zip archives with stored entries, and the CLMR
 * release downloads are zip files (deflate) that wrap such a checkpoint. Both are untrusted input,
 * so the reader trusts no field: the central directory is found from the end-of-central-directory
 * record, every offset and size is checked against the buffer before use, local headers must agree
 * with the central directory (name, method, sizes), and an entry's CRC-32 is verified before its
 * bytes are handed out. Stored entries are returned as pointers into the caller's buffer (zero
 * copy); deflated entries are inflated with zlib into a malloc'd buffer of exactly the declared
 * size (larger output is an error, so a zip bomb cannot exceed its own declaration, which is
 * itself bounded). Zip64, encryption, multi-disk archives and methods other than stored (0) and
 * deflate (8) are refused with a message saying so.
 */
#ifndef CLMR_NN_ZIPREAD_H
#define CLMR_NN_ZIPREAD_H

#include <stddef.h>
#include <stdint.h>

#define CLMR_ZIP_MAX_ENTRIES 65535
#define CLMR_ZIP_MAX_NAME 1024
/* Largest entry the reader inflates or returns (the official checkpoints are ~10-40 MB). */
#define CLMR_ZIP_MAX_ENTRY_BYTES ((size_t)1 << 31)

typedef struct {
    char *name; /* owned, NUL-terminated (names with NUL bytes are refused) */
    int method; /* 0 stored, 8 deflate */
    uint32_t crc32;
    size_t comp_size, size;
    size_t data_off; /* offset of the (compressed) data in the buffer, from the local header */
} clmr_zip_entry_t;

typedef struct {
    const unsigned char *buf; /* borrowed: the caller's buffer */
    size_t buf_size;
    int n;
    clmr_zip_entry_t *e; /* (n) owned */
} clmr_zip_t;

/* 1 when buf starts with a zip local-file-header signature ("PK\3\4"), else 0. */
int clmr_zip_is_zip(const void *buf, size_t size);

/* Parses the archive's directory. buf remains owned by the caller and must outlive *z. Returns 0,
 * CLMR_ENOMEM or CLMR_ECHECKPOINT with *errmsg (malloc'd) saying what is wrong; on failure *z is
 * empty (clmr_zip_close is still safe). Thread-safe (no shared state). */
int clmr_zip_open(clmr_zip_t *z, const void *buf, size_t size, char **errmsg);

/* Index of the entry called name, or -1. */
int clmr_zip_find(const clmr_zip_t *z, const char *name);

/* Gives entry i's bytes, CRC-checked: *data points into the archive buffer for a stored entry
 * (*owned = NULL) or to a malloc'd inflated copy that the caller frees (*owned == *data).
 * Returns 0, CLMR_ENOMEM or CLMR_ECHECKPOINT with *errmsg naming the entry. */
int clmr_zip_read(const clmr_zip_t *z, int i, const unsigned char **data, unsigned char **owned,
                  char **errmsg);

void clmr_zip_close(clmr_zip_t *z);

#endif
