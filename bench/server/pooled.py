"""p50, p99, p99.9 and max over every request of several runs together.

usage: pooled.py RUN.csv...  (`bench --load --latencies` files, e.g. an
alternate.sh KEEP directory's ROUND-BUILD.csv): the p99 of all their
minutes as one, which a single 60-second run's p99 only samples.
"""
import csv
import sys

latencies = []
for path in sys.argv[1:]:
    with open(path) as f:
        rows = csv.reader(f)
        next(rows)  # due_unix_ms,latency_ms,acknowledged
        latencies.extend(float(row[1]) for row in rows)
latencies.sort()
n = len(latencies)
at = lambda q: latencies[int(n * q)]
over = sum(1 for ms in latencies if ms > 20)
print(f"{len(sys.argv) - 1} runs, {n} requests: p50 {at(0.5):.2f} p99 {at(0.99):.2f} "
      f"p99.9 {at(0.999):.2f} max {latencies[-1]:.2f} ms; over 20 ms: {over} ({100 * over / n:.2f} %)")
