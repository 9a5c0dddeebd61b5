#!/usr/bin/env python3
"""How fast this host supplies fresh memory: maps SIZE MiB (default 512),
writes it twice with memset, and prints both rates, for 4 KiB pages and for
transparent huge pages (MADV_HUGEPAGE). On a guest whose hypervisor takes
back freed memory the first write of huge pages can be 10-80 times slower
than the second (docs/performance.md, session 38)."""
import ctypes
import mmap
import sys
import time

MADV_HUGEPAGE = 14
libc = ctypes.CDLL(None)
size = int(sys.argv[1] if len(sys.argv) > 1 else 512) << 20
for huge in (False, True, False, True):
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf = (ctypes.c_char * size).from_buffer(m)
    addr = ctypes.addressof(buf)
    if huge:
        libc.madvise(ctypes.c_void_p(addr), ctypes.c_size_t(size), MADV_HUGEPAGE)
    t0 = time.perf_counter()
    ctypes.memset(addr, 1, size)
    t1 = time.perf_counter()
    ctypes.memset(addr, 2, size)
    t2 = time.perf_counter()
    print("%s first write %.2f GB/s, second %.2f GB/s"
          % ("2 MiB pages" if huge else "4 KiB pages", size / (t1 - t0) / 1e9, size / (t2 - t1) / 1e9))
    del buf
    m.close()
