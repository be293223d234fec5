/*
 * op.h — the operation record: one value per mutation.
 *
 * Every change to the keyspace is expressed as an mf_op and goes through
 * mf_store_apply().  The WAL serialises exactly these records (wal/record.c)
 * and replay feeds them back to the same mf_store_apply(), so live writes
 * and recovery share one code path.
 *
 * Determinism: apply must produce the same result from the same prior state,
 * so everything that varies between runs (the clock) travels in the record:
 * time_ns is the wall-clock time of the mutation, taken by the caller.
 *
 * Field use per type (unused fields are empty / zero):
 *   CREATE      ktype key                 create empty value if absent
 *   SET         ktype key val             replace whole value (create if absent)
 *   APPEND      ktype key val             string append (create if absent)
 *   TRUNCATE    ktype key arg=size        resize string, zero-filled growth
 *   DEL         ktype key                 remove key
 *   RENAME      ktype key key2            move key over key2 (replaces it)
 *   SETTIME     ktype key arg=mtime_ns    set mtime (utimens)
 *   RPUSH       LIST  key val             val = one or more '\n'-terminated lines
 *   LPOP        LIST  key arg=count       pop up to count head elements -> out
 *   JSON_SETPATH JSON key key2=path val   set one member of a document
 */
#ifndef MF_OP_H
#define MF_OP_H

#include "buf.h"

typedef enum mf_type {
	MF_T_NONE = 0,
	MF_T_STRING = 1,
	MF_T_JSON = 2,
	MF_T_LIST = 3,
} mf_type;

typedef enum mf_optype {
	MF_OP_CREATE = 1,
	MF_OP_SET = 2,
	MF_OP_APPEND = 3,
	MF_OP_TRUNCATE = 4,
	MF_OP_DEL = 5,
	MF_OP_RENAME = 6,
	MF_OP_SETTIME = 7,
	MF_OP_RPUSH = 8,
	MF_OP_LPOP = 9,
	MF_OP_JSON_SETPATH = 10,
	MF_OP_MAX_ = 10,
} mf_optype;

typedef struct mf_op {
	uint8_t type;      /* mf_optype */
	uint8_t ktype;     /* mf_type of the key */
	uint64_t lsn;      /* assigned by the WAL writer; 0 until then */
	int64_t time_ns;   /* wall clock of the mutation (CLOCK_REALTIME) */
	uint64_t arg;      /* size / mtime / count, per type */
	mf_slice key;
	mf_slice key2;
	mf_slice val;
	mf_slice out;      /* result of LPOP, filled by apply; caller unrefs */
} mf_op;

/* Longest key the kernel lets us see (NAME_MAX); longer is EINVAL. */
#define MF_KEY_MAX 255

/* The value limit, stated here only.  Largest value: 1.25 GiB.  Bigger is
 * EFBIG, checked before anything is logged (a logged op that cannot be
 * applied would fail again at every replay).  On disk, a length above
 * MF_FILE_LEN_MAX (1.5 GiB) is corruption and is never allocated: that bound
 * leaves room above MF_VALUE_MAX for a record's header and keys, so any value
 * the store accepts can be logged and snapshotted. */
#define MF_VALUE_MAX (((uint64_t)1 << 30) + ((uint64_t)1 << 28))
#define MF_FILE_LEN_MAX ((uint64_t)3 << 29)
_Static_assert(MF_VALUE_MAX + 64 + 2 * MF_KEY_MAX <= MF_FILE_LEN_MAX,
               "a WAL record of the largest value must fit the file bound");

const char *mf_optype_name(int type);
const char *mf_type_name(int type);

/* Drop every slice reference the op holds (key, key2, val, out). */
void mf_op_clear(mf_op *op);

#endif
