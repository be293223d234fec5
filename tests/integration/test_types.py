"""Issue 16 through the mount: atomic counters (/.ctl/incr), sets (/sets,
/.ctl/srem), their persistence across clean and kill -9 restarts and a
snapshot.  Everything goes through plain file I/O and shell tools."""
import errno
import os
import subprocess

import pytest


def sh(cmd, **kw):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, **kw)


def sets(m, key=""):
    return m.mnt / "sets" / key


def members(path):
    data = open(path, "rb").read()
    assert data == b"" or data.endswith(b"\n")
    lines = data.decode().splitlines()
    assert len(lines) == len(set(lines)), lines
    return set(lines)


# ---------- counters ----------

def test_incr_creates_and_adds(mf):
    c = mf.ctl("incr") / "c"
    r = sh(f"echo 5 >> {c} && echo -2 >> {c} && cat {mf.kv('c')}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "3"  # Redis's value: no newline added
    # A value written by the shell keeps its newline.
    sh(f"echo 41 > {mf.kv('n')}")
    assert sh(f"echo 1 >> {mf.ctl('incr') / 'n'}").returncode == 0
    assert mf.kv("n").read_text() == "42\n"
    # Several lines in one write: one record adding their sum.
    with open(c, "ab") as f:
        f.write(b"10\n20\n")
    assert mf.kv("c").read_text() == "33"
    # A line split across writes is one number.
    fd = os.open(c, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"1")
    os.write(fd, b"00\n")
    os.close(fd)
    assert mf.kv("c").read_text() == "133"
    # A last line without '\n' counts at close.
    fd = os.open(c, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"7")
    os.close(fd)
    assert mf.kv("c").read_text() == "140"


def test_incr_errors_come_from_write(mf):
    c = mf.ctl("incr") / "c"
    sh(f"printf abc > {mf.kv('s')}")
    for target, data, err in [("s", b"1\n", errno.EINVAL),     # not an integer value
                              ("c", b"x\n", errno.EINVAL),     # not an integer increment
                              ("c", b"1.5\n", errno.EINVAL)]:
        fd = os.open(mf.ctl("incr") / target, os.O_WRONLY | os.O_APPEND)
        with pytest.raises(OSError) as e:
            os.write(fd, data)
        assert e.value.errno == err
        os.close(fd)
    assert mf.kv("s").read_text() == "abc"
    assert not mf.kv("c").exists()
    sh(f"echo 9223372036854775807 > {mf.kv('big')}")
    fd = os.open(mf.ctl("incr") / "big", os.O_WRONLY | os.O_APPEND)
    with pytest.raises(OSError) as e:
        os.write(fd, b"1\n")
    assert e.value.errno == errno.ERANGE
    os.close(fd)
    # Another type: EEXIST.  Reading an incr file: EACCES.
    sh(f"echo a >> {mf.lists('l')}")
    fd = os.open(mf.ctl("incr") / "l", os.O_WRONLY | os.O_APPEND)
    with pytest.raises(OSError) as e:
        os.write(fd, b"1\n")
    assert e.value.errno == errno.EEXIST
    os.close(fd)
    with pytest.raises(OSError) as e:
        open(c, "rb")
    assert e.value.errno == errno.EACCES
    assert os.listdir(mf.ctl("incr")) == []


def test_incr_four_processes_reach_800(mf):
    """The issue's case: 4 shell processes x 200 increments; no update lost."""
    c = mf.ctl("incr") / "ctr"
    loop = f"for i in $(seq 200); do echo 1 >> {c} || exit 1; done"
    ps = [subprocess.Popen(["bash", "-c", loop]) for _ in range(4)]
    assert all(p.wait(timeout=300) == 0 for p in ps)
    assert mf.kv("ctr").read_text() == "800"


def test_incr_survives_restart_and_kill9(mkmount):
    m = mkmount()
    c = m.ctl("incr") / "c"
    for _ in range(10):
        assert sh(f"echo 3 >> {c}").returncode == 0
    m.stop()
    m.start()
    assert m.kv("c").read_text() == "30"
    assert sh(f"echo 1 > {m.ctl('snapshot')}").returncode == 0
    for _ in range(5):
        assert sh(f"echo -1 >> {c}").returncode == 0
    m.kill9()
    m.start()
    # Records acknowledged (write returned) before the kill: all of them,
    # each applied once on top of the snapshot.
    assert m.kv("c").read_text() == "25"


# ---------- sets ----------

def test_sets_add_replace_remove(mf):
    s = sets(mf, "s")
    r = sh(f"printf 'a\\nb\\na\\n' >> {s} && echo c >> {s}")
    assert r.returncode == 0, r.stderr
    assert members(s) == {"a", "b", "c"}
    assert os.listdir(sets(mf)) == ["s"]
    # '>' replaces the whole set (duplicates dropped).
    assert sh(f"printf 'x\\ny\\nx\\n' > {s}").returncode == 0
    assert members(s) == {"x", "y"}
    # Removing members: one per line; absent ones are ignored.
    assert sh(f"printf 'x\\nnope\\n' >> {mf.ctl('srem') / 's'}").returncode == 0
    assert members(s) == {"y"}
    # Removing the last member deletes the set (Redis has no empty sets).
    assert sh(f"echo y >> {mf.ctl('srem') / 's'}").returncode == 0
    assert not s.exists()
    assert os.listdir(sets(mf)) == []
    # srem of a set that is not there: ENOENT.
    r = sh(f"echo y >> {mf.ctl('srem') / 's'}")
    assert r.returncode != 0 and "No such file" in r.stderr
    # One keyspace: a set name is taken in the other directories.
    sh(f"echo m >> {sets(mf, 'k')}")
    r = sh(f"echo v > {mf.kv('k')}")
    assert r.returncode != 0 and "File exists" in r.stderr
    # A write inside a set: ESPIPE; truncate to 0 empties; rm deletes.
    fd = os.open(sets(mf, "k"), os.O_WRONLY)
    with pytest.raises(OSError) as e:
        os.write(fd, b"zz\n")
    assert e.value.errno == errno.ESPIPE
    os.close(fd)
    os.truncate(sets(mf, "k"), 0)
    assert members(sets(mf, "k")) == set()
    os.unlink(sets(mf, "k"))
    assert not sets(mf, "k").exists()
    assert mf.stats()["keys_sets"] == "0"


def test_sets_concurrent_adders(mf):
    """4 processes add 100 members each (with overlaps): every member once."""
    s = sets(mf, "big")
    ps = [subprocess.Popen(["bash", "-c",
                            f"for i in $(seq {w * 50} {w * 50 + 99}); do echo m$i >> {s} || exit 1; done"])
          for w in range(4)]
    assert all(p.wait(timeout=300) == 0 for p in ps)
    assert members(s) == {f"m{i}" for i in range(0, 250)}
    assert mf.stats()["keys_sets"] == "1"


def test_sets_survive_snapshot_and_kill9(mkmount):
    m = mkmount()
    s = sets(m, "s")
    sh(f"printf 'a\\nb\\nc\\nd\\n' >> {s}")
    sh(f"echo b >> {m.ctl('srem') / 's'}")
    assert sh(f"echo 1 > {m.ctl('snapshot')}").returncode == 0
    sh(f"echo e >> {s}")
    sh(f"echo a >> {m.ctl('srem') / 's'}")
    m.kill9()
    m.start()
    assert members(s) == {"c", "d", "e"}
    m.stop()
    m.start()
    assert members(s) == {"c", "d", "e"}
