"""The command line, mount(8)/fstab, restarts, df, links: memfluxfs as a
program a user or an init system runs (issue 9, items 13-16 and 19)."""
import ctypes
import errno
import os
import select
import signal
import subprocess
import time

import pytest

from conftest import BIN, Mount, wait_pid_exit

MiB = 1 << 20
libc = ctypes.CDLL(None, use_errno=True)


def umount2(path, flags=0):
    """umount(2) directly: no stat of the mount first (the daemon may be stopped)."""
    if libc.umount2(os.fsencode(str(path)), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), str(path))


# ---------- item 14: df ----------

def used_bytes(path):
    sv = os.statvfs(path)
    return (sv.f_blocks - sv.f_bfree) * sv.f_frsize


def test_df_used_is_what_the_store_holds(mf):
    sv = os.statvfs(mf.mnt)
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert abs(sv.f_blocks * sv.f_frsize - ram) < 4096  # size: total RAM
    # An empty store holds nothing, whatever the machine's RAM in use is.
    assert used_bytes(mf.mnt) == 0
    assert sv.f_files - sv.f_ffree == 0
    assert sv.f_bavail <= sv.f_bfree

    mf.kv("big").write_bytes(b"x" * (8 * MiB))
    mf.lists("q").write_bytes(b"line\n" * 1000)
    mf.json("j").write_text('{"a": 1}')
    held = 8 * MiB + 5000 + 8
    used = used_bytes(mf.mnt)
    assert held <= used < held + 3 * 4096, used
    sv = os.statvfs(mf.mnt)
    assert sv.f_files - sv.f_ffree == 3  # inodes: one per key
    # df shows the same figure
    out = subprocess.run(["df", "-B1", "--output=used,iused", str(mf.mnt)],
                         capture_output=True, text=True, check=True).stdout.split()
    assert int(out[-2]) == used and int(out[-1]) == 3

    mf.kv("big").unlink()
    assert used_bytes(mf.mnt) < 3 * 4096


# ---------- item 15: links ----------

def test_symlink_and_hard_link_are_eperm_and_logged(mf):
    """Symlinks live in /kv (issue 14: test_folders.py); elsewhere, and hard
    links anywhere, are EPERM and logged."""
    mf.kv("a").write_bytes(b"x")
    mf.json("j").write_text("1")
    with pytest.raises(OSError) as e:
        os.symlink("j", mf.json("s"))
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.link(mf.kv("a"), mf.kv("h"))
    assert e.value.errno == errno.EPERM
    r = subprocess.run(["ln", "-s", "a", str(mf.lists("s2"))], capture_output=True, text=True)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    assert "symlink json/s refused" in mf.log() and "link kv/h refused" in mf.log()
    assert sorted(os.listdir(mf.kv())) == ["a"]
    assert mf.kv("a").read_bytes() == b"x"


# ---------- item 19: a dir handle whose RELEASEDIR the unmount drops ----------

def stop_process(pid, timeout=10):
    """SIGSTOP pid and return once every one of its threads is stopped
    (kill() only queues the stop; a worker could still read a request)."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = []
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                stat = open(f"/proc/{pid}/task/{t}/stat").read()
            except FileNotFoundError:
                continue
            states.append(stat.rpartition(")")[2].split()[0])
        if states and all(s in "Tt" for s in states):
            return
        time.sleep(0.005)  # polling an external state change, with a deadline
    raise AssertionError(f"pid {pid} did not stop: {states}")


def test_dir_handle_released_after_unmount_is_freed(mkmount):
    m = mkmount()
    fd = os.open(m.kv(), os.O_RDONLY | os.O_DIRECTORY)
    # Stopped, the daemon cannot read the RELEASEDIR that close() queues;
    # the unmount then aborts the connection and the kernel drops it.
    stop_process(m.pid)
    try:
        os.close(fd)
        umount2(m.mnt)
    finally:
        os.kill(m.pid, signal.SIGCONT)
    assert wait_pid_exit(m.pid)
    m.pid = None
    assert not os.path.ismount(m.mnt)
    assert "freed 1 directory handle(s) never released" in m.log()
    m.assert_no_sanitizer_report()  # under ASan: no LeakSanitizer report


# ---------- item 15: command-line errors ----------

def bad_invocations(tmp_path, mnt, data):
    missing = tmp_path / "missing"
    return [
        ([f"--data-dir={data}", "--bogus", str(mnt)], "--bogus"),
        ([f"--data-dir={data}", "-o", "nosuchopt", str(mnt)], "nosuchopt"),
        ([f"--data-dir={data}", "-o", "ro,nosuchopt", str(mnt)], "nosuchopt"),
        ([f"--data-dir={data}", str(missing)], "missing"),
        ([f"--data-dir={data}"], "mountpoint"),
        (["--data-dir=", str(mnt)], "data dir"),
        (["-o", "data_dir=", str(mnt)], "data dir"),
        ([str(data), str(mnt), str(tmp_path)], "unexpected argument"),
        ([f"--data-dir={data}", "-o", "fsname=x", str(mnt)], "fsname"),
        ([str(data), "-o", f"data_dir={tmp_path}/other", str(mnt)], "different data dirs"),
        ([f"--data-dir={data}", "--fsync=sometimes", str(mnt)], "fsync"),
        ([f"--data-dir={data}", "-o", "max_threads=many", str(mnt)], "max_threads"),
        ([f"--data-dir={data}", str(mnt), "-o"], "-o"),
        ([f"--data-dir={data}", str(tmp_path / "file")], "not a directory"),
    ]


def test_bad_command_lines_fail_with_one_line_before_touching_the_data_dir(tmp_path):
    mnt, data, cwd = tmp_path / "mnt", tmp_path / "data", tmp_path / "cwd"
    mnt.mkdir()
    cwd.mkdir()
    (tmp_path / "file").write_text("")
    env = dict(os.environ, HOME=str(tmp_path / "home"))
    env.pop("MEMFLUX_DATA_DIR", None)
    env.pop("XDG_DATA_HOME", None)
    for args, what in bad_invocations(tmp_path, mnt, data):
        r = subprocess.run([BIN, *args], capture_output=True, text=True, cwd=cwd, env=env,
                           timeout=60)
        assert r.returncode != 0, args
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("memfluxfs: "), (args, r.stderr)
        assert what in lines[0], (args, r.stderr)
        assert not data.exists(), args  # nothing created, nothing recovered
        assert os.listdir(cwd) == [], args  # "--data-dir=" did not become the cwd
        assert not (tmp_path / "home").exists(), args
        assert not os.path.ismount(mnt), args


def test_generic_mount_options_are_accepted(mkmount):
    # What mount(8)/fstab add; the kernel flags among them still apply.
    m = mkmount("-o", "rw,dev,suid,exec,nofail,noauto,auto,defaults,_netdev,user,nouser,"
                "users,x-systemd.automount,comment=x,noexec,noatime")
    m.kv("a").write_bytes(b"v")
    assert m.kv("a").read_bytes() == b"v"
    opts = mount_entry(m.mnt)[1].split(",")
    assert "noexec" in opts and "noatime" in opts


# ---------- item 16: mount(8) and fstab ----------

def mount_entry(mnt):
    """(source, mount options) of the mount at mnt, from mountinfo."""
    for line in open("/proc/self/mountinfo"):
        left, _, right = line.partition(" - ")
        f = left.split()
        if f[4] == str(mnt):
            fstype, source = right.split()[:2]
            assert fstype == "fuse.memfluxfs"
            return source, f[5]
    return None


@pytest.fixture
def memfluxfs_on_path():
    """mount.fuse3 runs `memfluxfs` from a fixed PATH: put ours there."""
    link = "/usr/local/bin/memfluxfs"
    if os.path.lexists(link):
        pytest.skip(f"{link} exists (installed, or another test run is using it)")
    os.symlink(BIN, link)
    mounted = []
    try:
        yield mounted
    finally:
        for mnt in mounted:
            if os.path.ismount(mnt):
                pid = mounted_pid(mnt)
                subprocess.run(["umount", str(mnt)], capture_output=True)
                if pid:
                    wait_pid_exit(pid)
        os.unlink(link)


def mounted_pid(mnt):
    source = mount_entry(mnt)[0].removeprefix("memfluxfs:")
    return int(open(os.path.join(source, "memflux.lock")).read())


def run_mount(*args):
    return subprocess.run(["mount", *args], capture_output=True, text=True, timeout=120)


def test_mount_t_fuse_memfluxfs(tmp_path, memfluxfs_on_path):
    data, mnt = tmp_path / "data", tmp_path / "mnt"
    mnt.mkdir()
    memfluxfs_on_path.append(mnt)
    # The data dir as the source.
    r = run_mount("-t", "fuse.memfluxfs", str(data), str(mnt), "-o", "fsync=always")
    assert r.returncode == 0, r.stderr
    assert mount_entry(mnt)[0] == f"memfluxfs:{data}"  # findmnt/df show the data dir
    (mnt / "kv" / "a").write_bytes(b"via mount(8)")
    assert "fsync_mode always" in (mnt / ".ctl" / "stats").read_text()
    pid = mounted_pid(mnt)
    subprocess.run(["umount", str(mnt)], check=True, timeout=60)
    assert wait_pid_exit(pid)

    # A label as the source and -o data_dir= (the form).
    r = run_mount("-t", "fuse.memfluxfs", "memflux", str(mnt), "-o", f"data_dir={data}")
    assert r.returncode == 0, r.stderr
    assert (mnt / "kv" / "a").read_bytes() == b"via mount(8)"
    pid = mounted_pid(mnt)
    subprocess.run(["umount", str(mnt)], check=True, timeout=60)
    assert wait_pid_exit(pid)
    assert "Sanitizer" not in (data / "memflux.log").read_text()


def test_fstab_lines(tmp_path, memfluxfs_on_path):
    d1, d2 = tmp_path / "d1", tmp_path / "d2"
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    for m in (m1, m2):
        m.mkdir()
        memfluxfs_on_path.append(m)
    fstab = tmp_path / "fstab"
    fstab.write_text(
        f"{d1} {m1} fuse.memfluxfs defaults,noauto,nofail,_netdev,fsync=always 0 0\n"
        f"memflux {m2} fuse.memfluxfs data_dir={d2},noauto,user,x-systemd.automount 0 0\n")
    for d, m in ((d1, m1), (d2, m2)):
        r = run_mount("-T", str(fstab), str(m))
        assert r.returncode == 0, r.stderr
        assert mount_entry(m)[0] == f"memfluxfs:{d}"
        (m / "kv" / "k").write_bytes(str(d).encode())
    assert "fsync_mode always" in (m1 / ".ctl" / "stats").read_text()
    for d, m in ((d1, m1), (d2, m2)):
        pid = mounted_pid(m)
        subprocess.run(["umount", str(m)], check=True, timeout=60)
        assert wait_pid_exit(pid)
        assert (d / "memflux.wal").exists()
        assert "Sanitizer" not in (d / "memflux.log").read_text()


# ---------- item 13: unmount, then mount again at once ----------

def read_line(fd, timeout):
    """One line from fd, waiting for it at most timeout seconds."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(left, 0))
        if not r:
            raise AssertionError(f"no line within {timeout} s: {buf!r}")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


def test_restart_waits_for_the_exiting_daemon(mkmount, tmp_path):
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    # The old daemon stops after its unmount, still holding the data dir
    # (what 2M keys do for ~2 s), until the test writes to the gate.
    m = mkmount(env={"MEMFLUX_TEST_HOLD_AFTER_UNMOUNT": str(gate)})
    m.kv("a").write_bytes(b"before restart")
    old = m.pid
    subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True, timeout=60)
    m.pid = None
    p = subprocess.Popen([BIN, f"--data-dir={m.data}", str(m.mnt)], stderr=subprocess.PIPE)
    try:
        line = read_line(p.stderr.fileno(), 60)
        assert "waiting" in line and str(old) in line and str(m.data) in line, line
        assert p.poll() is None and not os.path.ismount(m.mnt)
        with open(gate, "wb") as g:  # let the old daemon finish
            g.write(b"x")
        assert p.wait(120) == 0, p.stderr.read()
        assert wait_pid_exit(old)
        m.pid = int((m.data / "memflux.lock").read_text())
        assert m.pid != old
        assert m.kv("a").read_bytes() == b"before restart"
        assert "waiting" in m.log()
    finally:
        try:  # never leave the old daemon blocked
            fd = os.open(gate, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"x")
            os.close(fd)
        except OSError:
            pass
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stderr.close()


def test_unmount_then_mount_in_a_loop(mkmount):
    m = mkmount()
    payload = b"v" * 100
    for i in range(2000):
        (m.kv(f"k{i}")).write_bytes(payload)
    for i in range(5):
        pid = m.pid
        r = subprocess.run(["sh", "-c", 'fusermount3 -u "$1" && "$2" --data-dir="$3" "$1"', "sh",
                            str(m.mnt), BIN, str(m.data)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (i, r.stderr)
        assert wait_pid_exit(pid)
        m.pid = int((m.data / "memflux.lock").read_text())
        assert len(os.listdir(m.kv())) == 2000


def test_live_mount_of_the_data_dir_is_refused_at_once(mkmount):
    a = mkmount(name="a")
    b = Mount(a.base, "b")
    t0 = time.monotonic()
    r = subprocess.run([BIN, f"--data-dir={a.data}", str(b.mnt)], capture_output=True,
                       text=True, timeout=120)
    assert time.monotonic() - t0 < 10  # not the 30 s wait for an exiting holder
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert "in use" in lines[0] and str(a.data) in lines[0] and str(a.mnt) in lines[0]
    assert not os.path.ismount(b.mnt)
    a.kv("still").write_bytes(b"fine")
