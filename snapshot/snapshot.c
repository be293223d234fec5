/*
 * snapshot.c — write and load memflux.snapshot (format: snapshot/FORMAT.md).
 *
 * Writing streams: records are staged in a 1 MiB buffer and fed to
 * LZ4F_compressUpdate; values at least one stage long go to the compressor
 * straight from their slice, so the uncompressed image never exists in
 * memory.  Compressed output is written at an advancing offset through the
 * mf_io seam.
 *
 * Loading streams too: the file is read in chunks, decompressed chunk by
 * chunk, and a byte-at-a-time-capable state machine parses the raw stream,
 * copying each value straight into a slice of exactly its declared length.
 */
#include "snapshot.h"

#include "../io/clock.h"
#include "../io/le.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <lz4frame.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STAGE_SIZE ((size_t)1 << 20)    /* raw bytes per compressUpdate */
#define READ_SIZE ((size_t)256 << 10)   /* compressed bytes per pread */
#define DOUT_SIZE ((size_t)1 << 20)     /* decompressed bytes per call */

static const char HDR_MAGIC[MF_SNAPSHOT_MAGIC_LEN] = {'M', 'F', 'S', 'N', 'A', 'P'};
static const char TRL_MAGIC[MF_SNAPSHOT_TRAILER_MAGIC_LEN] = {'M', 'F', 'E', 'N', 'D'};

/* ---- writing ------------------------------------------------------------ */

typedef struct snap_writer {
	mf_io *io;
	int fd;
	off_t off;            /* compressed bytes written so far */
	LZ4F_cctx *cctx;
	unsigned char *stage;
	size_t slen;
	unsigned char *out;
	size_t outcap;
	uint64_t raw;         /* raw bytes fed so far */
} snap_writer;

static int w_flush_out(snap_writer *w, size_t n)
{
	if (n == 0)
		return 0;
	int rc = mf_io_pwrite_all(w->io, w->fd, w->out, n, w->off);
	if (rc < 0)
		return rc;
	w->off += (off_t)n;
	return 0;
}

static int w_compress(snap_writer *w, const void *p, size_t n)
{
	/* No stableSrc: LZ4F keeps its own copy of the 64 KiB dictionary, so the
	 * stage buffer may be reused at once. */
	size_t r = LZ4F_compressUpdate(w->cctx, w->out, w->outcap, p, n, NULL);
	if (LZ4F_isError(r))
		return -EIO;
	return w_flush_out(w, r);
}

static int w_emit(snap_writer *w, const void *src, size_t n)
{
	const unsigned char *p = src;
	w->raw += n;
	while (n > 0) {
		if (w->slen == 0 && n >= STAGE_SIZE) {
			/* Big value: compress straight from the slice. */
			int rc = w_compress(w, p, STAGE_SIZE);
			if (rc < 0)
				return rc;
			p += STAGE_SIZE;
			n -= STAGE_SIZE;
			continue;
		}
		size_t k = STAGE_SIZE - w->slen;
		if (k > n)
			k = n;
		memcpy(w->stage + w->slen, p, k);
		w->slen += k;
		p += k;
		n -= k;
		if (w->slen == STAGE_SIZE) {
			int rc = w_compress(w, w->stage, w->slen);
			w->slen = 0;
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Bytes of a value's zero tail the record leaves out (a sparse record,
 * FORMAT.md), or 0: written as bytes.  Stable for a published slice (buf.h),
 * so sizing the stream and writing it agree. */
static uint64_t sparse_tail(const mf_item *it)
{
	size_t zt = mf_slice_zero_tail(it->val);
	return zt >= MF_SNAPSHOT_SPARSE_MIN ? zt : 0;
}

static int check_items(const mf_item *items, size_t n, uint64_t *raw_total)
{
	uint64_t total = MF_SNAPSHOT_HEADER_LEN + MF_SNAPSHOT_TRAILER_LEN;
	for (size_t i = 0; i < n; i++) {
		const mf_item *it = &items[i];
		if (!mf_type_valid(it->type))
			return -EINVAL;
		if (it->key.len == 0 || it->key.len > MF_SNAPSHOT_MAX_KEY)
			return -EINVAL;
		if (it->val.len > MF_SNAPSHOT_MAX_VALUE)
			return -EFBIG;
		uint64_t zt = sparse_tail(it);
		total += MF_SNAPSHOT_RECORD_FIXED + MF_SNAPSHOT_ATTR_LEN + it->key.len + it->val.len - zt +
		         (zt ? 8 : 0);
	}
	*raw_total = total;
	return 0;
}

static int write_stream(snap_writer *w, uint64_t lsn, const mf_item *items, size_t n,
                        uint64_t raw_total)
{
	LZ4F_preferences_t prefs;
	memset(&prefs, 0, sizeof prefs);
	prefs.frameInfo.blockSizeID = LZ4F_max1MB;
	prefs.frameInfo.blockMode = LZ4F_blockLinked;
	prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
	prefs.frameInfo.blockChecksumFlag = LZ4F_blockChecksumEnabled;
	prefs.frameInfo.frameType = LZ4F_frame;
	prefs.frameInfo.contentSize = raw_total;
	prefs.compressionLevel = 0;
	prefs.autoFlush = 0;

	if (LZ4F_isError(LZ4F_createCompressionContext(&w->cctx, LZ4F_VERSION)))
		return -ENOMEM;
	/* Bound for one stage-sized update including whatever LZ4F buffered,
	 * and for the frame end (block flush + end mark + checksum). */
	w->outcap = LZ4F_compressBound(STAGE_SIZE, &prefs);
	if (w->outcap < LZ4F_HEADER_SIZE_MAX)
		w->outcap = LZ4F_HEADER_SIZE_MAX;
	w->stage = mf_xmalloc(STAGE_SIZE);
	w->out = mf_xmalloc(w->outcap);

	size_t r = LZ4F_compressBegin(w->cctx, w->out, w->outcap, &prefs);
	if (LZ4F_isError(r))
		return -EIO;
	int rc = w_flush_out(w, r);
	if (rc < 0)
		return rc;

	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	unsigned char hdr[MF_SNAPSHOT_HEADER_LEN];
	memcpy(hdr, HDR_MAGIC, MF_SNAPSHOT_MAGIC_LEN);
	mf_le_put32(hdr + 6, MF_SNAPSHOT_VERSION);
	mf_le_put64(hdr + 10, lsn);
	mf_le_put64(hdr + 18, (uint64_t)n);
	mf_le_put64(hdr + 26, (uint64_t)((int64_t)now.tv_sec * 1000000000LL + now.tv_nsec));
	if ((rc = w_emit(w, hdr, sizeof hdr)) < 0)
		return rc;

	for (size_t i = 0; i < n; i++) {
		const mf_item *it = &items[i];
		unsigned char rec[MF_SNAPSHOT_RECORD_FIXED + MF_SNAPSHOT_MAX_KEY + 8];
		uint64_t zt = sparse_tail(it);
		size_t k = 0;
		rec[k++] = (unsigned char)(it->type | (zt ? MF_SNAPSHOT_SPARSE : 0));
		mf_le_put64(rec + k, (uint64_t)it->mtime_ns);
		k += 8;
		mf_le_put64(rec + k, (uint64_t)it->ctime_ns);
		k += 8;
		mf_le_put16(rec + k, (uint16_t)it->key.len);
		k += 2;
		memcpy(rec + k, mf_slice_ptr(it->key), it->key.len);
		k += it->key.len;
		mf_le_put64(rec + k, (uint64_t)it->val.len - zt);
		k += 8;
		if (zt) {
			mf_le_put64(rec + k, zt);
			k += 8;
		}
		if ((rc = w_emit(w, rec, k)) < 0)
			return rc;
		if ((rc = w_emit(w, mf_slice_ptr(it->val), it->val.len - zt)) < 0)
			return rc;
		unsigned char attr[MF_SNAPSHOT_ATTR_LEN];
		mf_le_put32(attr, it->mode);
		mf_le_put32(attr + 4, it->uid);
		mf_le_put32(attr + 8, it->gid);
		mf_le_put64(attr + 12, (uint64_t)it->atime_ns);
		mf_le_put64(attr + 20, (uint64_t)it->expire_ns);
		if ((rc = w_emit(w, attr, sizeof attr)) < 0)
			return rc;
	}

	unsigned char trl[MF_SNAPSHOT_TRAILER_LEN];
	memcpy(trl, TRL_MAGIC, MF_SNAPSHOT_TRAILER_MAGIC_LEN);
	mf_le_put64(trl + 5, (uint64_t)n);
	mf_le_put64(trl + 13, w->raw + MF_SNAPSHOT_TRAILER_LEN);
	if ((rc = w_emit(w, trl, sizeof trl)) < 0)
		return rc;
	if (w->raw != raw_total)
		return -EIO; /* cannot happen: the sizes were computed above */

	if (w->slen) {
		rc = w_compress(w, w->stage, w->slen);
		w->slen = 0;
		if (rc < 0)
			return rc;
	}
	/* compressEnd also checks that contentSize matches what was fed. */
	r = LZ4F_compressEnd(w->cctx, w->out, w->outcap, NULL);
	if (LZ4F_isError(r))
		return -EIO;
	return w_flush_out(w, r);
}

int mf_snapshot_write(mf_io *io, const char *dir, uint64_t lsn,
                      const mf_item *items, size_t n, mf_snapshot_info *info)
{
	double t0 = mf_mono_sec();
	char tmp[PATH_MAX], final[PATH_MAX];
	mf_snapshot_info dummy;
	if (!info)
		info = &dummy;
	memset(info, 0, sizeof *info);
	info->lsn = lsn;
	info->keys = n;

	int rc = mf_path_join(tmp, sizeof tmp, dir, MF_SNAPSHOT_TMP_NAME);
	if (rc == 0)
		rc = mf_path_join(final, sizeof final, dir, MF_SNAPSHOT_NAME);
	if (rc < 0)
		return rc;
	uint64_t raw_total;
	if ((rc = check_items(items, n, &raw_total)) < 0)
		return rc;

	snap_writer w;
	memset(&w, 0, sizeof w);
	w.io = io;
	w.fd = -1;

	mf_crash_point("snapshot-before-tmp");
	int fd = io->open(io, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0) {
		rc = fd;
		goto out; /* nothing created (or an old tmp we could not open) */
	}
	w.fd = fd;

	rc = write_stream(&w, lsn, items, n, raw_total);
	if (rc < 0)
		goto fail;
	mf_crash_point("snapshot-after-tmp-write");
	/* Data before the rename: renaming first can leave a zero-length
	 * snapshot after a crash (the classic ext4 delayed-allocation bug). */
	if ((rc = io->fsync(io, w.fd)) < 0)
		goto fail;
	mf_crash_point("snapshot-after-tmp-fsync");
	fd = w.fd;
	w.fd = -1;
	if ((rc = io->close(io, fd)) < 0)
		goto fail;
	if ((rc = io->rename(io, tmp, final)) < 0)
		goto fail;
	mf_crash_point("snapshot-after-rename");
	/* The rename is durable only once the directory is: */
	if ((rc = io->fsync_dir(io, dir)) < 0)
		goto out; /* tmp is gone; the new file is in place but maybe not durable */
	mf_crash_point("snapshot-after-dir-fsync");
	rc = 0;
	goto out;

fail:
	if (w.fd >= 0)
		io->close(io, w.fd);
	w.fd = -1;
	io->unlink(io, tmp);
out:
	if (w.cctx)
		LZ4F_freeCompressionContext(w.cctx);
	free(w.stage);
	free(w.out);
	info->raw_bytes = w.raw;
	info->file_bytes = (uint64_t)w.off;
	info->seconds = mf_mono_sec() - t0;
	return rc;
}

/* ---- loading ------------------------------------------------------------ */

enum {
	P_HEADER,
	P_RECFIX,
	P_KEY,
	P_VLEN,
	P_VAL,
	P_ATTR,
	P_TRAILER,
	P_DONE,
};

static const char *state_name(int s)
{
	switch (s) {
	case P_HEADER: return "header";
	case P_RECFIX: return "record header";
	case P_KEY: return "key";
	case P_VLEN: return "value length";
	case P_VAL: return "value";
	case P_ATTR: return "attributes";
	case P_TRAILER: return "trailer";
	default: return "end";
	}
}

#define REC_HEAD_LEN (1 + 8 + 8 + 2) /* type, mtime, ctime, key length */

typedef struct snap_parser {
	int state;
	unsigned char acc[MF_SNAPSHOT_MAX_KEY + 1];
	size_t have, need;
	uint64_t raw;          /* raw bytes consumed */
	uint64_t field_off;    /* raw offset where the current field began */
	uint64_t rec_off;      /* raw offset where the current record began */
	uint64_t count;        /* from the header */
	uint32_t version;      /* from the header: 1 (no attributes) or 2 */
	uint64_t seen;         /* records delivered */
	uint64_t content_size; /* from the LZ4 frame header; 0 = not given */
	uint64_t raw_cap;      /* most raw bytes the file can decompress to */
	mf_item cur;
	uint64_t vlen, vhave;
	bool sparse;           /* this record has a zero tail (FORMAT.md) */
	unsigned char keybuf[MF_SNAPSHOT_MAX_KEY];
	size_t klen;
	int (*cb)(void *ctx, mf_item *item);
	void *ctx;
	mf_snapshot_info *info;
	const char *path;
	char *err;
	size_t errlen;
} snap_parser;

static int p_fail(snap_parser *p, uint64_t off, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int p_fail(snap_parser *p, uint64_t off, const char *fmt, ...)
{
	if (p->err && p->errlen) {
		char what[256];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(what, sizeof what, fmt, ap);
		va_end(ap);
		snprintf(p->err, p->errlen, "snapshot %s: %s at raw offset %" PRIu64,
		         p->path, what, off);
	}
	return -EBADMSG;
}

static void p_expect(snap_parser *p, int state, size_t need)
{
	p->state = state;
	p->have = 0;
	p->need = need;
	p->field_off = p->raw;
}

static void p_expect(snap_parser *p, int state, size_t need);

/* The value is complete: v2 has the attribute block still to come. */
static int p_deliver(snap_parser *p);
static int p_value_done(snap_parser *p)
{
	if (p->version >= 2) {
		p_expect(p, P_ATTR, MF_SNAPSHOT_ATTR_LEN);
		return 0;
	}
	/* v1: the attributes every key had then (store/op.h defaults). */
	p->cur.mode = MF_MODE_DEFAULT;
	p->cur.uid = p->cur.gid = MF_ID_DEFAULT;
	p->cur.atime_ns = p->cur.mtime_ns;
	p->cur.expire_ns = 0;
	return p_deliver(p);
}

static int p_deliver(snap_parser *p)
{
	mf_item item = p->cur;
	memset(&p->cur, 0, sizeof p->cur);
	uint64_t off = p->rec_off;
	int rc = 0;
	if (p->cb) {
		rc = p->cb(p->ctx, &item); /* cb owns the references now */
	} else {
		mf_slice_unref(&item.key);
		mf_slice_unref(&item.val);
	}
	if (rc < 0) {
		if (p->err && p->errlen)
			snprintf(p->err, p->errlen,
			         "snapshot %s: loading record %" PRIu64 " failed: %s at raw offset %" PRIu64,
			         p->path, p->seen, strerror(-rc), off);
		return rc;
	}
	p->seen++;
	if (p->info)
		p->info->keys = p->seen;
	if (p->seen == p->count)
		p_expect(p, P_TRAILER, MF_SNAPSHOT_TRAILER_LEN);
	else
		p_expect(p, P_RECFIX, REC_HEAD_LEN);
	p->rec_off = p->raw;
	return 0;
}

/* Raw bytes still available for record payload: within the declared
 * content size if any, and always within what the file can decompress to. */
static uint64_t p_room(const snap_parser *p)
{
	uint64_t total = p->content_size && p->content_size < p->raw_cap ? p->content_size
	                                                                 : p->raw_cap;
	if (total < MF_SNAPSHOT_TRAILER_LEN)
		return 0;
	uint64_t end = total - MF_SNAPSHOT_TRAILER_LEN;
	return p->raw > end ? 0 : end - p->raw;
}

/* A fixed-size field is complete in acc[0, need). */
static int p_field(snap_parser *p)
{
	const unsigned char *a = p->acc;
	switch (p->state) {
	case P_HEADER: {
		if (memcmp(a, HDR_MAGIC, MF_SNAPSHOT_MAGIC_LEN) != 0)
			return p_fail(p, p->field_off, "bad magic");
		uint32_t ver = mf_le_get32(a + 6);
		if (ver < 1 || ver > MF_SNAPSHOT_VERSION)
			return p_fail(p, p->field_off + 6, "unsupported format version %" PRIu32, ver);
		p->version = ver;
		if (p->info)
			p->info->lsn = mf_le_get64(a + 10);
		p->count = mf_le_get64(a + 18);
		if (p->info)
			p->info->declared_keys = p->count;
		if (p->count > p_room(p) / (MF_SNAPSHOT_RECORD_FIXED +
		                            (ver >= 2 ? MF_SNAPSHOT_ATTR_LEN : 0)))
			return p_fail(p, p->field_off + 18, "key count %" PRIu64 " too large for a %"
			              PRIu64 "-byte stream", p->count,
			              p->content_size ? p->content_size : p->raw_cap);
		if (p->count == 0)
			p_expect(p, P_TRAILER, MF_SNAPSHOT_TRAILER_LEN);
		else
			p_expect(p, P_RECFIX, REC_HEAD_LEN);
		p->rec_off = p->raw;
		return 0;
	}
	case P_RECFIX: {
		uint8_t type = a[0] & (uint8_t)~MF_SNAPSHOT_SPARSE;
		p->sparse = a[0] & MF_SNAPSHOT_SPARSE;
		/* v1 predates folders, symlinks and special files (4, 5, 7);
		 * sets (6) were written as v1 before v2 existed. */
		if (!mf_type_valid(type) ||
		    (p->version < 2 &&
		     (type == MF_T_FOLDER || type == MF_T_SYMLINK || type == MF_T_SPECIAL)))
			return p_fail(p, p->field_off, "bad key type %u", type);
		uint16_t klen = mf_le_get16(a + 17);
		if (klen == 0) /* any u16 is <= MF_SNAPSHOT_MAX_KEY (65535) */
			return p_fail(p, p->field_off + 17, "bad key length %u", klen);
		p->cur.type = type;
		p->cur.mtime_ns = (int64_t)mf_le_get64(a + 1);
		p->cur.ctime_ns = (int64_t)mf_le_get64(a + 9);
		p_expect(p, P_KEY, klen);
		return 0;
	}
	case P_KEY:
		/* Held until the value length is known: key and value then go
		 * into one buffer (one allocation per key). */
		memcpy(p->keybuf, a, p->need);
		p->klen = p->need;
		p_expect(p, P_VLEN, p->sparse ? 16 : 8); /* value length [, zero tail] */
		return 0;
	case P_VLEN: {
		uint64_t vlen = mf_le_get64(a), zt = p->sparse ? mf_le_get64(a + 8) : 0;
		if (vlen > MF_SNAPSHOT_MAX_VALUE)
			return p_fail(p, p->field_off, "value length %" PRIu64 " too large", vlen);
		if (zt > MF_SNAPSHOT_MAX_VALUE - vlen)
			return p_fail(p, p->field_off + 8, "zero tail %" PRIu64 " too large", zt);
		/* Before allocating: the value must fit in what is left of the
		 * stream, which a frame without a content size still bounds by
		 * the file's size (raw_cap). */
		if (vlen > p_room(p))
			return p_fail(p, p->field_off, "value length %" PRIu64 " exceeds the stream "
			              "(at most %" PRIu64 " bytes left)", vlen, p_room(p));
		/* A zero tail is a hole: pages nobody touches (buf.h). */
		size_t total = p->klen + (size_t)vlen + (size_t)zt;
		mf_slice all = zt ? mf_slice_zeroed(total) : mf_slice_alloc(total, total);
		mf_buf_write(all.buf, 0, p->keybuf, p->klen);
		p->cur.key = (mf_slice){all.buf, 0, p->klen};
		p->cur.val = vlen + zt ? (mf_slice){mf_slice_ref(all).buf, p->klen, (size_t)(vlen + zt)}
		                       : MF_SLICE_EMPTY;
		if (vlen == 0)
			return p_value_done(p);
		p_expect(p, P_VAL, 0);
		p->vlen = vlen;
		p->vhave = 0;
		return 0;
	}
	case P_ATTR:
		p->cur.mode = mf_le_get32(a);
		p->cur.uid = mf_le_get32(a + 4);
		p->cur.gid = mf_le_get32(a + 8);
		p->cur.atime_ns = (int64_t)mf_le_get64(a + 12);
		p->cur.expire_ns = (int64_t)mf_le_get64(a + 20);
		return p_deliver(p);
	case P_TRAILER: {
		if (memcmp(a, TRL_MAGIC, MF_SNAPSHOT_TRAILER_MAGIC_LEN) != 0)
			return p_fail(p, p->field_off, "bad trailer magic");
		uint64_t cnt = mf_le_get64(a + 5), len = mf_le_get64(a + 13);
		if (cnt != p->count)
			return p_fail(p, p->field_off + 5, "trailer key count %" PRIu64
			              " != header key count %" PRIu64, cnt, p->count);
		if (len != p->raw)
			return p_fail(p, p->field_off + 13, "trailer stream length %" PRIu64
			              " != actual %" PRIu64, len, p->raw);
		p_expect(p, P_DONE, 0);
		return 0;
	}
	}
	return p_fail(p, p->raw, "internal parser state %d", p->state);
}

static int p_feed(snap_parser *p, const unsigned char *d, size_t n)
{
	while (n > 0) {
		if (p->state == P_DONE)
			return p_fail(p, p->raw, "%zu bytes after the trailer", n);
		if (p->state == P_VAL) {
			uint64_t k = p->vlen - p->vhave;
			if (k > n)
				k = n;
			mf_buf_write(p->cur.val.buf, p->cur.val.off + (size_t)p->vhave, d, (size_t)k);
			p->vhave += k;
			p->raw += k;
			d += k;
			n -= (size_t)k;
			if (p->vhave == p->vlen) {
				int rc = p_value_done(p);
				if (rc < 0)
					return rc;
			}
			continue;
		}
		size_t k = p->need - p->have;
		if (k > n)
			k = n;
		memcpy(p->acc + p->have, d, k);
		p->have += k;
		p->raw += k;
		d += k;
		n -= k;
		if (p->have == p->need) {
			int rc = p_field(p);
			if (rc < 0)
				return rc;
		}
	}
	return 0;
}

/* Read up to n bytes at off, looping over short reads; returns bytes read
 * (< n only at end of file) or -errno. */
static ssize_t read_some(mf_io *io, int fd, unsigned char *buf, size_t n, off_t off)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = io->pread(io, fd, buf + got, n - got, off + (off_t)got);
		if (r < 0)
			return r;
		if (r == 0)
			break;
		got += (size_t)r;
	}
	return (ssize_t)got;
}

int mf_snapshot_load(mf_io *io, const char *dir,
                     int (*cb)(void *ctx, mf_item *item), void *ctx,
                     mf_snapshot_info *info, char *err, size_t errlen)
{
	double t0 = mf_mono_sec();
	char path[PATH_MAX];
	mf_snapshot_info dummy;
	if (!info)
		info = &dummy;
	memset(info, 0, sizeof *info);
	if (err && errlen)
		err[0] = '\0';
	int rc = mf_path_join(path, sizeof path, dir, MF_SNAPSHOT_NAME);
	if (rc < 0)
		return rc;

	int fd = io->open(io, path, O_RDONLY, 0);
	if (fd < 0)
		return fd;

	snap_parser p;
	memset(&p, 0, sizeof p);
	p.cb = cb;
	p.ctx = ctx;
	p.info = info;
	p.path = path;
	p.err = err;
	p.errlen = errlen;
	p_expect(&p, P_HEADER, MF_SNAPSHOT_HEADER_LEN);

	LZ4F_dctx *dctx = NULL;
	unsigned char *in = mf_xmalloc(READ_SIZE);
	unsigned char *out = mf_xmalloc(DOUT_SIZE);
	off_t foff = 0;          /* file bytes read */
	size_t in_len = 0, in_pos = 0;
	bool eof = false;

	if (LZ4F_isError(LZ4F_createDecompressionContext(&dctx, LZ4F_VERSION))) {
		rc = -ENOMEM;
		goto out;
	}

	ssize_t r = read_some(io, fd, in, READ_SIZE, 0);
	if (r < 0) {
		rc = (int)r;
		if (err && errlen)
			snprintf(err, errlen, "snapshot %s: read failed: %s", path, strerror(-rc));
		goto out;
	}
	in_len = (size_t)r;
	foff = (off_t)r;
	eof = in_len < READ_SIZE;
	if (in_len == 0) {
		rc = p_fail(&p, 0, "empty file");
		goto out;
	}

	LZ4F_frameInfo_t fi;
	size_t hsz = in_len;
	size_t hr = LZ4F_getFrameInfo(dctx, &fi, in, &hsz);
	if (LZ4F_isError(hr)) {
		rc = p_fail(&p, 0, "bad LZ4 frame header (%s)", LZ4F_getErrorName(hr));
		goto out;
	}
	in_pos = hsz;
	if (fi.frameType != LZ4F_frame) {
		rc = p_fail(&p, 0, "not an LZ4 data frame");
		goto out;
	}
	if (fi.contentChecksumFlag != LZ4F_contentChecksumEnabled) {
		rc = p_fail(&p, 0, "LZ4 frame has no content checksum");
		goto out;
	}
	/* LZ4 turns one input byte into at most 255 output bytes (a match
	 * length grows by 255 per extra byte), so the file's size bounds the
	 * raw stream whatever the frame header claims. */
	off_t fsz = 0;
	rc = io->fstat_size(io, fd, &fsz);
	if (rc < 0)
		goto out;
	p.raw_cap = (uint64_t)fsz * 256 + (64u << 10);
	p.content_size = fi.contentSize;
	if (p.content_size > p.raw_cap) {
		rc = p_fail(&p, 0, "LZ4 content size %" PRIu64 " larger than a %lld-byte file can "
		            "hold", p.content_size, (long long)fsz);
		goto out;
	}
	if (p.content_size && p.content_size < MF_SNAPSHOT_HEADER_LEN + MF_SNAPSHOT_TRAILER_LEN) {
		rc = p_fail(&p, 0, "LZ4 content size %" PRIu64 " too small", p.content_size);
		goto out;
	}

	for (;;) {
		if (in_pos == in_len && !eof) {
			r = read_some(io, fd, in, READ_SIZE, foff);
			if (r < 0) {
				rc = (int)r;
				if (err && errlen)
					snprintf(err, errlen, "snapshot %s: read failed at file offset %lld: %s",
					         path, (long long)foff, strerror(-rc));
				goto out;
			}
			in_len = (size_t)r;
			in_pos = 0;
			foff += r;
			eof = in_len < READ_SIZE;
		}
		size_t ssz = in_len - in_pos, dsz = DOUT_SIZE;
		size_t hint = LZ4F_decompress(dctx, out, &dsz, in + in_pos, &ssz, NULL);
		if (LZ4F_isError(hint)) {
			/* LZ4F buffers input internally: the damage lies somewhere in
			 * the bytes fed to this call or the block they complete. */
			rc = p_fail(&p, p.raw, "LZ4 frame damaged (%s) in file bytes before %lld",
			            LZ4F_getErrorName(hint), (long long)foff);
			goto out;
		}
		in_pos += ssz;
		if (dsz && (rc = p_feed(&p, out, dsz)) < 0)
			goto out;
		if (hint == 0)
			break; /* frame complete, content checksum verified */
		if (eof && in_pos == in_len && dsz == 0 && ssz == 0) {
			rc = p_fail(&p, p.raw, "truncated file (LZ4 frame incomplete after %lld bytes)",
			            (long long)foff);
			goto out;
		}
	}

	/* Nothing may follow the frame. */
	if (in_pos < in_len) {
		rc = p_fail(&p, p.raw, "%zu bytes after the LZ4 frame", in_len - in_pos);
		goto out;
	}
	if (!eof) {
		unsigned char extra;
		r = read_some(io, fd, &extra, 1, foff);
		if (r < 0) {
			rc = (int)r;
			goto out;
		}
		if (r > 0) {
			rc = p_fail(&p, p.raw, "data after the LZ4 frame at file offset %lld",
			            (long long)foff);
			goto out;
		}
	}
	if (p.state != P_DONE) {
		rc = p_fail(&p, p.raw, "stream ends inside %s", state_name(p.state));
		goto out;
	}
	if (p.content_size && p.raw != p.content_size) {
		rc = p_fail(&p, p.raw, "stream length != LZ4 content size %" PRIu64, p.content_size);
		goto out;
	}
	rc = 0;

out:
	mf_slice_unref(&p.cur.key);
	mf_slice_unref(&p.cur.val);
	if (dctx)
		LZ4F_freeDecompressionContext(dctx);
	free(in);
	free(out);
	io->close(io, fd);
	info->raw_bytes = p.raw;
	info->file_bytes = (uint64_t)foff;
	info->seconds = mf_mono_sec() - t0;
	return rc;
}

int mf_snapshot_remove_tmp(mf_io *io, const char *dir)
{
	char tmp[PATH_MAX];
	int rc = mf_path_join(tmp, sizeof tmp, dir, MF_SNAPSHOT_TMP_NAME);
	if (rc < 0)
		return rc;
	rc = io->unlink(io, tmp);
	if (rc == -ENOENT)
		return 0;
	if (rc < 0)
		return rc;
	return io->fsync_dir(io, dir);
}
