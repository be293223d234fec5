/*
 * server.c — RESP connections and threads (see resp.h for the contract).
 *
 * Flow: the loop thread reads a client's bytes into its hiredis reader and
 * takes out complete requests.  If the client has nothing queued and the
 * request is read-only, it runs right there (no hand-off, the common GET
 * case); otherwise it is queued on the client and the client is put on the
 * run queue, from which one worker at a time runs that client's requests in
 * order and writes the replies to its bufferevent (thread-safe mode).
 *
 * Lifetime: a conn is referenced by the loop (until its socket is closed)
 * and by the run queue / its worker (while scheduled).  The conn holds its
 * own reference on its bufferevent (bufferevent_incref at accept, dropped
 * when the conn is freed), so the loop may close a client whose worker is
 * still committing: that worker's replies then go nowhere (the socket's
 * events are cancelled), its commits still happen (acknowledged to no one,
 * like any request whose client went away).
 *
 * Lock order: a bufferevent's lock (held by libevent around our callbacks)
 * before c->mu before srv->mu.  So a worker never calls into a bufferevent
 * while holding c->mu.
 */
#include "resp_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Stop reading a client with this many requests queued (pipelining with
 * a slow WAL): the kernel's socket buffer then pushes back on the client. */
#define QUEUE_MAX 4096

/* ---------- reply buffer ---------- */

void rb_put(rbuf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		b->p = mf_xrealloc(b->p, cap);
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

void rb_fmt(rbuf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n < sizeof tmp) {
		rb_put(b, tmp, (size_t)n);
		return;
	}
	char *big = mf_xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(big, (size_t)n + 1, fmt, ap);
	va_end(ap);
	rb_put(b, big, (size_t)n);
	free(big);
}

/* ---------- addresses ---------- */

typedef struct addr {
	struct sockaddr_storage ss;
	socklen_t len;
	bool unix_sock;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} addr;

static int parse_addr(const char *s, addr *a, char *err, size_t errlen)
{
	memset(a, 0, sizeof *a);
	if (strncmp(s, "unix:", 5) == 0) {
		const char *p = s + 5;
		struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
		/* Absolute: the daemon chdirs to / after start-up, and removes
		 * the socket at exit. */
		char abs[4096 + sizeof un->sun_path + 2] = "";
		char cwd[4096];
		if (*p && *p != '/' && getcwd(cwd, sizeof cwd))
			snprintf(abs, sizeof abs, "%s/%s", cwd, p);
		else
			snprintf(abs, sizeof abs, "%s", p);
		if (!*p || strlen(abs) >= sizeof un->sun_path) {
			snprintf(err, errlen, "--resp=%s: bad unix socket path (empty or too long)", s);
			return -1;
		}
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, abs);
		strcpy(a->path, abs);
		a->len = sizeof *un;
		a->unix_sock = true;
		return 0;
	}
	char host[256];
	const char *port;
	if (s[0] == '[') {
		const char *e = strchr(s, ']');
		if (!e || e[1] != ':' || (size_t)(e - s - 1) >= sizeof host) {
			snprintf(err, errlen, "--resp=%s: expected [IPV6]:PORT", s);
			return -1;
		}
		memcpy(host, s + 1, (size_t)(e - s - 1));
		host[e - s - 1] = '\0';
		port = e + 2;
	} else {
		const char *c = strrchr(s, ':');
		if (!c || c == s || (size_t)(c - s) >= sizeof host) {
			snprintf(err, errlen, "--resp=%s: expected HOST:PORT, [IPV6]:PORT or unix:PATH", s);
			return -1;
		}
		memcpy(host, s, (size_t)(c - s));
		host[c - s] = '\0';
		port = c + 1;
	}
	char *end;
	long pn = strtol(port, &end, 10);
	if (!*port || *end || pn < 1 || pn > 65535) {
		snprintf(err, errlen, "--resp=%s: bad port", s);
		return -1;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
	int r = getaddrinfo(host, port, &hints, &res);
	if (r) {
		snprintf(err, errlen, "--resp=%s: %s", s, gai_strerror(r));
		return -1;
	}
	memcpy(&a->ss, res->ai_addr, res->ai_addrlen);
	a->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

static bool is_loopback(const addr *a)
{
	if (a->unix_sock)
		return true;
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&a->ss;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
		return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	}
	return false;
}

/* The password: the file's first line (without its newline). */
static char *read_password(const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	if (!f) {
		snprintf(err, errlen, "--resp-password-file=%s: %s", path, strerror(errno));
		return NULL;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	fclose(f);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n <= 0) {
		free(line);
		snprintf(err, errlen, "--resp-password-file=%s: empty password", path);
		return NULL;
	}
	return line;
}

int mf_resp_check_opts(const mf_resp_opts *o, char *err, size_t errlen)
{
	addr a;
	if (parse_addr(o->addr, &a, err, errlen) != 0)
		return -1;
	if (o->password_file) {
		char *pw = read_password(o->password_file, err, errlen);
		if (!pw)
			return -1;
		free(pw);
	} else if (!is_loopback(&a)) {
		snprintf(err, errlen, "--resp=%s: not a loopback address; serving other hosts "
		         "needs --resp-password-file", o->addr);
		return -1;
	}
	return 0;
}

/* ---------- connections ---------- */

typedef struct conn {
	struct mf_resp *srv;
	struct bufferevent *bev;  /* fixed from accept until the conn is freed */
	bool closed;              /* socket closed (loop thread) */
	redisReader *rd;          /* loop thread only */
	pthread_mutex_t mu;
	req *qhead, *qtail;       /* queued requests (mu) */
	size_t qlen;
	bool scheduled;           /* on the run queue or running (mu) */
	bool paused;              /* reading disabled: queue full (mu) */
	bool closing;             /* QUIT: close when the output is flushed (mu) */
	atomic_int refs;
	client cl;                /* used by whoever runs its requests: one at a time */
	struct conn *rnext;       /* run queue (srv->mu) */
	struct conn *prev, *next; /* every open conn (loop thread) */
} conn;

struct mf_resp {
	resp_ctx x;
	struct event_base *base;
	struct evconnlistener *lis;
	char unix_path[108];
	pthread_t loop_thread;
	pthread_t workers[MF_RESP_WORKERS];
	int nworkers;
	pthread_mutex_t mu;       /* run queue */
	pthread_cond_t cv;
	conn *rq_head, *rq_tail;
	bool stop;
	conn *conns;              /* loop thread */
	bool inline_writes;       /* mf_resp_opts.inline_writes */
	atomic_uint_fast64_t next_id;
};

void req_free(req *r)
{
	freeReplyObject(r->reply);
	free(r->argv);
	free(r->argl);
	free(r);
}

static void conn_unref(conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	while (c->qhead) {
		req *r = c->qhead;
		c->qhead = r->next;
		req_free(r);
	}
	pthread_mutex_destroy(&c->mu);
	bufferevent_decref(c->bev); /* the conn's own reference */
	cmd_client_free(&c->cl);
	free(c->cl.name);
	free(c->cl.out.p);
	free(c->cl.b); /* always flushed (empty) by whoever ran the client */
	free(c);
}

/* Loop thread: close the socket; a worker may still hold the conn. */
static void conn_close(conn *c)
{
	mf_resp *s = c->srv;
	if (c->closed)
		return;
	c->closed = true;
	/* A BLPOP/BRPOP of this client waiting now (or later: the flag
	 * stays) leaves without popping: nobody would get the element. */
	mf_db_bpop_cancel(s->x.db, &c->cl.bw);
	bufferevent_free(c->bev); /* callbacks off, events cancelled */
	redisReaderFree(c->rd);
	c->rd = NULL;
	atomic_fetch_sub(&s->x.nclients, 1);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	conn_unref(c);
}

static void schedule(mf_resp *s, conn *c)
{
	atomic_fetch_add(&c->refs, 1);
	pthread_mutex_lock(&s->mu);
	c->rnext = NULL;
	if (s->rq_tail)
		s->rq_tail->rnext = c;
	else
		s->rq_head = c;
	s->rq_tail = c;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

/* A parsed reply -> a request; NULL if it is not an array of strings. */
static req *make_req(redisReply *rep)
{
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements == 0)
		return NULL;
	for (size_t i = 0; i < rep->elements; i++)
		if (rep->element[i]->type != REDIS_REPLY_STRING)
			return NULL;
	req *r = mf_xmalloc(sizeof *r);
	r->reply = rep;
	r->argc = (int)rep->elements;
	r->argv = mf_xmalloc(rep->elements * sizeof *r->argv);
	r->argl = mf_xmalloc(rep->elements * sizeof *r->argl);
	for (size_t i = 0; i < rep->elements; i++) {
		r->argv[i] = rep->element[i]->str;
		r->argl[i] = rep->element[i]->len;
	}
	r->next = NULL;
	return r;
}

static void protocol_error(conn *c, const char *msg)
{
	char line[256];
	int n = snprintf(line, sizeof line, "-ERR Protocol error: %s\r\n", msg);
	bufferevent_write(c->bev, line, (size_t)n);
	pthread_mutex_lock(&c->mu);
	c->closing = true;
	pthread_mutex_unlock(&c->mu);
}

/* Loop thread: finish the client's inline batch and send its replies.
 * Only while the loop owns c->cl (*mine: it ran something inline and has
 * not queued anything since), as a worker may be running the client. */
static void loop_flush(mf_resp *s, conn *c, bool *mine)
{
	if (!*mine)
		return;
	*mine = false;
	cmd_flush(&s->x, &c->cl);
	if (c->cl.out.len)
		bufferevent_write(c->bev, c->cl.out.p, c->cl.out.len);
	c->cl.out.len = 0;
}

static void on_read(struct bufferevent *bev, void *arg)
{
	conn *c = arg;
	mf_resp *s = c->srv;
	struct evbuffer *in = bufferevent_get_input(bev);
	/* Feed every contiguous chunk without copying into one block. */
	size_t n = evbuffer_get_length(in);
	while (n > 0) {
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		if (redisReaderFeed(c->rd, v.iov_base, v.iov_len) != REDIS_OK)
			break;
		evbuffer_drain(in, v.iov_len);
		n -= v.iov_len;
	}
	pthread_mutex_lock(&c->mu);
	bool closing = c->closing;
	pthread_mutex_unlock(&c->mu);
	bool mine = false;
	/* The client is put on the run queue once everything read so far is
	 * queued: a worker that started on the first request of a pipeline
	 * would commit it alone and the rest in a second WAL group. */
	bool sched = false;
	while (!closing) {
		void *rep = NULL;
		if (redisReaderGetReply(c->rd, &rep) != REDIS_OK) {
			loop_flush(s, c, &mine);
			protocol_error(c, c->rd->errstr[0] ? c->rd->errstr : "invalid request");
			break;
		}
		if (!rep)
			break;
		req *r = make_req(rep);
		if (!r) {
			freeReplyObject(rep);
			loop_flush(s, c, &mine);
			protocol_error(c, "expected an array of bulk strings");
			break;
		}
		pthread_mutex_lock(&c->mu);
		bool idle = !c->scheduled && !c->qhead;
		pthread_mutex_unlock(&c->mu);
		if (idle && (cmd_is_readonly(r) || (s->inline_writes && cmd_is_keyed(r)))) {
			/* Nothing of this client is queued or running: run it here,
			 * in order, without waking a worker; pipelined writes of
			 * this read are batched (cmd_defer), replies go out once. */
			mine = true;
			if (!s->inline_writes || !cmd_defer(&s->x, &c->cl, r)) {
				cmd_flush(&s->x, &c->cl);
				cmd_run(&s->x, &c->cl, r);
				req_free(r);
			}
			continue;
		}
		/* Handing over to a worker: what ran here goes out first. */
		loop_flush(s, c, &mine);
		pthread_mutex_lock(&c->mu);
		if (c->qtail)
			c->qtail->next = r;
		else
			c->qhead = r;
		c->qtail = r;
		c->qlen++;
		sched |= !c->scheduled;
		c->scheduled = true;
		if (c->qlen >= QUEUE_MAX && !c->paused) {
			c->paused = true;
			bufferevent_disable(bev, EV_READ);
		}
		pthread_mutex_unlock(&c->mu);
	}
	loop_flush(s, c, &mine);
	if (sched)
		schedule(s, c);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	conn *c = arg;
	pthread_mutex_lock(&c->mu);
	bool closing = c->closing && !c->scheduled;
	pthread_mutex_unlock(&c->mu);
	if (closing && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		conn_close(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_close(arg);
}

static void on_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
	(void)lis;
	(void)salen;
	mf_resp *s = arg;
	if (sa->sa_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	conn *c = calloc(1, sizeof *c);
	if (!c) {
		close(fd);
		return;
	}
	c->srv = s;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_THREADSAFE);
	c->rd = redisReaderCreate();
	if (!c->bev || !c->rd) {
		if (c->bev)
			bufferevent_free(c->bev);
		else
			close(fd);
		if (c->rd)
			redisReaderFree(c->rd);
		free(c);
		return;
	}
	/* (The reader's maxbuf, 16 KiB by default, is only the size above
	 * which an emptied buffer is freed: a client that once sent a big
	 * value does not keep that much memory.  Requests are not capped.) */
	bufferevent_incref(c->bev); /* the conn's own: see "Lifetime" */
	pthread_mutex_init(&c->mu, NULL);
	atomic_init(&c->refs, 1);
	c->cl.id = atomic_fetch_add(&s->next_id, 1) + 1;
	c->cl.proto = 2;
	c->cl.authed = s->x.password == NULL;
	atomic_fetch_add(&s->x.nclients, 1);
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---------- workers ---------- */

static void run_conn(mf_resp *s, conn *c)
{
	struct bufferevent *bev = c->bev;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		req *list = c->qhead;
		c->qhead = c->qtail = NULL;
		c->qlen = 0;
		bool resume = c->paused;
		c->paused = false;
		if (!list) {
			c->scheduled = false;
			bool closing = c->closing;
			pthread_mutex_unlock(&c->mu);
			/* QUIT: the loop closes once the output is flushed; poke
			 * its write callback in case that already happened. */
			if (closing)
				bufferevent_trigger(bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
			break;
		}
		pthread_mutex_unlock(&c->mu);
		if (resume)
			bufferevent_enable(bev, EV_READ);
		while (list) {
			req *r = list;
			list = r->next;
			/* Pipelined writes are queued in the WAL together and waited
			 * for at the next command that is not one of them (or the
			 * end of what the client sent): one WAL write / fsync for the
			 * lot instead of one per command. */
			if (!c->cl.quit && cmd_defer(&s->x, &c->cl, r))
				continue;
			cmd_flush(&s->x, &c->cl);
			if (!c->cl.quit)
				cmd_run(&s->x, &c->cl, r);
			req_free(r);
			if (c->cl.quit) {
				pthread_mutex_lock(&c->mu);
				c->closing = true;
				pthread_mutex_unlock(&c->mu);
			}
			/* Replies go out once per batch of requests, or every 64 KiB
			 * so a long pipeline's replies flow while later requests
			 * wait for the WAL. */
			if (c->cl.out.len > 65536) {
				bufferevent_write(bev, c->cl.out.p, c->cl.out.len);
				c->cl.out.len = 0;
			}
		}
		cmd_flush(&s->x, &c->cl);
		if (c->cl.out.len)
			bufferevent_write(bev, c->cl.out.p, c->cl.out.len);
		c->cl.out.len = 0;
	}
	conn_unref(c);
}

static void *worker_main(void *arg)
{
	mf_resp *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->stop && !s->rq_head)
			pthread_cond_wait(&s->cv, &s->mu);
		conn *c = s->rq_head;
		if (!c)
			break; /* stopping with nothing queued */
		s->rq_head = c->rnext;
		if (!s->rq_head)
			s->rq_tail = NULL;
		pthread_mutex_unlock(&s->mu);
		run_conn(s, c);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

/* Tell the workers to stop (each finishes what it runs and what is
 * queued) and wait for them. */
static void workers_stop(mf_resp *s)
{
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	for (int i = 0; i < s->nworkers; i++)
		pthread_join(s->workers[i], NULL);
}

static void *loop_main(void *arg)
{
	mf_resp *s = arg;
	event_base_dispatch(s->base);
	/* Stopping: close every client; workers finish what they run. */
	evconnlistener_free(s->lis);
	s->lis = NULL;
	while (s->conns)
		conn_close(s->conns);
	return NULL;
}

mf_resp *mf_resp_start(mf_db *db, const mf_resp_opts *o, char *err, size_t errlen)
{
	if (mf_resp_check_opts(o, err, errlen) != 0)
		return NULL;
	addr a;
	parse_addr(o->addr, &a, err, errlen);
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, (void (*)(void))evthread_use_pthreads);
	mf_resp *s = calloc(1, sizeof *s);
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->x.db = db;
	s->inline_writes = o->inline_writes;
	s->x.st = mf_db_store(db);
	s->x.start_ns = mf_now_ns();
	for (int i = 0; i < MF_RESP_STRIPES; i++)
		pthread_rwlock_init(&s->x.stripes[i], NULL);
	pthread_mutex_init(&s->x.save_mu, NULL);
	pthread_cond_init(&s->x.save_cv, NULL);
	if (o->password_file && !(s->x.password = read_password(o->password_file, err, errlen)))
		goto fail;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->base = event_base_new();
	if (!s->base) {
		snprintf(err, errlen, "--resp: cannot create event loop");
		goto fail;
	}
	if (a.unix_sock) {
		/* A stale socket from a crashed daemon would make bind fail;
		 * anything that is not a socket is left alone (bind then fails). */
		struct stat sb;
		if (lstat(a.path, &sb) == 0 && S_ISSOCK(sb.st_mode))
			unlink(a.path);
		snprintf(s->unix_path, sizeof s->unix_path, "%s", a.path);
	}
	s->lis = evconnlistener_new_bind(s->base, on_accept, s,
	                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                 LEV_OPT_CLOSE_ON_EXEC,
	                                 511, (struct sockaddr *)&a.ss, (int)a.len);
	if (!s->lis) {
		snprintf(err, errlen, "--resp=%s: cannot listen: %s", o->addr, strerror(errno));
		s->unix_path[0] = '\0';
		goto fail;
	}
	if (a.unix_sock)
		chmod(a.path, 0600); /* the mount's owner only, like the mount itself */
	for (; s->nworkers < MF_RESP_WORKERS; s->nworkers++)
		if (pthread_create(&s->workers[s->nworkers], NULL, worker_main, s) != 0)
			break;
	if (s->nworkers == 0 || pthread_create(&s->loop_thread, NULL, loop_main, s) != 0) {
		snprintf(err, errlen, "--resp: cannot start threads");
		workers_stop(s);
		goto fail;
	}
	fprintf(stderr, "memfluxfs: RESP server on %s (%s)\n", o->addr,
	        s->x.password ? "AUTH required" : "no password");
	return s;
fail:
	if (s->lis)
		evconnlistener_free(s->lis);
	if (s->base)
		event_base_free(s->base);
	free(s->x.password);
	free(s);
	return NULL;
}

void mf_resp_stop(mf_resp *s)
{
	if (!s)
		return;
	event_base_loopexit(s->base, NULL);
	pthread_join(s->loop_thread, NULL);
	workers_stop(s);
	/* A BGSAVE thread still running holds the db: wait for it. */
	pthread_mutex_lock(&s->x.save_mu);
	while (s->x.bgsave_running)
		pthread_cond_wait(&s->x.save_cv, &s->x.save_mu);
	pthread_mutex_unlock(&s->x.save_mu);
	event_base_free(s->base);
	if (s->unix_path[0])
		unlink(s->unix_path);
	free(s->x.password);
	free(s);
}
