/*
 * expire.h — the active expire cycle: deletes keys past their expiry that
 * nobody reads (readers and ops already treat them as absent: store.h).
 *
 * Like Redis's: every 100 ms it samples keys with an expiry (the store
 * rotates through them: mf_store_expired_sample looks at no more than 4 x 20
 * per round), logs one EXPIRED record per key found due (a group commit for
 * the round) and tells the kernel's caches through the db change hook, so
 * the names leave the mount.  It repeats while a round finds a quarter or
 * more due and the tick has used under 25 ms: bounded work per tick.
 * Logged so that a restart with a clock set back cannot bring a deleted key
 * back.
 *
 * Locking: mu guards stop; the cycle holds no lock while it commits.
 */
#ifndef MF_EXPIRE_H
#define MF_EXPIRE_H

#include <pthread.h>
#include <stdbool.h>

struct mf_db;

typedef struct mf_expire {
	struct mf_db *db;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;  /* CLOCK_MONOTONIC */
	bool stop;
	bool running;
} mf_expire;

/* 0 or -errno (thread creation). */
int mf_expire_start(mf_expire *x, struct mf_db *db);
void mf_expire_stop(mf_expire *x);

#endif
