/*
 * test_store.c — the in-memory keyspace (store/store.c) and refcounted
 * slices (store/buf.c).
 *
 * Every op goes through run(), which also asks mf_store_check() first and
 * requires the same answer as mf_store_apply() (except where apply fails
 * inside the JSON document, which check cannot see: see run()).
 *
 * The most valuable test is test_model_random: 20k seeded random ops
 * (valid and invalid) against a plain reference model kept in arrays.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <time.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "store.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

static uint64_t rng_state;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}
static uint64_t rndn(uint64_t n) { return n ? rnd() % n : 0; }

static mf_slice sl(const void *p, size_t n) { return mf_slice_from(p, n, n); }

/* Check, then apply; returns apply's result, hands LPOP's out to *out. */
static int run_op(mf_store *st, mf_op *op, mf_slice *out)
{
	int c = mf_store_check(st, op);
	int r = mf_store_apply(st, op);
	/* check validates keys, types and existence; the content of a JSON
	 * document and path is only looked at by apply (advisory check). */
	if (!(op->type == MF_OP_JSON_SETPATH && c == 0))
		assert_int_equal(c, r);
	if (out)
		*out = op->out;
	else
		mf_slice_unref(&op->out);
	op->out = MF_SLICE_EMPTY;
	mf_op_clear(op);
	return r;
}

static int opx(mf_store *st, int type, int ktype, const void *k, size_t kn, const void *k2,
               size_t k2n, const void *v, size_t vn, uint64_t arg, int64_t t, mf_slice *out)
{
	mf_op op;
	memset(&op, 0, sizeof op);
	op.type = (uint8_t)type;
	op.ktype = (uint8_t)ktype;
	op.key = sl(k, kn);
	op.key2 = sl(k2, k2n);
	op.val = sl(v, vn);
	op.arg = arg;
	op.time_ns = t;
	return run_op(st, &op, out);
}

#define K(s) (s), strlen(s)

static int o_create(mf_store *st, int kt, const char *k, int64_t t)
{
	return opx(st, MF_OP_CREATE, kt, K(k), NULL, 0, NULL, 0, 0, t, NULL);
}
static int o_set(mf_store *st, int kt, const char *k, const void *v, size_t n, int64_t t)
{
	return opx(st, MF_OP_SET, kt, K(k), NULL, 0, v, n, 0, t, NULL);
}
static int o_append(mf_store *st, const char *k, const void *v, size_t n, int64_t t)
{
	return opx(st, MF_OP_APPEND, MF_T_STRING, K(k), NULL, 0, v, n, 0, t, NULL);
}
static int o_trunc(mf_store *st, int kt, const char *k, uint64_t size, int64_t t)
{
	return opx(st, MF_OP_TRUNCATE, kt, K(k), NULL, 0, NULL, 0, size, t, NULL);
}
static int o_del(mf_store *st, int kt, const char *k)
{
	return opx(st, MF_OP_DEL, kt, K(k), NULL, 0, NULL, 0, 0, 1, NULL);
}
static int o_rename(mf_store *st, int kt, const char *k, const char *k2, int64_t t)
{
	return opx(st, MF_OP_RENAME, kt, K(k), K(k2), NULL, 0, 0, t, NULL);
}
static int o_settime(mf_store *st, int kt, const char *k, int64_t mt, int64_t t)
{
	return opx(st, MF_OP_SETTIME, kt, K(k), NULL, 0, NULL, 0, (uint64_t)mt, t, NULL);
}
static int o_rpush(mf_store *st, const char *k, const char *v, int64_t t)
{
	return opx(st, MF_OP_RPUSH, MF_T_LIST, K(k), NULL, 0, K(v), 0, t, NULL);
}
static int o_lpop(mf_store *st, const char *k, uint64_t n, int64_t t, mf_slice *out)
{
	return opx(st, MF_OP_LPOP, MF_T_LIST, K(k), NULL, 0, NULL, 0, n, t, out);
}
static int o_jset(mf_store *st, const char *k, const char *path, const char *v, int64_t t)
{
	return opx(st, MF_OP_JSON_SETPATH, MF_T_JSON, K(k), K(path), K(v), 0, t, NULL);
}

static mf_entry_info info(mf_store *st, const char *k)
{
	mf_entry_info in;
	memset(&in, 0, sizeof in);
	assert_int_equal(mf_store_get(st, K(k), false, &in), 0);
	return in;
}

static void expect_val(mf_store *st, int type, const void *k, size_t kn, const void *v, size_t n)
{
	mf_entry_info in;
	assert_int_equal(mf_store_get(st, k, kn, true, &in), 0);
	assert_int_equal(in.type, type);
	assert_int_equal(in.size, n);
	assert_int_equal(in.val.len, n);
	if (n)
		assert_true(memcmp(mf_slice_ptr(in.val), v, n) == 0);
	mf_slice_unref(&in.val);
}
#define EXPECT_STR(st, type, k, s) expect_val(st, type, K(k), s, sizeof(s) - 1)

static void expect_absent(mf_store *st, const char *k)
{
	mf_entry_info in;
	assert_int_equal(mf_store_get(st, K(k), true, &in), -ENOENT);
}

static mf_store_stats stats(mf_store *st)
{
	mf_store_stats s;
	mf_store_stats_get(st, &s);
	return s;
}

static void expect_stats(mf_store *st, uint64_t total, uint64_t s, uint64_t j, uint64_t l,
                         uint64_t bytes)
{
	mf_store_stats x = stats(st);
	assert_int_equal(x.keys[0], total);
	assert_int_equal(x.keys[MF_T_STRING], s);
	assert_int_equal(x.keys[MF_T_JSON], j);
	assert_int_equal(x.keys[MF_T_LIST], l);
	assert_int_equal(x.value_bytes, bytes);
}

static void expect_slice(mf_slice s, const void *v, size_t n)
{
	assert_int_equal(s.len, n);
	if (n)
		assert_true(memcmp(mf_slice_ptr(s), v, n) == 0);
}

/* A full copy of the store's visible state, to prove "unchanged". */
typedef struct sent {
	char *key;
	size_t klen;
	mf_entry_info in; /* in.val not held */
	char *val;
} sent;
typedef struct sstate {
	sent *e;
	size_t n;
	mf_store_stats stats;
} sstate;

static int sent_cmp(const void *a, const void *b)
{
	const sent *x = a, *y = b;
	size_t m = x->klen < y->klen ? x->klen : y->klen;
	int c = memcmp(x->key, y->key, m);
	if (c)
		return c;
	return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static void capture(mf_store *st, sstate *s)
{
	mf_slice *keys;
	s->n = mf_store_keys(st, MF_T_NONE, &keys);
	s->e = calloc(s->n ? s->n : 1, sizeof *s->e);
	assert_non_null(s->e);
	for (size_t i = 0; i < s->n; i++) {
		sent *e = &s->e[i];
		e->klen = keys[i].len;
		e->key = malloc(e->klen);
		memcpy(e->key, mf_slice_ptr(keys[i]), e->klen);
		assert_int_equal(mf_store_get(st, e->key, e->klen, true, &e->in), 0);
		e->val = malloc(e->in.val.len ? e->in.val.len : 1);
		memcpy(e->val, mf_slice_ptr(e->in.val), e->in.val.len);
		assert_int_equal(e->in.val.len, e->in.size);
		mf_slice_unref(&e->in.val);
		mf_slice_unref(&keys[i]);
	}
	free(keys);
	qsort(s->e, s->n, sizeof *s->e, sent_cmp);
	mf_store_stats_get(st, &s->stats);
}

static void state_free(sstate *s)
{
	for (size_t i = 0; i < s->n; i++) {
		free(s->e[i].key);
		free(s->e[i].val);
	}
	free(s->e);
	s->e = NULL;
	s->n = 0;
}

static void expect_same_state(const sstate *a, const sstate *b)
{
	assert_int_equal(a->n, b->n);
	assert_true(memcmp(&a->stats, &b->stats, sizeof a->stats) == 0);
	for (size_t i = 0; i < a->n; i++) {
		const sent *x = &a->e[i], *y = &b->e[i];
		assert_int_equal(x->klen, y->klen);
		assert_true(memcmp(x->key, y->key, x->klen) == 0);
		assert_int_equal(x->in.type, y->in.type);
		assert_int_equal(x->in.size, y->in.size);
		assert_int_equal(x->in.count, y->in.count);
		assert_int_equal(x->in.mtime_ns, y->in.mtime_ns);
		assert_int_equal(x->in.ctime_ns, y->in.ctime_ns);
		assert_int_equal(x->in.version, y->in.version);
		assert_true(memcmp(x->val, y->val, x->in.size) == 0);
	}
}

/* ------------------------------------------------------------------ */
/* Basic ops                                                           */
/* ------------------------------------------------------------------ */

static void test_create(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	expect_stats(st, 0, 0, 0, 0, 0);
	assert_int_equal(o_create(st, MF_T_STRING, "s", 10), 0);
	assert_int_equal(o_create(st, MF_T_JSON, "j", 11), 0);
	assert_int_equal(o_create(st, MF_T_LIST, "l", 12), 0);
	expect_stats(st, 3, 1, 1, 1, 0);
	const char *ks[] = {"s", "j", "l"};
	for (int i = 0; i < 3; i++) {
		mf_entry_info in = info(st, ks[i]);
		assert_int_equal(in.type, i + 1);
		assert_int_equal(in.size, 0);
		assert_int_equal(in.count, 0);
		assert_int_equal(in.mtime_ns, 10 + i);
		assert_int_equal(in.ctime_ns, 10 + i);
		assert_null(in.val.buf);
	}
	/* CREATE of an existing key of the same type: no change at all. */
	assert_int_equal(o_set(st, MF_T_STRING, "s", "abc", 3, 20), 0);
	mf_entry_info before = info(st, "s");
	assert_int_equal(o_create(st, MF_T_STRING, "s", 30), 0);
	mf_entry_info after = info(st, "s");
	assert_int_equal(after.mtime_ns, 20);
	assert_int_equal(after.ctime_ns, 20);
	assert_int_equal(after.version, before.version);
	EXPECT_STR(st, MF_T_STRING, "s", "abc");
	expect_stats(st, 3, 1, 1, 1, 3);
	mf_store_free(st);
}

static void test_set(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	static const char bin[] = "a\0b\0\0c\xff";
	assert_int_equal(o_set(st, MF_T_STRING, "s", bin, sizeof bin, 5), 0);
	expect_val(st, MF_T_STRING, K("s"), bin, sizeof bin);
	uint64_t v1 = info(st, "s").version;
	assert_int_equal(o_set(st, MF_T_STRING, "s", "xy", 2, 6), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "xy");
	mf_entry_info in = info(st, "s");
	assert_int_not_equal(in.version, v1);
	assert_int_equal(in.mtime_ns, 6);
	assert_int_equal(in.ctime_ns, 6);
	/* Empty value. */
	assert_int_equal(o_set(st, MF_T_STRING, "s", NULL, 0, 7), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "");
	assert_int_equal(o_set(st, MF_T_STRING, "e", NULL, 0, 7), 0);
	EXPECT_STR(st, MF_T_STRING, "e", "");

	/* Lists: a final line without '\n' is completed; count = lines. */
	assert_int_equal(o_set(st, MF_T_LIST, "l", K("a\nb\nc"), 8), 0);
	EXPECT_STR(st, MF_T_LIST, "l", "a\nb\nc\n");
	assert_int_equal(info(st, "l").count, 3);
	assert_int_equal(o_set(st, MF_T_LIST, "l", K("x\n\ny\n"), 9), 0);
	EXPECT_STR(st, MF_T_LIST, "l", "x\n\ny\n");
	assert_int_equal(info(st, "l").count, 3);
	assert_int_equal(o_set(st, MF_T_LIST, "l", NULL, 0, 9), 0);
	EXPECT_STR(st, MF_T_LIST, "l", "");
	assert_int_equal(info(st, "l").count, 0);
	assert_int_equal(o_set(st, MF_T_LIST, "l2", K("one"), 9), 0);
	EXPECT_STR(st, MF_T_LIST, "l2", "one\n");
	assert_int_equal(info(st, "l2").count, 1);

	/* JSON: stored as given (validation is the caller's job). */
	assert_int_equal(o_set(st, MF_T_JSON, "j", K("{\"a\": [1, 2]}"), 10), 0);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"a\": [1, 2]}");
	assert_int_equal(info(st, "j").count, 0);
	expect_stats(st, 5, 2, 1, 2, 0 + 0 + 0 + 4 + 13);
	mf_store_free(st);
}

static void test_append(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	/* Creates when absent. */
	assert_int_equal(o_append(st, "s", "ab", 2, 1), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "ab");
	assert_int_equal(info(st, "s").ctime_ns, 1);
	/* Many appends: the concatenation. */
	char want[4096];
	size_t n = 2;
	memcpy(want, "ab", 2);
	for (int i = 0; i < 300; i++) {
		char piece[8];
		int m = snprintf(piece, sizeof piece, "%d,", i);
		if (i % 7 == 0)
			piece[0] = '\0'; /* binary bytes too */
		assert_int_equal(o_append(st, "s", piece, (size_t)m, 2 + i), 0);
		memcpy(want + n, piece, (size_t)m);
		n += (size_t)m;
	}
	expect_val(st, MF_T_STRING, K("s"), want, n);
	expect_stats(st, 1, 1, 0, 0, n);
	mf_entry_info in = info(st, "s");
	assert_int_equal(in.mtime_ns, 301);
	/* 0-byte append: value unchanged, key still "touched". */
	assert_int_equal(o_append(st, "s", NULL, 0, 500), 0);
	expect_val(st, MF_T_STRING, K("s"), want, n);
	assert_int_equal(info(st, "s").mtime_ns, 500);
	/* 0-byte append to a new key creates it empty. */
	assert_int_equal(o_append(st, "z", NULL, 0, 501), 0);
	EXPECT_STR(st, MF_T_STRING, "z", "");
	expect_stats(st, 2, 1 + 1, 0, 0, n);
	/* Append after SET of a shared (caller's) slice. */
	assert_int_equal(o_set(st, MF_T_STRING, "z", "123", 3, 502), 0);
	assert_int_equal(o_append(st, "z", "45", 2, 503), 0);
	EXPECT_STR(st, MF_T_STRING, "z", "12345");
	mf_store_free(st);
}

static void test_truncate(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_set(st, MF_T_STRING, "s", "abcdef", 6, 1), 0);
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", 6, 2), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "abcdef");
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", 2, 3), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "ab");
	expect_stats(st, 1, 1, 0, 0, 2);
	/* Growth is zero-filled, even where old bytes used to be. */
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", 5, 4), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "ab\0\0\0");
	assert_int_equal(info(st, "s").mtime_ns, 4);
	assert_int_equal(o_append(st, "s", "Z", 1, 5), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "ab\0\0\0Z");
	/* Shrink then append must not reuse the hidden tail. */
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", 1, 6), 0);
	assert_int_equal(o_append(st, "s", "q", 1, 7), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "aq");
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", 0, 8), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "");
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", 3, 9), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "\0\0\0");
	expect_stats(st, 1, 1, 0, 0, 3);
	/* Lists and JSON: to zero only. */
	assert_int_equal(o_set(st, MF_T_LIST, "l", K("a\nb\n"), 10), 0);
	assert_int_equal(o_trunc(st, MF_T_LIST, "l", 0, 11), 0);
	EXPECT_STR(st, MF_T_LIST, "l", "");
	assert_int_equal(info(st, "l").count, 0);
	assert_int_equal(info(st, "l").mtime_ns, 11);
	assert_int_equal(o_set(st, MF_T_JSON, "j", K("[1]"), 12), 0);
	assert_int_equal(o_trunc(st, MF_T_JSON, "j", 0, 13), -EINVAL); /* a cut document */
	assert_int_equal(o_trunc(st, MF_T_JSON, "j", 4, 13), -EINVAL); /* padded */
	assert_int_equal(o_trunc(st, MF_T_JSON, "j", 3, 13), 0);       /* its own size */
	EXPECT_STR(st, MF_T_JSON, "j", "[1]");
	/* A document that is not one is refused by the store itself. */
	assert_int_equal(o_set(st, MF_T_JSON, "j", K("[1,]"), 14), -EINVAL);
	EXPECT_STR(st, MF_T_JSON, "j", "[1]");
	/* RPUSH completes an unterminated last line. */
	assert_int_equal(o_rpush(st, "l", "x\ny", 15), 0);
	EXPECT_STR(st, MF_T_LIST, "l", "x\ny\n");
	assert_int_equal(info(st, "l").count, 2);
	expect_stats(st, 3, 1, 1, 1, 10);
	/* Limit on string growth. */
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", ((uint64_t)1 << 40) + 1, 14), -EFBIG);
	mf_store_free(st);
}

static void test_del(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_set(st, MF_T_STRING, "s", "abc", 3, 1), 0);
	assert_int_equal(o_set(st, MF_T_JSON, "j", "{}", 2, 1), 0);
	assert_int_equal(o_set(st, MF_T_LIST, "l", "a\n", 2, 1), 0);
	expect_stats(st, 3, 1, 1, 1, 7);
	assert_int_equal(o_del(st, MF_T_JSON, "j"), 0);
	expect_absent(st, "j");
	expect_stats(st, 2, 1, 0, 1, 5);
	assert_int_equal(o_del(st, MF_T_JSON, "j"), -ENOENT);
	assert_int_equal(o_del(st, MF_T_STRING, "s"), 0);
	assert_int_equal(o_del(st, MF_T_LIST, "l"), 0);
	expect_stats(st, 0, 0, 0, 0, 0);
	/* The key can come back as another type. */
	assert_int_equal(o_rpush(st, "s", "x\n", 2), 0);
	EXPECT_STR(st, MF_T_LIST, "s", "x\n");
	mf_store_free(st);
}

static void test_rename(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_set(st, MF_T_STRING, "a", "AAA", 3, 100), 0);
	assert_int_equal(o_set(st, MF_T_STRING, "b", "BB", 2, 101), 0);
	assert_int_equal(o_set(st, MF_T_LIST, "l", K("1\n2\n"), 102), 0);
	uint64_t va = info(st, "a").version;
	/* Onto a fresh name: keeps mtime, sets ctime. */
	assert_int_equal(o_rename(st, MF_T_STRING, "a", "c", 200), 0);
	expect_absent(st, "a");
	EXPECT_STR(st, MF_T_STRING, "c", "AAA");
	mf_entry_info in = info(st, "c");
	assert_int_equal(in.mtime_ns, 100);
	assert_int_equal(in.ctime_ns, 200);
	assert_int_not_equal(in.version, va);
	expect_stats(st, 3, 2, 0, 1, 9);
	/* Over an existing key of the same type: replaces it. */
	assert_int_equal(o_rename(st, MF_T_STRING, "c", "b", 300), 0);
	expect_absent(st, "c");
	EXPECT_STR(st, MF_T_STRING, "b", "AAA");
	assert_int_equal(info(st, "b").mtime_ns, 100);
	assert_int_equal(info(st, "b").ctime_ns, 300);
	expect_stats(st, 2, 1, 0, 1, 7);
	/* To itself: a no-op (times and version untouched). */
	mf_entry_info b0 = info(st, "b");
	assert_int_equal(o_rename(st, MF_T_STRING, "b", "b", 400), 0);
	mf_entry_info b1 = info(st, "b");
	assert_int_equal(b1.mtime_ns, b0.mtime_ns);
	assert_int_equal(b1.ctime_ns, b0.ctime_ns);
	assert_int_equal(b1.version, b0.version);
	EXPECT_STR(st, MF_T_STRING, "b", "AAA");
	expect_stats(st, 2, 1, 0, 1, 7);
	/* Lists keep their element count. */
	assert_int_equal(o_rename(st, MF_T_LIST, "l", "m", 500), 0);
	assert_int_equal(info(st, "m").count, 2);
	EXPECT_STR(st, MF_T_LIST, "m", "1\n2\n");
	assert_int_equal(o_lpop(st, "m", 1, 501, NULL), 0);
	EXPECT_STR(st, MF_T_LIST, "m", "2\n");
	/* Many renames through a growing table still find keys. */
	char k[16], k2[16];
	for (int i = 0; i < 3000; i++) {
		snprintf(k, sizeof k, "f%d", i);
		assert_int_equal(o_set(st, MF_T_STRING, k, k, strlen(k), 600), 0);
	}
	for (int i = 0; i < 3000; i++) {
		snprintf(k, sizeof k, "f%d", i);
		snprintf(k2, sizeof k2, "g%d", i);
		assert_int_equal(o_rename(st, MF_T_STRING, k, k2, 700), 0);
	}
	for (int i = 0; i < 3000; i++) {
		snprintf(k, sizeof k, "f%d", i);
		snprintf(k2, sizeof k2, "g%d", i);
		expect_absent(st, k);
		expect_val(st, MF_T_STRING, K(k2), k, strlen(k));
	}
	assert_int_equal(stats(st).keys[0], 3002);
	mf_store_free(st);
}

static void test_settime(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_set(st, MF_T_JSON, "j", "1", 1, 10), 0);
	assert_int_equal(o_settime(st, MF_T_JSON, "j", 123456789, 20), 0);
	mf_entry_info in = info(st, "j");
	assert_int_equal(in.mtime_ns, 123456789);
	assert_int_equal(in.ctime_ns, 20);
	EXPECT_STR(st, MF_T_JSON, "j", "1");
	/* Negative (pre-1970) times survive. */
	assert_int_equal(o_settime(st, MF_T_JSON, "j", -5, 21), 0);
	assert_int_equal(info(st, "j").mtime_ns, -5);
	assert_int_equal(o_settime(st, MF_T_STRING, "j", 1, 22), -ENOENT);
	assert_int_equal(o_settime(st, MF_T_JSON, "nope", 1, 22), -ENOENT);
	mf_store_free(st);
}

static void test_rpush_lpop(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	mf_slice out;
	/* LPOP on an empty (created) list: ENODATA, nothing popped (and so
	 * never logged). */
	assert_int_equal(o_create(st, MF_T_LIST, "q", 1), 0);
	out = sl("junk", 4);
	mf_slice_unref(&out);
	assert_int_equal(o_lpop(st, "q", 1, 2, &out), -ENODATA);
	assert_int_equal(out.len, 0);
	mf_slice_unref(&out);
	/* RPUSH counts lines (empty lines are elements). */
	assert_int_equal(o_rpush(st, "q", "a\n", 3), 0);
	assert_int_equal(o_rpush(st, "q", "bb\n\ncc\n", 4), 0);
	EXPECT_STR(st, MF_T_LIST, "q", "a\nbb\n\ncc\n");
	assert_int_equal(info(st, "q").count, 4);
	expect_stats(st, 1, 0, 0, 1, 9);
	/* RPUSH creates. */
	assert_int_equal(o_rpush(st, "r", "x\ny\n", 5), 0);
	assert_int_equal(info(st, "r").count, 2);
	/* LPOP 1, then count > 1, then more than there is. */
	assert_int_equal(o_lpop(st, "q", 1, 6, &out), 0);
	expect_slice(out, "a\n", 2);
	mf_slice_unref(&out);
	assert_int_equal(info(st, "q").count, 3);
	assert_int_equal(info(st, "q").mtime_ns, 6);
	assert_int_equal(o_lpop(st, "q", 2, 7, &out), 0);
	expect_slice(out, "bb\n\n", 4);
	mf_slice_unref(&out);
	EXPECT_STR(st, MF_T_LIST, "q", "cc\n");
	assert_int_equal(info(st, "q").count, 1);
	assert_int_equal(o_rpush(st, "q", "dd\n", 8), 0);
	assert_int_equal(o_lpop(st, "q", 10, 9, &out), 0);
	expect_slice(out, "cc\ndd\n", 6);
	mf_slice_unref(&out);
	EXPECT_STR(st, MF_T_LIST, "q", "");
	assert_int_equal(info(st, "q").count, 0);
	assert_int_equal(o_lpop(st, "q", 3, 10, &out), -ENODATA);
	assert_int_equal(out.len, 0);
	mf_slice_unref(&out);
	/* LPOP count 0 pops nothing: refused like an empty list. */
	assert_int_equal(o_lpop(st, "r", 0, 11, &out), -ENODATA);
	assert_int_equal(out.len, 0);
	mf_slice_unref(&out);
	EXPECT_STR(st, MF_T_LIST, "r", "x\ny\n");
	expect_stats(st, 2, 0, 0, 2, 4);
	/* A long-lived queue: push/pop many, contents stay right (exercises
	 * the copy-out of a dominant popped prefix). */
	char line[32];
	uint64_t pushed = 0, popped = 0;
	for (int round = 0; round < 2000; round++) {
		for (int i = 0; i < 5; i++) {
			snprintf(line, sizeof line, "%020llu\n", (unsigned long long)pushed++);
			assert_int_equal(o_rpush(st, "big", line, 20 + round), 0);
		}
		assert_int_equal(o_lpop(st, "big", 4, 21 + round, &out), 0);
		assert_int_equal(out.len, 4 * 21);
		for (int i = 0; i < 4; i++) {
			snprintf(line, sizeof line, "%020llu\n", (unsigned long long)popped++);
			assert_true(memcmp(mf_slice_ptr(out) + 21 * i, line, 21) == 0);
		}
		mf_slice_unref(&out);
	}
	mf_entry_info in = info(st, "big");
	assert_int_equal(in.count, pushed - popped);
	assert_int_equal(in.size, (pushed - popped) * 21);
	mf_store_free(st);
}

static void test_json_setpath(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_set(st, MF_T_JSON, "j", K("{\"a\":1}"), 1), 0);
	uint64_t v0 = info(st, "j").version;
	assert_int_equal(o_jset(st, "j", "$.b", "[1, 2]", 2), 0);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"a\":1,\"b\":[1, 2]}");
	assert_int_not_equal(info(st, "j").version, v0);
	assert_int_equal(info(st, "j").mtime_ns, 2);
	assert_int_equal(o_jset(st, "j", "$.b[1]", "\"x\"", 3), 0);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"a\":1,\"b\":[1, \"x\"]}");
	assert_int_equal(o_jset(st, "j", "$.a", " true ", 4), 0);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"a\":true,\"b\":[1, \"x\"]}");
	expect_stats(st, 1, 0, 1, 0, strlen("{\"a\":true,\"b\":[1, \"x\"]}"));
	/* "$" replaces an empty (created) document. */
	assert_int_equal(o_create(st, MF_T_JSON, "e", 5), 0);
	assert_int_equal(o_jset(st, "e", "$", "{}", 6), 0);
	EXPECT_STR(st, MF_T_JSON, "e", "{}");
	assert_int_equal(o_jset(st, "e", "$['a/b']", "null", 7), 0);
	EXPECT_STR(st, MF_T_JSON, "e", "{\"a/b\":null}");
	mf_store_free(st);
}

/* ------------------------------------------------------------------ */
/* Errors leave the store unchanged                                     */
/* ------------------------------------------------------------------ */

static char key256[256], key255[255];
/* One byte over the store's key limit (MF_KEY_BYTES_MAX). */
static char keybig[MF_KEY_BYTES_MAX + 1];

static void init_keys(void)
{
	memset(key256, 'k', sizeof key256);
	memset(keybig, 'b', sizeof keybig);
	memset(key255, 'K', sizeof key255);
}

typedef struct ecase {
	int type, ktype;
	const char *k;
	size_t kn;
	const char *k2;
	size_t k2n;
	const char *v;
	size_t vn;
	uint64_t arg;
	int want;
} ecase;

#define E1(t, kt, k, want) {t, kt, k, sizeof(k) - 1, NULL, 0, NULL, 0, 0, want}
#define EV(t, kt, k, v, want) {t, kt, k, sizeof(k) - 1, NULL, 0, v, sizeof(v) - 1, 0, want}
#define EA(t, kt, k, a, want) {t, kt, k, sizeof(k) - 1, NULL, 0, NULL, 0, a, want}
#define ER(kt, k, k2, want) {MF_OP_RENAME, kt, k, sizeof(k) - 1, k2, sizeof(k2) - 1, NULL, 0, 0, want}
#define EJT(kt, k, p, v, want) \
	{MF_OP_JSON_SETPATH, kt, k, sizeof(k) - 1, p, sizeof(p) - 1, v, sizeof(v) - 1, 0, want}
#define EJ(k, p, v, want) EJT(MF_T_JSON, k, p, v, want)

static const ecase ecases[] = {
	/* wrong ktype for the op */
	EV(MF_OP_APPEND, MF_T_JSON, "j", "x", -EINVAL),
	EV(MF_OP_APPEND, MF_T_LIST, "l", "x", -EINVAL),
	EV(MF_OP_APPEND, MF_T_JSON, "new", "x", -EINVAL),
	EV(MF_OP_APPEND, MF_T_LIST, "new", "x\n", -EINVAL),
	EV(MF_OP_RPUSH, MF_T_STRING, "s", "x\n", -EINVAL),
	EV(MF_OP_RPUSH, MF_T_JSON, "j", "x\n", -EINVAL),
	EV(MF_OP_RPUSH, MF_T_STRING, "new", "x\n", -EINVAL),
	EA(MF_OP_LPOP, MF_T_STRING, "s", 1, -EINVAL),
	EA(MF_OP_LPOP, MF_T_JSON, "j", 1, -EINVAL),
	EJT(MF_T_STRING, "s", "$", "1", -EINVAL),
	EJT(MF_T_LIST, "l", "$", "1", -EINVAL),
	EJT(MF_T_STRING, "new", "$", "1", -EINVAL),
	/* RPUSH payload must be '\n'-terminated lines */
	EV(MF_OP_RPUSH, MF_T_LIST, "l", "", -EINVAL),
	EV(MF_OP_RPUSH, MF_T_LIST, "new", "", -EINVAL),
	/* TRUNCATE of list/JSON to non-zero; string beyond the limit */
	EA(MF_OP_TRUNCATE, MF_T_LIST, "l", 1, -EINVAL),
	EA(MF_OP_TRUNCATE, MF_T_LIST, "l", 100, -EINVAL),
	EA(MF_OP_TRUNCATE, MF_T_JSON, "j", 3, -EINVAL),
	EA(MF_OP_TRUNCATE, MF_T_STRING, "s", ((uint64_t)1 << 40) + 1, -EFBIG),
	EA(MF_OP_TRUNCATE, MF_T_STRING, "s", UINT64_MAX, -EFBIG),
	/* missing keys */
	EA(MF_OP_TRUNCATE, MF_T_STRING, "nope", 0, -ENOENT),
	E1(MF_OP_DEL, MF_T_STRING, "nope", -ENOENT),
	E1(MF_OP_DEL, MF_T_JSON, "nope", -ENOENT),
	E1(MF_OP_DEL, MF_T_LIST, "nope", -ENOENT),
	EA(MF_OP_SETTIME, MF_T_STRING, "nope", 5, -ENOENT),
	EA(MF_OP_LPOP, MF_T_LIST, "nope", 1, -ENOENT),
	EJ("nope", "$", "1", -ENOENT),
	ER(MF_T_STRING, "nope", "s2", -ENOENT),
	ER(MF_T_STRING, "nope", "s", -ENOENT),
	/* existing key, other type: ops on an existing key see "absent" */
	EA(MF_OP_TRUNCATE, MF_T_STRING, "j", 0, -ENOENT),
	EA(MF_OP_TRUNCATE, MF_T_LIST, "s", 0, -ENOENT),
	EA(MF_OP_TRUNCATE, MF_T_JSON, "l", 0, -ENOENT),
	E1(MF_OP_DEL, MF_T_JSON, "s", -ENOENT),
	E1(MF_OP_DEL, MF_T_STRING, "l", -ENOENT),
	E1(MF_OP_DEL, MF_T_LIST, "j", -ENOENT),
	EA(MF_OP_SETTIME, MF_T_LIST, "s", 5, -ENOENT),
	EA(MF_OP_LPOP, MF_T_LIST, "s", 1, -ENOENT),
	EA(MF_OP_LPOP, MF_T_LIST, "j", 1, -ENOENT),
	EJ("s", "$", "1", -ENOENT),
	EJ("l", "$", "1", -ENOENT),
	ER(MF_T_JSON, "s", "x", -ENOENT),
	ER(MF_T_STRING, "l", "x", -ENOENT),
	/* ... and ops that would create it: EEXIST */
	E1(MF_OP_CREATE, MF_T_JSON, "s", -EEXIST),
	E1(MF_OP_CREATE, MF_T_LIST, "s", -EEXIST),
	E1(MF_OP_CREATE, MF_T_STRING, "j", -EEXIST),
	E1(MF_OP_CREATE, MF_T_LIST, "j", -EEXIST),
	E1(MF_OP_CREATE, MF_T_STRING, "l", -EEXIST),
	E1(MF_OP_CREATE, MF_T_JSON, "l", -EEXIST),
	EV(MF_OP_SET, MF_T_JSON, "s", "1", -EEXIST),
	EV(MF_OP_SET, MF_T_LIST, "s", "1\n", -EEXIST),
	EV(MF_OP_SET, MF_T_STRING, "j", "1", -EEXIST),
	EV(MF_OP_SET, MF_T_LIST, "j", "", -EEXIST),
	EV(MF_OP_SET, MF_T_STRING, "l", "", -EEXIST),
	EV(MF_OP_SET, MF_T_JSON, "l", "1", -EEXIST),
	EV(MF_OP_APPEND, MF_T_STRING, "j", "x", -EEXIST),
	EV(MF_OP_APPEND, MF_T_STRING, "l", "x\n", -EEXIST),
	EV(MF_OP_APPEND, MF_T_STRING, "l", "", -EEXIST),
	EV(MF_OP_RPUSH, MF_T_LIST, "s", "x\n", -EEXIST),
	EV(MF_OP_RPUSH, MF_T_LIST, "j", "x\n", -EEXIST),
	/* rename onto another type */
	ER(MF_T_STRING, "s", "j", -EEXIST),
	ER(MF_T_STRING, "s", "l", -EEXIST),
	ER(MF_T_JSON, "j", "l", -EEXIST),
	ER(MF_T_JSON, "j", "s", -EEXIST),
	ER(MF_T_LIST, "l", "s", -EEXIST),
	ER(MF_T_LIST, "l", "j", -EEXIST),
	/* rename to a bad name */
	ER(MF_T_STRING, "s", "", -EINVAL),
	/* ('/' and NUL are fine since RESP: test_key_lengths) */
	/* the JSON document itself rejects (apply only: check says 0) */
	EJ("j", "$.a.b", "1", -ENOENT),
	EJ("j", "$[0]", "1", -ENOENT),
	EJ("j", "$.x.y", "1", -ENOENT),
	EJ("j", "nope", "1", -EINVAL),
	EJ("j", "$.", "1", -EINVAL),
	EJ("j", "$.a", "{", -EINVAL),
	EJ("j", "$.a", "", -EINVAL),
	EJ("j", "$", "tru", -EINVAL),
	EJ("je", "$.a", "1", -EINVAL), /* empty document is not JSON */
};

static mf_store *error_fixture(void)
{
	mf_store *st = mf_store_new();
	static const char bin[] = "hel\0lo";
	assert_int_equal(o_set(st, MF_T_STRING, "s", bin, sizeof bin - 1, 1), 0);
	assert_int_equal(o_append(st, "s", "!", 1, 2), 0); /* spare capacity */
	assert_int_equal(o_set(st, MF_T_JSON, "j", K("{\"a\":1}"), 3), 0);
	assert_int_equal(o_rpush(st, "l", "x\ny\n", 4), 0);
	assert_int_equal(o_create(st, MF_T_JSON, "je", 5), 0);
	assert_int_equal(o_set(st, MF_T_STRING, "s2", NULL, 0, 6), 0);
	assert_int_equal(o_settime(st, MF_T_STRING, "s2", 77, 7), 0);
	return st;
}

static void expect_unchanged_after(mf_store *st, const sstate *base, int type, int ktype,
                                   const void *k, size_t kn, const void *k2, size_t k2n,
                                   const void *v, size_t vn, uint64_t arg, int want)
{
	mf_slice out = MF_SLICE_EMPTY;
	int r = opx(st, type, ktype, k, kn, k2, k2n, v, vn, arg, 999, &out);
	if (r != want)
		fail_msg("op %s ktype %d key '%.*s' (%zu bytes): got %d, want %d",
		         mf_optype_name(type), ktype, (int)(kn > 20 ? 20 : kn), (const char *)k, kn, r,
		         want);
	assert_int_equal(out.len, 0);
	assert_null(out.buf);
	sstate now;
	capture(st, &now);
	expect_same_state(base, &now);
	state_free(&now);
}

static void test_errors_leave_store_unchanged(void **state)
{
	(void)state;
	init_keys();
	size_t live0 = mf_buf_bytes();
	mf_store *st = error_fixture();
	sstate base;
	capture(st, &base);
	assert_int_equal(base.n, 5);

	for (size_t i = 0; i < sizeof ecases / sizeof ecases[0]; i++) {
		ecase c = ecases[i];
		expect_unchanged_after(st, &base, c.type, c.ktype, c.k, c.kn, c.k2, c.k2n, c.v, c.vn,
		                       c.arg, c.want);
	}

	/* Bad keys, for every op type (with otherwise valid arguments). */
	struct {
		const char *k;
		size_t n;
	} bad[] = {{"", 0}, {keybig, sizeof keybig}};
	for (int t = MF_OP_CREATE; t <= MF_OP_MAX_; t++) {
		int kt = t == MF_OP_RPUSH || t == MF_OP_LPOP ? MF_T_LIST
		         : t == MF_OP_JSON_SETPATH       ? MF_T_JSON
		                                         : MF_T_STRING;
		const char *v = t == MF_OP_RPUSH ? "x\n" : "1";
		const char *k2 = t == MF_OP_JSON_SETPATH ? "$" : "s2";
		for (size_t b = 0; b < sizeof bad / sizeof bad[0]; b++)
			expect_unchanged_after(st, &base, t, kt, bad[b].k, bad[b].n, K(k2), K(v), 0,
			                       -EINVAL);
		/* Bad ktype, on an existing key and on a new one. */
		int kts[] = {MF_T_NONE, (MF_T_MAX_ + 1), 255};
		for (size_t b = 0; b < 3; b++) {
			/* EXPIRE/EXPIRED take any key: their ktype is NONE. */
			if (kts[b] == MF_T_NONE && (t == MF_OP_EXPIRE || t == MF_OP_EXPIRED))
				continue;
			expect_unchanged_after(st, &base, t, kts[b], K("s"), K(k2), K(v), 0, -EINVAL);
			expect_unchanged_after(st, &base, t, kts[b], K("new"), K(k2), K(v), 0, -EINVAL);
		}
	}
	/* Keys are any bytes (RESP): one that only differs after a NUL is
	 * another key; prefix "s" exists. */
	expect_unchanged_after(st, &base, MF_OP_DEL, MF_T_STRING, "s\0", 2, NULL, 0, NULL, 0, 0,
	                       -ENOENT);
	/* Too long, even when it would be a rename target. */
	expect_unchanged_after(st, &base, MF_OP_RENAME, MF_T_STRING, K("s"), keybig, sizeof keybig,
	                       NULL, 0, 0, -EINVAL);
	/* Unknown op types. */
	int bad_types[] = {0, MF_OP_MAX_ + 1, 200, 255};
	for (size_t b = 0; b < 4; b++)
		expect_unchanged_after(st, &base, bad_types[b], MF_T_STRING, K("s"), NULL, 0, "x", 1, 0,
		                       -EINVAL);

	/* Error ops do not bump versions or times (expect_same_state). */
	state_free(&base);
	mf_store_free(st);
	assert_int_equal(mf_buf_bytes(), live0);
}

/* The 255-byte boundary. */
static void test_key_lengths(void **state)
{
	(void)state;
	init_keys();
	mf_store *st = mf_store_new();
	assert_int_equal(opx(st, MF_OP_SET, MF_T_STRING, key255, 255, NULL, 0, "v", 1, 0, 1, NULL),
	                 0);
	expect_val(st, MF_T_STRING, key255, 255, "v", 1);
	assert_int_equal(opx(st, MF_OP_RENAME, MF_T_STRING, key255, 255, key256, 255, NULL, 0, 0, 2,
	                     NULL),
	                 0);
	expect_val(st, MF_T_STRING, key256, 255, "v", 1);
	assert_int_equal(mf_store_get(st, key255, 255, false, &(mf_entry_info){0}), -ENOENT);
	/* Longer than a file name: fine for the store (RESP keys), up to
	 * MF_KEY_BYTES_MAX; '/' and NUL too. */
	assert_int_equal(opx(st, MF_OP_SET, MF_T_STRING, key256, 256, NULL, 0, "v", 1, 0, 1, NULL),
	                 0);
	assert_int_equal(mf_store_get(st, key256, 256, false, &(mf_entry_info){0}), 0);
	assert_int_equal(opx(st, MF_OP_SET, MF_T_STRING, keybig, MF_KEY_BYTES_MAX, NULL, 0, "v", 1,
	                     0, 1, NULL),
	                 0);
	assert_int_equal(opx(st, MF_OP_SET, MF_T_STRING, keybig, sizeof keybig, NULL, 0, "v", 1, 0,
	                     1, NULL),
	                 -EINVAL);
	assert_int_equal(mf_store_get(st, keybig, sizeof keybig, false, &(mf_entry_info){0}),
	                 -ENOENT);
	assert_int_equal(opx(st, MF_OP_SET, MF_T_STRING, "a/b\0c", 5, NULL, 0, "w", 1, 0, 1, NULL),
	                 0);
	expect_val(st, MF_T_STRING, "a/b\0c", 5, "w", 1);
	/* Keys that are prefixes of one another, and high bytes. */
	assert_int_equal(o_set(st, MF_T_STRING, "a", "1", 1, 1), 0);
	assert_int_equal(o_set(st, MF_T_STRING, "ab", "2", 1, 1), 0);
	assert_int_equal(o_set(st, MF_T_LIST, "\xff\x01 .", "3", 1, 1), 0);
	EXPECT_STR(st, MF_T_STRING, "a", "1");
	EXPECT_STR(st, MF_T_STRING, "ab", "2");
	EXPECT_STR(st, MF_T_LIST, "\xff\x01 .", "3\n");
	expect_absent(st, "");
	mf_store_free(st);
}

/* ------------------------------------------------------------------ */
/* Large values                                                         */
/* ------------------------------------------------------------------ */

static void test_large_value(void **state)
{
	(void)state;
	const size_t M = 64u << 20;
	mf_store *st = mf_store_new();
	char *big = malloc(M + (1u << 20));
	assert_non_null(big);
	for (size_t i = 0; i < M + (1u << 20); i++)
		big[i] = (char)(i * 2654435761u >> 13);
	assert_int_equal(o_set(st, MF_T_STRING, "big", big, M, 1), 0);
	expect_val(st, MF_T_STRING, K("big"), big, M);
	expect_stats(st, 1, 1, 0, 0, M);
	/* A reader holds the 64 MiB value across everything below. */
	mf_entry_info r;
	assert_int_equal(mf_store_get(st, K("big"), true, &r), 0);
	assert_int_equal(o_append(st, "big", big + M, 1u << 20, 2), 0);
	expect_val(st, MF_T_STRING, K("big"), big, M + (1u << 20));
	expect_stats(st, 1, 1, 0, 0, M + (1u << 20));
	/* Up: prefix kept, growth zero-filled. */
	const size_t up = 80u << 20;
	assert_int_equal(o_trunc(st, MF_T_STRING, "big", up, 3), 0);
	mf_entry_info in;
	assert_int_equal(mf_store_get(st, K("big"), true, &in), 0);
	assert_int_equal(in.val.len, up);
	assert_true(memcmp(mf_slice_ptr(in.val), big, M + (1u << 20)) == 0);
	const char *p = mf_slice_ptr(in.val);
	for (size_t i = M + (1u << 20); i < up; i++)
		if (p[i])
			fail_msg("byte %zu of grown value is %d", i, p[i]);
	mf_slice_unref(&in.val);
	expect_stats(st, 1, 1, 0, 0, up);
	/* Down, then up a little: no stale bytes come back. */
	assert_int_equal(o_trunc(st, MF_T_STRING, "big", 1u << 20, 4), 0);
	expect_val(st, MF_T_STRING, K("big"), big, 1u << 20);
	assert_int_equal(o_trunc(st, MF_T_STRING, "big", (1u << 20) + 4096, 5), 0);
	assert_int_equal(mf_store_get(st, K("big"), true, &in), 0);
	assert_true(memcmp(mf_slice_ptr(in.val), big, 1u << 20) == 0);
	for (size_t i = 1u << 20; i < (1u << 20) + 4096; i++)
		assert_int_equal(mf_slice_ptr(in.val)[i], 0);
	mf_slice_unref(&in.val);
	assert_int_equal(o_trunc(st, MF_T_STRING, "big", 0, 6), 0);
	expect_stats(st, 1, 1, 0, 0, 0);
	/* The reader's slice never moved. */
	assert_int_equal(r.val.len, M);
	assert_true(memcmp(mf_slice_ptr(r.val), big, M) == 0);
	mf_slice_unref(&r.val);
	/* Append to a large value one chunk at a time (in-place growth). */
	for (size_t off = 0; off < (8u << 20); off += 65536)
		assert_int_equal(o_append(st, "big", big + off, 65536, 7), 0);
	expect_val(st, MF_T_STRING, K("big"), big, 8u << 20);
	free(big);
	mf_store_free(st);
}

/* ------------------------------------------------------------------ */
/* Slices: what a reader took never changes                             */
/* ------------------------------------------------------------------ */

static mf_slice take(mf_store *st, const char *k)
{
	mf_entry_info in;
	assert_int_equal(mf_store_get(st, K(k), true, &in), 0);
	assert_int_equal(in.val.len, in.size);
	return in.val;
}

static void test_slices_immutable(void **state)
{
	(void)state;
	size_t live0 = mf_buf_bytes();
	mf_store *st = mf_store_new();

	/* APPEND in place: the reader's bytes stay, the buffer is shared. */
	assert_int_equal(o_append(st, "s", "hello", 5, 1), 0);
	mf_slice r1 = take(st, "s");
	assert_int_equal(o_append(st, "s", " world", 6, 2), 0);
	mf_slice r2 = take(st, "s");
	assert_ptr_equal(r1.buf, r2.buf); /* really in place */
	expect_slice(r1, "hello", 5);
	expect_slice(r2, "hello world", 11);

	/* TRUNCATE down then APPEND: must not write over r2's tail. */
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", 3, 3), 0);
	mf_slice r3 = take(st, "s");
	assert_int_equal(o_append(st, "s", "XYZ", 3, 4), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "helXYZ");
	expect_slice(r1, "hello", 5);
	expect_slice(r2, "hello world", 11);
	expect_slice(r3, "hel", 3);

	/* TRUNCATE up. */
	mf_slice r4 = take(st, "s");
	assert_int_equal(o_trunc(st, MF_T_STRING, "s", 8, 5), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "helXYZ\0\0");
	expect_slice(r4, "helXYZ", 6);

	/* SET, then APPEND after SET. */
	assert_int_equal(o_set(st, MF_T_STRING, "s", "new", 3, 6), 0);
	mf_slice r5 = take(st, "s");
	assert_int_equal(o_append(st, "s", "er", 2, 7), 0);
	expect_slice(r4, "helXYZ", 6);
	expect_slice(r5, "new", 3);

	/* DEL: the reader keeps a valid value (ASan: no use after free). */
	mf_slice r6 = take(st, "s");
	assert_int_equal(o_del(st, MF_T_STRING, "s"), 0);
	expect_slice(r6, "newer", 5);
	assert_int_equal(o_append(st, "s", "other", 5, 8), 0);
	expect_slice(r6, "newer", 5);

	/* Lists: LPOP and in-place RPUSH after it. */
	assert_int_equal(o_rpush(st, "l", "a\nb\nc\n", 9), 0);
	mf_slice l1 = take(st, "l");
	mf_slice out;
	assert_int_equal(o_lpop(st, "l", 1, 10, &out), 0);
	expect_slice(out, "a\n", 2);
	assert_int_equal(o_rpush(st, "l", "d\n", 11), 0);
	mf_slice l2 = take(st, "l");
	assert_int_equal(o_lpop(st, "l", 3, 12, NULL), 0);
	assert_int_equal(o_rpush(st, "l", "e\n", 13), 0);
	assert_int_equal(o_set(st, MF_T_LIST, "l", "f", 1, 14), 0);
	assert_int_equal(o_rpush(st, "l", "g\n", 15), 0);
	EXPECT_STR(st, MF_T_LIST, "l", "f\ng\n");
	expect_slice(l1, "a\nb\nc\n", 6);
	expect_slice(l2, "b\nc\nd\n", 6);
	expect_slice(out, "a\n", 2);

	/* Export holds references too; rename/del afterwards do not matter. */
	mf_item *items;
	uint64_t lsn;
	size_t n = mf_store_export(st, &items, &lsn);
	assert_int_equal(n, 2);
	assert_int_equal(o_del(st, MF_T_LIST, "l"), 0);
	assert_int_equal(o_append(st, "s", "+", 1, 16), 0);
	for (size_t i = 0; i < n; i++) {
		if (items[i].type == MF_T_LIST)
			expect_slice(items[i].val, "f\ng\n", 4);
		else
			expect_slice(items[i].val, "other", 5);
	}
	mf_store_items_free(items, n);

	mf_slice *all[] = {&r1, &r2, &r3, &r4, &r5, &r6, &l1, &l2, &out};
	for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
		mf_slice_unref(all[i]);
	mf_store_free(st);
	assert_int_equal(mf_buf_bytes(), live0);
}

/* buf.c on its own. */
static void test_buf(void **state)
{
	(void)state;
	size_t live0 = mf_buf_bytes();
	mf_slice e = mf_slice_from(NULL, 0, 0);
	assert_null(e.buf);
	assert_string_equal(mf_slice_ptr(e), "");
	mf_slice_append(&e, "", 0);
	assert_null(e.buf);
	mf_slice_append(&e, "ab", 2);
	assert_non_null(e.buf);
	expect_slice(e, "ab", 2);
	/* Two slices of one buffer: only the one at `used` grows in place. */
	mf_slice a = mf_slice_ref(e);
	mf_slice_append(&e, "cd", 2);
	assert_ptr_equal(a.buf, e.buf);
	mf_slice_append(&a, "XY", 2); /* a ends below used: must move */
	assert_ptr_not_equal(a.buf, e.buf);
	expect_slice(e, "abcd", 4);
	expect_slice(a, "abXY", 4);
	/* Filling past capacity moves; the old holder is unaffected. */
	mf_slice old = mf_slice_ref(e);
	char blob[1000];
	memset(blob, 'z', sizeof blob);
	mf_slice_append(&e, blob, sizeof blob);
	assert_int_equal(e.len, 1004);
	expect_slice(old, "abcd", 4);
	assert_true(memcmp(mf_slice_ptr(e) + 4, blob, sizeof blob) == 0);
	mf_slice z = mf_slice_alloc(5, 10);
	expect_slice(z, "\0\0\0\0\0", 5);
	assert_true(z.buf->cap >= 10);
	mf_slice_append(&z, "q", 1);
	expect_slice(z, "\0\0\0\0\0q", 6);
	mf_slice_unref(&z);
	assert_null(z.buf);
	mf_slice_unref(&z); /* the empty slice is fine */
	mf_slice_unref(&e);
	mf_slice_unref(&a);
	mf_slice_unref(&old);
	assert_int_equal(mf_buf_bytes(), live0);
	assert_int_equal(mf_count_lines("a\nb\n\nc", 6), 3);
	assert_int_equal(mf_count_lines("", 0), 0);
	assert_int_equal(mf_count_lines("\0\n", 2), 1);
}

/* ------------------------------------------------------------------ */
/* keys / stats / export / load                                        */
/* ------------------------------------------------------------------ */

static int has_key(mf_slice *keys, size_t n, const char *k)
{
	int c = 0;
	for (size_t i = 0; i < n; i++)
		if (keys[i].len == strlen(k) && memcmp(mf_slice_ptr(keys[i]), k, keys[i].len) == 0)
			c++;
	return c;
}

static void free_keys(mf_slice *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		mf_slice_unref(&keys[i]);
	free(keys);
}

static void test_keys_by_type(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	mf_slice *keys;
	size_t n = mf_store_keys(st, MF_T_NONE, &keys);
	assert_int_equal(n, 0);
	free_keys(keys, n);
	assert_int_equal(o_create(st, MF_T_STRING, "s1", 1), 0);
	assert_int_equal(o_create(st, MF_T_STRING, "s2", 1), 0);
	assert_int_equal(o_create(st, MF_T_JSON, "j1", 1), 0);
	assert_int_equal(o_create(st, MF_T_LIST, "l1", 1), 0);
	assert_int_equal(o_create(st, MF_T_LIST, "l2", 1), 0);
	assert_int_equal(o_create(st, MF_T_LIST, "l3", 1), 0);
	n = mf_store_keys(st, MF_T_NONE, &keys);
	assert_int_equal(n, 6);
	const char *all[] = {"s1", "s2", "j1", "l1", "l2", "l3"};
	for (int i = 0; i < 6; i++)
		assert_int_equal(has_key(keys, n, all[i]), 1);
	free_keys(keys, n);
	n = mf_store_keys(st, MF_T_STRING, &keys);
	assert_int_equal(n, 2);
	assert_int_equal(has_key(keys, n, "s1") + has_key(keys, n, "s2"), 2);
	free_keys(keys, n);
	n = mf_store_keys(st, MF_T_JSON, &keys);
	assert_int_equal(n, 1);
	assert_int_equal(has_key(keys, n, "j1"), 1);
	free_keys(keys, n);
	n = mf_store_keys(st, MF_T_LIST, &keys);
	assert_int_equal(n, 3);
	assert_int_equal(has_key(keys, n, "l1") + has_key(keys, n, "l2") + has_key(keys, n, "l3"),
	                 3);
	free_keys(keys, n);
	assert_int_equal(o_rename(st, MF_T_LIST, "l1", "l2", 2), 0);
	assert_int_equal(o_del(st, MF_T_STRING, "s1"), 0);
	n = mf_store_keys(st, MF_T_LIST, &keys);
	assert_int_equal(n, 2);
	assert_int_equal(has_key(keys, n, "l2") + has_key(keys, n, "l3"), 2);
	free_keys(keys, n);
	n = mf_store_keys(st, MF_T_STRING, &keys);
	assert_int_equal(n, 1);
	assert_int_equal(has_key(keys, n, "s2"), 1);
	free_keys(keys, n);
	expect_stats(st, 4, 1, 1, 2, 0);
	mf_store_free(st);
}

static void test_applied_lsn(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(stats(st).applied_lsn, 0);
	mf_op op = {.type = MF_OP_SET, .ktype = MF_T_STRING, .lsn = 5, .time_ns = 1};
	op.key = sl("a", 1);
	assert_int_equal(run_op(st, &op, NULL), 0);
	assert_int_equal(stats(st).applied_lsn, 5);
	/* A failed op still counts as processed (replay order), never back. */
	op = (mf_op){.type = MF_OP_DEL, .ktype = MF_T_STRING, .lsn = 9, .time_ns = 1};
	op.key = sl("nope", 4);
	assert_int_equal(run_op(st, &op, NULL), -ENOENT);
	assert_int_equal(stats(st).applied_lsn, 9);
	op = (mf_op){.type = MF_OP_SET, .ktype = MF_T_STRING, .lsn = 7, .time_ns = 1};
	op.key = sl("a", 1);
	assert_int_equal(run_op(st, &op, NULL), 0);
	assert_int_equal(stats(st).applied_lsn, 9);
	mf_store_set_applied_lsn(st, 100);
	mf_item *items;
	uint64_t lsn = 0;
	size_t n = mf_store_export(st, &items, &lsn);
	assert_int_equal(lsn, 100);
	assert_int_equal(n, 1);
	mf_store_items_free(items, n);
	mf_store_free(st);
}

static void test_export_load_roundtrip(void **state)
{
	(void)state;
	init_keys();
	size_t live0 = mf_buf_bytes();
	mf_store *a = mf_store_new();
	static const char bin[] = "x\0y\0z";
	assert_int_equal(o_set(a, MF_T_STRING, "bin", bin, sizeof bin, 11), 0);
	assert_int_equal(o_create(a, MF_T_STRING, "empty", 12), 0);
	assert_int_equal(o_set(a, MF_T_JSON, "doc", K("{\"k\":[1,2,3]}"), 13), 0);
	assert_int_equal(o_rpush(a, "q", "1\n2\n3\n", 14), 0);
	assert_int_equal(o_lpop(a, "q", 1, 15, NULL), 0); /* value at an offset */
	assert_int_equal(o_settime(a, MF_T_LIST, "q", 4242, 16), 0);
	assert_int_equal(opx(a, MF_OP_APPEND, MF_T_STRING, key255, 255, NULL, 0, "v", 1, 0, 17,
	                     NULL),
	                 0);
	for (int i = 0; i < 2000; i++) {
		char k[16];
		snprintf(k, sizeof k, "n%d", i);
		assert_int_equal(o_set(a, MF_T_STRING, k, k, strlen(k), 100 + i), 0);
	}
	mf_store_set_applied_lsn(a, 77);
	sstate sa;
	capture(a, &sa);

	mf_item *items;
	uint64_t lsn;
	size_t n = mf_store_export(a, &items, &lsn);
	assert_int_equal(lsn, 77);
	assert_int_equal(n, sa.n);
	mf_store *b = mf_store_new();
	for (size_t i = 0; i < n; i++) {
		mf_item it = items[i];
		it.key = mf_slice_ref(items[i].key);
		it.val = mf_slice_ref(items[i].val);
		assert_int_equal(mf_store_load_item(b, &it), 0);
		assert_null(it.key.buf); /* references taken over */
		assert_null(it.val.buf);
	}
	/* Loading twice: EEXIST, and the item keeps its references. */
	mf_item dup = items[0];
	dup.key = mf_slice_ref(items[0].key);
	dup.val = mf_slice_ref(items[0].val);
	assert_int_equal(mf_store_load_item(b, &dup), -EEXIST);
	mf_slice_unref(&dup.key);
	mf_slice_unref(&dup.val);
	/* Bad items. */
	mf_item bad = {.key = sl("ok", 2), .type = 0};
	assert_int_equal(mf_store_load_item(b, &bad), -EINVAL);
	bad.type = (MF_T_MAX_ + 1);
	assert_int_equal(mf_store_load_item(b, &bad), -EINVAL);
	mf_slice_unref(&bad.key);
	bad = (mf_item){.key = sl(keybig, sizeof keybig), .type = MF_T_STRING};
	assert_int_equal(mf_store_load_item(b, &bad), -EINVAL);
	mf_slice_unref(&bad.key);
	mf_store_items_free(items, n);
	mf_store_set_applied_lsn(b, lsn);

	sstate sb;
	capture(b, &sb);
	assert_int_equal(sa.n, sb.n);
	assert_true(memcmp(&sa.stats, &sb.stats, sizeof sa.stats) == 0);
	for (size_t i = 0; i < sa.n; i++) {
		sent *x = &sa.e[i], *y = &sb.e[i];
		assert_int_equal(x->klen, y->klen);
		assert_true(memcmp(x->key, y->key, x->klen) == 0);
		assert_int_equal(x->in.type, y->in.type);
		assert_int_equal(x->in.size, y->in.size);
		assert_int_equal(x->in.count, y->in.count);
		assert_int_equal(x->in.mtime_ns, y->in.mtime_ns);
		assert_int_equal(x->in.ctime_ns, y->in.ctime_ns);
		assert_true(memcmp(x->val, y->val, x->in.size) == 0);
	}
	EXPECT_STR(b, MF_T_LIST, "q", "2\n3\n");
	assert_int_equal(info(b, "q").count, 2);
	assert_int_equal(info(b, "q").mtime_ns, 4242);
	/* The loaded store works: list ops and in-place appends. */
	mf_slice out;
	assert_int_equal(o_lpop(b, "q", 1, 20, &out), 0);
	expect_slice(out, "2\n", 2);
	mf_slice_unref(&out);
	assert_int_equal(o_append(b, "bin", "!", 1, 21), 0);
	EXPECT_STR(b, MF_T_STRING, "bin", "x\0y\0z\0!");
	EXPECT_STR(a, MF_T_STRING, "bin", "x\0y\0z\0"); /* shared buffer untouched */
	state_free(&sa);
	state_free(&sb);
	mf_store_free(a);
	mf_store_free(b);
	assert_int_equal(mf_buf_bytes(), live0);
}

/* A list loaded from a snapshot whose last line lacks '\n' (a value the
 * store never produces itself) must not break LPOP/RPUSH. */
static void test_load_unterminated_list(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	mf_item it = {.key = sl("l", 1), .type = MF_T_LIST, .val = sl("a\nb", 3),
	              .mtime_ns = 1, .ctime_ns = 1};
	int r = mf_store_load_item(st, &it);
	mf_slice_unref(&it.key);
	mf_slice_unref(&it.val);
	if (r == 0) {
		mf_entry_info in = info(st, "l");
		/* Whatever is stored, count and lines must agree. */
		mf_slice v = take(st, "l");
		assert_int_equal(in.count, mf_count_lines(mf_slice_ptr(v), v.len));
		mf_slice_unref(&v);
		mf_slice out;
		assert_int_equal(o_lpop(st, "l", 5, 2, &out), 0);
		assert_true(out.len <= 4);
		mf_slice_unref(&out);
		mf_store_stats s = stats(st);
		in = info(st, "l");
		assert_int_equal(in.size, s.value_bytes);
		assert_int_equal(in.count, 0);
		assert_int_equal(in.size, 0);
		assert_int_equal(o_rpush(st, "l", "c\n", 3), 0);
		EXPECT_STR(st, MF_T_LIST, "l", "c\n");
	} else {
		assert_int_equal(r, -EINVAL);
		expect_absent(st, "l");
	}
	mf_store_free(st);
}

/* ------------------------------------------------------------------ */
/* Random ops against a reference model                                 */
/* ------------------------------------------------------------------ */

#define NKEYS 48

typedef struct mkey {
	char name[256];
	size_t nlen;
	bool exists;
	int type;
	char *val;
	size_t len;
	uint64_t count;
	int64_t mtime, ctime;
	uint64_t version; /* last version seen from the store */
} mkey;

static mkey model[NKEYS];

static void model_init(void)
{
	for (int i = 0; i < NKEYS; i++) {
		mkey *m = &model[i];
		memset(m, 0, sizeof *m);
		if (i == 0) {
			memset(m->name, 'L', 255);
			m->nlen = 255;
		} else if (i == 1) {
			memcpy(m->name, "\xe2\x82\xac x", 5);
			m->nlen = 5;
		} else {
			m->nlen = (size_t)snprintf(m->name, sizeof m->name, "key%d", i);
		}
	}
}

static int model_find(const void *k, size_t n)
{
	for (int i = 0; i < NKEYS; i++)
		if (model[i].nlen == n && memcmp(model[i].name, k, n) == 0)
			return i;
	return -1;
}

static void model_setval(mkey *m, const void *p, size_t n)
{
	free(m->val);
	m->val = malloc(n ? n : 1);
	if (n)
		memcpy(m->val, p, n);
	m->len = n;
}

static uint64_t lines(const char *p, size_t n)
{
	uint64_t c = 0;
	for (size_t i = 0; i < n; i++)
		c += p[i] == '\n';
	return c;
}

static bool model_key_ok(const char *k, size_t n)
{
	(void)k; /* any bytes (RESP keys); only the length matters */
	return n > 0 && n <= MF_KEY_BYTES_MAX;
}

static void model_compare_key(mf_store *st, int i)
{
	mkey *m = &model[i];
	mf_entry_info in;
	int r = mf_store_get(st, m->name, m->nlen, true, &in);
	if (!m->exists) {
		assert_int_equal(r, -ENOENT);
		return;
	}
	assert_int_equal(r, 0);
	assert_int_equal(in.type, m->type);
	assert_int_equal(in.size, m->len);
	assert_int_equal(in.val.len, m->len);
	if (m->len && memcmp(mf_slice_ptr(in.val), m->val, m->len) != 0)
		fail_msg("value of key %d differs", i);
	assert_int_equal(in.count, m->type == MF_T_LIST ? m->count : 0);
	assert_int_equal(in.mtime_ns, m->mtime);
	assert_int_equal(in.ctime_ns, m->ctime);
	m->version = in.version;
	mf_slice_unref(&in.val);
}

static void model_compare_stats(mf_store *st)
{
	uint64_t n[4] = {0}, bytes = 0;
	for (int i = 0; i < NKEYS; i++)
		if (model[i].exists) {
			n[0]++;
			n[model[i].type]++;
			bytes += model[i].len;
		}
	mf_store_stats s = stats(st);
	for (int t = 0; t < 4; t++)
		assert_int_equal(s.keys[t], n[t]);
	assert_int_equal(s.value_bytes, bytes);
}

static void model_compare_all(mf_store *st)
{
	for (int i = 0; i < NKEYS; i++)
		model_compare_key(st, i);
	model_compare_stats(st);
	for (int t = 0; t < 4; t++) {
		mf_slice *keys;
		size_t n = mf_store_keys(st, (mf_type)t, &keys);
		size_t want = 0;
		for (int i = 0; i < NKEYS; i++)
			want += model[i].exists && (t == 0 || model[i].type == t);
		assert_int_equal(n, want);
		for (size_t j = 0; j < n; j++) {
			int i = model_find(mf_slice_ptr(keys[j]), keys[j].len);
			assert_true(i >= 0);
			assert_true(model[i].exists);
			if (t)
				assert_int_equal(model[i].type, t);
			mf_slice_unref(&keys[j]);
		}
		free(keys);
	}
}

static const char *const json_docs[] = {
	"{\"a\":1}", "[1,2,3]", "{\"a\":{\"b\":[true,null]}}", "\"str\"", "{}", "not json", "",
};
static const char *const json_paths[] = {
	"$", "$.a", "$.b", "$.a.b", "$.a.b[1]", "$[1]", "$[7]", "$.", "x", "$['q r']",
};
static const char *const json_vals[] = {
	"1", "\"v\"", "{\"b\":[1,2]}", "[]", " null ", "{", "", "tru",
};

/* Expected result of one op, and the model updated on success. */
static int model_apply(const mf_op *op, char **popped, size_t *popped_len)
{
	const char *k = mf_slice_ptr(op->key);
	int kt = op->ktype;
	if (kt < MF_T_STRING || kt > MF_T_LIST || !model_key_ok(k, op->key.len))
		return -EINVAL;
	int i = model_find(k, op->key.len);
	assert_true(i >= 0); /* the generator only uses model keys when valid */
	mkey *m = &model[i];
	bool same = m->exists && m->type == kt;
	bool other = m->exists && m->type != kt;
	const char *v = mf_slice_ptr(op->val);
	size_t vn = op->val.len;
	int64_t t = op->time_ns;

	switch (op->type) {
	case MF_OP_CREATE:
		if (other)
			return -EEXIST;
		if (!m->exists) {
			m->exists = true;
			m->type = kt;
			model_setval(m, NULL, 0);
			m->count = 0;
			m->mtime = m->ctime = t;
		}
		return 0;
	case MF_OP_SET:
		if (other)
			return -EEXIST;
		if (kt == MF_T_JSON && mf_json_validate(v, vn, NULL, NULL) != 0)
			return -EINVAL; /* the store's JSON rule */
		m->exists = true;
		m->type = kt;
		if (kt == MF_T_LIST && vn && v[vn - 1] != '\n') {
			char *tmp = malloc(vn + 1);
			memcpy(tmp, v, vn);
			tmp[vn] = '\n';
			model_setval(m, tmp, vn + 1);
			free(tmp);
		} else {
			model_setval(m, v, vn);
		}
		m->count = kt == MF_T_LIST ? lines(m->val, m->len) : 0;
		m->mtime = m->ctime = t;
		return 0;
	case MF_OP_APPEND:
	case MF_OP_RPUSH:
		if (op->type == MF_OP_APPEND && kt != MF_T_STRING)
			return -EINVAL;
		if (op->type == MF_OP_RPUSH && (kt != MF_T_LIST || vn == 0))
			return -EINVAL;
		if (other)
			return -EEXIST;
		if (!m->exists) {
			m->exists = true;
			m->type = kt;
			model_setval(m, NULL, 0);
			m->count = 0;
		}
		m->val = realloc(m->val, m->len + vn + 1);
		if (vn)
			memcpy(m->val + m->len, v, vn);
		m->len += vn;
		if (kt == MF_T_LIST)
			m->count += lines(v, vn);
		if (op->type == MF_OP_RPUSH && v[vn - 1] != '\n') {
			m->val = realloc(m->val, m->len + 2); /* whole lines only */
			m->val[m->len++] = '\n';
			m->count++;
		}
		m->mtime = m->ctime = t;
		return 0;
	case MF_OP_TRUNCATE:
		if (!same)
			return -ENOENT;
		if (kt == MF_T_STRING) {
			if (op->arg > ((uint64_t)1 << 40))
				return -EFBIG;
		} else if (kt == MF_T_JSON ? op->arg != m->len : op->arg != 0) {
			return -EINVAL; /* lists to 0; documents only to their own size */
		}
		m->val = realloc(m->val, op->arg + 1);
		if (op->arg > m->len)
			memset(m->val + m->len, 0, op->arg - m->len);
		m->len = op->arg;
		m->count = 0;
		m->mtime = m->ctime = t;
		return 0;
	case MF_OP_DEL:
		if (!same)
			return -ENOENT;
		m->exists = false;
		free(m->val);
		m->val = NULL;
		m->len = 0;
		return 0;
	case MF_OP_SETTIME:
		if (!same)
			return -ENOENT;
		m->mtime = (int64_t)op->arg;
		m->ctime = t;
		return 0;
	case MF_OP_LPOP: {
		if (kt != MF_T_LIST)
			return -EINVAL;
		if (!same)
			return -ENOENT;
		if (m->len == 0 || op->arg == 0)
			return -ENODATA;
		size_t n = 0;
		uint64_t c = 0;
		while (c < op->arg && n < m->len) {
			while (m->val[n] != '\n')
				n++;
			n++;
			c++;
		}
		*popped = malloc(n ? n : 1);
		memcpy(*popped, m->val, n);
		*popped_len = n;
		memmove(m->val, m->val + n, m->len - n);
		m->len -= n;
		m->count -= c;
		m->mtime = m->ctime = t;
		return 0;
	}
	case MF_OP_RENAME: {
		if (!same)
			return -ENOENT;
		const char *k2 = mf_slice_ptr(op->key2);
		if (!model_key_ok(k2, op->key2.len))
			return -EINVAL;
		int j = model_find(k2, op->key2.len);
		assert_true(j >= 0);
		mkey *d = &model[j];
		if (d->exists && d->type != kt)
			return -EEXIST;
		if (j == i)
			return 0;
		free(d->val);
		d->exists = true;
		d->type = m->type;
		d->val = m->val;
		d->len = m->len;
		d->count = m->count;
		d->mtime = m->mtime;
		d->ctime = t;
		m->exists = false;
		m->val = NULL;
		m->len = 0;
		return 0;
	}
	case MF_OP_JSON_SETPATH: {
		if (kt != MF_T_JSON)
			return -EINVAL;
		if (!same)
			return -ENOENT;
		char *doc;
		size_t dn;
		int r = mf_json_set_path(m->val, m->len, mf_slice_ptr(op->key2), op->key2.len, v, vn,
		                         &doc, &dn);
		if (r)
			return r;
		model_setval(m, doc, dn);
		free(doc);
		m->mtime = m->ctime = t;
		return 0;
	}
	default:
		return -EINVAL;
	}
}

static void gen_bytes(char *p, size_t n, bool text)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t x = rnd();
		p[i] = text ? (char)('a' + x % 26) : (char)x;
		if (text && x % 5 == 0)
			p[i] = '\n';
	}
}

static void gen_key(mf_slice *key, int *idx)
{
	*idx = -1;
	uint64_t x = rndn(100);
	if (x < 3) {
		static const struct {
			const char *k;
			size_t n;
		} bad[] = {{"", 0}};
		x = rndn(2);
		if (x == 1)
			*key = sl(keybig, sizeof keybig);
		else
			*key = sl(bad[x].k, bad[x].n);
		return;
	}
	*idx = (int)rndn(NKEYS);
	*key = sl(model[*idx].name, model[*idx].nlen);
}

static void gen_op(mf_op *op, int64_t t)
{
	memset(op, 0, sizeof *op);
	/* The model covers the mount's ops (1..JSON_SETPATH); the RESP ops
	 * have their own tests (test_resp_ops). */
	op->type = (uint8_t)(1 + rndn(MF_OP_JSON_SETPATH));
	if (rndn(200) == 0)
		op->type = rndn(2) ? 0 : MF_OP_MAX_ + 1;
	op->ktype = (uint8_t)(1 + rndn(3));
	/* Bias the ktype towards what the op needs, to get deep. */
	if (rndn(3) && (op->type == MF_OP_RPUSH || op->type == MF_OP_LPOP))
		op->ktype = MF_T_LIST;
	if (rndn(3) && op->type == MF_OP_APPEND)
		op->ktype = MF_T_STRING;
	if (rndn(3) && op->type == MF_OP_JSON_SETPATH)
		op->ktype = MF_T_JSON;
	if (rndn(200) == 0)
		op->ktype = rndn(2) ? 0 : (MF_T_MAX_ + 1);
	int idx;
	gen_key(&op->key, &idx);
	/* Prefer existing-typed keys for ops that need them. */
	if (idx >= 0 && model[idx].exists && rndn(2) &&
	    (op->type == MF_OP_TRUNCATE || op->type == MF_OP_DEL || op->type == MF_OP_SETTIME ||
	     op->type == MF_OP_RENAME || op->type == MF_OP_LPOP || op->type == MF_OP_JSON_SETPATH ||
	     op->type == MF_OP_SET))
		op->ktype = (uint8_t)model[idx].type;
	op->time_ns = t;
	char buf[8192];
	size_t n;
	switch (op->type) {
	case MF_OP_SET:
		if (op->ktype == MF_T_JSON && rndn(2)) {
			const char *d = json_docs[rndn(sizeof json_docs / sizeof *json_docs)];
			op->val = sl(d, strlen(d));
			break;
		}
		/* fallthrough */
	case MF_OP_APPEND:
		n = rndn(100) == 0 ? rndn(sizeof buf) : rndn(24);
		gen_bytes(buf, n, op->ktype == MF_T_LIST);
		op->val = sl(buf, n);
		break;
	case MF_OP_RPUSH:
		n = rndn(20);
		gen_bytes(buf, n, true);
		if (rndn(10))
			buf[n++] = '\n';
		op->val = sl(buf, n);
		break;
	case MF_OP_TRUNCATE:
		if (rndn(50) == 0) {
			op->arg = ((uint64_t)1 << 40) + 1 + rndn(3);
		} else if (op->ktype != MF_T_STRING) {
			op->arg = rndn(4) ? 0 : 1 + rndn(10);
		} else {
			size_t cur = idx >= 0 ? model[idx].len : 0;
			op->arg = rndn(2 * cur + 20);
		}
		break;
	case MF_OP_SETTIME:
		op->arg = rnd();
		break;
	case MF_OP_LPOP:
		op->arg = rndn(5);
		break;
	case MF_OP_RENAME: {
		int j;
		if (idx >= 0 && rndn(8) == 0) {
			op->key2 = sl(model[idx].name, model[idx].nlen);
		} else {
			gen_key(&op->key2, &j);
		}
		break;
	}
	case MF_OP_JSON_SETPATH: {
		const char *p = json_paths[rndn(sizeof json_paths / sizeof *json_paths)];
		const char *v = json_vals[rndn(sizeof json_vals / sizeof *json_vals)];
		op->key2 = sl(p, strlen(p));
		op->val = sl(v, strlen(v));
		break;
	}
	default:
		break;
	}
}


/* The ops the RESP face added (issue 15): LPUSH, RPOP, SETRANGE, FLUSH,
 * JSON_DELPATH — through check + apply like every other op. */
static void test_resp_ops(void **state)
{
	(void)state;
	size_t live0 = mf_buf_bytes();
	mf_store *st = mf_store_new();
	mf_slice out;

	/* LPUSH prepends a block; repeated prepends go in place (headroom)
	 * and never change what an older reference sees. */
	assert_int_equal(opx(st, MF_OP_LPUSH, MF_T_LIST, K("l"), NULL, 0, K("b\na\n"), 0, 1, NULL), 0);
	EXPECT_STR(st, MF_T_LIST, "l", "b\na\n");
	mf_entry_info old;
	assert_int_equal(mf_store_get(st, K("l"), true, &old), 0);
	for (int i = 0; i < 200; i++)
		assert_int_equal(opx(st, MF_OP_LPUSH, MF_T_LIST, K("l"), NULL, 0, K("x\n"), 0, 2, NULL), 0);
	assert_int_equal(old.val.len, 4);
	assert_true(memcmp(mf_slice_ptr(old.val), "b\na\n", 4) == 0);
	mf_slice_unref(&old.val);
	assert_int_equal(info(st, "l").count, 202);
	/* Unterminated or empty blocks and other types are refused. */
	assert_int_equal(opx(st, MF_OP_LPUSH, MF_T_LIST, K("l"), NULL, 0, K("z"), 0, 3, NULL), -EINVAL);
	assert_int_equal(opx(st, MF_OP_LPUSH, MF_T_STRING, K("l"), NULL, 0, K("z\n"), 0, 3, NULL), -EINVAL);
	assert_int_equal(o_set(st, MF_T_STRING, "s", "abc", 3, 3), 0);
	assert_int_equal(opx(st, MF_OP_LPUSH, MF_T_LIST, K("s"), NULL, 0, K("z\n"), 0, 3, NULL), -EEXIST);

	/* RPOP: up to arg tail elements, out in list order. */
	assert_int_equal(opx(st, MF_OP_RPOP, MF_T_LIST, K("l"), NULL, 0, NULL, 0, 2, 4, &out), 0);
	assert_int_equal(out.len, 4);
	assert_true(memcmp(mf_slice_ptr(out), "b\na\n", 4) == 0);
	mf_slice_unref(&out);
	assert_int_equal(info(st, "l").count, 200);
	assert_int_equal(opx(st, MF_OP_RPOP, MF_T_LIST, K("l"), NULL, 0, NULL, 0, 1000, 5, &out), 0);
	assert_int_equal(out.len, 400);
	mf_slice_unref(&out);
	assert_int_equal(info(st, "l").count, 0);
	assert_int_equal(info(st, "l").size, 0);
	assert_int_equal(opx(st, MF_OP_RPOP, MF_T_LIST, K("l"), NULL, 0, NULL, 0, 1, 6, NULL), -ENODATA);
	assert_int_equal(opx(st, MF_OP_RPOP, MF_T_LIST, K("nol"), NULL, 0, NULL, 0, 1, 6, NULL), -ENOENT);
	/* An empty element is an empty line. */
	assert_int_equal(opx(st, MF_OP_RPUSH, MF_T_LIST, K("l"), NULL, 0, K("\nq\n"), 0, 7, NULL), 0);
	assert_int_equal(opx(st, MF_OP_RPOP, MF_T_LIST, K("l"), NULL, 0, NULL, 0, 1, 8, &out), 0);
	assert_int_equal(out.len, 2);
	mf_slice_unref(&out);
	assert_int_equal(opx(st, MF_OP_RPOP, MF_T_LIST, K("l"), NULL, 0, NULL, 0, 1, 8, &out), 0);
	assert_int_equal(out.len, 1);
	mf_slice_unref(&out);

	/* DEL arg 1: only an empty value. */
	assert_int_equal(opx(st, MF_OP_RPUSH, MF_T_LIST, K("e"), NULL, 0, K("z\n"), 0, 8, NULL), 0);
	assert_int_equal(opx(st, MF_OP_DEL, MF_T_LIST, K("e"), NULL, 0, NULL, 0, 1, 8, NULL), -ENOTEMPTY);
	assert_int_equal(opx(st, MF_OP_LPOP, MF_T_LIST, K("e"), NULL, 0, NULL, 0, 1, 8, NULL), 0);
	assert_int_equal(opx(st, MF_OP_DEL, MF_T_LIST, K("e"), NULL, 0, NULL, 0, 2, 8, NULL), -ENOTEMPTY);
	assert_int_equal(opx(st, MF_OP_DEL, MF_T_LIST, K("e"), NULL, 0, NULL, 0, 1, 8, NULL), 0);
	expect_absent(st, "e");

	/* SETRANGE: overwrite, extend, zero-fill a gap, create. */
	assert_int_equal(opx(st, MF_OP_SETRANGE, MF_T_STRING, K("s"), NULL, 0, K("X"), 1, 9, NULL), 0);
	EXPECT_STR(st, MF_T_STRING, "s", "aXc");
	assert_int_equal(opx(st, MF_OP_SETRANGE, MF_T_STRING, K("s"), NULL, 0, K("YZ"), 5, 9, NULL), 0);
	expect_val(st, MF_T_STRING, K("s"), "aXc\0\0YZ", 7);
	assert_int_equal(opx(st, MF_OP_SETRANGE, MF_T_STRING, K("n"), NULL, 0, K("v"), 2, 9, NULL), 0);
	expect_val(st, MF_T_STRING, K("n"), "\0\0v", 3);
	assert_int_equal(opx(st, MF_OP_SETRANGE, MF_T_STRING, K("n"), NULL, 0, K("v"), MF_VALUE_MAX, 9,
	                     NULL), -EFBIG);
	assert_int_equal(opx(st, MF_OP_SETRANGE, MF_T_LIST, K("l"), NULL, 0, K("v"), 0, 9, NULL), -EINVAL);

	/* JSON_DELPATH: a member, an element, the whole document. */
	const char *doc = "{\"a\": 1, \"b\": [1, 2, 3], \"c\": {}}";
	assert_int_equal(opx(st, MF_OP_SET, MF_T_JSON, K("j"), NULL, 0, K(doc), 0, 10, NULL), 0);
	assert_int_equal(opx(st, MF_OP_JSON_DELPATH, MF_T_JSON, K("j"), K("$.a"), NULL, 0, 0, 11, NULL), 0);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"b\": [1, 2, 3], \"c\": {}}");
	assert_int_equal(opx(st, MF_OP_JSON_DELPATH, MF_T_JSON, K("j"), K("$.b[2]"), NULL, 0, 0, 11, NULL), 0);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"b\": [1, 2], \"c\": {}}");
	assert_int_equal(opx(st, MF_OP_JSON_DELPATH, MF_T_JSON, K("j"), K("$.c"), NULL, 0, 0, 11, NULL), 0);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"b\": [1, 2]}");
	assert_int_equal(opx(st, MF_OP_JSON_DELPATH, MF_T_JSON, K("j"), K("$.zz"), NULL, 0, 0, 11, NULL),
	                 -ENOENT);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"b\": [1, 2]}");
	assert_int_equal(opx(st, MF_OP_JSON_DELPATH, MF_T_JSON, K("j"), K("$.b[0]"), NULL, 0, 0, 11, NULL), 0);
	assert_int_equal(opx(st, MF_OP_JSON_DELPATH, MF_T_JSON, K("j"), K("$.b[0]"), NULL, 0, 0, 11, NULL), 0);
	EXPECT_STR(st, MF_T_JSON, "j", "{\"b\": []}");
	assert_int_equal(opx(st, MF_OP_JSON_DELPATH, MF_T_JSON, K("j"), K("$"), NULL, 0, 0, 12, NULL), 0);
	expect_absent(st, "j");

	/* FLUSH: every key gone; a reader's reference stays valid. */
	mf_entry_info keep;
	assert_int_equal(mf_store_get(st, K("s"), true, &keep), 0);
	mf_op f = {.type = MF_OP_FLUSH, .time_ns = 13};
	assert_int_equal(run_op(st, &f, NULL), 0);
	assert_int_equal(stats(st).keys[0], 0);
	assert_int_equal(stats(st).value_bytes, 0);
	expect_absent(st, "s");
	expect_absent(st, "l");
	assert_true(memcmp(mf_slice_ptr(keep.val), "aXc\0\0YZ", 7) == 0);
	mf_slice_unref(&keep.val);
	mf_op fk = {.type = MF_OP_FLUSH, .key = sl("k", 1)};
	assert_int_equal(run_op(st, &fk, NULL), -EINVAL);
	assert_int_equal(o_set(st, MF_T_STRING, "after", "1", 1, 14), 0);
	EXPECT_STR(st, MF_T_STRING, "after", "1");

	mf_store_free(st);
	assert_int_equal(mf_buf_bytes(), live0);
}

static void test_model_random(void **state)
{
	(void)state;
	init_keys();
	model_init();
	size_t live0 = mf_buf_bytes();
	rng_state = 0x9E3779B97F4A7C15ULL;
	mf_store *st = mf_store_new();
	int nok = 0, nerr[4] = {0};
	int per_type_ok[MF_OP_MAX_ + 1] = {0};
	/* Readers' references taken along the way must stay intact. */
	struct {
		mf_slice s;
		char *copy;
	} held[16];
	memset(held, 0, sizeof held);

	for (int step = 0; step < 20000; step++) {
		mf_op op;
		gen_op(&op, 1000 + step);
		int i1 = model_find(mf_slice_ptr(op.key), op.key.len);
		int i2 = op.key2.len ? model_find(mf_slice_ptr(op.key2), op.key2.len) : -1;
		if (op.type == MF_OP_JSON_SETPATH)
			i2 = -1;
		uint64_t v1 = 0;
		if (i1 >= 0 && model[i1].exists) {
			model_compare_key(st, i1);
			v1 = model[i1].version;
		}
		char *popped = NULL;
		size_t popped_len = 0;
		int want = model_apply(&op, &popped, &popped_len);
		/* For ops valid in shape, check must agree with apply;
		 * run_op asserts that. */
		mf_slice out;
		int type = op.type;
		int got = run_op(st, &op, &out);
		if (got != want)
			fail_msg("step %d: %s ktype %d: got %d want %d", step, mf_optype_name(type),
			         op.ktype, got, want);
		if (type == MF_OP_LPOP && got == 0) {
			expect_slice(out, popped, popped_len);
		} else {
			assert_int_equal(out.len, 0);
		}
		mf_slice_unref(&out);
		free(popped);
		if (got == 0) {
			nok++;
			per_type_ok[type]++;
		} else {
			nerr[got == -EINVAL ? 0 : got == -ENOENT ? 1 : got == -EEXIST ? 2 : 3]++;
		}
		if (i1 >= 0)
			model_compare_key(st, i1);
		if (i2 >= 0)
			model_compare_key(st, i2);
		/* Value-changing ops change the version; errors do not. */
		if (i1 >= 0 && model[i1].exists && v1 &&
		    (type == MF_OP_SET || type == MF_OP_APPEND || type == MF_OP_TRUNCATE ||
		     type == MF_OP_RPUSH || type == MF_OP_LPOP || type == MF_OP_JSON_SETPATH)) {
			if (got == 0)
				assert_int_not_equal(model[i1].version, v1);
			else
				assert_int_equal(model[i1].version, v1);
		}
		model_compare_stats(st);
		/* Occasionally take a reader's reference and remember its bytes. */
		if (rndn(10) == 0) {
			int h = (int)rndn(16), k = (int)rndn(NKEYS);
			if (held[h].copy) {
				expect_slice(held[h].s, held[h].copy, held[h].s.len);
				mf_slice_unref(&held[h].s);
				free(held[h].copy);
				held[h].copy = NULL;
			}
			mf_entry_info in;
			if (mf_store_get(st, model[k].name, model[k].nlen, true, &in) == 0) {
				held[h].s = in.val;
				held[h].copy = malloc(in.val.len + 1);
				memcpy(held[h].copy, mf_slice_ptr(in.val), in.val.len);
			}
		}
		if (step % 1000 == 999)
			model_compare_all(st);
	}
	model_compare_all(st);
	for (int h = 0; h < 16; h++)
		if (held[h].copy) {
			expect_slice(held[h].s, held[h].copy, held[h].s.len);
			mf_slice_unref(&held[h].s);
			free(held[h].copy);
		}
	/* The generator must actually reach every op and every error. */
	for (int t = 1; t <= MF_OP_JSON_SETPATH; t++)
		if (per_type_ok[t] < 20)
			fail_msg("only %d successful %s", per_type_ok[t], mf_optype_name(t));
	assert_true(nok > 5000);
	assert_true(nerr[0] > 100 && nerr[1] > 100 && nerr[2] > 100 && nerr[3] > 0);

	/* Export and reload: the new store matches the model too. */
	mf_item *items;
	uint64_t lsn;
	size_t n = mf_store_export(st, &items, &lsn);
	mf_store *b = mf_store_new();
	for (size_t i = 0; i < n; i++)
		assert_int_equal(mf_store_load_item(b, &items[i]), 0);
	mf_store_items_free(items, n);
	model_compare_all(b);
	mf_store_free(b);

	mf_store_free(st);
	for (int i = 0; i < NKEYS; i++)
		free(model[i].val);
	assert_int_equal(mf_buf_bytes(), live0);
}

/* ------------------------------------------------------------------ */
/* Concurrent readers                                                   */
/* ------------------------------------------------------------------ */

#define CKEYS 4

static atomic_bool c_done;
static atomic_long c_bad, c_reads, c_nonempty;
static mf_store *c_st;

static inline unsigned char pat(int k, size_t i)
{
	return (unsigned char)((i * 131u + (size_t)k * 17u) ^ (i >> 8));
}

static void *reader_main(void *arg)
{
	uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ULL + 1;
	uint64_t lastver[CKEYS + 1] = {0};
	long reads = 0;
	while (!atomic_load(&c_done) || reads < 100) {
		seed ^= seed << 13;
		seed ^= seed >> 7;
		seed ^= seed << 17;
		int k = (int)(seed % (CKEYS + 1));
		char name[8];
		snprintf(name, sizeof name, k == CKEYS ? "list" : "c%d", k);
		mf_entry_info in;
		if (mf_store_get(c_st, name, strlen(name), true, &in) != 0) {
			reads++;
			continue;
		}
		reads++;
		const unsigned char *p = (const unsigned char *)mf_slice_ptr(in.val);
		bool ok = in.val.len == in.size && in.version >= lastver[k];
		lastver[k] = in.version;
		if (k < CKEYS) {
			for (size_t i = 0; ok && i < in.val.len; i++)
				ok = p[i] == pat(k, i);
		} else {
			/* Lines of 9 bytes: consecutive 8-digit numbers. */
			ok = ok && in.val.len % 9 == 0 && in.count == in.val.len / 9;
			unsigned long prev = 0;
			for (size_t i = 0; ok && i < in.val.len; i += 9) {
				char num[9];
				memcpy(num, p + i, 8);
				num[8] = '\0';
				unsigned long x = strtoul(num, NULL, 10);
				ok = p[i + 8] == '\n' && (i == 0 || x == prev + 1);
				prev = x;
			}
		}
		if (in.val.len)
			atomic_fetch_add(&c_nonempty, 1);
		if (!ok)
			atomic_fetch_add(&c_bad, 1);
		mf_slice_unref(&in.val);
	}
	atomic_fetch_add(&c_reads, reads);
	return NULL;
}

static void test_concurrent_readers(void **state)
{
	(void)state;
	size_t live0 = mf_buf_bytes();
	c_st = mf_store_new();
	atomic_store(&c_done, false);
	atomic_store(&c_bad, 0);
	atomic_store(&c_reads, 0);
	atomic_store(&c_nonempty, 0);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&th[i], NULL, reader_main, (void *)(uintptr_t)(i + 1)),
		                 0);

	rng_state = 12345;
	size_t len[CKEYS] = {0};
	unsigned long next_push = 0, next_pop = 0;
	unsigned char buf[512];
	for (int step = 0; step < 50000; step++) {
		uint64_t x = rndn(100);
		int k = (int)rndn(CKEYS);
		char name[8];
		snprintf(name, sizeof name, "c%d", k);
		int r;
		if (x < 45) { /* APPEND continues the pattern */
			size_t n = 1 + rndn(64);
			for (size_t i = 0; i < n; i++)
				buf[i] = pat(k, len[k] + i);
			r = o_append(c_st, name, buf, n, step);
			len[k] += n;
		} else if (x < 50) { /* SET restarts it */
			size_t n = rndn(300);
			for (size_t i = 0; i < n; i++)
				buf[i] = pat(k, i);
			r = o_set(c_st, MF_T_STRING, name, buf, n, step);
			len[k] = n;
		} else if (x < 53) { /* TRUNCATE down keeps a prefix */
			if (!len[k])
				continue;
			len[k] = rndn(len[k]);
			r = o_trunc(c_st, MF_T_STRING, name, len[k], step);
		} else if (x < 85) {
			char line[16];
			snprintf(line, sizeof line, "%08lu\n", next_push++);
			r = o_rpush(c_st, "list", line, step);
		} else {
			uint64_t c = rndn(3);
			mf_slice out;
			r = o_lpop(c_st, "list", c, step, &out);
			if (r == -ENOENT || r == -ENODATA)
				r = 0;
			for (size_t i = 0; i < out.len; i += 9) {
				char want[16];
				snprintf(want, sizeof want, "%08lu\n", next_pop++);
				assert_true(memcmp(mf_slice_ptr(out) + i, want, 9) == 0);
			}
			mf_slice_unref(&out);
		}
		assert_int_equal(r, 0);
		/* Keep values bounded so readers' checks stay cheap. */
		if (len[k] > 4096) {
			assert_int_equal(o_trunc(c_st, MF_T_STRING, name, 100, step), 0);
			len[k] = 100;
		}
	}
	atomic_store(&c_done, true);
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	assert_int_equal(atomic_load(&c_bad), 0);
	assert_true(atomic_load(&c_reads) >= 300);
	assert_true(atomic_load(&c_nonempty) > 0);
	for (int k = 0; k < CKEYS; k++) {
		char name[8];
		snprintf(name, sizeof name, "c%d", k);
		mf_entry_info in;
		assert_int_equal(mf_store_get(c_st, K(name), true, &in), 0);
		assert_int_equal(in.val.len, len[k]);
		for (size_t i = 0; i < len[k]; i++)
			assert_int_equal((unsigned char)mf_slice_ptr(in.val)[i], pat(k, i));
		mf_slice_unref(&in.val);
	}
	assert_int_equal(info(c_st, "list").count, next_push - next_pop);
	mf_store_free(c_st);
	c_st = NULL;
	assert_int_equal(mf_buf_bytes(), live0);
}

/* ------------------------------------------------------------------ */
/* The tree: folders, symlinks, attributes (issue 14)                   */
/* ------------------------------------------------------------------ */

static int o_mkdir(mf_store *st, const char *k, int64_t t)
{
	return opx(st, MF_OP_MKDIR, MF_T_FOLDER, K(k), NULL, 0, NULL, 0, 0, t, NULL);
}
static int o_rmdir(mf_store *st, const char *k, int64_t t)
{
	return opx(st, MF_OP_RMDIR, MF_T_FOLDER, K(k), NULL, 0, NULL, 0, 0, t, NULL);
}
static int o_renamedir(mf_store *st, const char *k, const char *k2, int64_t t)
{
	return opx(st, MF_OP_RENAMEDIR, MF_T_FOLDER, K(k), K(k2), NULL, 0, 0, t, NULL);
}
static int o_symlink(mf_store *st, const char *k, const char *target, uint32_t uid, int64_t t)
{
	mf_attr a = {0777, uid, uid, 0, 0};
	uint8_t v[MF_ATTR_A_LEN + 256];
	mf_attr_encode(&a, v, MF_ATTR_A_LEN);
	memcpy(v + MF_ATTR_A_LEN, target, strlen(target));
	return opx(st, MF_OP_SYMLINK, MF_T_SYMLINK, K(k), NULL, 0, v, MF_ATTR_A_LEN + strlen(target),
	           0, t, NULL);
}
static int o_setattr(mf_store *st, int kt, const char *k, uint64_t mask, const mf_attr *a,
                     int64_t t)
{
	uint8_t v[MF_ATTR_B_LEN];
	mf_attr_encode(a, v, MF_ATTR_B_LEN);
	return opx(st, MF_OP_SETATTR, kt, K(k), NULL, 0, v, sizeof v, mask, t, NULL);
}

static mf_entry_info pstat(mf_store *st, const char *p)
{
	mf_entry_info in;
	memset(&in, 0, sizeof in);
	assert_int_equal(mf_store_stat(st, K(p), &in), 0);
	return in;
}

static int dirent_cmp(const void *a, const void *b)
{
	const mf_dirent *x = a, *y = b;
	size_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
	int c = memcmp(mf_slice_ptr(x->name), mf_slice_ptr(y->name), n);
	return c ? c : (x->name.len > y->name.len) - (x->name.len < y->name.len);
}

/* The listing of folder p as "name:type name:type ..." (sorted). */
static char *listing(mf_store *st, const char *p)
{
	mf_dirent *d;
	size_t n;
	int r = mf_store_list(st, K(p), &d, &n);
	if (r)
		return NULL;
	qsort(d, n, sizeof *d, dirent_cmp);
	size_t cap = 16, len = 0;
	char *s = malloc(cap);
	s[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		size_t need = len + d[i].name.len + 8;
		if (need > cap) {
			cap = need * 2;
			s = realloc(s, cap);
		}
		len += (size_t)sprintf(s + len, "%s%.*s:%d", i ? " " : "", (int)d[i].name.len,
		                       mf_slice_ptr(d[i].name), d[i].type);
	}
	mf_store_dirents_free(d, n);
	return s;
}

#define EXPECT_LIST(st, p, want)                                              \
	do {                                                                  \
		char *got_ = listing(st, p);                                  \
		assert_non_null(got_);                                        \
		if (strcmp(got_, want) != 0)                                  \
			fail_msg("list '%s': got '%s' want '%s'", p, got_, want); \
		free(got_);                                                   \
	} while (0)

static void test_folders_posix_errors(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_mkdir(st, "a", 10), 0);
	assert_int_equal(o_mkdir(st, "a/b", 11), 0);
	assert_int_equal(o_set(st, MF_T_STRING, "a/b/f", "v", 1, 12), 0);
	EXPECT_LIST(st, "", "a:4");
	EXPECT_LIST(st, "a", "b:4");
	EXPECT_LIST(st, "a/b", "f:1");
	mf_entry_info in = pstat(st, "a/b");
	assert_int_equal(in.type, MF_T_FOLDER);
	assert_false(in.implicit);
	/* EEXIST, ENOTDIR, EISDIR, ENOTEMPTY, ENOENT as POSIX has them. */
	assert_int_equal(o_mkdir(st, "a", 13), -EEXIST);
	assert_int_equal(o_mkdir(st, "a/b/f", 13), -EEXIST);
	assert_int_equal(o_mkdir(st, "a/b/f/x", 13), -ENOTDIR);
	assert_int_equal(o_set(st, MF_T_STRING, "a/b", "v", 1, 13), -EEXIST);
	assert_int_equal(o_create(st, MF_T_STRING, "a/b/f/g", 13), -ENOTDIR);
	assert_int_equal(o_rmdir(st, "a", 13), -ENOTEMPTY);
	assert_int_equal(o_rmdir(st, "a/b/f", 13), -ENOTDIR);
	assert_int_equal(o_rmdir(st, "nope", 13), -ENOENT);
	assert_int_equal(o_del(st, MF_T_FOLDER, "a/b"), -EISDIR);
	assert_int_equal(o_rename(st, MF_T_STRING, "a/b/f", "a", 13), -EISDIR);
	assert_int_equal(o_rename(st, MF_T_STRING, "a/b/f", "a/b/f/x", 13), -ENOTDIR);
	assert_int_equal(o_renamedir(st, "a", "a/b/c", 13), -EINVAL);
	assert_int_equal(o_renamedir(st, "a/b/f", "z", 13), -ENOTDIR);
	assert_int_equal(o_mkdir(st, "z", 13), 0);
	assert_int_equal(o_renamedir(st, "z", "a", 13), -ENOTEMPTY);
	assert_int_equal(o_renamedir(st, "z", "a/b/f", 13), -ENOTDIR);
	/* Not tree keys: refused by the folder ops, untouched by the rules. */
	assert_int_equal(o_mkdir(st, "x//y", 13), -EINVAL);
	assert_int_equal(o_mkdir(st, "x/..", 13), -EINVAL);
	assert_int_equal(o_mkdir(st, "/x", 13), -EINVAL);
	assert_int_equal(o_set(st, MF_T_STRING, "a//f", "v", 1, 13), 0);
	EXPECT_LIST(st, "a", "b:4");
	/* Empty everything, bottom up. */
	assert_int_equal(o_del(st, MF_T_STRING, "a/b/f"), 0);
	assert_int_equal(o_rmdir(st, "a/b", 14), 0);
	assert_int_equal(o_rmdir(st, "a", 15), 0);
	assert_int_equal(o_rmdir(st, "z", 15), 0);
	EXPECT_LIST(st, "", "");
	assert_int_equal(mf_store_list(st, K("a"), &(mf_dirent *){NULL}, &(size_t){0}), -ENOENT);
	assert_int_equal(mf_store_list(st, K("a//f"), &(mf_dirent *){NULL}, &(size_t){0}), -ENOENT);
	mf_store_free(st);
}

static void test_folders_implicit(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	/* Keys made over RESP show their folders. */
	assert_int_equal(o_set(st, MF_T_STRING, "user/1/name", "ann", 3, 5), 0);
	assert_int_equal(o_set(st, MF_T_STRING, "user/1/mail", "a@x", 3, 6), 0);
	/* JSON documents and lists stay flat: not in the tree, no rules. */
	assert_int_equal(o_set(st, MF_T_JSON, "user/1/doc", "{}", 2, 7), 0);
	assert_int_equal(o_set(st, MF_T_JSON, "user/1/name/x", "{}", 2, 7), 0);
	assert_int_equal(o_set(st, MF_T_JSON, "q/1", "{}", 2, 7), 0);
	EXPECT_LIST(st, "", "user:4");
	EXPECT_LIST(st, "user", "1:4");
	EXPECT_LIST(st, "user/1", "mail:1 name:1");
	mf_entry_info in = pstat(st, "user/1");
	assert_true(in.implicit);
	assert_int_equal(in.mtime_ns, 6);
	assert_int_equal(pstat(st, "user").count, 1); /* subfolders */
	/* A folder is not a key: RESP's GET/EXISTS do not see it. */
	expect_absent(st, "user");
	assert_int_equal(stats(st).keys[0], 5);
	assert_int_equal(o_del(st, MF_T_JSON, "user/1/doc"), 0);
	assert_int_equal(o_del(st, MF_T_JSON, "user/1/name/x"), 0);
	assert_int_equal(o_del(st, MF_T_JSON, "q/1"), 0);
	/* A folder move never lands a key on a flat one. */
	assert_int_equal(o_set(st, MF_T_JSON, "v/1/mail", "{}", 2, 7), 0);
	assert_int_equal(o_renamedir(st, "user", "v", 7), -EEXIST);
	assert_int_equal(o_del(st, MF_T_JSON, "v/1/mail"), 0);
	/* No file where a folder is; no folder under a file. */
	assert_int_equal(o_set(st, MF_T_STRING, "user", "x", 1, 7), -EISDIR);
	assert_int_equal(o_set(st, MF_T_STRING, "user/1/name/x", "x", 1, 7), -ENOTDIR);
	assert_int_equal(o_mkdir(st, "user/1", 7), -EEXIST);
	assert_int_equal(o_rmdir(st, "user/1", 7), -ENOTEMPTY);
	/* Removing the last key removes its implicit folders. */
	assert_int_equal(o_del(st, MF_T_STRING, "user/1/name"), 0);
	assert_int_equal(o_del(st, MF_T_STRING, "user/1/mail"), 0);
	mf_entry_info x;
	assert_int_equal(mf_store_stat(st, K("user"), &x), -ENOENT);
	EXPECT_LIST(st, "", "");
	/* SETATTR on an implicit folder makes it explicit: it then persists. */
	assert_int_equal(o_set(st, MF_T_STRING, "p/q", "v", 1, 8), 0);
	mf_attr a = {0700, 1000, 100, 0, 0};
	assert_int_equal(o_setattr(st, MF_T_FOLDER, "p", MF_ATTR_MODE | MF_ATTR_UID, &a, 9), 0);
	in = pstat(st, "p");
	assert_false(in.implicit);
	assert_int_equal(in.mode, 0700);
	assert_int_equal(in.uid, 1000);
	assert_int_equal(in.gid, MF_ID_DEFAULT);
	assert_int_equal(in.ctime_ns, 9);
	assert_int_equal(in.mtime_ns, 8);
	assert_int_equal(o_del(st, MF_T_STRING, "p/q"), 0);
	EXPECT_LIST(st, "", "p:4");
	assert_int_equal(o_rmdir(st, "p", 10), 0);
	mf_store_free(st);
}

static void test_folder_times(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_mkdir(st, "d", 10), 0);
	assert_int_equal(pstat(st, "").mtime_ns, 10);
	assert_int_equal(o_create(st, MF_T_STRING, "d/f", 20), 0);
	mf_entry_info in = pstat(st, "d");
	assert_int_equal(in.mtime_ns, 20);
	assert_int_equal(in.ctime_ns, 20);
	/* Writing a file does not change its folder. */
	assert_int_equal(o_set(st, MF_T_STRING, "d/f", "x", 1, 25), 0);
	assert_int_equal(pstat(st, "d").mtime_ns, 20);
	/* A rename changes both folders. */
	assert_int_equal(o_rename(st, MF_T_STRING, "d/f", "g", 30), 0);
	assert_int_equal(pstat(st, "d").mtime_ns, 30);
	assert_int_equal(pstat(st, "").mtime_ns, 30);
	assert_int_equal(o_del(st, MF_T_STRING, "g"), 0);
	/* SETATTR: atime and mtime as given (older than now, 2^31 and 2^32
	 * seconds, negative), ctime = the op's time. */
	assert_int_equal(o_create(st, MF_T_STRING, "d/t", 40), 0);
	int64_t big = ((int64_t)1 << 32) * 1000000000LL;
	mf_attr a = {0, 0, 0, ((int64_t)1 << 31) * 1000000000LL, big};
	assert_int_equal(o_setattr(st, MF_T_STRING, "d/t", MF_ATTR_ATIME | MF_ATTR_MTIME, &a, 50), 0);
	in = pstat(st, "d/t");
	assert_int_equal(in.atime_ns, a.atime_ns);
	assert_int_equal(in.mtime_ns, big);
	assert_int_equal(in.ctime_ns, 50);
	a.atime_ns = -5;
	assert_int_equal(o_setattr(st, MF_T_STRING, "d/t", MF_ATTR_ATIME, &a, 60), 0);
	in = pstat(st, "d/t");
	assert_int_equal(in.atime_ns, -5);
	assert_int_equal(in.mtime_ns, big); /* omitted: unchanged */
	/* Bad masks and modes are refused. */
	assert_int_equal(o_setattr(st, MF_T_STRING, "d/t", 64, &a, 60), -EINVAL);
	/* A new key has the default mode; chmod 000 is a mode like any other. */
	assert_int_equal(pstat(st, "d/t").mode, MF_MODE_DEFAULT);
	a.mode = 0;
	assert_int_equal(o_setattr(st, MF_T_STRING, "d/t", MF_ATTR_MODE, &a, 61), 0);
	assert_int_equal(pstat(st, "d/t").mode, 0);
	a.mode = 010000;
	assert_int_equal(o_setattr(st, MF_T_STRING, "d/t", MF_ATTR_MODE, &a, 60), -EINVAL);
	assert_int_equal(o_setattr(st, MF_T_JSON, "d/t", MF_ATTR_ATIME, &a, 60), -ENOENT);
	assert_int_equal(o_setattr(st, MF_T_FOLDER, "nope", MF_ATTR_ATIME, &a, 60), -ENOENT);
	mf_store_free(st);
}

static void test_symlink_and_mkfile(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_symlink(st, "l", "../target/x", 1000, 5), 0);
	mf_entry_info in = pstat(st, "l");
	assert_int_equal(in.type, MF_T_SYMLINK);
	assert_int_equal(in.uid, 1000);
	EXPECT_STR(st, MF_T_SYMLINK, "l", "../target/x");
	assert_int_equal(o_symlink(st, "l", "y", 0, 6), -EEXIST);
	assert_int_equal(o_symlink(st, "l/x", "y", 0, 6), -ENOTDIR);
	/* A file and a symlink replace each other by rename. */
	assert_int_equal(o_set(st, MF_T_STRING, "f", "data", 4, 7), 0);
	assert_int_equal(o_rename(st, MF_T_STRING, "f", "l", 8), 0);
	EXPECT_STR(st, MF_T_STRING, "l", "data");
	assert_int_equal(o_symlink(st, "s", "t", 0, 9), 0);
	assert_int_equal(o_rename(st, MF_T_SYMLINK, "s", "l", 10), 0);
	EXPECT_STR(st, MF_T_SYMLINK, "l", "t");
	assert_int_equal(o_del(st, MF_T_SYMLINK, "l"), 0);
	/* A symlink's value rules: not empty, no NUL, at most 4095 bytes. */
	uint8_t v[MF_ATTR_A_LEN + MF_SYMLINK_MAX + 1];
	memset(v, 'x', sizeof v);
	mf_attr a = {0, 1, 1, 0, 0};
	mf_attr_encode(&a, v, MF_ATTR_A_LEN);
	assert_int_equal(opx(st, MF_OP_SYMLINK, MF_T_SYMLINK, K("big"), NULL, 0, v, sizeof v, 0, 1, NULL), -EINVAL);
	assert_int_equal(opx(st, MF_OP_SYMLINK, MF_T_SYMLINK, K("big"), NULL, 0, v, sizeof v - 1, 0, 1, NULL), 0);
	assert_int_equal(opx(st, MF_OP_SYMLINK, MF_T_SYMLINK, K("e"), NULL, 0, v, MF_ATTR_A_LEN, 0, 1, NULL), -EINVAL);
	/* MKFILE: the creator's attributes with the first value; KEEP leaves an
	 * existing key alone. */
	mf_attr c = {0600, 1000, 1001, 0, 0};
	uint8_t mv[MF_ATTR_A_LEN + 3];
	mf_attr_encode(&c, mv, MF_ATTR_A_LEN);
	memcpy(mv + MF_ATTR_A_LEN, "abc", 3);
	assert_int_equal(opx(st, MF_OP_MKFILE, MF_T_STRING, K("m"), NULL, 0, mv, sizeof mv, 0, 20, NULL), 0);
	in = pstat(st, "m");
	assert_int_equal(in.mode, 0600);
	assert_int_equal(in.uid, 1000);
	assert_int_equal(in.gid, 1001);
	EXPECT_STR(st, MF_T_STRING, "m", "abc");
	assert_int_equal(opx(st, MF_OP_MKFILE, MF_T_STRING, K("m"), NULL, 0, mv, MF_ATTR_A_LEN, MF_MKFILE_KEEP, 21, NULL), 0);
	EXPECT_STR(st, MF_T_STRING, "m", "abc");
	assert_int_equal(opx(st, MF_OP_MKFILE, MF_T_STRING, K("n"), NULL, 0, mv, MF_ATTR_A_LEN, MF_MKFILE_KEEP, 22, NULL), 0);
	EXPECT_STR(st, MF_T_STRING, "n", "");
	assert_int_equal(pstat(st, "n").mode, 0600);
	assert_int_equal(opx(st, MF_OP_MKFILE, MF_T_STRING, K("o"), NULL, 0, mv, sizeof mv, MF_MKFILE_KEEP, 22, NULL), -EINVAL);
	assert_int_equal(opx(st, MF_OP_MKFILE, MF_T_JSON, K("j"), NULL, 0, mv, sizeof mv, 0, 22, NULL), -EINVAL);
	mf_store_free(st);
}

static void test_renamedir_subtree(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	assert_int_equal(o_mkdir(st, "a", 1), 0);
	assert_int_equal(o_mkdir(st, "a/y", 1), 0);
	char k[64], v[64];
	for (int i = 0; i < 300; i++) {
		snprintf(k, sizeof k, "a/x/%d/k%d", i % 7, i);
		snprintf(v, sizeof v, "value %d", i);
		assert_int_equal(o_set(st, MF_T_STRING, k, v, strlen(v), 2), 0);
	}
	assert_int_equal(o_symlink(st, "a/x/l", "../y", 0, 2), 0);
	assert_int_equal(o_set(st, MF_T_STRING, "ab", "sibling", 7, 2), 0);
	uint64_t keys = stats(st).keys[0];
	assert_int_equal(o_renamedir(st, "a", "b/c", 3), 0);
	assert_int_equal(stats(st).keys[0], keys);
	for (int i = 0; i < 300; i++) {
		snprintf(k, sizeof k, "a/x/%d/k%d", i % 7, i);
		expect_absent(st, k);
		snprintf(k, sizeof k, "b/c/x/%d/k%d", i % 7, i);
		snprintf(v, sizeof v, "value %d", i);
		expect_val(st, MF_T_STRING, K(k), v, strlen(v));
	}
	EXPECT_STR(st, MF_T_STRING, "ab", "sibling");
	EXPECT_LIST(st, "", "ab:1 b:4");
	EXPECT_LIST(st, "b", "c:4");
	EXPECT_LIST(st, "b/c", "x:4 y:4");
	EXPECT_LIST(st, "b/c/x", "0:4 1:4 2:4 3:4 4:4 5:4 6:4 l:5");
	assert_false(pstat(st, "b/c").implicit);
	assert_false(pstat(st, "b/c/y").implicit);
	assert_true(pstat(st, "b").implicit);
	assert_int_equal(pstat(st, "b/c").ctime_ns, 3);
	mf_entry_info x;
	assert_int_equal(mf_store_stat(st, K("a"), &x), -ENOENT);
	assert_int_equal(mf_store_stat(st, K("a/x"), &x), -ENOENT);
	/* Onto an empty folder: replaced.  An implicit folder moves too. */
	assert_int_equal(o_mkdir(st, "e", 4), 0);
	assert_int_equal(o_renamedir(st, "b/c/x", "e", 5), 0);
	EXPECT_LIST(st, "e", "0:4 1:4 2:4 3:4 4:4 5:4 6:4 l:5");
	assert_true(pstat(st, "e").implicit);
	assert_int_equal(o_renamedir(st, "e/3", "e/3", 6), 0);
	assert_int_equal(o_renamedir(st, "e/3", "e/33", 6), 0);
	EXPECT_LIST(st, "e", "0:4 1:4 2:4 33:4 4:4 5:4 6:4 l:5");
	mf_store_free(st);
}

/* Seeded random folder ops against a brute-force model: a list of keys,
 * folders derived by scanning them (O(keys), fine for a model). */
#define TM_MAX 256
typedef struct tm_key {
	char k[48];
	int type;
} tm_key;
static tm_key tm[TM_MAX];
static int tm_n;

static int tm_find(const char *k)
{
	for (int i = 0; i < tm_n; i++)
		if (strcmp(tm[i].k, k) == 0)
			return i;
	return -1;
}
static bool tm_under(const char *k, const char *p)
{
	size_t n = strlen(p);
	return strncmp(k, p, n) == 0 && k[n] == '/';
}
static bool tm_has_below(const char *p)
{
	for (int i = 0; i < tm_n; i++)
		if (tm_under(tm[i].k, p))
			return true;
	return false;
}
static bool tm_folder(const char *p)
{
	int i = tm_find(p);
	return i >= 0 ? tm[i].type == MF_T_FOLDER : tm_has_below(p);
}
static bool tm_nonfolder(const char *p)
{
	int i = tm_find(p);
	return i >= 0 && tm[i].type != MF_T_FOLDER;
}
static bool tm_prefix_nonfolder(const char *k)
{
	char p[48];
	for (const char *s = strchr(k, '/'); s; s = strchr(s + 1, '/')) {
		memcpy(p, k, (size_t)(s - k));
		p[s - k] = '\0';
		if (tm_nonfolder(p))
			return true;
	}
	return false;
}
static void tm_del(int i) { tm[i] = tm[--tm_n]; }
static void tm_add(const char *k, int type)
{
	snprintf(tm[tm_n].k, sizeof tm[tm_n].k, "%s", k);
	tm[tm_n++].type = type;
}

/* The model's answer to op (type, k, k2); applies it on success. */
static int tm_apply(int type, const char *k, const char *k2)
{
	int i = tm_find(k);
	switch (type) {
	case MF_OP_SET:
		if (i >= 0)
			return tm[i].type == MF_T_STRING ? 0 : -EEXIST;
		if (tm_prefix_nonfolder(k))
			return -ENOTDIR;
		if (tm_has_below(k))
			return -EISDIR;
		tm_add(k, MF_T_STRING);
		return 0;
	case MF_OP_SYMLINK:
		if (i >= 0 || tm_has_below(k))
			return -EEXIST;
		if (tm_prefix_nonfolder(k))
			return -ENOTDIR;
		tm_add(k, MF_T_SYMLINK);
		return 0;
	case MF_OP_MKDIR:
		if (i >= 0 || tm_has_below(k))
			return -EEXIST;
		if (tm_prefix_nonfolder(k))
			return -ENOTDIR;
		tm_add(k, MF_T_FOLDER);
		return 0;
	case MF_OP_DEL:
		if (i < 0 || tm[i].type != MF_T_STRING)
			return -ENOENT;
		tm_del(i);
		return 0;
	case MF_OP_RMDIR:
		if (tm_nonfolder(k))
			return -ENOTDIR;
		if (!tm_folder(k))
			return -ENOENT;
		if (tm_has_below(k))
			return -ENOTEMPTY;
		tm_del(i);
		return 0;
	case MF_OP_RENAME: {
		if (i < 0 || tm[i].type != MF_T_STRING)
			return -ENOENT;
		int t = tm_find(k2);
		if (t == i)
			return 0;
		if (t >= 0) {
			if (tm[t].type == MF_T_FOLDER)
				return -EISDIR;
		} else {
			if (tm_prefix_nonfolder(k2))
				return -ENOTDIR;
			if (tm_has_below(k2))
				return -EISDIR;
		}
		snprintf(tm[i].k, sizeof tm[i].k, "%s", k2);
		if (t >= 0)
			tm_del(t);
		return 0;
	}
	case MF_OP_RENAMEDIR: {
		if (tm_nonfolder(k))
			return -ENOTDIR;
		if (!tm_folder(k))
			return -ENOENT;
		if (strcmp(k, k2) == 0)
			return 0;
		if (tm_under(k2, k))
			return -EINVAL;
		if (tm_nonfolder(k2))
			return -ENOTDIR;
		if (tm_folder(k2)) {
			if (tm_has_below(k2))
				return -ENOTEMPTY;
			tm_del(tm_find(k2));
		} else if (tm_prefix_nonfolder(k2)) {
			return -ENOTDIR;
		}
		size_t n = strlen(k);
		for (int j = 0; j < tm_n; j++)
			if (strcmp(tm[j].k, k) == 0 || tm_under(tm[j].k, k)) {
				char nk[96];
				snprintf(nk, sizeof nk, "%s%s", k2, tm[j].k + n);
				if (strlen(nk) >= sizeof tm[j].k)
					fail_msg("model key too long: %s", nk);
				memcpy(tm[j].k, nk, strlen(nk) + 1); /* fits: checked above */
			}
		return 0;
	}
	}
	return -EINVAL;
}

static void tm_gen_path(char *out, int maxdepth)
{
	static const char *const comp[] = {"a", "b", "c"};
	int d = 1 + (int)rndn((uint64_t)maxdepth);
	out[0] = '\0';
	for (int i = 0; i < d; i++) {
		strcat(out, comp[rndn(3)]);
		if (i + 1 < d)
			strcat(out, "/");
	}
}

/* Every path the model can name: stat and listing agree with it. */
static void tm_compare(mf_store *st, uint64_t seed, int step)
{
	char p[16];
	static const char *const comp[] = {"a", "b", "c"};
	for (int d = 1; d <= 3; d++) {
		int combos = d == 1 ? 3 : d == 2 ? 9 : 27;
		for (int c = 0; c < combos; c++) {
			int x = c;
			p[0] = '\0';
			for (int i = 0; i < d; i++) {
				strcat(p, comp[x % 3]);
				x /= 3;
				if (i + 1 < d)
					strcat(p, "/");
			}
			mf_entry_info in;
			int r = mf_store_stat(st, K(p), &in);
			int i = tm_find(p);
			int want = i >= 0 ? tm[i].type : tm_has_below(p) ? MF_T_FOLDER : 0;
			if ((r == 0 ? (int)in.type : 0) != want)
				fail_msg("seed %" PRIu64 " step %d: stat %s: type %d, model %d", seed, step, p,
				         r == 0 ? (int)in.type : 0, want);
			if (want == MF_T_FOLDER) {
				/* The listing names exactly the model's children. */
				mf_dirent *dl;
				size_t n;
				assert_int_equal(mf_store_list(st, K(p), &dl, &n), 0);
				size_t children = 0;
				for (int j = 0; j < tm_n; j++) {
					const char *rest = tm[j].k + strlen(p) + 1;
					if (tm_under(tm[j].k, p) && !strchr(rest, '/'))
						children++;
				}
				/* implicit child folders are not in tm: count them */
				for (int j = 0; j < 3; j++) {
					char q[16];
					if (snprintf(q, sizeof q, "%s/%s", p, comp[j]) >= (int)sizeof q)
						fail_msg("model path too long under %s", p);
					if (tm_find(q) < 0 && tm_has_below(q))
						children++;
				}
				if (n != children)
					fail_msg("seed %" PRIu64 " step %d: list %s: %zu entries, model %zu", seed,
					         step, p, n, children);
				mf_store_dirents_free(dl, n);
			}
		}
	}
	mf_store_stats s;
	mf_store_stats_get(st, &s);
	if (s.keys[0] != (uint64_t)tm_n)
		fail_msg("seed %" PRIu64 " step %d: %" PRIu64 " keys, model %d", seed, step, s.keys[0], tm_n);
}

static void test_tree_model_random(void **state)
{
	(void)state;
	uint64_t seed = getenv("MEMFLUX_SEED") ? strtoull(getenv("MEMFLUX_SEED"), NULL, 0)
	                                       : (uint64_t)time(NULL);
	print_message("tree model seed %" PRIu64 " (MEMFLUX_SEED=%" PRIu64 " to rerun)\n", seed, seed);
	for (int run = 0; run < 20; run++) {
		rng_state = (seed + (uint64_t)run) * 0x9E3779B97F4A7C15ULL | 1;
		mf_store *st = mf_store_new();
		tm_n = 0;
		for (int step = 0; step < 400; step++) {
			static const int types[] = {MF_OP_SET, MF_OP_SET, MF_OP_MKDIR, MF_OP_MKDIR,
			                            MF_OP_SYMLINK, MF_OP_DEL, MF_OP_RMDIR, MF_OP_RMDIR,
			                            MF_OP_RENAME, MF_OP_RENAMEDIR, MF_OP_RENAMEDIR};
			int type = types[rndn(sizeof types / sizeof types[0])];
			char k[16], k2[16];
			tm_gen_path(k, 3);
			tm_gen_path(k2, 3);
			if (tm_n >= TM_MAX - 1 && (type == MF_OP_SET || type == MF_OP_MKDIR ||
			                           type == MF_OP_SYMLINK))
				type = MF_OP_DEL;
			if (type == MF_OP_RENAMEDIR) {
				/* Keep model keys short: skip moves that would nest
				 * a subtree too deep (the store has no such limit). */
				bool deep = false;
				for (int j = 0; j < tm_n; j++)
					deep |= tm_under(tm[j].k, k) &&
					        strlen(tm[j].k) - strlen(k) + strlen(k2) >= 40;
				if (deep)
					continue;
			}
			int want = tm_apply(type, k, k2);
			int got;
			switch (type) {
			case MF_OP_SET: got = o_set(st, MF_T_STRING, k, "v", 1, step); break;
			case MF_OP_SYMLINK: got = o_symlink(st, k, "t", 0, step); break;
			case MF_OP_MKDIR: got = o_mkdir(st, k, step); break;
			case MF_OP_DEL: got = o_del(st, MF_T_STRING, k); break;
			case MF_OP_RMDIR: got = o_rmdir(st, k, step); break;
			case MF_OP_RENAME: got = o_rename(st, MF_T_STRING, k, k2, step); break;
			default: got = o_renamedir(st, k, k2, step); break;
			}
			if (got != want)
				fail_msg("seed %" PRIu64 " run %d step %d: %s %s %s: got %d, model %d", seed,
				         run, step, mf_optype_name(type), k, k2, got, want);
			tm_compare(st, seed, step);
		}
		/* Export and load: the same tree (folders, implicit ones too). */
		mf_item *items;
		uint64_t lsn;
		size_t n = mf_store_export(st, &items, &lsn);
		mf_store *b = mf_store_new();
		for (size_t i = 0; i < n; i++) {
			mf_item it = items[i];
			it.key = mf_slice_ref(it.key);
			it.val = mf_slice_ref(it.val);
			assert_int_equal(mf_store_load_item(b, &it), 0);
		}
		mf_store_items_free(items, n);
		tm_compare(b, seed, -1);
		mf_store_free(b);
		mf_store_free(st);
	}
}

/* Keys written before the tree rules (a file "a" and a key "a/b"): they
 * load, the key wins the name, nothing is listed twice. */
static void test_tree_legacy_conflict(void **state)
{
	(void)state;
	mf_store *b = mf_store_new();
	mf_item it[2] = {
		{.key = sl("a/b", 3), .type = MF_T_STRING, .val = sl("x", 1), .uid = MF_ID_DEFAULT,
		 .gid = MF_ID_DEFAULT},
		{.key = sl("a", 1), .type = MF_T_STRING, .val = sl("y", 1), .uid = MF_ID_DEFAULT,
		 .gid = MF_ID_DEFAULT},
	};
	assert_int_equal(mf_store_load_item(b, &it[0]), 0);
	assert_int_equal(mf_store_load_item(b, &it[1]), 0);
	EXPECT_LIST(b, "", "a:1");
	assert_int_equal(pstat(b, "a").type, MF_T_STRING);
	mf_dirent *d;
	size_t n;
	assert_int_equal(mf_store_list(b, K("a"), &d, &n), -ENOTDIR);
	/* A folder item must be a tree key with no value. */
	mf_item f = {.key = sl("x//y", 4), .type = MF_T_FOLDER};
	assert_int_equal(mf_store_load_item(b, &f), -EINVAL);
	mf_slice_unref(&f.key);
	mf_store_free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_buf),
		cmocka_unit_test(test_create),
		cmocka_unit_test(test_set),
		cmocka_unit_test(test_append),
		cmocka_unit_test(test_truncate),
		cmocka_unit_test(test_del),
		cmocka_unit_test(test_rename),
		cmocka_unit_test(test_settime),
		cmocka_unit_test(test_rpush_lpop),
		cmocka_unit_test(test_json_setpath),
		cmocka_unit_test(test_errors_leave_store_unchanged),
		cmocka_unit_test(test_key_lengths),
		cmocka_unit_test(test_large_value),
		cmocka_unit_test(test_slices_immutable),
		cmocka_unit_test(test_keys_by_type),
		cmocka_unit_test(test_applied_lsn),
		cmocka_unit_test(test_export_load_roundtrip),
		cmocka_unit_test(test_load_unterminated_list),
		cmocka_unit_test(test_model_random),
		cmocka_unit_test(test_concurrent_readers),
		cmocka_unit_test(test_resp_ops),
		cmocka_unit_test(test_folders_posix_errors),
		cmocka_unit_test(test_folders_implicit),
		cmocka_unit_test(test_folder_times),
		cmocka_unit_test(test_symlink_and_mkfile),
		cmocka_unit_test(test_renamedir_subtree),
		cmocka_unit_test(test_tree_model_random),
		cmocka_unit_test(test_tree_legacy_conflict),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
