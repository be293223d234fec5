"""/json documents (strict validation, partial updates via /.ctl/json/<doc>/<path>), /lists
(RPUSH by appending lines, LPOP through /.ctl/pop), one keyspace across the
type directories, and persistence of both across clean and kill -9 restarts.

Everything goes through the mount: plain file I/O and shell tools.
"""
import collections
import errno
import os
import re
import subprocess

import pytest

from conftest import Mount

PY = "/usr/bin/python3"


def sh(cmd, **kw):
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, **kw)


def write_doc(path, data):
    """Write a whole document; return None on success, the errno of the failure otherwise."""
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as e:
        return e.errno
    return None


def rejections(m, key):
    """Byte offsets of every 'rejected JSON json/<key>: <why> at byte N' log line."""
    pat = re.compile(r"rejected JSON json/" + re.escape(key) + r": (.+) at byte (\d+)$")
    out = []
    for line in m.log().splitlines():
        mm = pat.search(line)
        if mm:
            out.append((mm.group(1), int(mm.group(2))))
    return out


def elements(path):
    data = open(path, "rb").read()
    assert data == b"" or data.endswith(b"\n")
    return data.decode().splitlines()


def pop(m, lst):
    with open(m.ctl("pop") / lst, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One mount for the validation table (each case uses its own key)."""
    m = Mount(tmp_path_factory.mktemp("jsonval"), "v")
    m.start()
    yield m
    m.cleanup()


# ---------------------------------------------------------------- round trips

USER_JSON = (
    b'{\n  "name": "Ada Lovelace",\n  "tags": ["math", "poetry"],\n'
    b'  "born": 1815, "ratio": -1.5e-3, "ok": true, "none": null,\n'
    b'  "caf\xc3\xa9": "\\u00e9 \\n \xe2\x98\x83",\n  "nested": {"a": [1, {"b": []}]}\n}\n'
)


def test_json_round_trip_cp_cmp(mf, tmp_path):
    src = tmp_path / "user.json"
    src.write_bytes(USER_JSON)
    dst = mf.json("user")
    r = sh(f"cp {src} {dst} && cmp {src} {dst}")
    assert r.returncode == 0, r.stderr
    assert dst.read_bytes() == USER_JSON
    assert os.stat(dst).st_size == len(USER_JSON)
    assert os.listdir(mf.json()) == ["user"]
    # jq parses what we read back
    r = sh(f"jq -c .nested {dst}")
    assert r.returncode == 0 and r.stdout == '{"a":[1,{"b":[]}]}\n'
    # overwrite with a shorter document: no stale tail
    r = sh(f"echo '{{\"a\":1}}' > {dst} && cat {dst}")
    assert r.stdout == '{"a":1}\n'
    assert dst.read_bytes() == b'{"a":1}\n'


def test_json_round_trip_echo_and_python(mf):
    r = sh(f"echo '{{\"a\":1}}' > {mf.json('a')}")
    assert r.returncode == 0
    assert mf.json("a").read_bytes() == b'{"a":1}\n'  # newline included
    r = sh(f"printf '[1,2]' > {mf.json('b')}")
    assert mf.json("b").read_bytes() == b"[1,2]"  # no newline added
    with open(mf.json("c"), "w", encoding="utf-8") as f:
        f.write('{"k": "v\u00e9\u2603", "n": [1, 2.5, null]}\r\n')
    with open(mf.json("c"), encoding="utf-8", newline="") as f:
        assert f.read() == '{"k": "v\u00e9\u2603", "n": [1, 2.5, null]}\r\n'
    # several writes on one handle form one document, checked at close
    with open(mf.json("d"), "wb") as f:
        f.write(b'{"parts": [')
        f.write(b"1, ")
        f.write(b"2]}")
    assert mf.json("d").read_bytes() == b'{"parts": [1, 2]}'
    # a big document
    big = b"[" + b",".join(b'{"i":%d,"s":"%s"}' % (i, b"x" * 50) for i in range(20000)) + b"]"
    assert write_doc(mf.json("big"), big) is None
    assert mf.json("big").read_bytes() == big
    assert sorted(os.listdir(mf.json())) == ["a", "b", "big", "c", "d"]


# ----------------------------------------------------------- validation table
# (name, document, valid, expected error offset or None = only "within [0, n]")

DEEP_OK = b"[" * 100 + b"]" * 100
MAX_OK = b"[" * 512 + b"]" * 512
CASES = [
    # valid
    ("empty_object", b"{}", True, None),
    ("empty_array", b"[]", True, None),
    ("zero", b"0", True, None),
    ("minus_zero", b"-0", True, None),
    ("number_exp", b"1.5e10", True, None),
    ("number_neg_exp", b"-12.5E-3", True, None),
    ("number_exp_plus", b"1E+2", True, None),
    ("top_string", b'"str"', True, None),
    ("top_true", b"true", True, None),
    ("top_false", b"false", True, None),
    ("top_null", b"null", True, None),
    ("whitespace_around", b' \t\r\n{"a" : [1, 2.0, "x", null]}\n\n', True, None),
    ("nested_mix", b'{"a":{"b":{"c":[[],{}]}}}', True, None),
    ("utf8_raw", '"caf\u00e9 \u2603 \U0001F600"'.encode(), True, None),
    ("escapes_all", b'"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/\\b\\f\\r"', True, None),
    ("empty_key", b'{"":""}', True, None),
    ("duplicate_keys", b'{"a":1,"a":2}', True, None),
    ("lone_surrogate_escape", b'"\\ud800"', True, None),
    ("deep_100", DEEP_OK, True, None),
    ("deep_512", MAX_OK, True, None),
    # invalid
    pytest.param("empty_doc", b"", False, 0),
    ("whitespace_only", b"   \n", False, None),
    ("leading_zero_top", b"01", False, 0),
    ("leading_zero_member", b'{"a":01}', False, 5),
    ("leading_zero_neg", b"-01", False, 1),
    ("trailing_comma_array", b"[1,2,]", False, 4),
    ("trailing_comma_object", b'{"a":1,}', False, 6),
    ("comment_line", b'{"a":1} // c', False, 8),
    ("comment_block", b"/* c */ {}", False, 0),
    ("single_quotes_key", b"{'a':1}", False, 1),
    ("single_quotes_top", b"'x'", False, 0),
    ("bare_word_tru", b"tru", False, 0),
    ("bare_word_nul", b'{"a":nul}', False, 5),
    ("bare_word_nan", b"NaN", False, 0),
    ("bare_word_infinity", b"[Infinity]", False, 1),
    ("unquoted_key", b"{a:1}", False, 1),
    ("raw_ctrl_01", b'"a\x01b"', False, 2),
    ("raw_tab_in_string", b'"tab\there"', False, 4),
    ("raw_newline_in_string", b'"line\nbreak"', False, 5),
    ("raw_nul_in_string", b'"a\x00b"', False, 2),
    ("bad_escape_x", b'"\\x41"', False, 1),
    ("bad_escape_U", b'"\\U0041"', False, 1),
    ("short_u_escape", b'["\\u12"]', False, None),
    ("bad_u_escape_hex", b'"\\u12G4"', False, None),
    ("utf8_ff", b'"\xff"', False, 1),
    ("utf8_overlong", b'"\xc0\xaf"', False, 1),
    ("utf8_surrogate", b'"\xed\xa0\x80"', False, 1),
    ("utf8_above_max", b'"\xf4\x90\x80\x80"', False, 1),
    ("utf8_truncated", b'"\xe2\x82"', False, 1),
    ("utf8_continuation_alone", b'["\x80"]', False, 2),
    ("bom", b"\xef\xbb\xbf{}", False, 0),
    ("deep_600", b"[" * 600 + b"]" * 600, False, 512),
    ("deep_513", b"[" * 513 + b"]" * 513, False, 512),
    ("two_values", b'{"a":1} {"b":2}', False, 8),
    ("missing_comma", b"[1 2]", False, 3),
    ("missing_colon", b'{"a" 1}', False, 5),
    ("unterminated_string", b'"unterminated', False, 13),
    ("unterminated_array", b"[1,2", False, 4),
    ("leading_dot", b".5", False, 0),
    ("trailing_dot", b"1.", False, None),
    ("exp_no_digits", b"1e", False, None),
    ("plus_sign", b"+1", False, 0),
    ("hex_number", b"0x10", False, None),
    ("double_comma", b"[1,,2]", False, 3),
    ("trailing_nul", b'{"a":1}\x00', False, 7),
    ("extra_close", b"[1]]", False, 3),
    ("form_feed_ws", b"\x0c{}", False, 0),
    ("mismatched_close", b'{"a":[}', False, 6),
    ("python_literal", b"{'a': True}", False, None),
]


def test_validation_table_size():
    cases = [_case(c) for c in CASES]
    assert len(cases) >= 40
    assert len({c[0] for c in cases}) == len(cases)
    assert sum(1 for c in cases if not c[2]) >= 30


def _case_id(c):
    return c.values[0] if hasattr(c, "values") else c[0]


def _case(c):
    return c.values if hasattr(c, "values") else c


@pytest.mark.parametrize("name,doc,valid,off", CASES, ids=[_case_id(c) for c in CASES])
def test_validation(shared, name, doc, valid, off):
    m = shared
    key = "v_" + name
    p = m.json(key)
    prev = b'{"previous": "%s"}\n' % name.encode()
    assert write_doc(p, prev) is None
    before = len(rejections(m, key))
    err = write_doc(p, doc)
    if valid:
        assert err is None
        assert p.read_bytes() == doc
        assert os.stat(p).st_size == len(doc)
        assert rejections(m, key) == []
        return
    assert err == errno.EINVAL
    assert p.read_bytes() == prev, "previous document must be untouched"
    rej = rejections(m, key)
    assert len(rej) == before + 1, m.log()[-2000:]
    why, at = rej[-1]
    assert why.strip()
    if off is None:
        assert 0 <= at <= len(doc)
    else:
        assert at == off, f"{why} at {at}, expected {off}"
    # fsync reports it too, and again leaves the document alone
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, doc)
        with pytest.raises(OSError) as ei:
            os.fsync(fd)
        assert ei.value.errno == errno.EINVAL
    finally:
        try:
            os.close(fd)
        except OSError as e:
            assert e.errno == errno.EINVAL
    assert p.read_bytes() == prev
    # an invalid first document leaves the key absent: not listed, and the
    # name is still free in the one keyspace
    new = "n_" + name
    assert write_doc(m.json(new), doc) == errno.EINVAL
    if doc:
        # (an empty new document is logged only at the handle's release,
        # which close() does not wait for: a shell's first, data-less
        # flush must not log a rejection on every `>`)
        assert rejections(m, new)
    assert new not in os.listdir(m.json())
    m.kv(new).write_bytes(b"free")
    assert m.kv(new).read_bytes() == b"free"


def test_invalid_via_shell_tools_exit_codes(mf, tmp_path):
    good = mf.json("cfg")
    assert write_doc(good, b'{"v":1}\n') is None
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"v":2,}\n')
    r = sh(f"cp {bad} {good}")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    r = sh(f"printf '[1,2' | dd of={good} status=none")
    assert r.returncode != 0
    assert good.read_bytes() == b'{"v":1}\n'
    assert len(rejections(mf, "cfg")) == 2
    # a valid one through the same tools works
    r = sh(f"printf '[1,2]' | dd of={good} status=none && cat {good}")
    assert r.returncode == 0 and r.stdout == "[1,2]"
    # truncating a document to a cut is not JSON either
    with pytest.raises(OSError) as ei:
        os.truncate(good, 2)
    assert ei.value.errno == errno.EINVAL
    assert good.read_bytes() == b"[1,2]"


def test_retry_after_rejected_new_document(mf):
    p = mf.json("retry")
    assert write_doc(p, b'{"a":01}') == errno.EINVAL
    assert write_doc(p, b'{"a":1}') is None  # the fixed document, right away
    assert "retry" in os.listdir(mf.json())
    assert not mf.kv("retry").exists()
    with pytest.raises(FileExistsError):
        os.open(mf.kv("retry"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)


# ----------------------------------------------------- partial update (path view)

def jpath(p, path):
    """/.ctl/json/<doc>/<path> for the document at p (= mount/json/<doc>)."""
    return p.parent.parent / ".ctl" / "json" / p.name / path


def jget(p, path):
    data = jpath(p, path).read_bytes()
    assert data.endswith(b"\n")
    return data[:-1]


def jset(p, path, value):
    with open(jpath(p, path), "wb") as f:
        f.write(value)


def test_path_view_get_set_nested_arrays_add_member(mf):
    p = mf.json("doc")
    doc = b'{\n  "a": 1,\n  "b": {"c": [1, 2, {"d": "x"}]},\n  "odd key": {"x": 7}\n}\n'
    assert write_doc(p, doc) is None
    assert jget(p, "$") == doc.strip()
    assert jget(p, "$.a") == b"1"
    assert jget(p, "$.b") == b'{"c": [1, 2, {"d": "x"}]}'
    assert jget(p, "$.b.c[1]") == b"2"
    assert jget(p, "$.b.c[2].d") == b'"x"'
    assert jget(p, "$['odd key'].x") == b"7"
    assert jget(p, '$["odd key"]') == b'{"x": 7}'

    jset(p, "$.a", b"42")
    exp = doc.replace(b'"a": 1', b'"a": 42')
    assert p.read_bytes() == exp
    jset(p, "$.b.c[2].d", b'  {"deep": [true]}  ')  # whitespace trimmed
    exp = exp.replace(b'"d": "x"', b'"d": {"deep": [true]}')
    assert p.read_bytes() == exp
    assert jget(p, "$.b.c[2].d.deep[0]") == b"true"
    jset(p, "$['odd key'].x", b'"seven"')
    exp = exp.replace(b'"x": 7', b'"x": "seven"')
    assert p.read_bytes() == exp
    # add a member: goes right after the last member's value
    jset(p, "$.new", b"[1,2]")
    exp = exp.replace(b'"seven"}\n}', b'"seven"},"new":[1,2]\n}')
    assert p.read_bytes() == exp
    assert jget(p, "$.new[1]") == b"2"
    jset(p, "$.b.extra", b"null")
    assert jget(p, "$.b") == b'{"c": [1, 2, {"d": {"deep": [true]}}],"extra":null}'
    # the document stays valid JSON that jq reads, and stat sees the new size
    assert os.stat(p).st_size == len(p.read_bytes())
    r = sh(f"jq -c '[.a, .new, .b.extra, .\"odd key\".x]' {p}")
    assert r.returncode == 0 and r.stdout == '[42,[1,2],null,"seven"]\n'
    # empty object: member inserted right after '{'
    q = mf.json("empty")
    assert write_doc(q, b"{ }") is None
    jset(q, "$.k", b"1")
    assert q.read_bytes() == b'{"k":1 }'
    # whole document replaced with $
    jset(q, "$", b"[1, 2]")
    assert q.read_bytes() == b"[1, 2]"


def test_path_view_errors_leave_document_unchanged(mf):
    p = mf.json("doc")
    doc = b'{"a": {"b": [1, 2]}, "s": "x"}'
    assert write_doc(p, doc) is None

    def err(fn, *a):
        with pytest.raises(OSError) as ei:
            fn(*a)
        return ei.value.errno

    # missing paths: reading fails ENOENT; setting under a missing parent
    # fails at close with ENOENT
    assert err(jget, p, "$.nope") == errno.ENOENT
    assert err(jget, p, "$.a.b[2]") == errno.ENOENT
    assert err(jget, p, "$.s.x") == errno.ENOENT
    assert err(jget, p, "$.a[0]") == errno.ENOENT
    assert err(jset, p, "$.nope.x", b"1") == errno.ENOENT
    assert err(jset, p, "$.a.b[5]", b"1") == errno.ENOENT
    assert p.read_bytes() == doc
    # invalid values
    for bad in (b"01", b"{", b"'x'", b"tru", b"1 2", b'"\xff"', b"[1,]"):
        assert err(jset, p, "$.a", bad) == errno.EINVAL, bad
        assert p.read_bytes() == doc
    assert "rejected JSON value for path json/doc" in mf.log()
    # an empty value is not JSON: refused at close, nothing changes
    assert err(jset, p, "$", b"") == errno.EINVAL
    assert p.read_bytes() == doc
    # malformed path
    assert err(jset, p, "$..a", b"1") == errno.EINVAL
    assert err(jset, p, "$.a[01]", b"1") == errno.EINVAL
    assert p.read_bytes() == doc
    # deeper than the limit once placed
    assert err(jset, p, "$.a", b"[" * 512 + b"]" * 512) == errno.EINVAL
    assert p.read_bytes() == doc
    # the view is for /json only
    mf.kv("plain").write_bytes(b"v")
    assert err(jset, mf.kv("plain"), "$.a", b"1") == errno.ENOENT
    assert mf.kv("plain").read_bytes() == b"v"


def test_path_view_shell(mf):
    p = mf.json("cfg")
    assert write_doc(p, b'{"port": 80, "name": "web", "list": [1]}\n') is None
    v = mf.ctl("json") / "cfg"
    r = sh(f"cat '{v}/$.port'")
    assert r.returncode == 0 and r.stdout == "80\n"
    assert sh(f"cat '{v}/$.name'").stdout == '"web"\n'
    assert sh(f"echo 8080 > '{v}/$.port'").returncode == 0
    assert sh(f"echo '\"api\"' > '{v}/$.name'").returncode == 0
    assert sh(f"printf '[1,2]' > '{v}/$.list'").returncode == 0
    assert sh(f"echo true > '{v}/$.debug'").returncode == 0
    assert p.read_bytes() == b'{"port": 8080, "name": "api", "list": [1,2],"debug":true}\n'
    assert sh(f"cat {p} | jq -r .name").stdout == "api\n"
    assert sh(f"ls {mf.ctl('json')}").stdout.split() == ["cfg"]
    # missing: cat fails, "No such file or directory"
    r = sh(f"cat '{v}/$.nope'")
    assert r.returncode != 0 and "No such file" in r.stderr
    # invalid value: cp reports the failed close, document unchanged
    src = mf.base / "web.txt"
    src.write_text("web\n")
    r = sh(f"cp {src} '{v}/$.name'")
    assert r.returncode != 0 and "Invalid argument" in r.stderr
    assert p.read_bytes() == b'{"port": 8080, "name": "api", "list": [1,2],"debug":true}\n'


# ------------------------------------------------------------- one keyspace

CONTENT = {"kv": b"kv-value", "json": b'{"json":1}', "lists": b"elem\n"}


def _create(m, typ, key):
    with open(getattr(m, typ)(key), "ab" if typ == "lists" else "wb") as f:
        f.write(CONTENT[typ])


CREATE = {t: (lambda m, k, t=t: _create(m, t, k)) for t in CONTENT}


def test_type_conflicts_all_pairs(mf):
    for src in CREATE:
        for dst in CREATE:
            if src == dst:
                continue
            key = f"{src}_then_{dst}"
            CREATE[src](mf, key)
            srcp = getattr(mf, src)(key)
            dstp = getattr(mf, dst)(key)
            for flags in (os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                          os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                          os.O_WRONLY | os.O_CREAT | os.O_EXCL):
                with pytest.raises(OSError) as ei:
                    os.close(os.open(dstp, flags, 0o644))
                assert ei.value.errno == errno.EEXIST, (src, dst, flags)
            r = sh(f"echo 1 >> {dstp}")
            assert r.returncode != 0 and "File exists" in r.stderr
            assert key not in os.listdir(getattr(mf, dst)())
            assert not dstp.exists()
            assert srcp.read_bytes() == CONTENT[src]
    for t in CREATE:
        names = sorted(os.listdir(getattr(mf, t)()))
        assert names == sorted(f"{t}_then_{d}" for d in CREATE if d != t)
    # after deleting, the name is free for another type
    os.unlink(mf.kv("kv_then_json"))
    mf.json("kv_then_json").write_bytes(b"[]")
    assert mf.json("kv_then_json").read_bytes() == b"[]"
    assert "kv_then_json" not in os.listdir(mf.kv())


# --------------------------------------------------------------------- lists

def test_list_append_pieces_and_unterminated_tail(mf):
    q = mf.lists("q")
    assert sh(f"echo job1 >> {q}").returncode == 0
    assert sh(f"printf 'a\\nb\\n' >> {q}").returncode == 0
    assert elements(q) == ["job1", "a", "b"]
    # lines cut across write() calls on one O_APPEND fd still give whole elements
    fd = os.open(q, os.O_WRONLY | os.O_APPEND)
    for piece in (b"jo", b"b2\nj", b"ob", b"3\n", b"\n", b"x", b"y", b"z\n"):
        os.write(fd, piece)
    os.close(fd)
    # an empty line is an (empty) element
    assert elements(q) == ["job1", "a", "b", "job2", "job3", "", "xyz"]
    with open(q, "a") as f:  # Python text append, several lines in one write
        f.write("py1\npy2\n")
    data = q.read_bytes()
    assert data == b"job1\na\nb\njob2\njob3\n\nxyz\npy1\npy2\n"
    assert os.stat(q).st_size == len(data)
    # each element came whole: pop them all
    popped = [pop(mf, "q") for _ in range(9)]
    assert popped == [e + b"\n" for e in data.split(b"\n")[:-1]]
    with pytest.raises(OSError) as ei:
        pop(mf, "q")
    assert ei.value.errno == errno.ENODATA


def test_list_unterminated_last_line_pushed_at_close(mf):
    """A final line without newline is pushed, newline added, when the handle
    is closed; and it survives a clean restart."""
    q = mf.lists("q")
    fd = os.open(q, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for piece in (b"first\nta", b"il"):
        os.write(fd, piece)
    os.close(fd)
    assert sh(f"printf 'x' >> {q}").returncode == 0
    with open(q, "a") as f:
        f.write("py1\npy")
        f.write("2")
    with open(q, "a") as f:
        f.write("alone")
    mf.stop()
    mf.start()
    # releases of different handles may arrive in any order; within one
    # handle, complete lines (pushed at close) come before the tail
    data = q.read_bytes()
    assert data.endswith(b"\n") and os.stat(q).st_size == len(data)
    got = data.decode().splitlines()
    assert sorted(got) == sorted(["first", "tail", "x", "py1", "py2", "alone"])
    assert got.index("first") < got.index("tail") and got.index("py1") < got.index("py2")
    assert [pop(mf, "q") for _ in range(6)] == [e.encode() + b"\n" for e in got]
    with pytest.raises(OSError) as ei:
        pop(mf, "q")
    assert ei.value.errno == errno.ENODATA


def test_list_unterminated_last_line_visible_right_after_close(mf):
    for i in range(2000):
        q = mf.lists(f"t{i}")
        with open(q, "ab") as f:
            f.write(b"job1\n")
        fd = os.open(q, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"job2\nta")
        os.write(fd, b"il")
        os.close(fd)
        assert q.read_bytes() == b"job1\njob2\ntail\n", f"iteration {i}"


@pytest.mark.parametrize("typ", ["lists", "kv"])
def test_append_while_another_handle_creates_the_key(mf, typ):
    p = getattr(mf, typ)("new")
    a = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(a, b"from-a\n")
    b = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(b, b"from-b\n")
    os.close(b)
    assert p.read_bytes() == b"from-b\n"
    os.close(a)
    # O_APPEND handles: every append lands, in close order
    assert p.read_bytes() == b"from-b\nfrom-a\n"


def test_list_shell_tools_and_size(mf):
    q = mf.lists("lines")
    lines = [f"line-{i:04d} {'even' if i % 2 == 0 else 'odd'}" for i in range(500)]
    r = sh(f"for i in $(seq 0 499); do if (( i % 2 )); then w=odd; else w=even; fi; "
           f"printf 'line-%04d %s\\n' $i $w >> {q}; done")
    assert r.returncode == 0, r.stderr
    assert sh(f"wc -l < {q}").stdout.strip() == "500"
    assert sh(f"head -n 2 {q}").stdout == lines[0] + "\n" + lines[1] + "\n"
    assert sh(f"tail -n 1 {q}").stdout == lines[-1] + "\n"
    assert sh(f"grep -c odd {q}").stdout.strip() == "250"
    assert sh(f"grep -n 'line-0123' {q}").stdout == "124:line-0123 odd\n"
    data = "".join(l + "\n" for l in lines).encode()
    assert q.read_bytes() == data
    assert os.stat(q).st_size == len(data)
    assert sh(f"stat -c %s {q}").stdout.strip() == str(len(data))
    pop(mf, "lines")
    assert os.stat(q).st_size == len(data) - len(lines[0]) - 1
    assert sh(f"head -n 1 {q}").stdout == lines[1] + "\n"


def test_list_replace_rm_and_mid_writes(mf):
    q = mf.lists("q")
    assert sh(f"printf 'a\\nb\\nc\\n' >> {q}").returncode == 0
    assert sh(f"printf 'n1\\nn2\\n' > {q}").returncode == 0
    assert elements(q) == ["n1", "n2"]
    assert pop(mf, "q") == b"n1\n"
    with open(q, "w") as f:  # O_TRUNC from Python too
        f.write("only\nlast")
    assert q.read_bytes() == b"only\nlast\n"
    # writing into the middle of a list: ESPIPE, list untouched
    fd = os.open(q, os.O_RDWR)
    try:
        for off in (0, 1, 5):
            with pytest.raises(OSError) as ei:
                os.pwrite(fd, b"zz\n", off)
            assert ei.value.errno == errno.ESPIPE
        # at the very end it is an append
        assert os.pwrite(fd, b"end\n", len(b"only\nlast\n")) == 4
    finally:
        os.close(fd)
    assert elements(q) == ["only", "last", "end"]
    with pytest.raises(OSError) as ei:
        os.truncate(q, 3)
    assert ei.value.errno == errno.EINVAL
    assert elements(q) == ["only", "last", "end"]
    # rm deletes the list
    assert sh(f"rm {q}").returncode == 0
    assert os.listdir(mf.lists()) == []
    assert not q.exists()
    with pytest.raises(FileNotFoundError):
        pop(mf, "q")
    # and a fresh append recreates it
    assert sh(f"echo again >> {q}").returncode == 0
    assert elements(q) == ["again"]


def test_pop_basics(mf):
    with pytest.raises(OSError) as ei:
        pop(mf, "missing")
    assert ei.value.errno == errno.ENOENT
    q = mf.lists("q")
    assert sh(f"printf 'e1\\ne2\\ne3\\n' >> {q}").returncode == 0
    r = sh(f"cat {mf.ctl('pop')}/q")
    assert r.returncode == 0 and r.stdout == "e1\n"
    # each opener gets its own element, even with both handles open at once
    f1 = open(mf.ctl("pop") / "q", "rb")
    f2 = open(mf.ctl("pop") / "q", "rb")
    try:
        got = {f1.read(), f2.read()}
        f1.seek(0)
        assert f1.read() in got  # re-reading the handle does not pop again
    finally:
        f1.close()
        f2.close()
    assert got == {b"e2\n", b"e3\n"}
    assert q.read_bytes() == b""
    with pytest.raises(OSError) as ei:
        pop(mf, "q")
    assert ei.value.errno == errno.ENODATA
    r = sh(f"cat {mf.ctl('pop')}/q")
    assert r.returncode != 0 and "No data available" in r.stderr
    # pop of a key of another type: not a list
    mf.kv("k").write_bytes(b"v\n")
    with pytest.raises(OSError):
        pop(mf, "k")
    assert mf.kv("k").read_bytes() == b"v\n"


# ---------------------------------------------------------------- concurrency

APPEND_WRITER = r"""
import os, random, sys
path, wid, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rnd = random.Random(wid)
data = b"".join(b"%s-%06d-%s\n" % (wid.encode(), i, b"p" * rnd.randrange(0, 300))
                for i in range(n))
# several handles, each writing its share in pieces that cut lines anywhere
chunks = 4
per = len(data) // chunks
pos = 0
for c in range(chunks):
    end = len(data) if c == chunks - 1 else data.index(b"\n", pos + per) + 1
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    i = pos
    while i < end:
        j = min(end, i + rnd.randrange(1, 700))
        os.write(fd, data[i:j])
        i = j
    os.close(fd)
    pos = end
"""


def check_writer_lines(elems, writers, n):
    seen = collections.defaultdict(list)
    for e in elems:
        wid, num, pad = e.split("-")
        assert set(pad) <= {"p"}, e
        seen[wid].append(int(num))
    assert sorted(seen) == sorted(writers)
    for w in writers:
        assert seen[w] == list(range(n)), f"writer {w}: lost, split, duplicated or reordered"


def precreate(q):
    """Create the list before concurrent writers start: concurrent *creation*
    loses appends (test_append_while_another_handle_creates_the_key)."""
    with open(q, "ab") as f:
        f.write(b"start-000000-\n")
    assert elements(q) == ["start-000000-"]


def test_concurrent_appends_bash_loops(mf):
    q = mf.lists("q")
    n = 400
    precreate(q)
    procs = [subprocess.Popen(
        ["bash", "-c", f"for i in $(seq 0 {n - 1}); do printf 'w{k}-%06d-\\n' $i >> {q}; done"])
        for k in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    elems = elements(q)
    assert elems[0] == "start-000000-"
    elems = elems[1:]
    assert len(elems) == 4 * n
    check_writer_lines(elems, [f"w{k}" for k in range(4)], n)
    assert os.stat(q).st_size == len(q.read_bytes())


def test_concurrent_appends_split_writes(mf):
    q = mf.lists("q")
    n = 3000
    precreate(q)
    procs = [subprocess.Popen([PY, "-c", APPEND_WRITER, str(q), f"x{k}", str(n)])
             for k in range(4)]
    for p in procs:
        assert p.wait(timeout=120) == 0
    elems = elements(q)
    assert elems[0] == "start-000000-"
    elems = elems[1:]
    assert len(elems) == 4 * n
    check_writer_lines(elems, [f"x{k}" for k in range(4)], n)


CONSUMER = r"""
import errno, os, sys
popfile, donefile = sys.argv[1], sys.argv[2]
out = []
while True:
    done = os.path.exists(donefile)  # checked BEFORE the pop
    try:
        with open(popfile, "rb") as f:
            out.append(f.read())
    except OSError as e:
        if e.errno not in (errno.ENODATA, errno.ENOENT):
            raise
        if done:
            break
sys.stdout.buffer.write(b"".join(out))
"""


def test_concurrent_pops_while_producing(mf, tmp_path):
    q = mf.lists("jobs")
    done = tmp_path / "producers-done"
    n = 600
    with open(q, "ab") as f:  # see precreate()
        f.write(b"p9-0\n")
    consumers = [subprocess.Popen([PY, "-c", CONSUMER, str(mf.ctl("pop") / "jobs"), str(done)],
                                  stdout=subprocess.PIPE) for _ in range(4)]
    producers = [subprocess.Popen(
        ["bash", "-c", f"for i in $(seq 0 {n - 1}); do echo p{k}-$i >> {q}; done"])
        for k in range(2)]
    for p in producers:
        assert p.wait(timeout=120) == 0
    done.touch()
    outs = []
    for c in consumers:
        out, _ = c.communicate(timeout=120)
        assert c.returncode == 0
        outs.append(out.decode())
    produced = {f"p{k}-{i}" for k in range(2) for i in range(n)} | {"p9-0"}
    popped = []
    for out in outs:
        assert out == "" or out.endswith("\n")
        mine = out.splitlines()
        popped += mine
        # FIFO: one consumer sees each producer's jobs in order
        for k in range(2):
            seq = [int(e.split("-")[1]) for e in mine if e.startswith(f"p{k}-")]
            assert seq == sorted(seq)
    remaining = elements(q)
    everything = popped + remaining
    dup = [e for e, c in collections.Counter(everything).items() if c > 1]
    assert not dup, f"consumed twice: {dup[:10]}"
    assert set(everything) == produced, f"lost: {sorted(produced - set(everything))[:10]}"
    assert remaining == []  # consumers ran until empty after producers finished
    assert sum(1 for o in outs if o) >= 2, "pops were not spread over consumers"


# --------------------------------------------------------------- persistence

def _populate(m):
    assert write_doc(m.json("user"), USER_JSON) is None
    assert write_doc(m.json("cfg"), b'{"port": 80}\n') is None
    jset(m.json("cfg"), "$.port", b"8080")
    jset(m.json("cfg"), "$.tls", b'{"on": true}')
    assert write_doc(m.json("cfg"), b'{"port": 1,}') == errno.EINVAL  # rejected: not kept
    assert write_doc(m.json("gone"), b"nope") == errno.EINVAL
    assert sh(f"printf 'a\\nb\\nc\\nd\\n' >> {m.lists('q')}").returncode == 0
    assert pop(m, "q") == b"a\n"
    assert pop(m, "q") == b"b\n"
    with open(m.lists("q"), "a") as f:
        f.write("e\nf\n")
    assert sh(f"printf 'x\\ny\\n' > {m.lists('r')}").returncode == 0
    assert sh(f"printf 'z\\n' > {m.lists('r')}").returncode == 0
    assert sh(f"echo 1 >> {m.lists('del')} && rm {m.lists('del')}").returncode == 0
    assert sh(f"printf 'only\\n' >> {m.lists('empty')}").returncode == 0
    assert pop(m, "empty") == b"only\n"
    m.kv("k").write_bytes(b"kv")


CFG = b'{"port": 8080,"tls":{"on": true}}\n'


def _verify(m):
    assert sorted(os.listdir(m.json())) == ["cfg", "user"]
    assert m.json("user").read_bytes() == USER_JSON
    assert m.json("cfg").read_bytes() == CFG
    assert jget(m.json("cfg"), "$.tls.on") == b"true"
    assert sorted(os.listdir(m.lists())) == ["empty", "q", "r"]
    assert m.lists("q").read_bytes() == b"c\nd\ne\nf\n"
    assert m.lists("r").read_bytes() == b"z\n"
    assert m.lists("empty").read_bytes() == b""
    assert os.listdir(m.kv()) == ["k"]
    with pytest.raises(OSError) as ei:
        pop(m, "empty")
    assert ei.value.errno == errno.ENODATA


def test_restart_clean_and_kill9(mkmount):
    m = mkmount()
    _populate(m)
    _verify(m)
    m.stop()
    m.start()
    _verify(m)
    # more changes after a restart, then a crash
    assert pop(m, "q") == b"c\n"
    jset(m.json("cfg"), "$.port", b"9")
    assert sh(f"echo g >> {m.lists('q')}").returncode == 0
    assert write_doc(m.json("new"), b"[1]\n") is None
    m.kill9()
    m.start()
    assert m.lists("q").read_bytes() == b"d\ne\nf\ng\n"
    assert pop(m, "q") == b"d\n"
    assert m.json("cfg").read_bytes() == CFG.replace(b"8080", b"9")
    assert m.json("new").read_bytes() == b"[1]\n"
    assert m.json("user").read_bytes() == USER_JSON
    assert m.lists("r").read_bytes() == b"z\n"
    # and once more, clean, to see the crash-recovered state persists too
    m.stop()
    m.start()
    assert m.lists("q").read_bytes() == b"e\nf\ng\n"
    assert sorted(os.listdir(m.json())) == ["cfg", "new", "user"]
    with pytest.raises(FileExistsError):
        os.open(m.kv("q"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)


def test_pop_and_json_view_see_new_keys_at_once(mf):
    """A miss under /.ctl/pop or /.ctl/json must not be cached: the key is
    created through another directory."""
    with pytest.raises(FileNotFoundError):
        open(mf.ctl("pop") / "fresh", "rb")
    with pytest.raises(FileNotFoundError):
        open(mf.ctl("json") / "fdoc" / "$.a", "rb")
    with open(mf.lists("fresh"), "ab") as f:
        f.write(b"job\n")
    mf.json("fdoc").write_bytes(b'{"a": 1}')
    with open(mf.ctl("pop") / "fresh", "rb") as f:
        assert f.read() == b"job\n"
    assert (mf.ctl("json") / "fdoc" / "$.a").read_bytes() == b"1\n"
