"""C return codes become exceptions in one place, engine/_ffi.py (STYLE: LMDB-style codes).

* Every KV_E* code of csrc/kv_error.h maps to exactly one exception class, and every
  class that names a code names one that exists.
* A positive code is an errno: EngineIOError (an OSError) with that errno and the file.
* Each error is raised by the engine in the situation it names.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from pathlib import Path

import oracle_format as fmt
import pytest

import engine
from engine._ffi import lib, raise_error, strerror
from engine.errors import (
    CODED_ERRORS,
    CorruptionError,
    EngineError,
    EngineIOError,
    FormatVersionError,
    InvalidArgumentError,
    LimitError,
    ReadOnlyError,
    StoreClosedError,
    StoreFailedError,
    StoreLockedError,
)
from engine.storage import LogStore

KV_ERROR_H = (Path(__file__).resolve().parent.parent / "csrc" / "kv_error.h").read_text()
CODES = {name: int(v) for name, v in re.findall(r"#define (KV_E\w+)\s+(-\d+)", KV_ERROR_H)}


def test_header_codes_are_distinct_and_exposed() -> None:
    assert len(CODES) >= 11
    assert len(set(CODES.values())) == len(CODES)
    assert {name: getattr(lib, name) for name in CODES} == CODES
    assert lib.KV_OK == 0


def test_every_code_maps_to_exactly_one_class() -> None:
    assert sorted(cls.C_NAME or "" for cls in CODED_ERRORS) == sorted(CODES)
    for name, code in CODES.items():
        with pytest.raises(EngineError) as info:
            raise_error(code, "op", "/some/file", 64)
        raised = info.value
        owners = [cls for cls in CODED_ERRORS if isinstance(raised, cls)]
        assert owners == [type(raised)], name
        assert name == type(raised).C_NAME
        assert strerror(code) in str(raised)


def test_code_texts_are_distinct() -> None:
    texts = [strerror(code) for code in CODES.values()]
    assert all(texts) and len(set(texts)) == len(texts)
    assert strerror(0)
    assert strerror(-999)  # an unknown code still gets a text, not a crash


@pytest.mark.parametrize("code", [errno.ENOENT, errno.ENOSPC, errno.EIO, errno.EACCES, errno.ELOOP])
def test_positive_codes_are_io_errors_with_errno(code: int) -> None:
    with pytest.raises(EngineIOError) as info:
        raise_error(code, "put", "/store/0000000000000001.seg")
    assert isinstance(info.value, OSError)
    assert info.value.errno == code
    assert info.value.filename == "/store/0000000000000001.seg"
    assert os.strerror(code) in str(info.value)


def test_corruption_error_names_file_and_offset() -> None:
    with pytest.raises(CorruptionError) as info:
        raise_error(lib.KV_ECORRUPT, "get", "/store/0000000000000002.seg", 4096)
    assert (info.value.path, info.value.offset) == ("/store/0000000000000002.seg", 4096)
    assert "0000000000000002.seg" in str(info.value) and "4096" in str(info.value)


def test_public_errors_derive_from_engine_error() -> None:
    for name in [
        "KVError",
        "StoreLockedError",
        "ReadOnlyError",
        "CorruptionError",
        "StoreClosedError",
        "StoreFailedError",
        "FormatVersionError",
        "EngineIOError",
    ]:
        assert issubclass(getattr(engine, name), engine.EngineError), name


# -- raised where they belong ------------------------------------------------------------
@pytest.fixture
def faults() -> Iterator[None]:
    yield
    lib.kv_io_fault_set(0, 0, 0, 0)


def test_limits(log_store: LogStore) -> None:
    with pytest.raises(LimitError):
        log_store.put(b"k" * (fmt.MAX_KEY + 1), b"v")
    with pytest.raises(LimitError):
        log_store.put(b"k", b"v", meta=b"m" * (fmt.MAX_META + 1))
    big = bytearray(fmt.MAX_VALUE + 1)
    with pytest.raises(LimitError):
        log_store.put(b"k", memoryview(big))
    assert log_store.get(b"k", 0) is None
    assert log_store.stats(0)["writes"] == 0


def test_invalid_options(store_path: Path) -> None:
    with pytest.raises(InvalidArgumentError):
        LogStore(store_path, max_segment_bytes=100)
    with pytest.raises(ValueError):
        LogStore(store_path, sync="sometimes")


def test_closed_store(store_path: Path) -> None:
    store = LogStore(store_path)
    store.close()
    for call in (
        lambda: store.get(b"k", 0),
        lambda: store.put(b"k", b"v"),
        lambda: store.delete(b"k"),
        lambda: store.list(b"", b"", 0, 10),
        lambda: store.stats(0),
    ):
        with pytest.raises(StoreClosedError):
            call()
    store.close()  # closing twice is harmless


def test_locked_and_readonly(store_path: Path, log_store: LogStore) -> None:
    with pytest.raises(StoreLockedError):
        LogStore(store_path)
    ro = LogStore(store_path, readonly=True)
    try:
        with pytest.raises(ReadOnlyError):
            ro.put(b"k", b"v")
    finally:
        ro.close()


def test_unknown_format_version(store_path: Path) -> None:
    store_path.mkdir()
    (store_path / fmt.segment_file_name(1)).write_bytes(fmt.encode_segment_header(1, version=2))
    with pytest.raises(FormatVersionError):
        LogStore(store_path)
    with pytest.raises(FormatVersionError):
        LogStore(store_path, readonly=True)


def test_store_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"")
    with pytest.raises(EngineIOError) as info:
        LogStore(path)
    assert info.value.errno in (errno.ENOTDIR, errno.EEXIST)


def test_failed_write_is_not_acknowledged(store_path: Path, faults: None) -> None:
    store = LogStore(store_path)
    try:
        store.put(b"before", b"b")
        lib.kv_io_fault_set(lib.KV_IO_OP_WRITE, 1, errno.ENOSPC, 0)
        with pytest.raises(EngineIOError) as info:
            store.put(b"lost", b"x" * 100)
        assert info.value.errno == errno.ENOSPC
        assert store.get(b"lost", 0) is None
        store.put(b"after", b"a")  # the handle goes on: the failed record was cut off
    finally:
        store.close()
    store = LogStore(store_path)
    try:
        assert store.damage() == []
        assert store.get(b"lost", 0) is None
        assert store.get(b"after", 0).value == b"a"
    finally:
        store.close()


def test_failed_sync_stops_the_handle(store_path: Path, faults: None) -> None:
    store = LogStore(store_path, sync="always")
    try:
        store.put(b"before", b"b")
        lib.kv_io_fault_set(lib.KV_IO_OP_SYNC, 1, errno.EIO, 0)
        with pytest.raises(EngineIOError) as info:
            store.put(b"unsure", b"u")
        assert info.value.errno == errno.EIO
        with pytest.raises(StoreFailedError):
            store.put(b"next", b"n")
        with pytest.raises(StoreFailedError):
            store.sync()
        assert store.get(b"before", 0).value == b"b"  # reads still work
    finally:
        store.close()
    store = LogStore(store_path)  # reopening recovers from what is on disk
    try:
        assert store.get(b"before", 0).value == b"b"
        assert store.get(b"next", 0) is None
        store.put(b"next", b"n")
    finally:
        store.close()


def test_corrupt_value_on_read(store_path: Path) -> None:
    store = LogStore(store_path)
    store.put(b"victim", b"v" * 64)
    store.put(b"bystander", b"fine")
    store.close()
    (seg,) = store_path.glob("*.seg")
    data = bytearray(seg.read_bytes())
    victim = fmt.scan_segment(bytes(data)).valid[0]
    data[victim.offset + victim.size - 1] ^= 0xFF
    seg.write_bytes(bytes(data))
    store = LogStore(store_path)
    try:
        with pytest.raises(CorruptionError) as info:
            store.get(b"victim", 0)
        assert info.value.path == str(seg)
        assert info.value.offset == victim.offset
        assert store.get(b"bystander", 0).value == b"fine"
    finally:
        store.close()
