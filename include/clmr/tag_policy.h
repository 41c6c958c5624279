/* tag_policy.h - which tags of a model are trusted on real audio, and per-tag decision thresholds.
 *
 * DESIGN: a model file may carry a "tag_policy" entry in its safetensors __metadata__ (a JSON
 * object, docs/model-format.md): for each head tag whether its quality was measured on REAL
 * recordings and found good enough ("trusted"), the decision threshold on its sigmoid score, and
 * a one-line evidence string. The policy is parsed once when a model is opened and is immutable
 * afterwards, so any number of threads may read it. A model without the entry (an imported
 * official CLMR checkpoint, an older file) has no policy: every tag counts as trusted and no tag
 * has a threshold. Callers (HTTP responses, `clmrd tag`) show only trusted tags unless the user
 * asks for all, and report a yes/no decision wherever a threshold exists.
 */
#ifndef CLMR_TAG_POLICY_H
#define CLMR_TAG_POLICY_H

#include "clmr/model.h"

/* The metadata key that holds the policy. */
#define CLMR_TAG_POLICY_KEY "tag_policy"

typedef struct clmr_tag_policy clmr_tag_policy_t;

/* Parses m's "tag_policy" entry. Returns 0 and sets *out to a policy owned by the caller
 * (clmr_tag_policy_close), or to NULL when m has no such entry or no head (no policy: everything
 * trusted, no thresholds; every accessor below accepts NULL). Returns CLMR_EMODEL_METADATA with
 * *errmsg (malloc'd, may be NULL) naming the problem when the entry is malformed: not a JSON
 * object, version other than 1, a tag the head does not have, "trusted" not a boolean, a threshold
 * outside [0, 1]; CLMR_ENOMEM. m remains owned by the caller and is not referenced afterwards. */
int clmr_tag_policy_from_model(clmr_tag_policy_t **out, const clmr_model_t *m, char **errmsg);

/* Frees the policy; accepts NULL and *p == NULL; sets *p to NULL. */
void clmr_tag_policy_close(clmr_tag_policy_t **p);

/* 1 when tag i (model head order) may be shown by default: no policy, or the policy marks it
 * trusted. A tag the policy does not list is untrusted. With a policy an out-of-range i gives 0;
 * without one the head size is unknown here, so any i >= 0 gives 1. */
int clmr_tag_policy_trusted(const clmr_tag_policy_t *p, int i);

/* The decision threshold of tag i (a tag is "yes" when its score >= threshold), or a negative
 * number when there is none (no policy, the tag has no threshold, or i is out of range). */
double clmr_tag_policy_threshold(const clmr_tag_policy_t *p, int i);

/* Number of head tags the policy does not trust (0 without a policy). */
int clmr_tag_policy_n_untrusted(const clmr_tag_policy_t *p);

#endif
