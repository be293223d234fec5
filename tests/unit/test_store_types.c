/*
 * test_store_types.c — the store's counters (INCRBY, INCRBYFLOAT) and sets
 * (SADD, SREM, SMOVE, SET/TRUNCATE of a set, snapshot export/load), each
 * through mf_store_check and mf_store_apply (which must agree), plus a
 * seeded random test of sets against a reference model.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "json.h"
#include "set.h"
#include "store.h"

static mf_slice sl(const char *p, size_t n)
{
	return mf_slice_from(p, n, n);
}

/* Check, then apply (they must agree); res and out come from apply. */
static int op3(mf_store *st, int type, int ktype, const char *k, const char *k2, const char *v,
               size_t vn, uint64_t arg, uint64_t *res, char *out, size_t outcap)
{
	mf_op op;
	memset(&op, 0, sizeof op);
	op.type = (uint8_t)type;
	op.ktype = (uint8_t)ktype;
	op.key = sl(k, strlen(k));
	if (k2)
		op.key2 = sl(k2, strlen(k2));
	if (v)
		op.val = sl(v, vn);
	op.arg = arg;
	op.time_ns = 1000;
	int c = mf_store_check(st, &op);
	int r = mf_store_apply(st, &op);
	assert_int_equal(c, r);
	if (res)
		*res = op.res;
	if (out && outcap) {
		size_t n = op.out.len < outcap - 1 ? op.out.len : outcap - 1;
		memcpy(out, mf_slice_ptr(op.out), n);
		out[n] = '\0';
	}
	mf_op_clear(&op);
	return r;
}

#define V(s) (s), strlen(s)

/* The value of k as a C string ("" if absent), into buf. */
static const char *val(mf_store *st, const char *k, char *buf, size_t cap)
{
	mf_entry_info e;
	buf[0] = '\0';
	if (mf_store_get(st, k, strlen(k), true, &e) != 0)
		return NULL;
	size_t n = e.val.len < cap - 1 ? e.val.len : cap - 1;
	memcpy(buf, mf_slice_ptr(e.val), n);
	buf[n] = '\0';
	mf_slice_unref(&e.val);
	return buf;
}

static int incrby(mf_store *st, const char *k, long long d, long long *res)
{
	uint64_t r = 0;
	int rc = op3(st, MF_OP_INCRBY, MF_T_STRING, k, NULL, NULL, 0, (uint64_t)d, &r, NULL, 0);
	*res = (long long)r;
	return rc;
}

static void test_incrby(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	char b[64];
	long long r;
	assert_int_equal(incrby(st, "c", 5, &r), 0); /* absent: from 0 */
	assert_int_equal(r, 5);
	assert_int_equal(incrby(st, "c", -7, &r), 0);
	assert_int_equal(r, -2);
	assert_string_equal(val(st, "c", b, sizeof b), "-2");
	/* The mount's newline is accepted and kept. */
	assert_int_equal(op3(st, MF_OP_SET, MF_T_STRING, "n", NULL, V("41\n"), 0, NULL, NULL, 0), 0);
	assert_int_equal(incrby(st, "n", 1, &r), 0);
	assert_string_equal(val(st, "n", b, sizeof b), "42\n");
	/* Not integers (Redis's string2ll): refused, value unchanged. */
	const char *bad[] = {"", "abc", "1.5", " 1", "1 ", "+1", "01", "-0", "-", "1\n\n",
	                     "99999999999999999999", "9223372036854775808", "\n"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		assert_int_equal(op3(st, MF_OP_SET, MF_T_STRING, "x", NULL, V(bad[i]), 0, NULL, NULL, 0), 0);
		assert_int_equal(incrby(st, "x", 1, &r), -EINVAL);
		assert_string_equal(val(st, "x", b, sizeof b), bad[i]);
	}
	/* The int64 edges. */
	assert_int_equal(op3(st, MF_OP_SET, MF_T_STRING, "m", NULL, V("9223372036854775806"), 0,
	                     NULL, NULL, 0), 0);
	assert_int_equal(incrby(st, "m", 1, &r), 0);
	assert_int_equal(r, LLONG_MAX);
	assert_int_equal(incrby(st, "m", 1, &r), -ERANGE);
	assert_string_equal(val(st, "m", b, sizeof b), "9223372036854775807");
	assert_int_equal(op3(st, MF_OP_SET, MF_T_STRING, "m", NULL, V("-9223372036854775808"), 0,
	                     NULL, NULL, 0), 0);
	assert_int_equal(incrby(st, "m", -1, &r), -ERANGE);
	assert_int_equal(incrby(st, "m", 0, &r), 0);
	assert_int_equal(r, LLONG_MIN);
	/* Another type: EEXIST; a counter op of another ktype: EINVAL. */
	assert_int_equal(op3(st, MF_OP_RPUSH, MF_T_LIST, "l", NULL, V("a\n"), 0, NULL, NULL, 0), 0);
	assert_int_equal(incrby(st, "l", 1, &r), -EEXIST);
	assert_int_equal(op3(st, MF_OP_INCRBY, MF_T_LIST, "l", NULL, NULL, 0, 1, NULL, NULL, 0),
	                 -EINVAL);
	mf_store_free(st);
}

static int incrf(mf_store *st, const char *k, const char *inc, char *out)
{
	return op3(st, MF_OP_INCRBYFLOAT, MF_T_STRING, k, NULL, V(inc), 0, NULL, out, 64);
}

static void test_incrbyfloat(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	char o[64], b[64];
	/* Redis's replies for these (redis-server 7.0). */
	assert_int_equal(incrf(st, "f", "10.5", o), 0);
	assert_string_equal(o, "10.5");
	assert_int_equal(incrf(st, "f", "0.1", o), 0);
	assert_string_equal(o, "10.6");
	assert_int_equal(incrf(st, "f", "-5", o), 0);
	assert_string_equal(o, "5.6");
	assert_int_equal(incrf(st, "f", "5.0e3", o), 0);
	assert_string_equal(o, "5005.60000000000000009"); /* long double, as Redis */
	assert_int_equal(incrf(st, "f", "-5005.6", o), 0);
	assert_string_equal(o, "0");
	assert_string_equal(val(st, "f", b, sizeof b), "0");
	/* Integer values work; the mount's newline is kept. */
	assert_int_equal(op3(st, MF_OP_SET, MF_T_STRING, "i", NULL, V("3\n"), 0, NULL, NULL, 0), 0);
	assert_int_equal(incrf(st, "i", "1.5", o), 0);
	assert_string_equal(o, "4.5\n");
	/* Not floats: the increment or the value. */
	assert_int_equal(incrf(st, "f", "abc", o), -EINVAL);
	assert_int_equal(incrf(st, "f", "", o), -EINVAL);
	assert_int_equal(incrf(st, "f", " 1", o), -EINVAL);
	assert_int_equal(incrf(st, "f", "nan", o), -EINVAL);
	assert_int_equal(incrf(st, "f", "1\n", o), -EINVAL);
	assert_int_equal(op3(st, MF_OP_SET, MF_T_STRING, "s", NULL, V("x1"), 0, NULL, NULL, 0), 0);
	assert_int_equal(incrf(st, "s", "1", o), -EINVAL);
	/* Infinity: ERANGE, unchanged. */
	assert_int_equal(incrf(st, "f", "inf", o), -ERANGE);
	assert_string_equal(val(st, "f", b, sizeof b), "0");
	mf_store_free(st);
}

/* Members of set k, sorted, joined by ',' (or NULL if absent). */
static int cmpstr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *members(mf_store *st, const char *k, char *buf, size_t cap)
{
	mf_entry_info e;
	if (mf_store_get(st, k, strlen(k), true, &e) != 0)
		return NULL;
	assert_int_equal(e.type, MF_T_SET);
	assert_int_equal(e.size, e.val.len);
	char *t = strndup(mf_slice_ptr(e.val), e.val.len);
	char *lines[256];
	size_t n = 0;
	for (char *s = t, *nl; *s; s = nl + 1) {
		nl = strchr(s, '\n');
		assert_non_null(nl); /* every member ends in '\n' */
		*nl = '\0';
		lines[n++] = s;
	}
	assert_int_equal(n, e.count);
	qsort(lines, n, sizeof *lines, cmpstr);
	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		if (i)
			strncat(buf, ",", cap - strlen(buf) - 1);
		strncat(buf, lines[i], cap - strlen(buf) - 1);
	}
	free(t);
	mf_slice_unref(&e.val);
	return buf;
}

static uint64_t sop(mf_store *st, int type, const char *k, const char *v, int want)
{
	uint64_t res = 0;
	assert_int_equal(op3(st, type, MF_T_SET, k, NULL, V(v), 0, &res, NULL, 0), want);
	return res;
}

static void test_sets(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	char b[256];
	assert_int_equal(sop(st, MF_OP_SADD, "s", "a\nb\na\n", 0), 2);
	assert_string_equal(members(st, "s", b, sizeof b), "a,b");
	assert_int_equal(sop(st, MF_OP_SADD, "s", "b\nc", 0), 1); /* unterminated last line */
	assert_string_equal(members(st, "s", b, sizeof b), "a,b,c");
	assert_int_equal(mf_store_set_has(st, V("s"), V("c")), 1);
	assert_int_equal(mf_store_set_has(st, V("s"), V("d")), 0);
	assert_int_equal(mf_store_set_has(st, V("nope"), V("d")), -ENOENT);
	assert_int_equal(sop(st, MF_OP_SREM, "s", "a\nzz\n", 0), 1);
	assert_string_equal(members(st, "s", b, sizeof b), "b,c");
	/* The empty member is a member (Redis allows ""). */
	assert_int_equal(sop(st, MF_OP_SADD, "s", "\n", 0), 1);
	assert_string_equal(members(st, "s", b, sizeof b), ",b,c");
	/* SET replaces (dropping duplicates), TRUNCATE empties. */
	assert_int_equal(op3(st, MF_OP_SET, MF_T_SET, "s", NULL, V("x\ny\nx\n"), 0, NULL, NULL, 0), 0);
	assert_string_equal(members(st, "s", b, sizeof b), "x,y");
	assert_int_equal(op3(st, MF_OP_TRUNCATE, MF_T_SET, "s", NULL, NULL, 0, 0, NULL, NULL, 0), 0);
	assert_string_equal(members(st, "s", b, sizeof b), "");
	assert_int_equal(op3(st, MF_OP_TRUNCATE, MF_T_SET, "s", NULL, NULL, 0, 3, NULL, NULL, 0),
	                 -EINVAL);
	/* SREM of the last member deletes the key (Redis has no empty sets). */
	assert_int_equal(sop(st, MF_OP_SADD, "s", "only\n", 0), 1);
	assert_int_equal(sop(st, MF_OP_SREM, "s", "only\n", 0), 1);
	assert_null(members(st, "s", b, sizeof b));
	assert_int_equal(sop(st, MF_OP_SREM, "s", "only\n", -ENOENT), 0);
	/* Types: a set op on a string, a string op on a set. */
	assert_int_equal(op3(st, MF_OP_SET, MF_T_STRING, "str", NULL, V("v"), 0, NULL, NULL, 0), 0);
	sop(st, MF_OP_SADD, "str", "a\n", -EEXIST);
	sop(st, MF_OP_SREM, "str", "a\n", -EEXIST);
	sop(st, MF_OP_SADD, "s2", "a\n", 0);
	assert_int_equal(op3(st, MF_OP_APPEND, MF_T_SET, "s2", NULL, V("b"), 0, NULL, NULL, 0), -EINVAL);
	assert_int_equal(op3(st, MF_OP_APPEND, MF_T_STRING, "s2", NULL, V("b"), 0, NULL, NULL, 0),
	                 -EEXIST);
	sop(st, MF_OP_SADD, "s2", "", -EINVAL);
	/* Stats: per type and bytes. */
	mf_store_stats ss;
	mf_store_stats_get(st, &ss);
	assert_int_equal(ss.keys[MF_T_SET], 1);
	assert_int_equal(ss.keys[0], 2);
	assert_int_equal(ss.value_bytes, 1 + 2);
	mf_store_free(st);
}

static void test_smove(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	char b[256];
	uint64_t res;
	sop(st, MF_OP_SADD, "a", "x\ny\n", 0);
	assert_int_equal(op3(st, MF_OP_SMOVE, MF_T_SET, "a", "b", V("x"), 0, &res, NULL, 0), 0);
	assert_int_equal(res, 1);
	assert_string_equal(members(st, "a", b, sizeof b), "y");
	assert_string_equal(members(st, "b", b, sizeof b), "x");
	/* Not a member: 0, nothing changes. */
	assert_int_equal(op3(st, MF_OP_SMOVE, MF_T_SET, "a", "b", V("q"), 0, &res, NULL, 0), 0);
	assert_int_equal(res, 0);
	/* Same key: 1 if a member, no change. */
	assert_int_equal(op3(st, MF_OP_SMOVE, MF_T_SET, "a", "a", V("y"), 0, &res, NULL, 0), 0);
	assert_int_equal(res, 1);
	assert_string_equal(members(st, "a", b, sizeof b), "y");
	/* Moving the last member deletes the source. */
	assert_int_equal(op3(st, MF_OP_SMOVE, MF_T_SET, "a", "b", V("y"), 0, &res, NULL, 0), 0);
	assert_null(members(st, "a", b, sizeof b));
	assert_string_equal(members(st, "b", b, sizeof b), "x,y");
	/* Errors: absent source, wrong-type destination, a newline. */
	assert_int_equal(op3(st, MF_OP_SMOVE, MF_T_SET, "a", "b", V("y"), 0, NULL, NULL, 0), -ENOENT);
	assert_int_equal(op3(st, MF_OP_SET, MF_T_STRING, "str", NULL, V("v"), 0, NULL, NULL, 0), 0);
	assert_int_equal(op3(st, MF_OP_SMOVE, MF_T_SET, "b", "str", V("y"), 0, NULL, NULL, 0), -EEXIST);
	assert_int_equal(op3(st, MF_OP_SMOVE, MF_T_SET, "b", "c", V("y\n"), 0, NULL, NULL, 0), -EINVAL);
	assert_string_equal(members(st, "b", b, sizeof b), "x,y");
	mf_store_free(st);
}

/* A set's text survives export/load (a snapshot), rename and delete. */
static void test_set_export_load(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	char b[256];
	sop(st, MF_OP_SADD, "s", "a\nb\nc\n", 0);
	sop(st, MF_OP_SREM, "s", "b\n", 0); /* text dropped, made at export */
	mf_item *items;
	uint64_t lsn;
	size_t n = mf_store_export(st, &items, &lsn);
	assert_int_equal(n, 1);
	mf_store *st2 = mf_store_new();
	assert_int_equal(mf_store_load_item(st2, &items[0]), 0);
	mf_store_items_free(items, n);
	assert_string_equal(members(st2, "s", b, sizeof b), "a,c");
	/* A snapshot item with duplicates and no final newline still loads. */
	mf_item it = {sl(V("t")), MF_T_SET, sl(V("q\nq\nr")), 5, 5, 0, MF_MODE_DEFAULT, MF_ID_DEFAULT, MF_ID_DEFAULT, 5};
	assert_int_equal(mf_store_load_item(st2, &it), 0);
	assert_null(it.key.buf); /* taken over */
	assert_string_equal(members(st2, "t", b, sizeof b), "q,r");
	assert_int_equal(op3(st2, MF_OP_RENAME, MF_T_SET, "t", "u", NULL, 0, 0, NULL, NULL, 0), 0);
	assert_string_equal(members(st2, "u", b, sizeof b), "q,r");
	assert_int_equal(mf_store_set_has(st2, V("u"), V("q")), 1);
	assert_int_equal(op3(st2, MF_OP_DEL, MF_T_SET, "u", NULL, NULL, 0, 0, NULL, NULL, 0), 0);
	mf_store_stats ss;
	mf_store_stats_get(st2, &ss);
	assert_int_equal(ss.value_bytes, 4);
	mf_store_free(st);
	mf_store_free(st2);
}

/* Seeded random SADD/SREM/SMOVE/SET/DEL against a bitmask model of 3 sets
 * over 40 members. */
static void test_sets_random(void **state)
{
	(void)state;
	uint64_t seed = (uint64_t)time(NULL);
	const char *env = getenv("MEMFLUX_SEED");
	if (env)
		seed = strtoull(env, NULL, 10);
	printf("test_sets_random seed %llu (MEMFLUX_SEED=...)\n", (unsigned long long)seed);
	srandom((unsigned)seed);
	mf_store *st = mf_store_new();
	uint64_t model[3] = {0};
	const char *names[3] = {"s0", "s1", "s2"};
	for (int i = 0; i < 20000; i++) {
		int k = (int)(random() % 3), k2 = (int)(random() % 3), kind = (int)(random() % 10);
		char v[512] = "";
		uint64_t mask = 0;
		int nm = 1 + (int)(random() % 4);
		for (int j = 0; j < nm; j++) {
			int m = (int)(random() % 40);
			mask |= 1ULL << m;
			snprintf(v + strlen(v), sizeof v - strlen(v), "m%d\n", m);
		}
		int m0 = (int)(random() % 40);
		char one[8];
		snprintf(one, sizeof one, "m%d", m0);
		uint64_t res;
		int r;
		if (kind < 4) {
			r = op3(st, MF_OP_SADD, MF_T_SET, names[k], NULL, V(v), 0, &res, NULL, 0);
			assert_int_equal(r, 0);
			assert_int_equal(res, (uint64_t)__builtin_popcountll(mask & ~model[k]));
			model[k] |= mask;
		} else if (kind < 7) {
			r = op3(st, MF_OP_SREM, MF_T_SET, names[k], NULL, V(v), 0, &res, NULL, 0);
			assert_int_equal(r, model[k] ? 0 : -ENOENT);
			if (r == 0)
				assert_int_equal(res, (uint64_t)__builtin_popcountll(mask & model[k]));
			model[k] &= ~mask;
		} else if (kind < 9) {
			r = op3(st, MF_OP_SMOVE, MF_T_SET, names[k], names[k2], V(one), 0, &res, NULL, 0);
			assert_int_equal(r, model[k] ? 0 : -ENOENT);
			bool in = model[k] >> m0 & 1;
			if (r == 0)
				assert_int_equal(res, in ? 1 : 0);
			if (r == 0 && in && k != k2) {
				model[k] &= ~(1ULL << m0);
				model[k2] |= 1ULL << m0;
			}
		} else {
			r = op3(st, MF_OP_SET, MF_T_SET, names[k], NULL, V(v), 0, NULL, NULL, 0);
			assert_int_equal(r, 0);
			model[k] = mask;
			/* SET of an empty set keeps the key: model it as present
			 * only through the bitmask; never empty here (nm >= 1). */
		}
		if (i % 97 == 0) {
			for (int s = 0; s < 3; s++) {
				mf_entry_info e;
				int g = mf_store_get(st, names[s], 2, i % 2 == 0, &e);
				assert_int_equal(g == 0, model[s] != 0);
				if (g == 0) {
					assert_int_equal(e.count, (uint64_t)__builtin_popcountll(model[s]));
					mf_slice_unref(&e.val);
				}
				for (int m = 0; m < 40; m++) {
					char mm[8];
					snprintf(mm, sizeof mm, "m%d", m);
					int h = mf_store_set_has(st, names[s], 2, mm, strlen(mm));
					assert_int_equal(h, model[s] ? (int)(model[s] >> m & 1) : -ENOENT);
				}
			}
		}
	}
	mf_store_free(st);
}

static void test_number_format(void **state)
{
	(void)state;
	char b[MF_NUM_LD_BUF];
	mf_num_format_ld(3.0L, b);
	assert_string_equal(b, "3");
	mf_num_format_ld(-0.0L, b);
	assert_string_equal(b, "0");
	mf_num_format_ld(1e20L, b);
	assert_string_equal(b, "100000000000000000000");
	mf_num_format_ld(0.1L, b);
	assert_string_equal(b, "0.1");
	long long v;
	bool nl;
	assert_int_equal(mf_num_parse_ll(V("-9223372036854775808"), &v, &nl), 0);
	assert_true(v == LLONG_MIN);
	assert_int_equal(mf_num_parse_ll(V("0"), &v, &nl), 0);
	assert_int_equal(mf_num_parse_ll(V("7\n"), &v, &nl), 0);
	assert_true(nl && v == 7);
}

static int jop(mf_store *st, int type, const char *k, const char *path, const char *v,
               uint64_t *res, char *out)
{
	return op3(st, type, MF_T_JSON, k, path, V(v), 0, res, out, out ? 64 : 0);
}

static void test_json_updates(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	char b[256], o[64];
	uint64_t res;
	assert_int_equal(op3(st, MF_OP_SET, MF_T_JSON, "d", NULL,
	                     V("{\"n\": 1, \"f\": 1.5, \"a\": [1, 2], \"e\": [ ], \"s\": \"h\\u00e9\"}"),
	                     0, NULL, NULL, 0), 0);
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.n", "41", NULL, o), 0);
	assert_string_equal(o, "42");
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.f", "1.5", NULL, o), 0);
	assert_string_equal(o, "3.0"); /* a float stays a float */
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.f", "0.1", NULL, o), 0);
	assert_string_equal(o, "3.1");
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.n", "9223372036854775807", NULL, o), 0);
	assert_string_equal(o, "9.223372036854776e+18"); /* past int64: a double */
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.n", "1e308", NULL, o), 0);
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.n", "1e308", NULL, o), -ERANGE);
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.s", "1", NULL, o), -EDOM);
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.zz", "1", NULL, o), -ENOENT);
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.n", "x", NULL, o), -EINVAL);
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$.n", "\"1\"", NULL, o), -EINVAL);
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "d", "$..n", "1", NULL, o), -EINVAL);
	assert_int_equal(jop(st, MF_OP_JSON_NUMINCRBY, "nodoc", "$.n", "1", NULL, o), -ENOENT);
	/* ARRAPPEND: the values come as one JSON array. */
	assert_int_equal(jop(st, MF_OP_JSON_ARRAPPEND, "d", "$.a", "[3, {\"x\":[]}]", &res, NULL), 0);
	assert_int_equal(res, 4);
	assert_int_equal(jop(st, MF_OP_JSON_ARRAPPEND, "d", "$.e", "[\"q\"]", &res, NULL), 0);
	assert_int_equal(res, 1);
	assert_int_equal(jop(st, MF_OP_JSON_ARRAPPEND, "d", "$.a[-1].x", "[true]", &res, NULL), 0);
	assert_int_equal(res, 1);
	assert_int_equal(jop(st, MF_OP_JSON_ARRAPPEND, "d", "$.s", "[1]", &res, NULL), -EDOM);
	assert_int_equal(jop(st, MF_OP_JSON_ARRAPPEND, "d", "$.a", "[]", &res, NULL), -EINVAL);
	assert_int_equal(jop(st, MF_OP_JSON_ARRAPPEND, "d", "$.a", "3", &res, NULL), -EINVAL);
	/* STRAPPEND: a JSON string; the length is in decoded bytes. */
	assert_int_equal(jop(st, MF_OP_JSON_STRAPPEND, "d", "$.s", "\"!\\n\"", &res, NULL), 0);
	assert_int_equal(res, 5); /* h, e-acute (2 bytes), !, newline */
	assert_int_equal(jop(st, MF_OP_JSON_STRAPPEND, "d", "$.n", "\"x\"", &res, NULL), -EDOM);
	assert_int_equal(jop(st, MF_OP_JSON_STRAPPEND, "d", "$.s", "x", &res, NULL), -EINVAL);
	assert_string_equal(val(st, "d", b, sizeof b),
	                    "{\"n\": 1e+308, \"f\": 3.1, \"a\": [1, 2,3, {\"x\":[true]}], "
	                    "\"e\": [\"q\" ], \"s\": \"h\\u00e9!\\n\"}");
	mf_store_free(st);
}

static void test_json_paths_multi(void **state)
{
	(void)state;
	const char *d = "{\"a\": [1, {\"b\": 2}, [3]], \"b\": {\"b\": 4}, \"c\": \"x\"}";
	size_t n = strlen(d), off, len;
	char *out;
	size_t ol;
	assert_int_equal(mf_json_get_path(d, n, V("$.a[-1]"), &off, &len), 0);
	assert_int_equal(len, 3);
	assert_int_equal(mf_json_get_path(d, n, V("$.a[-3]"), &off, &len), 0);
	assert_int_equal(mf_json_get_path(d, n, V("$.a[-4]"), &off, &len), -ENOENT);
	assert_int_equal(mf_json_get_path(d, n, V("$.a[*]"), &off, &len), -EINVAL);
	assert_int_equal(mf_json_path_multi(V("$.a[-1]")), 0);
	assert_int_equal(mf_json_path_multi(V("$..b")), 1);
	assert_int_equal(mf_json_path_multi(V("$.a[*]")), 1);
	struct { const char *path, *want; } q[] = {
		{"$.a[*]", "[1,{\"b\": 2},[3]]"},
		{"$..b", "[{\"b\": 4},2,4]"},
		{"$..b.b", "[4]"},
		{"$.*", "[[1, {\"b\": 2}, [3]],{\"b\": 4},\"x\"]"},
		{"$..[0]", "[1,3]"},
		{"$..[-1]", "[[3],3]"},
		{"$.a[*].b", "[2]"},
		{"$.zz[*]", "[]"},
		{"$.c", "[\"x\"]"},
	};
	for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
		assert_int_equal(mf_json_query(d, n, q[i].path, strlen(q[i].path), &out, &ol), 0);
		assert_string_equal(out, q[i].want);
		free(out);
	}
	assert_int_equal(mf_json_query(d, n, V("$.["), &out, &ol), -EINVAL);
	/* set and delete take negative indexes too */
	assert_int_equal(mf_json_set_path(d, n, V("$.a[-1]"), V("9"), &out, &ol), 0);
	assert_string_equal(out, "{\"a\": [1, {\"b\": 2}, 9], \"b\": {\"b\": 4}, \"c\": \"x\"}");
	free(out);
	assert_int_equal(mf_json_del_path(d, n, V("$.a[-2]"), &out, &ol), 0);
	assert_string_equal(out, "{\"a\": [1, [3]], \"b\": {\"b\": 4}, \"c\": \"x\"}");
	free(out);
}

static mf_op sub(int type, int ktype, const char *k, const char *k2, const char *v, uint64_t arg)
{
	mf_op o;
	memset(&o, 0, sizeof o);
	o.type = (uint8_t)type;
	o.ktype = (uint8_t)ktype;
	o.key = sl(k, strlen(k));
	if (k2)
		o.key2 = sl(k2, strlen(k2));
	if (v)
		o.val = sl(v, strlen(v));
	o.arg = arg;
	return o;
}

static void test_multi(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	char b[64];
	assert_int_equal(op3(st, MF_OP_RPUSH, MF_T_LIST, "l", NULL, V("x\n"), 0, NULL, NULL, 0), 0);
	mf_op subs[] = {
		sub(MF_OP_SET, MF_T_STRING, "a", NULL, "v", 0),
		sub(MF_OP_READ, MF_T_NONE, "a", NULL, NULL, 0),
		sub(MF_OP_INCRBY, MF_T_STRING, "a", NULL, NULL, 1),  /* not an integer: fails alone */
		sub(MF_OP_INCRBY, MF_T_STRING, "n", NULL, NULL, 5),
		sub(MF_OP_SET, MF_T_STRING, "l", NULL, "now a string", 1), /* Redis's SET: any type */
		sub(MF_OP_SADD, MF_T_SET, "s", NULL, "m\n", 0),
		sub(MF_OP_DEL, MF_T_NONE, "s", NULL, NULL, 0),       /* any type */
		sub(MF_OP_READ, MF_T_NONE, "s", NULL, NULL, 0),
		sub(MF_OP_LPOP, MF_T_LIST, "nolist", NULL, NULL, 1),
	};
	size_t n = sizeof subs / sizeof subs[0];
	mf_op op;
	memset(&op, 0, sizeof op);
	op.type = MF_OP_MULTI;
	op.val = mf_multi_encode(subs, n);
	for (size_t i = 0; i < n; i++)
		mf_op_clear(&subs[i]);
	assert_int_equal(mf_store_check(st, &op), 0);
	assert_int_equal(mf_store_apply(st, &op), 0);
	assert_int_equal(op.nsub, n);
	assert_int_equal(op.sub[0].rc, 0);
	assert_int_equal(op.sub[1].rc, 0);
	assert_int_equal(op.sub[1].type, MF_T_STRING);
	assert_int_equal(op.sub[1].out.len, 1);
	assert_int_equal(op.sub[2].rc, -EINVAL);
	assert_int_equal(op.sub[3].rc, 0);
	assert_int_equal(op.sub[3].res, 5);
	assert_int_equal(op.sub[4].rc, 0);
	assert_int_equal(op.sub[5].res, 1);
	assert_int_equal(op.sub[6].rc, 0);
	assert_int_equal(op.sub[7].rc, -ENOENT);
	assert_int_equal(op.sub[8].rc, -ENOENT);
	mf_op_clear(&op);
	assert_string_equal(val(st, "a", b, sizeof b), "v");
	assert_string_equal(val(st, "n", b, sizeof b), "5");
	assert_string_equal(val(st, "l", b, sizeof b), "now a string");
	assert_null(val(st, "s", b, sizeof b));
	/* Outside a MULTI those rules do not hold; a malformed or nested
	 * payload is refused before anything is logged. */
	assert_int_equal(op3(st, MF_OP_DEL, MF_T_NONE, "a", NULL, NULL, 0, 0, NULL, NULL, 0), -EINVAL);
	assert_int_equal(op3(st, MF_OP_SET, MF_T_LIST, "a", NULL, V("x\n"), 1, NULL, NULL, 0), -EEXIST);
	assert_int_equal(op3(st, MF_OP_READ, MF_T_NONE, "a", NULL, NULL, 0, 0, NULL, NULL, 0), -EINVAL);
	memset(&op, 0, sizeof op);
	op.type = MF_OP_MULTI;
	op.val = sl("junk", 4);
	assert_int_equal(mf_store_check(st, &op), -EINVAL);
	assert_int_equal(mf_store_apply(st, &op), -EINVAL);
	mf_op_clear(&op);
	mf_op inner = {0};
	inner.type = MF_OP_MULTI;
	memset(&op, 0, sizeof op);
	op.type = MF_OP_MULTI;
	op.val = mf_multi_encode(&inner, 1);
	assert_int_equal(mf_store_check(st, &op), -EINVAL);
	mf_op_clear(&op);
	mf_store_free(st);
}

/* An op at time t (ns). */
static int opt(mf_store *st, int type, int ktype, const char *k, const char *v, uint64_t arg,
               int64_t t, uint64_t *res)
{
	mf_op op;
	memset(&op, 0, sizeof op);
	op.type = (uint8_t)type;
	op.ktype = (uint8_t)ktype;
	op.key = sl(k, strlen(k));
	if (v)
		op.val = sl(v, strlen(v));
	op.arg = arg;
	op.time_ns = t;
	int c = mf_store_check(st, &op);
	int r = mf_store_apply(st, &op);
	assert_int_equal(c, r);
	if (res)
		*res = op.res;
	mf_op_clear(&op);
	return r;
}

static void test_expiry(void **state)
{
	(void)state;
	mf_store *st = mf_store_new();
	int64_t now = (int64_t)time(NULL) * 1000000000, s = 1000000000;
	uint64_t res;
	mf_entry_info e;
	char b[64];
	assert_int_equal(opt(st, MF_OP_SET, MF_T_STRING, "k", "v", 0, now, NULL), 0);
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "k", NULL, (uint64_t)(now + 100 * s), now,
	                     &res), 0);
	assert_int_equal(res, 1);
	assert_int_equal(mf_store_get(st, V("k"), false, &e), 0);
	assert_true(e.expire_ns == now + 100 * s);
	mf_store_stats ss;
	mf_store_stats_get(st, &ss);
	assert_int_equal(ss.expires, 1);
	/* Ops keep it (APPEND), SET drops it, PERSIST clears it. */
	assert_int_equal(opt(st, MF_OP_APPEND, MF_T_STRING, "k", "w", 0, now, NULL), 0);
	assert_int_equal(mf_store_get(st, V("k"), false, &e), 0);
	assert_true(e.expire_ns == now + 100 * s);
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "k", NULL, 0, now, &res), 0);
	assert_int_equal(res, 1);
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "k", NULL, 0, now, &res), 0);
	assert_int_equal(res, 0); /* PERSIST of a key without one */
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "k", NULL, (uint64_t)(now + s), now, NULL), 0);
	assert_int_equal(opt(st, MF_OP_SET, MF_T_STRING, "k", "v2", 0, now, NULL), 0);
	assert_int_equal(mf_store_get(st, V("k"), false, &e), 0);
	assert_true(e.expire_ns == 0);
	/* An op after the expiry sees no key (deterministic: its own time). */
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "k", NULL, (uint64_t)(now + s), now, NULL), 0);
	assert_int_equal(opt(st, MF_OP_INCRBY, MF_T_STRING, "k", NULL, 5, now + 2 * s, &res), 0);
	assert_int_equal(res, 5); /* from 0: the old "v2" had expired */
	mf_store_stats_get(st, &ss);
	assert_int_equal(ss.expired, 1);
	assert_int_equal(ss.expires, 0);
	/* Readers: a key past its expiry (wall clock) is gone at once. */
	assert_int_equal(opt(st, MF_OP_SET, MF_T_STRING, "old", "x", 0, now - 10 * s, NULL), 0);
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "old", NULL, (uint64_t)(now - 5 * s),
	                     now - 10 * s, NULL), 0);
	assert_int_equal(mf_store_get(st, V("old"), false, &e), -ENOENT);
	mf_slice *keys;
	size_t nk = mf_store_keys(st, MF_T_NONE, &keys);
	for (size_t i = 0; i < nk; i++) {
		assert_false(keys[i].len == 3 && memcmp(mf_slice_ptr(keys[i]), "old", 3) == 0);
		mf_slice_unref(&keys[i]);
	}
	free(keys);
	mf_item *items;
	uint64_t lsn;
	size_t ni = mf_store_export(st, &items, &lsn);
	assert_int_equal(ni, 1); /* "k" only */
	mf_store_items_free(items, ni);
	/* The active cycle: sample, then EXPIRED deletes (only if still due). */
	mf_slice due[8];
	assert_int_equal(mf_store_expired_sample(st, now, due, 8), 1);
	assert_int_equal(opt(st, MF_OP_EXPIRED, MF_T_NONE, "old", NULL, 0, now, &res), 0);
	assert_int_equal(res, 1);
	mf_slice_unref(&due[0]);
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "k", NULL, (uint64_t)(now + 50 * s), now, NULL), 0);
	assert_int_equal(opt(st, MF_OP_EXPIRED, MF_T_NONE, "k", NULL, 0, now, &res), 0);
	assert_int_equal(res, 0); /* not due: kept */
	assert_int_equal(mf_store_get(st, V("k"), false, &e), 0);
	assert_int_equal(mf_store_expired_sample(st, now, due, 8), 0);
	/* An expiry in the past deletes (Redis's EXPIRE k -1); errors. */
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "k", NULL, (uint64_t)(now - s), now, &res), 0);
	assert_int_equal(mf_store_get(st, V("k"), false, &e), -ENOENT);
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "k", NULL, 1, now, NULL), -ENOENT);
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_STRING, "k", NULL, 1, now, NULL), -EINVAL);
	/* RENAME moves it; export/load keeps it; DEL and FLUSH drop the ring. */
	assert_int_equal(opt(st, MF_OP_RPUSH, MF_T_LIST, "l", "a\n", 0, now, NULL), 0);
	assert_int_equal(opt(st, MF_OP_EXPIRE, MF_T_NONE, "l", NULL, (uint64_t)(now + 9 * s), now, NULL), 0);
	mf_op rn;
	memset(&rn, 0, sizeof rn);
	rn.type = MF_OP_RENAME;
	rn.ktype = MF_T_LIST;
	rn.key = sl(V("l"));
	rn.key2 = sl(V("l2"));
	rn.time_ns = now;
	assert_int_equal(mf_store_apply(st, &rn), 0);
	mf_op_clear(&rn);
	assert_int_equal(mf_store_get(st, V("l2"), false, &e), 0);
	assert_true(e.expire_ns == now + 9 * s);
	ni = mf_store_export(st, &items, &lsn);
	mf_store *st2 = mf_store_new();
	for (size_t i = 0; i < ni; i++)
		assert_int_equal(mf_store_load_item(st2, &items[i]), 0);
	mf_store_items_free(items, ni);
	assert_int_equal(mf_store_get(st2, V("l2"), false, &e), 0);
	assert_true(e.expire_ns == now + 9 * s);
	mf_store_free(st2);
	assert_int_equal(opt(st, MF_OP_DEL, MF_T_LIST, "l2", NULL, 0, now, NULL), 0);
	mf_store_stats_get(st, &ss);
	assert_int_equal(ss.expires, 0);
	(void)b;
	mf_store_free(st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_incrby),
		cmocka_unit_test(test_incrbyfloat),
		cmocka_unit_test(test_number_format),
		cmocka_unit_test(test_sets),
		cmocka_unit_test(test_smove),
		cmocka_unit_test(test_set_export_load),
		cmocka_unit_test(test_sets_random),
		cmocka_unit_test(test_json_updates),
		cmocka_unit_test(test_json_paths_multi),
		cmocka_unit_test(test_multi),
		cmocka_unit_test(test_expiry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
