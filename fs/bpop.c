/*
 * bpop.c — /.ctl/bpop/<list>: a pop that waits for an element.
 *
 * Opening /.ctl/bpop/<list> (for reading) waits until <list> has an element
 * (it need not exist yet), pops its head (one LPOP record) and reads it, as
 * /.ctl/pop does.  Waiters of one list are served in arrival order
 * (db/bpop.h).  No element is lost to an interrupted opener:
 *   - a signal while waiting (the kernel's INTERRUPT) cancels the wait
 *     before anything is popped: the open fails with EINTR;
 *   - popped but the open's reply cannot be delivered (interrupted in
 *     between), or the handle is closed before its reader has read the
 *     element to its end: the element is pushed back to the head (LPUSH).
 * So an element is consumed exactly when a reader read it whole.  A
 * timeout is the shell's: `timeout 5 cat /mnt/.ctl/bpop/q` (its signal is
 * an interrupt like any other), so no key name is taken by a syntax.
 * Each waiter holds a FUSE worker thread; past bpop_max waiters (the
 * thread cap minus two, so INTERRUPTs and other requests are still read),
 * and with -s, an open does not wait: EAGAIN when the list is empty.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* What the INTERRUPT callback needs. */
typedef struct bwait {
	mf_fs *fs;
	mf_bpop_waiter w;
} bwait;

static void on_interrupt(fuse_req_t req, void *data)
{
	(void)req;
	bwait *b = data;
	mf_kv_bpop_cancel(&b->fs->kv, &b->w);
}

void bpop_giveback(mf_fs *fs, handle *h)
{
	node *n = h->n;
	mf_op op = key_op(MF_OP_LPUSH, MF_T_LIST, mf_slice_ptr(n->key), n->key.len);
	op.val = mf_slice_from(h->text, h->textlen, h->textlen);
	int r = commit(fs, &op);
	mf_op_clear(&op);
	if (r)
		log_err("pushing back an undelivered element failed for", MF_T_LIST,
		        mf_slice_ptr(n->key), n->key.len, -r);
	else
		invalidate_key(fs, MF_T_LIST, mf_slice_ptr(n->key), n->key.len);
}

int bpop_open(fuse_req_t req, node *n, handle *h, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	int64_t timeout = -1;
	if (atomic_fetch_add(&fs->bpop_waiting, 1) >= fs->bpop_max)
		timeout = 0;
	bwait bw = {fs, {0}};
	fuse_req_interrupt_func(req, on_interrupt, &bw);
	mf_op op = {0};
	size_t which;
	int r = mf_kv_bpop(&fs->kv, &n->key, 1, true, timeout, &bw.w, &op, &which);
	/* After this no interrupt callback runs (libfuse holds the request's
	 * lock around both), so bw may go. */
	fuse_req_interrupt_func(req, NULL, NULL);
	atomic_fetch_sub(&fs->bpop_waiting, 1);
	if (r == -ETIMEDOUT)
		r = -EAGAIN; /* could not wait (see above) and nothing to pop */
	if (r == 0) {
		h->text = mf_xmalloc(op.out.len);
		memcpy(h->text, mf_slice_ptr(op.out), op.out.len);
		h->textlen = op.out.len;
		atomic_store(&h->owed, true);
		fi->direct_io = 1;
		invalidate_key(fs, MF_T_LIST, mf_slice_ptr(n->key), n->key.len);
		if (fuse_req_interrupted(req)) {
			/* The opener gave up while we popped: it would never read. */
			atomic_store(&h->owed, false);
			bpop_giveback(fs, h);
			r = -EINTR;
		}
	}
	mf_op_clear(&op);
	return r;
}
