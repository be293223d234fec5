/*
 * test_wal_record.c — CRC32C and WAL record encode/decode.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "crc32c.h"
#include "record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* xorshift64*: deterministic, seeded. */
static uint64_t rng_state;
static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	rng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static mf_op make_op(int type, int ktype, const void *k, size_t kl, const void *k2,
                     size_t k2l, const void *v, size_t vl, int64_t t, uint64_t arg,
                     uint64_t lsn)
{
	mf_op op;
	memset(&op, 0, sizeof op);
	op.type = (uint8_t)type;
	op.ktype = (uint8_t)ktype;
	op.key = mf_slice_from(k, kl, kl);
	op.key2 = mf_slice_from(k2, k2l, k2l);
	op.val = mf_slice_from(v, vl, vl);
	op.time_ns = t;
	op.arg = arg;
	op.lsn = lsn;
	return op;
}

static void assert_slice_eq(mf_slice a, mf_slice b)
{
	assert_int_equal(a.len, b.len);
	if (a.len)
		assert_memory_equal(mf_slice_ptr(a), mf_slice_ptr(b), a.len);
}

static void assert_op_eq(const mf_op *a, const mf_op *b)
{
	assert_int_equal(a->type, b->type);
	assert_int_equal(a->ktype, b->ktype);
	assert_int_equal(a->lsn, b->lsn);
	assert_int_equal(a->time_ns, b->time_ns);
	assert_int_equal(a->arg, b->arg);
	assert_slice_eq(a->key, b->key);
	assert_slice_eq(a->key2, b->key2);
	assert_slice_eq(a->val, b->val);
}

/* ---- CRC32C ---- */

static void test_crc_known_answer(void **state)
{
	(void)state;
	const char *s = "123456789";
	assert_int_equal(mf_crc32c(s, 9), 0xE3069283u);
	assert_int_equal(mf_crc32c_extend_sw(0, s, 9), 0xE3069283u);
	if (mf_crc32c_hw_available())
		assert_int_equal(mf_crc32c_extend_hw(0, s, 9), 0xE3069283u);
	else
		print_message("(no SSE4.2: hardware path not exercised)\n");
	/* RFC 3720 (iSCSI) vectors: 32 bytes of zeros / of 0xff. */
	uint8_t z[32], f[32];
	memset(z, 0, sizeof z);
	memset(f, 0xff, sizeof f);
	assert_int_equal(mf_crc32c_extend_sw(0, z, 32), 0x8A9136AAu);
	assert_int_equal(mf_crc32c_extend_sw(0, f, 32), 0x62A8AB43u);
	assert_int_equal(mf_crc32c(z, 32), 0x8A9136AAu);
	assert_int_equal(mf_crc32c(f, 32), 0x62A8AB43u);
	assert_int_equal(mf_crc32c("", 0), 0);
}

static void test_crc_hw_equals_sw(void **state)
{
	(void)state;
	rng_state = 12345;
	size_t n = 70000;
	uint8_t *buf = malloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)rnd();
	for (int iter = 0; iter < 300; iter++) {
		size_t off = rnd() % 64, len = rnd() % (n - 64);
		if (iter < 100)
			len = (size_t)iter;  /* every short length */
		uint32_t sw = mf_crc32c_extend_sw(0, buf + off, len);
		assert_int_equal(mf_crc32c(buf + off, len), sw);
		if (mf_crc32c_hw_available())
			assert_int_equal(mf_crc32c_extend_hw(0, buf + off, len), sw);
		/* extend == whole, at any split point */
		size_t cut = len ? rnd() % len : 0;
		uint32_t c = mf_crc32c(buf + off, cut);
		assert_int_equal(mf_crc32c_extend(c, buf + off + cut, len - cut), sw);
		assert_int_equal(mf_crc32c_extend_sw(mf_crc32c_extend_sw(0, buf + off, cut),
		                                     buf + off + cut, len - cut), sw);
	}
	free(buf);
}

static void test_crc_mask(void **state)
{
	(void)state;
	rng_state = 99;
	for (int i = 0; i < 1000; i++) {
		uint32_t c = (uint32_t)rnd();
		assert_int_equal(mf_crc32c_unmask(mf_crc32c_mask(c)), c);
		assert_int_not_equal(mf_crc32c_mask(c), c);
	}
}

/* ---- records ---- */

/* Where the records of these tests live: some segment's salt, some offset. */
static const mf_wal_rec_place AT = {.salt = 0x1234567890abcdefULL, .off = 4096, .durable = 7};

static void roundtrip(const mf_op *op)
{
	assert_int_equal(mf_wal_record_validate(op), 0);
	size_t n;
	uint8_t *rec = mf_wal_record_encode(op, &AT, &n);
	assert_int_equal(n, mf_wal_record_size(op));
	mf_op out;
	size_t used = 0;
	const char *why = NULL;
	assert_int_equal(mf_wal_record_decode(rec, n, &AT, &out, &used, NULL, &why), MF_REC_OK);
	assert_int_equal(used, n);
	assert_op_eq(op, &out);
	/* Fresh buffers, not pointers into the record. */
	if (out.val.len)
		assert_true(mf_slice_ptr(out.val) < (const char *)rec ||
		            mf_slice_ptr(out.val) >= (const char *)rec + n);
	mf_op_clear(&out);
	/* Trailing bytes after the record do not matter. */
	uint8_t *big = malloc(n + 7);
	memcpy(big, rec, n);
	memset(big + n, 0xab, 7);
	assert_int_equal(mf_wal_record_decode(big, n + 7, &AT, &out, &used, NULL, &why), MF_REC_OK);
	assert_int_equal(used, n);
	mf_op_clear(&out);
	free(big);
	free(rec);
}

static void test_roundtrip_all_types(void **state)
{
	(void)state;
	static const char bin[] = {0, 1, 2, '\n', (char)0xff, 0, 'x'};
	static const char *keys[] = {"", "k", "a/b c\tnul"};
	for (int t = MF_OP_CREATE; t <= MF_OP_MAX_; t++) {
		if (!mf_optype_valid(t))
			continue; /* numbers reserved for later ops */
		for (int kt = MF_T_NONE; kt <= MF_T_MAX_; kt++) {
			for (int v = 0; v < 4; v++) {
				const void *val = v == 0 ? "" : v == 1 ? "hello" : bin;
				size_t vl = v == 0 ? 0 : v == 1 ? 5 : v == 2 ? sizeof bin : 1;
				const char *k = keys[(t + v) % 3];
				mf_op op = make_op(t, kt, k, strlen(k), bin, (size_t)(t % 3 ? sizeof bin : 0),
				                   val, vl, (int64_t)t * -123456789LL, (uint64_t)-1 - (uint64_t)t,
				                   (uint64_t)t << 40 | (uint64_t)v);
				roundtrip(&op);
				mf_op_clear(&op);
			}
		}
	}
	/* The folder ops (16..21) with their attribute blocks, and the largest
	 * ktype; one past them is refused by the decoder as damage. */
	uint8_t blk[MF_ATTR_B_LEN];
	mf_attr at = {0755, 1000, 100, -1, (int64_t)1 << 62}, back;
	mf_attr_encode(&at, blk, sizeof blk);
	mf_op d = make_op(MF_OP_SETATTR, MF_T_FOLDER, "a/b", 3, NULL, 0, blk, sizeof blk, 7,
	                  MF_ATTR_ALL_, 9);
	roundtrip(&d);
	mf_attr_decode(blk, sizeof blk, &back);
	assert_true(back.mode == at.mode && back.uid == at.uid && back.gid == at.gid &&
	            back.atime_ns == at.atime_ns && back.mtime_ns == at.mtime_ns);
	mf_op_clear(&d);
	d = make_op(MF_OP_RENAMEDIR, MF_T_FOLDER, "a/b", 3, "c", 1, NULL, 0, 7, 0, 10);
	size_t rl;
	uint8_t *enc = mf_wal_record_encode(&d, &AT, &rl);
	enc[25] = MF_T_MAX_ + 1; /* ktype out of range: bad before any checksum */
	mf_op out;
	size_t used;
	const char *why;
	assert_int_equal(mf_wal_record_decode(enc, rl, &AT, &out, &used, NULL, &why), MF_REC_BAD);
	enc[25] = MF_T_FOLDER;
	enc[24] = MF_OP_MAX_ + 1; /* type out of range */
	assert_int_equal(mf_wal_record_decode(enc, rl, &AT, &out, &used, NULL, &why), MF_REC_BAD);
	free(enc);
	mf_op_clear(&d);
	/* A key with NUL bytes inside. */
	mf_op op = make_op(MF_OP_RENAME, MF_T_STRING, "a\0b", 3, "\0", 1, NULL, 0, 1, 0, 1);
	roundtrip(&op);
	mf_op_clear(&op);
}

static void test_roundtrip_large(void **state)
{
	(void)state;
	size_t n = 8u << 20;
	uint8_t *v = malloc(n);
	rng_state = 7;
	for (size_t i = 0; i < n; i++)
		v[i] = (uint8_t)rnd();
	mf_op op = make_op(MF_OP_SET, MF_T_STRING, "big", 3, NULL, 0, v, n, 42, 0, 1000);
	roundtrip(&op);
	/* The head + in-place value form equals the contiguous encoding. */
	size_t hs = mf_wal_record_head_size(&op), total;
	assert_int_equal(hs, MF_WAL_REC_HEADER + 3);
	uint8_t *head = malloc(hs);
	mf_wal_record_encode_head(&op, &AT, head);
	uint8_t *whole = mf_wal_record_encode(&op, &AT, &total);
	assert_memory_equal(head, whole, hs);
	assert_memory_equal(whole + hs, v, n);
	/* A flip deep inside the value is caught. */
	whole[hs + n / 2] ^= 0x10;
	mf_op out;
	size_t used;
	const char *why;
	assert_int_equal(mf_wal_record_decode(whole, total, &AT, &out, &used, NULL, &why), MF_REC_BAD);
	free(whole);
	free(head);
	free(v);
	mf_op_clear(&op);
}

static void test_truncation_detected(void **state)
{
	(void)state;
	mf_op op = make_op(MF_OP_JSON_SETPATH, MF_T_JSON, "doc", 3, "a.b", 3, "{\"x\":1}", 7,
	                   5, 6, 77);
	size_t n;
	uint8_t *rec = mf_wal_record_encode(&op, &AT, &n);
	size_t before = mf_buf_bytes();
	for (size_t k = 0; k < n; k++) {
		/* Copy to an exactly-sized buffer so ASan catches any overread. */
		uint8_t *cut = malloc(k ? k : 1);
		memcpy(cut, rec, k);
		mf_op out;
		size_t used = 0;
		const char *why = NULL;
		int r = mf_wal_record_decode(cut, k, &AT, &out, &used, NULL, &why);
		assert_int_equal(r, MF_REC_SHORT);
		assert_non_null(why);
		free(cut);
	}
	assert_int_equal(mf_buf_bytes(), before);
	free(rec);
	mf_op_clear(&op);
}

static void test_bit_flips_detected(void **state)
{
	(void)state;
	rng_state = 0xC0FFEE;
	uint8_t val[300];
	for (size_t i = 0; i < sizeof val; i++)
		val[i] = (uint8_t)rnd();
	mf_op op = make_op(MF_OP_APPEND, MF_T_STRING, "key", 3, NULL, 0, val, sizeof val, 9,
	                   0, 12345);
	size_t n;
	uint8_t *rec = mf_wal_record_encode(&op, &AT, &n);
	uint8_t *buf = malloc(n);
	size_t before = mf_buf_bytes();
	int detected = 0;
	for (int iter = 0; iter < 20000; iter++) {
		memcpy(buf, rec, n);
		int flips = 1 + (int)(rnd() % 3);
		for (int f = 0; f < flips; f++) {
			size_t bit = rnd() % (n * 8);
			buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		}
		if (memcmp(buf, rec, n) == 0)
			continue;  /* two flips cancelled */
		mf_op out;
		size_t used;
		const char *why;
		int r = mf_wal_record_decode(buf, n, &AT, &out, &used, NULL, &why);
		assert_int_not_equal(r, MF_REC_OK);
		detected++;
	}
	assert_true(detected > 19000);
	/* Every single bit, exhaustively. */
	for (size_t bit = 0; bit < n * 8; bit++) {
		memcpy(buf, rec, n);
		buf[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		mf_op out;
		size_t used;
		const char *why;
		assert_int_not_equal(mf_wal_record_decode(buf, n, &AT, &out, &used, NULL, &why), MF_REC_OK);
	}
	assert_int_equal(mf_buf_bytes(), before);
	free(buf);
	free(rec);
	mf_op_clear(&op);
}

static void put32le(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_absurd_lengths(void **state)
{
	(void)state;
	mf_op op = make_op(MF_OP_SET, MF_T_STRING, "k", 1, NULL, 0, "v", 1, 0, 0, 1);
	size_t n;
	uint8_t *rec = mf_wal_record_encode(&op, &AT, &n);
	size_t before = mf_buf_bytes();
	static const uint32_t lens[] = {0, 1, 55, 0xffffffffu, 0x80000000u,
	                                MF_WAL_REC_MAX_LEN + 1};
	for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
		uint8_t b[80];
		memcpy(b, rec, n);
		put32le(b, lens[i]);
		mf_op out;
		size_t used;
		const char *why = NULL;
		int r = mf_wal_record_decode(b, n, &AT, &out, &used, NULL, &why);
		assert_int_equal(r, MF_REC_BAD);
		/* Even claiming a huge buffer: out of range is BAD, not SHORT. */
		mf_wal_rec_hdr h;
		assert_int_equal(mf_wal_rec_hdr_parse(b, UINT64_MAX, &AT, &h, &why), MF_REC_BAD);
	}
	/* Plausible and consistent, but not what was written: the header
	 * checksum catches it before the length is used (BAD, no alloc). */
	{
		uint8_t b[80];
		memcpy(b, rec, n);
		put32le(b, (1u << 30) + 57);
		put32le(b + 36, 1u << 30);
		mf_op out;
		size_t used;
		const char *why;
		assert_int_equal(mf_wal_record_decode(b, n, &AT, &out, &used, NULL, &why), MF_REC_BAD);
		assert_non_null(strstr(why, "header checksum"));
	}
	/* Field lengths that do not add up to len. */
	{
		uint8_t b[80];
		memcpy(b, rec, n);
		put32le(b + 36, 1u << 30);  /* vlen */
		mf_wal_rec_hdr h;
		const char *why;
		assert_int_equal(mf_wal_rec_hdr_parse(b, n, &AT, &h, &why), MF_REC_BAD);
		put32le(b + 36, 0xffffffffu);
		put32le(b + 28, 0xffffffffu);  /* klen: sums must not wrap */
		put32le(b + 32, 0xffffffffu);
		assert_int_equal(mf_wal_rec_hdr_parse(b, n, &AT, &h, &why), MF_REC_BAD);
	}
	/* Bad type, ktype, flags (checked even before the crc). */
	{
		uint8_t b[80];
		mf_wal_rec_hdr h;
		const char *why;
		memcpy(b, rec, n);
		b[24] = 0;
		assert_int_equal(mf_wal_rec_hdr_parse(b, n, &AT, &h, &why), MF_REC_BAD);
		b[24] = MF_OP_MAX_ + 1;
		assert_int_equal(mf_wal_rec_hdr_parse(b, n, &AT, &h, &why), MF_REC_BAD);
		memcpy(b, rec, n);
		b[25] = MF_T_LIST + 1;
		assert_int_equal(mf_wal_rec_hdr_parse(b, n, &AT, &h, &why), MF_REC_BAD);
		memcpy(b, rec, n);
		b[27] = 1;
		assert_int_equal(mf_wal_rec_hdr_parse(b, n, &AT, &h, &why), MF_REC_BAD);
	}
	assert_int_equal(mf_buf_bytes(), before);
	free(rec);
	mf_op_clear(&op);
}

static void test_validate(void **state)
{
	(void)state;
	mf_op op = make_op(MF_OP_SET, MF_T_STRING, "k", 1, NULL, 0, "v", 1, 0, 0, 1);
	assert_int_equal(mf_wal_record_validate(&op), 0);
	op.type = 0;
	assert_int_equal(mf_wal_record_validate(&op), -EINVAL);
	op.type = MF_OP_MAX_ + 1;
	assert_int_equal(mf_wal_record_validate(&op), -EINVAL);
	op.type = MF_OP_SET;
	op.ktype = (MF_T_MAX_ + 1);
	assert_int_equal(mf_wal_record_validate(&op), -EINVAL);
	op.ktype = MF_T_STRING;
	/* A fake 2 GiB length (never dereferenced by validate). */
	mf_slice saved = op.val;
	op.val.len = (size_t)2 << 30;
	assert_int_equal(mf_wal_record_validate(&op), -E2BIG);
	op.val.len = (size_t)1 << 30;  /* 1 GiB values must be accepted */
	assert_int_equal(mf_wal_record_validate(&op), 0);
	op.val = saved;
	mf_op_clear(&op);
}

static void test_file_header(void **state)
{
	(void)state;
	uint8_t h[MF_WAL_FILE_HEADER];
	const char *why = NULL;
	mf_wal_file_header_encode(h, 0xfeedULL, 41);
	assert_memory_equal(h, "MFWAL", 5);
	assert_int_equal(h[5], MF_WAL_VERSION);
	mf_wal_file_hdr fh;
	assert_int_equal(mf_wal_file_header_check(h, &fh, &why), 0);
	assert_int_equal(fh.salt, 0xfeedULL);
	assert_int_equal(fh.prev_lsn, 41);
	for (int i = 0; i < MF_WAL_FILE_HEADER; i++) {
		uint8_t b[MF_WAL_FILE_HEADER];
		memcpy(b, h, sizeof b);
		b[i] ^= 0x04;
		why = NULL;
		assert_int_equal(mf_wal_file_header_check(b, &fh, &why), -EBADMSG);
		assert_non_null(why);
	}
	uint8_t b[MF_WAL_FILE_HEADER];
	memcpy(b, h, sizeof b);
	b[0] = 'X';
	mf_wal_file_header_check(b, &fh, &why);
	assert_non_null(strstr(why, "magic"));
	memcpy(b, h, sizeof b);
	b[5] = 3;
	mf_wal_file_header_check(b, &fh, &why);
	assert_non_null(strstr(why, "version"));
	b[5] = 1;
	mf_wal_file_header_check(b, &fh, &why);
	assert_non_null(strstr(why, "version 1"));
	/* Salts differ between calls and are never 0. */
	uint64_t s1 = mf_wal_new_salt(), s2 = mf_wal_new_salt();
	assert_true(s1 != 0 && s2 != 0 && s1 != s2);
}

/* A record validates only in the segment (salt) and at the offset it was
 * written for: copies elsewhere — another segment, a value holding a WAL,
 * an older incarnation of the file — never pass. */
static void test_salt_and_offset_bind(void **state)
{
	(void)state;
	mf_op op = make_op(MF_OP_SET, MF_T_STRING, "k", 1, NULL, 0, "value", 5, 3, 4, 99);
	size_t n;
	uint8_t *rec = mf_wal_record_encode(&op, &AT, &n);
	mf_op out;
	size_t used;
	const char *why;
	mf_wal_rec_hdr h;
	assert_int_equal(mf_wal_record_decode(rec, n, &AT, &out, &used, &h, &why), MF_REC_OK);
	assert_int_equal(h.durable, 7);
	assert_int_equal(h.lsn, 99);
	mf_op_clear(&out);
	mf_wal_rec_place other = AT;
	other.salt ^= 1;
	assert_int_equal(mf_wal_record_decode(rec, n, &other, &out, &used, NULL, &why), MF_REC_BAD);
	assert_non_null(strstr(why, "header checksum"));
	other = AT;
	other.off += 1;
	assert_int_equal(mf_wal_record_decode(rec, n, &other, &out, &used, NULL, &why), MF_REC_BAD);
	other.off = AT.off + n;
	assert_int_equal(mf_wal_record_decode(rec, n, &other, &out, &used, NULL, &why), MF_REC_BAD);
	/* `durable` is covered by the header checksum. */
	rec[16] ^= 1;
	assert_int_equal(mf_wal_record_decode(rec, n, &AT, &out, &used, NULL, &why), MF_REC_BAD);
	free(rec);
	mf_op_clear(&op);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_known_answer),
		cmocka_unit_test(test_crc_hw_equals_sw),
		cmocka_unit_test(test_crc_mask),
		cmocka_unit_test(test_roundtrip_all_types),
		cmocka_unit_test(test_roundtrip_large),
		cmocka_unit_test(test_truncation_detected),
		cmocka_unit_test(test_bit_flips_detected),
		cmocka_unit_test(test_absurd_lengths),
		cmocka_unit_test(test_validate),
		cmocka_unit_test(test_file_header),
		cmocka_unit_test(test_salt_and_offset_bind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
