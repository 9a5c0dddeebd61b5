#!/usr/bin/env bash
# GET /api/v1/contacts/{id} offered open loop with oha (`cargo install oha`):
# RATE requests/s (default 10000) on C connections (default 16), latency
# corrected for coordinated omission (each request's from when it was due),
# 30 s after a 10 s warm-up that is not counted, over the 100,000 contacts
# of bench/server/setup.sh's store (u00000000–u00099999). Starts the server
# itself (bench/server/lib.sh: L the binary, B the store, DELIVER), from
# setup.sh's directory (base.db, rkey). Prints one line: requests/s, success
# rate, p50, p99, p99.9, statuses, and the CPU seconds the server and oha
# used in the 30 s.
#
# FLOOR=1 offers GET /healthz instead (no key, no store): what this host
# gives with the load tool on the same cores when the server does nearly
# nothing, the floor under the contact read's figures.
set -euo pipefail
source "$(dirname "$0")/../server/lib.sh"
start_server
if [ -n "${FLOOR:-}" ]; then
  target=(http://127.0.0.1:$PORT/healthz)
else
  target=(--rand-regex-url -H "Authorization: Bearer $(cat rkey)"
    "http://127.0.0.1:$PORT/api/v1/contacts/u000[0-9]{5}")
fi
args=(-c "${C:-16}" -q "${RATE:-10000}" --latency-correction --no-tui "${target[@]}")
# User + system ticks (1/100 s) of the server process.
ticks() { awk '{print $14 + $15}' "/proc/$P/stat"; }
oha -z 10s "${args[@]}" > /dev/null
before=$(ticks)
/usr/bin/time -f "%U %S" -o oha.time oha -z 30s "${args[@]}" --output-format json > oha.json
after=$(ticks)
python3 - "${RATE:-10000}" "$before" "$after" <<'PY'
import json, sys
rate, before, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
d = json.load(open("oha.json"))
s, p = d["summary"], d["latencyPercentiles"]
user, system = map(float, open("oha.time").read().split())
print(f"offered {rate}/s: {s['requestsPerSec']:.0f} req/s, success {s['successRate']:.4f}, "
      f"p50 {p['p50'] * 1e3:.2f} p99 {p['p99'] * 1e3:.2f} p99.9 {p['p99.9'] * 1e3:.2f} ms, "
      f"statuses {d.get('statusCodeDistribution', {})}, "
      f"CPU s of 30: server {(after - before) / 100:.2f}, oha {user + system:.2f}")
PY
