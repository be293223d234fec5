/*
 * wal.c — the live WAL's lifecycle: mf_wal_open (reopen or create the
 * active segment, start the INTERVAL syncer thread), mf_wal_close (drain
 * the queue, final fsync and sync marker) and stats.  The rest of wal/ is
 * listed in wal_int.h; format and recovery rules: wal/FORMAT.md.
 */
#include "wal_int.h"

#include "record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void wal_free(mf_wal *w)
{
	pthread_mutex_destroy(&w->seg_mu);
	pthread_mutex_destroy(&w->fsync_mu);
	pthread_mutex_destroy(&w->mu);
	pthread_cond_destroy(&w->work_cv);
	pthread_cond_destroy(&w->done_cv);
	pthread_cond_destroy(&w->sync_cv);
	free(w->bbuf);
	free(w->iov);
	free(w->dir);
	free(w->path);
	free(w);
}

mf_wal *mf_wal_open(const mf_wal_opts *opts, uint64_t next_lsn,
                    mf_apply_fn apply, void *ctx, int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	*err = 0;
	if (!opts || !opts->dir || !apply || next_lsn == 0 ||
	    opts->mode > MF_FSYNC_ALWAYS) {
		*err = -EINVAL;
		return NULL;
	}
	mf_wal *w = calloc(1, sizeof *w);
	if (!w) {
		*err = -ENOMEM;
		return NULL;
	}
	w->dir = strdup(opts->dir);
	w->path = mf_wal_path(opts->dir, MF_WAL_ACTIVE_NAME);
	w->io = opts->io ? opts->io : mf_io_posix();
	w->mode = opts->mode;
	w->interval_ms = opts->interval_ms ? opts->interval_ms : 1000;
	w->max_batch = opts->max_batch_bytes ? opts->max_batch_bytes : 4u << 20;
	w->apply = apply;
	w->ctx = ctx;
	w->fd = -1;
	w->next_lsn = next_lsn;
	w->written_lsn = w->synced_lsn = next_lsn - 1;
	w->seg_last_lsn = next_lsn - 1;
	pthread_mutex_init(&w->seg_mu, NULL);
	pthread_mutex_init(&w->fsync_mu, NULL);
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->done_cv, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->sync_cv, &ca);
	pthread_cond_init(&w->work_cv, &ca); /* timed waits: commit delay */
	pthread_condattr_destroy(&ca);

	int r = wal_open_active(w);
	if (r < 0)
		goto fail;
	w->bytes = w->end;
	mf_wal_seg *segs;
	int n = mf_wal_list_sealed(w->io, w->dir, &segs);
	if (n > 0) {
		for (int i = 0; i < n; i++)
			w->sealed_bytes += segs[i].size;
		mf_wal_segs_free(segs, n);
	}
	if (w->mode == MF_FSYNC_INTERVAL) {
		r = -pthread_create(&w->syncer, NULL, wal_syncer_main, w);
		if (r < 0)
			goto fail_fd;
		w->has_syncer = true;
	}
	return w;
fail_fd:
	w->io->close(w->io, w->fd);
fail:
	*err = r;
	wal_free(w);
	return NULL;
}

void mf_wal_stats_get(mf_wal *w, mf_wal_stats *out)
{
	pthread_mutex_lock(&w->mu);
	out->bytes = w->bytes;
	out->sealed_bytes = w->sealed_bytes;
	out->lsn = w->written_lsn;
	out->synced_lsn = w->synced_lsn;
	out->records = w->records;
	out->batches = w->batches;
	out->fsyncs = w->fsyncs;
	out->read_only = w->read_only;
	out->queued = w->queued;
	pthread_mutex_unlock(&w->mu);
}

int mf_wal_close(mf_wal *w)
{
	if (!w)
		return 0;
	pthread_mutex_lock(&w->mu);
	w->closing = true;  /* new submits fail; commit_delay stops waiting */
	pthread_cond_broadcast(&w->work_cv);
	/* Drain: lead whatever is queued (entries whose submitters have not
	 * called mf_wal_wait yet included), or wait for the current leader. */
	while (w->head || atomic_load_explicit(&w->leading, memory_order_relaxed)) {
		if (atomic_load_explicit(&w->leading, memory_order_relaxed))
			pthread_cond_wait(&w->done_cv, &w->mu);
		else
			wal_lead(w, NULL);
	}
	/* From here on close is the writer: no one else may lead (the syncer
	 * or an fsync(2) could otherwise start a sync marker). */
	atomic_store_explicit(&w->leading, true, memory_order_relaxed);
	pthread_mutex_unlock(&w->mu);
	if (w->has_syncer) {
		pthread_mutex_lock(&w->mu);
		w->stop_syncer = true;
		pthread_cond_signal(&w->sync_cv);
		pthread_mutex_unlock(&w->mu);
		pthread_join(w->syncer, NULL);
	}
	/* Clean close syncs whatever the mode, then says so in the file. */
	int r = wal_fsync(w);
	if (r == 0)
		wal_append_marker(w, true);
	if (w->fd >= 0) {
		int c = w->io->close(w->io, w->fd);
		if (r == 0)
			r = c;
	}
	wal_free(w);
	return r;
}
