#!/usr/bin/python3
"""Folder figures (issue 14): listing a folder of N keys and renaming a folder
of M keys through the mount, with tmpfs alongside.

    bench/folders.py [--keys 1000000] [--rename 100000] [--bin build/fs/memfluxfs]

The keys are loaded over RESP (pipelined SETs of "big/k<i>" and
"mv/src/<i % 100>/k<i>", the way a Redis user makes folders), so loading does
not dominate the run; the listing and the rename go through the mount.  The
store's child index makes both O(folder) and O(subtree): a second, small
folder listed and renamed next to the big ones shows that neither costs
O(keyspace).  Prints one line per figure; no pass/fail.
"""
import argparse
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resp_cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def resp_load(sock_path, keys, batch=5000):
    """SET every key (value = its index) over one pipelined connection."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    buf = b""
    for i in range(0, len(keys), batch):
        chunk = keys[i:i + batch]
        s.sendall(b"".join(resp_cmd("SET", k, str(j)) for j, k in enumerate(chunk, i)))
        want = len(chunk)
        while want:
            data = s.recv(1 << 20)
            if not data:
                raise RuntimeError("RESP connection closed")
            buf += data
            n = buf.count(b"\r\n")
            if buf.count(b"-"):
                raise RuntimeError(buf[:200])
            take = min(n, want)
            want -= take
            cut = 0
            for _ in range(take):
                cut = buf.index(b"\r\n", cut) + 2
            buf = buf[cut:]
    s.close()


def timed(f):
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


def list_count(d):
    with os.scandir(d) as it:
        return sum(1 for _ in it)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--rename", type=int, default=100_000)
    ap.add_argument("--bin", default=os.environ.get("MEMFLUXFS_BIN",
                                                    os.path.join(ROOT, "build/fs/memfluxfs")))
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="mf-folders-bench-", dir="/var/tmp")
    mnt, data, sock = (os.path.join(tmp, x) for x in ("mnt", "data", "s.sock"))
    os.mkdir(mnt)
    shm = tempfile.mkdtemp(prefix="mf-folders-bench-", dir="/dev/shm")
    try:
        subprocess.run([a.bin, f"--data-dir={data}", f"--resp=unix:{sock}", "--fsync=none", mnt],
                       check=True)
        kv = os.path.join(mnt, "kv")
        big = [f"big/k{i:07d}" for i in range(a.keys)]
        mv = [f"mv/src/{i % 100}/k{i}" for i in range(a.rename)]
        small = [f"small/src/k{i}" for i in range(10)]
        t, _ = timed(lambda: resp_load(sock, big + mv + small))
        print(f"load: {len(big) + len(mv) + len(small)} keys over RESP in {t:.1f} s")
        t, n = timed(lambda: list_count(os.path.join(kv, "big")))
        print(f"memfluxfs: list a folder of {n} keys (cold, scandir): {t:.2f} s")
        t, n = timed(lambda: list_count(os.path.join(kv, "big")))
        print(f"memfluxfs: list it again: {t:.2f} s")
        t, n = timed(lambda: list_count(os.path.join(kv, "small", "src")))
        print(f"memfluxfs: list a folder of {n} keys next to them: {t * 1e3:.2f} ms")
        t, _ = timed(lambda: os.rename(os.path.join(kv, "mv", "src"), os.path.join(kv, "mv", "dst")))
        print(f"memfluxfs: rename a folder of {a.rename} keys (100 subfolders): {t * 1e3:.1f} ms")
        t, _ = timed(lambda: os.rename(os.path.join(kv, "small", "src"),
                                       os.path.join(kv, "small", "dst")))
        print(f"memfluxfs: rename a folder of 10 keys: {t * 1e3:.2f} ms")
        assert list_count(os.path.join(kv, "mv", "dst")) == 100
        # tmpfs alongside (the same shapes, made with the same syscalls
        # the listing and rename use; the files themselves are created
        # directly, which tmpfs does fast)
        os.makedirs(os.path.join(shm, "big"))
        t, _ = timed(lambda: [open(os.path.join(shm, "big", f"k{i:07d}"), "w").close()
                              for i in range(a.keys)])
        print(f"tmpfs: create {a.keys} files: {t:.1f} s")
        t, n = timed(lambda: list_count(os.path.join(shm, "big")))
        print(f"tmpfs: list a folder of {n} files: {t:.2f} s")
        for i in range(a.rename):
            d = os.path.join(shm, "mv", "src", str(i % 100))
            if i < 100:
                os.makedirs(d)
            open(os.path.join(d, f"k{i}"), "w").close()
        t, _ = timed(lambda: os.rename(os.path.join(shm, "mv", "src"), os.path.join(shm, "mv", "dst")))
        print(f"tmpfs: rename a folder of {a.rename} files: {t * 1e3:.2f} ms")
    finally:
        pid = None
        try:
            pid = int(open(os.path.join(data, "memflux.lock")).read().strip())
        except (OSError, ValueError):
            pass
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        if pid:  # the daemon exits after the unmount: wait, then remove its data dir
            try:
                fd = os.pidfd_open(pid)
                select.select([fd], [], [], 120)
                os.close(fd)
            except ProcessLookupError:
                pass
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
