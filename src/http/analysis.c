/* analysis.c - decoding + whole-track analysis for the HTTP layer (see analysis.h). */
#include "http/analysis.h"

#include "clmr/audio.h"
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmr/tag_policy.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int clmr_http_model_open(clmr_model_t **model, clmr_http_model_info_t *info, const char *path,
                         char **errmsg)
{
    memset(info, 0, sizeof *info);
    int rc = clmr_model_load(model, path, errmsg);
    if (rc) return rc;
    const clmr_model_t *m = *model;
    snprintf(info->id, sizeof info->id, "%s", clmr_model_id(m));
    snprintf(info->name, sizeof info->name, "%s", clmr_model_name(m) ? clmr_model_name(m) : "");
    snprintf(info->path, sizeof info->path, "%s", path);
    info->n_tags = clmr_model_n_tags(m);
    info->dim = clmr_model_embed_dim(m);
    info->chunk_samples = clmr_model_chunk_samples(m);
    info->sample_rate = clmr_model_sample_rate(m);
    info->tags = calloc((size_t)info->n_tags + 1, sizeof *info->tags);
    if (!info->tags) goto nomem;
    for (int i = 0; i < info->n_tags; i++)
        if (!(info->tags[i] = strdup(clmr_model_tag(m, i)))) goto nomem;
    if ((rc = clmr_tag_policy_from_model(&info->policy, m, errmsg))) {
        clmr_http_model_close(model, info);
        return rc;
    }
    return 0;
nomem:
    clmr_http_model_close(model, info);
    return CLMR_ENOMEM;
}

void clmr_http_model_close(clmr_model_t **model, clmr_http_model_info_t *info)
{
    if (info && info->tags) {
        for (int i = 0; i < info->n_tags; i++)
            free(info->tags[i]);
        free(info->tags);
        info->tags = NULL;
    }
    if (info) clmr_tag_policy_close(&info->policy);
    clmr_model_close(model);
}

int clmr_http_analyze(clmr_http_analysis_t *out, clmr_infer_t *ctx, const void *data, size_t size,
                      size_t max_input_bytes, double max_duration_s, double deadline_s,
                      char **errmsg)
{
    memset(out, 0, sizeof *out);
    clmr_audio_params_t ap = clmr_audio_default_params();
    ap.max_input_bytes = max_input_bytes;
    ap.max_duration_s = max_duration_s;
    if (deadline_s > 0 && deadline_s < ap.deadline_s) ap.deadline_s = deadline_s;
    /* The decoder's and the model's results keep their own allocators: hold both structs and
     * free them with their own functions. */
    struct priv {
        clmr_audio_t audio;
        clmr_track_t tr;
    } *p = calloc(1, sizeof *p);
    if (!p) return CLMR_ENOMEM;
    double t0 = now_s();
    int rc = clmr_audio_decode_memory(&p->audio, data, size, &ap, errmsg);
    if (rc) {
        free(p);
        return rc;
    }
    double t1 = now_s();
    rc = clmr_track_analyze(&p->tr, ctx, p->audio.samples, p->audio.n_samples);
    if (rc) {
        clmr_audio_free(&p->audio);
        free(p);
        return clmr_set_err(errmsg, rc, "analysis failed: %s", clmr_strerror(rc));
    }
    out->priv = p;
    out->decode_s = t1 - t0;
    out->infer_s = now_s() - t1;
    out->samples = p->audio.samples;
    out->n_samples = p->audio.n_samples;
    out->duration_s = p->audio.duration_s;
    out->n_chunks = p->tr.n_chunks;
    out->dim = p->tr.embed_dim;
    out->n_tags = p->tr.n_tags;
    out->emb = p->tr.emb;
    out->scores = p->tr.scores;
    out->chunk_scores = p->tr.chunk_scores;
    out->meta_title = p->audio.meta.title;
    out->meta_artist = p->audio.meta.artist;
    out->meta_album = p->audio.meta.album;
    out->meta_genre = p->audio.meta.genre;
    out->meta_year = p->audio.meta.year;
    out->meta_track_number = p->audio.meta.track_number;
    out->n_warnings = clmr_audio_warnings(&p->audio, out->warnings, 2);
    return 0;
}

void clmr_http_analysis_free(clmr_http_analysis_t *a)
{
    if (!a) return;
    struct priv {
        clmr_audio_t audio;
        clmr_track_t tr;
    } *p = a->priv;
    if (p) {
        clmr_audio_free(&p->audio);
        clmr_track_free(&p->tr);
        free(p);
    }
    memset(a, 0, sizeof *a);
}

/* Written once by clmr_http_infer_configure before the workers start, read-only afterwards. */
static clmr_precision_t g_precision = CLMR_PRECISION_FP32;

int clmr_http_infer_configure(const char *precision, char **errmsg)
{
    clmr_precision_t req, eff;
    char *msg = NULL;
    if (clmr_precision_parse(precision, &req))
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "configuration key 'precision': '%s' is not one of auto|fp32|bf16",
                            precision ? precision : "");
    if (clmr_infer_resolve_precision(req, &eff, &msg)) {
        int rc = clmr_set_err(errmsg, CLMR_EINVAL, "configuration key 'precision': %s",
                              msg ? msg : "bf16 is not supported here");
        free(msg);
        return rc;
    }
    g_precision = eff;
    if (req == CLMR_PRECISION_AUTO)
        CLMR_LOG_INFO("precision auto: running %s (%s)", clmr_precision_name(eff),
                      eff == CLMR_PRECISION_BF16
                          ? "the CPU has native bf16 instructions"
                          : "the CPU has no native bf16 instructions, falling back to fp32");
    return 0;
}

const char *clmr_http_infer_precision(void)
{
    return clmr_precision_name(g_precision);
}

int clmr_http_infer_open(clmr_infer_t **ctx, const clmr_model_t *model, int threads, char **errmsg)
{
    clmr_infer_params_t ip = clmr_infer_default_params();
    ip.threads = threads;
    ip.precision = g_precision;
    return clmr_infer_open(ctx, model, &ip, errmsg);
}

void clmr_http_infer_close(clmr_infer_t **ctx)
{
    clmr_infer_close(ctx);
}
