/*
 * powercut.h — a power-loss simulator in the I/O seam (header-only, tests).
 *
 * Wraps the POSIX mf_io of one directory.  Every call goes to the real
 * files (so the code under test reads back what it wrote), except fsync and
 * fsync_dir, which only move the model's durability line (no real fsync:
 * thousands of cuts fit in seconds).  The model keeps, per file (inode):
 *   - its durable bytes (as of its last fsync),
 *   - every write and truncate since then, in order;
 * and for the directory: the names as of its last fsync_dir, and every
 * create / rename / unlink since then, in order.
 *
 *   powercut pc;
 *   pc_init(&pc, dir);
 *   pc_adopt_dir(&pc);       // optional: files already there are durable
 *   pc_cut_at(&pc, n);       // the n-th mutating call (1-based) and every
 *                            // later one fail with -EIO and do nothing:
 *                            // the machine lost power there
 *   ... run the code with &pc.io ...
 *   pc_crash(&pc, &rng);     // rewrite dir as the disk may look after the
 *                            // cut: durable bytes, plus any prefix, subset,
 *                            // tear (512-byte sectors) or reordering of the
 *                            // unsynced writes, size possibly extended over
 *                            // unwritten zeros; a random prefix of the
 *                            // unsynced directory operations
 *   pc_destroy(&pc);
 *
 * Mutating calls: open with O_CREAT or O_TRUNC, pwritev, ftruncate, fsync,
 * rename, unlink, fsync_dir.  Files the model has not seen (the lock file,
 * opened without the seam) are left alone.  Directory operations are
 * persisted as a prefix (a journaling file system commits them in order);
 * data writes in any order.
 *
 * Thread-safe (one mutex).  Everything static: include it from one test.
 */
#ifndef MF_TEST_POWERCUT_H
#define MF_TEST_POWERCUT_H

#include "io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define PC_MAX_FD 1024
#define PC_NAME 96
#define PC_SECTOR 512

/* xorshift64*: seeded, reproducible. */
typedef struct pc_rng {
	uint64_t s;
} pc_rng;

static inline uint64_t pc_rand(pc_rng *r)
{
	uint64_t x = r->s ? r->s : 0x9E3779B97F4A7C15ULL;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t pc_below(pc_rng *r, uint64_t n)
{
	return n ? pc_rand(r) % n : 0;
}

enum { PC_WRITE, PC_TRUNC };

typedef struct pc_op {
	int kind;
	uint64_t off;       /* WRITE: offset; TRUNC: new length */
	uint8_t *data;
	size_t len;
} pc_op;

typedef struct pc_bytes {
	uint8_t *p;
	size_t len, cap;
} pc_bytes;

typedef struct pc_inode {
	pc_bytes dur, cur;
	pc_op *ops;
	int nops, capops;
} pc_inode;

typedef struct pc_name {
	char name[PC_NAME];
	int ino;
} pc_name;

enum { PC_CREATE, PC_RENAME, PC_UNLINK };

typedef struct pc_dirop {
	int kind;
	char a[PC_NAME], b[PC_NAME];
	int ino;
} pc_dirop;

typedef struct pc_names {
	pc_name *v;
	int n, cap;
} pc_names;

typedef struct powercut {
	mf_io io;              /* hand &pc->io to the code under test */
	mf_io *real;
	pthread_mutex_t mu;
	char dir[512];
	pc_inode *ino;
	int nino, capino;
	pc_names cur, dur, seen; /* seen: every name ever used (to clean up) */
	pc_dirop *dops;
	int ndops, capdops;
	int fd_ino[PC_MAX_FD];
	unsigned long calls;   /* mutating calls so far (the failing one too) */
	unsigned long cut_at;  /* 0: never */
	bool dead;
	/* what the last pc_crash did, for the report */
	unsigned long lost_writes, torn_writes, kept_writes, lost_dirops;
} powercut;

static inline powercut *pc_of(mf_io *io)
{
	return (powercut *)io->ctx;
}

static inline void pc_bytes_set_len(pc_bytes *b, size_t len)
{
	if (len > b->cap) {
		size_t c = b->cap ? b->cap : 256;
		while (c < len)
			c *= 2;
		b->p = realloc(b->p, c);
		b->cap = c;
	}
	if (len > b->len)
		memset(b->p + b->len, 0, len - b->len);
	b->len = len;
}

static inline void pc_bytes_write(pc_bytes *b, uint64_t off, const uint8_t *d, size_t n)
{
	if (off + n > b->len)
		pc_bytes_set_len(b, (size_t)(off + n));
	if (n)
		memcpy(b->p + off, d, n);
}

static inline void pc_bytes_copy(pc_bytes *dst, const pc_bytes *src)
{
	dst->len = 0;
	pc_bytes_set_len(dst, src->len);
	if (src->len)
		memcpy(dst->p, src->p, src->len);
}

static inline int pc_names_find(pc_names *ns, const char *name)
{
	for (int i = 0; i < ns->n; i++)
		if (strcmp(ns->v[i].name, name) == 0)
			return i;
	return -1;
}

static inline void pc_names_set(pc_names *ns, const char *name, int ino)
{
	int i = pc_names_find(ns, name);
	if (i < 0) {
		if (ns->n == ns->cap) {
			ns->cap = ns->cap ? ns->cap * 2 : 16;
			ns->v = realloc(ns->v, (size_t)ns->cap * sizeof *ns->v);
		}
		i = ns->n++;
		snprintf(ns->v[i].name, PC_NAME, "%s", name);
	}
	ns->v[i].ino = ino;
}

static inline void pc_names_del(pc_names *ns, const char *name)
{
	int i = pc_names_find(ns, name);
	if (i >= 0)
		ns->v[i] = ns->v[--ns->n];
}

static inline void pc_names_copy(pc_names *dst, const pc_names *src)
{
	dst->n = 0;
	for (int i = 0; i < src->n; i++)
		pc_names_set(dst, src->v[i].name, src->v[i].ino);
}

/* The name of path inside the simulated dir, or NULL if it is elsewhere. */
static inline const char *pc_base(powercut *pc, const char *path)
{
	size_t n = strlen(pc->dir);
	if (strncmp(path, pc->dir, n) != 0 || path[n] != '/' || strchr(path + n + 1, '/'))
		return NULL;
	return path + n + 1;
}

static inline int pc_new_inode(powercut *pc)
{
	if (pc->nino == pc->capino) {
		pc->capino = pc->capino ? pc->capino * 2 : 16;
		pc->ino = realloc(pc->ino, (size_t)pc->capino * sizeof *pc->ino);
	}
	memset(&pc->ino[pc->nino], 0, sizeof pc->ino[0]);
	return pc->nino++;
}

static inline void pc_add_op(pc_inode *in, int kind, uint64_t off, const uint8_t *d, size_t n)
{
	if (in->nops == in->capops) {
		in->capops = in->capops ? in->capops * 2 : 16;
		in->ops = realloc(in->ops, (size_t)in->capops * sizeof *in->ops);
	}
	pc_op *o = &in->ops[in->nops++];
	o->kind = kind;
	o->off = off;
	o->len = n;
	o->data = NULL;
	if (n) {
		o->data = malloc(n);
		memcpy(o->data, d, n);
	}
}

static inline void pc_clear_ops(pc_inode *in)
{
	for (int i = 0; i < in->nops; i++)
		free(in->ops[i].data);
	in->nops = 0;
}

static inline void pc_add_dirop(powercut *pc, int kind, const char *a, const char *b, int ino)
{
	if (pc->ndops == pc->capdops) {
		pc->capdops = pc->capdops ? pc->capdops * 2 : 16;
		pc->dops = realloc(pc->dops, (size_t)pc->capdops * sizeof *pc->dops);
	}
	pc_dirop *d = &pc->dops[pc->ndops++];
	d->kind = kind;
	snprintf(d->a, PC_NAME, "%s", a);
	snprintf(d->b, PC_NAME, "%s", b ? b : "");
	d->ino = ino;
	pc_names_set(&pc->seen, a, -1);
	if (b)
		pc_names_set(&pc->seen, b, -1);
}

/* Count a mutating call; false if the power is (now) off. Caller holds mu. */
static inline bool pc_alive(powercut *pc)
{
	if (pc->dead)
		return false;
	pc->calls++;
	if (pc->cut_at && pc->calls >= pc->cut_at) {
		pc->dead = true;
		return false;
	}
	return true;
}

static inline int pc_open(mf_io *io, const char *path, int flags, mode_t mode)
{
	powercut *pc = pc_of(io);
	const char *name = pc_base(pc, path);
	bool mut = (flags & (O_CREAT | O_TRUNC)) != 0;
	pthread_mutex_lock(&pc->mu);
	if (mut && name && !pc_alive(pc)) {
		pthread_mutex_unlock(&pc->mu);
		return -EIO;
	}
	int fd = pc->real->open(pc->real, path, flags, mode);
	if (fd >= 0 && fd < PC_MAX_FD) {
		pc->fd_ino[fd] = -1;
		if (name) {
			int i = pc_names_find(&pc->cur, name);
			int ino;
			if (i >= 0) {
				ino = pc->cur.v[i].ino;
				if (flags & O_TRUNC) {
					pc_add_op(&pc->ino[ino], PC_TRUNC, 0, NULL, 0);
					pc->ino[ino].cur.len = 0;
				}
			} else if (flags & O_CREAT) {
				ino = pc_new_inode(pc);
				pc_names_set(&pc->cur, name, ino);
				pc_add_dirop(pc, PC_CREATE, name, NULL, ino);
			} else {
				/* A file from before the model: durable as it is. */
				ino = pc_new_inode(pc);
				off_t sz = 0;
				pc->real->fstat_size(pc->real, fd, &sz);
				pc_bytes_set_len(&pc->ino[ino].cur, (size_t)sz);
				if (sz)
					mf_io_pread_all(pc->real, fd, pc->ino[ino].cur.p, (size_t)sz, 0);
				pc_bytes_copy(&pc->ino[ino].dur, &pc->ino[ino].cur);
				pc_names_set(&pc->cur, name, ino);
				pc_names_set(&pc->dur, name, ino);
				pc_names_set(&pc->seen, name, -1);
			}
			pc->fd_ino[fd] = ino;
		}
	}
	pthread_mutex_unlock(&pc->mu);
	return fd;
}

static inline ssize_t pc_pread(mf_io *io, int fd, void *buf, size_t n, off_t off)
{
	return pc_of(io)->real->pread(pc_of(io)->real, fd, buf, n, off);
}

static inline ssize_t pc_pwritev(mf_io *io, int fd, const struct iovec *iov, int iovcnt,
                                 off_t off)
{
	powercut *pc = pc_of(io);
	pthread_mutex_lock(&pc->mu);
	int ino = fd >= 0 && fd < PC_MAX_FD ? pc->fd_ino[fd] : -1;
	if (ino >= 0 && !pc_alive(pc)) {
		pthread_mutex_unlock(&pc->mu);
		return -EIO;
	}
	ssize_t r = pc->real->pwritev(pc->real, fd, iov, iovcnt, off);
	if (r > 0 && ino >= 0) {
		/* Record exactly the bytes written, as one write. */
		uint8_t *tmp = malloc((size_t)r);
		size_t got = 0;
		for (int i = 0; i < iovcnt && got < (size_t)r; i++) {
			size_t k = iov[i].iov_len < (size_t)r - got ? iov[i].iov_len : (size_t)r - got;
			memcpy(tmp + got, iov[i].iov_base, k);
			got += k;
		}
		pc_inode *in = &pc->ino[ino];
		pc_add_op(in, PC_WRITE, (uint64_t)off, tmp, (size_t)r);
		pc_bytes_write(&in->cur, (uint64_t)off, tmp, (size_t)r);
		free(tmp);
	}
	pthread_mutex_unlock(&pc->mu);
	return r;
}

static inline int pc_fsync(mf_io *io, int fd)
{
	powercut *pc = pc_of(io);
	pthread_mutex_lock(&pc->mu);
	int ino = fd >= 0 && fd < PC_MAX_FD ? pc->fd_ino[fd] : -1;
	int r = 0;
	if (ino >= 0) {
		if (!pc_alive(pc)) {
			r = -EIO;
		} else {
			pc_bytes_copy(&pc->ino[ino].dur, &pc->ino[ino].cur);
			pc_clear_ops(&pc->ino[ino]);
		}
	}
	pthread_mutex_unlock(&pc->mu);
	return r;
}

static inline int pc_ftruncate(mf_io *io, int fd, off_t len)
{
	powercut *pc = pc_of(io);
	pthread_mutex_lock(&pc->mu);
	int ino = fd >= 0 && fd < PC_MAX_FD ? pc->fd_ino[fd] : -1;
	if (ino >= 0 && !pc_alive(pc)) {
		pthread_mutex_unlock(&pc->mu);
		return -EIO;
	}
	int r = pc->real->ftruncate(pc->real, fd, len);
	if (r == 0 && ino >= 0) {
		pc_add_op(&pc->ino[ino], PC_TRUNC, (uint64_t)len, NULL, 0);
		pc_bytes_set_len(&pc->ino[ino].cur, (size_t)len);
	}
	pthread_mutex_unlock(&pc->mu);
	return r;
}

static inline int pc_fstat_size(mf_io *io, int fd, off_t *size)
{
	return pc_of(io)->real->fstat_size(pc_of(io)->real, fd, size);
}

static inline int pc_close(mf_io *io, int fd)
{
	powercut *pc = pc_of(io);
	pthread_mutex_lock(&pc->mu);
	if (fd >= 0 && fd < PC_MAX_FD)
		pc->fd_ino[fd] = -1;
	pthread_mutex_unlock(&pc->mu);
	return pc->real->close(pc->real, fd);
}

static inline int pc_rename(mf_io *io, const char *from, const char *to)
{
	powercut *pc = pc_of(io);
	const char *a = pc_base(pc, from), *b = pc_base(pc, to);
	pthread_mutex_lock(&pc->mu);
	if (a && b && !pc_alive(pc)) {
		pthread_mutex_unlock(&pc->mu);
		return -EIO;
	}
	int r = pc->real->rename(pc->real, from, to);
	if (r == 0 && a && b) {
		int i = pc_names_find(&pc->cur, a);
		if (i >= 0) {
			int ino = pc->cur.v[i].ino;
			pc_names_del(&pc->cur, a);
			pc_names_set(&pc->cur, b, ino);
			pc_add_dirop(pc, PC_RENAME, a, b, ino);
		}
	}
	pthread_mutex_unlock(&pc->mu);
	return r;
}

static inline int pc_unlink(mf_io *io, const char *path)
{
	powercut *pc = pc_of(io);
	const char *a = pc_base(pc, path);
	pthread_mutex_lock(&pc->mu);
	if (a && !pc_alive(pc)) {
		pthread_mutex_unlock(&pc->mu);
		return -EIO;
	}
	int r = pc->real->unlink(pc->real, path);
	if (r == 0 && a && pc_names_find(&pc->cur, a) >= 0) {
		pc_names_del(&pc->cur, a);
		pc_add_dirop(pc, PC_UNLINK, a, NULL, -1);
	}
	pthread_mutex_unlock(&pc->mu);
	return r;
}

static inline int pc_fsync_dir(mf_io *io, const char *dir)
{
	powercut *pc = pc_of(io);
	pthread_mutex_lock(&pc->mu);
	int r = 0;
	if (strcmp(dir, pc->dir) == 0) {
		if (!pc_alive(pc)) {
			r = -EIO;
		} else {
			pc_names_copy(&pc->dur, &pc->cur);
			pc->ndops = 0;
		}
	}
	pthread_mutex_unlock(&pc->mu);
	return r;
}

static inline void pc_init(powercut *pc, const char *dir)
{
	memset(pc, 0, sizeof *pc);
	pc->real = mf_io_posix();
	pthread_mutex_init(&pc->mu, NULL);
	snprintf(pc->dir, sizeof pc->dir, "%s", dir);
	for (int i = 0; i < PC_MAX_FD; i++)
		pc->fd_ino[i] = -1;
	pc->io = (mf_io){
		.open = pc_open, .pread = pc_pread, .pwritev = pc_pwritev,
		.fsync = pc_fsync, .ftruncate = pc_ftruncate,
		.fstat_size = pc_fstat_size, .close = pc_close,
		.rename = pc_rename, .unlink = pc_unlink,
		.fsync_dir = pc_fsync_dir, .ctx = pc,
	};
}

/* Take the files already in the directory as durable, so that what the
 * code does to them (unlink, rename, truncate) can be lost at a cut too.
 * The lock file is left alone (opened without the seam). */
static inline void pc_adopt_dir(powercut *pc)
{
	DIR *d = opendir(pc->dir);
	if (!d)
		return;
	struct dirent *de;
	pthread_mutex_lock(&pc->mu);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.' || strcmp(de->d_name, "memflux.lock") == 0 ||
		    strlen(de->d_name) >= PC_NAME)
			continue;
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", pc->dir, de->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		int ino = pc_new_inode(pc);
		off_t sz = lseek(fd, 0, SEEK_END);
		pc_bytes_set_len(&pc->ino[ino].cur, sz > 0 ? (size_t)sz : 0);
		if (sz > 0 && pread(fd, pc->ino[ino].cur.p, (size_t)sz, 0) != sz)
			pc->ino[ino].cur.len = 0;
		close(fd);
		pc_bytes_copy(&pc->ino[ino].dur, &pc->ino[ino].cur);
		pc_names_set(&pc->cur, de->d_name, ino);
		pc_names_set(&pc->dur, de->d_name, ino);
		pc_names_set(&pc->seen, de->d_name, -1);
	}
	pthread_mutex_unlock(&pc->mu);
	closedir(d);
}

static inline void pc_cut_at(powercut *pc, unsigned long n)
{
	pthread_mutex_lock(&pc->mu);
	pc->cut_at = n;
	pthread_mutex_unlock(&pc->mu);
}

static inline unsigned long pc_calls(powercut *pc)
{
	pthread_mutex_lock(&pc->mu);
	unsigned long n = pc->calls;
	pthread_mutex_unlock(&pc->mu);
	return n;
}

static inline bool pc_dead(powercut *pc)
{
	pthread_mutex_lock(&pc->mu);
	bool d = pc->dead;
	pthread_mutex_unlock(&pc->mu);
	return d;
}

/* One unit of persistence: a whole write or truncate, or one sector of a
 * write. */
typedef struct pc_piece {
	int op;
	uint64_t from, to;   /* WRITE: bytes [from, to) of the file */
} pc_piece;

static inline void pc_apply_piece(pc_bytes *img, const pc_op *o, const pc_piece *p)
{
	if (o->kind == PC_TRUNC) {
		if (o->off < img->len)
			img->len = (size_t)o->off;
		else
			pc_bytes_set_len(img, (size_t)o->off);
		return;
	}
	pc_bytes_write(img, p->from, o->data + (p->from - o->off), (size_t)(p->to - p->from));
}

/* What one file may hold after the cut. */
static inline void pc_crash_inode(powercut *pc, pc_inode *in, pc_rng *rng, pc_bytes *out)
{
	pc_bytes_copy(out, &in->dur);
	if (!in->nops)
		return;
	/* Pieces: whole ops, or ops split at sector boundaries. */
	bool sectors = pc_below(rng, 2);
	int np = 0, cap = 64;
	pc_piece *pv = malloc((size_t)cap * sizeof *pv);
	for (int i = 0; i < in->nops; i++) {
		pc_op *o = &in->ops[i];
		uint64_t a = o->off, end = o->off + o->len;
		do {
			uint64_t b = end;
			if (o->kind == PC_WRITE && sectors) {
				uint64_t nb = (a / PC_SECTOR + 1) * PC_SECTOR;
				if (nb < b)
					b = nb;
			}
			if (np == cap) {
				cap *= 2;
				pv = realloc(pv, (size_t)cap * sizeof *pv);
			}
			pv[np++] = (pc_piece){i, a, b};
			a = b;
		} while (o->kind == PC_WRITE && a < end);
	}
	bool *keep = calloc((size_t)np, sizeof *keep);
	int mode = (int)pc_below(rng, 6);
	int k = (int)pc_below(rng, (uint64_t)np + 1);
	switch (mode) {
	case 0: /* nothing reached the disk */
		break;
	case 1: /* everything did */
		for (int i = 0; i < np; i++)
			keep[i] = true;
		break;
	case 2: /* a prefix, in order */
		for (int i = 0; i < k; i++)
			keep[i] = true;
		break;
	default: /* any subset (3), reordered (4), with the size grown (5) */
		for (int i = 0; i < np; i++)
			keep[i] = pc_below(rng, 2);
		break;
	}
	/* Order of application: program order, or shuffled (matters only
	 * where writes overlap, e.g. a batch rewritten after a failure). */
	int *order = malloc((size_t)np * sizeof *order);
	for (int i = 0; i < np; i++)
		order[i] = i;
	if (mode == 4)
		for (int i = np - 1; i > 0; i--) {
			int j = (int)pc_below(rng, (uint64_t)i + 1), t = order[i];
			order[i] = order[j];
			order[j] = t;
		}
	for (int i = 0; i < np; i++) {
		pc_piece *p = &pv[order[i]];
		pc_op *o = &in->ops[p->op];
		if (keep[order[i]]) {
			/* A kept sector may itself be torn at a byte (mode 2's next
			 * piece, sometimes): the disk wrote part of it. */
			pc_apply_piece(out, o, p);
			pc->kept_writes++;
		} else if (mode == 2 && order[i] == k && o->kind == PC_WRITE && pc_below(rng, 2)) {
			pc_piece torn = *p;
			torn.to = torn.from + pc_below(rng, p->to - p->from);
			pc_apply_piece(out, o, &torn);
			pc->torn_writes++;
		} else {
			pc->lost_writes++;
		}
	}
	if (mode == 5 && out->len < in->cur.len)
		pc_bytes_set_len(out, in->cur.len);  /* size made it, data did not */
	free(order);
	free(keep);
	free(pv);
}

static inline void pc_write_file(const char *dir, const char *name, const pc_bytes *b)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		abort();
	if (b->len && pwrite(fd, b->p, b->len, 0) != (ssize_t)b->len)
		abort();
	close(fd);
}

/* Rewrite the directory as the disk may look after the cut (call once the
 * code under test has stopped using it). */
static inline void pc_crash(powercut *pc, pc_rng *rng)
{
	pthread_mutex_lock(&pc->mu);
	pc->dead = true;
	pc->lost_writes = pc->torn_writes = pc->kept_writes = pc->lost_dirops = 0;
	/* Names: the durable directory plus a prefix of what followed. */
	pc_names names = {0};
	pc_names_copy(&names, &pc->dur);
	int keep = (int)pc_below(rng, (uint64_t)pc->ndops + 1);
	pc->lost_dirops = (unsigned long)(pc->ndops - keep);
	for (int i = 0; i < keep; i++) {
		pc_dirop *d = &pc->dops[i];
		if (d->kind == PC_CREATE) {
			pc_names_set(&names, d->a, d->ino);
		} else if (d->kind == PC_RENAME) {
			int j = pc_names_find(&names, d->a);
			if (j >= 0) {
				int ino = names.v[j].ino;
				pc_names_del(&names, d->a);
				pc_names_set(&names, d->b, ino);
			}
		} else {
			pc_names_del(&names, d->a);
		}
	}
	/* Contents: each inode once (it may have two names only if a rename
	 * was half-applied, which a prefix never does). */
	pc_bytes *img = calloc((size_t)pc->nino + 1, sizeof *img);
	bool *done = calloc((size_t)pc->nino + 1, sizeof *done);
	for (int i = 0; i < names.n; i++) {
		int ino = names.v[i].ino;
		if (!done[ino]) {
			pc_crash_inode(pc, &pc->ino[ino], rng, &img[ino]);
			done[ino] = true;
		}
	}
	for (int i = 0; i < pc->seen.n; i++) {
		char path[1024];
		snprintf(path, sizeof path, "%s/%s", pc->dir, pc->seen.v[i].name);
		unlink(path);
	}
	for (int i = 0; i < names.n; i++)
		pc_write_file(pc->dir, names.v[i].name, &img[names.v[i].ino]);
	for (int i = 0; i < pc->nino; i++)
		free(img[i].p);
	free(img);
	free(done);
	free(names.v);
	pthread_mutex_unlock(&pc->mu);
}

static inline void pc_destroy(powercut *pc)
{
	for (int i = 0; i < pc->nino; i++) {
		pc_clear_ops(&pc->ino[i]);
		free(pc->ino[i].ops);
		free(pc->ino[i].dur.p);
		free(pc->ino[i].cur.p);
	}
	free(pc->ino);
	free(pc->cur.v);
	free(pc->dur.v);
	free(pc->seen.v);
	free(pc->dops);
	pthread_mutex_destroy(&pc->mu);
}

#endif
