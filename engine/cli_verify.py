"""What the segment and hint files of a store hold, and whether they are intact
(``kvengine segments`` and ``kvengine verify``).

Every file is read through the read-only inspector (engine/inspect.py over
csrc/kv_inspect.c), so this runs beside a writer and never takes the store's
lock.  Hint files are checked by engine.storage.check_hint where this build
has hint files.
"""

from __future__ import annotations

import errno
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from engine import storage
from engine.errors import CorruptionError, EngineError, EngineIOError, FormatVersionError
from engine.inspect import SEGMENT_HEADER_BYTES, SegmentInspector, hint_ids, segment_paths


@dataclass(frozen=True, slots=True)
class Problem:
    """A damaged place: file, byte offset and what is wrong there.

    ``fatal`` is False for what is not damage: the torn tail of the newest
    segment (the last write, cut short; a writer cuts it off when it opens the
    store, and beside a running writer it may be a write in progress).
    """

    path: str
    offset: int
    what: str
    fatal: bool = True


@dataclass(slots=True)
class SegmentSummary:
    """One segment file as the inspector read it."""

    id: int
    path: str
    size: int
    header_ok: bool
    compacted: bool
    records: Counter[str] = field(default_factory=Counter)
    damaged_records: int = 0
    damaged_bytes: int = 0
    min_seq: int = 0
    max_seq: int = 0
    hint: bool = False
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The figures `kvengine segments --json` prints."""
        return {
            "id": self.id,
            "path": self.path,
            "size": self.size,
            "header_ok": self.header_ok,
            "compacted": self.compacted,
            "records": dict(self.records),
            "damaged_records": self.damaged_records,
            "damaged_bytes": self.damaged_bytes,
            "min_seq": self.min_seq,
            "max_seq": self.max_seq,
            "hint": self.hint,
        }


@dataclass(slots=True)
class VerifyReport:
    segments: list[SegmentSummary] = field(default_factory=list)
    hints_checked: int = 0
    hints_unchecked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.fatal for p in self.problems)

    @property
    def records(self) -> int:
        return sum(sum(s.records.values()) for s in self.segments)

    @property
    def bytes(self) -> int:
        return sum(s.size for s in self.segments)

    def as_dict(self) -> dict[str, Any]:
        """The verdict and figures `kvengine verify --json` prints."""
        return {
            "ok": self.ok,
            "segments": len(self.segments),
            "records": self.records,
            "bytes": self.bytes,
            "hints_checked": self.hints_checked,
            "hints_unchecked": self.hints_unchecked,
            "problems": [asdict(p) for p in self.problems],
        }


def summarize_segment(
    path: str, *, newest: bool = False, appended: bool = False
) -> SegmentSummary | None:
    """Reads every record of one segment file; damage goes into .problems.

    newest: the store's newest segment, where a file shorter than a header is
    an interrupted segment creation.  appended: the newest segment not written
    by the compactor (FORMAT.md section 5), where invalid bytes at the end are
    a torn last write rather than damage.  None when the file is gone (a
    compaction beside a running writer retired it).
    """
    try:
        inspector = SegmentInspector(path)
    except FormatVersionError:
        return _unreadable(path, "written by an unsupported format version")
    except EngineIOError as exc:
        if exc.errno == errno.ENOENT:
            return None  # retired by a compaction since the directory was listed
        return _unreadable(path, f"cannot be read: {exc}")
    except EngineError as exc:
        return _unreadable(path, f"cannot be read: {exc}")
    with inspector:
        hdr = inspector.header
        summary = SegmentSummary(
            id=hdr.id, path=path, size=hdr.size, header_ok=hdr.valid, compacted=hdr.compacted
        )
        torn_allowed = appended and not hdr.compacted
        if not hdr.valid:
            interrupted = newest and hdr.size < SEGMENT_HEADER_BYTES
            summary.problems.append(
                Problem(
                    path,
                    0,
                    "segment shorter than its header (an interrupted segment creation)"
                    if interrupted
                    else "bad segment header (magic, checksum or segment id)",
                    fatal=not interrupted,
                )
            )
        try:
            for item in inspector:
                at_end = item.end >= hdr.size
                if item.kind == "record":
                    summary.records[item.type or "?"] += 1
                    if summary.min_seq == 0 or item.seq < summary.min_seq:
                        summary.min_seq = item.seq
                    summary.max_seq = max(summary.max_seq, item.seq)
                    continue
                summary.damaged_bytes += item.size
                if item.kind == "damaged":
                    summary.damaged_records += 1
                    what = f"{item.type} record (seq {item.seq}) failed its value checksum"
                elif item.kind == "region":
                    what = f"{item.size} bytes hold no valid record"
                else:
                    what = f"{item.size} bytes at the end of the file hold no valid record"
                torn = torn_allowed and at_end
                if torn:
                    what = "torn tail: the last write was cut short (" + what + ")"
                summary.problems.append(Problem(path, item.offset, what, fatal=not torn))
        except EngineError as exc:
            summary.problems.append(Problem(path, 0, f"cannot be read: {exc}"))
    return summary


def _unreadable(path: str, what: str) -> SegmentSummary:
    seg_id = int(os.path.basename(path)[:16], 16)
    summary = SegmentSummary(id=seg_id, path=path, size=0, header_ok=False, compacted=False)
    summary.problems.append(Problem(path, 0, what))
    return summary


def _appended_segment(paths: list[str]) -> str | None:
    """The newest segment the compactor did not write: the one a writer appends
    to, so the only one whose end may hold a write cut short."""
    for path in reversed(paths):
        try:
            with SegmentInspector(path) as seg:
                if not seg.header.compacted:  # an invalid header counts as appended to
                    return path
        except EngineError:
            continue
    return None


def summarize_store(
    store_dir: str, progress: Callable[[SegmentSummary], None] | None = None
) -> list[SegmentSummary]:
    """Every segment file of the store directory, oldest first."""
    paths = segment_paths(store_dir)
    hints = set(hint_ids(store_dir))
    appended = _appended_segment(paths)
    out = []
    for i, path in enumerate(paths):
        summary = summarize_segment(path, newest=i == len(paths) - 1, appended=path == appended)
        if summary is None:
            continue
        summary.hint = summary.id in hints
        out.append(summary)
        if progress is not None:
            progress(summary)
    return out


def verify_store(
    store_dir: str, progress: Callable[[SegmentSummary], None] | None = None
) -> VerifyReport:
    """Checks every record of every segment and every hint file of a store directory."""
    report = VerifyReport(segments=summarize_store(store_dir, progress))
    for summary in report.segments:
        report.problems.extend(summary.problems)
    check_hint = getattr(storage, "check_hint", None)
    for seg_id in hint_ids(store_dir):
        if check_hint is None:
            report.hints_unchecked += 1
            continue
        try:
            check_hint(store_dir, seg_id)
        except CorruptionError as exc:
            where = exc.path or os.path.join(store_dir, f"{seg_id:016x}.hint")
            report.problems.append(Problem(where, exc.offset or 0, f"bad hint file: {exc}"))
        except (EngineError, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
                continue  # retired by a compaction since the directory was listed
            where = os.path.join(store_dir, f"{seg_id:016x}.hint")
            report.problems.append(Problem(where, 0, f"hint file cannot be read: {exc}"))
        report.hints_checked += 1
    return report


__all__ = [
    "Problem",
    "SegmentSummary",
    "VerifyReport",
    "summarize_segment",
    "summarize_store",
    "verify_store",
]
