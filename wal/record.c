/*
 * record.c — segment header and record encode/decode (wal/FORMAT.md).
 *
 * Integers are written and read byte by byte, little-endian, so the format
 * does not depend on the host's byte order, alignment or struct layout.
 */
#include "record.h"

#include "../io/le.h"

#include "crc32c.h"

#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

/* ---- file header ---- */

void mf_wal_file_header_encode(uint8_t out[MF_WAL_FILE_HEADER], uint64_t salt,
                               uint64_t prev_lsn)
{
	memcpy(out, MF_WAL_MAGIC, 5);
	out[5] = MF_WAL_VERSION;
	mf_le_put16(out + 6, MF_WAL_FILE_HEADER);
	mf_le_put32(out + 8, 0);
	mf_le_put64(out + 12, salt);
	mf_le_put64(out + 20, prev_lsn);
	mf_le_put32(out + 28, mf_crc32c_mask(mf_crc32c(out, 28)));
}

int mf_wal_file_header_check(const uint8_t in[MF_WAL_FILE_HEADER], mf_wal_file_hdr *h,
                             const char **why)
{
	if (memcmp(in, MF_WAL_MAGIC, 5) != 0) {
		*why = "bad magic (not a memfluxfs WAL segment)";
		return -EBADMSG;
	}
	if (in[5] != MF_WAL_VERSION) {
		/* Version 1 segments (no salt, no durable horizon) are not read:
		 * see FORMAT.md, "Compatibility". */
		*why = in[5] == 1 ? "WAL format version 1 (written by an older memfluxfs; see "
		                    "wal/FORMAT.md, Compatibility)"
		                  : "unsupported WAL format version";
		return -EBADMSG;
	}
	if (mf_crc32c_unmask(mf_le_get32(in + 28)) != mf_crc32c(in, 28)) {
		*why = "segment header checksum mismatch";
		return -EBADMSG;
	}
	if (mf_le_get16(in + 6) != MF_WAL_FILE_HEADER || mf_le_get32(in + 8) != 0) {
		*why = "unsupported segment header size or flags";
		return -EBADMSG;
	}
	h->version = in[5];
	h->salt = mf_le_get64(in + 12);
	h->prev_lsn = mf_le_get64(in + 20);
	return 0;
}

uint64_t mf_wal_new_salt(void)
{
	uint64_t s = 0;
	if (getrandom(&s, sizeof s, 0) != (ssize_t)sizeof s) {
		/* No entropy source: time and pid still differ between the
		 * incarnations of one file, which is what the salt is for. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		s = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
		    ((uint64_t)getpid() << 40);
		s *= 0x9E3779B97F4A7C15ULL;
	}
	return s ? s : 1;
}

/* ---- encoding ---- */

int mf_wal_record_validate(const mf_op *op)
{
	if (!mf_optype_valid(op->type) || (op->ktype && !mf_type_valid(op->ktype)))
		return -EINVAL;
	uint64_t len = (uint64_t)MF_WAL_REC_FIXED_BODY + op->key.len + op->key2.len +
	               op->val.len;
	if (op->key.len > UINT32_MAX || op->key2.len > UINT32_MAX ||
	    op->val.len > UINT32_MAX || len > MF_WAL_REC_MAX_LEN)
		return -E2BIG;
	return 0;
}

size_t mf_wal_record_head_size(const mf_op *op)
{
	return MF_WAL_REC_HEADER + op->key.len + op->key2.len;
}

size_t mf_wal_record_size(const mf_op *op)
{
	return mf_wal_record_head_size(op) + op->val.len;
}

uint32_t mf_wal_rec_seed(uint64_t salt, uint64_t off)
{
	uint8_t b[16];
	mf_le_put64(b, salt);
	mf_le_put64(b + 8, off);
	return mf_crc32c(b, sizeof b);
}

/* Header crc: bytes 0..3 (len) and 8..55 (everything but the two crcs). */
static uint32_t hdr_crc(const uint8_t *p, uint32_t seed)
{
	return mf_crc32c_extend(mf_crc32c_extend(seed, p, 4), p + 8, 48);
}

void mf_wal_record_encode_head(const mf_op *op, const mf_wal_rec_place *at, uint8_t *dst)
{
	uint32_t len = (uint32_t)(MF_WAL_REC_FIXED_BODY + op->key.len + op->key2.len +
	                          op->val.len);
	uint32_t seed = mf_wal_rec_seed(at->salt, at->off);
	mf_le_put32(dst, len);
	mf_le_put64(dst + 8, op->lsn);
	mf_le_put64(dst + 16, at->durable);
	mf_op_put_shape(dst + 24, op); /* type, ktype, flags 0, the 3 lengths */
	mf_le_put64(dst + 40, (uint64_t)op->time_ns);
	mf_le_put64(dst + 48, op->arg);
	mf_le_put32(dst + 56, mf_crc32c_mask(hdr_crc(dst, seed)));
	mf_le_put32(dst + 60, 0);
	uint8_t *p = dst + MF_WAL_REC_HEADER;
	if (op->key.len)
		memcpy(p, mf_slice_ptr(op->key), op->key.len);
	p += op->key.len;
	if (op->key2.len)
		memcpy(p, mf_slice_ptr(op->key2), op->key2.len);
	p += op->key2.len;
	/* CRC of the body: the head after the crc field, then the value in
	 * place. */
	uint32_t crc = mf_crc32c_extend(seed, dst + 8, (size_t)(p - (dst + 8)));
	if (op->val.len)
		crc = mf_crc32c_extend(crc, mf_slice_ptr(op->val), op->val.len);
	mf_le_put32(dst + 4, mf_crc32c_mask(crc));
}

uint8_t *mf_wal_record_encode(const mf_op *op, const mf_wal_rec_place *at, size_t *len)
{
	size_t head = mf_wal_record_head_size(op);
	size_t n = head + op->val.len;
	uint8_t *out = mf_xmalloc(n ? n : 1);
	mf_wal_record_encode_head(op, at, out);
	if (op->val.len)
		memcpy(out + head, mf_slice_ptr(op->val), op->val.len);
	*len = n;
	return out;
}

/* ---- decoding ---- */

int mf_wal_rec_hdr_parse(const uint8_t *p, uint64_t avail, const mf_wal_rec_place *at,
                         mf_wal_rec_hdr *h, const char **why)
{
	if (avail < MF_WAL_REC_HEADER) {
		*why = "truncated record header";
		return MF_REC_SHORT;
	}
	/* Cheap range checks first: a resync pass runs this at every byte
	 * offset of a damaged region, and random bytes fail here. */
	h->len = mf_le_get32(p);
	if (h->len < MF_WAL_REC_FIXED_BODY || h->len > MF_WAL_REC_MAX_LEN) {
		*why = "record length out of range";
		return MF_REC_BAD;
	}
	h->type = p[24];
	h->ktype = p[25];
	h->flags = mf_le_get16(p + 26);
	/* Numbers reserved for another build's types are out of range here
	 * (op.h: mf_optype_valid, mf_type_valid). */
	bool op_type = mf_optype_valid(h->type);
	if ((!op_type && h->type != MF_WAL_REC_SYNC) || (h->ktype && !mf_type_valid(h->ktype)) ||
	    h->flags != 0 ||
	    mf_le_get32(p + 60) != 0) {
		*why = "record type/ktype/flags out of range";
		return MF_REC_BAD;
	}
	h->klen = mf_le_get32(p + 28);
	h->k2len = mf_le_get32(p + 32);
	h->vlen = mf_le_get32(p + 36);
	if (!op_type && (h->klen | h->k2len | h->vlen) != 0) {
		*why = "sync marker with a payload";
		return MF_REC_BAD;
	}
	/* 64-bit sum: three u32 cannot overflow it. */
	if ((uint64_t)MF_WAL_REC_FIXED_BODY + h->klen + h->k2len + h->vlen != h->len) {
		*why = "record field lengths inconsistent";
		return MF_REC_BAD;
	}
	if (mf_crc32c_unmask(mf_le_get32(p + 56)) != hdr_crc(p, mf_wal_rec_seed(at->salt, at->off))) {
		*why = "record header checksum mismatch";
		return MF_REC_BAD;
	}
	h->crc = mf_le_get32(p + 4);
	h->lsn = mf_le_get64(p + 8);
	h->durable = mf_le_get64(p + 16);
	h->time_ns = (int64_t)mf_le_get64(p + 40);
	h->arg = mf_le_get64(p + 48);
	if ((uint64_t)h->len + 8 > avail) {
		*why = "record extends past end of file";
		return MF_REC_SHORT;
	}
	return MF_REC_OK;
}

bool mf_wal_rec_body_ok(const mf_wal_rec_hdr *h, uint32_t body_crc)
{
	return mf_crc32c_unmask(h->crc) == body_crc;
}

int mf_wal_record_decode(const uint8_t *p, size_t avail, const mf_wal_rec_place *at,
                         mf_op *op, size_t *reclen, mf_wal_rec_hdr *hout, const char **why)
{
	mf_wal_rec_hdr h;
	int r = mf_wal_rec_hdr_parse(p, avail, at, &h, why);
	if (r != MF_REC_OK)
		return r;
	uint32_t crc = mf_crc32c_extend(mf_wal_rec_seed(at->salt, at->off), p + 8, h.len);
	if (!mf_wal_rec_body_ok(&h, crc)) {
		*why = "record checksum mismatch";
		return MF_REC_BAD;
	}
	memset(op, 0, sizeof *op);
	op->lsn = h.lsn;
	op->type = h.type;
	op->ktype = h.ktype;
	op->time_ns = h.time_ns;
	op->arg = h.arg;
	/* key, key2 and value share one buffer, as the file scanner does (one
	 * allocation per record; a stored key and value then share it). */
	size_t total = (size_t)h.klen + h.k2len + h.vlen;
	if (total) {
		mf_slice all = mf_slice_from(p + MF_WAL_REC_HEADER, total, total);
		if (h.klen)
			op->key = (mf_slice){mf_slice_ref(all).buf, 0, h.klen};
		if (h.k2len)
			op->key2 = (mf_slice){mf_slice_ref(all).buf, h.klen, h.k2len};
		if (h.vlen)
			op->val = (mf_slice){mf_slice_ref(all).buf, (size_t)h.klen + h.k2len, h.vlen};
		mf_slice_unref(&all);
	}
	*reclen = (size_t)h.len + 8;
	if (hout)
		*hout = h;
	return MF_REC_OK;
}
