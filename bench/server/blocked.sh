#!/usr/bin/env bash
# Where the server's writer and flush threads wait during a steady
# /v1/batch load (docs/performance.md, session 34): a fresh copy of the
# store, 50 s at 25k events/s, then 20 s at RATE, of which 6 s of the
# threads' context switches with kernel stacks (why they sleep) are
# recorded, then 6 s of the disk's reads (which file they read). Prints
# the most frequent stacks per thread and state (D: waiting for I/O) and
# the reads per file, and the load's p99.
#
# usage: blocked.sh TAG [RATE] [`bench --load` flags, e.g. --ids segment-js]
# env:   L, B, KEY, PORT as for cpu.sh; C contacts (default 100000)
# needs: perf (tracepoints sched:sched_switch, block:block_rq_issue),
#        filefrag; a file system directly on the disk (sector / 8 = block)
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_steady "$@"
flush=$(thread_id leadscore-flush)
sleep 52
perf record -q -e sched:sched_switch -g -t "$writer,$flush" -o "blocked-$tag.data" -- sleep 6
perf record -q -a -e block:block_rq_issue --filter 'rwbs ~ "*R*"' -o "reads-$tag.data" -- sleep 6
filefrag -v srv.db > "frag-db-$tag.txt" 2>&1 || true
filefrag -v srv.db-wal > "frag-wal-$tag.txt" 2>&1 || true
wait "$load" || true
grep -o "p99 [0-9.]* ms" load.log | tail -1
perf script -i "blocked-$tag.data" -F comm,trace,ip,sym 2>/dev/null | python3 -c '
import collections, re, sys
seen = collections.Counter()
for block in sys.stdin.read().split("\n\n"):
    lines = block.strip().split("\n")
    m = re.search(r"prev_comm=(\S+) .*prev_state=(\S+)", lines[0])
    if not m:
        continue
    frames = [l.split(None, 1)[1] for l in lines[1:] if len(l.split()) > 1]
    seen[(m.group(1), m.group(2), " < ".join(frames[2:8]))] += 1
for (comm, state, stack), n in seen.most_common(12):
    print(f"{n:6} {comm} {state} {stack}")
'
perf script -i "reads-$tag.data" -F comm,trace 2>/dev/null | python3 -c '
import collections, re, sys
def extents(name):
    found = []
    for line in open(name):
        m = re.match(r"\s*\d+:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):", line)
        if m:
            found.append((int(m.group(1)), int(m.group(2))))
    return found
files = {"srv.db": extents(sys.argv[1]), "srv.db-wal": extents(sys.argv[2])}
reads = collections.Counter()
for line in sys.stdin:
    parts = line.split()
    if len(parts) < 6:
        continue
    block = int(parts[5]) // 8
    name = next((f for f, ex in files.items() if any(s <= block <= e for s, e in ex)), "other")
    reads[(parts[0], parts[2], name)] += 1
for (comm, kind, name), n in reads.most_common():
    print(f"{n:6} reads by {comm} ({kind}) of {name}")
' "frag-db-$tag.txt" "frag-wal-$tag.txt"
