/*
 * replay.c — recovery of the WAL part of a data dir: delete sealed segments
 * a snapshot covers, walk the rest through apply() in LSN order, and cut a
 * damaged tail that lies wholly after the durable horizon (mf_wal_replay).
 * Runs before any writer exists; no locking.
 */
#include "wal.h"

#include "record.h"

#include "../io/clock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct replay_ctx {
	mf_apply_fn apply;
	void *ctx;
	uint64_t after_lsn;
	mf_wal_replay_info *info;
} replay_ctx;

static int replay_record(void *arg, mf_op *op, uint64_t off)
{
	(void)off;
	replay_ctx *rc = arg;
	if (op->lsn <= rc->after_lsn) {
		rc->info->skipped++;
		return 0;
	}
	/* An apply error is not corruption: the live op failed the same
	 * deterministic way when it was first applied. */
	if (rc->apply(rc->ctx, op) < 0)
		rc->info->apply_errors++;
	rc->info->records++;
	return 0;
}

int mf_wal_replay(const char *dir, mf_io *io, uint64_t after_lsn,
                  mf_apply_fn apply, void *ctx, mf_wal_replay_info *info,
                  char *err, size_t errlen)
{
	if (!io)
		io = mf_io_posix();
	double t0 = mf_mono_sec();
	memset(info, 0, sizeof *info);
	info->last_lsn = after_lsn;
	if (err && errlen)
		err[0] = 0;
	char dummy[8];
	if (!err || !errlen) {
		err = dummy;
		errlen = sizeof dummy;
	}

	mf_wal_seg *segs = NULL;
	int n = mf_wal_list_sealed(io, dir, &segs);
	if (n < 0) {
		snprintf(err, errlen, "WAL %s: cannot list: %s", dir, strerror(-n));
		return n;
	}
	int ret = 0;
	char *active = mf_wal_path(dir, MF_WAL_ACTIVE_NAME);

	/* Sealed segments wholly covered by the snapshot are not needed. */
	int first = 0;
	while (first < n && segs[first].lsn <= after_lsn) {
		int r = io->unlink(io, segs[first].path);
		if (r < 0 && r != -ENOENT) {
			snprintf(err, errlen, "WAL %s: cannot delete: %s", segs[first].path,
			         strerror(-r));
			ret = r;
			goto out;
		}
		first++;
	}
	if (first > 0) {
		int r = io->fsync_dir(io, dir);
		if (r < 0) {
			snprintf(err, errlen, "WAL %s: fsync dir: %s", dir, strerror(-r));
			ret = r;
			goto out;
		}
	}

	replay_ctx rc = {.apply = apply, .ctx = ctx, .after_lsn = after_lsn, .info = info};
	mf_wal_verdict v;
	uint64_t last = after_lsn;
	int r = mf_wal_walk(io, dir, after_lsn, replay_record, &rc, NULL, NULL, &v, &last);
	info->last_lsn = last;
	info->horizon = v.horizon;
	if (r < 0) {
		snprintf(err, errlen, "WAL %s: read error: %s", dir, strerror(-r));
		ret = r;
		goto out;
	}
	if (v.action == MF_WAL_REFUSE) {
		snprintf(err, errlen, "%s; refusing to mount (memflux-check DATADIR explains, "
		         "--fix repairs)", v.msg);
		ret = -EBADMSG;
		goto out;
	}
	if (v.action == MF_WAL_CUT) {
		r = mf_io_cut_file(io, active, (off_t)v.cut_off);
		if (r < 0) {
			snprintf(err, errlen, "WAL %s: cannot cut damaged unsynced tail: %s", active,
			         strerror(-r));
			ret = r;
			goto out;
		}
		fprintf(stderr, "memfluxfs: %s\n", v.msg);
		info->truncated_bytes = v.cut_bytes;
		info->cut_off = v.cut_off;
		info->lost_first = v.lost_first;
		info->lost_last = v.lost_last;
		info->dropped_intact = v.dropped_intact;
	}
out:
	free(active);
	mf_wal_segs_free(segs, n);
	info->seconds = mf_mono_sec() - t0;
	return ret;
}
