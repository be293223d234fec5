/*
 * cmd.c — the command table (name, arity, flags, key positions,
 * handler), COMMAND, dispatch (cmd_run: AUTH, arity, MULTI queueing) and
 * the pipelined writes (cmd_defer / cmd_flush: enqueue all, wait once).
 * The commands themselves are in cmd_*.c (cmd_int.h lists them).
 */
#include "cmd_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void c_command(resp_ctx *x, client *c, req *r);

/* ---------- table ---------- */

static const cmd cmds[] = {
	{"ping", -1, CMD_READONLY, 0, 0, 0, c_ping},
	{"echo", 2, CMD_READONLY, 0, 0, 0, c_echo},
	{"auth", -2, CMD_NOAUTH, 0, 0, 0, c_auth},
	{"hello", -1, CMD_NOAUTH, 0, 0, 0, c_hello},
	{"select", 2, CMD_READONLY, 0, 0, 0, c_select},
	{"quit", -1, CMD_NOAUTH, 0, 0, 0, c_quit},
	{"command", -1, 0, 0, 0, 0, c_command},
	{"client", -2, 0, 0, 0, 0, c_client},
	{"config", -2, 0, 0, 0, 0, c_config},
	{"info", -1, 0, 0, 0, 0, c_dbinfo},
	{"get", 2, CMD_READONLY, 1, 1, 1, c_get},
	{"set", -3, CMD_WRITE, 1, 1, 1, c_set},
	{"mget", -2, CMD_READONLY, 1, -1, 1, c_mget},
	{"mset", -3, CMD_WRITE, 1, -1, 2, c_mset},
	{"del", -2, CMD_WRITE, 1, -1, 1, c_del},
	{"unlink", -2, CMD_WRITE, 1, -1, 1, c_del},
	{"exists", -2, CMD_READONLY, 1, -1, 1, c_exists},
	{"type", 2, CMD_READONLY, 1, 1, 1, c_type},
	{"append", 3, CMD_WRITE, 1, 1, 1, c_append},
	{"strlen", 2, CMD_READONLY, 1, 1, 1, c_strlen},
	{"getrange", 4, CMD_READONLY, 1, 1, 1, c_getrange},
	{"setrange", 4, CMD_WRITE, 1, 1, 1, c_setrange},
	{"rename", 3, CMD_WRITE, 1, 2, 1, c_rename},
	{"renamenx", 3, CMD_WRITE, 1, 2, 1, c_renamenx},
	{"keys", 2, 0, 0, 0, 0, c_keys},
	{"scan", -2, 0, 0, 0, 0, c_scan},
	{"dbsize", 1, CMD_READONLY, 0, 0, 0, c_dbsize},
	{"lpush", -3, CMD_WRITE, 1, 1, 1, c_lpush},
	{"rpush", -3, CMD_WRITE, 1, 1, 1, c_rpush},
	{"lpop", -2, CMD_WRITE, 1, 1, 1, c_lpop},
	{"rpop", -2, CMD_WRITE, 1, 1, 1, c_rpop},
	{"blpop", -3, CMD_WRITE | CMD_BLOCKING, 1, -2, 1, c_blpop},
	{"brpop", -3, CMD_WRITE | CMD_BLOCKING, 1, -2, 1, c_brpop},
	{"llen", 2, CMD_READONLY, 1, 1, 1, c_llen},
	{"lrange", 4, CMD_READONLY, 1, 1, 1, c_lrange},
	{"lindex", 3, CMD_READONLY, 1, 1, 1, c_lindex},
	{"incr", 2, CMD_WRITE, 1, 1, 1, c_incr},
	{"decr", 2, CMD_WRITE, 1, 1, 1, c_decr},
	{"incrby", 3, CMD_WRITE, 1, 1, 1, c_incrby},
	{"decrby", 3, CMD_WRITE, 1, 1, 1, c_decrby},
	{"incrbyfloat", 3, CMD_WRITE, 1, 1, 1, c_incrbyfloat},
	{"sadd", -3, CMD_WRITE, 1, 1, 1, c_sadd},
	{"srem", -3, CMD_WRITE, 1, 1, 1, c_srem},
	{"smembers", 2, CMD_READONLY, 1, 1, 1, c_smembers},
	{"sismember", 3, CMD_READONLY, 1, 1, 1, c_sismember},
	{"scard", 2, CMD_READONLY, 1, 1, 1, c_scard},
	{"smove", 4, CMD_WRITE, 1, 2, 1, c_smove},
	{"json.get", -2, CMD_READONLY, 1, 1, 1, c_json_get},
	{"json.set", -4, CMD_WRITE, 1, 1, 1, c_json_set},
	{"json.del", -2, CMD_WRITE, 1, 1, 1, c_json_del},
	{"json.type", -2, CMD_READONLY, 1, 1, 1, c_json_type},
	{"json.numincrby", 4, CMD_WRITE, 1, 1, 1, c_json_numincrby},
	{"json.arrappend", -4, CMD_WRITE, 1, 1, 1, c_json_arrappend},
	{"json.strappend", -3, CMD_WRITE, 1, 1, 1, c_json_strappend},
	{"expire", -3, CMD_WRITE, 1, 1, 1, c_expire},
	{"pexpire", -3, CMD_WRITE, 1, 1, 1, c_pexpire},
	{"expireat", -3, CMD_WRITE, 1, 1, 1, c_expireat},
	{"pexpireat", -3, CMD_WRITE, 1, 1, 1, c_pexpireat},
	{"persist", 2, CMD_WRITE, 1, 1, 1, c_persist},
	{"ttl", 2, CMD_READONLY, 1, 1, 1, c_ttl},
	{"pttl", 2, CMD_READONLY, 1, 1, 1, c_pttl},
	{"expiretime", 2, CMD_READONLY, 1, 1, 1, c_expiretime},
	{"pexpiretime", 2, CMD_READONLY, 1, 1, 1, c_pexpiretime},
	{"multi", 1, 0, 0, 0, 0, c_multi},
	{"exec", 1, 0, 0, 0, 0, c_exec},
	{"discard", 1, 0, 0, 0, 0, c_discard},
	{"watch", -2, 0, 1, -1, 1, c_watch},
	{"unwatch", 1, 0, 0, 0, 0, c_unwatch},
	{"save", 1, 0, 0, 0, 0, c_save},
	{"bgsave", -1, 0, 0, 0, 0, c_bgsave},
	{"lastsave", 1, CMD_READONLY, 0, 0, 0, c_lastsave},
	{"flushdb", -1, CMD_WRITE, 0, 0, 0, c_flushdb},
	{"flushall", -1, CMD_WRITE, 0, 0, 0, c_flushdb},
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

const cmd *cmd_find(const char *name, size_t len)
{
	for (size_t i = 0; i < NCMDS; i++)
		if (strlen(cmds[i].name) == len && strncasecmp(cmds[i].name, name, len) == 0)
			return &cmds[i];
	return NULL;
}

static void command_info(client *c, const cmd *k)
{
	r_arr(c, 10);
	r_cstr(c, k->name);
	r_int(c, k->arity);
	bool ro = k->flags & CMD_READONLY, wr = k->flags & CMD_WRITE;
	r_arr(c, (size_t)(ro + wr));
	if (wr)
		r_simple(c, "write");
	if (ro)
		r_simple(c, "readonly");
	r_int(c, k->first);
	r_int(c, k->last);
	r_int(c, k->step);
	r_arr(c, 0);
	r_arr(c, 0);
	r_arr(c, 0);
	r_arr(c, 0);
}

static void c_command(resp_ctx *x, client *c, req *r)
{
	(void)x;
	if (r->argc == 1) {
		r_arr(c, NCMDS);
		for (size_t i = 0; i < NCMDS; i++)
			command_info(c, &cmds[i]);
	} else if (rc_argis(r, 1, "count") && r->argc == 2) {
		r_int(c, (long long)NCMDS);
	} else if (rc_argis(r, 1, "docs")) {
		/* No docs: redis-cli then uses its built-in hints. */
		r_map(c, 0);
	} else if (rc_argis(r, 1, "info")) {
		r_arr(c, (size_t)r->argc - 2);
		for (int i = 2; i < r->argc; i++) {
			const cmd *k = cmd_find(r->argv[i], r->argl[i]);
			if (k)
				command_info(c, k);
			else
				r_nil_arr(c);
		}
	} else {
		r_unknown_subcommand(c, r, "COMMAND");
	}
}

static bool arity_ok(const cmd *k, int argc)
{
	return k->arity > 0 ? argc == k->arity : argc >= -k->arity;
}

bool cmd_is_keyed(req *r)
{
	const cmd *k = cmd_find(r->argv[0], r->argl[0]);
	return k && (k->flags & (CMD_READONLY | CMD_WRITE)) && !(k->flags & CMD_BLOCKING);
}

bool cmd_is_readonly(req *r)
{
	const cmd *k = cmd_find(r->argv[0], r->argl[0]);
	return k && (k->flags & CMD_READONLY);
}

void cmd_run(resp_ctx *x, client *c, req *r)
{
	const cmd *k = cmd_find(r->argv[0], r->argl[0]);
	if (!k) {
		/* Redis's wording, byte for byte: each argument quoted and
		 * followed by a space, up to 128 bytes of them. */
		rbuf m = {0};
		rb_fmt(&m, "-ERR unknown command '%.*s', with args beginning with: ",
		       (int)(r->argl[0] > 128 ? 128 : r->argl[0]), r->argv[0]);
		size_t args = 0;
		for (int i = 1; i < r->argc && args < 128; i++) {
			int room = (int)(128 - args);
			int n = (int)r->argl[i] < room ? (int)r->argl[i] : room;
			rb_fmt(&m, "'%.*s' ", n, r->argv[i]);
			args += (size_t)n + 3;
		}
		for (size_t i = 1; i < m.len; i++)
			if (m.p[i] == '\r' || m.p[i] == '\n')
				m.p[i] = ' ';
		rb_put(&c->out, m.p, m.len);
		rb_put(&c->out, "\r\n", 2);
		free(m.p);
		if (c->in_multi)
			c->multi_dirty = true; /* Redis: EXEC will abort */
		return;
	}
	if (!c->authed && !(k->flags & CMD_NOAUTH)) {
		r_err(c, "NOAUTH Authentication required.");
		return;
	}
	if (!arity_ok(k, r->argc)) {
		char msg[128];
		snprintf(msg, sizeof msg, "ERR wrong number of arguments for '%s' command", k->name);
		r_err(c, msg);
		if (c->in_multi)
			c->multi_dirty = true;
		return;
	}
	if (c->in_multi && k->fn != c_exec && k->fn != c_discard && k->fn != c_multi &&
	    k->fn != c_watch && k->fn != c_quit) {
		rc_tx_queue(c, r);
		return;
	}
	k->fn(x, c, r);
}

/* ---------- pipelined writes: enqueue all, wait once ----------
 *
 * A worker (or the loop thread) running a client's pipeline hands each
 * request to cmd_defer first.  A blind SET, a push or a pop of the key
 * the batch already holds (same kind) has its op queued in the WAL
 * (mf_db_commit_enqueue: its place in WAL and apply order is fixed) and
 * its reply deferred; cmd_flush then waits, and the first wait's leader
 * writes the whole group with one write (one fsync in always mode) instead
 * of one round trip per command.
 *
 * Why this keeps Redis's semantics:
 *   - replies in order: anything not deferred is run only after cmd_flush
 *     (a read after queued writes therefore sees them: a barrier);
 *   - each reply is its own op's result: apply's (op.res, op.out) for that
 *     op, in enqueue order, so pushes count the elements of the earlier
 *     pushes and pops return what the earlier pops left;
 *   - one key and one kind per batch: enqueue's up-front checks see only
 *     applied ops, so an op depending on a queued op of another kind (LPOP
 *     after a queued RPUSH that creates the list, SET over a list being
 *     pushed) is run after a flush instead;
 *   - atomic against other RESP clients as before: the key's stripe is
 *     held shared from the first enqueue to the flush (blind ops are
 *     shared already), so a read-modify-write command waits for the batch;
 *   - the kernel-cache hook: the batch's last op is not enqueued by
 *     cmd_defer but committed by cmd_flush with mf_db_commit_notify, which
 *     fires the hook for the key after every op of the batch is applied.
 */
enum { BATCH_SET = 1, BATCH_PUSH, BATCH_POP };

/* The batch kind of a request and whether its arguments are valid for
 * deferring (anything else, errors included, runs through cmd_run). */
static int defer_kind(const client *c, const req *r, long long *count)
{
	if (!c->authed || c->in_multi || r->argc < 2 || r->argl[1] == 0 ||
	    r->argl[1] > MF_KEY_BYTES_MAX)
		return 0; /* MULTI: queued, not run */
	const char *n = r->argv[0];
	size_t l = r->argl[0];
	if (l == 3 && strncasecmp(n, "set", 3) == 0)
		return r->argc == 3 ? BATCH_SET : 0;
	if (l == 5 && (strncasecmp(n, "lpush", 5) == 0 || strncasecmp(n, "rpush", 5) == 0)) {
		if (r->argc < 3)
			return 0;
		for (int i = 2; i < r->argc; i++)
			if (memchr(r->argv[i], '\n', r->argl[i]))
				return 0;
		return BATCH_PUSH;
	}
	if (l == 4 && (strncasecmp(n, "lpop", 4) == 0 || strncasecmp(n, "rpop", 4) == 0)) {
		*count = 1;
		if (r->argc > 3)
			return 0;
		if (r->argc == 3 && (!rc_parse_ll(r->argv[2], r->argl[2], count) || *count <= 0))
			return 0;
		return BATCH_POP;
	}
	return 0;
}

static bool is_left(const req *r)
{
	return (r->argv[0][0] | 0x20) == 'l';
}

static mf_op defer_op(int kind, const req *r, long long count)
{
	mf_op op;
	if (kind == BATCH_SET) {
		op = rc_kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]);
		op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	} else if (kind == BATCH_PUSH) {
		op = rc_push_op(r, is_left(r));
	} else {
		op = rc_kop(is_left(r) ? MF_OP_LPOP : MF_OP_RPOP, MF_T_LIST, r->argv[1], r->argl[1]);
		op.arg = (uint64_t)count;
	}
	return op;
}

bool cmd_defer(resp_ctx *x, client *c, req *r)
{
	long long count = 1;
	int kind = defer_kind(c, r, &count);
	batch *b = c->b;
	if (!kind)
		return false;
	if (b && b->n > 0) {
		const req *first = b->p[0].r;
		/* Another key or kind: finish this batch (its replies come
		 * before r's) and start one with r. */
		if (b->kind != kind || b->n == MF_RESP_BATCH || first->argl[1] != r->argl[1] ||
		    memcmp(first->argv[1], r->argv[1], r->argl[1]) != 0)
			cmd_flush(x, c);
	}
	if (!b || b->n == 0) {
		/* A new batch: only ops whose immediate path is the plain op
		 * (the key absent or of the op's type; a pop needs the list).
		 * The rest (SET over a list, WRONGTYPE, nil pops) run as usual. */
		mf_entry_info e;
		bool exists = rc_kget(x, r, 1, false, &e) == 0;
		mf_type want = kind == BATCH_SET ? MF_T_STRING : MF_T_LIST;
		if ((exists && e.type != want) || (kind == BATCH_POP && !exists))
			return false;
		if (!b)
			b = c->b = mf_xmalloc(sizeof *b);
		b->kind = kind;
		b->n = 0;
		b->stripe = rc_stripe_of(r->argv[1], r->argl[1]);
		pthread_rwlock_rdlock(&x->stripes[b->stripe]);
	}
	/* Queue the previous last op: this one becomes the last (see above). */
	if (b->n > 0) {
		pending *prev = &b->p[b->n - 1];
		prev->rc = mf_db_commit_enqueue(x->db, &prev->op, &prev->t);
		if (prev->rc == 0)
			prev->rc = 1; /* queued: wait for it */
	}
	pending *p = &b->p[b->n++];
	p->r = r;
	p->op = defer_op(kind, r, count);
	p->rc = 0;
	return true;
}

static void defer_reply(client *c, int kind, const req *r, mf_op *op, int rc)
{
	if (kind == BATCH_SET) {
		r_ok_or_errno(c, rc);
	} else if (kind == BATCH_PUSH) {
		r_int_result(c, rc, (long long)op->res);
	} else if (rc == -EEXIST) {
		r_err(c, E_WRONGTYPE); /* changed type through the mount meanwhile */
	} else {
		rc_pop_result(c, op, rc, is_left(r), r->argc == 3);
	}
}

void cmd_flush(resp_ctx *x, client *c)
{
	batch *b = c->b;
	if (!b || b->n == 0)
		return;
	/* The last op: enqueue + wait (leading the group's write if no one
	 * else is) + the change hook for the key. */
	pending *last = &b->p[b->n - 1];
	last->rc = mf_db_commit_notify(x->db, &last->op);
	bool popped = false;
	for (int i = 0; i < b->n; i++) {
		pending *p = &b->p[i];
		/* Already written by the last op's wait (WAL order): returns
		 * at once with this op's own result. */
		if (i < b->n - 1 && p->rc == 1)
			p->rc = mf_db_commit_wait(x->db, &p->t);
		if (b->kind == BATCH_POP && p->rc == 0)
			popped = true;
		defer_reply(c, b->kind, p->r, &p->op, p->rc);
		mf_op_clear(&p->op);
	}
	/* Redis has no empty lists: once, after the batch's pops (conditional
	 * DEL, so a push through the mount in between wins), as do_pop does
	 * after each, and before the stripe is released. */
	if (popped)
		rc_drop_if_empty(x, b->p[0].r);
	pthread_rwlock_unlock(&x->stripes[b->stripe]);
	for (int i = 0; i < b->n; i++)
		req_free(b->p[i].r);
	b->n = 0;
	b->kind = 0;
}
