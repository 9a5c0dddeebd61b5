#!/usr/bin/env bash
# GET /api/v1/contacts/{id} offered open loop with oha (`cargo install oha`):
# RATE requests/s (default 10000) on C connections (default 16), latency
# corrected for coordinated omission (each request's from when it was due),
# 30 s after a 10 s warm-up that is not counted, over the 100,000 contacts
# of bench/server/setup.sh's store (u00000000–u00099999). Starts the server
# itself (bench/server/lib.sh: L the binary, B the store, DELIVER), from
# setup.sh's directory (base.db, rkey). Prints one line: requests/s, success
# rate, p50, p99, p99.9, statuses.
set -euo pipefail
source "$(dirname "$0")/../server/lib.sh"
start_server
url="http://127.0.0.1:$PORT/api/v1/contacts/u000[0-9]{5}"
auth="Authorization: Bearer $(cat rkey)"
run() {
  oha -z "$1" -c "${C:-16}" -q "${RATE:-10000}" --latency-correction --no-tui \
    --rand-regex-url -H "$auth" "$url" "${@:2}"
}
run 10s > /dev/null
run 30s --output-format json > oha.json
python3 - "${RATE:-10000}" <<'PY'
import json, sys
d = json.load(open("oha.json"))
s, p = d["summary"], d["latencyPercentiles"]
print(f"offered {sys.argv[1]}/s: {s['requestsPerSec']:.0f} req/s, success {s['successRate']:.4f}, "
      f"p50 {p['p50'] * 1e3:.2f} p99 {p['p99'] * 1e3:.2f} p99.9 {p['p99.9'] * 1e3:.2f} ms, "
      f"statuses {d.get('statusCodeDistribution', {})}")
PY
