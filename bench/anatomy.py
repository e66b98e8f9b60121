"""Where a small put and get spend their time, layer by layer, next to the peers.

Run:  python bench/anatomy.py [--keys N] [--rounds R]

Each line times one layer of kvengine's call stack on the same 100-byte
values and 16-byte keys: the public call (`Namespace.put/get`), the storage
layer (`LogStore.put/get_value`), the bare C call through cffi, and the
system call that call makes (`pwrite`/`pread` of a record's size, issued from
Python, so it carries about the same interpreter cost as one cffi call).  The
fastest peers run the same keys in the same process.  Layers and peers are
interleaved round by round and each figure is the best round, so machine
noise hits all of them alike; the useful output is the ratios.

This is the evidence for what bounds the put and get targets of
docs/PERFORMANCE.md: a store that makes one write system call per put cannot
take less time than that call, and one that makes one read system call per
get cannot beat a store that reads from a memory map without one.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

RECORD = 136  # bytes of one 100-byte-value record with a 16-byte key, as written


def best_ns(fn: Callable[[], object], calls: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best / calls * 1e9


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    import engine
    from engine.storage import _get_tl, _get_tl_data, _unpack, lib

    n = args.keys
    rng = random.Random(7)
    names = [f"key{i:013d}" for i in range(n)]
    rng.shuffle(names)
    raw = [k.encode() for k in names]
    value = b"v" * 100
    with tempfile.TemporaryDirectory(dir=os.environ.get("KVENGINE_BENCH_DIR")) as d:
        db = engine.open(os.path.join(d, "kv"), sync="os")
        ns = db.namespace()
        for k in names:
            ns.put(k, value)
        log = ns._log
        full = [ns._prefix + k for k in raw]
        cdb = log._db
        now = int(time.time())
        seg = next(p for p in os.listdir(os.path.join(d, "kv")) if p.endswith(".seg"))
        rfd = os.open(os.path.join(d, "kv", seg), os.O_RDONLY)
        span = max(os.fstat(rfd).st_size - RECORD, 1)
        offsets = [rng.randrange(span) & ~7 for _ in range(n)]
        wfd = os.open(os.path.join(d, "scratch"), os.O_WRONLY | os.O_CREAT, 0o600)
        record = b"r" * RECORD

        def kv_get() -> None:
            for k in names:
                ns.get(k, "bytes")

        def store_get() -> None:
            for k in full:
                log.get_value(k, now)

        def c_get() -> None:
            for k in full:
                _unpack(_get_tl_data(), _get_tl(cdb, k, len(k), now))

        def sys_pread() -> None:
            for off in offsets:
                os.pread(rfd, RECORD, off)

        def kv_put() -> None:
            for k in names:
                ns.put(k, value)

        def store_put() -> None:
            for k in full:
                log.put(k, value)

        def c_put() -> None:
            for k in full:
                lib.kv_put(cdb, k, len(k), b"", 0, value, 100, 0)

        def sys_pwrite() -> None:
            os.ftruncate(wfd, 0)
            off = 0
            for _ in range(n):
                os.pwrite(wfd, record, off)
                off += RECORD

        gets: dict[str, Callable[[], None]] = {
            "kvengine Namespace.get": kv_get,
            "kvengine LogStore.get_value": store_get,
            "kvengine C call (kv_get_tl + unpack)": c_get,
            f"pread of {RECORD} B from Python": sys_pread,
        }
        puts: dict[str, Callable[[], None]] = {
            "kvengine Namespace.put": kv_put,
            "kvengine LogStore.put": store_put,
            "kvengine C call (kv_put)": c_put,
            f"pwrite of {RECORD} B from Python": sys_pwrite,
        }
        peers = open_peers(d, raw, value)
        for name, store in peers.items():
            gets[f"{name} get"] = loop(store.get, raw)
            puts[f"{name} put"] = loop(lambda k, put=store.put: put(k, value), raw)
        results: dict[str, float] = {}
        for label, fn in {**gets, **puts}.items():
            results[label] = best_ns(fn, n, args.rounds)
        for s in peers.values():
            s.close()
        os.close(rfd)
        os.close(wfd)
        db.close()
    report("get, 100 B values (hits)", gets, results, [f"{p} get" for p in peers])
    report("put, 100 B values (overwrites)", puts, results, [f"{p} put" for p in peers])


def loop(fn: Callable[[bytes], Any], keys: list[bytes]) -> Callable[[], None]:
    def run() -> None:
        for k in keys:
            fn(k)

    return run


def open_peers(d: str, keys: list[bytes], value: bytes) -> dict[str, Any]:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import peer_stores

    peers: dict[str, Any] = {}
    for name, cls in (("lmdb", peer_stores.LMDB), ("leveldb", peer_stores.LevelDB),
                      ("rocksdb", peer_stores.RocksDB)):  # fmt: skip
        try:
            store = cls(os.path.join(d, name))
        except ImportError:
            print(f"({name} is not installed: skipped; pip install -e '.[bench]')")
            continue
        for k in keys:
            store.put(k, value)
        peers[name] = store
    return peers


def report(title: str, rows: dict[str, Any], results: dict[str, float], peers: list[str]) -> None:
    fastest = min((results[p] for p in peers), default=None)
    print(f"\n{title}: best of rounds, ns per call" +
          (f"; ratio = fastest peer / row ({fastest:.0f} ns)" if fastest else ""))  # fmt: skip
    for label in rows:
        ns = results[label]
        ratio = f"{fastest / ns:6.2f}x" if fastest else ""
        print(f"  {label:42s} {ns:8.0f}  {ratio}")


if __name__ == "__main__":
    main(sys.argv[1:])
