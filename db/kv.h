/*
 * kv.h — the keyspace interface the FUSE layer talks to.
 *
 * fs/ reaches the data only through an mf_kv: read a key (value and
 * attributes), list keys, stat a path and list a folder of the tree, check and commit an mf_op, sync, snapshot, and
 * the texts and counters of /.ctl.  The embedded database implements it
 * (mf_db_kv in db.h: store + WAL + snapshots); another backend (a remote
 * keyspace) can implement the same table.  No fs/ file includes wal/ or
 * snapshot/ headers.
 *
 * Contract of every implementation: commit is the only mutation; it returns
 * once the op is applied (visible to get) and acknowledged under the
 * backend's durability; check is advisory (commit re-checks).  All entries
 * may be called from any thread.  Errors: negative errno.
 */
#ifndef MF_KV_H
#define MF_KV_H

#include "../store/store.h"
#include "bpop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A commit in two steps (see commit_enqueue): storage the backend owns
 * between enqueue and wait; it must stay at its address until then. */
typedef struct mf_kv_ticket {
	_Alignas(max_align_t) unsigned char opaque[128];
} mf_kv_ticket;

typedef struct mf_kv_ops {
	int (*get)(void *impl, const void *key, size_t klen, bool want_value, mf_entry_info *out);
	size_t (*keys)(void *impl, mf_type type, mf_slice **keys);
	/* The tree (store.h): a path's attributes, a folder's children. */
	int (*stat)(void *impl, const void *path, size_t len, mf_entry_info *out);
	int (*list)(void *impl, const void *path, size_t len, mf_dirent **out, size_t *n);
	int (*check)(void *impl, const mf_op *op);
	int (*commit)(void *impl, mf_op *op);
	/* commit = enqueue + wait.  Order = enqueue order: when enqueue returns
	 * 0 the op's place is fixed (every op enqueued before it is applied
	 * before it), so a caller may drop its own ordering lock then instead
	 * of holding it across the log write.  After a 0, wait exactly once;
	 * it returns what commit would. */
	int (*commit_enqueue)(void *impl, mf_op *op, mf_kv_ticket *t);
	int (*commit_wait)(void *impl, mf_kv_ticket *t);
	int (*sync)(void *impl);
	int (*snapshot)(void *impl);
	char *(*stats_text)(void *impl);    /* malloc'd */
	char *(*snapshot_text)(void *impl); /* malloc'd */
	void (*stats)(void *impl, mf_store_stats *out);
	uint64_t (*memory)(void *impl, uint64_t *limit);
	void (*count_read)(void *impl, bool hit);
	void (*handles_add)(void *impl, int delta);
	/* Blocking pop (db.h: mf_db_bpop, without the change hook). */
	int (*bpop)(void *impl, const mf_slice *keys, size_t nkeys, bool left, int64_t timeout_ns,
	            mf_bpop_waiter *w, mf_op *out, size_t *which);
	void (*bpop_cancel)(void *impl, mf_bpop_waiter *w);
} mf_kv_ops;

typedef struct mf_kv {
	const mf_kv_ops *ops;
	void *impl;
} mf_kv;

static inline int mf_kv_get(const mf_kv *kv, const void *key, size_t klen, bool want_value,
                            mf_entry_info *out)
{
	return kv->ops->get(kv->impl, key, klen, want_value, out);
}
static inline size_t mf_kv_keys(const mf_kv *kv, mf_type type, mf_slice **keys)
{
	return kv->ops->keys(kv->impl, type, keys);
}
static inline int mf_kv_stat(const mf_kv *kv, const void *path, size_t len, mf_entry_info *out)
{
	return kv->ops->stat(kv->impl, path, len, out);
}
static inline int mf_kv_list(const mf_kv *kv, const void *path, size_t len, mf_dirent **out,
                             size_t *n)
{
	return kv->ops->list(kv->impl, path, len, out, n);
}
static inline int mf_kv_check(const mf_kv *kv, const mf_op *op)
{
	return kv->ops->check(kv->impl, op);
}
static inline int mf_kv_commit(const mf_kv *kv, mf_op *op)
{
	return kv->ops->commit(kv->impl, op);
}
static inline int mf_kv_commit_enqueue(const mf_kv *kv, mf_op *op, mf_kv_ticket *t)
{
	return kv->ops->commit_enqueue(kv->impl, op, t);
}
static inline int mf_kv_commit_wait(const mf_kv *kv, mf_kv_ticket *t)
{
	return kv->ops->commit_wait(kv->impl, t);
}
static inline int mf_kv_sync(const mf_kv *kv)
{
	return kv->ops->sync(kv->impl);
}
static inline int mf_kv_snapshot(const mf_kv *kv)
{
	return kv->ops->snapshot(kv->impl);
}
static inline char *mf_kv_stats_text(const mf_kv *kv)
{
	return kv->ops->stats_text(kv->impl);
}
static inline char *mf_kv_snapshot_text(const mf_kv *kv)
{
	return kv->ops->snapshot_text(kv->impl);
}
static inline void mf_kv_stats(const mf_kv *kv, mf_store_stats *out)
{
	kv->ops->stats(kv->impl, out);
}
static inline uint64_t mf_kv_memory(const mf_kv *kv, uint64_t *limit)
{
	return kv->ops->memory(kv->impl, limit);
}
static inline void mf_kv_count_read(const mf_kv *kv, bool hit)
{
	kv->ops->count_read(kv->impl, hit);
}
static inline void mf_kv_handles_add(const mf_kv *kv, int delta)
{
	kv->ops->handles_add(kv->impl, delta);
}

static inline int mf_kv_bpop(const mf_kv *kv, const mf_slice *keys, size_t nkeys, bool left,
                             int64_t timeout_ns, mf_bpop_waiter *w, mf_op *out, size_t *which)
{
	return kv->ops->bpop(kv->impl, keys, nkeys, left, timeout_ns, w, out, which);
}
static inline void mf_kv_bpop_cancel(const mf_kv *kv, mf_bpop_waiter *w)
{
	kv->ops->bpop_cancel(kv->impl, w);
}

/* Current time in ns (CLOCK_REALTIME), for op->time_ns. */
int64_t mf_now_ns(void);

#endif
