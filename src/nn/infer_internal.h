/* infer_internal.h - private cross-file access to clmr_infer_t (defined in infer_dnnl.c). */
#ifndef CLMR_NN_INFER_INTERNAL_H
#define CLMR_NN_INFER_INTERNAL_H

#include "clmr/model.h"

/* The model a context was opened on (borrowed, never NULL for a valid context). Thread-safe. */
const clmr_model_t *clmr__infer_model(const clmr_infer_t *ctx);

#endif
