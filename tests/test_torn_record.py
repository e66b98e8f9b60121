"""A write cut short must never let bytes inside its value be read as records.

A value may hold anything, including bytes that form valid records (say, a
copy of another store's segment).  When the last write of the newest segment
is torn, recovery must cut it off whole instead of searching its value bytes
for records (docs/FORMAT.md section 5, rule 5).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.storage import LogStore


def _segment(path: Path) -> Path:
    (seg,) = sorted(path.glob("*.seg"))
    return seg


@pytest.fixture
def foreign_records(tmp_path: Path) -> bytes:
    """The records of another store: one valid PUT of b"ghost"."""
    store = LogStore(tmp_path / "other")
    store.put(b"ghost", b"boo")
    store.close()
    return _segment(tmp_path / "other").read_bytes()[64:]


# The record is 56,064 bytes, no padding: every cut reaches its value.
@pytest.mark.parametrize("cut_back", [1, 7, 8, 100, 5000, 50_000])
@pytest.mark.parametrize("streamed", [False, True])
def test_torn_value_holding_records_is_cut_whole(
    tmp_path: Path, foreign_records: bytes, cut_back: int, streamed: bool
) -> None:
    path = tmp_path / "store"
    store = LogStore(path)
    store.put(b"before", b"kept")
    # "before" fills bytes 64..127 and b"big-value" a 57-byte header and key, so 7
    # bytes of zeros put the foreign records at 8-aligned file offsets, where a
    # reader searching for records would find them.
    value = b"\0" * 7 + foreign_records * 1000
    if streamed:  # through the spool file and kv_put_fd
        chunks = [value[i : i + 65536] for i in range(0, len(value), 65536)]
        store.put_stream(b"big-value", chunks)
    else:
        store.put(b"big-value", value)
    store.close()
    seg = _segment(path)
    os.truncate(seg, seg.stat().st_size - cut_back)

    store = LogStore(path)
    try:
        assert store.get(b"before", 0).value == b"kept"
        assert store.get(b"big-value", 0) is None
        assert store.get(b"ghost", 0) is None
        assert [d.kind for d in store.damage()] == ["torn tail cut off"]
        store.put(b"after", b"x")  # appends follow the last whole record again
    finally:
        store.close()
    store = LogStore(path)
    try:
        assert store.get(b"after", 0).value == b"x"
        assert store.damage() == []
    finally:
        store.close()
