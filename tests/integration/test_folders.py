"""Issue 14: folders, modes, owners, times, symlinks and special files in /kv.

POSIX errors of mkdir/rmdir/rename/unlink/symlink side by side with tmpfs
(/dev/shm), renames of files across folders and of folders with many keys,
persistence across a remount, a kill -9 and a crash point, chmod/chown/
utimensat (atime only, UTIME_OMIT, old and 2^31/2^32 times), and the tools
that need all of it: cp -a, rsync -a, tar, unzip, git, chmod +x, each
compared with the same run on tmpfs (diff -r and stat fields).
"""
import ctypes
import errno
import os
import shutil
import stat
import subprocess
import tempfile

import pytest

from conftest import Mount

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture
def shm():
    """A scratch directory on tmpfs, the reference filesystem."""
    d = tempfile.mkdtemp(prefix="mf-folders-", dir="/dev/shm")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def errno_of(f):
    try:
        f()
        return 0
    except OSError as e:
        return e.errno


def write(p, data=b"x", mode=0o644):
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def tree(root, times=True):
    """relpath -> (kind, mode bits, size or target, content, mtime_ns) for
    everything below root, symlinks not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode))
            elif not stat.S_ISREG(st.st_mode):  # fifo, socket, device: never opened
                out[rel] = ("s", st.st_mode, st.st_rdev)
            else:
                out[rel] = ("f", stat.S_IMODE(st.st_mode), open(p, "rb").read(),
                            st.st_mtime_ns if times else 0)
    return out


def dir_mtimes(root):
    return {os.path.relpath(d, root): os.lstat(d).st_mtime_ns
            for d, _, _ in os.walk(root)}


def diff_r(a, b):
    r = subprocess.run(["diff", "-r", "--no-dereference", a, b], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------ POSIX errors

def posix_script(b):
    """Namespace operations and their errnos, run in directory b."""
    j = lambda *p: os.path.join(b, *p)
    steps = [
        ("mkdir a", lambda: os.mkdir(j("a"))),
        ("mkdir a again", lambda: os.mkdir(j("a"))),
        ("mkdir a/b", lambda: os.mkdir(j("a", "b"))),
        ("write a/b/f", lambda: write(j("a", "b", "f"), b"data")),
        ("mkdir over a file", lambda: os.mkdir(j("a", "b", "f"))),
        ("mkdir below a file", lambda: os.mkdir(j("a", "b", "f", "x"))),
        ("create below a file", lambda: write(j("a", "b", "f", "x"))),
        ("create a folder's name", lambda: write(j("a", "b"))),
        ("rmdir non-empty", lambda: os.rmdir(j("a"))),
        ("rmdir a file", lambda: os.rmdir(j("a", "b", "f"))),
        ("rmdir missing", lambda: os.rmdir(j("nope"))),
        ("unlink a folder", lambda: os.unlink(j("a", "b"))),
        ("open a folder for writing", lambda: os.open(j("a"), os.O_WRONLY)),
        ("rename a file over a folder", lambda: os.rename(j("a", "b", "f"), j("a"))),
        ("rename a folder over a file", lambda: os.rename(j("a"), j("a", "b", "f"))),
        ("rename a folder into itself", lambda: os.rename(j("a"), j("a", "b", "c"))),
        ("mkdir z", lambda: os.mkdir(j("z"))),
        ("rename onto a non-empty folder", lambda: os.rename(j("z"), j("a"))),
        ("mkdir e", lambda: os.mkdir(j("e"))),
        ("rename onto an empty folder", lambda: os.rename(j("z"), j("e"))),
        ("rename a file across folders", lambda: os.rename(j("a", "b", "f"), j("e", "g"))),
        ("rename a folder across folders", lambda: os.rename(j("a", "b"), j("e", "b2"))),
        ("symlink", lambda: os.symlink("../e/g", j("a", "l"))),
        ("symlink again", lambda: os.symlink("x", j("a", "l"))),
        ("symlink below a file", lambda: os.symlink("x", j("e", "g", "l"))),
        ("rmdir a symlink", lambda: os.rmdir(j("a", "l"))),
        ("read through the symlink", lambda: open(j("a", "l"), "rb").read() == b"data" or 1 / 0),
        ("rename a symlink", lambda: os.rename(j("a", "l"), j("a", "l2"))),
        ("rename a file over the symlink", lambda: (write(j("a", "t"), b"t"),
                                                   os.rename(j("a", "t"), j("a", "l2")))),
        ("unlink", lambda: os.unlink(j("a", "l2"))),
        ("rmdir the emptied folders", lambda: (os.rmdir(j("e", "b2")), os.rmdir(j("a")))),
        ("no exchange", lambda: os.rename(j("e"), j("e"))),
    ]
    return [(what, errno_of(f)) for what, f in steps]


def test_posix_errors_match_tmpfs(mf, shm):
    ref = posix_script(shm)
    got = posix_script(str(mf.kv()))
    assert got == ref
    assert tree(str(mf.kv()), times=False) == tree(shm, times=False)
    # the errors this test is about really occur
    codes = {e for _, e in ref}
    assert {errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY, errno.EINVAL,
            errno.ENOENT} <= codes


def test_hard_links_refused(mf):
    write(mf.kv("f"))
    assert errno_of(lambda: os.link(mf.kv("f"), mf.kv("g"))) == errno.EPERM


def test_rename_folder_with_many_keys(mf):
    kv = mf.kv()
    os.makedirs(kv / "src" / "deep" / "er")
    for i in range(1500):
        write(kv / "src" / "deep" / f"k{i}", f"v{i}".encode())
    os.symlink("deep/k1", kv / "src" / "link")
    os.mkdir(kv / "src" / "empty")
    before = tree(str(kv / "src"))
    os.makedirs(kv / "dst")
    t0 = os.stat(kv).st_mtime_ns
    os.rename(kv / "src", kv / "dst" / "moved")
    assert not (kv / "src").exists()
    assert tree(str(kv / "dst" / "moved")) == before
    assert os.stat(kv).st_mtime_ns >= t0       # /kv changed
    assert sorted(os.listdir(kv)) == ["dst"]
    # a file across folders keeps its inode and content
    ino = os.stat(kv / "dst" / "moved" / "deep" / "k7").st_ino
    os.rename(kv / "dst" / "moved" / "deep" / "k7", kv / "dst" / "k7")
    assert os.stat(kv / "dst" / "k7").st_ino == ino
    assert (kv / "dst" / "k7").read_bytes() == b"v7"


def test_readdir_dino_is_st_ino(mf):
    kv = mf.kv()
    os.makedirs(kv / "a" / "b")
    write(kv / "a" / "f")
    os.symlink("f", kv / "a" / "l")
    for d in (kv, kv / "a"):
        for e in os.scandir(d):
            assert e.inode() == os.lstat(e.path).st_ino, e.path
        assert os.stat(os.path.join(d, ".")).st_ino == os.stat(d).st_ino
    assert os.stat(kv / "a" / "b" / "..").st_ino == os.stat(kv / "a").st_ino


def test_dir_times_follow_entries(mf):
    kv = mf.kv()
    os.mkdir(kv / "d")
    old = 1_000_000_000 * 10**9
    os.utime(kv / "d", ns=(old, old))
    assert os.stat(kv / "d").st_mtime_ns == old
    write(kv / "d" / "f")
    m1 = os.stat(kv / "d").st_mtime_ns
    assert m1 > old
    assert os.stat(kv / "d").st_ctime_ns >= m1
    k1 = os.stat(kv).st_mtime_ns
    os.rename(kv / "d" / "f", kv / "g")
    assert os.stat(kv / "d").st_mtime_ns >= m1
    assert os.stat(kv).st_mtime_ns >= k1
    # writing a file does not change its folder
    os.utime(kv / "d", ns=(old, old))
    write(kv / "g", b"more")
    os.mkdir(kv / "d" / "s")
    os.utime(kv / "d", ns=(old, old))
    write(kv / "d" / "s" / "x")
    assert os.stat(kv / "d").st_mtime_ns == old


# ------------------------------------------------------------ attributes

AT_FDCWD = -100
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime):
    """utimensat(2) with (sec, nsec) pairs or UTIME_OMIT / UTIME_NOW."""
    libc = ctypes.CDLL(None, use_errno=True)
    def ts(t):
        return Timespec(0, t) if t in (UTIME_OMIT, UTIME_NOW) else Timespec(*t)
    arr = (Timespec * 2)(ts(atime), ts(mtime))
    if libc.utimensat(AT_FDCWD, os.fsencode(str(path)), arr, 0) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def attr_script(b):
    j = lambda *p: os.path.join(b, *p)
    os.mkdir(j("d"))
    write(j("d", "f"), b"abc")
    os.symlink("f", j("d", "l"))
    out = []
    os.chmod(j("d", "f"), 0o640)
    write(j("d", "z"))
    os.chmod(j("d", "z"), 0)
    os.chmod(j("d"), 0o711)
    os.chown(j("d", "f"), 1234, 5678)
    os.chown(j("d"), 42, 43)
    os.lchown(j("d", "l"), 7, 8)
    utimensat(j("d", "f"), (2**31, 5), UTIME_OMIT)            # atime only
    st = os.lstat(j("d", "f"))
    out.append(("atime only", st.st_atime_ns))
    utimensat(j("d", "f"), UTIME_OMIT, (2**32, 7))           # mtime only
    utimensat(j("d"), (100, 0), (50, 0))                    # atime after mtime
    for name in ("d", "d/f", "d/l", "d/z"):
        st = os.lstat(j(name))
        out.append((name, stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                    st.st_gid, st.st_size if name != "d" else 0,  # a folder's size: fs-specific
                    st.st_atime_ns if name in ("d", "d/f") else 0,  # times this script set
                    st.st_mtime_ns if name in ("d", "d/f") else 0))
    return out


def test_chmod_chown_utimensat_match_tmpfs(mf, shm):
    ref = attr_script(shm)
    assert attr_script(str(mf.kv())) == ref
    assert ref[0] == ("atime only", 2**31 * 10**9 + 5)


def test_touch_a_and_old_times(mf):
    f = mf.kv("t")
    write(f)
    m = os.stat(f).st_mtime_ns
    subprocess.run(["touch", "-a", "-d", "2001-02-03 04:05:06", str(f)], check=True)
    st = os.stat(f)
    assert st.st_mtime_ns == m
    assert st.st_atime == 981173106
    os.utime(f, ns=(-10**9, 3 * 10**9))
    st = os.stat(f)
    assert (st.st_atime_ns, st.st_mtime_ns) == (-10**9, 3 * 10**9)


def test_new_file_gets_umask_mode(mf):
    kv = mf.kv()
    old = os.umask(0o077)
    try:
        write(kv / "private", b"s", mode=0o666)
        os.mkdir(kv / "pdir", 0o777)
        fd = os.open(kv / "appended", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        os.write(fd, b"line\n")
        os.close(fd)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(kv / "private").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(kv / "pdir").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(kv / "appended").st_mode) == 0o600


def test_chmod_x_script_runs(mf):
    s = mf.kv("run.sh")
    s.write_text("#!/bin/sh\necho ran $1\n")
    assert errno_of(lambda: subprocess.run([str(s)], capture_output=True)) == errno.EACCES
    subprocess.run(["chmod", "+x", str(s)], check=True)
    r = subprocess.run([str(s), "ok"], capture_output=True, text=True, check=True)
    assert r.stdout == "ran ok\n"


# ------------------------------------------------------------ persistence

def build_tree(root):
    j = lambda *p: os.path.join(root, *p)
    os.makedirs(j("proj", "src", "lib"))
    os.makedirs(j("proj", "empty"))
    write(j("proj", "src", "main.c"), b"int main(void) { return 0; }\n", 0o644)
    write(j("proj", "src", "lib", "run"), b"#!/bin/sh\n", 0o755)
    write(j("proj", "secret"), b"s3cret\n", 0o600)
    os.symlink("src/main.c", j("proj", "main"))
    os.symlink("../nowhere", j("proj", "dangling"))
    os.chmod(j("proj", "src", "lib"), 0o700)
    os.utime(j("proj", "secret"), ns=(1234567890123456789, 1500000000000000000))
    os.mkdir(j("proj", "many"))
    for i in range(50):
        write(j("proj", "many", f"k{i:02d}"), b"%d" % i)


def test_persistence_remount_kill9_and_crash_point(mkmount, shm):
    m = mkmount()
    build_tree(str(m.kv()))
    build_tree(shm)
    assert tree(str(m.kv()), times=False) == tree(shm, times=False)
    want = tree(str(m.kv()))  # with times: each as this mount set it
    times = dir_mtimes(str(m.kv()))
    m.stop()
    m.start()
    assert tree(str(m.kv())) == want
    assert dir_mtimes(str(m.kv())) == times
    # a folder rename and an rmdir, then kill -9
    for root in (str(m.kv()), shm):
        os.rename(os.path.join(root, "proj", "src"), os.path.join(root, "proj", "moved"))
        os.rmdir(os.path.join(root, "proj", "empty"))
        os.chmod(os.path.join(root, "proj", "moved"), 0o750)
    assert tree(str(m.kv()), times=False) == tree(shm, times=False)
    want = tree(str(m.kv()))
    m.kill9()
    m.start()
    assert tree(str(m.kv())) == want
    # a snapshot cut at a crash point: the tree comes back from the WAL
    m.stop()
    m.start(env={"MEMFLUX_CRASH_AT": "snapshot-after-rename"})
    for root in (str(m.kv()), shm):
        os.rename(os.path.join(root, "proj"), os.path.join(root, "proj2"))
    want = tree(str(m.kv()))
    try:
        m.ctl("snapshot").write_text("1\n")
    except OSError:
        pass
    m.crashed()
    m.start()
    assert tree(str(m.kv())) == want
    # and a snapshot that completes: v2 with folders, modes and links
    m.ctl("snapshot").write_text("1\n")
    m.stop()
    m.start()
    assert tree(str(m.kv())) == want


def test_v1_data_dir_mounts(tmp_path):
    """A data dir written before folders (snapshot v1 + WAL) still mounts;
    its RESP keys with '/' show as folders."""
    m = Mount(tmp_path)
    shutil.copytree(os.path.join(FIXTURES, "v1-datadir"), m.data,
                    ignore=shutil.ignore_patterns("README.md"))
    try:
        m.start()
        kv = m.kv()
        assert sorted(os.listdir(kv)) == ["greeting", "late", "user"]
        assert (kv / "greeting").read_text() == "hello\n"
        assert os.stat(kv / "greeting").st_mtime == 1580608922
        assert stat.S_IMODE(os.stat(kv / "greeting").st_mode) == 0o644
        assert sorted(os.listdir(kv / "user")) == ["1", "2"]
        assert (kv / "user" / "1" / "mail").read_text() == "a@x"
        assert m.json("doc").read_text() == '{"a": 1}'
        os.chmod(kv / "greeting", 0o600)
        m.ctl("snapshot").write_text("1\n")
        m.stop()
        m.start()
        assert stat.S_IMODE(os.stat(kv / "greeting").st_mode) == 0o600
        assert (kv / "user" / "2" / "name").read_text() == "bob"
    finally:
        m.cleanup()


# ------------------------------------------------------------ tools

def src_tree(base):
    src = os.path.join(base, "src")
    build_tree(src)
    return os.path.join(src, "proj")


def stats_equal(a, b, times=True):
    """Same tree, and per entry the same stat fields: mode, owner, and for
    files size and (times) mtime."""
    ta, tb = tree(a, times), tree(b, times)
    assert ta == tb
    for rel in ta:
        sa, sb = os.lstat(os.path.join(a, rel)), os.lstat(os.path.join(b, rel))
        assert (sa.st_mode, sa.st_uid, sa.st_gid) == (sb.st_mode, sb.st_uid, sb.st_gid), rel
        if not stat.S_ISDIR(sa.st_mode) and not stat.S_ISLNK(sa.st_mode):
            assert sa.st_size == sb.st_size, rel
            assert not times or sa.st_mtime_ns == sb.st_mtime_ns, rel


def test_cp_a(mf, shm):
    src = src_tree(shm)
    subprocess.run(["cp", "-a", src, str(mf.kv("cpa"))], check=True)
    subprocess.run(["cp", "-a", src, os.path.join(shm, "cpa")], check=True)
    diff_r(src, str(mf.kv("cpa")))
    stats_equal(os.path.join(shm, "cpa"), str(mf.kv("cpa")))


def test_rsync_a(mf, shm):
    src = src_tree(shm)
    for dst in (str(mf.kv("rs")), os.path.join(shm, "rs")):
        r = subprocess.run(["rsync", "-a", src + "/", dst + "/"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    diff_r(src, str(mf.kv("rs")))
    stats_equal(os.path.join(shm, "rs"), str(mf.kv("rs")))
    # a second run finds nothing to do and changes nothing
    r = subprocess.run(["rsync", "-ai", src + "/", str(mf.kv("rs")) + "/"], capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == "", r.stdout


def test_tar_round_trip(mf, shm):
    src = src_tree(shm)
    tarball = os.path.join(shm, "t.tar")
    subprocess.run(["tar", "cf", tarball, "-C", src, "."], check=True)
    os.mkdir(mf.kv("x"))
    os.mkdir(os.path.join(shm, "x"))
    for dst in (str(mf.kv("x")), os.path.join(shm, "x")):
        subprocess.run(["tar", "xpf", tarball, "-C", dst], check=True)
    diff_r(src, str(mf.kv("x")))
    stats_equal(os.path.join(shm, "x"), str(mf.kv("x")))
    # tar c from the mount, x on tmpfs: the same tree again
    back = os.path.join(shm, "back")
    os.mkdir(back)
    p1 = subprocess.Popen(["tar", "cf", "-", "-C", str(mf.kv("x")), "."], stdout=subprocess.PIPE)
    subprocess.run(["tar", "xpf", "-", "-C", back], stdin=p1.stdout, check=True)
    assert p1.wait() == 0
    stats_equal(os.path.join(shm, "x"), back)


def test_unzip(mf, shm):
    src = src_tree(shm)
    z = os.path.join(shm, "t.zip")
    subprocess.run(["zip", "-qry", z, "."], cwd=src, check=True)
    for dst in (str(mf.kv("z")), os.path.join(shm, "z")):
        os.mkdir(dst)
        subprocess.run(["unzip", "-q", z, "-d", dst], check=True)
    diff_r(os.path.join(shm, "z"), str(mf.kv("z")))
    stats_equal(os.path.join(shm, "z"), str(mf.kv("z")))


GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent"}


def git(cwd, *args):
    e = dict(os.environ)
    e.update(GIT_ENV)
    r = subprocess.run(["git", "-c", "init.defaultBranch=main", "-c", "safe.directory=*",
                        *args], cwd=cwd, capture_output=True, text=True, env=e)
    assert r.returncode == 0, f"git {args}: {r.stderr}"
    return r.stdout


def test_git_init_commit_status_clone(mf, shm):
    repo = str(mf.kv("repo"))
    os.mkdir(repo)
    build_tree(repo)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "first")
    assert git(repo, "status", "--porcelain") == ""
    write(os.path.join(repo, "proj", "secret"), b"changed\n", 0o600)
    git(repo, "commit", "-qam", "second")
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "fsck", "--no-progress").strip() == ""
    # clone a local repository (on tmpfs) into the mount, and the other way
    ref = os.path.join(shm, "ref")
    git(shm, "clone", "-q", repo, ref)
    git(str(mf.kv()), "clone", "-q", ref, "clone")
    clone = str(mf.kv("clone"))
    assert git(clone, "status", "--porcelain") == ""
    assert git(clone, "log", "--format=%s") == "second\nfirst\n"
    diff_r(os.path.join(ref, "proj"), os.path.join(clone, "proj"))
    stats_equal(os.path.join(ref, "proj"), os.path.join(clone, "proj"), times=False)


def test_open_file_follows_its_folder_rename(mf):
    """A handle open in a folder that is renamed commits under the new name."""
    kv = mf.kv()
    os.makedirs(kv / "d" / "sub")
    write(kv / "d" / "sub" / "f", b"old")
    fd = os.open(kv / "d" / "sub" / "f", os.O_WRONLY | os.O_TRUNC)
    try:
        os.rename(kv / "d", kv / "e")
        os.write(fd, b"new")
    finally:
        os.close(fd)
    assert (kv / "e" / "sub" / "f").read_bytes() == b"new"
    assert not (kv / "d").exists()
    assert sorted(os.listdir(kv)) == ["e"]


def resp(sock_path, *args):
    """One RESP command over a unix socket; the raw reply."""
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    msg = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a), a) for a in (x.encode() for x in args))
    s.sendall(msg)
    out = s.recv(65536)
    s.close()
    return out


def test_resp_keys_show_as_folders(mkmount, tmp_path):
    sock = str(tmp_path / "r.sock")
    m = mkmount(f"--resp=unix:{sock}")
    kv = m.kv()
    assert resp(sock, "SET", "user/1/name", "ann") == b"+OK\r\n"
    assert sorted(os.listdir(kv)) == ["user"]
    assert (kv / "user" / "1" / "name").read_text() == "ann"
    assert stat.S_ISDIR(os.stat(kv / "user" / "1").st_mode)
    # a key that appears or goes in a folder the kernel has listed: seen at once
    assert not (kv / "user" / "1" / "mail").exists()
    assert resp(sock, "SET", "user/1/mail", "a@x") == b"+OK\r\n"
    assert sorted(os.listdir(kv / "user" / "1")) == ["mail", "name"]
    assert (kv / "user" / "1" / "mail").read_text() == "a@x"
    # the tree rules hold for RESP too: no key under a key
    assert resp(sock, "SET", "user/1/name/x", "v").startswith(b"-")
    assert resp(sock, "DEL", "user/1/name", "user/1/mail") == b":2\r\n"
    assert os.listdir(kv) == []
    # folders and symlinks made through the mount are keys of their own
    # kind, told apart by TYPE (as a module's type is): GET refuses them,
    # DEL (and SET over one) removes an empty folder or a symlink
    os.mkdir(kv / "d")
    os.mkdir(kv / "full")
    (kv / "full" / "f").write_text("x")
    os.symlink("full/f", kv / "ln")
    assert resp(sock, "TYPE", "d") == b"+folder\r\n"
    assert resp(sock, "TYPE", "ln") == b"+symlink\r\n"
    assert resp(sock, "GET", "d").startswith(b"-WRONGTYPE")
    assert resp(sock, "EXISTS", "d", "ln", "full") == b":3\r\n"
    assert resp(sock, "DEL", "full").startswith(b"-")  # not empty: stays
    assert os.listdir(kv / "full") == ["f"]
    assert resp(sock, "DEL", "d", "ln") == b":2\r\n"
    os.mkdir(kv / "d")
    assert resp(sock, "SET", "d", "v") == b"+OK\r\n"
    assert sorted(os.listdir(kv)) == ["d", "full"]
    assert (kv / "d").read_text() == "v"


CRASH_POINTS = ["snapshot-before-tmp", "snapshot-after-tmp-write", "snapshot-after-tmp-fsync",
                "snapshot-after-rename", "snapshot-after-dir-fsync", "wal-after-seal-rename",
                "wal-after-new-segment", "db-before-drop-sealed", "wal-after-drop-sealed"]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_folder_rename_and_rmdir_survive_every_crash_point(mkmount, point):
    """A folder rename and an rmdir, then a snapshot that dies at a named
    crash point: the next mount has exactly the tree the mount showed."""
    m = mkmount(env={"MEMFLUX_CRASH_AT": point})
    kv = str(m.kv())
    build_tree(kv)
    os.rename(os.path.join(kv, "proj", "src"), os.path.join(kv, "proj", "moved"))
    os.rmdir(os.path.join(kv, "proj", "empty"))
    os.rename(os.path.join(kv, "proj"), os.path.join(kv, "p2"))
    want = tree(kv)
    try:
        m.ctl("snapshot").write_text("1\n")
    except OSError:
        pass
    m.crashed()
    m.start()
    assert tree(kv) == want
    # and it goes on: a new folder after recovery survives a clean remount
    os.mkdir(os.path.join(kv, "after"))
    m.stop()
    m.start()
    assert os.path.isdir(os.path.join(kv, "after"))


def as_nobody(cmd):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "sh", "-c", cmd], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_modes_and_owners_enforced_for_other_users(tmp_path):
    """With -o allow_other the kernel applies each key's and folder's mode;
    a file another user creates is theirs (uid/gid from the request)."""
    base = tempfile.mkdtemp(prefix="mf-folders-")
    os.chmod(base, 0o755)
    m = Mount(base)
    try:
        m.start("-o", "allow_other")
        kv = m.kv()
        write(kv / "private", b"secret", 0o600)
        os.chmod(kv / "private", 0o600)
        write(kv / "public", b"hello")
        os.mkdir(kv / "shared", 0o777)
        os.chmod(kv / "shared", 0o777)
        r = as_nobody(f"cat {kv / 'private'}")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        assert as_nobody(f"cat {kv / 'public'}").stdout == "hello"
        r = as_nobody(f"umask 022; echo mine > {kv / 'shared' / 'n'}; mkdir {kv / 'shared' / 'd'}")
        assert r.returncode == 0, r
        st = os.stat(kv / "shared" / "n")
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (65534, 65534, 0o644)
        assert os.stat(kv / "shared" / "d").st_uid == 65534
        r = as_nobody(f"chown 0 {kv / 'shared' / 'n'}")
        assert r.returncode != 0, r  # only root gives files away
        # a write by another user clears the set-user-ID bit (POSIX)
        write(kv / "suid", b"#!/bin/sh\n")
        os.chmod(kv / "suid", 0o4777)
        r = as_nobody(f"echo x >> {kv / 'suid'}")
        assert r.returncode == 0, r
        assert stat.S_IMODE(os.stat(kv / "suid").st_mode) == 0o777
        m.stop()
        m.start("-o", "allow_other")
        st = os.stat(kv / "shared" / "n")
        assert (st.st_uid, st.st_gid) == (65534, 65534)
        assert stat.S_IMODE(os.stat(kv / "private").st_mode) == 0o600
    finally:
        m.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_snapshot_v2_keeps_expiry_and_modes(mkmount):
    """Snapshot v2's attribute block: an expiry, a mode and an owner come
    back from the snapshot alone (the WAL it covers is dropped)."""
    m = mkmount()
    write(m.kv("k"), b"v")
    (m.mnt / ".ctl" / "expire" / "k").write_text("1000\n")
    os.chmod(m.kv("k"), 0o640)
    os.chown(m.kv("k"), 123, 456)
    m.ctl("snapshot").write_text("1\n")
    m.stop()
    m.start()
    left = int((m.mnt / ".ctl" / "expire" / "k").read_text())
    assert 900 <= left <= 1000
    st = os.stat(m.kv("k"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 123, 456)


# ------------------------------------------------------------ special files

def make_specials(root):
    """A fifo, a socket and two device nodes (we run as root), with modes
    and owners of their own."""
    os.makedirs(os.path.join(root, "dev"), exist_ok=True)
    os.mkfifo(os.path.join(root, "dev", "fifo"), 0o640)
    os.mknod(os.path.join(root, "dev", "sock"), 0o600 | stat.S_IFSOCK)
    os.mknod(os.path.join(root, "dev", "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(os.path.join(root, "dev", "loop"), 0o660 | stat.S_IFBLK, os.makedev(7, 300))
    os.chown(os.path.join(root, "dev", "loop"), 1234, 6)
    os.chmod(os.path.join(root, "dev", "fifo"), 0o604)
    os.utime(os.path.join(root, "dev", "null"), ns=(1_000_000_000, 2**32 * 10**9))


def special_stats(root):
    """What stat says of each entry below root, minus inode numbers and the
    times the kernel sets itself."""
    out = {}
    for name in sorted(os.listdir(os.path.join(root, "dev"))):
        st = os.lstat(os.path.join(root, "dev", name))
        out[name] = (st.st_mode, st.st_rdev, st.st_uid, st.st_gid, st.st_nlink, st.st_size,
                     st.st_mtime_ns if name == "null" else 0,
                     st.st_atime_ns if name == "null" else 0)
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_mknod_stat_matches_tmpfs(mf, shm):
    make_specials(shm)
    make_specials(str(mf.kv()))
    assert special_stats(str(mf.kv())) == special_stats(shm)
    # the errors match too: an existing name, a name below a fifo
    for root in (str(mf.kv()), shm):
        assert errno_of(lambda: os.mkfifo(os.path.join(root, "dev", "fifo"))) == errno.EEXIST
        assert errno_of(lambda: os.mkfifo(os.path.join(root, "dev", "fifo", "x"))) == errno.ENOTDIR
        assert errno_of(lambda: os.rmdir(os.path.join(root, "dev", "fifo"))) == errno.ENOTDIR
        assert errno_of(lambda: os.truncate(os.path.join(root, "dev", "sock"), 0)) == errno.EINVAL
    # rename (over a file too) and unlink act as on tmpfs
    for root in (str(mf.kv()), shm):
        d = os.path.join(root, "dev")
        write(os.path.join(d, "f"))
        os.rename(os.path.join(d, "fifo"), os.path.join(d, "f"))
        os.rename(os.path.join(d, "sock"), os.path.join(root, "sock2"))
        os.unlink(os.path.join(d, "loop"))
    assert tree(str(mf.kv()), times=False) == tree(shm, times=False)
    assert special_stats(str(mf.kv())) == special_stats(shm)
    # readdir lists them (d_type unknown: ls and find stat them)
    assert sorted(os.listdir(mf.kv("dev"))) == ["f", "null"]
    r = subprocess.run(["find", str(mf.kv()), "-type", "p"], capture_output=True, text=True,
                       check=True)
    assert r.stdout.split() == [str(mf.kv("dev/f"))]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_mknod_devices_need_root():
    """A device node is root's to make (POSIX); a fifo anyone's, and theirs."""
    base = tempfile.mkdtemp(prefix="mf-folders-")
    os.chmod(base, 0o755)
    m = Mount(base)
    try:
        m.start("-o", "allow_other")
        pub = m.kv("pub")
        os.mkdir(pub)
        os.chmod(pub, 0o777)
        r = as_nobody(f"mkfifo {pub / 'f'}")
        assert r.returncode == 0, r
        r = as_nobody(f"mknod {pub / 'c'} c 1 3")
        assert r.returncode != 0 and "not permitted" in r.stderr, r
        st = os.lstat(pub / "f")
        assert stat.S_ISFIFO(st.st_mode) and (st.st_uid, st.st_gid) == (65534, 65534)
        assert not os.path.lexists(pub / "c")
    finally:
        m.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_fifo_passes_data_between_processes(mf):
    """The kernel carries a fifo's bytes: a writer and a reader process
    meet in a fifo on /kv (each open waits for the other side)."""
    os.mkdir(mf.kv("q"))
    p = str(mf.kv("q/pipe"))
    os.mkfifo(p)
    reader = subprocess.Popen(["cat", p], stdout=subprocess.PIPE)
    writer = subprocess.Popen(["sh", "-c", 'for i in 1 2 3; do echo "line $i"; done > "$1"',
                               "sh", p])
    out, _ = reader.communicate(timeout=30)
    assert writer.wait(timeout=30) == 0
    assert out == b"line 1\nline 2\nline 3\n"
    assert os.lstat(p).st_size == 0  # nothing went to the store


def test_unix_socket_bound_in_kv(mf):
    """bind(2) makes the socket file by mknod; connecting goes through the
    kernel."""
    import socket
    os.mkdir(mf.kv("run"))
    cwd = os.getcwd()
    os.chdir(mf.kv("run"))  # (a relative name: sun_path holds 108 bytes)
    try:
        srv = socket.socket(socket.AF_UNIX)
        srv.bind("s")
        srv.listen(1)
        cli = socket.socket(socket.AF_UNIX)
        cli.connect("s")
        conn, _ = srv.accept()
        cli.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        for x in (conn, cli, srv):
            x.close()
    finally:
        os.chdir(cwd)
    assert stat.S_ISSOCK(os.lstat(mf.kv("run/s")).st_mode)
    os.unlink(mf.kv("run/s"))
    assert os.listdir(mf.kv("run")) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_specials_persist_remount_kill9_snapshot(mkmount, tmp_path):
    sock = str(tmp_path / "r.sock")
    m = mkmount(f"--resp=unix:{sock}")
    make_specials(str(m.kv()))
    want = special_stats(str(m.kv()))
    m.stop()
    m.start(f"--resp=unix:{sock}")
    assert special_stats(str(m.kv())) == want
    os.chmod(m.kv("dev/sock"), 0o700)
    os.rename(m.kv("dev/loop"), m.kv("loop2"))
    os.rename(m.kv("loop2"), m.kv("dev/loop"))
    want = special_stats(str(m.kv()))
    m.kill9()
    m.start(f"--resp=unix:{sock}")
    assert special_stats(str(m.kv())) == want
    m.ctl("snapshot").write_text("1\n")  # v2 items carry them
    m.stop()
    m.start(f"--resp=unix:{sock}")
    assert special_stats(str(m.kv())) == want
    # over RESP each is a key of its own kind; DEL removes one
    assert resp(sock, "TYPE", "dev/fifo") == b"+special\r\n"
    assert resp(sock, "GET", "dev/null").startswith(b"-WRONGTYPE")
    assert resp(sock, "DEL", "dev/fifo") == b":1\r\n"
    assert not os.path.lexists(m.kv("dev/fifo"))
    assert resp(sock, "SET", "dev/null", "v") == b"+OK\r\n"  # SET replaces any type
    assert stat.S_ISREG(os.lstat(m.kv("dev/null")).st_mode)
    assert m.kv("dev/null").read_text() == "v"


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_cp_a_and_tar_with_specials(mf, shm):
    src = os.path.join(shm, "src")
    os.mkdir(src)
    make_specials(src)
    write(os.path.join(src, "dev", "plain"), b"data", 0o600)
    subprocess.run(["cp", "-a", src, str(mf.kv("cpa"))], check=True)
    subprocess.run(["cp", "-a", src, os.path.join(shm, "cpa")], check=True)
    assert special_stats(str(mf.kv("cpa"))) == special_stats(os.path.join(shm, "cpa"))
    stats_equal(os.path.join(shm, "cpa"), str(mf.kv("cpa")), times=False)
    tarball = os.path.join(shm, "t.tar")
    subprocess.run(["tar", "-C", src, "-cf", tarball, "."], check=True)
    for dst in (str(mf.kv("x")), os.path.join(shm, "x")):
        os.mkdir(dst)
        subprocess.run(["tar", "-C", dst, "-xpf", tarball], check=True)
    stats_equal(os.path.join(shm, "x"), str(mf.kv("x")), times=False)
    # and back out of the mount
    back = os.path.join(shm, "back.tar")
    subprocess.run(["tar", "-C", str(mf.kv("x")), "-cf", back, "."], check=True)
    r = subprocess.run(["tar", "-tvf", back], capture_output=True, text=True, check=True)
    kinds = sorted(line[0] for line in r.stdout.splitlines())
    assert kinds == sorted("dd-bcp"), r.stdout  # (tar skips sockets)
