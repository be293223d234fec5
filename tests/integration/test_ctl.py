"""The /.ctl tree and everyday tools (issue 9, items 4, 11, 12, 17): pop files
that tree walkers cannot drain, the /.ctl/json path view's limits and
refusals, and times kept by cp -p / tar x / mv into /json.

Everything goes through a real mount: shell tools and plain file I/O.
"""
import errno
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from conftest import CHECK

OLD_NS = 981173106_123456789  # 2001-02-03 04:05:06.123456789 UTC


def sh(cmd, **kw):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, **kw)


def errno_of(fn):
    try:
        fn()
    except OSError as e:
        return e.errno
    return None


def jpath(m, doc, path):
    return m.ctl("json") / doc / path


def wal_lsn(m):
    return int(m.stats()["wal_lsn"])


def dump(m):
    """The WAL as memflux-check prints it (mount stopped first)."""
    r = subprocess.run([CHECK, str(m.data), "--dump"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r.stdout


# ------------------------------------------------ item 4: long path names

@pytest.mark.parametrize("n", [256, 600, 1000])
def test_jpath_name_too_long_is_enametoolong(mf, n):
    """A /.ctl/json path file name longer than a file name may be (255) is
    ENAMETOOLONG for every way in: it once overflowed a 512-byte stack
    buffer and killed the daemon (ASan: stack-buffer-overflow)."""
    mf.json("doc").write_bytes(b'{"a":1}')
    name = "$['" + "k" * (n - 5) + "']"
    assert len(name) == n
    p = jpath(mf, "doc", name)
    assert errno_of(lambda: p.read_bytes()) == errno.ENAMETOOLONG
    assert errno_of(lambda: p.write_bytes(b"2")) == errno.ENAMETOOLONG
    assert errno_of(lambda: os.stat(p)) == errno.ENAMETOOLONG
    assert errno_of(lambda: os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL)) == errno.ENAMETOOLONG
    # the daemon is alive and nothing changed
    assert mf.json("doc").read_bytes() == b'{"a":1}'
    assert (mf.ctl("json") / "doc" / "$.a").read_bytes() == b"1\n"


def test_jpath_name_of_255_bytes_works(mf):
    mf.json("doc").write_bytes(b'{"a":1}')
    member = "k" * 250
    p = jpath(mf, "doc", "$['" + member + "']")
    assert len(p.name) == 255
    assert errno_of(lambda: p.read_bytes()) == errno.ENOENT
    p.write_bytes(b"2")
    assert json.loads(mf.json("doc").read_bytes()) == {"a": 1, member: 2}
    assert p.read_bytes() == b"2\n"


def test_long_names_in_type_dirs_are_enametoolong(mf):
    for d in ("kv", "json", "lists"):
        p = mf.mnt / d / ("x" * 256)
        assert errno_of(lambda: p.write_bytes(b"1")) == errno.ENAMETOOLONG
        assert errno_of(lambda: os.stat(p)) == errno.ENAMETOOLONG
    for d in ("pop", "json"):
        assert errno_of(lambda: os.stat(mf.ctl(d) / ("x" * 300))) == errno.ENAMETOOLONG


# ------------------------------------------------ item 11: readers never drain queues

def fill(m):
    m.lists("q1").write_bytes(b"a\nb\nc\n")
    m.lists("q2").write_bytes(b"x\n")
    m.kv("k").write_bytes(b"value x\n")
    m.json("d").write_bytes(b'{"x":1}')


def assert_intact(m):
    assert m.lists("q1").read_bytes() == b"a\nb\nc\n"
    assert m.lists("q2").read_bytes() == b"x\n"
    assert m.kv("k").read_bytes() == b"value x\n"
    assert m.json("d").read_bytes() == b'{"x":1}'


def test_pop_dir_lists_nothing_but_names_resolve(mf):
    fill(mf)
    assert os.listdir(mf.ctl("pop")) == []
    assert sh(f"ls -la {mf.ctl('pop')}").returncode == 0
    assert_intact(mf)
    # a lookup that failed is not cached: the list appears, the pop works
    assert errno_of(lambda: (mf.ctl("pop") / "later").read_bytes()) == errno.ENOENT
    mf.lists("later").write_bytes(b"1\n")
    assert (mf.ctl("pop") / "later").read_bytes() == b"1\n"
    # nor is a successful one: an emptied list says so, a refilled one pops
    assert errno_of(lambda: (mf.ctl("pop") / "later").read_bytes()) == errno.ENODATA
    mf.lists("later").unlink()
    assert errno_of(lambda: (mf.ctl("pop") / "later").read_bytes()) == errno.ENOENT
    assert sh(f"echo 2 >> {mf.lists('later')}").returncode == 0
    assert (mf.ctl("pop") / "later").read_bytes() == b"2\n"


def test_tree_walkers_mutate_nothing(mf, tmp_path):
    """grep -r, find -exec cat, cp -a, tar, ls -R, du (and rsync -a when
    installed) over the whole mount: every list keeps every element, and
    not one record is logged, no snapshot taken."""
    fill(mf)
    lsn, snaps = wal_lsn(mf), mf.stats()["snapshots"]
    m = mf.mnt
    walkers = [
        f"grep -r x {m}",
        f"grep -rl . {m}",
        f"find {m} -type f -exec cat {{}} +",
        f"find {m} -exec stat {{}} +",
        f"cp -a {m} {tmp_path}/cp",
        f"tar cf {tmp_path}/all.tar -C {m} .",
        f"ls -laR {m}",
        f"du -a {m}",
    ]
    if shutil.which("rsync"):
        walkers.append(f"rsync -a {m}/ {tmp_path}/rs/")
    for cmd in walkers:
        sh(cmd)  # exit codes vary (stats/snapshot files), effects must not
        assert_intact(mf)
        assert wal_lsn(mf) == lsn, f"{cmd!r} logged records"
    assert mf.stats()["snapshots"] == snaps
    # the copy is a backup of the data, pop dir empty
    assert (tmp_path / "cp" / "lists" / "q1").read_bytes() == b"a\nb\nc\n"
    assert os.listdir(tmp_path / "cp" / ".ctl" / "pop") == []
    # pops still work, in order
    assert (mf.ctl("pop") / "q1").read_bytes() == b"a\n"


def test_pop_write_open_refused_nothing_popped(mf):
    fill(mf)
    q = mf.ctl("pop") / "q1"
    r = sh(f"echo x > {q}")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    r = sh(f": >> {q}")
    assert r.returncode != 0 and "Permission denied" in r.stderr
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC, os.O_WRONLY | os.O_APPEND):
        assert errno_of(lambda: os.open(q, flags)) == errno.EACCES
    assert_intact(mf)
    assert "write-open of .ctl/pop/q1 refused" in mf.log()
    # a pop file is not created by writing either
    assert errno_of(lambda: (mf.ctl("pop") / "nolist").write_bytes(b"1")) == errno.EPERM
    assert (mf.ctl("pop") / "q1").read_bytes() == b"a\n"


def test_readonly_mount_refuses_pops(mkmount):
    m = mkmount()
    fill(m)
    m.stop()
    m.start("-o", "ro")
    assert errno_of(lambda: (m.ctl("pop") / "q1").read_bytes()) == errno.EROFS
    r = sh(f"cat {m.ctl('pop')}/q1")
    assert r.returncode != 0 and "Read-only file system" in r.stderr
    assert errno_of(lambda: m.kv("k").write_bytes(b"1")) == errno.EROFS
    assert_intact(m)
    m.stop()
    assert "LPOP" not in dump(m)
    m.start()  # read-write again: the head is still there
    assert (m.ctl("pop") / "q1").read_bytes() == b"a\n"


# ------------------------------------------------ item 12: times kept into /json

def src_file(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    os.utime(p, ns=(OLD_NS, OLD_NS))
    return p


def test_cp_p_tar_x_mv_into_json_keep_times(mkmount, tmp_path):
    # no attribute caching: stat shows what the daemon holds
    m = mkmount("--cache-timeout=0")
    doc = b'{"a": [1, 2]}\n'
    s = src_file(tmp_path, "s.json", doc)
    r = sh(f"cp -p {s} {m.json('cp')}")
    assert r.returncode == 0, r.stderr
    r = sh(f"cp -p {s} {m.kv('kvcp')}")
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "t.tar", "w", format=tarfile.GNU_FORMAT) as t:
        ti = tarfile.TarInfo("tar.json")  # whole seconds, as tar keeps them
        ti.size, ti.mtime = len(doc), OLD_NS // 10**9
        t.addfile(ti, io.BytesIO(doc))
    r = sh(f"tar xf {tmp_path}/t.tar -C {m.json()}")
    assert r.returncode == 0, r.stderr
    mv = src_file(tmp_path, "mv.json", doc)
    r = sh(f"mv {mv} {m.json('mv')}")
    assert r.returncode == 0, r.stderr
    assert not mv.exists()
    want = {m.json("cp"): OLD_NS, m.kv("kvcp"): OLD_NS, m.json("mv"): OLD_NS,
            m.json("tar.json"): OLD_NS // 10**9 * 10**9}
    for p, t in want.items():
        assert p.read_bytes() == doc
        assert p.stat().st_mtime_ns == t, p
    m.stop()
    m.start("--cache-timeout=0")
    for p, t in want.items():
        assert p.stat().st_mtime_ns == t, p


def test_utimens_on_open_new_json_doc(mkmount):
    """futimens on a new document before its first close, then a write
    after it: the write's time wins, as on any filesystem."""
    mf = mkmount("--cache-timeout=0")
    p = mf.json("u")
    with open(p, "wb") as f:
        f.write(b"[1]")
        os.utime(f.fileno(), ns=(OLD_NS, OLD_NS))
        assert os.fstat(f.fileno()).st_mtime_ns == OLD_NS
    assert p.read_bytes() == b"[1]"
    with open(p, "wb") as f:
        os.utime(f.fileno(), ns=(OLD_NS, OLD_NS))
        f.write(b"[2]")
        f.flush()
    assert p.read_bytes() == b"[2]"
    assert p.stat().st_mtime_ns != OLD_NS


# ------------------------------------------------ item 17: JSON path view

def test_jpath_duplicate_members_last_wins(mf):
    p = mf.json("dup")
    p.write_bytes(b'{"a":1,"b":{"c":0},"a":2}')
    assert json.loads(p.read_bytes())["a"] == 2  # what Python (and jq) see
    assert jpath(mf, "dup", "$.a").read_bytes() == b"2\n"
    jpath(mf, "dup", "$.a").write_bytes(b"3")
    assert p.read_bytes() == b'{"a":1,"b":{"c":0},"a":3}'
    assert json.loads(p.read_bytes())["a"] == 3


def test_jpath_append_never_replaces(mf):
    """`>>` on a path file appends (ARRAPPEND / STRAPPEND); where that makes
    no sense (a number, a missing member) it fails from write(2) or open,
    and the document is unchanged: it never silently replaces the member
    (the defect: `echo 4 >> $.a` used to set a to 4)."""
    p = mf.json("doc")
    p.write_bytes(b'{"a":1}')
    r = sh(f"echo 4 >> '{jpath(mf, 'doc', '$.a')}'")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh(f"echo 4 >> '{jpath(mf, 'doc', '$.new')}'")
    assert r.returncode != 0 and "No such file" in r.stderr
    assert p.read_bytes() == b'{"a":1}'
    assert "json/doc $.a: append refused" in mf.log()


def test_jpath_append_to_arrays_and_strings(mf):
    p = mf.json("doc")
    p.write_bytes(b'{"l":[1],"s":"ab","n":{"x":[]}}')
    assert sh(f"printf '2\\n\\\"three\\\"\\n\\n{{\\\"k\\\": [4]}}\\n' >> '{jpath(mf, 'doc', '$.l')}'").returncode == 0
    assert json.loads(p.read_bytes())["l"] == [1, 2, "three", {"k": [4]}]
    assert sh(f"echo '\"cd\"' >> '{jpath(mf, 'doc', '$.s')}'").returncode == 0
    assert json.loads(p.read_bytes())["s"] == "abcd"
    # a line that is not one JSON value refuses its write(2)'s lines: none lands
    fd = os.open(jpath(mf, "doc", "$.n.x"), os.O_WRONLY | os.O_APPEND)
    with pytest.raises(OSError) as e:
        os.write(fd, b"5\n{bad\n")
    assert e.value.errno == errno.EINVAL
    os.write(fd, b"6\n")  # the handle goes on
    os.close(fd)
    assert json.loads(p.read_bytes())["n"]["x"] == [6]
    assert "rejected JSON value appended to json/doc $.n.x" in mf.log()


def test_jpath_append_concurrent_loses_nothing(mf):
    """8 processes × 25 `>>` each on one array: 200 elements, each once."""
    p = mf.json("doc")
    p.write_bytes(b'{"q":[]}')
    path = jpath(mf, "doc", "$.q")
    procs = [subprocess.Popen(["bash", "-c", f"for i in $(seq 25); do echo {w}$i >> '{path}'; done"])
             for w in range(1, 9)]
    assert all(pr.wait() == 0 for pr in procs)
    got = json.loads(p.read_bytes())["q"]
    assert sorted(got) == sorted(int(f"{w}{i}") for w in range(1, 9) for i in range(1, 26))


def test_jpath_empty_write_einval(mf):
    p = mf.json("doc")
    p.write_bytes(b'{"a":1}')
    for name in ("$.a", "$.new"):
        def empty():
            open(jpath(mf, "doc", name), "wb").close()
        assert errno_of(empty) == errno.EINVAL
    sh(f": > '{jpath(mf, 'doc', '$.a')}'")  # bash ignores close errors
    assert p.read_bytes() == b'{"a":1}'
    # bash closes a duplicate descriptor before writing: still one update
    assert sh(f"echo 5 > '{jpath(mf, 'doc', '$.a')}'").returncode == 0
    assert p.read_bytes() == b'{"a":5}'
    mf.stop()  # the refusal is logged at RELEASE, which close() does not wait for
    assert "json/doc $.new: empty value refused" in mf.log()


def test_json_truncate_to_current_size(mf):
    p = mf.json("doc")
    p.write_bytes(b'{"a":1}\n')
    os.truncate(p, 8)  # by name, no handle: a no-op
    assert sh(f"truncate -s 8 {p}").returncode == 0
    assert p.read_bytes() == b'{"a":1}\n'
    # any other size is a cut (even where the rest would parse) or padding
    assert errno_of(lambda: os.truncate(p, 7)) == errno.EINVAL
    assert errno_of(lambda: os.truncate(p, 3)) == errno.EINVAL
    assert errno_of(lambda: os.truncate(p, 20)) == errno.EINVAL
    assert p.read_bytes() == b'{"a":1}\n'


def test_jpath_refusal_log_names_doc_and_path(mf):
    p = mf.json("cfg")
    p.write_bytes(b'{"a":{"b":1}}')
    assert errno_of(lambda: jpath(mf, "cfg", "$.a.b").write_bytes(b"nope")) == errno.EINVAL
    assert errno_of(lambda: jpath(mf, "cfg", "$.a.b").write_bytes(b"\n")) == errno.EINVAL
    assert p.read_bytes() == b'{"a":{"b":1}}'
    log = mf.log()
    assert "rejected JSON value for path json/cfg $.a.b: invalid literal at byte 0" in log
    assert "rejected JSON value for path json/cfg $.a.b: empty document at byte 1" in log
