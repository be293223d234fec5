"""Big values through the mount (issue 12): size-only changes and partial
writes are logged as what changed (WRITEV), holes take no RAM, and crashes
around such commits leave the old or the new value, never a mix.

Random choices come from one seed (MEMFLUX_TEST_SEED or the clock), printed.
"""
import os
import random
import struct
import time

import pytest

from test_durability import wal_records

MiB = 1 << 20
GiB = 1 << 30

SEED = int(os.environ.get("MEMFLUX_TEST_SEED", str(time.time_ns() & 0xFFFFFFFF)))
print(f"test_bigvalues: seed {SEED} (MEMFLUX_TEST_SEED={SEED} repeats it)")


def wal_bytes(m):
    return sum(os.path.getsize(m.data / n) for n in os.listdir(m.data)
               if n.startswith("memflux.wal"))


def rss(m):
    return int(m.stats()["rss_bytes"])


def zeros_at(path, offsets, n=4096):
    with open(path, "rb") as f:
        for o in offsets:
            f.seek(o)
            assert f.read(n) == b"\0" * n, f"non-zero bytes at {o}"


def test_truncate_1g_logs_bytes_not_gigabytes(mkmount):
    m = mkmount()
    p = m.kv("big")
    w0, r0 = wal_bytes(m), rss(m)
    # truncate(1): open(O_CREAT|O_WRONLY) + ftruncate + close
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.ftruncate(fd, GiB)
    os.close(fd)
    assert os.stat(p).st_size == GiB
    assert wal_bytes(m) - w0 <= 1024
    zeros_at(p, [0, GiB // 2, GiB - 4096])
    # no RAM for the hole (the daemon's whole RSS grew by far less)
    assert rss(m) - r0 < 64 * MiB
    m.stop()
    m.start()  # replay
    assert os.stat(p).st_size == GiB
    zeros_at(p, [0, GiB - 4096])
    assert rss(m) < 128 * MiB


def test_otrunc_then_ftruncate_is_one_small_record(mkmount):
    m = mkmount()
    p = m.kv("t")
    p.write_bytes(b"old value")
    w0 = wal_bytes(m)
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    os.ftruncate(fd, 256 * MiB)
    os.close(fd)
    assert wal_bytes(m) - w0 <= 1024
    with open(p, "rb") as f:
        assert f.read(16) == b"\0" * 16
    assert os.stat(p).st_size == 256 * MiB
    # growing an existing value keeps its bytes
    p.write_bytes(b"abc")
    fd = os.open(p, os.O_WRONLY)
    os.ftruncate(fd, 100 * MiB)
    os.close(fd)
    with open(p, "rb") as f:
        assert f.read(5) == b"abc\0\0"
    m.stop()
    m.start()
    with open(p, "rb") as f:
        assert f.read(5) == b"abc\0\0"
    assert os.stat(p).st_size == 100 * MiB


def test_small_write_into_big_value_logs_the_write(mkmount):
    rnd = random.Random(SEED)
    m = mkmount()
    p = m.kv("v20")
    val = bytearray(rnd.randbytes(20_000_000))
    p.write_bytes(val)
    w0 = wal_bytes(m)
    fd = os.open(p, os.O_WRONLY)
    for _ in range(3):
        off = rnd.randrange(0, len(val) - 4096)
        chunk = rnd.randbytes(4096)
        os.pwrite(fd, chunk, off)
        val[off:off + 4096] = chunk
    os.close(fd)
    assert wal_bytes(m) - w0 <= 64 * 1024
    assert p.read_bytes() == val
    # grow past the end by a write after a hole
    fd = os.open(p, os.O_WRONLY)
    os.pwrite(fd, b"END", len(val) + 1000)
    os.close(fd)
    val += b"\0" * 1000 + b"END"
    assert p.read_bytes() == val
    m.stop()
    m.start()
    assert p.read_bytes() == val


def test_writer_that_lost_the_race_still_wins_whole(mkmount):
    """Two handles on one big value: the second close wins whole (the first
    one's write is not merged in), as for any overwrite."""
    m = mkmount()
    p = m.kv("r")
    base = b"a" * (4 * MiB)
    p.write_bytes(base)
    fa = os.open(p, os.O_WRONLY)
    fb = os.open(p, os.O_WRONLY)
    os.pwrite(fa, b"A" * 10, 0)
    os.pwrite(fb, b"B" * 10, 100)
    os.close(fa)  # WRITEV on the base
    os.close(fb)  # its base is stale: a whole SET of b's value
    got = p.read_bytes()
    assert got == b"a" * 100 + b"B" * 10 + b"a" * (4 * MiB - 110)
    m.stop()
    m.start()
    assert p.read_bytes() == got


def writev_record(m):
    """(offset, size) of the last record in the active WAL segment."""
    recs = wal_records(m.data / "memflux.wal")
    off, size, _ = recs[-1]
    return off, size


def test_torn_writev_leaves_old_or_new(mkmount, tmp_path):
    """A WRITEV record cut at seeded offsets (a crash mid-write): recovery
    cuts it, and the value is the old one; whole: the new one."""
    rnd = random.Random(SEED)
    m = mkmount("--fsync=always")
    p = m.kv("k")
    old = bytes(rnd.randbytes(3 * MiB))
    p.write_bytes(old)
    fd = os.open(p, os.O_WRONLY)
    os.pwrite(fd, b"N" * 5000, MiB)
    os.close(fd)
    new = old[:MiB] + b"N" * 5000 + old[MiB + 5000:]
    m.kill9()
    wal = m.data / "memflux.wal"
    whole = wal.read_bytes()
    off, size = writev_record(m)
    assert size < 64 * 1024
    cuts = sorted({0, 1, 8, 63, 64, size - 1} | {rnd.randrange(1, size) for _ in range(4)})
    for cut in cuts:
        wal.write_bytes(whole[:off + cut])
        m.start()
        assert p.read_bytes() == old, f"cut at {cut} of {size}"
        m.kill9()
    wal.write_bytes(whole)
    m.start()
    assert p.read_bytes() == new
    m.stop()


def test_kill9_after_writev_keeps_it(mkmount):
    m = mkmount()
    p = m.kv("k")
    p.write_bytes(b"x" * (8 * MiB))
    fd = os.open(p, os.O_WRONLY)
    os.pwrite(fd, b"hello", 4 * MiB)
    os.ftruncate(fd, 6 * MiB)
    os.close(fd)
    m.kill9()
    m.start()
    got = p.read_bytes()
    assert len(got) == 6 * MiB
    assert got[4 * MiB:4 * MiB + 5] == b"hello"
    assert got[:4 * MiB] == b"x" * (4 * MiB)
    assert got[4 * MiB + 5:] == b"x" * (2 * MiB - 5)


def test_sparse_value_through_snapshot(mkmount):
    m = mkmount()
    p = m.kv("s")
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    os.pwrite(fd, b"head", 0)
    os.ftruncate(fd, 512 * MiB)
    os.close(fd)
    m.ctl("snapshot").write_text("1\n")
    assert os.path.getsize(m.data / "memflux.snapshot") < 4 * MiB
    m.stop()
    m.start()
    with open(p, "rb") as f:
        assert f.read(8) == b"head\0\0\0\0"
    zeros_at(p, [256 * MiB, 512 * MiB - 4096])
    assert rss(m) < 128 * MiB


def test_json_member_reads_follow_every_new_version(mkmount):
    """Member spans are remembered per document version (fs/jsonpath.c):
    a rewrite of the same length, a path update, a delete and a re-create
    are each seen by the next read."""
    m = mkmount()
    doc = m.json("d")
    member = m.ctl("json") / "d" / "$.m.x"
    doc.write_bytes(b'{"m":{"x":1},"pad":"' + b"a" * 1000 + b'"}')
    assert member.read_bytes() == b"1\n"
    assert member.read_bytes() == b"1\n"
    doc.write_bytes(b'{"m":{"x":2},"pad":"' + b"b" * 1000 + b'"}')  # same length
    assert member.read_bytes() == b"2\n"
    member.write_bytes(b"33\n")
    assert member.read_bytes() == b"33\n"
    assert b'"x":33' in doc.read_bytes()
    os.unlink(doc)
    with pytest.raises(FileNotFoundError):
        member.read_bytes()
    doc.write_bytes(b'{"m":{"x":[4]}}')
    assert member.read_bytes() == b"[4]\n"
    m.stop()
    m.start()
    assert member.read_bytes() == b"[4]\n"


def test_recovery_progress_with_few_big_records(mkmount):
    """Progress is looked at after every 16 MiB recovered, not only every
    1024 records: three 20 MiB values give lines (test period 0 ms)."""
    m = mkmount()
    for i in range(3):
        m.kv(f"big{i}").write_bytes(os.urandom(20 * MiB))
    m.stop()
    m.start(env={"MEMFLUX_TEST_PROGRESS_MS": "0"})
    prog = [l for l in m.log().splitlines() if "recovery progress: WAL" in l]
    assert len(prog) >= 2, m.log()
    m.ctl("snapshot").write_text("1\n")
    m.stop()
    m.start(env={"MEMFLUX_TEST_PROGRESS_MS": "0"})
    snap = [l for l in m.log().splitlines() if "recovery progress: snapshot" in l]
    assert len(snap) >= 2, m.log()
