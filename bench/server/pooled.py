"""p50, p99, p99.9 and max over every request of several runs together.

usage: pooled.py RUN.csv...  (`bench --load --latencies` files, e.g. an
alternate.sh KEEP directory's ROUND-BUILD.csv): the p99 of all their
minutes as one, which a single 60-second run's p99 only samples.
"""
import csv, sys
lat=[]
for f in sys.argv[1:]:
    with open(f) as fh:
        r=csv.reader(fh); next(r)
        for row in r:
            lat.append(float(row[1]))
lat.sort()
n=len(lat)
print(f"{len(sys.argv)-1} runs, {n} requests: p50 {lat[n//2]:.2f} p99 {lat[int(n*0.99)]:.2f} p99.9 {lat[int(n*0.999)]:.2f} max {lat[-1]:.2f} ms; over 20 ms: {sum(1 for x in lat if x>20)} ({100*sum(1 for x in lat if x>20)/n:.2f} %)")
