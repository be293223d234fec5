#!/usr/bin/env python3
"""memfluxfs model-checked random exerciser (in the spirit of fsx / db_stress).

A driver process generates a seeded random sequence of operations and runs
each one through worker *processes* (each with its own descriptor table,
os-level unbuffered calls) against a real mount, checking every result
against a model of what that process may observe (README "File semantics"):

  * a handle's writes are private until its close/fsync/flush (dup+close),
    then commit as ONE whole value (SET), O_APPEND handles as APPEND/RPUSH;
  * a new open (and stat, readdir) sees only committed values, with the
    committed size; a clean handle sees the latest committed value; a
    dirty handle sees exactly its own bytes;
  * an open handle keeps its data when the name is unlinked / renamed over;
  * reads never show bytes nobody wrote (NULs only from user-made holes);
  * lists: pops return the head, FIFO, each element once; a list read is
    whole lines of one version;
  * JSON: invalid documents are refused at close with EINVAL and the
    previous document (or absence) stays; path views read/set members;
  * snapshots change nothing; a clean restart keeps everything; a kill -9
    keeps every acknowledged close (pending, never-closed creates may go).

Sequential operations are checked exactly (several handles of several
processes interleaved by the driver).  "Bursts" run processes truly
concurrently; their checks are restricted to what is exactly decidable:
every value written is a unique tagged pattern, so each observed read is
classified as exactly one committed version or an illegal mix.

On a failure it prints the seed, the operation log and the smallest failing
sequence found by deleting operations and re-running on a fresh mount
(bounded time).

  python3 tests/exerciser/exerciser.py --bin build/fs/memfluxfs --seeds 1000 --ops 500
  python3 tests/exerciser/exerciser.py --seed 1234 --ops 300 -v
"""
import argparse
import errno
import json
import os
import pickle
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_BIN = os.environ.get("MEMFLUXFS_BIN", os.path.join(ROOT, "build/fs/memfluxfs"))
PAGE = 4096
TYPES = ("kv", "json", "lists")
NAMES = {"kv": ["k0", "k1", "k2", "k3"], "json": ["j0", "j1"], "lists": ["q0", "q1"]}
FLAGNAMES = [(os.O_WRONLY, "O_WRONLY"), (os.O_RDWR, "O_RDWR"), (os.O_CREAT, "O_CREAT"),
             (os.O_TRUNC, "O_TRUNC"), (os.O_APPEND, "O_APPEND"), (os.O_EXCL, "O_EXCL")]


def flagstr(f):
    s = [n for v, n in FLAGNAMES if f & v]
    return "|".join(s) if s else "O_RDONLY"


def short(b, n=24):
    if b is None:
        return "None"
    if len(b) <= n:
        return repr(b)
    return "%r..(%dB)" % (b[:n], len(b))


# ====================================================================== worker
# A worker is `exerciser.py --worker`: it reads pickled (cmd, args) from stdin
# and answers ("ok", value) or ("err", errno).  It owns its descriptors.

def _read_all(fd, chunk=65536):
    out, off = [], 0
    while True:
        b = os.pread(fd, chunk, off)
        if not b:
            return b"".join(out)
        out.append(b)
        off += len(b)


def _intern(table, index, data):
    i = index.get(data)
    if i is None:
        i = index[data] = len(table)
        table.append(data)
    return i


class Worker:
    def __init__(self):
        self.fds = {}

    def do(self, cmd, a):
        fds = self.fds
        if cmd == "open":
            hid, path, flags = a
            fds[hid] = os.open(path, flags, 0o644)
            return None
        if cmd == "write":
            return os.write(fds[a[0]], a[1])
        if cmd == "pwrite":
            return os.pwrite(fds[a[0]], a[1], a[2])
        if cmd == "pread":
            return os.pread(fds[a[0]], a[1], a[2])
        if cmd == "readall":
            return _read_all(fds[a[0]])
        if cmd == "ftruncate":
            return os.ftruncate(fds[a[0]], a[1])
        if cmd == "fstat":
            return os.fstat(fds[a[0]]).st_size
        if cmd == "fsync":
            return os.fsync(fds[a[0]])
        if cmd == "flushdup":
            os.close(os.dup(fds[a[0]]))
            return None
        if cmd == "close":
            fd = fds.pop(a[0])
            os.close(fd)
            return None
        if cmd == "dropall":
            for fd in fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            fds.clear()
            return None
        if cmd == "stat":
            return os.stat(a[0]).st_size
        if cmd == "listdir":
            return sorted(os.listdir(os.fsencode(a[0])))
        if cmd == "unlink":
            return os.unlink(a[0])
        if cmd == "rename":
            return os.rename(a[0], a[1])
        if cmd == "truncate":
            return os.truncate(a[0], a[1])
        if cmd == "touch":
            return os.utime(a[0])
        if cmd == "readfile":
            fd = os.open(a[0], os.O_RDONLY)
            try:
                return _read_all(fd)
            finally:
                os.close(fd)
        if cmd == "put":  # open, write chunks, close: one op
            path, flags, chunks = a
            fd = os.open(path, flags, 0o644)
            try:
                for c in chunks:
                    os.write(fd, c)
            finally:
                os.close(fd)
            return None
        if cmd == "script":
            return getattr(self, "s_" + a[0])(*a[1:])
        raise ValueError(cmd)

    # ---- burst scripts: run concurrently with other workers' scripts
    def s_overwrite(self, path, values, dup):
        for v in values:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if dup:  # bash: `> f` closes a duplicate before writing
                    os.close(os.dup(fd))
                os.write(fd, v)
            finally:
                os.close(fd)
        return None

    def s_freshreader(self, path, stopfile, maxn, chunk):
        table, index, seq, sizes = [], {}, [], set()
        n = 0
        while n < maxn and not os.path.exists(stopfile):
            n += 1
            try:
                sizes.add(os.stat(path).st_size)
                fd = os.open(path, os.O_RDONLY)
            except OSError as e:
                seq.append(-e.errno)
                continue
            try:
                data = _read_all(fd, chunk)
            except OSError as e:
                seq.append(-e.errno)
                continue
            finally:
                os.close(fd)
            seq.append(_intern(table, index, data))
        return table, seq, sorted(sizes)

    def s_viewreader(self, path, stopfile, maxn, chunk, seed):
        """Hold ONE handle while another process commits: read it whole from
        offset 0 (in chunks), then once at a random offset >= 1; again and
        again.  Returns the reads (interned)."""
        rng = random.Random(seed)
        table, index, seq, n = [], {}, [], 0
        fd = os.open(path, os.O_RDONLY)
        try:
            while n < maxn and not os.path.exists(stopfile):
                n += 1
                data = _read_all(fd, chunk)
                off = rng.randrange(1, len(data) + 2)
                size = rng.choice([1, 100, 5000])
                p = os.pread(fd, size, off)
                seq.append((_intern(table, index, data), off, size, _intern(table, index, p)))
        finally:
            os.close(fd)
        return table, seq

    def s_committer(self, path, poppath, plan):
        """Commit plan's (kind, data) in order: "set" (O_TRUNC), "append"
        (O_APPEND) or "pop".  Returns what the pops read."""
        popped = []
        for kind, data in plan:
            if kind == "pop":
                try:
                    fd = os.open(poppath, os.O_RDONLY)
                except OSError as e:
                    popped.append(-e.errno)
                    continue
                try:
                    popped.append(_read_all(fd))
                finally:
                    os.close(fd)
                continue
            flags = os.O_WRONLY | (os.O_TRUNC if kind == "set" else os.O_APPEND)
            fd = os.open(path, flags)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        return popped

    def s_writeclose(self, hids, chunks):
        """Write chunks[i] (a list) to handle hids[i] in turns, then close
        them all, timing each close (monotonic ns)."""
        for i in range(max(len(c) for c in chunks)):
            for h, cs in zip(hids, chunks):
                if i < len(cs):
                    os.write(self.fds[h], cs[i])
        times = []
        for h in hids:
            t0 = time.monotonic_ns()
            err = 0
            try:
                os.close(self.fds.pop(h))
            except OSError as e:
                err = e.errno
            times.append((t0, time.monotonic_ns(), err))
        return times

    def s_appender(self, path, handles):
        times = []
        for chunks in handles:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            for c in chunks:
                os.write(fd, c)
            t0 = time.monotonic_ns()
            os.close(fd)
            times.append((t0, time.monotonic_ns()))
        return times

    def s_popper(self, poppath, maxn):
        got = []
        for _ in range(maxn):
            try:
                fd = os.open(poppath, os.O_RDONLY)
            except OSError as e:
                if e.errno == errno.ENODATA:
                    break
                raise
            try:
                got.append(_read_all(fd))
            finally:
                os.close(fd)
        return got

    def s_holder(self, path, stopfile, maxn):
        """Open the name, read it, re-read it on the same handle while others
        unlink / rename over it: every read of one handle must agree."""
        table, index, bad, n = [], {}, [], 0
        while n < maxn and not os.path.exists(stopfile):
            n += 1
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                reads = []
                for _ in range(3):
                    try:
                        reads.append(_read_all(fd))
                    except OSError as e:
                        reads.append(-e.errno)
                for r in reads:
                    if isinstance(r, bytes):
                        _intern(table, index, r)
                if any(r != reads[0] for r in reads) or not isinstance(reads[0], bytes):
                    bad.append([r if isinstance(r, int) else r for r in reads])
            finally:
                os.close(fd)
        return table, bad

    def s_crashwriter(self, mnt, w, n, fifo, pad):
        """Until the daemon dies: overwrite kv/c<w>a with "<w>:<j>", append a
        line j to kv/c<w>l and push j to lists/c<w>q; after each returned
        close, tell the driver (one byte on a FIFO).  Returns what was
        attempted and acknowledged."""
        tell = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        notes = {"sa": -1, "sk": -1, "aa": -1, "ak": -1, "pa": -1, "pk": -1}
        err = None

        def do(path, data, flags):
            fd = os.open(path, flags, 0o644)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        try:
            for j in range(n):
                notes["sa"] = j
                do(f"{mnt}/kv/c{w}a", b"%d:%d:" % (w, j) + pad, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                notes["sk"] = j
                os.write(tell, b"s")
                notes["aa"] = j
                do(f"{mnt}/kv/c{w}l", b"%d\n" % j, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                notes["ak"] = j
                os.write(tell, b"a")
                notes["pa"] = j
                do(f"{mnt}/lists/c{w}q", b"%d\n" % j, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
                notes["pk"] = j
                os.write(tell, b"p")
        except OSError as e:
            err = e.errno
        finally:
            os.close(tell)
        return notes, err

    def s_churn(self, d, name, values, modes):
        final = None
        for v, m in zip(values, modes):
            tmp = os.path.join(d, name + ".tmp")
            if m == "unlink":
                try:
                    os.unlink(os.path.join(d, name))
                except FileNotFoundError:
                    pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.write(fd, v)
            os.close(fd)
            os.rename(tmp, os.path.join(d, name))
            final = v
        return final


def worker_main():
    inp = os.fdopen(0, "rb", buffering=1 << 16)
    out = os.fdopen(1, "wb", buffering=1 << 16)
    w = Worker()
    while True:
        try:
            cmd, a = pickle.load(inp)
        except EOFError:
            return
        try:
            res = ("ok", w.do(cmd, a))
        except OSError as e:
            res = ("err", e.errno)
        except Exception as e:  # a bug in the exerciser itself
            res = ("exc", repr(e))
        pickle.dump(res, out)
        out.flush()


class WorkerProc:
    def __init__(self, idx):
        self.idx = idx
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def send(self, cmd, *a):
        pickle.dump((cmd, a), self.p.stdin)
        self.p.stdin.flush()

    def recv(self, timeout=120):
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        if not r:
            raise Failure("hang", f"worker {self.idx}: no answer in {timeout}s (mount hung?)")
        try:
            res = pickle.load(self.p.stdout)
        except EOFError:
            raise Failure("worker", f"worker {self.idx} died")
        if res[0] == "exc":
            raise RuntimeError(f"worker {self.idx}: {res[1]}")
        return res

    def call(self, cmd, *a):
        self.send(cmd, *a)
        return self.recv()

    def stop(self):
        try:
            self.p.stdin.close()
        except OSError:
            pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


# ======================================================================= mount

def wait_pid_exit(pid, timeout=60):
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
    def __init__(self, binary, fsync):
        self.bin = binary
        self.base = tempfile.mkdtemp(prefix="mfx-")
        self.mnt = os.path.join(self.base, "mnt")
        self.data = os.path.join(self.base, "data")
        os.mkdir(self.mnt)
        self.fsync = fsync
        self.pid = None

    def log(self):
        try:
            with open(os.path.join(self.data, "memflux.log"), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def start(self):
        p = subprocess.run([self.bin, f"--data-dir={self.data}", f"--fsync={self.fsync}",
                            self.mnt], capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise Failure("mount", f"mount failed: {p.stderr.strip()}")
        with open(os.path.join(self.data, "memflux.lock")) as f:
            self.pid = int(f.read().strip())

    def stop(self):
        if self.pid is None:
            return
        r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True, text=True)
        if r.returncode != 0:
            raise Failure("unmount", f"unmount failed: {r.stderr.strip()}")
        if not wait_pid_exit(self.pid):
            raise Failure("unmount", "daemon did not exit after unmount")
        self.pid = None

    def kill9(self):
        if self.pid is None:
            return
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_pid_exit(self.pid)
        self.pid = None
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)

    def sanitizer_report(self):
        log = self.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                i = log.index(marker)
                return log[max(0, i - 200):i + 3000]
        return None

    def cleanup(self):
        if self.pid is not None:
            r = subprocess.run(["fusermount3", "-u", self.mnt], capture_output=True)
            if r.returncode == 0:
                wait_pid_exit(self.pid)
                self.pid = None
            else:
                self.kill9()
        subprocess.run(["fusermount3", "-u", "-z", self.mnt], capture_output=True)
        shutil.rmtree(self.base, ignore_errors=True)


# ======================================================================= model

class Failure(Exception):
    def __init__(self, kind, msg):
        super().__init__(f"[{kind}] {msg}")
        self.kind = kind
        self.msg = msg


class Inode:
    n = 0

    def __init__(self, typ, value=b"", pending=True):
        Inode.n += 1
        self.id = Inode.n
        self.typ = typ
        self.value = value          # committed bytes (kv, json text, list text)
        self.jval = None            # json: semantic value when text is unknown
        self.pending = pending      # created, not yet committed (not durable)
        self.name = None
        self.history = [value]      # recent committed versions (diagnostics)

    def commit(self, v):
        self.value = v
        self.jval = None
        self.pending = False
        self.history.append(v)
        del self.history[:-8]


class Handle:
    """A handle's view (README "What a reader sees"), as the model tracks it:

    view      the committed version it pinned (at open; re-pinned by a read
              at offset 0, by a read at/after its end when the latest
              version extends it, by its first write, by its own commit)
    has_read  a list handle re-pins at offset 0 only once it has read
    mode      None: it reads its view; "full": buf is its whole private
              value; "append": buf holds the bytes it appended (O_APPEND)
    dirty     it has something to commit (writes, O_TRUNC, or its create)
    """

    def __init__(self, hid, w, ino, flags):
        self.hid, self.w, self.ino, self.flags = hid, w, ino, flags
        acc = flags & os.O_ACCMODE
        self.readable = acc != os.O_WRONLY
        self.writable = acc != os.O_RDONLY
        self.append = bool(flags & os.O_APPEND)   # the open flag
        self.mode = None
        self.dirty = False
        self.wrote = False
        self.trunc = False
        self.buf = b""
        self.append_size = 0    # append mode: committed size + own bytes at its last write
        self.view = ino.value
        self.has_read = False
        self.pos = 0
        self.created = False
        self.writes_since_open = 0

    def reset(self, view):
        """Clean again after a commit (or a refusal): its view is `view`."""
        self.view = view
        self.mode = None
        self.dirty = self.wrote = self.trunc = False
        self.buf = b""

    def own_size(self):
        """The size this handle's writes would make (full or append mode)."""
        if self.mode == "full":
            return len(self.buf)
        if self.mode == "append":
            return self.append_size
        return None


def list_bytes(elems):
    return b"".join(e + b"\n" for e in elems)


def list_elems(b):
    assert b == b"" or b.endswith(b"\n")
    return b.split(b"\n")[:-1]


def valid_json(b):
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    try:
        json.loads(s, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except (ValueError, RecursionError):
        return False
    return True


def jeq(text, value):
    try:
        return json.loads(text) == value
    except (ValueError, RecursionError):
        return False


# ========================================================== data generation

class Tags:
    """Unique, NUL-free byte patterns: every value written is recognisable."""

    def __init__(self, seed):
        self.n = 0
        self.seed = seed

    def pattern(self, n, kind="v", unique=False):
        self.n += 1
        unit = b"%s%x." % (kind.encode(), self.n)
        if unique:
            n = max(n, len(unit))
        return (unit * (n // len(unit) + 1))[:n]

    def line(self, extra):
        self.n += 1
        return b"e%x-%s" % (self.n, b"p" * extra)

    def doc(self, rng):
        self.n += 1
        d = {"t": "d%x" % self.n, "a": rng.randrange(1000),
             "b": "s" * rng.choice([1, 5, 40, 300, 5000])}
        if rng.random() < 0.3:
            d["arr"] = [rng.randrange(10) for _ in range(rng.randrange(6))]
        text = json.dumps(d, indent=rng.choice([None, 1])).encode()
        if rng.random() < 0.3:
            text += b"\n"
        return text

    def bad_doc(self, rng):
        good = self.doc(rng).rstrip(b"\n")
        return rng.choice([good[:-1], good[:-1] + b",}", good.replace(b'"t"', b"'t'", 1),
                           good + b" x", b"", b"[01]", b'{"a": tru}', b"{} {}"])


def choose_size(rng):
    r = rng.random()
    if r < 0.45:
        return rng.randrange(1, 40)
    if r < 0.75:
        return rng.randrange(40, 5000)
    if r < 0.92:
        return rng.choice([PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 3 * PAGE + 7])
    return rng.randrange(5000, 70000)


# ===================================================================== driver

SEQ_OPS = [  # (kind, weight)
    ("open", 14), ("write", 12), ("pwrite", 8), ("ftruncate", 3), ("read", 10),
    ("fstat", 3), ("fsync", 2), ("flushdup", 2), ("close", 12), ("put", 6),
    ("readfile", 10), ("stat", 5), ("listdir", 4), ("unlink", 4), ("rename", 4),
    ("truncate", 3), ("touch", 1), ("pop", 5), ("push", 5), ("jget", 3), ("jset", 4),
    ("snapshot", 1),
]
READ_ONLY_KINDS = {"exists", "fresh-read", "read", "size", "readdir", "burst-read", "burst-size",
                   "list-read", "unlinked-open", "jget"}
BURSTS = ["b_overwrite", "b_create_race", "b_append_race", "b_pop_race", "b_unlink_race", "b_view"]


class Run:
    """One mount, its workers and the model; executes ops and checks them."""

    def __init__(self, args, nworkers):
        self.args = args
        self.mount = Mount(args.bin, args.fsync)
        self.workers = []
        self.names = {t: {} for t in TYPES}   # name -> Inode
        self.handles = {}                     # hid -> Handle
        self.tolerated = {}
        self.ops_done = 0
        self.mount.start()
        self.workers = [WorkerProc(i) for i in range(nworkers)]
        self.stopfile = os.path.join(self.mount.base, "stop")

    def close(self, hung=False):
        if hung:   # kill the daemon first so no worker stays blocked in it
            self.mount.kill9()
        for w in self.workers:
            w.stop()
        self.mount.cleanup()

    # -- helpers
    def path(self, typ, name):
        return os.path.join(self.mount.mnt, typ, name)

    def call(self, w, cmd, *a):
        return self.workers[w].call(cmd, *a)

    def fail(self, kind, msg):
        """Raise, unless this kind of (read-only) check is tolerated: then
        note it once and go on (the model does not depend on what was read)."""
        if kind in self.args.tolerate and kind in READ_ONLY_KINDS:
            if kind not in self.tolerated:
                self.tolerated[kind] = (self.ops_done, msg)
            return
        raise Failure(kind, msg)

    def expect_ok(self, res, what, kind="errno"):
        if res[0] != "ok":
            self.fail(kind, f"{what}: got {errno.errorcode.get(res[1], res[1])}, expected success")
        return res[1]

    def expect_err(self, res, code, what, kind="errno"):
        if res[0] == "ok":
            return self.fail(kind, f"{what}: succeeded, expected {errno.errorcode[code]}")
        if res[1] != code:
            self.fail(kind, f"{what}: got {errno.errorcode.get(res[1], res[1])}, "
                               f"expected {errno.errorcode[code]}")

    def lookup(self, typ, name):
        return self.names[typ].get(name)

    def dirty_others(self, ino, h=None):
        return [o for o in self.handles.values() if o.ino is ino and o.dirty and o is not h]

    def detach(self, ino):
        if ino.name is not None:
            typ, name = ino.name
            if self.names[typ].get(name) is ino:
                del self.names[typ][name]
            ino.name = None

    def attach(self, ino, name):
        self.names[ino.typ][name] = ino
        ino.name = (ino.typ, name)

    def committed_view(self, ino):
        return ino.value

    # -- commit of a handle (close / fsync / flushdup).  Returns expected errno.
    def commit_handle(self, h):
        ino = h.ino
        if not h.dirty:
            return 0
        if ino.typ == "json" and h.mode == "full" and not valid_json(h.buf):
            h.reset(h.view)     # refused: the old document (or absence) stays
            return errno.EINVAL
        if ino.pending and not h.wrote and ino.typ != "json":
            # nothing written yet on a created key: the commit logs its
            # CREATE (the key now exists, empty); an O_TRUNC handle has
            # committed its empty value
            ino.pending = False
            h.reset(b"" if h.trunc else h.view)
            return 0
        if not h.wrote and not h.trunc:
            # dirty only from its open(O_CREAT); another handle committed
            # the key meanwhile: nothing of its own to commit
            h.reset(h.view)
            return 0
        if h.mode == "full":
            if not h.wrote and h.trunc and ino.value == b"":
                h.reset(b"")   # `> k` on an empty key: nothing changes
                return 0
            ino.commit(h.buf)
            h.reset(h.buf)
            return 0
        assert h.mode == "append", h.mode
        b = h.buf
        if ino.typ == "lists" and b and not b.endswith(b"\n"):
            b += b"\n"
        ino.commit(ino.value + b)
        h.reset(ino.value)   # an append sees the value it landed on
        return 0

    def make_full(self, h):
        """A first write (not O_APPEND, not O_TRUNC) lands on the LATEST
        committed value: a private copy of it."""
        if h.mode is None:
            h.view = h.ino.value
            h.buf = h.ino.value
            h.mode = "full"
        assert h.mode == "full", h.mode

    # ------------------------------------------------------------ op execution
    def execute(self, op):
        fn = getattr(self, "op_" + op["k"])
        if "h" in op and op["k"] != "open":
            h = self.handles.get(op["h"])
            if h is None:
                return "skip"
            return fn(op, h)
        return fn(op)

    def op_open(self, op):
        typ, name, flags, w, hid = op["t"], op["n"], op["f"], op["w"], op["h"]
        if hid in self.handles:
            return "skip"
        what = f"open({typ}/{name}, {flagstr(flags)})"
        ino = self.lookup(typ, name)
        other = self.other_type(typ, name)
        res = self.call(w, "open", hid, self.path(typ, name), flags)
        if ino is None and other is not None and flags & os.O_CREAT:
            return self.expect_err(res, errno.EEXIST, what)
        if ino is None and not flags & os.O_CREAT:
            return self.expect_err(res, errno.ENOENT, what)
        if ino is not None and flags & os.O_CREAT and flags & os.O_EXCL:
            return self.expect_err(res, errno.EEXIST, what)
        self.expect_ok(res, what)
        created = False
        if ino is None:
            ino = Inode(typ)
            self.attach(ino, name)
            created = True
        h = Handle(hid, w, ino, flags)
        h.created = created
        if created:
            h.dirty = True   # its close logs the CREATE (or its value)
        if flags & os.O_TRUNC and h.writable and \
                not (created and flags & os.O_APPEND and typ != "json"):
            h.dirty = h.trunc = True   # a private empty value from the start
            h.mode = "full"
            h.buf = b""
        self.handles[hid] = h

    def other_type(self, typ, name):
        for t in TYPES:
            if t != typ and name in self.names[t]:
                return self.names[t][name]
        return None

    def op_write(self, op, h):
        data = op["d"]
        res = self.call(h.w, "write", h.hid, data)
        what = f"h{h.hid}.write({short(data)})"
        ino = h.ino
        if h.mode != "full" and ino.typ == "lists" and not h.append:
            # a list takes appends only: a write not at its end is ESPIPE
            end = len(ino.value) + (len(h.buf) if h.mode == "append" else 0)
            if h.pos != end:
                return self.expect_err(res, errno.ESPIPE, what + f" at {h.pos}, list end {end}")
            self.expect_ok(res, what)
            h.mode = "append"
            h.buf += data
            h.append_size = len(ino.value) + len(h.buf)
            h.pos += len(data)
            h.dirty = h.wrote = True
            return
        self.expect_ok(res, what)
        if res[1] != len(data):
            self.fail("short", f"{what}: wrote {res[1]} of {len(data)}")
        if h.mode is None and h.append and ino.typ != "json":
            h.mode = "append"
            h.buf = b""
        if h.mode == "append":
            h.buf += data
            h.append_size = len(ino.value) + len(h.buf)
        else:
            self.make_full(h)
            pos = len(h.buf) if h.append else h.pos
            b = h.buf
            if pos > len(b):
                b += b"\0" * (pos - len(b))
            h.buf = b[:pos] + data + b[pos + len(data):]
            h.pos = pos + len(data)
        h.dirty = h.wrote = True

    def op_pwrite(self, op, h):
        data, off = op["d"], op["o"]
        res = self.call(h.w, "pwrite", h.hid, data, off)
        self.expect_ok(res, f"h{h.hid}.pwrite({short(data)}, off={off})")
        self.make_full(h)
        b = h.buf
        if off > len(b):
            b += b"\0" * (off - len(b))
        h.buf = b[:off] + data + b[off + len(data):]
        h.dirty = h.wrote = True

    def op_ftruncate(self, op, h):
        size = op["s"]
        res = self.call(h.w, "ftruncate", h.hid, size)
        self.expect_ok(res, f"h{h.hid}.ftruncate({size})")
        self.make_full(h)
        h.buf = h.buf[:size] + b"\0" * max(0, size - len(h.buf))
        h.dirty = h.wrote = True

    def handle_read(self, h, off, size):
        """What a read of `size` bytes at `off` must return (README "What a
        reader sees"), updating the handle's pinned view.  Returns (expected
        bytes, the rule that applied)."""
        ino = h.ino
        if h.mode == "full":
            return h.buf[off:off + size], "its own private value"
        if h.mode == "append":
            h.has_read = True
            tail = h.buf if ino.typ != "lists" else b""
            return (h.view + tail)[off:off + size], "its pinned version + its own appended bytes"
        latest = ino.value
        rule = "its pinned version"
        if off == 0 and (h.has_read or ino.typ != "lists"):
            h.view = latest
            rule = "the latest version (a read at offset 0)"
        elif off >= len(h.view) and ino.typ != "lists" and len(latest) > len(h.view) \
                and latest.startswith(h.view):
            h.view = latest
            rule = "the latest version (it extends the pinned one read at its end)"
        h.has_read = True
        return h.view[off:off + size], rule

    def check_handle_read(self, h, got, off, size, what):
        ino = h.ino
        old_view = h.view
        exp, rule = self.handle_read(h, off, size)
        if got == exp:
            return
        note = ""
        cands = [("the pinned version", old_view), ("the latest version", ino.value)]
        if h.mode == "full":
            cands.append(("its private value", h.buf))
        for name, v in cands:
            if v[off:off + size] == got and v[off:off + size] != exp:
                note = f" (got {name} {short(v, 16)}, {len(v)} B)"
                break
        if not note and b"\0" in got and b"\0" not in exp:
            note = " (NUL bytes nobody wrote)"
        self.fail("read", f"{what}: read {short(got)}, expected {rule} {short(exp)}{note}"
                          + (" (inode unlinked/renamed over)" if ino.name is None else ""))

    def op_read(self, op, h):
        if not h.readable:
            return "skip"
        if op.get("o") is None:
            res = self.call(h.w, "readall", h.hid)
            got = self.expect_ok(res, f"h{h.hid}.readall")
            self.check_handle_read(h, got, 0, 1 << 40, f"h{h.hid}.readall")
        else:
            off, size = op["o"], op["s"]
            res = self.call(h.w, "pread", h.hid, size, off)
            got = self.expect_ok(res, f"h{h.hid}.pread({size}, {off})")
            self.check_handle_read(h, got, off, size, f"h{h.hid}.pread({size}, off={off})")

    def allowed_sizes(self, ino, h=None):
        s = {len(self.committed_view(ino))}
        for o in self.handles.values():
            if o.ino is ino and o.dirty and o.mode is not None:
                s.add(o.own_size())
        return s

    def op_fstat(self, op, h):
        res = self.call(h.w, "fstat", h.hid)
        got = self.expect_ok(res, f"h{h.hid}.fstat")
        ok = self.allowed_sizes(h.ino)
        if got not in ok:
            self.fail("size", f"h{h.hid}.fstat: size {got}, expected one of {sorted(ok)}")

    def op_fsync(self, op, h):
        self.sync_like(op, h, "fsync")

    def op_flushdup(self, op, h):
        self.sync_like(op, h, "flushdup")

    def sync_like(self, op, h, cmd):
        res = self.call(h.w, cmd, h.hid)
        what = f"h{h.hid}.{cmd}"
        e = self.commit_handle(h)
        if e:
            self.expect_err(res, e, what)
        else:
            self.expect_ok(res, what)

    def op_close(self, op, h):
        res = self.call(h.w, "close", h.hid)
        what = f"h{h.hid}.close ({h.ino.typ}/{h.ino.name[1] if h.ino.name else '<orphan>'})"
        del self.handles[h.hid]
        was_pending = h.ino.pending
        e = self.commit_handle(h)
        if e:
            self.expect_err(res, e, what)
            if was_pending and h.ino.pending and h.ino.typ == "json" and \
                    not any(o.ino is h.ino for o in self.handles.values()):
                self.detach(h.ino)   # a refused first document leaves no key
        else:
            self.expect_ok(res, what)

    def op_put(self, op):
        typ, name, flags, chunks, w = op["t"], op["n"], op["f"], op["c"], op["w"]
        data = b"".join(chunks)
        what = f"put({typ}/{name}, {flagstr(flags)}, {short(data)})"
        ino = self.lookup(typ, name)
        res = self.call(w, "put", self.path(typ, name), flags, chunks)
        if ino is None and self.other_type(typ, name):
            return self.expect_err(res, errno.EEXIST, what)
        if typ == "json" and not valid_json(data):
            self.expect_err(res, errno.EINVAL, what)
            return
        self.expect_ok(res, what)
        if ino is None:
            ino = Inode(typ)
            self.attach(ino, name)
        if flags & os.O_APPEND:
            if typ == "lists" and data and not data.endswith(b"\n"):
                data += b"\n"
            ino.commit(ino.value + data)
        else:
            ino.commit(data)

    def op_push(self, op):
        op = dict(op, t="lists", f=os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return self.op_put(op)

    def check_fresh(self, typ, name, got, what):
        ino = self.lookup(typ, name)
        exp = self.committed_view(ino)
        if typ == "json" and ino.jval is not None:
            try:
                if json.loads(got) == ino.jval:
                    return
            except ValueError:
                pass
            self.fail("read", f"{what}: {short(got)} is not the document {short(json.dumps(ino.jval).encode())}")
        if got != exp:
            dirty = self.dirty_others(ino)
            note = ""
            if got == b"" and any(o.mode == "full" and o.buf == b"" for o in dirty):
                note = " (the empty view of another handle's uncommitted O_TRUNC)"
            elif any(got == o.buf[:len(got)] for o in dirty if o.mode == "full") or \
                    any(got.endswith(o.buf) for o in dirty if o.mode == "append" and o.buf):
                note = " (another handle's UNCOMMITTED bytes)"
            else:
                known = list(ino.history) + [o.buf for o in dirty if o.mode == "full"]
                note = " (" + self.classify(got, known) + ")"
            self.fail("fresh-read", f"{what}: new open read {short(got, 40)}, expected committed "
                                    f"{short(exp, 40)}{note}")

    def op_readfile(self, op):
        typ, name, w = op["t"], op["n"], op["w"]
        what = f"readfile({typ}/{name})"
        res = self.call(w, "readfile", self.path(typ, name))
        if self.lookup(typ, name) is None:
            return self.expect_err(res, errno.ENOENT, what, "exists")
        got = self.expect_ok(res, what, "exists")
        if res[0] != "ok":
            return
        self.check_fresh(typ, name, got, what)

    def op_stat(self, op):
        typ, name, w = op["t"], op["n"], op["w"]
        what = f"stat({typ}/{name})"
        res = self.call(w, "stat", self.path(typ, name))
        ino = self.lookup(typ, name)
        if ino is None:
            return self.expect_err(res, errno.ENOENT, what, "exists")
        got = self.expect_ok(res, what, "exists")
        if res[0] != "ok" or ino.typ == "json" and ino.jval is not None:
            return
        ok = self.allowed_sizes(ino)
        if got not in ok:
            self.fail("size", f"{what}: size {got}, expected committed {len(ino.value)}"
                              + (f" (or a writer's {sorted(ok)})" if len(ok) > 1 else ""))

    def op_listdir(self, op):
        typ, w = op["t"], op["w"]
        res = self.call(w, "listdir", os.path.join(self.mount.mnt, typ))
        got = self.expect_ok(res, f"listdir({typ})")
        exp = sorted(n.encode() for n in self.names[typ])
        if got != exp:
            self.fail("readdir", f"listdir({typ}): {got}, expected {exp}")

    def op_unlink(self, op):
        typ, name, w = op["t"], op["n"], op["w"]
        res = self.call(w, "unlink", self.path(typ, name))
        ino = self.lookup(typ, name)
        what = f"unlink({typ}/{name})"
        if ino is None:
            return self.expect_err(res, errno.ENOENT, what)
        self.expect_ok(res, what)
        self.detach(ino)

    def op_rename(self, op):
        typ, a, b, w = op["t"], op["n"], op["n2"], op["w"]
        res = self.call(w, "rename", self.path(typ, a), self.path(typ, b))
        what = f"rename({typ}/{a} -> {typ}/{b})"
        src = self.lookup(typ, a)
        if src is None:
            return self.expect_err(res, errno.ENOENT, what)
        self.expect_ok(res, what)
        if a == b:
            return
        dst = self.lookup(typ, b)
        if dst is not None:
            self.detach(dst)
        self.detach(src)
        self.attach(src, b)

    def op_truncate(self, op):
        typ, name, size, w = op["t"], op["n"], op["s"], op["w"]
        res = self.call(w, "truncate", self.path(typ, name), size)
        ino = self.lookup(typ, name)
        what = f"truncate({typ}/{name}, {size})"
        if ino is None:
            return self.expect_err(res, errno.ENOENT, what)
        if typ == "json":
            # its own size (a created, still empty document: 0) is a no-op
            if size == len(ino.value) and ino.jval is None:
                return self.expect_ok(res, what + " (to its current size: a no-op)")
            return self.expect_err(res, errno.EINVAL, what)
        if typ == "lists" and size != 0:
            return self.expect_err(res, errno.EINVAL, what)
        self.expect_ok(res, what)
        v = ino.value
        ino.commit(v[:size] + b"\0" * max(0, size - len(v)))

    def op_touch(self, op):
        typ, name, w = op["t"], op["n"], op["w"]
        res = self.call(w, "touch", self.path(typ, name))
        ino = self.lookup(typ, name)
        what = f"touch({typ}/{name})"
        if ino is None:
            return self.expect_err(res, errno.ENOENT, what)
        self.expect_ok(res, what)
        if ino.typ != "json":
            ino.pending = False

    def op_pop(self, op):
        name, w = op["n"], op["w"]
        res = self.call(w, "readfile", os.path.join(self.mount.mnt, ".ctl/pop", name))
        what = f"pop(lists/{name})"
        ino = self.lookup("lists", name)
        if ino is None:
            return self.expect_err(res, errno.ENOENT, what)
        elems = list_elems(ino.value)
        if not elems:
            if ino.pending and res[0] == "err" and res[1] == errno.ENOENT:
                return   # created, not yet committed: either answer is fine
            return self.expect_err(res, errno.ENODATA, what)
        got = self.expect_ok(res, what)
        if got != elems[0] + b"\n":
            self.fail("pop", f"{what}: got {short(got)}, expected the head {short(elems[0])}")
        ino.commit(list_bytes(elems[1:]))

    def jdoc(self, ino):
        if ino.jval is not None:
            return ino.jval
        return json.loads(ino.value)

    def long_path(self, res, what):
        """A /.ctl/json path name longer than NAME_MAX: refused, nothing
        changes, and the mount lives on (issue 9 item 4 crashed it)."""
        if res[0] == "ok" or res[1] not in (errno.ENAMETOOLONG, errno.ENOENT, errno.EINVAL):
            self.fail("errno", f"{what}: {('errno ' + errno.errorcode.get(res[1], str(res[1]))) if res[0] != 'ok' else 'succeeded'}"
                               ", expected ENAMETOOLONG (or ENOENT)")
        alive = self.call(0, "stat", os.path.join(self.mount.mnt, "kv"))
        if alive[0] != "ok":
            self.fail("crash", f"{what}: the mount is gone afterwards "
                               f"({errno.errorcode.get(alive[1], alive[1])})")

    def op_jget(self, op):
        name, member, w = op["n"], op["m"], op["w"]
        p = os.path.join(self.mount.mnt, ".ctl/json", name, "$." + member)
        res = self.call(w, "readfile", p)
        what = f"jget(json/{name}, $.{short(member.encode(), 8)})"
        if len(member) > 250:
            return self.long_path(res, what)
        ino = self.lookup("json", name)
        if ino is None or ino.pending:
            return self.expect_err(res, errno.ENOENT, what)
        doc = self.jdoc(ino)
        if not isinstance(doc, dict) or member not in doc:
            return self.expect_err(res, errno.ENOENT, what)
        got = self.expect_ok(res, what)
        try:
            ok = got.endswith(b"\n") and json.loads(got) == doc[member]
        except ValueError:
            ok = False
        if not ok:
            self.fail("jget", f"{what}: {short(got)}, expected {short(json.dumps(doc[member]).encode())}")

    def op_jset(self, op):
        name, member, val, w = op["n"], op["m"], op["v"], op["w"]
        p = os.path.join(self.mount.mnt, ".ctl/json", name, "$." + member)
        res = self.call(w, "put", p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, [val])
        what = f"jset(json/{name}, $.{short(member.encode(), 8)}, {short(val)})"
        if len(member) > 250:
            return self.long_path(res, what)
        ino = self.lookup("json", name)
        if ino is None or ino.pending:
            return self.expect_err(res, errno.ENOENT, what)
        if not valid_json(val):
            return self.expect_err(res, errno.EINVAL, what)
        doc = self.jdoc(ino)
        self.expect_ok(res, what)
        doc = dict(doc)
        doc[member] = json.loads(val)
        # The text after a path write is the mount's to choose: learn it
        # from a fresh read (checked by meaning), so that handle views of
        # the document stay exact.
        what2 = f"readfile(json/{name}) after {what}"
        got = self.expect_ok(self.call(w, "readfile", self.path("json", name)), what2)
        if not jeq(got, doc):
            self.fail("fresh-read", f"{what2}: {short(got, 40)} is not the document "
                                    f"{short(json.dumps(doc).encode(), 40)}")
        ino.commit(got)

    def op_snapshot(self, op):
        res = self.call(op["w"], "put", os.path.join(self.mount.mnt, ".ctl/snapshot"),
                        os.O_WRONLY, [b"1\n"])
        self.expect_ok(res, "snapshot")

    # ---- whole-state verification (after restarts and at the end)
    def verify_all(self, what, crash=False):
        w = 0
        for typ in TYPES:
            res = self.call(w, "listdir", os.path.join(self.mount.mnt, typ))
            got = self.expect_ok(res, f"{what}: listdir({typ})")
            names = {n.decode() for n in got}
            for name, ino in list(self.names[typ].items()):
                if name not in names:
                    if crash and ino.pending:
                        self.detach(ino)   # created, never closed: may be gone
                        continue
                    res = self.call(w, "stat", self.path(typ, name))
                    self.fail("lost" if res[0] != "ok" else "readdir",
                              f"{what}: {typ}/{name} is not listed"
                              + (" (but stat finds it)" if res[0] == "ok" else "")
                              + f" (expected {short(self.committed_view(ino))})")
            extra = names - set(self.names[typ])
            if extra:
                self.fail("readdir", f"{what}: {typ} lists unexpected keys {sorted(extra)}")
            for name, ino in self.names[typ].items():
                res = self.call(w, "readfile", self.path(typ, name))
                if res[0] != "ok":
                    self.fail("lost", f"{what}: readfile({typ}/{name}) failed: "
                                      f"{errno.errorcode.get(res[1], res[1])}")
                    continue

                def same(data):
                    if ino.typ == "json" and ino.jval is not None:
                        return jeq(data, ino.jval)
                    return data == ino.value
                got = res[1]
                if not same(got):
                    busy = any(h.ino is ino for h in self.handles.values())
                    st = self.call(w, "stat", self.path(typ, name))
                    again = self.call(w, "readfile", self.path(typ, name))
                    stale = again[0] == "ok" and same(again[1])
                    note = (f" (a stale view: stat then said {st[1]} B and the next open "
                            "read the right value)") if stale else ""
                    exp = short(json.dumps(ino.jval).encode(), 40) if ino.jval is not None \
                        else short(ino.value, 40)
                    self.fail("fresh-read" if busy or stale else "lost",
                              f"{what}: {typ}/{name} = {short(got, 40)}, expected {exp}{note}")
                if crash:
                    ino.pending = False

    def close_all_handles(self):
        for hid in sorted(self.handles):
            self.op_close({"k": "close", "h": hid}, self.handles[hid])

    def op_restart(self, op):
        self.close_all_handles()
        self.mount.stop()
        rep = self.mount.sanitizer_report()
        if rep:
            self.fail("sanitizer", rep)
        self.mount.start()
        for ino in [i for t in TYPES for i in self.names[t].values()]:
            ino.pending = False if ino.typ != "json" else ino.pending
        self.verify_all("after clean restart")

    def op_crash(self, op):
        self.mount.kill9()
        for wk in self.workers:
            wk.call("dropall")
        self.handles.clear()
        self.mount.start()
        self.verify_all("after kill -9 + remount", crash=True)

    # ------------------------------------------------------------------ bursts
    def op_b_crash(self, op):
        """kill -9 while every process writes (close-acknowledged) values,
        appends and pushes; after the remount every acknowledged close is
        there, nothing half-written or never written is, and the rest of
        the model survived too."""
        k, n, pad = op["after"], op["n"], op["pad"]
        fifo = os.path.join(self.mount.base, "progress")
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo)
        rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        ws = list(range(len(self.workers)))
        try:
            before = {}
            for w in ws:
                for typ, key in (("kv", f"c{w}a"), ("kv", f"c{w}l"), ("lists", f"c{w}q")):
                    ino = self.lookup(typ, key)
                    before[(typ, key)] = ino.value if ino is not None else None
                self.workers[w].send("script", "crashwriter", self.mount.mnt, w, n, fifo, pad)
            got = 0
            deadline = time.monotonic() + 60
            while got < k and time.monotonic() < deadline:
                r, _, _ = select.select([rfd], [], [], 5)
                if r:
                    b = os.read(rfd, k - got)
                    if not b:
                        break   # every writer finished (n too small)
                    got += len(b)
            self.mount.kill9()
            notes = {}
            for w in ws:
                notes[w] = self.expect_ok(self.workers[w].recv(), f"crash writer w{w}")[0]
        finally:
            os.close(rfd)
        for wk in self.workers:
            wk.call("dropall")
        self.handles.clear()
        self.mount.start()
        for w in ws:
            nt = notes[w]
            # the overwritten key: the last acknowledged value or a later attempt
            typ, key = "kv", f"c{w}a"
            res = self.call(0, "readfile", self.path(typ, key))
            if res[0] != "ok":
                if nt["sk"] >= 0 or before[(typ, key)] is not None:
                    self.fail("lost", f"after kill -9: kv/{key} is gone; close of value {nt['sk']} "
                                      "had returned")
            else:
                v = res[1]
                ww, _, rest = v.partition(b":")
                j, _, p = rest.partition(b":")
                ok = ww == b"%d" % w and j.isdigit() and p == pad and \
                    max(nt["sk"], 0) <= int(j) <= nt["sa"]
                if not ok and not (nt["sk"] < 0 and v == before[(typ, key)]):
                    self.fail("lost", f"after kill -9: kv/{key} = {short(v)}; acknowledged "
                                      f"{nt['sk']}, attempted up to {nt['sa']}")
                self.set_model(typ, key, v)
            for typ, key, a, kk in (("kv", f"c{w}l", "aa", "ak"), ("lists", f"c{w}q", "pa", "pk")):
                res = self.call(0, "readfile", self.path(typ, key))
                base = before[(typ, key)] or b""
                if res[0] != "ok":
                    if nt[kk] >= 0 or before[(typ, key)] is not None:
                        self.fail("lost", f"after kill -9: {typ}/{key} is gone; {nt[kk] + 1} "
                                          "appends had returned")
                    continue
                v = res[1]
                if not v.startswith(base):
                    self.fail("lost", f"after kill -9: {typ}/{key} lost what it had before")
                lines = v[len(base):].split(b"\n")
                if lines[-1] != b"":
                    self.fail("lost", f"after kill -9: {typ}/{key} ends in a cut line {short(lines[-1])}")
                got_js = lines[:-1]
                exp = [b"%d" % j for j in range(len(got_js))]
                if got_js != exp:
                    self.fail("lost", f"after kill -9: {typ}/{key} appends are not 0..{len(got_js) - 1} "
                                      f"in order: {short(v[len(base):], 40)}")
                if not (nt[kk] + 1 <= len(got_js) <= nt[a] + 1):
                    self.fail("lost", f"after kill -9: {typ}/{key} has {len(got_js)} appends; "
                                      f"{nt[kk] + 1} acknowledged, {nt[a] + 1} attempted")
                self.set_model(typ, key, v)
        self.verify_all("after kill -9 during writes + remount", crash=True)

    def set_model(self, typ, key, v):
        ino = self.lookup(typ, key)
        if ino is None:
            ino = Inode(typ)
            self.attach(ino, key)
        ino.commit(v)

    def pick_free(self, typ, rng_name):
        return rng_name

    def burst_prep(self, typ, name):
        """Bursts use keys no handle has open; drop handles on it first."""
        ino = self.lookup(typ, name)
        for h in [h for h in self.handles.values() if h.ino is ino and ino is not None]:
            self.op_close({"k": "close", "h": h.hid}, h)
        try:
            os.unlink(self.stopfile)
        except FileNotFoundError:
            pass

    def gather(self, ws):
        out = []
        for w in ws:
            out.append(self.workers[w].recv())
        return out

    def op_b_overwrite(self, op):
        """One process overwrites a key again and again (bash style or not);
        others read it with fresh opens: each read is exactly one committed
        version (empty only when bash style commits it), versions never go
        backwards in one reader, no NULs, no mixes."""
        name, values, dup = op["n"], op["vals"], op["dup"]
        self.burst_prep("kv", name)
        p = self.path("kv", name)
        base = op["base"]
        self.expect_ok(self.call(0, "put", p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, [base]), "burst setup")
        ino = self.lookup("kv", name)
        if ino is None:
            ino = Inode("kv")
            self.attach(ino, name)
        ino.commit(base)
        ws = list(range(len(self.workers)))
        readers = ws[1:]
        for r in readers:
            self.workers[r].send("script", "freshreader", p, self.stopfile, 100000, op["chunk"])
        self.workers[0].send("script", "overwrite", p, values, dup)
        wres = self.workers[0].recv()
        open(self.stopfile, "w").close()
        rres = self.gather(readers)
        self.expect_ok(wres, "overwriter")
        ino.commit(values[-1])
        versions = {base: 0}
        for i, v in enumerate(values):
            versions[v] = i + 1
        for r, res in zip(readers, rres):
            table, seq, sizes = self.expect_ok(res, f"reader w{r}")
            last = 0
            for idx in seq:
                if idx < 0:
                    self.fail("burst-read", f"reader w{r}: fresh open/read failed "
                                            f"{errno.errorcode.get(-idx)}")
                    break
                data = table[idx]
                if data == b"" and dup:
                    continue
                vi = versions.get(data)
                if vi is None:
                    self.fail("burst-read", f"reader w{r} read {short(data, 40)}: not one committed "
                                            f"version ({self.classify(data, list(versions))})")
                    break
                if vi < last:
                    self.fail("burst-read", f"reader w{r}: version {vi} read after version {last} "
                                            "(went back in time)")
                    break
                last = vi
            # a writer's size while it writes (0 after its O_TRUNC) is allowed,
            # as in the sequential model (allowed_sizes)
            ok = {len(v) for v in versions} | {0}
            bad = [s for s in sizes if s not in ok]
            if bad:
                self.fail("burst-size", f"reader w{r}: stat sizes {bad} are no committed size")
        self.op_readfile({"t": "kv", "n": name, "w": 0})

    def classify(self, data, versions):
        vs = [v for v in versions if v]
        if b"\0" in data:
            return "contains NUL bytes nobody wrote at +%d" % data.index(b"\0")
        for v in vs:
            if v.startswith(data):
                return f"the first {len(data)} B of the {len(v)} B version {short(v, 8)} (cut)"
        for v in vs:
            if data.startswith(v):
                return f"the {len(v)} B version {short(v, 8)} followed by {short(data[len(v):], 12)}"
        best = max(vs, key=lambda v: os.path.commonprefix([v, data]).__len__(), default=b"")
        n = len(os.path.commonprefix([best, data]))
        if n:
            rest = data[n:]
            other = [v for v in vs if rest[:12] and rest[:12] in v]
            return (f"{n} B of version {short(best, 8)} then {short(rest, 12)}"
                    + (f" from version {short(other[0], 8)} (a mix)" if other else ""))
        return "unknown bytes"

    def op_b_view(self, op):
        """Readers each hold ONE handle while a process commits overwrites,
        appends (and for lists pushes and pops): every whole read from
        offset 0 is exactly one committed version, never older than the
        handle's previous one; a read at an offset inside that version
        returns its bytes; a read at/after its end returns nothing or the
        bytes of a later version that extends it (kv only: a list reader
        stays on its version)."""
        typ, name, plan, base = op["t"], op["n"], op["steps"], op["base"]
        self.burst_prep(typ, name)
        p = self.path(typ, name)
        self.expect_ok(self.call(0, "put", p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, [base]),
                       "burst setup")
        ino = self.lookup(typ, name)
        if ino is None:
            ino = Inode(typ)
            self.attach(ino, name)
        ino.commit(base)
        versions, heads = [base], []
        for kind, data in plan:
            cur = versions[-1]
            if kind == "set":
                versions.append(data)
            elif kind == "append":
                versions.append(cur + data)
            else:
                el = list_elems(cur)
                heads.append(el[0] + b"\n" if el else None)
                if el:
                    versions.append(list_bytes(el[1:]))
        readers = list(range(1, len(self.workers)))
        for r in readers:
            self.workers[r].send("script", "viewreader", p, self.stopfile, 100000, op["chunk"],
                                 op["seed"] + r)
        pp = os.path.join(self.mount.mnt, ".ctl/pop", name)
        self.workers[0].send("script", "committer", p, pp, plan)
        popped = self.expect_ok(self.workers[0].recv(), "committer")
        open(self.stopfile, "w").close()
        rres = self.gather(readers)
        ino.commit(versions[-1])
        for got, exp in zip(popped, heads):
            if exp is None and got != -errno.ENODATA or exp is not None and got != exp:
                self.fail("pop", f"burst pop read {got if isinstance(got, int) else short(got)}, "
                                 f"expected {short(exp) if exp else 'ENODATA'}")
        where = {}
        for i, v in enumerate(versions):
            where.setdefault(v, []).append(i)
        for r, res in zip(readers, rres):
            table, seq = self.expect_ok(res, f"view reader w{r}")
            last = 0
            for n, (di, off, size, pi) in enumerate(seq):
                data, got = table[di], table[pi]
                idx = where.get(data)
                if idx is None:
                    return self.fail("burst-read", f"view reader w{r}, read {n} from offset 0: "
                                     f"{short(data, 40)} is not one committed version "
                                     f"({self.classify(data, versions)})")
                later = [i for i in idx if i >= last]
                if not later:
                    return self.fail("burst-read", f"view reader w{r}, read {n}: version {idx[-1]} "
                                     f"after version {last} (went back in time)")
                last = later[0]
                v = versions[last]
                if off < len(v):
                    ok = got == v[off:off + size]
                else:
                    ext = [j for j in range(last + 1, len(versions)) if typ != "lists" and
                           len(versions[j]) > len(v) and versions[j].startswith(v) and
                           versions[j][off:off + size] == got]
                    ok = got == b"" or bool(ext)
                    if ext and got:
                        last = ext[0]
                if not ok:
                    return self.fail("burst-read", f"view reader w{r}: pread({size}, {off}) after "
                                     f"reading version {last} ({len(v)} B) read {short(got)}, "
                                     f"expected {short(v[off:off + size]) if off < len(v) else 'nothing or a later version that extends it'}")
            if self.args.verbose:
                seen = sorted({where[table[di]][0] for di, _, _, _ in seq})
                print(f"    view reader w{r}: {len(seq)} reads, {len(seen)} of {len(versions)} "
                      f"versions seen")
        self.op_readfile({"t": typ, "n": name, "w": 0})

    def op_b_create_race(self, op):
        """Several handles (across processes) open one key with O_TRUNC while
        it is absent / pending / existing, then write and close concurrently:
        the key ends as exactly one writer's whole value, of a writer whose
        close did not end before another close started."""
        name, plan, pre = op["n"], op["plan"], op["pre"]
        self.burst_prep("kv", name)
        p = self.path("kv", name)
        ino = self.lookup("kv", name)
        if pre == "absent" and ino is not None:
            self.expect_ok(self.call(0, "unlink", p), "burst setup unlink")
            self.detach(ino)
        elif pre == "existing":
            self.expect_ok(self.call(0, "put", p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, [b"old"]),
                           "burst setup")
            if ino is None:
                ino = Inode("kv")
                self.attach(ino, name)
            ino.commit(b"old")
        per_worker = {}
        hid = 1_000_000 + self.ops_done * 100
        for w, chunks in plan:   # opens happen in order, before any write
            hid += 1
            self.expect_ok(self.call(w, "open", hid, p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                           f"burst open w{w}")
            per_worker.setdefault(w, ([], []))
            per_worker[w][0].append(hid)
            per_worker[w][1].append(chunks)
        for w, (hids, chunks) in per_worker.items():
            self.workers[w].send("script", "writeclose", hids, chunks)
        closes = []
        for w, (hids, chunks) in per_worker.items():
            times = self.expect_ok(self.workers[w].recv(), f"writeclose w{w}")
            for t, c in zip(times, chunks):
                if t[2]:
                    self.fail("errno", f"burst close failed: {errno.errorcode.get(t[2])}")
                closes.append((t[0], t[1], b"".join(c)))
        res = self.call(0, "readfile", p)
        got = self.expect_ok(res, "readfile after create race")
        winners = [c for c in closes if c[2] == got]
        if not winners:
            self.fail("mix", f"after concurrent O_TRUNC writers closed, {name} = {short(got, 40)}: "
                             f"not one writer's value ({self.classify(got, [c[2] for c in closes])})")
        latest_start = max(c[0] for c in closes)
        if all(c[1] < latest_start for c in winners):
            self.fail("order", f"{name} = value of a close that ended before another close began")
        ino = self.lookup("kv", name)
        if ino is None:
            ino = Inode("kv")
            self.attach(ino, name)
        ino.commit(got)

    def op_b_append_race(self, op):
        """Concurrent O_APPEND writers (kv or list): every append lands whole,
        each process's appends in its close order."""
        typ, name, plan = op["t"], op["n"], op["plan"]
        self.burst_prep(typ, name)
        p = self.path(typ, name)
        ino = self.lookup(typ, name)
        before = ino.value if ino is not None else b""
        ws = [w for w, _ in plan]
        for w, handles in plan:
            self.workers[w].send("script", "appender", p, handles)
        for w in ws:
            self.expect_ok(self.workers[w].recv(), f"appender w{w}")
        got = self.expect_ok(self.call(0, "readfile", p), "readfile after append race")
        if not got.startswith(before):
            self.fail("append", f"{typ}/{name}: appends did not keep the old value {short(before)}")
        rest = got[len(before):]
        # each handle's appended block is unique (tagged): find them in order
        blocks = {}
        for w, handles in plan:
            for i, chunks in enumerate(handles):
                b = b"".join(chunks)
                if typ == "lists" and b and not b.endswith(b"\n"):
                    b += b"\n"
                blocks[b] = (w, i)
        pos, seen = 0, []
        while pos < len(rest):
            m = [b for b in blocks if b and rest.startswith(b, pos)]
            if not m:
                self.fail("append", f"{typ}/{name}: bytes at +{pos} {short(rest[pos:], 40)} are not "
                                    "one whole append")
            b = max(m, key=len)
            seen.append(blocks[b])
            pos += len(b)
        exp = sorted(v for b, v in blocks.items() if b)
        if sorted(seen) != exp:
            self.fail("append", f"{typ}/{name}: appends landed {sorted(seen)}, expected {exp} once each")
        for w in ws:
            mine = [i for ww, i in seen if ww == w]
            if mine != sorted(mine):
                self.fail("append", f"{typ}/{name}: w{w}'s appends out of its close order {mine}")
        if ino is None:
            ino = self.lookup(typ, name) or Inode(typ)
            self.attach(ino, name)
        ino.commit(got)

    def op_b_pop_race(self, op):
        """Poppers drain a big list while readers read it in 64 KiB preads:
        each element popped once, FIFO per popper; each read is whole lines,
        a contiguous run of the list (one version)."""
        name, elems = op["n"], op["elems"]
        self.burst_prep("lists", name)
        p = self.path("lists", name)
        data = list_bytes(elems)
        self.expect_ok(self.call(0, "put", p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, [data]),
                       "burst setup")
        ino = self.lookup("lists", name)
        if ino is None:
            ino = Inode("lists")
            self.attach(ino, name)
        ino.commit(data)
        n = len(self.workers)
        poppers = list(range(n // 2 + (n % 2)))
        readers = [w for w in range(n) if w not in poppers]
        pp = os.path.join(self.mount.mnt, ".ctl/pop", name)
        for r in readers:
            self.workers[r].send("script", "freshreader", p, self.stopfile, 100000, 65536)
        for w in poppers:
            self.workers[w].send("script", "popper", pp, len(elems) + 1)
        popped = {}
        for w in poppers:
            popped[w] = self.expect_ok(self.workers[w].recv(), f"popper w{w}")
        open(self.stopfile, "w").close()
        rres = self.gather(readers)
        ino.commit(b"")
        index = {e + b"\n": i for i, e in enumerate(elems)}
        allp = []
        for w, got in popped.items():
            idx = []
            for g in got:
                if g not in index:
                    self.fail("pop", f"popper w{w} got {short(g)}: no element")
                idx.append(index[g])
            if idx != sorted(idx):
                self.fail("pop", f"popper w{w}: pops out of FIFO order")
            allp += idx
        if sorted(allp) != list(range(len(elems))):
            dup = len(allp) - len(set(allp))
            self.fail("pop", f"{len(set(allp))} of {len(elems)} elements popped, {dup} twice")
        for r, res in zip(readers, rres):
            table, seq, sizes = self.expect_ok(res, f"list reader w{r}")
            for idx in seq:
                if idx < 0:
                    continue  # ENOENT impossible; other errors reported below
                d = table[idx]
                ok = d == b"" or (d.endswith(b"\n") and d in data and
                                  data.endswith(d) and (len(d) == len(data) or data[-len(d) - 1:-len(d)] == b"\n"))
                if not ok:
                    return self.fail("list-read", f"reader w{r}: list read of {len(d)} B is not "
                                                  f"the list as of one moment: {self.list_diag(d, elems)}")

    def list_diag(self, d, elems):
        lines = d.split(b"\n")
        index = {e: i for i, e in enumerate(elems)}
        prev = None
        for j, ln in enumerate(lines[:-1]):
            i = index.get(ln)
            if i is None:
                return f"line {j} {short(ln)} is no element (a cut line)"
            if prev is not None and i != prev + 1:
                return f"line {j} is element {i} right after element {prev} (repeated/skipped)"
            prev = i
        if lines[-1] != b"":
            return f"ends in a cut line {short(lines[-1])}"
        return f"does not end with the last element (ends at {prev} of {len(elems)})"

    def op_b_unlink_race(self, op):
        """A process keeps a name open and re-reads each handle while another
        unlinks it / renames new values over it: a handle's reads all agree."""
        typ, name, values, modes = "kv", op["n"], op["vals"], op["modes"]
        self.burst_prep(typ, name)
        self.burst_prep(typ, name + ".tmp")
        p = self.path(typ, name)
        d = os.path.join(self.mount.mnt, typ)
        self.expect_ok(self.call(0, "put", p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, [op["base"]]),
                       "burst setup")
        holders = list(range(1, len(self.workers)))
        for w in holders:
            self.workers[w].send("script", "holder", p, self.stopfile, 100000)
        self.workers[0].send("script", "churn", d, name, values, modes)
        final = self.expect_ok(self.workers[0].recv(), "churn")
        open(self.stopfile, "w").close()
        ino = self.lookup(typ, name)
        if ino is not None:
            self.detach(ino)
        t = self.lookup(typ, name + ".tmp")
        if t is not None:
            self.detach(t)
        ino = Inode(typ)
        ino.commit(final)
        self.attach(ino, name)
        legal = set(values) | {op["base"]}
        for w, res in zip(holders, self.gather(holders)):
            table, bad = self.expect_ok(res, f"holder w{w}")
            if bad:
                r = bad[0]
                desc = [("errno " + errno.errorcode.get(-x, str(x))) if isinstance(x, int)
                        else short(x) for x in r]
                return self.fail("unlinked-open", f"holder w{w}: one handle's reads disagree after its "
                                           f"name was unlinked/renamed over: {desc} "
                                           f"({len(bad)} handles)")
            for t in table:
                if t not in legal:
                    return self.fail("unlinked-open", f"holder w{w} read {short(t)}: not one version "
                                               f"({self.classify(t, list(legal))})")


# ================================================================== generator

class Gen:
    """Chooses the next op from the model's state (only at generation time;
    replays re-execute the recorded ops, whose parameters are all explicit)."""

    def __init__(self, rng, run, args):
        self.rng = rng
        self.run = run
        self.args = args
        self.tags = Tags(0)
        self.next_hid = 1
        kinds, weights = [], []
        for k, wgt in SEQ_OPS:
            kinds.append(k)
            weights.append(wgt)
        if args.bursts:
            kinds.append("burst")
            weights.append(args.burst_weight)
        if args.restarts:
            kinds += ["restart", "crash", "crashburst"]
            weights += [0.4, 0.4, 0.3]
        self.kinds, self.weights = kinds, weights
        self.valid_only = "invalid-json" in args.avoid

    def name(self, typ):
        return self.rng.choice(NAMES[typ])

    def typ(self):
        return self.rng.choices(TYPES, weights=[6, 2, 2])[0]

    def next(self):
        for _ in range(100):
            k = self.rng.choices(self.kinds, self.weights)[0]
            op = getattr(self, "g_" + k)()
            if op is not None:
                return op
        return {"k": "listdir", "t": "kv", "w": 0}

    def w(self):
        return self.rng.randrange(len(self.run.workers))

    def handle(self, pred):
        hs = [h for h in self.run.handles.values() if pred(h)]
        return self.rng.choice(hs) if hs else None

    def value(self):
        return self.tags.pattern(choose_size(self.rng))

    def lines(self, n=None):
        n = n if n is not None else self.rng.randrange(1, 6)
        return b"".join(self.tags.line(self.rng.choice([0, 3, 50, 500])) + b"\n" for _ in range(n))

    def g_open(self):
        if len(self.run.handles) >= self.args.max_handles:
            return None
        typ = self.typ()
        name = self.name(typ)
        rng = self.rng
        ino = self.run.lookup(typ, name)
        if typ == "kv":
            f = rng.choice([os.O_RDONLY, os.O_RDWR, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                            os.O_RDWR | os.O_CREAT, os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                            os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                            os.O_RDWR | os.O_CREAT | os.O_EXCL])
        elif typ == "json":
            f = rng.choice([os.O_RDONLY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC])
            # one writer per document; readers only of committed documents
            if ino is not None and any(h.ino is ino for h in self.run.handles.values()
                                       if h.writable):
                if f != os.O_RDONLY or ino.pending:
                    return None
            if f == os.O_RDONLY and ino is not None and ino.pending:
                return None
            if f != os.O_RDONLY and ino is not None and any(h.ino is ino for h in self.run.handles.values()):
                return None
        else:
            f = rng.choice([os.O_RDONLY, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                            os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                            os.O_WRONLY | os.O_CREAT | os.O_TRUNC])
        hid = self.next_hid
        self.next_hid += 1
        return {"k": "open", "t": typ, "n": name, "f": f, "w": self.w(), "h": hid}

    def g_write(self):
        h = self.handle(lambda h: h.writable)
        if h is None:
            return None
        typ = h.ino.typ
        if typ == "json":
            if h.writes_since_open >= 2:
                return None
            h.writes_since_open += 1
            if not h.dirty or h.buf == b"":
                d = self.tags.doc(self.rng) if self.rng.random() < 0.8 or self.valid_only \
                    else self.tags.bad_doc(self.rng)
                # split a document over two writes sometimes
                if len(d) > 4 and self.rng.random() < 0.3:
                    cut = self.rng.randrange(1, len(d))
                    return {"k": "write", "h": h.hid, "d": d[:cut], "rest": d[cut:]}
                return {"k": "write", "h": h.hid, "d": d}
            return {"k": "write", "h": h.hid, "d": b" "}
        if typ == "lists":
            d = self.lines()
            if h.append and self.rng.random() < 0.3:   # split lines across writes
                d = d[:self.rng.randrange(1, len(d) + 1)]
            return {"k": "write", "h": h.hid, "d": d}
        return {"k": "write", "h": h.hid, "d": self.value()}

    def g_pwrite(self):
        h = self.handle(lambda h: h.writable and not h.append and h.ino.typ == "kv")
        if h is None:
            return None
        size = len(h.buf) if h.mode == "full" else len(h.ino.value)
        off = self.rng.choice([0, self.rng.randrange(size + 1), size,
                               size + self.rng.randrange(1, 9000)])
        return {"k": "pwrite", "h": h.hid, "d": self.value(), "o": off}

    def g_ftruncate(self):
        h = self.handle(lambda h: h.writable and not h.append and h.ino.typ == "kv")
        if h is None:
            return None
        size = len(h.buf) if h.mode == "full" else len(h.ino.value)
        return {"k": "ftruncate", "h": h.hid, "s": self.rng.choice([0, size // 2, size + 3000])}

    def g_read(self):
        h = self.handle(lambda h: h.readable)
        if h is None:
            return None
        if self.rng.random() < 0.5:
            return {"k": "read", "h": h.hid, "o": None}
        size = len(h.buf) if h.mode == "full" else len(h.ino.value)
        return {"k": "read", "h": h.hid, "o": self.rng.randrange(size + 2),
                "s": self.rng.choice([1, 100, PAGE, 70000])}

    def g_fstat(self):
        h = self.handle(lambda h: h.ino.typ != "json")
        return h and {"k": "fstat", "h": h.hid}

    def g_fsync(self):
        h = self.handle(lambda h: h.writable and h.ino.typ == "kv" or h.append)
        return h and {"k": "fsync", "h": h.hid}

    def g_flushdup(self):
        h = self.handle(lambda h: h.writable and h.ino.typ == "kv" or h.append)
        return h and {"k": "flushdup", "h": h.hid}

    def g_close(self):
        h = self.handle(lambda h: not (self.valid_only and h.ino.typ == "json" and h.writable
                                       and not valid_json(h.buf)))
        return h and {"k": "close", "h": h.hid}

    def g_put(self):
        typ = self.typ()
        name = self.name(typ)
        ino = self.run.lookup(typ, name)
        if typ == "json":
            if ino is not None and any(h.ino is ino for h in self.run.handles.values()):
                return None
            d = self.tags.doc(self.rng) if self.rng.random() < 0.75 or self.valid_only \
                else self.tags.bad_doc(self.rng)
            return {"k": "put", "t": typ, "n": name, "f": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                    "c": [d], "w": self.w()}
        if typ == "lists":
            return {"k": "put", "t": typ, "n": name, "f": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                    "c": [self.lines()], "w": self.w()}
        f = self.rng.choice([os.O_WRONLY | os.O_CREAT | os.O_TRUNC, os.O_WRONLY | os.O_CREAT | os.O_APPEND])
        return {"k": "put", "t": typ, "n": name, "f": f, "c": [self.value()], "w": self.w()}

    def g_push(self):
        name = self.name("lists")
        d = self.lines()
        if self.rng.random() < 0.2:
            d = d.rstrip(b"\n")   # unterminated last line: pushed at close
        cut = self.rng.randrange(0, len(d) + 1)
        return {"k": "push", "n": name, "c": [d[:cut], d[cut:]], "w": self.w()}

    def g_readfile(self):
        typ = self.typ()
        return {"k": "readfile", "t": typ, "n": self.name(typ), "w": self.w()}

    def g_stat(self):
        typ = self.typ()
        return {"k": "stat", "t": typ, "n": self.name(typ), "w": self.w()}

    def g_listdir(self):
        return {"k": "listdir", "t": self.typ(), "w": self.w()}

    def g_unlink(self):
        typ = self.typ()
        name = self.name(typ)
        ino = self.run.lookup(typ, name)
        if typ == "json" and ino is not None and ino.pending:
            return None
        return {"k": "unlink", "t": typ, "n": name, "w": self.w()}

    def g_rename(self):
        typ = self.rng.choice(["kv", "kv", "lists"])
        return {"k": "rename", "t": typ, "n": self.name(typ), "n2": self.name(typ), "w": self.w()}

    def g_truncate(self):
        typ = self.typ()
        name = self.name(typ)
        ino = self.run.lookup(typ, name)
        if ino is not None and ino.typ == "json" and (ino.pending or ino.jval is not None):
            return None
        size = len(ino.value) if ino else 0
        return {"k": "truncate", "t": typ, "n": name, "w": self.w(),
                "s": self.rng.choice([0, size // 2, size, size + 5000])}

    def g_touch(self):
        typ = self.rng.choice(["kv", "lists"])
        return {"k": "touch", "t": typ, "n": self.name(typ), "w": self.w()}

    def g_pop(self):
        return {"k": "pop", "n": self.name("lists"), "w": self.w()}

    def g_jget(self):
        return {"k": "jget", "n": self.name("json"), "m": self.member(["t", "a", "b", "c"]),
                "w": self.w()}

    def member(self, names):
        if self.rng.random() < 0.03:   # a path file name longer than NAME_MAX
            return "m" * self.rng.choice([300, 600, 1000])
        return self.rng.choice(names)

    def g_jset(self):
        name = self.name("json")
        ino = self.run.lookup("json", name)
        if ino is not None and any(h.ino is ino and h.dirty for h in self.run.handles.values()):
            return None
        v = self.rng.choice([b"1", b'"x%d"' % self.tags.n, b"[1, 2]", b'{"z": null}', b" 7 "]
                            + ([] if self.valid_only else [b"01", b"tru", b"'q'", b"[1,]"]))
        return {"k": "jset", "n": name, "m": self.member(["a", "b", "c"]), "v": v, "w": self.w()}

    def g_snapshot(self):
        return {"k": "snapshot", "w": self.w()}

    def g_restart(self):
        return {"k": "restart"}

    def g_crash(self):
        return {"k": "crash"}

    def g_crashburst(self):
        if len(self.run.workers) < 1:
            return None
        return {"k": "b_crash", "after": self.rng.randrange(1, 60), "n": 400,
                "pad": b"x" * self.rng.choice([0, 10, 5000])}

    def g_burst(self):
        if len(self.run.workers) < 2:
            return None
        b = self.rng.choice(BURSTS)
        rng = self.rng
        nw = len(self.run.workers)
        if b == "b_overwrite":
            small = rng.random() < 0.5
            vals = [self.tags.pattern(rng.choice([3, 3, 8]) if small else choose_size(rng),
                                      unique=True)
                    for _ in range(self.args.burst_len)]
            return {"k": b, "n": self.name("kv"), "vals": vals, "dup": rng.random() < 0.5,
                    "base": self.tags.pattern(rng.choice([3, 100, 6000]), unique=True),
                    "chunk": rng.choice([1, 2, 4096, 65536])}
        if b == "b_create_race":
            plan = []
            for _ in range(rng.randrange(2, 5)):
                sz = choose_size(rng)
                v = self.tags.pattern(sz, "c", unique=True)
                sz = len(v)
                cuts = sorted(rng.sample(range(1, sz), min(2, sz - 1))) if sz > 2 else []
                chunks = [v[a:b2] for a, b2 in zip([0] + cuts, cuts + [sz])]
                plan.append((rng.randrange(nw), chunks))
            return {"k": b, "n": self.name("kv"), "plan": plan,
                    "pre": rng.choice(["absent", "absent", "existing", "asis"])}
        if b == "b_append_race":
            typ = rng.choice(["kv", "lists"])
            plan = []
            for w in range(nw):
                handles = []
                for _ in range(rng.randrange(1, 4)):
                    if typ == "lists":
                        d = self.lines(rng.randrange(1, 4))
                        cut = rng.randrange(0, len(d) + 1)
                        handles.append([d[:cut], d[cut:]])
                    else:
                        v = self.tags.pattern(rng.randrange(1, 3000), "a", unique=True)
                        handles.append([v[:len(v) // 2], v[len(v) // 2:]])
                plan.append((w, handles))
            return {"k": b, "t": typ, "n": self.name(typ), "plan": plan}
        if b == "b_pop_race":
            n = rng.choice([50, 400, 2000])
            return {"k": b, "n": self.name("lists"),
                    "elems": [self.tags.line(rng.randrange(0, 60)) for _ in range(n)]}
        if b == "b_view":
            typ = rng.choice(["kv", "kv", "lists"])
            plan = []
            for _ in range(self.args.burst_len):
                if typ == "kv":
                    if rng.random() < 0.3:
                        plan.append(("set", self.tags.pattern(rng.choice([3, 50, 3000, 9000]),
                                                              unique=True)))
                    else:
                        plan.append(("append", self.tags.pattern(rng.randrange(1, 300), "a",
                                                                 unique=True)))
                else:
                    k = rng.choices(["set", "append", "pop"], [0.15, 0.55, 0.3])[0]
                    plan.append((k, self.lines(rng.randrange(1, 4)) if k != "pop" else None))
            base = self.tags.pattern(rng.choice([3, 100, 6000]), unique=True) if typ == "kv" \
                else self.lines(rng.randrange(1, 6))
            return {"k": b, "t": typ, "n": self.name(typ), "steps": plan, "base": base,
                    "chunk": rng.choice([7, 512, 4096, 65536]), "seed": rng.randrange(1 << 20)}
        if b == "b_unlink_race":
            n = self.args.burst_len
            return {"k": b, "n": self.name("kv"), "base": self.tags.pattern(50, "u"),
                    "vals": [self.tags.pattern(rng.choice([5, 300, 5000]), "u", unique=True)
                             for _ in range(n)],
                    "modes": [rng.choice(["rename", "unlink"]) for _ in range(n)]}


def fmt(op):
    k = op["k"]
    d = dict(op)
    d.pop("k")
    parts = []
    for key, v in d.items():
        if key == "f":
            v = flagstr(v)
        elif isinstance(v, bytes):
            v = short(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = "[" + ", ".join(short(x, 12) for x in v[:4]) + (", ..%d" % len(v) if len(v) > 4 else "") + "]"
        elif key in ("plan", "elems", "steps"):
            v = f"<{len(v)} items>"
        parts.append(f"{key}={v}")
    return f"{k}(" + ", ".join(parts) + ")"


def fixup_write(op):
    # a document split over two writes: the second part rides with the op
    if op["k"] == "write" and "rest" in op:
        return [dict(op, rest=None, d=op["d"]), {"k": "write", "h": op["h"], "d": op["rest"]}]
    return [op]


# ===================================================================== runner

def run_ops(args, ops, verbose=False, gen=None, nops=0, quiet=False):
    """Run recorded ops (or generate nops with gen) on a fresh mount.
    Returns (failure or None, executed ops, index of failing op)."""
    nworkers = args.workers
    for op in ops or []:   # a replay needs every worker its ops name
        ws = [op.get("w", 0)] + [w for w, _ in op.get("plan", [])]
        nworkers = max(nworkers, 1 + max(ws))
    run = Run(args, nworkers)
    executed = []
    hung = False
    try:
        if gen is not None:
            gen.run = run
        i = 0
        while True:
            if gen is not None:
                if len(executed) >= nops:
                    break
                for op in fixup_write(gen.next()):
                    op.pop("rest", None)
                    executed.append(op)
                    r = run.execute(op)
                    run.ops_done += 1
                    if verbose:
                        print(f"  {len(executed) - 1:4d} {fmt(op)}" + ("  (skipped)" if r == "skip" else ""))
                continue
            if i >= len(ops):
                break
            op = ops[i]
            executed.append(op)
            if run.execute(op) == "skip":
                executed.pop()
            run.ops_done += 1
            i += 1
        run.op_restart({"k": "restart"}) if args.final_restart else run.verify_all("final check")
        rep = run.mount.sanitizer_report()
        if rep:
            raise Failure("sanitizer", rep)
        if run.tolerated and not quiet:
            print("  tolerated checks that failed (first of each kind):")
            for k, (i, m) in run.tolerated.items():
                print(f"    op {i}: [{k}] {m}")
        return None, executed
    except Failure as f:
        hung = f.kind in ("hang", "worker")
        return f, executed
    except Exception:
        import traceback
        return Failure("internal", "exerciser error (not a mount defect):\n"
                       + traceback.format_exc()), executed
    finally:
        run.close(hung)


def shrink(args, ops, failure, deadline):
    """Delete ops while the same kind of failure still happens on a fresh
    mount: first all bursts / restarts at once, then chunks (halving down to
    single ops); ops a replay skips (their handle is gone) are dropped.
    Bursts are nondeterministic: such candidates are tried up to 3 times."""
    kind = failure.kind
    runs = 0

    def fails(cand):
        nonlocal runs
        bursty = any(o["k"].startswith("b_") for o in cand)
        for _ in range(3 if bursty else 1):
            if time.monotonic() > deadline:
                return None
            runs += 1
            f, executed = run_ops(args, cand, quiet=True)
            if f is not None and f.kind == kind:
                return f, executed
        return None

    best, last_fail = list(ops), failure
    for drop in (lambda o: o["k"].startswith("b_") or o["k"] in ("restart", "crash"),
                 lambda o: o["k"] in ("restart", "crash"),
                 lambda o: o["k"].startswith("b_")):
        cand = [o for o in best if not drop(o)]
        if cand and len(cand) < len(best):
            r = fails(cand)
            if r:
                last_fail, best = r
    n = 2
    while len(best) > 1 and time.monotonic() < deadline:
        chunk = max(1, len(best) // n)
        removed = False
        i = len(best) - chunk
        while i >= 0 and time.monotonic() < deadline:
            cand = best[:i] + best[i + chunk:]
            r = fails(cand) if cand else None
            if r:
                last_fail, best = r   # the ops that really ran (no skipped ones)
                removed = True
                i = min(i, len(best))
            i -= chunk
        if not removed:
            if chunk == 1:
                break
            n = min(len(best), n * 2)
    return best, last_fail, runs


def dump_ops(path, ops):
    with open(path, "w") as f:
        for op in ops:
            f.write(repr(op) + "\n")


def load_ops(path):
    import ast
    with open(path) as f:
        return [ast.literal_eval(line) for line in f if line.strip() and not line.startswith("#")]


def one_seed(args, seed):
    rng = random.Random(seed)
    gen = Gen(rng, None, args)
    print(f"seed {seed}: {args.ops} ops, {args.workers} workers", flush=True)
    t0 = time.monotonic()
    failure, executed = run_ops(args, None, verbose=args.verbose, gen=gen, nops=args.ops)
    if failure is None:
        if args.verbose:
            print(f"seed {seed}: ok ({time.monotonic() - t0:.1f}s)")
        return None
    print(f"\nFAIL seed {seed} after {len(executed)} ops: {failure}")
    tail = executed[-args.log_tail:]
    print(f"--- operation log (last {len(tail)} of {len(executed)}):")
    for i, op in enumerate(tail, len(executed) - len(tail)):
        print(f"  {i:4d} {fmt(op)}")
    if args.shrink_seconds > 0 and failure.kind != "internal":
        best, f2, runs = shrink(args, executed, failure, time.monotonic() + args.shrink_seconds)
        print(f"--- smallest failing sequence ({len(best)} ops, {runs} re-runs): {f2}")
        for i, op in enumerate(best):
            print(f"  {i:4d} {fmt(op)}")
        if args.save:
            p = f"{args.save}/seed{seed}.ops"
            dump_ops(p, best)
            print(f"--- saved to {p} (re-run: --replay {p})")
    else:
        best, f2 = executed, failure
    print(f"--- reproduce: {sys.argv[0]} --bin {args.bin} --seed {seed} --ops {args.ops} "
          f"--workers {args.workers}{'' if args.bursts else ' --no-bursts'}"
          f"{' --restarts' if args.restarts else ''} --fsync {args.fsync}", flush=True)
    return seed, failure, best, f2


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=DEFAULT_BIN)
    ap.add_argument("--seed", type=int, help="run this one seed")
    ap.add_argument("--seeds", type=int, default=1, help="number of seeds (from --first-seed)")
    ap.add_argument("--first-seed", type=int, default=None, help="default: random")
    ap.add_argument("--ops", type=int, default=300)
    ap.add_argument("--workers", type=int, default=3, help="worker processes")
    ap.add_argument("--max-handles", type=int, default=6)
    ap.add_argument("--no-bursts", dest="bursts", action="store_false")
    ap.add_argument("--burst-weight", type=float, default=1.5)
    ap.add_argument("--burst-len", type=int, default=60)
    ap.add_argument("--restarts", action="store_true",
                    help="also clean restarts and kill -9 + remount")
    ap.add_argument("--fsync", default="always", choices=["always", "interval", "none"])
    ap.add_argument("--final-restart", action="store_true")
    ap.add_argument("--shrink-seconds", type=float, default=60)
    ap.add_argument("--time-budget", type=float, default=0,
                    help="start no new seed after this many seconds (0: no limit)")
    ap.add_argument("--avoid", default="", type=lambda s: set(s.split(",")) - {""},
                    help="generator: 'invalid-json' = no refused documents (explore past them)")
    ap.add_argument("--replay", nargs="+", help="re-run the ops saved in these files (see --save)")
    ap.add_argument("--repeat", type=int, default=1, help="with --replay: run each file this often")
    ap.add_argument("--save", help="directory: save each smallest failing sequence there")
    ap.add_argument("--keep-going", action="store_true", help="run every seed even after a failure")
    ap.add_argument("--log-tail", type=int, default=40)
    ap.add_argument("--tolerate", default="",
                    type=lambda s: READ_ONLY_KINDS if s == "all" else set(s.split(",")) - {""},
                    help="comma-separated read-only check kinds (or 'all') to note and go on: "
                         + ",".join(sorted(READ_ONLY_KINDS)))
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse(argv)
    if not os.path.exists(args.bin):
        sys.exit(f"no binary {args.bin}: build first (cmake --build build)")
    if args.replay:
        rc = 0
        for path in args.replay:
            ops = load_ops(path)
            with open(path) as fh:
                head = [ln.strip() for ln in fh if ln.startswith("#")]
            print(f"replaying {path} ({len(ops)} ops, {args.repeat}x) {' '.join(head)}")
            for i, op in enumerate(ops):
                print(f"  {i:4d} {fmt(op)}")
            for _ in range(args.repeat):
                f, _ = run_ops(args, ops)
                if f:
                    print(f"FAIL: {f}")
                    rc = 1
                    break
            else:
                print("passed")
        return rc
    if args.seed is not None:
        seeds = [args.seed]
    else:
        first = args.first_seed if args.first_seed is not None else random.SystemRandom().randrange(1 << 30)
        seeds = list(range(first, first + args.seeds))
    print(f"exerciser: seeds {seeds[0]}..{seeds[-1]} ({len(seeds)}), bin {args.bin}", flush=True)
    failures = []
    t0 = time.monotonic()
    for s in seeds:
        if args.time_budget and time.monotonic() - t0 > args.time_budget:
            print(f"time budget of {args.time_budget:.0f}s spent: stopping before seed {s}")
            break
        r = one_seed(args, s)
        if r is not None:
            failures.append(r)
            if not args.keep_going:
                break
    dt = time.monotonic() - t0
    if failures:
        print(f"\n{len(failures)} failing seed(s): {[f[0] for f in failures]} ({dt:.0f}s)")
        return 1
    print(f"all {len(seeds)} seed(s) passed ({dt:.0f}s)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker_main()
        sys.exit(0)
    sys.exit(main())
