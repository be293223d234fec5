/*
 * sync.c — durability of the active segment: fsync mode names, the one
 * fsync path (wal_fsync: used by ALWAYS batches, the INTERVAL syncer,
 * mf_wal_sync, rotation and close), the read-only state an fsync failure
 * leaves, the interval syncer thread and the idle sync marker.  Locking:
 * wal_int.h.
 */
#include "wal_int.h"

#include "record.h"

#include "../io/clock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

const char *mf_fsync_mode_name(mf_fsync_mode m)
{
	switch (m) {
	case MF_FSYNC_NONE:
		return "none";
	case MF_FSYNC_INTERVAL:
		return "interval";
	case MF_FSYNC_ALWAYS:
		return "always";
	}
	return "?";
}

int mf_fsync_mode_parse(const char *s, mf_fsync_mode *out)
{
	if (!s)
		return -EINVAL;
	if (strcmp(s, "none") == 0)
		*out = MF_FSYNC_NONE;
	else if (strcmp(s, "interval") == 0)
		*out = MF_FSYNC_INTERVAL;
	else if (strcmp(s, "always") == 0)
		*out = MF_FSYNC_ALWAYS;
	else
		return -EINVAL;
	return 0;
}

/* Called with mu held. */
void wal_go_read_only(mf_wal *w, const char *what, int err)
{
	if (w->read_only)
		return;
	w->read_only = true;
	fprintf(stderr, "memfluxfs: WAL fsync failed (%s: %s): refusing further writes\n",
	        what, strerror(-err));
}

/* fsync the active segment if anything written is not yet synced.
 * 0 or -EIO (read-only: before, or because of, this call). */
int wal_fsync(mf_wal *w)
{
	pthread_mutex_lock(&w->fsync_mu);
	pthread_mutex_lock(&w->mu);
	uint64_t target = w->written_lsn;
	bool ro = w->read_only, need = w->synced_lsn < target;
	pthread_mutex_unlock(&w->mu);
	int r = 0;
	if (ro) {
		r = -EIO;
	} else if (need && w->fd >= 0) {
		struct timespec start;
		clock_gettime(CLOCK_MONOTONIC, &start);
		r = w->io->fsync(w->io, w->fd);
		struct timespec end;
		clock_gettime(CLOCK_MONOTONIC, &end);
		uint64_t took = (uint64_t)(end.tv_sec - start.tv_sec) * 1000000000u +
		                (uint64_t)(end.tv_nsec - start.tv_nsec);
		pthread_mutex_lock(&w->mu);
		w->fsync_ns = w->fsync_ns ? (w->fsync_ns * 7 + took) / 8 : took;
		w->fsyncs++;
		if (r < 0) {
			wal_go_read_only(w, w->path, r);
			r = -EIO;
		} else if (w->synced_lsn < target) {
			w->synced_lsn = target;
			/* Writes that raced with this fsync are at most this old. */
			w->dirty_since = start;
			/* Until a later record says so, nothing in the file tells
			 * recovery that these records are durable: if the log stays
			 * idle, a sync marker is appended (INTERVAL, NONE; in
			 * ALWAYS every batch is fsynced and the next one says so,
			 * and a marker per idle batch would double the writes of a
			 * lone writer).  If the log is idle, this thread leads just
			 * long enough to write it; else the current (or next)
			 * leader does when it steps down. */
			if (w->mode != MF_FSYNC_ALWAYS) {
				w->mark_wanted = true;
				if (!atomic_load_explicit(&w->leading, memory_order_relaxed) &&
				    !w->head && !w->closing)
					wal_lead(w, NULL);
			}
		}
		pthread_mutex_unlock(&w->mu);
	} else if (need) {
		/* No active fd: the sealed segment was fsynced before sealing. */
		pthread_mutex_lock(&w->mu);
		w->synced_lsn = target;
		pthread_mutex_unlock(&w->mu);
	}
	pthread_mutex_unlock(&w->fsync_mu);
	return r;
}

/*
 * Append a sync marker saying every record of the active segment is durable
 * (FORMAT.md): the leader does it when the log goes idle after an fsync, and
 * close after its final fsync (then `sync`: the marker itself is fsynced).
 * Without one, the last records are "written after the last known fsync" to
 * recovery, and damage to them (bit rot after a clean shutdown, or after an
 * fsync(2) on an idle log) would be cut instead of refused.  Best effort: a
 * failed or torn marker leaves recovery knowing less, nothing more; a failed
 * write does not advance `end`, so the next record overwrites it (a record
 * is at least as long as a marker).  The leader only (close is the last
 * one).
 */
void wal_append_marker(mf_wal *w, bool sync)
{
	if (w->fd < 0 || !w->seg_has_records)
		return;
	pthread_mutex_lock(&w->mu);
	uint64_t lsn = w->written_lsn, synced = w->synced_lsn;
	bool ro = w->read_only;
	pthread_mutex_unlock(&w->mu);
	if (ro || synced < lsn || lsn != w->seg_last_lsn)
		return;
	if (w->marked_lsn != lsn) {
		mf_op op;
		memset(&op, 0, sizeof op);
		op.type = MF_WAL_REC_SYNC;
		op.lsn = lsn;
		uint8_t rec[MF_WAL_REC_HEADER];
		mf_wal_rec_place at = {.salt = w->salt, .off = w->end, .durable = lsn};
		mf_wal_record_encode_head(&op, &at, rec);
		if (mf_io_pwrite_all(w->io, w->fd, rec, sizeof rec, (off_t)w->end) != 0) {
			/* Leave no partial marker behind: a rotation could seal it.
			 * If even the cut fails, the file's end is unknown. */
			if (w->io->ftruncate(w->io, w->fd, (off_t)w->end) != 0) {
				pthread_mutex_lock(&w->mu);
				wal_go_read_only(w, "truncate after failed sync marker", -EIO);
				pthread_mutex_unlock(&w->mu);
			}
			return;
		}
		w->end += sizeof rec;
		w->marked_lsn = lsn;
		pthread_mutex_lock(&w->mu);
		w->bytes = w->end;
		pthread_mutex_unlock(&w->mu);
	}
	if (sync)
		w->io->fsync(w->io, w->fd);
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

void *wal_syncer_main(void *arg)
{
	mf_wal *w = arg;
	pthread_mutex_lock(&w->mu);
	while (!w->stop_syncer) {
		if (w->read_only || w->synced_lsn >= w->written_lsn) {
			pthread_cond_wait(&w->sync_cv, &w->mu);
			continue;
		}
		struct timespec deadline = w->dirty_since, now;
		mf_ts_add_ns(&deadline, (uint64_t)w->interval_ms * 1000000u);
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (ts_before(&now, &deadline)) {
			pthread_cond_timedwait(&w->sync_cv, &w->mu, &deadline);
			continue;
		}
		pthread_mutex_unlock(&w->mu);
		wal_fsync(w);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}
