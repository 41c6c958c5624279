/* bench_model.h - stop-gap model reader for the benchmark (see bench_model.c). */
#ifndef CLMR_BENCH_MODEL_H
#define CLMR_BENCH_MODEL_H

#include "clmr/model.h"

/* Reads a clmrd safetensors model with official key names. Returns 0 or a CLMR_EMODEL_* code.
 * Not a validator: only for files written by bench/make_model.py. */
int bench_model_load(clmr_model_t **out, const char *path);

#endif
