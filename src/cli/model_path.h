/* model_path.h - where the default model is found when no --model is given. */
#ifndef CLMR_CLI_MODEL_PATH_H
#define CLMR_CLI_MODEL_PATH_H

#include <stddef.h>

#define CLMR_DEFAULT_MODEL_FILE "clmr-default.safetensors"

/* Resolves the model path: explicit (if not NULL) wins; then $CLMRD_MODEL; then
 * models/clmr-default.safetensors in the source tree this binary was built from; then the
 * installed data directory. Writes the chosen path to buf and returns 0, or returns CLMR_ENOT_FOUND
 * with buf listing the places searched (for the error message). */
int clmr_cli_resolve_model(const char *explicit_path, char *buf, size_t bufsize);

#endif
