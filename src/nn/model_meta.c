/* model_meta.c - model introspection and editing: metadata, name, tags, shape accessors.
 *
 * DESIGN: the metadata list mirrors the file's __metadata__ (string key -> string value, file
 * order). The derived keys (format, sample_rate, chunk_samples, name, tags) are kept consistent
 * with the model fields: set_name and set_tags rewrite their entries, and set_meta refuses them, so
 * clmr_model_meta(m, "name") never disagrees with clmr_model_name(m) and a save/load round trip
 * reproduces what the model says about itself.
 */
#include "nn/model_internal.h"

#include "clmr/error.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *const reserved_keys[] = {"format", "sample_rate", "chunk_samples", "name",
                                            "tags"};

int clmr__model_meta_put(clmr_model_t *m, const char *key, const char *val)
{
    int i = 0;
    while (i < m->n_meta && strcmp(m->meta_key[i], key) != 0)
        i++;
    if (!val) {
        if (i == m->n_meta) return 0;
        free(m->meta_key[i]);
        free(m->meta_val[i]);
        memmove(&m->meta_key[i], &m->meta_key[i + 1], sizeof(char *) * (size_t)(m->n_meta - i - 1));
        memmove(&m->meta_val[i], &m->meta_val[i + 1], sizeof(char *) * (size_t)(m->n_meta - i - 1));
        m->n_meta--;
        return 0;
    }
    char *v = strdup(val);
    if (!v) return CLMR_ENOMEM;
    if (i < m->n_meta) {
        free(m->meta_val[i]);
        m->meta_val[i] = v;
        return 0;
    }
    if (m->n_meta == CLMR_MODEL_MAX_META) {
        free(v);
        return CLMR_EINVAL;
    }
    char *k = strdup(key);
    if (!k) {
        free(v);
        return CLMR_ENOMEM;
    }
    m->meta_key[m->n_meta] = k;
    m->meta_val[m->n_meta] = v;
    m->n_meta++;
    return 0;
}

int clmr_model_set_meta(clmr_model_t *m, const char *key, const char *val)
{
    if (!key || !*key) return CLMR_EINVAL;
    int derived_missing = 0; /* entries clmr_model_save will add: keep the file loadable */
    for (size_t i = 0; i < sizeof(reserved_keys) / sizeof(reserved_keys[0]); i++) {
        if (strcmp(key, reserved_keys[i]) == 0) return CLMR_EINVAL;
        int needed = strcmp(reserved_keys[i], "tags") != 0 || m->cfg.n_tags > 0;
        derived_missing += needed && !clmr_model_meta(m, reserved_keys[i]);
    }
    if (val && !clmr_model_meta(m, key) && m->n_meta + derived_missing >= CLMR_MODEL_MAX_META)
        return CLMR_EINVAL;
    return clmr__model_meta_put(m, key, val);
}

int clmr_model_set_name(clmr_model_t *m, const char *name)
{
    if (!name || !*name) return CLMR_EINVAL;
    char *copy = strdup(name);
    if (!copy) return CLMR_ENOMEM;
    int rc = clmr__model_meta_put(m, "name", name);
    if (rc) {
        free(copy);
        return rc;
    }
    free(m->name);
    m->name = copy;
    return 0;
}

int clmr_model_set_tags(clmr_model_t *m, const char *const *tags, int n)
{
    if (n != m->cfg.n_tags || n <= 0) return CLMR_EINVAL;
    for (int i = 0; i < n; i++) {
        if (!tags[i] || !*tags[i]) return CLMR_EINVAL;
        for (int j = 0; j < i; j++)
            if (strcmp(tags[i], tags[j]) == 0) return CLMR_EINVAL;
    }
    int rc = CLMR_ENOMEM;
    char **copy = calloc((size_t)n, sizeof(char *));
    json_t *arr = json_array();
    char *dump = NULL;
    if (!copy || !arr) goto out;
    for (int i = 0; i < n; i++) {
        if (!(copy[i] = strdup(tags[i]))) goto out;
        if (json_array_append_new(arr, json_string(tags[i]))) goto out;
    }
    /* non-ASCII tag names stay readable UTF-8 in the file */
    if (!(dump = json_dumps(arr, JSON_COMPACT))) goto out;
    if ((rc = clmr__model_meta_put(m, "tags", dump))) goto out;
    char **old = m->tags;
    m->tags = copy;
    copy = old; /* freed below */
out:
    if (copy)
        for (int i = 0; i < n; i++)
            free(copy[i]);
    free(copy);
    free(dump);
    json_decref(arr);
    return rc;
}

int clmr_model_n_layers(const clmr_model_t *m)
{
    return m->cfg.n_layers;
}

int clmr_model_width(const clmr_model_t *m, int i)
{
    if (i < 0 || i >= m->cfg.n_layers) return 0;
    return m->cfg.layer[i].out_ch;
}

size_t clmr_model_param_count(const clmr_model_t *m)
{
    return clmr_samplecnn_param_count(&m->cfg);
}

int clmr_model_n_meta(const clmr_model_t *m)
{
    return m->n_meta;
}

const char *clmr_model_meta_at(const clmr_model_t *m, int i, const char **val)
{
    if (i < 0 || i >= m->n_meta) return NULL;
    if (val) *val = m->meta_val[i];
    return m->meta_key[i];
}

int clmr_model_head_hidden(const clmr_model_t *m)
{
    return m->cfg.n_tags > 0 ? m->cfg.head_hidden : 0;
}
