/*
 * cmd_list.c — Redis lists (/lists keys, one element per line): LPUSH
 * RPUSH LPOP RPOP LLEN LRANGE LINDEX, and the blocking pops BLPOP BRPOP
 * (db/bpop.h).
 */
#include "cmd_int.h"
#include "../store/set.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* ---------- lists ---------- */

/* LPUSH/RPUSH's op: the elements as one block of lines, in the order they
 * end up in: RPUSH a b c appends "a\nb\nc\n", LPUSH a b c prepends
 * "c\nb\na\n". */
mf_op rc_push_op(const req *r, bool left)
{
	size_t total = 0;
	for (int i = 2; i < r->argc; i++)
		total += r->argl[i] + 1;
	mf_slice v = mf_slice_alloc(0, total);
	for (int k = 2; k < r->argc; k++) {
		int i = left ? r->argc + 1 - k : k;
		mf_slice_append(&v, r->argv[i], r->argl[i]);
		mf_slice_append(&v, "\n", 1);
	}
	mf_op op = rc_kop(left ? MF_OP_LPUSH : MF_OP_RPUSH, MF_T_LIST, r->argv[1], r->argl[1]);
	op.val = v;
	return op;
}

static void do_push(resp_ctx *x, client *c, req *r, bool left)
{
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	for (int i = 2; i < r->argc; i++) {
		if (memchr(r->argv[i], '\n', r->argl[i])) {
			r_err(c, E_NEWLINE);
			return;
		}
	}
	lockset m = rc_lock_shared(x, r, 1, 1, 1);
	mf_op op = rc_push_op(r, left);
	int rc = rc_commit(x, &op);
	rc_unlock_set(x, m);
	r_int_result(c, rc, (long long)op.res); /* the length apply left */
}

void c_lpush(resp_ctx *x, client *c, req *r)
{
	do_push(x, c, r, true);
}

void c_rpush(resp_ctx *x, client *c, req *r)
{
	do_push(x, c, r, false);
}

static void do_pop_locked(resp_ctx *x, client *c, req *r, bool left);
static void pop_reply(client *c, const mf_op *op, bool left, bool with_count);

/* Under the key's shared lock: excludes read-modify-write commands; the
 * empty-list delete is conditional (DEL arg 1), so pops and pushes on one
 * list may run at once. */
static void do_pop(resp_ctx *x, client *c, req *r, bool left)
{
	if (r->argc > 3) {
		r_err(c, left ? "ERR wrong number of arguments for 'lpop' command"
		               : "ERR wrong number of arguments for 'rpop' command");
		return;
	}
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = rc_lock_shared(x, r, 1, 1, 1);
	do_pop_locked(x, c, r, left);
	rc_unlock_set(x, m);
}

/* A successful pop's reply from op->out (the popped lines in list order). */
static void pop_reply(client *c, const mf_op *op, bool left, bool with_count)
{
	const char *p = mf_slice_ptr(op->out);
	size_t n = op->out.len;
	size_t k = (size_t)mf_count_lines(p, n);
	if (with_count)
		r_arr(c, k);
	if (left) {
		for (size_t i = 0; i < n;) {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t l = (size_t)(nl - (p + i));
			r_bulk(c, p + i, l);
			i += l + 1;
		}
	} else {
		/* RPOP returns the tail first. */
		size_t end = n;
		while (end > 0) {
			const char *nl = end >= 2 ? memrchr(p, '\n', end - 1) : NULL;
			size_t start = nl ? (size_t)(nl - p) + 1 : 0;
			r_bulk(c, p + start, end - 1 - start);
			end = start;
		}
	}
}

/* A pop's reply for its commit's result rc (0: the popped lines are in
 * op->out). */
void rc_pop_result(client *c, const mf_op *op, int rc, bool left, bool with_count)
{
	if (rc == -ENODATA || rc == -ENOENT) {
		/* emptied/deleted meanwhile (or by an earlier pop of a batch) */
		if (with_count)
			r_nil_arr(c);
		else
			r_nil(c);
	} else if (rc) {
		r_errno(c, rc);
	} else {
		pop_reply(c, op, left, with_count);
	}
}

/* Redis has no empty lists: a pop that empties one deletes it.  A
 * conditional DEL (arg 1), so a push through the mount in between wins. */
static void drop_key_if_empty(resp_ctx *x, const char *k, size_t n)
{
	mf_entry_info after;
	if (mf_store_get(x->st, k, n, false, &after) == 0 && after.type == MF_T_LIST &&
	    after.size == 0) {
		mf_op d = rc_kop(MF_OP_DEL, MF_T_LIST, k, n);
		d.arg = 1;
		rc_commit(x, &d); /* ENOTEMPTY/ENOENT: someone else was first */
	}
}

void rc_drop_if_empty(resp_ctx *x, const req *r)
{
	drop_key_if_empty(x, r->argv[1], r->argl[1]);
}

static void do_pop_locked(resp_ctx *x, client *c, req *r, bool left)
{
	long long count = 1;
	bool with_count = r->argc == 3; /* do_pop checked argc and the key */
	if (with_count) {
		if (!rc_parse_ll(r->argv[2], r->argl[2], &count) || count < 0) {
			r_err(c, "ERR value is out of range, must be positive");
			return;
		}
	}
	mf_entry_info e;
	if (!rc_kget_as(x, c, r, MF_T_LIST, false, with_count ? r_nil_arr : r_nil, &e))
		return;
	if (with_count && count == 0) {
		r_arr(c, 0);
		return;
	}
	mf_op op = rc_kop(left ? MF_OP_LPOP : MF_OP_RPOP, MF_T_LIST, r->argv[1], r->argl[1]);
	op.arg = (uint64_t)count;
	int rc = mf_db_commit_notify(x->db, &op);
	if (rc == 0)
		rc_drop_if_empty(x, r);
	rc_pop_result(c, &op, rc, left, with_count);
	mf_op_clear(&op);
}

/* BLPOP/BRPOP key [key ...] timeout: the first non-empty list of the keys
 * (in order) pops at once; else the client waits, first come first served
 * among the waiters of a key (db/bpop.h), holding its worker thread; its
 * connection closing cancels the wait (nothing popped).  Not under a
 * stripe lock: a pop is a blind op, and a waiter must not hold up the
 * key's read-modify-write commands. */
static void do_bpop(resp_ctx *x, client *c, req *r, bool left)
{
	if (!rc_keys_ok(c, r, 1, -2, 1))
		return;
	/* Redis's getTimeoutFromObjectOrReply: a long double of seconds, cut
	 * to whole ms (so 0.0001 is 0: wait forever); too large to fit wraps
	 * negative on x86, hence its "negative" reply for 1e400. */
	long double secs;
	bool nl;
	if (mf_num_parse_ld(r->argv[r->argc - 1], r->argl[r->argc - 1], &secs, &nl) != 0 || nl) {
		r_err(c, "ERR timeout is not a float or out of range");
		return;
	}
	long double msd = secs * 1000.0L;
	if (!(msd >= 0) || msd >= (long double)LLONG_MAX) {
		r_err(c, "ERR timeout is negative");
		return;
	}
	long long ms = (long long)msd;
	int nkeys = r->argc - 2;
	/* Redis: a key of another type is an error when reached in order
	 * before a list with elements. */
	for (int i = 1; i <= nkeys; i++) {
		mf_entry_info e;
		if (rc_kget(x, r, i, false, &e) != 0)
			continue;
		if (e.type != MF_T_LIST) {
			r_err(c, E_WRONGTYPE);
			return;
		}
		if (e.count)
			break;
	}
	/* Keep workers for everyone else: a waiter holds one. */
	bool may_wait = atomic_fetch_add(&x->nblocked, 1) < MF_RESP_WORKERS - 8;
	mf_slice *keys = mf_xmalloc((size_t)nkeys * sizeof *keys);
	for (int i = 0; i < nkeys; i++)
		keys[i] = mf_slice_from(r->argv[i + 1], r->argl[i + 1], r->argl[i + 1]);
	int64_t tns = ms == 0 ? -1 : ms > (long long)1e12 ? (int64_t)1e18 : (int64_t)ms * 1000000;
	mf_op op = {0};
	size_t which = 0;
	int rc = mf_db_bpop(x->db, keys, (size_t)nkeys, left, may_wait ? tns : 0, true, &c->bw, &op,
	                    &which);
	atomic_fetch_sub(&x->nblocked, 1);
	if (rc == -ETIMEDOUT && !may_wait) {
		r_err(c, "ERR memfluxfs: too many clients blocked in BLPOP/BRPOP");
	} else if (rc == -ETIMEDOUT || rc == -EINTR) {
		r_nil_arr(c);
	} else if (rc) {
		r_errno(c, rc);
	} else {
		mf_slice k = keys[which];
		drop_key_if_empty(x, mf_slice_ptr(k), k.len); /* Redis has no empty lists */
		r_arr(c, 2);
		r_bulk(c, mf_slice_ptr(k), k.len);
		r_bulk(c, mf_slice_ptr(op.out), op.out.len - 1); /* the line without '\n' */
	}
	mf_op_clear(&op);
	for (int i = 0; i < nkeys; i++)
		mf_slice_unref(&keys[i]);
	free(keys);
}

void c_blpop(resp_ctx *x, client *c, req *r)
{
	do_bpop(x, c, r, true);
}

void c_brpop(resp_ctx *x, client *c, req *r)
{
	do_bpop(x, c, r, false);
}

void c_lpop(resp_ctx *x, client *c, req *r)
{
	do_pop(x, c, r, true);
}

void c_rpop(resp_ctx *x, client *c, req *r)
{
	do_pop(x, c, r, false);
}

void c_llen(resp_ctx *x, client *c, req *r)
{
	rc_key_len(x, c, r, MF_T_LIST);
}

void c_lrange(resp_ctx *x, client *c, req *r)
{
	long long start, stop;
	mf_entry_info e;
	if (!rc_range_args(x, c, r, MF_T_LIST, r_empty_arr, &start, &stop, &e))
		return;
	long long len = (long long)e.count;
	if (start < 0)
		start += len;
	if (stop < 0)
		stop += len;
	if (start < 0)
		start = 0;
	if (start > stop || start >= len) {
		r_arr(c, 0);
		mf_slice_unref(&e.val);
		return;
	}
	if (stop >= len)
		stop = len - 1;
	r_arr(c, (size_t)(stop - start + 1));
	const char *p = mf_slice_ptr(e.val);
	size_t n = e.val.len, i = 0;
	for (long long k = 0; k <= stop && i < n; k++) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t l = (size_t)(nl - (p + i));
		if (k >= start)
			r_bulk(c, p + i, l);
		i += l + 1;
	}
	mf_slice_unref(&e.val);
}

void c_lindex(resp_ctx *x, client *c, req *r)
{
	long long idx;
	if (!rc_arg_ll(c, r, 2, &idx))
		return;
	mf_entry_info e;
	if (!rc_kget_as(x, c, r, MF_T_LIST, true, r_nil, &e))
		return;
	long long len = (long long)e.count;
	if (idx < 0)
		idx += len;
	if (idx < 0 || idx >= len) {
		r_nil(c);
		mf_slice_unref(&e.val);
		return;
	}
	const char *p = mf_slice_ptr(e.val);
	size_t n = e.val.len, i = 0;
	for (long long k = 0; i < n; k++) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t l = (size_t)(nl - (p + i));
		if (k == idx) {
			r_bulk(c, p + i, l);
			break;
		}
		i += l + 1;
	}
	mf_slice_unref(&e.val);
}
