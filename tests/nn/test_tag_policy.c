/* test_tag_policy.c - parsing and lookups of a model's "tag_policy" metadata (clmr/tag_policy.h).
 *
 * Real model files: the tiny fixture (50 MTT tags) loaded, its metadata edited in memory with
 * clmr_model_set_meta, and for the round trip saved to a temporary file and loaded again. Covers:
 * no policy (everything trusted, no thresholds), a valid policy (listed/unlisted tags, thresholds,
 * counts), and every malformed form being refused with a message naming the problem.
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmr/tag_policy.h"
#include "clmrd_build_config.h"
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TINY CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors"

static int tag_of(const clmr_model_t *m, const char *name)
{
    for (int i = 0; i < clmr_model_n_tags(m); i++)
        if (!strcmp(clmr_model_tag(m, i), name)) return i;
    return -1;
}

static void test_no_policy_trusts_everything(void)
{
    clmr_model_t *m = NULL;
    clmr_tag_policy_t *p = (clmr_tag_policy_t *)1;
    CHECK(clmr_model_load(&m, TINY, NULL) == 0);
    if (!m) return;
    CHECK(clmr_tag_policy_from_model(&p, m, NULL) == 0);
    CHECK(p == NULL);
    for (int i = 0; i < clmr_model_n_tags(m); i++) {
        CHECK(clmr_tag_policy_trusted(p, i));
        CHECK(clmr_tag_policy_threshold(p, i) < 0);
    }
    CHECK(clmr_tag_policy_n_untrusted(p) == 0);
    clmr_tag_policy_close(&p);
    clmr_model_close(&m);
}

static const char *VALID = "{\"version\":1,\"trust_rule\":\"r\",\"tags\":{"
                           "\"drums\":{\"trusted\":true,\"threshold\":0.25,\"evidence\":\"e\"},"
                           "\"no voice\":{\"trusted\":false,\"threshold\":0.9},"
                           "\"guitar\":{\"trusted\":true,\"threshold\":null}}}";

static void check_valid(const clmr_model_t *m)
{
    clmr_tag_policy_t *p = NULL;
    char *err = NULL;
    CHECK(clmr_tag_policy_from_model(&p, m, &err) == 0);
    CHECKF(p != NULL, "%s", err ? err : "");
    free(err);
    if (!p) return;
    int drums = tag_of(m, "drums"), novoice = tag_of(m, "no voice"), guitar = tag_of(m, "guitar");
    int vocal = tag_of(m, "vocal");
    CHECK(clmr_tag_policy_trusted(p, drums) && clmr_tag_policy_trusted(p, guitar));
    CHECK(!clmr_tag_policy_trusted(p, novoice));
    CHECK(!clmr_tag_policy_trusted(p, vocal)); /* not listed: untrusted */
    CHECK(!clmr_tag_policy_trusted(p, -1) && !clmr_tag_policy_trusted(p, clmr_model_n_tags(m)));
    CHECK_NEAR(clmr_tag_policy_threshold(p, drums), 0.25, 0);
    CHECK_NEAR(clmr_tag_policy_threshold(p, novoice), 0.9, 0);
    CHECK(clmr_tag_policy_threshold(p, guitar) < 0); /* null: no threshold */
    CHECK(clmr_tag_policy_threshold(p, vocal) < 0);
    CHECK(clmr_tag_policy_n_untrusted(p) == clmr_model_n_tags(m) - 2);
    clmr_tag_policy_close(&p);
    CHECK(p == NULL);
    clmr_tag_policy_close(&p); /* NULL is fine */
}

static void test_valid_policy_and_round_trip(void)
{
    clmr_model_t *m = NULL, *r = NULL;
    CHECK(clmr_model_load(&m, TINY, NULL) == 0);
    if (!m) return;
    CHECK(clmr_model_set_meta(m, CLMR_TAG_POLICY_KEY, VALID) == 0);
    check_valid(m);
    char path[] = "/tmp/clmr-tag-policy-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) close(fd);
    CHECK(clmr_model_save(m, path, NULL) == 0);
    CHECK(clmr_model_load(&r, path, NULL) == 0);
    if (r) check_valid(r);
    unlink(path);
    clmr_model_close(&r);
    clmr_model_close(&m);
}

static void test_malformed_policies_are_refused(void)
{
    static const struct {
        const char *json, *needle;
    } bad[] = {
        {"not json", "not a JSON object"},
        {"[1,2]", "not a JSON object"},
        {"{\"tags\":{}}", "\"version\" must be 1"},
        {"{\"version\":2,\"tags\":{}}", "\"version\" must be 1"},
        {"{\"version\":1}", "\"tags\" must be an object"},
        {"{\"version\":1,\"tags\":{\"gutiar\":{\"trusted\":true}}}", "\"gutiar\" is not a tag"},
        {"{\"version\":1,\"tags\":{\"guitar\":{\"threshold\":0.5}}}", "needs \"trusted\""},
        {"{\"version\":1,\"tags\":{\"guitar\":{\"trusted\":1}}}", "needs \"trusted\""},
        {"{\"version\":1,\"tags\":{\"guitar\":true}}", "needs \"trusted\""},
        {"{\"version\":1,\"tags\":{\"guitar\":{\"trusted\":true,\"threshold\":1.5}}}",
         "\"threshold\" must be a number from 0 to 1"},
        {"{\"version\":1,\"tags\":{\"guitar\":{\"trusted\":true,\"threshold\":-0.1}}}",
         "\"threshold\" must be a number from 0 to 1"},
        {"{\"version\":1,\"tags\":{\"guitar\":{\"trusted\":true,\"threshold\":\"0.5\"}}}",
         "\"threshold\" must be a number from 0 to 1"},
        {"{\"version\":1,\"tags\":{\"guitar\":{\"trusted\":true},\"guitar\":{\"trusted\":false}}}",
         "not a JSON object"},
    };
    clmr_model_t *m = NULL;
    CHECK(clmr_model_load(&m, TINY, NULL) == 0);
    if (!m) return;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(clmr_model_set_meta(m, CLMR_TAG_POLICY_KEY, bad[i].json) == 0);
        clmr_tag_policy_t *p = NULL;
        char *err = NULL;
        int rc = clmr_tag_policy_from_model(&p, m, &err);
        CHECKF(rc == CLMR_EMODEL_METADATA && p == NULL, "case %zu: rc %d", i, rc);
        CHECKF(err && strstr(err, bad[i].needle), "case %zu: '%s' lacks '%s'", i,
               err ? err : "(null)", bad[i].needle);
        free(err);
        clmr_tag_policy_close(&p);
    }
    clmr_model_close(&m);
}

int main(void)
{
    RUN_TEST(test_no_policy_trusts_everything);
    RUN_TEST(test_valid_policy_and_round_trip);
    RUN_TEST(test_malformed_policies_are_refused);
    return TEST_END();
}
