"""Compaction throughput and open-from-hints time (pytest-benchmark; not part of the test run).

Run: pytest bench/test_compact_bench.py --benchmark-columns=median,min,max
The figures of the issue's targets at full scale come from bench/compaction.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from engine.storage import BatchOp, LogStore

NOW = 2_000_000_000
KEYS = 20_000


def _fill(path: str, versions: int) -> None:
    store = LogStore(path, max_segment_bytes=8 << 20)
    value = os.urandom(1024)
    for _ in range(versions):
        for i in range(0, KEYS, 500):
            store.write_batch([BatchOp(b"key-%012d" % j, value) for j in range(i, i + 500)])
    store.close()


@pytest.fixture(scope="module")
def dead_store() -> Iterator[str]:
    """20k live keys of 1 KiB, each with 3 dead older versions (75% dead)."""
    base = tempfile.mkdtemp(dir=os.environ.get("KVENGINE_BENCH_DIR"))
    _fill(os.path.join(base, "template"), versions=4)
    yield base
    shutil.rmtree(base)


def test_full_compaction(benchmark, dead_store: str) -> None:  # type: ignore[no-untyped-def]
    counter = iter(range(1_000_000))

    def setup() -> tuple[tuple[LogStore], dict[str, object]]:
        copy = os.path.join(dead_store, f"run-{next(counter)}")
        shutil.copytree(os.path.join(dead_store, "template"), copy)
        return (LogStore(copy, max_segment_bytes=8 << 20),), {}

    def compact(store: LogStore) -> None:
        report = store.compact(NOW, "all")
        store.close()
        assert report.records_dropped["overwritten"] == 3 * KEYS

    benchmark.pedantic(compact, setup=setup, rounds=5)


def test_open_from_hints(benchmark, dead_store: str) -> None:  # type: ignore[no-untyped-def]
    path = os.path.join(dead_store, "template")

    def open_close() -> None:
        store = LogStore(path, readonly=True)
        assert store.stats(NOW)["hints_rejected"] == 0
        store.close()

    benchmark.pedantic(open_close, rounds=10)
