"""Reopen persistence: what was written is what a new handle reads, key for key."""

from __future__ import annotations

import random
from pathlib import Path

from engine.storage import BatchOp, LogStore

N = 100_000


def _value(i: int, version: int) -> bytes:
    return b"%d:%d:" % (i, version) + bytes([i % 251]) * (i % 97)


def test_reopen_persistence_of_100k_keys(store_path: Path) -> None:
    rng = random.Random(2)
    expect: dict[bytes, bytes] = {}
    store = LogStore(store_path, max_segment_bytes=4 << 20)  # several segments
    for i in range(N):
        key = b"key-%06d" % i
        expect[key] = _value(i, 0)
        store.put(key, expect[key])
    for i in rng.sample(range(N), 10_000):  # overwrites
        key = b"key-%06d" % i
        expect[key] = _value(i, 1)
        store.put(key, expect[key])
    for i in rng.sample(range(N), 5_000):  # deletes
        key = b"key-%06d" % i
        if store.delete(key):
            del expect[key]
    store.write_batch([BatchOp(b"key-%06d" % i, _value(i, 2)) for i in range(100)])
    expect.update({b"key-%06d" % i: _value(i, 2) for i in range(100)})
    next_seq = store.stats(0)["next_seq"]
    store.close()

    for readonly in (False, True):
        store = LogStore(store_path, readonly=readonly)
        try:
            assert store.damage() == []
            stats = store.stats(0)
            assert stats["keys"] == len(expect)
            assert stats["next_seq"] == next_seq
            assert stats["segments"] > 1
            for key, value in expect.items():
                rec = store.get(key, 0)
                assert rec is not None and rec.value == value, key
            for i in range(N):  # the deleted ones stay deleted
                key = b"key-%06d" % i
                if key not in expect:
                    assert store.get(key, 0) is None
            assert [k.key for k in store.iter_keys(b"key-", 0, page=4096)] == sorted(expect)
        finally:
            store.close()
