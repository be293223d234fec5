/*
 * tree.c — folders, symlinks, special files and attributes in /kv: names
 * to keys, mkdir, rmdir, symlink, readlink, mknod, folder rename,
 * chmod/chown/utimens as SETATTR, and the creator's attributes on a new
 * key's first record.
 * Shared types, the lock order and every prototype: fs_int.h.
 *
 * /kv/a/b/c is the key "a/b/c": a folder node's key is its path, and a
 * name below it is "<path>/<name>".  The store keeps the tree (store.h:
 * the child index, the tree rules); this file only translates.
 *
 * Locking: fs->mu for the node table only, as everywhere.  A folder
 * rename holds the name stripes of every file node the kernel knows below
 * it (in stripe order, the order rename uses too) across its RENAMEDIR and
 * the renaming of those nodes: a handle's commit, which reads its name and
 * enqueues under its stripe (commit.c), then either lands before the
 * RENAMEDIR (log order: it moves with the folder) or reads the new name.
 */
#include "fs_int.h"

/* mknod passes the kernel's S_IF* bits to the store as they are. */
_Static_assert(S_IFIFO == MF_SPECIAL_FIFO && S_IFCHR == MF_SPECIAL_CHR &&
                   S_IFBLK == MF_SPECIAL_BLK && S_IFSOCK == MF_SPECIAL_SOCK,
               "the special value numbers file types as this system does");

/* ---------- names to keys ---------- */

bool kv_folder(mf_fs *fs, fuse_ino_t dir, mf_slice *prefix)
{
	*prefix = MF_SLICE_EMPTY;
	if (dir == INO_KV)
		return true;
	if (dir < INO_FIRST_KEY)
		return false;
	pthread_mutex_lock(&fs->mu);
	node *n = by_ino(fs, dir);
	bool folder = n && n->type == NODE_FOLDER && n->named;
	if (folder)
		*prefix = mf_slice_ref(n->key);
	pthread_mutex_unlock(&fs->mu);
	return folder;
}

int name_key(mf_fs *fs, fuse_ino_t parent, const char *name, uint8_t *type, char **key,
             size_t *klen)
{
	size_t len = strlen(name);
	if (len > MF_KEY_MAX)
		return -ENAMETOOLONG;
	mf_slice prefix;
	if (kv_folder(fs, parent, &prefix)) {
		*type = MF_T_STRING;
		size_t n = prefix.len ? prefix.len + 1 + len : len;
		if (n > MF_KEY_BYTES_MAX) {
			mf_slice_unref(&prefix);
			return -ENAMETOOLONG;
		}
		*key = mf_xmalloc(n + 1);
		if (prefix.len) {
			memcpy(*key, mf_slice_ptr(prefix), prefix.len);
			(*key)[prefix.len] = '/';
		}
		memcpy(*key + n - len, name, len + 1);
		*klen = n;
		mf_slice_unref(&prefix);
		return 0;
	}
	*type = dir_type(parent);
	*key = mf_xmalloc(len + 1);
	memcpy(*key, name, len + 1);
	*klen = len;
	return 0;
}

uint8_t kv_node_type(int t)
{
	return t == MF_T_STRING ? MF_T_STRING : t == MF_T_FOLDER ? NODE_FOLDER
	       : t == MF_T_SYMLINK ? NODE_LINK : t == MF_T_SPECIAL ? NODE_SPECIAL : 0;
}

uint8_t node_ktype(uint8_t ntype)
{
	return ntype == NODE_FOLDER ? MF_T_FOLDER : ntype == NODE_LINK ? MF_T_SYMLINK
	       : ntype == NODE_SPECIAL ? MF_T_SPECIAL : ntype;
}

/* ---------- attributes ---------- */

/* The store's "default" markers as this mount shows them. */
void kv_attr(mf_fs *fs, const mf_entry_info *in, mode_t dflt, struct stat *st)
{
	st->st_mode = (st->st_mode & S_IFMT) | (in->mode != MF_MODE_DEFAULT ? in->mode : dflt);
	st->st_uid = in->uid == MF_ID_DEFAULT ? fs->uid : in->uid;
	st->st_gid = in->gid == MF_ID_DEFAULT ? fs->gid : in->gid;
	st->st_atim = ns_to_ts(in->atime_ns);
	st->st_mtim = ns_to_ts(in->mtime_ns);
	st->st_ctim = ns_to_ts(in->ctime_ns);
}

/* A special file's st_mode type bits and st_rdev, from its value. */
static int special_attr(const mf_entry_info *in, struct stat *st)
{
	uint32_t fmt;
	uint64_t rdev;
	if (mf_special_decode(mf_slice_ptr(in->val), in->val.len, &fmt, &rdev))
		return -EIO; /* the store checks every value it takes: cannot happen */
	st->st_mode = fmt;
	st->st_rdev = (dev_t)rdev;
	return 0;
}

/* Attributes of a folder, symlink or special file node.  Caller holds
 * fs->mu. */
int tree_node_attr(mf_fs *fs, node *n, struct stat *st)
{
	mf_entry_info in = {0};
	bool special = n->type == NODE_SPECIAL; /* its type is in its value */
	const char *k = mf_slice_ptr(n->key);
	/* (stat, not get, for the rest: an implicit folder has no key) */
	if (!n->named ||
	    (special ? mf_kv_get(&fs->kv, k, n->key.len, true, &in)
	             : mf_kv_stat(&fs->kv, k, n->key.len, &in)) != 0 ||
	    in.type != node_ktype(n->type)) {
		mf_slice_unref(&in.val);
		return -ENOENT;
	}
	memset(st, 0, sizeof *st);
	st->st_ino = n->ino;
	st->st_blksize = 4096;
	if (n->type == NODE_FOLDER) {
		st->st_mode = S_IFDIR;
		st->st_nlink = 2 + in.count; /* ".", its name, each subfolder's ".." */
		kv_attr(fs, &in, 0755, st);
	} else if (special) {
		int r = special_attr(&in, st);
		mf_slice_unref(&in.val);
		if (r)
			return r;
		st->st_nlink = 1;
		kv_attr(fs, &in, 0644, st);
	} else {
		st->st_mode = S_IFLNK;
		st->st_nlink = 1;
		st->st_size = (off_t)in.size;
		kv_attr(fs, &in, 0777, st);
		st->st_mode = S_IFLNK | 0777; /* a link's own mode means nothing */
	}
	return 0;
}

/* /kv itself: its times move when entries come and go (the store's root). */
void kv_root_attr(mf_fs *fs, struct stat *st)
{
	mf_entry_info in = {0};
	if (mf_kv_stat(&fs->kv, "", 0, &in) == 0 && in.mtime_ns) {
		st->st_mtim = st->st_atim = ns_to_ts(in.mtime_ns);
		st->st_ctim = ns_to_ts(in.ctime_ns);
	}
	st->st_nlink = 2 + in.count;
}

/* The attribute block a new key carries: mode 0 and uid/gid MF_ID_DEFAULT
 * where the creator's match the defaults, so the common case logs none. */
mf_attr creator_attr(mf_fs *fs, fuse_req_t req, mode_t mode, mode_t dflt)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	mf_attr a = {MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, 0, 0};
	if ((mode & 07777) != dflt)
		a.mode = mode & 07777;
	if (c->uid != fs->uid)
		a.uid = c->uid;
	if (c->gid != fs->gid)
		a.gid = c->gid;
	return a;
}

bool attr_is_default(const mf_attr *a)
{
	return a->mode == MF_MODE_DEFAULT && a->uid == MF_ID_DEFAULT && a->gid == MF_ID_DEFAULT;
}

/* A pending key's first record with its creator's attributes: CREATE and
 * SET become one MKFILE (the key and its mode appear together, in one
 * record); other ops are logged as they are and followed by a SETATTR
 * (see commit_creator_rest).  *wire: the op to log (op itself, or a new one
 * the caller clears). */
bool creator_op(node *n, const mf_op *op, mf_op *wire)
{
	if (!n->has_cattr || (op->type != MF_OP_CREATE && op->type != MF_OP_SET))
		return false; /* (an atime alone: commit_creator_rest) */
	memset(wire, 0, sizeof *wire);
	wire->type = MF_OP_MKFILE;
	wire->ktype = op->ktype;
	wire->time_ns = op->time_ns;
	wire->arg = op->type == MF_OP_CREATE ? MF_MKFILE_KEEP : 0;
	wire->key = mf_slice_ref(op->key);
	size_t n2 = MF_ATTR_A_LEN + op->val.len;
	wire->val = mf_slice_alloc(n2, n2);
	mf_attr_encode(&n->cattr, wire->val.buf->data, MF_ATTR_A_LEN);
	if (op->val.len)
		memcpy(wire->val.buf->data + MF_ATTR_A_LEN, mf_slice_ptr(op->val), op->val.len);
	return true;
}

/* After a pending key's first record that could not carry the creator's
 * attributes (an O_APPEND creator's APPEND/RPUSH): set them now. */
void commit_creator_rest(mf_fs *fs, node *n, const mf_op *done)
{
	pthread_mutex_lock(&fs->mu);
	bool perms = n->has_cattr && done->type != MF_OP_MKFILE, atime = n->has_catime;
	mf_attr a = n->cattr;
	n->has_cattr = n->has_catime = false;
	pthread_mutex_unlock(&fs->mu);
	if (!perms && !atime)
		return;
	mf_op op = key_op(MF_OP_SETATTR, done->ktype, mf_slice_ptr(done->key), done->key.len);
	op.arg = (atime ? MF_ATTR_ATIME : 0);
	if (perms)
		op.arg |= (a.mode != MF_MODE_DEFAULT ? MF_ATTR_MODE : 0) | (a.uid != MF_ID_DEFAULT ? MF_ATTR_UID : 0) |
		          (a.gid != MF_ID_DEFAULT ? MF_ATTR_GID : 0);
	op.val = mf_slice_alloc(MF_ATTR_B_LEN, MF_ATTR_B_LEN);
	mf_attr_encode(&a, op.val.buf->data, MF_ATTR_B_LEN);
	int r = commit(fs, &op);
	if (r)
		log_err("setting the creator's mode failed for", MF_T_STRING, mf_slice_ptr(op.key),
		        op.key.len, -r);
	mf_op_clear(&op);
}

/* chmod, chown, and the atime of utimens: one SETATTR.  POSIX: only root
 * changes the owner, and the group only to one of the caller's (the kernel
 * checks that with default_permissions; this is the check without it). */
static int perm_change(mf_fs *fs, fuse_req_t req, node *n, const struct stat *attr, int to_set,
                       const struct stat *cur, uint64_t *maskp, mf_attr *ap)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	uint64_t mask = 0;
	mf_attr a = {MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, 0, 0};
	if ((to_set & FUSE_SET_ATTR_MODE) && n->type != NODE_LINK) {
		mask |= MF_ATTR_MODE;
		a.mode = attr->st_mode & 07777;
	}
	if ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != cur->st_uid) {
		if (c->uid != 0)
			return -EPERM;
		mask |= MF_ATTR_UID;
		a.uid = attr->st_uid == fs->uid ? MF_ID_DEFAULT : attr->st_uid;
	}
	if ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != cur->st_gid) {
		if (c->uid != 0 && c->uid != cur->st_uid)
			return -EPERM;
		mask |= MF_ATTR_GID;
		a.gid = attr->st_gid == fs->gid ? MF_ID_DEFAULT : attr->st_gid;
	}
	*maskp = mask;
	*ap = a;
	return 0;
}

/* chmod/chown of a created key whose first record is still to come: kept
 * on the node for that record (rsync and cp -a fchmod the file they just
 * created; the key then appears with its final mode in one record). */
int setattr_perm_pending(mf_fs *fs, fuse_req_t req, node *n, const struct stat *attr,
                         int to_set, const struct stat *cur)
{
	uint64_t mask;
	mf_attr a;
	int r = perm_change(fs, req, n, attr, to_set, cur, &mask, &a);
	if (r)
		return r;
	pthread_mutex_lock(&fs->mu);
	if (!n->has_cattr)
		n->cattr = (mf_attr){MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, 0, 0};
	if (mask & MF_ATTR_MODE)
		n->cattr.mode = a.mode == 0644 ? MF_MODE_DEFAULT : a.mode;
	if (mask & MF_ATTR_UID)
		n->cattr.uid = a.uid;
	if (mask & MF_ATTR_GID)
		n->cattr.gid = a.gid;
	n->has_cattr = !attr_is_default(&n->cattr);
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		n->has_catime = true;
		n->cattr.atime_ns = (to_set & FUSE_SET_ATTR_ATIME_NOW)
		                        ? mf_now_ns()
		                        : attr->st_atim.tv_sec * 1000000000LL + attr->st_atim.tv_nsec;
	}
	pthread_mutex_unlock(&fs->mu);
	return 0;
}

int setattr_perm(mf_fs *fs, fuse_req_t req, node *n, const struct stat *attr, int to_set,
                 const struct stat *cur)
{
	uint64_t mask;
	mf_attr a;
	int r = perm_change(fs, req, n, attr, to_set, cur, &mask, &a);
	if (r)
		return r;
	mf_op op = key_op(MF_OP_SETATTR, node_ktype(n->type), mf_slice_ptr(n->key), n->key.len);
	op.time_ns = mf_now_ns();
	if (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW)) {
		mask |= MF_ATTR_ATIME;
		a.atime_ns = (to_set & FUSE_SET_ATTR_ATIME_NOW)
		                 ? op.time_ns
		                 : attr->st_atim.tv_sec * 1000000000LL + attr->st_atim.tv_nsec;
	}
	/* Folders and links have no handles: their mtime goes in the same op
	 * (files keep the deferral of settime_name). */
	if (n->type != MF_T_STRING && n->type != MF_T_JSON && n->type != MF_T_LIST &&
	    (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW))) {
		mask |= MF_ATTR_MTIME;
		a.mtime_ns = (to_set & FUSE_SET_ATTR_MTIME_NOW)
		                 ? op.time_ns
		                 : attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec;
	}
	if (mask) {
		op.arg = mask;
		op.val = mf_slice_alloc(MF_ATTR_B_LEN, MF_ATTR_B_LEN);
		mf_attr_encode(&a, op.val.buf->data, MF_ATTR_B_LEN);
		r = commit(fs, &op);
	}
	mf_op_clear(&op);
	return r;
}

/* A write by a user without CAP_FSETID (not root) clears the file's
 * set-user-ID bit, and its set-group-ID bit when group-executable (POSIX;
 * with FUSE_CAP_HANDLE_KILLPRIV on, the kernel leaves this to us, and its
 * direct-I/O path would not do it anyway).  Once per handle. */
void kill_privs(mf_fs *fs, fuse_req_t req, handle *h)
{
	if (fuse_req_ctx(req)->uid == 0 || atomic_exchange(&h->privs_checked, true))
		return;
	pthread_mutex_lock(&fs->mu);
	node *n = h->n;
	bool named = n->named && !n->pending && n->type == MF_T_STRING;
	mf_slice key = named ? mf_slice_ref(n->key) : MF_SLICE_EMPTY;
	pthread_mutex_unlock(&fs->mu);
	mf_entry_info in;
	if (!named || mf_kv_stat(&fs->kv, mf_slice_ptr(key), key.len, &in) != 0 ||
	    in.mode == MF_MODE_DEFAULT) {
		mf_slice_unref(&key);
		return;
	}
	uint32_t kill = (in.mode & S_ISUID) | ((in.mode & S_IXGRP) ? (in.mode & S_ISGID) : 0);
	if (kill) {
		mf_attr a = {in.mode & ~kill, MF_ID_DEFAULT, MF_ID_DEFAULT, 0, 0};
		mf_op op = key_op(MF_OP_SETATTR, MF_T_STRING, mf_slice_ptr(key), key.len);
		op.arg = MF_ATTR_MODE;
		op.val = mf_slice_alloc(MF_ATTR_B_LEN, MF_ATTR_B_LEN);
		mf_attr_encode(&a, op.val.buf->data, MF_ATTR_B_LEN);
		int r = commit(fs, &op);
		if (r)
			log_err("clearing set-user-ID bits failed for", MF_T_STRING, mf_slice_ptr(key),
			        key.len, -r);
		mf_op_clear(&op);
	}
	mf_slice_unref(&key);
}

/* ---------- namespace ops ---------- */

/* Reply to mkdir/symlink with the new name's node. */
static void reply_new(fuse_req_t req, uint8_t ntype, const char *key, size_t klen)
{
	mf_fs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;
	fill_entry(fs, &e, 0);
	reply_node_entry(req, ntype, key, klen, &e);
}

/* A name in a /kv folder, or the errno for a name elsewhere. */
static int kv_name(fuse_req_t req, fuse_ino_t parent, const char *name, const char *what,
                   char **key, size_t *klen)
{
	mf_fs *fs = fuse_req_userdata(req);
	uint8_t type;
	int r = name_key(fs, parent, name, &type, key, klen);
	if (r)
		return r;
	mf_slice prefix;
	bool kv = kv_folder(fs, parent, &prefix);
	mf_slice_unref(&prefix);
	if (kv)
		return 0;
	char kn[KEY_NAME_MAX];
	mf_log_warn("%s %s refused: only /kv has folders and symlinks", what,
	            key_name(kn, sizeof kn, type, *key, *klen));
	free(*key);
	*key = NULL;
	return dir_type(parent) == MF_T_NONE && parent != INO_ROOT && parent != INO_CTL ? -ENOENT
	                                                                              : -EPERM;
}

void mf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	mf_fs *fs = fuse_req_userdata(req);
	char *key;
	size_t klen;
	int r = kv_name(req, parent, name, "mkdir", &key, &klen);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	mf_attr a = creator_attr(fs, req, mode, 0755);
	mf_op op = key_op(MF_OP_MKDIR, MF_T_FOLDER, key, klen);
	if (!attr_is_default(&a)) {
		op.val = mf_slice_alloc(MF_ATTR_A_LEN, MF_ATTR_A_LEN);
		mf_attr_encode(&a, op.val.buf->data, MF_ATTR_A_LEN);
	}
	r = commit(fs, &op);
	mf_op_clear(&op);
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_new(req, NODE_FOLDER, key, klen);
	free(key);
}

void mf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	mf_fs *fs = fuse_req_userdata(req);
	char *key;
	size_t klen;
	int r = kv_name(req, parent, name, "symlink", &key, &klen);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	size_t tl = strlen(link);
	if (tl == 0 || tl > MF_SYMLINK_MAX) {
		free(key);
		fuse_reply_err(req, tl ? ENAMETOOLONG : ENOENT);
		return;
	}
	mf_attr a = creator_attr(fs, req, 0, 0);
	mf_op op = key_op(MF_OP_SYMLINK, MF_T_SYMLINK, key, klen);
	op.val = mf_slice_alloc(MF_ATTR_A_LEN + tl, MF_ATTR_A_LEN + tl);
	mf_attr_encode(&a, op.val.buf->data, MF_ATTR_A_LEN);
	memcpy(op.val.buf->data + MF_ATTR_A_LEN, link, tl);
	r = commit(fs, &op);
	mf_op_clear(&op);
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_new(req, NODE_LINK, key, klen);
	free(key);
}

void mf_readlink(fuse_req_t req, fuse_ino_t ino)
{
	mf_fs *fs = fuse_req_userdata(req);
	pthread_mutex_lock(&fs->mu);
	node *n = by_ino(fs, ino);
	mf_slice key = n && n->type == NODE_LINK && n->named ? mf_slice_ref(n->key) : MF_SLICE_EMPTY;
	pthread_mutex_unlock(&fs->mu);
	mf_entry_info in = {0};
	int r = key.len ? mf_kv_get(&fs->kv, mf_slice_ptr(key), key.len, true, &in) : -EINVAL;
	if (r == 0 && in.type != MF_T_SYMLINK)
		r = -EINVAL;
	mf_slice_unref(&key);
	if (r) {
		mf_slice_unref(&in.val);
		fuse_reply_err(req, -r);
		return;
	}
	char *t = mf_xmalloc(in.val.len + 1);
	memcpy(t, mf_slice_ptr(in.val), in.val.len);
	t[in.val.len] = '\0';
	mf_slice_unref(&in.val);
	fuse_reply_readlink(req, t);
	free(t);
}

/* The node of a removed or renamed name loses it. */
static void drop_name(mf_fs *fs, uint8_t ntype, const char *key, size_t klen)
{
	pthread_mutex_lock(&fs->mu);
	node *n = *name_slot(fs, ntype, key, klen);
	if (n)
		name_unlink(fs, n);
	pthread_mutex_unlock(&fs->mu);
}

void mf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mf_fs *fs = fuse_req_userdata(req);
	char *key;
	size_t klen;
	int r = kv_name(req, parent, name, "rmdir", &key, &klen);
	if (r) {
		fuse_reply_err(req, r == -EPERM ? ENOTDIR : -r);
		return;
	}
	mf_op op = key_op(MF_OP_RMDIR, MF_T_FOLDER, key, klen);
	r = commit(fs, &op);
	mf_op_clear(&op);
	if (r == 0)
		drop_name(fs, NODE_FOLDER, key, klen);
	free(key);
	fuse_reply_err(req, -r);
}

/* unlink of a symlink or special file (files: names.c); -ENOENT if key
 * is neither. */
int unlink_tree_file(mf_fs *fs, const char *key, size_t klen)
{
	mf_entry_info in;
	int r = mf_kv_stat(&fs->kv, key, klen, &in);
	if (r == 0 && in.type == MF_T_FOLDER)
		return -EISDIR;
	if (r || (in.type != MF_T_SYMLINK && in.type != MF_T_SPECIAL))
		return -ENOENT;
	mf_op op = key_op(MF_OP_DEL, in.type, key, klen);
	r = commit(fs, &op);
	mf_op_clear(&op);
	if (r == 0)
		drop_name(fs, kv_node_type(in.type), key, klen);
	return r;
}

/* The node table after a folder moved from `from` to `to`: the folder's
 * node and every node below it take their new names (a scan of the nodes
 * the kernel knows, not of the keyspace).  Caller holds fs->mu. */
static void rename_subtree_nodes(mf_fs *fs, const char *from, size_t flen, const char *to,
                                 size_t tlen)
{
	size_t cap = 16, n = 0;
	node **moved = mf_xmalloc(cap * sizeof *moved);
	for (size_t b = 0; b < fs->nbuckets; b++)
		for (node *x = fs->inos[b]; x; x = x->ino_next) {
			if (!x->named || (x->type != MF_T_STRING && !tree_node(x->type)))
				continue;
			const char *k = mf_slice_ptr(x->key);
			bool in = x->key.len >= flen && memcmp(k, from, flen) == 0 &&
			          (x->key.len == flen || k[flen] == '/');
			if (!in)
				continue;
			if (n == cap)
				moved = mf_xrealloc(moved, (cap *= 2) * sizeof *moved);
			moved[n++] = x;
		}
	for (size_t i = 0; i < n; i++)
		name_unlink(fs, moved[i]);
	for (size_t i = 0; i < n; i++) {
		node *x = moved[i];
		size_t nl = tlen + x->key.len - flen;
		mf_slice k = mf_slice_alloc(nl, nl);
		memcpy(k.buf->data, to, tlen);
		memcpy(k.buf->data + tlen, mf_slice_ptr(x->key) + flen, x->key.len - flen);
		mf_slice_unref(&x->key);
		x->key = k;
		node **pp = name_slot(fs, x->type, mf_slice_ptr(k), nl);
		if (*pp) /* a stale node of the (empty) folder replaced */
			name_unlink(fs, *pp);
		pp = name_slot(fs, x->type, mf_slice_ptr(k), nl);
		x->name_next = *pp;
		*pp = x;
		x->named = true;
	}
	free(moved);
}

/* Lock the stripes of the file nodes below folder `from` (each stripe
 * once, in index order = address order); returns how many are held. */
static size_t lock_below(mf_fs *fs, const char *from, size_t flen, pthread_mutex_t **held)
{
	bool want[NSTRIPES] = {0};
	pthread_mutex_lock(&fs->mu);
	for (size_t b = 0; b < fs->nbuckets; b++)
		for (node *x = fs->inos[b]; x; x = x->ino_next) {
			const char *k = mf_slice_ptr(x->key);
			if (x->named && x->type == MF_T_STRING && x->key.len > flen &&
			    k[flen] == '/' && memcmp(k, from, flen) == 0)
				want[name_hash(x->type, k, x->key.len) % NSTRIPES] = true;
		}
	pthread_mutex_unlock(&fs->mu);
	size_t n = 0;
	for (size_t i = 0; i < NSTRIPES; i++)
		if (want[i]) {
			pthread_mutex_lock(&fs->stripes[i]);
			held[n++] = &fs->stripes[i];
		}
	return n;
}

/* rename of a folder, symlink or special file (files: names.c).  The
 * folder's subtree moves in one RENAMEDIR record; then the known nodes
 * follow.  Handles of files below commit under their new names from then
 * on.  -ENOENT if from is none of them. */
int rename_tree(mf_fs *fs, const char *from, size_t flen, const char *to, size_t tlen,
                unsigned int flags)
{
	mf_entry_info in, tin;
	int r = mf_kv_stat(&fs->kv, from, flen, &in);
	if (r || (in.type != MF_T_FOLDER && in.type != MF_T_SYMLINK && in.type != MF_T_SPECIAL))
		return -ENOENT;
	bool target = mf_kv_stat(&fs->kv, to, tlen, &tin) == 0;
	if (target && (flags & RENAME_NOREPLACE))
		return -EEXIST;
	if (target && in.type != MF_T_FOLDER && tin.type == MF_T_FOLDER)
		return -EISDIR;
	pthread_mutex_t *held[NSTRIPES];
	size_t nheld = in.type == MF_T_FOLDER ? lock_below(fs, from, flen, held) : 0;
	mf_op op = key_op(in.type == MF_T_FOLDER ? MF_OP_RENAMEDIR : MF_OP_RENAME, in.type, from,
	                  flen);
	op.key2 = mf_slice_from(to, tlen, tlen);
	r = commit(fs, &op);
	mf_op_clear(&op);
	if (r == 0) {
		pthread_mutex_lock(&fs->mu);
		if (target) {
			node *t = *name_slot(fs, kv_node_type(tin.type), to, tlen);
			if (t)
				name_unlink(fs, t);
		}
		if (in.type == MF_T_FOLDER) {
			rename_subtree_nodes(fs, from, flen, to, tlen);
		} else {
			uint8_t nt = kv_node_type(in.type);
			node *s = *name_slot(fs, nt, from, flen);
			if (s) {
				name_unlink(fs, s);
				mf_slice_unref(&s->key);
				s->key = mf_slice_from(to, tlen, tlen);
				node **pp = name_slot(fs, nt, to, tlen);
				s->name_next = *pp;
				*pp = s;
				s->named = true;
			}
		}
		pthread_mutex_unlock(&fs->mu);
	}
	while (nheld)
		pthread_mutex_unlock(held[--nheld]);
	return r;
}

/* Hard links: a key has one name (documented; EPERM as on filesystems
 * without them). */
void mf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	(void)ino;
	char kn[KEY_NAME_MAX];
	mf_log_warn("link %s refused: a key has one name",
	            key_name(kn, sizeof kn, dir_type(newparent), newname, strlen(newname)));
	fuse_reply_err(req, EPERM);
}

/* The device number mknod stores: none for a fifo or socket (POSIX
 * ignores the argument for them). */
static uint64_t special_rdev(uint32_t fmt, dev_t rdev)
{
	return fmt == MF_SPECIAL_CHR || fmt == MF_SPECIAL_BLK ? (uint64_t)rdev : 0;
}

/* mknod of a fifo, socket or device node in /kv: one MKNOD record with the
 * creator's attributes.  Regular files come by create (the kernel sends
 * mknod(S_IFREG) there); device nodes need root, as POSIX has it (the
 * kernel checks CAP_MKNOD too; this is the check without it). */
void mf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	mf_fs *fs = fuse_req_userdata(req);
	uint32_t fmt = mode & S_IFMT;
	bool dev = fmt == S_IFCHR || fmt == S_IFBLK;
	if (!dev && fmt != S_IFIFO && fmt != S_IFSOCK) {
		char kn[KEY_NAME_MAX];
		mf_log_warn("mknod %s (mode %o) refused: not a fifo, socket or device",
		            key_name(kn, sizeof kn, dir_type(parent), name, strlen(name)), mode);
		fuse_reply_err(req, EPERM);
		return;
	}
	if (dev && fuse_req_ctx(req)->uid != 0) {
		fuse_reply_err(req, EPERM);
		return;
	}
	char *key;
	size_t klen;
	int r = kv_name(req, parent, name, "mknod", &key, &klen);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	mf_attr a = creator_attr(fs, req, mode, 0644);
	mf_op op = key_op(MF_OP_MKNOD, MF_T_SPECIAL, key, klen);
	op.val = mf_slice_alloc(MF_ATTR_A_LEN + MF_SPECIAL_LEN, MF_ATTR_A_LEN + MF_SPECIAL_LEN);
	mf_attr_encode(&a, op.val.buf->data, MF_ATTR_A_LEN);
	mf_special_encode(fmt, special_rdev(fmt, rdev), op.val.buf->data + MF_ATTR_A_LEN);
	r = commit(fs, &op);
	mf_op_clear(&op);
	if (r)
		fuse_reply_err(req, -r);
	else
		reply_new(req, NODE_SPECIAL, key, klen);
	free(key);
}
