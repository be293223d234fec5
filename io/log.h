/*
 * log.h — the daemon's log: one line per event, each stamped with an
 * ISO-8601 UTC time (milliseconds) and a level:
 *
 *   2026-11-27T10:15:03.123Z INFO mounted /mnt/mf (data dir ..., fsync interval)
 *
 * Where lines go: always file descriptor 2.  In daemon mode main.c points
 * fd 2 at DATA_DIR/memflux.log (so what libfuse or a not yet converted
 * fprintf(stderr) writes lands there too); with -f it is the terminal or
 * the journal.  mf_log_reopen() re-opens the log file onto fd 2 (SIGHUP,
 * for logrotate): the swap is one dup2, so no line is lost or split.
 *
 * Before the daemon starts (option errors), mf_log_set_plain(true) makes
 * lines read "memfluxfs: message" like any command's error, without a time.
 *
 * Lives in io/ (linked by every module): wal/, snapshot/, db/ and fs/ can
 * all log through it.
 *
 * Thread-safety: every function may be called from any thread; a line is
 * formatted on the caller's stack and written with one write(2) (O_APPEND
 * keeps concurrent lines whole).  Nothing here allocates.
 */
#ifndef MF_LOG_H
#define MF_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum mf_log_level {
	MF_LOG_DEBUG = 0,
	MF_LOG_INFO = 1,
	MF_LOG_WARN = 2,
	MF_LOG_ERROR = 3,
} mf_log_level;

/* Lines below this level are dropped (default INFO; -d sets DEBUG). */
void mf_log_set_level(mf_log_level min);
/* true: "memfluxfs: message" (command-line errors); false (default):
 * timestamped log lines. */
void mf_log_set_plain(bool plain);
/* A second descriptor that also gets every line (start-up progress shown
 * live on the terminal while fd 2 collects the log); -1: none. */
void mf_log_set_tee(int fd);

/* The log file, for mf_log_reopen; NULL: logging to stderr (nothing to
 * reopen).  The path is copied. */
void mf_log_set_file(const char *path);
/* Re-open the log file onto fd 2 (after logrotate moved it away), mode
 * 0600.  0, 1 when there is no log file, or -errno (the old file is
 * kept). */
int mf_log_reopen(void);

void mf_log(mf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void mf_vlog(mf_log_level level, const char *fmt, va_list ap);

#define mf_log_debug(...) mf_log(MF_LOG_DEBUG, __VA_ARGS__)
#define mf_log_info(...) mf_log(MF_LOG_INFO, __VA_ARGS__)
#define mf_log_warn(...) mf_log(MF_LOG_WARN, __VA_ARGS__)
#define mf_log_error(...) mf_log(MF_LOG_ERROR, __VA_ARGS__)

/* Writes "YYYY-MM-DDTHH:MM:SS.mmmZ" for ns since the epoch (UTC) into buf
 * (>= 25 bytes); returns buf.  Also used for times in /.ctl/stats. */
char *mf_log_time(char *buf, size_t len, long long ns);

/* A key as printable text for a log line: bytes outside printable ASCII
 * (and '\\') as \xHH, cut at out's size with "..." — so a log line never
 * carries a newline or terminal escapes from a key name.  Returns out. */
char *mf_log_key(char *out, size_t outlen, const void *key, size_t keylen);

#endif
