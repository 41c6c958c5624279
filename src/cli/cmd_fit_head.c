/* cmd_fit_head.c - `clmrd fit-head`: train a new tag head on a frozen encoder (linear evaluation).
 *
 * DESIGN: the CLMR linear-evaluation protocol (train/head_fit.h) over labelled files
 * (train/labels.h) embedded once and cached on disk (train/embed_set.h), so refitting with other
 * options or tags costs seconds. The tag list is, in order of precedence: --tags FILE (a new
 * vocabulary), the input model's tags, or the tags used in the labels file (encoder-only input).
 * The output keeps the input encoder bit for bit and records where its head came from in its
 * metadata (parent_id, parent_name, head_fit). Exit 0 on success, 1 on errors, 2 on usage errors.
 */
#include "cli/cli.h"
#include "cli/labelled.h"
#include "clmr/error.h"
#include "clmr/model.h"
#include "train/head_fit.h"

#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int clmr_cli_fit_head(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: clmrd fit-head --model MODEL --labels FILE --out MODEL [OPTIONS]\n\n"
        "Freezes MODEL's encoder, embeds every labelled audio file (per 59,049-sample chunk)\n"
        "and trains a new linear tag head with BCE-with-logits and Adam (CLMR linear\n"
        "evaluation), early-stopped on a validation split made by file. Writes OUT: the same\n"
        "encoder, the new head, its tag list and training provenance in the metadata.\n\n"
        "FILE: JSON lines {\"path\": \"audio file\", \"tags\": [\"guitar\", \"slow\"]}, paths\n"
        "relative to FILE's folder. Tags must be MODEL's unless --tags gives the vocabulary; an\n"
        "encoder-only MODEL without --tags uses the tags found in FILE.\n\n"
        "Options:\n"
        "  --tags FILE          vocabulary of the new head, one tag per line\n"
        "  --hidden N           fit CLMR's MLP head Linear(D, N) -> ReLU -> Linear(N, T)\n"
        "                       instead of a linear head (default 0 = linear; CLMR used 512)\n"
        "  --val-fraction F     files held out for early stopping (default 0.1; 0 = none)\n"
        "  --epochs N           maximum epochs (default 200)\n"
        "  --batch N            chunks per step (default 256)\n"
        "  --lr X               Adam learning rate (default 1e-3)\n"
        "  --patience N         stop after N epochs without a lower val loss (default 20)\n"
        "  --seed S             split, shuffling and initialisation seed (default 42)\n"
        "  --threads N          encoder threads (default: all cores)\n"
        "  --head-threads N     head-fit threads (default 1; 0 = all cores)\n"
        "  --cache DIR          embedding cache folder (default: clmrd-embcache next to OUT)\n"
        "  --no-cache           neither read nor write cached embeddings\n"
        "  --name NAME          model name (default: the input model's)\n"
        "  --json               print a JSON summary on stdout\n"
        "  -q, --quiet          no progress or summary on stderr\n"
        "  -h, --help           this help\n\n"
        "Exit status: 0 done (OUT written), 1 error, 2 usage.\n");
}

typedef struct {
    int tty, quiet, epochs;
} progress_t;

static void epoch_cb(void *ud, int epoch, double tl, double vl, int is_best)
{
    progress_t *p = ud;
    if (!p->tty) return;
    fprintf(stderr, "\repoch %3d/%d  train loss %.5f  val loss %.5f%s", epoch, p->epochs, tl, vl,
            is_best ? " *" : "  ");
}

/* Default cache folder: "clmrd-embcache" in the folder of out. */
static char *default_cache(const char *out)
{
    char *copy = strdup(out);
    if (!copy) return NULL;
    const char *d = dirname(copy);
    size_t n = strlen(d) + 32;
    char *r = malloc(n);
    if (r) snprintf(r, n, "%s/clmrd-embcache", d);
    free(copy);
    return r;
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

int clmr_cli_fit_head(int argc, char **argv)
{
    const char *model_path = NULL, *labels_path = NULL, *out_path = NULL, *tags_path = NULL;
    const char *cache_opt = NULL, *name = NULL;
    int threads = 0, no_cache = 0, json = 0, quiet = 0, hidden = 0;
    clmr_head_fit_params_t hp = clmr_head_fit_default_params();
    enum {
        O_TAGS = 256,
        O_VAL,
        O_EPOCHS,
        O_BATCH,
        O_LR,
        O_PAT,
        O_SEED,
        O_THREADS,
        O_HTHREADS,
        O_CACHE,
        O_NOCACHE,
        O_NAME,
        O_JSON,
        O_MODEL,
        O_LABELS,
        O_OUT,
        O_HIDDEN
    };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"labels", required_argument, 0, O_LABELS},
                                         {"out", required_argument, 0, O_OUT},
                                         {"tags", required_argument, 0, O_TAGS},
                                         {"val-fraction", required_argument, 0, O_VAL},
                                         {"epochs", required_argument, 0, O_EPOCHS},
                                         {"batch", required_argument, 0, O_BATCH},
                                         {"lr", required_argument, 0, O_LR},
                                         {"patience", required_argument, 0, O_PAT},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"head-threads", required_argument, 0, O_HTHREADS},
                                         {"cache", required_argument, 0, O_CACHE},
                                         {"no-cache", no_argument, 0, O_NOCACHE},
                                         {"name", required_argument, 0, O_NAME},
                                         {"json", no_argument, 0, O_JSON},
                                         {"hidden", required_argument, 0, O_HIDDEN},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c, seed = 42;
    while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_MODEL:
            model_path = optarg;
            break;
        case O_LABELS:
            labels_path = optarg;
            break;
        case O_OUT:
            out_path = optarg;
            break;
        case O_TAGS:
            tags_path = optarg;
            break;
        case O_HIDDEN:
            bad = clmr_cli_parse_int(&hidden, optarg, 0, 4096, "fit-head", "--hidden");
            break;
        case O_VAL:
            bad = clmr_cli_parse_double(&hp.val_fraction, optarg, 0, 0.9, "fit-head",
                                        "--val-fraction");
            break;
        case O_EPOCHS:
            bad = clmr_cli_parse_int(&hp.epochs, optarg, 1, 100000, "fit-head", "--epochs");
            break;
        case O_BATCH:
            bad = clmr_cli_parse_int(&hp.batch, optarg, 1, 1 << 20, "fit-head", "--batch");
            break;
        case O_LR:
            bad = clmr_cli_parse_double(&hp.lr, optarg, 1e-9, 10, "fit-head", "--lr");
            break;
        case O_PAT:
            bad = clmr_cli_parse_int(&hp.patience, optarg, 1, 100000, "fit-head", "--patience");
            break;
        case O_SEED:
            bad = clmr_cli_parse_int(&seed, optarg, 0, 2147483647, "fit-head", "--seed");
            break;
        case O_THREADS:
            bad = clmr_cli_parse_int(&threads, optarg, 0, 1024, "fit-head", "--threads");
            break;
        case O_HTHREADS:
            bad = clmr_cli_parse_int(&hp.threads, optarg, 0, 1024, "fit-head", "--head-threads");
            break;
        case O_CACHE:
            cache_opt = optarg;
            break;
        case O_NOCACHE:
            no_cache = 1;
            break;
        case O_NAME:
            name = optarg;
            break;
        case O_JSON:
            json = 1;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return clmr_cli_bad_option("fit-head", argv, c);
        }
        if (bad) return 2;
    }
    hp.seed = (uint64_t)seed;
    if (optind < argc || !model_path || !labels_path || !out_path) {
        fprintf(stderr, "clmrd fit-head: %s\n",
                optind < argc ? "unexpected argument" : "--model, --labels and --out are required");
        usage(stderr);
        return 2;
    }
    if (name && !*name) {
        fprintf(stderr, "clmrd fit-head: --name must not be empty\n");
        return 2;
    }

    int st = 1, rc;
    char *err = NULL, *cache_dir = NULL, **vocab = NULL, *prov_s = NULL;
    int n_vocab = 0;
    clmr_model_t *m = NULL, *out = NULL, *saved = NULL;
    clmr_labels_t labels = {0};
    clmr_embed_set_t set = {0};
    float *fc = NULL;
    json_t *prov = NULL;
    if ((rc = clmr_model_load(&m, model_path, &err))) {
        fprintf(stderr, "clmrd fit-head: %s (%s)\n", err ? err : clmr_strerror(rc),
                clmr_err_name(rc));
        goto out;
    }
    if (tags_path) {
        if ((rc = clmr_labels_read_vocab(&vocab, &n_vocab, tags_path, &err))) {
            fprintf(stderr, "clmrd fit-head: --tags: %s\n", err ? err : clmr_strerror(rc));
            goto out;
        }
    } else if (clmr_model_n_tags(m) > 0) {
        n_vocab = clmr_model_n_tags(m);
        vocab = calloc((size_t)n_vocab, sizeof(char *));
        if (!vocab) goto nomem;
        for (int i = 0; i < n_vocab; i++)
            if (!(vocab[i] = strdup(clmr_model_tag(m, i)))) goto nomem;
    }
    if ((rc = clmr_labels_load(&labels, labels_path, (const char *const *)vocab, n_vocab, &err))) {
        fprintf(stderr, "clmrd fit-head: %s%s\n", err ? err : clmr_strerror(rc),
                err && strstr(err, "unknown tag") && !tags_path
                    ? "; give the vocabulary of a new head with --tags FILE"
                    : "");
        goto out;
    }
    if (!no_cache && !(cache_dir = cache_opt ? strdup(cache_opt) : default_cache(out_path)))
        goto nomem;
    if (clmr_cli_embed_labelled(&set, m, &labels, cache_dir, threads, quiet, "fit-head")) goto out;

    const int T = labels.n_vocab, D = set.embed_dim;
    int *pos = calloc((size_t)T, sizeof(int));
    if (!pos) goto nomem;
    for (int i = 0; i < labels.n_items; i++)
        for (int t = 0; t < T; t++)
            pos[t] += labels.y[(size_t)i * T + t];
    int n_empty = 0;
    for (int t = 0; t < T; t++)
        n_empty += pos[t] == 0;
    if (n_empty && !quiet) {
        fprintf(stderr, "fit-head: warning: %d of %d tags have no positive file:", n_empty, T);
        for (int t = 0; t < T; t++)
            if (!pos[t]) fprintf(stderr, " \"%s\"", labels.vocab[t]);
        fprintf(stderr, "\n");
    }
    free(pos);

    /* linear: W (T, D) | b (T); MLP: W1 (H, D) | b1 (H) | W2 (T, H) | b2 (T) */
    const size_t n1 = (size_t)hidden * D + (size_t)hidden;
    const int fc_in = hidden > 0 ? hidden : D;
    fc = malloc((n1 + (size_t)T * fc_in + T) * sizeof(float));
    if (!fc) goto nomem;
    float *w2 = fc + n1, *b2 = w2 + (size_t)T * fc_in;
    clmr_head_fit_result_t res;
    progress_t pr = {.tty = !quiet && isatty(STDERR_FILENO), .quiet = quiet, .epochs = hp.epochs};
    if (hidden > 0)
        rc = clmr_head_fit_mlp(fc, fc + (size_t)hidden * D, w2, b2, &res,
                               (const float *const *)set.emb, set.n_chunks, set.n_files, D,
                               labels.y, T, hidden, &hp, epoch_cb, &pr, &err);
    else
        rc = clmr_head_fit(w2, b2, &res, (const float *const *)set.emb, set.n_chunks, set.n_files,
                           D, labels.y, T, &hp, epoch_cb, &pr, &err);
    if (pr.tty) fputc('\n', stderr);
    if (rc) {
        fprintf(stderr, "clmrd fit-head: %s\n", err ? err : clmr_strerror(rc));
        goto out;
    }
    if (hidden > 0)
        rc = clmr_head_model_build_mlp(&out, m, (const char *const *)labels.vocab, T, hidden, fc,
                                       fc + (size_t)hidden * D, w2, b2);
    else
        rc = clmr_head_model_build(&out, m, (const char *const *)labels.vocab, T, w2, b2);
    if (rc) goto fail_rc;
    if (name && (rc = clmr_model_set_name(out, name))) goto fail_rc;
    const char *base = strrchr(labels_path, '/');
    prov = json_pack("{s:s, s:s, s:i, s:i, s:i, s:I, s:I, s:i, s:i, s:o, s:o, s:s, s:f, s:i, "
                     "s:i, s:f, s:I, s:i}",
                     "labels_file", base ? base + 1 : labels_path, "labels_sha256", labels.sha256,
                     "files", labels.n_items, "train_files", res.train_files, "val_files",
                     res.val_files, "train_chunks", (json_int_t)res.train_chunks, "val_chunks",
                     (json_int_t)res.val_chunks, "epochs_run", res.epochs_run, "best_epoch",
                     res.best_epoch, "val_loss", jnum(res.best_val_loss), "train_loss",
                     jnum(res.train_loss), "loss", "bce_with_logits", "lr", hp.lr, "batch",
                     hp.batch, "patience", hp.patience, "val_fraction", hp.val_fraction, "seed",
                     (json_int_t)seed, "hidden", hidden);
    if (!prov || !(prov_s = json_dumps(prov, JSON_COMPACT | JSON_SORT_KEYS))) goto nomem;
    if ((rc = clmr_model_set_meta(out, "parent_id", clmr_model_id(m))) ||
        (rc = clmr_model_set_meta(out, "parent_name", clmr_model_name(m))) ||
        (rc = clmr_model_set_meta(out, "head_fit", prov_s)))
        goto fail_rc;
    if ((rc = clmr_model_save(out, out_path, &err))) goto fail_rc;
    /* reload: proves the file is valid and gives its id */
    if ((rc = clmr_model_load(&saved, out_path, &err))) goto fail_rc;
    if (!quiet)
        fprintf(stderr,
                "fit-head: wrote %s (id %s, %d tags): best epoch %d of %d, val loss %.5f, train "
                "loss %.5f\n",
                out_path, clmr_model_id(saved), T, res.best_epoch, res.epochs_run,
                res.best_val_loss, res.train_loss);
    if (json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:i, s:o, s:o, s:O}", "out",
                              out_path, "model_id", clmr_model_id(saved), "parent_id",
                              clmr_model_id(m), "n_tags", T, "encoder_runs", set.encoder_runs,
                              "cache_hits", set.cache_hits, "epochs_run", res.epochs_run,
                              "best_epoch", res.best_epoch, "val_loss", jnum(res.best_val_loss),
                              "train_loss", jnum(res.train_loss), "head_fit", prov);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!s) goto nomem;
        puts(s);
        free(s);
    }
    st = 0;
    goto out;
nomem:
    rc = CLMR_ENOMEM;
fail_rc:
    fprintf(stderr, "clmrd fit-head: %s (%s)\n", err ? err : clmr_strerror(rc), clmr_err_name(rc));
out:
    json_decref(prov);
    free(prov_s);
    free(fc);
    free(err);
    free(cache_dir);
    clmr_embed_set_free(&set);
    clmr_labels_free(&labels);
    clmr_labels_free_vocab(vocab, n_vocab);
    clmr_model_close(&saved);
    clmr_model_close(&out);
    clmr_model_close(&m);
    return st;
}
