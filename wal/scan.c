/*
 * scan.c — reading one segment file: a buffered reader over the I/O seam,
 * mf_wal_scan_file (every record up to the first damage, and what lies
 * after it) and mf_wal_salvage_file (every valid record anywhere, for
 * memflux-check --fix).  Reports only; what damage means is decided in
 * verdict.c.  Pure apart from reads; no locking.
 */
#include "record.h"

#include "crc32c.h"
#include "../io/le.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

#define RD_BUF (1u << 20)

typedef struct rd {
	mf_io *io;
	int fd;
	uint64_t size;
	uint8_t *buf;
	uint64_t boff;  /* file offset of buf[0] */
	size_t blen;    /* valid bytes in buf */
} rd;

/* Open path for reading, learn its size, allocate the buffer.  0 or -errno
 * (nothing left open). */
static int rd_open(rd *r, mf_io *io, const char *path)
{
	*r = (rd){.io = io, .fd = -1};
	int fd = io->open(io, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;
	off_t sz;
	int ret = io->fstat_size(io, fd, &sz);
	if (ret < 0) {
		io->close(io, fd);
		return ret;
	}
	r->fd = fd;
	r->size = (uint64_t)sz;
	r->buf = mf_xmalloc(RD_BUF);
	return 0;
}

static void rd_close(rd *r)
{
	free(r->buf);
	r->io->close(r->io, r->fd);
}

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

/* Decode the record at off and hand it to fn: rd_decode's -errno, or fn's
 * result (non-zero stops the scan). */
static int rd_deliver(rd *r, uint64_t off, const mf_wal_rec_hdr *h, mf_wal_record_fn fn,
                      void *ctx)
{
	mf_op op;
	int ret = rd_decode(r, off, h, &op);
	if (ret < 0)
		return ret;
	ret = fn(ctx, &op, off);
	mf_op_clear(&op);
	return ret;
}

int mf_wal_scan_file(mf_io *io, const char *path, mf_wal_record_fn fn, void *ctx,
                     mf_wal_scan *out)
{
	memset(out, 0, sizeof *out);
	rd r;
	int ret = rd_open(&r, io, path);
	if (ret < 0)
		return ret;
	out->file_size = r.size;
	if (r.size < MF_WAL_FILE_HEADER) {
		out->status = MF_SCAN_SHORT_HEADER;
		out->why = "file shorter than the segment header";
		out->bad_off = 0;
		goto done;
	}
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
			ret = rd_deliver(&r, off, &h, fn, ctx);
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
	rd_close(&r);
	return ret;
}

int mf_wal_salvage_file(mf_io *io, const char *path, mf_wal_record_fn fn, void *ctx,
                        uint64_t *bad_bytes, bool *capped)
{
	*bad_bytes = 0;
	*capped = false;
	rd r;
	int ret = rd_open(&r, io, path);
	if (ret < 0)
		return ret;
	if (r.size < MF_WAL_FILE_HEADER) {
		*bad_bytes = r.size;
		goto done;
	}
	const uint8_t *hp;
	ret = rd_need(&r, 0, MF_WAL_FILE_HEADER, &hp);
	if (ret < 0)
		goto done;
	/* The salt as written, even if the rest of the header is damaged:
	 * the records will tell whether it survived. */
	uint64_t salt = mf_le_get64(hp + 12);
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
			ret = rd_deliver(&r, p, &h, fn, ctx);
			if (ret != 0)
				goto done;
		}
		p += 8 + (uint64_t)h.len;
	}
	if (p < r.size)
		*bad_bytes += r.size - p;
done:
	rd_close(&r);
	return ret;
}
