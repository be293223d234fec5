/*
 * record.c — segment header and record encode/decode (wal/FORMAT.md).
 *
 * Integers are written and read byte by byte, little-endian, so the format
 * does not depend on the host's byte order, alignment or struct layout.
 */
#include "record.h"

#include "crc32c.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- file header ---- */

void mf_wal_file_header_encode(uint8_t out[MF_WAL_FILE_HEADER])
{
	memcpy(out, MF_WAL_MAGIC, 5);
	out[5] = MF_WAL_VERSION;
	put16(out + 6, MF_WAL_FILE_HEADER);
	put32(out + 8, 0);
	put32(out + 12, mf_crc32c_mask(mf_crc32c(out, 12)));
}

int mf_wal_file_header_check(const uint8_t in[MF_WAL_FILE_HEADER], const char **why)
{
	if (memcmp(in, MF_WAL_MAGIC, 5) != 0) {
		*why = "bad magic (not a memfluxfs WAL segment)";
		return -EBADMSG;
	}
	if (in[5] != MF_WAL_VERSION) {
		*why = "unsupported WAL format version";
		return -EBADMSG;
	}
	if (mf_crc32c_unmask(get32(in + 12)) != mf_crc32c(in, 12)) {
		*why = "segment header checksum mismatch";
		return -EBADMSG;
	}
	if (get16(in + 6) != MF_WAL_FILE_HEADER || get32(in + 8) != 0) {
		*why = "unsupported segment header size or flags";
		return -EBADMSG;
	}
	return 0;
}

/* ---- encoding ---- */

int mf_wal_record_validate(const mf_op *op)
{
	if (op->type < 1 || op->type > MF_OP_MAX_ || op->ktype > MF_T_LIST)
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

void mf_wal_record_encode_head(const mf_op *op, uint8_t *dst)
{
	uint32_t len = (uint32_t)(MF_WAL_REC_FIXED_BODY + op->key.len + op->key2.len +
	                          op->val.len);
	put32(dst, len);
	put64(dst + 8, op->lsn);
	dst[16] = op->type;
	dst[17] = op->ktype;
	put16(dst + 18, 0);
	put32(dst + 20, (uint32_t)op->key.len);
	put32(dst + 24, (uint32_t)op->key2.len);
	put32(dst + 28, (uint32_t)op->val.len);
	put64(dst + 32, (uint64_t)op->time_ns);
	put64(dst + 40, op->arg);
	uint8_t *p = dst + MF_WAL_REC_HEADER;
	if (op->key.len)
		memcpy(p, mf_slice_ptr(op->key), op->key.len);
	p += op->key.len;
	if (op->key2.len)
		memcpy(p, mf_slice_ptr(op->key2), op->key2.len);
	p += op->key2.len;
	/* CRC of the body: the head after the crc field, then the value in
	 * place. */
	uint32_t crc = mf_crc32c(dst + 8, (size_t)(p - (dst + 8)));
	if (op->val.len)
		crc = mf_crc32c_extend(crc, mf_slice_ptr(op->val), op->val.len);
	put32(dst + 4, mf_crc32c_mask(crc));
}

uint8_t *mf_wal_record_encode(const mf_op *op, size_t *len)
{
	size_t head = mf_wal_record_head_size(op);
	size_t n = head + op->val.len;
	uint8_t *out = mf_xmalloc(n ? n : 1);
	mf_wal_record_encode_head(op, out);
	if (op->val.len)
		memcpy(out + head, mf_slice_ptr(op->val), op->val.len);
	*len = n;
	return out;
}

/* ---- decoding ---- */

int mf_wal_rec_hdr_parse(const uint8_t *p, uint64_t avail, mf_wal_rec_hdr *h,
                         const char **why)
{
	if (avail < 8) {
		*why = "truncated record header";
		return MF_REC_SHORT;
	}
	h->len = get32(p);
	h->crc = get32(p + 4);
	if (h->len < MF_WAL_REC_FIXED_BODY || h->len > MF_WAL_REC_MAX_LEN) {
		*why = "record length out of range";
		return MF_REC_BAD;
	}
	if ((uint64_t)h->len + 8 > avail) {
		*why = "record extends past end of file";
		return MF_REC_SHORT;
	}
	/* len >= 40 and the record fits: the 48 header bytes are there. */
	h->lsn = get64(p + 8);
	h->type = p[16];
	h->ktype = p[17];
	h->flags = get16(p + 18);
	h->klen = get32(p + 20);
	h->k2len = get32(p + 24);
	h->vlen = get32(p + 28);
	h->time_ns = (int64_t)get64(p + 32);
	h->arg = get64(p + 40);
	if (h->type < 1 || h->type > MF_OP_MAX_ || h->ktype > MF_T_LIST || h->flags != 0) {
		*why = "record type/ktype/flags out of range";
		return MF_REC_BAD;
	}
	/* 64-bit sum: three u32 cannot overflow it. */
	if ((uint64_t)MF_WAL_REC_FIXED_BODY + h->klen + h->k2len + h->vlen != h->len) {
		*why = "record field lengths inconsistent";
		return MF_REC_BAD;
	}
	return MF_REC_OK;
}

static mf_slice copy_slice(const uint8_t *p, size_t n)
{
	return n ? mf_slice_from(p, n, n) : MF_SLICE_EMPTY;
}

int mf_wal_record_decode(const uint8_t *p, size_t avail, mf_op *op,
                         size_t *reclen, const char **why)
{
	mf_wal_rec_hdr h;
	int r = mf_wal_rec_hdr_parse(p, avail, &h, why);
	if (r != MF_REC_OK)
		return r;
	if (mf_crc32c_unmask(h.crc) != mf_crc32c(p + 8, h.len)) {
		*why = "record checksum mismatch";
		return MF_REC_BAD;
	}
	memset(op, 0, sizeof *op);
	op->lsn = h.lsn;
	op->type = h.type;
	op->ktype = h.ktype;
	op->time_ns = h.time_ns;
	op->arg = h.arg;
	const uint8_t *q = p + MF_WAL_REC_HEADER;
	op->key = copy_slice(q, h.klen);
	q += h.klen;
	op->key2 = copy_slice(q, h.k2len);
	q += h.k2len;
	op->val = copy_slice(q, h.vlen);
	*reclen = (size_t)h.len + 8;
	return MF_REC_OK;
}
