/* ingest_files.c - which files `clmrd ingest` takes, and their sha256.
 *
 * DESIGN: folders are walked with nftw (no symlinks followed, so a link loop cannot trap the walk;
 * hidden files and folders are skipped, as are names without an audio extension: cover images and
 * playlists would only be refused by the server). A file named explicitly is always taken. The
 * sha256 is the track id the server derives from the same bytes, so a file can be looked up
 * before it is uploaded.
 */
#include "cli/ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libavutil/mem.h>
#include <libavutil/sha.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

int clmr_ingest_is_audio_name(const char *name)
{
    static const char *const ext[] = {"wav",  "flac", "mp3", "ogg", "oga", "opus", "m4a", "aac",
                                      "aiff", "aif",  "wv",  "ape", "mka", "webm", "mp4", "wma"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot + 1, ext[i])) return 1;
    return 0;
}

/* nftw has no user pointer: the walk in progress (one at a time, main thread only). */
static clmr_ingest_file_cb g_cb;
static void *g_ud;

static int visit(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    const char *base = path + ftw->base;
    if (ftw->level > 0 && base[0] == '.') return type == FTW_D ? FTW_SKIP_SUBTREE : FTW_CONTINUE;
    if (type != FTW_F || !S_ISREG(sb->st_mode) || !clmr_ingest_is_audio_name(base))
        return FTW_CONTINUE;
    return g_cb(g_ud, path) ? FTW_STOP : FTW_CONTINUE;
}

int clmr_ingest_walk(const char *path, clmr_ingest_file_cb cb, void *ud, char *err, size_t errcap)
{
    char abs[PATH_MAX];
    struct stat sb;
    if (!realpath(path, abs) || stat(abs, &sb)) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (S_ISREG(sb.st_mode)) return cb(ud, abs) ? 1 : 0;
    if (!S_ISDIR(sb.st_mode)) {
        snprintf(err, errcap, "%s: not a file or folder", path);
        return -1;
    }
    g_cb = cb;
    g_ud = ud;
    int rc = nftw(abs, visit, 32, FTW_PHYS | FTW_ACTIONRETVAL);
    if (rc == -1) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    return rc == FTW_STOP ? 1 : 0;
}

static int visit_dir(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    if (type != FTW_D) return FTW_CONTINUE;
    if (ftw->level > 0 && path[ftw->base] == '.') return FTW_SKIP_SUBTREE;
    return g_cb(g_ud, path) ? FTW_STOP : FTW_CONTINUE;
}

int clmr_ingest_walk_dirs(const char *path, clmr_ingest_file_cb cb, void *ud, char *err,
                          size_t errcap)
{
    char abs[PATH_MAX];
    if (!realpath(path, abs)) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    g_cb = cb;
    g_ud = ud;
    if (nftw(abs, visit_dir, 32, FTW_PHYS | FTW_ACTIONRETVAL) == -1) {
        snprintf(err, errcap, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int clmr_ingest_sha256_file(const char *path, char out[65])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct AVSHA *sha = av_sha_alloc();
    enum { BLOCK = 1 << 20 };
    uint8_t *buf = malloc(BLOCK);
    int rc = -1;
    if (!sha || !buf || av_sha_init(sha, 256) < 0) {
        errno = ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, BLOCK);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) goto out;
        if (n == 0) break;
        av_sha_update(sha, buf, (unsigned)n);
    }
    uint8_t d[32];
    av_sha_final(sha, d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    rc = 0;
out:
    free(buf);
    av_free(sha);
    close(fd);
    return rc;
}
