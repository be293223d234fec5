/*
 * nodes.c — the inode table: (type, key) <-> node, lookup counts, node lifetime.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* ---------- node table ---------- */

uint64_t name_hash(uint8_t type, const char *k, size_t n)
{
	uint64_t h = 1469598103934665603ULL ^ type;
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 1099511628211ULL;
	return h;
}

void tables_grow(mf_fs *fs)
{
	size_t nb = fs->nbuckets * 2;
	node **names = calloc(nb, sizeof *names), **inos = calloc(nb, sizeof *inos);
	if (!names || !inos) {
		free(names);
		free(inos);
		return;
	}
	for (size_t b = 0; b < fs->nbuckets; b++) {
		for (node *n = fs->inos[b], *next; n; n = next) {
			next = n->ino_next;
			n->ino_next = inos[n->ino & (nb - 1)];
			inos[n->ino & (nb - 1)] = n;
		}
		for (node *n = fs->names[b], *next; n; n = next) {
			next = n->name_next;
			size_t i = name_hash(n->type, mf_slice_ptr(n->key), n->key.len) & (nb - 1);
			n->name_next = names[i];
			names[i] = n;
		}
	}
	free(fs->names);
	free(fs->inos);
	fs->names = names;
	fs->inos = inos;
	fs->nbuckets = nb;
}

node *by_ino(mf_fs *fs, fuse_ino_t ino)
{
	for (node *n = fs->inos[ino & (fs->nbuckets - 1)]; n; n = n->ino_next)
		if (n->ino == ino)
			return n;
	return NULL;
}

node **name_slot(mf_fs *fs, uint8_t type, const char *k, size_t len)
{
	node **pp = &fs->names[name_hash(type, k, len) & (fs->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->name_next)
		if ((*pp)->type == type && (*pp)->key.len == len &&
		    memcmp(mf_slice_ptr((*pp)->key), k, len) == 0)
			break;
	return pp;
}

void name_unlink(mf_fs *fs, node *n)
{
	if (!n->named)
		return;
	node **pp = name_slot(fs, n->type, mf_slice_ptr(n->key), n->key.len);
	if (*pp == n)
		*pp = n->name_next;
	n->named = false;
}

/*
 * The inode number of a named key: its node's, or the one its node will get.
 * Derived from the name, so that a listing reports (d_ino) the number a
 * later lookup and stat give, without making a node per listed key: the
 * first number from the name's hash up that no live node holds.  Live
 * nodes are the only ones the kernel may still know by number (it forgets
 * a node before we free it), so a freed node's number may be given again.
 * Caller holds fs->mu.
 */
static fuse_ino_t fresh_ino(mf_fs *fs, uint8_t type, const char *k, size_t len)
{
	/* 56 bits of hash above the fixed tree's numbers: no overflow, and a
	 * probe (another live name hashed here) is rare. */
	fuse_ino_t ino = INO_FIRST_KEY + (name_hash(type, k, len) >> 8);
	while (by_ino(fs, ino))
		ino++;
	return ino;
}

fuse_ino_t name_ino(mf_fs *fs, uint8_t type, const char *k, size_t len)
{
	node *n = *name_slot(fs, type, k, len);
	return n ? n->ino : fresh_ino(fs, type, k, len);
}

/* Find or create the node for a named key.  Caller holds fs->mu. */
node *node_get(mf_fs *fs, uint8_t type, const char *k, size_t len)
{
	return node_get_shared(fs, type, k, len, MF_SLICE_EMPTY);
}

/* node_get; a node it makes holds a reference to `share` (the same bytes
 * as k, e.g. the store's own key buffer, as a listing hands it out) rather
 * than a copy: one allocation less per node, and no second copy of every
 * listed key.  Caller holds fs->mu. */
node *node_get_shared(mf_fs *fs, uint8_t type, const char *k, size_t len, mf_slice share)
{
	node **pp = name_slot(fs, type, k, len);
	if (*pp)
		return *pp;
	node *n = calloc(1, sizeof *n);
	if (!n)
		return NULL;
	if (fs->nnodes >= fs->nbuckets) {
		tables_grow(fs);
		pp = name_slot(fs, type, k, len); /* the chains moved */
	}
	n->ino = fresh_ino(fs, type, k, len); /* name_ino's: (type, k) has no node */
	n->type = type;
	n->named = true;
	if (share.len == len && memcmp(mf_slice_ptr(share), k, len) == 0)
		n->key = mf_slice_ref(share);
	else
		n->key = mf_slice_from(k, len, len);
	n->name_next = *pp;
	*pp = n;
	node **ip = &fs->inos[n->ino & (fs->nbuckets - 1)];
	n->ino_next = *ip;
	*ip = n;
	fs->nnodes++;
	return n;
}

/* Free a node nobody references any more.  Caller holds fs->mu. */
void node_maybe_free(mf_fs *fs, node *n)
{
	if (n->nlookup || n->nopen || n->busy)
		return;
	name_unlink(fs, n);
	node **ip = &fs->inos[n->ino & (fs->nbuckets - 1)];
	while (*ip != n)
		ip = &(*ip)->ino_next;
	*ip = n->ino_next;
	mf_slice_unref(&n->key);
	mf_slice_unref(&n->orphan);
	free(n);
	fs->nnodes--;
}

void forget_one(mf_fs *fs, fuse_ino_t ino, uint64_t nlookup)
{
	node *n = by_ino(fs, ino);
	if (!n)
		return;
	n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
	node_maybe_free(fs, n);
}

void mf_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	mf_fs *fs = fuse_req_userdata(req);
	pthread_mutex_lock(&fs->mu);
	forget_one(fs, ino, nlookup);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_none(req);
}

void mf_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *f)
{
	mf_fs *fs = fuse_req_userdata(req);
	pthread_mutex_lock(&fs->mu);
	for (size_t i = 0; i < count; i++)
		forget_one(fs, f[i].ino, f[i].nlookup);
	pthread_mutex_unlock(&fs->mu);
	fuse_reply_none(req);
}

/* A created key that never came into being (no valid commit, last handle
 * gone or refused): drop its name.  The kernel may still cache that name;
 * open and getattr answer ESTALE for it, so the kernel looks it up again.
 * Caller holds fs->mu. */
void node_stillborn(mf_fs *fs, node *n)
{
	n->pending = false;
	n->stillborn = true;
	name_unlink(fs, n);
}

/* Whether a created, uncommitted key shows through the mount (lookup,
 * listings).  A string or list: yes, its creator's close will create it.
 * A JSON document only while some handle holds text for it: after its
 * creator's data-less close (EINVAL) it is not a document, and it must not
 * show while the kernel's delayed release is pending.  Caller holds fs->mu. */
bool pending_visible(const node *n)
{
	return n->pending && (n->type != MF_T_JSON || n->ndirty > 0);
}
