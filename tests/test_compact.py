"""The compactor's contract beyond the model test: reports, racing writes, descriptors
of retired segments, readers and writers during a pass, the policy and its thread,
and the Store API."""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.compaction import CompactionPolicy, choose_segments
from engine.errors import BusyError, CorruptionError, InvalidArgumentError, StoreClosedError
from engine.storage import LogStore

SEG = 16384
NOW = 10_000


def churn(store: LogStore, rounds: int = 5, keys: int = 100) -> dict[bytes, bytes]:
    latest = {}
    for r in range(rounds):
        for i in range(keys):
            key = b"key-%03d" % i
            value = b"%d:%d|" % (r, i) * 20
            store.put(key, value)
            latest[key] = value
    return latest


def open_fds_to(paths: set[str]) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target in paths:
            found.append(target)
    return found


def test_report_counts_by_reason(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    latest = churn(store, rounds=3, keys=50)
    for i in range(10):
        store.delete(b"key-%03d" % i)
    store.put(b"gone", b"x" * 100, expiration=NOW - 1)
    store.put(b"stays", b"y" * 100, expiration=NOW + 1)
    dry = store.compact(NOW, dry_run=True)
    report = store.compact(NOW)
    assert dry.dry_run and not report.dry_run
    assert report.records_dropped == {
        "overwritten": 2 * 40, "deleted": 3 * 10, "expired": 1, "tombstone": 10,
    }  # fmt: skip
    assert dry.records_dropped == report.records_dropped
    assert dry.bytes_dropped == report.bytes_dropped
    assert abs(dry.bytes_reclaimed - report.bytes_reclaimed) <= 0.05 * report.bytes_reclaimed
    assert report.bytes_after == sum(s.size for s in store.segments(NOW))
    assert report.bytes_after < report.bytes_before
    assert report.bytes_read > 0 and report.bytes_written > 0 and report.seconds >= 0
    for i in range(50):
        record = store.get(b"key-%03d" % i, NOW)
        assert (record.value if record else None) == (None if i < 10 else latest[b"key-%03d" % i])
    assert store.get(b"stays", NOW) is not None and store.get(b"gone", NOW - 5) is None
    store.close()


def test_progress_is_reported_up_to_the_total(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    churn(store)
    calls: list[tuple[int, int]] = []
    store.compact(NOW, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1][0] == calls[-1][1] > 0
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(calls))
    store.close()


def test_writes_racing_the_compactor_win(tmp_path: Path) -> None:
    """Writes made after the pass read its input, before it switched the index, win."""
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    churn(store)

    def race(done: int, total: int) -> None:
        if done == total:
            for i in range(0, 100, 2):
                store.put(b"key-%03d" % i, b"racer")
            for i in range(1, 100, 10):
                store.delete(b"key-%03d" % i)

    report = store.compact(NOW, progress=race)
    assert report.raced >= 40
    for reopen in (False, True):
        if reopen:
            store.close()
            store = LogStore(tmp_path, max_segment_bytes=SEG)
        for i in range(100):
            record = store.get(b"key-%03d" % i, NOW)
            if i % 2 == 0:
                assert record is not None and record.value == b"racer"
            elif i % 10 == 1:
                assert record is None
            else:
                assert record is not None and record.value.startswith(b"4:")
    store.close()


def test_no_descriptor_of_a_retired_segment_stays_open(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    latest = churn(store)
    before = {s.path for s in store.segments(NOW)}
    assert open_fds_to(before)
    stream = store.open_value(b"key-007", NOW)
    assert stream is not None
    store.compact(NOW)
    after = {s.path for s in store.segments(NOW)}
    retired = before - after
    assert retired and not any(os.path.exists(p) for p in retired)
    # The stream holds a descriptor of its own and still reads its value.
    assert len(open_fds_to({p + " (deleted)" for p in retired} | retired)) == 1
    assert stream[0].read() == latest[b"key-007"]
    stream[0].close()
    assert open_fds_to({p + " (deleted)" for p in retired} | retired) == []
    store.close()


def test_reads_and_writes_during_compaction(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    latest = churn(store, rounds=3)
    stop = threading.Event()
    errors: list[BaseException] = []
    written: dict[bytes, bytes] = {}

    def writer() -> None:
        n = 0
        while not stop.is_set():
            key = b"key-%03d" % (n % 100)
            value = b"w%d|" % n * 10
            store.put(key, value)
            written[key] = value
            n += 1

    def reader() -> None:
        try:
            while not stop.is_set():
                for i in range(100):
                    record = store.get(b"key-%03d" % i, NOW)
                    assert record is not None
                keys, _ = store.list(b"key-", b"", NOW, 1000)
                assert len(keys) == 100
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    try:
        for _ in range(5):
            store.compact(NOW)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    latest.update(written)
    for key, value in latest.items():
        assert store.get(key, NOW).value == value
    store.close()


def test_bad_segment_lists_are_refused(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    churn(store)
    segs = store.segments(NOW)
    active = [s.id for s in segs if s.active]
    sealed = [s.id for s in segs if not s.active]
    for bad in (active, [0xFFFF], [sealed[0], sealed[0]]):
        with pytest.raises(InvalidArgumentError):
            store.compact(NOW, bad)
    assert store.compact(NOW, []).segments_in == 0
    store.close()
    with pytest.raises(StoreClosedError):
        store.compact(NOW)


def test_second_compaction_at_once_is_busy(tmp_path: Path) -> None:
    from engine._ffi import ffi, lib

    store = LogStore(tmp_path, max_segment_bytes=SEG)
    churn(store)
    first = ffi.new("kv_compact **")
    assert lib.kv_compact_begin(store._db, NOW, ffi.NULL, 0, 0, first) == 0
    with pytest.raises(BusyError):
        store.compact(NOW)
    lib.kv_compact_free(first[0])
    store.compact(NOW)
    store.close()


def test_policy_choice(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    churn(store)
    store.put(b"key-000", b"x")  # the newest version of key-000 leaves the old segments
    policy = CompactionPolicy(min_dead_fraction=0.5, min_dead_bytes=1 << 40)
    segs = store.segments(NOW)
    chosen = choose_segments(segs, policy)
    by_id = {s.id: s for s in segs}
    assert chosen and all(not by_id[i].active for i in chosen)
    for seg in segs:
        if not seg.active and seg.id not in chosen:
            assert seg.dead_bytes + seg.tombstone_bytes < 0.5 * (seg.size - 64)
    report = store.compact(NOW, "auto")
    assert report.segments_in == len(chosen)
    assert not choose_segments(store.segments(NOW), policy)
    assert store.compact(NOW, "auto").segments_in == 0
    store.close()


def test_expiry_waits_for_the_grace_period(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    for i in range(200):
        store.put(b"ttl-%03d" % i, b"v" * 200, expiration=NOW)
    store.put(b"seal", b"x" * SEG)
    policy = CompactionPolicy(expiry_grace=300, min_dead_bytes=1 << 40)
    assert not choose_segments(store.segments(NOW + 10 - 300), policy)
    assert choose_segments(store.segments(NOW + 301 - 300), policy)
    store.close()


def test_background_compaction(tmp_path: Path) -> None:
    clock = [float(NOW)]
    store = LogStore(
        tmp_path,
        max_segment_bytes=SEG,
        auto_compact=True,
        clock=lambda: clock[0],
        compaction_policy=CompactionPolicy(interval=0.05, min_dead_fraction=0.3),
    )
    latest = churn(store, rounds=8)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        dead = sum(s.dead_bytes for s in store.segments(NOW) if not s.active)
        if dead < 0.3 * sum(s.size for s in store.segments(NOW)):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the background compactor did not reclaim the dead bytes")
    for key, value in latest.items():
        assert store.get(key, NOW).value == value
    worker = store._worker
    assert worker is not None and worker.is_alive()
    store.close()
    assert not worker.is_alive()


def test_store_compact(tmp_path: Path) -> None:
    clock = [float(NOW)]
    with engine.open(
        tmp_path / "kv", clock=lambda: clock[0], auto_compact=False, max_segment_bytes=SEG
    ) as db:
        kv = db.namespace("app")
        for r in range(4):
            for i in range(50):
                kv.put(f"k{i}", f"value {r} {i} " * 10)
        kv.put("short", "lived", expiration_ttl=60)
        for i in range(10):
            kv.delete(f"k{i}")
        clock[0] += 120
        seen: list[int] = []
        dry = db.compact(dry_run=True)
        report = db.compact(progress=lambda done, total: seen.append(done))
        assert seen
        assert dry.records_dropped == report.records_dropped
        assert report.records_dropped["expired"] == 1
        assert report.records_dropped["overwritten"] == 3 * 40
        assert report.bytes_reclaimed > 0
        assert kv.get("short") is None and kv.get("k0") is None
        assert kv.get("k10") == "value 3 10 " * 10
    with engine.open(tmp_path / "kv", readonly=True, auto_compact=False) as ro:
        assert ro.compact(dry_run=True).records_dropped["overwritten"] == 0


def _raw_handle(path: Path, sync_mode: int) -> Any:
    """A kv_db without LogStore's maintenance thread, so that only this test syncs."""
    from engine._ffi import ffi, lib

    opts = ffi.new("kv_options *")
    opts.max_segment_bytes = SEG
    opts.sync_mode = sync_mode
    out = ffi.new("kv_db **")
    assert lib.kv_open(os.fsencode(path), opts, out) == 0
    return out[0]


def _syncs(db: Any) -> int:
    from engine._ffi import ffi, lib

    st = ffi.new("kv_stats *")
    assert lib.kv_stats_get(db, NOW, st) == 0
    return int(st.syncs)


def test_sealing_in_os_mode_syncs_the_sealed_segment_at_once(tmp_path: Path) -> None:
    """A rollover in sync="os" mode fdatasyncs the sealed segment before the new one takes a
    record (FORMAT.md section 7): otherwise a power cut could keep the later segment while
    the earlier one lost its tail, a hole no open can see.  The put itself is not synced."""
    from engine._ffi import lib

    db = _raw_handle(tmp_path, lib.KV_SYNC_OS)
    big = b"x" * (SEG // 2)
    assert lib.kv_put(db, b"a", 1, b"", 0, big, len(big), 0) == 0
    assert _syncs(db) == 0  # "os": a put alone is never synced
    seals = 0
    for i in range(6):
        before = _syncs(db)
        assert lib.kv_put(db, b"k%d" % i, 2, b"", 0, big, len(big), 0) == 0
        seals += _syncs(db) - before
    # Each rollover synced the segment it sealed, in the put: one sync per sealed segment.
    assert seals == len(list(tmp_path.glob("*.seg"))) - 1 >= 2
    before = _syncs(db)
    assert lib.kv_hint_flush(db) == 0
    assert _syncs(db) == before  # nothing is owed: the hints describe synced bytes
    assert lib.kv_close(db) == 0
    lib.kv_free(db)


def test_sealing_in_always_mode_syncs_at_once(tmp_path: Path) -> None:
    from engine._ffi import lib

    db = _raw_handle(tmp_path, lib.KV_SYNC_ALWAYS)
    big = b"x" * (SEG // 2)
    assert lib.kv_put(db, b"a", 1, b"", 0, big, len(big), 0) == 0
    before = _syncs(db)
    assert lib.kv_put(db, b"b", 1, b"", 0, big, len(big), 0) == 0  # seals
    assert _syncs(db) == before + 2  # the sealed segment, then the put
    assert lib.kv_close(db) == 0
    lib.kv_free(db)


def test_damaged_input_stops_the_pass_and_is_left_alone(tmp_path: Path) -> None:
    """Bit rot found in a sealed segment during a pass: CorruptionError naming the file,
    nothing changes, the segment is reported and neither policy nor "all" takes it again."""
    store = LogStore(tmp_path, max_segment_bytes=SEG)
    latest = churn(store)
    victim = [s for s in store.segments(NOW) if not s.active][1]
    with open(victim.path, "r+b") as f:  # flip a value byte of the segment's first record
        f.seek(64 + 48 + 12)
        byte = f.read(1)
        f.seek(64 + 48 + 12)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(CorruptionError) as err:
        store.compact(NOW)
    assert err.value.path == victim.path and err.value.offset == 64
    assert [d.path for d in store.damage()] == [victim.path]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    seg = next(s for s in store.segments(NOW) if s.id == victim.id)
    assert seg.damaged
    assert victim.id not in choose_segments(store.segments(NOW), CompactionPolicy())
    store.compact(NOW)  # everything else
    assert any(s.id == victim.id for s in store.segments(NOW))
    for key, value in latest.items():
        assert store.get(key, NOW).value == value
    store.close()
