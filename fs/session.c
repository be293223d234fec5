/*
 * session.c — the session: ops table, init, mount, loop, unmount.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

void mf_init(void *userdata, struct fuse_conn_info *conn)
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

fs_state fsg = {.mu = PTHREAD_MUTEX_INITIALIZER, .hmu = PTHREAD_MUTEX_INITIALIZER,
               .drain_cv = PTHREAD_COND_INITIALIZER};

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

struct fuse_session *mf_fs_mount(const mf_kv *kv, struct fuse_args *args, const char *mountpoint,
                                 const mf_fs_opts *opts)
{
	static const struct fuse_opt ro_opts[] = {
		FUSE_OPT_KEY("ro", KEY_RO), FUSE_OPT_KEY("rw", KEY_RW), FUSE_OPT_END,
	};
	if (fuse_opt_parse(args, &fsg.readonly, ro_opts, ro_opt) != 0)
		return NULL;
	fsg.kv = *kv;
	names_init();
	fsg.uid = getuid();
	fsg.gid = getgid();
	fsg.timeout = opts->timeout;
	fsg.next_ino = INO_FIRST_KEY;
	fsg.nbuckets = 1024;
	fsg.names = calloc(fsg.nbuckets, sizeof *fsg.names);
	fsg.inos = calloc(fsg.nbuckets, sizeof *fsg.inos);
	clock_gettime(CLOCK_REALTIME, &fsg.start);
	if (!fsg.names || !fsg.inos)
		return NULL;
	struct fuse_session *se = fuse_session_new(args, &ops, sizeof ops, NULL);
	if (!se)
		return NULL;
	if (fuse_session_mount(se, mountpoint) != 0) {
		fuse_session_destroy(se);
		return NULL;
	}
	fsg.se = se;
	return se;
}

int mf_fs_loop(struct fuse_session *se, const mf_fs_opts *opts)
{
	if (fuse_set_signal_handlers(se) != 0)
		return 1;
	int r;
	/* Blocking opens hold a worker each: leave two for the rest
	 * (INTERRUPTs included).  libfuse's default cap is 10. */
	fsg.bpop_max = opts->singlethread ? 0 : (int)(opts->max_threads ? opts->max_threads : 10) - 2;
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
	fsg.se = NULL;
	fuse_session_unmount(se);
	fuse_session_destroy(se);
	/* Handles whose RELEASE never came (the kernel drops queued requests
	 * at unmount): commit what they hold, as a release would, and free. */
	while (fsg.handles) {
		handle *h = fsg.handles;
		if (h->n && atomic_exchange(&h->owed, false))
			bpop_giveback(h);
		if (h->n && ctlw_type(h->n->type))
			ctlw_flush(h);
		else if (h->n && h->n->type != NODE_POP)
			handle_commit(h, true);
		handle_free(h);
	}
	for (size_t b = 0; b < fsg.nbuckets; b++) {
		while (fsg.inos[b]) {
			node *n = fsg.inos[b];
			n->nlookup = n->nopen = 0;
			node_maybe_free(n);
		}
	}
	free(fsg.names);
	free(fsg.inos);
	dir_free_all();
}
