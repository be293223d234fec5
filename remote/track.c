/*
 * track.c — coherence across machines: the invalidation thread.
 *
 * One subscriber connection per known node.  Each runs
 *   CLIENT TRACKING on REDIRECT <its own id> BCAST
 *   SUBSCRIBE __redis__:invalidate
 * so the node publishes to it the name of every key any client changes
 * (BCAST: without it the server reports only keys this client read), and a
 * nil for FLUSHDB.  Each name goes to the change hook (main.c drops the
 * kernel's cached entry and attributes: mf_fs_key_changed), so `cat` on
 * another mount sees a new value at once instead of after the attr timeout.
 * The meta hashes ("__mf:{...}") change with every commit and are skipped.
 *
 * A subscriber that fails (server gone, failover) is redialled every
 * RETRY_MS by this thread; after a (re)connect the hook is called for
 * every key, since messages sent meanwhile are lost.  The thread never
 * blocks on a socket it has not polled: it waits in poll() on every
 * subscriber and a stop pipe, so stopping is immediate.
 */
#include "remote_int.h"
#include "../io/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RETRY_MS 200

void rm_notify(mf_remote *r, int ktype, const void *key, size_t klen)
{
	/* Held across the call so that clearing the hook waits for a call in
	 * progress (the mount it points at is about to go). */
	pthread_mutex_lock(&r->hook_mu);
	if (r->hook)
		r->hook(r->hook_ctx, ktype, key, klen);
	pthread_mutex_unlock(&r->hook_mu);
}

void mf_remote_set_change_hook(mf_remote *r, mf_remote_change_fn fn, void *ctx)
{
	pthread_mutex_lock(&r->hook_mu);
	r->hook = fn;
	r->hook_ctx = ctx;
	pthread_mutex_unlock(&r->hook_mu);
}

static bool reply_ok(redisReply *rep)
{
	bool ok = rep && rep->type != REDIS_REPLY_ERROR;
	if (rep)
		freeReplyObject(rep);
	return ok;
}

/* A subscriber on node n, or NULL. */
static redisContext *sub_dial(mf_remote *r, rm_node *n)
{
	struct timeval tv = {.tv_sec = 0, .tv_usec = 300000};
	redisContext *c = redisConnectWithTimeout(n->host, n->port, tv);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	struct timeval cmd = {.tv_sec = r->opts.timeout_ms / 1000,
	                      .tv_usec = (suseconds_t)(r->opts.timeout_ms % 1000) * 1000};
	redisSetTimeout(c, cmd);
	redisEnableKeepAlive(c);
	redisReply *id = redisCommand(c, "CLIENT ID");
	if (!id || id->type != REDIS_REPLY_INTEGER) {
		if (id)
			freeReplyObject(id);
		redisFree(c);
		return NULL;
	}
	long long cid = id->integer;
	freeReplyObject(id);
	if (!reply_ok(redisCommand(c, "CLIENT TRACKING on REDIRECT %lld BCAST", cid)) ||
	    !reply_ok(redisCommand(c, "SUBSCRIBE __redis__:invalidate"))) {
		mf_log_warn("remote %s:%d: cannot subscribe to invalidations: %s", n->host, n->port,
		            c->err ? c->errstr : "refused");
		redisFree(c);
		return NULL;
	}
	return c;
}

/* One pushed message: ["message", channel, [keys...] | nil]. */
static void handle_message(mf_remote *r, redisReply *m)
{
	if (m->type != REDIS_REPLY_ARRAY || m->elements != 3 ||
	    m->element[0]->type != REDIS_REPLY_STRING || strcmp(m->element[0]->str, "message") != 0)
		return;
	const redisReply *keys = m->element[2];
	atomic_fetch_add(&r->n_invalidations, 1);
	if (keys->type != REDIS_REPLY_ARRAY) {
		rm_notify(r, MF_T_NONE, NULL, 0); /* FLUSHDB / FLUSHALL */
		return;
	}
	for (size_t i = 0; i < keys->elements; i++) {
		const redisReply *k = keys->element[i];
		if (k->type != REDIS_REPLY_STRING || (k->len >= 6 && memcmp(k->str, "__mf:{", 6) == 0))
			continue;
		/* The message does not say the key's type: each directory's
		 * cached name (and the node, if any) is dropped. */
		static const int types[] = {MF_T_STRING, MF_T_JSON, MF_T_LIST, MF_T_SET};
		for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
			rm_notify(r, types[t], k->str, k->len);
	}
}

/* The thread's state: made by rm_track_start, which dials the first
 * subscribers itself, before the mount exists. */
typedef struct track_state {
	mf_remote *r;
	redisContext *sub[RM_MAX_NODES];
	int64_t next_try[RM_MAX_NODES];
	bool ever[RM_MAX_NODES];
} track_state;

static void *track_main(void *arg)
{
	track_state *ts = arg;
	mf_remote *r = ts->r;
	redisContext **sub = ts->sub;
	int64_t *next_try = ts->next_try;
	bool *ever = ts->ever;
	for (;;) {
		pthread_mutex_lock(&r->map_mu);
		int n = r->nnodes;
		rm_node *nodes[RM_MAX_NODES];
		memcpy(nodes, r->nodes, (size_t)n * sizeof *nodes);
		pthread_mutex_unlock(&r->map_mu);
		int64_t now = rm_now_ns();
		for (int i = 0; i < n; i++) {
			if (sub[i] || now < next_try[i])
				continue;
			sub[i] = sub_dial(r, nodes[i]);
			next_try[i] = now + RETRY_MS * 1000000LL;
			if (sub[i]) {
				/* A reconnect, or a node found later (a failover's new
				 * master): changes made meanwhile were not reported. */
				if (ever[i])
					mf_log_info("remote %s:%d: invalidations resumed", nodes[i]->host,
					            nodes[i]->port);
				ever[i] = true;
				/* Messages read together with the SUBSCRIBE reply. */
				redisReply *m = NULL;
				while (redisGetReplyFromReader(sub[i], (void **)&m) == REDIS_OK && m) {
					handle_message(r, m);
					freeReplyObject(m);
					m = NULL;
				}
				/* Whatever changed while we were not listening. */
				rm_notify(r, MF_T_NONE, NULL, 0);
			}
		}
		struct pollfd pf[RM_MAX_NODES + 1];
		int who[RM_MAX_NODES + 1];
		int np = 0;
		pf[np] = (struct pollfd){.fd = r->stop_pipe[0], .events = POLLIN};
		who[np++] = -1;
		for (int i = 0; i < n; i++)
			if (sub[i]) {
				pf[np] = (struct pollfd){.fd = sub[i]->fd, .events = POLLIN};
				who[np++] = i;
			}
		if (poll(pf, (nfds_t)np, RETRY_MS) < 0 && errno != EINTR)
			break;
		if (pf[0].revents)
			break;
		for (int p = 1; p < np; p++) {
			if (!pf[p].revents)
				continue;
			int i = who[p];
			redisReply *m = NULL;
			bool dead = redisBufferRead(sub[i]) != REDIS_OK;
			while (!dead) {
				if (redisGetReplyFromReader(sub[i], (void **)&m) != REDIS_OK) {
					dead = true;
					break;
				}
				if (!m)
					break;
				handle_message(r, m);
				freeReplyObject(m);
			}
			if (dead) {
				mf_log_warn("remote %s:%d: invalidation connection lost: %s", nodes[i]->host,
				            nodes[i]->port, sub[i]->errstr);
				redisFree(sub[i]);
				sub[i] = NULL;
			}
		}
	}
	for (int i = 0; i < RM_MAX_NODES; i++)
		if (sub[i])
			redisFree(sub[i]);
	free(ts);
	return NULL;
}

int rm_track_start(mf_remote *r, char *err, size_t errlen)
{
	if (pipe2(r->stop_pipe, O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -errno;
	}
	track_state *ts = calloc(1, sizeof *ts);
	if (!ts) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	ts->r = r;
	/* The nodes known now are subscribed before the mount exists: nothing
	 * can be cached yet, so no "everything changed" call is needed for
	 * them (one arriving while the first requests run made the kernel
	 * drop entries of files being created: found under ASan).  A node
	 * that fails here is retried by the thread, which then does call it. */
	for (int i = 0; i < r->nnodes; i++) {
		ts->sub[i] = sub_dial(r, r->nodes[i]);
		ts->ever[i] = ts->sub[i] != NULL;
		ts->next_try[i] = rm_now_ns() + RETRY_MS * 1000000LL;
	}
	if (pthread_create(&r->track_thread, NULL, track_main, ts) != 0) {
		for (int i = 0; i < RM_MAX_NODES; i++)
			if (ts->sub[i])
				redisFree(ts->sub[i]);
		free(ts);
		snprintf(err, errlen, "cannot start the invalidation thread");
		return -EAGAIN;
	}
	r->track_started = true;
	return 0;
}

void rm_track_stop(mf_remote *r)
{
	if (r->track_started) {
		(void)!write(r->stop_pipe[1], "x", 1);
		pthread_join(r->track_thread, NULL);
		r->track_started = false;
	}
	for (int i = 0; i < 2; i++)
		if (r->stop_pipe[i] >= 0) {
			close(r->stop_pipe[i]);
			r->stop_pipe[i] = -1;
		}
}
