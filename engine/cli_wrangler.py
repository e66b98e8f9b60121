"""wrangler's bulk JSON files: reading ``kv bulk put`` / ``kv bulk delete`` input, and
writing a namespace as bulk files (``kvengine export``).

A bulk put file is a JSON array of ``{key, value, expiration?, expiration_ttl?,
metadata?, base64?}`` objects; a bulk delete file an array of key strings or of
``{name}`` objects (so ``kvengine list --json`` output can be fed back).  The
shape checks and their messages follow wrangler's (``isKVKeyValue``); the
values themselves are checked by Namespace.put_many, which writes nothing when
any item is refused.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from engine.validate import MAX_BULK_BYTES, MAX_BULK_PAIRS

MAX_LISTED_PROBLEMS = 12  # wrangler lists this many invalid items, then "..."
KEY_VALUE_INTERFACE = (
    "interface KeyValue {\n"
    "  key: string;\n"
    "  value: string;\n"
    "  expiration?: number;\n"
    "  expiration_ttl?: number;\n"
    "  metadata?: object;\n"
    "  base64?: boolean;\n"
    "}"
)
_FIELDS = ("key", "value", "expiration", "expiration_ttl", "metadata", "base64")
_SHOWN_ITEM_CHARS = 200  # an invalid item is quoted, but a 25 MiB value is not


class BulkFileError(Exception):
    """A bulk file that cannot be used; the message may span several lines."""


def js_type(value: Any) -> str:
    """JavaScript's typeof of a parsed JSON value, as wrangler's messages name it."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"  # dict, list and null alike


def _shown(item: Any) -> str:
    text = json.dumps(item)
    if len(text) > _SHOWN_ITEM_CHARS:
        return text[:_SHOWN_ITEM_CHARS] + "..."
    return text


def read_json(path: str) -> Any:
    """The parsed content of a JSON file.

    Raises:
        BulkFileError: the file is not valid UTF-8 JSON.
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise BulkFileError(
            f'Failed to parse "{path}": {exc.msg} at line {exc.lineno} column {exc.colno}.'
        ) from None
    except UnicodeDecodeError:
        raise BulkFileError(f'Failed to parse "{path}": the file is not UTF-8 text.') from None


def _is_key_value(item: Any) -> bool:
    def typed(name: str, kinds: tuple[type, ...], required: bool = False) -> bool:
        if name not in item:
            return not required
        value = item[name]
        if bool not in kinds and isinstance(value, bool):
            return False
        return isinstance(value, kinds)

    return (
        isinstance(item, dict)
        and typed("key", (str,), True)
        and typed("value", (str,), True)
        and typed("expiration", (int, float))
        and typed("expiration_ttl", (int, float))
        and typed("base64", (bool,))
        # Any JSON value is accepted as metadata, as the Workers binding and the
        # REST API accept it (wrangler's own check asks for an object).
    )


def _with_overflow(lines: list[str]) -> list[str]:
    if len(lines) > MAX_LISTED_PROBLEMS:
        return [*lines[:MAX_LISTED_PROBLEMS], "..."]
    return lines


def read_pairs(path: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The items of a bulk put file and warnings about unexpected properties.

    Raises:
        BulkFileError: not JSON, not an array, more than 10,000 items, or items
            of the wrong shape (listed by index, as wrangler does).
    """
    content = read_json(path)
    if not isinstance(content, list):
        raise BulkFileError(
            f'Unexpected JSON input from "{path}".\n'
            f'Expected an array of key-value objects but got type "{js_type(content)}".'
        )
    if len(content) > MAX_BULK_PAIRS:
        raise BulkFileError(
            f'"{path}" holds {len(content)} pairs; a bulk write takes at most '
            f"{MAX_BULK_PAIRS}. Split it into several files (kvengine export writes such files)."
        )
    errors = []
    unexpected = []
    for index, item in enumerate(content):
        if not _is_key_value(item):
            errors.append(f"The item at index {index} is {_shown(item)}")
            continue
        extra = [name for name in item if name not in _FIELDS]
        if extra:
            unexpected.append(
                f"The item at index {index} contains unexpected properties: {json.dumps(extra)}."
            )
    if errors:
        raise BulkFileError(
            f'Unexpected JSON input from "{path}".\n'
            "Each item in the array should be an object that matches:\n\n"
            f"{KEY_VALUE_INTERFACE}\n\n" + "\n".join(_with_overflow(errors))
        )
    warnings = []
    if unexpected:
        warnings.append(
            f'Unexpected key-value properties in "{path}".\n'
            + "\n".join(_with_overflow(unexpected))
        )
    return content, warnings


def read_delete_keys(path: str) -> list[str]:
    """The keys of a bulk delete file: an array of strings or of {"name": ...} objects.

    Raises:
        BulkFileError: not JSON, not an array, or items that name no key.
    """
    content = read_json(path)
    if not isinstance(content, list):
        raise BulkFileError(
            f'Unexpected JSON input from "{path}".\n'
            f'Expected an array of strings but got type "{js_type(content)}".'
        )
    keys = []
    errors = []
    for index, item in enumerate(content):
        key = item.get("name") if isinstance(item, dict) else item
        if not isinstance(key, str):
            errors.append(f'The item at index {index} is type: "{js_type(item)}" - {_shown(item)}')
            continue
        keys.append(key)
    if errors:
        raise BulkFileError(
            f'Unexpected JSON input from "{path}".\n'
            'Expected an array of strings or objects with a "name" key.\n'
            + "\n".join(_with_overflow(errors))
        )
    return keys


def export_item(name: str, value: bytes, expiration: int | None, metadata: Any) -> dict[str, Any]:
    """One key as a bulk item: UTF-8 values as text, any other bytes as base64;
    the expiration absolute; metadata as stored."""
    item: dict[str, Any] = {"key": name}
    try:
        item["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        item["value"] = base64.b64encode(value).decode("ascii")
        item["base64"] = True
    if expiration:
        item["expiration"] = expiration
    if metadata is not None:
        item["metadata"] = metadata
    return item


class ExportWriter:
    """Writes bulk items into numbered files ``<stem>-0001.json``, ... in out_dir.

    Each file holds at most max_pairs items and fewer than max_bytes bytes, so
    that each is one valid bulk write (10,000 pairs, 100 MB).  File names come
    from stem and a counter only, never from keys; files are created new
    (O_EXCL, O_NOFOLLOW), so an existing file or a planted link is never written through.
    """

    def __init__(
        self,
        out_dir: str,
        stem: str,
        *,
        max_pairs: int = MAX_BULK_PAIRS,
        max_bytes: int = MAX_BULK_BYTES,
    ) -> None:
        if os.path.basename(stem) != stem or stem in ("", ".", ".."):
            raise ValueError(f"invalid export file stem {stem!r}")
        self.out_dir = out_dir
        self.stem = stem
        self.max_pairs = max_pairs
        self.max_bytes = max_bytes
        self.files: list[str] = []
        self.pairs = 0
        self._fd: int | None = None
        self._count = 0
        self._size = 0

    _OPEN = b"[\n"
    _SEP = b",\n"
    _CLOSE = b"\n]\n"

    def add(self, item: dict[str, Any]) -> None:
        data = json.dumps(item, ensure_ascii=False).encode("utf-8")
        room = len(self._SEP) + len(data) + len(self._CLOSE)
        if self._fd is not None and (
            self._count >= self.max_pairs or self._size + room >= self.max_bytes
        ):
            self._finish()
        if self._fd is None:
            self._start()
        if len(self._OPEN) + len(data) + len(self._CLOSE) >= self.max_bytes:
            raise ValueError(f"key {item['key']!r} does not fit in a bulk file")
        self._write((self._SEP if self._count else b"") + data)
        self._count += 1
        self.pairs += 1

    def close(self) -> list[str]:
        """Finishes the last file; returns every file written."""
        if self._fd is not None:
            self._finish()
        return self.files

    def _start(self) -> None:
        path = os.path.join(self.out_dir, f"{self.stem}-{len(self.files) + 1:04d}.json")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        self.files.append(path)
        self._count = 0
        self._size = 0
        self._write(self._OPEN)

    def _finish(self) -> None:
        assert self._fd is not None
        try:
            self._write(self._CLOSE)
            os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._size += len(data)


__all__ = [
    "KEY_VALUE_INTERFACE",
    "BulkFileError",
    "ExportWriter",
    "export_item",
    "js_type",
    "read_delete_keys",
    "read_json",
    "read_pairs",
]
