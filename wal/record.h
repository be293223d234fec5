/*
 * record.h — WAL segment header and record encoding (format: wal/FORMAT.md),
 * plus the internal file scanner shared by replay (wal.c) and memflux-check.
 *
 * Record, all integers little-endian:
 *    0  u32 len        bytes after the crc field (= 40 + klen + k2len + vlen)
 *    4  u32 crc        masked CRC-32C of those len bytes
 *    8  u64 lsn
 *   16  u8  type       mf_optype, 1..MF_OP_MAX_
 *   17  u8  ktype      mf_type, 0..3
 *   18  u16 flags      0
 *   20  u32 klen
 *   24  u32 k2len
 *   28  u32 vlen
 *   32  i64 time_ns
 *   40  u64 arg
 *   48  key, key2, val bytes
 */
#ifndef MF_WAL_RECORD_H
#define MF_WAL_RECORD_H

#include "../io/io.h"
#include "../store/op.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_WAL_MAGIC "MFWAL"
#define MF_WAL_VERSION 1
#define MF_WAL_FILE_HEADER 16          /* bytes at offset 0 of a segment */
#define MF_WAL_REC_HEADER 48           /* fixed part of a record */
#define MF_WAL_REC_FIXED_BODY 40       /* fixed part counted by len */
/* Largest len accepted (1.5 GiB): a 1 GiB value fits with room to spare;
 * anything larger in a file is corruption and is never allocated. */
#define MF_WAL_REC_MAX_LEN ((uint32_t)1536 << 20)

#define MF_WAL_ACTIVE_NAME "memflux.wal"

/* ---- file header ---- */

void mf_wal_file_header_encode(uint8_t out[MF_WAL_FILE_HEADER]);
/* 0, or -EBADMSG with *why set ("bad magic", "unsupported version ...",
 * "header checksum mismatch"). */
int mf_wal_file_header_check(const uint8_t in[MF_WAL_FILE_HEADER], const char **why);

/* ---- encoding ---- */

/* 0; -EINVAL for an out-of-range type/ktype; -E2BIG if the record would
 * exceed MF_WAL_REC_MAX_LEN. */
int mf_wal_record_validate(const mf_op *op);
/* Bytes before the value: 48 + klen + k2len. */
size_t mf_wal_record_head_size(const mf_op *op);
/* Whole record: head + vlen. */
size_t mf_wal_record_size(const mf_op *op);
/* Write the head (header + key + key2, with len and the crc filled in) to
 * dst, which has mf_wal_record_head_size(op) bytes.  The crc covers the
 * value too, read in place from op->val: the writer then sends
 * {head, value} with one pwritev and never copies a big value.  op->lsn is
 * written as is.  The op must pass mf_wal_record_validate. */
void mf_wal_record_encode_head(const mf_op *op, uint8_t *dst);
/* Convenience (tests, tools): the whole record in a malloc'd buffer. */
uint8_t *mf_wal_record_encode(const mf_op *op, size_t *len);

/* ---- decoding ---- */

enum {
	MF_REC_OK = 0,
	MF_REC_SHORT = 1,  /* the bytes end before the record does (torn) */
	MF_REC_BAD = 2,    /* impossible header or checksum mismatch */
};

typedef struct mf_wal_rec_hdr {
	uint32_t len, crc;          /* crc as stored (masked) */
	uint64_t lsn;
	uint8_t type, ktype;
	uint16_t flags;
	uint32_t klen, k2len, vlen;
	int64_t time_ns;
	uint64_t arg;
} mf_wal_rec_hdr;

/* Parse and sanity-check the fixed header of a record that has `avail`
 * bytes to the end of the file; p holds min(avail, 48) of them.  Checks
 * len range, that the record fits in avail, type/ktype/flags ranges and
 * len == 40 + klen + k2len + vlen.  Nothing is trusted until the crc has
 * been verified as well (mf_wal_rec_crc_ok or mf_wal_record_decode).
 * Returns MF_REC_OK / MF_REC_SHORT / MF_REC_BAD, *why set when not OK. */
int mf_wal_rec_hdr_parse(const uint8_t *p, uint64_t avail, mf_wal_rec_hdr *h,
                         const char **why);

/* Decode one record from memory: p holds avail bytes.  On MF_REC_OK *op
 * is filled with fresh slices (caller mf_op_clear()s) and *reclen is the
 * record size; otherwise *op is untouched and nothing was allocated. */
int mf_wal_record_decode(const uint8_t *p, size_t avail, mf_op *op,
                         size_t *reclen, const char **why);

/* ---- files (internal API for replay and memflux-check, in wal.c) ---- */

enum {
	MF_SCAN_OK = 0,           /* the file is a header and valid records */
	MF_SCAN_TORN = 1,         /* bad bytes from bad_off to EOF, no valid
	                             record after them: a torn tail */
	MF_SCAN_CORRUPT = 2,      /* bad record at bad_off, valid at next_off */
	MF_SCAN_BAD_LSN = 3,      /* valid record at bad_off, lsn not increasing */
	MF_SCAN_BAD_HEADER = 4,   /* file header wrong */
	MF_SCAN_SHORT_HEADER = 5, /* file shorter than its header (torn create) */
};

typedef struct mf_wal_scan {
	int status;               /* MF_SCAN_* */
	const char *why;          /* what is wrong at bad_off (static string) */
	uint64_t file_size;
	uint64_t records;         /* valid records before bad_off */
	uint64_t first_lsn, last_lsn; /* of those records (0 if none) */
	uint64_t good_end;        /* offset just past the last valid record */
	uint64_t bad_off;         /* status != OK: first bad byte */
	uint64_t next_off;        /* CORRUPT: offset of the later valid record */
} mf_wal_scan;

/* Called per valid record, in file order.  op's slices are freed after the
 * call (take references to keep them).  Nonzero stops the scan and is
 * returned by mf_wal_scan_file. */
typedef int (*mf_wal_record_fn)(void *ctx, mf_op *op, uint64_t off);

/* Walk one segment file with bounded memory (a 1 MiB read buffer; values
 * are read straight into their slices).  Records must have lsn > prev_lsn
 * and strictly increase.  fn NULL: verify only, nothing is decoded or
 * allocated per record.  Returns 0 (the verdict is in *out), the nonzero
 * value fn returned, or -errno (I/O; -ENOENT if the file is missing). */
int mf_wal_scan_file(mf_io *io, const char *path, uint64_t prev_lsn,
                     mf_wal_record_fn fn, void *ctx, mf_wal_scan *out);

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
