/*
 * verdict.c — the one torn-vs-corrupt decision (mf_wal_judge) and the walk
 * over every segment of a data dir that applies it and checks the LSN chain
 * (mf_wal_walk).  Replay and memflux-check both call these, so the daemon
 * and the checker can never disagree.  Rules: wal/FORMAT.md "Recovery".
 * No locking.
 */
#include "record.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The verdict "refuse to open the data dir", and why. */
__attribute__((format(printf, 2, 3)))
static void refuse(mf_wal_verdict *v, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	v->action = MF_WAL_REFUSE;
	vsnprintf(v->msg, sizeof v->msg, fmt, ap);
	va_end(ap);
}

/* The verdict "empty the active segment": a creation cut short, so it
 * never held a record. */
static void cut_whole(mf_wal_verdict *v, const mf_wal_scan *sc)
{
	v->action = MF_WAL_CUT;
	v->cut_off = 0;
	v->cut_bytes = sc->file_size;
}

void mf_wal_judge(const char *path, const mf_wal_scan *sc, bool active, uint64_t horizon,
                  mf_wal_verdict *v)
{
	memset(v, 0, sizeof *v);
	uint64_t h = horizon > sc->durable_max ? horizon : sc->durable_max;
	v->horizon = h;
	switch (sc->status) {
	case MF_SCAN_OK:
		v->action = MF_WAL_KEEP;
		return;
	case MF_SCAN_SHORT_HEADER:
		if (active) {
			/* Creation writes and fsyncs the header before any record:
			 * a file this short never held one. */
			cut_whole(v, sc);
			snprintf(v->msg, sizeof v->msg,
			         "WAL %s: segment creation cut short (%" PRIu64
			         " bytes, no record): emptied", path, sc->file_size);
			return;
		}
		refuse(v,
		       "WAL %s: sealed segment shorter than its header (%" PRIu64 " bytes)",
		       path, sc->file_size);
		return;
	case MF_SCAN_BAD_HEADER:
		if (active && sc->file_size == MF_WAL_FILE_HEADER) {
			/* Exactly a header's worth, not valid: the header write was
			 * torn before its fsync, and no record follows it. */
			cut_whole(v, sc);
			snprintf(v->msg, sizeof v->msg,
			         "WAL %s: segment header torn at creation (no record): emptied", path);
			return;
		}
		refuse(v, "WAL %s: %s", path, sc->why);
		return;
	case MF_SCAN_BAD_LSN:
		refuse(v,
		       "WAL %s: record at offset %" PRIu64 " is valid but does not carry LSN %" PRIu64
		       " (corruption or a foreign record)", path, sc->bad_off, sc->expected_lsn);
		return;
	default:
		break;
	}
	/* MF_SCAN_DAMAGED: no valid record at bad_off, where LSN E is due. */
	uint64_t e = sc->expected_lsn;
	if (!active) {
		refuse(v,
		       "WAL %s: sealed segment damaged at offset %" PRIu64 " (%s), LSN %" PRIu64
		       ": sealed segments are fsynced before sealing, so this is corruption of "
		       "durable data", path, sc->bad_off, sc->why, e);
		return;
	}
	if (sc->resync_capped) {
		refuse(v,
		       "WAL %s: damaged at offset %" PRIu64 " (%s), LSN %" PRIu64
		       "; the bytes after it are too inconsistent to tell a torn write "
		       "from corruption", path, sc->bad_off, sc->why, e);
		return;
	}
	if (e <= h) {
		refuse(v,
		       "WAL %s: corrupt record at offset %" PRIu64 " (%s), LSN %" PRIu64
		       ", which was durable (fsynced through LSN %" PRIu64 ")%s",
		       path, sc->bad_off, sc->why, e, h,
		       sc->after_records ? "; valid records follow it" : "");
		return;
	}
	/* Everything from bad_off on was written after the last completed
	 * fsync: a power cut may legitimately have torn, dropped or reordered
	 * it.  Records after the hole cannot be applied without LSN e. */
	v->action = MF_WAL_CUT;
	v->cut_off = sc->bad_off;
	v->cut_bytes = sc->file_size - sc->bad_off;
	v->lost_first = e;
	v->lost_last = sc->after_last_lsn > e ? sc->after_last_lsn : e;
	v->dropped_intact = sc->after_records;
	if (sc->after_records)
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: unsynced tail damaged at offset %" PRIu64 " (%s): cut %" PRIu64
		         " bytes, LSNs %" PRIu64 "..%" PRIu64 " (%" PRIu64
		         " intact records after the hole dropped: LSN %" PRIu64
		         " is missing); durable through LSN %" PRIu64,
		         path, sc->bad_off, sc->why, v->cut_bytes, v->lost_first, v->lost_last,
		         sc->after_records, e, h);
	else
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: torn tail at offset %" PRIu64 " (%s): cut %" PRIu64
		         " bytes from LSN %" PRIu64 " on; durable through LSN %" PRIu64,
		         path, sc->bad_off, sc->why, v->cut_bytes, e, h);
}

typedef struct walk_ctx {
	mf_wal_record_fn fn;
	void *ctx;
	uint64_t snap;
	uint64_t last;         /* last LSN above snap passed to fn, or snap */
	uint64_t chain_lsn;    /* WALK_CHAIN: the LSN found */
	uint64_t chain_off;
} walk_ctx;

#define WALK_CHAIN 0x7fff0001  /* fn return: LSN not contiguous with the last */

static int walk_record(void *arg, mf_op *op, uint64_t off)
{
	walk_ctx *wc = arg;
	if (op->lsn > wc->snap) {
		if (op->lsn != wc->last + 1) {
			wc->chain_lsn = op->lsn;
			wc->chain_off = off;
			return WALK_CHAIN;
		}
		wc->last = op->lsn;
	}
	return wc->fn ? wc->fn(wc->ctx, op, off) : 0;
}

static void chain_refusal(mf_wal_verdict *v, const char *path, uint64_t want, uint64_t got,
                          uint64_t off)
{
	v->action = MF_WAL_REFUSE;
	if (got > want)
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: LSNs %" PRIu64 "..%" PRIu64 " are missing before offset %" PRIu64
		         " (a deleted or renamed segment, or a lost snapshot): data lost",
		         path, want, got - 1, off);
	else
		snprintf(v->msg, sizeof v->msg,
		         "WAL %s: LSN %" PRIu64 " at offset %" PRIu64 " overlaps LSNs already "
		         "read (expected %" PRIu64 ")", path, got, off, want);
}

int mf_wal_walk(mf_io *io, const char *dir, uint64_t snap_lsn, mf_wal_record_fn fn,
                void *ctx, mf_wal_report_fn report, void *rctx, mf_wal_verdict *out,
                uint64_t *last_lsn)
{
	memset(out, 0, sizeof *out);
	walk_ctx wc = {.fn = fn, .ctx = ctx, .snap = snap_lsn, .last = snap_lsn};
	if (last_lsn)
		*last_lsn = snap_lsn;
	mf_wal_seg *segs = NULL;
	int n = mf_wal_list_sealed(io, dir, &segs);
	if (n < 0)
		return n;
	char *active = mf_wal_path(dir, MF_WAL_ACTIVE_NAME);
	/* Everything sealed, and the snapshot, is durable. */
	uint64_t horizon = snap_lsn;
	int ret = 0;
	for (int i = 0; i <= n; i++) {
		bool is_active = i == n;
		if (!is_active && segs[i].lsn <= snap_lsn)
			continue;  /* covered by the snapshot: never read */
		mf_wal_file_report rep = {
			.path = is_active ? active : segs[i].path,
			.sealed = !is_active,
			.name_lsn = is_active ? 0 : segs[i].lsn,
		};
		int r = mf_wal_scan_file(io, rep.path, walk_record, &wc, &rep.sc);
		if (r == -ENOENT && is_active)
			break;  /* no active segment: nothing more */
		mf_wal_verdict *v = &rep.v;
		if (r == WALK_CHAIN) {
			chain_refusal(v, rep.path, wc.last + 1, wc.chain_lsn, wc.chain_off);
		} else if (r < 0) {
			rep.err = r;
			if (report)
				report(rctx, &rep);
			ret = r;
			break;
		} else if (r != 0) {
			ret = r;  /* the caller's fn stopped the walk */
			break;
		} else {
			bool hdr_ok = rep.sc.status != MF_SCAN_BAD_HEADER &&
			              rep.sc.status != MF_SCAN_SHORT_HEADER;
			uint64_t prev = rep.sc.hdr.prev_lsn;
			/* The active segment's header is fsynced at creation, after
			 * everything before prev_lsn was (see create_segment). */
			uint64_t hz = hdr_ok && prev > horizon && prev <= wc.last ? prev : horizon;
			mf_wal_judge(rep.path, &rep.sc, is_active, hz, v);
			uint64_t end = rep.sc.records ? rep.sc.last_lsn : prev;
			if (v->action != MF_WAL_REFUSE && hdr_ok && !rep.sc.records &&
			    prev > wc.last)
				/* Empty, but it says records up to prev came before it. */
				chain_refusal(v, rep.path, wc.last + 1, prev + 1, MF_WAL_FILE_HEADER);
			else if (v->action != MF_WAL_REFUSE && !is_active && end != segs[i].lsn) {
				v->action = MF_WAL_REFUSE;
				if (end < segs[i].lsn)
					snprintf(v->msg, sizeof v->msg,
					         "WAL %s: sealed segment ends at LSN %" PRIu64
					         " but its name says %" PRIu64 ": LSNs %" PRIu64 "..%" PRIu64
					         " are missing (cut at a record boundary?)",
					         rep.path, end, segs[i].lsn, end + 1, segs[i].lsn);
				else
					snprintf(v->msg, sizeof v->msg,
					         "WAL %s: sealed segment holds LSN %" PRIu64
					         " above the LSN in its name (%" PRIu64 ")",
					         rep.path, end, segs[i].lsn);
			}
			if (!is_active && end > horizon && v->action != MF_WAL_REFUSE)
				horizon = end;
		}
		if (report)
			report(rctx, &rep);
		if (v->action != MF_WAL_KEEP)
			*out = *v;
		else if (v->horizon > out->horizon)
			out->horizon = v->horizon;
		if (v->action == MF_WAL_REFUSE)
			break;
	}
	if (last_lsn)
		*last_lsn = wc.last;
	free(active);
	mf_wal_segs_free(segs, n);
	return ret;
}
