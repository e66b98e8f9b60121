"""engine/rawbytes.py: the bytes objects large reads are filled into."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine
from engine import rawbytes
from engine._ffi import ffi


def test_a_new_object_is_fresh_writable_and_of_the_asked_size() -> None:
    first, dst1 = rawbytes.new_bytes(4096)
    second, dst2 = rawbytes.new_bytes(4096)
    assert len(first) == len(second) == 4096 and first is not second
    ffi.memmove(dst1, b"a" * 4096, 4096)
    ffi.memmove(dst2, b"b" * 4096, 4096)
    assert first == b"a" * 4096 and second == b"b" * 4096


def test_sizes_below_two_are_refused() -> None:
    # CPython shares its bytes objects of length 0 and 1: writing one would
    # change every empty or one-byte bytes in the process.
    for n in (0, 1):
        with pytest.raises(ValueError, match="at least 2"):
            rawbytes.new_bytes(n)


def test_large_reads_work_with_the_zeroed_fallback(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rawbytes, "_alloc", bytes)
    value = bytes(range(256)) * 8192  # 2 MiB: past the per-thread buffer
    with engine.open(tmp_path / "db") as s:
        ns = s.namespace()
        ns.put("big", value, metadata=[1])
        assert ns.get("big", "bytes") == value
        assert ns.get_with_metadata("big", "bytes") == engine.ValueWithMetadata(value, [1])
