/*
 * faultio.h — a programmable failing mf_io for unit tests (header-only).
 *
 * Wraps a real mf_io (the POSIX one by default) and counts every call by
 * kind.  Rules make chosen calls fail:
 *
 *   faultio f;
 *   faultio_init(&f, NULL);                       // wrap mf_io_posix()
 *   mf_io *io = &f.io;                            // pass this to the code
 *   faultio_fail_next(&f, FIO_PWRITEV, -ENOSPC);  // the next pwritev fails
 *   faultio_fail_nth(&f, FIO_FSYNC, 3, -EIO, 1);  // the 3rd fsync ever fails
 *   faultio_fail_nth(&f, FIO_RENAME, 1, -EIO, 0); // every rename from the 1st
 *   faultio_short_next(&f, 10);                   // next pwritev writes 10
 *                                                 // bytes and returns 10
 *   faultio_short_nth(&f, 4, 10);                 // same, for the 4th one
 *   faultio_calls(&f, FIO_FSYNC);                 // fsyncs so far
 *   faultio_fail_any_nth(&f, 7, -EIO, 1);         // the 7th I/O call of any
 *                                                 // kind fails (fault loops)
 *   faultio_clear(&f);                            // drop all rules
 *
 * Call numbers are 1-based and count every call of that kind since
 * faultio_init (failed ones included), so "the next one" is
 * faultio_calls(...) + 1.  A rule fires for matching calls from the nth
 * on, `times` times (0 = forever); without a path filter that is calls
 * nth .. nth+times-1.  A failing call does not reach
 * the real io (nothing is written, renamed, synced...), except a short
 * write, which writes its first `short_bytes` bytes for real.
 * Optionally a rule applies only when a path (open/rename/unlink/fsync_dir;
 * for rename the source) contains `path_has`; calls of other kinds ignore it.
 *
 * Thread-safe (one mutex): the WAL calls it from its writer and fsync
 * threads.  Everything is static so several tests can include it.
 */
#ifndef MF_TEST_FAULTIO_H
#define MF_TEST_FAULTIO_H

#include "io.h"

#include <pthread.h>
#include <string.h>
#include <sys/uio.h>

typedef enum fio_kind {
	FIO_OPEN,
	FIO_PREAD,
	FIO_PWRITEV,
	FIO_FSYNC,
	FIO_FTRUNCATE,
	FIO_FSTAT,
	FIO_CLOSE,
	FIO_RENAME,
	FIO_UNLINK,
	FIO_FSYNC_DIR,
	FIO_NKINDS,
	FIO_ANY = FIO_NKINDS  /* rules only: counts every call, whatever its kind */
} fio_kind;

#define FIO_MAX_RULES 16

typedef struct fio_rule {
	fio_kind kind;
	unsigned long nth;     /* first call number (1-based) that fails */
	unsigned long times;   /* consecutive failing calls; 0 = forever */
	int err;               /* negative errno returned */
	size_t short_bytes;    /* pwritev only, when err == 0: a short write */
	char path_has[64];     /* "" = any path */
	unsigned long fired;   /* how many times it fired */
	fio_kind fired_kind;   /* kind of the first call it failed (FIO_ANY rules) */
	unsigned fired_kinds;  /* bit k: it failed a call of kind k */
	bool torn;             /* pwritev with err: write the first half for real,
	                          then fail (data reached the file, the call
	                          reports an error: what a cut-back must undo) */
} fio_rule;

typedef struct faultio {
	mf_io io;              /* hand &f->io to the code under test */
	mf_io *real;
	pthread_mutex_t mu;
	unsigned long calls[FIO_NKINDS + 1];  /* [FIO_ANY]: all calls */
	fio_rule rules[FIO_MAX_RULES];
	int nrules;
} faultio;

static inline faultio *fio_of(mf_io *io)
{
	return (faultio *)io->ctx;
}

/* Count the call; return the rule that fires for it, or NULL.  For a short
 * write, *short_bytes is set and the rule's err is 0. */
static inline fio_rule *fio_hit(mf_io *io, fio_kind k, const char *path)
{
	faultio *f = fio_of(io);
	fio_rule *hit = NULL;
	pthread_mutex_lock(&f->mu);
	unsigned long n = ++f->calls[k];
	unsigned long all = ++f->calls[FIO_ANY];
	for (int i = 0; i < f->nrules && !hit; i++) {
		fio_rule *r = &f->rules[i];
		unsigned long cn = r->kind == FIO_ANY ? all : n;
		if ((r->kind != k && r->kind != FIO_ANY) || cn < r->nth ||
		    (r->times && r->fired >= r->times))
			continue;
		if (r->path_has[0] && (!path || !strstr(path, r->path_has)))
			continue;
		if (r->fired++ == 0)
			r->fired_kind = k;
		r->fired_kinds |= 1u << k;
		hit = r;
	}
	pthread_mutex_unlock(&f->mu);
	return hit;
}

static inline int fio_open(mf_io *io, const char *path, int flags, mode_t mode)
{
	fio_rule *r = fio_hit(io, FIO_OPEN, path);
	if (r)
		return r->err;
	return fio_of(io)->real->open(fio_of(io)->real, path, flags, mode);
}

static inline ssize_t fio_pread(mf_io *io, int fd, void *buf, size_t n, off_t off)
{
	fio_rule *r = fio_hit(io, FIO_PREAD, NULL);
	if (r)
		return r->err;
	return fio_of(io)->real->pread(fio_of(io)->real, fd, buf, n, off);
}

/* Write only the first `bytes` bytes of iov, for real (0 if none). */
static inline ssize_t fio_write_prefix(mf_io *real, int fd, const struct iovec *iov, int iovcnt,
                                       off_t off, size_t bytes)
{
	struct iovec v[64];
	int c = 0;
	for (int i = 0; i < iovcnt && bytes && c < 64; i++) {
		size_t k = iov[i].iov_len < bytes ? iov[i].iov_len : bytes;
		v[c].iov_base = iov[i].iov_base;
		v[c].iov_len = k;
		c++;
		bytes -= k;
	}
	return c ? real->pwritev(real, fd, v, c, off) : 0;
}

static inline ssize_t fio_pwritev(mf_io *io, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	mf_io *real = fio_of(io)->real;
	fio_rule *r = fio_hit(io, FIO_PWRITEV, NULL);
	if (r && r->err && r->torn) {
		size_t total = 0;
		for (int i = 0; i < iovcnt; i++)
			total += iov[i].iov_len;
		fio_write_prefix(real, fd, iov, iovcnt, off, total / 2);
		return r->err;
	}
	if (r && r->err)
		return r->err;
	if (r)  /* short write: the first short_bytes bytes, for real */
		return fio_write_prefix(real, fd, iov, iovcnt, off, r->short_bytes);
	return real->pwritev(real, fd, iov, iovcnt, off);
}

static inline int fio_fsync(mf_io *io, int fd)
{
	fio_rule *r = fio_hit(io, FIO_FSYNC, NULL);
	if (r)
		return r->err;
	return fio_of(io)->real->fsync(fio_of(io)->real, fd);
}

static inline int fio_ftruncate(mf_io *io, int fd, off_t len)
{
	fio_rule *r = fio_hit(io, FIO_FTRUNCATE, NULL);
	if (r)
		return r->err;
	return fio_of(io)->real->ftruncate(fio_of(io)->real, fd, len);
}

static inline int fio_fstat_size(mf_io *io, int fd, off_t *size)
{
	fio_rule *r = fio_hit(io, FIO_FSTAT, NULL);
	if (r)
		return r->err;
	return fio_of(io)->real->fstat_size(fio_of(io)->real, fd, size);
}

static inline int fio_close(mf_io *io, int fd)
{
	/* A failing close still closes the descriptor (as on Linux). */
	fio_rule *r = fio_hit(io, FIO_CLOSE, NULL);
	int c = fio_of(io)->real->close(fio_of(io)->real, fd);
	return r ? r->err : c;
}

static inline int fio_rename(mf_io *io, const char *from, const char *to)
{
	fio_rule *r = fio_hit(io, FIO_RENAME, from);
	if (r)
		return r->err;
	return fio_of(io)->real->rename(fio_of(io)->real, from, to);
}

static inline int fio_unlink(mf_io *io, const char *path)
{
	fio_rule *r = fio_hit(io, FIO_UNLINK, path);
	if (r)
		return r->err;
	return fio_of(io)->real->unlink(fio_of(io)->real, path);
}

static inline int fio_fsync_dir(mf_io *io, const char *dir)
{
	fio_rule *r = fio_hit(io, FIO_FSYNC_DIR, dir);
	if (r)
		return r->err;
	return fio_of(io)->real->fsync_dir(fio_of(io)->real, dir);
}

/* real: the io to wrap (NULL: mf_io_posix()). */
static inline void faultio_init(faultio *f, mf_io *real)
{
	memset(f, 0, sizeof *f);
	f->real = real ? real : mf_io_posix();
	pthread_mutex_init(&f->mu, NULL);
	f->io = (mf_io){
		.open = fio_open, .pread = fio_pread, .pwritev = fio_pwritev,
		.fsync = fio_fsync, .ftruncate = fio_ftruncate,
		.fstat_size = fio_fstat_size, .close = fio_close,
		.rename = fio_rename, .unlink = fio_unlink,
		.fsync_dir = fio_fsync_dir, .ctx = f,
	};
}

static inline void faultio_destroy(faultio *f)
{
	pthread_mutex_destroy(&f->mu);
}

static inline fio_rule *fio_add(faultio *f, fio_kind k, unsigned long nth,
                                unsigned long times, int err, size_t short_bytes,
                                const char *path_has)
{
	pthread_mutex_lock(&f->mu);
	fio_rule *r = NULL;
	if (f->nrules < FIO_MAX_RULES) {
		r = &f->rules[f->nrules++];
		memset(r, 0, sizeof *r);
		r->kind = k;
		r->nth = nth;
		r->times = times;
		r->err = err;
		r->short_bytes = short_bytes;
		if (path_has)
			strncpy(r->path_has, path_has, sizeof r->path_has - 1);
	}
	pthread_mutex_unlock(&f->mu);
	return r;
}

static inline unsigned long faultio_calls(faultio *f, fio_kind k)
{
	pthread_mutex_lock(&f->mu);
	unsigned long n = f->calls[k];
	pthread_mutex_unlock(&f->mu);
	return n;
}

/* Calls nth .. nth+times-1 of kind k fail with err (times 0: forever). */
static inline fio_rule *faultio_fail_nth(faultio *f, fio_kind k, unsigned long nth,
                                         int err, unsigned long times)
{
	return fio_add(f, k, nth, times, err, 0, NULL);
}

/* I/O call number nth counted over every kind (faultio_calls(f, FIO_ANY)
 * so far) fails with err, and the `times - 1` calls after it (0: every call
 * from nth on).  err must be nonzero: this is for fault loops. */
static inline fio_rule *faultio_fail_any_nth(faultio *f, unsigned long nth, int err,
                                             unsigned long times)
{
	return fio_add(f, FIO_ANY, nth, times, err, 0, NULL);
}

/* The next call of kind k fails with err. */
static inline fio_rule *faultio_fail_next(faultio *f, fio_kind k, int err)
{
	return fio_add(f, k, faultio_calls(f, k) + 1, 1, err, 0, NULL);
}

/* Every call of kind k from the next one on fails with err. */
static inline fio_rule *faultio_fail_from_next(faultio *f, fio_kind k, int err)
{
	return fio_add(f, k, faultio_calls(f, k) + 1, 0, err, 0, NULL);
}

/* The next call of kind k whose path contains path_has fails with err
 * (once; for open/rename/unlink/fsync_dir). */
static inline fio_rule *faultio_fail_path(faultio *f, fio_kind k, const char *path_has,
                                          int err)
{
	return fio_add(f, k, faultio_calls(f, k) + 1, 1, err, 0, path_has);
}

/* The next pwritev writes only its first `bytes` bytes and returns that. */
static inline fio_rule *faultio_short_next(faultio *f, size_t bytes)
{
	return fio_add(f, FIO_PWRITEV, faultio_calls(f, FIO_PWRITEV) + 1, 1, 0, bytes, NULL);
}

/* pwritev call number nth writes only `bytes` bytes and returns that. */
static inline fio_rule *faultio_short_nth(faultio *f, unsigned long nth, size_t bytes)
{
	return fio_add(f, FIO_PWRITEV, nth, 1, 0, bytes, NULL);
}

/* How many times rule r fired. */
static inline unsigned long faultio_fired(faultio *f, fio_rule *r)
{
	pthread_mutex_lock(&f->mu);
	unsigned long n = r ? r->fired : 0;
	pthread_mutex_unlock(&f->mu);
	return n;
}

static inline void faultio_clear(faultio *f)
{
	pthread_mutex_lock(&f->mu);
	f->nrules = 0;
	pthread_mutex_unlock(&f->mu);
}

#endif
