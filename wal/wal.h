/*
 * wal.h — the write-ahead log: group commit writer and recovery.
 *
 * Files (in the data dir; format in wal/FORMAT.md):
 *   memflux.wal               the active segment, appended by the writer
 *   memflux.wal.<16 hex>      sealed segments (hex = last LSN they hold),
 *                             made by mf_wal_rotate() for a snapshot and
 *                             deleted by mf_wal_drop_sealed() once a
 *                             snapshot covering them is durable.
 *
 * Threads: no writer thread of its own (LevelDB's DBImpl::Write).  Any
 * thread queues an op (mf_wal_enqueue: its queue position, and so its LSN
 * order, is fixed on return) and then waits for it (mf_wal_wait).  A waiter
 * that finds no thread leading becomes the leader: it takes everything
 * queued, assigns LSNs in queue order, writes the batch with one pwritev
 * (and one fsync in ALWAYS mode, after waiting up to half an fsync for the
 * writers the previous batch showed: commit delay), calls apply() for each
 * op in LSN order, wakes their waiters, and goes on until its own op is
 * done; then it steps down and a remaining waiter leads next.  Other
 * waiters spin up to 100 us, then sleep (a thread wake-up costs more than a
 * record).  So WAL order = apply order = enqueue order, and an op is in the
 * file before it is in memory.  In INTERVAL mode a syncer thread fdatasyncs
 * at most interval_ms after a write.
 *
 * Errors: if the batch write fails, the file is cut back to the batch start,
 * none of its ops are applied, each submitter gets the -errno, and the
 * batch's LSNs are given out again (the log stays contiguous).  If an
 * fsync fails, the WAL turns read-only: that batch and every later submit get
 * -EIO (retrying fsync is unsafe).  Logged to stderr.
 *
 * Caveat (as in PostgreSQL): "not acknowledged" is not "guaranteed absent".
 * In ALWAYS mode a batch whose fsync failed is already in the file; its
 * submitters got -EIO and it was not applied, but it may reappear after a
 * restart if the data did reach the disk.  The same holds for any op whose
 * submitter was still waiting when the process died.
 */
#ifndef MF_WAL_H
#define MF_WAL_H

#include "../io/io.h"
#include "../store/op.h"
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum mf_fsync_mode {
	MF_FSYNC_NONE = 0,
	MF_FSYNC_INTERVAL = 1,
	MF_FSYNC_ALWAYS = 2,
} mf_fsync_mode;

const char *mf_fsync_mode_name(mf_fsync_mode m);
int mf_fsync_mode_parse(const char *s, mf_fsync_mode *out); /* 0 / -EINVAL */

/* Called by the leader (and by replay) for each op in LSN order, one call
 * at a time; on whichever submitter thread leads. */
typedef int (*mf_apply_fn)(void *ctx, mf_op *op);

/* Rotation callback (mf_wal_rotate). */
typedef void (*mf_rotate_cb)(void *ctx, uint64_t last_lsn);

typedef struct mf_wal_opts {
	const char *dir;
	mf_io *io;                 /* NULL: mf_io_posix() */
	mf_fsync_mode mode;
	unsigned interval_ms;      /* INTERVAL mode; default 1000 */
	size_t max_batch_bytes;    /* 0: 4 MiB (a single larger op is its own batch) */
} mf_wal_opts;

typedef struct mf_wal_stats {
	uint64_t bytes;            /* size of the active segment */
	uint64_t sealed_bytes;     /* sealed segments not yet dropped */
	uint64_t lsn;              /* last LSN written */
	uint64_t synced_lsn;       /* last LSN known fsynced */
	uint64_t records;          /* records written since open */
	uint64_t batches;          /* pwritev calls that carried records */
	uint64_t fsyncs;
	bool read_only;            /* after an fsync failure */
	uint64_t queued;           /* ops enqueued and not yet
	                              taken into a batch) */
} mf_wal_stats;

typedef struct mf_wal_replay_info {
	uint64_t records;          /* records applied (lsn > after_lsn) */
	uint64_t skipped;          /* records <= after_lsn (already in snapshot) */
	uint64_t last_lsn;         /* highest LSN seen, or after_lsn */
	uint64_t truncated_bytes;  /* damaged unsynced tail cut from memflux.wal */
	uint64_t cut_off;          /* where (when truncated_bytes > 0) */
	uint64_t lost_first, lost_last; /* LSNs cut (0 when nothing was cut) */
	uint64_t dropped_intact;   /* intact records after the hole, dropped */
	uint64_t horizon;          /* highest LSN known durable */
	double seconds;
	uint64_t apply_errors;     /* of `records`, how many apply() refused (not
	                              corruption: the live op failed the same way) */
} mf_wal_replay_info;

/* Replay sealed segments then the active one, calling apply for every
 * record with lsn > after_lsn, in LSN order, contiguous from after_lsn + 1.
 * Damage in memflux.wal lying wholly after the durable horizon (a torn,
 * dropped or reordered unsynced write) is cut off, with one line on stderr
 * naming offset, bytes and LSN range.  Damage reaching durable data, LSNs
 * missing between segments or after the snapshot, a sealed segment that
 * does not end at its name: -EBADMSG, nothing modified, and err names file,
 * offset and LSN.  Policy: mf_wal_judge / mf_wal_walk (record.h),
 * wal/FORMAT.md.  A missing WAL is an empty one.  Also deletes sealed
 * segments wholly <= after_lsn. */
int mf_wal_replay(const char *dir, mf_io *io, uint64_t after_lsn,
                  mf_apply_fn apply, void *ctx, mf_wal_replay_info *info,
                  char *err, size_t errlen);

typedef struct mf_wal mf_wal;

/* Open (create) the active segment for appending; the next LSN given out is
 * next_lsn (>= 1; normally replay's last_lsn + 1).  mf_wal_replay must have
 * run first: it cuts a torn tail, which open does not look for (appending
 * after torn bytes would turn them into mid-file corruption).  Starts the
 * writer (and fsync) threads.  NULL and *err = -errno. */
mf_wal *mf_wal_open(const mf_wal_opts *opts, uint64_t next_lsn,
                    mf_apply_fn apply, void *ctx, int *err);
/* (open fsyncs the existing active segment first: what replay read may have
 * been only in the page cache, and new records will say it is durable.) */

/* Log then apply one op; returns when the record is written (fsynced in
 * ALWAYS mode) and applied: apply's result, or the I/O -errno.  op->lsn is
 * set.  The op's slices stay owned by the caller.  Also -EINVAL (type or
 * ktype out of range), -E2BIG (record > MF_WAL_REC_MAX_LEN: never for a value the store accepts), -EIO once read-only,
 * -ESHUTDOWN after mf_wal_close started.  = mf_wal_enqueue + mf_wal_wait. */
int mf_wal_submit(mf_wal *w, mf_op *op);

/* A place in the writer queue.  The caller provides the storage (usually
 * on its stack) and keeps it, and the op, alive and untouched from a
 * successful mf_wal_enqueue until mf_wal_wait returns.  Fields are private
 * to wal/. */
typedef struct mf_wal_ticket {
	struct mf_wal_ticket *next;
	int kind;
	mf_op *op;
	size_t size;       /* encoded record size */
	int result;
	atomic_bool done;  /* set (release) by the leader; waiters may spin on it */
	mf_rotate_cb cb;   /* rotation entries */
	void *cbctx;
	uint64_t last_lsn;
} mf_wal_ticket;

/* Queue op.  On 0 its position is fixed: it gets a higher LSN, and is
 * applied later, than every op enqueued before this call returned, and a
 * lower one than every op enqueued after (a batch whose write fails is cut
 * and its LSNs reused, so the file stays contiguous; order is kept).  It is
 * not written yet: mf_wal_wait must follow, from this thread or any other,
 * and until some thread waits nothing queued is written (close drains it
 * too).  -EINVAL / -E2BIG (as submit), -EIO once read-only, -ESHUTDOWN after
 * close started: then nothing was queued and there is nothing to wait for.
 * Does no I/O; takes the queue lock briefly. */
int mf_wal_enqueue(mf_wal *w, mf_op *op, mf_wal_ticket *t);
/* Wait for a ticket of mf_wal_enqueue, leading the group commit if no one
 * is: returns what mf_wal_submit would (apply's result or the I/O -errno);
 * op->lsn is set.  Exactly once per successful enqueue. */
int mf_wal_wait(mf_wal *w, mf_wal_ticket *t);

/* Return once everything acknowledged so far is fsynced (fsync(2) on the
 * mount).  0 or -errno. */
int mf_wal_sync(mf_wal *w);

/* By the leader, between batches: seal the active segment (rename to
 * memflux.wal.<last lsn>, fsync dir), start a new one, then call cb while no
 * op can be applied — the store is exactly at *last_lsn.  Returns 0/-errno. */
/* An active segment holding no record is not sealed (no file is renamed);
 * cb still runs.  If creating the new segment fails the error is returned
 * and cb is not called; the next batch retries creating it.  Crash points:
 * "wal-after-seal-rename", "wal-after-new-segment". */
int mf_wal_rotate(mf_wal *w, mf_rotate_cb cb, void *ctx, uint64_t *last_lsn);

/* Delete sealed segments whose last LSN <= upto, then fsync the dir.  Crash
 * point "wal-after-drop-sealed" (after the unlinks, before the dir fsync).
 * Any thread. */
int mf_wal_drop_sealed(mf_wal *w, uint64_t upto);

void mf_wal_stats_get(mf_wal *w, mf_wal_stats *out);

/* Drain the queue, fsync, stop threads, close.  Returns the final fsync
 * result (0 or -errno). */
int mf_wal_close(mf_wal *w);

#endif
