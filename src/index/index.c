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
 *
 * Approximate backends (ann.h, FAISS) sit beside the matrix, never instead of it: the section at
 * the end builds one in a background thread from a snapshot of the rows, installs it with a
 * catch-up pass under the write lock, keeps it current on upsert/remove (label[] maps rows to ANN
 * labels), and a search then takes the ANN's candidates and re-scores them against the fp32 rows,
 * so scores and ordering among the candidates are the exact scan's; only recall is approximate.
 */
#include "index/index.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "clmr/error.h"
#include "index/ann.h"

#define ID_W (CLMR_INDEX_ID_MAX + 1)

struct clmr_index {
    int dim;
    size_t stride; /* floats per row: dim rounded up to 16 */
    float *mat;    /* cap * stride floats, 64-byte aligned: the exact vectors */
    int8_t *codes; /* cap * stride: mat quantised per row (mat ~ qscale * codes) */
    float *qscale; /* cap: per-row quantisation scale */
    float *qbound; /* cap: bound on |exact fp32 score - approximate int8 score| for unit q */
    char *ids;     /* cap * ID_W bytes */
    size_t n, cap;
    atomic_size_t n_pub; /* n as of the last write, read without the lock (metrics, size) */
    uint32_t *slots;     /* hash table: row + 1, 0 = empty */
    size_t hcap;         /* power of two, >= 2 * cap */
    pthread_rwlock_t lock;
    /* approximate backend (see the last section); everything below is guarded by lock */
    int64_t *label;  /* cap: the row's ANN label, -1 = not in the ANN (yet) */
    clmr_ann_t *ann; /* installed: searches use it; NULL = exact scan */
    clmr_index_backend_t backend;
    size_t auto_min;       /* AUTO: rows from which an ANN is built */
    int loading;           /* clmr_index_load running: build once at its end, not per row */
    int building;          /* a builder thread exists (joined in destroy or once finished) */
    atomic_int build_done; /* the builder has finished and only needs joining */
    pthread_t builder;
    atomic_int stop; /* destroy asks the builder to give up */
};

static void ann_row_upserted(clmr_index_t *x, size_t row, int changed);
static void ann_row_removed(clmr_index_t *x, size_t row, size_t last);
static void ann_maybe_build(clmr_index_t *x);
static int ann_search_locked(const clmr_index_t *x, const float *q, int k, size_t exclude_row,
                             clmr_index_hit_t *hits, int *n_hits);

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

/* Approximate scores against the int8 codes: out[j] = sum_i q[i] * codes_j[i] (unscaled). */
typedef void (*qdot4_fn)(const float *q, const int8_t *r0, size_t stride, size_t len, float out[4]);

__attribute__((target("avx512f"))) static inline __m512 load_i8_ps(const int8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}

__attribute__((target("avx512f"))) static void qdot4_avx512(const float *q, const int8_t *r,
                                                            size_t stride, size_t len, float out[4])
{
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(),
           a3 = _mm512_setzero_ps();
    const int8_t *r0 = r, *r1 = r + stride, *r2 = r + 2 * stride, *r3 = r + 3 * stride;
    for (size_t i = 0; i < len; i += 16) {
        __m512 qv = _mm512_load_ps(q + i);
        a0 = _mm512_fmadd_ps(qv, load_i8_ps(r0 + i), a0);
        a1 = _mm512_fmadd_ps(qv, load_i8_ps(r1 + i), a1);
        a2 = _mm512_fmadd_ps(qv, load_i8_ps(r2 + i), a2);
        a3 = _mm512_fmadd_ps(qv, load_i8_ps(r3 + i), a3);
    }
    out[0] = _mm512_reduce_add_ps(a0);
    out[1] = _mm512_reduce_add_ps(a1);
    out[2] = _mm512_reduce_add_ps(a2);
    out[3] = _mm512_reduce_add_ps(a3);
}

/* AVX2 + FMA twins (most x86-64 CPUs without AVX-512): 8 lanes, same structure. */
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 sh = _mm_movehdup_ps(s);
    s = _mm_add_ps(s, sh);
    sh = _mm_movehl_ps(sh, s);
    return _mm_cvtss_f32(_mm_add_ss(s, sh));
}

__attribute__((target("avx2,fma"))) static void dot4_avx2(const float *q, const float *r,
                                                          size_t stride, size_t len, float out[4])
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps();
    const float *r0 = r, *r1 = r + stride, *r2 = r + 2 * stride, *r3 = r + 3 * stride;
    for (size_t i = 0; i < len; i += 8) {
        __m256 qv = _mm256_load_ps(q + i);
        a0 = _mm256_fmadd_ps(qv, _mm256_load_ps(r0 + i), a0);
        a1 = _mm256_fmadd_ps(qv, _mm256_load_ps(r1 + i), a1);
        a2 = _mm256_fmadd_ps(qv, _mm256_load_ps(r2 + i), a2);
        a3 = _mm256_fmadd_ps(qv, _mm256_load_ps(r3 + i), a3);
    }
    out[0] = hsum256(a0);
    out[1] = hsum256(a1);
    out[2] = hsum256(a2);
    out[3] = hsum256(a3);
}

__attribute__((target("avx2,fma"))) static inline __m256 load_i8_ps256(const int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}

__attribute__((target("avx2,fma"))) static void qdot4_avx2(const float *q, const int8_t *r,
                                                           size_t stride, size_t len, float out[4])
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps();
    const int8_t *r0 = r, *r1 = r + stride, *r2 = r + 2 * stride, *r3 = r + 3 * stride;
    for (size_t i = 0; i < len; i += 8) {
        __m256 qv = _mm256_load_ps(q + i);
        a0 = _mm256_fmadd_ps(qv, load_i8_ps256(r0 + i), a0);
        a1 = _mm256_fmadd_ps(qv, load_i8_ps256(r1 + i), a1);
        a2 = _mm256_fmadd_ps(qv, load_i8_ps256(r2 + i), a2);
        a3 = _mm256_fmadd_ps(qv, load_i8_ps256(r3 + i), a3);
    }
    out[0] = hsum256(a0);
    out[1] = hsum256(a1);
    out[2] = hsum256(a2);
    out[3] = hsum256(a3);
}

/* A kernel set. The scalar set has no int8 kernel: without SIMD the int8->float conversions cost
 * more than the bandwidth they save (measured), so it always runs the plain fp32 scan. */
typedef struct {
    const char *name;
    dot4_fn dot4;
    qdot4_fn qdot4; /* NULL: no prefilter */
} kernel_t;

static const kernel_t KERNELS[] = {
    {"scalar", dot4_scalar, NULL},
    {"avx2", dot4_avx2, qdot4_avx2},
    {"avx512", dot4_avx512, qdot4_avx512},
};

static atomic_int kernel_override = -1; /* -1 auto, else an index into KERNELS */
static atomic_int best_kernel = -1;     /* cached CPU check; idempotent, so races agree */
static atomic_int prefilter = 1;
/* backend of indexes created from now on (clmr_index_set_default_backend) */
static _Atomic clmr_index_backend_t default_backend = CLMR_INDEX_EXACT;
static atomic_size_t default_auto_min = CLMR_INDEX_AUTO_MIN_DEFAULT;

static int cpu_best(void)
{
    int c = atomic_load_explicit(&best_kernel, memory_order_relaxed);
    if (c < 0) {
        __builtin_cpu_init();
        c = __builtin_cpu_supports("avx512f")                                   ? 2
            : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1
                                                                                : 0;
        atomic_store_explicit(&best_kernel, c, memory_order_relaxed);
    }
    return c;
}

static const kernel_t *pick_kernel(void)
{
    int o = atomic_load_explicit(&kernel_override, memory_order_relaxed);
    return &KERNELS[o >= 0 ? o : cpu_best()];
}

const char *clmr_index_kernel_name(void)
{
    return pick_kernel()->name;
}

int clmr_index_set_kernel(const char *name)
{
    if (!name || !strcmp(name, "auto")) {
        atomic_store_explicit(&kernel_override, -1, memory_order_relaxed);
        return 0;
    }
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, KERNELS[i].name)) {
            if (i > cpu_best()) return CLMR_EINVAL; /* this CPU cannot run it */
            atomic_store_explicit(&kernel_override, i, memory_order_relaxed);
            return 0;
        }
    return CLMR_EINVAL;
}

void clmr_index_set_prefilter(int on)
{
    atomic_store_explicit(&prefilter, on ? 1 : 0, memory_order_relaxed);
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
    int8_t *nc = NULL;
    size_t cbytes = ncap * x->stride;
    size_t calign = cbytes >= (8u << 20) ? (2u << 20) : 64;
    if (posix_memalign((void **)&nc, calign, cbytes)) nc = NULL;
    if (nc && calign > 64) madvise(nc, cbytes, MADV_HUGEPAGE);
    char *ni = malloc(ncap * ID_W);
    float *nsc = malloc(ncap * sizeof(float)), *nb = malloc(ncap * sizeof(float));
    int64_t *nl = realloc(x->label, ncap * sizeof *nl);
    if (nl) x->label = nl;
    if (!ni || !nc || !nsc || !nb || !nl) {
        free(nm);
        free(nc);
        free(ni);
        free(nsc);
        free(nb);
        return CLMR_ENOMEM;
    }
    if (x->n) {
        memcpy(nm, x->mat, x->n * x->stride * sizeof(float));
        memcpy(nc, x->codes, x->n * x->stride);
        memcpy(ni, x->ids, x->n * ID_W);
        memcpy(nsc, x->qscale, x->n * sizeof(float));
        memcpy(nb, x->qbound, x->n * sizeof(float));
    }
    free(x->mat);
    free(x->codes);
    free(x->ids);
    free(x->qscale);
    free(x->qbound);
    x->mat = nm;
    x->codes = nc;
    x->ids = ni;
    x->qscale = nsc;
    x->qbound = nb;
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
    x->backend = atomic_load(&default_backend);
    x->auto_min = atomic_load(&default_auto_min);
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
    pthread_rwlock_wrlock(&x->lock);
    int building = x->building;
    atomic_store(&x->stop, 1);
    pthread_rwlock_unlock(&x->lock);
    if (building) pthread_join(x->builder, NULL);
    pthread_rwlock_destroy(&x->lock);
    free(x->mat);
    free(x->codes);
    free(x->qscale);
    free(x->qbound);
    free(x->ids);
    free(x->slots);
    clmr_ann_close(&x->ann);
    free(x->label);
    free(x);
    *idx = NULL;
}

int clmr_index_dim(const clmr_index_t *idx)
{
    return idx->dim;
}

size_t clmr_index_size(clmr_index_t *idx)
{
    /* No lock: a writer may hold it while the matrices grow, and /metrics must not wait. */
    return atomic_load(&idx->n_pub);
}

void clmr__index_hold_lock(clmr_index_t *idx, int hold)
{
    if (hold)
        pthread_rwlock_wrlock(&idx->lock);
    else
        pthread_rwlock_unlock(&idx->lock);
}

size_t clmr_index_memory(clmr_index_t *idx)
{
    pthread_rwlock_rdlock(&idx->lock);
    size_t b =
        sizeof *idx + idx->cap * (idx->stride * (sizeof(float) + 1) + ID_W + 2 * sizeof(float)) +
        idx->hcap * sizeof(uint32_t) + idx->cap * sizeof(int64_t) + clmr_ann_memory(idx->ann);
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

/* Float rounding allowance of one dot product of unit vectors of length `stride` accumulated in
 * float32 (|error| <= n u sum|a_i b_i| <= n u with u = 2^-24), doubled for the two computations
 * being compared (exact and approximate), with margin for the horizontal reduction. */
static float rounding_allowance(size_t stride)
{
    return (float)(2.5 * (double)(stride + 32) / 16777216.0);
}

/* Per-row symmetric int8 quantisation of a normalised row and the bound used by the prefilter:
 * |q.v - scale * q.codes| <= |q| |v - scale codes| = err for any unit q (Cauchy-Schwarz), plus
 * the float rounding of both dot products. */
static void quantise(const float *v, size_t stride, int8_t *codes, float *scale, float *bound)
{
    float m = 0;
    for (size_t i = 0; i < stride; i++)
        m = fmaxf(m, fabsf(v[i]));
    double sc = m > 0 ? (double)m / 127.0 : 1.0, err = 0;
    for (size_t i = 0; i < stride; i++) {
        long c = lrint((double)v[i] / sc);
        c = c > 127 ? 127 : c < -127 ? -127 : c;
        codes[i] = (int8_t)c;
        double d = (double)v[i] - sc * (double)c;
        err += d * d;
    }
    *scale = (float)sc;
    /* float(sc) is within 2^-24 relative of sc: adds <= ~2^-24 to |q.(scale codes)|. */
    *bound = (float)(sqrt(err) * 1.001 + 2.0 / 16777216.0) + rounding_allowance(stride);
}

int clmr_index_upsert(clmr_index_t *x, const char *id, const float *v)
{
    if (!x || !id || !id[0] || !v || strlen(id) > CLMR_INDEX_ID_MAX) return CLMR_EINVAL;
    float *tmp = NULL, qs = 0, qb = 0;
    /* Normalise and quantise outside the lock so writers hold it for as short as possible. */
    if (posix_memalign((void **)&tmp, 64, x->stride * (sizeof(float) + 1))) return CLMR_ENOMEM;
    int8_t *codes = (int8_t *)(tmp + x->stride);
    int rc = normalise(v, x->dim, x->stride, tmp);
    if (rc) {
        free(tmp);
        return rc;
    }
    quantise(tmp, x->stride, codes, &qs, &qb);
    pthread_rwlock_wrlock(&x->lock);
    size_t slot = find_slot(x, id);
    size_t row;
    int changed = 1;
    if (x->slots[slot]) {
        row = x->slots[slot] - 1;
        changed = memcmp(x->mat + row * x->stride, tmp, x->stride * sizeof(float)) != 0;
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
        x->label[row] = -1;
    }
    memcpy(x->mat + row * x->stride, tmp, x->stride * sizeof(float));
    memcpy(x->codes + row * x->stride, codes, x->stride);
    x->qscale[row] = qs;
    x->qbound[row] = qb;
    ann_row_upserted(x, row, changed);
out:
    atomic_store(&x->n_pub, x->n);
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
    ann_row_removed(x, row, last);
    slot_delete(x, slot);
    if (row != last) {
        /* Move the last row into the hole and repoint its slot. */
        size_t ls = find_slot(x, row_id(x, last));
        memcpy(x->mat + row * x->stride, x->mat + last * x->stride, x->stride * sizeof(float));
        memcpy(x->codes + row * x->stride, x->codes + last * x->stride, x->stride);
        x->qscale[row] = x->qscale[last];
        x->qbound[row] = x->qbound[last];
        memcpy(x->ids + row * ID_W, x->ids + last * ID_W, ID_W);
        x->slots[ls] = (uint32_t)(row + 1);
    }
    x->n--;
    atomic_store(&x->n_pub, x->n);
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

/* Min-heap of floats (the k best lower bounds seen so far). */
static void fheap_offer(float *h, int *hn, int k, float v)
{
    int i;
    if (*hn < k) {
        i = (*hn)++;
        h[i] = v;
        while (i > 0 && h[(i - 1) / 2] > h[i]) {
            float t = h[i];
            h[i] = h[(i - 1) / 2];
            h[(i - 1) / 2] = t;
            i = (i - 1) / 2;
        }
        return;
    }
    if (v <= h[0]) return;
    h[0] = v;
    for (i = 0;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && h[l] < h[m]) m = l;
        if (r < k && h[r] < h[m]) m = r;
        if (m == i) return;
        float t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* Exact top-k with an int8 prefilter (caller holds the lock, q normalised and padded).
 * Pass over the int8 codes (a quarter of the fp32 bytes: the scan is memory-bound) computing
 * approximate scores a_r with a per-row bound b_r on |exact - a_r|. L = the k-th best lower bound
 * (a - b) seen so far only grows; a row whose upper bound a + b is below L has k rows certainly
 * better than it, so it cannot be in the top-k and is skipped. Every other row is re-scored with
 * the fp32 kernel (bit-identical to the full scan's score) and offered to the exact heap, so the
 * result equals the full scan's. */
static int search_prefiltered(const clmr_index_t *x, const float *q, int k, size_t exclude_row,
                              cand_t *h, int *hn_out)
{
    float *lb = malloc((size_t)k * sizeof *lb);
    if (!lb) return CLMR_ENOMEM;
    int hn = 0, ln = 0;
    const kernel_t *kern = pick_kernel();
    qdot4_fn qdot4 = kern->qdot4;
    dot4_fn dot4 = kern->dot4;
    size_t n = x->n, st = x->stride;
    float a[4], d[4];
    for (size_t r = 0; r < n; r += 4) {
        size_t m = n - r < 4 ? n - r : 4;
        if (m == 4) qdot4(q, x->codes + r * st, st, st, a);
        for (size_t j = 0; j < m; j++) {
            size_t row = r + j;
            if (row == exclude_row) continue;
            /* Tail rows one at a time: stride 0 makes the 4-row kernel re-read the same row
             * instead of reading past the matrix. */
            if (m < 4) qdot4(q, x->codes + row * st, 0, st, a);
            float ap = a[m == 4 ? j : 0] * x->qscale[row], b = x->qbound[row];
            if (ln == k && ap + b < lb[0]) continue;
            fheap_offer(lb, &ln, k, ap - b);
            dot4(q, x->mat + row * st, 0, st, d);
            offer(x, h, &hn, k, (cand_t){d[0], (uint32_t)row});
        }
    }
    free(lb);
    *hn_out = hn;
    return 0;
}

/* Heap sort: pop the worst to the end, leaving best-first order; then copy out. */
static void emit_hits(const clmr_index_t *x, cand_t *h, int hn, clmr_index_hit_t *hits, int *n_hits)
{
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
}

/* Caller holds the lock (shared). q: stride floats, normalised or not (ranking is the same,
 * scores are divided by |q| by the caller having normalised it). */
static int search_locked(const clmr_index_t *x, const float *q, int k, size_t exclude_row,
                         clmr_index_hit_t *hits, int *n_hits)
{
    if (x->ann) return ann_search_locked(x, q, k, exclude_row, hits, n_hits);
    cand_t *h = malloc((size_t)k * sizeof *h);
    if (!h) return CLMR_ENOMEM;
    int hn = 0;
    const kernel_t *kern = pick_kernel();
    dot4_fn dot4 = kern->dot4;
    size_t n = x->n, r = 0;
    float d[4];
    if (kern->qdot4 && atomic_load_explicit(&prefilter, memory_order_relaxed)) {
        int rc = search_prefiltered(x, q, k, exclude_row, h, &hn);
        if (rc) {
            free(h);
            return rc;
        }
        r = n; /* skip the full scan below */
    }
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
    emit_hits(x, h, hn, hits, n_hits);
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
    /* One allocation instead of log(n) copies, with 25% headroom: otherwise the first ingest
     * after start-up would copy the whole matrix (seconds at 1M tracks) under the write lock.
     * Untouched headroom pages cost address space, not resident memory. */
    size_t want = x->n + (size_t)count;
    rc = grow(x, want + want / 4 + 64);
    if (!rc) x->loading++;
    pthread_rwlock_unlock(&x->lock);
    if (rc)
        return clmr_set_err(errmsg, rc, "cannot reserve the index for %lld rows", (long long)count);
    load_ctx_t c = {x, 0, errmsg};
    rc = clmr_store_embedding_foreach(store, model_id, load_cb, &c, errmsg);
    if (loaded) *loaded = c.loaded;
    pthread_rwlock_wrlock(&x->lock);
    x->loading--;
    ann_maybe_build(x); /* in the background: the caller can serve exact searches meanwhile */
    pthread_rwlock_unlock(&x->lock);
    return rc;
}

/* ---- approximate backend (ann.h) ---- */

static const char *const BACKEND_NAMES[] = {"exact", "auto", "hnsw", "ivfpq"};

int clmr_index_backend_parse(const char *name, clmr_index_backend_t *out)
{
    for (int i = 0; name && i < 4; i++)
        if (!strcmp(name, BACKEND_NAMES[i])) {
            *out = (clmr_index_backend_t)i;
            return 0;
        }
    return CLMR_EINVAL;
}

void clmr_index_set_default_backend(clmr_index_backend_t b, size_t auto_min)
{
    atomic_store(&default_backend, b);
    atomic_store(&default_auto_min, auto_min ? auto_min : 1);
}

int clmr_index_set_backend(clmr_index_t *x, clmr_index_backend_t b, size_t auto_min)
{
    if (!x || (int)b < 0 || (int)b > CLMR_INDEX_IVFPQ) return CLMR_EINVAL;
    pthread_rwlock_wrlock(&x->lock);
    x->backend = b;
    x->auto_min = auto_min ? auto_min : 1;
    if (b == CLMR_INDEX_EXACT) clmr_ann_close(&x->ann); /* a running build is discarded below */
    ann_maybe_build(x);
    pthread_rwlock_unlock(&x->lock);
    return 0;
}

const char *clmr_index_backend_name(clmr_index_t *x)
{
    pthread_rwlock_rdlock(&x->lock);
    const char *n = x->ann ? clmr_ann_kind_name(clmr_ann_params(x->ann).kind) : "exact";
    pthread_rwlock_unlock(&x->lock);
    return n;
}

int clmr_index_approx_pending(clmr_index_t *x)
{
    pthread_rwlock_rdlock(&x->lock);
    int b = x->building && !atomic_load(&x->build_done);
    pthread_rwlock_unlock(&x->lock);
    return b;
}

/* Which ANN a catalogue of n rows gets, 0 = none (exact scan). */
static clmr_ann_kind_t kind_for(const clmr_index_t *x, size_t n)
{
    switch (x->backend) {
    case CLMR_INDEX_HNSW:
        return n >= 1 ? CLMR_ANN_HNSW : 0;
    case CLMR_INDEX_IVFPQ:
        return n >= CLMR_INDEX_IVFPQ_MIN_ROWS ? CLMR_ANN_IVFPQ : 0;
    case CLMR_INDEX_AUTO:
        if (n < x->auto_min) return 0;
        /* Above this the HNSW's own fp32 copy would double the matrix's memory; the IVF-PQ's
         * codes cost ~1/30 of it (docs/scaling.md). */
        return n >= CLMR_INDEX_AUTO_IVFPQ_ROWS && n >= CLMR_INDEX_IVFPQ_MIN_ROWS ? CLMR_ANN_IVFPQ
                                                                                 : CLMR_ANN_HNSW;
    default:
        return 0;
    }
}

/* Caller holds the write lock. A row's vector was written (changed = it differs from before). */
static void ann_row_upserted(clmr_index_t *x, size_t row, int changed)
{
    if (!changed && (x->label[row] >= 0 || !x->ann)) return;
    if (x->ann) {
        clmr_ann_delete(x->ann, x->label[row]);
        x->label[row] = -1;
        if (clmr_ann_add(x->ann, 1, x->mat + row * x->stride, (const char *const[]){row_id(x, row)},
                         NULL) == 0)
            x->label[row] = (int64_t)clmr_ann_labels(x->ann) - 1;
        /* else: the row stays out of the ANN (found by exact searches only) until the next
         * rebuild; the only failure is out-of-memory. */
        return;
    }
    x->label[row] = -1; /* a builder running now adds it in its catch-up pass */
    if (!x->loading) ann_maybe_build(x);
}

/* Caller holds the write lock; row is being removed and last moves into it. */
static void ann_row_removed(clmr_index_t *x, size_t row, size_t last)
{
    if (x->ann) clmr_ann_delete(x->ann, x->label[row]);
    x->label[row] = x->label[last];
}

/* Re-scores the ANN's candidates against the fp32 rows (caller holds the lock, shared). Asks for
 * clmr_ann_candidates(k) of them: the re-scoring puts the exact top-k of those first, which
 * recovers what the ANN's own approximate ordering (PQ codes) would lose. */
static int ann_search_locked(const clmr_index_t *x, const float *q, int k, size_t exclude_row,
                             clmr_index_hit_t *hits, int *n_hits)
{
    int kc = clmr_ann_candidates(x->ann, k);
    int64_t *lab = malloc((size_t)kc * sizeof *lab);
    float *sc = malloc((size_t)kc * sizeof *sc);
    cand_t *h = malloc((size_t)k * sizeof *h);
    int rc = CLMR_ENOMEM, m = 0, hn = 0;
    if (!lab || !sc || !h) goto out;
    if ((rc = clmr_ann_search(x->ann, q, kc, lab, sc, &m, NULL))) goto out;
    dot4_fn dot4 = pick_kernel()->dot4;
    float d[4];
    for (int i = 0; i < m; i++) {
        const char *id = clmr_ann_id(x->ann, lab[i]);
        if (!id) continue;
        uint32_t s = x->slots[find_slot(x, id)];
        /* a label that no longer names the row's current vector cannot be live; checked anyway
         * so that a stale label can never return a deleted or replaced track */
        if (!s || x->label[s - 1] != lab[i] || s - 1 == exclude_row) continue;
        dot4(q, x->mat + (size_t)(s - 1) * x->stride, 0, x->stride, d);
        offer(x, h, &hn, k, (cand_t){d[0], s - 1});
    }
    emit_hits(x, h, hn, hits, n_hits);
    rc = 0;
out:
    free(lab);
    free(sc);
    free(h);
    return rc;
}

/* Builds an ANN from a snapshot of the rows without holding the lock, then installs it under the
 * write lock after a catch-up pass: rows added or replaced meanwhile (label -1) are added, rows
 * removed or replaced have their snapshot labels left deleted. */
static void *builder_main(void *arg)
{
    clmr_index_t *x = arg;
    clmr_ann_t *a = NULL;
    float *snap = NULL, *train = NULL;
    char *ids = NULL;
    const char **idp = NULL;
    size_t dim = (size_t)x->dim;
    /* One OpenMP thread: the build is background work beside the request path. */
    omp_set_num_threads(1);
    pthread_rwlock_wrlock(&x->lock);
    size_t n = x->n;
    clmr_ann_kind_t kind = kind_for(x, n);
    if (kind) {
        snap = malloc(n * dim * sizeof(float));
        ids = malloc(n * ID_W);
        idp = malloc(n * sizeof *idp);
    }
    if (!kind || !snap || !ids || !idp) {
        pthread_rwlock_unlock(&x->lock);
        goto done;
    }
    for (size_t r = 0; r < n; r++) {
        memcpy(snap + r * dim, x->mat + r * x->stride, dim * sizeof(float));
        memcpy(ids + r * ID_W, row_id(x, r), ID_W);
        idp[r] = ids + r * ID_W;
        x->label[r] = (int64_t)r;
    }
    pthread_rwlock_unlock(&x->lock);
    clmr_ann_params_t p = clmr_ann_default_params(kind, x->dim, n);
    if (clmr_ann_open(&a, &p, NULL)) goto done;
    if (clmr_ann_needs_training(a)) {
        /* ~40 vectors per list, spread over the whole catalogue */
        size_t nt = (size_t)p.nlist * 40 < n ? (size_t)p.nlist * 40 : n;
        if (!(train = malloc(nt * dim * sizeof(float)))) goto done;
        for (size_t i = 0; i < nt; i++)
            memcpy(train + i * dim, snap + (i * (n / nt)) * dim, dim * sizeof(float));
        int rc = clmr_ann_train(a, nt, train, NULL);
        free(train);
        train = NULL;
        if (rc) goto done;
    }
    for (size_t r = 0; r < n && !atomic_load(&x->stop); r += 4096) {
        size_t b = n - r < 4096 ? n - r : 4096;
        if (clmr_ann_add(a, b, snap + r * dim, idp + r, NULL)) goto done;
    }
    free(snap);
    snap = NULL;
    pthread_rwlock_wrlock(&x->lock);
    if (!atomic_load(&x->stop) && kind_for(x, x->n)) {
        clmr_ann_delete_all(a);
        int ok = 1;
        for (size_t r = 0; r < x->n && ok; r++) {
            if (x->label[r] >= 0 && (size_t)x->label[r] < n) {
                clmr_ann_undelete(a, x->label[r]);
            } else {
                ok = clmr_ann_add(a, 1, x->mat + r * x->stride, (const char *const[]){row_id(x, r)},
                                  NULL) == 0;
                x->label[r] = (int64_t)clmr_ann_labels(a) - 1;
            }
        }
        if (ok) {
            clmr_ann_close(&x->ann);
            x->ann = a;
            a = NULL;
        }
    }
    pthread_rwlock_unlock(&x->lock);
done:
    clmr_ann_close(&a);
    free(snap);
    free(train);
    free(ids);
    free(idp);
    /* building is cleared by whoever joins it: destroy, or the next ann_maybe_build */
    atomic_store(&x->build_done, 1);
    return NULL;
}

/* Caller holds the write lock. Starts a builder when the backend wants an ANN and none exists. */
static void ann_maybe_build(clmr_index_t *x)
{
    if (x->ann || x->loading || atomic_load(&x->stop) || !kind_for(x, x->n)) return;
    if (x->building) {
        /* A running builder catches up with the rows itself. One that finished without
         * installing (failure, or the backend changed meanwhile) is reaped and replaced; its
         * last step was setting build_done, so the join does not wait on this lock. */
        if (!atomic_load(&x->build_done)) return;
        pthread_join(x->builder, NULL);
        x->building = 0;
    }
    atomic_store(&x->build_done, 0);
    if (pthread_create(&x->builder, NULL, builder_main, x) == 0) x->building = 1;
}
