/*
 * io.h — the I/O seam (LevelDB's Env, reduced to what memfluxfs needs).
 *
 * wal/ and snapshot/ never call open/write/fsync/rename directly: they go
 * through an mf_io table, so unit tests can substitute one that returns short
 * writes, ENOSPC, EIO or a failing fsync at a chosen call, and check that
 * nothing acknowledged is lost and nothing torn is left behind.
 *
 * Conventions: every function returns >= 0 on success and -errno on failure
 * (never sets errno for the caller).  write/pwrite may be short, exactly like
 * the system calls; mf_io_write_all() loops and turns a zero-progress write
 * into -EIO.  The functions are thread-safe if the underlying table is (the
 * POSIX table is).
 */
#ifndef MF_IO_H
#define MF_IO_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct mf_io mf_io;
struct mf_io {
	int (*open)(mf_io *io, const char *path, int flags, mode_t mode);
	ssize_t (*pread)(mf_io *io, int fd, void *buf, size_t n, off_t off);
	ssize_t (*pwritev)(mf_io *io, int fd, const struct iovec *iov, int iovcnt, off_t off);
	int (*fsync)(mf_io *io, int fd);          /* fdatasync semantics suffice */
	int (*ftruncate)(mf_io *io, int fd, off_t len);
	int (*fstat_size)(mf_io *io, int fd, off_t *size);
	int (*close)(mf_io *io, int fd);
	int (*rename)(mf_io *io, const char *from, const char *to);
	int (*unlink)(mf_io *io, const char *path);
	int (*fsync_dir)(mf_io *io, const char *dir);
	void *ctx;                                 /* for test doubles */
};

/* The real thing. */
mf_io *mf_io_posix(void);

/* Write all of iov at off, looping over short writes.  0 or -errno. */
int mf_io_pwritev_all(mf_io *io, int fd, struct iovec *iov, int iovcnt, off_t off);
int mf_io_pwrite_all(mf_io *io, int fd, const void *buf, size_t n, off_t off);
/* Read exactly n bytes at off; -EIO on a short read (file shorter). */
int mf_io_pread_all(mf_io *io, int fd, void *buf, size_t n, off_t off);

/* Cut a file to len bytes and fsync it, so the cut survives a crash (a torn
 * tail removed by recovery must not come back).  By fd, or by path (opened
 * and closed here).  0 or -errno. */
int mf_io_cut(mf_io *io, int fd, off_t len);
int mf_io_cut_file(mf_io *io, const char *path, off_t len);

/* "dir/name" into out (cap bytes).  0 or -ENAMETOOLONG.  The one path join
 * of wal/, snapshot/ and memflux-check. */
int mf_path_join(char *out, size_t cap, const char *dir, const char *name);

/*
 * Named crash points.  mf_crash_point("after-snapshot-rename") calls
 * _exit(77) if the environment variable MEMFLUX_CRASH_AT names that point,
 * simulating a crash at exactly that step (no atexit handlers, no flushing).
 * Always compiled in: the check is one getenv (once per process, under
 * pthread_once, so any thread may be first) and a strcmp.
 */
void mf_crash_point(const char *name);

/*
 * Named delay points, the crash points' sibling for races: if
 * MEMFLUX_DELAY_AT is "NAME:MS", mf_delay_point("NAME") sleeps MS
 * milliseconds.  A test widens one window at a named step (e.g. a RELEASE
 * that the kernel sends without waiting for it, arriving late) so an
 * ordering bug shows on every run instead of once in thousands.
 */
void mf_delay_point(const char *name);

#endif
