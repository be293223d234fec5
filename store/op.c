/*
 * op.c — names for operation and key types (logs, memflux-check --dump), the
 * MULTI payload codec, and the op shape both it and WAL records encode.
 */
#include "op.h"
#include "../io/le.h"

#include <errno.h>
#include <stdlib.h>

#include "../io/le.h"

const char *mf_optype_name(int type)
{
	static const char *const names[] = {
		[MF_OP_CREATE] = "CREATE", [MF_OP_SET] = "SET",
		[MF_OP_APPEND] = "APPEND", [MF_OP_TRUNCATE] = "TRUNCATE",
		[MF_OP_DEL] = "DEL", [MF_OP_RENAME] = "RENAME",
		[MF_OP_SETTIME] = "SETTIME", [MF_OP_RPUSH] = "RPUSH",
		[MF_OP_LPOP] = "LPOP", [MF_OP_JSON_SETPATH] = "JSON.SETPATH",
		[MF_OP_LPUSH] = "LPUSH", [MF_OP_RPOP] = "RPOP", [MF_OP_SETRANGE] = "SETRANGE",
		[MF_OP_FLUSH] = "FLUSH", [MF_OP_JSON_DELPATH] = "JSON.DELPATH",
		[MF_OP_MKDIR] = "MKDIR", [MF_OP_RMDIR] = "RMDIR",
		[MF_OP_RENAMEDIR] = "RENAMEDIR", [MF_OP_SYMLINK] = "SYMLINK",
		[MF_OP_SETATTR] = "SETATTR", [MF_OP_MKFILE] = "MKFILE",
		[MF_OP_INCRBY] = "INCRBY", [MF_OP_INCRBYFLOAT] = "INCRBYFLOAT",
		[MF_OP_SADD] = "SADD", [MF_OP_SREM] = "SREM", [MF_OP_SMOVE] = "SMOVE",
		[MF_OP_JSON_NUMINCRBY] = "JSON.NUMINCRBY", [MF_OP_JSON_ARRAPPEND] = "JSON.ARRAPPEND",
		[MF_OP_JSON_STRAPPEND] = "JSON.STRAPPEND", [MF_OP_MULTI] = "MULTI",
		[MF_OP_READ] = "READ", [MF_OP_EXPIRE] = "EXPIRE", [MF_OP_EXPIRED] = "EXPIRED",
		[MF_OP_WRITEV] = "WRITEV", [MF_OP_MKNOD] = "MKNOD",
	};
	/* Reserved numbers (another branch's ops) have no name here. */
	if (type <= 0 || type > MF_OP_MAX_ || !names[type])
		return "?";
	return names[type];
}

int mf_optype_valid(int type)
{
	return mf_optype_name(type)[0] != '?';
}

const char *mf_type_name(int type)
{
	switch (type) {
	case MF_T_STRING: return "string";
	case MF_T_JSON: return "json";
	case MF_T_LIST: return "list";
	case MF_T_FOLDER: return "folder";
	case MF_T_SYMLINK: return "symlink";
	case MF_T_SET: return "set";
	case MF_T_SPECIAL: return "special";
	default: return "none";
	}
}

void mf_special_encode(uint32_t fmt, uint64_t rdev, void *out)
{
	mf_le_put32((uint8_t *)out, fmt);
	mf_le_put64((uint8_t *)out + 4, rdev);
}

int mf_special_decode(const void *p, size_t n, uint32_t *fmt, uint64_t *rdev)
{
	if (n != MF_SPECIAL_LEN)
		return -EINVAL;
	uint32_t f = mf_le_get32((const uint8_t *)p);
	uint64_t d = mf_le_get64((const uint8_t *)p + 4);
	bool dev = f == MF_SPECIAL_CHR || f == MF_SPECIAL_BLK;
	/* A fifo or socket has no device: a nonzero one is not ours. */
	if (!dev && ((f != MF_SPECIAL_FIFO && f != MF_SPECIAL_SOCK) || d != 0))
		return -EINVAL;
	*fmt = f;
	*rdev = d;
	return 0;
}

void mf_op_clear(mf_op *op)
{
	mf_slice_unref(&op->key);
	mf_slice_unref(&op->key2);
	mf_slice_unref(&op->val);
	mf_slice_unref(&op->out);
	mf_slice_unref(&op->base);
	mf_slice_unref(&op->prep);
	mf_slice_unref(&op->prep_of);
	for (size_t i = 0; i < op->nsub; i++)
		mf_slice_unref(&op->sub[i].out);
	free(op->sub);
	op->sub = NULL;
	op->nsub = 0;
}

void mf_op_put_shape(uint8_t *dst, const mf_op *op)
{
	dst[0] = op->type;
	dst[1] = op->ktype;
	mf_le_put16(dst + 2, 0);
	mf_le_put32(dst + 4, (uint32_t)op->key.len);
	mf_le_put32(dst + 8, (uint32_t)op->key2.len);
	mf_le_put32(dst + 12, (uint32_t)op->val.len);
}

#define SUB_HEAD 24

mf_slice mf_multi_encode(const mf_op *ops, size_t n)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += SUB_HEAD + ops[i].key.len + ops[i].key2.len + ops[i].val.len;
	mf_slice v = mf_slice_alloc(0, total);
	for (size_t i = 0; i < n; i++) {
		const mf_op *o = &ops[i];
		uint8_t h[SUB_HEAD];
		mf_op_put_shape(h, o);
		mf_le_put64(h + MF_OP_SHAPE, o->arg);
		mf_slice_append(&v, h, SUB_HEAD);
		mf_slice_append(&v, mf_slice_ptr(o->key), o->key.len);
		mf_slice_append(&v, mf_slice_ptr(o->key2), o->key2.len);
		mf_slice_append(&v, mf_slice_ptr(o->val), o->val.len);
	}
	return v;
}

int mf_multi_decode(mf_slice val, mf_op **ops, size_t *n)
{
	const uint8_t *p = (const uint8_t *)mf_slice_ptr(val);
	size_t len = val.len, pos = 0, k = 0, cap = 0;
	mf_op *v = NULL;
	while (pos < len) {
		if (len - pos < SUB_HEAD)
			goto bad;
		uint64_t kl = mf_le_get32(p + pos + 4), k2 = mf_le_get32(p + pos + 8),
		         vl = mf_le_get32(p + pos + 12);
		if (p[pos] == MF_OP_MULTI || !mf_optype_valid(p[pos]) || mf_le_get16(p + pos + 2) ||
		    kl + k2 + vl > len - pos - SUB_HEAD)
			goto bad;
		if (k == cap) {
			cap = cap ? cap * 2 : 8;
			v = mf_xrealloc(v, cap * sizeof *v);
		}
		mf_op *o = &v[k++];
		memset(o, 0, sizeof *o);
		o->type = p[pos];
		o->ktype = p[pos + 1];
		o->arg = mf_le_get64(p + pos + 16);
		size_t off = val.off + pos + SUB_HEAD;
		o->key = kl ? (mf_slice){val.buf, off, kl} : MF_SLICE_EMPTY;
		o->key2 = k2 ? (mf_slice){val.buf, off + kl, k2} : MF_SLICE_EMPTY;
		o->val = vl ? (mf_slice){val.buf, off + kl + k2, vl} : MF_SLICE_EMPTY;
		pos += SUB_HEAD + kl + k2 + vl;
	}
	*ops = v;
	*n = k;
	return 0;
bad:
	free(v);
	return -EINVAL;
}

void mf_attr_encode(const mf_attr *a, void *outp, size_t len)
{
	uint8_t *out = outp;
	mf_le_put32(out, a->mode);
	mf_le_put32(out + 4, a->uid);
	mf_le_put32(out + 8, a->gid);
	if (len >= MF_ATTR_B_LEN) {
		mf_le_put64(out + 12, (uint64_t)a->atime_ns);
		mf_le_put64(out + 20, (uint64_t)a->mtime_ns);
	}
}

void mf_attr_decode(const void *pp, size_t len, mf_attr *a)
{
	const uint8_t *p = pp;
	a->mode = mf_le_get32(p);
	a->uid = mf_le_get32(p + 4);
	a->gid = mf_le_get32(p + 8);
	if (len >= MF_ATTR_B_LEN) {
		a->atime_ns = (int64_t)mf_le_get64(p + 12);
		a->mtime_ns = (int64_t)mf_le_get64(p + 20);
	}
}

static uint64_t get_le(const unsigned char *p, int n)
{
	uint64_t v = 0;
	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static unsigned char *put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++, v >>= 8)
		*p++ = (unsigned char)v;
	return p;
}

#define WV_HDR 16  /* keep, hash */
#define WV_RANGE 12 /* off, len */

int mf_writev_open(const mf_op *op, mf_writev *w)
{
	const unsigned char *p = (const unsigned char *)mf_slice_ptr(op->val);
	if (op->val.len < WV_HDR)
		return -EINVAL;
	w->keep = get_le(p, 8);
	w->hash = get_le(p + 8, 8);
	w->p = p + WV_HDR;
	w->end = p + op->val.len;
	if (w->keep > op->arg)
		return -EINVAL;
	/* Walk once so that apply never meets a malformed range halfway. */
	mf_writev it = *w;
	while (it.p < it.end) {
		if ((size_t)(it.end - it.p) < WV_RANGE)
			return -EINVAL;
		uint64_t off = get_le(it.p, 8), len = get_le(it.p + 8, 4);
		it.p += WV_RANGE;
		if ((uint64_t)(it.end - it.p) < len || off > op->arg || len > op->arg - off)
			return -EINVAL;
		it.p += len;
	}
	return 0;
}

bool mf_writev_next(mf_writev *w, uint64_t *off, const char **bytes, uint32_t *len)
{
	if (w->p >= w->end)
		return false;
	*off = get_le(w->p, 8);
	*len = (uint32_t)get_le(w->p + 8, 4);
	*bytes = (const char *)w->p + WV_RANGE;
	w->p += WV_RANGE + *len;
	return true;
}

/* Ranges longer than this are split (a range's length is a u32). */
#define WV_PIECE ((uint64_t)1 << 30)

size_t mf_writev_size(const mf_range *r, size_t n)
{
	size_t total = WV_HDR;
	for (size_t i = 0; i < n; i++)
		total += (size_t)((r[i].len + WV_PIECE - 1) / WV_PIECE) * WV_RANGE + (size_t)r[i].len;
	return total;
}

mf_slice mf_writev_encode(uint64_t keep, uint64_t hash, const mf_range *r, size_t n,
                          const char *src)
{
	size_t total = mf_writev_size(r, n);
	mf_slice s = mf_slice_alloc(total, total);
	unsigned char *p = (unsigned char *)s.buf->data;
	p = put_le(p, keep, 8);
	p = put_le(p, hash, 8);
	for (size_t i = 0; i < n; i++) {
		for (uint64_t done = 0; done < r[i].len;) {
			uint64_t piece = r[i].len - done < WV_PIECE ? r[i].len - done : WV_PIECE;
			p = put_le(p, r[i].off + done, 8);
			p = put_le(p, piece, 4);
			memcpy(p, src + r[i].off + done, (size_t)piece);
			p += piece;
			done += piece;
		}
	}
	return s;
}

/* Four independent 64-bit lanes over 32-byte blocks (so the multiplies
 * overlap), then the tail, then a final avalanche.  Our own mix of
 * multiply and rotate; about a byte per cycle per lane on these CPUs. */
static uint64_t rotl(uint64_t x, int r)
{
	return x << r | x >> (64 - r);
}

/* Little-endian whatever the host: the hash is logged. */
static uint64_t load64(const unsigned char *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

static uint64_t lane(uint64_t h, uint64_t w)
{
	return rotl(h ^ (w * 0x9E3779B97F4A7C15ULL), 31) * 0xD6E8FEB86659FD93ULL;
}

uint64_t mf_hash64(const void *data, size_t n)
{
	const unsigned char *p = data;
	uint64_t a = 0x243F6A8885A308D3ULL, b = 0x13198A2E03707344ULL;
	uint64_t c = 0xA4093822299F31D0ULL, d = 0x082EFA98EC4E6C89ULL;
	size_t i = 0;
	for (; i + 32 <= n; i += 32) {
		a = lane(a, load64(p + i));
		b = lane(b, load64(p + i + 8));
		c = lane(c, load64(p + i + 16));
		d = lane(d, load64(p + i + 24));
	}
	uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18) + (uint64_t)n;
	for (; i + 8 <= n; i += 8)
		h = lane(h, load64(p + i));
	uint64_t t = 0;
	for (size_t k = 0; i < n; i++, k++)
		t |= (uint64_t)p[i] << (8 * k);
	h = lane(h, t);
	h ^= h >> 33;
	h *= 0xFF51AFD7ED558CCDULL;
	h ^= h >> 29;
	return h;
}
