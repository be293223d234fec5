"""Issue #2: the mount, the store and /kv files that behave like real files."""
import ctypes
import errno
import os
import subprocess
import threading
import time

import pytest

from conftest import BIN, Mount


def sh(cmd, **kw):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, **kw)


def test_layout(mf):
    assert sorted(os.listdir(mf.mnt)) == [".ctl", "json", "kv", "lists", "sets"]
    assert sorted(os.listdir(mf.ctl(""))) == ["bpop", "expire", "incr", "jincr", "json", "pop",
                                              "snapshot", "srem", "stats"]


def test_set_get_append_rename_delete_shell(mf):
    g = mf.kv("greeting")
    assert sh(f"echo hello > {g}").returncode == 0
    assert sh(f"cat {g}").stdout == "hello\n"
    assert sh(f"echo more >> {g}").returncode == 0
    assert g.read_bytes() == b"hello\nmore\n"
    assert os.stat(g).st_size == 11
    ls = sh(f"ls -l {mf.kv()}").stdout
    assert " 11 " in ls and "greeting" in ls
    assert sh(f"mv {g} {mf.kv('hi')}").returncode == 0
    assert os.listdir(mf.kv()) == ["hi"]
    assert mf.kv("hi").read_bytes() == b"hello\nmore\n"
    assert sh(f"rm {mf.kv('hi')}").returncode == 0
    assert os.listdir(mf.kv()) == []
    assert not g.exists()


def test_create_touch_and_missing(mf):
    assert sh(f"touch {mf.kv('t')}").returncode == 0
    assert mf.kv("t").stat().st_size == 0
    with pytest.raises(FileNotFoundError):
        open(mf.kv("nope"), "rb")
    with pytest.raises(FileExistsError):
        os.open(mf.kv("t"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)


def test_trunc_append_offsets_holes(mf):
    p = mf.kv("f")
    p.write_bytes(b"0123456789")
    with open(p, "r+b") as f:
        f.seek(3)
        f.write(b"ABC")
    assert p.read_bytes() == b"012ABC6789"
    with open(p, "r+b") as f:
        f.seek(15)
        f.write(b"X")
    assert p.read_bytes() == b"012ABC6789" + b"\0" * 5 + b"X"
    assert p.stat().st_size == 16
    with open(p, "ab") as f:
        f.write(b"++")
    assert p.read_bytes().endswith(b"X++")
    with open(p, "wb") as f:  # O_TRUNC
        f.write(b"new")
    assert p.read_bytes() == b"new"
    fd = os.open(p, os.O_RDONLY)
    try:
        assert os.pread(fd, 2, 1) == b"ew"
        assert os.lseek(fd, 0, os.SEEK_END) == 3
        assert os.pread(fd, 10, 100) == b""
    finally:
        os.close(fd)


def test_truncate_up_and_down(mf):
    p = mf.kv("t")
    p.write_bytes(b"abcdef")
    os.truncate(p, 3)
    assert p.read_bytes() == b"abc"
    os.truncate(p, 6)
    assert p.read_bytes() == b"abc\0\0\0"
    assert sh(f"truncate -s 10 {p}").returncode == 0
    assert p.stat().st_size == 10
    with open(p, "r+b") as f:
        f.truncate(1)
        f.seek(0)
        assert f.read() == b"a"
    assert p.read_bytes() == b"a"


def test_mtime_ctime_and_utimens(mf):
    p = mf.kv("m")
    p.write_bytes(b"1")
    st1 = p.stat()
    now = time.time()
    assert abs(st1.st_mtime - now) < 5
    os.utime(p, ns=(1_000_000_000, 2_000_000_123))
    assert p.stat().st_mtime_ns == 2_000_000_123
    assert sh(f"touch -d '2001-02-03 04:05:06 UTC' {p}").returncode == 0
    assert p.stat().st_mtime == 981173106
    p.write_bytes(b"22")
    st2 = p.stat()
    assert st2.st_mtime > 981173106 and st2.st_ctime >= st2.st_mtime - 1


def test_binary_values_and_odd_names(mf):
    data = bytes(range(256)) * 100 + b"\0\0end"
    name = "caf\u00e9 \t weird?*" + "x" * 10
    p = mf.kv(name)
    p.write_bytes(data)
    assert p.read_bytes() == data
    raw = os.fsencode(str(mf.kv())) + b"/bad\xff\xfeutf8"
    with open(raw, "wb") as f:
        f.write(b"v")
    with open(raw, "rb") as f:
        assert f.read() == b"v"
    assert b"bad\xff\xfeutf8" in os.listdir(os.fsencode(str(mf.kv())))
    long = mf.kv("k" * 255)
    long.write_bytes(b"L")
    assert long.read_bytes() == b"L"
    with pytest.raises(OSError) as ei:
        mf.kv("k" * 256).write_bytes(b"x")
    assert ei.value.errno == errno.ENAMETOOLONG


def test_empty_and_large_value(mf):
    p = mf.kv("empty")
    p.write_bytes(b"")
    assert p.read_bytes() == b"" and p.stat().st_size == 0
    big = os.urandom(1 << 20) * 24  # 24 MiB
    q = mf.kv("big")
    q.write_bytes(big)
    assert q.stat().st_size == len(big)
    assert q.read_bytes() == big


def test_rename_replaces_atomically_and_exdev(mf):
    mf.kv("a").write_bytes(b"A")
    mf.kv("b").write_bytes(b"B")
    os.rename(mf.kv("a"), mf.kv("b"))
    assert mf.kv("b").read_bytes() == b"A"
    assert not mf.kv("a").exists()
    with pytest.raises(OSError) as ei:
        os.rename(mf.kv("b"), mf.lists("b"))
    assert ei.value.errno == errno.EXDEV
    r = sh(f"mv {mf.kv('b')} {mf.json('b')}")
    # mv falls back to copy+unlink on EXDEV; the JSON copy of "A" is invalid
    assert mf.kv("b").exists() or r.returncode != 0


def test_unlink_while_open_keeps_data(mf):
    p = mf.kv("u")
    p.write_bytes(b"keep me")
    with open(p, "r+b") as f:
        os.unlink(p)
        assert not p.exists()
        assert os.listdir(mf.kv()) == []
        assert f.read() == b"keep me"
        f.write(b"!")
        f.flush()
        f.seek(0)
        assert f.read() == b"keep me!"
        assert os.fstat(f.fileno()).st_size == 8
    assert os.listdir(mf.kv()) == []
    assert not any(n.startswith(".fuse_hidden") for n in os.listdir(mf.kv()))


def test_rename_over_open_file(mf):
    mf.kv("target").write_bytes(b"old")
    mf.kv("new").write_bytes(b"fresh")
    with open(mf.kv("target"), "rb") as f:
        os.rename(mf.kv("new"), mf.kv("target"))
        assert f.read() == b"old"
    assert mf.kv("target").read_bytes() == b"fresh"
    assert os.listdir(mf.kv()) == ["target"]


def test_mkdir_outside_kv_refused_and_chmod_policy(mf):
    """Folders are in /kv only (issue 14); modes are kept per key (there and
    in /json, /lists); the fixed tree's own modes are fixed."""
    with pytest.raises(PermissionError):
        os.mkdir(mf.json("d"))
    assert "mkdir json/d refused" in mf.log()
    p = mf.json("c")
    p.write_text("1")
    assert p.stat().st_mode & 0o7777 == 0o644
    os.chmod(p, 0o600)
    assert p.stat().st_mode & 0o7777 == 0o600
    assert p.stat().st_uid == os.getuid()
    os.chmod(mf.mnt / "json", 0o755)  # same mode: accepted
    with pytest.raises(PermissionError):
        os.chmod(mf.mnt / "json", 0o700)


def test_ownership_and_statfs(mf):
    for i in range(5):
        mf.kv(f"k{i}").write_bytes(b"v" * 1000)
    st = os.statvfs(mf.mnt)
    assert st.f_namemax == 255
    assert st.f_blocks > 0 and st.f_bfree <= st.f_blocks
    assert st.f_files - st.f_ffree == 5
    r = sh(f"df {mf.mnt}")
    assert r.returncode == 0 and "memfluxfs" in r.stdout


def test_shell_tools(mf):
    k = mf.kv()
    src = mf.base / "src.txt"
    src.write_text("alpha\nbeta\ngamma\n")
    cmds = [
        f"cp {src} {k}/copy",
        f"cmp {src} {k}/copy",
        f"echo tail | tee -a {k}/copy > /dev/null",
        f"sed -i 's/beta/BETA/' {k}/copy",
        f"grep -r BETA {k}",
        f"find {k} -name copy | grep -q copy",
        f"dd if=/dev/zero of={k}/dd bs=4k count=4 status=none",
        f"printf XY | dd of={k}/dd bs=1 seek=5 conv=notrunc status=none",
        f"stat -c %s {k}/dd",
    ]
    for c in cmds:
        r = sh(c)
        assert r.returncode == 0, (c, r.stderr)
    assert (k / "copy").read_text() == "alpha\nBETA\ngamma\ntail\n"
    d = (k / "dd").read_bytes()
    assert len(d) == 16384 and d[5:7] == b"XY" and d[:5] == b"\0" * 5
    assert sorted(os.listdir(k)) == ["copy", "dd"]


def test_visibility_after_close_no_stale_cache(mf):
    p = mf.kv("c")
    p.write_bytes(b"first version, long")
    reader = open(p, "rb")
    assert reader.read() == b"first version, long"
    with open(p, "wb") as w:
        w.write(b"v2")
    # a fresh open after the writer's close sees the new value and size
    assert p.read_bytes() == b"v2"
    assert p.stat().st_size == 2
    reader.seek(0)
    assert reader.read() == b"v2"
    reader.close()
    # a second writer handle: its close must be visible to the first's opener
    a = open(p, "r+b")
    b = open(p, "r+b")
    a.write(b"AAAA")
    b.write(b"BBBBBBBB")
    a.close()
    assert p.read_bytes() == b"AAAA"
    b.close()  # last close wins
    assert p.read_bytes() == b"BBBBBBBB"
    assert p.stat().st_size == 8


def test_concurrent_appenders_no_loss(mf):
    p = mf.kv("log")
    p.write_bytes(b"")

    def worker(i):
        for j in range(50):
            with open(p, "ab") as f:
                f.write(f"{i}:{j}\n".encode())

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    lines = p.read_text().splitlines()
    assert sorted(lines) == sorted(f"{i}:{j}" for i in range(4) for j in range(50))


def test_second_mount_same_data_dir_refused(mkmount):
    a = mkmount(name="a")
    b = Mount(a.base, "b")
    b.data = a.data
    p = b.start(check=False)
    assert p.returncode != 0
    assert str(a.data) in p.stderr


def test_bad_options_and_mountpoints(tmp_path):
    r = subprocess.run([BIN, "--fsync=bogus", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0 and "fsync" in r.stderr
    r = subprocess.run([BIN, f"--data-dir={tmp_path}/d", str(tmp_path / "missing")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "missing" in r.stderr
    f = tmp_path / "file"
    f.write_text("x")
    r = subprocess.run([BIN, f"--data-dir={tmp_path}/d", str(f)], capture_output=True, text=True)
    assert r.returncode != 0 and "not a directory" in r.stderr
    r = subprocess.run([BIN, "--wal-threshold=12Q", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode != 0
    ro = tmp_path / "ro"
    ro.write_text("")  # a file where the data dir should be
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run([BIN, f"--data-dir={ro}", str(mnt)], capture_output=True, text=True)
    assert r.returncode != 0 and str(ro) in r.stderr
    assert not os.path.ismount(mnt)
    r = subprocess.run([BIN, "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "memfluxfs" in r.stdout
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--data-dir" in r.stdout


def test_default_data_dir_and_o_option(tmp_path):
    m = Mount(tmp_path, "x")
    env = dict(os.environ, MEMFLUX_DATA_DIR=str(tmp_path / "envdir"))
    try:
        r = subprocess.run([BIN, str(m.mnt)], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr
        m.data = tmp_path / "envdir"
        m.pid = int((m.data / "memflux.lock").read_text())
        assert (m.data / "memflux.wal").exists()
        assert oct((m.data).stat().st_mode & 0o777) == "0o700"
        m.stop()
        r = subprocess.run([BIN, "-o", f"data_dir={tmp_path}/odir", str(m.mnt)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        m.data = tmp_path / "odir"
        m.pid = int((m.data / "memflux.lock").read_text())
        assert (m.data / "memflux.wal").exists()
    finally:
        m.cleanup()


def test_sigterm_unmounts_cleanly_and_data_survives(mkmount):
    m = mkmount()
    m.kv("a").write_bytes(b"persist")
    from conftest import wait_pid_exit
    os.kill(m.pid, 15)
    assert wait_pid_exit(m.pid)
    m.pid = None
    assert not os.path.ismount(m.mnt)
    m.start()
    assert m.kv("a").read_bytes() == b"persist"


def test_stats_file(mf):
    mf.kv("a").write_bytes(b"x")
    mf.json("j").write_text('{"a":1}')
    s = mf.stats()
    for k in ["keys", "keys_kv", "keys_json", "keys_lists", "memory_bytes", "wal_bytes",
              "wal_lsn", "wal_synced_lsn", "wal_records", "wal_batches", "wal_fsyncs",
              "fsync_mode", "recovery_seconds", "recovery_records_replayed"]:
        assert k in s, k
    assert s["keys_kv"] == "1" and s["keys_json"] == "1"
    assert int(s["wal_records"]) >= 2
    with pytest.raises(PermissionError):
        open(mf.ctl("stats"), "w")


def test_unlinked_open_file_keeps_growing_after_fsync(mf):
    """Temp-file pattern: open, unlink, write, fsync, write more (the buffer
    the fsync handed to the orphan must not be grown in place)."""
    p = mf.kv("tmp")
    p.write_bytes(b"start")
    fd = os.open(p, os.O_RDWR)
    other = os.open(p, os.O_RDONLY)
    try:
        os.unlink(p)
        os.pwrite(fd, b"0123456789", 0)
        os.fsync(fd)
        assert os.pread(other, 100, 0) == b"0123456789"
        big = b"x" * 100_000
        os.pwrite(fd, big, 10)
        os.fsync(fd)
        assert os.pread(fd, 20, 0) == b"0123456789" + b"x" * 10
        assert os.pread(other, 200_000, 0) == b"0123456789" + big
        assert os.fstat(fd).st_size == 100_010
    finally:
        os.close(fd)
        os.close(other)
    assert os.listdir(mf.kv()) == []


def test_sizes_beyond_the_value_limit_are_efbig(mf):
    p = mf.kv("big")
    p.write_bytes(b"v")
    for attempt in (lambda: os.truncate(p, 1 << 40),
                    lambda: os.truncate(p, (1 << 30) + (1 << 28) + 1)):
        with pytest.raises(OSError) as ei:
            attempt()
        assert ei.value.errno == errno.EFBIG
    fd = os.open(p, os.O_WRONLY)
    try:
        with pytest.raises(OSError) as ei:
            os.pwrite(fd, b"x", 1 << 40)
        assert ei.value.errno == errno.EFBIG
        with pytest.raises(OSError) as ei:
            os.ftruncate(fd, 1 << 40)
        assert ei.value.errno == errno.EFBIG
    finally:
        os.close(fd)
    assert p.read_bytes() == b"v"
    # nothing unappliable was logged: a restart comes up with the value
    mf.stop()
    mf.start()
    assert p.read_bytes() == b"v"


def test_fsync_of_a_directory_syncs_the_wal(mkmount):
    m = mkmount("--fsync-interval-ms=60000")
    m.kv("a").write_bytes(b"1")
    os.rename(m.kv("a"), m.kv("b"))
    st = m.stats()
    assert int(st["wal_synced_lsn"]) < int(st["wal_lsn"])
    dfd = os.open(m.kv(), os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    st = m.stats()
    assert int(st["wal_synced_lsn"]) == int(st["wal_lsn"])


def test_reads_race_writes_on_one_handle(mf):
    """Reads on a handle whose private buffer a concurrent write keeps
    growing (reallocating) must return consistent bytes, never garbage."""
    p = mf.kv("race")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    stop = threading.Event()
    bad = []

    def reader():
        while not stop.is_set():
            data = os.pread(fd, 1 << 20, 0)
            if data.strip(b"abcdefghijklmnopqrstuvwxyz"):
                bad.append(data[:64])

    try:
        os.pwrite(fd, b"a", 0)
        t = threading.Thread(target=reader)
        t.start()
        off = 1
        for i in range(300):
            chunk = bytes([97 + i % 26]) * (1000 + i * 37)
            os.pwrite(fd, chunk, off)
            off += len(chunk)
        stop.set()
        t.join()
        os.fsync(fd)
        assert os.fstat(fd).st_size == off
    finally:
        os.close(fd)
    assert not bad, bad[:3]
    assert p.stat().st_size == off


def test_listing_spanning_many_readdir_calls(mf):
    # 3000 long names need many readdir replies: every key exactly once,
    # in a listing that stays stable while keys change during it.
    names = [f"key-{i:05d}-" + "x" * 100 for i in range(3000)]
    for n in names:
        os.close(os.open(mf.kv(n), os.O_WRONLY | os.O_CREAT, 0o644))
    with os.scandir(mf.kv()) as it:
        seen = []
        for i, e in enumerate(it):
            seen.append(e.name)
            if i == 10:
                os.unlink(mf.kv(names[-1]))  # the open listing keeps its view
    assert sorted(seen) == sorted(names)
    assert len(os.listdir(mf.kv())) == 2999


class _Dirent(ctypes.Structure):
    # glibc's struct dirent on 64-bit Linux (readdir is readdir64 there)
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.opendir.restype = ctypes.c_void_p
_libc.opendir.argtypes = [ctypes.c_char_p]
_libc.readdir.restype = ctypes.POINTER(_Dirent)
_libc.readdir.argtypes = [ctypes.c_void_p]
_libc.closedir.argtypes = [ctypes.c_void_p]


def raw_listing(d):
    """{name: d_ino} as readdir returns them, "." and ".." included
    (os.scandir leaves those two out)."""
    h = _libc.opendir(os.fsencode(d))
    assert h, os.strerror(ctypes.get_errno())
    out = {}
    try:
        while True:
            e = _libc.readdir(h)
            if not e:
                break
            out[e.contents.d_name.decode()] = e.contents.d_ino
    finally:
        _libc.closedir(h)
    return out


def test_readdir_inode_is_stat_inode(mkmount):
    """ls -i, find and du -l trust d_ino: every listed entry's d_ino must be
    the st_ino a stat of it returns, for keys the kernel has looked up and
    for keys it never has (listed first after a restart), fixed tree
    entries, "." and ".."."""
    m = mkmount()
    m.kv("a").write_bytes(b"1")
    m.kv("b b").write_bytes(b"2")
    m.json("doc").write_text('{"x": 1}')
    m.lists("q").write_bytes(b"one\n")
    dirs = [m.mnt, m.kv(), m.json(), m.lists(), m.ctl(""), m.ctl("json"),
            m.ctl("json/doc"), m.ctl("pop")]

    def check():
        for d in dirs:
            raw = raw_listing(d)
            assert "." in raw and ".." in raw, d
            for name, ino in raw.items():
                if d == m.mnt and name == "..":
                    continue  # the mountpoint's parent is not ours
                assert ino == os.stat(d / name).st_ino, (d, name)
            for e in os.scandir(d):
                assert e.inode() == os.stat(e.path, follow_symlinks=False).st_ino, e.path
        # a listed key's number stays its number while it is listed
        assert raw_listing(m.kv())["a"] == os.stat(m.kv("a")).st_ino

    check()
    m.stop()
    m.start()
    check()  # listed before any lookup of the keys
