/*
 * test_db.c — db/: the whole life of a data dir (open -> recover -> commit
 * -> snapshot -> close -> reopen), and SQLite-style fault loops over it.
 *
 * Fault loop: one workload (open and recover a data dir holding a snapshot,
 * a sealed segment the snapshot covers and WAL records after it; commit;
 * snapshot twice — rotation, snapshot file, dropping sealed segments —
 * commit between; close) runs with I/O call number N failing, for
 * N = 1, 2, ... until a run makes fewer than N calls (a transient failing
 * write has written half its bytes first), once with the fault
 * transient (call N only), once double (N and N+1: a failed write and its
 * cut-back) and once persistent (N and every later call).
 * After each run the data dir is reopened with real I/O and must
 *   - open (a fault never leaves a dir recovery refuses),
 *   - hold every acknowledged mutation (fsync=always: an ack is durable),
 *     and no value that was never written (an unacknowledged op may or may
 *     not be there — "not acknowledged" is not "absent", wal.h),
 *   - and, after that clean close, walk with verdict KEEP (nothing torn
 *     left) and no snapshot tmp file;
 *   - after a transient fault, walk with verdict KEEP even before that
 *     reopen: the writer cut back whatever the failed call left.
 * The loop asserts that directory fsync, pread and unlink failures were
 * among those injected.  Every random choice comes from one seed, printed;
 * MEMFLUX_TEST_SEED=<n> repeats a run.  No sleeps: every step waits for
 * its own completion (commit and snapshot return when done).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "clock.h"
#include "db.h"
#include "faultio.h"
#include "quiet.h"
#include "record.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static uint64_t g_seed;

static uint64_t rnd(uint64_t *s)
{
	/* splitmix64: tiny, and every seed gives a good stream */
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static bool sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	return true;
#else
	const char *e = getenv("MEMFLUX_SANITIZED");
	return e && strcmp(e, "1") == 0;
#endif
}

/* A fresh dir, in memory when /dev/shm is there: the loop fsyncs a lot,
 * and what it checks is the code's handling of errors, not the disk. */
static char *tmpdir(void)
{
	char t1[] = "/dev/shm/mfdb-test-XXXXXX";
	char t2[] = "/tmp/mfdb-test-XXXXXX";
	char *d = mkdtemp(t1);
	if (!d)
		d = mkdtemp(t2);
	assert_non_null(d);
	return strdup(d);
}

static void rm_files(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char p[PATH_MAX];
		assert_int_equal(mf_path_join(p, sizeof p, dir, de->d_name), 0);
		unlink(p);
	}
	closedir(d);
}

static void rmdir_all(char *dir)
{
	rm_files(dir);
	rmdir(dir);
	free(dir);
}

/* Copy every file of src into dst (which exists and is empty). */
static void copy_dir(const char *src, const char *dst)
{
	DIR *d = opendir(src);
	assert_non_null(d);
	struct dirent *de;
	static char buf[1 << 16];
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char a[PATH_MAX], b[PATH_MAX];
		assert_int_equal(mf_path_join(a, sizeof a, src, de->d_name), 0);
		assert_int_equal(mf_path_join(b, sizeof b, dst, de->d_name), 0);
		int in = open(a, O_RDONLY), out = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		assert_true(in >= 0 && out >= 0);
		ssize_t n;
		while ((n = read(in, buf, sizeof buf)) > 0)
			assert_int_equal(write(out, buf, (size_t)n), n);
		close(in);
		close(out);
	}
	closedir(d);
}

static bool has_file(const char *dir, const char *name)
{
	char p[PATH_MAX];
	assert_int_equal(mf_path_join(p, sizeof p, dir, name), 0);
	return access(p, F_OK) == 0;
}

static mf_db *open_db(const char *dir, mf_io *io)
{
	mf_db_opts o = {
		.dir = dir,
		.fsync_mode = MF_FSYNC_ALWAYS,
		.io = io,
		.lock_wait_ms = 0,
	};
	char err[512] = "";
	mf_db *db = mf_db_open(&o, err, sizeof err);
	if (!db && !io)
		fail_msg("open %s: %s", dir, err);
	return db;
}

static int commit(mf_db *db, int type, const char *key, const char *val)
{
	mf_op op;
	memset(&op, 0, sizeof op);
	op.type = (uint8_t)type;
	op.ktype = MF_T_STRING;
	op.key = mf_slice_from(key, strlen(key), strlen(key));
	if (val)
		op.val = mf_slice_from(val, strlen(val), strlen(val));
	int r = mf_db_commit(db, &op);
	mf_op_clear(&op);
	return r;
}

/* The value of key, malloc'd, or NULL if absent. */
static char *get(mf_db *db, const char *key)
{
	mf_entry_info ei;
	if (mf_store_get(mf_db_store(db), key, strlen(key), true, &ei) != 0)
		return NULL;
	char *v = malloc(ei.val.len + 1);
	memcpy(v, mf_slice_ptr(ei.val), ei.val.len);
	v[ei.val.len] = 0;
	mf_slice_unref(&ei.val);
	return v;
}

static int drop_item(void *ctx, mf_item *it)
{
	(void)ctx;
	mf_slice_unref(&it->key);
	mf_slice_unref(&it->val);
	return 0;
}

/* The WAL verdict of a closed data dir, as memflux-check would give it. */
static int wal_verdict(const char *dir, mf_wal_verdict *v)
{
	mf_snapshot_info si = {0};
	int r = mf_snapshot_load(mf_io_posix(), dir, drop_item, NULL, &si, NULL, 0);
	if (r < 0 && r != -ENOENT)
		return r;
	uint64_t last;
	r = mf_wal_walk(mf_io_posix(), dir, r == 0 ? si.lsn : 0, NULL, NULL, NULL, NULL, v,
	                &last);
	return r < 0 ? r : v->action;
}

/* ------------------------------------------------------------------ */
/* open -> commit -> snapshot -> close -> reopen                       */

static void test_life(void **state)
{
	(void)state;
	char *dir = tmpdir();
	mf_db *db = open_db(dir, NULL);
	assert_non_null(strstr(mf_db_recovery_line(db), "replayed 0 WAL records"));
	assert_int_equal(commit(db, MF_OP_SET, "a", "1"), 0);
	assert_int_equal(commit(db, MF_OP_SET, "b", "2"), 0);
	assert_int_equal(commit(db, MF_OP_DEL, "zz", NULL), -ENOENT); /* refused, not logged */
	assert_int_equal(mf_db_snapshot(db), 0);
	assert_true(has_file(dir, MF_SNAPSHOT_NAME));
	assert_int_equal(commit(db, MF_OP_APPEND, "a", "1"), 0);
	assert_int_equal(commit(db, MF_OP_DEL, "b", NULL), 0);
	assert_int_equal(mf_db_sync(db), 0);
	char *st = mf_db_stats_text(db);
	assert_non_null(strstr(st, "keys 1\n"));
	assert_non_null(strstr(st, "wal_lsn 4\n"));
	assert_non_null(strstr(st, "snapshots 1\n"));
	free(st);
	mf_db_close(db);

	/* Recovery: the snapshot (lsn 2) then the two records after it. */
	db = open_db(dir, NULL);
	assert_non_null(strstr(mf_db_recovery_line(db), "loaded snapshot lsn 2 (2 keys), "
	                                                "replayed 2 WAL records"));
	char *a = get(db, "a");
	assert_string_equal(a, "11");
	free(a);
	assert_null(get(db, "b"));
	/* New records continue the LSN sequence. */
	assert_int_equal(commit(db, MF_OP_SET, "c", "3"), 0);
	st = mf_db_stats_text(db);
	assert_non_null(strstr(st, "wal_lsn 5\n"));
	free(st);
	mf_db_close(db);

	mf_wal_verdict v;
	assert_int_equal(wal_verdict(dir, &v), MF_WAL_KEEP);
	rmdir_all(dir);
}

/* A second open of a locked dir fails at once (lock_wait_ms 0). */
static void test_locked(void **state)
{
	(void)state;
	char *dir = tmpdir();
	mf_db *db = open_db(dir, NULL);
	mf_db_opts o = {.dir = dir, .fsync_mode = MF_FSYNC_ALWAYS};
	char err[512] = "";
	int q = quiet_begin();
	mf_db *db2 = mf_db_open(&o, err, sizeof err);
	quiet_end(q);
	assert_null(db2);
	assert_true(err[0] != 0);
	mf_db_close(db);
	rmdir_all(dir);
}

/* ------------------------------------------------------------------ */
/* enqueue / wait                                                      */

static void mkop(mf_op *op, int type, const char *key, const char *val)
{
	memset(op, 0, sizeof *op);
	op->type = (uint8_t)type;
	op->ktype = MF_T_STRING;
	op->key = mf_slice_from(key, strlen(key), strlen(key));
	if (val)
		op->val = mf_slice_from(val, strlen(val), strlen(val));
}

/* Waiting for a later ticket first writes the earlier ones too, in
 * enqueue order; the earlier ticket's wait then returns at once. */
static void test_enqueue_wait_order(void **state)
{
	(void)state;
	char *dir = tmpdir();
	mf_db *db = open_db(dir, NULL);
	mf_op a, b;
	mkop(&a, MF_OP_SET, "k", "a");
	mkop(&b, MF_OP_APPEND, "k", "b");
	mf_db_ticket ta, tb;
	assert_int_equal(mf_db_commit_enqueue(db, &a, &ta), 0);
	assert_int_equal(mf_db_commit_enqueue(db, &b, &tb), 0);
	assert_int_equal(mf_db_commit_wait(db, &tb), 0);
	assert_int_equal(mf_db_commit_wait(db, &ta), 0);
	assert_true(a.lsn == 1 && b.lsn == 2);
	char *v = get(db, "k");
	assert_string_equal(v, "ab");
	free(v);
	mf_op_clear(&a);
	mf_op_clear(&b);
	/* A refused op is not queued: nothing to wait for. */
	mf_op d;
	mkop(&d, MF_OP_DEL, "nope", NULL);
	mf_db_ticket td;
	assert_int_equal(mf_db_commit_enqueue(db, &d, &td), -ENOENT);
	mf_op_clear(&d);
	mf_db_close(db);
	rmdir_all(dir);
}

/* The contract the FUSE layer relies on: ops enqueued under a caller's
 * lock, waited for after releasing it, get LSNs in the lock's order. */
#define OT_THREADS 4
#define OT_OPS 400

typedef struct ot_shared {
	mf_db *db;
	pthread_mutex_t mu;          /* the caller's ordering lock */
	uint64_t seq;                /* enqueue order under mu */
	uint64_t lsn_of[OT_THREADS * OT_OPS];
} ot_shared;

typedef struct ot_arg {
	ot_shared *sh;
	int id;
} ot_arg;

static void *ot_main(void *p)
{
	ot_arg *a = p;
	ot_shared *sh = a->sh;
	for (int i = 0; i < OT_OPS; i++) {
		char key[32], val[32];
		snprintf(key, sizeof key, "t%d", a->id);
		snprintf(val, sizeof val, "%d,", i);
		mf_op op;
		mkop(&op, MF_OP_APPEND, key, val);
		mf_db_ticket t;
		pthread_mutex_lock(&sh->mu);
		uint64_t seq = sh->seq++;
		int r = mf_db_commit_enqueue(sh->db, &op, &t);
		pthread_mutex_unlock(&sh->mu);
		if (r == 0)
			r = mf_db_commit_wait(sh->db, &t);
		if (r != 0)
			fail_msg("commit: %s", strerror(-r));
		sh->lsn_of[seq] = op.lsn;  /* each seq is written by one thread */
		mf_op_clear(&op);
	}
	return NULL;
}

static void test_enqueue_order_threads(void **state)
{
	(void)state;
	char *dir = tmpdir();
	ot_shared sh = {.db = open_db(dir, NULL)};
	pthread_mutex_init(&sh.mu, NULL);
	pthread_t th[OT_THREADS];
	ot_arg args[OT_THREADS];
	for (int i = 0; i < OT_THREADS; i++) {
		args[i] = (ot_arg){&sh, i};
		pthread_create(&th[i], NULL, ot_main, &args[i]);
	}
	for (int i = 0; i < OT_THREADS; i++)
		pthread_join(th[i], NULL);
	/* LSN order = enqueue order, contiguous from 1. */
	for (uint64_t s = 0; s < sh.seq; s++)
		assert_int_equal(sh.lsn_of[s], s + 1);
	/* Apply order = enqueue order: each key's appends are in order. */
	for (int i = 0; i < OT_THREADS; i++) {
		char key[32];
		snprintf(key, sizeof key, "t%d", i);
		char *v = get(sh.db, key);
		char *p = v;
		for (int j = 0; j < OT_OPS; j++) {
			char *end;
			assert_int_equal(strtol(p, &end, 10), j);
			assert_int_equal(*end, ',');
			p = end + 1;
		}
		free(v);
	}
	mf_db_close(sh.db);
	pthread_mutex_destroy(&sh.mu);
	rmdir_all(dir);
}

/* ------------------------------------------------------------------ */
/* fault loops                                                         */

#define NKEYS 12
#define MAXOPS 128

/* Every op tried, in order, and whether it was acknowledged. */
typedef struct attempt {
	int key;
	bool del;
	char *val;      /* SET: the value (unique per op) */
	bool acked;
} attempt;

typedef struct model {
	attempt a[MAXOPS];
	int n;
} model;

static void model_free(model *m)
{
	for (int i = 0; i < m->n; i++)
		free(m->a[i].val);
	m->n = 0;
}

static void key_name(char *out, size_t n, int k)
{
	snprintf(out, n, "k%02d", k);
}

/* One random op (SET of a fresh value, or DEL), committed and recorded.
 * Values are mostly small; a few exceed the writer's inline limit (32 KiB)
 * so the batch takes its separate-iovec path.  set: never a DEL. */
static void one_op(mf_db *db, model *m, uint64_t *rs, bool set)
{
	assert_true(m->n < MAXOPS);
	attempt *at = &m->a[m->n];
	memset(at, 0, sizeof *at);
	at->key = (int)(rnd(rs) % NKEYS);
	at->del = !set && rnd(rs) % 5 == 0;
	char key[16];
	key_name(key, sizeof key, at->key);
	if (!at->del) {
		size_t len = rnd(rs) % 16 == 0 ? 40000 : 8 + rnd(rs) % 200;
		at->val = malloc(len + 1);
		int h = snprintf(at->val, len + 1, "op%d.", m->n);
		for (size_t i = (size_t)h; i < len; i++)
			at->val[i] = (char)('a' + (i + (size_t)m->n) % 26);
		at->val[len] = 0;
	}
	m->n++;
	at->acked = commit(db, at->del ? MF_OP_DEL : MF_OP_SET, key, at->val) == 0;
}

/*
 * What key k may hold after recovery: the result of its last acknowledged
 * op, or of any later unacknowledged one (it may have reached the file
 * before its failure was reported).  *absent_ok: absence is allowed.
 * Returns whether value v (NULL: absent) is allowed.
 */
static bool allowed(const model *m, int k, const char *v)
{
	int last = -1;
	for (int i = 0; i < m->n; i++)
		if (m->a[i].key == k && m->a[i].acked)
			last = i;
	for (int i = last < 0 ? 0 : last; i < m->n; i++) {
		const attempt *at = &m->a[i];
		if (at->key != k || (i != last && at->acked))
			continue;
		if (at->del ? v == NULL : (v && strcmp(v, at->val) == 0))
			return true;
	}
	return last < 0 && v == NULL;
}

static const char *g_where = "";  /* the iteration, for failure messages */

/* clean: the fault was transient, so the writer could undo whatever it
 * left (cut back a torn write): the WAL must be whole, not just
 * recoverable, before any recovery runs. */
static void verify(const char *dir, const model *m, bool clean)
{
	mf_wal_verdict v;
	int r = wal_verdict(dir, &v);
	if (r == MF_WAL_REFUSE || r < 0)
		fail_msg("%s: WAL refused after the fault run: %s", g_where, r < 0 ? strerror(-r) : v.msg);
	if (clean && r != MF_WAL_KEEP)
		fail_msg("%s: torn bytes left after a transient fault: %s", g_where, v.msg);

	int q = quiet_begin();
	mf_db *db = open_db(dir, mf_io_posix());
	quiet_end(q);
	if (!db)
		fail_msg("%s: data dir does not open after the fault run", g_where);
	for (int k = 0; k < NKEYS; k++) {
		char key[16];
		key_name(key, sizeof key, k);
		char *val = get(db, key);
		if (!allowed(m, k, val))
			fail_msg("%s: %s holds %.20s%s, not its acknowledged value", g_where, key,
			         val ? val : "(absent)", val && strlen(val) > 20 ? "..." : "");
		free(val);
	}
	mf_db_close(db);
	r = wal_verdict(dir, &v);
	if (r != MF_WAL_KEEP)
		fail_msg("%s: after a clean reopen the WAL is not clean: %s", g_where,
		         r < 0 ? strerror(-r) : v.msg);
	if (has_file(dir, MF_SNAPSHOT_TMP_NAME))
		fail_msg("%s: snapshot tmp file left after a clean reopen", g_where);
}

/* The data dir every run starts from: a snapshot, the sealed segment it
 * covers (its drop failed), and records after it.  The model gets its ops
 * (all acknowledged). */
static char *make_base(model *m, uint64_t *rs)
{
	char *dir = tmpdir();
	faultio f;
	faultio_init(&f, NULL);
	faultio_fail_from_next(&f, FIO_UNLINK, -EIO); /* keeps the sealed segment */
	int q = quiet_begin();
	mf_db *db = open_db(dir, &f.io);
	assert_non_null(db);
	for (int i = 0; i < 8; i++)
		one_op(db, m, rs, false);
	assert_int_equal(mf_db_snapshot(db), 0);
	for (int i = 0; i < 6; i++)
		one_op(db, m, rs, false);
	mf_db_close(db);
	quiet_end(q);
	faultio_destroy(&f);
	for (int i = 0; i < m->n; i++)
		assert_true(m->a[i].acked || m->a[i].del);
	return dir;
}

/* The workload under faults: open (recover), commit, snapshot, commit,
 * snapshot, commit, close.  The last op before each snapshot and before
 * close is a SET, so some N fails the very write a rotation would seal or
 * close would end the file with. */
static void workload(const char *dir, mf_io *io, model *m, uint64_t *rs, int ops)
{
	mf_db *db = open_db(dir, io);
	if (!db)
		return;
	for (int i = 0; i < ops; i++)
		one_op(db, m, rs, i == ops - 1);
	mf_db_snapshot(db);
	for (int i = 0; i < ops; i++)
		one_op(db, m, rs, i == ops - 1);
	mf_db_snapshot(db);
	for (int i = 0; i < ops / 2; i++)
		one_op(db, m, rs, i == ops / 2 - 1);
	mf_db_close(db);
}

/* times: how many calls from N on fail (0: all of them). */
static void fault_loop(unsigned long times)
{
	const char *mode = times == 0 ? "persistent" : times == 1 ? "transient" : "double";
	int ops = sanitized() ? 4 : 8;
	unsigned long injected[FIO_NKINDS] = {0};
	unsigned long n, runs = 0, calls_max = 0;
	double t0 = mf_mono_sec();
	for (n = 1;; n++) {
		/* The workload's stream is the same in every run of a mode, so
		 * its I/O calls are the same sequence and N sweeps every one of
		 * them (a stream per run moved the rename around, and a seed could
		 * miss it); the fault's kind has a stream per run.  A failure
		 * names a repeatable (seed, N, mode). */
		uint64_t rs = g_seed ^ (n * 4 + times) * 0x2545f4914f6cdd1dull;
		uint64_t ws = g_seed ^ (times + 1) * 0x9e3779b97f4a7c15ull;
		model m = {.n = 0};
		uint64_t base_rs = g_seed;
		char *base = make_base(&m, &base_rs);
		char *dir = tmpdir();
		copy_dir(base, dir);
		rmdir_all(base);

		static const int errs[] = {-EIO, -ENOSPC, -EIO, -EDQUOT};
		faultio f;
		faultio_init(&f, NULL);
		fio_rule *rule = faultio_fail_any_nth(&f, n, errs[rnd(&rs) % 4], times);
		/* A transient failing write has put half its bytes in the file
		 * first (the writer must cut them back); a double one none (its
		 * cut-back is the call that fails next); a persistent one either. */
		rule->torn = times == 1 || (times == 0 && rnd(&rs) % 2);
		char where[160];
		snprintf(where, sizeof where, "seed %" PRIu64 ", %s fault at I/O call %lu", g_seed,
		         mode, n);
		g_where = where;
		int q = quiet_begin();
		workload(dir, &f.io, &m, &ws, ops);
		quiet_end(q);
		unsigned long fired = faultio_fired(&f, rule);
		unsigned long calls = faultio_calls(&f, FIO_ANY);
		for (int k = 0; k < FIO_NKINDS; k++)
			if (rule->fired_kinds & (1u << k))
				injected[k]++;
		faultio_destroy(&f);
		verify(dir, &m, times == 1);
		model_free(&m);
		rmdir_all(dir);
		runs++;
		if (calls > calls_max)
			calls_max = calls;
		if (!fired)
			break; /* the run made fewer than n calls: every call was failed once */
	}
	printf("test_db: %s faults: %lu runs (up to %lu I/O calls each) in %.1f s; runs failing "
	       "open %lu pread %lu pwritev %lu fsync %lu ftruncate %lu fstat %lu close %lu "
	       "rename %lu unlink %lu fsync_dir %lu\n",
	       mode, runs, calls_max, mf_mono_sec() - t0,
	       injected[FIO_OPEN], injected[FIO_PREAD], injected[FIO_PWRITEV], injected[FIO_FSYNC],
	       injected[FIO_FTRUNCATE], injected[FIO_FSTAT], injected[FIO_CLOSE],
	       injected[FIO_RENAME], injected[FIO_UNLINK], injected[FIO_FSYNC_DIR]);
	/* The paths hand-picked fault tests miss must have been hit. */
	assert_true(injected[FIO_FSYNC_DIR] > 0);
	assert_true(injected[FIO_PREAD] > 0);
	assert_true(injected[FIO_UNLINK] > 0);
	assert_true(injected[FIO_RENAME] > 0);
	assert_true(injected[FIO_FSYNC] > 0);
	assert_true(injected[FIO_PWRITEV] > 0);
	if (times != 1)  /* the cut-back after a failed write fails too */
		assert_true(injected[FIO_FTRUNCATE] > 0);
}

static void test_faults_transient(void **state)
{
	(void)state;
	fault_loop(1);
}

/* Calls N and N+1: a failed write and then its cut-back (ftruncate), a
 * failed fsync and then the marker or close after it. */
static void test_faults_double(void **state)
{
	(void)state;
	fault_loop(2);
}

static void test_faults_persistent(void **state)
{
	(void)state;
	fault_loop(0);
}

int main(void)
{
	const char *s = getenv("MEMFLUX_TEST_SEED");
	g_seed = s ? strtoull(s, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	printf("test_db: seed %" PRIu64 " (MEMFLUX_TEST_SEED=%" PRIu64 " repeats it)\n", g_seed,
	       g_seed);
	fflush(stdout);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_life),
		cmocka_unit_test(test_locked),
		cmocka_unit_test(test_enqueue_wait_order),
		cmocka_unit_test(test_enqueue_order_threads),
		cmocka_unit_test(test_faults_transient),
		cmocka_unit_test(test_faults_double),
		cmocka_unit_test(test_faults_persistent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
