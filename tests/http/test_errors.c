/* test_errors.c - the one error table: every decoder error a client can cause is a 4xx, service
 * faults are 5xx, and error bodies have the {"error":{"code","message"}} shape. */
#include "harness.h"
#include "http/http_internal.h"

#include "clmr/error.h"

#include <string.h>

static void test_status_table(void)
{
    static const int client_audio[] = {
        CLMR_EAUDIO_EMPTY,          CLMR_EAUDIO_TOO_LARGE, CLMR_EAUDIO_NOT_AUDIO,
        CLMR_EAUDIO_FORMAT_REFUSED, CLMR_EAUDIO_NO_STREAM, CLMR_EAUDIO_CODEC,
        CLMR_EAUDIO_CORRUPT,        CLMR_EAUDIO_TOO_LONG,  CLMR_EAUDIO_RATE,
        CLMR_EAUDIO_CHANNELS,       CLMR_EAUDIO_NONFINITE, CLMR_EAUDIO_NO_SAMPLES,
        CLMR_EAUDIO_TIMEOUT,        CLMR_EINVAL,           CLMR_ENOT_FOUND};
    for (size_t i = 0; i < sizeof client_audio / sizeof client_audio[0]; i++) {
        unsigned st = clmr__http_status_for(client_audio[i]);
        CHECKF(st >= 400 && st < 500, "%s -> %u", clmr_err_name(client_audio[i]), st);
    }
    CHECK(clmr__http_status_for(CLMR_EAUDIO_NOT_AUDIO) == 415);
    CHECK(clmr__http_status_for(CLMR_EAUDIO_TOO_LONG) == 422);
    CHECK(clmr__http_status_for(CLMR_EAUDIO_TOO_LARGE) == 413);
    CHECK(clmr__http_status_for(CLMR_EDB_FULL) == 507);
    CHECK(clmr__http_status_for(CLMR_ENOMEM) == 503);
    CHECK(clmr__http_status_for(CLMR_EDB) == 500);
    CHECK(clmr__http_status_for(-999) == 500);
}

static void test_error_body(void)
{
    clmr_server_t srv;
    memset(&srv, 0, sizeof srv);
    clmr__metrics_init(&srv.metrics);
    clmr_http_req_t req;
    memset(&req, 0, sizeof req);
    req.srv = &srv;
    clmr__http_error_clmr(&req, CLMR_EAUDIO_CORRUPT, "truncated \"frame\"");
    CHECK(req.done && req.status == 415);
    json_error_t e;
    json_t *j = json_loadb(req.resp_body, req.resp_len, 0, &e);
    CHECK(j != NULL);
    json_t *err = json_object_get(j, "error");
    CHECK(json_object_size(j) == 1 && json_object_size(err) == 2);
    CHECK(!strcmp(json_string_value(json_object_get(err, "code")), "corrupt_audio"));
    CHECK(!strcmp(json_string_value(json_object_get(err, "message")), "truncated \"frame\""));
    json_decref(j);
    /* a service fault keeps its detail out of the answer */
    clmr__http_error_clmr(&req, CLMR_EDB, "SQLITE_CORRUPT at /secret/path");
    CHECK(req.status == 500 && !strstr(req.resp_body, "/secret/path"));
    CHECK(srv.metrics.errors_by_code[-CLMR_EAUDIO_CORRUPT] == 1);
    free(req.resp_body);
    clmr__metrics_destroy(&srv.metrics);
}

int main(void)
{
    RUN_TEST(test_status_table);
    RUN_TEST(test_error_body);
    return TEST_END();
}
