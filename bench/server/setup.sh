#!/usr/bin/env bash
# Builds the store the server benchmarks load (docs/performance.md): 100k
# generated contacts over 21 days (884k events), examples/b2b.toml active,
# in ./base.db, with an ingest key in ./wkey and a read key in ./rkey.
# Run from an empty working directory; L is the leadscore binary.
set -euo pipefail
L=${L:-target/release/leadscore}
here=$(cd "$(dirname "$0")/../.." && pwd)
"$L" generate --contacts 100000 --days 21 --seed 7 --out gen
"$L" --db base.db model add "$here/examples/b2b.toml" --activate
"$L" --db base.db import gen/events.jsonl
"$L" --db base.db keys create --scope ingest > wkey
"$L" --db base.db keys create --scope read > rkey
