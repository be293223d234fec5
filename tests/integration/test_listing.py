"""Issue 12, listing at scale: readdirplus hands the kernel each /kv key's
node and attributes with the listing.  These check that what it hands out
is what a LOOKUP + GETATTR would have said (stat fields, d_ino == st_ino),
that listings stay whole across pages and repeated listings (every node it
gives counts as a kernel lookup), and that names gone since opendir are
still listed without a node.  No timings here: bench/listing has them.
"""
import os
import stat
import subprocess

FIELDS = ("st_ino", "st_mode", "st_nlink", "st_uid", "st_gid", "st_size",
          "st_mtime_ns", "st_ctime_ns", "st_atime_ns")


def make_tree(kv):
    """Files of several sizes, modes and times, folders and symlinks."""
    os.makedirs(kv / "d" / "e")
    for i in range(300):
        p = kv / ("f%03d" % i)
        with open(p, "wb") as f:
            f.write(b"y" * (i * 7 % 300))
        if i % 3 == 0:
            os.chmod(p, 0o600 | (i % 2) * 0o055)
        if i % 5 == 0:
            t = (1_000_000_000 + i) * 10**9 + i
            os.utime(p, ns=(t - 5, t))
    for i in range(50):
        with open(kv / "d" / ("g%02d" % i), "wb") as f:
            f.write(b"z" * i)
    os.symlink("f001", kv / "l1")
    os.symlink("d/g01", kv / "d" / "e" / "l2")


def snapshot(kv):
    """{relative path: (d_ino, d_type bits, stat fields)} of every entry,
    listed by walking the tree, each stat done right after its listing."""
    out = {}
    for d in (kv, kv / "d", kv / "d" / "e"):
        with os.scandir(d) as it:
            for e in it:
                st = os.lstat(e.path)
                kind = (e.is_dir(follow_symlinks=False), e.is_symlink())
                out[os.path.relpath(e.path, kv)] = (
                    e.inode(), kind, tuple(getattr(st, f) for f in FIELDS))
    return out


def test_readdirplus_attrs_equal_getattr(mkmount):
    """With a long cache timeout, stat after a listing answers from the
    attributes readdirplus gave; with none, every stat is a GETATTR.  The
    two mounts of the same data must agree on every field."""
    m = mkmount("--cache-timeout=60")
    make_tree(m.kv())
    m.stop()
    m.start("--cache-timeout=60")
    cached = snapshot(m.kv())
    m.stop()
    m.start("--cache-timeout=0")
    fresh = snapshot(m.kv())
    assert cached == fresh
    for path, (dino, kind, fields) in fresh.items():
        assert dino == fields[0], path  # d_ino == st_ino
        assert kind[0] == stat.S_ISDIR(fields[1]) and kind[1] == stat.S_ISLNK(fields[1]), path
    assert len(fresh) == 300 + 1 + 1 + 50 + 1 + 1


def test_readdirplus_attrs_follow_changes(mf):
    """Attributes given by one listing are replaced by the next listing's
    (and by the change itself through the mount)."""
    kv = mf.kv()
    with open(kv / "a", "wb") as f:
        f.write(b"1")
    assert {e.name: e.stat(follow_symlinks=False).st_size for e in os.scandir(kv)} == {"a": 1}
    with open(kv / "a", "ab") as f:
        f.write(b"2345")
    os.chmod(kv / "a", 0o640)
    assert {e.name: e.stat(follow_symlinks=False).st_size for e in os.scandir(kv)} == {"a": 5}
    assert stat.S_IMODE(os.lstat(kv / "a").st_mode) == 0o640


def test_repeated_listings_then_remove_all(mf):
    """Many pages, listed many times: each listing hands every key's node
    to the kernel again.  The names, numbers and contents stay right, and
    the keys can all be removed and made again afterwards."""
    kv = mf.kv()
    os.mkdir(kv / "many")
    names = {"key-%05d-%s" % (i, "x" * (i % 40)) for i in range(2000)}
    for n in names:
        with open(kv / "many" / n, "wb") as f:
            f.write(n.encode())
    first = None
    for _ in range(5):
        got = {e.name: e.inode() for e in os.scandir(kv / "many")}
        assert set(got) == names
        first = first or got
        assert got == first
    for n in sorted(names)[::97]:
        assert os.lstat(kv / "many" / n).st_ino == first[n]
        assert (kv / "many" / n).read_bytes() == n.encode()
    subprocess.run(["rm", "-r", str(kv / "many")], check=True)
    assert not (kv / "many").exists()
    os.mkdir(kv / "many")
    with open(kv / "many" / "again", "wb") as f:
        f.write(b"!")
    assert [e.name for e in os.scandir(kv / "many")] == ["again"]
    assert (kv / "many" / "again").read_bytes() == b"!"


def test_names_gone_since_opendir(mf):
    """A listing is the view at opendir: keys removed while it is read are
    still listed (with the number a lookup would have given), and neither
    they nor the kept ones break the listing or later lookups."""
    kv = mf.kv()
    os.mkdir(kv / "g")
    names = ["n%04d" % i for i in range(1500)]
    for n in names:
        with open(kv / "g" / n, "wb") as f:
            f.write(b"v")
    fd = os.open(kv / "g", os.O_RDONLY | os.O_DIRECTORY)
    try:
        # read the first page through a raw getdents-sized scandir of the fd
        it = os.scandir(fd)
        seen = [next(it).name for _ in range(10)]
        for n in names[750:]:
            os.unlink(kv / "g" / n)
        seen += [e.name for e in it]
        it.close()
    finally:
        os.close(fd)
    assert sorted(seen) == names
    assert sorted(os.listdir(kv / "g")) == names[:750]
    for n in names[:750:50]:
        assert (kv / "g" / n).read_bytes() == b"v"
