/*
 * set.h — the members of a set value (type MF_T_SET), and the number rules
 * of counters (INCRBY, INCRBYFLOAT).  Internal to store/: the store owns
 * every mf_set and calls these under its lock; nothing here locks.
 *
 * A set is a chained hash table of members (any bytes but '\n': the value's
 * text, which the mount shows and snapshots store, is one member per line),
 * so membership, add and remove are O(1) on average.  The text is derived
 * from it (mf_set_text), in table order: sets are unordered.
 */
#ifndef MF_SET_H
#define MF_SET_H

#include "buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mf_set mf_set;

mf_set *mf_set_new(void);
void mf_set_free(mf_set *s);
uint64_t mf_set_count(const mf_set *s);
/* Bytes of the text: the sum of (member length + 1). */
uint64_t mf_set_bytes(const mf_set *s);
bool mf_set_has(const mf_set *s, const char *m, size_t n);
/* 1 added, 0 was there already. */
int mf_set_add(mf_set *s, const char *m, size_t n);
/* 1 removed, 0 was not there. */
int mf_set_del(mf_set *s, const char *m, size_t n);
/* The members as text, one per line. */
mf_slice mf_set_text(const mf_set *s);

/* Call fn on each line of p[0..n) (an unterminated last line too). */
void mf_lines_each(const char *p, size_t n, void (*fn)(void *ctx, const char *l, size_t len),
                   void *ctx);

/* The hash the store uses for keys and members (FNV-1a, folded). */
uint64_t mf_hash_bytes(const char *p, size_t n);

/* ---- counters ----
 * An integer value is Redis's: optional '-', decimal digits, no leading
 * zero or '+', fits int64; the mount may add one '\n' after it (echo 5 >
 * /kv/c), which the result keeps.  -EINVAL: not an integer. */
int mf_num_parse_ll(const char *p, size_t n, long long *out, bool *nl);
/* v + delta, or -ERANGE on overflow. */
int mf_num_add_ll(long long v, long long delta, long long *out);
/* A float as Redis's string2ld accepts it (strtold, no leading space, no
 * trailing bytes, not NaN, no overflow); the mount's trailing '\n' as above. */
int mf_num_parse_ld(const char *p, size_t n, long double *out, bool *nl);
/* Redis's "human" long double text: %.17Lf with trailing zeros cut.
 * Returns the length written into buf (at least 5200 bytes). */
#define MF_NUM_LD_BUF 5200
size_t mf_num_format_ld(long double v, char *buf);

#endif
