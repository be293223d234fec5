/*
 * db.c — store + WAL + snapshots (see db.h for the contract).
 */
#include "db.h"
#include "expire.h"
#include "../io/log.h"
#include "../wal/record.h"

#include "../io/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct mf_db {
	mf_db_opts opts;
	mf_bpop bp;             /* blocking pops' waiters (bpop.c) */
	mf_expire expire;       /* the active expire cycle (expire.c) */
	char *dir;
	int lock_fd;
	mf_store *store;
	mf_wal *wal;
	mf_io *io;

	/* recovery figures, fixed after open */
	double recovery_seconds;
	char recovery_line[512];
	uint64_t replayed, snapshot_lsn_loaded, snapshot_keys_loaded;

	/* snapshot thread: requests are tickets; the thread runs while
	 * done < requested, so triggers during a snapshot coalesce into one. */
	pthread_mutex_t snap_mu;
	pthread_cond_t snap_cv;
	pthread_t snap_thread;
	uint64_t snap_requested, snap_started, snap_done;
	int snap_last_err;
	bool snap_stop;
	uint64_t snap_count;
	mf_snapshot_info snap_last;
	int64_t snap_last_time_ns;
	double capture_seconds;   /* how long writers were held for the capture
	                             (under snap_mu) */
	/* Written by the rotate callback (on the WAL's leader), read by the
	 * snapshot thread once mf_wal_rotate has returned (the WAL's queue
	 * hand-off orders the two); nobody else touches them. */
	mf_item *cap_items;
	size_t cap_n;
	bool cap_begun;           /* capture_cb ran: the store's capture must end */
	double cap_seconds;
	/* last snapshot as persisted in memflux.state (survives restarts);
	 * under snap_mu */
	int64_t state_snap_time_ns;
	uint64_t state_snap_lsn;
	char state_snap_status[128];

	/* recovery progress (mf_db_open's thread only) */
	uint64_t prog_total_bytes, prog_done_bytes, prog_records;
	uint64_t prog_keys_total, prog_keys;
	uint64_t prog_unticked;   /* bytes recovered since the clock was last read */
	const mf_snapshot_info *prog_si;  /* its header's key count */
	double prog_t0, prog_next;
	double prog_period;        /* 1 s; MEMFLUX_TEST_PROGRESS_MS for tests */
	int prog_phase;            /* 1 snapshot, 2 WAL */

	/* figures for /.ctl/stats */
	double open_mono;
	int64_t open_ns;
	atomic_uint_fast64_t writes, writes_failed, refused_memory;
	atomic_uint_fast64_t reads, read_hits, read_misses;
	atomic_int_fast64_t handles;
	pthread_mutex_t rate_mu;   /* per-second write/read counters */
	int64_t rate_sec;
	uint64_t w_cur, w_prev, r_cur, r_prev;

	/* change hook (mf_db_set_change_hook): may be installed while RESP
	 * workers commit (the daemon installs it once the mount exists), so
	 * published with release/acquire: ctx is stored before fn. */
	_Atomic(mf_db_change_fn) change_fn;
	void *_Atomic change_ctx;
};

int64_t mf_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int mf_parse_size(const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *s == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case '\0': break;
	default: return -EINVAL;
	}
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end || v == 0 || v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

#ifndef MF_VERSION
#define MF_VERSION "0.0.0-dev"
#endif

/* ---------- recovery progress ---------- */

/*
 * A long recovery (millions of records: seconds) logs where it is about once
 * a second, so that an operator watching an empty mountpoint sees it move.
 * The WAL's size is known up front and each replayed record's size follows
 * from its op (MF_WAL_REC_HEADER + key + key2 + value, wal/record.h), so
 * the percentage needs no hook inside the WAL code; the snapshot's key
 * count comes from its header.
 */
static void progress_start(mf_db *db, int phase)
{
	/* Test hook: a shorter period, so that a small store (a few thousand
	 * records, recovered in milliseconds) shows progress lines too. */
	const char *t = getenv("MEMFLUX_TEST_PROGRESS_MS");
	db->prog_period = t ? atoi(t) / 1000.0 : 1.0;
	db->prog_phase = phase;
	db->prog_t0 = mf_mono_sec();
	db->prog_next = db->prog_t0 + db->prog_period;
}

static void progress_tick(mf_db *db)
{
	double now = mf_mono_sec();
	if (now < db->prog_next)
		return;
	db->prog_next = now + db->prog_period;
	double el = now - db->prog_t0;
	if (el <= 0)
		el = 1e-9;
	double frac;
	char line[256];
	if (db->prog_phase == 1) {
		frac = db->prog_keys_total ? (double)db->prog_keys / (double)db->prog_keys_total : 0;
		if (frac > 1)
			frac = 1;
		snprintf(line, sizeof line,
		         "recovery progress: snapshot %" PRIu64 " of %" PRIu64 " keys (%.0f%%), "
		         "%.0f keys/s, about %.0f s left",
		         db->prog_keys, db->prog_keys_total, frac * 100, db->prog_keys / el,
		         frac > 0 ? el * (1 - frac) / frac : 0.0);
	} else {
		frac = db->prog_total_bytes ? (double)db->prog_done_bytes / (double)db->prog_total_bytes : 0;
		if (frac > 1)
			frac = 1;
		snprintf(line, sizeof line,
		         "recovery progress: WAL %" PRIu64 " records replayed (%.0f%% of %.1f MiB), "
		         "%.0f records/s, about %.0f s left",
		         db->prog_records, frac * 100, db->prog_total_bytes / 1048576.0,
		         db->prog_records / el, frac > 0 ? el * (1 - frac) / frac : 0.0);
	}
	mf_log_info("%s", line);
	if (db->opts.progress)
		db->opts.progress(line);
}

/* Bytes of WAL segments (memflux.wal, memflux.wal.*) in dir. */
static uint64_t wal_bytes_on_disk(const char *dir)
{
	uint64_t total = 0;
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	struct dirent *e;
	struct stat sb;
	while ((e = readdir(d)) != NULL) {
		if (strncmp(e->d_name, MF_WAL_ACTIVE_NAME, strlen(MF_WAL_ACTIVE_NAME)) != 0 ||
		    strstr(e->d_name, ".tmp") || strstr(e->d_name, ".broken"))
			continue;
		if (fstatat(dirfd(d), e->d_name, &sb, 0) == 0 && S_ISREG(sb.st_mode))
			total += (uint64_t)sb.st_size;
	}
	closedir(d);
	return total;
}

/* The clock is read every 1024 records or keys, or sooner after this many
 * bytes: a log of a few big values would otherwise go minutes between
 * progress lines (issue 12: once a second while recovery runs). */
#define PROGRESS_BYTES ((uint64_t)16 << 20)

static bool progress_due(mf_db *db, uint64_t count, uint64_t bytes)
{
	db->prog_unticked += bytes;
	if ((count & 1023) != 0 && db->prog_unticked < PROGRESS_BYTES)
		return false;
	db->prog_unticked = 0;
	return true;
}

static int apply_cb(void *ctx, mf_op *op)
{
	mf_db *db = ctx;
	if (db->prog_phase == 2) {
		db->prog_records++;
		uint64_t b = MF_WAL_REC_HEADER + op->key.len + op->key2.len + op->val.len;
		db->prog_done_bytes += b;
		if (progress_due(db, db->prog_records, b))
			progress_tick(db);
	}
	return mf_store_apply(db->store, op);
}

static int load_cb(void *ctx, mf_item *item)
{
	mf_db *db = ctx;
	uint64_t b = item->key.len + item->val.len;
	int r = mf_store_load_item(db->store, item);
	mf_slice_unref(&item->key);
	mf_slice_unref(&item->val);
	if (progress_due(db, ++db->prog_keys, b)) {
		db->prog_keys_total = db->prog_si ? db->prog_si->declared_keys : 0;
		progress_tick(db);
	}
	return r;
}

/* ---------- memflux.state: the last snapshot across restarts ---------- */

#define STATE_NAME "memflux.state"

/* Best effort: these figures are for humans and monitoring, never for
 * recovery, so the file is replaced (tmp + rename) but not fsynced, and a
 * missing or garbled one just means "unknown". */
static void state_save(mf_db *db)
{
	char path[4096], tmp[4200];
	snprintf(path, sizeof path, "%s/" STATE_NAME, db->dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	pthread_mutex_lock(&db->snap_mu);
	dprintf(fd, "last_snapshot_time_ns %" PRId64 "\nlast_snapshot_lsn %" PRIu64
	        "\nlast_snapshot_status %s\n", db->state_snap_time_ns, db->state_snap_lsn,
	        db->state_snap_status);
	pthread_mutex_unlock(&db->snap_mu);
	if (close(fd) == 0 && rename(tmp, path) == 0)
		return;
	unlink(tmp);
}

static void state_load(mf_db *db)
{
	snprintf(db->state_snap_status, sizeof db->state_snap_status, "none");
	char path[4096];
	snprintf(path, sizeof path, "%s/" STATE_NAME, db->dir);
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	char line[256];
	while (fgets(line, sizeof line, f)) {
		char val[128];
		int64_t t;
		uint64_t l;
		if (sscanf(line, "last_snapshot_time_ns %" SCNd64, &t) == 1)
			db->state_snap_time_ns = t;
		else if (sscanf(line, "last_snapshot_lsn %" SCNu64, &l) == 1)
			db->state_snap_lsn = l;
		else if (sscanf(line, "last_snapshot_status %127[^\n]", val) == 1)
			snprintf(db->state_snap_status, sizeof db->state_snap_status, "%s", val);
	}
	fclose(f);
}

/* ---------- per-second rates ---------- */

/* Counts of the current and the previous whole second (wall clock seconds
 * as the boundary, like a Redis INFO sample): "per second" is the last
 * complete second. */
static void rate_note(mf_db *db, bool write)
{
	int64_t sec = mf_now_ns() / 1000000000LL;
	pthread_mutex_lock(&db->rate_mu);
	if (sec != db->rate_sec) {
		bool next = sec == db->rate_sec + 1;
		db->w_prev = next ? db->w_cur : 0;
		db->r_prev = next ? db->r_cur : 0;
		db->w_cur = db->r_cur = 0;
		db->rate_sec = sec;
	}
	if (write)
		db->w_cur++;
	else
		db->r_cur++;
	pthread_mutex_unlock(&db->rate_mu);
}

static void rate_get(mf_db *db, uint64_t *w, uint64_t *r)
{
	int64_t sec = mf_now_ns() / 1000000000LL;
	pthread_mutex_lock(&db->rate_mu);
	*w = sec == db->rate_sec ? db->w_prev : sec == db->rate_sec + 1 ? db->w_cur : 0;
	*r = sec == db->rate_sec ? db->r_prev : sec == db->rate_sec + 1 ? db->r_cur : 0;
	pthread_mutex_unlock(&db->rate_mu);
}

void mf_db_handles_add(mf_db *db, int delta)
{
	atomic_fetch_add(&db->handles, delta);
}

void mf_db_count_read(mf_db *db, bool hit)
{
	atomic_fetch_add(&db->reads, 1);
	atomic_fetch_add(hit ? &db->read_hits : &db->read_misses, 1);
	rate_note(db, false);
}

static void *snap_main(void *arg);

/* mkdir -p with mode 0700 for the directories we create. */
static int mkdirs(const char *path)
{
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0700) < 0 && errno != EEXIST) {
			int e = -errno;
			free(p);
			return e;
		}
		*s = '/';
	}
	int r = mkdir(p, 0700) < 0 && errno != EEXIST ? -errno : 0;
	free(p);
	return r;
}

/* ---------- data dir lock ---------- */

/* Undo mountinfo's octal escapes (\040 for a space, \134 for '\\'). */
static void unescape_octal(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

static bool same_path(const char *a, const char *b)
{
	if (strcmp(a, b) == 0)
		return true;
	char ra[PATH_MAX], rb[PATH_MAX];
	return realpath(a, ra) && realpath(b, rb) && strcmp(ra, rb) == 0;
}

/*
 * Does the lock holder still serve a mount of dir?  The daemon mounts with
 * "memfluxfs:DIR" as the mount's source (fsname), so this is a FUSE entry
 * in the holder's mountinfo (its mount namespace; ours if /proc/PID is not
 * readable) with that source.  Its mountpoint goes to mnt.
 */
static bool serves_mount(long pid, const char *dir, char *mnt, size_t mntlen)
{
	FILE *f = NULL;
	if (pid > 0) {
		char path[64];
		snprintf(path, sizeof path, "/proc/%ld/mountinfo", pid);
		f = fopen(path, "re");
	}
	if (!f)
		f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	bool found = false;
	while (!found && getline(&line, &cap, f) > 0) {
		/* id parent maj:min root mountpoint opts [tags...] - fstype source superopts */
		char *sep = strstr(line, " - ");
		if (!sep)
			continue;
		*sep = '\0';
		char *save = NULL;
		char *fstype = strtok_r(sep + 3, " \n", &save);
		char *src = strtok_r(NULL, " \n", &save);
		size_t pl = strlen(MF_DB_FSNAME_PREFIX);
		if (!fstype || !src || strncmp(fstype, "fuse", 4) != 0 ||
		    strncmp(src, MF_DB_FSNAME_PREFIX, pl) != 0)
			continue;
		unescape_octal(src);
		if (!same_path(src + pl, dir))
			continue;
		char *tok = strtok_r(line, " ", &save);
		for (int i = 0; tok && i < 4; i++)
			tok = strtok_r(NULL, " ", &save);
		if (tok) {
			unescape_octal(tok);
			snprintf(mnt, mntlen, "%s", tok);
		}
		found = true;
	}
	free(line);
	fclose(f);
	return found;
}

static long lock_holder_pid(int fd)
{
	char buf[32];
	ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtol(buf, NULL, 10);
}

/*
 * Take the data dir lock.  A holder that serves no mount of the data dir
 * is either exiting (`fusermount3 -u M && memfluxfs M`: after the unmount
 * it still flushes the WAL, for a second or two with millions of keys) or
 * still recovering: wait for it, saying so once, up to lock_wait_ms.  A
 * holder with a live mount fails at once.
 */
static int lock_data_dir(mf_db *db, const char *path, char *err, size_t errlen)
{
	double deadline = mf_mono_sec() + db->opts.lock_wait_ms / 1000.0;
	bool told = false;
	for (;;) {
		if (flock(db->lock_fd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR) {
			snprintf(err, errlen, "data dir %s: cannot lock %s: %s", db->dir, path,
			         strerror(errno));
			return -1;
		}
		long pid = lock_holder_pid(db->lock_fd);
		char mnt[PATH_MAX] = "";
		if (serves_mount(pid, db->dir, mnt, sizeof mnt)) {
			snprintf(err, errlen, "data dir %s is in use by memfluxfs (pid %ld, mounted on %s)",
			         db->dir, pid, mnt);
			return -1;
		}
		if (mf_mono_sec() >= deadline) {
			if (told)
				snprintf(err, errlen, "data dir %s is still locked by pid %ld after %.0f s "
				         "(lock %s held; no mount of it is left)", db->dir, pid,
				         db->opts.lock_wait_ms / 1000.0, path);
			else
				snprintf(err, errlen, "data dir %s is in use by another memfluxfs (lock %s held)",
				         db->dir, path);
			return -1;
		}
		if (!told) {
			char line[PATH_MAX + 200];
			snprintf(line, sizeof line, "data dir %s is locked by pid %ld, which serves no mount "
			         "of it (shutting down?): waiting up to %.0f s for it", db->dir, pid,
			         db->opts.lock_wait_ms / 1000.0);
			if (db->opts.notice)
				db->opts.notice(line);
			else
				mf_log_warn("%s", line);
			told = true;
		}
		/* Polling: flock has no timed wait, and the holder's mount
		 * state must be re-checked anyway. */
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
}

mf_db *mf_db_open(const mf_db_opts *opts, char *err, size_t errlen)
{
	mf_db *db = calloc(1, sizeof *db);
	if (!db) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	db->opts = *opts;
	db->io = opts->io ? opts->io : mf_io_posix();
	db->dir = strdup(opts->dir);
	db->lock_fd = -1;
	pthread_mutex_init(&db->snap_mu, NULL);
	pthread_cond_init(&db->snap_cv, NULL);
	mf_bpop_init(&db->bp);
	pthread_mutex_init(&db->rate_mu, NULL);
	double t0 = mf_mono_sec();
	db->open_mono = t0;
	db->open_ns = mf_now_ns();

	int r = mkdirs(db->dir);
	struct stat sb;
	if (r == 0 && (stat(db->dir, &sb) < 0 || !S_ISDIR(sb.st_mode)))
		r = -ENOTDIR;
	if (r == 0 && access(db->dir, W_OK | X_OK) < 0)
		r = -errno;
	char path[4096];
	if (r == 0)
		r = mf_path_join(path, sizeof path, db->dir, "memflux.lock");
	if (r) {
		snprintf(err, errlen, "data dir %s: %s", db->dir, strerror(-r));
		goto fail;
	}
	db->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (db->lock_fd < 0) {
		snprintf(err, errlen, "data dir %s: cannot open lock file: %s", db->dir, strerror(errno));
		goto fail;
	}
	if (lock_data_dir(db, path, err, errlen) != 0)
		goto fail;
	t0 = mf_mono_sec(); /* recovery time excludes waiting for the lock */
	/* Our pid, as soon as the lock is ours: tests and operators find the
	 * daemon through it (kill -9 tests), and a second memfluxfs checks
	 * whether this pid serves a mount. */
	char pid[32];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(db->lock_fd, 0) == 0 && pwrite(db->lock_fd, pid, (size_t)n, 0) < 0)
		mf_log_warn("cannot record pid in lock file: %s", strerror(errno));

	mf_snapshot_remove_tmp(db->io, db->dir);
	db->store = mf_store_new();
	state_load(db);
	mf_snapshot_info si = {0};
	db->prog_si = &si;
	progress_start(db, 1);
	r = mf_snapshot_load(db->io, db->dir, load_cb, db, &si, err, errlen);
	db->prog_si = NULL;
	if (r && r != -ENOENT) {
		if (!err[0])
			snprintf(err, errlen, "snapshot in %s: %s", db->dir, strerror(-r));
		size_t l = strlen(err);
		snprintf(err + l, errlen - l, " (refusing to mount; see memflux-check %s)", db->dir);
		goto fail;
	}
	if (r == 0) {
		db->snapshot_lsn_loaded = si.lsn;
		db->snapshot_keys_loaded = si.keys;
		mf_store_set_applied_lsn(db->store, si.lsn);
	}
	mf_wal_replay_info ri = {0};
	db->prog_total_bytes = wal_bytes_on_disk(db->dir);
	progress_start(db, 2);
	r = mf_wal_replay(db->dir, db->io, db->snapshot_lsn_loaded, apply_cb, db, &ri, err, errlen);
	if (r) {
		if (!err[0])
			snprintf(err, errlen, "WAL in %s: %s", db->dir, strerror(-r));
		goto fail;
	}
	db->prog_phase = 0; /* from here apply_cb serves live writes */
	db->replayed = ri.records;
	uint64_t last = ri.last_lsn > db->snapshot_lsn_loaded ? ri.last_lsn : db->snapshot_lsn_loaded;
	mf_store_set_applied_lsn(db->store, last);

	mf_wal_opts wo = {
		.dir = db->dir,
		.io = db->io,
		.mode = opts->fsync_mode,
		.interval_ms = opts->fsync_interval_ms ? opts->fsync_interval_ms : 1000,
	};
	db->wal = mf_wal_open(&wo, last + 1, apply_cb, db, &r);
	if (!db->wal) {
		snprintf(err, errlen, "cannot open WAL in %s: %s", db->dir, strerror(-r));
		goto fail;
	}
	db->recovery_seconds = mf_mono_sec() - t0;
	snprintf(db->recovery_line, sizeof db->recovery_line,
	         "%s: loaded snapshot lsn %" PRIu64 " (%" PRIu64
	         " keys), replayed %" PRIu64 " WAL records (%" PRIu64 " bytes of torn tail cut) in %.3f s",
	         db->dir, db->snapshot_lsn_loaded, db->snapshot_keys_loaded, db->replayed,
	         ri.truncated_bytes, db->recovery_seconds);
	mf_log_info("%s", db->recovery_line);
	if (pthread_create(&db->snap_thread, NULL, snap_main, db) != 0) {
		snprintf(err, errlen, "cannot start snapshot thread");
		mf_wal_close(db->wal);
		db->wal = NULL;
		goto fail;
	}
	if (mf_expire_start(&db->expire, db) != 0) /* then deleted when met */
		mf_log_warn("cannot start the expire cycle");
	return db;

fail:
	if (db->store)
		mf_store_free(db->store);
	if (db->lock_fd >= 0)
		close(db->lock_fd);
	mf_bpop_destroy(&db->bp);
	free(db->dir);
	free(db);
	return NULL;
}

static void db_close(mf_db *db, bool free_memory)
{
	mf_expire_stop(&db->expire); /* its commits end before the WAL does */
	pthread_mutex_lock(&db->snap_mu);
	db->snap_stop = true;
	pthread_cond_broadcast(&db->snap_cv);
	pthread_mutex_unlock(&db->snap_mu);
	pthread_join(db->snap_thread, NULL);
	int r = mf_wal_close(db->wal);
	if (r)
		mf_log_error("closing WAL: %s", strerror(-r));
	/* Everything is durable: let a restart waiting for the lock in now,
	 * before the slow part (freeing millions of keys). */
	close(db->lock_fd);
	if (!free_memory)
		return;
	mf_store_free(db->store);
	mf_bpop_destroy(&db->bp); /* callers are gone: no waiter is left */
	free(db->dir);
	free(db);
}

void mf_db_close(mf_db *db)
{
	db_close(db, true);
}

void mf_db_close_exit(mf_db *db)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
	db_close(db, true); /* sanitizer builds: leak checks see every key freed */
#else
	db_close(db, false);
#endif
}

const char *mf_db_recovery_line(mf_db *db)
{
	return db->recovery_line;
}

mf_store *mf_db_store(mf_db *db)
{
	return db->store;
}

static void log_key(const char *what, const mf_op *op, const char *fmt, ...)
{
	char msg[256], key[4 * MF_KEY_MAX + 8];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	mf_log_warn("%s %s/%s: %s", what, mf_type_name(op->ktype),
	            mf_log_key(key, sizeof key, mf_slice_ptr(op->key), op->key.len), msg);
}

static void request_snapshot(mf_db *db, uint64_t *ticket)
{
	pthread_mutex_lock(&db->snap_mu);
	/* A snapshot that has started may not include writes made before this
	 * request; so the ticket is one past whatever has started. */
	uint64_t want = db->snap_started + 1;
	if (db->snap_requested < want)
		db->snap_requested = want;
	if (ticket)
		*ticket = want;
	pthread_cond_broadcast(&db->snap_cv);
	pthread_mutex_unlock(&db->snap_mu);
}

/*
 * What --max-memory counts: committed values plus a flat per-key estimate
 * of the entry, key and buffer header (MF_DB_KEY_OVERHEAD).  Not the buffer
 * total (mf_buf_bytes): that includes data open handles hold before their
 * close, and the very value being committed.
 */
static uint64_t store_memory(mf_db *db)
{
	mf_store_stats ss;
	mf_store_stats_get(db->store, &ss);
	return ss.value_bytes + ss.keys[0] * MF_DB_KEY_OVERHEAD;
}

uint64_t mf_db_memory(mf_db *db, uint64_t *limit)
{
	if (limit)
		*limit = db->opts.max_memory;
	return store_memory(db);
}

int mf_db_commit_enqueue(mf_db *db, mf_op *op, mf_db_ticket *t)
{
	/* Refuse what would fail anyway before it is logged (type conflicts,
	 * missing keys, values their type refuses); apply re-checks
	 * deterministically.  The rules are the store's. */
	int r = mf_store_prepare(db->store, op); /* check; JSON edits kept for apply */
	if (r == -EINVAL && (op->type == MF_OP_SET || op->type == MF_OP_JSON_SETPATH) &&
	    op->ktype == MF_T_JSON) {
		size_t off = 0;
		const char *why = "invalid";
		mf_value_check(MF_T_JSON, mf_slice_ptr(op->val), op->val.len, &off, &why);
		log_key(op->type == MF_OP_SET ? "rejected JSON" : "rejected JSON value for path", op,
		        "%s at byte %zu", why, off);
	}
	if (r)
		return r;
	/* The memory limit, checked here, the one path every mutation takes,
	 * and before the WAL: a logged op that replay could not apply would
	 * fail again at every restart. */
	if (db->opts.max_memory) {
		uint64_t grow = op->val.len;
		if (op->type == MF_OP_CREATE)
			grow += op->key.len;
		if (op->type == MF_OP_TRUNCATE || op->type == MF_OP_WRITEV)
			grow += op->arg; /* sizes count holes, as value_bytes does */
		uint64_t used = store_memory(db);
		if (grow && used + grow > db->opts.max_memory) {
			atomic_fetch_add(&db->refused_memory, 1);
			log_key("refused (max-memory reached)", op, "%s of %" PRIu64
			        " bytes: the store holds %" PRIu64 " of %" PRIu64 " bytes allowed (ENOSPC)",
			        mf_optype_name(op->type), grow, used, db->opts.max_memory);
			return -ENOSPC;
		}
	}
	if (!op->time_ns)
		op->time_ns = mf_now_ns();
	r = mf_wal_enqueue(db->wal, op, &t->wal);
	if (r < 0)
		atomic_fetch_add(&db->writes_failed, 1);
	return r;
}

int mf_db_commit_wait(mf_db *db, mf_db_ticket *t)
{
	mf_op *op = t->wal.op;
	int r = mf_wal_wait(db->wal, &t->wal);
	if (r == 0) {
		mf_bpop_notify(&db->bp, op);
		atomic_fetch_add(&db->writes, 1);
		rate_note(db, true);
	} else {
		atomic_fetch_add(&db->writes_failed, 1);
	}
	if (r == 0 && db->opts.wal_threshold) {
		mf_wal_stats ws;
		mf_wal_stats_get(db->wal, &ws);
		if (ws.bytes >= db->opts.wal_threshold && !ws.read_only) {
			pthread_mutex_lock(&db->snap_mu);
			bool idle = db->snap_done == db->snap_requested;
			pthread_mutex_unlock(&db->snap_mu);
			if (idle)
				request_snapshot(db, NULL);
		}
	}
	return r;
}

mf_bpop *mf_db_bpop_state(mf_db *db)
{
	return &db->bp;
}

/* ---------- change notification (RESP -> kernel caches) ---------- */

void mf_db_set_change_hook(mf_db *db, mf_db_change_fn fn, void *ctx)
{
	atomic_store_explicit(&db->change_ctx, ctx, memory_order_relaxed);
	atomic_store_explicit(&db->change_fn, fn, memory_order_release);
}

int mf_db_commit_notify(mf_db *db, mf_op *op)
{
	int r = mf_db_commit(db, op);
	if (r == 0)
		mf_db_notify_changed(db, op);
	return r;
}

void mf_db_notify_changed(mf_db *db, const mf_op *op)
{
	mf_db_change_fn fn = atomic_load_explicit(&db->change_fn, memory_order_acquire);
	if (!fn)
		return;
	void *ctx = atomic_load_explicit(&db->change_ctx, memory_order_relaxed);
	if (op->type == MF_OP_FLUSH) {
		fn(ctx, MF_T_NONE, NULL, 0);
		return;
	}
	const mf_op *subs = op;
	mf_op *alloc = NULL;
	size_t n = 1;
	if (op->type == MF_OP_MULTI && mf_multi_decode(op->val, &alloc, &n) == 0)
		subs = alloc; /* each key a transaction touched */
	for (size_t i = 0; i < n; i++) {
		const mf_op *s = &subs[i];
		if (s->type == MF_OP_READ || s->type == MF_OP_MULTI)
			continue;
		if (s->type == MF_OP_FLUSH) {
			fn(ctx, MF_T_NONE, NULL, 0);
			continue;
		}
		/* A DEL of any type (ktype 0) or a SET over another type: the
		 * key's name in every type directory. */
		for (int t = MF_T_STRING; t <= MF_T_MAX_; t++)
			if (mf_type_valid(t) && (t == s->ktype || s->ktype == MF_T_NONE ||
			                         (s->type == MF_OP_SET && op->type == MF_OP_MULTI)))
				fn(ctx, t, mf_slice_ptr(s->key), s->key.len);
		if (s->type == MF_OP_RENAME || s->type == MF_OP_SMOVE) /* key2: the other key */
			fn(ctx, s->ktype, mf_slice_ptr(s->key2), s->key2.len);
	}
	free(alloc);
}

int mf_db_commit(mf_db *db, mf_op *op)
{
	mf_db_ticket t;
	int r = mf_db_commit_enqueue(db, op, &t);
	return r < 0 ? r : mf_db_commit_wait(db, &t);
}

int mf_db_sync(mf_db *db)
{
	return mf_wal_sync(db->wal);
}

/* Runs on the WAL's leader with nothing else being applied: fix the state
 * to capture (O(1): store.h, copy-on-write capture). */
static void capture_cb(void *ctx, uint64_t last_lsn)
{
	mf_db *db = ctx;
	uint64_t lsn;
	double t0 = mf_mono_sec();
	mf_store_capture_begin(db->store, &lsn);
	db->cap_begun = true;
	db->cap_seconds = mf_mono_sec() - t0;
	(void)last_lsn;
}

/* Buckets walked per step of a capture: the applier waits for at most one
 * step (~256 keys' references: tens of microseconds, unless the walker is
 * preempted while it holds the read lock). */
#define CAPTURE_CHUNK 256

static int take_snapshot(mf_db *db)
{
	uint64_t lsn = 0;
	db->cap_begun = false;
	/* Sealing fsyncs the segment on the WAL's leader, where writers wait
	 * for it: fsync here first (writers go on meanwhile), so that fsync
	 * covers only what is written from now until the seal. */
	int r = mf_wal_sync(db->wal);
	if (r) {
		mf_log_error("snapshot: fsync of the WAL before sealing failed: %s", strerror(-r));
		return r;
	}
	r = mf_wal_rotate(db->wal, capture_cb, db, &lsn);
	if (r && db->cap_begun) { /* never left running */
		db->cap_n = mf_store_capture_end(db->store, &db->cap_items);
		mf_store_items_free(db->cap_items, db->cap_n);
		db->cap_items = NULL;
	}
	if (r) {
		mf_log_error("snapshot: sealing WAL segment failed: %s", strerror(-r));
		return r;
	}
	double held = db->cap_seconds, w0 = mf_mono_sec();
	/* The walk, a chunk at a time, while writers go on; keys they change
	 * first are saved by apply as they were. */
	while (!mf_store_capture_step(db->store, CAPTURE_CHUNK))
		;
	db->cap_n = mf_store_capture_end(db->store, &db->cap_items);
	double walk = mf_mono_sec() - w0;
	pthread_mutex_lock(&db->snap_mu);
	db->capture_seconds = held;
	pthread_mutex_unlock(&db->snap_mu);
	mf_snapshot_info info = {0};
	r = mf_snapshot_write(db->io, db->dir, lsn, db->cap_items, db->cap_n, &info);
	mf_store_items_free(db->cap_items, db->cap_n);
	db->cap_items = NULL;
	if (r) {
		mf_log_error("snapshot at lsn %" PRIu64 " failed: %s", lsn, strerror(-r));
		return r;
	}
	mf_crash_point("db-before-drop-sealed");
	r = mf_wal_drop_sealed(db->wal, lsn);
	if (r)
		mf_log_error("dropping WAL segments after snapshot: %s", strerror(-r));
	pthread_mutex_lock(&db->snap_mu);
	db->snap_last = info;
	db->snap_last_time_ns = mf_now_ns();
	db->snap_count++;
	pthread_mutex_unlock(&db->snap_mu);
	mf_log_info("snapshot lsn %" PRIu64 ": %" PRIu64 " keys, %" PRIu64
	            " bytes in %.3f s (writers held %.1f ms; capture walked in %.3f s)",
	            lsn, info.keys, info.file_bytes, info.seconds, held * 1e3, walk);
	return 0;
}

static void *snap_main(void *arg)
{
	mf_db *db = arg;
	pthread_mutex_lock(&db->snap_mu);
	for (;;) {
		while (!db->snap_stop && db->snap_done >= db->snap_requested)
			pthread_cond_wait(&db->snap_cv, &db->snap_mu);
		if (db->snap_stop)
			break;
		uint64_t target = db->snap_requested;
		db->snap_started = target;
		pthread_mutex_unlock(&db->snap_mu);
		int r = take_snapshot(db);
		pthread_mutex_lock(&db->snap_mu);
		db->state_snap_time_ns = mf_now_ns();
		if (r == 0) {
			db->state_snap_lsn = db->snap_last.lsn;
			snprintf(db->state_snap_status, sizeof db->state_snap_status, "ok");
		} else {
			snprintf(db->state_snap_status, sizeof db->state_snap_status, "error: %s",
			         strerror(-r));
		}
		pthread_mutex_unlock(&db->snap_mu);
		state_save(db);
		pthread_mutex_lock(&db->snap_mu);
		db->snap_last_err = r;
		db->snap_done = target;
		pthread_cond_broadcast(&db->snap_cv);
	}
	/* Wake anyone still waiting: the mount is going away. */
	db->snap_done = db->snap_requested;
	db->snap_last_err = db->snap_last_err ? db->snap_last_err : -ESHUTDOWN;
	pthread_cond_broadcast(&db->snap_cv);
	pthread_mutex_unlock(&db->snap_mu);
	return NULL;
}

int mf_db_snapshot(mf_db *db)
{
	uint64_t ticket;
	request_snapshot(db, &ticket);
	pthread_mutex_lock(&db->snap_mu);
	while (db->snap_done < ticket)
		pthread_cond_wait(&db->snap_cv, &db->snap_mu);
	int r = db->snap_last_err;
	pthread_mutex_unlock(&db->snap_mu);
	return r;
}

static char *text_printf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	return s;
}

/* VmRSS and VmHWM (peak) from /proc/self/status, in bytes; 0 if unknown. */
static void proc_rss(uint64_t *rss, uint64_t *peak)
{
	*rss = *peak = 0;
	FILE *f = fopen("/proc/self/status", "re");
	if (!f)
		return;
	char line[128];
	unsigned long long kb;
	while (fgets(line, sizeof line, f)) {
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			*rss = kb << 10;
		else if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
			*peak = kb << 10;
	}
	fclose(f);
}

char *mf_db_stats_text(mf_db *db)
{
	mf_store_stats ss;
	mf_wal_stats ws;
	mf_store_stats_get(db->store, &ss);
	mf_wal_stats_get(db->wal, &ws);
	pthread_mutex_lock(&db->snap_mu);
	uint64_t snaps = db->snap_count;
	bool running = db->snap_done < db->snap_requested;
	int64_t last_t = db->state_snap_time_ns;
	char last_status[sizeof db->state_snap_status];
	memcpy(last_status, db->state_snap_status, sizeof last_status);
	uint64_t snap_lsn = db->snap_count ? db->snap_last.lsn : db->snapshot_lsn_loaded;
	pthread_mutex_unlock(&db->snap_mu);
	uint64_t rss, peak, wps, rps;
	proc_rss(&rss, &peak);
	rate_get(db, &wps, &rps);
	size_t mem = mf_buf_bytes();
	int64_t now = mf_now_ns();
	char last_iso[40] = "-";
	if (last_t)
		mf_log_time(last_iso, sizeof last_iso, last_t);
	/* Snapshot status is one token per value: "ok", "none", "error:..." */
	for (char *p = last_status; *p; p++)
		if (*p == ' ')
			*p = '_';
	char *a = text_printf(
		"keys %" PRIu64 "\nkeys_kv %" PRIu64 "\nkeys_json %" PRIu64 "\nkeys_lists %" PRIu64
		"\nkeys_folders %" PRIu64 "\nkeys_symlinks %" PRIu64
		"\nkeys_sets %" PRIu64 "\nkeys_with_expiry %" PRIu64 "\nexpired_keys %" PRIu64
		"\nblocked_pops %zu\nvalue_bytes %" PRIu64 "\nmemory_bytes %zu\n"
		"wal_bytes %" PRIu64 "\nwal_sealed_bytes %" PRIu64 "\nwal_lsn %" PRIu64
		"\nwal_synced_lsn %" PRIu64 "\nwal_records %" PRIu64 "\nwal_batches %" PRIu64
		"\nwal_fsyncs %" PRIu64 "\nwal_read_only %d\nfsync_mode %s\nfsync_interval_ms %u"
		"\nwal_threshold %" PRIu64 "\nsnapshots %" PRIu64 "\nsnapshot_running %d"
		"\nrecovery_seconds %.6f\nrecovery_records_replayed %" PRIu64
		"\nrecovery_snapshot_lsn %" PRIu64 "\nrecovery_snapshot_keys %" PRIu64 "\n",
		ss.keys[0], ss.keys[MF_T_STRING], ss.keys[MF_T_JSON], ss.keys[MF_T_LIST],
		ss.keys[MF_T_FOLDER], ss.keys[MF_T_SYMLINK], ss.keys[MF_T_SET], ss.expires, ss.expired,
		atomic_load(&db->bp.nwaiters),
		ss.value_bytes, mem, ws.bytes, ws.sealed_bytes, ws.lsn, ws.synced_lsn,
		ws.records, ws.batches, ws.fsyncs, ws.read_only ? 1 : 0,
		mf_fsync_mode_name(db->opts.fsync_mode),
		db->opts.fsync_interval_ms ? db->opts.fsync_interval_ms : 1000,
		db->opts.wal_threshold, snaps, running ? 1 : 0, db->recovery_seconds,
		db->replayed, db->snapshot_lsn_loaded, db->snapshot_keys_loaded);
	/* Redis INFO's server / memory / stats / persistence figures, as the
	 * same "name value" lines (appended: scripts reading the lines above
	 * keep working). */
	char *b = text_printf(
		"store_memory_bytes %" PRIu64 "\nversion %s\npid %ld\nuptime_seconds %.3f\nstarted_at %" PRId64
		"\nrss_bytes %" PRIu64 "\npeak_rss_bytes %" PRIu64 "\nmax_memory %" PRIu64
		"\nmem_fragmentation_ratio %.2f"
		"\nwrites_total %" PRIu64 "\nwrites_per_sec %" PRIu64 "\nwrites_failed %" PRIu64
		"\nwrites_refused_max_memory %" PRIu64
		"\nopen_handles %" PRId64 "\nreads_total %" PRIu64 "\nreads_per_sec %" PRIu64 "\nread_hits %" PRIu64
		"\nread_misses %" PRIu64
		"\nlast_snapshot_time %s\nlast_snapshot_time_ns %" PRId64
		"\nlast_snapshot_age_seconds %.3f\nlast_snapshot_status %s\nlast_snapshot_lsn %" PRIu64
		"\nchanges_since_last_snapshot %" PRIu64
		"\nwal_fsync_lag_records %" PRIu64 "\nwal_queued %" PRIu64 "\n",
		ss.value_bytes + ss.keys[0] * MF_DB_KEY_OVERHEAD, MF_VERSION, (long)getpid(), mf_mono_sec() - db->open_mono, db->open_ns / 1000000000,
		rss, peak, db->opts.max_memory, mem ? (double)rss / (double)mem : 0.0,
		(uint64_t)atomic_load(&db->writes), wps, (uint64_t)atomic_load(&db->writes_failed),
		(uint64_t)atomic_load(&db->refused_memory),
		(int64_t)atomic_load(&db->handles), (uint64_t)atomic_load(&db->reads), rps, (uint64_t)atomic_load(&db->read_hits),
		(uint64_t)atomic_load(&db->read_misses),
		last_iso, last_t, last_t ? (now - last_t) / 1e9 : -1.0, last_status, snap_lsn,
		ws.lsn > snap_lsn ? ws.lsn - snap_lsn : 0,
		ws.lsn > ws.synced_lsn ? ws.lsn - ws.synced_lsn : 0, ws.queued);
	char *out = NULL;
	if (a && b && asprintf(&out, "%s%s", a, b) < 0)
		out = NULL;
	free(a);
	free(b);
	return out;
}

char *mf_db_snapshot_text(mf_db *db)
{
	pthread_mutex_lock(&db->snap_mu);
	mf_snapshot_info i = db->snap_last;
	int64_t t = db->snap_last_time_ns;
	uint64_t n = db->snap_count;
	int err = db->snap_last_err;
	double cap = db->capture_seconds;
	pthread_mutex_unlock(&db->snap_mu);
	return text_printf("snapshots_taken %" PRIu64 "\nlast_time %" PRId64 ".%09" PRId64
	                   "\nlast_lsn %" PRIu64 "\nlast_keys %" PRIu64 "\nlast_bytes %" PRIu64
	                   "\nlast_raw_bytes %" PRIu64 "\nlast_seconds %.6f\nlast_capture_ms %.3f"
	                   "\nlast_error %s\n",
	                   n, t / 1000000000, t % 1000000000, i.lsn, i.keys, i.file_bytes,
	                   i.raw_bytes, i.seconds, cap * 1e3, err ? strerror(-err) : "none");
}

/* ---------- the keyspace interface (kv.h) ---------- */

static int kv_get(void *impl, const void *key, size_t klen, bool want_value, mf_entry_info *out)
{
	return mf_store_get(((mf_db *)impl)->store, key, klen, want_value, out);
}

static size_t kv_keys(void *impl, mf_type type, mf_slice **keys)
{
	return mf_store_keys(((mf_db *)impl)->store, type, keys);
}

static int kv_check(void *impl, const mf_op *op)
{
	return mf_store_check(((mf_db *)impl)->store, op);
}

static void kv_stats(void *impl, mf_store_stats *out)
{
	mf_store_stats_get(((mf_db *)impl)->store, out);
}

static int kv_stat(void *impl, const void *path, size_t len, mf_entry_info *out)
{
	return mf_store_stat(mf_db_store(impl), path, len, out);
}

static int kv_list(void *impl, const void *path, size_t len, mf_dirent **out, size_t *n)
{
	return mf_store_list(mf_db_store(impl), path, len, out, n);
}

static int kv_commit(void *impl, mf_op *op) { return mf_db_commit(impl, op); }

_Static_assert(sizeof(mf_db_ticket) <= sizeof(((mf_kv_ticket *)0)->opaque),
               "an mf_db_ticket fits the interface's opaque ticket");
static int kv_bpop(void *impl, const mf_slice *keys, size_t nkeys, bool left, int64_t timeout_ns,
                   mf_bpop_waiter *w, mf_op *out, size_t *which)
{
	return mf_db_bpop(impl, keys, nkeys, left, timeout_ns, false, w, out, which);
}

static void kv_bpop_cancel(void *impl, mf_bpop_waiter *w)
{
	mf_db_bpop_cancel(impl, w);
}

static int kv_commit_enqueue(void *impl, mf_op *op, mf_kv_ticket *t)
{
	return mf_db_commit_enqueue(impl, op, (mf_db_ticket *)(void *)t->opaque);
}
static int kv_commit_wait(void *impl, mf_kv_ticket *t)
{
	return mf_db_commit_wait(impl, (mf_db_ticket *)(void *)t->opaque);
}
static int kv_sync(void *impl) { return mf_db_sync(impl); }
static int kv_snapshot(void *impl) { return mf_db_snapshot(impl); }
static char *kv_stats_text(void *impl) { return mf_db_stats_text(impl); }
static char *kv_snapshot_text(void *impl) { return mf_db_snapshot_text(impl); }
static uint64_t kv_memory(void *impl, uint64_t *limit) { return mf_db_memory(impl, limit); }
static void kv_count_read(void *impl, bool hit) { mf_db_count_read(impl, hit); }
static void kv_handles_add(void *impl, int delta) { mf_db_handles_add(impl, delta); }

static const mf_kv_ops db_kv_ops = {
	.get = kv_get,
	.keys = kv_keys,
	.stat = kv_stat,
	.list = kv_list,
	.check = kv_check,
	.commit = kv_commit,
	.commit_enqueue = kv_commit_enqueue,
	.bpop = kv_bpop,
	.bpop_cancel = kv_bpop_cancel,
	.commit_wait = kv_commit_wait,
	.sync = kv_sync,
	.snapshot = kv_snapshot,
	.stats_text = kv_stats_text,
	.snapshot_text = kv_snapshot_text,
	.stats = kv_stats,
	.memory = kv_memory,
	.count_read = kv_count_read,
	.handles_add = kv_handles_add,
};

mf_kv mf_db_kv(mf_db *db)
{
	return (mf_kv){&db_kv_ops, db};
}
