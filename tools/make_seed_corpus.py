"""Writes the seed corpora of the libFuzzer harnesses (csrc/fuzz) from real stores.

Each harness reads a flags byte and then file bytes (see the harness's header comment); the
seeds are the records and segments of small stores written through the engine itself: puts with
and without metadata and expiration, deletes, batches, several segments, and a torn last write.

    python tools/make_seed_corpus.py OUT_DIR     # writes OUT_DIR/{record,segment,open}/
"""

from __future__ import annotations

import hashlib
import os
import struct
import sys
import tempfile
from pathlib import Path

from engine.storage import BatchOp, LogStore

SEG_HDR = 64
REC_HDR = struct.Struct("<IIBBHHHIIQQQ")


def _stores(base: Path) -> list[list[bytes]]:
    """Builds a few stores; returns each one's segment files, oldest first."""
    layouts = []
    for variant in range(3):
        path = base / f"s{variant}"
        store = LogStore(path, max_segment_bytes=4096)
        for i in range(12 + 10 * variant):
            key = b"key-%d" % (i % 7)
            meta = b'{"n":%d}' % i if i % 3 == 0 else b""
            store.put(key, b"v" * (i * 37 % 300), meta, 2_000_000_000 if i % 4 == 0 else 0)
            if i % 5 == 4:
                store.delete(b"key-%d" % ((i + 1) % 7))
            if i == 6:
                store.write_batch([BatchOp(b"b1", b"one"), BatchOp(b"b2", b"two"), BatchOp(b"k")])
        store.close()
        layouts.append([p.read_bytes() for p in sorted(path.glob("*.seg"))])
    return layouts


def _records(segment: bytes) -> list[bytes]:
    out, off = [], SEG_HDR
    while off + REC_HDR.size <= len(segment):
        fields = REC_HDR.unpack_from(segment, off)
        size = REC_HDR.size + fields[4] + fields[5] + fields[7]
        out.append(segment[off : off + size])
        off += (size + 7) // 8 * 8
    return out


def _write(folder: Path, seeds: list[bytes]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (folder / hashlib.sha1(seed).hexdigest()).write_bytes(seed)


def make(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        layouts = _stores(Path(tmp))
    segments = [seg for layout in layouts for seg in layout]
    records = [rec for seg in segments for rec in _records(seg)]
    _write(out / "record", [bytes([f]) + rec for rec in records for f in (0, 1)])
    torn = [seg[: len(seg) - 5] for seg in segments if len(seg) > SEG_HDR + 5]
    _write(
        out / "segment",
        [b"\0" + seg[SEG_HDR:] for seg in segments + torn] + [b"\2" + seg for seg in segments],
    )
    opens = []
    for layout in layouts:
        bodies = b"SEG|".join(seg[SEG_HDR:] for seg in layout[:3])
        opens += [b"\0" + bodies, b"\2" + bodies, b"\4" + bodies]
    _write(out / "open", opens)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    make(Path(sys.argv[1]))
    print(f"seed corpora written under {os.path.abspath(sys.argv[1])}")
