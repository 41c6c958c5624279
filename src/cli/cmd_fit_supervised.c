/* cmd_fit_supervised.c - `clmrd fit-supervised`: train the whole SampleCNN (encoder + tag head)
 * on labelled audio, the CLMR paper's fully supervised baseline.
 *
 * DESIGN: labels file (train/labels.h) -> every file decoded once into chunks held in RAM
 * (clmr_supervised_data_load) -> epochs of oneDNN supervised steps with eval-mode validation and
 * early stopping (clmr_supervised_fit, train/supervised.h) -> a normal model file that `eval`,
 * `tag` and `serve` load. Options and the tag vocabulary follow fit-head: --tags FILE, else
 * --model's tags, else the tags found in the labels file. SIGINT/SIGTERM set a flag the progress
 * callback returns: the step in flight finishes, the partial epoch is validated, and the best
 * model so far is written (exit 130; a second signal kills at once). Exit status: 0 done, 1 error,
 * 2 usage error, 130 interrupted (model written).
 */
#include "cli/cli.h"
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmrd_build_config.h"
#include "train/labels.h"
#include "train/pretrain.h"
#include "train/supervised.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int clmr_cli_fit_supervised(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: clmrd fit-supervised --labels FILE --out MODEL [OPTIONS]\n\n"
           "Trains the whole SampleCNN encoder and a linear tag head together on labelled audio\n"
           "(the CLMR paper's fully supervised baseline). Every file is cut into 59,049-sample\n"
           "chunks (3^(layers-1) with --widths), each carrying its file's tags; BCE-with-logits,\n"
           "Adam, BatchNorm in training mode; after every epoch the held-out files are scored in\n"
           "eval mode; early stopping; the best epoch's weights are written to MODEL.\n\n"
           "FILE: JSON lines {\"path\": \"audio file\", \"tags\": [\"guitar\", \"slow\"]}, paths\n"
           "relative to FILE's folder. Tags: --tags FILE, else --model's, else those found in "
           "FILE.\n\n"
           "Options:\n"
           "  --model MODEL           start from this model's encoder (default: random init)\n"
           "  --tags FILE             vocabulary of the head, one tag per line\n"
           "  --widths official|W,..  encoder channels per layer (default official, or --model's)\n"
           "  --epochs N              maximum epochs (default 30)\n"
           "  --batch N               chunks per step, >= 2 (default 16)\n"
           "  --lr X                  Adam learning rate (default 3e-4)\n"
           "  --weight-decay X        Adam (L2) weight decay (default 0)\n"
           "  --patience N            stop after N epochs without a lower val loss (default 5)\n"
           "  --val-fraction F        files held out for validation (default 0.1; 0 = none,\n"
           "                          keep the last epoch)\n"
           "  --seed S                init, split and shuffling seed (default 42)\n"
           "  --threads N             compute threads (default: all cores)\n"
           "  --precision P           auto|fp32|bf16: bf16 = mixed precision (bf16 convolutions,\n"
           "                          fp32 weights, BN statistics and Adam); auto (default) =\n"
           "                          bf16 where the CPU has native bf16 (AVX512_BF16/AMX)\n"
           "  --name NAME             model name (default clmr-supervised)\n"
           "  --json                  print a JSON summary on stdout\n"
           "  -q, --quiet             no progress or summary on stderr\n"
           "  -h, --help              this help\n"
           "Exit status: 0 done, 1 error, 2 usage, 130 interrupted (best model so far written).\n");
}

static void fmt_hms(char *buf, size_t n, double s)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, n, "--:--:--");
        return;
    }
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%02ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
}

/* "-" for the NaN loss of a run without validation */
static void fmt_loss(char *buf, size_t n, double v)
{
    if (isfinite(v))
        snprintf(buf, n, "%.5f", v);
    else
        snprintf(buf, n, "-");
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

typedef struct {
    int tty, quiet;
    json_t *history; /* one object per epoch */
} progress_t;

static void load_cb(void *ud, int i, int n)
{
    (void)ud;
    fprintf(stderr, "\rdecoding %d/%d files", i + 1, n);
    if (i + 1 == n) fputc('\n', stderr);
}

static int progress_cb(void *ud, const clmr_supervised_progress_t *p)
{
    progress_t *pr = ud;
    if (!p->epoch_done) {
        if (pr->tty)
            fprintf(stderr, "\repoch %d/%d  step %d/%d  loss %.5f  %.1f chunks/s\033[K", p->epoch,
                    p->epochs, p->step, p->steps_per_epoch, p->loss, p->chunks_per_s);
        return clmr_cli_stop_requested();
    }
    int partial = p->step < p->steps_per_epoch;
    json_array_append_new(pr->history,
                          json_pack("{s:i, s:o, s:o, s:b, s:b}", "epoch", p->epoch, "train_loss",
                                    jnum(p->train_loss), "val_loss", jnum(p->val_loss), "best",
                                    p->is_best, "partial", partial));
    if (!pr->quiet) {
        char el[32], eta[32], vl[32];
        fmt_hms(el, sizeof el, p->elapsed_s);
        /* an upper bound: early stopping may end sooner */
        fmt_hms(eta, sizeof eta, p->elapsed_s / p->epoch * (p->epochs - p->epoch));
        fmt_loss(vl, sizeof vl, p->val_loss);
        fprintf(stderr,
                "%sepoch %d/%d%s  train loss %.5f  val loss %s%s  %.1f chunks/s  elapsed %s  "
                "eta <= %s\n",
                pr->tty ? "\r\033[K" : "", p->epoch, p->epochs, partial ? " (partial)" : "",
                p->train_loss, vl, p->is_best ? " *" : "", p->chunks_per_s, el, eta);
    }
    return clmr_cli_stop_requested();
}

int clmr_cli_fit_supervised(int argc, char **argv)
{
    const char *model_path = NULL, *labels_path = NULL, *out_path = NULL, *tags_path = NULL;
    const char *name = "clmr-supervised", *widths = NULL;
    int threads = 0, json = 0, quiet = 0, seed = 42;
    clmr_supervised_params_t sp = clmr_supervised_default_params();
    clmr_train_precision_t precision = CLMR_TRAIN_PREC_AUTO;
    const char *cmd = "fit-supervised";
    enum {
        O_MODEL = 256,
        O_LABELS,
        O_OUT,
        O_TAGS,
        O_WIDTHS,
        O_EPOCHS,
        O_BATCH,
        O_LR,
        O_WD,
        O_PAT,
        O_VAL,
        O_SEED,
        O_THREADS,
        O_NAME,
        O_JSON,
        O_PRECISION
    };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"labels", required_argument, 0, O_LABELS},
                                         {"out", required_argument, 0, O_OUT},
                                         {"tags", required_argument, 0, O_TAGS},
                                         {"widths", required_argument, 0, O_WIDTHS},
                                         {"epochs", required_argument, 0, O_EPOCHS},
                                         {"batch", required_argument, 0, O_BATCH},
                                         {"lr", required_argument, 0, O_LR},
                                         {"weight-decay", required_argument, 0, O_WD},
                                         {"patience", required_argument, 0, O_PAT},
                                         {"val-fraction", required_argument, 0, O_VAL},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"name", required_argument, 0, O_NAME},
                                         {"json", no_argument, 0, O_JSON},
                                         {"precision", required_argument, 0, O_PRECISION},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
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
        case O_WIDTHS:
            widths = optarg;
            break;
        case O_EPOCHS:
            bad = clmr_cli_parse_int(&sp.epochs, optarg, 1, 100000, cmd, "--epochs");
            break;
        case O_BATCH:
            bad = clmr_cli_parse_int(&sp.batch, optarg, 2, 4096, cmd, "--batch");
            break;
        case O_LR:
            bad = clmr_cli_parse_double(&sp.lr, optarg, 1e-12, 10, cmd, "--lr");
            break;
        case O_WD:
            bad = clmr_cli_parse_double(&sp.weight_decay, optarg, 0, 10, cmd, "--weight-decay");
            break;
        case O_PAT:
            bad = clmr_cli_parse_int(&sp.patience, optarg, 1, 100000, cmd, "--patience");
            break;
        case O_VAL:
            bad = clmr_cli_parse_double(&sp.val_fraction, optarg, 0, 0.9, cmd, "--val-fraction");
            break;
        case O_SEED:
            bad = clmr_cli_parse_int(&seed, optarg, 0, 2147483647, cmd, "--seed");
            break;
        case O_THREADS:
            bad = clmr_cli_parse_int(&threads, optarg, 0, 1024, cmd, "--threads");
            break;
        case O_NAME:
            name = optarg;
            break;
        case O_PRECISION:
            if (clmr_train_precision_parse(optarg, &precision)) {
                fprintf(stderr, "clmrd %s: --precision '%s': expected auto, fp32 or bf16\n", cmd,
                        optarg);
                return 2;
            }
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
            return clmr_cli_bad_option(cmd, argv, c);
        }
        if (bad) return 2;
    }
    if (optind < argc || !labels_path || !out_path) {
        fprintf(stderr, "clmrd %s: %s\n", cmd,
                optind < argc ? "unexpected argument" : "--labels and --out are required");
        usage(stderr);
        return 2;
    }
    if (!*name) {
        fprintf(stderr, "clmrd %s: --name must not be empty\n", cmd);
        return 2;
    }
    sp.seed = (uint64_t)seed;
    sp.threads = threads;
    const char *prec_note = NULL;
    char *prec_err = NULL;
    if (clmr_train_precision_resolve(precision, &sp.precision, &prec_note, &prec_err)) {
        fprintf(stderr, "clmrd %s: --precision: %s\n", cmd, prec_err);
        free(prec_err);
        return 2;
    }
    if (prec_note) fprintf(stderr, "%s: %s\n", cmd, prec_note);

    int st = 1, rc = 0;
    char *err = NULL, **vocab = NULL, *prov_s = NULL;
    int n_vocab = 0;
    clmr_model_t *m = NULL, *out = NULL, *saved = NULL;
    clmr_labels_t labels = {0};
    clmr_supervised_data_t data = {0};
    json_t *prov = NULL, *wl = NULL;
    progress_t pr = {
        .tty = !quiet && isatty(STDERR_FILENO), .quiet = quiet, .history = json_array()};
    if (!pr.history) goto nomem;
    if (widths) {
        clmr_pretrain_params_t pp = clmr_pretrain_default_params();
        if ((rc = clmr_pretrain_parse_widths(&pp, widths, &err))) {
            fprintf(stderr, "clmrd %s: --widths: %s\n", cmd, err);
            st = 2;
            goto out;
        }
        sp.n_layers = pp.n_layers;
        memcpy(sp.widths, pp.widths, sizeof(sp.widths));
    }
    if (threads > 0) omp_set_num_threads(threads);
    if (model_path && (rc = clmr_model_load(&m, model_path, &err))) goto fail_rc;
    clmr_train_config_t tcfg; /* widths first: a mismatch is a usage error whatever the labels */
    if ((rc = clmr_supervised_config(&tcfg, &sp, m, 1, &err))) {
        fprintf(stderr, "clmrd %s: %s\n", cmd, err);
        st = 2;
        goto out;
    }
    if (tags_path) {
        if ((rc = clmr_labels_read_vocab(&vocab, &n_vocab, tags_path, &err))) {
            fprintf(stderr, "clmrd %s: --tags: %s\n", cmd, err ? err : clmr_strerror(rc));
            goto out;
        }
    } else if (m && clmr_model_n_tags(m) > 0) {
        n_vocab = clmr_model_n_tags(m);
        vocab = calloc((size_t)n_vocab, sizeof(char *));
        if (!vocab) goto nomem;
        for (int i = 0; i < n_vocab; i++)
            if (!(vocab[i] = strdup(clmr_model_tag(m, i)))) goto nomem;
    }
    if ((rc = clmr_labels_load(&labels, labels_path, (const char *const *)vocab, n_vocab, &err))) {
        fprintf(stderr, "clmrd %s: %s%s\n", cmd, err ? err : clmr_strerror(rc),
                err && strstr(err, "unknown tag") && !tags_path
                    ? "; give the vocabulary of the head with --tags FILE"
                    : "");
        goto out;
    }
    const int T = labels.n_vocab;
    if ((rc = clmr_supervised_config(&tcfg, &sp, m, T, &err))) goto fail_rc;
    int *pos = calloc((size_t)T, sizeof(int));
    if (!pos) goto nomem;
    for (int i = 0; i < labels.n_items; i++)
        for (int t = 0; t < T; t++)
            pos[t] += labels.y[(size_t)i * T + t];
    int n_empty = 0;
    for (int t = 0; t < T; t++)
        n_empty += pos[t] == 0;
    if (n_empty && !quiet) {
        fprintf(stderr, "%s: warning: %d of %d tags have no positive file:", cmd, n_empty, T);
        for (int t = 0; t < T; t++)
            if (!pos[t]) fprintf(stderr, " \"%s\"", labels.vocab[t]);
        fprintf(stderr, "\n");
    }
    free(pos);

    const int L = tcfg.enc.chunk_samples;
    if ((rc = clmr_supervised_data_load(&data, &labels, L, sp.val_fraction, sp.seed,
                                        pr.tty ? load_cb : NULL, NULL, &err))) {
        if (pr.tty) fputc('\n', stderr);
        goto fail_rc;
    }
    const size_t nt = data.n_chunks - data.n_val_chunks;
    if (!quiet)
        fprintf(stderr,
                "%s: decoded %d files into %zu chunks of %d samples (%.0f MiB): %zu training "
                "chunks from %d files, %zu validation chunks from %d files\n",
                cmd, data.n_files, data.n_chunks, L,
                (double)data.n_chunks * L * sizeof(float) / 1048576.0, nt,
                data.n_files - data.n_val_files, data.n_val_chunks, data.n_val_files);
    if (nt < (size_t)sp.batch) {
        if (nt < 2)
            fprintf(stderr,
                    "clmrd %s: %zu training chunks (from %d files): a step needs 2; add "
                    "labelled files or lower --val-fraction\n",
                    cmd, nt, data.n_files - data.n_val_files);
        else
            fprintf(stderr,
                    "clmrd %s: %zu training chunks (from %d files) do not fill one batch of %d: "
                    "lower --batch to %zu or less\n",
                    cmd, nt, data.n_files - data.n_val_files, sp.batch, nt);
        st = 2;
        goto out;
    }
    if (!quiet)
        fprintf(stderr,
                "%s: %s init, %d layers, %d tags, batch %d, %zu steps per epoch, lr %g, up to %d "
                "epochs (patience %d), seed %d\n",
                cmd, m ? "--model" : "random", tcfg.enc.n_layers, T, sp.batch,
                nt / (size_t)sp.batch, sp.lr, sp.epochs, sp.patience, seed);

    clmr_cli_catch_stop_signals();

    clmr_supervised_result_t res;
    rc = clmr_supervised_fit(&out, &res, &data, &labels, m, &sp, progress_cb, &pr, &err);
    if (rc) {
        if (pr.tty) fputc('\n', stderr);
        goto fail_rc;
    }
    if (res.stopped && !quiet)
        fprintf(stderr, "%s: interrupted: writing the best model so far (epoch %d of %d run)\n",
                cmd, res.best_epoch, res.epochs_run);
    if ((rc = clmr_model_set_name(out, name))) goto fail_rc;
    if (!(wl = json_array())) goto nomem;
    for (int i = 0; i < tcfg.enc.n_layers; i++)
        json_array_append_new(wl, json_integer(tcfg.enc.layer[i].out_ch));
    const char *base = strrchr(labels_path, '/');
    prov = json_pack(
        "{s:s, s:s, s:i, s:i, s:i, s:I, s:I, s:i, s:O, s:i, s:i, s:i, s:I, s:o, s:o, s:s, s:s, "
        "s:f, s:f, s:i, s:i, s:f, s:I, s:s, s:b, s:f, s:s, s:s}",
        "labels_file", base ? base + 1 : labels_path, "labels_sha256", labels.sha256, "files",
        labels.n_items, "train_files", res.train_files, "val_files", res.val_files, "train_chunks",
        (json_int_t)res.train_chunks, "val_chunks", (json_int_t)res.val_chunks, "chunk_samples", L,
        "widths", wl, "epochs", sp.epochs, "epochs_run", res.epochs_run, "best_epoch",
        res.best_epoch, "steps", (json_int_t)res.steps, "val_loss", jnum(res.best_val_loss),
        "train_loss", jnum(res.train_loss), "loss", "bce_with_logits", "optimizer", "adam", "lr",
        sp.lr, "weight_decay", sp.weight_decay, "batch", sp.batch, "patience", sp.patience,
        "val_fraction", sp.val_fraction, "seed", (json_int_t)seed, "init",
        m ? clmr_model_id(m) : "random", "interrupted", res.stopped, "wall_s", res.wall_s,
        "trainer", "clmrd " CLMRD_VERSION " fit-supervised (oneDNN)", "precision",
        clmr_train_precision_name(sp.precision));
    if (!prov ||
        !(prov_s = json_dumps(prov, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10))))
        goto nomem;
    if ((rc = clmr_model_set_meta(out, "supervised", prov_s))) goto fail_rc;
    if (m && ((rc = clmr_model_set_meta(out, "parent_id", clmr_model_id(m))) ||
              (rc = clmr_model_set_meta(out, "parent_name", clmr_model_name(m)))))
        goto fail_rc;
    if ((rc = clmr_model_save(out, out_path, &err))) goto fail_rc;
    /* reload: proves the file is valid and gives its id */
    if ((rc = clmr_model_load(&saved, out_path, &err))) goto fail_rc;
    if (!quiet) {
        char vl[32];
        fmt_loss(vl, sizeof vl, res.best_val_loss);
        fprintf(stderr,
                "%s: wrote %s (id %s, %d tags): best epoch %d of %d, val loss %s, train loss "
                "%.5f, %ld steps in %.0f s\n",
                cmd, out_path, clmr_model_id(saved), T, res.best_epoch, res.epochs_run, vl,
                res.train_loss, res.steps, res.wall_s);
    }
    if (json) {
        json_t *o =
            json_pack("{s:s, s:s, s:i, s:i, s:i, s:I, s:o, s:o, s:b, s:O, s:O}", "out", out_path,
                      "model_id", clmr_model_id(saved), "n_tags", T, "epochs_run", res.epochs_run,
                      "best_epoch", res.best_epoch, "steps", (json_int_t)res.steps, "val_loss",
                      jnum(res.best_val_loss), "train_loss", jnum(res.train_loss), "interrupted",
                      res.stopped, "history", pr.history, "supervised", prov);
        char *s = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
        json_decref(o);
        if (!s) goto nomem;
        puts(s);
        free(s);
    }
    st = res.stopped ? 130 : 0;
    goto out;
nomem:
    rc = CLMR_ENOMEM;
fail_rc:
    if (!rc) rc = CLMR_EINVAL;
    fprintf(stderr, "clmrd %s: %s (%s)\n", cmd, err ? err : clmr_strerror(rc), clmr_err_name(rc));
out:
    json_decref(prov);
    json_decref(wl);
    json_decref(pr.history);
    free(prov_s);
    free(err);
    clmr_supervised_data_free(&data);
    clmr_labels_free(&labels);
    clmr_labels_free_vocab(vocab, n_vocab);
    clmr_model_close(&saved);
    clmr_model_close(&out);
    clmr_model_close(&m);
    return st;
}
