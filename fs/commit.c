/*
 * commit.c — the commit state machine: flush, fsync, release -> one mf_op.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"
#include "../io/io.h"

int commit_handle_locked_then_inval(mf_fs *fs, handle *h, bool final)
{
	if (ctlw_handle(h))
		return ctlw_flush(fs, h);
	pthread_mutex_lock(&h->mu);
	int r = handle_commit(fs, h, final);
	fuse_ino_t ino = h->inval_ino;
	bool attr_only = h->inval_attr_only;
	h->inval_ino = 0;
	h->inval_attr_only = false;
	pthread_mutex_unlock(&h->mu);
	if (ino && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, attr_only ? -1 : 0, 0);
	return r;
}

/* Log the time a utimens asked for while handles were dirty, once none is
 * (their commits are in).  Caller holds the name's stripe, so it lands
 * right after those commits and before any rm/mv of the name.  A key that
 * never came to be (a refused first JSON document) has no time to keep. */
void settime_deferred(mf_fs *fs, node *n)
{
	pthread_mutex_lock(&fs->mu);
	bool due = n->has_set_mtime && !n->ndirty && n->named && !n->pending;
	if (due)
		n->has_set_mtime = false;
	int64_t t = n->set_mtime;
	mf_op op = due ? key_op(MF_OP_SETTIME, n->type, mf_slice_ptr(n->key), n->key.len) : (mf_op){0};
	pthread_mutex_unlock(&fs->mu);
	if (!due)
		return;
	op.arg = (uint64_t)t;
	int r = commit(fs, &op);
	if (r && r != -ENOENT)
		log_err("setting the time failed for", op.ktype, mf_slice_ptr(op.key), op.key.len, -r);
	mf_op_clear(&op);
}

int handle_commit(mf_fs *fs, handle *h, bool final)
{
	node *n = h->n;
	if (h->dstate == D_CLEAN || n->type == NODE_JPATH)
		return handle_commit_inner(fs, h, final, NULL);
	pthread_mutex_t *m = name_lock(fs, n);
	int r = handle_commit_inner(fs, h, final, &m);
	if (m)
		pthread_mutex_unlock(m);
	/* A utimens kept while writers were dirty is logged once they are all
	 * in, ordered by name like any commit. */
	pthread_mutex_lock(&fs->mu);
	bool settime = n->has_set_mtime;
	pthread_mutex_unlock(&fs->mu);
	if (settime && (m = name_lock(fs, n)) != NULL) {
		settime_deferred(fs, n);
		pthread_mutex_unlock(m);
	}
	return r;
}

/* Back to a clean handle after its commit (or a refusal, which is final
 * too: the release must not retry and log twice).  Its view becomes
 * `view` (consumed): what it committed, or what it saw before. */
void handle_reset(mf_fs *fs, handle *h, mf_slice view)
{
	mf_slice_unref(&h->view);
	h->view = view;
	mf_slice_unref(&h->data);
	handle_forget_changes(h);
	h->mode = H_VIEW;
	h->wrote = h->trunc = false;
	h->size = 0;
	clear_dirty(fs, h);
}

/* Commit of a handle whose key is gone (unlinked or renamed over while
 * open): its data lives on only in the node, for the handles still open.
 * The type's rules still hold (a JSON document must be one). */
int commit_orphan(mf_fs *fs, handle *h)
{
	node *n = h->n;
	if (n->type == MF_T_JSON && h->mode == H_FULL) {
		size_t off = 0;
		const char *why = "";
		if (mf_value_check(n->type, mf_slice_ptr(h->data), h->size, &off, &why) != 0) {
			char kn[KEY_NAME_MAX];
			mf_log_warn("invalid JSON written to unlinked document %s (%s at byte %zu): refused",
			            key_name(kn, sizeof kn, n->type, mf_slice_ptr(n->key), n->key.len), why,
			            off);
			handle_reset(fs, h, mf_slice_ref(h->view));
			return -EINVAL;
		}
	}
	pthread_mutex_lock(&fs->mu);
	if (h->mode == H_FULL) {
		/* The buffer moves to the node: from now on it is published
		 * (other handles read it), so this handle must not grow it in
		 * place; its next write starts a new private copy. */
		mf_slice_unref(&n->orphan);
		h->data.len = h->size;
		n->orphan = h->data;
		h->data = MF_SLICE_EMPTY;
	} else {
		mf_slice_append(&n->orphan, mf_slice_ptr(h->data), h->data.len);
		if (lines_type(n->type))
			mf_list_terminate(&n->orphan); /* the store's list rule, as RPUSH */
	}
	n->orphan_mtime = mf_now_ns();
	mf_slice view = mf_slice_ref(n->orphan);
	pthread_mutex_unlock(&fs->mu);
	handle_reset(fs, h, view);
	return 0;
}

/* True if the committed value of the handle's key is empty now: then an
 * O_TRUNC handle that wrote nothing has nothing to log. */
bool committed_empty(mf_fs *fs, node *n, mf_slice key)
{
	mf_entry_info info;
	return mf_kv_get(&fs->kv, mf_slice_ptr(key), key.len, false, &info) == 0 &&
	       info.type == n->type && info.size == 0;
}

/*
 * Commit what a handle wrote as one whole-value op.  Caller holds h->mu and
 * the name's stripe (handle_commit).  final: the handle is going away, so a
 * list's unterminated last line is pushed now (with its newline completed).
 */
/* A full-mode string handle logs what it changed (WRITEV, op.h) instead of
 * its whole value when that is under half the size: `truncate -s 1G`, an
 * ftruncate after O_TRUNC, a 4 KiB write into a 20 MB value.  Only while
 * the key still holds the value the handle copied (else its first keep
 * bytes are not what the handle saw: a whole SET, last close wins); the
 * store re-checks at apply (-ESTALE, then handle_commit_inner sends the
 * SET).  True with op filled. */
static bool commit_writev(mf_fs *fs, handle *h, node *n, mf_slice key, mf_op *op)
{
	if (n->type != MF_T_STRING || h->ranges_over)
		return false;
	if (mf_writev_size(h->ranges, h->nranges) >= h->size / 2)
		return false;
	if (h->keep) {
		mf_entry_info info;
		if (mf_kv_get(&fs->kv, mf_slice_ptr(key), key.len, true, &info) != 0)
			return false;
		bool same = info.type == n->type && info.val.buf == h->base.buf &&
		            info.val.off == h->base.off && info.val.len >= h->keep;
		mf_slice_unref(&info.val);
		if (!same)
			return false;
	}
	uint64_t hash = h->keep ? mf_hash64(mf_slice_ptr(h->base), (size_t)h->keep) : 0;
	op->type = MF_OP_WRITEV;
	op->arg = h->size;
	op->val = mf_writev_encode(h->keep, hash, h->ranges, h->nranges, mf_slice_ptr(h->data));
	op->base = mf_slice_ref(h->base);
	return true;
}

/* The op a named handle's commit logs, by mode; 1 if there is nothing to
 * log (the handle is reset), else 0 with op filled. */
static int commit_op(mf_fs *fs, handle *h, node *n, bool pending, mf_slice key, mf_op *op)
{
	op->ktype = n->type;
	op->key = mf_slice_ref(key);
	if (pending && !h->wrote && n->type != MF_T_JSON) {
		/* Created, nothing written yet: this close must leave the key
		 * durable (touch, `: > k`) without clobbering what other handles
		 * append; the handle goes on building its value. */
		op->type = MF_OP_CREATE;
		return 0;
	}
	if (!h->wrote && (h->trunc ? committed_empty(fs, n, key) : !pending)) {
		/* Nothing of its own to log: a creator that wrote nothing, whose
		 * key another handle's commit brought into being (a SET of its
		 * empty value would wipe that commit); or `> k` on an empty key. */
		handle_reset(fs, h, mf_slice_ref(h->view));
		return 1;
	}
	switch (h->mode) {
	case H_VIEW:
		if (!pending)
			break;
		/* A JSON creator that wrote nothing: an empty document, which
		 * the store refuses (EINVAL, logged) and the key never exists. */
		op->type = MF_OP_SET;
		return 0;
	case H_FULL:
		if (commit_writev(fs, h, n, key, op))
			return 0;
		op->type = MF_OP_SET;
		h->data.len = h->size;
		mf_slice_shrink_private(&h->data);
		op->val = mf_slice_ref(h->data);
		op->val.len = h->size;
		return 0;
	case H_APPEND:
		/* Every commit point (close, fsync) pushes whole elements: the
		 * store completes an unterminated last line (its list rule). */
		op->type = n->type == MF_T_LIST  ? MF_OP_RPUSH
		         : n->type == MF_T_SET ? MF_OP_SADD
		                               : MF_OP_APPEND;
		op->val = mf_slice_ref(h->data);
		return 0;
	}
	handle_reset(fs, h, mf_slice_ref(h->view));
	return 1;
}

/* The handle after its op's verdict r: what it sees and owes next. */
static void commit_outcome(mf_fs *fs, handle *h, const mf_op *op, int r)
{
	if (r == 0 && op->type == MF_OP_CREATE) {
		/* The create (and an O_TRUNC's truncation) is committed: like any
		 * handle after a commit point, it reads the latest value from now
		 * on, and a later write lands on that (bash closes a duplicate,
		 * logging the CREATE, before it writes). */
		handle_reset(fs, h, mf_slice_ref(h->view));
	} else if (r == 0 && op->type == MF_OP_SET) {
		handle_reset(fs, h, mf_slice_ref(op->val));
	} else if (r == 0) {
		/* An append landed after whatever the value was: see that. */
		mf_entry_info info = {0};
		mf_slice view = mf_kv_get(&fs->kv, mf_slice_ptr(op->key), op->key.len, true,
		                             &info) == 0 ? info.val : MF_SLICE_EMPTY;
		handle_reset(fs, h, view);
	} else if (r != -ENOSPC && r != -EIO && r != -ENOMEM) {
		/* Refused for good (EINVAL, EEXIST...).  Transient I/O errors keep
		 * the data for a retry by fsync/close. */
		handle_reset(fs, h, mf_slice_ref(h->view));
	}
}

/* The node and the kernel's caches after a commit's verdict r. */
static void commit_publish(mf_fs *fs, handle *h, int r, bool was_full)
{
	node *n = h->n;
	bool refused = r && r != -ENOSPC && r != -EIO && r != -ENOMEM;
	pthread_mutex_lock(&fs->mu);
	bool others = n->nopen > 1;
	if (r == 0) {
		n->pending = false;
	} else if (refused && n->pending && !others) {
		/* A created key whose only handle's value was refused (an invalid
		 * first JSON document) never came into being: gone before this
		 * close returns, not only at the later RELEASE. */
		node_stillborn(fs, n);
	}
	pthread_mutex_unlock(&fs->mu);
	/* Others may cache what is now stale; after a refused commit, the
	 * kernel's own view (truncated by O_TRUNC, extended by writes) is. */
	if (others || r) {
		h->inval_ino = n->ino;
	} else if (!was_full) {
		/* An append lands after whatever the value is at commit time, which
		 * may differ from the size this inode's kernel cache computed. */
		h->inval_ino = n->ino;
		h->inval_attr_only = true;
	}
}

/* The JSON O_TRUNC handle bash closes (a duplicate) before writing: a
 * document truncated by open(O_TRUNC) but not yet written is not a
 * document.  The kernel truncated its view at open; the document is
 * unchanged, so stop showing this handle's (empty) size and make the kernel
 * look again before close returns.  The handle still owes a commit: a
 * write may follow, and the release commits (and logs) whatever it holds. */
static int commit_json_unwritten(mf_fs *fs, handle *h)
{
	pthread_mutex_lock(&fs->mu);
	if (h->dstate == D_SIZED)
		h->n->ndirty--;
	h->dstate = D_HIDDEN;
	pthread_mutex_unlock(&fs->mu);
	h->inval_ino = h->n->ino;
	return -EINVAL;
}

/*
 * Name ordering by log position (issue 11): the stripe is held only until
 * the op's place in the log is fixed (enqueue), not across the log write,
 * so closes of unrelated keys on one stripe share a group commit.  Ops that
 * must see every queued commit of a name applied before they read its value
 * (unlink, rename, truncate/utimens by name) hold the stripe and drain it
 * first (name_drain): n->inflight counts commits enqueued and not yet
 * published, and no new one can start on that name while they hold it.
 */
static void inflight_end(mf_fs *fs, node *n)
{
	pthread_mutex_lock(&fs->mu);
	if (--n->inflight == 0)
		pthread_cond_broadcast(&fs->drain_cv);
	pthread_mutex_unlock(&fs->mu);
}

void name_drain(mf_fs *fs, uint8_t type, const char *k, size_t len)
{
	pthread_mutex_lock(&fs->mu);
	for (;;) {
		node *n = *name_slot(fs, type, k, len);
		if (!n || !n->inflight)
			break;
		pthread_cond_wait(&fs->drain_cv, &fs->mu);
	}
	pthread_mutex_unlock(&fs->mu);
}

/* Commit what a handle holds.  Caller holds h->mu and, for a named handle
 * commit, the name's stripe in *stripe_held, which this releases (and sets
 * to NULL) once the op is enqueued. */
int handle_commit_inner(mf_fs *fs, handle *h, bool final, pthread_mutex_t **stripe_held)
{
	if (h->dstate == D_CLEAN)
		return 0;
	node *n = h->n;
	if (n->type == NODE_JPATH)
		return jpath_commit(fs, h, final);
	if (n->type == MF_T_JSON && !h->wrote && !final)
		return commit_json_unwritten(fs, h);
	pthread_mutex_lock(&fs->mu);
	bool named = n->named, pending = n->pending;
	mf_slice key = mf_slice_ref(n->key);
	pthread_mutex_unlock(&fs->mu);
	if (!named) {
		mf_slice_unref(&key);
		return commit_orphan(fs, h);
	}
	mf_op op = {0};
	int none = commit_op(fs, h, n, pending, key, &op);
	mf_slice_unref(&key);
	if (none) {
		mf_op_clear(&op);
		return 0;
	}
	bool was_full = h->mode == H_FULL;
	mf_kv_ticket t;
	/* A created key's first record carries its creator's mode and owner
	 * (MKFILE for CREATE/SET; a SETATTR after an O_APPEND creator's). */
	mf_op wire;
	op.time_ns = mf_now_ns();
	pthread_mutex_lock(&fs->mu);
	bool attrs = pending && creator_op(n, &op, &wire);
	bool rest = pending && (n->has_cattr || n->has_catime) && !attrs;
	pthread_mutex_unlock(&fs->mu);
	int r = commit_enqueue(fs, attrs ? &wire : &op, &t);
	bool queued = r == 0;
	if (queued) {
		pthread_mutex_lock(&fs->mu);
		n->inflight++;
		pthread_mutex_unlock(&fs->mu);
		if (stripe_held && *stripe_held) {
			pthread_mutex_unlock(*stripe_held);
			*stripe_held = NULL;
		}
		r = mf_kv_commit_wait(&fs->kv, &t);
	}
	if (r == -ESTALE && op.type == MF_OP_WRITEV) {
		/* Another writer (RESP) changed the key between our look and the
		 * apply: the store refused the ranges and changed nothing.  Log
		 * the whole value, a later close than that writer's. */
		mf_slice_unref(&op.val);
		mf_slice_unref(&op.base);
		op.type = MF_OP_SET;
		op.arg = 0;
		op.time_ns = 0;
		h->data.len = h->size;
		mf_slice_shrink_private(&h->data);
		op.val = mf_slice_ref(h->data);
		r = commit(fs, &op);
	}
	if (r == 0 && (attrs || rest))
		commit_creator_rest(fs, n, attrs ? &wire : &op);
	if (attrs)
		mf_op_clear(&wire);
	commit_outcome(fs, h, &op, r);
	if (r)
		log_err("commit failed for", n->type, mf_slice_ptr(op.key), op.key.len, -r);
	commit_publish(fs, h, r, was_full);
	if (queued)
		inflight_end(fs, n); /* published: a drainer may read the name now */
	mf_op_clear(&op);
	return r;
}

void mf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)ino;
	handle *h = fh(fi);
	int r = 0;
	if (h->n)
		r = commit_handle_locked_then_inval(fs, h, false);
	fuse_reply_err(req, -r);
}

void mf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)ino;
	(void)datasync;
	handle *h = fh(fi);
	int r = 0;
	if (h->n) /* fsync is a commit point like a last close */
		r = commit_handle_locked_then_inval(fs, h, true);
	if (r == 0)
		r = mf_kv_sync(&fs->kv);
	fuse_reply_err(req, -r);
}

/* fsync(dirfd): renames, unlinks and creates in a directory are WAL records
 * like any other; make everything acknowledged durable.  (Without this the
 * kernel would answer every later fsyncdir itself after one ENOSYS.) */
void mf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, -mf_kv_sync(&fs->kv));
}

void mf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)ino;
	/* The kernel sends RELEASE after close(2) has returned, without waiting
	 * for it: tests make it late here to check nothing depends on it. */
	mf_delay_point("release");
	handle *h = fh(fi);
	if (h->n && atomic_exchange(&h->owed, false))
		bpop_giveback(fs, h); /* closed before its element was read */
	if (h->n) {
		commit_handle_locked_then_inval(fs, h, true); /* errors logged; release can't report */
		clear_dirty(fs, h);
		node *n = h->n;
		pthread_mutex_lock(&fs->mu);
		n->nopen--;
		if (n->pending && !n->nopen) {
			/* A created key whose every handle is gone without a valid
			 * commit (a refused first JSON document, a failed write) never
			 * came into being: drop its name, so stat, ls and open agree
			 * that it does not exist.  The kernel may still hold the inode;
			 * getattr and open on it answer ENOENT (see mf_open). */
			node_stillborn(fs, n);
		}
		node_maybe_free(fs, n);
		pthread_mutex_unlock(&fs->mu);
	}
	fuse_reply_err(req, 0);
	handle_put(fs, h);
}
