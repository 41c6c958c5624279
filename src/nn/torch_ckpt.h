/* torch_ckpt.h - reads PyTorch checkpoint files without Python (private to src/nn).
 *
 * DESIGN: three containers are recognised from their first bytes and structure:
 *  - PyTorch's zip serialization (torch >= 1.6): `<prefix>/data.pkl` holds the pickled object,
 *    whose storages are persistent ids naming `<prefix>/data/<key>` entries (any prefix);
 *  - the legacy format (torch < 1.6, or `_use_new_zipfile_serialization=False`): five pickles in
 *    a row (magic number, protocol 1001, sys info, the object, the storage keys) followed by each
 *    storage as an int64 element count and its raw little-endian bytes;
 *  - a release download: a zip without data.pkl that wraps one checkpoint (`*.pt`, `*.pth`,
 *    `*.ckpt`); optimizer files (`*_optim.pt`) and macOS metadata are skipped, and more than one
 *    candidate is an error listing them.
 * The pickles go through the restricted reader (pickle.h): nothing in the file is ever called.
 * Tensors stay views (storage, offset, shape, stride) until clmr_ckpt_read_f32 converts one to
 * contiguous fp32, honouring strides and offsets and checking every element lies inside its
 * storage. The whole file is held in memory (bounded by CLMR_CKPT_MAX_BYTES).
 */
#ifndef CLMR_NN_TORCH_CKPT_H
#define CLMR_NN_TORCH_CKPT_H

#include "nn/pickle.h"

#include <stddef.h>

#define CLMR_CKPT_MAX_BYTES ((size_t)2 << 30)

typedef struct clmr_ckpt clmr_ckpt_t;

/* Parses a checkpoint held in buf (size bytes). buf remains owned by the caller and must outlive
 * *out. label names the file in messages. Returns 0, CLMR_ENOMEM or CLMR_ECHECKPOINT with
 * *errmsg; *out is NULL on failure. A file that references unsafe globals still parses (see
 * clmr_ckpt_unsafe): the caller decides. Thread-safe (no shared state). */
int clmr_ckpt_open_memory(clmr_ckpt_t **out, const void *buf, size_t size, const char *label,
                          char **errmsg);

/* Reads path into memory (at most CLMR_CKPT_MAX_BYTES) and parses it; the buffer is owned by the
 * checkpoint. Errors as above, plus CLMR_EIO when the file cannot be read. */
int clmr_ckpt_open_file(clmr_ckpt_t **out, const char *path, char **errmsg);

void clmr_ckpt_close(clmr_ckpt_t **c);

/* The unpickled object (borrowed; valid until close). */
const clmr_pk_value_t *clmr_ckpt_root(const clmr_ckpt_t *c);

/* Describes the container: "zip (archive/data.pkl)", "legacy", "zip wrapper of X (zip ...)". */
const char *clmr_ckpt_format(const clmr_ckpt_t *c);

/* Number of unsafe globals the pickle references and the i-th one ("os.system"), i < n shown. */
int clmr_ckpt_unsafe(const clmr_ckpt_t *c, int i, const char **name);

/* Converts TENSOR value t to n contiguous fp32 values at out (n must equal the product of its
 * shape). float32/float16/bfloat16/float64 are converted; integer dtypes are refused. Returns 0,
 * CLMR_ENOMEM or CLMR_ECHECKPOINT (bad dtype, an element outside the storage, a missing storage)
 * with *errmsg naming `what`. */
int clmr_ckpt_read_f32(clmr_ckpt_t *c, const clmr_pk_value_t *t, float *out, size_t n,
                       const char *what, char **errmsg);

#endif
