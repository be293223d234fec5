/*
 * test_capture.c — copy-on-write snapshot capture (store.c, issue 12): the
 * items a capture hands over are exactly the keyspace at its begin, however
 * apply changes, removes, renames or adds keys (and grows the table) while
 * the walk goes on.
 *
 * Seeded (MEMFLUX_TEST_SEED or the clock; printed).  The threaded test runs
 * the walk against a real applier and readers, for ThreadSanitizer.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store.h"

static uint64_t g_seed;

typedef struct rng {
	uint64_t s;
} rng;

static uint64_t rnd(rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t below(rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

static mf_slice sl(const void *p, size_t n)
{
	return mf_slice_from(p, n, n);
}

static mf_slice key_of(uint64_t i, bool list)
{
	char k[32];
	int n = snprintf(k, sizeof k, "%c%" PRIu64, list ? 'L' : 'k', i);
	return sl(k, (size_t)n);
}

/* One random op on keys 0..nkeys (some absent).  Failures are fine: the
 * store is unchanged then. */
static void random_op(mf_store *st, rng *r, uint64_t nkeys, int64_t t, bool allow_flush)
{
	bool list = below(r, 4) == 0;
	mf_op op = {.ktype = list ? MF_T_LIST : MF_T_STRING, .time_ns = t};
	op.key = key_of(below(r, nkeys), list);
	char v[64];
	int vl = snprintf(v, sizeof v, "v%" PRIu64 "\n", rnd(r));
	uint64_t c = below(r, 100);
	if (allow_flush && c == 0) {
		mf_slice_unref(&op.key);
		op.type = MF_OP_FLUSH;
		op.ktype = MF_T_NONE;
	} else if (c < 30) {
		op.type = MF_OP_SET;
		op.val = sl(v, (size_t)vl);
	} else if (c < 45) {
		op.type = list ? MF_OP_RPUSH : MF_OP_APPEND;
		op.val = sl(v, (size_t)vl);
	} else if (c < 60) {
		op.type = MF_OP_DEL;
	} else if (c < 70) {
		op.type = MF_OP_RENAME;
		op.key2 = key_of(below(r, nkeys), list);
	} else if (c < 78) {
		op.type = MF_OP_SETTIME;
		op.arg = (uint64_t)t * 3;
	} else if (c < 86) {
		op.type = list ? MF_OP_LPOP : MF_OP_TRUNCATE;
		op.arg = list ? 1 : below(r, 8);
	} else if (c < 90) {
		op.type = MF_OP_CREATE;
	} else if (c < 93) {
		/* sets: their text is made on demand, a pre-image must make it */
		mf_slice_unref(&op.key);
		op.key = key_of(below(r, nkeys), false);
		op.key.buf->data[0] = 'S';
		op.ktype = MF_T_SET;
		op.type = below(r, 3) ? MF_OP_SADD : MF_OP_SREM;
		int ml = snprintf(v, sizeof v, "m%d\n", (int)below(r, 6));
		op.val = sl(v, (size_t)ml);
	} else if (c < 95) {
		/* an expiry far ahead (kept) or already past (deletes the key) */
		op.type = MF_OP_EXPIRE;
		op.ktype = MF_T_NONE;
		op.arg = below(r, 2) ? (uint64_t)4102444800LL * 1000000000ULL : (uint64_t)t;
	} else {
		/* WRITEV with keep 0: a whole new value in a few bytes */
		op.type = MF_OP_WRITEV;
		op.ktype = MF_T_STRING;
		mf_range rg = {1, 3};
		op.arg = 6;
		op.val = mf_writev_encode(0, 0, &rg, 1, "xabcxx");
	}
	mf_store_apply(st, &op);
	mf_op_clear(&op);
}

static int cmp_item(const void *a, const void *b)
{
	const mf_item *x = a, *y = b;
	size_t n = x->key.len < y->key.len ? x->key.len : y->key.len;
	int c = memcmp(mf_slice_ptr(x->key), mf_slice_ptr(y->key), n);
	return c ? c : (x->key.len > y->key.len) - (x->key.len < y->key.len);
}

static void same_items(mf_item *want, size_t nw, mf_item *got, size_t ng, const char *where)
{
	if (nw != ng)
		fail_msg("seed %" PRIu64 " %s: %zu items, want %zu", g_seed, where, ng, nw);
	qsort(want, nw, sizeof *want, cmp_item);
	qsort(got, ng, sizeof *got, cmp_item);
	for (size_t i = 0; i < nw; i++) {
		mf_item *a = &want[i], *b = &got[i];
		if (cmp_item(a, b) != 0 || a->type != b->type || a->val.len != b->val.len ||
		    memcmp(mf_slice_ptr(a->val), mf_slice_ptr(b->val), a->val.len) != 0 ||
		    a->mtime_ns != b->mtime_ns || a->ctime_ns != b->ctime_ns)
			fail_msg("seed %" PRIu64 " %s: item %zu (%.*s) differs from the state at begin",
			         g_seed, where, i, (int)a->key.len, mf_slice_ptr(a->key));
	}
}

static mf_store *filled(rng *r, uint64_t nkeys, int64_t *t)
{
	mf_store *st = mf_store_new();
	for (uint64_t i = 0; i < nkeys * 2; i++)
		random_op(st, r, nkeys, ++*t, false);
	return st;
}

/* Steps and ops interleaved by the seed, on one thread: every order of
 * "walk reaches the key" and "apply changes it" comes up, table growth
 * included (the key space is wider than the table). */
static void test_capture_exact_interleaved(void **state)
{
	(void)state;
	rng r = {g_seed};
	for (int round = 0; round < 40; round++) {
		int64_t t = 0;
		uint64_t nkeys = 200 + below(&r, 3000);
		mf_store *st = filled(&r, nkeys, &t);
		mf_item *want;
		uint64_t lsn_e, lsn_c;
		size_t nw = mf_store_export(st, &want, &lsn_e);
		mf_store_capture_begin(st, &lsn_c);
		assert_int_equal(lsn_e, lsn_c);
		bool done = false;
		while (!done) {
			if (below(&r, 3) == 0)
				done = mf_store_capture_step(st, 1 + below(&r, 64));
			else
				random_op(st, &r, nkeys * 2, ++t, below(&r, 50) == 0);
		}
		for (int k = (int)below(&r, 20); k > 0; k--) /* after the walk, before end */
			random_op(st, &r, nkeys * 2, ++t, false);
		mf_item *got;
		size_t ng = mf_store_capture_end(st, &got);
		char where[32];
		snprintf(where, sizeof where, "round %d", round);
		same_items(want, nw, got, ng, where);
		mf_store_items_free(want, nw);
		mf_store_items_free(got, ng);
		/* The next capture starts clean (a new epoch). */
		nw = mf_store_export(st, &want, &lsn_e);
		mf_store_capture_begin(st, &lsn_c);
		ng = mf_store_capture_end(st, &got);
		same_items(want, nw, got, ng, "second capture");
		mf_store_items_free(want, nw);
		mf_store_items_free(got, ng);
		mf_store_free(st);
	}
}

typedef struct worker {
	mf_store *st;
	uint64_t seed, nkeys;
	atomic_bool *stop;
	atomic_long ops;
} worker;

static void *applier(void *arg)
{
	worker *w = arg;
	rng r = {w->seed};
	int64_t t = 1000000;
	while (!atomic_load(w->stop)) {
		random_op(w->st, &r, w->nkeys, ++t, below(&r, 500) == 0);
		w->ops++;
	}
	return NULL;
}

static void *reader(void *arg)
{
	worker *w = arg;
	rng r = {w->seed};
	while (!atomic_load(w->stop)) {
		mf_slice k = key_of(below(&r, w->nkeys), below(&r, 4) == 0);
		mf_entry_info info;
		if (mf_store_get(w->st, mf_slice_ptr(k), k.len, true, &info) == 0)
			mf_slice_unref(&info.val);
		mf_slice_unref(&k);
		w->ops++;
	}
	return NULL;
}

/* The walk on this thread, an applier and a reader on theirs. */
static void test_capture_exact_threaded(void **state)
{
	(void)state;
	rng r = {g_seed ^ 0x5eed};
	for (int round = 0; round < 8; round++) {
		int64_t t = 0;
		uint64_t nkeys = 2000 + below(&r, 20000);
		mf_store *st = filled(&r, nkeys, &t);
		mf_item *want;
		uint64_t lsn;
		size_t nw = mf_store_export(st, &want, &lsn);
		mf_store_capture_begin(st, &lsn); /* nothing applies meanwhile */
		atomic_bool stop = false;
		worker a = {st, rnd(&r), nkeys * 2, &stop, 0}, rd = {st, rnd(&r), nkeys * 2, &stop, 0};
		pthread_t ta, tr;
		pthread_create(&ta, NULL, applier, &a);
		pthread_create(&tr, NULL, reader, &rd);
		/* Each step waits for the applier to have applied a few more ops
		 * (a counter, not a sleep), so walk and changes interleave. */
		long until = 0;
		do {
			until += 1 + (long)below(&r, 4);
			while (atomic_load(&a.ops) < until)
				sched_yield();
		} while (!mf_store_capture_step(st, 1 + below(&r, 32)));
		mf_item *got;
		size_t ng = mf_store_capture_end(st, &got);
		atomic_store(&stop, true);
		pthread_join(ta, NULL);
		pthread_join(tr, NULL);
		same_items(want, nw, got, ng, "threaded");
		mf_store_items_free(want, nw);
		mf_store_items_free(got, ng);
		mf_store_free(st);
	}
}

int main(void)
{
	const char *e = getenv("MEMFLUX_TEST_SEED");
	g_seed = e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	printf("test_capture: seed %" PRIu64 " (MEMFLUX_TEST_SEED=%" PRIu64 " repeats it)\n", g_seed,
	       g_seed);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_capture_exact_interleaved),
		cmocka_unit_test(test_capture_exact_threaded),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
