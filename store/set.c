/*
 * set.c — set members as a hash table, and the number rules of counters.
 * See set.h.
 */
#include "set.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct member {
	struct member *next;
	uint64_t hash;
	size_t len;
	char b[];
} member;

struct mf_set {
	member **tab;
	size_t nbuckets;    /* power of two */
	uint64_t n;
	uint64_t bytes;
};

/* FNV-1a: members and keys come from the mount's user or local RESP
 * clients (AUTH is required off loopback); chains stay short on average
 * because tables double at load factor 1. */
uint64_t mf_hash_bytes(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

mf_set *mf_set_new(void)
{
	mf_set *s = mf_xmalloc(sizeof *s);
	memset(s, 0, sizeof *s);
	s->nbuckets = 8;
	s->tab = mf_xmalloc(s->nbuckets * sizeof *s->tab);
	memset(s->tab, 0, s->nbuckets * sizeof *s->tab);
	return s;
}

void mf_set_free(mf_set *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->nbuckets; i++)
		for (member *m = s->tab[i], *nx; m; m = nx) {
			nx = m->next;
			free(m);
		}
	free(s->tab);
	free(s);
}

uint64_t mf_set_count(const mf_set *s)
{
	return s->n;
}

uint64_t mf_set_bytes(const mf_set *s)
{
	return s->bytes;
}

static member **slot(const mf_set *s, const char *p, size_t n, uint64_t h)
{
	member **pp = &s->tab[h & (s->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->hash == h && (*pp)->len == n && memcmp((*pp)->b, p, n) == 0)
			break;
	return pp;
}

bool mf_set_has(const mf_set *s, const char *m, size_t n)
{
	return *slot(s, m, n, mf_hash_bytes(m, n)) != NULL;
}

/* Move every member to a table of nb buckets (a power of two); on no
 * memory keep the old one: longer or emptier chains, still correct. */
static void rehash(mf_set *s, size_t nb)
{
	member **nt = calloc(nb, sizeof *nt);
	if (!nt)
		return;
	for (size_t i = 0; i < s->nbuckets; i++)
		for (member *m = s->tab[i], *nx; m; m = nx) {
			nx = m->next;
			m->next = nt[m->hash & (nb - 1)];
			nt[m->hash & (nb - 1)] = m;
		}
	free(s->tab);
	s->tab = nt;
	s->nbuckets = nb;
}

int mf_set_add(mf_set *s, const char *p, size_t n)
{
	uint64_t h = mf_hash_bytes(p, n);
	member **pp = slot(s, p, n, h);
	if (*pp)
		return 0;
	member *m = mf_xmalloc(sizeof *m + (n ? n : 1));
	m->hash = h;
	m->len = n;
	memcpy(m->b, p, n);
	m->next = NULL;
	*pp = m;
	s->n++;
	s->bytes += n + 1;
	if (s->n > s->nbuckets)
		rehash(s, s->nbuckets * 2);
	return 1;
}

int mf_set_del(mf_set *s, const char *p, size_t n)
{
	member **pp = slot(s, p, n, mf_hash_bytes(p, n));
	member *m = *pp;
	if (!m)
		return 0;
	*pp = m->next;
	s->n--;
	s->bytes -= n + 1;
	free(m);
	/* Shrink when a quarter full, so a set emptied by SREM gives memory
	 * back (not below the initial size). */
	if (s->nbuckets > 8 && s->n < s->nbuckets / 4)
		rehash(s, s->nbuckets / 2);
	return 1;
}

void mf_lines_each(const char *p, size_t n, void (*fn)(void *ctx, const char *l, size_t len),
                   void *ctx)
{
	size_t i = 0;
	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t l = nl ? (size_t)(nl - (p + i)) : n - i;
		fn(ctx, p + i, l);
		i += l + 1;
	}
}

mf_slice mf_set_text(const mf_set *s)
{
	if (s->bytes == 0)
		return MF_SLICE_EMPTY;
	mf_slice t = mf_slice_alloc(s->bytes, s->bytes);
	char *o = t.buf->data;
	for (size_t i = 0; i < s->nbuckets; i++)
		for (const member *m = s->tab[i]; m; m = m->next) {
			memcpy(o, m->b, m->len);
			o[m->len] = '\n';
			o += m->len + 1;
		}
	return t;
}

/* ---- counters ---- */

/* The mount's trailing newline (echo 5 > /kv/c): one, and only after
 * something. */
static size_t strip_nl(const char *p, size_t n, bool *nl)
{
	*nl = n > 1 && p[n - 1] == '\n';
	return *nl ? n - 1 : n;
}

int mf_num_parse_ll(const char *p, size_t n, long long *out, bool *nl)
{
	n = strip_nl(p, n, nl);
	/* Redis's string2ll: at most 20 chars, no '+', no spaces, no leading
	 * zeros, "-0" refused. */
	if (n == 0 || n > 20)
		return -EINVAL;
	if (n == 1 && p[0] == '0') {
		*out = 0;
		return 0;
	}
	size_t i = 0;
	bool neg = p[0] == '-';
	if (neg)
		i++;
	if (i >= n || p[i] < '1' || p[i] > '9')
		return -EINVAL;
	unsigned long long v = 0;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -EINVAL;
		unsigned d = (unsigned)(p[i] - '0');
		if (v > (~0ULL - d) / 10)
			return -EINVAL;
		v = v * 10 + d;
	}
	if (neg) {
		if (v > (unsigned long long)LLONG_MAX + 1)
			return -EINVAL;
		*out = v == (unsigned long long)LLONG_MAX + 1 ? LLONG_MIN : -(long long)v;
	} else {
		if (v > (unsigned long long)LLONG_MAX)
			return -EINVAL;
		*out = (long long)v;
	}
	return 0;
}

int mf_num_add_ll(long long v, long long delta, long long *out)
{
	if (__builtin_add_overflow(v, delta, out))
		return -ERANGE;
	return 0;
}

int mf_num_parse_ld(const char *p, size_t n, long double *out, bool *nl)
{
	n = strip_nl(p, n, nl);
	char buf[MF_NUM_LD_BUF];
	if (n == 0 || n >= sizeof buf)
		return -EINVAL;
	memcpy(buf, p, n);
	buf[n] = '\0';
	if (memchr(buf, '\0', n) || buf[0] == ' ' || (buf[0] >= '\t' && buf[0] <= '\r'))
		return -EINVAL;
	char *end;
	errno = 0;
	long double v = strtold(buf, &end);
	if (*end || isnan(v) || errno == EINVAL ||
	    (errno == ERANGE && (v == HUGE_VALL || v == -HUGE_VALL || v == 0)))
		return -EINVAL;
	*out = v;
	return 0;
}

size_t mf_num_format_ld(long double v, char *buf)
{
	if (isinf(v)) {
		strcpy(buf, v > 0 ? "inf" : "-inf");
		return strlen(buf);
	}
	int l = snprintf(buf, MF_NUM_LD_BUF, "%.17Lf", v);
	if (l < 0 || l >= MF_NUM_LD_BUF)
		l = snprintf(buf, MF_NUM_LD_BUF, "%.17Lg", v); /* cannot be longer */
	size_t n = (size_t)l;
	if (memchr(buf, '.', n)) {
		while (n > 0 && buf[n - 1] == '0')
			n--;
		if (n > 0 && buf[n - 1] == '.')
			n--;
	}
	if (n == 2 && buf[0] == '-' && buf[1] == '0') {
		buf[0] = '0';
		n = 1;
	}
	buf[n] = '\0';
	return n;
}
