/*
 * resp_int.h — what server.c (connections, threads) and cmd.c (commands)
 * share.  Not a public interface.
 */
#ifndef MF_RESP_INT_H
#define MF_RESP_INT_H

#include "resp.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Per-key lock stripes.  FLUSHDB holds them all at once: 32 keeps that
 * (plus the store's lock) under ThreadSanitizer's 64 held locks. */
#define MF_RESP_STRIPES 32

/* A reply being built: a growing byte buffer. */
typedef struct rbuf {
	char *p;
	size_t len, cap;
} rbuf;

void rb_put(rbuf *b, const void *p, size_t n);
void rb_fmt(rbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One request: argv as (pointer, length) pairs into the parsed reply. */
typedef struct req {
	void *reply;          /* the hiredis redisReply that owns the bytes */
	int argc;
	const char **argv;
	size_t *argl;
	struct req *next;
} req;

/* Pipelined writes whose ops are queued in the WAL but not yet waited
 * for (cmd_defer / cmd_flush): consecutive blind SETs, pushes or pops of
 * one key.  One key per batch because only mf_db_commit_notify fires the
 * db's change hook (the kernel-cache invalidation), and it fires it for its
 * own op: the batch's last op goes through it, after every earlier op is
 * applied, so one hook call covers the key for the whole batch. */
#define MF_RESP_BATCH 256

typedef struct pending {
	req *r;
	mf_op op;
	mf_db_ticket t;
	int rc;               /* enqueue's result; wait's once waited */
} pending;

typedef struct batch {
	int kind;             /* 0: empty; else a BATCH_* of cmd.c */
	unsigned stripe;      /* the key's stripe, held shared while n > 0 */
	int n;                /* ops in p[]; the last is not enqueued yet */
	pending p[MF_RESP_BATCH];
} batch;

typedef struct client {
	uint64_t id;
	int proto;            /* 2 or 3 (HELLO) */
	bool authed;
	bool quit;            /* QUIT: close once the reply is out */
	char *name;           /* CLIENT SETNAME */
	rbuf out;             /* replies of the command(s) being run */
	batch *b;             /* deferred writes (allocated on first use) */
	/* Its BLPOP/BRPOP waiter: zeroed once with the client and never
	 * reset, so the cancel of a closed connection (server.c) sticks. */
	mf_bpop_waiter bw;
	/* MULTI ... EXEC (cmd.c): queued commands (copies), and WATCHed keys
	 * with the version each had. */
	bool in_multi;
	bool multi_dirty;     /* a queued command was refused: EXECABORT */
	struct txq *txq;
	int ntxq, captxq;
	struct watched *watch;
	int nwatch;
} client;

/* Free what a client's MULTI/WATCH state holds (server.c, at close). */
void cmd_client_free(client *c);

/* The server-wide state commands need. */
typedef struct resp_ctx {
	mf_db *db;
	mf_store *st;
	char *password;       /* NULL: none configured */
	int64_t start_ns;
	pthread_rwlock_t stripes[MF_RESP_STRIPES]; /* per-key: shared for blind writes,
	                                 exclusive for read-modify-write */
	pthread_mutex_t save_mu;  /* guards bgsave_running */
	pthread_cond_t save_cv;   /* bgsave_running went false */
	bool bgsave_running;
	atomic_int nclients;      /* connected clients (INFO) */
	atomic_int nblocked;      /* clients in BLPOP/BRPOP (each holds a worker) */
} resp_ctx;

/* Command flags. */
enum {
	CMD_READONLY = 1,   /* may run on the loop thread */
	CMD_NOAUTH = 2,     /* allowed before AUTH */
	CMD_WRITE = 4,
	CMD_BLOCKING = 8,   /* may wait (BLPOP): never on the loop thread */
};

typedef struct cmd {
	const char *name;   /* lower case */
	int arity;          /* Redis convention: n exact, -n at least n */
	int flags;
	int first, last, step; /* key positions (COMMAND) */
	void (*fn)(resp_ctx *x, client *c, req *r);
} cmd;

const cmd *cmd_find(const char *name, size_t len);
/* Run one request, appending its reply to c->out. */
void cmd_run(resp_ctx *x, client *c, req *r);
/* Would this request run read-only (loop thread)? */
bool cmd_is_readonly(req *r);
/* Is it a plain key read or write (no client state, no snapshot)? */
bool cmd_is_keyed(req *r);
/* Take a pipelined write into c's batch (its op queued in the WAL, its
 * reply left for cmd_flush; a batch of another key or kind is flushed
 * first) and own r: true.  false: r must run through cmd_run, after
 * cmd_flush (not a blind SET/push/pop, or one whose key's type makes
 * Redis do more than the plain op).  Callers flush before the client's
 * output goes out and before anything else runs for the client. */
bool cmd_defer(resp_ctx *x, client *c, req *r);
/* Wait for the batch's ops in order, append their replies to c->out,
 * free their requests, release the stripe.  No-op when empty. */
void cmd_flush(resp_ctx *x, client *c);
void req_free(req *r); /* server.c */

/* glob.c: Redis-style pattern (* ? [a-z] [^x] \x) against a byte string. */
bool mf_glob_match(const char *pat, size_t plen, const char *s, size_t slen);

#endif
