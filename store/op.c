/*
 * op.c — names for operation and key types (logs, memflux-check --dump).
 */
#include "op.h"

#include <errno.h>

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
		[MF_OP_WRITEV] = "WRITEV",
	};
	if (type <= 0 || type > MF_OP_MAX_ || !names[type])
		return "?";
	return names[type];
}

const char *mf_type_name(int type)
{
	switch (type) {
	case MF_T_STRING: return "string";
	case MF_T_JSON: return "json";
	case MF_T_LIST: return "list";
	default: return "none";
	}
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
