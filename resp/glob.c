/*
 * glob.c — KEYS / SCAN MATCH patterns, Redis's glob dialect: `*` any run,
 * `?` one byte, `[abc]`, `[^abc]`, `[a-z]`, and `\` quoting the next byte.
 *
 * Iterative, with one backtrack point (the last `*`): a `*` can only ever
 * need to swallow more, so remembering the latest one is enough, and the
 * time is O(len(pat) * len(s)) at worst — no exponential blow-up on
 * patterns like a*a*a*a*b.
 */
#include "resp_int.h"

#include <string.h>

/* Does class pat[*pi..] (just after '[') match byte c?  Advances *pi past
 * the closing ']' (or to the end if it is missing, as Redis does). */
static bool class_match(const char *pat, size_t plen, size_t *pi, unsigned char c)
{
	size_t i = *pi;
	bool neg = false, hit = false;
	if (i < plen && pat[i] == '^') {
		neg = true;
		i++;
	}
	while (i < plen && pat[i] != ']') {
		if (pat[i] == '\\' && i + 1 < plen) {
			if ((unsigned char)pat[i + 1] == c)
				hit = true;
			i += 2;
		} else if (i + 2 < plen && pat[i + 1] == '-' && pat[i + 2] != ']') {
			unsigned char a = (unsigned char)pat[i], b = (unsigned char)pat[i + 2];
			if (a > b) {
				unsigned char t = a;
				a = b;
				b = t;
			}
			if (c >= a && c <= b)
				hit = true;
			i += 3;
		} else {
			if ((unsigned char)pat[i] == c)
				hit = true;
			i++;
		}
	}
	if (i < plen)
		i++; /* the ']' */
	*pi = i;
	return neg ? !hit : hit;
}

bool mf_glob_match(const char *pat, size_t plen, const char *s, size_t slen)
{
	size_t p = 0, i = 0;
	size_t star_p = (size_t)-1, star_i = 0;
	while (i < slen) {
		if (p < plen) {
			char pc = pat[p];
			if (pc == '*') {
				while (p < plen && pat[p] == '*')
					p++;
				if (p == plen)
					return true;
				star_p = p;
				star_i = i;
				continue;
			}
			if (pc == '?') {
				p++;
				i++;
				continue;
			}
			if (pc == '[') {
				size_t q = p + 1;
				if (class_match(pat, plen, &q, (unsigned char)s[i])) {
					p = q;
					i++;
					continue;
				}
			} else {
				size_t q = p;
				if (pc == '\\' && p + 1 < plen)
					q++;
				if (pat[q] == s[i]) {
					p = q + 1;
					i++;
					continue;
				}
			}
		}
		/* Mismatch: let the last '*' swallow one more byte. */
		if (star_p == (size_t)-1)
			return false;
		p = star_p;
		i = ++star_i;
	}
	while (p < plen && pat[p] == '*')
		p++;
	return p == plen;
}
