/*
 * cache.c — the kernel cache policy: how opens use the page cache, invalidation.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* Tell the kernel a node's cached attributes and pages may be stale.
 * Called only outside the kernel's locked paths for that inode (flush,
 * release, fsync, xattr, pop) — see the deadlock note in fuse_lowlevel.h. */
void invalidate(mf_fs *fs, fuse_ino_t ino)
{
	if (fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
}

void invalidate_key(mf_fs *fs, uint8_t type, const char *k, size_t klen)
{
	pthread_mutex_lock(&fs->mu);
	node *n = *name_slot(fs, type, k, klen);
	fuse_ino_t ino = n ? n->ino : 0;
	pthread_mutex_unlock(&fs->mu);
	if (ino)
		invalidate(fs, ino);
}

/* ---------- kernel cache policy ----------
 *
 * The kernel keeps ONE page cache and ONE cached size per inode, shared by
 * every handle, while a handle here sees a private view (a committed version
 * it pinned, then its own writes until it commits).  A page filled for one
 * handle, or a size raised by one writer's write, shows another handle
 * bytes that were never committed, zeros past the committed end (the kernel
 * zero-fills a short page read), or a mix of two versions; a reader that
 * opened before a writer cannot be protected from that writer's size.  So
 * every open of a key file is direct_io: each read returns exactly the
 * handle's view.  The price is read speed (no keep_cache: every read is a
 * request) and MAP_SHARED mmap (ENODEV: libfuse 3.14 cannot ask the kernel
 * for direct-I/O mmap); MAP_PRIVATE works.  Attributes are still cached
 * for the entry/attr timeout and invalidated on commit.  Found by testing:
 * with a cold-key page cache, a reader racing a writer's commit read NULs
 * from offset 0 and mixed versions (test_integrity.py).
 */
void cache_open(struct fuse_file_info *fi)
{
	fi->direct_io = 1;
}

/* ---------- changes made outside the mount (RESP) ----------
 *
 * Called by the RESP server's threads after a commit (db change hook), never
 * from a FUSE request handler: the kernel's notify handling takes the
 * directory's and inode's locks, which a handler of that same directory or
 * inode may hold while it waits for us.  No lock of ours is held while
 * notifying.  Drops the kernel's cached dentry (so `ls`/lookup see a new or
 * deleted key at once) and the inode's cached attributes and pages (so
 * `cat`/`stat` see the new value). */
/* A /kv key below a folder changed over RESP: its node's caches (ntype:
 * a file's, folder's, link's or special file's), its name in its folder
 * (if the kernel knows that folder), and the name of its top folder in
 * /kv (a RESP SET can make implicit folders appear, a DEL make them go).
 * Same context rules as mf_fs_key_changed. */
static void kv_path_changed(mf_fs *fs, uint8_t ntype, const char *key, size_t len)
{
	const char *sl = memrchr(key, '/', len), *top = memchr(key, '/', len);
	size_t plen = (size_t)(sl - key);
	pthread_mutex_lock(&fs->mu);
	node *n = *name_slot(fs, ntype, key, len);
	node *p = *name_slot(fs, NODE_FOLDER, key, plen);
	fuse_ino_t ino = n ? n->ino : 0, pino = p ? p->ino : 0;
	pthread_mutex_unlock(&fs->mu);
	if (ino)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
	char name[MF_KEY_MAX + 1];
	if (pino) {
		size_t l = len - plen - 1;
		memcpy(name, sl + 1, l);
		name[l] = '\0';
		fuse_lowlevel_notify_inval_entry(fs->se, pino, name, l);
	}
	size_t tl = (size_t)(top - key);
	memcpy(name, key, tl);
	name[tl] = '\0';
	fuse_lowlevel_notify_inval_entry(fs->se, INO_KV, name, tl);
}

void mf_fs_key_changed(mf_fs *fs, int type, const void *key, size_t len)
{
	struct fuse_session *se = fs->se;
	if (!se)
		return;
	static const fuse_ino_t parent[] = {
		[MF_T_STRING] = INO_KV, [MF_T_JSON] = INO_JSON, [MF_T_LIST] = INO_LISTS,
		[MF_T_SET] = INO_SETS};
	if (type == MF_T_NONE) {
		/* FLUSHDB: every name the kernel may have cached. */
		pthread_mutex_lock(&fs->mu);
		size_t n = 0, cap = fs->nnodes + 1;
		node **all = malloc(cap * sizeof *all);
		for (size_t b = 0; all && b < fs->nbuckets; b++)
			for (node *x = fs->names[b]; x; x = x->name_next)
				if (key_type(x->type) && n < cap) {
					x->busy++; /* keep it (and its key) until we are done */
					all[n++] = x;
				}
		pthread_mutex_unlock(&fs->mu);
		for (size_t i = 0; i < n; i++) {
			/* libfuse sends the name with its NUL: copy it out. */
			char nm[MF_KEY_MAX + 1];
			size_t l = all[i]->key.len > MF_KEY_MAX ? MF_KEY_MAX : all[i]->key.len;
			memcpy(nm, mf_slice_ptr(all[i]->key), l);
			nm[l] = '\0';
			fuse_lowlevel_notify_inval_inode(se, all[i]->ino, 0, 0);
			fuse_lowlevel_notify_inval_entry(se, parent[all[i]->type], nm, l);
		}
		pthread_mutex_lock(&fs->mu);
		for (size_t i = 0; i < n; i++) {
			all[i]->busy--;
			node_maybe_free(fs, all[i]);
		}
		pthread_mutex_unlock(&fs->mu);
		free(all);
		return;
	}
	/* A folder, symlink or special file (made through the mount, DEL'd
	 * over RESP) has its own node type, and its name is in /kv. */
	uint8_t tree_nt = type == MF_T_STRING ? 0 : kv_node_type(type);
	if ((type == MF_T_STRING || tree_nt) && !mf_key_is_filename(key, len) &&
	    mf_tree_key(key, len)) {
		kv_path_changed(fs, tree_nt ? tree_nt : MF_T_STRING, key, len);
		return;
	}
	if ((!key_type((uint8_t)type) && !tree_nt) || !mf_key_is_filename(key, len))
		return; /* no file name can hold it: the mount never showed it */
	pthread_mutex_lock(&fs->mu);
	node *n = *name_slot(fs, tree_nt ? tree_nt : (uint8_t)type, key, len);
	fuse_ino_t ino = n ? n->ino : 0;
	pthread_mutex_unlock(&fs->mu);
	if (ino)
		fuse_lowlevel_notify_inval_inode(se, ino, 0, 0);
	/* Even without a node: a failed lookup leaves a negative dentry (the
	 * entry timeout), which would hide a key RESP just created. */
	char name[MF_KEY_MAX + 1];
	memcpy(name, key, len);
	name[len] = '\0';
	fuse_lowlevel_notify_inval_entry(se, tree_nt ? INO_KV : parent[type], name, len);
}
