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
 * In daemon mode stderr goes to DATA_DIR/memflux.log.
 */
#include "fs.h"
#include "../resp/resp.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MF_VERSION "0.1.0"

struct cli {
	char *data_dir;
	char *fsync;
	char *fsync_interval;
	char *wal_threshold;
	char *cache_timeout;
	char *resp, *resp_password_file;   /* RESP face (resp/resp.h) */
	int help, version;
	/* [SOURCE] MOUNTPOINT, as mount.fuse3 passes them */
	char *pos[2];
	int npos;
	char *error; /* first command-line error, reported once parsing is done */
};

enum { KEY_IGNORE, KEY_FSNAME };

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
	OPT("--resp=%s", resp),
	OPT("resp=%s", resp),
	OPT("--resp-password-file=%s", resp_password_file),
	OPT("resp_password_file=%s", resp_password_file),
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
 * option is reported as one line of ours. */
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
	fprintf(stderr, "memfluxfs: %s (see --help)\n", *m ? m : fallback);
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

/* db change hook -> kernel cache invalidation (RESP writes). */
static void key_changed(void *ctx, int ktype, const void *key, size_t klen)
{
	(void)ctx;
	mf_fs_key_changed(ktype, key, klen);
}

static void usage(const char *prog)
{
	printf("usage: %s [options] [DATA_DIR] MOUNTPOINT\n\n"
	       "memfluxfs options:\n"
	       "    DATA_DIR, --data-dir=DIR, -o data_dir=DIR\n"
	       "                     where memflux.wal and memflux.snapshot live\n"
	       "                     (default $MEMFLUX_DATA_DIR, $XDG_DATA_HOME/memflux,\n"
	       "                      ~/.local/share/memflux); as mount(8)'s source:\n"
	       "                      mount -t fuse.memfluxfs DATA_DIR MOUNTPOINT\n"
	       "    --fsync=MODE, -o fsync=MODE       interval (default), always or none\n"
	       "    --fsync-interval-ms=N             background fsync period (default 1000)\n"
	       "    --wal-threshold=SIZE              snapshot when the WAL passes SIZE (default 128M)\n"
	       "    --cache-timeout=SECONDS           kernel entry/attr cache (default 1.0)\n"
	       "    --resp=ADDR, -o resp=ADDR         serve Redis clients on 127.0.0.1:PORT,\n"
	       "                                      [::1]:PORT or unix:PATH (default: off)\n"
	       "    --resp-password-file=FILE         AUTH password (first line); needed for\n"
	       "                                      a non-loopback ADDR\n\n",
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
 * start-up output, and kept for the daemon's log.
 */
static int notice_fd = 2;
static char notice_copy[512];

static void notice_now(const char *line)
{
	char buf[600];
	int n = snprintf(buf, sizeof buf, "memfluxfs: %s\n", line);
	if (n > 0)
		(void)!write(notice_fd, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
	if (notice_fd != 2)
		snprintf(notice_copy, sizeof notice_copy, "memfluxfs: %s", line);
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

/* Copy what was written to `early` to fd a and (if >= 0) fd b; close it. */
static void replay_early(FILE *early, int a, int b)
{
	if (!early)
		return;
	char buf[4096];
	size_t n;
	rewind(early);
	while ((n = fread(buf, 1, sizeof buf, early)) > 0) {
		if (write(a, buf, n) < 0)
			break;
		if (b >= 0 && write(b, buf, n) < 0)
			b = -1;
	}
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

int main(int argc, char *argv[])
{
	reexec_with_hugepage_heap(argv);
	struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
	struct cli cli = {0};
	struct fuse_cmdline_opts fo = {0};
	mf_db_opts dbo = {.fsync_mode = MF_FSYNC_INTERVAL, .fsync_interval_ms = 1000,
	                  .wal_threshold = 128ull << 20};
	char *dir = NULL;
	int rc = 2;
	/* While parsing, libfuse's complaints are collected and reported as
	 * one line of ours. */
	fuse_set_log_func(capture_fuse_log);
	if (fuse_opt_parse(&args, &cli, cli_opts, cli_proc) != 0) {
		report_fuse_error("bad options");
		goto out;
	}
	if (cli.error) {
		fprintf(stderr, "memfluxfs: %s\n", cli.error);
		goto out;
	}
	fuse_msg[0] = '\0';
	if (fuse_parse_cmdline(&args, &fo) != 0) {
		report_fuse_error("bad options");
		goto out;
	}
	if (fo.show_help) {
		usage(argv[0]);
		rc = 0;
		goto out;
	}
	if (fo.show_version) {
		printf("memfluxfs %s (libfuse %s)\n", MF_VERSION, fuse_pkgversion());
		rc = 0;
		goto out;
	}
	if (check_fuse_options(&args) != 0)
		goto out;
	fuse_set_log_func(NULL);
	/* One argument: the mountpoint.  Two, as mount.fuse3 runs us
	 * (`memfluxfs SOURCE MOUNTPOINT -o rw,...`): the source is the data dir. */
	const char *source = cli.npos == 2 ? cli.pos[0] : NULL;
	const char *mnt_arg = cli.npos ? cli.pos[cli.npos - 1] : NULL;
	if (!mnt_arg) {
		fprintf(stderr, "memfluxfs: no mountpoint given (usage: memfluxfs [options] [DATA_DIR] MOUNTPOINT)\n");
		goto out;
	}
	char mnt[PATH_MAX];
	struct stat sb;
	const char *why = NULL;
	if (!realpath(mnt_arg, mnt) || stat(mnt, &sb) != 0)
		why = strerror(errno);
	else if (!S_ISDIR(sb.st_mode))
		why = "not a directory";
	if (why) {
		fprintf(stderr, "memfluxfs: mountpoint %s: %s\n", mnt_arg, why);
		goto out;
	}
	fo.mountpoint = strdup(mnt);
	if ((cli.data_dir && !*cli.data_dir) || (source && !*source)) {
		fprintf(stderr, "memfluxfs: the data dir is empty (give a directory)\n");
		goto out;
	}
	/* Both a source and -o data_dir (an fstab line can have both): the
	 * option names the data dir; the source may then be a label without
	 * '/' (like tmpfs's "none"), or the same dir, but not another dir. */
	if (source && cli.data_dir && strchr(source, '/') && !same_dir(source, cli.data_dir)) {
		fprintf(stderr, "memfluxfs: source %s and data_dir=%s name different data dirs\n",
		        source, cli.data_dir);
		goto out;
	}

	if (cli.fsync && mf_fsync_mode_parse(cli.fsync, &dbo.fsync_mode) != 0) {
		fprintf(stderr, "memfluxfs: --fsync=%s: expected interval, always or none\n", cli.fsync);
		goto out;
	}
	if (cli.fsync_interval) {
		char *end;
		long v = strtol(cli.fsync_interval, &end, 10);
		if (*end || v <= 0 || v > 3600000) {
			fprintf(stderr, "memfluxfs: --fsync-interval-ms=%s: expected 1..3600000\n",
			        cli.fsync_interval);
			goto out;
		}
		dbo.fsync_interval_ms = (unsigned)v;
	}
	if (cli.wal_threshold && mf_parse_size(cli.wal_threshold, &dbo.wal_threshold) != 0) {
		fprintf(stderr, "memfluxfs: --wal-threshold=%s: expected a size like 128M\n",
		        cli.wal_threshold);
		goto out;
	}
	mf_resp_opts rso = {.addr = cli.resp, .password_file = cli.resp_password_file,
	                    .inline_writes = dbo.fsync_mode != MF_FSYNC_ALWAYS};
	if (cli.resp_password_file && !cli.resp) {
		fprintf(stderr, "memfluxfs: --resp-password-file needs --resp=ADDR\n");
		goto out;
	}
	if (cli.resp) {
		char rerr[512];
		if (mf_resp_check_opts(&rso, rerr, sizeof rerr) != 0) {
			fprintf(stderr, "memfluxfs: %s\n", rerr);
			goto out;
		}
	}
	mf_fs_opts fso = {.foreground = fo.foreground, .singlethread = fo.singlethread,
	                  .clone_fd = fo.clone_fd, .max_threads = fo.max_threads, .timeout = 1.0};
	if (cli.cache_timeout) {
		char *end;
		fso.timeout = strtod(cli.cache_timeout, &end);
		if (*end || fso.timeout < 0) {
			fprintf(stderr, "memfluxfs: --cache-timeout=%s: expected seconds\n", cli.cache_timeout);
			goto out;
		}
	}
	dir = cli.data_dir ? strdup(cli.data_dir) : source ? strdup(source) : default_data_dir();
	dbo.dir = absolute(dir);
	/* The mount's source names the data dir ("memfluxfs:DIR", as sshfs
	 * shows user@host:path): df and findmnt show which data a mount serves,
	 * and a restart finds in mountinfo whether the lock holder still serves
	 * one (db.c, MF_DB_FSNAME_PREFIX). */
	char *esc = NULL, *fsname = NULL;
	if (fuse_opt_add_opt_escaped(&esc, dbo.dir) == 0 &&
	    asprintf(&fsname, "fsname=" MF_DB_FSNAME_PREFIX "%s", esc) > 0)
		if (fuse_opt_add_arg(&args, "-o") != 0 || fuse_opt_add_arg(&args, fsname) != 0)
			fprintf(stderr, "memfluxfs: out of memory\n");
	free(esc);
	free(fsname);
	dbo.lock_wait_ms = 30000;
	dbo.notice = notice_now;

	int pipefd[2] = {-1, -1};
	if (!fo.foreground) {
		if (pipe(pipefd) != 0) {
			perror("memfluxfs: pipe");
			rc = 1;
			goto out;
		}
		pid_t pid = fork();
		if (pid < 0) {
			perror("memfluxfs: fork");
			rc = 1;
			goto out;
		}
		if (pid > 0) {
			/* Parent: wait for the child's verdict. */
			close(pipefd[1]);
			char status = 1;
			if (read(pipefd[0], &status, 1) != 1)
				status = 1;
			rc = status;
			goto out;
		}
		close(pipefd[0]);
		setsid();
	}

	/* In daemon mode, what recovery prints (torn tails cut, counts) must
	 * reach the log too, which cannot be opened before the data dir exists:
	 * collect it in a temp file, then copy it to the log and the terminal. */
	FILE *early = NULL;
	int saved_err = -1;
	if (pipefd[1] >= 0 && (early = tmpfile()) != NULL) {
		saved_err = dup(2);
		dup2(fileno(early), 2);
		notice_fd = saved_err;
	}
	char err[1024] = "";
	mf_db *db = mf_db_open(&dbo, err, sizeof err);
	if (early) {
		dup2(saved_err, 2);
		close(saved_err);
		notice_fd = 2;
	}
	if (!db) {
		replay_early(early, 2, -1);
		fprintf(stderr, "memfluxfs: %s\n", err);
		if (pipefd[1] >= 0) {
			char st = 1;
			(void)!write(pipefd[1], &st, 1);
		}
		rc = 1;
		goto out;
	}
	/* RESP before the mount, so a busy port fails the start like any
	 * other error; its changes reach the kernel through the hook, which
	 * is installed once the mount exists (before, there is no kernel
	 * cache to drop, and the mount's tables are still being built). */
	mf_resp *resp = NULL;
	if (cli.resp) {
		resp = mf_resp_start(db, &rso, err, sizeof err);
		if (!resp) {
			replay_early(early, 2, -1);
			fprintf(stderr, "memfluxfs: %s\n", err);
			mf_db_close(db);
			if (pipefd[1] >= 0) {
				char st = 1;
				(void)!write(pipefd[1], &st, 1);
			}
			rc = 1;
			goto out;
		}
	}
	struct fuse_session *se = mf_fs_mount(db, &args, fo.mountpoint, &fso);
	if (se && resp)
		mf_db_set_change_hook(db, key_changed, NULL);
	if (!se) {
		replay_early(early, 2, -1);
		fprintf(stderr, "memfluxfs: cannot mount on %s\n", fo.mountpoint);
		mf_resp_stop(resp);
		mf_db_close(db);
		if (pipefd[1] >= 0) {
			char st = 1;
			(void)!write(pipefd[1], &st, 1);
		}
		rc = 1;
		goto out;
	}
	if (pipefd[1] >= 0) {
		/* Detach: logs to the data dir, stdio away from the terminal. */
		char *logpath = join(dbo.dir, "memflux.log");
		int lfd = logpath ? open(logpath, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : -1;
		free(logpath);
		int nfd = open("/dev/null", O_RDWR);
		if (nfd >= 0) {
			dup2(nfd, 0);
			dup2(nfd, 1);
			close(nfd);
		}
		if (lfd >= 0 && notice_copy[0])
			dprintf(lfd, "%s\n", notice_copy);
		replay_early(early, 2, lfd);
		early = NULL;
		if (lfd >= 0) {
			dup2(lfd, 2);
			close(lfd);
		}
		if (chdir("/") != 0)
			perror("memfluxfs: chdir");
		char st = 0;
		(void)!write(pipefd[1], &st, 1);
		close(pipefd[1]);
	}
	fprintf(stderr, "memfluxfs: mounted %s (data dir %s, fsync %s)\n", fo.mountpoint, dbo.dir,
	        mf_fsync_mode_name(dbo.fsync_mode));
	int r = mf_fs_loop(se, &fso);
	/* RESP first: its threads notify the session mf_fs_unmount destroys. */
	mf_resp_stop(resp);
	mf_fs_unmount(se);
	hold_after_unmount();
	mf_db_close(db);
	fprintf(stderr, "memfluxfs: unmounted %s\n", fo.mountpoint);
	rc = r ? 1 : 0;
out:
	fuse_set_log_func(NULL);
	free(fo.mountpoint);
	fuse_opt_free_args(&args);
	free(cli.pos[0]);
	free(cli.pos[1]);
	free(cli.error);
	free(cli.data_dir);
	free(cli.fsync);
	free(cli.fsync_interval);
	free(cli.wal_threshold);
	free(cli.cache_timeout);
	free(cli.resp);
	free(cli.resp_password_file);
	free(dir);
	free((char *)dbo.dir);
	return rc;
}
