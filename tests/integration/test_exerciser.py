"""The model-checked random exerciser (tests/exerciser/exerciser.py): every
operation the mount supports, from several processes, checked against the
README's file semantics, including the per-handle views of "What a reader
sees" (model: tests/exerciser/README.md).

- test_found_sequence: the smallest failing sequences the exerciser found
  on main (tests/exerciser/found/*.ops, one defect each, described on the
  file's first line), replayed on a fresh mount.  Sequences with a burst
  (concurrent processes) are nondeterministic and replayed several times.
- test_exerciser_seeds / test_exerciser_restarts: a fixed set of seeds of
  random operations (fewer under MEMFLUX_SANITIZED=1); a time budget only
  guards a very slow machine.  On failure the output has the seed, the
  operation log and the smallest failing sequence.

A long run is one command:
    python3 tests/exerciser/exerciser.py --bin build/fs/memfluxfs --seeds 1000 --ops 500
"""
import os
import subprocess
import sys

import pytest

from conftest import BIN, ROOT

EXERCISER = ROOT / "tests/exerciser/exerciser.py"
FOUND = sorted((ROOT / "tests/exerciser/found").glob("*.ops"))
SANITIZED = os.environ.get("MEMFLUX_SANITIZED") == "1"


def run_exerciser(*args, timeout=300):
    p = subprocess.run([sys.executable, str(EXERCISER), "--bin", BIN, *args],
                       capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-20000:]
    return out


@pytest.mark.parametrize("ops", FOUND, ids=[p.stem for p in FOUND])
def test_found_sequence(ops):
    text = ops.read_text()
    repeat = 1
    if "'k': 'b_" in text:  # concurrent: nondeterministic, give it several tries
        repeat = 2
        for line in text.splitlines():
            if line.startswith("# repeat:"):
                repeat = int(line.split(":")[1])
        if SANITIZED:
            repeat = max(1, repeat // 3)
    run_exerciser("--replay", str(ops), "--repeat", str(repeat))


def test_exerciser_seeds():
    # A fixed set of seeds (reproducible: the same ops on every run); the
    # time budget only bounds a very slow machine (seeds not started in time
    # are skipped and the output says so).
    if SANITIZED:
        run_exerciser("--first-seed", "1", "--seeds", "3", "--ops", "200", "--burst-len", "30",
                      "--time-budget", "30", "--shrink-seconds", "15")
    else:
        run_exerciser("--first-seed", "1", "--seeds", "6", "--ops", "300",
                      "--time-budget", "40", "--shrink-seconds", "20")


def test_exerciser_restarts():
    # Clean restarts, kill -9 + remount, and kill -9 during concurrent
    # writers (--fsync=always): every returned close is there afterwards.
    run_exerciser("--first-seed", "1000", "--seeds", "2" if SANITIZED else "5", "--ops", "200",
                  "--restarts", "--time-budget", "30" if SANITIZED else "40",
                  "--shrink-seconds", "15")
