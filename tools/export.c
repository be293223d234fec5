/*
 * export.c — memflux-check --export DATADIR: the embedded store as Redis
 * commands, in the protocol `redis-cli --pipe` reads (RESP arrays of bulk
 * strings), so moving to a server or cluster is one pipe:
 *
 *   memflux-check --export DATADIR | redis-cli -h HOST -p PORT --pipe
 *
 * The data dir is recovered exactly as a mount recovers it (mf_db_open: the
 * same lock, so a mounted data dir is refused; a torn WAL tail is cut as a
 * mount would), then every key is written as
 *   DEL key                    (so a second import replaces, never doubles)
 *   SET key value              /kv and /json (a document is its JSON text)
 *   RPUSH key e1 e2 ...        /lists, at most 1000 elements per command
 *   SADD key m1 m2 ...         /sets, likewise
 *   HSET __mf:{TAG} key KMTIME the kind (s, j, l) and mtime the remote
 *                              backend keeps per key (remote/remote.h); an
 *                              empty list or set is this field alone
 * (Expiry times are not exported: the snapshot format keeps none yet.)
 * For a cluster, redis-cli --pipe talks to one node: import into a single
 * server and migrate, or pipe per node (see README, Many machines).
 */
#include "export.h"
#include "../db/db.h"
#include "../remote/remote.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static void bulk(FILE *f, const void *p, size_t n)
{
	fprintf(f, "$%zu\r\n", n);
	fwrite(p, 1, n, f);
	fputs("\r\n", f);
}

static void word(FILE *f, const char *s)
{
	bulk(f, s, strlen(s));
}

/* CMD key <lines of the value>, in commands of at most 1000 elements. */
static void push_lines(FILE *f, const char *cmd, mf_slice key, mf_slice val)
{
	const char *p = mf_slice_ptr(val);
	size_t n = val.len, i = 0;
	while (i < n) {
		/* count this command's elements first: RESP states the length */
		size_t j = i, cnt = 0;
		while (j < n && cnt < 1000) {
			const char *nl = memchr(p + j, '\n', n - j);
			j = nl ? (size_t)(nl - p) + 1 : n;
			cnt++;
		}
		fprintf(f, "*%zu\r\n", cnt + 2);
		word(f, cmd);
		bulk(f, mf_slice_ptr(key), key.len);
		while (i < j) {
			const char *nl = memchr(p + i, '\n', n - i);
			size_t end = nl ? (size_t)(nl - p) : n;
			bulk(f, p + i, end - i);
			i = nl ? end + 1 : n;
		}
	}
}

int mf_check_export(const char *dir, FILE *out)
{
	mf_db_opts o = {.dir = dir, .fsync_mode = MF_FSYNC_NONE, .fsync_interval_ms = 1000,
	                .wal_threshold = UINT64_MAX};
	char err[1024];
	mf_db *db = mf_db_open(&o, err, sizeof err);
	if (!db) {
		fprintf(stderr, "memflux-check: --export %s: %s\n", dir, err);
		return 3;
	}
	mf_item *items;
	uint64_t lsn;
	size_t n = mf_store_export(mf_db_store(db), &items, &lsn);
	static const char kinds[] = {[MF_T_STRING] = 's', [MF_T_JSON] = 'j', [MF_T_LIST] = 'l',
	                             [MF_T_SET] = 'S'};
	for (size_t i = 0; i < n; i++) {
		const mf_item *it = &items[i];
		if (!mf_type_valid(it->type) || !kinds[it->type])
			continue;
		fputs("*2\r\n", out);
		word(out, "DEL");
		bulk(out, mf_slice_ptr(it->key), it->key.len);
		if (it->type == MF_T_LIST || it->type == MF_T_SET) {
			push_lines(out, it->type == MF_T_LIST ? "RPUSH" : "SADD", it->key, it->val);
		} else {
			fputs("*3\r\n", out);
			word(out, "SET");
			bulk(out, mf_slice_ptr(it->key), it->key.len);
			bulk(out, mf_slice_ptr(it->val), it->val.len);
		}
		char meta[32], mt[32];
		size_t ml = mf_remote_meta_key(mf_slice_ptr(it->key), it->key.len, meta);
		int tl = snprintf(mt, sizeof mt, "%c%" PRId64, kinds[it->type], it->mtime_ns);
		fputs("*4\r\n", out);
		word(out, "HSET");
		bulk(out, meta, ml);
		bulk(out, mf_slice_ptr(it->key), it->key.len);
		bulk(out, mt, (size_t)tl);
	}
	mf_store_items_free(items, n);
	mf_db_close(db);
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(stderr, "memflux-check: --export: write error\n");
		return 3;
	}
	fprintf(stderr, "memflux-check: exported %zu keys (lsn %" PRIu64 ")\n", n, lsn);
	return 0;
}
