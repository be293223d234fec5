/*
 * cmd_json.c — RedisJSON's commands on /json documents: JSON.GET
 * JSON.SET JSON.DEL JSON.TYPE, and the updates the store applies as one
 * record each (JSON.NUMINCRBY JSON.ARRAPPEND JSON.STRAPPEND); the legacy
 * path forms mapped onto JSONPath.
 */
#include "cmd_int.h"
#include "../store/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------- JSON (RedisJSON's commands on /json documents) ---------- */

/* A path argument as the store's "$..." syntax: JSONPath as is; the legacy
 * "." / ".a.b" / "a.b" forms are mapped onto it (*legacy set: reply with
 * the value itself, not an array of matches). */
char *rc_json_path(const req *r, int i, size_t *len, bool *legacy)
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
	char *path = rc_json_path(r, 2, len, &legacy);
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

void c_json_get(resp_ctx *x, client *c, req *r)
{
	mf_entry_info e;
	if (!rc_kget_as(x, c, r, MF_T_JSON, true, r_nil, &e))
		return;
	const char *doc = mf_slice_ptr(e.val);
	rbuf out = {0};
	int npaths = r->argc - 2;
	if (npaths > 1)
		rb_put(&out, "{", 1);
	for (int k = 0; k < (npaths > 0 ? npaths : 1); k++) {
		size_t plen, off = 0, len = 0;
		bool legacy;
		char *path = rc_json_path(r, 2 + k, &plen, &legacy);
		/* "$" paths answer with every match ([*], .., negative indexes)
		 * as an array; legacy paths with the one value. */
		char *q = NULL;
		int rc = legacy ? mf_json_get_path_doc(doc, e.val.len, path, plen, &off, &len)
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

/* JSON.NUMINCRBY / JSON.ARRAPPEND / JSON.STRAPPEND: one record each (the
 * store does the read-modify-write), so concurrent updates from RESP and
 * the mount's /.ctl/jincr never lose one.  val: the op's argument. */
static void json_update(resp_ctx *x, client *c, req *r, int type, int pathi, mf_slice val)
{
	size_t plen;
	bool legacy;
	char *path = rc_json_path(r, pathi, &plen, &legacy);
	mf_entry_info e;
	int rc = rc_kget(x, r, 1, false, &e);
	if (rc == 0 && e.type != MF_T_JSON)
		rc = -EEXIST;
	else if (rc == 0 && mf_json_path_check(path, plen) != 0)
		rc = -EBADMSG;
	mf_op op = rc_kop(type, MF_T_JSON, r->argv[1], r->argl[1]);
	op.key2 = mf_slice_from(path, plen, plen);
	op.val = val;
	if (rc == 0) {
		lockset m = rc_lock_shared(x, r, 1, 1, 1);
		rc = mf_db_commit_notify(x->db, &op);
		rc_unlock_set(x, m);
	}
	rc_json_update_reply(c, type, rc, e.type != MF_T_JSON, legacy, path, op.res, op.out);
	mf_op_clear(&op);
	free(path);
}

void rc_json_update_reply(client *c, int type, int rc, bool key_absent, bool legacy,
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

void c_json_numincrby(resp_ctx *x, client *c, req *r)
{
	json_update(x, c, r, MF_OP_JSON_NUMINCRBY, 2,
	            mf_slice_from(r->argv[3], r->argl[3], r->argl[3]));
}

/* JSON.ARRAPPEND's values (argv[3..]) as one JSON array "[v1,v2,...]":
 * the op's argument (each is checked by the store as part of it). */
mf_slice rc_arrappend_values(const req *r)
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

void c_json_arrappend(resp_ctx *x, client *c, req *r)
{
	json_update(x, c, r, MF_OP_JSON_ARRAPPEND, 2, rc_arrappend_values(r));
}

void c_json_strappend(resp_ctx *x, client *c, req *r)
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

void c_json_set(resp_ctx *x, client *c, req *r)
{
	bool nx = false, xx = false;
	if (r->argc == 5 && rc_argis(r, 4, "nx"))
		nx = true;
	else if (r->argc == 5 && rc_argis(r, 4, "xx"))
		xx = true;
	else if (r->argc != 4) {
		r_err(c, E_SYNTAX);
		return;
	}
	if (!rc_keys_ok(c, r, 1, 1, 1))
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
	lockset m = rc_lock_args(x, r, 1, 1, 1);
	mf_entry_info e;
	bool exists = rc_kget(x, r, 1, true, &e) == 0;
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
		there = mf_json_get_path_doc(mf_slice_ptr(e.val), e.val.len, path, plen, &off, &len) == 0;
	}
	if ((nx && there) || (xx && !there)) {
		r_nil(c);
		goto out;
	}
	mf_op op = rc_kop(root ? MF_OP_SET : MF_OP_JSON_SETPATH, MF_T_JSON, r->argv[1], r->argl[1]);
	if (!root)
		op.key2 = mf_slice_from(path, plen, plen);
	op.val = mf_slice_from(r->argv[3], r->argl[3], r->argl[3]);
	rc = rc_commit(x, &op);
	if (rc == -ENOENT)
		r_nil(c); /* the path's parent does not exist: no match */
	else if (rc)
		r_errno(c, rc);
	else
		r_ok(c);
out:
	if (exists)
		mf_slice_unref(&e.val);
	rc_unlock_set(x, m);
	free(path);
}

void c_json_del(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 3) {
		r_err(c, E_SYNTAX);
		return;
	}
	if (!rc_keys_ok(c, r, 1, 1, 1))
		return;
	size_t plen;
	char *path = json_path_arg(c, r, &plen);
	if (!path)
		return;
	lockset m = rc_lock_args(x, r, 1, 1, 1);
	mf_entry_info e;
	if (rc_kget_as(x, c, r, MF_T_JSON, false, r_zero, &e)) {
		mf_op op = rc_kop(MF_OP_JSON_DELPATH, MF_T_JSON, r->argv[1], r->argl[1]);
		op.key2 = mf_slice_from(path, plen, plen);
		int rc = rc_commit(x, &op);
		if (rc == -ENOENT)
			r_int(c, 0);
		else if (rc)
			r_errno(c, rc);
		else
			r_int(c, 1);
	}
	rc_unlock_set(x, m);
	free(path);
}

void c_json_type(resp_ctx *x, client *c, req *r)
{
	if (r->argc > 3) {
		r_err(c, E_SYNTAX);
		return;
	}
	mf_entry_info e;
	if (!rc_kget_as(x, c, r, MF_T_JSON, true, r_nil, &e))
		return;
	size_t plen, off, len;
	bool legacy;
	char *path = rc_json_path(r, 2, &plen, &legacy);
	int rc = mf_json_get_path_doc(mf_slice_ptr(e.val), e.val.len, path, plen, &off, &len);
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
