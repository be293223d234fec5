/*
 * record.h — WAL segment header and record encoding (format: wal/FORMAT.md,
 * version 2), the one record decoder, the file scanner and the one
 * torn-vs-corrupt verdict shared by replay (replay.c) and memflux-check (tools/check.c).
 *
 * Segment header (32 bytes): "MFWAL", u8 version 2, u16 header size 32,
 * u32 flags 0, u64 salt, u64 prev_lsn, u32 masked crc of bytes 0..27.
 *
 * Record, all integers little-endian:
 *    0  u32 len        bytes after the crc field (= 56 + klen + k2len + vlen)
 *    4  u32 crc        masked CRC-32C of bytes 8..8+len, seeded with
 *                      (salt, record offset)
 *    8  u64 lsn
 *   16  u64 durable    highest LSN known fsynced when the record was written
 *   24  u8  type       mf_optype, one mf_optype_valid() accepts
 *   25  u8  ktype      mf_type: 0, or one mf_type_valid() accepts
 *   26  u16 flags      0
 *   28  u32 klen
 *   32  u32 k2len
 *   36  u32 vlen
 *   40  i64 time_ns
 *   48  u64 arg
 *   56  u32 hcrc       masked CRC-32C of bytes 0..3 and 8..55, same seed
 *   60  u32 reserved   0
 *   64  key, key2, val bytes
 *
 * Both checksums are seeded with the segment's random salt and the record's
 * own file offset, so bytes copied from another segment, from an older
 * incarnation of this one, or from elsewhere in this file (a WAL stored as a
 * value) never validate.
 *
 * Pure functions, no locking; errors as documented per function.
 */
#ifndef MF_WAL_RECORD_H
#define MF_WAL_RECORD_H

#include "../io/io.h"
#include "../store/op.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_WAL_MAGIC "MFWAL"
#define MF_WAL_VERSION 2
#define MF_WAL_FILE_HEADER 32          /* bytes at offset 0 of a segment */
#define MF_WAL_REC_HEADER 64           /* fixed part of a record */
#define MF_WAL_REC_FIXED_BODY 56       /* fixed part counted by len */
/* Largest len accepted: the on-disk bound of store/op.h. */
#define MF_WAL_REC_MAX_LEN ((uint32_t)MF_FILE_LEN_MAX)

#define MF_WAL_ACTIVE_NAME "memflux.wal"

/* Record type of a sync marker: no key, key2 or value; lsn = the last LSN
 * before it (a marker takes no LSN) and durable = lsn.  Written at a clean
 * close after the final fsync, so recovery knows the whole file was durable
 * (damage anywhere in it is then refused, not cut).  Never applied. */
#define MF_WAL_REC_SYNC 0xFF

/* ---- file header ---- */

typedef struct mf_wal_file_hdr {
	uint8_t version;
	uint64_t salt;       /* mixed into every record checksum of the file */
	uint64_t prev_lsn;   /* the LSN just before this segment's first record */
} mf_wal_file_hdr;

void mf_wal_file_header_encode(uint8_t out[MF_WAL_FILE_HEADER], uint64_t salt,
                               uint64_t prev_lsn);
/* 0 with *h filled, or -EBADMSG with *why set ("bad magic", "unsupported
 * version ...", "header checksum mismatch").  in holds MF_WAL_FILE_HEADER
 * bytes. */
int mf_wal_file_header_check(const uint8_t in[MF_WAL_FILE_HEADER], mf_wal_file_hdr *h,
                             const char **why);
/* A fresh random salt (getrandom; never 0). */
uint64_t mf_wal_new_salt(void);

/* ---- encoding ---- */

/* Where a record is going: its segment's salt, its own file offset and the
 * highest LSN known durable when it is written. */
typedef struct mf_wal_rec_place {
	uint64_t salt, off, durable;
} mf_wal_rec_place;

/* 0; -EINVAL for an out-of-range type/ktype; -E2BIG if the record would
 * exceed MF_WAL_REC_MAX_LEN. */
int mf_wal_record_validate(const mf_op *op);
/* Bytes before the value: 64 + klen + k2len. */
size_t mf_wal_record_head_size(const mf_op *op);
/* Whole record: head + vlen. */
size_t mf_wal_record_size(const mf_op *op);
/* Write the head (header + key + key2, with len and both crcs filled in) to
 * dst, which has mf_wal_record_head_size(op) bytes.  The body crc covers the
 * value too, read in place from op->val: the writer then sends {head, value}
 * with one pwritev and never copies a big value.  op->lsn is written as is.
 * The op must pass mf_wal_record_validate. */
void mf_wal_record_encode_head(const mf_op *op, const mf_wal_rec_place *at, uint8_t *dst);
/* Convenience (tests, tools): the whole record in a malloc'd buffer. */
uint8_t *mf_wal_record_encode(const mf_op *op, const mf_wal_rec_place *at, size_t *len);

/* ---- decoding (the one decoder: memory and file scanner both use it) ---- */

enum {
	MF_REC_OK = 0,
	MF_REC_SHORT = 1,  /* the bytes end before the record does (torn) */
	MF_REC_BAD = 2,    /* impossible header or checksum mismatch */
};

typedef struct mf_wal_rec_hdr {
	uint32_t len, crc;          /* crc as stored (masked) */
	uint64_t lsn, durable;
	uint8_t type, ktype;
	uint16_t flags;
	uint32_t klen, k2len, vlen;
	int64_t time_ns;
	uint64_t arg;
} mf_wal_rec_hdr;

/* The CRC seed of a record at file offset off in a segment salted salt. */
uint32_t mf_wal_rec_seed(uint64_t salt, uint64_t off);

/* Parse and check the fixed header of a record at file offset off that has
 * `avail` bytes to the end of the file; p holds min(avail, 64) of them.
 * Checks, cheapest first: len range, type/ktype/flags/reserved ranges,
 * len == 56 + klen + k2len + vlen, the header crc, then that the record fits
 * in avail.  Only the body crc is left (mf_wal_rec_body_ok).  Returns
 * MF_REC_OK / MF_REC_SHORT / MF_REC_BAD, *why set when not OK. */
int mf_wal_rec_hdr_parse(const uint8_t *p, uint64_t avail, const mf_wal_rec_place *at,
                         mf_wal_rec_hdr *h, const char **why);
/* body_crc: mf_crc32c_extend(mf_wal_rec_seed(salt, off), bytes 8..8+len). */
bool mf_wal_rec_body_ok(const mf_wal_rec_hdr *h, uint32_t body_crc);

/* Decode one record from memory: p holds avail bytes, the record being at
 * file offset at->off of a segment salted at->salt.  On MF_REC_OK *op is
 * filled with one fresh buffer holding key, key2 and value (caller
 * mf_op_clear()s), *reclen is the record size and *h its header (h may be
 * NULL); otherwise *op is untouched and nothing was allocated. */
int mf_wal_record_decode(const uint8_t *p, size_t avail, const mf_wal_rec_place *at,
                         mf_op *op, size_t *reclen, mf_wal_rec_hdr *h, const char **why);

/* ---- files (internal API for replay and memflux-check: scan.c, verdict.c, segment.c) ---- */

enum {
	MF_SCAN_OK = 0,           /* a header and valid, contiguous records */
	MF_SCAN_DAMAGED = 1,      /* no valid record at bad_off (torn or corrupt:
	                             mf_wal_judge decides which) */
	MF_SCAN_BAD_LSN = 2,      /* a valid record at bad_off whose LSN is not
	                             expected_lsn (never written so: corruption) */
	MF_SCAN_BAD_HEADER = 3,   /* file header wrong */
	MF_SCAN_SHORT_HEADER = 4, /* file shorter than its header (torn create) */
};

typedef struct mf_wal_scan {
	int status;               /* MF_SCAN_* */
	const char *why;          /* what is wrong at bad_off (static string) */
	uint64_t file_size;
	mf_wal_file_hdr hdr;      /* valid unless BAD_HEADER / SHORT_HEADER */
	uint64_t records;         /* valid records before bad_off */
	uint64_t first_lsn, last_lsn; /* of those records (0 if none) */
	uint64_t good_end;        /* offset just past the last valid record */
	uint64_t bad_off;         /* status != OK: first bad byte */
	uint64_t expected_lsn;    /* DAMAGED / BAD_LSN: LSN due at bad_off */
	uint64_t durable_max;     /* highest `durable` field of any valid record
	                             of the file, before or after bad_off */
	/* DAMAGED: what one forward pass over (bad_off, EOF) found.  Records
	 * there are verified (salted, offset-bound checksums) but never applied:
	 * their predecessor is missing. */
	uint64_t after_records, after_first_lsn, after_last_lsn, after_first_off;
	bool resync_capped;       /* the pass hit its work bound (crafted input):
	                             the tail's durability is unknown */
} mf_wal_scan;

/* Called per valid record, in file order.  op's slices are freed after the
 * call (take references to keep them).  Nonzero stops the scan and is
 * returned by mf_wal_scan_file. */
typedef int (*mf_wal_record_fn)(void *ctx, mf_op *op, uint64_t off);

/* Walk one segment file with bounded memory (a 1 MiB read buffer; values
 * are read straight into their slices) and linear time: records must carry
 * LSNs hdr.prev_lsn+1, +2, ...; after the first damage one forward resync
 * pass, with a work bound, looks for later valid records (for the verdict
 * and the report only).  fn NULL: verify only, nothing is decoded or
 * allocated per record.  Returns 0 (the facts are in *out), the nonzero
 * value fn returned, or -errno (I/O; -ENOENT if the file is missing). */
int mf_wal_scan_file(mf_io *io, const char *path, mf_wal_record_fn fn, void *ctx,
                     mf_wal_scan *out);

/* Salvage (memflux-check --fix): every valid record of the file, in file
 * order, whatever damage lies between them — the same one-pass, bounded
 * search as the resync, emitting what it finds (sync markers are skipped).
 * The salt is taken from the header bytes even when the header is damaged.
 * *bad_bytes: bytes not part of any valid record; *capped: the work bound
 * stopped the search.  Returns 0, fn's nonzero value, or -errno. */
int mf_wal_salvage_file(mf_io *io, const char *path, mf_wal_record_fn fn, void *ctx,
                        uint64_t *bad_bytes, bool *capped);

/* ---- the torn-vs-corrupt verdict (one policy for replay and checker) ---- */

enum {
	MF_WAL_KEEP = 0,          /* nothing to do */
	MF_WAL_CUT = 1,           /* damage lies wholly after the durable
	                             horizon: cut the active segment at cut_off */
	MF_WAL_REFUSE = 2,        /* damage reaches durable data, or data is
	                             missing: refuse to mount */
};

typedef struct mf_wal_verdict {
	int action;               /* MF_WAL_* */
	uint64_t horizon;         /* highest LSN known durable */
	uint64_t cut_off, cut_bytes;      /* CUT: offset and bytes dropped */
	uint64_t lost_first, lost_last;   /* CUT: LSNs dropped (lost_last >=
	                                     lost_first; the damaged record's LSN
	                                     through the last intact one after it) */
	uint64_t dropped_intact;  /* CUT: intact records after the hole dropped */
	char msg[512];            /* CUT / REFUSE: one line, names file, offset,
	                             LSN and the reason */
} mf_wal_verdict;

/* Judge one scanned file.  active: it is memflux.wal (sealed segments were
 * fsynced before sealing, so any damage in one is damage to durable data).
 * horizon: highest LSN known durable from outside the file (snapshot LSN,
 * last sealed LSN); the file's own `durable` fields are added to it. */
void mf_wal_judge(const char *path, const mf_wal_scan *sc, bool active, uint64_t horizon,
                  mf_wal_verdict *v);

typedef struct mf_wal_file_report {
	const char *path;
	bool sealed;
	uint64_t name_lsn;        /* sealed: the LSN in its name */
	int err;                  /* -errno reading it, else 0 */
	mf_wal_scan sc;
	mf_wal_verdict v;         /* this file's verdict (chain checks included) */
} mf_wal_file_report;

typedef void (*mf_wal_report_fn)(void *ctx, const mf_wal_file_report *r);

/* Walk the WAL of dir in replay order (sealed segments named > snap_lsn
 * ascending, then memflux.wal), calling fn for every valid record read, in
 * LSN order (those <= snap_lsn too: the caller skips them); the records
 * above snap_lsn must be contiguous from snap_lsn+1 (a gap or an
 * overlap between segments, a sealed segment whose last LSN is not its
 * name, is a REFUSE), and report (may be NULL) once per file.  Stops at the
 * first REFUSE.  *out is the overall verdict: KEEP, CUT (of memflux.wal
 * only) or REFUSE; *last_lsn the last LSN passed to fn (or snap_lsn).
 * Returns 0, fn's nonzero value, or -errno (listing or reading). */
int mf_wal_walk(mf_io *io, const char *dir, uint64_t snap_lsn, mf_wal_record_fn fn,
                void *ctx, mf_wal_report_fn report, void *rctx, mf_wal_verdict *out,
                uint64_t *last_lsn);

typedef struct mf_wal_seg {
	uint64_t lsn;             /* from the name: last LSN it holds */
	char *path;
	uint64_t size;
} mf_wal_seg;

/* The sealed segments of dir (memflux.wal.<16 hex digits>, nothing else),
 * ascending by lsn, with their sizes.  Returns the count (*segs malloc'd,
 * free with mf_wal_segs_free) or -errno. */
int mf_wal_list_sealed(mf_io *io, const char *dir, mf_wal_seg **segs);
void mf_wal_segs_free(mf_wal_seg *segs, int n);

/* "<dir>/<name>" in a malloc'd string. */
char *mf_wal_path(const char *dir, const char *name);

#endif
