"""Single-thread put/get of the storage layer (pytest-benchmark; not part of the test run).

Run: pytest bench/test_storage_bench.py --benchmark-columns=median,ops
Keys are 16 bytes; values 100 B, 4 KiB and 25 MiB, as the core issue asks.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest

from engine.storage import LogStore

SIZES = {"100B": 100, "4KiB": 4096, "25MiB": 25 * 1024 * 1024}


@pytest.fixture
def store(tmp_path: os.PathLike[str]) -> Iterator[LogStore]:
    s = LogStore(os.path.join(tmp_path, "db"))
    yield s
    s.close()


def _keys() -> Iterator[bytes]:
    return (b"key%013d" % i for i in itertools.count())


@pytest.mark.parametrize("size", list(SIZES))
def test_put(benchmark, store: LogStore, size: str) -> None:  # type: ignore[no-untyped-def]
    value = os.urandom(SIZES[size])
    keys = _keys()
    rounds = 5 if size == "25MiB" else 20000
    benchmark.pedantic(lambda: store.put(next(keys), value), rounds=rounds, iterations=1)


@pytest.mark.parametrize("size", list(SIZES))
def test_get(benchmark, store: LogStore, size: str) -> None:  # type: ignore[no-untyped-def]
    value = os.urandom(SIZES[size])
    n = 4 if size == "25MiB" else 20000
    keys = [b"key%013d" % i for i in range(n)]
    for k in keys:
        store.put(k, value)
    cycle = itertools.cycle(keys)
    rounds = 5 if size == "25MiB" else 20000

    def get() -> None:
        assert store.get(next(cycle), 0) is not None

    benchmark.pedantic(get, rounds=rounds, iterations=1)


LIST_KEYS = 1_000_000


@pytest.fixture(scope="module")
def million(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogStore]:
    """1M keys in 1,000 prefixes of 1,000 keys ("p000/..." .. "p999/...")."""
    s = LogStore(os.path.join(tmp_path_factory.mktemp("list"), "db"), max_segment_bytes=1 << 30)
    for i in range(LIST_KEYS):
        s.put(b"p%03d/key%08d" % (i % 1000, i), b"")
    yield s
    s.close()


def test_list_1000_of_1m(benchmark, million: LogStore) -> None:  # type: ignore[no-untyped-def]
    prefixes = itertools.cycle([b"p%03d/" % i for i in range(0, 1000, 7)])

    def page() -> None:
        keys, more = million.list(next(prefixes), b"", 0, 1000)
        assert len(keys) == 1000 and not more

    benchmark.pedantic(page, rounds=300, iterations=1)
