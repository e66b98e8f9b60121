"""Hint files (docs/FORMAT.md section 6): written for sealed, closed and compacted
segments, used at open instead of the segment, and never trusted blindly: a
corrupt, truncated, stale or missing hint costs a scan of its segment only, and
the store reads exactly the same either way.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import oracle_format as fmt
import pytest
import xxhash

from engine.errors import CorruptionError, EngineIOError
from engine.storage import BatchOp, LogStore, check_hint

SEG = 8192
NOW = 1_000


def fill(path: Path) -> LogStore:
    store = LogStore(path, max_segment_bytes=SEG)
    for i in range(300):
        store.put(b"key-%03d" % (i % 120), b"v%d" % i * 9, meta=b'{"i":%d}' % i if i % 3 else b"",
                  expiration=0 if i % 7 else 5_000 + i)  # fmt: skip
    for i in range(0, 120, 11):
        store.delete(b"key-%03d" % i)
    store.write_batch([BatchOp(b"batch-a", b"1"), BatchOp(b"key-001")])
    return store


Row = tuple[bytes, int, bytes | None, bytes | None]


def snapshot(store: LogStore) -> list[Row]:
    rows = []
    for item in store.iter_keys(b"", NOW):
        record = store.get(item.key, NOW)
        rows.append((item.key, item.expiration, item.meta, record.value if record else None))
    return rows


def accounting(store: LogStore) -> list[tuple[int, ...]]:
    return [
        (s.id, s.size, s.live_bytes, s.live_records, s.tombstone_bytes, s.dead_bytes, s.min_seq)
        for s in store.segments(NOW)
    ]


def hints(path: Path) -> list[Path]:
    return sorted(path.glob("*.hint"))


def seg_id(hint: Path) -> int:
    return int(hint.name[:16], 16)


@pytest.fixture
def closed_store(
    tmp_path: Path,
) -> tuple[Path, list[tuple[bytes, int, bytes | None, bytes | None]]]:
    path = tmp_path / "store"
    store = fill(path)
    rows = snapshot(store)
    store.close()
    return path, rows


def test_every_segment_has_a_valid_hint_after_close(closed_store) -> None:
    path, rows = closed_store
    segs = sorted(path.glob("*.seg"))
    assert len(segs) > 3
    assert [h.name[:16] for h in hints(path)] == [s.name[:16] for s in segs]
    for hint in hints(path):
        check_hint(str(path), seg_id(hint))
    store = LogStore(path, max_segment_bytes=SEG)
    stats = store.stats(NOW)
    assert stats["hinted_segments"] == len(segs) and stats["hints_rejected"] == 0
    assert snapshot(store) == rows
    store.close()


def test_open_from_hints_equals_open_from_scan(closed_store) -> None:
    path, rows = closed_store
    with_hints = LogStore(path, max_segment_bytes=SEG, readonly=True)
    from_hints = snapshot(with_hints), accounting(with_hints)
    with_hints.close()
    for hint in hints(path):
        hint.unlink()
    scanned = LogStore(path, max_segment_bytes=SEG, readonly=True)
    assert scanned.stats(NOW)["hinted_segments"] == 0
    assert (snapshot(scanned), accounting(scanned)) == from_hints
    assert from_hints[0] == rows
    scanned.close()


def test_hint_trailer_max_seq_is_the_segments_highest_sequence_number(closed_store) -> None:
    """max_seq counts every record, also those without an entry (the batch commit that
    ends the newest segment): an open from hints must never hand a number out again."""
    path, _ = closed_store
    for hint in hints(path):
        segment = (path / fmt.segment_file_name(seg_id(hint))).read_bytes()
        records = fmt.scan_segment(segment).valid
        assert fmt.read_hint_trailer(hint.read_bytes())["max_seq"] == max(r.seq for r in records)
    assert any(r.type == fmt.BATCH_COMMIT for r in records)  # the newest segment's last write


def test_hint_whose_max_seq_is_below_an_entry_is_rejected(closed_store) -> None:
    path, rows = closed_store
    target = hints(path)[0]
    data = bytearray(target.read_bytes())
    struct.pack_into("<Q", data, len(data) - fmt.HINT_TRAILER_SIZE, 0)
    target.write_bytes(_reseal(bytes(data)))
    with pytest.raises(CorruptionError):
        check_hint(str(path), seg_id(target))
    store = LogStore(path, max_segment_bytes=SEG)
    assert store.stats(NOW)["hints_rejected"] == 1
    assert snapshot(store) == rows
    store.close()


def test_rejected_hint_of_a_resumed_segment_cannot_come_back_valid(tmp_path: Path) -> None:
    """A hint rejected because a torn tail was cut since it was written is removed before the
    writer appends: the segment may grow back to the size the hint describes, which would
    then pass for valid and bring back the torn batch it lists as committed."""
    path = tmp_path / "store"
    store = LogStore(path, max_segment_bytes=SEG)
    store.put(b"k", b"v")
    store.sync()
    (segment,) = path.glob("*.seg")
    start = segment.stat().st_size
    store.write_batch([BatchOp(b"a", b"")] * 3 + [BatchOp(b"torn", b"xyz")])
    store.close()
    size = segment.stat().st_size
    os.truncate(segment, start + (size - 8 - start) * 3 // 4)  # inside the last member
    store = LogStore(path, max_segment_bytes=SEG)
    assert store.stats(NOW)["hints_rejected"] == 1
    assert not segment.with_suffix(".hint").exists()
    store.write_batch([BatchOp(b"other")])  # a delete: the file regrows to `size`
    store.close()
    assert segment.stat().st_size == size
    store = LogStore(path, max_segment_bytes=SEG)
    assert [item.key for item in store.iter_keys(b"", NOW)] == [b"k"]
    store.close()


def test_writer_removes_the_hint_of_the_segment_it_resumes(closed_store) -> None:
    path, rows = closed_store
    newest = sorted(path.glob("*.seg"))[-1]
    store = LogStore(path, max_segment_bytes=SEG)
    assert not newest.with_suffix(".hint").exists()
    store.put(b"after", b"reopen")
    store.close()
    store = LogStore(path, max_segment_bytes=SEG)
    assert store.stats(NOW)["hints_rejected"] == 0
    assert store.get(b"after", NOW).value == b"reopen"
    assert [r for r in snapshot(store) if r[0] != b"after"] == rows
    store.close()


def _damage_cases(data: bytes) -> list[tuple[str, bytes]]:
    first_entry = 24
    klen = struct.unpack_from("<H", data, first_entry + 2)[0]
    second = first_entry + 32 + klen
    flip = lambda b, i: b[:i] + bytes([b[i] ^ 0x10]) + b[i + 1 :]  # noqa: E731
    return [
        ("magic", flip(data, 0)),
        ("segment id", flip(data, 16)),
        ("entry type", flip(data, first_entry)),
        ("entry key", flip(data, first_entry + 32)),
        ("second entry offset", flip(data, second + 4)),
        ("trailer size", flip(data, len(data) - 24)),
        ("trailer count", flip(data, len(data) - 16)),
        ("checksum", flip(data, len(data) - 1)),
        ("truncated to zero", b""),
        ("truncated header", data[:10]),
        ("truncated entry", data[: second + 5]),
        ("trailer missing", data[:-24]),
        ("extra byte", data + b"\0"),
    ]


def test_damaged_hints_are_rejected_and_rewritten(closed_store) -> None:
    path, rows = closed_store
    target = hints(path)[1]
    good = target.read_bytes()
    for what, bad in _damage_cases(good):
        target.write_bytes(bad)
        with pytest.raises(CorruptionError) as err:
            check_hint(str(path), seg_id(target))
        assert err.value.path == str(target), what
        assert err.value.offset is not None and 0 <= err.value.offset <= max(len(bad), 24), what
        store = LogStore(path, max_segment_bytes=SEG)
        assert store.stats(NOW)["hints_rejected"] == 1, what
        assert snapshot(store) == rows, what
        assert not store.damage(), what
        store.close()
        # The writer scanned the segment and wrote its hint again.
        check_hint(str(path), seg_id(target))
        assert target.read_bytes() == good, what


def _reseal(data: bytes) -> bytes:
    """Recomputes the whole-file checksum, as a hostile or buggy writer would."""
    body = data[:-8]
    return body + struct.pack("<Q", xxhash.xxh64(body).intdigest())


@pytest.mark.parametrize(
    ("field", "delta"),
    [("rec_off", 1 << 20), ("rec_off", 3), ("rec_len", 1 << 20), ("rec_len", -40)],
)
def test_entry_outside_its_segment_is_caught(closed_store, field: str, delta: int) -> None:
    """An entry with a valid checksum that points past the segment's end (or at an
    impossible place) is refused by the bounds check; the segment is scanned."""
    path, rows = closed_store
    target = hints(path)[0]
    data = bytearray(target.read_bytes())
    at = 24 + (4 if field == "rec_off" else 8)
    (old,) = struct.unpack_from("<I", data, at)
    struct.pack_into("<I", data, at, max(old + delta, 0))
    target.write_bytes(_reseal(bytes(data)))
    with pytest.raises(CorruptionError) as err:
        check_hint(str(path), seg_id(target))
    assert err.value.offset == 24
    store = LogStore(path, max_segment_bytes=SEG)
    assert store.stats(NOW)["hints_rejected"] == 1
    assert snapshot(store) == rows
    store.close()


def test_hint_of_a_different_segment_size_is_stale(closed_store) -> None:
    path, rows = closed_store
    target = hints(path)[0]
    data = bytearray(target.read_bytes())
    size = struct.unpack_from("<Q", data, len(data) - 24)[0]
    struct.pack_into("<Q", data, len(data) - 24, size - 8)
    target.write_bytes(_reseal(bytes(data)))
    with pytest.raises(CorruptionError) as err:
        check_hint(str(path), seg_id(target))
    assert err.value.offset == len(data) - 24
    store = LogStore(path, max_segment_bytes=SEG)
    assert snapshot(store) == rows
    store.close()


def test_missing_hints_cost_a_scan_and_come_back(closed_store) -> None:
    path, rows = closed_store
    for hint in hints(path)[::2]:
        hint.unlink()
    missing = {h.name for h in hints(path)}
    store = LogStore(path, max_segment_bytes=SEG)
    assert store.stats(NOW)["hints_rejected"] == 0
    assert snapshot(store) == rows
    store.close()
    assert missing < {h.name for h in hints(path)}


def test_check_hint_of_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "store"
    LogStore(path).close()
    with pytest.raises(EngineIOError) as err:
        check_hint(str(path), 0x99)
    assert err.value.errno == errno.ENOENT


def test_orphan_hint_is_removed_by_a_writer(closed_store) -> None:
    path, _ = closed_store
    orphan = path / "00000000000000ff.hint"
    orphan.write_bytes(hints(path)[0].read_bytes())
    LogStore(path, max_segment_bytes=SEG, readonly=True).close()
    assert orphan.exists()
    LogStore(path, max_segment_bytes=SEG).close()
    assert not orphan.exists()


def test_sealed_segments_get_hints_while_open(tmp_path: Path) -> None:
    """Hints of segments sealed by ordinary rollover are written from memory by the
    maintenance duty (flush_hints), without reading the segment."""
    store = fill(tmp_path / "s")
    store.flush_hints()
    sealed = [s for s in store.segments(NOW) if not s.active]
    assert sealed and all(s.hinted for s in sealed)
    for seg in sealed:
        check_hint(str(tmp_path / "s"), seg.id)
    assert not os.path.exists(tmp_path / "s" / f"{store.segments(NOW)[-1].id:016x}.hint")
    store.close()
