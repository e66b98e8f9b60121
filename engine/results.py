"""The values the public API returns and accepts (besides plain Python types)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from engine.storage import Damage
from engine.storage import SegmentInfo as SegmentStats


@dataclass(frozen=True, slots=True)
class ValueWithMetadata:
    """What get_with_metadata returns; both fields are None for a missing key."""

    value: Any
    metadata: Any


@dataclass(slots=True)  # not frozen: a list page creates up to 1000, and frozen init is 5x slower
class KeyInfo:
    """One listed key; expiration and metadata are None where the key has none."""

    name: str
    expiration: int | None = None
    metadata: Any = None


_new = object.__new__


def key_infos(
    names: Sequence[str],
    expirations: Sequence[int | None] | None = None,
    metadata: Sequence[Any] | None = None,
) -> list[KeyInfo]:
    """A page of KeyInfo, equal field for field to KeyInfo(name, expiration, metadata);
    a None column means None for every key.

    The objects are allocated in one C-level pass and their fields assigned in
    a plain loop: calling the class runs the generated __init__ as a Python
    call per key, which costs more than the assignments it makes.
    """
    keys: list[KeyInfo] = list(map(_new, repeat(KeyInfo, len(names))))
    if expirations is None and metadata is None:
        for key, name in zip(keys, names, strict=True):
            key.name = name
            key.expiration = key.metadata = None
        return keys
    nones = [None] * len(names)
    exps = nones if expirations is None else expirations
    metas = nones if metadata is None else metadata
    for key, name, exp, meta in zip(keys, names, exps, metas, strict=True):
        key.name = name
        key.expiration = exp
        key.metadata = meta
    return keys


@dataclass(frozen=True, slots=True)
class ListResult:
    """A page of list(); cursor is None exactly when list_complete is True."""

    keys: list[KeyInfo]
    list_complete: bool
    cursor: str | None = None


@dataclass(frozen=True, slots=True)
class BulkPair:
    """One pair of put_many, the typed twin of a wrangler bulk-file item.

    With base64=True, value is a base64 string that is decoded to raw bytes.
    """

    key: str
    value: str | bytes | bytearray | memoryview
    expiration: int | float | None = None
    expiration_ttl: int | float | None = None
    metadata: Any = None
    base64: bool = False


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    """Unexpired keys of one namespace and the bytes of their records."""

    keys: int
    bytes: int


@dataclass(frozen=True, slots=True)
class ReadCacheStats:
    """The record cache of this handle since it was opened (``read_cache_bytes``).

    ``hits`` are gets served from memory; ``misses`` are gets of records small
    enough to be cached that were read from disk.  ``bytes`` is the memory the
    cache holds, its bookkeeping and the doorkeeper's marks included; it never
    exceeds ``read_cache_bytes``.
    """

    hits: int = 0
    misses: int = 0
    bytes: int = 0
    records: int = 0


@dataclass(frozen=True, slots=True)
class StoreStats:
    """A snapshot of what the store holds and what it could reclaim.

    Byte figures count records with their padding.  ``live_bytes`` serve reads;
    ``expired_bytes`` are records past their expiration that the index still
    points at (dead from their expiration on, reclaimed by compaction);
    ``dead_bytes`` are overwritten and deleted records, tombstones and damage.
    """

    namespaces: dict[str, NamespaceStats]
    keys: int
    live_bytes: int
    expired_bytes: int
    dead_bytes: int
    tombstone_bytes: int
    disk_bytes: int
    index_bytes: int
    segments: list[SegmentStats]
    torn_bytes_cut: int
    damage: list[Damage] = field(default_factory=list)
    read_cache: ReadCacheStats = field(default_factory=ReadCacheStats)

    @property
    def reclaimable_bytes(self) -> int:
        return self.expired_bytes + self.dead_bytes


@dataclass(frozen=True, slots=True)
class CompactionReport:
    """What one compaction pass did (or, with ``dry_run``, would do).

    ``records_dropped`` and ``bytes_dropped`` are keyed by reason:
    ``"overwritten"`` (a newer version exists), ``"deleted"`` (the key was
    deleted), ``"expired"`` (past its expiration at the pass's clock) and
    ``"tombstone"`` (a DELETE or EXPIRE record no longer needed).  Byte figures
    count records with their padding; ``bytes_before``/``bytes_after`` are the
    disk bytes of every segment file of the store (for a dry run, ``bytes_after``
    is the prediction).  ``expire_tombstones`` counts EXPIRE records written in
    place of expired values that could still shadow an older version elsewhere;
    ``raced`` counts copies made obsolete by writes during the pass.
    """

    segments_in: int
    segments_out: int
    bytes_before: int
    bytes_after: int
    bytes_read: int
    bytes_written: int
    records_dropped: dict[str, int]
    bytes_dropped: dict[str, int]
    seconds: float
    dry_run: bool = False
    expire_tombstones: int = 0
    raced: int = 0

    @property
    def bytes_reclaimed(self) -> int:
        return self.bytes_before - self.bytes_after


__all__ = [
    "BulkPair",
    "CompactionReport",
    "Damage",
    "KeyInfo",
    "ListResult",
    "NamespaceStats",
    "SegmentStats",
    "StoreStats",
    "ValueWithMetadata",
]
