/*
 * resp.h — the RESP face: Redis clients (redis-cli, redis-py,
 * redis-benchmark) on the same keyspace the mount shows (issue 15).
 *
 * Owns: one listening socket (TCP on a loopback or, with a password, any
 * address; or a unix socket, which it creates and removes), the client
 * connections, one event-loop thread and a pool of worker threads.
 *
 * Threads:
 *   - the loop thread (libevent) accepts, reads, parses requests with
 *     hiredis's reader and writes replies; it also runs read-only commands
 *     itself when the client has nothing queued (GET needs no hand-off),
 *     and with inline_writes the writes too (Redis's model: one thread);
 *   - MF_RESP_WORKERS worker threads run everything else, one client at a
 *     time per worker and a client's commands in order.  A mutation blocks
 *     its worker until the WAL acknowledges it (in --fsync=always: after
 *     the fsync), so several workers committing at once share one WAL
 *     batch / fsync (group commit).  A client's pipelined run of writes to
 *     one key is queued in the WAL as a whole and waited for once
 *     (cmd_defer/cmd_flush in resp_int.h), its replies sent together.
 * Locking: a client's command queue and state are guarded by its own mutex;
 * commands that read-modify-write (SET NX/XX/GET, RENAMENX, APPEND's reply,
 * LPUSH's length...) hold striped per-key locks of this module, so they are
 * atomic against other RESP clients.  Against writers through the mount
 * only each single op is atomic (the store applies ops one at a time).
 * Every mutation goes through mf_db_commit_notify (a batch: its last op;
 * the earlier ones through mf_db_commit_enqueue/wait around it): same
 * validation, WAL, apply and fsync mode as the mount, then the kernel's
 * caches are told (mf_fs_key_changed via the db change hook).
 *
 * Errors: mf_resp_start returns NULL with a one-line message in err.
 * Client errors are Redis's own error replies.
 */
#ifndef MF_RESP_H
#define MF_RESP_H

#include "../db/db.h"

#include <stddef.h>

#define MF_RESP_WORKERS 64

typedef struct mf_resp_opts {
	const char *addr;           /* "127.0.0.1:6380", "[::1]:6380", "unix:/path" */
	const char *password_file;  /* NULL: no AUTH; then the address must be local */
	/* Run writes on the loop thread too when the client has nothing
	 * queued (as reads always are): for --fsync=interval/none, where a
	 * commit is a short WAL round trip and hand-offs to a worker cost
	 * more than the commit.  Not for always: a commit then waits for an
	 * fsync, and the workers' concurrent commits share it. */
	bool inline_writes;
} mf_resp_opts;

typedef struct mf_resp mf_resp;

/* Check an address and password file without opening anything (option
 * parsing).  0, or -1 with a message in err. */
int mf_resp_check_opts(const mf_resp_opts *o, char *err, size_t errlen);

/* Bind, listen and start the threads. */
mf_resp *mf_resp_start(mf_db *db, const mf_resp_opts *o, char *err, size_t errlen);

/* Close the listener and every client, join the threads (a command in
 * progress finishes first).  NULL is a no-op. */
void mf_resp_stop(mf_resp *r);

#endif
