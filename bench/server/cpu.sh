#!/usr/bin/env bash
# Open-loop /v1/batch load against a fresh copy of a store, printing the
# load generator's figures and the CPU seconds each server thread used
# during the load (the writer is `leadscore-write`).
#
# usage: cpu.sh RATE SECONDS [extra `serve` flags]
# env:   L    the leadscore binary (default: target/release/leadscore)
#        B    the store to copy (default: base.db, built as in docs/performance.md)
#        KEY  an ingest key of that store (default: the contents of ./wkey)
#        C    contacts the load spreads over (default 20000)
#        LOADARGS  more `bench --load` flags, e.g. --sequential
#        WARM seconds of load before the measured run (default 0; 25 fills
#             a 1 GiB WAL at 22k events/s, for steady-state figures), sent
#             by the same load process (`bench --load --warm-seconds`), so
#             the measured part starts without a new client starting up
#        WRATE events/s of that warm-up (default RATE: a rate the build
#             sustains, so that no backlog reaches the measured run)
#        LATENCIES a file for each measured request's due time and latency
#             (`bench --load --latencies`, CSV)
#        LOADER the binary that sends the load (default: L)
#        WARM_APART=1 the warm-up from a load process of its own, as before
#             session 30 (the switch then stalls the server for ~150 ms)
# Also prints the load generator's CPU (with /usr/bin/time, when present)
# and how long some task waited for a CPU meanwhile (/proc/pressure/cpu).
set -euo pipefail
R=$1; S=${2:-20}; shift 2 || shift $#
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
start_server "$@"
timed=()
[ -x /usr/bin/time ] && timed=(/usr/bin/time -f "load generator CPU %U s user, %S s system")
load() {
  LEADSCORE_WRITE_KEY=$KEY "${timed[@]}" "${LOADER:-$L}" bench --load "http://127.0.0.1:$PORT" --rate "$R" \
    --seconds "$1" --contacts "${C:-20000}" ${LOADARGS:-} "${warm[@]}" \
    ${LATENCIES:+--latencies "$LATENCIES"}
}
# microseconds some task waited for a CPU since boot (0 without PSI)
waited() { awk '/^some/ {sub("total=", "", $5); print $5}' /proc/pressure/cpu 2>/dev/null || echo 0; }
# CPU ticks the hypervisor ran something else while this machine's CPUs
# wanted to run (steal, /proc/stat) since boot
stolen() { awk '$1 == "cpu" {print $9}' /proc/stat; }
# KiB of free memory the guest reported to the host since boot (virtio
# free page reporting; 0 without it): the host takes it back, and its next
# use faults in the host (docs/performance.md, sessions 38 and 41)
reported() { cat /sys/module/page_reporting/parameters/reported_kib 2>/dev/null || echo 0; }
# the three counters above, on one line
machine() { echo "$(waited) $(stolen) $(reported)"; }
warm=()
if [ "${WARM:-0}" -gt 0 ]; then
  if [ -n "${WARM_APART:-}" ]; then
    R=${WRATE:-$R} load "$WARM" 2>&1 | sed 's/^/warm-up: /'
  else
    warm=(--warm-seconds "$WARM" --warm-rate "${WRATE:-$R}")
  fi
fi
# tid, name, CPU ticks (user + system), user ticks, nanoseconds waited
# runnable for a CPU (schedstat); threads gone meanwhile skipped
snap() {
  for t in /proc/$P/task/*; do
    s=$(cat "$t/stat" 2>/dev/null) || continue
    q=$(awk '{print $2}' "$t/schedstat" 2>/dev/null || echo 0)
    echo "$(basename "$t") $(cat "$t/comm" 2>/dev/null) $(echo "${s##*) }" | awk '{print $12+$13, $12}') ${q:-0}"
  done
}
# The CPU figures cover the measured part: with a warm-up in the load
# process, the first snapshot is taken when it ends.
before() { snap > cpu.before; machine > machine.before; }
snapper=
if [ ${#warm[@]} -gt 0 ]; then (sleep "$WARM"; before) & snapper=$!; else before; fi
load "$S" || echo "(the load reported failed requests)"
[ -z "$snapper" ] || wait "$snapper"
read -r w0 s0 r0 < machine.before
read -r w1 s1 r1 <<< "$(machine)"
snap > cpu.after
ticks=$(getconf CLK_TCK)
echo "CPU pressure: some task waited $(( (w1 - w0) / 1000 )) ms for a CPU"
echo "steal: the host took $(( (s1 - s0) * 1000 / ticks )) ms of this machine's CPUs"
echo "free page reporting: $(( (r1 - r0) / 1024 )) MiB given back to the host"
awk -v hz="$ticks" 'NR==FNR {b[$1]=$3; u[$1]=$4; q[$1]=$5; next} {d=$3-b[$1]; if (d>0) {s[$2]+=d; us[$2]+=$4-u[$1]; qs[$2]+=$5-q[$1]}} END {for (k in s) printf "%s %.2f s (user %.2f s, waited %.0f ms for a CPU)\n", k, s[k]/hz, us[k]/hz, qs[k]/1e6}' cpu.before cpu.after | sort
grep VmHWM "/proc/$P/status"
