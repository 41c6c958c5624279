/* pool.c - the audio pool: atomic FLAC writes, reads, deletes and the orphan walk (see pool.h).
 *
 * DESIGN: durability of a pool file follows the usual POSIX recipe: write a uniquely named temp
 * file in the destination directory (mkstemp), fsync it, rename() it over the final name (atomic
 * within one file system), then fsync the directory so the rename itself is on disk. libsndfile
 * writes through our file descriptor (sf_open_fd), so we can fsync exactly the file it wrote.
 * 24-bit PCM with clipping on: the encoder's float->int conversion would otherwise wrap values
 * just above 1.0 to large negative samples.
 */
#include "store/pool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sndfile.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clmr/error.h"

static int is_hex64(const char *s, size_t len)
{
    if (len != 64) return 0;
    for (size_t i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int clmr_pool_path(const char *pool_dir, const char *sha256, char *buf, size_t size, char *rel,
                   size_t rel_size)
{
    if (!pool_dir || !sha256 || !is_hex64(sha256, strlen(sha256))) return CLMR_EINVAL;
    int n = snprintf(buf, size, "%s/%.2s/%s.flac", pool_dir, sha256, sha256);
    if (n < 0 || (size_t)n >= size) return CLMR_EINVAL;
    if (rel) {
        n = snprintf(rel, rel_size, "pool/%.2s/%s.flac", sha256, sha256);
        if (n < 0 || (size_t)n >= rel_size) return CLMR_EINVAL;
    }
    return 0;
}

static int io_err(int e, char **errmsg, const char *what, const char *path)
{
    int code = (e == ENOSPC || e == EDQUOT) ? CLMR_EDB_FULL : CLMR_EIO;
    return clmr_set_err(errmsg, code, "%s %s: %s", what, path, strerror(e));
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

int clmr_pool_write(const char *pool_dir, const char *sha256, const float *x, size_t n,
                    char **errmsg)
{
    char path[4096], dir[4096], tmp[4200];
    if (clmr_pool_path(pool_dir, sha256, path, sizeof path, NULL, 0))
        return clmr_set_err(errmsg, CLMR_EINVAL, "invalid pool id or path");
    if (!x || n == 0 || n > (size_t)INT32_MAX * 8)
        return clmr_set_err(errmsg, CLMR_EINVAL, "no samples to store");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return clmr_set_err(errmsg, CLMR_EINVAL, "sample %zu is not finite", i);
    snprintf(dir, sizeof dir, "%s/%.2s", pool_dir, sha256);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return io_err(errno, errmsg, "mkdir", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return io_err(errno, errmsg, "create", tmp);

    int rc = 0;
    SF_INFO info = {
        .samplerate = CLMR_POOL_RATE, .channels = 1, .format = SF_FORMAT_FLAC | SF_FORMAT_PCM_24};
    SNDFILE *sf = sf_open_fd(fd, SFM_WRITE, &info, 0 /* we close fd ourselves */);
    if (!sf) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "libsndfile cannot write %s: %s", tmp,
                          sf_strerror(NULL));
        goto fail;
    }
    sf_command(sf, SFC_SET_CLIPPING, NULL, SF_TRUE);
    errno = 0;
    sf_count_t w = sf_write_float(sf, x, (sf_count_t)n);
    int sferr = sf_error(sf);
    if (sf_close(sf) != 0 || w != (sf_count_t)n || sferr) {
        /* libsndfile hides errno; look at the disk ourselves to report "full" properly. */
        int e = errno ? errno : EIO;
        rc = io_err(e, errmsg, "write", tmp);
        goto fail;
    }
    if (fsync(fd) != 0) {
        rc = io_err(errno, errmsg, "fsync", tmp);
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = io_err(errno, errmsg, "close", tmp);
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = io_err(errno, errmsg, "rename", tmp);
        goto fail;
    }
    if (fsync_dir(dir) != 0) return io_err(errno, errmsg, "fsync directory", dir);
    return 0;
fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    return rc;
}

int clmr_pool_read(const char *pool_dir, const char *sha256, float **x, size_t *n, char **errmsg)
{
    char path[4096];
    *x = NULL;
    *n = 0;
    if (clmr_pool_path(pool_dir, sha256, path, sizeof path, NULL, 0))
        return clmr_set_err(errmsg, CLMR_EINVAL, "invalid pool id or path");
    SF_INFO info = {0};
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) {
        if (access(path, F_OK) != 0)
            return clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no pool file for %s", sha256);
        return clmr_set_err(errmsg, CLMR_EIO, "cannot read %s: %s", path, sf_strerror(NULL));
    }
    int rc = 0;
    float *buf = NULL;
    if (info.samplerate != CLMR_POOL_RATE || info.channels != 1 || info.frames <= 0) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "%s is not %d Hz mono audio", path, CLMR_POOL_RATE);
        goto out;
    }
    buf = malloc((size_t)info.frames * sizeof *buf);
    if (!buf) {
        rc = CLMR_ENOMEM;
        goto out;
    }
    sf_count_t got = sf_readf_float(sf, buf, info.frames);
    if (got != info.frames) {
        rc = clmr_set_err(errmsg, CLMR_EIO, "%s is truncated (%lld of %lld samples)", path,
                          (long long)got, (long long)info.frames);
        goto out;
    }
    *x = buf;
    *n = (size_t)got;
    buf = NULL;
out:
    free(buf);
    sf_close(sf);
    return rc;
}

int clmr_pool_exists(const char *pool_dir, const char *sha256)
{
    char path[4096];
    if (clmr_pool_path(pool_dir, sha256, path, sizeof path, NULL, 0)) return 0;
    return access(path, F_OK) == 0;
}

int clmr_pool_delete(const char *pool_dir, const char *sha256, char **errmsg)
{
    char path[4096], dir[4096];
    if (clmr_pool_path(pool_dir, sha256, path, sizeof path, NULL, 0))
        return clmr_set_err(errmsg, CLMR_EINVAL, "invalid pool id or path");
    if (unlink(path) != 0) {
        if (errno == ENOENT)
            return clmr_set_err(errmsg, CLMR_ENOT_FOUND, "no pool file for %s", sha256);
        return io_err(errno, errmsg, "unlink", path);
    }
    snprintf(dir, sizeof dir, "%s/%.2s", pool_dir, sha256);
    fsync_dir(dir); /* best effort: a resurrected file after power loss is swept as an orphan */
    return 0;
}

int clmr_pool_list_orphans(const char *pool_dir, clmr_pool_known_cb is_known, void *known_ud,
                           clmr_pool_orphan_cb cb, void *ud, char **errmsg)
{
    DIR *top = opendir(pool_dir);
    if (!top) {
        if (errno == ENOENT) return 0;
        return io_err(errno, errmsg, "opendir", pool_dir);
    }
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(top))) {
        const char *sub = de->d_name;
        if (strlen(sub) != 2 || !strchr("0123456789abcdef", sub[0]) ||
            !strchr("0123456789abcdef", sub[1]))
            continue;
        char dpath[4096];
        snprintf(dpath, sizeof dpath, "%s/%s", pool_dir, sub);
        DIR *d = opendir(dpath);
        if (!d) continue;
        struct dirent *fe;
        while (!rc && (fe = readdir(d))) {
            const char *name = fe->d_name;
            size_t len = strlen(name);
            char path[4200];
            if (len < 69 || !is_hex64(name, 64) || strncmp(name, sub, 2) != 0) continue;
            snprintf(path, sizeof path, "%s/%s", dpath, name);
            if (strcmp(name + 64, ".flac") == 0) {
                char sha[65];
                memcpy(sha, name, 64);
                sha[64] = '\0';
                if (!is_known(known_ud, sha)) rc = cb(ud, path, 0);
            } else if (strncmp(name + 64, ".flac.tmp.", 10) == 0) {
                rc = cb(ud, path, 1);
            }
        }
        closedir(d);
    }
    closedir(top);
    return rc;
}
