/*
 * json.c — strict JSON validator and path get/set by text splicing.
 *
 * Two halves with different trust levels:
 *   1. mf_json_validate(): our own iterative checker.  It is the only thing
 *      that decides whether bytes are JSON.  One pass, no recursion, a fixed
 *      MF_JSON_MAX_DEPTH-byte stack of open brackets, so adversarial input
 *      (100k '[') costs O(n) and cannot overflow the C stack.
 *   2. Path get/set: jsmn tokenizes a document that mf_json_validate() has
 *      already accepted.  On valid input jsmn's token spans are exact, and
 *      with JSMN_PARENT_LINKS closing a bracket is O(1) instead of a scan
 *      back over all tokens, so tokenizing stays linear.
 * See json.h for the contract and the implementation-defined choices.
 */
#include "json.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* jsmn is header-only: this file is the single translation unit that
 * instantiates it, and JSMN_STATIC keeps its symbols private so another
 * module including jsmn.h cannot clash at link time. */
#define JSMN_STATIC
#define JSMN_PARENT_LINKS
#include <jsmn.h>

/* ------------------------------------------------------------------ */
/* Validator                                                           */
/* ------------------------------------------------------------------ */

typedef struct vstate {
	const unsigned char *p;
	size_t n;
	size_t pos;
	size_t err_off;
	const char *why;
} vstate;

static int vfail(vstate *s, size_t off, const char *why)
{
	s->err_off = off;
	s->why = why;
	return -EINVAL;
}

/* RFC 8259 whitespace is exactly these four; \f, \v and NBSP are not. */
static int is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static void skip_ws(vstate *s)
{
	while (s->pos < s->n && is_ws(s->p[s->pos]))
		s->pos++;
}

/*
 * Length of the well-formed UTF-8 sequence starting at p (1..4), or 0 with
 * *why set.  Follows the Unicode "well-formed byte sequences" table (Table
 * 3-7): the second-byte ranges after E0/ED/F0/F4 are what exclude overlongs,
 * surrogates and code points above U+10FFFF.
 */
static size_t utf8_len(const unsigned char *p, size_t avail, const char **why)
{
	unsigned char c = p[0];
	unsigned char lo = 0x80, hi = 0xBF;
	size_t len, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		len = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		len = 3;
		if (c == 0xE0)
			lo = 0xA0; /* below: overlong */
		if (c == 0xED)
			hi = 0x9F; /* above: U+D800..U+DFFF */
	} else if (c >= 0xF0 && c <= 0xF4) {
		len = 4;
		if (c == 0xF0)
			lo = 0x90; /* below: overlong */
		if (c == 0xF4)
			hi = 0x8F; /* above: > U+10FFFF */
	} else if (c == 0xC0 || c == 0xC1) {
		*why = "overlong UTF-8 encoding";
		return 0;
	} else if (c >= 0xF5 && c <= 0xF7) {
		*why = "UTF-8 code point above U+10FFFF";
		return 0;
	} else if (c >= 0xF8) {
		*why = "invalid UTF-8 lead byte";
		return 0;
	} else {
		*why = "unexpected UTF-8 continuation byte";
		return 0;
	}
	if (avail < 2 || (p[1] & 0xC0) != 0x80) {
		*why = "truncated UTF-8 sequence";
		return 0;
	}
	if (p[1] < lo || p[1] > hi) {
		if (c == 0xED)
			*why = "UTF-8-encoded surrogate";
		else if (c == 0xF4)
			*why = "UTF-8 code point above U+10FFFF";
		else
			*why = "overlong UTF-8 encoding";
		return 0;
	}
	for (i = 2; i < len; i++) {
		if (i >= avail || (p[i] & 0xC0) != 0x80) {
			*why = "truncated UTF-8 sequence";
			return 0;
		}
	}
	return len;
}

/* s->pos is on the opening quote; on success it is just past the closing one. */
static int v_string(vstate *s)
{
	const unsigned char *p = s->p;
	size_t n = s->n;
	size_t i = s->pos + 1;

	while (i < n) {
		unsigned char c = p[i];

		if (c == '"') {
			s->pos = i + 1;
			return 0;
		}
		if (c < 0x20)
			return vfail(s, i, "control character in string");
		if (c == '\\') {
			size_t k;

			if (i + 1 >= n)
				return vfail(s, n, "unterminated string");
			switch (p[i + 1]) {
			case '"': case '\\': case '/':
			case 'b': case 'f': case 'n': case 'r': case 't':
				i += 2;
				break;
			case 'u':
				/* Any 4 hex digits, surrogates included: a lone
				 * surrogate escape is accepted (see json.h). */
				for (k = 0; k < 4; k++) {
					if (i + 2 + k >= n)
						return vfail(s, n, "unterminated string");
					if (!is_hex(p[i + 2 + k]))
						return vfail(s, i, "invalid \\u escape");
				}
				i += 6;
				break;
			default:
				return vfail(s, i, "invalid escape");
			}
			continue;
		}
		if (c >= 0x80) {
			const char *why = NULL;
			size_t len = utf8_len(p + i, n - i, &why);

			if (len == 0)
				return vfail(s, i, why);
			i += len;
			continue;
		}
		i++;
	}
	return vfail(s, n, "unterminated string");
}

/* number = [ "-" ] ( "0" / 1-9 *DIGIT ) [ "." 1*DIGIT ] [ ("e"/"E") [ "+"/"-" ] 1*DIGIT ] */
static int v_number(vstate *s)
{
	const unsigned char *p = s->p;
	size_t n = s->n;
	size_t i = s->pos;

	if (p[i] == '-')
		i++;
	if (i >= n || !is_digit(p[i]))
		return vfail(s, i, "invalid number");
	if (p[i] == '0') {
		if (i + 1 < n && is_digit(p[i + 1]))
			return vfail(s, i, "leading zero");
		i++;
	} else {
		while (i < n && is_digit(p[i]))
			i++;
	}
	if (i < n && p[i] == '.') {
		i++;
		if (i >= n || !is_digit(p[i]))
			return vfail(s, i, "invalid number");
		while (i < n && is_digit(p[i]))
			i++;
	}
	if (i < n && (p[i] == 'e' || p[i] == 'E')) {
		i++;
		if (i < n && (p[i] == '+' || p[i] == '-'))
			i++;
		if (i >= n || !is_digit(p[i]))
			return vfail(s, i, "invalid number");
		while (i < n && is_digit(p[i]))
			i++;
	}
	/* "1.2.3", "1e5e5", "12abc", "0x1F": the grammar ended but the token
	 * visibly did not — say so here rather than "expected ','" later. */
	if (i < n && (is_alpha(p[i]) || is_digit(p[i]) || p[i] == '.' ||
		      p[i] == '+' || p[i] == '-'))
		return vfail(s, i, "invalid number");
	s->pos = i;
	return 0;
}

/* A bare word must be exactly true/false/null; "tru", "truex", "True",
 * "NaN", "thanx" are all rejected at the word's first byte. */
static int v_word(vstate *s)
{
	const unsigned char *p = s->p;
	size_t i = s->pos, j = i;
	size_t len;

	while (j < s->n && (is_alpha(p[j]) || is_digit(p[j]) || p[j] == '_'))
		j++;
	len = j - i;
	if ((len == 4 && memcmp(p + i, "true", 4) == 0) ||
	    (len == 5 && memcmp(p + i, "false", 5) == 0) ||
	    (len == 4 && memcmp(p + i, "null", 4) == 0)) {
		s->pos = j;
		return 0;
	}
	return vfail(s, i, "invalid literal");
}

enum vmode { V_VALUE, V_KEY, V_AFTER };

static int v_document(vstate *s)
{
	/* Open brackets; depth never exceeds MF_JSON_MAX_DEPTH. */
	unsigned char stack[MF_JSON_MAX_DEPTH];
	size_t depth = 0;
	enum vmode mode = V_VALUE;
	const unsigned char *p = s->p;
	size_t n = s->n;
	int rc;

	if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF)
		return vfail(s, 0, "byte order mark not allowed");
	skip_ws(s);
	if (s->pos >= n)
		return vfail(s, n, "empty document");

	for (;;) {
		unsigned char c;

		if (mode == V_VALUE) {
			/* Invariant: whitespace already skipped. */
			if (s->pos >= n)
				return vfail(s, n, "unexpected end of input");
			c = p[s->pos];
			if (c == '{' || c == '[') {
				unsigned char close = c == '{' ? '}' : ']';

				if (depth >= MF_JSON_MAX_DEPTH)
					return vfail(s, s->pos, "nesting too deep");
				stack[depth++] = c;
				s->pos++;
				skip_ws(s);
				if (s->pos < n && p[s->pos] == close) {
					depth--;
					s->pos++;
					mode = V_AFTER;
				} else {
					mode = c == '{' ? V_KEY : V_VALUE;
				}
				continue;
			}
			if (c == '"')
				rc = v_string(s);
			else if (c == '-' || is_digit(c))
				rc = v_number(s);
			else if (is_alpha(c))
				rc = v_word(s);
			else if (c == '\'')
				return vfail(s, s->pos, "single quotes not allowed");
			else if (c == '/')
				return vfail(s, s->pos, "comments not allowed");
			else if (c == ',' || c == ']' || c == '}' || c == ':')
				return vfail(s, s->pos, "expected value");
			else
				return vfail(s, s->pos, "unexpected character");
			if (rc < 0)
				return rc;
			mode = V_AFTER;
		} else if (mode == V_KEY) {
			if (s->pos >= n)
				return vfail(s, n, "unexpected end of input");
			c = p[s->pos];
			if (c != '"') {
				if (c == '\'')
					return vfail(s, s->pos, "single quotes not allowed");
				if (c == '/')
					return vfail(s, s->pos, "comments not allowed");
				return vfail(s, s->pos, "expected member name");
			}
			rc = v_string(s);
			if (rc < 0)
				return rc;
			skip_ws(s);
			if (s->pos >= n)
				return vfail(s, n, "unexpected end of input");
			if (p[s->pos] != ':')
				return vfail(s, s->pos, "expected ':'");
			s->pos++;
			skip_ws(s);
			mode = V_VALUE;
		} else {
			unsigned char top, close;

			skip_ws(s);
			if (depth == 0) {
				if (s->pos == n)
					return 0;
				if (p[s->pos] == '/')
					return vfail(s, s->pos, "comments not allowed");
				return vfail(s, s->pos, "unexpected data after value");
			}
			if (s->pos >= n)
				return vfail(s, n, "unexpected end of input");
			c = p[s->pos];
			top = stack[depth - 1];
			close = top == '{' ? '}' : ']';
			if (c == ',') {
				size_t comma = s->pos;

				s->pos++;
				skip_ws(s);
				if (s->pos < n && p[s->pos] == close)
					return vfail(s, comma, "trailing comma");
				mode = top == '{' ? V_KEY : V_VALUE;
			} else if (c == close) {
				depth--;
				s->pos++;
			} else if (c == '}' || c == ']') {
				return vfail(s, s->pos, "mismatched bracket");
			} else if (c == '/') {
				return vfail(s, s->pos, "comments not allowed");
			} else {
				return vfail(s, s->pos, top == '{' ? "expected ',' or '}'"
								   : "expected ',' or ']'");
			}
		}
	}
}

int mf_json_validate(const char *p, size_t n, size_t *err_off, const char **why)
{
	vstate s = { (const unsigned char *)p, n, 0, 0, NULL };
	int rc;

	if (p == NULL && n > 0) {
		rc = vfail(&s, 0, "null pointer");
	} else {
		if (p == NULL)
			s.p = (const unsigned char *)"";
		rc = v_document(&s);
	}
	if (rc < 0) {
		if (err_off)
			*err_off = s.err_off;
		if (why)
			*why = s.why;
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Paths                                                               */
/* ------------------------------------------------------------------ */

enum step_kind { STEP_MEMBER, STEP_INDEX, STEP_WILD };

typedef struct step {
	enum step_kind kind;
	const char *name; /* raw bytes between the quotes / after the dot */
	size_t namelen;
	int quoted;       /* bracketed: backslash escapes the next byte */
	size_t index;
	int neg;          /* [-N]: index counts from the end (index = N >= 1) */
	int desc;         /* ..: the step applies at any depth below (reads) */
} step;

static int is_name_char(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '_' || c == '-';
}

/* Parse the step at *pos.  1 = got one, 0 = end of path, -EINVAL = bad. */
static int path_next(const char *path, size_t len, size_t *pos, step *st)
{
	const unsigned char *p = (const unsigned char *)path;
	size_t i = *pos;

	if (i >= len)
		return 0;
	st->desc = 0;
	st->neg = 0;
	if (p[i] == '.' && i + 1 < len && p[i + 1] == '.') {
		/* ..name, ..*, ..[...]: recursive descent */
		st->desc = 1;
		i++;
		if (i + 1 < len && p[i + 1] == '[')
			i++;
	}
	if (p[i] == '.') {
		size_t start = ++i;

		if (i < len && p[i] == '*') {
			st->kind = STEP_WILD;
			*pos = i + 1;
			return 1;
		}
		while (i < len && is_name_char(p[i]))
			i++;
		if (i == start)
			return -EINVAL;
		st->kind = STEP_MEMBER;
		st->name = path + start;
		st->namelen = i - start;
		st->quoted = 0;
	} else if (p[i] == '[') {
		i++;
		if (i >= len)
			return -EINVAL;
		if (p[i] == '*') {
			st->kind = STEP_WILD;
			i++;
		} else if (p[i] == '\'' || p[i] == '"') {
			unsigned char q = p[i];
			size_t start = ++i, k;

			while (i < len && p[i] != q) {
				if (p[i] == '\\')
					i++;
				i++;
			}
			if (i >= len)
				return -EINVAL;
			/* Escapes are ASCII, so UTF-8 validity of the raw
			 * segment equals validity of the decoded name. */
			for (k = start; k < i;) {
				const char *why;
				size_t l = utf8_len(p + k, i - k, &why);

				if (l == 0)
					return -EINVAL;
				k += l;
			}
			st->kind = STEP_MEMBER;
			st->name = path + start;
			st->namelen = i - start;
			st->quoted = 1;
			i++;
		} else if (is_digit(p[i]) || (p[i] == '-' && i + 1 < len && p[i + 1] >= '1' &&
		                               p[i + 1] <= '9')) {
			size_t v = 0;

			if (p[i] == '-') {
				st->neg = 1; /* [-1] is the last element */
				i++;
			}
			if (p[i] == '0' && i + 1 < len && is_digit(p[i + 1]))
				return -EINVAL;
			while (i < len && is_digit(p[i])) {
				size_t d = (size_t)(p[i] - '0');

				if (v > (SIZE_MAX - d) / 10)
					return -EINVAL;
				v = v * 10 + d;
				i++;
			}
			st->kind = STEP_INDEX;
			st->index = v;
		} else {
			return -EINVAL;
		}
		if (i >= len || p[i] != ']')
			return -EINVAL;
		i++;
	} else {
		return -EINVAL;
	}
	*pos = i;
	return 1;
}

/* Walk every step of a "$..." path: 0 if it is valid (*multi: whether a
 * step can match several places, [*] .. .*), else -EINVAL. */
static int path_walk(const char *path, size_t pathlen, int *multi)
{
	size_t pos = 1;
	step st;
	int rc;

	*multi = 0;
	if (path == NULL || pathlen == 0 || path[0] != '$')
		return -EINVAL;
	while ((rc = path_next(path, pathlen, &pos, &st)) > 0)
		*multi = *multi || st.kind == STEP_WILD || st.desc;
	return rc;
}

int mf_json_path_check(const char *path, size_t pathlen)
{
	int multi;

	return path_walk(path, pathlen, &multi);
}

/* Byte streams for comparing names: a path name (with \x escapes when
 * bracketed) against a JSON key (with JSON escapes), both decoded. */
typedef struct pcur {
	const unsigned char *s;
	size_t len, pos;
	int quoted;
} pcur;

static int pcur_next(pcur *c)
{
	if (c->pos >= c->len)
		return -1;
	if (c->quoted && c->s[c->pos] == '\\' && c->pos + 1 < c->len)
		c->pos++;
	return c->s[c->pos++];
}

typedef struct kcur {
	const unsigned char *s;
	size_t len, pos;
	unsigned char buf[4];
	size_t bpos, blen;
} kcur;

static unsigned hex4(const unsigned char *h)
{
	unsigned v = 0;
	int i;

	for (i = 0; i < 4; i++) {
		unsigned char c = h[i];

		v <<= 4;
		if (is_digit(c))
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else
			v |= (unsigned)(c - 'A' + 10);
	}
	return v;
}

static int kcur_next(kcur *c)
{
	const unsigned char *s = c->s;
	unsigned cp;

	if (c->bpos < c->blen)
		return c->buf[c->bpos++];
	if (c->pos >= c->len)
		return -1;
	if (s[c->pos] != '\\' || c->pos + 1 >= c->len)
		return s[c->pos++];
	switch (s[c->pos + 1]) {
	case 'b': c->pos += 2; return '\b';
	case 'f': c->pos += 2; return '\f';
	case 'n': c->pos += 2; return '\n';
	case 'r': c->pos += 2; return '\r';
	case 't': c->pos += 2; return '\t';
	case 'u': break;
	default: c->pos += 2; return s[c->pos - 1]; /* \" \\ \/ */
	}
	if (c->pos + 6 > c->len) { /* cannot happen on validated text */
		c->pos = c->len;
		return -1;
	}
	cp = hex4(s + c->pos + 2);
	c->pos += 6;
	if (cp >= 0xD800 && cp <= 0xDBFF && c->pos + 6 <= c->len &&
	    s[c->pos] == '\\' && s[c->pos + 1] == 'u') {
		unsigned lo = hex4(s + c->pos + 2);

		if (lo >= 0xDC00 && lo <= 0xDFFF) {
			cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
			c->pos += 6;
		}
	}
	/* A lone surrogate becomes its 3-byte (ill-formed) encoding, which
	 * can never equal a path name (those are validated UTF-8): it just
	 * never matches. */
	c->bpos = 0;
	if (cp < 0x80) {
		c->buf[0] = (unsigned char)cp;
		c->blen = 1;
	} else if (cp < 0x800) {
		c->buf[0] = (unsigned char)(0xC0 | (cp >> 6));
		c->buf[1] = (unsigned char)(0x80 | (cp & 0x3F));
		c->blen = 2;
	} else if (cp < 0x10000) {
		c->buf[0] = (unsigned char)(0xE0 | (cp >> 12));
		c->buf[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		c->buf[2] = (unsigned char)(0x80 | (cp & 0x3F));
		c->blen = 3;
	} else {
		c->buf[0] = (unsigned char)(0xF0 | (cp >> 18));
		c->buf[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
		c->buf[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		c->buf[3] = (unsigned char)(0x80 | (cp & 0x3F));
		c->blen = 4;
	}
	return c->buf[c->bpos++];
}

static int name_matches(const step *st, const char *key, size_t keylen)
{
	pcur a = { (const unsigned char *)st->name, st->namelen, 0, st->quoted };
	kcur b = { (const unsigned char *)key, keylen, 0, { 0 }, 0, 0 };

	for (;;) {
		int x = pcur_next(&a), y = kcur_next(&b);

		if (x != y)
			return 0;
		if (x < 0)
			return 1;
	}
}

/* ------------------------------------------------------------------ */
/* Tokens and walking                                                  */
/* ------------------------------------------------------------------ */

static int tokenize(const char *doc, size_t n, jsmntok_t **out, int *ntok)
{
	jsmn_parser ps;
	jsmntok_t *t;
	int cnt, r;

	/* Two passes: count, then fill.  Cheaper in memory than sizing for
	 * the worst case (one token per byte). */
	jsmn_init(&ps);
	cnt = jsmn_parse(&ps, doc, n, NULL, 0);
	if (cnt < 1)
		return -EINVAL;
	t = malloc((size_t)cnt * sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	jsmn_init(&ps);
	r = jsmn_parse(&ps, doc, n, t, (unsigned)cnt);
	if (r != cnt) {
		free(t);
		return -EINVAL;
	}
	*out = t;
	*ntok = cnt;
	return 0;
}

/* jsmn string spans exclude the quotes; ours include them. */
static size_t tok_off(const jsmntok_t *t)
{
	return (size_t)t->start - (t->type == JSMN_STRING ? 1 : 0);
}

static size_t tok_end(const jsmntok_t *t)
{
	return (size_t)t->end + (t->type == JSMN_STRING ? 1 : 0);
}

/* Index of the token after value v and all its descendants.  Tokens are
 * in document order and a descendant starts before its ancestor ends. */
static int skip_value(const jsmntok_t *t, int ntok, int v)
{
	int k = v + 1;

	while (k < ntok && t[k].start < t[v].end)
		k++;
	return k;
}

typedef struct walk_res {
	size_t off, len;  /* found: span of the value */
	size_t elem_off;  /* found: where its member (key) or element starts */
	int add;          /* not found, but may be added as a member */
	size_t ins_off;   /* where to insert the new member */
	int empty;        /* the object had no members */
	step last;        /* the member step to add */
	int tok;          /* found: the value's token */
	size_t steps;     /* path steps walked (scan_walk): containers around the value */
} walk_res;

/* allow_add: a missing final member of an existing object is reported as
 * res->add instead of -ENOENT. */
static int walk(const char *doc, const jsmntok_t *t, int ntok, const char *path,
		size_t pathlen, int allow_add, walk_res *res)
{
	size_t pos = 1;
	int cur = 0;
	step st;
	int rc;

	while ((rc = path_next(path, pathlen, &pos, &st)) > 0) {
		int j = cur + 1, k;

		if (st.kind == STEP_WILD || st.desc)
			return -EINVAL; /* several matches: only reads take them */
		if (st.kind == STEP_MEMBER) {
			int found = -1, found_key = -1;
			size_t last_end = (size_t)t[cur].start + 1;

			if (t[cur].type != JSMN_OBJECT)
				return -ENOENT;
			for (k = 0; k < t[cur].size; k++) {
				if (j + 1 >= ntok || t[j].type != JSMN_STRING)
					return -EINVAL; /* not on validated text */
				/* No break: with duplicate names the last one
				 * wins, as in Python, jq and RedisJSON (and as a
				 * reader of the whole document sees it). */
				if (name_matches(&st, doc + t[j].start,
						 (size_t)(t[j].end - t[j].start)))
					found = j + 1, found_key = j;
				last_end = tok_end(&t[j + 1]);
				j = skip_value(t, ntok, j + 1);
			}
			if (found < 0) {
				if (!allow_add || pos < pathlen)
					return -ENOENT;
				res->add = 1;
				res->ins_off = last_end;
				res->empty = t[cur].size == 0;
				res->last = st;
				return 0;
			}
			cur = found;
			res->elem_off = tok_off(&t[found_key]);
		} else {
			if (t[cur].type != JSMN_ARRAY)
				return -ENOENT;
			if (st.neg) {
				if (st.index > (size_t)t[cur].size)
					return -ENOENT;
				st.index = (size_t)t[cur].size - st.index;
			}
			if (st.index >= (size_t)t[cur].size)
				return -ENOENT;
			for (k = 0; (size_t)k < st.index; k++) {
				if (j >= ntok)
					return -EINVAL;
				j = skip_value(t, ntok, j);
			}
			if (j >= ntok)
				return -EINVAL;
			cur = j;
			res->elem_off = tok_off(&t[j]);
		}
	}
	if (rc < 0)
		return rc;
	res->add = 0;
	res->tok = cur;
	res->off = tok_off(&t[cur]);
	res->len = tok_end(&t[cur]) - res->off;
	return 0;
}

/* Span of p without RFC whitespace on either side. */
static void trim(const char *p, size_t n, size_t *off, size_t *len)
{
	size_t a = 0, b = n;

	while (a < b && is_ws((unsigned char)p[a]))
		a++;
	while (b > a && is_ws((unsigned char)p[b - 1]))
		b--;
	*off = a;
	*len = b - a;
}

/* Tokenize doc and walk path through it (allow_add: a missing last member
 * may be added, for set).  0 with *res filled, or -errno. */
static int resolve(const char *doc, size_t n, const char *path, size_t pathlen, int allow_add,
                   walk_res *res)
{
	jsmntok_t *t;
	int ntok;
	int rc = tokenize(doc, n, &t, &ntok);
	if (rc < 0)
		return rc;
	memset(res, 0, sizeof(*res));
	rc = walk(doc, t, ntok, path, pathlen, allow_add, res);
	free(t);
	return rc;
}

/* What every path read checks first: the path's syntax, the document's
 * size (jsmn's int offsets) and that it is JSON (checked, not trusted). */
static int doc_path_ok(const char *doc, size_t n, const char *path, size_t pathlen)
{
	int rc = mf_json_path_check(path, pathlen);
	if (rc < 0)
		return rc;
	if (n > INT_MAX)
		return -E2BIG;
	return mf_json_validate(doc, n, NULL, NULL) < 0 ? -EINVAL : 0;
}

int mf_json_get_path(const char *doc, size_t n, const char *path, size_t pathlen,
		     size_t *out_off, size_t *out_len)
{
	walk_res res;
	int rc;

	rc = doc_path_ok(doc, n, path, pathlen);
	if (rc < 0)
		return rc;
	if (pathlen == 1) {
		trim(doc, n, out_off, out_len);
		return 0;
	}
	rc = resolve(doc, n, path, pathlen, 0, &res);
	if (rc < 0)
		return rc;
	*out_off = res.off;
	*out_len = res.len;
	return 0;
}

/* Write the decoded path name as JSON string content (no quotes). Returns
 * the byte count; with dst == NULL only counts. */
static size_t emit_name(const step *st, char *dst)
{
	static const char hexd[] = "0123456789abcdef";
	pcur c = { (const unsigned char *)st->name, st->namelen, 0, st->quoted };
	size_t n = 0;
	int b;

	while ((b = pcur_next(&c)) >= 0) {
		if (b == '"' || b == '\\') {
			if (dst) {
				dst[n] = '\\';
				dst[n + 1] = (char)b;
			}
			n += 2;
		} else if (b < 0x20) {
			if (dst) {
				memcpy(dst + n, "\\u00", 4);
				dst[n + 4] = hexd[b >> 4];
				dst[n + 5] = hexd[b & 15];
			}
			n += 6;
		} else {
			if (dst)
				dst[n] = (char)b;
			n++;
		}
	}
	return n;
}

/* A set's arguments: a valid path, and one JSON value that fits. */
static int set_args_check(const char *path, size_t pathlen, const char *val, size_t vallen)
{
	int rc = mf_json_path_check(path, pathlen);
	if (rc < 0)
		return rc;
	if (mf_json_validate(val, vallen, NULL, NULL) < 0)
		return -EINVAL;
	return vallen > INT_MAX ? -E2BIG : 0;
}

/* Where set_emit splices (doc kept up to pre and from post_off on) and the
 * result's length; -E2BIG past INT_MAX (n and vlen are each <= INT_MAX and
 * the name is bounded by 6 * the path's length, so INT_MAX is the check). */
static int set_layout(const walk_res *res, size_t n, size_t vlen, size_t *pre, size_t *post_off,
                      size_t *total)
{
	if (res->add) {
		size_t nm = emit_name(&res->last, NULL);
		if (nm > INT_MAX)
			return -E2BIG;
		*pre = *post_off = res->ins_off;
		*total = n + (res->empty ? 0 : 1) + 2 + nm + 1 + vlen;
	} else {
		*pre = res->off;
		*post_off = res->off + res->len;
		*total = n - res->len + vlen;
	}
	return *total > INT_MAX ? -E2BIG : 0;
}

/* Write the document with the value v[0..vlen) set where res says: doc up
 * to pre, the new member's name if res adds one, the value, then doc from
 * post_off on, NUL-terminated.  buf holds the total the caller computed. */
static void set_emit(char *buf, const char *doc, size_t n, size_t pre, size_t post_off,
                     const walk_res *res, const char *v, size_t vlen)
{
	char *w = buf;
	memcpy(w, doc, pre);
	w += pre;
	if (res->add) {
		if (!res->empty)
			*w++ = ',';
		*w++ = '"';
		w += emit_name(&res->last, w);
		*w++ = '"';
		*w++ = ':';
	}
	memcpy(w, v, vlen);
	w += vlen;
	memcpy(w, doc + post_off, n - post_off);
	w += n - post_off;
	*w = '\0';
}

int mf_json_set_path(const char *doc, size_t n, const char *path, size_t pathlen,
		     const char *val, size_t vallen, char **out, size_t *outlen)
{
	size_t voff, vlen, total, pre, post_off;
	walk_res res;
	char *buf;
	int rc;

	rc = set_args_check(path, pathlen, val, vallen);
	if (rc < 0)
		return rc;

	if (pathlen == 1) {
		buf = malloc(vallen + 1);
		if (buf == NULL)
			return -ENOMEM;
		memcpy(buf, val, vallen);
		buf[vallen] = '\0';
		*out = buf;
		*outlen = vallen;
		return 0;
	}

	if (n > INT_MAX)
		return -E2BIG;
	if (mf_json_validate(doc, n, NULL, NULL) < 0)
		return -EINVAL;
	trim(val, vallen, &voff, &vlen);
	rc = resolve(doc, n, path, pathlen, 1, &res);
	if (rc < 0)
		return rc;

	/* Sizes: n and vlen are each <= INT_MAX and the name is bounded by
	 * 6 * pathlen, so the sums below are checked only against INT_MAX. */
	if (set_layout(&res, n, vlen, &pre, &post_off, &total) < 0)
		return -E2BIG;

	buf = malloc(total + 1);
	if (buf == NULL)
		return -ENOMEM;
	set_emit(buf, doc, n, pre, post_off, &res, val + voff, vlen);

	/* Both inputs were valid, so only the combined nesting depth can
	 * make the result invalid; checking the whole result also guards
	 * against any splicing mistake ever reaching storage. */
	if (mf_json_validate(buf, total, NULL, NULL) < 0) {
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*outlen = total;
	return 0;
}

/* The bytes [*a, *b) that deleting the member (key through value) or
 * element at [elem_off, end) removes: it, with the comma that follows it,
 * or else the one before it (last of several); an only member leaves its
 * container empty.  Whitespace outside the cut stays where it was. */
static void del_span(const char *doc, size_t n, size_t elem_off, size_t end, size_t *a, size_t *b)
{
	size_t k = end;
	*a = elem_off;
	*b = end;
	while (k < n && is_ws((unsigned char)doc[k]))
		k++;
	if (k < n && doc[k] == ',') {
		/* and the blank after the comma: "[1, 2, 3]" -> "[1, 3]" */
		*b = k + 1;
		while (*b < n && is_ws((unsigned char)doc[*b]))
			(*b)++;
	} else {
		k = *a;
		while (k > 0 && is_ws((unsigned char)doc[k - 1]))
			k--;
		if (k > 0 && doc[k - 1] == ',')
			*a = k - 1;
	}
}

int mf_json_del_path(const char *doc, size_t n, const char *path, size_t pathlen,
		     char **out, size_t *outlen)
{
	size_t a, b, total;
	jsmntok_t *t;
	walk_res res;
	char *buf;
	int ntok, rc;

	rc = mf_json_path_check(path, pathlen);
	if (rc < 0)
		return rc;
	if (pathlen == 1)
		return -EINVAL; /* the root is not a member: the caller deletes the key */
	if (n > INT_MAX)
		return -E2BIG;
	if (mf_json_validate(doc, n, NULL, NULL) < 0)
		return -EINVAL;
	rc = tokenize(doc, n, &t, &ntok);
	if (rc < 0)
		return rc;
	memset(&res, 0, sizeof(res));
	rc = walk(doc, t, ntok, path, pathlen, 0, &res);
	free(t);
	if (rc < 0)
		return rc;
	del_span(doc, n, res.elem_off, res.off + res.len, &a, &b);
	total = n - (b - a);
	buf = malloc(total + 1);
	if (buf == NULL)
		return -ENOMEM;
	memcpy(buf, doc, a);
	memcpy(buf + a, doc + b, n - b);
	buf[total] = '\0';
	/* As in set: never let a splicing mistake reach storage. */
	if (mf_json_validate(buf, total, NULL, NULL) < 0) {
		free(buf);
		return -EINVAL;
	}
	*out = buf;
	*outlen = total;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Reads with several matches ([*], .., .*)                            */
/* ------------------------------------------------------------------ */

int mf_json_path_multi(const char *path, size_t pathlen)
{
	int multi;

	if (path_walk(path, pathlen, &multi) < 0)
		return -EINVAL;
	return multi;
}

/* A growing list of token indices. */
typedef struct tlist {
	int *v;
	size_t n, cap;
} tlist;

static int tl_push(tlist *l, int k)
{
	if (l->n == l->cap) {
		size_t c = l->cap ? l->cap * 2 : 16;
		int *nv = realloc(l->v, c * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		l->v = nv;
		l->cap = c;
	}
	l->v[l->n++] = k;
	return 0;
}

/* Apply one (non-descending) step to container token c, adding matches in
 * document order. */
static int step_matches(const char *doc, const jsmntok_t *t, int ntok, int c, const step *st,
                        tlist *out)
{
	int j = c + 1, k, rc = 0;

	if (t[c].type == JSMN_OBJECT && st->kind != STEP_INDEX) {
		int found = -1;

		for (k = 0; k < t[c].size && rc == 0; k++) {
			if (j + 1 >= ntok)
				return -EINVAL;
			if (st->kind == STEP_WILD)
				rc = tl_push(out, j + 1);
			else if (name_matches(st, doc + t[j].start, (size_t)(t[j].end - t[j].start)))
				found = j + 1; /* the last duplicate, as everywhere */
			j = skip_value(t, ntok, j + 1);
		}
		if (found >= 0 && rc == 0)
			rc = tl_push(out, found);
	} else if (t[c].type == JSMN_ARRAY && st->kind != STEP_MEMBER) {
		size_t want = st->index, size = (size_t)t[c].size;

		if (st->kind == STEP_INDEX && st->neg) {
			if (want > size)
				return 0;
			want = size - want;
		}
		for (k = 0; (size_t)k < size && rc == 0; k++) {
			if (j >= ntok)
				return -EINVAL;
			if (st->kind == STEP_WILD || (size_t)k == want)
				rc = tl_push(out, j);
			j = skip_value(t, ntok, j);
		}
	}
	return rc;
}

int mf_json_query(const char *doc, size_t n, const char *path, size_t pathlen, char **out,
                  size_t *outlen)
{
	jsmntok_t *t;
	int ntok, rc;
	tlist cur = {0}, next = {0};
	size_t pos = 1;
	step st;

	rc = doc_path_ok(doc, n, path, pathlen);
	if (rc < 0)
		return rc;
	rc = tokenize(doc, n, &t, &ntok);
	if (rc < 0)
		return rc;
	rc = tl_push(&cur, 0);
	while (rc == 0 && (rc = path_next(path, pathlen, &pos, &st)) > 0) {
		rc = 0;
		next.n = 0;
		for (size_t i = 0; i < cur.n && rc == 0; i++) {
			int c = cur.v[i];
			if (!st.desc) {
				rc = step_matches(doc, t, ntok, c, &st, &next);
				continue;
			}
			/* ..: c and every container below it, in document order
			 * (tokens are in pre-order). */
			int end = skip_value(t, ntok, c);
			for (int k = c; k < end && rc == 0; k++)
				if (t[k].type == JSMN_OBJECT || t[k].type == JSMN_ARRAY)
					rc = step_matches(doc, t, ntok, k, &st, &next);
		}
		tlist sw = cur;
		cur = next;
		next = sw;
	}
	if (rc == 0) {
		size_t total = 2;
		for (size_t i = 0; i < cur.n; i++)
			total += tok_end(&t[cur.v[i]]) - tok_off(&t[cur.v[i]]) + 1;
		char *b = malloc(total + 1);
		if (!b) {
			rc = -ENOMEM;
		} else {
			size_t w = 0;
			b[w++] = '[';
			for (size_t i = 0; i < cur.n; i++) {
				size_t o = tok_off(&t[cur.v[i]]), l = tok_end(&t[cur.v[i]]) - o;
				if (i)
					b[w++] = ',';
				memcpy(b + w, doc + o, l);
				w += l;
			}
			b[w++] = ']';
			b[w] = '\0';
			*out = b;
			*outlen = w;
		}
	}
	free(cur.v);
	free(next.v);
	free(t);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Atomic updates: NUMINCRBY, ARRAPPEND, STRAPPEND                     */
/* ------------------------------------------------------------------ */

/* A JSON number that is an integer (no fraction, no exponent). */
static int is_int_text(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == '.' || p[i] == 'e' || p[i] == 'E')
			return 0;
	return 1;
}

/* Shortest text that reads back as v, with ".0" when it would look like
 * an integer (a float stays a float, as in RedisJSON). */
static size_t format_double(double v, char *buf)
{
	int l = 0;
	for (int prec = 1; prec <= 17; prec++) {
		l = snprintf(buf, MF_JSON_NUM_MAX, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	if (!strpbrk(buf, ".eE")) {
		memcpy(buf + l, ".0", 3);
		l += 2;
	}
	return (size_t)l;
}

int mf_json_numincrby(const char *doc, size_t n, const char *path, size_t pathlen,
                      const char *inc, size_t inclen, char **out, size_t *outlen, char *num,
                      size_t *numlen)
{
	size_t ioff, ilen;
	walk_res res;
	int rc;

	trim(inc, inclen, &ioff, &ilen);
	if (mf_json_validate(inc, inclen, NULL, NULL) < 0 || ilen == 0 ||
	    !(inc[ioff] == '-' || is_digit((unsigned char)inc[ioff])) || ilen >= 64)
		return -EINVAL; /* not a number */
	rc = doc_path_ok(doc, n, path, pathlen);
	if (rc < 0)
		return rc;
	if (pathlen == 1) {
		trim(doc, n, &res.off, &res.len);
	} else {
		rc = resolve(doc, n, path, pathlen, 0, &res);
		if (rc < 0)
			return rc;
	}
	const char *v = doc + res.off;
	if (res.len == 0 || res.len >= 64 || !(v[0] == '-' || is_digit((unsigned char)v[0])))
		return -EDOM; /* the member is not a number */
	char a[64], b[64];
	memcpy(a, v, res.len);
	a[res.len] = '\0';
	memcpy(b, inc + ioff, ilen);
	b[ilen] = '\0';
	long long x, y, z;
	char *e1, *e2;
	errno = 0;
	x = strtoll(a, &e1, 10);
	y = strtoll(b, &e2, 10);
	if (is_int_text(a, res.len) && is_int_text(b, ilen) && errno == 0 && !*e1 && !*e2 &&
	    !__builtin_add_overflow(x, y, &z)) {
		*numlen = (size_t)snprintf(num, MF_JSON_NUM_MAX, "%lld", z);
	} else {
		double d = strtod(a, NULL) + strtod(b, NULL);
		if (d != d || d - d != 0)
			return -ERANGE; /* NaN or infinite: not JSON */
		*numlen = format_double(d, num);
	}
	return mf_json_set_path(doc, n, path, pathlen, num, *numlen, out, outlen);
}

/* Bytes of a JSON string's content once decoded (s: inside the quotes). */
static uint64_t decoded_len(const char *s, size_t n)
{
	kcur c = { (const unsigned char *)s, n, 0, { 0 }, 0, 0 };
	uint64_t k = 0;
	while (kcur_next(&c) >= 0)
		k++;
	return k;
}

/* Resolve path (single match) to a token index; -EDOM (nothing left to
 * free) if the value there is not of type `want`. */
static int resolve_tok(const char *doc, size_t n, const char *path, size_t pathlen,
                       jsmntype_t want, jsmntok_t **tp, int *ntokp, int *tok)
{
	int rc = doc_path_ok(doc, n, path, pathlen);
	if (rc < 0)
		return rc;
	rc = tokenize(doc, n, tp, ntokp);
	if (rc < 0)
		return rc;
	walk_res res;
	memset(&res, 0, sizeof res);
	rc = walk(doc, *tp, *ntokp, path, pathlen, 0, &res);
	if (rc < 0) {
		free(*tp);
		return rc;
	}
	if ((*tp)[res.tok].type != want) {
		free(*tp);
		return -EDOM;
	}
	*tok = res.tok;
	return 0;
}

/* doc with ins[0..ilen) inserted at off (malloc'd), validated. */
static int splice_in(const char *doc, size_t n, size_t off, const char *pre, size_t plen,
                     const char *ins, size_t ilen, char **out, size_t *outlen)
{
	size_t total = n + plen + ilen;
	if (total > INT_MAX)
		return -E2BIG;
	char *b = malloc(total + 1);
	if (!b)
		return -ENOMEM;
	memcpy(b, doc, off);
	memcpy(b + off, pre, plen);
	memcpy(b + off + plen, ins, ilen);
	memcpy(b + off + plen + ilen, doc + off, n - off);
	b[total] = '\0';
	if (mf_json_validate(b, total, NULL, NULL) < 0) { /* depth, or a splicing mistake */
		free(b);
		return -EINVAL;
	}
	*out = b;
	*outlen = total;
	return 0;
}

/* An update's argument: valid JSON whose value starts with `first` ('['
 * an array, '"' a string); its span without blanks in *off, *len. */
static int update_arg(const char *p, size_t n, char first, size_t *off, size_t *len)
{
	trim(p, n, off, len);
	if (mf_json_validate(p, n, NULL, NULL) < 0 || *len < 2 || p[*off] != first)
		return -EINVAL;
	return 0;
}

int mf_json_arrappend(const char *doc, size_t n, const char *path, size_t pathlen,
                      const char *vals, size_t vlen, char **out, size_t *outlen, uint64_t *newlen)
{
	size_t voff, vl;
	if (update_arg(vals, vlen, '[', &voff, &vl) < 0)
		return -EINVAL;
	jsmntok_t *vt;
	int nvt, rc = tokenize(vals + voff, vl, &vt, &nvt);
	if (rc < 0)
		return rc;
	int added = vt[0].size;
	free(vt);
	/* The values' text: inside the brackets, blanks trimmed. */
	size_t ioff, ilen;
	trim(vals + voff + 1, vl - 2, &ioff, &ilen);
	const char *ins = vals + voff + 1 + ioff;
	if (added == 0)
		return -EINVAL;
	jsmntok_t *t;
	int ntok, a;
	rc = resolve_tok(doc, n, path, pathlen, JSMN_ARRAY, &t, &ntok, &a);
	if (rc < 0)
		return rc;
	int size = t[a].size;
	size_t at = tok_off(&t[a]) + 1; /* empty: right after '[' */
	int j = a + 1;
	for (int k = 0; k < size; k++) {
		at = tok_end(&t[j]); /* after the last element */
		j = skip_value(t, ntok, j);
	}
	free(t);
	rc = splice_in(doc, n, at, ",", size ? 1 : 0, ins, ilen, out, outlen);
	if (rc == 0)
		*newlen = (uint64_t)size + (uint64_t)added;
	return rc;
}

int mf_json_strappend(const char *doc, size_t n, const char *path, size_t pathlen,
                      const char *str, size_t slen, char **out, size_t *outlen, uint64_t *newlen)
{
	size_t soff, sl;
	if (update_arg(str, slen, '"', &soff, &sl) < 0)
		return -EINVAL;
	jsmntok_t *t;
	int ntok, a;
	int rc = resolve_tok(doc, n, path, pathlen, JSMN_STRING, &t, &ntok, &a);
	if (rc < 0)
		return rc;
	size_t at = (size_t)t[a].end; /* the closing quote */
	uint64_t before = decoded_len(doc + t[a].start, (size_t)(t[a].end - t[a].start));
	free(t);
	rc = splice_in(doc, n, at, "", 0, str + soff + 1, sl - 2, out, outlen);
	if (rc == 0)
		*newlen = before + decoded_len(str + soff + 1, sl - 2);
	return rc;
}

/* ---- one pass over a valid document ------------------------------------ */

static size_t blank_end(const char *d, size_t n, size_t i)
{
	while (i < n && is_ws((unsigned char)d[i]))
		i++;
	return i;
}

/* d[i] is the opening quote of a string: the index after its closing one.
 * A quote is closing when an even number of backslashes precede it. */
static size_t skip_string(const char *d, size_t n, size_t i)
{
	size_t from = i + 1;
	for (;;) {
		const char *q = from < n ? memchr(d + from, '"', n - from) : NULL;
		if (!q)
			return n;
		size_t k = (size_t)(q - d), bs = 0;
		while (k - bs > i + 1 && d[k - bs - 1] == '\\')
			bs++;
		if (bs % 2 == 0)
			return k + 1;
		from = k + 1;
	}
}

/* The next quote or bracket at or after d[i] (n if none): what skipping a
 * container has to look at.  Sixteen bytes at a time where SSE2 is there
 * (every x86-64), so skipping a big array of numbers is not a byte loop. */
static size_t next_struct(const char *d, size_t n, size_t i)
{
#ifdef __SSE2__
	const __m128i q = _mm_set1_epi8('"'), ob = _mm_set1_epi8('{'), cb = _mm_set1_epi8('}');
	const __m128i os = _mm_set1_epi8('['), cs = _mm_set1_epi8(']');
	for (; i + 16 <= n; i += 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)(d + i));
		__m128i m = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, q), _mm_cmpeq_epi8(v, ob)),
		                         _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, cb),
		                                                   _mm_cmpeq_epi8(v, os)),
		                                      _mm_cmpeq_epi8(v, cs)));
		unsigned bits = (unsigned)_mm_movemask_epi8(m);
		if (bits)
			return i + (size_t)__builtin_ctz(bits);
	}
#endif
	while (i < n && d[i] != '"' && d[i] != '{' && d[i] != '}' && d[i] != '[' && d[i] != ']')
		i++;
	return i;
}

/* The value starting at d[i]: the index after it. */
static size_t scan_skip(const char *d, size_t n, size_t i)
{
	if (i >= n)
		return n;
	if (d[i] == '"')
		return skip_string(d, n, i);
	if (d[i] != '{' && d[i] != '[') {
		while (i < n && d[i] != ',' && d[i] != '}' && d[i] != ']' && !is_ws((unsigned char)d[i]))
			i++;
		return i;
	}
	size_t depth = 0;
	while ((i = next_struct(d, n, i)) < n) {
		char c = d[i];
		if (c == '"') {
			i = skip_string(d, n, i);
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if (--depth == 0)
			return i + 1;
		i++;
	}
	return n;
}

/* allow_add: a missing final member of an existing object is reported as
 * res->add instead of -ENOENT.  doc must be valid JSON (bounds are still
 * checked, so a mistake is -EINVAL, never a read past the end). */
static int scan_walk(const char *doc, size_t n, const char *path, size_t pathlen,
                     int allow_add, walk_res *res)
{
	size_t pos = 1, cur = blank_end(doc, n, 0);
	step st;
	int rc;
	memset(res, 0, sizeof *res);
	if (cur >= n)
		return -EINVAL; /* empty: the store's "no document yet" */
	while ((rc = path_next(path, pathlen, &pos, &st)) > 0) {
		res->steps++;
		if (st.kind == STEP_WILD || st.desc || st.neg)
			return -ENOTSUP; /* the tokenizing functions handle these */
		if (st.kind == STEP_MEMBER) {
			if (doc[cur] != '{')
				return -ENOENT;
			size_t i = blank_end(doc, n, cur + 1), last_end = cur + 1;
			size_t found = 0, found_key = 0;
			int any = 0, members = 0;
			while (i < n && doc[i] != '}') {
				if (doc[i] != '"')
					return -EINVAL; /* not on valid text */
				size_t kend = skip_string(doc, n, i);
				size_t v = blank_end(doc, n, blank_end(doc, n, kend) + 1); /* past ':' */
				size_t vend = scan_skip(doc, n, v);
				if (kend < i + 2 || v >= n)
					return -EINVAL;
				/* No break: with duplicate names the last one wins, as
				 * in Python, jq and RedisJSON. */
				if (name_matches(&st, doc + i + 1, kend - i - 2)) {
					found = v;
					found_key = i;
					any = 1;
				}
				last_end = vend;
				members++;
				i = blank_end(doc, n, vend);
				if (i < n && doc[i] == ',')
					i = blank_end(doc, n, i + 1);
			}
			if (i >= n)
				return -EINVAL;
			if (!any) {
				if (!allow_add || pos < pathlen)
					return -ENOENT;
				res->add = 1;
				res->ins_off = last_end;
				res->empty = members == 0;
				res->last = st;
				return 0;
			}
			cur = found;
			res->elem_off = found_key;
		} else {
			if (doc[cur] != '[')
				return -ENOENT;
			size_t i = blank_end(doc, n, cur + 1);
			if (i >= n || doc[i] == ']')
				return -ENOENT;
			for (size_t k = 0; k < st.index; k++) {
				i = blank_end(doc, n, scan_skip(doc, n, i));
				if (i >= n || doc[i] != ',')
					return i < n ? -ENOENT : -EINVAL; /* ']': out of range */
				i = blank_end(doc, n, i + 1);
			}
			if (i >= n)
				return -EINVAL;
			cur = i;
			res->elem_off = i;
		}
	}
	if (rc < 0)
		return rc;
	res->add = 0;
	res->off = cur;
	res->len = scan_skip(doc, n, cur) - cur;
	return 0;
}

/* Container nesting of a valid value (0 for a scalar). */
static size_t value_depth(const char *d, size_t n)
{
	size_t depth = 0, max = 0;
	for (size_t i = 0; i < n;) {
		char c = d[i];
		if (c == '"') {
			i = skip_string(d, n, i);
			continue;
		}
		if (c == '{' || c == '[') {
			if (++depth > max)
				max = depth;
		} else if (c == '}' || c == ']') {
			depth--;
		}
		i++;
	}
	return max;
}

int mf_json_get_path_doc(const char *doc, size_t n, const char *path, size_t pathlen,
                         size_t *out_off, size_t *out_len)
{
	walk_res res;
	int rc = mf_json_path_check(path, pathlen);
	if (rc < 0)
		return rc;
	if (n > INT_MAX)
		return -E2BIG;
	if (pathlen == 1) {
		trim(doc, n, out_off, out_len);
		return *out_len ? 0 : -EINVAL; /* empty: no document yet */
	}
	rc = scan_walk(doc, n, path, pathlen, 0, &res);
	if (rc == -ENOTSUP) /* [*], .., [-N]: the general function */
		return mf_json_get_path(doc, n, path, pathlen, out_off, out_len);
	if (rc < 0)
		return rc;
	*out_off = res.off;
	*out_len = res.len;
	return 0;
}

/* The result buffer: from the caller's allocator (the store builds its
 * value buffer directly, no copy of a 50 MB document), else malloc. */
static char *out_alloc(mf_json_alloc alloc, void *actx, size_t n)
{
	return alloc ? alloc(actx, n) : malloc(n);
}

int mf_json_set_path_doc(const char *doc, size_t n, const char *path, size_t pathlen,
                         const char *val, size_t vallen, char **out, size_t *outlen,
                         mf_json_alloc alloc, void *actx)
{
	size_t voff, vlen, total, pre, post_off;
	walk_res res;
	char *buf;
	int rc;

	rc = set_args_check(path, pathlen, val, vallen);
	if (rc < 0)
		return rc;

	if (pathlen == 1) {
		buf = out_alloc(alloc, actx, vallen + 1);
		if (buf == NULL)
			return -ENOMEM;
		memcpy(buf, val, vallen);
		buf[vallen] = '\0';
		*out = buf;
		*outlen = vallen;
		return 0;
	}

	if (n > INT_MAX)
		return -E2BIG;
	trim(val, vallen, &voff, &vlen);
	rc = scan_walk(doc, n, path, pathlen, 1, &res);
	if (rc == -ENOTSUP && !alloc)
		return mf_json_set_path(doc, n, path, pathlen, val, vallen, out, outlen);
	if (rc < 0)
		return rc == -ENOTSUP ? -EINVAL : rc;
	/* Both inputs are valid, so only the combined nesting depth can make
	 * the result invalid: the value goes inside res.steps containers. */
	if (res.steps + value_depth(val + voff, vlen) > MF_JSON_MAX_DEPTH)
		return -EINVAL;

	/* Sizes: n and vlen are each <= INT_MAX and the name is bounded by
	 * 6 * pathlen, so the sums below are checked only against INT_MAX. */
	if (set_layout(&res, n, vlen, &pre, &post_off, &total) < 0)
		return -E2BIG;

	buf = out_alloc(alloc, actx, total + 1);
	if (buf == NULL)
		return -ENOMEM;
	set_emit(buf, doc, n, pre, post_off, &res, val + voff, vlen);
	*out = buf;
	*outlen = total;
	return 0;
}

int mf_json_del_path_doc(const char *doc, size_t n, const char *path, size_t pathlen,
                         char **out, size_t *outlen, mf_json_alloc alloc, void *actx)
{
	size_t a, b, total;
	walk_res res;
	char *buf;
	int rc = mf_json_path_check(path, pathlen);
	if (rc < 0)
		return rc;
	if (pathlen == 1)
		return -EINVAL;
	if (n > INT_MAX)
		return -E2BIG;
	rc = scan_walk(doc, n, path, pathlen, 0, &res);
	if (rc == -ENOTSUP && !alloc)
		return mf_json_del_path(doc, n, path, pathlen, out, outlen);
	if (rc < 0)
		return rc == -ENOTSUP ? -EINVAL : rc;
	del_span(doc, n, res.elem_off, res.off + res.len, &a, &b);
	total = n - (b - a);
	buf = out_alloc(alloc, actx, total + 1);
	if (buf == NULL)
		return -ENOMEM;
	memcpy(buf, doc, a);
	memcpy(buf + a, doc + b, n - b);
	buf[total] = '\0';
	*out = buf;
	*outlen = total;
	return 0;
}
