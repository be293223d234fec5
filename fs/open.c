/*
 * open.c — open and create: pinning a view, O_TRUNC, /.ctl files and pops.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

char *ctl_text(fuse_ino_t ino)
{
	return ino == INO_STATS ? mf_kv_stats_text(&fsg.kv) : mf_kv_snapshot_text(&fsg.kv);
}

/* Undo an open (or create) the kernel will never release: failed, or the
 * opener was interrupted before the reply.  Drops the open count, the
 * lookups the reply would have given, the handle's dirty mark (and a
 * created key that never got committed), then frees the handle. */
void undo_open(node *n, handle *h, uint64_t lookups)
{
	if (h && atomic_exchange(&h->owed, false))
		bpop_giveback(h); /* popped for an opener that never got it */
	pthread_mutex_lock(&fsg.mu);
	if (h && h->dstate == D_SIZED)
		n->ndirty--;
	n->nopen--;
	n->nlookup -= lookups;
	if (n->pending && !n->ndirty) {
		node_stillborn(n);
	}
	node_maybe_free(n);
	pthread_mutex_unlock(&fsg.mu);
	handle_free(h);
}

void reply_open(fuse_req_t req, handle *h, struct fuse_file_info *fi)
{
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(req, fi) == -ENOENT)
		undo_open(h->n, h, 0);
}

/* Open of a key file: pin the committed value the handle will see (under
 * the name's stripe, so no commit, unlink or rename is half done), pick the
 * cache mode, and apply O_TRUNC to this handle.  O_TRUNC is never dropped,
 * even on an empty or pending key: the handle's value starts empty, so its
 * writes cannot land on top of what another handle commits meanwhile. */
int open_key(node *n, handle *h, struct fuse_file_info *fi)
{
	bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
	pthread_mutex_t *m = name_lock(n);
	pthread_mutex_lock(&fsg.mu);
	bool pending = n->pending;
	mf_slice key = mf_slice_ref(n->key);
	if (!m)
		h->view = mf_slice_ref(n->orphan);
	pthread_mutex_unlock(&fsg.mu);
	mf_entry_info info = {0};
	int r = 0;
	if (m && !pending) {
		r = mf_kv_get(&fsg.kv, mf_slice_ptr(key), key.len, true, &info);
		if (r == 0 && info.type != n->type) {
			mf_slice_unref(&info.val);
			r = -ENOENT;
		}
		if (r == 0)
			h->view = info.val;
	}
	if (r == 0)
		cache_open(fi);
	if (!writer) /* stats: reads, hits and misses */
		mf_kv_count_read(&fsg.kv, r == 0);
	if (m)
		pthread_mutex_unlock(m);
	mf_slice_unref(&key);
	if (r)
		return r;
	if (writer && (fi->flags & O_TRUNC)) {
		h->mode = H_FULL;
		h->trunc = true;
		h->size = 0;
		set_dirty(h);
		pthread_mutex_lock(&fsg.mu);
		n->dirty_size = 0;
		pthread_mutex_unlock(&fsg.mu);
	}
	if (!writer)
		fi->noflush = 1; /* nothing to commit: spare the FLUSH request */
	return 0;
}

void mf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino == INO_STATS || ino == INO_SNAPSHOT) {
		handle *h = handle_new(NULL, fi->flags);
		if (!h) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		if ((fi->flags & O_ACCMODE) == O_RDONLY) {
			h->text = ctl_text(ino);
			h->textlen = h->text ? strlen(h->text) : 0;
		} else if (ino == INO_STATS) {
			handle_free(h);
			fuse_reply_err(req, EACCES);
			return;
		}
		fi->direct_io = 1;
		fi->fh = (uint64_t)(uintptr_t)h;
		fuse_reply_open(req, fi);
		return;
	}
	if (ino < INO_FIRST_KEY) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	pthread_mutex_lock(&fsg.mu);
	node *n = by_ino(ino);
	/* A nameless key node can be reopened (/proc/self/fd) only while some
	 * handle keeps it alive; otherwise it is gone (unlinked, or a create
	 * that was never committed) even if the kernel still caches its name. */
	bool gone = n && !n->named && !n->nopen && n->stillborn;
	if (n && !gone)
		n->nopen++;
	pthread_mutex_unlock(&fsg.mu);
	if (!n || gone) {
		/* ESTALE for a gone node makes the kernel look the name up again
		 * (so open(O_CREAT) through a stale cached entry creates). */
		fuse_reply_err(req, gone ? ESTALE : ENOENT);
		return;
	}
	handle *h = handle_new(n, fi->flags);
	int r = h ? 0 : -ENOMEM;
	if (r == 0 && n->type == NODE_JPATH) {
		/* Reads see the member as of open; writes replace it at close. */
		fi->direct_io = 1;
		if ((fi->flags & O_ACCMODE) == O_RDONLY) {
			size_t klen, plen;
			const char *path;
			jpath_split(n, &klen, &path, &plen);
			r = jpath_read(mf_slice_ptr(n->key), klen, path, plen, &h->text, &h->textlen, NULL);
		} else if (fi->flags & O_APPEND) {
			r = jpath_refuse_append(n);
		} else {
			h->mode = H_FULL; /* the new member text starts empty */
			if (fi->flags & O_TRUNC)
				set_dirty(h); /* a value is due: closing without one is EINVAL */
		}
	} else if (r == 0 && (n->type == NODE_JDIR || n->type == NODE_JIDIR)) {
		r = -EISDIR;
	} else if (r == 0 && n->type == NODE_BPOP) {
		r = (fi->flags & O_ACCMODE) != O_RDONLY ? -EACCES : fsg.readonly ? -EROFS : 0;
		if (r == 0)
			r = bpop_open(req, n, h, fi);
	} else if (r == 0 && ctlw_type(n->type)) {
		/* Write-only verbs; -o ro refuses them in the kernel already. */
		r = (fi->flags & O_ACCMODE) == O_RDONLY ? -EACCES : 0;
		fi->direct_io = 1;
	} else if (r == 0 && n->type == NODE_POP && (fi->flags & O_ACCMODE) != O_RDONLY) {
		/* `echo x > .ctl/pop/q` or `: >> .ctl/pop/q` would pop the head
		 * and throw it away: a pop is for a reader only.  EACCES, as for
		 * writing /.ctl/stats ("Permission denied"); nothing is popped. */
		char kn[KEY_NAME_MAX];
		mf_log_warn("write-open of %s refused: pop files are read-only",
		            key_name(kn, sizeof kn, NODE_POP, mf_slice_ptr(n->key), n->key.len));
		r = -EACCES;
	} else if (r == 0 && n->type == NODE_POP && fsg.readonly) {
		/* -o ro: the kernel refuses writes itself, but a pop is a
		 * read-only open that mutates; refuse it here, before the log. */
		r = -EROFS;
	} else if (r == 0 && n->type == NODE_POP) {
		/* Opening a pop file pops one element: each opener gets its own. */
		mf_op op = key_op(MF_OP_LPOP, MF_T_LIST, mf_slice_ptr(n->key), n->key.len);
		op.arg = 1;
		r = commit(&op);
		if (r == 0 && op.out.len == 0)
			r = -ENODATA;
		if (r == 0) {
			h->text = mf_xmalloc(op.out.len);
			memcpy(h->text, mf_slice_ptr(op.out), op.out.len);
			h->textlen = op.out.len;
			fi->direct_io = 1;
			pthread_mutex_lock(&fsg.mu);
			node *ln = *name_slot(MF_T_LIST, mf_slice_ptr(n->key), n->key.len);
			fuse_ino_t lino = ln ? ln->ino : 0;
			pthread_mutex_unlock(&fsg.mu);
			if (lino)
				invalidate(lino);
		}
		mf_op_clear(&op);
	} else if (r == 0) {
		r = open_key(n, h, fi);
	}
	if (r) {
		undo_open(n, h, 0);
		fuse_reply_err(req, -r);
		return;
	}
	reply_open(req, h, fi);
}

void mf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	(void)mode;
	uint8_t type = dir_type(parent);
	size_t len = strlen(name);
	if (parent >= INO_FIRST_KEY) {
		jpath_create(req, parent, name, fi);
		return;
	}
	if (!key_type(type)) {
		/* /.ctl/srem/<set> of a set that is not there: ENOENT. */
		fuse_reply_err(req, type == MF_T_NONE || type == NODE_SREM ? ENOENT : EPERM);
		return;
	}
	if (len > MF_KEY_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	/* A new key is not logged at create: the node is "pending" (visible
	 * through this mount's lookups as an empty file) and the key comes into
	 * being with the handle's first commit — one WAL record per `echo v >
	 * new`, and for JSON an invalid first document leaves absence
	 * untouched.  Only the checks run now (EEXIST etc). */
	mf_op op = key_op(MF_OP_CREATE, type, name, len);
	op.time_ns = mf_now_ns();
	int r = mf_kv_check(&fsg.kv, &op);
	mf_op_clear(&op);
	if (r) {
		char kn[KEY_NAME_MAX];
		if (r != -EEXIST)
			log_err("create failed for", type, name, len, -r);
		else
			mf_log_warn("create %s refused: the key exists with another type (EEXIST)",
			            key_name(kn, sizeof kn, type, name, len));
		fuse_reply_err(req, -r);
		return;
	}
	mf_entry_info cur;
	bool exists = mf_kv_get(&fsg.kv, name, len, false, &cur) == 0;
	struct fuse_entry_param e;
	pthread_mutex_lock(&fsg.mu);
	node *n = node_get(type, name, len);
	handle *h = n ? handle_new(n, fi->flags) : NULL;
	if (h && !exists) {
		n->pending = true;
		n->orphan_mtime = mf_now_ns();
		/* Only an O_TRUNC creator owns a private (empty) value from the
		 * start (the O_TRUNC rule, as for opens).  Others read the key
		 * like any clean handle until they write: O_APPEND creators then
		 * commit APPEND/RPUSH (so two of them racing on a new key both
		 * land), the rest build a SET.  Until then their close logs the
		 * CREATE (touch). */
		bool own = (fi->flags & O_TRUNC) && (!(fi->flags & O_APPEND) || type == MF_T_JSON);
		h->mode = own ? H_FULL : H_VIEW;
		h->trunc = own;
		/* Only a handle whose size means something (O_TRUNC: empty) shows
		 * it to getattr; a creator that has not written owes only the
		 * CREATE of its close, and is hidden from sizes. */
		h->dstate = own ? D_SIZED : D_HIDDEN;
		if (own) {
			n->ndirty++;
			n->dirty_stale = false;
			n->dirty_size = 0;
			n->dirty_mtime = n->orphan_mtime;
		}
	}
	if (h)
		cache_open(fi);
	fill_entry(&e, n ? n->ino : 0);
	r = h && n ? node_attr(n, &e.attr) : -ENOMEM;
	if (r == 0) {
		n->nlookup++;
		n->nopen++;
	} else if (n) {
		if (h && h->dstate == D_SIZED)
			n->ndirty--;
		n->pending = false;
		handle_free(h);
		node_maybe_free(n);
	}
	pthread_mutex_unlock(&fsg.mu);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		undo_open(n, h, 1); /* the creator was interrupted */
}
