/*
 * lookup.c — lookup: the fixed tree and key names to nodes.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* ---------- lookup / attrs ---------- */

void fill_entry(mf_fs *fs, struct fuse_entry_param *e, fuse_ino_t ino)
{
	memset(e, 0, sizeof *e);
	e->ino = ino;
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
}

/* Reply to a lookup with the node for (type, key), taking a lookup
 * reference on it; e carries the timeouts to use. */
void reply_node_entry(fuse_req_t req, uint8_t type, const char *k, size_t len,
                      struct fuse_entry_param *e)
{
	mf_fs *fs = fuse_req_userdata(req);
	pthread_mutex_lock(&fs->mu);
	node *n = node_get(fs, type, k, len);
	int r = n ? node_attr(fs, n, &e->attr) : -ENOMEM;
	if (r == 0) {
		n->nlookup++;
		e->ino = n->ino;
	} else if (n) {
		node_maybe_free(fs, n);
	}
	pthread_mutex_unlock(&fs->mu);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, e);
}

/* A name in /kv or a /kv folder: a file, folder or symlink; keys of
 * other types below a folder are not shown (their names are in /json and
 * /lists only when they hold no '/'). */
static void kv_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mf_fs *fs = fuse_req_userdata(req);
	uint8_t type;
	char *key;
	size_t klen;
	int r = name_key(fs, parent, name, &type, &key, &klen);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	mf_entry_info info;
	int sr = mf_kv_stat(&fs->kv, key, klen, &info);
	if (sr != 0 && sr != -ENOENT) {
		/* The keyspace could not answer (a remote server away: EIO):
		 * say so, rather than caching a negative entry. */
		free(key);
		fuse_reply_err(req, -sr);
		return;
	}
	uint8_t ntype = sr == 0 ? kv_node_type(info.type) : 0;
	if (!ntype) {
		/* Created through this mount, first commit still to come. */
		pthread_mutex_lock(&fs->mu);
		node *pn = *name_slot(fs, MF_T_STRING, key, klen);
		if (pn && pending_visible(pn))
			ntype = MF_T_STRING;
		pthread_mutex_unlock(&fs->mu);
	}
	struct fuse_entry_param e;
	fill_entry(fs, &e, 0);
	if (!ntype) /* negative entry: creates through this mount invalidate it */
		fuse_reply_entry(req, &e);
	else
		reply_node_entry(req, ntype, key, klen, &e);
	free(key);
}

void mf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mf_fs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;
	const layout_entry *f = layout_child(parent, name);
	if (f) {
		fill_entry(fs, &e, f->ino);
		e.attr_timeout = layout_attr_timeout(fs, f);
		layout_attr(fs, f, &e.attr);
		fuse_reply_entry(req, &e);
		return;
	}
	mf_slice prefix;
	if (kv_folder(fs, parent, &prefix)) {
		mf_slice_unref(&prefix);
		kv_lookup(req, parent, name);
		return;
	}
	uint8_t type = dir_type(parent);
	size_t len = strlen(name);
	if (parent >= INO_FIRST_KEY) {
		jpath_lookup(req, parent, name);
		return;
	}
	if (type == MF_T_NONE || len > MF_KEY_MAX) {
		fuse_reply_err(req, type == MF_T_NONE ? ENOENT : ENAMETOOLONG);
		return;
	}
	/* Pop files exist for every list key; other keys must exist with the
	 * directory's type (one keyspace: a key shows only in its type's dir). */
	mf_entry_info info;
	uint8_t want = type == NODE_POP    ? MF_T_LIST
	             : type == NODE_JDIR ? MF_T_JSON
	             : type == NODE_SREM ? MF_T_SET
	             : type == NODE_JIDIR ? MF_T_JSON
	             : type == NODE_INCR ? MF_T_STRING
	                                 : type;
	int gr = mf_kv_get(&fs->kv, name, len, false, &info);
	if (gr != 0 && gr != -ENOENT) {
		/* The keyspace could not answer (a remote server away: EIO):
		 * say so, rather than caching a negative entry. */
		fuse_reply_err(req, -gr);
		return;
	}
	bool found = gr == 0 && (info.type == want || type == NODE_EXPIRE); /* expire: any type */
	/* An increment may create its key: /.ctl/incr/<any name> resolves
	 * (the write says EEXIST if the key has another type). */
	if (type == NODE_INCR || type == NODE_BPOP) /* bpop: a list yet to come */
		found = true;
	if (!found && key_type(type)) {
		/* Created through this mount, first commit still to come. */
		pthread_mutex_lock(&fs->mu);
		node *pn = *name_slot(fs, type, name, len);
		found = pn && pending_visible(pn);
		pthread_mutex_unlock(&fs->mu);
	}
	if (!found) {
		/* Negative entry cached for the same timeout: creates through this
		 * mount invalidate it themselves, and nothing else adds keys. */
		fill_entry(fs, &e, 0);
		if (!key_type(type))
			e.entry_timeout = 0; /* created through another directory */
		fuse_reply_entry(req, &e);
		return;
	}
	fill_entry(fs, &e, 0);
	if (!key_type(type))
		e.attr_timeout = e.entry_timeout = 0; /* they come and go with their key */
	reply_node_entry(req, type, name, len, &e);
}
