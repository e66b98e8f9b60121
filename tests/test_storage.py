"""The storage layer (engine/storage.py over the C handle): segments, sync modes,
streamed values, ordered listing, file modes and the write path's system calls.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import oracle_format as fmt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine._ffi import lib
from engine.errors import EngineIOError, LimitError
from engine.storage import SPOOL_IN_MEMORY, BatchOp, LogStore, StreamTooLarge

MIB = 1 << 20
VALUE_LIMIT = 25 * MIB  # Workers KV's value limit: always fits one segment


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- segments -----------------------------------------------------------------------------
def test_rollover_at_max_segment_bytes(store_path: Path) -> None:
    limit = 64 * 1024
    store = LogStore(store_path, max_segment_bytes=limit)
    values = {b"k%04d" % i: os.urandom(1000 + i % 300) for i in range(400)}
    sealed: dict[Path, str] = {}
    for n, (key, value) in enumerate(values.items()):
        store.put(key, value)
        if n == 200:  # the segments sealed so far must never change again
            sealed = {p: digest(p) for p in segment_files(store_path)[:-1]}
    infos = store.segments(0)
    store.close()
    files = segment_files(store_path)
    assert len(files) >= 6 and len(sealed) >= 3
    assert all(p.stat().st_size <= limit for p in files)
    assert [i.active for i in infos] == [False] * (len(infos) - 1) + [True]
    assert {p: digest(p) for p in sealed} == sealed
    ids = [int(p.stem, 16) for p in files]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    for p in files:  # no record spans two files: each one decodes on its own
        scan = fmt.scan_segment(p.read_bytes())
        assert scan.regions == [] and scan.damaged == []
    store = LogStore(store_path, max_segment_bytes=limit)
    try:
        for key, value in values.items():
            assert store.get(key, 0).value == value
    finally:
        store.close()


@pytest.mark.parametrize("max_segment_bytes", [4096, 1 * MIB, None])
def test_a_25_mib_value_always_fits(store_path: Path, max_segment_bytes: int | None) -> None:
    kwargs = {} if max_segment_bytes is None else {"max_segment_bytes": max_segment_bytes}
    big = os.urandom(VALUE_LIMIT)
    store = LogStore(store_path, **kwargs)
    store.put(b"small", b"s")
    store.put(b"big", big)
    store.put(b"after", b"a")
    assert store.get(b"big", 0).value == big
    store.close()
    store = LogStore(store_path, **kwargs)
    try:
        assert store.get(b"big", 0).value == big
        assert store.get(b"after", 0).value == b"a"
        assert store.damage() == []
    finally:
        store.close()
    if max_segment_bytes is not None:  # the big record sits alone in a segment of its own
        sizes = [p.stat().st_size for p in segment_files(store_path)]
        assert sum(s > max_segment_bytes for s in sizes) == 1


def test_value_size_limit_of_the_format(log_store: LogStore) -> None:
    at_limit = bytearray(fmt.MAX_VALUE)
    log_store.put(b"max", memoryview(at_limit))
    assert len(log_store.get(b"max", 0).value) == fmt.MAX_VALUE
    with pytest.raises(LimitError):
        log_store.put(b"over", memoryview(bytearray(fmt.MAX_VALUE + 1)))


# -- the write path ---------------------------------------------------------------------------
def write_calls() -> int:
    return int(lib.kv_io_fault_set(lib.KV_IO_OP_WRITE, 0, 0, 0))


def test_a_put_is_one_write_call(log_store: LogStore) -> None:
    log_store.put(b"warm", b"up")  # the first segment exists already
    for value in (b"", b"x" * 100, os.urandom(4096), bytearray(MIB), memoryview(b"view")):
        before = write_calls()
        log_store.put(b"key", value, meta=b'{"m":1}')
        assert write_calls() - before == 1
    before = write_calls()
    log_store.write_batch([BatchOp(b"a", b"1"), BatchOp(b"b", b"2"), BatchOp(b"key")])
    assert write_calls() - before == 1  # a batch is one append too
    before = write_calls()
    log_store.delete(b"a")
    assert write_calls() - before == 1
    log_store.delete(b"never-there")  # no tombstone for an absent key
    assert write_calls() - before == 1


def test_buffer_values_are_stored_exactly(log_store: LogStore) -> None:
    data = bytearray(b"0123456789" * 10)
    log_store.put(b"slice", memoryview(data)[10:30])
    assert log_store.get(b"slice", 0).value == b"0123456789" * 2


# -- sync modes -------------------------------------------------------------------------------
def test_sync_os_does_not_fsync_each_write(log_store: LogStore) -> None:
    before = log_store.stats(0)["syncs"]
    for i in range(50):
        log_store.put(b"k%d" % i, b"v")
    assert log_store.stats(0)["syncs"] == before
    log_store.sync()
    assert log_store.stats(0)["syncs"] == before + 1


def test_sync_always_fsyncs_every_write(store_path: Path) -> None:
    store = LogStore(store_path, sync="always")
    try:
        before = store.stats(0)
        for i in range(20):
            store.put(b"k%d" % i, b"v")
        after = store.stats(0)
        assert after["syncs"] - before["syncs"] == after["writes"] - before["writes"] == 20
    finally:
        store.close()


def test_sync_always_group_commit_across_threads(store_path: Path) -> None:
    store = LogStore(store_path, sync="always")
    threads_n, per_thread = 8, 40
    barrier = threading.Barrier(threads_n)

    def writer(t: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            store.put(b"t%d-%d" % (t, i), b"v" * 200)

    try:
        threads = [threading.Thread(target=writer, args=(t,)) for t in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        stats = store.stats(0)
        assert stats["writes"] == threads_n * per_thread
        # Writers that arrive while an fdatasync runs share the next one.
        assert 0 < stats["syncs"] < stats["writes"]
        for t in range(threads_n):
            for i in range(per_thread):
                assert store.get(b"t%d-%d" % (t, i), 0) is not None
    finally:
        store.close()


def test_sync_interval_syncs_in_the_background(store_path: Path) -> None:
    store = LogStore(store_path, sync="interval")
    try:
        store.put(b"k", b"v")
        before = store.stats(0)["syncs"]
        assert before == 0  # the put itself does not sync
        deadline = time.monotonic() + 30
        while store.stats(0)["syncs"] == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.stats(0)["syncs"] > before
    finally:
        store.close()
    assert not any(t.name == "kvengine-sync" for t in threading.enumerate())


# -- streamed values ------------------------------------------------------------------------------
def spool_files(path: Path) -> list[str]:
    return [n for n in os.listdir(path) if n.endswith(".tmp")]


def test_put_stream_spools_large_values(log_store: LogStore, store_path: Path) -> None:
    seen: list[list[str]] = []
    chunk = os.urandom(256 * 1024)

    def chunks() -> Iterator[bytes]:
        for _ in range(12):  # 3 MiB: past the part held in memory
            yield chunk
            seen.append(spool_files(store_path))

    assert log_store.put_stream(b"streamed", chunks()) == 12 * len(chunk)
    assert any(seen) and not seen[0]  # spooled once past the in-memory part, not before
    assert spool_files(store_path) == []  # and removed
    assert log_store.get(b"streamed", 0).value == chunk * 12


def test_put_stream_small_values_stay_in_memory(log_store: LogStore, store_path: Path) -> None:
    seen: list[list[str]] = []

    def chunks() -> Iterator[bytes]:
        for i in range(4):
            yield bytes([i]) * (SPOOL_IN_MEMORY // 4)
            seen.append(spool_files(store_path))

    log_store.put_stream(b"k", chunks())
    assert seen == [[]] * 4
    assert log_store.get(b"k", 0).value == b"".join(
        bytes([i]) * (SPOOL_IN_MEMORY // 4) for i in range(4)
    )


def test_put_stream_over_the_limit_writes_nothing(log_store: LogStore, store_path: Path) -> None:
    before = log_store.stats(0)["writes"]
    with pytest.raises(StreamTooLarge) as info:
        log_store.put_stream(b"k", iter([bytes(MIB)] * 4), limit=3 * MIB)
    assert info.value.size > 3 * MIB
    assert log_store.get(b"k", 0) is None
    assert log_store.stats(0)["writes"] == before
    assert spool_files(store_path) == []


def test_put_stream_holds_little_memory(log_store: LogStore) -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB

    def chunks() -> Iterator[bytes]:
        for _ in range(VALUE_LIMIT // len(chunk)):
            yield chunk

    tracemalloc.start()
    try:
        log_store.put_stream(b"big", chunks())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MIB  # a 25 MiB value, never held whole
    stream = log_store.open_value(b"big", 0)
    assert stream is not None
    value, _, _ = stream
    with value:
        assert hashlib.sha256(value.read()).digest() == hashlib.sha256(chunk * 400).digest()


def test_leftover_spool_files_are_removed_by_the_next_writer(store_path: Path) -> None:
    LogStore(store_path).close()
    (store_path / "spool-abc.tmp").write_bytes(b"half a value")
    (store_path / "0000000000000009.seg.tmp").write_bytes(b"half a segment")
    LogStore(store_path).close()
    assert spool_files(store_path) == []


# -- ordered listing ---------------------------------------------------------------------------
def test_list_is_in_byte_order_with_prefix_after_and_limit(log_store: LogStore) -> None:
    keys = [b"", b"\x00", b"a", b"a\x00", b"ab", b"abc", b"a\xff", b"b", b"\xff", b"\xff\xff"]
    assert keys == sorted(keys)  # unsigned byte order: 0xff after every letter
    for k in reversed(keys):
        log_store.put(k, b"v:" + k)
    assert [k.key for k in log_store.iter_keys(b"", 0, page=3)] == keys
    listed, more = log_store.list(b"a", b"", 0, 3)
    assert [k.key for k in listed] == [b"a", b"a\x00", b"ab"] and more
    listed, more = log_store.list(b"a", b"ab", 0, 3)
    assert [k.key for k in listed] == [b"abc", b"a\xff"] and not more
    listed, more = log_store.list(b"a", b"0", 0, 1)  # `after` before the prefix: from its start
    assert [k.key for k in listed] == [b"a"] and more
    listed, more = log_store.list(b"b", b"", 0, 0)
    assert listed == [] and more


def test_list_skips_expired_and_deleted_keys_and_returns_metadata(log_store: LogStore) -> None:
    now = 1_700_000_000
    log_store.put(b"p-expired", b"v", expiration=now)
    log_store.put(b"p-later", b"v", meta=b'{"a":1}', expiration=now + 1)
    log_store.put(b"p-deleted", b"v")
    log_store.delete(b"p-deleted")
    log_store.put(b"p-plain", b"v")
    listed, more = log_store.list(b"p-", b"", now, 10)
    assert [(k.key, k.expiration, k.meta) for k in listed] == [
        (b"p-later", now + 1, b'{"a":1}'),
        (b"p-plain", 0, None),
    ]
    assert not more
    assert log_store.get(b"p-expired", now) is None
    assert log_store.get(b"p-expired", now - 1).value == b"v"


def test_iter_keys_past_the_empty_key(log_store: LogStore) -> None:
    # Regression: a page that ended at the empty key started the listing over,
    # forever (an empty `after` means "from the start").
    for key in (b"", b"a", b"b"):
        log_store.put(key, b"v")
    for page in (1, 2, 3):
        assert [k.key for k in log_store.iter_keys(b"", 0, page=page)] == [b"", b"a", b"b"]


@given(
    ops=st.lists(st.tuples(st.binary(max_size=6), st.booleans()), min_size=1, max_size=60),
    prefix=st.binary(max_size=2),
    page=st.integers(min_value=1, max_value=7),
)
def test_listing_matches_a_sorted_model(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[tuple[bytes, bool]],
    prefix: bytes,
    page: int,
) -> None:
    store = LogStore(tmp_path_factory.mktemp("ls") / "store")
    model: set[bytes] = set()
    try:
        for key, put in ops:
            if put:
                store.put(key, key)
                model.add(key)
            else:
                store.delete(key)
                model.discard(key)
        expect = sorted(k for k in model if k.startswith(prefix))
        assert [k.key for k in store.iter_keys(prefix, 0, page=page)] == expect
    finally:
        store.close()


# -- files on disk -------------------------------------------------------------------------------
def test_directory_0700_and_files_0600_whatever_the_umask(store_path: Path) -> None:
    old = os.umask(0)
    try:
        store = LogStore(store_path, max_segment_bytes=4096)
        for i in range(10):
            store.put(b"k%d" % i, bytes(1000))
        seen: list[int] = []

        def chunks() -> Iterator[bytes]:
            for _ in range(3):
                yield bytes(MIB)
                for name in spool_files(store_path):
                    seen.append(stat.S_IMODE((store_path / name).stat().st_mode))

        store.put_stream(b"streamed", chunks())
        store.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(store_path.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in store_path.iterdir()}
    assert len(modes) > 3
    assert set(modes.values()) == {0o600}, modes
    assert seen and set(seen) == {0o600}


def test_symlinked_segment_is_refused(store_path: Path, tmp_path: Path) -> None:
    store = LogStore(store_path)
    store.put(b"k", b"v")
    store.close()
    (seg,) = segment_files(store_path)
    elsewhere = tmp_path / "elsewhere.seg"
    seg.rename(elsewhere)
    seg.symlink_to(elsewhere)
    before = digest(elsewhere)
    for readonly in (False, True):
        with pytest.raises(EngineIOError) as info:
            LogStore(store_path, readonly=readonly)
        assert info.value.errno == errno.ELOOP
    assert digest(elsewhere) == before  # never followed, never written
    assert seg.is_symlink()
