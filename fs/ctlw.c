/*
 * ctlw.c — the control files one writes lines to: /.ctl/incr/<key>,
 * /.ctl/srem/<set>, /.ctl/jincr/<doc>/<path> and /.ctl/expire/<key>.  Each complete line written is part of one operation:
 * a write(2) holding lines logs ONE record (INCRBY of their sum, or SREM of
 * them) before it returns, so its error (not an integer, overflow, wrong
 * type) comes back from write, not from a close bash ignores; a line split
 * across writes waits for its end, and a last line without '\n' is logged
 * at close.  Concurrent writers never lose an update: the store applies
 * each record atomically (4 processes × 200 `echo 1 >> /.ctl/incr/c`
 * make 800 INCRBY records and c ends at 800).  /.ctl/jincr logs one
 * JSON_NUMINCRBY per line (a line is a JSON number: lines cannot be summed
 * without changing float results).
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"
#include "../store/set.h"

/* A partial line longer than this is no number and no member we accept
 * through a file: refuse it rather than buffer without bound. */
#define CTLW_PARTIAL_MAX (64 * 1024)

/* The INCRBY delta of lines p[0..n): the sum of one integer per line. */
static int incr_delta(const char *p, size_t n, long long *sum)
{
	*sum = 0;
	size_t i = 0;
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t l = nl ? (size_t)(nl - (p + i)) : n - i;
		long long v;
		bool had_nl;
		int r = mf_num_parse_ll(p + i, l, &v, &had_nl);
		if (r == 0)
			r = mf_num_add_ll(*sum, v, sum);
		if (r)
			return r;
		i += l + 1;
	}
	return 0;
}

/* One JSON_NUMINCRBY per line of p[0..n) on the member the node names. */
static int jincr_commit(mf_fs *fs, node *nd, const char *p, size_t n)
{
	size_t klen, plen;
	const char *path;
	jpath_split(nd, &klen, &path, &plen);
	const char *k = mf_slice_ptr(nd->key);
	int r = 0;
	for (size_t i = 0; i < n && r == 0;) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t l = nl ? (size_t)(nl - (p + i)) : n - i;
		mf_op op = key_op(MF_OP_JSON_NUMINCRBY, MF_T_JSON, k, klen);
		op.key2 = mf_slice_from(path, plen, plen);
		op.val = mf_slice_from(p + i, l, l);
		r = commit(fs, &op);
		mf_op_clear(&op);
		i += l + 1;
	}
	if (r) {
		char kn[KEY_NAME_MAX];
		mf_log_warn("JSON.NUMINCRBY of %s %.*s refused: %s",
		            key_name(kn, sizeof kn, MF_T_JSON, k, klen), (int)plen, path, strerror(-r));
	}
	invalidate_key(fs, MF_T_JSON, k, klen);
	return r == -EDOM ? -EINVAL : r; /* not a number there: EINVAL, as a bad line */
}

/* /.ctl/expire/<key>: one EXPIRE per line, "N" (seconds from now; N <= 0
 * deletes the key, as Redis's EXPIRE) or "persist" (no expiry). */
static int expire_commit(mf_fs *fs, node *nd, const char *p, size_t n)
{
	const char *k = mf_slice_ptr(nd->key);
	int r = 0;
	for (size_t i = 0; i < n && r == 0;) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t l = nl ? (size_t)(nl - (p + i)) : n - i;
		long long secs;
		bool had_nl;
		int64_t now = mf_now_ns(), when = 0;
		if (!(l == 7 && memcmp(p + i, "persist", 7) == 0)) {
			r = mf_num_parse_ll(p + i, l, &secs, &had_nl);
			if (r == 0 && (secs > (INT64_MAX - now) / 1000000000 || secs < -now / 1000000000))
				r = -ERANGE;
			when = r ? 0 : secs <= 0 ? 1 : now + secs * 1000000000;
		}
		if (r == 0) {
			mf_op op = key_op(MF_OP_EXPIRE, MF_T_NONE, k, nd->key.len);
			op.arg = (uint64_t)when;
			op.time_ns = now;
			r = commit(fs, &op);
			mf_op_clear(&op);
		}
		i += l + 1;
	}
	/* A deleting expiry: the key's file is gone (any type: ask each). */
	for (uint8_t t = MF_T_STRING; t <= MF_T_MAX_; t++)
		if (key_type(t))
			invalidate_key(fs, t, k, nd->key.len);
	return r;
}

int ctlw_ttl_text(mf_fs *fs, node *n, handle *h)
{
	mf_entry_info e;
	int r = mf_kv_get(&fs->kv, mf_slice_ptr(n->key), n->key.len, false, &e);
	if (r)
		return r;
	long long left = -1;
	if (e.expire_ns) {
		left = (e.expire_ns - mf_now_ns() + 500000000) / 1000000000;
		left = left < 0 ? 0 : left;
	}
	h->text = mf_xmalloc(32);
	h->textlen = (size_t)snprintf(h->text, 32, "%lld\n", left);
	return 0;
}

/* Log the lines p[0..n) as one op on the handle's key; tell the kernel the
 * key's file changed. */
static int ctlw_commit(mf_fs *fs, handle *h, const char *p, size_t n)
{
	node *nd = h->n;
	if (nd->type == NODE_JINCR)
		return jincr_commit(fs, nd, p, n);
	if (nd->type == NODE_JPATH)
		return jpath_append(fs, nd, p, n);
	if (nd->type == NODE_EXPIRE)
		return expire_commit(fs, nd, p, n);
	uint8_t kt = nd->type == NODE_INCR ? MF_T_STRING : MF_T_SET;
	mf_op op = key_op(nd->type == NODE_INCR ? MF_OP_INCRBY : MF_OP_SREM, kt,
	                  mf_slice_ptr(nd->key), nd->key.len);
	int r = 0;
	if (nd->type == NODE_INCR) {
		long long d;
		r = incr_delta(p, n, &d);
		op.arg = (uint64_t)d;
	} else {
		op.val = mf_slice_from(p, n, n);
	}
	if (r == 0)
		r = commit(fs, &op);
	char kn[KEY_NAME_MAX];
	if (r)
		mf_log_warn("%s of %s refused: %s", mf_optype_name(op.type),
		            key_name(kn, sizeof kn, kt, mf_slice_ptr(nd->key), nd->key.len),
		            strerror(-r));
	mf_op_clear(&op);
	if (r == 0)
		invalidate_key(fs, kt, mf_slice_ptr(nd->key), nd->key.len);
	return r;
}

int ctlw_write(mf_fs *fs, handle *h, const char *buf, size_t size)
{
	pthread_mutex_lock(&h->mu);
	mf_slice_append(&h->data, buf, size);
	const char *p = mf_slice_ptr(h->data);
	const char *last = memrchr(p, '\n', h->data.len);
	int r = 0;
	if (last) {
		size_t n = (size_t)(last - p) + 1;
		r = ctlw_commit(fs, h, p, n);
		/* Committed or refused, those lines are done with. */
		mf_slice rest = mf_slice_from(p + n, h->data.len - n, h->data.len - n);
		mf_slice_unref(&h->data);
		h->data = rest;
	} else if (h->data.len > CTLW_PARTIAL_MAX) {
		mf_slice_unref(&h->data);
		r = -EINVAL;
	}
	pthread_mutex_unlock(&h->mu);
	return r;
}

int ctlw_flush(mf_fs *fs, handle *h)
{
	pthread_mutex_lock(&h->mu);
	int r = 0;
	if (h->data.len)
		r = ctlw_commit(fs, h, mf_slice_ptr(h->data), h->data.len);
	mf_slice_unref(&h->data);
	pthread_mutex_unlock(&h->mu);
	return r;
}
