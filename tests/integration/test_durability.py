"""Issue #3: the write-ahead log keeps every acknowledged write.

kill -9 in every fsync mode, torn tails cut at every byte of the last record,
power cuts (torn, reordered or lost unsynced writeback, a torn value holding
a WAL copy) recovered by themselves (issue 10), deleted segments refused,
mid-log corruption refused (and repaired by memflux-check --fix), concurrent
writer processes killed at a random moment, fsync(2) semantics and group
commit.  Everything goes through the mount; the WAL file is parsed here from
wal/FORMAT.md to find record boundaries.
"""
import json
import os
import random
import re
import shutil
import struct
import subprocess
import threading
import time

import pytest

from conftest import CHECK, WRITER_SCRIPT, Mount, check_writer, dump_meta, writer_notes

PY = "/usr/bin/python3"
WAL_HDR = 32      # wal/FORMAT.md, version 2
REC_HDR = 64
SYNC_MARKER = 0xFF


# ------------------------------------------------------------------ helpers

def wal_records(path, markers=False):
    """[(offset, size, lsn)] of the records in a WAL segment (FORMAT.md);
    sync markers (written by a clean close) only when asked for."""
    data = open(path, "rb").read()
    assert data[:5] == b"MFWAL" and data[5] == 2, "unexpected WAL header"
    off, out = WAL_HDR, []
    while off + 8 <= len(data):
        (ln,) = struct.unpack_from("<I", data, off)
        assert 56 <= ln and off + 8 + ln <= len(data), f"bad record at {off}"
        (lsn,) = struct.unpack_from("<Q", data, off + 8)
        if markers or data[off + 24] != SYNC_MARKER:
            out.append((off, 8 + ln, lsn))
        off += 8 + ln
    assert off == len(data), "trailing bytes after the last record"
    return out


def read_dir(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)}


def dump_store(m):
    """The whole store as seen through the mount (bytes keys and values)."""
    return {
        "kv": read_dir(os.fsencode(str(m.kv()))),
        "json": read_dir(os.fsencode(str(m.json()))),
        "lists": read_dir(os.fsencode(str(m.lists()))),
    }


def put(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def setpath(m, doc, path, val):
    """JSON.SET doc path val through the path view /.ctl/json/<doc>/<path>."""
    put(m.ctl("json") / doc / path, val)


def pop(m, lst):
    with open(m.ctl("pop") / lst, "rb") as f:
        return f.read()


def is_mounted(p):
    return os.path.ismount(str(p))


def copy_data(src, dst):
    shutil.copytree(src, dst)
    for n in ("memflux.lock", "memflux.log"):
        try:
            os.unlink(os.path.join(dst, n))
        except FileNotFoundError:
            pass


# ------------------------------------------- 1. kill -9 in each fsync mode

def apply_round1(m, model):
    kv, lists = model["kv"], model["lists"]
    put(m.kv("a"), b"hello\n")
    kv[b"a"] = b"hello\n"
    for i in range(3):
        put(m.kv("a"), b"more%d\n" % i, "ab")
        kv[b"a"] += b"more%d\n" % i
    bin_ = bytes(range(256)) * 4
    put(m.kv("b"), bin_)
    os.rename(m.kv("b"), m.kv("c"))
    kv[b"c"] = bin_
    put(m.kv("d"), b"doomed")
    os.unlink(m.kv("d"))
    put(m.kv("f"), b"F")
    put(m.kv("g"), b"G")
    os.rename(m.kv("f"), m.kv("g"))  # replaces g
    kv[b"g"] = b"F"
    put(m.kv("t"), b"0123456789")
    os.truncate(m.kv("t"), 4)
    kv[b"t"] = b"0123"
    os.utime(m.kv("t"), ns=(1_000_000_000, 1_234_567_891_000))
    put(m.kv("empty"), b"")
    kv[b"empty"] = b""

    put(m.json("doc"), b'{"a": 1, "b": {"c": [1, 2]}}')
    setpath(m, "doc", "$.b.c[1]", b"5")
    setpath(m, "doc", "$.new", b'"x"')
    put(m.json("gone"), b"[1]")
    os.unlink(m.json("gone"))

    put(m.lists("q"), b"a\nb\nc\n", "ab")
    put(m.lists("q"), b"d\ne\n", "ab")
    assert pop(m, "q") == b"a\n"
    assert pop(m, "q") == b"b\n"
    lists[b"q"] = b"c\nd\ne\n"
    put(m.lists("q2"), b"only\n", "ab")
    assert pop(m, "q2") == b"only\n"
    lists[b"q2"] = b""


def apply_round2(m, model):
    kv, lists = model["kv"], model["lists"]
    put(m.kv("a"), b"after-crash\n", "ab")
    kv[b"a"] += b"after-crash\n"
    os.rename(m.kv("c"), m.kv("c2"))
    kv[b"c2"] = kv.pop(b"c")
    os.unlink(m.kv("g"))
    del kv[b"g"]
    assert pop(m, "q") == b"c\n"
    put(m.lists("q"), b"f\n", "ab")
    lists[b"q"] = b"d\ne\nf\n"
    setpath(m, "doc", "$.a", b"[true, null]")


def check_json(store, expect):
    assert sorted(store["json"]) == sorted(expect)
    for k, v in expect.items():
        assert json.loads(store["json"][k]) == v


@pytest.mark.parametrize("mode", ["always", "interval", "none"])
def test_kill9_keeps_everything_acknowledged(mkmount, mode):
    m = mkmount(f"--fsync={mode}")
    model = {"kv": {}, "lists": {}}
    apply_round1(m, model)
    before = dump_store(m)
    assert before["kv"] == model["kv"] and before["lists"] == model["lists"]
    doc1 = {"a": 1, "b": {"c": [1, 5]}, "new": "x"}
    check_json(before, {b"doc": doc1})
    meta = dump_meta(m)
    # a new empty key's stat may show its create time, while the key is logged
    # (with its own time) only at RELEASE; compare the content only
    meta.pop(("kv", b"empty"))
    m.kill9()

    m.start(f"--fsync={mode}")
    after = dump_store(m)
    assert after == before  # exact bytes: no append doubled, no pop undone
    meta_after = dump_meta(m)
    meta_after.pop(("kv", b"empty"))
    assert meta_after == meta  # sizes and mtimes as acknowledged
    assert m.kv("t").stat().st_mtime_ns == 1_234_567_891_000
    st = m.stats()
    assert int(st["recovery_records_replayed"]) == int(st["wal_lsn"]) > 20

    # more history on top of the replayed state, crash again
    apply_round2(m, model)
    before2 = dump_store(m)
    assert before2["kv"] == model["kv"] and before2["lists"] == model["lists"]
    check_json(before2, {b"doc": dict(doc1, a=[True, None])})
    meta2 = dump_meta(m)
    m.kill9()
    m.start(f"--fsync={mode}")
    assert dump_store(m) == before2
    assert dump_meta(m) == meta2
    # and a clean restart changes nothing either
    m.stop()
    m.start()
    assert dump_store(m) == before2
    assert m.kv("t").stat().st_mtime_ns == 1_234_567_891_000


# ------------------------------------------------ 2. torn tail, every byte

def test_torn_tail_every_offset(mkmount, tmp_path):
    # no background fsync: its idle sync marker would land between records
    m = mkmount("--fsync-interval-ms=3600000", name="src")
    expect = {}
    for i in range(12):
        v = b"value-%d-" % i + bytes([65 + i]) * (i * 3)
        put(m.kv(f"k{i}"), v)
        expect[b"k%d" % i] = v
    put(m.lists("l"), b"one\ntwo\n", "ab")
    assert pop(m, "l") == b"one\n"
    size_before = os.path.getsize(m.data / "memflux.wal")
    # the last mutation: an append (so "absent" also means "not half there")
    tail = b"+appended-by-the-last-record"
    put(m.kv("k3"), tail, "ab")
    m.stop()

    wal = m.data / "memflux.wal"
    recs = wal_records(wal)
    last_off, last_size, last_lsn = recs[-1]
    # a clean stop ends the file with a sync marker; a crash leaves none
    assert last_off == size_before and last_off + last_size + REC_HDR == os.path.getsize(wal)
    assert 80 <= last_size <= 140, last_size

    full = wal.read_bytes()[:last_off + last_size]
    with_last = dict(expect)
    with_last[b"k3"] = expect[b"k3"] + tail
    expect_lists = {b"l": b"two\n"}

    def check_store(mm, kv):
        got = dump_store(mm)
        assert got["kv"] == kv
        assert got["lists"] == expect_lists
        assert got["json"] == {}

    # cut == last_off: the file ends on a record boundary (no torn tail)
    for cut in range(last_off, last_off + last_size):
        name = f"cut{cut}"
        mm = Mount(tmp_path, name)
        copy_data(m.data, mm.data)
        (mm.data / "memflux.wal").write_bytes(full[:cut])
        r = check_run(mm.data)
        assert r.returncode == (1 if cut > last_off else 0), (cut, r.stdout + r.stderr)
        try:
            p = mm.start()
            check_store(mm, expect)
            st = mm.stats()
            assert int(st["wal_lsn"]) == last_lsn - 1
            msgs = p.stderr + mm.log()
            if cut > last_off:
                assert re.search(rf"torn tail at offset {last_off}\b", msgs), msgs
                assert f"cut {cut - last_off} bytes from LSN {last_lsn}" in msgs, msgs
            else:
                assert "torn tail at" not in msgs, msgs
            # the cut is made durable and new writes go after it
            assert os.path.getsize(mm.data / "memflux.wal") == last_off
            put(mm.kv("k3"), b"!", "ab")
            put(mm.kv("new"), b"fresh")
            kv2 = dict(expect)
            kv2[b"k3"] = expect[b"k3"] + b"!"
            kv2[b"new"] = b"fresh"
            check_store(mm, kv2)
            mm.stop()
            p2 = mm.start()
            check_store(mm, kv2)
            assert "torn tail at" not in p2.stderr
            lsns = [lsn for _, _, lsn in wal_records(mm.data / "memflux.wal")]
            assert lsns == sorted(set(lsns)) and lsns[-1] > last_lsn
        finally:
            mm.cleanup()
    # control: the uncut log does hold the last mutation
    m.start()
    check_store(m, with_last)


def test_torn_tail_warning_in_daemon_log(mkmount):
    m = mkmount()
    put(m.kv("a"), b"1")
    put(m.kv("b"), b"2")
    m.stop()
    wal = m.data / "memflux.wal"
    off = wal_records(wal)[-1][0]
    with open(wal, "r+b") as f:
        f.truncate(off + 10)
    m.start()
    assert f"torn tail at offset {off}" in m.log()


# ------------------- 2b. power cut: torn / reordered unsynced WAL writeback

@pytest.mark.parametrize("damage", ["hole", "reorder", "torn_walcopy", "zeros_to_end"])
def test_power_cut_unsynced_tail_recovers_by_itself(mkmount, damage):
    """Issue 10: kill -9, then make the unsynced WAL tail look as a power cut
    may leave it (a write lost in the middle with later ones persisted, pages
    persisted out of order, a value holding a copy of a WAL torn in half, the
    size persisted over unwritten zeros).  The mount must come back by itself
    with everything fsynced, log what it cut, and keep taking writes."""
    m = mkmount("--fsync=interval", "--fsync-interval-ms=3600000")
    durable = {}
    for i in range(6):
        durable[b"d%d" % i] = b"durable-%d-" % i + b"x" * (i * 7)
        put(m.kv(f"d{i}"), durable[b"d%d" % i])
    with open(m.kv("d0"), "rb") as f:  # fsync(2) of any file: all of the above
        os.fsync(f.fileno())
    wal = m.data / "memflux.wal"
    horizon_off = os.path.getsize(wal)
    # unsynced: small values, a value that is a copy of the WAL itself
    # (records inside a value must never pass for records), more values
    for i in range(4):
        put(m.kv(f"u{i}"), b"unsynced-%d" % i)
    put(m.kv("walcopy"), wal.read_bytes() * 3)
    for i in range(4, 8):
        put(m.kv(f"u{i}"), b"unsynced-%d" % i)
    m.kill9()

    recs = wal_records(wal)
    tail = [r for r in recs if r[0] >= horizon_off]
    assert len(tail) == 9, tail
    data = bytearray(wal.read_bytes())
    copy_off, copy_size, _ = tail[4]
    if damage == "hole":  # the 3rd unsynced write never reached the disk
        o, sz, _ = tail[2]
        data[o:o + sz] = bytes(sz)
    elif damage == "reorder":  # later pages persisted, an earlier one not
        o = tail[1][0] + 5
        data[o:o + 512] = bytes(512)
    elif damage == "torn_walcopy":  # the WAL-copy value torn mid-way
        data = data[:copy_off + copy_size // 2]
    else:  # size made it to disk, the data did not
        data[tail[0][0]:] = bytes(len(data) - tail[0][0])
    wal.write_bytes(bytes(data))

    p = m.start()
    msgs = p.stderr + m.log()
    assert re.search(r"(torn tail|unsynced tail damaged) at offset \d+ .*: cut \d+ bytes",
                     msgs), msgs
    assert "durable through LSN" in msgs, msgs
    got = dump_store(m)["kv"]
    for k, v in durable.items():
        assert got[k] == v
    # what survives of the unsynced tail is a prefix of it, in order
    names = [b"u0", b"u1", b"u2", b"u3", b"walcopy", b"u4", b"u5", b"u6", b"u7"]
    present = [n for n in names if n in got]
    assert present == names[:len(present)], present
    if damage in ("hole", "reorder", "zeros_to_end"):
        assert b"walcopy" not in got
    # the cut is durable and the log goes on
    put(m.kv("after"), b"power came back")
    m.stop()
    p = m.start()
    assert "durable through LSN" not in p.stderr  # nothing left to cut
    assert m.kv("after").read_bytes() == b"power came back"
    r = check_run(m.data)
    assert r.returncode == 3 or r.returncode == 0  # 3: the daemon holds the lock


def test_deleted_sealed_segment_refused(mkmount):
    """Issue 10: a deleted sealed segment is lost data: refuse, naming the
    missing LSNs (memflux-check reports it too)."""
    m = mkmount(env={"MEMFLUX_CRASH_AT": "snapshot-before-tmp"})
    for i in range(5):
        put(m.kv(f"k{i}"), b"v%d" % i)
    with pytest.raises(OSError):
        with open(m.ctl("snapshot"), "w") as f:
            f.write("1\n")
    m.crashed()
    m.start()
    put(m.kv("k5"), b"later")
    m.stop()
    os.unlink(m.data / "memflux.wal.0000000000000005")
    p = m.start(check=False)
    assert p.returncode != 0 and not is_mounted(m.mnt)
    assert "LSNs 1..5 are missing" in p.stderr, p.stderr
    r = check_run(m.data)
    assert r.returncode == 2 and "LSNs 1..5 are missing" in r.stdout, r.stdout


def test_damaged_snapshot_salvaged_by_check(mkmount):
    """Issue 10: memflux-check --fix keeps every key read before the damaged
    LZ4 block, says how many are lost and which key was the last one kept;
    the daemon then mounts with those keys plus the WAL after the snapshot."""
    m = mkmount()
    vals = {}
    for i in range(12):  # ~4 MiB raw: several 1 MiB LZ4 blocks
        vals[b"big%d" % i] = random.Random(i).randbytes(340 * 1024)
        put(m.kv(f"big{i}"), vals[b"big%d" % i])
    with open(m.ctl("snapshot"), "w") as f:
        f.write("1\n")
    put(m.kv("after"), b"in the WAL")
    m.stop()
    snap = m.data / "memflux.snapshot"
    bad = bytearray(snap.read_bytes())
    bad[len(bad) * 3 // 4] ^= 0x10  # a block late in the file
    snap.write_bytes(bytes(bad))
    assert m.start(check=False).returncode != 0

    r = check_run(m.data, "--fix")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    mt = re.search(r"with the (\d+) keys read before the damage; (\d+) of the 12 keys", out)
    assert mt, out
    kept, lost = int(mt.group(1)), int(mt.group(2))
    assert kept + lost == 12 and kept >= 1 and lost >= 1, out
    assert "last key recovered: big" in out, out
    assert any(n.startswith("memflux.snapshot.broken-") for n in os.listdir(m.data))
    assert check_run(m.data).returncode == 0

    m.start()
    got = dump_store(m)["kv"]
    assert got.pop(b"after") == b"in the WAL"
    assert len(got) == kept
    for k, v in got.items():
        assert v == vals[k]


# ------------------------------------------ 3. corruption in the middle

def check_run(*args):
    return subprocess.run([CHECK, *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_mid_log_corruption_refused_and_fixed(mkmount):
    m = mkmount()
    vals = {}
    for i in range(10):
        vals[b"k%d" % i] = b"v%d-" % i + b"x" * 20
        put(m.kv(f"k{i}"), vals[b"k%d" % i])
    put(m.lists("l"), b"p\nq\n", "ab")
    assert pop(m, "l") == b"p\n"
    m.stop()
    wal = m.data / "memflux.wal"
    recs = wal_records(wal)
    assert len(recs) == 12
    bad_off, bad_size, bad_lsn = recs[4]  # k4's SET, followed by 7 valid records
    assert bad_lsn == 5
    data = bytearray(wal.read_bytes())
    data[bad_off + bad_size - 5] ^= 0x40  # inside k4's value
    wal.write_bytes(bytes(data))

    p = m.start(check=False)
    assert p.returncode != 0
    assert "memflux.wal" in p.stderr and str(bad_off) in p.stderr, p.stderr
    assert "memflux-check" in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not is_mounted(m.mnt) and os.listdir(m.mnt) == []
    assert wal.read_bytes() == bytes(data)  # nothing modified

    r = check_run(m.data)
    assert r.returncode == 2, r.stdout + r.stderr
    assert str(bad_off) in r.stdout + r.stderr

    r = check_run(m.data, "--dump")
    assert r.returncode == 2
    dumped = [ln for ln in r.stdout.splitlines() if ln.startswith("lsn=")]
    assert [int(re.match(r"lsn=(\d+)", ln).group(1)) for ln in dumped][:4] == [1, 2, 3, 4]
    assert re.search(rf"^lsn=1 op=SET ktype=string key=k0 len=23 .* off={WAL_HDR}$",
                     r.stdout, re.M), r.stdout

    # --fix salvages every intact record (issue 10): only k4's SET is lost,
    # and it says so; the 7 records after it are renumbered 5..11
    r = check_run(m.data, "--fix")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "lost: 1 records (LSNs 5)" in out, out
    assert "7 later records renumbered" in out, out
    aside = [n for n in os.listdir(m.data) if n.startswith("memflux.wal.broken-")]
    assert len(aside) == 1, os.listdir(m.data)
    assert (m.data / aside[0]).read_bytes() == bytes(data)
    assert [lsn for _, _, lsn in wal_records(wal)] == list(range(1, 12))
    r = check_run(m.data)
    assert r.returncode == 0, r.stdout + r.stderr

    m.start()
    got = dump_store(m)
    assert got["kv"] == {k: v for k, v in vals.items() if k != b"k4"}
    assert got["lists"] == {b"l": b"q\n"}
    put(m.kv("after"), b"fix")
    m.stop()
    m.start()
    assert m.kv("after").read_bytes() == b"fix"
    assert m.kv("k3").read_bytes() == vals[b"k3"]
    r = check_run(m.data, "--fix")  # refused: the daemon holds the lock
    assert r.returncode != 0 and m.kv("k0").read_bytes() == vals[b"k0"]


def test_corrupt_segment_header_refused(mkmount):
    m = mkmount()
    put(m.kv("a"), b"1")
    m.stop()
    wal = m.data / "memflux.wal"
    data = bytearray(wal.read_bytes())
    data[6] ^= 0x01  # hdr_size
    wal.write_bytes(bytes(data))
    p = m.start(check=False)
    assert p.returncode != 0
    assert "memflux.wal" in p.stderr, p.stderr
    assert not is_mounted(m.mnt)
    assert wal.read_bytes() == bytes(data)
    assert check_run(m.data).returncode == 2
    # the salt survived: --fix rewrites the header and keeps every record
    r = check_run(m.data, "--fix")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "header rewritten" in r.stdout, r.stdout
    assert any(n.startswith("memflux.wal.broken-") for n in os.listdir(m.data))
    assert check_run(m.data).returncode == 0
    m.start()
    assert m.kv("a").read_bytes() == b"1"


def test_damaged_sealed_segment_refused(mkmount):
    """A sealed segment is fsynced before it is sealed: a bad last record in it
    is corruption, not a torn tail (FORMAT.md), even with nothing after it."""
    m = mkmount(env={"MEMFLUX_CRASH_AT": "snapshot-before-tmp"})
    for i in range(5):
        put(m.kv(f"k{i}"), b"v%d" % i)
    with pytest.raises(OSError):
        with open(m.ctl("snapshot"), "w") as f:
            f.write("1\n")
    m.crashed()
    segs = [n for n in os.listdir(m.data) if n.startswith("memflux.wal.")]
    assert segs == ["memflux.wal.0000000000000005"], os.listdir(m.data)
    seg = m.data / segs[0]
    recs = wal_records(seg)
    assert [lsn for _, _, lsn in recs] == [1, 2, 3, 4, 5]
    m.start()  # intact: recovers from the sealed segment
    assert sorted(os.listdir(m.kv())) == [f"k{i}" for i in range(5)]
    put(m.kv("k5"), b"later")
    m.stop()
    assert seg.exists()
    off, size, _ = recs[-1]
    with open(seg, "r+b") as f:
        f.truncate(off + size - 1)  # "torn" last record of a sealed segment
    p = m.start(check=False)
    assert p.returncode != 0
    assert segs[0] in p.stderr and str(off) in p.stderr, p.stderr
    assert not is_mounted(m.mnt)
    r = check_run(m.data)
    assert r.returncode == 2, r.stdout + r.stderr
    r = check_run(m.data, "--prefix")  # point in time, not salvage
    assert any(".broken-" in n for n in os.listdir(m.data)), os.listdir(m.data)
    assert check_run(m.data).returncode == 0
    m.start()  # point-in-time: k0..k3 (k4's record was cut; later segments aside)
    assert sorted(os.listdir(m.kv())) == [f"k{i}" for i in range(4)]
    assert m.kv("k3").read_bytes() == b"v3"


# ------------------------------ 4. concurrent writer processes, kill -9




def start_writers(m, tmp_path, n):
    procs = []
    for w in range(n):
        out = tmp_path / f"writer{w}.txt"
        procs.append(subprocess.Popen([PY, "-c", WRITER_SCRIPT, str(m.mnt), str(w), str(out), "w"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        assert p.stdout.read(1) == b"r", p.stderr.read()
    return procs




def test_concurrent_writers_kill9(mkmount, tmp_path):
    m = mkmount()
    procs = start_writers(m, tmp_path, 8)
    time.sleep(random.uniform(0.05, 0.8))  # the random kill moment
    m.kill9()
    for p in procs:
        p.wait(timeout=60)
        assert p.returncode == 0, p.stderr.read()
    m.start()
    store = dump_store(m)
    total = 0
    for w in range(8):
        notes = writer_notes(tmp_path / f"writer{w}.txt")
        assert len(notes["sk"]) >= 4
        total += len(notes["sk"])
        check_writer(store["kv"], store["lists"], w, notes)
    assert set(store["kv"]) <= {f"w{w}_{s}".encode() for w in range(8)
                                for s in [f"k{k}" for k in range(10)] + ["log"]}
    assert set(store["lists"]) <= {f"w{w}_q".encode() for w in range(8)}
    assert total >= 32


# ------------------------------------------------- 5. fsync(2) semantics

def test_fsync_waits_for_wal_sync(mkmount):
    m = mkmount("--fsync=interval", "--fsync-interval-ms=60000")
    put(m.kv("k1"), b"one")
    st = m.stats()
    lsn1 = int(st["wal_lsn"])
    assert lsn1 >= 1
    assert int(st["wal_synced_lsn"]) < lsn1  # nothing forces a sync for 60 s
    fsyncs0 = int(st["wal_fsyncs"])

    # fsync on a handle with unflushed data: commits it and syncs everything
    fd = os.open(m.kv("k2"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        os.write(fd, b"two")
        os.fsync(fd)
        st = m.stats()
        assert int(st["wal_lsn"]) > lsn1
        assert int(st["wal_synced_lsn"]) >= int(st["wal_lsn"])
        assert int(st["wal_fsyncs"]) > fsyncs0
        assert m.kv("k2").read_bytes() == b"two"  # visible before close
    finally:
        os.close(fd)

    # fsync on any file (a read-only handle of another key) syncs earlier writes
    put(m.kv("k3"), b"three", "ab")
    st = m.stats()
    lsn3 = int(st["wal_lsn"])
    assert int(st["wal_synced_lsn"]) < lsn3
    fd = os.open(m.kv("k1"), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    assert int(m.stats()["wal_synced_lsn"]) >= lsn3

    put(m.lists("l"), b"x\n", "ab")
    lsn4 = int(m.stats()["wal_lsn"])
    with open(m.lists("l"), "rb") as f:
        os.fdatasync(f.fileno())
    assert int(m.stats()["wal_synced_lsn"]) >= lsn4


def test_fsync_on_new_empty_key_is_durable(mkmount):
    m = mkmount()
    lsn0 = int(m.stats()["wal_lsn"])
    fd = os.open(m.kv("new"), os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.fsync(fd)
        st = m.stats()
        assert int(st["wal_lsn"]) > lsn0, "fsync returned but the key was not logged"
        m.kill9()  # while the handle is open: no RELEASE can rescue it
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    m.start()
    assert m.kv("new").read_bytes() == b""


# ------------------------------------------------- 6. group commit

def test_group_commit_always(mkmount):
    m = mkmount("--fsync=always")
    put(m.kv("warm"), b"w")
    st = m.stats()
    assert int(st["wal_synced_lsn"]) == int(st["wal_lsn"])  # acked => fsynced
    r0, f0, b0 = (int(st[k]) for k in ("wal_records", "wal_fsyncs", "wal_batches"))
    errors = []

    def writer(t):
        try:
            for i in range(200):
                put(m.kv(f"t{t}_{i % 20}"), b"%d:%d" % (t, i))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    st = m.stats()
    records = int(st["wal_records"]) - r0
    fsyncs = int(st["wal_fsyncs"]) - f0
    batches = int(st["wal_batches"]) - b0
    assert records == 1600
    assert 0 < fsyncs < records, (records, fsyncs)
    assert batches < records
    assert int(st["wal_synced_lsn"]) == int(st["wal_lsn"])
    for t in range(8):
        for k in range(20):
            assert m.kv(f"t{t}_{k}").read_bytes() == b"%d:%d" % (t, 180 + k)
