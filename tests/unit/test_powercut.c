/*
 * test_powercut.c — power cuts at thousands of seeded points of the WAL
 * writer, rotation, snapshot and compaction paths (through mf_db, the
 * daemon's own wiring), with the power-loss simulator of powercut.h.
 *
 * One run: a fresh data dir; a seeded workload of SET / APPEND / DEL / RPUSH / INCRBY / SADD / SREM
 * and MULTI (a transaction record: INCRBY + SADD, both or neither) / WRITEV
 * (a handle's ranges over a kept prefix, with a hole)
 * commits (some values are a copy of the live memflux.wal, salt included:
 * such bytes, torn, must never pass for records), fsyncs (mf_db_sync) and
 * snapshots (rotation + snapshot + drop of sealed segments); the power goes at the n-th mutating I/O call; the disk
 * then holds what powercut.h allows (any subset, tear or reordering of
 * unsynced writes, a prefix of unsynced directory operations).  Recovery
 * must then, by itself:
 *   - open (a refusal is a failure: the simulator never damages durable
 *     data);
 *   - hold exactly the state after the first m operations, for one m with
 *       promised <= m <= acknowledged (+1 if an operation was in flight),
 *     where "promised" is every acknowledged operation in ALWAYS mode, and
 *     in INTERVAL mode those acknowledged before the last successful
 *     mf_db_sync / mf_db_snapshot — so nothing durable is lost, nothing is
 *     applied twice, nothing unacknowledged appears but the one in flight;
 *   - accept new writes that survive a further restart (every 4th run);
 *   - survive a second power cut during the recovery itself (every 3rd run:
 *     the files it finds are durable, its own cut / delete / create may be
 *     lost or torn).
 *
 * The workload is single-threaded and the interval syncer never fires (a
 * one-hour interval; mf_db_sync is the explicit fsync), so a seed replays
 * the same I/O call sequence — up to the sync marker the WAL writer appends
 * on its own once idle after an fsync, which may come before or after the
 * next record.  MEMFLUX_POWERCUT_SEED=<n> picks the base
 * seed, MEMFLUX_POWERCUT_CUTS=<n> the number of cuts per mode (a fifth as
 * many again run with four concurrent writers: multi-record batches, a
 * snapshot racing commits; their I/O order depends on scheduling, so a seed
 * fixes their workloads and cut call number, not the exact cut);
 * MEMFLUX_POWERCUT_CUT_AT=<n> forces the cut call number.  The figures are
 * printed.  Rerun a failing seed s: MEMFLUX_POWERCUT_SEED=s
 * MEMFLUX_POWERCUT_CUTS=1 MEMFLUX_POWERCUT_CUT_AT=<cut printed>.
 *
 * Also: genuine corruption of synced data is still refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "quiet.h"
#include "powercut.h"

#include "db.h"
#include "record.h"

#include <dirent.h>
#include <pthread.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <time.h>

#define NKEYS 8       /* k0..k3 strings, L4..L5 lists, C6 a counter (INCRBY),
                        S7 a set (SADD/SREM of m0..m7): a record applied
                        twice or lost changes the counter's value */
#define MAXOPS 96

typedef struct wl_op {
	int kind;          /* 0 commit, 1 sync, 2 snapshot */
	int type, key;
	int thread;        /* whose keys */
	bool walcopy;      /* value: the live memflux.wal's bytes, read at commit
	                      time (a user storing a copy of the WAL: records
	                      with this very segment's salt, at other offsets) */
	char *val;
	size_t vlen;
	long long delta;   /* INCRBY */
	/* WRITEV: the value becomes its first `keep` bytes (hashing to hash),
	 * `hole` zero bytes, then val: one range, a hole before it. */
	uint64_t keep, hash, hole;
} wl_op;

typedef struct model {
	char *v[NKEYS];
	size_t len[NKEYS];
	bool exists[NKEYS];
	unsigned smask;    /* S7's members */
	int64_t expire[NKEYS]; /* EXPIRE of strings: absolute, far in the future */
} model;

#define KEY_COUNTER 6
#define KEY_SET 7

/* Key k of workload thread t (thread 0: the single-threaded runs). */
static const char *key_name_t(int t, int k, char buf[16])
{
	snprintf(buf, 16, "t%d%s%d", t, k == KEY_SET ? "S" : k == KEY_COUNTER ? "C" : k >= 4 ? "L" : "k",
	         k);
	return buf;
}

static int key_ktype(int k)
{
	return k == KEY_SET ? MF_T_SET : k >= 4 && k < KEY_COUNTER ? MF_T_LIST : MF_T_STRING;
}

static void model_apply(model *m, const wl_op *o)
{
	int k = o->key;
	if (o->type == MF_OP_EXPIRE) {
		m->expire[k] = (int64_t)o->delta;
		return;
	}
	if (o->type == MF_OP_SET)
		m->expire[k] = 0; /* a new value drops it */
	if (o->type == MF_OP_DEL) {
		free(m->v[k]);
		m->v[k] = NULL;
		m->len[k] = 0;
		m->exists[k] = false;
		m->expire[k] = 0;
		if (k == KEY_SET)
			m->smask = 0;
		return;
	}
	if (o->type == MF_OP_MULTI) {
		/* A transaction: INCRBY of the counter and SADD to the set, one
		 * record (both or neither after a crash). */
		wl_op a = *o, b = *o;
		a.type = MF_OP_INCRBY;
		a.key = KEY_COUNTER;
		b.type = MF_OP_SADD;
		b.key = KEY_SET;
		model_apply(m, &a);
		model_apply(m, &b);
		return;
	}
	if (o->type == MF_OP_INCRBY) {
		long long v = m->exists[k] ? strtoll(m->v[k], NULL, 10) : 0;
		free(m->v[k]);
		m->v[k] = malloc(32);
		m->len[k] = (size_t)snprintf(m->v[k], 32, "%lld", v + o->delta);
		m->exists[k] = true;
		return;
	}
	if (o->type == MF_OP_SADD || o->type == MF_OP_SREM) {
		unsigned bit = 1u << (o->val[1] - '0'); /* "m<d>\n" */
		m->smask = o->type == MF_OP_SADD ? m->smask | bit : m->smask & ~bit;
		m->exists[k] = m->smask != 0; /* an emptied set is deleted */
		return;
	}
	if (o->type == MF_OP_SET) {
		free(m->v[k]);
		m->v[k] = NULL;
		m->len[k] = 0;
	}
	if (o->type == MF_OP_WRITEV) {
		m->v[k] = realloc(m->v[k], o->keep + o->hole + 1);
		memset(m->v[k] + o->keep, 0, o->hole);
		m->len[k] = o->keep + o->hole;
	}
	m->v[k] = realloc(m->v[k], m->len[k] + o->vlen + 1);
	memcpy(m->v[k] + m->len[k], o->val, o->vlen);
	m->len[k] += o->vlen;
	m->exists[k] = true;
}

static void model_free(model *m)
{
	for (int k = 0; k < NKEYS; k++)
		free(m->v[k]);
	memset(m, 0, sizeof *m);
}

/* A seeded workload.  Values carry the op number, so a record applied twice
 * or out of order shows. */
static int make_workload(pc_rng *rng, wl_op *ops, bool concurrent)
{
	int n = 24 + (int)pc_below(rng, MAXOPS - 24);
	model m = {0};
	/* A third of the single-threaded workloads set expiries (EXPIRE
	 * records), with snapshots like any other (v2 items carry expire_ns). */
	bool expiries = !concurrent && pc_below(rng, 3) == 0;
	for (int i = 0; i < n; i++) {
		wl_op *o = &ops[i];
		memset(o, 0, sizeof *o);
		uint64_t r = pc_below(rng, 100);
		if (r < 6) {
			o->kind = 1;
			continue;
		}
		if (r < 11) {
			o->kind = 2;
			continue;
		}
		/* The concurrent check finds each thread's state by searching
		 * for the op count that matches it, which needs every op to make
		 * a state not seen before; a set (SADD then SREM) or a counter
		 * (DEL, INCRBY) can return to one, so only the single-threaded
		 * runs, which count applied records exactly, use them. */
		o->key = (int)pc_below(rng, concurrent ? KEY_COUNTER : NKEYS);
		bool list = o->key >= 4;
		r = pc_below(rng, 100);
		if (r < 8 && m.exists[o->key]) {
			o->type = MF_OP_DEL;
		} else if (r < 16 && o->key < 4 && m.exists[o->key] && expiries) {
			/* An expiry in 2100 (absolute), or none: the record must
			 * survive like any other; nothing expires in the run. */
			o->type = MF_OP_EXPIRE;
			o->delta = pc_below(rng, 2) ? 4102444800LL * 1000000000LL + i : 0;
		} else if (o->key == KEY_COUNTER) {
			o->type = r < 40 ? MF_OP_MULTI : MF_OP_INCRBY;
			o->delta = (long long)pc_below(rng, 2000) - 1000;
			if (o->type == MF_OP_MULTI) {
				o->vlen = 3;
				o->val = malloc(4);
				snprintf(o->val, 4, "m%d\n", (int)pc_below(rng, 8));
			}
		} else if (o->key == KEY_SET) {
			/* SREM only of a set that exists (else ENOENT, not logged). */
			o->type = r < 60 || !m.exists[o->key] ? MF_OP_SADD : MF_OP_SREM;
			o->vlen = 3;
			o->val = malloc(4);
			snprintf(o->val, 4, "m%d\n", (int)pc_below(rng, 8));
		} else if (list)
			o->type = MF_OP_RPUSH;
		else if (r >= 85 && m.exists[o->key])
			o->type = MF_OP_WRITEV;
		else
			o->type = r < 25 ? MF_OP_SET : MF_OP_APPEND;
		if (o->type == MF_OP_WRITEV) {
			/* Keep some of what the model holds then (so the hash is
			 * right), sometimes none; a hole, sometimes big. */
			o->keep = pc_below(rng, m.len[o->key] + 1);
			o->hole = pc_below(rng, 4) == 0 ? 40000 + pc_below(rng, 20000) : pc_below(rng, 64);
		}
		if (o->type != MF_OP_DEL && o->type != MF_OP_EXPIRE && o->key < KEY_COUNTER) {
			/* Mostly small; sometimes several sectors; rarely past the
			 * writer's inline limit (its own iovec). */
			size_t pad = 0;
			uint64_t s = pc_below(rng, 100);
			if (s >= 97)
				pad = 33000 + pc_below(rng, 20000);
			else if (s >= 94)
				o->walcopy = true;
			else if (s >= 80)
				pad = 300 + pc_below(rng, 3000);
			char head[32];
			int h = snprintf(head, sizeof head, "<%d:", i);
			o->vlen = (size_t)h + pad + 2;
			o->val = malloc(o->vlen);
			memcpy(o->val, head, (size_t)h);
			for (size_t j = 0; j < pad; j++)
				o->val[h + j] = (char)('a' + (i + j) % 26);
			o->val[o->vlen - 2] = '>';
			o->val[o->vlen - 1] = '\n';  /* a list element per op */
		}
		model_apply(&m, o);
	}
	model_free(&m);
	return n;
}

static void free_workload(wl_op *ops, int n)
{
	for (int i = 0; i < n; i++)
		free(ops[i].val);
}

static char *mktmp(void)
{
	/* /dev/shm when there is one: nothing here needs a real disk. */
	char t[] = "/dev/shm/mfpc-XXXXXX";
	char *d = mkdtemp(t);
	if (!d) {
		char t2[] = "/tmp/mfpc-XXXXXX";
		d = mkdtemp(t2);
		assert_non_null(d);
		return strdup(d);
	}
	return strdup(d);
}

static void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			char p[1024];
			snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
			unlink(p);
		}
		closedir(d);
	}
	rmdir(dir);
}

static mf_db *open_db(const char *dir, mf_fsync_mode mode, mf_io *io, char *err, size_t errlen)
{
	mf_db_opts o = {
		.dir = dir,
		.fsync_mode = mode,
		.fsync_interval_ms = 3600 * 1000,  /* never by itself: mf_db_sync */
		.wal_threshold = 0,                /* snapshots only when asked */
		.io = io,
	};
	return mf_db_open(&o, err, errlen);
}

static int commit(mf_db *db, const wl_op *o)
{
	mf_op op;
	memset(&op, 0, sizeof op);
	op.type = (uint8_t)o->type;
	op.ktype = o->type == MF_OP_EXPIRE ? MF_T_NONE : (uint8_t)key_ktype(o->key);
	op.arg = (uint64_t)o->delta;
	if (o->type == MF_OP_MULTI) {
		char ck[16], sk[16];
		key_name_t(o->thread, KEY_COUNTER, ck);
		key_name_t(o->thread, KEY_SET, sk);
		mf_op sub[2];
		memset(sub, 0, sizeof sub);
		sub[0].type = MF_OP_INCRBY;
		sub[0].ktype = MF_T_STRING;
		sub[0].key = mf_slice_from(ck, strlen(ck), strlen(ck));
		sub[0].arg = (uint64_t)o->delta;
		sub[1].type = MF_OP_SADD;
		sub[1].ktype = MF_T_SET;
		sub[1].key = mf_slice_from(sk, strlen(sk), strlen(sk));
		sub[1].val = mf_slice_from(o->val, o->vlen, o->vlen);
		memset(&op, 0, sizeof op);
		op.type = MF_OP_MULTI;
		op.val = mf_multi_encode(sub, 2);
		mf_op_clear(&sub[0]);
		mf_op_clear(&sub[1]);
		op.time_ns = 1700000000000000000LL;
		int r = mf_db_commit(db, &op);
		if (r == 0 && (op.nsub != 2 || op.sub[0].rc || op.sub[1].rc))
			r = -EPROTO; /* each sub-op must have applied */
		mf_op_clear(&op);
		return r;
	}
	char kb[16];
	const char *k = key_name_t(o->thread, o->key, kb);
	op.key = mf_slice_from(k, strlen(k), strlen(k));
	if (o->type == MF_OP_WRITEV) {
		uint64_t at = o->keep + o->hole;
		char *src = calloc(1, (size_t)(at + o->vlen));
		memcpy(src + at, o->val, o->vlen);
		mf_range rg = {at, o->vlen};
		op.arg = at + o->vlen;
		op.val = mf_writev_encode(o->keep, o->hash, &rg, 1, src);
		free(src);
	} else if (o->vlen) {
		op.val = mf_slice_from(o->val, o->vlen, o->vlen);
	}
	op.time_ns = 1700000000000000000LL;
	int r = mf_db_commit(db, &op);
	mf_op_clear(&op);
	return r;
}

/* A WRITEV's precondition, just before it is committed: what ops[0..i)
 * made of its key (walcopy values and the concurrent runs' rewrites are
 * only known by then), its keep clipped to that. */
static void writev_rehash(wl_op *ops, int i)
{
	wl_op *o = &ops[i];
	if (o->type != MF_OP_WRITEV)
		return;
	model m = {0};
	for (int j = 0; j < i; j++)
		if (ops[j].kind == 0)
			model_apply(&m, &ops[j]);
	if (o->keep > m.len[o->key])
		o->keep = m.len[o->key];
	o->hash = mf_hash64(m.v[o->key] ? m.v[o->key] : "", (size_t)o->keep);
	model_free(&m);
}

/* o's value becomes "<i:" + the first 48 KiB of the live memflux.wal + ">\n". */
static void fill_walcopy(const char *dir, wl_op *o, int i)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/memflux.wal", dir);
	uint8_t buf[48 * 1024];
	size_t got = 0;
	int fd = open(p, O_RDONLY);
	if (fd >= 0) {
		ssize_t r = pread(fd, buf, sizeof buf, 0);
		got = r > 0 ? (size_t)r : 0;
		close(fd);
	}
	char head[32];
	int h = snprintf(head, sizeof head, "<%d:", i);
	free(o->val);
	o->vlen = (size_t)h + got + 2;
	o->val = malloc(o->vlen);
	memcpy(o->val, head, (size_t)h);
	if (got)
		memcpy(o->val + h, buf, got);
	o->val[o->vlen - 2] = '>';
	o->val[o->vlen - 1] = '\n';
}

/* Does the store hold exactly the model's state after the first m ops? */
static bool store_matches(mf_db *db, int thread, const wl_op *ops, int m, char *why,
                          size_t whylen)
{
	model md = {0};
	for (int i = 0; i < m; i++)
		if (ops[i].kind == 0)
			model_apply(&md, &ops[i]);
	bool ok = true;
	for (int k = 0; k < NKEYS && ok; k++) {
		mf_entry_info ei;
		char kb[16];
		const char *name = key_name_t(thread, k, kb);
		int r = mf_store_get(mf_db_store(db), name, strlen(name), true, &ei);
		if ((r == 0) != md.exists[k]) {
			snprintf(why, whylen, "key %s %s", name, r == 0 ? "present, expected absent"
			                                                : "absent, expected present");
			ok = false;
		} else if (r == 0 && k == KEY_SET) {
			/* A set's text is unordered: compare members. */
			unsigned got = 0;
			for (int b = 0; b < 8; b++) {
				char mm[3] = {'m', (char)('0' + b), 0};
				if (mf_store_set_has(mf_db_store(db), name, strlen(name), mm, 2) == 1)
					got |= 1u << b;
			}
			if (got != md.smask || ei.count != (uint64_t)__builtin_popcount(md.smask)) {
				snprintf(why, whylen, "set %s: members %#x, expected %#x", name, got, md.smask);
				ok = false;
			}
			mf_slice_unref(&ei.val);
		} else if (r == 0 && ei.expire_ns != md.expire[k]) {
			snprintf(why, whylen, "key %s: expiry %" PRId64 ", expected %" PRId64, name,
			         ei.expire_ns, md.expire[k]);
			ok = false;
			mf_slice_unref(&ei.val);
		} else if (r == 0) {
			if (ei.val.len != md.len[k] ||
			    (md.len[k] && memcmp(mf_slice_ptr(ei.val), md.v[k], md.len[k]) != 0)) {
				snprintf(why, whylen, "key %s: %zu bytes, expected %zu", name, ei.val.len,
				         md.len[k]);
				ok = false;
			}
			mf_slice_unref(&ei.val);
		}
	}
	model_free(&md);
	return ok;
}

typedef struct figures {
	unsigned long cuts, acked, promised, lost, inflight_kept, refused, mismatched;
	unsigned long cut_bytes_runs, clean, recovery_cuts;
} figures;

/* One run; returns false on a violation (with the reason printed). */
static bool run_one(uint64_t seed, mf_fsync_mode mode, double frac, double *ratio, figures *fg)
{
	pc_rng rng = {seed * 0x9E3779B97F4A7C15ULL + 1};
	wl_op ops[MAXOPS];
	int n = make_workload(&rng, ops, false);
	/* The cut: a fraction of the mutating calls this workload is expected
	 * to make (the most calls per operation seen so far, plus the final
	 * close); beyond the last call it is a crash after a clean close. */
	unsigned long cut_at = frac < 0 ? 0 : 1 + (unsigned long)(frac * (*ratio * n + 4));
	if (frac >= 0 && getenv("MEMFLUX_POWERCUT_CUT_AT"))
		cut_at = strtoul(getenv("MEMFLUX_POWERCUT_CUT_AT"), NULL, 0);
	char *dir = mktmp();
	powercut pc;
	pc_init(&pc, dir);
	pc_cut_at(&pc, cut_at);
	char err[1024] = "";
	bool ok = true;
	int saved = quiet_begin();

	/* op index -> LSN: ops that succeeded are numbered 1, 2, ... in order
	 * (a failed batch gives its LSNs back). */
	int acked = 0, promised = 0, inflight = -1;
	int done_ops = 0;  /* commits issued, acked or in flight */
	int *commit_idx = malloc(sizeof(int) * (size_t)n);
	mf_db *db = open_db(dir, mode, &pc.io, err, sizeof err);
	if (db) {
		for (int i = 0; i < n; i++) {
			wl_op *o = &ops[i];
			int r;
			if (o->kind == 1) {
				r = mf_db_sync(db);
				if (r == 0)
					promised = acked;
			} else if (o->kind == 2) {
				r = mf_db_snapshot(db);
				if (r == 0)
					promised = acked;
			} else {
				commit_idx[done_ops++] = i;
				if (o->walcopy)
					fill_walcopy(dir, o, i);
				writev_rehash(ops, i);
				r = commit(db, o);
				if (r == 0) {
					acked++;
					if (mode == MF_FSYNC_ALWAYS)
						promised = acked;
				} else {
					inflight = i;
				}
			}
			if (r != 0)
				break;
		}
		mf_db_close(db);
	}
	bool cut = pc_dead(&pc);
	if (!cut && db)
		promised = acked;  /* a clean close fsyncs everything */
	if ((double)pc_calls(&pc) / n > *ratio)
		*ratio = (double)pc_calls(&pc) / n;
	pc_crash(&pc, &rng);
	quiet_end(saved);
	if (!db && !cut) {
		print_message("seed %" PRIu64 ": first open failed without a cut: %s\n", seed, err);
		ok = false;
		goto out;
	}
	fg->cuts++;
	if (!cut)
		fg->clean++;
	fg->acked += (unsigned long)acked;
	fg->promised += (unsigned long)promised;

	/* Every third run, the power fails again during recovery (cutting the
	 * torn tail, deleting covered segments, creating memflux.wal): the next
	 * recovery must not be worse off. */
	if (seed % 3 == 1) {
		powercut pc2;
		pc_init(&pc2, dir);
		pc_adopt_dir(&pc2);
		pc_cut_at(&pc2, 1 + pc_below(&rng, 8));
		saved = quiet_begin();
		db = open_db(dir, mode, &pc2.io, err, sizeof err);
		if (db)
			mf_db_close(db);
		pc_crash(&pc2, &rng);
		quiet_end(saved);
		if (pc_dead(&pc2))
			fg->recovery_cuts++;
		pc_destroy(&pc2);
	}
	/* Recovery, by itself, with the real I/O. */
	saved = quiet_begin();
	db = open_db(dir, mode, NULL, err, sizeof err);
	quiet_end(saved);
	if (!db) {
		fg->refused++;
		print_message("seed %" PRIu64 " mode %s cut %lu: recovery REFUSED: %s\n", seed,
		              mf_fsync_mode_name(mode), cut_at, err);
		ok = false;
		goto out;
	}
	mf_store_stats ss;
	mf_store_stats_get(mf_db_store(db), &ss);
	uint64_t m = ss.applied_lsn;  /* = number of ops applied (each logged op succeeds) */
	int hi = acked + (inflight >= 0 ? 1 : 0);
	char why[256] = "";
	if (m < (uint64_t)promised || m > (uint64_t)hi) {
		snprintf(why, sizeof why, "recovered %" PRIu64 " ops; promised %d, acknowledged %d%s",
		         m, promised, acked, inflight >= 0 ? " +1 in flight" : "");
		ok = false;
	} else {
		int upto = m ? commit_idx[m - 1] + 1 : 0;
		ok = store_matches(db, 0, ops, upto, why, sizeof why);
	}
	if (!ok) {
		fg->mismatched++;
		print_message("seed %" PRIu64 " mode %s cut %lu: %s\n", seed, mf_fsync_mode_name(mode),
		              cut_at, why);
	} else {
		fg->lost += (unsigned long)acked - (m > (uint64_t)acked ? (unsigned long)acked
		                                                       : (unsigned long)m);
		if (m > (uint64_t)acked)
			fg->inflight_kept++;
	}
	/* The recovered log takes new writes that survive a restart. */
	if (ok && seed % 4 == 0) {
		wl_op post = {.kind = 0, .type = MF_OP_APPEND, .key = 0, .val = "<post>\n", .vlen = 7};
		int r = commit(db, &post);
		saved = quiet_begin();
		mf_db_close(db);
		db = open_db(dir, mode, NULL, err, sizeof err);
		quiet_end(saved);
		if (r != 0 || !db) {
			print_message("seed %" PRIu64 ": write after recovery: %d, reopen: %s\n", seed, r,
			              db ? "ok" : err);
			ok = false;
		} else {
			mf_store_stats_get(mf_db_store(db), &ss);
			if (ss.applied_lsn != m + 1) {
				print_message("seed %" PRIu64 ": after recovery+1 write: lsn %" PRIu64
				              ", expected %" PRIu64 "\n", seed, ss.applied_lsn, m + 1);
				ok = false;
			}
		}
	}
	if (db) {
		saved = quiet_begin();
		mf_db_close(db);
		quiet_end(saved);
	}
out:
	free(commit_idx);
	free_workload(ops, n);
	pc_destroy(&pc);
	rm_rf(dir);
	free(dir);
	return ok;
}

/* ---- concurrent writers: multi-record batches, snapshots racing commits */

#define NTHREADS 4

typedef struct cthread {
	mf_db *db;
	mf_fsync_mode mode;
	wl_op ops[MAXOPS];
	int n, acked, promised, inflight, ncommits;
	int commit_idx[MAXOPS];
	pthread_t th;
} cthread;

/* One thread's workload on its own keys; promises only its own. */
static void *cthread_main(void *arg)
{
	cthread *c = arg;
	for (int i = 0; i < c->n; i++) {
		wl_op *o = &c->ops[i];
		int r;
		if (o->kind == 1) {
			r = mf_db_sync(c->db);
			if (r == 0)
				c->promised = c->acked;
		} else if (o->kind == 2) {
			r = mf_db_snapshot(c->db);
			if (r == 0)
				c->promised = c->acked;
		} else {
			c->commit_idx[c->ncommits++] = i;
			writev_rehash(c->ops, i);
			r = commit(c->db, o);
			if (r == 0) {
				c->acked++;
				if (c->mode == MF_FSYNC_ALWAYS)
					c->promised = c->acked;
			} else {
				c->inflight = i;
			}
		}
		if (r != 0)
			break;
	}
	return NULL;
}

/* As run_one, with NTHREADS writers at once (the I/O order, so the exact
 * cut, then depends on scheduling: the seed fixes the workloads and the cut
 * call number).  Each thread's keys must hold the state after m_t of its
 * operations, promised_t <= m_t <= acknowledged_t (+1 in flight), and the
 * applied LSN must be the sum of the m_t (each record applied once). */
static bool run_concurrent(uint64_t seed, mf_fsync_mode mode, double frac, double *ratio,
                           figures *fg)
{
	pc_rng rng = {seed * 0x9E3779B97F4A7C15ULL + 7};
	cthread *ct = calloc(NTHREADS, sizeof *ct);
	int total = 0;
	for (int t = 0; t < NTHREADS; t++) {
		ct[t].n = make_workload(&rng, ct[t].ops, true);
		ct[t].mode = mode;
		ct[t].inflight = -1;
		for (int i = 0; i < ct[t].n; i++) {
			ct[t].ops[i].thread = t;
			/* No DEL here: "deleted again" would look like "not yet
			 * created", and each thread's count must be unambiguous for
			 * the sum check below. */
			if (ct[t].ops[i].type == MF_OP_DEL) {
				ct[t].ops[i].type = ct[t].ops[i].key >= 4 ? MF_OP_RPUSH : MF_OP_SET;
				char v[32];
				int l = snprintf(v, sizeof v, "<was-del %d>\n", i);
				ct[t].ops[i].val = strdup(v);
				ct[t].ops[i].vlen = (size_t)l;
			}
			if (t > 0 && ct[t].ops[i].kind == 2)
				ct[t].ops[i].kind = 1;  /* one snapshotter is enough */
		}
		total += ct[t].n;
	}
	unsigned long cut_at = frac < 0 ? 0 : 1 + (unsigned long)(frac * (*ratio * total + 4));
	if (frac >= 0 && getenv("MEMFLUX_POWERCUT_CUT_AT"))
		cut_at = strtoul(getenv("MEMFLUX_POWERCUT_CUT_AT"), NULL, 0);
	char *dir = mktmp();
	powercut pc;
	pc_init(&pc, dir);
	pc_cut_at(&pc, cut_at);
	char err[1024] = "";
	bool ok = true;
	int saved = quiet_begin();
	mf_db *db = open_db(dir, mode, &pc.io, err, sizeof err);
	if (db) {
		for (int t = 0; t < NTHREADS; t++) {
			ct[t].db = db;
			pthread_create(&ct[t].th, NULL, cthread_main, &ct[t]);
		}
		for (int t = 0; t < NTHREADS; t++)
			pthread_join(ct[t].th, NULL);
		mf_db_close(db);
	}
	bool cut = pc_dead(&pc);
	if ((double)pc_calls(&pc) / total > *ratio)
		*ratio = (double)pc_calls(&pc) / total;
	pc_crash(&pc, &rng);
	quiet_end(saved);
	if (!db && !cut) {
		print_message("concurrent seed %" PRIu64 ": first open failed without a cut: %s\n",
		              seed, err);
		ok = false;
		goto out;
	}
	fg->cuts++;
	if (!cut) {
		fg->clean++;
		for (int t = 0; t < NTHREADS; t++)
			ct[t].promised = ct[t].acked;
	}
	saved = quiet_begin();
	db = open_db(dir, mode, NULL, err, sizeof err);
	quiet_end(saved);
	if (!db) {
		fg->refused++;
		print_message("concurrent seed %" PRIu64 " mode %s cut %lu: recovery REFUSED: %s\n",
		              seed, mf_fsync_mode_name(mode), cut_at, err);
		ok = false;
		goto out;
	}
	mf_store_stats ss;
	mf_store_stats_get(mf_db_store(db), &ss);
	uint64_t sum = 0;
	for (int t = 0; t < NTHREADS && ok; t++) {
		cthread *c = &ct[t];
		int hi = c->acked + (c->inflight >= 0 ? 1 : 0), found = -1;
		char why[256] = "";
		for (int m = hi; m >= c->promised && found < 0; m--) {
			int upto = m ? c->commit_idx[m - 1] + 1 : 0;
			if (store_matches(db, t, c->ops, upto, why, sizeof why))
				found = m;
		}
		fg->acked += (unsigned long)c->acked;
		fg->promised += (unsigned long)c->promised;
		if (found < 0) {
			print_message("concurrent seed %" PRIu64 " mode %s cut %lu: thread %d matches no "
			              "state between %d (promised) and %d ops: %s\n", seed,
			              mf_fsync_mode_name(mode), cut_at, t, c->promised, hi, why);
			fg->mismatched++;
			ok = false;
			break;
		}
		sum += (uint64_t)found;
		fg->lost += (unsigned long)(c->acked - (found > c->acked ? c->acked : found));
		if (found > c->acked)
			fg->inflight_kept++;
	}
	if (ok && sum != ss.applied_lsn) {
		print_message("concurrent seed %" PRIu64 " mode %s cut %lu: %" PRIu64 " records "
		              "applied, threads account for %" PRIu64 "\n", seed,
		              mf_fsync_mode_name(mode), cut_at, ss.applied_lsn, sum);
		fg->mismatched++;
		ok = false;
	}
	saved = quiet_begin();
	mf_db_close(db);
	quiet_end(saved);
out:
	for (int t = 0; t < NTHREADS; t++)
		free_workload(ct[t].ops, ct[t].n);
	free(ct);
	pc_destroy(&pc);
	rm_rf(dir);
	free(dir);
	return ok;
}

/* Cuts per mode (plus a fifth as many with concurrent writers): CI runs
 * the units in a normal and an ASan build, ~60 s for both on 2 shared
 * cores (and in release and TSan builds). */
#if defined(__SANITIZE_ADDRESS__)
#define DEFAULT_CUTS 400
#elif defined(__SANITIZE_THREAD__)
#define DEFAULT_CUTS 150   /* TSan: the concurrent runs are what it is for */
#else
#define DEFAULT_CUTS 1000
#endif

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtoull(s, NULL, 0) : dflt;
}

static void run_mode(mf_fsync_mode mode)
{
	uint64_t base = env_u64("MEMFLUX_POWERCUT_SEED", 20261127);
	figures scratch = {0};
	unsigned long cuts = (unsigned long)env_u64("MEMFLUX_POWERCUT_CUTS", DEFAULT_CUTS);
	figures fg = {0};
	unsigned long failures = 0;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* The first run (no cut) measures calls per operation. */
	double ratio = 0;
	if (!run_one(base, mode, -1, &ratio, &scratch))
		failures++;
	for (unsigned long i = 0; i < cuts; i++) {
		uint64_t seed = base + i;
		pc_rng r = {seed ^ 0xC0FFEEULL};
		double frac = (double)pc_below(&r, 1u << 20) / (double)(1u << 20);
		if (!run_one(seed, mode, frac, &ratio, &fg))
			failures++;
	}
	/* A fifth of the cuts again with four concurrent writers. */
	figures cf = {0};
	double cratio = 0;
	if (!run_concurrent(base, mode, -1, &cratio, &scratch))
		failures++;
	for (unsigned long i = 0; i < cuts / 5; i++) {
		uint64_t seed = base + i;
		pc_rng r = {seed ^ 0xBADC0DEULL};
		double frac = (double)pc_below(&r, 1u << 20) / (double)(1u << 20);
		if (!run_concurrent(seed, mode, frac, &cratio, &cf))
			failures++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	print_message("powercut %s, %d writers: seeds %" PRIu64 "..%" PRIu64 ": %lu cuts (%lu "
	              "after a clean close), %lu acknowledged, %lu promised durable, %lu "
	              "acknowledged-but-unsynced lost, %lu in-flight kept, %lu refused mounts, "
	              "%lu wrong states\n", mf_fsync_mode_name(mode), NTHREADS, base,
	              base + cuts / 5 - 1, cf.cuts, cf.clean, cf.acked, cf.promised, cf.lost,
	              cf.inflight_kept, cf.refused, cf.mismatched);
	if (mode == MF_FSYNC_ALWAYS)
		assert_int_equal(cf.lost, 0);
	print_message("powercut %s: seeds %" PRIu64 "..%" PRIu64 ": %lu cuts (%lu after a clean "
	              "close, %lu more during recovery), %lu acknowledged, %lu promised durable, "
	              "%lu acknowledged-but-unsynced lost, %lu in-flight kept, %lu refused mounts, "
	              "%lu wrong states, %.1f s\n",
	              mf_fsync_mode_name(mode), base, base + cuts - 1, fg.cuts, fg.clean,
	              fg.recovery_cuts, fg.acked, fg.promised, fg.lost, fg.inflight_kept,
	              fg.refused, fg.mismatched, s);
	if (mode == MF_FSYNC_ALWAYS)
		assert_int_equal(fg.lost, 0);
	assert_int_equal(failures, 0);
}

static void test_powercut_always(void **state)
{
	(void)state;
	run_mode(MF_FSYNC_ALWAYS);
}

static void test_powercut_interval(void **state)
{
	(void)state;
	run_mode(MF_FSYNC_INTERVAL);
}

/* ------------------------------------------------------------------ */
/* folders: a subtree rename and rmdir cut at every I/O call            */
/* ------------------------------------------------------------------ */

/* One step of the folder workload: an op (kind 0), a sync (1) or a
 * snapshot (2). */
typedef struct tree_step {
	int kind, type, ktype;
	const char *key, *key2;
	uint64_t arg;
	uint8_t val[64];
	size_t vlen;
} tree_step;

#define TREE_KEYS 12
static tree_step tree_wl[64];
static int tree_n;

static void tree_add(int kind, int type, int ktype, const char *key, const char *key2,
                     uint64_t arg, const void *val, size_t vlen)
{
	tree_step *s = &tree_wl[tree_n++];
	*s = (tree_step){kind, type, ktype, key, key2, arg, {0}, vlen};
	if (vlen)
		memcpy(s->val, val, vlen);
}

static void tree_workload(void)
{
	static char names[TREE_KEYS][16];
	tree_n = 0;
	uint8_t a[MF_ATTR_B_LEN + 8];
	mf_attr at = {0700, 1000, 1000, 5, 6};
	mf_attr_encode(&at, a, MF_ATTR_A_LEN);
	tree_add(0, MF_OP_MKDIR, MF_T_FOLDER, "a", NULL, 0, a, MF_ATTR_A_LEN);
	tree_add(0, MF_OP_MKDIR, MF_T_FOLDER, "a/y", NULL, 0, NULL, 0);
	for (int i = 0; i < TREE_KEYS; i++) {
		snprintf(names[i], sizeof names[i], "a/x/k%d", i);
		tree_add(0, MF_OP_SET, MF_T_STRING, names[i], NULL, 0, names[i], strlen(names[i]));
		if (i == 5)
			tree_add(2, 0, 0, NULL, NULL, 0, NULL, 0);
	}
	memcpy(a + MF_ATTR_A_LEN, "x/k0", 4);
	tree_add(0, MF_OP_SYMLINK, MF_T_SYMLINK, "a/l", NULL, 0, a, MF_ATTR_A_LEN + 4);
	mf_attr_encode(&at, a, MF_ATTR_B_LEN);
	tree_add(0, MF_OP_SETATTR, MF_T_STRING, "a/x/k1", NULL, MF_ATTR_MODE | MF_ATTR_ATIME, a,
	         MF_ATTR_B_LEN);
	tree_add(1, 0, 0, NULL, NULL, 0, NULL, 0);
	tree_add(0, MF_OP_RENAMEDIR, MF_T_FOLDER, "a", "b/c", 0, NULL, 0);
	tree_add(0, MF_OP_RMDIR, MF_T_FOLDER, "b/c/y", NULL, 0, NULL, 0);
	tree_add(0, MF_OP_RENAME, MF_T_STRING, "b/c/x/k2", "top", 0, NULL, 0);
	tree_add(2, 0, 0, NULL, NULL, 0, NULL, 0);
	tree_add(0, MF_OP_RENAMEDIR, MF_T_FOLDER, "b/c/x", "x2", 0, NULL, 0);
	tree_add(0, MF_OP_RENAMEDIR, MF_T_FOLDER, "x2", "b/c/x3", 0, NULL, 0);
}

static void tree_op(const tree_step *s, mf_op *op)
{
	memset(op, 0, sizeof *op);
	op->type = (uint8_t)s->type;
	op->ktype = (uint8_t)s->ktype;
	op->key = mf_slice_from(s->key, strlen(s->key), strlen(s->key));
	if (s->key2)
		op->key2 = mf_slice_from(s->key2, strlen(s->key2), strlen(s->key2));
	if (s->vlen)
		op->val = mf_slice_from(s->val, s->vlen, s->vlen);
	op->arg = s->arg;
	op->time_ns = 1700000000000000000LL + (int64_t)(s - tree_wl);
}

static int item_cmp(const void *x, const void *y)
{
	const mf_item *a = x, *b = y;
	size_t n = a->key.len < b->key.len ? a->key.len : b->key.len;
	int c = memcmp(mf_slice_ptr(a->key), mf_slice_ptr(b->key), n);
	return c ? c : (a->key.len > b->key.len) - (a->key.len < b->key.len);
}

/* The recovered store equals the first m ops applied in memory: every key,
 * value and attribute, and the listing of every folder. */
static bool tree_matches(mf_store *got, uint64_t m, char *why, size_t whylen)
{
	mf_store *want = mf_store_new();
	uint64_t applied = 0;
	for (int i = 0; i < tree_n && applied < m; i++) {
		if (tree_wl[i].kind != 0)
			continue;
		mf_op op;
		tree_op(&tree_wl[i], &op);
		assert_int_equal(mf_store_apply(want, &op), 0);
		mf_op_clear(&op);
		applied++;
	}
	mf_item *a, *b;
	uint64_t lsn;
	size_t na = mf_store_export(got, &a, &lsn), nb = mf_store_export(want, &b, &lsn);
	qsort(a, na, sizeof *a, item_cmp);
	qsort(b, nb, sizeof *b, item_cmp);
	bool ok = na == nb;
	if (!ok)
		snprintf(why, whylen, "%zu keys, expected %zu", na, nb);
	for (size_t i = 0; ok && i < na; i++) {
		ok = item_cmp(&a[i], &b[i]) == 0 && a[i].type == b[i].type &&
		     a[i].val.len == b[i].val.len &&
		     (!a[i].val.len || memcmp(mf_slice_ptr(a[i].val), mf_slice_ptr(b[i].val),
		                              a[i].val.len) == 0) &&
		     a[i].mode == b[i].mode && a[i].uid == b[i].uid && a[i].atime_ns == b[i].atime_ns &&
		     a[i].mtime_ns == b[i].mtime_ns && a[i].ctime_ns == b[i].ctime_ns;
		if (!ok)
			snprintf(why, whylen, "key %.*s differs", (int)a[i].key.len, mf_slice_ptr(a[i].key));
	}
	/* Old tree or new tree, never a mix: no key is under both names. */
	int old = 0, moved = 0;
	for (size_t i = 0; i < na; i++) {
		old += a[i].key.len > 2 && memcmp(mf_slice_ptr(a[i].key), "a/", 2) == 0;
		moved += a[i].key.len > 4 && memcmp(mf_slice_ptr(a[i].key), "b/c/", 4) == 0;
	}
	if (ok && old && moved) {
		snprintf(why, whylen, "%d keys under a/ and %d under b/c/", old, moved);
		ok = false;
	}
	static const char *const dirs[] = {"", "a", "a/x", "b", "b/c", "b/c/x", "x2", "b/c/x3"};
	for (size_t d = 0; ok && d < sizeof dirs / sizeof dirs[0]; d++) {
		mf_dirent *x, *y;
		size_t nx, ny;
		int rx = mf_store_list(got, dirs[d], strlen(dirs[d]), &x, &nx);
		int ry = mf_store_list(want, dirs[d], strlen(dirs[d]), &y, &ny);
		ok = rx == ry && (rx != 0 || nx == ny);
		if (!ok)
			snprintf(why, whylen, "folder '%s' lists %d/%zu, expected %d/%zu", dirs[d], rx,
			         rx ? 0 : nx, ry, ry ? 0 : ny);
		if (rx == 0)
			mf_store_dirents_free(x, nx);
		if (ry == 0)
			mf_store_dirents_free(y, ny);
	}
	mf_store_items_free(a, na);
	mf_store_items_free(b, nb);
	mf_store_free(want);
	return ok;
}

/* Run the workload with the power cut at call cut_at (0: never), recover,
 * check.  *calls: the calls the workload made. */
static bool tree_run(mf_fsync_mode mode, unsigned long cut_at, uint64_t seed,
                     unsigned long *calls)
{
	char *dir = mktmp();
	powercut pc;
	pc_init(&pc, dir);
	pc_cut_at(&pc, cut_at);
	pc_rng rng = {seed * 0x9E3779B97F4A7C15ULL + 1};
	char err[1024] = "";
	int saved = quiet_begin();
	uint64_t acked = 0, promised = 0;
	bool inflight = false;
	mf_db *db = open_db(dir, mode, &pc.io, err, sizeof err);
	if (db) {
		for (int i = 0; i < tree_n; i++) {
			int r;
			if (tree_wl[i].kind == 1) {
				r = mf_db_sync(db);
				if (r == 0)
					promised = acked;
			} else if (tree_wl[i].kind == 2) {
				r = mf_db_snapshot(db);
				if (r == 0)
					promised = acked;
			} else {
				mf_op op;
				tree_op(&tree_wl[i], &op);
				r = mf_db_commit(db, &op);
				mf_op_clear(&op);
				if (r == 0) {
					acked++;
					if (mode == MF_FSYNC_ALWAYS)
						promised = acked;
				} else {
					inflight = true;
				}
			}
			if (r != 0)
				break;
		}
		mf_db_close(db);
	}
	bool cut = pc_dead(&pc);
	if (!cut && db)
		promised = acked;
	*calls = pc_calls(&pc);
	pc_crash(&pc, &rng);
	db = open_db(dir, mode, NULL, err, sizeof err);
	quiet_end(saved);
	bool ok = true;
	char why[256] = "";
	if (!db) {
		if (snprintf(why, sizeof why, "recovery refused: %s", err) < 0)
			why[0] = 0;
		ok = false;
	} else {
		mf_store_stats ss;
		mf_store_stats_get(mf_db_store(db), &ss);
		uint64_t m = ss.applied_lsn;
		if (m < promised || m > acked + inflight) {
			snprintf(why, sizeof why, "recovered %" PRIu64 " ops; promised %" PRIu64
			         ", acknowledged %" PRIu64, m, promised, acked);
			ok = false;
		} else {
			ok = tree_matches(mf_db_store(db), m, why, sizeof why);
		}
		saved = quiet_begin();
		mf_db_close(db);
		quiet_end(saved);
	}
	if (!ok)
		print_message("folder tree, mode %s, cut at call %lu: %s\n", mf_fsync_mode_name(mode),
		              cut_at, why);
	pc_destroy(&pc);
	rm_rf(dir);
	free(dir);
	return ok;
}

/* Every cut point of a workload with a folder rename (of 12 keys, a
 * symlink and an empty folder), an rmdir, a file rename across folders and
 * implicit-folder renames, with snapshots between: recovery holds the tree
 * before or after each op, never a mix. */
static void test_powercut_folder_tree(void **state)
{
	(void)state;
	tree_workload();
	mf_fsync_mode modes[] = {MF_FSYNC_ALWAYS, MF_FSYNC_INTERVAL};
	for (int mi = 0; mi < 2; mi++) {
		unsigned long total;
		assert_true(tree_run(modes[mi], 0, 1, &total));
		unsigned long failures = 0;
		for (unsigned long c = 1; c <= total + 1; c++) {
			unsigned long calls;
			if (!tree_run(modes[mi], c, c, &calls))
				failures++;
		}
		print_message("folder tree powercut %s: %lu cut points, %lu wrong\n",
		              mf_fsync_mode_name(modes[mi]), total + 1, failures);
		assert_int_equal(failures, 0);
	}
}

/* ------------------------------------------------------------------ */
/* genuine corruption of durable data is refused                       */

static void flip(const char *dir, const char *name, uint64_t off)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int fd = open(p, O_RDWR);
	assert_true(fd >= 0);
	uint8_t b;
	assert_int_equal(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x20;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static off_t size_of(const char *dir, const char *name)
{
	char p[1024];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	struct stat st;
	return stat(p, &st) == 0 ? st.st_size : -1;
}

/* Build a data dir: n ops; sync (interval) or not; optionally a sealed
 * segment kept (a rotation without a snapshot: the callback-free path). */
static char *build_dir(mf_fsync_mode mode, int n, bool sync_at_end)
{
	char *dir = mktmp();
	char err[512];
	mf_db *db = open_db(dir, mode, NULL, err, sizeof err);
	assert_non_null(db);
	for (int i = 0; i < n; i++) {
		char v[64];
		int l = snprintf(v, sizeof v, "value number %d, long enough", i);
		wl_op o = {.kind = 0, .type = MF_OP_APPEND, .key = i % 4, .val = v, .vlen = (size_t)l};
		assert_int_equal(commit(db, &o), 0);
		if (mode == MF_FSYNC_INTERVAL && i == n / 2 && sync_at_end)
			assert_int_equal(mf_db_sync(db), 0);
	}
	if (sync_at_end)
		assert_int_equal(mf_db_sync(db), 0);
	int saved = quiet_begin();
	mf_db_close(db);
	quiet_end(saved);
	return dir;
}

static void expect_refused(const char *dir, const char *what)
{
	char err[1024] = "";
	int saved = quiet_begin();
	mf_db *db = open_db(dir, MF_FSYNC_ALWAYS, NULL, err, sizeof err);
	quiet_end(saved);
	if (db) {
		mf_db_close(db);
		fail_msg("%s: mounted", what);
	}
	assert_non_null(strstr(err, what));
}

static void test_corruption_of_durable_data_refused(void **state)
{
	(void)state;
	/* ALWAYS: a flipped byte in any record but the last is durable data
	 * (the next record says so). */
	char *dir = build_dir(MF_FSYNC_ALWAYS, 20, false);
	off_t sz = size_of(dir, "memflux.wal");
	flip(dir, "memflux.wal", MF_WAL_FILE_HEADER + 70);
	expect_refused(dir, "which was durable");
	flip(dir, "memflux.wal", MF_WAL_FILE_HEADER + 70);  /* undo */
	flip(dir, "memflux.wal", (uint64_t)sz / 2);
	expect_refused(dir, "which was durable");
	rm_rf(dir);
	free(dir);

	/* INTERVAL: before the last sync, corruption; after it, a torn tail. */
	dir = build_dir(MF_FSYNC_INTERVAL, 20, true);
	flip(dir, "memflux.wal", MF_WAL_FILE_HEADER + 70);
	expect_refused(dir, "which was durable");
	rm_rf(dir);
	free(dir);

	/* A sealed segment, and the snapshot. */
	dir = mktmp();
	char err[512];
	mf_db *db = open_db(dir, MF_FSYNC_INTERVAL, NULL, err, sizeof err);
	assert_non_null(db);
	for (int i = 0; i < 10; i++) {
		wl_op o = {.kind = 0, .type = MF_OP_APPEND, .key = 1, .val = "abcdef", .vlen = 6};
		assert_int_equal(commit(db, &o), 0);
	}
	assert_int_equal(mf_db_snapshot(db), 0);
	for (int i = 0; i < 10; i++) {
		wl_op o = {.kind = 0, .type = MF_OP_APPEND, .key = 2, .val = "ghijkl", .vlen = 6};
		assert_int_equal(commit(db, &o), 0);
	}
	int saved = quiet_begin();
	mf_db_close(db);
	quiet_end(saved);
	flip(dir, "memflux.snapshot", (uint64_t)size_of(dir, "memflux.snapshot") / 2);
	expect_refused(dir, "snapshot");
	rm_rf(dir);
	free(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_corruption_of_durable_data_refused),
		cmocka_unit_test(test_powercut_folder_tree),
		cmocka_unit_test(test_powercut_always),
		cmocka_unit_test(test_powercut_interval),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
