"""The RESP face (issue 15): Redis clients on the mount's keyspace.

Replies are compared byte for byte with a private redis-server 7 started by
the test (same commands, same order, errors included), through a raw RESP
client, redis-py and redis-cli.  Then what only memfluxfs has: the mount
sees RESP writes at once, file and RESP writers share keys, and
--fsync=always loses nothing acknowledged across kill -9.
"""
import os
import shutil
import socket
import subprocess
import threading

import pytest

redis = pytest.importorskip("redis")

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
REDIS_BENCH = shutil.which("redis-benchmark")
pytestmark = pytest.mark.skipif(not (REDIS_SERVER and REDIS_CLI),
                                reason="redis-server / redis-cli not installed")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RawClient:
    """Sends commands as RESP arrays and returns each reply's exact bytes."""

    def __init__(self, port=None, path=None):
        if path:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.connect(path)
        else:
            self.s = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def close(self):
        self.s.close()

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise ConnectionError("closed")
        self.buf += d

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        line, self.buf = self.buf[:i], self.buf[i:]
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:-2]
        if t in b"$=" and rest != b"-1":
            return line + self._take(int(rest) + 2)
        if t in b"*%~>" and rest != b"-1":
            n = int(rest) * (2 if t == b"%" else 1)
            return line + b"".join(self._reply() for _ in range(n))
        return line

    def send(self, *cmds):
        out = b""
        for c in cmds:
            args = [a if isinstance(a, bytes) else str(a).encode() for a in c]
            out += b"*%d\r\n" % len(args)
            for a in args:
                out += b"$%d\r\n%s\r\n" % (len(a), a)
        self.s.sendall(out)
        return [self._reply() for _ in cmds]

    def cmd(self, *args):
        return self.send(args)[0]


@pytest.fixture
def redis_ref(tmp_path):
    """A private redis-server 7 (no persistence) on a free port."""
    port = free_port()
    d = tmp_path / "redis-ref"
    d.mkdir()
    p = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no", "--dir", str(d),
                          "--logfile", "", "--daemonize", "no"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Ready when it says so (no polling): its log goes to our pipe.
    for line in p.stdout:
        if "Ready to accept connections" in line:
            break
    else:
        p.wait()
        pytest.fail("redis-server did not start")
    # Keep draining its log so it never blocks on a full pipe.
    threading.Thread(target=p.stdout.read, daemon=True).start()
    yield port
    p.terminate()
    p.wait(timeout=30)


@pytest.fixture
def mfr(mkmount):
    """A mount serving RESP on a free port: (Mount, port)."""
    port = free_port()
    m = mkmount(f"--resp=127.0.0.1:{port}")
    return m, port


# Each command runs on both servers, in this order, from an empty database;
# every reply must be byte-identical.
SCRIPT = [
    ["PING"], ["PING", "hi"], ["PING", "a", "b"], ["ECHO", "x"], ["SELECT", "0"],
    ["SELECT", "x"],
    # strings
    ["SET", "k", "v"], ["GET", "k"], ["SET", "k", "v2", "NX"], ["SET", "k", "v3", "XX", "GET"],
    ["GET", "k"], ["SET", "n", "1", "XX"], ["SET", "k", "v", "NX", "XX"], ["SET", "k"],
    ["SET", "k", "v", "BOGUS"], ["GET", "k", "x"], ["SET", "k2", "a", "GET"],
    ["SET", "k2", "b", "NX", "GET"], ["SET", "k", "x", "KEEPTTL"], ["GET", "k"],
    ["MSET", "a", "1", "b", "2"], ["MSET", "a"], ["MSET", "a", "1", "b"],
    ["MGET", "a", "b", "nokey"], ["APPEND", "a", "23"], ["APPEND", "new", ""], ["EXISTS", "new"],
    ["STRLEN", "a"], ["STRLEN", "none"], ["GETRANGE", "a", "0", "1"],
    ["GETRANGE", "a", "-2", "-1"], ["GETRANGE", "a", "5", "10"], ["GETRANGE", "a", "-100", "1"],
    ["GETRANGE", "a", "2", "1"], ["GETRANGE", "none", "0", "1"], ["GETRANGE", "a", "x", "1"],
    ["SETRANGE", "s", "3", "abc"], ["GET", "s"], ["SETRANGE", "s", "1", "Z"], ["GET", "s"],
    ["SETRANGE", "s", "-1", "x"], ["SETRANGE", "e", "0", ""], ["EXISTS", "e"],
    ["SETRANGE", "s", "x", "1"],
    ["EXISTS", "a", "b", "a", "zz"], ["TYPE", "a"], ["TYPE", "zz"],
    ["RENAME", "a", "c"], ["GET", "c"], ["RENAME", "zz", "c"], ["RENAMENX", "c", "b"],
    ["RENAMENX", "c", "d"], ["RENAME", "d", "d"], ["RENAMENX", "d", "d"], ["RENAMENX", "zz", "d"],
    ["DEL", "b", "d", "zz"], ["UNLINK", "k"], ["UNLINK", "k"], ["DEL"],
    # lists
    ["RPUSH", "l", "a", "b", "c"], ["LPUSH", "l", "x", "y"], ["LRANGE", "l", "0", "-1"],
    ["LRANGE", "l", "1", "2"], ["LRANGE", "l", "-2", "100"], ["LRANGE", "l", "5", "1"],
    ["LRANGE", "l", "-100", "0"], ["LRANGE", "none", "0", "-1"], ["LRANGE", "l", "a", "1"],
    ["LLEN", "l"], ["LLEN", "none"], ["LINDEX", "l", "0"], ["LINDEX", "l", "-1"],
    ["LINDEX", "l", "99"], ["LINDEX", "l", "x"], ["LINDEX", "none", "0"],
    ["LPOP", "l"], ["RPOP", "l"], ["LPOP", "l", "2"], ["RPOP", "l", "0"], ["RPOP", "l", "5"],
    ["LPOP", "l"], ["LPOP", "l", "2"], ["RPOP", "l"], ["LLEN", "l"], ["EXISTS", "l"],
    ["LPOP", "l", "-1"], ["LPOP", "l", "x"], ["LPOP", "l", "1", "2"],
    ["RPUSH", "l2", "e", "", "f"], ["LRANGE", "l2", "0", "-1"], ["RPOP", "l2", "2"],
    # wrong types
    ["GET", "l2"], ["LPUSH", "s", "x"], ["LRANGE", "s", "0", "1"], ["LLEN", "s"],
    ["LINDEX", "s", "0"], ["LPOP", "s"], ["RPOP", "s", "2"], ["APPEND", "l2", "x"],
    ["STRLEN", "l2"], ["GETRANGE", "l2", "0", "1"], ["SETRANGE", "l2", "0", "x"],
    ["SET", "l2", "x", "GET"], ["MGET", "l2", "s"], ["TYPE", "l2"],
    # type changes: SET and RENAME replace a key of any type
    ["SET", "l2", "str"], ["TYPE", "l2"], ["RPUSH", "l3", "q"], ["RENAME", "s", "l3"],
    ["TYPE", "l3"], ["GET", "l3"], ["RPUSH", "l4", "q"], ["MSET", "l4", "v"], ["TYPE", "l4"],
    ["DBSIZE"],
    # command errors
    ["NOSUCHCMD", "a", "b"], ["NOSUCHCMD"], ["get"], ["SeT", "K", "v"], ["get", "K"],
    ["LPUSH", "l3"], ["RPOP"], ["JUNK", "x" * 200, "y"],
    ["CLIENT", "SETNAME", "me"], ["CLIENT", "GETNAME"], ["CLIENT", "SETNAME", "a b"],
    ["CLIENT", "FOO"], ["AUTH", "x"], ["AUTH", "default", "x"], ["HELLO", "4"],
    ["HELLO", "x"],
    ["FLUSHDB", "bad"], ["FLUSHDB"], ["DBSIZE"], ["GET", "K"], ["FLUSHDB", "ASYNC"],
    ["QUIT"],
]


def run_script(port, script):
    c = RawClient(port)
    try:
        c.cmd("FLUSHDB")
        return [(cmd, c.cmd(*cmd)) for cmd in script]
    finally:
        c.close()


def test_replies_match_redis(mfr, redis_ref):
    m, port = mfr
    want = run_script(redis_ref, SCRIPT)
    got = run_script(port, SCRIPT)
    bad = [(cmd, w, g) for (cmd, w), (_, g) in zip(want, got) if w != g]
    assert not bad, "\n".join(f"{c}: redis {w!r} memfluxfs {g!r}" for c, w, g in bad)


def test_pipelined_replies_match_redis(mfr, redis_ref):
    """The whole script in one write: replies in order, as Redis sends them."""
    m, port = mfr
    out = []
    for p in (redis_ref, port):
        c = RawClient(p)
        c.cmd("FLUSHDB")
        out.append(c.send(*SCRIPT))
        c.close()
    assert out[0] == out[1]


def test_resp3_replies_match_redis(mfr, redis_ref):
    m, port = mfr
    script = [["HELLO", "3"], ["GET", "nokey"], ["SET", "k", "v"], ["GET", "k"],
              ["LPOP", "nokey", "2"], ["RPUSH", "l", "a"], ["LPOP", "l", "1"],
              ["CLIENT", "GETNAME"], ["HELLO", "2"], ["GET", "nokey"]]
    want = run_script(redis_ref, script)
    got = run_script(port, script)
    # HELLO's map differs in id and version; its shape and the rest match.
    for (cmd, w), (_, g) in zip(want, got):
        if cmd[0] == "HELLO":
            assert g.split(b"\r\n")[0] == w.split(b"\r\n")[0], cmd
            assert b"proto" in g
        else:
            assert w == g, (cmd, w, g)


def test_keys_and_scan_match_redis(mfr, redis_ref):
    m, port = mfr
    results = []
    for p in (redis_ref, port):
        r = redis.Redis(port=p)
        r.flushdb()
        for i in range(300):
            r.set(f"user:{i}", i)
        for i in range(50):
            r.rpush(f"q:{i}", "x")
        keys = sorted(r.keys("user:1*"))
        qmark = sorted(r.keys("q:?"))
        cls = sorted(r.keys("user:[12]0"))
        neg = len(r.keys("user:[^1]*"))
        esc = r.keys(r"user:\*")
        scanned = sorted(r.scan_iter(match="user:*", count=7))
        scan_all = len(list(r.scan_iter(count=1000)))
        lists = sorted(r.scan_iter(_type="list"))
        strings = len(list(r.scan_iter(_type="string", count=50)))
        results.append((keys, qmark, cls, neg, esc, scanned, scan_all, lists, strings,
                        r.dbsize()))
        r.close()
    assert results[0] == results[1]
    c = RawClient(port)
    assert c.cmd("SCAN", "x") == b"-ERR invalid cursor\r\n"
    assert c.cmd("SCAN", "0", "COUNT", "0") == b"-ERR syntax error\r\n"
    c.close()


def test_scan_sees_every_key_despite_changes(mfr):
    """Keys present for the whole scan are all returned, while others come and go."""
    m, port = mfr
    r = redis.Redis(port=port)
    for i in range(500):
        r.set(f"stay:{i}", 1)
    seen = set()
    cursor = 0
    j = 0
    while True:
        cursor, batch = r.scan(cursor, count=20)
        seen.update(batch)
        r.set(f"new:{j}", 1)
        r.delete(f"new:{j - 3}")
        j += 1
        if cursor == 0:
            break
    assert {f"stay:{i}".encode() for i in range(500)} <= seen
    r.close()


def test_redis_py_matches_redis(mfr, redis_ref):
    m, port = mfr
    out = []
    for p in (redis_ref, port):
        r = redis.Redis(port=p, decode_responses=True)
        r.flushdb()
        res = [r.ping(), r.set("a", "1"), r.get("a"), r.set("a", "2", nx=True),
               r.set("a", "3", xx=True, get=True), r.mset({"x": "1", "y": "2"}),
               r.mget("x", "y", "z"), r.append("x", "0"), r.strlen("x"),
               r.getrange("x", 0, 0), r.setrange("x", 5, "!"), r.get("x"),
               r.exists("x", "y", "q"), r.type("x"), r.rename("x", "x2"),
               r.renamenx("x2", "y"), r.delete("y", "nope"), r.unlink("x2"),
               r.rpush("l", "a", "b", "c"), r.lpush("l", "z"), r.lrange("l", 0, -1),
               r.llen("l"), r.lindex("l", 1), r.lpop("l"), r.rpop("l", 2), r.lpop("l", 5),
               r.lpop("l"), r.dbsize(), r.client_setname("py"), r.client_getname(),
               r.echo("e"), r.flushdb(), r.dbsize()]
        r.set("a", "s")
        with pytest.raises(redis.ResponseError) as e:
            r.lpush("a", "x")
        res.append(str(e.value))
        with pytest.raises(redis.ResponseError) as e:
            r.execute_command("GETRANGE", "a", "x", "1")
        res.append(str(e.value))
        p = r.pipeline(transaction=False)
        for i in range(100):
            p.set(f"p{i}", i)
            p.get(f"p{i}")
        res.append(p.execute())
        res.append(isinstance(r.client_id(), int))
        out.append(res)
        r.close()
    assert out[0] == out[1]


def redis_cli(port, *args, stdin=None):
    p = subprocess.run([REDIS_CLI, "-p", str(port), *args], input=stdin,
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def test_redis_cli_matches_redis(mfr, redis_ref):
    m, port = mfr
    cmds = ("FLUSHDB\nSET greeting hello\nGET greeting\nAPPEND greeting !\nGET greeting\n"
            "RPUSH q a b c\nLRANGE q 0 -1\nLPOP q\nTYPE q\nGET q\nEXISTS greeting q\n"
            "DEL greeting\nGET greeting\nNOPE x\nKEYS *\nDBSIZE\nPING\n")
    want = redis_cli(redis_ref, stdin=cmds)
    got = redis_cli(port, stdin=cmds)
    assert got == want
    # One command per invocation, as scripts use it.
    assert redis_cli(port, "SET", "k", "v") == redis_cli(redis_ref, "SET", "k", "v")
    assert redis_cli(port, "GET", "k") == redis_cli(redis_ref, "GET", "k")
    assert redis_cli(port, "--no-raw", "GET", "nokey") == \
        redis_cli(redis_ref, "--no-raw", "GET", "nokey")
    # RESP3 through redis-cli -3 (HELLO 3 first).
    assert redis_cli(port, "-3", "GET", "k") == redis_cli(redis_ref, "-3", "GET", "k")


def test_info_command_save(mfr):
    m, port = mfr
    r = redis.Redis(port=port)
    r.set("a", "b")
    info = r.info()
    assert info["redis_version"].startswith("7.")
    assert info["keys"] == 1  # memfluxfs's own figures (/.ctl/stats)
    assert info["db0"]["keys"] == 1
    before = int(m.stats()["snapshots"])
    t0 = r.lastsave()
    assert r.save() is True
    assert int(m.stats()["snapshots"]) == before + 1
    assert r.lastsave() >= t0
    assert r.bgsave()
    c = RawClient(port)
    n = int(c.cmd("COMMAND", "COUNT")[1:-2])
    assert n > 40
    listing = c.cmd("COMMAND")
    assert listing.startswith(b"*%d\r\n" % n) and b"$8\r\njson.get\r\n" in listing
    assert c.cmd("COMMAND", "DOCS") == b"*0\r\n"
    c.close()
    assert r.config_get("appendonly") == {"appendonly": "yes"}
    r.close()


def test_cat_after_set_and_new_keys_show(mfr):
    """The kernel's caches are dropped on every RESP write."""
    m, port = mfr
    r = redis.Redis(port=port)
    r.set("g", "v1")
    assert m.kv("g").read_text() == "v1"
    os.stat(m.kv("g"))                     # attributes now cached
    r.set("g", "a much longer value")
    assert m.kv("g").read_text() == "a much longer value"
    assert subprocess.run(["cat", str(m.kv("g"))], capture_output=True,
                          text=True).stdout == "a much longer value"
    assert os.stat(m.kv("g")).st_size == len("a much longer value")
    # A name looked up and missing (negative dentry), then created over RESP.
    assert not m.kv("later").exists()
    r.set("later", "here")
    assert m.kv("later").read_text() == "here"
    assert "later" in os.listdir(m.kv())
    r.delete("later")
    assert not m.kv("later").exists()
    # Lists and JSON the same way.
    r.rpush("jobs", "a", "b")
    assert m.lists("jobs").read_text() == "a\nb\n"
    r.lpush("jobs", "z")
    assert m.lists("jobs").read_text() == "z\na\nb\n"
    assert r.rpop("jobs") == b"b"
    assert m.lists("jobs").read_text() == "z\na\n"
    r.execute_command("JSON.SET", "cfg", "$", '{"a":1}')
    assert m.json("cfg").read_text() == '{"a":1}'
    r.execute_command("JSON.SET", "cfg", "$.b", "[1,2]")
    assert m.json("cfg").read_text() == '{"a":1,"b":[1,2]}'
    # A pipelined run of writes to one key (committed as one WAL group).
    with r.pipeline(transaction=False) as pl:
        for i in range(20):
            pl.set("g", "x" * i)
            pl.rpush("jobs", f"p{i}")
        pl.execute()
    os.stat(m.kv("g"))
    with r.pipeline(transaction=False) as pl:
        for i in range(20):
            pl.set("g", "y" * (40 - i))
        for i in range(20):
            pl.rpush("jobs", f"q{i}")
        for i in range(21):
            pl.lpop("jobs")
        pl.execute()
    assert m.kv("g").read_text() == "y" * 21
    assert os.stat(m.kv("g")).st_size == 21
    # z a p0..p18 popped (21), p19 and the q's left.
    assert m.lists("jobs").read_text() == "p19\n" + "".join(f"q{i}\n" for i in range(20))
    r.set("g", "a much longer value")
    # Renames move the file.
    r.rename("g", "g2")
    assert not m.kv("g").exists() and m.kv("g2").read_text() == "a much longer value"
    r.flushdb()
    assert os.listdir(m.kv()) == [] and not m.kv("g2").exists()
    r.close()


def test_file_writes_seen_by_resp(mfr):
    m, port = mfr
    r = redis.Redis(port=port)
    m.kv("f").write_text("from file")
    assert r.get("f") == b"from file"
    with open(m.lists("q"), "a") as f:
        f.write("one\ntwo\n")
    assert r.lrange("q", 0, -1) == [b"one", b"two"]
    assert r.lpop("q") == b"one"
    assert m.lists("q").read_text() == "two\n"
    m.json("doc").write_text('{"x": [1, 2]}')
    assert r.execute_command("JSON.GET", "doc", "$.x[1]") == b"[2]"
    r.close()


def test_json_commands(mfr):
    m, port = mfr
    c = RawClient(port)
    assert c.cmd("JSON.SET", "d", "$.a", "1") == b"-ERR new objects must be created at the root\r\n"
    assert c.cmd("JSON.SET", "d", "$", '{"a": 1, "b": {"c": [1, 2.5, "x", true, null]}}') == b"+OK\r\n"
    assert c.cmd("JSON.SET", "d", "$", "{}", "NX") == b"$-1\r\n"
    assert c.cmd("JSON.SET", "d", "$.z", "1", "XX") == b"$-1\r\n"
    assert c.cmd("JSON.SET", "d", "$.a", "2", "XX") == b"+OK\r\n"
    assert c.cmd("JSON.SET", "d", "$.a", "3", "NX") == b"$-1\r\n"
    assert c.cmd("JSON.SET", "d", "$.a", "{bad") == b"-ERR invalid JSON value\r\n"
    assert c.cmd("JSON.GET", "d", "$.a") == b"$3\r\n[2]\r\n"
    assert c.cmd("JSON.GET", "d", ".a") == b"$1\r\n2\r\n"
    assert c.cmd("JSON.GET", "d", "$.nope") == b"$2\r\n[]\r\n"
    assert c.cmd("JSON.GET", "nokey") == b"$-1\r\n"
    assert c.cmd("JSON.TYPE", "d") == b"+object\r\n"
    types = [c.cmd("JSON.TYPE", "d", f"$.b.c[{i}]") for i in range(5)]
    assert types == [b"*1\r\n$7\r\ninteger\r\n", b"*1\r\n$6\r\nnumber\r\n",
                     b"*1\r\n$6\r\nstring\r\n", b"*1\r\n$7\r\nboolean\r\n",
                     b"*1\r\n$4\r\nnull\r\n"]
    assert c.cmd("JSON.DEL", "d", "$.b.c[1]") == b":1\r\n"
    assert c.cmd("JSON.DEL", "d", "$.b.c[9]") == b":0\r\n"
    b = b'[{"c": [1, "x", true, null]}]'
    assert c.cmd("JSON.GET", "d", "$.b") == b"$%d\r\n%s\r\n" % (len(b), b)
    assert m.json("d").read_text() == '{"a": 2, "b": {"c": [1, "x", true, null]}}'
    assert c.cmd("TYPE", "d") == b"+ReJSON-RL\r\n"
    assert c.cmd("GET", "d").startswith(b"-WRONGTYPE")
    assert c.cmd("JSON.GET", "d", "$[") == b"-ERR invalid JSON path\r\n"
    assert c.cmd("SET", "s", "x") == b"+OK\r\n"
    assert c.cmd("JSON.GET", "s").startswith(b"-WRONGTYPE")
    assert c.cmd("JSON.DEL", "d") == b":1\r\n"
    assert c.cmd("JSON.DEL", "d") == b":0\r\n"
    assert not m.json("d").exists()
    c.close()


def test_keys_no_file_name_can_hold(mfr):
    m, port = mfr
    r = redis.Redis(port=port)
    odd = [b"a/b", b"x\x00y", b"k" * 300, b"/", b"\xff\xfe"]
    for i, k in enumerate(odd):
        assert r.set(k, f"v{i}")
    for i, k in enumerate(odd):
        assert r.get(k) == f"v{i}".encode()
    assert r.rpush(b"q/1", "e") == 1
    assert sorted(r.keys("*")) == sorted(odd + [b"q/1"])
    # The mount lists only what a file name can hold; a/b is the file b in
    # the folder a (issue 14); lists stay flat.
    assert sorted(os.listdir(m.kv())) == ["a", "\udcff\udcfe"]
    assert (m.kv() / "a" / "b").read_bytes() == b"v0"
    assert os.listdir(m.lists()) == []
    # Empty keys: refused explicitly (the store needs 1+ bytes).
    with pytest.raises(redis.ResponseError, match="empty keys"):
        r.set("", "v")
    # They survive a restart (WAL) and a snapshot.
    r.save()
    r.set(b"after/snap", "1")
    r.close()
    m.stop()
    port2 = free_port()
    m.start(f"--resp=127.0.0.1:{port2}")
    r = redis.Redis(port=port2)
    for i, k in enumerate(odd):
        assert r.get(k) == f"v{i}".encode()
    assert r.get(b"after/snap") == b"1"
    r.close()


def test_list_elements_cannot_hold_newlines(mfr):
    m, port = mfr
    c = RawClient(port)
    assert c.cmd("RPUSH", "l", "a\nb").startswith(b"-ERR memfluxfs list elements are lines")
    assert c.cmd("EXISTS", "l") == b":0\r\n"
    c.close()


def test_mixed_file_and_resp_writers(mfr):
    """File and RESP writers on one key: never a mix; appends all land."""
    m, port = mfr
    n = 150
    errors = []

    def file_writer():
        try:
            for i in range(n):
                with open(m.kv("k"), "w") as f:
                    f.write(f"file-{i:04d}-" + "f" * 50)
                with open(m.lists("q"), "a") as f:
                    f.write(f"f{i}\n")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def resp_writer():
        r = redis.Redis(port=port)
        try:
            for i in range(n):
                r.set("k", f"resp-{i:04d}-" + "r" * 20)
                r.rpush("q", f"r{i}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        r.close()

    def reader():
        r = redis.Redis(port=port)
        for _ in range(n):
            v = r.get("k")
            if v is not None and not (
                    (v.startswith(b"file-") and v.endswith(b"f" * 50) and len(v) == 60) or
                    (v.startswith(b"resp-") and v.endswith(b"r" * 20) and len(v) == 30)):
                errors.append(f"mixed value {v!r}")
            t = m.kv("k").read_bytes() if m.kv("k").exists() else b""
            if t and not (len(t) in (60, 30)):
                errors.append(f"mixed file read {t!r}")
        r.close()

    ts = [threading.Thread(target=f) for f in (file_writer, resp_writer, reader)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:5]
    r = redis.Redis(port=port)
    final = r.get("k")
    assert final in (b"file-%04d-" % (n - 1) + b"f" * 50, b"resp-%04d-" % (n - 1) + b"r" * 20)
    assert m.kv("k").read_bytes() == final
    items = [x.decode() for x in r.lrange("q", 0, -1)]
    assert len(items) == 2 * n
    assert [x for x in items if x[0] == "f"] == [f"f{i}" for i in range(n)]
    assert [x for x in items if x[0] == "r"] == [f"r{i}" for i in range(n)]
    assert m.lists("q").read_text().split("\n")[:-1] == items
    r.close()


def test_kill9_always_loses_nothing_acknowledged(mkmount):
    """--fsync=always: every reply received before kill -9 is durable."""
    port = free_port()
    m = mkmount("--fsync=always", f"--resp=127.0.0.1:{port}")
    acked = [[] for _ in range(4)]
    enough = threading.Event()

    def writer(w):
        r = redis.Redis(port=port, socket_timeout=30)
        i = 0
        try:
            while True:
                r.set(f"w{w}:{i}", f"v{i}")
                acked[w].append(("set", i))
                r.rpush(f"q{w}", f"e{i}")
                acked[w].append(("push", i))
                i += 1
                if sum(len(a) for a in acked) >= 400:
                    enough.set()
        except (redis.ConnectionError, redis.TimeoutError, ConnectionError):
            pass
        finally:
            enough.set()

    ts = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in ts:
        t.start()
    assert enough.wait(120)
    m.kill9()
    for t in ts:
        t.join()
    port2 = free_port()
    m.start("--fsync=always", f"--resp=127.0.0.1:{port2}")
    r = redis.Redis(port=port2)
    for w in range(4):
        sets = [i for op, i in acked[w] if op == "set"]
        pushes = [i for op, i in acked[w] if op == "push"]
        assert sets, "writer made no progress"
        for i in sets:
            assert r.get(f"w{w}:{i}") == f"v{i}".encode(), (w, i)
        q = [x.decode() for x in r.lrange(f"q{w}", 0, -1)]
        # Every acknowledged push, in order; at most one more (sent, not acked).
        assert q[:len(pushes)] == [f"e{i}" for i in pushes]
        assert len(q) - len(pushes) <= 1
    r.close()


def test_auth_and_password(mkmount, tmp_path, redis_ref):
    pw = tmp_path / "pw"
    pw.write_text("s3cret\n")
    port = free_port()
    mkmount(f"--resp=127.0.0.1:{port}", f"--resp-password-file={pw}")
    ref = RawClient(redis_ref)
    ref.cmd("CONFIG", "SET", "requirepass", "s3cret")
    ref.close()
    script = [["GET", "a"], ["PING"], ["AUTH", "wrong"], ["AUTH", "default", "wrong"],
              ["AUTH", "bob", "s3cret"], ["HELLO", "3"], ["AUTH", "s3cret"], ["SET", "a", "1"],
              ["GET", "a"], ["AUTH", "default", "s3cret"], ["DEL", "a"]]
    out = []
    for p in (redis_ref, port):
        c = RawClient(p)
        out.append([c.cmd(*cmd) for cmd in script])
        c.close()
    assert out[0] == out[1]
    r = redis.Redis(port=port, password="s3cret")
    assert r.ping()
    r.close()
    r = redis.Redis(port=port, username="default", password="s3cret")
    assert r.ping()
    r.close()


def test_address_rules(mkmount, tmp_path):
    m = mkmount(name="a", start=False)
    p = m.start("--resp=0.0.0.0:6399", check=False)
    assert p.returncode != 0 and "needs --resp-password-file" in p.stderr
    p = m.start("--resp=127.0.0.1:notaport", check=False)
    assert p.returncode != 0 and "bad port" in p.stderr
    p = m.start("--resp-password-file=/nonexistent", check=False)
    assert p.returncode != 0
    # A port in use: the start fails, nothing stays mounted.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        p = m.start(f"--resp=127.0.0.1:{busy}", check=False)
        assert p.returncode != 0 and "cannot listen" in p.stderr
    assert not os.path.ismount(m.mnt)
    # unix socket and IPv6 loopback; -o resp= too.
    sock = tmp_path / "mf.sock"
    m.start("-o", f"resp=unix:{sock}")
    c = RawClient(path=str(sock))
    assert c.cmd("PING") == b"+PONG\r\n"
    c.close()
    assert redis_cli_unix(sock, "SET", "u", "1") == "OK\n"
    assert m.kv("u").read_text() == "1"
    m.stop()
    assert not sock.exists()
    if socket.has_ipv6:
        port = free_port()
        try:
            m.start(f"--resp=[::1]:{port}")
        except AssertionError:
            pytest.skip("no IPv6 loopback here")
        s = socket.create_connection(("::1", port))
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        assert s.recv(100) == b"+PONG\r\n"
        s.close()
        m.stop()


def redis_cli_unix(sock, *args):
    return subprocess.run([REDIS_CLI, "-s", str(sock), *args], capture_output=True,
                          text=True, timeout=60).stdout


@pytest.mark.skipif(not REDIS_BENCH, reason="redis-benchmark not installed")
def test_redis_benchmark_smoke(mfr):
    m, port = mfr
    p = subprocess.run([REDIS_BENCH, "-p", str(port), "-t", "set,get,lpush,lpop", "-n", "2000",
                        "-c", "8", "-P", "4", "-q"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    for t in ("SET", "GET", "LPUSH", "LPOP"):
        assert t in p.stdout, p.stdout
    r = redis.Redis(port=port)
    assert len(r.get("key:__rand_int__")) == 3
    r.close()


def test_big_values_bad_clients_server_survives(mfr):
    """10 MiB values; clients that vanish mid-pipeline or send garbage."""
    m, port = mfr
    r = redis.Redis(port=port)
    big = os.urandom(10 << 20)
    assert r.set("big", big)
    assert r.get("big") == big
    assert m.kv("big").read_bytes() == big
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"*3\r\n$3\r\nSET\r\n$2\r\nzz\r\n$1\r\n1\r\n" * 200 +
                  b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * 3)
        s.close()
    for junk in (b"*1\r\n$-5\r\n", b"PING\r\n", b"*1\r\n:1\r\n"):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(junk)
        reply = s.recv(200)
        assert reply.startswith(b"-ERR Protocol error"), reply
        assert s.recv(200) == b""  # and the server hung up
        s.close()
    assert r.ping() and r.get("zz") == b"1"
    r.close()


def pipeline_script(n):
    """Interleaved writes and reads on a few keys, the kinds a pipelined
    batch must keep apart: a read after queued writes, a pop after a push
    that creates the list, SET over a list, pops that empty a list."""
    rnd = __import__("random").Random(15)
    script = []
    for i in range(n):
        k = f"k{rnd.randrange(3)}"
        lk = f"l{rnd.randrange(2)}"
        script.append(rnd.choice([
            ["SET", k, f"v{i}"], ["SET", k, f"v{i}"], ["GET", k],
            ["RPUSH", lk, f"e{i}"], ["LPUSH", lk, f"e{i}", f"f{i}"], ["LPOP", lk],
            ["RPOP", lk], ["LPOP", lk, "2"], ["LLEN", lk], ["EXISTS", lk],
            ["SET", lk, f"s{i}"], ["DEL", lk], ["GET", lk], ["RPOP", k],
        ]))
        if i % 50 == 0:
            # Runs of one kind on one key: what is batched.
            script += [["SET", "run", f"r{i}.{j}"] for j in range(20)] + [["GET", "run"]]
            script += [["RPUSH", "rl", f"a{j}", f"b{j}"] for j in range(20)]
            script += [["LPOP", "rl", "3"] if j % 2 else ["RPOP", "rl"] for j in range(30)]
            script += [["EXISTS", "rl"]]
    return script


@pytest.mark.parametrize("mode", ["interval", "always"])
def test_pipeline_writes_and_reads_match_redis(mkmount, redis_ref, mode):
    """Pipelined writes are committed as one WAL group: each reply is still
    its own command's (byte for byte Redis's), reads see earlier writes."""
    port = free_port()
    m = mkmount(f"--fsync={mode}", f"--resp=127.0.0.1:{port}")
    script = pipeline_script(600)
    raw = []
    for p in (redis_ref, port):
        c = RawClient(p)
        c.cmd("FLUSHDB")
        raw.append(c.send(*script))
        c.close()
    bad = [(cmd, w, g) for cmd, w, g in zip(script, *raw) if w != g]
    assert not bad, "\n".join(f"{c}: redis {w!r} memfluxfs {g!r}" for c, w, g in bad[:20])
    if mode == "always":
        # The runs were committed as groups, not one fsync per command.
        st = dict(l.split(" ", 1) for l in (m.mnt / ".ctl/stats").read_text().splitlines())
        assert int(st["wal_records"]) >= 2 * int(st["wal_batches"]), st
    # redis-py's non-transactional pipeline: N SETs and GETs interleaved.
    res = []
    for p in (redis_ref, port):
        r = redis.Redis(port=p)
        r.flushdb()
        with r.pipeline(transaction=False) as pl:
            for i in range(400):
                pl.set(f"p{i % 7}", i)
                pl.get(f"p{(i * 3) % 7}")
                pl.rpush("pq", i)
                pl.lpop("pq") if i % 3 == 0 else pl.llen("pq")
            res.append(pl.execute())
        r.close()
    assert res[0] == res[1]


def test_kill9_pipelined_always_loses_nothing_acknowledged(mkmount):
    """--fsync=always, pipelined writers: every reply received before kill -9
    names a write that survives it."""
    port = free_port()
    m = mkmount("--fsync=always", f"--resp=127.0.0.1:{port}")
    acked = [[] for _ in range(4)]
    enough = threading.Event()

    def writer(w):
        r = redis.Redis(port=port, socket_timeout=30)
        i = 0
        try:
            while True:
                with r.pipeline(transaction=False) as pl:
                    for j in range(i, i + 32):
                        pl.set(f"w{w}:{j}", f"v{j}")
                        pl.rpush(f"q{w}", f"e{j}")
                    pl.execute()
                acked[w].extend(range(i, i + 32))
                i += 32
                if sum(len(a) for a in acked) >= 2000:
                    enough.set()
        except (redis.ConnectionError, redis.TimeoutError, ConnectionError):
            pass
        finally:
            enough.set()

    ts = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in ts:
        t.start()
    assert enough.wait(120)
    m.kill9()
    for t in ts:
        t.join()
    port2 = free_port()
    m.start("--fsync=always", f"--resp=127.0.0.1:{port2}")
    r = redis.Redis(port=port2)
    for w in range(4):
        assert acked[w], "writer made no progress"
        for i in acked[w]:
            assert r.get(f"w{w}:{i}") == f"v{i}".encode(), (w, i)
        q = [x.decode() for x in r.lrange(f"q{w}", 0, -1)]
        # Every acknowledged push in order; after them at most the one
        # pipeline that was sent but not answered.
        assert q[:len(acked[w])] == [f"e{i}" for i in acked[w]]
        assert len(q) - len(acked[w]) <= 32
    r.close()
