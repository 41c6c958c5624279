/* ingest.h - the parts of `clmrd ingest` (cmd_ingest.c): the local state journal, the file walk
 * and the HTTP client. Internal to src/cli.
 *
 * DESIGN: the client never trusts its own memory of the catalogue more than the server's: the
 * state journal only lets it skip files whose path, size and mtime are unchanged since they were
 * last ingested (or refused); anything else is hashed and the server is asked whether it holds
 * that sha256 before any byte is uploaded. The journal is appended line by line as files finish,
 * so an interrupted run (Ctrl-C, kill -9, a crash) resumes where it stopped.
 */
#ifndef CLMR_CLI_INGEST_H
#define CLMR_CLI_INGEST_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- state journal (ingest_state.c)
 */

typedef enum { CLMR_INGEST_DONE = 1, CLMR_INGEST_REFUSED = 2 } clmr_ingest_status_t;

typedef struct clmr_ingest_state clmr_ingest_state_t;

/* Opens (creating directories and the file as needed) the journal at path and loads it. Lines it
 * cannot parse are ignored (a line cut short by a crash is the only expected case). Returns 0, or
 * a negative clmr error code with *errmsg (malloc'd) set. */
int clmr_ingest_state_open(clmr_ingest_state_t **out, const char *path, char **errmsg);

/* Looks path up. Returns the recorded status when an entry for path exists with the same size and
 * mtime (ns), else 0. reason (may be NULL) receives a pointer to the stored reason of a refusal,
 * valid until the state is closed. Thread-safe. */
int clmr_ingest_state_lookup(clmr_ingest_state_t *st, const char *path, int64_t size,
                             int64_t mtime_ns, const char **reason);

/* Records a finished file and appends it to the journal (flushed before returning). reason is the
 * server's message for CLMR_INGEST_REFUSED, else NULL. Returns 0 or CLMR_EIO / CLMR_ENOMEM.
 * Thread-safe. */
int clmr_ingest_state_record(clmr_ingest_state_t *st, const char *path, int64_t size,
                             int64_t mtime_ns, const char *sha256, clmr_ingest_status_t status,
                             const char *reason);

/* Closes the journal (NULL allowed; sets *st to NULL). */
void clmr_ingest_state_close(clmr_ingest_state_t **st);

/* The default journal for a server URL: $XDG_STATE_HOME/clmrd/ingest-<16 hex of sha256(url)>.tsv
 * ($HOME/.local/state when XDG_STATE_HOME is unset). Returns 0, or -1 when neither is set. */
int clmr_ingest_state_default_path(char *buf, size_t cap, const char *server_url);

/* ---------------------------------------------------------------- files (ingest_files.c) */

/* Whether a file name has an audio extension the walk picks up (wav, flac, mp3, ogg, opus, m4a,
 * aac, aiff, aif, wv, ape, mka, webm, mp4, wma; case-insensitive). */
int clmr_ingest_is_audio_name(const char *name);

/* Called for each file found; returns 0 to continue, non-zero to stop the walk. */
typedef int (*clmr_ingest_file_cb)(void *ud, const char *path);

/* Walks path: a directory is walked recursively (hidden entries skipped, symlinks not followed,
 * only audio names taken); a regular file is passed as it is. Paths are made absolute. Returns
 * 0, or -1 when path cannot be read (with a message in err). */
int clmr_ingest_walk(const char *path, clmr_ingest_file_cb cb, void *ud, char *err, size_t errcap);

/* Calls cb for path and every folder below it (same rules as clmr_ingest_walk), absolute paths:
 * what --watch puts inotify watches on. Returns 0, or -1 with a message in err. */
int clmr_ingest_walk_dirs(const char *path, clmr_ingest_file_cb cb, void *ud, char *err,
                          size_t errcap);

/* sha256 of a file, streamed in 1 MiB blocks, as 64 lowercase hex digits. Returns 0 or -1 (errno
 * set). */
int clmr_ingest_sha256_file(const char *path, char out[65]);

/* ---------------------------------------------------------------- HTTP client (ingest_http.c) */

typedef struct {
    const char *server;  /* base URL, no trailing slash needed */
    const char *api_key; /* sent as Authorization: Bearer; NULL = none */
    int retries;         /* attempts after the first on 503/429/408/connection errors */
    double max_backoff_s;
    int (*stop)(void); /* polled while waiting; non-zero aborts the wait */
} clmr_ingest_http_params_t;

typedef enum {
    CLMR_INGEST_OK = 0,      /* uploaded (201) or already catalogued (200) */
    CLMR_INGEST_EXISTS = 1,  /* GET found the sha256 in the catalogue */
    CLMR_INGEST_MISSING = 2, /* GET answered 404 */
    CLMR_INGEST_REFUSE = 3,  /* the server refused the file (4xx about the file): permanent */
    CLMR_INGEST_FAIL = 4,    /* transient failure that outlived the retries, or 5xx */
    CLMR_INGEST_AUTH = 5,    /* 401/403: the key is wrong; stop the whole run */
    CLMR_INGEST_STOPPED = 6, /* the stop callback asked to stop during a wait */
} clmr_ingest_result_t;

typedef struct clmr_ingest_http clmr_ingest_http_t;

/* One connection (libcurl easy handle) for one worker thread. curl_global_init must have been
 * called. Returns 0 or CLMR_ENOMEM. */
int clmr_ingest_http_open(clmr_ingest_http_t **out, const clmr_ingest_http_params_t *p);
void clmr_ingest_http_close(clmr_ingest_http_t **h);

/* GET /v1/tracks/{sha256}: EXISTS, MISSING, or an error result with msg filled. */
clmr_ingest_result_t clmr_ingest_http_exists(clmr_ingest_http_t *h, const char *sha256, char *msg,
                                             size_t msgcap);

/* POST /v1/tracks (multipart, the file streamed from disk): OK, or an error result with msg
 * filled (the server's error message when it sent one). *retried counts 503/429 answers. */
clmr_ingest_result_t clmr_ingest_http_upload(clmr_ingest_http_t *h, const char *path, char *msg,
                                             size_t msgcap, int *retried);

#endif
