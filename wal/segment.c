/*
 * segment.c — segment files: paths and sealed names (memflux.wal.<16 hex>),
 * listing sealed segments, creating the active segment (header, fsync, dir
 * fsync), reopening it at start-up, rotation (sealing) and dropping sealed
 * segments a snapshot covers.  Format: wal/FORMAT.md.  Locking: wal_int.h.
 */
#include "wal_int.h"

#include "record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *mf_wal_path(const char *dir, const char *name)
{
	size_t n = strlen(dir) + strlen(name) + 2;
	char *p = mf_xmalloc(n);
	mf_path_join(p, n, dir, name); /* cannot fail: sized to fit */
	return p;
}

static char *sealed_path(const char *dir, uint64_t lsn)
{
	char name[64];
	snprintf(name, sizeof name, MF_WAL_ACTIVE_NAME ".%016" PRIx64, lsn);
	return mf_wal_path(dir, name);
}

/* "memflux.wal." followed by exactly 16 hex digits. */
static bool parse_sealed_name(const char *name, uint64_t *lsn)
{
	static const char prefix[] = MF_WAL_ACTIVE_NAME ".";
	size_t pl = sizeof prefix - 1;
	if (strncmp(name, prefix, pl) != 0 || strlen(name) != pl + 16)
		return false;
	uint64_t v = 0;
	for (const char *c = name + pl; *c; c++) {
		int d;
		if (*c >= '0' && *c <= '9')
			d = *c - '0';
		else if (*c >= 'a' && *c <= 'f')
			d = *c - 'a' + 10;
		else if (*c >= 'A' && *c <= 'F')
			d = *c - 'A' + 10;
		else
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*lsn = v;
	return true;
}

static int seg_cmp(const void *a, const void *b)
{
	const mf_wal_seg *x = a, *y = b;
	return x->lsn < y->lsn ? -1 : x->lsn > y->lsn;
}

static int file_size(mf_io *io, const char *path, uint64_t *size)
{
	int fd = io->open(io, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	off_t sz = 0;
	int r = io->fstat_size(io, fd, &sz);
	io->close(io, fd);
	if (r < 0)
		return r;
	*size = (uint64_t)sz;
	return 0;
}

int mf_wal_list_sealed(mf_io *io, const char *dir, mf_wal_seg **segs)
{
	/* Directory listing is not part of the I/O seam: it has no failure
	 * mode worth injecting that open() of each file does not cover. */
	*segs = NULL;
	DIR *d = opendir(dir);
	if (!d)
		return -errno;
	mf_wal_seg *v = NULL;
	int n = 0, cap = 0, err = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t lsn;
		if (!parse_sealed_name(de->d_name, &lsn))
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			v = mf_xrealloc(v, (size_t)cap * sizeof *v);
		}
		v[n].lsn = lsn;
		v[n].path = mf_wal_path(dir, de->d_name);
		v[n].size = 0;
		int r = file_size(io, v[n].path, &v[n].size);
		n++;
		if (r < 0 && r != -ENOENT) {
			err = r;
			break;
		}
	}
	closedir(d);
	if (err) {
		mf_wal_segs_free(v, n);
		return err;
	}
	if (n > 1)
		qsort(v, (size_t)n, sizeof *v, seg_cmp);
	*segs = v;
	return n;
}

void mf_wal_segs_free(mf_wal_seg *segs, int n)
{
	for (int i = 0; i < n; i++)
		free(segs[i].path);
	free(segs);
}

/* Create the active segment: header, fsync, dir fsync.  Caller holds
 * fsync_mu (the leader, or open). */
int wal_create_segment(mf_wal *w)
{
	mf_io *io = w->io;
	int fd = io->open(io, w->path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return fd;
	/* A new salt per incarnation: records of an earlier file at this path,
	 * or of any other segment, can never validate in this one. */
	pthread_mutex_lock(&w->mu);
	uint64_t prev = w->written_lsn;
	pthread_mutex_unlock(&w->mu);
	uint64_t salt = mf_wal_new_salt();
	uint8_t hdr[MF_WAL_FILE_HEADER];
	mf_wal_file_header_encode(hdr, salt, prev);
	int r = mf_io_pwrite_all(io, fd, hdr, sizeof hdr, 0);
	if (r == 0)
		r = io->fsync(io, fd);
	if (r == 0)
		r = io->fsync_dir(io, w->dir);
	if (r < 0) {
		io->close(io, fd);
		io->unlink(io, w->path);
		return r;
	}
	w->fd = fd;
	w->salt = salt;
	w->end = MF_WAL_FILE_HEADER;
	w->seg_has_records = false;
	w->marked_lsn = 0;
	return 0;
}

/* Open the existing active segment (after replay cut any torn tail), or
 * create it. */
int wal_open_active(mf_wal *w)
{
	mf_io *io = w->io;
	int fd = io->open(io, w->path, O_RDWR, 0);
	if (fd == -ENOENT)
		return wal_create_segment(w);
	if (fd < 0)
		return fd;
	off_t sz;
	int r = io->fstat_size(io, fd, &sz);
	if (r < 0)
		goto fail;
	if ((uint64_t)sz < MF_WAL_FILE_HEADER) {
		/* A crash while creating it: start it over. */
		io->close(io, fd);
		return wal_create_segment(w);
	}
	uint8_t hdr[MF_WAL_FILE_HEADER];
	const char *why;
	mf_wal_file_hdr fh;
	r = mf_io_pread_all(io, fd, hdr, sizeof hdr, 0);
	if (r == 0 && mf_wal_file_header_check(hdr, &fh, &why) < 0) {
		fprintf(stderr, "memfluxfs: WAL %s: %s\n", w->path, why);
		r = -EBADMSG;
	}
	/* What replay read may still be only in the page cache (the previous
	 * process was killed before its fsync): make it durable before the
	 * first record claims it is (synced_lsn starts at next_lsn - 1). */
	if (r == 0)
		r = io->fsync(io, fd);
	if (r < 0)
		goto fail;
	w->salt = fh.salt;
	w->fd = fd;
	w->end = (uint64_t)sz;
	w->seg_has_records = w->end > MF_WAL_FILE_HEADER;
	return 0;
fail:
	io->close(io, fd);
	return r;
}

/* Seal the active segment and start a new one; by the leader. */
int wal_do_rotate(mf_wal *w, wal_entry *e)
{
	mf_io *io = w->io;
	int r = 0;
	pthread_mutex_lock(&w->seg_mu);
	pthread_mutex_lock(&w->mu);
	bool ro = w->read_only;
	pthread_mutex_unlock(&w->mu);
	if (ro) {
		pthread_mutex_unlock(&w->seg_mu);
		return -EIO;
	}
	if (w->fd >= 0 && w->seg_has_records) {
		/* A sealed segment is always complete and durable. */
		r = wal_fsync(w);
		if (r < 0)
			goto out;
		pthread_mutex_lock(&w->fsync_mu);
		if (w->marked_lsn == w->seg_last_lsn) {
			/* An idle sync marker is written after the fsync it reports,
			 * and not fsynced itself (wal_fsync sees no new LSN): make it
			 * durable too, or a crash could leave a torn marker in a
			 * sealed segment, which recovery must call corruption. */
			r = io->fsync(io, w->fd);
			if (r < 0) {
				pthread_mutex_lock(&w->mu);
				wal_go_read_only(w, w->path, r);
				pthread_mutex_unlock(&w->mu);
				pthread_mutex_unlock(&w->fsync_mu);
				r = -EIO;
				goto out;
			}
		}
		char *sp = sealed_path(w->dir, w->seg_last_lsn);
		r = io->rename(io, w->path, sp);
		free(sp);
		if (r < 0) {
			/* Nothing changed: keep appending to the same segment. */
			pthread_mutex_unlock(&w->fsync_mu);
			goto out;
		}
		mf_crash_point("wal-after-seal-rename");
		io->close(io, w->fd);
		w->fd = -1;
		uint64_t sealed = w->end;
		r = io->fsync_dir(io, w->dir);
		if (r < 0) {
			pthread_mutex_lock(&w->mu);
			wal_go_read_only(w, "directory after sealing segment", r);
			pthread_mutex_unlock(&w->mu);
			pthread_mutex_unlock(&w->fsync_mu);
			r = -EIO;
			goto out;
		}
		pthread_mutex_lock(&w->mu);
		w->sealed_bytes += sealed;
		w->bytes = 0;
		pthread_mutex_unlock(&w->mu);
		/* If this fails the next batch retries it (fd stays -1). */
		r = wal_create_segment(w);
		pthread_mutex_unlock(&w->fsync_mu);
		if (r < 0)
			goto out;
		mf_crash_point("wal-after-new-segment");
		pthread_mutex_lock(&w->mu);
		w->bytes = w->end;
		pthread_mutex_unlock(&w->mu);
	}
	/* An active segment without records is not sealed (its name would
	 * collide with the previous sealed one); the callback still runs. */
	pthread_mutex_lock(&w->mu);
	e->last_lsn = w->written_lsn;
	pthread_mutex_unlock(&w->mu);
	pthread_mutex_unlock(&w->seg_mu);
	if (e->cb)
		e->cb(e->cbctx, e->last_lsn);
	return 0;
out:
	pthread_mutex_unlock(&w->seg_mu);
	return r;
}

int mf_wal_drop_sealed(mf_wal *w, uint64_t upto)
{
	pthread_mutex_lock(&w->seg_mu);
	mf_wal_seg *segs;
	int n = mf_wal_list_sealed(w->io, w->dir, &segs);
	int r = n < 0 ? n : 0, dropped = 0;
	uint64_t kept = 0;
	for (int i = 0; i < n; i++) {
		if (segs[i].lsn > upto || r < 0) {
			kept += segs[i].size;
			continue;
		}
		int u = w->io->unlink(w->io, segs[i].path);
		if (u < 0 && u != -ENOENT) {
			r = u;
			kept += segs[i].size;
		} else {
			dropped++;
		}
	}
	if (n >= 0)
		mf_wal_segs_free(segs, n);
	if (dropped) {
		mf_crash_point("wal-after-drop-sealed");
		int d = w->io->fsync_dir(w->io, w->dir);
		if (r == 0)
			r = d;
	}
	if (n >= 0) {
		pthread_mutex_lock(&w->mu);
		w->sealed_bytes = kept;
		pthread_mutex_unlock(&w->mu);
	}
	pthread_mutex_unlock(&w->seg_mu);
	return r;
}
