/* precision.h - the arithmetic the trainers run in: fp32, or mixed bf16 (bf16 convolutions,
 * fp32 master weights, BatchNorm statistics and Adam state; train_dnnl.h), and `auto`, which is
 * bf16 where the CPU has native bf16 instructions.
 *
 * DESIGN: "native bf16" is what oneDNN itself will run on: its effective ISA includes
 * avx512_core_bf16 (AVX512_BF16) or avx512_core_amx (AMX). On older CPUs oneDNN would emulate
 * bf16 (slower than fp32) or refuse it, so `auto` falls back to fp32 there and an explicit `bf16`
 * is refused. ONEDNN_MAX_CPU_ISA=AVX512_CORE (oneDNN's own switch) makes this CPU look like one
 * without bf16, which is how the tests exercise the fallback. The detector is the inference
 * library's (clmr_infer_cpu_has_bf16), so training and inference always agree.
 */
#ifndef CLMR_TRAIN_PRECISION_H
#define CLMR_TRAIN_PRECISION_H

typedef enum {
    CLMR_TRAIN_PREC_FP32 = 0, /* zero: the default of zero-initialised parameter structs */
    CLMR_TRAIN_PREC_BF16 = 1,
    CLMR_TRAIN_PREC_AUTO = 2,
} clmr_train_precision_t;

/* "auto", "fp32" or "bf16" -> *out. Returns 0, or CLMR_EINVAL (*out untouched) for anything else,
 * including NULL. */
int clmr_train_precision_parse(const char *s, clmr_train_precision_t *out);

/* "fp32", "bf16" or "auto". */
const char *clmr_train_precision_name(clmr_train_precision_t p);

/* 1 when oneDNN's effective ISA on this CPU has native bf16 (avx512_core_bf16 or AMX), else 0.
 * Thread-safe. */
int clmr_cpu_has_native_bf16(void);

/* The precision a trainer runs in for a requested one: fp32 -> fp32; auto -> bf16 with native
 * bf16, else fp32 and *note (may be NULL) set to a static sentence for the log; bf16 -> bf16 with
 * native bf16, else CLMR_EINVAL with *errmsg saying why and what to use instead. *note is set to
 * NULL when there is nothing to log. Returns 0 or CLMR_EINVAL. */
int clmr_train_precision_resolve(clmr_train_precision_t requested,
                                 clmr_train_precision_t *effective, const char **note,
                                 char **errmsg);

#endif
