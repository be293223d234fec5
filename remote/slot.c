/*
 * slot.c — Redis Cluster key slots and the per-slot meta hash names.
 * Internals: remote_int.h.
 */
#include "remote_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the checksum the
 * cluster specification names for key slots.  Bitwise: a slot is computed
 * once per operation, so a table would buy nothing measurable. */
static uint16_t crc16(const unsigned char *p, size_t n)
{
	uint16_t crc = 0;
	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)(p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc;
}

/* Hash tags: if the key has a '{' followed later by a '}' with at least one
 * byte between them, only those bytes are hashed (so "{user1}.a" and
 * "{user1}.b" share a slot).  The first '{' and the first '}' after it
 * decide; "{}" hashes the whole key. */
unsigned rm_slot(const void *key, size_t len)
{
	const unsigned char *k = key;
	const unsigned char *open = memchr(k, '{', len);
	if (open) {
		size_t from = (size_t)(open - k) + 1;
		const unsigned char *close = memchr(k + from, '}', len - from);
		if (close && close > k + from)
			return crc16(k + from, (size_t)(close - (k + from))) % RM_SLOTS;
	}
	return crc16(k, len) % RM_SLOTS;
}

unsigned mf_remote_key_slot(const void *key, size_t len)
{
	return rm_slot(key, len);
}

/* For every slot, a short alphanumeric string that hashes to it: the tag of
 * that slot's meta hash.  All strings of 1..3 characters from 62 symbols
 * (242,235 of them) cover the 16384 slots (checked: a slot left without a
 * tag aborts, never silently shares a hash).  A pure function of nothing,
 * so computed once per process (about 2 ms) and shared. */
static char tags[RM_SLOTS][RM_TAG_MAX];
static pthread_once_t tags_once = PTHREAD_ONCE_INIT;

static void tags_init(void)
{
	static const char sym[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	const size_t ns = sizeof sym - 1;
	size_t left = RM_SLOTS;
	char s[RM_TAG_MAX];
	for (size_t len = 1; len < RM_TAG_MAX && left; len++) {
		size_t total = 1;
		for (size_t i = 0; i < len; i++)
			total *= ns;
		for (size_t v = 0; v < total && left; v++) {
			size_t x = v;
			for (size_t i = 0; i < len; i++, x /= ns)
				s[i] = sym[x % ns];
			unsigned slot = crc16((const unsigned char *)s, len) % RM_SLOTS;
			if (!tags[slot][0]) {
				memcpy(tags[slot], s, len);
				left--;
			}
		}
	}
	if (left) {
		fprintf(stderr, "memfluxfs: internal error: %zu cluster slots without a tag\n", left);
		abort();
	}
}

size_t mf_remote_meta_key(const void *key, size_t len, char *buf)
{
	pthread_once(&tags_once, tags_init);
	return (size_t)sprintf(buf, "__mf:{%s}", tags[rm_slot(key, len)]);
}
