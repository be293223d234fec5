/*
 * db.h — the database: store + WAL + snapshots, wired together.
 *
 * Owns the data dir (locked with flock on memflux.lock, which holds the pid,
 * from open until mf_db_close has closed the WAL), the in-memory store, the
 * WAL writer and the snapshot thread.  A lock holder is "live" while a FUSE
 * mount whose source is MF_DB_FSNAME_PREFIX DATA_DIR exists in its mount
 * namespace (the daemon mounts with that fsname): see lock_wait_ms.
 * The FUSE layer turns file operations into mf_op records and hands them to
 * mf_db_commit(); it reads through mf_db_store().
 *
 * Startup (mf_db_open): create/lock the dir, remove stray *.tmp, load
 * memflux.snapshot, replay WAL records newer than its LSN through
 * mf_store_apply (the same function live writes use), then start the WAL.
 * Any corruption: the open fails with a message and nothing is mounted.
 *
 * Snapshots: one at a time on a dedicated thread.  It fsyncs the WAL, then
 * the WAL seals its segment and, as its writer of the moment (so nothing is
 * applied meanwhile), the store's copy-on-write capture begins (O(1),
 * store.h); the snapshot thread walks the store a chunk at a time while
 * writers go on (apply saves what they change first), then serialises and
 * compresses.  When the snapshot is durable, sealed segments it covers are
 * deleted.
 *
 * Thread-safety: every function may be called from any thread.
 * Errors: negative errno; messages go to the log (log.h: fd 2, timestamped).
 *
 * Files in the data dir are created 0600 (main.c also sets umask 077);
 * memflux.state holds the last snapshot's time and status so that
 * /.ctl/stats reports them across restarts.
 */
#ifndef MF_DB_H
#define MF_DB_H

#include "../io/io.h"
#include "../snapshot/snapshot.h"
#include "../store/store.h"
#include "../wal/wal.h"
#include "../io/log.h"
#include "kv.h"
#include "bpop.h"

#define MF_DB_FSNAME_PREFIX "memfluxfs:"

/* Per-key estimate for the memory limit: hash entry (104 B), buffer header
 * (32 B) and a short key, as measured for the README's RSS figures. */
#define MF_DB_KEY_OVERHEAD 160

typedef struct mf_db_opts {
	const char *dir;
	mf_fsync_mode fsync_mode;
	unsigned fsync_interval_ms;
	uint64_t wal_threshold;   /* bytes; snapshot when the active WAL passes it */
	mf_io *io;                /* NULL: POSIX */
	/* The data dir lock is held by another process: if that process serves
	 * no mount of this data dir (it is exiting after an unmount, or still
	 * starting), wait up to this long for it; a live mount fails at once.
	 * 0: fail at once whatever the holder does. */
	unsigned lock_wait_ms;
	/* Called with a line (no "memfluxfs: " prefix, no newline) the user
	 * should see now, e.g. that we are waiting for the lock; NULL: stderr. */
	void (*notice)(const char *line);
	/* Called about once a second during a long recovery with the progress
	 * line just logged (main.c shows it live and tells systemd); NULL: log
	 * only. */
	void (*progress)(const char *line);
	/* Store memory (value bytes + MF_DB_KEY_OVERHEAD per key, stats'
	 * store_memory_bytes) past which a mutation that would grow the store
	 * fails with -ENOSPC before it is logged, with one log line naming the
	 * key (reads, deletes, pops, renames, shrinking truncates keep
	 * working).  0: no limit. */
	uint64_t max_memory;
} mf_db_opts;

typedef struct mf_db mf_db;

/* NULL on failure with a message in err. */
mf_db *mf_db_open(const mf_db_opts *opts, char *err, size_t errlen);
void mf_db_close(mf_db *db);
/* mf_db_close for a process about to exit: the WAL closed and the lock
 * released as there, but the store's memory left for the exit to return in
 * one go.  Freeing millions of keys one by one took seconds, and the
 * unmount waits for it (fusermount3 -u returns, the daemon lingers).
 * Sanitizer builds free everything, so leak checks still cover the store. */
void mf_db_close_exit(mf_db *db);

mf_store *mf_db_store(mf_db *db);

/* One line describing what start-up recovered (for the daemon's log). */
const char *mf_db_recovery_line(mf_db *db);

/* Validate (JSON documents strictly), log, apply.  0 or -errno.
 * = mf_db_commit_enqueue + mf_db_commit_wait. */
int mf_db_commit(mf_db *db, mf_op *op);

/* ---- change notification (for committers outside the FUSE layer) ----
 * The RESP server (resp/) commits through mf_db_commit_notify: after a
 * successful commit it calls the hook once per key the op touched (RENAME, SMOVE:
 * source and target; FLUSH: once with key NULL, meaning every key), on the
 * caller's thread, holding no db lock, so the hook may ask the kernel to
 * drop cached entries/attributes (mf_fs_key_changed).  The FUSE layer keeps
 * using plain mf_db_commit: it invalidates its own inodes, and a kernel
 * notification sent from inside a request handler can deadlock.
 * The hook may be set (once) while other threads commit: commits before
 * it is visible call no hook. */
typedef void (*mf_db_change_fn)(void *ctx, int ktype, const void *key, size_t klen);
void mf_db_set_change_hook(mf_db *db, mf_db_change_fn fn, void *ctx);
int mf_db_commit_notify(mf_db *db, mf_op *op);
/* The hook part of mf_db_commit_notify, for an op committed by enqueue and
 * wait (the expire cycle's batches). */
void mf_db_notify_changed(mf_db *db, const mf_op *op);

/*
 * Commit in two steps, so a caller can release its own ordering lock (the
 * FUSE layer's per-name lock) once the op's place is fixed instead of
 * holding it across the log write:
 *
 *   mf_db_ticket t;
 *   int r = mf_db_commit_enqueue(db, op, &t);   // under the caller's lock
 *   unlock(...);
 *   if (r == 0)
 *           r = mf_db_commit_wait(db, &t);      // 0 or -errno, as commit
 *
 * Contract: WAL order = apply order = enqueue order.  When enqueue returns
 * 0 the op's position is fixed: every op enqueued before it (by any thread)
 * is logged and applied before it, every op enqueued after it, after.  The
 * up-front checks (type conflicts, missing keys, JSON) see the store as of
 * the ops applied so far, not those still queued; apply re-checks against
 * the store it runs on, and that result is what wait returns (the op is
 * then logged but changes nothing, as a refused op always has on replay).
 * A nonzero enqueue result means nothing was queued: do not wait.  After a
 * 0, wait exactly once (any thread may); until some thread waits, nothing
 * queued is written.  t and op (its slices too) must stay alive and
 * untouched until wait returns; op->lsn is set then.
 */
typedef struct mf_db_ticket {
	mf_wal_ticket wal;
} mf_db_ticket;
int mf_db_commit_enqueue(mf_db *db, mf_op *op, mf_db_ticket *t);
int mf_db_commit_wait(mf_db *db, mf_db_ticket *t);

/* ---- blocking pops (bpop.h) ----
 * Pop one element from the first of keys[] (lists) that has one, left (LPOP)
 * or right (RPOP), waiting for a push if none has: one LPOP/RPOP record for
 * the element, in out (out->out holds the element's line; caller clears
 * out), *which = the key's index.  Waiters of a key are served in arrival
 * order.  timeout_ns < 0: wait until cancelled; 0: do not wait.  notify:
 * commit with mf_db_commit_notify (RESP; FUSE request handlers must not).
 * w: the caller's waiter record, zeroed, alive until this returns; another
 * thread may pass it to mf_db_bpop_cancel meanwhile (before it too).
 * 0, -ETIMEDOUT, -EINTR (cancelled, nothing popped) or a commit's error. */
int mf_db_bpop(mf_db *db, const mf_slice *keys, size_t nkeys, bool left, int64_t timeout_ns,
               bool notify, mf_bpop_waiter *w, mf_op *out, size_t *which);
void mf_db_bpop_cancel(mf_db *db, mf_bpop_waiter *w);
/* The db's waiter queue (bpop.c). */
mf_bpop *mf_db_bpop_state(mf_db *db);

/* fsync everything acknowledged so far. */
int mf_db_sync(mf_db *db);

/* Take a snapshot now and return when it is durable (0 / -errno). */
int mf_db_snapshot(mf_db *db);

/* Text for /.ctl/stats and /.ctl/snapshot (malloc'd, NUL-terminated). */
char *mf_db_stats_text(mf_db *db);
char *mf_db_snapshot_text(mf_db *db);

/* For /.ctl/stats: the FUSE layer counts key reads (one per open for
 * reading; hit = the key existed).  Cheap (atomics), any thread. */
void mf_db_count_read(mf_db *db, bool hit);
/* Open file handles (+1 at open/create, -1 at release), for stats'
 * open_handles. */
void mf_db_handles_add(mf_db *db, int delta);
/* The memory limit (0: none) and what it counts now (store_memory_bytes),
 * for statfs: df shows the limit as the size. */
uint64_t mf_db_memory(mf_db *db, uint64_t *limit);

/* The database as the keyspace interface fs/ talks to (kv.h). */
mf_kv mf_db_kv(mf_db *db);

/* Parse "128M", "64K", "1G", "4096" into bytes.  0 / -EINVAL. */
int mf_parse_size(const char *s, uint64_t *out);

#endif
