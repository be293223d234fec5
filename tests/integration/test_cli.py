"""The command line, mount(8)/fstab, restarts, df, links: memfluxfs as a
program a user or an init system runs (issue 9, items 13-16 and 19)."""
import ctypes
import errno
import os
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
    mf.kv("a").write_bytes(b"x")
    with pytest.raises(OSError) as e:
        os.symlink("a", mf.kv("s"))
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.link(mf.kv("a"), mf.kv("h"))
    assert e.value.errno == errno.EPERM
    r = subprocess.run(["ln", "-s", "a", str(mf.kv("s2"))], capture_output=True, text=True)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr
    assert sorted(os.listdir(mf.kv())) == ["a"]
    assert mf.kv("a").read_bytes() == b"x"
    log = mf.log()
    assert "symlink s -> a" in log and "link h" in log


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
