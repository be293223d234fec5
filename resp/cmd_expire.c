/*
 * cmd_expire.c — expiry (EXPIRE records hold absolute times): EXPIRE
 * PEXPIRE EXPIREAT PEXPIREAT PERSIST TTL PTTL EXPIRETIME PEXPIRETIME, and
 * the expiry argument SET's EX/PX/EXAT/PXAT share.
 */
#include "cmd_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* An expiry argument as Redis reads it (seconds or ms; from now, or
 * absolute with EXAT/EXPIREAT): the absolute time in ns, or 0 with the
 * error replied (not an integer; overflowing, or for SET not positive:
 * "invalid expire time").  A time before 1970 is 1: past, so it deletes;
 * one after 2262 is INT64_MAX. */
int64_t rc_expire_arg(client *c, const req *r, int i, bool ms, bool at, bool positive,
                          const char *cmd)
{
	long long v, when;
	if (!rc_arg_ll(c, r, i, &v))
		return 0;
	long long base = at ? 0 : mf_now_ns() / 1000000;
	if ((positive && v <= 0) || __builtin_mul_overflow(v, ms ? 1LL : 1000LL, &when) ||
	    __builtin_add_overflow(when, base, &when)) {
		char msg[80];
		snprintf(msg, sizeof msg, "ERR invalid expire time in '%s' command", cmd);
		r_err(c, msg);
		return 0;
	}
	/* Times are ns in an int64 (to 2262): later ones are kept as the
	 * last one it holds (EXPIRETIME then says so). */
	return when <= 0 ? 1 : when > INT64_MAX / 1000000 ? INT64_MAX : when * 1000000;
}

/* ---------- expiry (EXPIRE records: absolute times) ---------- */

/* EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT key time [NX|XX|GT|LT]. */
static void do_expire(resp_ctx *x, client *c, req *r, bool ms, bool at, const char *name)
{
	bool nx = false, xx = false, gt = false, lt = false;
	for (int i = 3; i < r->argc; i++) {
		if (rc_argis(r, i, "nx"))
			nx = true;
		else if (rc_argis(r, i, "xx"))
			xx = true;
		else if (rc_argis(r, i, "gt"))
			gt = true;
		else if (rc_argis(r, i, "lt"))
			lt = true;
		else {
			char msg[160];
			snprintf(msg, sizeof msg, "ERR Unsupported option %.*s",
			         (int)(r->argl[i] > 64 ? 64 : r->argl[i]), r->argv[i]);
			r_err(c, msg);
			return;
		}
	}
	if (nx && (xx || gt || lt)) {
		r_err(c, "ERR NX and XX, GT or LT options at the same time are not compatible");
		return;
	}
	if (gt && lt) {
		r_err(c, "ERR GT and LT options at the same time are not compatible");
		return;
	}
	int64_t when = rc_expire_arg(c, r, 2, ms, at, false, name);
	if (!when || !rc_keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = rc_lock_args(x, r, 1, 1, 1); /* the conditions read, then write */
	mf_entry_info e;
	int rc = rc_kget(x, r, 1, false, &e);
	if (rc == 0) {
		/* No expiry counts as infinite (Redis): GT never, LT always. */
		int64_t cur = e.expire_ns;
		if ((nx && cur) || (xx && !cur) || (gt && (!cur || when <= cur)) ||
		    (lt && cur && when >= cur))
			rc = -EALREADY;
	}
	mf_op op = rc_kop(MF_OP_EXPIRE, MF_T_NONE, r->argv[1], r->argl[1]);
	op.arg = (uint64_t)when;
	if (rc == 0)
		rc = rc_commit(x, &op);
	else
		mf_op_clear(&op);
	rc_unlock_set(x, m);
	r_int_result(c, rc == -ENOENT || rc == -EALREADY ? 0 : rc, rc ? 0 : 1);
}

void c_expire(resp_ctx *x, client *c, req *r)
{
	do_expire(x, c, r, false, false, "expire");
}

void c_pexpire(resp_ctx *x, client *c, req *r)
{
	do_expire(x, c, r, true, false, "pexpire");
}

void c_expireat(resp_ctx *x, client *c, req *r)
{
	do_expire(x, c, r, false, true, "expireat");
}

void c_pexpireat(resp_ctx *x, client *c, req *r)
{
	do_expire(x, c, r, true, true, "pexpireat");
}

/* TTL/PTTL (remaining) and EXPIRETIME/PEXPIRETIME (absolute): -2 no key,
 * -1 no expiry; TTL rounds to the nearest second, as Redis. */
static void ttl_reply(resp_ctx *x, client *c, req *r, bool ms, bool absolute)
{
	mf_entry_info e;
	if (rc_kget(x, r, 1, false, &e) != 0) {
		r_int(c, -2);
		return;
	}
	if (!e.expire_ns) {
		r_int(c, -1);
		return;
	}
	long long at = e.expire_ns / 1000000;
	if (absolute) {
		r_int(c, ms ? at : at / 1000);
		return;
	}
	long long left = at - mf_now_ns() / 1000000;
	if (left < 0)
		left = 0;
	r_int(c, ms ? left : (left + 500) / 1000);
}

void c_ttl(resp_ctx *x, client *c, req *r)
{
	ttl_reply(x, c, r, false, false);
}

void c_pttl(resp_ctx *x, client *c, req *r)
{
	ttl_reply(x, c, r, true, false);
}

void c_expiretime(resp_ctx *x, client *c, req *r)
{
	ttl_reply(x, c, r, false, true);
}

void c_pexpiretime(resp_ctx *x, client *c, req *r)
{
	ttl_reply(x, c, r, true, true);
}

void c_persist(resp_ctx *x, client *c, req *r)
{
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = rc_lock_shared(x, r, 1, 1, 1);
	mf_op op = rc_kop(MF_OP_EXPIRE, MF_T_NONE, r->argv[1], r->argl[1]); /* arg 0: none */
	int rc = rc_commit(x, &op);
	rc_unlock_set(x, m);
	r_int_result(c, rc == -ENOENT ? 0 : rc, rc ? 0 : (long long)op.res);
}
