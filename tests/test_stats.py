"""Store.stats(): live keys and bytes per namespace, dead bytes per segment, expiry as death.

Record sizes are not hard-coded: the tests learn the size of one record from
the store and check how the figures move as keys are overwritten, deleted and
expire.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kv_helpers import FakeClock

import engine
from engine import NamespaceStats, StoreStats


@pytest.fixture
def db(tmp_path: Path, clock: FakeClock) -> Iterator[engine.Store]:
    with engine.open(tmp_path / "db", clock=clock, max_segment_bytes=4096) as store:
        yield store


VALUE = "v" * 50  # every test key is 3 characters: all records below are the same size


def fill(kv: engine.Namespace, n: int) -> None:
    for i in range(n):
        kv.put(f"k{i:02}", VALUE)


def record_size(db: engine.Store, ns: str, n: int) -> int:
    stats = db.stats().namespaces[ns]
    assert stats.keys == n
    assert stats.bytes % n == 0
    return stats.bytes // n


def check_consistent(stats: StoreStats) -> None:
    """The store's figures are the sums of its segments'."""
    segs = stats.segments
    assert sum(s.size for s in segs) == stats.disk_bytes
    assert sum(s.live_bytes - s.expired_bytes for s in segs) == stats.live_bytes
    assert sum(s.expired_bytes for s in segs) == stats.expired_bytes
    assert sum(s.dead_bytes + s.tombstone_bytes for s in segs) == stats.dead_bytes
    assert sum(s.tombstone_bytes for s in segs) == stats.tombstone_bytes
    assert stats.keys == sum(ns.keys for ns in stats.namespaces.values())
    # What is left of each file is its header, the same for every segment.
    assert len({s.size - s.live_bytes - s.tombstone_bytes - s.dead_bytes for s in segs}) == 1
    assert [s.active for s in segs].count(True) == 1


def test_live_keys_and_bytes_per_namespace(db: engine.Store) -> None:
    fill(db.namespace("a"), 30)
    fill(db.namespace("b"), 5)
    db.namespace("empty")
    size = record_size(db, "a", 30)
    assert size >= 3 + len(VALUE)
    stats = db.stats()
    assert stats.namespaces == {
        "a": NamespaceStats(30, 30 * size),
        "b": NamespaceStats(5, 5 * size),
        "empty": NamespaceStats(0, 0),
    }
    assert stats.keys == 35
    assert stats.dead_bytes == 0
    assert stats.index_bytes > 0
    check_consistent(stats)


def test_overwrite_makes_the_old_record_dead_in_its_own_segment(db: engine.Store) -> None:
    kv = db.namespace("a")
    fill(kv, 40)
    size = record_size(db, "a", 40)
    before = db.stats()
    assert len(before.segments) >= 2
    first = before.segments[0]
    kv.put("k00", "w" * 50)  # k00 lies in the first segment
    after = db.stats()
    assert after.namespaces["a"] == NamespaceStats(40, 40 * size)
    assert after.dead_bytes == before.dead_bytes + size
    assert after.segments[0].id == first.id
    assert after.segments[0].dead_bytes == first.dead_bytes + size
    assert after.segments[0].live_bytes == first.live_bytes - size
    assert all(s.dead_bytes == 0 for s in after.segments[1:])
    check_consistent(after)


def test_delete_kills_the_record_and_adds_a_tombstone(db: engine.Store) -> None:
    kv = db.namespace("a")
    fill(kv, 10)
    size = record_size(db, "a", 10)
    before = db.stats()
    kv.delete("k03")
    after = db.stats()
    assert after.namespaces["a"] == NamespaceStats(9, 9 * size)
    assert after.tombstone_bytes > before.tombstone_bytes
    tombstone = after.tombstone_bytes - before.tombstone_bytes
    assert after.dead_bytes == before.dead_bytes + size + tombstone
    assert after.reclaimable_bytes == after.dead_bytes
    kv.delete("k03")  # a missing key: nothing is written
    assert db.stats().tombstone_bytes == after.tombstone_bytes
    check_consistent(db.stats())


def test_expired_data_is_dead_from_its_expiration(db: engine.Store, clock: FakeClock) -> None:
    kv = db.namespace("a")
    fill(kv, 5)
    size = record_size(db, "a", 5)
    kv.put("exp", VALUE, expiration_ttl=60)
    clock.advance(59.5)
    living = db.stats()
    assert living.namespaces["a"] == NamespaceStats(6, 6 * size)
    assert living.expired_bytes == 0
    clock.advance(0.5)
    dead = db.stats()
    assert dead.namespaces["a"] == NamespaceStats(5, 5 * size)
    assert dead.keys == living.keys - 1
    assert dead.expired_bytes == size
    assert dead.live_bytes == living.live_bytes - size
    assert dead.reclaimable_bytes == living.reclaimable_bytes + size
    assert sum(s.expired_bytes for s in dead.segments) == size
    check_consistent(dead)


def test_expired_then_overwritten_is_counted_once(db: engine.Store, clock: FakeClock) -> None:
    kv = db.namespace("a")
    kv.put("exp", VALUE, expiration_ttl=60)
    size = record_size(db, "a", 1)
    clock.advance(60)
    kv.put("exp", VALUE)
    stats = db.stats()
    assert stats.namespaces["a"] == NamespaceStats(1, size)
    assert stats.expired_bytes == 0
    assert stats.dead_bytes == size
    check_consistent(stats)


def test_figures_survive_reopen(tmp_path: Path, clock: FakeClock) -> None:
    with engine.open(tmp_path / "db", clock=clock, max_segment_bytes=4096) as db:
        kv = db.namespace("a")
        fill(kv, 40)
        kv.put("k00", "w" * 50)
        kv.delete("k01")
        kv.put("exp", VALUE, expiration_ttl=60)
        clock.advance(60)
        before = db.stats()
    with engine.open(tmp_path / "db", clock=clock, max_segment_bytes=4096) as db:
        after = db.stats()
    assert after.namespaces == before.namespaces
    for field in ("keys", "live_bytes", "expired_bytes", "dead_bytes", "tombstone_bytes"):
        assert getattr(after, field) == getattr(before, field), field
    check_consistent(after)


def test_deleted_namespace_leaves_the_counts(db: engine.Store) -> None:
    fill(db.namespace("a"), 10)
    fill(db.namespace("b"), 3)
    live_b = db.stats().namespaces["b"]
    db.delete_namespace("a")
    stats = db.stats()
    assert stats.namespaces == {"b": live_b}
    assert stats.keys == 3
    check_consistent(stats)


def test_index_memory_grows_with_keys(db: engine.Store) -> None:
    small = db.stats().index_bytes
    db.namespace("a").put_many([{"key": f"key-{i:06}", "value": ""} for i in range(5000)])
    assert db.stats().index_bytes > small
