/*
 * fs_int.h — the FUSE adapter's internals, shared by the files of fs/.
 *
 * Files (one job each):
 *   layout.c    the fixed tree (/, /kv, ..., the /.ctl files) as one table
 *   nodes.c     the inode table: (type, key) <-> node, lookup counts, node lifetime
 *   attr.c      attributes: getattr, setattr (truncate/utimens by name or handle), statfs
 *   names.c     name ordering (stripes) and the namespace ops: unlink, rename, refusals
 *   cache.c     the kernel cache policy: how opens use the page cache, invalidation
 *   lookup.c    lookup: the fixed tree and key names to nodes
 *   jsonpath.c  the /.ctl/json/<doc>/<path> member view (and /.ctl/jincr's)
 *   ctlw.c      the write-only /.ctl verbs: incr, srem, jincr
 *   bpop.c      /.ctl/bpop: the pop that waits
 *   handle.c    file handles: views, private buffers, read and write
 *   commit.c    the commit state machine: flush, fsync, release -> one mf_op
 *   open.c      open and create: pinning a view, O_TRUNC, /.ctl files and pops
 *   dir.c       directory handles: listings built at opendir, paged by readdir
 *   session.c   the session: ops table, init, mount, loop, unmount
 *   tree.c      /kv folders and symlinks: names to keys, mkdir, rmdir, symlink,
 *               readlink, folder rename, chmod/chown/atime, creators' modes
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
 * land (O_APPEND semantics).  No torn mix.  A full-mode /kv handle whose
 * changes are small logs them as a WRITEV instead (commit.c): the same
 * whole value, in a few bytes, or refused if the key changed (then SET).
 *
 * Caching.  Entry and attr timeouts (opts.timeout) cut the requests per
 * operation; which opens may use the kernel's page cache, and when it is
 * invalidated, is decided in one place: cache.c.
 *
 * Context.  All state is one struct mf_fs per mount (below), made by
 * mf_fs_mount and given to fuse_session_new as the session's userdata: each
 * op starts with `mf_fs *fs = fuse_req_userdata(req)` and passes fs to
 * every helper.  Nothing in fs/ is a mutable global except main.c's
 * start-up plumbing (callbacks that libfuse and db call without a context
 * pointer; see there).
 *
 * Locking.  ONE order: h->mu, then a name stripe, then fs->mu.
 *  - h->mu: one handle's state (the kernel may send concurrent requests on
 *    one handle); held across that handle's commit.
 *  - fs->stripes[] (names.c): a handle's commit holds its name's stripe
 *    until its op is enqueued (its place in the log, = apply order, is then
 *    fixed; commit.c); unlink, rename and truncate/utimens by name hold it
 *    across their commit and first drain the name's enqueued commits
 *    (name_drain, with fs->drain_cv), so they read its value after them.
 *    Two stripes (rename): in address order.
 *  - fs->mu: the node tables and every node field; never held across a
 *    commit (which waits for the WAL).
 *  - fs->handles.mu, fs->dirs.mu: the links of the live handle and dir
 *    handle lists only; taken alone, nothing is locked while they are held.
 */
#ifndef MF_FS_INT_H
#define MF_FS_INT_H

#include "fs.h"
#include "../store/json.h"
#include "../io/log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
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
	INO_SETS = 10,
	INO_INCRDIR = 11,
	INO_SREMDIR = 12,
	INO_BPOPDIR = 13,
	INO_JINCRDIR = 14,
	INO_EXPIREDIR = 15,
	INO_FIRST_KEY = 64,
};


/* A place on one of the context's lists of live objects (file handles, dir
 * handles): unmount frees what the kernel never released (it drops queued
 * RELEASE/RELEASEDIR requests when the connection goes). */
typedef struct live_link {
	struct live_link *prev, *next;
} live_link;

typedef struct live_list {
	pthread_mutex_t mu; /* guards this list's links only; taken alone */
	live_link *head;
} live_list;

/* The object a live_link is the `live` member of. */
#define LIVE_OF(type, link) ((type *)(void *)((char *)(link) - offsetof(type, live)))

/* A node is a key file (type: the key's mf_type) or one of these, numbered
 * above every mf_type (op.h reserves store types up to 6 and beyond): a pop
 * file (type POP, key = list). */
#define NODE_POP 100
/* JSON path view: /.ctl/json/<key>/ is a NODE_JDIR, /.ctl/json/<key>/<path>
 * a NODE_JPATH whose node key is "<key>/<path>" ('/' is in no key). */
#define NODE_JDIR 101
#define NODE_JPATH 102
/* Write-only control files (ctlw.c): /.ctl/incr/<key> (INCRBY per line),
 * /.ctl/srem/<set> (SREM per line). */
#define NODE_INCR 103
#define NODE_SREM 104
/* /.ctl/bpop/<list>: a pop that waits (bpop.c). */
#define NODE_BPOP 105
/* /.ctl/jincr/<doc>/ (a NODE_JIDIR) and /.ctl/jincr/<doc>/<path> (a
 * NODE_JINCR, node key "<doc>/<path>" as for NODE_JPATH): write-only,
 * each line a JSON.NUMINCRBY of the member (ctlw.c). */
#define NODE_JIDIR 106
#define NODE_JINCR 107
/* /.ctl/expire/<key>: read the key's TTL, write one to set it (ctlw.c). */
#define NODE_EXPIRE 108
/* /kv folders and symlinks (tree.c): key = the path ("a/b"); a /kv file is
 * a MF_T_STRING node whose key is its path too. */
#define NODE_FOLDER 109
#define NODE_LINK 110
/* /kv fifos, sockets and device nodes (tree.c): key = the path.  The
 * kernel does their I/O; the daemon sees lookups, stat and setattr only. */
#define NODE_SPECIAL 111

/* The /kv node types that are not regular files (tree.c handles them). */
static inline bool tree_node(uint8_t t)
{
	return t == NODE_FOLDER || t == NODE_LINK || t == NODE_SPECIAL;
}

/* Key types whose value is lines and whose files take appends only. */
static inline bool lines_type(uint8_t t)
{
	return t == MF_T_LIST || t == MF_T_SET;
}

/* A key file's type (a type directory's), as opposed to a /.ctl node. */
static inline bool key_type(uint8_t t)
{
	return t == MF_T_STRING || t == MF_T_JSON || t == MF_T_LIST || t == MF_T_SET;
}

static inline bool ctlw_type(uint8_t t)
{
	return t == NODE_INCR || t == NODE_SREM || t == NODE_JINCR || t == NODE_EXPIRE;
}

/* /.ctl verbs: names that resolve on lookup, are never listed, and take
 * no unlink, rename or create. */
static inline bool verb_type(uint8_t t)
{
	return t == NODE_POP || t == NODE_BPOP || t == NODE_JIDIR || ctlw_type(t);
}

typedef struct node {
	fuse_ino_t ino;
	uint8_t type;
	bool named;             /* false once unlinked / renamed over */
	bool pending;           /* created, first commit still to come */
	bool transit;           /* unlink/rename of its name in flight: readers use
	                         * `orphan`, set to the value before the commit */
	unsigned busy;          /* held across such a commit: not freed meanwhile */
	unsigned inflight;      /* handle commits enqueued, not yet waited for and
	                         * published (see handle_commit, name_drain) */
	bool stillborn;         /* created, never committed, name dropped: the
	                         * kernel's cached name for it is stale (ESTALE) */
	mf_slice key;
	uint64_t nlookup;
	unsigned nopen;
	struct node *name_next; /* chain in name table */
	struct node *ino_next;  /* chain in inode table */
	/* orphan state: the value when the name went away */
	mf_slice orphan;
	int64_t orphan_mtime;
	/* dirty handles: getattr reports the most recent writer's size, unless
	 * that writer committed while others stayed dirty (then: unknown, and
	 * getattr reports the committed size until one of them writes again) */
	unsigned ndirty;
	bool dirty_stale;
	uint64_t dirty_size;
	int64_t dirty_mtime;
	/* utimens while handles were dirty (cp -p, tar x: write, futimens,
	 * close): the time to log once they have committed, since each commit
	 * stamps its own time. */
	bool has_set_mtime;
	int64_t set_mtime;
	/* created through this mount with attributes other than the defaults
	 * (umask-applied mode, caller's uid/gid): its first record carries
	 * them (tree.c, creator_op) */
	bool has_cattr;
	mf_attr cattr;
	bool has_catime;        /* and an atime set before that record (cp -p):
	                         * cattr.atime_ns, logged right after it */
} node;


/* One inode of the fixed tree (layout.c). */
typedef struct layout_entry {
	fuse_ino_t ino, parent;
	const char *name;
	mode_t mode;
	uint8_t keys; /* what it lists and resolves below it: a key type,
	               * NODE_POP, NODE_JDIR, or MF_T_NONE */
} layout_entry;

/* What a handle's `data` holds: its uncommitted value, if any. */
typedef enum hmode {
	H_VIEW,   /* nothing of its own: reads its view */
	H_FULL,   /* data[0..size) is the whole new value (O_TRUNC, or a write
	           * that copied the latest committed value first) */
	H_APPEND, /* data holds bytes to append at commit (O_APPEND) */
} hmode;

/* Whether a handle owes a commit, and whether getattr shows its size. */
typedef enum hdirty {
	D_CLEAN,  /* nothing to commit */
	D_SIZED,  /* owes a commit; counted in n->ndirty: getattr shows its size */
	D_HIDDEN, /* owes a commit, size not shown: a creator that has not written
	           * (its close owes the CREATE), a JSON O_TRUNC handle between
	           * bash's two closes (see handle_commit_inner) */
} hdirty;

typedef struct handle {
	live_link live;   /* on fs->handles until freed */
	atomic_int refs;  /* 1 for the kernel's handle + 1 per read in flight */
	pthread_mutex_t mu;
	node *n;
	int flags;
	hmode mode;
	hdirty dstate;
	bool wrote;     /* any write/ftruncate since the last commit */
	/* Invalidation a commit asked for, sent once h->mu is released: the
	 * kernel locks page cache pages for it, and a READ holding such a page
	 * may be waiting for h->mu (deadlock otherwise). */
	fuse_ino_t inval_ino;
	bool inval_attr_only;
	bool trunc;     /* opened with O_TRUNC: its value starts empty */
	bool has_read;  /* a later read at offset 0 is a rewind (see view_refresh) */
	atomic_bool privs_checked; /* set-user-ID bits looked at (tree.c, kill_privs) */
	/* The committed value this handle sees: pinned at open (an immutable
	 * slice), re-pinned to what the handle itself committed.  So a handle
	 * keeps the file it opened across unlink/rename-over, and a reader
	 * sees one consistent version however it chunks its reads. */
	mf_slice view;
	mf_slice data;  /* private buffer (refs == 1 while unpublished) */
	uint64_t size;  /* logical size in full mode */
	/* What a full-mode handle changed, so that its commit logs that and
	 * not the whole value (a WRITEV, op.h): its value is the first `keep`
	 * bytes of `base` (the committed value it copied; empty after
	 * O_TRUNC), zero-extended to `size`, with data[] at the byte ranges
	 * in `ranges` (sorted, disjoint, merged) written over it.  Too many
	 * ranges: ranges_over, and the commit is a whole SET. */
	mf_slice base;
	uint64_t keep;
	mf_range *ranges;
	size_t nranges, rcap;
	bool ranges_over;
	char *text;     /* /.ctl files: content fixed at open */
	size_t textlen;
	/* bpop: text is an element popped for this handle and not yet read
	 * to its end; whoever clears it first (the read that delivers it, or
	 * release/undo, which push it back) owns it. */
	atomic_bool owed;
} handle;


/* Name ordering: one of NSTRIPES mutexes per (type, key) (names.c). */
#define NSTRIPES 64

/* The adapter's whole state: one per mount, made by mf_fs_mount and handed
 * to every request as the session's userdata (fuse_req_userdata). */
/* The member spans last found per (document, path): one user-level read or
 * update of a member is several requests (lookup, getattr, open; getattr
 * again after a write), each of which needs the span.  A document version
 * is an immutable slice, so (its slice, path) names one answer; an entry
 * holds a reference to the document it describes, and a newer version of
 * the same key replaces it (jsonpath.c). */
#define JSPAN_SLOTS 8
typedef struct jspan {
	mf_slice doc;           /* the document version (referenced); empty: unused */
	char key[MF_KEY_MAX];
	size_t klen;
	char path[MF_KEY_MAX];
	size_t plen;
	size_t off, len;
	int r;
} jspan;

struct mf_fs {
	mf_kv kv;               /* the keyspace (db/kv.h): all data goes through it */
	pthread_mutex_t jspan_mu; /* the span cache only; taken alone */
	jspan jspans[JSPAN_SLOTS];
	unsigned jspan_next;    /* round-robin victim */
	struct fuse_session *se;
	pthread_mutex_t mu;
	pthread_cond_t drain_cv; /* with mu: a node's inflight count fell to 0 */
	pthread_mutex_t stripes[NSTRIPES];
	live_list handles;      /* file handles (handle.c) */
	live_list dirs;         /* dir handles (dir.c) */
	node **names;
	node **inos;
	size_t nbuckets;
	size_t nnodes;
	uid_t uid;
	gid_t gid;
	double timeout;
	bool readonly;          /* mounted with -o ro: pops are refused too */
	struct timespec start;
	int bpop_max;           /* blocking opens that may wait at once (bpop.c) */
	atomic_int bpop_waiting;
};

/* layout.c: the fixed tree as one table */
const layout_entry *layout_find(fuse_ino_t ino);
const layout_entry *layout_child(fuse_ino_t parent, const char *name);
size_t layout_children(fuse_ino_t parent, const layout_entry **out, size_t max);
void layout_attr(mf_fs *fs, const layout_entry *f, struct stat *st);
double layout_attr_timeout(mf_fs *fs, const layout_entry *f);

/* nodes.c: the inode table: (type, key) <-> node, lookup counts, node lifetime */
uint64_t name_hash(uint8_t type, const char *k, size_t n);
void tables_grow(mf_fs *fs);
node *by_ino(mf_fs *fs, fuse_ino_t ino);
node **name_slot(mf_fs *fs, uint8_t type, const char *k, size_t len);
void name_unlink(mf_fs *fs, node *n);
fuse_ino_t name_ino(mf_fs *fs, uint8_t type, const char *k, size_t len);
node *node_get(mf_fs *fs, uint8_t type, const char *k, size_t len);
node *node_get_shared(mf_fs *fs, uint8_t type, const char *k, size_t len, mf_slice share);
void node_maybe_free(mf_fs *fs, node *n);
void node_stillborn(mf_fs *fs, node *n);
bool pending_visible(const node *n);
void forget_one(mf_fs *fs, fuse_ino_t ino, uint64_t nlookup);
void mf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void mf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f);

/* attr.c: attributes: getattr, setattr (truncate/utimens by name or handle), statfs */
uint8_t dir_type(fuse_ino_t dir);
struct timespec ns_to_ts(int64_t ns);
/* "<dir>/<key>" for a log line, escaped (mf_log_key): never inode numbers,
 * never raw control bytes.  buf holds KEY_NAME_MAX. */
#define KEY_NAME_MAX (3 * MF_KEY_MAX + 32)
const char *key_name(char *buf, size_t len, uint8_t type, const void *key, size_t klen);
void log_err(const char *what, uint8_t type, const char *key, size_t klen, int err);
void dir_attr(mf_fs *fs, fuse_ino_t ino, struct stat *st);
void file_attr(mf_fs *fs, fuse_ino_t ino, mode_t mode, uint64_t size, int64_t mtime, int64_t ctime,
               struct stat *st);
int node_attr(mf_fs *fs, node *n, struct stat *st);
int ino_attr(mf_fs *fs, fuse_ino_t ino, struct stat *st);
void mf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void mf_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi);
void mf_statfs(fuse_req_t req, fuse_ino_t ino);

/* names.c: name ordering (stripes) and the namespace ops: unlink, rename, refusals */
int commit(mf_fs *fs, mf_op *op);
int commit_enqueue(mf_fs *fs, mf_op *op, mf_kv_ticket *t);
mf_op key_op(int type, uint8_t ktype, const char *k, size_t klen);
void names_init(mf_fs *fs);
void live_add(live_list *l, live_link *x);
void live_del(live_list *l, live_link *x);
pthread_mutex_t *stripe(mf_fs *fs, uint8_t type, const char *k, size_t len);
pthread_mutex_t *name_lock(mf_fs *fs, node *n);
int materialize(mf_fs *fs, uint8_t type, const char *k, size_t klen);
void node_transit(node *n, mf_slice val, int64_t mtime);
void node_transit_end(mf_fs *fs, node *n);
void mf_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void mf_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags);
void mf_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void mf_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void mf_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void mf_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void mf_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);

/* cache.c: the kernel cache policy: how opens use the page cache, invalidation */
void invalidate(mf_fs *fs, fuse_ino_t ino);
/* The same for the node of a key changed by another file's op (a pop, a
 * /.ctl verb), if the kernel knows it.  Takes fs->mu. */
void invalidate_key(mf_fs *fs, uint8_t type, const char *k, size_t klen);
void cache_open(struct fuse_file_info *fi);

/* lookup.c: lookup: the fixed tree and key names to nodes */
void fill_entry(mf_fs *fs, struct fuse_entry_param *e, fuse_ino_t ino);
void reply_node_entry(fuse_req_t req, uint8_t type, const char *k, size_t len,
                      struct fuse_entry_param *e);
void mf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);

/* Longest JSON view node key: "<doc>/<path>" (jsonpath.c). */
#define JPATH_NK_MAX (2 * MF_KEY_MAX + 1)

/* jsonpath.c: the /.ctl/json/<doc>/<path> member view */
void jpath_split(node *n, size_t *klen, const char **path, size_t *plen);
int jpath_read(mf_fs *fs, const char *key, size_t klen, const char *path, size_t plen, char **out,
               size_t *outlen, int64_t *mtime);
int jpath_attr(mf_fs *fs, node *n, struct stat *st);
int jpath_nodekey(mf_fs *fs, fuse_ino_t parent, const char *name, size_t plen,
                  char nk[JPATH_NK_MAX], size_t *klen, uint8_t *ptype);
void jpath_unlink(fuse_req_t req, fuse_ino_t parent, const char *name);
void jpath_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
int jpath_commit(mf_fs *fs, handle *h, bool final);
int jpath_append(mf_fs *fs, node *n, const char *p, size_t len);
void jpath_create(fuse_req_t req, fuse_ino_t parent, const char *name, struct fuse_file_info *fi);

/* handle.c: file handles: views, private buffers, read and write */
/* A handle whose writes are lines, each logged as it completes (ctlw.c):
 * the /.ctl verbs, and `>>` on a /.ctl/json path file (appends). */
static inline bool ctlw_handle(const handle *h)
{
	return h->n && (ctlw_type(h->n->type) || (h->n->type == NODE_JPATH && (h->flags & O_APPEND)));
}

handle *handle_new(mf_fs *fs, node *n, int flags);
void handle_free(mf_fs *fs, handle *h);
void handle_put(mf_fs *fs, handle *h);
int node_value(mf_fs *fs, node *n, mf_slice *out);
void view_refresh_latest(mf_fs *fs, handle *h);
int handle_reserve(handle *h, uint64_t len);
int handle_make_full(mf_fs *fs, handle *h);
void handle_changed(handle *h, uint64_t off, uint64_t len);
void handle_resized(handle *h, uint64_t size);
void handle_forget_changes(handle *h);
void set_dirty(mf_fs *fs, handle *h);
void clear_dirty(mf_fs *fs, handle *h);
handle *fh(struct fuse_file_info *fi);
void view_refresh(mf_fs *fs, handle *h, uint64_t off);
void mf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void mf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi);

/* commit.c: the commit state machine: flush, fsync, release -> one mf_op */
int commit_handle_locked_then_inval(mf_fs *fs, handle *h, bool final);
void settime_deferred(mf_fs *fs, node *n);
int handle_commit(mf_fs *fs, handle *h, bool final);
void handle_reset(mf_fs *fs, handle *h, mf_slice view);
int commit_orphan(mf_fs *fs, handle *h);
bool committed_empty(mf_fs *fs, node *n, mf_slice key);
int handle_commit_inner(mf_fs *fs, handle *h, bool final, pthread_mutex_t **stripe_held);
void name_drain(mf_fs *fs, uint8_t type, const char *k, size_t len);
void mf_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void mf_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void mf_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi);
void mf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* ctlw.c: the write-only control files /.ctl/incr, /.ctl/srem, /.ctl/jincr */
int ctlw_write(mf_fs *fs, handle *h, const char *buf, size_t size);
int ctlw_flush(mf_fs *fs, handle *h);
/* /.ctl/expire/<key> opened for reading: its TTL as text. */
int ctlw_ttl_text(mf_fs *fs, node *n, handle *h);

/* bpop.c: /.ctl/bpop/<list>, a pop that waits */
int bpop_open(fuse_req_t req, node *n, handle *h, struct fuse_file_info *fi);
void bpop_giveback(mf_fs *fs, handle *h);

/* open.c: open and create: pinning a view, O_TRUNC, /.ctl files and pops */
char *ctl_text(mf_fs *fs, fuse_ino_t ino);
void undo_open(mf_fs *fs, node *n, handle *h, uint64_t lookups);
void reply_open(fuse_req_t req, handle *h, struct fuse_file_info *fi);
int open_key(mf_fs *fs, node *n, handle *h, struct fuse_file_info *fi);
void mf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void mf_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi);

/* dir.c: directory handles: listings built at opendir, paged by readdir */
void dir_free_all(mf_fs *fs);
size_t pending_names(mf_fs *fs, uint8_t type, mf_slice **out);
size_t add_pending_names(mf_fs *fs, uint8_t type, mf_slice *pend, size_t npend, mf_slice **keys,
                         size_t nkeys);
void mf_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void mf_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void mf_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi);
void mf_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);

/* tree.c: /kv folders and symlinks, attributes */
bool kv_folder(mf_fs *fs, fuse_ino_t dir, mf_slice *prefix);
int name_key(mf_fs *fs, fuse_ino_t parent, const char *name, uint8_t *type, char **key,
             size_t *klen);
uint8_t kv_node_type(int t);
uint8_t node_ktype(uint8_t ntype);
void kv_attr(mf_fs *fs, const mf_entry_info *in, mode_t dflt, struct stat *st);
int tree_node_attr(mf_fs *fs, node *n, struct stat *st);
void kv_root_attr(mf_fs *fs, struct stat *st);
mf_attr creator_attr(mf_fs *fs, fuse_req_t req, mode_t mode, mode_t dflt);
bool attr_is_default(const mf_attr *a);
bool creator_op(node *n, const mf_op *op, mf_op *wire);
void commit_creator_rest(mf_fs *fs, node *n, const mf_op *done);
int setattr_perm(mf_fs *fs, fuse_req_t req, node *n, const struct stat *attr, int to_set,
                 const struct stat *cur);
int setattr_perm_pending(mf_fs *fs, fuse_req_t req, node *n, const struct stat *attr,
                         int to_set, const struct stat *cur);
void kill_privs(mf_fs *fs, fuse_req_t req, handle *h);
int unlink_tree_file(mf_fs *fs, const char *key, size_t klen);
int rename_tree(mf_fs *fs, const char *from, size_t flen, const char *to, size_t tlen,
                unsigned int flags);
void mf_readlink(fuse_req_t req, fuse_ino_t ino);

/* session.c: the session: ops table, init, mount, loop, unmount */
void mf_init(void *userdata, struct fuse_conn_info *conn);

#endif
