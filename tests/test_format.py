"""docs/FORMAT.md, csrc/kv_format.h, the oracle and the engine's bytes all agree.

* The field tables of FORMAT.md (parsed from the document itself) equal the oracle's
  tables and the offsets in csrc/kv_format.h; every constant of kv_format.h equals
  the value the text gives.
* Bytes the engine writes decode with the independent oracle, field for field; bytes
  the oracle writes are read by the engine.
* The worked example of section 3 is exactly what the engine writes.
"""

from __future__ import annotations

import ast
import operator
import re
import struct
from pathlib import Path

import oracle_format as fmt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.storage import BatchOp, LogStore

ROOT = Path(__file__).resolve().parent.parent
FORMAT_MD = (ROOT / "docs" / "FORMAT.md").read_text()
KV_FORMAT_H = (ROOT / "csrc" / "kv_format.h").read_text()


# -- reading the documents -------------------------------------------------------------
def _code_blocks(markdown: str) -> list[str]:
    return re.findall(r"```\n(.*?)```", markdown, re.S)


def _field_table(first_row: str) -> dict[str, tuple[int, int]]:
    """The OFFSET SIZE FIELD table whose first field row starts with first_row."""
    for block in _code_blocks(FORMAT_MD):
        lines = block.splitlines()
        if not lines or lines[0].split()[:3] != ["OFFSET", "SIZE", "FIELD"]:
            continue
        rows = [line.split() for line in lines[1:] if line.strip()]
        if " ".join(rows[0][:3]) != first_row:
            continue
        table = {}
        for row in rows:
            if row[1].isdigit():  # a fixed-size field; variable ones (key, meta ...) have none
                table[row[2]] = (int(row[0]), int(row[1]))
        return table
    raise AssertionError(f"FORMAT.md has no field table starting {first_row!r}")


_BINOPS = {ast.Mult: operator.mul, ast.Add: operator.add, ast.LShift: operator.lshift}


def _c_int(expr: str) -> int:
    """Evaluates a kv_format.h constant expression: integers (u suffix), * + <<, parentheses."""
    tree = ast.parse(re.sub(r"\b(0x[0-9A-Fa-f]+|\d+)u\b", r"\1", expr), mode="eval")

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return int(_BINOPS[type(node.op)](ev(node.left), ev(node.right)))
        raise ValueError(f"unsupported constant expression {expr!r}")

    return ev(tree)


def _header_constants() -> dict[str, int | bytes]:
    out: dict[str, int | bytes] = {}
    define = re.compile(r"^#define (KV_\w+)[ \t]+(.+?)[ \t]*(?:/\*.*)?$", re.M)
    for name, value in define.findall(KV_FORMAT_H):
        value = value.strip()
        out[name] = value.strip('"').encode() if value.startswith('"') else _c_int(value)
    return out


HEADER = _header_constants()


# -- the tables ------------------------------------------------------------------------
def test_segment_header_table_matches_oracle_and_header() -> None:
    doc = _field_table("0 8 magic")
    assert "version" in doc and "hcheck" in doc
    assert doc == fmt.SEG_FIELDS
    assert sum(size for _, size in doc.values()) == fmt.SEG_HEADER_SIZE == HEADER["KV_SEG_HDR_SIZE"]
    c_names = {
        "version": "KV_SEG_OFF_VERSION",
        "flags": "KV_SEG_OFF_FLAGS",
        "segment_id": "KV_SEG_OFF_ID",
        "seq_floor": "KV_SEG_OFF_SEQ_FLOOR",
        "created_ns": "KV_SEG_OFF_CREATED",
        "hcheck": "KV_SEG_OFF_HCHECK",
    }
    assert {f: HEADER[c] for f, c in c_names.items()} == {f: doc[f][0] for f in c_names}


def test_record_table_matches_oracle_and_header() -> None:
    doc = _field_table("0 4 magic")
    # The document names both reserved fields "reserved"; the oracle tells them apart.
    oracle = {name.rstrip("0123456789"): v for name, v in fmt.REC_FIELDS.items()}
    assert {k: v for k, v in doc.items() if k != "reserved"} == {
        k: v for k, v in oracle.items() if k != "reserved"
    }
    assert sorted(v for k, v in fmt.REC_FIELDS.items() if k.startswith("reserved")) == [
        (14, 2),
        (20, 4),
    ]
    assert sum(size for _, size in fmt.REC_FIELDS.values()) == fmt.REC_HEADER_SIZE
    c_names = {
        "hcheck": "KV_REC_OFF_HCHECK",
        "type": "KV_REC_OFF_TYPE",
        "flags": "KV_REC_OFF_FLAGS",
        "key_len": "KV_REC_OFF_KLEN",
        "meta_len": "KV_REC_OFF_MLEN",
        "reserved16": "KV_REC_OFF_RSV16",
        "value_len": "KV_REC_OFF_VLEN",
        "reserved32": "KV_REC_OFF_RSV32",
        "seq": "KV_REC_OFF_SEQ",
        "expiration": "KV_REC_OFF_EXPIRATION",
        "check": "KV_REC_OFF_CHECK",
    }
    assert {f: HEADER[c] for f, c in c_names.items()} == {f: fmt.REC_FIELDS[f][0] for f in c_names}


def test_hint_tables_match_header() -> None:
    head = _field_table("0 8 magic")  # the segment header also starts so: take the hint one
    hint_blocks = [b for b in _code_blocks(FORMAT_MD) if "segment_id   the segment described" in b]
    assert len(hint_blocks) == 1
    rows = [r.split() for r in hint_blocks[0].splitlines()[1:] if r.strip()]
    hint = {r[2]: (int(r[0]), int(r[1])) for r in rows}
    assert hint["version"][0] == HEADER["KV_HINT_OFF_VERSION"]
    assert hint["segment_id"][0] == HEADER["KV_HINT_OFF_ID"]
    assert sum(s for _, s in hint.values()) == HEADER["KV_HINT_HDR_SIZE"] == fmt.HINT_HEADER_SIZE
    assert head != hint
    entry = _field_table("0 1 type")
    assert sum(s for _, s in entry.values()) == HEADER["KV_HINT_ENTRY_SIZE"] == fmt.HINT_ENTRY_SIZE
    words = " ".join(FORMAT_MD.split())
    assert "a 32-byte trailer: `max_seq` (u64," in words
    trailer = words.split("a 32-byte trailer:", 1)[1].split(". ", 1)[0]
    named = [f for f in fmt.HINT_TRAILER_FIELDS if f"`{f}` (u64" in trailer or f"`{f}`" in trailer]
    assert named == list(fmt.HINT_TRAILER_FIELDS)
    order = sorted(fmt.HINT_TRAILER_FIELDS, key=lambda f: trailer.index(f"`{f}`"))
    assert [fmt.HINT_TRAILER_FIELDS[f] for f in order] == list(range(0, 32, 8))
    assert HEADER["KV_HINT_TRAILER_SIZE"] == fmt.HINT_TRAILER_SIZE == 32


def test_constants_of_kv_format_h_equal_the_text() -> None:
    # Each pair: the header's value, the oracle's (written from the text).
    pairs = {
        "KV_FORMAT_VERSION": fmt.FORMAT_VERSION,
        "KV_SEG_MAGIC": fmt.SEG_MAGIC,
        "KV_SEG_F_COMPACTED": fmt.SEG_FLAG_COMPACTED,
        "KV_REC_MAGIC": fmt.REC_MAGIC,
        "KV_REC_HDR_SIZE": fmt.REC_HEADER_SIZE,
        "KV_REC_ALIGN": fmt.REC_ALIGN,
        "KV_REC_PUT": fmt.PUT,
        "KV_REC_DELETE": fmt.DELETE,
        "KV_REC_EXPIRE": fmt.EXPIRE,
        "KV_REC_BATCH_COMMIT": fmt.BATCH_COMMIT,
        "KV_REC_F_BATCH": fmt.REC_FLAG_BATCH,
        "KV_MAX_KEY": fmt.MAX_KEY,
        "KV_MAX_META": fmt.MAX_META,
        "KV_MAX_VALUE": fmt.MAX_VALUE,
        "KV_BATCH_COMMIT_VLEN": fmt.BATCH_COMMIT_VALUE_SIZE,
        "KV_HINT_MAGIC": fmt.HINT_MAGIC,
        "KV_HINT_F_META": fmt.HINT_FLAG_META,
        "KV_MANIFEST_MAGIC": fmt.MANIFEST_MAGIC,
        "KV_MANIFEST_HDR_SIZE": fmt.MANIFEST_HEADER_SIZE,
        "KV_HINT_TR_MAX_SEQ": fmt.HINT_TRAILER_FIELDS["max_seq"],
        "KV_HINT_TR_DATA_SIZE": fmt.HINT_TRAILER_FIELDS["data_size"],
        "KV_HINT_TR_COUNT": fmt.HINT_TRAILER_FIELDS["count"],
        "KV_HINT_TR_CHECK": fmt.HINT_TRAILER_FIELDS["check"],
    }
    assert {name: HEADER[name] for name in pairs} == pairs
    # Checksummed ranges: hcheck from byte 8 over the rest of the header, check over 8..39.
    assert (HEADER["KV_REC_HCHECK_FROM"], HEADER["KV_REC_CHECK_FROM"]) == (8, 8)
    assert HEADER["KV_REC_CHECK_TO"] == fmt.REC_FIELDS["check"][0] == 40
    # The text states these limits in words; the oracle must have read them right.
    words = " ".join(FORMAT_MD.split())
    assert "`key_len <= 2047`, `value_len <= 32 MiB`" in words
    assert "0..33554432 (32 MiB)" in words and fmt.MAX_VALUE == 33554432
    assert "magic 0xEC4B5652 (bytes 52 56 4b ec)" in words
    assert struct.pack("<I", fmt.REC_MAGIC) == bytes.fromhex("52564bec")
    # Every constant kv_format.h defines is covered here or by the table tests.
    checked = set(pairs) | {"KV_REC_HCHECK_FROM", "KV_REC_CHECK_FROM", "KV_REC_CHECK_TO"}
    checked |= {n for n in HEADER if "_OFF_" in n or n.endswith("_SIZE")}
    assert set(HEADER) - checked == set()


def test_issue_limits_fit_the_format() -> None:
    # Workers KV limits (keys 512 bytes, metadata 1024, values 25 MiB) with room to grow.
    assert fmt.MAX_KEY >= 512 and fmt.MAX_META >= 1024 and fmt.MAX_VALUE >= 25 * 2**20


# -- the worked example ------------------------------------------------------------------
def _worked_example() -> tuple[bytes, bytes]:
    """The example's bytes, and a mask of the bytes it spells out (hh/cc are checksums)."""
    text = FORMAT_MD.split("Worked example:", 1)[1]
    block = _code_blocks(text)[0]
    data, known = bytearray(), bytearray()
    for line in block.splitlines():
        for tok in line.split("   ")[0].split():
            is_hex = tok not in ("hh", "cc")
            data.append(int(tok, 16) if is_hex else 0)
            known.append(1 if is_hex else 0)
    return bytes(data), bytes(known)


def _masked(data: bytes, mask: bytes) -> bytes:
    return bytes(b if m else 0 for b, m in zip(data, mask, strict=True))


def test_worked_example_is_what_the_oracle_writes() -> None:
    example, mask = _worked_example()
    assert len(example) == 56
    record = fmt.encode_record(fmt.PUT, b"k1", b"hello", seq=8)
    assert _masked(record, mask) == example
    assert fmt.read_record(fmt.encode_segment_header(1) + record, 64)[0] is fmt.Status.VALID


def test_worked_example_is_what_the_engine_writes(store_path: Path) -> None:
    example, mask = _worked_example()
    store = LogStore(store_path)
    for i in range(7):
        store.put(b"other%d" % i, b"v")
    store.put(b"k1", b"hello")
    store.close()
    (seg,) = store_path.glob("*.seg")
    scan = fmt.scan_segment(seg.read_bytes())
    last = scan.valid[-1]
    assert (last.seq, last.key, last.value) == (8, b"k1", b"hello")
    written = seg.read_bytes()[last.offset : last.offset + 56]
    assert _masked(written, mask) == example
    assert written == fmt.encode_record(fmt.PUT, b"k1", b"hello", seq=8)


# -- engine bytes through the oracle ---------------------------------------------------------
def _segments(path: Path) -> dict[int, bytes]:
    return {int(p.stem, 16): p.read_bytes() for p in sorted(path.glob("*.seg"))}


def test_engine_segment_decodes_with_oracle(store_path: Path) -> None:
    store = LogStore(store_path)
    store.put(b"a", b"1")
    store.put(b"meta", b"value", meta=b'{"x":1}', expiration=2_000_000_000)
    store.put(b"a", b"2")
    store.delete(b"a")
    store.write_batch([BatchOp(b"b1", b"x"), BatchOp(b"b2", b"y", b"m"), BatchOp(b"meta")])
    store.put(b"", b"empty key")
    store.close()
    (seg_id, data), *_ = _segments(store_path).items()
    (path,) = store_path.glob("*.seg")
    assert path.name == fmt.segment_file_name(seg_id)
    header = fmt.decode_segment_header(data, seg_id)
    assert (header.version, header.flags, header.seq_floor) == (1, 0, 1)
    assert data[40:56] == bytes(16)
    scan = fmt.scan_segment(data)
    assert scan.damaged == [] and scan.regions == [] and scan.valid_end == len(data)
    got = [(r.type, r.flags, r.key, r.meta, r.value, r.expiration) for r in scan.valid]
    B = fmt.REC_FLAG_BATCH
    assert got == [
        (fmt.PUT, 0, b"a", b"", b"1", 0),
        (fmt.PUT, 0, b"meta", b'{"x":1}', b"value", 2_000_000_000),
        (fmt.PUT, 0, b"a", b"", b"2", 0),
        (fmt.DELETE, 0, b"a", b"", b"", 0),
        (fmt.PUT, B, b"b1", b"", b"x", 0),
        (fmt.PUT, B, b"b2", b"m", b"y", 0),
        (fmt.DELETE, B, b"meta", b"", b"", 0),
        (fmt.BATCH_COMMIT, 0, b"", b"", fmt.batch_commit_value(5, 3), 0),
        (fmt.PUT, 0, b"", b"", b"empty key", 0),
    ]
    assert [r.seq for r in scan.valid] == list(range(1, 10))
    assert all(r.offset % 8 == 0 for r in scan.valid)
    view = fmt.expected_view(_segments(store_path))
    assert view.damage == set()
    assert {k: view.answer(k) for k in view.live_keys()} == {
        b"b1": b"x",
        b"b2": b"y",
        b"": b"empty key",
    }


def test_records_are_padded_with_zero_bytes(store_path: Path) -> None:
    store = LogStore(store_path)
    for n in range(9):
        store.put(b"k", b"v" * n)
    store.close()
    (data,) = _segments(store_path).values()
    for rec in fmt.scan_segment(data).valid:
        assert data[rec.offset + rec.size : rec.offset + rec.padded_size] == bytes(
            rec.padded_size - rec.size
        )


def test_new_segment_records_seq_floor(store_path: Path) -> None:
    store = LogStore(store_path)
    store.put(b"k", b"v")
    store.close()
    store = LogStore(store_path, max_segment_bytes=4096)
    store.put(b"big", b"x" * 5000)  # does not fit the first segment: a new one
    store.close()
    segs = _segments(store_path)
    assert len(segs) == 2
    first, second = sorted(segs)
    assert second == first + 1
    assert fmt.decode_segment_header(segs[second], second).seq_floor == 2
    assert fmt.scan_segment(segs[second]).valid[0].seq == 2


def test_engine_reads_what_the_oracle_writes(store_path: Path) -> None:
    store_path.mkdir(mode=0o700)
    records = [
        fmt.encode_record(fmt.PUT, b"x", b"old", seq=3),
        fmt.encode_record(fmt.PUT, b"y", b"why", seq=4, meta=b"{}", expiration=4_000_000_000),
        fmt.encode_record(fmt.PUT, b"z", b"zed", seq=5, flags=fmt.REC_FLAG_BATCH),
        fmt.encode_record(fmt.BATCH_COMMIT, value=fmt.batch_commit_value(5, 1), seq=6),
    ]
    older = fmt.encode_record(fmt.PUT, b"x", b"new", seq=9)  # in the lower-id segment
    (store_path / fmt.segment_file_name(7)).write_bytes(fmt.encode_segment_header(7) + older)
    (store_path / fmt.segment_file_name(8)).write_bytes(
        fmt.encode_segment_header(8) + b"".join(records)
    )
    store = LogStore(store_path)
    try:
        assert store.damage() == []
        assert store.get(b"x", 0).value == b"new"  # by sequence number, not file order
        assert store.get(b"y", 0) == (b"why", b"{}", 4_000_000_000)
        assert store.get(b"z", 0).value == b"zed"
        assert store.stats(0)["next_seq"] == 10
        store.put(b"w", b"after")
    finally:
        store.close()
    segs = _segments(store_path)
    assert max(segs) == 8  # the healthy newest segment is continued
    assert fmt.scan_segment(segs[8]).valid[-1].seq == 10


def test_seq_floor_keeps_sequence_numbers_monotonic(store_path: Path) -> None:
    store_path.mkdir(mode=0o700)
    (store_path / fmt.segment_file_name(1)).write_bytes(
        fmt.encode_segment_header(1, seq_floor=500) + fmt.encode_record(fmt.PUT, b"k", seq=3)
    )
    with_store = LogStore(store_path)
    with_store.put(b"k2", b"v")
    with_store.close()
    assert fmt.scan_segment(_segments(store_path)[1]).valid[-1].seq == 500


keys = st.binary(max_size=64)
values = st.binary(max_size=300)
metas = st.binary(max_size=40)
expirations = st.sampled_from([0, 1, 2**31, 2**32 - 1, 2**32, 2**63])


@given(
    ops=st.lists(
        st.tuples(keys, st.one_of(st.none(), values), metas, expirations), min_size=1, max_size=12
    )
)
def test_round_trip_of_random_writes(tmp_path_factory: pytest.TempPathFactory, ops: list) -> None:  # type: ignore[type-arg]
    path = tmp_path_factory.mktemp("rt") / "store"
    store = LogStore(path)
    written = []
    for key, value, meta, exp in ops:
        if value is None:
            if store.delete(key):
                written.append((fmt.DELETE, key, b"", b"", 0))
        else:
            store.put(key, value, meta, exp)
            written.append((fmt.PUT, key, meta, value, exp))
    store.close()
    (data,) = _segments(path).values()
    scan = fmt.scan_segment(data)
    assert scan.damaged == [] and scan.regions == []
    assert [(r.type, r.key, r.meta, r.value, r.expiration) for r in scan.valid] == written
    # The oracle's view of the file and the reopened engine agree on every key.
    view = fmt.expected_view(_segments(path))
    store = LogStore(path)
    try:
        for key in {op[0] for op in ops}:
            got = store.get(key, 0)
            want = view.versions.get(key)
            if want is None or want.value is None or 0 < want.expiration <= 0:
                assert got is None
            else:
                assert got is not None
                assert (got.value, got.meta or b"", got.expiration) == (
                    want.value,
                    want.meta,
                    want.expiration,
                )
    finally:
        store.close()
