"""Reads when keys share their 32-bit index hash.

A get looks its key up without comparing the key's bytes in the index
(kv_index_get_unchecked) and relies on the record it reads, whose key is
compared anyway; a read that fails after such a lookup is made again with the
key compared.  Collisions of XXH64's low 32 bits are too rare to meet by
chance, so these tests make every key of a store collide: the index's hash mask
(a test hook of csrc/kv_index_hooks.h) is set to 0 before the store opens, and
every key then has hash 0.  Keys of one length collide in full (hash and
length are all the unchecked lookup compares).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kv_helpers import FakeClock

import engine
from engine._ffi import lib
from engine.errors import CorruptionError
from engine.kv import Namespace

KEYS = [f"k{i:03d}" for i in range(40)]  # one length: every pair collides


def value_of(key: str) -> bytes:
    return f"value of {key}".encode() * 3


@pytest.fixture
def colliding(tmp_path: Path, clock: FakeClock) -> Iterator[engine.Store]:
    lib.kv_index__hash_mask = 0
    try:
        with engine.open(tmp_path / "db", clock=clock) as db:
            yield db
    finally:
        lib.kv_index__hash_mask = 0xFFFFFFFF


def general(ns: Namespace) -> Namespace:
    """A handle to ns's namespace that never takes the hot path."""
    twin = Namespace(ns._store, ns.name, ns._id)
    twin._hot_get = twin._hot_put = None
    return twin


def read_all(ns: Namespace, keys: list[str]) -> dict[str, bytes | None]:
    return {k: ns.get(k, "bytes") for k in keys}


def test_every_key_reads_its_own_value(colliding: engine.Store) -> None:
    ns = colliding.namespace()
    for k in KEYS:
        ns.put(k, value_of(k))
    want = {k: value_of(k) for k in KEYS}
    for _ in range(3):  # from the file, then admitted, then from the record cache
        assert read_all(ns, KEYS) == want
        assert read_all(general(ns), KEYS) == want
    assert colliding.stats().read_cache.hits > 0
    assert read_all(ns, ["k999", "k-1", "absent"]) == dict.fromkeys(["k999", "k-1", "absent"])


def test_large_values_among_colliding_keys(colliding: engine.Store) -> None:
    """A record over 256 KiB is read head first, then its value (kv_get_into)."""
    ns = colliding.namespace()
    big = {k: bytes([i]) * (300 * 1024 + i) for i, k in enumerate(KEYS[:4])}
    for k in KEYS:
        ns.put(k, big.get(k, value_of(k)))
    want = {k: big.get(k, value_of(k)) for k in KEYS}
    for _ in range(2):
        assert read_all(ns, KEYS) == want
        assert read_all(general(ns), KEYS) == want


def test_a_deleted_or_expired_key_hides_no_live_one(
    colliding: engine.Store, clock: FakeClock
) -> None:
    ns = colliding.namespace()
    for i, k in enumerate(KEYS):
        ns.put(k, value_of(k), expiration_ttl=60 if i % 3 == 1 else None)
    deleted = KEYS[::3]
    for k in deleted:
        ns.delete(k)
    clock.advance(61)
    expired = KEYS[1::3]
    live = KEYS[2::3]
    want = {k: (value_of(k) if k in live else None) for k in KEYS}
    for _ in range(3):
        assert read_all(ns, KEYS) == want
        assert read_all(general(ns), KEYS) == want
    assert [info.name for info in ns.list().keys] == live
    assert set(deleted) | set(expired) | set(live) == set(KEYS)


def test_reads_after_reopen_and_compaction(tmp_path: Path, clock: FakeClock) -> None:
    lib.kv_index__hash_mask = 0
    try:
        with engine.open(tmp_path / "db", clock=clock) as db:
            ns = db.namespace()
            for k in KEYS:
                ns.put(k, b"old")
            clock.advance(2)
            for k in KEYS:
                ns.put(k, value_of(k))
        with engine.open(tmp_path / "db", clock=clock) as db:  # the index from the hints
            ns = db.namespace()
            assert read_all(ns, KEYS) == {k: value_of(k) for k in KEYS}
            db.compact()
            assert read_all(ns, KEYS) == {k: value_of(k) for k in KEYS}
    finally:
        lib.kv_index__hash_mask = 0xFFFFFFFF


def test_a_damaged_record_still_raises_and_its_neighbours_read(colliding: engine.Store) -> None:
    ns = colliding.namespace()
    for k in KEYS:
        ns.put(k, value_of(k))
    victim = KEYS[17]
    segments = sorted(p for p in Path(ns._log.path).iterdir() if p.suffix == ".seg")
    hit = [(p, raw) for p in segments if value_of(victim) in (raw := p.read_bytes())]
    assert len(hit) == 1
    path, raw = hit[0]
    with open(path, "r+b") as f:
        f.seek(raw.index(value_of(victim)) + 5)
        f.write(b"#")
    for ns_ in (ns, general(ns)):
        with pytest.raises(CorruptionError) as info:
            ns_.get(victim, "bytes")
        assert info.value.path == str(path)
    others = [k for k in KEYS if k != victim]
    assert read_all(ns, others) == {k: value_of(k) for k in others}
