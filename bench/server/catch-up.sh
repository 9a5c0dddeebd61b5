#!/usr/bin/env bash
# What the writer's catch-ups are made of (docs/performance.md, session 42):
# a fresh copy of the store, 50 s of warm-up at 25k events/s, then 20 s at
# RATE, during which the writer thread's fdatasync and ftruncate calls are
# recorded (25 s). A catch-up is SQLite's complete checkpoint from the
# writer's connection: it syncs the WAL, copies what is left of it into
# the database file, truncates that file to the database's size and syncs
# it. Prints, per catch-up: the WAL's sync, the copy (from the end of that
# sync to the truncation), and the database file's sync, in ms; and the
# load's p99.
#
# usage: catch-up.sh TAG [RATE] [`bench --load` flags, e.g. --ids segment-js]
# env:   L, B, KEY, PORT as for cpu.sh; C contacts (default 100000)
# needs: perf (tracepoints syscalls:sys_{enter,exit}_{fdatasync,ftruncate})
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_steady "$@"
sleep 55
perf record -q -t "$writer" -o "catch-up-$tag.data" -e syscalls:sys_enter_fdatasync \
  -e syscalls:sys_exit_fdatasync -e syscalls:sys_enter_ftruncate \
  -e syscalls:sys_exit_ftruncate -- sleep 25
wait "$load" || true
grep -o "p99 [0-9.]* ms" load.log | tail -1
perf script -i "catch-up-$tag.data" -F time,event,trace 2>/dev/null | python3 -c '
import re, sys
calls = []  # (name, fd, start, end)
entered = None
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+):\s+syscalls:sys_(enter|exit)_(\w+):\s*(.*)", line)
    if not m:
        continue
    t, kind, name, rest = float(m[1]), m[2], m[3], m[4]
    if kind == "enter":
        entered = (name, int(re.search(r"fd: (0x[0-9a-f]+)", rest)[1], 16), t)
    elif entered and entered[0] == name:
        calls.append((name, entered[1], entered[2], t))
        entered = None
db = {fd for name, fd, _, _ in calls if name == "ftruncate"}
print("catch-up at (s)   WAL sync (ms)   copy (ms)   database sync (ms)")
for i, (name, fd, start, end) in enumerate(calls):
    if name != "fdatasync" or fd not in db:
        continue
    wal = next((c for c in reversed(calls[:i]) if c[0] == "fdatasync" and c[1] not in db), None)
    trunc = next((c for c in reversed(calls[:i]) if c[0] == "ftruncate"), None)
    if wal is None or trunc is None or start - wal[3] > 1:
        continue
    print("%14.3f   %13.1f   %9.1f   %18.1f" % (wal[2], (wal[3] - wal[2]) * 1e3,
          (trunc[2] - wal[3]) * 1e3, (end - start) * 1e3))
'
