/* config.h - the daemon's configuration: one table drives defaults, the config file, the
 * environment, the command-line flags, `clmrd serve --help` and GET /v1/config.
 *
 * DESIGN: every key is a row of clmr_config_keys[] (name, type, default, bounds, env var, flag,
 * help, offset into clmr_config_t). Sources are applied in increasing precedence: defaults <
 * config file (`key = value` lines, --config PATH or CLMRD_CONFIG) < environment (CLMRD_<KEY>) <
 * flags (--key VALUE or --key=VALUE). Every value is validated when it is set, and the error
 * message names the key, where the value came from and the accepted range, so a bad deployment
 * stops at start-up with a sentence an operator can act on.
 */
#ifndef CLMR_CONFIG_H
#define CLMR_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define CLMR_CONFIG_PATH_MAX 1024

typedef struct {
    char listen[256]; /* HOST:PORT as given */
    char listen_host[200];
    int listen_port;
    char data_dir[CLMR_CONFIG_PATH_MAX];
    char model[CLMR_CONFIG_PATH_MAX]; /* empty = default model resolution */
    int workers;
    int inference_threads;
    char precision[8]; /* auto|fp32|bf16 (clmr_precision_parse) */
    int queue_depth;
    long long max_upload_bytes;
    long long max_buffered_bytes;
    double max_duration_s;
    double request_timeout_s;
    double shutdown_grace_s;
    int connection_timeout_s;
    int connection_limit;
    long long connection_memory_limit;
    int retry_after_s;
    char trusted_proxies[1024]; /* comma-separated addresses/prefixes, validated; empty = none */
    char cors_origins[1024];    /* comma-separated origins or "*"; empty = CORS off */
    char admin_token_file[CLMR_CONFIG_PATH_MAX];
    char admin_token[256]; /* secret; admin_token_file wins when both are set */
    int require_read_key;  /* 1: read routes need a key too (http/auth.h) */
    long long max_pool_bytes;
    long long tag_cache_max_rows;
    long long tag_cache_max_age_s;
    int finetune_threads;
    int finetune_min_tracks;
    int finetune_auto_activate;
    double gate_max_tag_drift, gate_min_top5_overlap, gate_min_retrieval_ratio;
    char finetune_eval_labels[CLMR_CONFIG_PATH_MAX];
    double gate_max_auc_drop;
    char train_precision[8]; /* auto|fp32|bf16, fine-tuning jobs (train/precision.h) */
    char log_format[8];
    char log_level[8];
    char index_backend[8];                  /* exact|auto|hnsw|ivfpq (clmr_index_backend_parse) */
    char config_file[CLMR_CONFIG_PATH_MAX]; /* the file that was read, or empty */
} clmr_config_t;

typedef enum {
    CLMR_CFG_STRING,
    CLMR_CFG_PATH,
    CLMR_CFG_INT,
    CLMR_CFG_BYTES, /* integer with optional K/M/G (binary) suffix */
    CLMR_CFG_DOUBLE,
    CLMR_CFG_ENUM,    /* one of `choices` (|-separated) */
    CLMR_CFG_LISTEN,  /* HOST:PORT */
    CLMR_CFG_NETLIST, /* comma-separated IPv4/IPv6 addresses or CIDR prefixes (util/ipnet.h) */
} clmr_config_type_t;

typedef struct {
    const char *name; /* file key and flag name: "max-upload-bytes" -> --max-upload-bytes */
    const char *env;  /* environment variable */
    clmr_config_type_t type;
    const char *def;     /* default, in the same syntax as a user value */
    double min, max;     /* bounds for numeric types */
    const char *choices; /* for CLMR_CFG_ENUM */
    size_t offset;       /* field in clmr_config_t */
    size_t size;         /* field size (strings) */
    int secret;          /* never shown by GET /v1/config */
    const char *help;
} clmr_config_key_t;

/* The table, terminated by a row with name == NULL. */
extern const clmr_config_key_t clmr_config_keys[];

/* Fills *cfg with the defaults of the table. Cannot fail. */
void clmr_config_defaults(clmr_config_t *cfg);

/* Sets one key from text. `source` (e.g. "--workers", "CLMRD_WORKERS", "clmrd.conf:3") is used in
 * the message. Returns 0, or CLMR_EINVAL (unknown key or bad value) with *errmsg naming the key
 * and the accepted range. */
int clmr_config_set(clmr_config_t *cfg, const char *key, const char *value, const char *source,
                    char **errmsg);

/* Reads `key = value` lines ('#' comments, blank lines allowed). Returns 0, CLMR_EIO or
 * CLMR_EINVAL with *errmsg naming the file, line and key. */
int clmr_config_load_file(clmr_config_t *cfg, const char *path, char **errmsg);

/* Applies every CLMRD_* variable of the table that is set in the environment. */
int clmr_config_load_env(clmr_config_t *cfg, char **errmsg);

/* The whole precedence chain: defaults, then the file named by --config (or CLMRD_CONFIG), then
 * the environment, then the flags in argv[1..argc). *help_requested is set when --help/-h is seen.
 * Returns 0 or CLMR_EINVAL/CLMR_EIO with *errmsg. Not thread-safe (reads the environment). */
int clmr_config_parse(clmr_config_t *cfg, int argc, char **argv, int *help_requested,
                      char **errmsg);

/* Prints the option list (flag, env var, default, bounds, help) generated from the table. */
void clmr_config_print_help(FILE *f);

/* Writes the current value of key k as text into buf. */
void clmr_config_format_value(const clmr_config_t *cfg, const clmr_config_key_t *k, char *buf,
                              size_t cap);

#endif
