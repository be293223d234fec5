/*
 * handle.c — file handles: views, private buffers, read and write.
 * Shared types, the lock order and every prototype: fs_int.h.
 */
#include "fs_int.h"

/* ---------- handles ---------- */

handle *handle_new(mf_fs *fs, node *n, int flags)
{
	handle *h = calloc(1, sizeof *h);
	if (!h)
		return NULL;
	pthread_mutex_init(&h->mu, NULL);
	atomic_init(&h->refs, 1);
	h->n = n;
	h->flags = flags;
	live_add(&fs->handles, &h->live);
	mf_kv_handles_add(&fs->kv, 1); /* stats: open_handles */
	return h;
}

void handle_free(mf_fs *fs, handle *h)
{
	if (!h)
		return;
	live_del(&fs->handles, &h->live);
	mf_kv_handles_add(&fs->kv, -1);
	mf_slice_unref(&h->view);
	mf_slice_unref(&h->data);
	handle_forget_changes(h);
	free(h->text);
	pthread_mutex_destroy(&h->mu);
	free(h);
}

void handle_put(mf_fs *fs, handle *h)
{
	if (atomic_fetch_sub(&h->refs, 1) == 1)
		handle_free(fs, h);
}

/* Current committed value of a node (named: the store; orphan: its copy). */
int node_value(mf_fs *fs, node *n, mf_slice *out)
{
	for (;;) {
		pthread_mutex_lock(&fs->mu);
		bool named = n->named && !n->transit;
		mf_slice key = mf_slice_ref(n->key);
		if (!named)
			*out = mf_slice_ref(n->orphan);
		pthread_mutex_unlock(&fs->mu);
		if (!named) {
			mf_slice_unref(&key);
			return 0;
		}
		mf_entry_info info;
		int r = mf_kv_get(&fs->kv, mf_slice_ptr(key), key.len, true, &info);
		if (r == 0 && info.type != n->type) {
			mf_slice_unref(&info.val);
			r = -ENOENT;
		}
		/* The get ran without fs->mu: an unlink or rename of this name may
		 * have begun (transit) or ended meanwhile, and then the store
		 * answered for a name that is no longer this node's.  Look again. */
		pthread_mutex_lock(&fs->mu);
		bool same = n->named && !n->transit && n->key.len == key.len &&
		            memcmp(mf_slice_ptr(n->key), mf_slice_ptr(key), key.len) == 0;
		pthread_mutex_unlock(&fs->mu);
		mf_slice_unref(&key);
		if (same) {
			*out = r == 0 ? info.val : MF_SLICE_EMPTY;
			return r;
		}
		if (r == 0)
			mf_slice_unref(&info.val);
	}
}

/* Re-pin the handle's view to the latest committed value.  Caller holds h->mu. */
void view_refresh_latest(mf_fs *fs, handle *h)
{
	mf_slice cur = MF_SLICE_EMPTY;
	if (node_value(fs, h->n, &cur) == 0) {
		mf_slice_unref(&h->view);
		h->view = cur;
	}
}

/* Make room for `len` bytes in the handle's private buffer. */
int handle_reserve(handle *h, uint64_t len)
{
	if (h->data.buf && h->data.buf->cap >= len)
		return 0;
	/* Private and unpublished: realloc in place is safe, and for big
	 * buffers glibc uses mremap, so growing a 256 MiB file is cheap.
	 * Nothing is logged yet: out of memory fails this request only. */
	if (mf_slice_try_reserve_private(&h->data, len < 4096 ? 4096 : len + len / 2) == 0)
		return 0;
	return mf_slice_try_reserve_private(&h->data, len); /* without the slack */
}

/* Switch to full mode: private copy of the latest committed value (what a
 * write on a local filesystem would land on: a truncate or commit by others
 * since this handle's open counts), plus what it appended so far. */
int handle_make_full(mf_fs *fs, handle *h)
{
	if (h->mode == H_FULL)
		return 0;
	if (h->mode != H_APPEND)
		view_refresh_latest(fs, h);
	mf_slice cur = h->view;
	uint64_t len = cur.len + (h->mode == H_APPEND ? h->data.len : 0);
	mf_slice d;
	if (mf_slice_try_alloc(&d, 0, len < 4096 ? 4096 : len) != 0)
		return -ENOMEM;
	/* A hole in the value stays a hole in the copy (buf.h); `used` first,
	 * so the copy counts as a write inside the value. */
	d.len = d.buf->used = len;
	mf_buf_copy(d.buf, 0, cur, cur.len);
	if (h->mode == H_APPEND)
		mf_buf_write(d.buf, cur.len, mf_slice_ptr(h->data), h->data.len);
	mf_slice_unref(&h->data);
	h->data = d;
	h->size = len;
	handle_forget_changes(h);
	h->base = mf_slice_ref(cur);
	h->keep = cur.len;
	if (h->mode == H_APPEND)
		handle_changed(h, cur.len, len - cur.len);
	h->mode = H_FULL;
	return 0;
}

/* No changes recorded (a new full copy, or after a commit). */
void handle_forget_changes(handle *h)
{
	mf_slice_unref(&h->base);
	h->keep = 0;
	free(h->ranges);
	h->ranges = NULL;
	h->nranges = h->rcap = 0;
	h->ranges_over = false;
}

/* Past this many disjoint ranges a handle's commit is a whole SET: a
 * WRITEV of scattered small writes would not be much smaller. */
#define RANGES_MAX 256

/* Bytes [off, off+len) of a full-mode handle were written: add them to its
 * ranges, merging with any they touch. */
void handle_changed(handle *h, uint64_t off, uint64_t len)
{
	if (len == 0 || h->ranges_over)
		return;
	uint64_t end = off + len;
	size_t i = 0;
	while (i < h->nranges && h->ranges[i].off + h->ranges[i].len < off)
		i++;
	size_t j = i; /* ranges [i, j) touch [off, end): merge them */
	while (j < h->nranges && h->ranges[j].off <= end) {
		if (h->ranges[j].off < off)
			off = h->ranges[j].off;
		if (h->ranges[j].off + h->ranges[j].len > end)
			end = h->ranges[j].off + h->ranges[j].len;
		j++;
	}
	if (i == j) { /* a new range at i */
		if (h->nranges == RANGES_MAX) {
			h->ranges_over = true;
			return;
		}
		if (h->nranges == h->rcap) {
			size_t cap = h->rcap ? h->rcap * 2 : 8;
			mf_range *r = realloc(h->ranges, cap * sizeof *r);
			if (!r) { /* only the log gets bigger: SET */
				h->ranges_over = true;
				return;
			}
			h->ranges = r;
			h->rcap = cap;
		}
		memmove(h->ranges + i + 1, h->ranges + i, (h->nranges - i) * sizeof *h->ranges);
		h->nranges++;
		j = i + 1;
	}
	h->ranges[i] = (mf_range){off, end - off};
	memmove(h->ranges + i + 1, h->ranges + j, (h->nranges - j) * sizeof *h->ranges);
	h->nranges -= j - i - 1;
}

/* A full-mode handle's value was cut or extended to size: bytes past it
 * are gone (growth afterwards is zeros, not the base's bytes). */
void handle_resized(handle *h, uint64_t size)
{
	if (size < h->keep)
		h->keep = size;
	size_t n = 0;
	for (size_t i = 0; i < h->nranges; i++) {
		mf_range r = h->ranges[i];
		if (r.off >= size)
			break;
		if (r.off + r.len > size)
			r.len = size - r.off;
		h->ranges[n++] = r;
	}
	h->nranges = n;
}

void set_dirty(mf_fs *fs, handle *h)
{
	pthread_mutex_lock(&fs->mu);
	if (h->dstate != D_SIZED)
		h->n->ndirty++;
	h->dstate = D_SIZED;
	h->n->dirty_stale = false;
	h->n->dirty_size = h->mode == H_FULL ? h->size : h->n->dirty_size;
	h->n->dirty_mtime = mf_now_ns();
	h->n->has_set_mtime = false; /* a write after utimens moves mtime on */
	pthread_mutex_unlock(&fs->mu);
}

void clear_dirty(mf_fs *fs, handle *h)
{
	if (h->dstate == D_CLEAN)
		return;
	pthread_mutex_lock(&fs->mu);
	if (h->dstate == D_SIZED && --h->n->ndirty)
		h->n->dirty_stale = true;
	h->dstate = D_CLEAN;
	pthread_mutex_unlock(&fs->mu);
}

handle *fh(struct fuse_file_info *fi)
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
void view_refresh(mf_fs *fs, handle *h, uint64_t off)
{
	if (h->mode == H_APPEND)
		return; /* its tail is relative to the pinned view */
	/* A list reader's first read keeps the list as of its open. */
	bool rewind = off == 0 && (h->has_read || !lines_type(h->n->type));
	if (!rewind && (off < h->view.len || lines_type(h->n->type)))
		return;
	mf_slice cur = MF_SLICE_EMPTY;
	if (node_value(fs, h->n, &cur) != 0)
		return;
	/* An append in place keeps the buffer: the same bytes, no compare
	 * (tail -f on a big value must not cost O(value) per read). */
	bool same_prefix = cur.buf == h->view.buf && cur.off == h->view.off;
	bool extends = cur.len > h->view.len &&
	               (same_prefix ||
	                memcmp(mf_slice_ptr(cur), mf_slice_ptr(h->view), h->view.len) == 0);
	if (rewind || extends) {
		mf_slice_unref(&h->view);
		h->view = cur;
	} else {
		mf_slice_unref(&cur);
	}
}

void mf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)ino;
	handle *h = fh(fi);
	if (h->text || !h->n) {
		/* The kernel may release the handle as soon as it has the reply,
		 * before fuse_reply_buf returns here: hold a reference. */
		atomic_fetch_add(&h->refs, 1);
		size_t o = (size_t)off < h->textlen ? (size_t)off : h->textlen;
		size_t n = h->textlen - o < size ? h->textlen - o : size;
		/* bpop: the read that reaches the end delivers the element. */
		bool mine = h->text && o + n == h->textlen && atomic_exchange(&h->owed, false);
		if (fuse_reply_buf(req, h->text + o, n) != 0 && mine)
			bpop_giveback(fs, h); /* the reader was gone: not delivered */
		handle_put(fs, h);
		return;
	}
	pthread_mutex_lock(&h->mu);
	mf_slice v = MF_SLICE_EMPTY, tail = MF_SLICE_EMPTY;
	uint64_t vlen;
	if (h->mode == H_FULL) {
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
		view_refresh(fs, h, (uint64_t)off);
		v = mf_slice_ref(h->view);
		h->has_read = true;
		vlen = v.len;
		if (h->mode == H_APPEND && !lines_type(h->n->type))
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

void mf_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi)
{
	mf_fs *fs = fuse_req_userdata(req);
	(void)ino;
	handle *h = fh(fi);
	if (!h->n) { /* /.ctl/snapshot: any write takes a snapshot */
		int r = mf_kv_snapshot(&fs->kv);
		if (r)
			fuse_reply_err(req, -r);
		else
			fuse_reply_write(req, size);
		return;
	}
	if (h->n->type == NODE_POP || h->n->type == NODE_BPOP) {
		fuse_reply_err(req, EBADF);
		return;
	}
	if (ctlw_handle(h)) {
		int r = ctlw_write(fs, h, buf, size);
		if (r)
			fuse_reply_err(req, -r);
		else
			fuse_reply_write(req, size);
		return;
	}
	if ((uint64_t)off > MF_VALUE_MAX || size > MF_VALUE_MAX - (uint64_t)off) {
		fuse_reply_err(req, EFBIG); /* before any buffer grows */
		return;
	}
	pthread_mutex_lock(&h->mu);
	int r = 0;
	if (h->mode != H_FULL && (h->flags & O_APPEND) && h->n->type != MF_T_JSON) {
		/* Without writeback cache the filesystem implements O_APPEND:
		 * the bytes go after whatever the value is at commit time. */
		if (h->mode != H_APPEND) {
			mf_slice_unref(&h->data);
			h->mode = H_APPEND;
		}
		mf_slice_append(&h->data, buf, size);
	} else if (lines_type(h->n->type) && h->mode != H_FULL) {
		/* A list or set takes appends only; a write at its end is one too. */
		mf_slice cur = MF_SLICE_EMPTY;
		node_value(fs, h->n, &cur);
		uint64_t end = cur.len + (h->mode == H_APPEND ? h->data.len : 0);
		mf_slice_unref(&cur);
		if ((uint64_t)off != end) {
			r = -ESPIPE;
			char kn[KEY_NAME_MAX];
			mf_log_warn("write at offset %lld inside %s refused: lists and sets take appends only",
			            (long long)off,
			            key_name(kn, sizeof kn, h->n->type, mf_slice_ptr(h->n->key),
			                     h->n->key.len));
		} else {
			h->mode = H_APPEND;
			mf_slice_append(&h->data, buf, size);
		}
	} else {
		r = handle_make_full(fs, h);
		if (r == 0 && (h->flags & O_APPEND))
			off = (off_t)h->size; /* we implement O_APPEND (no writeback cache) */
		if (r == 0)
			r = handle_reserve(h, (uint64_t)off + size);
		if (r == 0) {
			uint64_t end = (uint64_t)off + size;
			if ((uint64_t)off > h->size) /* hole: zeros (untouched if known zero) */
				mf_buf_zero(h->data.buf, h->size, (size_t)((uint64_t)off - h->size));
			mf_buf_write(h->data.buf, (size_t)off, buf, size);
			handle_changed(h, (uint64_t)off, size);
			if (end > h->size)
				h->size = end;
			h->data.len = h->data.buf->used = h->size;
		}
	}
	if (r == 0) {
		h->wrote = true;
		set_dirty(fs, h);
		if (h->mode != H_FULL) {
			mf_slice cur = MF_SLICE_EMPTY;
			node_value(fs, h->n, &cur);
			pthread_mutex_lock(&fs->mu);
			h->n->dirty_size = cur.len + h->data.len;
			pthread_mutex_unlock(&fs->mu);
			mf_slice_unref(&cur);
		} else {
			pthread_mutex_lock(&fs->mu);
			h->n->dirty_size = h->size;
			pthread_mutex_unlock(&fs->mu);
		}
	}
	pthread_mutex_unlock(&h->mu);
	if (r == 0)
		kill_privs(fs, req, h);
	if (r)
		fuse_reply_err(req, -r);
	else
		fuse_reply_write(req, size);
}
