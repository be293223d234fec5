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
 *   DEL         ktype key [arg=1]         remove key (arg 1: only if its value
 *                                         is empty, else ENOTEMPTY)
 *   RENAME      ktype key key2            move key over key2 (replaces it)
 *   SETTIME     ktype key arg=mtime_ns    set mtime (utimens)
 *   RPUSH       LIST  key val             val = one or more '\n'-terminated lines
 *   LPOP        LIST  key arg=count       pop up to count head elements -> out
 *   JSON_SETPATH JSON key key2=path val   set one member of a document
 *   LPUSH       LIST  key val             val = lines, prepended as a block
 *                                         (RESP's LPUSH a b c logs "c\nb\na\n")
 *   RPOP        LIST  key arg=count       pop up to count tail elements -> out
 *                                         (out holds them in list order)
 *   SETRANGE    STRING key arg=offset val overwrite at offset, zero-filling
 *                                         any gap (create if absent)
 *   FLUSH       NONE  (no key)            remove every key (FLUSHDB)
 *   JSON_DELPATH JSON key key2=path       remove one member/element; path
 *                                         "$" removes the whole key
 *   MKDIR       FOLDER key [val=A]        make an explicit (empty) folder
 *   RMDIR       FOLDER key                remove an empty folder (explicit
 *                                         or implicit); ENOTEMPTY otherwise
 *   RENAMEDIR   FOLDER key key2           move a folder and its whole subtree
 *                                         (replaces an empty folder key2)
 *   SYMLINK     SYMLINK key val=A‖target  make a symbolic link
 *   SETATTR     any key arg=mask val=B    set mode/uid/gid/atime/mtime (mask:
 *                                         MF_ATTR_*); ctime = time_ns.  On
 *                                         an implicit folder: makes it explicit
 *   MKFILE      STRING key arg=flags      SET (or, with MF_MKFILE_KEEP,
 *               val=A‖value               CREATE) with the creator's attributes
 *   INCRBY      STRING key arg=delta      add the signed 64-bit delta (arg as
 *                                         int64) to an integer value (absent: 0);
 *                                         res = the result (as int64)
 *   INCRBYFLOAT STRING key val=increment  add a decimal increment (text) to a
 *                                         number; out = the new value
 *   SADD        SET   key val             val = members, one per line; absent key
 *                                         created; res = members added
 *   SREM        SET   key val             val = members, one per line; res =
 *                                         members removed; an emptied set goes
 *   SMOVE       SET   key key2=dst val=member  move one member (val, no '\n')
 *                                         from key to key2; res = 1 if moved
 *   JSON_NUMINCRBY JSON key key2=path val=number   add to the number at path;
 *                                         out = the new number's text
 *   JSON_ARRAPPEND JSON key key2=path val=[v,...]  append the values to the
 *                                         array at path; res = its length
 *   JSON_STRAPPEND JSON key key2=path val="s"      append to the string at
 *                                         path; res = its length (bytes)
 *   MULTI       NONE  (no key) val=sub-ops     a transaction (RESP EXEC): the
 *                                         sub-ops (mf_multi_encode) applied in
 *                                         order under one lock, in one record, so
 *                                         a crash keeps all or none; a sub-op
 *                                         that fails changes nothing and the
 *                                         rest go on (Redis's EXEC); results in
 *                                         sub[]
 *   READ        any   key                 (sub-op only) capture the key's type,
 *                                         count and value at that point: the
 *                                         reads queued between a transaction's
 *                                         writes
 *   EXPIRE      NONE  key arg=when        set the key's expiry to the absolute
 *                                         time `when` (ns since the epoch, as
 *                                         int64); 0 removes it (PERSIST); a time
 *                                         not after time_ns deletes the key;
 *                                         res = 1 if the key was there (PERSIST:
 *                                         and had an expiry)
 *   EXPIRED     NONE  key                 the active expire cycle: delete the
 *                                         key if its expiry is not after time_ns
 *                                         (else nothing: it was extended)
 *   WRITEV      STRING key arg=size val   what a file handle changed: the
 *                                         value becomes its first `keep`
 *                                         bytes, zero-extended (or cut) to
 *                                         size, with byte ranges written
 *                                         over it (val: mf_writev_encode).
 *                                         keep > 0 requires the value's
 *                                         first keep bytes to hash to the
 *                                         logged hash, else -ESTALE and
 *                                         nothing changes: so the result is
 *                                         exactly the handle's whole value
 *                                         (a SET in a few bytes), or nothing
 *   MKNOD       SPECIAL key val=A‖S       make a fifo, socket or device node
 *                                         (S: the special value below); A's
 *                                         mode is the permission bits
 * Expiry rule (every op): a key whose expiry is not after the op's time_ns
 * is absent for that op (it is deleted first), so replay decides exactly as
 * the live apply did.  SET (a whole new value) drops the expiry, as Redis's
 * SET; every other change keeps it; RENAME moves it with the key.
 * Inside a MULTI, SET with arg=1 replaces a key of any type (Redis's SET)
 * and DEL with ktype NONE deletes a key of any type.
 *
 * Ops 11..15 came with the RESP face (issue 15); the mount never logs them.
 * Ops 16..21 came with folders, modes and symlinks (issue 14).
 *
 * Attribute blocks, little-endian (mf_attr_encode/decode):
 *   A (MF_ATTR_A_LEN = 12): u32 mode, u32 uid, u32 gid
 *   B (MF_ATTR_B_LEN = 28): A, then i64 atime_ns, i64 mtime_ns
 * mode MF_MODE_DEFAULT means "the type's default" (files 0644, folders 0755,
 * links 0777) and uid or gid MF_ID_DEFAULT "the mounting user" (mode 0 is a
 * real mode: chmod 000), so data written before attributes
 * existed, and files a default-umask owner creates, need no attributes logged.
 *
 * Numbering agreed between branches (issue 14 / issue 16): ops 16..21 and
 * types 4, 5 belong to folders/modes/symlinks; ops 22..35 and type 6 to
 * sets, counters, blocking pops, JSON updates, transactions and expiry.
 * Ops 36..40 belong to the performance work (issue 12); of them, 37 and
 * type 7 went to special files (issue 14's mknod).
 *
 * Special value S (MF_SPECIAL_LEN = 12, little-endian): u32 file type (the
 * S_IFMT bits as Linux and POSIX systems number them: 0010000 fifo,
 * 0020000 character device, 0060000 block device, 0140000 socket), u64
 * rdev (the device number as Linux encodes a dev_t; 0 for fifos and
 * sockets).  The key's value is S itself: snapshots carry it as any value.
 * Numbers not defined here are refused by the store (-EINVAL).
 */
#ifndef MF_OP_H
#define MF_OP_H

#include "buf.h"

#include <stdbool.h>
#include <string.h>

typedef enum mf_type {
	MF_T_NONE = 0,
	MF_T_STRING = 1,
	MF_T_JSON = 2,
	MF_T_LIST = 3,
	MF_T_FOLDER = 4,    /* a folder made by MKDIR (value empty) */
	MF_T_SYMLINK = 5,   /* value = the link target */
	MF_T_SET = 6,       /* unique members, one per line in the value's text */
	MF_T_SPECIAL = 7,   /* fifo, socket or device node: value = S (above) */
	MF_T_MAX_ = 7,
} mf_type;

/* Types this build's store holds. */
static inline int mf_type_valid(int t)
{
	return t >= MF_T_STRING && t <= MF_T_MAX_;
}

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
	MF_OP_LPUSH = 11,
	MF_OP_RPOP = 12,
	MF_OP_SETRANGE = 13,
	MF_OP_FLUSH = 14,
	MF_OP_JSON_DELPATH = 15,
	MF_OP_MKDIR = 16,
	MF_OP_RMDIR = 17,
	MF_OP_RENAMEDIR = 18,
	MF_OP_SYMLINK = 19,
	MF_OP_SETATTR = 20,
	MF_OP_MKFILE = 21,
	MF_OP_INCRBY = 22,
	MF_OP_INCRBYFLOAT = 23,
	MF_OP_SADD = 24,
	MF_OP_SREM = 25,
	MF_OP_SMOVE = 26,
	MF_OP_JSON_NUMINCRBY = 27,
	MF_OP_JSON_ARRAPPEND = 28,
	MF_OP_JSON_STRAPPEND = 29,
	MF_OP_MULTI = 30,
	MF_OP_READ = 31,     /* only inside a MULTI record */
	MF_OP_EXPIRE = 32,
	MF_OP_EXPIRED = 33,
	/* 34, 35: reserved (issue 16) */
	MF_OP_WRITEV = 36,
	MF_OP_MKNOD = 37,
	MF_OP_MAX_ = 37,
} mf_optype;

/* SETATTR mask bits (op->arg). */
#define MF_ATTR_MODE 1u
#define MF_ATTR_UID 2u
#define MF_ATTR_GID 4u
#define MF_ATTR_ATIME 8u
#define MF_ATTR_MTIME 16u
#define MF_ATTR_ALL_ 31u

/* MKFILE flag (op->arg): keep an existing value (CREATE), else replace (SET). */
#define MF_MKFILE_KEEP 1u

#define MF_ATTR_A_LEN 12
#define MF_ATTR_B_LEN 28
#define MF_ID_DEFAULT UINT32_MAX   /* uid/gid: the mounting user */
#define MF_MODE_DEFAULT UINT32_MAX /* mode: the type's default */
#define MF_SYMLINK_MAX 4095        /* longest link target (PATH_MAX - 1) */

/* The special value (MF_T_SPECIAL): file type bits and device number. */
#define MF_SPECIAL_LEN 12
#define MF_SPECIAL_FIFO 0010000u
#define MF_SPECIAL_CHR 0020000u
#define MF_SPECIAL_BLK 0060000u
#define MF_SPECIAL_SOCK 0140000u
void mf_special_encode(uint32_t fmt, uint64_t rdev, void *out);
/* 0, or -EINVAL unless p is MF_SPECIAL_LEN bytes holding one of the four
 * types (and rdev 0 for a fifo or socket). */
int mf_special_decode(const void *p, size_t n, uint32_t *fmt, uint64_t *rdev);

/* Attributes as carried by ops and kept per key and folder. */
typedef struct mf_attr {
	uint32_t mode;     /* permission bits (07777), or MF_MODE_DEFAULT */
	uint32_t uid, gid; /* MF_ID_DEFAULT = the mounting user */
	int64_t atime_ns, mtime_ns;
} mf_attr;

/* Encode a (12 bytes) or b (28 bytes): out holds len bytes. */
void mf_attr_encode(const mf_attr *a, void *out, size_t len);
/* Decode the first len (12 or 28) bytes of p; fields beyond stay as given. */
void mf_attr_decode(const void *p, size_t len, mf_attr *a);

typedef struct mf_op {
	uint8_t type;      /* mf_optype */
	uint8_t ktype;     /* mf_type of the key */
	uint64_t lsn;      /* assigned by the WAL writer; 0 until then */
	int64_t time_ns;   /* wall clock of the mutation (CLOCK_REALTIME) */
	uint64_t arg;      /* size / mtime / count, per type */
	mf_slice key;
	mf_slice key2;
	mf_slice val;
	mf_slice out;      /* result of LPOP/RPOP/INCRBYFLOAT, filled by apply;
	                      caller unrefs */
	uint64_t res;      /* filled by apply, not logged: the list length after
	                      LPUSH/RPUSH, the value length after APPEND/SETRANGE,
	                      INCRBY's result, SADD/SREM/SMOVE's count (exact
	                      replies for RESP without locking the key) */
	struct mf_op_result *sub; /* MULTI: one result per sub-op, filled by apply
	                      (malloc'd; mf_op_clear frees) */
	size_t nsub;
	mf_slice base;     /* not logged, WRITEV only: the value the handle
	                      started from.  If the key still holds exactly this
	                      slice (same immutable bytes), apply skips hashing
	                      them: the hash would match, so replay (which has
	                      no hint and hashes) decides the same. */
	mf_slice prep;     /* not logged, JSON path ops only: the edited
	                      document mf_store_prepare made from prep_of; apply
	                      uses it if the key holds exactly prep_of (replay,
	                      without it, edits the same bytes the same way) */
	mf_slice prep_of;
} mf_op;

/* What apply left for one sub-op of a MULTI. */
typedef struct mf_op_result {
	int rc;            /* 0 or -errno, as mf_store_apply would return */
	uint64_t res;      /* op->res */
	mf_slice out;      /* op->out; READ: the value */
	uint8_t type;      /* READ: the key's type (0: absent) */
	uint64_t count;    /* READ: list elements / set members */
} mf_op_result;

/* MULTI payload: the sub-ops back to back, each
 *   u8 type, u8 ktype, u16 0, u32 klen, u32 k2len, u32 vlen, u64 arg,
 *   key, key2, value
 * (little-endian).  decode: *ops (malloc'd) are borrowed views of val's
 * bytes (no references: val must outlive them); -EINVAL if malformed or a
 * sub-op is a MULTI. */
mf_slice mf_multi_encode(const mf_op *ops, size_t n);
int mf_multi_decode(mf_slice val, mf_op **ops, size_t *n);

/* The 16 bytes a WAL record header (at byte 24, wal/FORMAT.md) and a MULTI
 * sub-op (at byte 0) both start with: u8 type, u8 ktype, u16 0, u32 klen,
 * u32 k2len, u32 vlen (little-endian).  One writer for both layouts. */
#define MF_OP_SHAPE 16
void mf_op_put_shape(uint8_t *dst, const mf_op *op);

/* Longest file name the kernel lets us see (NAME_MAX): the mount shows
 * keys of 1..MF_KEY_MAX bytes without '/' and NUL. */
#define MF_KEY_MAX 255

/* Longest key the store holds (any bytes but empty): RESP clients may use
 * keys no file name can hold; the snapshot's u16 key length bounds it. */
#define MF_KEY_BYTES_MAX 65535

/* Can a file name hold this key?  (What the mount lists.) */
static inline int mf_key_is_filename(const char *k, size_t n)
{
	return n > 0 && n <= MF_KEY_MAX && !memchr(k, '/', n) && !memchr(k, '\0', n);
}

/* The value limit, stated here only.  Largest value: 1.25 GiB.  Bigger is
 * EFBIG, checked before anything is logged (a logged op that cannot be
 * applied would fail again at every replay).  On disk, a length above
 * MF_FILE_LEN_MAX (1.5 GiB) is corruption and is never allocated: that bound
 * leaves room above MF_VALUE_MAX for a record's header and keys, so any value
 * the store accepts can be logged and snapshotted. */
#define MF_VALUE_MAX (((uint64_t)1 << 30) + ((uint64_t)1 << 28))
#define MF_FILE_LEN_MAX ((uint64_t)3 << 29)
_Static_assert(MF_VALUE_MAX + 64 + 2 * MF_KEY_BYTES_MAX <= MF_FILE_LEN_MAX,
               "a WAL record of the largest value must fit the file bound");

const char *mf_optype_name(int type);
/* An op type this build knows (the numbering has reserved holes). */
int mf_optype_valid(int type);
const char *mf_type_name(int type);

/* Does op->key name a key (FLUSH has none)? */
static inline int mf_op_has_key(int type)
{
	return type != MF_OP_FLUSH && type != MF_OP_MULTI;
}

/* ---- WRITEV payload: u64 keep, u64 hash, then ranges, each u64 offset,
 * u32 length and the bytes, little-endian, until the end of val. ---- */
typedef struct mf_range {
	uint64_t off, len;
} mf_range;

typedef struct mf_writev {
	uint64_t keep, hash;
	const unsigned char *p, *end; /* the ranges not yet read */
} mf_writev;

/* Check a WRITEV's payload against its size (op->arg): well formed, keep
 * and every range inside the size.  0 or -EINVAL. */
int mf_writev_open(const mf_op *op, mf_writev *w);
/* The next range (after a successful open); false at the end. */
bool mf_writev_next(mf_writev *w, uint64_t *off, const char **bytes, uint32_t *len);
/* The payload for ranges r[0..n) whose bytes are src[off, off+len). */
size_t mf_writev_size(const mf_range *r, size_t n);
mf_slice mf_writev_encode(uint64_t keep, uint64_t hash, const mf_range *r, size_t n,
                          const char *src);

/* A 64-bit hash of bytes (WRITEV's precondition): fast, not cryptographic.
 * A handle's own base against the key's value, so no adversary picks both. */
uint64_t mf_hash64(const void *p, size_t n);

/* Drop every slice reference the op holds (key, key2, val, out, base,
 * prep, prep_of). */
void mf_op_clear(mf_op *op);

#endif
