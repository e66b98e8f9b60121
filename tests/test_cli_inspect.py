"""kvengine segments / inspect / verify, and the read-only segment inspector under them."""

from __future__ import annotations

import itertools
import json
import os
import struct
import subprocess
import sys

import pytest
import xxhash
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import storage
from engine.cli import cli
from engine.errors import EngineIOError, InvalidArgumentError
from engine.inspect import SegmentInspector, hint_ids, segment_paths

RECORD_HEADER = 48  # docs/FORMAT.md section 3


def run(db: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


@pytest.fixture
def store(tmp_path):
    db = str(tmp_path / "store")
    with engine.open(db) as s:
        kv = s.namespace()
        kv.put("first", "1" * 50, metadata={"m": 1})
        kv.put("victim", "v" * 200)
        kv.put("last", "3" * 50, expiration_ttl=600)
        kv.delete("first")
    return db


def record_of(db: str, key: bytes):
    """(segment path, item) of the PUT record of a key of the default namespace."""
    for path in segment_paths(db):
        with SegmentInspector(path) as seg:
            for item in seg:
                if item.type == "PUT" and item.key.endswith(key):
                    return path, item
    raise AssertionError(f"no record of {key!r}")


def flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_inspector_decodes_every_record(store):
    (path,) = segment_paths(store)
    with SegmentInspector(path) as seg:
        assert seg.header.valid and seg.header.id == 1 and not seg.header.compacted
        items = list(seg)
    kinds = [(i.type, i.key[2:]) for i in items if i.key[:2] != b"\x00\x00"]
    assert kinds == [("PUT", b"first"), ("PUT", b"victim"), ("PUT", b"last"), ("DELETE", b"first")]
    assert all(i.checksum_ok for i in items)
    first = items[1]
    assert first.meta == b'{"m":1}' and first.value_len == 50
    assert items[3].expiration > 0
    offsets = [i.offset for i in items]
    assert offsets == sorted(offsets) and offsets[0] == 64
    assert all(a.end == b.offset for a, b in itertools.pairwise(items))


def test_verify_clean_store(store):
    result = ok(run(store, "verify"))
    assert result.stdout.startswith("OK")
    data = json.loads(ok(run(store, "verify", "--json")).stdout)
    assert data["ok"] is True and data["problems"] == [] and data["records"] == 5


def test_verify_finds_a_flipped_value_byte(store):
    path, item = record_of(store, b"victim")
    flip(path, item.offset + RECORD_HEADER + len(item.key) + 7)
    result = run(store, "verify")
    assert result.exit_code == 1
    assert f"DAMAGE: {path} offset {item.offset}: PUT record" in result.stdout
    assert "failed its value checksum" in result.stdout
    data = json.loads(run(store, "verify", "--json").stdout)
    assert data["ok"] is False
    assert [(p["path"], p["offset"]) for p in data["problems"]] == [(path, item.offset)]
    # The store names the damage on read, in one line, and serves the other keys.
    got = run(store, "get", "victim")
    assert got.exit_code == 1 and "Traceback" not in got.stderr
    assert path in got.stderr and str(item.offset) in got.stderr
    assert ok(run(store, "get", "last")).stdout == "3" * 50


def test_verify_finds_a_damaged_header_and_keeps_going(store):
    path, item = record_of(store, b"victim")
    flip(path, item.offset + 1)  # the record magic: the scanner must search past it
    result = run(store, "verify")
    assert result.exit_code == 1
    assert f"{path} offset {item.offset}: " in result.stdout
    assert "hold no valid record" in result.stdout
    out = ok(run(store, "inspect", "1")).stdout
    assert "DAMAGED REGION" in out and "last" in out


def test_torn_tail_of_the_newest_segment_is_a_note(tmp_path):
    # A writer that dies mid-append: it never closes the store (so it writes no
    # hint), and its last record is cut short.
    db = str(tmp_path / "store")
    writer = (
        "import os, sys, engine\n"
        "db = engine.open(sys.argv[1])\n"
        "db.namespace().put('k', 'v' * 100)\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", writer, db], check=True, timeout=60)
    (path,) = segment_paths(db)
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\x52\x56\x4b\xec" + b"\x01" * 20)  # a record header cut short
    result = ok(run(db, "verify"))
    assert f"note: {path} offset {size}: torn tail" in result.stdout


def test_verify_lists_a_bad_segment_header(store):
    (path,) = segment_paths(store)
    flip(path, 3)
    result = run(store, "verify")
    assert result.exit_code == 1
    assert f"DAMAGE: {path} offset 0: bad segment header" in result.stdout


def test_inspect_table_and_json(store):
    (path,) = segment_paths(store)
    table = ok(run(store, "inspect", "0000000000000001")).stdout
    assert "victim" in table and "DELETE" in table and "CHECKSUM" in table
    assert ok(run(store, "inspect", path)).stdout == table
    lines = ok(run(store, "inspect", "1", "--json", "--limit", "2")).stdout.splitlines()
    header = json.loads(lines[0])
    assert header["id"] == 1 and header["valid"] is True
    records = [json.loads(line) for line in lines[1:]]
    assert len(records) == 2
    assert records[1]["key"] == "first" and records[1]["namespace_id"] == 1
    assert records[1]["checksum_ok"] is True and records[1]["meta_len"] == 7


def test_inspect_escapes_keys(tmp_path):
    db = str(tmp_path / "store")
    with engine.open(db) as s:
        s.namespace().put("bell\x07\x1b]0;title", "v")
    out = ok(run(db, "inspect", "1")).stdout
    assert "\x1b" not in out and "\x07" not in out
    assert "bell\\x07\\x1b]0;title" in out


def test_inspect_bad_arguments(store, tmp_path):
    assert run(store, "inspect", "not-hex").exit_code == 2
    missing = run(store, "inspect", "ff")
    assert missing.exit_code == 1 and "No such file or directory" in missing.stderr
    other = tmp_path / "notes.seg"
    other.write_bytes(b"x" * 100)
    wrong = run(store, "inspect", str(other))
    assert wrong.exit_code == 1 and "not a segment file name" in wrong.stderr


def test_inspector_refuses_symbolic_links(store, tmp_path):
    (path,) = segment_paths(store)
    link_dir = tmp_path / "links"
    link_dir.mkdir()
    link = link_dir / "0000000000000001.seg"
    os.symlink(path, link)
    with pytest.raises(EngineIOError):
        SegmentInspector(link)
    result = run(str(link_dir), "inspect", "1")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    with pytest.raises(InvalidArgumentError):
        SegmentInspector(tmp_path / "store" / "LOCK")


def test_inspector_on_short_and_empty_files(tmp_path):
    for size in (0, 10, 63):
        path = tmp_path / f"{size + 1:016x}.seg"
        path.write_bytes(b"\x00" * size)
        with SegmentInspector(path) as seg:
            assert not seg.header.valid
            assert list(seg) == []


def test_inspector_on_garbage_never_trusts_lengths(tmp_path):
    # A header-shaped prefix followed by 0xff: every length field is huge.
    path = tmp_path / "0000000000000001.seg"
    path.write_bytes(b"KVENGSEG" + b"\xff" * 4000)
    with SegmentInspector(path) as seg:
        items = list(seg)
    assert [i.kind for i in items] == ["tail"]
    assert items[0].offset == 64 and items[0].end == 4008


def test_segments_lists_files(store):
    text = ok(run(store, "segments")).stdout
    assert "0000000000000001.seg" in text
    (data,) = json.loads(ok(run(store, "segments", "--json")).stdout)
    assert data["records"] == {"PUT": 4, "DELETE": 1}
    assert data["header_ok"] is True and data["damaged_bytes"] == 0


@pytest.mark.skipif(
    not hasattr(storage, "check_hint"), reason="this build has no hint files (check_hint)"
)
def test_verify_checks_hint_files(tmp_path):
    db = str(tmp_path / "store")
    with engine.open(db, max_segment_bytes=4096) as s:
        kv = s.namespace()
        for i in range(200):
            kv.put(f"key-{i:04d}", "x" * 100)
        if hasattr(storage.LogStore, "compact"):
            s.compact()
    ids = hint_ids(db)
    assert ids, "sealed segments should have hint files"
    assert ok(run(db, "verify")).stdout.startswith("OK")
    hint = os.path.join(db, f"{ids[0]:016x}.hint")
    flip(hint, os.path.getsize(hint) // 2)
    result = run(db, "verify")
    assert result.exit_code == 1
    assert hint in result.stdout


def test_a_segment_retired_meanwhile_is_skipped(tmp_path):
    from engine.cli_verify import summarize_segment

    assert summarize_segment(str(tmp_path / "0000000000000009.seg")) is None


def test_inspect_takes_a_bare_file_name_of_the_store(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "victim" in ok(run(store, "inspect", "0000000000000001.seg")).stdout


def _tiles(path) -> list:
    with SegmentInspector(path) as seg:
        items = list(seg)
        size = seg.header.size
    pos = 64
    for item in items:
        assert item.offset == pos and item.end > item.offset
        pos = item.end
    assert pos == max(size, 64)
    return items


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), max_size=8))
def test_damaged_segments_are_tiled_by_records_and_damage(store, tmp_path, flips):
    """Whatever bytes are changed, the inspector accounts for every byte after the
    header exactly once, as records or damage, and reads nothing out of bounds."""
    (path,) = segment_paths(store)
    with open(path, "rb") as f:
        data = bytearray(f.read())
    for at, xor in flips:
        data[64 + at % (len(data) - 64)] ^= xor
    copy = tmp_path / "copy"
    copy.mkdir(exist_ok=True)
    target = copy / "0000000000000001.seg"
    target.write_bytes(bytes(data))
    items = _tiles(target)
    if not flips:
        assert all(i.checksum_ok for i in items)


def test_a_fifo_under_a_segment_name_does_not_hang(tmp_path):
    db = tmp_path / "store"
    db.mkdir()
    os.mkfifo(db / "0000000000000001.seg")
    with pytest.raises(EngineIOError):
        SegmentInspector(db / "0000000000000001.seg")
    result = run(str(db), "verify")
    assert result.exit_code == 1 and "cannot be read" in result.stdout


def _header_only_segment(path, seg_id: int, flags: int) -> None:
    """A valid segment header and no records (docs/FORMAT.md section 2), written here
    from the spec as an independent oracle."""
    head = b"KVENGSEG" + struct.pack("<IIQQQ16x", 1, flags, seg_id, 1, 0)
    path.write_bytes(head + struct.pack("<Q", xxhash.xxh64(head).intdigest()))


@pytest.mark.parametrize(("flags", "torn_is_damage"), [(1, False), (0, True)])
def test_torn_tail_belongs_to_the_newest_appended_segment(tmp_path, flags, torn_is_damage):
    db = tmp_path / "store"
    writer = (
        "import os, sys, engine\n"
        "db = engine.open(sys.argv[1])\n"
        "db.namespace().put('k', 'v' * 100)\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", writer, str(db)], check=True, timeout=60)
    (path,) = segment_paths(db)
    size = os.path.getsize(path)
    with open(path, "ab") as f:
        f.write(b"\x52\x56\x4b\xec" + b"\x01" * 20)
    # A newer segment: a compaction output (flag 1) is never appended to, so the
    # older segment is still the one a crash can leave torn; a plain one is not.
    _header_only_segment(db / "0000000000000007.seg", 7, flags)
    result = run(str(db), "verify")
    assert result.exit_code == (1 if torn_is_damage else 0), result.stdout
    label = "DAMAGE" if torn_is_damage else "note"
    assert f"{label}: {path} offset {size}: " in result.stdout


def test_read_only_commands_beside_a_writer_at_work(tmp_path):
    """A writer process appends (and rolls segments) while verify, segments and
    reads run: no false damage, no error, no lock conflict."""
    db = str(tmp_path / "store")
    writer = (
        "import sys, time, engine\n"
        "with engine.open(sys.argv[1], max_segment_bytes=16384) as db:\n"
        "    kv = db.namespace()\n"
        "    kv.put('fixed', 'here before')\n"
        "    print('ready', flush=True)\n"
        "    end = time.monotonic() + 2.0\n"
        "    i = 0\n"
        "    while time.monotonic() < end:\n"
        "        kv.put(f'k{i % 500}', 'v' * (i % 300))\n"
        "        i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, db], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        rounds = 0
        while proc.poll() is None and rounds < 20:
            checked = run(db, "verify")
            assert checked.exit_code == 0, checked.stdout
            assert "DAMAGE" not in checked.stdout
            ok(run(db, "segments"))
            assert ok(run(db, "get", "fixed")).stdout == "here before"
            rounds += 1
        assert rounds > 0, "the writer finished before any check ran"
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == 0
    assert ok(run(db, "verify")).stdout.startswith("OK")
