"""pytest fixtures: a real memfluxfs mounted in a temp dir, always unmounted.

MEMFLUXFS_BIN / MEMFLUX_CHECK_BIN point at the binaries under test (ctest
sets them; default: build/ in the repo).  Every mount runs in daemon mode:
`memfluxfs` returns only once the mount is up, so no polling is needed to
start; its pid comes from the lock file in the data dir (that is also how
kill -9 tests find it).
"""
import os
import select
import signal
import subprocess
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("MEMFLUXFS_BIN", str(ROOT / "build/fs/memfluxfs"))
CHECK = os.environ.get("MEMFLUX_CHECK_BIN", str(ROOT / "build/tools/memflux-check"))


def wait_pid_exit(pid, timeout=60):
    """Block until process pid exits (pidfd: no sleeping loop)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        return bool(r)
    finally:
        os.close(fd)


class Mount:
    def __init__(self, base, name="m"):
        self.base = pathlib.Path(base)
        self.mnt = self.base / (name + "-mnt")
        self.data = self.base / (name + "-data")
        self.mnt.mkdir(exist_ok=True)
        self.pid = None
        self.args = []

    # paths under the mount
    def kv(self, key=""):
        return self.mnt / "kv" / key

    def json(self, key=""):
        return self.mnt / "json" / key

    def lists(self, key=""):
        return self.mnt / "lists" / key

    def ctl(self, name):
        return self.mnt / ".ctl" / name

    def log(self):
        p = self.data / "memflux.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def start(self, *args, env=None, check=True):
        """Mount; returns the CompletedProcess of the daemon's parent."""
        self.args = list(args)
        e = dict(os.environ)
        if env:
            e.update(env)
        p = subprocess.run([BIN, f"--data-dir={self.data}", *args, str(self.mnt)],
                           capture_output=True, text=True, env=e, timeout=300)
        if check:
            assert p.returncode == 0, f"mount failed: {p.stderr}\n{self.log()}"
        if p.returncode == 0:
            self.pid = int((self.data / "memflux.lock").read_text().strip())
        return p

    def stats(self):
        out = {}
        for line in self.ctl("stats").read_text().splitlines():
            k, _, v = line.partition(" ")
            out[k] = v
        return out

    def stop(self):
        """Clean unmount; waits for the daemon to finish flushing."""
        if self.pid is None:
            return
        subprocess.run(["fusermount3", "-u", str(self.mnt)], check=True, timeout=60)
        assert wait_pid_exit(self.pid), "daemon did not exit after unmount"
        self.pid = None
        self.assert_no_sanitizer_report()

    def assert_no_sanitizer_report(self):
        """Under ASan/UBSan the daemon reports into its log: fail on any."""
        log = self.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            assert marker not in log, f"sanitizer report in daemon log:\n{log[-4000:]}"

    def kill9(self):
        """Crash the daemon (SIGKILL) and clear the dead mount."""
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        assert wait_pid_exit(self.pid)
        self.pid = None
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)

    def crashed(self):
        """The daemon died by itself (crash point): clear the mount."""
        if self.pid is not None:
            assert wait_pid_exit(self.pid, 60)
            self.pid = None
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)

    def cleanup(self):
        if self.pid is not None:
            r = subprocess.run(["fusermount3", "-u", str(self.mnt)], capture_output=True)
            if r.returncode != 0:
                self.kill9()
            else:
                wait_pid_exit(self.pid)
                self.pid = None
        subprocess.run(["fusermount3", "-u", "-z", str(self.mnt)], capture_output=True)


@pytest.fixture
def mkmount(tmp_path):
    """Factory: mkmount(name='m', *args) -> started Mount. All unmounted at teardown."""
    mounts = []

    def make(*args, name="m", start=True, env=None):
        m = Mount(tmp_path, name)
        mounts.append(m)
        if start:
            m.start(*args, env=env)
        return m

    yield make
    for m in mounts:
        m.cleanup()
    for m in mounts:
        m.assert_no_sanitizer_report()


@pytest.fixture
def mf(mkmount):
    return mkmount()


# A writer process for the kill -9 tests (test_durability, test_snapshots):
# argv = MOUNT WRITER_NO NOTES_FILE KEY_PREFIX.  Before and after each
# mutation it notes "<op>a j" (attempted) / "<op>k j" (acknowledged: close
# returned), so a test can tell what must have survived a crash.
WRITER_SCRIPT = r"""
import os, sys, time
mnt, w, out, pfx = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
logfd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
def note(s):
    os.write(logfd, (s + "\n").encode())
def do(path, data, flags):
    fd = os.open(path, flags, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
told = False
end = time.monotonic() + 60
j = 0
try:
    while time.monotonic() < end:
        note(f"sa {j}")
        do(f"{mnt}/kv/{pfx}{w}_k{j % 10}", f"{w}:{j}".encode(),
           os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        note(f"sk {j}")
        note(f"aa {j}")
        do(f"{mnt}/kv/{pfx}{w}_log", f"{j}\n".encode(),
           os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        note(f"ak {j}")
        note(f"pa {j}")
        do(f"{mnt}/lists/{pfx}{w}_q", f"{j}\n".encode(),
           os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        note(f"pk {j}")
        if not told and j >= 3:
            sys.stdout.write("r"); sys.stdout.flush(); told = True
        j += 1
except OSError as e:
    sys.stderr.write(f"writer {w} stopped at {j}: {e}\n")
sys.exit(0)
"""


def writer_notes(path):
    notes = {}
    for line in open(path).read().splitlines():
        kind, j = line.split()
        notes.setdefault(kind, []).append(int(j))
    return notes


def check_writer(store_kv, store_lists, w, notes, prefix="w"):
    """Everything writer w had acknowledged is there; nothing it never wrote is."""
    sa, sk = notes.get("sa", []), notes.get("sk", [])
    for k in range(10):
        key = f"{prefix}{w}_k{k}".encode()
        acked = [j for j in sk if j % 10 == k]
        tried = {j for j in sa if j % 10 == k}
        if key not in store_kv:
            assert not acked, (key, acked[-1])
            continue
        ww, _, j = store_kv[key].decode().partition(":")
        assert int(ww) == w and int(j) in tried, (key, store_kv[key])
        if acked:
            assert int(j) >= acked[-1], (key, store_kv[key], acked[-1])
    for kind, store, key in (("a", store_kv, f"{prefix}{w}_log"),
                             ("p", store_lists, f"{prefix}{w}_q")):
        tried, acked = notes.get(kind + "a", []), notes.get(kind + "k", [])
        val = store.get(key.encode())
        if val is None:
            assert not acked, (key, acked[-1])
            continue
        got = [int(x) for x in val.decode().splitlines()]
        assert got == list(range(len(got))), (key, got[:5], len(got))
        if acked:
            assert got and got[-1] >= acked[-1], (key, got[-1:], acked[-1])
        assert not got or got[-1] <= max(tried), (key, got[-1], max(tried))


def dump_meta(m):
    """(type dir, key) -> (size, mtime_ns) for every key."""
    out = {}
    for d in ("kv", "json", "lists"):
        base = os.fsencode(str(m.mnt / d))
        for n in os.listdir(base):
            st = os.stat(os.path.join(base, n))
            out[(d, n)] = (st.st_size, st.st_mtime_ns)
    return out
