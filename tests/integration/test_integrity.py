"""Issue 9, data integrity: what concurrent programs may and may not observe.

Every test here reproduces a defect found on 2a77cae through the mount.  The
rules they check (README "File semantics"): a handle's writes are private
until it commits, a commit is one whole value (last close wins), new opens
see only committed values, an open handle keeps the file it opened, and no
reader ever sees bytes nobody wrote.
"""
import errno
import os
import random
import subprocess
import threading

import pytest

from conftest import wait_pid_exit

SEED = int(os.environ.get("MF_TEST_SEED", random.randrange(1 << 30)))


def setup_module(_):
    print(f"test_integrity seed {SEED}")


def put(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def get(path):
    with open(path, "rb") as f:
        return f.read()


# 1 -------------------------------------------------------------------------

@pytest.mark.parametrize("existing", [False, True])
def test_two_creators_last_close_wins(mkmount, existing):
    m = mkmount()
    k = m.kv("w")
    if existing:
        put(k, b"old")
    # The exact program (buffered: the bytes reach the mount at close).
    f1 = open(k, "wb")
    f2 = open(k, "wb")
    f1.write(b"A" * 5000)
    f2.write(b"B" * 3000)
    f1.close()
    f2.close()
    assert get(k) == b"B" * 3000
    # The same with each write issued while both are open.
    k2 = m.kv("w2")
    if existing:
        put(k2, b"old")
    a = os.open(k2, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    b = os.open(k2, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(a, b"A" * 5000)
    os.write(b, b"B" * 3000)
    os.close(a)
    assert get(k2) == b"A" * 5000
    os.close(b)
    assert get(k2) == b"B" * 3000
    m.stop()
    m.start()
    assert get(k) == b"B" * 3000 and get(k2) == b"B" * 3000


# 2 -------------------------------------------------------------------------

def test_readers_never_see_unwritten_bytes_during_overwrites(mf):
    """bash overwrites a key in a loop; a reader must see an old value, a new
    value or (inside the O_TRUNC window) nothing: never NULs or a mix."""
    f = mf.kv("f")
    put(f, b"12\n")
    legal = {b"", b"12\n", b"abcdef\n"}
    w = subprocess.Popen(["bash", "-c",
                          f"for i in $(seq 1500); do echo 12 > {f}; echo abcdef > {f}; done"])
    bad, reads = [], 0
    try:
        while w.poll() is None:
            got = get(f)
            reads += 1
            if got not in legal:
                bad.append(got)
    finally:
        w.wait()
    assert w.returncode == 0
    assert reads > 100
    assert not bad, f"{len(bad)} of {reads} reads saw bytes nobody wrote: {bad[:5]}"


# 3 -------------------------------------------------------------------------

def test_rm_is_not_undone_by_concurrent_touch(mf):
    """utimens on a created, not yet committed key races its unlink: once
    both returned and the unlink succeeded, the key is gone for good."""
    rng = random.Random(SEED)
    resurrected = []
    for i in range(300):
        k = mf.kv(f"t{i}")
        fd = os.open(k, os.O_WRONLY | os.O_CREAT, 0o644)  # pending key
        res = {}
        start = threading.Barrier(2)

        def touch():
            # utimens by name until the name is gone: every call whose lookup
            # still found the key races the unlink's DEL.
            start.wait()
            try:
                while True:
                    os.utime(k)
            except OSError as e:
                res["touch"] = e.errno

        def rm():
            start.wait()
            try:
                os.unlink(k)
                res["rm"] = 0
            except OSError as e:
                res["rm"] = e.errno

        ts = [threading.Thread(target=touch), threading.Thread(target=rm)]
        rng.shuffle(ts)
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        os.close(fd)
        assert res["rm"] == 0
        if os.path.exists(k):
            resurrected.append(i)
    assert not resurrected, f"rm undone for {resurrected[:10]} (seed {SEED})"
    mf.stop()
    mf.start()
    assert not os.listdir(mf.kv())


# 5 -------------------------------------------------------------------------

def test_refused_first_document_leaves_no_phantom(mf, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"a": 1,}')
    r = subprocess.run(["cp", str(bad), str(mf.json("x"))], capture_output=True, text=True)
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert "x" not in os.listdir(mf.json())
    with pytest.raises(FileNotFoundError):
        os.stat(mf.json("x"))
    with pytest.raises(FileNotFoundError):
        open(mf.json("x"), "rb")
    put(mf.kv("x"), b"string")  # the name is free for another type
    with pytest.raises(FileNotFoundError):
        os.stat(mf.json("x"))
    with pytest.raises(OSError) as e:
        put(mf.json("x"), b"[1]")
    assert e.value.errno == errno.EEXIST


# 6 -------------------------------------------------------------------------

@pytest.mark.parametrize("start", ["empty", "pending"])
def test_o_trunc_is_never_dropped(mf, start):
    k = mf.kv("k")
    if start == "empty":
        put(k, b"")
        a = os.open(k, os.O_WRONLY | os.O_TRUNC)
    else:
        a = os.open(k, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    c = os.open(k, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(c, b"CCCCCCCC")
    os.close(c)
    os.write(a, b"AAAA")
    os.close(a)
    assert get(k) == b"AAAA"


def test_o_trunc_json_pending_creators(mf):
    d = mf.json("d")
    c = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # creates (pending)
    a = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # opens the pending key
    os.write(c, b'{"c": 12345}')
    os.close(c)
    os.write(a, b"[1]")
    os.close(a)  # a whole valid document: no EINVAL, no mix
    assert get(d) == b"[1]"


# 7 -------------------------------------------------------------------------

def test_new_opens_see_only_committed_json(mf):
    d = mf.json("x")
    put(d, b'{"a": 1}')
    w = os.open(d, os.O_WRONLY | os.O_TRUNC)
    try:
        assert get(d) == b'{"a": 1}'
        assert os.write(w, b'{"a":') == 5
        assert get(d) == b'{"a": 1}'
        os.write(w, b' 2}')
    finally:
        os.close(w)
    assert get(d) == b'{"a": 2}'


APPENDER = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(fd, b"two\n")
sys.stdout.write("w\n"); sys.stdout.flush()
sys.stdin.readline()   # hold the handle open until told
os.close(fd)
"""


def test_new_opens_see_only_committed_append(mf):
    # The writer is another process: a fork/exec by the holder of a writable
    # descriptor closes a duplicate of it, which is a commit point (FLUSH).
    k = mf.kv("log")
    put(k, b"one\n")
    w = subprocess.Popen(["python3", "-c", APPENDER, str(k)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        assert w.stdout.readline() == "w\n"
        assert get(k) == b"one\n"
        r = subprocess.run(["cat", str(k)], capture_output=True)
        assert r.stdout == b"one\n"
    finally:
        w.stdin.write("\n")
        w.stdin.close()
        w.wait()
    assert w.returncode == 0
    assert get(k) == b"one\ntwo\n"


def test_new_opens_see_only_committed_overwrite(mf):
    k = mf.kv("v")
    put(k, b"x" * 10)
    w = os.open(k, os.O_RDWR)
    try:
        os.pwrite(w, b"Y" * 20000, 0)
        assert get(k) == b"x" * 10
        assert os.pread(w, 5, 0) == b"YYYYY"  # the writer sees its own data
    finally:
        os.close(w)
    assert get(k) == b"Y" * 20000


# 8 -------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["unlink", "rename"])
def test_open_handle_keeps_its_file(mf, how):
    rng = random.Random(SEED)
    bad = []
    for i in range(200):
        k = mf.kv(f"k{i}")
        val = f"value-{i}-".encode() * rng.randrange(1, 2000)
        put(k, val)
        if how == "rename":
            put(mf.kv(f"n{i}"), b"NEW" * 7)
        fd = os.open(k, os.O_RDONLY)
        got = {}
        go = threading.Barrier(2)

        def reader():
            go.wait()
            try:
                got["v"] = os.pread(fd, len(val) + 10, 0)
            except OSError as e:
                got["v"] = e

        def mutator():
            go.wait()
            if how == "unlink":
                os.unlink(k)
            else:
                os.rename(mf.kv(f"n{i}"), k)

        ts = [threading.Thread(target=reader), threading.Thread(target=mutator)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        if got["v"] != val:
            bad.append((i, got["v"] if isinstance(got["v"], OSError) else got["v"][:20]))
        assert os.pread(fd, len(val) + 10, 0) == val
        os.close(fd)
    assert not bad, f"{len(bad)} of 200 reads lost the open file: {bad[:5]} (seed {SEED})"


# 9 -------------------------------------------------------------------------

def test_refused_empty_truncate_leaves_document_visible(mf):
    d = mf.json("x")
    doc = b'{"keep": true}'
    put(d, doc)
    r = subprocess.run(["cat", str(d)], capture_output=True)
    assert r.stdout == doc  # the kernel has the document cached
    for _ in range(20):
        r = subprocess.run(["cp", "/dev/null", str(d)], capture_output=True, text=True)
        assert r.returncode != 0 and "Invalid argument" in r.stderr
        assert subprocess.run(["cat", str(d)], capture_output=True).stdout == doc
        assert get(d) == doc
        assert os.stat(d).st_size == len(doc)


def test_refused_empty_truncate_is_not_seen_by_an_open_reader(mf):
    """A reader holding the document open, reading again from offset 0
    after another handle's O_TRUNC was refused at close, sees the document:
    on 2a77cae it read b'' in 162 of 200 rounds (the kernel kept the size 0
    that the O_TRUNC open had set)."""
    d = mf.json("x")
    doc = b'{"a":1}'
    put(d, doc)
    seen = []
    for _ in range(200):
        fd = os.open(d, os.O_RDONLY)
        try:
            assert os.read(fd, 100) == doc
            w = os.open(d, os.O_WRONLY | os.O_TRUNC)
            with pytest.raises(OSError) as e:
                os.close(w)
            assert e.value.errno == errno.EINVAL
            os.lseek(fd, 0, os.SEEK_SET)
            v = os.read(fd, 100)
            if v != doc:
                seen.append(v)
        finally:
            os.close(fd)
    assert not seen, f"{len(seen)} of 200 reads after a refused truncate: {seen[:3]}"


def test_document_written_right_after_a_refused_one_is_kept(mkmount):
    """`cp bad.json x` is refused; `cp good.json x` right after must keep
    good.json even when the refused creator's RELEASE (which the kernel
    sends without waiting) arrives after the second open: here it is made
    late on purpose (MEMFLUX_DELAY_AT=release:MS).  Before the fix the
    second open reused the refused, nameless node: its close returned 0
    and the document was gone."""
    m = mkmount(env={"MEMFLUX_DELAY_AT": "release:300"})
    d = m.json("x")
    for i in range(3):
        fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, b'{"bad": ,}')
        with pytest.raises(OSError) as e:
            os.close(fd)
        assert e.value.errno == errno.EINVAL
        good = b'{"n": %d}' % i
        fd = os.open(d, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, good)
        os.close(fd)
        assert get(d) == good
        os.unlink(d)


def test_invalid_json_into_unlinked_document_is_refused(mf):
    d = mf.json("x")
    put(d, b"[1]")
    fd = os.open(d, os.O_WRONLY | os.O_TRUNC)
    os.unlink(d)
    os.write(fd, b"{nope")
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.EINVAL


# 10 ------------------------------------------------------------------------

def test_list_reader_sees_list_as_of_open_while_popped(mf):
    q = mf.lists("q")
    lines = [b"%07d" % i for i in range(30000)]
    put(q, b"\n".join(lines) + b"\n")
    fd = os.open(q, os.O_RDONLY)
    stop = threading.Event()
    first = threading.Event()
    popped = []

    def popper():
        while not stop.is_set():
            try:
                popped.append(get(mf.ctl("pop") / "q"))
            except OSError:
                return
            first.set()

    t = threading.Thread(target=popper)
    t.start()
    chunks, off = [], 0
    try:
        while True:
            c = os.pread(fd, 65536, off)
            if not c:
                break
            chunks.append(c)
            off += len(c)
            # Pops really happen between this reader's chunks.
            assert first.wait(60), "the popper never popped"
    finally:
        stop.set()
        t.join()
        os.close(fd)
    assert popped, "the popper never ran"
    assert b"".join(chunks) == b"\n".join(lines) + b"\n"
    assert [p.rstrip(b"\n") for p in popped] == lines[:len(popped)]


# Found by the exerciser (tests/exerciser) ----------------------------------

def test_created_key_is_listed_before_its_first_close(mf):
    fd = os.open(mf.kv("k1"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert "k1" in os.listdir(mf.kv())
        assert os.stat(mf.kv("k1")).st_size == 0
    finally:
        os.close(fd)
    assert os.listdir(mf.kv()) == ["k1"]


def test_append_creator_that_wrote_nothing_closes_cleanly(mf):
    q = mf.lists("q0")
    h = os.open(q, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)  # creates q0
    with open(q, "ab") as f:  # another handle pushes: the key now exists
        f.write(b"e1\n")
    os.close(h)  # nothing of its own to commit: no EINVAL
    assert get(q) == b"e1\n"
# Review of the handle views / cache policy (33af195, aacc5e4) --------------

def test_creator_that_wrote_nothing_commits_nothing(mf):
    """open(O_CREAT) without O_TRUNC that writes nothing changes nothing at
    its close, even when another handle committed the key meanwhile: no
    SET of its empty value over that handle's data, no empty RPUSH refused
    with EINVAL."""
    k = mf.kv("c")
    a = os.open(k, os.O_WRONLY | os.O_CREAT, 0o644)  # touch: pending key
    b = os.open(k, os.O_WRONLY | os.O_TRUNC)
    os.write(b, b"data")
    os.close(b)
    os.close(a)
    assert get(k) == b"data"
    for flags in (os.O_WRONLY | os.O_APPEND, os.O_WRONLY):
        q = mf.lists(f"q{flags}")
        a = os.open(q, flags | os.O_CREAT, 0o644)
        b = os.open(q, os.O_WRONLY | os.O_APPEND)
        os.write(b, b"x\n")
        os.close(b)
        os.close(a)  # EINVAL ("commit failed") before the fix
        assert get(q) == b"x\n"
    a = os.open(mf.kv("ap"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    b = os.open(mf.kv("ap"), os.O_WRONLY | os.O_APPEND)
    os.write(b, b"data")
    os.close(b)
    os.close(a)
    assert get(mf.kv("ap")) == b"data"
    assert "commit failed" not in mf.log()


def test_fstat_of_open_file_during_rename(mkmount):
    """An open file's attributes come from its own value while a rename of
    its name is in flight: fstat never fails with ENOENT (the store may
    already have applied the rename while the node still has the old name)."""
    m = mkmount("--cache-timeout=0")  # every fstat is a GETATTR
    a, b = m.kv("ra"), m.kv("rb")
    put(a, b"hello")
    fd = os.open(a, os.O_RDONLY)
    stop = threading.Event()
    errs, sizes, n = [], set(), [0]

    def stat_loop():
        while not stop.is_set():
            try:
                sizes.add(os.fstat(fd).st_size)
            except OSError as e:
                errs.append(e.errno)
            n[0] += 1

    t = threading.Thread(target=stat_loop)
    t.start()
    try:
        for _ in range(1500):
            os.rename(a, b)
            os.rename(b, a)
    finally:
        stop.set()
        t.join()
        os.close(fd)
    assert n[0] > 100
    assert not errs, f"{len(errs)} of {n[0]} fstat calls failed: {sorted(set(errs))}"
    assert sizes == {5}


def test_created_handle_is_direct_like_any_writer(mkmount):
    """A handle from open(O_CREAT) is a writer like any other: direct I/O
    (a writable MAP_SHARED mmap is ENODEV, README), and counted as a writer,
    so a reader never sees its uncommitted bytes through shared pages."""
    import mmap
    m = mkmount("--cache-timeout=0")  # keys are cold at once: readers may cache
    k = m.kv("mm")
    a = os.open(k, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(a, b"v1" * 2048)
        os.fsync(a)
        r = os.open(k, os.O_RDONLY)
        try:
            assert os.pread(r, 4, 0) == b"v1v1"
            try:
                mm = mmap.mmap(a, 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            except OSError as e:
                assert e.errno == errno.ENODEV
            else:
                mm[0:2] = b"XX"  # uncommitted
                seen = os.pread(r, 4, 0)
                mm.close()
                pytest.fail(f"writable shared mmap of a created file worked; "
                            f"a reader saw {seen!r}")
        finally:
            os.close(r)
    finally:
        os.close(a)
    assert get(k) == b"v1" * 2048


def test_reader_reads_one_version_when_a_later_writer_commits(mkmount):
    """README: a handle reads one committed version at a time, 'so a value
    read in chunks is never a mix of two versions'.  A reader opened on a
    cold key uses the page cache; a writer that opens after it and commits
    invalidates the pages, and the reader's next chunks are the new value."""
    m = mkmount("--cache-timeout=0")  # no "hot" window: the reader caches
    k = m.kv("big")
    n = 4 << 20
    put(k, b"a" * n)
    r = os.open(k, os.O_RDONLY)
    try:
        got = [os.read(r, 4096)]
        put(k, b"b" * n)
        while True:
            c = os.read(r, 1 << 16)
            if not c:
                break
            got.append(c)
    finally:
        os.close(r)
    got = b"".join(got)
    one = got in (b"a" * n, b"b" * n)
    assert one, f"mix of versions: {got.count(b'a')} bytes of the old, {got.count(b'b')} of the new"


def test_touch_of_new_json_document_is_refused_and_leaves_nothing(mf):
    r = subprocess.run(["touch", str(mf.json("t"))], capture_output=True, text=True)
    # touch(1) creates with O_CREAT (no O_TRUNC) and writes nothing: an empty
    # document is not one, so its close fails and the key never exists.
    fd = os.open(mf.json("t2"), os.O_WRONLY | os.O_CREAT, 0o644)
    with pytest.raises(OSError) as e:
        os.close(fd)
    assert e.value.errno == errno.EINVAL
    assert os.listdir(mf.json()) == []
    assert "t2" in mf.log()
