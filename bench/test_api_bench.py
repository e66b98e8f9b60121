"""Micro-benchmarks of the public API (pytest-benchmark; not part of the test run).

Run: pytest bench/test_api_bench.py --benchmark-columns=median,ops
Keys are 16 characters, values 100 B unless the name says otherwise; each
benchmark times one public call per round, as a program would make it.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine

N = 20_000


def _key(i: int) -> str:
    return f"key{i:013d}"


@pytest.fixture
def ns(tmp_path: Path) -> Iterator[engine.Namespace]:
    with engine.open(tmp_path / "db", sync="os") as store:
        yield store.namespace()


@pytest.fixture
def filled(ns: engine.Namespace) -> engine.Namespace:
    value = os.urandom(100)
    ns.put_many([{"key": _key(i), "value": value} for i in range(10_000)])
    ns.put_many([{"key": _key(i), "value": value} for i in range(10_000, N)])
    return ns


@pytest.mark.parametrize("size", [100, 4096])
def test_put(benchmark: Any, ns: engine.Namespace, size: int) -> None:
    value = os.urandom(size)
    keys = map(_key, itertools.count())
    benchmark.pedantic(lambda: ns.put(next(keys), value), rounds=N, iterations=1)


def test_put_25mib(benchmark: Any, ns: engine.Namespace) -> None:
    value = os.urandom(25 * 1024 * 1024)
    keys = map(_key, itertools.count())
    benchmark.pedantic(lambda: ns.put(next(keys), value), rounds=5, iterations=1)


def test_overwrite(benchmark: Any, filled: engine.Namespace) -> None:
    value = os.urandom(100)
    keys = itertools.cycle([_key(i) for i in range(N)])
    benchmark.pedantic(lambda: filled.put(next(keys), value), rounds=N, iterations=1)


def test_put_with_metadata_and_ttl(benchmark: Any, ns: engine.Namespace) -> None:
    value = os.urandom(100)
    keys = map(_key, itertools.count())

    def put() -> None:
        ns.put(next(keys), value, expiration_ttl=3600, metadata={"v": 1})

    benchmark.pedantic(put, rounds=N, iterations=1)


@pytest.mark.parametrize("kind", ["bytes", "text"])
def test_get_hit(benchmark: Any, filled: engine.Namespace, kind: str) -> None:
    keys = itertools.cycle([_key(i) for i in range(0, N, 7)])

    def get() -> None:
        assert filled.get(next(keys), kind) is not None

    benchmark.pedantic(get, rounds=N, iterations=1)


def test_get_miss(benchmark: Any, filled: engine.Namespace) -> None:
    keys = itertools.cycle([_key(N + i) for i in range(1000)])

    def get() -> None:
        assert filled.get(next(keys), "bytes") is None

    benchmark.pedantic(get, rounds=N, iterations=1)


def test_get_with_metadata(benchmark: Any, filled: engine.Namespace) -> None:
    keys = itertools.cycle([_key(i) for i in range(0, N, 7)])
    benchmark.pedantic(lambda: filled.get_with_metadata(next(keys)), rounds=N, iterations=1)


def test_get_25mib(benchmark: Any, ns: engine.Namespace) -> None:
    value = os.urandom(25 * 1024 * 1024)
    for i in range(3):
        ns.put(_key(i), value)
    keys = itertools.cycle([_key(i) for i in range(3)])

    def get() -> None:
        assert len(ns.get(next(keys), "bytes")) == len(value)

    benchmark.pedantic(get, rounds=5, iterations=1)


def test_list_1000_by_prefix(benchmark: Any, filled: engine.Namespace) -> None:
    prefixes = itertools.cycle([f"key{i:010d}" for i in range(N // 1000)])

    def page() -> None:
        assert len(filled.list(prefix=next(prefixes)).keys) == 1000

    benchmark.pedantic(page, rounds=200, iterations=1)


def test_get_many_100(benchmark: Any, filled: engine.Namespace) -> None:
    batches = itertools.cycle([[_key(i + j) for j in range(100)] for i in range(0, N, 100)])
    benchmark.pedantic(lambda: filled.get_many(next(batches)), rounds=200, iterations=1)


def test_put_many_1000(benchmark: Any, ns: engine.Namespace) -> None:
    value = os.urandom(100)
    counter = itertools.count()

    def batch() -> None:
        base = next(counter) * 1000
        ns.put_many([{"key": _key(base + j), "value": value} for j in range(1000)])

    benchmark.pedantic(batch, rounds=50, iterations=1)


def test_delete(benchmark: Any, filled: engine.Namespace) -> None:
    keys = map(_key, itertools.count())
    benchmark.pedantic(lambda: filled.delete(next(keys)), rounds=N, iterations=1)
