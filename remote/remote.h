/*
 * remote.h — a remote keyspace (Redis, Redis Cluster, or another memfluxfs
 * speaking RESP) as an mf_kv, the interface fs/ talks to (db/kv.h).
 *
 * `memfluxfs --store=redis://HOST:PORT[/DB]` or
 * `--store=redis+cluster://H1:P1,H2:P2,...` mounts that keyspace instead of
 * the embedded store.  Nothing is kept here that is not a cache: no WAL, no
 * snapshot; durability is the server's (README "Many machines").
 *
 * Owns: the connections (a small pool per server node), the cluster slot
 * map, the Lua scripts loaded on every connection, and one invalidation
 * thread with one subscriber connection per node.
 *
 * Mapping (one Redis key per memfluxfs key, so redis-cli sees plain data):
 *   /kv/K     Redis string K
 *   /json/K   Redis string K holding the JSON text (validated here, as the
 *             embedded store does, before it is sent)
 *   /lists/K  Redis list K, one element per line
 *   /sets/K   Redis set K, one member per line (SADD, SREM; SMEMBERS order)
 *   /.ctl/incr INCRBY, /.ctl/expire PEXPIREAT/PERSIST/PEXPIRETIME,
 *   /.ctl/bpop BLPOP on a connection of its own (bpop.c)
 * Which strings are JSON documents, and every key's mtime, live in a small
 * hash per cluster slot, "__mf:{TAG}" (TAG: a short string hashing to that
 * slot, so the hash and the key are always in one slot and one script
 * updates both atomically, in a cluster too).  Field K = kind letter
 * (s, j, l, S) + mtime in ns [+ 'x' + expiry in ms].  An empty list or
 * set, which Redis cannot hold, is a field "l..."/"S..." without a key (one
 * marked with an expiry is a key Redis expired: absent).  A key some other client made has no field:
 * /kv or /lists by its Redis type, mtime = the mount's start.
 *
 * Every commit is one Lua script run on the key's node (EVALSHA): type
 * checks, the one whole-value command (SET, APPEND, SETRANGE, RPUSH, LPOP,
 * RENAME, DEL...) and the mtime stamp, atomically.  With replicas > 0 the
 * script is followed on the same connection by WAIT replicas; fewer acks
 * fail the commit with -EIO and a log line (the write may still be on the
 * master: Redis cannot take it back).
 *
 * Coherence: each subscriber connection runs CLIENT TRACKING on BCAST
 * redirected to itself and SUBSCRIBE __redis__:invalidate (RESP2, hiredis
 * 0.14); each key name the server reports changed, by anyone, is passed to
 * the change hook (main.c: mf_fs_key_changed), and after a (re)connect the
 * hook is called for every key (messages may have been lost).
 *
 * Failures: every round trip has a deadline (opts.timeout_ms).  A server
 * that is down or silent makes the operation fail with -EIO by then; the
 * connection is dropped and the next operation reconnects.  Reads are
 * retried until the deadline (cluster: the slot map is refreshed, so a
 * failover is followed); a write is retried only when it was certainly not
 * sent (connect failed, MOVED, ASK, TRYAGAIN, CLUSTERDOWN), never after an
 * I/O error mid-command (it may have been applied: -EIO).
 *
 * Cluster: slot map from CLUSTER SLOTS, keys hashed with CRC16 and hash
 * tags, MOVED updates the map, ASK is followed once with ASKING.  RENAME
 * between keys of different slots is -EXDEV (mv then copies and deletes).
 *
 * Locking: one mutex per pooled connection (held across its round trip);
 * map_mu guards the slot map and the node list, which only grows (a node is
 * never freed before mf_remote_close), so a node pointer read under it
 * stays valid.  No lock is held while the change hook runs.
 *
 * Not mapped (-EOPNOTSUPP): the ops only the embedded store's RESP face
 * logs (INCRBYFLOAT, SMOVE, JSON number/array/string edits, MULTI).
 *
 * Errors: negative errno (EIO: server unreachable, timed out, or fewer
 * replica acks; the script's own refusals map to the embedded store's:
 * ENOENT, EEXIST, EINVAL, ENODATA, ENOTEMPTY, EFBIG).
 */
#ifndef MF_REMOTE_H
#define MF_REMOTE_H

#include "../db/kv.h"

#include <stddef.h>

typedef struct mf_remote_opts {
	const char *url;          /* redis://HOST:PORT[/DB], redis+cluster://H:P,... */
	unsigned replicas;        /* WAIT for this many replica acks per commit */
	unsigned timeout_ms;      /* deadline of one operation (0: 5000) */
} mf_remote_opts;

typedef struct mf_remote mf_remote;

/* Check a --store URL without connecting: 0, or -EINVAL with a message. */
int mf_remote_check_url(const char *url, char *err, size_t errlen);

/* Connect (every seed must not be down: a cluster needs one that answers),
 * load the scripts, start the invalidation thread.  NULL with a message. */
mf_remote *mf_remote_open(const mf_remote_opts *opts, char *err, size_t errlen);
void mf_remote_close(mf_remote *r);

mf_kv mf_remote_kv(mf_remote *r);

/* Called from the invalidation thread once per changed key (ktype is
 * MF_T_STRING, MF_T_JSON and MF_T_LIST in turn: the message does not say
 * which) and with MF_T_NONE, key NULL, for "everything".  Set once, before
 * or after open; a NULL fn stops the calls (before the mount goes away). */
typedef void (*mf_remote_change_fn)(void *ctx, int ktype, const void *key, size_t klen);
void mf_remote_set_change_hook(mf_remote *r, mf_remote_change_fn fn, void *ctx);

/* The server's CRC16 key slot (hash tags respected), for tests. */
unsigned mf_remote_key_slot(const void *key, size_t len);

/* The meta hash holding key's kind and mtime: "__mf:{TAG}", TAG hashing to
 * key's slot; NUL-terminated into buf (>= 16 bytes); returns its length.
 * The field is the key, the value a kind letter (s: /kv, j: /json, l:
 * /lists) followed by the mtime in ns as decimal digits: the format
 * memflux-check --export writes too. */
size_t mf_remote_meta_key(const void *key, size_t len, char *buf);

#endif
