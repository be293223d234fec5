/*
 * io.c — the POSIX implementation of the I/O seam, and crash points.
 * Each wrapper retries EINTR and converts errno to a negative return so that
 * callers can propagate a single int.
 */
#include "io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int px_open(mf_io *io, const char *path, int flags, mode_t mode)
{
	(void)io;
	int fd;
	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static ssize_t px_pread(mf_io *io, int fd, void *buf, size_t n, off_t off)
{
	(void)io;
	ssize_t r;
	do
		r = pread(fd, buf, n, off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static ssize_t px_pwritev(mf_io *io, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	(void)io;
	ssize_t r;
	do
		r = pwritev(fd, iov, iovcnt, off);
	while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

static int px_fsync(mf_io *io, int fd)
{
	(void)io;
	/* fdatasync: the WAL and snapshot only need their data and size durable,
	 * not atime/mtime; it saves a metadata journal write on ext4. */
	return fdatasync(fd) < 0 ? -errno : 0;
}

static int px_ftruncate(mf_io *io, int fd, off_t len)
{
	(void)io;
	return ftruncate(fd, len) < 0 ? -errno : 0;
}

static int px_fstat_size(mf_io *io, int fd, off_t *size)
{
	(void)io;
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	*size = st.st_size;
	return 0;
}

static int px_close(mf_io *io, int fd)
{
	(void)io;
	/* close() errors after EINTR are not retried: the fd is gone on Linux. */
	return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static int px_rename(mf_io *io, const char *from, const char *to)
{
	(void)io;
	return rename(from, to) < 0 ? -errno : 0;
}

static int px_unlink(mf_io *io, const char *path)
{
	(void)io;
	return unlink(path) < 0 ? -errno : 0;
}

/* A rename or unlink is durable only once the directory itself is fsynced
 * (the bug Redis fixed in 2022); every caller that renames does this next. */
static int px_fsync_dir(mf_io *io, const char *dir)
{
	(void)io;
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int r = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return r;
}

static mf_io posix_io = {
	.open = px_open,
	.pread = px_pread,
	.pwritev = px_pwritev,
	.fsync = px_fsync,
	.ftruncate = px_ftruncate,
	.fstat_size = px_fstat_size,
	.close = px_close,
	.rename = px_rename,
	.unlink = px_unlink,
	.fsync_dir = px_fsync_dir,
	.ctx = NULL,
};

mf_io *mf_io_posix(void)
{
	return &posix_io;
}

int mf_io_pwritev_all(mf_io *io, int fd, struct iovec *iov, int iovcnt, off_t off)
{
	/* Loop over short writes, advancing through the iovec array in place. */
	while (iovcnt > 0) {
		int cnt = iovcnt > IOV_MAX ? IOV_MAX : iovcnt;
		ssize_t r = io->pwritev(io, fd, iov, cnt, off);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EIO;
		off += r;
		size_t left = (size_t)r;
		while (iovcnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (left) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
		while (iovcnt > 0 && iov->iov_len == 0) {
			iov++;
			iovcnt--;
		}
	}
	return 0;
}

int mf_io_pwrite_all(mf_io *io, int fd, const void *buf, size_t n, off_t off)
{
	struct iovec v = {(void *)buf, n};
	return n ? mf_io_pwritev_all(io, fd, &v, 1, off) : 0;
}

int mf_io_pread_all(mf_io *io, int fd, void *buf, size_t n, off_t off)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = io->pread(io, fd, p, n, off);
		if (r < 0)
			return (int)r;
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += r;
	}
	return 0;
}

int mf_io_cut(mf_io *io, int fd, off_t len)
{
	int r = io->ftruncate(io, fd, len);
	return r < 0 ? r : io->fsync(io, fd);
}

int mf_io_cut_file(mf_io *io, const char *path, off_t len)
{
	int fd = io->open(io, path, O_RDWR, 0);
	if (fd < 0)
		return fd;
	int r = mf_io_cut(io, fd, len);
	int c = io->close(io, fd);
	return r < 0 ? r : c;
}

int mf_path_join(char *out, size_t cap, const char *dir, const char *name)
{
	int n = snprintf(out, cap, "%s/%s", dir, name);
	return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

/* Read once, before any thread can race on them: MEMFLUX_CRASH_AT and
 * MEMFLUX_DELAY_AT are fixed for the life of the process. */
static const char *crash_want;
static char delay_want[128];
static unsigned delay_ms;
static pthread_once_t crash_once = PTHREAD_ONCE_INIT;

static void crash_init(void)
{
	crash_want = getenv("MEMFLUX_CRASH_AT");
	const char *d = getenv("MEMFLUX_DELAY_AT");
	const char *colon = d ? strrchr(d, ':') : NULL;
	if (colon && (size_t)(colon - d) < sizeof delay_want) {
		memcpy(delay_want, d, (size_t)(colon - d));
		delay_ms = (unsigned)strtoul(colon + 1, NULL, 10);
	}
}

void mf_crash_point(const char *name)
{
	pthread_once(&crash_once, crash_init);
	if (crash_want && strcmp(crash_want, name) == 0)
		_exit(77);
}

void mf_delay_point(const char *name)
{
	pthread_once(&crash_once, crash_init);
	if (delay_ms && strcmp(delay_want, name) == 0) {
		struct timespec ts = {delay_ms / 1000, (long)(delay_ms % 1000) * 1000000L};
		while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
			;
	}
}
