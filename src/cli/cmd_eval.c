/* cmd_eval.c - `clmrd eval`: macro ROC-AUC and PR-AUC of a model's tags on a labelled file list.
 *
 * DESIGN: the CLMR evaluation protocol: every file is cut into chunks (clmr_track_analyze), each
 * chunk's tag probabilities are the sigmoid of the head, the track's are their mean, and the
 * metrics (train/metrics.h, scikit-learn's definitions) are computed per tag over tracks and
 * macro-averaged over tags that have both positive and negative tracks; the others are listed as
 * excluded. Track scores are computed from the chunk embeddings (train/embed_set.h) so --cache
 * works across heads: a model refit by fit-head reuses the embeddings of its parent's encoder.
 * Exit 0 on success, 1 on errors, 2 on usage errors.
 */
#include "cli/cli.h"
#include "cli/labelled.h"
#include "clmr/error.h"
#include "clmr/model.h"
#include "train/metrics.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int clmr_cli_eval(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: clmrd eval --model MODEL --labels FILE [OPTIONS]\n\n"
            "Tags every labelled audio file (mean of chunk probabilities over the track) and\n"
            "prints macro ROC-AUC and PR-AUC (average precision) over MODEL's tags, with per-tag\n"
            "figures. Tags without both positive and negative tracks are left out of the macro\n"
            "averages and listed as excluded.\n\n"
            "FILE: JSON lines {\"path\": \"audio file\", \"tags\": [\"guitar\", \"slow\"]}, paths\n"
            "relative to FILE's folder; every tag must be one of MODEL's.\n\n"
            "Options:\n"
            "  --json          one JSON object: roc_auc, pr_auc, tracks, per_tag {tag: {roc_auc,\n"
            "                  pr_auc, positives}}, excluded_tags, encoder_runs, cache_hits\n"
            "  --threads N     encoder threads (default: all cores)\n"
            "  --cache DIR     read and write cached chunk embeddings in DIR\n"
            "  -q, --quiet     no progress or summary on stderr\n"
            "  -h, --help      this help\n\n"
            "Exit status: 0 done, 1 error (bad labels, unreadable audio, bad model), 2 usage.\n");
}

static json_t *jnum(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static int print_json(const clmr_model_t *m, const clmr_labels_t *l, const clmr_metrics_t *mt,
                      const clmr_embed_set_t *set)
{
    json_t *o = json_object(), *per = json_object(), *excl = json_array();
    for (int t = 0; t < mt->n_tags; t++) {
        json_object_set_new(per, l->vocab[t],
                            json_pack("{s:o, s:o, s:i}", "roc_auc", jnum(mt->tag_roc[t]), "pr_auc",
                                      jnum(mt->tag_ap[t]), "positives", mt->positives[t]));
        if (!mt->included[t]) json_array_append_new(excl, json_string(l->vocab[t]));
    }
    json_object_set_new(o, "model", json_string(clmr_model_name(m)));
    json_object_set_new(o, "model_id", json_string(clmr_model_id(m)));
    json_object_set_new(o, "roc_auc", jnum(mt->roc_auc));
    json_object_set_new(o, "pr_auc", jnum(mt->pr_auc));
    json_object_set_new(o, "tracks", json_integer(l->n_items));
    json_object_set_new(o, "tags_evaluated", json_integer(mt->n_included));
    json_object_set_new(o, "per_tag", per);
    json_object_set_new(o, "excluded_tags", excl);
    json_object_set_new(o, "encoder_runs", json_integer(set->encoder_runs));
    json_object_set_new(o, "cache_hits", json_integer(set->cache_hits));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!s) return CLMR_ENOMEM;
    puts(s);
    free(s);
    return 0;
}

static void print_text(const clmr_labels_t *l, const clmr_metrics_t *mt)
{
    printf("tracks:   %d\n", l->n_items);
    printf("ROC-AUC:  %.4f   PR-AUC: %.4f   (macro over %d of %d tags)\n", mt->roc_auc, mt->pr_auc,
           mt->n_included, mt->n_tags);
    printf("\n%-24s %9s %8s %8s\n", "tag", "positives", "ROC-AUC", "PR-AUC");
    for (int t = 0; t < mt->n_tags; t++) {
        if (!mt->included[t]) continue;
        printf("%-24s %9d %8.4f %8.4f\n", l->vocab[t], mt->positives[t], mt->tag_roc[t],
               mt->tag_ap[t]);
    }
    if (mt->n_included < mt->n_tags) {
        printf("\nexcluded (no positive or no negative track):");
        for (int t = 0; t < mt->n_tags; t++)
            if (!mt->included[t]) printf(" %s (%d)", l->vocab[t], mt->positives[t]);
        printf("\n");
    }
}

int clmr_cli_eval(int argc, char **argv)
{
    const char *model_path = NULL, *labels_path = NULL, *cache_dir = NULL;
    int threads = 0, json = 0, quiet = 0;
    enum { O_MODEL = 256, O_LABELS, O_JSON, O_THREADS, O_CACHE };
    static const struct option opts[] = {{"model", required_argument, 0, O_MODEL},
                                         {"labels", required_argument, 0, O_LABELS},
                                         {"json", no_argument, 0, O_JSON},
                                         {"threads", required_argument, 0, O_THREADS},
                                         {"cache", required_argument, 0, O_CACHE},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":qh", opts, NULL)) != -1) {
        switch (c) {
        case O_MODEL:
            model_path = optarg;
            break;
        case O_LABELS:
            labels_path = optarg;
            break;
        case O_JSON:
            json = 1;
            break;
        case O_THREADS:
            if (clmr_cli_parse_int(&threads, optarg, 0, 1024, "eval", "--threads")) return 2;
            break;
        case O_CACHE:
            cache_dir = optarg;
            break;
        case 'q':
            quiet = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return clmr_cli_bad_option("eval", argv, c);
        }
    }
    if (optind < argc || !model_path || !labels_path) {
        fprintf(stderr, "clmrd eval: %s\n",
                optind < argc ? "unexpected argument" : "--model and --labels are required");
        usage(stderr);
        return 2;
    }
    int st = 1, rc;
    char *err = NULL;
    clmr_model_t *m = NULL;
    clmr_labels_t labels = {0};
    clmr_embed_set_t set = {0};
    clmr_metrics_t mt = {0};
    double *scores = NULL;
    if ((rc = clmr_model_load(&m, model_path, &err))) goto fail_rc;
    const int T = clmr_model_n_tags(m);
    if (T == 0) {
        rc = clmr_set_err(&err, CLMR_EMODEL_NO_HEAD,
                          "%s has no tag head (encoder only): fit one with clmrd fit-head",
                          model_path);
        goto fail_rc;
    }
    const char **vocab = malloc((size_t)T * sizeof(char *));
    if (!vocab) goto nomem;
    for (int t = 0; t < T; t++)
        vocab[t] = clmr_model_tag(m, t);
    rc = clmr_labels_load(&labels, labels_path, vocab, T, &err);
    free(vocab);
    if (rc && err && strstr(err, "unknown tag")) {
        /* eval has no --tags: it scores the model's own tags only (clmrd inspect lists them). */
        fprintf(stderr,
                "clmrd eval: %s; eval scores the model's own tags only (see clmrd inspect "
                "MODEL): remove it from the labels or evaluate a model that has it\n",
                err);
        goto out;
    }
    if (rc) goto fail_rc;
    if (clmr_cli_embed_labelled(&set, m, &labels, cache_dir, threads, quiet, "eval")) goto out;
    scores = malloc((size_t)labels.n_items * T * sizeof(double));
    if (!scores) goto nomem;
    for (int i = 0; i < labels.n_items; i++)
        clmr_embed_track_scores(scores + (size_t)i * T, m, set.emb[i], set.n_chunks[i]);
    if ((rc = clmr_metrics_compute(&mt, scores, labels.y, (size_t)labels.n_items, T))) goto fail_rc;
    if (json) {
        if ((rc = print_json(m, &labels, &mt, &set))) goto fail_rc;
    } else {
        print_text(&labels, &mt);
    }
    st = 0;
    goto out;
nomem:
    rc = CLMR_ENOMEM;
fail_rc:
    fprintf(stderr, "clmrd eval: %s (%s)\n", err ? err : clmr_strerror(rc), clmr_err_name(rc));
out:
    free(err);
    free(scores);
    clmr_metrics_free(&mt);
    clmr_embed_set_free(&set);
    clmr_labels_free(&labels);
    clmr_model_close(&m);
    return st;
}
