/*
 * reply.c — the reply builders (RESP2 and RESP3 forms of each reply,
 * Redis's error for a store failure) and argument parsing (Redis's
 * string2ll rules).
 */
#include "cmd_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------- replies ---------- */

void r_simple(client *c, const char *s)
{
	rb_fmt(&c->out, "+%s\r\n", s);
}

void r_ok(client *c)
{
	rb_put(&c->out, "+OK\r\n", 5);
}

void r_err(client *c, const char *s)
{
	rb_fmt(&c->out, "-%s\r\n", s);
}

void r_int(client *c, long long v)
{
	rb_fmt(&c->out, ":%lld\r\n", v);
}

void r_bulk(client *c, const void *p, size_t n)
{
	rb_fmt(&c->out, "$%zu\r\n", n);
	rb_put(&c->out, p, n);
	rb_put(&c->out, "\r\n", 2);
}

void r_cstr(client *c, const char *s)
{
	r_bulk(c, s, strlen(s));
}

void r_nil(client *c)
{
	if (c->proto == 3)
		rb_put(&c->out, "_\r\n", 3);
	else
		rb_put(&c->out, "$-1\r\n", 5);
}

void r_nil_arr(client *c)
{
	if (c->proto == 3)
		rb_put(&c->out, "_\r\n", 3);
	else
		rb_put(&c->out, "*-1\r\n", 5);
}

void r_arr(client *c, size_t n)
{
	rb_fmt(&c->out, "*%zu\r\n", n);
}

void r_map(client *c, size_t n)
{
	if (c->proto == 3)
		rb_fmt(&c->out, "%%%zu\r\n", n);
	else
		rb_fmt(&c->out, "*%zu\r\n", 2 * n);
}

/* Redis's reply to an unknown subcommand (argv[1]) of `cmd`. */
void r_unknown_subcommand(client *c, const req *r, const char *cmd)
{
	char msg[200];
	snprintf(msg, sizeof msg, "ERR unknown subcommand '%.*s'. Try %s HELP.",
	         (int)(r->argl[1] > 128 ? 128 : r->argl[1]), r->argv[1], cmd);
	r_err(c, msg);
}

/* A store/WAL failure as an error reply. */
void r_errno(client *c, int err)
{
	if (err == -EFBIG) {
		r_err(c, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
		return;
	}
	char msg[160];
	snprintf(msg, sizeof msg, "ERR memfluxfs: %s", strerror(-err));
	r_err(c, msg);
}

/* A write's reply: OK, or why it failed (any error as r_errno's). */
void r_ok_or_errno(client *c, int rc)
{
	if (rc)
		r_errno(c, rc);
	else
		r_ok(c);
}

/* A write's reply: its integer result, or why it failed.  -EEXIST: the key
 * holds another type (it may have changed type meanwhile, e.g. through the
 * mount, after the command looked). */
void r_int_result(client *c, int rc, long long v)
{
	if (rc == -EEXIST)
		r_err(c, E_WRONGTYPE);
	else if (rc)
		r_errno(c, rc);
	else
		r_int(c, v);
}

/* ---------- arguments ---------- */

bool rc_argis(const req *r, int i, const char *s)
{
	return i < r->argc && r->argl[i] == strlen(s) && strncasecmp(r->argv[i], s, r->argl[i]) == 0;
}

/* Redis's string2ll: optional '-', digits, no spaces, no leading '+'. */
bool rc_parse_ll(const char *p, size_t n, long long *out)
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

bool rc_arg_ll(client *c, const req *r, int i, long long *v)
{
	if (rc_parse_ll(r->argv[i], r->argl[i], v))
		return true;
	r_err(c, E_NOTINT);
	return false;
}

/* The replies a read sends for a missing key (rc_kget_as). */
void r_zero(client *c)
{
	r_int(c, 0);
}

void r_empty_bulk(client *c)
{
	r_bulk(c, "", 0);
}

void r_empty_arr(client *c)
{
	r_arr(c, 0);
}
