/* soxfx.c - libsox effects chains over float buffers (see soxfx.h).
 *
 * DESIGN: one input and one output effect handler of our own wrap the caller's buffers; the
 * effect structs libsox copies into the chain hold only a pointer to a stack context. The chain is
 * built and destroyed per call (cheap next to the effects' own work), which keeps no libsox
 * objects alive between calls and makes every call independent of the previous one.
 */
#include "train/soxfx.h"

#include "clmr/error.h"

#include <math.h>
#include <pthread.h>
#include <sox.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const float *in;
    size_t n_in, pos;
    float *out;
    size_t out_cap, n_out;
    double scale; /* input multiplier; output is divided by it */
} sox_ctx_t;

static pthread_once_t sox_once = PTHREAD_ONCE_INIT;
static int sox_init_status = CLMR_EIO;
static pthread_mutex_t sox_lock = PTHREAD_MUTEX_INITIALIZER;

/* libsox prints warnings (e.g. clipping) to stderr by default; training must stay quiet. */
static void sox_quiet_cb(unsigned level, const char *file, const char *fmt, va_list ap)
{
    (void)level;
    (void)file;
    (void)fmt;
    (void)ap;
}

static void sox_do_init(void)
{
    if (sox_init() != SOX_SUCCESS) return;
    sox_get_globals()->verbosity = 0;
    sox_get_globals()->output_message_handler = sox_quiet_cb;
    sox_init_status = 0;
}

int clmr_sox_init(void)
{
    pthread_once(&sox_once, sox_do_init);
    return sox_init_status;
}

static inline sox_sample_t to_sox(double v)
{
    double s = v * 2147483648.0;
    if (s >= 2147483647.0) return SOX_SAMPLE_MAX;
    if (s <= -2147483648.0) return SOX_SAMPLE_MIN;
    return (sox_sample_t)lrint(s);
}

static int in_drain(sox_effect_t *effp, sox_sample_t *obuf, size_t *osamp)
{
    sox_ctx_t *c = *(sox_ctx_t **)effp->priv;
    size_t k = c->n_in - c->pos;
    if (k > *osamp) k = *osamp;
    for (size_t i = 0; i < k; i++)
        obuf[i] = to_sox((double)c->in[c->pos + i] * c->scale);
    c->pos += k;
    *osamp = k;
    return k ? SOX_SUCCESS : SOX_EOF;
}

static int out_flow(sox_effect_t *effp, const sox_sample_t *ibuf, sox_sample_t *obuf, size_t *isamp,
                    size_t *osamp)
{
    (void)obuf;
    sox_ctx_t *c = *(sox_ctx_t **)effp->priv;
    size_t ch = effp->in_signal.channels ? effp->in_signal.channels : 1;
    size_t frames = *isamp / ch;
    double k = 1.0 / (c->scale * 2147483648.0 * (double)ch);
    for (size_t f = 0; f < frames && c->n_out < c->out_cap; f++) {
        double s = 0;
        for (size_t j = 0; j < ch; j++)
            s += ibuf[f * ch + j];
        c->out[c->n_out++] = (float)(s * k);
    }
    *isamp = frames * ch;
    *osamp = 0;
    return SOX_SUCCESS;
}

static const sox_effect_handler_t in_handler = {
    "clmr_input", NULL, SOX_EFF_MCHAN, NULL, NULL, NULL, in_drain, NULL, NULL, sizeof(void *)};
static const sox_effect_handler_t out_handler = {
    "clmr_output", NULL, SOX_EFF_MCHAN, NULL, NULL, out_flow, NULL, NULL, NULL, sizeof(void *)};

/* Adds e to the chain and releases our copy of the struct. libsox copies *e into the chain (and
 * with it the priv pointer) unless the effect reports it would do nothing in this configuration,
 * in which case priv is ours to free. */
static int add_effect(sox_effects_chain_t *chain, sox_effect_t *e, sox_signalinfo_t *sig,
                      const sox_signalinfo_t *target)
{
    size_t before = chain->length;
    int rc = sox_add_effect(chain, e, sig, target);
    if (rc != SOX_SUCCESS || chain->length == before) free(e->priv);
    free(e);
    return rc == SOX_SUCCESS ? 0 : -1;
}

int clmr_sox_apply(const float *in, size_t n_in, double in_rate, const clmr_sox_effect_t *effects,
                   int n_effects, double out_rate_hint, float *out, size_t out_cap, size_t *n_out,
                   double *out_rate, char **errmsg)
{
    *n_out = 0;
    if (clmr_sox_init() != 0) return clmr_set_err(errmsg, CLMR_EIO, "libsox failed to initialise");
    if (!in || !n_in || !(in_rate > 0) || !out)
        return clmr_set_err(errmsg, CLMR_EINVAL, "sox: empty input or bad rate");
    double peak = 0;
    for (size_t i = 0; i < n_in; i++) {
        double v = fabs((double)in[i]);
        if (!(v <= 3.4e38)) return clmr_set_err(errmsg, CLMR_EINVAL, "sox: non-finite input");
        if (v > peak) peak = v;
    }
    sox_ctx_t ctx = {in, n_in, 0, out, out_cap, 0, peak > 0 ? 0.125 / peak : 1.0};
    sox_encodinginfo_t enc;
    memset(&enc, 0, sizeof enc);
    enc.encoding = SOX_ENCODING_FLOAT;
    enc.bits_per_sample = 32;
    sox_signalinfo_t sig = {in_rate, 1, SOX_SAMPLE_PRECISION, n_in, NULL};
    sox_signalinfo_t target = {out_rate_hint > 0 ? out_rate_hint : in_rate, 1, 0, 0, NULL};
    int err = 0;

    pthread_mutex_lock(&sox_lock);
    sox_effects_chain_t *chain = sox_create_effects_chain(&enc, &enc);
    if (!chain) {
        err = clmr_set_err(errmsg, CLMR_ENOMEM, "sox: cannot create an effects chain");
        goto unlock;
    }
    sox_effect_t *e = sox_create_effect(&in_handler);
    if (!e) {
        err = clmr_set_err(errmsg, CLMR_ENOMEM, "sox: cannot create the input effect");
        goto chain;
    }
    *(sox_ctx_t **)e->priv = &ctx;
    if (add_effect(chain, e, &sig, &sig) != 0) {
        err = clmr_set_err(errmsg, CLMR_EIO, "sox: cannot add the input effect");
        goto chain;
    }
    for (int i = 0; i < n_effects; i++) {
        const clmr_sox_effect_t *fx = &effects[i];
        const sox_effect_handler_t *h = sox_find_effect(fx->name);
        if (!h || fx->argc < 0 || fx->argc > CLMR_SOX_MAX_ARGS) {
            err = clmr_set_err(errmsg, CLMR_EINVAL, "sox: unknown effect '%s'", fx->name);
            goto chain;
        }
        e = sox_create_effect(h);
        if (!e) {
            err = clmr_set_err(errmsg, CLMR_ENOMEM, "sox: cannot create effect '%s'", fx->name);
            goto chain;
        }
        char *argv[CLMR_SOX_MAX_ARGS];
        for (int j = 0; j < fx->argc; j++)
            argv[j] = (char *)fx->argv[j];
        if (sox_effect_options(e, fx->argc, argv) != SOX_SUCCESS) {
            e->handler.kill(e);
            free(e->priv);
            free(e);
            err = clmr_set_err(errmsg, CLMR_EINVAL, "sox: bad arguments for effect '%s'", fx->name);
            goto chain;
        }
        if (add_effect(chain, e, &sig, &target) != 0) {
            err = clmr_set_err(errmsg, CLMR_EINVAL, "sox: effect '%s' failed to start", fx->name);
            goto chain;
        }
    }
    double final_rate = sig.rate;
    e = sox_create_effect(&out_handler);
    if (!e) {
        err = clmr_set_err(errmsg, CLMR_ENOMEM, "sox: cannot create the output effect");
        goto chain;
    }
    *(sox_ctx_t **)e->priv = &ctx;
    if (add_effect(chain, e, &sig, &sig) != 0) {
        err = clmr_set_err(errmsg, CLMR_EIO, "sox: cannot add the output effect");
        goto chain;
    }
    if (sox_flow_effects(chain, NULL, NULL) != SOX_SUCCESS) {
        err = clmr_set_err(errmsg, CLMR_EIO, "sox: the effects chain failed");
        goto chain;
    }
    *n_out = ctx.n_out;
    if (out_rate) *out_rate = final_rate;
chain:
    sox_delete_effects_chain(chain);
unlock:
    pthread_mutex_unlock(&sox_lock);
    return err;
}
