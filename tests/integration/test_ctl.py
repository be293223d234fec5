"""The /.ctl tree and everyday tools (issue 9): the /.ctl/json path view's
limits.

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
