/*
 * bpop.c — blocking pops on a remote keyspace (/.ctl/bpop, db/kv.h's bpop).
 *
 * First an ordinary pop (the apply script: LPOP/RPOP with the mtime stamp)
 * of each key in turn; if every list is empty, BLPOP/BRPOP on a connection
 * of its own (a pooled one would be held for as long as the wait), so the
 * server queues the waiter and serves waiters of a key in arrival order,
 * across every mount and client, as the embedded store does among its own.
 * The wait runs in slices of at most SLICE_MS: a server that went away is
 * noticed, and a cancellation that raced the BLPOP is seen at the next
 * slice.  Cancellation (the kernel's INTERRUPT) marks the waiter and sends
 * CLIENT UNBLOCK <id> ERROR for its connection, so the wait ends at once
 * without popping.  A key popped by BLPOP keeps its old mtime (the server
 * pops it, not our script).  In a cluster every key must be in one slot
 * (-EXDEV otherwise; the mount waits on one key).
 */
#include "remote_int.h"
#include "../io/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLICE_MS 1000

/* One non-blocking pop of keys[i] through the apply script.  0 (out
 * filled), -ENODATA/-ENOENT (nothing there), or an error. */
static int try_pop(mf_remote *r, const mf_slice *key, bool left, mf_op *out)
{
	mf_op op = {.type = left ? MF_OP_LPOP : MF_OP_RPOP, .ktype = MF_T_LIST, .arg = 1,
	            .key = mf_slice_ref(*key)};
	int e = rm_commit(r, &op);
	if (e == 0) {
		*out = op;
		return 0;
	}
	mf_op_clear(&op);
	return e;
}

static bool cancelled(mf_remote *r, mf_bpop_waiter *w)
{
	pthread_mutex_lock(&r->bpop_mu);
	bool c = w->cancelled;
	pthread_mutex_unlock(&r->bpop_mu);
	return c;
}

static void unregister(mf_remote *r, rm_bwait *b)
{
	pthread_mutex_lock(&r->bpop_mu);
	for (rm_bwait **pp = &r->bwaits; *pp; pp = &(*pp)->next)
		if (*pp == b) {
			*pp = b->next;
			break;
		}
	pthread_mutex_unlock(&r->bpop_mu);
}

/* One BLPOP slice on c.  1: popped (out, which filled); 0: nothing yet;
 * or -errno (-EINTR: unblocked by a cancel). */
static int slice(redisContext *c, const mf_slice *keys, size_t nkeys, bool left, unsigned ms,
                 mf_op *out, size_t *which)
{
	const char **argv = mf_xmalloc((nkeys + 2) * sizeof *argv);
	size_t *lens = mf_xmalloc((nkeys + 2) * sizeof *lens);
	char tbuf[32];
	argv[0] = left ? "BLPOP" : "BRPOP";
	lens[0] = 5;
	for (size_t i = 0; i < nkeys; i++) {
		argv[1 + i] = mf_slice_ptr(keys[i]);
		lens[1 + i] = keys[i].len;
	}
	argv[nkeys + 1] = tbuf;
	lens[nkeys + 1] = (size_t)snprintf(tbuf, sizeof tbuf, "%u.%03u", ms / 1000, ms % 1000);
	redisReply *rep = redisCommandArgv(c, (int)nkeys + 2, argv, lens);
	free(argv);
	free(lens);
	if (!rep)
		return -EIO;
	int e = 0;
	if (rep->type == REDIS_REPLY_ERROR)
		e = strncmp(rep->str, "UNBLOCKED", 9) == 0 ? -EINTR : -EIO;
	else if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2) {
		for (size_t i = 0; i < nkeys; i++)
			if (keys[i].len == rep->element[0]->len &&
			    memcmp(mf_slice_ptr(keys[i]), rep->element[0]->str, keys[i].len) == 0)
				*which = i;
		const redisReply *v = rep->element[1];
		*out = (mf_op){.type = left ? MF_OP_LPOP : MF_OP_RPOP, .ktype = MF_T_LIST, .arg = 1,
		               .key = mf_slice_ref(keys[*which])};
		out->out = mf_slice_alloc(v->len + 1, v->len + 1);
		memcpy(out->out.buf->data + out->out.off, v->str, v->len);
		out->out.buf->data[out->out.off + v->len] = '\n';
		e = 1;
	}
	freeReplyObject(rep);
	return e;
}

int rm_bpop(void *impl, const mf_slice *keys, size_t nkeys, bool left, int64_t timeout_ns,
            mf_bpop_waiter *w, mf_op *out, size_t *which)
{
	mf_remote *r = impl;
	*which = 0;
	for (size_t i = 0; i < nkeys; i++) {
		int e = try_pop(r, &keys[i], left, out);
		if (e == 0) {
			*which = i;
			return 0;
		}
		if (e != -ENODATA && e != -ENOENT)
			return e;
	}
	if (timeout_ns == 0)
		return -ETIMEDOUT;
	unsigned slot = rm_slot(mf_slice_ptr(keys[0]), keys[0].len);
	for (size_t i = 1; i < nkeys; i++)
		if (r->cluster && rm_slot(mf_slice_ptr(keys[i]), keys[i].len) != slot)
			return -EXDEV;
	int64_t deadline = timeout_ns > 0 ? rm_now_ns() + timeout_ns : INT64_MAX;
	int e = -ETIMEDOUT;
	while (!cancelled(r, w)) {
		int64_t left_ms = (deadline - rm_now_ns()) / 1000000;
		if (left_ms <= 0)
			break;
		pthread_mutex_lock(&r->map_mu);
		int idx = r->slots[slot];
		rm_node *n = r->nodes[idx];
		pthread_mutex_unlock(&r->map_mu);
		char err[256];
		redisContext *c = rm_dial(r, n, r->opts.timeout_ms, err, sizeof err);
		if (!c)
			return -EIO;
		/* The socket must outlast one slice. */
		struct timeval tv = {.tv_sec = (SLICE_MS + r->opts.timeout_ms) / 1000,
		                     .tv_usec = ((SLICE_MS + r->opts.timeout_ms) % 1000) * 1000};
		redisSetTimeout(c, tv);
		redisReply *id = redisCommand(c, "CLIENT ID");
		rm_bwait b = {w, id && id->type == REDIS_REPLY_INTEGER ? id->integer : -1, idx, NULL};
		if (id)
			freeReplyObject(id);
		pthread_mutex_lock(&r->bpop_mu);
		b.next = r->bwaits;
		r->bwaits = &b;
		bool stop = w->cancelled;
		pthread_mutex_unlock(&r->bpop_mu);
		e = -EINTR;
		while (!stop) {
			left_ms = (deadline - rm_now_ns()) / 1000000;
			if (left_ms <= 0) {
				e = -ETIMEDOUT;
				break;
			}
			e = slice(c, keys, nkeys, left, left_ms < SLICE_MS ? (unsigned)left_ms : SLICE_MS,
			          out, which);
			if (e != 0)
				break;
			stop = cancelled(r, w);
			e = -EINTR;
		}
		unregister(r, &b);
		redisFree(c);
		if (e == 1)
			return 0;
		if (e != -EIO)
			return e;
		/* The server went away mid-wait: fail like any other operation
		 * (the slot map is refreshed for the next try in a cluster). */
		rm_refresh_slots(r, false);
		return -EIO;
	}
	return cancelled(r, w) ? -EINTR : e;
}

void rm_bpop_cancel(void *impl, mf_bpop_waiter *w)
{
	mf_remote *r = impl;
	long long cid = -1;
	int node = 0;
	pthread_mutex_lock(&r->bpop_mu);
	w->cancelled = true;
	for (rm_bwait *b = r->bwaits; b; b = b->next)
		if (b->w == w) {
			cid = b->cid;
			node = b->node;
		}
	pthread_mutex_unlock(&r->bpop_mu);
	if (cid < 0)
		return; /* not blocked yet: it sees the flag before it blocks */
	char id[32];
	const char *argv[4] = {"CLIENT", "UNBLOCK", id, "ERROR"};
	size_t lens[4] = {6, 7, (size_t)snprintf(id, sizeof id, "%lld", cid), 5};
	redisReply *rep;
	if (rm_call(r, -1, node, RM_IDEMPOTENT, 4, argv, lens, &rep, NULL) == 0)
		freeReplyObject(rep);
}
