/* fuzz_safetensors.c - libFuzzer target: clmr_model_load_memory on arbitrary bytes.
 *
 * DESIGN: the loader parses the safetensors JSON header, checks dtypes, shapes, offsets and
 * metadata, and copies tensors into a clmr_model_t; every branch is ours (jansson is not
 * instrumented), so coverage here is meaningful. Contract checked: 0 with a model whose
 * accessors answer sane values, or a model/NOMEM error code with a message and *out NULL.
 * Replayed by fuzz/replay_main.c in the normal test run.
 */
#include "clmr/error.h"
#include "clmr/model.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clmr_model_t *m = (clmr_model_t *)1; /* must be overwritten */
    char *err = NULL;
    int rc = clmr_model_load_memory(&m, data, size, &err);
    if (rc != 0) {
        int model_code = rc <= CLMR_EMODEL_IO && rc >= CLMR_EMODEL_NO_HEAD;
        if (!(model_code || rc == CLMR_ENOMEM) || m != NULL || !err) __builtin_trap();
    } else {
        if (!m || err) __builtin_trap();
        if (clmr_model_n_layers(m) < 3 || clmr_model_chunk_samples(m) <= 0 ||
            clmr_model_embed_dim(m) <= 0 || clmr_model_n_tags(m) < 0)
            __builtin_trap();
        for (int i = 0; i < clmr_model_n_layers(m); i++)
            if (clmr_model_width(m, i) <= 0) __builtin_trap();
        /* touch every string the daemon would serve (/v1/models, tag lists) */
        size_t sum = 0;
        for (int i = 0; i < clmr_model_n_tags(m); i++) {
            const char *t = clmr_model_tag(m, i);
            if (!t) __builtin_trap();
            sum += strlen(t);
        }
        for (int i = 0; i < clmr_model_n_meta(m); i++) {
            const char *v = NULL, *k = clmr_model_meta_at(m, i, &v);
            if (!k || !v) __builtin_trap();
            sum += strlen(k) + strlen(v);
        }
        if (!clmr_model_id(m) || !clmr_model_name(m)) __builtin_trap();
        sum += strlen(clmr_model_id(m)) + strlen(clmr_model_name(m));
        if (sum == (size_t)-1) __builtin_trap(); /* keeps the reads */
    }
    free(err);
    clmr_model_close(&m);
    return 0;
}
