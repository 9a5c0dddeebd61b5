# Shared by cpu.sh and perf.sh (sourced): starts `leadscore serve` ($L) on
# a fresh copy of the store ($B, default base.db) on 127.0.0.1:$PORT with
# any extra `serve` flags given, sets P to its pid, stops it (SIGINT) when
# the calling script exits, and returns once it answers /healthz.
start_server() {
  rm -f srv.db srv.db-wal srv.db-shm
  # Written back first: a commit's fsync would otherwise wait behind the
  # copy's writeback (docs/performance.md, session 6).
  cp "${B:-base.db}" srv.db && sync && sleep 1
  "$L" --db srv.db serve --listen "127.0.0.1:$PORT" --deliver false "$@" > serve.log 2>&1 &
  P=$!
  trap 'kill -INT $P 2>/dev/null; wait $P 2>/dev/null' EXIT
  for _ in $(seq 100); do curl -s "127.0.0.1:$PORT/healthz" > /dev/null && break; sleep 0.1; done
}
