/* dirlock.c - the data directory lock (dirlock.h). */
#include "util/dirlock.h"
#include "clmr/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static int mkdirs(const char *dir)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

int clmr_dirlock_acquire(int *fd_out, const char *dir, char **errmsg)
{
    *fd_out = -1;
    char path[4200];
    if (snprintf(path, sizeof path, "%s/clmrd.lock", dir) >= (int)sizeof path)
        return clmr_set_err(errmsg, CLMR_EINVAL, "data directory path too long");
    if (mkdirs(dir))
        return clmr_set_err(errmsg, CLMR_EIO, "cannot create the data directory %s: %s", dir,
                            strerror(errno));
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return clmr_set_err(errmsg, CLMR_EIO, "cannot open %s: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        char buf[32] = "";
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = 0;
        buf[strcspn(buf, "\n")] = 0;
        close(fd);
        if (e == EWOULDBLOCK)
            return clmr_set_err(errmsg, CLMR_EBUSY,
                                "the data directory %s is in use by another clmrd (pid %s); two "
                                "daemons on one data directory would diverge: stop the other one "
                                "or give this one another data-dir",
                                dir, buf[0] ? buf : "unknown");
        return clmr_set_err(errmsg, CLMR_EIO, "cannot lock %s: %s", path, strerror(e));
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    /* The pid is only for the message above: failing to write it is not fatal. */
    if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)len, 0) != len) (void)0;
    *fd_out = fd;
    return 0;
}

void clmr_dirlock_release(int *fd)
{
    if (*fd >= 0) close(*fd); /* closing the last descriptor drops the flock */
    *fd = -1;
}
