/* ann.h - an approximate nearest-neighbour index over unit vectors (FAISS HNSW or IVF-PQ).
 *
 * DESIGN: a thin layer over faiss_shim.h that adds what FAISS lacks for a catalogue that changes:
 * deletion (HNSW cannot remove nodes, so every backend uses one tombstone bit per label and the
 * search skips cleared bits through a FAISS IDSelector, so a deleted track is never returned), a
 * label -> track id table, parameters chosen from the catalogue size, and a file format (FAISS's
 * own file plus a sidecar with the ids and the live bits). Labels are 0, 1, 2, ... in insertion
 * order. index.c keeps the exact fp32 rows beside it and re-scores the candidates this returns,
 * so scores are exact and only recall is approximate. Writes need exclusive access; searches may
 * run concurrently with each other (index.c's rwlock provides both).
 */
#ifndef CLMR_INDEX_ANN_H
#define CLMR_INDEX_ANN_H

#include <stddef.h>
#include <stdint.h>

typedef struct clmr_ann clmr_ann_t;

typedef enum { CLMR_ANN_HNSW = 1, CLMR_ANN_IVFPQ = 2 } clmr_ann_kind_t;

typedef struct {
    clmr_ann_kind_t kind;
    int dim;
    int hnsw_m;          /* HNSW: links per node */
    int ef_construction; /* HNSW: candidate list while inserting */
    int ef_search;       /* HNSW: candidate list while searching (the recall/latency knob) */
    int nlist;           /* IVF-PQ: inverted lists */
    int pq_m;            /* IVF-PQ: bytes per vector (dim % pq_m == 0) */
    int nprobe;          /* IVF-PQ: lists visited per query (the recall/latency knob) */
    int store_ids;       /* 1: keep a label -> track id table (the daemon); 0: labels only */
} clmr_ann_params_t;

/* Parameters for a catalogue of about n vectors (see docs/scaling.md for the measurements behind
 * them): HNSW M=16, efConstruction=40, efSearch=128; IVF-PQ nlist ~ 4 sqrt(n) (a power of two,
 * 256..16384), pq_m = dim/8 (the largest of 64, 32, 16, 8 that divides dim when that does not),
 * nprobe = nlist/64 (at least 16). store_ids = 1. */
clmr_ann_params_t clmr_ann_default_params(clmr_ann_kind_t kind, int dim, size_t n);

/* Creates an empty index. CLMR_EINVAL for bad parameters. Free with clmr_ann_close. */
int clmr_ann_open(clmr_ann_t **out, const clmr_ann_params_t *p, char **errmsg);

/* Frees; accepts NULL / *a == NULL and sets *a to NULL. */
void clmr_ann_close(clmr_ann_t **a);

/* 1 when the index must still be trained (IVF-PQ before clmr_ann_train), else 0. */
int clmr_ann_needs_training(const clmr_ann_t *a);

/* Trains an IVF-PQ index on n unit vectors (dim floats each, row-major): at least nlist of them
 * (about 40 per list is enough; more only costs time). A no-op for HNSW. */
int clmr_ann_train(clmr_ann_t *a, size_t n, const float *x, char **errmsg);

/* Appends n unit vectors; ids (n strings, or NULL when store_ids is 0) are copied. The labels are
 * clmr_ann_labels(a) before the call + 0 .. n-1. */
int clmr_ann_add(clmr_ann_t *a, size_t n, const float *x, const char *const *ids, char **errmsg);

/* Marks label deleted (it is never returned again); out-of-range labels are ignored. */
void clmr_ann_delete(clmr_ann_t *a, int64_t label);

/* Clears every live bit (index.c then re-marks the labels still current; see its builder). */
void clmr_ann_delete_all(clmr_ann_t *a);

/* Marks an existing label live again. */
void clmr_ann_undelete(clmr_ann_t *a, int64_t label);

/* Labels ever assigned / labels currently live. */
size_t clmr_ann_labels(const clmr_ann_t *a);
size_t clmr_ann_live(const clmr_ann_t *a);

/* The track id of label (NULL when out of range or store_ids is 0). Valid until the next write. */
const char *clmr_ann_id(const clmr_ann_t *a, int64_t label);

/* Up to k (1..10000) live labels nearest to the unit query q, nearest first, with cosine
 * similarities estimated from the index (exact for HNSW, from PQ codes for IVF-PQ);
 * *n_out = how many were found (< k when fewer live labels or the search visited too few; HNSW
 * visits max(ef_search, k) candidates). */
int clmr_ann_search(const clmr_ann_t *a, const float *q, int k, int64_t *labels, float *scores,
                    int *n_out, char **errmsg);

/* How many candidates a top-k search should take from this index for an exact re-scoring (what
 * index.c does): 2k + 16 for HNSW (its distances are exact already, the extra ones cover graph
 * misses), 10k + 64 for IVF-PQ (its PQ distances reorder near neighbours; re-scoring 164 rows of
 * 512 floats costs ~0.02 ms); at most 10000. */
int clmr_ann_candidates(const clmr_ann_t *a, int k);

/* Changes the search knob (ef_search for HNSW, nprobe for IVF-PQ; >= 1). A write. */
int clmr_ann_set_effort(clmr_ann_t *a, int effort);

/* Bytes of the FAISS structures plus the id table and live bits (an estimate; RSS is the truth). */
size_t clmr_ann_memory(const clmr_ann_t *a);

/* The parameters in use (kind, dim and the search knob are what matter after clmr_ann_load). */
clmr_ann_params_t clmr_ann_params(const clmr_ann_t *a);

/* "hnsw" or "ivfpq". */
const char *clmr_ann_kind_name(clmr_ann_kind_t kind);

/* Writes path (the FAISS index) and path + ".ids" (magic, counts, live bits, ids), each through
 * a temporary file renamed into place. */
int clmr_ann_save(const clmr_ann_t *a, const char *path, char **errmsg);

/* Reads what clmr_ann_save wrote; CLMR_EINVAL when the files are missing, truncated or disagree
 * (then the caller rebuilds from its rows). */
int clmr_ann_load(clmr_ann_t **out, const char *path, char **errmsg);

#endif
