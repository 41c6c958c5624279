/* model_path.c - default model resolution shared by `clmrd tag`, `serve` and `eval`. */
#include "cli/model_path.h"

#include "clmr/error.h"
#include "clmrd_build_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int clmr_cli_resolve_model(const char *explicit_path, char *buf, size_t bufsize)
{
    if (explicit_path && *explicit_path) {
        snprintf(buf, bufsize, "%s", explicit_path);
        return 0;
    }
    const char *env = getenv("CLMRD_MODEL");
    if (env && *env) {
        snprintf(buf, bufsize, "%s", env);
        return 0;
    }
    char src[4096], inst[4096];
    snprintf(src, sizeof src, "%s/models/%s", CLMRD_SOURCE_ROOT, CLMR_DEFAULT_MODEL_FILE);
    snprintf(inst, sizeof inst, "%s/%s", CLMRD_DATADIR, CLMR_DEFAULT_MODEL_FILE);
    if (access(src, R_OK) == 0) {
        snprintf(buf, bufsize, "%s", src);
        return 0;
    }
    if (access(inst, R_OK) == 0) {
        snprintf(buf, bufsize, "%s", inst);
        return 0;
    }
    snprintf(buf, bufsize,
             "no model given and none found (searched $CLMRD_MODEL, %s, %s); pass --model PATH",
             src, inst);
    return CLMR_ENOT_FOUND;
}
