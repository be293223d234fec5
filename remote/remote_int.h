/*
 * remote_int.h — internals of the remote backend, shared by its files.
 *
 * Files (one job each):
 *   conn.c    URLs, nodes, pooled connections, the slot map, one routed
 *             round trip (rm_call: deadlines, MOVED/ASK, reconnects)
 *   slot.c    CRC16 key slots and the per-slot meta hash names
 *   kv.c      the mf_kv table: get, keys, check, commit (Lua scripts)
 *   track.c   the invalidation thread (CLIENT TRACKING BCAST subscribers)
 *   bpop.c    blocking pops (BLPOP on a connection of their own)
 *
 * Lock order: a connection's mutex, then map_mu (conn.c takes map_mu while
 * holding a connection only to read or update the map); track.c's sub
 * connections are its thread's own, unlocked.
 */
#ifndef MF_REMOTE_INT_H
#define MF_REMOTE_INT_H

#include "remote.h"

#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define RM_SLOTS 16384
#define RM_POOL 4          /* connections per node: FUSE runs up to ~10 workers */
#define RM_MAX_NODES 64
#define RM_TAG_MAX 4       /* slot tags are at most 3 chars + NUL */

typedef struct rm_conn {
	pthread_mutex_t mu;    /* held across one round trip on c */
	redisContext *c;       /* NULL: not connected (reconnect on next use) */
} rm_conn;

typedef struct rm_node {
	char *host;
	int port;
	rm_conn pool[RM_POOL];
	atomic_uint next;      /* round robin over the pool */
} rm_node;

/* A blocking pop waiting now (bpop.c): its connection's CLIENT ID on which
 * node, so that a cancel can CLIENT UNBLOCK it. */
typedef struct rm_bwait {
	mf_bpop_waiter *w;
	long long cid;
	int node;
	struct rm_bwait *next;
} rm_bwait;

enum { RM_SCRIPT_GET, RM_SCRIPT_APPLY, RM_SCRIPT_CAS, RM_NSCRIPTS };

struct mf_remote {
	mf_remote_opts opts;
	bool cluster;
	int db;                          /* SELECT db (single server only) */
	int64_t start_ns;                /* mtime of keys without a meta field */
	pthread_mutex_t map_mu;          /* slots[], nodes[], nnodes, last_refresh */
	rm_node *nodes[RM_MAX_NODES];    /* only grows */
	int nnodes;
	uint8_t slots[RM_SLOTS];         /* node index serving each slot */
	int64_t last_refresh_ns;
	char sha[RM_NSCRIPTS][41];       /* set at open, same on every server */
	/* change hook (track.c) */
	pthread_mutex_t hook_mu;
	mf_remote_change_fn hook;
	void *hook_ctx;
	pthread_t track_thread;
	bool track_started;
	int stop_pipe[2];
	/* blocking pops waiting now (bpop.c), for cancellation */
	pthread_mutex_t bpop_mu;         /* the list and every waiter's `cancelled` */
	rm_bwait *bwaits;
	/* figures for /.ctl/stats */
	atomic_uint_fast64_t n_reads, n_writes, n_errors, n_reconnects, n_invalidations,
		n_redirects, n_wait_short, n_handles, n_read_hits, n_read_misses;
};

/* slot.c */
unsigned rm_slot(const void *key, size_t len);

/* conn.c */
int rm_parse_url(mf_remote *r, const char *url, char *err, size_t errlen);
int rm_connect_all(mf_remote *r, char *err, size_t errlen);
void rm_free_nodes(mf_remote *r);
int64_t rm_now_ns(void);
redisContext *rm_dial(mf_remote *r, rm_node *n, unsigned timeout_ms, char *err, size_t errlen);

/* One routed round trip.  slot: the keys' slot, or -1 for node `node`.
 * flags: RM_IDEMPOTENT (safe to resend after an I/O error), RM_WAIT (follow
 * with WAIT opts.replicas; *acks gets its answer).  *reply: the command's
 * reply (an error reply too, other than MOVED/ASK/TRYAGAIN/CLUSTERDOWN);
 * caller frees.  0 or -EIO. */
#define RM_IDEMPOTENT 1
#define RM_WAIT 2
int rm_call(mf_remote *r, int slot, int node, int flags, int argc, const char **argv,
            const size_t *lens, redisReply **reply, long long *acks);
/* The distinct nodes serving slots now (cluster masters; or the one
 * server), as indexes into nodes[]; returns the count. */
int rm_masters(mf_remote *r, int *out, int max);
/* Re-read the cluster slot map (rate-limited unless force). */
void rm_refresh_slots(mf_remote *r, bool force);

/* track.c */
int rm_track_start(mf_remote *r, char *err, size_t errlen);
void rm_track_stop(mf_remote *r);
void rm_notify(mf_remote *r, int ktype, const void *key, size_t klen);

/* kv.c / scripts.c */
extern const char *const rm_scripts[RM_NSCRIPTS];
int rm_commit(void *impl, mf_op *op);

/* bpop.c: the mf_kv bpop entries (db/kv.h, db.h mf_db_bpop) */
int rm_bpop(void *impl, const mf_slice *keys, size_t nkeys, bool left, int64_t timeout_ns,
            mf_bpop_waiter *w, mf_op *out, size_t *which);
void rm_bpop_cancel(void *impl, mf_bpop_waiter *w);

#endif
