"""An independent reader and writer of the on-disk format, written from docs/FORMAT.md alone.

A test oracle: the engine never imports it, and it shares no code with csrc/.  Each
constant and rule below cites the FORMAT.md section it comes from, so that a
disagreement between the engine and this module is a disagreement with the text.
XXH64 is taken from the ``xxhash`` package, the reference FORMAT.md names.

What it offers:

* the constants and field tables of sections 2, 3, 6 and 7.1;
* ``encode_segment_header`` / ``encode_record`` / ``batch_commit_value``: bytes as a
  writer following FORMAT.md produces them (to craft segments the engine must read);
* ``decode_segment_header`` / ``read_record`` / ``scan_segment``: section 5's reading
  rules, including resynchronisation after damage and torn records;
* ``expected_view``: what a store holding given segments must answer for each key
  (sections 4, 5 and 5.1), and the damage it must report.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum

import xxhash

# -- section 2: segment header -------------------------------------------------------
SEG_MAGIC = b"KVENGSEG"
SEG_HEADER_SIZE = 64
FORMAT_VERSION = 1
SEG_FLAG_COMPACTED = 0x1
SEG_FIELDS = {  # name: (offset, size)
    "magic": (0, 8),
    "version": (8, 4),
    "flags": (12, 4),
    "segment_id": (16, 8),
    "seq_floor": (24, 8),
    "created_ns": (32, 8),
    "reserved": (40, 16),
    "hcheck": (56, 8),
}

# -- section 3: records --------------------------------------------------------------
REC_MAGIC = 0xEC4B5652
REC_HEADER_SIZE = 48
REC_ALIGN = 8
PUT, DELETE, EXPIRE, BATCH_COMMIT = 1, 2, 3, 4
REC_FLAG_BATCH = 0x1
MAX_KEY = 2047
MAX_META = 65535
MAX_VALUE = 32 * 1024 * 1024
BATCH_COMMIT_VALUE_SIZE = 16
REC_FIELDS = {
    "magic": (0, 4),
    "hcheck": (4, 4),
    "type": (8, 1),
    "flags": (9, 1),
    "key_len": (10, 2),
    "meta_len": (12, 2),
    "reserved16": (14, 2),
    "value_len": (16, 4),
    "reserved32": (20, 4),
    "seq": (24, 8),
    "expiration": (32, 8),
    "check": (40, 8),
}
_REC = struct.Struct("<IIBBHHHIIQQQ")
assert _REC.size == REC_HEADER_SIZE

# -- section 6: hint files; section 7.1: compaction manifest ---------------------------
HINT_MAGIC = b"KVENGHNT"
HINT_HEADER_SIZE = 24
HINT_ENTRY_SIZE = 32
HINT_TRAILER_SIZE = 32
# Trailer fields in the order the text lists them, u64 each.
HINT_TRAILER_FIELDS = {"max_seq": 0, "data_size": 8, "count": 16, "check": 24}
HINT_FLAG_META = 0x1
MANIFEST_MAGIC = b"KVENGCMP"
MANIFEST_HEADER_SIZE = 16


class FormatError(ValueError):
    """Bytes that FORMAT.md does not accept, with the reason."""


def xxh64(data: bytes) -> int:
    return xxhash.xxh64_intdigest(data, 0)


def pad8(n: int) -> int:
    return (n + REC_ALIGN - 1) // REC_ALIGN * REC_ALIGN


# -- segment header ------------------------------------------------------------------
@dataclass(frozen=True)
class SegmentHeader:
    version: int
    flags: int
    segment_id: int
    seq_floor: int
    created_ns: int


def encode_segment_header(
    segment_id: int, seq_floor: int = 1, flags: int = 0, created_ns: int = 0, version: int = 1
) -> bytes:
    body = SEG_MAGIC + struct.pack("<IIQQQ", version, flags, segment_id, seq_floor, created_ns)
    body += bytes(16)
    return body + struct.pack("<Q", xxh64(body))


def decode_segment_header(data: bytes, expect_id: int | None = None) -> SegmentHeader:
    """Section 2's validity rule; raises FormatError naming what failed."""
    if len(data) < SEG_HEADER_SIZE:
        raise FormatError(f"segment shorter than its {SEG_HEADER_SIZE}-byte header")
    if data[:8] != SEG_MAGIC:
        raise FormatError("bad segment magic")
    (hcheck,) = struct.unpack_from("<Q", data, 56)
    if xxh64(data[:56]) != hcheck:
        raise FormatError("segment header hcheck mismatch")
    version, flags, seg_id, seq_floor, created = struct.unpack_from("<IIQQQ", data, 8)
    if version != FORMAT_VERSION:
        raise FormatError(f"segment format version {version}")
    if expect_id is not None and seg_id != expect_id:
        raise FormatError(f"segment id {seg_id} does not match the file name ({expect_id})")
    return SegmentHeader(version, flags, seg_id, seq_floor, created)


def segment_file_name(segment_id: int) -> str:
    """Section 1: 16 lowercase hex digits and ``.seg``."""
    return f"{segment_id:016x}.seg"


# -- records -------------------------------------------------------------------------
def batch_commit_value(first_seq: int, count: int) -> bytes:
    return struct.pack("<QII", first_seq, count, 0)


def encode_record(
    rtype: int,
    key: bytes = b"",
    value: bytes = b"",
    *,
    seq: int,
    meta: bytes = b"",
    expiration: int = 0,
    flags: int = 0,
) -> bytes:
    """One record with its padding, as section 3 lays it out."""
    body = struct.pack(
        "<BBHHHIIQQ", rtype, flags, len(key), len(meta), 0, len(value), 0, seq, expiration
    )  # header bytes 8..39
    check = xxh64(body + key + meta + value)
    after_hcheck = body + struct.pack("<Q", check)  # header bytes 8..47
    hcheck = xxh64(after_hcheck + key + meta) & 0xFFFFFFFF
    record = struct.pack("<II", REC_MAGIC, hcheck) + after_hcheck + key + meta + value
    return record + bytes(pad8(len(record)) - len(record))


class Status(Enum):
    VALID = "valid"  # header-valid and check matches
    DAMAGED = "damaged"  # header-valid, check fails (section 5 rule 2)
    TORN = "torn"  # header-valid but for its extent running past the end (rule 5)
    NONE = "none"  # not a record


@dataclass(frozen=True)
class Record:
    offset: int
    type: int
    flags: int
    key: bytes
    meta: bytes
    value: bytes
    seq: int
    expiration: int
    size: int  # 48 + key + meta + value

    @property
    def padded_size(self) -> int:
        return pad8(self.size)


def _shape_ok(rtype: int, flags: int, klen: int, mlen: int, vlen: int) -> bool:
    """The record-type table of section 3 (and flags: a commit is no batch member)."""
    if rtype == BATCH_COMMIT:
        return klen == mlen == 0 and vlen == BATCH_COMMIT_VALUE_SIZE and flags == 0
    if rtype in (DELETE, EXPIRE):
        return mlen == 0 and vlen == 0
    return rtype == PUT


def read_record(data: bytes, off: int) -> tuple[Status, Record | None]:
    """Section 5: what the bytes at off are.  Record is None only for Status.NONE."""
    size_of_file = len(data)
    if off + REC_HEADER_SIZE > size_of_file:
        return Status.NONE, None
    (magic, hcheck, rtype, flags, klen, mlen, rsv16, vlen, rsv32, seq, exp, check) = (
        _REC.unpack_from(data, off)
    )
    if magic != REC_MAGIC or not 1 <= rtype <= 4 or flags & ~REC_FLAG_BATCH:
        return Status.NONE, None
    if rsv16 or rsv32 or klen > MAX_KEY or vlen > MAX_VALUE:
        return Status.NONE, None
    if not _shape_ok(rtype, flags, klen, mlen, vlen):
        return Status.NONE, None
    size = REC_HEADER_SIZE + klen + mlen + vlen
    head_end = off + REC_HEADER_SIZE + klen + mlen
    if head_end > size_of_file:
        return Status.NONE, None
    if xxh64(data[off + 8 : head_end]) & 0xFFFFFFFF != hcheck:
        return Status.NONE, None
    payload = data[off + REC_HEADER_SIZE : off + size]
    key, meta, value = payload[:klen], payload[klen : klen + mlen], payload[klen + mlen :]
    rec = Record(off, rtype, flags, key, meta, value, seq, exp, size)
    if off + size > size_of_file:
        return Status.TORN, rec
    if xxh64(data[off + 8 : off + 40] + payload) != check:
        return Status.DAMAGED, rec
    return Status.VALID, rec


@dataclass
class Scan:
    """One segment read by section 5's rules."""

    size: int
    valid: list[Record] = field(default_factory=list)
    damaged: list[Record] = field(default_factory=list)
    regions: list[tuple[int, int]] = field(default_factory=list)  # [start, end) of non-records
    events: list[tuple[Status, Record | None, int, int]] = field(default_factory=list)

    @property
    def valid_end(self) -> int:
        """Where the valid prefix ends: after the last valid record (with its padding)."""
        return self.valid[-1].offset + self.valid[-1].padded_size if self.valid else SEG_HEADER_SIZE


def scan_segment(data: bytes) -> Scan:
    """Walks the records from offset 64: rules 1-5 of section 5."""
    size = len(data)
    scan = Scan(size)
    o = SEG_HEADER_SIZE
    while o < size:
        status, rec = read_record(data, o)
        if status in (Status.VALID, Status.DAMAGED):
            assert rec is not None
            end = min(o + rec.padded_size, size)
            (scan.valid if status is Status.VALID else scan.damaged).append(rec)
            scan.events.append((status, rec, o, end))
            o = end
            continue
        end = size  # rule 4 (no record follows) or rule 5 (a torn record: never searched)
        if status is not Status.TORN:
            p = o + REC_ALIGN
            while p + REC_HEADER_SIZE <= size:
                found, _ = read_record(data, p)
                if found is Status.TORN:
                    break
                if found in (Status.VALID, Status.DAMAGED):
                    end = p
                    break
                p += REC_ALIGN
        scan.regions.append((o, end))
        scan.events.append((Status.NONE, None, o, end))
        o = end
    return scan


def read_hint_trailer(data: bytes) -> dict[str, int]:
    """The trailer fields of a hint file (section 6); the checksum is not verified here."""
    if len(data) < HINT_HEADER_SIZE + HINT_TRAILER_SIZE or data[:8] != HINT_MAGIC:
        raise FormatError("not a hint file")
    base = len(data) - HINT_TRAILER_SIZE
    return {f: struct.unpack_from("<Q", data, base + o)[0] for f, o in HINT_TRAILER_FIELDS.items()}


# -- what a store must answer ---------------------------------------------------------
CORRUPT = "corrupt"  # the key's newest version is a damaged record: reads must fail


@dataclass(frozen=True)
class Version:
    seq: int
    value: bytes | None  # None: deleted or expired tombstone
    meta: bytes = b""
    expiration: int = 0
    corrupt: bool = False


@dataclass
class View:
    """Per key, the version a store must serve; and the damage it must report as
    (kind, segment id, offset) with kinds record, region, tail, batch, header."""

    versions: dict[bytes, Version] = field(default_factory=dict)
    damage: set[tuple[str, int, int]] = field(default_factory=set)
    tail_cut: dict[int, int] = field(default_factory=dict)  # segment id -> new size

    def _offer(self, key: bytes, version: Version) -> None:
        held = self.versions.get(key)
        if held is None or held.seq < version.seq:
            self.versions[key] = version

    def answer(self, key: bytes) -> bytes | str | None:
        """The value a read must return, None when absent, CORRUPT when it must fail."""
        v = self.versions.get(key)
        if v is None or (v.value is None and not v.corrupt):
            return None
        return CORRUPT if v.corrupt else v.value

    def live_keys(self) -> list[bytes]:
        return sorted(k for k, v in self.versions.items() if v.value is not None or v.corrupt)


def expected_view(segments: dict[int, bytes]) -> View:
    """Sections 4, 5 and 5.1 applied to segment id -> file bytes (as a writer opens them).

    The newest segment that is not COMPACTED (or has an invalid header) is the one
    whose tail may be torn; its bytes after the last valid record are cut.
    """
    view = View()
    headers: dict[int, SegmentHeader | None] = {}
    for seg_id, data in segments.items():
        try:
            headers[seg_id] = decode_segment_header(data, seg_id)
        except FormatError:
            headers[seg_id] = None
    newest = max(
        (s for s, h in headers.items() if h is None or not h.flags & SEG_FLAG_COMPACTED),
        default=None,
    )
    for seg_id in sorted(segments):
        data = segments[seg_id]
        if headers[seg_id] is None:
            if seg_id == newest and len(data) <= SEG_HEADER_SIZE:
                continue  # an interrupted segment creation: removed, not reported
            view.damage.add(("header", seg_id, 0))
        _read_segment(view, seg_id, data, seg_id == newest)
    return view


def _read_segment(view: View, seg_id: int, data: bytes, newest: bool) -> None:
    scan = scan_segment(data)
    tail_from = scan.valid_end if newest and scan.valid_end < len(data) else None
    if tail_from is not None:
        view.damage.add(("tail", seg_id, tail_from))
        view.tail_cut[seg_id] = tail_from
    pending: list[Record] = []  # batch members waiting for their commit (section 4)

    def drop_pending() -> None:
        if pending:
            view.damage.add(("batch", seg_id, pending[0].offset))
            pending.clear()

    for status, rec, start, _end in scan.events:
        in_tail = tail_from is not None and start >= tail_from
        if status is Status.NONE:
            drop_pending()
            if not in_tail:
                view.damage.add(("region", seg_id, start))
            continue
        assert rec is not None
        if status is Status.DAMAGED:
            if not in_tail:
                view.damage.add(("record", seg_id, start))
                if rec.type != BATCH_COMMIT:
                    view._offer(rec.key, Version(rec.seq, None, corrupt=True))
            continue
        if rec.type == BATCH_COMMIT:
            first, count, _ = struct.unpack("<QII", rec.value)
            early = [m for m in pending if m.seq < first]
            if early:  # members of an earlier batch that never got its commit
                view.damage.add(("batch", seg_id, early[0].offset))
            for m in pending:
                if first <= m.seq < first + count:
                    _apply(view, m)
            pending.clear()
        elif rec.flags & REC_FLAG_BATCH:
            pending.append(rec)
        else:
            drop_pending()
            _apply(view, rec)
    for rec in scan.valid:  # rule 1: padding that is not zero is reported, the record kept
        end = min(rec.offset + rec.padded_size, len(data))
        if any(data[rec.offset + rec.size : end]):
            view.damage.add(("region", seg_id, rec.offset + rec.size))
    drop_pending()


def _apply(view: View, rec: Record) -> None:
    value = rec.value if rec.type == PUT else None
    view._offer(rec.key, Version(rec.seq, value, rec.meta, rec.expiration))


__all__ = [
    "BATCH_COMMIT",
    "CORRUPT",
    "DELETE",
    "EXPIRE",
    "PUT",
    "REC_FLAG_BATCH",
    "REC_HEADER_SIZE",
    "SEG_HEADER_SIZE",
    "FormatError",
    "Record",
    "Scan",
    "SegmentHeader",
    "Status",
    "Version",
    "View",
    "batch_commit_value",
    "decode_segment_header",
    "encode_record",
    "encode_segment_header",
    "expected_view",
    "read_record",
    "scan_segment",
    "segment_file_name",
]
