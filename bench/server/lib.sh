# Shared by the scripts of bench/server (sourced), from the directory of
# setup.sh's base.db and wkey. Defaults: L the leadscore binary, KEY an
# ingest key of the store, PORT the server's.
L=${L:-target/release/leadscore}
KEY=${KEY:-$(cat wkey)}
PORT=${PORT:-18181}

# Starts `leadscore serve` ($L) on a fresh copy of the store ($B, default
# base.db) on 127.0.0.1:$PORT with any extra `serve` flags given, sets P
# to its pid, stops it (SIGINT) when the calling script exits, and returns
# once it answers /healthz. DELIVER=true runs the trigger deliverer in the
# server, as `serve` does by default (off by default here: the figures
# since session 6 are without it).
start_server() {
  rm -f srv.db srv.db-wal srv.db-shm
  # Written back first: a commit's fsync would otherwise wait behind the
  # copy's writeback (docs/performance.md, session 6).
  cp "${B:-base.db}" srv.db && sync && sleep 1
  "$L" --db srv.db serve --listen "127.0.0.1:$PORT" --deliver "${DELIVER:-false}" "$@" > serve.log 2>&1 &
  P=$!
  trap 'kill -INT $P 2>/dev/null; wait $P 2>/dev/null' EXIT
  for _ in $(seq 600); do curl -s "127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
}

# Offers a steady /v1/batch load in the background (pid in `load`): 50 s
# at 25k events/s, then 20 s at RATE ($1), over ${C:-100000} contacts, with
# any more `bench --load` flags given; its report goes to load.log.
steady_load() {
  local rate=$1
  shift
  LEADSCORE_WRITE_KEY=$KEY "$L" bench --load "http://127.0.0.1:$PORT" --rate "$rate" --seconds 20 \
    --warm-seconds 50 --warm-rate 25000 --contacts "${C:-100000}" "$@" > load.log 2>&1 &
  load=$!
}

# The thread id of the server's thread named $1 (e.g. leadscore-write).
thread_id() { grep -l "^$1\$" /proc/"$P"/task/*/comm | cut -d/ -f5; }

# The start of perf.sh, blocked.sh and catch-up.sh, whose arguments are
# TAG [RATE] [`bench --load` flags]: starts the server and steady_load at
# RATE (default 50000) with those flags, and sets tag and writer (the
# writer thread's id).
start_steady() {
  tag=$1
  local rate=${2:-50000}
  shift 2 || shift $#
  start_server
  writer=$(thread_id leadscore-write)
  steady_load "$rate" "$@"
}
