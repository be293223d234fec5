/*
 * fs.h — the FUSE adapter (libfuse3 low-level API).
 *
 * Translates kernel requests (inodes, file handles, offsets) into store
 * reads and mf_op commits; owns nothing durable.  Why the low-level API:
 * the high-level one resolves every path under one global lock and renames
 * unlinked open files to .fuse_hidden* (which would show up as keys); on
 * this machine the shared bench measured the low-level floor (nullfs_ll) at
 * or above the high-level one (nullfs) on every workload, up to 6x on large
 * writes.  With our own inode table, unlink-while-open is just an inode that
 * lost its name.
 *
 * Layout: 1 "/", 2 "/kv", 3 "/json", 4 "/lists", 5 "/.ctl", 6
 * "/.ctl/stats", 7 "/.ctl/snapshot", 8 "/.ctl/pop", 9 "/.ctl/json"; key
 * files (and JSON view nodes) get inode numbers above 64 derived from
 * their (type, key), so a listing's d_ino is what stat says (nodes.c,
 * name_ino); a number is only given again once the kernel has forgotten
 * the node that held it.  The adapter's files, their jobs and its one lock
 * order: fs_int.h.
 */
#ifndef MF_FS_H
#define MF_FS_H

#include "../db/kv.h"

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>

typedef struct mf_fs_opts {
	bool foreground;
	bool singlethread;
	bool clone_fd;
	unsigned max_threads;
	double timeout;          /* entry/attr cache seconds */
} mf_fs_opts;

/* One mount: the adapter's state (inode table, handles, name ordering),
 * passed to every request as the session's userdata, so nothing of it is
 * global and a process could hold several. */
typedef struct mf_fs mf_fs;

/* Create the session and mount (NULL on failure); then mf_fs_loop runs it
 * until unmount or a signal.  Split so that the daemon can report a failed
 * mount to its parent before detaching. */
mf_fs *mf_fs_mount(const mf_kv *kv, struct fuse_args *args, const char *mountpoint,
                   const mf_fs_opts *opts);
int mf_fs_loop(mf_fs *fs, const mf_fs_opts *opts);
/* Unmount, commit what unreleased handles hold, and free fs. */
void mf_fs_unmount(mf_fs *fs);

/* A key was changed by a committer outside the mount (RESP): drop the
 * kernel's cached entry and attributes for it (type MF_T_NONE: every key).
 * Call from a thread that serves no FUSE request, holding no fs lock, and
 * only between mf_fs_mount and mf_fs_unmount (stop such committers first). */
void mf_fs_key_changed(mf_fs *fs, int type, const void *key, size_t len);

#endif
