/*
 * fs.c — FUSE low-level adapter: paths and file handles in, mf_ops out.
 *
 * Nodes.  Each key file the kernel knows about is a node: (type, key) ->
 * inode number, with the kernel's lookup count and our open count.  A node
 * lives while either is non-zero.  unlink and rename-over detach the node
 * from its name ("orphan") and keep the value it had, so open handles go on
 * reading and writing it while the key is gone for everyone else (POSIX).
 *
 * Handles.  A handle reads a committed version it pinned (see view_refresh)
 * until it writes.  Its first write makes a private copy ("full" mode), or,
 * for O_APPEND opens, collects the appended bytes ("append" mode).
 * flush/fsync/release commit one whole-value op: SET for full mode, APPEND
 * (kv) or RPUSH (lists) for append mode.  So concurrent writers to one key
 * are serialised by the WAL: last close wins for overwrites, and appends all
 * land (O_APPEND semantics).  No torn mix.
 *
 * Caching.  Entry and attr timeouts (opts.timeout) cut the requests per
 * operation; which opens may use the kernel's page cache, and when it is
 * invalidated, is decided in one place: "kernel cache policy" below.
 *
 * Locking (order: h->mu, then a name stripe, then g.mu):
 *  - h->mu: one handle's state (the kernel may send concurrent requests on
 *    one handle); held across that handle's commit.
 *  - name stripes (see "Name ordering"): held across a commit addressed by
 *    name and the node update that goes with it.
 *  - g.mu: the node tables and every node field; never held across a
 *    commit (which waits for the WAL).
 *  - g.hmu: the list of live handles only; taken alone.
 */
#include "fs.h"
#include "../store/json.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

enum {
	INO_ROOT = 1,
	INO_KV = 2,
	INO_JSON = 3,
	INO_LISTS = 4,
	INO_CTL = 5,
	INO_STATS = 6,
	INO_SNAPSHOT = 7,
	INO_POPDIR = 8,
	INO_JPATHDIR = 9,
	INO_FIRST_KEY = 64,
};

/* A node is a key file (type 1..3) or a pop file (type POP, key = list). */
#define NODE_POP 4
/* JSON path view: /.ctl/json/<key>/ is a NODE_JDIR, /.ctl/json/<key>/<path>
 * a NODE_JPATH whose node key is "<key>/<path>" ('/' is in no key). */
#define NODE_JDIR 5
#define NODE_JPATH 6

typedef struct node {
	fuse_ino_t ino;
	uint8_t type;
	bool named;             /* false once unlinked / renamed over */
	bool pending;           /* created, first commit still to come */
	bool transit;           /* unlink/rename of its name in flight: readers use
	                         * `orphan`, set to the value before the commit */
	unsigned busy;          /* held across such a commit: not freed meanwhile */
	mf_slice key;
	uint64_t nlookup;
	unsigned nopen;
	struct node *name_next; /* chain in name table */
	struct node *ino_next;  /* chain in inode table */
	/* orphan state: the value when the name went away */
	mf_slice orphan;
	int64_t orphan_mtime;
	/* dirty handles: getattr reports the most recent writer's size */
	unsigned ndirty;
	uint64_t dirty_size;
	int64_t dirty_mtime;
	/* utimens while handles were dirty (cp -p, tar x: write, futimens,
	 * close): the time to log once they have committed, since each commit
	 * stamps its own time. */
	bool has_set_mtime;
	int64_t set_mtime;
} node;

typedef struct handle {
	struct handle *prev, *next; /* all live handles (g.hmu), for shutdown */
	atomic_int refs;  /* 1 for the kernel's handle + 1 per read in flight */
	pthread_mutex_t mu;
	node *n;
	int flags;
	bool dirty;
	bool full;      /* data is the whole new value */
	bool append;    /* data holds bytes to append */
	bool wrote;     /* any write/ftruncate since the last commit */
	bool hidden;    /* dirty, but not counted in n->ndirty (see handle_commit) */
	/* Invalidation a commit asked for, sent once h->mu is released: the
	 * kernel locks page cache pages for it, and a READ holding such a page
	 * may be waiting for h->mu (deadlock otherwise). */
	fuse_ino_t inval_ino;
	bool inval_attr_only;
	bool trunc;     /* opened with O_TRUNC: its value starts empty */
	bool has_read;  /* a later read at offset 0 is a rewind (see view_refresh) */
	/* The committed value this handle sees: pinned at open (an immutable
	 * slice), re-pinned to what the handle itself committed.  So a handle
	 * keeps the file it opened across unlink/rename-over, and a reader
	 * sees one consistent version however it chunks its reads. */
	mf_slice view;
	mf_slice data;  /* private buffer (refs == 1 while unpublished) */
	uint64_t size;  /* logical size in full mode */
	char *text;     /* /.ctl files: content fixed at open */
	size_t textlen;
} handle;

static struct {
	mf_db *db;
	mf_store *st;
	struct fuse_session *se;
	pthread_mutex_t mu;
	pthread_mutex_t hmu;    /* guards the handle list */
	handle *handles;
	node **names;
	node **inos;
	size_t nbuckets;
	size_t nnodes;
	fuse_ino_t next_ino;
	uid_t uid;
	gid_t gid;
	double timeout;
	bool readonly;          /* mounted with -o ro: pops are refused too */
	struct timespec start;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .hmu = PTHREAD_MUTEX_INITIALIZER};

/* ---------- node table ---------- */

static uint64_t name_hash(uint8_t type, const char *k, size_t n)
{
	uint64_t h = 1469598103934665603ULL ^ type;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
	return h;
}

static void tables_grow(void)
{
	size_t nb = g.nbuckets * 2;
	node **names = calloc(nb, sizeof *names), **inos = calloc(nb, sizeof *inos);
	if (!names || !inos) {
		free(names);
		free(inos);
		return;
	}
	for (size_t b = 0; b < g.nbuckets; b++) {
		for (node *n = g.inos[b], *next; n; n = next) {
			next = n->ino_next;
			n->ino_next = inos[n->ino & (nb - 1)];
			inos[n->ino & (nb - 1)] = n;
		}
		for (node *n = g.names[b], *next; n; n = next) {
			next = n->name_next;
			size_t i = name_hash(n->type, mf_slice_ptr(n->key), n->key.len) & (nb - 1);
			n->name_next = names[i];
			names[i] = n;
		}
	}
	free(g.names);
	free(g.inos);
	g.names = names;
	g.inos = inos;
	g.nbuckets = nb;
}

static node *by_ino(fuse_ino_t ino)
{
	for (node *n = g.inos[ino & (g.nbuckets - 1)]; n; n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

static node **name_slot(uint8_t type, const char *k, size_t len)
{
	node **pp = &g.names[name_hash(type, k, len) & (g.nbuckets - 1)];
	for (; *pp; pp = &(*pp)->name_next)
		if ((*pp)->type == type && (*pp)->key.len == len &&
		    memcmp(mf_slice_ptr((*pp)->key), k, len) == 0)
			break;
	return pp;
}

static void name_unlink(node *n)
{
	if (!n->named)
		return;
	node **pp = name_slot(n->type, mf_slice_ptr(n->key), n->key.len);
	if (*pp == n)
		*pp = n->name_next;
	n->named = false;
}

/* Find or create the node for a named key.  Caller holds g.mu. */
static node *node_get(uint8_t type, const char *k, size_t len)
{
	node **pp = name_slot(type, k, len);
	if (*pp)
		return *pp;
	if (g.nnodes >= g.nbuckets)
		tables_grow();
	node *n = calloc(1, sizeof *n);
	if (!n)
		return NULL;
	n->ino = g.next_ino++;
	n->type = type;
	n->named = true;
	n->key = mf_slice_from(k, len, len);
	pp = name_slot(type, k, len);
	n->name_next = *pp;
	*pp = n;
	node **ip = &g.inos[n->ino & (g.nbuckets - 1)];
	n->ino_next = *ip;
	*ip = n;
	g.nnodes++;
	return n;
}

/* Free a node nobody references any more.  Caller holds g.mu. */
static void node_maybe_free(node *n)
{
	if (n->nlookup || n->nopen || n->busy)
		return;
	name_unlink(n);
	node **ip = &g.inos[n->ino & (g.nbuckets - 1)];
	while (*ip != n)
		ip = &(*ip)->ino_next;
	*ip = n->ino_next;
	mf_slice_unref(&n->key);
	mf_slice_unref(&n->orphan);
	free(n);
	g.nnodes--;
}

/* ---------- helpers ---------- */

static uint8_t dir_type(fuse_ino_t dir)
{
	switch (dir) {
	case INO_KV: return MF_T_STRING;
	case INO_JSON: return MF_T_JSON;
	case INO_LISTS: return MF_T_LIST;
	case INO_POPDIR: return NODE_POP;
	case INO_JPATHDIR: return NODE_JDIR;
	default: return MF_T_NONE;
	}
}

static struct timespec ns_to_ts(int64_t ns)
{
	return (struct timespec){ns / 1000000000, ns % 1000000000};
}

static void log_err(const char *what, uint8_t type, const char *key, size_t klen, int err)
{
	fprintf(stderr, "memfluxfs: %s %s/%.*s: %s\n", what, mf_type_name(type),
	        (int)(klen > 255 ? 255 : klen), key, strerror(err));
}

static void dir_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_mode = S_IFDIR | 0755;
	st->st_nlink = 2;
	st->st_uid = g.uid;
	st->st_gid = g.gid;
	st->st_atim = st->st_mtim = st->st_ctim = g.start;
	st->st_blksize = 4096;
}

static void file_attr(fuse_ino_t ino, mode_t mode, uint64_t size, int64_t mtime, int64_t ctime,
                      struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_mode = S_IFREG | mode;
	st->st_nlink = 1;
	st->st_uid = g.uid;
	st->st_gid = g.gid;
	st->st_size = (off_t)size;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_blksize = 4096;
	st->st_mtim = ns_to_ts(mtime);
	st->st_atim = st->st_mtim;
	st->st_ctim = ns_to_ts(ctime);
}

/* Split a JPATH node key "<key>/<path>". */
static void jpath_split(node *n, size_t *klen, const char **path, size_t *plen)
{
	const char *k = mf_slice_ptr(n->key);
	const char *slash = memchr(k, '/', n->key.len);
	*klen = slash ? (size_t)(slash - k) : n->key.len;
	*path = slash ? slash + 1 : "";
	*plen = slash ? n->key.len - *klen - 1 : 0;
}

/* The member a path names in a JSON document, as text + '\n' (malloc'd).
 * 0, -ENOENT (no such key or member), -EINVAL (bad path). */
static int jpath_read(const char *key, size_t klen, const char *path, size_t plen, char **out,
                      size_t *outlen, int64_t *mtime)
{
	mf_entry_info info = {0};
	int r = mf_store_get(g.st, key, klen, true, &info);
	if (r == 0 && info.type != MF_T_JSON)
		r = -ENOENT;
	size_t off = 0, len = 0;
	if (r == 0)
		r = mf_json_get_path(mf_slice_ptr(info.val), info.val.len, path, plen, &off, &len);
	if (r == 0 && out) {
		*out = mf_xmalloc(len + 1);
		memcpy(*out, mf_slice_ptr(info.val) + off, len);
		(*out)[len] = '\n';
	}
	if (outlen)
		*outlen = len + 1;
	if (mtime)
		*mtime = info.mtime_ns;
	mf_slice_unref(&info.val);
	return r;
}

static int jpath_attr(node *n, struct stat *st)
{
	int64_t now = mf_now_ns(), mtime = now;
	if (n->type == NODE_JDIR) {
		mf_entry_info info;
		if (mf_store_get(g.st, mf_slice_ptr(n->key), n->key.len, false, &info) != 0 ||
		    info.type != MF_T_JSON)
			return -ENOENT;
		dir_attr(n->ino, st);
		st->st_mtim = st->st_ctim = ns_to_ts(info.mtime_ns);
		return 0;
	}
	size_t klen, plen, len = 0;
	const char *path;
	jpath_split(n, &klen, &path, &plen);
	int r = jpath_read(mf_slice_ptr(n->key), klen, path, plen, NULL, &len, &mtime);
	if (r == -ENOENT && n->ndirty)
		r = 0, len = 0; /* being created through this mount */
	if (r)
		return r;
	file_attr(n->ino, 0644, len, mtime, mtime, st);
	return 0;
}

/* Attributes of a key node.  Caller holds g.mu. */
static int node_attr(node *n, struct stat *st)
{
	if (n->type == NODE_POP) {
		file_attr(n->ino, 0444, 0, g.start.tv_sec * 1000000000LL, g.start.tv_sec * 1000000000LL, st);
		return 0;
	}
	if (n->type == NODE_JDIR || n->type == NODE_JPATH)
		return jpath_attr(n, st);
	if (!n->named && !n->nopen)
		return -ESTALE; /* see mf_open: gone; the kernel looks the name up again */
	mf_entry_info info;
	uint64_t size;
	int64_t mtime, ctime;
	if (n->pending) {
		size = 0;
		mtime = ctime = n->orphan_mtime;
	} else if (n->named && !n->transit) {
		/* (In transit, the store may already have applied the unlink or
		 * rename: the node's copy is its value, as for node_value.) */
		if (mf_store_get(g.st, mf_slice_ptr(n->key), n->key.len, false, &info) != 0 ||
		    info.type != n->type)
			return -ENOENT;
		size = info.size;
		mtime = info.mtime_ns;
		ctime = info.ctime_ns;
	} else {
		size = n->orphan.len;
		mtime = ctime = n->orphan_mtime;
	}
	if (n->ndirty) {
		size = n->dirty_size;
		mtime = ctime = n->dirty_mtime;
	}
	file_attr(n->ino, 0644, size, mtime, ctime, st);
	if (!n->named)
		st->st_nlink = 0;
	return 0;
}

static int commit(mf_op *op)
{
	if (!op->time_ns)
		op->time_ns = mf_now_ns();
	return mf_db_commit(g.db, op);
}

static mf_op key_op(int type, uint8_t ktype, const char *k, size_t klen)
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
 * rename) holds the stripe of that (type, key) across its commit and the
 * node update that goes with it.  So a close's SET never lands after an
 * `rm` that returned first (bringing the key back), a `touch` cannot
 * resurrect a removed key, and no mutation splits a `mv`.  One of 64
 * mutexes, picked by (type, key); rename takes both names' stripes in
 * address order.  Lock order: h->mu, then a stripe, then g.mu.
 */
#define NSTRIPES 64
static pthread_mutex_t stripes[NSTRIPES];

static pthread_mutex_t *stripe(uint8_t type, const char *k, size_t len)
{
	return &stripes[name_hash(type, k, len) % NSTRIPES];
}

/* Lock the stripe of n's current name so that the name cannot change while
 * it is held (rename and unlink hold it too).  Returns the locked stripe,
 * or NULL if n has no name (unlinked or renamed over): nothing to order. */
static pthread_mutex_t *name_lock(node *n)
{
	for (;;) {
		pthread_mutex_lock(&g.mu);
		bool named = n->named;
		mf_slice key = mf_slice_ref(n->key);
		pthread_mutex_unlock(&g.mu);
		if (!named) {
			mf_slice_unref(&key);
			return NULL;
		}
		pthread_mutex_t *m = stripe(n->type, mf_slice_ptr(key), key.len);
		pthread_mutex_lock(m);
		pthread_mutex_lock(&g.mu);
		bool same = n->named && n->key.len == key.len &&
		            memcmp(mf_slice_ptr(n->key), mf_slice_ptr(key), key.len) == 0;
		pthread_mutex_unlock(&g.mu);
		mf_slice_unref(&key);
		if (same)
			return m;
		pthread_mutex_unlock(m); /* renamed or unlinked meanwhile: look again */
	}
}

/* A pending (created, uncommitted) key that a namespace or attribute op now
 * needs in the store: log its CREATE.  JSON stays pending (an empty
 * document is not one).  Caller holds the name's stripe.  0 or -errno. */
static int materialize(uint8_t type, const char *k, size_t klen)
{
	if (type == MF_T_JSON)
		return 0;
	pthread_mutex_lock(&g.mu);
	node *n = *name_slot(type, k, klen);
	bool pending = n && n->pending;
	pthread_mutex_unlock(&g.mu);
	if (!pending)
		return 0;
	mf_op op = key_op(MF_OP_CREATE, type, k, klen);
	int r = commit(&op);
	mf_op_clear(&op);
	if (r == 0) {
		pthread_mutex_lock(&g.mu);
		n = *name_slot(type, k, klen);
		if (n)
			n->pending = false;
		pthread_mutex_unlock(&g.mu);
	}
	return r;
}

/* Tell the kernel a node's cached attributes and pages may be stale.
 * Called only outside the kernel's locked paths for that inode (flush,
 * release, fsync, xattr, pop) — see the deadlock note in fuse_lowlevel.h. */
static void invalidate(fuse_ino_t ino)
{
	if (g.se)
		fuse_lowlevel_notify_inval_inode(g.se, ino, 0, 0);
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
static void cache_open(struct fuse_file_info *fi)
{
	fi->direct_io = 1;
}

/* Commit a handle (see handle_commit) and then, outside h->mu, send the
 * invalidation the commit asked for. */
static int handle_commit(handle *h, bool final);
static int commit_handle_locked_then_inval(handle *h, bool final)
{
	pthread_mutex_lock(&h->mu);
	int r = handle_commit(h, final);
	fuse_ino_t ino = h->inval_ino;
	bool attr_only = h->inval_attr_only;
	h->inval_ino = 0;
	h->inval_attr_only = false;
	pthread_mutex_unlock(&h->mu);
	if (ino && g.se)
		fuse_lowlevel_notify_inval_inode(g.se, ino, attr_only ? -1 : 0, 0);
	return r;
}

/* ---------- lookup / attrs ---------- */

static void fill_entry(struct fuse_entry_param *e, fuse_ino_t ino)
{
	memset(e, 0, sizeof *e);
	e->ino = ino;
	e->attr_timeout = g.timeout;
	e->entry_timeout = g.timeout;
}

/* Reply to a lookup with the node for (type, key), taking a lookup
 * reference on it; e carries the timeouts to use. */
static void reply_node_entry(fuse_req_t req, uint8_t type, const char *k, size_t len,
                             struct fuse_entry_param *e)
{
	pthread_mutex_lock(&g.mu);
	node *n = node_get(type, k, len);
	int r = n ? node_attr(n, &e->attr) : -ENOMEM;
	if (r == 0) {
		n->nlookup++;
		e->ino = n->ino;
	} else if (n) {
		node_maybe_free(n);
	}
	pthread_mutex_unlock(&g.mu);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_entry(req, e);
}

/* The node key "<doc>/<path>" for a name inside the JDIR node `parent`.
 * A path file name is a file name like any other: at most MF_KEY_MAX bytes
 * (NAME_MAX, what statfs reports as f_namemax), although FUSE passes names
 * up to 1024 bytes.  Checking that before copying is what keeps the node key
 * inside its fixed buffer: doc (a store key, <= MF_KEY_MAX) + '/' + name. */
#define JPATH_NK_MAX (2 * MF_KEY_MAX + 1)
static int jpath_nodekey(fuse_ino_t parent, const char *name, size_t plen,
                         char nk[JPATH_NK_MAX], size_t *klen)
{
	pthread_mutex_lock(&g.mu);
	node *d = by_ino(parent);
	mf_slice key = d && d->type == NODE_JDIR ? mf_slice_ref(d->key) : MF_SLICE_EMPTY;
	pthread_mutex_unlock(&g.mu);
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
static void jpath_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	size_t plen = strlen(name), klen;
	char nk[JPATH_NK_MAX];
	int r = jpath_nodekey(parent, name, plen, nk, &klen);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	r = mf_json_path_check(name, plen) == 0 ? 0 : -ENOENT;
	if (r == 0)
		r = jpath_read(nk, klen, name, plen, NULL, NULL, NULL);
	fill_entry(&e, 0);
	e.attr_timeout = e.entry_timeout = 0; /* the document may change any time */
	if (r) {
		fuse_reply_entry(req, &e); /* negative, not cached */
		return;
	}
	reply_node_entry(req, NODE_JPATH, nk, klen + 1 + plen, &e);
}

static void mf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	static const struct { fuse_ino_t parent; const char *name; fuse_ino_t ino; } fixed[] = {
		{INO_ROOT, "kv", INO_KV}, {INO_ROOT, "json", INO_JSON},
		{INO_ROOT, "lists", INO_LISTS}, {INO_ROOT, ".ctl", INO_CTL},
		{INO_CTL, "stats", INO_STATS}, {INO_CTL, "snapshot", INO_SNAPSHOT},
		{INO_CTL, "pop", INO_POPDIR}, {INO_CTL, "json", INO_JPATHDIR},
	};
	for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
		if (fixed[i].parent == parent && strcmp(fixed[i].name, name) == 0) {
			fill_entry(&e, fixed[i].ino);
			if (fixed[i].ino == INO_STATS || fixed[i].ino == INO_SNAPSHOT) {
				/* Content changes constantly: no attr caching. */
				e.attr_timeout = 0;
				file_attr(fixed[i].ino, fixed[i].ino == INO_SNAPSHOT ? 0644 : 0444, 0,
				          mf_now_ns(), mf_now_ns(), &e.attr);
			} else {
				dir_attr(fixed[i].ino, &e.attr);
			}
			fuse_reply_entry(req, &e);
			return;
		}
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
	uint8_t want = type == NODE_POP ? MF_T_LIST : type == NODE_JDIR ? MF_T_JSON : type;
	bool found = mf_store_get(g.st, name, len, false, &info) == 0 && info.type == want;
	if (!found && type != NODE_POP && type != NODE_JDIR) {
		/* Created through this mount, first commit still to come. */
		pthread_mutex_lock(&g.mu);
		node *pn = *name_slot(type, name, len);
		found = pn && pn->pending;
		pthread_mutex_unlock(&g.mu);
	}
	if (!found) {
		/* Negative entry cached for the same timeout: creates through this
		 * mount invalidate it themselves, and nothing else adds keys. */
		fill_entry(&e, 0);
		if (type == NODE_POP || type == NODE_JDIR)
			e.entry_timeout = 0; /* created through another directory */
		fuse_reply_entry(req, &e);
		return;
	}
	fill_entry(&e, 0);
	if (type == NODE_POP || type == NODE_JDIR)
		e.attr_timeout = e.entry_timeout = 0; /* they come and go with their key */
	reply_node_entry(req, type, name, len, &e);
}

static void forget_one(fuse_ino_t ino, uint64_t nlookup)
{
	node *n = by_ino(ino);
	if (!n)
		return;
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	node_maybe_free(n);
}

static void mf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	pthread_mutex_lock(&g.mu);
	forget_one(ino, nlookup);
	pthread_mutex_unlock(&g.mu);
	fuse_reply_none(req);
}

static void mf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	pthread_mutex_lock(&g.mu);
	for (size_t i = 0; i < count; i++)
		forget_one(f[i].ino, f[i].nlookup);
	pthread_mutex_unlock(&g.mu);
	fuse_reply_none(req);
}

static int ino_attr(fuse_ino_t ino, struct stat *st)
{
	if (ino < INO_FIRST_KEY) {
		if (ino == INO_STATS || ino == INO_SNAPSHOT) {
			int64_t now = mf_now_ns();
			file_attr(ino, ino == INO_SNAPSHOT ? 0644 : 0444, 0, now, now, st);
			return 0;
		}
		if (ino > INO_JPATHDIR)
			return -ENOENT;
		dir_attr(ino, st);
		return 0;
	}
	pthread_mutex_lock(&g.mu);
	node *n = by_ino(ino);
	int r = n ? node_attr(n, st) : -ENOENT;
	pthread_mutex_unlock(&g.mu);
	return r;
}

static void mf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)fi;
	struct stat st;
	int r = ino_attr(ino, &st);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &st, ino == INO_STATS || ino == INO_SNAPSHOT ? 0 : g.timeout);
}

/* ---------- handles ---------- */

static handle *handle_new(node *n, int flags)
{
	handle *h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	pthread_mutex_init(&h->mu, NULL);
	atomic_init(&h->refs, 1);
	h->n = n;
	h->flags = flags;
	pthread_mutex_lock(&g.hmu);
	h->next = g.handles;
	if (g.handles)
		g.handles->prev = h;
	g.handles = h;
	pthread_mutex_unlock(&g.hmu);
	return h;
}

static void handle_free(handle *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&g.hmu);
	if (h->prev)
		h->prev->next = h->next;
	else
		g.handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&g.hmu);
	mf_slice_unref(&h->view);
	mf_slice_unref(&h->data);
	free(h->text);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

static void handle_put(handle *h)
{
	if (atomic_fetch_sub(&h->refs, 1) == 1)
		handle_free(h);
}

/* Current committed value of a node (named: the store; orphan: its copy). */
static int node_value(node *n, mf_slice *out)
{
	pthread_mutex_lock(&g.mu);
	bool named = n->named && !n->transit;
	mf_slice key = mf_slice_ref(n->key);
	if (!named)
		*out = mf_slice_ref(n->orphan);
	pthread_mutex_unlock(&g.mu);
	int r = 0;
	if (named) {
		mf_entry_info info;
		r = mf_store_get(g.st, mf_slice_ptr(key), key.len, true, &info);
		if (r == 0 && info.type != n->type) {
			mf_slice_unref(&info.val);
			r = -ENOENT;
		}
		*out = r == 0 ? info.val : MF_SLICE_EMPTY;
	}
	mf_slice_unref(&key);
	return r;
}

/* Re-pin the handle's view to the latest committed value.  Caller holds h->mu. */
static void view_refresh_latest(handle *h)
{
	mf_slice cur = MF_SLICE_EMPTY;
	if (node_value(h->n, &cur) == 0) {
		mf_slice_unref(&h->view);
		h->view = cur;
	}
}

/* Make room for `len` bytes in the handle's private buffer. */
static void handle_reserve(handle *h, uint64_t len)
{
	if (h->data.buf && h->data.buf->cap >= len)
		return;
	/* Private and unpublished: realloc in place is safe, and for big
	 * buffers glibc uses mremap, so growing a 256 MiB file is cheap. */
	mf_slice_reserve_private(&h->data, len < 4096 ? 4096 : len + len / 2);
}

/* Switch to full mode: private copy of the latest committed value (what a
 * write on a local filesystem would land on: a truncate or commit by others
 * since this handle's open counts), plus what it appended so far. */
static void handle_make_full(handle *h)
{
	if (h->full)
		return;
	if (!h->append)
		view_refresh_latest(h);
	mf_slice cur = h->view;
	uint64_t len = cur.len + (h->append ? h->data.len : 0);
	mf_slice d = mf_slice_alloc(0, len < 4096 ? 4096 : len);
	memcpy(d.buf->data, mf_slice_ptr(cur), cur.len);
	if (h->append)
		memcpy(d.buf->data + cur.len, mf_slice_ptr(h->data), h->data.len);
	d.len = d.buf->used = len;
	mf_slice_unref(&h->data);
	h->data = d;
	h->size = len;
	h->full = true;
	h->append = false;
}

static void set_dirty(handle *h)
{
	pthread_mutex_lock(&g.mu);
	if (!h->dirty || h->hidden)
		h->n->ndirty++;
	h->hidden = false;
	h->n->dirty_size = h->full ? h->size : h->n->dirty_size;
	h->n->dirty_mtime = mf_now_ns();
	h->n->has_set_mtime = false; /* a write after utimens moves mtime on */
	pthread_mutex_unlock(&g.mu);
	h->dirty = true;
}

static void clear_dirty(handle *h)
{
	if (!h->dirty)
		return;
	pthread_mutex_lock(&g.mu);
	if (!h->hidden)
		h->n->ndirty--;
	h->hidden = false;
	pthread_mutex_unlock(&g.mu);
	h->dirty = false;
}

/* `>>` on a path file: appending to a member's text would splice two
 * values, and replacing it would silently drop the append's meaning.
 * EOPNOTSUPP ("Operation not supported"); nothing changes. */
static int jpath_refuse_append(node *n)
{
	size_t klen, plen;
	const char *path;
	jpath_split(n, &klen, &path, &plen);
	fprintf(stderr, "memfluxfs: JSON path json/%.*s %.*s: O_APPEND (>>) refused: "
	        "a member is replaced whole, not appended to\n",
	        (int)klen, mf_slice_ptr(n->key), (int)plen, path);
	return -EOPNOTSUPP;
}

/* Commit a write to /.ctl/json/<key>/<path> as JSON_SETPATH.  Caller holds
 * h->mu; h->dirty is set.  final: the handle is going away (or fsync). */
static int jpath_commit(handle *h, bool final)
{
	node *n = h->n;
	size_t klen, plen;
	const char *path;
	jpath_split(n, &klen, &path, &plen);
	const char *k = mf_slice_ptr(n->key);
	if (!h->wrote) {
		/* Created or opened with O_TRUNC and nothing written: an empty
		 * value is not JSON.  A non-final close stays dirty, since bash
		 * closes a duplicate of the descriptor before it writes; the
		 * last one gives up, once, and logs it. */
		if (final) {
			clear_dirty(h);
			fprintf(stderr, "memfluxfs: JSON path json/%.*s %.*s: empty value refused, "
			        "document unchanged\n", (int)klen, k, (int)plen, path);
		}
		return -EINVAL;
	}
	/* Validated here too (the commit checks again) so that the one log
	 * line names the document, the path and the reason. */
	size_t off;
	const char *why;
	int r = mf_json_validate(mf_slice_ptr(h->data), h->size, &off, &why);
	if (r) {
		fprintf(stderr, "memfluxfs: rejected JSON value for path json/%.*s %.*s: %s at byte %zu\n",
		        (int)klen, k, (int)plen, path, why, off);
	} else {
		mf_op op = key_op(MF_OP_JSON_SETPATH, MF_T_JSON, k, klen);
		op.key2 = mf_slice_from(path, plen, plen);
		op.val = mf_slice_ref(h->data);
		op.val.len = h->size;
		r = commit(&op);
		if (r)
			fprintf(stderr, "memfluxfs: JSON path json/%.*s %.*s: update failed: %s\n",
			        (int)klen, k, (int)plen, path, strerror(-r));
		mf_op_clear(&op);
	}
	/* Success or a refusal (EINVAL, ENOENT): either way this text is done. */
	mf_slice_unref(&h->data);
	h->size = 0;
	h->wrote = false;
	clear_dirty(h);
	if (r == 0) {
		pthread_mutex_lock(&g.mu);
		node *doc = *name_slot(MF_T_JSON, k, klen);
		fuse_ino_t ino = doc ? doc->ino : 0;
		pthread_mutex_unlock(&g.mu);
		h->inval_ino = ino; /* the document changed under its inode */
	}
	return r;
}

/*
 * Commit what a handle wrote as one whole-value op.  Caller holds h->mu.
 * final: the handle is going away, so a list's unterminated last line is
 * pushed now (with its newline completed).
 */
static int handle_commit_inner(handle *h, bool final);

/* Log the time a utimens asked for while handles were dirty, once none is
 * (their commits are in).  Caller holds the name's stripe, so it lands
 * right after those commits and before any rm/mv of the name.  A key that
 * never came to be (a refused first JSON document) has no time to keep. */
static void settime_deferred(node *n)
{
	pthread_mutex_lock(&g.mu);
	bool due = n->has_set_mtime && !n->ndirty && n->named && !n->pending;
	if (due)
		n->has_set_mtime = false;
	int64_t t = n->set_mtime;
	mf_op op = due ? key_op(MF_OP_SETTIME, n->type, mf_slice_ptr(n->key), n->key.len) : (mf_op){0};
	pthread_mutex_unlock(&g.mu);
	if (!due)
		return;
	op.arg = (uint64_t)t;
	int r = commit(&op);
	if (r && r != -ENOENT)
		log_err("setting the time failed for", op.ktype, mf_slice_ptr(op.key), op.key.len, -r);
	mf_op_clear(&op);
}

static int handle_commit(handle *h, bool final)
{
	node *n = h->n;
	if (!h->dirty || n->type == NODE_JPATH)
		return handle_commit_inner(h, final);
	pthread_mutex_t *m = name_lock(n);
	int r = handle_commit_inner(h, final);
	if (m) {
		settime_deferred(n);
		pthread_mutex_unlock(m);
	}
	return r;
}

/* Back to a clean handle after its commit (or a refusal, which is final
 * too: the release must not retry and log twice).  Its view becomes
 * `view` (consumed): what it committed, or what it saw before. */
static void handle_reset(handle *h, mf_slice view)
{
	mf_slice_unref(&h->view);
	h->view = view;
	mf_slice_unref(&h->data);
	h->full = h->append = h->wrote = h->trunc = false;
	h->size = 0;
	clear_dirty(h);
}

/* Commit of a handle whose key is gone (unlinked or renamed over while
 * open): its data lives on only in the node, for the handles still open.
 * The type's rules still hold (a JSON document must be one). */
static int commit_orphan(handle *h)
{
	node *n = h->n;
	if (n->type == MF_T_JSON && h->full) {
		size_t off = 0;
		const char *why = "";
		if (mf_json_validate(mf_slice_ptr(h->data), h->size, &off, &why) != 0) {
			fprintf(stderr, "memfluxfs: invalid JSON written to unlinked document %.*s "
			        "(byte %zu: %s): refused\n", (int)(n->key.len > 255 ? 255 : n->key.len),
			        mf_slice_ptr(n->key), off, why);
			handle_reset(h, mf_slice_ref(h->view));
			return -EINVAL;
		}
	}
	pthread_mutex_lock(&g.mu);
	if (h->full) {
		/* The buffer moves to the node: from now on it is published
		 * (other handles read it), so this handle must not grow it in
		 * place; its next write starts a new private copy. */
		mf_slice_unref(&n->orphan);
		h->data.len = h->size;
		n->orphan = h->data;
		h->data = MF_SLICE_EMPTY;
	} else {
		mf_slice_append(&n->orphan, mf_slice_ptr(h->data), h->data.len);
	}
	n->orphan_mtime = mf_now_ns();
	mf_slice view = mf_slice_ref(n->orphan);
	pthread_mutex_unlock(&g.mu);
	handle_reset(h, view);
	return 0;
}

/* True if the committed value of the handle's key is empty now: then an
 * O_TRUNC handle that wrote nothing has nothing to log. */
static bool committed_empty(node *n, mf_slice key)
{
	mf_entry_info info;
	return mf_store_get(g.st, mf_slice_ptr(key), key.len, false, &info) == 0 &&
	       info.type == n->type && info.size == 0;
}

/*
 * Commit what a handle wrote as one whole-value op.  Caller holds h->mu and
 * the name's stripe (handle_commit).  final: the handle is going away, so a
 * list's unterminated last line is pushed now (with its newline completed).
 */
static int handle_commit_inner(handle *h, bool final)
{
	if (!h->dirty)
		return 0;
	node *n = h->n;
	if (n->type == NODE_JPATH)
		return jpath_commit(h, final);
	if (n->type == MF_T_JSON && !h->wrote && !final) {
		/* A document truncated by open(O_TRUNC) but not yet written is not
		 * a document.  The kernel truncated its view at open; the document
		 * is unchanged, so stop showing this handle's (empty) size and make
		 * the kernel look again before close returns.  The handle stays
		 * dirty: a write may still follow (bash closes a duplicate before
		 * writing), and the release commits (and logs) whatever it holds. */
		pthread_mutex_lock(&g.mu);
		if (!h->hidden)
			n->ndirty--;
		h->hidden = true;
		pthread_mutex_unlock(&g.mu);
		h->inval_ino = n->ino;
		return -EINVAL;
	}
	pthread_mutex_lock(&g.mu);
	bool named = n->named, pending = n->pending;
	mf_slice key = mf_slice_ref(n->key);
	pthread_mutex_unlock(&g.mu);
	if (!named) {
		mf_slice_unref(&key);
		return commit_orphan(h);
	}

	mf_op op = {0};
	op.ktype = n->type;
	op.key = key;
	if (pending && !h->wrote && n->type != MF_T_JSON) {
		/* Created, nothing written yet: this close must leave the key
		 * durable (touch, `: > k`) without clobbering what other handles
		 * append; the handle goes on building its value. */
		op.type = MF_OP_CREATE;
	} else if (!h->wrote && !h->trunc && !pending) {
		/* Dirty only from its open(O_CREAT), nothing written, and the key
		 * exists now (another handle committed it): nothing of its own to
		 * log.  A SET of its empty value would wipe that commit, and an
		 * empty RPUSH is refused. */
		mf_op_clear(&op);
		handle_reset(h, mf_slice_ref(h->view));
		return 0;
	} else if (h->full) {
		if (!h->wrote && h->trunc && committed_empty(n, key)) {
			/* `> k` on an empty key: nothing changes, nothing to log. */
			mf_op_clear(&op);
			handle_reset(h, mf_slice_ref(h->view));
			return 0;
		}
		op.type = MF_OP_SET;
		h->data.len = h->size;
		mf_slice_shrink_private(&h->data);
		op.val = mf_slice_ref(h->data);
		op.val.len = h->size;
	} else if (n->type == MF_T_LIST) {
		/* Every commit point (close, fsync) pushes whole elements; an
		 * unterminated last line is completed here, so it is visible
		 * when close() returns rather than at the later RELEASE. */
		if (mf_slice_ptr(h->data)[h->data.len - 1] != '\n')
			mf_slice_append(&h->data, "\n", 1);
		op.type = MF_OP_RPUSH;
		op.val = mf_slice_ref(h->data);
	} else {
		op.type = MF_OP_APPEND;
		op.val = mf_slice_ref(h->data);
	}
	int r = commit(&op);
	bool was_full = h->full;
	if (r == 0 && op.type == MF_OP_CREATE) {
		if (!h->wrote)
			clear_dirty(h); /* a full handle keeps building its (empty) value */
		if (!h->full) /* nothing of its own yet */
			handle_reset(h, mf_slice_ref(h->view));
	} else if (r == 0 && op.type == MF_OP_SET) {
		handle_reset(h, mf_slice_ref(op.val));
	} else if (r == 0) {
		/* An append landed after whatever the value was: see that. */
		mf_entry_info info = {0};
		mf_slice view = mf_store_get(g.st, mf_slice_ptr(key), key.len, true, &info) == 0
		                    ? info.val : MF_SLICE_EMPTY;
		handle_reset(h, view);
	} else if (r != -ENOSPC && r != -EIO && r != -ENOMEM) {
		/* Refused for good (EINVAL, EEXIST...).  Transient I/O errors keep
		 * the data for a retry by fsync/close. */
		handle_reset(h, mf_slice_ref(h->view));
	}
	pthread_mutex_lock(&g.mu);
	bool others = n->nopen > 1;
	if (r == 0)
		n->pending = false;
	pthread_mutex_unlock(&g.mu);
	if (r)
		log_err("commit failed for", n->type, mf_slice_ptr(op.key), op.key.len, -r);
	mf_op_clear(&op);
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
	return r;
}

static char *ctl_text(fuse_ino_t ino)
{
	return ino == INO_STATS ? mf_db_stats_text(g.db) : mf_db_snapshot_text(g.db);
}

/* Undo an open (or create) the kernel will never release: failed, or the
 * opener was interrupted before the reply.  Drops the open count, the
 * lookups the reply would have given, the handle's dirty mark (and a
 * created key that never got committed), then frees the handle. */
static void undo_open(node *n, handle *h, uint64_t lookups)
{
	pthread_mutex_lock(&g.mu);
	if (h && h->dirty && !h->hidden)
		n->ndirty--;
	n->nopen--;
	n->nlookup -= lookups;
	if (n->pending && !n->ndirty) {
		n->pending = false;
		name_unlink(n);
	}
	node_maybe_free(n);
	pthread_mutex_unlock(&g.mu);
	handle_free(h);
}

static void reply_open(fuse_req_t req, handle *h, struct fuse_file_info *fi)
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
static int open_key(node *n, handle *h, struct fuse_file_info *fi)
{
	bool writer = (fi->flags & O_ACCMODE) != O_RDONLY;
	pthread_mutex_t *m = name_lock(n);
	pthread_mutex_lock(&g.mu);
	bool pending = n->pending;
	mf_slice key = mf_slice_ref(n->key);
	if (!m)
		h->view = mf_slice_ref(n->orphan);
	pthread_mutex_unlock(&g.mu);
	mf_entry_info info = {0};
	int r = 0;
	if (m && !pending) {
		r = mf_store_get(g.st, mf_slice_ptr(key), key.len, true, &info);
		if (r == 0 && info.type != n->type) {
			mf_slice_unref(&info.val);
			r = -ENOENT;
		}
		if (r == 0)
			h->view = info.val;
	}
	if (r == 0)
		cache_open(fi);
	if (m)
		pthread_mutex_unlock(m);
	mf_slice_unref(&key);
	if (r)
		return r;
	if (writer && (fi->flags & O_TRUNC)) {
		h->full = true;
		h->trunc = true;
		h->size = 0;
		set_dirty(h);
		pthread_mutex_lock(&g.mu);
		n->dirty_size = 0;
		pthread_mutex_unlock(&g.mu);
	}
	if (!writer)
		fi->noflush = 1; /* nothing to commit: spare the FLUSH request */
	return 0;
}

static void mf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
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
	pthread_mutex_lock(&g.mu);
	node *n = by_ino(ino);
	/* A nameless key node can be reopened (/proc/self/fd) only while some
	 * handle keeps it alive; otherwise it is gone (unlinked, or a create
	 * that was never committed) even if the kernel still caches its name. */
	bool gone = n && !n->named && !n->nopen && n->type <= MF_T_LIST;
	if (n && !gone)
		n->nopen++;
	pthread_mutex_unlock(&g.mu);
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
			h->full = true; /* the new member text starts empty */
			if (fi->flags & O_TRUNC)
				set_dirty(h); /* a value is due: closing without one is EINVAL */
		}
	} else if (r == 0 && n->type == NODE_JDIR) {
		r = -EISDIR;
	} else if (r == 0 && n->type == NODE_POP && (fi->flags & O_ACCMODE) != O_RDONLY) {
		/* `echo x > .ctl/pop/q` or `: >> .ctl/pop/q` would pop the head
		 * and throw it away: a pop is for a reader only.  EACCES, as for
		 * writing /.ctl/stats ("Permission denied"); nothing is popped. */
		fprintf(stderr, "memfluxfs: write-open of .ctl/pop/%.*s refused: pop files are read-only\n",
		        (int)n->key.len, mf_slice_ptr(n->key));
		r = -EACCES;
	} else if (r == 0 && n->type == NODE_POP && g.readonly) {
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
			pthread_mutex_lock(&g.mu);
			node *ln = *name_slot(MF_T_LIST, mf_slice_ptr(n->key), n->key.len);
			fuse_ino_t lino = ln ? ln->ino : 0;
			pthread_mutex_unlock(&g.mu);
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

/* Create /.ctl/json/<key>/<path>: adding a member (`echo 1 > '$.new'`). */
static void jpath_create(fuse_req_t req, fuse_ino_t parent, const char *name,
                         struct fuse_file_info *fi)
{
	size_t plen = strlen(name), klen;
	char nk[JPATH_NK_MAX];
	int r = jpath_nodekey(parent, name, plen, nk, &klen);
	if (r == 0 && mf_json_path_check(name, plen) != 0) {
		fprintf(stderr, "memfluxfs: bad JSON path '%s' for json/%.*s\n", name, (int)klen, nk);
		r = -EINVAL;
	}
	if (r == 0 && (fi->flags & O_APPEND)) {
		fprintf(stderr, "memfluxfs: JSON path json/%.*s %s: O_APPEND (>>) refused: "
		        "a member is replaced whole, not appended to\n", (int)klen, nk, name);
		r = -EOPNOTSUPP;
	}
	struct fuse_entry_param e;
	fill_entry(&e, 0);
	e.attr_timeout = e.entry_timeout = 0;
	handle *h = NULL;
	node *n = NULL;
	if (r == 0) {
		pthread_mutex_lock(&g.mu);
		n = node_get(NODE_JPATH, nk, klen + 1 + plen);
		h = n ? handle_new(n, fi->flags) : NULL;
		if (h) {
			h->full = true;
			h->dirty = true;
			n->ndirty++;
			n->nlookup++;
			n->nopen++;
			e.ino = n->ino;
			r = node_attr(n, &e.attr);
		} else {
			r = -ENOMEM;
		}
		pthread_mutex_unlock(&g.mu);
	}
	if (r) {
		if (h)
			undo_open(n, h, 1);
		fuse_reply_err(req, -r);
		return;
	}
	fi->direct_io = 1;
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		undo_open(n, h, 1);
}

static void mf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	(void)mode;
	uint8_t type = dir_type(parent);
	size_t len = strlen(name);
	if (parent >= INO_FIRST_KEY) {
		jpath_create(req, parent, name, fi);
		return;
	}
	if (type == MF_T_NONE || type == NODE_POP || type == NODE_JDIR) {
		fuse_reply_err(req, type == MF_T_NONE ? ENOENT : EPERM);
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
	 * untouched (issue #5).  Only the checks run now (EEXIST etc). */
	mf_op op = key_op(MF_OP_CREATE, type, name, len);
	op.time_ns = mf_now_ns();
	int r = mf_store_check(g.st, &op);
	mf_op_clear(&op);
	if (r) {
		if (r != -EEXIST)
			log_err("create failed for", type, name, len, -r);
		else
			fprintf(stderr, "memfluxfs: create %s/%s: key exists with another type\n",
			        mf_type_name(type), name);
		fuse_reply_err(req, -r);
		return;
	}
	mf_entry_info cur;
	bool exists = mf_store_get(g.st, name, len, false, &cur) == 0;
	struct fuse_entry_param e;
	pthread_mutex_lock(&g.mu);
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
		h->full = (fi->flags & O_TRUNC) && (!(fi->flags & O_APPEND) || type == MF_T_JSON);
		h->trunc = h->full;
		h->dirty = true;
		n->ndirty++;
		n->dirty_size = 0;
		n->dirty_mtime = n->orphan_mtime;
	}
	if (h)
		cache_open(fi);
	fill_entry(&e, n ? n->ino : 0);
	r = h && n ? node_attr(n, &e.attr) : -ENOMEM;
	if (r == 0) {
		n->nlookup++;
		n->nopen++;
	} else if (n) {
		if (h && h->dirty)
			n->ndirty--;
		n->pending = false;
		handle_free(h);
		node_maybe_free(n);
	}
	pthread_mutex_unlock(&g.mu);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	if (fuse_reply_create(req, &e, fi) == -ENOENT)
		undo_open(n, h, 1); /* the creator was interrupted */
}

static handle *fh(struct fuse_file_info *fi)
{
	return (handle *)(uintptr_t)fi->fh;
}

/* A direct handle reads one committed version at a time: the one it pinned
 * at open, so a reader going through a value in chunks never sees a mix of
 * versions (nor cut lines of a list being popped).  It moves to the latest
 * committed version whenever it reads offset 0 (a list: only when it reads
 * offset 0 again, so a list reader sees the list as of its open), and, for
 * strings and documents, when it reads at the end of its version and the
 * latest one extends it (so `tail -f` sees appends).  Caller holds h->mu. */
static void view_refresh(handle *h, uint64_t off)
{
	if (h->append)
		return; /* its tail is relative to the pinned view */
	/* A list reader's first read keeps the list as of its open. */
	bool rewind = off == 0 && (h->has_read || h->n->type != MF_T_LIST);
	if (!rewind && (off < h->view.len || h->n->type == MF_T_LIST))
		return;
	mf_slice cur = MF_SLICE_EMPTY;
	if (node_value(h->n, &cur) != 0)
		return;
	bool extends = cur.len > h->view.len &&
	               memcmp(mf_slice_ptr(cur), mf_slice_ptr(h->view), h->view.len) == 0;
	if (rewind || extends) {
		mf_slice_unref(&h->view);
		h->view = cur;
	} else {
		mf_slice_unref(&cur);
	}
}

static void mf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	(void)ino;
	handle *h = fh(fi);
	if (h->text || !h->n) {
		/* The kernel may release the handle as soon as it has the reply,
		 * before fuse_reply_buf returns here: hold a reference. */
		atomic_fetch_add(&h->refs, 1);
		size_t o = (size_t)off < h->textlen ? (size_t)off : h->textlen;
		size_t n = h->textlen - o < size ? h->textlen - o : size;
		fuse_reply_buf(req, h->text + o, n);
		handle_put(h);
		return;
	}
	pthread_mutex_lock(&h->mu);
	mf_slice v = MF_SLICE_EMPTY, tail = MF_SLICE_EMPTY;
	uint64_t vlen;
	if (h->full) {
		/* The private buffer may be reallocated by a concurrent write on
		 * this handle as soon as h->mu is released: reply from a copy. */
		uint64_t o = (uint64_t)off;
		size_t n = o < h->size ? (size_t)(h->size - o < size ? h->size - o : size) : 0;
		char *copy = n ? mf_xmalloc(n) : NULL;
		if (n)
			memcpy(copy, h->data.buf->data + o, n);
		pthread_mutex_unlock(&h->mu);
		fuse_reply_buf(req, copy, n);
		free(copy);
		return;
	} else {
		view_refresh(h, (uint64_t)off);
		v = mf_slice_ref(h->view);
		h->has_read = true;
		vlen = v.len;
		if (h->append && h->n->type != MF_T_LIST)
			tail = mf_slice_ref(h->data);
	}
	pthread_mutex_unlock(&h->mu);
	/* The value bytes are immutable (buf.h), so the reply is built from
	 * them without holding any lock.  A full-mode buffer beyond v.len
	 * (grown by truncate) is zero by construction. */
	struct iovec iov[2];
	int cnt = 0;
	uint64_t o = (uint64_t)off, total = vlen + tail.len;
	if (o < total) {
		uint64_t want = total - o < size ? total - o : size;
		if (o < vlen) {
			uint64_t n1 = vlen - o < want ? vlen - o : want;
			iov[cnt++] = (struct iovec){(char *)mf_slice_ptr(v) + o, n1};
			want -= n1;
			o = vlen;
		}
		if (want)
			iov[cnt++] = (struct iovec){(char *)mf_slice_ptr(tail) + (o - vlen), want};
	}
	fuse_reply_iov(req, iov, cnt);
	mf_slice_unref(&v);
	mf_slice_unref(&tail);
}

static void mf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	(void)ino;
	handle *h = fh(fi);
	if (!h->n) { /* /.ctl/snapshot: any write takes a snapshot */
		int r = mf_db_snapshot(g.db);
		if (r)
			fuse_reply_err(req, -r);
		else
			fuse_reply_write(req, size);
		return;
	}
	if (h->n->type == NODE_POP) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if ((uint64_t)off > MF_VALUE_MAX || size > MF_VALUE_MAX - (uint64_t)off) {
		fuse_reply_err(req, EFBIG); /* before any buffer grows */
		return;
	}
	pthread_mutex_lock(&h->mu);
	int r = 0;
	if (!h->full && (h->flags & O_APPEND) && h->n->type != MF_T_JSON) {
		/* Without writeback cache the filesystem implements O_APPEND:
		 * the bytes go after whatever the value is at commit time. */
		if (!h->append) {
			mf_slice_unref(&h->data);
			h->append = true;
		}
		mf_slice_append(&h->data, buf, size);
	} else if (h->n->type == MF_T_LIST && !h->full) {
		/* A list takes appends only; a write at its end is one too. */
		mf_slice cur = MF_SLICE_EMPTY;
		node_value(h->n, &cur);
		uint64_t end = cur.len + (h->append ? h->data.len : 0);
		mf_slice_unref(&cur);
		if ((uint64_t)off != end) {
			r = -ESPIPE;
			fprintf(stderr, "memfluxfs: write at offset %lld inside list (inode %lu) refused: "
			        "lists take appends only\n", (long long)off, (unsigned long)h->n->ino);
		} else {
			h->append = true;
			mf_slice_append(&h->data, buf, size);
		}
	} else {
		handle_make_full(h);
		if (h->flags & O_APPEND)
			off = (off_t)h->size; /* we implement O_APPEND (no writeback cache) */
		if (r == 0) {
			uint64_t end = (uint64_t)off + size;
			handle_reserve(h, end);
			if ((uint64_t)off > h->size) /* hole: zeros */
				memset(h->data.buf->data + h->size, 0, (size_t)((uint64_t)off - h->size));
			memcpy(h->data.buf->data + off, buf, size);
			if (end > h->size)
				h->size = end;
			h->data.len = h->data.buf->used = h->size;
		}
	}
	if (r == 0) {
		h->wrote = true;
		set_dirty(h);
		if (!h->full) {
			mf_slice cur = MF_SLICE_EMPTY;
			node_value(h->n, &cur);
			pthread_mutex_lock(&g.mu);
			h->n->dirty_size = cur.len + h->data.len;
			pthread_mutex_unlock(&g.mu);
			mf_slice_unref(&cur);
		} else {
			pthread_mutex_lock(&g.mu);
			h->n->dirty_size = h->size;
			pthread_mutex_unlock(&g.mu);
		}
	}
	pthread_mutex_unlock(&h->mu);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}

static void mf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	handle *h = fh(fi);
	int r = 0;
	if (h->n)
		r = commit_handle_locked_then_inval(h, false);
	fuse_reply_err(req, -r);
}

static void mf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	handle *h = fh(fi);
	int r = 0;
	if (h->n) /* fsync is a commit point like a last close */
		r = commit_handle_locked_then_inval(h, true);
	if (r == 0)
		r = mf_db_sync(g.db);
	fuse_reply_err(req, -r);
}

/* fsync(dirfd): renames, unlinks and creates in a directory are WAL records
 * like any other; make everything acknowledged durable.  (Without this the
 * kernel would answer every later fsyncdir itself after one ENOSYS.) */
static void mf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino;
	(void)datasync;
	(void)fi;
	fuse_reply_err(req, -mf_db_sync(g.db));
}

static void mf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	handle *h = fh(fi);
	if (h->n) {
		commit_handle_locked_then_inval(h, true); /* errors logged; release can't report */
		clear_dirty(h);
		node *n = h->n;
		pthread_mutex_lock(&g.mu);
		n->nopen--;
		if (n->pending && !n->nopen) {
			/* A created key whose every handle is gone without a valid
			 * commit (a refused first JSON document, a failed write) never
			 * came into being: drop its name, so stat, ls and open agree
			 * that it does not exist.  The kernel may still hold the inode;
			 * getattr and open on it answer ENOENT (see mf_open). */
			n->pending = false;
			name_unlink(n);
		}
		node_maybe_free(n);
		pthread_mutex_unlock(&g.mu);
	}
	fuse_reply_err(req, 0);
	handle_put(h);
}

static void mf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	struct stat cur;
	int r = ino_attr(ino, &cur);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	/* chmod/chown: the store keeps no permissions.  Setting what is already
	 * there succeeds (cp -p, sed -i do that); anything else is EPERM. */
	if (((to_set & FUSE_SET_ATTR_MODE) && (attr->st_mode & 07777) != (cur.st_mode & 07777)) ||
	    ((to_set & FUSE_SET_ATTR_UID) && attr->st_uid != cur.st_uid) ||
	    ((to_set & FUSE_SET_ATTR_GID) && attr->st_gid != cur.st_gid)) {
		fprintf(stderr, "memfluxfs: chmod/chown on inode %lu refused: permissions are fixed\n",
		        (unsigned long)ino);
		fuse_reply_err(req, EPERM);
		return;
	}
	if (ino < INO_FIRST_KEY) {
		fuse_reply_attr(req, &cur, g.timeout);
		return;
	}
	pthread_mutex_lock(&g.mu);
	node *n = by_ino(ino);
	bool named = n && n->named;
	mf_slice key = n ? mf_slice_ref(n->key) : MF_SLICE_EMPTY;
	uint8_t type = n ? n->type : 0;
	pthread_mutex_unlock(&g.mu);
	if (!n || type == NODE_POP || type == NODE_JDIR || type == NODE_JPATH) {
		mf_slice_unref(&key);
		fuse_reply_err(req, n ? EPERM : ENOENT);
		return;
	}
	handle *h = fi ? fh(fi) : NULL;
	bool by_handle = (to_set & FUSE_SET_ATTR_SIZE) && h && (h->flags & O_ACCMODE) != O_RDONLY;
	uint64_t size = (uint64_t)attr->st_size;
	if ((to_set & FUSE_SET_ATTR_SIZE) && size > MF_VALUE_MAX)
		r = -EFBIG;
	else if ((to_set & FUSE_SET_ATTR_SIZE) && type == MF_T_LIST && size != 0)
		r = -EINVAL;
	if (r == 0 && by_handle) {
		/* ftruncate on a writable handle: part of that handle's value
		 * (private until it commits, like its writes). */
		pthread_mutex_lock(&h->mu);
		handle_make_full(h);
		handle_reserve(h, size);
		if (size > h->size)
			memset(h->data.buf->data + h->size, 0, (size_t)(size - h->size));
		h->size = size;
		h->data.len = h->data.buf->used = size;
		h->wrote = true;
		set_dirty(h);
		pthread_mutex_lock(&g.mu);
		n->dirty_size = size;
		pthread_mutex_unlock(&g.mu);
		pthread_mutex_unlock(&h->mu);
	}
	bool by_name = (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) ||
	               ((to_set & FUSE_SET_ATTR_SIZE) && !by_handle);
	pthread_mutex_t *m = NULL;
	if (r == 0 && by_name) {
		/* Ordered against unlink/rename of the name like every commit by
		 * name: a `touch` racing `rm` cannot bring the key back. */
		m = name_lock(n);
		mf_slice_unref(&key);
		pthread_mutex_lock(&g.mu);
		key = mf_slice_ref(n->key);
		pthread_mutex_unlock(&g.mu);
		named = m != NULL;
		if (named)
			r = materialize(type, mf_slice_ptr(key), key.len);
	}
	if (r == 0 && by_name && (to_set & FUSE_SET_ATTR_SIZE) && named) {
		if (type == MF_T_JSON) {
			/* A cut or padded document is not JSON; truncating to the size
			 * it has is a no-op (rsync --inplace, `truncate -s` to it). */
			mf_entry_info info;
			uint64_t have = mf_store_get(g.st, mf_slice_ptr(key), key.len, false, &info) == 0
			                    ? info.size : 0; /* pending: empty so far */
			r = size == have ? 0 : -EINVAL;
		} else {
			mf_op op = key_op(MF_OP_TRUNCATE, type, mf_slice_ptr(key), key.len);
			op.arg = size;
			r = commit(&op);
			mf_op_clear(&op);
		}
	}
	/* (A size change by name on an orphan without a handle is unobservable.) */
	if (r == 0 && (to_set & (FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_MTIME_NOW)) && named) {
		mf_op op = key_op(MF_OP_SETTIME, type, mf_slice_ptr(key), key.len);
		op.time_ns = mf_now_ns();
		op.arg = (to_set & FUSE_SET_ATTR_MTIME_NOW)
		             ? (uint64_t)op.time_ns
		             : (uint64_t)(attr->st_mtim.tv_sec * 1000000000LL + attr->st_mtim.tv_nsec);
		/* With uncommitted writes (cp -p, tar x, mv: write, futimens,
		 * close), their commit would stamp its own time over this one,
		 * and a new JSON document is not even in the store yet (ENOENT):
		 * keep the time on the node, shown by stat at once and logged
		 * when the last dirty handle has committed (settime_deferred). */
		pthread_mutex_lock(&g.mu);
		bool defer = n->ndirty > 0;
		if (defer) {
			n->has_set_mtime = true;
			n->set_mtime = n->dirty_mtime = (int64_t)op.arg;
		}
		pthread_mutex_unlock(&g.mu);
		if (!defer)
			r = commit(&op);
		mf_op_clear(&op);
	}
	if (m)
		pthread_mutex_unlock(m);
	mf_slice_unref(&key);
	if (r == 0)
		r = ino_attr(ino, &cur);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_attr(req, &cur, g.timeout);
}

/* ---------- namespace ops ---------- */

/* The name of n is about to be removed or changed by a commit (caller holds
 * the name's stripe, so val is its current value): from now on n's readers
 * use this copy.  Caller holds g.mu and clears transit after the commit. */
static void node_transit(node *n, mf_slice val, int64_t mtime)
{
	mf_slice_unref(&n->orphan);
	n->orphan = mf_slice_ref(val);
	n->orphan_mtime = mtime;
	n->transit = true;
	n->busy++;
}

/* The commit node_transit prepared is done (either way).  Caller holds g.mu. */
static void node_transit_end(node *n)
{
	n->transit = false;
	n->busy--;
	node_maybe_free(n);
}

static void mf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	uint8_t type = dir_type(parent);
	size_t len = strlen(name);
	if (type == MF_T_NONE || type == NODE_POP) {
		fuse_reply_err(req, parent == INO_ROOT || parent == INO_CTL ? EPERM : ENOENT);
		return;
	}
	/* Keep the value for open handles before the key goes away. */
	mf_entry_info info = {0};
	pthread_mutex_t *m = stripe(type, name, len);
	pthread_mutex_lock(m);
	int r = materialize(type, name, len);
	if (r == 0)
		r = mf_store_get(g.st, name, len, true, &info);
	if (r == 0 && info.type != type)
		r = -ENOENT;
	if (r == -ENOENT) {
		/* A JSON file created but never given a valid document exists
		 * only as a pending node: removing it just drops the name. */
		pthread_mutex_lock(&g.mu);
		node *pn = *name_slot(type, name, len);
		if (pn && pn->pending) {
			pn->pending = false;
			name_unlink(pn);
			r = 1;
		}
		pthread_mutex_unlock(&g.mu);
	}
	if (r == 0) {
		/* Open handles keep the value: readers switch to the node's copy
		 * before the DEL applies, so no read falls between the two. */
		pthread_mutex_lock(&g.mu);
		node *n = *name_slot(type, name, len);
		if (n)
			node_transit(n, info.val, info.mtime_ns);
		pthread_mutex_unlock(&g.mu);
		mf_op op = key_op(MF_OP_DEL, type, name, len);
		r = commit(&op);
		mf_op_clear(&op);
		pthread_mutex_lock(&g.mu);
		if (n) {
			if (r == 0)
				name_unlink(n);
			node_transit_end(n);
		}
		pthread_mutex_unlock(&g.mu);
	}
	pthread_mutex_unlock(m);
	mf_slice_unref(&info.val);
	fuse_reply_err(req, r == 1 ? 0 : -r);
}

static void mf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	uint8_t type = dir_type(parent), ntype = dir_type(newparent);
	if (type == MF_T_NONE || type == NODE_POP || ntype == MF_T_NONE || ntype == NODE_POP) {
		fuse_reply_err(req, EPERM);
		return;
	}
	if (type != ntype) {
		fprintf(stderr, "memfluxfs: rename %s/%s -> %s/%s: across types is not supported\n",
		        mf_type_name(type), name, mf_type_name(ntype), newname);
		fuse_reply_err(req, EXDEV);
		return;
	}
	if (flags & RENAME_EXCHANGE) {
		fuse_reply_err(req, EINVAL);
		return;
	}
	size_t len = strlen(name), nlen = strlen(newname);
	if (nlen > MF_KEY_MAX) {
		fuse_reply_err(req, ENAMETOOLONG);
		return;
	}
	pthread_mutex_t *m1 = stripe(type, name, len), *m2 = stripe(type, newname, nlen);
	if (m1 > m2) {
		pthread_mutex_t *t = m1;
		m1 = m2;
		m2 = t;
	}
	pthread_mutex_lock(m1);
	if (m2 != m1)
		pthread_mutex_lock(m2);
	mf_entry_info tinfo = {0};
	bool had_target = mf_store_get(g.st, newname, nlen, true, &tinfo) == 0;
	if (had_target && (flags & RENAME_NOREPLACE)) {
		mf_slice_unref(&tinfo.val);
		if (m2 != m1)
			pthread_mutex_unlock(m2);
		pthread_mutex_unlock(m1);
		fuse_reply_err(req, EEXIST);
		return;
	}
	int r = materialize(type, name, len);
	bool same = len == nlen && memcmp(name, newname, len) == 0;
	mf_entry_info sinfo = {0};
	node *t0 = NULL, *s0 = NULL;
	if (r == 0 && !same && mf_store_get(g.st, name, len, true, &sinfo) == 0) {
		/* Both names' readers switch to copies before the RENAME applies:
		 * the target's handles keep the old target, the source's handles
		 * their value, with no read in between seeing either name's new
		 * state.  (Both stripes are held: neither value can change.) */
		pthread_mutex_lock(&g.mu);
		t0 = had_target ? *name_slot(type, newname, nlen) : NULL;
		s0 = *name_slot(type, name, len);
		if (t0)
			node_transit(t0, tinfo.val, tinfo.mtime_ns);
		if (s0)
			node_transit(s0, sinfo.val, sinfo.mtime_ns);
		pthread_mutex_unlock(&g.mu);
	}
	mf_op op = key_op(MF_OP_RENAME, type, name, len);
	op.key2 = mf_slice_from(newname, nlen, nlen);
	if (r == 0)
		r = commit(&op);
	mf_op_clear(&op);
	pthread_mutex_lock(&g.mu);
	if (r == 0 && !same) {
		node *t = *name_slot(type, newname, nlen);
		if (t) { /* renamed over: the old target's handles keep its value */
			name_unlink(t);
			mf_slice_unref(&t->orphan);
			t->orphan = mf_slice_ref(tinfo.val);
			t->orphan_mtime = tinfo.mtime_ns;
		}
		node *s = *name_slot(type, name, len);
		if (s) {
			name_unlink(s);
			mf_slice_unref(&s->key);
			s->key = mf_slice_from(newname, nlen, nlen);
			node **pp = name_slot(type, newname, nlen);
			s->name_next = *pp;
			*pp = s;
			s->named = true;
		}
	}
	if (s0 && s0->named)
		mf_slice_unref(&s0->orphan); /* renamed: it reads its key again */
	if (t0)
		node_transit_end(t0);
	if (s0)
		node_transit_end(s0);
	pthread_mutex_unlock(&g.mu);
	mf_slice_unref(&sinfo.val);
	if (m2 != m1)
		pthread_mutex_unlock(m2);
	pthread_mutex_unlock(m1);
	mf_slice_unref(&tinfo.val);
	fuse_reply_err(req, -r);
}

static void mf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	(void)mode;
	fprintf(stderr, "memfluxfs: mkdir %s in inode %lu refused: no subdirectories (yet)\n",
	        name, (unsigned long)parent);
	fuse_reply_err(req, EPERM);
}

static void mf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	(void)parent;
	(void)rdev;
	fprintf(stderr, "memfluxfs: mknod %s (mode %o) refused: only regular files\n", name, mode);
	fuse_reply_err(req, EPERM);
}

/* The store has one kind of object, a key holding a value: a symlink or a
 * second name for a value has nowhere to live. */
static void mf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	fprintf(stderr, "memfluxfs: symlink %s -> %s in inode %lu refused: only regular files\n",
	        name, link, (unsigned long)parent);
	fuse_reply_err(req, EPERM);
}

static void mf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	fprintf(stderr, "memfluxfs: link %s (inode %lu) in inode %lu refused: a key has one name\n",
	        newname, (unsigned long)ino, (unsigned long)newparent);
	fuse_reply_err(req, EPERM);
}

static void mf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	(void)parent;
	(void)name;
	fuse_reply_err(req, EPERM);
}

/* ---------- directories ---------- */

typedef struct dirh {
	atomic_int refs; /* as for handles: readdir replies in flight */
	char *buf; /* readdir buffer for all entries, built at opendir */
	size_t len;
	struct dirh *prev, *next; /* on dirhs.list until freed */
} dirh;

/* Every live dir handle, so unmount can free those whose RELEASEDIR never
 * comes: the kernel sends it in the background after close() returns and
 * drops it if the unmount aborts the connection first. */
static struct {
	pthread_mutex_t mu;
	dirh *list;
} dirhs = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void dirh_free(dirh *d)
{
	pthread_mutex_lock(&dirhs.mu);
	if (d->prev)
		d->prev->next = d->next;
	else
		dirhs.list = d->next;
	if (d->next)
		d->next->prev = d->prev;
	pthread_mutex_unlock(&dirhs.mu);
	free(d->buf);
	free(d);
}

static void dirh_put(dirh *d)
{
	if (atomic_fetch_sub(&d->refs, 1) == 1)
		dirh_free(d);
}

/* Keys created through this mount whose first commit is still to come
 * exist for its users (open(O_CREAT) makes a file visible at once), so a
 * listing shows them too.  A scan of the node table: the same order as the
 * listing itself.  Returns the new count; keys grows. */
static size_t add_pending_names(uint8_t type, mf_slice **keys, size_t nkeys)
{
	pthread_mutex_lock(&g.mu);
	for (size_t b = 0; b < g.nbuckets; b++) {
		for (node *n = g.inos[b]; n; n = n->ino_next) {
			mf_entry_info info;
			if (n->type != type || !n->pending || !n->named ||
			    mf_store_get(g.st, mf_slice_ptr(n->key), n->key.len, false, &info) == 0)
				continue;
			mf_slice *nk = realloc(*keys, (nkeys + 1) * sizeof *nk);
			if (!nk)
				break;
			*keys = nk;
			nk[nkeys++] = mf_slice_ref(n->key);
		}
	}
	pthread_mutex_unlock(&g.mu);
	return nkeys;
}

static void mf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	int r = ino_attr(ino, &st);
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
	const char *names[8];
	fuse_ino_t inos[8];
	size_t nfixed = 0;
	names[nfixed] = ".", inos[nfixed++] = ino;
	names[nfixed] = "..", inos[nfixed++] = ino == INO_ROOT || ino < INO_CTL ? INO_ROOT : INO_CTL;
	if (ino == INO_POPDIR || ino == INO_JPATHDIR)
		inos[1] = INO_CTL;
	else if (ino >= INO_FIRST_KEY)
		inos[1] = INO_JPATHDIR;
	if (ino == INO_ROOT) {
		names[nfixed] = "kv", inos[nfixed++] = INO_KV;
		names[nfixed] = "json", inos[nfixed++] = INO_JSON;
		names[nfixed] = "lists", inos[nfixed++] = INO_LISTS;
		names[nfixed] = ".ctl", inos[nfixed++] = INO_CTL;
	} else if (ino == INO_CTL) {
		names[nfixed] = "stats", inos[nfixed++] = INO_STATS;
		names[nfixed] = "snapshot", inos[nfixed++] = INO_SNAPSHOT;
		names[nfixed] = "pop", inos[nfixed++] = INO_POPDIR;
		names[nfixed] = "json", inos[nfixed++] = INO_JPATHDIR;
	}
	mf_slice *keys = NULL;
	size_t nkeys = 0;
	uint8_t type = dir_type(ino);
	/* /.ctl/pop lists nothing: opening a pop file pops, so a listed pop
	 * file is one that `grep -r`, `cp -a`, `rsync` or `find -exec cat`
	 * would drain.  Its names still resolve on lookup. */
	if (type != MF_T_NONE && type != NODE_POP)
		nkeys = mf_store_keys(g.st, type == NODE_JDIR ? MF_T_JSON : type, &keys);
	if (type == MF_T_STRING || type == MF_T_JSON || type == MF_T_LIST)
		nkeys = add_pending_names(type, &keys, nkeys);
	size_t cap = 4096;
	d->buf = malloc(cap);
	for (size_t i = 0; d->buf && i < nfixed + nkeys; i++) {
		char name[MF_KEY_MAX + 1];
		struct stat est = {0};
		if (i < nfixed) {
			snprintf(name, sizeof name, "%s", names[i]);
			est.st_ino = inos[i];
			est.st_mode = (inos[i] == INO_STATS || inos[i] == INO_SNAPSHOT) ? S_IFREG : S_IFDIR;
		} else {
			mf_slice k = keys[i - nfixed];
			if (!mf_key_is_filename(mf_slice_ptr(k), k.len))
				continue; /* a RESP key no file name can hold: not listed */
			memcpy(name, mf_slice_ptr(k), k.len);
			name[k.len] = '\0';
			/* d_ino is informational here; lookup gives the real one. */
			est.st_ino = INO_FIRST_KEY + (name_hash(type, name, k.len) >> 8);
			est.st_mode = type == NODE_JDIR ? S_IFDIR : S_IFREG;
		}
		size_t need = fuse_add_direntry(req, NULL, 0, name, NULL, 0);
		if (d->len + need > cap) {
			cap = (d->len + need) * 2;
			char *nb = realloc(d->buf, cap);
			if (!nb) {
				free(d->buf);
				d->buf = NULL;
				break;
			}
			d->buf = nb;
		}
		fuse_add_direntry(req, d->buf + d->len, need, name, &est, (off_t)(d->len + need));
		d->len += need;
	}
	for (size_t i = 0; i < nkeys; i++)
		mf_slice_unref(&keys[i]);
	free(keys);
	if (!d->buf) {
		free(d);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&dirhs.mu);
	d->next = dirhs.list;
	if (dirhs.list)
		dirhs.list->prev = d;
	dirhs.list = d;
	pthread_mutex_unlock(&dirhs.mu);
	fi->fh = (uint64_t)(uintptr_t)d;
	/* -ENOENT: the opener was interrupted and the kernel discarded the
	 * reply, so no RELEASEDIR will ever name this handle. */
	if (fuse_reply_open(req, fi) == -ENOENT)
		dirh_put(d);
}

static void mf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	(void)ino;
	dirh *d = (dirh *)(uintptr_t)fi->fh;
	if ((size_t)off >= d->len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	/* Entries are packed back to back; each one's offset field is the
	 * end of it, so cut at an entry boundary no larger than size. */
	size_t start = (size_t)off, end = start;
	while (end < d->len) {
		const struct { uint64_t ino, off; uint32_t namelen, type; } *de =
			(const void *)(d->buf + end);
		size_t next = (size_t)de->off;
		if (next - start > size)
			break;
		end = next;
	}
	atomic_fetch_add(&d->refs, 1);
	fuse_reply_buf(req, d->buf + start, end - start);
	dirh_put(d);
}

static void mf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	fuse_reply_err(req, 0);
	dirh_put((dirh *)(uintptr_t)fi->fh);
}

static void mf_statfs(fuse_req_t req, fuse_ino_t ino)
{
	(void)ino;
	mf_store_stats ss;
	mf_store_stats_get(g.st, &ss);
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

static void mf_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* Plain readdir: readdirplus would take a lookup reference on every
	 * key of a listing (one node per key for a 1M-key `ls`). */
	conn->want &= ~(unsigned)(FUSE_CAP_READDIRPLUS | FUSE_CAP_READDIRPLUS_AUTO);
	/* No writeback cache: the kernel would own sizes and mtimes and turn
	 * O_APPEND into positional writes, hiding appends from us. */
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->max_write = 1 << 20;
}

static const struct fuse_lowlevel_ops ops = {
	.init = mf_init,
	.lookup = mf_lookup,
	.forget = mf_forget,
	.forget_multi = mf_forget_multi,
	.getattr = mf_getattr,
	.setattr = mf_setattr,
	.mknod = mf_mknod,
	.mkdir = mf_mkdir,
	.symlink = mf_symlink,
	.link = mf_link,
	.unlink = mf_unlink,
	.rmdir = mf_rmdir,
	.rename = mf_rename,
	.open = mf_open,
	.read = mf_read,
	.write = mf_write,
	.flush = mf_flush,
	.release = mf_release,
	.fsync = mf_fsync,
	.fsyncdir = mf_fsyncdir,
	.opendir = mf_opendir,
	.readdir = mf_readdir,
	.releasedir = mf_releasedir,
	.statfs = mf_statfs,
	.create = mf_create,
};

/* Spot -o ro / -o rw (the last one wins, as for mount(8)) without
 * consuming them: returning 1 keeps every argument for fuse_session_new,
 * which passes them on to the kernel. */
enum { KEY_RO = 1, KEY_RW };
static int ro_opt(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)arg;
	(void)outargs;
	if (key == KEY_RO || key == KEY_RW)
		*(bool *)data = key == KEY_RO;
	return 1;
}

struct fuse_session *mf_fs_mount(mf_db *db, struct fuse_args *args, const char *mountpoint,
                                 const mf_fs_opts *opts)
{
	static const struct fuse_opt ro_opts[] = {
		FUSE_OPT_KEY("ro", KEY_RO), FUSE_OPT_KEY("rw", KEY_RW), FUSE_OPT_END,
	};
	if (fuse_opt_parse(args, &g.readonly, ro_opts, ro_opt) != 0)
		return NULL;
	g.db = db;
	g.st = mf_db_store(db);
	for (int i = 0; i < NSTRIPES; i++)
		pthread_mutex_init(&stripes[i], NULL);
	g.uid = getuid();
	g.gid = getgid();
	g.timeout = opts->timeout;
	g.next_ino = INO_FIRST_KEY;
	g.nbuckets = 1024;
	g.names = calloc(g.nbuckets, sizeof *g.names);
	g.inos = calloc(g.nbuckets, sizeof *g.inos);
	clock_gettime(CLOCK_REALTIME, &g.start);
	if (!g.names || !g.inos)
		return NULL;
	struct fuse_session *se = fuse_session_new(args, &ops, sizeof ops, NULL);
	if (!se)
		return NULL;
	if (fuse_session_mount(se, mountpoint) != 0) {
		fuse_session_destroy(se);
		return NULL;
	}
	g.se = se;
	return se;
}

int mf_fs_loop(struct fuse_session *se, const mf_fs_opts *opts)
{
	if (fuse_set_signal_handlers(se) != 0)
		return 1;
	int r;
	if (opts->singlethread) {
		r = fuse_session_loop(se);
	} else {
		struct fuse_loop_config *cfg = fuse_loop_cfg_create();
		fuse_loop_cfg_set_clone_fd(cfg, opts->clone_fd);
		if (opts->max_threads)
			fuse_loop_cfg_set_max_threads(cfg, opts->max_threads);
		r = fuse_session_loop_mt(se, cfg);
		fuse_loop_cfg_destroy(cfg);
	}
	fuse_remove_signal_handlers(se);
	return r;
}

void mf_fs_unmount(struct fuse_session *se)
{
	g.se = NULL;
	fuse_session_unmount(se);
	fuse_session_destroy(se);
	/* Handles whose RELEASE never came (the kernel drops queued requests
	 * at unmount): commit what they hold, as a release would, and free. */
	while (g.handles) {
		handle *h = g.handles;
		if (h->n && h->n->type != NODE_POP)
			handle_commit(h, true);
		handle_free(h);
	}
	for (size_t b = 0; b < g.nbuckets; b++) {
		while (g.inos[b]) {
			node *n = g.inos[b];
			n->nlookup = n->nopen = 0;
			node_maybe_free(n);
		}
	}
	free(g.names);
	free(g.inos);
	/* Dir handles whose RELEASEDIR was dropped by the unmount. */
	size_t ndirs = 0;
	while (dirhs.list) {
		dirh_free(dirhs.list);
		ndirs++;
	}
	if (ndirs)
		fprintf(stderr, "memfluxfs: unmount: freed %zu directory handle(s) never released\n",
		        ndirs);
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
void mf_fs_key_changed(int type, const void *key, size_t len)
{
	struct fuse_session *se = g.se;
	if (!se)
		return;
	static const fuse_ino_t parent[] = {
		[MF_T_STRING] = INO_KV, [MF_T_JSON] = INO_JSON, [MF_T_LIST] = INO_LISTS};
	if (type == MF_T_NONE) {
		/* FLUSHDB: every name the kernel may have cached. */
		pthread_mutex_lock(&g.mu);
		size_t n = 0, cap = g.nnodes + 1;
		node **all = malloc(cap * sizeof *all);
		for (size_t b = 0; all && b < g.nbuckets; b++)
			for (node *x = g.names[b]; x; x = x->name_next)
				if (x->type >= MF_T_STRING && x->type <= MF_T_LIST && n < cap) {
					x->busy++; /* keep it (and its key) until we are done */
					all[n++] = x;
				}
		pthread_mutex_unlock(&g.mu);
		for (size_t i = 0; i < n; i++) {
			/* libfuse sends the name with its NUL: copy it out. */
			char nm[MF_KEY_MAX + 1];
			size_t l = all[i]->key.len > MF_KEY_MAX ? MF_KEY_MAX : all[i]->key.len;
			memcpy(nm, mf_slice_ptr(all[i]->key), l);
			nm[l] = '\0';
			fuse_lowlevel_notify_inval_inode(se, all[i]->ino, 0, 0);
			fuse_lowlevel_notify_inval_entry(se, parent[all[i]->type], nm, l);
		}
		pthread_mutex_lock(&g.mu);
		for (size_t i = 0; i < n; i++) {
			all[i]->busy--;
			node_maybe_free(all[i]);
		}
		pthread_mutex_unlock(&g.mu);
		free(all);
		return;
	}
	if (type < MF_T_STRING || type > MF_T_LIST || !mf_key_is_filename(key, len))
		return; /* no file name can hold it: the mount never showed it */
	pthread_mutex_lock(&g.mu);
	node *n = *name_slot((uint8_t)type, key, len);
	fuse_ino_t ino = n ? n->ino : 0;
	pthread_mutex_unlock(&g.mu);
	if (ino)
		fuse_lowlevel_notify_inval_inode(se, ino, 0, 0);
	/* Even without a node: a failed lookup leaves a negative dentry (the
	 * entry timeout), which would hide a key RESP just created. */
	char name[MF_KEY_MAX + 1];
	memcpy(name, key, len);
	name[len] = '\0';
	fuse_lowlevel_notify_inval_entry(se, parent[type], name, len);
}
