/*
 * dir.c — directory handles: listings built at opendir, paged by readdir.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* ---------- directories ---------- */

/* One listed name: a fixed tree entry (name points into layout.c's table
 * or is "." / "..") or a key (owned slice). */
typedef struct dirent_rec {
	const char *fixed;
	mf_slice key;
	fuse_ino_t ino;
	mode_t mode;
	uint8_t ntype; /* a /kv key's node type (readdirplus makes its node) */
} dirent_rec;

typedef struct dirh {
	atomic_int refs; /* 1 for the kernel's handle (RELEASEDIR or unmount frees) */
	/* The listing, taken at opendir: readdir pages through one stable view,
	 * whatever keys come and go meanwhile; entries are encoded per call. */
	dirent_rec *ents;
	size_t n;
	/* A /kv listing: names are keys below `prefix` (its folder's key),
	 * so readdirplus can hand the kernel each one's node and attributes. */
	bool kv;
	mf_slice prefix;
	/* On fs->dirs until freed, so unmount can free those whose RELEASEDIR
	 * never comes: the kernel sends it in the background after close()
	 * returns and drops it if the unmount aborts the connection first. */
	live_link live;
} dirh;

static void dirh_free(mf_fs *fs, dirh *d)
{
	live_del(&fs->dirs, &d->live);
	for (size_t i = 0; i < d->n; i++)
		mf_slice_unref(&d->ents[i].key);
	mf_slice_unref(&d->prefix);
	free(d->ents);
	free(d);
}

static void dirh_put(mf_fs *fs, dirh *d)
{
	if (atomic_fetch_sub(&d->refs, 1) == 1)
		dirh_free(fs, d);
}

/* Keys created through this mount whose first commit is still to come
 * exist for its users (open(O_CREAT) makes a file visible at once), so a
 * listing shows them too.  Taken in two steps around the keyspace's
 * listing: the names pending before it (pending_names), then those of them
 * the listing lacks (add_pending_names), kept if still pending or since
 * committed.  So a first commit that lands while the keyspace is being
 * listed (a remote listing is many round trips) is in one or the other;
 * checking only after the listing missed it (found on the remote backend:
 * a new JSON document absent from `ls`).  No lock is held across a
 * keyspace read. */
size_t pending_names(mf_fs *fs, uint8_t type, mf_slice **out)
{
	size_t n = 0;
	*out = NULL;
	pthread_mutex_lock(&fs->mu);
	for (size_t b = 0; b < fs->nbuckets; b++) {
		for (node *x = fs->inos[b]; x; x = x->ino_next) {
			if (x->type != type || !x->named || !pending_visible(x))
				continue;
			mf_slice *nk = realloc(*out, (n + 1) * sizeof *nk);
			if (!nk)
				break;
			*out = nk;
			nk[n++] = mf_slice_ref(x->key);
		}
	}
	pthread_mutex_unlock(&fs->mu);
	return n;
}

static bool listed(const mf_slice *keys, size_t nkeys, mf_slice k)
{
	for (size_t i = 0; i < nkeys; i++)
		if (keys[i].len == k.len && memcmp(mf_slice_ptr(keys[i]), mf_slice_ptr(k), k.len) == 0)
			return true;
	return false;
}

/* A name pending before a listing: still to be shown after it (still
 * pending, or committed since with this type)?  No lock held across the
 * keyspace read. */
static bool pending_kept(mf_fs *fs, uint8_t type, mf_slice k)
{
	pthread_mutex_lock(&fs->mu);
	node *x = *name_slot(fs, type, mf_slice_ptr(k), k.len);
	bool keep = x && pending_visible(x);
	pthread_mutex_unlock(&fs->mu);
	mf_entry_info info;
	if (!keep && mf_kv_get(&fs->kv, mf_slice_ptr(k), k.len, false, &info) == 0)
		keep = info.type == type;
	return keep;
}

/* Takes over pend's references.  Returns the new count; keys grows. */
size_t add_pending_names(mf_fs *fs, uint8_t type, mf_slice *pend, size_t npend, mf_slice **keys,
                         size_t nkeys)
{
	for (size_t i = 0; i < npend; i++) {
		mf_slice k = pend[i];
		bool keep = !listed(*keys, nkeys, k) && pending_kept(fs, type, k);
		mf_slice *nk = keep ? realloc(*keys, (nkeys + 1) * sizeof *nk) : NULL;
		if (nk) {
			*keys = nk;
			nk[nkeys++] = k;
		} else {
			mf_slice_unref(&k);
		}
	}
	free(pend);
	return nkeys;
}

/* Length of a folder path's parent path (0: /kv). */
static size_t parent_prefix_len(mf_slice p)
{
	const char *s = p.len ? memrchr(mf_slice_ptr(p), '/', p.len) : NULL;
	return s ? (size_t)(s - mf_slice_ptr(p)) : 0;
}

/* A buffer holding a /kv folder's key and "/" (none for /kv itself), with
 * room after them (at *at) for one name: a listed name's whole key. */
static char *kv_keybuf(mf_slice prefix, size_t *at)
{
	char *key = mf_xmalloc(prefix.len + 1 + MF_KEY_MAX + 1);
	memcpy(key, mf_slice_ptr(prefix), prefix.len);
	*at = prefix.len ? prefix.len + 1 : 0;
	if (prefix.len)
		key[prefix.len] = '/';
	return key;
}

/* The listing of /kv or a /kv folder: its files, folders and symlinks from
 * the store's child index (O(children)), then this mount's pending creates
 * in it.  -errno.  Their d_ino, what lookup would give each name, is found
 * page by page as readdir sends them, not here: one pass over the node
 * table per name instead of two for readdirplus, and no O(keys) wait at
 * opendir. */
static int kv_listing(mf_fs *fs, fuse_ino_t ino, mf_slice prefix, dirh *d)
{
	mf_dirent *ents;
	size_t n;
	/* pending names first: see pending_names */
	mf_slice *pend = NULL;
	size_t npend = pending_names(fs, MF_T_STRING, &pend);
	int r = mf_kv_list(&fs->kv, mf_slice_ptr(prefix), prefix.len, &ents, &n);
	if (r) {
		for (size_t i = 0; i < npend; i++)
			mf_slice_unref(&pend[i]);
		free(pend);
		return r;
	}
	fuse_ino_t up = INO_KV;
	size_t plen = parent_prefix_len(prefix);
	if (prefix.len) {
		pthread_mutex_lock(&fs->mu);
		up = plen ? name_ino(fs, NODE_FOLDER, mf_slice_ptr(prefix), plen) : INO_KV;
		pthread_mutex_unlock(&fs->mu);
	}
	d->ents = calloc(2 + n + npend, sizeof *d->ents);
	if (!d->ents) {
		mf_store_dirents_free(ents, n);
		for (size_t i = 0; i < npend; i++)
			mf_slice_unref(&pend[i]);
		free(pend);
		return -ENOMEM;
	}
	d->ents[0] = (dirent_rec){".", MF_SLICE_EMPTY, ino, S_IFDIR, 0};
	d->ents[1] = (dirent_rec){"..", MF_SLICE_EMPTY, prefix.len ? up : INO_ROOT, S_IFDIR, 0};
	d->n = 2;
	size_t at;
	char *key = kv_keybuf(prefix, &at);
	for (size_t i = 0; i < n + npend; i++) {
		mf_slice name;
		uint8_t nt;
		if (i < n) {
			nt = kv_node_type(ents[i].type);
			name = ents[i].name;
			if (!nt)
				continue; /* a JSON document or list below a folder */
		} else {
			/* a pending create: listed if it is in this folder */
			mf_slice k = pend[i - n];
			const char *kp = mf_slice_ptr(k);
			if (k.len <= at || memcmp(kp, key, at) != 0 || memchr(kp + at, '/', k.len - at))
				continue;
			name = (mf_slice){k.buf, k.off + at, k.len - at};
			nt = MF_T_STRING;
			bool dup = false; /* committed while the folder was listed */
			for (size_t j = 0; j < n && !dup; j++)
				dup = ents[j].name.len == name.len &&
				      memcmp(mf_slice_ptr(ents[j].name), mf_slice_ptr(name), name.len) == 0;
			if (dup || !pending_kept(fs, MF_T_STRING, k))
				continue;
		}
		dirent_rec *e = &d->ents[d->n++];
		e->key = mf_slice_ref(name);
		e->ino = 0; /* found per page: mf_readdir, mf_readdirplus */
		/* A special file's kind is in its value: DT_UNKNOWN (mode 0) has
		 * the reader stat it, rather than a listing read every value. */
		e->mode = nt == NODE_FOLDER ? S_IFDIR : nt == NODE_LINK ? S_IFLNK
		        : nt == NODE_SPECIAL ? 0 : S_IFREG;
		e->ntype = nt;
	}
	free(key);
	mf_store_dirents_free(ents, n);
	for (size_t i = 0; i < npend; i++)
		mf_slice_unref(&pend[i]);
	free(pend);
	return 0;
}

/* opendir of /kv or a /kv folder (prefix: its key, consumed). */
static void kv_opendir(fuse_req_t req, fuse_ino_t ino, mf_slice prefix, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	dirh *d = calloc(1, sizeof *d);
	int r = d ? kv_listing(fs, ino, prefix, d) : -ENOMEM;
	if (r) {
		mf_slice_unref(&prefix);
		free(d);
		fuse_reply_err(req, -r);
		return;
	}
	d->kv = true;
	d->prefix = prefix;
	atomic_init(&d->refs, 1);
	live_add(&fs->dirs, &d->live);
	fi->fh = (uint64_t)(uintptr_t)d;
	if (fuse_reply_open(req, fi) == -ENOENT)
		dirh_put(fs, d); /* interrupted: no RELEASEDIR will come */
}

void mf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	mf_slice prefix;
	if (kv_folder(fs, ino, &prefix)) {
		kv_opendir(req, ino, prefix, fi);
		return;
	}
	struct stat st;
	int r = ino_attr(fs, ino, &st);
	if (r || !S_ISDIR(st.st_mode)) {
		fuse_reply_err(req, r ? -r : ENOTDIR);
		return;
	}
	dirh *d = calloc(1, sizeof *d);
	if (!d) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	atomic_init(&d->refs, 1);
	/* Build the whole listing now: readdir then pages through one stable
	 * view, whatever keys come and go meanwhile. */
	/* ".", "..", then the fixed children (layout.c), then the keys. */
	const char *names[2 + 12];
	fuse_ino_t inos[2 + 12];
	mode_t modes[2 + 12];
	const layout_entry *self = layout_find(ino), *kids[12];
	names[0] = ".", inos[0] = ino, modes[0] = S_IFDIR;
	names[1] = "..", modes[1] = S_IFDIR;
	inos[1] = self ? self->parent : INO_JPATHDIR; /* a /.ctl/json/<doc> dir */
	size_t nfixed = 2, nkids = layout_children(ino, kids, 12);
	for (size_t i = 0; i < nkids; i++, nfixed++) {
		names[nfixed] = kids[i]->name;
		inos[nfixed] = kids[i]->ino;
		modes[nfixed] = kids[i]->mode & S_IFMT;
	}
	mf_slice *keys = NULL;
	size_t nkeys = 0;
	uint8_t type = dir_type(ino);
	/* /.ctl/pop lists nothing: opening a pop file pops, so a listed pop
	 * file is one that `grep -r`, `cp -a`, `rsync` or `find -exec cat`
	 * would drain.  Its names still resolve on lookup.  /.ctl/incr,
	 * /.ctl/srem, /.ctl/bpop and /.ctl/jincr neither: verbs, not data. */
	mf_slice *pend = NULL;
	size_t npend = key_type(type) ? pending_names(fs, type, &pend) : 0;
	if (key_type(type) || type == NODE_JDIR)
		nkeys = mf_kv_keys(&fs->kv, type == NODE_JDIR ? MF_T_JSON : type, &keys);
	if (key_type(type))
		nkeys = add_pending_names(fs, type, pend, npend, &keys, nkeys);
	d->ents = calloc(nfixed + nkeys, sizeof *d->ents);
	for (size_t i = 0; d->ents && i < nfixed + nkeys; i++) {
		dirent_rec *e = &d->ents[d->n];
		if (i < nfixed) {
			e->fixed = names[i];
			e->ino = inos[i];
			e->mode = modes[i];
		} else {
			mf_slice k = keys[i - nfixed];
			if (!mf_key_is_filename(mf_slice_ptr(k), k.len))
				continue; /* a RESP key no file name can hold: not listed */
			e->key = mf_slice_ref(k);
			/* The number lookup gives it (ls -i, find and du trust
			 * d_ino); fs->mu per key, not across a huge listing. */
			pthread_mutex_lock(&fs->mu);
			e->ino = name_ino(fs, type, mf_slice_ptr(k), k.len);
			pthread_mutex_unlock(&fs->mu);
			e->mode = type == NODE_JDIR ? S_IFDIR : S_IFREG;
		}
		d->n++;
	}
	for (size_t i = 0; i < nkeys; i++)
		mf_slice_unref(&keys[i]);
	free(keys);
	if (!d->ents) {
		free(d);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	live_add(&fs->dirs, &d->live);
	fi->fh = (uint64_t)(uintptr_t)d;
	/* -ENOENT: the opener was interrupted and the kernel discarded the
	 * reply, so no RELEASEDIR will ever name this handle. */
	if (fuse_reply_open(req, fi) == -ENOENT)
		dirh_put(fs, d);
}

/* An entry's name, NUL-terminated, in name (MF_KEY_MAX + 1 bytes). */
static void dirent_name(const dirent_rec *e, char *name)
{
	if (e->fixed) {
		snprintf(name, MF_KEY_MAX + 1, "%s", e->fixed);
	} else {
		memcpy(name, mf_slice_ptr(e->key), e->key.len);
		name[e->key.len] = '\0';
	}
}

void mf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	mf_fs *fs = fuse_req_userdata(req);
	dirh *d = (dirh *)(uintptr_t)fi->fh;
	/* off is the index of the next entry; each entry's own offset is the
	 * index after it.  Encode as many as fit in size. */
	char *buf = size ? malloc(size) : NULL;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t len = 0, at = 0;
	char *key = d->kv ? kv_keybuf(d->prefix, &at) : NULL;
	char namebuf[MF_KEY_MAX + 1];
	if (key)
		pthread_mutex_lock(&fs->mu); /* once per page, for name_ino */
	for (size_t i = (size_t)off; i < d->n; i++) {
		const dirent_rec *e = &d->ents[i];
		char *name = key && !e->fixed ? key + at : namebuf;
		dirent_name(e, name);
		struct stat est = {.st_ino = e->ino, .st_mode = e->mode};
		if (key && !e->fixed) /* the number lookup gives it (ls -i, find, du) */
			est.st_ino = name_ino(fs, e->ntype, key, at + e->key.len);
		size_t need = fuse_add_direntry(req, buf + len, size - len, name, &est, (off_t)(i + 1));
		if (need > size - len)
			break; /* did not fit: the next call starts here */
		len += need;
	}
	if (key)
		pthread_mutex_unlock(&fs->mu);
	fuse_reply_buf(req, buf, len);
	free(key);
	free(buf);
}

/*
 * readdirplus: the same pages as readdir, and for each key of a /kv
 * listing its node and attributes, so `ls -l`, `du` and `find` stat from
 * the kernel's cache instead of sending a LOOKUP per name.  Each entry
 * given with a node id counts as one lookup of it (the kernel FORGETs it
 * like a LOOKUP's).  Names outside /kv (the fixed tree, /json, /lists),
 * "." and "..", and keys gone since opendir go out with node id 0: the
 * kernel lists them and looks them up itself when asked, as for readdir.
 */
void mf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	(void)ino;
	mf_fs *fs = fuse_req_userdata(req);
	dirh *d = (dirh *)(uintptr_t)fi->fh;
	char *buf = size ? malloc(size) : NULL;
	/* The nodes given out in this reply, to take their lookups back if the
	 * reply does not reach the kernel; no entry is smaller than one with a
	 * one-byte name. */
	size_t maxents = size / fuse_add_direntry_plus(req, NULL, 0, "x", NULL, 0) + 1;
	fuse_ino_t *given = malloc(maxents * sizeof *given);
	if ((size && !buf) || !given) {
		free(buf);
		free(given);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	size_t len = 0, ngiven = 0;
	char *key = NULL, *name;
	size_t at = 0;
	char namebuf[MF_KEY_MAX + 1];
	if (d->kv) /* the name is written in place after its folder's key */
		key = kv_keybuf(d->prefix, &at);
	/* fs->mu once per page, not per entry: a page holds tens of names. */
	pthread_mutex_lock(&fs->mu);
	for (size_t i = (size_t)off; i < d->n; i++) {
		const dirent_rec *e = &d->ents[i];
		name = key && !e->fixed ? key + at : namebuf;
		dirent_name(e, name);
		if (fuse_add_direntry_plus(req, NULL, 0, name, NULL, 0) > size - len)
			break; /* did not fit: the next call starts here */
		struct fuse_entry_param ep = {0};
		ep.attr.st_ino = e->ino;
		ep.attr.st_mode = e->mode;
		if (key && !e->fixed) {
			/* The listed name is the tail of its key's own buffer
			 * (mf_dirent, pending nodes' keys): the node shares it. */
			mf_slice whole = {e->key.buf, e->key.off - at, at + e->key.len};
			if (e->key.off < at)
				whole = MF_SLICE_EMPTY;
			node *n = node_get_shared(fs, e->ntype, key, at + e->key.len, whole);
			if (n && node_attr(fs, n, &ep.attr) == 0) {
				n->nlookup++;
				given[ngiven++] = n->ino;
				ep.ino = n->ino;
				ep.attr_timeout = ep.entry_timeout = fs->timeout;
			} else {
				/* gone since opendir: the name only, with the
				 * number a lookup would have given it */
				if (n)
					node_maybe_free(fs, n);
				ep.attr = (struct stat){.st_mode = e->mode};
				ep.attr.st_ino = name_ino(fs, e->ntype, key, at + e->key.len);
			}
		}
		len += fuse_add_direntry_plus(req, buf + len, size - len, name, &ep, (off_t)(i + 1));
	}
	pthread_mutex_unlock(&fs->mu);
	if (fuse_reply_buf(req, buf, len) != 0 && ngiven) {
		/* not delivered (interrupted): the kernel holds none of these */
		pthread_mutex_lock(&fs->mu);
		for (size_t i = 0; i < ngiven; i++)
			forget_one(fs, given[i], 1);
		pthread_mutex_unlock(&fs->mu);
	}
	free(key);
	free(given);
	free(buf);
}

void mf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)ino;
	fuse_reply_err(req, 0);
	dirh_put(fs, (dirh *)(uintptr_t)fi->fh);
}

/* At unmount: free the dir handles whose RELEASEDIR the unmount dropped
 * (the kernel sends it in the background after close() returns). */
void dir_free_all(mf_fs *fs)
{
	size_t ndirs = 0;
	while (fs->dirs.head) {
		dirh_free(fs, LIVE_OF(dirh, fs->dirs.head));
		ndirs++;
	}
	if (ndirs)
		mf_log_info("unmount: freed %zu directory handle(s) never released", ndirs);
}
