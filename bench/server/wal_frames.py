"""Names the B-tree of every WAL frame written since the WAL's last restart.

usage: python3 wal_frames.py DIR   (DIR holds srv.db and srv.db-wal, copied
       after the server was killed with SIGKILL: wal-frames.sh)

The frames are those whose salts match the WAL header's; each frame's page
is named by SQLite's dbstat on the database file alone (opened immutable,
so the WAL is not applied). docs/performance.md, sessions 18 and 30.
"""

import collections
import sqlite3
import struct
import sys

directory = sys.argv[1]
with open(f"{directory}/srv.db-wal", "rb") as wal:
    _, _, page_size, _, salt1, salt2, _, _ = struct.unpack(">IIIIIIII", wal.read(32))
    frames, commits, pages = 0, 0, collections.Counter()
    while len(header := wal.read(24)) == 24:
        page, db_size, s1, s2, _, _ = struct.unpack(">IIIIII", header)
        if (s1, s2) != (salt1, salt2):
            break
        wal.seek(page_size, 1)
        frames += 1
        pages[page] += 1
        commits += db_size != 0
print(f"{frames} frames since the WAL's last restart, {commits} commits, {len(pages)} distinct pages")
db = sqlite3.connect(f"file:{directory}/srv.db?mode=ro&immutable=1", uri=True)
owner = dict((page, name) for name, page in db.execute("SELECT name, pageno FROM dbstat"))
by_tree, distinct = collections.Counter(), collections.Counter()
for page, count in pages.items():
    name = owner.get(page, "(a page new since)")
    by_tree[name] += count
    distinct[name] += 1
events = by_tree.get("events", 1)
for name, count in by_tree.most_common():
    print(f"{name:28s} {count:8d} frames {100 * count / frames:5.1f} %  "
          f"{count / events:5.2f} per events frame  {distinct[name]:7d} distinct pages")
