/*
 * wal_int.h — what the live WAL's files share: the writer queue entry, the
 * mf_wal struct with its one LOCKING section, and the functions one file
 * calls in another.  Not installed, not for use outside wal/.
 *
 * Where things live (wal/):
 *   wal.c      lifecycle: mf_wal_open, mf_wal_close, stats
 *   writer.c   the writer queue and leader/follower group commit: enqueue,
 *              wait, batches, apply
 *   sync.c     fsync modes, the one fsync path, the interval syncer, sync
 *              markers, read-only on fsync failure
 *   segment.c  segment files: names, listing, creation, reopening, rotation
 *              (sealing), dropping sealed segments
 *   scan.c     reading a segment file: the buffered reader, scan, salvage
 *   verdict.c  the one torn-vs-corrupt verdict (mf_wal_judge) and the walk
 *              over all segments that applies it, for replay and memflux-check
 *   replay.c   recovery: segments -> apply(), cutting an unsynced torn tail
 *   record.c   the record codec (pure)
 */
#ifndef MF_WAL_INT_H
#define MF_WAL_INT_H

#include "wal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>
#include <time.h>

enum { E_OP, E_ROTATE };

/* One queued request: the ticket of wal.h.  Lives on the submitter's stack
 * (or wherever its ticket is); the leader touches it only until it sets
 * `done`. */
typedef mf_wal_ticket wal_entry;

/*
 * LOCKING (the only statement of it; every lock of wal/ is here).
 *
 * Order, when nested: seg_mu -> fsync_mu -> mu.
 *   seg_mu    rotation's seal/rename vs mf_wal_drop_sealed's listing and
 *             unlinking (so a segment is never listed half-renamed).
 *             Held across I/O.
 *   fsync_mu  one fsync at a time; the active fd changes only under it (so
 *             the syncer never fsyncs a closed or reused fd).  Held across
 *             I/O.
 *   mu        the queue, counters and flags marked "under mu"; never held
 *             across I/O or apply().  Condition variables work_cv, done_cv
 *             and sync_cv all wait on mu.
 * Leadership (not a lock, a role): `leading` is set and cleared under mu by
 * the one thread that writes — a waiting submitter that found no leader
 * (writer.c), an fsync that writes an idle sync marker (sync.c), or close.
 * The fields marked "leader" belong to the leader alone: the next leader
 * sees them through mu (set/clear of `leading` happens under it).  apply()
 * and rotation callbacks run only on the leader, one at a time, in LSN
 * order (and during replay, before the WAL is open), so they need no lock
 * of ours.
 */
struct mf_wal {
	char *dir, *path;
	mf_io *io;
	mf_fsync_mode mode;
	unsigned interval_ms;
	size_t max_batch;
	mf_apply_fn apply;
	void *ctx;

	pthread_mutex_t seg_mu, fsync_mu, mu;
	pthread_cond_t work_cv;  /* leader in commit_delay: more writers queued */
	pthread_cond_t done_cv;  /* waiters: an entry finished, or the leader
	                            stepped down */
	pthread_cond_t sync_cv;  /* interval thread (CLOCK_MONOTONIC) */

	/* under mu (leading: written under mu, read without it only as a
	 * spin hint) */
	atomic_bool leading;     /* a thread is leading (writer.c) */
	atomic_uint spinners;    /* waiters spinning right now (lock-free hint) */
	wal_entry *head, *tail;
	bool closing, stop_syncer, read_only;
	bool mark_wanted;        /* an fsync completed (INTERVAL/NONE): the
	                            writer appends a sync marker once idle */
	uint64_t next_lsn;       /* next LSN to give out */
	uint64_t written_lsn;    /* last LSN in a successfully written batch */
	uint64_t synced_lsn;
	uint64_t bytes, sealed_bytes, records, batches, fsyncs;
	uint64_t queued;         /* E_OP entries in the queue */
	uint64_t prev_batch;     /* records in the last ALWAYS batch */
	uint64_t queued_after;   /* records that queued up during its fsync */
	uint64_t fsync_ns;       /* smoothed duration of one fsync */
	struct timespec dirty_since;  /* oldest unsynced write (monotonic) */

	/* leader (fd changes only under fsync_mu as well) */
	int fd;                  /* -1 after a failed segment creation */
	uint64_t salt;           /* of the active segment (FORMAT.md) */
	uint64_t end;            /* size of the active segment */
	bool seg_has_records;
	uint64_t seg_last_lsn;   /* last LSN in the active segment */
	uint64_t marked_lsn;     /* LSN the active segment's last sync marker
	                            vouches for (0: none) */
	uint8_t *bbuf;
	size_t bcap;
	struct iovec *iov;
	size_t iovcap;

	pthread_t syncer;
	bool has_syncer;
};

/* ---- sync.c ---- */
/* Turn read-only (once) and say why on stderr.  Caller holds mu. */
void wal_go_read_only(mf_wal *w, const char *what, int err);
/* fsync the active segment if anything written is not yet synced.  Takes
 * fsync_mu then mu.  0 or -EIO (read-only: before, or because of, this call). */
int wal_fsync(mf_wal *w);
/* Append a sync marker for the active segment if it is wholly synced;
 * `sync`: fsync the marker too.  The leader only (close is the last one). */
void wal_append_marker(mf_wal *w, bool sync);
/* The INTERVAL mode thread. */
void *wal_syncer_main(void *arg);

/* ---- segment.c ---- */
/* Create the active segment: header, fsync, dir fsync.  Caller holds
 * fsync_mu (the leader, or open).  0 or -errno (nothing left behind). */
int wal_create_segment(mf_wal *w);
/* Open the existing active segment (replay has cut any torn tail), or
 * create it.  open only. */
int wal_open_active(mf_wal *w);
/* Seal the active segment, start a new one, run e->cb; the leader, takes
 * seg_mu then fsync_mu. */
int wal_do_rotate(mf_wal *w, wal_entry *e);

/* ---- writer.c ---- */
/* Lead: caller holds mu and `leading` is false.  Works through the queue
 * until mine is done (NULL: until it is empty), writes a wanted idle sync
 * marker, steps down and wakes the waiters.  Returns with mu held. */
void wal_lead(mf_wal *w, wal_entry *mine);

#endif
