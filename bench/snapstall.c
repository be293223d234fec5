/*
 * snapstall.c - how long a snapshot holds writers up, in process (no FUSE).
 *
 *   snapstall NKEYS [VALSIZE [none|interval|always]]
 *
 * Opens a database in a fresh temp dir (fsync interval, 1 s, the daemon's
 * default; or the mode given), loads NKEYS keys of
 * VALSIZE bytes (default 100) through mf_db_commit, then runs one writer
 * thread doing SETs of those keys while the main thread takes a snapshot
 * (mf_db_snapshot).  Prints the writer's latency over the ops that overlap
 * the snapshot (max, p99, p50), the same for as long again after it (the
 * control: what the machine does to the writer anyway), and what the
 * snapshot reports (capture ms, seconds).  The FUSE path adds its own
 * ~100 us per write on top; what a snapshot adds is what this isolates.
 * Built by CMake as bench/snapstall (not installed).
 */
#include "../db/db.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static mf_db *db;
static long nkeys, valsize;
static atomic_int phase;        /* 0 warm-up, 1 snapshot running, 2 after, 3 stop */
static atomic_long warm_ops;
static double *lat_in, *lat_out;
static long over10, over10_out; /* ops slower than 10 ms, inside / control */
static double snap_t0, worst, worst_at; /* the slowest op inside, and when it
                                           started (s after the trigger) */
static size_t n_in, n_out, cap_in, cap_out;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static mf_op set_op(long i, const char *val)
{
	char k[32];
	int kl = snprintf(k, sizeof k, "k%09ld", i);
	mf_op op = {.type = MF_OP_SET, .ktype = MF_T_STRING};
	op.key = mf_slice_from(k, (size_t)kl, (size_t)kl);
	op.val = mf_slice_from(val, (size_t)valsize, (size_t)valsize);
	return op;
}

static void push(double **a, size_t *n, size_t *cap, double v)
{
	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 4096;
		*a = mf_xrealloc(*a, *cap * sizeof **a);
	}
	(*a)[(*n)++] = v;
}

static void *writer(void *arg)
{
	(void)arg;
	char *val = malloc((size_t)valsize + 1);
	memset(val, 'w', (size_t)valsize);
	unsigned seed = 12345;
	for (;;) {
		int ph = atomic_load(&phase);
		if (ph == 3)
			break;
		mf_op op = set_op((long)(rand_r(&seed) % (unsigned)nkeys), val);
		double t0 = now();
		int r = mf_db_commit(db, &op);
		double dt = now() - t0;
		mf_op_clear(&op);
		if (r) {
			fprintf(stderr, "snapstall: commit: %s\n", strerror(-r));
			exit(1);
		}
		/* An op counts as inside the snapshot if the snapshot was
		 * running when it started or ended. */
		int ph2 = atomic_load(&phase);
		if (ph == 1 || ph2 == 1) {
			push(&lat_in, &n_in, &cap_in, dt);
			over10 += dt > 0.010;
			if (dt > worst) {
				worst = dt;
				worst_at = t0 - snap_t0;
			}
		}
		else if (ph == 2) {
			push(&lat_out, &n_out, &cap_out, dt);
			over10_out += dt > 0.010;
		}
		atomic_fetch_add(&warm_ops, 1);
	}
	free(val);
	return NULL;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *what, double *a, size_t n)
{
	if (!n) {
		printf("%s: no ops\n", what);
		return;
	}
	qsort(a, n, sizeof *a, cmpd);
	printf("%s: ops %zu p50_ms %.3f p99_ms %.3f max_ms %.3f\n", what, n, a[n / 2] * 1e3,
	       a[(size_t)((double)n * 0.99)] * 1e3, a[n - 1] * 1e3);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: snapstall NKEYS [VALSIZE]\n");
		return 2;
	}
	nkeys = atol(argv[1]);
	valsize = argc > 2 ? atol(argv[2]) : 100;
	char dir[] = "/tmp/snapstall.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	const char *mode = argc > 3 ? argv[3] : "interval";
	mf_db_opts o = {.dir = dir,
	                .fsync_mode = !strcmp(mode, "none")     ? MF_FSYNC_NONE
	                              : !strcmp(mode, "always") ? MF_FSYNC_ALWAYS
	                                                        : MF_FSYNC_INTERVAL,
	                .fsync_interval_ms = 1000};
	char err[512];
	db = mf_db_open(&o, err, sizeof err);
	if (!db) {
		fprintf(stderr, "snapstall: %s\n", err);
		return 1;
	}
	char *val = malloc((size_t)valsize + 1);
	memset(val, 'v', (size_t)valsize);
	double t0 = now();
	/* Load in groups: enqueue many, then wait for each (group commit). */
	enum { G = 1024 };
	static mf_op ops[G];
	static mf_db_ticket tk[G];
	for (long i = 0; i < nkeys; i += G) {
		long m = nkeys - i < G ? nkeys - i : G;
		for (long j = 0; j < m; j++) {
			ops[j] = set_op(i + j, val);
			if (mf_db_commit_enqueue(db, &ops[j], &tk[j]) != 0)
				return 1;
		}
		for (long j = 0; j < m; j++) {
			if (mf_db_commit_wait(db, &tk[j]) != 0)
				return 1;
			mf_op_clear(&ops[j]);
		}
	}
	printf("loaded %ld keys x %ld B in %.2f s\n", nkeys, valsize, now() - t0);
	pthread_t th;
	pthread_create(&th, NULL, writer, NULL);
	while (atomic_load(&warm_ops) < 2000)
		usleep(1000); /* a bench, not a test: just let the writer get going */
	snap_t0 = now();
	atomic_store(&phase, 1);
	double s0 = snap_t0;
	int r = mf_db_snapshot(db);
	double s1 = now();
	atomic_store(&phase, 2);
	/* The control: as long again without a snapshot (the machine may be
	 * shared: its own stalls show here too). */
	while (now() - s1 < s1 - s0)
		usleep(10000);
	atomic_store(&phase, 3);
	pthread_join(th, NULL);
	char *txt = mf_db_snapshot_text(db);
	const char *cap = txt ? strstr(txt, "last_capture_ms") : NULL;
	printf("snapshot: %s in %.3f s; %.*s\n", r ? strerror(-r) : "ok", s1 - s0,
	       cap ? (int)strcspn(cap, "\n") : 0, cap ? cap : "");
	free(txt);
	report("writer during snapshot", lat_in, n_in);
	printf("slowest op inside started %.3f s after the trigger; %ld ops inside over 10 ms\n",
	       worst_at, over10);
	report("writer outside snapshot (control)", lat_out, n_out);
	printf("control: %ld ops over 10 ms\n", over10_out);
	mf_db_close(db);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "snapstall: could not remove %s\n", dir);
	free(val);
	return 0;
}
