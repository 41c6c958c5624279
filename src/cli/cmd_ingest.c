/* cmd_ingest.c - `clmrd ingest`: add folders of audio files to a running clmrd's catalogue.
 *
 * DESIGN: the main thread finds files (folder walks, a list file or stdin) and puts their paths on
 * a queue; N worker threads, each with its own HTTP connection (ingest_http.c), take them one at a
 * time: stat, skip when the state journal (ingest_state.c) says the same path, size and mtime was
 * already done, else sha256, ask the server whether it holds that id, and upload only when it does
 * not. The main thread meanwhile draws the progress bar (on a terminal; plain lines otherwise)
 * and, with --watch, turns inotify events into more paths for the queue until it is stopped.
 * The first SIGINT/SIGTERM stops taking new files and lets the ones in flight finish; whatever was
 * finished is in the journal, so the same command resumes the run.
 */
#include "cli/cli.h"
#include "cli/ingest.h"
#include "clmr/error.h"

#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define JOBS_MAX 64

typedef struct {
    char *path, *reason;
} failure_t;

typedef struct {
    /* options */
    const char *server, *key, *state_path, *from;
    int jobs, watch, retries, retry_failed, tty;
    /* the queue of paths, and the counters: all under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **queue;
    size_t qhead, qlen, qcap;
    int closed;
    size_t found, done, uploaded, existed, unchanged, refused_before, failed, retried_503;
    failure_t *failures;
    size_t nfail, capfail;
    int auth_failed;
    char auth_msg[512];
    double t0;
    clmr_ingest_state_t *state;
} run_t;

static run_t *g_run; /* for the stop callback of the HTTP client */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int should_stop(void)
{
    return clmr_cli_stop_requested() || (g_run && g_run->auth_failed);
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: clmrd ingest [OPTIONS] PATH...\n\n"
        "Add audio files to the catalogue of a running clmrd (POST /v1/tracks). Folders are\n"
        "walked recursively (audio file names only; hidden entries skipped). Files already in\n"
        "the catalogue are not uploaded: unchanged ones (same path, size and mtime as in the\n"
        "state file) are not even read again, others are looked up by their sha256 first.\n"
        "An interrupted run resumes where it stopped when started again.\n\n"
        "Options:\n"
        "  --server URL     the daemon or a proxy in front of it (default $CLMRD_SERVER, then\n"
        "                   http://127.0.0.1:8080)\n"
        "  --key KEY        API key, sent as 'Authorization: Bearer KEY' (default\n"
        "                   $CLMRD_API_KEY)\n"
        "  --jobs N         parallel uploads (default 2, at most %d)\n"
        "  --watch          after the first pass keep running and ingest new or changed files\n"
        "                   in the folders (inotify) until interrupted\n"
        "  --from FILE      also read paths from FILE, one per line ('-' = standard input)\n"
        "  --state FILE     the state file (default $XDG_STATE_HOME/clmrd/ingest-<server>.tsv)\n"
        "  --retries N      retries of one request on 503/429/408/connection errors, waiting\n"
        "                   for Retry-After or an exponential backoff (default 8)\n"
        "  --retry-failed   upload again files the server refused before (default: skipped\n"
        "                   while they are unchanged)\n"
        "  -h, --help       this help\n\n"
        "Output: a progress bar (files/s, ETA, failures) on a terminal, else one line per file;\n"
        "then a summary that lists every failed file and why.\n\n"
        "Exit status: 0 when every file is in the catalogue (or was refused in an earlier run),\n"
        "1 when any file failed, 2 on usage errors, 130 when interrupted (run it again to\n"
        "resume).\n",
        JOBS_MAX);
}

/* ---------------------------------------------------------------- queue */

static int push(run_t *r, const char *path)
{
    char *p = strdup(path);
    if (!p) return -1;
    pthread_mutex_lock(&r->mu);
    if (r->qhead + r->qlen == r->qcap) {
        if (r->qhead > 0) { /* reuse the consumed front */
            memmove(r->queue, r->queue + r->qhead, r->qlen * sizeof *r->queue);
            r->qhead = 0;
        }
        if (r->qlen == r->qcap) {
            size_t cap = r->qcap ? 2 * r->qcap : 256;
            char **q = realloc(r->queue, cap * sizeof *q);
            if (!q) {
                pthread_mutex_unlock(&r->mu);
                free(p);
                return -1;
            }
            r->queue = q;
            r->qcap = cap;
        }
    }
    r->queue[r->qhead + r->qlen++] = p;
    r->found++;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

/* The next path (malloc'd), or NULL when the queue is closed and empty or the run stops. */
static char *pop(run_t *r)
{
    pthread_mutex_lock(&r->mu);
    while (!r->qlen && !r->closed && !should_stop()) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000 * 1000; /* re-check the stop flag now and then */
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    char *p = NULL;
    if (r->qlen && !should_stop()) {
        p = r->queue[r->qhead++];
        r->qlen--;
    }
    pthread_mutex_unlock(&r->mu);
    return p;
}

static void close_queue(run_t *r)
{
    pthread_mutex_lock(&r->mu);
    r->closed = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------- per file */

typedef enum {
    F_UPLOADED,
    F_EXISTED,
    F_UNCHANGED,
    F_REFUSED_BEFORE,
    F_FAILED,
    F_STOPPED
} outcome_t;

static void clear_bar(const run_t *r)
{
    if (r->tty) fputs("\r\033[K", stderr);
}

/* Counts a finished file and reports it (a line, or above the bar on a terminal). */
static void finish(run_t *r, const char *path, outcome_t o, const char *detail)
{
    pthread_mutex_lock(&r->mu);
    if (o == F_STOPPED) {
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->done++;
    static const char *const word[] = {"uploaded", "exists", "unchanged", "refused-before",
                                       "failed"};
    switch (o) {
    case F_UPLOADED:
        r->uploaded++;
        break;
    case F_EXISTED:
        r->existed++;
        break;
    case F_UNCHANGED:
        r->unchanged++;
        break;
    case F_REFUSED_BEFORE:
        r->refused_before++;
        break;
    default:
        r->failed++;
        break;
    }
    if (o == F_FAILED || o == F_REFUSED_BEFORE) {
        if (r->nfail == r->capfail) {
            size_t cap = r->capfail ? 2 * r->capfail : 16;
            failure_t *f = realloc(r->failures, cap * sizeof *f);
            if (f) {
                r->failures = f;
                r->capfail = cap;
            }
        }
        if (r->nfail < r->capfail) {
            r->failures[r->nfail].path = strdup(path);
            r->failures[r->nfail].reason = strdup(detail ? detail : "");
            if (o == F_REFUSED_BEFORE && r->failures[r->nfail].reason) {
                char *t = malloc(strlen(detail ? detail : "") + 64);
                if (t) {
                    sprintf(t, "refused in an earlier run: %s", detail ? detail : "");
                    free(r->failures[r->nfail].reason);
                    r->failures[r->nfail].reason = t;
                }
            }
            r->nfail++;
        }
    }
    if (r->tty) {
        if (o == F_FAILED) {
            clear_bar(r);
            fprintf(stderr, "failed: %s: %s\n", path, detail ? detail : "");
        }
    } else if (o != F_UNCHANGED) {
        printf("[%zu/%zu] %s %s%s%s\n", r->done, r->found, word[o], path, detail ? ": " : "",
               detail ? detail : "");
        fflush(stdout);
    }
    pthread_mutex_unlock(&r->mu);
}

static void process(run_t *r, clmr_ingest_http_t *h, const char *path)
{
    struct stat sb;
    char msg[1024] = "";
    int st_rc = stat(path, &sb);
    if (st_rc || !S_ISREG(sb.st_mode)) {
        snprintf(msg, sizeof msg, "cannot read: %s", st_rc ? strerror(errno) : "not a file");
        finish(r, path, F_FAILED, msg);
        return;
    }
    int64_t size = (int64_t)sb.st_size;
    int64_t mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
    const char *reason = NULL;
    int known = clmr_ingest_state_lookup(r->state, path, size, mtime, &reason);
    if (known == CLMR_INGEST_DONE) {
        finish(r, path, F_UNCHANGED, NULL);
        return;
    }
    if (known == CLMR_INGEST_REFUSED && !r->retry_failed) {
        finish(r, path, F_REFUSED_BEFORE, reason);
        return;
    }
    char sha[65];
    if (clmr_ingest_sha256_file(path, sha)) {
        snprintf(msg, sizeof msg, "cannot read: %s", strerror(errno));
        finish(r, path, F_FAILED, msg);
        return;
    }
    clmr_ingest_result_t res = clmr_ingest_http_exists(h, sha, msg, sizeof msg);
    int retried = 0;
    if (res == CLMR_INGEST_MISSING) {
        res = clmr_ingest_http_upload(h, path, msg, sizeof msg, &retried);
        if (retried) {
            pthread_mutex_lock(&r->mu);
            r->retried_503 += (size_t)retried;
            pthread_mutex_unlock(&r->mu);
        }
    }
    switch (res) {
    case CLMR_INGEST_OK:
    case CLMR_INGEST_EXISTS:
        if (clmr_ingest_state_record(r->state, path, size, mtime, sha, CLMR_INGEST_DONE, NULL))
            fprintf(stderr, "clmrd ingest: warning: cannot write the state file\n");
        finish(r, path, res == CLMR_INGEST_OK ? F_UPLOADED : F_EXISTED, NULL);
        break;
    case CLMR_INGEST_REFUSE:
        clmr_ingest_state_record(r->state, path, size, mtime, sha, CLMR_INGEST_REFUSED, msg);
        finish(r, path, F_FAILED, msg);
        break;
    case CLMR_INGEST_AUTH:
        pthread_mutex_lock(&r->mu);
        if (!r->auth_failed) snprintf(r->auth_msg, sizeof r->auth_msg, "%s", msg);
        r->auth_failed = 1;
        pthread_mutex_unlock(&r->mu);
        finish(r, path, F_STOPPED, NULL);
        break;
    case CLMR_INGEST_STOPPED:
        finish(r, path, F_STOPPED, NULL);
        break;
    default:
        finish(r, path, F_FAILED, msg[0] ? msg : "request failed");
    }
}

typedef struct {
    run_t *r;
    clmr_ingest_http_t *h;
    pthread_t th;
    int started;
} worker_t;

static void *worker_main(void *p)
{
    worker_t *w = p;
    char *path;
    while ((path = pop(w->r))) {
        process(w->r, w->h, path);
        free(path);
    }
    return NULL;
}

/* ---------------------------------------------------------------- progress */

static void fmt_duration(char *buf, size_t cap, double s)
{
    if (!(s >= 0) || s > 99 * 3600) {
        snprintf(buf, cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, cap, "%ld:%02ld", t / 60, t % 60);
}

static void draw_bar(run_t *r, int walking)
{
    if (!r->tty) return;
    pthread_mutex_lock(&r->mu);
    double el = now_s() - r->t0;
    double rate = el > 0 ? (double)r->done / el : 0;
    size_t left = r->found - r->done;
    char eta[32];
    fmt_duration(eta, sizeof eta, rate > 0 && !walking ? (double)left / rate : -1);
    enum { W = 28 };
    int fill = r->found ? (int)((double)r->done / (double)r->found * W) : 0;
    char bar[W + 1];
    for (int i = 0; i < W; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[W] = 0;
    fprintf(stderr, "\r\033[K[%s] %zu/%zu%s files  %.1f files/s  ETA %s  %zu failed", bar, r->done,
            r->found, walking ? "+" : "", rate, eta, r->failed);
    fflush(stderr);
    pthread_mutex_unlock(&r->mu);
}

/* ---------------------------------------------------------------- inputs */

static int push_cb(void *ud, const char *path)
{
    run_t *r = ud;
    if (should_stop()) return 1;
    if (push(r, path)) return 1;
    draw_bar(r, 1);
    return 0;
}

static int read_list(run_t *r, const char *file)
{
    FILE *f = strcmp(file, "-") ? fopen(file, "r") : stdin;
    if (!f) {
        fprintf(stderr, "clmrd ingest: --from: %s: %s\n", file, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = 0;
    while ((n = getline(&line, &cap, f)) > 0 && !should_stop()) {
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
            line[--n] = 0;
        if (!n) continue;
        char err[PATH_MAX + 128];
        if (clmr_ingest_walk(line, push_cb, r, err, sizeof err) < 0)
            finish(r, line, F_FAILED, "cannot read it (no such file or folder?)");
    }
    free(line);
    if (f != stdin) fclose(f);
    return rc;
}

/* ---------------------------------------------------------------- --watch */

typedef struct {
    int fd;
    struct {
        int wd;
        char *dir;
    } * w;
    size_t n, cap;
} watch_t;

static int add_watch_cb(void *ud, const char *dir)
{
    watch_t *wt = ud;
    int wd = inotify_add_watch(
        wt->fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_ONLYDIR | IN_DONT_FOLLOW);
    if (wd < 0) {
        fprintf(stderr, "clmrd ingest: --watch: %s: %s\n", dir, strerror(errno));
        return 0;
    }
    for (size_t i = 0; i < wt->n; i++)
        if (wt->w[i].wd == wd) return 0; /* already watched */
    if (wt->n == wt->cap) {
        size_t cap = wt->cap ? 2 * wt->cap : 64;
        void *p = realloc(wt->w, cap * sizeof *wt->w);
        if (!p) return 1;
        wt->w = p;
        wt->cap = cap;
    }
    wt->w[wt->n].wd = wd;
    wt->w[wt->n].dir = strdup(dir);
    if (wt->w[wt->n].dir) wt->n++;
    return 0;
}

static const char *watch_dir(const watch_t *wt, int wd)
{
    for (size_t i = 0; i < wt->n; i++)
        if (wt->w[i].wd == wd) return wt->w[i].dir;
    return NULL;
}

/* Reads pending inotify events and queues the files they name. */
static void watch_events(run_t *r, watch_t *wt)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t len = read(wt->fd, buf, sizeof buf);
    for (char *p = buf; len > 0 && p < buf + len;) {
        const struct inotify_event *ev = (const struct inotify_event *)p;
        p += sizeof *ev + ev->len;
        const char *dir = watch_dir(wt, ev->wd);
        if (!dir || !ev->len || ev->name[0] == '.') continue;
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%s/%s", dir, ev->name) >= (int)sizeof full) continue;
        char err[PATH_MAX + 128];
        if (ev->mask & IN_ISDIR) {
            if (ev->mask & (IN_CREATE | IN_MOVED_TO)) {
                /* a new folder: watch it and take what is already inside */
                clmr_ingest_walk_dirs(full, add_watch_cb, wt, err, sizeof err);
                clmr_ingest_walk(full, push_cb, r, err, sizeof err);
            }
        } else if ((ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) &&
                   clmr_ingest_is_audio_name(ev->name)) {
            push(r, full);
        }
    }
}

/* ---------------------------------------------------------------- the command */

static void print_summary(run_t *r, int interrupted)
{
    double el = now_s() - r->t0;
    clear_bar(r);
    printf(
        "ingest: %zu file%s: %zu uploaded, %zu already in the catalogue, %zu unchanged since the "
        "last run, %zu failed",
        r->done, r->done == 1 ? "" : "s", r->uploaded, r->existed, r->unchanged, r->failed);
    if (r->refused_before) printf(", %zu refused in an earlier run", r->refused_before);
    printf(" (%.1f s, %.1f files/s", el, el > 0 ? (double)r->done / el : 0.0);
    if (r->retried_503) printf(", %zu overload answers retried", r->retried_503);
    printf(")\n");
    for (size_t i = 0; i < r->nfail; i++)
        printf("  %s %s: %s\n",
               strncmp(r->failures[i].reason, "refused in", 10) ? "failed" : "skipped",
               r->failures[i].path, r->failures[i].reason);
    if (r->refused_before) printf("  (--retry-failed uploads refused files again)\n");
    if (interrupted)
        printf("interrupted: %zu file%s not processed; run the same command again to resume\n",
               r->found - r->done, r->found - r->done == 1 ? "" : "s");
    fflush(stdout);
}

int clmr_cli_ingest(int argc, char **argv);
int clmr_cli_ingest(int argc, char **argv)
{
    run_t r;
    memset(&r, 0, sizeof r);
    r.jobs = 2;
    r.retries = 8;
    r.server = getenv("CLMRD_SERVER");
    r.key = getenv("CLMRD_API_KEY");
    enum {
        OPT_SERVER = 256,
        OPT_KEY,
        OPT_JOBS,
        OPT_WATCH,
        OPT_FROM,
        OPT_STATE,
        OPT_RETRIES,
        OPT_RF
    };
    static const struct option longopts[] = {
        {"server", required_argument, NULL, OPT_SERVER},
        {"key", required_argument, NULL, OPT_KEY},
        {"jobs", required_argument, NULL, OPT_JOBS},
        {"watch", no_argument, NULL, OPT_WATCH},
        {"from", required_argument, NULL, OPT_FROM},
        {"state", required_argument, NULL, OPT_STATE},
        {"retries", required_argument, NULL, OPT_RETRIES},
        {"retry-failed", no_argument, NULL, OPT_RF},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_SERVER:
            r.server = optarg;
            break;
        case OPT_KEY:
            r.key = optarg;
            break;
        case OPT_JOBS:
            if (clmr_cli_parse_int(&r.jobs, optarg, 1, JOBS_MAX, "ingest", "--jobs")) return 2;
            break;
        case OPT_WATCH:
            r.watch = 1;
            break;
        case OPT_FROM:
            r.from = optarg;
            break;
        case OPT_STATE:
            r.state_path = optarg;
            break;
        case OPT_RETRIES:
            if (clmr_cli_parse_int(&r.retries, optarg, 0, 100, "ingest", "--retries")) return 2;
            break;
        case OPT_RF:
            r.retry_failed = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            return clmr_cli_bad_option("ingest", argv, c);
        }
    }
    if (optind >= argc && !r.from) {
        fprintf(stderr, "clmrd ingest: no files or folders given (see clmrd ingest --help)\n");
        return 2;
    }
    if (!r.server || !r.server[0]) r.server = "http://127.0.0.1:8080";
    if (strncmp(r.server, "http://", 7) && strncmp(r.server, "https://", 8)) {
        fprintf(stderr, "clmrd ingest: --server: expected an http:// or https:// URL, got '%s'\n",
                r.server);
        return 2;
    }
    char state_path[PATH_MAX];
    if (r.state_path) {
        snprintf(state_path, sizeof state_path, "%s", r.state_path);
    } else if (clmr_ingest_state_default_path(state_path, sizeof state_path, r.server)) {
        fprintf(stderr, "clmrd ingest: neither XDG_STATE_HOME nor HOME is set: use --state FILE\n");
        return 2;
    }
    char *msg = NULL;
    if (clmr_ingest_state_open(&r.state, state_path, &msg)) {
        fprintf(stderr, "clmrd ingest: %s\n", msg ? msg : "cannot open the state file");
        free(msg);
        return 1;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
        fprintf(stderr, "clmrd ingest: cannot initialise libcurl\n");
        clmr_ingest_state_close(&r.state);
        return 1;
    }
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    r.tty = isatty(STDERR_FILENO);
    r.t0 = now_s();
    g_run = &r;
    clmr_cli_catch_stop_signals();

    int status = 0;
    watch_t wt = {.fd = -1};
    worker_t workers[JOBS_MAX];
    memset(workers, 0, sizeof workers);
    clmr_ingest_http_params_t hp = {.server = r.server,
                                    .api_key = r.key,
                                    .retries = r.retries,
                                    .max_backoff_s = 30,
                                    .stop = should_stop};
    for (int i = 0; i < r.jobs; i++) {
        workers[i].r = &r;
        if (clmr_ingest_http_open(&workers[i].h, &hp) ||
            pthread_create(&workers[i].th, NULL, worker_main, &workers[i])) {
            fprintf(stderr, "clmrd ingest: cannot start worker %d\n", i);
            status = 1;
            break;
        }
        workers[i].started = 1;
    }
    if (!status && r.watch) {
        wt.fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (wt.fd < 0) {
            fprintf(stderr, "clmrd ingest: --watch: inotify: %s\n", strerror(errno));
            status = 1;
        }
        /* Watches first, then the walk: a file written during the walk is not missed. */
        for (int i = optind; !status && i < argc; i++) {
            struct stat sb;
            char err[PATH_MAX + 128];
            if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode))
                clmr_ingest_walk_dirs(argv[i], add_watch_cb, &wt, err, sizeof err);
        }
    }
    for (int i = optind; !status && i < argc && !should_stop(); i++) {
        char err[PATH_MAX + 128];
        if (clmr_ingest_walk(argv[i], push_cb, &r, err, sizeof err) < 0)
            finish(&r, argv[i], F_FAILED, "cannot read it (no such file or folder?)");
    }
    if (!status && r.from) read_list(&r, r.from);
    if (!r.watch || status) close_queue(&r);

    /* Until the queue is drained (or, with --watch, until stopped). */
    for (;;) {
        pthread_mutex_lock(&r.mu);
        int idle = r.done == r.found && r.qlen == 0;
        pthread_mutex_unlock(&r.mu);
        if (should_stop() || (!r.watch && idle) || status) break;
        if (r.watch && wt.fd >= 0) {
            struct pollfd pfd = {.fd = wt.fd, .events = POLLIN};
            if (poll(&pfd, 1, 200) > 0) watch_events(&r, &wt);
        } else {
            struct timespec ts = {0, 100 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        draw_bar(&r, 0);
    }
    close_queue(&r);
    for (int i = 0; i < r.jobs; i++)
        if (workers[i].started) pthread_join(workers[i].th, NULL);
    draw_bar(&r, 0);
    int interrupted = clmr_cli_stop_requested() && !r.watch && r.done < r.found;
    print_summary(&r, interrupted);
    if (r.auth_failed) {
        fprintf(stderr, "clmrd ingest: the server refused the API key (%s); stopped\n", r.auth_msg);
        status = 1;
    }
    if (!status) status = interrupted ? 130 : r.failed ? 1 : 0;

    for (int i = 0; i < r.jobs; i++)
        clmr_ingest_http_close(&workers[i].h);
    if (wt.fd >= 0) close(wt.fd);
    for (size_t i = 0; i < wt.n; i++)
        free(wt.w[i].dir);
    free(wt.w);
    for (size_t i = 0; i < r.qlen; i++)
        free(r.queue[r.qhead + i]);
    free(r.queue);
    for (size_t i = 0; i < r.nfail; i++) {
        free(r.failures[i].path);
        free(r.failures[i].reason);
    }
    free(r.failures);
    clmr_ingest_state_close(&r.state);
    curl_global_cleanup();
    g_run = NULL;
    pthread_cond_destroy(&r.cv);
    pthread_mutex_destroy(&r.mu);
    return status;
}
