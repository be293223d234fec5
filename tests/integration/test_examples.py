"""examples/: each program runs against a fresh mount, exits 0, prints what it
promises, and leaves the state it describes (checked through the mount)."""
import json
import os
import re
import subprocess

from conftest import ROOT

EX = ROOT / "examples"
PY = "/usr/bin/python3"


def run(*cmd, timeout=120):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout)


def test_examples_readme_mentions_every_example():
    text = (EX / "README.md").read_text()
    for name in ("job_queue.sh", "json_config.sh", "json_config.py", "kv_files.py"):
        assert (EX / name).is_file()
        assert f"examples/{name} /mnt/mf" in text, name


def test_job_queue(mf):
    r = run("bash", EX / "job_queue.sh", mf.mnt, 150, 2, 3)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "OK: every job was consumed exactly once" in out
    assert re.search(r"^produced:\s+303$", out, re.M), out
    assert re.search(r"^consumed:\s+303$", out, re.M), out
    assert re.search(r"^duplicated:\s+0$", out, re.M)
    assert re.search(r"^lost:\s+0$", out, re.M)
    per = [int(n) for n in re.findall(r"^consumer \d: (\d+) jobs$", out, re.M)]
    assert len(per) == 3 and sum(per) == 303
    # the queue it used is removed at exit
    assert os.listdir(mf.lists()) == []


def test_job_queue_defaults_and_usage(mf):
    r = run("bash", EX / "job_queue.sh", mf.mnt)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"^produced:\s+403$", r.stdout, re.M)
    r = run("bash", EX / "job_queue.sh")
    assert r.returncode != 0 and "usage" in r.stderr
    r = run("bash", EX / "job_queue.sh", "/nonexistent")
    assert r.returncode != 0


def test_json_config_sh(mf):
    r = run("bash", EX / "json_config.sh", mf.mnt)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "service: billing" in out
    assert "port:    8080" in out
    assert "port:     9000" in out
    assert 'owner:    "ops"' in out
    assert 'features: ["invoicing","metrics"]' in out
    assert "invalid document refused; config unchanged" in out
    assert "invalid value refused; debug is still true" in out
    final = json.loads(mf.json("app-config").read_bytes())
    assert final == {"service": "billing", "server": {"host": "127.0.0.1", "port": 9000},
                     "features": ["invoicing", "metrics"], "debug": True, "owner": "ops"}
    assert out.rstrip().endswith(json.dumps(final, separators=(",", ":")))
    assert os.listdir(mf.json()) == ["app-config"]
    # its refused writes are in the log, naming the key
    assert re.search(r"rejected JSON json/app-config: .* at byte \d+", mf.log())
    # running it again over the existing config works too
    r = run("bash", EX / "json_config.sh", mf.mnt)
    assert r.returncode == 0, r.stdout + r.stderr


def test_json_config_py(mf):
    r = run(PY, EX / "json_config.py", mf.mnt)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "service: billing" in out
    assert "port:     9000" in out
    assert "owner:    ops" in out
    assert "missing:  None" in out
    assert "invalid document refused: Invalid argument" in out
    assert "invalid value refused: Invalid argument" in out
    final = json.loads(mf.json("app-config-py").read_bytes())
    assert final == {"service": "billing", "server": {"host": "0.0.0.0", "port": 9000},
                     "features": ["invoicing", "metrics"], "debug": True, "owner": "ops",
                     "odd key": {"spaces": "ok"}}
    assert f"final config: {json.dumps(final, sort_keys=True)}" in out
    assert (mf.ctl("json") / "app-config-py" / "$['odd key'].spaces").read_bytes() == b'"ok"\n'
    r = run(PY, EX / "json_config.py")
    assert r.returncode != 0 and "usage" in r.stderr


def test_kv_files_py(mf):
    r = run(PY, EX / "kv_files.py", mf.mnt)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "greeting = 'hello\\nworld\\n'" in out
    assert "blob[250:260] = fafbfcfdfeff00010203" in out
    assert "counter = 5" in out
    assert "renamed log -> events: True" in out
    assert re.search(r"^  blob\s+1024 bytes", out, re.M)
    assert re.search(r"^  events\s+24 bytes", out, re.M)
    assert "after delete: ['counter', 'events', 'greeting']" in out
    assert sorted(os.listdir(mf.kv())) == ["counter", "events", "greeting"]
    assert mf.kv("greeting").read_bytes() == b"hello\nworld\n"
    assert mf.kv("events").read_bytes() == b"event 0\nevent 1\nevent 2\n"
    assert mf.kv("counter").read_bytes() == b"5"


def test_examples_survive_restart(mf):
    """What the examples stored is durable like anything else."""
    assert run("bash", EX / "json_config.sh", mf.mnt).returncode == 0
    assert run(PY, EX / "kv_files.py", mf.mnt).returncode == 0
    before = {p: (mf.mnt / p).read_bytes() for p in ("json/app-config", "kv/events", "kv/greeting")}
    mf.stop()
    mf.start()
    for p, data in before.items():
        assert (mf.mnt / p).read_bytes() == data
