/* query.c - which query parameters each route accepts: one table, checked before any handler.
 *
 * DESIGN: a misspelt parameter (?tpo=5) or one that belongs in the body (POST /v1/search?k=2)
 * used to be ignored, so the client got an answer to a question it did not ask. Every route now
 * lists what it reads; anything else is a 400 naming the parameter and the accepted ones. Adding
 * a parameter to a route is one word in its row. HEAD uses the GET row.
 */
#include "http/http_internal.h"

#include <string.h>

static const struct {
    clmr_route_t route;
    const char *method; /* NULL: every method of the route */
    const char *params; /* space-separated; "" = none */
} allowed[] = {
    {R_TAG, "POST", "top threshold per_chunk embedding all"},
    {R_TRACKS, "GET",
     "limit cursor tag min_score artist q title album bpm_min bpm_max loudness_min loudness_max "
     "duration_min duration_max created_since duplicates sort top"},
    {R_TRACKS, "POST", "title artist external_id album genre year track_number all"},
    {R_TRACK, "GET", "all"},
    {R_TRACK, NULL, ""},
    {R_TRACK_SIM, NULL, "k include_duplicates"},
    {R_TRACK_AUDIO, NULL, ""},
    {R_TRACK_EMB, NULL, "model"},
    {R_EXPORT, NULL, "format embeddings"},
    {R_SIMILAR, "POST", "k include_duplicates"},
    {R_SEARCH, "POST", ""},
    {R_HEALTHZ, NULL, ""},
    {R_READYZ, NULL, ""},
    {R_METRICS, NULL, ""},
    {R_OPENAPI, NULL, ""},
    {R_CONFIG, NULL, ""},
    {R_TAGS, NULL, ""},
    {R_MODELS, NULL, ""},
    {R_ADMIN, "GET", "all"}, /* GET /v1/admin/keys?all=1 lists revoked keys too */
    {R_ADMIN, NULL, ""},
};

/* The accepted list of req's route and method, or NULL when the table has no row (then any
 * parameter passes: a route added without a row is not broken by this check). */
static const char *accepted(const clmr_http_req_t *req)
{
    const char *m = strcmp(req->method, "HEAD") ? req->method : "GET";
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++)
        if (allowed[i].route == req->route && (!allowed[i].method || !strcmp(allowed[i].method, m)))
            return allowed[i].params;
    return NULL;
}

static int in_list(const char *list, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = list; *p;) {
        size_t w = strcspn(p, " ");
        if (w == n && !strncmp(p, key, n)) return 1;
        p += w;
        while (*p == ' ')
            p++;
    }
    return 0;
}

typedef struct {
    const char *list;
    char bad[64];
} scan_t;

static enum MHD_Result check_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    scan_t *sc = cls;
    if (!key || in_list(sc->list, key)) return MHD_YES;
    snprintf(sc->bad, sizeof sc->bad, "%s", key);
    return MHD_NO;
}

/* "limit cursor" -> "limit, cursor" for the message. */
static void list_text(const char *list, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = list; *p && o + 3 < cap; p++) {
        if (*p == ' ') {
            out[o++] = ',';
            out[o++] = ' ';
            while (p[1] == ' ')
                p++;
        } else {
            out[o++] = *p;
        }
    }
    out[o] = 0;
}

const char *clmr__route_limit_name(const clmr_http_req_t *req)
{
    switch (req->route) {
    case R_TAG:
    case R_TRACKS:
    case R_SIMILAR:
        return "configuration key 'max-upload-bytes'";
    case R_SEARCH:
        return "the fixed limit for JSON bodies of POST /v1/search; 'max-upload-bytes' does not "
               "apply";
    default:
        return "the fixed limit for this route's JSON bodies";
    }
}

int clmr__query_check(clmr_http_req_t *req, struct MHD_Connection *c)
{
    scan_t sc = {.list = accepted(req), .bad = ""};
    if (!sc.list) return 0;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, check_one, &sc);
    if (!sc.bad[0]) return 0;
    /* The name goes into the message as JSON-escaped text by the error builder; keep it short. */
    if (!sc.list[0])
        clmr__http_error(req, 400, "unknown_parameter",
                         "unknown query parameter '%s': %s %s takes no query parameters", sc.bad,
                         req->method, clmr__route_name(req->route));
    else {
        char list[256];
        list_text(sc.list, list, sizeof list);
        clmr__http_error(req, 400, "unknown_parameter",
                         "unknown query parameter '%s' for %s %s; accepted: %s", sc.bad,
                         req->method, clmr__route_name(req->route), list);
    }
    return -1;
}
