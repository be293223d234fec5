/*
 * test_json.c — strict validator and path get/set (store/json.c).
 *
 * Needs only json.h, so it links standalone against json.c.  Every document
 * under test is copied into an exact-size heap buffer first, so under ASan a
 * read past n (json.c must never rely on a NUL terminator) is caught.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "json.h"

/* Exact-size copy: no NUL after the last byte. */
static char *dup_exact(const char *s, size_t n)
{
	char *p = malloc(n ? n : 1);

	assert_non_null(p);
	if (n)
		memcpy(p, s, n);
	return p;
}

static int validate_exact(const char *s, size_t n, size_t *off, const char **why)
{
	char *p = dup_exact(s, n);
	int rc = mf_json_validate(p, n, off, why);

	free(p);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Validator table                                                     */
/* ------------------------------------------------------------------ */

typedef struct vcase {
	const char *s;
	size_t len;
	int ok;
	long off;        /* expected error offset, -1 = not checked */
	const char *why; /* expected reason, NULL = not checked */
} vcase;

/* sizeof on a literal keeps embedded NULs. */
#define OK(s) { s, sizeof(s) - 1, 1, -1, NULL }
#define BAD(s, off) { s, sizeof(s) - 1, 0, off, NULL }
#define BADW(s, off, why) { s, sizeof(s) - 1, 0, off, why }

static const vcase cases[] = {
	/* ---- valid: numbers ---- */
	OK("0"),
	OK("-0"),
	OK("0.5"),
	OK("1e5"),
	OK("1E+5"),
	OK("-0.0e-1"),
	OK("123"),
	OK("-123456789012345678901234567890"),
	OK("1.5E-10"),
	OK("0e0"),
	OK("1e-0"),
	OK("-0E-0"),
	OK("1E400"),
	OK("[-1.0e+2, 0.0, 1E-2, 10, 9]"),
	/* ---- valid: literals ---- */
	OK("true"),
	OK("false"),
	OK("null"),
	OK("[true,false,null]"),
	/* ---- valid: strings ---- */
	OK("\"\""),
	OK("\"abc\""),
	OK("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""),
	OK("\"\\u0041\\u00e9\\u00E9\""),
	OK("\"\\uD834\\uDD1E\""),        /* surrogate pair */
	OK("\"\\uD800\""),                /* lone high surrogate: accepted */
	OK("\"\\uDC00\""),                /* lone low surrogate: accepted */
	OK("\"\\uDBFF\\uDBFF\""),        /* two highs */
	OK("\"\\uFFFF\""),
	OK("\"\\u0000\""),
	OK("\"/\""),
	OK("\"a\\\"b\""),
	OK("\"  \""),
	OK("\"\x7f\""),                   /* DEL is not a control char in JSON */
	/* ---- valid: UTF-8 ---- */
	OK("\"\xC3\xA9\""),               /* U+00E9 */
	OK("\"\xC2\x80\""),               /* U+0080, lowest 2-byte */
	OK("\"\xDF\xBF\""),               /* U+07FF */
	OK("\"\xE0\xA0\x80\""),           /* U+0800, lowest 3-byte */
	OK("\"\xE2\x82\xAC\""),           /* U+20AC */
	OK("\"\xED\x9F\xBF\""),           /* U+D7FF, just below surrogates */
	OK("\"\xEE\x80\x80\""),           /* U+E000, just above */
	OK("\"\xEF\xBF\xBF\""),           /* U+FFFF */
	OK("\"\xF0\x90\x80\x80\""),       /* U+10000, lowest 4-byte */
	OK("\"\xF0\x9F\x98\x80\""),       /* U+1F600 */
	OK("\"\xF4\x8F\xBF\xBF\""),       /* U+10FFFF, the maximum */
	/* ---- valid: containers ---- */
	OK("[]"),
	OK("{}"),
	OK("[ ]"),
	OK("{ }"),
	OK(" \t\n\r[1] \t\n\r"),
	OK("  \"x\"  "),
	OK("[1,2,3]"),
	OK("[1, \"a\", true, false, null, {}, []]"),
	OK("{\"a\":1}"),
	OK("{\"a\":{\"b\":{\"c\":[1,2,{\"d\":null}]}}}"),
	OK("{\"a\":1,\"a\":2}"),          /* duplicates are legal JSON */
	OK("{\"\":0}"),
	OK("{\n  \"k\": [\n    1,\n    2\n  ],\n  \"m\": {}\n}\n"),
	OK("[[[]]]"),
	OK("[{\"a\":[{\"b\":[]}]}]"),
	OK("{\"a\" : 1 , \"b\" : [ 1 , 2 ] }"),
	OK("{\"\\u0000\":\"\\u001f\"}"),
	OK("[\"\"]"),
	OK("{\"key with spaces\":\"value\"}"),
	OK("[0]"),

	/* ---- invalid: empty / whitespace / BOM ---- */
	BADW("", 0, "empty document"),
	BADW("   ", 3, "empty document"),
	BADW("\t\n\r ", 4, "empty document"),
	BADW("\xEF\xBB\xBF{}", 0, "byte order mark not allowed"),
	BADW("\xEF\xBB\xBF", 0, "byte order mark not allowed"),
	/* ---- invalid: what jsmn alone would accept (see store/json.h) ---- */
	BADW("tru", 0, "invalid literal"),
	BADW("01", 0, "leading zero"),
	BADW("1.2.3", 3, "invalid number"),
	BADW("[thanx]", 1, "invalid literal"),
	BADW("\"a\tb\"", 2, "control character in string"),
	BADW("\"a\nb\"", 2, "control character in string"),
	BADW("{\"a\"}", 4, "expected ':'"),
	BADW("{\"a\":1,}", 6, "trailing comma"),
	BADW("{,}", 1, "expected member name"),
	BADW("1 2", 2, "unexpected data after value"),
	BADW("{}{}", 2, "unexpected data after value"),
	BADW("[1] [2]", 4, "unexpected data after value"),
	/* ---- invalid: commas ---- */
	BADW("[1,]", 2, "trailing comma"),
	BADW("[1,2,]", 4, "trailing comma"),
	BADW("[1, 2, 3,  ]", 8, "trailing comma"),
	BADW("[\"a\",]", 4, "trailing comma"),
	BADW("{\"a\":[1,2,]}", 9, "trailing comma"),
	BADW("[,]", 1, "expected value"),
	BADW("[1,,2]", 3, "expected value"),
	BADW("[,1]", 1, "expected value"),
	/* ---- invalid: numbers ---- */
	BADW("-01", 1, "leading zero"),
	BADW("00", 0, "leading zero"),
	BADW("[01]", 1, "leading zero"),
	BADW("-", 1, "invalid number"),
	BADW("1.", 2, "invalid number"),
	BADW(".5", 0, "unexpected character"),
	BADW("+1", 0, "unexpected character"),
	BADW("1e", 2, "invalid number"),
	BADW("1e+", 3, "invalid number"),
	BADW("1.e5", 2, "invalid number"),
	BADW("0x10", 1, "invalid number"),
	BADW("1e5e5", 3, "invalid number"),
	BADW("1.5.", 3, "invalid number"),
	BADW("123abc", 3, "invalid number"),
	BADW("-a", 1, "invalid number"),
	BADW("--1", 1, "invalid number"),
	BADW("- 1", 1, "invalid number"),
	BADW("-Infinity", 1, "invalid number"),
	BAD("[1true]", 2),
	/* ---- invalid: bare words ---- */
	BADW("NaN", 0, "invalid literal"),
	BADW("Infinity", 0, "invalid literal"),
	BADW("True", 0, "invalid literal"),
	BADW("nul", 0, "invalid literal"),
	BADW("truefalse", 0, "invalid literal"),
	BADW("[null, nil]", 7, "invalid literal"),
	BADW("{\"a\":truth}", 5, "invalid literal"),
	BADW("undefined", 0, "invalid literal"),
	/* ---- invalid: structure ---- */
	BADW("[true false]", 6, "expected ',' or ']'"),
	BADW("{\"a\":1 \"b\":2}", 7, "expected ',' or '}'"),
	BADW("[", 1, "unexpected end of input"),
	BADW("{", 1, "unexpected end of input"),
	BADW("{\"a\":", 5, "unexpected end of input"),
	BADW("{\"a\"", 4, "unexpected end of input"),
	BADW("[1", 2, "unexpected end of input"),
	BADW("[1,", 3, "unexpected end of input"),
	BADW("]", 0, "expected value"),
	BADW("[1]]", 3, "unexpected data after value"),
	BADW("[1}", 2, "mismatched bracket"),
	BADW("{\"a\":1]", 6, "mismatched bracket"),
	BADW("{1:2}", 1, "expected member name"),
	BADW("{\"a\":1,\"b\"}", 10, "expected ':'"),
	BADW("{\"a\"::1}", 5, "expected value"),
	BADW("{\"a\" 1}", 5, "expected ':'"),
	BADW("[1:2]", 2, "expected ',' or ']'"),
	BADW("{\"a\":1,,\"b\":2}", 7, "expected member name"),
	BADW("\"abc\"def\"", 5, "unexpected data after value"),
	BADW("{\"a\":1}x", 7, "unexpected data after value"),
	/* ---- invalid: quotes and comments ---- */
	BADW("'a'", 0, "single quotes not allowed"),
	BADW("{'a':1}", 1, "single quotes not allowed"),
	BADW("[1] // c", 4, "comments not allowed"),
	BADW("/* c */ 1", 0, "comments not allowed"),
	BADW("[1 /* c */]", 3, "comments not allowed"),
	/* ---- invalid: bytes that are not JSON whitespace ---- */
	BADW("\0", 0, "unexpected character"),
	BADW("\f1", 0, "unexpected character"),
	BADW("\v[]", 0, "unexpected character"),
	BADW("\xC2\xA0[]", 0, "unexpected character"),  /* NBSP */
	BADW("[1]\0", 3, "unexpected data after value"),
	BADW("\xC3\xA9", 0, "unexpected character"),     /* non-ASCII outside a string */
	/* ---- invalid: strings and escapes ---- */
	BADW("\"abc", 4, "unterminated string"),
	BADW("\"\\", 2, "unterminated string"),
	BADW("\"\\u00", 5, "unterminated string"),
	BADW("\"\\x\"", 1, "invalid escape"),
	BADW("\"\\U0041\"", 1, "invalid escape"),
	BADW("\"\\'\"", 1, "invalid escape"),
	BADW("\"\\a\"", 1, "invalid escape"),
	BADW("\"\\u12\"", 1, "invalid \\u escape"),
	BADW("\"\\uZZZZ\"", 1, "invalid \\u escape"),
	BADW("\"ab\\u12G4\"", 3, "invalid \\u escape"),
	BADW("\"a\0b\"", 2, "control character in string"),
	BADW("\"\x1f\"", 1, "control character in string"),
	BADW("\"\r\"", 1, "control character in string"),
	BADW("{\"k\x01\":1}", 3, "control character in string"),
	/* ---- invalid: UTF-8 ---- */
	BADW("\"\x80\"", 1, "unexpected UTF-8 continuation byte"),
	BADW("\"\xBF\"", 1, "unexpected UTF-8 continuation byte"),
	BADW("\"\xC0\xAF\"", 1, "overlong UTF-8 encoding"),
	BADW("\"\xC1\xBF\"", 1, "overlong UTF-8 encoding"),
	BADW("\"\xE0\x80\xAF\"", 1, "overlong UTF-8 encoding"),
	BADW("\"\xE0\x9F\xBF\"", 1, "overlong UTF-8 encoding"),
	BADW("\"\xF0\x80\x80\xAF\"", 1, "overlong UTF-8 encoding"),
	BADW("\"\xF0\x8F\xBF\xBF\"", 1, "overlong UTF-8 encoding"),
	BADW("\"\xED\xA0\x80\"", 1, "UTF-8-encoded surrogate"),
	BADW("\"\xED\xBF\xBF\"", 1, "UTF-8-encoded surrogate"),
	BADW("\"ab\xED\xB0\x80\"", 3, "UTF-8-encoded surrogate"),
	BADW("\"\xF4\x90\x80\x80\"", 1, "UTF-8 code point above U+10FFFF"),
	BADW("\"\xF5\x80\x80\x80\"", 1, "UTF-8 code point above U+10FFFF"),
	BADW("\"\xF7\xBF\xBF\xBF\"", 1, "UTF-8 code point above U+10FFFF"),
	BADW("\"\xF8\x88\x80\x80\x80\"", 1, "invalid UTF-8 lead byte"),
	BADW("\"\xFF\"", 1, "invalid UTF-8 lead byte"),
	BADW("\"\xFE\"", 1, "invalid UTF-8 lead byte"),
	BADW("\"\xC3\"", 1, "truncated UTF-8 sequence"),
	BADW("\"\xE2\x82\"", 1, "truncated UTF-8 sequence"),
	BADW("\"\xF0\x9F\x98\"", 1, "truncated UTF-8 sequence"),
	BADW("\"\xC3", 1, "truncated UTF-8 sequence"),
	BADW("\"\xF0\x9F", 1, "truncated UTF-8 sequence"),
	BADW("\"\xE2\x82x\"", 1, "truncated UTF-8 sequence"),
	BADW("\"\xC3\xA9\xA9\"", 3, "unexpected UTF-8 continuation byte"),
};

static void test_table(void **state)
{
	size_t i, nvalid = 0, ninvalid = 0, nwithoff = 0;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const vcase *c = &cases[i];
		size_t off = (size_t)-1;
		const char *why = NULL;
		int rc = validate_exact(c->s, c->len, &off, &why);

		if (c->ok) {
			nvalid++;
			if (rc != 0)
				fail_msg("case %zu should be valid: rc %d at %zu (%s)",
					 i, rc, off, why ? why : "?");
			continue;
		}
		ninvalid++;
		if (rc != -EINVAL)
			fail_msg("case %zu should be invalid, rc %d", i, rc);
		assert_non_null(why);
		assert_true(off <= c->len);
		if (c->off >= 0) {
			nwithoff++;
			if (off != (size_t)c->off)
				fail_msg("case %zu: offset %zu, want %ld (%s)", i, off,
					 c->off, why);
		}
		if (c->why && strcmp(why, c->why) != 0)
			fail_msg("case %zu: why \"%s\", want \"%s\"", i, why, c->why);
	}
	/* The brief asks for at least 50 valid / 60 invalid cases. */
	assert_true(nvalid >= 50);
	assert_true(ninvalid >= 60);
	assert_true(nwithoff >= 60);
}

static void test_null_args(void **state)
{
	size_t off = 99;
	const char *why = NULL;

	(void)state;
	/* err_off/why are optional. */
	assert_int_equal(mf_json_validate("[1,]", 4, NULL, NULL), -EINVAL);
	assert_int_equal(mf_json_validate("[1]", 3, NULL, NULL), 0);
	/* Empty input with a NULL pointer is just an empty document. */
	assert_int_equal(mf_json_validate(NULL, 0, &off, &why), -EINVAL);
	assert_int_equal(off, 0);
	assert_string_equal(why, "empty document");
	/* Length, not NUL, ends the document. */
	assert_int_equal(mf_json_validate("[1]garbage", 3, NULL, NULL), 0);
	assert_int_equal(mf_json_validate("truex", 4, NULL, NULL), 0);
}

/* ------------------------------------------------------------------ */
/* Depth                                                               */
/* ------------------------------------------------------------------ */

static char *nest(size_t depth, const char *open, const char *mid, const char *close,
		  size_t *len)
{
	size_t lo = strlen(open), lm = strlen(mid), lc = strlen(close);
	size_t n = depth * (lo + lc) + lm, i;
	char *p = malloc(n), *w = p;

	assert_non_null(p);
	for (i = 0; i < depth; i++, w += lo)
		memcpy(w, open, lo);
	memcpy(w, mid, lm);
	w += lm;
	for (i = 0; i < depth; i++, w += lc)
		memcpy(w, close, lc);
	*len = n;
	return p;
}

static void test_depth(void **state)
{
	size_t n, off;
	const char *why;
	char *p;

	(void)state;
	assert_int_equal(MF_JSON_MAX_DEPTH, 512);

	p = nest(512, "[", "", "]", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), 0);
	free(p);

	p = nest(513, "[", "", "]", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), -EINVAL);
	assert_int_equal(off, 512);
	assert_string_equal(why, "nesting too deep");
	free(p);

	p = nest(512, "{\"a\":", "1", "}", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), 0);
	free(p);

	p = nest(513, "{\"a\":", "1", "}", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), -EINVAL);
	assert_int_equal(off, 512 * 5);
	assert_string_equal(why, "nesting too deep");
	free(p);

	/* Mixed, with whitespace, exactly at the limit. */
	p = nest(256, "[ {\"k\" : ", "null", "} ]", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), 0);
	free(p);

	/* Scalars do not count toward depth. */
	p = nest(512, "[", "\"deep\"", "]", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), 0);
	free(p);

	/* 512 unclosed: depth is fine, input just ends. */
	p = nest(512, "[", "", "", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), -EINVAL);
	assert_int_equal(off, 512);
	assert_string_equal(why, "unexpected end of input");
	free(p);
}

static void test_depth_100k(void **state)
{
	size_t n, off;
	const char *why;
	char *p;

	(void)state;
	/* Must neither recurse 100k deep nor crash. */
	p = nest(100000, "[", "", "", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), -EINVAL);
	assert_int_equal(off, 512);
	assert_string_equal(why, "nesting too deep");
	free(p);

	p = nest(100000, "[", "", "]", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), -EINVAL);
	assert_int_equal(off, 512);
	free(p);

	p = nest(100000, "{\"a\":", "", "", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), -EINVAL);
	assert_int_equal(off, 512 * 5);
	free(p);

	/* 100k closing brackets alone. */
	p = nest(100000, "", "", "]", &n);
	assert_int_equal(mf_json_validate(p, n, &off, &why), -EINVAL);
	assert_int_equal(off, 0);
	free(p);
}

/* ------------------------------------------------------------------ */
/* Path get                                                            */
/* ------------------------------------------------------------------ */

/* get on an exact-size copy; returns rc and the value text in buf. */
static int get(const char *doc, const char *path, char *buf, size_t bufsz)
{
	size_t n = strlen(doc), off = 0, len = 0;
	char *d = dup_exact(doc, n);
	int rc = mf_json_get_path(d, n, path, strlen(path), &off, &len);

	buf[0] = '\0';
	if (rc == 0) {
		assert_true(off <= n && len <= n - off);
		assert_true(len < bufsz);
		memcpy(buf, d + off, len);
		buf[len] = '\0';
		/* Whatever get returns is itself one JSON value. */
		assert_int_equal(mf_json_validate(d + off, len, NULL, NULL), 0);
	}
	free(d);
	return rc;
}

#define ASSERT_GET(doc, path, want)                                          \
	do {                                                                  \
		char b_[256];                                                 \
		assert_int_equal(get(doc, path, b_, sizeof(b_)), 0);          \
		assert_string_equal(b_, want);                                \
	} while (0)
#define ASSERT_GET_RC(doc, path, rc)                                         \
	do {                                                                  \
		char b_[256];                                                 \
		assert_int_equal(get(doc, path, b_, sizeof(b_)), rc);         \
	} while (0)

static const char DOC1[] = "{\"a\":{\"b\":[10,20,{\"c\":\"x\"}]},\"d\":true}";

static void test_get_basic(void **state)
{
	(void)state;
	ASSERT_GET(DOC1, "$", DOC1);
	ASSERT_GET(DOC1, "$.a", "{\"b\":[10,20,{\"c\":\"x\"}]}");
	ASSERT_GET(DOC1, "$.a.b", "[10,20,{\"c\":\"x\"}]");
	ASSERT_GET(DOC1, "$.a.b[0]", "10");
	ASSERT_GET(DOC1, "$.a.b[1]", "20");
	ASSERT_GET(DOC1, "$.a.b[2]", "{\"c\":\"x\"}");
	ASSERT_GET(DOC1, "$.a.b[2].c", "\"x\"");
	ASSERT_GET(DOC1, "$.d", "true");
	ASSERT_GET(DOC1, "$['a']['b'][0]", "10");
	ASSERT_GET(DOC1, "$[\"a\"].b[1]", "20");
	ASSERT_GET("  [1, [2, 3]]\n", "$", "[1, [2, 3]]");
	ASSERT_GET("  [1, [2, 3]]\n", "$[1][1]", "3");
	ASSERT_GET("\"top\"", "$", "\"top\"");
	/* Skipping over nested siblings to reach later members/elements. */
	ASSERT_GET("{\"x\":{\"y\":[1,{\"z\":2}]},\"w\":[[],[[]]],\"v\":\"s\"}", "$.v",
		   "\"s\"");
	ASSERT_GET("[[1,[2]],{\"a\":[3]},\"\",4]", "$[3]", "4");
	ASSERT_GET("[[1,[2]],{\"a\":[3]},\"\",4]", "$[2]", "\"\"");
	ASSERT_GET("{\"a\":\"\",\"b\":1}", "$.b", "1");
	/* Name chars allowed in dotted form. */
	ASSERT_GET("{\"A-z_09\":1}", "$.A-z_09", "1");
	ASSERT_GET("{\"0\":1}", "$.0", "1");
	ASSERT_GET("{\"\":7}", "$['']", "7");
}

static void test_get_names(void **state)
{
	(void)state;
	/* Dots in a bracketed name are literal. */
	ASSERT_GET("{\"x.y\":1,\"x\":{\"y\":2}}", "$['x.y']", "1");
	ASSERT_GET("{\"x.y\":1,\"x\":{\"y\":2}}", "$.x.y", "2");
	ASSERT_GET("{\"key with spaces\":3}", "$['key with spaces']", "3");
	/* Names compare after unescaping the JSON key. */
	ASSERT_GET("{\"a\\\"b\":1,\"\\u0063\":2}", "$['a\"b']", "1");
	ASSERT_GET("{\"a\\\"b\":1,\"\\u0063\":2}", "$[\"a\\\"b\"]", "1");
	ASSERT_GET("{\"a\\\"b\":1,\"\\u0063\":2}", "$.c", "2");
	ASSERT_GET("{\"it's\":4}", "$['it\\'s']", "4");
	ASSERT_GET("{\"b\\\\s\":5}", "$['b\\\\s']", "5");
	ASSERT_GET("{\"\xC3\xA9\":1,\"\\u00e9x\":2}", "$['\xC3\xA9']", "1");
	ASSERT_GET("{\"\xC3\xA9\":1,\"\\u00e9x\":2}", "$['\xC3\xA9x']", "2");
	ASSERT_GET("{\"\\uD83D\\uDE00\":5}", "$['\xF0\x9F\x98\x80']", "5");
	ASSERT_GET("{\"t\\tn\\n\":6}", "$['t\tn\n']", "6");
	/* A lone-surrogate key matches nothing, not even its raw bytes. */
	ASSERT_GET_RC("{\"\\uD800\":5}", "$['\xED\xA0\x80']", -EINVAL);
	ASSERT_GET_RC("{\"\\uD800\":5}", "$.x", -ENOENT);
	/* Prefixes are not matches. */
	ASSERT_GET_RC("{\"ab\":1}", "$.a", -ENOENT);
	ASSERT_GET_RC("{\"a\":1}", "$.ab", -ENOENT);
	/* Duplicates: the last wins (Python, jq, RedisJSON), also when the
	 * last is spelt with an escape, and on the way to a deeper member. */
	ASSERT_GET("{\"a\":1,\"a\":2}", "$.a", "2");
	ASSERT_GET("{\"a\":1,\"b\":0,\"\\u0061\":3}", "$.a", "3");
	ASSERT_GET("{\"a\":{\"x\":1},\"a\":{\"x\":2}}", "$.a.x", "2");
	ASSERT_GET_RC("{\"a\":{\"x\":1},\"a\":{\"y\":2}}", "$.a.x", -ENOENT);
}

static void test_get_missing(void **state)
{
	(void)state;
	ASSERT_GET_RC(DOC1, "$.z", -ENOENT);
	ASSERT_GET_RC(DOC1, "$.a.b[3]", -ENOENT);
	ASSERT_GET_RC(DOC1, "$.a.b[999999]", -ENOENT);
	ASSERT_GET_RC(DOC1, "$.a.z.q", -ENOENT);
	ASSERT_GET_RC(DOC1, "$.d.x", -ENOENT);     /* member of a scalar */
	ASSERT_GET_RC(DOC1, "$.d[0]", -ENOENT);    /* index of a scalar */
	ASSERT_GET_RC(DOC1, "$.a[0]", -ENOENT);    /* index of an object */
	ASSERT_GET_RC(DOC1, "$.a.b.c", -ENOENT);   /* member of an array */
	ASSERT_GET_RC(DOC1, "$.a.b[2].c.d", -ENOENT);
	ASSERT_GET_RC("[]", "$[0]", -ENOENT);
	ASSERT_GET_RC("{}", "$.a", -ENOENT);
	ASSERT_GET_RC("\"s\"", "$[0]", -ENOENT);
}

static const char *const bad_paths[] = {
	"", "a", ".a", "$.", "$..", "$...a", "$a", "$[", "$[]", "$[01]", "$[-0]", "$[-01]", "$[-]",
	"$['a", "$['a']x", "$.a b", "$[1", "$[a]", "$['a'", "$.a.", "$ ",
	"$.a[0", "$[99999999999999999999999999]", "$['\xff']", "$['\xC3']",
	"$.\xC3\xA9", "$[1]]", "$$", "$.a[", "$[\"a']", "$['a\\']", "$[ 0]",
	"$[0 ]", "$.**", "$[**]", "$[*",
};

static void test_bad_paths(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
		const char *p = bad_paths[i];
		char *out = NULL;
		size_t outlen = 0;

		if (mf_json_path_check(p, strlen(p)) != -EINVAL)
			fail_msg("path %zu \"%s\" accepted", i, p);
		ASSERT_GET_RC(DOC1, p, -EINVAL);
		assert_int_equal(mf_json_set_path(DOC1, strlen(DOC1), p, strlen(p),
						  "1", 1, &out, &outlen),
				 -EINVAL);
		assert_null(out);
	}
	assert_int_equal(mf_json_path_check(NULL, 0), -EINVAL);
	assert_int_equal(mf_json_path_check("$", 1), 0);
	assert_int_equal(mf_json_path_check("$.a[2].c['x.y'][\"q\"]", 20), 0);
	/* The path is (pointer, length): bytes after pathlen are ignored. */
	assert_int_equal(mf_json_path_check("$.a!!!", 3), 0);
	ASSERT_GET_RC("{\"a\":1}", "$.a", 0);
}

static void test_get_invalid_doc(void **state)
{
	size_t off, len;

	(void)state;
	/* The document is checked, not trusted. */
	ASSERT_GET_RC("{\"a\":1,}", "$.a", -EINVAL);
	ASSERT_GET_RC("tru", "$", -EINVAL);
	ASSERT_GET_RC("", "$", -EINVAL);
	ASSERT_GET_RC("[1] [2]", "$[0]", -EINVAL);
	assert_int_equal(mf_json_get_path(NULL, 0, "$", 1, &off, &len), -EINVAL);
}

/* ------------------------------------------------------------------ */
/* Path set                                                            */
/* ------------------------------------------------------------------ */

static int set(const char *doc, const char *path, const char *val, char **out)
{
	size_t n = strlen(doc), vl = strlen(val), outlen = 0;
	char *d = dup_exact(doc, n), *v = dup_exact(val, vl);
	int rc;

	*out = NULL;
	rc = mf_json_set_path(d, n, path, strlen(path), v, vl, out, &outlen);
	if (rc == 0) {
		assert_non_null(*out);
		assert_int_equal(strlen(*out), outlen); /* NUL-terminated */
		assert_int_equal(mf_json_validate(*out, outlen, NULL, NULL), 0);
	} else {
		assert_null(*out);
	}
	free(d);
	free(v);
	return rc;
}

#define ASSERT_SET(doc, path, val, want)                                     \
	do {                                                                  \
		char *o_;                                                     \
		assert_int_equal(set(doc, path, val, &o_), 0);                \
		assert_string_equal(o_, want);                                \
		free(o_);                                                     \
	} while (0)
#define ASSERT_SET_RC(doc, path, val, rc)                                    \
	do {                                                                  \
		char *o_;                                                     \
		assert_int_equal(set(doc, path, val, &o_), rc);               \
		free(o_);                                                     \
	} while (0)

static void test_set_replace(void **state)
{
	(void)state;
	ASSERT_SET(DOC1, "$.a.b[1]", "99",
		   "{\"a\":{\"b\":[10,99,{\"c\":\"x\"}]},\"d\":true}");
	ASSERT_SET(DOC1, "$.a.b[2].c", "\"yy\"",
		   "{\"a\":{\"b\":[10,20,{\"c\":\"yy\"}]},\"d\":true}");
	ASSERT_SET(DOC1, "$.a", "null", "{\"a\":null,\"d\":true}");
	ASSERT_SET(DOC1, "$.d", "{\"n\":[1,2]}",
		   "{\"a\":{\"b\":[10,20,{\"c\":\"x\"}]},\"d\":{\"n\":[1,2]}}");
	ASSERT_SET(DOC1, "$['a'].b[0]", "\"\"",
		   "{\"a\":{\"b\":[\"\",20,{\"c\":\"x\"}]},\"d\":true}");
	/* Value whitespace is trimmed when splicing. */
	ASSERT_SET("[1,2]", "$[0]", " \n 5\t\r\n", "[5,2]");
	/* Duplicates: the last is replaced, the earlier ones kept. */
	ASSERT_SET("{\"a\":1,\"a\":2}", "$.a", "3", "{\"a\":1,\"a\":3}");
	ASSERT_SET("{\"a\":{\"x\":1},\"a\":{\"x\":2}}", "$.a.x", "3",
		   "{\"a\":{\"x\":1},\"a\":{\"x\":3}}");
	/* Escaped key matched after unescaping. */
	ASSERT_SET("{\"\\u0061\":1}", "$.a", "2", "{\"\\u0061\":2}");
	/* Set the whole document: val verbatim, doc not even looked at. */
	ASSERT_SET(DOC1, "$", " [1] ", " [1] ");
	ASSERT_SET("not json at all", "$", "{}", "{}");
	ASSERT_SET("", "$", "0", "0");
}

static void test_set_add(void **state)
{
	(void)state;
	ASSERT_SET(DOC1, "$.a.e", "[1]",
		   "{\"a\":{\"b\":[10,20,{\"c\":\"x\"}],\"e\":[1]},\"d\":true}");
	ASSERT_SET("{\"a\":1}", "$.b", "2", "{\"a\":1,\"b\":2}");
	ASSERT_SET("{}", "$.k", "1", "{\"k\":1}");
	ASSERT_SET("{\"o\":{}}", "$.o.k", "\"v\"", "{\"o\":{\"k\":\"v\"}}");
	ASSERT_SET("{ }", "$.k", "1", "{\"k\":1 }");
	ASSERT_SET("[{}]", "$[0].k", "true", "[{\"k\":true}]");
	/* Names are written JSON-escaped. */
	ASSERT_SET("{}", "$['a\"b']", "1", "{\"a\\\"b\":1}");
	ASSERT_SET("{}", "$['a\\\\b']", "1", "{\"a\\\\b\":1}");
	ASSERT_SET("{}", "$['t\tn\n']", "1", "{\"t\\u0009n\\u000a\":1}");
	ASSERT_SET("{}", "$['x.y']", "1", "{\"x.y\":1}");
	ASSERT_SET("{}", "$['\xC3\xA9']", "1", "{\"\xC3\xA9\":1}");
	ASSERT_SET("{}", "$['']", "1", "{\"\":1}");
	/* Adding is deterministic, and then the member is found. */
	{
		char *o1, *o2, b[64];

		assert_int_equal(set("{\"a\":1}", "$.z", "[]", &o1), 0);
		assert_int_equal(set("{\"a\":1}", "$.z", "[]", &o2), 0);
		assert_string_equal(o1, o2);
		assert_int_equal(get(o1, "$.z", b, sizeof(b)), 0);
		assert_string_equal(b, "[]");
		/* Set it again: now a replace, not a second add. */
		free(o2);
		assert_int_equal(set(o1, "$.z", "7", &o2), 0);
		assert_string_equal(o2, "{\"a\":1,\"z\":7}");
		free(o1);
		free(o2);
	}
}

static void test_set_errors(void **state)
{
	(void)state;
	/* Only the last step may be created. */
	ASSERT_SET_RC(DOC1, "$.x.y", "1", -ENOENT);
	ASSERT_SET_RC(DOC1, "$.a.b[3]", "1", -ENOENT);
	ASSERT_SET_RC("[]", "$[0]", "1", -ENOENT);
	ASSERT_SET_RC(DOC1, "$.a.b.c", "1", -ENOENT);   /* member of an array */
	ASSERT_SET_RC(DOC1, "$.d.c", "1", -ENOENT);     /* member of a scalar */
	ASSERT_SET_RC(DOC1, "$.a[0]", "1", -ENOENT);    /* index of an object */
	ASSERT_SET_RC("5", "$.a", "1", -ENOENT);
	/* Invalid values are refused, including for "$". */
	ASSERT_SET_RC(DOC1, "$.d", "tru", -EINVAL);
	ASSERT_SET_RC(DOC1, "$.d", "", -EINVAL);
	ASSERT_SET_RC(DOC1, "$.d", "   ", -EINVAL);
	ASSERT_SET_RC(DOC1, "$.d", "{", -EINVAL);
	ASSERT_SET_RC(DOC1, "$.d", "1 2", -EINVAL);
	ASSERT_SET_RC(DOC1, "$.d", "[1,]", -EINVAL);
	ASSERT_SET_RC(DOC1, "$.new", "'x'", -EINVAL);
	ASSERT_SET_RC(DOC1, "$", "{\"a\":1,}", -EINVAL);
	/* An invalid document is refused for any path but "$". */
	ASSERT_SET_RC("{\"a\":1,}", "$.a", "2", -EINVAL);
	ASSERT_SET_RC("[01]", "$[0]", "2", -EINVAL);
}

static void test_set_depth(void **state)
{
	size_t n, vn, i, outlen;
	char *doc, *val, *out = NULL, path[2 + 3 * 300];

	(void)state;
	/* Innermost [] of a 300-deep doc sits at depth 300 (299 steps). */
	doc = nest(300, "[", "", "]", &n);
	strcpy(path, "$");
	for (i = 0; i < 299; i++)
		strcat(path, "[0]");
	/* 299 + 213 = 512: allowed. */
	val = nest(213, "[", "", "]", &vn);
	assert_int_equal(mf_json_set_path(doc, n, path, strlen(path), val, vn, &out,
					  &outlen), 0);
	assert_int_equal(outlen, 2 * 512);
	assert_int_equal(mf_json_validate(out, outlen, NULL, NULL), 0);
	free(out);
	free(val);
	out = NULL;
	/* 299 + 214 = 513: the result would be invalid. */
	val = nest(214, "[", "", "]", &vn);
	assert_int_equal(mf_json_set_path(doc, n, path, strlen(path), val, vn, &out,
					  &outlen), -EINVAL);
	assert_null(out);
	free(val);
	free(doc);
}

static const char PRETTY[] =
	"{\n"
	"  \"name\": \"x\",\n"
	"  \"list\": [\n"
	"    1,\n"
	"    2\n"
	"  ],\n"
	"  \"nested\": {\n"
	"    \"k\": \"v\"\n"
	"  }\n"
	"}\n";

static void test_set_preserves_format(void **state)
{
	(void)state;
	ASSERT_SET(PRETTY, "$.list[1]", "{\"z\": 0}",
		   "{\n"
		   "  \"name\": \"x\",\n"
		   "  \"list\": [\n"
		   "    1,\n"
		   "    {\"z\": 0}\n"
		   "  ],\n"
		   "  \"nested\": {\n"
		   "    \"k\": \"v\"\n"
		   "  }\n"
		   "}\n");
	ASSERT_SET(PRETTY, "$.nested.new", "true",
		   "{\n"
		   "  \"name\": \"x\",\n"
		   "  \"list\": [\n"
		   "    1,\n"
		   "    2\n"
		   "  ],\n"
		   "  \"nested\": {\n"
		   "    \"k\": \"v\",\"new\":true\n"
		   "  }\n"
		   "}\n");
	ASSERT_SET(PRETTY, "$.name", "\"renamed\"",
		   "{\n"
		   "  \"name\": \"renamed\",\n"
		   "  \"list\": [\n"
		   "    1,\n"
		   "    2\n"
		   "  ],\n"
		   "  \"nested\": {\n"
		   "    \"k\": \"v\"\n"
		   "  }\n"
		   "}\n");
	/* Exotic but valid spacing and escapes elsewhere survive untouched. */
	ASSERT_SET("[ \"\\u00e9\" ,\t1e5 ,\r\n 2 ]", "$[2]", "3",
		   "[ \"\\u00e9\" ,\t1e5 ,\r\n 3 ]");
}

/* ------------------------------------------------------------------ */
/* Fuzz                                                                */
/* ------------------------------------------------------------------ */

static uint64_t rng_state;

static uint32_t rnd(void)
{
	/* xorshift64*: deterministic for a fixed seed. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (uint32_t)((rng_state * 2685821657736338717ULL) >> 32);
}

/* Weak oracle: brackets outside strings balance and match. */
static int balanced(const char *p, size_t n)
{
	char st[MF_JSON_MAX_DEPTH + 1];
	size_t d = 0, i;
	int in_str = 0;

	for (i = 0; i < n; i++) {
		char c = p[i];

		if (in_str) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_str = 0;
			continue;
		}
		if (c == '"') {
			in_str = 1;
		} else if (c == '[' || c == '{') {
			if (d >= sizeof(st))
				return 0;
			st[d++] = c;
		} else if (c == ']' || c == '}') {
			if (d == 0 || st[d - 1] != (c == ']' ? '[' : '{'))
				return 0;
			d--;
		}
	}
	return d == 0 && !in_str;
}

/* Any accepted doc: path functions must not crash, spans stay in bounds,
 * and what they return validates. */
static void probe_paths(const char *d, size_t n)
{
	static const char *const paths[] = { "$", "$[0]", "$.a", "$[1].a", "$.a[0]", "$['']" };
	size_t i, off, len, outlen;
	char *out;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		int rc = mf_json_get_path(d, n, paths[i], strlen(paths[i]), &off, &len);

		if (rc == 0) {
			assert_true(off <= n && len <= n - off);
			assert_int_equal(mf_json_validate(d + off, len, NULL, NULL), 0);
		} else {
			assert_int_equal(rc, -ENOENT);
		}
		out = NULL;
		rc = mf_json_set_path(d, n, paths[i], strlen(paths[i]), "[7]", 3, &out,
				      &outlen);
		if (rc == 0) {
			assert_int_equal(mf_json_validate(out, outlen, NULL, NULL), 0);
			free(out);
		} else {
			assert_int_equal(rc, -ENOENT);
		}
	}
}

static void test_fuzz_random(void **state)
{
	static const char alpha[] = "[]{}\",:0123456789-+.eEtrufalsn \t\n\\/u'x"
				    "\xC3\xA9\x80\xED\xA0\xF4";
	const size_t na = sizeof(alpha); /* includes the NUL: a useful byte */
	size_t iter, accepted = 0;
	clock_t t0 = clock();

	(void)state;
	rng_state = 0x9E3779B97F4A7C15ULL;
	for (iter = 0; iter < 200000; iter++) {
		char buf[16];
		size_t len = rnd() % (sizeof(buf) + 1), i, off = (size_t)-1;
		const char *why = NULL;
		char *d;
		int rc;

		for (i = 0; i < len; i++)
			buf[i] = alpha[rnd() % na];
		/* Bias toward structure: often start with a bracket. */
		if (len && rnd() % 2)
			buf[0] = "[{"[rnd() % 2];
		d = dup_exact(buf, len);
		rc = mf_json_validate(d, len, &off, &why);
		if (rc == 0) {
			accepted++;
			assert_true(balanced(d, len));
			probe_paths(d, len);
		} else {
			assert_int_equal(rc, -EINVAL);
			assert_non_null(why);
			assert_true(off <= len);
		}
		free(d);
	}
	/* Sanity: the alphabet does produce some valid documents. */
	assert_true(accepted > 100);
	print_message("fuzz: %zu of 200000 accepted, %.2fs\n", accepted,
		      (double)(clock() - t0) / CLOCKS_PER_SEC);
}

/* Generator of valid documents, for a positive oracle and mutation. */
static void gen_ws(char **w)
{
	static const char ws[] = " \t\n\r";

	while (rnd() % 4 == 0)
		*(*w)++ = ws[rnd() % 4];
}

static void gen_str(char **w)
{
	static const char *const parts[] = { "a", "Z", "\\n", "\\\"", "\\u00e9", "\\uD83D\\uDE00",
					     "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80", " ", "\\/" };
	int k = (int)(rnd() % 4), i;

	*(*w)++ = '"';
	for (i = 0; i < k; i++) {
		const char *p = parts[rnd() % (sizeof(parts) / sizeof(parts[0]))];
		size_t l = strlen(p);

		memcpy(*w, p, l);
		*w += l;
	}
	*(*w)++ = '"';
}

static void gen_value(char **w, int depth)
{
	static const char *const scalars[] = { "0", "-0", "1.5e-3", "42", "-7E+2", "true",
					       "false", "null", "0.0" };
	unsigned r = rnd() % (depth < 4 ? 8 : 4);
	int k, i;

	gen_ws(w);
	if (r < 2) {
		const char *s = scalars[rnd() % (sizeof(scalars) / sizeof(scalars[0]))];

		memcpy(*w, s, strlen(s));
		*w += strlen(s);
	} else if (r < 4) {
		gen_str(w);
	} else if (r < 6) {
		*(*w)++ = '[';
		k = (int)(rnd() % 4);
		for (i = 0; i < k; i++) {
			if (i)
				*(*w)++ = ',';
			gen_value(w, depth + 1);
		}
		gen_ws(w);
		*(*w)++ = ']';
	} else {
		*(*w)++ = '{';
		k = (int)(rnd() % 4);
		for (i = 0; i < k; i++) {
			if (i)
				*(*w)++ = ',';
			gen_ws(w);
			/* Small key set so paths like $.a hit. */
			*(*w)++ = '"';
			*(*w)++ = "ab"[rnd() % 2];
			*(*w)++ = '"';
			gen_ws(w);
			*(*w)++ = ':';
			gen_value(w, depth + 1);
		}
		gen_ws(w);
		*(*w)++ = '}';
	}
	gen_ws(w);
}

static void test_fuzz_generated(void **state)
{
	static char buf[1 << 16];
	size_t iter, mutants_ok = 0;

	(void)state;
	rng_state = 12345;
	for (iter = 0; iter < 20000; iter++) {
		char *w = buf, *d;
		size_t n, off = 0, m;
		const char *why = NULL;
		int rc;

		gen_value(&w, 0);
		n = (size_t)(w - buf);
		assert_true(n < sizeof(buf));
		d = dup_exact(buf, n);
		rc = mf_json_validate(d, n, &off, &why);
		if (rc != 0)
			fail_msg("generated doc rejected at %zu (%s): %.*s", off, why,
				 (int)n, d);
		probe_paths(d, n);
		/* Mutate a few bytes: anything may happen except a crash,
		 * and anything accepted must still balance. */
		for (m = 0; m < 4 && n > 0; m++) {
			d[rnd() % n] = (char)(rnd() % 256);
			if (mf_json_validate(d, n, &off, &why) == 0) {
				mutants_ok++;
				assert_true(balanced(d, n));
				probe_paths(d, n);
			} else {
				assert_true(off <= n);
			}
		}
		/* Truncations of a valid doc: only prefixes that are complete
		 * values themselves may pass. */
		memcpy(d, buf, n);
		if (n > 1) {
			size_t cut = rnd() % n;

			if (mf_json_validate(d, cut, &off, &why) == 0)
				assert_true(balanced(d, cut));
			else
				assert_true(off <= cut);
		}
		free(d);
	}
	(void)mutants_ok;
}


/* mf_json_del_path (JSON.DEL over RESP): a member or element and its comma
 * go, every other byte stays. */
static void del_ok(const char *doc, const char *path, const char *want)
{
	char *out = NULL;
	size_t n = 0;
	int r = mf_json_del_path(doc, strlen(doc), path, strlen(path), &out, &n);
	if (r != 0)
		fail_msg("del %s from %s: %d", path, doc, r);
	if (n != strlen(want) || memcmp(out, want, n) != 0)
		fail_msg("del %s from %s: got '%.*s' want '%s'", path, doc, (int)n, out, want);
	assert_int_equal(mf_json_validate(out, n, NULL, NULL), 0);
	free(out);
}

static void del_err(const char *doc, const char *path, int want)
{
	char *out = (char *)"untouched";
	size_t n = 0;
	assert_int_equal(mf_json_del_path(doc, strlen(doc), path, strlen(path), &out, &n), want);
	assert_string_equal(out, "untouched");
}

static void test_del(void **state)
{
	(void)state;
	del_ok("{\"a\":1,\"b\":2,\"c\":3}", "$.a", "{\"b\":2,\"c\":3}");
	del_ok("{\"a\":1,\"b\":2,\"c\":3}", "$.b", "{\"a\":1,\"c\":3}");
	del_ok("{\"a\":1,\"b\":2,\"c\":3}", "$.c", "{\"a\":1,\"b\":2}");
	del_ok("{\"a\":1}", "$.a", "{}");
	del_ok("{ \"a\" : 1 , \"b\" : 2 }", "$.b", "{ \"a\" : 1  }"); /* blanks around the cut stay */
	del_ok("{ \"a\" : 1 , \"b\" : 2 }", "$.a", "{ \"b\" : 2 }");
	del_ok("[1, [2, 3], 4]", "$[1][0]", "[1, [3], 4]");
	del_ok("[1, [2, 3], 4]", "$[1]", "[1, 4]");
	del_ok("[1]", "$[0]", "[]");
	del_ok("{\"x\":{\"y\":[{\"z\":1,\"w\":2}]}}", "$.x.y[0].z", "{\"x\":{\"y\":[{\"w\":2}]}}");
	del_ok("{\"odd key\":1,\"k\":2}", "$['odd key']", "{\"k\":2}");
	/* Duplicates: the last one (what get and set address). */
	del_ok("{\"a\":1,\"a\":2}", "$.a", "{\"a\":1}");
	/* A comma inside a string is not a separator. */
	del_ok("{\"a\":\",\",\"b\":\",\"}", "$.b", "{\"a\":\",\"}");
	del_err("{\"a\":1}", "$.b", -ENOENT);
	del_err("[1]", "$[1]", -ENOENT);
	del_err("{\"a\":1}", "$[0]", -ENOENT);
	del_err("{\"a\":1}", "$", -EINVAL);
	del_err("{\"a\":1}", "$.", -EINVAL);
	del_err("{\"a\":1,}", "$.a", -EINVAL); /* the document is checked */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_null_args),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_depth_100k),
		cmocka_unit_test(test_get_basic),
		cmocka_unit_test(test_get_names),
		cmocka_unit_test(test_get_missing),
		cmocka_unit_test(test_bad_paths),
		cmocka_unit_test(test_get_invalid_doc),
		cmocka_unit_test(test_set_replace),
		cmocka_unit_test(test_set_add),
		cmocka_unit_test(test_set_errors),
		cmocka_unit_test(test_set_depth),
		cmocka_unit_test(test_set_preserves_format),
		cmocka_unit_test(test_fuzz_random),
		cmocka_unit_test(test_fuzz_generated),
		cmocka_unit_test(test_del),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
