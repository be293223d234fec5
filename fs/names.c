/*
 * names.c — name ordering (stripes) and the namespace ops: unlink, rename, refusals.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

int commit(mf_op *op)
{
	if (!op->time_ns)
		op->time_ns = mf_now_ns();
	return mf_kv_commit(&fsg.kv, op);
}

int commit_enqueue(mf_op *op, mf_kv_ticket *t)
{
	if (!op->time_ns)
		op->time_ns = mf_now_ns();
	return mf_kv_commit_enqueue(&fsg.kv, op, t);
}

mf_op key_op(int type, uint8_t ktype, const char *k, size_t klen)
{
	mf_op op = {0};
	op.type = (uint8_t)type;
	op.ktype = ktype;
	op.key = mf_slice_from(k, klen, klen);
	return op;
}

/*
 * Name ordering.  Every mutation addressed by name (a handle's commit, the
 * CREATE that materializes a pending key, truncate/utimens by name, unlink,
 * rename) takes the stripe of that (type, key) before its op enters the
 * log.  The log's order is the apply order, so the ordering point is the
 * enqueue: a handle's commit lets the stripe go once its op is enqueued
 * (commit.c), so unrelated keys sharing a stripe still share a group
 * commit; unlink, rename and truncate/utimens by name keep it across their
 * commit and node update, after draining the name's enqueued commits
 * (name_drain).  So a close's SET never lands after an `rm` that returned
 * first (bringing the key back), a `touch` cannot resurrect a removed key,
 * and no mutation splits a `mv`.  One of 64 mutexes, picked by (type, key);
 * rename takes both names' stripes in address order.  Lock order: h->mu,
 * then a stripe, then fsg.mu.
 */
#define NSTRIPES 64
static pthread_mutex_t stripes[NSTRIPES];

void names_init(void)
{
	for (int i = 0; i < NSTRIPES; i++)
		pthread_mutex_init(&stripes[i], NULL);
}

pthread_mutex_t *stripe(uint8_t type, const char *k, size_t len)
{
	return &stripes[name_hash(type, k, len) % NSTRIPES];
}

/* Lock the stripe of n's current name so that the name cannot change while
 * it is held (rename and unlink hold it too).  Returns the locked stripe,
 * or NULL if n has no name (unlinked or renamed over): nothing to order. */
pthread_mutex_t *name_lock(node *n)
{
	for (;;) {
		pthread_mutex_lock(&fsg.mu);
		bool named = n->named;
		mf_slice key = mf_slice_ref(n->key);
		pthread_mutex_unlock(&fsg.mu);
		if (!named) {
			mf_slice_unref(&key);
			return NULL;
		}
		pthread_mutex_t *m = stripe(n->type, mf_slice_ptr(key), key.len);
		pthread_mutex_lock(m);
		pthread_mutex_lock(&fsg.mu);
		bool same = n->named && n->key.len == key.len &&
		            memcmp(mf_slice_ptr(n->key), mf_slice_ptr(key), key.len) == 0;
		pthread_mutex_unlock(&fsg.mu);
		mf_slice_unref(&key);
		if (same)
			return m;
		pthread_mutex_unlock(m); /* renamed or unlinked meanwhile: look again */
	}
}

/* A pending (created, uncommitted) key that a namespace or attribute op now
 * needs in the store: log its CREATE.  JSON stays pending (an empty
 * document is not one).  Caller holds the name's stripe.  0 or -errno. */
int materialize(uint8_t type, const char *k, size_t klen)
{
	if (type == MF_T_JSON)
		return 0;
	pthread_mutex_lock(&fsg.mu);
	node *n = *name_slot(type, k, klen);
	bool pending = n && n->pending;
	pthread_mutex_unlock(&fsg.mu);
	if (!pending)
		return 0;
	mf_op op = key_op(MF_OP_CREATE, type, k, klen);
	int r = commit(&op);
	mf_op_clear(&op);
	if (r == 0) {
		pthread_mutex_lock(&fsg.mu);
		n = *name_slot(type, k, klen);
		if (n)
			n->pending = false;
		pthread_mutex_unlock(&fsg.mu);
	}
	return r;
}

/* ---------- namespace ops ---------- */

/* The name of n is about to be removed or changed by a commit (caller holds
 * the name's stripe, so val is its current value): from now on n's readers
 * use this copy.  Caller holds fsg.mu and clears transit after the commit. */
void node_transit(node *n, mf_slice val, int64_t mtime)
{
	mf_slice_unref(&n->orphan);
	n->orphan = mf_slice_ref(val);
	n->orphan_mtime = mtime;
	n->transit = true;
	n->busy++;
}

/* The commit node_transit prepared is done (either way).  Caller holds fsg.mu. */
void node_transit_end(node *n)
{
	n->transit = false;
	n->busy--;
	node_maybe_free(n);
}

void mf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	if (parent >= INO_FIRST_KEY) { /* rm /.ctl/json/<doc>/<path> */
		jpath_unlink(req, parent, name);
		return;
	}
	uint8_t type = dir_type(parent);
	size_t len = strlen(name);
	if (type == MF_T_NONE || verb_type(type)) {
		fuse_reply_err(req, parent == INO_ROOT || parent == INO_CTL ? EPERM : ENOENT);
		return;
	}
	/* Keep the value for open handles before the key goes away. */
	mf_entry_info info = {0};
	pthread_mutex_t *m = stripe(type, name, len);
	pthread_mutex_lock(m);
	name_drain(type, name, len); /* queued closes of this name land first */
	int r = materialize(type, name, len);
	if (r == 0)
		r = mf_kv_get(&fsg.kv, name, len, true, &info);
	if (r == 0 && info.type != type)
		r = -ENOENT;
	bool pending_only = false;
	if (r == -ENOENT) {
		/* A JSON file created but never given a valid document exists
		 * only as a pending node: removing it just drops the name. */
		pthread_mutex_lock(&fsg.mu);
		node *pn = *name_slot(type, name, len);
		if (pn && pn->pending) {
			node_stillborn(pn);
			pending_only = true;
			r = 0;
		}
		pthread_mutex_unlock(&fsg.mu);
	}
	if (r == 0 && !pending_only) {
		/* Open handles keep the value: readers switch to the node's copy
		 * before the DEL applies, so no read falls between the two. */
		pthread_mutex_lock(&fsg.mu);
		node *n = *name_slot(type, name, len);
		if (n)
			node_transit(n, info.val, info.mtime_ns);
		pthread_mutex_unlock(&fsg.mu);
		mf_op op = key_op(MF_OP_DEL, type, name, len);
		r = commit(&op);
		mf_op_clear(&op);
		pthread_mutex_lock(&fsg.mu);
		if (n) {
			if (r == 0)
				name_unlink(n);
			node_transit_end(n);
		}
		pthread_mutex_unlock(&fsg.mu);
	}
	pthread_mutex_unlock(m);
	mf_slice_unref(&info.val);
	fuse_reply_err(req, -r);
}

void mf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	uint8_t type = dir_type(parent), ntype = dir_type(newparent);
	if (type == MF_T_NONE || ntype == MF_T_NONE || verb_type(type) || verb_type(ntype)) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (type != ntype) {
		char a[KEY_NAME_MAX], b[KEY_NAME_MAX];
		mf_log_warn("rename %s -> %s refused: across types is not supported (EXDEV)",
		            key_name(a, sizeof a, type, name, strlen(name)),
		            key_name(b, sizeof b, ntype, newname, strlen(newname)));
		fuse_reply_err(req, EXDEV);
		return;
	}
	if (flags & RENAME_EXCHANGE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	size_t len = strlen(name), nlen = strlen(newname);
	if (nlen > MF_KEY_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_t *m1 = stripe(type, name, len), *m2 = stripe(type, newname, nlen);
	if (m1 > m2) {
		pthread_mutex_t *t = m1;
		m1 = m2;
		m2 = t;
	}
	pthread_mutex_lock(m1);
	if (m2 != m1)
		pthread_mutex_lock(m2);
	name_drain(type, name, len); /* queued closes of both names land first */
	name_drain(type, newname, nlen);
	mf_entry_info tinfo = {0};
	bool had_target = mf_kv_get(&fsg.kv, newname, nlen, true, &tinfo) == 0;
	if (had_target && (flags & RENAME_NOREPLACE)) {
		mf_slice_unref(&tinfo.val);
		if (m2 != m1)
			pthread_mutex_unlock(m2);
		pthread_mutex_unlock(m1);
		fuse_reply_err(req, EEXIST);
		return;
	}
	int r = materialize(type, name, len);
	bool same = len == nlen && memcmp(name, newname, len) == 0;
	mf_entry_info sinfo = {0};
	node *t0 = NULL, *s0 = NULL;
	if (r == 0 && !same && mf_kv_get(&fsg.kv, name, len, true, &sinfo) == 0) {
		/* Both names' readers switch to copies before the RENAME applies:
		 * the target's handles keep the old target, the source's handles
		 * their value, with no read in between seeing either name's new
		 * state.  (Both stripes are held: neither value can change.) */
		pthread_mutex_lock(&fsg.mu);
		t0 = had_target ? *name_slot(type, newname, nlen) : NULL;
		s0 = *name_slot(type, name, len);
		if (t0)
			node_transit(t0, tinfo.val, tinfo.mtime_ns);
		if (s0)
			node_transit(s0, sinfo.val, sinfo.mtime_ns);
		pthread_mutex_unlock(&fsg.mu);
	}
	mf_op op = key_op(MF_OP_RENAME, type, name, len);
	op.key2 = mf_slice_from(newname, nlen, nlen);
	if (r == 0)
		r = commit(&op);
	mf_op_clear(&op);
	pthread_mutex_lock(&fsg.mu);
	if (r == 0 && !same) {
		node *t = *name_slot(type, newname, nlen);
		if (t) { /* renamed over: the old target's handles keep its value */
			name_unlink(t);
			t->pending = false; /* a created target's handles keep theirs */
			mf_slice_unref(&t->orphan);
			t->orphan = mf_slice_ref(tinfo.val);
			t->orphan_mtime = tinfo.mtime_ns;
		}
		node *s = *name_slot(type, name, len);
		if (s) {
			name_unlink(s);
			mf_slice_unref(&s->key);
			s->key = mf_slice_from(newname, nlen, nlen);
			node **pp = name_slot(type, newname, nlen);
			s->name_next = *pp;
			*pp = s;
			s->named = true;
		}
	}
	if (s0 && s0->named)
		mf_slice_unref(&s0->orphan); /* renamed: it reads its key again */
	if (t0)
		node_transit_end(t0);
	if (s0)
		node_transit_end(s0);
	pthread_mutex_unlock(&fsg.mu);
	mf_slice_unref(&sinfo.val);
	if (m2 != m1)
		pthread_mutex_unlock(m2);
	pthread_mutex_unlock(m1);
	mf_slice_unref(&tinfo.val);
	fuse_reply_err(req, -r);
}

void mf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)mode;
	char kn[KEY_NAME_MAX];
	mf_log_warn("mkdir %s refused: no subdirectories (yet)",
	            key_name(kn, sizeof kn, dir_type(parent), name, strlen(name)));
	fuse_reply_err(req, EPERM);
}

void mf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent;
	(void)rdev;
	char kn[KEY_NAME_MAX];
	mf_log_warn("mknod %s (mode %o) refused: only regular files",
	            key_name(kn, sizeof kn, dir_type(parent), name, strlen(name)), mode);
	fuse_reply_err(req, EPERM);
}

/* The store has one kind of object, a key holding a value: a symlink or a
 * second name for a value has nowhere to live. */
void mf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	char kn[KEY_NAME_MAX];
	mf_log_warn("symlink %s -> %s refused: only regular files",
	            key_name(kn, sizeof kn, dir_type(parent), name, strlen(name)), link);
	fuse_reply_err(req, EPERM);
}

void mf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	char kn[KEY_NAME_MAX];
	mf_log_warn("link %s refused: a key has one name",
	            key_name(kn, sizeof kn, dir_type(newparent), newname, strlen(newname)));
	fuse_reply_err(req, EPERM);
}

void mf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}
