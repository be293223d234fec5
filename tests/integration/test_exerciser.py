"""The model-checked random exerciser (tests/exerciser/exerciser.py) on a
bounded number of seeds: every operation the mount supports, from several
processes, checked against the README's file semantics.  On failure the
output has the seed, the operation log and the smallest failing sequence.

A long run is one command:
    python3 tests/exerciser/exerciser.py --bin build/fs/memfluxfs --seeds 1000 --ops 500
"""
import os
import subprocess
import sys

from conftest import BIN, ROOT

EXERCISER = ROOT / "tests/exerciser/exerciser.py"
SANITIZED = os.environ.get("MEMFLUX_SANITIZED") == "1"


def run_exerciser(*args, timeout=300):
    p = subprocess.run([sys.executable, str(EXERCISER), "--bin", BIN, *args],
                       capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-20000:]
    return out


def test_exerciser_seeds():
    # Fixed seeds (reproducible in CI); the time budget keeps a slow machine
    # or a sanitizer build from running long: seeds not started are skipped.
    if SANITIZED:
        run_exerciser("--first-seed", "1", "--seeds", "6", "--ops", "200", "--burst-len", "30",
                      "--time-budget", "25", "--shrink-seconds", "20")
    else:
        run_exerciser("--first-seed", "1", "--seeds", "20", "--ops", "300",
                      "--time-budget", "30", "--shrink-seconds", "20")


def test_exerciser_restarts():
    # Clean restarts and kill -9 + remount (--fsync=always): everything a
    # returned close acknowledged is there afterwards.
    n = "3" if SANITIZED else "6"
    run_exerciser("--first-seed", "1000", "--seeds", n, "--ops", "200", "--restarts",
                  "--time-budget", "15" if SANITIZED else "20", "--shrink-seconds", "15")
