/* catalog_api.c - the catalogue routes of issue 17; see catalog_api.h.
 *
 * DESIGN: GET /v1/tracks turns its query arguments into a clmr_track_query_t (each one parsed with
 * bounds; a bad one is a 400 naming it) and renders rows with their top tags. Stored audio is sent
 * from the pool file descriptor (libmicrohttpd uses sendfile) with single byte ranges (206/416) as
 * players and browsers ask for them. The export is a callback response: each call of the callback
 * drains a buffer that is refilled from one page (EXPORT_PAGE tracks, keyset order) of the store,
 * so memory stays bounded whatever the catalogue size; it runs in libmicrohttpd's thread, one page
 * (a few ms) at a time. Similar-track results are filtered after the index search (whatever the
 * index), asking the index for more hits when filtering removed some.
 */
#include "http/catalog_api.h"

#include "audio/descriptors.h"
#include "audio/fingerprint.h"
#include "clmr/audio.h"
#include "clmr/error.h"
#include "http/rollover.h"
#include "store/store.h"
#include "util/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QARGS_MAX 64
#define TEXT_ARG_MAX 256  /* bytes of a text-search argument */
#define META_ARG_MAX 1024 /* bytes of a metadata value (as for uploads) */
#define EXPORT_PAGE 200
#define TOP_DEFAULT 3

struct clmr_qarg {
    char *key, *value;
};

/* ---------------------------------------------------------------- query arguments */

typedef struct {
    clmr_http_req_t *req;
} collect_t;

static enum MHD_Result collect_cb(void *cls, enum MHD_ValueKind kind, const char *key,
                                  size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    clmr_http_req_t *req = ((collect_t *)cls)->req;
    if (!key || req->n_qargs >= QARGS_MAX) return MHD_YES;
    if (strlen(key) != key_size || (value && strlen(value) != value_size)) req->q_nul = 1;
    struct clmr_qarg *a = &req->qargs[req->n_qargs];
    a->key = strdup(key);
    a->value = strdup(value ? value : "");
    if (!a->key || !a->value) {
        free(a->key);
        free(a->value);
        return MHD_NO;
    }
    req->n_qargs++;
    return MHD_YES;
}

void clmr__qargs_collect(clmr_http_req_t *req, struct MHD_Connection *c)
{
    req->qargs = calloc(QARGS_MAX, sizeof *req->qargs);
    if (!req->qargs) return;
    collect_t cl = {req};
    MHD_get_connection_values_n(c, MHD_GET_ARGUMENT_KIND, collect_cb, &cl);
}

void clmr__qargs_free(clmr_http_req_t *req)
{
    for (int i = 0; i < req->n_qargs; i++) {
        free(req->qargs[i].key);
        free(req->qargs[i].value);
    }
    free(req->qargs);
    req->qargs = NULL;
    req->n_qargs = 0;
}

const char *clmr__qarg(const clmr_http_req_t *req, const char *name)
{
    for (int i = 0; i < req->n_qargs; i++)
        if (!strcmp(req->qargs[i].key, name)) return req->qargs[i].value;
    return NULL;
}

static int bad_arg(clmr_http_req_t *req, const char *name, const char *what)
{
    clmr__http_error(req, 400, "invalid_argument", "query parameter '%s' must be %s", name, what);
    return -1;
}

/* A number within [lo, hi]; *out = NAN when absent (or empty). */
static int arg_double(clmr_http_req_t *req, const char *name, double lo, double hi, double *out)
{
    const char *v = clmr__qarg(req, name);
    *out = NAN;
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || *end || !isfinite(x) || x < lo || x > hi) {
        char what[96];
        snprintf(what, sizeof what, "a number from %g to %g", lo, hi);
        return bad_arg(req, name, what);
    }
    *out = x;
    return 0;
}

static int arg_int(clmr_http_req_t *req, const char *name, long long lo, long long hi,
                   long long def, long long *out)
{
    const char *v = clmr__qarg(req, name);
    *out = def;
    if (!v || !*v) return 0;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || x < lo || x > hi) {
        char what[96];
        snprintf(what, sizeof what, "an integer from %lld to %lld", lo, hi);
        return bad_arg(req, name, what);
    }
    *out = x;
    return 0;
}

static int arg_bool(clmr_http_req_t *req, const char *name, int *out)
{
    const char *v = clmr__qarg(req, name);
    *out = 0;
    if (!v || !*v || !strcmp(v, "0") || !strcmp(v, "false")) return 0;
    if (!strcmp(v, "1") || !strcmp(v, "true")) {
        *out = 1;
        return 0;
    }
    return bad_arg(req, name, "true or false (1 or 0)");
}

/* Text of at most max bytes, valid UTF-8 (it goes back out in JSON). NULL when absent/empty. */
static int arg_text(clmr_http_req_t *req, const char *name, size_t max, const char **out)
{
    const char *v = clmr__qarg(req, name);
    *out = NULL;
    if (!v || !*v) return 0;
    size_t n = strlen(v);
    json_t *probe = n <= max ? json_stringn(v, n) : NULL;
    if (!probe) {
        char what[96];
        snprintf(what, sizeof what, "UTF-8 text of at most %zu bytes", max);
        return bad_arg(req, name, what);
    }
    json_decref(probe);
    *out = v;
    return 0;
}

int clmr__dup_arg(clmr_http_req_t *req, int *include)
{
    return arg_bool(req, "include_duplicates", include);
}

/* ---------------------------------------------------------------- JSON */

static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

void clmr__track_extra_json(json_t *j, const clmr_track_extra_t *x)
{
    json_object_set_new(j, "album", str_or_null(x->album));
    json_object_set_new(j, "genre", str_or_null(x->genre));
    json_object_set_new(j, "year", x->year > 0 ? json_integer(x->year) : json_null());
    json_object_set_new(j, "track_number",
                        x->track_number > 0 ? json_integer(x->track_number) : json_null());
    json_object_set_new(j, "duplicate_of",
                        x->duplicate_of[0] ? json_string(x->duplicate_of) : json_null());
    json_t *d = json_object();
    json_object_set_new(d, "bpm", real_or_null(x->bpm));
    json_object_set_new(d, "bpm_confidence", real_or_null(x->bpm_confidence));
    json_object_set_new(d, "onset_rate", real_or_null(x->onset_rate));
    json_object_set_new(d, "loudness_lufs", real_or_null(x->loudness_lufs));
    json_object_set_new(d, "loudness_range_lu", real_or_null(x->loudness_range_lu));
    json_object_set_new(d, "true_peak_dbtp", real_or_null(x->true_peak_dbtp));
    json_object_set_new(j, "descriptors", d);
}

static json_t *row_json(clmr_http_req_t *req, const clmr_track_row_t *r, int top)
{
    const clmr_http_model_info_t *info = &req->sm->info;
    json_t *j = clmr__track_json(&r->t);
    clmr__track_extra_json(j, &r->x);
    if (r->scores && top > 0) {
        json_object_set_new(j, "model", json_string(info->id));
        json_object_set_new(j, "top_tags",
                            clmr__tags_json(info, r->scores, r->n_scores, top, 0, 0));
    }
    return j;
}

/* ---------------------------------------------------------------- GET /v1/tracks */

static int tag_index(const clmr_http_model_info_t *info, const char *name)
{
    for (int i = 0; i < info->n_tags; i++)
        if (!strcmp(info->tags[i], name)) return i;
    return -1;
}

static int parse_sort(clmr_http_req_t *req, clmr_track_query_t *q)
{
    static const struct {
        const char *name;
        clmr_track_sort_t sort;
    } names[] = {{"created", CLMR_SORT_CREATED}, {"title", CLMR_SORT_TITLE},
                 {"artist", CLMR_SORT_ARTIST},   {"album", CLMR_SORT_ALBUM},
                 {"year", CLMR_SORT_YEAR},       {"duration", CLMR_SORT_DURATION},
                 {"bpm", CLMR_SORT_BPM},         {"loudness", CLMR_SORT_LOUDNESS},
                 {"score", CLMR_SORT_TAG_SCORE}, {"relevance", CLMR_SORT_RELEVANCE}};
    const char *v = clmr__qarg(req, "sort");
    if (!v || !*v) return 0;
    q->descending = v[0] == '-';
    if (v[0] == '-' || v[0] == '+') v++;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(v, names[i].name)) {
            q->sort = names[i].sort;
            if (q->sort == CLMR_SORT_TAG_SCORE && q->tag < 0)
                return bad_arg(req, "sort", "'score' only together with 'tag'");
            if (q->sort == CLMR_SORT_RELEVANCE && !q->text && !q->title_text && !q->album_text)
                return bad_arg(req, "sort", "'relevance' only with 'q', 'title' or 'album'");
            return 0;
        }
    return bad_arg(req, "sort",
                   "one of created, title, artist, album, year, duration, bpm, loudness, score, "
                   "relevance (prefix '-' for descending)");
}

void clmr__h_tracks_query(clmr_http_req_t *req)
{
    const clmr_http_model_info_t *info = &req->sm->info;
    if (req->q_nul) {
        clmr__http_error(req, 400, "invalid_argument",
                         "query parameters must not contain NUL bytes");
        return;
    }
    clmr_track_query_t q = clmr_track_query_default();
    q.model_id = info->id;
    long long limit, top, since;
    const char *tag, *dups, *cursor;
    double min_score;
    if (arg_int(req, "limit", 1, 1000, 50, &limit) ||
        arg_int(req, "top", 0, info->n_tags,
                info->n_tags < TOP_DEFAULT ? info->n_tags : TOP_DEFAULT, &top) ||
        arg_text(req, "tag", 128, &tag) || arg_double(req, "min_score", 0, 1, &min_score) ||
        arg_text(req, "artist", META_ARG_MAX, &q.artist) ||
        arg_text(req, "q", TEXT_ARG_MAX, &q.text) ||
        arg_text(req, "title", TEXT_ARG_MAX, &q.title_text) ||
        arg_text(req, "album", TEXT_ARG_MAX, &q.album_text) ||
        arg_double(req, "bpm_min", 0, 1000, &q.bpm_min) ||
        arg_double(req, "bpm_max", 0, 1000, &q.bpm_max) ||
        arg_double(req, "loudness_min", -200, 50, &q.lufs_min) ||
        arg_double(req, "loudness_max", -200, 50, &q.lufs_max) ||
        arg_double(req, "duration_min", 0, 1e7, &q.duration_min) ||
        arg_double(req, "duration_max", 0, 1e7, &q.duration_max) ||
        arg_int(req, "created_since", 0, INT64_MAX / 2, 0, &since) ||
        arg_text(req, "duplicates", 16, &dups) || arg_text(req, "cursor", 64, &cursor))
        return;
    q.limit = (int)limit;
    q.created_since = since;
    q.cursor = cursor;
    if (tag) {
        if ((q.tag = tag_index(info, tag)) < 0) {
            clmr__http_error(req, 400, "invalid_argument",
                             "query parameter 'tag': '%s' is not a tag of model %s (GET /v1/tags)",
                             tag, info->id);
            return;
        }
        q.tag_min = isnan(min_score) ? 0.5 : min_score;
    } else if (!isnan(min_score)) {
        bad_arg(req, "min_score", "given only together with 'tag'");
        return;
    }
    if (dups) {
        if (!strcmp(dups, "include"))
            q.duplicates = -1;
        else if (!strcmp(dups, "exclude"))
            q.duplicates = 0;
        else if (!strcmp(dups, "only"))
            q.duplicates = 1;
        else {
            bad_arg(req, "duplicates", "include, exclude or only");
            return;
        }
    }
    const char *pairs[3][2] = {
        {"bpm_min", "bpm_max"}, {"loudness_min", "loudness_max"}, {"duration_min", "duration_max"}};
    double lohi[3][2] = {
        {q.bpm_min, q.bpm_max}, {q.lufs_min, q.lufs_max}, {q.duration_min, q.duration_max}};
    for (int i = 0; i < 3; i++)
        if (lohi[i][0] > lohi[i][1]) {
            clmr__http_error(req, 400, "invalid_argument",
                             "query parameter '%s' is greater than '%s'", pairs[i][0], pairs[i][1]);
            return;
        }
    if (parse_sort(req, &q)) return;
    clmr_track_row_t *rows = NULL;
    size_t n = 0;
    int64_t total = 0;
    char *next = NULL, *msg = NULL;
    int rc = clmr_store_track_query(req->srv->store, &q, &rows, &n, &total, &next, &msg);
    if (rc == CLMR_EINVAL) {
        int cur = msg && strstr(msg, "cursor");
        clmr__http_error(req, 400, "invalid_argument", "query parameter '%s': %s",
                         cur ? "cursor"
                             : (q.text         ? "q"
                                : q.title_text ? "title"
                                               : "album"),
                         msg ? msg : "invalid");
    } else if (rc) {
        if (clmr__http_status_for(rc) >= 500)
            CLMR_RLOG_ERROR(req->request_id, "track query: %s (%s)", clmr_strerror(rc),
                            msg ? msg : "");
        clmr__http_error_clmr(req, rc, msg);
    } else {
        json_t *a = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(a, row_json(req, &rows[i], (int)top));
        clmr__http_json(req, 200,
                        json_pack("{s:o,s:I,s:s?}", "tracks", a, "total", (json_int_t)total,
                                  "next_cursor", next));
    }
    clmr_track_rows_free(rows, n);
    free(next);
    free(msg);
}

/* ---------------------------------------------------------------- PATCH /v1/tracks/{id} */

/* A text field of the body: a string (valid UTF-8, 1..META_ARG_MAX bytes, no NUL) or null. */
static int patch_text(clmr_http_req_t *req, const char *key, json_t *v, const char **out)
{
    if (json_is_null(v)) {
        *out = NULL;
        return 0;
    }
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (!json_is_string(v) || n == 0 || n > META_ARG_MAX || strlen(json_string_value(v)) != n) {
        clmr__http_error(req, 400, "invalid_argument",
                         "'%s' must be null or text of 1 to %d bytes without NUL", key,
                         META_ARG_MAX);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

static int patch_int(clmr_http_req_t *req, const char *key, json_t *v, int lo, int hi, int *out)
{
    if (json_is_null(v)) {
        *out = 0;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        clmr__http_error(req, 400, "invalid_argument",
                         "'%s' must be null or an integer from %d to %d", key, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

void clmr__h_track_patch(clmr_http_req_t *req)
{
    static const struct {
        const char *key;
        unsigned bit;
    } fields[] = {{"title", CLMR_PATCH_TITLE},
                  {"artist", CLMR_PATCH_ARTIST},
                  {"album", CLMR_PATCH_ALBUM},
                  {"genre", CLMR_PATCH_GENRE},
                  {"external_id", CLMR_PATCH_EXTERNAL_ID},
                  {"year", CLMR_PATCH_YEAR},
                  {"track_number", CLMR_PATCH_TRACK_NUMBER},
                  {"duplicate_of", CLMR_PATCH_DUPLICATE_OF}};
    const size_t nf = sizeof fields / sizeof fields[0];
    json_error_t jerr;
    json_t *j = req->body_len ? json_loadb((const char *)req->body, req->body_len,
                                           JSON_REJECT_DUPLICATES, &jerr)
                              : NULL;
    char dup[65];
    if (!j || !json_is_object(j)) {
        clmr__http_error(req, 400, "invalid_json", "the body must be a JSON object: %s",
                         !req->body_len ? "the body is empty"
                         : j            ? "not an object"
                                        : jerr.text);
        goto out;
    }
    if (json_object_size(j) == 0) {
        clmr__http_error(req, 400, "invalid_argument",
                         "nothing to change; fields: title, artist, album, genre, external_id, "
                         "year, track_number, duplicate_of");
        goto out;
    }
    clmr_track_patch_t p = {0};
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v)
    {
        size_t i = 0;
        while (i < nf && strcmp(key, fields[i].key))
            i++;
        if (i == nf) {
            clmr__http_error(req, 400, "invalid_argument",
                             "unknown field '%s'; fields: title, artist, album, genre, "
                             "external_id, year, track_number, duplicate_of",
                             key);
            goto out;
        }
        p.set |= fields[i].bit;
        int bad = 0;
        switch (fields[i].bit) {
        case CLMR_PATCH_TITLE:
            bad = patch_text(req, key, v, &p.title);
            break;
        case CLMR_PATCH_ARTIST:
            bad = patch_text(req, key, v, &p.artist);
            break;
        case CLMR_PATCH_ALBUM:
            bad = patch_text(req, key, v, &p.album);
            break;
        case CLMR_PATCH_GENRE:
            bad = patch_text(req, key, v, &p.genre);
            break;
        case CLMR_PATCH_EXTERNAL_ID:
            bad = patch_text(req, key, v, &p.external_id);
            break;
        case CLMR_PATCH_YEAR:
            bad = patch_int(req, key, v, 1, 9999, &p.year);
            break;
        case CLMR_PATCH_TRACK_NUMBER:
            bad = patch_int(req, key, v, 1, 99999, &p.track_number);
            break;
        case CLMR_PATCH_DUPLICATE_OF: {
            const char *s = json_is_string(v) ? json_string_value(v) : NULL;
            size_t n = s ? strlen(s) : 0;
            int ok = json_is_null(v) || (n == 64 && json_string_length(v) == 64);
            for (size_t k = 0; ok && k < n; k++)
                ok = isxdigit((unsigned char)s[k]);
            if (!ok) {
                clmr__http_error(req, 400, "invalid_argument",
                                 "'duplicate_of' must be null or a track id (64 hex digits)");
                bad = 1;
                break;
            }
            if (s) {
                for (size_t k = 0; k < 64; k++)
                    dup[k] = (char)tolower((unsigned char)s[k]);
                dup[64] = 0;
                p.duplicate_of = dup;
            }
            break;
        }
        }
        if (bad) goto out;
    }
    char *msg = NULL;
    int rc = clmr_store_track_patch(req->srv->store, req->id, &p, &msg);
    if (rc == CLMR_ENOT_FOUND) {
        clmr__http_error(req, 404, "not_found", "no track %s", req->id);
    } else if (rc == CLMR_EINVAL) {
        clmr__http_error(req, 400, "invalid_argument", "%s", msg ? msg : "invalid change");
    } else if (rc) {
        if (clmr__http_status_for(rc) >= 500)
            CLMR_RLOG_ERROR(req->request_id, "patch: %s (%s)", clmr_strerror(rc), msg ? msg : "");
        clmr__http_error_clmr(req, rc, msg);
    } else {
        clmr_track_record_t t;
        memset(&t, 0, sizeof t);
        if (clmr_store_track_get(req->srv->store, req->id, &t, NULL) == 0)
            clmr__http_json(req, 200, clmr__track_full_json(req, &t));
        else
            clmr__http_error(req, 404, "not_found", "no track %s", req->id);
        clmr_track_record_clear(&t);
    }
    free(msg);
out:
    json_decref(j);
}

/* ---------------------------------------------------------------- GET /v1/tracks/{id}/audio */

/* Turns the prepared (JSON) response into a custom one, so headers can be added to it. */
static struct MHD_Response *own_response(clmr_http_req_t *req)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(req->resp_len, req->resp_body, MHD_RESPMEM_MUST_FREE);
    if (r) {
        req->resp_body = NULL;
        req->resp_len = 0;
        req->resp_custom = r;
    }
    return r;
}

/* Parses a single "bytes=a-b" / "bytes=a-" / "bytes=-n" range against size. Returns 1 with
 * [*from, *to] set, 0 to ignore the header (absent, another unit, several ranges, malformed:
 * RFC 9110 lets a server answer 200 then), -1 when unsatisfiable. */
static int parse_range(const char *h, int64_t size, int64_t *from, int64_t *to)
{
    if (!h || strncmp(h, "bytes=", 6)) return 0;
    const char *p = h + 6;
    if (strchr(p, ',')) return 0;
    char *end;
    if (*p == '-') {
        if (!isdigit((unsigned char)p[1])) return 0;
        errno = 0;
        long long n = strtoll(p + 1, &end, 10);
        if (errno || *end) return 0;
        if (n == 0 || size == 0) return -1;
        *from = n >= size ? 0 : size - n;
        *to = size - 1;
        return 1;
    }
    if (!isdigit((unsigned char)*p)) return 0;
    errno = 0;
    long long a = strtoll(p, &end, 10);
    if (errno || *end != '-') return 0;
    long long b = size - 1;
    if (end[1]) {
        char *e2;
        if (!isdigit((unsigned char)end[1])) return 0;
        b = strtoll(end + 1, &e2, 10);
        if (errno || *e2 || b < a) return 0;
    }
    if (a >= size) return -1;
    *from = a;
    *to = b >= size ? size - 1 : b;
    return 1;
}

void clmr__h_track_audio(clmr_http_req_t *req)
{
    clmr_server_t *s = req->srv;
    clmr_track_record_t t;
    memset(&t, 0, sizeof t);
    char *msg = NULL;
    int rc = clmr_store_track_get(s->store, req->id, &t, &msg);
    free(msg);
    if (rc == CLMR_ENOT_FOUND) {
        clmr__http_error(req, 404, "not_found", "no track %s", req->id);
        return;
    }
    if (rc) {
        clmr__http_error_clmr(req, rc, "track lookup failed");
        return;
    }
    if (!t.audio_path) {
        clmr__http_error(req, 404, "not_found", "track %s has no stored audio", req->id);
        clmr_track_record_clear(&t);
        return;
    }
    char path[CLMR_CONFIG_PATH_MAX + 160];
    snprintf(path, sizeof path, "%s/%s", clmr_store_data_dir(s->store), t.audio_path);
    clmr_track_record_clear(&t);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) || !S_ISREG(sb.st_mode)) {
        if (fd >= 0) close(fd);
        CLMR_RLOG_WARN(req->request_id, "pool file of %s cannot be opened", req->id);
        clmr__http_error(req, 404, "not_found", "the stored audio of track %s is missing", req->id);
        return;
    }
    int64_t size = sb.st_size, from = 0, to = size - 1;
    char cr[96] = "";
    int pr = parse_range(req->h_range, size, &from, &to);
    if (pr < 0) {
        close(fd);
        clmr__http_error(req, 416, "range_not_satisfiable",
                         "the range '%s' is outside the %" PRId64 " bytes of the audio",
                         req->h_range, size);
        struct MHD_Response *r = own_response(req);
        if (r) {
            snprintf(cr, sizeof cr, "bytes */%" PRId64, size);
            MHD_add_response_header(r, "Content-Range", cr);
            MHD_add_response_header(r, "Accept-Ranges", "bytes");
        }
        return;
    }
    /* libmicrohttpd owns and closes fd from here on (also on HEAD). */
    struct MHD_Response *r = MHD_create_response_from_fd_at_offset64(
        (uint64_t)(size ? to - from + 1 : 0), fd, (uint64_t)from);
    if (!r) {
        close(fd);
        clmr__http_error_clmr(req, CLMR_ENOMEM, NULL);
        return;
    }
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    if (pr > 0) {
        snprintf(cr, sizeof cr, "bytes %" PRId64 "-%" PRId64 "/%" PRId64, from, to, size);
        MHD_add_response_header(r, "Content-Range", cr);
    }
    req->resp_custom = r;
    req->resp_type = "audio/flac";
    req->status = pr > 0 ? 206 : 200;
    req->done = 1;
}

/* ---------------------------------------------------------------- GET /v1/tracks/{id}/embedding */

void clmr__h_track_embedding(clmr_http_req_t *req)
{
    const char *model;
    if (arg_text(req, "model", CLMR_STORE_ID_MAX, &model)) return;
    if (!model) model = req->sm->info.id;
    float *v = NULL;
    int dim = 0;
    char *msg = NULL;
    int rc = clmr_store_embedding_get(req->srv->store, req->id, model, &v, &dim, &msg);
    if (rc == CLMR_ENOT_FOUND) {
        clmr_track_record_t t;
        memset(&t, 0, sizeof t);
        if (clmr_store_track_get(req->srv->store, req->id, &t, NULL) == CLMR_ENOT_FOUND)
            clmr__http_error(req, 404, "not_found", "no track %s", req->id);
        else
            clmr__http_error(req, 404, "not_found", "track %s has no embedding for model %s",
                             req->id, model);
        clmr_track_record_clear(&t);
    } else if (rc) {
        clmr__http_error_clmr(req, rc, msg);
    } else {
        json_t *a = json_array();
        for (int i = 0; i < dim; i++)
            json_array_append_new(a, json_real(isfinite(v[i]) ? v[i] : 0.0));
        clmr__http_json(req, 200,
                        json_pack("{s:s,s:s,s:i,s:o}", "id", req->id, "model", model, "dim", dim,
                                  "embedding", a));
    }
    free(v);
    free(msg);
}

/* ---------------------------------------------------------------- GET /v1/export */

typedef struct {
    clmr_server_t *srv;
    clmr_served_t *sm; /* our own reference: the response may outlive the request */
    int csv, with_emb, header_done, finished;
    char *cursor;
    char *buf;
    size_t len, cap, off;
    char request_id[65];
} export_t;

static int buf_put(export_t *e, const char *s, size_t n)
{
    if (e->len + n + 1 > e->cap) {
        size_t cap = e->cap ? e->cap : 64 * 1024;
        while (cap < e->len + n + 1)
            cap *= 2;
        char *nb = realloc(e->buf, cap);
        if (!nb) return -1;
        e->buf = nb;
        e->cap = cap;
    }
    memcpy(e->buf + e->len, s, n);
    e->len += n;
    return 0;
}

static int buf_str(export_t *e, const char *s)
{
    return buf_put(e, s, strlen(s));
}

/* A CSV field: quoted when it holds a comma, quote or line break (quotes doubled). */
static int csv_text(export_t *e, const char *s)
{
    if (!s) return 0;
    if (!strpbrk(s, ",\"\r\n")) return buf_str(e, s);
    int rc = buf_put(e, "\"", 1);
    for (const char *p = s; !rc && *p; p++)
        rc = *p == '"' ? buf_put(e, "\"\"", 2) : buf_put(e, p, 1);
    return rc ? rc : buf_put(e, "\"", 1);
}

static int csv_num(export_t *e, double v)
{
    char b[40];
    if (!isfinite(v)) return 0;
    snprintf(b, sizeof b, "%.9g", v);
    return buf_str(e, b);
}

static int csv_header(export_t *e)
{
    const clmr_http_model_info_t *info = &e->sm->info;
    int rc = buf_str(e, "id,title,artist,album,genre,year,track_number,external_id,duration_s,"
                        "created_at,duplicate_of,bpm,bpm_confidence,onset_rate,loudness_lufs,"
                        "loudness_range_lu,true_peak_dbtp");
    for (int i = 0; !rc && i < info->n_tags; i++) {
        rc = buf_str(e, ",");
        char name[160];
        snprintf(name, sizeof name, "tag:%s", info->tags[i]);
        if (!rc) rc = csv_text(e, name);
    }
    if (!rc && e->with_emb) rc = buf_str(e, ",embedding");
    return rc ? rc : buf_str(e, "\n");
}

static int csv_row(export_t *e, const clmr_track_row_t *r)
{
    const clmr_track_record_t *t = &r->t;
    const clmr_track_extra_t *x = &r->x;
    int rc = buf_str(e, t->id);
    const char *texts[4] = {t->title, t->artist, x->album, x->genre};
    for (int i = 0; !rc && i < 4; i++)
        rc = buf_str(e, ",") || csv_text(e, texts[i]);
    if (!rc) rc = buf_str(e, ",") || csv_num(e, x->year > 0 ? x->year : NAN);
    if (!rc) rc = buf_str(e, ",") || csv_num(e, x->track_number > 0 ? x->track_number : NAN);
    if (!rc) rc = buf_str(e, ",") || csv_text(e, t->external_id);
    if (!rc) rc = buf_str(e, ",") || csv_num(e, t->duration_s);
    if (!rc) rc = buf_str(e, ",") || csv_num(e, (double)t->created_at);
    if (!rc) rc = buf_str(e, ",") || buf_str(e, x->duplicate_of);
    double d[6] = {x->bpm,           x->bpm_confidence,    x->onset_rate,
                   x->loudness_lufs, x->loudness_range_lu, x->true_peak_dbtp};
    for (int i = 0; !rc && i < 6; i++)
        rc = buf_str(e, ",") || csv_num(e, d[i]);
    int n_tags = e->sm->info.n_tags;
    for (int i = 0; !rc && i < n_tags; i++)
        rc = buf_str(e, ",") || (r->scores && i < r->n_scores ? csv_num(e, r->scores[i]) : 0);
    if (!rc && e->with_emb) {
        rc = buf_str(e, ",");
        for (int i = 0; !rc && r->emb && i < r->dim; i++)
            rc = (i ? buf_str(e, " ") : 0) || csv_num(e, r->emb[i]);
    }
    return rc ? rc : buf_str(e, "\n");
}

static int jsonl_row(export_t *e, const clmr_track_row_t *r)
{
    const clmr_http_model_info_t *info = &e->sm->info;
    json_t *j = clmr__track_json(&r->t);
    clmr__track_extra_json(j, &r->x);
    json_object_set_new(j, "model", json_string(info->id));
    json_t *tags = json_object();
    for (int i = 0; r->scores && i < r->n_scores && i < info->n_tags; i++)
        json_object_set_new(tags, info->tags[i], json_real(r->scores[i]));
    json_object_set_new(j, "tags", r->scores ? tags : (json_decref(tags), json_null()));
    if (e->with_emb) {
        json_t *a = json_array();
        for (int i = 0; r->emb && i < r->dim; i++)
            json_array_append_new(a, json_real(r->emb[i]));
        json_object_set_new(j, "embedding", r->emb ? a : (json_decref(a), json_null()));
    }
    char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9));
    json_decref(j);
    int rc = s ? buf_str(e, s) || buf_put(e, "\n", 1) : -1;
    free(s);
    return rc;
}

/* Refills e->buf with the next page. 0 on success (possibly with nothing: finished). */
static int export_refill(export_t *e)
{
    e->len = e->off = 0;
    if (e->csv && !e->header_done) {
        if (csv_header(e)) return -1;
        e->header_done = 1;
    }
    clmr_track_query_t q = clmr_track_query_default();
    q.model_id = e->sm->info.id;
    q.limit = EXPORT_PAGE;
    q.cursor = e->cursor;
    q.with_embedding = e->with_emb;
    clmr_track_row_t *rows = NULL;
    size_t n = 0;
    char *next = NULL, *msg = NULL;
    int rc = clmr_store_track_query(e->srv->store, &q, &rows, &n, NULL, &next, &msg);
    if (rc) {
        CLMR_RLOG_ERROR(e->request_id, "export: %s (%s); the stream is cut short",
                        clmr_strerror(rc), msg ? msg : "");
        free(msg);
        return -1;
    }
    for (size_t i = 0; !rc && i < n; i++)
        rc = e->csv ? csv_row(e, &rows[i]) : jsonl_row(e, &rows[i]);
    clmr_track_rows_free(rows, n);
    free(e->cursor);
    e->cursor = next;
    if (!next) e->finished = 1;
    return rc ? -1 : 0;
}

static ssize_t export_cb(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    export_t *e = cls;
    while (e->off == e->len) {
        if (e->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        if (export_refill(e)) return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t k = e->len - e->off < max ? e->len - e->off : max;
    memcpy(out, e->buf + e->off, k);
    e->off += k;
    return (ssize_t)k;
}

static void export_free(void *cls)
{
    export_t *e = cls;
    clmr__served_release(e->sm);
    free(e->cursor);
    free(e->buf);
    free(e);
}

void clmr__h_export(clmr_http_req_t *req)
{
    const char *format;
    int emb;
    if (arg_text(req, "format", 16, &format) || arg_bool(req, "embeddings", &emb)) return;
    if (!format) format = "jsonl";
    int csv = !strcmp(format, "csv");
    if (!csv && strcmp(format, "jsonl")) {
        bad_arg(req, "format", "jsonl or csv");
        return;
    }
    export_t *e = calloc(1, sizeof *e);
    if (!e) {
        clmr__http_error_clmr(req, CLMR_ENOMEM, NULL);
        return;
    }
    e->srv = req->srv;
    e->sm = req->sm;
    atomic_fetch_add(&e->sm->refs, 1);
    e->csv = csv;
    e->with_emb = emb;
    snprintf(e->request_id, sizeof e->request_id, "%s", req->request_id);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, export_cb, e, export_free);
    if (!r) {
        export_free(e);
        clmr__http_error_clmr(req, CLMR_ENOMEM, NULL);
        return;
    }
    MHD_add_response_header(r, "Content-Disposition",
                            csv ? "attachment; filename=\"clmrd-export.csv\""
                                : "attachment; filename=\"clmrd-export.jsonl\"");
    req->resp_custom = r;
    req->resp_type = csv ? "text/csv; charset=utf-8" : "application/x-ndjson";
    req->status = 200;
    req->done = 1;
}

/* ---------------------------------------------------------------- duplicates in results */

static void root_of(clmr_server_t *s, const char *id, char root[65])
{
    clmr_track_extra_t x;
    snprintf(root, 65, "%s", id);
    if (clmr_store_track_extra_get(s->store, id, &x, NULL) == 0 && x.duplicate_of[0])
        snprintf(root, 65, "%s", x.duplicate_of);
    clmr_track_extra_clear(&x);
}

int clmr__filter_duplicate_hits(clmr_server_t *s, const char *self_id, clmr_index_hit_t *hits,
                                int n, int k, int include_dups)
{
    if (include_dups) return n < k ? n : k;
    char self_root[65] = "";
    if (self_id) root_of(s, self_id, self_root);
    char(*seen)[65] = malloc((size_t)(k > 0 ? k : 1) * sizeof *seen);
    if (!seen) return n < k ? n : k;
    int kept = 0;
    for (int i = 0; i < n && kept < k; i++) {
        char root[65];
        root_of(s, hits[i].id, root);
        if (self_root[0] && !strcmp(root, self_root)) continue;
        int dup = 0;
        for (int j = 0; j < kept && !dup; j++)
            dup = !strcmp(seen[j], root);
        if (dup) continue;
        memcpy(seen[kept], root, 65);
        hits[kept++] = hits[i];
    }
    free(seen);
    return kept;
}

/* ---------------------------------------------------------------- ingest */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

double clmr__ingest_features(clmr_http_req_t *req, const float *samples, size_t n,
                             clmr_track_extra_t *x, uint32_t **fp, int *fp_n)
{
    double t0 = mono_now();
    clmr_descriptors_t d;
    char *msg = NULL;
    if (clmr_descriptors_compute(&d, samples, n, CLMR_SAMPLE_RATE, &msg) == 0) {
        x->bpm = d.bpm;
        x->bpm_confidence = d.bpm_confidence;
        x->onset_rate = d.onset_rate;
        x->loudness_lufs = d.loudness_lufs;
        x->loudness_range_lu = d.loudness_range_lu;
        x->true_peak_dbtp = d.true_peak_dbtp;
    } else {
        CLMR_RLOG_WARN(req->request_id, "descriptors not computed: %s", msg ? msg : "");
    }
    free(msg);
    msg = NULL;
    if (clmr_fingerprint_compute(fp, fp_n, samples, n, CLMR_SAMPLE_RATE, &msg)) {
        CLMR_RLOG_INFO(req->request_id, "no fingerprint (duplicates not detected): %s",
                       msg ? msg : "");
        *fp = NULL;
        *fp_n = 0;
    }
    free(msg);
    return mono_now() - t0;
}

int clmr__search_filtered(clmr_server_t *s, clmr_index_t *idx, const float *q, const char *by_id,
                          const char *exclude_id, int k, int include_dups, clmr_index_hit_t *out,
                          int *n_out)
{
    *n_out = 0;
    int want = include_dups ? k : 4 * k + 16;
    for (;;) {
        if (want > 10000) want = 10000;
        clmr_index_hit_t *hits = malloc((size_t)want * sizeof *hits);
        if (!hits) return CLMR_ENOMEM;
        int n = 0;
        int rc = by_id ? clmr_index_search_id(idx, by_id, want, hits, &n)
                       : clmr_index_search(idx, q, want, exclude_id, hits, &n);
        if (rc) {
            free(hits);
            return rc;
        }
        int kept =
            clmr__filter_duplicate_hits(s, by_id ? by_id : exclude_id, hits, n, k, include_dups);
        /* Too few left after filtering while the index had more: ask for more. */
        if (kept < k && n == want && want < 10000) {
            free(hits);
            want *= 4;
            continue;
        }
        memcpy(out, hits, (size_t)kept * sizeof *hits);
        *n_out = kept;
        free(hits);
        return 0;
    }
}
