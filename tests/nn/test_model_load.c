/* test_model_load.c - clmr_model_load on the committed tiny model and on every failure mode.
 *
 * Bad files are made by mutating the tiny model: its JSON header is parsed with jansson, changed,
 * and re-assembled with the original (or modified) tensor bytes, so each case breaks exactly one
 * rule. Every failure must give its CLMR_EMODEL_* code and a message naming the problem.
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "nn/model_internal.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

#define TINY CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors"

static unsigned char *tiny;
static size_t tiny_n, data_off, data_n;
static json_t *tiny_hdr;

static void read_tiny(void)
{
    FILE *f = fopen(TINY, "rb");
    if (!f) {
        printf("Bail out! cannot open %s\n", TINY);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    tiny_n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    tiny = malloc(tiny_n);
    if (fread(tiny, 1, tiny_n, f) != tiny_n) exit(1);
    fclose(f);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | tiny[i];
    data_off = 8 + (size_t)h;
    data_n = tiny_n - data_off;
    tiny_hdr = json_loadb((const char *)tiny + 8, (size_t)h, 0, NULL);
    if (!tiny_hdr) exit(1);
}

/* header + data (+ extra zero bytes) -> a file image; *n receives its size. */
static unsigned char *assemble(const json_t *hdr, const unsigned char *data, size_t dn,
                               size_t extra, size_t *n)
{
    char *js = json_dumps(hdr, JSON_COMPACT);
    size_t hl = strlen(js);
    *n = 8 + hl + dn + extra;
    unsigned char *buf = calloc(1, *n);
    for (int i = 0; i < 8; i++)
        buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, js, hl);
    memcpy(buf + 8 + hl, data, dn);
    free(js);
    return buf;
}

/* Loads hdr + data (+extra); returns the code and leaves the message in *msg. */
static int load_with(const json_t *hdr, const unsigned char *data, size_t extra, char **msg)
{
    size_t n;
    unsigned char *buf = assemble(hdr, data ? data : tiny + data_off, data_n, extra, &n);
    clmr_model_t *m = NULL;
    free(*msg);
    *msg = NULL;
    int rc = clmr_model_load_memory(&m, buf, n, msg);
    if (rc == 0) CHECK(m != NULL);
    if (rc != 0) CHECK(m == NULL);
    clmr_model_close(&m);
    free(buf);
    return rc;
}

static json_t *hdr_copy(void)
{
    return json_deep_copy(tiny_hdr);
}

static void set_meta(json_t *h, const char *key, const char *val)
{
    json_t *meta = json_object_get(h, "__metadata__");
    if (val)
        json_object_set_new(meta, key, json_string(val));
    else
        json_object_del(meta, key);
}

static void set_shape(json_t *h, const char *tensor, int ndim, const long long *dims)
{
    json_t *s = json_array();
    for (int i = 0; i < ndim; i++)
        json_array_append_new(s, json_integer(dims[i]));
    json_object_set_new(json_object_get(h, tensor), "shape", s);
}

static void set_offsets(json_t *h, const char *tensor, size_t b, size_t e)
{
    json_object_set_new(json_object_get(h, tensor), "data_offsets",
                        json_pack("[I, I]", (json_int_t)b, (json_int_t)e));
}

static size_t tensor_begin(const char *tensor)
{
    json_t *o = json_object_get(json_object_get(tiny_hdr, tensor), "data_offsets");
    return (size_t)json_integer_value(json_array_get(o, 0));
}

/* Expects code and every needle in msg. call_ is evaluated exactly once, before msg is read. */
#define EXPECT_ERR(call_, code, msg, ...)                                                          \
    do {                                                                                           \
        int rc_ = (call_);                                                                         \
        const char *needles_[] = {__VA_ARGS__};                                                    \
        const char *m_ = (msg) ? (msg) : "(no message)";                                           \
        printf("# %s: %s\n", clmr_err_name(rc_), m_);                                              \
        CHECKF(rc_ == (code), "got %s, want %s", clmr_err_name(rc_), clmr_err_name(code));         \
        for (size_t k_ = 0; k_ < sizeof(needles_) / sizeof(needles_[0]); k_++)                     \
            CHECKF(strstr(m_, needles_[k_]), "message lacks '%s'", needles_[k_]);                  \
    } while (0)

static void test_tiny_loads(void)
{
    clmr_model_t *m = NULL, *m2 = NULL;
    char *err = NULL;
    int rc = clmr_model_load(&m, TINY, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    if (rc) return;
    static const int widths[11] = {8, 8, 8, 12, 12, 12, 12, 12, 12, 16, 16};
    CHECK(clmr_model_n_layers(m) == 11);
    for (int i = 0; i < 11; i++)
        CHECK(clmr_model_width(m, i) == widths[i]);
    CHECK(clmr_model_width(m, 11) == 0);
    CHECK(clmr_model_chunk_samples(m) == 59049);
    CHECK(clmr_model_sample_rate(m) == 22050);
    CHECK(clmr_model_embed_dim(m) == 16);
    CHECK(clmr_model_n_tags(m) == 50);
    CHECK(strcmp(clmr_model_tag(m, 0), "guitar") == 0);
    CHECK(strcmp(clmr_model_tag(m, 27), "male vocal") == 0);
    CHECK(strcmp(clmr_model_tag(m, 49), "choral") == 0);
    CHECK(clmr_model_tag(m, 50) == NULL);
    CHECK(strcmp(clmr_model_name(m), "tiny-random") == 0);
    CHECK(strcmp(clmr_model_meta(m, "format"), "clmr-samplecnn") == 0);
    CHECK(strstr(clmr_model_meta(m, "source"), "make_golden.py") != NULL);
    CHECK(clmr_model_meta(m, "nope") == NULL);
    CHECK(clmr_model_n_meta(m) == 7);
    CHECK(strlen(clmr_model_id(m)) == 16);
    CHECK(strspn(clmr_model_id(m), "0123456789abcdef") == 16);
    /* 5690 = sum over layers of OC*IC*3 + 5*OC (conv w/b + 4 BN) + 50*16 + 50 */
    CHECK(clmr_model_param_count(m) == 5690);
    /* the same bytes from memory give the same model and id */
    rc = clmr_model_load_memory(&m2, tiny, tiny_n, &err);
    CHECK(rc == 0);
    if (m2) {
        CHECK(strcmp(clmr_model_id(m), clmr_model_id(m2)) == 0);
        CHECK(memcmp(m->params, m2->params, clmr_model_param_count(m) * sizeof(float)) == 0);
    }
    /* weights are the file's bytes: sequential.3.0.weight[0] */
    float w0;
    memcpy(&w0, tiny + data_off + tensor_begin("sequential.3.0.weight"), 4);
    CHECK(m->w.conv_w[3][0] == w0);
    /* BatchNorm was folded: fold_b differs from the raw conv bias */
    CHECK(m->fold_b[0][0] != m->w.conv_b[0][0]);
    clmr_model_close(&m);
    clmr_model_close(&m2);
    CHECK(m == NULL);
    clmr_model_close(NULL);
    free(err);
}

static void test_id_depends_on_bytes(void)
{
    clmr_model_t *a = NULL, *b = NULL;
    json_t *h = hdr_copy();
    set_meta(h, "description", "another description");
    size_t n;
    unsigned char *buf = assemble(h, tiny + data_off, data_n, 0, &n);
    CHECK(clmr_model_load_memory(&a, tiny, tiny_n, NULL) == 0);
    CHECK(clmr_model_load_memory(&b, buf, n, NULL) == 0);
    if (a && b) CHECK(strcmp(clmr_model_id(a), clmr_model_id(b)) != 0);
    clmr_model_close(&a);
    clmr_model_close(&b);
    free(buf);
    json_decref(h);
}

static void test_io_errors(void)
{
    clmr_model_t *m = NULL;
    char *err = NULL;
    int rc = clmr_model_load(&m, "/nonexistent/model.safetensors", &err);
    EXPECT_ERR(rc, CLMR_EMODEL_IO, err, "/nonexistent/model.safetensors", "No such file");
    rc = clmr_model_load(&m, CLMRD_SOURCE_ROOT "/tests", &err);
    EXPECT_ERR(rc, CLMR_EMODEL_IO, err, "not a regular file");
    CHECK(m == NULL);
    free(err);
}

static void test_container_errors(void)
{
    clmr_model_t *m = NULL;
    char *err = NULL;
    int rc = clmr_model_load_memory(&m, tiny, 5, &err);
    EXPECT_ERR(rc, CLMR_EMODEL_FORMAT, err, "too short");
    rc = clmr_model_load_memory(&m, tiny, 100, &err); /* cut inside the header */
    EXPECT_ERR(rc, CLMR_EMODEL_FORMAT, err, "header length", "exceeds");
    rc = clmr_model_load_memory(&m, tiny, tiny_n - 100, &err); /* cut inside the data */
    EXPECT_ERR(rc, CLMR_EMODEL_FORMAT, err, "outside", "truncated");

    unsigned char *buf = malloc(tiny_n);
    memcpy(buf, tiny, tiny_n);
    memset(buf, 0xff, 8); /* header length 2^64 - 1 */
    rc = clmr_model_load_memory(&m, buf, tiny_n, &err);
    EXPECT_ERR(rc, CLMR_EMODEL_FORMAT, err, "header length 18446744073709551615");
    memcpy(buf, tiny, tiny_n);
    memcpy(buf + 8, "{\"a\":", 5); /* JSON syntax error at the start of the header */
    rc = clmr_model_load_memory(&m, buf, tiny_n, &err);
    EXPECT_ERR(rc, CLMR_EMODEL_FORMAT, err, "not valid JSON");
    free(buf);

    static const char dup[] = "{\"fc.bias\":{},\"fc.bias\":{}}";
    unsigned char img[8 + sizeof(dup)] = {sizeof(dup) - 1};
    memcpy(img + 8, dup, sizeof(dup) - 1);
    rc = clmr_model_load_memory(&m, img, sizeof(img) - 1, &err);
    EXPECT_ERR(rc, CLMR_EMODEL_FORMAT, err, "not valid JSON", "duplicate");
    static const char arr[] = "[1,2]   ";
    unsigned char img2[8 + sizeof(arr)] = {sizeof(arr) - 1};
    memcpy(img2 + 8, arr, sizeof(arr) - 1);
    rc = clmr_model_load_memory(&m, img2, sizeof(img2) - 1, &err);
    EXPECT_ERR(rc, CLMR_EMODEL_FORMAT, err, "not an object");
    CHECK(m == NULL);
    free(err);
}

static void test_tensor_table_errors(void)
{
    char *err = NULL;
    json_t *h = hdr_copy();
    json_object_set_new(json_object_get(h, "sequential.0.0.weight"), "dtype", json_string("F16"));
    size_t b = tensor_begin("sequential.0.0.weight");
    set_offsets(h, "sequential.0.0.weight", b, b + 48); /* 24 halves */
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err, "sequential.0.0.weight", "F16",
               "F32");
    json_decref(h);

    h = hdr_copy();
    json_object_set_new(json_object_get(h, "fc.bias"), "dtype", json_string("Q7"));
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_FORMAT, err, "fc.bias", "unknown dtype");
    json_decref(h);

    h = hdr_copy(); /* two tensors over the same bytes */
    b = tensor_begin("sequential.1.1.bias");
    set_offsets(h, "sequential.1.0.bias", b, b + 32);
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_FORMAT, err, "overlap",
               "sequential.1.0.bias", "sequential.1.1.bias");
    json_decref(h);

    /* Overlap that is not between neighbours once sorted: an empty tensor sorts between the
     * big one and the small one inside it. Comparing neighbours only (and skipping the empty
     * one) missed this; the running maximum end catches it. */
    h = hdr_copy();
    size_t w = tensor_begin("sequential.1.0.weight");
    set_offsets(h, "sequential.1.0.bias", w + 8, w + 40);
    json_object_set_new(h, "zz.empty",
                        json_pack("{s:s,s:[i],s:[I,I]}", "dtype", "F32", "shape", 0, "data_offsets",
                                  (json_int_t)(w + 4), (json_int_t)(w + 4)));
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_FORMAT, err, "overlap",
               "sequential.1.0.bias", "sequential.1.0.weight");
    json_decref(h);

    h = hdr_copy(); /* byte count does not match the shape */
    set_shape(h, "fc.bias", 1, (long long[]){49});
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_FORMAT, err, "fc.bias", "196", "200");
    json_decref(h);

    h = hdr_copy();
    set_offsets(h, "fc.bias", data_n - 100, data_n + 100);
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_FORMAT, err, "fc.bias", "outside");
    json_decref(h);

    h = hdr_copy();
    json_object_set_new(json_object_get(h, "fc.bias"), "shape", json_pack("[i]", -50));
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_FORMAT, err, "fc.bias", "non-negative");
    json_decref(h);
    free(err);
}

static void test_missing_and_unknown_tensors(void)
{
    char *err = NULL;
    json_t *h = hdr_copy();
    json_object_del(h, "sequential.5.1.running_var");
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err,
               "missing tensor 'sequential.5.1.running_var'");
    json_decref(h);

    h = hdr_copy(); /* a hole in the layer indices */
    static const char *parts[] = {"0.weight",
                                  "0.bias",
                                  "1.weight",
                                  "1.bias",
                                  "1.running_mean",
                                  "1.running_var",
                                  "1.num_batches_tracked"};
    char name[64];
    for (int p = 0; p < 7; p++) {
        snprintf(name, sizeof(name), "sequential.4.%s", parts[p]);
        json_object_del(h, name);
    }
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err,
               "missing tensor 'sequential.4.0.weight'");
    json_decref(h);

    h = hdr_copy();
    json_object_del(h, "fc.bias");
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err, "missing tensor 'fc.bias'");
    json_decref(h);

    h = hdr_copy(); /* unknown tensors are refused by name */
    json_object_set_new(h, "decoder.weight",
                        json_pack("{s:s, s:[i], s:[I, I]}", "dtype", "F32", "shape", 4,
                                  "data_offsets", (json_int_t)data_n, (json_int_t)data_n + 16));
    EXPECT_ERR(load_with(h, NULL, 16, &err), CLMR_EMODEL_TENSOR, err, "unexpected tensor",
               "'decoder.weight'");
    json_decref(h);

    h = hdr_copy();
    json_object_set_new(h, "sequential.16.0.bias",
                        json_pack("{s:s, s:[i], s:[I, I]}", "dtype", "F32", "shape", 4,
                                  "data_offsets", (json_int_t)data_n, (json_int_t)data_n + 16));
    EXPECT_ERR(load_with(h, NULL, 16, &err), CLMR_EMODEL_TENSOR, err, "sequential.16.0.bias",
               "at most 16");
    json_decref(h);

    h = hdr_copy(); /* a SimCLR projector group is accepted and ignored */
    json_object_set_new(h, "projector.0.weight",
                        json_pack("{s:s, s:[i, i], s:[I, I]}", "dtype", "F32", "shape", 2, 2,
                                  "data_offsets", (json_int_t)data_n, (json_int_t)data_n + 16));
    int rc = load_with(h, NULL, 16, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    json_decref(h);

    h = json_pack("{s:{s:s}}", "__metadata__", "format", "clmr-samplecnn");
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err, "no sequential");
    json_decref(h);
    free(err);
}

static void test_shape_errors(void)
{
    char *err = NULL;
    json_t *h = hdr_copy(); /* (12, 8, 3) -> (24, 4, 3): same bytes, input channels wrong */
    set_shape(h, "sequential.3.0.weight", 3, (long long[]){24, 4, 3});
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err, "sequential.3.0.weight",
               "(24, 4, 3)", "(out_channels, 8, 3)");
    json_decref(h);

    h = hdr_copy(); /* kernel 6 */
    set_shape(h, "sequential.0.0.weight", 3, (long long[]){4, 1, 6});
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err, "sequential.0.0.weight",
               "(4, 1, 6)", "1-channel");
    json_decref(h);

    h = hdr_copy(); /* BN vector of the wrong length, stored in extra bytes */
    set_shape(h, "sequential.2.1.bias", 1, (long long[]){12});
    set_offsets(h, "sequential.2.1.bias", data_n, data_n + 48);
    EXPECT_ERR(load_with(h, NULL, 48, &err), CLMR_EMODEL_TENSOR, err, "sequential.2.1.bias", "(12)",
               "expected (8)");
    json_decref(h);

    h = hdr_copy(); /* fc input != last width */
    set_shape(h, "fc.weight", 2, (long long[]){100, 8});
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err, "fc.weight", "(100, 8)",
               "(n_tags, 16)");
    json_decref(h);

    h = hdr_copy();
    json_object_set_new(json_object_get(h, "sequential.2.1.num_batches_tracked"), "dtype",
                        json_string("F64"));
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_TENSOR, err,
               "sequential.2.1.num_batches_tracked", "I64");
    json_decref(h);
    free(err);
}

static void test_value_errors(void)
{
    char *err = NULL;
    unsigned char *data = malloc(data_n);
    memcpy(data, tiny + data_off, data_n);
    float nan = NAN, neg = -0.5f, inf = INFINITY;
    memcpy(data + tensor_begin("sequential.4.0.weight") + 5 * 4, &nan, 4);
    EXPECT_ERR(load_with(tiny_hdr, data, 0, &err), CLMR_EMODEL_NONFINITE, err,
               "sequential.4.0.weight", "non-finite", "index 5");
    memcpy(data, tiny + data_off, data_n);
    memcpy(data + tensor_begin("fc.bias") + 49 * 4, &inf, 4);
    EXPECT_ERR(load_with(tiny_hdr, data, 0, &err), CLMR_EMODEL_NONFINITE, err, "fc.bias",
               "index 49");
    memcpy(data, tiny + data_off, data_n);
    memcpy(data + tensor_begin("sequential.7.1.running_var") + 2 * 4, &neg, 4);
    EXPECT_ERR(load_with(tiny_hdr, data, 0, &err), CLMR_EMODEL_TENSOR, err,
               "sequential.7.1.running_var", "negative variance", "index 2");
    free(data);
    free(err);
}

static void test_metadata_errors(void)
{
    char *err = NULL;
    json_t *h = hdr_copy();
    json_object_del(h, "__metadata__");
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_METADATA, err, "no __metadata__");
    json_decref(h);

    static const struct {
        const char *key, *val, *needle1, *needle2;
    } cases[] = {
        {"format", "pytorch", "'format' is 'pytorch'", "clmr-samplecnn"},
        {"format", NULL, "'format' is missing", "clmr-samplecnn"},
        {"sample_rate", "44100", "'sample_rate' is '44100'", "must be 22050"},
        {"sample_rate", "22050.0", "'sample_rate'", "must be 22050"},
        {"sample_rate", NULL, "'sample_rate' is missing", "22050"},
        {"chunk_samples", "19683", "'chunk_samples' is '19683'", "59049"},
        {"chunk_samples", NULL, "'chunk_samples' is missing", "11-layer"},
        {"name", NULL, "'name' is missing", ""},
        {"name", "", "'name' is empty", ""},
        {"tags", NULL, "'tags' is missing", "50 rows"},
        {"tags", "guitar, piano", "'tags' is not a JSON array", ""},
        {"tags", "[\"a\", \"b\"]", "2 names", "50 rows"},
        {"tags", "{}", "not a JSON array", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        h = hdr_copy();
        set_meta(h, cases[i].key, cases[i].val);
        int rc = load_with(h, NULL, 0, &err);
        EXPECT_ERR(rc, CLMR_EMODEL_METADATA, err, cases[i].needle1, cases[i].needle2);
        json_decref(h);
    }

    /* tags: 50 entries but one empty / one duplicated / one not a string */
    const char *bad_tags[] = {"\"\"", "\"guitar\"", "7"};
    const char *needles[] = {"'tags'[3] is not a non-empty string", "'guitar' twice",
                             "'tags'[3] is not"};
    for (int k = 0; k < 3; k++) {
        json_t *tags = json_loads(
            json_string_value(json_object_get(json_object_get(tiny_hdr, "__metadata__"), "tags")),
            0, NULL);
        json_array_set_new(tags, 3, json_loads(bad_tags[k], JSON_DECODE_ANY, NULL));
        char *s = json_dumps(tags, JSON_COMPACT);
        h = hdr_copy();
        set_meta(h, "tags", s);
        EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_METADATA, err, needles[k]);
        json_decref(h);
        json_decref(tags);
        free(s);
    }

    h = hdr_copy(); /* metadata values must be strings (safetensors rule) */
    json_object_set_new(json_object_get(h, "__metadata__"), "epochs", json_integer(3));
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_FORMAT, err, "'epochs'", "not a string");
    json_decref(h);
    free(err);
}

static void test_encoder_only(void)
{
    char *err = NULL;
    json_t *h = hdr_copy();
    json_object_del(h, "fc.weight");
    json_object_del(h, "fc.bias");
    EXPECT_ERR(load_with(h, NULL, 0, &err), CLMR_EMODEL_METADATA, err, "no fc head");
    set_meta(h, "tags", NULL);
    size_t n;
    unsigned char *buf = assemble(h, tiny + data_off, data_n, 0, &n);
    clmr_model_t *m = NULL;
    int rc = clmr_model_load_memory(&m, buf, n, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    if (m) {
        CHECK(clmr_model_n_tags(m) == 0);
        CHECK(clmr_model_embed_dim(m) == 16);
        CHECK(clmr_model_tag(m, 0) == NULL);
        CHECK(clmr_model_param_count(m) == 5690 - 850);
    }
    clmr_model_close(&m);
    free(buf);
    json_decref(h);
    free(err);
}

/* Random corruption of the header and data (a poor man's fuzzer, meaningful under ASan/UBSan):
 * every load either succeeds or fails with a model_* code and a message, never crashes. */
static void test_random_corruption(void)
{
    unsigned char *buf = malloc(tiny_n);
    unsigned s = 2024;
    int ok = 0, failed = 0, bad = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, tiny, tiny_n);
        int flips = 1 + it % 4;
        for (int k = 0; k < flips; k++) {
            s = s * 1103515245u + 12345u;
            /* mostly the header (the interesting part), sometimes anywhere */
            size_t pos = (it % 5 == 0) ? (s >> 4) % tiny_n : (s >> 4) % data_off;
            s = s * 1103515245u + 12345u;
            buf[pos] = (it % 3 == 0) ? (unsigned char)(s >> 16)
                                     : (unsigned char)(buf[pos] ^ (1u << (s >> 29)));
        }
        s = s * 1103515245u + 12345u;
        size_t n = (it % 7 == 0) ? (s >> 4) % tiny_n : tiny_n;
        clmr_model_t *m = NULL;
        char *err = NULL;
        int rc = clmr_model_load_memory(&m, buf, n, &err);
        if (rc == 0) {
            ok++;
            if (!m) bad++;
        } else {
            failed++;
            if (m || !err || rc > CLMR_EMODEL_IO || rc < CLMR_EMODEL_NO_HEAD) bad++;
        }
        clmr_model_close(&m);
        free(err);
    }
    printf("# random corruption: %d loaded, %d refused\n", ok, failed);
    CHECK(bad == 0);
    CHECK(failed > 1000);
    free(buf);
}

int main(void)
{
    read_tiny();
    RUN_TEST(test_tiny_loads);
    RUN_TEST(test_id_depends_on_bytes);
    RUN_TEST(test_io_errors);
    RUN_TEST(test_container_errors);
    RUN_TEST(test_tensor_table_errors);
    RUN_TEST(test_missing_and_unknown_tensors);
    RUN_TEST(test_shape_errors);
    RUN_TEST(test_value_errors);
    RUN_TEST(test_metadata_errors);
    RUN_TEST(test_encoder_only);
    RUN_TEST(test_random_corruption);
    json_decref(tiny_hdr);
    free(tiny);
    return TEST_END();
}
