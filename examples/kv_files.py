#!/usr/bin/env python3
"""kv_files.py — use memfluxfs /kv keys with ordinary Python file I/O.

    usage: python3 examples/kv_files.py MOUNTPOINT

Every key under MOUNT/kv/ is a file: open/write is SET, open(..., "a") is
APPEND, read is GET, os.rename is RENAME (atomic, replaces the target),
os.remove is DEL, and os.scandir lists the keys with their sizes and mtimes.
A handle's writes become visible to others when it is closed.
"""
import os
import sys
import time


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} MOUNTPOINT")
    kv = os.path.join(sys.argv[1], "kv")
    if not os.path.isdir(kv):
        sys.exit(f"{sys.argv[1]} does not look like a memfluxfs mount")

    def path(key):
        return os.path.join(kv, key)

    # SET: text and binary values
    with open(path("greeting"), "w") as f:
        f.write("hello\n")
    with open(path("blob"), "wb") as f:
        f.write(bytes(range(256)) * 4)
    print("greeting =", repr(open(path("greeting")).read()))

    # APPEND
    with open(path("greeting"), "a") as f:
        f.write("world\n")
    with open(path("log"), "a") as f:
        for i in range(3):
            f.write(f"event {i}\n")
    print("greeting =", repr(open(path("greeting")).read()))

    # GET, also partially (seek/pread work like on any file)
    with open(path("blob"), "rb") as f:
        f.seek(250)
        print("blob[250:260] =", f.read(10).hex())

    # counters: read-modify-write
    for _ in range(5):
        try:
            n = int(open(path("counter")).read())
        except FileNotFoundError:
            n = 0
        with open(path("counter"), "w") as f:
            f.write(str(n + 1))
    print("counter =", open(path("counter")).read())

    # RENAME: atomic, replaces an existing target
    os.rename(path("log"), path("events"))
    print("renamed log -> events:", not os.path.exists(path("log")))

    # listing with sizes
    print("keys:")
    for e in sorted(os.scandir(kv), key=lambda e: e.name):
        st = e.stat()
        when = time.strftime("%H:%M:%S", time.localtime(st.st_mtime))
        print(f"  {e.name:<10} {st.st_size:>6} bytes  {when}")

    # DEL
    os.remove(path("blob"))
    print("after delete:", sorted(os.listdir(kv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
