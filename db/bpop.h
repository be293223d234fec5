/*
 * bpop.h — blocking pops: consumers that wait for a list element (the
 * mount's /.ctl/bpop, RESP's BLPOP/BRPOP), served first come, first served.
 *
 * The pop itself is an ordinary LPOP/RPOP record (one apply function, one
 * WAL record per element, nothing logged while waiting: a pop of an empty
 * list is refused by the store's check before the log).  This module only
 * decides WHO may try WHEN:
 *   - waiters form one queue in arrival order; a waiter may try key K only
 *     if no earlier waiter also waits on K (fair FIFO per key);
 *   - every commit that may fill a list (RPUSH, LPUSH, SET or RENAME of a
 *     list) bumps a generation and wakes the waiters (mf_bpop_notify, from
 *     mf_db_commit_wait; nothing when nobody waits: one atomic load);
 *   - a waiter that found nothing sleeps only if the generation did not
 *     move since it looked, so no push is missed;
 *   - a waiter that leaves (popped, timed out, cancelled) wakes the rest:
 *     the next one in line may now try.
 * Cancellation (a FUSE INTERRUPT, a closing client) sets the waiter's flag
 * under the lock and wakes it; it then leaves without popping.
 *
 * Locking: mu guards the queue, gen and every waiter's fields; never held
 * across a commit (a waiter trying its pop is still queued, so later
 * waiters of that key keep waiting behind it).
 */
#ifndef MF_BPOP_H
#define MF_BPOP_H

#include "../store/op.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mf_bpop_waiter {
	struct mf_bpop_waiter *prev, *next;
	const mf_slice *keys;
	size_t nkeys;
	bool cancelled;
} mf_bpop_waiter;

typedef struct mf_bpop {
	pthread_mutex_t mu;
	pthread_cond_t cv;      /* CLOCK_MONOTONIC */
	mf_bpop_waiter *head, *tail;
	uint64_t gen;           /* bumped by every commit that may fill a list */
	atomic_size_t nwaiters; /* read without mu by notify */
} mf_bpop;

void mf_bpop_init(mf_bpop *b);
void mf_bpop_destroy(mf_bpop *b);
/* After a successful commit of op. */
void mf_bpop_notify(mf_bpop *b, const mf_op *op);

#endif
