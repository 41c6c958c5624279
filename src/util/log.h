/* log.h - leveled logging for the daemon: text or JSON lines on stderr, request id on every line.
 *
 * DESIGN: the level is one atomic int read by the macros *before* any argument is formatted, so a
 * disabled debug line costs one load and a branch. Every line is formatted into a local buffer and
 * written with a single fwrite under stdio's lock, so lines from worker threads never interleave.
 * Callers must never pass secrets (Authorization headers, tokens, full query strings) to these
 * macros; the HTTP layer logs only the method, the path and the request id.
 */
#ifndef CLMR_UTIL_LOG_H
#define CLMR_UTIL_LOG_H

#include <stdatomic.h>

typedef enum {
    CLMR_LOG_LEVEL_DEBUG = 0,
    CLMR_LOG_LEVEL_INFO = 1,
    CLMR_LOG_LEVEL_WARN = 2,
    CLMR_LOG_LEVEL_ERROR = 3,
    CLMR_LOG_LEVEL_OFF = 4,
} clmr_log_level_t;

typedef enum { CLMR_LOG_TEXT = 0, CLMR_LOG_JSON = 1 } clmr_log_format_t;

/* Current threshold; read by the macros. Use clmr_log_configure to change it. */
extern atomic_int clmr__log_level;

/* Sets the threshold and the line format. Thread-safe (may be called while others log). */
void clmr_log_configure(clmr_log_level_t level, clmr_log_format_t format);

/* Parses "debug|info|warn|error|off" and "text|json"; return 0 or CLMR_EINVAL. */
int clmr_log_level_parse(const char *s, clmr_log_level_t *out);
int clmr_log_format_parse(const char *s, clmr_log_format_t *out);

/* Writes one line. request_id and func may be NULL. Thread-safe. Prefer the macros. */
void clmr_log_write(clmr_log_level_t level, const char *request_id, const char *func,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define CLMR_LOG_AT(lvl, rid, ...)                                                                 \
    do {                                                                                           \
        if ((int)(lvl) >= atomic_load_explicit(&clmr__log_level, memory_order_relaxed))            \
            clmr_log_write((lvl), (rid), __func__, __VA_ARGS__);                                   \
    } while (0)

#define CLMR_LOG_DEBUG(...) CLMR_LOG_AT(CLMR_LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
#define CLMR_LOG_INFO(...) CLMR_LOG_AT(CLMR_LOG_LEVEL_INFO, NULL, __VA_ARGS__)
#define CLMR_LOG_WARN(...) CLMR_LOG_AT(CLMR_LOG_LEVEL_WARN, NULL, __VA_ARGS__)
#define CLMR_LOG_ERROR(...) CLMR_LOG_AT(CLMR_LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
/* Request-scoped variants: the first argument is the request id. */
#define CLMR_RLOG_DEBUG(rid, ...) CLMR_LOG_AT(CLMR_LOG_LEVEL_DEBUG, (rid), __VA_ARGS__)
#define CLMR_RLOG_INFO(rid, ...) CLMR_LOG_AT(CLMR_LOG_LEVEL_INFO, (rid), __VA_ARGS__)
#define CLMR_RLOG_WARN(rid, ...) CLMR_LOG_AT(CLMR_LOG_LEVEL_WARN, (rid), __VA_ARGS__)
#define CLMR_RLOG_ERROR(rid, ...) CLMR_LOG_AT(CLMR_LOG_LEVEL_ERROR, (rid), __VA_ARGS__)

#endif
