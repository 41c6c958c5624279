/* tag_policy.c - the per-tag "trusted on real audio" flags and decision thresholds of a model
 * (see include/clmr/tag_policy.h).
 *
 * DESIGN: the policy is parsed from the model's metadata once, validated strictly (a typo in a
 * tag name must not silently hide or show a tag), and turned into two arrays indexed like the
 * head, so the per-response cost is an array lookup. Absence of the entry is not an error: it
 * means "no claim", and callers then show every tag, as they did before policies existed.
 */
#include "clmr/tag_policy.h"

#include "clmr/error.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct clmr_tag_policy {
    int n_tags;
    int n_untrusted;
    unsigned char *trusted; /* (n_tags) 0/1 */
    double *threshold;      /* (n_tags) < 0 = none */
};

void clmr_tag_policy_close(clmr_tag_policy_t **p)
{
    if (!p || !*p) return;
    free((*p)->trusted);
    free((*p)->threshold);
    free(*p);
    *p = NULL;
}

static int tag_index(const clmr_model_t *m, const char *name)
{
    for (int i = 0; i < clmr_model_n_tags(m); i++)
        if (strcmp(clmr_model_tag(m, i), name) == 0) return i;
    return -1;
}

int clmr_tag_policy_from_model(clmr_tag_policy_t **out, const clmr_model_t *m, char **errmsg)
{
    *out = NULL;
    const char *text = clmr_model_meta(m, CLMR_TAG_POLICY_KEY);
    int n = clmr_model_n_tags(m);
    if (!text || n <= 0) return 0;
    int rc = 0;
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    clmr_tag_policy_t *p = calloc(1, sizeof *p);
    if (!p) {
        rc = CLMR_ENOMEM;
        goto out;
    }
    p->n_tags = n;
    p->trusted = calloc((size_t)n, 1);
    p->threshold = malloc((size_t)n * sizeof *p->threshold);
    if (!p->trusted || !p->threshold) {
        rc = CLMR_ENOMEM;
        goto out;
    }
    for (int i = 0; i < n; i++)
        p->threshold[i] = -1.0;
    if (!json_is_object(root)) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA, "metadata '%s' is not a JSON object%s%s",
                          CLMR_TAG_POLICY_KEY, root ? "" : ": ", root ? "" : jerr.text);
        goto out;
    }
    json_t *ver = json_object_get(root, "version");
    if (!json_is_integer(ver) || json_integer_value(ver) != 1) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata '%s': \"version\" must be 1 (this clmrd reads version 1)",
                          CLMR_TAG_POLICY_KEY);
        goto out;
    }
    json_t *tags = json_object_get(root, "tags");
    if (!json_is_object(tags)) {
        rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                          "metadata '%s': \"tags\" must be an object {tag: {...}}",
                          CLMR_TAG_POLICY_KEY);
        goto out;
    }
    const char *name;
    json_t *e;
    json_object_foreach(tags, name, e)
    {
        int i = tag_index(m, name);
        if (i < 0) {
            rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                              "metadata '%s': tag \"%s\" is not a tag of this model's head",
                              CLMR_TAG_POLICY_KEY, name);
            goto out;
        }
        json_t *tr = json_object_get(e, "trusted");
        if (!json_is_object(e) || !json_is_boolean(tr)) {
            rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                              "metadata '%s': tag \"%s\" needs \"trusted\": true or false",
                              CLMR_TAG_POLICY_KEY, name);
            goto out;
        }
        p->trusted[i] = json_is_true(tr);
        json_t *th = json_object_get(e, "threshold");
        if (th && !json_is_null(th)) {
            double v = json_is_number(th) ? json_number_value(th) : NAN;
            if (!(v >= 0.0 && v <= 1.0)) {
                rc = clmr_set_err(errmsg, CLMR_EMODEL_METADATA,
                                  "metadata '%s': tag \"%s\": \"threshold\" must be a number "
                                  "from 0 to 1",
                                  CLMR_TAG_POLICY_KEY, name);
                goto out;
            }
            p->threshold[i] = v;
        }
    }
    for (int i = 0; i < n; i++)
        p->n_untrusted += !p->trusted[i];
    *out = p;
    p = NULL;
out:
    json_decref(root);
    clmr_tag_policy_close(&p);
    return rc;
}

int clmr_tag_policy_trusted(const clmr_tag_policy_t *p, int i)
{
    if (!p) return i >= 0;
    return i >= 0 && i < p->n_tags && p->trusted[i];
}

double clmr_tag_policy_threshold(const clmr_tag_policy_t *p, int i)
{
    if (!p || i < 0 || i >= p->n_tags) return -1.0;
    return p->threshold[i];
}

int clmr_tag_policy_n_untrusted(const clmr_tag_policy_t *p)
{
    return p ? p->n_untrusted : 0;
}
