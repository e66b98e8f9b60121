"""kvengine export / import: wrangler bulk files that round-trip a namespace exactly."""

from __future__ import annotations

import json
import os
import time

import pytest
from click.testing import CliRunner, Result

import engine
from engine.cli import cli
from engine.cli_wrangler import ExportWriter, read_pairs


def run(db: str, *args: str, ns: str = "default") -> Result:
    return CliRunner().invoke(cli, ["--db", db, "--namespace", ns, *args], catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def snapshot(db: str, ns: str) -> dict[str, tuple[bytes, int | None, object]]:
    """Every key of a namespace: value bytes, expiration, metadata."""
    out = {}
    with engine.open(db, readonly=True) as store:
        kv = store.namespace(ns)
        cursor = None
        while True:
            page = kv.list(cursor=cursor)
            for k in page.keys:
                out[k.name] = (kv.get(k.name, type="bytes"), k.expiration, k.metadata)
            if page.list_complete:
                return out
            cursor = page.cursor


def test_export_import_round_trip_is_exact(tmp_path):
    src, dst, out = str(tmp_path / "src"), str(tmp_path / "dst"), tmp_path / "dump"
    later = int(time.time()) + 3600
    with engine.open(src) as store:
        kv = store.namespace("MY_KV")
        kv.put("text", "hello", metadata={"lang": "en"})
        kv.put("binary", b"\xff\x00\xfe raw", expiration=later)
        kv.put("empty", b"")
        kv.put("unicode-ключ-🔑", "значение", metadata=[1, "two", None])
        kv.put("../../escape", "not a path", metadata={"nested": {"deep": [True, 1.5]}})
        kv.put("a/b\\c", "slashes", expiration_ttl=7200)
        kv.put("number-meta", "x", metadata=42)
        kv.put("latin1", "caf\xe9".encode("latin-1"))
        store.namespace("other").put("text", "must not be exported")
    result = ok(run(src, "export", "--out", str(out), ns="MY_KV"))
    assert result.stdout.split() == [str(out / "MY_KV-0001.json")]
    assert "not a JSON object" in result.stderr  # the metadata 42
    assert sorted(os.listdir(tmp_path)) == ["dump", "src"]
    assert os.listdir(out) == ["MY_KV-0001.json"]

    items, warnings = read_pairs(str(out / "MY_KV-0001.json"))
    assert warnings == []
    by_key = {i["key"]: i for i in items}
    assert by_key["binary"]["base64"] is True and by_key["binary"]["expiration"] == later
    assert "base64" not in by_key["text"]

    ok(run(dst, "import", str(out / "MY_KV-0001.json"), ns="COPY"))
    assert snapshot(dst, "COPY") == snapshot(src, "MY_KV")
    assert snapshot(dst, "COPY")["binary"][0] == b"\xff\x00\xfe raw"


def test_export_splits_at_ten_thousand_pairs(tmp_path):
    src, dst, out = str(tmp_path / "src"), str(tmp_path / "dst"), tmp_path / "dump"
    with engine.open(src) as store:
        kv = store.namespace()
        kv.put_many([{"key": f"k{i:05d}", "value": str(i)} for i in range(10_000)])
        kv.put("last", "one more")
    files = ok(run(src, "export", "--out", str(out))).stdout.split()
    assert [os.path.basename(f) for f in files] == ["default-0001.json", "default-0002.json"]
    assert [len(read_pairs(f)[0]) for f in files] == [10_000, 1]
    ok(run(dst, "import", *files))
    assert snapshot(dst, "default") == snapshot(src, "default")


def test_writer_keeps_each_file_under_the_byte_limit(tmp_path):
    writer = ExportWriter(str(tmp_path), "ns", max_pairs=1000, max_bytes=200)
    items = [{"key": f"key-{i}", "value": "v" * 40} for i in range(10)]
    for item in items:
        writer.add(item)
    files = writer.close()
    assert len(files) > 1
    read_back = []
    for path in files:
        assert os.path.getsize(path) < 200
        with open(path) as f:
            read_back += json.load(f)
    assert read_back == items


def test_writer_pair_limit(tmp_path):
    writer = ExportWriter(str(tmp_path), "ns", max_pairs=3)
    for i in range(7):
        writer.add({"key": str(i), "value": ""})
    assert [len(read_pairs(f)[0]) for f in writer.close()] == [3, 3, 1]


def test_writer_refuses_stems_that_are_paths(tmp_path):
    for stem in ("../x", "a/b", "", ".."):
        with pytest.raises(ValueError):
            ExportWriter(str(tmp_path), stem)


def test_export_never_overwrites(tmp_path):
    src, out = str(tmp_path / "src"), tmp_path / "dump"
    with engine.open(src) as store:
        store.namespace().put("k", "v")
    out.mkdir()
    (out / "default-0001.json").write_text("keep me")
    result = run(src, "export", "--out", str(out))
    assert result.exit_code == 1
    assert "exists; export into an empty directory" in result.stderr
    assert (out / "default-0001.json").read_text() == "keep me"


def test_export_does_not_follow_a_planted_link(tmp_path):
    src, out = str(tmp_path / "src"), tmp_path / "dump"
    with engine.open(src) as store:
        store.namespace().put("k", "v")
    out.mkdir()
    target = tmp_path / "target"
    target.write_text("precious")
    os.symlink(target, out / "default-0001.json")
    assert run(src, "export", "--out", str(out)).exit_code == 1
    assert target.read_text() == "precious"


def test_import_skips_pairs_that_expire_within_a_minute(tmp_path):
    db = str(tmp_path / "db")
    now = int(time.time())
    items = [
        {"key": "gone", "value": "x", "expiration": now - 10},
        {"key": "soon", "value": "x", "expiration": now + 5},
        {"key": "kept", "value": "x", "expiration": now + 3600},
    ]
    path = tmp_path / "in.json"
    path.write_text(json.dumps(items))
    result = ok(run(db, "import", str(path)))
    assert "Imported 1 pairs" in result.stdout
    assert "Skipped 2 pairs" in result.stderr
    assert list(snapshot(db, "default")) == ["kept"]


def test_import_checks_every_file_before_writing(tmp_path):
    db = str(tmp_path / "db")
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"key": "a", "value": "1"}]))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"key": "b"}]))
    result = run(db, "import", str(good), str(bad))
    assert result.exit_code == 1 and "The item at index 0 is" in result.stderr
    assert not os.path.exists(db)


def test_export_of_a_missing_namespace(tmp_path):
    src = str(tmp_path / "src")
    with engine.open(src) as store:
        store.namespace().put("k", "v")
    result = run(src, "export", "--out", str(tmp_path / "dump"), ns="NOPE")
    assert result.exit_code == 1 and result.stderr.startswith("no namespace NOPE")
    assert not os.path.exists(tmp_path / "dump")
