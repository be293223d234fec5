/*
 * cmd_tx.c — transactions: MULTI EXEC DISCARD WATCH UNWATCH; the queue,
 * the MULTI record EXEC builds from it, and each command's reply from its
 * sub-ops' results.
 */
#include "cmd_int.h"
#include "../store/json.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- transactions: MULTI / EXEC / DISCARD / WATCH ----------
 *
 * EXEC turns the queued commands into the sub-ops of ONE MULTI record
 * (store/op.h), applied in order by mf_store_apply: a crash keeps all of
 * them or none, and no other writer (RESP or the mount) runs in between.
 * Each command's reply is then built from its sub-ops' results, as Redis
 * replies to each command of an EXEC (a failing command does not stop the
 * others).  Reads queued between writes are READ sub-ops: they see the
 * keyspace at their place.  Supported inside MULTI: the commands tx_build
 * knows; any other is refused when queued (and EXEC then aborts, as for
 * Redis's queue-time errors).  EXEC holds every stripe lock, so WATCH's
 * version check and the record are atomic against other RESP clients; a
 * write through the mount between the check and the apply is not seen
 * (the window is one WAL hand-off). */

typedef struct txq {
	int argc;
	char **argv;
	size_t *argl;
} txq;

typedef struct watched {
	char *k;
	size_t n;
	uint64_t version; /* 0: absent */
} watched;

static void txq_clear(client *c)
{
	for (int i = 0; i < c->ntxq; i++) {
		for (int a = 0; a < c->txq[i].argc; a++)
			free(c->txq[i].argv[a]);
		free(c->txq[i].argv);
		free(c->txq[i].argl);
	}
	c->ntxq = 0;
	c->in_multi = c->multi_dirty = false;
}

static void unwatch(client *c)
{
	for (int i = 0; i < c->nwatch; i++)
		free(c->watch[i].k);
	free(c->watch);
	c->watch = NULL;
	c->nwatch = 0;
}

void cmd_client_free(client *c)
{
	txq_clear(c);
	free(c->txq);
	c->txq = NULL;
	unwatch(c);
}

/* The commands a transaction takes, and how each becomes sub-ops. */
enum { TX_NO = 0, TX_READ, TX_WRITE, TX_PLAIN };

static int tx_kind(const req *r)
{
	static const char *const reads[] = {"get", "mget", "exists", "type", "strlen", "getrange",
	                                    "llen", "lrange", "lindex", "scard", "smembers",
	                                    "json.get", "json.type"};
	static const char *const writes[] = {
		"set", "del", "unlink", "incr", "decr", "incrby", "decrby", "incrbyfloat", "append",
		"rpush", "lpush", "lpop", "rpop", "sadd", "srem", "smove", "json.set",
		"json.numincrby", "json.arrappend", "json.strappend"};
	for (size_t i = 0; i < sizeof reads / sizeof *reads; i++)
		if (rc_argis(r, 0, reads[i]))
			return TX_READ;
	for (size_t i = 0; i < sizeof writes / sizeof *writes; i++)
		if (rc_argis(r, 0, writes[i]))
			return TX_WRITE;
	if (rc_argis(r, 0, "ping") || rc_argis(r, 0, "echo"))
		return TX_PLAIN;
	return TX_NO;
}

/* Queue a command (MULTI mode).  Its arity was checked. */
void rc_tx_queue(client *c, req *r)
{
	if (tx_kind(r) == TX_NO) {
		char msg[200];
		snprintf(msg, sizeof msg, "ERR memfluxfs: '%.*s' is not supported inside MULTI",
		         (int)(r->argl[0] > 64 ? 64 : r->argl[0]), r->argv[0]);
		r_err(c, msg);
		c->multi_dirty = true;
		return;
	}
	if (c->ntxq == c->captxq) {
		c->captxq = c->captxq ? c->captxq * 2 : 8;
		c->txq = mf_xrealloc(c->txq, (size_t)c->captxq * sizeof *c->txq);
	}
	txq *q = &c->txq[c->ntxq++];
	q->argc = r->argc;
	q->argv = mf_xmalloc((size_t)r->argc * sizeof *q->argv);
	q->argl = mf_xmalloc((size_t)r->argc * sizeof *q->argl);
	for (int i = 0; i < r->argc; i++) {
		q->argv[i] = mf_xmalloc(r->argl[i] + 1);
		memcpy(q->argv[i], r->argv[i], r->argl[i]);
		q->argv[i][r->argl[i]] = '\0';
		q->argl[i] = r->argl[i];
	}
	r_simple(c, "QUEUED");
}

/* The sub-ops EXEC builds, in queue order. */
typedef struct txbuild {
	mf_op *ops;
	int n, cap;
} txbuild;

static mf_op *tx_add(txbuild *b, int type, int ktype, const char *k, size_t kn)
{
	if (b->n == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->ops = mf_xrealloc(b->ops, (size_t)b->cap * sizeof *b->ops);
	}
	mf_op *o = &b->ops[b->n++];
	*o = rc_kop(type, ktype, k, kn);
	return o;
}

/* Strings and keys: SET DEL UNLINK INCR DECR INCRBY DECRBY INCRBYFLOAT
 * APPEND.  false: not one of them. */
static bool tx_build_string(const req *r, txbuild *b, const char **err, const char *k, size_t kn)
{
	long long d = 0;
	if (rc_argis(r, 0, "set")) {
		if (r->argc != 3) {
			*err = "ERR memfluxfs: SET options are not supported inside MULTI";
			return true;
		}
		mf_op *o = tx_add(b, MF_OP_SET, MF_T_STRING, k, kn);
		o->val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		o->arg = 1; /* over any type, as Redis's SET */
	} else if (rc_argis(r, 0, "del") || rc_argis(r, 0, "unlink")) {
		for (int i = 1; i < r->argc; i++)
			tx_add(b, MF_OP_DEL, MF_T_NONE, r->argv[i], r->argl[i]);
	} else if (rc_argis(r, 0, "incr") || rc_argis(r, 0, "decr") || rc_argis(r, 0, "incrby") ||
	           rc_argis(r, 0, "decrby")) {
		bool by = r->argc == 3, dec = rc_argis(r, 0, "decr") || rc_argis(r, 0, "decrby");
		d = 1;
		if (by && !rc_parse_ll(r->argv[2], r->argl[2], &d)) {
			*err = E_NOTINT;
			return true;
		}
		if (dec && d == LLONG_MIN) {
			*err = "ERR decrement would overflow";
			return true;
		}
		tx_add(b, MF_OP_INCRBY, MF_T_STRING, k, kn)->arg = (uint64_t)(dec ? -d : d);
	} else if (rc_argis(r, 0, "incrbyfloat")) {
		tx_add(b, MF_OP_INCRBYFLOAT, MF_T_STRING, k, kn)->val =
			mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	} else if (rc_argis(r, 0, "append")) {
		tx_add(b, MF_OP_APPEND, MF_T_STRING, k, kn)->val =
			mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	} else {
		return false;
	}
	return true;
}

/* Lists and sets: RPUSH LPUSH LPOP RPOP SADD SREM SMOVE.  false: not one. */
static bool tx_build_coll(const req *r, txbuild *b, const char **err, const char *k, size_t kn)
{
	if (rc_argis(r, 0, "rpush") || rc_argis(r, 0, "lpush")) {
		for (int i = 2; i < r->argc; i++)
			if (memchr(r->argv[i], '\n', r->argl[i])) {
				*err = E_NEWLINE;
				return true;
			}
		mf_op *o = tx_add(b, MF_OP_RPUSH, MF_T_LIST, k, kn);
		mf_op_clear(o);
		*o = rc_push_op(r, rc_argis(r, 0, "lpush"));
	} else if (rc_argis(r, 0, "lpop") || rc_argis(r, 0, "rpop")) {
		if (r->argc != 2) {
			*err = "ERR memfluxfs: LPOP/RPOP with a count are not supported inside MULTI";
			return true;
		}
		tx_add(b, rc_argis(r, 0, "lpop") ? MF_OP_LPOP : MF_OP_RPOP, MF_T_LIST, k, kn)->arg = 1;
		tx_add(b, MF_OP_DEL, MF_T_LIST, k, kn)->arg = 1; /* emptied: gone, as Redis */
	} else if (rc_argis(r, 0, "sadd") || rc_argis(r, 0, "srem")) {
		int skipped;
		mf_slice v = rc_member_lines(r, 2, &skipped);
		if (skipped && rc_argis(r, 0, "sadd")) {
			mf_slice_unref(&v);
			*err = E_MEMBER_NL;
			return true;
		}
		tx_add(b, MF_OP_READ, MF_T_NONE, k, kn); /* its type, for WRONGTYPE */
		if (v.len)
			tx_add(b, rc_argis(r, 0, "sadd") ? MF_OP_SADD : MF_OP_SREM, MF_T_SET, k, kn)->val = v;
		else
			mf_slice_unref(&v);
	} else if (rc_argis(r, 0, "smove")) {
		mf_op *o = tx_add(b, MF_OP_SMOVE, MF_T_SET, k, kn);
		o->key2 = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		o->val = mf_slice_from(r->argv[3], r->argl[3], r->argl[3]);
	} else {
		return false;
	}
	return true;
}

/* JSON.SET JSON.NUMINCRBY JSON.ARRAPPEND JSON.STRAPPEND. */
static void tx_build_json(const req *r, txbuild *b, const char **err, const char *k, size_t kn)
{
	if (rc_argis(r, 0, "json.set")) {
		size_t plen;
		bool legacy;
		char *path = rc_json_path(r, 2, &plen, &legacy);
		if (r->argc != 4 || mf_json_path_check(path, plen) != 0) {
			free(path);
			*err = r->argc != 4 ? "ERR memfluxfs: JSON.SET NX/XX are not supported inside MULTI"
			                    : "ERR invalid JSON path";
			return;
		}
		mf_op *o = tx_add(b, plen == 1 ? MF_OP_SET : MF_OP_JSON_SETPATH, MF_T_JSON, k, kn);
		if (plen == 1)
			o->arg = 1;
		else
			o->key2 = mf_slice_from(path, plen, plen);
		o->val = mf_slice_from(r->argv[3], r->argl[3], r->argl[3]);
		free(path);
	} else { /* json.numincrby / json.arrappend / json.strappend */
		bool str = rc_argis(r, 0, "json.strappend"), arr = rc_argis(r, 0, "json.arrappend");
		if (str && r->argc > 4) {
			*err = "ERR wrong number of arguments for 'json.strappend' command";
			return;
		}
		size_t plen;
		bool legacy;
		char *path = rc_json_path(r, str && r->argc == 3 ? 99 : 2, &plen, &legacy);
		tx_add(b, MF_OP_READ, MF_T_NONE, k, kn); /* does the document exist */
		mf_op *o = tx_add(b, str ? MF_OP_JSON_STRAPPEND : arr ? MF_OP_JSON_ARRAPPEND
		                                                : MF_OP_JSON_NUMINCRBY, MF_T_JSON, k, kn);
		o->key2 = mf_slice_from(path, plen, plen);
		free(path);
		if (arr) {
			o->val = rc_arrappend_values(r);
		} else {
			int vi = r->argc - 1;
			o->val = mf_slice_from(r->argv[vi], r->argl[vi], r->argl[vi]);
		}
	}
}

/* Add one queued command's sub-ops to b; *err: a reply decided without
 * the store (a bad argument, as Redis finds it at EXEC). */
static void tx_build(const req *r, txbuild *b, const char **err)
{
	const char *k = r->argc > 1 ? r->argv[1] : "";
	size_t kn = r->argc > 1 ? r->argl[1] : 0;
	*err = NULL;
	if (r->argc > 1 && (kn == 0 || kn > MF_KEY_BYTES_MAX)) {
		*err = "ERR memfluxfs does not support empty keys";
		return;
	}
	switch (tx_kind(r)) {
	case TX_READ:
		/* One READ per key argument (MGET/EXISTS: all; others: argv[1]). */
		for (int i = 1; i < r->argc; i++) {
			if (i > 1 && !rc_argis(r, 0, "mget") && !rc_argis(r, 0, "exists"))
				break;
			tx_add(b, MF_OP_READ, MF_T_NONE, r->argv[i], r->argl[i]);
		}
		return;
	case TX_PLAIN:
		return;
	default:
		break;
	}
	if (!tx_build_string(r, b, err, k, kn) && !tx_build_coll(r, b, err, k, kn))
		tx_build_json(r, b, err, k, kn);
}

/* The reply of one queued write from its sub-ops' results. */
static void tx_reply_write(client *c, const req *r, const mf_op *ops, const mf_op_result *res,
                           int n)
{
	int rc = n ? res[n - 1].rc : 0;
	if (rc_argis(r, 0, "set")) {
		r_ok_or_errno(c, rc);
	} else if (rc_argis(r, 0, "del") || rc_argis(r, 0, "unlink")) {
		long long k = 0;
		for (int i = 0; i < n; i++)
			k += res[i].rc == 0;
		r_int(c, k);
	} else if (ops[0].type == MF_OP_INCRBY || ops[0].type == MF_OP_INCRBYFLOAT) {
		rc_incr_reply(c, ops[0].type == MF_OP_INCRBYFLOAT, rc, res[0].res, res[0].out);
	} else if (ops[0].type == MF_OP_APPEND || ops[0].type == MF_OP_RPUSH ||
	           ops[0].type == MF_OP_LPUSH || ops[0].type == MF_OP_SMOVE) {
		if (rc == -EEXIST)
			r_err(c, E_WRONGTYPE);
		else if (rc == -ENOENT && ops[0].type == MF_OP_SMOVE)
			r_int(c, 0);
		else if (rc)
			r_errno(c, rc);
		else
			r_int(c, (long long)res[0].res);
	} else if (ops[0].type == MF_OP_LPOP || ops[0].type == MF_OP_RPOP) {
		rc = res[0].rc;
		if (rc)
			r_nil(c); /* absent or empty (a key of another type too) */
		else
			r_bulk(c, mf_slice_ptr(res[0].out), res[0].out.len - 1);
	} else if (rc_argis(r, 0, "sadd") || rc_argis(r, 0, "srem")) {
		if (res[0].rc == 0 && res[0].type != MF_T_SET)
			r_err(c, E_WRONGTYPE);
		else if (n < 2 || rc == -ENOENT)
			r_int(c, 0);
		else if (rc)
			r_errno(c, rc);
		else
			r_int(c, (long long)res[1].res);
	} else if (rc_argis(r, 0, "json.set")) {
		if (rc == -EEXIST)
			r_err(c, E_WRONGTYPE);
		else if (rc == -ENOENT)
			r_err(c, "ERR new objects must be created at the root");
		else if (rc)
			r_err(c, rc == -EINVAL ? "ERR invalid JSON" : "ERR memfluxfs: JSON.SET failed");
		else
			r_ok(c);
	} else { /* JSON updates: READ, then the op */
		size_t plen;
		bool legacy;
		bool str = rc_argis(r, 0, "json.strappend");
		char *path = rc_json_path(r, str && r->argc == 3 ? 99 : 2, &plen, &legacy);
		bool absent = res[0].rc != 0 || res[0].type != MF_T_JSON;
		if (res[0].rc == 0 && res[0].type != MF_T_JSON)
			r_err(c, E_WRONGTYPE);
		else
			rc_json_update_reply(c, ops[1].type, rc, absent, legacy, path, res[1].res, res[1].out);
		free(path);
	}
}

void c_multi(resp_ctx *x, client *c, req *r)
{
	(void)x;
	(void)r;
	if (c->in_multi) {
		r_err(c, "ERR MULTI calls can not be nested");
		return;
	}
	c->in_multi = true;
	c->multi_dirty = false;
	r_ok(c);
}

void c_discard(resp_ctx *x, client *c, req *r)
{
	(void)x;
	(void)r;
	if (!c->in_multi) {
		r_err(c, "ERR DISCARD without MULTI");
		return;
	}
	txq_clear(c);
	unwatch(c);
	r_ok(c);
}

void c_watch(resp_ctx *x, client *c, req *r)
{
	if (c->in_multi) {
		r_err(c, "ERR WATCH inside MULTI is not allowed");
		return;
	}
	for (int i = 1; i < r->argc; i++) {
		mf_entry_info e;
		uint64_t v = rc_kget(x, r, i, false, &e) == 0 ? e.version : 0;
		c->watch = mf_xrealloc(c->watch, (size_t)(c->nwatch + 1) * sizeof *c->watch);
		watched *w = &c->watch[c->nwatch++];
		w->k = mf_xmalloc(r->argl[i] + 1);
		memcpy(w->k, r->argv[i], r->argl[i]);
		w->n = r->argl[i];
		w->version = v;
	}
	r_ok(c);
}

void c_unwatch(resp_ctx *x, client *c, req *r)
{
	(void)x;
	(void)r;
	unwatch(c);
	r_ok(c);
}

void c_exec(resp_ctx *x, client *c, req *r)
{
	(void)r;
	if (!c->in_multi) {
		r_err(c, "ERR EXEC without MULTI");
		return;
	}
	if (c->multi_dirty) {
		txq_clear(c);
		unwatch(c);
		r_err(c, "EXECABORT Transaction discarded because of previous errors.");
		return;
	}
	lockset m = rc_lock_all(x);
	/* WATCH: any watched key changed (by anyone) since: nothing runs. */
	bool changed = false;
	for (int i = 0; i < c->nwatch && !changed; i++) {
		mf_entry_info e;
		uint64_t v = mf_store_get(x->st, c->watch[i].k, c->watch[i].n, false, &e) == 0
		                     ? e.version : 0;
		changed = v != c->watch[i].version;
	}
	if (changed) {
		rc_unlock_set(x, m);
		txq_clear(c);
		unwatch(c);
		r_nil_arr(c);
		return;
	}
	int nq = c->ntxq;
	txbuild b = {0};
	int *first = mf_xmalloc((size_t)(nq + 1) * sizeof *first);
	const char **errs = mf_xmalloc((size_t)(nq + 1) * sizeof *errs);
	bool writes = false;
	req *rs = mf_xmalloc((size_t)(nq + 1) * sizeof *rs);
	for (int i = 0; i < nq; i++) {
		rs[i] = (req){NULL, c->txq[i].argc, (const char **)c->txq[i].argv, c->txq[i].argl, NULL};
		first[i] = b.n;
		tx_build(&rs[i], &b, &errs[i]);
		writes = writes || tx_kind(&rs[i]) == TX_WRITE;
	}
	first[nq] = b.n;
	mf_op op = {0};
	int rc = 0;
	if (writes) {
		op.type = MF_OP_MULTI;
		op.val = mf_multi_encode(b.ops, (size_t)b.n);
		rc = mf_db_commit_notify(x->db, &op);
	}
	r_arr(c, (size_t)nq);
	for (int i = 0; i < nq; i++) {
		int n = first[i + 1] - first[i];
		if (errs[i]) {
			r_err(c, errs[i]);
		} else if (rc) {
			r_errno(c, rc); /* the record itself failed: nothing ran */
		} else if (tx_kind(&rs[i]) == TX_WRITE) {
			tx_reply_write(c, &rs[i], b.ops + first[i], op.sub + first[i], n);
		} else {
			/* A read (or PING/ECHO): the command itself, its keys as
			 * the READ sub-ops saw them (without writes: now, under
			 * every stripe lock). */
			const mf_op_result **view = NULL;
			if (writes && n) {
				view = calloc((size_t)rs[i].argc, sizeof *view);
				for (int j = 0; j < n; j++)
					view[1 + j] = &op.sub[first[i] + j];
				rc_tx_view = (const mf_op_result *const *)view;
			}
			const cmd *k = cmd_find(rs[i].argv[0], rs[i].argl[0]);
			k->fn(x, c, &rs[i]);
			rc_tx_view = NULL;
			free(view);
		}
	}
	rc_unlock_set(x, m);
	mf_op_clear(&op);
	for (int i = 0; i < b.n; i++)
		mf_op_clear(&b.ops[i]);
	free(b.ops);
	free(first);
	free(errs);
	free(rs);
	txq_clear(c);
	unwatch(c);
}
