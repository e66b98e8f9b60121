"""Values in and out of a namespace: the Python forms of Workers KV's value types.

In: ``str`` (stored as UTF-8), bytes-like objects (Workers' ArrayBuffer and
ArrayBufferView), binary file-like objects and iterables of bytes chunks
(Workers' ReadableStream).  Out: text, parsed JSON, bytes, or a stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from engine.storage import ValueStream
from engine.validate import BAD_VALUE_TYPE

STREAM_CHUNK = 1 << 20


def as_buffer(value: Any) -> bytes | memoryview | None:
    """The bytes of an in-memory value, or None when value is a stream.

    Raises:
        TypeError: value is of no accepted type.
        ValueError: a str that cannot be encoded as UTF-8 (a lone surrogate).
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        try:
            return str.encode(value)
        except UnicodeEncodeError as exc:
            raise ValueError(f"value is not valid Unicode: {exc.reason}") from None
    if isinstance(value, Mapping) or value is None or isinstance(value, int | float):
        raise TypeError(BAD_VALUE_TYPE)
    try:
        view = memoryview(value)
    except TypeError:
        if callable(getattr(value, "read", None)) or isinstance(value, Iterable):
            return None
        raise TypeError(BAD_VALUE_TYPE) from None
    # A view of another item size or a non-contiguous slice: its bytes, in order.
    if view.contiguous and view.itemsize == 1 and view.ndim == 1:
        return view
    return view.tobytes()


def stream_chunks(value: Any) -> Iterator[bytes]:
    """The chunks of a streamed value (a binary file-like object or an iterable of bytes)."""
    read = getattr(value, "read", None)
    if callable(read):
        while True:
            chunk = read(STREAM_CHUNK)
            if not chunk:
                if chunk is None:  # a non-blocking file with nothing ready
                    raise TypeError("value's read() returned None: streams must be blocking")
                return
            yield _chunk_bytes(chunk)
    else:
        for chunk in value:
            yield _chunk_bytes(chunk)


def _chunk_bytes(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        raise TypeError("a streamed value must yield bytes, not str (open files in binary mode)")
    try:
        return memoryview(chunk).tobytes()
    except TypeError:
        raise TypeError(
            f"a streamed value must yield bytes-like chunks, not {type(chunk).__name__}"
        ) from None


def decode(raw: bytes, kind: str) -> Any:
    """A stored value in the form get(type=kind) returns ("stream" is handled apart)."""
    if kind == "text":
        # Workers' text() decodes with replacement characters, never failing.
        return raw.decode(errors="replace")
    if kind == "json":
        return json.loads(raw.decode(errors="replace"))
    return raw  # "bytes" / "arrayBuffer"


def decode_metadata(raw: bytes | None) -> Any:
    return None if raw is None else json.loads(raw)


__all__ = ["STREAM_CHUNK", "ValueStream", "as_buffer", "decode", "decode_metadata", "stream_chunks"]
