"""When to compact: the policy the background compactor applies to each sealed segment.

The accounting it reads (live, dead, tombstone and expired bytes per segment)
is kept current by the C core on every write and at open, so deciding costs no
disk read.  A segment is chosen when its reclaimable share or its reclaimable
bytes pass a threshold.  Expired bytes count only once they have been expired
for ``expiry_grace`` seconds, so keys expiring one by one do not make the
compactor rewrite the same segment over and over.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.storage import SegmentInfo

_HEADER = 64  # segment header bytes (docs/FORMAT.md section 2)


@dataclass(frozen=True, slots=True)
class CompactionPolicy:
    """Thresholds of the background compactor.

    min_dead_fraction: compact a segment once this share of its record bytes is
        reclaimable (dead, tombstones, or expired for longer than the grace).
    min_dead_bytes: ... or once this many of its bytes are, whatever the share.
    expiry_grace: seconds an expired record waits before it counts as reclaimable.
    interval: seconds between two looks of the background thread.
    max_input_bytes: upper bound of the input of one background pass, so that a
        pass ends (and frees its inputs) in bounded time.
    """

    min_dead_fraction: float = 0.5
    min_dead_bytes: int = 128 * 1024 * 1024
    expiry_grace: float = 300.0
    interval: float = 5.0
    max_input_bytes: int = 1024 * 1024 * 1024

    def __post_init__(self) -> None:
        if not 0.0 < self.min_dead_fraction <= 1.0:
            raise ValueError(f"min_dead_fraction must be in (0, 1], not {self.min_dead_fraction}")
        if self.min_dead_bytes <= 0 or self.max_input_bytes <= 0:
            raise ValueError("min_dead_bytes and max_input_bytes must be positive")
        if self.expiry_grace < 0 or self.interval <= 0:
            raise ValueError("expiry_grace must be >= 0 and interval > 0")


def reclaimable_bytes(seg: SegmentInfo) -> int:
    """Bytes a compaction of this segment alone is expected to free, by its accounting.

    ``seg.expired_bytes`` must have been computed at ``now - expiry_grace``.  The
    tombstones of a compaction output are not counted: it kept them because an
    older version of their key may survive elsewhere, and rewriting it would
    only keep them again (a full pass, ``Store.compact()``, drops them when the
    older versions are gone).
    """
    tombstones = 0 if seg.compacted else seg.tombstone_bytes
    return seg.dead_bytes + tombstones + seg.expired_bytes


def choose_segments(segments: Sequence[SegmentInfo], policy: CompactionPolicy) -> list[int]:
    """Ids of the sealed, undamaged segments worth compacting, most reclaimable first,
    up to ``policy.max_input_bytes`` of input (at least one segment when any qualifies).
    """
    scored = []
    for seg in segments:
        if seg.active or seg.damaged:
            continue
        body = max(seg.size - _HEADER, 0)
        gain = reclaimable_bytes(seg)
        if body == 0:
            scored.append((1.0, seg))  # an empty sealed segment: retiring it is free
        elif gain >= policy.min_dead_bytes or gain / body >= policy.min_dead_fraction:
            scored.append((gain / body, seg))
    scored.sort(key=lambda item: item[0], reverse=True)
    chosen: list[int] = []
    total = 0
    for _, seg in scored:
        if chosen and total + seg.size > policy.max_input_bytes:
            break
        chosen.append(seg.id)
        total += seg.size
    return chosen


__all__ = ["CompactionPolicy", "choose_segments", "reclaimable_bytes"]
