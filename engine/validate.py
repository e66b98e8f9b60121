"""Workers KV's limits and argument rules, with its exact error texts.

Every rule a Workers KV namespace enforces on its write and read paths lives
here, so that the KV layer (engine/kv.py) only decides *when* to check and
the texts stay in one place.  The texts are those of workerd's binding and of
the KV service as Miniflare reproduces them (shared/workers-kv-spec.md,
section 3); the numbers are Workers KV's published limits.
"""

from __future__ import annotations

import json
import math
from typing import Any, NoReturn

from engine.errors import KVError

MAX_KEY_BYTES = 512
MAX_VALUE_BYTES = 25 * 1024 * 1024  # 26,214,400
MAX_METADATA_BYTES = 1024
MIN_EXPIRATION_TTL = 60
MIN_CACHE_TTL = 30
MAX_LIST_LIMIT = 1000
MAX_GET_MANY_KEYS = 100
MAX_GET_MANY_BYTES = 25 * 1024 * 1024
MAX_BULK_PAIRS = 10_000
MAX_BULK_BYTES = 100_000_000  # a bulk write must stay under this many bytes
MAX_BULK_DELETE_KEYS = 10_000
# The index keeps expirations as 32-bit seconds (csrc/kv_index.h), which reach
# 2106-02-07: later ones would be reported and applied wrongly, so they are refused.
MAX_EXPIRATION = 2**32 - 1

GET_TYPES = frozenset({"text", "json", "bytes", "arrayBuffer", "stream"})
GET_MANY_TYPES = frozenset({"text", "json"})

UNKNOWN_TYPE = (
    'Unknown response type. Possible types are "text", "arrayBuffer", "json", and "stream".'
)
BAD_VALUE_TYPE = (
    "KV put() accepts only strings, ArrayBuffers, ArrayBufferViews, and ReadableStreams as values."
)


def fail(op: str, status: int, text: str) -> NoReturn:
    """Raises what the KV service answers: ``KV <op> failed: <status> <text>``."""
    raise KVError(status, f"KV {op} failed: {status} {text}")


def key_bytes(key: Any, op: str) -> bytes:
    """The UTF-8 bytes of a single-key operation's key, checked as workerd does.

    Raises:
        TypeError: key is not a str.
        ValueError: key is empty, ".", ".." or not encodable as UTF-8.
        KVError: 414 when the key is longer than 512 UTF-8 bytes.
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, not {type(key).__name__}")
    if not key or key == "." or key == "..":
        if not key:
            raise ValueError("Key name cannot be empty.")
        raise ValueError(f'"{key}" is not allowed as a key name.')
    try:
        raw = key.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"key is not valid Unicode: {exc.reason}") from None
    if len(raw) > MAX_KEY_BYTES:
        key_too_long(op, len(raw))
    return raw


def key_too_long(op: str, length: int) -> NoReturn:
    fail(op, 414, f"UTF-8 encoded length of {length} exceeds key length limit of {MAX_KEY_BYTES}.")


def bulk_key_bytes(key: Any) -> bytes:
    """A key of get_many, checked as the KV service checks bulk reads."""
    if not isinstance(key, str):
        raise TypeError(f"keys must be str, not {type(key).__name__}")
    if not key:
        fail("GET_BULK", 400, "Key names must not be empty")
    if key == "." or key == "..":
        fail("GET_BULK", 400, f'Illegal key name "{key}". Please use a different name.')
    try:
        raw = key.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"key is not valid Unicode: {exc.reason}") from None
    if len(raw) > MAX_KEY_BYTES:
        key_too_long("GET_BULK", len(raw))
    return raw


def integer(name: str, value: Any) -> int:
    """A numeric option as an int: floats are truncated toward zero.

    JavaScript's coercions (numeric strings, NaN to 0, the int32 range) are not
    copied: in Python a wrong type is a TypeError.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, not {type(value).__name__}")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{name} must be a finite number, not {value}")
        return int(value)  # truncates toward zero, as workerd does
    return int(value)


def expiration_at(expiration: Any, expiration_ttl: Any, now: float) -> int:
    """The absolute expiration a put stores (0 = never), validated as Workers KV does.

    The TTL wins when both are given, and the expiration is then not validated.
    """
    now_s = math.floor(now)
    if expiration_ttl is not None:
        ttl = integer("expiration_ttl", expiration_ttl)
        if ttl <= 0:
            fail(
                "PUT",
                400,
                f"Invalid expiration_ttl of {ttl}. Please specify integer greater than 0.",
            )
        if ttl < MIN_EXPIRATION_TTL:
            fail(
                "PUT",
                400,
                f"Invalid expiration_ttl of {ttl}. "
                f"Expiration TTL must be at least {MIN_EXPIRATION_TTL}.",
            )
        return storable_expiration("expiration_ttl", ttl, now_s + ttl)
    if expiration is None:
        return 0
    exp = integer("expiration", expiration)
    if exp <= now_s:
        fail(
            "PUT",
            400,
            f"Invalid expiration of {exp}. Please specify integer greater than the current "
            "number of seconds since the UNIX epoch.",
        )
    if exp < now_s + MIN_EXPIRATION_TTL:
        fail(
            "PUT",
            400,
            f"Invalid expiration of {exp}. Expiration times must be at least "
            f"{MIN_EXPIRATION_TTL} seconds in the future.",
        )
    return storable_expiration("expiration", exp, exp)


def storable_expiration(name: str, given: int, expiration: int) -> int:
    """expiration, when the store can hold it (JavaScript's int32 limit is not copied).

    Raises:
        TypeError: as workerd's "Value out of range" for a number it cannot hold.
    """
    if expiration > MAX_EXPIRATION:
        raise TypeError(
            f"{name} of {given} is out of range: expirations must be at most "
            f"{MAX_EXPIRATION} (2106-02-07)"
        )
    return expiration


def metadata_bytes(metadata: Any) -> bytes:
    """Metadata as the compact JSON JavaScript's JSON.stringify writes; b"" for None."""
    if metadata is None:
        return b""
    try:
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError as exc:  # NaN / Infinity, circular references
        raise TypeError(f"metadata is not JSON serializable: {exc}") from None
    # A lone surrogate can only stand inside a JSON string; JSON.stringify writes it as
    # a \uXXXX escape, which is exactly what backslashreplace writes.
    raw = text.encode(errors="backslashreplace")
    if len(raw) > MAX_METADATA_BYTES:
        fail("PUT", 413, f"Metadata length of {len(raw)} exceeds limit of {MAX_METADATA_BYTES}.")
    return raw


def value_too_large(length: int) -> NoReturn:
    fail("PUT", 413, f"Value length of {length} exceeds limit of {MAX_VALUE_BYTES}.")


def cache_ttl(value: Any, op: str) -> None:
    """cache_ttl is validated as Workers KV does, then has no effect (one location)."""
    if value is None:
        return
    ttl = integer("cache_ttl", value)
    if ttl < MIN_CACHE_TTL:
        fail(op, 400, f"Invalid cache_ttl of {ttl}. Cache TTL must be at least {MIN_CACHE_TTL}.")


def list_limit(limit: Any) -> int:
    """0, negative or None mean the default of 1000; above 1000 is refused (Workers' text, sic)."""
    if limit is None:
        return MAX_LIST_LIMIT
    n = integer("limit", limit)
    if n <= 0:
        return MAX_LIST_LIMIT
    if n > MAX_LIST_LIMIT:
        fail(
            "GET",
            400,
            f"Invalid key_count_limit of {n}. "
            f"Please specify an integer less than {MAX_LIST_LIMIT}.",
        )
    return n


def list_prefix(prefix: Any) -> bytes:
    if prefix is None:
        return b""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
    raw = prefix.encode()
    if len(raw) > MAX_KEY_BYTES:
        key_too_long("GET", len(raw))
    return raw


__all__ = [
    "BAD_VALUE_TYPE",
    "GET_MANY_TYPES",
    "GET_TYPES",
    "MAX_BULK_BYTES",
    "MAX_BULK_DELETE_KEYS",
    "MAX_BULK_PAIRS",
    "MAX_EXPIRATION",
    "MAX_GET_MANY_BYTES",
    "MAX_GET_MANY_KEYS",
    "MAX_KEY_BYTES",
    "MAX_LIST_LIMIT",
    "MAX_METADATA_BYTES",
    "MAX_VALUE_BYTES",
    "UNKNOWN_TYPE",
    "bulk_key_bytes",
    "cache_ttl",
    "expiration_at",
    "fail",
    "integer",
    "key_bytes",
    "key_too_long",
    "list_limit",
    "list_prefix",
    "metadata_bytes",
    "storable_expiration",
    "value_too_large",
]
