/*
 * store.c — the keyspace: a chained hash table of typed, refcounted values.
 *
 * See store.h for the contract.  The structure is deliberately plain: one
 * rwlock, one table, chains, doubling growth.  Mutations are validated by
 * validate() (shared by apply and check, so they cannot disagree) and then
 * performed by code that can no longer fail, so "error => store unchanged"
 * holds by construction.
 */
#include "store.h"
#include "json.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
	struct entry *next;
	uint64_t hash;
	mf_slice key;
	mf_slice val;
	uint64_t count;     /* list elements */
	int64_t mtime_ns;
	int64_t ctime_ns;
	uint64_t version;
	uint8_t type;
	uint32_t cap_epoch; /* the last capture that has this key (walked or
	                       pre-imaged); fits the struct's padding */
} entry;

/* A capture in progress (store.h): items taken so far, walked or saved by
 * apply; the walk's cursor over the buckets. */
typedef struct capture {
	bool active;
	uint32_t epoch;
	size_t cursor;      /* next bucket to walk */
	size_t expect;      /* keys at begin: exactly this many items */
	mf_item *items;
	size_t n, cap;
} capture;

struct mf_store {
	pthread_rwlock_t lock;
	entry **tab;
	size_t nbuckets;    /* power of two */
	size_t nkeys;
	uint64_t ntype[4];
	uint64_t value_bytes;
	uint64_t version;   /* last version handed out */
	uint64_t applied_lsn;
	capture cap;        /* walked under the read lock (one walker), saved
	                       into under the write lock (the applier) */
};

/* FNV-1a is enough: keys come from one user's file names, not an attacker
 * probing for collisions over the network, and chains stay short on
 * average because the table doubles at load factor 1. */
static uint64_t hash_key(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

mf_store *mf_store_new(void)
{
	mf_store *st = mf_xmalloc(sizeof *st);
	memset(st, 0, sizeof *st);
	/* Writer-preferring: a capture's walker takes the read lock chunk
	 * after chunk, and the applier must get in between two chunks, not
	 * wait for the whole walk.  (Nothing takes the read lock twice.) */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&st->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	st->nbuckets = 1024;
	st->tab = calloc(st->nbuckets, sizeof *st->tab);
	if (!st->tab)
		abort();
	return st;
}

static void entry_free(entry *e)
{
	mf_slice_unref(&e->key);
	mf_slice_unref(&e->val);
	free(e);
}

static void cap_add(capture *c, const entry *e)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->items = mf_xrealloc(c->items, c->cap * sizeof *c->items);
	}
	c->items[c->n++] = (mf_item){mf_slice_ref(e->key), e->type, mf_slice_ref(e->val),
	                             e->mtime_ns, e->ctime_ns};
}

/* The applier is about to change or remove e: if a capture is running and
 * has not taken e yet, take it now, as it was at the capture's LSN (the
 * value's bytes are immutable, so references suffice).  Caller holds the
 * write lock. */
static void cap_touch(mf_store *st, entry *e)
{
	capture *c = &st->cap;
	if (c->active && e->cap_epoch != c->epoch) {
		cap_add(c, e);
		e->cap_epoch = c->epoch;
	}
}

/* FLUSH: drop every key (readers keep their slice references). */
static void flush_all(mf_store *st)
{
	for (size_t i = 0; i < st->nbuckets; i++) {
		entry *e = st->tab[i];
		while (e) {
			entry *n = e->next;
			cap_touch(st, e);
			entry_free(e);
			e = n;
		}
		st->tab[i] = NULL;
	}
	st->nkeys = 0;
	memset(st->ntype, 0, sizeof st->ntype);
	st->value_bytes = 0;
}

void mf_store_free(mf_store *st)
{
	if (!st)
		return;
	st->cap.active = false; /* a capture never ended: nothing more to save */
	flush_all(st);
	mf_store_items_free(st->cap.items, st->cap.n);
	free(st->tab);
	pthread_rwlock_destroy(&st->lock);
	free(st);
}

static entry **find_slot(mf_store *st, const char *k, size_t n, uint64_t h)
{
	entry **pp = &st->tab[h & (st->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->next) {
		entry *e = *pp;
		if (e->hash == h && e->key.len == n && memcmp(mf_slice_ptr(e->key), k, n) == 0)
			return pp;
	}
	return pp;
}

static entry *find(mf_store *st, mf_slice key)
{
	const char *k = mf_slice_ptr(key);
	return *find_slot(st, k, key.len, hash_key(k, key.len));
}

static void grow(mf_store *st)
{
	size_t nb = st->nbuckets * 2;
	entry **nt = calloc(nb, sizeof *nt);
	if (!nt)
		return; /* keep the longer chains; still correct */
	for (size_t i = 0; i < st->nbuckets; i++) {
		entry *e = st->tab[i];
		while (e) {
			entry *n = e->next;
			e->next = nt[e->hash & (nb - 1)];
			nt[e->hash & (nb - 1)] = e;
			e = n;
		}
	}
	free(st->tab);
	st->tab = nt;
	st->nbuckets = nb;
}

/* Link a new entry (key not present). Takes over `key`. */
static entry *insert(mf_store *st, mf_slice key, uint8_t type, int64_t t)
{
	if (st->nkeys >= st->nbuckets)
		grow(st);
	entry *e = mf_xmalloc(sizeof *e);
	memset(e, 0, sizeof *e);
	e->key = key;
	e->hash = hash_key(mf_slice_ptr(key), key.len);
	e->type = type;
	e->mtime_ns = e->ctime_ns = t;
	e->version = ++st->version;
	e->cap_epoch = st->cap.epoch; /* born after any capture in progress */
	entry **pp = &st->tab[e->hash & (st->nbuckets - 1)];
	e->next = *pp;
	*pp = e;
	st->nkeys++;
	st->ntype[type]++;
	return e;
}

static void unlink_entry(mf_store *st, entry *e)
{
	entry **pp = &st->tab[e->hash & (st->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
	st->nkeys--;
	st->ntype[e->type]--;
	st->value_bytes -= e->val.len;
}

uint64_t mf_count_lines(const char *p, size_t n)
{
	uint64_t c = 0;
	const char *end = p + n;
	while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		c++;
		p++;
	}
	return c;
}

/* Any bytes: RESP clients use keys no file name can hold ('/', NUL,
 * longer than NAME_MAX); the mount simply does not list those. */
static bool valid_key(mf_slice k)
{
	return k.len > 0 && k.len <= MF_KEY_BYTES_MAX;
}

int mf_value_check(mf_type type, const char *p, size_t n, size_t *err_off, const char **why)
{
	if (n > MF_VALUE_MAX) {
		if (why)
			*why = "value too large";
		return -EFBIG;
	}
	if (type == MF_T_JSON)
		return mf_json_validate(p, n, err_off, why);
	return 0;
}

/* Everything that can make an op fail, checked before anything changes. */
static int validate(mf_store *st, const mf_op *op, entry *e)
{
	if (op->type == MF_OP_FLUSH)
		return op->ktype == MF_T_NONE && op->key.len == 0 ? 0 : -EINVAL;
	if (op->ktype < MF_T_STRING || op->ktype > MF_T_LIST || !valid_key(op->key))
		return -EINVAL;
	bool same = e && e->type == op->ktype;
	uint64_t cur = same ? e->val.len : 0;
	if (op->val.len > MF_VALUE_MAX ||
	    ((op->type == MF_OP_APPEND || op->type == MF_OP_RPUSH || op->type == MF_OP_LPUSH) &&
	     cur + op->val.len > MF_VALUE_MAX) ||
	    (op->type == MF_OP_SETRANGE &&
	     (op->arg > MF_VALUE_MAX || op->arg + op->val.len > MF_VALUE_MAX)) ||
	    (op->type == MF_OP_WRITEV && op->arg > MF_VALUE_MAX))
		return -EFBIG;
	switch (op->type) {
	case MF_OP_CREATE:
		return e && !same ? -EEXIST : 0;
	case MF_OP_SET:
		if (e && !same)
			return -EEXIST;
		return mf_value_check(op->ktype, mf_slice_ptr(op->val), op->val.len, NULL, NULL);
	case MF_OP_APPEND:
		if (op->ktype != MF_T_STRING)
			return -EINVAL;
		return e && !same ? -EEXIST : 0;
	case MF_OP_RPUSH:
		/* An unterminated last line is completed by apply. */
		if (op->ktype != MF_T_LIST || op->val.len == 0)
			return -EINVAL;
		return e && !same ? -EEXIST : 0;
	case MF_OP_LPUSH:
		if (op->ktype != MF_T_LIST || op->val.len == 0 ||
		    mf_slice_ptr(op->val)[op->val.len - 1] != '\n')
			return -EINVAL;
		return e && !same ? -EEXIST : 0;
	case MF_OP_TRUNCATE:
		if (!same)
			return -ENOENT;
		if (op->ktype == MF_T_STRING)
			return op->arg > MF_VALUE_MAX ? -EFBIG : 0;
		if (op->ktype == MF_T_JSON) /* a cut or padded document is not JSON */
			return op->arg == e->val.len ? 0 : -EINVAL;
		return op->arg == 0 ? 0 : -EINVAL;
	case MF_OP_DEL:
		if (!same)
			return -ENOENT;
		/* arg 1: only an empty value (RESP deletes a list its pop
		 * emptied, as Redis does, without racing a concurrent push). */
		return op->arg == 0 ? 0 : op->arg == 1 && e->val.len == 0 ? 0 : -ENOTEMPTY;
	case MF_OP_SETTIME:
		return same ? 0 : -ENOENT;
	case MF_OP_SETRANGE:
		if (op->ktype != MF_T_STRING)
			return -EINVAL;
		return e && !same ? -EEXIST : 0;
	case MF_OP_JSON_DELPATH:
		if (op->ktype != MF_T_JSON)
			return -EINVAL;
		return same ? 0 : -ENOENT;
	case MF_OP_WRITEV: {
		if (op->ktype != MF_T_STRING)
			return -EINVAL;
		if (e && !same)
			return -EEXIST;
		mf_writev w;
		if (mf_writev_open(op, &w) != 0)
			return -EINVAL;
		/* Built on the first keep bytes of a value: that value must be
		 * there (whether they are the same bytes, apply checks). */
		return w.keep && (!same || e->val.len < w.keep) ? -ESTALE : 0;
	}
	case MF_OP_LPOP:
	case MF_OP_RPOP:
		if (op->ktype != MF_T_LIST)
			return -EINVAL;
		if (!same)
			return -ENOENT;
		/* Nothing to pop: refused (and so never logged) rather than a
		 * record that changes nothing, so idle consumers cost no WAL. */
		return e->val.len == 0 || op->arg == 0 ? -ENODATA : 0;
	case MF_OP_RENAME: {
		if (!same)
			return -ENOENT;
		if (!valid_key(op->key2))
			return -EINVAL;
		entry *t = find(st, op->key2);
		return t && t->type != op->ktype ? -EEXIST : 0;
	}
	case MF_OP_JSON_SETPATH:
		if (op->ktype != MF_T_JSON)
			return -EINVAL;
		if (!same)
			return -ENOENT;
		return mf_value_check(MF_T_JSON, mf_slice_ptr(op->val), op->val.len, NULL, NULL);
	default:
		return -EINVAL;
	}
}

/* json.c builds the edited document straight into a value buffer. */
static char *json_out(void *ctx, size_t n)
{
	mf_slice *s = ctx;
	*s = mf_slice_alloc(n, n);
	return s->buf ? s->buf->data : NULL;
}

/* Edit a JSON document for JSON_SETPATH / JSON_DELPATH: the new text in
 * *out (a slice owning one reference), or -errno.  Shared by check
 * (prepare) and apply. */
static int json_edit(const entry *e, const mf_op *op, mf_slice *out)
{
	char *doc;
	size_t dlen;
	*out = MF_SLICE_EMPTY;
	int r = op->type == MF_OP_JSON_DELPATH
	            ? mf_json_del_path_doc(mf_slice_ptr(e->val), e->val.len, mf_slice_ptr(op->key2),
	                                   op->key2.len, &doc, &dlen, json_out, out)
	            : mf_json_set_path_doc(mf_slice_ptr(e->val), e->val.len, mf_slice_ptr(op->key2),
	                                   op->key2.len, mf_slice_ptr(op->val), op->val.len, &doc,
	                                   &dlen, json_out, out);
	if (r) {
		mf_slice_unref(out);
		return r;
	}
	out->len = dlen; /* without the NUL json.c adds */
	return 0;
}

/* A JSON_DELPATH of "$" deletes the whole document. */
static bool json_del_root(const mf_op *op)
{
	return op->type == MF_OP_JSON_DELPATH && op->key2.len == 1 && mf_slice_ptr(op->key2)[0] == '$';
}

/* check and prepare: keep (prepare) hands the edited document of a JSON
 * path op to apply through op->prep. */
static int check_op(mf_store *st, const mf_op *op, mf_op *keep)
{
	pthread_rwlock_rdlock(&st->lock);
	bool keyed = mf_op_has_key(op->type);
	entry *e = keyed && op->key.len <= MF_KEY_BYTES_MAX ? find(st, op->key) : NULL;
	int r = !keyed || op->key.len <= MF_KEY_BYTES_MAX ? validate(st, op, e) : -EINVAL;
	if (r == 0 && (op->type == MF_OP_JSON_SETPATH || op->type == MF_OP_JSON_DELPATH) &&
	    !json_del_root(op)) {
		/* Whether the path resolves depends on the document: try it, so
		 * a missing path is refused before it is logged. */
		mf_slice doc;
		r = json_edit(e, op, &doc);
		if (r == 0 && keep) {
			mf_slice_unref(&keep->prep);
			mf_slice_unref(&keep->prep_of);
			keep->prep = doc;
			keep->prep_of = mf_slice_ref(e->val);
		} else {
			mf_slice_unref(&doc);
		}
	}
	pthread_rwlock_unlock(&st->lock);
	return r;
}

int mf_store_check(mf_store *st, const mf_op *op)
{
	return check_op(st, op, NULL);
}

int mf_store_prepare(mf_store *st, mf_op *op)
{
	return check_op(st, op, op);
}

/* A key loaded from the WAL or a snapshot shares one buffer with its value
 * (one allocation per key).  Before the value moves to another buffer,
 * give the key its own, so the old value's bytes are not kept alive. */
static void detach_key(entry *e)
{
	if (e->key.buf && e->key.buf == e->val.buf) {
		mf_slice k = mf_slice_from(mf_slice_ptr(e->key), e->key.len, e->key.len);
		mf_slice_unref(&e->key);
		e->key = k;
	}
}

/* The key slice an entry keeps: shared with the value when they came in one
 * buffer (WAL record, snapshot), else copied if its buffer holds more. */
static mf_slice own_key(mf_slice key, mf_slice val)
{
	if (!key.buf || key.buf == val.buf || key.buf->cap <= key.len + 16)
		return mf_slice_ref(key);
	return mf_slice_from(mf_slice_ptr(key), key.len, key.len);
}

static void set_val(mf_store *st, entry *e, mf_slice v)
{
	if (v.buf != e->val.buf)
		detach_key(e);
	st->value_bytes -= e->val.len;
	mf_slice_unref(&e->val);
	e->val = v;
	st->value_bytes += v.len;
}

void mf_list_terminate(mf_slice *s)
{
	if (s->len && mf_slice_ptr(*s)[s->len - 1] != '\n')
		mf_slice_append(s, "\n", 1);
}

/* A list value always ends in '\n' (each element is a line); a final line
 * without one is completed (README: an unterminated last line is pushed). */
static mf_slice list_value(mf_slice v)
{
	if (v.len == 0 || mf_slice_ptr(v)[v.len - 1] == '\n')
		return mf_slice_ref(v);
	mf_slice n = mf_slice_from(mf_slice_ptr(v), v.len, v.len + 1);
	mf_slice_append(&n, "\n", 1);
	return n;
}

/* WRITEV (op.h): the value's first keep bytes, zero-extended or cut to the
 * size, with the ranges written over them, in a new buffer (the old bytes
 * are immutable: readers hold slices of them).  A hole stays a hole. */
static int apply_writev(mf_store *st, entry **ep, mf_op *op)
{
	entry *e = *ep;
	mf_writev w;
	mf_writev_open(op, &w); /* validated */
	if (w.keep) {
		/* Exactly the slice the handle started from: the same immutable
		 * bytes, so the hash would match; replay hashes. */
		bool same = op->base.buf && op->base.buf == e->val.buf && op->base.off == e->val.off;
		if (!same && mf_hash64(mf_slice_ptr(e->val), (size_t)w.keep) != w.hash)
			return -ESTALE;
	}
	if (!e)
		e = *ep = insert(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, op->time_ns);
	mf_slice v = mf_slice_zeroed((size_t)op->arg);
	if (v.buf) {
		mf_buf_copy(v.buf, 0, e->val, (size_t)w.keep);
		uint64_t off;
		const char *p;
		uint32_t len;
		while (mf_writev_next(&w, &off, &p, &len))
			mf_buf_write(v.buf, (size_t)off, p, len);
	}
	set_val(st, e, v);
	e->count = 0;
	op->res = op->arg;
	return 0;
}

/* APPEND, RPUSH, LPUSH: op->val joins one end of the key's value (the key
 * is created if need be); in place when the buffer has room. */
static entry *add_to_end(mf_store *st, entry *e, const mf_op *op, bool front)
{
	if (!e)
		e = insert(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, op->time_ns);
	detach_key(e); /* the append may move the value */
	st->value_bytes += op->val.len;
	if (front)
		mf_slice_prepend(&e->val, mf_slice_ptr(op->val), op->val.len);
	else
		mf_slice_append(&e->val, mf_slice_ptr(op->val), op->val.len);
	return e;
}

static int do_apply(mf_store *st, mf_op *op)
{
	if (op->type == MF_OP_FLUSH) {
		int r = validate(st, op, NULL);
		if (r == 0)
			flush_all(st);
		return r;
	}
	if (op->key.len > MF_KEY_BYTES_MAX)
		return -EINVAL;
	entry *e = find(st, op->key);
	int r = validate(st, op, e);
	if (r)
		return r;
	int64_t t = op->time_ns;
	/* Every op that gets here may change e (or, RENAME, its target): a
	 * capture in progress takes them first.  (An op that then changes
	 * nothing only costs a pre-image equal to the key as it is.) */
	if (e)
		cap_touch(st, e);
	if (op->type == MF_OP_RENAME) {
		entry *tgt = find(st, op->key2);
		if (tgt)
			cap_touch(st, tgt);
	}

	switch (op->type) {
	case MF_OP_CREATE:
		if (!e)
			insert(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, t);
		return 0;
	case MF_OP_SET: {
		if (!e)
			e = insert(st, own_key(op->key, op->ktype == MF_T_LIST ? MF_SLICE_EMPTY : op->val),
			           op->ktype, t);
		mf_slice v = op->ktype == MF_T_LIST ? list_value(op->val) : mf_slice_ref(op->val);
		e->count = op->ktype == MF_T_LIST ? mf_count_lines(mf_slice_ptr(v), v.len) : 0;
		set_val(st, e, v);
		break;
	}
	case MF_OP_APPEND:
	case MF_OP_RPUSH:
		e = add_to_end(st, e, op, false);
		if (op->type == MF_OP_RPUSH) {
			e->count += mf_count_lines(mf_slice_ptr(op->val), op->val.len);
			if (mf_slice_ptr(op->val)[op->val.len - 1] != '\n') {
				mf_slice_append(&e->val, "\n", 1); /* whole lines only */
				st->value_bytes++;
				e->count++;
			}
		}
		op->res = op->type == MF_OP_RPUSH ? e->count : e->val.len;
		break;
	case MF_OP_TRUNCATE:
		if (op->arg <= e->val.len) {
			/* Shrinking shares the buffer: a sub-slice, no copy. */
			mf_slice v = mf_slice_ref(e->val);
			v.len = op->arg;
			if (v.len == 0)
				mf_slice_unref(&v);
			set_val(st, e, v);
		} else {
			/* Growth is a hole: zero pages nobody touched (buf.h). */
			mf_slice v = mf_slice_zeroed(op->arg);
			mf_buf_copy(v.buf, 0, e->val, e->val.len);
			set_val(st, e, v);
		}
		e->count = 0;
		break;
	case MF_OP_DEL:
		unlink_entry(st, e);
		entry_free(e);
		return 0;
	case MF_OP_RENAME: {
		if (op->key2.len == op->key.len &&
		    memcmp(mf_slice_ptr(op->key), mf_slice_ptr(op->key2), op->key.len) == 0)
			return 0;
		entry *tgt = find(st, op->key2);
		if (tgt) {
			unlink_entry(st, tgt);
			entry_free(tgt);
		}
		unlink_entry(st, e);
		mf_slice_unref(&e->key);
		e->key = own_key(op->key2, MF_SLICE_EMPTY);
		e->hash = hash_key(mf_slice_ptr(e->key), e->key.len);
		entry **pp = &st->tab[e->hash & (st->nbuckets - 1)];
		e->next = *pp;
		*pp = e;
		st->nkeys++;
		st->ntype[e->type]++;
		st->value_bytes += e->val.len;
		e->ctime_ns = t;
		e->version = ++st->version;
		return 0;
	}
	case MF_OP_SETTIME:
		e->mtime_ns = (int64_t)op->arg;
		e->ctime_ns = t;
		return 0;
	case MF_OP_LPOP: {
		const char *p = mf_slice_ptr(e->val);
		size_t n = 0;
		uint64_t k = 0;
		while (k < op->arg && n < e->val.len) {
			const char *nl = memchr(p + n, '\n', e->val.len - n);
			n = (size_t)(nl - p) + 1; /* list values end in '\n' */
			k++;
		}
		mf_slice_unref(&op->out);
		op->out = mf_slice_ref(e->val);
		op->out.len = n;
		if (n == 0)
			mf_slice_unref(&op->out);
		mf_slice v = mf_slice_ref(e->val);
		v.off += n;
		v.len -= n;
		if (v.len == 0) {
			mf_slice_unref(&v);
		} else if (v.off > v.len && v.off > 65536) {
			/* Popped prefix dominates the buffer: copy the rest out so a
			 * long-lived queue does not keep every element ever pushed. */
			mf_slice c = mf_slice_from(mf_slice_ptr(v), v.len, v.len);
			mf_slice_unref(&v);
			v = c;
		}
		e->count -= k;
		set_val(st, e, v);
		break;
	}
	case MF_OP_LPUSH:
		e = add_to_end(st, e, op, true);
		e->count += mf_count_lines(mf_slice_ptr(op->val), op->val.len);
		op->res = e->count;
		break;
	case MF_OP_RPOP: {
		/* Walk back over up to arg lines; the value ends in '\n'. */
		const char *p = mf_slice_ptr(e->val);
		size_t keep = e->val.len;
		uint64_t k = 0;
		while (k < op->arg && keep > 0) {
			const char *nl = keep >= 2 ? memrchr(p, '\n', keep - 1) : NULL;
			keep = nl ? (size_t)(nl - p) + 1 : 0;
			k++;
		}
		mf_slice_unref(&op->out);
		op->out = mf_slice_ref(e->val);
		op->out.off += keep;
		op->out.len -= keep;
		mf_slice v = mf_slice_ref(e->val);
		v.len = keep;
		if (v.len == 0)
			mf_slice_unref(&v);
		e->count -= k;
		set_val(st, e, v);
		break;
	}
	case MF_OP_SETRANGE: {
		if (!e)
			e = insert(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, t);
		size_t end = (size_t)op->arg + op->val.len;
		size_t len = end > e->val.len ? end : e->val.len;
		/* A new buffer: bytes of the old value are immutable (readers
		 * hold slices of them). */
		mf_slice v = mf_slice_zeroed(len);
		if (v.buf) {
			mf_buf_copy(v.buf, 0, e->val, e->val.len);
			mf_buf_write(v.buf, op->arg, mf_slice_ptr(op->val), op->val.len);
		}
		set_val(st, e, v);
		op->res = len;
		break;
	}
	case MF_OP_WRITEV:
		r = apply_writev(st, &e, op);
		if (r)
			return r;
		break;
	case MF_OP_JSON_DELPATH:
		if (json_del_root(op)) {
			unlink_entry(st, e);
			entry_free(e);
			return 0;
		}
		/* fall through */
	case MF_OP_JSON_SETPATH: {
		/* What prepare built from exactly this value (the same immutable
		 * bytes, so the edit would give the same text; replay edits). */
		if (op->prep.buf && op->prep_of.buf == e->val.buf && op->prep_of.off == e->val.off &&
		    op->prep_of.len == e->val.len) {
			set_val(st, e, mf_slice_ref(op->prep));
			break;
		}
		mf_slice v;
		r = json_edit(e, op, &v);
		if (r)
			return r;
		set_val(st, e, v);
		break;
	}
	default:
		return -EINVAL;
	}
	e->mtime_ns = e->ctime_ns = t;
	e->version = ++st->version;
	return 0;
}

int mf_store_apply(mf_store *st, mf_op *op)
{
	pthread_rwlock_wrlock(&st->lock);
	int r = do_apply(st, op);
	if (op->lsn > st->applied_lsn)
		st->applied_lsn = op->lsn;
	pthread_rwlock_unlock(&st->lock);
	return r;
}

static void fill_info(entry *e, bool want_value, mf_entry_info *out)
{
	out->type = e->type;
	out->val = want_value ? mf_slice_ref(e->val) : MF_SLICE_EMPTY;
	out->size = e->val.len;
	out->count = e->count;
	out->mtime_ns = e->mtime_ns;
	out->ctime_ns = e->ctime_ns;
	out->version = e->version;
}

int mf_store_get(mf_store *st, const void *key, size_t klen, bool want_value,
                 mf_entry_info *out)
{
	pthread_rwlock_rdlock(&st->lock);
	entry *e = *find_slot(st, key, klen, hash_key(key, klen));
	if (e)
		fill_info(e, want_value, out);
	pthread_rwlock_unlock(&st->lock);
	return e ? 0 : -ENOENT;
}

size_t mf_store_keys(mf_store *st, mf_type type, mf_slice **keys)
{
	pthread_rwlock_rdlock(&st->lock);
	size_t n = type ? st->ntype[type] : st->nkeys, i = 0;
	mf_slice *k = mf_xmalloc((n ? n : 1) * sizeof *k);
	for (size_t b = 0; b < st->nbuckets; b++)
		for (entry *e = st->tab[b]; e; e = e->next)
			if (!type || e->type == type)
				k[i++] = mf_slice_ref(e->key);
	pthread_rwlock_unlock(&st->lock);
	*keys = k;
	return i;
}

size_t mf_store_export(mf_store *st, mf_item **items, uint64_t *lsn)
{
	pthread_rwlock_rdlock(&st->lock);
	size_t n = st->nkeys, i = 0;
	mf_item *it = mf_xmalloc((n ? n : 1) * sizeof *it);
	for (size_t b = 0; b < st->nbuckets; b++)
		for (entry *e = st->tab[b]; e; e = e->next)
			it[i++] = (mf_item){mf_slice_ref(e->key), e->type, mf_slice_ref(e->val),
			                    e->mtime_ns, e->ctime_ns};
	*lsn = st->applied_lsn;
	pthread_rwlock_unlock(&st->lock);
	*items = it;
	return i;
}

void mf_store_capture_begin(mf_store *st, uint64_t *lsn)
{
	pthread_rwlock_wrlock(&st->lock);
	capture *c = &st->cap;
	c->active = true;
	c->epoch++;
	c->cursor = 0;
	c->expect = st->nkeys;
	c->n = 0;
	c->cap = st->nkeys + 64; /* walk + pre-images: exactly nkeys in all */
	c->items = mf_xrealloc(c->items, c->cap * sizeof *c->items);
	*lsn = st->applied_lsn;
	pthread_rwlock_unlock(&st->lock);
}

/* The read lock keeps the applier out (and lets readers in); cap_epoch
 * and the item list are touched only by the walker under it and by the
 * applier under the write lock.  The table may have doubled since the
 * last step: a key not yet taken sits at or past the cursor either way
 * (bucket i splits into i and i + old size), so the cursor stays valid. */
bool mf_store_capture_step(mf_store *st, size_t buckets)
{
	pthread_rwlock_rdlock(&st->lock);
	capture *c = &st->cap;
	size_t end = c->cursor + buckets;
	if (end > st->nbuckets)
		end = st->nbuckets;
	for (size_t b = c->cursor; b < end; b++)
		for (entry *e = st->tab[b]; e; e = e->next)
			if (e->cap_epoch != c->epoch) {
				cap_add(c, e);
				e->cap_epoch = c->epoch;
			}
	c->cursor = end;
	bool done = c->cursor >= st->nbuckets;
	pthread_rwlock_unlock(&st->lock);
	return done;
}

size_t mf_store_capture_end(mf_store *st, mf_item **items)
{
	while (!mf_store_capture_step(st, SIZE_MAX / 2))
		;
	pthread_rwlock_wrlock(&st->lock);
	capture *c = &st->cap;
	size_t n = c->n;
	*items = c->items;
	if (n != c->expect) /* every key at begin, once: cannot happen */
		abort();
	c->items = NULL;
	c->n = c->cap = 0;
	c->active = false;
	pthread_rwlock_unlock(&st->lock);
	return n;
}

void mf_store_items_free(mf_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mf_slice_unref(&items[i].key);
		mf_slice_unref(&items[i].val);
	}
	free(items);
}

int mf_store_load_item(mf_store *st, mf_item *item)
{
	/* The type rules SET enforces (an empty JSON value is the "created, no
	 * document yet" state CREATE makes). */
	if (item->type < MF_T_STRING || item->type > MF_T_LIST || !valid_key(item->key) ||
	    (item->val.len &&
	     mf_value_check(item->type, mf_slice_ptr(item->val), item->val.len, NULL, NULL) != 0))
		return -EINVAL;
	pthread_rwlock_wrlock(&st->lock);
	int r = 0;
	if (find(st, item->key)) {
		r = -EEXIST;
	} else {
		entry *e = insert(st, item->key, item->type, item->ctime_ns);
		e->mtime_ns = item->mtime_ns;
		if (e->type == MF_T_LIST) {
			/* LPOP relies on a list value ending in '\n': complete a final
			 * line the way SET does (a snapshot is only CRC-checked). */
			e->val = list_value(item->val);
			mf_slice_unref(&item->val);
		} else {
			e->val = item->val;
		}
		st->value_bytes += e->val.len;
		if (e->type == MF_T_LIST)
			e->count = mf_count_lines(mf_slice_ptr(e->val), e->val.len);
		item->key = item->val = MF_SLICE_EMPTY;
	}
	pthread_rwlock_unlock(&st->lock);
	return r;
}

void mf_store_set_applied_lsn(mf_store *st, uint64_t lsn)
{
	pthread_rwlock_wrlock(&st->lock);
	st->applied_lsn = lsn;
	pthread_rwlock_unlock(&st->lock);
}

void mf_store_stats_get(mf_store *st, mf_store_stats *out)
{
	pthread_rwlock_rdlock(&st->lock);
	out->keys[0] = st->nkeys;
	for (int t = 1; t < 4; t++)
		out->keys[t] = st->ntype[t];
	out->value_bytes = st->value_bytes;
	out->applied_lsn = st->applied_lsn;
	pthread_rwlock_unlock(&st->lock);
}
