#!/usr/bin/env bash
# job_queue.sh — a work queue on a memfluxfs list, with nothing but the shell.
#
#   usage: examples/job_queue.sh MOUNTPOINT [JOBS_PER_PRODUCER] [PRODUCERS] [CONSUMERS]
#   e.g.:  examples/job_queue.sh /mnt/mf 200 2 3
#
# Producers push jobs with `echo job >> MOUNT/lists/QUEUE` (RPUSH: one element
# per line).  Consumers take jobs by opening MOUNT/.ctl/pop/QUEUE, as
# `cat MOUNT/.ctl/pop/QUEUE` does (LPOP: every open pops one element, so two
# consumers never get the same job); an empty queue makes the open fail with
# ENODATA ("No data available").  Consumers keep going until the producers
# have finished and the queue is empty.
#
# At the end it prints a summary and checks that every job was consumed
# exactly once: exit status 0 if so, 1 if a job was lost or duplicated.
set -euo pipefail

M=${1:?usage: $0 MOUNTPOINT [JOBS_PER_PRODUCER] [PRODUCERS] [CONSUMERS]}
JOBS=${2:-200}
PRODUCERS=${3:-2}
CONSUMERS=${4:-3}

[ -d "$M/lists" ] || { echo "$M does not look like a memfluxfs mount" >&2; exit 2; }

QUEUE="jobs-$$"                 # a fresh list for this run
LIST="$M/lists/$QUEUE"
POP="$M/.ctl/pop/$QUEUE"
WORK=$(mktemp -d)               # bookkeeping, outside the mount
trap 'rm -rf "$WORK"; rm -f "$LIST"' EXIT

# Create the queue with a first batch before the workers start, so the key
# exists once instead of being created by several processes at the same time.
for i in 1 2 3; do
    echo "seed-$i" >> "$LIST"
    echo "seed-$i" >> "$WORK/produced.seed"
done

producer() {                    # producer ID: pushes JOBS jobs, one per line
    local id=$1 i
    for ((i = 1; i <= JOBS; i++)); do
        echo "job-$id-$i" >> "$LIST"
        echo "job-$id-$i" >> "$WORK/produced.$id"
    done
}

consumer() {                    # consumer ID: pops until producers are done and the queue is empty
    local id=$1 job err finished
    : > "$WORK/consumed.$id"
    while true; do
        # Look at the flag BEFORE popping: if the producers were already done
        # and the pop finds the queue empty, nothing more can arrive.
        finished=0
        [ -e "$WORK/producers-done" ] && finished=1
        # Opening the pop file pops one job; `job=$(cat "$POP")` works too,
        # bash's builtin read just saves a process per job.
        if { IFS= read -r job < "$POP"; } 2>"$WORK/err.$id"; then
            echo "$job" >> "$WORK/consumed.$id"      # "process" the job
        else
            IFS= read -r err < "$WORK/err.$id" || true
            if [[ $err != *"No data available"* ]]; then
                echo "consumer $id: $err" >&2
                return 1
            fi
            ((finished)) && return 0
        fi
    done
}

cpids=()
for ((c = 1; c <= CONSUMERS; c++)); do consumer "$c" & cpids+=($!); done
ppids=()
for ((p = 1; p <= PRODUCERS; p++)); do producer "$p" & ppids+=($!); done

for pid in "${ppids[@]}"; do wait "$pid"; done
touch "$WORK/producers-done"
status=0
for pid in "${cpids[@]}"; do wait "$pid" || status=1; done

# ---- summary
sort "$WORK"/produced.* > "$WORK/all-produced"
sort "$WORK"/consumed.* > "$WORK/all-consumed"
produced=$(wc -l < "$WORK/all-produced")
consumed=$(wc -l < "$WORK/all-consumed")
left=$(wc -l < "$LIST")
duplicated=$(uniq -d "$WORK/all-consumed" | wc -l)
lost=$(sort -u "$WORK/all-consumed" | comm -23 "$WORK/all-produced" - | wc -l)

echo "queue:      $QUEUE"
echo "producers:  $PRODUCERS x $JOBS jobs (+3 seed jobs)"
for ((c = 1; c <= CONSUMERS; c++)); do
    echo "consumer $c: $(wc -l < "$WORK/consumed.$c") jobs"
done
echo "produced:   $produced"
echo "consumed:   $consumed"
echo "left:       $left"
echo "duplicated: $duplicated"
echo "lost:       $lost"

if ((status != 0 || duplicated != 0 || lost != 0 || left != 0 || consumed != produced)); then
    echo "FAILED: every job must be consumed exactly once" >&2
    exit 1
fi
echo "OK: every job was consumed exactly once"
