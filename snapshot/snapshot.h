/*
 * snapshot.h — LZ4-compressed snapshot of the whole store at one LSN.
 *
 * File: memflux.snapshot in the data dir; an LZ4 frame (content checksum on)
 * whose decompressed stream is described in snapshot/FORMAT.md: header
 * (magic, version, LSN, key count), the keys, and a trailer so a cut file is
 * told from a complete one.
 *
 * Writing: memflux.snapshot.tmp is written, fsynced, renamed over
 * memflux.snapshot, then the directory is fsynced.  Crash points (see
 * io/io.h): "snapshot-before-tmp", "snapshot-after-tmp-write",
 * "snapshot-after-tmp-fsync", "snapshot-after-rename",
 * "snapshot-after-dir-fsync".
 *
 * Threads: mf_snapshot_write runs on any thread; the items are references
 * the caller keeps alive.  Errors: -errno; a damaged file on load is
 * -EBADMSG with a message in err.
 */
#ifndef MF_SNAPSHOT_H
#define MF_SNAPSHOT_H

#include "../io/io.h"
#include "../store/store.h"

#define MF_SNAPSHOT_NAME "memflux.snapshot"
#define MF_SNAPSHOT_TMP_NAME "memflux.snapshot.tmp"

/* Raw stream layout constants (FORMAT.md). */
#define MF_SNAPSHOT_VERSION 2u            /* written; 1 and 2 are read */
#define MF_SNAPSHOT_MAGIC_LEN 6          /* "MFSNAP" */
#define MF_SNAPSHOT_TRAILER_MAGIC_LEN 5  /* "MFEND" */
#define MF_SNAPSHOT_HEADER_LEN 34        /* magic, u32 version, u64 lsn, u64 count, i64 created_ns */
#define MF_SNAPSHOT_RECORD_FIXED 27      /* v1: u8 type, i64 mtime, i64 ctime, u16 klen, u64 vlen */
#define MF_SNAPSHOT_ATTR_LEN 28          /* v2 adds: u32 mode, u32 uid, u32 gid, i64 atime, i64 expire */
#define MF_SNAPSHOT_TRAILER_LEN 21       /* magic, u64 count, u64 stream length */
#define MF_SNAPSHOT_MAX_KEY MF_KEY_BYTES_MAX /* 65535 (u16); empty is corruption */
#define MF_SNAPSHOT_MAX_VALUE MF_FILE_LEN_MAX  /* store/op.h; larger is corruption */
/* A record whose type byte has this bit holds a u64 zero-tail length after
 * the value length: the value is its bytes, then that many zero bytes not
 * stored (a hole, e.g. from truncate; FORMAT.md).  Written for a zero tail
 * of at least MF_SNAPSHOT_SPARSE_MIN bytes. */
#define MF_SNAPSHOT_SPARSE 0x80u
#define MF_SNAPSHOT_SPARSE_MIN 4096u

typedef struct mf_snapshot_info {
	uint64_t lsn;
	uint64_t keys;
	uint64_t declared_keys; /* the header's key count (once it is parsed) */
	uint64_t raw_bytes;   /* uncompressed stream */
	uint64_t file_bytes;  /* compressed file */
	double seconds;
} mf_snapshot_info;

/* Writes items[0..n) in order.  Items with a type outside 1..3 or a key of
 * length 0 or > MF_SNAPSHOT_MAX_KEY: -EINVAL; a value > MF_SNAPSHOT_MAX_VALUE:
 * -EFBIG (checked before anything is created).  On any failure before the
 * rename, the tmp file is removed and memflux.snapshot is untouched.  If
 * only the final directory fsync fails, the new file is already in place
 * but not known durable: the error is returned and the caller must not
 * drop WAL segments on the strength of this snapshot.
 * info (may be NULL) is filled in either case. */
int mf_snapshot_write(mf_io *io, const char *dir, uint64_t lsn,
                      const mf_item *items, size_t n, mf_snapshot_info *info);

/* Load memflux.snapshot: cb is called for each item, in file order (it
 * takes over the item's references, whether it succeeds or not; a negative
 * return stops the load and is returned as is).  cb may be NULL: the file is
 * then only verified.  info->lsn is set as soon as the header is parsed,
 * info->keys counts delivered items.  -ENOENT if there is no snapshot;
 * other open/read errors: -errno.  Items are NOT held back until the whole
 * file is verified: cb may have been called for some items before -EBADMSG
 * is returned; the caller must then discard the store (the daemon refuses
 * to mount). */
int mf_snapshot_load(mf_io *io, const char *dir,
                     int (*cb)(void *ctx, mf_item *item), void *ctx,
                     mf_snapshot_info *info, char *err, size_t errlen);

/* Remove stray memflux.snapshot.tmp (crash leftovers).  0 or -errno. */
int mf_snapshot_remove_tmp(mf_io *io, const char *dir);

#endif
