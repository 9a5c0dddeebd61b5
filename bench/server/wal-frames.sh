#!/usr/bin/env bash
# Which B-trees a steady /v1/batch load writes (docs/performance.md,
# session 30): a fresh copy of the store, 50 s at 25k events/s, then RATE;
# the server is killed (SIGKILL, so its WAL stays) 12 s into RATE, its
# files are copied to wal-TAG/, and wal_frames.py names each WAL frame's
# B-tree.
#
# usage: wal-frames.sh TAG [RATE] [`bench --load` flags]
# env:   L, B, KEY, PORT as for cpu.sh; C contacts (default 100000)
set -euo pipefail
tag=$1; rate=${2:-50000}; shift 2 || shift $#
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_server
steady_load "$rate" "$@"
sleep 62
kill -9 "$P"
wait "$P" 2>/dev/null || true
trap - EXIT
mkdir -p "wal-$tag"
cp srv.db srv.db-wal "wal-$tag/"
wait "$load" || true
python3 "$(dirname "$0")/wal_frames.py" "wal-$tag"
