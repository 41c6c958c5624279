/* fuzz_torch_ckpt.c - libFuzzer target: clmr_ckpt_open_memory (zip reader, restricted pickle
 * reader, legacy and zip PyTorch containers, release-zip wrappers) on arbitrary bytes, then every
 * tensor of the top-level dict and of its "state_dict" converted to fp32.
 *
 * DESIGN: checkpoints are the most hostile input clmrd reads (they are pickles, made to run code),
 * so the whole path from bytes to floats is fuzzed: zip directory and inflate bounds, every pickle
 * opcode, memo and stack bounds, persistent ids, strides and storage offsets, dtype conversion.
 * Contract checked: 0 with a root value and a format string, or a checkpoint/NOMEM/IO code with a
 * message and *out NULL; tensor reads either succeed or fail with a message. Replayed by
 * fuzz/replay_main.c in the normal test run.
 */
#include "clmr/error.h"
#include "nn/torch_ckpt.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_all(clmr_ckpt_t *c, const clmr_pk_value_t *d)
{
    if (!d || d->kind != CLMR_PK_DICT) return;
    for (size_t i = 1; i < d->n && i < 2000; i += 2) {
        const clmr_pk_value_t *v = d->items[i];
        if (v->kind != CLMR_PK_TENSOR) continue;
        size_t n = 1;
        for (int k = 0; k < v->t->ndim; k++)
            if (__builtin_mul_overflow(n, (size_t)v->t->shape[k], &n)) n = SIZE_MAX;
        if (n > ((size_t)1 << 20)) continue;
        float *buf = malloc((n ? n : 1) * sizeof(float));
        if (!buf) continue;
        char *err = NULL;
        int rc = clmr_ckpt_read_f32(c, v, buf, n, "tensor", &err);
        if (rc && !err) __builtin_trap();
        if (!rc && err) __builtin_trap();
        free(err);
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    clmr_ckpt_t *c = (clmr_ckpt_t *)1; /* must be overwritten */
    char *err = NULL;
    int rc = clmr_ckpt_open_memory(&c, data, size, "fuzz", &err);
    if (rc != 0) {
        if (!(rc == CLMR_ECHECKPOINT || rc == CLMR_ENOMEM) || c != NULL || !err) __builtin_trap();
    } else {
        if (!c || err || !clmr_ckpt_root(c) || !clmr_ckpt_format(c)) __builtin_trap();
        const char *name = NULL;
        int n = clmr_ckpt_unsafe(c, 0, &name);
        if (n < 0 || (n > 0 && !name)) __builtin_trap();
        const clmr_pk_value_t *root = clmr_ckpt_root(c);
        read_all(c, root);
        read_all(c, clmr_pk_dict_get(root, "state_dict"));
    }
    free(err);
    clmr_ckpt_close(&c);
    return 0;
}
