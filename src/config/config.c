/* config.c - the configuration table and its parsers (see config.h).
 *
 * DESIGN: values are parsed from text in one function per type, so the file, the environment and
 * the flags share exactly the same validation. Numbers are parsed with strtoll/strtod and must use
 * the whole string; bounds come from the table and are printed in every error message.
 */
#include "config/config.h"

#include "clmr/error.h"
#include "util/ipnet.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define OFF(f) offsetof(clmr_config_t, f)
#define SZ(f) sizeof(((clmr_config_t *)0)->f)

const clmr_config_key_t clmr_config_keys[] = {
    {"listen", "CLMRD_LISTEN", CLMR_CFG_LISTEN, "127.0.0.1:8080", 0, 0, NULL, OFF(listen),
     SZ(listen), 0, "address to listen on, HOST:PORT ([V6ADDR]:PORT for IPv6)"},
    {"data-dir", "CLMRD_DATA_DIR", CLMR_CFG_PATH, "./data", 0, 0, NULL, OFF(data_dir), SZ(data_dir),
     0, "directory for the SQLite catalogue and the FLAC audio pool"},
    {"model", "CLMRD_MODEL", CLMR_CFG_PATH, "", 0, 0, NULL, OFF(model), SZ(model), 0,
     "model file (.safetensors); empty = models/clmr-default.safetensors in the source tree or "
     "the installed data dir"},
    {"workers", "CLMRD_WORKERS", CLMR_CFG_INT, "2", 1, 64, NULL, OFF(workers), 0, 0,
     "decode/inference worker threads (each owns one inference context)"},
    {"inference-threads", "CLMRD_INFERENCE_THREADS", CLMR_CFG_INT, "1", 0, 256, NULL,
     OFF(inference_threads), 0, 0, "OpenMP threads per inference context (0 = all cores)"},
    {"precision", "CLMRD_PRECISION", CLMR_CFG_ENUM, "auto", 0, 0, "auto|fp32|bf16", OFF(precision),
     SZ(precision), 0,
     "inference arithmetic: bf16 (AVX512-BF16/AMX, about 2x faster, tag scores within 0.01 of "
     "fp32), fp32, or auto = bf16 where the CPU has native bf16, else fp32"},
    {"queue-depth", "CLMRD_QUEUE_DEPTH", CLMR_CFG_INT, "16", 1, 100000, NULL, OFF(queue_depth), 0,
     0, "requests waiting for a worker before new ones get 503 + Retry-After"},
    {"max-upload-bytes", "CLMRD_MAX_UPLOAD_BYTES", CLMR_CFG_BYTES, "100M", 1024, 4294967296.0, NULL,
     OFF(max_upload_bytes), 0, 0, "largest accepted request body (413 above); K/M/G suffixes"},
    {"max-buffered-bytes", "CLMRD_MAX_BUFFERED_BYTES", CLMR_CFG_BYTES, "1G", 1048576, 68719476736.0,
     NULL, OFF(max_buffered_bytes), 0, 0,
     "request body bytes held in memory across all connections (503 + Retry-After above)"},
    {"max-duration-s", "CLMRD_MAX_DURATION_S", CLMR_CFG_DOUBLE, "900", 1, 86400, NULL,
     OFF(max_duration_s), 0, 0, "longest accepted audio, counted from decoded samples"},
    {"request-timeout-s", "CLMRD_REQUEST_TIMEOUT_S", CLMR_CFG_DOUBLE, "120", 0.5, 3600, NULL,
     OFF(request_timeout_s), 0, 0, "absolute deadline per request (upload + queue + work)"},
    {"shutdown-grace-s", "CLMRD_SHUTDOWN_GRACE_S", CLMR_CFG_DOUBLE, "25", 0, 3600, NULL,
     OFF(shutdown_grace_s), 0, 0,
     "on SIGTERM, how long in-flight requests may take to finish before the rest are abandoned "
     "(keep it under the grace period of systemd/compose/Kubernetes minus ~15 s for a "
     "fine-tuning job's checkpoint)"},
    {"connection-timeout-s", "CLMRD_CONNECTION_TIMEOUT_S", CLMR_CFG_INT, "30", 1, 3600, NULL,
     OFF(connection_timeout_s), 0, 0, "idle connection timeout"},
    {"connection-limit", "CLMRD_CONNECTION_LIMIT", CLMR_CFG_INT, "256", 1, 65000, NULL,
     OFF(connection_limit), 0, 0, "simultaneous connections"},
    {"connection-memory-limit", "CLMRD_CONNECTION_MEMORY_LIMIT", CLMR_CFG_BYTES, "64K", 16384,
     1048576, NULL, OFF(connection_memory_limit), 0, 0,
     "libmicrohttpd per-connection memory (headers and read buffer)"},
    {"retry-after-s", "CLMRD_RETRY_AFTER_S", CLMR_CFG_INT, "2", 1, 3600, NULL, OFF(retry_after_s),
     0, 0, "Retry-After value sent with 503 when the queue is full"},
    {"trusted-proxies", "CLMRD_TRUSTED_PROXIES", CLMR_CFG_NETLIST, "", 0, 0, NULL,
     OFF(trusted_proxies), SZ(trusted_proxies), 0,
     "reverse proxies whose X-Forwarded-For names the client (comma-separated addresses or CIDR "
     "prefixes, e.g. 127.0.0.1,::1); empty = trust none and log the TCP peer"},
    {"cors-origins", "CLMRD_CORS_ORIGINS", CLMR_CFG_STRING, "", 0, 0, NULL, OFF(cors_origins),
     SZ(cors_origins), 0,
     "browser origins allowed to call the API (comma-separated scheme://host[:port], or *); "
     "empty = no cross-origin access"},
    {"admin-token-file", "CLMRD_ADMIN_TOKEN_FILE", CLMR_CFG_PATH, "", 0, 0, NULL,
     OFF(admin_token_file), SZ(admin_token_file), 1,
     "file holding the bearer token for admin endpoints (empty = admin endpoints disabled)"},
    {"admin-token", "CLMRD_ADMIN_TOKEN", CLMR_CFG_STRING, "", 0, 0, NULL, OFF(admin_token),
     SZ(admin_token), 1,
     "bearer token for admin endpoints (prefer the environment or admin-token-file: a flag is "
     "visible in the process list); used when admin-token-file is empty"},
    {"require-read-key", "CLMRD_REQUIRE_READ_KEY", CLMR_CFG_INT, "0", 0, 1, NULL,
     OFF(require_read_key), 0, 0,
     "1: tagging, search and listing need an API key with read scope too (writes always need a "
     "write key once any key or admin token exists; see docs/api.md)"},
    {"max-pool-bytes", "CLMRD_MAX_POOL_BYTES", CLMR_CFG_BYTES, "100G", 0, 1125899906842624.0, NULL,
     OFF(max_pool_bytes), 0, 0,
     "budget for the FLAC audio pool of catalogued tracks; ingest answers 507 beyond it (0 = no "
     "limit)"},
    {"tag-cache-max-rows", "CLMRD_TAG_CACHE_MAX_ROWS", CLMR_CFG_BYTES, "100000", 0, 1e12, NULL,
     OFF(tag_cache_max_rows), 0, 0,
     "results kept in the tag cache; the oldest are evicted beyond it (0 = no limit)"},
    {"tag-cache-max-age-s", "CLMRD_TAG_CACHE_MAX_AGE_S", CLMR_CFG_BYTES, "2592000", 0, 1e10, NULL,
     OFF(tag_cache_max_age_s), 0, 0,
     "age after which a cached tag result is evicted and recomputed (0 = no limit)"},
    {"finetune-threads", "CLMRD_FINETUNE_THREADS", CLMR_CFG_INT, "1", 1, 256, NULL,
     OFF(finetune_threads), 0, 0,
     "OpenMP threads of a background fine-tuning job (the default 1 leaves the other cores to "
     "the request path)"},
    {"finetune-min-tracks", "CLMRD_FINETUNE_MIN_TRACKS", CLMR_CFG_INT, "8", 3, 1000000, NULL,
     OFF(finetune_min_tracks), 0, 0,
     "pool tracks a fine-tuning job needs (a quarter, at least 1, is held out for the gate)"},
    {"finetune-auto-activate", "CLMRD_FINETUNE_AUTO_ACTIVATE", CLMR_CFG_INT, "0", 0, 1, NULL,
     OFF(finetune_auto_activate), 0, 0,
     "1: a fine-tuned model that passes the evaluation gate becomes active at once"},
    {"gate-max-tag-drift", "CLMRD_GATE_MAX_TAG_DRIFT", CLMR_CFG_DOUBLE, "0.05", 0, 1, NULL,
     OFF(gate_max_tag_drift), 0, 0,
     "gate: largest mean |p_new - p_parent| of tag probabilities on held-out tracks"},
    {"gate-min-top5-overlap", "CLMRD_GATE_MIN_TOP5_OVERLAP", CLMR_CFG_DOUBLE, "0.6", 0, 1, NULL,
     OFF(gate_min_top5_overlap), 0, 0,
     "gate: smallest mean overlap of the top-5 tags with the parent's on held-out tracks"},
    {"gate-min-retrieval-ratio", "CLMRD_GATE_MIN_RETRIEVAL_RATIO", CLMR_CFG_DOUBLE, "0.9", 0, 10,
     NULL, OFF(gate_min_retrieval_ratio), 0, 0,
     "gate: smallest ratio of the new model's view-retrieval top-1 accuracy to the parent's"},
    {"finetune-eval-labels", "CLMRD_FINETUNE_EVAL_LABELS", CLMR_CFG_PATH, "", 0, 0, NULL,
     OFF(finetune_eval_labels), SZ(finetune_eval_labels), 0,
     "labelled evaluation set (JSON lines {\"path\",\"tags\"}, see docs/evaluation.md) for the "
     "fine-tuning gate's ROC-AUC / PR-AUC; empty = none"},
    {"gate-max-auc-drop", "CLMRD_GATE_MAX_AUC_DROP", CLMR_CFG_DOUBLE, "0.01", 0, 1, NULL,
     OFF(gate_max_auc_drop), 0, 0,
     "gate (with finetune-eval-labels): largest drop of macro ROC-AUC below the parent's"},
    {"train-precision", "CLMRD_TRAIN_PRECISION", CLMR_CFG_ENUM, "auto", 0, 0, "auto|fp32|bf16",
     OFF(train_precision), SZ(train_precision), 0,
     "arithmetic of fine-tuning jobs: bf16 = mixed precision (bf16 convolutions, fp32 weights, "
     "BatchNorm statistics and Adam); auto = bf16 where the CPU has native bf16 (AVX512_BF16 or "
     "AMX), else fp32 (logged at start); bf16 on a CPU without it is a start-up error"},
    {"log-format", "CLMRD_LOG_FORMAT", CLMR_CFG_ENUM, "text", 0, 0, "text|json", OFF(log_format),
     SZ(log_format), 0, "log line format"},
    {"log-level", "CLMRD_LOG_LEVEL", CLMR_CFG_ENUM, "info", 0, 0, "debug|info|warn|error",
     OFF(log_level), SZ(log_level), 0, "lowest level written"},
    {"index", "CLMRD_INDEX", CLMR_CFG_ENUM, "exact", 0, 0, "exact|auto|hnsw|ivfpq",
     OFF(index_backend), SZ(index_backend), 0,
     "similarity index: exact scan, auto (exact below 100000 tracks, then HNSW, IVF-PQ from "
     "2000000), or always the approximate hnsw / ivfpq (FAISS; built in the background; see "
     "docs/scaling.md)"},
    {NULL, NULL, 0, NULL, 0, 0, NULL, 0, 0, 0, NULL},
};

static const clmr_config_key_t *find_key(const char *name, size_t len)
{
    for (const clmr_config_key_t *k = clmr_config_keys; k->name; k++)
        if (strlen(k->name) == len && strncmp(k->name, name, len) == 0) return k;
    return NULL;
}

static void range_text(const clmr_config_key_t *k, char *buf, size_t cap)
{
    switch (k->type) {
    case CLMR_CFG_INT:
    case CLMR_CFG_BYTES:
        snprintf(buf, cap, "an integer from %.0f to %.0f", k->min, k->max);
        break;
    case CLMR_CFG_DOUBLE:
        snprintf(buf, cap, "a number from %g to %g", k->min, k->max);
        break;
    case CLMR_CFG_ENUM:
        snprintf(buf, cap, "one of %s", k->choices);
        break;
    case CLMR_CFG_LISTEN:
        snprintf(buf, cap, "HOST:PORT with PORT from 1 to 65535");
        break;
    case CLMR_CFG_NETLIST:
        snprintf(buf, cap,
                 "comma-separated IPv4/IPv6 addresses or CIDR prefixes, at most %zu bytes",
                 k->size - 1);
        break;
    default:
        snprintf(buf, cap, "a non-empty path shorter than %zu bytes", k->size);
    }
}

static int bad(char **errmsg, const clmr_config_key_t *k, const char *value, const char *source)
{
    char range[128];
    range_text(k, range, sizeof range);
    /* A secret is never echoed: the message goes to the terminal, logs and CI output. */
    return clmr_set_err(errmsg, CLMR_EINVAL,
                        "configuration key '%s' (from %s): '%s' is invalid; expected %s", k->name,
                        source, k->secret ? "(hidden)" : value, range);
}

static int parse_listen(clmr_config_t *cfg, const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v) return -1;
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port < 1 || port > 65535) return -1;
    const char *h = v;
    size_t hl = (size_t)(colon - v);
    if (h[0] == '[') { /* [v6]:port */
        if (hl < 3 || h[hl - 1] != ']') return -1;
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof cfg->listen_host) return -1;
    for (size_t i = 0; i < hl; i++)
        if (!(isalnum((unsigned char)h[i]) || h[i] == '.' || h[i] == ':' || h[i] == '-')) return -1;
    memcpy(cfg->listen_host, h, hl);
    cfg->listen_host[hl] = 0;
    cfg->listen_port = (int)port;
    return 0;
}

static int parse_bytes(const char *v, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || x < 0) return -1;
    long long mul = 1;
    if (*end) {
        switch (toupper((unsigned char)*end)) {
        case 'K':
            mul = 1LL << 10;
            break;
        case 'M':
            mul = 1LL << 20;
            break;
        case 'G':
            mul = 1LL << 30;
            break;
        default:
            return -1;
        }
        end++;
        if (toupper((unsigned char)*end) == 'I') end++; /* KiB, MiB */
        if (toupper((unsigned char)*end) == 'B') end++;
        if (*end) return -1;
    }
    if (x > INT64_MAX / mul) return -1;
    *out = x * mul;
    return 0;
}

int clmr_config_set(clmr_config_t *cfg, const char *key, const char *value, const char *source,
                    char **errmsg)
{
    const clmr_config_key_t *k = find_key(key, strlen(key));
    if (!k)
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "unknown configuration key '%s' (from %s); see 'clmrd serve --help'",
                            key, source);
    if (!value) return bad(errmsg, k, "", source);
    char *field = (char *)cfg + k->offset;
    char *end;
    switch (k->type) {
    case CLMR_CFG_STRING:
    case CLMR_CFG_PATH: {
        size_t n = strlen(value);
        if (n >= k->size) return bad(errmsg, k, value, source);
        memcpy(field, value, n + 1);
        return 0;
    }
    case CLMR_CFG_INT: {
        errno = 0;
        long long x = strtoll(value, &end, 10);
        if (errno || end == value || *end || x < k->min || x > k->max)
            return bad(errmsg, k, value, source);
        *(int *)field = (int)x;
        return 0;
    }
    case CLMR_CFG_BYTES: {
        long long x;
        if (parse_bytes(value, &x) || x < k->min || x > k->max)
            return bad(errmsg, k, value, source);
        *(long long *)field = x;
        return 0;
    }
    case CLMR_CFG_DOUBLE: {
        errno = 0;
        double x = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(x) || x < k->min || x > k->max)
            return bad(errmsg, k, value, source);
        *(double *)field = x;
        return 0;
    }
    case CLMR_CFG_ENUM: {
        size_t n = strlen(value);
        for (const char *c = k->choices; *c;) {
            const char *bar = strchr(c, '|');
            size_t cl = bar ? (size_t)(bar - c) : strlen(c);
            if (cl == n && strncmp(c, value, n) == 0 && n < k->size) {
                memcpy(field, value, n + 1);
                return 0;
            }
            c += cl + (bar ? 1 : 0);
        }
        return bad(errmsg, k, value, source);
    }
    case CLMR_CFG_LISTEN: {
        size_t n = strlen(value);
        if (n >= k->size || parse_listen(cfg, value)) return bad(errmsg, k, value, source);
        memcpy(field, value, n + 1);
        return 0;
    }
    case CLMR_CFG_NETLIST: {
        size_t n = strlen(value);
        if (n >= k->size) return bad(errmsg, k, "(too long)", source);
        clmr_ipnet_list_t list;
        char *why = NULL;
        if (clmr_ipnet_list_parse(&list, value, errmsg ? &why : NULL)) {
            int rc = clmr_set_err(errmsg, CLMR_EINVAL, "configuration key '%s' (from %s): %s",
                                  k->name, source, why ? why : "invalid list");
            free(why);
            return rc;
        }
        memcpy(field, value, n + 1);
        return 0;
    }
    }
    return bad(errmsg, k, value, source);
}

void clmr_config_defaults(clmr_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (const clmr_config_key_t *k = clmr_config_keys; k->name; k++) {
        int rc = clmr_config_set(cfg, k->name, k->def, "defaults", NULL);
        (void)rc; /* the table's defaults are checked by tests/http/test_config.c */
    }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = 0;
    return s;
}

int clmr_config_load_file(clmr_config_t *cfg, const char *path, char **errmsg)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return clmr_set_err(errmsg, CLMR_EIO, "cannot read config file '%s': %s", path,
                            strerror(errno));
    char line[4096];
    int lineno = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            rc = clmr_set_err(errmsg, CLMR_EINVAL, "%s:%d: line too long", path, lineno);
            break;
        }
        char *s = trim(line);
        if (!*s || *s == '#') continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = clmr_set_err(errmsg, CLMR_EINVAL, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        size_t vl = strlen(val); /* optional double quotes around the value */
        if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
            val[vl - 1] = 0;
            val++;
        }
        char src[CLMR_CONFIG_PATH_MAX + 16];
        snprintf(src, sizeof src, "%s:%d", path, lineno);
        if ((rc = clmr_config_set(cfg, key, val, src, errmsg))) break;
    }
    fclose(f);
    if (!rc) snprintf(cfg->config_file, sizeof cfg->config_file, "%s", path);
    return rc;
}

int clmr_config_load_env(clmr_config_t *cfg, char **errmsg)
{
    for (const clmr_config_key_t *k = clmr_config_keys; k->name; k++) {
        const char *v = getenv(k->env);
        if (!v) continue;
        int rc = clmr_config_set(cfg, k->name, v, k->env, errmsg);
        if (rc) return rc;
    }
    return 0;
}

int clmr_config_parse(clmr_config_t *cfg, int argc, char **argv, int *help_requested, char **errmsg)
{
    clmr_config_defaults(cfg);
    *help_requested = 0;
    /* The config file comes first in precedence order, so find --config before anything else. */
    const char *file = getenv("CLMRD_CONFIG");
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return clmr_set_err(errmsg, CLMR_EINVAL,
                                    "--config: needs a value (see 'clmrd serve --help')");
            file = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            *help_requested = 1;
            return 0;
        }
    }
    int rc;
    if (file && *file && (rc = clmr_config_load_file(cfg, file, errmsg))) return rc;
    if ((rc = clmr_config_load_env(cfg, errmsg))) return rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0)
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "unexpected argument '%s'; options look like --key VALUE", a);
        a += 2;
        const char *eq = strchr(a, '=');
        size_t klen = eq ? (size_t)(eq - a) : strlen(a);
        const char *val;
        if (eq) {
            val = eq + 1;
        } else {
            if (i + 1 >= argc)
                return clmr_set_err(errmsg, CLMR_EINVAL,
                                    "--%s: needs a value (see 'clmrd serve --help')", a);
            val = argv[++i];
        }
        if (klen == 6 && strncmp(a, "config", 6) == 0) continue;
        char key[64], src[80];
        if (klen >= sizeof key || !find_key(a, klen))
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "--%.*s: unknown option (see 'clmrd serve --help')",
                                (int)(klen < 60 ? klen : 60), a);
        memcpy(key, a, klen);
        key[klen] = 0;
        snprintf(src, sizeof src, "--%s", key);
        if ((rc = clmr_config_set(cfg, key, val, src, errmsg))) return rc;
    }
    if (cfg->max_buffered_bytes < cfg->max_upload_bytes)
        return clmr_set_err(errmsg, CLMR_EINVAL,
                            "configuration key 'max-buffered-bytes' (%lld) must be at least "
                            "'max-upload-bytes' (%lld), or no upload of the maximum size could be "
                            "received",
                            cfg->max_buffered_bytes, cfg->max_upload_bytes);
    return 0;
}

void clmr_config_format_value(const clmr_config_t *cfg, const clmr_config_key_t *k, char *buf,
                              size_t cap)
{
    const char *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case CLMR_CFG_INT:
        snprintf(buf, cap, "%d", *(const int *)field);
        break;
    case CLMR_CFG_BYTES:
        snprintf(buf, cap, "%lld", *(const long long *)field);
        break;
    case CLMR_CFG_DOUBLE:
        snprintf(buf, cap, "%g", *(const double *)field);
        break;
    default:
        snprintf(buf, cap, "%s", field);
    }
}

void clmr_config_print_help(FILE *f)
{
    fprintf(f,
            "Usage: clmrd serve [--config FILE] [--KEY VALUE]...\n\n"
            "Run the HTTP tagging service. Precedence: defaults < config file (--config FILE or\n"
            "CLMRD_CONFIG; 'key = value' lines) < environment < flags.\n\nOptions:\n");
    for (const clmr_config_key_t *k = clmr_config_keys; k->name; k++) {
        char range[128] = "";
        if (k->type == CLMR_CFG_INT || k->type == CLMR_CFG_BYTES || k->type == CLMR_CFG_DOUBLE ||
            k->type == CLMR_CFG_ENUM)
            range_text(k, range, sizeof range);
        fprintf(f, "  --%-24s %s\n  %-26s   env %s; default '%s'%s%s\n", k->name, k->help, "",
                k->env, k->def, *range ? "; " : "", range);
    }
    fprintf(f, "  --%-24s %s\n", "config FILE", "read a 'key = value' configuration file");
    fprintf(f, "\nExit status: 0 after a clean stop (SIGTERM/SIGINT), 1 when it cannot start (or\n"
               "requests were abandoned at the stop), 2 on a bad option or configuration value.\n");
}
