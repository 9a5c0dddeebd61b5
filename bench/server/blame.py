#!/usr/bin/env python3
"""What the server was doing while each slow /v1/batch request waited.

usage: blame.py SERVE_LOG LATENCIES_CSV [THRESHOLD_MS [EPISODES]]

SERVE_LOG is a `leadscore serve` log written with
LEADSCORE_LOG=info,leadscore_store=debug,leadscore_server=debug (its slow
transactions, slow flushes and checkpoint passes); LATENCIES_CSV is
`bench --load --latencies` of the same run (alternate.sh with KEEP keeps
both as ROUND-BUILD.log and ROUND-BUILD.csv). For each request slower than
THRESHOLD_MS (default 20) it lists the slow transactions and flushes that
overlapped its wait, and counts the requests by the kinds found: `catchup`
(a transaction whose `after` phase took over 3 ms: the writer's copy of the
WAL's rest before a restart), `tx` and `tx_idle` (other slow ingest and
idle-moment transactions), `flush` (a WAL sync of 5 ms or more the
acknowledgement waited for), `none` (nothing logged: waits under the logs'
thresholds that added up). Then it prints the EPISODES (default 0) seconds
with the most slow requests: every logged event in them, checkpoint passes
included, with times in ms from the window's start.
"""
import bisect
import collections
import csv
import datetime
import re
import signal
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")
FIELD = re.compile(r'(\w+)=("?[\w.+-]+"?)')


def events(path):
    """(start ms, end ms, kind, fields, text) of each logged event; the log's
    time is when the event ended."""
    found = []
    for line in open(path, encoding="utf-8", errors="replace"):
        line = ANSI.sub("", line)
        stamp = re.match(r"(\S+Z)", line)
        if not stamp:
            continue
        end = datetime.datetime.strptime(stamp.group(1), "%Y-%m-%dT%H:%M:%S.%fZ")
        end = end.replace(tzinfo=datetime.timezone.utc).timestamp() * 1e3
        fields = dict(FIELD.findall(line))
        if "slow transaction" in line:
            took = float(fields["total_ms"])
            if float(fields.get("after_ms", 0)) > 3:
                kind = "catchup"
            elif fields.get("kind") == '"idle"':
                kind = "tx_idle"
            else:
                kind = "tx"
            text = "%s %s msgs %.1f ms" % (fields.get("kind"), fields.get("messages"), took)
        elif "slow flush" in line:
            took, kind = float(fields["ms"]), "flush"
            text = "%.1f ms, %s commits" % (took, fields.get("commits"))
        elif "checkpoint pass" in line:
            took = float(fields["copy_ms"]) + float(fields["writeback_ms"])
            kind = "pass"
            text = "frames %s copied %s, %s more since; copy %.1f ms, writeback %.1f ms%s" % (
                fields["frames"], fields["copied"],
                int(fields["frames_after"]) - int(fields["copied"]),
                float(fields["copy_ms"]), float(fields["writeback_ms"]),
                " (waited)" if fields.get("waited") == "true" else "")
        else:
            continue
        found.append((end - took, end, kind, fields, text))
    found.sort(key=lambda e: e[0])
    return found


def main():
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under `| head`
    log, latencies = sys.argv[1], sys.argv[2]
    threshold = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    episodes = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    logged = events(log)
    waits = [e for e in logged if e[2] != "pass"]
    starts = [e[0] for e in waits]
    requests = [(float(r["due_unix_ms"]), float(r["latency_ms"]))
                for r in csv.DictReader(open(latencies, encoding="utf-8"))]
    slow = [r for r in requests if r[1] > threshold]
    print("%d requests, %d above %g ms" % (len(requests), len(slow), threshold))
    blamed = collections.Counter()
    example = {}
    for due, ms in slow:
        first = bisect.bisect_left(starts, due - 1000)
        overlapping = [e for e in waits[first:] if e[0] < due + ms and e[1] > due]
        key = "+".join(sorted({e[2] for e in overlapping})) or "none"
        blamed[key] += 1
        example.setdefault(key, (ms, [e[4] for e in overlapping][:4]))
    for key, count in blamed.most_common():
        ms, texts = example[key]
        print("%6d %-28s e.g. %.1f ms: %s" % (count, key, ms, "; ".join(texts)))
    by_second = collections.Counter(int(due // 1000) for due, _ in slow)
    print("seconds with slow requests: %d, the most: %s"
          % (len(by_second), sorted(by_second.values(), reverse=True)[:12]))
    for second, count in by_second.most_common(episodes):
        inside = [r for r in slow if int(r[0] // 1000) == second]
        begin = min(due for due, _ in inside) - 150
        end = max(due + ms for due, ms in inside) + 50
        print("\n%d slow requests in second %d (window %.0f ms):" % (count, second, end - begin))
        for start, stop, kind, _, text in logged:
            if begin <= stop <= end:
                print("  %6.0f %-8s %s" % (stop - begin, kind, text))
        print("  requests (ms from the window's start: latency):",
              ", ".join("%.0f: %.1f" % (due - begin, ms)
                        for due, ms in requests if begin <= due <= end)[:600])


if __name__ == "__main__":
    main()
