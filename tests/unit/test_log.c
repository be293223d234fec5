/*
 * test_log.c — the daemon's log lines (io/log.c): format, one line per
 * call, key escaping, and reopen onto fd 2 (what SIGHUP does).
 *
 * fd 2 is pointed at temp files for the checks and restored afterwards, so
 * cmocka's own output still reaches the terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"

static char dir[] = "/tmp/mf-test-log.XXXXXX";
static int saved_stderr = -1;

/* Redirect fd 2 to a fresh file; returns its path (static). */
static const char *capture(const char *name)
{
	static char path[256];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	assert_true(fd >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	close(fd);
	return path;
}

static void restore(void)
{
	dup2(saved_stderr, 2);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "re");
	assert_non_null(f);
	static char buf[8192];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

static int setup(void **state)
{
	(void)state;
	assert_non_null(mkdtemp(dir));
	saved_stderr = dup(2);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	(void)!system(cmd);
	close(saved_stderr);
	return 0;
}

static void test_line_format(void **state)
{
	(void)state;
	const char *p = capture("fmt");
	mf_log_set_plain(false);
	mf_log_info("hello %d", 42);
	mf_log_error("two\nlines");   /* must stay one line */
	mf_log_debug("dropped");      /* below the default level */
	restore();
	const char *s = slurp(p);
	regex_t re;
	assert_int_equal(regcomp(&re,
	                         "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
	                         "INFO hello 42\n"
	                         "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]{12}Z ERROR two lines\n$",
	                         REG_EXTENDED), 0);
	assert_int_equal(regexec(&re, s, 0, NULL, 0), 0);
	regfree(&re);
}

static void test_plain_and_level(void **state)
{
	(void)state;
	const char *p = capture("plain");
	mf_log_set_plain(true);
	mf_log_error("bad option %s", "-x");
	mf_log_set_plain(false);
	mf_log_set_level(MF_LOG_DEBUG);
	mf_log_debug("now shown");
	mf_log_set_level(MF_LOG_INFO);
	restore();
	const char *s = slurp(p);
	assert_true(strncmp(s, "memfluxfs: bad option -x\n", 25) == 0);
	assert_non_null(strstr(s + 25, "Z DEBUG now shown\n"));
}

static void test_time_format(void **state)
{
	(void)state;
	char t[40];
	/* 2026-11-27T10:15:03.123Z */
	long long ns = 1795774503LL * 1000000000LL + 123456789LL;
	assert_string_equal(mf_log_time(t, sizeof t, ns), "2026-11-27T10:15:03.123Z");
	assert_string_equal(mf_log_time(t, sizeof t, 0), "1970-01-01T00:00:00.000Z");
}

static void test_key_escaping(void **state)
{
	(void)state;
	char out[64];
	assert_string_equal(mf_log_key(out, sizeof out, "plain key", 9), "plain key");
	assert_string_equal(mf_log_key(out, sizeof out, "a\nb\\c\x1b", 6), "a\\x0ab\\x5cc\\x1b");
	char big[300];
	memset(big, 'k', sizeof big);
	mf_log_key(out, sizeof out, big, sizeof big);
	assert_true(strlen(out) < sizeof out);
	assert_string_equal(out + strlen(out) - 3, "...");
}

static void test_reopen_after_rotation(void **state)
{
	(void)state;
	char path[256], moved[300];
	snprintf(path, sizeof path, "%s/memflux.log", dir);
	snprintf(moved, sizeof moved, "%s.1", path);
	assert_int_equal(mf_log_reopen(), 1); /* no file set: nothing to do */
	mf_log_set_file(path);
	assert_int_equal(mf_log_reopen(), 0);
	mf_log_info("before");
	assert_int_equal(rename(path, moved), 0);
	mf_log_info("still old");             /* fd 2 follows the moved file */
	assert_int_equal(mf_log_reopen(), 0);
	mf_log_info("after");
	mf_log_set_file(NULL);
	restore();
	struct stat sb;
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	const char *s = slurp(moved);
	assert_non_null(strstr(s, "before"));
	assert_non_null(strstr(s, "still old"));
	assert_null(strstr(s, "after"));
	s = slurp(path);
	assert_non_null(strstr(s, "INFO after\n"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_line_format),
		cmocka_unit_test(test_plain_and_level),
		cmocka_unit_test(test_time_format),
		cmocka_unit_test(test_key_escaping),
		cmocka_unit_test(test_reopen_after_rotation),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
