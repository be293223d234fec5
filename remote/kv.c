/*
 * kv.c — the remote keyspace as an mf_kv (db/kv.h): get, keys, check,
 * commit, and the /.ctl texts.  Internals: remote_int.h; the scripts:
 * scripts.c.
 */
#include "remote_int.h"
#include "../io/log.h"
#include "../store/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------- helpers ---------- */

static const char *op_word(int type);

/* Wall clock in ns (mtimes; what db.c's mf_now_ns gives the embedded
 * store, kept here so this library needs nothing of db/). */
static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char kind_letter[] = {[MF_T_NONE] = 'n', [MF_T_STRING] = 's', [MF_T_JSON] = 'j',
                                   [MF_T_LIST] = 'l', [MF_T_SET] = 'S'};

static int64_t meta_mtime(const mf_remote *r, const redisReply *m)
{
	if (!m || m->type != REDIS_REPLY_STRING || m->len < 2)
		return r->start_ns;
	return strtoll(m->str + 1, NULL, 10);
}

static char meta_kind(const redisReply *m)
{
	return m && m->type == REDIS_REPLY_STRING && m->len >= 1 ? m->str[0] : 0;
}

/* Elements (a reply array) as list text: one '\n'-terminated line each. */
static mf_slice join_lines(const redisReply *a, size_t from, bool reverse)
{
	size_t n = 0;
	for (size_t i = from; i < a->elements; i++)
		n += a->element[i]->len + 1;
	if (n == 0)
		return MF_SLICE_EMPTY;
	mf_slice s = mf_slice_alloc(n, n);
	char *p = s.buf->data + s.off;
	size_t cnt = a->elements - from;
	for (size_t j = 0; j < cnt; j++) {
		const redisReply *e = a->element[from + (reverse ? cnt - 1 - j : j)];
		memcpy(p, e->str, e->len);
		p += e->len;
		*p++ = '\n';
	}
	return s;
}

/* "MF ENOENT" -> -ENOENT; any other error reply -> -EIO (logged). */
static int reply_errno(const redisReply *rep, const char *what)
{
	static const struct {
		const char *name;
		int e;
	} map[] = {{"ENOENT", ENOENT}, {"EEXIST", EEXIST}, {"EINVAL", EINVAL},
	           {"ENODATA", ENODATA}, {"ENOTEMPTY", ENOTEMPTY}, {"EFBIG", EFBIG},
	           {"ERANGE", ERANGE}};
	if (rep->len > 3 && memcmp(rep->str, "MF ", 3) == 0)
		for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
			if (strcmp(rep->str + 3, map[i].name) == 0)
				return -map[i].e;
	mf_log_error("remote %s: %s", what, rep->str);
	return -EIO;
}

/* EVALSHA of a script on the node of KEYS[0] (argv[0..1] are filled here:
 * the command and the script).  NOSCRIPT (a server that lost its scripts)
 * is answered by sending the text: nothing was run, so resending is safe. */
static int run_script(mf_remote *r, int script, int flags, int argc, const char **argv,
                      size_t *lens, redisReply **rep, long long *acks)
{
	argv[0] = "EVALSHA";
	lens[0] = 7;
	argv[1] = r->sha[script];
	lens[1] = 40;
	int slot = (int)rm_slot(argv[3], lens[3]);
	int e = rm_call(r, slot, -1, flags, argc, argv, lens, rep, acks);
	if (e == 0 && (*rep)->type == REDIS_REPLY_ERROR && strncmp((*rep)->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(*rep);
		argv[0] = "EVAL";
		lens[0] = 4;
		argv[1] = rm_scripts[script];
		lens[1] = strlen(rm_scripts[script]);
		e = rm_call(r, slot, -1, flags, argc, argv, lens, rep, acks);
	}
	return e;
}

/* ---------- get ---------- */

static int rk_get(void *impl, const void *key, size_t klen, bool want_value, mf_entry_info *out)
{
	mf_remote *r = impl;
	char meta[32];
	const char *argv[5] = {NULL, NULL, "2", key, meta};
	size_t lens[5] = {0, 0, 1, klen, mf_remote_meta_key(key, klen, meta)};
	const char *want = want_value ? "1" : "0";
	const char *av[6] = {argv[0], argv[1], argv[2], argv[3], argv[4], want};
	size_t lv[6] = {lens[0], lens[1], lens[2], lens[3], lens[4], 1};
	redisReply *rep;
	memset(out, 0, sizeof *out);
	/* Modes and owners are not kept remotely: the type's defaults. */
	out->mode = MF_MODE_DEFAULT;
	out->uid = out->gid = MF_ID_DEFAULT;
	atomic_fetch_add(&r->n_reads, 1);
	int e = run_script(r, RM_SCRIPT_GET, RM_IDEMPOTENT, 6, av, lv, &rep, NULL);
	if (e)
		return e;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
	    rep->element[0]->type != REDIS_REPLY_STRING) {
		e = rep->type == REDIS_REPLY_ERROR ? reply_errno(rep, "read") : -EIO;
		freeReplyObject(rep);
		return e;
	}
	const char *t = rep->element[0]->str;
	const redisReply *m = rep->element[1];
	out->mtime_ns = out->ctime_ns = meta_mtime(r, m);
	if (rep->element[2]->type == REDIS_REPLY_INTEGER && rep->element[2]->integer > 0)
		out->expire_ns = rep->element[2]->integer * 1000000;
	bool coll = strcmp(t, "list") == 0 || strcmp(t, "set") == 0;
	if (strcmp(t, "string") == 0 && rep->elements >= 4) {
		out->type = meta_kind(m) == 'j' ? MF_T_JSON : MF_T_STRING;
		const redisReply *v = rep->element[3];
		if (want_value) {
			out->size = v->len;
			out->val = v->len ? mf_slice_from(v->str, v->len, v->len) : MF_SLICE_EMPTY;
		} else {
			out->size = (uint64_t)v->integer;
		}
	} else if (coll && rep->elements >= 4) {
		out->type = t[0] == 'l' ? MF_T_LIST : MF_T_SET;
		if (want_value) {
			out->val = join_lines(rep->element[3], 0, false);
			out->size = out->val.len;
			out->count = rep->element[3]->elements;
		} else if (rep->elements >= 5) {
			out->size = (uint64_t)rep->element[3]->integer;
			out->count = (uint64_t)rep->element[4]->integer;
		}
	} else if (strcmp(t, "none") == 0 && (meta_kind(m) == 'l' || meta_kind(m) == 'S') &&
	           !memchr(m->str + 1, 'x', m->len - 1)) {
		/* an empty list or set: Redis keeps no key for it ('x': it had
		 * an expiry, and Redis removed it) */
		out->type = meta_kind(m) == 'l' ? MF_T_LIST : MF_T_SET;
	} else {
		/* Absent, or a Redis type the mount does not show (hash, zset...). */
		e = -ENOENT;
	}
	out->version = (uint64_t)out->mtime_ns;
	freeReplyObject(rep);
	return e;
}

/* ---------- keys ---------- */

typedef struct named {
	char *name;
	size_t len;
	char kind;
} named;

typedef struct names {
	named *v;
	size_t n, cap;
} names;

static void names_add(names *a, const char *p, size_t n, char kind)
{
	if (a->n == a->cap) {
		a->cap = a->cap ? 2 * a->cap : 64;
		a->v = mf_xrealloc(a->v, a->cap * sizeof *a->v);
	}
	char *c = mf_xmalloc(n + 1);
	memcpy(c, p, n);
	c[n] = '\0';
	a->v[a->n++] = (named){c, n, kind};
}

static void names_free(names *a)
{
	for (size_t i = 0; i < a->n; i++)
		free(a->v[i].name);
	free(a->v);
}

static int named_cmp(const void *a, const void *b)
{
	const named *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = memcmp(x->name, y->name, n);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static const named *names_find(const names *a, const char *p, size_t n)
{
	named k = {(char *)p, n, 0};
	return a->n ? bsearch(&k, a->v, a->n, sizeof *a->v, named_cmp) : NULL;
}

/* SCAN one node; add each key to out (kind: the scanned type's letter).
 * match/type may be NULL. */
static int scan_node(mf_remote *r, int node, const char *match, const char *type, char kind,
                     names *out)
{
	char cursor[32] = "0";
	do {
		const char *argv[8] = {"SCAN", cursor, "COUNT", "1000"};
		int argc = 4;
		if (match) {
			argv[argc++] = "MATCH";
			argv[argc++] = match;
		}
		if (type) {
			argv[argc++] = "TYPE";
			argv[argc++] = type;
		}
		size_t lens[8];
		for (int i = 0; i < argc; i++)
			lens[i] = strlen(argv[i]);
		redisReply *rep;
		int e = rm_call(r, -1, node, RM_IDEMPOTENT, argc, argv, lens, &rep, NULL);
		if (e)
			return e;
		if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
		    rep->element[0]->type != REDIS_REPLY_STRING) {
			freeReplyObject(rep);
			return -EIO;
		}
		snprintf(cursor, sizeof cursor, "%s", rep->element[0]->str);
		const redisReply *ks = rep->element[1];
		for (size_t i = 0; i < ks->elements; i++)
			names_add(out, ks->element[i]->str, ks->element[i]->len, kind);
		freeReplyObject(rep);
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

/* Every meta field (key -> kind) of one node. */
static int metas_node(mf_remote *r, int node, names *out)
{
	names hashes = {0};
	int e = scan_node(r, node, "__mf:{*", "hash", 0, &hashes);
	for (size_t i = 0; !e && i < hashes.n; i++) {
		const char *argv[2] = {"HGETALL", hashes.v[i].name};
		size_t lens[2] = {7, hashes.v[i].len};
		redisReply *rep;
		e = rm_call(r, -1, node, RM_IDEMPOTENT, 2, argv, lens, &rep, NULL);
		if (e)
			break;
		if (rep->type == REDIS_REPLY_ARRAY)
			for (size_t j = 0; j + 1 < rep->elements; j += 2) {
				const redisReply *v = rep->element[j + 1];
				char kind = v->len ? v->str[0] : 0;
				/* An empty list/set field marked with an expiry ('x'):
				 * the key expired, so it is no empty list or set. */
				if (v->len > 1 && memchr(v->str + 1, 'x', v->len - 1))
					kind = kind == 'l' || kind == 'S' ? '-' : kind;
				names_add(out, rep->element[j]->str, rep->element[j]->len, kind);
			}
		freeReplyObject(rep);
	}
	names_free(&hashes);
	return e;
}

static size_t rk_keys(void *impl, mf_type type, mf_slice **keys)
{
	mf_remote *r = impl;
	int masters[RM_MAX_NODES];
	int nm = rm_masters(r, masters, RM_MAX_NODES);
	names metas = {0}, found = {0};
	int e = 0;
	for (int i = 0; i < nm && !e; i++) {
		e = metas_node(r, masters[i], &metas);
		if (!e && (type == MF_T_STRING || type == MF_T_JSON || type == MF_T_NONE))
			e = scan_node(r, masters[i], NULL, "string", 's', &found);
		if (!e && (type == MF_T_LIST || type == MF_T_NONE))
			e = scan_node(r, masters[i], NULL, "list", 'l', &found);
		if (!e && (type == MF_T_SET || type == MF_T_NONE))
			e = scan_node(r, masters[i], NULL, "set", 'S', &found);
	}
	if (e)
		mf_log_error("remote: listing keys failed: %s", strerror(-e));
	if (metas.n) /* (qsort's base must not be NULL, even for 0 items) */
		qsort(metas.v, metas.n, sizeof *metas.v, named_cmp);
	if (found.n)
		qsort(found.v, found.n, sizeof *found.v, named_cmp);
	size_t n = 0, cap = found.n + metas.n + 1;
	mf_slice *out = mf_xmalloc(cap * sizeof *out);
	for (size_t i = 0; !e && i < found.n; i++) {
		const named *x = &found.v[i];
		const named *m = names_find(&metas, x->name, x->len);
		mf_type t = x->kind == 'l'   ? MF_T_LIST
		            : x->kind == 'S' ? MF_T_SET
		            : m && m->kind == 'j' ? MF_T_JSON
		                                  : MF_T_STRING;
		if (type == MF_T_NONE || type == t)
			out[n++] = mf_slice_from(x->name, x->len, x->len);
	}
	/* Empty lists and sets: a meta field without a key. */
	for (size_t i = 0; !e && i < metas.n; i++) {
		char k = metas.v[i].kind;
		mf_type t = k == 'l' ? MF_T_LIST : k == 'S' ? MF_T_SET : MF_T_NONE;
		if (t != MF_T_NONE && (type == t || type == MF_T_NONE) &&
		    !names_find(&found, metas.v[i].name, metas.v[i].len))
			out[n++] = mf_slice_from(metas.v[i].name, metas.v[i].len, metas.v[i].len);
	}
	names_free(&metas);
	names_free(&found);
	*keys = out;
	return n;
}

/* ---------- the tree (/kv folders: store.h mf_store_stat/list) ----------
 * Folders here are implicit only: a name with '/' in it makes the folders
 * above it (keys "a/b" and "a/c" show as /kv/a/b, /kv/a/c).  Built from a
 * listing of every key: O(keys) per folder listed. */

static int rk_list(void *impl, const void *path, size_t len, mf_dirent **out, size_t *n)
{
	mf_remote *r = impl;
	static const mf_type types[] = {MF_T_STRING, MF_T_JSON, MF_T_LIST, MF_T_SET};
	size_t cnt = 0, cap = 16;
	mf_dirent *d = mf_xmalloc(cap * sizeof *d);
	bool below = len == 0;
	for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
		mf_slice *ks;
		size_t nk = rk_keys(r, types[t], &ks);
		for (size_t i = 0; i < nk; i++) {
			const char *k = mf_slice_ptr(ks[i]);
			size_t kl = ks[i].len, at = len ? len + 1 : 0;
			if (len && (kl <= at || memcmp(k, path, len) != 0 || k[len] != '/'))
				continue;
			below = true;
			const char *slash = memchr(k + at, '/', kl - at);
			size_t cl = slash ? (size_t)(slash - (k + at)) : kl - at;
			uint8_t ct = slash ? MF_T_FOLDER : (uint8_t)types[t];
			bool dup = false;
			for (size_t j = 0; j < cnt && !dup && slash; j++)
				dup = d[j].type == MF_T_FOLDER && d[j].name.len == cl &&
				      memcmp(mf_slice_ptr(d[j].name), k + at, cl) == 0;
			if (dup || cl == 0)
				continue;
			if (cnt == cap)
				d = mf_xrealloc(d, (cap *= 2) * sizeof *d);
			d[cnt++] = (mf_dirent){mf_slice_from(k + at, cl, cl), ct};
		}
		for (size_t i = 0; i < nk; i++)
			mf_slice_unref(&ks[i]);
		free(ks);
	}
	if (!below) {
		free(d);
		mf_entry_info info;
		int e = rk_get(r, path, len, false, &info);
		return e == 0 ? -ENOTDIR : e;
	}
	*out = d;
	*n = cnt;
	return 0;
}

static int rk_stat(void *impl, const void *path, size_t len, mf_entry_info *out)
{
	mf_remote *r = impl;
	int e = len ? rk_get(r, path, len, false, out) : -ENOENT;
	if (e != -ENOENT)
		return e;
	/* Not a key: an implicit folder if some key lies below it. */
	mf_dirent *d;
	size_t n;
	e = len ? rk_list(r, path, len, &d, &n) : 0;
	if (e)
		return e == -ENOTDIR ? -ENOENT : e;
	if (len)
		mf_store_dirents_free(d, n);
	memset(out, 0, sizeof *out);
	out->type = MF_T_FOLDER;
	out->implicit = true;
	out->mode = MF_MODE_DEFAULT;
	out->uid = out->gid = MF_ID_DEFAULT;
	out->mtime_ns = out->ctime_ns = r->start_ns;
	return 0;
}

/* ---------- check ---------- */

static bool op_creates(int t)
{
	return t == MF_OP_CREATE || t == MF_OP_SET || t == MF_OP_APPEND || t == MF_OP_SETRANGE ||
	       t == MF_OP_RPUSH || t == MF_OP_LPUSH || t == MF_OP_SADD || t == MF_OP_INCRBY;
}

/* What can be refused without the server (mirrors store.c validate). */
static int local_check(const mf_op *op)
{
	if (op->type == MF_OP_FLUSH)
		return 0;
	if ((op->type == MF_OP_EXPIRE ? op->ktype != MF_T_NONE : !mf_type_valid(op->ktype)) ||
	    op->key.len == 0 || op->key.len > MF_KEY_BYTES_MAX)
		return -EINVAL;
	if (op->val.len > MF_VALUE_MAX ||
	    (op->type == MF_OP_SETRANGE && op->arg + op->val.len > MF_VALUE_MAX) ||
	    (op->type == MF_OP_TRUNCATE && op->arg > MF_VALUE_MAX))
		return -EFBIG;
	if (op->type == MF_OP_SET)
		return mf_value_check(op->ktype, mf_slice_ptr(op->val), op->val.len, NULL, NULL);
	if ((op->type == MF_OP_APPEND || op->type == MF_OP_SETRANGE) && op->ktype != MF_T_STRING)
		return -EINVAL;
	if ((op->type == MF_OP_RPUSH || op->type == MF_OP_LPUSH) &&
	    (op->ktype != MF_T_LIST || op->val.len == 0))
		return -EINVAL;
	if ((op->type == MF_OP_SADD || op->type == MF_OP_SREM) &&
	    (op->ktype != MF_T_SET || op->val.len == 0))
		return -EINVAL;
	if (op->type == MF_OP_INCRBY && op->ktype != MF_T_STRING)
		return -EINVAL;
	if (op->type == MF_OP_JSON_SETPATH)
		return mf_value_check(MF_T_JSON, mf_slice_ptr(op->val), op->val.len, NULL, NULL);
	return 0;
}

static int rk_check(void *impl, const mf_op *op)
{
	int e = local_check(op);
	if (e || op->type == MF_OP_FLUSH)
		return e;
	if (!op_word(op->type) && op->type != MF_OP_JSON_SETPATH && op->type != MF_OP_JSON_DELPATH)
		return -EOPNOTSUPP;
	mf_entry_info info;
	e = rk_get(impl, mf_slice_ptr(op->key), op->key.len, false, &info);
	if (e && e != -ENOENT)
		return e;
	bool exists = e == 0, same = exists && info.type == op->ktype;
	mf_slice_unref(&info.val);
	if (op->type == MF_OP_EXPIRE)
		return exists ? 0 : -ENOENT;
	if (op_creates(op->type))
		return exists && !same ? -EEXIST : 0;
	return same ? 0 : -ENOENT;
}

/* ---------- commit ---------- */

/* A list value as elements: its lines (an unterminated last line is one
 * too, as the store completes it).  Fills argv/lens from index at. */
static int split_lines(const mf_op *op, const char ***argv, size_t **lens, int at, bool reverse)
{
	const char *p = mf_slice_ptr(op->val);
	size_t n = op->val.len;
	int cnt = 0;
	for (size_t i = 0; i < n;) {
		const char *nl = memchr(p + i, '\n', n - i);
		i = nl ? (size_t)(nl - p) + 1 : n;
		cnt++;
	}
	*argv = mf_xrealloc(*argv, (size_t)(at + cnt) * sizeof **argv);
	*lens = mf_xrealloc(*lens, (size_t)(at + cnt) * sizeof **lens);
	int k = 0;
	for (size_t i = 0; i < n; k++) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t end = nl ? (size_t)(nl - p) : n;
		int idx = at + (reverse ? cnt - 1 - k : k);
		(*argv)[idx] = p + i;
		(*lens)[idx] = end - i;
		i = nl ? end + 1 : n;
	}
	return at + cnt;
}

static const char *op_word(int type)
{
	switch (type) {
	case MF_OP_CREATE: return "CREATE";
	case MF_OP_SET: return "SET";
	case MF_OP_APPEND: return "APPEND";
	case MF_OP_TRUNCATE: return "TRUNCATE";
	case MF_OP_DEL: return "DEL";
	case MF_OP_RENAME: return "RENAME";
	case MF_OP_SETTIME: return "SETTIME";
	case MF_OP_RPUSH: return "RPUSH";
	case MF_OP_LPOP: return "LPOP";
	case MF_OP_LPUSH: return "LPUSH";
	case MF_OP_RPOP: return "RPOP";
	case MF_OP_SETRANGE: return "SETRANGE";
	case MF_OP_SADD: return "SADD";
	case MF_OP_SREM: return "SREM";
	case MF_OP_INCRBY: return "INCRBY";
	case MF_OP_EXPIRE: return "EXPIRE";
	/* INCRBYFLOAT, SMOVE, the JSON number/array/string edits and MULTI
	 * come only from the embedded store's RESP face: not mapped. */
	default: return NULL;
	}
}

/* After a write: were enough replicas told?  -EIO (and a log line) if not. */
static int check_acks(mf_remote *r, const mf_op *op, long long acks)
{
	if (r->opts.replicas == 0 || acks >= (long long)r->opts.replicas)
		return 0;
	atomic_fetch_add(&r->n_wait_short, 1);
	char kb[400];
	mf_log_error("remote: %s %s acknowledged by %lld of %u replicas within %u ms: failing it (EIO); "
	             "the master has it and may still lose it",
	             mf_optype_name(op->type), mf_log_key(kb, sizeof kb, mf_slice_ptr(op->key), op->key.len),
	             acks, r->opts.replicas, r->opts.timeout_ms / 2);
	return -EIO;
}

static int flush_all(mf_remote *r, mf_op *op)
{
	int masters[RM_MAX_NODES];
	int nm = rm_masters(r, masters, RM_MAX_NODES);
	int flags = r->opts.replicas ? RM_WAIT : 0;
	for (int i = 0; i < nm; i++) {
		const char *argv[1] = {"FLUSHDB"};
		size_t lens[1] = {7};
		redisReply *rep;
		long long acks = 0;
		int e = rm_call(r, -1, masters[i], flags, 1, argv, lens, &rep, &acks);
		if (e)
			return e;
		e = rep->type == REDIS_REPLY_ERROR ? reply_errno(rep, "FLUSHDB") : check_acks(r, op, acks);
		freeReplyObject(rep);
		if (e)
			return e;
	}
	return 0;
}

/* JSON path edits: read the document, edit it here (json.c), write it
 * back only if unchanged meanwhile (cas script); retried on a race. */
static int json_path_edit(mf_remote *r, mf_op *op, int64_t now)
{
	const char *key = mf_slice_ptr(op->key);
	bool del_root = op->type == MF_OP_JSON_DELPATH && op->key2.len == 1 &&
	                mf_slice_ptr(op->key2)[0] == '$';
	for (int tries = 0; tries < 100; tries++) {
		mf_entry_info info;
		int e = rk_get(r, key, op->key.len, true, &info);
		if (e == 0 && info.type != MF_T_JSON)
			e = -ENOENT;
		if (e) {
			mf_slice_unref(&info.val);
			return e;
		}
		char *doc = NULL;
		size_t dlen = 0;
		if (!del_root) {
			e = op->type == MF_OP_JSON_DELPATH
			        ? mf_json_del_path(mf_slice_ptr(info.val), info.val.len,
			                           mf_slice_ptr(op->key2), op->key2.len, &doc, &dlen)
			        : mf_json_set_path(mf_slice_ptr(info.val), info.val.len,
			                           mf_slice_ptr(op->key2), op->key2.len,
			                           mf_slice_ptr(op->val), op->val.len, &doc, &dlen);
			if (e) {
				mf_slice_unref(&info.val);
				return e;
			}
		}
		char meta[32], nowbuf[24];
		const char *argv[8] = {NULL, NULL, "2", key, meta, mf_slice_ptr(info.val),
		                       doc ? doc : "", nowbuf};
		size_t lens[8] = {0, 0, 1, op->key.len, mf_remote_meta_key(key, op->key.len, meta),
		                  info.val.len, dlen, (size_t)sprintf(nowbuf, "%" PRId64, now)};
		const char *av[9];
		size_t lv[9];
		memcpy(av, argv, sizeof argv);
		memcpy(lv, lens, sizeof lens);
		av[8] = del_root ? "del" : "set";
		lv[8] = 3;
		redisReply *rep;
		long long acks = 0;
		e = run_script(r, RM_SCRIPT_CAS, r->opts.replicas ? RM_WAIT : 0, 9, av, lv, &rep, &acks);
		free(doc);
		mf_slice_unref(&info.val);
		if (e)
			return e;
		bool done = rep->type == REDIS_REPLY_INTEGER && rep->integer == 1;
		if (rep->type == REDIS_REPLY_ERROR)
			e = reply_errno(rep, "JSON edit");
		freeReplyObject(rep);
		if (e)
			return e;
		if (done)
			return check_acks(r, op, acks);
	}
	return -EIO; /* a document rewritten 100 times under us: give up */
}

int rm_commit(void *impl, mf_op *op)
{
	mf_remote *r = impl;
	int e = local_check(op);
	if (e)
		return e;
	atomic_fetch_add(&r->n_writes, 1);
	int64_t now = op->time_ns ? op->time_ns : wall_ns();
	if (op->type == MF_OP_FLUSH)
		return flush_all(r, op);
	if (op->type == MF_OP_JSON_SETPATH || op->type == MF_OP_JSON_DELPATH)
		return json_path_edit(r, op, now);
	/* Modes, owners and atimes are not kept remotely (files show the
	 * type's defaults): SETATTR sets only the mtime, and refuses a real
	 * mode/owner change (EPERM, as the embedded store did before it kept
	 * them); MKFILE (a create carrying its creator's mode) is a create. */
	if (op->type == MF_OP_SETATTR) {
		mf_attr a = {MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, 0, 0};
		mf_attr_decode(mf_slice_ptr(op->val), op->val.len >= MF_ATTR_B_LEN ? MF_ATTR_B_LEN
		                                                                   : MF_ATTR_A_LEN, &a);
		if (((op->arg & MF_ATTR_MODE) && a.mode != MF_MODE_DEFAULT) ||
		    ((op->arg & MF_ATTR_UID) && a.uid != MF_ID_DEFAULT) ||
		    ((op->arg & MF_ATTR_GID) && a.gid != MF_ID_DEFAULT))
			return -EPERM;
		mf_op st = {.type = MF_OP_SETTIME, .ktype = op->ktype, .time_ns = now,
		            .key = op->key};
		if (op->arg & MF_ATTR_MTIME) {
			st.arg = (uint64_t)a.mtime_ns;
			return rm_commit(r, &st);
		}
		mf_entry_info info;
		e = rk_get(r, mf_slice_ptr(op->key), op->key.len, false, &info);
		return e ? e : info.type == op->ktype ? 0 : -ENOENT;
	}
	if (op->type == MF_OP_MKFILE) {
		mf_op c = {.type = op->arg & MF_MKFILE_KEEP ? MF_OP_CREATE : MF_OP_SET,
		           .ktype = op->ktype, .time_ns = now, .key = op->key};
		if (op->val.len > MF_ATTR_A_LEN)
			c.val = (mf_slice){op->val.buf, op->val.off + MF_ATTR_A_LEN,
			                   op->val.len - MF_ATTR_A_LEN};
		return rm_commit(r, &c);
	}
	/* A handle's byte ranges (op.h WRITEV) save WAL bytes, not round trips:
	 * the server takes whole values.  "Refused, nothing changed" makes the
	 * mount send the handle's whole value as SET (fs/commit.c). */
	if (op->type == MF_OP_WRITEV)
		return -ESTALE;
	const char *word = op_word(op->type);
	if (!word)
		return -EOPNOTSUPP;
	const char *key = mf_slice_ptr(op->key), *key2 = mf_slice_ptr(op->key2);
	bool rename = op->type == MF_OP_RENAME;
	if (rename && r->cluster && rm_slot(key, op->key.len) != rm_slot(key2, op->key2.len))
		return -EXDEV; /* RENAME cannot cross cluster slots */
	char meta[32], meta2[32], nowbuf[24], argbuf[24], kind[2] = {kind_letter[op->ktype], 0};
	int nkeys = rename ? 4 : 2;
	const char **argv = mf_xmalloc(16 * sizeof *argv);
	size_t *lens = mf_xmalloc(16 * sizeof *lens);
	int argc = 0;
	argv[argc] = NULL, lens[argc++] = 0; /* EVALSHA sha: run_script */
	argv[argc] = NULL, lens[argc++] = 0;
	argv[argc] = rename ? "4" : "2", lens[argc++] = 1;
	argv[argc] = key, lens[argc++] = op->key.len;
	argv[argc] = meta, lens[argc++] = mf_remote_meta_key(key, op->key.len, meta);
	if (rename) {
		argv[argc] = key2, lens[argc++] = op->key2.len;
		argv[argc] = meta2, lens[argc++] = mf_remote_meta_key(key2, op->key2.len, meta2);
	}
	(void)nkeys;
	argv[argc] = word, lens[argc++] = strlen(word);
	argv[argc] = kind, lens[argc++] = 1;
	argv[argc] = nowbuf, lens[argc++] = (size_t)sprintf(nowbuf, "%" PRId64, now);
	argv[argc] = argbuf, lens[argc++] = op->type == MF_OP_INCRBY /* a signed delta */
	                                         ? (size_t)sprintf(argbuf, "%" PRId64, (int64_t)op->arg)
	                                         : (size_t)sprintf(argbuf, "%" PRIu64, op->arg);
	if (((op->ktype == MF_T_LIST || op->ktype == MF_T_SET) && op->type == MF_OP_SET) ||
	    op->type == MF_OP_RPUSH || op->type == MF_OP_LPUSH || op->type == MF_OP_SADD ||
	    op->type == MF_OP_SREM)
		/* LPUSH prepends the lines as a block: pushed last line first. */
		argc = split_lines(op, &argv, &lens, argc, op->type == MF_OP_LPUSH);
	else if (op->type == MF_OP_SET || op->type == MF_OP_APPEND || op->type == MF_OP_SETRANGE)
		argv[argc] = mf_slice_ptr(op->val), lens[argc++] = op->val.len;
	redisReply *rep;
	long long acks = 0;
	e = run_script(r, RM_SCRIPT_APPLY, r->opts.replicas ? RM_WAIT : 0, argc, argv, lens, &rep,
	               &acks);
	free(argv);
	free(lens);
	if (e)
		return e;
	if (rep->type == REDIS_REPLY_ERROR) {
		e = reply_errno(rep, mf_optype_name(op->type));
	} else if (rep->type == REDIS_REPLY_INTEGER) {
		op->res = (uint64_t)rep->integer;
	} else if (rep->type == REDIS_REPLY_ARRAY) {
		/* LPOP/RPOP: popped elements; RPOP's come tail first. */
		mf_slice_unref(&op->out);
		op->out = join_lines(rep, 0, op->type == MF_OP_RPOP);
	}
	freeReplyObject(rep);
	return e ? e : check_acks(r, op, acks);
}

/* The remote applies an op before answering, so enqueue does the whole
 * commit: its place in the order is fixed once the server has run it. */
typedef struct rk_ticket {
	int result;
} rk_ticket;
_Static_assert(sizeof(rk_ticket) <= sizeof(mf_kv_ticket), "ticket fits");

static int rk_commit_enqueue(void *impl, mf_op *op, mf_kv_ticket *t)
{
	((rk_ticket *)(void *)t->opaque)->result = rm_commit(impl, op);
	return 0;
}

static int rk_commit_wait(void *impl, mf_kv_ticket *t)
{
	(void)impl;
	return ((rk_ticket *)(void *)t->opaque)->result;
}

/* Every acknowledged commit is already the server's (and, with
 * --replicas, its replicas'): nothing of ours to flush. */
static int rk_sync(void *impl)
{
	(void)impl;
	return 0;
}

static int rk_snapshot(void *impl)
{
	(void)impl;
	return -EOPNOTSUPP; /* the server's persistence (RDB/AOF) is its own */
}

static char *rk_stats_text(void *impl)
{
	mf_remote *r = impl;
	char *s = NULL;
	int masters[RM_MAX_NODES];
	int nm = rm_masters(r, masters, RM_MAX_NODES);
	/* The same key counts as the embedded store's stats (one listing per
	 * type: /.ctl/stats is read by people and tests, not in a hot path). */
	uint64_t cnt[MF_T_MAX_ + 1] = {0};
	static const mf_type types[] = {MF_T_STRING, MF_T_JSON, MF_T_LIST, MF_T_SET};
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		mf_slice *ks;
		size_t n = rk_keys(r, types[i], &ks);
		for (size_t j = 0; j < n; j++)
			mf_slice_unref(&ks[j]);
		free(ks);
		cnt[types[i]] = n;
		cnt[0] += n;
	}
	size_t blocked = 0;
	pthread_mutex_lock(&r->bpop_mu);
	for (rm_bwait *b = r->bwaits; b; b = b->next)
		blocked++;
	pthread_mutex_unlock(&r->bpop_mu);
	/* Expiry figures are the servers' own (INFO): keys with a TTL now, and
	 * keys expired since each server started. */
	uint64_t with_ttl = 0, expired = 0;
	int masters_[RM_MAX_NODES];
	int nm_ = rm_masters(r, masters_, RM_MAX_NODES);
	for (int i = 0; i < nm_; i++) {
		const char *argv[2] = {"INFO", "all"};
		size_t lens[2] = {4, 3};
		redisReply *rep;
		if (rm_call(r, -1, masters_[i], RM_IDEMPOTENT, 2, argv, lens, &rep, NULL) != 0)
			continue;
		if (rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_STATUS) {
			char db[32];
			snprintf(db, sizeof db, "\ndb%d:", r->db);
			const char *p = strstr(rep->str, db), *q;
			if (p && (q = strstr(p, "expires=")) != NULL)
				with_ttl += strtoull(q + 8, NULL, 10);
			if ((p = strstr(rep->str, "\nexpired_keys:")) != NULL)
				expired += strtoull(p + 14, NULL, 10);
		}
		freeReplyObject(rep);
	}
	char *head = NULL;
	if (asprintf(&head,
	             "keys %" PRIu64 "\nkeys_kv %" PRIu64 "\nkeys_json %" PRIu64 "\nkeys_lists %" PRIu64
	             "\nkeys_sets %" PRIu64 "\nkeys_with_expiry %" PRIu64 "\nexpired_keys %" PRIu64
	             "\nblocked_pops %zu\n",
	             cnt[0], cnt[MF_T_STRING], cnt[MF_T_JSON], cnt[MF_T_LIST], cnt[MF_T_SET], with_ttl,
	             expired, blocked) < 0)
		return NULL;
	if (asprintf(&s,
	             "%sbackend remote\nstore %s\nremote_nodes %d\nremote_masters %d\nreplicas_wait %u\n"
	             "remote_reads %" PRIuFAST64 "\nremote_writes %" PRIuFAST64
	             "\nremote_errors %" PRIuFAST64 "\nremote_connects %" PRIuFAST64
	             "\nremote_redirects %" PRIuFAST64 "\nremote_invalidations %" PRIuFAST64
	             "\nremote_wait_short %" PRIuFAST64 "\nopen_handles %" PRIuFAST64
	             "\nreads_hit %" PRIuFAST64 "\nreads_miss %" PRIuFAST64 "\n",
	             head, r->opts.url, r->nnodes, nm, r->opts.replicas, atomic_load(&r->n_reads),
	             atomic_load(&r->n_writes), atomic_load(&r->n_errors),
	             atomic_load(&r->n_reconnects), atomic_load(&r->n_redirects),
	             atomic_load(&r->n_invalidations), atomic_load(&r->n_wait_short),
	             atomic_load(&r->n_handles), atomic_load(&r->n_read_hits),
	             atomic_load(&r->n_read_misses)) < 0)
		s = NULL;
	free(head);
	return s;
}

static char *rk_snapshot_text(void *impl)
{
	(void)impl;
	return strdup("snapshots none: durability is the server's (its RDB/AOF settings)\n");
}

static void rk_stats(void *impl, mf_store_stats *out)
{
	mf_remote *r = impl;
	memset(out, 0, sizeof *out);
	int masters[RM_MAX_NODES];
	int nm = rm_masters(r, masters, RM_MAX_NODES);
	for (int i = 0; i < nm; i++) {
		const char *argv[1] = {"DBSIZE"};
		size_t lens[1] = {6};
		redisReply *rep;
		if (rm_call(r, -1, masters[i], RM_IDEMPOTENT, 1, argv, lens, &rep, NULL) == 0) {
			if (rep->type == REDIS_REPLY_INTEGER)
				out->keys[0] += (uint64_t)rep->integer;
			freeReplyObject(rep);
		}
	}
}

static uint64_t rk_memory(void *impl, uint64_t *limit)
{
	(void)impl;
	*limit = 0; /* the server's maxmemory is its own */
	return 0;
}

static void rk_count_read(void *impl, bool hit)
{
	mf_remote *r = impl;
	atomic_fetch_add(hit ? &r->n_read_hits : &r->n_read_misses, 1);
}

static void rk_handles_add(void *impl, int delta)
{
	mf_remote *r = impl;
	atomic_fetch_add(&r->n_handles, (uint_fast64_t)(int64_t)delta);
}

static const mf_kv_ops remote_ops = {
	.bpop = rm_bpop,
	.bpop_cancel = rm_bpop_cancel,
	.get = rk_get,
	.keys = rk_keys,
	.stat = rk_stat,
	.list = rk_list,
	.check = rk_check,
	.commit = rm_commit,
	.commit_enqueue = rk_commit_enqueue,
	.commit_wait = rk_commit_wait,
	.sync = rk_sync,
	.snapshot = rk_snapshot,
	.stats_text = rk_stats_text,
	.snapshot_text = rk_snapshot_text,
	.stats = rk_stats,
	.memory = rk_memory,
	.count_read = rk_count_read,
	.handles_add = rk_handles_add,
};

mf_kv mf_remote_kv(mf_remote *r)
{
	return (mf_kv){.ops = &remote_ops, .impl = r};
}

/* ---------- open / close ---------- */

mf_remote *mf_remote_open(const mf_remote_opts *opts, char *err, size_t errlen)
{
	mf_remote *r = calloc(1, sizeof *r);
	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->opts = *opts;
	if (!r->opts.timeout_ms)
		r->opts.timeout_ms = 5000;
	r->opts.url = strdup(opts->url);
	r->start_ns = wall_ns();
	r->stop_pipe[0] = r->stop_pipe[1] = -1;
	pthread_mutex_init(&r->map_mu, NULL);
	pthread_mutex_init(&r->hook_mu, NULL);
	pthread_mutex_init(&r->bpop_mu, NULL);
	if (rm_parse_url(r, opts->url, err, errlen) != 0 || rm_connect_all(r, err, errlen) != 0 ||
	    rm_track_start(r, err, errlen) != 0) {
		mf_remote_close(r);
		return NULL;
	}
	return r;
}

void mf_remote_close(mf_remote *r)
{
	if (!r)
		return;
	rm_track_stop(r);
	rm_free_nodes(r);
	pthread_mutex_destroy(&r->map_mu);
	pthread_mutex_destroy(&r->hook_mu);
	pthread_mutex_destroy(&r->bpop_mu);
	free((char *)r->opts.url);
	free(r);
}
