"""The inline fast paths of Namespace.put/get/list give the same results and errors as
the general paths they short-cut (engine/kv.py)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

import engine
from engine import KVError, ReadOnlyError


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with engine.open(tmp_path / "db", clock=lambda: 1_000_000.0) as s:
        yield s


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", ValueError),
        (".", ValueError),
        ("..", ValueError),
        ("\ud800", ValueError),
        ("k" * 513, KVError),
        ("é" * 257, KVError),  # 514 UTF-8 bytes from 257 characters
        (b"bytes-key", TypeError),
    ],
)
def test_bad_keys_raise_the_general_errors(store, key, error) -> None:  # type: ignore[no-untyped-def]
    ns = store.namespace()
    with pytest.raises(error):
        ns.put(key, b"v")
    with pytest.raises(error):
        ns.get(key, "bytes")


def test_longest_key_is_accepted(store) -> None:  # type: ignore[no-untyped-def]
    ns = store.namespace()
    key = "é" * 256  # exactly 512 UTF-8 bytes
    ns.put(key, "v")
    assert ns.get(key) == "v"


def test_values_round_trip_in_every_plain_type(store) -> None:  # type: ignore[no-untyped-def]
    ns = store.namespace()
    ns.put("b", b"\xff\x00raw")
    ns.put("s", "ünïcode")
    ns.put("j", json.dumps({"a": [1, 2]}))
    assert ns.get("b", "bytes") == b"\xff\x00raw"
    assert ns.get("b", "arrayBuffer") == b"\xff\x00raw"
    assert ns.get("b") == "\ufffd\x00raw"  # text decodes with replacement
    assert ns.get("s") == "ünïcode"
    assert ns.get("j", "json") == {"a": [1, 2]}
    assert ns.get("missing") is None and ns.get("missing", "json") is None
    ns.put("empty", b"")
    ns.put("empty-text", "")
    assert ns.get("empty", "bytes") == b"" and ns.get("empty-text") == ""
    with pytest.raises(ValueError):
        ns.get("s", "nonsense")
    with pytest.raises(ValueError):
        ns.put("bad", "\udfff")


def test_value_over_the_limit_is_refused(store) -> None:  # type: ignore[no-untyped-def]
    ns = store.namespace()
    with pytest.raises(KVError) as exc:
        ns.put("big", bytes(25 * 1024 * 1024 + 1))
    assert exc.value.status == 413
    assert ns.get("big") is None


def test_stale_handle_after_namespace_deletion(store) -> None:  # type: ignore[no-untyped-def]
    ns = store.namespace("gone")
    ns.put("k", b"old")
    store.delete_namespace("gone")
    assert ns.get("k") is None
    ns.put("k", b"new")
    assert store.namespace("gone").get("k", "bytes") == b"new"
    # Deleted and recreated again: both earlier handles follow the live one.
    second = store.namespace("gone")
    store.delete_namespace("gone")
    store.namespace("gone").put("k2", b"third")
    for handle in (ns, second):
        assert handle.get("k") is None
        assert handle.get("k2", "bytes") == b"third"
        assert [k.name for k in handle.list().keys] == ["k2"]


def test_readonly_store_refuses_fast_puts(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as s:
        s.namespace().put("k", b"v")
    with engine.open(tmp_path / "db", readonly=True) as ro:
        with pytest.raises(ReadOnlyError):
            ro.namespace().put("k2", b"v")
        assert ro.namespace().get("k", "bytes") == b"v"
        assert ro.namespace("never-made").get("k") is None


def test_list_pages_with_and_without_metadata_and_expiry(store) -> None:  # type: ignore[no-untyped-def]
    ns = store.namespace()
    for i in range(5):
        ns.put(f"p/{i}", b"v")
    ns.put("p/meta", b"v", metadata={"m": 1})
    ns.put("p/exp", b"v", expiration_ttl=600)
    ns.put("q/other", b"v")
    ns.put("p/ключ", b"v")
    page = ns.list(prefix="p/", limit=3)
    assert [k.name for k in page.keys] == ["p/0", "p/1", "p/2"]
    assert all(k.expiration is None and k.metadata is None for k in page.keys)
    assert not page.list_complete and page.cursor
    rest = ns.list(prefix="p/", cursor=page.cursor)
    assert [(k.name, k.expiration, k.metadata) for k in rest.keys] == [
        ("p/3", None, None),
        ("p/4", None, None),
        ("p/exp", 1_000_600, None),
        ("p/meta", None, {"m": 1}),
        ("p/ключ", None, None),
    ]
    assert rest.list_complete and rest.cursor is None
    assert ns.list(prefix="zzz").keys == []


def test_plain_get_of_a_damaged_value_names_the_segment_and_offset(tmp_path: Path) -> None:
    value = b"0123456789abcdef" * 8
    with engine.open(tmp_path / "db") as s:
        s.namespace().put("k", value)
    (segment,) = (tmp_path / "db").glob("*.seg")
    data = bytearray(segment.read_bytes())
    at = data.index(value)
    data[at + 5] ^= 0x01
    segment.write_bytes(bytes(data))
    with (
        engine.open(tmp_path / "db", readonly=True) as s,
        pytest.raises(engine.CorruptionError) as exc,
    ):
        s.namespace().get("k", "bytes")
    assert exc.value.path == str(segment)
    assert exc.value.offset is not None and exc.value.offset < at


@pytest.mark.parametrize("size", [(256 << 10) - 200, 256 << 10, (256 << 10) + 1, 25 << 20])
def test_large_values_are_read_exactly_on_both_sides_of_the_buffer_limit(store, size) -> None:  # type: ignore[no-untyped-def]
    ns = store.namespace()
    value = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    ns.put("big", value, metadata={"m": 1})
    assert ns.get("big", "bytes") == value
    got = ns.get_with_metadata("big", "bytes")
    assert got.value == value and got.metadata == {"m": 1}


@pytest.mark.parametrize("mib", [3, 9])  # read chunk by chunk; from 4 MiB by a second thread
@pytest.mark.parametrize("where", ["head", "middle", "last"])
def test_a_damaged_large_value_is_never_returned(tmp_path: Path, where: str, mib: int) -> None:
    value = bytes(range(256)) * 4096 * mib
    with engine.open(tmp_path / "db") as s:
        s.namespace().put("big", value)
    (segment,) = (tmp_path / "db").glob("*.seg")
    data = bytearray(segment.read_bytes())
    start = data.index(value[:4096])
    end = start + len(value)
    at = {"head": start - 3, "middle": (start + end) // 2, "last": end - 1}[where]
    data[at] ^= 0x40
    segment.write_bytes(bytes(data))
    with engine.open(tmp_path / "db", readonly=True) as s:
        with pytest.raises(engine.CorruptionError) as exc:
            s.namespace().get("big", "bytes")
        assert exc.value.path == str(segment)
        assert exc.value.offset is not None and exc.value.offset < start


def test_a_large_read_resizes_when_the_value_changed_since_it_was_sized(store) -> None:  # type: ignore[no-untyped-def]
    # kv_get_into copies only into a buffer of exactly the value's length and
    # otherwise reports the length it found, for the caller to size again.
    from engine._ffi import ffi, lib

    ns = store.namespace()
    value = b"v" * (1 << 20)
    ns.put("big", value)
    log = ns._log
    key = ns._prefix + b"big"
    out = ffi.new("kv_value *")
    dst = ffi.new("char[]", 1000)
    assert lib.kv_get_into(log._db, key, len(key), 1_000_000, dst, 1000, out) == 0
    assert out.vlen == len(value) and ffi.buffer(dst, 1000)[:] == bytes(1000)
    got = log._read_large(key, 1_000_000, 1000)  # starts from a wrong size
    assert got is not None and got[0] == value
    ns.put("big", b"s")
    got = log._read_large(key, 1_000_000, len(value))  # now a 1-byte value
    assert got is not None and got[0] == b"s"
    ns.delete("big")
    assert log._read_large(key, 1_000_000, len(value)) is None


def test_a_large_value_and_its_metadata_come_from_one_record(store, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # The metadata is read with the head, the value afterwards: an overwrite in
    # between must not pair the old metadata with the new value.
    ns = store.namespace()
    old, new = b"o" * (1 << 20), b"n" * (1 << 20)
    ns.put("big", old, metadata={"v": 1})
    log = ns._log
    real = log._read_large
    calls = []

    def overwritten_first(*args):  # type: ignore[no-untyped-def]
        if not calls:
            ns.put("big", new, metadata={"v": 2})
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(log, "_read_large", overwritten_first)
    got = ns.get_with_metadata("big", "bytes")
    assert (got.value == new, got.metadata) == (True, {"v": 2})
    assert len(calls) == 2


def test_plain_gets_in_threads_each_see_their_own_value(store) -> None:  # type: ignore[no-untyped-def]
    # Small values (read through the thread's buffer) and large ones (read straight
    # into the returned object).
    values = {f"k{i}": bytes([i]) * (1 + i * 977 if i % 4 else 3 << 20) for i in range(8)}
    ns = store.namespace()
    for key, value in values.items():
        ns.put(key, value)
    failures: list[str] = []

    def reader(key: str) -> None:
        for _ in range(40):
            if ns.get(key, "bytes") != values[key] or ns.get(key + "-missing", "bytes") is not None:
                failures.append(key)
                return

    threads = [threading.Thread(target=reader, args=(key,)) for key in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_list_pages_of_ascii_and_other_keys_in_low_and_high_namespace_ids(store) -> None:  # type: ignore[no-untyped-def]
    # Namespace ids past 127 put a non-ASCII byte in every stored key's prefix.
    handles = [store.namespace(f"ns{i}") for i in range(130)]
    assert any(h._prefix[-1] >= 0x80 for h in handles)
    keys = sorted([f"a{i:03d}" for i in range(7)] + ["é", "\U0001f600", "\x00nul"], key=str.encode)
    for ns in (handles[0], handles[-1]):
        for key in keys:
            ns.put(key, b"v")
        seen: list[str] = []
        cursor = None
        while True:
            page = ns.list(limit=3, cursor=cursor)
            seen += [k.name for k in page.keys]
            if page.list_complete:
                break
            cursor = page.cursor
        assert seen == keys
        assert [k.name for k in ns.list(prefix="a00").keys] == [f"a00{i}" for i in range(7)]


def test_the_system_clock_read_in_c_judges_expiry(tmp_path: Path) -> None:
    """With time.time as its clock, a plain get lets the C core read the clock
    (KV_NOW_SYSTEM): it must see what time.time() sees."""
    import time

    from engine.storage import LogStore

    log = LogStore(tmp_path / "log")
    try:
        now = int(time.time())
        log.put(b"past", b"a", expiration=now - 1)
        log.put(b"future", b"b", expiration=now + 3600)
        log.put(b"never", b"c")
        for _ in range(3):  # the third read of each is served by the record cache
            assert log.get_value(b"past") is None
            assert log.get_value(b"future") == b"b"
            assert log.get_value(b"never") == b"c"
        assert log.get_value(b"past", now - 2) == b"a"  # an explicit now still wins
        assert log.get_value(b"future", now + 3600) is None
    finally:
        log.close()
    with engine.open(tmp_path / "kv") as db:
        ns = db.namespace()
        ns.put("k", "v", expiration=int(time.time()) + 61)
        assert ns.get("k") == "v"


def test_a_custom_clock_is_asked_on_every_plain_get(tmp_path: Path) -> None:
    calls = []

    def clock() -> float:
        calls.append(1)
        return 1_000_000.0

    with engine.open(tmp_path / "kv", clock=clock) as db:
        ns = db.namespace()
        ns.put("k", "v", expiration_ttl=60)
        before = len(calls)
        assert ns.get("k") == "v"
        assert len(calls) == before + 1


@pytest.mark.parametrize("nth", [1, 2, 20, 36])
def test_a_read_error_inside_a_two_thread_read_is_raised(tmp_path: Path, nth: int) -> None:
    """A value of 9 MiB is read in 36 chunks by a second thread while the caller
    hashes: a failed chunk read, first to last, fails the get with the error."""
    from engine._ffi import lib

    value = bytes(range(256)) * 4096 * 9
    with engine.open(tmp_path / "db") as s:
        ns = s.namespace()
        ns.put("big", value)
        assert ns.get("big", "bytes") == value
        # EIO at chunk nth: the head is read twice first (to size the value, then
        # with it), so chunk 36 is the 38th read and a 39th would fail nothing.
        lib.kv_io_fault_set(lib.KV_IO_OP_READ, 2 + nth, 5, 0)
        try:
            with pytest.raises(engine.EngineIOError, match="Input/output error"):
                ns.get("big", "bytes")
        finally:
            lib.kv_io_fault_set(0, 0, 0, 0)
        assert ns.get("big", "bytes") == value


def test_a_two_thread_read_from_a_slow_disk_sleeps_instead_of_spinning(tmp_path: Path) -> None:
    """Each chunk read takes 2 ms: the caller, waiting on the reader thread, must
    stop spinning and sleep (and be woken for every chunk: a lost wake-up would
    hang here), and the value must come back whole."""
    import resource

    from engine._ffi import lib

    value = bytes(range(256)) * 4096 * 9  # 36 chunks: about 72 ms of sleeping reads
    with engine.open(tmp_path / "db") as s:
        ns = s.namespace()
        ns.put("big", value)
        assert ns.get("big", "bytes") == value
        lib.kv_io_fault_set(lib.KV_IO_OP_READ, 1, lib.KV_IO_FAULT_SLOW, 1)
        try:
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            got = ns.get("big", "bytes")
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
        finally:
            lib.kv_io_fault_set(0, 0, 0, 0)
        assert got == value
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        # Spinning for the whole read would cost about as much CPU as wall time.
        assert wall > 0.07 and cpu < wall / 2, (wall, cpu)
