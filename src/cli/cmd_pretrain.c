/* cmd_pretrain.c - `clmrd pretrain`: self-supervised CLMR/SimCLR training of the SampleCNN encoder.
 *
 * DESIGN: the loop is loader (train/loader.h: background threads making two augmented views per
 * track) -> clmr_pretrain_step (oneDNN encoder + projector + NT-Xent + Adam, train/pretrain.h).
 * Step k always consumes loader batch k, so the checkpoint (weights, projector, BN running
 * statistics, Adam moments, step, seed, config) is everything a resumed run needs to continue the
 * same trajectory. --steps is the TOTAL number of steps, counting the ones a resumed checkpoint has
 * done. SIGINT/SIGTERM set a flag checked between steps: the current step finishes, then the
 * checkpoint and the model are written and the command exits with status 130 (a second signal
 * kills at once). A non-finite loss stops the run WITHOUT overwriting the last good checkpoint.
 * Exit status: 0 done, 1 error, 2 usage error, 130 interrupted (checkpoint and model written).
 */
#include "cli/cli.h"
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmrd_build_config.h"
#include "train/loader.h"
#include "train/pretrain.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int clmr_cli_pretrain(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: clmrd pretrain --data DIR|MANIFEST --out MODEL [OPTIONS]\n\n"
        "Self-supervised CLMR (SimCLR) training of the SampleCNN encoder: two augmented\n"
        "59,049-sample views per track, encoder + projector (512-512-64), NT-Xent (tau 0.5),\n"
        "Adam. Writes MODEL (safetensors: the encoder, plus the --init model's head when it has\n"
        "one) and a checkpoint that --resume continues exactly.\n\n"
        "DIR: audio files found recursively. MANIFEST: JSON lines {\"path\": ...} (paths relative\n"
        "to the manifest's folder) or one path per line.\n\n"
        "Options:\n"
        "  --init MODEL            start from this model's encoder (default: random init)\n"
        "  --steps N               total steps, counting resumed ones (default 1000); 0 writes\n"
        "                          the initialised model (the random-init baseline)\n"
        "  --batch B               pairs (tracks) per step; 2B chunks (default 48)\n"
        "  --lr X                  Adam learning rate (default 3e-4)\n"
        "  --weight-decay X        Adam (L2) weight decay (default 0)\n"
        "  --seed S                init and data seed (default 0)\n"
        "  --widths official|W,..  encoder channels per layer (default official)\n"
        "  --checkpoint FILE       checkpoint path (default MODEL.ckpt)\n"
        "  --checkpoint-every K    checkpoint every K steps (default 50; 0 = only at the end)\n"
        "  --resume CKPT           continue from a checkpoint (its widths, batch, seed; --lr and\n"
        "                          --weight-decay override when given)\n"
        "  --threads N             compute threads (default: all cores)\n"
        "  --loader-threads N      augmentation threads (default 1)\n"
        "  --precision P           auto|fp32|bf16: bf16 = mixed precision (bf16 convolutions,\n"
        "                          fp32 weights, BN statistics and Adam); auto (default) = bf16\n"
        "                          where the CPU has native bf16 (AVX512_BF16/AMX), else fp32\n"
        "  --log FILE              append JSON lines (one per step and per checkpoint)\n"
        "  --name NAME             model name (default clmr-pretrain)\n"
        "  -q, --quiet             no progress output\n"
        "  -h, --help              this help\n"
        "Exit status: 0 done, 1 error, 2 usage, 130 interrupted (checkpoint and model written).\n");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
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

/* Reads a manifest: JSON lines with "path" (relative to its folder) or plain path lines. */
static int read_manifest(char ***out, size_t *n_out, const char *path, char **errmsg)
{
    FILE *f = fopen(path, "r");
    if (!f) return clmr_set_err(errmsg, CLMR_EIO, "cannot open '%s': %s", path, strerror(errno));
    char *dcopy = strdup(path);
    const char *dir = dcopy ? dirname(dcopy) : ".";
    char *line = NULL, **v = NULL;
    size_t cap = 0, n = 0, vcap = 0;
    ssize_t len;
    int rc = 0, lineno = 0;
    while ((len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (len == 0) continue;
        const char *p = line;
        json_t *j = NULL;
        if (line[0] == '{') {
            j = json_loads(line, 0, NULL);
            p = j ? json_string_value(json_object_get(j, "path")) : NULL;
            if (!p || !*p) {
                json_decref(j);
                rc = clmr_set_err(errmsg, CLMR_EINVAL,
                                  "%s:%d: expected a JSON object with "
                                  "a \"path\" string",
                                  path, lineno);
                goto done;
            }
        }
        size_t need = strlen(dir) + strlen(p) + 2;
        char *full = malloc(need);
        if (full) snprintf(full, need, "%s/%s", dir, p);
        if (full && p[0] == '/') snprintf(full, need, "%s", p);
        json_decref(j);
        if (n == vcap) {
            vcap = vcap ? 2 * vcap : 256;
            char **nv = realloc(v, vcap * sizeof(*v));
            if (!nv) {
                free(full);
                rc = CLMR_ENOMEM;
                goto done;
            }
            v = nv;
        }
        if (!full) {
            rc = CLMR_ENOMEM;
            goto done;
        }
        v[n++] = full;
    }
    if (n == 0) rc = clmr_set_err(errmsg, CLMR_EINVAL, "'%s' lists no file", path);
done:
    fclose(f);
    free(line);
    free(dcopy);
    if (rc) {
        for (size_t i = 0; i < n; i++)
            free(v[i]);
        free(v);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

static void on_skip(void *ud, const char *path, const char *reason)
{
    if (!*(int *)ud) fprintf(stderr, "pretrain: skipping %s: %s\n", path, reason);
}

/* Fingerprint of the data pool (FNV-1a 64 over the usable tracks' paths in loader order), kept in
 * the checkpoint so a resume can say when its pool differs (the data trajectory then differs). */
static void pool_fingerprint(char out[17], const clmr_loader_t *ld)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < clmr_loader_n_tracks(ld); i++) {
        for (const unsigned char *c = (const unsigned char *)clmr_loader_track_path(ld, i); *c; c++)
            h = (h ^ *c) * 0x100000001b3ULL;
        h = (h ^ 0xff) * 0x100000001b3ULL;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

static long peak_rss_mb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

int clmr_cli_pretrain(int argc, char **argv)
{
    const char *data = NULL, *out_path = NULL, *init_path = NULL, *resume = NULL;
    const char *ckpt_opt = NULL, *log_path = NULL, *name = "clmr-pretrain", *widths = NULL;
    int steps = 1000, every = 50, threads = 0, lthreads = 1, quiet = 0, seed = 0, batch = 48;
    double lr = -1, wd = -1;
    int have_batch = 0, have_seed = 0;
    clmr_train_precision_t precision = CLMR_TRAIN_PREC_AUTO;
    enum {
        O_DATA = 256,
        O_OUT,
        O_INIT,
        O_STEPS,
        O_BATCH,
        O_LR,
        O_WD,
        O_SEED,
        O_EVERY,
        O_CKPT,
        O_RESUME,
        O_THREADS,
        O_LTHREADS,
        O_WIDTHS,
        O_LOG,
        O_NAME,
        O_PRECISION
    };
    static const struct option opts[] = {{"data", required_argument, 0, O_DATA},
                                         {"out", required_argument, 0, O_OUT},
                                         {"init", required_argument, 0, O_INIT},
                                         {"steps", required_argument, 0, O_STEPS},
                                         {"batch", required_argument, 0, O_BATCH},
                                         {"lr", required_argument, 0, O_LR},
                                         {"weight-decay", required_argument, 0, O_WD},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"checkpoint-every", required_argument, 0, O_EVERY},
                                         {"checkpoint", required_argument, 0, O_CKPT},
                                         {"resume", required_argument, 0, O_RESUME},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"loader-threads", required_argument, 0, O_LTHREADS},
                                         {"widths", required_argument, 0, O_WIDTHS},
                                         {"log", required_argument, 0, O_LOG},
                                         {"name", required_argument, 0, O_NAME},
                                         {"precision", required_argument, 0, O_PRECISION},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    const char *cmd = "pretrain";
    while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case O_DATA:
            data = optarg;
            break;
        case O_OUT:
            out_path = optarg;
            break;
        case O_INIT:
            init_path = optarg;
            break;
        case O_PRECISION:
            if (clmr_train_precision_parse(optarg, &precision)) {
                fprintf(stderr, "clmrd pretrain: --precision '%s': expected auto, fp32 or bf16\n",
                        optarg);
                return 2;
            }
            break;
        case O_STEPS:
            bad = clmr_cli_parse_int(&steps, optarg, 0, 1000000000, cmd, "--steps");
            break;
        case O_BATCH:
            bad = clmr_cli_parse_int(&batch, optarg, 1, 4096, cmd, "--batch");
            have_batch = 1;
            break;
        case O_LR:
            bad = clmr_cli_parse_double(&lr, optarg, 1e-12, 10, cmd, "--lr");
            break;
        case O_WD:
            bad = clmr_cli_parse_double(&wd, optarg, 0, 10, cmd, "--weight-decay");
            break;
        case O_SEED:
            bad = clmr_cli_parse_int(&seed, optarg, 0, 2147483647, cmd, "--seed");
            have_seed = 1;
            break;
        case O_EVERY:
            bad = clmr_cli_parse_int(&every, optarg, 0, 1000000000, cmd, "--checkpoint-every");
            break;
        case O_CKPT:
            ckpt_opt = optarg;
            break;
        case O_RESUME:
            resume = optarg;
            break;
        case O_THREADS:
            bad = clmr_cli_parse_int(&threads, optarg, 0, 1024, cmd, "--threads");
            break;
        case O_LTHREADS:
            bad = clmr_cli_parse_int(&lthreads, optarg, 1, 64, cmd, "--loader-threads");
            break;
        case O_WIDTHS:
            widths = optarg;
            break;
        case O_LOG:
            log_path = optarg;
            break;
        case O_NAME:
            name = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return clmr_cli_bad_option("pretrain", argv, c);
        }
        if (bad) return 2;
    }
    if (optind < argc || !data || !out_path) {
        fprintf(stderr, "clmrd pretrain: %s\n",
                optind < argc ? "unexpected argument" : "--data and --out are required");
        usage(stderr);
        return 2;
    }
    if (!*name) {
        fprintf(stderr, "clmrd pretrain: --name must not be empty\n");
        return 2;
    }
    if (resume && (have_batch || have_seed || widths)) {
        fprintf(stderr, "clmrd pretrain: --batch, --seed and --widths come from the checkpoint "
                        "with --resume; leave them out\n");
        return 2;
    }

    const char *prec_note = NULL;
    char *prec_err = NULL;
    if (clmr_train_precision_resolve(precision, &precision, &prec_note, &prec_err)) {
        fprintf(stderr, "clmrd pretrain: --precision: %s\n", prec_err);
        free(prec_err);
        return 2;
    }
    if (prec_note) fprintf(stderr, "pretrain: %s\n", prec_note);

    int st = 1, rc = 0;
    char *err = NULL, *info = NULL, *ckpt_path = NULL, **paths = NULL;
    size_t n_paths = 0;
    clmr_pretrain_t *pt = NULL;
    clmr_model_t *init = NULL, *model = NULL, *saved = NULL;
    clmr_loader_t *ld = NULL;
    FILE *logf = NULL;
    double prior_wall = 0, last_loss = NAN;
    json_t *prior_extra = NULL;
    char init_id[17] = "";
    const char *init_rec = init_path; /* init path recorded in the checkpoint */

    if (threads > 0) omp_set_num_threads(threads);
    if (ckpt_opt)
        ckpt_path = strdup(ckpt_opt);
    else if ((ckpt_path = malloc(strlen(out_path) + 6)))
        sprintf(ckpt_path, "%s.ckpt", out_path);
    if (!ckpt_path) goto nomem;

    if (resume) {
        if ((rc = clmr_pretrain_open_checkpoint(&pt, resume, &info, &err))) goto fail_rc;
        json_t *h = json_loads(info, 0, NULL);
        json_t *ex = h ? json_object_get(h, "extra") : NULL;
        if (ex) {
            prior_extra = json_incref(ex);
            prior_wall = json_number_value(json_object_get(ex, "wall_s"));
            last_loss = json_number_value(json_object_get(ex, "loss"));
            if (!init_rec) init_rec = json_string_value(json_object_get(ex, "init"));
        }
        json_decref(h);
        clmr_pretrain_params_t *pp = (clmr_pretrain_params_t *)clmr_pretrain_params(pt);
        if (lr > 0) pp->adam.lr = lr;
        if (wd >= 0) pp->adam.weight_decay = wd;
        if ((rc = clmr_pretrain_set_precision(pt, precision, &err))) goto fail_rc;
        if (init_rec && (rc = clmr_model_load(&init, init_rec, &err))) {
            fprintf(stderr,
                    "clmrd pretrain: warning: cannot load the init model for its head "
                    "(%s); the output will be encoder-only\n",
                    err ? err : "?");
            free(err);
            err = NULL;
            init_rec = NULL;
            rc = 0;
        }
    } else {
        clmr_pretrain_params_t p = clmr_pretrain_default_params();
        if (widths && (rc = clmr_pretrain_parse_widths(&p, widths, &err))) {
            fprintf(stderr, "clmrd pretrain: --widths: %s\n", err);
            st = 2;
            goto out;
        }
        p.batch_pairs = batch;
        p.seed = (uint64_t)seed;
        p.precision = precision;
        if (lr > 0) p.adam.lr = lr;
        if (wd >= 0) p.adam.weight_decay = wd;
        if (init_path && (rc = clmr_model_load(&init, init_path, &err))) goto fail_rc;
        if ((rc = clmr_pretrain_open(&pt, &p, init, &err))) goto fail_rc;
    }
    if (init) snprintf(init_id, sizeof(init_id), "%s", clmr_model_id(init));
    const clmr_pretrain_params_t *pp = clmr_pretrain_params(pt);
    if (resume && clmr_pretrain_steps_done(pt) >= steps) {
        fprintf(stderr, "clmrd pretrain: the checkpoint has already done %ld steps (--steps %d)\n",
                clmr_pretrain_steps_done(pt), steps);
        st = 2;
        goto out;
    }

    /* data */
    clmr_loader_params_t lp = clmr_loader_default_params();
    lp.batch_pairs = (size_t)pp->batch_pairs;
    lp.n_workers = lthreads;
    lp.ring = lthreads + 2;
    lp.seed = pp->seed;
    lp.start_batch = (uint64_t)clmr_pretrain_steps_done(pt);
    lp.augment.chunk = (size_t)clmr_pretrain_chunk_samples(pt);
    lp.on_skip = on_skip;
    lp.on_skip_ud = &quiet;
    struct stat sb;
    if (stat(data, &sb) != 0) {
        fprintf(stderr, "clmrd pretrain: --data '%s': %s\n", data, strerror(errno));
        goto out;
    }
    if (S_ISDIR(sb.st_mode))
        rc = clmr_loader_open_dir(&ld, data, &lp, &err);
    else if (!(rc = read_manifest(&paths, &n_paths, data, &err)))
        rc = clmr_loader_open(&ld, (const char *const *)paths, n_paths, &lp, &err);
    if (rc) goto fail_rc;
    if (log_path && !(logf = fopen(log_path, "a"))) {
        fprintf(stderr, "clmrd pretrain: --log '%s': %s\n", log_path, strerror(errno));
        goto out;
    }

    char pool_fp[17];
    pool_fingerprint(pool_fp, ld);
    const json_int_t pool_n = (json_int_t)clmr_loader_n_tracks(ld);
    if (prior_extra && json_object_get(prior_extra, "pool")) {
        const char *old = json_string_value(json_object_get(prior_extra, "pool"));
        json_int_t old_n = json_integer_value(json_object_get(prior_extra, "tracks"));
        if (!old || strcmp(old, pool_fp) != 0)
            fprintf(stderr,
                    "pretrain: warning: the data pool differs from the checkpoint's (%lld tracks "
                    "now, %lld then): training continues, but not on the trajectory of an "
                    "uninterrupted run\n",
                    (long long)pool_n, (long long)old_n);
    }

    clmr_cli_catch_stop_signals();

    const int tty = !quiet && isatty(STDERR_FILENO);
    const int views = 2 * pp->batch_pairs;
    const long first = clmr_pretrain_steps_done(pt);
    if (!quiet)
        fprintf(stderr,
                "pretrain: %zu tracks, %d pairs (%d chunks) per step, steps %ld -> %d, lr %g, "
                "seed %llu, precision %s, checkpoint %s\n",
                clmr_loader_n_tracks(ld), pp->batch_pairs, views, first, steps, pp->adam.lr,
                (unsigned long long)pp->seed,
                clmr_train_precision_name(clmr_pretrain_precision(pt)), ckpt_path);
    if (logf) {
        fprintf(logf,
                "{\"event\":\"start\",\"step\":%ld,\"steps\":%d,\"batch_pairs\":%d,\"lr\":%.9g,"
                "\"weight_decay\":%.9g,\"seed\":%llu,\"tracks\":%zu,\"resume\":%s,"
                "\"precision\":\"%s\"}\n",
                first, steps, pp->batch_pairs, pp->adam.lr, pp->adam.weight_decay,
                (unsigned long long)pp->seed, clmr_loader_n_tracks(ld), resume ? "true" : "false",
                clmr_train_precision_name(clmr_pretrain_precision(pt)));
        fflush(logf);
    }
    const double t_start = now_s();
    double t_timed = 0; /* time of the steps after the first of this run (warm-up excluded) */
    long n_timed = 0;
    int interrupted = 0, failed = 0;
    while (clmr_pretrain_steps_done(pt) < steps) {
        if (clmr_cli_stop_requested()) {
            interrupted = 1;
            break;
        }
        double t0 = now_s();
        clmr_batch_t b;
        if ((rc = clmr_loader_next(ld, &b, &err))) {
            failed = 1;
            break;
        }
        double t1 = now_s();
        float loss;
        double gn = 0;
        if ((rc = clmr_pretrain_step(pt, b.x, &loss, &gn))) {
            failed = 1;
            break;
        }
        double t2 = now_s();
        long k = clmr_pretrain_steps_done(pt);
        if (!isfinite(loss)) {
            fprintf(stderr,
                    "%sclmrd pretrain: non-finite loss at step %ld; stopping without "
                    "overwriting the last checkpoint\n",
                    tty ? "\n" : "", k);
            if (logf) fprintf(logf, "{\"event\":\"nonfinite\",\"step\":%ld}\n", k);
            goto out;
        }
        last_loss = loss;
        if (k > first + 1) t_timed += t2 - t0, n_timed++;
        double cps = n_timed ? (double)views * n_timed / t_timed : (double)views / (t2 - t0);
        double eta = (double)(steps - k) * (n_timed ? t_timed / n_timed : t2 - t0);
        char eta_s[32];
        fmt_hms(eta_s, sizeof eta_s, eta);
        if (!quiet) {
            if (tty)
                fprintf(stderr, "\rstep %ld/%d  loss %.4f  %.1f chunks/s  ETA %s   ", k, steps,
                        loss, cps, eta_s);
            else
                fprintf(stderr, "step %ld/%d loss %.5f chunks/s %.2f eta %s\n", k, steps, loss, cps,
                        eta_s);
        }
        if (logf) {
            fprintf(logf,
                    "{\"step\":%ld,\"loss\":%.7g,\"grad_norm\":%.6g,\"step_s\":%.4f,"
                    "\"wait_s\":%.4f,\"chunks_per_s\":%.3f,\"wall_s\":%.3f}\n",
                    k, loss, gn, t2 - t0, t1 - t0, (double)views / (t2 - t0),
                    prior_wall + (t2 - t_start));
            fflush(logf);
        }
        if (every > 0 && k % every == 0 && k < steps) {
            json_t *ex = json_pack("{s:f, s:f, s:s, s:s?, s:s, s:I}", "wall_s",
                                   prior_wall + now_s() - t_start, "loss", (double)loss, "data",
                                   data, "init", init_rec, "pool", pool_fp, "tracks", pool_n);
            char *exs = ex ? json_dumps(ex, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
            json_decref(ex);
            if (!exs) goto nomem;
            rc = clmr_pretrain_save_checkpoint(pt, ckpt_path, exs, &err);
            free(exs);
            if (rc) goto fail_rc;
            if (logf) {
                fprintf(logf, "{\"event\":\"checkpoint\",\"step\":%ld,\"path\":\"%s\"}\n", k,
                        ckpt_path);
                fflush(logf);
            }
        }
    }
    if (tty) fputc('\n', stderr);
    if (failed) goto fail_rc;
    if (interrupted && !quiet) fprintf(stderr, "pretrain: interrupted, writing the checkpoint\n");

    /* final checkpoint and model */
    const double wall = prior_wall + (now_s() - t_start);
    const long done = clmr_pretrain_steps_done(pt);
    json_t *ex = json_pack("{s:f, s:o, s:s, s:s?, s:s, s:I}", "wall_s", wall, "loss",
                           isfinite(last_loss) ? json_real(last_loss) : json_null(), "data", data,
                           "init", init_rec, "pool", pool_fp, "tracks", pool_n);
    char *exs = ex ? json_dumps(ex, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(ex);
    if (!exs) goto nomem;
    rc = clmr_pretrain_save_checkpoint(pt, ckpt_path, exs, &err);
    free(exs);
    if (rc) goto fail_rc;
    if ((rc = clmr_pretrain_export(pt, init, &model, &err))) goto fail_rc;
    char buf[64];
    clmr_loader_stats_t ls;
    clmr_loader_stats(ld, &ls);
    if ((rc = clmr_model_set_name(model, name))) goto fail_rc;
    json_t *prov = json_pack(
        "{s:I, s:i, s:i, s:f, s:f, s:I, s:s, s:I, s:f, s:o, s:s, s:s, s:s, s:f, s:f}", "steps",
        (json_int_t)done, "batch_pairs", pp->batch_pairs, "chunks_per_step", views, "lr",
        pp->adam.lr, "weight_decay", pp->adam.weight_decay, "seed", (json_int_t)pp->seed, "data",
        data, "tracks", (json_int_t)clmr_loader_n_tracks(ld), "wall_s", wall, "final_loss",
        isfinite(last_loss) ? json_real(last_loss) : json_null(), "init", init_id, "objective",
        "SimCLR NT-Xent tau 0.5, projector 512-512-64, Adam", "trainer",
        "clmrd " CLMRD_VERSION " pretrain (oneDNN)", "loader_wait_s_last_run", ls.wait_s, "tau",
        (double)pp->tau);
    char *prov_s =
        prov ? json_dumps(prov, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(10)) : NULL;
    json_decref(prov);
    if (!prov_s) goto nomem;
    rc = clmr_model_set_meta(model, "pretrain", prov_s);
    free(prov_s);
    if (rc) goto fail_rc;
    snprintf(buf, sizeof buf, "%ld", done);
    if ((rc = clmr_model_set_meta(model, "pretrain_steps", buf))) goto fail_rc;
    if (init_id[0] && (rc = clmr_model_set_meta(model, "parent_id", init_id))) goto fail_rc;
    if ((rc = clmr_model_save(model, out_path, &err))) goto fail_rc;
    if ((rc = clmr_model_load(&saved, out_path, &err))) goto fail_rc;
    if (logf)
        fprintf(logf,
                "{\"event\":\"%s\",\"step\":%ld,\"wall_s\":%.3f,\"loss\":%.7g,\"checkpoint\":"
                "\"%s\",\"out\":\"%s\",\"model_id\":\"%s\",\"peak_rss_mb\":%ld,"
                "\"loader_wait_s\":%.3f}\n",
                interrupted ? "interrupted" : "done", done, wall, (double)last_loss, ckpt_path,
                out_path, clmr_model_id(saved), peak_rss_mb(), ls.wait_s);
    if (!quiet)
        fprintf(stderr,
                "pretrain: %s at step %ld (loss %.5f, %.0f s total, peak RSS %ld MB, data wait "
                "%.1f s); wrote %s (id %s) and %s\n",
                interrupted ? "stopped" : "done", done, (double)last_loss, wall, peak_rss_mb(),
                ls.wait_s, out_path, clmr_model_id(saved), ckpt_path);
    st = interrupted ? 130 : 0;
    goto out;
nomem:
    rc = CLMR_ENOMEM;
fail_rc:
    if (!rc) rc = CLMR_EINVAL;
    fprintf(stderr, "clmrd pretrain: %s (%s)\n", err ? err : clmr_strerror(rc), clmr_err_name(rc));
out:
    if (logf) fclose(logf);
    clmr_loader_close(&ld);
    clmr_pretrain_close(&pt);
    clmr_model_close(&init);
    clmr_model_close(&model);
    clmr_model_close(&saved);
    json_decref(prior_extra);
    for (size_t i = 0; i < n_paths; i++)
        free(paths[i]);
    free(paths);
    free(info);
    free(err);
    free(ckpt_path);
    return st;
}
