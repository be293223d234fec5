#!/usr/bin/python3
"""Small-op rates on the remote backend (issue 17) beside redis-cli and
redis-py against the same server: one private redis-server, or with
--cluster a 3-master + 3-replica cluster, on loopback.

    bench/remote_bench.py [--cluster] [--n N] [--quick] [--out FILE]

Each client does the same N sequential one-key operations, one at a time
(no pipelining, one connection), on fresh keys:
  set     memfluxfs: open(O_TRUNC) + write + close of /kv/bK   redis: SET bK v
  get     memfluxfs: open + read + close of /kv/bK              redis: GET bK
  append  memfluxfs: open(O_APPEND) + write + close of /kv/log  redis: APPEND log v
  rpush   memfluxfs: >> /lists/q (one line)                     redis: RPUSH q v
  lpop    memfluxfs: cat /.ctl/pop/q (open + read)              redis: LPOP q
redis-cli runs `redis-cli -r N CMD` (one connection, N round trips; the
same key each time); redis-py a Python loop.  Prints ops/s and the
ratio memfluxfs / redis-py.  Memfluxfs is built in build/ (or
MEMFLUXFS_BIN).
"""
import argparse
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BIN = os.environ.get("MEMFLUXFS_BIN", str(ROOT / "build/fs/memfluxfs"))


def free_pair():
    for _ in range(1000):
        p = random.randrange(20000, 30000)
        try:
            for q in (p, p + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", q))
            return p
        except OSError:
            pass
    raise SystemExit("no free port")


def wait_ping(port):
    end = time.monotonic() + 30
    while time.monotonic() < end:
        r = subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True)
        if r.stdout.strip() == b"PONG":
            return
        time.sleep(0.02)  # polling a server that is starting: no event to wait on
    raise SystemExit(f"redis-server on {port} did not start")


def start_servers(tmp, cluster):
    procs, ports = [], []
    for _ in range(6 if cluster else 1):
        port = free_pair()
        d = tmp / f"r{port}"
        d.mkdir()
        extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"] if cluster else []
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(d),
             "--save", "", "--appendonly", "no", "--logfile", str(d / "log"), *extra]))
        ports.append(port)
    for p in ports:
        wait_ping(p)
    if cluster:
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "1",
                        "--cluster-yes"], check=True, capture_output=True)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if all(b"cluster_state:ok" in subprocess.run(
                    ["redis-cli", "-p", str(p), "CLUSTER", "INFO"],
                    capture_output=True).stdout for p in ports):
                break
            time.sleep(0.05)
    return procs, ports


def rate(n, fn):
    t0 = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t0)


def mount_ops(mnt, n):
    kv, lists, pop = mnt / "kv", mnt / "lists", mnt / ".ctl" / "pop"

    def w(path, data, flags):
        fd = os.open(path, flags, 0o644)
        os.write(fd, data)
        os.close(fd)

    def r(path):
        fd = os.open(path, os.O_RDONLY)
        os.read(fd, 65536)
        os.close(fd)

    wr = os.O_WRONLY | os.O_CREAT
    return {
        "set": rate(n, lambda i: w(kv / f"b{i}", b"value", wr | os.O_TRUNC)),
        "get": rate(n, lambda i: r(kv / f"b{i}")),
        "append": rate(n, lambda i: w(kv / "log", b"v", wr | os.O_APPEND)),
        "rpush": rate(n, lambda i: w(lists / "q", b"v\n", wr | os.O_APPEND)),
        "lpop": rate(n, lambda i: r(pop / "q")),
    }


def redis_py_ops(port, cluster, n):
    import redis
    if cluster:
        from redis.cluster import RedisCluster
        c = RedisCluster(host="127.0.0.1", port=port)
    else:
        c = redis.Redis(port=port)
    return {
        "set": rate(n, lambda i: c.set(f"p{i}", b"value")),
        "get": rate(n, lambda i: c.get(f"p{i}")),
        "append": rate(n, lambda i: c.append("plog", b"v")),
        "rpush": rate(n, lambda i: c.rpush("pq", b"v")),
        "lpop": rate(n, lambda i: c.lpop("pq")),
    }


def redis_cli_ops(port, cluster, n):
    out = {}
    for name, cmd in (("set", ["SET", "c1", "value"]), ("get", ["GET", "c1"]),
                      ("append", ["APPEND", "clog", "v"]), ("rpush", ["RPUSH", "cq", "v"]),
                      ("lpop", ["LPOP", "cq"])):
        t0 = time.perf_counter()
        subprocess.run(["redis-cli", *(["-c"] if cluster else []), "-p", str(port), "-r", str(n),
                        *cmd], check=True, stdout=subprocess.DEVNULL)
        out[name] = n / (time.perf_counter() - t0)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cluster", action="store_true")
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--quick", action="store_true", help="N = 300")
    ap.add_argument("--out", help="also write the table here")
    a = ap.parse_args()
    n = 300 if a.quick else a.n
    for tool in ("redis-server", "redis-cli"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} missing: run scripts/install-deps")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="memflux-remote-bench."))
    procs, mnt = [], tmp / "mnt"
    mounted = False
    try:
        procs, ports = start_servers(tmp, a.cluster)
        url = (f"redis+cluster://127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}" if a.cluster
               else f"redis://127.0.0.1:{ports[0]}")
        mnt.mkdir()
        subprocess.run([BIN, f"--data-dir={tmp / 'data'}", f"--store={url}", str(mnt)],
                       check=True)
        mounted = True
        res = {"memfluxfs": mount_ops(mnt, n), "redis-py": redis_py_ops(ports[0], a.cluster, n),
               "redis-cli -r": redis_cli_ops(ports[0], a.cluster, n)}
        load = open("/proc/loadavg").read().split()[:3]
        lines = [f"remote backend small ops, {'3+3 cluster' if a.cluster else 'one redis-server'}"
                 f" on loopback, N={n} sequential ops per client, load {' '.join(load)}",
                 f"{'op':8} {'memfluxfs':>12} {'redis-py':>12} {'redis-cli -r':>13} "
                 f"{'mount/py':>9}"]
        for op in res["memfluxfs"]:
            m, p, c = (res[k][op] for k in ("memfluxfs", "redis-py", "redis-cli -r"))
            lines.append(f"{op:8} {m:10.0f}/s {p:10.0f}/s {c:11.0f}/s {m / p:8.2f}x")
        text = "\n".join(lines)
        print(text)
        if a.out:
            with open(a.out, "a") as f:
                f.write(text + "\n\n")
    finally:
        if mounted:
            subprocess.run(["fusermount3", "-u", str(mnt)])
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
