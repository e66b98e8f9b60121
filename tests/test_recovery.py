"""Recovery on open (docs/FORMAT.md sections 4 and 5), checked against the oracle.

* A cut anywhere in the last three records of the newest segment: the store opens,
  keeps every whole record, drops the torn one, and reports the tail it cut.
* One bit flipped anywhere in a small segment: never a wrong value, always a report,
  and every record the flip did not touch still readable.
* Batch members without their commit are dropped, also when the next batch follows.
* Lengths on disk are never trusted: crafted huge length fields cost no memory.

For every damaged copy the engine's answers are compared with the independent reader
in tests/oracle_format.py, key for key and report for report.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import oracle_format as fmt
import pytest

from engine.errors import CorruptionError
from engine.storage import BatchOp, LogStore

KINDS = {
    "damaged record": "record",
    "damaged region": "region",
    "torn tail cut off": "tail",
    "bad segment header": "header",
    "uncommitted batch dropped": "batch",
}


def read_segments(path: Path) -> dict[int, bytes]:
    return {int(p.stem, 16): p.read_bytes() for p in path.glob("*.seg")}


def write_segments(path: Path, segments: dict[int, bytes]) -> None:
    """Makes path a store directory holding exactly these segments."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(mode=0o700)
    for seg_id, data in segments.items():
        (path / fmt.segment_file_name(seg_id)).write_bytes(data)


def reported(store: LogStore) -> set[tuple[str, int, int]]:
    return {(KINDS[d.kind], int(Path(d.path).stem, 16), d.offset) for d in store.damage()}


def answer(store: LogStore, key: bytes) -> bytes | str | None:
    try:
        rec = store.get(key, 0)
    except CorruptionError:
        return fmt.CORRUPT
    return None if rec is None else rec.value


def assert_matches_oracle(path: Path, segments: dict[int, bytes], keys: set[bytes]) -> LogStore:
    """Opens the store at path (holding segments) and compares it with the oracle's view."""
    view = fmt.expected_view(segments)
    store = LogStore(path)
    try:
        assert reported(store) == view.damage
        got = {k: answer(store, k) for k in keys}
        assert got == {k: view.answer(k) for k in keys}
        listed = [item.key for item in store.iter_keys(b"", 0)]
        assert listed == [k for k in view.live_keys() if k in keys]
    except BaseException:
        store.close()
        raise
    return store


# -- truncation -------------------------------------------------------------------------
def _build_two_segments(path: Path) -> tuple[list[tuple[bytes, bytes]], int]:
    """A sealed segment and a newest one whose last three records differ in shape.

    Returns the puts of the newest segment in order and the newest segment's id.
    """
    store = LogStore(path, max_segment_bytes=4096)
    for i in range(30):
        store.put(b"sealed-%02d" % i, b"s" * 100)
    newest = [
        (b"n-first", b"1" * 10),
        (b"n-overwritten", b"old"),
        (b"n-meta", b"value with metadata"),  # the third-last record
        (b"n-overwritten", b"new"),  # an older version exists: the cut must expose it
        (b"n-big", bytes(range(256))),
    ]
    for key, value in newest:
        store.put(key, value, meta=b'{"m":1}' if key == b"n-meta" else b"")
    store.close()
    ids = sorted(read_segments(path))
    assert len(ids) >= 2
    return newest, ids[-1]


def test_truncate_newest_segment_at_every_offset_of_its_last_three_records(
    tmp_path: Path,
) -> None:
    original = tmp_path / "original"
    puts, newest = _build_two_segments(original)
    segments = read_segments(original)
    data = segments[newest]
    records = fmt.scan_segment(data).valid
    assert [(r.key, r.value) for r in records][-len(puts) :] == puts
    start = records[-3].offset
    keys = {r.key for d in segments.values() for r in fmt.scan_segment(d).valid}
    path = tmp_path / "store"
    cuts = range(start, len(data))
    assert len(cuts) > 400
    for cut in cuts:
        damaged = dict(segments)
        damaged[newest] = data[:cut]
        write_segments(path, damaged)
        store = assert_matches_oracle(path, damaged, keys)
        try:
            whole = [r for r in records if r.offset + r.size <= cut]
            torn = [r for r in records if r.offset < cut < r.offset + r.size]
            newest_value = {}
            for r in whole:
                newest_value[r.key] = r.value
            for key, value in newest_value.items():
                assert store.get(key, 0).value == value, (cut, key)
            for r in torn:
                if r.key not in newest_value:
                    assert store.get(r.key, 0) is None, cut
            kept_end = whole[-1].offset + whole[-1].padded_size
            if torn:
                assert [(d.kind, d.offset, d.length) for d in store.damage()] == [
                    ("torn tail cut off", kept_end, cut - kept_end)
                ], cut
                assert store.stats(0)["torn_bytes_cut"] == cut - kept_end
            else:  # a cut at a record boundary or inside padding loses nothing
                assert store.damage() == [], cut
            # The cut (or the restored padding) leaves a clean end to append to.
            assert (path / fmt.segment_file_name(newest)).stat().st_size == kept_end
            store.put(b"after", b"cut")
        finally:
            store.close()
        reopened = LogStore(path)
        try:
            assert reopened.damage() == []
            assert reopened.get(b"after", 0).value == b"cut"
        finally:
            reopened.close()


def test_torn_tail_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "store"
    _, newest = _build_two_segments(path)
    seg = path / fmt.segment_file_name(newest)
    os.truncate(seg, seg.stat().st_size - 10)  # into the last record's value
    with caplog.at_level("WARNING", logger="engine"):
        LogStore(path).close()
    (line,) = [r.getMessage() for r in caplog.records]
    assert seg.name in line and "torn tail cut off" in line


def test_readonly_open_reports_torn_tail_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "store"
    _, newest = _build_two_segments(path)
    seg = path / fmt.segment_file_name(newest)
    size = seg.stat().st_size
    os.truncate(seg, size - 5)
    store = LogStore(path, readonly=True)
    try:
        assert [d.kind for d in store.damage()] == ["torn tail cut off"]
        assert store.get(b"n-big", 0) is None
        assert store.get(b"n-overwritten", 0).value == b"new"
    finally:
        store.close()
    assert seg.stat().st_size == size - 5


# -- bit flips --------------------------------------------------------------------------
def _small_segment(path: Path) -> tuple[dict[bytes, bytes], dict[int, bytes]]:
    store = LogStore(path)
    values = {
        b"alpha": b"first value",
        b"b": b"",
        b"gamma-with-meta": b"x" * 13,
        b"delta": bytes(range(40)),
    }
    store.put(b"alpha", values[b"alpha"])
    store.put(b"b", values[b"b"])
    store.put(
        b"gamma-with-meta", values[b"gamma-with-meta"], meta=b'{"k":"v"}', expiration=4_000_000_000
    )
    store.write_batch([BatchOp(b"batch-1", b"one"), BatchOp(b"batch-2", b"two" * 5)])
    values |= {b"batch-1": b"one", b"batch-2": b"two" * 5}
    store.put(b"delta", values[b"delta"])
    store.put(b"omega", b"last")
    values[b"omega"] = b"last"
    store.close()
    return values, read_segments(path)


def test_flip_each_byte_of_a_small_segment(tmp_path: Path) -> None:
    values, segments = _small_segment(tmp_path / "original")
    ((seg_id, data),) = segments.items()
    records = fmt.scan_segment(data).valid
    # The keys each byte's record carries (extent including padding).  A batch is one
    # unit: damage to any of its records may drop all of its members.
    batch_keys = {b"batch-1", b"batch-2"}
    owner: dict[int, set[bytes]] = {}
    for r in records:
        keys = batch_keys if r.flags & fmt.REC_FLAG_BATCH or r.type == fmt.BATCH_COMMIT else {r.key}
        for o in range(r.offset, r.offset + r.padded_size):
            owner[o] = keys
    path = tmp_path / "store"
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 1 << (i % 8)
        damaged = {seg_id: bytes(flipped)}
        write_segments(path, damaged)
        store = assert_matches_oracle(path, damaged, set(values))
        try:
            assert store.damage(), f"flip at {i} went unreported"
            touched = owner.get(i, set())
            for key, value in values.items():
                got = answer(store, key)
                # Never a wrong value: the value written, or absent, or an error.
                assert got in (value, None, fmt.CORRUPT), (i, key)
                if key not in touched:  # header flips included: records are still read
                    assert got == value, (i, key)
        finally:
            store.close()


# -- batches -------------------------------------------------------------------------------
def test_uncommitted_batch_is_dropped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "store"
    store = LogStore(path)
    store.put(b"before", b"b")
    store.write_batch([BatchOp(b"m1", b"1"), BatchOp(b"m2", b"2"), BatchOp(b"before")])
    store.close()
    ((seg_id, data),) = read_segments(path).items()
    commit = fmt.scan_segment(data).valid[-1]
    assert commit.type == fmt.BATCH_COMMIT
    for cut in (commit.offset, commit.offset + 20, commit.offset + commit.size - 1):
        write_segments(path, {seg_id: data[:cut]})
        store = assert_matches_oracle(path, {seg_id: data[:cut]}, {b"before", b"m1", b"m2"})
        try:
            assert "uncommitted batch dropped" in [d.kind for d in store.damage()]
            assert store.get(b"m1", 0) is None and store.get(b"m2", 0) is None
            assert store.get(b"before", 0).value == b"b"
            store.put(b"later", b"l")
        finally:
            store.close()
        store = LogStore(path)
        try:
            assert store.get(b"m1", 0) is None and store.get(b"before", 0).value == b"b"
            assert store.get(b"later", 0).value == b"l"
        finally:
            store.close()


def test_batch_after_an_uncommitted_batch_survives_reopen(tmp_path: Path) -> None:
    # Regression: the members of a batch cut short by a crash used to swallow the
    # next batch written after the reopen (its commit did not match the first
    # member held), losing an acknowledged batch.
    path = tmp_path / "store"
    store = LogStore(path)
    store.write_batch([BatchOp(b"lost-1", b"1"), BatchOp(b"lost-2", b"2")])
    store.close()
    ((seg_id, data),) = read_segments(path).items()
    commit = fmt.scan_segment(data).valid[-1]
    write_segments(path, {seg_id: data[: commit.offset]})
    store = LogStore(path)
    store.write_batch([BatchOp(b"kept-1", b"a"), BatchOp(b"kept-2", b"b")])
    store.close()
    store = assert_matches_oracle(path, read_segments(path), {b"lost-1", b"kept-1", b"kept-2"})
    try:
        assert store.get(b"kept-1", 0).value == b"a"
        assert store.get(b"kept-2", 0).value == b"b"
        assert store.get(b"lost-1", 0) is None
    finally:
        store.close()


# -- lengths from disk --------------------------------------------------------------------
def _crafted_segments() -> dict[int, bytes]:
    """Records whose length fields claim far more than the file holds."""
    good = fmt.encode_record(fmt.PUT, b"good", b"value", seq=1)
    huge_value = bytearray(fmt.encode_record(fmt.PUT, b"huge", b"v", seq=2))
    huge_value[16:20] = (0xFFFFFFFF).to_bytes(4, "little")  # over the format limit
    long_key = bytearray(fmt.encode_record(fmt.PUT, b"k", b"v", seq=3))
    long_key[10:14] = (2047).to_bytes(2, "little") + (65535).to_bytes(2, "little")
    # A record whose hcheck vouches for a 32 MiB value the file does not hold.
    claims = fmt.encode_record(fmt.PUT, b"claim", bytes(fmt.MAX_VALUE), seq=4)[:200]
    after = fmt.encode_record(fmt.PUT, b"after", b"still here", seq=5)
    sealed = fmt.encode_segment_header(1) + good + bytes(huge_value) + bytes(long_key) + after
    sealed += claims  # runs to the end of a sealed segment: reported, not cut
    newest = fmt.encode_segment_header(2) + after.replace(b"after", b"afte2") + claims
    return {1: sealed, 2: newest}


def test_huge_length_fields_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "store"
    segments = _crafted_segments()
    write_segments(path, segments)
    keys = {b"good", b"huge", b"k", b"claim", b"after"}
    store = assert_matches_oracle(path, segments, keys)
    try:
        assert store.get(b"good", 0).value == b"value"
        assert store.get(b"after", 0).value == b"still here"
        assert store.get(b"claim", 0) is None
        assert {d.kind for d in store.damage()} == {"damaged region", "torn tail cut off"}
    finally:
        store.close()


@pytest.mark.skipif(
    os.environ.get("KVENGINE_SANITIZED") == "1", reason="ASan reserves terabytes of address space"
)
def test_huge_length_fields_cost_no_memory(tmp_path: Path) -> None:
    # The open runs with its address space capped a few MiB above what the process
    # already uses: an allocation sized by a length from the file would fail.
    path = tmp_path / "store"
    write_segments(path, _crafted_segments())
    script = textwrap.dedent(
        f"""
        import resource
        from engine.storage import LogStore
        with open("/proc/self/statm") as f:
            vm = int(f.read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (vm + (12 << 20), resource.RLIM_INFINITY))
        s = LogStore({str(path)!r}, readonly=True)
        assert s.get(b"after", 0).value == b"still here"
        print(len(s.damage()))
        s.close()
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 2
    assert resource.RLIMIT_AS  # the cap exists on this platform


# -- interrupted segment creation ---------------------------------------------------------
@pytest.mark.parametrize("size", [0, 10, 63, 64])
def test_half_created_newest_segment_is_removed(tmp_path: Path, size: int) -> None:
    path = tmp_path / "store"
    good = fmt.encode_segment_header(1) + fmt.encode_record(fmt.PUT, b"k", b"v", seq=1)
    header = bytearray(fmt.encode_segment_header(2, seq_floor=2))
    header[60] ^= 0xFF  # the header's own checksum does not match: never finished
    segments = {1: good, 2: bytes(header[:size])}
    write_segments(path, segments)
    # Not damage (section 5, and the oracle): a reader leaves it out and removes nothing.
    ro = LogStore(path, readonly=True)
    try:
        assert ro.damage() == []
        assert ro.get(b"k", 0).value == b"v"
    finally:
        ro.close()
    assert (path / fmt.segment_file_name(2)).exists()
    store = assert_matches_oracle(path, segments, {b"k"})
    try:
        assert store.damage() == []
        assert not (path / fmt.segment_file_name(2)).exists()
        store.put(b"k2", b"v2")
    finally:
        store.close()
    store = LogStore(path)
    try:
        assert (store.get(b"k", 0).value, store.get(b"k2", 0).value) == (b"v", b"v2")
    finally:
        store.close()
