"""bench/ must keep running: `bench/run --quick` on a tiny size (the figures
themselves are not checked here; timed assertions do not belong in tests)."""
import os
import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.skipif(os.environ.get("MEMFLUX_SANITIZED") == "1",
                    reason="run once, against the normal build")
@pytest.mark.skipif(not (ROOT.parent / "shared/bench/nullfs_ll.c").exists(),
                    reason="../shared (the FUSE floor sources) is not beside this checkout")
def test_bench_quick_runs(tmp_path):
    env = dict(os.environ, BENCH_TMP_PARENT=str(tmp_path))
    r = subprocess.run(["bash", str(ROOT / "bench/run"), "--quick"], capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = r.stdout
    # every target was measured side by side, with ratios
    for target in ("memfluxfs", "tmpfs", "nullfs_ll", "redis"):
        assert target in out, out[-3000:]
    tsv = ROOT / "bench/out/results.tsv"
    assert tsv.exists() and tsv.stat().st_size > 0
    # and it left nothing mounted behind (under its own work dir: another
    # bench may be running on the machine)
    mounts = pathlib.Path("/proc/mounts").read_text()
    assert str(tmp_path) not in mounts
