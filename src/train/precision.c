/* precision.c - training precision names and the native-bf16 check (see precision.h). */
#include "train/precision.h"

#include "clmr/error.h"
#include "clmr/model.h"

#include <string.h>

int clmr_train_precision_parse(const char *s, clmr_train_precision_t *out)
{
    if (!s) return CLMR_EINVAL;
    if (strcmp(s, "fp32") == 0)
        *out = CLMR_TRAIN_PREC_FP32;
    else if (strcmp(s, "bf16") == 0)
        *out = CLMR_TRAIN_PREC_BF16;
    else if (strcmp(s, "auto") == 0)
        *out = CLMR_TRAIN_PREC_AUTO;
    else
        return CLMR_EINVAL;
    return 0;
}

const char *clmr_train_precision_name(clmr_train_precision_t p)
{
    return p == CLMR_TRAIN_PREC_BF16 ? "bf16" : p == CLMR_TRAIN_PREC_AUTO ? "auto" : "fp32";
}

int clmr_cpu_has_native_bf16(void)
{
    return clmr_infer_cpu_has_bf16(); /* one detector for inference and training */
}

int clmr_train_precision_resolve(clmr_train_precision_t requested,
                                 clmr_train_precision_t *effective, const char **note,
                                 char **errmsg)
{
    if (note) *note = NULL;
    if (requested == CLMR_TRAIN_PREC_FP32) {
        *effective = CLMR_TRAIN_PREC_FP32;
        return 0;
    }
    if (clmr_cpu_has_native_bf16()) {
        *effective = CLMR_TRAIN_PREC_BF16;
        return 0;
    }
    if (requested == CLMR_TRAIN_PREC_AUTO) {
        *effective = CLMR_TRAIN_PREC_FP32;
        if (note)
            *note = "training precision auto: this CPU has no native bf16 instructions "
                    "(AVX512_BF16 or AMX), training in fp32";
        return 0;
    }
    return clmr_set_err(errmsg, CLMR_EINVAL,
                        "training precision bf16 needs a CPU with native bf16 instructions "
                        "(AVX512_BF16 or AMX) and this one has none; use fp32 or auto");
}
