/* ingest_state.c - the journal of files `clmrd ingest` has finished, so reruns skip them.
 *
 * DESIGN: a text file of tab-separated lines, one per finished file, appended and flushed as each
 * file finishes (an interrupted run loses at most the files in flight, which the server then
 * recognises by their sha256). A later line for a path overrides an earlier one. On open the
 * journal is read into a chained hash table keyed by path; when it holds more than twice as many
 * lines as paths it is rewritten (atomically, through a temporary file) with one line per path.
 * Line: "v1 TAB d|r TAB size TAB mtime_ns TAB sha256 TAB path TAB reason", where path and reason
 * escape backslash, tab and newline as \\, \t, \n.
 */
#include "cli/ingest.h"
#include "clmr/error.h"

#include <errno.h>
#include <libavutil/mem.h>
#include <libavutil/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct entry {
    struct entry *next;
    char *path, *reason;
    int64_t size, mtime_ns;
    char sha[65];
    int status;
} entry_t;

struct clmr_ingest_state {
    pthread_mutex_t mu;
    FILE *f;
    char *path;
    entry_t **buckets;
    size_t nbuckets, n;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static entry_t *find(clmr_ingest_state_t *st, const char *path)
{
    for (entry_t *e = st->buckets[hash_str(path) % st->nbuckets]; e; e = e->next)
        if (!strcmp(e->path, path)) return e;
    return NULL;
}

static int grow(clmr_ingest_state_t *st)
{
    size_t nb = st->nbuckets * 2;
    entry_t **b = calloc(nb, sizeof *b);
    if (!b) return CLMR_ENOMEM;
    for (size_t i = 0; i < st->nbuckets; i++)
        for (entry_t *e = st->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t k = hash_str(e->path) % nb;
            e->next = b[k];
            b[k] = e;
        }
    free(st->buckets);
    st->buckets = b;
    st->nbuckets = nb;
    return 0;
}

/* Inserts or replaces; takes ownership of path and reason (malloc'd) in every case. */
static int put(clmr_ingest_state_t *st, char *path, int64_t size, int64_t mtime_ns, const char *sha,
               int status, char *reason)
{
    entry_t *e = find(st, path);
    if (e) {
        free(path);
        free(e->reason);
    } else {
        if (st->n + 1 > st->nbuckets && grow(st)) {
            free(path);
            free(reason);
            return CLMR_ENOMEM;
        }
        if (!(e = calloc(1, sizeof *e))) {
            free(path);
            free(reason);
            return CLMR_ENOMEM;
        }
        e->path = path;
        size_t k = hash_str(path) % st->nbuckets;
        e->next = st->buckets[k];
        st->buckets[k] = e;
        st->n++;
    }
    e->size = size;
    e->mtime_ns = mtime_ns;
    e->status = status;
    e->reason = reason;
    snprintf(e->sha, sizeof e->sha, "%s", sha ? sha : "");
    return 0;
}

static void write_escaped(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '\\')
            fputs("\\\\", f);
        else if (*s == '\t')
            fputs("\\t", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
}

/* Unescapes s in place up to the next tab or end; returns a malloc'd copy, NULL on bad input. */
static char *read_field(char **p)
{
    char *s = *p, *end = strchr(s, '\t');
    size_t n = end ? (size_t)(end - s) : strlen(s);
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            *o++ = s[i];
            continue;
        }
        if (++i >= n) {
            free(out);
            return NULL;
        }
        *o++ = s[i] == 't' ? '\t' : s[i] == 'n' ? '\n' : s[i] == '\\' ? '\\' : '?';
    }
    *o = 0;
    *p = end ? end + 1 : s + n;
    return out;
}

static void write_line(FILE *f, const entry_t *e)
{
    fprintf(f, "v1\t%c\t%lld\t%lld\t%s\t", e->status == CLMR_INGEST_REFUSED ? 'r' : 'd',
            (long long)e->size, (long long)e->mtime_ns, e->sha[0] ? e->sha : "-");
    write_escaped(f, e->path);
    fputc('\t', f);
    write_escaped(f, e->reason);
    fputc('\n', f);
}

/* Parses one journal line (without its newline): 0, 1 for a line that is not a record (skipped),
 * or CLMR_ENOMEM. */
static int parse_line(clmr_ingest_state_t *st, char *line)
{
    char kind;
    long long size, mtime;
    char sha[65];
    int used = 0;
    if (sscanf(line, "v1\t%c\t%lld\t%lld\t%64[^\t]\t%n", &kind, &size, &mtime, sha, &used) != 4 ||
        !used || (kind != 'd' && kind != 'r'))
        return 1;
    char *p = line + used;
    char *path = read_field(&p);
    char *reason = path ? read_field(&p) : NULL;
    if (!path || !reason || !path[0]) {
        free(path);
        free(reason);
        return 1; /* malformed escape or empty path (read_field's NULL on OOM is rare enough) */
    }
    if (!reason[0]) {
        free(reason);
        reason = NULL;
    }
    return put(st, path, size, mtime, strcmp(sha, "-") ? sha : "",
               kind == 'r' ? CLMR_INGEST_REFUSED : CLMR_INGEST_DONE, reason);
}

/* Rewrites the journal with one line per path (temporary file + rename). */
static int compact(clmr_ingest_state_t *st)
{
    size_t n = strlen(st->path) + 8;
    char *tmp = malloc(n);
    if (!tmp) return CLMR_ENOMEM;
    snprintf(tmp, n, "%s.tmp", st->path);
    FILE *f = fopen(tmp, "w");
    int rc = f ? 0 : CLMR_EIO;
    for (size_t i = 0; !rc && i < st->nbuckets; i++)
        for (entry_t *e = st->buckets[i]; e; e = e->next)
            write_line(f, e);
    if (f && (fflush(f) || fsync(fileno(f)))) rc = CLMR_EIO;
    if (f && fclose(f)) rc = CLMR_EIO;
    if (!rc && rename(tmp, st->path)) rc = CLMR_EIO;
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

static int mkdirs_for(const char *file)
{
    char *d = strdup(file);
    if (!d) return -1;
    for (char *p = d + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(d, 0700) && errno != EEXIST) {
            free(d);
            return -1;
        }
        *p = '/';
    }
    free(d);
    return 0;
}

int clmr_ingest_state_open(clmr_ingest_state_t **out, const char *path, char **errmsg)
{
    *out = NULL;
    clmr_ingest_state_t *st = calloc(1, sizeof *st);
    if (!st) return CLMR_ENOMEM;
    pthread_mutex_init(&st->mu, NULL);
    st->nbuckets = 1024;
    st->buckets = calloc(st->nbuckets, sizeof *st->buckets);
    st->path = strdup(path);
    int rc = 0;
    if (!st->buckets || !st->path) {
        rc = CLMR_ENOMEM;
        goto fail;
    }
    if (mkdirs_for(path)) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "state file %s: cannot create its directory: %s", path,
                          strerror(errno));
        goto fail;
    }
    size_t lines = 0;
    FILE *in = fopen(path, "r");
    if (in) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, in)) > 0) {
            if (line[len - 1] != '\n') break; /* cut short by a crash: ignored */
            line[len - 1] = 0;
            lines++;
            if (parse_line(st, line) == CLMR_ENOMEM) {
                rc = CLMR_ENOMEM;
                break;
            }
        }
        free(line);
        fclose(in);
        if (rc) goto fail;
    } else if (errno != ENOENT) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "state file %s: %s", path, strerror(errno));
        goto fail;
    }
    if (lines > 2 * st->n + 64 && compact(st)) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "state file %s: cannot rewrite it", path);
        goto fail;
    }
    if (!(st->f = fopen(path, "a"))) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "state file %s: %s", path, strerror(errno));
        goto fail;
    }
    *out = st;
    return 0;
fail:
    clmr_ingest_state_close(&st);
    return rc;
}

int clmr_ingest_state_lookup(clmr_ingest_state_t *st, const char *path, int64_t size,
                             int64_t mtime_ns, const char **reason)
{
    pthread_mutex_lock(&st->mu);
    entry_t *e = find(st, path);
    int status = e && e->size == size && e->mtime_ns == mtime_ns ? e->status : 0;
    if (reason) *reason = status && e->reason ? e->reason : NULL;
    pthread_mutex_unlock(&st->mu);
    return status;
}

int clmr_ingest_state_record(clmr_ingest_state_t *st, const char *path, int64_t size,
                             int64_t mtime_ns, const char *sha256, clmr_ingest_status_t status,
                             const char *reason)
{
    char *p = strdup(path), *r = reason ? strdup(reason) : NULL;
    if (!p || (reason && !r)) {
        free(p);
        free(r);
        return CLMR_ENOMEM;
    }
    pthread_mutex_lock(&st->mu);
    int rc = put(st, p, size, mtime_ns, sha256, (int)status, r);
    if (!rc) {
        write_line(st->f, find(st, path));
        if (fflush(st->f)) rc = CLMR_EIO;
    }
    pthread_mutex_unlock(&st->mu);
    return rc;
}

void clmr_ingest_state_close(clmr_ingest_state_t **pst)
{
    clmr_ingest_state_t *st = pst ? *pst : NULL;
    if (!st) return;
    if (st->f) fclose(st->f);
    for (size_t i = 0; st->buckets && i < st->nbuckets; i++)
        for (entry_t *e = st->buckets[i], *next; e; e = next) {
            next = e->next;
            free(e->path);
            free(e->reason);
            free(e);
        }
    free(st->buckets);
    free(st->path);
    pthread_mutex_destroy(&st->mu);
    free(st);
    *pst = NULL;
}

int clmr_ingest_state_default_path(char *buf, size_t cap, const char *server_url)
{
    const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    char dir[4096];
    if (xdg && xdg[0] == '/')
        snprintf(dir, sizeof dir, "%s", xdg);
    else if (home && home[0])
        snprintf(dir, sizeof dir, "%s/.local/state", home);
    else
        return -1;
    /* One journal per server: two catalogues do not share what they hold. */
    struct AVSHA *sha = av_sha_alloc();
    uint8_t d[32] = {0};
    if (sha && av_sha_init(sha, 256) == 0) {
        av_sha_update(sha, (const uint8_t *)server_url, (unsigned)strlen(server_url));
        av_sha_final(sha, d);
    }
    av_free(sha);
    int n = snprintf(buf, cap, "%s/clmrd/ingest-%02x%02x%02x%02x%02x%02x%02x%02x.tsv", dir, d[0],
                     d[1], d[2], d[3], d[4], d[5], d[6], d[7]);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}
