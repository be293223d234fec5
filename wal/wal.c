/*
 * wal.c — the write-ahead log: group-commit writer, interval fsync thread,
 * segment rotation, replay, and what replay shares with memflux-check: the
 * segment scanner, the torn-vs-corrupt verdict (mf_wal_judge), the walk
 * over all segments with its LSN-chain checks (mf_wal_walk) and the salvage
 * scan.  Format and recovery rules: wal/FORMAT.md.
 *
 * Locks (in this order when nested):
 *   seg_mu    rotate's seal/rename vs mf_wal_drop_sealed listing/unlinking
 *   fsync_mu  one fsync at a time, and the active fd only changes under it
 *   mu        the queue, counters, flags; never held across I/O or apply()
 *
 * The writer thread alone writes the active segment and owns `end`; apply()
 * runs only on it (and during replay, before any writer exists).
 */
#include "wal.h"

#include "crc32c.h"
#include "record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* fsync mode names                                                    */

const char *mf_fsync_mode_name(mf_fsync_mode m)
{
	switch (m) {
	case MF_FSYNC_NONE:
		return "none";
	case MF_FSYNC_INTERVAL:
		return "interval";
	case MF_FSYNC_ALWAYS:
		return "always";
	}
	return "?";
}

int mf_fsync_mode_parse(const char *s, mf_fsync_mode *out)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "none") == 0)
		*out = MF_FSYNC_NONE;
	else if (strcmp(s, "interval") == 0)
		*out = MF_FSYNC_INTERVAL;
	else if (strcmp(s, "always") == 0)
		*out = MF_FSYNC_ALWAYS;
	else
		return -EINVAL;
	return 0;
}

/* ------------------------------------------------------------------ */
/* paths and sealed segment listing                                    */

char *mf_wal_path(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = mf_xmalloc(a + b + 2);
	memcpy(p, dir, a);
	p[a] = '/';
	memcpy(p + a + 1, name, b + 1);
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

/* ------------------------------------------------------------------ */
/* buffered segment reader                                             */

#define RD_BUF (1u << 20)

typedef struct rd {
	mf_io *io;
	int fd;
	uint64_t size;
	uint8_t *buf;
	uint64_t boff;  /* file offset of buf[0] */
	size_t blen;    /* valid bytes in buf */
} rd;

/* Make [off, off+n) (n <= RD_BUF, off+n <= size) available contiguously. */
static int rd_need(rd *r, uint64_t off, size_t n, const uint8_t **out)
{
	if (off >= r->boff && off + n <= r->boff + r->blen) {
		*out = r->buf + (off - r->boff);
		return 0;
	}
	size_t want = RD_BUF;
	if (r->size - off < want)
		want = (size_t)(r->size - off);
	r->blen = 0;
	int e = mf_io_pread_all(r->io, r->fd, r->buf, want, (off_t)off);
	if (e < 0)
		return e;
	r->boff = off;
	r->blen = want;
	*out = r->buf;
	return 0;
}

/* CRC-32C of [off, off+n), extending crc; bounded memory. */
static int rd_crc(rd *r, uint64_t off, uint64_t n, uint32_t *crc)
{
	while (n > 0) {
		size_t k = n > RD_BUF ? RD_BUF : (size_t)n;
		const uint8_t *p;
		int e = rd_need(r, off, k, &p);
		if (e < 0)
			return e;
		*crc = mf_crc32c_extend(*crc, p, k);
		off += k;
		n -= k;
	}
	return 0;
}

/* Copy [off, off+n) to dst: from the buffer when it is there, else pread
 * directly (a big value goes straight into its slice). */
static int rd_copy(rd *r, uint64_t off, uint8_t *dst, size_t n)
{
	if (off >= r->boff && off < r->boff + r->blen) {
		size_t k = (size_t)(r->boff + r->blen - off);
		if (k > n)
			k = n;
		memcpy(dst, r->buf + (off - r->boff), k);
		dst += k;
		off += k;
		n -= k;
	}
	if (n == 0)
		return 0;
	if (n < RD_BUF / 2) {
		const uint8_t *p;
		int e = rd_need(r, off, n, &p);
		if (e < 0)
			return e;
		memcpy(dst, p, n);
		return 0;
	}
	return mf_io_pread_all(r->io, r->fd, dst, n, (off_t)off);
}

/* Is there a complete record with a good checksum at off?  MF_REC_* or
 * -errno. */
static int rd_check(rd *r, uint64_t off, uint64_t salt, mf_wal_rec_hdr *h, const char **why)
{
	uint64_t avail = r->size - off;
	size_t hn = avail < MF_WAL_REC_HEADER ? (size_t)avail : MF_WAL_REC_HEADER;
	const uint8_t *p;
	int e = rd_need(r, off, hn, &p);
	if (e < 0)
		return e;
	mf_wal_rec_place at = {.salt = salt, .off = off};
	int st = mf_wal_rec_hdr_parse(p, avail, &at, h, why);
	if (st != MF_REC_OK)
		return st;
	uint32_t crc = mf_wal_rec_seed(salt, off);
	e = rd_crc(r, off + 8, h->len, &crc);
	if (e < 0)
		return e;
	if (!mf_wal_rec_body_ok(h, crc)) {
		*why = "record checksum mismatch";
		return MF_REC_BAD;
	}
	return MF_REC_OK;
}

static int rd_slice(rd *r, uint64_t off, size_t n, mf_slice *out)
{
	*out = MF_SLICE_EMPTY;
	if (n == 0)
		return 0;
	mf_slice s = mf_slice_alloc(n, n);
	int e = rd_copy(r, off, (uint8_t *)s.buf->data + s.off, n);
	if (e < 0) {
		mf_slice_unref(&s);
		return e;
	}
	*out = s;
	return 0;
}

/* Decode the (already checked) record at off. */
static int rd_decode(rd *r, uint64_t off, const mf_wal_rec_hdr *h, mf_op *op)
{
	memset(op, 0, sizeof *op);
	op->lsn = h->lsn;
	op->type = h->type;
	op->ktype = h->ktype;
	op->time_ns = h->time_ns;
	op->arg = h->arg;
	uint64_t p = off + MF_WAL_REC_HEADER;
	/* key, key2 and value are contiguous in the record: one buffer holds
	 * all three (one allocation per record, and a stored key and value then
	 * share it — see store.c's detach_key). */
	mf_slice all;
	int e = rd_slice(r, p, (size_t)h->klen + h->k2len + h->vlen, &all);
	if (e < 0)
		return e;
	if (h->klen)
		op->key = (mf_slice){mf_slice_ref(all).buf, 0, h->klen};
	if (h->k2len)
		op->key2 = (mf_slice){mf_slice_ref(all).buf, h->klen, h->k2len};
	if (h->vlen)
		op->val = (mf_slice){mf_slice_ref(all).buf, (size_t)h->klen + h->k2len, h->vlen};
	mf_slice_unref(&all);
	return 0;
}

/*
 * One forward pass over (bad_off, EOF) after damage: find the valid records
 * there (for the durable horizon they carry, and for the report).  Linear:
 * every offset costs a few comparisons, and the header checksum is computed
 * only where the cheap checks pass; a body checksum only where the salted,
 * offset-bound header checksum matches, which outside genuine records of
 * this very file happens with probability 2^-32.  A found record is followed
 * to its successor without looking inside it.  The body checksums and the
 * buffer refills they cause are bounded by `budget` (a crafted file with
 * overlapping valid headers could otherwise cost O(n^2)); past it the pass
 * stops and says so.
 */
static int rd_resync(rd *r, uint64_t salt, mf_wal_scan *sc)
{
	uint64_t budget = 4 * r->size + (64u << 20);
	uint64_t p = sc->bad_off + 1;
	while (p + MF_WAL_REC_HEADER <= r->size) {
		const uint8_t *hp;
		int e = rd_need(r, p, MF_WAL_REC_HEADER, &hp);
		if (e < 0)
			return e;
		mf_wal_rec_hdr h;
		const char *why;
		mf_wal_rec_place at = {.salt = salt, .off = p};
		if (mf_wal_rec_hdr_parse(hp, r->size - p, &at, &h, &why) != MF_REC_OK) {
			p++;
			continue;
		}
		/* Charged: the bytes checksummed, plus a buffer refill when the
		 * record runs past the buffer (the next offset then re-reads). */
		uint64_t cost = (uint64_t)h.len;
		if (p + 8 + h.len > r->boff + r->blen)
			cost += RD_BUF;
		if (cost > budget) {
			sc->resync_capped = true;
			return 0;
		}
		budget -= cost;
		uint32_t crc = mf_wal_rec_seed(salt, p);
		e = rd_crc(r, p + 8, h.len, &crc);
		if (e < 0)
			return e;
		if (!mf_wal_rec_body_ok(&h, crc)) {
			p++;
			continue;
		}
		if (!sc->after_records) {
			sc->after_first_lsn = h.lsn;
			sc->after_first_off = p;
		}
		sc->after_records++;
		if (h.lsn > sc->after_last_lsn)
			sc->after_last_lsn = h.lsn;
		if (h.durable > sc->durable_max)
			sc->durable_max = h.durable;
		p += 8 + (uint64_t)h.len;
	}
	return 0;
}

int mf_wal_scan_file(mf_io *io, const char *path, mf_wal_record_fn fn, void *ctx,
                     mf_wal_scan *out)
{
	memset(out, 0, sizeof *out);
	int fd = io->open(io, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	rd r = {.io = io, .fd = fd, .buf = NULL, .boff = 0, .blen = 0};
	off_t sz;
	int ret = io->fstat_size(io, fd, &sz);
	if (ret < 0)
		goto done;
	r.size = (uint64_t)sz;
	out->file_size = r.size;
	if (r.size < MF_WAL_FILE_HEADER) {
		out->status = MF_SCAN_SHORT_HEADER;
		out->why = "file shorter than the segment header";
		out->bad_off = 0;
		goto done;
	}
	r.buf = mf_xmalloc(RD_BUF);
	const uint8_t *hp;
	ret = rd_need(&r, 0, MF_WAL_FILE_HEADER, &hp);
	if (ret < 0)
		goto done;
	if (mf_wal_file_header_check(hp, &out->hdr, &out->why) < 0) {
		out->status = MF_SCAN_BAD_HEADER;
		out->bad_off = 0;
		goto done;
	}
	uint64_t salt = out->hdr.salt;
	uint64_t off = MF_WAL_FILE_HEADER;
	uint64_t prev = out->hdr.prev_lsn;
	out->good_end = off;
	while (off < r.size) {
		mf_wal_rec_hdr h;
		const char *why = NULL;
		int st = rd_check(&r, off, salt, &h, &why);
		if (st < 0) {
			ret = st;
			goto done;
		}
		if (st == MF_REC_OK && h.type == MF_WAL_REC_SYNC && h.lsn == prev &&
		    h.durable <= h.lsn) {
			/* A sync marker: everything before it is durable. */
			if (h.durable > out->durable_max)
				out->durable_max = h.durable;
			off += 8 + (uint64_t)h.len;
			out->good_end = off;
			continue;
		}
		if (st == MF_REC_OK && h.lsn != prev + 1) {
			/* Salted and bound to its offset, so written here by this
			 * segment's writer, which numbers records consecutively:
			 * never a torn write. */
			out->status = MF_SCAN_BAD_LSN;
			out->why = "valid record with an unexpected LSN";
			out->bad_off = off;
			out->expected_lsn = prev + 1;
			if (h.durable > out->durable_max)
				out->durable_max = h.durable;
			goto done;
		}
		if (st != MF_REC_OK) {
			out->status = MF_SCAN_DAMAGED;
			out->why = why;
			out->bad_off = off;
			out->expected_lsn = prev + 1;
			ret = rd_resync(&r, salt, out);
			goto done;
		}
		if (fn) {
			mf_op op;
			ret = rd_decode(&r, off, &h, &op);
			if (ret < 0)
				goto done;
			ret = fn(ctx, &op, off);
			mf_op_clear(&op);
			if (ret != 0)
				goto done;
		}
		if (!out->records)
			out->first_lsn = h.lsn;
		out->records++;
		out->last_lsn = h.lsn;
		if (h.durable > out->durable_max)
			out->durable_max = h.durable;
		prev = h.lsn;
		off += 8 + (uint64_t)h.len;
		out->good_end = off;
	}
	out->status = MF_SCAN_OK;
done:
	free(r.buf);
	io->close(io, fd);
	return ret;
}

int mf_wal_salvage_file(mf_io *io, const char *path, mf_wal_record_fn fn, void *ctx,
                        uint64_t *bad_bytes, bool *capped)
{
	*bad_bytes = 0;
	*capped = false;
	int fd = io->open(io, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	rd r = {.io = io, .fd = fd, .buf = NULL, .boff = 0, .blen = 0};
	off_t sz;
	int ret = io->fstat_size(io, fd, &sz);
	if (ret < 0)
		goto done;
	r.size = (uint64_t)sz;
	if (r.size < MF_WAL_FILE_HEADER) {
		*bad_bytes = r.size;
		goto done;
	}
	r.buf = mf_xmalloc(RD_BUF);
	const uint8_t *hp;
	ret = rd_need(&r, 0, MF_WAL_FILE_HEADER, &hp);
	if (ret < 0)
		goto done;
	/* The salt as written, even if the rest of the header is damaged:
	 * the records will tell whether it survived. */
	uint64_t salt = 0;
	for (int i = 7; i >= 0; i--)
		salt = salt << 8 | hp[12 + i];
	uint64_t budget = 4 * r.size + (64u << 20);
	uint64_t p = MF_WAL_FILE_HEADER;
	while (p + MF_WAL_REC_HEADER <= r.size) {
		ret = rd_need(&r, p, MF_WAL_REC_HEADER, &hp);
		if (ret < 0)
			goto done;
		mf_wal_rec_hdr h;
		const char *why;
		mf_wal_rec_place at = {.salt = salt, .off = p};
		if (mf_wal_rec_hdr_parse(hp, r.size - p, &at, &h, &why) != MF_REC_OK) {
			p++;
			(*bad_bytes)++;
			continue;
		}
		uint64_t cost = (uint64_t)h.len;
		if (p + 8 + h.len > r.boff + r.blen)
			cost += RD_BUF;
		if (cost > budget) {
			*capped = true;
			break;
		}
		budget -= cost;
		uint32_t crc = mf_wal_rec_seed(salt, p);
		ret = rd_crc(&r, p + 8, h.len, &crc);
		if (ret < 0)
			goto done;
		if (!mf_wal_rec_body_ok(&h, crc)) {
			p++;
			(*bad_bytes)++;
			continue;
		}
		if (h.type != MF_WAL_REC_SYNC && fn) {
			mf_op op;
			ret = rd_decode(&r, p, &h, &op);
			if (ret < 0)
				goto done;
			ret = fn(ctx, &op, p);
			mf_op_clear(&op);
			if (ret != 0)
				goto done;
		}
		p += 8 + (uint64_t)h.len;
	}
	if (p < r.size)
		*bad_bytes += r.size - p;
done:
	free(r.buf);
	io->close(io, fd);
	return ret;
}

/* ------------------------------------------------------------------ */
/* the verdict                                                         */

void mf_wal_judge(const char *path, const mf_wal_scan *sc, bool active, uint64_t horizon,
                  mf_wal_verdict *v)
{
	memset(v, 0, sizeof *v);
	uint64_t h = horizon > sc->durable_max ? horizon : sc->durable_max;
	v->horizon = h;
	switch (sc->status) {
	case MF_SCAN_OK:
		v->action = MF_WAL_KEEP;
		return;
	case MF_SCAN_SHORT_HEADER:
		if (active) {
			/* Creation writes and fsyncs the header before any record:
			 * a file this short never held one. */
			v->action = MF_WAL_CUT;
			v->cut_off = 0;
			v->cut_bytes = sc->file_size;
			snprintf(v->msg, sizeof v->msg,
			         "WAL %s: segment creation cut short (%" PRIu64
			         " bytes, no record): emptied", path, sc->file_size);
			return;
		}
		v->action = MF_WAL_REFUSE;
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: sealed segment shorter than its header (%" PRIu64 " bytes)",
		         path, sc->file_size);
		return;
	case MF_SCAN_BAD_HEADER:
		if (active && sc->file_size == MF_WAL_FILE_HEADER) {
			/* Exactly a header's worth, not valid: the header write was
			 * torn before its fsync, and no record follows it. */
			v->action = MF_WAL_CUT;
			v->cut_off = 0;
			v->cut_bytes = sc->file_size;
			snprintf(v->msg, sizeof v->msg,
			         "WAL %s: segment header torn at creation (no record): emptied", path);
			return;
		}
		v->action = MF_WAL_REFUSE;
		snprintf(v->msg, sizeof v->msg, "WAL %s: %s", path, sc->why);
		return;
	case MF_SCAN_BAD_LSN:
		v->action = MF_WAL_REFUSE;
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: record at offset %" PRIu64 " is valid but does not carry LSN %" PRIu64
		         " (corruption or a foreign record)", path, sc->bad_off, sc->expected_lsn);
		return;
	default:
		break;
	}
	/* MF_SCAN_DAMAGED: no valid record at bad_off, where LSN E is due. */
	uint64_t e = sc->expected_lsn;
	if (!active) {
		v->action = MF_WAL_REFUSE;
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: sealed segment damaged at offset %" PRIu64 " (%s), LSN %" PRIu64
		         ": sealed segments are fsynced before sealing, so this is corruption of "
		         "durable data", path, sc->bad_off, sc->why, e);
		return;
	}
	if (sc->resync_capped) {
		v->action = MF_WAL_REFUSE;
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: damaged at offset %" PRIu64 " (%s), LSN %" PRIu64
		         "; the bytes after it are too inconsistent to tell a torn write "
		         "from corruption", path, sc->bad_off, sc->why, e);
		return;
	}
	if (e <= h) {
		v->action = MF_WAL_REFUSE;
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: corrupt record at offset %" PRIu64 " (%s), LSN %" PRIu64
		         ", which was durable (fsynced through LSN %" PRIu64 ")%s",
		         path, sc->bad_off, sc->why, e, h,
		         sc->after_records ? "; valid records follow it" : "");
		return;
	}
	/* Everything from bad_off on was written after the last completed
	 * fsync: a power cut may legitimately have torn, dropped or reordered
	 * it.  Records after the hole cannot be applied without LSN e. */
	v->action = MF_WAL_CUT;
	v->cut_off = sc->bad_off;
	v->cut_bytes = sc->file_size - sc->bad_off;
	v->lost_first = e;
	v->lost_last = sc->after_last_lsn > e ? sc->after_last_lsn : e;
	v->dropped_intact = sc->after_records;
	if (sc->after_records)
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: unsynced tail damaged at offset %" PRIu64 " (%s): cut %" PRIu64
		         " bytes, LSNs %" PRIu64 "..%" PRIu64 " (%" PRIu64
		         " intact records after the hole dropped: LSN %" PRIu64
		         " is missing); durable through LSN %" PRIu64,
		         path, sc->bad_off, sc->why, v->cut_bytes, v->lost_first, v->lost_last,
		         sc->after_records, e, h);
	else
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: torn tail at offset %" PRIu64 " (%s): cut %" PRIu64
		         " bytes from LSN %" PRIu64 " on; durable through LSN %" PRIu64,
		         path, sc->bad_off, sc->why, v->cut_bytes, e, h);
}

/* ------------------------------------------------------------------ */
/* walking the whole WAL                                               */

typedef struct walk_ctx {
	mf_wal_record_fn fn;
	void *ctx;
	uint64_t snap;
	uint64_t last;         /* last LSN above snap passed to fn, or snap */
	uint64_t chain_lsn;    /* WALK_CHAIN: the LSN found */
	uint64_t chain_off;
} walk_ctx;

#define WALK_CHAIN 0x7fff0001  /* fn return: LSN not contiguous with the last */

static int walk_record(void *arg, mf_op *op, uint64_t off)
{
	walk_ctx *wc = arg;
	if (op->lsn > wc->snap) {
		if (op->lsn != wc->last + 1) {
			wc->chain_lsn = op->lsn;
			wc->chain_off = off;
			return WALK_CHAIN;
		}
		wc->last = op->lsn;
	}
	return wc->fn ? wc->fn(wc->ctx, op, off) : 0;
}

static void chain_refusal(mf_wal_verdict *v, const char *path, uint64_t want, uint64_t got,
                          uint64_t off)
{
	v->action = MF_WAL_REFUSE;
	if (got > want)
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: LSNs %" PRIu64 "..%" PRIu64 " are missing before offset %" PRIu64
		         " (a deleted or renamed segment, or a lost snapshot): data lost",
		         path, want, got - 1, off);
	else
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: LSN %" PRIu64 " at offset %" PRIu64 " overlaps LSNs already "
		         "read (expected %" PRIu64 ")", path, got, off, want);
}

int mf_wal_walk(mf_io *io, const char *dir, uint64_t snap_lsn, mf_wal_record_fn fn,
                void *ctx, mf_wal_report_fn report, void *rctx, mf_wal_verdict *out,
                uint64_t *last_lsn)
{
	memset(out, 0, sizeof *out);
	walk_ctx wc = {.fn = fn, .ctx = ctx, .snap = snap_lsn, .last = snap_lsn};
	if (last_lsn)
		*last_lsn = snap_lsn;
	mf_wal_seg *segs = NULL;
	int n = mf_wal_list_sealed(io, dir, &segs);
	if (n < 0)
		return n;
	char *active = mf_wal_path(dir, MF_WAL_ACTIVE_NAME);
	/* Everything sealed, and the snapshot, is durable. */
	uint64_t horizon = snap_lsn;
	int ret = 0;
	for (int i = 0; i <= n; i++) {
		bool is_active = i == n;
		if (!is_active && segs[i].lsn <= snap_lsn)
			continue;  /* covered by the snapshot: never read */
		mf_wal_file_report rep = {
			.path = is_active ? active : segs[i].path,
			.sealed = !is_active,
			.name_lsn = is_active ? 0 : segs[i].lsn,
		};
		int r = mf_wal_scan_file(io, rep.path, walk_record, &wc, &rep.sc);
		if (r == -ENOENT && is_active)
			break;  /* no active segment: nothing more */
		mf_wal_verdict *v = &rep.v;
		if (r == WALK_CHAIN) {
			chain_refusal(v, rep.path, wc.last + 1, wc.chain_lsn, wc.chain_off);
		} else if (r < 0) {
			rep.err = r;
			if (report)
				report(rctx, &rep);
			ret = r;
			break;
		} else if (r != 0) {
			ret = r;  /* the caller's fn stopped the walk */
			break;
		} else {
			bool hdr_ok = rep.sc.status != MF_SCAN_BAD_HEADER &&
			              rep.sc.status != MF_SCAN_SHORT_HEADER;
			uint64_t prev = rep.sc.hdr.prev_lsn;
			/* The active segment's header is fsynced at creation, after
			 * everything before prev_lsn was (see create_segment). */
			uint64_t hz = hdr_ok && prev > horizon && prev <= wc.last ? prev : horizon;
			mf_wal_judge(rep.path, &rep.sc, is_active, hz, v);
			uint64_t end = rep.sc.records ? rep.sc.last_lsn : prev;
			if (v->action != MF_WAL_REFUSE && hdr_ok && !rep.sc.records &&
			    prev > wc.last)
				/* Empty, but it says records up to prev came before it. */
				chain_refusal(v, rep.path, wc.last + 1, prev + 1, MF_WAL_FILE_HEADER);
			else if (v->action != MF_WAL_REFUSE && !is_active && end != segs[i].lsn) {
				v->action = MF_WAL_REFUSE;
				if (end < segs[i].lsn)
					snprintf(v->msg, sizeof v->msg,
					         "WAL %s: sealed segment ends at LSN %" PRIu64
					         " but its name says %" PRIu64 ": LSNs %" PRIu64 "..%" PRIu64
					         " are missing (cut at a record boundary?)",
					         rep.path, end, segs[i].lsn, end + 1, segs[i].lsn);
				else
					snprintf(v->msg, sizeof v->msg,
					         "WAL %s: sealed segment holds LSN %" PRIu64
					         " above the LSN in its name (%" PRIu64 ")",
					         rep.path, end, segs[i].lsn);
			}
			if (!is_active && end > horizon && v->action != MF_WAL_REFUSE)
				horizon = end;
		}
		if (report)
			report(rctx, &rep);
		if (v->action != MF_WAL_KEEP)
			*out = *v;
		else if (v->horizon > out->horizon)
			out->horizon = v->horizon;
		if (v->action == MF_WAL_REFUSE)
			break;
	}
	if (last_lsn)
		*last_lsn = wc.last;
	free(active);
	mf_wal_segs_free(segs, n);
	return ret;
}

/* ------------------------------------------------------------------ */
/* replay                                                              */

typedef struct replay_ctx {
	mf_apply_fn apply;
	void *ctx;
	uint64_t after_lsn;
	mf_wal_replay_info *info;
} replay_ctx;

static int replay_record(void *arg, mf_op *op, uint64_t off)
{
	(void)off;
	replay_ctx *rc = arg;
	if (op->lsn <= rc->after_lsn) {
		rc->info->skipped++;
		return 0;
	}
	/* An apply error is not corruption: the live op failed the same
	 * deterministic way when it was first applied. */
	if (rc->apply(rc->ctx, op) < 0)
		rc->info->apply_errors++;
	rc->info->records++;
	return 0;
}

static double now_sec(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Cut the active segment at off (torn tail) and make that durable. */
static int truncate_file(mf_io *io, const char *path, uint64_t off)
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

int mf_wal_replay(const char *dir, mf_io *io, uint64_t after_lsn,
                  mf_apply_fn apply, void *ctx, mf_wal_replay_info *info,
                  char *err, size_t errlen)
{
	if (!io)
		io = mf_io_posix();
	double t0 = now_sec();
	memset(info, 0, sizeof *info);
	info->last_lsn = after_lsn;
	if (err && errlen)
		err[0] = 0;
	char dummy[8];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}

	mf_wal_seg *segs = NULL;
	int n = mf_wal_list_sealed(io, dir, &segs);
	if (n < 0) {
		snprintf(err, errlen, "WAL %s: cannot list: %s", dir, strerror(-n));
		return n;
	}
	int ret = 0;
	char *active = mf_wal_path(dir, MF_WAL_ACTIVE_NAME);

	/* Sealed segments wholly covered by the snapshot are not needed. */
	int first = 0;
	while (first < n && segs[first].lsn <= after_lsn) {
		int r = io->unlink(io, segs[first].path);
		if (r < 0 && r != -ENOENT) {
			snprintf(err, errlen, "WAL %s: cannot delete: %s", segs[first].path,
			         strerror(-r));
			ret = r;
			goto out;
		}
		first++;
	}
	if (first > 0) {
		int r = io->fsync_dir(io, dir);
		if (r < 0) {
			snprintf(err, errlen, "WAL %s: fsync dir: %s", dir, strerror(-r));
			ret = r;
			goto out;
		}
	}

	replay_ctx rc = {.apply = apply, .ctx = ctx, .after_lsn = after_lsn, .info = info};
	mf_wal_verdict v;
	uint64_t last = after_lsn;
	int r = mf_wal_walk(io, dir, after_lsn, replay_record, &rc, NULL, NULL, &v, &last);
	info->last_lsn = last;
	info->horizon = v.horizon;
	if (r < 0) {
		snprintf(err, errlen, "WAL %s: read error: %s", dir, strerror(-r));
		ret = r;
		goto out;
	}
	if (v.action == MF_WAL_REFUSE) {
		snprintf(err, errlen, "%s; refusing to mount (memflux-check DATADIR explains, "
		         "--fix repairs)", v.msg);
		ret = -EBADMSG;
		goto out;
	}
	if (v.action == MF_WAL_CUT) {
		r = truncate_file(io, active, v.cut_off);
		if (r < 0) {
			snprintf(err, errlen, "WAL %s: cannot cut damaged unsynced tail: %s", active,
			         strerror(-r));
			ret = r;
			goto out;
		}
		fprintf(stderr, "memfluxfs: %s\n", v.msg);
		info->truncated_bytes = v.cut_bytes;
		info->cut_off = v.cut_off;
		info->lost_first = v.lost_first;
		info->lost_last = v.lost_last;
		info->dropped_intact = v.dropped_intact;
	}
out:
	free(active);
	mf_wal_segs_free(segs, n);
	info->seconds = now_sec() - t0;
	return ret;
}

/* ------------------------------------------------------------------ */
/* the live WAL                                                        */

enum { E_OP, E_ROTATE };

typedef struct wal_entry {
	struct wal_entry *next;
	int kind;
	mf_op *op;
	size_t size;       /* encoded record size */
	int result;
	atomic_bool done;  /* set (release) by the writer; submitters may spin on it */
	mf_rotate_cb cb;   /* E_ROTATE */
	void *cbctx;
	uint64_t last_lsn;
} wal_entry;

struct mf_wal {
	char *dir, *path;
	mf_io *io;
	mf_fsync_mode mode;
	unsigned interval_ms;
	size_t max_batch;
	mf_apply_fn apply;
	void *ctx;

	pthread_mutex_t seg_mu, fsync_mu, mu;
	pthread_cond_t work_cv;  /* writer: queue non-empty or closing */
	pthread_cond_t done_cv;  /* submitters: an entry finished */
	pthread_cond_t sync_cv;  /* interval thread (CLOCK_MONOTONIC) */

	/* under mu */
	wal_entry *head, *tail;
	bool closing, stop_syncer, read_only;
	bool mark_wanted;        /* an fsync completed (INTERVAL/NONE): the
	                            writer appends a sync marker once idle */
	uint64_t next_lsn;       /* next LSN to give out */
	uint64_t written_lsn;    /* last LSN in a successfully written batch */
	uint64_t synced_lsn;
	uint64_t bytes, sealed_bytes, records, batches, fsyncs;
	uint64_t queued;         /* E_OP entries in the queue */
	uint64_t prev_batch;     /* records in the last ALWAYS batch */
	uint64_t queued_after;   /* records that queued up during its fsync */
	uint64_t fsync_ns;       /* smoothed duration of one fsync */
	struct timespec dirty_since;  /* oldest unsynced write (monotonic) */

	/* writer thread (fd changes only under fsync_mu as well) */
	int fd;                  /* -1 after a failed segment creation */
	uint64_t salt;           /* of the active segment (FORMAT.md) */
	uint64_t end;            /* size of the active segment */
	bool seg_has_records;
	uint64_t seg_last_lsn;   /* last LSN in the active segment */
	uint64_t marked_lsn;     /* LSN the active segment's last sync marker
	                            vouches for (0: none) */
	uint8_t *bbuf;
	size_t bcap;
	struct iovec *iov;
	size_t iovcap;

	pthread_t writer, syncer;
	bool has_syncer;
};

/* Called with mu held. */
static void go_read_only(mf_wal *w, const char *what, int err)
{
	if (w->read_only)
		return;
	w->read_only = true;
	fprintf(stderr, "memfluxfs: WAL fsync failed (%s: %s): refusing further writes\n",
	        what, strerror(-err));
}

/* fsync the active segment if anything written is not yet synced.
 * 0 or -EIO (read-only: before, or because of, this call). */
static int wal_fsync(mf_wal *w)
{
	pthread_mutex_lock(&w->fsync_mu);
	pthread_mutex_lock(&w->mu);
	uint64_t target = w->written_lsn;
	bool ro = w->read_only, need = w->synced_lsn < target;
	pthread_mutex_unlock(&w->mu);
	int r = 0;
	if (ro) {
		r = -EIO;
	} else if (need && w->fd >= 0) {
		struct timespec start;
		clock_gettime(CLOCK_MONOTONIC, &start);
		r = w->io->fsync(w->io, w->fd);
		struct timespec end;
		clock_gettime(CLOCK_MONOTONIC, &end);
		uint64_t took = (uint64_t)(end.tv_sec - start.tv_sec) * 1000000000u +
		                (uint64_t)(end.tv_nsec - start.tv_nsec);
		pthread_mutex_lock(&w->mu);
		w->fsync_ns = w->fsync_ns ? (w->fsync_ns * 7 + took) / 8 : took;
		w->fsyncs++;
		if (r < 0) {
			go_read_only(w, w->path, r);
			r = -EIO;
		} else if (w->synced_lsn < target) {
			w->synced_lsn = target;
			/* Writes that raced with this fsync are at most this old. */
			w->dirty_since = start;
			/* Until a later record says so, nothing in the file tells
			 * recovery that these records are durable: if the log stays
			 * idle, the writer appends a sync marker (INTERVAL, NONE;
			 * in ALWAYS every batch is fsynced and the next one says
			 * so, and a marker per idle batch would double the writes of
			 * a lone writer). */
			if (w->mode != MF_FSYNC_ALWAYS) {
				w->mark_wanted = true;
				pthread_cond_signal(&w->work_cv);
			}
		}
		pthread_mutex_unlock(&w->mu);
	} else if (need) {
		/* No active fd: the sealed segment was fsynced before sealing. */
		pthread_mutex_lock(&w->mu);
		w->synced_lsn = target;
		pthread_mutex_unlock(&w->mu);
	}
	pthread_mutex_unlock(&w->fsync_mu);
	return r;
}

/* Create the active segment: header, fsync, dir fsync.  Caller holds
 * fsync_mu (writer thread or open). */
static int create_segment(mf_wal *w)
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

static void ensure_bbuf(mf_wal *w, size_t n)
{
	if (w->bcap < n) {
		size_t c = w->bcap ? w->bcap : 64 * 1024;
		while (c < n)
			c *= 2;
		free(w->bbuf);
		w->bbuf = mf_xmalloc(c);
		w->bcap = c;
	}
}

/* Values up to this size are copied into the batch buffer; bigger ones are
 * written from where they are (their own iovec). */
#define INLINE_VAL (32u * 1024)

/* Write one batch (ops in list order, LSNs assigned from lsn0).
 * 0, or -errno with the segment cut back to its pre-batch size. */
static int write_batch(mf_wal *w, wal_entry *first, uint64_t lsn0)
{
	int r = 0;
	if (w->fd < 0) {
		pthread_mutex_lock(&w->fsync_mu);
		r = create_segment(w);
		pthread_mutex_unlock(&w->fsync_mu);
		if (r < 0)
			return r;
		pthread_mutex_lock(&w->mu);
		w->bytes = w->end;
		pthread_mutex_unlock(&w->mu);
	}
	/* Every record says how far the log was durable when it was written:
	 * recovery's horizon (FORMAT.md, "Recovery"). */
	pthread_mutex_lock(&w->mu);
	mf_wal_rec_place at = {.salt = w->salt, .off = w->end, .durable = w->synced_lsn};
	pthread_mutex_unlock(&w->mu);
	size_t need = 0, niov = 0, n = 0;
	for (wal_entry *e = first; e; e = e->next) {
		e->op->lsn = lsn0 + n++;
		need += mf_wal_record_head_size(e->op);
		if (e->op->val.len <= INLINE_VAL)
			need += e->op->val.len;
		else
			niov += 2;
	}
	niov += 1 + n; /* upper bound on contiguous runs */
	ensure_bbuf(w, need);
	if (w->iovcap < niov) {
		free(w->iov);
		w->iov = mf_xmalloc(niov * sizeof *w->iov);
		w->iovcap = niov;
	}
	size_t pos = 0, run = 0, cnt = 0, total = 0;
	for (wal_entry *e = first; e; e = e->next) {
		mf_op *op = e->op;
		mf_wal_record_encode_head(op, &at, w->bbuf + pos);
		at.off += e->size;
		pos += mf_wal_record_head_size(op);
		if (op->val.len <= INLINE_VAL) {
			if (op->val.len)
				memcpy(w->bbuf + pos, mf_slice_ptr(op->val), op->val.len);
			pos += op->val.len;
		} else {
			w->iov[cnt++] = (struct iovec){w->bbuf + run, pos - run};
			w->iov[cnt++] = (struct iovec){(void *)mf_slice_ptr(op->val), op->val.len};
			run = pos;
		}
		total += e->size;
	}
	if (pos > run)
		w->iov[cnt++] = (struct iovec){w->bbuf + run, pos - run};

	r = mf_io_pwritev_all(w->io, w->fd, w->iov, (int)cnt, (off_t)w->end);
	if (r < 0) {
		/* Leave nothing torn (and no complete-but-refused record) behind:
		 * cut back and make the cut durable.  If even that fails, the file
		 * can no longer be trusted to end where we think: stop writing. */
		int t = w->io->ftruncate(w->io, w->fd, (off_t)w->end);
		if (t == 0)
			t = w->io->fsync(w->io, w->fd);
		if (t < 0) {
			pthread_mutex_lock(&w->mu);
			go_read_only(w, "truncate after failed write", t);
			pthread_mutex_unlock(&w->mu);
		}
		return r;
	}
	w->end += total;
	w->seg_has_records = true;
	w->seg_last_lsn = lsn0 + n - 1;

	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&w->mu);
	bool was_clean = w->synced_lsn >= w->written_lsn;
	if (was_clean)
		w->dirty_since = now;
	w->written_lsn = lsn0 + n - 1;
	w->bytes = w->end;
	w->records += n;
	w->batches++;
	/* Wake the syncer only when the file goes from clean to dirty: it
	 * then sleeps until its deadline, so later batches need no wake-up
	 * (a signal per batch would cost a context switch per mutation). */
	if (w->mode == MF_FSYNC_INTERVAL && was_clean)
		pthread_cond_signal(&w->sync_cv);
	pthread_mutex_unlock(&w->mu);

	if (w->mode == MF_FSYNC_ALWAYS)
		return wal_fsync(w);
	return 0;
}

/* Seal the active segment and start a new one; on the writer thread. */
static int do_rotate(mf_wal *w, wal_entry *e)
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
				go_read_only(w, w->path, r);
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
			go_read_only(w, "directory after sealing segment", r);
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
		r = create_segment(w);
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

#define SUBMIT_SPIN_NS 100000  /* 100 us */

static uint64_t mono_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void spin_until(atomic_bool *flag, uint64_t ns)
{
	uint64_t end = mono_ns() + ns;
	for (unsigned i = 0; !atomic_load_explicit(flag, memory_order_acquire); i++) {
		cpu_relax();
		if ((i & 63) == 63 && mono_ns() > end)
			return;
	}
}

/*
 * Group commit in ALWAYS mode waits for an fsync per batch; the writers it
 * wakes come back with their next record a FUSE round trip or two later,
 * just after the next (small) batch has started its fsync.  So when the last
 * batch showed concurrency, wait a little (at most half an fsync, as
 * PostgreSQL's commit_delay does) for every writer seen active then: one
 * fsync serves them all.  Caller holds w->mu.
 */
static void commit_delay(mf_wal *w)
{
	uint64_t delay = w->fsync_ns / 2;
	if (delay > 2000000)
		delay = 2000000;
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_nsec += (long)delay;
	while (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	/* Active writers: those the last batch served plus those that queued
	 * while it was being fsynced. */
	uint64_t want = w->prev_batch + w->queued_after;
	while (w->queued < want && !w->closing)
		if (pthread_cond_timedwait(&w->work_cv, &w->mu, &dl) != 0)
			break;
}

/*
 * Append a sync marker saying every record of the active segment is durable
 * (FORMAT.md): the writer does it when the log goes idle after an fsync, and
 * close after its final fsync (then `sync`: the marker itself is fsynced).
 * Without one, the last records are "written after the last known fsync" to
 * recovery, and damage to them (bit rot after a clean shutdown, or after an
 * fsync(2) on an idle log) would be cut instead of refused.  Best effort: a
 * failed or torn marker leaves recovery knowing less, nothing more; a failed
 * write does not advance `end`, so the next record overwrites it (a record
 * is at least as long as a marker).  Writer thread, or close once the
 * writer has exited.
 */
static void append_marker(mf_wal *w, bool sync)
{
	if (w->fd < 0 || !w->seg_has_records)
		return;
	pthread_mutex_lock(&w->mu);
	uint64_t lsn = w->written_lsn, synced = w->synced_lsn;
	bool ro = w->read_only;
	pthread_mutex_unlock(&w->mu);
	if (ro || synced < lsn || lsn != w->seg_last_lsn)
		return;
	if (w->marked_lsn != lsn) {
		mf_op op;
		memset(&op, 0, sizeof op);
		op.type = MF_WAL_REC_SYNC;
		op.lsn = lsn;
		uint8_t rec[MF_WAL_REC_HEADER];
		mf_wal_rec_place at = {.salt = w->salt, .off = w->end, .durable = lsn};
		mf_wal_record_encode_head(&op, &at, rec);
		if (mf_io_pwrite_all(w->io, w->fd, rec, sizeof rec, (off_t)w->end) != 0) {
			/* Leave no partial marker behind: a rotation could seal it.
			 * If even the cut fails, the file's end is unknown. */
			if (w->io->ftruncate(w->io, w->fd, (off_t)w->end) != 0) {
				pthread_mutex_lock(&w->mu);
				go_read_only(w, "truncate after failed sync marker", -EIO);
				pthread_mutex_unlock(&w->mu);
			}
			return;
		}
		w->end += sizeof rec;
		w->marked_lsn = lsn;
		pthread_mutex_lock(&w->mu);
		w->bytes = w->end;
		pthread_mutex_unlock(&w->mu);
	}
	if (sync)
		w->io->fsync(w->io, w->fd);
}

static void *writer_main(void *arg)
{
	mf_wal *w = arg;
	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (!w->head && !w->closing && !w->mark_wanted)
			pthread_cond_wait(&w->work_cv, &w->mu);
		if (!w->head) {
			if (w->closing)
				break;  /* close writes its own marker */
			w->mark_wanted = false;
			pthread_mutex_unlock(&w->mu);
			append_marker(w, false);
			pthread_mutex_lock(&w->mu);
			continue;
		}
		wal_entry *first = w->head;
		if (first->kind == E_ROTATE) {
			w->head = first->next;
			if (!w->head)
				w->tail = NULL;
			pthread_mutex_unlock(&w->mu);
			int r = do_rotate(w, first);
			pthread_mutex_lock(&w->mu);
			first->result = r;
			atomic_store_explicit(&first->done, true, memory_order_release);
			pthread_cond_broadcast(&w->done_cv);
			continue;
		}
		if (w->mode == MF_FSYNC_ALWAYS && w->prev_batch > 1)
			commit_delay(w);
		first = w->head;
		/* Everything queued up to max_batch bytes, at least one op. */
		wal_entry *last = first;
		size_t total = first->size, n = 1;
		while (last->next && last->next->kind == E_OP &&
		       total + last->next->size <= w->max_batch) {
			last = last->next;
			total += last->size;
			n++;
		}
		w->head = last->next;
		if (!w->head)
			w->tail = NULL;
		last->next = NULL;
		w->queued -= n;
		w->prev_batch = n;
		bool ro = w->read_only;
		uint64_t lsn0 = w->next_lsn;
		if (!ro)
			w->next_lsn += n;  /* given back if the write fails */
		pthread_mutex_unlock(&w->mu);

		int r = ro ? -EIO : write_batch(w, first, lsn0);
		if (r < 0 && !ro) {
			/* The batch was cut off the file (or the WAL went read-only):
			 * its LSNs are free again, so the log stays contiguous, which
			 * recovery checks to detect lost records. */
			pthread_mutex_lock(&w->mu);
			w->next_lsn = lsn0;
			pthread_mutex_unlock(&w->mu);
		}
		for (wal_entry *e = first; e; e = e->next)
			e->result = r == 0 ? w->apply(w->ctx, e->op) : r;

		pthread_mutex_lock(&w->mu);
		w->queued_after = w->queued;
		for (wal_entry *e = first, *nx; e; e = nx) {
			nx = e->next;  /* e lives on a submitter's stack */
			atomic_store_explicit(&e->done, true, memory_order_release);
		}
		pthread_cond_broadcast(&w->done_cv);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void ts_add_ms(struct timespec *t, unsigned ms)
{
	t->tv_sec += ms / 1000;
	t->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static void *syncer_main(void *arg)
{
	mf_wal *w = arg;
	pthread_mutex_lock(&w->mu);
	while (!w->stop_syncer) {
		if (w->read_only || w->synced_lsn >= w->written_lsn) {
			pthread_cond_wait(&w->sync_cv, &w->mu);
			continue;
		}
		struct timespec deadline = w->dirty_since, now;
		ts_add_ms(&deadline, w->interval_ms);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (ts_before(&now, &deadline)) {
			pthread_cond_timedwait(&w->sync_cv, &w->mu, &deadline);
			continue;
		}
		pthread_mutex_unlock(&w->mu);
		wal_fsync(w);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

static void wal_free(mf_wal *w)
{
	pthread_mutex_destroy(&w->seg_mu);
	pthread_mutex_destroy(&w->fsync_mu);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->work_cv);
	pthread_cond_destroy(&w->done_cv);
	pthread_cond_destroy(&w->sync_cv);
	free(w->bbuf);
	free(w->iov);
	free(w->dir);
	free(w->path);
	free(w);
}

/* Open the existing active segment (after replay cut any torn tail), or
 * create it. */
static int open_active(mf_wal *w)
{
	mf_io *io = w->io;
	int fd = io->open(io, w->path, O_RDWR, 0);
	if (fd == -ENOENT)
		return create_segment(w);
	if (fd < 0)
		return fd;
	off_t sz;
	int r = io->fstat_size(io, fd, &sz);
	if (r < 0)
		goto fail;
	if ((uint64_t)sz < MF_WAL_FILE_HEADER) {
		/* A crash while creating it: start it over. */
		io->close(io, fd);
		return create_segment(w);
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

mf_wal *mf_wal_open(const mf_wal_opts *opts, uint64_t next_lsn,
                    mf_apply_fn apply, void *ctx, int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	*err = 0;
	if (!opts || !opts->dir || !apply || next_lsn == 0 ||
	    opts->mode > MF_FSYNC_ALWAYS) {
		*err = -EINVAL;
		return NULL;
	}
	mf_wal *w = calloc(1, sizeof *w);
	if (!w) {
		*err = -ENOMEM;
		return NULL;
	}
	w->dir = strdup(opts->dir);
	w->path = mf_wal_path(opts->dir, MF_WAL_ACTIVE_NAME);
	w->io = opts->io ? opts->io : mf_io_posix();
	w->mode = opts->mode;
	w->interval_ms = opts->interval_ms ? opts->interval_ms : 1000;
	w->max_batch = opts->max_batch_bytes ? opts->max_batch_bytes : 4u << 20;
	w->apply = apply;
	w->ctx = ctx;
	w->fd = -1;
	w->next_lsn = next_lsn;
	w->written_lsn = w->synced_lsn = next_lsn - 1;
	w->seg_last_lsn = next_lsn - 1;
	pthread_mutex_init(&w->seg_mu, NULL);
	pthread_mutex_init(&w->fsync_mu, NULL);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->done_cv, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->sync_cv, &ca);
	pthread_cond_init(&w->work_cv, &ca); /* timed waits: commit delay */
	pthread_condattr_destroy(&ca);

	int r = open_active(w);
	if (r < 0)
		goto fail;
	w->bytes = w->end;
	mf_wal_seg *segs;
	int n = mf_wal_list_sealed(w->io, w->dir, &segs);
	if (n > 0) {
		for (int i = 0; i < n; i++)
			w->sealed_bytes += segs[i].size;
		mf_wal_segs_free(segs, n);
	}
	r = -pthread_create(&w->writer, NULL, writer_main, w);
	if (r < 0)
		goto fail_fd;
	if (w->mode == MF_FSYNC_INTERVAL) {
		r = -pthread_create(&w->syncer, NULL, syncer_main, w);
		if (r < 0) {
			pthread_mutex_lock(&w->mu);
			w->closing = true;
			pthread_cond_broadcast(&w->work_cv);
			pthread_mutex_unlock(&w->mu);
			pthread_join(w->writer, NULL);
			goto fail_fd;
		}
		w->has_syncer = true;
	}
	return w;
fail_fd:
	w->io->close(w->io, w->fd);
fail:
	*err = r;
	wal_free(w);
	return NULL;
}

/* Queue an entry and wait for the writer to finish it. */
static void enqueue_locked(mf_wal *w, wal_entry *e)
{
	if (w->tail)
		w->tail->next = e;
	else
		w->head = e;
	w->tail = e;
	if (e->kind == E_OP)
		w->queued++;
	pthread_cond_signal(&w->work_cv);
}

static int enqueue_wait(mf_wal *w, wal_entry *e)
{
	pthread_mutex_lock(&w->mu);
	if (w->read_only) {
		pthread_mutex_unlock(&w->mu);
		return -EIO;
	}
	if (w->closing) {
		pthread_mutex_unlock(&w->mu);
		return -ESHUTDOWN;
	}
	enqueue_locked(w, e);
	/* The writer usually finishes a record in a few microseconds, less than
	 * it takes to put this thread to sleep and wake it again on these
	 * machines (~10-15 us each way): spin briefly before sleeping. */
	if (e->kind == E_OP && !atomic_load_explicit(&e->done, memory_order_acquire)) {
		pthread_mutex_unlock(&w->mu);
		spin_until(&e->done, SUBMIT_SPIN_NS);
		pthread_mutex_lock(&w->mu);
	}
	while (!atomic_load_explicit(&e->done, memory_order_acquire))
		pthread_cond_wait(&w->done_cv, &w->mu);
	int r = e->result;
	pthread_mutex_unlock(&w->mu);
	return r;
}

int mf_wal_submit(mf_wal *w, mf_op *op)
{
	int r = mf_wal_record_validate(op);
	if (r < 0)
		return r;
	wal_entry e = {.kind = E_OP, .op = op, .size = mf_wal_record_size(op)};
	return enqueue_wait(w, &e);
}

int mf_wal_sync(mf_wal *w)
{
	return wal_fsync(w);
}

int mf_wal_rotate(mf_wal *w, mf_rotate_cb cb, void *ctx, uint64_t *last_lsn)
{
	wal_entry e = {.kind = E_ROTATE, .cb = cb, .cbctx = ctx};
	int r = enqueue_wait(w, &e);
	if (r == 0 && last_lsn)
		*last_lsn = e.last_lsn;
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

void mf_wal_stats_get(mf_wal *w, mf_wal_stats *out)
{
	pthread_mutex_lock(&w->mu);
	out->bytes = w->bytes;
	out->sealed_bytes = w->sealed_bytes;
	out->lsn = w->written_lsn;
	out->synced_lsn = w->synced_lsn;
	out->records = w->records;
	out->batches = w->batches;
	out->fsyncs = w->fsyncs;
	out->read_only = w->read_only;
	out->queued = w->queued;
	pthread_mutex_unlock(&w->mu);
}

int mf_wal_close(mf_wal *w)
{
	if (!w)
		return 0;
	pthread_mutex_lock(&w->mu);
	w->closing = true;
	pthread_cond_broadcast(&w->work_cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->writer, NULL);
	if (w->has_syncer) {
		pthread_mutex_lock(&w->mu);
		w->stop_syncer = true;
		pthread_cond_signal(&w->sync_cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->syncer, NULL);
	}
	/* Clean close syncs whatever the mode, then says so in the file. */
	int r = wal_fsync(w);
	if (r == 0)
		append_marker(w, true);
	if (w->fd >= 0) {
		int c = w->io->close(w->io, w->fd);
		if (r == 0)
			r = c;
	}
	wal_free(w);
	return r;
}
