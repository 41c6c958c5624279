/* cors.c - Cross-Origin Resource Sharing for browser front-ends.
 *
 * DESIGN: off unless configuration key cors-origins lists origins ("https://app.example:8443",
 * comma-separated, or "*" for any). A request whose Origin header is listed gets
 * Access-Control-Allow-Origin with that origin (never a wildcard with credentials), Vary: Origin,
 * and the headers a client may read (X-Request-Id, Retry-After, Location). A preflight (OPTIONS
 * with Access-Control-Request-Method) is answered here, before routing and before any
 * authentication, because browsers send it without credentials; an unlisted origin gets a 403
 * that says which key to set. The list is checked at start-up.
 */
#include "clmr/error.h"
#include "http/http_internal.h"

#include <string.h>
#include <strings.h>

/* Whether origin (the Origin header) is in the comma-separated list. */
static int origin_listed(const char *list, const char *origin)
{
    size_t n = strlen(origin);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t w = strcspn(p, ",");
        size_t t = w;
        while (t && p[t - 1] == ' ')
            t--;
        if ((t == 1 && *p == '*') || (t == n && !strncasecmp(p, origin, n))) return t > 0;
        p += w;
    }
    return 0;
}

int clmr__cors_validate(const char *list, char **errmsg)
{
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        if (!*p) break;
        size_t w = strcspn(p, ",");
        size_t t = w;
        while (t && p[t - 1] == ' ')
            t--;
        int star = t == 1 && *p == '*';
        int scheme = (t > 7 && !strncmp(p, "http://", 7)) || (t > 8 && !strncmp(p, "https://", 8));
        const char *host = scheme ? strstr(p, "//") + 2 : p;
        int path = scheme && memchr(host, '/', t - (size_t)(host - p)) != NULL;
        if (!star && (!scheme || path || t > 200))
            return clmr_set_err(errmsg, CLMR_EINVAL,
                                "configuration key 'cors-origins': '%.*s' is not an origin "
                                "(expected scheme://host[:port] without a path, or *)",
                                (int)(t < 200 ? t : 200), p);
        p += w;
    }
    return 0;
}

void clmr__cors_note_origin(clmr_http_req_t *req, struct MHD_Connection *c)
{
    const char *list = req->srv->cfg.cors_origins;
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    if (!list[0] || !origin || strlen(origin) >= sizeof req->cors_origin) return;
    if (origin_listed(list, origin))
        snprintf(req->cors_origin, sizeof req->cors_origin, "%s", origin);
}

int clmr__cors_preflight(clmr_http_req_t *req, struct MHD_Connection *c)
{
    if (strcmp(req->method, "OPTIONS") != 0) return 0;
    if (!MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Access-Control-Request-Method")) {
        snprintf(req->allow, sizeof req->allow, "GET, HEAD, POST, DELETE, OPTIONS");
        clmr__http_error(req, 405, "method_not_allowed",
                         "OPTIONS is only answered as a CORS preflight (with "
                         "Access-Control-Request-Method)");
        return 1;
    }
    if (!req->cors_origin[0]) {
        clmr__http_error(req, 403, "cors_origin_refused",
                         req->srv->cfg.cors_origins[0]
                             ? "this Origin is not listed in configuration key 'cors-origins'"
                             : "cross-origin requests are off: list the front-end's origin in "
                               "configuration key 'cors-origins'");
        return 1;
    }
    req->cors_preflight = 1;
    req->status = 204;
    free(req->resp_body);
    req->resp_body = NULL;
    req->resp_len = 0;
    req->done = 1;
    return 1;
}

void clmr__cors_add_headers(const clmr_http_req_t *req, struct MHD_Response *r)
{
    if (!req->cors_origin[0]) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", req->cors_origin);
    MHD_add_response_header(r, "Vary", "Origin");
    if (req->cors_preflight) {
        MHD_add_response_header(r, "Access-Control-Allow-Methods",
                                "GET, HEAD, POST, PATCH, DELETE, OPTIONS");
        MHD_add_response_header(r, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, X-Request-Id");
        MHD_add_response_header(r, "Access-Control-Max-Age", "600");
    } else {
        MHD_add_response_header(r, "Access-Control-Expose-Headers",
                                "X-Request-Id, Retry-After, Location");
    }
}
