/*
 * log.c — timestamped, levelled log lines (see log.h).
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static atomic_int min_level = MF_LOG_INFO;
static atomic_bool plain;
static atomic_int tee_fd = -1;
/* Set once by main before any thread could reopen; read by the SIGHUP
 * thread.  A fixed buffer: reopen must not allocate. */
static char log_path[4096];
static atomic_bool have_path;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void mf_log_set_level(mf_log_level min) { atomic_store(&min_level, (int)min); }
void mf_log_set_plain(bool p) { atomic_store(&plain, p); }
void mf_log_set_tee(int fd) { atomic_store(&tee_fd, fd); }

void mf_log_set_file(const char *path)
{
	if (!path || strlen(path) >= sizeof log_path) {
		atomic_store(&have_path, false);
		return;
	}
	memcpy(log_path, path, strlen(path) + 1);
	atomic_store(&have_path, true);
}

int mf_log_reopen(void)
{
	if (!atomic_load(&have_path))
		return 1;
	int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* dup2 swaps fd 2 atomically: a concurrent write goes wholly to the
	 * old file or wholly to the new one. */
	int r = dup2(fd, 2) < 0 ? -errno : 0;
	close(fd);
	return r;
}

char *mf_log_time(char *buf, size_t len, long long ns)
{
	time_t s = (time_t)(ns / 1000000000LL);
	struct tm tm;
	gmtime_r(&s, &tm);
	char day[32];
	strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%03dZ", day, (int)(ns % 1000000000LL / 1000000));
	return buf;
}

char *mf_log_key(char *out, size_t outlen, const void *key, size_t keylen)
{
	const unsigned char *k = key;
	size_t o = 0;
	if (outlen < 8) {
		if (outlen)
			out[0] = '\0';
		return out;
	}
	for (size_t i = 0; i < keylen; i++) {
		unsigned char c = k[i];
		size_t need = (c >= 0x20 && c < 0x7f && c != '\\') ? 1 : 4;
		if (o + need + 4 > outlen) { /* room for "..." and NUL */
			memcpy(out + o, "...", 4);
			return out;
		}
		if (need == 1)
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
	}
	out[o] = '\0';
	return out;
}

void mf_vlog(mf_log_level level, const char *fmt, va_list ap)
{
	if ((int)level < atomic_load(&min_level))
		return;
	char line[2048];
	int n;
	if (atomic_load(&plain)) {
		n = snprintf(line, sizeof line, "memfluxfs: ");
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		char t[40];
		mf_log_time(t, sizeof t, (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
		n = snprintf(line, sizeof line, "%s %s ", t,
		             level_names[level <= MF_LOG_ERROR ? level : MF_LOG_ERROR]);
	}
	int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
	size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
	if (len > sizeof line - 2)
		len = sizeof line - 2; /* cut: still one line */
	/* One line per call, whatever the message holds. */
	for (size_t i = (size_t)n; i < len; i++)
		if (line[i] == '\n')
			line[i] = ' ';
	line[len++] = '\n';
	int saved = errno; /* callers log then return -errno */
	(void)!write(2, line, len);
	int tee = atomic_load(&tee_fd);
	if (tee >= 0)
		(void)!write(tee, line, len);
	errno = saved;
}

void mf_log(mf_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	mf_vlog(level, fmt, ap);
	va_end(ap);
}
