"""Operations (issue 13): logs, SIGHUP, --help/--version, stats, file modes,
allow_other, the memory limit.  Packaging (the .deb, mount -t, fstab) is
tested by scripts/test-package, which needs root and apt-get.
"""
import ctypes
import errno
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import BIN, CHECK, Mount, wait_pid_exit

LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z (DEBUG|INFO|WARN|ERROR) \S")


def read_line(fd, timeout):
    """One line from fd, waiting for it at most timeout seconds."""
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        r, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not r:
            raise AssertionError(f"no line within {timeout} s: {buf!r}")
        chunk = os.read(fd, 1)
        if not chunk:
            break
        buf += chunk
    return buf.decode()


class DirWatch:
    """inotify on a directory: wait for events instead of sleeping."""
    IN_MODIFY, IN_CLOSE_WRITE, IN_CREATE, IN_MOVED_TO = 0x2, 0x8, 0x100, 0x80

    def __init__(self, path):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0
        mask = self.IN_MODIFY | self.IN_CLOSE_WRITE | self.IN_CREATE | self.IN_MOVED_TO
        assert self.libc.inotify_add_watch(self.fd, str(path).encode(), mask) >= 0

    def wait_until(self, cond, timeout=30):
        """Re-check cond() after every event in the directory."""
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            r, _, _ = select.select([self.fd], [], [], max(left, 0))
            if not r:
                raise AssertionError("condition not met in time")
            try:
                os.read(self.fd, 65536)
            except BlockingIOError:
                pass

    def close(self):
        os.close(self.fd)


# ---- 4. --help / --version ----

def test_help_lists_every_option_with_its_o_form_and_the_log():
    r = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for long, o in (("--data-dir=", "data_dir="), ("--fsync=", "fsync="),
                    ("--fsync-interval-ms=", "fsync_interval_ms="),
                    ("--wal-threshold=", "wal_threshold="),
                    ("--cache-timeout=", "cache_timeout="), ("--max-memory=", "max_memory=")):
        assert long in out and f"-o {o}" in out, (long, out)
    assert "memflux.log" in out and "SIGHUP" in out and "allow_other" in out
    assert "default_permissions" in out


def test_version_of_both_programs():
    r = subprocess.run([BIN, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and re.match(r"memfluxfs \d+\.\d+\.\d+ \(libfuse ", r.stdout), r
    v = r.stdout.split()[1]
    r = subprocess.run([CHECK, "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(f"memflux-check {v} "), r


# ---- 3. logs ----

def test_log_lines_have_time_and_level(mf):
    (mf.kv("a")).write_bytes(b"1")
    mf.ctl("snapshot").write_text("1\n")
    mf.stop()
    lines = mf.log().splitlines()
    assert any(" mounted " in l for l in lines) and any(" snapshot lsn " in l for l in lines)
    assert any(l.endswith(f"unmounted {mf.mnt}") for l in lines)
    bad = [l for l in lines if not LOG_LINE.match(l)]
    assert not bad, bad


def test_log_names_keys_not_inodes(mkmount):
    m = mkmount("--max-memory=64K")
    with pytest.raises(OSError) as e:
        m.kv("big\nkey").write_bytes(b"x" * 100_000)
    assert e.value.errno == errno.ENOSPC
    line = [l for l in m.log().splitlines() if "max-memory" in l]
    # the key, escaped: a log line never carries a raw newline
    assert line and "/big\\x0akey" in line[0] and LOG_LINE.match(line[0]), m.log()


def test_sighup_reopens_log_and_keeps_the_mount(mf):
    mf.kv("k").write_bytes(b"v")
    log = mf.data / "memflux.log"
    os.rename(log, mf.data / "memflux.log.1")
    w = DirWatch(mf.data)
    try:
        os.kill(mf.pid, signal.SIGHUP)
        w.wait_until(lambda: log.exists() and "log file reopened" in log.read_text())
    finally:
        w.close()
    assert os.path.ismount(mf.mnt)
    assert mf.kv("k").read_bytes() == b"v"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    mf.kv("k2").write_bytes(b"w")
    mf.ctl("snapshot").write_text("1\n")   # a db log line: into the new file
    assert " INFO snapshot lsn " in log.read_text()
    assert " INFO snapshot lsn " not in (mf.data / "memflux.log.1").read_text()
    mf.stop()


def test_foreground_logs_to_stderr(tmp_path):
    m = Mount(tmp_path)
    p = subprocess.Popen([BIN, "-f", f"--data-dir={m.data}", str(m.mnt)],
                         stderr=subprocess.PIPE)
    try:
        seen = []
        while not any(" mounted " in l for l in seen):
            seen.append(read_line(p.stderr.fileno(), 60))
        assert all(LOG_LINE.match(l) for l in seen), seen
        # SIGHUP with no log file: logged, mount stays
        p.send_signal(signal.SIGHUP)
        line = read_line(p.stderr.fileno(), 30)
        assert "SIGHUP" in line and "stderr" in line, line
        assert os.path.ismount(m.mnt)
        subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True, timeout=60)
        assert p.wait(60) == 0
        assert not (m.data / "memflux.log").exists()
    finally:
        if p.poll() is None:
            subprocess.run(["fusermount3", "-u", "-z", str(m.mnt)], capture_output=True)
            p.kill()
            p.wait()
        p.stderr.close()


def test_recovery_logs_progress(mkmount):
    m = mkmount()
    for i in range(2500):
        with open(m.kv(f"k{i}"), "wb") as f:
            f.write(b"v" * 10)
    m.stop()
    # progress every 1024 records (test period 0 ms instead of 1 s)
    p = m.start(env={"MEMFLUX_TEST_PROGRESS_MS": "0"})
    prog = [l for l in m.log().splitlines() if "recovery progress: WAL" in l]
    assert prog, m.log()
    # shown live on the terminal of the waiting command, once each
    shown = [l for l in p.stderr.splitlines() if "recovery progress: WAL" in l]
    assert len(shown) == len(prog) and shown[0].startswith("memfluxfs: recovery progress"), p.stderr
    assert re.search(r"WAL 1024 records replayed \(\d+% of [\d.]+ MiB\), \d+ records/s, "
                     r"about \d+ s left", prog[0]), prog
    assert all(LOG_LINE.match(l) for l in prog)
    m.ctl("snapshot").write_text("1\n")
    m.stop()
    m.start(env={"MEMFLUX_TEST_PROGRESS_MS": "0"})
    snap = [l for l in m.log().splitlines() if "recovery progress: snapshot" in l]
    assert snap and "1024 of 2500 keys" in snap[0], m.log()
    m.stop()


# ---- 2. service: systemd readiness ----

def test_sd_notify_ready_only_after_recovery_and_mount(mkmount, tmp_path):
    """Type=notify: READY=1 arrives when the mount is up with the data in it;
    a long recovery sends STATUS + EXTEND_TIMEOUT_USEC before that."""
    m = mkmount()
    for i in range(1500):
        with open(m.kv(f"k{i}"), "wb") as f:
            f.write(b"v")
    m.stop()
    sock_path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    env = dict(os.environ, NOTIFY_SOCKET=sock_path, MEMFLUX_TEST_PROGRESS_MS="0")
    p = subprocess.Popen([BIN, "-f", f"--data-dir={m.data}", str(m.mnt)],
                         stderr=subprocess.DEVNULL, env=env)
    try:
        msgs = []
        while not any("READY=1" in x for x in msgs):
            r, _, _ = select.select([sock], [], [], 60)
            assert r, f"no READY=1: {msgs}"
            msgs.append(sock.recv(4096).decode())
            if "READY=1" in msgs[-1]:
                # at READY, the mount serves every recovered key
                assert os.path.ismount(m.mnt)
                assert len(os.listdir(m.kv())) == 1500
        assert any("EXTEND_TIMEOUT_USEC=" in x and "STATUS=recovery progress" in x
                   for x in msgs), msgs
        subprocess.run(["fusermount3", "-u", str(m.mnt)], check=True, timeout=60)
        r, _, _ = select.select([sock], [], [], 60)
        assert r and "STOPPING=1" in sock.recv(4096).decode()
        assert p.wait(60) == 0
    finally:
        if p.poll() is None:
            subprocess.run(["fusermount3", "-u", "-z", str(m.mnt)], capture_output=True)
            p.kill()
            p.wait()
        sock.close()


# ---- 5. stats ----

def test_stats_like_info(mkmount):
    m = mkmount()
    s = m.stats()
    for k in ("version", "pid", "uptime_seconds", "rss_bytes", "peak_rss_bytes", "memory_bytes",
              "mem_fragmentation_ratio", "writes_total", "writes_per_sec", "reads_total",
              "reads_per_sec", "read_hits", "read_misses", "last_snapshot_time",
              "last_snapshot_status", "changes_since_last_snapshot", "wal_fsync_lag_records"):
        assert k in s, k
    assert int(s["pid"]) == m.pid
    assert int(s["rss_bytes"]) > 0 and int(s["peak_rss_bytes"]) >= int(s["rss_bytes"])
    assert s["last_snapshot_status"] == "none" and s["last_snapshot_time"] == "-"
    for i in range(5):
        m.kv(f"k{i}").write_bytes(b"v")
    s = m.stats()
    assert int(s["writes_total"]) >= 5
    assert int(s["changes_since_last_snapshot"]) >= 5
    m.ctl("snapshot").write_text("1\n")
    s = m.stats()
    assert s["last_snapshot_status"] == "ok" and int(s["changes_since_last_snapshot"]) == 0
    when = s["last_snapshot_time"]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", when)
    m.kv("after").write_bytes(b"v")
    m.stop()
    # survives a restart (memflux.state)
    m.start()
    s = m.stats()
    assert s["last_snapshot_status"] == "ok" and s["last_snapshot_time"] == when
    assert int(s["changes_since_last_snapshot"]) == 1
    assert float(s["uptime_seconds"]) < float(s["last_snapshot_age_seconds"]) + 60
    m.stop()


# ---- 6. safe by default ----

def test_data_files_are_0600_whatever_the_umask(mkmount):
    old = os.umask(0o022)
    try:
        m = mkmount()
        m.kv("k").write_bytes(b"v")
        m.ctl("snapshot").write_text("1\n")
        m.kv("k2").write_bytes(b"v")
    finally:
        os.umask(old)
    for f in m.data.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert stat.S_IMODE(m.data.stat().st_mode) == 0o700
    m.stop()


def _as_nobody(cmd):
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           "sh", "-c", cmd], capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_allow_other_implies_default_permissions():
    base = tempfile.mkdtemp(prefix="mf-ops-")
    os.chmod(base, 0o755)  # others must reach the mountpoint
    m = Mount(base)
    try:
        m.start("-o", "allow_other")
        opts = [l.split()[3] for l in open("/proc/self/mounts") if l.split()[1] == str(m.mnt)]
        assert opts and "default_permissions" in opts[0].split(","), opts
        assert "allow_other" in opts[0].split(",")
        m.kv("k").write_bytes(b"owner's\n")
        r = _as_nobody(f"cat {m.kv('k')}")
        assert r.returncode == 0 and r.stdout == "owner's\n", r
        r = _as_nobody(f"echo evil > {m.kv('k')}")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        r = _as_nobody(f"rm -f {m.kv('k')}")
        assert r.returncode != 0, r
        r = _as_nobody(f"echo x > {m.kv('new')}")
        assert r.returncode != 0, r
        assert m.kv("k").read_bytes() == b"owner's\n" and not m.kv("new").exists()
        r = _as_nobody(f"echo 1 > {m.ctl('snapshot')}")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        r = _as_nobody(f"cat {m.ctl('stats')}")
        assert r.returncode == 0 and "keys " in r.stdout, r
        m.stop()
    finally:
        m.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_allow_other_others_cannot_pop():
    base = tempfile.mkdtemp(prefix="mf-ops-")
    os.chmod(base, 0o755)
    m = Mount(base)
    try:
        m.start("-o", "allow_other")
        with open(m.lists("q"), "ab") as f:
            f.write(b"job\n")
        r = _as_nobody(f"cat {m.ctl('pop')}/q")
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        assert m.lists("q").read_bytes() == b"job\n"
        m.stop()
    finally:
        m.cleanup()
        shutil.rmtree(base, ignore_errors=True)


# ---- 7. memory limit ----

def test_max_memory_refuses_growth_with_enospc(mkmount):
    m = mkmount("-o", "max_memory=1M")
    m.kv("a").write_bytes(b"x" * 600_000)
    with pytest.raises(OSError) as e:
        m.kv("b").write_bytes(b"y" * 600_000)
    assert e.value.errno == errno.ENOSPC
    s = m.stats()
    assert int(s["max_memory"]) == 1 << 20 and int(s["writes_refused_max_memory"]) >= 1
    assert m.kv("a").read_bytes() == b"x" * 600_000   # reads work
    lsn = int(s["wal_lsn"])
    os.unlink(m.kv("a"))                               # deletes work
    assert int(m.stats()["wal_lsn"]) > lsn
    m.kv("b").write_bytes(b"y" * 600_000)              # room again
    m.stop()
    # nothing refused was logged: a restart has exactly b
    m.start("-o", "max_memory=1M")
    assert sorted(os.listdir(m.kv())) == ["b"]
    m.stop()


def test_max_memory_bad_value_is_one_line():
    r = subprocess.run([BIN, "--max-memory=lots", "/nonexistent-mnt-ops"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode != 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("memfluxfs: "), r.stderr


def test_ctl_files_show_their_size(mf):
    # ls -l, cp and tar read st_size bytes: the size is that of the text now
    # (stats move on between stat and read, by a few digits at most).
    for name in ("stats", "snapshot"):
        size = os.stat(mf.ctl(name)).st_size
        text = mf.ctl(name).read_bytes()
        assert size > 0 and abs(size - len(text)) < 64, (name, size, len(text))


def test_out_of_memory_fails_the_write_not_the_daemon(mkmount):
    """Issue 13: with the daemon's address space limited, filling memory with
    32 MiB values makes a write fail (ENOMEM) -- the mount stays up, reads and
    deletes work, and a smaller write succeeds afterwards."""
    if os.environ.get("MEMFLUX_SANITIZED") == "1":
        pytest.skip("sanitizers reserve terabytes of address space")
    m = mkmount(start=False)
    p = subprocess.run(["prlimit", f"--as={1536 << 20}", "--", BIN, f"--data-dir={m.data}",
                        "--wal-threshold=64G", str(m.mnt)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    m.pid = int((m.data / "memflux.lock").read_text().strip())
    big = b"x" * (32 << 20)
    stored, err = 0, None
    for i in range(64):
        try:
            fd = os.open(m.kv(f"v{i}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                done = 0  # a direct write cut short returns its count: go on
                while done < len(big):
                    done += os.write(fd, big[done:])
            finally:
                os.close(fd)
            stored += 1
        except OSError as e:
            err = e.errno
            break
    assert err in (errno.ENOMEM, errno.ENOSPC), (stored, err)
    assert stored > 0
    assert os.stat(m.kv("v0")).st_size == len(big)
    for i in range(stored + 1):
        os.unlink(m.kv(f"v{i}"))
    fd = os.open(m.kv("small"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, b"still here")
    os.close(fd)
    assert m.kv("small").read_bytes() == b"still here"
    os.kill(m.pid, 0)  # the daemon is alive (raises if it died)
