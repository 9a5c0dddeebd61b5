#!/usr/bin/env bash
# Profiles the server's writer thread with `perf record` during a steady
# /v1/batch load (docs/performance.md, session 30): a fresh copy of the
# store, 50 s of warm-up at 25k events/s in the load process, then 20 s at
# RATE, of which 18 s are recorded. Writes perf-TAG.data and the top
# symbols in perf-TAG.txt (the load generator's report in load.log).
#
# usage: perf.sh TAG [RATE] [`bench --load` flags, e.g. --sequential --ids segment-js]
# env:   L, B, KEY, PORT as for cpu.sh; C contacts (default 100000);
#        PERF_FLAGS more `perf record` flags (e.g. "--call-graph dwarf -F 1000")
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_steady "$@"
sleep 51
# shellcheck disable=SC2086
perf record -q ${PERF_FLAGS:-} -t "$writer" -o "perf-$tag.data" -- sleep 18
wait "$load" || true
perf report -i "perf-$tag.data" --stdio --no-children --sort symbol 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -40 > "perf-$tag.txt"
