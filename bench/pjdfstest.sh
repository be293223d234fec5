#!/usr/bin/env bash
# POSIX conformance figures for /kv with pjdfstest (https://github.com/pjd/pjdfstest):
# a fetched and locally built copy, never committed.  Counts the assertions
# ("ok N" / "not ok N" lines) passing on /kv of a fresh mount.
#
#   bench/pjdfstest.sh PJDFSTEST_DIR [MEMFLUXFS_BIN] [TEST_SUBDIRS...]
#
# PJDFSTEST_DIR holds pjdfstest.c's built binary `pjdfstest` and tests/ (without
# autotools: write a config.h with the Linux HAVE_* macros and
# `gcc -o pjdfstest pjdfstest.c`).  Run as root.  Prints passing/total per
# directory of tests and in all.  MF_MOUNT_OPTS: extra mount options
# (`-o allow_other` lets the tests that act as other users in).
set -euo pipefail
pjd=$(cd "$1" && pwd)
bin=${2:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)/build/fs/memfluxfs}
shift $(($# > 1 ? 2 : 1))
dirs=("$@")
((${#dirs[@]})) || dirs=(chmod chown link mkdir mkfifo mknod open posix_fallocate rename rmdir
                          symlink truncate unlink utimensat ftruncate granular)
tmp=$(mktemp -d /var/tmp/mf-pjd.XXXXXX)
chmod 755 "$tmp" # other users must reach the mountpoint
mkdir "$tmp/mnt"
cleanup() {
  cd /
  fusermount3 -u "$tmp/mnt" 2>/dev/null || true
  local pid
  pid=$(cat "$tmp/data/memflux.lock" 2>/dev/null || true)
  [ -n "$pid" ] && timeout 60 tail --pid="$pid" -f /dev/null 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
"$bin" --data-dir="$tmp/data" ${MF_MOUNT_OPTS:-} "$tmp/mnt"
total_ok=0
total=0
for d in "${dirs[@]}"; do
  [ -d "$pjd/tests/$d" ] || continue
  out=$(cd "$tmp/mnt/kv" && prove -v -r "$pjd/tests/$d" 2>&1 || true)
  ok=$(grep -cE '^ok [0-9]+' <<<"$out" || true)
  # the planned assertions (1..N of each file): a script that dies early
  # still counts all it planned
  planned=$(grep -oE '^1\.\.[0-9]+' <<<"$out" | cut -d. -f3 | paste -sd+ | bc)
  printf '%-16s %5d / %5d\n' "$d" "$ok" "${planned:-0}"
  total_ok=$((total_ok + ok))
  total=$((total + ${planned:-0}))
done
printf '%-16s %5d / %5d\n' all "$total_ok" "$total"
