/*
 * store.c — the keyspace: a chained hash table of typed, refcounted values.
 *
 * See store.h for the contract.  The structure is deliberately plain: one
 * rwlock, one table, chains, doubling growth.  Mutations are validated by
 * validate() (shared by apply and check, so they cannot disagree) and then
 * performed by code that can no longer fail, so "error => store unchanged"
 * holds by construction.
 */
#include "store.h"
#include "json.h"
#include "set.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

typedef struct dnode dnode;

typedef struct entry {
	struct entry *next;
	uint64_t hash;
	mf_slice key;
	mf_slice val;
	uint64_t count;     /* list elements */
	int64_t mtime_ns;
	int64_t ctime_ns;
	int64_t atime_ns;
	uint64_t version;
	uint32_t mode, uid, gid;
	uint8_t type;
	/* Tree index: a non-folder tree key is in up->files; a folder key owns
	 * its dnode (dir).  Keys that are not tree keys have neither. */
	dnode *up;
	struct entry *sprev, *snext;
	dnode *dir;
	/* Sets: the members, and whether val holds their text.  The text is
	 * made when a reader asks for it (under text_mu, see set_text) and
	 * extended in place by SADD; SREM/SMOVE drop it.  So a set's val is a
	 * cache: value_bytes counts mf_set_bytes, never val.len (vlen). */
	bool text_ok;
	mf_set *set;
	/* Expiry: 0 or the absolute time; entries with one are on the store's
	 * ring (tprev/tnext), which the active cycle walks. */
	int64_t expire_ns;
	struct entry *tprev, *tnext;
	uint32_t cap_epoch; /* the last capture that has this key (walked or
	                       pre-imaged); fits the struct's padding */
} entry;

/* A folder of the tree: explicit (self = its MF_T_FOLDER key) or implicit
 * (exists because something is below it; freed when nothing is). */
struct dnode {
	dnode *next;        /* hash chain */
	uint64_t hash;
	mf_slice path;      /* the folder's key; empty for the root */
	dnode *up;          /* NULL for the root */
	dnode *sprev, *snext; /* siblings in up->subs */
	entry *files;       /* non-folder children */
	dnode *subs;        /* child folders */
	size_t nfiles, nsubs;
	entry *self;
	int64_t mtime_ns, ctime_ns; /* used while there is no self */
};

/* A capture in progress (store.h): items taken so far, walked or saved by
 * apply; the walk's cursor over the buckets. */
typedef struct capture {
	bool active;
	uint32_t epoch;
	size_t cursor;      /* next bucket to walk */
	size_t expect;      /* keys at begin: items + skipped, exactly */
	size_t skipped;     /* keys left out: expired at `now` */
	int64_t now;        /* wall clock at begin (expiry cut-off, as export's) */
	mf_item *items;
	size_t n, cap;
} capture;

struct mf_store {
	pthread_rwlock_t lock;
	entry **tab;
	size_t nbuckets;    /* power of two */
	size_t nkeys;
	uint64_t ntype[MF_T_MAX_ + 1];
	/* Builds a set's text under the read lock (several readers may ask at
	 * once); writers hold the write lock and need not take it. */
	pthread_mutex_t text_mu;
	bool in_multi;      /* applying a MULTI's sub-ops (op.h: SET/DEL rules) */
	entry *ttl;         /* ring of entries with an expiry; the cycle's next */
	uint64_t nexpires;
	uint64_t expired;
	uint64_t value_bytes;
	uint64_t version;   /* last version handed out */
	uint64_t applied_lsn;
	/* the tree index: folders by path, and the root */
	dnode **dtab;
	size_t dbuckets;    /* power of two */
	size_t ndirs;
	dnode root;
	capture cap;        /* walked under the read lock (one walker), saved
	                       into under the write lock (the applier) */
};

/* FNV-1a (set.c) is enough: keys come from one user's file names or local
 * RESP clients, and chains stay short on average because the table
 * doubles at load factor 1. */
static uint64_t hash_key(const char *p, size_t n)
{
	return mf_hash_bytes(p, n);
}

/* The bytes a value counts for (stats, memory limit, EFBIG). */
static uint64_t vlen(const entry *e)
{
	return e->set ? mf_set_bytes(e->set) : e->val.len;
}

mf_store *mf_store_new(void)
{
	mf_store *st = mf_xmalloc(sizeof *st);
	memset(st, 0, sizeof *st);
	/* Writer-preferring: a capture's walker takes the read lock chunk
	 * after chunk, and the applier must get in between two chunks, not
	 * wait for the whole walk.  (Nothing takes the read lock twice.) */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&st->lock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&st->text_mu, NULL);
	st->nbuckets = 1024;
	st->tab = calloc(st->nbuckets, sizeof *st->tab);
	st->dbuckets = 256;
	st->dtab = calloc(st->dbuckets, sizeof *st->dtab);
	if (!st->tab || !st->dtab)
		abort();
	return st;
}

static void entry_free(entry *e)
{
	mf_slice_unref(&e->key);
	mf_slice_unref(&e->val);
	mf_set_free(e->set);
	free(e);
}

static mf_slice value_ref(mf_store *st, entry *e);
static bool expired_at(const entry *e, int64_t t);

/* Take e into the capture as it is now.  A key already expired at the
 * capture's time is left out, as an export leaves it; counted, for the
 * end's check. */
static void cap_add(mf_store *st, entry *e)
{
	capture *c = &st->cap;
	if (expired_at(e, c->now)) {
		c->skipped++;
		return;
	}
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 1024;
		c->items = mf_xrealloc(c->items, c->cap * sizeof *c->items);
	}
	c->items[c->n++] = (mf_item){mf_slice_ref(e->key), e->type, value_ref(st, e),
	                             e->mtime_ns, e->ctime_ns, e->expire_ns, e->mode,
	                             e->uid, e->gid, e->atime_ns};
}

/* The applier is about to change or remove e: if a capture is running and
 * has not taken e yet, take it now, as it was at the capture's LSN (the
 * value's bytes are immutable, so references suffice).  Caller holds the
 * write lock. */
static void cap_touch(mf_store *st, entry *e)
{
	capture *c = &st->cap;
	if (c->active && e->cap_epoch != c->epoch) {
		cap_add(st, e);
		e->cap_epoch = c->epoch;
	}
}

/* FLUSH: drop every key and folder (readers keep their slice references). */
static void flush_all(mf_store *st)
{
	for (size_t i = 0; i < st->nbuckets; i++) {
		entry *e = st->tab[i];
		while (e) {
			entry *n = e->next;
			cap_touch(st, e);
			entry_free(e);
			e = n;
		}
		st->tab[i] = NULL;
	}
	for (size_t i = 0; i < st->dbuckets; i++) {
		dnode *d = st->dtab[i];
		while (d) {
			dnode *n = d->next;
			mf_slice_unref(&d->path);
			free(d);
			d = n;
		}
		st->dtab[i] = NULL;
	}
	st->ndirs = 0;
	st->root.files = NULL;
	st->root.subs = NULL;
	st->root.nfiles = st->root.nsubs = 0;
	st->nkeys = 0;
	memset(st->ntype, 0, sizeof st->ntype);
	st->value_bytes = 0;
	st->ttl = NULL;
	st->nexpires = 0;
}

void mf_store_free(mf_store *st)
{
	if (!st)
		return;
	st->cap.active = false; /* a capture never ended: nothing more to save */
	flush_all(st);
	mf_store_items_free(st->cap.items, st->cap.n);
	free(st->tab);
	free(st->dtab);
	pthread_rwlock_destroy(&st->lock);
	pthread_mutex_destroy(&st->text_mu);
	free(st);
}

static entry **find_slot(mf_store *st, const char *k, size_t n, uint64_t h)
{
	entry **pp = &st->tab[h & (st->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->next) {
		entry *e = *pp;
		if (e->hash == h && e->key.len == n && memcmp(mf_slice_ptr(e->key), k, n) == 0)
			return pp;
	}
	return pp;
}

static entry *find_kn(mf_store *st, const char *k, size_t n)
{
	return *find_slot(st, k, n, hash_key(k, n));
}

static entry *find(mf_store *st, mf_slice key)
{
	return find_kn(st, mf_slice_ptr(key), key.len);
}

static void grow(mf_store *st)
{
	size_t nb = st->nbuckets * 2;
	entry **nt = calloc(nb, sizeof *nt);
	if (!nt)
		return; /* keep the longer chains; still correct */
	for (size_t i = 0; i < st->nbuckets; i++) {
		entry *e = st->tab[i];
		while (e) {
			entry *n = e->next;
			e->next = nt[e->hash & (nb - 1)];
			nt[e->hash & (nb - 1)] = e;
			e = n;
		}
	}
	free(st->tab);
	st->tab = nt;
	st->nbuckets = nb;
}

static void table_link(mf_store *st, entry *e)
{
	entry **pp = &st->tab[e->hash & (st->nbuckets - 1)];
	e->next = *pp;
	*pp = e;
}

static void table_unlink(mf_store *st, entry *e)
{
	entry **pp = &st->tab[e->hash & (st->nbuckets - 1)];
	while (*pp != e)
		pp = &(*pp)->next;
	*pp = e->next;
}

/* ---- the tree index ---- */

bool mf_tree_key(const char *k, size_t n)
{
	if (n == 0 || n > MF_KEY_BYTES_MAX || memchr(k, '\0', n))
		return false;
	size_t i = 0;
	while (i <= n) {
		const char *sl = memchr(k + i, '/', n - i);
		size_t c = (sl ? (size_t)(sl - k) : n) - i; /* component length */
		if (c == 0 || c > MF_KEY_MAX || (c == 1 && k[i] == '.') ||
		    (c == 2 && k[i] == '.' && k[i + 1] == '.'))
			return false;
		i += c + 1;
	}
	return true;
}

/* The types the tree holds: what /kv shows.  JSON documents and lists
 * stay flat keys whatever their names (store.h). */
static bool tree_type(uint8_t t)
{
	return t == MF_T_STRING || t == MF_T_FOLDER || t == MF_T_SYMLINK || t == MF_T_SPECIAL;
}

static bool in_tree(uint8_t t, const char *k, size_t n)
{
	return tree_type(t) && mf_tree_key(k, n);
}

/* Length of the parent folder's path (0: the root). */
static size_t parent_len(const char *k, size_t n)
{
	const char *sl = memrchr(k, '/', n);
	return sl ? (size_t)(sl - k) : 0;
}

static dnode *dfind(mf_store *st, const char *p, size_t n)
{
	if (n == 0)
		return &st->root;
	uint64_t h = hash_key(p, n);
	for (dnode *d = st->dtab[h & (st->dbuckets - 1)]; d; d = d->next)
		if (d->hash == h && d->path.len == n && memcmp(mf_slice_ptr(d->path), p, n) == 0)
			return d;
	return NULL;
}

static void dtab_link(mf_store *st, dnode *d)
{
	dnode **pp = &st->dtab[d->hash & (st->dbuckets - 1)];
	d->next = *pp;
	*pp = d;
}

static void dtab_unlink(mf_store *st, dnode *d)
{
	dnode **pp = &st->dtab[d->hash & (st->dbuckets - 1)];
	while (*pp != d)
		pp = &(*pp)->next;
	*pp = d->next;
}

static void dgrow(mf_store *st)
{
	size_t nb = st->dbuckets * 2;
	dnode **nt = calloc(nb, sizeof *nt);
	if (!nt)
		return;
	for (size_t i = 0; i < st->dbuckets; i++) {
		dnode *d = st->dtab[i];
		while (d) {
			dnode *n = d->next;
			d->next = nt[d->hash & (nb - 1)];
			nt[d->hash & (nb - 1)] = d;
			d = n;
		}
	}
	free(st->dtab);
	st->dtab = nt;
	st->dbuckets = nb;
}

static void sub_link(dnode *up, dnode *d)
{
	d->up = up;
	d->sprev = NULL;
	d->snext = up->subs;
	if (up->subs)
		up->subs->sprev = d;
	up->subs = d;
	up->nsubs++;
}

static void sub_unlink(dnode *d)
{
	if (d->sprev)
		d->sprev->snext = d->snext;
	else
		d->up->subs = d->snext;
	if (d->snext)
		d->snext->sprev = d->sprev;
	d->up->nsubs--;
	d->up = NULL;
}

/* The folder at p (a tree key's prefix), made (implicit, with its missing
 * ancestors) if absent.  Iterative: a path may have thousands of levels. */
static dnode *dget(mf_store *st, const char *p, size_t n, int64_t t)
{
	dnode *d = dfind(st, p, n);
	if (d)
		return d;
	/* Find the deepest existing ancestor, then make the rest downwards. */
	size_t have = parent_len(p, n);
	while (have > 0 && !dfind(st, p, have))
		have = parent_len(p, have);
	dnode *up = dfind(st, p, have);
	while (have < n) {
		const char *sl = memchr(p + have + (have > 0), '/', n - have - (have > 0));
		size_t next = sl ? (size_t)(sl - p) : n;
		if (st->ndirs >= st->dbuckets)
			dgrow(st);
		d = mf_xmalloc(sizeof *d);
		memset(d, 0, sizeof *d);
		d->path = mf_slice_from(p, next, next);
		d->hash = hash_key(p, next);
		d->mtime_ns = d->ctime_ns = t;
		dtab_link(st, d);
		st->ndirs++;
		sub_link(up, d);
		up = d;
		have = next;
	}
	return d;
}

/* Free implicit folders that nothing is below any more, upwards. */
static void dprune(mf_store *st, dnode *d)
{
	while (d && d != &st->root && !d->self && d->nfiles == 0 && d->nsubs == 0) {
		dnode *up = d->up;
		sub_unlink(d);
		dtab_unlink(st, d);
		st->ndirs--;
		mf_slice_unref(&d->path);
		free(d);
		d = up;
	}
}

static void index_add(mf_store *st, entry *e, int64_t t)
{
	const char *k = mf_slice_ptr(e->key);
	if (!in_tree(e->type, k, e->key.len))
		return;
	if (e->type == MF_T_FOLDER) {
		e->dir = dget(st, k, e->key.len, t);
		e->dir->self = e;
		return;
	}
	dnode *up = dget(st, k, parent_len(k, e->key.len), t);
	e->up = up;
	e->sprev = NULL;
	e->snext = up->files;
	if (up->files)
		up->files->sprev = e;
	up->files = e;
	up->nfiles++;
}

static void index_del(mf_store *st, entry *e)
{
	if (e->dir) {
		dnode *d = e->dir;
		/* An implicit folder keeps the explicit one's times. */
		d->mtime_ns = e->mtime_ns;
		d->ctime_ns = e->ctime_ns;
		d->self = NULL;
		e->dir = NULL;
		dprune(st, d);
	} else if (e->up) {
		dnode *up = e->up;
		if (e->sprev)
			e->sprev->snext = e->snext;
		else
			up->files = e->snext;
		if (e->snext)
			e->snext->sprev = e->sprev;
		up->nfiles--;
		e->up = NULL;
		dprune(st, up);
	}
}

/* A folder's entries changed: its mtime and ctime move (POSIX). */
static void dtouch(mf_store *st, dnode *d, int64_t t)
{
	if (!d)
		return;
	if (d->self) {
		cap_touch(st, d->self); /* a capture in progress keeps the old times */
		d->self->mtime_ns = d->self->ctime_ns = t;
		d->self->version = ++st->version;
	} else {
		d->mtime_ns = d->ctime_ns = t;
	}
}

static void touch_parent(mf_store *st, uint8_t type, const char *k, size_t n, int64_t t)
{
	if (in_tree(type, k, n))
		dtouch(st, dfind(st, k, parent_len(k, n)), t);
}

/* Link a new entry (key not present). Takes over `key`.  Files it in the
 * tree, without touching its folder (the snapshot loader uses this too). */
static entry *insert(mf_store *st, mf_slice key, uint8_t type, int64_t t)
{
	if (st->nkeys >= st->nbuckets)
		grow(st);
	entry *e = mf_xmalloc(sizeof *e);
	memset(e, 0, sizeof *e);
	e->key = key;
	e->hash = hash_key(mf_slice_ptr(key), key.len);
	e->type = type;
	e->mtime_ns = e->ctime_ns = e->atime_ns = t;
	e->mode = MF_MODE_DEFAULT;
	e->uid = e->gid = MF_ID_DEFAULT;
	e->version = ++st->version;
	e->cap_epoch = st->cap.epoch; /* born after any capture in progress */
	if (type == MF_T_SET) {
		e->set = mf_set_new();
		e->text_ok = true; /* empty */
	}
	table_link(st, e);
	st->nkeys++;
	st->ntype[type]++;
	index_add(st, e, t);
	return e;
}

/* insert() for an op: the new name changes its folder. */
static entry *insert_new(mf_store *st, mf_slice key, uint8_t type, int64_t t)
{
	entry *e = insert(st, key, type, t);
	touch_parent(st, e->type, mf_slice_ptr(e->key), e->key.len, t);
	return e;
}

/* ---- expiry ---- */

static int64_t wall_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Past its expiry at time t (an op's time_ns, or the wall clock). */
static bool expired_at(const entry *e, int64_t t)
{
	return e && e->expire_ns && e->expire_ns <= t;
}

static void ttl_del(mf_store *st, entry *e)
{
	if (!e->expire_ns)
		return;
	if (e->tnext == e) {
		st->ttl = NULL;
	} else {
		e->tprev->tnext = e->tnext;
		e->tnext->tprev = e->tprev;
		if (st->ttl == e)
			st->ttl = e->tnext;
	}
	e->tprev = e->tnext = NULL;
	e->expire_ns = 0;
	st->nexpires--;
}

/* Set (when != 0) or clear an entry's expiry, keeping the ring. */
static void set_expire(mf_store *st, entry *e, int64_t when)
{
	if (!when) {
		ttl_del(st, e);
		return;
	}
	if (!e->expire_ns) {
		if (!st->ttl) {
			e->tprev = e->tnext = e;
			st->ttl = e;
		} else { /* just behind the cycle's cursor: looked at last */
			e->tnext = st->ttl;
			e->tprev = st->ttl->tprev;
			e->tprev->tnext = e;
			st->ttl->tprev = e;
		}
		st->nexpires++;
	}
	e->expire_ns = when;
}

static void unlink_entry(mf_store *st, entry *e)
{
	table_unlink(st, e);
	index_del(st, e);
	st->nkeys--;
	st->ntype[e->type]--;
	st->value_bytes -= vlen(e);
}

/* Remove a key: out of the table and the expiry ring, freed. */
static void drop_entry(mf_store *st, entry *e)
{
	cap_touch(st, e); /* a capture in progress keeps the key as it was */
	unlink_entry(st, e);
	ttl_del(st, e);
	entry_free(e);
}

/* An op's view of a key: one past its expiry at the op's time is deleted
 * first (op.h, expiry rule), so every op decides as replay will. */
static entry *find_live(mf_store *st, mf_slice key, int64_t t)
{
	entry *e = find(st, key);
	if (expired_at(e, t)) {
		drop_entry(st, e);
		st->expired++;
		e = NULL;
	}
	return e;
}

/* An op removes a key: its folder changes. */
static void remove_key(mf_store *st, entry *e, int64_t t)
{
	touch_parent(st, e->type, mf_slice_ptr(e->key), e->key.len, t);
	drop_entry(st, e);
}

uint64_t mf_count_lines(const char *p, size_t n)
{
	uint64_t c = 0;
	const char *end = p + n;
	while (p < end && (p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		c++;
		p++;
	}
	return c;
}

/* Any bytes: RESP clients use keys no file name can hold ('/', NUL,
 * longer than NAME_MAX); the mount simply does not list those. */
static bool valid_key(mf_slice k)
{
	return k.len > 0 && k.len <= MF_KEY_BYTES_MAX;
}

int mf_value_check(mf_type type, const char *p, size_t n, size_t *err_off, const char **why)
{
	if (n > MF_VALUE_MAX) {
		if (why)
			*why = "value too large";
		return -EFBIG;
	}
	if (type == MF_T_JSON)
		return mf_json_validate(p, n, err_off, why);
	return 0;
}

/* A key k of type t about to be made: the tree rules (store.h). */
static int tree_rules(mf_store *st, const char *k, size_t n, uint8_t t)
{
	if (!in_tree(t, k, n))
		return 0;
	/* Walk up to the nearest existing folder: above it the rules already
	 * held when it was made.  (A JSON document or list named like a
	 * prefix is no folder's business: they are not in the tree.) */
	for (size_t i = parent_len(k, n); i > 0; i = parent_len(k, i)) {
		entry *p = find_kn(st, k, i);
		if (p && tree_type(p->type)) {
			if (p->type != MF_T_FOLDER)
				return -ENOTDIR;
			break;
		}
		if (dfind(st, k, i))
			break;
	}
	if (t != MF_T_FOLDER && dfind(st, k, n))
		return -EISDIR;
	return 0;
}

/* An op that makes the key if absent: same type, or absent and allowed. */
static int make_ok(mf_store *st, const mf_op *op, const entry *e)
{
	if (e)
		return e->type == op->ktype ? 0 : -EEXIST;
	return tree_rules(st, mf_slice_ptr(op->key), op->key.len, op->ktype);
}

/* Types a file in /kv may have; a rename may replace one with the other. */
static bool kv_file(uint8_t t)
{
	return t == MF_T_STRING || t == MF_T_SYMLINK || t == MF_T_SPECIAL;
}

static bool same_key(mf_slice a, mf_slice b)
{
	return a.len == b.len && memcmp(mf_slice_ptr(a), mf_slice_ptr(b), a.len) == 0;
}

/* The op's attribute block is there and its mode (if it sets one) valid. */
static int check_attr_block(const mf_op *op, size_t len, bool mode)
{
	if (op->val.len < len)
		return -EINVAL;
	mf_attr a;
	mf_attr_decode(mf_slice_ptr(op->val), len, &a);
	return mode && a.mode != MF_MODE_DEFAULT && (a.mode & ~07777u) ? -EINVAL : 0;
}

static mf_slice moved_key(mf_slice old, size_t plen, mf_slice q);

/* Would moving d's subtree (prefix plen bytes) to q put a key on an
 * existing key?  Only keys outside the tree can be there (inside it, the
 * target is an empty folder or absent).  O(subtree), as the move. */
static bool subtree_collides(mf_store *st, dnode *d, size_t plen, mf_slice q)
{
	dnode *x = d;
	for (;;) {
		for (entry *f = x->files; f; f = f->snext) {
			mf_slice k = moved_key(f->key, plen, q);
			bool hit = find(st, k) != NULL;
			mf_slice_unref(&k);
			if (hit)
				return true;
		}
		if (x != d && x->self) {
			mf_slice k = moved_key(x->self->key, plen, q);
			entry *c = find(st, k);
			mf_slice_unref(&k);
			if (c)
				return true;
		}
		if (x->subs) {
			x = x->subs;
			continue;
		}
		while (x != d && !x->snext)
			x = x->up;
		if (x == d)
			return false;
		x = x->snext;
	}
}

/* The folder ops (issue 14): MKDIR, RMDIR, RENAMEDIR, SYMLINK, SETATTR,
 * MKFILE, MKNOD. */
static int validate_tree(mf_store *st, const mf_op *op, entry *e)
{
	const char *k = mf_slice_ptr(op->key);
	bool tree = mf_tree_key(k, op->key.len);
	switch (op->type) {
	case MF_OP_MKDIR:
		if (op->ktype != MF_T_FOLDER || !tree || (op->val.len != 0 && op->val.len != MF_ATTR_A_LEN) ||
		    (op->val.len && check_attr_block(op, MF_ATTR_A_LEN, true)))
			return -EINVAL;
		if (e || dfind(st, k, op->key.len))
			return -EEXIST;
		return tree_rules(st, k, op->key.len, MF_T_FOLDER);
	case MF_OP_RMDIR: {
		if (op->ktype != MF_T_FOLDER)
			return -EINVAL;
		if (e && tree_type(e->type) && e->type != MF_T_FOLDER)
			return -ENOTDIR;
		dnode *d = tree ? dfind(st, k, op->key.len) : NULL;
		if (!d)
			return -ENOENT;
		return d->nfiles || d->nsubs ? -ENOTEMPTY : 0;
	}
	case MF_OP_RENAMEDIR: {
		const char *q = mf_slice_ptr(op->key2);
		size_t qn = op->key2.len;
		if (op->ktype != MF_T_FOLDER || !tree || !mf_tree_key(q, qn))
			return -EINVAL;
		if (e && tree_type(e->type) && e->type != MF_T_FOLDER)
			return -ENOTDIR;
		dnode *d = dfind(st, k, op->key.len);
		if (!d)
			return -ENOENT;
		if (same_key(op->key, op->key2))
			return 0;
		/* Into its own subtree: POSIX says EINVAL. */
		if (qn > op->key.len && q[op->key.len] == '/' && memcmp(q, k, op->key.len) == 0)
			return -EINVAL;
		entry *t = find(st, op->key2);
		if (t && t->type != MF_T_FOLDER)
			return tree_type(t->type) ? -ENOTDIR : -EEXIST;
		dnode *td = dfind(st, q, qn);
		int r = td ? (td->nfiles || td->nsubs ? -ENOTEMPTY : 0)
		           : tree_rules(st, q, qn, MF_T_FOLDER);
		/* A moved key may not land on a key outside the tree (a JSON
		 * document or list with that name): one key, one type. */
		return r ? r : subtree_collides(st, d, op->key.len, op->key2) ? -EEXIST : 0;
	}
	case MF_OP_SYMLINK: {
		if (op->ktype != MF_T_SYMLINK || !tree || op->val.len <= MF_ATTR_A_LEN ||
		    op->val.len > MF_ATTR_A_LEN + MF_SYMLINK_MAX ||
		    memchr(mf_slice_ptr(op->val) + MF_ATTR_A_LEN, '\0', op->val.len - MF_ATTR_A_LEN))
			return -EINVAL;
		if (e || dfind(st, k, op->key.len))
			return -EEXIST;
		return tree_rules(st, k, op->key.len, MF_T_SYMLINK);
	}
	case MF_OP_MKNOD: {
		uint32_t fmt;
		uint64_t rdev;
		if (op->ktype != MF_T_SPECIAL || !tree || op->val.len != MF_ATTR_A_LEN + MF_SPECIAL_LEN ||
		    check_attr_block(op, MF_ATTR_A_LEN, true) ||
		    mf_special_decode(mf_slice_ptr(op->val) + MF_ATTR_A_LEN, MF_SPECIAL_LEN, &fmt, &rdev))
			return -EINVAL;
		if (e || dfind(st, k, op->key.len))
			return -EEXIST;
		return tree_rules(st, k, op->key.len, MF_T_SPECIAL);
	}
	case MF_OP_SETATTR:
		if ((op->arg & ~(uint64_t)MF_ATTR_ALL_) || op->val.len != MF_ATTR_B_LEN ||
		    check_attr_block(op, MF_ATTR_B_LEN, op->arg & MF_ATTR_MODE))
			return -EINVAL;
		if (e)
			return e->type == op->ktype ? 0 : -ENOENT;
		/* An implicit folder: SETATTR makes it explicit. */
		return op->ktype == MF_T_FOLDER && tree && dfind(st, k, op->key.len) ? 0 : -ENOENT;
	case MF_OP_MKFILE:
		if (op->ktype > MF_T_LIST || (op->arg & ~(uint64_t)MF_MKFILE_KEEP) ||
		    check_attr_block(op, MF_ATTR_A_LEN, true) ||
		    ((op->arg & MF_MKFILE_KEEP) && op->val.len != MF_ATTR_A_LEN))
			return -EINVAL;
		if (op->val.len - MF_ATTR_A_LEN > MF_VALUE_MAX)
			return -EFBIG;
		if (!(op->arg & MF_MKFILE_KEEP)) {
			int r = mf_value_check(op->ktype, mf_slice_ptr(op->val) + MF_ATTR_A_LEN,
			                       op->val.len - MF_ATTR_A_LEN, NULL, NULL);
			if (r)
				return r;
		}
		return make_ok(st, op, e);
	default:
		return -EINVAL;
	}
}

/* The new text of a counter (INCRBY/INCRBYFLOAT on e, absent: 0) in buf
 * (MF_NUM_LD_BUF + 2 bytes), or -EINVAL (not a number: the value or the
 * increment) / -ERANGE (overflow, NaN or infinity).  Shared by validate and
 * apply.  *res: INCRBY's result. */
static int counter_text(const entry *e, const mf_op *op, char *buf, size_t *len, long long *res)
{
	const char *p = e ? mf_slice_ptr(e->val) : "0";
	size_t n = e ? e->val.len : 1;
	bool nl;
	int r;
	if (op->type == MF_OP_INCRBY) {
		long long v;
		if ((r = mf_num_parse_ll(p, n, &v, &nl)) != 0 ||
		    (r = mf_num_add_ll(v, (long long)op->arg, res)) != 0)
			return r;
		*len = (size_t)snprintf(buf, MF_NUM_LD_BUF, "%lld", *res);
	} else {
		long double v, inc;
		bool inl;
		if (mf_num_parse_ld(mf_slice_ptr(op->val), op->val.len, &inc, &inl) != 0 || inl ||
		    (r = mf_num_parse_ld(p, n, &v, &nl)) != 0)
			return -EINVAL;
		v += inc;
		if (isnan(v) || isinf(v))
			return -ERANGE;
		*len = mf_num_format_ld(v, buf);
	}
	if (nl) /* keep the mount's newline (echo 5 > /kv/c) */
		buf[(*len)++] = '\n';
	return 0;
}

/* Everything that can make an op fail, checked before anything changes. */
static int validate(mf_store *st, const mf_op *op, entry *e)
{
	if (op->type == MF_OP_FLUSH)
		return op->ktype == MF_T_NONE && op->key.len == 0 ? 0 : -EINVAL;
	if (st->in_multi && op->type == MF_OP_DEL && op->ktype == MF_T_NONE && valid_key(op->key))
		return e ? 0 : -ENOENT; /* any type (MULTI's DEL) */
	if (op->type == MF_OP_EXPIRE || op->type == MF_OP_EXPIRED) /* any type */
		return op->ktype != MF_T_NONE || !valid_key(op->key) ? -EINVAL : e ? 0 : -ENOENT;
	if (!mf_type_valid(op->ktype) || !valid_key(op->key))
		return -EINVAL;
	if ((op->type >= MF_OP_MKDIR && op->type <= MF_OP_MKFILE) || op->type == MF_OP_MKNOD)
		return validate_tree(st, op, e);
	/* Folders, symlinks and special files take only DEL, RENAME and
	 * SETTIME of the older ops (and DEL of a folder is refused below:
	 * RMDIR removes them); their values are not data to edit. */
	if ((op->ktype == MF_T_FOLDER || op->ktype == MF_T_SYMLINK || op->ktype == MF_T_SPECIAL) &&
	    op->type != MF_OP_DEL &&
	    op->type != MF_OP_RENAME && op->type != MF_OP_SETTIME)
		return -EINVAL;
	bool same = e && e->type == op->ktype;
	uint64_t cur = same ? vlen(e) : 0;
	if (op->val.len > MF_VALUE_MAX ||
	    ((op->type == MF_OP_APPEND || op->type == MF_OP_RPUSH || op->type == MF_OP_LPUSH ||
	      op->type == MF_OP_SADD) &&
	     cur + op->val.len + 1 > MF_VALUE_MAX) ||
	    (op->type == MF_OP_SETRANGE &&
	     (op->arg > MF_VALUE_MAX || op->arg + op->val.len > MF_VALUE_MAX)) ||
	    (op->type == MF_OP_WRITEV && op->arg > MF_VALUE_MAX))
		return -EFBIG;
	switch (op->type) {
	case MF_OP_CREATE:
		return make_ok(st, op, e);
	case MF_OP_SET: {
		/* MULTI's SET replaces a key of any type (Redis): the tree rules
		 * then apply as if it were absent. */
		bool any = st->in_multi && op->arg == 1 && e && !same;
		int r = !any ? make_ok(st, op, e) : e->type == MF_T_FOLDER ? -EISDIR
		        : tree_rules(st, mf_slice_ptr(op->key), op->key.len, op->ktype);
		if (r)
			return r;
		return mf_value_check(op->ktype, mf_slice_ptr(op->val), op->val.len, NULL, NULL);
	}
	case MF_OP_APPEND:
		if (op->ktype != MF_T_STRING)
			return -EINVAL;
		return make_ok(st, op, e);
	case MF_OP_RPUSH:
		/* An unterminated last line is completed by apply. */
		if (op->ktype != MF_T_LIST || op->val.len == 0)
			return -EINVAL;
		return make_ok(st, op, e);
	case MF_OP_LPUSH:
		if (op->ktype != MF_T_LIST || op->val.len == 0 ||
		    mf_slice_ptr(op->val)[op->val.len - 1] != '\n')
			return -EINVAL;
		return make_ok(st, op, e);
	case MF_OP_TRUNCATE:
		if (!same)
			return -ENOENT;
		if (op->ktype == MF_T_STRING)
			return op->arg > MF_VALUE_MAX ? -EFBIG : 0;
		if (op->ktype == MF_T_JSON) /* a cut or padded document is not JSON */
			return op->arg == e->val.len ? 0 : -EINVAL;
		return op->arg == 0 ? 0 : -EINVAL;
	case MF_OP_DEL:
		if (!same)
			return -ENOENT;
		if (op->ktype == MF_T_FOLDER)
			return -EISDIR; /* RMDIR removes folders */
		/* arg 1: only an empty value (RESP deletes a list its pop
		 * emptied, as Redis does, without racing a concurrent push). */
		return op->arg == 0 ? 0 : op->arg == 1 && vlen(e) == 0 ? 0 : -ENOTEMPTY;
	case MF_OP_SETTIME:
		return same ? 0 : -ENOENT;
	case MF_OP_SETRANGE:
		if (op->ktype != MF_T_STRING)
			return -EINVAL;
		return make_ok(st, op, e);
	case MF_OP_JSON_DELPATH:
		if (op->ktype != MF_T_JSON)
			return -EINVAL;
		return same ? 0 : -ENOENT;
	case MF_OP_WRITEV: {
		if (op->ktype != MF_T_STRING)
			return -EINVAL;
		if (e && !same)
			return -EEXIST;
		mf_writev w;
		if (mf_writev_open(op, &w) != 0)
			return -EINVAL;
		/* Built on the first keep bytes of a value: that value must be
		 * there (whether they are the same bytes, apply checks). */
		return w.keep && (!same || e->val.len < w.keep) ? -ESTALE : 0;
	}
	case MF_OP_LPOP:
	case MF_OP_RPOP:
		if (op->ktype != MF_T_LIST)
			return -EINVAL;
		if (!same)
			return -ENOENT;
		/* Nothing to pop: refused (and so never logged) rather than a
		 * record that changes nothing, so idle consumers cost no WAL. */
		return e->val.len == 0 || op->arg == 0 ? -ENODATA : 0;
	case MF_OP_RENAME: {
		if (!same)
			return -ENOENT;
		if (op->ktype == MF_T_FOLDER)
			return -EISDIR; /* RENAMEDIR moves folders */
		if (!valid_key(op->key2))
			return -EINVAL;
		entry *t = find(st, op->key2);
		if (t == e)
			return 0;
		if (t) {
			if (t->type == MF_T_FOLDER)
				return -EISDIR;
			/* A file and a symlink replace each other, as in POSIX;
			 * other types stay one keyspace (a key has one type). */
			return t->type == op->ktype || (kv_file(t->type) && kv_file(op->ktype)) ? 0 : -EEXIST;
		}
		return tree_rules(st, mf_slice_ptr(op->key2), op->key2.len, op->ktype);
	}
	case MF_OP_JSON_SETPATH:
		if (op->ktype != MF_T_JSON)
			return -EINVAL;
		if (!same)
			return -ENOENT;
		return mf_value_check(MF_T_JSON, mf_slice_ptr(op->val), op->val.len, NULL, NULL);
	case MF_OP_JSON_NUMINCRBY:
	case MF_OP_JSON_ARRAPPEND:
	case MF_OP_JSON_STRAPPEND:
		/* The document decides the rest (json_edit, in check and apply). */
		if (op->ktype != MF_T_JSON)
			return -EINVAL;
		return same ? 0 : e ? -EEXIST : -ENOENT;
	case MF_OP_INCRBY:
	case MF_OP_INCRBYFLOAT: {
		if (op->ktype != MF_T_STRING)
			return -EINVAL;
		if (e && !same)
			return -EEXIST;
		char buf[MF_NUM_LD_BUF + 2];
		size_t len;
		long long res;
		return counter_text(e, op, buf, &len, &res);
	}
	case MF_OP_SADD:
		if (op->ktype != MF_T_SET || op->val.len == 0)
			return -EINVAL;
		return e && !same ? -EEXIST : 0;
	case MF_OP_SREM:
		if (op->ktype != MF_T_SET || op->val.len == 0)
			return -EINVAL;
		return same ? 0 : e ? -EEXIST : -ENOENT;
	case MF_OP_SMOVE: {
		if (op->ktype != MF_T_SET || !valid_key(op->key2) ||
		    memchr(mf_slice_ptr(op->val), '\n', op->val.len))
			return -EINVAL;
		if (!same)
			return e ? -EEXIST : -ENOENT;
		entry *t = find(st, op->key2);
		return t && t->type != MF_T_SET ? -EEXIST : 0;
	}
	default:
		return -EINVAL;
	}
}

static bool json_path_op(int type)
{
	return type == MF_OP_JSON_SETPATH || type == MF_OP_JSON_DELPATH ||
	       type == MF_OP_JSON_NUMINCRBY || type == MF_OP_JSON_ARRAPPEND ||
	       type == MF_OP_JSON_STRAPPEND;
}

/* Edit a JSON document for a JSON_* path op: the new text in *doc
 * (malloc'd), or -errno.  Shared by check and apply.  res, num (at least
 * MF_JSON_NUM_MAX bytes) and numlen: the op's result (a length, the new
 * number); may be NULL for a check. */
static int json_edit(const entry *e, const mf_op *op, char **doc, size_t *dlen, uint64_t *res,
                     char *num, size_t *numlen)
{
	const char *d = mf_slice_ptr(e->val), *path = mf_slice_ptr(op->key2);
	const char *v = mf_slice_ptr(op->val);
	uint64_t r0;
	char nb[MF_JSON_NUM_MAX];
	size_t nl;
	if (!res)
		res = &r0;
	if (!num)
		num = nb, numlen = &nl;
	switch (op->type) {
	case MF_OP_JSON_NUMINCRBY:
		return mf_json_numincrby(d, e->val.len, path, op->key2.len, v, op->val.len, doc, dlen,
		                         num, numlen);
	case MF_OP_JSON_ARRAPPEND:
		return mf_json_arrappend(d, e->val.len, path, op->key2.len, v, op->val.len, doc, dlen,
		                         res);
	case MF_OP_JSON_STRAPPEND:
		return mf_json_strappend(d, e->val.len, path, op->key2.len, v, op->val.len, doc, dlen,
		                         res);
	default:
		break;
	}
	/* A stored document is valid JSON: one scan, no re-validation. */
	if (op->type == MF_OP_JSON_DELPATH)
		return mf_json_del_path_doc(mf_slice_ptr(e->val), e->val.len, mf_slice_ptr(op->key2),
		                            op->key2.len, doc, dlen, NULL, NULL);
	return mf_json_set_path_doc(mf_slice_ptr(e->val), e->val.len, mf_slice_ptr(op->key2),
	                            op->key2.len, mf_slice_ptr(op->val), op->val.len, doc, dlen,
	                            NULL, NULL);
}

/* A JSON_DELPATH of "$" deletes the whole document. */
static bool json_del_root(const mf_op *op)
{
	return op->type == MF_OP_JSON_DELPATH && op->key2.len == 1 && mf_slice_ptr(op->key2)[0] == '$';
}

/* check and prepare: keep (prepare) hands the edited document of a JSON
 * path op to apply through op->prep. */
static int check_op(mf_store *st, const mf_op *op, mf_op *keep)
{
	pthread_rwlock_rdlock(&st->lock);
	bool keyed = mf_op_has_key(op->type);
	entry *e = keyed && op->key.len <= MF_KEY_BYTES_MAX ? find(st, op->key) : NULL;
	if (op->type != MF_OP_EXPIRED && expired_at(e, op->time_ns ? op->time_ns : wall_ns()))
		e = NULL; /* absent for the op (apply deletes it first) */
	int r = !keyed || op->key.len <= MF_KEY_BYTES_MAX ? validate(st, op, e) : -EINVAL;
	if (op->type == MF_OP_MULTI) {
		/* Sub-ops fail or not at apply, one by one (Redis's EXEC): only
		 * the record's shape is checked before it is logged. */
		mf_op *subs;
		size_t n;
		r = op->key.len ? -EINVAL : mf_multi_decode(op->val, &subs, &n);
		if (r == 0)
			free(subs);
	}
	if (r == 0 && json_path_op(op->type) && !json_del_root(op)) {
		/* Whether the path resolves depends on the document: try it, so
		 * a missing path is refused before it is logged. */
		char *doc = NULL;
		size_t dlen;
		r = json_edit(e, op, &doc, &dlen, NULL, NULL, NULL);
		if (r == 0 && keep &&
		    (op->type == MF_OP_JSON_SETPATH || op->type == MF_OP_JSON_DELPATH)) {
			mf_slice_unref(&keep->prep);
			mf_slice_unref(&keep->prep_of);
			keep->prep = mf_slice_from(doc, dlen, dlen);
			keep->prep_of = mf_slice_ref(e->val);
		}
		free(doc);
	}
	pthread_rwlock_unlock(&st->lock);
	return r;
}

int mf_store_check(mf_store *st, const mf_op *op)
{
	return check_op(st, op, NULL);
}

int mf_store_prepare(mf_store *st, mf_op *op)
{
	return check_op(st, op, op);
}

/* A key loaded from the WAL or a snapshot shares one buffer with its value
 * (one allocation per key).  Before the value moves to another buffer,
 * give the key its own, so the old value's bytes are not kept alive. */
static void detach_key(entry *e)
{
	if (e->key.buf && e->key.buf == e->val.buf) {
		mf_slice k = mf_slice_from(mf_slice_ptr(e->key), e->key.len, e->key.len);
		mf_slice_unref(&e->key);
		e->key = k;
	}
}

/* The key slice an entry keeps: shared with the value when they came in one
 * buffer (WAL record, snapshot), else copied if its buffer holds more. */
static mf_slice own_key(mf_slice key, mf_slice val)
{
	if (!key.buf || key.buf == val.buf || key.buf->cap <= key.len + 16)
		return mf_slice_ref(key);
	return mf_slice_from(mf_slice_ptr(key), key.len, key.len);
}

static void set_val(mf_store *st, entry *e, mf_slice v)
{
	if (v.buf != e->val.buf)
		detach_key(e);
	st->value_bytes -= e->val.len;
	mf_slice_unref(&e->val);
	e->val = v;
	st->value_bytes += v.len;
}

void mf_list_terminate(mf_slice *s)
{
	if (s->len && mf_slice_ptr(*s)[s->len - 1] != '\n')
		mf_slice_append(s, "\n", 1);
}

/* A list value always ends in '\n' (each element is a line); a final line
 * without one is completed (README: an unterminated last line is pushed). */
static mf_slice list_value(mf_slice v)
{
	if (v.len == 0 || mf_slice_ptr(v)[v.len - 1] == '\n')
		return mf_slice_ref(v);
	mf_slice n = mf_slice_from(mf_slice_ptr(v), v.len, v.len + 1);
	mf_slice_append(&n, "\n", 1);
	return n;
}

/* WRITEV (op.h): the value's first keep bytes, zero-extended or cut to the
 * size, with the ranges written over them, in a new buffer (the old bytes
 * are immutable: readers hold slices of them).  A hole stays a hole. */
static int apply_writev(mf_store *st, entry **ep, mf_op *op)
{
	entry *e = *ep;
	mf_writev w;
	mf_writev_open(op, &w); /* validated */
	if (w.keep) {
		/* Exactly the slice the handle started from: the same immutable
		 * bytes, so the hash would match; replay hashes. */
		bool same = op->base.buf && op->base.buf == e->val.buf && op->base.off == e->val.off;
		if (!same && mf_hash64(mf_slice_ptr(e->val), (size_t)w.keep) != w.hash)
			return -ESTALE;
	}
	if (!e)
		e = *ep = insert(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, op->time_ns);
	mf_slice v = mf_slice_zeroed((size_t)op->arg);
	if (v.buf) {
		mf_buf_copy(v.buf, 0, e->val, (size_t)w.keep);
		uint64_t off;
		const char *p;
		uint32_t len;
		while (mf_writev_next(&w, &off, &p, &len))
			mf_buf_write(v.buf, (size_t)off, p, len);
	}
	set_val(st, e, v);
	e->count = 0;
	op->res = op->arg;
	return 0;
}

/* ---- sets ---- */

/* After changing e->set: the count, the store's bytes (from old), and the
 * text cache (keep: SADD extended it in place). */
static void set_changed(mf_store *st, entry *e, uint64_t old_bytes, bool keep_text)
{
	st->value_bytes = st->value_bytes - old_bytes + mf_set_bytes(e->set);
	e->count = mf_set_count(e->set);
	if (!keep_text) {
		detach_key(e);
		mf_slice_unref(&e->val);
		e->text_ok = false;
	}
}

typedef struct sadd_ctx {
	entry *e;
	uint64_t n;
} sadd_ctx;

static void sadd_one(void *ctx, const char *l, size_t len)
{
	sadd_ctx *a = ctx;
	if (mf_set_add(a->e->set, l, len) != 1)
		return;
	a->n++;
	if (a->e->text_ok) { /* in place: O(added), readers' slices unchanged */
		mf_slice_append(&a->e->val, l, len);
		mf_slice_append(&a->e->val, "\n", 1);
	}
}

/* Replace the members by the lines of v (SET, TRUNCATE to 0).  v's bytes
 * become the text when they are exactly the members, one per line. */
static void set_replace(mf_store *st, entry *e, mf_slice v)
{
	uint64_t old = mf_set_bytes(e->set);
	mf_set_free(e->set);
	e->set = mf_set_new();
	set_changed(st, e, old, false); /* drops the text: no appends below */
	sadd_ctx a = {e, 0};
	mf_lines_each(mf_slice_ptr(v), v.len, sadd_one, &a);
	set_changed(st, e, 0, false); /* the new members' bytes and count */
	if (a.n == mf_count_lines(mf_slice_ptr(v), v.len) && mf_set_bytes(e->set) == v.len) {
		e->val = mf_slice_ref(v);
		e->text_ok = true;
	}
}

static void srem_one(void *ctx, const char *l, size_t len)
{
	sadd_ctx *a = ctx;
	a->n += (uint64_t)mf_set_del(a->e->set, l, len);
}

/* SMOVE from e; false if nothing moved (not a member, or key2 = key). */
static bool smove(mf_store *st, entry *e, mf_op *op)
{
	const char *m = mf_slice_ptr(op->val);
	size_t n = op->val.len;
	op->res = 0;
	if (op->key2.len == op->key.len &&
	    memcmp(mf_slice_ptr(op->key), mf_slice_ptr(op->key2), op->key.len) == 0) {
		op->res = mf_set_has(e->set, m, n); /* Redis: no change */
		return false;
	}
	uint64_t old = mf_set_bytes(e->set);
	if (!mf_set_del(e->set, m, n))
		return false;
	op->res = 1;
	set_changed(st, e, old, false);
	entry *d = find(st, op->key2);
	if (!d)
		d = insert(st, own_key(op->key2, MF_SLICE_EMPTY), MF_T_SET, op->time_ns);
	uint64_t dold = mf_set_bytes(d->set);
	sadd_ctx a = {d, 0};
	sadd_one(&a, m, n);
	set_changed(st, d, dold, true);
	d->mtime_ns = d->ctime_ns = op->time_ns;
	d->version = ++st->version;
	return true;
}

static int do_apply(mf_store *st, mf_op *op);
static mf_slice value_ref(mf_store *st, entry *e);

/* MULTI: every sub-op in order, each as apply would do it alone (a failed
 * one changes nothing; the rest go on).  Sub-ops get their own copies of
 * key and value, so no stored key or value keeps the whole record alive. */
static int apply_multi(mf_store *st, mf_op *op)
{
	mf_op *subs;
	size_t n;
	int r = mf_multi_decode(op->val, &subs, &n);
	if (r)
		return r;
	op->sub = mf_xmalloc((n ? n : 1) * sizeof *op->sub);
	op->nsub = n;
	memset(op->sub, 0, (n ? n : 1) * sizeof *op->sub);
	st->in_multi = true;
	for (size_t i = 0; i < n; i++) {
		mf_op s = subs[i];
		mf_op_result *res = &op->sub[i];
		s.key = mf_slice_from(mf_slice_ptr(s.key), s.key.len, s.key.len);
		s.key2 = mf_slice_from(mf_slice_ptr(s.key2), s.key2.len, s.key2.len);
		s.val = mf_slice_from(mf_slice_ptr(s.val), s.val.len, s.val.len);
		s.time_ns = op->time_ns;
		if (s.type == MF_OP_READ) {
			entry *e = s.key.len && s.key.len <= MF_KEY_BYTES_MAX ? find_live(st, s.key, s.time_ns)
			                                                      : NULL;
			res->rc = e ? 0 : -ENOENT;
			if (e) {
				res->type = e->type;
				res->count = e->count;
				res->out = value_ref(st, e);
			}
		} else {
			res->rc = do_apply(st, &s);
			res->res = s.res;
			res->out = s.out;
			s.out = MF_SLICE_EMPTY;
		}
		mf_op_clear(&s);
	}
	st->in_multi = false;
	free(subs);
	return 0;
}

/* APPEND, RPUSH, LPUSH: op->val joins one end of the key's value (the key
 * is created if need be); in place when the buffer has room. */
static entry *add_to_end(mf_store *st, entry *e, const mf_op *op, bool front)
{
	if (!e)
		e = insert_new(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, op->time_ns);
	detach_key(e); /* the append may move the value */
	st->value_bytes += op->val.len;
	if (front)
		mf_slice_prepend(&e->val, mf_slice_ptr(op->val), op->val.len);
	else
		mf_slice_append(&e->val, mf_slice_ptr(op->val), op->val.len);
	return e;
}

/* The new key of an entry or folder moved from prefix p (plen bytes) to q. */
static mf_slice moved_key(mf_slice old, size_t plen, mf_slice q)
{
	size_t n = q.len + old.len - plen;
	mf_slice k = mf_slice_alloc(n, n);
	memcpy(k.buf->data, mf_slice_ptr(q), q.len);
	memcpy(k.buf->data + q.len, mf_slice_ptr(old) + plen, old.len - plen);
	return k;
}

static void rekey_entry(mf_store *st, entry *e, size_t plen, mf_slice q)
{
	cap_touch(st, e); /* a capture in progress keeps it under its old name */
	table_unlink(st, e);
	mf_slice k = moved_key(e->key, plen, q);
	mf_slice_unref(&e->key);
	e->key = k;
	e->hash = hash_key(mf_slice_ptr(k), k.len);
	table_link(st, e);
}

/* RENAMEDIR: rename every folder and key of d's subtree (detached from its
 * parent), preorder without recursion (a path may be thousands deep). */
static void move_subtree(mf_store *st, dnode *d, size_t plen, mf_slice q)
{
	dnode *x = d;
	for (;;) {
		dtab_unlink(st, x);
		mf_slice k = moved_key(x->path, plen, q);
		mf_slice_unref(&x->path);
		x->path = k;
		x->hash = hash_key(mf_slice_ptr(k), k.len);
		dtab_link(st, x);
		for (entry *f = x->files; f; f = f->snext)
			rekey_entry(st, f, plen, q);
		if (x->self)
			rekey_entry(st, x->self, plen, q);
		if (x->subs) {
			x = x->subs;
			continue;
		}
		while (x != d && !x->snext)
			x = x->up;
		if (x == d)
			break;
		x = x->snext;
	}
}

static void set_attrs(entry *e, const mf_attr *a)
{
	e->mode = a->mode;
	e->uid = a->uid;
	e->gid = a->gid;
}

/* RENAMEDIR (validated): the subtree moves in one step, the empty folder
 * it replaces goes, both parents change. */
static void apply_renamedir(mf_store *st, mf_op *op, int64_t t)
{
	if (same_key(op->key, op->key2))
		return;
	dnode *d = dfind(st, mf_slice_ptr(op->key), op->key.len);
	entry *te = find(st, op->key2);
	if (te)
		remove_key(st, te, t); /* an empty folder: replaced */
	dnode *oldup = d->up;
	dtouch(st, oldup, t);
	sub_unlink(d);
	move_subtree(st, d, op->key.len, op->key2);
	const char *q = mf_slice_ptr(d->path);
	dnode *nup = dget(st, q, parent_len(q, d->path.len), t);
	sub_link(nup, d);
	dtouch(st, nup, t);
	dprune(st, oldup);
	if (d->self) {
		d->self->ctime_ns = t;
		d->self->version = ++st->version;
	}
}

/* SETATTR (validated); an implicit folder becomes explicit, keeping its
 * times. */
static void apply_setattr(mf_store *st, mf_op *op, entry *e, int64_t t)
{
	if (!e) {
		dnode *d = dfind(st, mf_slice_ptr(op->key), op->key.len);
		int64_t mt = d->mtime_ns, ct = d->ctime_ns;
		e = insert(st, own_key(op->key, MF_SLICE_EMPTY), MF_T_FOLDER, t);
		e->mtime_ns = e->atime_ns = mt;
		e->ctime_ns = ct;
	}
	mf_attr a;
	mf_attr_decode(mf_slice_ptr(op->val), MF_ATTR_B_LEN, &a);
	if (op->arg & MF_ATTR_MODE)
		e->mode = a.mode;
	if (op->arg & MF_ATTR_UID)
		e->uid = a.uid;
	if (op->arg & MF_ATTR_GID)
		e->gid = a.gid;
	if (op->arg & MF_ATTR_ATIME)
		e->atime_ns = a.atime_ns;
	if (op->arg & MF_ATTR_MTIME)
		e->mtime_ns = a.mtime_ns;
	e->ctime_ns = t;
}

/* MKFILE (validated): SET, or with MF_MKFILE_KEEP CREATE, and the
 * creator's attributes on a key it makes. */
static void apply_mkfile(mf_store *st, mf_op *op, entry *e, int64_t t)
{
	mf_attr a;
	mf_attr_decode(mf_slice_ptr(op->val), MF_ATTR_A_LEN, &a);
	if (op->arg & MF_MKFILE_KEEP) {
		if (!e)
			set_attrs(insert_new(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, t), &a);
		return;
	}
	if (!e) {
		e = insert_new(st, own_key(op->key, op->ktype == MF_T_LIST ? MF_SLICE_EMPTY : op->val),
		               op->ktype, t);
		set_attrs(e, &a);
	}
	mf_slice c = mf_slice_ref(op->val);
	c.off += MF_ATTR_A_LEN;
	c.len -= MF_ATTR_A_LEN;
	if (c.len == 0)
		mf_slice_unref(&c);
	mf_slice v = op->ktype == MF_T_LIST ? list_value(c) : mf_slice_ref(c);
	mf_slice_unref(&c);
	e->count = op->ktype == MF_T_LIST ? mf_count_lines(mf_slice_ptr(v), v.len) : 0;
	set_val(st, e, v);
	e->mtime_ns = e->ctime_ns = t;
	e->version = ++st->version;
}

/* Apply the folder ops (validated). */
static int apply_tree(mf_store *st, mf_op *op, entry *e)
{
	int64_t t = op->time_ns;
	mf_attr a = {MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, t, t};
	switch (op->type) {
	case MF_OP_MKDIR:
		e = insert_new(st, own_key(op->key, MF_SLICE_EMPTY), MF_T_FOLDER, t);
		if (op->val.len)
			mf_attr_decode(mf_slice_ptr(op->val), MF_ATTR_A_LEN, &a);
		set_attrs(e, &a);
		return 0;
	case MF_OP_RMDIR:
		if (e)
			remove_key(st, e, t);
		return 0; /* (an implicit folder with nothing below is already gone) */
	case MF_OP_RENAMEDIR:
		apply_renamedir(st, op, t);
		return 0;
	case MF_OP_SYMLINK: {
		e = insert_new(st, own_key(op->key, op->val), MF_T_SYMLINK, t);
		mf_attr_decode(mf_slice_ptr(op->val), MF_ATTR_A_LEN, &a);
		a.mode = MF_MODE_DEFAULT; /* a link's mode is always 0777 */
		set_attrs(e, &a);
		mf_slice v = mf_slice_ref(op->val);
		v.off += MF_ATTR_A_LEN;
		v.len -= MF_ATTR_A_LEN;
		set_val(st, e, v);
		return 0;
	}
	case MF_OP_MKNOD: {
		e = insert_new(st, own_key(op->key, MF_SLICE_EMPTY), MF_T_SPECIAL, t);
		mf_attr_decode(mf_slice_ptr(op->val), MF_ATTR_A_LEN, &a);
		set_attrs(e, &a);
		/* 12 bytes of our own: they need not keep the record's buffer. */
		set_val(st, e, mf_slice_from(mf_slice_ptr(op->val) + MF_ATTR_A_LEN, MF_SPECIAL_LEN,
		                             MF_SPECIAL_LEN));
		return 0;
	}
	case MF_OP_SETATTR:
		apply_setattr(st, op, e, t);
		return 0;
	case MF_OP_MKFILE:
		apply_mkfile(st, op, e, t);
		return 0;
	}
	return -EINVAL;
}

static int do_apply(mf_store *st, mf_op *op)
{
	if (op->type == MF_OP_MULTI)
		return apply_multi(st, op);
	if (op->type == MF_OP_FLUSH) {
		int r = validate(st, op, NULL);
		if (r == 0) {
			flush_all(st);
			dtouch(st, &st->root, op->time_ns);
		}
		return r;
	}
	if (op->key.len > MF_KEY_BYTES_MAX)
		return -EINVAL;
	int64_t t = op->time_ns;
	entry *e = op->type == MF_OP_EXPIRED ? find(st, op->key) : find_live(st, op->key, t);
	if ((op->type == MF_OP_RENAME || op->type == MF_OP_SMOVE) && op->key2.len &&
	    op->key2.len <= MF_KEY_BYTES_MAX)
		find_live(st, op->key2, t); /* an expired target is absent too */
	int r = validate(st, op, e);
	if (r)
		return r;
	/* Every op that gets here may change e (or, RENAME/SMOVE, the key2
	 * entry): a capture in progress takes them first.  (An op that then
	 * changes nothing only costs a pre-image equal to the key as it is.)
	 * Removals take theirs in drop_entry. */
	if (e)
		cap_touch(st, e);
	if ((op->type == MF_OP_RENAME || op->type == MF_OP_SMOVE) && op->key2.len &&
	    op->key2.len <= MF_KEY_BYTES_MAX) {
		entry *tgt = find(st, op->key2);
		if (tgt)
			cap_touch(st, tgt);
	}
	if (st->in_multi && ((op->type == MF_OP_SET && e && e->type != op->ktype) ||
	                     (op->type == MF_OP_DEL && op->ktype == MF_T_NONE))) {
		/* MULTI's Redis-style SET over another type, DEL of any type. */
		drop_entry(st, e);
		e = NULL;
		if (op->type == MF_OP_DEL)
			return 0;
	}

	switch (op->type) {
	case MF_OP_CREATE:
		if (!e)
			insert_new(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, t);
		return 0;
	case MF_OP_EXPIRE: {
		int64_t when = (int64_t)op->arg;
		op->res = when || e->expire_ns;
		if (when && when <= t)
			drop_entry(st, e); /* Redis: an expiry in the past deletes */
		else
			set_expire(st, e, when);
		return 0; /* the value did not change: no new version */
	}
	case MF_OP_EXPIRED:
		op->res = expired_at(e, t);
		if (op->res) {
			drop_entry(st, e);
			st->expired++;
		}
		return 0;
	case MF_OP_SET: {
		if (e)
			set_expire(st, e, 0); /* a new value: no expiry (Redis's SET) */
		if (op->ktype == MF_T_SET) {
			if (!e)
				e = insert(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, t);
			set_replace(st, e, op->val);
			break;
		}
		if (!e)
			e = insert_new(st, own_key(op->key, op->ktype == MF_T_LIST ? MF_SLICE_EMPTY : op->val),
			           op->ktype, t);
		mf_slice v = op->ktype == MF_T_LIST ? list_value(op->val) : mf_slice_ref(op->val);
		e->count = op->ktype == MF_T_LIST ? mf_count_lines(mf_slice_ptr(v), v.len) : 0;
		set_val(st, e, v);
		break;
	}
	case MF_OP_APPEND:
	case MF_OP_RPUSH:
		e = add_to_end(st, e, op, false);
		if (op->type == MF_OP_RPUSH) {
			e->count += mf_count_lines(mf_slice_ptr(op->val), op->val.len);
			if (mf_slice_ptr(op->val)[op->val.len - 1] != '\n') {
				mf_slice_append(&e->val, "\n", 1); /* whole lines only */
				st->value_bytes++;
				e->count++;
			}
		}
		op->res = op->type == MF_OP_RPUSH ? e->count : e->val.len;
		break;
	case MF_OP_TRUNCATE:
		if (e->set) {
			set_replace(st, e, MF_SLICE_EMPTY); /* validate: to 0 only */
		} else if (op->arg <= e->val.len) {
			/* Shrinking shares the buffer: a sub-slice, no copy. */
			mf_slice v = mf_slice_ref(e->val);
			v.len = op->arg;
			if (v.len == 0)
				mf_slice_unref(&v);
			set_val(st, e, v);
		} else {
			/* Growth is a hole: zero pages nobody touched (buf.h). */
			mf_slice v = mf_slice_zeroed(op->arg);
			mf_buf_copy(v.buf, 0, e->val, e->val.len);
			set_val(st, e, v);
		}
		e->count = 0;
		break;
	case MF_OP_DEL:
		remove_key(st, e, t);
		return 0;
	case MF_OP_RENAME: {
		entry *tgt = find(st, op->key2);
		if (tgt == e)
			return 0;
		if (tgt)
			remove_key(st, tgt, t);
		touch_parent(st, e->type, mf_slice_ptr(e->key), e->key.len, t);
		table_unlink(st, e);
		index_del(st, e);
		mf_slice_unref(&e->key);
		e->key = own_key(op->key2, MF_SLICE_EMPTY);
		e->hash = hash_key(mf_slice_ptr(e->key), e->key.len);
		table_link(st, e);
		index_add(st, e, t);
		touch_parent(st, e->type, mf_slice_ptr(e->key), e->key.len, t);
		e->ctime_ns = t;
		e->version = ++st->version;
		return 0;
	}
	case MF_OP_MKDIR:
	case MF_OP_RMDIR:
	case MF_OP_RENAMEDIR:
	case MF_OP_SYMLINK:
	case MF_OP_SETATTR:
	case MF_OP_MKFILE:
	case MF_OP_MKNOD:
		return apply_tree(st, op, e);
	case MF_OP_SETTIME:
		e->mtime_ns = (int64_t)op->arg;
		e->ctime_ns = t;
		return 0;
	case MF_OP_LPOP: {
		const char *p = mf_slice_ptr(e->val);
		size_t n = 0;
		uint64_t k = 0;
		while (k < op->arg && n < e->val.len) {
			const char *nl = memchr(p + n, '\n', e->val.len - n);
			n = (size_t)(nl - p) + 1; /* list values end in '\n' */
			k++;
		}
		mf_slice_unref(&op->out);
		op->out = mf_slice_ref(e->val);
		op->out.len = n;
		if (n == 0)
			mf_slice_unref(&op->out);
		mf_slice v = mf_slice_ref(e->val);
		v.off += n;
		v.len -= n;
		if (v.len == 0) {
			mf_slice_unref(&v);
		} else if (v.off > v.len && v.off > 65536) {
			/* Popped prefix dominates the buffer: copy the rest out so a
			 * long-lived queue does not keep every element ever pushed. */
			mf_slice c = mf_slice_from(mf_slice_ptr(v), v.len, v.len);
			mf_slice_unref(&v);
			v = c;
		}
		e->count -= k;
		set_val(st, e, v);
		break;
	}
	case MF_OP_LPUSH:
		e = add_to_end(st, e, op, true);
		e->count += mf_count_lines(mf_slice_ptr(op->val), op->val.len);
		op->res = e->count;
		break;
	case MF_OP_RPOP: {
		/* Walk back over up to arg lines; the value ends in '\n'. */
		const char *p = mf_slice_ptr(e->val);
		size_t keep = e->val.len;
		uint64_t k = 0;
		while (k < op->arg && keep > 0) {
			const char *nl = keep >= 2 ? memrchr(p, '\n', keep - 1) : NULL;
			keep = nl ? (size_t)(nl - p) + 1 : 0;
			k++;
		}
		mf_slice_unref(&op->out);
		op->out = mf_slice_ref(e->val);
		op->out.off += keep;
		op->out.len -= keep;
		mf_slice v = mf_slice_ref(e->val);
		v.len = keep;
		if (v.len == 0)
			mf_slice_unref(&v);
		e->count -= k;
		set_val(st, e, v);
		break;
	}
	case MF_OP_SETRANGE: {
		if (!e)
			e = insert_new(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, t);
		size_t end = (size_t)op->arg + op->val.len;
		size_t len = end > e->val.len ? end : e->val.len;
		/* A new buffer: bytes of the old value are immutable (readers
		 * hold slices of them). */
		mf_slice v = mf_slice_zeroed(len);
		if (v.buf) {
			mf_buf_copy(v.buf, 0, e->val, e->val.len);
			mf_buf_write(v.buf, op->arg, mf_slice_ptr(op->val), op->val.len);
		}
		set_val(st, e, v);
		op->res = len;
		break;
	}
	case MF_OP_WRITEV:
		r = apply_writev(st, &e, op);
		if (r)
			return r;
		break;
	case MF_OP_JSON_DELPATH:
		if (json_del_root(op)) {
			remove_key(st, e, t);
			return 0;
		}
		/* fall through */
	case MF_OP_JSON_SETPATH:
	case MF_OP_JSON_NUMINCRBY:
	case MF_OP_JSON_ARRAPPEND:
	case MF_OP_JSON_STRAPPEND: {
		mf_slice v;
		/* What prepare built from exactly this value (SETPATH, DELPATH:
		 * the same immutable bytes give the same text; replay edits). */
		if (op->prep.buf && op->prep_of.buf == e->val.buf && op->prep_of.off == e->val.off &&
		    op->prep_of.len == e->val.len) {
			v = mf_slice_ref(op->prep);
		} else {
			char *doc;
			size_t dlen, numlen = 0;
			char num[MF_JSON_NUM_MAX];
			r = json_edit(e, op, &doc, &dlen, &op->res, num, &numlen);
			if (r)
				return r;
			v = mf_slice_from(doc, dlen, dlen);
			free(doc);
			if (op->type == MF_OP_JSON_NUMINCRBY) {
				mf_slice_unref(&op->out);
				op->out = mf_slice_from(num, numlen, numlen);
			}
		}
		set_val(st, e, v);
		break;
	}
	case MF_OP_INCRBY:
	case MF_OP_INCRBYFLOAT: {
		char buf[MF_NUM_LD_BUF + 2];
		size_t len;
		long long res = 0;
		r = counter_text(e, op, buf, &len, &res);
		if (r)
			return r;
		if (!e)
			e = insert_new(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, t);
		mf_slice v = mf_slice_from(buf, len, len);
		set_val(st, e, v);
		op->res = (uint64_t)res;
		if (op->type == MF_OP_INCRBYFLOAT) {
			mf_slice_unref(&op->out);
			op->out = mf_slice_ref(v);
		}
		break;
	}
	case MF_OP_SADD: {
		if (!e)
			e = insert(st, own_key(op->key, MF_SLICE_EMPTY), op->ktype, t);
		uint64_t old = mf_set_bytes(e->set);
		detach_key(e); /* the text may move */
		sadd_ctx a = {e, 0};
		mf_lines_each(mf_slice_ptr(op->val), op->val.len, sadd_one, &a);
		set_changed(st, e, old, true);
		op->res = a.n;
		break;
	}
	case MF_OP_SREM: {
		uint64_t old = mf_set_bytes(e->set);
		sadd_ctx a = {e, 0};
		mf_lines_each(mf_slice_ptr(op->val), op->val.len, srem_one, &a);
		op->res = a.n;
		if (a.n == 0)
			return 0; /* nothing changed: no new version */
		set_changed(st, e, old, false);
		if (mf_set_count(e->set) == 0) { /* Redis has no empty sets */
			drop_entry(st, e);
			return 0;
		}
		break;
	}
	case MF_OP_SMOVE:
		if (!smove(st, e, op))
			return 0; /* nothing moved: no new version */
		if (mf_set_count(e->set) == 0) {
			drop_entry(st, e);
			return 0;
		}
		break;
	default:
		return -EINVAL;
	}
	e->mtime_ns = e->ctime_ns = t;
	e->version = ++st->version;
	return 0;
}

int mf_store_apply(mf_store *st, mf_op *op)
{
	pthread_rwlock_wrlock(&st->lock);
	int r = do_apply(st, op);
	if (op->lsn > st->applied_lsn)
		st->applied_lsn = op->lsn;
	pthread_rwlock_unlock(&st->lock);
	return r;
}

/* A reference to e's value; a set's text is made here if a write dropped
 * it.  Caller holds the lock (read or write). */
static mf_slice value_ref(mf_store *st, entry *e)
{
	if (!e->set)
		return mf_slice_ref(e->val);
	pthread_mutex_lock(&st->text_mu);
	if (!e->text_ok) {
		e->val = mf_set_text(e->set);
		e->text_ok = true;
	}
	mf_slice v = mf_slice_ref(e->val);
	pthread_mutex_unlock(&st->text_mu);
	return v;
}

static void fill_info(mf_store *st, entry *e, bool want_value, mf_entry_info *out)
{
	out->type = e->type;
	out->val = want_value ? value_ref(st, e) : MF_SLICE_EMPTY;
	out->size = vlen(e);
	out->count = e->count;
	out->mtime_ns = e->mtime_ns;
	out->ctime_ns = e->ctime_ns;
	out->atime_ns = e->atime_ns;
	out->expire_ns = e->expire_ns;
	out->mode = e->mode;
	out->uid = e->uid;
	out->gid = e->gid;
	out->implicit = false;
	out->version = e->version;
	if (e->type == MF_T_FOLDER)
		out->count = e->dir ? e->dir->nsubs : 0;
}

int mf_store_stat(mf_store *st, const void *path, size_t len, mf_entry_info *out)
{
	pthread_rwlock_rdlock(&st->lock);
	entry *e = len ? find_kn(st, path, len) : NULL;
	if (expired_at(e, wall_ns())) /* lazy expiry, as for get */
		e = NULL;
	dnode *d = (e && tree_type(e->type)) || (len && !mf_tree_key(path, len))
	               ? NULL : dfind(st, path, len);
	if (d && e) /* a JSON document or list named like a folder: the folder */
		e = NULL;
	if (e) {
		fill_info(st, e, false, out);
	} else if (d) {
		memset(out, 0, sizeof *out);
		out->type = MF_T_FOLDER;
		out->mode = MF_MODE_DEFAULT;
		out->count = d->nsubs;
		out->mtime_ns = out->atime_ns = d->mtime_ns;
		out->ctime_ns = d->ctime_ns;
		out->uid = out->gid = MF_ID_DEFAULT;
		out->implicit = true;
	}
	pthread_rwlock_unlock(&st->lock);
	return e || d ? 0 : -ENOENT;
}

/* The last component of a tree key, as a referenced sub-slice. */
static mf_slice last_name(mf_slice k)
{
	size_t p = parent_len(mf_slice_ptr(k), k.len);
	mf_slice n = mf_slice_ref(k);
	if (p) {
		n.off += p + 1;
		n.len -= p + 1;
	}
	return n;
}

int mf_store_list(mf_store *st, const void *path, size_t len, mf_dirent **out, size_t *n)
{
	*out = NULL;
	*n = 0;
	if (len && !mf_tree_key(path, len))
		return -ENOENT;
	pthread_rwlock_rdlock(&st->lock);
	entry *e = len ? find_kn(st, path, len) : NULL;
	dnode *d = dfind(st, path, len);
	int r = 0;
	if (e && tree_type(e->type) && e->type != MF_T_FOLDER)
		r = -ENOTDIR;
	else if (!d)
		r = -ENOENT;
	if (r) {
		pthread_rwlock_unlock(&st->lock);
		return r;
	}
	size_t cap = d->nfiles + d->nsubs, i = 0;
	mf_dirent *v = mf_xmalloc((cap ? cap : 1) * sizeof *v);
	int64_t now = wall_ns();
	for (entry *f = d->files; f; f = f->snext)
		if (!expired_at(f, now))
			v[i++] = (mf_dirent){last_name(f->key), f->type};
	for (dnode *x = d->subs; x; x = x->snext) {
		/* A folder whose name a non-folder key also has (keys from before
		 * the tree rules): the key is what the name shows. */
		entry *c = x->self ? x->self : find(st, x->path);
		if (c && tree_type(c->type) && c->type != MF_T_FOLDER)
			continue;
		v[i++] = (mf_dirent){last_name(x->path), MF_T_FOLDER};
	}
	pthread_rwlock_unlock(&st->lock);
	*out = v;
	*n = i;
	return 0;
}

void mf_store_dirents_free(mf_dirent *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mf_slice_unref(&d[i].name);
	free(d);
}

int mf_store_get(mf_store *st, const void *key, size_t klen, bool want_value,
                 mf_entry_info *out)
{
	pthread_rwlock_rdlock(&st->lock);
	entry *e = *find_slot(st, key, klen, hash_key(key, klen));
	if (expired_at(e, wall_ns()))
		e = NULL; /* lazy expiry: gone for readers; the cycle deletes it */
	if (e)
		fill_info(st, e, want_value, out);
	pthread_rwlock_unlock(&st->lock);
	return e ? 0 : -ENOENT;
}

size_t mf_store_keys(mf_store *st, mf_type type, mf_slice **keys)
{
	pthread_rwlock_rdlock(&st->lock);
	size_t n = type ? st->ntype[type] : st->nkeys, i = 0;
	mf_slice *k = mf_xmalloc((n ? n : 1) * sizeof *k);
	int64_t now = wall_ns();
	for (size_t b = 0; b < st->nbuckets; b++)
		for (entry *e = st->tab[b]; e; e = e->next)
			if ((!type || e->type == type) && !expired_at(e, now))
				k[i++] = mf_slice_ref(e->key);
	pthread_rwlock_unlock(&st->lock);
	*keys = k;
	return i;
}

size_t mf_store_export(mf_store *st, mf_item **items, uint64_t *lsn)
{
	pthread_rwlock_rdlock(&st->lock);
	size_t n = st->nkeys, i = 0;
	mf_item *it = mf_xmalloc((n ? n : 1) * sizeof *it);
	int64_t now = wall_ns();
	for (size_t b = 0; b < st->nbuckets; b++)
		for (entry *e = st->tab[b]; e; e = e->next)
			if (!expired_at(e, now))
				it[i++] = (mf_item){mf_slice_ref(e->key), e->type, value_ref(st, e),
				                    e->mtime_ns, e->ctime_ns, e->expire_ns, e->mode,
				                    e->uid, e->gid, e->atime_ns};
	*lsn = st->applied_lsn;
	pthread_rwlock_unlock(&st->lock);
	*items = it;
	return i;
}

void mf_store_capture_begin(mf_store *st, uint64_t *lsn)
{
	pthread_rwlock_wrlock(&st->lock);
	capture *c = &st->cap;
	c->active = true;
	c->epoch++;
	c->cursor = 0;
	c->expect = st->nkeys;
	c->skipped = 0;
	c->now = wall_ns();
	c->n = 0;
	c->cap = st->nkeys + 64; /* walk + pre-images: exactly nkeys in all */
	c->items = mf_xrealloc(c->items, c->cap * sizeof *c->items);
	*lsn = st->applied_lsn;
	pthread_rwlock_unlock(&st->lock);
}

/* The read lock keeps the applier out (and lets readers in); cap_epoch
 * and the item list are touched only by the walker under it and by the
 * applier under the write lock.  The table may have doubled since the
 * last step: a key not yet taken sits at or past the cursor either way
 * (bucket i splits into i and i + old size), so the cursor stays valid. */
bool mf_store_capture_step(mf_store *st, size_t buckets)
{
	pthread_rwlock_rdlock(&st->lock);
	capture *c = &st->cap;
	size_t end = c->cursor + buckets;
	if (end > st->nbuckets)
		end = st->nbuckets;
	for (size_t b = c->cursor; b < end; b++)
		for (entry *e = st->tab[b]; e; e = e->next)
			if (e->cap_epoch != c->epoch) {
				cap_add(st, e);
				e->cap_epoch = c->epoch;
			}
	c->cursor = end;
	bool done = c->cursor >= st->nbuckets;
	pthread_rwlock_unlock(&st->lock);
	return done;
}

size_t mf_store_capture_end(mf_store *st, mf_item **items)
{
	while (!mf_store_capture_step(st, SIZE_MAX / 2))
		;
	pthread_rwlock_wrlock(&st->lock);
	capture *c = &st->cap;
	size_t n = c->n;
	*items = c->items;
	if (n + c->skipped != c->expect) /* every key at begin, once: cannot happen */
		abort();
	c->items = NULL;
	c->n = c->cap = 0;
	c->active = false;
	pthread_rwlock_unlock(&st->lock);
	return n;
}

void mf_store_items_free(mf_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mf_slice_unref(&items[i].key);
		mf_slice_unref(&items[i].val);
	}
	free(items);
}

int mf_store_load_item(mf_store *st, mf_item *item)
{
	/* The type rules SET enforces (an empty JSON value is the "created, no
	 * document yet" state CREATE makes). */
	uint32_t fmt;
	uint64_t rdev;
	if (!mf_type_valid(item->type) || !valid_key(item->key) ||
	    (item->type != MF_T_FOLDER && item->type != MF_T_SYMLINK && item->type != MF_T_SPECIAL &&
	     item->val.len &&
	     mf_value_check(item->type, mf_slice_ptr(item->val), item->val.len, NULL, NULL) != 0) ||
	    (item->type == MF_T_FOLDER &&
	     (item->val.len || !mf_tree_key(mf_slice_ptr(item->key), item->key.len))) ||
	    (item->type == MF_T_SYMLINK && (item->val.len == 0 || item->val.len > MF_SYMLINK_MAX)) ||
	    (item->type == MF_T_SPECIAL &&
	     (!mf_tree_key(mf_slice_ptr(item->key), item->key.len) ||
	      mf_special_decode(mf_slice_ptr(item->val), item->val.len, &fmt, &rdev))) ||
	    (item->mode != MF_MODE_DEFAULT && (item->mode & ~07777u)))
		return -EINVAL;
	pthread_rwlock_wrlock(&st->lock);
	int r = 0;
	if (find(st, item->key)) {
		r = -EEXIST;
	} else {
		entry *e = insert(st, item->key, item->type, item->ctime_ns);
		e->mtime_ns = item->mtime_ns;
		if (item->expire_ns)
			set_expire(st, e, item->expire_ns);
		e->atime_ns = item->atime_ns;
		e->mode = item->mode;
		e->uid = item->uid;
		e->gid = item->gid;
		/* An implicit folder's times: its latest child's (they are not
		 * kept); an explicit one keeps its own. */
		dnode *up = e->dir ? e->dir->up : e->up;
		if (up && !up->self) {
			if (up->mtime_ns < e->mtime_ns)
				up->mtime_ns = e->mtime_ns;
			if (up->ctime_ns < e->ctime_ns)
				up->ctime_ns = e->ctime_ns;
		}
		if (e->type == MF_T_LIST) {
			/* LPOP relies on a list value ending in '\n': complete a final
			 * line the way SET does (a snapshot is only CRC-checked). */
			e->val = list_value(item->val);
			mf_slice_unref(&item->val);
		} else if (e->type == MF_T_SET) {
			/* A set's snapshot value is its members' text (any order);
			 * duplicates are dropped as SET drops them. */
			set_replace(st, e, item->val);
			mf_slice_unref(&item->val);
		} else {
			e->val = item->val;
		}
		if (e->type != MF_T_SET)
			st->value_bytes += e->val.len;
		if (e->type == MF_T_LIST)
			e->count = mf_count_lines(mf_slice_ptr(e->val), e->val.len);
		item->key = item->val = MF_SLICE_EMPTY;
	}
	pthread_rwlock_unlock(&st->lock);
	return r;
}

void mf_store_set_applied_lsn(mf_store *st, uint64_t lsn)
{
	pthread_rwlock_wrlock(&st->lock);
	st->applied_lsn = lsn;
	pthread_rwlock_unlock(&st->lock);
}

void mf_store_stats_get(mf_store *st, mf_store_stats *out)
{
	pthread_rwlock_rdlock(&st->lock);
	out->keys[0] = st->nkeys;
	for (int t = 1; t <= MF_T_MAX_; t++)
		out->keys[t] = st->ntype[t];
	out->value_bytes = st->value_bytes;
	out->applied_lsn = st->applied_lsn;
	out->expires = st->nexpires;
	out->expired = st->expired;
	pthread_rwlock_unlock(&st->lock);
}

int mf_store_set_has(mf_store *st, const void *key, size_t klen, const void *m, size_t mlen)
{
	pthread_rwlock_rdlock(&st->lock);
	entry *e = *find_slot(st, key, klen, hash_key(key, klen));
	if (expired_at(e, wall_ns()))
		e = NULL;
	int r = !e ? -ENOENT : !e->set ? -EEXIST : mf_set_has(e->set, m, mlen);
	pthread_rwlock_unlock(&st->lock);
	return r;
}

size_t mf_store_expired_sample(mf_store *st, int64_t now, mf_slice *keys, size_t max)
{
	size_t n = 0;
	pthread_rwlock_wrlock(&st->lock); /* moves the ring's cursor */
	for (size_t seen = 0; st->ttl && seen < 4 * max && seen < st->nexpires && n < max; seen++) {
		entry *e = st->ttl;
		if (expired_at(e, now))
			keys[n++] = mf_slice_ref(e->key);
		st->ttl = e->tnext;
	}
	pthread_rwlock_unlock(&st->lock);
	return n;
}
