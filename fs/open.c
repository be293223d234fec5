/*
 * open.c — open and create: pinning a view, O_TRUNC, /.ctl files and pops.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

char *ctl_text(mf_fs *fs, fuse_ino_t ino)
{
	return ino == INO_STATS ? mf_kv_stats_text(&fs->kv) : mf_kv_snapshot_text(&fs->kv);
}

/* Undo an open (or create) the kernel will never release: failed, or the
 * opener was interrupted before the reply.  Drops the open count, the
 * lookups the reply would have given, the handle's dirty mark (and a
 * created key that never got committed), then frees the handle. */
void undo_open(mf_fs *fs, node *n, handle *h, uint64_t lookups)
{
	if (h && atomic_exchange(&h->owed, false))
		bpop_giveback(fs, h); /* popped for an opener that never got it */
	pthread_mutex_lock(&fs->mu);
	if (h && h->dstate == D_SIZED)
		n->ndirty--;
	n->nopen--;
	n->nlookup -= lookups;
	if (n->pending && !n->ndirty) {
		node_stillborn(fs, n);
	}
	node_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->mu);
	handle_free(fs, h);
}

void reply_open(fuse_req_t req, handle *h, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_open(req, fi) == -ENOENT)
		undo_open(fs, h->n, h, 0);
}

/* Open of a key file: pin the committed value the handle will see (under
 * the name's stripe, so no commit, unlink or rename is half done), pick the
 * cache mode, and apply O_TRUNC to this handle.  O_TRUNC is never dropped,
 * even on an empty or pending key: the handle's value starts empty, so its
 * writes cannot land on top of what another handle commits meanwhile. */
int open_key(mf_fs *fs, node *n, handle *h, struct fuse_file_info *fi)
{
	bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
	pthread_mutex_t *m = name_lock(fs, n);
	pthread_mutex_lock(&fs->mu);
	bool pending = n->pending;
	mf_slice key = mf_slice_ref(n->key);
	if (!m)
		h->view = mf_slice_ref(n->orphan);
	pthread_mutex_unlock(&fs->mu);
	mf_entry_info info = {0};
	int r = 0;
	if (m && !pending) {
		r = mf_kv_get(&fs->kv, mf_slice_ptr(key), key.len, true, &info);
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
		mf_kv_count_read(&fs->kv, r == 0);
	if (m)
		pthread_mutex_unlock(m);
	mf_slice_unref(&key);
	if (r)
		return r;
	if (writer && (fi->flags & O_TRUNC)) {
		h->mode = H_FULL;
		h->trunc = true;
		h->size = 0;
		set_dirty(fs, h);
		pthread_mutex_lock(&fs->mu);
		n->dirty_size = 0;
		pthread_mutex_unlock(&fs->mu);
	}
	if (!writer)
		fi->noflush = 1; /* nothing to commit: spare the FLUSH request */
	return 0;
}

/* Open of /.ctl/stats or /.ctl/snapshot: a reader gets the text as of
 * open; only /.ctl/snapshot may be opened for writing (a write asks for a
 * snapshot). */
static void open_ctl(mf_fs *fs, fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	handle *h = handle_new(fs, NULL, fi->flags);
	if (!h) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	if ((fi->flags & O_ACCMODE) == O_RDONLY) {
		h->text = ctl_text(fs, ino);
		h->textlen = h->text ? strlen(h->text) : 0;
	} else if (ino == INO_STATS) {
		handle_free(fs, h);
		fuse_reply_err(req, EACCES);
		return;
	}
	fi->direct_io = 1;
	fi->fh = (uint64_t)(uintptr_t)h;
	/* -ENOENT: the opener was interrupted and the kernel dropped the reply,
	 * so no RELEASE will ever name this handle. */
	if (fuse_reply_open(req, fi) == -ENOENT)
		handle_free(fs, h);
}

/* The node an open is for, its open count raised (*np), or the errno to
 * answer. */
static int open_count(mf_fs *fs, fuse_ino_t ino, node **np)
{
	pthread_mutex_lock(&fs->mu);
	node *n = by_ino(fs, ino);
	/* A create that never came into being (stillborn) is gone even if the
	 * kernel still caches its name, and even while its refused creator's
	 * handle is open (its RELEASE comes later, unwaited): an open through
	 * that name must create anew, not write into a nameless node whose
	 * close would return 0 and keep nothing.  Found on the remote backend,
	 * where the creator's RELEASE came after the retry's open: a fixed
	 * JSON document written right after a refused one was lost. */
	bool gone = n && !n->named && n->stillborn;
	if (n && !gone)
		n->nopen++;
	pthread_mutex_unlock(&fs->mu);
	*np = n;
	/* ESTALE for a gone node makes the kernel look the name up again (so
	 * open(O_CREAT) through a stale cached entry creates). */
	return !n ? ENOENT : gone ? ESTALE : 0;
}

/* Open of a JSON member view: reads see the member as of open; writes
 * replace it at close. */
static int open_jpath(mf_fs *fs, node *n, handle *h, struct fuse_file_info *fi)
{
	fi->direct_io = 1;
	if ((fi->flags & O_ACCMODE) == O_RDONLY) {
		size_t klen, plen;
		const char *path;
		jpath_split(n, &klen, &path, &plen);
		return jpath_read(fs, mf_slice_ptr(n->key), klen, path, plen, &h->text, &h->textlen,
		                  NULL);
	}
	h->mode = H_FULL; /* the new member text starts empty (O_APPEND: the lines to append) */
	if ((fi->flags & O_TRUNC) && !(fi->flags & O_APPEND))
		set_dirty(fs, h); /* a value is due: closing without one is EINVAL */
	return 0;
}

/* /.ctl/incr, /.ctl/srem, /.ctl/jincr: write-only verbs (-o ro refuses
 * writers in the kernel already). */
static int open_ctlw(mf_fs *fs, node *n, handle *h, struct fuse_file_info *fi)
{
	fi->direct_io = 1;
	if ((fi->flags & O_ACCMODE) != O_RDONLY)
		return 0;
	/* /.ctl/expire/<key> reads as the key's TTL; the others are write-only. */
	return n->type == NODE_EXPIRE ? ctlw_ttl_text(fs, n, h) : -EACCES;
}

/* Opening a pop file pops one element: each opener gets its own. */
static int open_pop(mf_fs *fs, node *n, handle *h, struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		/* `echo x > .ctl/pop/q` or `: >> .ctl/pop/q` would pop the head
		 * and throw it away: a pop is for a reader only.  EACCES, as for
		 * writing /.ctl/stats ("Permission denied"); nothing is popped. */
		char kn[KEY_NAME_MAX];
		mf_log_warn("write-open of %s refused: pop files are read-only",
		            key_name(kn, sizeof kn, NODE_POP, mf_slice_ptr(n->key), n->key.len));
		return -EACCES;
	}
	/* -o ro: the kernel refuses writes itself, but a pop is a read-only
	 * open that mutates; refuse it here, before the log. */
	if (fs->readonly)
		return -EROFS;
	mf_op op = key_op(MF_OP_LPOP, MF_T_LIST, mf_slice_ptr(n->key), n->key.len);
	op.arg = 1;
	int r = commit(fs, &op);
	if (r == 0 && op.out.len == 0)
		r = -ENODATA;
	if (r == 0) {
		h->text = mf_xmalloc(op.out.len);
		memcpy(h->text, mf_slice_ptr(op.out), op.out.len);
		h->textlen = op.out.len;
		fi->direct_io = 1;
		invalidate_key(fs, MF_T_LIST, mf_slice_ptr(n->key), n->key.len);
	}
	mf_op_clear(&op);
	return r;
}

void mf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	if (ino == INO_STATS || ino == INO_SNAPSHOT) {
		open_ctl(fs, req, ino, fi);
		return;
	}
	if (ino < INO_FIRST_KEY) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	node *n;
	int r = open_count(fs, ino, &n);
	if (r) {
		fuse_reply_err(req, r);
		return;
	}
	handle *h = handle_new(fs, n, fi->flags);
	if (!h)
		r = -ENOMEM;
	else if (n->type == NODE_JPATH)
		r = open_jpath(fs, n, h, fi);
	else if (n->type == NODE_JDIR || n->type == NODE_JIDIR || n->type == NODE_FOLDER)
		r = -EISDIR;
	else if (n->type == NODE_LINK)
		r = -ELOOP; /* the kernel follows links itself; O_NOFOLLOW lands here */
	else if (n->type == NODE_POP)
		r = open_pop(fs, n, h, fi);
	else if (n->type == NODE_BPOP)
		r = (fi->flags & O_ACCMODE) != O_RDONLY ? -EACCES
		    : fs->readonly                      ? -EROFS
		                                        : bpop_open(req, n, h, fi);
	else if (ctlw_type(n->type))
		r = open_ctlw(fs, n, h, fi);
	else
		r = open_key(fs, n, h, fi);
	if (r) {
		undo_open(fs, n, h, 0);
		fuse_reply_err(req, -r);
		return;
	}
	reply_open(req, h, fi);
}

static void create_key(fuse_req_t req, uint8_t type, const char *name, size_t len, mf_attr ca,
                       struct fuse_file_info *fi);

void mf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	mf_slice prefix;
	bool kv = kv_folder(fs, parent, &prefix);
	mf_slice_unref(&prefix);
	if (parent >= INO_FIRST_KEY && !kv) {
		jpath_create(req, parent, name, fi);
		return;
	}
	uint8_t type;
	char *key;
	size_t len;
	int r = name_key(fs, parent, name, &type, &key, &len);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	if (!key_type(type)) {
		/* /.ctl/srem/<set> of a set that is not there: ENOENT. */
		free(key);
		fuse_reply_err(req, type == MF_T_NONE || type == NODE_SREM ? ENOENT : EPERM);
		return;
	}
	create_key(req, type, key, len, creator_attr(fs, req, mode, 0644), fi);
	free(key);
}

/* create of key `name` (a /kv path or a flat name) of a key type. */
static void create_key(fuse_req_t req, uint8_t type, const char *name, size_t len, mf_attr ca,
                       struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	/* A new key is not logged at create: the node is "pending" (visible
	 * through this mount's lookups as an empty file) and the key comes into
	 * being with the handle's first commit — one WAL record per `echo v >
	 * new`, and for JSON an invalid first document leaves absence
	 * untouched.  Only the checks run now (EEXIST etc). */
	mf_op op = key_op(MF_OP_CREATE, type, name, len);
	op.time_ns = mf_now_ns();
	int r = mf_kv_check(&fs->kv, &op);
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
	bool exists = mf_kv_get(&fs->kv, name, len, false, &cur) == 0;
	struct fuse_entry_param e;
	pthread_mutex_lock(&fs->mu);
	node *n = node_get(fs, type, name, len);
	handle *h = n ? handle_new(fs, n, fi->flags) : NULL;
	if (h && !exists) {
		n->pending = true;
		n->has_cattr = !attr_is_default(&ca);
		n->cattr = ca;
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
	fill_entry(fs, &e, n ? n->ino : 0);
	r = h && n ? node_attr(fs, n, &e.attr) : -ENOMEM;
	if (r == 0) {
		n->nlookup++;
		n->nopen++;
	} else if (n) {
		if (h && h->dstate == D_SIZED)
			n->ndirty--;
		n->pending = false;
		handle_free(fs, h);
		node_maybe_free(fs, n);
	}
	pthread_mutex_unlock(&fs->mu);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		undo_open(fs, n, h, 1); /* the creator was interrupted */
}
