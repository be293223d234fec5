/*
 * cmd_conn.c — connection commands (PING ECHO AUTH HELLO SELECT QUIT
 * CLIENT CONFIG) and server commands (INFO SAVE BGSAVE LASTSAVE
 * FLUSHDB/FLUSHALL).
 */
#include "cmd_int.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define VERSION "7.0.15" /* the Redis version HELLO and INFO report */

/* ---------- connection commands ---------- */

void c_ping(resp_ctx *x, client *c, req *r)
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

void c_echo(resp_ctx *x, client *c, req *r)
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

void c_auth(resp_ctx *x, client *c, req *r)
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
	                      : (rc_argis(r, 1, "default")); /* no password: any pass for default */
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

void c_hello(resp_ctx *x, client *c, req *r)
{
	long long ver = c->proto;
	int i = 1;
	if (r->argc >= 2) {
		if (!rc_parse_ll(r->argv[1], r->argl[1], &ver)) {
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
		if (rc_argis(r, i, "auth") && i + 2 < r->argc) {
			bool ok = x->password ? password_ok(x, r->argv[i + 1], r->argl[i + 1], r->argv[i + 2],
			                                    r->argl[i + 2])
			                      : rc_argis(r, i + 1, "default");
			if (!ok) {
				r_err(c, "WRONGPASS invalid username-password pair or user is disabled.");
				return;
			}
			c->authed = true;
			i += 2;
		} else if (rc_argis(r, i, "setname") && i + 1 < r->argc) {
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

void c_select(resp_ctx *x, client *c, req *r)
{
	(void)x;
	long long db;
	if (!rc_arg_ll(c, r, 1, &db))
		return;
	if (db != 0)
		r_err(c, "ERR DB index is out of range");
	else
		r_ok(c);
}

void c_quit(resp_ctx *x, client *c, req *r)
{
	(void)x;
	(void)r;
	r_ok(c);
	c->quit = true;
}

void c_client(resp_ctx *x, client *c, req *r)
{
	(void)x;
	if (rc_argis(r, 1, "id") && r->argc == 2) {
		r_int(c, (long long)c->id);
	} else if (rc_argis(r, 1, "getname") && r->argc == 2) {
		if (c->name)
			r_cstr(c, c->name);
		else
			r_nil(c);
	} else if (rc_argis(r, 1, "setname") && r->argc == 3) {
		if (!valid_client_name(r->argv[2], r->argl[2])) {
			r_err(c, "ERR Client names cannot contain spaces, newlines or special characters.");
			return;
		}
		set_name(c, r->argv[2], r->argl[2]);
		r_ok(c);
	} else if (rc_argis(r, 1, "setinfo") && r->argc == 4) {
		r_ok(c);
	} else if (rc_argis(r, 1, "id") || rc_argis(r, 1, "getname") || rc_argis(r, 1, "setname") ||
	           rc_argis(r, 1, "setinfo")) {
		char msg[128];
		snprintf(msg, sizeof msg, "ERR wrong number of arguments for 'client|%.*s' command",
		         (int)r->argl[1], r->argv[1]);
		for (char *p = msg; *p; p++)
			if (p > msg + 40)
				*p = (char)tolower((unsigned char)*p);
		r_err(c, msg);
	} else {
		r_unknown_subcommand(c, r, "CLIENT");
	}
}

void c_config(resp_ctx *x, client *c, req *r)
{
	(void)x;
	if (rc_argis(r, 1, "get") && r->argc >= 3) {
		/* Enough for redis-benchmark's start-up query; memfluxfs is
		 * configured on its command line. */
		size_t n = 0;
		bool save = false, aof = false;
		for (int i = 2; i < r->argc; i++) {
			if (rc_argis(r, i, "save") && !save)
				save = true, n++;
			if (rc_argis(r, i, "appendonly") && !aof)
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
	if (rc_argis(r, 1, "resetstat") && r->argc == 2) {
		r_ok(c);
		return;
	}
	r_unknown_subcommand(c, r, "CONFIG");
}

/* ---------- server ---------- */

void c_dbinfo(resp_ctx *x, client *c, req *r)
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

void c_save(resp_ctx *x, client *c, req *r)
{
	(void)r;
	int rc = mf_db_snapshot(x->db);
	r_ok_or_errno(c, rc);
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

void c_bgsave(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 2 || (r->argc == 2 && !rc_argis(r, 1, "schedule"))) {
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

void c_lastsave(resp_ctx *x, client *c, req *r)
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

void c_flushdb(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 2 || (r->argc == 2 && !rc_argis(r, 1, "async") && !rc_argis(r, 1, "sync"))) {
		r_err(c, E_SYNTAX);
		return;
	}
	lockset m = rc_lock_all(x);
	mf_op op = {0};
	op.type = MF_OP_FLUSH;
	int rc = rc_commit(x, &op);
	rc_unlock_set(x, m);
	r_ok_or_errno(c, rc);
}
