/*
 * test_snapshot.c — snapshot/ unit tests: round trip, lz4 CLI compatibility,
 * truncation and bit flips, hand-made malformed streams, I/O faults through
 * a test double of the mf_io seam, and the named crash points (by re-running
 * this binary with MEMFLUX_CRASH_AT set).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../snapshot/snapshot.h"
#include "faultio.h"

/* ---- helpers ------------------------------------------------------------ */

static char *path_in(const char *dir, const char *name)
{
	static char buf[4][PATH_MAX];
	static int i;
	char *p = buf[i++ & 3];
	snprintf(p, PATH_MAX, "%s/%s", dir, name);
	return p;
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

static unsigned char *slurp(const char *path, size_t *len)
{
	*len = 0; /* set on every path: gcc -O3 sees the NULL return leave it unset */
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	size_t cap = 4096, n = 0;
	unsigned char *b = malloc(cap);
	size_t r;
	while ((r = fread(b + n, 1, cap - n, f)) > 0) {
		n += r;
		if (n == cap)
			b = realloc(b, cap *= 2);
	}
	fclose(f);
	*len = n;
	return b;
}

static void spit(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	if (n)
		assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void rm_rf(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			unlink(path_in(dir, e->d_name));
	}
	closedir(d);
	rmdir(dir);
}

static int setup_dir(void **state)
{
	char *t = strdup("/tmp/test_snapshot.XXXXXX");
	if (!mkdtemp(t))
		return -1;
	*state = t;
	return 0;
}

static int teardown_dir(void **state)
{
	rm_rf(*state);
	free(*state);
	return 0;
}

static mf_item mk(uint8_t type, const void *k, size_t kl, const void *v, size_t vl,
                  int64_t mt, int64_t ct)
{
	mf_item it;
	memset(&it, 0, sizeof it);
	it.mode = MF_MODE_DEFAULT;
	it.uid = it.gid = MF_ID_DEFAULT;
	it.atime_ns = mt;
	it.type = type;
	it.key = mf_slice_from(k, kl, kl);
	it.val = mf_slice_from(v, vl, vl);
	it.mtime_ns = mt;
	it.ctime_ns = ct;
	return it;
}

static void free_items(mf_item *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mf_slice_unref(&v[i].key);
		mf_slice_unref(&v[i].val);
	}
	free(v);
}

typedef struct coll {
	mf_item *v;
	size_t n, cap;
	size_t fail_at;   /* 1-based; return -EEXIST for that item */
} coll;

static int collect(void *ctx, mf_item *it)
{
	coll *c = ctx;
	if (c->fail_at && c->n + 1 == c->fail_at) {
		mf_slice_unref(&it->key);
		mf_slice_unref(&it->val);
		return -EEXIST;
	}
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->v = realloc(c->v, c->cap * sizeof *c->v);
	}
	c->v[c->n++] = *it;
	return 0;
}

static void coll_free(coll *c)
{
	free_items(c->v, c->n);
	memset(c, 0, sizeof *c);
}

static void assert_items_equal(const mf_item *a, const mf_item *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(a[i].type, b[i].type);
		assert_int_equal(a[i].mtime_ns, b[i].mtime_ns);
		assert_int_equal(a[i].ctime_ns, b[i].ctime_ns);
		assert_int_equal(a[i].key.len, b[i].key.len);
		assert_int_equal(memcmp(mf_slice_ptr(a[i].key), mf_slice_ptr(b[i].key), a[i].key.len), 0);
		assert_int_equal(a[i].val.len, b[i].val.len);
		assert_true(memcmp(mf_slice_ptr(a[i].val), mf_slice_ptr(b[i].val), a[i].val.len) == 0);
	}
}

static uint64_t rng_state = 88172645463325252ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* A mixed item set: every type, empty value, NULs, a 255-byte key, a value
 * bigger than the writer's 1 MiB stage (half random, half text), and
 * `small` small keys. */
static mf_item *make_items(size_t small, size_t big, size_t *n_out)
{
	size_t cap = small + 16, n = 0;
	mf_item *v = calloc(cap, sizeof *v);
	v[n++] = mk(MF_T_STRING, "hello", 5, "world\n", 6, 1, 2);
	v[n++] = mk(MF_T_JSON, "doc.json", 8, "{\"a\":[1,2,{\"b\":null}]}", 22, -5, INT64_MAX);
	v[n++] = mk(MF_T_LIST, "queue", 5, "one\ntwo\nthree\n", 14, INT64_MIN, 0);
	v[n++] = mk(MF_T_STRING, "empty", 5, "", 0, 123456789012345678LL, 3);
	v[n++] = mk(MF_T_LIST, "emptylist", 9, "", 0, 7, 8);
	const char bin[] = {0, 1, 0, 2, 0, (char)0xff, 0, '\n', 0};
	v[n++] = mk(MF_T_STRING, "bin\0ary", 7, bin, sizeof bin, 9, 10);
	char longkey[255];
	for (int i = 0; i < 255; i++)
		longkey[i] = (char)('a' + i % 26);
	v[n++] = mk(MF_T_STRING, longkey, 255, "L", 1, 11, 12);
	if (big) {
		unsigned char *b = malloc(big);
		for (size_t i = 0; i < big; i++)
			b[i] = i < big / 2 ? (unsigned char)rnd() : (unsigned char)("memflux "[i % 8]);
		v[n++] = mk(MF_T_STRING, "big", 3, b, big, 13, 14);
		free(b);
	}
	for (size_t i = 0; i < small; i++) {
		char k[32], val[64];
		int kl = snprintf(k, sizeof k, "k%06zu", i);
		int vl = snprintf(val, sizeof val, "value-%zu-%llu\n", i, (unsigned long long)(rnd() % 1000));
		v[n++] = mk((uint8_t)(1 + i % 3), k, (size_t)kl, val, (size_t)vl,
		            (int64_t)i * 1000, (int64_t)i * 1001);
	}
	*n_out = n;
	return v;
}

static int load(const char *dir, coll *c, mf_snapshot_info *info, char *err, size_t errlen)
{
	return mf_snapshot_load(mf_io_posix(), dir, collect, c, info, err, errlen);
}

/* ---- I/O test doubles ---------------------------------------------------
 * Faults come from tests/unit/faultio.h.  It wraps `shapeio`, a thin layer
 * of our own that shapes successful calls (capped reads, writes that make
 * only half progress) and counts open descriptors so leaks are caught. */

typedef struct shapeio {
	mf_io io;             /* first: the functions cast back */
	bool always_short;    /* every pwritev writes at most half (>= 1 byte) */
	size_t read_max;      /* cap per pread; 0: none */
	int open_fds;
} shapeio;

static mf_io *P(void) { return mf_io_posix(); }

static int s_open(mf_io *io, const char *path, int flags, mode_t mode)
{
	int fd = P()->open(P(), path, flags, mode);
	if (fd >= 0)
		((shapeio *)io)->open_fds++;
	return fd;
}

static ssize_t s_pread(mf_io *io, int fd, void *buf, size_t n, off_t off)
{
	shapeio *s = (shapeio *)io;
	if (s->read_max && n > s->read_max)
		n = s->read_max;
	return P()->pread(P(), fd, buf, n, off);
}

static ssize_t s_pwritev(mf_io *io, int fd, const struct iovec *iov, int iovcnt, off_t off)
{
	if (((shapeio *)io)->always_short && iovcnt >= 1) {
		struct iovec one = iov[0];
		if (one.iov_len > 1)
			one.iov_len /= 2;
		return P()->pwritev(P(), fd, &one, 1, off);
	}
	return P()->pwritev(P(), fd, iov, iovcnt, off);
}

static int s_close(mf_io *io, int fd)
{
	((shapeio *)io)->open_fds--;
	return P()->close(P(), fd);
}

static int s_fsync(mf_io *io, int fd) { (void)io; return P()->fsync(P(), fd); }
static int s_ftruncate(mf_io *io, int fd, off_t len) { (void)io; return P()->ftruncate(P(), fd, len); }
static int s_fstat_size(mf_io *io, int fd, off_t *sz) { (void)io; return P()->fstat_size(P(), fd, sz); }
static int s_rename(mf_io *io, const char *a, const char *b) { (void)io; return P()->rename(P(), a, b); }
static int s_unlink(mf_io *io, const char *path) { (void)io; return P()->unlink(P(), path); }
static int s_fsync_dir(mf_io *io, const char *dir) { (void)io; return P()->fsync_dir(P(), dir); }

static shapeio shapeio_new(void)
{
	shapeio s;
	memset(&s, 0, sizeof s);
	s.io = (mf_io){
		.open = s_open, .pread = s_pread, .pwritev = s_pwritev,
		.fsync = s_fsync, .ftruncate = s_ftruncate, .fstat_size = s_fstat_size,
		.close = s_close, .rename = s_rename, .unlink = s_unlink,
		.fsync_dir = s_fsync_dir, .ctx = NULL,
	};
	return s;
}

/* ---- round trip --------------------------------------------------------- */

static void test_roundtrip(void **state)
{
	const char *dir = *state;
	size_t n;
	mf_item *items = make_items(10000, (5u << 20) + 123, &n);
	mf_snapshot_info wi, li;
	assert_int_equal(mf_snapshot_write(P(), dir, 4242, items, n, &wi), 0);
	assert_int_equal(wi.lsn, 4242);
	assert_int_equal(wi.keys, n);
	struct stat st;
	assert_int_equal(stat(path_in(dir, MF_SNAPSHOT_NAME), &st), 0);
	assert_int_equal(wi.file_bytes, (uint64_t)st.st_size);
	assert_true(wi.raw_bytes > (5u << 20));
	assert_true(wi.seconds >= 0);
	assert_false(exists(path_in(dir, MF_SNAPSHOT_TMP_NAME)));
	assert_int_equal(st.st_mode & 0777, 0600);

	coll c = {0};
	char err[256] = "";
	assert_int_equal(load(dir, &c, &li, err, sizeof err), 0);
	assert_string_equal(err, "");
	assert_int_equal(c.n, n);
	assert_items_equal(items, c.v, n);
	assert_int_equal(li.lsn, 4242);
	assert_int_equal(li.keys, n);
	assert_int_equal(li.raw_bytes, wi.raw_bytes);
	assert_int_equal(li.file_bytes, wi.file_bytes);
	coll_free(&c);

	/* Verify-only load (cb NULL). */
	assert_int_equal(mf_snapshot_load(P(), dir, NULL, NULL, &li, err, sizeof err), 0);
	assert_int_equal(li.keys, n);

	/* Overwrite with a different, empty snapshot. */
	assert_int_equal(mf_snapshot_write(P(), dir, 7, NULL, 0, &wi), 0);
	assert_int_equal(load(dir, &c, &li, err, sizeof err), 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(li.lsn, 7);
	assert_int_equal(li.raw_bytes, MF_SNAPSHOT_HEADER_LEN + MF_SNAPSHOT_TRAILER_LEN);
	free_items(items, n);
}

/* Short reads on load (7 bytes per pread) still parse exactly. */
static void test_load_short_reads(void **state)
{
	const char *dir = *state;
	size_t n;
	mf_item *items = make_items(300, 1500000, &n);
	assert_int_equal(mf_snapshot_write(P(), dir, 9, items, n, NULL), 0);
	shapeio sh = shapeio_new();
	sh.read_max = 7;
	coll c = {0};
	mf_snapshot_info li;
	char err[256];
	assert_int_equal(mf_snapshot_load(&sh.io, dir, collect, &c, &li, err, sizeof err), 0);
	assert_int_equal(c.n, n);
	assert_items_equal(items, c.v, n);
	assert_int_equal(sh.open_fds, 0);
	coll_free(&c);
	free_items(items, n);
}

static void test_load_missing(void **state)
{
	const char *dir = *state;
	coll c = {0};
	char err[256];
	assert_int_equal(load(dir, &c, NULL, err, sizeof err), -ENOENT);
	assert_int_equal(c.n, 0);
}

/* The callback's error stops the load and comes back unchanged. */
static void test_load_cb_error(void **state)
{
	const char *dir = *state;
	size_t n;
	mf_item *items = make_items(20, 0, &n);
	assert_int_equal(mf_snapshot_write(P(), dir, 1, items, n, NULL), 0);
	coll c = {0};
	c.fail_at = 4;
	char err[256];
	assert_int_equal(load(dir, &c, NULL, err, sizeof err), -EEXIST);
	assert_int_equal(c.n, 3);
	assert_non_null(strstr(err, "record 3"));
	coll_free(&c);
	free_items(items, n);
}

static void test_invalid_items(void **state)
{
	const char *dir = *state;
	mf_item it = mk(0, "k", 1, "v", 1, 0, 0);
	assert_int_equal(mf_snapshot_write(P(), dir, 1, &it, 1, NULL), -EINVAL);
	it.type = (MF_T_MAX_ + 1);
	assert_int_equal(mf_snapshot_write(P(), dir, 1, &it, 1, NULL), -EINVAL);
	mf_slice_unref(&it.key);
	it.type = MF_T_STRING;
	assert_int_equal(mf_snapshot_write(P(), dir, 1, &it, 1, NULL), -EINVAL); /* empty key */
	static char k[MF_SNAPSHOT_MAX_KEY + 1];
	memset(k, 'x', sizeof k);
	it.key = mf_slice_from(k, sizeof k, sizeof k);
	assert_int_equal(mf_snapshot_write(P(), dir, 1, &it, 1, NULL), -EINVAL);
	mf_slice_unref(&it.key);
	it.key = mf_slice_from(k, 1, 1);
	mf_slice big = it.val;
	/* Only the length is looked at before the value is refused. */
	it.val = (mf_slice){NULL, 0, (size_t)MF_SNAPSHOT_MAX_VALUE + 1};
	assert_int_equal(mf_snapshot_write(P(), dir, 1, &it, 1, NULL), -EFBIG);
	it.val = big;
	mf_slice_unref(&it.key);
	mf_slice_unref(&it.val);
	assert_false(exists(path_in(dir, MF_SNAPSHOT_NAME)));
	assert_false(exists(path_in(dir, MF_SNAPSHOT_TMP_NAME)));
}

/* ---- lz4 CLI compatibility ---------------------------------------------- */

static uint64_t le64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static void test_lz4_cli(void **state)
{
	const char *dir = *state;
	size_t n;
	mf_item *items = make_items(1000, 2000000, &n);
	mf_snapshot_info wi;
	assert_int_equal(mf_snapshot_write(P(), dir, 0x0102030405060708ULL, items, n, &wi), 0);
	char cmd[PATH_MAX + 64];
	snprintf(cmd, sizeof cmd, "lz4 -dc '%s'", path_in(dir, MF_SNAPSHOT_NAME));
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	size_t cap = wi.raw_bytes + 1, len = 0, r;
	unsigned char *raw = malloc(cap);
	while (len < cap && (r = fread(raw + len, 1, cap - len, p)) > 0)
		len += r;
	assert_int_equal(pclose(p), 0);
	assert_int_equal(len, wi.raw_bytes);
	assert_memory_equal(raw, "MFSNAP", 6);
	assert_int_equal(raw[6] | raw[7] << 8 | raw[8] << 16 | (uint32_t)raw[9] << 24, MF_SNAPSHOT_VERSION);
	assert_int_equal(le64(raw + 10), 0x0102030405060708ULL);
	assert_int_equal(le64(raw + 18), n);
	/* The first record is items[0]. */
	const unsigned char *r0 = raw + MF_SNAPSHOT_HEADER_LEN;
	assert_int_equal(r0[0], items[0].type);
	assert_int_equal(r0[17] | r0[18] << 8, items[0].key.len);
	assert_memory_equal(r0 + 19, "hello", 5);
	assert_int_equal(le64(r0 + 24), 6);
	assert_memory_equal(r0 + 32, "world\n", 6);
	/* Trailer. */
	const unsigned char *t = raw + len - MF_SNAPSHOT_TRAILER_LEN;
	assert_memory_equal(t, "MFEND", 5);
	assert_int_equal(le64(t + 5), n);
	assert_int_equal(le64(t + 13), len);
	free(raw);
	free_items(items, n);
}

/* ---- truncation and bit flips ------------------------------------------- */

/* Load `len` bytes of img as the snapshot in dir; must be -EBADMSG. */
static void expect_bad(const char *dir, const unsigned char *img, size_t len, const char *what,
                       size_t where)
{
	spit(path_in(dir, MF_SNAPSHOT_NAME), img, len);
	coll c = {0};
	char err[512] = "";
	mf_snapshot_info li;
	int rc = load(dir, &c, &li, err, sizeof err);
	if (rc != -EBADMSG)
		fail_msg("%s at %zu: load returned %d (%s), want -EBADMSG", what, where, rc, err);
	if (!strstr(err, "snapshot ") || !strstr(err, "raw offset"))
		fail_msg("%s at %zu: bad message '%s'", what, where, err);
	coll_free(&c);
}

static void test_truncated(void **state)
{
	const char *dir = *state;
	size_t n;
	/* Small file: every cut point. */
	mf_item *items = make_items(30, 0, &n);
	assert_int_equal(mf_snapshot_write(P(), dir, 5, items, n, NULL), 0);
	size_t len;
	unsigned char *img = slurp(path_in(dir, MF_SNAPSHOT_NAME), &len);
	assert_non_null(img);
	for (size_t cut = 0; cut < len; cut++)
		expect_bad(dir, img, cut, "small cut", cut);
	free(img);
	free_items(items, n);

	/* Larger file, several LZ4 blocks: the first and last 100 bytes, every
	 * block boundary region, and 500 points in between. */
	items = make_items(2000, 3000000, &n);
	assert_int_equal(mf_snapshot_write(P(), dir, 6, items, n, NULL), 0);
	img = slurp(path_in(dir, MF_SNAPSHOT_NAME), &len);
	assert_true(len > 1500000); /* > one 1 MiB LZ4 block */
	for (size_t cut = 0; cut < 100; cut++)
		expect_bad(dir, img, cut, "big cut", cut);
	for (size_t cut = len - 100; cut < len; cut++)
		expect_bad(dir, img, cut, "big cut", cut);
	for (size_t i = 1; i < 500; i++)
		expect_bad(dir, img, len / 500 * i + i % 7, "big cut", len / 500 * i + i % 7);
	/* And the intact file still loads (the loop really wrote the file). */
	spit(path_in(dir, MF_SNAPSHOT_NAME), img, len);
	coll c = {0};
	char err[256];
	assert_int_equal(load(dir, &c, NULL, err, sizeof err), 0);
	assert_int_equal(c.n, n);
	coll_free(&c);
	free(img);
	free_items(items, n);
}

static void test_bitflips(void **state)
{
	const char *dir = *state;
	size_t n;
	mf_item *items = make_items(15, 0, &n);
	assert_int_equal(mf_snapshot_write(P(), dir, 5, items, n, NULL), 0);
	size_t len;
	unsigned char *img = slurp(path_in(dir, MF_SNAPSHOT_NAME), &len);
	/* Every bit of a small file. */
	for (size_t i = 0; i < len; i++) {
		for (int b = 0; b < 8; b++) {
			img[i] ^= (unsigned char)(1u << b);
			expect_bad(dir, img, len, "bit flip", i * 8 + (size_t)b);
			img[i] ^= (unsigned char)(1u << b);
		}
	}
	free(img);
	free_items(items, n);

	/* A bigger file, sampled. */
	items = make_items(3000, 1500000, &n);
	assert_int_equal(mf_snapshot_write(P(), dir, 6, items, n, NULL), 0);
	img = slurp(path_in(dir, MF_SNAPSHOT_NAME), &len);
	for (size_t k = 0; k < 300; k++) {
		size_t i = (size_t)(rnd() % len);
		unsigned char m = (unsigned char)(1u << (rnd() % 8));
		img[i] ^= m;
		expect_bad(dir, img, len, "sampled bit flip", i);
		img[i] ^= m;
	}
	/* Appended garbage, and a second complete frame after the first. */
	unsigned char *ext = malloc(len * 2);
	memcpy(ext, img, len);
	memset(ext + len, 0, 16);
	expect_bad(dir, ext, len + 1, "trailing zero byte", len);
	expect_bad(dir, ext, len + 16, "trailing zeros", len);
	memcpy(ext + len, img, len);
	expect_bad(dir, ext, len * 2, "second frame", len);
	free(ext);
	free(img);
	free_items(items, n);
}

/* ---- hand-made raw streams ---------------------------------------------- */

typedef struct rawbuf {
	unsigned char *p;
	size_t n, cap;
} rawbuf;

static void rb_put(rawbuf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	memcpy(b->p + b->n, p, n);
	b->n += n;
}

static void rb_int(rawbuf *b, uint64_t v, int bytes)
{
	unsigned char t[8];
	for (int i = 0; i < bytes; i++)
		t[i] = (unsigned char)(v >> (8 * i));
	rb_put(b, t, (size_t)bytes);
}

static void rb_header(rawbuf *b, uint32_t version, uint64_t lsn, uint64_t count)
{
	rb_put(b, "MFSNAP", 6);
	rb_int(b, version, 4);
	rb_int(b, lsn, 8);
	rb_int(b, count, 8);
	rb_int(b, 1700000000000000000ULL, 8);
}

static void rb_record(rawbuf *b, uint8_t type, const char *key, size_t klen, uint64_t vlen,
                      const char *val)
{
	rb_int(b, type, 1);
	rb_int(b, 100, 8);
	rb_int(b, 200, 8);
	rb_int(b, klen, 2);
	rb_put(b, key, klen);
	rb_int(b, vlen, 8);
	if (val)
		rb_put(b, val, (size_t)vlen);
}

static void rb_trailer(rawbuf *b, uint64_t count, int64_t len_adjust)
{
	uint64_t total = b->n + MF_SNAPSHOT_TRAILER_LEN;
	rb_put(b, "MFEND", 5);
	rb_int(b, count, 8);
	rb_int(b, total + (uint64_t)len_adjust, 8);
}

/* Compress raw as one frame into dir's snapshot and load it. */
static int load_raw(const char *dir, const rawbuf *b, bool content_size, bool checksum,
                    coll *c, mf_snapshot_info *info, char *err, size_t errlen)
{
	LZ4F_preferences_t prefs;
	memset(&prefs, 0, sizeof prefs);
	prefs.frameInfo.contentChecksumFlag = checksum ? LZ4F_contentChecksumEnabled
	                                               : LZ4F_noContentChecksum;
	prefs.frameInfo.contentSize = content_size ? b->n : 0;
	size_t cap = LZ4F_compressFrameBound(b->n, &prefs);
	unsigned char *out = malloc(cap);
	size_t r = LZ4F_compressFrame(out, cap, b->p, b->n, &prefs);
	assert_false(LZ4F_isError(r));
	spit(path_in(dir, MF_SNAPSHOT_NAME), out, r);
	free(out);
	err[0] = '\0';
	return load(dir, c, info, err, errlen);
}

/* A tiny frame declaring a huge value (56 bytes, one record of
 * 1.5 GiB, no content size) is refused before anything is allocated: the
 * file's size bounds what it can decompress to. */
static void test_huge_value_tiny_file(void **state)
{
	const char *dir = *state;
	char err[512];
	coll c = {0};
	mf_snapshot_info li;
	rawbuf b = {0};
	for (int cs = 0; cs < 2; cs++) {
		rb_header(&b, 1, 1, 1);
		rb_record(&b, 1, "a", 1, (uint64_t)3 << 29, NULL);
		size_t before = mf_buf_bytes();
		assert_int_equal(load_raw(dir, &b, cs, true, &c, &li, err, sizeof err), -EBADMSG);
		if (!strstr(err, cs ? "too large" : "exceeds the stream"))
			fail_msg("unexpected: %s", err);
		assert_int_equal(mf_buf_bytes(), before);
		coll_free(&c);
		b.n = 0;
	}
	/* A key count no file of this size could hold. */
	rb_header(&b, 1, 1, (uint64_t)1 << 40);
	assert_int_equal(load_raw(dir, &b, false, true, &c, &li, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "key count"));
	coll_free(&c);
	free(b.p);
}

static void test_malformed_streams(void **state)
{
	const char *dir = *state;
	char err[512];
	coll c = {0};
	mf_snapshot_info li;
	rawbuf b = {0};

#define BAD(content_size, expect_substr)                                            \
	do {                                                                         \
		assert_int_equal(load_raw(dir, &b, content_size, true, &c, &li, err,    \
		                          sizeof err), -EBADMSG);                       \
		if (!strstr(err, expect_substr))                                         \
			fail_msg("want '%s' in '%s'", expect_substr, err);                  \
		coll_free(&c);                                                           \
		b.n = 0;                                                                 \
	} while (0)

	/* A well-formed hand-built stream loads: the builder matches FORMAT.md. */
	rb_header(&b, 1, 77, 2);
	rb_record(&b, 1, "a", 1, 3, "xyz");
	rb_record(&b, 3, "l", 1, 0, NULL);
	rb_trailer(&b, 2, 0);
	for (int cs = 0; cs < 2; cs++) {
		if (load_raw(dir, &b, cs, true, &c, &li, err, sizeof err) != 0)
			fail_msg("hand-built stream (content size %d): %s", cs, err);
		assert_int_equal(c.n, 2);
		assert_int_equal(li.lsn, 77);
		assert_int_equal(c.v[0].mtime_ns, 100);
		assert_int_equal(c.v[0].ctime_ns, 200);
		assert_memory_equal(mf_slice_ptr(c.v[0].val), "xyz", 3);
		assert_int_equal(c.v[1].type, 3);
		assert_int_equal(c.v[1].val.len, 0);
		coll_free(&c);
	}
	/* Without a content checksum the frame is refused. */
	assert_int_equal(load_raw(dir, &b, true, false, &c, &li, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "content checksum"));
	b.n = 0;

	rb_header(&b, 3, 1, 0);
	rb_trailer(&b, 0, 0);
	BAD(true, "version");
	rb_header(&b, 0, 1, 0);
	rb_trailer(&b, 0, 0);
	BAD(true, "version");

	rb_header(&b, 1, 1, 0);
	b.p[0] = 'X';
	rb_trailer(&b, 0, 0);
	BAD(true, "magic");

	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "a", 1, 1, "x");
	rb_trailer(&b, 2, 0);
	BAD(true, "trailer key count");

	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "a", 1, 1, "x");
	rb_trailer(&b, 1, -1);
	BAD(true, "trailer stream length");

	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "a", 1, 1, "x");
	rb_put(&b, "MFENX", 5);
	rb_int(&b, 1, 8);
	rb_int(&b, b.n + 8, 8);
	BAD(true, "trailer magic");

	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "a", 1, 1, "x");
	rb_trailer(&b, 1, 0);
	rb_put(&b, "junk", 4);
	BAD(true, "after the trailer");

	/* A valid frame whose stream stops early: no trailer, or mid-value. */
	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "a", 1, 1, "x");
	BAD(false, "stream ends inside trailer");
	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "a", 1, 10, NULL);
	rb_put(&b, "abc", 3);
	BAD(false, "stream ends inside value");
	rb_header(&b, 1, 1, 0);
	BAD(false, "stream ends inside trailer");
	rb_put(&b, "MFSNAP", 6);
	BAD(false, "stream ends inside header");

	/* Header says 3 keys, stream holds 2 then a trailer. */
	rb_header(&b, 1, 1, 3);
	rb_record(&b, 1, "a", 1, 1, "x");
	rb_record(&b, 1, "b", 1, 1, "y");
	rb_trailer(&b, 3, 0);
	BAD(false, "bad key type"); /* 'M' of "MFEND" read as a type */

	for (int t = 0; t < 256; t += 4) {
		if (t >= 1 && t <= 3)
			continue;
		rb_header(&b, 1, 1, 1);
		rb_record(&b, (uint8_t)t, "a", 1, 1, "x");
		rb_trailer(&b, 1, 0);
		BAD(true, "bad key type");
	}

	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "", 0, 1, "x");
	rb_trailer(&b, 1, 0);
	BAD(true, "bad key length");

	/* Any other u16 key length is valid (keys up to 65535 bytes). */

	/* Value length beyond the declared content: refused before allocating. */
	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "a", 1, 1000000000, NULL);
	rb_put(&b, "xyz", 3);
	rb_trailer(&b, 1, 0);
	BAD(true, "exceeds the stream");

	/* Without a content size, the absolute cap applies. */
	rb_header(&b, 1, 1, 1);
	rb_record(&b, 1, "a", 1, (uint64_t)1 << 40, NULL);
	rb_trailer(&b, 1, 0);
	BAD(false, "too large");

	/* Absurd key count against the content size. */
	rb_header(&b, 1, 1, UINT64_MAX / 2);
	rb_trailer(&b, 0, 0);
	BAD(true, "key count");

#undef BAD
	free(b.p);
}

/* ---- I/O faults --------------------------------------------------------- */

/* Version 2: folders, symlinks and the attribute block (mode, uid, gid,
 * atime, expire_ns) round-trip, whatever their values. */
static void test_v2_attributes(void **state)
{
	const char *dir = *state;
	mf_item it[3] = {
		mk(MF_T_FOLDER, "a/b", 3, "", 0, 10, 11),
		mk(MF_T_SYMLINK, "a/b/l", 5, "../t", 4, 12, 13),
		mk(MF_T_STRING, "a/b/f", 5, "data", 4, 14, 15),
	};
	it[0].mode = 0700;
	it[0].uid = 0;
	it[0].gid = 4294967294u;
	it[0].atime_ns = -1;
	it[1].atime_ns = (int64_t)1 << 62;
	it[2].mode = 04755;
	it[2].uid = 1000;
	it[2].gid = 100;
	it[2].atime_ns = ((int64_t)1 << 32) * 1000000000LL;
	it[2].expire_ns = 1800000000000000000LL;
	mf_snapshot_info wi, li;
	assert_int_equal(mf_snapshot_write(P(), dir, 9, it, 3, &wi), 0);
	assert_int_equal(wi.raw_bytes, MF_SNAPSHOT_HEADER_LEN + MF_SNAPSHOT_TRAILER_LEN +
	                                3 * (MF_SNAPSHOT_RECORD_FIXED + MF_SNAPSHOT_ATTR_LEN) +
	                                3 + 5 + 5 + 0 + 4 + 4);
	coll c = {0};
	char err[256] = "";
	assert_int_equal(load(dir, &c, &li, err, sizeof err), 0);
	assert_int_equal(c.n, 3);
	assert_items_equal(it, c.v, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(c.v[i].mode, it[i].mode);
		assert_int_equal(c.v[i].uid, it[i].uid);
		assert_int_equal(c.v[i].gid, it[i].gid);
		assert_int_equal(c.v[i].atime_ns, it[i].atime_ns);
		assert_int_equal(c.v[i].expire_ns, it[i].expire_ns);
	}
	coll_free(&c);
	for (int i = 0; i < 3; i++) {
		mf_slice_unref(&it[i].key);
		mf_slice_unref(&it[i].val);
	}
}

/* Version 1 (before attributes) still loads: every key gets the attributes
 * it had then (default mode and owner, atime = mtime, no expiry); a folder
 * or symlink type in a v1 stream is damage. */
static void test_v1_loads_with_defaults(void **state)
{
	const char *dir = *state;
	char err[512];
	coll c = {0};
	mf_snapshot_info li;
	rawbuf b = {0};
	rb_header(&b, 1, 5, 2);
	rb_record(&b, MF_T_STRING, "k", 1, 3, "abc");
	rb_record(&b, MF_T_LIST, "l", 1, 2, "x\n");
	rb_trailer(&b, 2, 0);
	if (load_raw(dir, &b, true, true, &c, &li, err, sizeof err) != 0)
		fail_msg("v1: %s", err);
	assert_int_equal(c.n, 2);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(c.v[i].mode, MF_MODE_DEFAULT);
		assert_int_equal(c.v[i].uid, MF_ID_DEFAULT);
		assert_int_equal(c.v[i].gid, MF_ID_DEFAULT);
		assert_int_equal(c.v[i].atime_ns, 100); /* rb_record's mtime */
		assert_int_equal(c.v[i].expire_ns, 0);
	}
	coll_free(&c);
	b.n = 0;
	rb_header(&b, 1, 5, 1);
	rb_record(&b, MF_T_FOLDER, "d", 1, 0, NULL);
	rb_trailer(&b, 1, 0);
	assert_int_equal(load_raw(dir, &b, true, true, &c, &li, err, sizeof err), -EBADMSG);
	assert_non_null(strstr(err, "bad key type"));
	coll_free(&c);
	/* A v2 record cut inside its attribute block is damage. */
	b.n = 0;
	rb_header(&b, 2, 5, 1);
	rb_record(&b, MF_T_STRING, "k", 1, 1, "v");
	rb_int(&b, 0644, 4);
	rb_trailer(&b, 1, 0);
	assert_int_equal(load_raw(dir, &b, true, true, &c, &li, err, sizeof err), -EBADMSG);
	coll_free(&c);
	free(b.p);
}

typedef struct fault_case {
	const char *name;
	void (*arm)(faultio *f);
	int want;
	bool renamed; /* the new file is in place despite the error */
} fault_case;

static void arm_open(faultio *f) { faultio_fail_path(f, FIO_OPEN, MF_SNAPSHOT_TMP_NAME, -EACCES); }
static void arm_enospc_first(faultio *f) { faultio_fail_nth(f, FIO_PWRITEV, 1, -ENOSPC, 1); }
static void arm_enospc_later(faultio *f) { faultio_fail_nth(f, FIO_PWRITEV, 3, -ENOSPC, 1); }
static void arm_short_eio(faultio *f)
{
	faultio_short_next(f, 5);                       /* write 1: 5 bytes */
	faultio_fail_nth(f, FIO_PWRITEV, 2, -EIO, 0);   /* then EIO forever */
}
static void arm_fsync(faultio *f) { faultio_fail_nth(f, FIO_FSYNC, 1, -EIO, 0); }
static void arm_close(faultio *f) { faultio_fail_nth(f, FIO_CLOSE, 1, -EIO, 1); }
static void arm_rename(faultio *f) { faultio_fail_nth(f, FIO_RENAME, 1, -EXDEV, 0); }
static void arm_fsync_dir(faultio *f) { faultio_fail_nth(f, FIO_FSYNC_DIR, 1, -EIO, 0); }

static void test_write_faults(void **state)
{
	const char *dir = *state;
	static const fault_case cases[] = {
		{"open", arm_open, -EACCES, false},
		{"enospc-first-write", arm_enospc_first, -ENOSPC, false},
		{"enospc-later-write", arm_enospc_later, -ENOSPC, false},
		{"short-then-eio", arm_short_eio, -EIO, false},
		{"fsync", arm_fsync, -EIO, false},
		{"close", arm_close, -EIO, false},
		{"rename", arm_rename, -EXDEV, false},
		{"fsync-dir", arm_fsync_dir, -EIO, true},
	};
	size_t n_old, n_new;
	mf_item *old = make_items(100, 0, &n_old);
	/* Big enough for several compressed writes (random half is incompressible). */
	mf_item *neu = make_items(5000, 3000000, &n_new);
	const char *snap = path_in(dir, MF_SNAPSHOT_NAME);
	const char *tmp = path_in(dir, MF_SNAPSHOT_TMP_NAME);

	for (int with_old = 1; with_old >= 0; with_old--) {
		for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			unlink(snap);
			size_t old_len = 0;
			unsigned char *old_img = NULL;
			if (with_old) {
				assert_int_equal(mf_snapshot_write(P(), dir, 1, old, n_old, NULL), 0);
				old_img = slurp(snap, &old_len);
			}
			shapeio sh = shapeio_new();
			faultio f;
			faultio_init(&f, &sh.io);
			cases[i].arm(&f);
			mf_snapshot_info wi;
			int rc = mf_snapshot_write(&f.io, dir, 2, neu, n_new, &wi);
			if (rc != cases[i].want)
				fail_msg("%s: got %d want %d", cases[i].name, rc, cases[i].want);
			if (exists(tmp))
				fail_msg("%s: tmp file left behind", cases[i].name);
			assert_int_equal(sh.open_fds, 0);
			faultio_destroy(&f);
			coll c = {0};
			mf_snapshot_info li;
			char err[256];
			if (cases[i].renamed) {
				assert_int_equal(load(dir, &c, &li, err, sizeof err), 0);
				assert_int_equal(li.lsn, 2);
			} else if (with_old) {
				size_t len;
				unsigned char *img = slurp(snap, &len);
				assert_non_null(img);
				if (len != old_len || memcmp(img, old_img, len) != 0)
					fail_msg("%s: old snapshot changed", cases[i].name);
				free(img);
				assert_int_equal(load(dir, &c, &li, err, sizeof err), 0);
				assert_int_equal(li.lsn, 1);
				assert_int_equal(c.n, n_old);
			} else {
				if (exists(snap))
					fail_msg("%s: snapshot appeared", cases[i].name);
			}
			coll_free(&c);
			free(old_img);
		}
	}

	/* A writer that only ever makes half progress still succeeds. */
	shapeio sh = shapeio_new();
	sh.always_short = true;
	faultio f;
	faultio_init(&f, &sh.io);
	assert_int_equal(mf_snapshot_write(&f.io, dir, 3, neu, n_new, NULL), 0);
	assert_true(faultio_calls(&f, FIO_PWRITEV) > 20);
	assert_int_equal(faultio_calls(&f, FIO_FSYNC), 1);
	assert_int_equal(faultio_calls(&f, FIO_RENAME), 1);
	assert_int_equal(faultio_calls(&f, FIO_FSYNC_DIR), 1);
	assert_int_equal(sh.open_fds, 0);
	faultio_destroy(&f);
	coll c = {0};
	mf_snapshot_info li;
	char err[256];
	assert_int_equal(load(dir, &c, &li, err, sizeof err), 0);
	assert_int_equal(li.lsn, 3);
	assert_int_equal(c.n, n_new);
	assert_items_equal(neu, c.v, n_new);
	coll_free(&c);

	free_items(old, n_old);
	free_items(neu, n_new);
}

static void test_read_fault(void **state)
{
	const char *dir = *state;
	size_t n;
	mf_item *items = make_items(10, 600000, &n);
	assert_int_equal(mf_snapshot_write(P(), dir, 1, items, n, NULL), 0);
	for (int at = 1; at <= 3; at++) {
		shapeio sh = shapeio_new();
		faultio f;
		faultio_init(&f, &sh.io);
		faultio_fail_nth(&f, FIO_PREAD, (unsigned long)at, -EIO, 1);
		coll c = {0};
		char err[256] = "";
		assert_int_equal(mf_snapshot_load(&f.io, dir, collect, &c, NULL, err, sizeof err), -EIO);
		assert_non_null(strstr(err, "read failed"));
		assert_int_equal(sh.open_fds, 0);
		faultio_destroy(&f);
		coll_free(&c);
	}
	free_items(items, n);
}

static void test_remove_tmp(void **state)
{
	const char *dir = *state;
	const char *tmp = path_in(dir, MF_SNAPSHOT_TMP_NAME);
	faultio f;
	faultio_init(&f, NULL);
	assert_int_equal(mf_snapshot_remove_tmp(&f.io, dir), 0);
	assert_int_equal(faultio_calls(&f, FIO_FSYNC_DIR), 0);
	spit(tmp, "partial", 7);
	assert_int_equal(mf_snapshot_remove_tmp(&f.io, dir), 0);
	assert_false(exists(tmp));
	assert_int_equal(faultio_calls(&f, FIO_FSYNC_DIR), 1);
	/* An unlink error other than ENOENT is reported. */
	spit(tmp, "partial", 7);
	faultio_fail_next(&f, FIO_UNLINK, -EACCES);
	assert_int_equal(mf_snapshot_remove_tmp(&f.io, dir), -EACCES);
	assert_true(exists(tmp));
	assert_int_equal(mf_snapshot_remove_tmp(&f.io, dir), 0);
	assert_false(exists(tmp));
	faultio_destroy(&f);
	/* A stale tmp does not disturb a later write either. */
	spit(tmp, "partial", 7);
	mf_item it = mk(1, "a", 1, "b", 1, 0, 0);
	assert_int_equal(mf_snapshot_write(P(), dir, 1, &it, 1, NULL), 0);
	assert_false(exists(tmp));
	mf_slice_unref(&it.key);
	mf_slice_unref(&it.val);
}

/* ---- crash points (re-exec of this binary) ------------------------------ */

static const char *self_exe;

static int crash_child(const char *dir)
{
	mf_item it[2] = {
		mk(1, "new", 3, "NEW", 3, 1, 1),
		mk(2, "j", 1, "{}", 2, 1, 1),
	};
	int rc = mf_snapshot_write(mf_io_posix(), dir, 2, it, 2, NULL);
	for (int i = 0; i < 2; i++) {
		mf_slice_unref(&it[i].key);
		mf_slice_unref(&it[i].val);
	}
	return rc == 0 ? 0 : 1;
}

static void test_crash_points(void **state)
{
	const char *dir = *state;
	static const struct {
		const char *point; /* NULL: no crash */
		int status;
		uint64_t lsn;      /* snapshot that must load afterwards */
		bool tmp_left;
	} cases[] = {
		{"snapshot-before-tmp", 77, 1, false},
		{"snapshot-after-tmp-write", 77, 1, true},
		{"snapshot-after-tmp-fsync", 77, 1, true},
		{"snapshot-after-rename", 77, 2, false},
		{"snapshot-after-dir-fsync", 77, 2, false},
		{NULL, 0, 2, false},
	};
	const char *tmp = path_in(dir, MF_SNAPSHOT_TMP_NAME);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		mf_item it = mk(1, "old", 3, "OLD", 3, 1, 1);
		assert_int_equal(mf_snapshot_write(P(), dir, 1, &it, 1, NULL), 0);
		mf_slice_unref(&it.key);
		mf_slice_unref(&it.val);

		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			if (cases[i].point)
				setenv("MEMFLUX_CRASH_AT", cases[i].point, 1);
			else
				unsetenv("MEMFLUX_CRASH_AT");
			execl(self_exe, self_exe, "--crash-child", dir, (char *)NULL);
			_exit(127);
		}
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(WIFEXITED(st));
		if (WEXITSTATUS(st) != cases[i].status)
			fail_msg("%s: child exit %d", cases[i].point, WEXITSTATUS(st));
		assert_int_equal(exists(tmp), cases[i].tmp_left);
		if (cases[i].tmp_left) {
			/* The crash left a complete tmp; startup removes it. */
			assert_int_equal(mf_snapshot_remove_tmp(P(), dir), 0);
			assert_false(exists(tmp));
		}
		coll c = {0};
		mf_snapshot_info li;
		char err[256];
		assert_int_equal(load(dir, &c, &li, err, sizeof err), 0);
		assert_int_equal(li.lsn, cases[i].lsn);
		assert_int_equal(c.n, cases[i].lsn == 1 ? 1 : 2);
		coll_free(&c);
	}
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--crash-child") == 0)
		return crash_child(argv[2]);
	static char exe[PATH_MAX];
	ssize_t l = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (l <= 0)
		return 2;
	exe[l] = '\0';
	self_exe = exe;
	/* The crash child must see only its own MEMFLUX_CRASH_AT. */
	unsetenv("MEMFLUX_CRASH_AT");

	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_roundtrip, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_v2_attributes, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_v1_loads_with_defaults, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_load_short_reads, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_load_missing, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_load_cb_error, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_invalid_items, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_lz4_cli, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_truncated, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_bitflips, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_malformed_streams, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_huge_value_tiny_file, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_write_faults, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_read_fault, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_remove_tmp, setup_dir, teardown_dir),
		cmocka_unit_test_setup_teardown(test_crash_points, setup_dir, teardown_dir),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
