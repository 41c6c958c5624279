/* log.c - the line writer behind log.h.
 *
 * DESIGN: one line = one fwrite of a stack buffer (messages longer than the buffer are truncated
 * with "..."), so concurrent threads never interleave. JSON mode escapes the message itself rather
 * than pulling in jansson, because logging must keep working when allocation fails; text mode
 * escapes control characters, so one call is always exactly one line.
 */
#include "util/log.h"

#include "clmr/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

atomic_int clmr__log_level = CLMR_LOG_LEVEL_INFO;
static atomic_int log_format = CLMR_LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void clmr_log_configure(clmr_log_level_t level, clmr_log_format_t format)
{
    atomic_store(&clmr__log_level, (int)level);
    atomic_store(&log_format, (int)format);
}

int clmr_log_level_parse(const char *s, clmr_log_level_t *out)
{
    for (int i = 0; i <= CLMR_LOG_LEVEL_OFF; i++)
        if (s && strcasecmp(s, level_names[i]) == 0) {
            *out = (clmr_log_level_t)i;
            return 0;
        }
    return CLMR_EINVAL;
}

int clmr_log_format_parse(const char *s, clmr_log_format_t *out)
{
    if (s && strcasecmp(s, "text") == 0)
        *out = CLMR_LOG_TEXT;
    else if (s && strcasecmp(s, "json") == 0)
        *out = CLMR_LOG_JSON;
    else
        return CLMR_EINVAL;
    return 0;
}

/* Appends s JSON-escaped to buf[*n..cap); stops quietly when full. */
static void json_escape(char *buf, size_t *n, size_t cap, const char *s)
{
    for (; s && *s && *n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = (char)c;
        } else if (c == '\n') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            *n += (size_t)snprintf(buf + *n, cap - *n, "\\u%04x", c);
        } else {
            buf[(*n)++] = (char)c;
        }
    }
}

/* Appends s to buf[*n..cap) with control characters written as \n, \r, \t or \xHH, so that a
 * decoded URL path ("%0A" is a line break) or any other client text can never start a forged log
 * line or move the terminal's cursor. Stops quietly when full. */
static void text_escape(char *buf, size_t *n, size_t cap, const char *s)
{
    for (; s && *s && *n + 4 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n' || c == '\r' || c == '\t') {
            buf[(*n)++] = '\\';
            buf[(*n)++] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
        } else if (c < 0x20 || c == 0x7f) {
            *n += (size_t)snprintf(buf + *n, cap - *n, "\\x%02x", c);
        } else {
            buf[(*n)++] = (char)c;
        }
    }
}

void clmr_log_write(clmr_log_level_t level, const char *request_id, const char *func,
                    const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (m >= (int)sizeof msg) memcpy(msg + sizeof msg - 4, "...", 4);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);

    const char *lv = level_names[level <= CLMR_LOG_LEVEL_OFF ? level : CLMR_LOG_LEVEL_ERROR];
    char line[4096];
    size_t n = 0, cap = sizeof line - 2;
    if (atomic_load(&log_format) == CLMR_LOG_JSON) {
        n += (size_t)snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\"", when, lv);
        if (request_id && n < cap) {
            n += (size_t)snprintf(line + n, cap - n, ",\"request_id\":\"");
            json_escape(line, &n, cap, request_id);
            if (n < cap) line[n++] = '"';
        }
        if (func && n < cap) n += (size_t)snprintf(line + n, cap - n, ",\"func\":\"%s\"", func);
        if (n < cap) n += (size_t)snprintf(line + n, cap - n, ",\"msg\":\"");
        json_escape(line, &n, cap - 2, msg);
        if (n > cap - 2) n = cap - 2;
        line[n++] = '"';
        line[n++] = '}';
    } else {
        n += (size_t)snprintf(line, cap, "%s %-5s %s%s%s%s%s", when, lv, request_id ? "[" : "",
                              request_id ? request_id : "", request_id ? "] " : "",
                              func ? func : "", func ? ": " : "");
        if (n > cap) n = cap;
        text_escape(line, &n, cap, msg);
    }
    line[n++] = '\n';
    fwrite(line, 1, n, stderr);
}
