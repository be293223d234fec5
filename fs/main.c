/*
 * main.c — memfluxfs command line, daemon start-up and shutdown.
 *
 * Start-up order matters: parse options, check the mountpoint, then (unless
 * -f) fork.  The child opens the data dir (lock, snapshot, WAL replay) and
 * mounts; only then does it tell the waiting parent "ok", so `memfluxfs DIR`
 * returns 0 exactly when the mount is up with all data recovered, and a
 * corrupt WAL or a locked data dir is a one-line error and a non-zero exit,
 * never a half-mounted state.  (libfuse's fuse_daemonize forks after the
 * mount, which would kill the WAL threads already running.)
 *
 * Logging (io/log.h): in daemon mode fd 2 is DATA_DIR/memflux.log, with -f
 * the terminal (or the journal); every line carries an ISO-8601 time and a
 * level.  Command-line errors, before anything starts, are plain
 * "memfluxfs: ..." lines.  SIGHUP reopens the log file (logrotate): it is
 * blocked in every thread and taken by one sigwait thread, and a handler of
 * ours is installed first so that libfuse (which only replaces default
 * dispositions) does not make it unmount.
 *
 * Under systemd (Type=notify, $NOTIFY_SOCKET) the daemon reports READY=1
 * once recovered and mounted, and extends the start timeout while a long
 * recovery reports progress.
 */
#include "fs.h"
#include "../db/db.h" /* main is the composition root: it opens the database */
#include "../resp/resp.h"
#include "../remote/remote.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <limits.h>
#include <lz4.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef MF_VERSION
#define MF_VERSION "0.0.0-dev" /* CMake passes the project version */
#endif

struct cli {
	char *data_dir;
	char *fsync;
	char *fsync_interval;
	char *wal_threshold;
	char *cache_timeout;
	char *max_memory;
	int allow_other;
	char *resp, *resp_password_file;   /* RESP face (resp/resp.h) */
	char *store, *replicas, *store_timeout; /* remote keyspace (remote/remote.h) */
	int help, version;
	/* [SOURCE] MOUNTPOINT, as mount.fuse3 passes them */
	char *pos[2];
	int npos;
	char *error; /* first command-line error, reported once parsing is done */
};

enum { KEY_IGNORE, KEY_FSNAME, KEY_ALLOW_OTHER };

#define OPT(t, p) {t, offsetof(struct cli, p), 1}
static const struct fuse_opt cli_opts[] = {
	/* What mount(8) and fstab add for every filesystem type: meaningless
	 * here, so accepted and dropped rather than failing `mount -a`.  (The
	 * kernel flags rw/ro, dev/nodev, suid/nosuid, exec/noexec, sync,
	 * atime... go on to libfuse, which applies them.) */
	FUSE_OPT_KEY("auto", KEY_IGNORE),
	FUSE_OPT_KEY("noauto", KEY_IGNORE),
	FUSE_OPT_KEY("defaults", KEY_IGNORE),
	FUSE_OPT_KEY("nofail", KEY_IGNORE),
	FUSE_OPT_KEY("_netdev", KEY_IGNORE),
	FUSE_OPT_KEY("user", KEY_IGNORE),
	FUSE_OPT_KEY("nouser", KEY_IGNORE),
	FUSE_OPT_KEY("users", KEY_IGNORE),
	FUSE_OPT_KEY("owner", KEY_IGNORE),
	FUSE_OPT_KEY("group", KEY_IGNORE),
	FUSE_OPT_KEY("comment=", KEY_IGNORE),
	/* The mount's source always names the data dir (see main). */
	FUSE_OPT_KEY("fsname=", KEY_FSNAME),
	/* kept for libfuse, noted to add default_permissions (see main) */
	FUSE_OPT_KEY("allow_other", KEY_ALLOW_OTHER),
	OPT("--data-dir=%s", data_dir),
	OPT("data_dir=%s", data_dir),
	OPT("--fsync=%s", fsync),
	OPT("fsync=%s", fsync),
	OPT("--fsync-interval-ms=%s", fsync_interval),
	OPT("fsync_interval_ms=%s", fsync_interval),
	OPT("--wal-threshold=%s", wal_threshold),
	OPT("wal_threshold=%s", wal_threshold),
	OPT("--cache-timeout=%s", cache_timeout),
	OPT("cache_timeout=%s", cache_timeout),
	OPT("--max-memory=%s", max_memory),
	OPT("max_memory=%s", max_memory),
	OPT("--resp=%s", resp),
	OPT("resp=%s", resp),
	OPT("--resp-password-file=%s", resp_password_file),
	OPT("resp_password_file=%s", resp_password_file),
	OPT("--store=%s", store),
	OPT("store=%s", store),
	OPT("--replicas=%s", replicas),
	OPT("replicas=%s", replicas),
	OPT("--store-timeout-ms=%s", store_timeout),
	OPT("store_timeout_ms=%s", store_timeout),
	FUSE_OPT_END,
};

static void cli_error(struct cli *c, const char *fmt, const char *arg)
{
	if (c->error)
		return;
	if (asprintf(&c->error, fmt, arg) < 0)
		c->error = NULL;
}

static int cli_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
	(void)outargs;
	struct cli *c = data;
	switch (key) {
	case FUSE_OPT_KEY_NONOPT:
		if (c->npos == 2) {
			cli_error(c, "unexpected argument %s (usage: memfluxfs [options] [DATA_DIR] MOUNTPOINT)",
			          arg);
			return 0;
		}
		c->pos[c->npos++] = strdup(arg);
		return 0;
	case KEY_IGNORE:
		return 0;
	case KEY_ALLOW_OTHER:
		c->allow_other = 1;
		return 1;
	case KEY_FSNAME:
		cli_error(c, "-o %s: the mount's source is memfluxfs:DATA_DIR; give the data dir instead", arg);
		return 0;
	case FUSE_OPT_KEY_OPT:
		/* x-systemd.automount and other x-* options are for other tools. */
		if (strncmp(arg, "x-", 2) == 0)
			return 0;
		return 1; /* libfuse's (checked before anything is created) */
	default:
		return 1;
	}
}

/* libfuse's own messages while checking options: collected, so that a bad
 * option is reported as one line of ours.  File-static because libfuse's
 * log callback takes no context pointer; only main's thread, before the
 * session exists, uses it. */
static char fuse_msg[512];

static void capture_fuse_log(enum fuse_log_level level, const char *fmt, va_list ap)
{
	(void)level;
	size_t l = strlen(fuse_msg);
	if (l < sizeof fuse_msg - 1)
		vsnprintf(fuse_msg + l, sizeof fuse_msg - l, fmt, ap);
}

/* What libfuse said (or fallback) as one line of ours. */
static void report_fuse_error(const char *fallback)
{
	/* "fuse: unknown option(s): `-o x'\n" -> without prefix and newline */
	char *m = fuse_msg;
	if (strncmp(m, "fuse: ", 6) == 0)
		m += 6;
	for (char *q = m; *q; q++)
		if (*q == '\n')
			*q = q[1] ? ' ' : '\0';
	mf_log_error("%s (see --help)", *m ? m : fallback);
}

/*
 * Check the options left for libfuse (-o allow_other, ro, max_read...; a
 * typo like --bogus or -o nosuchopt) by building a session that is never
 * mounted: an unknown option then fails here, before the data dir is
 * created or recovered, instead of after recovery at mount time.
 */
static int check_fuse_options(const struct fuse_args *args)
{
	struct fuse_args copy = FUSE_ARGS_INIT(0, NULL);
	for (int i = 0; i < args->argc; i++)
		if (fuse_opt_add_arg(&copy, args->argv[i]) != 0) {
			fuse_opt_free_args(&copy);
			return 0; /* out of memory: let the real mount report */
		}
	static const struct fuse_lowlevel_ops none;
	fuse_msg[0] = '\0';
	struct fuse_session *se = fuse_session_new(&copy, &none, sizeof none, NULL);
	fuse_opt_free_args(&copy);
	if (se) {
		fuse_session_destroy(se);
		return 0;
	}
	report_fuse_error("bad options");
	return -1;
}

/* db change hook -> kernel cache invalidation (RESP writes, expiry). */
static void key_changed(void *ctx, int ktype, const void *key, size_t klen)
{
	mf_fs_key_changed(ctx, ktype, key, klen);
}

static void usage(const char *prog)
{
	printf("usage: %s [options] [DATA_DIR] MOUNTPOINT\n"
	       "       mount -t fuse.memfluxfs DATA_DIR MOUNTPOINT [-o opt,...]\n\n"
	       "Every memfluxfs option has an -o form (for mount(8) and fstab):\n"
	       "    DATA_DIR, --data-dir=DIR, -o data_dir=DIR\n"
	       "                     where memflux.wal, memflux.snapshot and memflux.log live\n"
	       "                     (default $MEMFLUX_DATA_DIR, else $XDG_DATA_HOME/memflux,\n"
	       "                     else ~/.local/share/memflux; created 0700)\n"
	       "    --fsync=MODE, -o fsync=MODE\n"
	       "                     interval (default), always or none\n"
	       "    --fsync-interval-ms=N, -o fsync_interval_ms=N\n"
	       "                     background fsync period in interval mode (default 1000)\n"
	       "    --wal-threshold=SIZE, -o wal_threshold=SIZE\n"
	       "                     snapshot when the WAL passes SIZE (K/M/G, default 128M)\n"
	       "    --cache-timeout=SECONDS, -o cache_timeout=SECONDS\n"
	       "                     kernel entry/attr cache lifetime (default 1.0)\n"
	       "    --max-memory=SIZE, -o max_memory=SIZE\n"
	       "                     refuse growing the store past SIZE with ENOSPC\n"
	       "                     (default 0: no limit but the machine's memory)\n"
	       "    --resp=ADDR, -o resp=ADDR\n"
	       "                     serve Redis clients on 127.0.0.1:PORT, [::1]:PORT or\n"
	       "                     unix:PATH (default: off)\n"
	       "    --resp-password-file=FILE, -o resp_password_file=FILE\n"
	       "                     AUTH password (first line); needed for a non-loopback ADDR\n"
	       "    --store=URL, -o store=URL\n"
	       "                     mount a remote keyspace instead of the embedded store:\n"
	       "                     redis://HOST:PORT[/DB] or redis+cluster://H1:P1,H2:P2,...\n"
	       "                     (no WAL; DATA_DIR then holds only the log and the lock)\n"
	       "    --replicas=N, -o replicas=N\n"
	       "                     with --store: each commit WAITs for N replica acks;\n"
	       "                     fewer fail the close with EIO (default 0)\n"
	       "    --store-timeout-ms=N, -o store_timeout_ms=N\n"
	       "                     with --store: deadline of one server operation (default 5000)\n"
	       "    -o allow_other   let other users in (mode bits apply: default_permissions)\n"
	       "                     (others get what the mode bits allow: read only)\n"
	       "    -o ro            read-only mount\n"
	       "    -f               stay in the foreground\n"
	       "    -d               foreground with FUSE debug output (and debug log lines)\n"
	       "    -s               single-threaded\n"
	       "    -h, --help       this text\n"
	       "    -V, --version    print the version\n\n"
	       "Log: DATA_DIR/memflux.log when running as a daemon (the default); stderr with\n"
	       "-f or -d.  Lines start with an ISO-8601 UTC time and a level.  SIGHUP reopens\n"
	       "the log file (logrotate); SIGTERM and SIGINT unmount cleanly.\n"
	       "Mount options added by mount(8)/fstab (defaults, auto, noauto, user, nofail,\n"
	       "_netdev, comment=, x-*) are accepted and ignored.\n\n"
	       "libfuse options (also accepted):\n",
	       prog);
	fuse_cmdline_help();
	fuse_lowlevel_help();
}

/* Paths are built at their full length (asprintf), never cut to a fixed
 * buffer: a cut path names another directory.  One too long for the
 * kernel then fails where it is used, with ENAMETOOLONG. */
static char *join(const char *a, const char *b)
{
	char *p;
	return asprintf(&p, "%s/%s", a, b) < 0 ? NULL : p;
}

static char *default_data_dir(void)
{
	const char *e = getenv("MEMFLUX_DATA_DIR");
	if (e && *e)
		return strdup(e);
	e = getenv("XDG_DATA_HOME");
	if (e && *e)
		return join(e, "memflux");
	e = getenv("HOME");
	return join(e && *e ? e : ".", ".local/share/memflux");
}

/* Absolute path (the daemon chdirs to /); the dir may not exist yet. */
static char *absolute(const char *p)
{
	if (p[0] == '/')
		return strdup(p);
	char *cwd = getcwd(NULL, 0); /* glibc: allocated, any length */
	char *r = cwd ? join(cwd, p) : strdup(p);
	free(cwd);
	return r;
}

/* Same directory?  Resolved when they exist, else compared as absolute
 * paths without trailing slashes. */
static int same_dir(const char *a, const char *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];
	char *pa = realpath(a, ra) ? strdup(ra) : absolute(a);
	char *pb = realpath(b, rb) ? strdup(rb) : absolute(b);
	int same = 0;
	if (pa && pb) {
		for (char *p = pa; p; p = p == pa ? pb : NULL) {
			size_t l = strlen(p);
			while (l > 1 && p[l - 1] == '/')
				p[--l] = '\0';
		}
		same = strcmp(pa, pb) == 0;
	}
	free(pa);
	free(pb);
	return same;
}

/*
 * Progress the user should see while it happens (waiting for a data dir
 * lock): straight to the terminal even while the daemon collects its other
 * start-up output, and kept for the daemon's log.  File-static because the
 * database calls notice/progress (mf_db_opts) without a context pointer;
 * set by main's thread around mf_db_open only.
 */
static int notice_fd = 2;
static char notice_copy[512];

static void notice_now(const char *line)
{
	if (notice_fd == 2) {
		mf_log_warn("%s", line);
		return;
	}
	char buf[600];
	int n = snprintf(buf, sizeof buf, "memfluxfs: %s\n", line);
	if (n > 0)
		(void)!write(notice_fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	snprintf(notice_copy, sizeof notice_copy, "%s", line);
}

/* ---- systemd readiness (sd_notify's protocol, a datagram to
 * $NOTIFY_SOCKET; too small to need libsystemd) ---- */
static void sd_notify_send(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || (path[0] != '/' && path[0] != '@'))
		return;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if (len >= sizeof sa.sun_path)
		return;
	memcpy(sa.sun_path, path, len);
	if (sa.sun_path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract socket */
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	(void)!sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa,
	              (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	close(fd);
}

/* Recovery progress (about once a second): shown live on the terminal of a
 * starting daemon (its log lines are collected until the log opens), and
 * told to systemd, whose start timeout it pushes back. */
static void progress_now(const char *line)
{
	if (notice_fd != 2) {
		char buf[400];
		int n = snprintf(buf, sizeof buf, "memfluxfs: %s\n", line);
		if (n > 0)
			(void)!write(notice_fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	}
	char msg[400];
	snprintf(msg, sizeof msg, "STATUS=%s\nEXTEND_TIMEOUT_USEC=10000000", line);
	sd_notify_send(msg);
}

/* ---- SIGHUP: reopen the log ---- */
static void sighup_placeholder(int sig)
{
	/* Never runs (SIGHUP is blocked in every thread and taken by
	 * sigwait); it exists so libfuse's fuse_set_signal_handlers, which
	 * replaces only default dispositions, leaves SIGHUP to us. */
	(void)sig;
}

static void *sighup_main(void *arg)
{
	(void)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	for (;;) {
		int sig;
		if (sigwait(&set, &sig) != 0)
			continue;
		int r = mf_log_reopen();
		if (r == 0)
			mf_log_info("SIGHUP: log file reopened");
		else if (r == 1)
			mf_log_info("SIGHUP: logging to stderr, no log file to reopen");
		else
			mf_log_error("SIGHUP: cannot reopen the log file: %s (still writing the old one)",
			             strerror(-r));
	}
	return NULL;
}

/* Block SIGHUP before any thread exists (all inherit the mask). */
static void sighup_block(void)
{
	struct sigaction sa = {.sa_handler = sighup_placeholder};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void sighup_start(void)
{
	pthread_t t;
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &at, sighup_main, NULL) != 0)
		mf_log_warn("cannot start the SIGHUP thread: SIGHUP will be ignored");
	pthread_attr_destroy(&at);
}

/*
 * Test hook: with MEMFLUX_TEST_HOLD_AFTER_UNMOUNT=FIFO the daemon stops
 * between its unmount and releasing the data dir until a byte arrives on
 * FIFO: the state a large store is in for a second or two at shutdown,
 * made deterministic so a restart racing it can be tested.
 */
static void hold_after_unmount(void)
{
	const char *fifo = getenv("MEMFLUX_TEST_HOLD_AFTER_UNMOUNT");
	if (!fifo)
		return;
	int fd = open(fifo, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		char c;
		(void)!read(fd, &c, 1);
		close(fd);
	}
}

/* Copy what was written to `early` to fd a and (if >= 0) fd b; close it.
 * Progress lines already went to the terminal live (progress_now): only
 * the log (b) gets them. */
static void replay_early(FILE *early, int a, int b)
{
	if (!early)
		return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	rewind(early);
	while ((n = getline(&line, &cap, early)) > 0) {
		if (a >= 0 && !strstr(line, " recovery progress: ") && write(a, line, (size_t)n) < 0)
			a = -1;
		if (b >= 0 && write(b, line, (size_t)n) < 0)
			b = -1;
	}
	free(line);
	fclose(early);
}

/*
 * Re-exec once with glibc's malloc asked to back its heap with transparent
 * huge pages.  Measured here: loading 1M keys from a snapshot 1.9 s -> 0.9 s
 * and WAL replay 460k -> 700k+ records/s, because on these virtual machines
 * a 4 KiB page fault costs more than filling the page.  The tunable can only
 * be set before the process starts, hence the exec.  Sanitizer builds use
 * their own allocator: nothing to do there.
 */
static void reexec_with_hugepage_heap(char *argv[])
{
#if !defined(__SANITIZE_ADDRESS__)
	const char *t = getenv("GLIBC_TUNABLES");
	if (getenv("MEMFLUX_NO_REEXEC") || (t && strstr(t, "glibc.malloc.hugetlb")))
		return;
	char buf[1024];
	snprintf(buf, sizeof buf, "%s%sglibc.malloc.hugetlb=1", t ? t : "", t && *t ? ":" : "");
	setenv("GLIBC_TUNABLES", buf, 1);
	setenv("MEMFLUX_NO_REEXEC", "1", 1);
	execv("/proc/self/exe", argv);
	/* exec failed: carry on with the ordinary heap */
#else
	(void)argv;
#endif
}

/* What main works from: the command line as parsed, and what it started. */
struct run {
	struct fuse_args args;
	struct cli cli;
	struct fuse_cmdline_opts fo;
	const char *source;  /* mount.fuse3's SOURCE argument: the data dir */
	char *dir;           /* the data dir as given */
	mf_db_opts dbo;
	mf_resp_opts rso;
	mf_fs_opts fso;
	int pipefd[2];       /* daemon mode: the child's verdict to the waiting parent */
	FILE *early;         /* daemon mode: start-up log lines until the log opens */
	mf_db *db;
	mf_remote_opts remo;  /* --store: the remote keyspace instead of db */
	mf_remote *remote;
	int lockfd;           /* --store: the data dir's lock (log only) */
	mf_resp *resp;
	mf_fs *fs;
	char err[1024];      /* why the start failed */
};

/* libfuse's options and the generic ones.  -1: go on; else main's exit
 * code (0 after --help or --version, 2 for a bad command line). */
static int parse_options(struct run *r, const char *prog)
{
	/* While parsing, libfuse's complaints are collected and reported as
	 * one line of ours. */
	fuse_set_log_func(capture_fuse_log);
	if (fuse_opt_parse(&r->args, &r->cli, cli_opts, cli_proc) != 0) {
		report_fuse_error("bad options");
		return 2;
	}
	if (r->cli.error) {
		mf_log_error("%s", r->cli.error);
		return 2;
	}
	fuse_msg[0] = '\0';
	if (fuse_parse_cmdline(&r->args, &r->fo) != 0) {
		report_fuse_error("bad options");
		return 2;
	}
	if (r->fo.show_help) {
		usage(prog);
		return 0;
	}
	if (r->fo.show_version) {
		printf("memfluxfs %s (libfuse %s, liblz4 %s)\n", MF_VERSION, fuse_pkgversion(),
		       LZ4_versionString());
		return 0;
	}
	/* Always default_permissions: keys and folders have modes and owners
	 * (chmod, chown), and the kernel enforces mode bits (x for exec, w for
	 * writes, search on folders) only with it.  Without it, allow_other
	 * would also let every local user write and delete the owner's keys. */
	if (fuse_opt_add_arg(&r->args, "-o") != 0 ||
	    fuse_opt_add_arg(&r->args, "default_permissions") != 0) {
		mf_log_error("out of memory");
		return 2;
	}
	if (check_fuse_options(&r->args) != 0)
		return 2;
	fuse_set_log_func(NULL);
	return -1;
}

/* The mountpoint, an existing directory, made absolute (fo.mountpoint). */
static bool check_mountpoint(struct run *r)
{
	/* One argument: the mountpoint.  Two, as mount.fuse3 runs us
	 * (`memfluxfs SOURCE MOUNTPOINT -o rw,...`): the source is the data dir. */
	r->source = r->cli.npos == 2 ? r->cli.pos[0] : NULL;
	const char *mnt_arg = r->cli.npos ? r->cli.pos[r->cli.npos - 1] : NULL;
	if (!mnt_arg) {
		mf_log_error("no mountpoint given (usage: memfluxfs [options] [DATA_DIR] MOUNTPOINT)");
		return false;
	}
	char mnt[PATH_MAX];
	struct stat sb;
	const char *why = NULL;
	if (!realpath(mnt_arg, mnt) || stat(mnt, &sb) != 0)
		why = strerror(errno);
	else if (!S_ISDIR(sb.st_mode))
		why = "not a directory";
	if (why) {
		mf_log_error("mountpoint %s: %s", mnt_arg, why);
		return false;
	}
	r->fo.mountpoint = strdup(mnt);
	return true;
}

/* The data dir's and the database's options (fsync, sizes). */
static bool parse_db_options(struct run *r)
{
	const struct cli *c = &r->cli;
	if ((c->data_dir && !*c->data_dir) || (r->source && !*r->source)) {
		mf_log_error("the data dir is empty (give a directory)");
		return false;
	}
	/* Both a source and -o data_dir (an fstab line can have both): the
	 * option names the data dir; the source may then be a label without
	 * '/' (like tmpfs's "none"), or the same dir, but not another dir. */
	if (r->source && c->data_dir && strchr(r->source, '/') && !same_dir(r->source, c->data_dir)) {
		mf_log_error("source %s and data_dir=%s name different data dirs", r->source,
		             c->data_dir);
		return false;
	}
	if (c->fsync && mf_fsync_mode_parse(c->fsync, &r->dbo.fsync_mode) != 0) {
		mf_log_error("--fsync=%s: expected interval, always or none", c->fsync);
		return false;
	}
	if (c->fsync_interval) {
		char *end;
		long v = strtol(c->fsync_interval, &end, 10);
		if (*end || v <= 0 || v > 3600000) {
			mf_log_error("--fsync-interval-ms=%s: expected 1..3600000", c->fsync_interval);
			return false;
		}
		r->dbo.fsync_interval_ms = (unsigned)v;
	}
	if (c->wal_threshold && mf_parse_size(c->wal_threshold, &r->dbo.wal_threshold) != 0) {
		mf_log_error("--wal-threshold=%s: expected a size like 128M", c->wal_threshold);
		return false;
	}
	if (c->max_memory && strcmp(c->max_memory, "0") != 0 &&
	    mf_parse_size(c->max_memory, &r->dbo.max_memory) != 0) {
		mf_log_error("--max-memory=%s: expected a size like 512M (0: no limit)", c->max_memory);
		return false;
	}
	return true;
}

/* --store and its options.  A remote keyspace has its own Redis face (the
 * server), so --resp is refused with it, as are the WAL's options. */
static bool parse_store_options(struct run *r)
{
	const struct cli *c = &r->cli;
	if (!c->store) {
		if (c->replicas || c->store_timeout) {
			mf_log_error("--replicas and --store-timeout-ms need --store=URL");
			return false;
		}
		return true;
	}
	char err[512];
	if (mf_remote_check_url(c->store, err, sizeof err) != 0) {
		mf_log_error("%s", err);
		return false;
	}
	if (c->resp || c->fsync || c->fsync_interval || c->wal_threshold || c->max_memory) {
		mf_log_error("--store: the server is the store; --resp, --fsync, --fsync-interval-ms, "
		             "--wal-threshold and --max-memory do not apply");
		return false;
	}
	r->remo = (mf_remote_opts){.url = c->store};
	const struct {
		const char *s, *name;
		unsigned *to;
		long max;
	} nums[] = {{c->replicas, "--replicas", &r->remo.replicas, 100},
	            {c->store_timeout, "--store-timeout-ms", &r->remo.timeout_ms, 3600000}};
	for (size_t i = 0; i < 2; i++) {
		if (!nums[i].s)
			continue;
		char *end;
		long v = strtol(nums[i].s, &end, 10);
		if (*end || !*nums[i].s || v < (i ? 1 : 0) || v > nums[i].max) {
			mf_log_error("%s=%s: expected %ld..%ld", nums[i].name, nums[i].s, i ? 1L : 0L,
			             nums[i].max);
			return false;
		}
		*nums[i].to = (unsigned)v;
	}
	return true;
}

/* The options of the two faces: RESP and the mount. */
static bool parse_face_options(struct run *r)
{
	const struct cli *c = &r->cli;
	r->rso = (mf_resp_opts){.addr = c->resp, .password_file = c->resp_password_file,
	                        .inline_writes = r->dbo.fsync_mode != MF_FSYNC_ALWAYS};
	if (!parse_store_options(r))
		return false;
	if (c->resp_password_file && !c->resp) {
		mf_log_error("--resp-password-file needs --resp=ADDR");
		return false;
	}
	if (c->resp) {
		char rerr[512];
		if (mf_resp_check_opts(&r->rso, rerr, sizeof rerr) != 0) {
			mf_log_error("%s", rerr);
			return false;
		}
	}
	r->fso = (mf_fs_opts){.foreground = r->fo.foreground, .singlethread = r->fo.singlethread,
	                      .clone_fd = r->fo.clone_fd, .max_threads = r->fo.max_threads,
	                      .timeout = 1.0};
	if (c->cache_timeout) {
		char *end;
		r->fso.timeout = strtod(c->cache_timeout, &end);
		if (*end || r->fso.timeout < 0) {
			mf_log_error("--cache-timeout=%s: expected seconds", c->cache_timeout);
			return false;
		}
	}
	return true;
}

/* The data dir (absolute: the daemon chdirs to /), named in the mount's
 * source, and how its lock is waited for. */
static void set_data_dir(struct run *r)
{
	r->dir = r->cli.data_dir ? strdup(r->cli.data_dir)
	         : r->source     ? strdup(r->source)
	                         : default_data_dir();
	r->dbo.dir = absolute(r->dir);
	/* The mount's source names the data dir ("memfluxfs:DIR", as sshfs
	 * shows user@host:path): df and findmnt show which data a mount serves,
	 * and a restart finds in mountinfo whether the lock holder still serves
	 * one (db.c, MF_DB_FSNAME_PREFIX). */
	char *esc = NULL, *fsname = NULL;
	if (fuse_opt_add_opt_escaped(&esc, r->cli.store ? r->cli.store : r->dbo.dir) == 0 &&
	    asprintf(&fsname, "fsname=" MF_DB_FSNAME_PREFIX "%s", esc) > 0)
		if (fuse_opt_add_arg(&r->args, "-o") != 0 || fuse_opt_add_arg(&r->args, fsname) != 0)
			mf_log_error("out of memory");
	free(esc);
	free(fsname);
	r->dbo.lock_wait_ms = 30000;
	r->dbo.notice = notice_now;
}

/* Everything the command line decides.  -1: go on; else main's exit code. */
static int configure(struct run *r, const char *prog)
{
	int rc = parse_options(r, prog);
	if (rc >= 0)
		return rc;
	if (!check_mountpoint(r) || !parse_db_options(r) || !parse_face_options(r))
		return 2;
	set_data_dir(r);
	return -1;
}

/* Unless -f: fork; the parent waits for the child's verdict (one byte on
 * the pipe) and exits with it.  -1: go on (the child, or -f); else the
 * parent's exit code. */
static int daemonize(struct run *r)
{
	if (r->fo.foreground)
		return -1;
	if (pipe(r->pipefd) != 0) {
		mf_log_error("pipe: %s", strerror(errno));
		return 1;
	}
	pid_t pid = fork();
	if (pid < 0) {
		mf_log_error("fork: %s", strerror(errno));
		return 1;
	}
	if (pid > 0) {
		close(r->pipefd[1]);
		char status = 1;
		if (read(r->pipefd[0], &status, 1) != 1)
			status = 1;
		return status;
	}
	close(r->pipefd[0]);
	setsid();
	return -1;
}

/* Daemon mode: the verdict for the waiting parent (0: mounted). */
static void tell_parent(struct run *r, char status)
{
	if (r->pipefd[1] >= 0)
		(void)!write(r->pipefd[1], &status, 1);
}

/* Open the database: the data dir lock, snapshot, WAL replay.  In daemon
 * mode what recovery prints (torn tails cut, counts) must reach the log
 * too, which cannot be opened before the data dir exists: collect it in a
 * temp file (early), copied to the log and the terminal later. */
static bool open_db(struct run *r)
{
	int saved_err = -1;
	if (r->pipefd[1] >= 0 && (r->early = tmpfile()) != NULL) {
		saved_err = dup(2);
		dup2(fileno(r->early), 2);
		notice_fd = saved_err;
	}
	r->db = mf_db_open(&r->dbo, r->err, sizeof r->err);
	if (r->early) {
		dup2(saved_err, 2);
		close(saved_err);
		notice_fd = 2;
	}
	return r->db != NULL;
}

/* --store: the data dir holds only the log and a lock (with the pid, as
 * the embedded store's does: one daemon per data dir); then connect. */
static bool open_store(struct run *r)
{
	if (mkdir(r->dbo.dir, 0700) != 0 && errno != EEXIST) {
		snprintf(r->err, sizeof r->err, "data dir %s: %s", r->dbo.dir, strerror(errno));
		return false;
	}
	char *lp = join(r->dbo.dir, "memflux.lock");
	r->lockfd = lp ? open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600) : -1;
	free(lp);
	if (r->lockfd < 0 || flock(r->lockfd, LOCK_EX | LOCK_NB) != 0) {
		snprintf(r->err, sizeof r->err, "data dir %s: %s", r->dbo.dir,
		         errno == EWOULDBLOCK ? "in use by another memfluxfs" : strerror(errno));
		return false;
	}
	char pid[24];
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(r->lockfd, 0) != 0 || pwrite(r->lockfd, pid, (size_t)n, 0) != n) {
		snprintf(r->err, sizeof r->err, "data dir %s: cannot write the lock", r->dbo.dir);
		return false;
	}
	r->remote = mf_remote_open(&r->remo, r->err, sizeof r->err);
	return r->remote != NULL;
}

/* RESP, then the mount.  RESP first, so a busy port fails the start like
 * any other error; its changes reach the kernel through the hook, which is
 * installed once the mount exists (before, there is no kernel cache to
 * drop, and the mount's tables are still being built). */
static bool start_faces(struct run *r)
{
	if (r->cli.resp && !(r->resp = mf_resp_start(r->db, &r->rso, r->err, sizeof r->err)))
		return false;
	mf_kv kv = r->remote ? mf_remote_kv(r->remote) : mf_db_kv(r->db);
	r->fs = mf_fs_mount(&kv, &r->args, r->fo.mountpoint, &r->fso);
	if (!r->fs) {
		snprintf(r->err, sizeof r->err, "cannot mount on %s", r->fo.mountpoint);
		return false;
	}
	/* RESP writes and the expire cycle tell the kernel what changed; with
	 * --store, other machines' changes (server invalidation messages). */
	if (r->db)
		mf_db_set_change_hook(r->db, key_changed, r->fs);
	if (r->remote)
		mf_remote_set_change_hook(r->remote, key_changed, r->fs);
	return true;
}

/* A failed start: one line for the user (the parent prints what we
 * replay), what was started stopped, the database closed, and the waiting
 * parent told: exit 1. */
static int start_failed(struct run *r)
{
	mf_resp_stop(r->resp);
	replay_early(r->early, 2, -1);
	r->early = NULL;
	mf_log_set_plain(true);
	mf_log_error("%s", r->err);
	if (r->db)
		mf_db_close(r->db);
	mf_remote_close(r->remote);
	tell_parent(r, 1);
	return 1;
}

/* Daemon mode, once mounted: log to the data dir, stdio away from the
 * terminal, and tell the waiting parent "ok". */
static void detach(struct run *r)
{
	if (r->pipefd[1] < 0)
		return;
	char *logpath = join(r->dbo.dir, "memflux.log");
	int lfd = logpath ? open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
	if (lfd >= 0)
		mf_log_set_file(logpath); /* for SIGHUP */
	free(logpath);
	int nfd = open("/dev/null", O_RDWR);
	if (nfd >= 0) {
		dup2(nfd, 0);
		dup2(nfd, 1);
		close(nfd);
	}
	if (lfd >= 0 && notice_copy[0]) {
		char t[40];
		dprintf(lfd, "%s WARN %s\n", mf_log_time(t, sizeof t, mf_now_ns()), notice_copy);
	}
	replay_early(r->early, 2, lfd);
	r->early = NULL;
	if (lfd >= 0) {
		dup2(lfd, 2);
		close(lfd);
	}
	if (chdir("/") != 0)
		mf_log_error("chdir /: %s", strerror(errno));
	tell_parent(r, 0);
	close(r->pipefd[1]);
}

/* Serve until unmount or a signal, then stop in order: RESP (its threads
 * notify the mount mf_fs_unmount frees), the mount, the database.  Returns
 * main's exit code. */
static int serve(struct run *r)
{
	if (r->remote)
		mf_log_info("memfluxfs %s (pid %ld) mounted %s (store %s, replicas %u, log dir %s)",
		            MF_VERSION, (long)getpid(), r->fo.mountpoint, r->remo.url,
		            r->remo.replicas, r->dbo.dir);
	else
		mf_log_info("memfluxfs %s (pid %ld) mounted %s (data dir %s, fsync %s)", MF_VERSION,
		            (long)getpid(), r->fo.mountpoint, r->dbo.dir,
		            mf_fsync_mode_name(r->dbo.fsync_mode));
	sighup_start();
	sd_notify_send("READY=1\nSTATUS=mounted");
	int rc = mf_fs_loop(r->fs, &r->fso);
	mf_resp_stop(r->resp);
	sd_notify_send("STOPPING=1\nSTATUS=unmounting, closing the WAL");
	if (r->remote)
		mf_remote_set_change_hook(r->remote, NULL, NULL); /* before fs goes */
	mf_fs_unmount(r->fs);
	hold_after_unmount();
	if (r->db)
		mf_db_close_exit(r->db); /* the process ends next: see db.h */
	mf_remote_close(r->remote);
	mf_log_info("unmounted %s", r->fo.mountpoint);
	return rc ? 1 : 0;
}

/* Start (as a daemon unless -f), serve, stop.  Returns the exit code. */
static int run(struct run *r)
{
	if (r->fo.debug)
		mf_log_set_level(MF_LOG_DEBUG);
	/* Before any thread exists, so that every thread inherits the mask. */
	sighup_block();
	int rc = daemonize(r);
	if (rc >= 0)
		return rc;
	/* From here on, the daemon's log lines. */
	mf_log_set_plain(false);
	if (!(r->cli.store ? open_store(r) : open_db(r)) || !start_faces(r))
		return start_failed(r);
	detach(r);
	return serve(r);
}

static void run_free(struct run *r)
{
	fuse_set_log_func(NULL);
	free(r->fo.mountpoint);
	fuse_opt_free_args(&r->args);
	struct cli *c = &r->cli;
	free(c->pos[0]);
	free(c->pos[1]);
	free(c->error);
	free(c->data_dir);
	free(c->fsync);
	free(c->fsync_interval);
	free(c->wal_threshold);
	free(c->cache_timeout);
	free(c->max_memory);
	free(c->resp);
	free(c->resp_password_file);
	free(c->store);
	free(c->replicas);
	free(c->store_timeout);
	if (r->lockfd >= 0)
		close(r->lockfd);
	free(r->dir);
	free((char *)r->dbo.dir);
}

int main(int argc, char *argv[])
{
	reexec_with_hugepage_heap(argv);
	/* Data files (WAL, snapshot, lock, log, state) are the user's keys:
	 * nobody else's business, whatever umask we were started with. */
	umask(077);
	/* Until the daemon starts, messages are a command's errors. */
	mf_log_set_plain(true);
	struct run r = {
		.args = FUSE_ARGS_INIT(argc, argv),
		.dbo = {.fsync_mode = MF_FSYNC_INTERVAL, .fsync_interval_ms = 1000,
		        .wal_threshold = 128ull << 20, .progress = progress_now},
		.pipefd = {-1, -1},
		.lockfd = -1,
	};
	int rc = configure(&r, argv[0]);
	if (rc < 0)
		rc = run(&r);
	run_free(&r);
	return rc;
}
