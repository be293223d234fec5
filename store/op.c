/*
 * op.c — names for operation and key types (logs, memflux-check --dump).
 */
#include "op.h"
#include "../io/le.h"

#include <errno.h>
#include <stdlib.h>

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
		[MF_OP_INCRBY] = "INCRBY", [MF_OP_INCRBYFLOAT] = "INCRBYFLOAT",
		[MF_OP_SADD] = "SADD", [MF_OP_SREM] = "SREM", [MF_OP_SMOVE] = "SMOVE",
		[MF_OP_JSON_NUMINCRBY] = "JSON.NUMINCRBY", [MF_OP_JSON_ARRAPPEND] = "JSON.ARRAPPEND",
		[MF_OP_JSON_STRAPPEND] = "JSON.STRAPPEND", [MF_OP_MULTI] = "MULTI",
		[MF_OP_READ] = "READ", [MF_OP_EXPIRE] = "EXPIRE", [MF_OP_EXPIRED] = "EXPIRED",
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
	case MF_T_SET: return "set";
	default: return "none";
	}
}

void mf_op_clear(mf_op *op)
{
	mf_slice_unref(&op->key);
	mf_slice_unref(&op->key2);
	mf_slice_unref(&op->val);
	mf_slice_unref(&op->out);
	for (size_t i = 0; i < op->nsub; i++)
		mf_slice_unref(&op->sub[i].out);
	free(op->sub);
	op->sub = NULL;
	op->nsub = 0;
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
		h[0] = o->type;
		h[1] = o->ktype;
		mf_le_put16(h + 2, 0);
		mf_le_put32(h + 4, (uint32_t)o->key.len);
		mf_le_put32(h + 8, (uint32_t)o->key2.len);
		mf_le_put32(h + 12, (uint32_t)o->val.len);
		mf_le_put64(h + 16, o->arg);
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
