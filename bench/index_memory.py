"""Index memory per key and worst single put latency while filling N keys.

Run: python bench/index_memory.py 1000000 10000000
Fills a store with 16-byte keys and 0-byte values (so the page cache does not
dominate RSS), then reports the RSS delta per key (minus the key bytes) and the
C index's own accounting, plus the worst and p99.99 put latency.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

from engine.storage import LogStore

KEY_BYTES = 16


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run(n: int) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("KVENGINE_BENCH_DIR")) as d:
        s = LogStore(os.path.join(d, "db"), max_segment_bytes=1 << 30)
        before_rss = rss_bytes()
        before_ix = s.stats(0)["index_bytes"]
        worst = 0.0
        lat = []
        clock = time.perf_counter
        for i in range(n):
            k = b"key%013d" % ((i * 2654435761) % (1 << 40))
            t = clock()
            s.put(k, b"")
            dt = clock() - t
            if dt > worst:
                worst = dt
            if i % 97 == 0:
                lat.append(dt)
        st = s.stats(0)
        rss = rss_bytes() - before_rss
        lat.sort()
        p9999 = lat[int(len(lat) * 0.9999)]
        print(
            f"n={n:>9,}  index={(st['index_bytes'] - before_ix) / n:6.1f} B/key  "
            f"rss={rss / n - KEY_BYTES:6.1f} B/key (+{KEY_BYTES} key bytes)  "
            f"worst put={worst * 1e3:6.2f} ms  p99.99 put={p9999 * 1e6:6.1f} us"
        )
        s.close()


if __name__ == "__main__":
    for arg in sys.argv[1:] or ["1000000"]:
        run(int(arg))
