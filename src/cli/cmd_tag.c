/* cmd_tag.c - `clmrd tag`: tag audio files from the command line.
 *
 * DESIGN: one model and one inference context for the whole run; a file that fails is reported
 * (stderr, and as a JSON error line with --json) without stopping the others. The exit status is 1
 * when any file failed. Decoding is overlapped with inference: the first file decodes while the
 * model loads and the context is built, and while file i runs through the model a second thread
 * decodes file i+1 (one file ahead, so at most two decoded files are in memory); results are
 * still printed in argument order.
 */
#include "cli/cli.h"
#include "cli/model_path.h"
#include "clmr/audio.h"
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmr/tag_policy.h"

#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *model_path;
    int json, per_chunk, embedding, threads, batch, top, top_given, all;
    double max_duration_s; /* 0: the decoder's default */
    clmr_precision_t precision;
    const clmr_tag_policy_t *policy; /* the model's tag policy; NULL = none */
} tag_opts_t;

typedef struct {
    int tag;
    float score;
} ranked_tag_t;

static int by_score_desc(const void *a, const void *b)
{
    const ranked_tag_t *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? 1 : -1;
    return x->tag - y->tag; /* stable order for equal scores */
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: clmrd tag [OPTIONS] FILE...   (FILE '-' reads the audio from standard input)\n\n"
        "Decode each audio file (any format FFmpeg reads: wav, flac, mp3, ogg, opus, m4a, "
        "aiff...),\n"
        "run the CLMR SampleCNN model and print its tags.\n\n"
        "Options:\n"
        "  --model PATH    model file (.safetensors); default: $CLMRD_MODEL, then\n"
        "                  models/" CLMR_DEFAULT_MODEL_FILE
        " of the build tree, then the installed one\n"
        "  --json          one JSON object per file per line (file, model (id), model_name,\n"
        "                  duration_s, chunks, tags, warnings)\n"
        "  --top N         tags shown per file and per chunk (default 10; --json: all unless "
        "given)\n"
        "  --all           also show tags the model's tag policy does not trust on real audio\n"
        "                  (hidden by default; a model without a policy shows every tag)\n"
        "  --embedding     add the 512-d track embedding (L2-normalised mean of chunk embeddings)\n"
        "  --per-chunk     per-chunk top tags (text), or per-chunk start_s, tags, scores (model\n"
        "                  tag order) and raw embedding (--json)\n"
        "  --max-duration S  longest audio accepted, in seconds (default $CLMRD_MAX_DURATION_S,\n"
        "                  then 900; at most 86400); longer files fail with audio_too_long\n"
        "  --threads N     inference threads (default: all cores)\n"
        "  --batch N       chunks per inference batch (default 8)\n"
        "  --precision P   auto (default: bf16 where the CPU has native bf16, else fp32), fp32\n"
        "                  or bf16 (an error on a CPU without native bf16)\n"
        "  -h, --help      this help\n\n"
        "Exit status: 0 when every file was tagged, 1 when any file failed, 2 on usage errors.\n");
}

static json_t *float_array(const float *v, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_real(v[i]));
    return a;
}

static void print_json_line(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT | JSON_REAL_PRECISION(6) | JSON_PRESERVE_ORDER);
    if (s) {
        puts(s);
        free(s);
    }
    fflush(stdout);
}

static void report_error(const tag_opts_t *o, const char *file, int err, const char *msg)
{
    fprintf(stderr, "clmrd tag: %s: %s\n", file, msg ? msg : clmr_strerror(err));
    if (o->json) {
        json_t *obj = json_pack("{s:s, s:{s:s, s:s}}", "file", file, "error", "code",
                                clmr_err_name(err), "message", msg ? msg : clmr_strerror(err));
        print_json_line(obj);
        json_decref(obj);
    }
}

/* The tags of chunk c ranked by score: fills rank (n_tags entries); returns n_tags. */
static int rank_chunk(const clmr_track_t *t, int c, ranked_tag_t *rank)
{
    for (int i = 0; i < t->n_tags; i++)
        rank[i] = (ranked_tag_t){i, t->chunk_scores[(size_t)c * t->n_tags + i]};
    qsort(rank, (size_t)t->n_tags, sizeof(*rank), by_score_desc);
    return t->n_tags;
}

/* [{"tag","score"}...] of chunk c, highest first, at most top. */
static json_t *chunk_tags_json(const clmr_model_t *m, const clmr_track_t *t, int c, int top)
{
    json_t *a = json_array();
    ranked_tag_t *rank = t->n_tags > 0 ? calloc((size_t)t->n_tags, sizeof(*rank)) : NULL;
    if (!rank) return a;
    int n = rank_chunk(t, c, rank);
    for (int i = 0; i < n && i < top; i++)
        json_array_append_new(a, json_pack("{s:s, s:f}", "tag", clmr_model_tag(m, rank[i].tag),
                                           "score", (double)rank[i].score));
    free(rank);
    return a;
}

static void print_chunk_top(const clmr_model_t *m, const clmr_track_t *t, int c, int top)
{
    ranked_tag_t *rank = calloc((size_t)t->n_tags, sizeof(*rank));
    if (!rank) return;
    int n = rank_chunk(t, c, rank);
    for (int i = 0; i < n && i < top; i++)
        printf("%s %s %.3f", i ? "," : "", clmr_model_tag(m, rank[i].tag), (double)rank[i].score);
    free(rank);
}

static void print_result(const tag_opts_t *o, const clmr_model_t *m, const char *file,
                         const clmr_audio_t *a, const clmr_track_t *t)
{
    int nt = t->n_tags;
    clmr_audio_warning_t w[2];
    int nw = clmr_audio_warnings(a, w, 2);
    ranked_tag_t *rank = calloc(nt > 0 ? (size_t)nt : 1, sizeof(*rank));
    if (!rank) return;
    for (int i = 0; i < nt; i++)
        rank[i] = (ranked_tag_t){i, t->scores[i]};
    qsort(rank, (size_t)nt, sizeof(*rank), by_score_desc);
    if (o->json) {
        json_t *obj = json_object();
        json_object_set_new(obj, "file", json_string(file));
        /* "model" is the id, as over HTTP; the human name is "model_name". */
        json_object_set_new(obj, "model", json_string(clmr_model_id(m)));
        json_object_set_new(obj, "model_name", json_string(clmr_model_name(m)));
        json_object_set_new(obj, "precision", json_string(clmr_precision_name(o->precision)));
        json_object_set_new(obj, "duration_s", json_real(a->duration_s));
        json_object_set_new(obj, "chunks", json_integer(t->n_chunks));
        json_t *tags = json_array();
        int listed = o->top_given && o->top < nt ? o->top : nt;
        for (int i = 0, shown = 0; i < nt && shown < listed; i++) {
            int k = rank[i].tag;
            if (!o->all && !clmr_tag_policy_trusted(o->policy, k)) continue;
            double thr = clmr_tag_policy_threshold(o->policy, k);
            json_t *e =
                json_pack("{s:s, s:f, s:b}", "tag", clmr_model_tag(m, k), "score",
                          (double)rank[i].score, "trusted", clmr_tag_policy_trusted(o->policy, k));
            json_object_set_new(e, "threshold", thr >= 0 ? json_real(thr) : json_null());
            json_object_set_new(e, "decision",
                                thr >= 0 ? json_boolean(rank[i].score >= (float)thr) : json_null());
            json_array_append_new(tags, e);
            shown++;
        }
        json_object_set_new(obj, "tags", tags);
        json_object_set_new(obj, "tags_hidden",
                            json_integer(o->all ? 0 : clmr_tag_policy_n_untrusted(o->policy)));
        if (o->embedding) json_object_set_new(obj, "embedding", float_array(t->emb, t->embed_dim));
        if (o->per_chunk) {
            json_t *chunks = json_array();
            double chunk_s = (double)clmr_model_chunk_samples(m) / clmr_model_sample_rate(m);
            for (int c = 0; c < t->n_chunks; c++) {
                json_t *co = json_object();
                json_object_set_new(co, "start_s", json_real(c * chunk_s));
                json_object_set_new(co, "tags", chunk_tags_json(m, t, c, listed));
                if (nt > 0)
                    json_object_set_new(co, "scores",
                                        float_array(t->chunk_scores + (size_t)c * nt, nt));
                json_object_set_new(
                    co, "embedding",
                    float_array(t->chunk_emb + (size_t)c * t->embed_dim, t->embed_dim));
                json_array_append_new(chunks, co);
            }
            json_object_set_new(obj, "per_chunk", chunks);
        }
        json_t *warn = json_array();
        for (int i = 0; i < nw; i++)
            json_array_append_new(
                warn, json_pack("{s:s,s:s}", "code", w[i].code, "message", w[i].message));
        json_object_set_new(obj, "warnings", warn);
        print_json_line(obj);
        json_decref(obj);
    } else {
        printf("%s  (%.1f s, %d chunk%s, model %s)\n", file, a->duration_s, t->n_chunks,
               t->n_chunks == 1 ? "" : "s", clmr_model_name(m));
        if (nt == 0) printf("  encoder-only model: no tags (use --json --embedding)\n");
        for (int i = 0, shown = 0; i < nt && shown < o->top; i++) {
            int k = rank[i].tag;
            if (!o->all && !clmr_tag_policy_trusted(o->policy, k)) continue;
            double thr = clmr_tag_policy_threshold(o->policy, k);
            printf("  %-14s %.3f%s%s\n", clmr_model_tag(m, k), (double)rank[i].score,
                   thr < 0 ? "" : ((double)rank[i].score >= thr ? "  yes" : "  no"),
                   clmr_tag_policy_trusted(o->policy, k) ? "" : "  (untrusted)");
            shown++;
        }
        int hidden = o->all ? 0 : clmr_tag_policy_n_untrusted(o->policy);
        if (hidden)
            printf("  (%d tag%s not trusted on real audio hidden; --all shows them)\n", hidden,
                   hidden == 1 ? "" : "s");
        for (int i = 0; i < nw; i++)
            printf("  warning: %s\n", w[i].message);
        if (o->per_chunk && nt > 0) {
            double chunk_s = (double)clmr_model_chunk_samples(m) / clmr_model_sample_rate(m);
            int per = o->top_given ? o->top : 3;
            for (int c = 0; c < t->n_chunks; c++) {
                printf("  chunk %d (%.1f-%.1f s):", c, c * chunk_s, (c + 1) * chunk_s);
                print_chunk_top(m, t, c, per);
                printf("\n");
            }
        }
        if (o->embedding) {
            printf("  embedding:");
            for (int d = 0; d < t->embed_dim; d++)
                printf(" %.5f", (double)t->emb[d]);
            printf("\n");
        }
        fflush(stdout);
    }
    free(rank);
}

/* FILE, or standard input for "-" (read whole, within the same byte limit). */
static int decode_input(clmr_audio_t *audio, const char *file, const clmr_audio_params_t *ap,
                        char **msg)
{
    if (strcmp(file, "-") != 0) return clmr_audio_decode_file(audio, file, ap, msg);
    return clmr_audio_decode_file(audio, "/dev/stdin", ap, msg);
}

/* One file decoded ahead by the prefetch thread. */
typedef struct {
    const char *file;
    const clmr_audio_params_t *ap;
    clmr_audio_t audio;
    int err;
    char *msg;
    pthread_t th;
    int started;
} prefetch_t;

static void *prefetch_main(void *p)
{
    prefetch_t *f = p;
    f->err = decode_input(&f->audio, f->file, f->ap, &f->msg);
    if (f->err == CLMR_EAUDIO_TOO_LONG) { /* name the setting that would let it through */
        char *m2 = NULL;
        clmr_set_err(&m2, f->err,
                     "%s; raise the limit with --max-duration S or CLMRD_MAX_DURATION_S",
                     f->msg ? f->msg : clmr_strerror(f->err));
        free(f->msg);
        f->msg = m2;
    }
    return NULL;
}

/* Starts decoding file into *f on its own thread; falls back to decoding now if no thread can be
 * started. */
static void prefetch_start(prefetch_t *f, const char *file, const clmr_audio_params_t *ap)
{
    memset(f, 0, sizeof *f);
    f->file = file;
    f->ap = ap;
    f->started = pthread_create(&f->th, NULL, prefetch_main, f) == 0;
    if (!f->started) prefetch_main(f);
}

static void prefetch_wait(prefetch_t *f)
{
    if (f->started) pthread_join(f->th, NULL);
    f->started = 0;
}

int clmr_cli_tag(int argc, char **argv);
int clmr_cli_tag(int argc, char **argv)
{
    tag_opts_t o = {.threads = 0, .batch = 8, .top = 10, .precision = CLMR_PRECISION_AUTO};
    enum {
        OPT_MODEL = 256,
        OPT_JSON,
        OPT_PER_CHUNK,
        OPT_EMB,
        OPT_THREADS,
        OPT_BATCH,
        OPT_TOP,
        OPT_MAXDUR,
        OPT_ALL,
        OPT_PRECISION
    };
    static const struct option longopts[] = {
        {"model", required_argument, NULL, OPT_MODEL},
        {"json", no_argument, NULL, OPT_JSON},
        {"per-chunk", no_argument, NULL, OPT_PER_CHUNK},
        {"embedding", no_argument, NULL, OPT_EMB},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"batch", required_argument, NULL, OPT_BATCH},
        {"top", required_argument, NULL, OPT_TOP},
        {"max-duration", required_argument, NULL, OPT_MAXDUR},
        {"all", no_argument, NULL, OPT_ALL},
        {"precision", required_argument, NULL, OPT_PRECISION},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    const char *env_max = getenv("CLMRD_MAX_DURATION_S");
    if (env_max && *env_max &&
        clmr_cli_parse_double(&o.max_duration_s, env_max, 1, 86400, "tag", "CLMRD_MAX_DURATION_S"))
        return 2;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_MODEL:
            o.model_path = optarg;
            break;
        case OPT_JSON:
            o.json = 1;
            break;
        case OPT_PER_CHUNK:
            o.per_chunk = 1;
            break;
        case OPT_EMB:
            o.embedding = 1;
            break;
        case OPT_THREADS:
            if (clmr_cli_parse_int(&o.threads, optarg, 0, 256, "tag", "--threads")) return 2;
            break;
        case OPT_BATCH:
            if (clmr_cli_parse_int(&o.batch, optarg, 1, 256, "tag", "--batch")) return 2;
            break;
        case OPT_TOP:
            if (clmr_cli_parse_int(&o.top, optarg, 0, 100000, "tag", "--top")) return 2;
            o.top_given = 1;
            break;
        case OPT_MAXDUR:
            if (clmr_cli_parse_double(&o.max_duration_s, optarg, 1, 86400, "tag", "--max-duration"))
                return 2;
            break;
        case OPT_ALL:
            o.all = 1;
            break;
        case OPT_PRECISION:
            if (clmr_precision_parse(optarg, &o.precision)) {
                fprintf(stderr, "clmrd tag: --precision: '%s' is not one of auto|fp32|bf16\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return clmr_cli_bad_option("tag", argv, c);
        }
    }
    if (optind >= argc) {
        clmr_cli_usage_error("tag", "no input files");
        return 2;
    }

    char path[8192];
    if (clmr_cli_resolve_model(o.model_path, path, sizeof path)) {
        fprintf(stderr, "clmrd tag: %s\n", path);
        return 1;
    }
    clmr_model_t *model = NULL;
    clmr_infer_t *ctx = NULL;
    clmr_tag_policy_t *policy = NULL;
    char *msg = NULL;
    int status = 1, err;
    clmr_audio_params_t ap = clmr_audio_default_params();
    if (o.max_duration_s > 0) ap.max_duration_s = o.max_duration_s;
    prefetch_t slot[2];
    memset(slot, 0, sizeof slot);
    /* The first file decodes while the model loads and the context is built. */
    prefetch_start(&slot[0], argv[optind], &ap);
    if ((err = clmr_model_load(&model, path, &msg)) ||
        (err = clmr_tag_policy_from_model(&policy, model, &msg))) {
        fprintf(stderr, "clmrd tag: model %s: %s\n", path, msg ? msg : clmr_strerror(err));
        goto out;
    }
    o.policy = policy;
    clmr_infer_params_t ip = clmr_infer_default_params();
    ip.threads = o.threads;
    ip.max_batch = o.batch;
    ip.precision = o.precision;
    if ((err = clmr_infer_open(&ctx, model, &ip, &msg))) {
        fprintf(stderr, "clmrd tag: %s\n", msg ? msg : clmr_strerror(err));
        goto out;
    }
    o.precision = clmr_infer_precision(ctx); /* auto resolved, as --json reports it */
    status = 0;
    for (int i = optind; i < argc; i++) {
        prefetch_t *cur = &slot[(i - optind) % 2], *next = &slot[(i - optind + 1) % 2];
        prefetch_wait(cur);
        if (i + 1 < argc) prefetch_start(next, argv[i + 1], &ap); /* overlaps the analysis */
        const char *file = cur->file;
        clmr_track_t track = {0};
        if (cur->err) {
            report_error(&o, file, cur->err, cur->msg);
            status = 1;
        } else if ((err = clmr_track_analyze(&track, ctx, cur->audio.samples,
                                             cur->audio.n_samples))) {
            report_error(&o, file, err, NULL);
            status = 1;
        } else {
            print_result(&o, model, file, &cur->audio, &track);
        }
        free(cur->msg);
        cur->msg = NULL;
        clmr_track_free(&track);
        clmr_audio_free(&cur->audio);
    }
out:
    for (int k = 0; k < 2; k++) { /* after an early exit: the decode started first */
        prefetch_wait(&slot[k]);
        clmr_audio_free(&slot[k].audio);
        free(slot[k].msg);
    }
    free(msg);
    clmr_infer_close(&ctx);
    clmr_tag_policy_close(&policy);
    clmr_model_close(&model);
    return status;
}
