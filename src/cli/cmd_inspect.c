/* cmd_inspect.c - `clmrd inspect MODEL [--json]`: load a model file and describe it.
 *
 * DESIGN: a thin front end to clmr_model_load, so it doubles as the validator users (and the
 * converter tests) run on a freshly converted file: a model that inspects cleanly is one the
 * service will load. Exit 0 on success, 1 with the loader's message on a bad model, 2 on usage
 * errors. --json prints one object (machine-readable, stable keys) instead of the text summary.
 */
#include "cli/cli.h"
#include "clmr/error.h"
#include "clmr/model.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int clmr_cli_inspect(int argc, char **argv);

static void inspect_usage(FILE *f)
{
    fprintf(f, "Usage: clmrd inspect MODEL.safetensors [--json]\n\n"
               "Loads and validates a model file and prints its name, id, layer widths, parameter\n"
               "count, tags and metadata. Exits 1 with the reason when the file is not a valid\n"
               "clmrd model.\n\n"
               "  --json   print one JSON object instead of text\n\n"
               "Exit status: 0 valid model, 1 invalid or unreadable file, 2 usage.\n");
}

/* Floats in BatchNorm running statistics (2 per channel): buffers, not trainable parameters.
 * Reported apart so param_count matches PyTorch's sum(p.numel() for p in model.parameters())
 * (2,394,162 for the official model). */
static size_t bn_stat_count(const clmr_model_t *m)
{
    size_t n = 0;
    for (int i = 0; i < clmr_model_n_layers(m); i++)
        n += 2 * (size_t)clmr_model_width(m, i);
    return n;
}

static int print_json(const clmr_model_t *m, const char *path)
{
    json_t *o = json_object(), *widths = json_array(), *tags = json_array(), *meta = json_object();
    int n = clmr_model_n_layers(m);
    for (int i = 0; i < n; i++)
        json_array_append_new(widths, json_integer(clmr_model_width(m, i)));
    for (int i = 0; i < clmr_model_n_tags(m); i++)
        json_array_append_new(tags, json_string(clmr_model_tag(m, i)));
    for (int i = 0; i < clmr_model_n_meta(m); i++) {
        const char *val, *key = clmr_model_meta_at(m, i, &val);
        json_object_set_new(meta, key, json_string(val));
    }
    json_object_set_new(o, "file", json_string(path));
    json_object_set_new(o, "name", json_string(clmr_model_name(m)));
    json_object_set_new(o, "id", json_string(clmr_model_id(m)));
    json_object_set_new(o, "sample_rate", json_integer(clmr_model_sample_rate(m)));
    json_object_set_new(o, "chunk_samples", json_integer(clmr_model_chunk_samples(m)));
    json_object_set_new(o, "n_layers", json_integer(n));
    json_object_set_new(o, "widths", widths);
    json_object_set_new(o, "embed_dim", json_integer(clmr_model_embed_dim(m)));
    json_object_set_new(o, "param_count",
                        json_integer((json_int_t)(clmr_model_param_count(m) - bn_stat_count(m))));
    json_object_set_new(o, "bn_stat_count", json_integer((json_int_t)bn_stat_count(m)));
    json_object_set_new(o, "n_tags", json_integer(clmr_model_n_tags(m)));
    if (clmr_model_n_tags(m) > 0 && clmr_model_head_hidden(m) > 0)
        json_object_set_new(
            o, "head", json_pack("{s:s, s:i}", "type", "mlp", "hidden", clmr_model_head_hidden(m)));
    else if (clmr_model_n_tags(m) > 0)
        json_object_set_new(o, "head", json_pack("{s:s}", "type", "linear"));
    else
        json_object_set_new(o, "head", json_null());
    json_object_set_new(o, "tags", tags);
    json_object_set_new(o, "metadata", meta);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!s) {
        fprintf(stderr, "clmrd inspect: out of memory\n");
        return 1;
    }
    puts(s);
    free(s);
    return 0;
}

static void print_text(const clmr_model_t *m, const char *path)
{
    int n = clmr_model_n_layers(m), sr = clmr_model_sample_rate(m);
    printf("file:        %s\n", path);
    printf("name:        %s\n", clmr_model_name(m));
    printf("id:          %s\n", clmr_model_id(m));
    printf("input:       %d samples at %d Hz (%.3f s per chunk)\n", clmr_model_chunk_samples(m), sr,
           (double)clmr_model_chunk_samples(m) / sr);
    printf("layers:      %d, widths 1", n);
    for (int i = 0; i < n; i++)
        printf(" -> %d", clmr_model_width(m, i));
    printf("\n");
    printf("embedding:   %d\n", clmr_model_embed_dim(m));
    printf("parameters:  %zu (+ %zu BatchNorm running statistics)\n",
           clmr_model_param_count(m) - bn_stat_count(m), bn_stat_count(m));
    if (clmr_model_n_tags(m) > 0 && clmr_model_head_hidden(m) > 0)
        printf("head:        MLP %d -> %d -> ReLU -> %d (fc.0, fc.2)\n", clmr_model_embed_dim(m),
               clmr_model_head_hidden(m), clmr_model_n_tags(m));
    else if (clmr_model_n_tags(m) > 0)
        printf("head:        linear %d -> %d (fc)\n", clmr_model_embed_dim(m),
               clmr_model_n_tags(m));
    if (clmr_model_n_tags(m) == 0) {
        printf("tags:        none (encoder only: embeddings, no tag scores)\n");
    } else {
        printf("tags (%d):  ", clmr_model_n_tags(m));
        for (int i = 0; i < clmr_model_n_tags(m); i++)
            printf("%s%s", i ? ", " : " ", clmr_model_tag(m, i));
        printf("\n");
    }
    printf("metadata:\n");
    for (int i = 0; i < clmr_model_n_meta(m); i++) {
        const char *val, *key = clmr_model_meta_at(m, i, &val);
        if (strcmp(key, "tags") == 0) continue; /* listed above */
        printf("  %s: %s\n", key, val);
    }
}

int clmr_cli_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            inspect_usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            clmr_cli_usage_error("inspect", "%s: unknown option", argv[i]);
            return 2;
        } else if (path) {
            clmr_cli_usage_error("inspect", "one MODEL at a time");
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        inspect_usage(stderr);
        return 2;
    }
    clmr_model_t *m = NULL;
    char *err = NULL;
    int rc = clmr_model_load(&m, path, &err);
    if (rc) {
        fprintf(stderr, "clmrd inspect: %s (%s)\n", err ? err : clmr_strerror(rc),
                clmr_err_name(rc));
        free(err);
        return 1;
    }
    int st = 0;
    if (json)
        st = print_json(m, path);
    else
        print_text(m, path);
    clmr_model_close(&m);
    return st;
}
