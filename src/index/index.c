/* index.c - exact cosine top-k search over an in-memory embedding matrix (see index.h).
 *
 * DESIGN: rows are stored L2-normalised and zero-padded to a multiple of 16 floats (one AVX-512
 * register) in a 64-byte aligned matrix, so a search is a straight streaming pass of dot products
 * without tail handling; at 512-d that pass is memory-bound (2 KiB per track), which is why the
 * kernel is deliberately simple: four rows per iteration share each query load and keep four
 * independent FMA chains in flight. The kernel is picked once at run time
 * (__builtin_cpu_supports) and compiled with a target attribute, so the same binary runs on CPUs
 * without AVX-512 through the scalar loop. A size-k min-heap keeps the best rows (ties: smaller
 * id first, so results are deterministic). Ids live in a parallel fixed-width array; an
 * open-addressing hash table (linear probing, backward-shift deletion, no tombstones) maps ids to
 * rows. Capacity grows by 1.5x. A pthread rwlock: searches share it, writers take it exclusively.
 */
#include "index/index.h"

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "clmr/error.h"

#define ID_W (CLMR_INDEX_ID_MAX + 1)

struct clmr_index {
    int dim;
    size_t stride; /* floats per row: dim rounded up to 16 */
    float *mat;    /* cap * stride floats, 64-byte aligned */
    char *ids;     /* cap * ID_W bytes */
    size_t n, cap;
    uint32_t *slots; /* hash table: row + 1, 0 = empty */
    size_t hcap;     /* power of two, >= 2 * cap */
    pthread_rwlock_t lock;
};

/* ---- dot-product kernels ---- */

typedef void (*dot4_fn)(const float *q, const float *r0, size_t stride, size_t len, float out[4]);

static void dot4_scalar(const float *q, const float *r, size_t stride, size_t len, float out[4])
{
    float a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    const float *r0 = r, *r1 = r + stride, *r2 = r + 2 * stride, *r3 = r + 3 * stride;
    for (size_t i = 0; i < len; i++) {
        a0 += q[i] * r0[i];
        a1 += q[i] * r1[i];
        a2 += q[i] * r2[i];
        a3 += q[i] * r3[i];
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}

__attribute__((target("avx512f"))) static void dot4_avx512(const float *q, const float *r,
                                                           size_t stride, size_t len, float out[4])
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps();
    const float *r0 = r, *r1 = r + stride, *r2 = r + 2 * stride, *r3 = r + 3 * stride;
    for (size_t i = 0; i < len; i += 16) {
        __m512 qv = _mm512_load_ps(q + i);
        a0 = _mm512_fmadd_ps(qv, _mm512_load_ps(r0 + i), a0);
        a1 = _mm512_fmadd_ps(qv, _mm512_load_ps(r1 + i), a1);
        a2 = _mm512_fmadd_ps(qv, _mm512_load_ps(r2 + i), a2);
        a3 = _mm512_fmadd_ps(qv, _mm512_load_ps(r3 + i), a3);
    }
    out[0] = _mm512_reduce_add_ps(a0);
    out[1] = _mm512_reduce_add_ps(a1);
    out[2] = _mm512_reduce_add_ps(a2);
    out[3] = _mm512_reduce_add_ps(a3);
}

static atomic_int force_scalar;
static atomic_int avx512_cached = -1; /* -1 unknown; idempotent, so racing first calls agree */

static int have_avx512(void)
{
    int c = atomic_load_explicit(&avx512_cached, memory_order_relaxed);
    if (c < 0) {
        __builtin_cpu_init();
        c = __builtin_cpu_supports("avx512f") ? 1 : 0;
        atomic_store_explicit(&avx512_cached, c, memory_order_relaxed);
    }
    return c;
}

static dot4_fn pick_kernel(void)
{
    return (!atomic_load_explicit(&force_scalar, memory_order_relaxed) && have_avx512())
               ? dot4_avx512
               : dot4_scalar;
}

const char *clmr_index_kernel_name(void)
{
    return pick_kernel() == dot4_avx512 ? "avx512" : "scalar";
}

void clmr_index_force_scalar(int on)
{
    atomic_store_explicit(&force_scalar, on ? 1 : 0, memory_order_relaxed);
}

/* ---- hash table ---- */

static uint64_t hash_id(const char *id)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *id; id++)
        h = (h ^ (unsigned char)*id) * 1099511628211ull;
    return h ^ (h >> 29);
}

static const char *row_id(const clmr_index_t *x, size_t row)
{
    return x->ids + row * ID_W;
}

/* Slot holding id, or the empty slot where it would go. */
static size_t find_slot(const clmr_index_t *x, const char *id)
{
    size_t mask = x->hcap - 1, i = hash_id(id) & mask;
    while (x->slots[i] && strcmp(row_id(x, x->slots[i] - 1), id) != 0)
        i = (i + 1) & mask;
    return i;
}

static void slot_delete(clmr_index_t *x, size_t i)
{
    size_t mask = x->hcap - 1;
    x->slots[i] = 0;
    /* Backward shift: pull later entries of the probe run into the hole when their home slot
     * does not lie cyclically within (hole, position]. */
    for (size_t j = (i + 1) & mask; x->slots[j]; j = (j + 1) & mask) {
        size_t home = hash_id(row_id(x, x->slots[j] - 1)) & mask;
        int between = (i <= j) ? (home > i && home <= j) : (home > i || home <= j);
        if (!between) {
            x->slots[i] = x->slots[j];
            x->slots[j] = 0;
            i = j;
        }
    }
}

static int rehash(clmr_index_t *x, size_t hcap)
{
    uint32_t *ns = calloc(hcap, sizeof *ns);
    if (!ns) return CLMR_ENOMEM;
    free(x->slots);
    x->slots = ns;
    x->hcap = hcap;
    for (size_t r = 0; r < x->n; r++)
        x->slots[find_slot(x, row_id(x, r))] = (uint32_t)(r + 1);
    return 0;
}

static int grow(clmr_index_t *x, size_t want)
{
    if (want <= x->cap) return 0;
    if (want > UINT32_MAX - 1) return CLMR_ENOMEM;
    size_t ncap = x->cap + x->cap / 2;
    if (ncap < want) ncap = want;
    if (ncap < 64) ncap = 64;
    float *nm = NULL;
    size_t bytes = ncap * x->stride * sizeof(float);
    /* Large matrices: 2 MiB alignment + MADV_HUGEPAGE, so a full scan does not pay a TLB miss
     * every 4 KiB (transparent huge pages are often in "madvise" mode). */
    size_t align = bytes >= (8u << 20) ? (2u << 20) : 64;
    if (posix_memalign((void **)&nm, align, bytes)) return CLMR_ENOMEM;
    if (align > 64) madvise(nm, bytes, MADV_HUGEPAGE);
    char *ni = malloc(ncap * ID_W);
    if (!ni) {
        free(nm);
        return CLMR_ENOMEM;
    }
    if (x->n) {
        memcpy(nm, x->mat, x->n * x->stride * sizeof(float));
        memcpy(ni, x->ids, x->n * ID_W);
    }
    free(x->mat);
    free(x->ids);
    x->mat = nm;
    x->ids = ni;
    x->cap = ncap;
    size_t hcap = 16;
    while (hcap < 2 * ncap)
        hcap <<= 1;
    if (hcap != x->hcap) return rehash(x, hcap);
    return 0;
}

/* ---- lifecycle ---- */

int clmr_index_create(clmr_index_t **out, int dim, size_t capacity)
{
    if (!out || dim < 1 || dim > 65536) return CLMR_EINVAL;
    *out = NULL;
    clmr_index_t *x = calloc(1, sizeof *x);
    if (!x) return CLMR_ENOMEM;
    x->dim = dim;
    x->stride = ((size_t)dim + 15) / 16 * 16;
    if (pthread_rwlock_init(&x->lock, NULL)) {
        free(x);
        return CLMR_ENOMEM;
    }
    int rc = grow(x, capacity ? capacity : 64);
    if (rc) {
        clmr_index_destroy(&x);
        return rc;
    }
    *out = x;
    return 0;
}

void clmr_index_destroy(clmr_index_t **idx)
{
    if (!idx || !*idx) return;
    clmr_index_t *x = *idx;
    pthread_rwlock_destroy(&x->lock);
    free(x->mat);
    free(x->ids);
    free(x->slots);
    free(x);
    *idx = NULL;
}

int clmr_index_dim(const clmr_index_t *idx)
{
    return idx->dim;
}

size_t clmr_index_size(clmr_index_t *idx)
{
    pthread_rwlock_rdlock(&idx->lock);
    size_t n = idx->n;
    pthread_rwlock_unlock(&idx->lock);
    return n;
}

size_t clmr_index_memory(clmr_index_t *idx)
{
    pthread_rwlock_rdlock(&idx->lock);
    size_t b = sizeof *idx + idx->cap * (idx->stride * sizeof(float) + ID_W) +
               idx->hcap * sizeof(uint32_t);
    pthread_rwlock_unlock(&idx->lock);
    return b;
}

/* Writes v normalised (and zero-padded) to dst; CLMR_EINVAL for zero or non-finite vectors. */
static int normalise(const float *v, int dim, size_t stride, float *dst)
{
    double ss = 0;
    for (int i = 0; i < dim; i++) {
        if (!isfinite(v[i])) return CLMR_EINVAL;
        ss += (double)v[i] * v[i];
    }
    if (!(ss > 0) || !isfinite(ss)) return CLMR_EINVAL;
    double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < dim; i++)
        dst[i] = (float)(v[i] * inv);
    for (size_t i = (size_t)dim; i < stride; i++)
        dst[i] = 0;
    return 0;
}

int clmr_index_upsert(clmr_index_t *x, const char *id, const float *v)
{
    if (!x || !id || !id[0] || !v || strlen(id) > CLMR_INDEX_ID_MAX) return CLMR_EINVAL;
    float *tmp = NULL;
    /* Normalise outside the lock so writers hold it for as short as possible. */
    if (posix_memalign((void **)&tmp, 64, x->stride * sizeof(float))) return CLMR_ENOMEM;
    int rc = normalise(v, x->dim, x->stride, tmp);
    if (rc) {
        free(tmp);
        return rc;
    }
    pthread_rwlock_wrlock(&x->lock);
    size_t slot = find_slot(x, id);
    size_t row;
    if (x->slots[slot]) {
        row = x->slots[slot] - 1;
    } else {
        if (x->n == x->cap) {
            rc = grow(x, x->n + 1);
            if (rc) goto out;
            slot = find_slot(x, id);
        }
        row = x->n++;
        memset(x->ids + row * ID_W, 0, ID_W);
        strcpy(x->ids + row * ID_W, id);
        x->slots[slot] = (uint32_t)(row + 1);
    }
    memcpy(x->mat + row * x->stride, tmp, x->stride * sizeof(float));
out:
    pthread_rwlock_unlock(&x->lock);
    free(tmp);
    return rc;
}

int clmr_index_remove(clmr_index_t *x, const char *id)
{
    if (!x || !id || strlen(id) > CLMR_INDEX_ID_MAX) return CLMR_ENOT_FOUND;
    pthread_rwlock_wrlock(&x->lock);
    int rc = 0;
    size_t slot = find_slot(x, id);
    if (!x->slots[slot]) {
        rc = CLMR_ENOT_FOUND;
        goto out;
    }
    size_t row = x->slots[slot] - 1, last = x->n - 1;
    slot_delete(x, slot);
    if (row != last) {
        /* Move the last row into the hole and repoint its slot. */
        size_t ls = find_slot(x, row_id(x, last));
        memcpy(x->mat + row * x->stride, x->mat + last * x->stride, x->stride * sizeof(float));
        memcpy(x->ids + row * ID_W, x->ids + last * ID_W, ID_W);
        x->slots[ls] = (uint32_t)(row + 1);
    }
    x->n--;
out:
    pthread_rwlock_unlock(&x->lock);
    return rc;
}

int clmr_index_get(clmr_index_t *x, const char *id, float *v)
{
    if (!x || !id || !v || strlen(id) > CLMR_INDEX_ID_MAX) return CLMR_ENOT_FOUND;
    pthread_rwlock_rdlock(&x->lock);
    size_t slot = find_slot(x, id);
    int rc = 0;
    if (x->slots[slot])
        memcpy(v, x->mat + (x->slots[slot] - 1) * x->stride, (size_t)x->dim * sizeof(float));
    else
        rc = CLMR_ENOT_FOUND;
    pthread_rwlock_unlock(&x->lock);
    return rc;
}

/* ---- search ---- */

typedef struct {
    float score;
    uint32_t row;
} cand_t;

/* a ranks below b: lower score, or equal score and larger id. */
static int worse(const clmr_index_t *x, cand_t a, cand_t b)
{
    if (a.score != b.score) return a.score < b.score;
    return strcmp(row_id(x, a.row), row_id(x, b.row)) > 0;
}

static void sift_down(const clmr_index_t *x, cand_t *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && worse(x, h[l], h[m])) m = l;
        if (r < n && worse(x, h[r], h[m])) m = r;
        if (m == i) return;
        cand_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void sift_up(const clmr_index_t *x, cand_t *h, int i)
{
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!worse(x, h[i], h[p])) return;
        cand_t t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

static inline void offer(const clmr_index_t *x, cand_t *h, int *hn, int k, cand_t c)
{
    if (*hn < k) {
        h[*hn] = c;
        sift_up(x, h, (*hn)++);
    } else if (worse(x, h[0], c)) {
        h[0] = c;
        sift_down(x, h, k, 0);
    }
}

/* Caller holds the lock (shared). q: stride floats, normalised or not (ranking is the same,
 * scores are divided by |q| by the caller having normalised it). */
static int search_locked(const clmr_index_t *x, const float *q, int k, size_t exclude_row,
                         clmr_index_hit_t *hits, int *n_hits)
{
    cand_t *h = malloc((size_t)k * sizeof *h);
    if (!h) return CLMR_ENOMEM;
    int hn = 0;
    dot4_fn dot4 = pick_kernel();
    size_t n = x->n, r = 0;
    float d[4];
    for (; r + 4 <= n; r += 4) {
        dot4(q, x->mat + r * x->stride, x->stride, x->stride, d);
        for (int j = 0; j < 4; j++) {
            cand_t c = {d[j], (uint32_t)(r + j)};
            if (r + j != exclude_row && (hn < k || d[j] >= h[0].score)) offer(x, h, &hn, k, c);
        }
    }
    for (; r < n; r++) {
        /* Tail rows: the 4-row kernel would read past the matrix, so run it on row r four
         * times with stride 0 (same arithmetic, same rounding as the main loop). */
        dot4(q, x->mat + r * x->stride, 0, x->stride, d);
        cand_t c = {d[0], (uint32_t)r};
        if (r != exclude_row) offer(x, h, &hn, k, c);
    }
    /* Heap sort: pop the worst to the end, leaving best-first order. */
    for (int m = hn; m > 1; m--) {
        cand_t t = h[0];
        h[0] = h[m - 1];
        h[m - 1] = t;
        sift_down(x, h, m - 1, 0);
    }
    for (int i = 0; i < hn; i++) {
        memcpy(hits[i].id, row_id(x, h[i].row), ID_W);
        hits[i].score = h[i].score;
    }
    *n_hits = hn;
    free(h);
    return 0;
}

int clmr_index_search(clmr_index_t *x, const float *q, int k, const char *exclude_id,
                      clmr_index_hit_t *hits, int *n_hits)
{
    if (!x || !q || !hits || !n_hits || k < 1 || k > 10000) return CLMR_EINVAL;
    *n_hits = 0;
    float *qn = NULL;
    if (posix_memalign((void **)&qn, 64, x->stride * sizeof(float))) return CLMR_ENOMEM;
    int rc = normalise(q, x->dim, x->stride, qn);
    if (rc) {
        free(qn);
        return rc;
    }
    pthread_rwlock_rdlock(&x->lock);
    size_t ex = SIZE_MAX;
    if (exclude_id && strlen(exclude_id) <= CLMR_INDEX_ID_MAX) {
        size_t slot = find_slot(x, exclude_id);
        if (x->slots[slot]) ex = x->slots[slot] - 1;
    }
    rc = search_locked(x, qn, k, ex, hits, n_hits);
    pthread_rwlock_unlock(&x->lock);
    free(qn);
    return rc;
}

int clmr_index_search_id(clmr_index_t *x, const char *id, int k, clmr_index_hit_t *hits,
                         int *n_hits)
{
    if (!x || !id || !hits || !n_hits || k < 1 || k > 10000) return CLMR_EINVAL;
    *n_hits = 0;
    if (strlen(id) > CLMR_INDEX_ID_MAX) return CLMR_ENOT_FOUND;
    float *qn = NULL;
    if (posix_memalign((void **)&qn, 64, x->stride * sizeof(float))) return CLMR_ENOMEM;
    pthread_rwlock_rdlock(&x->lock);
    int rc;
    size_t slot = find_slot(x, id);
    if (!x->slots[slot]) {
        rc = CLMR_ENOT_FOUND;
    } else {
        size_t row = x->slots[slot] - 1;
        memcpy(qn, x->mat + row * x->stride, x->stride * sizeof(float));
        rc = search_locked(x, qn, k, row, hits, n_hits);
    }
    pthread_rwlock_unlock(&x->lock);
    free(qn);
    return rc;
}

/* ---- loading from the store ---- */

typedef struct {
    clmr_index_t *x;
    size_t loaded;
    char **errmsg;
} load_ctx_t;

static int load_cb(void *ud, const char *track_id, const float *v, int dim)
{
    load_ctx_t *c = ud;
    if (dim != c->x->dim)
        return clmr_set_err(c->errmsg, CLMR_EINVAL,
                            "embedding of %s has dimension %d, the index %d", track_id, dim,
                            c->x->dim);
    int rc = clmr_index_upsert(c->x, track_id, v);
    if (rc) return clmr_set_err(c->errmsg, rc, "cannot index the embedding of %s", track_id);
    c->loaded++;
    return 0;
}

int clmr_index_load(clmr_index_t *x, clmr_store_t *store, const char *model_id, size_t *loaded,
                    char **errmsg)
{
    if (!x || !store || !model_id) return CLMR_EINVAL;
    int64_t count = 0;
    int rc = clmr_store_embedding_count(store, model_id, &count, errmsg);
    if (rc) return rc;
    pthread_rwlock_wrlock(&x->lock);
    rc = grow(x, x->n + (size_t)count); /* one allocation instead of log(n) copies */
    pthread_rwlock_unlock(&x->lock);
    if (rc) return clmr_set_err(errmsg, rc, "cannot reserve the index for %lld rows",
                                (long long)count);
    load_ctx_t c = {x, 0, errmsg};
    rc = clmr_store_embedding_foreach(store, model_id, load_cb, &c, errmsg);
    if (loaded) *loaded = c.loaded;
    return rc;
}
