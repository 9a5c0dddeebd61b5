#!/usr/bin/env bash
# Runs cpu.sh for several builds in turn, RUNS rounds (the order reversed
# every other round), because this
# machine's speed varies by up to a half between runs (docs/performance.md,
# session 20): a difference between builds is believable only when it holds
# across alternated runs. Prints a line per run, then each build's p99s and
# their median.
#
# usage: alternate.sh RUNS RATE BIN[:STORE]...   (from the directory of
#        cpu.sh's base.db and wkey; a BIN that needs environment of its own
#        is a two-line wrapper script; BIN:STORE runs BIN on copies of STORE
#        instead of B, to compare schemas: a store migrated by BIN once,
#        or one with an index dropped)
# env:   SECS seconds per run (default 20); C, LOADARGS, WARM, WRATE, B, KEY
#        as for cpu.sh; KEEP a directory to keep each run's cpu.sh output
#        and server log in (ROUND-BUILD.out, ROUND-BUILD.log), e.g. to read
#        the store's slow transactions with LEADSCORE_LOG=info,leadscore_store=debug,
#        and each request's latency (ROUND-BUILD.csv, see cpu.sh's LATENCIES)
set -euo pipefail
runs=$1; rate=$2; shift 2
cpu=$(dirname "$0")/cpu.sh
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "$runs"); do
  # Odd rounds in the order given, even ones reversed (A B B A …): the
  # second run of a pair had the lower p99 in all ten pairs of session 36
  # whichever build it was (docs/performance.md), so a fixed order
  # favours the last build.
  order=("$@")
  if (( round % 2 == 0 )); then
    order=()
    for (( i = $#; i >= 1; i-- )); do order+=("${!i}"); done
  fi
  for pair in "${order[@]}"; do
    bin=${pair%%:*}
    store=${B:-base.db}
    [ "$pair" = "$bin" ] || store=${pair#*:}
    latencies=${KEEP:+$KEEP/$round-$(basename "$pair").csv}
    [ -z "$latencies" ] || mkdir -p "$KEEP"
    out=$(L=$bin B=$store LATENCIES=$latencies bash "$cpu" "$rate" "${SECS:-20}" 2>&1) || true
    if [ -n "${KEEP:-}" ]; then
      mkdir -p "$KEEP"
      echo "$out" > "$KEEP/$round-$(basename "$pair").out"
      cp serve.log "$KEEP/$round-$(basename "$pair").log" 2>/dev/null || true
    fi
    load=$(echo "$out" | grep '^POST' | tail -1)
    p99=$(echo "$load" | grep -o 'p99 [0-9.]* ms' | awk '{print $2}')
    echo "$load" | grep -q 'acknowledged' || p99=failed
    writer=$(echo "$out" | awk '$1 == "leadscore-write" {print $2}')
    rss=$(echo "$out" | awk '/VmHWM/ {printf "%.0f", $2 / 1024}')
    steal=$(echo "$out" | grep -o 'took [0-9]* ms' | awk '{print $2}')
    given=$(echo "$out" | grep -o 'reporting: [0-9]* MiB' | awk '{print $2}')
    ckpt=$(echo "$out" | awk '$1 == "leadscore-check" {print $2}')
    echo "round $round $(basename "$pair"): $(echo "$load" | sed 's/.*requests, //; s/latency from due time //'); writer ${writer:-?} s, checkpointer ${ckpt:-?} s, peak RSS ${rss:-?} MB, steal ${steal:-?} ms, given back ${given:-?} MiB"
    echo "$pair ${p99:-failed}" >> "$results"
  done
done
echo
for pair in "$@"; do
  awk -v b="$pair" '$1 == b {print $2}' "$results" | sort -g | awk -v b="$(basename "$pair")" '
    {v[NR] = $1; list = list (NR > 1 ? ", " : "") $1}
    END {m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%s: p99 %s ms (sorted), median %s ms\n", b, list, m}'
done
