/*
 * cmd_set.c — Redis sets (/sets keys, one member per line): SADD SREM
 * SMEMBERS SISMEMBER SCARD SMOVE.
 */
#include "cmd_int.h"

#include <errno.h>
#include <string.h>

/* ---------- sets (/sets keys: one member per line) ---------- */

/* The members r->argv[from..] as lines; members holding '\n' (which no
 * set can hold) are left out, *skipped counts them. */
mf_slice rc_member_lines(const req *r, int from, int *skipped)
{
	size_t total = 0;
	for (int i = from; i < r->argc; i++)
		total += r->argl[i] + 1;
	mf_slice v = mf_slice_alloc(0, total);
	*skipped = 0;
	for (int i = from; i < r->argc; i++) {
		if (memchr(r->argv[i], '\n', r->argl[i])) {
			(*skipped)++;
			continue;
		}
		mf_slice_append(&v, r->argv[i], r->argl[i]);
		mf_slice_append(&v, "\n", 1);
	}
	return v;
}


/* SADD / SREM: one record of the members as lines; the reply is how many
 * were added / removed.  SREM of a key that is not there: 0. */
static void set_members_op(resp_ctx *x, client *c, req *r, int type)
{
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	int skipped;
	mf_slice v = rc_member_lines(r, 2, &skipped);
	mf_entry_info e;
	int rc = 0;
	if (type == MF_OP_SADD && skipped)
		rc = -EBADMSG;
	else if (rc_kget(x, r, 1, false, &e) == 0 && e.type != MF_T_SET)
		rc = -EEXIST;
	else if (v.len == 0) /* SREM of only members no set holds */
		rc = -ENOENT;
	mf_op op = rc_kop(type, MF_T_SET, r->argv[1], r->argl[1]);
	op.val = v;
	if (rc == 0) {
		lockset m = rc_lock_shared(x, r, 1, 1, 1);
		rc = rc_commit(x, &op);
		rc_unlock_set(x, m);
	} else {
		mf_op_clear(&op);
	}
	if (rc == -EBADMSG)
		r_err(c, E_MEMBER_NL);
	else
		r_int_result(c, rc == -ENOENT ? 0 : rc, (long long)op.res);
}

void c_sadd(resp_ctx *x, client *c, req *r)
{
	set_members_op(x, c, r, MF_OP_SADD);
}

void c_srem(resp_ctx *x, client *c, req *r)
{
	set_members_op(x, c, r, MF_OP_SREM);
}

void c_smembers(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	if (rc_kget(x, r, 1, true, &e) != 0) {
		r_arr(c, 0);
		return;
	}
	if (e.type != MF_T_SET) {
		r_err(c, E_WRONGTYPE);
		mf_slice_unref(&e.val);
		return;
	}
	const char *p = mf_slice_ptr(e.val);
	size_t n = e.val.len;
	size_t k = (size_t)mf_count_lines(p, n);
	if (c->proto == 3)
		rb_fmt(&c->out, "~%zu\r\n", k);
	else
		r_arr(c, k);
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t l = (size_t)(nl - (p + i));
		r_bulk(c, p + i, l);
		i += l + 1;
	}
	mf_slice_unref(&e.val);
}

void c_sismember(resp_ctx *x, client *c, req *r)
{
	int h = mf_store_set_has(x->st, r->argv[1], r->argl[1], r->argv[2], r->argl[2]);
	if (h == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else
		r_int(c, h == 1);
}

void c_scard(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	if (rc_kget(x, r, 1, false, &e) != 0)
		r_int(c, 0);
	else if (e.type != MF_T_SET)
		r_err(c, E_WRONGTYPE);
	else
		r_int(c, (long long)e.count);
}

/* One SMOVE record: the member leaves one set and joins the other
 * atomically (no reader sees it in both or neither). */
void c_smove(resp_ctx *x, client *c, req *r)
{
	if (!rc_keys_ok(c, r, 1, 2, 1))
		return;
	lockset m = rc_lock_shared(x, r, 1, 2, 1);
	mf_op op = rc_kop(MF_OP_SMOVE, MF_T_SET, r->argv[1], r->argl[1]);
	op.key2 = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	int rc;
	if (memchr(r->argv[3], '\n', r->argl[3])) {
		/* No set holds it: Redis's checks, then 0. */
		mf_entry_info s, d;
		bool hs = rc_kget(x, r, 1, false, &s) == 0, hd = rc_kget(x, r, 2, false, &d) == 0;
		rc = !hs ? -ENOENT : s.type != MF_T_SET || (hd && d.type != MF_T_SET) ? -EEXIST : 0;
		op.res = 0;
		mf_op_clear(&op);
	} else {
		op.val = mf_slice_from(r->argv[3], r->argl[3], r->argl[3]);
		rc = rc_commit(x, &op);
	}
	rc_unlock_set(x, m);
	if (rc == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else if (rc == -ENOENT)
		r_int(c, 0);
	else if (rc)
		r_errno(c, rc);
	else
		r_int(c, (long long)op.res);
}
