/*
 * names.c — name ordering (stripes) and the namespace ops: unlink, rename, refusals.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

int commit(mf_fs *fs, mf_op *op)
{
	if (!op->time_ns)
		op->time_ns = mf_now_ns();
	return mf_kv_commit(&fs->kv, op);
}

int commit_enqueue(mf_fs *fs, mf_op *op, mf_kv_ticket *t)
{
	if (!op->time_ns)
		op->time_ns = mf_now_ns();
	return mf_kv_commit_enqueue(&fs->kv, op, t);
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
 * rename takes both names' stripes in address order (the lock order:
 * fs_int.h).
 */
void names_init(mf_fs *fs)
{
	for (int i = 0; i < NSTRIPES; i++)
		pthread_mutex_init(&fs->stripes[i], NULL);
}

pthread_mutex_t *stripe(mf_fs *fs, uint8_t type, const char *k, size_t len)
{
	return &fs->stripes[name_hash(type, k, len) % NSTRIPES];
}

/* Lock the stripe of n's current name so that the name cannot change while
 * it is held (rename and unlink hold it too).  Returns the locked stripe,
 * or NULL if n has no name (unlinked or renamed over): nothing to order. */
pthread_mutex_t *name_lock(mf_fs *fs, node *n)
{
	for (;;) {
		pthread_mutex_lock(&fs->mu);
		bool named = n->named;
		mf_slice key = mf_slice_ref(n->key);
		pthread_mutex_unlock(&fs->mu);
		if (!named) {
			mf_slice_unref(&key);
			return NULL;
		}
		pthread_mutex_t *m = stripe(fs, n->type, mf_slice_ptr(key), key.len);
		pthread_mutex_lock(m);
		pthread_mutex_lock(&fs->mu);
		bool same = n->named && n->key.len == key.len &&
		            memcmp(mf_slice_ptr(n->key), mf_slice_ptr(key), key.len) == 0;
		pthread_mutex_unlock(&fs->mu);
		mf_slice_unref(&key);
		if (same)
			return m;
		pthread_mutex_unlock(m); /* renamed or unlinked meanwhile: look again */
	}
}

/* A pending (created, uncommitted) key that a namespace or attribute op now
 * needs in the store: log its CREATE.  JSON stays pending (an empty
 * document is not one).  Caller holds the name's stripe.  0 or -errno. */
int materialize(mf_fs *fs, uint8_t type, const char *k, size_t klen)
{
	if (type == MF_T_JSON)
		return 0;
	pthread_mutex_lock(&fs->mu);
	node *n = *name_slot(fs, type, k, klen);
	bool pending = n && n->pending;
	pthread_mutex_unlock(&fs->mu);
	if (!pending)
		return 0;
	mf_op op = key_op(MF_OP_CREATE, type, k, klen), wire;
	op.time_ns = mf_now_ns();
	pthread_mutex_lock(&fs->mu);
	n = *name_slot(fs, type, k, klen); /* (fs->mu was dropped: look again) */
	bool attrs = n && creator_op(n, &op, &wire);
	pthread_mutex_unlock(&fs->mu);
	int r = commit(fs, attrs ? &wire : &op);
	if (r == 0) {
		pthread_mutex_lock(&fs->mu);
		n = *name_slot(fs, type, k, klen);
		if (n) {
			n->pending = false;
			n->busy++; /* kept while its atime/owner follow */
		}
		pthread_mutex_unlock(&fs->mu);
		if (n) {
			commit_creator_rest(fs, n, attrs ? &wire : &op);
			pthread_mutex_lock(&fs->mu);
			n->busy--;
			node_maybe_free(fs, n);
			pthread_mutex_unlock(&fs->mu);
		}
	}
	if (attrs)
		mf_op_clear(&wire);
	mf_op_clear(&op);
	return r;
}

/* ---------- namespace ops ---------- */

/* The name of n is about to be removed or changed by a commit (caller holds
 * the name's stripe, so val is its current value): from now on n's readers
 * use this copy.  Caller holds fs->mu and clears transit after the commit. */
void node_transit(node *n, mf_slice val, int64_t mtime)
{
	mf_slice_unref(&n->orphan);
	n->orphan = mf_slice_ref(val);
	n->orphan_mtime = mtime;
	n->transit = true;
	n->busy++;
}

/* The commit node_transit prepared is done (either way).  Caller holds fs->mu. */
void node_transit_end(mf_fs *fs, node *n)
{
	n->transit = false;
	n->busy--;
	node_maybe_free(fs, n);
}

/* unlink of a key file, by its key. */
static int unlink_key(mf_fs *fs, uint8_t type, const char *name, size_t len);

void mf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mf_fs *fs = fuse_req_userdata(req);
	mf_slice prefix;
	bool kv = kv_folder(fs, parent, &prefix);
	mf_slice_unref(&prefix);
	if (parent >= INO_FIRST_KEY && !kv) { /* rm /.ctl/json/<doc>/<path> */
		jpath_unlink(req, parent, name);
		return;
	}
	uint8_t type;
	char *key;
	size_t klen;
	int r = name_key(fs, parent, name, &type, &key, &klen);
	if (r == 0 && (type == MF_T_NONE || verb_type(type)))
		r = parent == INO_ROOT || parent == INO_CTL ? -EPERM : -ENOENT;
	if (r == 0 && type == MF_T_STRING) {
		/* A /kv symlink, special file or folder (a folder: EISDIR). */
		r = unlink_tree_file(fs, key, klen);
		if (r == -ENOENT)
			r = unlink_key(fs, type, key, klen);
	} else if (r == 0) {
		r = unlink_key(fs, type, key, klen);
	}
	free(key);
	fuse_reply_err(req, -r);
}

static int unlink_key(mf_fs *fs, uint8_t type, const char *name, size_t len)
{
	/* Keep the value for open handles before the key goes away. */
	mf_entry_info info = {0};
	pthread_mutex_t *m = stripe(fs, type, name, len);
	pthread_mutex_lock(m);
	name_drain(fs, type, name, len); /* queued closes of this name land first */
	int r = materialize(fs, type, name, len);
	if (r == 0)
		r = mf_kv_get(&fs->kv, name, len, true, &info);
	if (r == 0 && info.type != type)
		r = -ENOENT;
	bool pending_only = false;
	if (r == -ENOENT) {
		/* A JSON file created but never given a valid document exists
		 * only as a pending node: removing it just drops the name. */
		pthread_mutex_lock(&fs->mu);
		node *pn = *name_slot(fs, type, name, len);
		if (pn && pn->pending) {
			node_stillborn(fs, pn);
			pending_only = true;
			r = 0;
		}
		pthread_mutex_unlock(&fs->mu);
	}
	if (r == 0 && !pending_only) {
		/* Open handles keep the value: readers switch to the node's copy
		 * before the DEL applies, so no read falls between the two. */
		pthread_mutex_lock(&fs->mu);
		node *n = *name_slot(fs, type, name, len);
		if (n)
			node_transit(n, info.val, info.mtime_ns);
		pthread_mutex_unlock(&fs->mu);
		mf_op op = key_op(MF_OP_DEL, type, name, len);
		r = commit(fs, &op);
		mf_op_clear(&op);
		pthread_mutex_lock(&fs->mu);
		if (n) {
			if (r == 0)
				name_unlink(fs, n);
			node_transit_end(fs, n);
		}
		pthread_mutex_unlock(&fs->mu);
	}
	pthread_mutex_unlock(m);
	mf_slice_unref(&info.val);
	return r;
}

/* The renames this mount refuses, as an errno; 0 for none. */
static int rename_refusal(uint8_t type, uint8_t ntype, const char *name, const char *newname,
                          unsigned int flags)
{
	if (type == MF_T_NONE || ntype == MF_T_NONE || verb_type(type) || verb_type(ntype))
		return EPERM;
	if (type != ntype) {
		char a[KEY_NAME_MAX], b[KEY_NAME_MAX];
		mf_log_warn("rename %s -> %s refused: across types is not supported (EXDEV)",
		            key_name(a, sizeof a, type, name, strlen(name)),
		            key_name(b, sizeof b, ntype, newname, strlen(newname)));
		return EXDEV;
	}
	if (flags & RENAME_EXCHANGE)
		return EINVAL;
	if (strlen(newname) > MF_KEY_MAX || strlen(name) > MF_KEY_MAX)
		return ENAMETOOLONG;
	return 0;
}

/* A rename's two names, of one type. */
typedef struct rename_names {
	uint8_t type;
	const char *from, *to;
	size_t flen, tlen;
} rename_names;

/* Both names' readers switch to copies before the RENAME applies: the
 * target's handles keep the old target, the source's handles their value,
 * with no read in between seeing either name's new state.  (Both stripes
 * are held: neither value can change.)  *t0, *s0: the nodes in transit. */
static void rename_transit(mf_fs *fs, const rename_names *rn, const mf_entry_info *tinfo,
                           const mf_entry_info *sinfo, node **t0, node **s0)
{
	pthread_mutex_lock(&fs->mu);
	*t0 = tinfo ? *name_slot(fs, rn->type, rn->to, rn->tlen) : NULL;
	*s0 = *name_slot(fs, rn->type, rn->from, rn->flen);
	if (*t0)
		node_transit(*t0, tinfo->val, tinfo->mtime_ns);
	if (*s0)
		node_transit(*s0, sinfo->val, sinfo->mtime_ns);
	pthread_mutex_unlock(&fs->mu);
}

/* The node table after a RENAME: the source's node takes the new name; a
 * node of the old target loses its name and keeps its value (tinfo) for its
 * handles.  Caller holds fs->mu. */
static void rename_nodes(mf_fs *fs, const rename_names *rn, const mf_entry_info *tinfo)
{
	node *t = *name_slot(fs, rn->type, rn->to, rn->tlen);
	if (t) { /* renamed over: the old target's handles keep its value */
		name_unlink(fs, t);
		t->pending = false; /* a created target's handles keep theirs */
		mf_slice_unref(&t->orphan);
		t->orphan = mf_slice_ref(tinfo->val);
		t->orphan_mtime = tinfo->mtime_ns;
	}
	node *s = *name_slot(fs, rn->type, rn->from, rn->flen);
	if (s) {
		name_unlink(fs, s);
		mf_slice_unref(&s->key);
		s->key = mf_slice_from(rn->to, rn->tlen, rn->tlen);
		node **pp = name_slot(fs, rn->type, rn->to, rn->tlen);
		s->name_next = *pp;
		*pp = s;
		s->named = true;
	}
}

/* rename with both names' stripes held: the names' queued closes land
 * first, then one RENAME op, then the node table follows.  0 or -errno. */
static int rename_locked(mf_fs *fs, const rename_names *rn, unsigned int flags)
{
	name_drain(fs, rn->type, rn->from, rn->flen);
	name_drain(fs, rn->type, rn->to, rn->tlen);
	mf_entry_info tinfo = {0};
	bool had_target = mf_kv_get(&fs->kv, rn->to, rn->tlen, true, &tinfo) == 0;
	if (had_target && (flags & RENAME_NOREPLACE)) {
		mf_slice_unref(&tinfo.val);
		return -EEXIST;
	}
	int r = materialize(fs, rn->type, rn->from, rn->flen);
	bool same = rn->flen == rn->tlen && memcmp(rn->from, rn->to, rn->flen) == 0;
	mf_entry_info sinfo = {0};
	node *t0 = NULL, *s0 = NULL;
	if (r == 0 && !same && mf_kv_get(&fs->kv, rn->from, rn->flen, true, &sinfo) == 0)
		rename_transit(fs, rn, had_target ? &tinfo : NULL, &sinfo, &t0, &s0);
	mf_op op = key_op(MF_OP_RENAME, rn->type, rn->from, rn->flen);
	op.key2 = mf_slice_from(rn->to, rn->tlen, rn->tlen);
	if (r == 0)
		r = commit(fs, &op);
	mf_op_clear(&op);
	pthread_mutex_lock(&fs->mu);
	if (r == 0 && !same)
		rename_nodes(fs, rn, &tinfo);
	if (s0 && s0->named)
		mf_slice_unref(&s0->orphan); /* renamed: it reads its key again */
	if (t0)
		node_transit_end(fs, t0);
	if (s0)
		node_transit_end(fs, s0);
	pthread_mutex_unlock(&fs->mu);
	mf_slice_unref(&sinfo.val);
	mf_slice_unref(&tinfo.val);
	return r;
}

void mf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags)
{
	mf_fs *fs = fuse_req_userdata(req);
	uint8_t type, ntype;
	char *from = NULL, *to = NULL;
	size_t flen, tlen;
	int r = -name_key(fs, parent, name, &type, &from, &flen);
	if (r == 0)
		r = -name_key(fs, newparent, newname, &ntype, &to, &tlen);
	if (r == 0)
		r = rename_refusal(type, ntype, name, newname, flags);
	if (r == 0 && type == MF_T_STRING) {
		/* A /kv folder (its whole subtree), symlink or special file. */
		r = -rename_tree(fs, from, flen, to, tlen, flags);
		if (r != ENOENT) {
			free(from);
			free(to);
			fuse_reply_err(req, r);
			return;
		}
		r = 0;
	}
	if (r) {
		free(from);
		free(to);
		fuse_reply_err(req, r);
		return;
	}
	rename_names rn = {.type = type, .from = from, .to = to, .flen = flen, .tlen = tlen};
	pthread_mutex_t *m1 = stripe(fs, type, rn.from, rn.flen);
	pthread_mutex_t *m2 = stripe(fs, type, rn.to, rn.tlen);
	if (m1 > m2) {
		pthread_mutex_t *t = m1;
		m1 = m2;
		m2 = t;
	}
	pthread_mutex_lock(m1);
	if (m2 != m1)
		pthread_mutex_lock(m2);
	r = rename_locked(fs, &rn, flags);
	if (m2 != m1)
		pthread_mutex_unlock(m2);
	pthread_mutex_unlock(m1);
	free(from);
	free(to);
	fuse_reply_err(req, -r);
}


