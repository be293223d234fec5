/*
 * store.h — the in-memory keyspace.
 *
 * Owns: one hash table of keys; each key has a type (string, JSON, list,
 * folder, symlink, set), a value (an mf_slice; a set's is the text of its
 * members, made from a member hash table when read), a list/set element
 * count, attributes (mode, uid, gid, atime, mtime, ctime, expiry) and a
 * version that changes whenever the value does.  One keyspace, as in Redis: a key has one type at
 * a time.
 *
 * The tree: a string, folder or symlink key (the types /kv shows) of
 * '/'-separated components, each 1..255 bytes without NUL and not "." or
 * ".." (a "tree key"), is also filed in a child index under its parent
 * folder, so listing a folder is O(its children) and a folder
 * rename is O(its subtree), never O(keyspace).  A folder exists while it is
 * explicit (a MF_T_FOLDER key, made by MKDIR: an empty one persists) or has
 * anything below it (implicit: "user/1/x" made over RESP shows "user" and
 * "user/1").  Tree rules, enforced by check and apply for every op that
 * makes a key: no proper prefix of a tree key is a non-folder key (ENOTDIR),
 * and no non-folder key is made where a folder is (EISDIR).  Keys that are
 * not tree keys ("a//b", components over 255 bytes) and JSON documents,
 * lists and sets (flat, whatever their names) stay outside the index.
 *
 * No FUSE and no I/O here.  Mutations happen only through mf_store_apply(),
 * which both live writes (via the WAL writer) and WAL replay call.
 *
 * Expiry: a key may carry an absolute expiry time (EXPIRE records).  Reads
 * treat a key past it as absent (lazy expiry: get, keys, export, set_has
 * use the wall clock); ops treat it as absent at their own time_ns and
 * delete it first (deterministic on replay); the db's active cycle logs
 * EXPIRED records for keys past it (mf_store_expired_sample).
 *
 * Locking: one rwlock.  apply takes it for writing; get/keys/export/stats
 * and a capture's steps take it for reading and hand out slice references,
 * so a reader never holds the lock while it copies value bytes.  apply must
 * be called from one thread at a time (the WAL writer, or replay before the
 * mount exists): in-place appends rely on a single applier.
 *
 * Snapshot capture is copy-on-write: mf_store_capture_begin fixes the
 * state at the last applied LSN in O(1); mf_store_capture_step then walks
 * the table a bounded chunk at a time (the applier waits for one chunk at
 * most), while apply saves the pre-image of any key it is about to change
 * that the walk has not reached.  Each entry carries the epoch of the
 * capture that has it, so it is taken exactly once, walked or pre-imaged.
 *
 * Value-type rules live here and nowhere else, enforced by check and apply
 * alike (so replay enforces exactly what live writes do) and by the snapshot
 * loader: a JSON value is one strict RFC 8259 document (SET, a path value of
 * JSON_SETPATH), and a document is never truncated except to its own size
 * (CREATE of a JSON key makes the store's "no document yet" state, which
 * only "$" paths and SET can fill; the mount never logs it); a list value is lines, each '\n'-terminated (SET and
 * RPUSH complete an unterminated last line; a list truncates only to 0);
 * values are at most MF_VALUE_MAX bytes; a set's members are unique lines
 * (SET, SADD take lines; an emptied set is deleted by SREM/SMOVE, as
 * Redis has no empty sets); a counter (INCRBY, INCRBYFLOAT) is Redis's
 * integer or float text, optionally followed by one '\n' (kept).
 *
 * Errors: negative errno.  ENOENT (no such key), EEXIST (key exists with
 * another type), EINVAL (malformed op or a value its type refuses; a
 * counter that is not a number), ERANGE (a counter would overflow, or
 * become NaN/infinite), EFBIG (over MF_VALUE_MAX).
 */
#ifndef MF_STORE_H
#define MF_STORE_H

#include "op.h"
#include <stdbool.h>

typedef struct mf_store mf_store;

typedef struct mf_entry_info {
	mf_type type;
	mf_slice val;       /* referenced when asked for; caller unrefs */
	uint64_t size;      /* value bytes */
	uint64_t count;     /* list elements, set members; folders: subfolders */
	int64_t mtime_ns;
	int64_t ctime_ns;
	int64_t atime_ns;
	uint32_t mode;      /* MF_MODE_DEFAULT: the type's default (store/op.h) */
	uint32_t uid, gid;  /* MF_ID_DEFAULT = the mounting user */
	bool implicit;      /* a folder with no key of its own (mf_store_stat) */
	uint64_t version;   /* changes whenever the value changes */
	int64_t expire_ns;  /* absolute expiry (ns since the epoch); 0: none */
} mf_entry_info;

/* One key as captured for a snapshot: references, not copies. */
typedef struct mf_item {
	mf_slice key;
	uint8_t type;
	mf_slice val;
	int64_t mtime_ns;
	int64_t ctime_ns;
	int64_t expire_ns;  /* absolute expiry; 0: none (snapshot v2 holds it) */
	/* snapshot v2's attribute block (v1 items load with the defaults) */
	uint32_t mode, uid, gid;
	int64_t atime_ns;
} mf_item;

/* A folder's child, as listed by mf_store_list. */
typedef struct mf_dirent {
	mf_slice name;      /* the last component (a referenced sub-slice) */
	uint8_t type;       /* mf_type; MF_T_FOLDER for implicit folders too */
} mf_dirent;

typedef struct mf_store_stats {
	uint64_t keys[MF_T_MAX_ + 1]; /* indexed by mf_type; [0] = total */
	uint64_t value_bytes;   /* sum of live value lengths */
	uint64_t applied_lsn;
	uint64_t expires;       /* keys with an expiry */
	uint64_t expired;       /* keys deleted because they expired (this run) */
} mf_store_stats;

mf_store *mf_store_new(void);
void mf_store_free(mf_store *st);

/* Apply one mutation.  0 or -errno; on error the store is unchanged.
 * For LPOP, op->out receives the popped lines (a referenced slice). */
int mf_store_apply(mf_store *st, mf_op *op);

/* The checks apply would make, without changing anything: lets a caller
 * refuse an op before it is logged.  Advisory (another op may intervene
 * before apply); apply re-checks and is deterministic. */
int mf_store_check(mf_store *st, const mf_op *op);

/* check, and for a JSON path op also keep the edited document in op->prep
 * (with the value it was made from in op->prep_of), so that apply, if the
 * key still holds exactly that value, installs it instead of editing the
 * document again: a member update parses the document once (issue 12). */
int mf_store_prepare(mf_store *st, mf_op *op);

/* The whole-value rule of a type: 0, or -EINVAL with the byte offset and a
 * static reason (either may be NULL) — for log lines, and for values that
 * live outside the store (an unlinked file's data). */
int mf_value_check(mf_type type, const char *p, size_t n, size_t *err_off, const char **why);

/* The list rule for a value kept outside the store (an unlinked list's
 * data): complete an unterminated last line. */
void mf_list_terminate(mf_slice *s);

/* Look a key up.  want_value: also take a reference to its value. */
int mf_store_get(mf_store *st, const void *key, size_t klen, bool want_value,
                 mf_entry_info *out);

/* A path in the tree: a key, or an implicit folder (out->implicit; times
 * of the last change below it, default attributes).  The empty path is the
 * root (always a folder).  A key that a folder's name would also match (data
 * from before the tree rules) wins.  -ENOENT. */
int mf_store_stat(mf_store *st, const void *path, size_t len, mf_entry_info *out);

/* The children of a folder (path "" = the root), in no particular order:
 * a malloc'd array, caller frees with mf_store_dirents_free.  -ENOENT, or
 * -ENOTDIR when path names a non-folder key. */
int mf_store_list(mf_store *st, const void *path, size_t len, mf_dirent **out, size_t *n);
void mf_store_dirents_free(mf_dirent *d, size_t n);

/* Is k a tree key (see above)? */
bool mf_tree_key(const char *k, size_t n);

/* All keys of one type (MF_T_NONE: every key), as referenced slices in a
 * malloc'd array; caller unrefs each and frees the array. */
size_t mf_store_keys(mf_store *st, mf_type type, mf_slice **keys);

/* Every key with references to its value, for a snapshot; plus the LSN
 * of the last applied op.  Caller frees with mf_store_items_free. */
size_t mf_store_export(mf_store *st, mf_item **items, uint64_t *lsn);
void mf_store_items_free(mf_item *items, size_t n);

/* A copy-on-write capture of every key at the LSN applied so far (see
 * Locking).  One at a time; begin must be called where nothing is being
 * applied (the WAL leader between batches, as export was).  step walks up
 * to `buckets` hash buckets and returns true once the walk is complete;
 * end hands over the items (as export does) and stops the capture. */
void mf_store_capture_begin(mf_store *st, uint64_t *lsn);
bool mf_store_capture_step(mf_store *st, size_t buckets);
size_t mf_store_capture_end(mf_store *st, mf_item **items);

/* Insert one item as loaded from a snapshot (before any apply); takes over
 * the item's references.  -EEXIST if the key is already there. */
int mf_store_load_item(mf_store *st, mf_item *item);
void mf_store_set_applied_lsn(mf_store *st, uint64_t lsn);

void mf_store_stats_get(mf_store *st, mf_store_stats *out);

/* The active expire cycle's sample: up to max keys whose expiry is not
 * after now (as referenced slices in keys[], caller unrefs), looking at no
 * more than 4 * max keys with an expiry per call (bounded work, rotating
 * through them).  The caller logs an EXPIRED op for each. */
size_t mf_store_expired_sample(mf_store *st, int64_t now, mf_slice *keys, size_t max);

/* SISMEMBER: 1 or 0; -ENOENT (no key), -EEXIST (not a set).  O(1). */
int mf_store_set_has(mf_store *st, const void *key, size_t klen, const void *m, size_t mlen);

/* Count '\n'-terminated lines in a list value. */
uint64_t mf_count_lines(const char *p, size_t n);

#endif
