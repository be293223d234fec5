/*
 * jsonpath.c — the /.ctl/json/<doc>/<path> member view.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* Split a JPATH node key "<key>/<path>". */
void jpath_split(node *n, size_t *klen, const char **path, size_t *plen)
{
	const char *k = mf_slice_ptr(n->key);
	const char *slash = memchr(k, '/', n->key.len);
	*klen = slash ? (size_t)(slash - k) : n->key.len;
	*path = slash ? slash + 1 : "";
	*plen = slash ? n->key.len - *klen - 1 : 0;
}

/* The span of path in this version of the document: from the cache if a
 * request of the same read or update found it already, else one scan. */
static int member_span(mf_fs *fs, const char *key, size_t klen, mf_slice doc, const char *path,
                       size_t plen, size_t *off, size_t *len)
{
	pthread_mutex_lock(&fs->jspan_mu);
	jspan *same_key = NULL;
	for (int i = 0; i < JSPAN_SLOTS; i++) {
		jspan *c = &fs->jspans[i];
		if (!c->doc.buf || c->klen != klen || memcmp(c->key, key, klen) != 0 ||
		    c->plen != plen || memcmp(c->path, path, plen) != 0)
			continue;
		if (c->doc.buf == doc.buf && c->doc.off == doc.off && c->doc.len == doc.len) {
			int r = c->r;
			*off = c->off;
			*len = c->len;
			pthread_mutex_unlock(&fs->jspan_mu);
			return r;
		}
		same_key = c;
	}
	pthread_mutex_unlock(&fs->jspan_mu);
	/* The scan runs without the lock: it is the long part. */
	int r = mf_json_get_path_doc(mf_slice_ptr(doc), doc.len, path, plen, off, len);
	if (klen > MF_KEY_MAX || plen > MF_KEY_MAX || !doc.buf)
		return r;
	pthread_mutex_lock(&fs->jspan_mu);
	jspan *c = same_key ? same_key : &fs->jspans[fs->jspan_next++ % JSPAN_SLOTS];
	/* same_key may have been replaced meanwhile: any slot is a valid
	 * place for this answer, and its old content is simply dropped. */
	mf_slice_unref(&c->doc);
	c->doc = mf_slice_ref(doc);
	memcpy(c->key, key, klen);
	c->klen = klen;
	memcpy(c->path, path, plen);
	c->plen = plen;
	c->off = *off;
	c->len = *len;
	c->r = r;
	pthread_mutex_unlock(&fs->jspan_mu);
	return r;
}

/* The member a path names in a JSON document, as text + '\n' (malloc'd).
 * 0, -ENOENT (no such key or member), -EINVAL (bad path). */
int jpath_read(mf_fs *fs, const char *key, size_t klen, const char *path, size_t plen, char **out,
               size_t *outlen, int64_t *mtime)
{
	mf_entry_info info = {0};
	int r = mf_kv_get(&fs->kv, key, klen, true, &info);
	if (r == 0 && info.type != MF_T_JSON)
		r = -ENOENT;
	size_t off = 0, len = 0;
	char *q = NULL;
	/* [*], .*, ..: every match, as one JSON array (RedisJSON's "$"). */
	bool multi = mf_json_path_multi(path, plen) == 1;
	if (r == 0 && multi)
		r = mf_json_query(mf_slice_ptr(info.val), info.val.len, path, plen, &q, &len);
	else if (r == 0)
		r = member_span(fs, key, klen, info.val, path, plen, &off, &len);
	if (r == 0 && out) {
		*out = mf_xmalloc(len + 1);
		memcpy(*out, multi ? q : mf_slice_ptr(info.val) + off, len);
		(*out)[len] = '\n';
	}
	free(q);
	if (outlen)
		*outlen = len + 1;
	if (mtime)
		*mtime = info.mtime_ns;
	mf_slice_unref(&info.val);
	return r;
}

int jpath_attr(mf_fs *fs, node *n, struct stat *st)
{
	int64_t now = mf_now_ns(), mtime = now;
	if (n->type == NODE_JDIR || n->type == NODE_JIDIR) {
		mf_entry_info info;
		if (mf_kv_get(&fs->kv, mf_slice_ptr(n->key), n->key.len, false, &info) != 0 ||
		    info.type != MF_T_JSON)
			return -ENOENT;
		dir_attr(fs, n->ino, st);
		st->st_mtim = st->st_ctim = ns_to_ts(info.mtime_ns);
		return 0;
	}
	size_t klen, plen, len = 0;
	const char *path;
	jpath_split(n, &klen, &path, &plen);
	int r = jpath_read(fs, mf_slice_ptr(n->key), klen, path, plen, NULL, &len, &mtime);
	if (r == -ENOENT && n->ndirty)
		r = 0, len = 0; /* being created through this mount */
	if (r)
		return r;
	file_attr(fs, n->ino, 0644, len, mtime, mtime, st);
	return 0;
}

/* The node key "<doc>/<path>" for a name inside the JDIR node `parent`.
 * A path file name is a file name like any other: at most MF_KEY_MAX bytes
 * (NAME_MAX, what statfs reports as f_namemax), although FUSE passes names
 * up to 1024 bytes.  Checking that before copying is what keeps the node key
 * inside its fixed buffer: doc (a store key, <= MF_KEY_MAX) + '/' + name. */
int jpath_nodekey(mf_fs *fs, fuse_ino_t parent, const char *name, size_t plen,
                  char nk[JPATH_NK_MAX], size_t *klen, uint8_t *ptype)
{
	pthread_mutex_lock(&fs->mu);
	node *d = by_ino(fs, parent);
	bool dir = d && (d->type == NODE_JDIR || d->type == NODE_JIDIR);
	mf_slice key = dir ? mf_slice_ref(d->key) : MF_SLICE_EMPTY;
	*ptype = dir ? d->type : 0;
	pthread_mutex_unlock(&fs->mu);
	*klen = key.len;
	int r = 0;
	if (!key.len)
		r = -ENOTDIR; /* parent is not a /.ctl/json/<doc> directory */
	else if (plen > MF_KEY_MAX || key.len > MF_KEY_MAX)
		r = -ENAMETOOLONG;
	if (r == 0) {
		memcpy(nk, mf_slice_ptr(key), key.len);
		nk[key.len] = '/';
		memcpy(nk + key.len + 1, name, plen);
	}
	mf_slice_unref(&key);
	return r;
}

/* Lookup inside /.ctl/json/<key>/: names are paths into that document. */
void jpath_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mf_fs *fs = fuse_req_userdata(req);
	struct fuse_entry_param e;
	size_t plen = strlen(name), klen;
	char nk[JPATH_NK_MAX];
	uint8_t ptype;
	int r = jpath_nodekey(fs, parent, name, plen, nk, &klen, &ptype);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	r = mf_json_path_check(name, plen) == 0 ? 0 : -ENOENT;
	if (r == 0)
		r = jpath_read(fs, nk, klen, name, plen, NULL, NULL, NULL);
	fill_entry(fs, &e, 0);
	e.attr_timeout = e.entry_timeout = 0; /* the document may change any time */
	if (r) {
		fuse_reply_entry(req, &e); /* negative, not cached */
		return;
	}
	reply_node_entry(req, ptype == NODE_JIDIR ? NODE_JINCR : NODE_JPATH, nk, klen + 1 + plen, &e);
}

/* `>>` on a path file (a ctlw handle: see ctlw_handle): each line written
 * is one JSON value appended to the array there (JSON_ARRAPPEND), or, when
 * the member is a string and every line is a JSON string, to that string
 * (JSON_STRAPPEND).  The lines of one write(2) make one record, so concurrent appenders lose nothing (the
 * store applies each record whole; emulating this by read-then-write lost
 * updates).  A line that is not one JSON value refuses the lot (EINVAL);
 * blank lines are skipped.  0 or -errno. */
int jpath_append(mf_fs *fs, node *nd, const char *p, size_t n)
{
	size_t klen, plen, count = 0;
	const char *path;
	jpath_split(nd, &klen, &path, &plen);
	const char *k = mf_slice_ptr(nd->key);
	mf_slice arr = MF_SLICE_EMPTY, str = MF_SLICE_EMPTY;
	bool strings = true;
	int r = 0;
	mf_slice_append(&arr, "[", 1);
	mf_slice_append(&str, "\"", 1);
	for (size_t i = 0; i < n && r == 0;) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t l = nl ? (size_t)(nl - (p + i)) : n - i, off;
		const char *line = p + i, *why;
		i += l + 1;
		while (l && (line[0] == ' ' || line[0] == '\t' || line[0] == '\r')) {
			line++;
			l--;
		}
		while (l && (line[l - 1] == ' ' || line[l - 1] == '\t' || line[l - 1] == '\r'))
			l--;
		if (l == 0)
			continue;
		if (mf_value_check(MF_T_JSON, line, l, &off, &why) != 0) {
			char kn[KEY_NAME_MAX];
			mf_log_warn("rejected JSON value appended to %s %.*s: %s at byte %zu",
			            key_name(kn, sizeof kn, MF_T_JSON, k, klen), (int)plen, path, why, off);
			r = -EINVAL;
			break;
		}
		if (count++)
			mf_slice_append(&arr, ",", 1);
		mf_slice_append(&arr, line, l);
		strings = strings && line[0] == '"'; /* a valid value starting '"' is a string */
		if (strings)
			mf_slice_append(&str, line + 1, l - 2); /* its text, quotes off */
	}
	mf_slice_append(&arr, "]", 1);
	mf_slice_append(&str, "\"", 1);
	if (r == 0 && count) {
		mf_op op = key_op(MF_OP_JSON_ARRAPPEND, MF_T_JSON, k, klen);
		op.key2 = mf_slice_from(path, plen, plen);
		op.val = mf_slice_ref(arr);
		r = commit(fs, &op);
		mf_op_clear(&op);
	}
	if (r == -EDOM && strings) {
		/* Not an array there: a string member takes the strings' text
		 * (the store checks again: still a string, or -EDOM). */
		mf_op op = key_op(MF_OP_JSON_STRAPPEND, MF_T_JSON, k, klen);
		op.key2 = mf_slice_from(path, plen, plen);
		op.val = mf_slice_ref(str);
		r = commit(fs, &op);
		mf_op_clear(&op);
	}
	if (r) {
		char kn[KEY_NAME_MAX];
		mf_log_warn("JSON path %s %.*s: append refused: %s",
		            key_name(kn, sizeof kn, MF_T_JSON, k, klen), (int)plen, path,
		            r == -EDOM ? "not an array (or a string, for strings)" : strerror(-r));
	}
	mf_slice_unref(&arr);
	mf_slice_unref(&str);
	if (r == 0)
		invalidate_key(fs, MF_T_JSON, k, klen);
	return r == -EDOM ? -EINVAL : r;
}

/* Commit a write to /.ctl/json/<key>/<path> as JSON_SETPATH.  Caller holds
 * h->mu; h owes a commit.  final: the handle is going away (or fsync). */
int jpath_commit(mf_fs *fs, handle *h, bool final)
{
	node *n = h->n;
	size_t klen, plen;
	const char *path;
	jpath_split(n, &klen, &path, &plen);
	const char *k = mf_slice_ptr(n->key);
	int r;
	if (!h->wrote) {
		/* Created or opened with O_TRUNC and nothing written: an empty
		 * value is not JSON.  A non-final close stays dirty, since bash
		 * closes a duplicate of the descriptor before it writes; the
		 * last one gives up, once, and logs it. */
		if (final) {
			clear_dirty(fs, h);
			char kn[KEY_NAME_MAX];
			mf_log_warn("JSON path %s %.*s: empty value refused, document unchanged",
			            key_name(kn, sizeof kn, MF_T_JSON, k, klen), (int)plen, path);
		}
		return -EINVAL;
	}
	/* Validated here too (the commit checks again) so that the one log
	 * line names the document, the path and the reason. */
	size_t off;
	const char *why;
	r = mf_value_check(MF_T_JSON, mf_slice_ptr(h->data), h->size, &off, &why);
	if (r) {
		char kn[KEY_NAME_MAX];
		mf_log_warn("rejected JSON value for path %s %.*s: %s at byte %zu",
		            key_name(kn, sizeof kn, MF_T_JSON, k, klen), (int)plen, path, why, off);
	} else {
		mf_op op = key_op(MF_OP_JSON_SETPATH, MF_T_JSON, k, klen);
		op.key2 = mf_slice_from(path, plen, plen);
		op.val = mf_slice_ref(h->data);
		op.val.len = h->size;
		r = commit(fs, &op);
		if (r) {
			char kn[KEY_NAME_MAX];
			mf_log_error("JSON path %s %.*s: update failed: %s",
			             key_name(kn, sizeof kn, MF_T_JSON, k, klen), (int)plen, path,
			             strerror(-r));
		}
		mf_op_clear(&op);
	}
	/* Success or a refusal (EINVAL, ENOENT): either way this text is done. */
	mf_slice_unref(&h->data);
	h->size = 0;
	h->wrote = false;
	clear_dirty(fs, h);
	if (r == 0) {
		pthread_mutex_lock(&fs->mu);
		node *doc = *name_slot(fs, MF_T_JSON, k, klen);
		fuse_ino_t ino = doc ? doc->ino : 0;
		pthread_mutex_unlock(&fs->mu);
		h->inval_ino = ino; /* the document changed under its inode */
	}
	return r;
}

/* Create /.ctl/json/<key>/<path>: adding a member (`echo 1 > '$.new'`). */
void jpath_create(fuse_req_t req, fuse_ino_t parent, const char *name, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	size_t plen = strlen(name), klen;
	char nk[JPATH_NK_MAX];
	uint8_t ptype;
	int r = jpath_nodekey(fs, parent, name, plen, nk, &klen, &ptype);
	if (r == 0 && ptype == NODE_JIDIR)
		r = -ENOENT; /* /.ctl/jincr: the member must exist (a number) */
	if (r == 0 && mf_json_path_check(name, plen) != 0) {
		char kn[KEY_NAME_MAX];
		mf_log_warn("bad JSON path '%s' for %s", name, key_name(kn, sizeof kn, MF_T_JSON, nk, klen));
		r = -EINVAL;
	}
	if (r == 0 && (fi->flags & O_APPEND)) {
		/* `>>` appends to an array or string member: there is none here. */
		char kn[KEY_NAME_MAX];
		mf_log_warn("JSON path %s %s: O_APPEND (>>) refused: no member there to append to",
		            key_name(kn, sizeof kn, MF_T_JSON, nk, klen), name);
		r = -ENOENT;
	}
	struct fuse_entry_param e;
	fill_entry(fs, &e, 0);
	e.attr_timeout = e.entry_timeout = 0;
	handle *h = NULL;
	node *n = NULL;
	if (r == 0) {
		pthread_mutex_lock(&fs->mu);
		n = node_get(fs, NODE_JPATH, nk, klen + 1 + plen);
		h = n ? handle_new(fs, n, fi->flags) : NULL;
		if (h) {
			h->mode = H_FULL;
			h->dstate = D_SIZED;
			n->ndirty++;
			n->nlookup++;
			n->nopen++;
			e.ino = n->ino;
			r = node_attr(fs, n, &e.attr);
		} else {
			r = -ENOMEM;
		}
		pthread_mutex_unlock(&fs->mu);
	}
	if (r) {
		if (h)
			undo_open(fs, n, h, 1);
		fuse_reply_err(req, -r);
		return;
	}
	fi->direct_io = 1;
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		undo_open(fs, n, h, 1);
}

/* rm /.ctl/json/<doc>/<path>: delete that member (one JSON_DELPATH
 * record; "$" deletes the document).  A path with several matches, or in
 * /.ctl/jincr: EPERM. */
void jpath_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	mf_fs *fs = fuse_req_userdata(req);
	size_t plen = strlen(name), klen;
	char nk[JPATH_NK_MAX];
	uint8_t ptype;
	int r = jpath_nodekey(fs, parent, name, plen, nk, &klen, &ptype);
	if (r == 0 && (ptype != NODE_JDIR || mf_json_path_multi(name, plen) != 0))
		r = mf_json_path_check(name, plen) == 0 ? -EPERM : -ENOENT;
	if (r == 0) {
		mf_op op = key_op(MF_OP_JSON_DELPATH, MF_T_JSON, nk, klen);
		op.key2 = mf_slice_from(name, plen, plen);
		r = commit(fs, &op);
		mf_op_clear(&op);
	}
	if (r == 0) /* the document changed under its inode */
		invalidate_key(fs, MF_T_JSON, nk, klen);
	fuse_reply_err(req, -r);
}
