/* ann.c - tombstones, ids, size-tuned parameters and files around the FAISS shim (see ann.h). */
#include "index/ann.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clmr/error.h"
#include "index/faiss_shim.h"
#include "index/index.h"

#define ID_W (CLMR_INDEX_ID_MAX + 1)
#define SIDECAR_MAGIC "CLMRANN1"

struct clmr_ann {
    clmr_ann_params_t p;
    clmr_fx_t *fx;
    uint8_t *live; /* one bit per label, LSB first */
    char *ids;     /* cap * ID_W when p.store_ids */
    size_t n, cap, n_live;
};

const char *clmr_ann_kind_name(clmr_ann_kind_t kind)
{
    return kind == CLMR_ANN_IVFPQ ? "ivfpq" : "hnsw";
}

clmr_ann_params_t clmr_ann_default_params(clmr_ann_kind_t kind, int dim, size_t n)
{
    clmr_ann_params_t p = {.kind = kind, .dim = dim, .store_ids = 1};
    /* M=16 / efConstruction=40: Debian's FAISS is built for baseline x86-64 (SSE2 distances),
     * so inserts are CPU-bound; larger values cost build time for little recall here since the
     * daemon re-scores 2k+16 candidates (docs/scaling.md). */
    p.hnsw_m = 16;
    p.ef_construction = 40;
    /* 100k clustered 512-d vectors (bench_ann, docs/scaling.md): recall@10 0.944 at 64, 0.988
     * at 128 for ~2x the latency, 0.992 at 256 */
    p.ef_search = 128;
    /* nlist ~ 4 sqrt(n): lists of ~sqrt(n)/4 vectors balance the centroid search against the
     * list scans; a power of two keeps the tuning table in docs/scaling.md readable. */
    double want = 4.0 * sqrt((double)(n ? n : 1));
    int nl = 256;
    while (nl < 16384 && nl * 2 <= want)
        nl *= 2;
    p.nlist = nl;
    p.pq_m = 8;
    const int cands[] = {dim / 8, 64, 32, 16, 8};
    for (size_t i = 0; i < sizeof cands / sizeof cands[0]; i++)
        if (cands[i] >= 1 && cands[i] <= 64 && dim % cands[i] == 0) {
            p.pq_m = cands[i];
            break;
        }
    if (dim % p.pq_m) p.pq_m = 1;
    p.nprobe = nl / 64 < 16 ? 16 : nl / 64;
    return p;
}

static int check_params(const clmr_ann_params_t *p)
{
    if (!p || p->dim < 1 || p->dim > 65536) return CLMR_EINVAL;
    if (p->kind == CLMR_ANN_HNSW)
        return p->hnsw_m >= 4 && p->hnsw_m <= 128 && p->ef_construction >= p->hnsw_m &&
                       p->ef_search >= 1
                   ? 0
                   : CLMR_EINVAL;
    if (p->kind == CLMR_ANN_IVFPQ)
        return p->nlist >= 1 && p->pq_m >= 1 && p->dim % p->pq_m == 0 && p->nprobe >= 1
                   ? 0
                   : CLMR_EINVAL;
    return CLMR_EINVAL;
}

int clmr_ann_open(clmr_ann_t **out, const clmr_ann_params_t *p, char **errmsg)
{
    if (!out) return CLMR_EINVAL;
    *out = NULL;
    if (check_params(p)) return clmr_set_err(errmsg, CLMR_EINVAL, "bad ANN index parameters");
    clmr_ann_t *a = calloc(1, sizeof *a);
    if (!a) return CLMR_ENOMEM;
    a->p = *p;
    int rc = p->kind == CLMR_ANN_HNSW
                 ? clmr_fx_new_hnsw(&a->fx, p->dim, p->hnsw_m, p->ef_construction, errmsg)
                 : clmr_fx_new_ivfpq(&a->fx, p->dim, p->nlist, p->pq_m, errmsg);
    if (rc) {
        free(a);
        return rc;
    }
    clmr_fx_set_effort(a->fx, p->kind == CLMR_ANN_HNSW ? p->ef_search : p->nprobe);
    *out = a;
    return 0;
}

void clmr_ann_close(clmr_ann_t **a)
{
    if (!a || !*a) return;
    clmr_fx_free(&(*a)->fx);
    free((*a)->live);
    free((*a)->ids);
    free(*a);
    *a = NULL;
}

int clmr_ann_needs_training(const clmr_ann_t *a)
{
    return clmr_fx_is_trained(a->fx) ? 0 : 1;
}

int clmr_ann_train(clmr_ann_t *a, size_t n, const float *x, char **errmsg)
{
    if (!a || !x) return CLMR_EINVAL;
    if (a->p.kind == CLMR_ANN_IVFPQ && n < (size_t)a->p.nlist)
        return clmr_set_err(errmsg, CLMR_EINVAL, "IVF-PQ training needs at least %d vectors",
                            a->p.nlist);
    return clmr_fx_train(a->fx, n, x, errmsg);
}

static int reserve(clmr_ann_t *a, size_t want)
{
    if (want <= a->cap) return 0;
    size_t cap = a->cap ? a->cap : 1024;
    while (cap < want)
        cap += cap / 2;
    uint8_t *live = realloc(a->live, (cap + 7) / 8);
    if (!live) return CLMR_ENOMEM;
    memset(live + (a->cap + 7) / 8, 0, (cap + 7) / 8 - (a->cap + 7) / 8);
    a->live = live;
    if (a->p.store_ids) {
        char *ids = realloc(a->ids, cap * ID_W);
        if (!ids) return CLMR_ENOMEM;
        a->ids = ids;
    }
    a->cap = cap;
    return 0;
}

int clmr_ann_add(clmr_ann_t *a, size_t n, const float *x, const char *const *ids, char **errmsg)
{
    if (!a || (n && !x) || (a->p.store_ids && n && !ids)) return CLMR_EINVAL;
    if (a->p.store_ids)
        for (size_t i = 0; i < n; i++)
            if (!ids[i] || strlen(ids[i]) > CLMR_INDEX_ID_MAX) return CLMR_EINVAL;
    int rc = reserve(a, a->n + n);
    if (rc) return rc;
    if ((rc = clmr_fx_add(a->fx, n, x, errmsg))) return rc;
    for (size_t i = 0; i < n; i++) {
        size_t l = a->n + i;
        a->live[l / 8] |= (uint8_t)(1u << (l % 8));
        if (a->p.store_ids) {
            memset(a->ids + l * ID_W, 0, ID_W);
            strcpy(a->ids + l * ID_W, ids[i]);
        }
    }
    a->n += n;
    a->n_live += n;
    return 0;
}

void clmr_ann_delete(clmr_ann_t *a, int64_t label)
{
    if (!a || label < 0 || (size_t)label >= a->n) return;
    uint8_t bit = (uint8_t)(1u << (label % 8));
    if (a->live[label / 8] & bit) {
        a->live[label / 8] &= (uint8_t)~bit;
        a->n_live--;
    }
}

void clmr_ann_undelete(clmr_ann_t *a, int64_t label)
{
    if (!a || label < 0 || (size_t)label >= a->n) return;
    uint8_t bit = (uint8_t)(1u << (label % 8));
    if (!(a->live[label / 8] & bit)) {
        a->live[label / 8] |= bit;
        a->n_live++;
    }
}

void clmr_ann_delete_all(clmr_ann_t *a)
{
    if (!a || !a->cap) return;
    memset(a->live, 0, (a->cap + 7) / 8);
    a->n_live = 0;
}

size_t clmr_ann_labels(const clmr_ann_t *a)
{
    return a ? a->n : 0;
}

size_t clmr_ann_live(const clmr_ann_t *a)
{
    return a ? a->n_live : 0;
}

const char *clmr_ann_id(const clmr_ann_t *a, int64_t label)
{
    if (!a || !a->p.store_ids || label < 0 || (size_t)label >= a->n) return NULL;
    return a->ids + (size_t)label * ID_W;
}

clmr_ann_params_t clmr_ann_params(const clmr_ann_t *a)
{
    return a->p;
}

int clmr_ann_candidates(const clmr_ann_t *a, int k)
{
    long c = a->p.kind == CLMR_ANN_HNSW ? 2L * k + 16 : 10L * k + 64;
    return c > 10000 ? 10000 : (int)c;
}

int clmr_ann_set_effort(clmr_ann_t *a, int effort)
{
    if (!a || effort < 1) return CLMR_EINVAL;
    if (a->p.kind == CLMR_ANN_HNSW)
        a->p.ef_search = effort;
    else
        a->p.nprobe = effort;
    return clmr_fx_set_effort(a->fx, effort);
}

int clmr_ann_search(const clmr_ann_t *a, const float *q, int k, int64_t *labels, float *scores,
                    int *n_out, char **errmsg)
{
    if (!a || !q || k < 1 || k > 10000 || !labels || !scores || !n_out) return CLMR_EINVAL;
    *n_out = 0;
    if (a->n_live == 0) return 0;
    /* Every label live: no selector, so FAISS skips the per-candidate bitmap test. */
    const uint8_t *sel = a->n_live == a->n ? NULL : a->live;
    int rc = clmr_fx_search(a->fx, 1, q, k, sel, a->n, scores, labels, errmsg);
    if (rc) return rc;
    int m = 0;
    for (int i = 0; i < k; i++) {
        if (labels[i] < 0) break;
        labels[m] = labels[i];
        scores[m++] = 1.0f - 0.5f * scores[i]; /* unit vectors: q.x = 1 - |q - x|^2 / 2 */
    }
    *n_out = m;
    return 0;
}

size_t clmr_ann_memory(const clmr_ann_t *a)
{
    if (!a) return 0;
    return sizeof *a + clmr_fx_memory(a->fx) + (a->cap + 7) / 8 +
           (a->p.store_ids ? a->cap * ID_W : 0);
}

/* ---- files ---- */

typedef struct {
    char magic[8];
    int32_t kind, dim, hnsw_m, ef_construction, ef_search, nlist, pq_m, nprobe, store_ids, pad;
    uint64_t n, n_live;
} sidecar_t;

static int write_all(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? 0 : CLMR_EIO;
}

int clmr_ann_save(const clmr_ann_t *a, const char *path, char **errmsg)
{
    if (!a || !path) return CLMR_EINVAL;
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16), *side = malloc(pl + 16), *stmp = malloc(pl + 24);
    int rc = CLMR_ENOMEM;
    FILE *f = NULL;
    if (!tmp || !side || !stmp) goto out;
    snprintf(tmp, pl + 16, "%s.tmp", path);
    snprintf(side, pl + 16, "%s.ids", path);
    snprintf(stmp, pl + 24, "%s.ids.tmp", path);
    if ((rc = clmr_fx_write(a->fx, tmp, errmsg))) goto out;
    sidecar_t h = {.kind = a->p.kind,
                   .dim = a->p.dim,
                   .hnsw_m = a->p.hnsw_m,
                   .ef_construction = a->p.ef_construction,
                   .ef_search = a->p.ef_search,
                   .nlist = a->p.nlist,
                   .pq_m = a->p.pq_m,
                   .nprobe = a->p.nprobe,
                   .store_ids = a->p.store_ids,
                   .n = a->n,
                   .n_live = a->n_live};
    memcpy(h.magic, SIDECAR_MAGIC, 8);
    rc = CLMR_EIO;
    if (!(f = fopen(stmp, "wb"))) goto fail;
    if (write_all(f, &h, sizeof h) || write_all(f, a->live, (a->n + 7) / 8) ||
        (a->p.store_ids && write_all(f, a->ids, a->n * ID_W)) || fflush(f) || fsync(fileno(f)))
        goto fail;
    if (fclose(f)) {
        f = NULL;
        goto fail;
    }
    f = NULL;
    if (rename(tmp, path) || rename(stmp, side)) goto fail;
    rc = 0;
    goto out;
fail:
    rc = clmr_set_err(errmsg, CLMR_EIO, "cannot write the ANN index to %s", path);
    if (f) fclose(f);
    unlink(tmp);
    unlink(stmp);
out:
    free(tmp);
    free(side);
    free(stmp);
    return rc;
}

int clmr_ann_load(clmr_ann_t **out, const char *path, char **errmsg)
{
    if (!out || !path) return CLMR_EINVAL;
    *out = NULL;
    size_t pl = strlen(path);
    char *side = malloc(pl + 16);
    if (!side) return CLMR_ENOMEM;
    snprintf(side, pl + 16, "%s.ids", path);
    FILE *f = fopen(side, "rb");
    free(side);
    clmr_ann_t *a = NULL;
    sidecar_t h;
    int rc = CLMR_EINVAL;
    if (!f || fread(&h, sizeof h, 1, f) != 1 || memcmp(h.magic, SIDECAR_MAGIC, 8)) goto bad;
    clmr_ann_params_t p = {.kind = (clmr_ann_kind_t)h.kind,
                           .dim = h.dim,
                           .hnsw_m = h.hnsw_m,
                           .ef_construction = h.ef_construction,
                           .ef_search = h.ef_search,
                           .nlist = h.nlist,
                           .pq_m = h.pq_m,
                           .nprobe = h.nprobe,
                           .store_ids = h.store_ids ? 1 : 0};
    if (check_params(&p) || h.n_live > h.n || h.n > ((uint64_t)1 << 31)) goto bad;
    if (!(a = calloc(1, sizeof *a))) {
        rc = CLMR_ENOMEM;
        goto out;
    }
    a->p = p;
    if ((rc = reserve(a, (size_t)h.n ? (size_t)h.n : 1))) goto out;
    rc = CLMR_EINVAL;
    if (fread(a->live, 1, ((size_t)h.n + 7) / 8, f) != ((size_t)h.n + 7) / 8) goto bad;
    if (p.store_ids && fread(a->ids, ID_W, (size_t)h.n, f) != (size_t)h.n) goto bad;
    a->n = (size_t)h.n;
    size_t live = 0;
    for (size_t l = 0; l < a->n; l++)
        live += (a->live[l / 8] >> (l % 8)) & 1u;
    if (live != h.n_live) goto bad;
    a->n_live = live;
    if ((rc = clmr_fx_read(&a->fx, path, errmsg))) goto out;
    if (clmr_fx_ntotal(a->fx) != a->n || strcmp(clmr_fx_kind(a->fx), clmr_ann_kind_name(p.kind))) {
        rc = CLMR_EINVAL;
        goto bad;
    }
    fclose(f);
    clmr_fx_set_effort(a->fx, p.kind == CLMR_ANN_HNSW ? p.ef_search : p.nprobe);
    *out = a;
    return 0;
bad:
    rc =
        clmr_set_err(errmsg, CLMR_EINVAL, "the ANN index files at %s are missing or damaged", path);
out:
    if (f) fclose(f);
    clmr_ann_close(&a);
    return rc;
}
