/*
 * cmd_string.c — Redis strings (/kv keys): GET SET MGET MSET APPEND STRLEN
 * GETRANGE SETRANGE, and the counters INCR DECR INCRBY DECRBY
 * INCRBYFLOAT (one INCRBY/INCRBYFLOAT record each: atomic in the store).
 */
#include "cmd_int.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#define E_OVERFLOW "ERR increment or decrement would overflow"
#define E_NOTFLOAT "ERR value is not a valid float"

/* ---------- strings ---------- */

void c_get(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	if (!rc_kget_as(x, c, r, MF_T_STRING, true, r_nil, &e))
		return;
	r_bulk(c, mf_slice_ptr(e.val), e.val.len);
	mf_slice_unref(&e.val);
}

/* SET's write once decided: over a key of type `type` (MF_T_NONE: none),
 * with the expiry `when` (0: none).  With one, the SET (over any type) and
 * its EXPIRE are one MULTI record: the key is never without its expiry,
 * even across a crash; without, a type change is a DEL then the SET. */
static int set_with_expiry(resp_ctx *x, const req *r, uint8_t type, int64_t when)
{
	int rc = 0;
	if (when) {
		mf_op sub[2] = {rc_kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]),
		                rc_kop(MF_OP_EXPIRE, MF_T_NONE, r->argv[1], r->argl[1])};
		sub[0].val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		sub[0].arg = 1;
		sub[1].arg = (uint64_t)when;
		mf_op op = {0};
		op.type = MF_OP_MULTI;
		op.val = mf_multi_encode(sub, 2);
		mf_op_clear(&sub[0]);
		mf_op_clear(&sub[1]);
		rc = mf_db_commit_notify(x->db, &op);
		if (rc == 0 && op.sub[0].rc)
			rc = op.sub[0].rc;
		mf_op_clear(&op);
		return rc;
	}
	if (type != MF_T_NONE && type != MF_T_STRING)
		rc = rc_del_key(x, r->argv[1], r->argl[1]);
	if (rc == 0) {
		mf_op op = rc_kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]);
		op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		rc = rc_commit(x, &op);
	}
	return rc;
}

/* SET: a blind SET under the key's shared lock; with NX/XX/GET, or over
 * a key of another type, read-decide-write under its exclusive lock. */
void c_set(resp_ctx *x, client *c, req *r)
{
	bool nx = false, xx = false, get = false, keepttl = false;
	int64_t when = 0; /* EX/PX/EXAT/PXAT: absolute ns */
	int nexp = 0;
	for (int i = 3; i < r->argc; i++) {
		if (rc_argis(r, i, "nx") && !xx) {
			nx = true;
		} else if (rc_argis(r, i, "xx") && !nx) {
			xx = true;
		} else if (rc_argis(r, i, "get")) {
			get = true;
		} else if (rc_argis(r, i, "keepttl") && !nexp) {
			keepttl = true;
		} else if ((rc_argis(r, i, "ex") || rc_argis(r, i, "px") || rc_argis(r, i, "exat") ||
		            rc_argis(r, i, "pxat")) && i + 1 < r->argc && !keepttl && !nexp) {
			nexp++;
			bool ms = rc_argis(r, i, "px") || rc_argis(r, i, "pxat");
			bool at = rc_argis(r, i, "exat") || rc_argis(r, i, "pxat");
			i++;
			if (!(when = rc_expire_arg(c, r, i, ms, at, true, "set")))
				return;
		} else {
			r_err(c, E_SYNTAX);
			return;
		}
	}
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	if (!nx && !xx && !get && !when && !keepttl) {
		/* Blind: one SET op, unless the key has another type. */
		lockset m = rc_lock_shared(x, r, 1, 1, 1);
		mf_op op = rc_kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]);
		op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		int rc = rc_commit(x, &op);
		rc_unlock_set(x, m);
		if (rc != -EEXIST) {
			r_ok_or_errno(c, rc);
			return;
		}
	}
	lockset m = rc_lock_args(x, r, 1, 1, 1);
	mf_entry_info e;
	bool exists = rc_kget(x, r, 1, get, &e) == 0;
	if (get && exists && e.type != MF_T_STRING) {
		r_err(c, E_WRONGTYPE);
		goto out;
	}
	if ((nx && exists) || (xx && !exists)) {
		if (get && exists)
			r_bulk(c, mf_slice_ptr(e.val), e.val.len);
		else
			r_nil(c);
		goto out;
	}
	int rc = set_with_expiry(x, r, exists ? e.type : MF_T_NONE,
	                         keepttl && exists ? e.expire_ns : when);
	if (rc)
		r_errno(c, rc);
	else if (!get)
		r_ok(c);
	else if (exists)
		r_bulk(c, mf_slice_ptr(e.val), e.val.len);
	else
		r_nil(c);
out:
	if (exists)
		mf_slice_unref(&e.val);
	rc_unlock_set(x, m);
}

void c_mget(resp_ctx *x, client *c, req *r)
{
	r_arr(c, (size_t)r->argc - 1);
	for (int i = 1; i < r->argc; i++) {
		mf_entry_info e;
		if (rc_kget(x, r, i, true, &e) == 0 && e.type == MF_T_STRING)
			r_bulk(c, mf_slice_ptr(e.val), e.val.len);
		else
			r_nil(c);
		mf_slice_unref(&e.val);
	}
}

void c_mset(resp_ctx *x, client *c, req *r)
{
	if (r->argc % 2 == 0) {
		r_err(c, "ERR wrong number of arguments for 'mset' command");
		return;
	}
	if (!rc_keys_ok(c, r, 1, -1, 2))
		return;
	lockset m = rc_lock_args(x, r, 1, -1, 2);
	int rc = 0;
	for (int i = 1; i + 1 < r->argc && rc == 0; i += 2) {
		mf_entry_info e;
		if (rc_kget(x, r, i, false, &e) == 0 && e.type != MF_T_STRING)
			rc = rc_del_key(x, r->argv[i], r->argl[i]);
		if (rc)
			break;
		mf_op op = rc_kop(MF_OP_SET, MF_T_STRING, r->argv[i], r->argl[i]);
		op.val = mf_slice_from(r->argv[i + 1], r->argl[i + 1], r->argl[i + 1]);
		rc = rc_commit(x, &op);
	}
	rc_unlock_set(x, m);
	r_ok_or_errno(c, rc);
}

void c_append(resp_ctx *x, client *c, req *r)
{
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = rc_lock_shared(x, r, 1, 1, 1);
	mf_entry_info e;
	uint64_t cur = 0;
	bool exists = rc_kget(x, r, 1, false, &e) == 0;
	if (exists && e.type != MF_T_STRING) {
		r_err(c, E_WRONGTYPE);
		goto out;
	}
	cur = exists ? e.size : 0;
	/* APPEND k "" creates an empty string, changes nothing else. */
	mf_op op = rc_kop(r->argl[2] ? MF_OP_APPEND : MF_OP_CREATE, MF_T_STRING, r->argv[1], r->argl[1]);
	op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	int rc = exists && !r->argl[2] ? 0 : rc_commit(x, &op);
	mf_op_clear(&op);
	r_int_result(c, rc, (long long)(r->argl[2] ? op.res : cur));
out:
	rc_unlock_set(x, m);
}

void c_strlen(resp_ctx *x, client *c, req *r)
{
	rc_key_len(x, c, r, MF_T_STRING);
}

void c_getrange(resp_ctx *x, client *c, req *r)
{
	long long start, end;
	mf_entry_info e;
	if (!rc_range_args(x, c, r, MF_T_STRING, r_empty_bulk, &start, &end, &e))
		return;
	long long len = (long long)e.val.len;
	/* Redis: negative counts from the end; a negative start past the
	 * beginning is 0; an empty result when start > end. */
	if (start < 0 && end < 0 && start > end) {
		r_bulk(c, "", 0);
		mf_slice_unref(&e.val);
		return;
	}
	if (start < 0)
		start += len;
	if (end < 0)
		end += len;
	if (start < 0)
		start = 0;
	if (end < 0)
		end = 0;
	if (end >= len)
		end = len - 1;
	if (start > end || len == 0)
		r_bulk(c, "", 0);
	else
		r_bulk(c, mf_slice_ptr(e.val) + start, (size_t)(end - start + 1));
	mf_slice_unref(&e.val);
}

void c_setrange(resp_ctx *x, client *c, req *r)
{
	long long off;
	if (!rc_arg_ll(c, r, 2, &off))
		return;
	if (off < 0) {
		r_err(c, "ERR offset is out of range");
		return;
	}
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = rc_lock_shared(x, r, 1, 1, 1);
	mf_entry_info e;
	bool exists = rc_kget(x, r, 1, false, &e) == 0;
	if (exists && e.type != MF_T_STRING) {
		r_err(c, E_WRONGTYPE);
		goto out;
	}
	uint64_t cur = exists ? e.size : 0;
	if (r->argl[3] == 0) {
		/* Nothing to write: Redis creates nothing and changes nothing. */
		r_int(c, (long long)cur);
		goto out;
	}
	if ((uint64_t)off + r->argl[3] > 512ull * 1024 * 1024) {
		r_err(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
		goto out;
	}
	mf_op op = rc_kop(MF_OP_SETRANGE, MF_T_STRING, r->argv[1], r->argl[1]);
	op.arg = (uint64_t)off;
	op.val = mf_slice_from(r->argv[3], r->argl[3], r->argl[3]);
	int rc = rc_commit(x, &op);
	r_int_result(c, rc, (long long)op.res);
out:
	rc_unlock_set(x, m);
}

/* ---------- counters (INCRBY / INCRBYFLOAT records: atomic in the store) */


/* An INCRBY (res: the new value) or INCRBYFLOAT (out: the new value as
 * text) record's reply for its result rc, live or in EXEC. */
void rc_incr_reply(client *c, bool is_float, int rc, uint64_t res, mf_slice out)
{
	if (rc == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else if (rc == -EINVAL)
		r_err(c, is_float ? E_NOTFLOAT : E_NOTINT);
	else if (rc == -ERANGE)
		r_err(c, is_float ? "ERR increment would produce NaN or Infinity" : E_OVERFLOW);
	else if (rc)
		r_errno(c, rc);
	else if (is_float)
		r_bulk(c, mf_slice_ptr(out), out.len);
	else
		r_int(c, (long long)res);
}

/* INCR/DECR/INCRBY/DECRBY: one INCRBY record; the store says whether the
 * value is an integer and whether the sum fits (so a writer through the
 * mount cannot slip in between a read and a write here). */
static void do_incrby(resp_ctx *x, client *c, req *r, long long d)
{
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = rc_lock_shared(x, r, 1, 1, 1);
	mf_op op = rc_kop(MF_OP_INCRBY, MF_T_STRING, r->argv[1], r->argl[1]);
	op.arg = (uint64_t)d;
	int rc = rc_commit(x, &op);
	rc_unlock_set(x, m);
	rc_incr_reply(c, false, rc, op.res, MF_SLICE_EMPTY);
}

void c_incr(resp_ctx *x, client *c, req *r)
{
	do_incrby(x, c, r, 1);
}

void c_decr(resp_ctx *x, client *c, req *r)
{
	do_incrby(x, c, r, -1);
}

void c_incrby(resp_ctx *x, client *c, req *r)
{
	long long d;
	if (rc_arg_ll(c, r, 2, &d))
		do_incrby(x, c, r, d);
}

void c_decrby(resp_ctx *x, client *c, req *r)
{
	long long d;
	if (!rc_arg_ll(c, r, 2, &d))
		return;
	if (d == LLONG_MIN) {
		r_err(c, "ERR decrement would overflow");
		return;
	}
	do_incrby(x, c, r, -d);
}

void c_incrbyfloat(resp_ctx *x, client *c, req *r)
{
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = rc_lock_shared(x, r, 1, 1, 1);
	mf_op op = rc_kop(MF_OP_INCRBYFLOAT, MF_T_STRING, r->argv[1], r->argl[1]);
	op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	int rc = mf_db_commit_notify(x->db, &op);
	rc_unlock_set(x, m);
	rc_incr_reply(c, true, rc, op.res, op.out);
	mf_op_clear(&op);
}
