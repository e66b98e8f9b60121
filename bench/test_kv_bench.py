"""KV-layer listing and bulk reads on a namespace of 1M keys (pytest-benchmark; not in tests).

Run: pytest bench/test_kv_bench.py --benchmark-columns=min,median,max,ops

* list(prefix=..., limit=1000) right after the fill, and interleaved with writes
  (put, list, put, list ...): the ordered listing must not be rebuilt per call,
  so the interleaved figure must stay close to the plain one.
* get_many of 100 random keys.

The fill time and the first list after it are recorded in each result's extra_info.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine

N_KEYS = 1_000_000
PREFIX = "user:05"  # 100,000 of the keys
VALUE = "v" * 100


def _key(i: int) -> str:
    return f"user:{i:07d}"


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[engine.Namespace, dict]]:
    path: Path = tmp_path_factory.mktemp("kvbench") / "db"
    db = engine.open(path, auto_compact=False)
    kv = db.namespace("big")
    order = list(range(N_KEYS))
    random.Random(1).shuffle(order)  # inserted out of order, as real keys arrive
    started = time.perf_counter()
    for start in range(0, N_KEYS, 10_000):
        kv.put_many([{"key": _key(i), "value": VALUE} for i in order[start : start + 10_000]])
    fill_s = time.perf_counter() - started
    started = time.perf_counter()
    first = kv.list(prefix=PREFIX, limit=1000)
    first_list_s = time.perf_counter() - started
    assert len(first.keys) == 1000
    info = {"fill_1M_keys_s": round(fill_s, 3), "first_list_after_fill_s": round(first_list_s, 6)}
    yield kv, info
    db.close()


def test_list_prefix_1000_after_fill(benchmark: Any, filled: Any) -> None:
    kv, info = filled
    benchmark.extra_info.update(info)
    page = benchmark(kv.list, prefix=PREFIX, limit=1000)
    assert [k.name for k in page.keys] == [_key(500_000 + i) for i in range(1000)]


def test_list_prefix_1000_from_a_cursor(benchmark: Any, filled: Any) -> None:
    kv, info = filled
    benchmark.extra_info.update(info)
    cursor = kv.list(prefix=PREFIX, limit=1000).cursor
    for _ in range(49):
        cursor = kv.list(prefix=PREFIX, limit=1000, cursor=cursor).cursor
    page = benchmark(kv.list, prefix=PREFIX, limit=1000, cursor=cursor)
    assert page.keys[0].name == _key(550_000)


def test_list_prefix_1000_interleaved_with_puts(benchmark: Any, filled: Any) -> None:
    kv, info = filled
    benchmark.extra_info.update(info)
    fresh = itertools.count()

    def put_then_list() -> Any:
        # A new key inside the listed range, so a cached listing would be stale.
        kv.put(f"{PREFIX}0000-new{next(fresh):07d}", VALUE)
        return kv.list(prefix=PREFIX, limit=1000)

    page = benchmark(put_then_list)
    assert len(page.keys) == 1000


def test_put_alone_for_comparison(benchmark: Any, filled: Any) -> None:
    kv, info = filled
    benchmark.extra_info.update(info)
    fresh = itertools.count()
    benchmark(lambda: kv.put(f"{PREFIX}0000-alone{next(fresh):07d}", VALUE))


def test_get_many_100_keys(benchmark: Any, filled: Any) -> None:
    kv, info = filled
    benchmark.extra_info.update(info)
    rng = random.Random(2)
    batches = itertools.cycle(
        [[_key(rng.randrange(N_KEYS)) for _ in range(100)] for _ in range(50)]
    )
    got = benchmark(lambda: kv.get_many(next(batches)))
    assert len(got) == 100 and all(v == VALUE for v in got.values())
