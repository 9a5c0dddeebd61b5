#!/usr/bin/env bash
# Profiles the server's writer thread with `perf record` during a steady
# /v1/batch load (docs/performance.md, session 30): a fresh copy of the
# store, 50 s of warm-up at 25k events/s in the load process, then 20 s at
# RATE, of which 18 s are recorded. Writes perf-TAG.data and the top
# symbols in perf-TAG.txt.
#
# usage: perf.sh TAG [RATE] [`bench --load` flags, e.g. --sequential --ids segment-js]
# env:   L, B, KEY, PORT as for cpu.sh; C contacts (default 100000)
set -euo pipefail
L=${L:-target/release/leadscore}
tag=$1; rate=${2:-50000}; shift 2 || shift $#
KEY=${KEY:-$(cat wkey)}
PORT=${PORT:-18181}
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_server
writer=$(grep -l '^leadscore-write$' /proc/$P/task/*/comm | cut -d/ -f5)
LEADSCORE_WRITE_KEY=$KEY "$L" bench --load "http://127.0.0.1:$PORT" --rate "$rate" --seconds 20 \
  --warm-seconds 50 --warm-rate 25000 --contacts "${C:-100000}" "$@" &
load=$!
sleep 51
perf record -q -t "$writer" -o "perf-$tag.data" -- sleep 18
wait "$load" || true
perf report -i "perf-$tag.data" --stdio --no-children --sort symbol 2>/dev/null \
  | grep -v '^#' | grep -v '^$' | head -40 > "perf-$tag.txt"
