/* train_dnnl.c - SampleCNN encoder training on oneDNN (see train_dnnl.h).
 *
 * DESIGN: open() describes every primitive once: activations channels-last (nwc; BN on the same
 * bytes viewed as 4-D nhwc, where oneDNN has jit kernels), convolution weights in the format the
 * kernel picks (format_tag_any) with reorders from/to the caller's (OC, IC, K) blocks, workspaces
 * allocated by oneDNN. It creates the memory objects (activations and gradients in one block,
 * parameters and gradients of the parameters wrapping the caller's blocks) and records two nets,
 * arrays of {primitive, args}; forward() and backward() only execute them.
 *
 * Memory plan (plan_memory; clmr_train_dnnl_fprint_memory / bench/bench_train_mem print it per
 * layer). What a backward reads from the forward: BN backward its input (the conv output), the
 * batch mean and variance and its workspace (1-bit ReLU mask), not its output; max-pooling
 * backward only its workspace (1-byte argmax); conv backward-weights the layer's input (the
 * pooling output below, or the BN output of a layer without pooling, or x). So the block keeps per
 * layer the conv output, the pooling output (BN output where there is no pooling: layer 0 and the
 * top, whose BN output is the embedding h) and the statistics, and ONE SHARED buffer, as large as
 * the largest conv output, takes everything short-lived in turn:
 *  - forward: layer 0's conv output (read by its BN only), each pooled layer's BN output (read by
 *    its pooling only);
 *  - backward: dh (the top's output gradient), each pooled layer's conv-output gradient (pooling
 *    backward writes it, BN backward works on it in place, both conv backward passes read it),
 *    then layer 0's conv output again, recomputed from x by the forward primitive just before its
 *    BN backward (bit-identical, ~0.5% of a step, instead of keeping 923 MiB at 48 pairs).
 * A layer's conv backward-data writes its input gradient over the layer's own conv output, which
 * BN backward has read by then (the buffer is sized for the larger of the two); the layer below
 * finds its output gradient there. So the backward consumes the saved activations: one backward
 * per forward. At the official widths and 48 pairs the block is 3,897 MiB (+233 MiB of oneDNN
 * workspaces and weight copies; the largest scratchpad is 0.8 MiB, so oneDNN's default shared
 * library scratchpad is kept) where keeping every conv, BN and pooling output plus two gradient
 * buffers took 7,280 MiB. Layer 1's backward needs three 923 MiB tensors at once (layer 0's BN
 * output, layer 1's conv output and its gradient), so without recomputing more the rest of the
 * block (layers 2-10 and the workspaces, ~1.2 GiB) is all there is left to save.
 *
 * Mixed precision (train_dnnl.h) changes only the element type of what the block holds: every
 * activation and activation gradient is bf16 (the plan is in bytes, so the same rules give 1,960
 * MiB at 48 pairs), plus a bf16 copy of x (layer 0's convolutions read it; a oneDNN reorder at the
 * head of the forward net fills it) and an fp32 copy of h for the head. Statistics, dh and the
 * head scratch stay fp32, conv weight gradients are written in fp32 by the backward-weights
 * primitives (their diff_weights descriptor is fp32), and the bf16 weight copies are the same
 * per-step reorders as fp32's plain-to-blocked ones, now also converting.
 */
#include "train/train_dnnl.h"

#include "clmr/error.h"
#include "train/train_head.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 12
#define MAX_OPS (6 * CLMR_MAX_LAYERS)
#define MAX_MEMS (26 * CLMR_MAX_LAYERS)

/* What open() allocated, per layer and kind (clmr_train_dnnl_fprint_memory prints it). */
enum {
    MEM_CONV,    /* convolution output (BN input), then the layer's input gradient */
    MEM_ACT,     /* BN+ReLU output, kept only by layers without pooling */
    MEM_POOL,    /* pooling output */
    MEM_STATS,   /* batch mean and variance */
    MEM_BN_WS,   /* BN workspace (ReLU mask), allocated by oneDNN */
    MEM_POOL_WS, /* pooling workspace (argmax), allocated by oneDNN */
    MEM_WEIGHTS, /* weights / weight gradients in the kernels' formats, allocated by oneDNN */
    MEM_SCRATCH, /* largest scratchpad of the layer's primitives (shared, not summed) */
    MEM_KINDS
};
static const char *const mem_kind_name[MEM_KINDS] = {"conv out", "BN out",  "pool out", "stats",
                                                     "BN ws",    "pool ws", "weights",  "scratch*"};

typedef struct {
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[MAX_ARGS];
} net_op_t;

struct clmr_train_dnnl {
    clmr_samplecnn_config_t cfg;
    clmr_train_config_t tcfg;
    clmr_train_blocks_t blocks;
    clmr_train_params_t params, grads;
    size_t n_params;
    float *head_scratch, *dh; /* train_head.h scratch and the embedding gradient */
    int batch;
    int bf16; /* activations, conv weights copies and their gradients in bf16 (see DESIGN) */
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    net_op_t fwd[MAX_OPS], bwd[MAX_OPS];
    int n_fwd, n_bwd;
    dnnl_memory_t mems[MAX_MEMS];
    int n_mems;
    dnnl_memory_t x_mem; /* layer 0 input, handle set per forward */
    char *block;         /* the one block of buffers (plan_memory) */
    void *shared;        /* its shared buffer (activation type) */
    void *h_act;         /* the top layer's BN output (activation type) */
    float *h;            /* the embedding in fp32: h_act itself in fp32, a converted copy in bf16 */
    float *mean[CLMR_MAX_LAYERS], *var[CLMR_MAX_LAYERS]; /* batch statistics (biased var) */
    float *run_mean[CLMR_MAX_LAYERS], *run_var[CLMR_MAX_LAYERS];
    size_t mem[CLMR_MAX_LAYERS][MEM_KINDS];   /* bytes per layer and kind */
    size_t shared_bytes, head_bytes, scratch; /* shared buffer, dh + head scratch, scratchpad */
    size_t copy_bytes;                        /* bf16: the bf16 copy of x and the fp32 copy of h */
    size_t block_bytes;                       /* the whole block (== clmr_train_dnnl_plan_bytes) */
    int cur_layer;                            /* the layer open() is building (for mem[]) */
};

/* Wraps ptr (or lets oneDNN allocate when ptr == DNNL_MEMORY_ALLOCATE) and remembers it for close.
 */
static dnnl_memory_t mem_new(clmr_train_dnnl_t *t, const dnnl_memory_desc_t *md, void *ptr)
{
    dnnl_memory_t m = NULL;
    if (t->n_mems >= MAX_MEMS) return NULL;
    if (dnnl_memory_create(&m, md, t->engine, ptr) != dnnl_success) return NULL;
    t->mems[t->n_mems++] = m;
    return m;
}

/* A memory object oneDNN allocates, counted in the current layer's `kind`. */
static dnnl_memory_t mem_alloc(clmr_train_dnnl_t *t, const dnnl_memory_desc_t *md, int kind)
{
    dnnl_memory_t m = mem_new(t, md, DNNL_MEMORY_ALLOCATE);
    if (m) t->mem[t->cur_layer][kind] += dnnl_memory_desc_get_size(md);
    return m;
}

/* Records the scratchpad pd needs (oneDNN's library mode shares one, sized for the largest). */
static void note_scratch(clmr_train_dnnl_t *t, const_dnnl_primitive_desc_t pd)
{
    int64_t n = 0;
    if (dnnl_primitive_desc_query(pd, dnnl_query_memory_consumption_s64, 0, &n) != dnnl_success)
        return;
    size_t *m = &t->mem[t->cur_layer][MEM_SCRATCH];
    if ((size_t)n > *m) *m = (size_t)n;
    if ((size_t)n > t->scratch) t->scratch = (size_t)n;
}

static void op_arg(net_op_t *op, int arg, dnnl_memory_t m)
{
    op->args[op->nargs].arg = arg;
    op->args[op->nargs].memory = m;
    op->nargs++;
}

static dnnl_memory_desc_t md3(int a, int b, int c, dnnl_data_type_t dt, dnnl_format_tag_t tag)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t d = {a, b, c};
    dnnl_memory_desc_init_by_tag(&md, 3, d, dt, tag);
    return md;
}

static dnnl_memory_desc_t md1(int a)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t d = {a};
    dnnl_memory_desc_init_by_tag(&md, 1, d, dnnl_f32, dnnl_a);
    return md;
}

static dnnl_memory_desc_t md4_nhwc(int n, int c, int w, dnnl_data_type_t dt)
{
    dnnl_memory_desc_t md;
    dnnl_dims_t d = {n, c, 1, w};
    dnnl_memory_desc_init_by_tag(&md, 4, d, dt, dnnl_nhwc);
    return md;
}

/* Records in op a reorder from `from` (layout from_md) to `to` (layout to_md). */
static int add_reorder(clmr_train_dnnl_t *t, net_op_t *op, dnnl_memory_t from,
                       const dnnl_memory_desc_t *from_md, dnnl_memory_t to,
                       const dnnl_memory_desc_t *to_md)
{
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_reorder_primitive_desc_create(&pd, from_md, t->engine, to_md, t->engine, NULL) !=
        dnnl_success)
        return CLMR_EDNNL;
    note_scratch(t, pd);
    dnnl_status_t st = dnnl_primitive_create(&op->prim, pd);
    dnnl_primitive_desc_destroy(pd);
    op_arg(op, DNNL_ARG_FROM, from);
    op_arg(op, DNNL_ARG_TO, to);
    return st == dnnl_success ? 0 : CLMR_EDNNL;
}

void clmr_train_dnnl_close(clmr_train_dnnl_t **tp)
{
    if (!tp || !*tp) return;
    clmr_train_dnnl_t *t = *tp;
    for (int i = 0; i < t->n_fwd; i++)
        dnnl_primitive_destroy(t->fwd[i].prim);
    for (int i = 0; i < t->n_bwd; i++)
        dnnl_primitive_destroy(t->bwd[i].prim);
    for (int i = 0; i < t->n_mems; i++)
        dnnl_memory_destroy(t->mems[i]);
    if (t->stream) dnnl_stream_destroy(t->stream);
    if (t->engine) dnnl_engine_destroy(t->engine);
    free(t->block);
    free(t);
    *tp = NULL;
}

/* Creates a primitive from an op descriptor; *pd_out keeps the descriptor when not NULL (needed as
 * the hint of the backward primitives), else it is destroyed. */
static int make_prim(clmr_train_dnnl_t *t, dnnl_primitive_t *prim, dnnl_primitive_desc_t *pd_out,
                     const void *op_desc, const_dnnl_primitive_desc_t hint)
{
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_primitive_desc_create(&pd, op_desc, NULL, t->engine, hint) != dnnl_success)
        return CLMR_EDNNL;
    note_scratch(t, pd);
    dnnl_status_t st = dnnl_primitive_create(prim, pd);
    if (pd_out && st == dnnl_success)
        *pd_out = pd;
    else
        dnnl_primitive_desc_destroy(pd);
    return st == dnnl_success ? 0 : CLMR_EDNNL;
}

/* The memory plan (see DESIGN): byte offsets of every buffer in the trainer's one block, NONE
 * where a buffer is not allocated; each buffer starts on a 64-byte boundary. Activations take `es`
 * bytes per value (4 fp32, 2 bf16); statistics, dh and the head scratch are always fp32. */
#define NONE SIZE_MAX
typedef struct {
    size_t conv[CLMR_MAX_LAYERS];  /* conv output, then (i > 0) the layer's input gradient */
    size_t act[CLMR_MAX_LAYERS];   /* BN+ReLU output of layers without pooling */
    size_t pool[CLMR_MAX_LAYERS];  /* pooling output */
    size_t stats[CLMR_MAX_LAYERS]; /* batch mean, then biased variance (out_ch floats each) */
    size_t x16, h32;               /* bf16 only: x in bf16, h in fp32 (NONE in fp32) */
    size_t shared, dh, head;       /* the shared buffer, the embedding gradient, head scratch */
    size_t total;                  /* bytes in the block */
    size_t bytes[CLMR_MAX_LAYERS][MEM_STATS + 1]; /* per layer: conv, act, pool, stats */
    int recompute0; /* layer 0's conv output is recomputed in the backward */
} mem_plan_t;

/* Places nbytes at *top (rounded up to 64); counts them in *bytes when not NULL. */
static size_t plan_take(size_t *top, size_t nbytes, size_t *bytes)
{
    size_t at = *top;
    nbytes = (nbytes + 63) / 64 * 64;
    *top += nbytes;
    if (bytes) *bytes += nbytes;
    return at;
}

static size_t max_sz(size_t a, size_t b)
{
    return a > b ? a : b;
}

static void plan_memory(mem_plan_t *pl, const clmr_train_config_t *tcfg, int B, size_t es)
{
    const clmr_samplecnn_config_t *cfg = &tcfg->enc;
    size_t top = 0, shared = (size_t)B * cfg->embed_dim; /* the top layer's output gradient */
    memset(pl->bytes, 0, sizeof(pl->bytes));
    pl->recompute0 = !cfg->layer[0].pool; /* else its output gradient would sit in the shared */
    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        size_t conv = (size_t)B * l->out_ch * l->conv_len, in = (size_t)B * l->in_ch * l->in_len;
        if (i == 0 && pl->recompute0) {
            pl->conv[i] = NONE;
            shared = max_sz(shared, conv);
        } else {
            pl->conv[i] =
                plan_take(&top, es * (i > 0 ? max_sz(conv, in) : conv), &pl->bytes[i][MEM_CONV]);
        }
        pl->act[i] = pl->pool[i] = NONE;
        if (l->pool) { /* BN output and conv-output gradient in the shared buffer */
            shared = max_sz(shared, conv);
            pl->pool[i] = plan_take(&top, es * B * l->out_ch * l->out_len, &pl->bytes[i][MEM_POOL]);
        } else {
            pl->act[i] = plan_take(&top, es * conv, &pl->bytes[i][MEM_ACT]);
        }
        pl->stats[i] = plan_take(&top, sizeof(float) * 2 * l->out_ch, &pl->bytes[i][MEM_STATS]);
    }
    pl->x16 = pl->h32 = NONE;
    if (es == 2) {
        pl->x16 = plan_take(&top, es * B * cfg->chunk_samples, NULL);
        pl->h32 = plan_take(&top, sizeof(float) * B * cfg->embed_dim, NULL);
    }
    pl->shared = plan_take(&top, es * shared, NULL);
    pl->dh = plan_take(&top, sizeof(float) * B * cfg->embed_dim, NULL);
    pl->head = plan_take(&top, sizeof(float) * clmr_train_head_scratch_floats(tcfg, B), NULL);
    pl->total = top;
}

size_t clmr_train_dnnl_plan_bytes(const clmr_train_config_t *cfg, int batch)
{
    return clmr_train_dnnl_plan_bytes_prec(cfg, batch, CLMR_TRAIN_PREC_FP32);
}

size_t clmr_train_dnnl_plan_bytes_prec(const clmr_train_config_t *cfg, int batch,
                                       clmr_train_precision_t precision)
{
    mem_plan_t pl;
    plan_memory(&pl, cfg, batch, precision == CLMR_TRAIN_PREC_BF16 ? 2 : 4);
    return pl.total;
}

int clmr_train_dnnl_open(clmr_train_dnnl_t **out, const clmr_train_config_t *tcfg, int batch,
                         const clmr_train_blocks_t *blocks, char **errmsg)
{
    return clmr_train_dnnl_open_prec(out, tcfg, batch, blocks, CLMR_TRAIN_PREC_FP32, errmsg);
}

int clmr_train_dnnl_open_prec(clmr_train_dnnl_t **out, const clmr_train_config_t *tcfg, int batch,
                              const clmr_train_blocks_t *blocks, clmr_train_precision_t precision,
                              char **errmsg)
{
    *out = NULL;
    if (precision == CLMR_TRAIN_PREC_AUTO) {
        int rc = clmr_train_precision_resolve(precision, &precision, NULL, errmsg);
        if (rc) return rc;
    }
    if (batch < 2) return clmr_set_err(errmsg, CLMR_EINVAL, "batch %d < 2", batch);
    if (!blocks->params || !blocks->grads)
        return clmr_set_err(errmsg, CLMR_EINVAL, "parameter and gradient blocks are required");
    if (tcfg->enc.layer[tcfg->enc.n_layers - 1].pool) /* h is the top's BN output */
        return clmr_set_err(errmsg, CLMR_EINVAL, "the last layer must not pool");
    clmr_train_dnnl_t *t = calloc(1, sizeof(*t));
    if (!t) return CLMR_ENOMEM;
    const clmr_samplecnn_config_t *cfg = &tcfg->enc;
    t->cfg = *cfg;
    t->tcfg = *tcfg;
    t->blocks = *blocks;
    t->n_params = clmr_train_param_count(tcfg);
    clmr_train_params_bind(&t->params, tcfg, blocks->params);
    clmr_train_params_bind(&t->grads, tcfg, blocks->grads);
    const clmr_train_params_t *params = &t->params, *grads = &t->grads;
    float *const *run_mean = blocks->run_mean, *const *run_var = blocks->run_var;
    t->batch = batch;
    t->bf16 = precision == CLMR_TRAIN_PREC_BF16;
    const dnnl_data_type_t dt = t->bf16 ? dnnl_bf16 : dnnl_f32; /* activations, conv weights */
    int B = batch, err = CLMR_EDNNL;
    const char *what = "engine";
    dnnl_primitive_desc_t conv_pd = NULL, bn_pd = NULL, pool_pd = NULL;

    mem_plan_t pl;
    plan_memory(&pl, tcfg, B, t->bf16 ? 2 : 4);
    t->block_bytes = pl.total;
    t->shared_bytes = pl.dh - pl.shared;
    t->head_bytes = pl.total - pl.dh;
    t->copy_bytes = t->bf16 ? pl.shared - pl.x16 : 0;
    void *block = NULL;
    if (posix_memalign(&block, 64, t->block_bytes)) {
        err = CLMR_ENOMEM;
        goto fail;
    }
    char *const base = t->block = block;
    t->shared = base + pl.shared;
    t->dh = (float *)(void *)(base + pl.dh);
    t->head_scratch = (float *)(void *)(base + pl.head);

    if (dnnl_engine_create(&t->engine, dnnl_cpu, 0) != dnnl_success) goto fail;
    if (dnnl_stream_create(&t->stream, t->engine, dnnl_stream_default_flags) != dnnl_success)
        goto fail;

    dnnl_memory_t in_mem = NULL;

    for (int i = 0; i < cfg->n_layers; i++) {
        const clmr_layer_shape_t *l = &cfg->layer[i];
        t->cur_layer = i;
        dnnl_memory_desc_t md_in = md3(B, l->in_ch, l->in_len, dt, dnnl_nwc);
        dnnl_memory_desc_t md_conv = md3(B, l->out_ch, l->conv_len, dt, dnnl_nwc);
        dnnl_memory_desc_t md_pool = md3(B, l->out_ch, l->out_len, dt, dnnl_nwc);
        dnnl_memory_desc_t md_w = md3(l->out_ch, l->in_ch, l->kernel, dnnl_f32, dnnl_oiw);
        dnnl_memory_desc_t md_c = md1(l->out_ch);
        const int top = i == cfg->n_layers - 1;
        /* where the forward writes (see DESIGN): layer 0's conv output and the BN outputs of
         * pooled layers go to the shared buffer; the rest is kept for the backward */
        void *conv_out = pl.conv[i] == NONE ? t->shared : base + pl.conv[i];
        void *act = l->pool ? t->shared : base + pl.act[i];
        void *pool = l->pool ? base + pl.pool[i] : NULL;
        t->mean[i] = (float *)(void *)(base + pl.stats[i]);
        t->var[i] = t->mean[i] + l->out_ch;
        memcpy(t->mem[i], pl.bytes[i], sizeof(pl.bytes[i]));
        t->run_mean[i] = run_mean[i];
        t->run_var[i] = run_var[i];

        if (i == 0) { /* x is fp32; in bf16 a reorder makes the bf16 copy the layer reads */
            dnnl_memory_desc_t md_x = md3(B, l->in_ch, l->in_len, dnnl_f32, dnnl_nwc);
            in_mem = t->x_mem = mem_new(t, &md_x, DNNL_MEMORY_NONE);
            if (!in_mem) goto fail;
            if (t->bf16) {
                what = "input reorder";
                in_mem = mem_new(t, &md_in, base + pl.x16);
                if (!in_mem || add_reorder(t, &t->fwd[t->n_fwd++], t->x_mem, &md_x, in_mem, &md_in))
                    goto fail;
            }
        }
        what = "memory";
        /* BN sees the same bytes as (B, C, 1, L) nhwc: oneDNN's jit BN kernels take 2-D spatial
         * tensors only (with 1-D ones it falls back to a slow reference kernel). */
        dnnl_memory_desc_t md_conv4 = md4_nhwc(B, l->out_ch, l->conv_len, dt);
        dnnl_memory_t m_conv = mem_new(t, &md_conv, conv_out), m_act = mem_new(t, &md_conv, act);
        dnnl_memory_t m_conv4 = mem_new(t, &md_conv4, conv_out),
                      m_act4 = mem_new(t, &md_conv4, act);
        dnnl_memory_t m_w = mem_new(t, &md_w, params->conv_w[i]);
        dnnl_memory_t m_b = mem_new(t, &md_c, params->conv_b[i]);
        dnnl_memory_t m_gamma = mem_new(t, &md_c, params->bn_gamma[i]);
        dnnl_memory_t m_beta = mem_new(t, &md_c, params->bn_beta[i]);
        dnnl_memory_t m_mean = mem_new(t, &md_c, t->mean[i]), m_var = mem_new(t, &md_c, t->var[i]);
        dnnl_memory_t m_dw = mem_new(t, &md_w, grads->conv_w[i]);
        dnnl_memory_t m_db = mem_new(t, &md_c, grads->conv_b[i]);
        dnnl_memory_t m_dgamma = mem_new(t, &md_c, grads->bn_gamma[i]);
        dnnl_memory_t m_dbeta = mem_new(t, &md_c, grads->bn_beta[i]);
        /* the gradient of this layer's output: the top's in the shared buffer (backward()
         * copies dh there), the others in the next layer's conv buffer, which that layer's
         * backward-data convolution wrote after its BN backward had read it; the gradient of the
         * conv output: where pool backward writes it (shared), else the output gradient itself
         * (BN backward works in place) */
        void *dout_buf = top ? t->shared : base + pl.conv[i + 1];
        void *dconv_buf = l->pool ? t->shared : dout_buf;
        dnnl_memory_t m_dconv = mem_new(t, &md_conv, dconv_buf);
        dnnl_memory_t m_dconv4 = mem_new(t, &md_conv4, dconv_buf);
        if (!m_conv || !m_act || !m_conv4 || !m_act4 || !m_w || !m_b || !m_gamma || !m_beta ||
            !m_mean || !m_var || !m_dw || !m_db || !m_dgamma || !m_dbeta || !m_dconv || !m_dconv4)
            goto fail;

        /* convolution forward; the weights format is the kernel's choice (format_tag_any), so
         * the caller's (OC, IC, K) weights are reordered into it before each forward */
        what = "convolution";
        dnnl_dims_t strides = {l->stride}, pad = {l->pad};
        dnnl_memory_desc_t md_w_any = md3(l->out_ch, l->in_ch, l->kernel, dt, dnnl_format_tag_any);
        /* weight gradients stay fp32 (oneDNN accumulates them in fp32 from bf16 operands) */
        dnnl_memory_desc_t md_dw_any =
            md3(l->out_ch, l->in_ch, l->kernel, dnnl_f32, dnnl_format_tag_any);
        dnnl_convolution_desc_t cd;
        if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
                                               &md_in, &md_w_any, &md_c, &md_conv, strides, pad,
                                               pad) != dnnl_success ||
            dnnl_primitive_desc_create(&conv_pd, &cd, NULL, t->engine, NULL) != dnnl_success)
            goto fail;
        note_scratch(t, conv_pd);
        dnnl_memory_t m_wf = m_w;
        const dnnl_memory_desc_t *wf =
            dnnl_primitive_desc_query_md(conv_pd, dnnl_query_weights_md, 0);
        if (!dnnl_memory_desc_equal(wf, &md_w)) {
            what = "weights reorder";
            m_wf = mem_alloc(t, wf, MEM_WEIGHTS);
            if (!m_wf || add_reorder(t, &t->fwd[t->n_fwd++], m_w, &md_w, m_wf, wf)) goto fail;
        }
        what = "convolution";
        net_op_t *op = &t->fwd[t->n_fwd++];
        if (dnnl_primitive_create(&op->prim, conv_pd) != dnnl_success) goto fail;
        op_arg(op, DNNL_ARG_SRC, in_mem);
        op_arg(op, DNNL_ARG_WEIGHTS, m_wf);
        op_arg(op, DNNL_ARG_BIAS, m_b);
        op_arg(op, DNNL_ARG_DST, m_conv);

        /* batch normalisation (training) with the ReLU fused; the workspace keeps its mask */
        what = "batch normalization";
        unsigned flags = dnnl_use_scale | dnnl_use_shift | dnnl_fuse_norm_relu;
        dnnl_batch_normalization_desc_t bd;
        if (dnnl_batch_normalization_forward_desc_init(&bd, dnnl_forward_training, &md_conv4,
                                                       CLMR_BN_EPS, flags) != dnnl_success)
            goto fail;
        op = &t->fwd[t->n_fwd++];
        if (make_prim(t, &op->prim, &bn_pd, &bd, NULL)) goto fail;
        dnnl_memory_t m_bn_ws = mem_alloc(
            t, dnnl_primitive_desc_query_md(bn_pd, dnnl_query_workspace_md, 0), MEM_BN_WS);
        if (!m_bn_ws) goto fail;
        op_arg(op, DNNL_ARG_SRC, m_conv4);
        op_arg(op, DNNL_ARG_DST, m_act4);
        op_arg(op, DNNL_ARG_MEAN, m_mean);
        op_arg(op, DNNL_ARG_VARIANCE, m_var);
        op_arg(op, DNNL_ARG_SCALE, m_gamma);
        op_arg(op, DNNL_ARG_SHIFT, m_beta);
        op_arg(op, DNNL_ARG_WORKSPACE, m_bn_ws);

        dnnl_memory_t out_mem = m_act, m_pool_ws = NULL;
        if (l->pool) {
            what = "pooling";
            dnnl_memory_t m_pool = mem_new(t, &md_pool, pool);
            if (!m_pool) goto fail;
            dnnl_dims_t ks = {l->pool}, zero = {0};
            dnnl_pooling_desc_t pdsc;
            if (dnnl_pooling_forward_desc_init(&pdsc, dnnl_forward_training, dnnl_pooling_max,
                                               &md_conv, &md_pool, ks, ks, zero,
                                               zero) != dnnl_success)
                goto fail;
            op = &t->fwd[t->n_fwd++];
            if (make_prim(t, &op->prim, &pool_pd, &pdsc, NULL)) goto fail;
            m_pool_ws = mem_alloc(
                t, dnnl_primitive_desc_query_md(pool_pd, dnnl_query_workspace_md, 0), MEM_POOL_WS);
            if (!m_pool_ws) goto fail;
            op_arg(op, DNNL_ARG_SRC, m_act);
            op_arg(op, DNNL_ARG_DST, m_pool);
            op_arg(op, DNNL_ARG_WORKSPACE, m_pool_ws);
            out_mem = m_pool;
        }

        /* Backward ops of this layer are appended in REVERSE execution order (conv backward
         * data and its weights reorder, the weight-gradient reorder and conv backward weights,
         * BN, pooling); reversing the whole list at the end then gives the execution order from
         * the last layer down, and every primitive is owned by t->bwd as soon as it exists
         * (close() frees it on any failure). */
        if (i > 0) { /* layer 0's input is audio: no gradient */
            what = "convolution backward data";
            /* the previous layer's output gradient overwrites this layer's conv output, which
             * BN backward has read by then */
            dnnl_memory_t m_din = mem_new(t, &md_in, conv_out);
            if (!m_din) goto fail;
            dnnl_primitive_desc_t bd_pd = NULL;
            if (dnnl_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &md_in,
                                                         &md_w_any, &md_conv, strides, pad,
                                                         pad) != dnnl_success ||
                dnnl_primitive_desc_create(&bd_pd, &cd, NULL, t->engine, conv_pd) != dnnl_success)
                goto fail;
            note_scratch(t, bd_pd);
            op = &t->bwd[t->n_bwd++];
            dnnl_status_t st = dnnl_primitive_create(&op->prim, bd_pd);
            const dnnl_memory_desc_t *wb =
                dnnl_primitive_desc_query_md(bd_pd, dnnl_query_weights_md, 0);
            /* the forward's reordered weights are still current during the backward */
            dnnl_memory_t m_wb = dnnl_memory_desc_equal(wb, wf)      ? m_wf
                                 : dnnl_memory_desc_equal(wb, &md_w) ? m_w
                                                                     : NULL;
            int need_reorder = m_wb == NULL;
            dnnl_memory_desc_t wb_md = *wb; /* wb dies with bd_pd */
            if (need_reorder) m_wb = mem_alloc(t, &wb_md, MEM_WEIGHTS);
            dnnl_primitive_desc_destroy(bd_pd);
            if (st != dnnl_success || !m_wb) goto fail;
            op_arg(op, DNNL_ARG_DIFF_DST, m_dconv);
            op_arg(op, DNNL_ARG_WEIGHTS, m_wb);
            op_arg(op, DNNL_ARG_DIFF_SRC, m_din);
            if (need_reorder && add_reorder(t, &t->bwd[t->n_bwd++], m_w, &md_w, m_wb, &wb_md))
                goto fail;
        }
        what = "convolution backward weights";
        dnnl_primitive_desc_t bw_pd = NULL;
        if (dnnl_convolution_backward_weights_desc_init(&cd, dnnl_convolution_direct, &md_in,
                                                        &md_dw_any, &md_c, &md_conv, strides, pad,
                                                        pad) != dnnl_success ||
            dnnl_primitive_desc_create(&bw_pd, &cd, NULL, t->engine, conv_pd) != dnnl_success)
            goto fail;
        note_scratch(t, bw_pd);
        const dnnl_memory_desc_t *dwf =
            dnnl_primitive_desc_query_md(bw_pd, dnnl_query_diff_weights_md, 0);
        dnnl_memory_t m_dwf = m_dw;
        if (!dnnl_memory_desc_equal(dwf, &md_w)) { /* runs after the primitive: appended first */
            m_dwf = mem_alloc(t, dwf, MEM_WEIGHTS);
            if (!m_dwf || add_reorder(t, &t->bwd[t->n_bwd++], m_dwf, dwf, m_dw, &md_w)) {
                dnnl_primitive_desc_destroy(bw_pd);
                goto fail;
            }
        }
        op = &t->bwd[t->n_bwd++];
        dnnl_status_t bw_st = dnnl_primitive_create(&op->prim, bw_pd);
        dnnl_primitive_desc_destroy(bw_pd);
        if (bw_st != dnnl_success) goto fail;
        op_arg(op, DNNL_ARG_SRC, in_mem);
        op_arg(op, DNNL_ARG_DIFF_DST, m_dconv);
        op_arg(op, DNNL_ARG_DIFF_WEIGHTS, m_dwf);
        op_arg(op, DNNL_ARG_DIFF_BIAS, m_db);

        what = "batch normalization backward";
        if (dnnl_batch_normalization_backward_desc_init(&bd, dnnl_backward, &md_conv4, &md_conv4,
                                                        CLMR_BN_EPS, flags) != dnnl_success)
            goto fail;
        op = &t->bwd[t->n_bwd++];
        if (make_prim(t, &op->prim, NULL, &bd, bn_pd)) goto fail;
        op_arg(op, DNNL_ARG_SRC, m_conv4);
        op_arg(op, DNNL_ARG_MEAN, m_mean);
        op_arg(op, DNNL_ARG_VARIANCE, m_var);
        op_arg(op, DNNL_ARG_SCALE, m_gamma);
        op_arg(op, DNNL_ARG_SHIFT, m_beta);
        op_arg(op, DNNL_ARG_WORKSPACE, m_bn_ws);
        op_arg(op, DNNL_ARG_DIFF_DST, m_dconv4); /* in place */
        op_arg(op, DNNL_ARG_DIFF_SRC, m_dconv4);
        op_arg(op, DNNL_ARG_DIFF_SCALE, m_dgamma);
        op_arg(op, DNNL_ARG_DIFF_SHIFT, m_dbeta);

        if (i == 0 && pl.recompute0) { /* layer 0's conv output again, for the BN backward */
            what = "convolution";
            op = &t->bwd[t->n_bwd++];
            if (dnnl_primitive_create(&op->prim, conv_pd) != dnnl_success) goto fail;
            op_arg(op, DNNL_ARG_SRC, in_mem);
            op_arg(op, DNNL_ARG_WEIGHTS, m_wf);
            op_arg(op, DNNL_ARG_BIAS, m_b);
            op_arg(op, DNNL_ARG_DST, m_conv);
        }

        if (l->pool) {
            what = "pooling backward";
            dnnl_memory_t m_dpool = mem_new(t, &md_pool, dout_buf);
            if (!m_dpool) goto fail;
            dnnl_dims_t ks = {l->pool}, zero = {0};
            dnnl_pooling_desc_t pdsc;
            if (dnnl_pooling_backward_desc_init(&pdsc, dnnl_pooling_max, &md_conv, &md_pool, ks, ks,
                                                zero, zero) != dnnl_success)
                goto fail;
            op = &t->bwd[t->n_bwd++];
            if (make_prim(t, &op->prim, NULL, &pdsc, pool_pd)) goto fail;
            op_arg(op, DNNL_ARG_DIFF_DST, m_dpool);
            op_arg(op, DNNL_ARG_DIFF_SRC, m_dconv);
            op_arg(op, DNNL_ARG_WORKSPACE, m_pool_ws);
        }
        dnnl_primitive_desc_destroy(conv_pd), conv_pd = NULL;
        dnnl_primitive_desc_destroy(bn_pd), bn_pd = NULL;
        if (pool_pd) dnnl_primitive_desc_destroy(pool_pd), pool_pd = NULL;
        in_mem = out_mem;
        if (top) {
            t->h_act = act;
            t->h = t->bf16 ? (float *)(void *)(base + pl.h32) : act;
        }
    }
    for (int a = 0, b = t->n_bwd - 1; a < b; a++, b--) {
        net_op_t tmp = t->bwd[a];
        t->bwd[a] = t->bwd[b];
        t->bwd[b] = tmp;
    }
    *out = t;
    return 0;

fail:
    if (conv_pd) dnnl_primitive_desc_destroy(conv_pd);
    if (bn_pd) dnnl_primitive_desc_destroy(bn_pd);
    if (pool_pd) dnnl_primitive_desc_destroy(pool_pd);
    clmr_train_dnnl_close(&t);
    return err == CLMR_ENOMEM
               ? err
               : clmr_set_err(errmsg, err, "oneDNN: cannot create the %s primitive", what);
}

static int run_net(clmr_train_dnnl_t *t, net_op_t *ops, int n)
{
    for (int i = 0; i < n; i++)
        if (dnnl_primitive_execute(ops[i].prim, t->stream, ops[i].nargs, ops[i].args) !=
            dnnl_success)
            return CLMR_EDNNL;
    return dnnl_stream_wait(t->stream) == dnnl_success ? 0 : CLMR_EDNNL;
}

int clmr_train_dnnl_forward(clmr_train_dnnl_t *t, const float *x, float momentum, const float **h)
{
    if (dnnl_memory_set_data_handle(t->x_mem, (void *)(uintptr_t)x) != dnnl_success)
        return CLMR_EDNNL;
    int err = run_net(t, t->fwd, t->n_fwd);
    if (err) return err;
    if (t->bf16) { /* bf16 -> fp32 is exact: the 16 bits become the high half */
        const uint16_t *a = t->h_act;
        uint32_t *o = (uint32_t *)(void *)t->h;
        for (size_t k = 0, n = (size_t)t->batch * t->cfg.embed_dim; k < n; k++)
            o[k] = (uint32_t)a[k] << 16;
    }
    for (int i = 0; i < t->cfg.n_layers; i++) {
        const clmr_layer_shape_t *l = &t->cfg.layer[i];
        double n = (double)t->batch * l->conv_len, unbias = n / (n - 1);
        for (int c = 0; c < l->out_ch; c++) {
            t->run_mean[i][c] =
                (float)((1.0 - momentum) * t->run_mean[i][c] + (double)momentum * t->mean[i][c]);
            t->run_var[i][c] = (float)((1.0 - momentum) * t->run_var[i][c] +
                                       (double)momentum * t->var[i][c] * unbias);
        }
    }
    *h = t->h;
    return 0;
}

/* Round to nearest even, as oneDNN's reorders do; NaN stays a (quiet) NaN. */
static uint16_t f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

clmr_train_precision_t clmr_train_dnnl_precision(const clmr_train_dnnl_t *t)
{
    return t->bf16 ? CLMR_TRAIN_PREC_BF16 : CLMR_TRAIN_PREC_FP32;
}

int clmr_train_dnnl_backward(clmr_train_dnnl_t *t, const float *dh)
{
    size_t n = (size_t)t->batch * t->cfg.embed_dim;
    if (t->bf16) {
        uint16_t *o = t->shared;
        for (size_t k = 0; k < n; k++)
            o[k] = f32_to_bf16(dh[k]);
    } else {
        memcpy(t->shared, dh, sizeof(float) * n);
    }
    return run_net(t, t->bwd, t->n_bwd);
}

/* Clip + Adam over params [first, n_params). */
static double adam_update(clmr_train_dnnl_t *t, size_t first, const clmr_adam_params_t *adam,
                          long step)
{
    size_t n = t->n_params - first;
    double norm = clmr_adam_clip_grad_norm(t->blocks.grads + first, n, adam->clip_norm);
    clmr_adam_update(t->blocks.params + first, t->blocks.grads + first, t->blocks.m + first,
                     t->blocks.v + first, n, step, adam);
    return norm;
}

int clmr_train_dnnl_step_contrastive(clmr_train_dnnl_t *t, const float *x, float tau,
                                     const clmr_adam_params_t *adam, long step, float *loss,
                                     double *grad_norm)
{
    return clmr_train_dnnl_step_contrastive_aux(t, x, tau, adam, step, NULL, NULL, loss, NULL,
                                                grad_norm);
}

int clmr_train_dnnl_step_contrastive_aux(clmr_train_dnnl_t *t, const float *x, float tau,
                                         const clmr_adam_params_t *adam, long step,
                                         clmr_train_aux_fn aux, void *aux_ud, float *loss,
                                         float *aux_loss, double *grad_norm)
{
    if (t->tcfg.proj_hidden <= 0 || t->batch % 2 || !t->blocks.m || !t->blocks.v || step < 1)
        return CLMR_EINVAL;
    memset(t->blocks.grads, 0, sizeof(float) * t->n_params);
    const float *h = NULL;
    int err = clmr_train_dnnl_forward(t, x, 0.1f, &h);
    if (!err)
        err = clmr_train_head_contrastive(loss, t->dh, h, &t->params, &t->grads, &t->tcfg, t->batch,
                                          tau, t->head_scratch);
    float al = 0;
    if (!err && aux) err = aux(aux_ud, h, t->dh, t->batch, t->cfg.embed_dim, &al);
    if (aux_loss) *aux_loss = al;
    if (!err) err = clmr_train_dnnl_backward(t, t->dh);
    if (err) return err;
    double norm = adam_update(t, 0, adam, step);
    if (grad_norm) *grad_norm = norm;
    return 0;
}

int clmr_train_dnnl_step_supervised(clmr_train_dnnl_t *t, const float *x, const float *y,
                                    int freeze_encoder, const clmr_adam_params_t *adam, long step,
                                    float *loss, double *grad_norm)
{
    if (t->cfg.n_tags <= 0 || !t->blocks.m || !t->blocks.v || step < 1) return CLMR_EINVAL;
    memset(t->blocks.grads, 0, sizeof(float) * t->n_params);
    const float *h = NULL;
    int err = clmr_train_dnnl_forward(t, x, 0.1f, &h);
    if (!err)
        err = clmr_train_head_supervised(loss, freeze_encoder ? NULL : t->dh, h, y, &t->params,
                                         &t->grads, &t->tcfg, t->batch, t->head_scratch);
    if (!err && !freeze_encoder) err = clmr_train_dnnl_backward(t, t->dh);
    if (err) return err;
    double norm = adam_update(t, freeze_encoder ? clmr_train_head_offset(&t->tcfg) : 0, adam, step);
    if (grad_norm) *grad_norm = norm;
    return 0;
}

size_t clmr_train_dnnl_bytes(const clmr_train_dnnl_t *t, size_t *own)
{
    size_t n = t->block_bytes + t->scratch;
    for (int i = 0; i < t->cfg.n_layers; i++)
        for (int k = MEM_BN_WS; k < MEM_SCRATCH; k++)
            n += t->mem[i][k];
    if (own) *own = t->block_bytes;
    return n;
}

void clmr_train_dnnl_fprint_memory(const clmr_train_dnnl_t *t, FILE *f)
{
    const double mib = 1024.0 * 1024.0;
    fprintf(f, "| layer |");
    for (int k = 0; k < MEM_KINDS; k++)
        fprintf(f, " %s |", mem_kind_name[k]);
    fprintf(f, " sum |\n|---|");
    for (int k = 0; k <= MEM_KINDS; k++)
        fprintf(f, "---|");
    fprintf(f, "\n");
    for (int i = 0; i < t->cfg.n_layers; i++) {
        size_t sum = 0;
        fprintf(f, "| %d |", i);
        for (int k = 0; k < MEM_KINDS; k++) {
            fprintf(f, " %.1f |", (double)t->mem[i][k] / mib);
            if (k != MEM_SCRATCH) sum += t->mem[i][k];
        }
        fprintf(f, " %.1f |\n", (double)sum / mib);
    }
    fprintf(
        f,
        "\nshared buffer %.1f MiB, dh + head scratch %.1f MiB, bf16 x / fp32 h copies %.1f MiB, "
        "scratchpad %.1f MiB (largest of all primitives; * not summed per layer)\ntotal %.1f "
        "MiB for batch %d (%s)\n",
        (double)t->shared_bytes / mib, (double)t->head_bytes / mib, (double)t->copy_bytes / mib,
        (double)t->scratch / mib, (double)clmr_train_dnnl_bytes(t, NULL) / mib, t->batch,
        t->bf16 ? "bf16" : "fp32");
}
