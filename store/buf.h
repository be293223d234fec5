/*
 * buf.h — reference-counted byte buffers and slices of them.
 *
 * Every value in memfluxfs (a /kv string, a /json document, the text of a
 * /lists list) is a slice (buf, off, len) of a reference-counted buffer.
 * Why: readers (open file handles, a snapshot in progress, an unlinked-but-
 * open file) take a reference to the slice they saw and keep reading it
 * while writers install new slices; nobody copies a value to read it.
 *
 * Contract
 * - Bytes inside [0, used) of a buffer are immutable once published.  The
 *   only in-place growth allowed is mf_slice_append_inplace(): appending
 *   after `used` never changes bytes any existing slice can see, which gives
 *   O(1) amortised APPEND/RPUSH (the same trick as Go's slices).  Callers
 *   must serialise appends to one buffer (the store does: one applier).
 * - Reference counts are atomic; mf_buf_ref/unref are safe from any thread.
 * - Allocation failure aborts the process (mf_xmalloc) on paths that run
 *   after a mutation is logged (apply, replay): a half-applied mutation is
 *   worse than a crash that the WAL recovers from.  Buffers a request fills
 *   before anything is logged (a handle's private value) use the try_
 *   variants, so running out of memory fails that one request (ENOMEM).
 */
#ifndef MF_BUF_H
#define MF_BUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mf_buf {
	atomic_uint_fast32_t refs;
	size_t maplen; /* 0: malloc'd; else the length of its own mmap */
	size_t cap;   /* bytes allocated in data[] */
	size_t used;  /* bytes of data[] ever handed out (high-water mark) */
	size_t lo;    /* lowest byte ever handed out (low-water mark): bytes
	                 below it are free for an in-place prepend */
	/* data[zlo, zhi) is known to be zero and, in a mapped buffer, never
	 * touched: a value grown by truncate takes no RAM for its hole, and a
	 * snapshot stores such a tail as a length (mf_slice_zero_tail).  Only
	 * ever shrunk once the buffer is published, so any (zlo, zhi) a reader
	 * loads, even torn, lies inside a range that was zero; relaxed atomics
	 * for that reason (the single applier shrinks it on in-place appends).
	 * Opt-in: only mf_slice_zeroed, mf_slice_try_alloc and
	 * mf_slice_try_reserve_private (the fs handle's private buffers) set
	 * one, and whoever writes such a buffer does it with mf_buf_write /
	 * mf_buf_zero / mf_buf_copy (or an append); every other buffer has an
	 * empty range, so code that fills data[] with memcpy or pread is safe. */
	atomic_size_t zlo, zhi;
	char data[];
} mf_buf;

typedef struct mf_slice {
	mf_buf *buf;  /* NULL for the empty slice */
	size_t off;
	size_t len;
} mf_slice;

#define MF_SLICE_EMPTY ((mf_slice){NULL, 0, 0})

void *mf_xmalloc(size_t n);
void *mf_xrealloc(void *p, size_t n);

/* A new buffer holding a copy of [p, p+n), with room for `cap` >= n bytes.
 * Returns a slice owning one reference. */
mf_slice mf_slice_from(const void *p, size_t n, size_t cap);
/* A new private buffer of capacity cap (>= len) whose first len bytes are
 * zero; for handles that build a value before committing it. */
mf_slice mf_slice_alloc(size_t len, size_t cap);
/* The same, failing with -ENOMEM instead of aborting. */
int mf_slice_try_alloc(mf_slice *out, size_t len, size_t cap);

static inline const char *mf_slice_ptr(mf_slice s)
{
	return s.buf ? s.buf->data + s.off : "";
}

/* Take / drop a reference.  Both accept the empty slice. */
mf_slice mf_slice_ref(mf_slice s);
void mf_slice_unref(mf_slice *s);

/* Append [p, p+n) to *s.  If s ends exactly at its buffer's `used` mark and
 * the buffer has room, the bytes go in place (no existing slice can see
 * them); otherwise a new buffer (doubling capacity) is made and *s moves to
 * it.  *s must own a reference; it still owns exactly one afterwards. */
void mf_slice_append(mf_slice *s, const void *p, size_t n);

/* Prepend [p, p+n) to *s: the mirror of mf_slice_append, for LPUSH.  In
 * place when s starts exactly at its buffer's `lo` mark with room below it
 * (no slice can see those bytes); otherwise a new buffer with headroom
 * (doubling) is made and *s moves to it.  Same ownership rules. */
void mf_slice_prepend(mf_slice *s, const void *p, size_t n);

/* Grow a private, unpublished buffer (refs == 1, no other slice of it)
 * to at least cap bytes with realloc: for file handles building a value.
 * An empty slice gets a new buffer. */
void mf_slice_reserve_private(mf_slice *s, size_t cap);
/* The same, failing with -ENOMEM (s unchanged) instead of aborting. */
int mf_slice_try_reserve_private(mf_slice *s, size_t cap);

/* Give back a private buffer's unused capacity before publishing it as a
 * value (a handle grows its buffer with slack; a stored 100-byte value
 * must not keep 4 KiB).  Mapped buffers are left alone. */
void mf_slice_shrink_private(mf_slice *s);

/* A new buffer of len zero bytes (a slice owning one reference).  A big
 * one is a fresh mapping left untouched: no RAM until written. */
mf_slice mf_slice_zeroed(size_t len);

/* Write [p, p+n) at data[at] of a buffer nobody else writes (a new value
 * being built, a private handle buffer), keeping its zero range true. */
void mf_buf_write(mf_buf *b, size_t at, const void *p, size_t n);
/* Make data[at, at+n) zero, touching only bytes not already known zero. */
void mf_buf_zero(mf_buf *b, size_t at, size_t n);
/* Copy the first n bytes of src to data[at]: the part of src known zero is
 * not read, and not written where the destination is known zero (so a hole
 * stays a hole through a copy). */
void mf_buf_copy(mf_buf *b, size_t at, mf_slice src, size_t n);
/* How many trailing bytes of s are known zero. */
size_t mf_slice_zero_tail(mf_slice s);

/* Bytes currently held by buffers (for stats). */
size_t mf_buf_bytes(void);

#endif
