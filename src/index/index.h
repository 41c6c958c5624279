/* index.h - exact cosine nearest-neighbour search over in-memory track embeddings.
 *
 * DESIGN: rows of L2-normalised float vectors in one contiguous matrix (dimension fixed per
 * index, capacity grown geometrically), so cosine similarity is a dot product and a search is one
 * pass over the matrix with a size-k min-heap. That pass is memory-bound, so by default it reads
 * an int8 copy of each row first (a quarter of the bytes) and re-scores in fp32 only the rows whose
 * error bound says they could still enter the top-k: the result is exactly the full fp32 scan's.
 * Dot products use AVX-512 or AVX2+FMA kernels when __builtin_cpu_supports says the CPU has them
 * (compiled with target attributes, so the binary still runs on older CPUs) and a portable scalar
 * loop otherwise. Track ids map to rows
 * through an open-addressing hash table; removal moves the last row into the hole. A
 * pthread rwlock lets any number of searches run together while adds/removes take it exclusively.
 * Queries with a non-finite or zero vector are refused (NaN would poison the ordering).
 *
 * Approximate search (FAISS HNSW or IVF-PQ, see ann.h and docs/scaling.md) is a per-index
 * backend: with it, searches re-score the approximate index's candidates against the exact rows,
 * so returned scores are exact cosines and only recall can fall below the exact scan's. The
 * approximate index is built in a background thread (after clmr_index_load, or when an upsert
 * makes the catalogue reach the threshold); searches use the exact scan until it is installed.
 * Every function keeps the same contract whatever the backend.
 *
 * One index holds one model's embeddings; to switch model versions build a new index (e.g. with
 * clmr_index_load) and swap the pointer under the caller's own synchronisation.
 */
#ifndef CLMR_INDEX_INDEX_H
#define CLMR_INDEX_INDEX_H

#include <stddef.h>

#include "store/store.h"

#define CLMR_INDEX_ID_MAX 64 /* longest id (a sha256 hex) */

typedef struct clmr_index clmr_index_t;

typedef struct {
    char id[CLMR_INDEX_ID_MAX + 1];
    float score; /* cosine similarity in [-1, 1] */
} clmr_index_hit_t;

/* Creates an empty index for dim-dimensional vectors (1..65536) with room for capacity rows
 * (0 = a small default; it grows as needed). Destroy with clmr_index_destroy. */
int clmr_index_create(clmr_index_t **out, int dim, size_t capacity);

/* Frees everything; accepts NULL / *idx == NULL and sets *idx to NULL. No search may be running. */
void clmr_index_destroy(clmr_index_t **idx);

/* Adds id with vector v (dim floats, copied and L2-normalised), or replaces its vector when id is
 * present. CLMR_EINVAL for an id longer than CLMR_INDEX_ID_MAX, an empty id, or a vector that is
 * zero or has NaN/Inf; CLMR_ENOMEM. Thread-safe (exclusive lock). */
int clmr_index_upsert(clmr_index_t *idx, const char *id, const float *v);

/* Removes id; CLMR_ENOT_FOUND when absent. Thread-safe (exclusive lock). */
int clmr_index_remove(clmr_index_t *idx, const char *id);

/* Number of rows / the dimension. Thread-safe; size never waits for a writer (it reads the
 * count published by the last completed write). */
size_t clmr_index_size(clmr_index_t *idx);
int clmr_index_dim(const clmr_index_t *idx);

/* Bytes allocated (capacity, not size: matrices + ids + hash table). Headroom pages that were
 * never written are not resident, so RSS can be lower. */
size_t clmr_index_memory(clmr_index_t *idx);

/* The k (1..10000) rows most similar to q (dim floats, need not be normalised), best first, ties
 * broken by id; exclude_id (may be NULL) is skipped. hits must hold k entries; *n_hits gets
 * min(k, size - excluded). CLMR_EINVAL for a zero / non-finite q or a bad k. Thread-safe (shared
 * lock: searches run concurrently with each other). */
int clmr_index_search(clmr_index_t *idx, const float *q, int k, const char *exclude_id,
                      clmr_index_hit_t *hits, int *n_hits);

/* Same, using the stored vector of id as the query and excluding id itself (GET
 * /v1/tracks/{id}/similar). CLMR_ENOT_FOUND when id is not in the index. */
int clmr_index_search_id(clmr_index_t *idx, const char *id, int k, clmr_index_hit_t *hits,
                         int *n_hits);

/* Copies the stored (normalised) vector of id into v (dim floats). CLMR_ENOT_FOUND when absent. */
int clmr_index_get(clmr_index_t *idx, const char *id, float *v);

/* Adds every embedding of model_id in the store (clmr_store_embedding_foreach); embeddings whose
 * dimension differs from the index's are refused with CLMR_EINVAL. *loaded (optional) = rows
 * added. */
int clmr_index_load(clmr_index_t *idx, clmr_store_t *store, const char *model_id, size_t *loaded,
                    char **errmsg);

/* Tests only: takes (hold = 1) or drops (hold = 0) the index's write lock, to check that
 * readers such as clmr_index_size never wait for it. */
void clmr__index_hold_lock(clmr_index_t *idx, int hold);

/* "avx512", "avx2" or "scalar": the kernel set in use (chosen at run time from the CPU unless
 * overridden). Thread-safe. */
const char *clmr_index_kernel_name(void);

/* Benchmark/test hook, process-wide and thread-safe: "auto" (or NULL), "avx512", "avx2" or
 * "scalar". CLMR_EINVAL for an unknown name or one this CPU cannot run. Searches already running
 * finish with the kernel they picked. */
int clmr_index_set_kernel(const char *name);

/* Benchmark/test hook: 1 (default) = exact search through the int8 prefilter where a SIMD kernel
 * exists (see index.c), 0 = plain full fp32 scan. Both return the same hits. Thread-safe. */
void clmr_index_set_prefilter(int on);

/* ---- approximate backends ---- */

typedef enum {
    CLMR_INDEX_EXACT = 0, /* always the exact scan (the default) */
    CLMR_INDEX_AUTO,      /* exact below auto_min rows, then HNSW, IVF-PQ from AUTO_IVFPQ_ROWS */
    CLMR_INDEX_HNSW,      /* HNSW as soon as there is a row */
    CLMR_INDEX_IVFPQ,     /* IVF-PQ from IVFPQ_MIN_ROWS rows (its training needs them) */
} clmr_index_backend_t;

#define CLMR_INDEX_AUTO_MIN_DEFAULT 100000
#define CLMR_INDEX_AUTO_IVFPQ_ROWS 2000000
#define CLMR_INDEX_IVFPQ_MIN_ROWS 10240

/* "exact", "auto", "hnsw" or "ivfpq" -> *out; CLMR_EINVAL otherwise. */
int clmr_index_backend_parse(const char *name, clmr_index_backend_t *out);

/* Process-wide: the backend of indexes created from now on (the server sets it from the `index`
 * configuration key, so every index it creates, including the ones rebuilt on model activation,
 * gets it). auto_min: AUTO's threshold in rows (0 = 1). Thread-safe. */
void clmr_index_set_default_backend(clmr_index_backend_t b, size_t auto_min);

/* Changes this index's backend; starts a background build when the new backend wants one now.
 * EXACT drops an installed approximate index at once. Thread-safe. */
int clmr_index_set_backend(clmr_index_t *idx, clmr_index_backend_t b, size_t auto_min);

/* What searches use right now: "exact", "hnsw" or "ivfpq" (static strings). Thread-safe. */
const char *clmr_index_backend_name(clmr_index_t *idx);

/* 1 while a background build is running (tests and /metrics wait on it). Thread-safe. */
int clmr_index_approx_pending(clmr_index_t *idx);

#endif
