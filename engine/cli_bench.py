"""The throughput benchmark behind ``kvengine bench``: fill, read, overwrite, list
and compact on an embedded store, measured with the public API."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import engine
from engine.storage import DEFAULT_MAX_SEGMENT_BYTES, LogStore

BENCH_NAMESPACE = "kvengine-bench"
# Small segments in a temporary store, so that it holds sealed segments to compact.
BENCH_SEGMENT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    ops: int
    seconds: float
    bytes: int

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class BenchResult:
    keys: int
    key_bytes: int
    value_size: int
    phases: list[Phase] = field(default_factory=list)
    index_bytes_per_key: float = 0.0
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Every figure, the per-phase rates included."""
        return {
            "keys": self.keys,
            "key_bytes": self.key_bytes,
            "value_size": self.value_size,
            "index_bytes_per_key": self.index_bytes_per_key,
            "note": self.note,
            "phases": [
                {
                    "name": p.name,
                    "ops": p.ops,
                    "seconds": p.seconds,
                    "bytes": p.bytes,
                    "ops_per_second": p.ops_per_second,
                    "mb_per_second": p.mb_per_second,
                }
                for p in self.phases
            ],
        }


@contextmanager
def _store_dir(db: str | None) -> Iterator[str]:
    if db is not None:
        yield db
        return
    with tempfile.TemporaryDirectory(prefix="kvengine-bench-") as tmp:
        yield os.path.join(tmp, "store")


def run_bench(
    *,
    db: str | None,
    keys: int,
    value_size: int,
    progress: Callable[[str], None],
    seed: int = 1,
) -> BenchResult:
    """Runs every phase on a store in db (namespace kvengine-bench, removed
    afterwards) or, when db is None, in a temporary directory."""
    rng = random.Random(seed)
    names = [f"bench:{i:012d}" for i in range(keys)]
    first = rng.randbytes(value_size)
    second = rng.randbytes(value_size)
    result = BenchResult(keys=keys, key_bytes=len(names[0]), value_size=value_size)
    record_bytes = len(names[0]) + value_size

    def timed(name: str, ops: int, nbytes: int, body: Callable[[], object]) -> None:
        progress(f"{name}: {ops} operations ...")
        start = time.perf_counter()
        body()
        phase = Phase(name, ops, time.perf_counter() - start, nbytes)
        result.phases.append(phase)

    # A user's store keeps its own segment size.
    segment_bytes = DEFAULT_MAX_SEGMENT_BYTES if db is not None else BENCH_SEGMENT_BYTES
    with (
        _store_dir(db) as path,
        engine.open(path, auto_compact=False, max_segment_bytes=segment_bytes) as store,
    ):
        if BENCH_NAMESPACE in store.namespaces():
            store.delete_namespace(BENCH_NAMESPACE)
        kv = store.namespace(BENCH_NAMESPACE)
        index_before = store.stats().index_bytes

        def fill(value: bytes) -> None:
            put = kv.put
            for name in names:
                put(name, value)

        def read() -> None:
            get = kv.get
            for name in order:
                if get(name, type="bytes") is None:
                    raise AssertionError(f"benchmark key {name} is missing")

        def list_all() -> None:
            cursor = None
            seen = 0
            while True:
                page = kv.list(cursor=cursor)
                seen += len(page.keys)
                if page.list_complete:
                    break
                cursor = page.cursor
            if seen != keys:
                raise AssertionError(f"listed {seen} of {keys} benchmark keys")

        timed("fill", keys, keys * record_bytes, lambda: fill(first))
        result.index_bytes_per_key = (store.stats().index_bytes - index_before) / keys
        order = names[:]
        rng.shuffle(order)
        timed("read", keys, keys * record_bytes, read)
        timed("overwrite", keys, keys * record_bytes, lambda: fill(second))
        timed("list", keys, keys * len(names[0]), list_all)
        if hasattr(LogStore, "compact"):
            # A compaction's operations are the live records it carries over.
            live = store.stats().keys
            progress(f"compact: {live} live records ...")
            start = time.perf_counter()
            report = store.compact()
            seconds = time.perf_counter() - start
            result.phases.append(Phase("compact", live, seconds, report.bytes_read))
        else:
            result.note = "compact: skipped (this build has no compactor)"
        if db is not None:
            store.delete_namespace(BENCH_NAMESPACE)
    return result


__all__ = ["BENCH_NAMESPACE", "BenchResult", "Phase", "run_bench"]
