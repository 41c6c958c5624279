/* dirlock.h - one daemon per data directory: an exclusive advisory lock on DIR/clmrd.lock.
 *
 * DESIGN: flock(2) on a lock file inside the directory. The kernel drops the lock when the
 * process dies however it dies (kill -9 included), so there is no stale-lock cleanup; the file
 * keeps the holder's pid only to name it in the error message. Two processes that both opened
 * the SQLite database and the audio pool would each keep their own in-memory index and job state
 * and diverge, so the second start is refused instead.
 */
#ifndef CLMR_UTIL_DIRLOCK_H
#define CLMR_UTIL_DIRLOCK_H

/* Creates dir (and its parents) when missing, then takes the lock without waiting. On success
 * *fd_out holds the lock until clmr_dirlock_release (or process exit) and 0 is returned. When
 * another process holds it: CLMR_EBUSY with *errmsg naming the directory and that process's pid.
 * Other failures: CLMR_EIO with *errmsg. errmsg may be NULL. */
int clmr_dirlock_acquire(int *fd_out, const char *dir, char **errmsg);

/* Releases the lock (fd < 0 is a no-op) and sets *fd to -1. */
void clmr_dirlock_release(int *fd);

#endif
