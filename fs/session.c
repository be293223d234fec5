/*
 * session.c — the session: ops table, init, mount, loop, unmount.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

void mf_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata; /* the mf_fs, complete before the session starts */
	/* readdirplus on every page, not only the first (the _AUTO mode):
	 * `ls -l` and `du` read the whole directory before they stat, so in
	 * the auto mode every page after the first would cost a LOOKUP per
	 * name.  The nodes it makes are the kernel's to FORGET (dir.c). */
	if (conn->capable & FUSE_CAP_READDIRPLUS)
		conn->want |= FUSE_CAP_READDIRPLUS;
	conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
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
	.readlink = mf_readlink,
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
	.readdirplus = mf_readdirplus,
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

/* The context without a session: its locks, empty tables and lists. */
static mf_fs *fs_new(const mf_kv *kv, const mf_fs_opts *opts)
{
	mf_fs *fs = calloc(1, sizeof *fs);
	if (!fs)
		return NULL;
	fs->nbuckets = 1024;
	fs->names = calloc(fs->nbuckets, sizeof *fs->names);
	fs->inos = calloc(fs->nbuckets, sizeof *fs->inos);
	if (!fs->names || !fs->inos) {
		free(fs->names);
		free(fs->inos);
		free(fs);
		return NULL;
	}
	fs->kv = *kv;
	pthread_mutex_init(&fs->mu, NULL);
	pthread_mutex_init(&fs->jspan_mu, NULL);
	pthread_cond_init(&fs->drain_cv, NULL);
	names_init(fs);
	pthread_mutex_init(&fs->handles.mu, NULL);
	pthread_mutex_init(&fs->dirs.mu, NULL);
	fs->uid = getuid();
	fs->gid = getgid();
	fs->timeout = opts->timeout;
	clock_gettime(CLOCK_REALTIME, &fs->start);
	return fs;
}

/* Free the context: every node, handle and dir handle is gone by now. */
static void fs_free(mf_fs *fs)
{
	free(fs->names);
	free(fs->inos);
	for (int i = 0; i < NSTRIPES; i++)
		pthread_mutex_destroy(&fs->stripes[i]);
	pthread_mutex_destroy(&fs->handles.mu);
	pthread_mutex_destroy(&fs->dirs.mu);
	pthread_cond_destroy(&fs->drain_cv);
	pthread_mutex_destroy(&fs->mu);
	for (int i = 0; i < JSPAN_SLOTS; i++)
		mf_slice_unref(&fs->jspans[i].doc);
	pthread_mutex_destroy(&fs->jspan_mu);
	free(fs);
}

/* Lists of live objects (fs_int.h, live_list). */
void live_add(live_list *l, live_link *x)
{
	pthread_mutex_lock(&l->mu);
	x->prev = NULL;
	x->next = l->head;
	if (l->head)
		l->head->prev = x;
	l->head = x;
	pthread_mutex_unlock(&l->mu);
}

void live_del(live_list *l, live_link *x)
{
	pthread_mutex_lock(&l->mu);
	if (x->prev)
		x->prev->next = x->next;
	else
		l->head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	pthread_mutex_unlock(&l->mu);
}

mf_fs *mf_fs_mount(const mf_kv *kv, struct fuse_args *args, const char *mountpoint,
                   const mf_fs_opts *opts)
{
	static const struct fuse_opt ro_opts[] = {
		FUSE_OPT_KEY("ro", KEY_RO), FUSE_OPT_KEY("rw", KEY_RW), FUSE_OPT_END,
	};
	mf_fs *fs = fs_new(kv, opts);
	if (!fs)
		return NULL;
	if (fuse_opt_parse(args, &fs->readonly, ro_opts, ro_opt) != 0)
		goto fail;
	/* fs is every request's userdata (fuse_req_userdata). */
	struct fuse_session *se = fuse_session_new(args, &ops, sizeof ops, fs);
	if (!se)
		goto fail;
	if (fuse_session_mount(se, mountpoint) != 0) {
		fuse_session_destroy(se);
		goto fail;
	}
	fs->se = se;
	return fs;
fail:
	fs_free(fs);
	return NULL;
}

int mf_fs_loop(mf_fs *fs, const mf_fs_opts *opts)
{
	struct fuse_session *se = fs->se;
	if (fuse_set_signal_handlers(se) != 0)
		return 1;
	int r;
	/* Blocking opens hold a worker each: leave two for the rest
	 * (INTERRUPTs included).  libfuse's default cap is 10. */
	fs->bpop_max = opts->singlethread ? 0 : (int)(opts->max_threads ? opts->max_threads : 10) - 2;
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

void mf_fs_unmount(mf_fs *fs)
{
	struct fuse_session *se = fs->se;
	fs->se = NULL;
	fuse_session_unmount(se);
	fuse_session_destroy(se);
	/* Handles whose RELEASE never came (the kernel drops queued requests
	 * at unmount): commit what they hold, as a release would, and free. */
	while (fs->handles.head) {
		handle *h = LIVE_OF(handle, fs->handles.head);
		if (h->n && atomic_exchange(&h->owed, false))
			bpop_giveback(fs, h);
		if (ctlw_handle(h))
			ctlw_flush(fs, h);
		else if (h->n && h->n->type != NODE_POP)
			handle_commit(fs, h, true);
		handle_free(fs, h);
	}
	/* Every node goes, so free them chain by chain: no name hashing or
	 * chain unlinking per node (node_maybe_free's), which after a
	 * readdirplus listing of millions of keys made the unmount slow. */
	for (size_t b = 0; b < fs->nbuckets; b++) {
		for (node *n = fs->inos[b], *next; n; n = next) {
			next = n->ino_next;
			mf_slice_unref(&n->key);
			mf_slice_unref(&n->orphan);
			free(n);
		}
		fs->inos[b] = fs->names[b] = NULL;
	}
	fs->nnodes = 0;
	dir_free_all(fs);
	fs_free(fs);
}
