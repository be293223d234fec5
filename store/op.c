/*
 * op.c — names for operation and key types (logs, memflux-check --dump).
 */
#include "op.h"

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
		[MF_OP_JSON_STRAPPEND] = "JSON.STRAPPEND",
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
}
