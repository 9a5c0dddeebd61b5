# Point reads (GET /api/v1/contacts/{id}) from one keep-alive client while
# H clients loop on GET /api/v1/scores?as_of=T (a listing as of a past time),
# against a server on the store bench/server/setup.sh builds (read key in
# ./rkey). Python 3 standard library only.
#
# usage: python3 point_reads_beside_listings.py PORT H N T
#   e.g. python3 point_reads_beside_listings.py 18191 4 200 2025-01-20
import http.client, os, random, sys, threading, time
port, key, heavy, n, at = int(sys.argv[1]), open('rkey').read().split()[-1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
hdr = {"Authorization": "Bearer " + key}
stop = False
done = [0]
def loop():
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    while not stop:
        c.request("GET", f"/api/v1/scores?as_of={at}&limit=50", headers=hdr)
        r = c.getresponse(); r.read(); assert r.status == 200, r.status
        done[0] += 1
ts = [threading.Thread(target=loop, daemon=True) for _ in range(heavy)]
for t in ts: t.start()
time.sleep(2 if heavy else 0)
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
lat = []
random.seed(1)
for i in range(n):
    t0 = time.perf_counter()
    c.request("GET", "/api/v1/contacts/u%08d" % random.randrange(100000), headers=hdr)
    r = c.getresponse(); r.read(); assert r.status in (200, 404), r.status
    lat.append(time.perf_counter() - t0)
    time.sleep(0.01)
stop = True
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(f"heavy={heavy} point reads={n}: p50 {q(0.5):.1f} ms, p90 {q(0.9):.1f} ms, p99 {q(0.99):.1f} ms, max {lat[-1]*1000:.1f} ms; listings done {done[0]}")
