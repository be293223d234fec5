#!/usr/bin/python3
"""memfluxfs benchmark driver (issue #6).  Run it through bench/run, which builds
the binaries, installs packages and sets BENCH_TMP / BENCH_OUT / MEMFLUXFS_BIN.

Targets: memfluxfs (per --fsync mode where it matters), the FUSE floors nullfs_ll
(low-level) and nullfs (high-level) from ../shared/bench, a private tmpfs, an ext4
directory, and private redis-servers on 127.0.0.1.  Every figure is the median of
--reps repeats (targets interleaved within a repeat, so drift hits all of them).
Prints one table, the targets from the issue as met / NOT MET, and writes
bench/out/results.tsv, bench/out/latency.tsv and bench/out/chart.png.

Exit status: 0 when every workload ran (missed targets included); 1 when a target
failed to mount / start or a workload failed.
"""
import argparse
import multiprocessing as mp
import os
import pathlib
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import redis

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent
TMP = pathlib.Path(os.environ.get("BENCH_TMP") or "/var/tmp/memflux-bench-manual")
OUT = pathlib.Path(os.environ.get("BENCH_OUT") or HERE / "out")
MF_BIN = os.environ.get("MEMFLUXFS_BIN") or str(REPO / "build/fs/memfluxfs")
NULLFS_LL = OUT / "nullfs_ll"
NULLFS = OUT / "nullfs"
LOADER = OUT / "loader"

FULL = dict(shell_n=20000, rcli_n=1000, py_n=20000, dd_mib=256, always_secs=5.0,
            big_keys=1_000_000, big_val=100, lat_pad=1.0)
QUICK = dict(shell_n=1000, rcli_n=25, py_n=1000, dd_mib=16, always_secs=0.5,
             big_keys=20_000, big_val=100, lat_pad=0.2)


class BenchError(Exception):
    """A real failure: something would not mount / start / run."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def wait_pid_exit(pid, timeout):
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        r, _, _ = select.select([fd], [], [], timeout)
        return bool(r)
    finally:
        os.close(fd)


def mounted(path):
    path = str(path)
    with open("/proc/mounts") as f:
        for line in f:
            mp_ = line.split()[1].encode().decode("unicode_escape")
            if mp_ == path:
                return True
    return False


def fstype(path):
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True,
                          text=True).stdout.strip()


def record_pid(name, pid):
    d = TMP / "pids"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.pid").write_text(str(pid))


def unmount(path, pid=None, proc=None):
    """fusermount3 -u (retried while busy), wait for the daemon; lazy + kill last."""
    path = str(path)
    for _ in range(50):
        if not mounted(path):
            break
        r = subprocess.run(["fusermount3", "-u", path], capture_output=True, text=True)
        if r.returncode == 0:
            break
        time.sleep(0.2)
    ok = True
    if mounted(path):
        log(f"bench: {path} still busy; lazy unmount")
        subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)
        ok = False
    if proc is not None:
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            ok = False
    elif pid is not None and not wait_pid_exit(pid, 120):
        log(f"bench: daemon {pid} did not exit after unmount; killing it")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        ok = False
    return ok


# --------------------------------------------------------------------------- targets
class MemfluxFS:
    def __init__(self, name, *args):
        self.name = name
        self.mnt = TMP / f"{name}-mnt"
        self.data = TMP / f"{name}-data"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.pid = None

    @property
    def kv(self):
        return str(self.mnt / "kv")

    def start(self):
        """Mount; returns the wall time of the mount command (recovery included)."""
        t0 = time.perf_counter()
        p = subprocess.run([MF_BIN, f"--data-dir={self.data}", *self.args, str(self.mnt)],
                           capture_output=True, text=True, timeout=1800)
        wall = time.perf_counter() - t0
        if p.returncode != 0:
            tail = ""
            lf = self.data / "memflux.log"
            if lf.exists():
                tail = "".join(lf.read_text(errors="replace").splitlines(True)[-5:])
            raise BenchError(f"memfluxfs {self.name} failed to mount: {p.stderr.strip()}\n{tail}")
        self.pid = int((self.data / "memflux.lock").read_text().strip())
        record_pid(self.name, self.pid)
        return wall

    def stop(self):
        if self.pid is None:
            return True
        ok = unmount(self.mnt, pid=self.pid)
        self.pid = None
        return ok

    def stats(self):
        out = {}
        for line in (self.mnt / ".ctl/stats").read_text().splitlines():
            k, _, v = line.partition(" ")
            out[k] = v
        return out

    def snapshot(self):
        """Trigger a snapshot (returns when durable); its figures from .ctl/snapshot."""
        t0 = time.perf_counter()
        with open(self.mnt / ".ctl/snapshot", "w") as f:
            f.write("1\n")
        wall = time.perf_counter() - t0
        out = {"wall": wall}
        for line in (self.mnt / ".ctl/snapshot").read_text().splitlines():
            k, _, v = line.partition(" ")
            out[k] = v
        return out

    def proc_status(self, field):
        for line in open(f"/proc/{self.pid}/status"):
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        return None


class FuseFloor:
    def __init__(self, name, binary):
        self.name = name
        self.bin = str(binary)
        self.mnt = TMP / f"{name}-mnt"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.proc = None

    @property
    def kv(self):
        return str(self.mnt)

    def start(self):
        self.proc = subprocess.Popen([self.bin, "-f", str(self.mnt)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        record_pid(self.name, self.proc.pid)
        deadline = time.monotonic() + 20
        while not mounted(self.mnt):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip()
                self.proc = None
                raise BenchError(f"{self.name} failed to mount: {err}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} did not mount within 20 s")
            time.sleep(0.02)

    def stop(self):
        if self.proc is None:
            return True
        ok = unmount(self.mnt, proc=self.proc)
        self.proc = None
        return ok


class Tmpfs:
    name = "tmpfs"

    def __init__(self):
        self.mnt = TMP / "tmpfs-mnt"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.is_mount = False

    @property
    def kv(self):
        return str(self.mnt)

    def start(self):
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0700", "benchtmpfs",
                            str(self.mnt)], capture_output=True, text=True)
        if r.returncode == 0:
            self.is_mount = True
            return
        # not root: a private directory on /dev/shm (a tmpfs) instead
        shm = pathlib.Path("/dev/shm")
        if fstype(shm) != "tmpfs":
            raise BenchError(f"tmpfs mount failed: {r.stderr.strip()}")
        self.mnt = pathlib.Path(shutil.os.path.realpath(
            subprocess.run(["mktemp", "-d", "/dev/shm/memflux-bench.XXXXXX"],
                           capture_output=True, text=True, check=True).stdout.strip()))
        log(f"bench: mount -t tmpfs failed ({r.stderr.strip()}); using {self.mnt}")

    def stop(self):
        if self.is_mount:
            r = subprocess.run(["umount", str(self.mnt)], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
            self.is_mount = False
        elif str(self.mnt).startswith("/dev/shm/memflux-bench."):
            shutil.rmtree(self.mnt, ignore_errors=True)
        return True


class Ext4Dir:
    name = "ext4"

    def __init__(self):
        self.mnt = TMP / "ext4-dir"
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.fstype = fstype(self.mnt)
        self.df = subprocess.run(["df", "-T", str(self.mnt)], capture_output=True,
                                 text=True).stdout.strip().splitlines()[-1]

    @property
    def kv(self):
        return str(self.mnt)

    def start(self):
        pass

    def stop(self):
        return True


def free_port(start):
    for port in range(start, start + 200):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise BenchError("no free loopback port for redis-server")


class Redis:
    def __init__(self, name, port, *args):
        self.name = name
        self.port = port
        self.dir = TMP / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.args = list(args)
        self.proc = None
        self.logfile = None

    def start(self, *extra, logname="redis.log"):
        """Start; returns wall seconds until it answers PING (dataset loaded)."""
        self.logfile = self.dir / logname
        if self.logfile.exists():
            self.logfile.unlink()
        cmd = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
               "--protected-mode", "yes", "--dir", str(self.dir), "--daemonize", "no",
               "--logfile", str(self.logfile), "--save", "", *self.args, *extra]
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        record_pid(self.name, self.proc.pid)
        deadline = time.monotonic() + 600
        c = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")
                lt = self.logfile.read_text(errors="replace")[-800:] if self.logfile.exists() else ""
                self.proc = None
                raise BenchError(f"redis-server {self.name} failed to start: {err}{lt}")
            try:
                if c.ping():
                    break
            except (redis.ConnectionError, redis.BusyLoadingError, redis.TimeoutError):
                pass
            except redis.ResponseError as e:   # LOADING
                if "LOADING" not in str(e):
                    raise
            if time.monotonic() > deadline:
                raise BenchError(f"redis-server {self.name} not ready in 600 s")
            time.sleep(0.005)
        c.close()
        return time.perf_counter() - t0

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port)

    def loaded_seconds(self, what):
        pat = {"rdb": r"DB loaded from disk: ([\d.]+) seconds",
               "aof": r"DB loaded from append only file: ([\d.]+) seconds"}[what]
        m = re.findall(pat, self.logfile.read_text(errors="replace"))
        return float(m[-1]) if m else None

    def stop(self):
        if self.proc is None:
            return True
        try:
            self.client().shutdown(nosave=True)
        except (redis.ConnectionError, redis.ResponseError):
            pass
        except Exception:
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        return True


# --------------------------------------------------------------------------- results
class Results:
    def __init__(self):
        self.rows = []          # dicts
        self.errors = []
        self.targets = []       # (name, figure text, met)

    def add(self, workload, target, samples, unit, note="", higher_better=True):
        samples = [s for s in samples if s is not None]
        value = statistics.median(samples) if samples else None
        row = dict(workload=workload, target=target, value=value, unit=unit,
                   samples=samples, note=note, hb=higher_better)
        self.rows.append(row)
        shown = "n/a" if value is None else fmt(value)
        log(f"  {workload:34s} {target:22s} {shown:>10s} {unit}")
        return value

    def get(self, workload, target):
        for r in self.rows:
            if r["workload"] == workload and r["target"] == target:
                return r["value"]
        return None

    def ratio(self, row, ref):
        v, rv = row["value"], self.get(row["workload"], ref)
        if v is None or rv in (None, 0) or row["target"] == ref:
            return None
        return v / rv


def fmt(v):
    if v is None:
        return "n/a"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def fmt_ratio(r):
    if r is None:
        return ""
    return f"{r:.2f}x" if r < 100 else f"{r:.0f}x"


# --------------------------------------------------------------------------- workers
def run_bash(script, env_dir, timeout=3600):
    env = dict(os.environ, D=env_dir)
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", script], env=env, check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _py_files(mode, d, prefix, keys, barrier, errq):
    try:
        barrier.wait()
        if mode == "write":
            for i in keys:
                with open(f"{d}/{prefix}{i}", "w") as f:
                    f.write(f"v{i}\n")
        else:
            for i in keys:
                with open(f"{d}/{prefix}{i}") as f:
                    f.read()
    except Exception as e:  # reported to the parent
        errq.put(repr(e))
        raise


def _py_redis(mode, port, prefix, keys, barrier, errq):
    try:
        c = redis.Redis(host="127.0.0.1", port=port)
        c.ping()
        barrier.wait()
        if mode == "write":
            for i in keys:
                c.set(f"{prefix}{i}", f"v{i}\n")
        else:
            for i in keys:
                c.get(f"{prefix}{i}")
    except Exception as e:
        errq.put(repr(e))
        raise


def parallel_ops(fn, nproc, n, args):
    """n ops over nproc forked processes (keys partitioned); returns ops/s."""
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(nproc + 1)
    errq = ctx.Queue()
    procs = [ctx.Process(target=fn, args=(*args, range(p, n, nproc), barrier, errq))
             for p in range(nproc)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=60)
    except threading.BrokenBarrierError:
        pass
    t0 = time.perf_counter()
    for p in procs:
        p.join()
    dt = time.perf_counter() - t0
    if any(p.exitcode != 0 for p in procs):
        err = errq.get() if not errq.empty() else "worker failed"
        raise BenchError(f"{fn.__name__}: {err}")
    return n / dt


def dd(args):
    r = subprocess.run(["dd", *args], capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise BenchError(f"dd {' '.join(args)}: {r.stderr.strip()}")
    m = re.search(r"(\d+) bytes .* copied, ([\d.e-]+) s", r.stderr)
    return int(m.group(1)), float(m.group(2))


def redis_benchmark(port, *args):
    r = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "--csv", *args],
                       capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise BenchError(f"redis-benchmark: {r.stderr.strip()}")
    for line in r.stdout.splitlines():
        f = [x.strip('"') for x in line.split(",")]
        if len(f) > 1 and f[0] not in ("test",):
            try:
                return float(f[1])
            except ValueError:
                continue
    raise BenchError(f"redis-benchmark: no figure in {r.stdout!r}")


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[k]


# --------------------------------------------------------------------------- workloads
class Bench:
    def __init__(self, opts):
        self.o = opts
        self.sz = QUICK if opts.quick else FULL
        self.reps = opts.reps or (1 if opts.quick else 3)
        self.res = Results()
        self.started = []      # objects with .stop(), in start order
        self.latency = []      # (t_ms from trigger, latency_ms) of the chosen repeat
        self.lat_window = (0.0, 0.0)
        self.notes = []

    def start(self, obj):
        self.started.append(obj)
        obj.start()
        return obj

    def stop_all(self):
        ok = True
        while self.started:
            obj = self.started.pop()
            try:
                ok &= bool(obj.stop())
            except Exception as e:
                log(f"bench: stopping {getattr(obj, 'name', obj)}: {e!r}")
                ok = False
        return ok

    def workload(self, name, fn):
        if self.o.only and not any(w in name for w in self.o.only.split(",")):
            return
        log(f"== {name}")
        t0 = time.perf_counter()
        try:
            fn()
        except BenchError as e:
            self.res.errors.append(f"{name}: {e}")
            log(f"bench: ERROR in {name}: {e}")
        except Exception as e:     # OSError, redis errors, a dead mount...
            self.res.errors.append(f"{name}: {e!r}")
            log(f"bench: ERROR in {name}: {e!r}")
        log(f"   ({time.perf_counter() - t0:.1f} s)")

    # ---- setup
    def setup(self):
        TMP.mkdir(parents=True, exist_ok=True)
        OUT.mkdir(parents=True, exist_ok=True)
        self.mf = self.start(MemfluxFS("mf-interval", "--fsync=interval"))
        self.mf_always = self.start(MemfluxFS("mf-always", "--fsync=always"))
        self.nll = self.start(FuseFloor("nullfs_ll", NULLFS_LL))
        self.nfs = self.start(FuseFloor("nullfs", NULLFS))
        self.tmpfs = self.start(Tmpfs())
        self.ext4 = self.start(Ext4Dir())
        self.notes.append(f"ext4 target: {self.ext4.mnt} (df -T: "
                          f"{' '.join(self.ext4.df.split()[:2])}); memfluxfs data dirs and "
                          f"redis dirs are on the same disk")
        if " ext4 " not in f" {self.ext4.df} ":
            self.notes.append("WARNING: the ext4 target is not on ext4")
        port = free_port(6390)
        self.redis = self.start(Redis("redis-everysec", port, "--appendonly", "yes",
                                      "--appendfsync", "everysec",
                                      "--auto-aof-rewrite-percentage", "0"))
        port = free_port(port + 1)
        self.redis_always = self.start(Redis("redis-always", port, "--appendonly", "yes",
                                             "--appendfsync", "always",
                                             "--auto-aof-rewrite-percentage", "0"))
        # memfluxfs's WAL / snapshot and redis's files are on the same disk as ext4
        self.fs_targets = [("memfluxfs", self.mf), ("tmpfs", self.tmpfs),
                           ("nullfs_ll", self.nll), ("nullfs", self.nfs)]

    # ---- 1. shell small writes / reads
    def w_shell(self):
        n, rn = self.sz["shell_n"], self.sz["rcli_n"]
        wr = {t: [] for t, _ in self.fs_targets}
        rd = {t: [] for t, _ in self.fs_targets}
        cw, cr = [], []
        for rep in range(self.reps):
            for t, obj in self.fs_targets:
                pre = f"sh{rep}k"
                wr[t].append(n / run_bash(
                    f'for i in $(seq {n}); do echo v$i > "$D/{pre}$i"; done', obj.kv))
                rd[t].append(n / run_bash(
                    f'for i in $(seq {n}); do read -r v < "$D/{pre}$i"; done', obj.kv))
            p = self.redis.port
            cw.append(rn / run_bash(f'for i in $(seq {rn}); do redis-cli -p {p} SET '
                                    f'sh{rep}k$i v$i >/dev/null; done', ""))
            cr.append(rn / run_bash(f'for i in $(seq {rn}); do redis-cli -p {p} GET '
                                    f'sh{rep}k$i >/dev/null; done', ""))
        for t, _ in self.fs_targets:
            self.res.add(f"1 shell echo > f (N={n})", t, wr[t], "ops/s")
        self.res.add(f"1 shell echo > f (N={n})", "redis-cli SET", cw, "ops/s",
                     note=f"one redis-cli per op, N={rn}")
        for t, _ in self.fs_targets:
            self.res.add(f"1 shell read < f (N={n})", t, rd[t], "ops/s")
        self.res.add(f"1 shell read < f (N={n})", "redis-cli GET", cr, "ops/s",
                     note=f"one redis-cli per op, N={rn}")

    # ---- 2. python open/write/close, open/read/close; redis-py
    def w_python(self):
        n = self.sz["py_n"]
        for nproc in (1, 4):
            wr = {t: [] for t, _ in self.fs_targets}
            rd = {t: [] for t, _ in self.fs_targets}
            rw, rr = [], []
            for rep in range(self.reps):
                pre = f"py{nproc}r{rep}k"
                for t, obj in self.fs_targets:
                    wr[t].append(parallel_ops(_py_files, nproc, n, ("write", obj.kv, pre)))
                    rd[t].append(parallel_ops(_py_files, nproc, n, ("read", obj.kv, pre)))
                rw.append(parallel_ops(_py_redis, nproc, n, ("write", self.redis.port, pre)))
                rr.append(parallel_ops(_py_redis, nproc, n, ("read", self.redis.port, pre)))
            w = f"2 python open/write/close x{nproc}"
            for t, _ in self.fs_targets:
                self.res.add(w, t, wr[t], "ops/s")
            self.res.add(w, "redis-py SET", rw, "ops/s", note="appendfsync everysec")
            w = f"2 python open/read/close x{nproc}"
            for t, _ in self.fs_targets:
                self.res.add(w, t, rd[t], "ops/s")
            self.res.add(w, "redis-py GET", rr, "ops/s")

    # ---- 3. one big file
    def w_dd(self):
        mib = self.sz["dd_mib"]
        targets = self.fs_targets + [("ext4", self.ext4)]
        wr = {t: [] for t, _ in targets}
        rd = {t: [] for t, _ in targets}
        for rep in range(self.reps):
            for t, obj in targets:
                f = f"{obj.kv}/big{rep}"
                b, s = dd(["if=/dev/zero", f"of={f}", "bs=1M", f"count={mib}", "conv=fsync"])
                if b != mib << 20:
                    raise BenchError(f"dd wrote {b} bytes to {t}")
                wr[t].append(b / s / 1e9)
                b, s = dd([f"if={f}", "of=/dev/null", "bs=1M"])
                if b != mib << 20:
                    raise BenchError(f"dd read {b} bytes back from {t}")
                rd[t].append(b / s / 1e9)
                os.unlink(f)
        for t, _ in targets:
            self.res.add(f"3 dd write {mib} MiB conv=fsync", t, wr[t], "GB/s")
        for t, _ in targets:
            self.res.add(f"3 dd read {mib} MiB", t, rd[t], "GB/s",
                         note="page cache" if t in ("ext4", "tmpfs") else "")

    # ---- 4. --fsync=always, concurrent writers
    def _always_run(self, nthreads, secs, prefix):
        d = self.mf_always.kv
        stop = threading.Event()
        go = threading.Barrier(nthreads + 1)
        counts = [0] * nthreads
        errs = []

        def writer(t):
            i = 0
            try:
                go.wait()
                while not stop.is_set():
                    with open(f"{d}/{prefix}t{t}k{i % 500}", "w") as f:
                        f.write("v1234567")
                    i += 1
            except Exception as e:
                errs.append(repr(e))
            counts[t] = i

        ths = [threading.Thread(target=writer, args=(t,)) for t in range(nthreads)]
        for th in ths:
            th.start()
        s0 = self.mf_always.stats()
        go.wait()
        t0 = time.perf_counter()
        time.sleep(secs)
        stop.set()
        for th in ths:
            th.join()
        dt = time.perf_counter() - t0
        s1 = self.mf_always.stats()
        if errs:
            raise BenchError(f"always writer: {errs[0]}")
        recs = int(s1["wal_records"]) - int(s0["wal_records"])
        fs = int(s1["wal_fsyncs"]) - int(s0["wal_fsyncs"])
        ops = sum(counts)
        return ops / dt, (recs / fs if fs else None), fs / dt, (recs / ops if ops else None)

    def w_always(self):
        secs = self.sz["always_secs"]
        # redis-benchmark request counts sized to take roughly `secs` each: a first
        # guess, then the rate the previous repeat measured
        est = {1: 500, 8: 4000, 32: 12000}
        for c in (1, 8, 32):
            mut, rpf, fps, rb, rpo = [], [], [], [], []
            for rep in range(self.reps):
                m, r, f, o = self._always_run(c, secs, f"al{c}r{rep}")
                rpo.append(o)
                mut.append(m)
                rpf.append(r)
                fps.append(f)
                n = max(200, int(est[c] * secs))
                rb.append(redis_benchmark(self.redis_always.port, "-t", "set", "-n", str(n),
                                          "-c", str(c), "-d", "8", "-r", "1000000"))
                est[c] = max(rb[-1], 100)
            w = f"4 fsync=always writers={c}"
            self.res.add(w, "memfluxfs", mut, "mutations/s", note="python threads open/write/close")
            self.res.add(w, "memfluxfs rec/fsync", rpf, "records/fsync",
                         note=f"{fmt(statistics.median([x for x in rpo if x] or [0]))} WAL "
                              f"records per open/write/close")
            self.res.add(w, "memfluxfs fsyncs/s", fps, "fsyncs/s")
            self.res.add(w, "redis always SET", rb, "requests/s", note=f"redis-benchmark -c {c}")

    # ---- 5 + 6. a million keys: load, snapshot, restarts, RSS; latency during snapshot
    def w_big(self):
        n, vs = self.sz["big_keys"], self.sz["big_val"]
        W = f"5 {n:,} keys x {vs} B"
        mf = self.start(MemfluxFS("mf-big", "--fsync=interval", "--wal-threshold=100G"))
        # load (one run: a million keys through FUSE takes minutes)
        r = subprocess.run([str(LOADER), mf.kv, "k", str(n), str(vs), "4"],
                           capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            raise BenchError(f"loader: {r.stderr.strip()}")
        kps = float(r.stdout.split()[5])
        self.res.add(W + " load", "memfluxfs", [kps], "keys/s",
                     note="C loader, 4 threads open/write/close; 1 run")
        st = mf.stats()
        if int(st["keys"]) < n:
            raise BenchError(f"loaded {st['keys']} keys, expected {n}")
        hwm = mf.proc_status("VmHWM")
        self.res.add(W + " RSS", "memfluxfs", [hwm / 2**20], "MiB",
                     note="VmHWM of the loading daemon", higher_better=False)
        self.res.add(W + " memory_bytes", "memfluxfs", [int(st["memory_bytes"]) / 2**20], "MiB",
                     note="store's own count (.ctl/stats)", higher_better=False)
        wal_bytes = int(st["wal_bytes"])
        mf.stop()
        # restart from the WAL only (no snapshot: --wal-threshold=100G)
        walls, recs, rates, replayed = [], [], [], []
        for rep in range(self.reps):
            walls.append(mf.start())
            st = mf.stats()
            recs.append(float(st["recovery_seconds"]))
            replayed.append(int(st["recovery_records_replayed"]))
            rates.append(replayed[-1] / float(st["recovery_seconds"]))
            mf.stop()
        self.res.add(W + " restart WAL only", "memfluxfs", recs, "s",
                     note=f"recovery_seconds; WAL {wal_bytes / 2**20:.0f} MiB, "
                          f"{replayed[-1]} records", higher_better=False)
        self.res.add(W + " restart WAL only wall", "memfluxfs", walls, "s",
                     note="mount command wall time", higher_better=False)
        self.res.add(W + " WAL replay rate", "memfluxfs", rates, "records/s")
        # snapshots (idle)
        mf.start()
        ssec, sbytes, swall, scap = [], [], [], []
        for rep in range(self.reps):
            s = mf.snapshot()
            ssec.append(float(s["last_seconds"]))
            sbytes.append(int(s["last_bytes"]) / 2**20)
            swall.append(s["wall"])
            scap.append(float(s.get("last_capture_ms", "nan")))
        self.res.add(W + " snapshot time", "memfluxfs", ssec, "s", note="last_seconds",
                     higher_better=False)
        self.res.add(W + " snapshot size", "memfluxfs", sbytes, "MiB",
                     note=f"raw {int(s['last_raw_bytes']) / 2**20:.0f} MiB", higher_better=False)
        self.res.add(W + " snapshot capture", "memfluxfs", scap, "ms",
                     note="writers held", higher_better=False)
        # 6. writer latency during a snapshot
        self._latency(mf, n)
        mf.snapshot()           # so the restarts below replay (almost) nothing
        mf.stop()
        walls, recs = [], []
        for rep in range(self.reps):
            walls.append(mf.start())
            st = mf.stats()
            recs.append(float(st["recovery_seconds"]))
            replayed = int(st["recovery_records_replayed"])
            if rep == self.reps - 1:
                rss = mf.proc_status("VmRSS")
            mf.stop()
        self.res.add(W + " restart snapshot", "memfluxfs", recs, "s",
                     note=f"recovery_seconds; {replayed} WAL records replayed",
                     higher_better=False)
        self.res.add(W + " restart snapshot wall", "memfluxfs", walls, "s",
                     note="mount command wall time", higher_better=False)
        self.res.add(W + " RSS after restart", "memfluxfs", [rss / 2**20], "MiB",
                     note="VmRSS after snapshot recovery", higher_better=False)
        self.started.remove(mf)
        self._redis_big(W, n, vs)

    def _latency(self, mf, n):
        pad = self.sz["lat_pad"]
        p50s, p99s, maxs, outs, runs = [], [], [], [], []
        for rep in range(self.reps):
            samples = []
            stop = threading.Event()
            errs = []

            def writer():
                i = 0
                try:
                    while not stop.is_set():
                        k = (i * 7919) % n
                        t0 = time.perf_counter()
                        with open(f"{mf.kv}/k{k}", "w") as f:
                            f.write("x" * 100)
                        t1 = time.perf_counter()
                        samples.append((t0, t1 - t0))
                        i += 1
                except Exception as e:
                    errs.append(repr(e))

            th = threading.Thread(target=writer)
            th.start()
            time.sleep(pad)
            ts = time.perf_counter()
            s = mf.snapshot()
            te = time.perf_counter()
            time.sleep(pad)
            stop.set()
            th.join()
            if errs:
                raise BenchError(f"latency writer: {errs[0]}")
            # an op overlapping the snapshot window counts as during it
            inside = [lat for t0, lat in samples if t0 + lat >= ts and t0 <= te]
            outside = [lat for t0, lat in samples if t0 + lat < ts or t0 > te]
            p50s.append(pct(inside, 50) * 1e3 if inside else None)
            p99s.append(pct(inside, 99) * 1e3 if inside else None)
            maxs.append(max(inside) * 1e3 if inside else None)
            outs.append(pct(outside, 99) * 1e3 if outside else None)
            runs.append(([((t0 - ts) * 1e3, lat * 1e3) for t0, lat in samples],
                         (0.0, (te - ts) * 1e3), len(inside), float(s["last_seconds"])))
        W = f"6 writer latency during snapshot ({n:,} keys)"
        self.res.add(W, "memfluxfs p50", p50s, "ms", higher_better=False)
        self.res.add(W, "memfluxfs p99", p99s, "ms", higher_better=False)
        self.res.add(W, "memfluxfs max", maxs, "ms", higher_better=False)
        self.res.add(W, "memfluxfs p99 outside", outs, "ms",
                     note="same writer, outside the snapshot window", higher_better=False)
        # chart the repeat whose p99 is the median one
        order = sorted(range(len(runs)), key=lambda i: (p99s[i] is None, p99s[i] or 0))
        pick = order[len(order) // 2]
        self.latency, self.lat_window = runs[pick][0], runs[pick][1]
        self.notes.append(f"latency chart: repeat {pick + 1}, {runs[pick][2]} ops inside a "
                          f"{runs[pick][1][1]:.0f} ms snapshot window")
        with open(OUT / "latency.tsv", "w") as f:
            f.write("t_ms_from_trigger\tlatency_ms\n")
            for t, lat in self.latency:
                f.write(f"{t:.3f}\t{lat:.4f}\n")

    def _redis_big(self, W, n, vs):
        port = free_port(self.redis_always.port + 1)
        rd = Redis("redis-big", port, "--appendfsync", "everysec",
                   "--auto-aof-rewrite-percentage", "0")
        self.started.append(rd)
        rd.start("--appendonly", "yes")
        t0 = time.perf_counter()
        rps = redis_benchmark(port, "-t", "set", "-n", str(n), "-r", "100000000", "-d", str(vs))
        load_wall = time.perf_counter() - t0
        c = rd.client()
        keys = c.dbsize()
        rss = int(c.info("memory")["used_memory_rss"])
        self.res.add(W + " load", "redis", [rps], "keys/s",
                     note=f"redis-benchmark -c 50 -r 1e8: {keys} distinct keys; 1 run")
        self.res.add(W + " RSS", "redis", [rss / 2**20], "MiB",
                     note=f"used_memory_rss, {keys} keys", higher_better=False)
        t0 = time.perf_counter()
        c.save()
        save_s = time.perf_counter() - t0
        c.close()
        self.res.add(W + " snapshot time", "redis", [save_s], "s", note="SAVE (RDB)",
                     higher_better=False)
        rdb = rd.dir / "dump.rdb"
        self.res.add(W + " snapshot size", "redis", [rdb.stat().st_size / 2**20], "MiB",
                     note="dump.rdb", higher_better=False)
        aof_bytes = sum(p.stat().st_size for p in (rd.dir / "appendonlydir").iterdir())
        rd.stop()
        walls, loads = [], []
        for rep in range(self.reps):
            walls.append(rd.start("--appendonly", "no", logname=f"rdb{rep}.log"))
            loads.append(rd.loaded_seconds("rdb"))
            rd.stop()
        self.res.add(W + " restart snapshot", "redis RDB", loads, "s",
                     note="'DB loaded from disk'", higher_better=False)
        self.res.add(W + " restart snapshot wall", "redis RDB", walls, "s",
                     note="start to PING", higher_better=False)
        walls, loads, rates = [], [], []
        for rep in range(self.reps):
            walls.append(rd.start("--appendonly", "yes", logname=f"aof{rep}.log"))
            loads.append(rd.loaded_seconds("aof"))
            rates.append(n / loads[-1] if loads[-1] else None)
            rd.stop()
        self.res.add(W + " restart WAL only", "redis AOF", loads, "s",
                     note=f"'DB loaded from append only file'; AOF {aof_bytes / 2**20:.0f} MiB",
                     higher_better=False)
        self.res.add(W + " restart WAL only wall", "redis AOF", walls, "s",
                     note="start to PING", higher_better=False)
        self.res.add(W + " WAL replay rate", "redis AOF", rates, "records/s",
                     note=f"{n} SETs in the AOF")
        self.started.remove(rd)
        shutil.rmtree(rd.dir, ignore_errors=True)

    # ---- targets from the issue
    def check_targets(self):
        g = self.res.get
        T = self.res.targets
        sz = self.sz
        n, mib, big = sz["shell_n"], sz["dd_mib"], sz["big_keys"]

        def t(name, a, b, need, fmt_fig=None, lower=False):
            """met when a/b >= need (or a/b <= need with lower=True)."""
            if a is None or b in (None, 0):
                T.append((name, "n/a", None))
                return
            r = a / b
            met = r <= need if lower else r >= need
            ns = "1/3" if abs(need - 1 / 3) < 1e-9 else f"{need:g}"
            T.append((name, f"{r:.2f}x (need {'<=' if lower else '>='} {ns}x)"
                      + (f"; {fmt_fig}" if fmt_fig else ""), met))

        for w in (f"1 shell echo > f (N={n})", f"1 shell read < f (N={n})",
                  "2 python open/write/close x1", "2 python open/read/close x1"):
            t(f"{w}: memfluxfs >= 1.0x nullfs_ll", g(w, "memfluxfs"), g(w, "nullfs_ll"), 1.0,
              f"{fmt(g(w, 'memfluxfs'))} vs {fmt(g(w, 'nullfs_ll'))} ops/s")
        for w, c in ((f"1 shell echo > f (N={n})", "redis-cli SET"),
                     (f"1 shell read < f (N={n})", "redis-cli GET")):
            t(f"{w}: memfluxfs >= 100x {c}", g(w, "memfluxfs"), g(w, c), 100,
              f"{fmt(g(w, 'memfluxfs'))} vs {fmt(g(w, c))} ops/s")
        for k in (1, 4):
            w = f"2 python open/write/close x{k}"
            t(f"{w}: memfluxfs >= 0.5x redis-py SET", g(w, "memfluxfs"), g(w, "redis-py SET"),
              0.5, f"{fmt(g(w, 'memfluxfs'))} vs {fmt(g(w, 'redis-py SET'))} ops/s")
        w = f"3 dd write {mib} MiB conv=fsync"
        t(f"{w}: memfluxfs >= 0.5x nullfs_ll", g(w, "memfluxfs"), g(w, "nullfs_ll"), 0.5,
          f"{fmt(g(w, 'memfluxfs'))} vs {fmt(g(w, 'nullfs_ll'))} GB/s")
        t(f"{w}: memfluxfs >= 0.8x ext4", g(w, "memfluxfs"), g(w, "ext4"), 0.8,
          f"{fmt(g(w, 'memfluxfs'))} vs {fmt(g(w, 'ext4'))} GB/s")
        w = f"3 dd read {mib} MiB"
        t(f"{w}: memfluxfs >= 1.0x nullfs_ll", g(w, "memfluxfs"), g(w, "nullfs_ll"), 1.0,
          f"{fmt(g(w, 'memfluxfs'))} vs {fmt(g(w, 'nullfs_ll'))} GB/s")
        for c in (8, 32):
            w = f"4 fsync=always writers={c}"
            t(f"{w}: memfluxfs >= redis always", g(w, "memfluxfs"), g(w, "redis always SET"), 1.0,
              f"{fmt(g(w, 'memfluxfs'))} mutations/s vs {fmt(g(w, 'redis always SET'))} req/s")
        W = f"5 {big:,} keys x {sz['big_val']} B"
        a, b = g(W + " restart snapshot", "memfluxfs"), g(W + " restart snapshot", "redis RDB")
        t(f"{W} restart: memfluxfs <= 1/3 redis RDB load", a, b, 1 / 3,
          f"{fmt(a)} s vs {fmt(b)} s", lower=True)
        a, b = g(W + " WAL replay rate", "memfluxfs"), g(W + " WAL replay rate", "redis AOF")
        t(f"{W} WAL replay rate >= 2x redis AOF", a, b, 2.0,
          f"{fmt(a)} vs {fmt(b)} records/s")
        w = f"6 writer latency during snapshot ({big:,} keys)"
        p99 = g(w, "memfluxfs p99")
        T.append((f"{w}: p99 <= 10 ms", "n/a" if p99 is None else f"{p99:.2f} ms",
                  None if p99 is None else p99 <= 10))
        a, b = g(W + " RSS", "memfluxfs"), g(W + " RSS", "redis")
        t(f"{W} RSS: memfluxfs <= redis used_memory_rss", a, b, 1.0,
          f"{fmt(a)} MiB vs {fmt(b)} MiB", lower=True)

    # ---- output
    def report(self, la0, la1, elapsed):
        first = {}
        for i, r in enumerate(self.res.rows):
            first.setdefault(r["workload"], i)
        rows = sorted(self.res.rows, key=lambda r: (int(r["workload"].split()[0]),
                                                    first[r["workload"]]))
        hdr = ("workload", "target", "value", "unit", "x tmpfs", "x nullfs_ll", "note")
        table = [hdr]
        for r in rows:
            table.append((r["workload"], r["target"], fmt(r["value"]), r["unit"],
                          fmt_ratio(self.res.ratio(r, "tmpfs")),
                          fmt_ratio(self.res.ratio(r, "nullfs_ll")), r["note"]))
        wid = [max(len(row[i]) for row in table) for i in range(len(hdr))]
        lines = []
        mode = "quick" if self.o.quick else "full"
        lines.append(f"memfluxfs bench ({mode}, median of {self.reps}; {elapsed:.0f} s) "
                     f"loadavg start {' '.join(la0)} end {' '.join(la1)}")
        for i, row in enumerate(table):
            cells = []
            for j, c in enumerate(row):
                cells.append(c.rjust(wid[j]) if j in (2, 4, 5) else c.ljust(wid[j]))
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in wid))
        lines.append("")
        lines.append("targets (issue #6):")
        for name, fig, met in self.res.targets:
            tag = "n/a    " if met is None else ("met    " if met else "NOT MET")
            lines.append(f"  {tag}  {name}: {fig}")
        for note in self.notes:
            lines.append(f"note: {note}")
        for e in self.res.errors:
            lines.append(f"ERROR: {e}")
        print("\n".join(lines), flush=True)

        with open(OUT / "results.tsv", "w") as f:
            f.write("workload\ttarget\tvalue\tunit\tratio_tmpfs\tratio_nullfs_ll\tsamples\tnote\n")
            f.write(f"loadavg\tstart\t{la0[0]}\t1min\t\t\t{' '.join(la0)}\t\n")
            for r in rows:
                rt, rn = self.res.ratio(r, "tmpfs"), self.res.ratio(r, "nullfs_ll")
                f.write("\t".join([r["workload"], r["target"],
                                   "" if r["value"] is None else f"{r['value']:.6g}", r["unit"],
                                   "" if rt is None else f"{rt:.4g}",
                                   "" if rn is None else f"{rn:.4g}",
                                   " ".join(f"{s:.6g}" for s in r["samples"]),
                                   r["note"]]) + "\n")
            f.write(f"loadavg\tend\t{la1[0]}\t1min\t\t\t{' '.join(la1)}\t\n")
            for name, fig, met in self.res.targets:
                f.write(f"target\t{name}\t{'' if met is None else int(met)}\tmet\t\t\t\t{fig}\n")
        (OUT / "table.txt").write_text("\n".join(lines) + "\n")
        try:
            self.chart()
        except Exception as e:      # a chart is not worth failing the run over
            log(f"bench: chart failed: {e!r}")

    def chart(self):
        bars = []
        for name, fig, met in self.res.targets:
            m = re.match(r"([\d.]+)x \(need (<=|>=) ([\d./]+)x\)", fig)
            if not m:
                if "p99" in name and fig.endswith(" ms"):
                    v = float(fig.split()[0])
                    bars.append((name, 10.0 / v if v else 0.0))
                continue
            r, op = float(m.group(1)), m.group(2)
            need = 1 / 3 if m.group(3) == "1/3" else float(m.group(3))
            score = r / need if op == ">=" else (need / r if r else 0.0)
            bars.append((name, score))
        short = []
        for name, s in bars:
            lab = re.sub(r"^\d+ ", "", name)
            lab = lab.replace("memfluxfs", "mf").replace(" open/", " ").replace("/close", "")
            lab = re.sub(r"\(N=\d+\)|[\d,]+ keys x \d+ B |\([\d,]+ keys\)", "", lab)
            lab = re.sub(r"\s+", " ", lab.replace("writer latency during snapshot", "snapshot"))
            short.append((lab.replace('"', "'"), max(s, 1e-3)))
        with open(OUT / "ratios.dat", "w") as f:
            for i, (lab, s) in enumerate(short):
                f.write(f'{i}\t{s:.5g}\t"{lab}"\n')
        lat = OUT / "latency.tsv"
        have_lat = lat.exists() and self.latency
        if shutil.which("gnuplot"):
            w0, w1 = self.lat_window
            gp = f"""
set terminal pngcairo size 1400,1400 font ",9" noenhanced
set output "{OUT}/chart.png"
set multiplot layout 2,1
set title "memfluxfs vs the issue #6 targets: achieved / required (>= 1 is met)"
set style fill solid 0.7
set boxwidth 0.7
set logscale y
set yrange [0.01:*]
set grid y
set xtics rotate by 50 right
set bmargin 22
set lmargin 14
set key off
plot "{OUT}/ratios.dat" using 1:2:($2>=1?0x2ca02c:0xd62728):xtic(3) with boxes lc rgb variable, 1 with lines lc rgb "black" dt 2
set yrange [0.05:*]
set bmargin 4
set xtics norotate
set title "writer open/write/close latency around a snapshot (shaded: snapshot running; log scale)"
set xlabel "ms from snapshot trigger"
set ylabel "latency, ms"
set object 1 rect from {w0},graph 0 to {w1},graph 1 fc rgb "#ffe0a0" fs solid 0.5 behind
"""
            if have_lat:
                gp += f'plot "{lat}" using 1:2 every ::1 with points pt 7 ps 0.3 lc rgb "#1f77b4"\n'
            else:
                gp += 'plot 0 title "no latency data"\n'
            gp += "unset multiplot\n"
            (OUT / "chart.gp").write_text(gp)
            r = subprocess.run(["gnuplot", str(OUT / "chart.gp")], capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(r.stderr.strip()[-500:])
            return
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(14, 14))
        a1.bar(range(len(short)), [s for _, s in short],
               color=["#2ca02c" if s >= 1 else "#d62728" for _, s in short])
        a1.set_yscale("log")
        a1.axhline(1, color="black", ls="--")
        a1.set_xticks(range(len(short)), [lab for lab, _ in short], rotation=50, ha="right")
        a1.set_title("memfluxfs vs the issue #6 targets: achieved / required (>= 1 is met)")
        if have_lat:
            a2.scatter([t for t, _ in self.latency], [lt for _, lt in self.latency], s=2)
            a2.axvspan(*self.lat_window, color="orange", alpha=0.3)
            a2.set_yscale("log")
        a2.set_xlabel("ms from snapshot trigger")
        a2.set_ylabel("latency, ms")
        fig.tight_layout()
        fig.savefig(OUT / "chart.png")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 repeat, tiny sizes (< 60 s)")
    ap.add_argument("--reps", type=int, help="repeats per figure (default 3; --quick 1)")
    ap.add_argument("--only", help="comma-separated workload name fragments (shell,python,"
                                   "dd,always,keys)")
    opts = ap.parse_args()

    def on_signal(sig, frame):
        raise SystemExit(128 + sig)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, on_signal)

    b = Bench(opts)
    la0 = loadavg()
    t0 = time.perf_counter()
    rc = 0
    try:
        b.setup()
        b.workload("1 shell", b.w_shell)
        b.workload("2 python", b.w_python)
        b.workload("3 dd", b.w_dd)
        b.workload("4 always", b.w_always)
        b.workload("5+6 keys", b.w_big)
    except BenchError as e:
        log(f"bench: FAILED: {e}")
        rc = 1
    finally:
        stopped = b.stop_all()
    if rc == 0:
        b.check_targets()
        b.report(la0, loadavg(), time.perf_counter() - t0)
        if b.res.errors or not stopped:
            rc = 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
