/*
 * buf.c — reference-counted buffers (see buf.h for the contract).
 */
#include "buf.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static atomic_size_t live_bytes;

void *mf_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p) {
		/* See buf.h: running out of memory mid-apply would leave the store
		 * inconsistent with the WAL; the WAL makes a restart safe. */
		fprintf(stderr, "memfluxfs: out of memory allocating %zu bytes\n", n);
		abort();
	}
	return p;
}

void *mf_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q) {
		fprintf(stderr, "memfluxfs: out of memory reallocating %zu bytes\n", n);
		abort();
	}
	return q;
}

/* Buffers from this size up get their own anonymous mapping with
 * transparent huge pages: on these (virtualised) machines a 4 KiB page
 * fault costs more than copying the page, and a 256 MiB file written
 * through malloc'd memory spends most of its time faulting. */
#define MAP_MIN ((size_t)2 << 20)

static size_t map_round(size_t n)
{
	return (n + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
}

static mf_buf *map_try_new(size_t total)
{
	size_t len = map_round(total);
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	madvise(p, len, MADV_HUGEPAGE); /* best effort */
	mf_buf *b = p;
	b->maplen = len;
	return b;
}

/* NULL if the memory is not there (the fallible paths: buffers a request
 * fills before anything is logged). */
static mf_buf *buf_try_new(size_t cap)
{
	if (cap > SIZE_MAX / 2 - sizeof(mf_buf))
		return NULL;
	mf_buf *b;
	if (cap >= MAP_MIN) {
		b = map_try_new(sizeof(mf_buf) + cap);
	} else {
		b = malloc(sizeof(mf_buf) + cap);
		if (b)
			b->maplen = 0;
	}
	if (!b)
		return NULL;
	atomic_init(&b->refs, 1);
	b->cap = cap;
	b->used = 0;
	b->lo = 0;
	/* No zero range unless the caller opts in (buf.h): most callers fill
	 * data[] themselves, with memcpy or pread. */
	atomic_init(&b->zlo, 0);
	atomic_init(&b->zhi, 0);
	atomic_fetch_add(&live_bytes, cap);
	return b;
}

static mf_buf *buf_new(size_t cap)
{
	mf_buf *b = buf_try_new(cap);
	if (!b) {
		fprintf(stderr, "memfluxfs: out of memory allocating %zu bytes\n", cap);
		abort();
	}
	return b;
}

static size_t zlo_of(const mf_buf *b)
{
	return atomic_load_explicit(&b->zlo, memory_order_relaxed);
}

static size_t zhi_of(const mf_buf *b)
{
	return atomic_load_explicit(&b->zhi, memory_order_relaxed);
}

/* data[at, at+n) is about to be written: keep one part of the zero range
 * left on either side.  Only ever shrinks it (buf.h).  A write past `used`
 * (an append) or below `lo` (a prepend) keeps the side that slices may
 * see, so the zero tail of a published slice never changes (a snapshot
 * sizes its stream from it, then writes it); otherwise the larger side. */
static void zero_shrink(mf_buf *b, size_t at, size_t n)
{
	size_t lo = zlo_of(b), hi = zhi_of(b), end = at + n;
	if (n == 0 || end <= lo || at >= hi)
		return;
	size_t left = at > lo ? at - lo : 0, right = hi > end ? hi - end : 0;
	bool keep_left = at >= b->used ? true : end <= b->lo ? false : left >= right;
	if (keep_left)
		atomic_store_explicit(&b->zhi, lo + left, memory_order_relaxed);
	else
		atomic_store_explicit(&b->zlo, end, memory_order_relaxed);
}

void mf_buf_write(mf_buf *b, size_t at, const void *p, size_t n)
{
	if (n == 0)
		return;
	zero_shrink(b, at, n);
	memcpy(b->data + at, p, n);
}

void mf_buf_zero(mf_buf *b, size_t at, size_t n)
{
	size_t lo = zlo_of(b), hi = zhi_of(b), end = at + n;
	if (lo >= hi || end <= lo || at >= hi) {
		memset(b->data + at, 0, n);
		return;
	}
	if (at < lo)
		memset(b->data + at, 0, lo - at);
	if (end > hi)
		memset(b->data + hi, 0, end - hi);
}

void mf_buf_copy(mf_buf *b, size_t at, mf_slice src, size_t n)
{
	if (n == 0 || !src.buf)
		return;
	/* src's zero range in the slice's own coordinates, clipped to [0, n). */
	size_t lo = zlo_of(src.buf), hi = zhi_of(src.buf);
	size_t zs = lo > src.off ? lo - src.off : 0, ze = hi > src.off ? hi - src.off : 0;
	if (zs > n)
		zs = n;
	if (ze > n)
		ze = n;
	if (ze <= zs)
		zs = ze = n;
	const char *p = mf_slice_ptr(src);
	mf_buf_write(b, at, p, zs);
	mf_buf_zero(b, at + zs, ze - zs);
	mf_buf_write(b, at + ze, p + ze, n - ze);
}

size_t mf_slice_zero_tail(mf_slice s)
{
	if (!s.buf || s.len == 0)
		return 0;
	size_t lo = zlo_of(s.buf), hi = zhi_of(s.buf), end = s.off + s.len;
	if (hi < end || lo >= end)
		return 0;
	return end - (lo > s.off ? lo : s.off);
}

mf_slice mf_slice_zeroed(size_t len)
{
	if (len == 0)
		return MF_SLICE_EMPTY;
	mf_buf *b = buf_new(len);
	if (!b->maplen)
		memset(b->data, 0, len);
	atomic_store_explicit(&b->zhi, len, memory_order_relaxed);
	b->used = len;
	return (mf_slice){b, 0, len};
}

int mf_slice_try_alloc(mf_slice *out, size_t len, size_t cap)
{
	if (cap < len)
		cap = len;
	mf_buf *b = buf_try_new(cap ? cap : 1);
	if (!b)
		return -ENOMEM;
	if (!b->maplen) /* a mapping is zero already: leave its pages untouched */
		memset(b->data, 0, len);
	else
		atomic_store_explicit(&b->zhi, cap, memory_order_relaxed);
	b->used = len;
	*out = (mf_slice){b, 0, len};
	return 0;
}

static void buf_free(mf_buf *b)
{
	atomic_fetch_sub(&live_bytes, b->cap);
	if (b->maplen)
		munmap(b, b->maplen);
	else
		free(b);
}

mf_slice mf_slice_from(const void *p, size_t n, size_t cap)
{
	if (n == 0 && cap == 0)
		return MF_SLICE_EMPTY;
	if (cap < n)
		cap = n;
	mf_buf *b = buf_new(cap);
	mf_buf_write(b, 0, p, n);
	b->used = n;
	return (mf_slice){b, 0, n};
}

mf_slice mf_slice_alloc(size_t len, size_t cap)
{
	if (len == 0 && cap == 0)
		return MF_SLICE_EMPTY;
	if (cap < len)
		cap = len;
	mf_buf *b = buf_new(cap);
	if (!b->maplen)
		memset(b->data, 0, len);
	b->used = len;
	return (mf_slice){b, 0, len};
}

mf_slice mf_slice_ref(mf_slice s)
{
	if (s.buf)
		atomic_fetch_add_explicit(&s.buf->refs, 1, memory_order_relaxed);
	return s;
}

void mf_slice_unref(mf_slice *s)
{
	mf_buf *b = s->buf;
	if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		buf_free(b);
	*s = MF_SLICE_EMPTY;
}

void mf_slice_append(mf_slice *s, const void *p, size_t n)
{
	if (n == 0)
		return;
	mf_buf *b = s->buf;
	if (b && s->off + s->len == b->used && b->cap - b->used >= n) {
		/* In place: bytes past `used` are visible to no slice. */
		mf_buf_write(b, b->used, p, n);
		b->used += n;
		s->len += n;
		return;
	}
	size_t len = s->len + n;
	size_t cap = len < 64 ? 64 : len + len / 2;
	mf_buf *nb = buf_new(cap);
	mf_buf_copy(nb, 0, *s, s->len);
	mf_buf_write(nb, s->len, p, n);
	nb->used = len;
	mf_slice_unref(s);
	*s = (mf_slice){nb, 0, len};
}

void mf_slice_prepend(mf_slice *s, const void *p, size_t n)
{
	if (n == 0)
		return;
	mf_buf *b = s->buf;
	if (b && s->off == b->lo && b->lo >= n) {
		/* In place: bytes below `lo` are visible to no slice. */
		mf_buf_write(b, b->lo - n, p, n);
		b->lo -= n;
		s->off = b->lo;
		s->len += n;
		return;
	}
	size_t len = s->len + n;
	size_t head = len < 64 ? 64 : len; /* room for as much again in front */
	size_t tail = len / 4;             /* and a little for RPUSH */
	mf_buf *nb = buf_new(head + len + tail);
	mf_buf_write(nb, head, p, n);
	mf_buf_copy(nb, head + n, *s, s->len);
	nb->lo = head;
	nb->used = head + len;
	mf_slice_unref(s);
	*s = (mf_slice){nb, head, len};
}

int mf_slice_try_reserve_private(mf_slice *s, size_t cap)
{
	if (!s->buf) {
		mf_buf *b = buf_try_new(cap);
		if (!b)
			return -ENOMEM;
		if (b->maplen)
			atomic_store_explicit(&b->zhi, cap, memory_order_relaxed);
		*s = (mf_slice){b, 0, 0};
		return 0;
	}
	if (s->buf->cap >= cap)
		return 0;
	if (cap > SIZE_MAX / 2 - sizeof(mf_buf))
		return -ENOMEM;
	size_t old = s->buf->cap;
	mf_buf *b = s->buf;
	if (b->maplen) {
		/* mremap keeps the mapping's huge-page advice. */
		size_t len = map_round(sizeof(mf_buf) + cap);
		void *p = mremap(b, b->maplen, len, MREMAP_MAYMOVE);
		if (p == MAP_FAILED)
			return -ENOMEM; /* the old mapping is untouched */
		b = p;
		b->maplen = len;
		cap = len - sizeof(mf_buf);
		/* The grown part is fresh zero pages: extend a zero range that
		 * reached the old end, or take the new part if it is larger.
		 * (Private and unpublished: nobody reads the range meanwhile.) */
		size_t lo = zlo_of(b), hi = zhi_of(b);
		if (hi == old && lo < hi)
			atomic_store_explicit(&b->zhi, cap, memory_order_relaxed);
		else if (cap - old > hi - lo) {
			atomic_store_explicit(&b->zlo, old, memory_order_relaxed);
			atomic_store_explicit(&b->zhi, cap, memory_order_relaxed);
		}
	} else if (cap >= MAP_MIN) {
		mf_buf *nb = map_try_new(sizeof(mf_buf) + cap);
		if (!nb)
			return -ENOMEM;
		memcpy(nb->data, b->data, b->used);
		atomic_init(&nb->refs, atomic_load(&b->refs));
		nb->used = b->used;
		nb->lo = b->lo;
		nb->maplen = map_round(sizeof(mf_buf) + cap);
		/* Only data[0, used) was copied: the rest is fresh zero pages. */
		atomic_init(&nb->zlo, b->used);
		atomic_init(&nb->zhi, cap);
		free(b);
		b = nb;
	} else {
		mf_buf *nb = realloc(b, sizeof(mf_buf) + cap);
		if (!nb)
			return -ENOMEM;
		b = nb;
	}
	b->cap = cap;
	atomic_fetch_add(&live_bytes, cap - old);
	s->buf = b;
	return 0;
}

void mf_slice_reserve_private(mf_slice *s, size_t cap)
{
	if (mf_slice_try_reserve_private(s, cap) != 0) {
		fprintf(stderr, "memfluxfs: out of memory growing to %zu bytes\n", cap);
		abort();
	}
}

void mf_slice_shrink_private(mf_slice *s)
{
	mf_buf *b = s->buf;
	if (!b || b->maplen || s->off != 0)
		return;
	size_t want = s->len;
	/* Only worth a realloc when the slack is more than a quarter. */
	if (b->cap - want <= want / 4 + 16)
		return;
	if (want == 0) {
		mf_slice_unref(s);
		return;
	}
	size_t old = b->cap;
	b = mf_xrealloc(b, sizeof(mf_buf) + want);
	b->cap = want;
	if (zhi_of(b) > want) { /* the range may not point past the end */
		atomic_store_explicit(&b->zhi, want, memory_order_relaxed);
		if (zlo_of(b) > want)
			atomic_store_explicit(&b->zlo, want, memory_order_relaxed);
	}
	b->used = want;
	atomic_fetch_sub(&live_bytes, old - want);
	s->buf = b;
}

size_t mf_buf_bytes(void)
{
	return atomic_load(&live_bytes);
}
