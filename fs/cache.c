/*
 * cache.c — the kernel cache policy: how opens use the page cache, invalidation.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* Tell the kernel a node's cached attributes and pages may be stale.
 * Called only outside the kernel's locked paths for that inode (flush,
 * release, fsync, xattr, pop) — see the deadlock note in fuse_lowlevel.h. */
void invalidate(fuse_ino_t ino)
{
	if (fsg.se)
		fuse_lowlevel_notify_inval_inode(fsg.se, ino, 0, 0);
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
