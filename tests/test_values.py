"""Value types in and out of a namespace (DESIGN.md section 1, "Values in"), and TypeError texts."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine import ValueWithMetadata

BAD_VALUE = (
    "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values."
)


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[engine.Namespace]:
    with engine.open(tmp_path / "db") as db:
        yield db.namespace()


# -- in ---------------------------------------------------------------------------------


def test_str_is_stored_as_utf8(kv: engine.Namespace) -> None:
    kv.put("k", "héllo €\U0001f600")
    assert kv.get("k", "bytes") == "héllo €\U0001f600".encode()
    assert kv.get("k") == "héllo €\U0001f600"


def test_str_that_is_not_unicode_is_refused(kv: engine.Namespace) -> None:
    kv.put("k", "old")
    with pytest.raises(ValueError, match="value is not valid Unicode"):
        kv.put("k", "lone \ud800 surrogate")
    assert kv.get("k") == "old"


@pytest.mark.parametrize(
    "value",
    [b"\x00\xff", bytearray(b"\x00\xff"), memoryview(b"\x00\xff"), memoryview(b"x\x00\xffx")[1:3]],
    ids=["bytes", "bytearray", "memoryview", "memoryview-slice"],
)
def test_bytes_like_values_are_stored_exactly(kv: engine.Namespace, value: object) -> None:
    kv.put("k", value)
    assert kv.get("k", "bytes") == b"\x00\xff"


def test_bytearray_changed_after_put_does_not_change_the_value(kv: engine.Namespace) -> None:
    data = bytearray(b"before")
    kv.put("k", data)
    data[:] = b"after!"
    assert kv.get("k") == "before"


@pytest.mark.parametrize(
    "make",
    [
        lambda: io.BytesIO(b"abc" * 1000),
        lambda: iter([b"abc" * 500, b"", b"abc" * 500]),
        lambda: [b"abc" * 999, bytearray(b"abc")],
        lambda: (memoryview(b"abc") for _ in range(1000)),
        lambda: io.BufferedReader(io.BytesIO(b"abc" * 1000)),
    ],
    ids=["BytesIO", "iterator", "list-of-chunks", "generator-of-views", "BufferedReader"],
)
def test_file_likes_and_chunk_iterables_are_streams(kv: engine.Namespace, make: object) -> None:
    kv.put("k", make())  # type: ignore[operator]
    assert kv.get("k", "bytes") == b"abc" * 1000


def test_real_binary_file_is_a_stream(kv: engine.Namespace, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 4096)
    with src.open("rb") as f:
        kv.put("k", f)
    assert kv.get("k", "bytes") == bytes(range(256)) * 4096


def test_empty_stream_stores_empty_value(kv: engine.Namespace) -> None:
    kv.put("k", iter([]))
    assert kv.get("k", "bytes") == b""


@pytest.mark.parametrize("value", [{"a": 1}, None, 42, 4.2, True, object(), 1j])
def test_unsupported_types_raise_the_workers_text(kv: engine.Namespace, value: object) -> None:
    kv.put("k", "old")
    with pytest.raises(TypeError) as info:
        kv.put("k", value)
    assert str(info.value) == BAD_VALUE
    assert kv.get("k") == "old"


def test_text_mode_file_is_refused_and_nothing_written(kv: engine.Namespace) -> None:
    kv.put("k", "old")
    with pytest.raises(TypeError, match=r"must yield bytes, not str \(open files in binary mode\)"):
        kv.put("k", io.StringIO("text"))
    assert kv.get("k") == "old"


def test_iterable_of_non_bytes_is_refused(kv: engine.Namespace) -> None:
    kv.put("k", "old")
    with pytest.raises(TypeError, match="must yield bytes-like chunks, not int"):
        kv.put("k", [b"ok", 5])
    with pytest.raises(TypeError, match="must yield bytes, not str"):
        kv.put("k", ["a", "b"])
    assert kv.get("k") == "old"


def test_non_blocking_stream_is_refused(kv: engine.Namespace) -> None:
    class NothingReady:
        def read(self, n: int) -> None:
            return None

    with pytest.raises(TypeError, match="read\\(\\) returned None: streams must be blocking"):
        kv.put("k", NothingReady())
    assert kv.get("k") is None


def test_stream_that_fails_midway_writes_nothing(kv: engine.Namespace) -> None:
    kv.put("k", "old")

    def chunks() -> Iterator[bytes]:
        yield b"x" * (3 << 20)  # past the in-memory threshold: into a spool file
        raise OSError("source went away")

    with pytest.raises(OSError, match="source went away"):
        kv.put("k", chunks())
    assert kv.get("k") == "old"
    assert not [p for p in Path(kv._store.path).iterdir() if p.name.startswith("spool-")]


# -- other argument types ---------------------------------------------------------------


@pytest.mark.parametrize("key", [1, b"k", None, ["k"]])
def test_non_str_key_is_a_type_error(kv: engine.Namespace, key: object) -> None:
    for call in (
        lambda: kv.put(key, "v"),  # type: ignore[arg-type]
        lambda: kv.get(key),  # type: ignore[arg-type]
        lambda: kv.get_with_metadata(key),  # type: ignore[arg-type]
        lambda: kv.delete(key),  # type: ignore[arg-type]
        lambda: kv.get_many([key]),  # type: ignore[list-item]
        lambda: kv.put_many([{"key": key, "value": "v"}]),
        lambda: kv.delete_many([key]),  # type: ignore[list-item]
    ):
        with pytest.raises(TypeError, match=r"must be (a )?str"):
            call()


def test_key_that_is_not_unicode_is_refused(kv: engine.Namespace) -> None:
    with pytest.raises(ValueError, match="key is not valid Unicode"):
        kv.put("\udcff", "v")


def test_a_str_where_a_list_of_keys_is_expected_is_refused(kv: engine.Namespace) -> None:
    with pytest.raises(TypeError, match="not a str"):
        kv.get_many("abc")
    with pytest.raises(TypeError, match="not a str"):
        kv.delete_many("abc")


@pytest.mark.parametrize(
    ("meta", "why"),
    [
        ({1, 2}, "not JSON serializable"),
        (math.nan, "not JSON serializable"),
        ({"x": math.inf}, "not JSON serializable"),
        (b"bytes", "not JSON serializable"),
    ],
)
def test_metadata_that_is_not_json_is_a_type_error(
    kv: engine.Namespace, meta: object, why: str
) -> None:
    with pytest.raises(TypeError, match=why):
        kv.put("k", "v", metadata=meta)
    assert kv.get("k") is None


def test_circular_metadata_is_a_type_error(kv: engine.Namespace) -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(TypeError, match="metadata is not JSON serializable"):
        kv.put("k", "v", metadata=loop)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda kv: kv.list(prefix=5), "prefix"),
        (lambda kv: kv.list(cursor=5), "cursor"),
        (lambda kv: kv.list(limit="10"), "limit"),
        (lambda kv: kv.list(limit=True), "limit"),
        (lambda kv: kv.get("k", cache_ttl="30"), "cache_ttl"),
        (lambda kv: kv.put("k", "v", expiration="1"), "expiration"),
    ],
)
def test_wrong_option_types_name_the_option(kv: engine.Namespace, call: object, name: str) -> None:
    with pytest.raises(TypeError, match=name):
        call(kv)  # type: ignore[operator]


# -- out --------------------------------------------------------------------------------


def test_text_of_invalid_utf8_uses_replacement_characters(kv: engine.Namespace) -> None:
    kv.put("k", b"ok \xff\xfe end")
    assert kv.get("k") == "ok \ufffd\ufffd end"


def test_json_of_every_json_type(kv: engine.Namespace) -> None:
    doc = {"s": "ü€", "n": -1.25e3, "i": 10**20, "b": False, "z": None, "l": [[], {}]}
    kv.put("k", json.dumps(doc))
    assert kv.get("k", "json") == doc
    kv.put("null", "null")
    assert kv.get("null", "json") is None  # as in Workers: indistinguishable from a miss


def test_bytes_and_array_buffer_are_the_same(kv: engine.Namespace) -> None:
    kv.put("k", b"\x80")
    assert kv.get("k", "bytes") == kv.get("k", "arrayBuffer") == b"\x80"
    assert isinstance(kv.get("k", "bytes"), bytes)


def test_stream_is_a_binary_file_object(kv: engine.Namespace) -> None:
    data = b"line one\nline two\n" + bytes(range(256))
    kv.put("k", data, metadata={"m": 1})
    with kv.get("k", "stream") as stream:
        assert stream.readable()
        assert stream.read(4) == b"line"
        assert stream.tell() == 4
        assert stream.read() == data[4:]
        assert stream.read() == b""
        stream.seek(0)
        assert next(iter(stream)) == b"line one\n"
    assert stream.closed
    got = kv.get_with_metadata("k", "stream")
    try:
        assert got.metadata == {"m": 1}
        assert got.value.read() == data
    finally:
        got.value.close()


def test_stream_of_missing_key_is_none(kv: engine.Namespace) -> None:
    assert kv.get("nope", "stream") is None
    assert kv.get_with_metadata("nope", "stream") == ValueWithMetadata(None, None)


def test_open_stream_keeps_the_value_it_opened(kv: engine.Namespace) -> None:
    kv.put("k", b"first")
    with kv.get("k", "stream") as stream:
        kv.put("k", b"second")
        kv.delete("k")
        assert stream.read() == b"first"


def test_metadata_with_a_lone_surrogate_is_escaped_as_json_stringify_does(
    kv: engine.Namespace,
) -> None:
    kv.put("k", "v", metadata={"s": "a\ud800\\"})
    assert kv.get_with_metadata("k").metadata == {"s": "a\ud800\\"}
    # '"' + 1018 x "x" + '\ud800' (6 bytes as an escape) + '"' = 1026 bytes
    with pytest.raises(engine.KVError, match="Metadata length of 1026 exceeds limit of 1024"):
        kv.put("k", "v", metadata="x" * 1018 + "\ud800")
