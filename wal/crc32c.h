/*
 * crc32c.h — CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
 *
 * The checksum of WAL records and segment headers (wal/FORMAT.md).  Uses
 * the SSE4.2 crc32 instruction when the CPU has it (checked once at run
 * time), otherwise a slicing-by-8 table.  Both give identical results.
 *
 * Conventions (the same as LevelDB's crc32c::Extend):
 *   mf_crc32c(p, n)              the standard CRC-32C of p[0..n)
 *   mf_crc32c_extend(c, p, n)    == mf_crc32c(a || p) when c == mf_crc32c(a),
 *                                so a record can be checksummed in pieces
 *                                (header, then a 256 MiB value in place).
 * Known answer: mf_crc32c("123456789", 9) == 0xE3069283.
 *
 * Masking: a CRC stored next to data that itself may contain CRCs (a WAL
 * file stored as a value, say) is stored masked, as LevelDB does:
 * rotate right by 15 bits and add a constant.  mf_crc32c_unmask inverts it.
 */
#ifndef MF_CRC32C_H
#define MF_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint32_t mf_crc32c_extend(uint32_t crc, const void *p, size_t n);

static inline uint32_t mf_crc32c(const void *p, size_t n)
{
	return mf_crc32c_extend(0, p, n);
}

/* The two implementations, for tests and benchmarks.  mf_crc32c_hw must only
 * be called when mf_crc32c_hw_available() is true. */
uint32_t mf_crc32c_extend_sw(uint32_t crc, const void *p, size_t n);
uint32_t mf_crc32c_extend_hw(uint32_t crc, const void *p, size_t n);
bool mf_crc32c_hw_available(void);

#define MF_CRC32C_MASK_DELTA 0xa282ead8u

static inline uint32_t mf_crc32c_mask(uint32_t crc)
{
	return ((crc >> 15) | (crc << 17)) + MF_CRC32C_MASK_DELTA;
}

static inline uint32_t mf_crc32c_unmask(uint32_t masked)
{
	uint32_t rot = masked - MF_CRC32C_MASK_DELTA;
	return (rot >> 17) | (rot << 15);
}

#endif
