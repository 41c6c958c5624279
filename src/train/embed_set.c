/* embed_set.c - embedding a labelled file list with the frozen encoder, through the disk cache.
 *
 * DESIGN: files are read once into memory, hashed and, on a cache miss, decoded from the same
 * bytes (clmr_audio_decode_memory) so the hash always describes what was embedded. One inference
 * context serves every file; it is built on the first miss, so a fully cached run never touches
 * oneDNN. Cache entry format (little-endian host floats, the machines we run on):
 * "CLMREMB1" | uint32 embed_dim | uint32 n_chunks | n_chunks x embed_dim float32.
 */
#include "train/embed_set.h"

#include "clmr/audio.h"
#include "clmr/error.h"
#include "nn/model_internal.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char CACHE_MAGIC[8] = {'C', 'L', 'M', 'R', 'E', 'M', 'B', '1'};

int clmr_embed_encoder_id(char out[17], const clmr_model_t *m)
{
    clmr_samplecnn_config_t enc = m->cfg;
    enc.n_tags = 0;
    size_t nfloat = clmr_samplecnn_param_count(&enc); /* the encoder is the block's prefix */
    size_t hdr = (size_t)(enc.n_layers + 1) * sizeof(int32_t);
    uint8_t *buf = malloc(hdr + nfloat * sizeof(float));
    if (!buf) return CLMR_ENOMEM;
    int32_t w = enc.n_layers;
    memcpy(buf, &w, sizeof(w));
    for (int i = 0; i < enc.n_layers; i++) {
        w = enc.layer[i].out_ch;
        memcpy(buf + (size_t)(i + 1) * sizeof(w), &w, sizeof(w));
    }
    memcpy(buf + hdr, m->params, nfloat * sizeof(float));
    char hex[65];
    int err = clmr__sha256_hex(hex, buf, hdr + nfloat * sizeof(float));
    free(buf);
    if (err) return err;
    memcpy(out, hex, 16);
    out[16] = 0;
    return 0;
}

char *clmr__emb_cache_path(const char *dir, const char *enc_id, const char *audio_sha)
{
    size_t n = strlen(dir) + strlen(enc_id) + strlen(audio_sha) + 8;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s-%s.emb", dir, enc_id, audio_sha);
    return p;
}

int clmr__emb_cache_read(float **emb, int *n_chunks, const char *path, int embed_dim)
{
    *emb = NULL;
    *n_chunks = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return CLMR_ENOT_FOUND;
    char magic[8];
    uint32_t d, nc;
    float *e = NULL;
    int err = CLMR_ENOT_FOUND;
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, CACHE_MAGIC, 8) != 0 ||
        fread(&d, sizeof(d), 1, f) != 1 || fread(&nc, sizeof(nc), 1, f) != 1 ||
        d != (uint32_t)embed_dim || nc < 1 || nc > (1u << 24))
        goto out;
    size_t n = (size_t)nc * d;
    if (!(e = malloc(n * sizeof(float)))) {
        err = CLMR_ENOMEM;
        goto out;
    }
    if (fread(e, sizeof(float), n, f) != n || fgetc(f) != EOF) goto out; /* short or long */
    for (size_t i = 0; i < n; i++)
        if (!isfinite(e[i])) goto out;
    *emb = e, e = NULL;
    *n_chunks = (int)nc;
    err = 0;
out:
    free(e);
    fclose(f);
    return err;
}

int clmr__emb_cache_write(const char *path, const float *emb, int n_chunks, int embed_dim,
                          char **errmsg)
{
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return CLMR_ENOMEM;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    int err = 0;
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        err = clmr_set_err(errmsg, CLMR_EIO, "%s: %s", tmp, strerror(errno));
        goto out;
    }
    uint32_t d = (uint32_t)embed_dim, nc = (uint32_t)n_chunks;
    size_t cnt = (size_t)n_chunks * (size_t)embed_dim;
    int ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&d, sizeof(d), 1, f) == 1 &&
             fwrite(&nc, sizeof(nc), 1, f) == 1 && fwrite(emb, sizeof(float), cnt, f) == cnt;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        err = clmr_set_err(errmsg, CLMR_EIO, "cannot write cache entry %s: %s", path,
                           strerror(errno));
        unlink(tmp);
    }
out:
    free(tmp);
    return err;
}

void clmr_embed_set_free(clmr_embed_set_t *s)
{
    if (!s) return;
    for (int i = 0; s->emb && i < s->n_files; i++)
        free(s->emb[i]);
    free(s->emb);
    free(s->n_chunks);
    memset(s, 0, sizeof(*s));
}

void clmr_embed_track_scores(double *scores, const clmr_model_t *m, const float *chunk_emb,
                             int n_chunks)
{
    /* the model's own head (linear or MLP, head.c) */
    clmr__model_head_mean_scores(m, chunk_emb, n_chunks, scores);
}

/* Appends a line to *warn (malloc'd, newline separated). */
static void add_warning(char **warn, const char *msg)
{
    if (!warn || !msg) return;
    size_t old = *warn ? strlen(*warn) : 0, n = old + strlen(msg) + 2;
    char *w = realloc(*warn, n);
    if (!w) return;
    snprintf(w + old, n - old, "%s%s", old ? "\n" : "", msg);
    *warn = w;
}

int clmr_embed_set_build(clmr_embed_set_t *out, const clmr_model_t *m, const clmr_labels_t *labels,
                         const char *cache_dir, int threads, clmr_embed_progress_cb cb, void *ud,
                         char **warn, char **errmsg)
{
    memset(out, 0, sizeof(*out));
    const int n = labels->n_items, D = clmr_model_embed_dim(m);
    clmr_infer_t *ctx = NULL;
    clmr_audio_params_t ap = clmr_audio_default_params();
    char enc_id[17], sha[65], *data = NULL, *cpath = NULL, *msg = NULL;
    clmr_audio_t audio = {0};
    clmr_track_t track = {0};
    int i = 0, err = clmr_embed_encoder_id(enc_id, m);
    if (err) return err;
    out->embed_dim = D;
    out->n_chunks = calloc((size_t)n, sizeof(int));
    out->emb = calloc((size_t)n, sizeof(float *));
    if (!out->n_chunks || !out->emb) goto nomem;
    out->n_files = n;
    if (cache_dir && mkdir(cache_dir, 0777) != 0 && errno != EEXIST) {
        char *w = NULL;
        clmr_set_err(&w, CLMR_EIO, "cannot create cache folder %s: %s (not caching)", cache_dir,
                     strerror(errno));
        add_warning(warn, w);
        free(w);
        cache_dir = NULL;
    }
    for (i = 0; i < n; i++) {
        const char *path = labels->paths[i];
        size_t size;
        if ((err = clmr__read_file(&data, &size, path, ap.max_input_bytes, &msg))) goto file_fail;
        if ((err = clmr__sha256_hex(sha, data, size))) goto fail;
        if (cache_dir) {
            if (!(cpath = clmr__emb_cache_path(cache_dir, enc_id, sha))) goto nomem;
            err = clmr__emb_cache_read(&out->emb[i], &out->n_chunks[i], cpath, D);
            if (err == CLMR_ENOMEM) goto fail;
        }
        if (!cache_dir || err) {
            if ((err = clmr_audio_decode_memory(&audio, data, size, &ap, &msg))) goto file_fail;
            if (!ctx) {
                clmr_infer_params_t ip = clmr_infer_default_params();
                ip.threads = threads;
                if ((err = clmr_infer_open(&ctx, m, &ip, &msg))) goto file_fail;
            }
            if ((err = clmr_track_analyze(&track, ctx, audio.samples, audio.n_samples))) {
                clmr_set_err(&msg, err, "%s", clmr_strerror(err));
                goto file_fail;
            }
            out->n_chunks[i] = track.n_chunks;
            out->emb[i] = track.chunk_emb; /* take ownership */
            track.chunk_emb = NULL;
            clmr_track_free(&track);
            clmr_audio_free(&audio);
            out->encoder_runs++;
            if (cache_dir) {
                char *w = NULL;
                if (clmr__emb_cache_write(cpath, out->emb[i], out->n_chunks[i], D, &w))
                    add_warning(warn, w);
                free(w);
            }
            if (cb) cb(ud, i, n, 0);
        } else {
            out->cache_hits++;
            if (cb) cb(ud, i, n, 1);
        }
        err = 0;
        free(cpath), cpath = NULL;
        free(data), data = NULL;
    }
    clmr_infer_close(&ctx);
    return 0;
file_fail:
    clmr_set_err(errmsg, err, "%s (labels line %d): %s", labels->paths[i], labels->lines[i],
                 msg ? msg : clmr_strerror(err));
    goto fail;
nomem:
    err = CLMR_ENOMEM;
fail:
    free(msg);
    free(cpath);
    free(data);
    clmr_audio_free(&audio);
    clmr_track_free(&track);
    clmr_infer_close(&ctx);
    clmr_embed_set_free(out);
    return err;
}
