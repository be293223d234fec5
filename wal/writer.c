/*
 * writer.c — the writer queue and group commit, leader/follower style:
 * submitters queue entries (mf_wal_enqueue: the queue position is the LSN
 * order); a waiting submitter that finds no leader becomes the leader,
 * takes everything queued, assigns LSNs in queue order, writes the batch
 * with one pwritev, applies each op in LSN order and wakes the others.
 * Rotation requests ride the same queue, so they happen between batches.
 * Locking: wal_int.h.
 */
#include "wal_int.h"

#include "record.h"

#include "../io/clock.h"

#include <unistd.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void ensure_bbuf(mf_wal *w, size_t n)
{
	if (w->bcap < n) {
		size_t c = w->bcap ? w->bcap : 64 * 1024;
		while (c < n)
			c *= 2;
		free(w->bbuf);
		w->bbuf = mf_xmalloc(c);
		w->bcap = c;
	}
}

/* Values up to this size are copied into the batch buffer; bigger ones are
 * written from where they are (their own iovec). */
#define INLINE_VAL (32u * 1024)

/* Write one batch (ops in list order, LSNs assigned from lsn0).
 * 0, or -errno with the segment cut back to its pre-batch size. */
static int write_batch(mf_wal *w, wal_entry *first, uint64_t lsn0)
{
	int r = 0;
	if (w->fd < 0) {
		pthread_mutex_lock(&w->fsync_mu);
		r = wal_create_segment(w);
		pthread_mutex_unlock(&w->fsync_mu);
		if (r < 0)
			return r;
		pthread_mutex_lock(&w->mu);
		w->bytes = w->end;
		pthread_mutex_unlock(&w->mu);
	}
	/* Every record says how far the log was durable when it was written:
	 * recovery's horizon (FORMAT.md, "Recovery"). */
	pthread_mutex_lock(&w->mu);
	mf_wal_rec_place at = {.salt = w->salt, .off = w->end, .durable = w->synced_lsn};
	pthread_mutex_unlock(&w->mu);
	size_t need = 0, niov = 0, n = 0;
	for (wal_entry *e = first; e; e = e->next) {
		e->op->lsn = lsn0 + n++;
		need += mf_wal_record_head_size(e->op);
		if (e->op->val.len <= INLINE_VAL)
			need += e->op->val.len;
		else
			niov += 2;
	}
	niov += 1 + n; /* upper bound on contiguous runs */
	ensure_bbuf(w, need);
	if (w->iovcap < niov) {
		free(w->iov);
		w->iov = mf_xmalloc(niov * sizeof *w->iov);
		w->iovcap = niov;
	}
	size_t pos = 0, run = 0, cnt = 0, total = 0;
	for (wal_entry *e = first; e; e = e->next) {
		mf_op *op = e->op;
		mf_wal_record_encode_head(op, &at, w->bbuf + pos);
		at.off += e->size;
		pos += mf_wal_record_head_size(op);
		if (op->val.len <= INLINE_VAL) {
			if (op->val.len)
				memcpy(w->bbuf + pos, mf_slice_ptr(op->val), op->val.len);
			pos += op->val.len;
		} else {
			w->iov[cnt++] = (struct iovec){w->bbuf + run, pos - run};
			w->iov[cnt++] = (struct iovec){(void *)mf_slice_ptr(op->val), op->val.len};
			run = pos;
		}
		total += e->size;
	}
	if (pos > run)
		w->iov[cnt++] = (struct iovec){w->bbuf + run, pos - run};

	r = mf_io_pwritev_all(w->io, w->fd, w->iov, (int)cnt, (off_t)w->end);
	if (r < 0) {
		/* Leave nothing torn (and no complete-but-refused record) behind:
		 * cut back and make the cut durable.  If even that fails, the file
		 * can no longer be trusted to end where we think: stop writing. */
		int t = mf_io_cut(w->io, w->fd, (off_t)w->end);
		if (t < 0) {
			pthread_mutex_lock(&w->mu);
			wal_go_read_only(w, "truncate after failed write", t);
			pthread_mutex_unlock(&w->mu);
		}
		return r;
	}
	w->end += total;
	w->seg_has_records = true;
	w->seg_last_lsn = lsn0 + n - 1;

	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&w->mu);
	bool was_clean = w->synced_lsn >= w->written_lsn;
	if (was_clean)
		w->dirty_since = now;
	w->written_lsn = lsn0 + n - 1;
	w->bytes = w->end;
	w->records += n;
	w->batches++;
	/* Wake the syncer only when the file goes from clean to dirty: it
	 * then sleeps until its deadline, so later batches need no wake-up
	 * (a signal per batch would cost a context switch per mutation). */
	if (w->mode == MF_FSYNC_INTERVAL && was_clean)
		pthread_cond_signal(&w->sync_cv);
	pthread_mutex_unlock(&w->mu);

	if (w->mode == MF_FSYNC_ALWAYS)
		return wal_fsync(w);
	return 0;
}

#define SUBMIT_SPIN_NS 100000  /* 100 us */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* How many waiters may spin at once: all CPUs but the leader's. */
static unsigned spin_budget(void)
{
	static atomic_uint budget; /* 0: not computed yet (a benign race) */
	unsigned b = atomic_load_explicit(&budget, memory_order_relaxed);
	if (!b) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		b = n > 1 ? (unsigned)n - 1 : 1;
		atomic_store_explicit(&budget, b, memory_order_relaxed);
	}
	return b;
}

/* Spin up to ns while e is not done and another thread leads. */
static void spin_while_led(mf_wal *w, wal_entry *e, uint64_t ns)
{
	uint64_t end = mf_mono_ns() + ns;
	for (unsigned i = 0; !atomic_load_explicit(&e->done, memory_order_acquire) &&
	                     atomic_load_explicit(&w->leading, memory_order_relaxed);
	     i++) {
		cpu_relax();
		if ((i & 63) == 63 && mf_mono_ns() > end)
			return;
	}
}

/*
 * Group commit in ALWAYS mode waits for an fsync per batch; the writers it
 * wakes come back with their next record a FUSE round trip or two later,
 * just after the next (small) batch has started its fsync.  So when the last
 * batch showed concurrency, wait a little (at most half an fsync, as
 * PostgreSQL's commit_delay does) for every writer seen active then: one
 * fsync serves them all.  Caller holds w->mu and leads.
 */
static void commit_delay(mf_wal *w)
{
	uint64_t delay = w->fsync_ns / 2;
	if (delay > 2000000)
		delay = 2000000;
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	mf_ts_add_ns(&dl, delay);
	/* Active writers: those the last batch served plus those that queued
	 * while it was being fsynced. */
	uint64_t want = w->prev_batch + w->queued_after;
	while (w->queued < want && !w->closing)
		if (pthread_cond_timedwait(&w->work_cv, &w->mu, &dl) != 0)
			break;
}

/* Take the rotation at the head of the queue and do it.  mu held (dropped
 * around the I/O); caller leads. */
static void lead_rotation(mf_wal *w)
{
	wal_entry *e = w->head;
	w->head = e->next;
	if (!w->head)
		w->tail = NULL;
	pthread_mutex_unlock(&w->mu);
	int r = wal_do_rotate(w, e);
	pthread_mutex_lock(&w->mu);
	e->result = r;
	atomic_store_explicit(&e->done, true, memory_order_release);
	pthread_cond_broadcast(&w->done_cv);
}

/* Take one batch from the head of the queue (ops up to max_batch bytes, at
 * least one), write it, apply it in LSN order, wake its submitters.  mu
 * held (dropped around the I/O and apply); caller leads. */
static void lead_batch(mf_wal *w)
{
	if (w->mode == MF_FSYNC_ALWAYS && w->prev_batch > 1)
		commit_delay(w);
	wal_entry *first = w->head, *last = first;
	size_t total = first->size, n = 1;
	while (last->next && last->next->kind == E_OP &&
	       total + last->next->size <= w->max_batch) {
		last = last->next;
		total += last->size;
		n++;
	}
	w->head = last->next;
	if (!w->head)
		w->tail = NULL;
	last->next = NULL;
	w->queued -= n;
	w->prev_batch = n;
	bool ro = w->read_only;
	uint64_t lsn0 = w->next_lsn;
	if (!ro)
		w->next_lsn += n;  /* given back if the write fails */
	pthread_mutex_unlock(&w->mu);

	int r = ro ? -EIO : write_batch(w, first, lsn0);
	if (r < 0 && !ro) {
		/* The batch was cut off the file (or the WAL went read-only):
		 * its LSNs are free again, so the log stays contiguous, which
		 * recovery checks to detect lost records. */
		pthread_mutex_lock(&w->mu);
		w->next_lsn = lsn0;
		pthread_mutex_unlock(&w->mu);
	}
	for (wal_entry *e = first; e; e = e->next)
		e->result = r == 0 ? w->apply(w->ctx, e->op) : r;

	pthread_mutex_lock(&w->mu);
	w->queued_after = w->queued;
	for (wal_entry *e = first, *nx; e; e = nx) {
		nx = e->next;  /* e lives on its submitter's stack */
		atomic_store_explicit(&e->done, true, memory_order_release);
	}
	pthread_cond_broadcast(&w->done_cv);
}

/*
 * Lead: the caller holds mu, no one else leads, and the queue is not empty.
 * Work through the queue in order until `mine` is done (mine NULL: until
 * the queue is empty), then write a sync marker if one is wanted and the
 * log is idle, and step down.  If entries remain, the waiters are woken and
 * one of them leads next (LevelDB's DBImpl::Write: the writer at the front
 * writes for the group; there is no hand-off to a dedicated thread).
 */
void wal_lead(mf_wal *w, wal_entry *mine)
{
	atomic_store_explicit(&w->leading, true, memory_order_relaxed);
	while (mine ? !atomic_load_explicit(&mine->done, memory_order_relaxed) : w->head != NULL) {
		if (w->head->kind == E_ROTATE)
			lead_rotation(w);
		else
			lead_batch(w);
	}
	if (w->mark_wanted && !w->head) {
		w->mark_wanted = false;
		pthread_mutex_unlock(&w->mu);
		wal_append_marker(w, false);
		pthread_mutex_lock(&w->mu);
	}
	atomic_store_explicit(&w->leading, false, memory_order_relaxed);
	/* Whoever waits now either leads next (entries remain) or is close,
	 * waiting for the leader to be gone. */
	pthread_cond_broadcast(&w->done_cv);
}

/* Queue e; its position, and so its LSN order, is fixed on return. */
static int enqueue(mf_wal *w, wal_entry *e)
{
	pthread_mutex_lock(&w->mu);
	int r = w->read_only ? -EIO : w->closing ? -ESHUTDOWN : 0;
	if (r == 0) {
		if (w->tail)
			w->tail->next = e;
		else
			w->head = e;
		w->tail = e;
		if (e->kind == E_OP)
			w->queued++;
		/* A leader in commit_delay waits for more writers. */
		pthread_cond_signal(&w->work_cv);
	}
	pthread_mutex_unlock(&w->mu);
	return r;
}

/* Until e is done: lead whenever no one does, else wait for the leader. */
static int wait_done(mf_wal *w, wal_entry *e)
{
	pthread_mutex_lock(&w->mu);
	for (;;) {
		if (atomic_load_explicit(&e->done, memory_order_acquire))
			break;
		if (!atomic_load_explicit(&w->leading, memory_order_relaxed)) {
			wal_lead(w, e);
			continue;
		}
		/* A leader usually finishes a record in a few microseconds, less
		 * than it takes to put this thread to sleep and wake it again on
		 * these machines (~10-15 us each way): spin briefly first.  But
		 * only while a CPU is left for the leader: with more spinners
		 * than CPUs (many RESP workers or FUSE threads waiting on 2 CPUs)
		 * spinning steals the leader's time; measured with 50 RESP
		 * clients, `always` -P 16 SETs doubled without the spin. */
		pthread_mutex_unlock(&w->mu);
		if (atomic_fetch_add_explicit(&w->spinners, 1, memory_order_relaxed) < spin_budget())
			spin_while_led(w, e, SUBMIT_SPIN_NS);
		atomic_fetch_sub_explicit(&w->spinners, 1, memory_order_relaxed);
		pthread_mutex_lock(&w->mu);
		while (!atomic_load_explicit(&e->done, memory_order_acquire) &&
		       atomic_load_explicit(&w->leading, memory_order_relaxed))
			pthread_cond_wait(&w->done_cv, &w->mu);
	}
	int r = e->result;
	pthread_mutex_unlock(&w->mu);
	return r;
}

int mf_wal_enqueue(mf_wal *w, mf_op *op, mf_wal_ticket *t)
{
	memset(t, 0, sizeof *t);
	int r = mf_wal_record_validate(op);
	if (r < 0)
		return r;
	t->kind = E_OP;
	t->op = op;
	t->size = mf_wal_record_size(op);
	return enqueue(w, t);
}

int mf_wal_wait(mf_wal *w, mf_wal_ticket *t)
{
	return wait_done(w, t);
}

int mf_wal_submit(mf_wal *w, mf_op *op)
{
	mf_wal_ticket t;
	int r = mf_wal_enqueue(w, op, &t);
	return r < 0 ? r : mf_wal_wait(w, &t);
}

int mf_wal_sync(mf_wal *w)
{
	return wal_fsync(w);
}

int mf_wal_rotate(mf_wal *w, mf_rotate_cb cb, void *ctx, uint64_t *last_lsn)
{
	wal_entry e = {.kind = E_ROTATE, .cb = cb, .cbctx = ctx};
	int r = enqueue(w, &e);
	if (r == 0)
		r = wait_done(w, &e);
	if (r == 0 && last_lsn)
		*last_lsn = e.last_lsn;
	return r;
}
