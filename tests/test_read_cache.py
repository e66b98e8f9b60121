"""The record cache (``read_cache_bytes``): repeated gets are served from memory, and what
they return is exactly what a read from disk would return.

The cache is keyed by a record's location, so these tests pin the cases where a key's
location moves (overwrite, delete, expiry, compaction, reopen) and the ones where the cache
must stay out of the way (records too large, damaged records, a cache of size 0).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from kv_helpers import FakeClock

import engine
from engine.errors import CorruptionError

VALUE = b"v" * 100


def cache(db: engine.Store) -> engine.ReadCacheStats:
    """The counters alone: Store.stats() reads the namespace catalog, which counts too."""
    raw = db._log.stats(0)
    return engine.ReadCacheStats(
        raw["cache_hits"], raw["cache_misses"], raw["cache_bytes"], raw["cache_records"]
    )


def test_store_stats_show_the_cache(store_path: Path) -> None:
    with engine.open(store_path) as db:
        ns = db.namespace()
        ns.put("k", VALUE)
        for _ in range(3):
            ns.get("k")
        st = db.stats().read_cache
        assert st.hits >= 1 and st.records >= 1 and st.bytes > len(VALUE)


def flip_byte_of(store_path: Path, needle: bytes) -> None:
    """Damages the one segment byte where needle (a value written once) starts."""
    for name in os.listdir(store_path):
        if name.endswith(".seg"):
            path = store_path / name
            data = bytearray(path.read_bytes())
            at = data.find(needle)
            if at >= 0:
                assert data.find(needle, at + 1) < 0
                data[at] ^= 0xFF
                path.write_bytes(bytes(data))
                return
    raise AssertionError(f"{needle!r} is in no segment")


def test_kept_from_the_second_read_served_from_the_third(store_path: Path) -> None:
    with engine.open(store_path) as db:
        ns = db.namespace()
        for i in range(100):
            ns.put(f"k{i}", VALUE + b"%d" % i)
        expected = [(0, 100, 0), (0, 200, 100), (100, 200, 100), (200, 200, 100)]
        for hits_misses_records in expected:
            for i in range(100):
                assert ns.get(f"k{i}", "bytes") == VALUE + b"%d" % i
            st = cache(db)
            assert (st.hits, st.misses, st.records) == hits_misses_records
        assert 100 * 100 < st.bytes < engine.storage.DEFAULT_READ_CACHE_BYTES


def test_records_read_once_are_not_kept(store_path: Path) -> None:
    with engine.open(store_path) as db:
        ns = db.namespace()
        for i in range(20_000):
            ns.put(f"k{i}", VALUE)
        empty = cache(db).bytes
        for i in range(20_000):
            ns.get(f"k{i}", "bytes")
        st = cache(db)
        assert (st.hits, st.misses) == (0, 20_000)
        # Only where two locations share a mark (hash collisions) is a record kept.
        assert st.records < 20_000 // 50
        assert st.bytes < empty + 20_000 // 50 * 300


def test_metadata_reads_share_the_cache(store_path: Path) -> None:
    with engine.open(store_path) as db:
        ns = db.namespace()
        ns.put("k", "value", metadata={"m": 1})
        assert ns.get("k") == "value"
        assert ns.get("k") == "value"
        got = ns.get_with_metadata("k", "text")
        assert (got.value, got.metadata) == ("value", {"m": 1})
        assert cache(db).hits == 1


def test_size_zero_turns_it_off(store_path: Path) -> None:
    with engine.open(store_path, read_cache_bytes=0) as db:
        ns = db.namespace()
        ns.put("k", VALUE)
        for _ in range(3):
            assert ns.get("k", "bytes") == VALUE
        assert cache(db) == engine.ReadCacheStats()


@pytest.mark.parametrize("bad", ["1", 1.0, True, None])
def test_size_must_be_an_int(store_path: Path, bad: object) -> None:
    with pytest.raises(TypeError, match="read_cache_bytes"):
        engine.open(store_path, read_cache_bytes=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1, 1, 4096, 65535, 1 << 63])
def test_size_is_zero_or_at_least_the_minimum(store_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match=r"read_cache_bytes must be 0 .* at least 65536"):
        engine.open(store_path, read_cache_bytes=bad)
    with engine.open(store_path, read_cache_bytes=65536) as db:
        assert db.namespace().get("k") is None


def test_the_core_refuses_a_cache_below_the_minimum(store_path: Path) -> None:
    """The check lives in kv_open too, for callers that skip the Python layer."""
    from engine._ffi import ffi, lib

    opts = ffi.new("kv_options *")
    opts.max_segment_bytes = 1 << 20
    opts.sync_mode = lib.KV_SYNC_OS
    opts.read_cache_bytes = lib.KV_MIN_READ_CACHE_BYTES - 1
    out = ffi.new("kv_db **")
    assert lib.kv_open(str(store_path).encode(), opts, out) == lib.KV_EINVAL


def test_overwrite_delete_and_expiry_after_a_cached_read(store_path: Path) -> None:
    clock = FakeClock()
    with engine.open(store_path, clock=clock) as db:
        ns = db.namespace()
        ns.put("k", b"one")
        assert ns.get("k", "bytes") == b"one"
        ns.put("k", b"two")
        assert ns.get("k", "bytes") == b"two"
        assert ns.get("k", "bytes") == b"two"
        ns.delete("k")
        assert ns.get("k", "bytes") is None
        ns.put("k", b"three", expiration_ttl=60)
        assert ns.get("k", "bytes") == b"three"
        assert ns.get("k", "bytes") == b"three"
        clock.advance(61)
        assert ns.get("k", "bytes") is None
        assert ns.get_with_metadata("k").value is None


def test_compaction_and_reopen_after_cached_reads(store_path: Path) -> None:
    model = {f"k{i}": b"first %d" % i for i in range(500)}
    with engine.open(store_path, max_segment_bytes=16384, auto_compact=False) as db:
        ns = db.namespace()
        for k, val in model.items():
            ns.put(k, val)
        assert all(ns.get(k, "bytes") == val for k, val in model.items())
        for i in range(0, 500, 2):
            model[f"k{i}"] = b"second %d" % i
            ns.put(f"k{i}", model[f"k{i}"])
        for i in range(1, 500, 4):
            del model[f"k{i}"]
            ns.delete(f"k{i}")
        db.compact()
        # Every record moved to a new segment: no old location is asked for again,
        # so the new ones are kept from their second read and served from the third
        # (give or take a few that share a first-read mark with another record).
        hits = cache(db).hits
        for _ in range(2):
            for i in range(500):
                assert ns.get(f"k{i}", "bytes") == model.get(f"k{i}")
        assert cache(db).hits - hits < 10
        hits = cache(db).hits
        for i in range(500):
            assert ns.get(f"k{i}", "bytes") == model.get(f"k{i}")
        assert cache(db).hits == hits + len(model)
    with engine.open(store_path) as db:
        ns = db.namespace()
        for i in range(500):
            assert ns.get(f"k{i}", "bytes") == model.get(f"k{i}")


def test_memory_stays_within_the_budget(store_path: Path) -> None:
    budget = 64 * 1024
    with engine.open(store_path, read_cache_bytes=budget) as db:
        ns = db.namespace()
        for i in range(5000):
            ns.put(f"key{i}", VALUE + b"%d" % i)
        for _ in range(2):
            for i in range(5000):
                assert ns.get(f"key{i}", "bytes") == VALUE + b"%d" % i
                assert cache(db).bytes <= budget if i % 500 == 0 else True
        st = cache(db)
        assert 0 < st.records < 5000 and st.bytes <= budget
        # A hot key read between the others stays cached, whatever the scan evicts.
        ns.put("hot", b"hot value")
        for i in range(5000):
            assert ns.get("hot", "bytes") == b"hot value"
            ns.get(f"key{i}", "bytes")
        before = cache(db).hits
        assert ns.get("hot", "bytes") == b"hot value"
        assert cache(db).hits == before + 1


def test_large_records_are_read_from_disk(store_path: Path) -> None:
    with engine.open(store_path) as db:
        ns = db.namespace()
        big = os.urandom(100 * 1024)
        ns.put("big", big)
        for _ in range(3):
            assert ns.get("big", "bytes") == big
        assert cache(db).records == 0 and cache(db).hits == 0


def test_a_damaged_record_is_never_cached(store_path: Path) -> None:
    with engine.open(store_path) as db:
        db.namespace().put("k", b"needle-damaged-before-read")
    flip_byte_of(store_path, b"needle-damaged-before-read")
    with engine.open(store_path) as db:
        ns = db.namespace()
        before = cache(db)  # the namespace's catalog entry was read
        for _ in range(2):
            with pytest.raises(CorruptionError):
                ns.get("k", "bytes")
        after = cache(db)
        assert (after.records, after.hits) == (before.records, before.hits)
        assert after.misses == before.misses + 2


@pytest.mark.parametrize("cache_bytes", [0, engine.storage.DEFAULT_READ_CACHE_BYTES])
def test_damage_after_a_checked_read(store_path: Path, cache_bytes: int) -> None:
    """A record checked once keeps being served as it was written; without a cache the
    next read sees the damage and refuses.  Either way no damaged byte is returned."""
    needle = b"needle-damaged-after-read"
    with engine.open(store_path, read_cache_bytes=cache_bytes) as db:
        ns = db.namespace()
        ns.put("k", needle)
        db.sync()
        assert ns.get("k", "bytes") == needle
        assert ns.get("k", "bytes") == needle
        flip_byte_of(store_path, needle)
        if cache_bytes:
            assert ns.get("k", "bytes") == needle
        else:
            with pytest.raises(CorruptionError):
                ns.get("k", "bytes")


def test_threads_read_and_write_through_a_small_cache(store_path: Path) -> None:
    keys = [f"key{i}" for i in range(200)]
    stop = threading.Event()
    errors: list[str] = []

    budget = engine.storage._MIN_READ_CACHE
    with engine.open(store_path, read_cache_bytes=budget) as db:
        ns = db.namespace()
        for k in keys:
            ns.put(k, f"{k}:0".encode())

        def write() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                for k in keys[n % 7 :: 7]:
                    ns.put(k, f"{k}:{n}".encode() + b"." * (n % 300))

        def read() -> None:
            for _ in range(30):
                for k in keys:
                    got = ns.get(k, "bytes")
                    if got is None or got.split(b":")[0] != k.encode():
                        errors.append(f"{k}: {got!r}")

        writer = threading.Thread(target=write)
        readers = [threading.Thread(target=read) for _ in range(3)]
        writer.start()
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        stop.set()
        writer.join()
        assert not errors, errors[:5]
        st = cache(db)
        assert st.hits > 0 and st.bytes <= budget
