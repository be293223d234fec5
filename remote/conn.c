/*
 * conn.c — URLs, nodes, pooled connections, the cluster slot map, and one
 * routed round trip with a deadline (rm_call).  Internals: remote_int.h.
 */
#include "remote_int.h"
#include "../io/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t rm_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timeval ms_tv(unsigned ms)
{
	return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* Wait between attempts while a server is away (its restart or a cluster
 * failover is what we wait for; the caller's deadline bounds the loop). */
static void backoff(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
	nanosleep(&ts, NULL);
}

/* The node at host:port, added if new.  Caller holds map_mu.  -1: full. */
static int node_find_add(mf_remote *r, const char *host, size_t hlen, int port)
{
	for (int i = 0; i < r->nnodes; i++)
		if (r->nodes[i]->port == port && strlen(r->nodes[i]->host) == hlen &&
		    memcmp(r->nodes[i]->host, host, hlen) == 0)
			return i;
	if (r->nnodes == RM_MAX_NODES)
		return -1;
	rm_node *n = calloc(1, sizeof *n);
	if (!n || !(n->host = strndup(host, hlen))) {
		free(n);
		return -1;
	}
	n->port = port;
	for (int i = 0; i < RM_POOL; i++)
		pthread_mutex_init(&n->pool[i].mu, NULL);
	r->nodes[r->nnodes] = n;
	return r->nnodes++;
}

/* "HOST:PORT" or "[V6]:PORT" at s (len n) -> node.  -EINVAL if malformed. */
static int parse_hostport(mf_remote *r, const char *s, size_t n, char *err, size_t errlen)
{
	const char *colon = NULL;
	const char *host = s;
	size_t hlen;
	if (n && s[0] == '[') {
		const char *rb = memchr(s, ']', n);
		if (!rb || rb + 1 >= s + n || rb[1] != ':')
			goto bad;
		host = s + 1;
		hlen = (size_t)(rb - host);
		colon = rb + 1;
	} else {
		for (size_t i = n; i-- > 0;)
			if (s[i] == ':') {
				colon = s + i;
				break;
			}
		if (!colon)
			goto bad;
		hlen = (size_t)(colon - s);
	}
	char port[8];
	size_t plen = (size_t)(s + n - colon - 1);
	if (hlen == 0 || plen == 0 || plen >= sizeof port)
		goto bad;
	memcpy(port, colon + 1, plen);
	port[plen] = '\0';
	char *end;
	long p = strtol(port, &end, 10);
	if (*end || p <= 0 || p > 65535)
		goto bad;
	if (node_find_add(r, host, hlen, (int)p) < 0)
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "--store: expected HOST:PORT, got \"%.*s\"", (int)n, s);
	return -EINVAL;
}

int rm_parse_url(mf_remote *r, const char *url, char *err, size_t errlen)
{
	static const char single[] = "redis://", cluster[] = "redis+cluster://";
	const char *rest;
	if (strncmp(url, single, sizeof single - 1) == 0) {
		rest = url + sizeof single - 1;
		r->cluster = false;
	} else if (strncmp(url, cluster, sizeof cluster - 1) == 0) {
		rest = url + sizeof cluster - 1;
		r->cluster = true;
	} else {
		snprintf(err, errlen,
		         "--store=%s: expected redis://HOST:PORT[/DB] or redis+cluster://H1:P1,H2:P2,...",
		         url);
		return -EINVAL;
	}
	if (!r->cluster) {
		const char *slash = strchr(rest, '/');
		size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
		if (slash) {
			char *end;
			long db = strtol(slash + 1, &end, 10);
			if (!slash[1] || *end || db < 0 || db > 1000000) {
				snprintf(err, errlen, "--store=%s: the database after / must be a number", url);
				return -EINVAL;
			}
			r->db = (int)db;
		}
		return parse_hostport(r, rest, n, err, errlen);
	}
	/* A cluster: one or more seeds; the slot map names the rest. */
	while (*rest) {
		const char *comma = strchr(rest, ',');
		size_t n = comma ? (size_t)(comma - rest) : strlen(rest);
		int e = parse_hostport(r, rest, n, err, errlen);
		if (e)
			return e;
		rest += n + (comma ? 1 : 0);
	}
	if (r->nnodes == 0) {
		snprintf(err, errlen, "--store=%s: no HOST:PORT given", url);
		return -EINVAL;
	}
	return 0;
}

int mf_remote_check_url(const char *url, char *err, size_t errlen)
{
	mf_remote *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	pthread_mutex_init(&r->map_mu, NULL);
	int e = rm_parse_url(r, url, err, errlen);
	rm_free_nodes(r);
	pthread_mutex_destroy(&r->map_mu);
	free(r);
	return e;
}

/* A new connection to n: deadline timeout_ms for connect and for every
 * later round trip; SELECT; every script loaded.  NULL with err set. */
redisContext *rm_dial(mf_remote *r, rm_node *n, unsigned timeout_ms, char *err, size_t errlen)
{
	redisContext *c = redisConnectWithTimeout(n->host, n->port, ms_tv(timeout_ms));
	if (!c || c->err) {
		snprintf(err, errlen, "%s:%d: %s", n->host, n->port, c ? c->errstr : "out of memory");
		if (c)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, ms_tv(r->opts.timeout_ms));
	redisEnableKeepAlive(c);
	int sent = 0;
	if (r->db)
		redisAppendCommand(c, "SELECT %d", r->db), sent++;
	for (int i = 0; i < RM_NSCRIPTS; i++)
		redisAppendCommand(c, "SCRIPT LOAD %s", rm_scripts[i]), sent++;
	int bad = 0;
	for (int i = 0; i < sent; i++) {
		redisReply *rep = NULL;
		if (redisGetReply(c, (void **)&rep) != REDIS_OK) {
			snprintf(err, errlen, "%s:%d: %s", n->host, n->port, c->errstr);
			redisFree(c);
			return NULL;
		}
		int si = i - (r->db ? 1 : 0);
		if (rep->type == REDIS_REPLY_ERROR) {
			if (!bad)
				snprintf(err, errlen, "%s:%d: %s", n->host, n->port, rep->str);
			bad = 1;
		} else if (si >= 0 && rep->type == REDIS_REPLY_STRING && rep->len == 40) {
			/* The SHA1 of the text: the same on every server. */
			memcpy(r->sha[si], rep->str, 40);
		}
		freeReplyObject(rep);
	}
	if (bad) {
		redisFree(c);
		return NULL;
	}
	return c;
}

void rm_free_nodes(mf_remote *r)
{
	for (int i = 0; i < r->nnodes; i++) {
		rm_node *n = r->nodes[i];
		for (int j = 0; j < RM_POOL; j++) {
			if (n->pool[j].c)
				redisFree(n->pool[j].c);
			pthread_mutex_destroy(&n->pool[j].mu);
		}
		free(n->host);
		free(n);
	}
	r->nnodes = 0;
}

/* Parse a CLUSTER SLOTS reply from node `from` into slots[].  Caller
 * holds map_mu.  Returns the number of slots covered. */
static unsigned slots_from_reply(mf_remote *r, int from, const redisReply *rep)
{
	unsigned covered = 0;
	for (size_t i = 0; i < rep->elements; i++) {
		const redisReply *e = rep->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER ||
		    e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
			continue;
		const redisReply *m = e->element[2];
		if (m->element[0]->type != REDIS_REPLY_STRING ||
		    m->element[1]->type != REDIS_REPLY_INTEGER)
			continue;
		/* An empty host means "the node you asked". */
		const char *host = m->element[0]->len ? m->element[0]->str : r->nodes[from]->host;
		int idx = node_find_add(r, host, strlen(host), (int)m->element[1]->integer);
		if (idx < 0)
			continue;
		long long lo = e->element[0]->integer, hi = e->element[1]->integer;
		for (long long s = lo; s <= hi && s < RM_SLOTS; s++) {
			if (s >= 0) {
				r->slots[s] = (uint8_t)idx;
				covered++;
			}
		}
	}
	return covered;
}

void rm_refresh_slots(mf_remote *r, bool force)
{
	if (!r->cluster)
		return;
	pthread_mutex_lock(&r->map_mu);
	int64_t now = rm_now_ns();
	bool due = force || now - r->last_refresh_ns > 100 * 1000000LL;
	if (due)
		r->last_refresh_ns = now;
	int n = r->nnodes;
	pthread_mutex_unlock(&r->map_mu);
	if (!due)
		return;
	/* Ask each known node in turn (a short-lived connection: no pool lock
	 * is taken here, so a caller may hold one) until one answers. */
	for (int i = 0; i < n; i++) {
		pthread_mutex_lock(&r->map_mu);
		rm_node *node = r->nodes[i];
		pthread_mutex_unlock(&r->map_mu);
		redisContext *c = redisConnectWithTimeout(node->host, node->port, ms_tv(300));
		if (!c || c->err) {
			if (c)
				redisFree(c);
			continue;
		}
		redisSetTimeout(c, ms_tv(1000));
		redisReply *rep = redisCommand(c, "CLUSTER SLOTS");
		redisFree(c);
		if (!rep)
			continue;
		unsigned covered = 0;
		if (rep->type == REDIS_REPLY_ARRAY) {
			pthread_mutex_lock(&r->map_mu);
			covered = slots_from_reply(r, i, rep);
			pthread_mutex_unlock(&r->map_mu);
		}
		freeReplyObject(rep);
		if (covered == RM_SLOTS)
			return;
	}
}

int rm_connect_all(mf_remote *r, char *err, size_t errlen)
{
	/* One connection to a seed proves the server is there and loads the
	 * scripts (their SHAs are needed before any EVALSHA). */
	int e = -EIO;
	for (int i = 0; i < r->nnodes && e; i++) {
		rm_node *n = r->nodes[i];
		pthread_mutex_lock(&n->pool[0].mu);
		n->pool[0].c = rm_dial(r, n, r->opts.timeout_ms, err, errlen);
		if (n->pool[0].c)
			e = 0;
		pthread_mutex_unlock(&n->pool[0].mu);
	}
	if (e || !r->cluster)
		return e;
	rm_refresh_slots(r, true);
	pthread_mutex_lock(&r->map_mu);
	/* A slot nobody serves still points at node 0: CLUSTERDOWN there. */
	pthread_mutex_unlock(&r->map_mu);
	return 0;
}

int rm_masters(mf_remote *r, int *out, int max)
{
	bool seen[RM_MAX_NODES] = {0};
	int n = 0;
	pthread_mutex_lock(&r->map_mu);
	for (int s = 0; s < RM_SLOTS; s++)
		if (!seen[r->slots[s]] && n < max) {
			seen[r->slots[s]] = true;
			out[n++] = r->slots[s];
		}
	pthread_mutex_unlock(&r->map_mu);
	return n;
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ..." -> node index (added if new). */
static int redirect_target(mf_remote *r, const char *msg)
{
	const char *sp = strchr(msg, ' ');
	sp = sp ? strchr(sp + 1, ' ') : NULL;
	if (!sp)
		return -1;
	const char *hp = sp + 1;
	const char *colon = strrchr(hp, ':');
	if (!colon)
		return -1;
	int port = atoi(colon + 1);
	pthread_mutex_lock(&r->map_mu);
	int idx = node_find_add(r, hp, (size_t)(colon - hp), port);
	pthread_mutex_unlock(&r->map_mu);
	return idx;
}

static bool err_is(const redisReply *rep, const char *word)
{
	size_t n = strlen(word);
	return rep->type == REDIS_REPLY_ERROR && rep->len >= n && memcmp(rep->str, word, n) == 0 &&
	       (rep->len == n || rep->str[n] == ' ');
}

/* One attempt on one node: connect if needed, (ASKING), the command,
 * (WAIT).  1: sent and answered; 0: not sent (connect failed); -1: I/O
 * error after sending (outcome unknown). */
static int attempt(mf_remote *r, rm_node *n, bool asking, int flags, int argc, const char **argv,
                   const size_t *lens, unsigned ms_left, redisReply **reply, long long *acks)
{
	rm_conn *cn = &n->pool[atomic_fetch_add(&n->next, 1) % RM_POOL];
	pthread_mutex_lock(&cn->mu);
	if (!cn->c) {
		char err[256];
		cn->c = rm_dial(r, n, ms_left < 50 ? 50 : ms_left, err, sizeof err);
		if (!cn->c) {
			pthread_mutex_unlock(&cn->mu);
			mf_log_debug("remote: %s", err);
			return 0;
		}
		atomic_fetch_add(&r->n_reconnects, 1);
	}
	redisContext *c = cn->c;
	if (asking)
		redisAppendCommand(c, "ASKING");
	redisAppendCommandArgv(c, argc, argv, lens);
	if (flags & RM_WAIT)
		redisAppendCommand(c, "WAIT %u %u", r->opts.replicas, r->opts.timeout_ms / 2);
	int want = 1 + (asking ? 1 : 0) + ((flags & RM_WAIT) ? 1 : 0);
	redisReply *got[3] = {0};
	int ok = 1;
	for (int i = 0; i < want; i++)
		if (redisGetReply(c, (void **)&got[i]) != REDIS_OK) {
			mf_log_warn("remote %s:%d: %s", n->host, n->port, c->errstr);
			redisFree(c);
			cn->c = NULL;
			ok = -1;
			break;
		}
	pthread_mutex_unlock(&cn->mu);
	int at = asking ? 1 : 0;
	if (ok == 1) {
		*reply = got[at];
		got[at] = NULL;
		if ((flags & RM_WAIT) && acks)
			*acks = got[at + 1]->type == REDIS_REPLY_INTEGER ? got[at + 1]->integer : -1;
	}
	for (int i = 0; i < 3; i++)
		if (got[i])
			freeReplyObject(got[i]);
	return ok;
}

int rm_call(mf_remote *r, int slot, int node, int flags, int argc, const char **argv,
            const size_t *lens, redisReply **reply, long long *acks)
{
	int64_t deadline = rm_now_ns() + (int64_t)r->opts.timeout_ms * 1000000;
	bool asking = false;
	int ask_node = -1;
	*reply = NULL;
	for (;;) {
		pthread_mutex_lock(&r->map_mu);
		int idx = ask_node >= 0 ? ask_node : slot >= 0 ? r->slots[slot] : node;
		rm_node *n = r->nodes[idx];
		pthread_mutex_unlock(&r->map_mu);
		int64_t left = (deadline - rm_now_ns()) / 1000000;
		if (left <= 0)
			break;
		redisReply *rep = NULL;
		int a = attempt(r, n, asking, flags, argc, argv, lens, (unsigned)left, &rep, acks);
		asking = false;
		ask_node = -1;
		if (a < 0 && !(flags & RM_IDEMPOTENT))
			break; /* may have been applied: never resend a write */
		if (a <= 0) {
			rm_refresh_slots(r, false);
			backoff(50);
			continue;
		}
		if (slot >= 0 && (err_is(rep, "MOVED") || err_is(rep, "ASK"))) {
			bool ask = err_is(rep, "ASK");
			int to = redirect_target(r, rep->str);
			freeReplyObject(rep);
			atomic_fetch_add(&r->n_redirects, 1);
			if (to < 0)
				break;
			if (ask) {
				asking = true;
				ask_node = to;
			} else {
				pthread_mutex_lock(&r->map_mu);
				r->slots[slot] = (uint8_t)to;
				pthread_mutex_unlock(&r->map_mu);
				/* One MOVED usually means a resharding or failover:
				 * learn the whole map instead of one slot at a time. */
				rm_refresh_slots(r, false);
			}
			continue;
		}
		if (err_is(rep, "TRYAGAIN") || err_is(rep, "CLUSTERDOWN") || err_is(rep, "LOADING") ||
		    err_is(rep, "MASTERDOWN")) {
			/* Nothing was done: wait for the cluster to settle. */
			freeReplyObject(rep);
			rm_refresh_slots(r, false);
			backoff(50);
			continue;
		}
		*reply = rep;
		return 0;
	}
	atomic_fetch_add(&r->n_errors, 1);
	return -EIO;
}
