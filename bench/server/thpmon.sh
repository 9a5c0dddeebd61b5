#!/usr/bin/env bash
# Fresh memory during a steady /v1/batch load: every 5 s, the system's
# transparent-huge-page faults (`thp_fault_alloc`), the server's RSS and
# huge pages, and its minor faults (all threads, then the writer's), to see
# when the heap grows and what that costs (docs/performance.md, session 38).
#
# usage: thpmon.sh RATE [extra `serve` flags]   (from setup.sh's directory)
# env:   L, B, KEY, C as for cpu.sh; LOADARGS more `bench --load` flags
set -euo pipefail
rate=$1; shift
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_server "$@"
# shellcheck disable=SC2086
steady_load "$rate" ${LOADARGS:-}
w=$(thread_id leadscore-write)
vm() { awk -v k="$1" '$1 == k {print $2}' /proc/vmstat; }
for _ in $(seq 15); do
  echo "$(date +%T) thp_fault_alloc=$(vm thp_fault_alloc)" \
    "rss_kb=$(awk '/^VmRSS/ {print $2}' /proc/"$P"/status)" \
    "anonhuge_kb=$(awk '/^AnonHugePages/ {print $2}' /proc/"$P"/smaps_rollup)" \
    "minflt=$(awk '{print $10}' /proc/"$P"/stat)" \
    "writer_minflt=$(awk '{print $10}' /proc/"$P"/task/"$w"/stat)"
  sleep 5
done
wait "$load" || true
tail -2 load.log
