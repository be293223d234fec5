/*
 * bpop.c — blocking pops: the waiter queue (bpop.h) and mf_db_bpop (db.h).
 */
#include "bpop.h"
#include "db.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void mf_bpop_init(mf_bpop *b)
{
	memset(b, 0, sizeof *b);
	pthread_mutex_init(&b->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cv, &ca);
	pthread_condattr_destroy(&ca);
}

void mf_bpop_destroy(mf_bpop *b)
{
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
}

static bool fills_list(const mf_op *op)
{
	if (op->type == MF_OP_MULTI)
		return true; /* may hold a push: waiters look again */
	return op->ktype == MF_T_LIST &&
	       (op->type == MF_OP_RPUSH || op->type == MF_OP_LPUSH || op->type == MF_OP_SET ||
	        op->type == MF_OP_RENAME);
}

void mf_bpop_notify(mf_bpop *b, const mf_op *op)
{
	/* The push is applied already: a waiter that registers after this
	 * load finds the element on its first try. */
	if (atomic_load(&b->nwaiters) == 0 || !fills_list(op))
		return;
	pthread_mutex_lock(&b->mu);
	b->gen++;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}

static bool same_key(mf_slice a, mf_slice b)
{
	return a.len == b.len && memcmp(mf_slice_ptr(a), mf_slice_ptr(b), a.len) == 0;
}

/* May w try key k now: no earlier waiter waits on it?  Caller holds mu. */
static bool first_for(const mf_bpop *b, const mf_bpop_waiter *w, mf_slice k)
{
	for (const mf_bpop_waiter *x = b->head; x && x != w; x = x->next)
		for (size_t i = 0; i < x->nkeys; i++)
			if (same_key(x->keys[i], k))
				return false;
	return true;
}

static void unlink_waiter(mf_bpop *b, mf_bpop_waiter *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		b->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		b->tail = w->prev;
	atomic_fetch_sub(&b->nwaiters, 1);
}

int mf_db_bpop(mf_db *db, const mf_slice *keys, size_t nkeys, bool left, int64_t timeout_ns,
               bool notify, mf_bpop_waiter *w, mf_op *out, size_t *which)
{
	mf_bpop *b = mf_db_bpop_state(db);
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	if (timeout_ns > 0) {
		int64_t ns = dl.tv_nsec + timeout_ns % 1000000000;
		dl.tv_sec += (time_t)(timeout_ns / 1000000000 + ns / 1000000000);
		dl.tv_nsec = (long)(ns % 1000000000);
	}
	w->keys = keys;
	w->nkeys = nkeys;
	w->next = NULL;
	pthread_mutex_lock(&b->mu);
	/* cancelled may already be set: a cancel before the wait began. */
	w->prev = b->tail;
	if (b->tail)
		b->tail->next = w;
	else
		b->head = w;
	b->tail = w;
	atomic_fetch_add(&b->nwaiters, 1);
	int r = -EAGAIN;
	while (r == -EAGAIN) {
		if (w->cancelled) {
			r = -EINTR;
			break;
		}
		uint64_t gen = b->gen;
		for (size_t i = 0; i < nkeys && r == -EAGAIN; i++) {
			if (!first_for(b, w, keys[i]))
				continue;
			pthread_mutex_unlock(&b->mu);
			mf_op op = {0};
			op.type = left ? MF_OP_LPOP : MF_OP_RPOP;
			op.ktype = MF_T_LIST;
			op.key = mf_slice_ref(keys[i]);
			op.arg = 1;
			int pr = notify ? mf_db_commit_notify(db, &op) : mf_db_commit(db, &op);
			pthread_mutex_lock(&b->mu);
			if (pr == 0 && op.out.len) {
				*out = op;
				*which = i;
				r = 0;
			} else {
				mf_op_clear(&op);
				/* Empty or absent (or not a list): wait for a push. */
				if (pr != 0 && pr != -ENODATA && pr != -ENOENT)
					r = pr;
			}
		}
		if (r != -EAGAIN || b->gen != gen)
			continue; /* done, or a push came while we looked: look again */
		if (timeout_ns == 0) {
			r = -ETIMEDOUT;
		} else if (timeout_ns < 0) {
			pthread_cond_wait(&b->cv, &b->mu);
		} else if (pthread_cond_timedwait(&b->cv, &b->mu, &dl) == ETIMEDOUT &&
		           b->gen == gen && !w->cancelled) {
			r = -ETIMEDOUT;
		}
	}
	unlink_waiter(b, w);
	pthread_cond_broadcast(&b->cv); /* the next in line may try now */
	pthread_mutex_unlock(&b->mu);
	return r;
}

void mf_db_bpop_cancel(mf_db *db, mf_bpop_waiter *w)
{
	mf_bpop *b = mf_db_bpop_state(db);
	pthread_mutex_lock(&b->mu);
	w->cancelled = true;
	pthread_cond_broadcast(&b->cv);
	pthread_mutex_unlock(&b->mu);
}
