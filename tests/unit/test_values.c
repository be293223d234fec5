/*
 * test_values.c — value representation for big values (issue 12): holes
 * that take no RAM (buf.c zero ranges), WRITEV (a handle's change as byte
 * ranges, store.c), and their round trip through the WAL.
 *
 * Random tests take their seed from MEMFLUX_TEST_SEED or the clock and
 * print it, so a failure can be repeated.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "store.h"
#include "snapshot.h"
#include "json.h"

static uint64_t g_seed, rng;

static uint64_t rnd(void)
{
	/* splitmix64 */
	uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rndn(uint64_t n)
{
	return n ? rnd() % n : 0;
}

static mf_slice sl(const void *p, size_t n)
{
	return mf_slice_from(p, n, n);
}

static mf_op op_of(int type, const char *key)
{
	mf_op op = {.type = (uint8_t)type, .ktype = MF_T_STRING, .time_ns = 1};
	op.key = sl(key, strlen(key));
	return op;
}

static int apply(mf_store *st, mf_op *op)
{
	int c = mf_store_check(st, op);
	int r = mf_store_apply(st, op);
	/* check cannot see whether the kept bytes still hash right */
	if (!(c == 0 && r == -ESTALE))
		assert_int_equal(c, r);
	mf_op_clear(op);
	return r;
}

static mf_slice value_of(mf_store *st, const char *key)
{
	mf_entry_info info;
	assert_int_equal(mf_store_get(st, key, strlen(key), true, &info), 0);
	assert_int_equal(info.size, info.val.len);
	return info.val;
}

/* Resident bytes of [p, p+n) (whole pages), by mincore. */
static size_t resident(const void *p, size_t n)
{
	long ps = sysconf(_SC_PAGESIZE);
	uintptr_t a = (uintptr_t)p & ~(uintptr_t)(ps - 1);
	size_t len = (size_t)((uintptr_t)p + n - a), pages = (len + (size_t)ps - 1) / (size_t)ps;
	unsigned char *vec = malloc(pages);
	assert_non_null(vec);
	assert_int_equal(mincore((void *)a, len, vec), 0);
	size_t r = 0;
	for (size_t i = 0; i < pages; i++)
		r += vec[i] & 1;
	free(vec);
	return r * (size_t)ps;
}

/* ---- zero ranges ------------------------------------------------------ */

static void test_zero_range_tracks_writes(void **state)
{
	(void)state;
	mf_slice z = mf_slice_zeroed(100);
	assert_int_equal(mf_slice_zero_tail(z), 100);
	mf_buf_write(z.buf, 10, "abc", 3);
	assert_int_equal(mf_slice_zero_tail(z), 87); /* [13, 100) is larger */
	mf_buf_write(z.buf, 90, "x", 1);
	assert_int_equal(mf_slice_zero_tail(z), 0);   /* kept [13, 90) */
	mf_slice head = mf_slice_ref(z);
	head.len = 50;
	assert_int_equal(mf_slice_zero_tail(head), 37);
	mf_slice_unref(&head);
	for (size_t i = 0; i < 100; i++)
		assert_int_equal(mf_slice_ptr(z)[i], i >= 10 && i < 13 ? "abc"[i - 10] : i == 90 ? 'x' : 0);
	mf_slice_unref(&z);
}

static void test_copy_keeps_hole(void **state)
{
	(void)state;
	size_t big = (size_t)64 << 20;
	mf_slice a = mf_slice_zeroed(big);
	mf_buf_write(a.buf, 0, "head", 4);
	mf_slice b = mf_slice_zeroed(big + 4096);
	mf_buf_copy(b.buf, 0, a, big);
	mf_buf_write(b.buf, big, "tail", 4);
	/* The copy read none of a's hole and wrote none of b's. */
	assert_true(resident(b.buf->data, big) <= ((size_t)4 << 20));
	assert_memory_equal(mf_slice_ptr(b), "head", 4);
	assert_memory_equal(mf_slice_ptr(b) + big, "tail", 4);
	assert_int_equal(mf_slice_ptr(b)[big / 2], 0);
	mf_slice_unref(&a);
	mf_slice_unref(&b);
}

static void test_append_in_place_shrinks_range(void **state)
{
	(void)state;
	/* A private buffer grown past a mapping's size, then published and
	 * appended to in place: the appended bytes must leave the range. */
	mf_slice s = MF_SLICE_EMPTY;
	mf_slice_reserve_private(&s, (size_t)4 << 20);
	mf_buf_write(s.buf, 0, "v", 1);
	s.len = s.buf->used = 1;
	mf_slice_append(&s, "w", 1);
	assert_int_equal(s.len, 2);
	assert_memory_equal(mf_slice_ptr(s), "vw", 2);
	assert_int_equal(mf_slice_zero_tail(s), 0);
	mf_slice_unref(&s);

	/* A published slice that ends in zeros keeps its zero tail when the
	 * buffer is appended to in place (a snapshot sizes, then writes). */
	mf_slice z = MF_SLICE_EMPTY;
	mf_slice_reserve_private(&z, (size_t)4 << 20);
	z.len = z.buf->used = 100;
	mf_slice pub = mf_slice_ref(z);
	assert_int_equal(mf_slice_zero_tail(pub), 100);
	mf_slice_append(&z, "x", 1);
	assert_true(z.buf == pub.buf); /* in place */
	assert_int_equal(mf_slice_zero_tail(pub), 100);
	assert_int_equal(mf_slice_zero_tail(z), 0);
	mf_slice_unref(&pub);
	mf_slice_unref(&z);
}

/* ---- truncate grows a hole ---------------------------------------------- */

static void test_truncate_grow_is_sparse(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	mf_op op = op_of(MF_OP_SET, "k");
	op.val = sl("hello", 5);
	assert_int_equal(apply(st, &op), 0);
	op = op_of(MF_OP_TRUNCATE, "k");
	op.arg = (uint64_t)1 << 30;
	assert_int_equal(apply(st, &op), 0);
	mf_slice v = value_of(st, "k");
	assert_int_equal(v.len, (size_t)1 << 30);
	assert_memory_equal(mf_slice_ptr(v), "hello", 5);
	assert_int_equal(mf_slice_zero_tail(v), ((size_t)1 << 30) - 5);
	assert_true(resident(mf_slice_ptr(v), v.len) <= ((size_t)4 << 20));
	/* Reading the hole gives zeros (and maps no RAM for it). */
	for (size_t o = 4096; o < v.len; o += (size_t)64 << 20)
		assert_int_equal(mf_slice_ptr(v)[o], 0);
	mf_slice_unref(&v);
	mf_store_free(st);
}

/* ---- WRITEV ------------------------------------------------------------- */

static mf_op writev_op(const char *key, uint64_t keep, uint64_t hash, uint64_t size,
                       const mf_range *r, size_t n, const char *src)
{
	mf_op op = op_of(MF_OP_WRITEV, key);
	op.arg = size;
	op.val = mf_writev_encode(keep, hash, r, n, src);
	return op;
}

static void test_writev_basic(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	mf_op op = op_of(MF_OP_SET, "k");
	op.val = sl("0123456789", 10);
	assert_int_equal(apply(st, &op), 0);
	char src[16] = "..AB......XY";
	mf_range r[2] = {{2, 2}, {10, 2}};
	/* keep 10 of "0123456789", grow to 14, write AB at 2 and XY at 10 */
	op = writev_op("k", 10, mf_hash64("0123456789", 10), 14, r, 2, src);
	assert_int_equal(apply(st, &op), 0);
	mf_slice v = value_of(st, "k");
	assert_int_equal(v.len, 14);
	assert_memory_equal(mf_slice_ptr(v), "01AB456789XY\0\0", 14);
	mf_slice_unref(&v);
	/* A stale base: nothing changes. */
	op = writev_op("k", 10, mf_hash64("0123456789", 10), 12, NULL, 0, NULL);
	assert_int_equal(apply(st, &op), -ESTALE);
	v = value_of(st, "k");
	assert_int_equal(v.len, 14);
	mf_slice_unref(&v);
	/* keep 0: no precondition, creates the key (O_TRUNC + ftruncate). */
	op = writev_op("new", 0, 0, (uint64_t)1 << 28, NULL, 0, NULL);
	assert_int_equal(apply(st, &op), 0);
	v = value_of(st, "new");
	assert_int_equal(v.len, (size_t)1 << 28);
	assert_int_equal(mf_slice_zero_tail(v), (size_t)1 << 28);
	mf_slice_unref(&v);
	/* keep beyond the value: stale, refused by check already. */
	op = writev_op("k", 100, 0, 200, NULL, 0, NULL);
	assert_int_equal(apply(st, &op), -ESTALE);
	mf_store_free(st);
}

static void test_writev_malformed(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	mf_range r = {8, 4};
	/* a range past the size */
	mf_op op = writev_op("k", 0, 0, 10, &r, 1, "........abcd");
	assert_int_equal(apply(st, &op), -EINVAL);
	/* keep past the size */
	op = writev_op("k", 11, 0, 10, NULL, 0, NULL);
	assert_int_equal(apply(st, &op), -EINVAL);
	/* a cut payload */
	op = writev_op("k", 0, 0, 20, &r, 1, "........abcd");
	op.val.len -= 2;
	assert_int_equal(apply(st, &op), -EINVAL);
	/* short header */
	op = op_of(MF_OP_WRITEV, "k");
	op.val = sl("abc", 3);
	assert_int_equal(apply(st, &op), -EINVAL);
	/* not a string */
	op = writev_op("k", 0, 0, 1, NULL, 0, NULL);
	op.ktype = MF_T_JSON;
	assert_int_equal(apply(st, &op), -EINVAL);
	/* over the value limit */
	op = writev_op("k", 0, 0, MF_VALUE_MAX + 1, NULL, 0, NULL);
	assert_int_equal(apply(st, &op), -EFBIG);
	mf_entry_info info;
	assert_int_equal(mf_store_get(st, "k", 1, false, &info), -ENOENT);
	mf_store_free(st);
}

/* The base hint only skips the hash when the key holds the very slice. */
static void test_writev_base_hint(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	mf_op op = op_of(MF_OP_SET, "k");
	op.val = sl("abcdef", 6);
	assert_int_equal(apply(st, &op), 0);
	mf_slice base = value_of(st, "k");
	/* A wrong hash with the right base: applied (same bytes, so the hash
	 * of a correct encoder would match; the hint is trusted). */
	op = writev_op("k", 6, mf_hash64("abcdef", 6), 6, NULL, 0, NULL);
	op.base = mf_slice_ref(base);
	assert_int_equal(apply(st, &op), 0);
	/* Now the key holds a new buffer: the old base no longer matches and
	 * the hash decides. */
	op = writev_op("k", 6, 12345, 6, NULL, 0, NULL);
	op.base = mf_slice_ref(base);
	assert_int_equal(apply(st, &op), -ESTALE);
	mf_slice_unref(&base);
	mf_store_free(st);
}

/*
 * Random handle sessions against a model: a handle copies the value,
 * writes ranges and truncates; the WRITEV built from what it did must give
 * exactly its value, or -ESTALE when someone changed the value meanwhile.
 */
typedef struct session {
	char *val;        /* the handle's whole value */
	size_t size, keep;
	mf_range r[64];   /* written ranges, in write order (may overlap) */
	size_t nr;
} session;

static void session_write(session *s, size_t cap, size_t off, size_t len)
{
	if (off + len > cap)
		return;
	if (off > s->size)
		memset(s->val + s->size, 0, off - s->size);
	for (size_t i = 0; i < len; i++)
		s->val[off + i] = (char)('a' + rndn(26));
	if (off + len > s->size)
		s->size = off + len;
	if (s->nr < 64)
		s->r[s->nr++] = (mf_range){off, len};
}

static void session_truncate(session *s, size_t size)
{
	if (size > s->size)
		memset(s->val + s->size, 0, size - s->size);
	s->size = size;
	if (size < s->keep)
		s->keep = size;
	/* clip ranges */
	for (size_t i = 0; i < s->nr; i++) {
		if (s->r[i].off >= size)
			s->r[i].len = 0;
		else if (s->r[i].off + s->r[i].len > size)
			s->r[i].len = size - s->r[i].off;
	}
}

static void test_writev_random(void **state)
{
	(void)state;
	rng = g_seed;
	enum { CAP = 8192 };
	mf_store *st = mf_store_new();
	char *cur = calloc(CAP, 1);
	size_t curlen = 0;
	for (int round = 0; round < 3000; round++) {
		session s = {.val = calloc(CAP, 1)};
		memcpy(s.val, cur, curlen);
		s.size = s.keep = curlen;
		uint64_t base_hash = 0;
		int steps = (int)rndn(6);
		for (int k = 0; k < steps; k++) {
			if (rndn(4) == 0)
				session_truncate(&s, rndn(CAP));
			else
				session_write(&s, CAP, rndn(CAP), 1 + rndn(200));
		}
		if (rndn(10) == 0)
			session_truncate(&s, 0); /* like O_TRUNC */
		base_hash = mf_hash64(cur, s.keep);
		/* Sometimes another writer commits first. */
		bool raced = rndn(8) == 0;
		if (raced) {
			size_t n = rndn(CAP);
			for (size_t i = 0; i < n; i++)
				cur[i] = (char)('A' + rndn(26));
			curlen = n;
			mf_op op = op_of(MF_OP_SET, "k");
			op.val = sl(cur, n);
			assert_int_equal(apply(st, &op), 0);
		}
		mf_range r[64];
		size_t nr = 0;
		for (size_t i = 0; i < s.nr; i++)
			if (s.r[i].len)
				r[nr++] = s.r[i];
		mf_op op = writev_op("k", s.keep, base_hash, s.size, r, nr, s.val);
		int rc = apply(st, &op);
		/* A race that left the kept bytes as they were still applies. */
		bool stale = raced && s.keep && (curlen < s.keep || mf_hash64(cur, s.keep) != base_hash);
		if (rc != (stale ? -ESTALE : 0))
			fail_msg("seed %" PRIu64 " round %d: got %d, stale %d", g_seed, round, rc, stale);
		if (rc == 0) {
			memcpy(cur, s.val, s.size);
			curlen = s.size;
		}
		mf_entry_info info;
		if (mf_store_get(st, "k", 1, true, &info) == 0) {
			if (info.val.len != curlen || memcmp(mf_slice_ptr(info.val), cur, curlen) != 0)
				fail_msg("seed %" PRIu64 " round %d: value differs from the model", g_seed,
				         round);
			mf_slice_unref(&info.val);
		} else {
			assert_int_equal(curlen, 0);
		}
		free(s.val);
	}
	free(cur);
	mf_store_free(st);
}

/* ---- snapshots store a zero tail as a length ---------------------------- */

static int collect(void *ctx, mf_item *item)
{
	mf_item *out = ctx;
	out[item->key.len - 1] = *item; /* keys "a", "bb", "ccc" */
	return 0;
}

static void test_snapshot_sparse_roundtrip(void **state)
{
	(void)state;
	char dir[] = "/tmp/mf-test-values.XXXXXX";
	assert_non_null(mkdtemp(dir));
	size_t big = (size_t)512 << 20;
	mf_slice sparse = mf_slice_zeroed(big);
	mf_buf_write(sparse.buf, 0, "head", 4);
	mf_slice hole_only = mf_slice_zeroed((size_t)8 << 20);
	mf_item it[3] = {
		{sl("a", 1), MF_T_STRING, sparse, 1, 2, 0, MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, 1},
		{sl("bb", 2), MF_T_STRING, sl("plain", 5), 3, 4, 0, MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, 3},
		{sl("ccc", 3), MF_T_STRING, hole_only, 5, 6, 0, MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, 5},
	};
	mf_snapshot_info info;
	assert_int_equal(mf_snapshot_write(mf_io_posix(), dir, 7, it, 3, &info), 0);
	/* 520 MiB of values in a few hundred bytes of stream */
	assert_true(info.raw_bytes < 1024);
	mf_item got[3];
	memset(got, 0, sizeof got);
	char err[256];
	assert_int_equal(mf_snapshot_load(mf_io_posix(), dir, collect, got, &info, err, sizeof err),
	                 0);
	assert_int_equal(info.keys, 3);
	assert_int_equal(got[0].val.len, big);
	assert_memory_equal(mf_slice_ptr(got[0].val), "head\0\0", 6);
	assert_int_equal(mf_slice_zero_tail(got[0].val), big - 4);
	assert_true(resident(mf_slice_ptr(got[0].val), big) <= ((size_t)4 << 20));
	assert_int_equal(mf_slice_ptr(got[0].val)[big - 1], 0);
	assert_int_equal(got[1].val.len, 5);
	assert_memory_equal(mf_slice_ptr(got[1].val), "plain", 5);
	assert_int_equal(got[2].val.len, (size_t)8 << 20);
	assert_int_equal(got[2].mtime_ns, 5);
	/* The key shares the buffer and is intact. */
	assert_memory_equal(mf_slice_ptr(got[2].key), "ccc", 3);
	for (int i = 0; i < 3; i++) {
		mf_slice_unref(&got[i].key);
		mf_slice_unref(&got[i].val);
		mf_slice_unref(&it[i].key);
		mf_slice_unref(&it[i].val);
	}
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* ---- JSON paths on stored documents: one scan, results always valid ---- */

typedef struct sbuf {
	char *p;
	size_t n, cap;
} sbuf;

static void sput(sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, s, n);
	b->n += n;
	b->p[b->n] = 0;
}

static void sputs(sbuf *b, const char *s)
{
	sput(b, s, strlen(s));
}

/* A random valid document; paths[] gets "$..." paths of its members and
 * elements (with the text each one has), blanks and escapes sprinkled. */
typedef struct jpath {
	char path[256];
	char *text;
} jpath;

static void gen(sbuf *b, int depth, char *path, jpath *paths, int *np)
{
	static const char *blank[] = {"", " ", "\n  ", "\t"};
	static const char *names[] = {"a", "b", "key_1", "x-y", "a"}; /* "a" twice: duplicates */
	static const char *scalars[] = {"1", "-2.5e3", "true", "false", "null", "\"s\"",
	                                "\"q\\\"uote\\\\\"", "\"\\u0041\"", "\"]}{[,\""};
	size_t start = b->n;
	uint64_t k = depth >= 4 ? 2 : rndn(4);
	if (k < 2) {
		bool obj = k == 0;
		sputs(b, obj ? "{" : "[");
		int n = (int)rndn(4);
		for (int i = 0; i < n; i++) {
			sputs(b, blank[rndn(4)]);
			char sub[256];
			int w;
			if (obj) {
				const char *nm = names[rndn(5)];
				sputs(b, "\"");
				sputs(b, nm);
				sputs(b, "\"");
				sputs(b, blank[rndn(4)]);
				sputs(b, ":");
				sputs(b, blank[rndn(4)]);
				w = snprintf(sub, sizeof sub, "%s.%s", path, nm);
			} else {
				w = snprintf(sub, sizeof sub, "%s[%d]", path, i);
			}
			assert_true(w > 0 && (size_t)w < sizeof sub); /* depth <= 4: short */
			gen(b, depth + 1, sub, paths, np);
			sputs(b, blank[rndn(4)]);
			if (i + 1 < n)
				sputs(b, ",");
		}
		sputs(b, obj ? "}" : "]");
	} else {
		sputs(b, scalars[rndn(9)]);
	}
	if (*np < 64 && strlen(path) < 200) {
		/* a later duplicate replaces an earlier one: last one wins */
		int at = *np;
		for (int i = 0; i < *np; i++)
			if (!strcmp(paths[i].path, path))
				at = i;
		if (at == *np)
			(*np)++;
		else
			free(paths[at].text);
		snprintf(paths[at].path, sizeof paths[at].path, "%s", path);
		paths[at].text = strndup(b->p + start, b->n - start);
	}
}

static void test_json_paths_random(void **state)
{
	(void)state;
	rng = g_seed ^ 0x15;
	for (int round = 0; round < 3000; round++) {
		sbuf b = {0};
		jpath paths[64];
		int np = 0;
		char root[2] = "$";
		gen(&b, 0, root, paths, &np);
		assert_int_equal(mf_json_validate(b.p, b.n, NULL, NULL), 0);
		for (int i = 0; i < np; i++) {
			const char *p = paths[i].path;
			size_t off, len;
			/* Paths under a duplicate that lost may be stale: the
			 * document decides; only compare when the scan finds it. */
			int r = mf_json_get_path_doc(b.p, b.n, p, strlen(p), &off, &len);
			int r2 = mf_json_get_path(b.p, b.n, p, strlen(p), &off, &len);
			assert_int_equal(r, r2);
			if (r == 0 && strcmp(p, "$") != 0 && strlen(paths[i].text) == len &&
			    memcmp(b.p + off, paths[i].text, len) != 0)
				fail_msg("seed %" PRIu64 " round %d: %s read wrong text", g_seed, round, p);
			if (r == 0 && mf_json_validate(b.p + off, len, NULL, NULL) != 0)
				fail_msg("seed %" PRIu64 " round %d: %s span is not JSON", g_seed, round, p);
			/* set and delete give valid documents; set then get reads it */
			char *out;
			size_t olen;
			if (mf_json_set_path_doc(b.p, b.n, p, strlen(p), "[7, {\"n\":8}]", 13, &out, &olen, NULL, NULL) ==
			    0) {
				if (mf_json_validate(out, olen, NULL, NULL) != 0)
					fail_msg("seed %" PRIu64 " round %d: set %s: invalid result", g_seed, round,
					         p);
				assert_int_equal(mf_json_get_path_doc(out, olen, p, strlen(p), &off, &len), 0);
				assert_int_equal(len, 13);
				assert_memory_equal(out + off, "[7, {\"n\":8}]", 13);
				free(out);
			}
			if (strcmp(p, "$") != 0 &&
			    mf_json_del_path_doc(b.p, b.n, p, strlen(p), &out, &olen, NULL, NULL) == 0) {
				if (mf_json_validate(out, olen, NULL, NULL) != 0)
					fail_msg("seed %" PRIu64 " round %d: del %s: invalid result", g_seed, round,
					         p);
				free(out);
			}
			free(paths[i].text);
		}
		/* adding a member to the root object, if it is one */
		char *out;
		size_t olen;
		if (mf_json_set_path_doc(b.p, b.n, "$.new", 5, "1", 1, &out, &olen, NULL, NULL) == 0) {
			assert_int_equal(mf_json_validate(out, olen, NULL, NULL), 0);
			free(out);
		}
		free(b.p);
	}
	/* depth: a value that would nest past the limit is refused */
	/* depth: a 511-deep value fits inside one container, not two */
	char *big = malloc(1100);
	size_t bl = 0;
	for (int i = 0; i < 511; i++)
		big[bl++] = '[';
	for (int i = 0; i < 511; i++)
		big[bl++] = ']';
	char *out;
	size_t olen;
	assert_int_equal(mf_json_set_path_doc("{\"a\":1}", 7, "$.a", 3, big, bl, &out, &olen, NULL, NULL), 0);
	assert_int_equal(mf_json_validate(out, olen, NULL, NULL), 0);
	free(out);
	assert_int_equal(mf_json_set_path_doc("{\"a\":[1]}", 9, "$.a[0]", 6, big, bl, &out, &olen, NULL, NULL),
	                 -EINVAL);
	free(big);
	/* empty stored value: no document yet */
	size_t off, len;
	assert_int_equal(mf_json_get_path_doc("", 0, "$.a", 3, &off, &len), -EINVAL);
	assert_int_equal(mf_json_get_path_doc("  ", 2, "$", 1, &off, &len), -EINVAL);
}

/* prepare keeps the edited document for apply, used only while the key
 * holds exactly the value it was made from. */
static mf_op jset(const char *key, const char *path, const char *val)
{
	mf_op op = {.type = MF_OP_JSON_SETPATH, .ktype = MF_T_JSON, .time_ns = 1};
	op.key = sl(key, strlen(key));
	op.key2 = sl(path, strlen(path));
	op.val = sl(val, strlen(val));
	return op;
}

static void test_json_prepare_then_apply(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	mf_op op = {.type = MF_OP_SET, .ktype = MF_T_JSON, .time_ns = 1};
	op.key = sl("d", 1);
	op.val = sl("{\"a\":1,\"b\":2}", 13);
	assert_int_equal(apply(st, &op), 0);
	mf_op a = jset("d", "$.a", "10");
	assert_int_equal(mf_store_prepare(st, &a), 0);
	assert_non_null(a.prep.buf);
	assert_int_equal(mf_store_apply(st, &a), 0);
	mf_slice v = value_of(st, "d");
	assert_true(v.buf == a.prep.buf); /* installed, not edited again */
	assert_memory_equal(mf_slice_ptr(v), "{\"a\":10,\"b\":2}", 14);
	mf_slice_unref(&v);
	mf_op_clear(&a);
	/* prepared, then another op changes the document first */
	mf_op b = jset("d", "$.b", "20");
	assert_int_equal(mf_store_prepare(st, &b), 0);
	mf_op c = jset("d", "$.c", "30");
	assert_int_equal(mf_store_apply(st, &c), 0);
	mf_op_clear(&c);
	assert_int_equal(mf_store_apply(st, &b), 0);
	v = value_of(st, "d");
	assert_true(v.buf != b.prep.buf);
	assert_int_equal(v.len, strlen("{\"a\":10,\"b\":20,\"c\":30}"));
	assert_memory_equal(mf_slice_ptr(v), "{\"a\":10,\"b\":20,\"c\":30}", v.len);
	mf_slice_unref(&v);
	mf_op_clear(&b);
	/* a missing path is refused by prepare, before anything is logged */
	mf_op d = jset("d", "$.x.y", "1");
	assert_int_equal(mf_store_prepare(st, &d), -ENOENT);
	assert_null(d.prep.buf);
	mf_op_clear(&d);
	mf_store_free(st);
}

int main(void)
{
	const char *e = getenv("MEMFLUX_TEST_SEED");
	g_seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	printf("test_values: seed %" PRIu64 " (MEMFLUX_TEST_SEED=%" PRIu64 " repeats it)\n", g_seed,
	       g_seed);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_zero_range_tracks_writes),
		cmocka_unit_test(test_copy_keeps_hole),
		cmocka_unit_test(test_append_in_place_shrinks_range),
		cmocka_unit_test(test_truncate_grow_is_sparse),
		cmocka_unit_test(test_writev_basic),
		cmocka_unit_test(test_writev_malformed),
		cmocka_unit_test(test_writev_base_hint),
		cmocka_unit_test(test_writev_random),
		cmocka_unit_test(test_snapshot_sparse_roundtrip),
		cmocka_unit_test(test_json_paths_random),
		cmocka_unit_test(test_json_prepare_then_apply),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
