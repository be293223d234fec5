/*
 * cmd_keys.c — store access every command goes through (rc_kget, which
 * EXEC's queued reads answer from their READ results; rc_kop, rc_commit,
 * rc_del_key), the per-key lock sets (stripes), and the keyspace
 * commands: DEL/UNLINK EXISTS TYPE RENAME RENAMENX KEYS SCAN DBSIZE.
 */
#include "cmd_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- store access ---------- */

/* While EXEC builds the replies of queued reads: what each key argument
 * (by argv index) looked like at its place in the transaction (the MULTI
 * record's READ results).  Thread-local: set and cleared around one
 * command's reply on the thread running it. */
_Thread_local const mf_op_result *const *rc_tx_view;

int rc_kget(resp_ctx *x, const req *r, int i, bool want, mf_entry_info *e)
{
	memset(e, 0, sizeof *e);
	if (rc_tx_view) {
		const mf_op_result *v = rc_tx_view[i];
		if (!v || v->rc)
			return -ENOENT;
		e->type = v->type;
		e->size = v->out.len;
		e->count = v->count;
		e->val = want ? mf_slice_ref(v->out) : MF_SLICE_EMPTY;
		return 0;
	}
	return mf_store_get(x->st, r->argv[i], r->argl[i], want, e);
}

/* Key argv[1] when it holds `type`: true.  Otherwise false, with the reply
 * sent: `missing` for no such key (each command answers that its own way),
 * WRONGTYPE for another type.  With `want`, e->val holds a reference the
 * caller drops. */
bool rc_kget_as(resp_ctx *x, client *c, const req *r, uint8_t type, bool want,
                    void (*missing)(client *), mf_entry_info *e)
{
	if (rc_kget(x, r, 1, want, e) != 0) {
		missing(c);
		return false;
	}
	if (e->type != type) {
		r_err(c, E_WRONGTYPE);
		mf_slice_unref(&e->val);
		return false;
	}
	return true;
}

mf_op rc_kop(int type, int ktype, const char *k, size_t n)
{
	mf_op op = {0};
	op.type = (uint8_t)type;
	op.ktype = (uint8_t)ktype;
	op.key = mf_slice_from(k, n, n);
	return op;
}

/* Commit and drop the op's references (LPOP/RPOP output: see pop). */
int rc_commit(resp_ctx *x, mf_op *op)
{
	int r = mf_db_commit_notify(x->db, op);
	mf_op_clear(op);
	return r;
}

/* Delete a key whatever its type (0 if it was there, -ENOENT if not). */
int rc_del_key(resp_ctx *x, const char *k, size_t n)
{
	mf_entry_info e;
	if (mf_store_get(x->st, k, n, false, &e) != 0)
		return -ENOENT;
	/* A folder made through the mount goes as a folder does (only when
	 * empty: ENOTEMPTY otherwise), so DEL, and SET over it, act on it as on
	 * any key of another type. */
	mf_op op = rc_kop(e.type == MF_T_FOLDER ? MF_OP_RMDIR : MF_OP_DEL, e.type, k, n);
	return rc_commit(x, &op);
}

/* ---------- per-key locks (atomic read-modify-write among RESP clients) */

unsigned rc_stripe_of(const char *k, size_t n)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 16777619u;
	return h % MF_RESP_STRIPES;
}

typedef uint64_t lockset;

/* Exclusive for commands that read, decide, then write (SET NX/XX/GET, a
 * type change, RENAME...); shared for blind writes, whose replies come
 * from apply itself (op.res), so many clients may commit to one key at
 * once and share a WAL batch (redis-benchmark hits a single key). */
static lockset lock_args_mode(resp_ctx *x, const req *r, int first, int last, int step, bool excl)
{
	lockset m = 0;
	if (last < 0)
		last = r->argc + last;
	for (int i = first; i <= last && i < r->argc; i += step)
		m |= (lockset)1 << rc_stripe_of(r->argv[i], r->argl[i]);
	for (unsigned i = 0; i < MF_RESP_STRIPES; i++)
		if (m >> i & 1) {
			if (excl)
				pthread_rwlock_wrlock(&x->stripes[i]);
			else
				pthread_rwlock_rdlock(&x->stripes[i]);
		}
	return m;
}

lockset rc_lock_args(resp_ctx *x, const req *r, int first, int last, int step)
{
	return lock_args_mode(x, r, first, last, step, true);
}

lockset rc_lock_shared(resp_ctx *x, const req *r, int first, int last, int step)
{
	return lock_args_mode(x, r, first, last, step, false);
}

lockset rc_lock_all(resp_ctx *x)
{
	for (unsigned i = 0; i < MF_RESP_STRIPES; i++)
		pthread_rwlock_wrlock(&x->stripes[i]);
	return ((lockset)1 << MF_RESP_STRIPES) - 1;
}

void rc_unlock_set(resp_ctx *x, lockset m)
{
	for (unsigned i = 0; i < MF_RESP_STRIPES; i++)
		if (m >> i & 1)
			pthread_rwlock_unlock(&x->stripes[i]);
}

/* Empty keys: the store (and its snapshot format) holds keys of 1 byte or
 * more.  Redis allows "", memfluxfs refuses it explicitly. */
bool rc_keys_ok(client *c, const req *r, int first, int last, int step)
{
	if (last < 0)
		last = r->argc + last;
	for (int i = first; i <= last && i < r->argc; i += step) {
		if (r->argl[i] == 0) {
			r_err(c, "ERR memfluxfs does not support empty keys");
			return false;
		}
		if (r->argl[i] > MF_KEY_BYTES_MAX) {
			r_err(c, "ERR memfluxfs keys are at most 65535 bytes");
			return false;
		}
	}
	return true;
}
/* STRLEN and LLEN: a string's bytes, a list's elements; 0 for no key. */
void rc_key_len(resp_ctx *x, client *c, const req *r, uint8_t type)
{
	mf_entry_info e;
	if (rc_kget_as(x, c, r, type, false, r_zero, &e))
		r_int(c, (long long)(type == MF_T_LIST ? e.count : e.size));
}

/* GETRANGE and LRANGE: "key start end", and the key's value when it holds
 * `type` (else false, replied). */
bool rc_range_args(resp_ctx *x, client *c, const req *r, uint8_t type,
                       void (*missing)(client *), long long *start, long long *end,
                       mf_entry_info *e)
{
	return rc_arg_ll(c, r, 2, start) && rc_arg_ll(c, r, 3, end) &&
	       rc_kget_as(x, c, r, type, true, missing, e);
}

void c_del(resp_ctx *x, client *c, req *r)
{
	lockset m = rc_lock_shared(x, r, 1, -1, 1);
	long long n = 0;
	int rc = 0;
	for (int i = 1; i < r->argc; i++) {
		if (r->argl[i] == 0 || r->argl[i] > MF_KEY_BYTES_MAX)
			continue;
		int d = rc_del_key(x, r->argv[i], r->argl[i]);
		if (d == 0)
			n++;
		else if (d != -ENOENT)
			rc = d;
	}
	rc_unlock_set(x, m);
	if (rc && n == 0)
		r_errno(c, rc);
	else
		r_int(c, n);
}

void c_exists(resp_ctx *x, client *c, req *r)
{
	long long n = 0;
	for (int i = 1; i < r->argc; i++) {
		mf_entry_info e;
		n += rc_kget(x, r, i, false, &e) == 0;
	}
	r_int(c, n);
}

static const char *type_name(int t)
{
	switch (t) {
	case MF_T_STRING: return "string";
	case MF_T_LIST: return "list";
	case MF_T_JSON: return "ReJSON-RL";
	case MF_T_SET: return "set";
	/* Made through the mount (mkdir, ln -s, mkfifo): keys of their own kind, as a
	 * module's type is (GET answers WRONGTYPE, DEL removes an empty one). */
	case MF_T_FOLDER: return "folder";
	case MF_T_SYMLINK: return "symlink";
	case MF_T_SPECIAL: return "special"; /* mkfifo, mknod */
	default: return "none";
	}
}

void c_type(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	r_simple(c, rc_kget(x, r, 1, false, &e) == 0 ? type_name(e.type) : "none");
}

static void do_rename(resp_ctx *x, client *c, req *r, bool nx)
{
	if (!rc_keys_ok(c, r, 1, 2, 1))
		return;
	lockset m = rc_lock_args(x, r, 1, 2, 1);
	mf_entry_info e, t;
	if (rc_kget(x, r, 1, false, &e) != 0) {
		r_err(c, E_NOKEY);
		goto out;
	}
	bool same = r->argl[1] == r->argl[2] && memcmp(r->argv[1], r->argv[2], r->argl[1]) == 0;
	bool texists = rc_kget(x, r, 2, false, &t) == 0;
	if (nx && texists) {
		r_int(c, 0);
		goto out;
	}
	if (same) {
		if (nx)
			r_int(c, 0);
		else
			r_ok(c);
		goto out;
	}
	int rc = 0;
	if (texists && t.type != e.type)
		rc = rc_del_key(x, r->argv[2], r->argl[2]);
	if (rc == 0) {
		mf_op op = rc_kop(MF_OP_RENAME, e.type, r->argv[1], r->argl[1]);
		op.key2 = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		rc = rc_commit(x, &op);
	}
	if (rc)
		r_errno(c, rc);
	else if (nx)
		r_int(c, 1);
	else
		r_ok(c);
out:
	rc_unlock_set(x, m);
}

void c_rename(resp_ctx *x, client *c, req *r)
{
	do_rename(x, c, r, false);
}

void c_renamenx(resp_ctx *x, client *c, req *r)
{
	do_rename(x, c, r, true);
}

/* ---------- keyspace ---------- */

void c_keys(resp_ctx *x, client *c, req *r)
{
	mf_slice *keys;
	size_t n = mf_store_keys(x->st, MF_T_NONE, &keys), hits = 0;
	for (size_t i = 0; i < n; i++) {
		if (mf_glob_match(r->argv[1], r->argl[1], mf_slice_ptr(keys[i]), keys[i].len))
			keys[hits++] = keys[i];
		else
			mf_slice_unref(&keys[i]);
	}
	r_arr(c, hits);
	for (size_t i = 0; i < hits; i++) {
		r_bulk(c, mf_slice_ptr(keys[i]), keys[i].len);
		mf_slice_unref(&keys[i]);
	}
	free(keys);
}

/* SCAN's order: a fixed 64-bit hash of the key (never 0, which means
 * "start" / "done").  The cursor is the hash to go on from, so every key
 * present for the whole iteration is returned (keys sharing a hash are
 * returned together), whatever is added or deleted meanwhile. */
static uint64_t scan_hash(const char *p, size_t n)
{
	uint64_t h = 14695981039346656037ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 1099511628211ULL;
	h ^= h >> 31;
	h *= 0x9e3779b97f4a7c15ULL;
	h ^= h >> 29;
	return h ? h : 1;
}

typedef struct hkey {
	uint64_t h;
	mf_slice k;
} hkey;

static int hkey_cmp(const void *a, const void *b)
{
	uint64_t x = ((const hkey *)a)->h, y = ((const hkey *)b)->h;
	return x < y ? -1 : x > y;
}

void c_scan(resp_ctx *x, client *c, req *r)
{
	unsigned long long cursor;
	{
		char buf[24];
		char *end;
		if (r->argl[1] == 0 || r->argl[1] > 20 || r->argv[1][0] == '-' || r->argv[1][0] == '+') {
			r_err(c, "ERR invalid cursor");
			return;
		}
		memcpy(buf, r->argv[1], r->argl[1]);
		buf[r->argl[1]] = '\0';
		errno = 0;
		cursor = strtoull(buf, &end, 10);
		if (errno || *end) {
			r_err(c, "ERR invalid cursor");
			return;
		}
	}
	const char *pat = NULL;
	size_t plen = 0;
	long long count = 10;
	int want_type = -1;
	for (int i = 2; i < r->argc; i += 2) {
		if (i + 1 >= r->argc) {
			r_err(c, E_SYNTAX);
			return;
		}
		if (rc_argis(r, i, "match")) {
			pat = r->argv[i + 1];
			plen = r->argl[i + 1];
		} else if (rc_argis(r, i, "count")) {
			if (!rc_arg_ll(c, r, i + 1, &count))
				return;
			if (count < 1) {
				r_err(c, E_SYNTAX);
				return;
			}
		} else if (rc_argis(r, i, "type")) {
			want_type = 0; /* an unknown type name matches nothing */
			for (int t = MF_T_STRING; t <= MF_T_MAX_; t++)
				if (mf_type_valid(t) && rc_argis(r, i + 1, type_name(t)))
					want_type = t;
		} else {
			r_err(c, E_SYNTAX);
			return;
		}
	}
	mf_slice *keys;
	size_t n = mf_store_keys(x->st, MF_T_NONE, &keys);
	hkey *hk = mf_xmalloc((n ? n : 1) * sizeof *hk);
	for (size_t i = 0; i < n; i++)
		hk[i] = (hkey){scan_hash(mf_slice_ptr(keys[i]), keys[i].len), keys[i]};
	free(keys);
	qsort(hk, n, sizeof *hk, hkey_cmp);
	size_t lo = 0;
	while (lo < n && hk[lo].h < cursor)
		lo++;
	size_t hi = lo;
	while (hi < n && (hi - lo < (size_t)count || hk[hi].h == hk[hi - 1].h))
		hi++;
	uint64_t next = hi < n ? hk[hi].h : 0;
	size_t hits = 0;
	for (size_t i = lo; i < hi; i++) {
		bool ok = !pat || mf_glob_match(pat, plen, mf_slice_ptr(hk[i].k), hk[i].k.len);
		if (ok && want_type >= 0) {
			mf_entry_info e;
			ok = mf_store_get(x->st, mf_slice_ptr(hk[i].k), hk[i].k.len, false, &e) == 0 &&
			     (int)e.type == want_type;
		}
		if (ok)
			hk[lo + hits++].k = hk[i].k;
		else
			mf_slice_unref(&hk[i].k);
	}
	r_arr(c, 2);
	char cbuf[24];
	int cl = snprintf(cbuf, sizeof cbuf, "%" PRIu64, next);
	r_bulk(c, cbuf, (size_t)cl);
	r_arr(c, hits);
	for (size_t i = 0; i < hits; i++)
		r_bulk(c, mf_slice_ptr(hk[lo + i].k), hk[lo + i].k.len);
	for (size_t i = 0; i < lo; i++)
		mf_slice_unref(&hk[i].k);
	for (size_t i = lo; i < lo + hits; i++)
		mf_slice_unref(&hk[i].k);
	for (size_t i = hi; i < n; i++)
		mf_slice_unref(&hk[i].k);
	free(hk);
}

void c_dbsize(resp_ctx *x, client *c, req *r)
{
	(void)r;
	mf_store_stats s;
	mf_store_stats_get(x->st, &s);
	r_int(c, (long long)s.keys[0]);
}
