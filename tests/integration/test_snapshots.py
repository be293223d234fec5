"""Issue #4: LZ4 snapshots and WAL compaction.

A crash at every named step of a snapshot (tmp file, rename, dir fsync, WAL
seal / new segment / drop) must recover exactly the acknowledged store, with no
append or list push doubled and no pop undone; the size threshold triggers
snapshots that shrink the WAL; kill -9 while snapshots run under concurrent
writers loses nothing acknowledged; a damaged snapshot refuses to mount.
"""
import json
import os
import random
import subprocess
import threading
import time

import pytest

from conftest import CHECK, WRITER_SCRIPT, check_writer, dump_meta, writer_notes

PY = "/usr/bin/python3"
KIB = 1024
MIB = 1024 * 1024


# ------------------------------------------------------------------ helpers

def read_dir(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)}


def dump_store(m):
    return {
        "kv": read_dir(os.fsencode(str(m.kv()))),
        "json": {k: json.loads(v) for k, v in read_dir(os.fsencode(str(m.json()))).items()},
        "lists": read_dir(os.fsencode(str(m.lists()))),
    }


def put(path, data, mode="wb"):
    with open(path, mode) as f:
        f.write(data)


def pop(m, lst):
    with open(m.ctl("pop") / lst, "rb") as f:
        return f.read()


def snapshot(m):
    with open(m.ctl("snapshot"), "w") as f:
        f.write("1\n")


def snap_info(m):
    out = {}
    for line in m.ctl("snapshot").read_text().splitlines():
        k, _, v = line.partition(" ")
        out[k] = v
    return out


def wait_until(cond, timeout=120, what="condition"):
    """Poll a condition (not a fixed sleep) until it holds."""
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def data_files(m):
    return sorted(os.listdir(m.data))


def sealed(m):
    return [n for n in os.listdir(m.data)
            if n.startswith("memflux.wal.") and len(n) == len("memflux.wal.") + 16]


def gen_value(i, size):
    return random.Random(i).randbytes(size)


class Model:
    """Performs operations through the mount and keeps the expected store."""

    def __init__(self, m):
        self.m = m
        self.kv, self.json, self.lists = {}, {}, {}
        self.n = 0

    def rebind(self, m):
        self.m = m

    def set(self, k, v):
        put(self.m.kv(k), v)
        self.kv[k.encode()] = v

    def append(self, k, v):
        put(self.m.kv(k), v, "ab")
        self.kv[k.encode()] = self.kv.get(k.encode(), b"") + v

    def rename(self, a, b):
        os.rename(self.m.kv(a), self.m.kv(b))
        self.kv[b.encode()] = self.kv.pop(a.encode())

    def delete(self, k):
        os.unlink(self.m.kv(k))
        del self.kv[k.encode()]

    def push(self, lst, *elems):
        data = b"".join(e + b"\n" for e in elems)
        put(self.m.lists(lst), data, "ab")
        self.lists[lst.encode()] = self.lists.get(lst.encode(), b"") + data

    def pop(self, lst):
        cur = self.lists[lst.encode()]
        head, _, rest = cur.partition(b"\n")
        assert pop(self.m, lst) == head + b"\n"
        self.lists[lst.encode()] = rest

    def jset(self, k, doc):
        put(self.m.json(k), json.dumps(doc).encode())
        self.json[k.encode()] = doc

    def jpath(self, k, field, val):
        put(self.m.ctl("json") / k / f"$.{field}", json.dumps(val).encode())
        self.json[k.encode()][field] = val

    def mixed_round(self, tag):
        """A round of non-idempotent history: appends, pushes, pops, renames."""
        self.n += 1
        n = self.n
        self.append("log", b"%s-%d;" % (tag.encode(), n))
        self.append("log", b"again-%d;" % n)
        self.set(f"s_{tag}", b"v-" + tag.encode() * 3)
        self.set("tmp", b"to be renamed %d" % n)
        self.rename("tmp", f"moved_{tag}")
        self.set("victim", b"x")
        self.delete("victim")
        self.push("q", b"%s-a" % tag.encode(), b"%s-b" % tag.encode(), b"%s-c" % tag.encode())
        self.pop("q")
        self.push(f"l_{tag}", b"1", b"2")
        self.pop(f"l_{tag}")
        if b"cfg" not in self.json:
            self.jset("cfg", {"rounds": 0, "tags": []})
        self.jpath("cfg", "rounds", n)
        self.jpath("cfg", f"t_{tag}", [n, tag])
        self.counter = getattr(self, "counter", 0) + 1
        self.append("counter", b"+")

    def check(self, m=None):
        got = dump_store(m or self.m)
        assert got["kv"] == self.kv
        assert got["lists"] == self.lists
        assert got["json"] == self.json


# --------------------------------------------- 1. crash at every step

CRASH_POINTS = [
    "snapshot-before-tmp",
    "snapshot-after-tmp-write",
    "snapshot-after-tmp-fsync",
    "snapshot-after-rename",
    "snapshot-after-dir-fsync",
    "wal-after-seal-rename",
    "wal-after-new-segment",
    "db-before-drop-sealed",
    "wal-after-drop-sealed",
]
# points at which the new snapshot file is already in place
NEW_SNAPSHOT_IN_PLACE = {"snapshot-after-rename", "snapshot-after-dir-fsync",
                         "db-before-drop-sealed", "wal-after-drop-sealed"}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_crash_point_during_snapshot(mkmount, point):
    m = mkmount()
    model = Model(m)
    model.mixed_round("a")
    model.set("big", gen_value(1, 300 * KIB))
    snapshot(m)  # an older snapshot + WAL records after it
    old_lsn = int(snap_info(m)["last_lsn"])
    assert old_lsn == int(m.stats()["wal_lsn"])
    model.mixed_round("b")
    m.stop()

    m.start(env={"MEMFLUX_CRASH_AT": point})
    model.check()
    model.mixed_round("c")
    model.append("big", b"tail")
    crash_lsn = int(m.stats()["wal_lsn"])
    assert crash_lsn > old_lsn
    meta = dump_meta(m)
    with pytest.raises(OSError):
        snapshot(m)
    m.crashed()

    files = data_files(m)
    if point in ("snapshot-after-tmp-write", "snapshot-after-tmp-fsync"):
        assert "memflux.snapshot.tmp" in files, files
    else:
        assert "memflux.snapshot.tmp" not in files, files
    if point == "wal-after-drop-sealed":
        assert sealed(m) == [], files
    else:
        assert sealed(m) == [f"memflux.wal.{crash_lsn:016x}"], files

    m.start()  # no crash point any more
    assert "memflux.snapshot.tmp" not in data_files(m)
    st = m.stats()
    want_snap = crash_lsn if point in NEW_SNAPSHOT_IN_PLACE else old_lsn
    assert int(st["recovery_snapshot_lsn"]) == want_snap
    assert int(st["wal_lsn"]) == crash_lsn
    model.check()  # nothing missing, nothing doubled, pops not undone
    assert dump_meta(m) == meta  # sizes and mtimes too

    # life goes on: more history, a snapshot that works, restarts
    model.mixed_round("d")
    snapshot(m)
    assert int(snap_info(m)["last_lsn"]) == int(m.stats()["wal_lsn"])
    model.mixed_round("e")
    m.stop()
    m.start()
    assert sealed(m) == []
    model.check()
    model.mixed_round("f")
    m.kill9()
    m.start()
    model.check()
    assert model.kv[b"counter"] == b"+" * 6


def test_crash_points_in_sequence(mkmount):
    """Crashes one after another in one data dir: sealed segments and stale
    tmp files pile up, some snapshots have no new record since the last one;
    every recovery still gives exactly the acknowledged store."""
    m = mkmount()
    model = Model(m)
    model.mixed_round("s0")
    m.stop()
    seq = ["snapshot-before-tmp", "wal-after-seal-rename", "snapshot-after-tmp-write",
           "wal-after-new-segment", "snapshot-after-tmp-fsync", "db-before-drop-sealed",
           "snapshot-after-rename", "wal-after-drop-sealed", "snapshot-after-dir-fsync"]
    for i, point in enumerate(seq):
        m.start(env={"MEMFLUX_CRASH_AT": point})
        model.check()
        if i % 3 != 2:  # every third crash: a snapshot with no new record
            model.mixed_round(f"r{i}")
        with pytest.raises(OSError):
            snapshot(m)
        m.crashed()
    m.start()
    model.check()
    assert "memflux.snapshot.tmp" not in data_files(m)
    snapshot(m)
    assert sealed(m) == []
    model.mixed_round("end")
    m.kill9()
    m.start()
    model.check()


def test_stray_tmp_removed_at_start(mkmount):
    m = mkmount()
    put(m.kv("k"), b"v")
    snapshot(m)
    m.stop()
    (m.data / "memflux.snapshot.tmp").write_bytes(b"half a snapshot")
    m.start()
    assert "memflux.snapshot.tmp" not in data_files(m)
    assert m.kv("k").read_bytes() == b"v"


# ------------------------------------------------- 2. size threshold

def test_threshold_snapshots_shrink_wal(mkmount):
    m = mkmount("--wal-threshold=1M")
    assert m.stats()["wal_threshold"] == str(MIB)
    samples = []
    for i in range(20):
        put(m.kv(f"v{i}"), gen_value(i, 256 * KIB))
        samples.append(int(m.stats()["wal_bytes"]))
    wait_until(lambda: m.stats()["snapshot_running"] == "0", what="snapshot to finish")
    st = m.stats()
    assert int(st["snapshots"]) >= 2, st
    assert int(st["wal_sealed_bytes"]) == 0
    assert sealed(m) == []
    assert "memflux.snapshot" in data_files(m)
    drops = [i for i in range(1, len(samples)) if samples[i] < samples[i - 1]]
    assert drops, samples  # the WAL was compacted while writing
    assert min(samples[drops[0]:]) < 600 * KIB, samples
    # commits that cross the threshold while a snapshot runs do not queue
    # another one; the next commit does.  After it, the WAL is (nearly) empty.
    put(m.kv("nudge"), b"n")
    wait_until(lambda: m.stats()["snapshot_running"] == "0", what="snapshot to finish")
    st2 = m.stats()
    if int(st["wal_bytes"]) >= MIB:
        assert int(st2["snapshots"]) == int(st["snapshots"]) + 1
        assert int(st2["wal_bytes"]) < 4 * KIB, st2  # (nearly) nothing left
    else:
        assert int(st2["snapshots"]) == int(st["snapshots"])
        assert int(st2["wal_bytes"]) < MIB
    assert os.path.getsize(m.data / "memflux.wal") == int(st2["wal_bytes"])
    info = snap_info(m)
    assert info["last_error"] == "none" and int(info["last_keys"]) >= 4

    m.stop()
    m.start("--wal-threshold=1M")
    st = m.stats()
    assert int(st["recovery_snapshot_lsn"]) > 0
    assert int(st["recovery_records_replayed"]) < 20
    assert sorted(os.listdir(m.kv())) == sorted([f"v{i}" for i in range(20)] + ["nudge"])
    for i in range(20):
        assert m.kv(f"v{i}").read_bytes() == gen_value(i, 256 * KIB), i


def test_default_threshold_128m(mkmount):
    m = mkmount()
    assert m.stats()["wal_threshold"] == str(128 * MIB)
    n, size = 600, 256 * KIB
    for i in range(n):
        put(m.kv(f"big{i:03d}"), gen_value(1000 + i, size))
    wait_until(lambda: int(m.stats()["snapshots"]) >= 1, what="threshold snapshot")
    wait_until(lambda: m.stats()["snapshot_running"] == "0", what="snapshot to finish")
    st = m.stats()
    assert int(st["wal_bytes"]) < 128 * MIB
    assert sealed(m) == []
    info = snap_info(m)
    assert info["last_error"] == "none"
    assert int(info["last_keys"]) >= 128 * MIB // size - 2
    m.stop()
    m.start()
    st = m.stats()
    assert int(st["recovery_snapshot_lsn"]) > 0
    assert int(st["keys_kv"]) == n
    for i in range(n):
        assert m.kv(f"big{i:03d}").read_bytes() == gen_value(1000 + i, size), i


# ------------------- 3. kill -9 during snapshots under concurrent writers






def test_kill9_during_snapshots_with_writers(mkmount, tmp_path):
    m = mkmount()
    nkeys, vsize = 4000, 8 * KIB
    for i in range(nkeys):
        put(m.kv(f"pre{i}"), gen_value(i, vsize))
    procs = []
    for w in range(4):
        procs.append(subprocess.Popen(
            [PY, "-c", WRITER_SCRIPT, str(m.mnt), str(w), str(tmp_path / f"w{w}.txt"), "c"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for p in procs:
        assert p.stdout.read(1) == b"r", p.stderr.read()
    snapshot(m)  # one complete snapshot under the writers
    assert snap_info(m)["last_error"] == "none"
    done = []

    def trigger():
        try:
            while True:
                snapshot(m)
                done.append(1)
        except OSError:
            pass

    t = threading.Thread(target=trigger)
    t.start()
    time.sleep(random.uniform(0.0, 0.7))  # the random kill moment
    m.kill9()
    t.join(60)
    assert not t.is_alive()
    for p in procs:
        p.wait(timeout=60)
        assert p.returncode == 0, p.stderr.read()

    m.start()
    store = dump_store(m)
    for i in range(nkeys):
        assert store["kv"].pop(b"pre%d" % i) == gen_value(i, vsize), i
    for w in range(4):
        notes = writer_notes(tmp_path / f"w{w}.txt")
        assert len(notes["sk"]) >= 4
        check_writer(store["kv"], store["lists"], w, notes, prefix="c")
    assert set(store["kv"]) <= {f"c{w}_{s}".encode() for w in range(4)
                                for s in [f"k{k}" for k in range(10)] + ["log"]}
    assert int(m.stats()["recovery_snapshot_lsn"]) > 0


# ------------------------------------------------ 4. damaged snapshot

@pytest.mark.parametrize("where", ["frame-header", "middle", "last-byte", "truncated"])
def test_damaged_snapshot_refuses_to_mount(mkmount, where):
    m = mkmount()
    for i in range(50):
        put(m.kv(f"k{i}"), b"value %d " % i * 50)
    put(m.kv("rand"), gen_value(7, 200 * KIB))
    put(m.lists("q"), b"a\nb\n", "ab")
    snapshot(m)
    put(m.kv("after"), b"in the WAL")
    m.stop()
    snap = m.data / "memflux.snapshot"
    good = snap.read_bytes()
    assert good[:4] == b"\x04\x22\x4d\x18"
    bad = bytearray(good)
    if where == "frame-header":
        bad[5] ^= 0x01
    elif where == "middle":
        bad[len(bad) // 2] ^= 0x10
    elif where == "last-byte":
        bad[-1] ^= 0xFF
    else:
        bad = bad[: len(bad) * 2 // 3]
    snap.write_bytes(bytes(bad))

    p = m.start(check=False)
    assert p.returncode != 0
    assert "snapshot" in p.stderr and str(snap) in p.stderr, p.stderr
    assert "memflux-check" in p.stderr, p.stderr
    assert not os.path.ismount(m.mnt) and os.listdir(m.mnt) == []
    assert snap.read_bytes() == bytes(bad)  # left as it was for inspection
    assert (m.data / "memflux.wal").exists()

    r = subprocess.run([CHECK, str(m.data)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "snapshot" in r.stdout + r.stderr

    snap.write_bytes(good)  # the refusal was about those bytes only
    m.start()
    assert m.kv("k49").read_bytes() == b"value 49 " * 50
    assert m.kv("after").read_bytes() == b"in the WAL"
    assert m.kv("rand").read_bytes() == gen_value(7, 200 * KIB)


# ------------------------------- 5. /.ctl/snapshot and writes during one

def test_ctl_snapshot_fields(mf):
    info = snap_info(mf)
    assert info["snapshots_taken"] == "0" and info["last_error"] == "none"
    for i in range(30):
        put(mf.kv(f"k{i}"), b"x" * 1000)
    put(mf.json("j"), b'{"a": [1, 2, 3]}')
    put(mf.lists("l"), b"1\n2\n", "ab")
    lsn = int(mf.stats()["wal_lsn"])
    t0 = time.time()
    snapshot(mf)
    info = snap_info(mf)
    assert set(info) >= {"snapshots_taken", "last_time", "last_lsn", "last_keys", "last_bytes",
                         "last_raw_bytes", "last_seconds", "last_capture_ms", "last_error"}
    assert info["snapshots_taken"] == "1"
    assert int(info["last_lsn"]) == lsn
    assert int(info["last_keys"]) == 32
    assert int(info["last_bytes"]) == os.path.getsize(mf.data / "memflux.snapshot")
    assert int(info["last_raw_bytes"]) > 30 * 1000
    assert int(info["last_bytes"]) < int(info["last_raw_bytes"])  # LZ4 did something
    assert abs(float(info["last_time"]) - t0) < 60
    assert float(info["last_seconds"]) >= 0 and float(info["last_capture_ms"]) >= 0
    assert info["last_error"] == "none"
    assert mf.stats()["snapshots"] == "1"
    # a second one with no change in between still works and counts
    snapshot(mf)
    info2 = snap_info(mf)
    assert info2["snapshots_taken"] == "2" and int(info2["last_lsn"]) == lsn


def test_writes_during_snapshot(mkmount):
    m = mkmount()
    for i in range(64):
        put(m.kv(f"big{i}"), gen_value(i, MIB))
    res = {}

    def snap():
        try:
            snapshot(m)
            res["ok"] = True
        except OSError as e:
            res["err"] = e

    t = threading.Thread(target=snap)
    t.start()
    during, i = 0, 0
    wait_until(lambda: m.stats()["snapshot_running"] == "1" or not t.is_alive(),
               what="snapshot start")
    while t.is_alive():
        put(m.kv(f"w{i}"), b"during %d" % i)
        put(m.kv("log"), b"%d;" % i, "ab")
        if m.stats()["snapshot_running"] == "1":
            during += 1
        i += 1
    t.join()
    assert res.get("ok"), res
    assert during >= 1, "no write completed while the snapshot ran"
    snap_lsn = int(snap_info(m)["last_lsn"])
    assert snap_lsn < int(m.stats()["wal_lsn"])
    m.stop()
    m.start()
    assert int(m.stats()["recovery_snapshot_lsn"]) == snap_lsn
    for k in range(i):
        assert m.kv(f"w{k}").read_bytes() == b"during %d" % k
    assert m.kv("log").read_bytes() == b"".join(b"%d;" % k for k in range(i))
    for k in range(64):
        assert m.kv(f"big{k}").read_bytes() == gen_value(k, MIB), k


def test_snapshot_requested_during_snapshot_covers_later_writes(mkmount):
    """A trigger that arrives while a snapshot runs must not be answered by
    that snapshot (it may not hold writes made before the trigger)."""
    m = mkmount()
    for i in range(64):
        put(m.kv(f"big{i}"), gen_value(i, MIB))
    res = {}

    def first():
        try:
            snapshot(m)
            res["ok"] = True
        except OSError as e:
            res["err"] = e

    t = threading.Thread(target=first)
    t.start()
    wait_until(lambda: m.stats()["snapshot_running"] == "1" or not t.is_alive(),
               what="snapshot start")
    put(m.kv("late"), b"written while the first snapshot ran")
    put(m.kv("big0"), b"tail", "ab")
    lsn = int(m.stats()["wal_lsn"])
    snapshot(m)  # the second trigger
    t.join()
    assert res.get("ok"), res
    info = snap_info(m)
    assert int(info["last_lsn"]) >= lsn, info
    assert info["snapshots_taken"] == "2"
    m.kill9()
    m.start()
    assert int(m.stats()["recovery_snapshot_lsn"]) >= lsn
    assert int(m.stats()["recovery_records_replayed"]) == 0
    assert m.kv("late").read_bytes() == b"written while the first snapshot ran"
    assert m.kv("big0").read_bytes() == gen_value(0, MIB) + b"tail"
