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

static int kget(resp_ctx *x, const req *r, int i, bool want, mf_entry_info *e)
{
	memset(e, 0, sizeof *e);
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
static void c_set(resp_ctx *x, client *c, req *r)
{
	bool nx = false, xx = false, get = false;
	for (int i = 3; i < r->argc; i++) {
		if (argis(r, i, "nx") && !xx)
			nx = true;
		else if (argis(r, i, "xx") && !nx)
			xx = true;
		else if (argis(r, i, "get"))
			get = true;
		else if (argis(r, i, "keepttl"))
			; /* memfluxfs keys never expire: nothing to keep */
		else if ((argis(r, i, "ex") || argis(r, i, "px") || argis(r, i, "exat") ||
		          argis(r, i, "pxat")) && i + 1 < r->argc) {
			r_err(c, "ERR memfluxfs keys do not expire (EX/PX/EXAT/PXAT unsupported)");
			return;
		} else {
			r_err(c, E_SYNTAX);
			return;
		}
	}
	if (!keys_ok(c, r, 1, 1, 1))
		return;
	if (!nx && !xx && !get) {
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
	int rc = 0;
	if (exists && e.type != MF_T_STRING)
		rc = del_key(x, r->argv[1], r->argl[1]);
	if (rc == 0) {
		mf_op op = kop(MF_OP_SET, MF_T_STRING, r->argv[1], r->argl[1]);
		op.val = mf_slice_from(r->argv[2], r->argl[2], r->argl[2]);
		rc = commit(x, &op);
	}
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
			for (int t = MF_T_STRING; t <= MF_T_LIST; t++)
				if (argis(r, i + 1, type_name(t)))
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
static void drop_if_empty(resp_ctx *x, const req *r)
{
	mf_entry_info after;
	if (kget(x, r, 1, false, &after) == 0 && after.type == MF_T_LIST && after.size == 0) {
		mf_op d = kop(MF_OP_DEL, MF_T_LIST, r->argv[1], r->argl[1]);
		d.arg = 1;
		commit(x, &d); /* ENOTEMPTY/ENOENT: someone else was first */
	}
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
		size_t plen, off, len;
		bool legacy;
		char *path = json_path(r, 2 + k, &plen, &legacy);
		int rc = mf_json_get_path(doc, e.val.len, path, plen, &off, &len);
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
		if (legacy) {
			rb_put(&out, doc + off, len);
		} else {
			rb_put(&out, "[", 1);
			if (rc == 0)
				rb_put(&out, doc + off, len);
			rb_put(&out, "]", 1);
		}
		free(path);
	}
	if (npaths > 1)
		rb_put(&out, "}", 1);
	r_bulk(c, out.p, out.len);
	free(out.p);
	mf_slice_unref(&e.val);
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
		rb_fmt(&b, "db0:keys=%" PRIu64 ",expires=0,avg_ttl=0\r\n", s.keys[0]);
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
	{"llen", 2, CMD_READONLY, 1, 1, 1, c_llen},
	{"lrange", 4, CMD_READONLY, 1, 1, 1, c_lrange},
	{"lindex", 3, CMD_READONLY, 1, 1, 1, c_lindex},
	{"json.get", -2, CMD_READONLY, 1, 1, 1, c_json_get},
	{"json.set", -4, CMD_WRITE, 1, 1, 1, c_json_set},
	{"json.del", -2, CMD_WRITE, 1, 1, 1, c_json_del},
	{"json.type", -2, CMD_READONLY, 1, 1, 1, c_json_type},
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
	return k && (k->flags & (CMD_READONLY | CMD_WRITE));
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
	if (!c->authed || r->argc < 2 || r->argl[1] == 0 || r->argl[1] > MF_KEY_BYTES_MAX)
		return 0;
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
