/*
 * check.c — memflux-check: verify, dump or repair a memfluxfs data dir.
 *
 *   memflux-check DATADIR [--fix] [--dump]
 *
 * Verifies memflux.snapshot (by loading it) and every WAL segment, with the
 * same scanner and the same rules as recovery (wal/FORMAT.md), and prints
 * one line per file.  Exit status:
 *   0  everything is consistent (or --fix repaired it)
 *   1  only a torn tail in the active segment (recovery cuts it by itself)
 *   2  corruption: the daemon will refuse to mount (or --fix failed)
 *   3  usage or I/O error
 *
 * --fix (refused while a daemon holds DATADIR/memflux.lock): the damaged
 * segment is copied aside to <file>.broken-<unix time> and cut at its first
 * bad record; for point-in-time consistency every later segment is moved
 * aside too (replaying records after a gap would build a state that never
 * existed).  A segment whose header is bad is moved aside whole.  The
 * snapshot is never modified.
 * --dump: one line per record, in LSN order.
 */
#include "crc32c.h"
#include "record.h"
#include "snapshot.h"
#include "wal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr,
	        "usage: memflux-check DATADIR [--fix] [--dump]\n"
	        "  verifies memflux.snapshot and the WAL segments of DATADIR\n"
	        "  --fix   cut a damaged WAL at its first bad record (the original is\n"
	        "          kept as <file>.broken-<time>; later segments are moved aside)\n"
	        "  --dump  print every WAL record\n"
	        "exit: 0 ok, 1 torn tail only, 2 corruption, 3 usage/I-O error\n");
}

/* key bytes: printable ASCII as is, everything else (and space, '\\') as
 * \xHH, so one record is one whitespace-separated line. */
static void print_escaped(FILE *f, mf_slice s)
{
	const unsigned char *p = (const unsigned char *)mf_slice_ptr(s);
	for (size_t i = 0; i < s.len; i++) {
		if (p[i] > 0x20 && p[i] < 0x7f && p[i] != '\\')
			fputc(p[i], f);
		else
			fprintf(f, "\\x%02x", p[i]);
	}
}

static void print_time(FILE *f, int64_t ns)
{
	time_t sec = (time_t)(ns / 1000000000);
	long frac = (long)(ns % 1000000000);
	if (frac < 0) {
		frac += 1000000000;
		sec--;
	}
	struct tm tm;
	char buf[64];
	if (gmtime_r(&sec, &tm) && strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm))
		fprintf(f, "%s.%09ldZ", buf, frac);
	else
		fprintf(f, "%" PRId64 "ns", ns);
}

static int dump_record(void *ctx, mf_op *op, uint64_t off)
{
	(void)ctx;
	printf("lsn=%" PRIu64 " op=%s ktype=%s key=", op->lsn, mf_optype_name(op->type),
	       mf_type_name(op->ktype));
	print_escaped(stdout, op->key);
	if (op->key2.len || op->type == MF_OP_RENAME || op->type == MF_OP_JSON_SETPATH) {
		printf(op->type == MF_OP_JSON_SETPATH ? " path=" : " key2=");
		print_escaped(stdout, op->key2);
	}
	printf(" len=%zu", op->val.len);
	switch (op->type) {
	case MF_OP_TRUNCATE:
		printf(" size=%" PRIu64, op->arg);
		break;
	case MF_OP_SETTIME:
		printf(" mtime=");
		print_time(stdout, (int64_t)op->arg);
		break;
	case MF_OP_LPOP:
		printf(" count=%" PRIu64, op->arg);
		break;
	default:
		if (op->arg)
			printf(" arg=%" PRIu64, op->arg);
	}
	printf(" time=");
	print_time(stdout, op->time_ns);
	printf(" off=%" PRIu64 "\n", off);
	return 0;
}

static int snapshot_item(void *ctx, mf_item *item)
{
	(void)ctx;
	mf_slice_unref(&item->key);
	mf_slice_unref(&item->val);
	return 0;
}

/* Copy path to dst (O_EXCL), fsynced. */
static int copy_file(mf_io *io, const char *path, const char *dst)
{
	int in = io->open(io, path, O_RDONLY, 0);
	if (in < 0)
		return in;
	int out = io->open(io, dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (out < 0) {
		io->close(io, in);
		return out;
	}
	size_t cap = 1u << 20;
	char *buf = mf_xmalloc(cap);
	off_t off = 0;
	int r = 0;
	for (;;) {
		ssize_t n = io->pread(io, in, buf, cap, off);
		if (n < 0) {
			r = (int)n;
			break;
		}
		if (n == 0)
			break;
		r = mf_io_pwrite_all(io, out, buf, (size_t)n, off);
		if (r < 0)
			break;
		off += n;
	}
	free(buf);
	if (r == 0)
		r = io->fsync(io, out);
	int c = io->close(io, out);
	io->close(io, in);
	return r < 0 ? r : c;
}

static char *broken_name(const char *path, time_t now)
{
	size_t n = strlen(path) + 40;
	char *p = mf_xmalloc(n);
	snprintf(p, n, "%s.broken-%lld", path, (long long)now);
	return p;
}

static int cut_file(mf_io *io, const char *path, uint64_t off)
{
	int fd = io->open(io, path, O_RDWR, 0);
	if (fd < 0)
		return fd;
	int r = io->ftruncate(io, fd, (off_t)off);
	if (r == 0)
		r = io->fsync(io, fd);
	int c = io->close(io, fd);
	return r < 0 ? r : c;
}

typedef struct wal_file {
	char *path;
	bool sealed;
	uint64_t name_lsn;
} wal_file;

int main(int argc, char **argv)
{
	const char *dir = NULL;
	bool fix = false, dump = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--fix") == 0)
			fix = true;
		else if (strcmp(argv[i], "--dump") == 0)
			dump = true;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage();
			return 0;
		} else if (argv[i][0] == '-' || dir) {
			usage();
			return 3;
		} else
			dir = argv[i];
	}
	if (!dir) {
		usage();
		return 3;
	}
	if (access(dir, R_OK | X_OK) < 0) {
		fprintf(stderr, "memflux-check: %s: %s\n", dir, strerror(errno));
		return 3;
	}
	mf_io *io = mf_io_posix();
	int status = 0;  /* of the WAL: 0, 1 torn, 2 corrupt */
	bool snap_bad = false, io_error = false;

	if (fix) {
		/* Never repair under a running daemon. */
		char *lp = mf_wal_path(dir, "memflux.lock");
		int lfd = open(lp, O_RDWR | O_CLOEXEC);
		if (lfd >= 0 && flock(lfd, LOCK_EX | LOCK_NB) < 0) {
			fprintf(stderr, "memflux-check: %s is in use by a running memfluxfs; "
			        "unmount it before --fix\n", dir);
			free(lp);
			return 3;
		}
		free(lp);
		/* lfd stays open (and locked) until exit. */
	}

	/* ---- snapshot ---- */
	mf_snapshot_info si;
	memset(&si, 0, sizeof si);
	char err[1024] = "";
	int r = mf_snapshot_load(io, dir, snapshot_item, NULL, &si, err, sizeof err);
	uint64_t snap_lsn = 0;
	if (r == -ENOENT) {
		printf("%s/" MF_SNAPSHOT_NAME ": none\n", dir);
	} else if (r == 0) {
		snap_lsn = si.lsn;
		printf("%s/" MF_SNAPSHOT_NAME ": ok, lsn %" PRIu64 ", %" PRIu64 " keys, %" PRIu64
		       " bytes (%" PRIu64 " uncompressed)\n",
		       dir, si.lsn, si.keys, si.file_bytes, si.raw_bytes);
	} else {
		printf("%s/" MF_SNAPSHOT_NAME ": %s: %s\n", dir,
		       r == -EBADMSG ? "CORRUPT" : "cannot load", err[0] ? err : strerror(-r));
		snap_bad = true;
	}

	/* ---- WAL segments, in replay order ---- */
	mf_wal_seg *segs = NULL;
	int n = mf_wal_list_sealed(io, dir, &segs);
	if (n < 0) {
		fprintf(stderr, "memflux-check: %s: %s\n", dir, strerror(-n));
		return 3;
	}
	wal_file *files = mf_xmalloc(sizeof *files * (size_t)(n + 1));
	int nf = 0;
	for (int i = 0; i < n; i++)
		files[nf++] = (wal_file){segs[i].path, true, segs[i].lsn};
	char *active = mf_wal_path(dir, MF_WAL_ACTIVE_NAME);
	if (access(active, F_OK) == 0)
		files[nf++] = (wal_file){active, false, 0};

	uint64_t prev = 0, total = 0;
	int first_bad = -1;       /* file index of the first problem */
	uint64_t bad_cut = 0;     /* where to cut it */
	bool bad_whole = false;   /* the header itself is bad */
	uint64_t bad_records = 0, bad_last = 0;  /* valid records before the cut */
	for (int i = 0; i < nf; i++) {
		wal_file *f = &files[i];
		bool covered = f->sealed && f->name_lsn <= snap_lsn;
		mf_wal_scan sc;
		r = mf_wal_scan_file(io, f->path, prev, dump ? dump_record : NULL, NULL, &sc);
		if (r < 0) {
			printf("%s: read error: %s\n", f->path, strerror(-r));
			io_error = true;
			continue;
		}
		printf("%s: %" PRIu64 " records", f->path, sc.records);
		if (sc.records)
			printf(", lsn %" PRIu64 "..%" PRIu64, sc.first_lsn, sc.last_lsn);
		if (f->sealed && sc.records && sc.last_lsn > f->name_lsn && sc.status == MF_SCAN_OK) {
			/* Records above the name: replay refuses. */
			sc.status = MF_SCAN_BAD_LSN;
			sc.why = "records above the LSN in the segment's name";
			sc.bad_off = sc.good_end;
		}
		bool last_file = i == nf - 1 && !f->sealed;
		int problem = 0;  /* 1 torn, 2 corrupt */
		switch (sc.status) {
		case MF_SCAN_OK:
			printf(", ok");
			break;
		case MF_SCAN_TORN:
			printf(", torn tail at offset %" PRIu64 " (%" PRIu64 " bytes: %s)", sc.bad_off,
			       sc.file_size - sc.bad_off, sc.why);
			problem = last_file ? 1 : 2;
			if (!last_file)
				printf(" in a sealed segment: corruption");
			break;
		case MF_SCAN_SHORT_HEADER:
			printf(", shorter than its header (%" PRIu64 " bytes)", sc.file_size);
			problem = last_file ? 1 : 2;
			break;
		case MF_SCAN_CORRUPT:
			printf(", CORRUPT at offset %" PRIu64 " (%s), valid record follows at offset %" PRIu64,
			       sc.bad_off, sc.why, sc.next_off);
			problem = 2;
			break;
		case MF_SCAN_BAD_LSN:
			printf(", CORRUPT at offset %" PRIu64 " (%s)", sc.bad_off, sc.why);
			problem = 2;
			break;
		default:
			printf(", CORRUPT header (%s)", sc.why);
			problem = 2;
			break;
		}
		if (covered)
			printf(" [covered by the snapshot: recovery deletes it unread]");
		printf("\n");
		total += sc.records;
		if (sc.records)
			prev = sc.last_lsn;
		if (problem && !covered) {
			if (problem > status)
				status = problem;
			if (first_bad < 0) {
				first_bad = i;
				bad_whole = sc.status == MF_SCAN_BAD_HEADER;
				bad_cut = sc.status == MF_SCAN_SHORT_HEADER ? 0 : sc.bad_off;
				bad_records = sc.records;
				bad_last = sc.last_lsn;
			}
		}
	}
	printf("%d WAL segment(s), %" PRIu64 " records", nf, total);
	if (prev)
		printf(", last lsn %" PRIu64, prev);
	printf("\n");

	if (fix && first_bad >= 0) {
		time_t now = time(NULL);
		int fr = 0;
		for (int i = first_bad; i < nf && fr == 0; i++) {
			wal_file *f = &files[i];
			char *aside = broken_name(f->path, now);
			bool keep_prefix = !f->sealed || bad_records > 0;
			if (i == first_bad && !bad_whole && keep_prefix) {
				fr = copy_file(io, f->path, aside);
				if (fr == 0)
					fr = cut_file(io, f->path, bad_cut);
				if (fr == 0)
					printf("fixed: %s cut at offset %" PRIu64 " (original kept as %s)\n",
					       f->path, bad_cut, aside);
				if (fr == 0 && f->sealed && bad_last != f->name_lsn) {
					/* A sealed segment is named after its last LSN; the
					 * WAL will hand out the LSNs after bad_last again, and
					 * a later seal must not collide with this name. */
					char name[64];
					snprintf(name, sizeof name, MF_WAL_ACTIVE_NAME ".%016" PRIx64, bad_last);
					char *np = mf_wal_path(dir, name);
					fr = io->rename(io, f->path, np);
					if (fr == 0)
						printf("fixed: %s renamed to %s (its last LSN now)\n", f->path, np);
					free(np);
				}
			} else {
				fr = io->rename(io, f->path, aside);
				if (fr == 0)
					printf("fixed: %s moved aside to %s%s\n", f->path, aside,
					       i != first_bad ? " (after the damaged segment)"
					       : bad_whole    ? " (bad header)"
					                      : " (no valid record in it)");
			}
			if (fr < 0)
				fprintf(stderr, "memflux-check: fixing %s: %s\n", f->path, strerror(-fr));
			free(aside);
		}
		if (fr == 0)
			fr = io->fsync_dir(io, dir);
		status = fr == 0 ? 0 : 2;
	}

	if (status == 1)
		printf("torn tail: recovery will cut it (or run memflux-check --fix %s)\n", dir);
	else if (status == 2 && !fix)
		printf("WAL corruption found: the daemon will refuse to mount %s; "
		       "run memflux-check --fix %s to keep the consistent prefix\n", dir, dir);
	if (snap_bad) {
		printf("snapshot damaged: the daemon will refuse to mount %s; memflux-check "
		       "does not repair snapshots (the WAL segments it covered are gone)\n", dir);
		status = 2;
	}
	mf_wal_segs_free(segs, n);
	free(active);
	free(files);
	if (io_error)
		return 3;
	return status;
}
