/*
 * check.c — memflux-check: verify, dump or repair a memfluxfs data dir.
 *
 *   memflux-check DATADIR [--fix [--yes] | --prefix [--yes]] [--dump]
 *   memflux-check --export DATADIR    (export.c: Redis commands on stdout)
 *
 * Verifies memflux.snapshot (by loading it) and every WAL segment with the
 * very walk and verdict recovery uses (mf_wal_walk / mf_wal_judge,
 * wal/FORMAT.md), and prints one line per file.  Exit status:
 *   0  everything is consistent (or --fix repaired it)
 *   1  only a damaged unsynced tail in memflux.wal (recovery cuts it by
 *      itself)
 *   2  corruption: the daemon will refuse to mount (or --fix failed)
 *   3  usage or I/O error
 *
 * --fix (refused while a daemon holds DATADIR/memflux.lock) prints its plan
 * first and asks when stdin is a terminal (--yes skips the question):
 *   - a segment whose header alone is damaged gets its header rebuilt from
 *     the salt that still validates its records (nothing dropped);
 *   - otherwise every intact record from the damaged file on is salvaged
 *     into a new memflux.wal, renumbered to close the gaps, and the plan
 *     lists the LSNs lost, the damaged bytes per file and how many records
 *     were renumbered; the originals are moved aside as .broken-<time>;
 *   - --prefix instead keeps only the consistent prefix (point in time: the
 *     damaged segment is cut at its first bad record, later ones moved
 *     aside);
 *   - a damaged snapshot keeps the keys read before the damage (the count
 *     and the last key kept are printed).
 * --dump: one line per record, in LSN order.
 */
#include "../io/le.h"
#include "export.h"
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void usage(void)
{
	fprintf(stderr,
	        "usage: memflux-check DATADIR [--fix | --prefix] [--yes] [--dump]\n"
	        "       memflux-check --export DATADIR | redis-cli -p PORT --pipe\n"
	        "  verifies memflux.snapshot and the WAL segments of DATADIR\n"
	        "  --fix     repair: rebuild a damaged segment header, else salvage every\n"
	        "            intact WAL record (renumbered past the lost ones); salvage the\n"
	        "            keys of a damaged snapshot; originals kept as <file>.broken-<time>\n"
	        "  --prefix  repair by keeping only the WAL's consistent prefix (point in time)\n"
	        "  --yes     do not ask before changing anything (asked only on a tty)\n"
	        "  --dump    print every WAL record\n"
	        "  --export  write every key as Redis commands (redis-cli --pipe format) on\n"
	        "            stdout, after recovering DATADIR as a mount would\n"
	        "  --version print the version and exit\n"
	        "exit: 0 ok, 1 damaged unsynced tail only (recovery cuts it), 2 corruption or\n"
	        "      missing data, 3 usage/I-O error\n");
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
	case MF_OP_WRITEV: {
		mf_writev w;
		if (mf_writev_open(op, &w) != 0) {
			printf(" size=%" PRIu64 " (malformed)", op->arg);
			break;
		}
		uint64_t off, bytes = 0, n = 0;
		const char *p;
		uint32_t len;
		while (mf_writev_next(&w, &off, &p, &len))
			n++, bytes += len;
		printf(" size=%" PRIu64 " keep=%" PRIu64 " ranges=%" PRIu64 " bytes=%" PRIu64, op->arg,
		       w.keep, n, bytes);
		break;
	}
	default:
		if (op->arg)
			printf(" arg=%" PRIu64, op->arg);
	}
	printf(" time=");
	print_time(stdout, op->time_ns);
	printf(" off=%" PRIu64 "\n", off);
	return 0;
}

/* Items of the snapshot: dropped at once, or (for a salvage) kept. */
typedef struct snap_items {
	bool keep;
	mf_item *v;
	size_t n, cap;
} snap_items;

static int snapshot_item(void *ctx, mf_item *item)
{
	snap_items *si = ctx;
	if (!si->keep) {
		mf_slice_unref(&item->key);
		mf_slice_unref(&item->val);
		return 0;
	}
	if (si->n == si->cap) {
		si->cap = si->cap ? si->cap * 2 : 1024;
		si->v = mf_xrealloc(si->v, si->cap * sizeof *si->v);
	}
	si->v[si->n++] = *item;
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

typedef struct wal_file {
	char *path;
	bool sealed;
	uint64_t name_lsn;
} wal_file;

/* What the walk found, file by file (for the summary and --fix). */
typedef struct walk_state {
	int files;
	uint64_t records;
	char bad_path[4096];      /* the file the verdict is about ("" if none) */
	mf_wal_scan bad_sc;
	mf_wal_verdict v;
	bool io_error;
	uint64_t chain_last;      /* last LSN of the files read so far (init: the
	                             snapshot's LSN) */
	uint64_t base;            /* the LSN just before the damaged file */
} walk_state;

static void report_file(void *ctx, const mf_wal_file_report *r)
{
	walk_state *ws = ctx;
	ws->files++;
	if (r->err) {
		printf("%s: read error: %s\n", r->path, strerror(-r->err));
		ws->io_error = true;
		return;
	}
	const mf_wal_scan *sc = &r->sc;
	printf("%s: %" PRIu64 " records", r->path, sc->records);
	if (sc->records)
		printf(", lsn %" PRIu64 "..%" PRIu64, sc->first_lsn, sc->last_lsn);
	ws->records += sc->records;
	switch (r->v.action) {
	case MF_WAL_KEEP:
		printf(", ok\n");
		break;
	case MF_WAL_CUT:
		printf(", damaged unsynced tail (recovery cuts it by itself)\n  %s\n", r->v.msg);
		break;
	default:
		printf(", CORRUPT\n  %s\n", r->v.msg);
		break;
	}
	if (r->v.action == MF_WAL_KEEP) {
		uint64_t end = r->sealed ? r->name_lsn
		                         : sc->records ? sc->last_lsn : sc->hdr.prev_lsn;
		if (end > ws->chain_last)
			ws->chain_last = end;
	} else {
		ws->base = ws->chain_last;
	}
	if (r->v.action != MF_WAL_KEEP) {
		/* r->path dies with the walk: keep a copy. */
		snprintf(ws->bad_path, sizeof ws->bad_path, "%s", r->path);
		ws->bad_sc = *sc;
		ws->v = r->v;
	}
}

/* Records, LSN range and bytes a whole file holds (verify-only scan). */
static void describe_file(mf_io *io, const char *path, char *out, size_t n)
{
	mf_wal_scan sc;
	int r = mf_wal_scan_file(io, path, NULL, NULL, &sc);
	if (r < 0)
		snprintf(out, n, "unreadable: %s", strerror(-r));
	else if (sc.records)
		snprintf(out, n, "%" PRIu64 " records, LSNs %" PRIu64 "..%" PRIu64 ", %" PRIu64 " bytes",
		         sc.records, sc.first_lsn, sc.last_lsn, sc.file_size);
	else
		snprintf(out, n, "no valid record, %" PRIu64 " bytes", sc.file_size);
}

static bool confirm(bool yes)
{
	if (yes || !isatty(STDIN_FILENO))
		return true;
	printf("apply these changes? [y/N] ");
	fflush(stdout);
	char line[16];
	if (!fgets(line, sizeof line, stdin))
		return false;
	return line[0] == 'y' || line[0] == 'Y';
}

/* Write a copy of path with its first 32 bytes replaced by hdr. */
static int copy_with_header(mf_io *io, const char *path, const char *dst,
                            const uint8_t hdr[MF_WAL_FILE_HEADER])
{
	int r = copy_file(io, path, dst);
	if (r < 0)
		return r;
	int fd = io->open(io, dst, O_RDWR, 0);
	if (fd < 0)
		return fd;
	r = mf_io_pwrite_all(io, fd, hdr, MF_WAL_FILE_HEADER, 0);
	if (r == 0)
		r = io->fsync(io, fd);
	int c = io->close(io, fd);
	return r < 0 ? r : c;
}

/*
 * A segment whose header is damaged but whose salt survived still holds
 * valid records (their checksums are seeded with the salt, not with the
 * header's checksum).  Rebuild the header from the salt (and prev_lsn, or
 * the first record's LSN - 1) and keep the file if that makes its records
 * readable.  Returns 1 if repaired, 0 if not possible, -errno.
 */
static int repair_header(mf_io *io, const char *path, bool yes)
{
	int fd = io->open(io, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	uint8_t old[MF_WAL_FILE_HEADER + MF_WAL_REC_HEADER];
	off_t sz = 0;
	int r = io->fstat_size(io, fd, &sz);
	if (r == 0 && (uint64_t)sz < sizeof old)
		r = 1;  /* no record to vouch for the salt */
	if (r == 0)
		r = mf_io_pread_all(io, fd, old, sizeof old, 0);
	io->close(io, fd);
	if (r != 0)
		return r < 0 ? r : 0;
	uint64_t salt = mf_le_get64(old + 12);
	uint64_t prevs[2] = {mf_le_get64(old + 20), mf_le_get64(old + MF_WAL_FILE_HEADER + 8) - 1};
	size_t tn = strlen(path) + 16;
	char *tmp = mf_xmalloc(tn);
	snprintf(tmp, tn, "%s.hdrfix", path);
	int repaired = 0;
	for (int i = 0; i < 2 && !repaired; i++) {
		uint8_t hdr[MF_WAL_FILE_HEADER];
		mf_wal_file_header_encode(hdr, salt, prevs[i]);
		io->unlink(io, tmp);
		r = copy_with_header(io, path, tmp, hdr);
		if (r < 0)
			break;
		mf_wal_scan sc;
		r = mf_wal_scan_file(io, tmp, NULL, NULL, &sc);
		if (r < 0)
			break;
		if (sc.records == 0)
			continue;
		printf("plan: rewrite the damaged header of %s (its salt still validates %" PRIu64
		       " records, LSNs %" PRIu64 "..%" PRIu64 "); nothing else dropped here\n",
		       path, sc.records, sc.first_lsn, sc.last_lsn);
		if (!confirm(yes)) {
			printf("nothing changed\n");
			r = 0;
			break;
		}
		char *aside = broken_name(path, time(NULL));
		r = copy_file(io, path, aside);
		if (r == 0)
			r = io->rename(io, tmp, path);
		if (r == 0) {
			printf("fixed: %s header rewritten (original kept as %s)\n", path, aside);
			repaired = 1;
		}
		free(aside);
	}
	io->unlink(io, tmp);
	free(tmp);
	return r < 0 ? r : repaired;
}

/* ---- --fix (default): salvage every intact record ---- */

typedef struct salv {
	mf_io *io;
	bool dry;                 /* plan only */
	int fd;
	uint64_t salt, off;
	uint64_t base;            /* LSN before the damaged file */
	uint64_t last_orig;       /* highest original LSN taken */
	uint64_t next;            /* last new LSN given */
	uint64_t kept, renumbered, skipped, lost;
	char lost_txt[1024];
	size_t lost_len;
	int err;
} salv;

static void salv_lost(salv *sv, uint64_t a, uint64_t b)
{
	sv->lost += b - a + 1;
	if (sv->lost_len + 48 < sizeof sv->lost_txt)
		sv->lost_len += (size_t)snprintf(sv->lost_txt + sv->lost_len,
		                                 sizeof sv->lost_txt - sv->lost_len,
		                                 a == b ? "%s%" PRIu64 : "%s%" PRIu64 "..%" PRIu64,
		                                 sv->lost_len ? ", " : "", a, b);
}

static int salv_record(void *ctx, mf_op *op, uint64_t off)
{
	(void)off;
	salv *sv = ctx;
	if (op->lsn <= sv->last_orig) {
		sv->skipped++;  /* covered by the snapshot, or already taken */
		return 0;
	}
	if (op->lsn != sv->last_orig + 1)
		salv_lost(sv, sv->last_orig + 1, op->lsn - 1);
	sv->last_orig = op->lsn;
	uint64_t orig = op->lsn;
	op->lsn = ++sv->next;
	if (op->lsn != orig)
		sv->renumbered++;
	sv->kept++;
	if (!sv->dry) {
		/* Written and fsynced by us before it is renamed into place:
		 * durable up to the record before it. */
		mf_wal_rec_place at = {.salt = sv->salt, .off = sv->off, .durable = op->lsn - 1};
		size_t n;
		uint8_t *rec = mf_wal_record_encode(op, &at, &n);
		int r = mf_io_pwrite_all(sv->io, sv->fd, rec, n, (off_t)sv->off);
		free(rec);
		if (r < 0) {
			op->lsn = orig;
			return sv->err = r;
		}
		sv->off += n;
	}
	op->lsn = orig;
	return 0;
}

/* Read every file from the damaged one on, in order, into sv. */
static int salv_pass(mf_io *io, wal_file *files, int from, int nf, salv *sv, bool print)
{
	for (int i = from; i < nf; i++) {
		uint64_t bad = 0;
		bool capped = false;
		uint64_t kept0 = sv->kept;
		int r = mf_wal_salvage_file(io, files[i].path, salv_record, sv, &bad, &capped);
		if (r < 0 || sv->err)
			return r < 0 ? r : sv->err;
		if (print)
			printf("  %s: %" PRIu64 " intact records kept, %" PRIu64 " damaged bytes dropped%s\n",
			       files[i].path, sv->kept - kept0, bad,
			       capped ? " (search stopped: too inconsistent)" : "");
	}
	return 0;
}

static int fix_salvage(mf_io *io, const char *dir, wal_file *files, int bad, int nf,
                       walk_state *ws, bool yes)
{
	salv sv = {.io = io, .dry = true, .fd = -1, .base = ws->base, .last_orig = ws->base,
	           .next = ws->base};
	printf("plan (salvage every intact record from %s on; the daemon replays the log "
	       "from LSN %" PRIu64 "):\n", files[bad].path, ws->base + 1);
	int r = salv_pass(io, files, bad, nf, &sv, true);
	if (r < 0)
		return r;
	printf("  lost: %" PRIu64 " records%s%s%s; %" PRIu64 " later records renumbered to close "
	       "the gap (their effects are applied without the lost ones)\n",
	       sv.lost, sv.lost ? " (LSNs " : "", sv.lost_txt, sv.lost ? ")" : "", sv.renumbered);
	printf("  result: memflux.wal with %" PRIu64 " records, LSNs %" PRIu64 "..%" PRIu64
	       "; the files above are moved aside as <file>.broken-<time>\n",
	       sv.kept, ws->base + 1, sv.next);
	if (!confirm(yes)) {
		printf("nothing changed\n");
		return 1;
	}
	char *tmp = mf_wal_path(dir, "memflux.wal.salvage-tmp");
	int fd = io->open(io, tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		free(tmp);
		return fd;
	}
	salv w = {.io = io, .fd = fd, .salt = mf_wal_new_salt(), .off = MF_WAL_FILE_HEADER,
	          .base = ws->base, .last_orig = ws->base, .next = ws->base};
	uint8_t hdr[MF_WAL_FILE_HEADER];
	mf_wal_file_header_encode(hdr, w.salt, ws->base);
	r = mf_io_pwrite_all(io, fd, hdr, sizeof hdr, 0);
	if (r == 0)
		r = salv_pass(io, files, bad, nf, &w, false);
	if (r == 0)
		r = io->fsync(io, fd);
	int c = io->close(io, fd);
	if (r == 0)
		r = c;
	time_t now = time(NULL);
	for (int i = bad; i < nf && r == 0; i++) {
		char *aside = broken_name(files[i].path, now);
		r = io->rename(io, files[i].path, aside);
		if (r == 0)
			printf("fixed: %s moved aside to %s\n", files[i].path, aside);
		free(aside);
	}
	char *active = mf_wal_path(dir, MF_WAL_ACTIVE_NAME);
	if (r == 0)
		r = io->rename(io, tmp, active);
	if (r == 0)
		r = io->fsync_dir(io, dir);
	if (r == 0)
		printf("fixed: %s holds the %" PRIu64 " salvaged records\n", active, w.kept);
	else
		io->unlink(io, tmp);
	free(active);
	free(tmp);
	return r;
}

/* --fix: keep the consistent prefix of the history, up to the first damage
 * point; say exactly what is dropped; keep every original aside. */
static int fix_wal(mf_io *io, const char *dir, walk_state *ws, bool yes, bool prefix)
{
	mf_wal_seg *segs = NULL;
	int n = mf_wal_list_sealed(io, dir, &segs);
	if (n < 0)
		return n;
	char *active = mf_wal_path(dir, MF_WAL_ACTIVE_NAME);
	wal_file *files = mf_xmalloc(sizeof *files * (size_t)(n + 1));
	int nf = 0, bad = -1;
	for (int i = 0; i < n; i++)
		files[nf++] = (wal_file){segs[i].path, true, segs[i].lsn};
	if (access(active, F_OK) == 0)
		files[nf++] = (wal_file){active, false, 0};
	for (int i = 0; i < nf; i++)
		if (strcmp(files[i].path, ws->bad_path) == 0)
			bad = i;
	int fr = 0;
	if (bad < 0)
		goto out;
	if (!prefix) {
		fr = fix_salvage(io, dir, files, bad, nf, ws, yes);
		goto out;
	}
	const mf_wal_scan *sc = &ws->bad_sc;
	bool header_ok = sc->status != MF_SCAN_BAD_HEADER && sc->status != MF_SCAN_SHORT_HEADER;
	/* A chain refusal (LSNs missing before this file) keeps nothing of it:
	 * its records cannot follow what precedes them. */
	bool chain = strstr(ws->v.msg, "are missing before") || strstr(ws->v.msg, "overlaps");
	uint64_t cut = header_ok && !chain ? sc->good_end : 0;
	bool keep_prefix = cut > MF_WAL_FILE_HEADER || (!files[bad].sealed && cut > 0);
	printf("plan (the history is kept up to the first damage point, LSN %" PRIu64 "):\n",
	       header_ok && !chain ? (sc->records ? sc->last_lsn : sc->hdr.prev_lsn) : 0);
	char what[256];
	if (keep_prefix) {
		printf("  cut %s at offset %" PRIu64 ": drop %" PRIu64 " bytes", files[bad].path, cut,
		       sc->file_size - cut);
		if (sc->status == MF_SCAN_DAMAGED || sc->status == MF_SCAN_BAD_LSN) {
			printf(" from LSN %" PRIu64, sc->expected_lsn);
			if (sc->after_records)
				printf(" (%" PRIu64 " intact records after the damage, LSNs %" PRIu64
				       "..%" PRIu64 ", cannot be replayed without LSN %" PRIu64 ")",
				       sc->after_records, sc->after_first_lsn, sc->after_last_lsn,
				       sc->expected_lsn);
		}
		printf("\n");
	} else {
		describe_file(io, files[bad].path, what, sizeof what);
		printf("  move %s aside (%s)\n", files[bad].path, what);
	}
	for (int i = bad + 1; i < nf; i++) {
		describe_file(io, files[i].path, what, sizeof what);
		printf("  move %s aside (after the damage: %s)\n", files[i].path, what);
	}
	printf("  originals are kept as <file>.broken-<time>\n");
	if (!confirm(yes)) {
		printf("nothing changed\n");
		fr = 1;
		goto out;
	}
	time_t now = time(NULL);
	for (int i = bad; i < nf && fr == 0; i++) {
		wal_file *f = &files[i];
		char *aside = broken_name(f->path, now);
		if (i == bad && keep_prefix) {
			fr = copy_file(io, f->path, aside);
			if (fr == 0)
				fr = mf_io_cut_file(io, f->path, cut);
			if (fr == 0)
				printf("fixed: %s cut at offset %" PRIu64 " (original kept as %s)\n",
				       f->path, cut, aside);
			uint64_t last = sc->records ? sc->last_lsn : sc->hdr.prev_lsn;
			if (fr == 0 && f->sealed && last != f->name_lsn) {
				/* A sealed segment is named after its last LSN; the WAL
				 * hands out the LSNs after it again, and a later seal
				 * must not collide with this name. */
				char name[64];
				snprintf(name, sizeof name, MF_WAL_ACTIVE_NAME ".%016" PRIx64, last);
				char *np = mf_wal_path(dir, name);
				fr = io->rename(io, f->path, np);
				if (fr == 0)
					printf("fixed: %s renamed to %s (its last LSN now)\n", f->path, np);
				free(np);
			}
		} else {
			fr = io->rename(io, f->path, aside);
			if (fr == 0)
				printf("fixed: %s moved aside to %s\n", f->path, aside);
		}
		if (fr < 0)
			fprintf(stderr, "memflux-check: fixing %s: %s\n", f->path, strerror(-fr));
		free(aside);
	}
	if (fr == 0)
		fr = io->fsync_dir(io, dir);
out:
	free(files);
	free(active);
	mf_wal_segs_free(segs, n);
	return fr;
}

/*
 * A damaged snapshot: keep every key read before the damage (LZ4 block
 * checksums and the stream checks stop the load at the first bad block; the
 * blocks are linked, so nothing after it decodes), write them as the
 * snapshot at the same LSN, and say exactly what is lost.  The WAL segments
 * the snapshot covered are gone, so the lost keys cannot be rebuilt.
 */
static int salvage_snapshot(mf_io *io, const char *dir, const mf_snapshot_info *si,
                            const snap_items *items, bool yes)
{
	uint64_t lost = si->declared_keys > items->n ? si->declared_keys - items->n : 0;
	printf("plan: rewrite %s/" MF_SNAPSHOT_NAME " at lsn %" PRIu64 " with the %zu keys read "
	       "before the damage; %" PRIu64 " of the %" PRIu64 " keys it declares are lost "
	       "(they follow the damage: their names cannot be read)\n",
	       dir, si->lsn, items->n, lost, si->declared_keys);
	if (items->n) {
		printf("  last key recovered: ");
		print_escaped(stdout, items->v[items->n - 1].key);
		printf(" (keys after it, in the snapshot's order, are lost)\n");
	}
	if (!confirm(yes)) {
		printf("nothing changed\n");
		return 1;
	}
	char *path = mf_wal_path(dir, MF_SNAPSHOT_NAME);
	char *aside = broken_name(path, time(NULL));
	int r = io->rename(io, path, aside);
	if (r == 0)
		r = io->fsync_dir(io, dir);
	mf_snapshot_info wi;
	if (r == 0)
		r = mf_snapshot_write(io, dir, si->lsn, items->v, items->n, &wi);
	if (r == 0)
		printf("fixed: %s rewritten with %zu keys at lsn %" PRIu64 " (original kept as %s)\n",
		       path, items->n, si->lsn, aside);
	else
		fprintf(stderr, "memflux-check: salvaging %s: %s\n", path, strerror(-r));
	free(aside);
	free(path);
	return r;
}

typedef struct check_args {
	const char *dir;
	bool fix, dump, yes, prefix, export;
} check_args;

/* -1: go on; else the exit status. */
static int parse_args(int argc, char **argv, check_args *a)
{
	memset(a, 0, sizeof *a);
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--fix") == 0)
			a->fix = true;
		else if (strcmp(argv[i], "--dump") == 0)
			a->dump = true;
		else if (strcmp(argv[i], "--export") == 0)
			a->export = true;
		else if (strcmp(argv[i], "--yes") == 0 || strcmp(argv[i], "-y") == 0)
			a->yes = true;
		else if (strcmp(argv[i], "--prefix") == 0)
			a->fix = a->prefix = true;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage();
			return 0;
		} else if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
			/* ops (issue 13): same version as memfluxfs (CMake's MF_VERSION) */
			printf("memflux-check %s (WAL format %d)\n", MF_VERSION, MF_WAL_VERSION);
			return 0;
		} else if (argv[i][0] == '-' || a->dir) {
			usage();
			return 3;
		} else
			a->dir = argv[i];
	}
	if (!a->dir || (a->export && (a->fix || a->dump))) {
		usage();
		return 3;
	}
	return -1;
}

/* Load memflux.snapshot (keeping its items for --fix) and print one line.
 * Returns the LSN recovery would start after (read from the header even
 * when the rest is damaged); *bad: the snapshot is damaged or unreadable. */
static uint64_t check_snapshot(mf_io *io, const char *dir, mf_snapshot_info *si,
                               snap_items *items, int *load_r, bool *bad)
{
	memset(si, 0, sizeof *si);
	char err[1024] = "";
	int r = mf_snapshot_load(io, dir, snapshot_item, items, si, err, sizeof err);
	*load_r = r;
	*bad = false;
	if (r == -ENOENT) {
		printf("%s/" MF_SNAPSHOT_NAME ": none\n", dir);
		return 0;
	}
	if (r == 0) {
		printf("%s/" MF_SNAPSHOT_NAME ": ok, lsn %" PRIu64 ", %" PRIu64 " keys, %" PRIu64
		       " bytes (%" PRIu64 " uncompressed)\n",
		       dir, si->lsn, si->keys, si->file_bytes, si->raw_bytes);
		return si->lsn;
	}
	printf("%s/" MF_SNAPSHOT_NAME ": %s: %s\n", dir,
	       r == -EBADMSG ? "CORRUPT" : "cannot load", err[0] ? err : strerror(-r));
	*bad = true;
	return si->lsn;
}

int main(int argc, char **argv)
{
	/* ops (issue 13): what --fix writes (WAL, snapshot) holds the user's
	 * keys: 0600 like the daemon's files, whatever the umask. */
	umask(077);
	check_args a;
	int pr = parse_args(argc, argv, &a);
	if (pr >= 0)
		return pr;
	if (a.export)
		return mf_check_export(a.dir, stdout);
	const char *dir = a.dir;
	bool fix = a.fix, dump = a.dump, yes = a.yes, prefix = a.prefix;
	if (access(dir, R_OK | X_OK) < 0) {
		fprintf(stderr, "memflux-check: %s: %s\n", dir, strerror(errno));
		return 3;
	}
	mf_io *io = mf_io_posix();
	int status = 0;  /* of the WAL: 0, 1 cut by recovery, 2 corrupt */
	bool snap_bad;

	if (fix) {
		/* Never repair under a running daemon. */
		char *lp = mf_wal_path(dir, "memflux.lock");  /* the daemon's lock (db.c) */
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
	snap_items items = {.keep = fix};
	int snap_r;
	uint64_t snap_lsn = check_snapshot(io, dir, &si, &items, &snap_r, &snap_bad);

	/* ---- WAL segments, in replay order, judged as recovery judges ---- */
	mf_wal_seg *segs = NULL;
	int n = mf_wal_list_sealed(io, dir, &segs);
	if (n < 0) {
		fprintf(stderr, "memflux-check: %s: %s\n", dir, strerror(-n));
		return 3;
	}
	for (int i = 0; i < n && segs[i].lsn <= snap_lsn; i++)
		printf("%s: covered by the snapshot (recovery deletes it unread)\n", segs[i].path);
	mf_wal_segs_free(segs, n);
	walk_state ws;
	memset(&ws, 0, sizeof ws);
	ws.chain_last = snap_lsn;
	mf_wal_verdict v;
	uint64_t last = 0;
	int r = mf_wal_walk(io, dir, snap_lsn, dump ? dump_record : NULL, NULL, report_file, &ws, &v,
	                &last);
	if (r < 0 && !ws.io_error) {
		fprintf(stderr, "memflux-check: %s: %s\n", dir, strerror(-r));
		return 3;
	}
	if (v.action == MF_WAL_CUT)
		status = 1;
	else if (v.action == MF_WAL_REFUSE)
		status = 2;
	printf("%d WAL segment(s) read, %" PRIu64 " records", ws.files, ws.records);
	if (last)
		printf(", last lsn %" PRIu64, last);
	printf("\n");

	if (fix && status > 0 && !ws.io_error && ws.bad_sc.status == MF_SCAN_BAD_HEADER &&
	    ws.bad_sc.file_size > MF_WAL_FILE_HEADER) {
		/* Salvage the records of a segment whose header alone is bad,
		 * then judge the WAL again. */
		if (repair_header(io, ws.bad_path, yes) > 0) {
			io->fsync_dir(io, dir);
			memset(&ws, 0, sizeof ws);
			ws.chain_last = snap_lsn;
			printf("checking again:\n");
			r = mf_wal_walk(io, dir, snap_lsn, NULL, NULL, report_file, &ws, &v, &last);
			status = v.action == MF_WAL_CUT ? 1 : v.action == MF_WAL_REFUSE ? 2 : 0;
		}
	}
	if (fix && status > 0 && !ws.io_error) {
		int fr = fix_wal(io, dir, &ws, yes, prefix);
		if (fr == 0)
			status = 0;
		else if (fr < 0)
			status = 2;
		/* fr > 0: declined at the prompt, the status stands */
	}

	if (status == 1 && !fix)
		printf("damaged unsynced tail: recovery cuts it by itself (or run memflux-check "
		       "--fix %s)\n", dir);
	else if (status == 2 && !fix)
		printf("WAL corruption or missing data: the daemon will refuse to mount %s; "
		       "memflux-check --fix %s salvages every intact record (--prefix keeps only "
		       "the consistent prefix)\n", dir, dir);
	if (snap_bad && fix && snap_r == -EBADMSG) {
		if (salvage_snapshot(io, dir, &si, &items, yes) == 0)
			snap_bad = false;
	}
	mf_store_items_free(items.v, items.n);
	if (snap_bad) {
		printf("snapshot damaged: the daemon will refuse to mount %s%s\n", dir,
		       fix ? "" : "; memflux-check --fix salvages the keys before the damage");
		status = 2;
	}
	if (ws.io_error)
		return 3;
	return status;
}
