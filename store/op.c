/*
 * op.c — names for operation and key types (logs, memflux-check --dump).
 */
#include "op.h"

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
	};
	if (type <= 0 || type > MF_OP_MAX_)
		return "?";
	return names[type];
}

const char *mf_type_name(int type)
{
	switch (type) {
	case MF_T_STRING: return "string";
	case MF_T_JSON: return "json";
	case MF_T_LIST: return "list";
	case MF_T_FOLDER: return "folder";
	case MF_T_SYMLINK: return "symlink";
	default: return "none";
	}
}

void mf_op_clear(mf_op *op)
{
	mf_slice_unref(&op->key);
	mf_slice_unref(&op->key2);
	mf_slice_unref(&op->val);
	mf_slice_unref(&op->out);
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
