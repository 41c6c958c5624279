/* test_emb_cache.c - the embedding cache and the labelled-set embedder on real audio: WAV files
 * written here with libsndfile, decoded by the real decoder, embedded by the committed tiny model.
 * Checks: cache entries round-trip and damaged ones are misses; a second build reads every file
 * from the cache (encoder_runs 0) with bit-identical embeddings; the encoder id ignores the head;
 * track scores from chunk embeddings match clmr_track_analyze's (tolerance 2e-6: the head runs in
 * float in oneDNN there and in double here). */
#include "clmr/audio.h"
#include "clmr/error.h"
#include "clmrd_build_config.h"
#include "harness.h"
#include "nn/model_internal.h"
#include "train/embed_set.h"
#include "train/head_fit.h"

#include <sndfile.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];
static const char *TINY = CLMRD_SOURCE_ROOT "/tests/fixtures/models/tiny.safetensors";

static void write_wav(const char *name, double freq, double seconds)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    SF_INFO info = {.samplerate = 22050, .channels = 1, .format = SF_FORMAT_WAV | SF_FORMAT_FLOAT};
    SNDFILE *f = sf_open(path, SFM_WRITE, &info);
    int n = (int)(seconds * 22050);
    float *x = malloc((size_t)n * sizeof(float));
    for (int i = 0; i < n; i++)
        x[i] = (float)(0.5 * sin(2 * M_PI * freq * i / 22050.0));
    sf_write_float(f, x, n);
    sf_close(f);
    free(x);
}

static void test_cache_file_roundtrip_and_damage(void)
{
    char *p = clmr__emb_cache_path(dir, "0123456789abcdef", "ff00");
    float e[6] = {1, 2, 3, 4, 5, 6}, *got;
    int nc;
    CHECK(clmr__emb_cache_read(&got, &nc, p, 3) == CLMR_ENOT_FOUND);
    CHECK(clmr__emb_cache_write(p, e, 2, 3, NULL) == 0);
    CHECK(clmr__emb_cache_read(&got, &nc, p, 3) == 0 && nc == 2 && memcmp(got, e, sizeof(e)) == 0);
    free(got);
    CHECK(clmr__emb_cache_read(&got, &nc, p, 2) == CLMR_ENOT_FOUND); /* other width */
    CHECK(truncate(p, 20) == 0);                                     /* short file */
    CHECK(clmr__emb_cache_read(&got, &nc, p, 3) == CLMR_ENOT_FOUND && !got);
    e[4] = NAN;
    CHECK(clmr__emb_cache_write(p, e, 2, 3, NULL) == 0);
    CHECK(clmr__emb_cache_read(&got, &nc, p, 3) == CLMR_ENOT_FOUND);
    unlink(p);
    free(p);
}

static void test_build_uses_cache_and_matches_track(void)
{
    clmr_model_t *m = NULL;
    char *err = NULL, *warn = NULL;
    CHECK(clmr_model_load(&m, TINY, &err) == 0);
    if (!m) return;
    write_wav("a.wav", 110, 6.0);  /* 2 chunks */
    write_wav("b.wav", 1760, 1.0); /* shorter than a chunk: padded to 1 */
    char lp[128], cache[128];
    snprintf(lp, sizeof(lp), "%s/l.jsonl", dir);
    snprintf(cache, sizeof(cache), "%s/cache", dir);
    FILE *f = fopen(lp, "w");
    fputs("{\"path\": \"a.wav\", \"tags\": [\"slow\"]}\n{\"path\": \"b.wav\", \"tags\": []}\n", f);
    fclose(f);
    clmr_labels_t l;
    CHECK(clmr_labels_load(&l, lp, NULL, 0, &err) == 0);
    clmr_embed_set_t s1, s2;
    CHECK(clmr_embed_set_build(&s1, m, &l, cache, 1, NULL, NULL, &warn, &err) == 0);
    CHECK(s1.encoder_runs == 2 && s1.cache_hits == 0 && !warn);
    CHECK(s1.n_chunks[0] == 2 && s1.n_chunks[1] == 1 && s1.embed_dim == clmr_model_embed_dim(m));
    CHECK(clmr_embed_set_build(&s2, m, &l, cache, 1, NULL, NULL, &warn, &err) == 0);
    CHECK(s2.encoder_runs == 0 && s2.cache_hits == 2);
    for (int i = 0; i < 2; i++)
        CHECK(s2.n_chunks[i] == s1.n_chunks[i] &&
              memcmp(s1.emb[i], s2.emb[i], (size_t)s1.n_chunks[i] * s1.embed_dim * 4) == 0);
    /* track scores from the embeddings = clmr_track_analyze's */
    clmr_audio_t a;
    clmr_infer_t *ctx = NULL;
    clmr_infer_params_t ip = clmr_infer_default_params();
    ip.threads = 1;
    CHECK(clmr_audio_decode_file(&a, l.paths[0], NULL, &err) == 0);
    CHECK(clmr_infer_open(&ctx, m, &ip, &err) == 0);
    clmr_track_t tr;
    CHECK(clmr_track_analyze(&tr, ctx, a.samples, a.n_samples) == 0);
    double sc[64];
    int T = clmr_model_n_tags(m);
    clmr_embed_track_scores(sc, m, s1.emb[0], s1.n_chunks[0]);
    double worst = 0;
    for (int t = 0; t < T; t++)
        worst = fmax(worst, fabs(sc[t] - tr.scores[t]));
    CHECKF(worst < 2e-6, "max |score diff| %g", worst);
    CHECK(t_max_rel_diff(tr.chunk_emb, s1.emb[0], (size_t)2 * s1.embed_dim) == 0);
    clmr_track_free(&tr);
    clmr_infer_close(&ctx);
    clmr_audio_free(&a);
    /* a missing file names itself and its labels line */
    f = fopen(lp, "a");
    fputs("{\"path\": \"missing.wav\", \"tags\": []}\n", f);
    fclose(f);
    clmr_labels_t l2;
    clmr_embed_set_t s3;
    CHECK(clmr_labels_load(&l2, lp, NULL, 0, &err) == 0);
    CHECK(clmr_embed_set_build(&s3, m, &l2, cache, 1, NULL, NULL, &warn, &err) == CLMR_EIO);
    CHECKF(err && strstr(err, "missing.wav (labels line 3)"), "%s", err ? err : "(null)");
    CHECK(s3.emb == NULL);
    clmr_labels_free(&l2);
    clmr_embed_set_free(&s1);
    clmr_embed_set_free(&s2);
    clmr_labels_free(&l);
    free(err);
    free(warn);
    clmr_model_close(&m);
}

static void test_encoder_id_ignores_head(void)
{
    clmr_model_t *m = NULL, *h = NULL;
    CHECK(clmr_model_load(&m, TINY, NULL) == 0);
    if (!m) return;
    int D = clmr_model_embed_dim(m);
    float *w = calloc((size_t)2 * D, sizeof(float)), b[2] = {1, 2};
    const char *tags[] = {"x", "y"};
    CHECK(clmr_head_model_build(&h, m, tags, 2, w, b) == 0);
    char a[17], c[17];
    CHECK(clmr_embed_encoder_id(a, m) == 0 && clmr_embed_encoder_id(c, h) == 0);
    CHECK(strlen(a) == 16 && strcmp(a, c) == 0);
    h->w.bn_mean[0][0] += 1e-3f; /* any encoder change is a different id */
    CHECK(clmr_embed_encoder_id(c, h) == 0 && strcmp(a, c) != 0);
    free(w);
    clmr_model_close(&h);
    clmr_model_close(&m);
}

int main(void)
{
    snprintf(dir, sizeof(dir), "/tmp/clmr-embcache-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    RUN_TEST(test_cache_file_roundtrip_and_damage);
    RUN_TEST(test_build_uses_cache_and_matches_track);
    RUN_TEST(test_encoder_id_ignores_head);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("# could not remove %s\n", dir);
    return TEST_END();
}
