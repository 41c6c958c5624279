/* pickle.h - a restricted, bounded reader for the Python pickles inside PyTorch checkpoints
 * (private to src/nn).
 *
 * DESIGN: a checkpoint's pickle is a program for a stack machine whose REDUCE/BUILD/NEWOBJ opcodes
 * call any importable Python callable; Python's own unpickler therefore runs whatever code a file
 * names. This reader executes nothing. It builds a tree of plain values (None, bool, int, float,
 * str, bytes, tuple, list, dict) and interprets only the few callables a state dict needs:
 * collections.OrderedDict (an empty dict), torch._utils._rebuild_tensor(_v2) (a tensor view of a
 * storage), torch._utils._rebuild_parameter(_with_state) (its tensor) and the persistent ids
 * ('storage', torch.<Type>Storage, key, location, numel[, view]) that name storages. Every other
 * global becomes an inert GLOBAL value, and calling or building it gives an inert OBJECT value
 * that remembers the global's name and is never called; that is enough to walk past Lightning's
 * hyper-parameters (argparse.Namespace, AttributeDict), optimizer states and callbacks. Globals
 * that could run code if a real unpickler met them (os.system, subprocess.*, builtins.eval, ...)
 * are recorded in a list so the caller can report and refuse the file.
 *
 * Bounds: input length, the number of values (CLMR_PK_MAX_VALUES), container sizes, the stack
 * depth, the memo size and every string length are checked before use; any violation or an
 * unknown opcode is a CLMR_ECHECKPOINT error naming the opcode and its offset. All values live in
 * one arena freed by clmr_pk_free. Only opcodes of protocols 0-5 that state dicts and their
 * surroundings use are implemented; pickles are little-endian as the format defines.
 */
#ifndef CLMR_NN_PICKLE_H
#define CLMR_NN_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#define CLMR_PK_MAX_VALUES 1000000
/* Arena bytes (values, strings, containers) beyond which a pickle is refused. */
#define CLMR_PK_MAX_ARENA ((size_t)512 << 20)
#define CLMR_PK_MAX_STRING ((size_t)64 << 20)
#define CLMR_PK_MAX_DIMS 8
#define CLMR_PK_MAX_UNSAFE 16

typedef enum {
    CLMR_PK_NONE,
    CLMR_PK_BOOL,
    CLMR_PK_INT,
    CLMR_PK_FLOAT,
    CLMR_PK_STR,
    CLMR_PK_BYTES,
    CLMR_PK_TUPLE,
    CLMR_PK_LIST,
    CLMR_PK_DICT,    /* items[2k] = key, items[2k + 1] = value, insertion order */
    CLMR_PK_SET,     /* items */
    CLMR_PK_GLOBAL,  /* s = "module.name" */
    CLMR_PK_OBJECT,  /* inert result of calling/building GLOBAL s (never called) */
    CLMR_PK_STORAGE, /* a persistent-id storage: s = key, dtype, numel */
    CLMR_PK_TENSOR,  /* a strided view of a storage */
} clmr_pk_kind_t;

/* Element types of torch storages. */
typedef enum {
    CLMR_DT_F32,
    CLMR_DT_F16,
    CLMR_DT_BF16,
    CLMR_DT_F64,
    CLMR_DT_I64,
    CLMR_DT_I32,
    CLMR_DT_I16,
    CLMR_DT_I8,
    CLMR_DT_U8,
    CLMR_DT_BOOL,
    CLMR_DT_COUNT
} clmr_dtype_t;

typedef struct clmr_pk_value clmr_pk_value_t;
struct clmr_pk_value {
    clmr_pk_kind_t kind;
    int64_t i;     /* INT, BOOL; STORAGE: numel. An INT wider than 64 bits has i = 0, s = its
                      little-endian two's-complement bytes and len = their count (> 8) */
    double f;      /* FLOAT */
    const char *s; /* STR/BYTES data (NUL-terminated copy), GLOBAL/OBJECT name, STORAGE key */
    size_t len;    /* STR/BYTES length */
    clmr_pk_value_t **items;
    size_t n, cap;
    clmr_dtype_t dtype;       /* STORAGE */
    struct clmr_pk_tensor *t; /* TENSOR; STORAGE: NULL, or a legacy view: t->offset = its first
                                 element in the root storage named s (t->storage unused) */
};

typedef struct clmr_pk_tensor {
    clmr_pk_value_t *storage; /* a STORAGE value */
    int64_t offset;           /* in elements of the storage's dtype */
    int ndim;
    int64_t shape[CLMR_PK_MAX_DIMS], stride[CLMR_PK_MAX_DIMS];
} clmr_pk_tensor_t;

typedef struct clmr_pk_arena clmr_pk_arena_t;

typedef struct {
    clmr_pk_value_t *root;
    size_t consumed; /* bytes up to and including STOP (legacy files continue after it) */
    int n_unsafe;
    char unsafe[CLMR_PK_MAX_UNSAFE][96]; /* "os.system", ... (first ones, deduplicated) */
    int n_unsafe_total;
    clmr_pk_value_t **storages; /* (n_storages) every STORAGE value made, in order; owned */
    size_t n_storages, storages_cap;
    clmr_pk_arena_t *arena; /* owned */
} clmr_pk_result_t;

/* Parses one pickle from buf (remains owned by the caller, not referenced afterwards). Returns 0,
 * CLMR_ENOMEM or CLMR_ECHECKPOINT with *errmsg; on failure *r holds nothing (clmr_pk_free is
 * still safe). Several results may share nothing; thread-safe. */
int clmr_pk_parse(clmr_pk_result_t *r, const void *buf, size_t size, char **errmsg);

void clmr_pk_free(clmr_pk_result_t *r);

/* The value for a STR key in a DICT (the last one set), or NULL. */
clmr_pk_value_t *clmr_pk_dict_get(const clmr_pk_value_t *d, const char *key);

/* Bytes per element of a dtype, and its torch name ("float32", ...). */
int clmr_dtype_size(clmr_dtype_t t);
const char *clmr_dtype_name(clmr_dtype_t t);

#endif
