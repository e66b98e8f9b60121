"""Compaction and hint-file figures of docs' issue targets.

Run (each part alone or all):
    python bench/compaction.py latency [--keys 60000] [--value 1024] [--rounds 4] [--trials 5]
    python bench/compaction.py space   [--keys 50000] [--value 1024]
    python bench/compaction.py open    [--keys 1000000] [--repeat 5]
    python bench/compaction.py all

latency: put latency (p50, p99, max) of a writer thread without compaction, then
    while another thread compacts every sealed segment of a store whose older
    versions are dead; the target is p99 during <= 2x p99 without, max <= 5 ms.
space:  a store whose bytes are 80% dead (overwritten, deleted, expired) is fully
    compacted and closed; its disk use is compared with a fresh store into which
    only the live data was written (target <= 1.1x); compaction input MB/s
    (target >= 200) comes from the same pass.
open:   open time of a store of N keys (16-byte keys, 100-byte values) from its hint
    files: wall and CPU seconds, median of --repeat opens (target < 0.3 s at 1M).
Stores are created under $KVENGINE_BENCH_DIR (default: the system temp dir).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable

from engine.results import CompactionReport
from engine.storage import BatchOp, LogStore

NOW = 2_000_000_000
MB = 1024 * 1024


def _dir_bytes(path: str) -> tuple[int, int, int]:
    """(segment bytes, all file bytes, allocated bytes) of a store directory."""
    seg = total = alloc = 0
    for name in os.listdir(path):
        st = os.stat(os.path.join(path, name))
        total += st.st_size
        alloc += st.st_blocks * 512
        if name.endswith(".seg"):
            seg += st.st_size
    return seg, total, alloc


def _pct(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6


def _timed_puts(store: LogStore, keys: int, value: bytes, until: Callable[[], bool]) -> list[int]:
    """Puts (overwrites of existing keys) until `until()`; returns each put's nanoseconds."""
    lat: list[int] = []
    i = 0
    put = store.put
    clock = time.perf_counter_ns
    while not until():
        key = b"key-%012d" % (i % keys)
        t = clock()
        put(key, value)
        lat.append(clock() - t)
        i += 1
        if i % 16 == 0:
            time.sleep(0.0005)  # an application's pace (~20-30k puts/s), not a saturating loop
    return lat


def _compact_in_thread(
    store: LogStore, ids: list[int], out: list[CompactionReport], done: threading.Event
) -> None:
    try:
        out.append(store.compact(NOW, ids))
    finally:
        done.set()


def latency(base: str, keys: int, value_size: int, rounds: int, trials: int) -> None:
    path = os.path.join(base, "latency")
    store = LogStore(path, max_segment_bytes=32 * MB)
    value = os.urandom(value_size)
    quiet: list[int] = []
    busy: list[int] = []
    seconds: list[float] = []
    in_bytes = 0
    for _ in range(trials):
        for _ in range(rounds):
            _write(store, b"key-", keys, value)
        store.sync()
        sealed = [s.id for s in store.segments(NOW) if not s.active]
        in_bytes += sum(s.size for s in store.segments(NOW) if not s.active)
        deadline = time.monotonic() + 1.0
        quiet += _timed_puts(store, keys, value, lambda d=deadline: time.monotonic() > d)
        done = threading.Event()
        result: list[CompactionReport] = []
        worker = threading.Thread(target=_compact_in_thread, args=(store, sealed, result, done))
        worker.start()
        busy += _timed_puts(store, keys, value, done.is_set)
        worker.join()
        seconds.append(result[0].seconds)
    store.close()
    print(
        f"latency: {trials} trials, {in_bytes / trials / MB:.0f} MB sealed input each, "
        f"{keys} keys x {value_size} B, {rounds} versions each"
    )
    for name, lat in (("without compaction", quiet), ("during compaction", busy)):
        print(
            f"  {name:20s} puts={len(lat):7d} p50={_pct(lat, 0.5):.3f} ms "
            f"p99={_pct(lat, 0.99):.3f} ms max={max(lat) / 1e6:.3f} ms"
        )
    ratio = _pct(busy, 0.99) / _pct(quiet, 0.99)
    print(f"  p99 ratio during/without: {ratio:.2f} (compactions took {sum(seconds):.2f} s)")


def _write(store: LogStore, prefix: bytes, n: int, value: bytes, expiration: int = 0) -> None:
    ops = [BatchOp(prefix + b"%012d" % i, value, expiration=expiration) for i in range(n)]
    for i in range(0, n, 500):
        store.write_batch(ops[i : i + 500])


def space(base: str, keys: int, value_size: int) -> None:
    value = os.urandom(value_size)
    path = os.path.join(base, "dead80")
    store = LogStore(path, max_segment_bytes=64 * MB)
    # Per live byte: 2 overwritten, 1 deleted, 1 expired => 80% of the bytes are dead.
    _write(store, b"live-", keys, os.urandom(value_size))
    _write(store, b"live-", keys, os.urandom(value_size))
    _write(store, b"gone-", keys, value)
    for i in range(keys):
        store.delete(b"gone-%012d" % i)
    _write(store, b"ttl--", keys, value, expiration=NOW - 60)
    _write(store, b"live-", keys, value)
    before = _dir_bytes(path)
    report = store.compact(NOW, "all")
    store.close()
    after = _dir_bytes(path)

    fresh_path = os.path.join(base, "fresh")
    fresh = LogStore(fresh_path, max_segment_bytes=64 * MB)
    _write(fresh, b"live-", keys, value)
    fresh.close()
    new = _dir_bytes(fresh_path)
    rate = report.bytes_read / MB / report.seconds
    print(f"space: {keys} live keys x {value_size} B; dead share: {1 - new[0] / before[0]:.1%}")
    print(f"  before compaction: segments {before[0] / MB:.1f} MB")
    for name, b in (("after full compaction", after), ("fresh, live data only", new)):
        print(
            f"  {name:22s} segments {b[0] / MB:.1f} MB, all files {b[1] / MB:.1f} MB, "
            f"allocated {b[2] / MB:.1f} MB"
        )
    ratios = ", ".join(f"{what} {after[i] / new[i]:.3f}" for i, what in enumerate(_KINDS))
    print(f"  ratio compacted/fresh: {ratios}")
    print(
        f"  compaction: {report.bytes_read / MB:.1f} MB input in {report.seconds:.2f} s "
        f"= {rate:.0f} MB/s; dropped {report.records_dropped}"
    )


_KINDS = ("segments", "all files", "allocated")


def open_time(base: str, keys: int, repeat: int) -> None:
    path = os.path.join(base, f"open{keys}")
    store = LogStore(path, max_segment_bytes=256 * MB)
    value = b"v" * 100
    ops: list[BatchOp] = []
    order = list(range(keys))
    random.Random(5).shuffle(order)  # write order is not key order, as in most programs
    for i in order:
        ops.append(BatchOp(b"key-%012d" % i, value))
        if len(ops) == 1000:
            store.write_batch(ops)
            ops = []
    if ops:
        store.write_batch(ops)
    store.close()
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        s = LogStore(path, readonly=True)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        st = s.stats(0)
        assert st["keys"] == keys and st["hints_rejected"] == 0
        s.close()
    hinted = st["hinted_segments"]
    print(
        f"open: {keys} keys from {hinted}/{st['segments']} hinted segments: "
        f"wall median {statistics.median(walls):.3f} s (min {min(walls):.3f}), "
        f"cpu median {statistics.median(cpus):.3f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["latency", "space", "open", "all"])
    parser.add_argument("--keys", type=int)
    parser.add_argument("--value", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("KVENGINE_BENCH_DIR")) as base:
        if args.part in ("latency", "all"):
            latency(base, args.keys or 60_000, args.value, args.rounds, args.trials)
        if args.part in ("space", "all"):
            space(base, args.keys or 50_000, args.value)
        if args.part in ("open", "all"):
            open_time(base, args.keys or 1_000_000, args.repeat)


if __name__ == "__main__":
    main()
