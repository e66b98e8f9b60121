"""engine._hotpath (csrc/py_hotpath.c): the one-call put, get and list page of the KV layer.

The hot path must be invisible: every call gives what the general path of
Namespace.put/get gives (value, None or the same exception), only sooner.  The
oracle is a Namespace whose hot handles are removed, so each call takes the
general path; both run on their own store with the same operations.
"""

from __future__ import annotations

import decimal
import errno
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kv_helpers import FakeClock

import engine
from engine import validate as v
from engine._ffi import hotpath, lib
from engine.errors import CorruptionError, EngineIOError, StoreClosedError
from engine.kv import Namespace
from engine.values import ValueStream


def general(ns: Namespace) -> Namespace:
    """A second handle to ns's namespace that never takes the hot path."""
    twin = Namespace(ns._store, ns.name, ns._id)
    twin._hot_get = twin._hot_put = None
    return twin


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        got = fn(*args)
    except Exception as exc:  # the comparison is of whatever is raised
        return type(exc).__name__, str(exc)
    if isinstance(got, ValueStream):
        return "stream", got.read()
    return "ok", got


@pytest.fixture
def pair(tmp_path: Path, clock: FakeClock) -> Iterator[tuple[Namespace, Namespace]]:
    """(hot, general): the default namespace of two stores on one clock."""
    with (
        engine.open(tmp_path / "hot", clock=clock) as a,
        engine.open(tmp_path / "gen", clock=clock) as b,
    ):
        hot = a.namespace()
        assert hot._hot_get is not None and hot._hot_put is not None
        yield hot, general(b.namespace())


EDGE_KEYS = [
    *("", ".", "..", "...", "k", "a\x00b", "\ud800"),
    *("a" * 512, "a" * 513, "é" * 256, "é" * 257),
]
keys = st.one_of(
    st.sampled_from(EDGE_KEYS),
    st.text(st.characters(exclude_categories=()), min_size=0, max_size=8),
    st.sampled_from([b"k", 1, None, bytearray(b"k")]),
)
values = st.one_of(
    st.binary(max_size=64),
    st.text(st.characters(exclude_categories=()), max_size=16),
    st.binary(max_size=16).map(bytearray),
    st.binary(max_size=16).map(memoryview),
    st.sampled_from([None, 7, [b"ab", b"cd"], "\udcff"]),
)
types = st.sampled_from(["text", "bytes", "arrayBuffer", "json", "stream", "TEXT", 3, None])


@given(ops=st.lists(st.tuples(keys, values, types, st.booleans()), min_size=1, max_size=12))
def test_every_call_answers_as_the_general_path_does(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, Any, Any, bool]]
) -> None:
    clock = FakeClock()
    base = tmp_path_factory.mktemp("hot")
    with engine.open(base / "a", clock=clock) as a, engine.open(base / "b", clock=clock) as b:
        hot, gen = a.namespace(), general(b.namespace())
        for key, value, kind, delete in ops:
            assert outcome(hot.put, key, value) == outcome(gen.put, key, value)
            assert outcome(hot.get, key, kind) == outcome(gen.get, key, kind)
            if delete:
                assert outcome(hot.delete, key) == outcome(gen.delete, key)
            assert outcome(hot.get, key) == outcome(gen.get, key)
        assert [k.name for k in hot.list().keys] == [k.name for k in gen.list().keys]


list_keys = st.text("ab.\x00é", min_size=1, max_size=4).filter(lambda k: k not in (".", ".."))
writes = st.lists(
    st.tuples(
        list_keys,
        st.sampled_from([None, 60, 61, 120]),  # expiration_ttl
        st.sampled_from([None, {"m": 1}, [1, "é"], "s", 0, None]),  # metadata
    ),
    max_size=20,
)


@given(
    ops=writes,
    deletes=st.lists(list_keys, max_size=3),
    advance=st.sampled_from([0, 60, 61, 119.5]),
    prefix=st.sampled_from([None, "", "a", "b", "ab", "é", "\x00"]),
    limit=st.integers(1, 4),
)
def test_every_page_is_the_general_paths_page(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[tuple[str, int | None, Any]],
    deletes: list[str],
    advance: float,
    prefix: str | None,
    limit: int,
) -> None:
    clock = FakeClock()
    base = tmp_path_factory.mktemp("hotlist")
    with engine.open(base / "a", clock=clock) as a, engine.open(base / "b", clock=clock) as b:
        hot, gen = a.namespace("n"), general(b.namespace("n"))
        assert hot._hot_get is not None
        for ns in (hot, gen):
            for key, ttl, meta in ops:
                ns.put(key, key, expiration_ttl=ttl, metadata=meta)
            for key in deletes:
                ns.delete(key)
        clock.advance(advance)
        cursors: list[str | None] = [None]
        while True:
            page = hot.list(prefix=prefix, limit=limit, cursor=cursors[-1])
            assert page == gen.list(prefix=prefix, limit=limit, cursor=cursors[-1])
            if page.list_complete:
                break
            cursors.append(page.cursor)
            assert len(cursors) <= 20


def test_a_page_with_a_damaged_record_raises_as_the_general_path(kv: Namespace) -> None:
    kv.put("a", b"v")
    kv.put("b", b"v", metadata="META-OF-B")
    segments = sorted(p for p in Path(kv._log.path).iterdir() if p.is_file())
    hit = [p for p in segments if b"META-OF-B" in p.read_bytes()]
    assert len(hit) == 1
    data = hit[0].read_bytes()
    with open(hit[0], "r+b") as f:
        f.seek(data.index(b"META-OF-B"))
        f.write(b"X")
    with pytest.raises(CorruptionError) as info:
        kv.list()
    assert info.value.path == str(hit[0])
    assert kv.list(prefix="a").keys == [engine.KeyInfo("a")]


def test_a_key_that_is_not_utf8_fails_the_page(kv: Namespace) -> None:
    kv.put("ok", b"v")
    kv._log.put(kv._prefix + b"\xff", b"v")  # below the KV layer, which never writes one
    with pytest.raises(UnicodeDecodeError):
        kv.list()
    assert kv.list(prefix="ok").keys == [engine.KeyInfo("ok")]


def test_values_at_the_size_limit(pair: tuple[Namespace, Namespace]) -> None:
    hot, gen = pair
    for size in (v.MAX_VALUE_BYTES, v.MAX_VALUE_BYTES + 1):
        value = bytes(size)
        assert outcome(hot.put, "big", value) == outcome(gen.put, "big", value)
    # Over the core's per-thread read buffer: the hot get hands the read to the general path.
    large = b"x" * (lib.KV_GET_TL_MAX + 1)
    hot.put("large", large)
    assert hot.get("large", "bytes") == large
    assert hot.get("large") == large.decode()


def test_text_replaces_invalid_utf8_as_the_general_path(pair: tuple[Namespace, Namespace]) -> None:
    hot, gen = pair
    for ns in pair:
        ns.put("k", b"ok \xff\xfe end")
    assert hot.get("k") == gen.get("k") == "ok \ufffd\ufffd end"


def test_expiry_is_judged_at_the_store_clock(
    pair: tuple[Namespace, Namespace], clock: FakeClock
) -> None:
    hot, gen = pair
    for ns in pair:
        ns.put("k", b"v", expiration_ttl=60)
    for step in (59, 0.5, 0.5, 1):
        clock.advance(step)
        assert hot.get("k", "bytes") == gen.get("k", "bytes")
    assert hot.get("k", "bytes") is None


@pytest.mark.parametrize(
    "reading",
    [
        pytest.param(lambda t: int(t), id="int"),
        pytest.param(lambda t: decimal.Decimal(t), id="Decimal"),
        pytest.param(lambda t: t, id="float"),
    ],
)
def test_any_clock_reading_int_accepts(tmp_path: Path, reading: Callable[[float], Any]) -> None:
    fake = FakeClock()
    with engine.open(tmp_path / "db", clock=lambda: reading(fake())) as db:
        ns = db.namespace()
        ns.put("k", b"v", expiration=int(fake()) + 60)
        assert ns.get("k", "bytes") == b"v"
        fake.advance(61)
        assert ns.get("k", "bytes") is None


def test_a_clock_that_fails_fails_the_get(tmp_path: Path) -> None:
    broken = False

    def clock() -> float:
        if broken:
            raise RuntimeError("clock is broken")
        return 1_700_000_000.0

    with engine.open(tmp_path / "db", clock=clock) as db:
        ns = db.namespace()
        ns.put("k", b"v")
        broken = True
        with pytest.raises(RuntimeError, match="clock is broken"):
            ns.get("k", "bytes")


def test_the_system_clock_is_read_by_the_core(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        ns = db.namespace()
        ns.put("k", "v", expiration_ttl=3600)
        assert ns.get("k") == "v"
        assert [k.name for k in ns.list().keys] == ["k"]  # kv_list reads the clock too


def test_core_errors_are_raised_not_retried(tmp_path: Path) -> None:
    db = engine.open(tmp_path / "db")
    ns = db.namespace()
    try:
        ns.put("before", b"b")
        lib.kv_io_fault_set(lib.KV_IO_OP_WRITE, 1, errno.ENOSPC, 0)
        with pytest.raises(EngineIOError) as info:
            ns.put("lost", b"x")
        assert info.value.errno == errno.ENOSPC
        lib.kv_io_fault_set(0, 0, 0, 0)
        assert ns.get("lost") is None
        lib.kv_io_fault_set(lib.KV_IO_OP_WRITE, 1, errno.EIO, 0)
        with pytest.raises(EngineIOError) as info:
            ns.delete("before")
        assert info.value.errno == errno.EIO
        lib.kv_io_fault_set(0, 0, 0, 0)
        assert ns.get("before") == "b"
        ns.put("after", b"a")
        assert ns.get("after") == "a"
    finally:
        lib.kv_io_fault_set(0, 0, 0, 0)
        db.close()
    with pytest.raises(StoreClosedError):
        ns.put("k", b"v")
    with pytest.raises(StoreClosedError):
        ns.delete("before")
    with pytest.raises(StoreClosedError):
        ns.get("before")
    with pytest.raises(StoreClosedError):
        ns.list()


def test_a_read_only_store_reads_hot_and_refuses_writes(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        db.namespace().put("k", b"v")
    with engine.open(tmp_path / "db", readonly=True) as db:
        ns = db.namespace()
        assert ns._hot_put is None and ns._hot_get is not None
        assert ns.get("k", "bytes") == b"v"
        with pytest.raises(engine.ReadOnlyError):
            ns.put("k", b"w")
        with pytest.raises(engine.ReadOnlyError):
            ns.delete("k")
        assert ns.get("k", "bytes") == b"v"


def test_the_rate_limit_keeps_puts_on_the_general_path(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db", enforce_write_rate_limit=True) as db:
        ns = db.namespace()
        assert ns._hot_put is None
        ns.put("k", b"v")
        with pytest.raises(engine.KVError) as info:
            ns.put("k", b"w")
        assert info.value.status == 429
        with pytest.raises(engine.KVError) as info:
            ns.delete("k")
        assert info.value.status == 429
        assert ns.get("k") == "v"


def test_a_deleted_namespace_handle_goes_to_the_live_one(db: engine.Store) -> None:
    old = db.namespace("ns")
    old.put("k", b"v")
    db.delete_namespace("ns")
    assert old._hot_get is None and old._hot_put is None
    assert old.get("k") is None
    old.put("k", b"w")  # the live namespace of that name
    assert db.namespace("ns").get("k") == "w"


def test_no_reference_is_leaked(kv: Namespace) -> None:
    key, value, text, kind = "refs", b"v" * 100, "t" * 100, "bytes"
    kv.put("with-meta", b"v", metadata={"m": 1}, expiration_ttl=600)
    hot = kv._hot_get
    watched = (key, value, text, kind, hot, engine.KeyInfo, None, True, False)
    before = [sys.getrefcount(o) for o in watched]
    for _ in range(1000):
        kv.put(key, value)
        kv.delete(key)
        kv.put(key, text)
        kv.get(key, kind)
        kv.get("missing", kind)
        page = kv.list()
    del page
    assert [sys.getrefcount(o) for o in watched] == before


def test_threads_share_a_namespace(kv: Namespace) -> None:
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(500):
                kv.put(f"{t}-{i}", f"{t}:{i}".encode())
                assert kv.get(f"{t}-{i}", "bytes") == f"{t}:{i}".encode()
                assert kv.get(f"{t}-{i + 1}-absent") is None
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(kv.list(limit=1000).keys) == 1000


def test_a_cached_record_is_served_without_the_file(tmp_path: Path) -> None:
    """The part of a get that keeps the GIL ends at the cache; the file read is the other part."""
    with engine.open(tmp_path / "db") as db:
        ns = db.namespace()
        ns.put("cached", b"c" * 100)
        ns.put("on-disk", b"d" * 100)
        for _ in range(2):  # the doorkeeper admits a record on its second read
            assert ns.get("cached", "bytes") == b"c" * 100
        hits = db.stats().read_cache.hits
        try:
            lib.kv_io_fault_set(lib.KV_IO_OP_READ, 1, errno.EIO, 1)
            assert ns.get("cached", "bytes") == b"c" * 100
            assert ns.get("absent", "bytes") is None
            with pytest.raises(EngineIOError) as info:
                ns.get("on-disk", "bytes")
            assert info.value.errno == errno.EIO
        finally:
            lib.kv_io_fault_set(0, 0, 0, 0)
        assert db.stats().read_cache.hits == hits + 1
        assert ns.get("on-disk", "bytes") == b"d" * 100


def deleted_segments_open() -> list[str]:
    fds = Path("/proc/self/fd")
    names = []
    for fd in fds.iterdir():
        try:
            target = str(fd.readlink())
        except OSError:  # closed since the listing
            continue
        if target.endswith(".seg (deleted)"):
            names.append(target)
    return names


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
@pytest.mark.timeout(120)  # a segment a read failed to let go would stall compaction
def test_reads_racing_writes_and_compaction_see_only_written_values(tmp_path: Path) -> None:
    """Gets that find the index lock taken wait for it; every read lets its segment go."""
    keys = [f"k{i:03d}" for i in range(200)]
    errors: list[BaseException] = []
    stop = threading.Event()
    with engine.open(tmp_path / "db", max_segment_bytes=1 << 16) as db:
        ns = db.namespace()
        for k in keys:
            ns.put(k, f"{k}:0".encode())

        def write() -> None:
            try:
                for round_ in range(1, 40):
                    ns.put_many([{"key": k, "value": f"{k}:{round_}"} for k in keys[::2]])
                    for k in keys[1::2]:
                        ns.put(k, f"{k}:{round_}".encode())
                    if round_ % 10 == 0:
                        db.compact()
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)
            finally:
                stop.set()

        def read() -> None:
            last = dict.fromkeys(keys, 0)
            try:
                while not stop.is_set():
                    for k in keys:
                        name, _, version = ns.get(k, "bytes").decode().partition(":")
                        assert name == k
                        assert int(version) >= last[k]  # never an older value than seen
                        last[k] = int(version)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in "ab")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        db.compact()
        assert deleted_segments_open() == []
        assert all(ns.get(k, "bytes") == f"{k}:39".encode() for k in keys)


def test_misuse_of_the_module_raises(kv: Namespace) -> None:
    hot = kv._hot_get
    with pytest.raises(TypeError, match="takes 3 arguments"):
        hotpath.put(hot, "k")
    with pytest.raises(TypeError, match="takes 2 arguments"):
        hotpath.delete(hot)
    with pytest.raises(TypeError, match="must be a Handle"):
        hotpath.delete(object(), "k")
    assert hotpath.delete(hot, b"k") is hotpath.SLOW
    with pytest.raises(TypeError, match="must be a Handle"):
        hotpath.get(object(), "k", "text")
    with pytest.raises(TypeError, match="takes 5 arguments"):
        hotpath.list(hot, b"", b"", 10)
    with pytest.raises(TypeError, match="prefix: bytes"):
        hotpath.list(hot, "", b"", 10, engine.KeyInfo)
    with pytest.raises(TypeError, match="cls: type"):
        hotpath.list(hot, b"", b"", 10, "KeyInfo")
    full = kv._prefix
    for limit in (0, 1001):  # the KV layer never asks for these: the general path answers
        assert hotpath.list(hot, full, b"", limit, engine.KeyInfo) is hotpath.SLOW
    assert hotpath.list(hot, b"", b"", 10, engine.KeyInfo) is hotpath.SLOW  # not its namespace
    assert hotpath.list(hot, full, b"", 10, object) is hotpath.SLOW  # no slots to fill
    assert hotpath.list(hot, full, b"", 10, engine.KeyInfo) == ([], False, False)
    owner = kv._log._db
    address = int(engine._ffi.ffi.cast("uintptr_t", owner))
    with pytest.raises(ValueError, match="prefix"):
        hotpath.Handle(owner, address, b"p" * 9, None, 512, 1)
    with pytest.raises(ValueError, match="max_key"):
        hotpath.Handle(owner, address, b"", None, 0, 1)
    with pytest.raises(TypeError, match="callable"):
        hotpath.Handle(owner, address, b"", 5, 512, 1)
    with pytest.raises(ValueError, match="NULL"):
        hotpath.Handle(owner, 0, b"", None, 512, 1)
    with pytest.raises(TypeError):
        hotpath.Handle(owner, "address", b"", None, 512, 1)
