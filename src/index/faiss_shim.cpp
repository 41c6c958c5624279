// faiss_shim.cpp - C wrappers over the FAISS C++ library (see faiss_shim.h for why C++).
#include "index/faiss_shim.h"

#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/impl/IDSelector.h>
#include <faiss/index_io.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>

extern "C" {
#include "clmr/error.h"
}

struct clmr_fx {
    faiss::Index *index;
    faiss::IndexHNSWFlat *hnsw; // == index when HNSW
    faiss::IndexIVFPQ *ivf;     // == index when IVF-PQ
};

namespace
{

int fail(char **errmsg, int rc, const char *what)
{
    // clmr_set_err is a C varargs function: call it with a plain "%s".
    return clmr_set_err(errmsg, rc, "faiss: %s", what);
}

template <class F> int guarded(char **errmsg, F f)
{
    try {
        return f();
    } catch (const std::bad_alloc &) {
        return fail(errmsg, CLMR_ENOMEM, "out of memory");
    } catch (const std::exception &e) {
        return fail(errmsg, CLMR_EINVAL, e.what());
    } catch (...) {
        return fail(errmsg, CLMR_EINVAL, "unknown error");
    }
}

clmr_fx *wrap(faiss::Index *ix)
{
    clmr_fx *fx = static_cast<clmr_fx *>(std::calloc(1, sizeof *fx));
    if (!fx) {
        delete ix;
        throw std::bad_alloc();
    }
    fx->index = ix;
    fx->hnsw = dynamic_cast<faiss::IndexHNSWFlat *>(ix);
    fx->ivf = dynamic_cast<faiss::IndexIVFPQ *>(ix);
    return fx;
}

} // namespace

extern "C" int clmr_fx_new_hnsw(clmr_fx_t **out, int dim, int m, int ef_construction, char **errmsg)
{
    if (!out || dim < 1 || m < 4 || m > 128 || ef_construction < m) return CLMR_EINVAL;
    *out = nullptr;
    return guarded(errmsg, [&] {
        auto *ix = new faiss::IndexHNSWFlat(dim, m, faiss::METRIC_L2);
        ix->hnsw.efConstruction = ef_construction;
        *out = wrap(ix);
        return 0;
    });
}

extern "C" int clmr_fx_new_ivfpq(clmr_fx_t **out, int dim, int nlist, int pq_m, char **errmsg)
{
    if (!out || dim < 1 || nlist < 1 || pq_m < 1 || dim % pq_m) return CLMR_EINVAL;
    *out = nullptr;
    return guarded(errmsg, [&] {
        // The coarse quantizer: HNSW over the centroids (assignment costs ~log(nlist)).
        auto *q = new faiss::IndexHNSWFlat(dim, 32, faiss::METRIC_L2);
        auto *ix = new faiss::IndexIVFPQ(q, dim, (size_t)nlist, (size_t)pq_m, 8);
        ix->own_fields = true;
        ix->do_polysemous_training = false;
        ix->cp.niter = 10;
        *out = wrap(ix);
        return 0;
    });
}

extern "C" int clmr_fx_train(clmr_fx_t *fx, size_t n, const float *x, char **errmsg)
{
    if (!fx || (n && !x)) return CLMR_EINVAL;
    if (!fx->ivf) return 0;
    return guarded(errmsg, [&] {
        fx->index->train((faiss::Index::idx_t)n, x);
        return 0;
    });
}

extern "C" int clmr_fx_add(clmr_fx_t *fx, size_t n, const float *x, char **errmsg)
{
    if (!fx || (n && !x)) return CLMR_EINVAL;
    if (!fx->index->is_trained) return fail(errmsg, CLMR_EINVAL, "the index is not trained");
    return guarded(errmsg, [&] {
        fx->index->add((faiss::Index::idx_t)n, x);
        return 0;
    });
}

extern "C" int clmr_fx_is_trained(const clmr_fx_t *fx)
{
    return fx && fx->index->is_trained ? 1 : 0;
}

extern "C" size_t clmr_fx_ntotal(const clmr_fx_t *fx)
{
    return fx ? (size_t)fx->index->ntotal : 0;
}

extern "C" int clmr_fx_set_effort(clmr_fx_t *fx, int effort)
{
    if (!fx || effort < 1) return CLMR_EINVAL;
    if (fx->hnsw)
        fx->hnsw->hnsw.efSearch = effort;
    else
        fx->ivf->nprobe = (size_t)effort;
    return 0;
}

extern "C" int clmr_fx_search(const clmr_fx_t *fx, size_t nq, const float *q, int k,
                              const uint8_t *alive, size_t alive_n, float *dist, int64_t *labels,
                              char **errmsg)
{
    if (!fx || !q || k < 1 || !dist || !labels) return CLMR_EINVAL;
    return guarded(errmsg, [&] {
        faiss::IDSelectorBitmap sel(alive_n, alive);
        faiss::IDSelector *psel = alive ? &sel : nullptr;
        static_assert(sizeof(faiss::Index::idx_t) == sizeof(int64_t), "label width");
        auto *lab = reinterpret_cast<faiss::Index::idx_t *>(labels);
        if (fx->hnsw) {
            faiss::SearchParametersHNSW p;
            p.efSearch = fx->hnsw->hnsw.efSearch;
            p.sel = psel;
            fx->index->search((faiss::Index::idx_t)nq, q, k, dist, lab, &p);
        } else {
            faiss::SearchParametersIVF p;
            p.nprobe = fx->ivf->nprobe;
            p.sel = psel;
            fx->index->search((faiss::Index::idx_t)nq, q, k, dist, lab, &p);
        }
        return 0;
    });
}

extern "C" size_t clmr_fx_memory(const clmr_fx_t *fx)
{
    if (!fx) return 0;
    size_t n = (size_t)fx->index->ntotal, d = (size_t)fx->index->d;
    if (fx->hnsw) {
        const faiss::HNSW &h = fx->hnsw->hnsw;
        return n * d * sizeof(float) + h.neighbors.size() * sizeof(faiss::HNSW::storage_idx_t) +
               h.offsets.size() * sizeof(size_t) + h.levels.size() * sizeof(int);
    }
    const faiss::IndexIVFPQ *v = fx->ivf;
    // codes + one 64-bit id per vector + the centroids and their graph + PQ codebooks
    return n * (v->code_size + sizeof(int64_t)) + v->nlist * d * sizeof(float) * 2 +
           v->pq.centroids.size() * sizeof(float);
}

extern "C" int clmr_fx_write(const clmr_fx_t *fx, const char *path, char **errmsg)
{
    if (!fx || !path) return CLMR_EINVAL;
    return guarded(errmsg, [&] {
        faiss::write_index(fx->index, path);
        return 0;
    });
}

extern "C" int clmr_fx_read(clmr_fx_t **out, const char *path, char **errmsg)
{
    if (!out || !path) return CLMR_EINVAL;
    *out = nullptr;
    return guarded(errmsg, [&] {
        faiss::Index *ix = faiss::read_index(path);
        if (!dynamic_cast<faiss::IndexHNSWFlat *>(ix) && !dynamic_cast<faiss::IndexIVFPQ *>(ix)) {
            delete ix;
            return fail(errmsg, CLMR_EINVAL, "the file holds another kind of index");
        }
        *out = wrap(ix);
        return 0;
    });
}

extern "C" const char *clmr_fx_kind(const clmr_fx_t *fx)
{
    return fx && fx->ivf ? "ivfpq" : "hnsw";
}

extern "C" void clmr_fx_free(clmr_fx_t **fx)
{
    if (!fx || !*fx) return;
    delete (*fx)->index;
    std::free(*fx);
    *fx = nullptr;
}
