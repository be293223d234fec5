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


# ---------- RESP, compared with redis-server 7 ----------

from test_resp import REDIS_CLI, REDIS_SERVER, RawClient, mfr, redis_ref  # noqa: E402,F401

needs_redis = pytest.mark.skipif(not (REDIS_SERVER and REDIS_CLI),
                                 reason="redis-server / redis-cli not installed")

TYPES_SCRIPT = [
    # counters
    ["INCR", "c"], ["INCRBY", "c", "10"], ["DECR", "c"], ["DECRBY", "c", "-5"], ["GET", "c"],
    ["INCRBY", "c", "x"], ["INCRBY", "c", "1.5"], ["DECRBY", "c", "-9223372036854775808"],
    ["SET", "s", "abc"], ["INCR", "s"], ["DECR", "s"], ["INCRBYFLOAT", "s", "1"],
    ["SET", "m", "9223372036854775807"], ["INCR", "m"], ["GET", "m"],
    ["SET", "m", "-9223372036854775808"], ["DECR", "m"], ["DECRBY", "m", "1"],
    ["SET", "z", "007"], ["INCR", "z"], ["SET", "z", " 1"], ["INCR", "z"], ["SET", "z", "+1"],
    ["INCR", "z"], ["SET", "z", ""], ["INCR", "z"],
    ["INCRBYFLOAT", "f", "10.5"], ["INCRBYFLOAT", "f", "0.1"], ["INCRBYFLOAT", "f", "-5"],
    ["INCRBYFLOAT", "f", "5.0e3"], ["INCRBYFLOAT", "f", "-5005.6"], ["GET", "f"],
    ["INCRBYFLOAT", "f", "abc"], ["INCRBYFLOAT", "f", "inf"], ["INCRBYFLOAT", "f", "nan"],
    ["INCRBYFLOAT", "c", "1.25"], ["GET", "c"], ["INCR", "c"],
    ["INCR"], ["INCRBY", "c"], ["INCRBYFLOAT", "c", "1", "2"],
    # sets
    ["SADD", "st", "a", "b", "a"], ["SADD", "st", "c"], ["SCARD", "st"], ["SISMEMBER", "st", "a"],
    ["SISMEMBER", "st", "zz"], ["SISMEMBER", "nost", "a"], ["SMEMBERS", "st"],
    ["SMEMBERS", "nost"], ["SCARD", "nost"], ["SREM", "st", "a", "zz"], ["SREM", "nost", "a"],
    ["SMEMBERS", "st"], ["SADD", "st", ""], ["SCARD", "st"], ["TYPE", "st"],
    ["SMOVE", "st", "dst", "b"], ["SMOVE", "st", "dst", "zz"], ["SMOVE", "nost", "dst", "b"],
    ["SMOVE", "st", "st", "c"], ["SMOVE", "st", "st", "zz"], ["SMEMBERS", "dst"],
    ["SMOVE", "st", "s", "c"], ["SMOVE", "s", "st", "c"], ["SCARD", "st"],
    ["SREM", "st", "c", ""], ["EXISTS", "st"], ["SMOVE", "dst", "st", "b"], ["EXISTS", "dst"],
    # wrong types both ways
    ["SADD", "s", "x"], ["SREM", "s", "x"], ["SMEMBERS", "s"], ["SISMEMBER", "s", "x"],
    ["SCARD", "s"], ["GET", "st"], ["LPUSH", "st", "x"], ["INCR", "st"], ["APPEND", "st", "x"],
    ["SCAN", "0", "TYPE", "set"], ["SET", "st", "now-a-string"], ["TYPE", "st"],
    ["SADD", "st"], ["SCARD"], ["SMOVE", "a", "b"], ["DBSIZE"],
]


def canon(cmd, reply):
    """SMEMBERS and SCAN replies are unordered: compare their elements sorted."""
    if cmd[0].upper() not in ("SMEMBERS", "SCAN") or not reply.startswith(b"*"):
        return reply
    parts = reply.split(b"\r\n")
    return parts[0] + b"".join(sorted(b"|".join(parts[i:i + 2]) for i in range(1, len(parts) - 1, 2)))


def run_types(port):
    c = RawClient(port)
    try:
        c.cmd("FLUSHDB")
        return [(cmd, canon(cmd, c.cmd(*cmd))) for cmd in TYPES_SCRIPT]
    finally:
        c.close()


@needs_redis
def test_resp_counters_sets_match_redis(mfr, redis_ref):
    m, port = mfr
    want = run_types(redis_ref)
    got = run_types(port)
    bad = [(cmd, w, g) for (cmd, w), (_, g) in zip(want, got) if w != g]
    assert not bad, "\n".join(f"{c}: redis {w!r} memfluxfs {g!r}" for c, w, g in bad)


@needs_redis
def test_resp_and_mount_share_counters_and_sets(mfr):
    m, port = mfr
    c = RawClient(port)
    try:
        assert c.cmd("INCRBY", "hits", "40") == b":40\r\n"
        assert sh(f"echo 2 >> {m.ctl('incr') / 'hits'}").returncode == 0
        assert c.cmd("GET", "hits") == b"$2\r\n42\r\n"
        assert c.cmd("SADD", "tags", "x", "y") == b":2\r\n"
        assert members(sets(m, "tags")) == {"x", "y"}  # the kernel was told
        assert sh(f"echo z >> {sets(m, 'tags')}").returncode == 0
        assert c.cmd("SISMEMBER", "tags", "z") == b":1\r\n"
        assert c.cmd("SMOVE", "tags", "other", "x") == b":1\r\n"
        assert members(sets(m, "other")) == {"x"}
        assert members(sets(m, "tags")) == {"y", "z"}
        assert c.cmd("SADD", "bad", "a\nb").startswith(b"-ERR memfluxfs set members are lines")
    finally:
        c.close()


@needs_redis
def test_resp_incr_concurrent_clients_and_mount(mfr):
    """4 RESP clients x 200 INCR and 2 shell loops x 100 through the mount: 1000."""
    m, port = mfr

    def client():
        c = RawClient(port)
        for _ in range(200):
            assert c.cmd("INCR", "n").startswith(b":")
        c.close()

    import threading
    ts = [threading.Thread(target=client) for _ in range(4)]
    for t in ts:
        t.start()
    loop = f"for i in $(seq 100); do echo 1 >> {m.ctl('incr') / 'n'} || exit 1; done"
    ps = [subprocess.Popen(["bash", "-c", loop]) for _ in range(2)]
    for t in ts:
        t.join()
    assert all(p.wait(timeout=300) == 0 for p in ps)
    assert m.kv("n").read_text() == "1000"


# ---------- blocking pops (/.ctl/bpop) ----------

import signal  # noqa: E402
import time  # noqa: E402


def wait_blocked(m, n, timeout=30):
    """Until n pops are waiting (stats' blocked_pops): a condition, not a sleep."""
    end = time.monotonic() + timeout
    while int(m.stats()["blocked_pops"]) != n:
        assert time.monotonic() < end, f"blocked_pops never reached {n}"
        time.sleep(0.01)


def test_bpop_four_consumers_each_element_once(mf):
    q = mf.ctl("bpop") / "q"
    n = 400
    consumer = f"while :; do e=$(cat {q}) || exit 1; [ \"$e\" = STOP ] && exit 0; echo \"$e\"; done"
    ps = [subprocess.Popen(["bash", "-c", consumer], stdout=subprocess.PIPE, text=True)
          for _ in range(4)]
    wait_blocked(mf, 4)  # they wait before the list even exists
    for i in range(n):
        assert sh(f"echo e{i} >> {mf.lists('q')}").returncode == 0
    assert sh(f"printf 'STOP\\nSTOP\\nSTOP\\nSTOP\\n' >> {mf.lists('q')}").returncode == 0
    got = []
    for p in ps:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        got += out.split()
    assert sorted(got) == sorted(f"e{i}" for i in range(n))  # each exactly once
    assert mf.lists("q").read_bytes() == b""


def test_bpop_fifo_among_waiters(mf):
    q = mf.ctl("bpop") / "f"
    ps = []
    for i in range(3):
        ps.append(subprocess.Popen(["cat", str(q)], stdout=subprocess.PIPE))
        wait_blocked(mf, i + 1)  # so their arrival order is known
    assert sh(f"printf 'a\\nb\\nc\\n' >> {mf.lists('f')}").returncode == 0
    assert [p.communicate(timeout=60)[0] for p in ps] == [b"a\n", b"b\n", b"c\n"]


def test_bpop_interrupted_loses_nothing(mf):
    q = mf.ctl("bpop") / "i"
    # A signal while waiting: the open fails, nothing is popped.
    p = subprocess.Popen(["cat", str(q)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_blocked(mf, 1)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=60)
    wait_blocked(mf, 0)
    assert sh(f"echo x >> {mf.lists('i')}").returncode == 0
    assert (mf.ctl("pop") / "i").read_bytes() == b"x\n"
    # The shell's timeout is the timeout: exit 124, the list untouched.
    r = sh(f"timeout 0.3 cat {q}")
    assert r.returncode == 124
    wait_blocked(mf, 0)
    # Popped but closed before it was read: pushed back to the head.
    assert sh(f"printf 'y\\nz\\n' >> {mf.lists('i')}").returncode == 0
    # (The give-back runs at the RELEASE, which the kernel sends after
    # close(2) has returned, without waiting: poll for it.)
    fd = os.open(q, os.O_RDONLY)
    os.close(fd)
    wait_until(lambda: mf.lists("i").read_bytes() == b"y\nz\n")
    # Read in part, then closed: pushed back too; read whole: consumed.
    fd = os.open(q, os.O_RDONLY)
    assert os.read(fd, 1) == b"y"
    os.close(fd)
    wait_until(lambda: mf.lists("i").read_bytes() == b"y\nz\n")
    assert q.read_bytes() == b"y\n"
    assert mf.lists("i").read_bytes() == b"z\n"
    # Writers are refused; nothing is listed.
    with pytest.raises(OSError) as e:
        open(q, "wb")
    assert e.value.errno == errno.EACCES
    assert os.listdir(mf.ctl("bpop")) == []


def test_bpop_killed_openers_lose_nothing(mf):
    """Openers SIGKILLed at random moments while a producer pushes: every
    element was read by a cat that wrote it out, or is still in the list;
    at most one per killed cat may have been read and not written out (the
    kill came between its read and its write)."""
    import random
    seed = int(os.environ.get("MEMFLUX_SEED", time.time_ns() % 100000))
    print(f"seed {seed} (MEMFLUX_SEED=...)")
    rnd = random.Random(seed)
    q = mf.ctl("bpop") / "k"
    n = 60
    prod = subprocess.Popen(["bash", "-c",
                             f"for i in $(seq {n}); do echo e$i >> {mf.lists('k')}; done"])
    got, killed = [], 0
    while prod.poll() is None or killed < 40:
        p = subprocess.Popen(["cat", str(q)], stdout=subprocess.PIPE)
        time.sleep(rnd.random() * 0.01)  # the random kill moment: the test's input
        p.send_signal(signal.SIGKILL)
        got += p.communicate(timeout=60)[0].decode().split()
        killed += 1
    assert prod.wait(timeout=300) == 0
    wait_blocked(mf, 0)
    rest = mf.lists("k").read_text().split()
    everything = {f"e{i}" for i in range(1, n + 1)}
    assert len(set(got)) == len(got) and len(set(rest)) == len(rest)  # never twice
    assert not set(got) & set(rest)
    assert set(got) | set(rest) <= everything
    missing = everything - set(got) - set(rest)
    assert len(missing) <= killed, missing
    print(f"{killed} kills, {len(got)} read, {len(rest)} left, {len(missing)} read-then-killed")


BPOP_SCRIPT = [
    ["RPUSH", "a", "1", "2"], ["RPUSH", "b", "x"], ["BLPOP", "none", "a", "b", "0"],
    ["BRPOP", "a", "1"], ["EXISTS", "a"], ["BLPOP", "a", "b", "0.01"], ["BLPOP", "a", "0.01"],
    ["BRPOP", "none", "0.01"], ["SET", "s", "v"], ["BLPOP", "s", "0.01"],
    ["BLPOP", "none", "s", "0.01"], ["RPUSH", "c", "q"], ["BLPOP", "c", "s", "0"],
    ["BLPOP", "a", "x"], ["BLPOP", "a", "-1"], ["BLPOP", "a"], ["BLPOP", "a", "1e400"],
    ["BLPOP", "a", " 1"], ["BLPOP", "a", "nan"],
]


@needs_redis
def test_resp_blpop_matches_redis(mfr, redis_ref):
    m, port = mfr
    out = []
    for p in (redis_ref, port):
        c = RawClient(p)
        c.cmd("FLUSHDB")
        out.append([(cmd, c.cmd(*cmd)) for cmd in BPOP_SCRIPT])
        c.close()
    bad = [(cmd, w, g) for (cmd, w), (_, g) in zip(*out) if w != g]
    assert not bad, "\n".join(f"{c}: redis {w!r} memfluxfs {g!r}" for c, w, g in bad)


@needs_redis
def test_resp_blpop_waiters_fifo_and_mount_push(mfr, redis_ref):
    """Blocked clients are served in arrival order, by pushes from RESP and
    from the mount; a closed waiting client pops nothing."""
    m, port = mfr
    gone = RawClient(port)
    gone.s.sendall(b"*3\r\n$5\r\nBLPOP\r\n$1\r\nq\r\n$1\r\n0\r\n")
    wait_blocked(m, 1)
    gone.close()  # its wait is cancelled
    wait_blocked(m, 0)
    cs = []
    for i in range(3):
        c = RawClient(port)
        c.s.sendall(b"*3\r\n$5\r\nBRPOP\r\n$1\r\nq\r\n$1\r\n0\r\n")
        wait_blocked(m, i + 1)
        cs.append(c)
    assert sh(f"printf 'a\\nb\\n' >> {m.lists('q')}").returncode == 0
    wait_blocked(m, 1)  # the first two were served (so c goes to the third)
    p = RawClient(port)
    assert p.cmd("RPUSH", "q", "c") == b":1\r\n"
    got = [c._reply() for c in cs]
    assert got == [b"*2\r\n$1\r\nq\r\n$1\r\nb\r\n", b"*2\r\n$1\r\nq\r\n$1\r\na\r\n",
                   b"*2\r\n$1\r\nq\r\n$1\r\nc\r\n"]
    assert p.cmd("EXISTS", "q") == b":0\r\n"
    for c in cs + [p]:
        c.close()


# ---------- JSON: updates, deletes, multi-match reads ----------

def test_json_jincr_concurrent_no_lost_update(mf):
    """The issue's case: 8 processes x 50 increments of one member: 400."""
    assert sh(f"echo '{{\"hits\": 0, \"f\": 0.5}}' > {mf.json('d')}").returncode == 0
    p = mf.ctl("jincr") / "d" / "$.hits"
    loop = f"for i in $(seq 50); do echo 1 >> '{p}' || exit 1; done"
    ps = [subprocess.Popen(["bash", "-c", loop]) for _ in range(8)]
    assert all(x.wait(timeout=300) == 0 for x in ps)
    assert (mf.ctl("json") / "d" / "$.hits").read_text() == "400\n"
    assert sh(f"echo 0.25 >> '{mf.ctl('jincr') / 'd' / '$.f'}'").returncode == 0
    assert (mf.ctl("json") / "d" / "$.f").read_text() == "0.75\n"
    # Not a number (the line, or the member): the write fails, nothing changes.
    for path, line in [("$.hits", "x"), ("$.hits", "\"1\""), ("$", "1")]:
        r = sh(f"echo '{line}' >> '{mf.ctl('jincr') / 'd' / path}'")
        assert r.returncode != 0 and "Invalid argument" in r.stderr, (path, line, r)
    r = sh(f"echo 1 >> '{mf.ctl('jincr') / 'd' / '$.nope'}'")
    assert r.returncode != 0 and "No such file" in r.stderr
    assert mf.json("d").read_text() == '{"hits": 400, "f": 0.75}\n'


def test_json_rm_member_negative_index_and_multi_reads(mf):
    doc = '{"a": [1, {"b": 2}, [3]], "b": {"b": 4}, "c": "x"}'
    assert sh(f"printf '%s' '{doc}' > {mf.json('d')}").returncode == 0
    j = mf.ctl("json") / "d"
    assert (j / "$.a[-1]").read_text() == "[3]\n"
    assert (j / "$..b").read_text() == '[{"b": 4},2,4]\n'
    assert (j / "$.a[*]").read_text() == '[1,{"b": 2},[3]]\n'
    assert (j / "$.zz[*]").read_text() == "[]\n"
    assert sh(f"echo 9 > '{j / '$.a[-1]'}'").returncode == 0
    assert mf.json("d").read_text() == '{"a": [1, {"b": 2}, 9], "b": {"b": 4}, "c": "x"}'
    os.unlink(j / "$.a[-2]")
    os.unlink(j / "$.c")
    assert mf.json("d").read_text() == '{"a": [1, 9], "b": {"b": 4}}'
    with pytest.raises(OSError) as e:
        os.unlink(j / "$.c")
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        os.unlink(j / "$..b")
    assert e.value.errno == errno.EPERM
    os.unlink(j / "$")  # the whole document
    assert not mf.json("d").exists()


def bulk(b):
    return b"$%d\r\n%s\r\n" % (len(b), b)


@needs_redis
def test_resp_json_updates(mfr):
    m, port = mfr
    c = RawClient(port)
    try:
        assert c.cmd("JSON.SET", "d", "$", '{"n":1,"a":[1],"s":"ab","o":{"n":2}}') == b"+OK\r\n"
        assert c.cmd("JSON.NUMINCRBY", "d", "$.n", "2") == b"$3\r\n[3]\r\n"
        assert c.cmd("JSON.NUMINCRBY", "d", ".n", "1.5") == b"$3\r\n4.5\r\n"
        assert c.cmd("JSON.NUMINCRBY", "d", "$.s", "1") == b"$6\r\n[null]\r\n"
        assert c.cmd("JSON.NUMINCRBY", "d", "$.zz", "1") == b"$2\r\n[]\r\n"
        assert c.cmd("JSON.NUMINCRBY", "nokey", "$.n", "1").startswith(b"-ERR could not")
        assert c.cmd("JSON.ARRAPPEND", "d", "$.a", "2", '"x"') == b"*1\r\n:3\r\n"
        assert c.cmd("JSON.ARRAPPEND", "d", ".a", "{}") == b":4\r\n"
        assert c.cmd("JSON.ARRAPPEND", "d", "$.n", "1") == b"*1\r\n$-1\r\n"
        assert c.cmd("JSON.STRAPPEND", "d", "$.s", '"cd"') == b"*1\r\n:4\r\n"
        assert c.cmd("JSON.STRAPPEND", "d", ".s", '"e"') == b":5\r\n"
        assert c.cmd("JSON.GET", "d", "$..n") == bulk(b"[4.5,2]")
        assert c.cmd("JSON.GET", "d", "$.a[-1]") == b"$4\r\n[{}]\r\n"
        assert c.cmd("JSON.GET", "d") == bulk(b'{"n":4.5,"a":[1,2,"x",{}],"s":"abcde","o":{"n":2}}')
    finally:
        c.close()
    # Every update was one record: a kill -9 and replay give the same document.
    m.kill9()
    m.start(*m.args)
    assert m.json("d").read_text() == '{"n":4.5,"a":[1,2,"x",{}],"s":"abcde","o":{"n":2}}'


# ---------- transactions ----------

TX_SCRIPT = [
    ["MULTI"], ["SET", "a", "1"], ["INCR", "a"], ["GET", "a"], ["LPUSH", "a", "x"],
    ["RPUSH", "l", "1", "2"], ["LPOP", "l"], ["LLEN", "l"], ["SADD", "s", "m", "n"],
    ["SCARD", "s"], ["INCRBY", "a", "x"], ["MGET", "a", "nokey", "l"], ["DEL", "l", "zz"],
    ["EXISTS", "l", "a"], ["APPEND", "a", "0"], ["INCRBYFLOAT", "a", "0.5"], ["SMOVE", "s", "t", "m"],
    ["SREM", "s", "n"], ["TYPE", "s"], ["SET", "s", "str"], ["TYPE", "s"], ["RPOP", "nolist"],
    ["PING"], ["EXEC"],
    ["GET", "a"], ["SMEMBERS", "t"],
    ["MULTI"], ["NOSUCHCMD", "x"], ["SET", "z", "1"], ["EXEC"], ["GET", "z"],
    ["MULTI"], ["INCR"], ["EXEC"],
    ["EXEC"], ["DISCARD"], ["MULTI"], ["MULTI"], ["SET", "b", "1"], ["DISCARD"], ["GET", "b"],
    ["MULTI"], ["EXEC"], ["MULTI"], ["GET", "a"], ["EXEC"], ["MULTI"], ["WATCH", "a"], ["DISCARD"],
    ["WATCH", "a"], ["MULTI"], ["INCR", "a"], ["EXEC"], ["UNWATCH"],
]


@needs_redis
def test_resp_transactions_match_redis(mfr, redis_ref):
    m, port = mfr
    out = []
    for p in (redis_ref, port):
        c = RawClient(p)
        c.cmd("FLUSHDB")
        out.append([(cmd, c.cmd(*cmd)) for cmd in TX_SCRIPT])
        c.close()
    bad = [(cmd, w, g) for (cmd, w), (_, g) in zip(*out) if w != g]
    assert not bad, "\n".join(f"{c}: redis {w!r} memfluxfs {g!r}" for c, w, g in bad)


@needs_redis
def test_resp_watch_aborts_on_any_writer(mfr):
    m, port = mfr
    c, o = RawClient(port), RawClient(port)
    try:
        for writer in ("resp", "mount"):
            assert c.cmd("SET", "w", "1") == b"+OK\r\n"
            assert c.cmd("WATCH", "w") == b"+OK\r\n"
            if writer == "resp":
                assert o.cmd("SET", "w", "2") == b"+OK\r\n"
            else:
                assert sh(f"echo 5 >> {m.ctl('incr') / 'w'}").returncode == 0
            assert c.cmd("MULTI") == b"+OK\r\n"
            assert c.cmd("SET", "w", "tx") == b"+QUEUED\r\n"
            assert c.cmd("EXEC") == b"*-1\r\n"  # aborted: nothing ran
            assert c.cmd("GET", "w") != b"$2\r\ntx\r\n"
        # Untouched: it runs.
        assert c.cmd("WATCH", "w") == b"+OK\r\n"
        assert c.cmd("MULTI") == b"+OK\r\n"
        assert c.cmd("SET", "w", "tx") == b"+QUEUED\r\n"
        assert c.cmd("EXEC") == b"*1\r\n+OK\r\n"
        assert m.kv("w").read_text() == "tx"
        # Not in a transaction: refused at queue time, EXEC aborts.
        assert c.cmd("MULTI") == b"+OK\r\n"
        assert c.cmd("KEYS", "*").startswith(b"-ERR memfluxfs: 'KEYS' is not supported")
        assert c.cmd("EXEC").startswith(b"-EXECABORT")
    finally:
        c.close()
        o.close()


@needs_redis
def test_resp_exec_is_one_record_all_or_none(mfr):
    """EXEC's writes are one WAL record: after kill -9 all of them are there
    (the reply came after the WAL took it), and memflux-check shows one MULTI."""
    m, port = mfr
    c = RawClient(port)
    c.cmd("MULTI")
    for i in range(50):
        c.cmd("INCR", "n")
        c.cmd("SADD", "s", f"m{i}")
    c.cmd("RPUSH", "q", "a", "b")
    replies = c.cmd("EXEC")
    assert replies.startswith(b"*101\r\n")
    c.close()
    m.kill9()
    m.start(*m.args)
    assert m.kv("n").read_text() == "50"
    assert members(sets(m, "s")) == {f"m{i}" for i in range(50)}
    assert m.lists("q").read_text() == "a\nb\n"
    m.stop()
    from conftest import CHECK
    d = subprocess.run([CHECK, str(m.data), "--dump"], capture_output=True, text=True)
    assert d.returncode == 0, d.stderr
    assert d.stdout.count("op=MULTI") == 1 and "1 records" in d.stdout, d.stdout[-2000:]
    assert "INCRBY" not in d.stdout  # inside the one record, not records of their own


# ---------- expiry ----------

EXPIRE_SCRIPT = [
    ["SET", "k", "v"], ["TTL", "k"], ["PTTL", "k"], ["TTL", "nokey"], ["PTTL", "nokey"],
    ["EXPIRE", "k", "100"], ["TTL", "k"], ["EXPIRE", "k", "100", "NX"], ["EXPIRE", "k", "200", "XX"],
    ["TTL", "k"], ["EXPIRE", "k", "50", "GT"], ["EXPIRE", "k", "300", "GT"], ["TTL", "k"],
    ["EXPIRE", "k", "400", "LT"], ["EXPIRE", "k", "100", "LT"], ["TTL", "k"],
    ["EXPIRE", "k", "1", "NX", "XX"], ["EXPIRE", "k", "1", "GT", "LT"], ["EXPIRE", "k", "1", "BOGUS"],
    ["EXPIRE", "k", "x"], ["EXPIRE", "nokey", "10"], ["PERSIST", "k"], ["PERSIST", "k"], ["TTL", "k"],
    ["PERSIST", "nokey"], ["EXPIRE", "k", "100"], ["APPEND", "k", "w"], ["TTL", "k"],
    ["SET", "k", "v2"], ["TTL", "k"], ["EXPIRE", "k", "-1"], ["EXISTS", "k"],
    ["SET", "a", "1", "EX", "100"], ["TTL", "a"], ["SET", "a", "1", "PX", "100000"], ["TTL", "a"],
    ["SET", "a", "2", "KEEPTTL"], ["TTL", "a"], ["GET", "a"], ["SET", "a", "3"], ["TTL", "a"],
    ["SET", "a", "1", "EX", "0"], ["SET", "a", "1", "EX", "-5"], ["SET", "a", "1", "EX", "x"],
    ["SET", "a", "1", "EX", "10", "PX", "10"], ["SET", "a", "1", "EX", "10", "KEEPTTL"],
    ["SET", "a", "1", "EX", "9223372036854775807"], ["EXPIRE", "a", "9223372036854775807"],
    ["EXPIREAT", "a", "1"], ["EXISTS", "a"], ["SET", "b", "1"], ["PEXPIREAT", "b", "4102444800000"],
    ["TTL", "b"], ["EXPIRETIME", "b"], ["PEXPIRETIME", "b"], ["EXPIRETIME", "nokey"],
    ["RPUSH", "l", "x"], ["PEXPIRE", "l", "100000"], ["TTL", "l"], ["LPUSH", "l", "y"], ["TTL", "l"],
    ["RENAME", "l", "l2"], ["TTL", "l2"], ["SET", "n", "1", "NX", "EX", "100"], ["TTL", "n"],
    ["SET", "n", "2", "XX", "GET", "EX", "200"], ["TTL", "n"],
]


@needs_redis
def test_resp_expiry_matches_redis(mfr, redis_ref):
    m, port = mfr
    out = []
    for p in (redis_ref, port):
        c = RawClient(p)
        c.cmd("FLUSHDB")
        out.append([(cmd, c.cmd(*cmd)) for cmd in EXPIRE_SCRIPT])
        c.close()
    bad = [(cmd, w, g) for (cmd, w), (_, g) in zip(*out) if not same_ttl_reply(cmd, w, g)]
    assert not bad, "\n".join(f"{c}: redis {w!r} memfluxfs {g!r}" for c, w, g in bad)


def same_ttl_reply(cmd, want, got):
    """Replies equal, except that a positive TTL in seconds may differ by
    one: each server rounds its own clock, and a loaded machine can let a
    second boundary pass between the two runs of the script."""
    def num(reply):
        return int(reply[1:-2]) if reply[:1] == b":" and reply.endswith(b"\r\n") else None
    w, g = num(want), num(got)
    if cmd[0] == "TTL" and w is not None and g is not None and w > 0:
        return abs(w - g) <= 1
    return want == got


def wait_until(pred, timeout=30):
    """Poll a time-based condition (expiry is about time): not a sync stand-in."""
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


def test_expire_file_interface_and_active_expiry(mf):
    e = mf.ctl("expire")
    assert sh(f"echo v > {mf.kv('k')} && echo 100 > {e / 'k'}").returncode == 0
    assert (e / "k").read_text() in ("100\n", "99\n")
    assert sh(f"echo persist > {e / 'k'}").returncode == 0
    assert (e / "k").read_text() == "-1\n"
    # Any type; absent key: ENOENT; not a number: EINVAL from write.
    assert sh(f"echo a >> {mf.lists('l')} && echo 100 > {e / 'l'}").returncode == 0
    assert not (e / "nokey").exists()
    r = sh(f"echo soon > {e / 'k'}")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    # Expired: gone from reads at once, from listings (the active cycle
    # tells the kernel), and counted.
    assert sh(f"echo 1 > {e / 'k'}").returncode == 0
    assert "k" in os.listdir(mf.kv())
    wait_until(lambda: not mf.kv("k").exists())
    wait_until(lambda: "k" not in os.listdir(mf.kv()))
    wait_until(lambda: int(mf.stats()["expired_keys"]) >= 1)
    assert mf.stats()["keys_with_expiry"] == "1"  # l
    # N <= 0 deletes at once (Redis's EXPIRE k 0).
    assert sh(f"echo 0 > {e / 'l'}").returncode == 0
    assert not mf.lists("l").exists()
    assert os.listdir(e) == []


def test_expiry_is_absolute_across_restarts(mkmount):
    m = mkmount()
    assert sh(f"echo v > {m.kv('s')} && echo 100 > {m.ctl('expire') / 's'}").returncode == 0
    assert sh(f"echo w > {m.kv('t')} && echo 1 > {m.ctl('expire') / 't'}").returncode == 0
    m.kill9()
    m.start()
    ttl = int((m.ctl("expire") / "s").read_text())
    assert 90 <= ttl <= 100  # not extended by the restart (an absolute time)
    wait_until(lambda: not m.kv("t").exists())  # replayed with its expiry
    m.stop()
    m.start()
    assert not m.kv("t").exists()  # the cycle logged its deletion


@needs_redis
def test_resp_expiry_reaches_the_mount(mfr):
    m, port = mfr
    c = RawClient(port)
    try:
        assert c.cmd("SET", "sess", "x", "PX", "300") == b"+OK\r\n"
        assert m.kv("sess").read_text() == "x"
        assert c.cmd("SADD", "tmp", "a") == b":1\r\n"
        assert c.cmd("PEXPIRE", "tmp", "300") == b":1\r\n"
        wait_until(lambda: "sess" not in os.listdir(m.kv()) and "tmp" not in os.listdir(sets(m)))
        assert c.cmd("GET", "sess") == b"$-1\r\n"
        assert c.cmd("EXISTS", "tmp") == b":0\r\n"
        # A transaction: SET + EXPIRE in one record.
        c.cmd("MULTI")
        c.cmd("SET", "t", "1")
        c.cmd("INCR", "t")
        assert c.cmd("EXEC") == b"*2\r\n+OK\r\n:2\r\n"
    finally:
        c.close()


def test_expiry_write_path_cost(mf):
    """The TTL lives in the store, set through /.ctl/expire: an ordinary
    write to a key with a TTL costs what it costs without one.  Figures are
    printed (medians of 5 runs of 200 `echo >> key` each: APPEND keeps the TTL)."""
    import statistics
    for i in range(20):
        sh(f"echo v > {mf.kv(f'with{i}')} && echo 1000 > {mf.ctl('expire') / f'with{i}'}")
        sh(f"echo v > {mf.kv(f'without{i}')}")
    res = {}
    for kind in ("without", "with"):
        runs = []
        for _ in range(5):
            t0 = time.monotonic()
            r = sh(f"for n in $(seq 10); do for i in $(seq 0 19); do echo x >> {mf.kv()}/{kind}$i; done; done")
            assert r.returncode == 0
            runs.append(200 / (time.monotonic() - t0))
        res[kind] = statistics.median(runs)
    print(f"appends/s without TTL {res['without']:.0f}, with TTL {res['with']:.0f}")
    assert int((mf.ctl("expire") / "with0").read_text()) > 900  # kept by APPEND
    # `echo >` is SET: Redis's rule, it drops the TTL.
    assert sh(f"echo v > {mf.kv('with0')}").returncode == 0
    assert (mf.ctl("expire") / "with0").read_text() == "-1\n"
