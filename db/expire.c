/*
 * expire.c — the active expire cycle (expire.h).
 */
#include "expire.h"
#include "db.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#define ROUND_KEYS 20
#define TICK_MS 100
#define BUSY_MS 25

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One round: log EXPIRED for up to ROUND_KEYS due keys.  Returns how many
 * were due. */
static size_t round_once(mf_db *db)
{
	mf_slice keys[ROUND_KEYS];
	size_t n = mf_store_expired_sample(mf_db_store(db), mf_now_ns(), keys, ROUND_KEYS);
	mf_op ops[ROUND_KEYS];
	mf_db_ticket t[ROUND_KEYS];
	int rc[ROUND_KEYS];
	for (size_t i = 0; i < n; i++) {
		memset(&ops[i], 0, sizeof ops[i]);
		ops[i].type = MF_OP_EXPIRED;
		ops[i].key = keys[i];
		/* Enqueued together: one WAL batch (one fsync) for the round. */
		rc[i] = mf_db_commit_enqueue(db, &ops[i], &t[i]);
	}
	for (size_t i = 0; i < n; i++) {
		if (rc[i] == 0)
			rc[i] = mf_db_commit_wait(db, &t[i]);
		if (rc[i] == 0 && ops[i].res)
			mf_db_notify_changed(db, &ops[i]); /* the mount drops the name */
		mf_op_clear(&ops[i]);
	}
	return n;
}

static void *expire_main(void *arg)
{
	mf_expire *x = arg;
	pthread_mutex_lock(&x->mu);
	while (!x->stop) {
		struct timespec dl;
		clock_gettime(CLOCK_MONOTONIC, &dl);
		dl.tv_nsec += TICK_MS * 1000000L;
		if (dl.tv_nsec >= 1000000000L) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000L;
		}
		while (!x->stop && pthread_cond_timedwait(&x->cv, &x->mu, &dl) != ETIMEDOUT)
			;
		if (x->stop)
			break;
		pthread_mutex_unlock(&x->mu);
		mf_store_stats ss;
		mf_store_stats_get(mf_db_store(x->db), &ss);
		int64_t t0 = mono_ms();
		/* Go on while a quarter or more of a round was due, within the
		 * tick's budget. */
		while (ss.expires && round_once(x->db) >= ROUND_KEYS / 4 && mono_ms() - t0 < BUSY_MS)
			;
		pthread_mutex_lock(&x->mu);
	}
	pthread_mutex_unlock(&x->mu);
	return NULL;
}

int mf_expire_start(mf_expire *x, mf_db *db)
{
	memset(x, 0, sizeof *x);
	x->db = db;
	pthread_mutex_init(&x->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&x->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&x->thread, NULL, expire_main, x) != 0)
		return -EAGAIN;
	x->running = true;
	return 0;
}

void mf_expire_stop(mf_expire *x)
{
	if (!x->running)
		return;
	pthread_mutex_lock(&x->mu);
	x->stop = true;
	pthread_cond_broadcast(&x->cv);
	pthread_mutex_unlock(&x->mu);
	pthread_join(x->thread, NULL);
	x->running = false;
	pthread_cond_destroy(&x->cv);
	pthread_mutex_destroy(&x->mu);
}
