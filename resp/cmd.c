/*
 * cmd.c — the commands: Redis's replies and error strings on the memfluxfs
 * store.  Reads use mf_store_get (slice references, no store lock held
 * while replying); every mutation is an mf_op through mf_db_commit_notify.
 *
 * Mapping to the store's types: Redis strings are /kv keys, lists /lists
 * keys (one element per line, so an element cannot contain '\n'), RedisJSON
 * documents /json keys (TYPE says "ReJSON-RL", as RedisJSON does).
 * Redis replaces a key of any type on SET/RENAME; the store refuses a type
 * change in one op, so that case is a DEL then the op (two WAL records).
 */
#include "resp_int.h"
#include "../store/json.h"
#include "../store/set.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define VERSION "7.0.15"
#define E_WRONGTYPE "WRONGTYPE Operation against a key holding the wrong kind of value"
#define E_SYNTAX "ERR syntax error"
#define E_NOTINT "ERR value is not an integer or out of range"
#define E_NOKEY "ERR no such key"
#define E_NEWLINE "ERR memfluxfs list elements are lines: an element cannot contain a newline"

/* ---------- replies ---------- */

static void r_simple(client *c, const char *s)
{
	rb_fmt(&c->out, "+%s\r\n", s);
}

static void r_ok(client *c)
{
	rb_put(&c->out, "+OK\r\n", 5);
}

static void r_err(client *c, const char *s)
{
	rb_fmt(&c->out, "-%s\r\n", s);
}

static void r_int(client *c, long long v)
{
	rb_fmt(&c->out, ":%lld\r\n", v);
}

static void r_bulk(client *c, const void *p, size_t n)
{
	rb_fmt(&c->out, "$%zu\r\n", n);
	rb_put(&c->out, p, n);
	rb_put(&c->out, "\r\n", 2);
}

static void r_cstr(client *c, const char *s)
{
	r_bulk(c, s, strlen(s));
}

static void r_nil(client *c)
{
	if (c->proto == 3)
		rb_put(&c->out, "_\r\n", 3);
	else
		rb_put(&c->out, "$-1\r\n", 5);
}

static void r_nil_arr(client *c)
{
	if (c->proto == 3)
		rb_put(&c->out, "_\r\n", 3);
	else
		rb_put(&c->out, "*-1\r\n", 5);
}

static void r_arr(client *c, size_t n)
{
	rb_fmt(&c->out, "*%zu\r\n", n);
}

static void r_map(client *c, size_t n)
{
	if (c->proto == 3)
		rb_fmt(&c->out, "%%%zu\r\n", n);
	else
		rb_fmt(&c->out, "*%zu\r\n", 2 * n);
}

/* A store/WAL failure as an error reply. */
static void r_errno(client *c, int err)
{
	if (err == -EFBIG) {
		r_err(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
		return;
	}
	char msg[160];
	snprintf(msg, sizeof msg, "ERR memfluxfs: %s", strerror(-err));
	r_err(c, msg);
}

/* A write's reply: its integer result, or why it failed.  -EEXIST: the key
 * holds another type (it may have changed type meanwhile, e.g. through the
 * mount, after the command looked). */
static void r_int_result(client *c, int rc, long long v)
{
	if (rc == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else if (rc)
		r_errno(c, rc);
	else
		r_int(c, v);
}

/* ---------- arguments ---------- */

static bool argis(const req *r, int i, const char *s)
{
	return i < r->argc && r->argl[i] == strlen(s) && strncasecmp(r->argv[i], s, r->argl[i]) == 0;
}

/* Redis's string2ll: optional '-', digits, no spaces, no leading '+'. */
static bool parse_ll(const char *p, size_t n, long long *out)
{
	if (n == 0 || n > 20)
		return false;
	char buf[24];
	memcpy(buf, p, n);
	buf[n] = '\0';
	if (buf[0] == '+' || isspace((unsigned char)buf[0]) || (n > 1 && buf[0] == '0') ||
	    (n > 2 && buf[0] == '-' && buf[1] == '0') || strcmp(buf, "-") == 0)
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(buf, &end, 10);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

static bool arg_ll(client *c, const req *r, int i, long long *v)
{
	if (parse_ll(r->argv[i], r->argl[i], v))
		return true;
	r_err(c, E_NOTINT);
	return false;
}

/* ---------- store access ---------- */

/* While EXEC builds the replies of queued reads: what each key argument
 * (by argv index) looked like at its place in the transaction (the MULTI
 * record's READ results).  Thread-local: set and cleared around one
 * command's reply on the thread running it. */
static _Thread_local const mf_op_result *const *tx_view;

static int kget(resp_ctx *x, const req *r, int i, bool want, mf_entry_info *e)
{
	memset(e, 0, sizeof *e);
	if (tx_view) {
		const mf_op_result *v = tx_view[i];
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

/* The replies a read sends for a missing key (kget_as). */
static void r_zero(client *c)
{
	r_int(c, 0);
}

static void r_empty_bulk(client *c)
{
	r_bulk(c, "", 0);
}

static void r_empty_arr(client *c)
{
	r_arr(c, 0);
}

/* Key argv[1] when it holds `type`: true.  Otherwise false, with the reply
 * sent: `missing` for no such key (each command answers that its own way),
 * WRONGTYPE for another type.  With `want`, e->val holds a reference the
 * caller drops. */
static bool kget_as(resp_ctx *x, client *c, const req *r, uint8_t type, bool want,
                    void (*missing)(client *), mf_entry_info *e)
{
	if (kget(x, r, 1, want, e) != 0) {
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

static mf_op kop(int type, int ktype, const char *k, size_t n)
{
	mf_op op = {0};
	op.type = (uint8_t)type;
	op.ktype = (uint8_t)ktype;
	op.key = mf_slice_from(k, n, n);
	return op;
}

/* Commit and drop the op's references (LPOP/RPOP output: see pop). */
static int commit(resp_ctx *x, mf_op *op)
{
	int r = mf_db_commit_notify(x->db, op);
	mf_op_clear(op);
	return r;
}

/* Delete a key whatever its type (0 if it was there, -ENOENT if not). */
static int del_key(resp_ctx *x, const char *k, size_t n)
{
	mf_entry_info e;
	if (mf_store_get(x->st, k, n, false, &e) != 0)
		return -ENOENT;
	mf_op op = kop(MF_OP_DEL, e.type, k, n);
	return commit(x, &op);
}

/* ---------- per-key locks (atomic read-modify-write among RESP clients) */

static unsigned stripe_of(const char *k, size_t n)
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
		m |= (lockset)1 << stripe_of(r->argv[i], r->argl[i]);
	for (unsigned i = 0; i < MF_RESP_STRIPES; i++)
		if (m >> i & 1) {
			if (excl)
				pthread_rwlock_wrlock(&x->stripes[i]);
			else
				pthread_rwlock_rdlock(&x->stripes[i]);
		}
	return m;
}

static lockset lock_args(resp_ctx *x, const req *r, int first, int last, int step)
{
	return lock_args_mode(x, r, first, last, step, true);
}

static lockset lock_shared(resp_ctx *x, const req *r, int first, int last, int step)
{
	return lock_args_mode(x, r, first, last, step, false);
}

static lockset lock_all(resp_ctx *x)
{
	for (unsigned i = 0; i < MF_RESP_STRIPES; i++)
		pthread_rwlock_wrlock(&x->stripes[i]);
	return ((lockset)1 << MF_RESP_STRIPES) - 1;
}

static void unlock_set(resp_ctx *x, lockset m)
{
	for (unsigned i = 0; i < MF_RESP_STRIPES; i++)
		if (m >> i & 1)
			pthread_rwlock_unlock(&x->stripes[i]);
}

/* Empty keys: the store (and its snapshot format) holds keys of 1 byte or
 * more.  Redis allows "", memfluxfs refuses it explicitly. */
static bool keys_ok(client *c, const req *r, int first, int last, int step)
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

/* ---------- connection commands ---------- */

static void c_ping(resp_ctx *x, client *c, req *r)
{
	(void)x;
	if (r->argc > 2) {
		r_err(c, "ERR wrong number of arguments for 'ping' command");
		return;
	}
	if (r->argc == 2)
		r_bulk(c, r->argv[1], r->argl[1]);
	else
		r_simple(c, "PONG");
}

static void c_echo(resp_ctx *x, client *c, req *r)
{
	(void)x;
	r_bulk(c, r->argv[1], r->argl[1]);
}

static bool password_ok(resp_ctx *x, const char *user, size_t ulen, const char *pw, size_t plen)
{
	if (user && !(ulen == 7 && memcmp(user, "default", 7) == 0))
		return false;
	size_t n = strlen(x->password);
	/* Length-independent comparison time is not needed on loopback, but
	 * costs nothing: compare every byte. */
	unsigned diff = n != plen;
	for (size_t i = 0; i < plen; i++)
		diff |= (unsigned char)pw[i] ^ (unsigned char)(i < n ? x->password[i] : 0);
	return diff == 0;
}

static void c_auth(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 3) {
		r_err(c, E_SYNTAX);
		return;
	}
	if (!x->password && r->argc == 2) {
		r_err(c, "ERR AUTH <password> called without any password configured for the "
		         "default user. Are you sure your configuration is correct?");
		return;
	}
	bool ok = x->password ? (r->argc == 3 ? password_ok(x, r->argv[1], r->argl[1], r->argv[2], r->argl[2])
	                                      : password_ok(x, NULL, 0, r->argv[1], r->argl[1]))
	                      : (argis(r, 1, "default")); /* no password: any pass for default */
	if (!ok) {
		r_err(c, "WRONGPASS invalid username-password pair or user is disabled.");
		return;
	}
	c->authed = true;
	r_ok(c);
}

static bool valid_client_name(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < '!' || p[i] > '~')
			return false;
	return true;
}

static void set_name(client *c, const char *p, size_t n)
{
	free(c->name);
	c->name = NULL;
	if (n) {
		c->name = mf_xmalloc(n + 1);
		memcpy(c->name, p, n);
		c->name[n] = '\0';
	}
}

static void c_hello(resp_ctx *x, client *c, req *r)
{
	long long ver = c->proto;
	int i = 1;
	if (r->argc >= 2) {
		if (!parse_ll(r->argv[1], r->argl[1], &ver)) {
			r_err(c, "ERR Protocol version is not an integer or out of range");
			return;
		}
		i = 2;
		if (ver < 2 || ver > 3) {
			r_err(c, "NOPROTO unsupported protocol version");
			return;
		}
	}
	const char *name = NULL;
	size_t nlen = 0;
	for (; i < r->argc; i++) {
		if (argis(r, i, "auth") && i + 2 < r->argc) {
			bool ok = x->password ? password_ok(x, r->argv[i + 1], r->argl[i + 1], r->argv[i + 2],
			                                    r->argl[i + 2])
			                      : argis(r, i + 1, "default");
			if (!ok) {
				r_err(c, "WRONGPASS invalid username-password pair or user is disabled.");
				return;
			}
			c->authed = true;
			i += 2;
		} else if (argis(r, i, "setname") && i + 1 < r->argc) {
			name = r->argv[i + 1];
			nlen = r->argl[i + 1];
			if (!valid_client_name(name, nlen)) {
				r_err(c, "ERR Client names cannot contain spaces, newlines or special characters.");
				return;
			}
			i++;
		} else {
			char msg[200];
			snprintf(msg, sizeof msg, "ERR Syntax error in HELLO option '%.*s'", (int)(r->argl[i] > 100 ? 100 : r->argl[i]),
			         r->argv[i]);
			r_err(c, msg);
			return;
		}
	}
	if (!c->authed) {
		r_err(c, "NOAUTH HELLO must be called with the client already authenticated, otherwise "
		         "the HELLO AUTH <user> <pass> option can be used to authenticate the "
		         "client and select the RESP protocol version at the same time");
		return;
	}
	if (name)
		set_name(c, name, nlen);
	c->proto = (int)ver;
	r_map(c, 7);
	r_cstr(c, "server");
	r_cstr(c, "redis");
	r_cstr(c, "version");
	r_cstr(c, VERSION);
	r_cstr(c, "proto");
	r_int(c, ver);
	r_cstr(c, "id");
	r_int(c, (long long)c->id);
	r_cstr(c, "mode");
	r_cstr(c, "standalone");
	r_cstr(c, "role");
	r_cstr(c, "master");
	r_cstr(c, "modules");
	r_arr(c, 0);
}

static void c_select(resp_ctx *x, client *c, req *r)
{
	(void)x;
	long long db;
	if (!arg_ll(c, r, 1, &db))
		return;
	if (db != 0)
		r_err(c, "ERR DB index is out of range");
	else
		r_ok(c);
}

static void c_quit(resp_ctx *x, client *c, req *r)
{
	(void)x;
	(void)r;
	r_ok(c);
	c->quit = true;
}

static void c_client(resp_ctx *x, client *c, req *r)
{
	(void)x;
	if (argis(r, 1, "id") && r->argc == 2) {
		r_int(c, (long long)c->id);
	} else if (argis(r, 1, "getname") && r->argc == 2) {
		if (c->name)
			r_cstr(c, c->name);
		else
			r_nil(c);
	} else if (argis(r, 1, "setname") && r->argc == 3) {
		if (!valid_client_name(r->argv[2], r->argl[2])) {
			r_err(c, "ERR Client names cannot contain spaces, newlines or special characters.");
			return;
		}
		set_name(c, r->argv[2], r->argl[2]);
		r_ok(c);
	} else if (argis(r, 1, "setinfo") && r->argc == 4) {
		r_ok(c);
	} else if (argis(r, 1, "id") || argis(r, 1, "getname") || argis(r, 1, "setname") ||
	           argis(r, 1, "setinfo")) {
		char msg[128];
		snprintf(msg, sizeof msg, "ERR wrong number of arguments for 'client|%.*s' command",
		         (int)r->argl[1], r->argv[1]);
		for (char *p = msg; *p; p++)
			if (p > msg + 40)
				*p = (char)tolower((unsigned char)*p);
		r_err(c, msg);
	} else {
		char msg[200];
		snprintf(msg, sizeof msg, "ERR unknown subcommand '%.*s'. Try CLIENT HELP.",
		         (int)(r->argl[1] > 128 ? 128 : r->argl[1]), r->argv[1]);
		r_err(c, msg);
	}
}

static void c_config(resp_ctx *x, client *c, req *r)
{
	(void)x;
	if (argis(r, 1, "get") && r->argc >= 3) {
		/* Enough for redis-benchmark's start-up query; memfluxfs is
		 * configured on its command line. */
		size_t n = 0;
		bool save = false, aof = false;
		for (int i = 2; i < r->argc; i++) {
			if (argis(r, i, "save") && !save)
				save = true, n++;
			if (argis(r, i, "appendonly") && !aof)
				aof = true, n++;
		}
		r_map(c, n);
		if (save) {
			r_cstr(c, "save");
			r_cstr(c, "");
		}
		if (aof) {
			r_cstr(c, "appendonly");
			r_cstr(c, "yes");
		}
		return;
	}
	if (argis(r, 1, "resetstat") && r->argc == 2) {
		r_ok(c);
		return;
	}
	char msg[200];
	snprintf(msg, sizeof msg, "ERR unknown subcommand '%.*s'. Try CONFIG HELP.",
	         (int)(r->argl[1] > 128 ? 128 : r->argl[1]), r->argv[1]);
	r_err(c, msg);
}

/* ---------- strings ---------- */

static void c_get(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	if (!kget_as(x, c, r, MF_T_STRING, true, r_nil, &e))
		return;
	r_bulk(c, mf_slice_ptr(e.val), e.val.len);
	mf_slice_unref(&e.val);
}

/* SET: a blind SET under the key's shared lock; with NX/XX/GET, or over
 * a key of another type, read-decide-write under its exclusive lock. */
/* An expiry argument as Redis reads it (seconds or ms; from now, or
 * absolute with EXAT/EXPIREAT): the absolute time in ns, or 0 with the
 * error replied (not an integer; overflowing, or for SET not positive:
 * "invalid expire time").  A time before 1970 is 1: past, so it deletes;
 * one after 2262 is INT64_MAX. */
static int64_t expire_arg(client *c, const req *r, int i, bool ms, bool at, bool positive,
                          const char *cmd)
{
	long long v, when;
	if (!arg_ll(c, r, i, &v))
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

/* SET's write once decided: over a key of type `type` (MF_T_NONE: none),
 * with the expiry `when` (0: none).  With one, the SET (over any type) and
 * its EXPIRE are one MULTI record: the key is never without its expiry,
 * even across a crash; without, a type change is a DEL then the SET. */
static int set_with_expiry(resp_ctx *x, const req *r, uint8_t type, int64_t when)
{
	int rc = 0;
	if (when) {
		mf_op sub[2] = {kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]),
		                kop(MF_OP_EXPIRE, MF_T_NONE, r->argv[1], r->argl[1])};
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
		rc = del_key(x, r->argv[1], r->argl[1]);
	if (rc == 0) {
		mf_op op = kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]);
		op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		rc = commit(x, &op);
	}
	return rc;
}

static void c_set(resp_ctx *x, client *c, req *r)
{
	bool nx = false, xx = false, get = false, keepttl = false;
	int64_t when = 0; /* EX/PX/EXAT/PXAT: absolute ns */
	int nexp = 0;
	for (int i = 3; i < r->argc; i++) {
		if (argis(r, i, "nx") && !xx) {
			nx = true;
		} else if (argis(r, i, "xx") && !nx) {
			xx = true;
		} else if (argis(r, i, "get")) {
			get = true;
		} else if (argis(r, i, "keepttl") && !nexp) {
			keepttl = true;
		} else if ((argis(r, i, "ex") || argis(r, i, "px") || argis(r, i, "exat") ||
		            argis(r, i, "pxat")) && i + 1 < r->argc && !keepttl && !nexp) {
			nexp++;
			bool ms = argis(r, i, "px") || argis(r, i, "pxat");
			bool at = argis(r, i, "exat") || argis(r, i, "pxat");
			i++;
			if (!(when = expire_arg(c, r, i, ms, at, true, "set")))
				return;
		} else {
			r_err(c, E_SYNTAX);
			return;
		}
	}
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	if (!nx && !xx && !get && !when && !keepttl) {
		/* Blind: one SET op, unless the key has another type. */
		lockset m = lock_shared(x, r, 1, 1, 1);
		mf_op op = kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]);
		op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		int rc = commit(x, &op);
		unlock_set(x, m);
		if (rc != -EEXIST) {
			if (rc)
				r_errno(c, rc);
			else
				r_ok(c);
			return;
		}
	}
	lockset m = lock_args(x, r, 1, 1, 1);
	mf_entry_info e;
	bool exists = kget(x, r, 1, get, &e) == 0;
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
	unlock_set(x, m);
}

static void c_mget(resp_ctx *x, client *c, req *r)
{
	r_arr(c, (size_t)r->argc - 1);
	for (int i = 1; i < r->argc; i++) {
		mf_entry_info e;
		if (kget(x, r, i, true, &e) == 0 && e.type == MF_T_STRING)
			r_bulk(c, mf_slice_ptr(e.val), e.val.len);
		else
			r_nil(c);
		mf_slice_unref(&e.val);
	}
}

static void c_mset(resp_ctx *x, client *c, req *r)
{
	if (r->argc % 2 == 0) {
		r_err(c, "ERR wrong number of arguments for 'mset' command");
		return;
	}
	if (!keys_ok(c, r, 1, -1, 2))
		return;
	lockset m = lock_args(x, r, 1, -1, 2);
	int rc = 0;
	for (int i = 1; i + 1 < r->argc && rc == 0; i += 2) {
		mf_entry_info e;
		if (kget(x, r, i, false, &e) == 0 && e.type != MF_T_STRING)
			rc = del_key(x, r->argv[i], r->argl[i]);
		if (rc)
			break;
		mf_op op = kop(MF_OP_SET, MF_T_STRING, r->argv[i], r->argl[i]);
		op.val = mf_slice_from(r->argv[i + 1], r->argl[i + 1], r->argl[i + 1]);
		rc = commit(x, &op);
	}
	unlock_set(x, m);
	if (rc)
		r_errno(c, rc);
	else
		r_ok(c);
}

static void c_del(resp_ctx *x, client *c, req *r)
{
	lockset m = lock_shared(x, r, 1, -1, 1);
	long long n = 0;
	int rc = 0;
	for (int i = 1; i < r->argc; i++) {
		if (r->argl[i] == 0 || r->argl[i] > MF_KEY_BYTES_MAX)
			continue;
		int d = del_key(x, r->argv[i], r->argl[i]);
		if (d == 0)
			n++;
		else if (d != -ENOENT)
			rc = d;
	}
	unlock_set(x, m);
	if (rc && n == 0)
		r_errno(c, rc);
	else
		r_int(c, n);
}

static void c_exists(resp_ctx *x, client *c, req *r)
{
	long long n = 0;
	for (int i = 1; i < r->argc; i++) {
		mf_entry_info e;
		n += kget(x, r, i, false, &e) == 0;
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
	default: return "none";
	}
}

static void c_type(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	r_simple(c, kget(x, r, 1, false, &e) == 0 ? type_name(e.type) : "none");
}

static void c_append(resp_ctx *x, client *c, req *r)
{
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = lock_shared(x, r, 1, 1, 1);
	mf_entry_info e;
	uint64_t cur = 0;
	bool exists = kget(x, r, 1, false, &e) == 0;
	if (exists && e.type != MF_T_STRING) {
		r_err(c, E_WRONGTYPE);
		goto out;
	}
	cur = exists ? e.size : 0;
	/* APPEND k "" creates an empty string, changes nothing else. */
	mf_op op = kop(r->argl[2] ? MF_OP_APPEND : MF_OP_CREATE, MF_T_STRING, r->argv[1], r->argl[1]);
	op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	int rc = exists && !r->argl[2] ? 0 : commit(x, &op);
	mf_op_clear(&op);
	r_int_result(c, rc, (long long)(r->argl[2] ? op.res : cur));
out:
	unlock_set(x, m);
}

/* STRLEN and LLEN: a string's bytes, a list's elements; 0 for no key. */
static void key_len(resp_ctx *x, client *c, const req *r, uint8_t type)
{
	mf_entry_info e;
	if (kget_as(x, c, r, type, false, r_zero, &e))
		r_int(c, (long long)(type == MF_T_LIST ? e.count : e.size));
}

static void c_strlen(resp_ctx *x, client *c, req *r)
{
	key_len(x, c, r, MF_T_STRING);
}

/* GETRANGE and LRANGE: "key start end", and the key's value when it holds
 * `type` (else false, replied). */
static bool range_args(resp_ctx *x, client *c, const req *r, uint8_t type,
                       void (*missing)(client *), long long *start, long long *end,
                       mf_entry_info *e)
{
	return arg_ll(c, r, 2, start) && arg_ll(c, r, 3, end) &&
	       kget_as(x, c, r, type, true, missing, e);
}

static void c_getrange(resp_ctx *x, client *c, req *r)
{
	long long start, end;
	mf_entry_info e;
	if (!range_args(x, c, r, MF_T_STRING, r_empty_bulk, &start, &end, &e))
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

static void c_setrange(resp_ctx *x, client *c, req *r)
{
	long long off;
	if (!arg_ll(c, r, 2, &off))
		return;
	if (off < 0) {
		r_err(c, "ERR offset is out of range");
		return;
	}
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = lock_shared(x, r, 1, 1, 1);
	mf_entry_info e;
	bool exists = kget(x, r, 1, false, &e) == 0;
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
	mf_op op = kop(MF_OP_SETRANGE, MF_T_STRING, r->argv[1], r->argl[1]);
	op.arg = (uint64_t)off;
	op.val = mf_slice_from(r->argv[3], r->argl[3], r->argl[3]);
	int rc = commit(x, &op);
	r_int_result(c, rc, (long long)op.res);
out:
	unlock_set(x, m);
}

static void do_rename(resp_ctx *x, client *c, req *r, bool nx)
{
	if (!keys_ok(c, r, 1, 2, 1))
		return;
	lockset m = lock_args(x, r, 1, 2, 1);
	mf_entry_info e, t;
	if (kget(x, r, 1, false, &e) != 0) {
		r_err(c, E_NOKEY);
		goto out;
	}
	bool same = r->argl[1] == r->argl[2] && memcmp(r->argv[1], r->argv[2], r->argl[1]) == 0;
	bool texists = kget(x, r, 2, false, &t) == 0;
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
		rc = del_key(x, r->argv[2], r->argl[2]);
	if (rc == 0) {
		mf_op op = kop(MF_OP_RENAME, e.type, r->argv[1], r->argl[1]);
		op.key2 = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		rc = commit(x, &op);
	}
	if (rc)
		r_errno(c, rc);
	else if (nx)
		r_int(c, 1);
	else
		r_ok(c);
out:
	unlock_set(x, m);
}

static void c_rename(resp_ctx *x, client *c, req *r)
{
	do_rename(x, c, r, false);
}

static void c_renamenx(resp_ctx *x, client *c, req *r)
{
	do_rename(x, c, r, true);
}

/* ---------- keyspace ---------- */

static void c_keys(resp_ctx *x, client *c, req *r)
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

static void c_scan(resp_ctx *x, client *c, req *r)
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
		if (argis(r, i, "match")) {
			pat = r->argv[i + 1];
			plen = r->argl[i + 1];
		} else if (argis(r, i, "count")) {
			if (!arg_ll(c, r, i + 1, &count))
				return;
			if (count < 1) {
				r_err(c, E_SYNTAX);
				return;
			}
		} else if (argis(r, i, "type")) {
			want_type = 0; /* an unknown type name matches nothing */
			for (int t = MF_T_STRING; t <= MF_T_MAX_; t++)
				if (mf_type_valid(t) && argis(r, i + 1, type_name(t)))
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

static void c_dbsize(resp_ctx *x, client *c, req *r)
{
	(void)r;
	mf_store_stats s;
	mf_store_stats_get(x->st, &s);
	r_int(c, (long long)s.keys[0]);
}

/* ---------- lists ---------- */

/* LPUSH/RPUSH's op: the elements as one block of lines, in the order they
 * end up in: RPUSH a b c appends "a\nb\nc\n", LPUSH a b c prepends
 * "c\nb\na\n". */
static mf_op push_op(const req *r, bool left)
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
	mf_op op = kop(left ? MF_OP_LPUSH : MF_OP_RPUSH, MF_T_LIST, r->argv[1], r->argl[1]);
	op.val = v;
	return op;
}

static void do_push(resp_ctx *x, client *c, req *r, bool left)
{
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	for (int i = 2; i < r->argc; i++) {
		if (memchr(r->argv[i], '\n', r->argl[i])) {
			r_err(c, E_NEWLINE);
			return;
		}
	}
	lockset m = lock_shared(x, r, 1, 1, 1);
	mf_op op = push_op(r, left);
	int rc = commit(x, &op);
	unlock_set(x, m);
	r_int_result(c, rc, (long long)op.res); /* the length apply left */
}

static void c_lpush(resp_ctx *x, client *c, req *r)
{
	do_push(x, c, r, true);
}

static void c_rpush(resp_ctx *x, client *c, req *r)
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
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = lock_shared(x, r, 1, 1, 1);
	do_pop_locked(x, c, r, left);
	unlock_set(x, m);
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
static void pop_result(client *c, const mf_op *op, int rc, bool left, bool with_count)
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
		mf_op d = kop(MF_OP_DEL, MF_T_LIST, k, n);
		d.arg = 1;
		commit(x, &d); /* ENOTEMPTY/ENOENT: someone else was first */
	}
}

static void drop_if_empty(resp_ctx *x, const req *r)
{
	drop_key_if_empty(x, r->argv[1], r->argl[1]);
}

static void do_pop_locked(resp_ctx *x, client *c, req *r, bool left)
{
	long long count = 1;
	bool with_count = r->argc == 3; /* do_pop checked argc and the key */
	if (with_count) {
		if (!parse_ll(r->argv[2], r->argl[2], &count) || count < 0) {
			r_err(c, "ERR value is out of range, must be positive");
			return;
		}
	}
	mf_entry_info e;
	if (!kget_as(x, c, r, MF_T_LIST, false, with_count ? r_nil_arr : r_nil, &e))
		return;
	if (with_count && count == 0) {
		r_arr(c, 0);
		return;
	}
	mf_op op = kop(left ? MF_OP_LPOP : MF_OP_RPOP, MF_T_LIST, r->argv[1], r->argl[1]);
	op.arg = (uint64_t)count;
	int rc = mf_db_commit_notify(x->db, &op);
	if (rc == 0)
		drop_if_empty(x, r);
	pop_result(c, &op, rc, left, with_count);
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
	if (!keys_ok(c, r, 1, -2, 1))
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
		if (kget(x, r, i, false, &e) != 0)
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

static void c_blpop(resp_ctx *x, client *c, req *r)
{
	do_bpop(x, c, r, true);
}

static void c_brpop(resp_ctx *x, client *c, req *r)
{
	do_bpop(x, c, r, false);
}

static void c_lpop(resp_ctx *x, client *c, req *r)
{
	do_pop(x, c, r, true);
}

static void c_rpop(resp_ctx *x, client *c, req *r)
{
	do_pop(x, c, r, false);
}

static void c_llen(resp_ctx *x, client *c, req *r)
{
	key_len(x, c, r, MF_T_LIST);
}

static void c_lrange(resp_ctx *x, client *c, req *r)
{
	long long start, stop;
	mf_entry_info e;
	if (!range_args(x, c, r, MF_T_LIST, r_empty_arr, &start, &stop, &e))
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

static void c_lindex(resp_ctx *x, client *c, req *r)
{
	long long idx;
	if (!arg_ll(c, r, 2, &idx))
		return;
	mf_entry_info e;
	if (!kget_as(x, c, r, MF_T_LIST, true, r_nil, &e))
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

/* ---------- expiry (EXPIRE records: absolute times) ---------- */

/* EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT key time [NX|XX|GT|LT]. */
static void do_expire(resp_ctx *x, client *c, req *r, bool ms, bool at, const char *name)
{
	bool nx = false, xx = false, gt = false, lt = false;
	for (int i = 3; i < r->argc; i++) {
		if (argis(r, i, "nx"))
			nx = true;
		else if (argis(r, i, "xx"))
			xx = true;
		else if (argis(r, i, "gt"))
			gt = true;
		else if (argis(r, i, "lt"))
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
	int64_t when = expire_arg(c, r, 2, ms, at, false, name);
	if (!when || !keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = lock_args(x, r, 1, 1, 1); /* the conditions read, then write */
	mf_entry_info e;
	int rc = kget(x, r, 1, false, &e);
	if (rc == 0) {
		/* No expiry counts as infinite (Redis): GT never, LT always. */
		int64_t cur = e.expire_ns;
		if ((nx && cur) || (xx && !cur) || (gt && (!cur || when <= cur)) ||
		    (lt && cur && when >= cur))
			rc = -EALREADY;
	}
	mf_op op = kop(MF_OP_EXPIRE, MF_T_NONE, r->argv[1], r->argl[1]);
	op.arg = (uint64_t)when;
	if (rc == 0)
		rc = commit(x, &op);
	else
		mf_op_clear(&op);
	unlock_set(x, m);
	r_int_result(c, rc == -ENOENT || rc == -EALREADY ? 0 : rc, rc ? 0 : 1);
}

static void c_expire(resp_ctx *x, client *c, req *r)
{
	do_expire(x, c, r, false, false, "expire");
}

static void c_pexpire(resp_ctx *x, client *c, req *r)
{
	do_expire(x, c, r, true, false, "pexpire");
}

static void c_expireat(resp_ctx *x, client *c, req *r)
{
	do_expire(x, c, r, false, true, "expireat");
}

static void c_pexpireat(resp_ctx *x, client *c, req *r)
{
	do_expire(x, c, r, true, true, "pexpireat");
}

/* TTL/PTTL (remaining) and EXPIRETIME/PEXPIRETIME (absolute): -2 no key,
 * -1 no expiry; TTL rounds to the nearest second, as Redis. */
static void ttl_reply(resp_ctx *x, client *c, req *r, bool ms, bool absolute)
{
	mf_entry_info e;
	if (kget(x, r, 1, false, &e) != 0) {
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

static void c_ttl(resp_ctx *x, client *c, req *r)
{
	ttl_reply(x, c, r, false, false);
}

static void c_pttl(resp_ctx *x, client *c, req *r)
{
	ttl_reply(x, c, r, true, false);
}

static void c_expiretime(resp_ctx *x, client *c, req *r)
{
	ttl_reply(x, c, r, false, true);
}

static void c_pexpiretime(resp_ctx *x, client *c, req *r)
{
	ttl_reply(x, c, r, true, true);
}

static void c_persist(resp_ctx *x, client *c, req *r)
{
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = lock_shared(x, r, 1, 1, 1);
	mf_op op = kop(MF_OP_EXPIRE, MF_T_NONE, r->argv[1], r->argl[1]); /* arg 0: none */
	int rc = commit(x, &op);
	unlock_set(x, m);
	r_int_result(c, rc == -ENOENT ? 0 : rc, rc ? 0 : (long long)op.res);
}

/* ---------- counters (INCRBY / INCRBYFLOAT records: atomic in the store) */

#define E_OVERFLOW "ERR increment or decrement would overflow"
#define E_NOTFLOAT "ERR value is not a valid float"

/* INCR/DECR/INCRBY/DECRBY: one INCRBY record; the store says whether the
 * value is an integer and whether the sum fits (so a writer through the
 * mount cannot slip in between a read and a write here). */
static void do_incrby(resp_ctx *x, client *c, req *r, long long d)
{
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = lock_shared(x, r, 1, 1, 1);
	mf_op op = kop(MF_OP_INCRBY, MF_T_STRING, r->argv[1], r->argl[1]);
	op.arg = (uint64_t)d;
	int rc = commit(x, &op);
	unlock_set(x, m);
	if (rc == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else if (rc == -EINVAL)
		r_err(c, E_NOTINT);
	else if (rc == -ERANGE)
		r_err(c, E_OVERFLOW);
	else if (rc)
		r_errno(c, rc);
	else
		r_int(c, (long long)op.res);
}

static void c_incr(resp_ctx *x, client *c, req *r)
{
	do_incrby(x, c, r, 1);
}

static void c_decr(resp_ctx *x, client *c, req *r)
{
	do_incrby(x, c, r, -1);
}

static void c_incrby(resp_ctx *x, client *c, req *r)
{
	long long d;
	if (arg_ll(c, r, 2, &d))
		do_incrby(x, c, r, d);
}

static void c_decrby(resp_ctx *x, client *c, req *r)
{
	long long d;
	if (!arg_ll(c, r, 2, &d))
		return;
	if (d == LLONG_MIN) {
		r_err(c, "ERR decrement would overflow");
		return;
	}
	do_incrby(x, c, r, -d);
}

static void c_incrbyfloat(resp_ctx *x, client *c, req *r)
{
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	lockset m = lock_shared(x, r, 1, 1, 1);
	mf_op op = kop(MF_OP_INCRBYFLOAT, MF_T_STRING, r->argv[1], r->argl[1]);
	op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	int rc = mf_db_commit_notify(x->db, &op);
	unlock_set(x, m);
	if (rc == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else if (rc == -EINVAL)
		r_err(c, E_NOTFLOAT);
	else if (rc == -ERANGE)
		r_err(c, "ERR increment would produce NaN or Infinity");
	else if (rc)
		r_errno(c, rc);
	else
		r_bulk(c, mf_slice_ptr(op.out), op.out.len); /* the new value */
	mf_op_clear(&op);
}

/* ---------- sets (/sets keys: one member per line) ---------- */

/* The members r->argv[from..] as lines; members holding '\n' (which no
 * set can hold) are left out, *skipped counts them. */
static mf_slice member_lines(const req *r, int from, int *skipped)
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

#define E_MEMBER_NL "ERR memfluxfs set members are lines: a member cannot contain a newline"

/* SADD / SREM: one record of the members as lines; the reply is how many
 * were added / removed.  SREM of a key that is not there: 0. */
static void set_members_op(resp_ctx *x, client *c, req *r, int type)
{
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	int skipped;
	mf_slice v = member_lines(r, 2, &skipped);
	mf_entry_info e;
	int rc = 0;
	if (type == MF_OP_SADD && skipped)
		rc = -EBADMSG;
	else if (kget(x, r, 1, false, &e) == 0 && e.type != MF_T_SET)
		rc = -EEXIST;
	else if (v.len == 0) /* SREM of only members no set holds */
		rc = -ENOENT;
	mf_op op = kop(type, MF_T_SET, r->argv[1], r->argl[1]);
	op.val = v;
	if (rc == 0) {
		lockset m = lock_shared(x, r, 1, 1, 1);
		rc = commit(x, &op);
		unlock_set(x, m);
	} else {
		mf_op_clear(&op);
	}
	if (rc == -EBADMSG)
		r_err(c, E_MEMBER_NL);
	else
		r_int_result(c, rc == -ENOENT ? 0 : rc, (long long)op.res);
}

static void c_sadd(resp_ctx *x, client *c, req *r)
{
	set_members_op(x, c, r, MF_OP_SADD);
}

static void c_srem(resp_ctx *x, client *c, req *r)
{
	set_members_op(x, c, r, MF_OP_SREM);
}

static void c_smembers(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	if (kget(x, r, 1, true, &e) != 0) {
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

static void c_sismember(resp_ctx *x, client *c, req *r)
{
	int h = mf_store_set_has(x->st, r->argv[1], r->argl[1], r->argv[2], r->argl[2]);
	if (h == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else
		r_int(c, h == 1);
}

static void c_scard(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	if (kget(x, r, 1, false, &e) != 0)
		r_int(c, 0);
	else if (e.type != MF_T_SET)
		r_err(c, E_WRONGTYPE);
	else
		r_int(c, (long long)e.count);
}

/* One SMOVE record: the member leaves one set and joins the other
 * atomically (no reader sees it in both or neither). */
static void c_smove(resp_ctx *x, client *c, req *r)
{
	if (!keys_ok(c, r, 1, 2, 1))
		return;
	lockset m = lock_shared(x, r, 1, 2, 1);
	mf_op op = kop(MF_OP_SMOVE, MF_T_SET, r->argv[1], r->argl[1]);
	op.key2 = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	int rc;
	if (memchr(r->argv[3], '\n', r->argl[3])) {
		/* No set holds it: Redis's checks, then 0. */
		mf_entry_info s, d;
		bool hs = kget(x, r, 1, false, &s) == 0, hd = kget(x, r, 2, false, &d) == 0;
		rc = !hs ? -ENOENT : s.type != MF_T_SET || (hd && d.type != MF_T_SET) ? -EEXIST : 0;
		op.res = 0;
		mf_op_clear(&op);
	} else {
		op.val = mf_slice_from(r->argv[3], r->argl[3], r->argl[3]);
		rc = commit(x, &op);
	}
	unlock_set(x, m);
	if (rc == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else if (rc == -ENOENT)
		r_int(c, 0);
	else if (rc)
		r_errno(c, rc);
	else
		r_int(c, (long long)op.res);
}

/* ---------- JSON (RedisJSON's commands on /json documents) ---------- */

/* A path argument as the store's "$..." syntax: JSONPath as is; the legacy
 * "." / ".a.b" / "a.b" forms are mapped onto it (*legacy set: reply with
 * the value itself, not an array of matches). */
static char *json_path(const req *r, int i, size_t *len, bool *legacy)
{
	/* No path: the root, answered the legacy way (the value itself). */
	const char *p = i < r->argc ? r->argv[i] : ".";
	size_t n = i < r->argc ? r->argl[i] : 1;
	char *out = mf_xmalloc(n + 3);
	*legacy = !(n > 0 && p[0] == '$');
	if (!*legacy) {
		memcpy(out, p, n);
		*len = n;
	} else if (n == 0 || (n == 1 && p[0] == '.')) {
		out[0] = '$';
		*len = 1;
	} else if (p[0] == '.' || p[0] == '[') {
		out[0] = '$';
		memcpy(out + 1, p, n);
		*len = n + 1;
	} else {
		out[0] = '$';
		out[1] = '.';
		memcpy(out + 2, p, n);
		*len = n + 2;
	}
	out[*len] = '\0';
	return out;
}

/* JSON.SET and JSON.DEL's path (argument 2), checked: NULL (replied) if
 * it is not a valid path.  The caller frees it. */
static char *json_path_arg(client *c, const req *r, size_t *len)
{
	bool legacy;
	char *path = json_path(r, 2, len, &legacy);
	if (mf_json_path_check(path, *len) != 0) {
		free(path);
		r_err(c, "ERR invalid JSON path");
		return NULL;
	}
	return path;
}

static const char *json_kind(const char *v, size_t n)
{
	switch (n ? v[0] : 0) {
	case '{': return "object";
	case '[': return "array";
	case '"': return "string";
	case 't': case 'f': return "boolean";
	case 'n': return "null";
	default:
		for (size_t i = 0; i < n; i++)
			if (v[i] == '.' || v[i] == 'e' || v[i] == 'E')
				return "number";
		return "integer";
	}
}

static void c_json_get(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	if (!kget_as(x, c, r, MF_T_JSON, true, r_nil, &e))
		return;
	const char *doc = mf_slice_ptr(e.val);
	rbuf out = {0};
	int npaths = r->argc - 2;
	if (npaths > 1)
		rb_put(&out, "{", 1);
	for (int k = 0; k < (npaths > 0 ? npaths : 1); k++) {
		size_t plen, off = 0, len = 0;
		bool legacy;
		char *path = json_path(r, 2 + k, &plen, &legacy);
		/* "$" paths answer with every match ([*], .., negative indexes)
		 * as an array; legacy paths with the one value. */
		char *q = NULL;
		int rc = legacy ? mf_json_get_path(doc, e.val.len, path, plen, &off, &len)
		                : mf_json_query(doc, e.val.len, path, plen, &q, &len);
		if (rc == -EINVAL && mf_json_path_check(path, plen) != 0) {
			free(path);
			free(out.p);
			r_err(c, "ERR invalid JSON path");
			mf_slice_unref(&e.val);
			return;
		}
		if (rc && legacy) {
			char msg[300];
			snprintf(msg, sizeof msg, "ERR Path '%.200s' does not exist", path);
			free(path);
			free(out.p);
			r_err(c, msg);
			mf_slice_unref(&e.val);
			return;
		}
		if (npaths > 1) {
			if (k)
				rb_put(&out, ",", 1);
			rb_put(&out, "\"", 1);
			for (size_t i = 0; i < r->argl[2 + k]; i++) {
				char ch = r->argv[2 + k][i];
				if (ch == '"' || ch == '\\')
					rb_put(&out, "\\", 1);
				rb_put(&out, &ch, 1);
			}
			rb_put(&out, "\":", 2);
		}
		if (legacy)
			rb_put(&out, doc + off, len);
		else if (rc == 0)
			rb_put(&out, q, len);
		else
			rb_put(&out, "[]", 2);
		free(q);
		free(path);
	}
	if (npaths > 1)
		rb_put(&out, "}", 1);
	r_bulk(c, out.p, out.len);
	free(out.p);
	mf_slice_unref(&e.val);
}

static void json_update_reply(client *c, int type, int rc, bool key_absent, bool legacy,
                              const char *path, uint64_t res, mf_slice out);

/* JSON.NUMINCRBY / JSON.ARRAPPEND / JSON.STRAPPEND: one record each (the
 * store does the read-modify-write), so concurrent updates from RESP and
 * the mount's /.ctl/jincr never lose one.  val: the op's argument. */
static void json_update(resp_ctx *x, client *c, req *r, int type, int pathi, mf_slice val)
{
	size_t plen;
	bool legacy;
	char *path = json_path(r, pathi, &plen, &legacy);
	mf_entry_info e;
	int rc = kget(x, r, 1, false, &e);
	if (rc == 0 && e.type != MF_T_JSON)
		rc = -EEXIST;
	else if (rc == 0 && mf_json_path_check(path, plen) != 0)
		rc = -EBADMSG;
	mf_op op = kop(type, MF_T_JSON, r->argv[1], r->argl[1]);
	op.key2 = mf_slice_from(path, plen, plen);
	op.val = val;
	if (rc == 0) {
		lockset m = lock_shared(x, r, 1, 1, 1);
		rc = mf_db_commit_notify(x->db, &op);
		unlock_set(x, m);
	}
	json_update_reply(c, type, rc, e.type != MF_T_JSON, legacy, path, op.res, op.out);
	mf_op_clear(&op);
	free(path);
}

static void json_update_reply(client *c, int type, int rc, bool key_absent, bool legacy,
                              const char *path, uint64_t res, mf_slice out)
{
	char msg[300];
	if (rc == -ENOENT && key_absent) {
		r_err(c, "ERR could not perform this operation on a key that doesn't exist");
	} else if (rc == -EEXIST) {
		r_err(c, E_WRONGTYPE);
	} else if (rc == -EBADMSG) {
		r_err(c, "ERR invalid JSON path");
	} else if (rc == -ENOENT && !legacy) {
		if (type == MF_OP_JSON_NUMINCRBY) /* no match */
			r_cstr(c, "[]");
		else
			r_arr(c, 0);
	} else if (rc == -ENOENT || (rc == -EDOM && legacy)) {
		snprintf(msg, sizeof msg, rc == -ENOENT ? "ERR Path '%.200s' does not exist"
		                                        : "ERR wrong JSON type at path '%.200s'", path);
		r_err(c, msg);
	} else if (rc == -EDOM) { /* a match of another JSON type: null, as RedisJSON */
		if (type == MF_OP_JSON_NUMINCRBY) {
			r_cstr(c, "[null]");
		} else {
			r_arr(c, 1);
			r_nil(c);
		}
	} else if (rc == -EINVAL) {
		r_err(c, type == MF_OP_JSON_NUMINCRBY ? "ERR expected a JSON number"
		                                      : "ERR expected a JSON value");
	} else if (rc == -ERANGE) {
		r_err(c, "ERR result is not a finite number");
	} else if (rc) {
		r_errno(c, rc);
	} else if (type == MF_OP_JSON_NUMINCRBY) {
		if (legacy) {
			r_bulk(c, mf_slice_ptr(out), out.len);
		} else {
			rbuf b = {0};
			rb_put(&b, "[", 1);
			rb_put(&b, mf_slice_ptr(out), out.len);
			rb_put(&b, "]", 1);
			r_bulk(c, b.p, b.len);
			free(b.p);
		}
	} else {
		if (!legacy)
			r_arr(c, 1);
		r_int(c, (long long)res);
	}
}

static void c_json_numincrby(resp_ctx *x, client *c, req *r)
{
	json_update(x, c, r, MF_OP_JSON_NUMINCRBY, 2,
	            mf_slice_from(r->argv[3], r->argl[3], r->argl[3]));
}

/* JSON.ARRAPPEND's values (argv[3..]) as one JSON array "[v1,v2,...]":
 * the op's argument (each is checked by the store as part of it). */
static mf_slice arrappend_values(const req *r)
{
	rbuf b = {0};
	rb_put(&b, "[", 1);
	for (int i = 3; i < r->argc; i++) {
		if (i > 3)
			rb_put(&b, ",", 1);
		rb_put(&b, r->argv[i], r->argl[i]);
	}
	rb_put(&b, "]", 1);
	mf_slice v = mf_slice_from(b.p, b.len, b.len);
	free(b.p);
	return v;
}

static void c_json_arrappend(resp_ctx *x, client *c, req *r)
{
	json_update(x, c, r, MF_OP_JSON_ARRAPPEND, 2, arrappend_values(r));
}

static void c_json_strappend(resp_ctx *x, client *c, req *r)
{
	/* JSON.STRAPPEND key [path] value */
	int vi = r->argc - 1;
	if (r->argc > 4) {
		r_err(c, "ERR wrong number of arguments for 'json.strappend' command");
		return;
	}
	json_update(x, c, r, MF_OP_JSON_STRAPPEND, r->argc == 4 ? 2 : 99,
	            mf_slice_from(r->argv[vi], r->argl[vi], r->argl[vi]));
}

static void c_json_set(resp_ctx *x, client *c, req *r)
{
	bool nx = false, xx = false;
	if (r->argc == 5 && argis(r, 4, "nx"))
		nx = true;
	else if (r->argc == 5 && argis(r, 4, "xx"))
		xx = true;
	else if (r->argc != 4) {
		r_err(c, E_SYNTAX);
		return;
	}
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	if (mf_json_validate(r->argv[3], r->argl[3], NULL, NULL) != 0) {
		r_err(c, "ERR invalid JSON value");
		return;
	}
	size_t plen;
	char *path = json_path_arg(c, r, &plen);
	if (!path)
		return;
	bool root = plen == 1;
	lockset m = lock_args(x, r, 1, 1, 1);
	mf_entry_info e;
	bool exists = kget(x, r, 1, true, &e) == 0;
	int rc = 0;
	if (exists && e.type != MF_T_JSON) {
		r_err(c, E_WRONGTYPE);
		goto out;
	}
	if (!exists && !root) {
		r_err(c, "ERR new objects must be created at the root");
		goto out;
	}
	bool there = exists;
	if (exists && !root) {
		size_t off, len;
		there = mf_json_get_path(mf_slice_ptr(e.val), e.val.len, path, plen, &off, &len) == 0;
	}
	if ((nx && there) || (xx && !there)) {
		r_nil(c);
		goto out;
	}
	mf_op op = kop(root ? MF_OP_SET : MF_OP_JSON_SETPATH, MF_T_JSON, r->argv[1], r->argl[1]);
	if (!root)
		op.key2 = mf_slice_from(path, plen, plen);
	op.val = mf_slice_from(r->argv[3], r->argl[3], r->argl[3]);
	rc = commit(x, &op);
	if (rc == -ENOENT)
		r_nil(c); /* the path's parent does not exist: no match */
	else if (rc)
		r_errno(c, rc);
	else
		r_ok(c);
out:
	if (exists)
		mf_slice_unref(&e.val);
	unlock_set(x, m);
	free(path);
}

static void c_json_del(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 3) {
		r_err(c, E_SYNTAX);
		return;
	}
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	size_t plen;
	char *path = json_path_arg(c, r, &plen);
	if (!path)
		return;
	lockset m = lock_args(x, r, 1, 1, 1);
	mf_entry_info e;
	if (kget_as(x, c, r, MF_T_JSON, false, r_zero, &e)) {
		mf_op op = kop(MF_OP_JSON_DELPATH, MF_T_JSON, r->argv[1], r->argl[1]);
		op.key2 = mf_slice_from(path, plen, plen);
		int rc = commit(x, &op);
		if (rc == -ENOENT)
			r_int(c, 0);
		else if (rc)
			r_errno(c, rc);
		else
			r_int(c, 1);
	}
	unlock_set(x, m);
	free(path);
}

static void c_json_type(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 3) {
		r_err(c, E_SYNTAX);
		return;
	}
	mf_entry_info e;
	if (!kget_as(x, c, r, MF_T_JSON, true, r_nil, &e))
		return;
	size_t plen, off, len;
	bool legacy;
	char *path = json_path(r, 2, &plen, &legacy);
	int rc = mf_json_get_path(mf_slice_ptr(e.val), e.val.len, path, plen, &off, &len);
	if (rc == -EINVAL && mf_json_path_check(path, plen) != 0)
		r_err(c, "ERR invalid JSON path");
	else if (legacy && rc)
		r_nil(c);
	else if (legacy)
		r_simple(c, json_kind(mf_slice_ptr(e.val) + off, len));
	else if (rc) {
		r_arr(c, 0);
	} else {
		r_arr(c, 1);
		r_cstr(c, json_kind(mf_slice_ptr(e.val) + off, len));
	}
	free(path);
	mf_slice_unref(&e.val);
}

/* ---------- server ---------- */

static void c_dbinfo(resp_ctx *x, client *c, req *r)
{
	(void)r;
	mf_store_stats s;
	mf_store_stats_get(x->st, &s);
	char *stats = mf_db_stats_text(x->db);
	rbuf b = {0};
	int64_t now = mf_now_ns();
	rb_fmt(&b, "# Server\r\nredis_version:%s\r\nredis_mode:standalone\r\nos:Linux\r\n"
	       "arch_bits:64\r\nprocess_id:%ld\r\nuptime_in_seconds:%lld\r\n"
	       "executable:memfluxfs\r\n\r\n# Clients\r\nconnected_clients:%d\r\n\r\n"
	       "# Keyspace\r\n",
	       VERSION, (long)getpid(), (long long)((now - x->start_ns) / 1000000000),
	       atomic_load(&x->nclients));
	if (s.keys[0])
		rb_fmt(&b, "db0:keys=%" PRIu64 ",expires=%" PRIu64 ",avg_ttl=0\r\n", s.keys[0],
		       s.expires);
	rb_fmt(&b, "\r\n# Memfluxfs\r\n");
	/* /.ctl/stats lines are "name value": INFO's form is "name:value". */
	for (char *line = stats; line && *line;) {
		char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char *sp = memchr(line, ' ', n);
		if (sp) {
			rb_put(&b, line, (size_t)(sp - line));
			rb_put(&b, ":", 1);
			rb_put(&b, sp + 1, n - (size_t)(sp - line) - 1);
			rb_put(&b, "\r\n", 2);
		}
		line = nl ? nl + 1 : line + n;
	}
	free(stats);
	if (c->proto == 3) {
		/* RESP3: a verbatim string, as Redis sends INFO. */
		rb_fmt(&c->out, "=%zu\r\ntxt:", b.len + 4);
		rb_put(&c->out, b.p, b.len);
		rb_put(&c->out, "\r\n", 2);
	} else {
		r_bulk(c, b.p, b.len);
	}
	free(b.p);
}

static void c_save(resp_ctx *x, client *c, req *r)
{
	(void)r;
	int rc = mf_db_snapshot(x->db);
	if (rc)
		r_errno(c, rc);
	else
		r_ok(c);
}

static void *bgsave_main(void *arg)
{
	resp_ctx *x = arg;
	int rc = mf_db_snapshot(x->db);
	if (rc)
		fprintf(stderr, "memfluxfs: RESP BGSAVE: %s\n", strerror(-rc));
	pthread_mutex_lock(&x->save_mu);
	x->bgsave_running = false;
	pthread_cond_broadcast(&x->save_cv);
	pthread_mutex_unlock(&x->save_mu);
	return NULL;
}

static void c_bgsave(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 2 || (r->argc == 2 && !argis(r, 1, "schedule"))) {
		r_err(c, E_SYNTAX);
		return;
	}
	pthread_mutex_lock(&x->save_mu);
	if (x->bgsave_running) {
		pthread_mutex_unlock(&x->save_mu);
		r_err(c, "ERR Background save already in progress");
		return;
	}
	pthread_t t;
	x->bgsave_running = true;
	if (pthread_create(&t, NULL, bgsave_main, x) != 0) {
		x->bgsave_running = false;
		pthread_mutex_unlock(&x->save_mu);
		r_err(c, "ERR cannot start a background save");
		return;
	}
	pthread_detach(t);
	pthread_mutex_unlock(&x->save_mu);
	r_simple(c, "Background saving started");
}

static void c_lastsave(resp_ctx *x, client *c, req *r)
{
	(void)r;
	char *t = mf_db_snapshot_text(x->db);
	long long taken = 0, when = 0;
	const char *p = t ? strstr(t, "snapshots_taken ") : NULL;
	if (p)
		taken = atoll(p + 16);
	p = t ? strstr(t, "last_time ") : NULL;
	if (p)
		when = atoll(p + 10);
	free(t);
	/* No snapshot yet: Redis answers with its start time. */
	r_int(c, taken && when ? when : (long long)(x->start_ns / 1000000000));
}

static void c_flushdb(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 2 || (r->argc == 2 && !argis(r, 1, "async") && !argis(r, 1, "sync"))) {
		r_err(c, E_SYNTAX);
		return;
	}
	lockset m = lock_all(x);
	mf_op op = {0};
	op.type = MF_OP_FLUSH;
	int rc = commit(x, &op);
	unlock_set(x, m);
	if (rc)
		r_errno(c, rc);
	else
		r_ok(c);
}

static void c_command(resp_ctx *x, client *c, req *r);

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
		if (argis(r, 0, reads[i]))
			return TX_READ;
	for (size_t i = 0; i < sizeof writes / sizeof *writes; i++)
		if (argis(r, 0, writes[i]))
			return TX_WRITE;
	if (argis(r, 0, "ping") || argis(r, 0, "echo"))
		return TX_PLAIN;
	return TX_NO;
}

/* Queue a command (MULTI mode).  Its arity was checked. */
static void tx_queue(client *c, req *r)
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
	*o = kop(type, ktype, k, kn);
	return o;
}

/* Strings and keys: SET DEL UNLINK INCR DECR INCRBY DECRBY INCRBYFLOAT
 * APPEND.  false: not one of them. */
static bool tx_build_string(const req *r, txbuild *b, const char **err, const char *k, size_t kn)
{
	long long d = 0;
	if (argis(r, 0, "set")) {
		if (r->argc != 3) {
			*err = "ERR memfluxfs: SET options are not supported inside MULTI";
			return true;
		}
		mf_op *o = tx_add(b, MF_OP_SET, MF_T_STRING, k, kn);
		o->val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		o->arg = 1; /* over any type, as Redis's SET */
	} else if (argis(r, 0, "del") || argis(r, 0, "unlink")) {
		for (int i = 1; i < r->argc; i++)
			tx_add(b, MF_OP_DEL, MF_T_NONE, r->argv[i], r->argl[i]);
	} else if (argis(r, 0, "incr") || argis(r, 0, "decr") || argis(r, 0, "incrby") ||
	           argis(r, 0, "decrby")) {
		bool by = r->argc == 3, dec = argis(r, 0, "decr") || argis(r, 0, "decrby");
		d = 1;
		if (by && !parse_ll(r->argv[2], r->argl[2], &d)) {
			*err = E_NOTINT;
			return true;
		}
		if (dec && d == LLONG_MIN) {
			*err = "ERR decrement would overflow";
			return true;
		}
		tx_add(b, MF_OP_INCRBY, MF_T_STRING, k, kn)->arg = (uint64_t)(dec ? -d : d);
	} else if (argis(r, 0, "incrbyfloat")) {
		tx_add(b, MF_OP_INCRBYFLOAT, MF_T_STRING, k, kn)->val =
			mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	} else if (argis(r, 0, "append")) {
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
	if (argis(r, 0, "rpush") || argis(r, 0, "lpush")) {
		for (int i = 2; i < r->argc; i++)
			if (memchr(r->argv[i], '\n', r->argl[i])) {
				*err = E_NEWLINE;
				return true;
			}
		mf_op *o = tx_add(b, MF_OP_RPUSH, MF_T_LIST, k, kn);
		mf_op_clear(o);
		*o = push_op(r, argis(r, 0, "lpush"));
	} else if (argis(r, 0, "lpop") || argis(r, 0, "rpop")) {
		if (r->argc != 2) {
			*err = "ERR memfluxfs: LPOP/RPOP with a count are not supported inside MULTI";
			return true;
		}
		tx_add(b, argis(r, 0, "lpop") ? MF_OP_LPOP : MF_OP_RPOP, MF_T_LIST, k, kn)->arg = 1;
		tx_add(b, MF_OP_DEL, MF_T_LIST, k, kn)->arg = 1; /* emptied: gone, as Redis */
	} else if (argis(r, 0, "sadd") || argis(r, 0, "srem")) {
		int skipped;
		mf_slice v = member_lines(r, 2, &skipped);
		if (skipped && argis(r, 0, "sadd")) {
			mf_slice_unref(&v);
			*err = E_MEMBER_NL;
			return true;
		}
		tx_add(b, MF_OP_READ, MF_T_NONE, k, kn); /* its type, for WRONGTYPE */
		if (v.len)
			tx_add(b, argis(r, 0, "sadd") ? MF_OP_SADD : MF_OP_SREM, MF_T_SET, k, kn)->val = v;
		else
			mf_slice_unref(&v);
	} else if (argis(r, 0, "smove")) {
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
	if (argis(r, 0, "json.set")) {
		size_t plen;
		bool legacy;
		char *path = json_path(r, 2, &plen, &legacy);
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
		bool str = argis(r, 0, "json.strappend"), arr = argis(r, 0, "json.arrappend");
		if (str && r->argc > 4) {
			*err = "ERR wrong number of arguments for 'json.strappend' command";
			return;
		}
		size_t plen;
		bool legacy;
		char *path = json_path(r, str && r->argc == 3 ? 99 : 2, &plen, &legacy);
		tx_add(b, MF_OP_READ, MF_T_NONE, k, kn); /* does the document exist */
		mf_op *o = tx_add(b, str ? MF_OP_JSON_STRAPPEND : arr ? MF_OP_JSON_ARRAPPEND
		                                                : MF_OP_JSON_NUMINCRBY, MF_T_JSON, k, kn);
		o->key2 = mf_slice_from(path, plen, plen);
		free(path);
		if (arr) {
			o->val = arrappend_values(r);
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
			if (i > 1 && !argis(r, 0, "mget") && !argis(r, 0, "exists"))
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
	if (argis(r, 0, "set")) {
		if (rc)
			r_errno(c, rc);
		else
			r_ok(c);
	} else if (argis(r, 0, "del") || argis(r, 0, "unlink")) {
		long long k = 0;
		for (int i = 0; i < n; i++)
			k += res[i].rc == 0;
		r_int(c, k);
	} else if (ops[0].type == MF_OP_INCRBY || ops[0].type == MF_OP_INCRBYFLOAT) {
		bool f = ops[0].type == MF_OP_INCRBYFLOAT;
		if (rc == -EEXIST)
			r_err(c, E_WRONGTYPE);
		else if (rc == -EINVAL)
			r_err(c, f ? E_NOTFLOAT : E_NOTINT);
		else if (rc == -ERANGE)
			r_err(c, f ? "ERR increment would produce NaN or Infinity" : E_OVERFLOW);
		else if (rc)
			r_errno(c, rc);
		else if (f)
			r_bulk(c, mf_slice_ptr(res[0].out), res[0].out.len);
		else
			r_int(c, (long long)res[0].res);
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
	} else if (argis(r, 0, "sadd") || argis(r, 0, "srem")) {
		if (res[0].rc == 0 && res[0].type != MF_T_SET)
			r_err(c, E_WRONGTYPE);
		else if (n < 2 || rc == -ENOENT)
			r_int(c, 0);
		else if (rc)
			r_errno(c, rc);
		else
			r_int(c, (long long)res[1].res);
	} else if (argis(r, 0, "json.set")) {
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
		bool str = argis(r, 0, "json.strappend");
		char *path = json_path(r, str && r->argc == 3 ? 99 : 2, &plen, &legacy);
		bool absent = res[0].rc != 0 || res[0].type != MF_T_JSON;
		if (res[0].rc == 0 && res[0].type != MF_T_JSON)
			r_err(c, E_WRONGTYPE);
		else
			json_update_reply(c, ops[1].type, rc, absent, legacy, path, res[1].res, res[1].out);
		free(path);
	}
}

static void c_multi(resp_ctx *x, client *c, req *r)
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

static void c_discard(resp_ctx *x, client *c, req *r)
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

static void c_watch(resp_ctx *x, client *c, req *r)
{
	if (c->in_multi) {
		r_err(c, "ERR WATCH inside MULTI is not allowed");
		return;
	}
	for (int i = 1; i < r->argc; i++) {
		mf_entry_info e;
		uint64_t v = kget(x, r, i, false, &e) == 0 ? e.version : 0;
		c->watch = mf_xrealloc(c->watch, (size_t)(c->nwatch + 1) * sizeof *c->watch);
		watched *w = &c->watch[c->nwatch++];
		w->k = mf_xmalloc(r->argl[i] + 1);
		memcpy(w->k, r->argv[i], r->argl[i]);
		w->n = r->argl[i];
		w->version = v;
	}
	r_ok(c);
}

static void c_unwatch(resp_ctx *x, client *c, req *r)
{
	(void)x;
	(void)r;
	unwatch(c);
	r_ok(c);
}

static void c_exec(resp_ctx *x, client *c, req *r)
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
	lockset m = lock_all(x);
	/* WATCH: any watched key changed (by anyone) since: nothing runs. */
	bool changed = false;
	for (int i = 0; i < c->nwatch && !changed; i++) {
		mf_entry_info e;
		uint64_t v = mf_store_get(x->st, c->watch[i].k, c->watch[i].n, false, &e) == 0
		                     ? e.version : 0;
		changed = v != c->watch[i].version;
	}
	if (changed) {
		unlock_set(x, m);
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
				tx_view = (const mf_op_result *const *)view;
			}
			const cmd *k = cmd_find(rs[i].argv[0], rs[i].argl[0]);
			k->fn(x, c, &rs[i]);
			tx_view = NULL;
			free(view);
		}
	}
	unlock_set(x, m);
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
	} else if (argis(r, 1, "count") && r->argc == 2) {
		r_int(c, (long long)NCMDS);
	} else if (argis(r, 1, "docs")) {
		/* No docs: redis-cli then uses its built-in hints. */
		r_map(c, 0);
	} else if (argis(r, 1, "info")) {
		r_arr(c, (size_t)r->argc - 2);
		for (int i = 2; i < r->argc; i++) {
			const cmd *k = cmd_find(r->argv[i], r->argl[i]);
			if (k)
				command_info(c, k);
			else
				r_nil_arr(c);
		}
	} else {
		char msg[200];
		snprintf(msg, sizeof msg, "ERR unknown subcommand '%.*s'. Try COMMAND HELP.",
		         (int)(r->argl[1] > 128 ? 128 : r->argl[1]), r->argv[1]);
		r_err(c, msg);
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
		tx_queue(c, r);
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
		if (r->argc == 3 && (!parse_ll(r->argv[2], r->argl[2], count) || *count <= 0))
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
		op = kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]);
		op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
	} else if (kind == BATCH_PUSH) {
		op = push_op(r, is_left(r));
	} else {
		op = kop(is_left(r) ? MF_OP_LPOP : MF_OP_RPOP, MF_T_LIST, r->argv[1], r->argl[1]);
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
		bool exists = kget(x, r, 1, false, &e) == 0;
		mf_type want = kind == BATCH_SET ? MF_T_STRING : MF_T_LIST;
		if ((exists && e.type != want) || (kind == BATCH_POP && !exists))
			return false;
		if (!b)
			b = c->b = mf_xmalloc(sizeof *b);
		b->kind = kind;
		b->n = 0;
		b->stripe = stripe_of(r->argv[1], r->argl[1]);
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
		if (rc)
			r_errno(c, rc);
		else
			r_ok(c);
	} else if (kind == BATCH_PUSH) {
		r_int_result(c, rc, (long long)op->res);
	} else if (rc == -EEXIST) {
		r_err(c, E_WRONGTYPE); /* changed type through the mount meanwhile */
	} else {
		pop_result(c, op, rc, is_left(r), r->argc == 3);
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
		drop_if_empty(x, b->p[0].r);
	pthread_rwlock_unlock(&x->stripes[b->stripe]);
	for (int i = 0; i < b->n; i++)
		req_free(b->p[i].r);
	b->n = 0;
	b->kind = 0;
}
