/* errors.c - every HTTP error of the service goes through here.
 *
 * DESIGN: one table maps clmr error codes to HTTP statuses, so a decoder or store error becomes
 * the same status on every route. Anything a client can cause maps to a 4xx; only failures of the
 * service itself (oneDNN, database, I/O) map to 5xx, and "overloaded or not ready" is 503, "disk
 * full" 507. Every error body is {"error":{"code","message"}} and is counted for /metrics.
 */
#include "http/http_internal.h"

#include "clmr/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    int err;
    unsigned status;
} status_table[] = {
    {CLMR_ENOMEM, 503},
    {CLMR_EINVAL, 400},
    {CLMR_EIO, 500},
    {CLMR_EAUDIO_EMPTY, 400},
    {CLMR_EAUDIO_TOO_LARGE, 413},
    {CLMR_EAUDIO_NOT_AUDIO, 415},
    {CLMR_EAUDIO_FORMAT_REFUSED, 415},
    {CLMR_EAUDIO_NO_STREAM, 415},
    {CLMR_EAUDIO_CODEC, 415},
    {CLMR_EAUDIO_CORRUPT, 415},
    /* Decodable audio the service will not use: */
    {CLMR_EAUDIO_TOO_LONG, 422},
    {CLMR_EAUDIO_RATE, 422},
    {CLMR_EAUDIO_CHANNELS, 422},
    {CLMR_EAUDIO_NONFINITE, 422},
    {CLMR_EAUDIO_NO_SAMPLES, 422},
    {CLMR_EAUDIO_TIMEOUT, 422},
    {CLMR_EMODEL_IO, 503},
    {CLMR_EMODEL_FORMAT, 503},
    {CLMR_EMODEL_METADATA, 503},
    {CLMR_EMODEL_TENSOR, 503},
    {CLMR_EMODEL_NONFINITE, 503},
    {CLMR_EMODEL_NO_HEAD, 503},
    {CLMR_EDNNL, 500},
    {CLMR_EDB, 500},
    {CLMR_EDB_FULL, 507},
    {CLMR_ENOT_FOUND, 404},
    {CLMR_EBUSY, 409}, /* a second fine-tuning job, an existing model id (store.h) */
    {CLMR_ECANCELLED, 503},
};

unsigned clmr__http_status_for(int err)
{
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++)
        if (status_table[i].err == err) return status_table[i].status;
    return 500;
}

void clmr__http_json(clmr_http_req_t *req, unsigned status, json_t *j)
{
    free(req->resp_body);
    req->resp_body = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(j);
    if (!req->resp_body) { /* jansson failed (NaN, out of memory): never send a half answer */
        status = 503;
        req->resp_body = strdup(
            "{\"error\":{\"code\":\"out_of_memory\",\"message\":\"cannot build the response\"}}");
    }
    req->resp_len = req->resp_body ? strlen(req->resp_body) : 0;
    req->resp_type = "application/json";
    req->status = status;
    req->done = 1;
}

static void error_body(clmr_http_req_t *req, unsigned status, const char *code, const char *msg)
{
    json_t *j = json_pack("{s:{s:s,s:s?}}", "error", "code", code, "message", msg);
    if (!j) /* message with invalid UTF-8 (cannot happen with our messages, but be safe) */
        j = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", "error");
    clmr__http_json(req, status, j);
}

void clmr__http_error(clmr_http_req_t *req, unsigned status, const char *code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    clmr__metrics_error(&req->srv->metrics, 0);
    error_body(req, status, code, msg);
}

void clmr__http_error_clmr(clmr_http_req_t *req, int err, const char *msg)
{
    clmr__metrics_error(&req->srv->metrics, err);
    unsigned status = clmr__http_status_for(err);
    /* Internal failures keep their detail in the log, not in the answer. */
    error_body(req, status, clmr_err_name(err),
               msg && *msg && status < 500 ? msg : clmr_strerror(err));
}
