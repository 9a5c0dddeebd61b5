# Pages of GET /api/v1/scores?as_of=T&limit=L: the first page, then the
# next P pages through the kept listing (cursor as given) and the same
# pages with the cursor's listing number removed (computed each), against
# a server on the store bench/server/setup.sh builds (read key in ./rkey).
# Python 3 standard library only.
#
# usage: python3 past_listing_pages.py PORT T L P
#   e.g. python3 past_listing_pages.py 18191 2025-01-20 1000 10
import http.client, json, sys, time
port, at, limit, p = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
key = open('rkey').read().strip()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
def get(path):
    t0 = time.perf_counter()
    c.request("GET", path, headers={"Authorization": "Bearer " + key})
    r = c.getresponse(); body = json.loads(r.read()); assert r.status == 200, body
    return body, time.perf_counter() - t0
first, t = get(f"/api/v1/scores?as_of={at}&limit={limit}")
print(f"first page: {t:.3f} s")
seen = {}
for mode in ("kept", "computed"):
    cursor, times, ids = first["next_cursor"], [], []
    for _ in range(p):
        cur = cursor if mode == "kept" else cursor.split("~")[0].split(".")[0] + "~" + cursor.split("~", 1)[1]
        page, t = get(f"/api/v1/scores?as_of={at}&limit={limit}&cursor={cur}")
        times.append(t); ids += [x["contact_id"] for x in page["contacts"]]
        cursor = page["next_cursor"]
    seen[mode] = ids
    print(f"{mode}: {p} pages, mean {sum(times)/len(times)*1000:.1f} ms, max {max(times)*1000:.1f} ms, {len(ids)} rows, first {ids[0]}")
print("same rows" if seen["kept"] == seen["computed"] else "ROWS DIFFER")
