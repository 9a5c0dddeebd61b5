#!/usr/bin/env python3
# Rewrites random resident 4 KiB pages of a 256 MiB file with pwrite and
# reads others with pread, printing each second the mean time of each: run
# beside a `cpu.sh` run to see whether writes into cached pages slow down
# while the checkpointer's do (docs/performance.md, session 41: they did
# not; the checkpointer's slow writes were first writes to the database
# file's new pages, which this probe does not make). On the project machine,
# Python's overhead included: in a quiet moment with BUSY=1, write
# 2.1-2.4 us, read 1.6-2.0 us; light, beside the server's benchmark,
# write 3.2-6.7 us, read 2.5-6.9 us.
#
# It also writes 100 random pages a second of 1 GiB of memory filled at
# the start and otherwise left alone ("cold"): each page is written again
# only every few hours, so a host that pages out the guest's idle memory
# would show there first.
#
# usage: [BUSY=1] page-writes.py [SECONDS (default 30)] [FILE (default ./page-writes.dat, removed after)]
import mmap, os, random, time, sys
path = sys.argv[2] if len(sys.argv) > 2 else 'page-writes.dat'; size = 256 << 20; page = 4096
fd = os.open(path, os.O_RDWR | os.O_CREAT)
os.ftruncate(fd, size)
buf = os.urandom(page)
for off in range(0, size, page): os.pwrite(fd, buf, off)
os.fsync(fd)
for off in range(0, size, page): os.pread(fd, page, off)
n = size // page
cold_size = 1 << 30
cold = mmap.mmap(-1, cold_size)
for off in range(0, cold_size, page): cold[off] = 1
secs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
# Light enough to run beside a benchmark: 200 writes and 200 reads every
# 50 ms (about 2 % of a core), unless BUSY=1 (back to back, a whole core).
busy = os.environ.get('BUSY') == '1'
try:
    for s in range(secs):
        end = time.time() + 1; w = r = c = 0; tw = tr = tc = 0.0; worst = worst_cold = 0.0
        while time.time() < end:
            for _ in range(200):
                o = random.randrange(n) * page
                t = time.perf_counter(); os.pwrite(fd, buf, o); d = time.perf_counter() - t
                tw += d; w += 1; worst = max(worst, d)
                o = random.randrange(n) * page
                t = time.perf_counter(); os.pread(fd, page, o); tr += time.perf_counter() - t; r += 1
            for _ in range(5):
                o = random.randrange(cold_size // page) * page
                t = time.perf_counter(); cold[o:o + page] = buf; d = time.perf_counter() - t
                tc += d; c += 1; worst_cold = max(worst_cold, d)
            if not busy:
                time.sleep(0.05)
        print(f"{time.strftime('%H:%M:%S')} write {tw/w*1e6:.2f} us (worst {worst*1e6:.0f}) read {tr/r*1e6:.2f} us ({w} each), cold write {tc/c*1e6:.2f} us (worst {worst_cold*1e6:.0f})", flush=True)
finally:
    os.close(fd); os.unlink(path)
