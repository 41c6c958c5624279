/* infer_dnnl.c - SampleCNN inference on oneDNN (fp32, CPU): clmr_infer_* from clmr/model.h.
 *
 * DESIGN: shaped like oneDNN's cpu_cnn_training_f32 example. For each lane, a "net" for its full
 * part of a max_batch batch and one for a single chunk (remainder parts run chunk by chunk, see
 * part_net) are built once and cached in the context: an array of {primitive, args} steps
 *   [reorder ncw->conv layout] conv+bias+ReLU(post-op) [pool max 3/3] ... conv+ReLU reorder->plain
 * where every convolution and pooling is described with format_tag_any and a reorder is added only
 * where the layout oneDNN chose differs from what the previous step produced. Each convolution uses
 * the model's BatchNorm-folded weights (m->fold_w/fold_b), so eval-mode BN costs nothing. Weights
 * are reordered into the chosen layout once per context (shared between nets whose layouts match);
 * when the chosen layout is the plain (OC, IC, K) one, the model's own array is used directly.
 * Activations ping-pong between two buffers and all primitives share one user-mode scratchpad; the
 * buffers are allocated for max_batch at open (the max_batch net is built first), pre-faulted
 * (first-touch page faults are very slow on our machines) and only grow - with every cached net
 * re-pointed - if a later batch size's layout happens to need more. The tag head (linear 512x50
 * or the 512-512-50 MLP) and the sigmoid are plain C in head.c (25k-288k MACs per chunk: a
 * primitive would cost more than it saves).
 *
 * Threads: Debian's oneDNN uses OpenMP. clmr_infer_run sets the calling thread's OpenMP thread
 * count (omp_set_num_threads, a per-thread setting) to the context's before building or executing,
 * and sets flush-to-zero / denormals-are-zero in the MXCSR of every thread of that OpenMP team (the
 * calling thread's own MXCSR is restored on return). With T > 1 threads, a batch of at least T
 * chunks is split into T "lanes": single-threaded nets with their own buffers and stream, run by
 * one thread each in an omp parallel region, so no barrier ends every layer and a preempted
 * thread (our machines are shared) stalls only its own lane. Smaller batches run one intra-op net
 * on all T threads. The model is only read, so any number of threads may run their own contexts
 * on one model.
 *
 * Layouts: left to itself (format_tag_any) oneDNN 2.6.3 picks brgconv with nwc activations here,
 * but on the official widths that path was 10x less accurate than the rest (3.7e-4 max relative
 * error of the embeddings vs PyTorch, against 3.5e-5 for torch's own fp32 and 4e-5 for oneDNN's
 * jit:avx512_core on nCw16c), failing the 1e-4 golden tolerance. So from layer 1 on the
 * activations are pinned to nCw16c (jit:avx512_core convolutions and pooling, no reorder between
 * layers; layer 0 reads the caller's ncw and writes nCw16c directly). Side by side on our loaded
 * machines the two were indistinguishable in speed. The weights stay format_tag_any.
 *
 * bf16 (precision, see clmr/model.h): the input is reordered to bf16, weights are converted once
 * per context by their reorder, every convolution and pooling runs on bf16 activations with fp32
 * accumulation and f32 bias, and the last convolution writes f32, so the embedding and the head
 * (plain C) are fp32. Activations are pinned to nCw16c as in fp32 (jit_bf16:avx512_core_bf16;
 * oneDNN's own brgconv/nwc choice was no faster and needs a scratchpad as large as the
 * activations), except on AMX CPUs, where the layouts are left to oneDNN so that it can pick
 * brgconv:avx512_core_amx. Widths that are not multiples of 16 are never pinned (pinned()).
 *
 * Tuning knobs (benchmarks): CLMR_DNNL_BLOCKED_FROM=k (default 1; bf16 on AMX 16) pins nCw16c from
 * layer k on (16 = never); CLMR_DNNL_LAYOUT=nwc|ncw|blocked|any (default any) forces the layout of
 * the other layers; CLMR_DNNL_SPLIT=0 turns the lanes off (one intra-op net for every batch).
 */
#include "nn/infer_internal.h"
#include "nn/model_internal.h"

#include "clmr/error.h"

#include <dnnl.h>
#include <dnnl_debug.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xmmintrin.h>

#define NET_MAX_STEPS (3 * CLMR_MAX_LAYERS + 2)
#define NET_MAX_MEMS (9 * CLMR_MAX_LAYERS + 4)
#define STEP_MAX_ARGS 6

/* Which context buffer a memory object points into; re-pointed when that buffer grows. */
enum { BUF_NONE = -1, BUF_ACT0 = 0, BUF_ACT1 = 1, BUF_SCRATCH = 2, BUF_EMB = 3, BUF_COUNT = 4 };

typedef struct {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[STEP_MAX_ARGS];
    int layer; /* for per-layer profiling; -1 = reorder of the input/output */
} net_step_t;

typedef struct net {
    int batch;
    int lane; /* which lane's buffers and stream it uses */
    int nthr; /* OpenMP threads it was built for: the context's, or 1 for a split lane */
    int n_steps;
    net_step_t step[NET_MAX_STEPS];
    int n_mems;
    dnnl_memory_t mem[NET_MAX_MEMS];
    int mem_buf[NET_MAX_MEMS]; /* BUF_* or BUF_NONE (weights, bias, user input) */
    dnnl_memory_t in_mem;      /* wraps the caller's input; handle set per run */
    unsigned generation;       /* buffers generation the handles point into */
    struct net *next;
} net_t;

/* A layer's weights in one oneDNN layout, shared by every net that chose that layout. */
typedef struct wcache {
    int layer;
    dnnl_memory_desc_t md;
    float *data; /* owned unless it is the model's own fold_w */
    int owned;
    struct wcache *next;
} wcache_t;

/* One lane per thread in split mode (lane 0 also serves the intra-op nets): its own stream and
 * buffers, so lanes never share writable memory. */
typedef struct {
    dnnl_stream_t stream;
    void *buf[BUF_COUNT];
    size_t buf_size[BUF_COUNT];
    unsigned generation;
    float *out; /* (full part, D) embeddings of the part the lane ran last (run_part) */
} lane_t;

#define MAX_LANES 16

struct clmr_infer {
    const clmr_model_t *model;
    clmr_infer_params_t params;
    clmr_precision_t precision; /* resolved: FP32 or BF16 */
    dnnl_data_type_t dt;        /* activations and weights: f32 or bf16 */
    int threads;
    int split; /* run batches >= threads as independent single-threaded lanes */
    dnnl_engine_t engine;
    dnnl_stream_t stream;       /* == lane[0].stream, for weight reorders */
    dnnl_primitive_attr_t attr; /* user scratchpad + ReLU post-op */
    dnnl_primitive_attr_t attr_plain;
    dnnl_format_tag_t act_tag; /* dnnl_format_tag_any unless forced */
    int blocked_from;          /* layers >= this use nCw16c activations (see DESIGN) */
    int force_pin;             /* CLMR_DNNL_BLOCKED_FROM set: pin even partial 16-blocks */
    lane_t lane[MAX_LANES];
    int n_lanes;
    int full[MAX_LANES]; /* part sizes of a max_batch batch (batch_parts), one per lane used */
    int n_full;
    net_t *nets;
    wcache_t *wcache;
};

#define DNNL_TRY(call)                                                                             \
    do {                                                                                           \
        dnnl_status_t st__ = (call);                                                               \
        if (st__ != dnnl_success) {                                                                \
            err = clmr_set_err(errmsg, CLMR_EDNNL, "%s: %s failed (oneDNN status %d)", __func__,   \
                               #call, (int)st__);                                                  \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

/* Large aligned allocation, backed by huge pages where the kernel allows it, and touched now so
 * that no page fault happens during inference. */
static void *big_alloc(size_t size)
{
    const size_t huge = (size_t)2 << 20;
    const size_t align = size >= huge ? huge : 64;
    size_t rounded = (size + align - 1) / align * align;
    void *p = NULL;
    if (rounded == 0 || posix_memalign(&p, align, rounded) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == huge) (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    memset(p, 0, rounded);
    return p;
}

/* Makes buffer b of lane ln at least size bytes. Growing invalidates the handles of every cached
 * net of that lane, which the generation counter tells run_net to re-point. */
static int ensure_buf(lane_t *ln, int b, size_t size)
{
    if (size <= ln->buf_size[b]) return 0;
    void *p = big_alloc(size);
    if (!p) return CLMR_ENOMEM;
    free(ln->buf[b]);
    ln->buf[b] = p;
    ln->buf_size[b] = size;
    ln->generation++;
    return 0;
}

static void need_max(size_t *need, size_t size)
{
    if (size > *need) *need = size;
}

static int net_add_mem(net_t *net, dnnl_memory_t *out, const dnnl_memory_desc_t *md,
                       dnnl_engine_t eng, void *handle, int buf)
{
    if (net->n_mems >= NET_MAX_MEMS) return CLMR_EDNNL;
    if (dnnl_memory_create(out, md, eng, handle) != dnnl_success) return CLMR_EDNNL;
    net->mem[net->n_mems] = *out;
    net->mem_buf[net->n_mems] = buf;
    net->n_mems++;
    return 0;
}

static net_step_t *net_add_step(net_t *net, int layer)
{
    if (net->n_steps >= NET_MAX_STEPS) return NULL;
    net_step_t *s = &net->step[net->n_steps++];
    memset(s, 0, sizeof(*s));
    s->layer = layer;
    return s;
}

static void step_arg(net_step_t *s, int arg, dnnl_memory_t m)
{
    s->args[s->nargs].arg = arg;
    s->args[s->nargs].memory = m;
    s->nargs++;
}

static void net_free(net_t *net)
{
    if (!net) return;
    for (int i = 0; i < net->n_steps; i++)
        dnnl_primitive_destroy(net->step[i].prim);
    for (int i = 0; i < net->n_mems; i++)
        dnnl_memory_destroy(net->mem[i]);
    free(net);
}

/* Scratchpad bytes a primitive descriptor asks for (user scratchpad mode). */
static size_t pd_scratch(const_dnnl_primitive_desc_t pd)
{
    const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    return md ? dnnl_memory_desc_get_size(md) : 0;
}

/* Returns the weights of `layer` in layout md, reordering the model's folded weights once. */
static int get_weights(clmr_infer_t *ctx, int layer, const dnnl_memory_desc_t *md, float **out,
                       char **errmsg)
{
    int err = 0;
    const clmr_layer_shape_t *l = &ctx->model->cfg.layer[layer];
    dnnl_memory_desc_t plain;
    dnnl_memory_t src = NULL, dst = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    wcache_t *w = NULL;
    for (wcache_t *c = ctx->wcache; c; c = c->next)
        if (c->layer == layer && dnnl_memory_desc_equal(&c->md, md)) {
            *out = c->data;
            return 0;
        }
    dnnl_dims_t wd = {l->out_ch, l->in_ch, l->kernel};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&plain, 3, wd, dnnl_f32, dnnl_oiw));
    /* bf16 weights: the same reorder converts (round to nearest even), once per context. */
    w = calloc(1, sizeof(*w));
    if (!w) return CLMR_ENOMEM;
    w->layer = layer;
    w->md = *md;
    if (dnnl_memory_desc_equal(&plain, md)) {
        w->data = ctx->model->fold_w[layer]; /* read-only use of the shared model */
    } else {
        w->data = big_alloc(dnnl_memory_desc_get_size(md));
        w->owned = 1;
        if (!w->data) {
            err = CLMR_ENOMEM;
            goto fail;
        }
        DNNL_TRY(dnnl_memory_create(&src, &plain, ctx->engine, ctx->model->fold_w[layer]));
        DNNL_TRY(dnnl_memory_create(&dst, md, ctx->engine, w->data));
        /* Runs once: default attributes, so oneDNN manages its scratchpad itself. */
        DNNL_TRY(
            dnnl_reorder_primitive_desc_create(&rpd, &plain, ctx->engine, md, ctx->engine, NULL));
        DNNL_TRY(dnnl_primitive_create(&r, rpd));
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, dst}};
        DNNL_TRY(dnnl_primitive_execute(r, ctx->stream, 2, args));
        DNNL_TRY(dnnl_stream_wait(ctx->stream));
    }
    w->next = ctx->wcache;
    ctx->wcache = w;
    *out = w->data;
    w = NULL;
fail:
    if (w && w->owned) free(w->data);
    free(w);
    dnnl_primitive_destroy(r);
    dnnl_primitive_desc_destroy(rpd);
    dnnl_memory_destroy(dst);
    dnnl_memory_destroy(src);
    return err;
}

/* Appends a reorder from (md_from, mem_from) into buffer `buf` with layout md_to; *mem_to receives
 * the new memory object. Used for the input and the final embedding, and between layers only
 * when two primitives disagree on a layout. */
static int add_reorder(clmr_infer_t *ctx, net_t *net, int layer, dnnl_memory_t mem_from,
                       const dnnl_memory_desc_t *md_from, const dnnl_memory_desc_t *md_to, int buf,
                       dnnl_memory_t *mem_to, size_t *need, char **errmsg)
{
    int err = 0;
    dnnl_primitive_desc_t pd = NULL;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&pd, md_from, ctx->engine, md_to, ctx->engine,
                                                ctx->attr_plain));
    need_max(&need[buf], dnnl_memory_desc_get_size(md_to));
    need_max(&need[BUF_SCRATCH], pd_scratch(pd));
    dnnl_memory_t sm;
    const dnnl_memory_desc_t *q_sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    if ((err = net_add_mem(net, mem_to, md_to, ctx->engine, DNNL_MEMORY_NONE, buf)) < 0 ||
        (err = net_add_mem(net, &sm, q_sp, ctx->engine, DNNL_MEMORY_NONE, BUF_SCRATCH)) < 0)
        goto fail;
    net_step_t *s = net_add_step(net, layer);
    if (!s) {
        err = CLMR_EDNNL;
        goto fail;
    }
    DNNL_TRY(dnnl_primitive_create(&s->prim, pd));
    step_arg(s, DNNL_ARG_FROM, mem_from);
    step_arg(s, DNNL_ARG_TO, *mem_to);
    step_arg(s, DNNL_ARG_SCRATCHPAD, sm);
fail:
    dnnl_primitive_desc_destroy(pd);
    if (err) return clmr_set_err(errmsg, err, "%s: cannot build a reorder", __func__);
    return 0;
}

/* Whether the activations entering layer i (0 < i <= n_layers) are pinned to nCw16c: from layer
 * blocked_from on, and only where the channels fill whole 16-blocks (the tiny test widths 8 and 12
 * got oneDNN's reference convolution on nCw16c, ~1 s per layer, and a fast kernel with any). */
static int pinned(const clmr_infer_t *ctx, int i)
{
    const clmr_samplecnn_config_t *cfg = &ctx->model->cfg;
    if (i < ctx->blocked_from || i < 1) return 0;
    if (ctx->force_pin) return 1; /* CLMR_DNNL_BLOCKED_FROM given: exactly as asked */
    int ch = cfg->layer[i - 1].out_ch;
    if (ch % 16) return 0;
    return i >= cfg->n_layers || cfg->layer[i].out_ch % 16 == 0;
}

/* Builds the net for batch size b on lane `lane` for nthr OpenMP threads (the calling thread's
 * setting while primitives are created, since oneDNN blocks for it) and makes the lane's buffers
 * large enough for it. */
static int net_build(clmr_infer_t *ctx, int b, int lane, int nthr, net_t **out, char **errmsg)
{
    int err = 0;
    const clmr_samplecnn_config_t *cfg = &ctx->model->cfg;
    size_t need[BUF_COUNT] = {0};
    dnnl_primitive_desc_t pd = NULL;
    net_t *net = calloc(1, sizeof(*net));
    if (!net) return CLMR_ENOMEM;
    net->batch = b;
    net->lane = lane;
    net->nthr = nthr;
    omp_set_num_threads(nthr);

    /* Current tensor: its memory object, layout, and the activation buffer it lives in. */
    dnnl_memory_desc_t cur_md;
    dnnl_dims_t in_dims = {b, 1, cfg->chunk_samples};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&cur_md, 3, in_dims, dnnl_f32, dnnl_ncw));
    if ((err = net_add_mem(net, &net->in_mem, &cur_md, ctx->engine, DNNL_MEMORY_NONE, BUF_NONE)))
        goto fail;
    dnnl_memory_t cur = net->in_mem;
    int cur_buf = BUF_NONE;

    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        dnnl_memory_desc_t src_md, w_md, b_md, dst_md;
        dnnl_dims_t src_d = {b, l->in_ch, l->in_len}, w_d = {l->out_ch, l->in_ch, l->kernel},
                    b_d = {l->out_ch}, dst_d = {b, l->out_ch, l->conv_len};
        dnnl_dims_t strides = {l->stride}, pad = {l->pad};
        /* Activations in nCw16c from layer blocked_from on (see DESIGN); a layer writes the
         * layout its consumer reads, and layer 0 reads the caller's plain ncw when blocked. */
        dnnl_format_tag_t act = pinned(ctx, i) ? dnnl_nCw16c : ctx->act_tag;
        dnnl_format_tag_t out_tag = pinned(ctx, i + 1) ? dnnl_nCw16c : ctx->act_tag;
        if (i == 0 && act == dnnl_nCw16c) act = dnnl_ncw;
        /* bf16: every activation is bf16 (layer 0 reads a bf16 copy of the input, made by the
         * reorder below) except the last layer's output, which is written in f32 so the
         * embedding and the head see no extra rounding. Bias stays f32. */
        dnnl_data_type_t dst_dt = i == cfg->n_layers - 1 ? dnnl_f32 : ctx->dt;
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&src_md, 3, src_d, ctx->dt, act));
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&w_md, 3, w_d, ctx->dt, dnnl_format_tag_any));
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&b_md, 1, b_d, dnnl_f32, dnnl_x));
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&dst_md, 3, dst_d, dst_dt, out_tag));
        dnnl_convolution_desc_t cd;
        DNNL_TRY(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                    dnnl_convolution_direct, &src_md, &w_md, &b_md,
                                                    &dst_md, strides, pad, pad));
        DNNL_TRY(dnnl_primitive_desc_create(&pd, &cd, ctx->attr, ctx->engine, NULL));
        const dnnl_memory_desc_t *q_src = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
        const dnnl_memory_desc_t *q_w = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        const dnnl_memory_desc_t *q_dst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
        need_max(&need[BUF_SCRATCH], pd_scratch(pd));

        if (!dnnl_memory_desc_equal(q_src, &cur_md)) {
            int to = cur_buf == BUF_ACT0 ? BUF_ACT1 : BUF_ACT0;
            dnnl_memory_t m;
            if ((err = add_reorder(ctx, net, i, cur, &cur_md, q_src, to, &m, need, errmsg)))
                goto fail;
            cur = m, cur_md = *q_src, cur_buf = to;
        }
        float *wdata = NULL;
        if ((err = get_weights(ctx, i, q_w, &wdata, errmsg))) goto fail;
        dnnl_memory_t wm, bm, dm, sm;
        int dst_buf = cur_buf == BUF_ACT0 ? BUF_ACT1 : BUF_ACT0;
        dnnl_memory_desc_t d_md = *q_dst;
        need_max(&need[dst_buf], dnnl_memory_desc_get_size(&d_md));
        if ((err = net_add_mem(net, &wm, q_w, ctx->engine, wdata, BUF_NONE)) ||
            (err = net_add_mem(net, &bm, &b_md, ctx->engine, ctx->model->fold_b[i], BUF_NONE)) ||
            (err = net_add_mem(net, &dm, &d_md, ctx->engine, DNNL_MEMORY_NONE, dst_buf)))
            goto fail;
        const dnnl_memory_desc_t *q_sp =
            dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        if ((err = net_add_mem(net, &sm, q_sp, ctx->engine, DNNL_MEMORY_NONE, BUF_SCRATCH)))
            goto fail;
        net_step_t *s = net_add_step(net, i);
        if (!s) {
            err = CLMR_EDNNL;
            goto fail;
        }
        DNNL_TRY(dnnl_primitive_create(&s->prim, pd));
        dnnl_primitive_desc_destroy(pd);
        pd = NULL;
        step_arg(s, DNNL_ARG_SRC, cur);
        step_arg(s, DNNL_ARG_WEIGHTS, wm);
        step_arg(s, DNNL_ARG_BIAS, bm);
        step_arg(s, DNNL_ARG_DST, dm);
        step_arg(s, DNNL_ARG_SCRATCHPAD, sm);
        cur = dm, cur_md = d_md, cur_buf = dst_buf;

        if (l->pool) {
            dnnl_memory_desc_t p_dst;
            dnnl_dims_t p_d = {b, l->out_ch, l->out_len}, k = {l->pool}, ps = {l->pool}, p0 = {0};
            DNNL_TRY(dnnl_memory_desc_init_by_tag(&p_dst, 3, p_d, cur_md.data_type,
                                                  dnnl_format_tag_any));
            dnnl_pooling_desc_t pdsc;
            DNNL_TRY(dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_inference, dnnl_pooling_max,
                                                    &cur_md, &p_dst, ps, k, p0, p0));
            DNNL_TRY(dnnl_primitive_desc_create(&pd, &pdsc, ctx->attr_plain, ctx->engine, NULL));
            need_max(&need[BUF_SCRATCH], pd_scratch(pd));
            dnnl_memory_desc_t pq = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
            int pbuf = cur_buf == BUF_ACT0 ? BUF_ACT1 : BUF_ACT0;
            need_max(&need[pbuf], dnnl_memory_desc_get_size(&pq));
            dnnl_memory_t pm, psm;
            const dnnl_memory_desc_t *p_sp =
                dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
            if ((err = net_add_mem(net, &pm, &pq, ctx->engine, DNNL_MEMORY_NONE, pbuf)) ||
                (err = net_add_mem(net, &psm, p_sp, ctx->engine, DNNL_MEMORY_NONE, BUF_SCRATCH)))
                goto fail;
            s = net_add_step(net, i);
            if (!s) {
                err = CLMR_EDNNL;
                goto fail;
            }
            DNNL_TRY(dnnl_primitive_create(&s->prim, pd));
            dnnl_primitive_desc_destroy(pd);
            pd = NULL;
            step_arg(s, DNNL_ARG_SRC, cur);
            step_arg(s, DNNL_ARG_DST, pm);
            step_arg(s, DNNL_ARG_SCRATCHPAD, psm);
            cur = pm, cur_md = pq, cur_buf = pbuf;
        }
    }
    /* Embeddings back to plain (B, D, 1) = (B, D) row-major in the context's emb buffer. */
    {
        dnnl_memory_desc_t emb_md;
        dnnl_dims_t ed = {b, cfg->embed_dim, 1};
        DNNL_TRY(dnnl_memory_desc_init_by_tag(&emb_md, 3, ed, dnnl_f32, dnnl_ncw));
        dnnl_memory_t em;
        if ((err = add_reorder(ctx, net, -1, cur, &cur_md, &emb_md, BUF_EMB, &em, need, errmsg)))
            goto fail;
    }
    for (int bi = 0; bi < BUF_COUNT; bi++)
        if ((err = ensure_buf(&ctx->lane[lane], bi, need[bi] ? need[bi] : 64)) < 0) goto fail;
    net->generation = ctx->lane[lane].generation - 1; /* handles are set before the first run */
    omp_set_num_threads(ctx->threads);
    *out = net;
    return 0;
fail:
    omp_set_num_threads(ctx->threads);
    dnnl_primitive_desc_destroy(pd);
    net_free(net);
    if (err == CLMR_ENOMEM) return clmr_set_err(errmsg, err, "%s: out of memory", __func__);
    return err;
}

static int net_get(clmr_infer_t *ctx, int b, int lane, int nthr, net_t **out, char **errmsg)
{
    for (net_t *n = ctx->nets; n; n = n->next)
        if (n->batch == b && n->lane == lane && n->nthr == nthr) {
            *out = n;
            return 0;
        }
    net_t *n;
    int err = net_build(ctx, b, lane, nthr, &n, errmsg);
    if (err) return err;
    n->next = ctx->nets;
    ctx->nets = n;
    *out = n;
    return 0;
}

clmr_infer_params_t clmr_infer_default_params(void)
{
    clmr_infer_params_t p = {.max_batch = 8, .threads = 0, .precision = CLMR_PRECISION_FP32};
    return p;
}

const char *clmr_precision_name(clmr_precision_t p)
{
    switch (p) {
    case CLMR_PRECISION_AUTO:
        return "auto";
    case CLMR_PRECISION_FP32:
        return "fp32";
    case CLMR_PRECISION_BF16:
        return "bf16";
    }
    return NULL;
}

int clmr_precision_parse(const char *s, clmr_precision_t *out)
{
    for (int p = CLMR_PRECISION_FP32; p <= CLMR_PRECISION_AUTO; p++)
        if (s && strcmp(s, clmr_precision_name((clmr_precision_t)p)) == 0) {
            *out = (clmr_precision_t)p;
            return 0;
        }
    return CLMR_EINVAL;
}

int clmr_infer_cpu_has_bf16(void)
{
    /* The ISA values are nested bit sets: avx512_core_bf16 and avx512_core_amx contain all of
     * avx512_core_bf16's bits; avx2_vnni and older ISAs lack the bf16 bit. On CPUs without it
     * oneDNN emulates bf16 with avx512_core, several times slower than fp32. */
    unsigned isa = (unsigned)dnnl_get_effective_cpu_isa();
    unsigned bf16 = (unsigned)dnnl_cpu_isa_avx512_core_bf16;
    return (isa & bf16) == bf16;
}

int clmr_infer_resolve_precision(clmr_precision_t req, clmr_precision_t *out, char **errmsg)
{
    int has = clmr_infer_cpu_has_bf16();
    switch (req) {
    case CLMR_PRECISION_AUTO:
        *out = has ? CLMR_PRECISION_BF16 : CLMR_PRECISION_FP32;
        return 0;
    case CLMR_PRECISION_FP32:
        *out = CLMR_PRECISION_FP32;
        return 0;
    case CLMR_PRECISION_BF16:
        if (!has)
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "precision bf16: this CPU has no native bf16 instructions "
                                "(oneDNN's effective ISA is %s; bf16 needs AVX512-BF16 or AMX); "
                                "use precision auto or fp32",
                                dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
        *out = CLMR_PRECISION_BF16;
        return 0;
    }
    return clmr_set_err(errmsg, CLMR_EINVAL, "precision: unknown value %d (auto|fp32|bf16)",
                        (int)req);
}

clmr_precision_t clmr_infer_precision(const clmr_infer_t *ctx)
{
    return ctx->precision;
}

static int prepare_batch(clmr_infer_t *ctx, int b, char **errmsg);
static int batch_parts(const clmr_infer_t *ctx, int b, int *sizes);

/* Sets FTZ/DAZ in every thread of the calling thread's OpenMP team (MXCSR is per thread and
 * oneDNN runs its kernels on those threads); returns the caller's previous MXCSR. */
static unsigned set_ftz_daz(int threads)
{
    unsigned old = _mm_getcsr();
#pragma omp parallel num_threads(threads)
    _mm_setcsr(_mm_getcsr() | 0x8040u); /* FTZ (bit 15) | DAZ (bit 6) */
    return old;
}

int clmr_infer_open(clmr_infer_t **out, const clmr_model_t *model,
                    const clmr_infer_params_t *params, char **errmsg)
{
    int err = 0;
    *out = NULL;
    clmr_infer_t *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) return clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
    ctx->model = model;
    ctx->params = params ? *params : clmr_infer_default_params();
    if ((err = clmr_infer_resolve_precision(ctx->params.precision, &ctx->precision, errmsg))) {
        free(ctx);
        return err;
    }
    ctx->dt = ctx->precision == CLMR_PRECISION_BF16 ? dnnl_bf16 : dnnl_f32;
    if (ctx->params.max_batch < 1) ctx->params.max_batch = 1;
    if (ctx->params.threads < 0) ctx->params.threads = 0;
    ctx->threads = ctx->params.threads > 0 ? ctx->params.threads : omp_get_num_procs();
    ctx->n_lanes = ctx->threads < MAX_LANES ? ctx->threads : MAX_LANES;
    const char *split = getenv("CLMR_DNNL_SPLIT");
    ctx->split = ctx->n_lanes > 1 && !(split && strcmp(split, "0") == 0);
    ctx->act_tag = dnnl_format_tag_any;
    const char *lay = getenv("CLMR_DNNL_LAYOUT");
    if (lay && strcmp(lay, "nwc") == 0) ctx->act_tag = dnnl_nwc;
    if (lay && strcmp(lay, "ncw") == 0) ctx->act_tag = dnnl_ncw;
    if (lay && strcmp(lay, "blocked") == 0) ctx->act_tag = dnnl_nCw16c;
    const char *bf = getenv("CLMR_DNNL_BLOCKED_FROM");
    /* nCw16c is pinned (whole 16-channel blocks only, see pinned()): in fp32 for accuracy (see
     * DESIGN); in bf16 because brgconv on nwc, oneDNN's own choice, needs an f32 accumulation
     * scratchpad as large as the activations (bench_infer peak RSS 308 MB against 208 MB pinned,
     * 383 MB in fp32) and was no faster here. On AMX CPUs bf16 is left to oneDNN: AMX is its
     * brgconv path. */
    int amx = dnnl_get_effective_cpu_isa() == dnnl_cpu_isa_avx512_core_amx;
    int any = ctx->precision == CLMR_PRECISION_BF16 && amx;
    ctx->blocked_from = bf ? atoi(bf) : any ? CLMR_MAX_LAYERS : 1;
    ctx->force_pin = bf != NULL;

    DNNL_TRY(dnnl_engine_create(&ctx->engine, dnnl_cpu, 0));
    for (int i = 0; i < ctx->n_lanes; i++)
        DNNL_TRY(dnnl_stream_create(&ctx->lane[i].stream, ctx->engine, dnnl_stream_default_flags));
    ctx->stream = ctx->lane[0].stream;
    dnnl_post_ops_t po = NULL;
    DNNL_TRY(dnnl_primitive_attr_create(&ctx->attr_plain));
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(ctx->attr_plain, dnnl_scratchpad_mode_user));
    DNNL_TRY(dnnl_primitive_attr_create(&ctx->attr));
    DNNL_TRY(dnnl_primitive_attr_set_scratchpad_mode(ctx->attr, dnnl_scratchpad_mode_user));
    DNNL_TRY(dnnl_post_ops_create(&po));
    dnnl_status_t st = dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    if (st == dnnl_success) st = dnnl_primitive_attr_set_post_ops(ctx->attr, po);
    dnnl_post_ops_destroy(po);
    DNNL_TRY(st);

    /* Build the nets for max_batch now, so buffers are allocated and pre-faulted at their
     * largest before the first run. */
    ctx->n_full = batch_parts(ctx, ctx->params.max_batch, ctx->full);
    for (int i = 0; i < ctx->n_lanes; i++) {
        ctx->lane[i].out = malloc(sizeof(float) * (size_t)ctx->full[0] * model->cfg.embed_dim);
        if (!ctx->lane[i].out) {
            err = clmr_set_err(errmsg, CLMR_ENOMEM, "%s: out of memory", __func__);
            goto fail;
        }
    }
    omp_set_num_threads(ctx->threads);
    if ((err = prepare_batch(ctx, ctx->params.max_batch, errmsg))) goto fail;
    *out = ctx;
    return 0;
fail:
    clmr_infer_close(&ctx);
    return err;
}

void clmr_infer_close(clmr_infer_t **pctx)
{
    if (!pctx || !*pctx) return;
    clmr_infer_t *ctx = *pctx;
    while (ctx->nets) {
        net_t *n = ctx->nets;
        ctx->nets = n->next;
        net_free(n);
    }
    while (ctx->wcache) {
        wcache_t *w = ctx->wcache;
        ctx->wcache = w->next;
        if (w->owned) free(w->data);
        free(w);
    }
    for (int l = 0; l < ctx->n_lanes; l++) {
        for (int i = 0; i < BUF_COUNT; i++)
            free(ctx->lane[l].buf[i]);
        if (ctx->lane[l].stream) dnnl_stream_destroy(ctx->lane[l].stream);
        free(ctx->lane[l].out);
    }
    dnnl_primitive_attr_destroy(ctx->attr);
    dnnl_primitive_attr_destroy(ctx->attr_plain);
    if (ctx->engine) dnnl_engine_destroy(ctx->engine);
    free(ctx);
    *pctx = NULL;
}

/* Executes net on x; its embeddings land in its lane's BUF_EMB as (batch, D). Touches only the
 * net's lane, so lanes may run concurrently. */
static int run_net(clmr_infer_t *ctx, net_t *net, const float *x)
{
    lane_t *ln = &ctx->lane[net->lane];
    if (net->generation != ln->generation) {
        for (int i = 0; i < net->n_mems; i++)
            if (net->mem_buf[i] != BUF_NONE &&
                dnnl_memory_set_data_handle(net->mem[i], ln->buf[net->mem_buf[i]]) != dnnl_success)
                return CLMR_EDNNL;
        net->generation = ln->generation;
    }
    if (dnnl_memory_set_data_handle(net->in_mem, (void *)x) != dnnl_success) /* only read */
        return CLMR_EDNNL;
    for (int i = 0; i < net->n_steps; i++)
        if (dnnl_primitive_execute(net->step[i].prim, ln->stream, net->step[i].nargs,
                                   net->step[i].args) != dnnl_success)
            return CLMR_EDNNL;
    return dnnl_stream_wait(ln->stream) == dnnl_success ? 0 : CLMR_EDNNL;
}

/* How batch b is cut: one part on all threads when splitting is off or b is a single chunk (one
 * intra-op net), else min(b, lanes) parts, one per lane, with sizes differing by at most 1. */
static int batch_parts(const clmr_infer_t *ctx, int b, int *sizes)
{
    if (!ctx->split || b == 1) {
        sizes[0] = b;
        return 1;
    }
    int parts = b < ctx->n_lanes ? b : ctx->n_lanes;
    for (int i = 0; i < parts; i++)
        sizes[i] = b / parts + (i < b % parts);
    return parts;
}

/* The net a part of `size` chunks on lane `lane` runs: the lane's full-size net (its part of a
 * max_batch batch) for a full part, else the single-chunk net, called once per chunk. So a
 * context needs two nets per lane (plus the one-chunk intra-op net) instead of one per batch
 * size: building primitives, not running them, is what a cold first call costs (brgconv takes
 * 30-300 ms per convolution to create here), and a convolution over ~20k samples runs as fast
 * per chunk one chunk at a time. Only called from the context's own thread. */
static int part_net(clmr_infer_t *ctx, int lane, int size, int nthr, net_t **out, char **errmsg)
{
    int whole = size == 1 || (lane < ctx->n_full && size == ctx->full[lane]);
    return net_get(ctx, whole ? size : 1, lane, nthr, out, errmsg);
}

/* Builds (once) the nets of a full max_batch batch: what clmr_infer_open does. */
static int prepare_batch(clmr_infer_t *ctx, int b, char **errmsg)
{
    int sizes[MAX_LANES], parts = batch_parts(ctx, b, sizes);
    net_t *net;
    for (int i = 0; i < parts; i++) {
        int err = part_net(ctx, i, sizes[i], parts > 1 ? 1 : ctx->threads, &net, errmsg);
        if (err) return err;
    }
    return 0;
}

int clmr_infer_warm(clmr_infer_t *ctx, char **errmsg)
{
    if (!ctx) return CLMR_EINVAL;
    int err = 0;
    omp_set_num_threads(ctx->threads);
    /* Building is the whole first-call cost: bench_infer measured the first run of a fresh
     * context as fast as later ones once its net existed (buffers are pre-faulted by big_alloc,
     * weights reordered at build), so nothing is executed here. Identical primitives of other
     * lanes and other contexts come from oneDNN's primitive cache. */
    net_t *net;
    int nthr = ctx->n_full > 1 ? 1 : ctx->threads;
    for (int i = 0; i < ctx->n_full && !err; i++)
        if (!(err = net_get(ctx, ctx->full[i], i, nthr, &net, errmsg)))
            err = net_get(ctx, 1, i, nthr, &net, errmsg);
    if (!err && ctx->split) err = net_get(ctx, 1, 0, ctx->threads, &net, errmsg);
    return err;
}

/* Runs one part (`size` chunks at x) through `net` on its lane, once for a full part or once
 * per chunk with the single-chunk net, and leaves its embeddings in the lane's `out`. Touches only
 * the lane, so parts may run concurrently. */
static int run_part(clmr_infer_t *ctx, net_t *net, const float *x, int size)
{
    const int D = ctx->model->cfg.embed_dim, L = ctx->model->cfg.chunk_samples;
    lane_t *ln = &ctx->lane[net->lane];
    for (int c = 0; c < size; c += net->batch) {
        int err = run_net(ctx, net, x + (size_t)c * L);
        if (err) return err;
        memcpy(ln->out + (size_t)c * D, ln->buf[BUF_EMB], sizeof(float) * (size_t)net->batch * D);
    }
    return 0;
}

/* Runs one batch of b chunks and writes the outputs for it. */
static int run_batch(clmr_infer_t *ctx, const float *x, int b, float *emb, float *scores)
{
    const clmr_samplecnn_config_t *cfg = &ctx->model->cfg;
    const int D = cfg->embed_dim, T = cfg->n_tags, L = cfg->chunk_samples;
    int sizes[MAX_LANES], parts = batch_parts(ctx, b, sizes);
    net_t *nets[MAX_LANES];
    int err = 0;
    for (int i = 0; i < parts; i++)
        if ((err = part_net(ctx, i, sizes[i], parts > 1 ? 1 : ctx->threads, &nets[i], NULL)))
            return err;
    int first[MAX_LANES + 1] = {0};
    for (int i = 0; i < parts; i++)
        first[i + 1] = first[i] + sizes[i];
    if (parts == 1) {
        err = run_part(ctx, nets[0], x, sizes[0]);
    } else {
        /* One single-threaded lane per OpenMP thread: no barrier between layers, so a thread
         * that the OS preempts (shared machines) delays only its own part. */
        int lane_err[MAX_LANES] = {0};
#pragma omp parallel for num_threads(parts) schedule(static, 1)
        for (int i = 0; i < parts; i++)
            lane_err[i] = run_part(ctx, nets[i], x + (size_t)first[i] * L, sizes[i]);
        for (int i = 0; i < parts; i++)
            if (lane_err[i]) err = lane_err[i];
    }
    if (err) return err;
    for (int i = 0; i < parts; i++) {
        const float *e = ctx->lane[i].out;
        if (emb) memcpy(emb + (size_t)first[i] * D, e, sizeof(float) * (size_t)sizes[i] * D);
        if (!scores || T == 0) continue;
        /* linear or MLP tag head + sigmoid (head.c) */
        clmr__model_head_scores(ctx->model, e, sizes[i], scores + (size_t)first[i] * T);
    }
    return 0;
}

int clmr_infer_run(clmr_infer_t *ctx, const float *x, int n, float *emb, float *scores)
{
    if (!ctx || !x || n < 1) return CLMR_EINVAL;
    const clmr_samplecnn_config_t *cfg = &ctx->model->cfg;
    const int D = cfg->embed_dim, T = cfg->n_tags, L = cfg->chunk_samples;
    omp_set_num_threads(ctx->threads);
    unsigned mxcsr = set_ftz_daz(ctx->threads);
    int err = 0;
    for (int done = 0; done < n && !err; done += ctx->params.max_batch) {
        int b = n - done < ctx->params.max_batch ? n - done : ctx->params.max_batch;
        err = run_batch(ctx, x + (size_t)done * L, b, emb ? emb + (size_t)done * D : NULL,
                        scores && T > 0 ? scores + (size_t)done * T : NULL);
    }
    _mm_setcsr(mxcsr);
    return err;
}

const clmr_model_t *clmr__infer_model(const clmr_infer_t *ctx)
{
    return ctx->model;
}
