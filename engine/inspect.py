"""Read-only inspection of segment files: the Python face of csrc/kv_inspect.c.

The C core decodes the file (the same scanner recovery uses, so inspection
and recovery agree about what a file holds); this module only turns its items
into Python objects and finds the segment and hint files of a store directory.
Nothing here takes the store's lock or writes: it runs beside a writer, and
sees each file as it was when it opened it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine._ffi import check, ffi, lib

RECORD_TYPES = {1: "PUT", 2: "DELETE", 3: "EXPIRE", 4: "BATCH_COMMIT"}
_KINDS = {
    lib.KV_INSPECT_RECORD: "record",
    lib.KV_INSPECT_DAMAGED: "damaged",
    lib.KV_INSPECT_REGION: "region",
    lib.KV_INSPECT_TAIL: "tail",
}
_SEGMENT_NAME = re.compile(r"[0-9a-f]{16}\.seg")
_HINT_NAME = re.compile(r"([0-9a-f]{16})\.hint")
SEGMENT_HEADER_BYTES = 64  # docs/FORMAT.md section 2
_BATCH_FLAG = 0x1
_COMPACTED_FLAG = 0x1


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """A segment file's header as read when the inspector opened it.

    ``valid`` is False for a file shorter than a header or with a bad magic,
    checksum or id; its records are still scanned.
    """

    path: str
    id: int
    size: int
    valid: bool
    version: int
    flags: int
    seq_floor: int
    created_ns: int

    @property
    def compacted(self) -> bool:
        return bool(self.flags & _COMPACTED_FLAG)


@dataclass(frozen=True, slots=True)
class SegmentItem:
    """One record or damaged place of a segment, in file order.

    ``kind``: ``"record"`` (both checksums match), ``"damaged"`` (header, key
    and metadata vouched for by their checksum, the value's checksum failed),
    ``"region"`` (bytes holding no valid record, valid ones follow) or
    ``"tail"`` (bytes holding no valid record up to the end of the file).
    The record fields are zero / empty for regions and tails.
    """

    offset: int
    end: int
    kind: str
    type: str | None
    batch: bool
    seq: int
    expiration: int
    key: bytes
    meta: bytes
    value_len: int
    check: int

    @property
    def checksum_ok(self) -> bool:
        return self.kind == "record"

    @property
    def size(self) -> int:
        return self.end - self.offset


class SegmentInspector:
    """Iterates the items of one segment file, opened read-only (O_NOFOLLOW, no lock).

    Raises (at construction):
        InvalidArgumentError: the file name is not ``<16 hex digits>.seg``.
        FormatVersionError: the header is valid but of another format version.
        EngineIOError: the file cannot be opened (missing, a symbolic link, ...).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        out = ffi.new("kv_inspect **")
        hdr = ffi.new("kv_inspect_header *")
        check(lib.kv_inspect_open(os.fsencode(self.path), out, hdr), "inspect", self.path)
        self._handle: Any = ffi.gc(out[0], lib.kv_inspect_close)
        self.header = SegmentHeader(
            path=self.path,
            id=int(hdr.id),
            size=int(hdr.size),
            valid=hdr.status == 0,
            version=int(hdr.version),
            flags=int(hdr.flags),
            seq_floor=int(hdr.seq_floor),
            created_ns=int(hdr.created_ns),
        )

    def __enter__(self) -> SegmentInspector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            ffi.release(handle)

    def __iter__(self) -> Iterator[SegmentItem]:
        item = ffi.new("kv_inspect_item *")
        done = ffi.new("int *")
        while self._handle is not None:
            check(lib.kv_inspect_next(self._handle, item, done), "inspect", self.path)
            if done[0]:
                return
            record = item.kind in (lib.KV_INSPECT_RECORD, lib.KV_INSPECT_DAMAGED)
            yield SegmentItem(
                offset=int(item.offset),
                end=int(item.end),
                kind=_KINDS[item.kind],
                type=RECORD_TYPES.get(item.type) if record else None,
                batch=bool(item.flags & _BATCH_FLAG),
                seq=int(item.seq),
                expiration=int(item.expiration),
                key=ffi.buffer(item.key, item.klen)[:] if record else b"",
                meta=ffi.buffer(item.meta, item.mlen)[:] if record else b"",
                value_len=int(item.vlen),
                check=int(item.check),
            )


def segment_paths(store_dir: str | os.PathLike[str]) -> list[str]:
    """The segment files of a store directory, oldest id first."""
    root = os.fspath(store_dir)
    names = sorted(e.name for e in os.scandir(root) if _SEGMENT_NAME.fullmatch(e.name))
    return [os.path.join(root, name) for name in names]


def hint_ids(store_dir: str | os.PathLike[str]) -> list[int]:
    """The segment ids that have a hint file in a store directory, ascending."""
    ids = []
    for entry in os.scandir(os.fspath(store_dir)):
        match = _HINT_NAME.fullmatch(entry.name)
        if match:
            ids.append(int(match.group(1), 16))
    return sorted(ids)


def segment_file_name(seg_id: int) -> str:
    return f"{seg_id:016x}.seg"


__all__ = [
    "RECORD_TYPES",
    "SegmentHeader",
    "SegmentInspector",
    "SegmentItem",
    "hint_ids",
    "segment_file_name",
    "segment_paths",
]
