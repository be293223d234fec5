/*
 * attr.c — attributes: getattr, setattr (truncate/utimens by name or handle), statfs.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* ---------- helpers ---------- */

struct timespec ns_to_ts(int64_t ns)
{
	return (struct timespec){ns / 1000000000, ns % 1000000000};
}

const char *key_name(char *buf, size_t len, uint8_t type, const void *key, size_t klen)
{
	static const char *const dirs[] = {[MF_T_STRING] = "kv", [MF_T_JSON] = "json",
	                                   [MF_T_LIST] = "lists", [MF_T_SET] = "sets",
	                                   [NODE_POP] = ".ctl/pop", [NODE_JDIR] = ".ctl/json",
	                                   [NODE_JPATH] = ".ctl/json", [NODE_INCR] = ".ctl/incr",
	                                   [NODE_BPOP] = ".ctl/bpop", [NODE_JIDIR] = ".ctl/jincr",
	                                   [NODE_JINCR] = ".ctl/jincr", [NODE_SREM] = ".ctl/srem",
	                                   [NODE_EXPIRE] = ".ctl/expire"};
	char esc[3 * MF_KEY_MAX + 8];
	snprintf(buf, len, "%s/%s", type < sizeof dirs / sizeof dirs[0] && dirs[type] ? dirs[type] : "?",
	         mf_log_key(esc, sizeof esc, key, klen));
	return buf;
}

void log_err(const char *what, uint8_t type, const char *key, size_t klen, int err)
{
	char kn[KEY_NAME_MAX];
	mf_log_error("%s %s: %s", what, key_name(kn, sizeof kn, type, key, klen), strerror(err));
}

void dir_attr(mf_fs *fs, fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_mode = S_IFDIR | 0755;
	st->st_nlink = 2;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_atim = st->st_mtim = st->st_ctim = fs->start;
	st->st_blksize = 4096;
}

void file_attr(mf_fs *fs, fuse_ino_t ino, mode_t mode, uint64_t size, int64_t mtime, int64_t ctime,
               struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_blksize = 4096;
	st->st_mtim = ns_to_ts(mtime);
	st->st_atim = st->st_mtim;
	st->st_ctim = ns_to_ts(ctime);
}

/* Attributes of a key node.  Caller holds fs->mu. */
int node_attr(mf_fs *fs, node *n, struct stat *st)
{
	if (n->type == NODE_JIDIR)
		return jpath_attr(fs, n, st);
	if (verb_type(n->type)) {
		/* 0400: with allow_other (default_permissions), only the owner
		 * may pop; 0200: control files one writes to. */
		int64_t t = fs->start.tv_sec * 1000000000LL;
		mode_t mode = n->type == NODE_EXPIRE ? 0600 : ctlw_type(n->type) ? 0200 : 0400;
		file_attr(fs, n->ino, mode, 0, t, t, st);
		return 0;
	}
	if (n->type == NODE_JDIR || n->type == NODE_JPATH)
		return jpath_attr(fs, n, st);
	if (n->type == NODE_FOLDER || n->type == NODE_LINK)
		return tree_node_attr(fs, n, st);
	if (!n->named && !n->nopen && n->stillborn)
		return -ESTALE; /* see mf_open: the kernel looks the name up again */
	mf_entry_info info = {.mode = n->cattr.mode, .uid = n->cattr.uid, .gid = n->cattr.gid};
	if (!n->has_cattr) {
		info.mode = MF_MODE_DEFAULT;
		info.uid = info.gid = MF_ID_DEFAULT;
	}
	uint64_t size;
	int64_t mtime, ctime;
	if (n->pending) {
		size = 0;
		mtime = ctime = n->orphan_mtime;
	} else if (n->named && !n->transit) {
		/* (In transit, the store may already have applied the unlink or
		 * rename: the node's copy is its value, as for node_value.) */
		int gr = mf_kv_get(&fs->kv, mf_slice_ptr(n->key), n->key.len, false, &info);
		if (gr != 0 && gr != -ENOENT)
			return gr; /* the keyspace could not answer (EIO) */
		if (gr != 0 || info.type != n->type)
			return -ENOENT;
		size = info.size;
		mtime = info.mtime_ns;
		ctime = info.ctime_ns;
		if (n->has_cattr) { /* its first commit has not set them yet */
			info.mode = n->cattr.mode;
			info.uid = n->cattr.uid;
			info.gid = n->cattr.gid;
		}
	} else {
		size = n->orphan.len;
		mtime = ctime = n->orphan_mtime;
	}
	if (n->ndirty && !n->dirty_stale) {
		size = n->dirty_size;
		mtime = ctime = n->dirty_mtime;
	}
	file_attr(fs, n->ino, 0644, size, mtime, ctime, st);
	info.mtime_ns = mtime;
	info.ctime_ns = ctime;
	/* atime: the stored one (reads do not move it: noatime); a value
	 * with none yet shows its mtime. */
	if (!info.atime_ns || n->pending || !n->named || n->transit)
		info.atime_ns = mtime;
	if (n->has_catime) /* set before its first record: logged after it */
		info.atime_ns = n->cattr.atime_ns;
	kv_attr(fs, &info, 0644, st);
	if (!n->named)
		st->st_nlink = 0;
	return 0;
}

int ino_attr(mf_fs *fs, fuse_ino_t ino, struct stat *st)
{
	if (ino < INO_FIRST_KEY) {
		const layout_entry *f = layout_find(ino);
		if (!f)
			return -ENOENT;
		layout_attr(fs, f, st);
		return 0;
	}
	pthread_mutex_lock(&fs->mu);
	node *n = by_ino(fs, ino);
	int r = n ? node_attr(fs, n, st) : -ENOENT;
	pthread_mutex_unlock(&fs->mu);
	return r;
}

void mf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)fi;
	struct stat st;
	int r = ino_attr(fs, ino, &st);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, ino < INO_FIRST_KEY ? layout_attr_timeout(fs, layout_find(ino))
		                                               : fs->timeout);
}

/* chmod/chown: the store keeps no permissions.  Setting what is already
 * there succeeds (cp -p, sed -i do that); anything else is refused (true),
 * and logged. */
static bool perm_change_refused(mf_fs *fs, fuse_ino_t ino, const struct stat *attr, int to_set,
                                const struct stat *cur)
{
	if (!((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & 07777) != (cur->st_mode & 07777)) &&
	    !((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != cur->st_uid) &&
	    !((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != cur->st_gid))
		return false;
	char kn[KEY_NAME_MAX] = "(fixed tree)";
	pthread_mutex_lock(&fs->mu);
	node *pn = ino >= INO_FIRST_KEY ? by_ino(fs, ino) : NULL;
	if (pn)
		key_name(kn, sizeof kn, pn->type, mf_slice_ptr(pn->key), pn->key.len);
	pthread_mutex_unlock(&fs->mu);
	mf_log_warn("chmod/chown of %s refused: permissions are fixed", kn);
	return true;
}

/* ftruncate on a writable handle: part of that handle's value (private
 * until it commits, like its writes). */
static int truncate_handle(mf_fs *fs, handle *h, node *n, uint64_t size)
{
	pthread_mutex_lock(&h->mu);
	int r = handle_make_full(fs, h);
	if (r == 0)
		r = handle_reserve(h, size);
	if (r == 0) {
		if (size > h->size) /* zeros; a known-zero hole stays untouched */
			mf_buf_zero(h->data.buf, h->size, (size_t)(size - h->size));
		handle_resized(h, size);
		h->size = size;
		h->data.len = h->data.buf->used = size;
		h->wrote = true;
		set_dirty(fs, h);
		pthread_mutex_lock(&fs->mu);
		n->dirty_size = size;
		pthread_mutex_unlock(&fs->mu);
	}
	pthread_mutex_unlock(&h->mu);
	return r;
}

/* truncate by name.  Caller holds the name's stripe. */
static int truncate_name(mf_fs *fs, uint8_t type, mf_slice key, uint64_t size)
{
	if (type == MF_T_JSON) {
		/* A cut or padded document is not JSON; truncating to the size
		 * it has is a no-op (rsync --inplace, `truncate -s` to it). */
		mf_entry_info info;
		uint64_t have = mf_kv_get(&fs->kv, mf_slice_ptr(key), key.len, false, &info) == 0
		                    ? info.size : 0; /* pending: empty so far */
		return size == have ? 0 : -EINVAL;
	}
	mf_op op = key_op(MF_OP_TRUNCATE, type, mf_slice_ptr(key), key.len);
	op.arg = size;
	int r = commit(fs, &op);
	mf_op_clear(&op);
	return r;
}

/* utimens by name.  Caller holds the name's stripe. */
static int settime_name(mf_fs *fs, node *n, mf_slice key, const struct stat *attr, int to_set)
{
	mf_op op = key_op(MF_OP_SETTIME, n->type, mf_slice_ptr(key), key.len);
	op.time_ns = mf_now_ns();
	op.arg = (to_set & FUSE_SET_ATTR_MTIME_NOW)
	             ? (uint64_t)op.time_ns
	             : (uint64_t)(attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec);
	/* With uncommitted writes (cp -p, tar x, mv: write, futimens,
	 * close), their commit would stamp its own time over this one,
	 * and a new JSON document is not even in the store yet (ENOENT):
	 * keep the time on the node, shown by stat at once and logged
	 * when the last dirty handle has committed (settime_deferred). */
	pthread_mutex_lock(&fs->mu);
	bool defer = n->ndirty > 0;
	if (defer) {
		n->has_set_mtime = true;
		n->set_mtime = n->dirty_mtime = (int64_t)op.arg;
	}
	pthread_mutex_unlock(&fs->mu);
	int r = defer ? 0 : commit(fs, &op);
	mf_op_clear(&op);
	return r;
}

/* Size and time changes by name, ordered against unlink/rename of the name
 * like every commit by name: a `touch` racing `rm` cannot bring the key
 * back.  (A change by name of an orphan without a handle is unobservable:
 * nothing to do.) */
static int setattr_name(mf_fs *fs, node *n, const struct stat *attr, int to_set)
{
	pthread_mutex_t *m = name_lock(fs, n);
	if (!m)
		return 0;
	pthread_mutex_lock(&fs->mu);
	mf_slice key = mf_slice_ref(n->key);
	pthread_mutex_unlock(&fs->mu);
	name_drain(fs, n->type, mf_slice_ptr(key), key.len);
	int r = materialize(fs, n->type, mf_slice_ptr(key), key.len);
	if (r == 0 && (to_set & FUSE_SET_ATTR_SIZE))
		r = truncate_name(fs, n->type, key, (uint64_t)attr->st_size);
	if (r == 0 && (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)))
		r = settime_name(fs, n, key, attr, to_set);
	pthread_mutex_unlock(m);
	mf_slice_unref(&key);
	return r;
}

/* setattr of a key file: a size change through a writable handle stays in
 * that handle; by name (truncate, utimens) it is committed at once. */
static int setattr_key(mf_fs *fs, node *n, const struct stat *attr, int to_set, handle *h)
{
	bool by_handle = (to_set & FUSE_SET_ATTR_SIZE) && h && (h->flags & O_ACCMODE) != O_RDONLY;
	uint64_t size = (uint64_t)attr->st_size;
	if ((to_set & FUSE_SET_ATTR_SIZE) && size > MF_VALUE_MAX)
		return -EFBIG;
	if ((to_set & FUSE_SET_ATTR_SIZE) && lines_type(n->type) && size != 0)
		return -EINVAL;
	if (by_handle) {
		int r = truncate_handle(fs, h, n, size);
		if (r)
			return r;
	}
	if ((to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) ||
	    ((to_set & FUSE_SET_ATTR_SIZE) && !by_handle))
		return setattr_name(fs, n, attr, to_set);
	return 0;
}

/* chmod/chown/atime of a key file, ordered by name like truncate and
 * utimens; a created key not yet committed keeps mode and owner for its
 * first record. */
static int setattr_perm_key(mf_fs *fs, fuse_req_t req, node *n, const struct stat *attr,
                            int to_set, const struct stat *cur)
{
	pthread_mutex_t *m = name_lock(fs, n);
	if (!m)
		return 0; /* unlinked: nobody can see its mode any more */
	pthread_mutex_lock(&fs->mu);
	mf_slice key = mf_slice_ref(n->key);
	bool pending = n->pending;
	pthread_mutex_unlock(&fs->mu);
	int r;
	if (pending) {
		r = setattr_perm_pending(fs, req, n, attr, to_set, cur);
	} else {
		name_drain(fs, n->type, mf_slice_ptr(key), key.len);
		r = materialize(fs, n->type, mf_slice_ptr(key), key.len);
		if (r == 0)
			r = setattr_perm(fs, req, n, attr, to_set, cur);
	}
	pthread_mutex_unlock(m);
	mf_slice_unref(&key);
	return r;
}

void mf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	struct stat cur;
	int r = ino_attr(fs, ino, &cur);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	if (ino < INO_FIRST_KEY) {
		if (perm_change_refused(fs, ino, attr, to_set, &cur))
			fuse_reply_err(req, EPERM);
		else
			fuse_reply_attr(req, &cur, fs->timeout);
		return;
	}
	pthread_mutex_lock(&fs->mu);
	node *n = by_ino(fs, ino);
	uint8_t type = n ? n->type : 0;
	if (n)
		n->busy++; /* not freed while we commit for it */
	pthread_mutex_unlock(&fs->mu);
	if (!n || (!key_type(type) && type != NODE_FOLDER && type != NODE_LINK)) {
		r = n ? -EPERM : -ENOENT; /* /.ctl nodes */
	} else if ((type == NODE_FOLDER || type == NODE_LINK) && (to_set & FUSE_SET_ATTR_SIZE)) {
		r = type == NODE_FOLDER ? -EISDIR : -EINVAL;
	} else if (type == NODE_FOLDER || type == NODE_LINK) {
		r = setattr_perm(fs, req, n, attr, to_set, &cur);
	} else {
		r = setattr_key(fs, n, attr, to_set, fi ? fh(fi) : NULL);
		if (r == 0 && (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID |
		                         FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)))
			r = setattr_perm_key(fs, req, n, attr, to_set, &cur);
	}
	if (n) {
		pthread_mutex_lock(&fs->mu);
		n->busy--;
		node_maybe_free(fs, n);
		pthread_mutex_unlock(&fs->mu);
	}
	if (r == 0)
		r = ino_attr(fs, ino, &cur);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &cur, fs->timeout);
}

void mf_statfs(fuse_req_t req, fuse_ino_t ino)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)ino;
	mf_store_stats ss;
	mf_kv_stats(&fs->kv, &ss);
	struct statvfs sv = {0};
	long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
	long psz = sysconf(_SC_PAGESIZE);
	sv.f_bsize = sv.f_frsize = 4096;
	/* Capacity is memory: total RAM is the size.  df's Used is size minus
	 * free blocks, so free = size - what the store holds (the bytes of all
	 * values): Used then follows the data, not whatever else the machine
	 * runs.  Available is bounded by the RAM actually free as well.
	 * Inodes: keys in use, no fixed limit. */
	sv.f_blocks = (fsblkcnt_t)pages * (fsblkcnt_t)psz / 4096;
	uint64_t limit = 0;
	mf_kv_memory(&fs->kv, &limit);
	if (limit) /* --max-memory: the limit is the size */
		sv.f_blocks = limit / 4096;
	fsblkcnt_t used = (ss.value_bytes + 4095) / 4096;
	if (used > sv.f_blocks)
		used = sv.f_blocks;
	sv.f_bfree = sv.f_blocks - used;
	fsblkcnt_t ramfree = (fsblkcnt_t)avail * (fsblkcnt_t)psz / 4096;
	sv.f_bavail = ramfree < sv.f_bfree ? ramfree : sv.f_bfree;
	sv.f_files = ss.keys[0] + 1000000;
	sv.f_ffree = sv.f_favail = 1000000;
	sv.f_namemax = MF_KEY_MAX;
	fuse_reply_statfs(req, &sv);
}
