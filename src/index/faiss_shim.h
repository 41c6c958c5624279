/* faiss_shim.h - the few FAISS calls clmrd needs, as a C interface (faiss_shim.cpp).
 *
 * DESIGN: Debian 12's libfaiss-dev ships the C API headers but not their implementation (its
 * libfaiss.a holds only the C++ library), so this one C++ file wraps the calls ann.c needs and
 * turns every C++ exception into an error code; nothing else in clmrd is C++. Vectors are
 * L2-normalised by the caller and searched under the L2 metric (for unit vectors
 * |q - x|^2 = 2 - 2 q.x, so the ranking is cosine's). Labels are assigned by FAISS in insertion
 * order (0, 1, 2, ...): the caller keeps its own label -> track table. Not thread-safe for
 * writes: the caller serialises adds against searches (searches may run concurrently).
 */
#ifndef CLMR_INDEX_FAISS_SHIM_H
#define CLMR_INDEX_FAISS_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct clmr_fx clmr_fx_t;

/* An HNSW graph over full fp32 vectors: m links per node (4..128), ef_construction (>= m) the
 * candidate list while inserting. Needs no training. */
int clmr_fx_new_hnsw(clmr_fx_t **out, int dim, int m, int ef_construction, char **errmsg);

/* An inverted file of nlist lists (coarse quantizer: an HNSW graph over the centroids, so adding
 * millions of vectors does not pay an exhaustive centroid scan each) with product-quantised
 * residuals of pq_m bytes (dim % pq_m == 0). Must be trained (clmr_fx_train) before adding. */
int clmr_fx_new_ivfpq(clmr_fx_t **out, int dim, int nlist, int pq_m, char **errmsg);

/* Trains on n vectors (row-major, dim floats each; only IVF-PQ needs it, a no-op otherwise). */
int clmr_fx_train(clmr_fx_t *fx, size_t n, const float *x, char **errmsg);

/* Appends n vectors; they get labels ntotal .. ntotal + n - 1. */
int clmr_fx_add(clmr_fx_t *fx, size_t n, const float *x, char **errmsg);

/* 1 once the index can take vectors (always for HNSW; after clmr_fx_train for IVF-PQ). */
int clmr_fx_is_trained(const clmr_fx_t *fx);

/* Total vectors ever added (deleted ones included). */
size_t clmr_fx_ntotal(const clmr_fx_t *fx);

/* Sets the search effort: efSearch for HNSW, nprobe for IVF-PQ. A write: no search may run.
 * (FAISS 1.7.3's HNSW ignores the efSearch of per-call search parameters, measured: recall and
 * latency did not move from efSearch 16 to 128, so the index field is the only knob.) */
int clmr_fx_set_effort(clmr_fx_t *fx, int effort);

/* The k nearest of nq queries: labels[nq*k] (-1 when fewer) and squared L2 distances[nq*k].
 * alive (optional, one bit per label, LSB first,
 * alive_n labels): labels whose bit is clear (or >= alive_n) are never returned. Concurrent
 * searches are safe. */
int clmr_fx_search(const clmr_fx_t *fx, size_t nq, const float *q, int k, const uint8_t *alive,
                   size_t alive_n, float *dist, int64_t *labels, char **errmsg);

/* Bytes FAISS itself reports for the index structures (vectors/codes + graph/lists), an
 * estimate; RSS is the ground truth. */
size_t clmr_fx_memory(const clmr_fx_t *fx);

/* Whole-index serialisation (FAISS's own file format). */
int clmr_fx_write(const clmr_fx_t *fx, const char *path, char **errmsg);
int clmr_fx_read(clmr_fx_t **out, const char *path, char **errmsg);

/* "hnsw" or "ivfpq". */
const char *clmr_fx_kind(const clmr_fx_t *fx);

/* Frees; accepts NULL / *fx == NULL and sets *fx to NULL. */
void clmr_fx_free(clmr_fx_t **fx);

#ifdef __cplusplus
}
#endif

#endif
