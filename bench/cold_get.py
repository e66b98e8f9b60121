"""A get that goes to disk, taken apart: where the time of a cold hit goes.

Run:  python bench/cold_get.py [--keys 100000] [--reads 50000] [--rounds 5]

A store of --keys 16-byte keys with 100-byte values is written in random key
order and reopened without the record cache (read_cache_bytes=0), as the get
workloads of bench/peer.py find it, except that no read is ever served from
memory.  Each round reads --reads random keys through each layer, fresh keys
for each, and reports ns per call, median of the rounds:

  Namespace.get        the public call
  C call + unpack      kv_get_tl and the value's bytes, through cffi
  C call, absent key   the keydir's hash probe alone (a miss)
  os.pread 136 B       one record-sized read at a random offset of the segment
  loop alone           the benchmark's own loop over its key list

bench/anatomy.py times the same layers warm (a few keys read over and over).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import engine
from engine.storage import _get_tl, _get_tl_data, _unpack

NOW = 2_000_000_000  # seconds since the epoch: after every write, before any expiry


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--reads", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(1)
    n = args.keys
    names = [f"{i:016d}" for i in range(n)]
    with tempfile.TemporaryDirectory(dir=os.environ.get("KVENGINE_BENCH_DIR")) as d:
        with engine.open(d) as db:
            ns = db.namespace()
            for i in rng.sample(range(n), n):
                ns.put(names[i], rng.randbytes(100))
        segment = max(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".seg"))
        size = os.path.getsize(segment)
        fd = os.open(segment, os.O_RDONLY)
        try:
            with engine.open(d, read_cache_bytes=0) as db:
                ns = db.namespace()
                cdb, prefix = ns._log._db, ns._prefix
                get = ns.get

                def public(keys: list[Any]) -> None:
                    for k in keys:
                        get(k, "bytes")

                def c_call(keys: list[Any]) -> None:
                    for k in keys:
                        _unpack(_get_tl_data(), _get_tl(cdb, k, len(k), NOW))

                def c_miss(keys: list[Any]) -> None:
                    for k in keys:
                        _get_tl(cdb, k, len(k), NOW)

                def pread(offsets: list[Any]) -> None:
                    for off in offsets:
                        os.pread(fd, 136, off)

                def loop(keys: list[Any]) -> None:
                    for _ in keys:
                        pass

                # Each layer: what its loop is given (made before the clock starts) and the loop.
                layers: dict[str, tuple[Callable[[str], Any], Callable[[list[Any]], None]]] = {
                    "Namespace.get": (str, public),
                    "C call + unpack": (lambda k: prefix + k.encode(), c_call),
                    "C call, absent key": (lambda k: prefix + b"absent" + k.encode(), c_miss),
                    "os.pread 136 B": (lambda _: rng.randrange(size - 136), pread),
                    "loop alone": (str, loop),
                }
                times: dict[str, list[float]] = {label: [] for label in layers}
                for _ in range(args.rounds):
                    for label, (make, fn) in layers.items():
                        inputs = [make(names[rng.randrange(n)]) for _ in range(args.reads)]
                        t = time.perf_counter()
                        fn(inputs)
                        times[label].append((time.perf_counter() - t) / args.reads)
        finally:
            os.close(fd)
    print(f"cold get, {n} keys written in random order, no record cache; ns per call")
    for label, ts in times.items():
        print(f"  {label:20s} {statistics.median(ts) * 1e9:7.0f}")


if __name__ == "__main__":
    main()
