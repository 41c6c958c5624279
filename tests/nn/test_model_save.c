/* test_model_save.c - clmr_model_save round trips and the metadata/name/tags editing API.
 *
 * Real files in a fresh temporary directory: a loaded model saved and reloaded keeps every
 * parameter bit, its name, tags and metadata; a model built in memory (5 layers, 81-sample chunk,
 * 3 tags) saves and reloads with the widths inferred from shapes; saves leave no temp files behind.
 */
#include "clmr/error.h"
#include "clmr/model.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "nn/model_internal.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TINY CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors"

static char dir[64];

static char *path_in_dir(const char *name)
{
    static char buf[64 + 260];
    snprintf(buf, sizeof(buf), "%s/%s", dir, name);
    return buf;
}

static int count_files(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    if (d) closedir(d);
    return n;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n);
    if (fread(b, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return b;
}

/* b was saved from a; a may lack extra_meta derived entries (format, ...) that b got on save */
static void check_same_model(const clmr_model_t *a, const clmr_model_t *b, int extra_meta)
{
    CHECK(a->cfg.n_layers == b->cfg.n_layers);
    for (int i = 0; i < a->cfg.n_layers; i++)
        CHECK(a->cfg.layer[i].out_ch == b->cfg.layer[i].out_ch);
    CHECK(a->cfg.n_tags == b->cfg.n_tags);
    size_t n = clmr_model_param_count(a);
    CHECK(n == clmr_model_param_count(b));
    if (n == clmr_model_param_count(b)) CHECK(memcmp(a->params, b->params, n * 4) == 0);
    CHECK(strcmp(clmr_model_name(a), clmr_model_name(b)) == 0);
    for (int i = 0; i < a->cfg.n_tags; i++)
        CHECK(strcmp(clmr_model_tag(a, i), clmr_model_tag(b, i)) == 0);
    CHECK(clmr_model_n_meta(a) + extra_meta == clmr_model_n_meta(b));
    for (int i = 0; i < clmr_model_n_meta(a); i++) {
        const char *va, *ka = clmr_model_meta_at(a, i, &va);
        const char *vb = clmr_model_meta(b, ka);
        CHECKF(vb && strcmp(va, vb) == 0, "meta '%s': '%s' vs '%s'", ka, va, vb ? vb : "(none)");
    }
}

static void test_roundtrip_tiny(void)
{
    clmr_model_t *m = NULL, *r = NULL, *r2 = NULL;
    char *err = NULL;
    CHECK(clmr_model_load(&m, TINY, &err) == 0);
    if (!m) return;
    const char *p1 = strdup(path_in_dir("tiny1.safetensors"));
    int rc = clmr_model_save(m, p1, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    rc = clmr_model_load(&r, p1, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    if (r) {
        check_same_model(m, r, 0);
        /* folded weights come out identical too, so inference cannot tell the files apart */
        size_t nf = 0;
        for (int i = 0; i < m->cfg.n_layers; i++)
            nf += (size_t)m->cfg.layer[i].out_ch * (m->cfg.layer[i].in_ch * 3 + 1);
        CHECK(memcmp(m->fold_mem, r->fold_mem, nf * 4) == 0);
    }
    /* saving is deterministic: the same model gives the same bytes and the same id */
    const char *p2 = path_in_dir("tiny2.safetensors");
    CHECK(clmr_model_save(r, p2, &err) == 0);
    size_t n1 = 0, n2 = 0;
    unsigned char *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
    CHECK(n1 > 0 && n1 == n2 && memcmp(b1, b2, n1) == 0);
    CHECK(clmr_model_load(&r2, p2, &err) == 0);
    if (r && r2) CHECK(strcmp(clmr_model_id(r), clmr_model_id(r2)) == 0);
    /* tensor data is 8-byte aligned: the header length is a multiple of 8 */
    if (b1) CHECK(b1[0] % 8 == 0);
    CHECK(count_files() == 2);
    free(b1);
    free(b2);
    free((void *)p1);
    clmr_model_close(&m);
    clmr_model_close(&r);
    clmr_model_close(&r2);
    free(err);
}

static void test_build_small_model(void)
{
    static const int widths[6] = {1, 4, 6, 6, 8, 8};
    clmr_samplecnn_config_t cfg;
    CHECK(clmr_samplecnn_config_init(&cfg, 5, widths, 3) == 0);
    CHECK(cfg.chunk_samples == 81);
    clmr_model_t *m = NULL, *r = NULL;
    CHECK(clmr__model_alloc(&m, &cfg) == 0);
    if (!m) return;
    size_t n = clmr_model_param_count(m);
    unsigned s = 12345;
    for (size_t i = 0; i < n; i++) {
        s = s * 1103515245u + 12345u;
        m->params[i] = (float)((s >> 8) & 0xffff) / 65536.0f + 0.01f; /* > 0: valid variances */
    }
    char *err = NULL;
    const char *path = path_in_dir("small.safetensors");
    /* no name yet */
    CHECK(clmr_model_save(m, path, &err) == CLMR_EINVAL);
    CHECK(err && strstr(err, "no name"));
    CHECK(clmr_model_set_name(m, "") == CLMR_EINVAL);
    CHECK(clmr_model_set_name(m, "small") == 0);
    CHECK(strcmp(clmr_model_meta(m, "name"), "small") == 0);
    CHECK(clmr_model_save(m, path, &err) == CLMR_EINVAL);
    CHECK(err && strstr(err, "no tag names"));
    const char *two[] = {"a", "b"}, *dup[] = {"a", "b", "a"}, *empty[] = {"a", "", "c"};
    const char *tags[] = {"rock", "jazz", "ambient"};
    CHECK(clmr_model_set_tags(m, two, 2) == CLMR_EINVAL);
    CHECK(clmr_model_set_tags(m, dup, 3) == CLMR_EINVAL);
    CHECK(clmr_model_set_tags(m, empty, 3) == CLMR_EINVAL);
    CHECK(clmr_model_tag(m, 0) == NULL);
    CHECK(clmr_model_set_tags(m, two, 2) == CLMR_EINVAL);
    CHECK(clmr_model_set_tags(m, tags, 3) == 0);
    CHECK(clmr_model_set_tags(m, tags, 3) == 0); /* replacing frees the old ones (ASan) */
    CHECK(strcmp(clmr_model_tag(m, 2), "ambient") == 0);
    CHECK(strcmp(clmr_model_meta(m, "tags"), "[\"rock\",\"jazz\",\"ambient\"]") == 0);
    CHECK(clmr_model_set_meta(m, "format", "x") == CLMR_EINVAL);
    CHECK(clmr_model_set_meta(m, "tags", "[]") == CLMR_EINVAL);
    CHECK(clmr_model_set_meta(m, "", "x") == CLMR_EINVAL);
    CHECK(clmr_model_set_meta(m, "epochs", "12") == 0);
    CHECK(clmr_model_set_meta(m, "epochs", "13") == 0);
    CHECK(clmr_model_set_meta(m, "temp", "x") == 0);
    CHECK(clmr_model_set_meta(m, "temp", NULL) == 0);
    CHECK(clmr_model_meta(m, "temp") == NULL);
    CHECK(strcmp(clmr_model_meta(m, "epochs"), "13") == 0);
    /* free-form entries stop where the saved file would exceed the loader's 64-entry limit:
     * m holds name, tags, epochs; save adds format, sample_rate, chunk_samples */
    char key[16];
    int added = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        if (clmr_model_set_meta(m, key, "v") != 0) break;
        added++;
    }
    CHECK(added == CLMR_MODEL_MAX_META - 6);
    CHECK(clmr_model_set_meta(m, "k0", "replaced") == 0); /* replacing still works */
    for (int i = 0; i < added; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        CHECK(clmr_model_set_meta(m, key, NULL) == 0);
    }
    int rc = clmr_model_save(m, path, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    rc = clmr_model_load(&r, path, &err);
    CHECKF(rc == 0, "%s", err ? err : "");
    if (r) {
        CHECK(clmr_model_chunk_samples(r) == 81);
        CHECK(clmr_model_n_layers(r) == 5);
        CHECK(clmr_model_width(r, 3) == 8);
        CHECK(strcmp(clmr_model_meta(r, "format"), "clmr-samplecnn") == 0);
        CHECK(strcmp(clmr_model_meta(r, "chunk_samples"), "81") == 0);
        CHECK(strcmp(clmr_model_meta(r, "epochs"), "13") == 0);
        /* m has no format/sample_rate/chunk_samples entries; r has them from the file */
        CHECK(clmr_model_n_meta(r) == clmr_model_n_meta(m) + 3);
        CHECK(memcmp(m->params, r->params, n * 4) == 0);
    }
    /* overwrite an existing file: the new content replaces the old one atomically */
    CHECK(clmr_model_set_name(m, "small-v2") == 0);
    CHECK(clmr_model_save(m, path, &err) == 0);
    clmr_model_close(&r);
    CHECK(clmr_model_load(&r, path, &err) == 0);
    if (r) CHECK(strcmp(clmr_model_name(r), "small-v2") == 0);
    clmr_model_close(&r);
    clmr_model_close(&m);
    free(err);
}

static void test_encoder_only_roundtrip(void)
{
    static const int widths[4] = {1, 3, 5, 7};
    clmr_samplecnn_config_t cfg;
    CHECK(clmr_samplecnn_config_init(&cfg, 3, widths, 0) == 0);
    clmr_model_t *m = NULL, *r = NULL;
    CHECK(clmr__model_alloc(&m, &cfg) == 0);
    if (!m) return;
    for (size_t i = 0; i < clmr_model_param_count(m); i++)
        m->params[i] = 0.5f + (float)i;
    char *err = NULL;
    CHECK(clmr_model_set_name(m, "enc") == 0);
    CHECK(clmr_model_set_tags(m, NULL, 0) == CLMR_EINVAL);
    const char *path = path_in_dir("enc.safetensors");
    CHECK(clmr_model_save(m, path, &err) == 0);
    CHECK(clmr_model_load(&r, path, &err) == 0);
    if (r) {
        check_same_model(m, r, 3);
        CHECK(clmr_model_n_tags(r) == 0);
        CHECK(clmr_model_meta(r, "tags") == NULL);
        CHECK(clmr_model_chunk_samples(r) == 9);
    }
    clmr_model_close(&r);
    clmr_model_close(&m);
    free(err);
}

static void test_save_errors(void)
{
    clmr_model_t *m = NULL;
    char *err = NULL;
    CHECK(clmr_model_load(&m, TINY, &err) == 0);
    if (!m) return;
    int before = count_files();
    int rc = clmr_model_save(m, "/nonexistent-dir/x.safetensors", &err);
    CHECK(rc == CLMR_EIO);
    CHECK(err && strstr(err, "/nonexistent-dir/x.safetensors"));
    /* a directory in the way of the rename: the temp file is cleaned up */
    mkdir(path_in_dir("adir"), 0755);
    rc = clmr_model_save(m, path_in_dir("adir"), &err);
    CHECK(rc == CLMR_EIO);
    CHECK(err && strstr(err, "rename"));
    CHECK(count_files() == before + 1); /* only adir itself */
    rmdir(path_in_dir("adir"));
    clmr_model_close(&m);
    free(err);
}

static void cleanup(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') unlink(path_in_dir(e->d_name));
    if (d) closedir(d);
    rmdir(dir);
}

int main(void)
{
    strcpy(dir, "/tmp/clmr-test-save-XXXXXX");
    if (!mkdtemp(dir)) {
        printf("Bail out! mkdtemp failed\n");
        return 1;
    }
    RUN_TEST(test_roundtrip_tiny);
    RUN_TEST(test_build_small_model);
    RUN_TEST(test_encoder_only_roundtrip);
    RUN_TEST(test_save_errors);
    cleanup();
    return TEST_END();
}
