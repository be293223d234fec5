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

typedef struct client {
	uint64_t id;
	int proto;            /* 2 or 3 (HELLO) */
	bool authed;
	bool quit;            /* QUIT: close once the reply is out */
	char *name;           /* CLIENT SETNAME */
	rbuf out;             /* replies of the command(s) being run */
} client;

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
} resp_ctx;

/* Command flags. */
enum {
	CMD_READONLY = 1,   /* may run on the loop thread */
	CMD_NOAUTH = 2,     /* allowed before AUTH */
	CMD_WRITE = 4,
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

/* glob.c: Redis-style pattern (* ? [a-z] [^x] \x) against a byte string. */
bool mf_glob_match(const char *pat, size_t plen, const char *s, size_t slen);

#endif
