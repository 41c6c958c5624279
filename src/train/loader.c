/* loader.c - background producer of contrastive training batches (see loader.h).
 *
 * DESIGN: batch k always goes to ring slot k % ring. A worker claims the lowest unclaimed batch
 * once its slot is free, fills it without holding the lock, and marks it ready; the consumer takes
 * batches strictly in index order and frees the slot it held before. So with W workers up to
 * ring - 1 batches are in flight and the order never depends on thread timing. Each worker owns an
 * augmentation workspace and read buffers sized at open for the largest crop any file needs, so
 * nothing is allocated while training runs.
 */
#include "train/loader.h"

#include "clmr/audio.h"
#include "clmr/error.h"
#include "train/soxfx.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define TARGET_RATE 22050
#define RESAMPLE_PAD 256 /* extra source frames read so the resampler's output fills the chunk */
#define MAX_RETRIES 8

typedef struct {
    char *path;
    uint64_t frames;
    int rate, channels;
    clmr_audio_t mem; /* whole decoded track when libsndfile cannot read the file, else zeroed */
} track_t;

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };

typedef struct {
    float *x;         /* (2N * chunk) */
    uint32_t *track;  /* (N) */
    uint64_t *offset; /* (2N) */
    uint64_t index;
    int state;
    int err;
    char *errmsg;
} slot_t;

typedef struct {
    struct clmr_loader *ld;
    pthread_t thread;
    int started;
    clmr_augment_t *aug;
    float *raw;     /* (max_need * max_channels) interleaved frames read from the file */
    float *mono;    /* (max_need) */
    float *crop;    /* (chunk) 22,050 Hz mono crop */
    uint32_t *perm; /* (n_tracks) permutation of the epoch in perm_epoch */
    uint64_t perm_epoch;
} worker_t;

struct clmr_loader {
    clmr_loader_params_t p;
    track_t *tracks;
    size_t n_tracks, skipped, resampled, decoded;
    size_t decoded_bytes;
    size_t max_need, max_channels;
    slot_t *slots;
    int ring;
    worker_t *workers;
    int n_workers;
    pthread_mutex_t mu;
    pthread_cond_t cv_ready, cv_free;
    int sync_ok;
    uint64_t next_claim, next_deliver;
    int held; /* slot held by the consumer, -1 when none */
    int stop;
    clmr_loader_stats_t st;
};

clmr_loader_params_t clmr_loader_default_params(void)
{
    clmr_loader_params_t p = {
        .batch_pairs = 48,
        .n_workers = 1,
        .ring = 0, /* n_workers + 2 */
        .seed = 0,
        .start_batch = 0,
        .same_crop = 0,
        .recursive = 1,
        .skip_bad = 1,
        .max_decoded_bytes = (size_t)1 << 30,
        .on_skip = NULL,
        .on_skip_ud = NULL,
        .augment = clmr_augment_default_params(),
    };
    return p;
}

static double clock_s(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now_s(void)
{
    return clock_s(CLOCK_MONOTONIC);
}

/* Source frames a crop of this track needs: the chunk itself at 22,050 Hz, otherwise the chunk's
 * duration at the file's rate plus a margin for the resampler. */
static size_t crop_need(const clmr_loader_t *ld, const track_t *t)
{
    size_t chunk = ld->p.augment.chunk;
    if (t->rate == TARGET_RATE) return chunk;
    return (size_t)ceil((double)chunk * t->rate / TARGET_RATE) + RESAMPLE_PAD;
}

/* --- pool scanning --- */

/* Decodes a file libsndfile cannot read with FFmpeg, within the loader's memory budget. When the
 * file cannot be used *why is set (pointing into buf) and 0 returned; CLMR_ENOMEM is returned. */
static int decode_track(clmr_loader_t *ld, const char *path, track_t *t, char *buf, size_t bufsz,
                        const char **why)
{
    clmr_audio_params_t ap = clmr_audio_default_params();
    ap.max_duration_s = 4 * 3600.0; /* local training files, not uploads */
    char *msg = NULL;
    int err = clmr_audio_decode_file(&t->mem, path, &ap, &msg);
    if (err == CLMR_ENOMEM) {
        free(msg);
        return err;
    }
    if (err) {
        snprintf(buf, bufsz, "neither libsndfile nor FFmpeg can use it (%s)",
                 msg ? msg : clmr_strerror(err));
        *why = buf;
    } else if (ld->decoded_bytes + t->mem.n_samples * sizeof(float) > ld->p.max_decoded_bytes) {
        snprintf(buf, bufsz,
                 "libsndfile cannot read it and its decoded audio would pass the "
                 "max_decoded_bytes budget (convert it to FLAC)");
        *why = buf;
        clmr_audio_free(&t->mem);
        memset(&t->mem, 0, sizeof t->mem);
    } else {
        ld->decoded_bytes += t->mem.n_samples * sizeof(float);
        t->frames = t->mem.n_samples;
        t->rate = CLMR_SAMPLE_RATE;
        t->channels = 1;
    }
    free(msg);
    return 0;
}

static int add_track(clmr_loader_t *ld, const char *path, char **errmsg)
{
    SF_INFO info;
    memset(&info, 0, sizeof info);
    const char *why = NULL;
    char buf[512];
    track_t *t = &ld->tracks[ld->n_tracks];
    memset(t, 0, sizeof *t);
    SNDFILE *f = sf_open(path, SFM_READ, &info);
    if (f) sf_close(f);
    if (!f || !info.seekable) {
        if (ld->p.max_decoded_bytes > 0) {
            int err = decode_track(ld, path, t, buf, sizeof buf, &why);
            if (err) return clmr_set_err(errmsg, err, "%s: out of memory while decoding", path);
        } else {
            snprintf(buf, sizeof buf, "libsndfile cannot read it (%s)",
                     f ? "format is not seekable" : sf_strerror(NULL));
            why = buf;
        }
    } else {
        t->frames = info.frames > 0 ? (uint64_t)info.frames : 0;
        t->rate = info.samplerate;
        t->channels = info.channels;
    }
    if (!why) {
        if (t->frames == 0)
            why = "no audio frames";
        else if (t->rate < 8000 || t->rate > 192000)
            why = "sample rate outside 8000..192000 Hz";
        else if (t->channels < 1 || t->channels > 8)
            why = "channel count outside 1..8";
    }
    if (why) {
        if (t->mem.samples) {
            ld->decoded_bytes -= t->mem.n_samples * sizeof(float);
            clmr_audio_free(&t->mem);
            memset(&t->mem, 0, sizeof t->mem);
        }
        if (!ld->p.skip_bad) return clmr_set_err(errmsg, CLMR_EINVAL, "%s: %s", path, why);
        ld->skipped++;
        if (ld->p.on_skip) ld->p.on_skip(ld->p.on_skip_ud, path, why);
        return 0;
    }
    t->path = strdup(path);
    if (!t->path) {
        clmr_audio_free(&t->mem);
        return clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
    }
    ld->n_tracks++;
    if (t->mem.samples) ld->decoded++;
    if (t->rate != TARGET_RATE) ld->resampled++;
    size_t need = crop_need(ld, t);
    if (need > ld->max_need) ld->max_need = need;
    if ((size_t)t->channels > ld->max_channels) ld->max_channels = (size_t)t->channels;
    return 0;
}

/* --- producing batches --- */

/* Track of the p-th pair overall: epoch p / T uses its own permutation of the pool. */
static uint32_t track_at(clmr_loader_t *ld, worker_t *w, uint64_t p)
{
    uint64_t T = ld->n_tracks, epoch = p / T;
    if (w->perm_epoch != epoch) {
        clmr_rng_t r;
        clmr_rng_seed(&r, ld->p.seed, 2 * epoch); /* even streams: epochs, odd: batches */
        for (uint64_t i = 0; i < T; i++)
            w->perm[i] = (uint32_t)i;
        for (uint64_t i = T - 1; i > 0; i--) { /* Fisher-Yates */
            uint64_t j = clmr_rng_below(&r, i + 1);
            uint32_t tmp = w->perm[i];
            w->perm[i] = w->perm[j];
            w->perm[j] = tmp;
        }
        w->perm_epoch = epoch;
    }
    return w->perm[p % T];
}

/* Reads one random crop of track t into w->crop (chunk samples, 22,050 Hz mono, zero-padded). */
static int read_crop(clmr_loader_t *ld, worker_t *w, const track_t *t, clmr_rng_t *r,
                     uint64_t *offset, uint64_t *nonfinite, char **errmsg)
{
    size_t chunk = ld->p.augment.chunk, need = crop_need(ld, t);
    uint64_t off = t->frames > need ? clmr_rng_below(r, t->frames - need + 1) : 0;
    size_t len = t->frames < need ? (size_t)t->frames : need;
    *offset = off;
    if (t->mem.samples) { /* decoded at open: already 22,050 Hz mono and finite */
        memcpy(w->crop, t->mem.samples + off, len * sizeof(float));
        if (len < chunk) memset(w->crop + len, 0, (chunk - len) * sizeof(float));
        return 0;
    }
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *f = sf_open(t->path, SFM_READ, &info);
    if (!f) return clmr_set_err(errmsg, CLMR_EIO, "%s: %s", t->path, sf_strerror(NULL));
    int err = 0;
    if (info.samplerate != t->rate || info.channels != t->channels ||
        (uint64_t)info.frames < off + len) {
        err = clmr_set_err(errmsg, CLMR_EIO, "%s: the file changed since the pool was scanned",
                           t->path);
        goto close;
    }
    if (off && sf_seek(f, (sf_count_t)off, SEEK_SET) < 0) {
        err = clmr_set_err(errmsg, CLMR_EIO, "%s: seek failed (%s)", t->path, sf_strerror(f));
        goto close;
    }
    sf_count_t got = sf_readf_float(f, w->raw, (sf_count_t)len);
    if (got != (sf_count_t)len) {
        err = clmr_set_err(errmsg, CLMR_EIO, "%s: short read at frame %llu (%s)", t->path,
                           (unsigned long long)off, sf_strerror(f));
        goto close;
    }
    size_t ch = (size_t)t->channels;
    float *mono = t->rate == TARGET_RATE ? w->crop : w->mono;
    for (size_t i = 0; i < len; i++) {
        float s = 0;
        for (size_t c = 0; c < ch; c++)
            s += w->raw[i * ch + c];
        s /= (float)ch;
        if (!isfinite(s)) {
            s = 0; /* one bad sample must not poison the batch */
            (*nonfinite)++;
        }
        mono[i] = s;
    }
    size_t have = len;
    if (t->rate != TARGET_RATE) {
        char rate[16];
        snprintf(rate, sizeof rate, "%d", TARGET_RATE);
        const clmr_sox_effect_t fx[1] = {{"rate", 1, {rate}}};
        err = clmr_sox_apply(mono, len, t->rate, fx, 1, TARGET_RATE, w->crop, chunk, &have, NULL,
                             errmsg);
        if (err) goto close;
    }
    if (have < chunk) memset(w->crop + have, 0, (chunk - have) * sizeof(float));
close:
    sf_close(f);
    return err;
}

/* Fills slot s with batch k. Every draw comes from RNG streams of (seed, k). */
static int produce(clmr_loader_t *ld, worker_t *w, slot_t *s, uint64_t k, uint64_t *fallbacks,
                   uint64_t *nonfinite, uint64_t *read_errors, char **errmsg)
{
    size_t N = ld->p.batch_pairs, chunk = ld->p.augment.chunk;
    clmr_rng_t rb;
    clmr_rng_seed(&rb, ld->p.seed, 2 * k + 1);
    for (size_t i = 0; i < N; i++) {
        if (__atomic_load_n(&ld->stop, __ATOMIC_RELAXED)) return CLMR_ECANCELLED; /* closing */
        clmr_rng_t r;
        clmr_rng_seed(&r, clmr_rng_u64(&rb), i);
        uint32_t tr = track_at(ld, w, k * N + i);
        int err = 0;
        for (int attempt = 0;; attempt++) {
            err = 0;
            for (int v = 0; v < 2 && !err; v++) {
                if (v == 0 || !ld->p.same_crop)
                    err = read_crop(ld, w, &ld->tracks[tr], &r, &s->offset[v * N + i], nonfinite,
                                    errmsg);
                else
                    s->offset[N + i] = s->offset[i];
                if (err) break;
                clmr_augment_record_t rec;
                float *dst = s->x + (v * N + i) * chunk;
                err = clmr_augment_view(w->aug, &r, w->crop, chunk, dst, &rec);
                *fallbacks += (uint64_t)(rec.pitch_fallback + rec.reverb_fallback);
                *nonfinite += rec.nonfinite;
            }
            if (!err) break;
            (*read_errors)++;
            if (attempt + 1 >= MAX_RETRIES) return err;
            if (ld->n_tracks > 1) /* replace the failing track by a different one */
                tr = (uint32_t)((tr + 1 + clmr_rng_below(&r, ld->n_tracks - 1)) % ld->n_tracks);
        }
        s->track[i] = tr;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    clmr_loader_t *ld = w->ld;
    pthread_mutex_lock(&ld->mu);
    for (;;) {
        if (ld->stop) break;
        uint64_t k = ld->next_claim;
        slot_t *s = &ld->slots[k % (uint64_t)ld->ring];
        if (s->state != SLOT_FREE) {
            pthread_cond_wait(&ld->cv_free, &ld->mu);
            continue;
        }
        s->state = SLOT_FILLING;
        s->index = k;
        ld->next_claim++;
        pthread_mutex_unlock(&ld->mu);

        double t0 = now_s(), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
        uint64_t fallbacks = 0, nonfinite = 0, read_errors = 0;
        char *msg = NULL;
        int err = produce(ld, w, s, k, &fallbacks, &nonfinite, &read_errors, &msg);
        double dt = now_s() - t0, dc = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;

        pthread_mutex_lock(&ld->mu);
        free(s->errmsg);
        s->errmsg = msg;
        s->err = err;
        s->state = SLOT_READY;
        ld->st.produce_s += dt;
        ld->st.produce_cpu_s += dc;
        ld->st.views += 2 * ld->p.batch_pairs;
        ld->st.fallbacks += fallbacks;
        ld->st.nonfinite += nonfinite;
        ld->st.read_errors += read_errors;
        pthread_cond_broadcast(&ld->cv_ready);
    }
    pthread_mutex_unlock(&ld->mu);
    return NULL;
}

/* --- lifecycle --- */

static int start(clmr_loader_t *ld, char **errmsg)
{
    const clmr_loader_params_t *p = &ld->p;
    if (ld->n_tracks == 0)
        return clmr_set_err(errmsg, CLMR_EINVAL, "no usable audio file in the pool (%zu skipped)",
                            ld->skipped);
    if (ld->n_tracks > UINT32_MAX) return clmr_set_err(errmsg, CLMR_EINVAL, "too many files");
    size_t N = p->batch_pairs, chunk = p->augment.chunk;
    ld->n_workers = p->n_workers;
    ld->ring = p->ring > 0 ? p->ring : p->n_workers + 2;
    if (ld->ring < 2) ld->ring = 2;
    ld->next_claim = ld->next_deliver = p->start_batch;
    ld->held = -1;
    ld->st.tracks = ld->n_tracks;
    ld->st.skipped = ld->skipped;
    ld->st.resampled = ld->resampled;
    ld->st.decoded = ld->decoded;

    ld->slots = calloc((size_t)ld->ring, sizeof *ld->slots);
    ld->workers = calloc((size_t)ld->n_workers, sizeof *ld->workers);
    if (!ld->slots || !ld->workers) return clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
    for (int i = 0; i < ld->ring; i++) {
        slot_t *s = &ld->slots[i];
        s->x = malloc(2 * N * chunk * sizeof(float));
        s->track = calloc(N, sizeof *s->track);
        s->offset = calloc(2 * N, sizeof *s->offset);
        if (!s->x || !s->track || !s->offset)
            return clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory for %d batch buffers of %zu MB",
                                ld->ring, 2 * N * chunk * sizeof(float) >> 20);
        memset(s->x, 0, 2 * N * chunk * sizeof(float)); /* first touch now, not mid-training */
    }
    size_t need = ld->max_need > chunk ? ld->max_need : chunk;
    for (int i = 0; i < ld->n_workers; i++) {
        worker_t *w = &ld->workers[i];
        w->ld = ld;
        w->perm_epoch = UINT64_MAX;
        int err = clmr_augment_open(&w->aug, &p->augment, errmsg);
        if (err) return err;
        w->raw = malloc(need * ld->max_channels * sizeof(float));
        w->mono = malloc(need * sizeof(float));
        w->crop = malloc(chunk * sizeof(float));
        w->perm = malloc(ld->n_tracks * sizeof(uint32_t));
        if (!w->raw || !w->mono || !w->crop || !w->perm)
            return clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
    }
    if (pthread_mutex_init(&ld->mu, NULL) || pthread_cond_init(&ld->cv_ready, NULL) ||
        pthread_cond_init(&ld->cv_free, NULL))
        return clmr_set_err(errmsg, CLMR_ENOMEM, "cannot create loader locks");
    ld->sync_ok = 1;
    for (int i = 0; i < ld->n_workers; i++) {
        if (pthread_create(&ld->workers[i].thread, NULL, worker_main, &ld->workers[i]) != 0)
            return clmr_set_err(errmsg, CLMR_ENOMEM, "cannot start loader thread %d", i);
        ld->workers[i].started = 1;
    }
    return 0;
}

static int check_params(const clmr_loader_params_t *p, char **errmsg)
{
    if (p->batch_pairs < 1 || p->batch_pairs > 65536)
        return clmr_set_err(errmsg, CLMR_EINVAL, "batch_pairs must be 1..65536");
    if (p->n_workers < 1 || p->n_workers > 64)
        return clmr_set_err(errmsg, CLMR_EINVAL, "n_workers must be 1..64");
    if (p->ring < 0 || p->ring > 64) return clmr_set_err(errmsg, CLMR_EINVAL, "ring must be 0..64");
    if (p->augment.sample_rate != TARGET_RATE)
        return clmr_set_err(errmsg, CLMR_EINVAL, "the loader produces 22,050 Hz audio only");
    return 0;
}

int clmr_loader_open(clmr_loader_t **out, const char *const *paths, size_t n_paths,
                     const clmr_loader_params_t *params, char **errmsg)
{
    *out = NULL;
    clmr_loader_params_t p = params ? *params : clmr_loader_default_params();
    int err = check_params(&p, errmsg);
    if (err) return err;
    clmr_loader_t *ld = calloc(1, sizeof *ld);
    if (!ld) return clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
    ld->p = p;
    ld->tracks = calloc(n_paths ? n_paths : 1, sizeof *ld->tracks);
    if (!ld->tracks) {
        err = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n_paths && !err; i++)
        err = add_track(ld, paths[i], errmsg);
    if (!err) err = start(ld, errmsg);
    if (!err) {
        *out = ld;
        return 0;
    }
fail:
    clmr_loader_close(&ld);
    return err;
}

/* --- directory scanning --- */

typedef struct {
    char **v;
    size_t n, cap;
} strvec_t;

static int is_audio_name(const char *name)
{
    static const char *const exts[] = {"wav", "flac", "ogg",  "oga", "opus", "mp3",
                                       "aif", "aiff", "aifc", "au",  "w64",  "caf",
                                       "m4a", "mp4",  "aac",  "mka", "webm", "wv"};
    const char *dot = strrchr(name, '.');
    if (!dot) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(dot + 1, exts[i]) == 0) return 1;
    return 0;
}

static int scan_dir(const char *dir, int recursive, strvec_t *out, int depth, char **errmsg)
{
    if (depth > 32) return 0; /* symlink loops or absurd nesting */
    DIR *d = opendir(dir);
    if (!d)
        return clmr_set_err(errmsg, CLMR_EIO, "cannot read directory %s: %s", dir, strerror(errno));
    int err = 0;
    struct dirent *e;
    while (!err && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *path = NULL;
        if (asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
            err = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
            break;
        }
        struct stat sb;
        if (stat(path, &sb) != 0) {
            free(path);
            continue;
        }
        if (S_ISDIR(sb.st_mode)) {
            if (recursive) err = scan_dir(path, recursive, out, depth + 1, errmsg);
            free(path);
        } else if (S_ISREG(sb.st_mode) && is_audio_name(e->d_name)) {
            if (out->n == out->cap) {
                size_t cap = out->cap ? 2 * out->cap : 64;
                char **v = realloc(out->v, cap * sizeof *v);
                if (!v) {
                    free(path);
                    err = clmr_set_err(errmsg, CLMR_ENOMEM, "out of memory");
                    break;
                }
                out->v = v;
                out->cap = cap;
            }
            out->v[out->n++] = path;
        } else {
            free(path);
        }
    }
    closedir(d);
    return err;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int clmr_loader_open_dir(clmr_loader_t **out, const char *dir, const clmr_loader_params_t *params,
                         char **errmsg)
{
    *out = NULL;
    int recursive = params ? params->recursive : 1;
    strvec_t files = {NULL, 0, 0};
    int err = scan_dir(dir, recursive, &files, 0, errmsg);
    if (!err && files.n == 0)
        err =
            clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no audio file (wav, flac, ogg, ...) in %s", dir);
    if (!err) {
        /* readdir order differs between file systems: sort so a seed means the same batches. */
        qsort(files.v, files.n, sizeof *files.v, cmp_str);
        err = clmr_loader_open(out, (const char *const *)files.v, files.n, params, errmsg);
    }
    for (size_t i = 0; i < files.n; i++)
        free(files.v[i]);
    free(files.v);
    return err;
}

/* --- consumer --- */

int clmr_loader_next(clmr_loader_t *ld, clmr_batch_t *batch, char **errmsg)
{
    memset(batch, 0, sizeof *batch);
    pthread_mutex_lock(&ld->mu);
    if (ld->held >= 0) {
        ld->slots[ld->held].state = SLOT_FREE;
        ld->held = -1;
        pthread_cond_broadcast(&ld->cv_free);
    }
    uint64_t k = ld->next_deliver;
    slot_t *s = &ld->slots[k % (uint64_t)ld->ring];
    double t0 = 0;
    int waited = 0;
    while (!(s->state == SLOT_READY && s->index == k)) {
        if (!waited) t0 = now_s();
        waited = 1;
        pthread_cond_wait(&ld->cv_ready, &ld->mu);
    }
    if (waited) {
        double dt = now_s() - t0;
        ld->st.waits++;
        ld->st.wait_s += dt;
        if (dt > ld->st.max_wait_s) ld->st.max_wait_s = dt;
    }
    int err = s->err;
    if (err) {
        clmr_set_err(errmsg, err, "batch %llu: %s", (unsigned long long)k,
                     s->errmsg ? s->errmsg : clmr_strerror(err));
        pthread_mutex_unlock(&ld->mu);
        return err; /* the batch stays undelivered: a retry returns the same error */
    }
    s->state = SLOT_HELD;
    ld->held = (int)(s - ld->slots);
    ld->next_deliver++;
    ld->st.batches++;
    pthread_mutex_unlock(&ld->mu);
    batch->x = s->x;
    batch->n_pairs = ld->p.batch_pairs;
    batch->chunk = ld->p.augment.chunk;
    batch->index = k;
    batch->track = s->track;
    batch->offset = s->offset;
    return 0;
}

void clmr_loader_stats(clmr_loader_t *ld, clmr_loader_stats_t *st)
{
    pthread_mutex_lock(&ld->mu);
    *st = ld->st;
    pthread_mutex_unlock(&ld->mu);
}

size_t clmr_loader_n_tracks(const clmr_loader_t *ld)
{
    return ld->n_tracks;
}

const char *clmr_loader_track_path(const clmr_loader_t *ld, size_t i)
{
    return i < ld->n_tracks ? ld->tracks[i].path : NULL;
}

void clmr_loader_close(clmr_loader_t **pld)
{
    if (!pld || !*pld) return;
    clmr_loader_t *ld = *pld;
    if (ld->sync_ok) {
        pthread_mutex_lock(&ld->mu);
        __atomic_store_n(&ld->stop, 1, __ATOMIC_RELAXED);
        pthread_cond_broadcast(&ld->cv_free);
        pthread_cond_broadcast(&ld->cv_ready);
        pthread_mutex_unlock(&ld->mu);
    }
    for (int i = 0; ld->workers && i < ld->n_workers; i++) {
        worker_t *w = &ld->workers[i];
        if (w->started) pthread_join(w->thread, NULL);
        clmr_augment_close(&w->aug);
        free(w->raw);
        free(w->mono);
        free(w->crop);
        free(w->perm);
    }
    free(ld->workers);
    for (int i = 0; ld->slots && i < ld->ring; i++) {
        free(ld->slots[i].x);
        free(ld->slots[i].track);
        free(ld->slots[i].offset);
        free(ld->slots[i].errmsg);
    }
    free(ld->slots);
    if (ld->sync_ok) {
        pthread_mutex_destroy(&ld->mu);
        pthread_cond_destroy(&ld->cv_ready);
        pthread_cond_destroy(&ld->cv_free);
    }
    for (size_t i = 0; i < ld->n_tracks; i++) {
        free(ld->tracks[i].path);
        clmr_audio_free(&ld->tracks[i].mem);
    }
    free(ld->tracks);
    free(ld);
    *pld = NULL;
}
