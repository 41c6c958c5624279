/* cmd_import.c - `clmrd import`: official CLMR PyTorch checkpoints -> a clmrd model file.
 *
 * DESIGN: a thin front end to clmr_import_checkpoint (src/nn/clmr_import.c), which reads the
 * checkpoints with clmrd's own zip and restricted pickle readers, so no Python, no PyTorch and no
 * code from the file ever runs. The model is saved atomically, then loaded back with the same
 * loader the service uses, so a successful import is a file the service will accept. What was
 * found (container, layout, prefixes, head, projector, tags) is printed on stderr; --json prints
 * one summary object on stdout. Exit 0 on success, 1 on any failure (including a checkpoint that
 * references code), 2 on usage errors.
 */
#include "cli/cli.h"
#include "clmr/error.h"
#include "clmr/model.h"
#include "nn/clmr_import.h"
#include "train/labels.h"

#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int clmr_cli_import(int argc, char **argv);

static void usage(FILE *f)
{
    fprintf(
        f, "Usage: clmrd import --encoder CKPT [--head CKPT] --out MODEL.safetensors\n"
           "                    [--tags FILE] [--name NAME] [--json] [-q]\n\n"
           "Converts official CLMR checkpoints (PyTorch .pt/.ckpt files, zip or legacy\n"
           "serialization, or the release .zip files that wrap them) into a clmrd model, without\n"
           "Python and without running anything from the files. Accepted layouts: plain state\n"
           "dicts (sequential.* or 1.0-era conv1..conv11 names, with or without an encoder.\n"
           "prefix and a SimCLR projector), PyTorch Lightning .ckpt files (state_dict with\n"
           "encoder.* / model.encoder.*), linear heads (0.*, model.0.*, fc.*) and CLMR's MLP head\n"
           "(model.0 -> ReLU -> model.2). See docs/model-format.md.\n\n"
           "  --encoder CKPT   checkpoint holding the SampleCNN encoder (and maybe a head)\n"
           "  --head CKPT      checkpoint holding the tag head (default: the encoder file's)\n"
           "  --out MODEL      output .safetensors file (written atomically)\n"
           "  --tags FILE      head tag names, one per line or a JSON array (default: the 50\n"
           "                   MagnaTagATune tags in CLMR's order)\n"
           "  --name NAME      model name (default clmr-imported)\n"
           "  --json           print a JSON summary on stdout\n"
           "  -q, --quiet      no report on stderr\n"
           "  -h, --help       this help\n");
}

/* --tags: a JSON array of strings, else one tag per line (clmr_labels_read_vocab). */
static int read_tags(char ***tags, int *n, const char *path, char **err)
{
    json_error_t je;
    json_t *arr = json_load_file(path, JSON_DECODE_ANY, &je);
    if (!json_is_array(arr)) {
        json_decref(arr);
        return clmr_labels_read_vocab(tags, n, path, err);
    }
    size_t k = json_array_size(arr);
    int rc = 0;
    char **t = calloc(k ? k : 1, sizeof(char *));
    if (!t) rc = CLMR_ENOMEM;
    for (size_t i = 0; !rc && i < k; i++) {
        const char *s = json_string_value(json_array_get(arr, i));
        if (!s || !*s)
            rc = clmr_set_err(err, CLMR_EINVAL, "%s: entry %zu is not a non-empty string", path, i);
        else if (!(t[i] = strdup(s)))
            rc = CLMR_ENOMEM;
    }
    json_decref(arr);
    if (rc) {
        clmr_labels_free_vocab(t, (int)k);
        return rc;
    }
    *tags = t;
    *n = (int)k;
    return 0;
}

int clmr_cli_import(int argc, char **argv)
{
    const char *enc = NULL, *head = NULL, *out = NULL, *tags_path = NULL, *name = NULL;
    int json = 0, quiet = 0;
    enum { O_ENC = 1000, O_HEAD, O_OUT, O_TAGS, O_NAME, O_JSON };
    static const struct option opts[] = {{"encoder", required_argument, 0, O_ENC},
                                         {"head", required_argument, 0, O_HEAD},
                                         {"out", required_argument, 0, O_OUT},
                                         {"tags", required_argument, 0, O_TAGS},
                                         {"name", required_argument, 0, O_NAME},
                                         {"json", no_argument, 0, O_JSON},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "qh", opts, NULL)) != -1) {
        switch (c) {
        case O_ENC:
            enc = optarg;
            break;
        case O_HEAD:
            head = optarg;
            break;
        case O_OUT:
            out = optarg;
            break;
        case O_TAGS:
            tags_path = optarg;
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
            usage(stderr);
            return 2;
        }
    }
    if (!enc || !out || optind < argc) {
        fprintf(stderr, "clmrd import: %s\n",
                optind < argc ? "unexpected argument" : "--encoder and --out are required");
        usage(stderr);
        return 2;
    }
    char **tags = NULL, *err = NULL, *report = NULL;
    int n_tags = 0, status = 1;
    clmr_model_t *m = NULL, *back = NULL;
    if (tags_path) {
        int rc = read_tags(&tags, &n_tags, tags_path, &err);
        if (rc) {
            fprintf(stderr, "clmrd import: --tags: %s\n", err ? err : clmr_strerror(rc));
            goto done;
        }
    }
    clmr_import_params_t p = {enc, head, (const char *const *)tags, n_tags, name};
    int rc = clmr_import_checkpoint(&m, &p, &report, &err);
    if (rc) {
        fprintf(stderr, "clmrd import: %s: %s\n", clmr_err_name(rc), err ? err : clmr_strerror(rc));
        goto done;
    }
    if (!quiet && report) fputs(report, stderr);
    free(err);
    err = NULL;
    if ((rc = clmr_model_save(m, out, &err))) {
        fprintf(stderr, "clmrd import: %s\n", err ? err : clmr_strerror(rc));
        goto done;
    }
    /* load it back with the service's own loader: a file it refuses is not a success */
    if ((rc = clmr_model_load(&back, out, &err))) {
        fprintf(stderr, "clmrd import: the written model does not load: %s\n",
                err ? err : clmr_strerror(rc));
        goto done;
    }
    if (!quiet)
        fprintf(stderr, "import: wrote %s (name %s, id %s, %d layers, %d tags)\n", out,
                clmr_model_name(back), clmr_model_id(back), clmr_model_n_layers(back),
                clmr_model_n_tags(back));
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "out", json_string(out));
        json_object_set_new(o, "name", json_string(clmr_model_name(back)));
        json_object_set_new(o, "id", json_string(clmr_model_id(back)));
        json_object_set_new(o, "n_layers", json_integer(clmr_model_n_layers(back)));
        json_object_set_new(o, "embed_dim", json_integer(clmr_model_embed_dim(back)));
        json_object_set_new(o, "n_tags", json_integer(clmr_model_n_tags(back)));
        const char *ht = clmr_model_meta(back, "head_type");
        json_object_set_new(o, "head_type", json_string(ht ? ht : "none"));
        json_object_set_new(o, "report", json_string(report ? report : ""));
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (s) puts(s);
        free(s);
    }
    status = 0;
done:
    free(err);
    free(report);
    clmr_model_close(&m);
    clmr_model_close(&back);
    if (tags) clmr_labels_free_vocab(tags, n_tags);
    return status;
}
