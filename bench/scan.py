"""Prefix listing of a large store, where the index no longer fits in the CPU cache.

Run:  python bench/scan.py [--keys 1000000] [--pages 200] [--rounds 5]

A store of --keys 16-byte keys (100-byte values) is written in random key order,
so that neighbouring keys lie far apart in the index's memory, then reopened;
each round lists --pages 1000-key pages under prefixes drawn at random, each
page once, so most of what a page reads is not in the cache.  Reported per
page, median of the rounds: the bare C call (`kv_list`), the storage layer's
listing (`LogStore.list_names`: the C call plus the names as str) and the
public `Namespace.list` (plus the `KeyInfo` objects).  `bench/peer.py` times
the public call on a 100,000-key store beside the peers.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable

import engine
from engine._ffi import ffi, lib

PAGE = 1000


def _fill(path: str, keys: int, rng: random.Random) -> None:
    order = rng.sample(range(keys), keys)
    with engine.open(path) as db:
        ns = db.namespace()
        for i in range(0, keys, 10_000):
            ns.put_many([{"key": f"{k:016d}", "value": "v" * 100} for k in order[i : i + 10_000]])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(7)
    groups = max(args.keys // PAGE, 1)
    with tempfile.TemporaryDirectory(dir=os.environ.get("KVENGINE_BENCH_DIR")) as d:
        _fill(d, args.keys, rng)
        with engine.open(d) as db:
            ns = db.namespace()
            log, pre = ns._log, ns._prefix
            items = ffi.new("kv_list_item[]", PAGE)
            n, more, found = ffi.new("uint32_t *"), ffi.new("int *"), ffi.new("uint32_t *")
            now = int(time.time())

            def c_call(p: str) -> None:
                full = pre + p.encode()
                rc = lib.kv_list(
                    log._db, full, len(full), b"", 0, now, PAGE, 1, log._tls.buf, items, n, more,
                    found,
                )  # fmt: skip
                assert rc == 0 and n[0] == PAGE, (rc, n[0])

            def names(p: str) -> None:
                log.list_names(pre + p.encode(), b"", now, PAGE, True, len(pre))

            def public(p: str) -> None:
                ns.list(p, PAGE)

            layers: dict[str, Callable[[str], None]] = {
                "kv_list (C call)": c_call,
                "LogStore.list_names": names,
                "Namespace.list": public,
            }
            times: dict[str, list[float]] = {label: [] for label in layers}
            for _ in range(args.rounds):
                for label, fn in layers.items():
                    # Fresh prefixes for every layer, so none reads pages another warmed.
                    prefixes = [f"{rng.randrange(groups):013d}" for _ in range(args.pages)]
                    t = time.perf_counter()
                    for p in prefixes:
                        fn(p)
                    times[label].append((time.perf_counter() - t) / args.pages)
    print(f"list of {PAGE}-key pages, {args.keys} keys written in random order; us per page")
    for label, ts in times.items():
        print(f"  {label:22s} {statistics.median(ts) * 1e6:8.1f}")


if __name__ == "__main__":
    main()
