"""How a list page is built: KeyInfo objects made without calling the class, and
key names split out of the C buffer at the namespace prefix, both equal to the
straightforward construction they replace."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kv_helpers import FakeClock

import engine
from engine import KeyInfo
from engine.errors import CorruptionError
from engine.results import key_infos
from engine.storage import LogStore

NOW = 1_700_000_000

NAMES = ["a", "key0000000001", "é", "日本語", "\U0001f600", "\x00\x01", "x" * 512]
EXPS: list[int | None] = [None, NOW + 60, None, 2**32 - 1, NOW + 1, None, NOW + 2]
METAS: list[Any] = [None, {"m": 1}, "s", [1, 2], None, 0, {"nested": {"é": None}}]


@pytest.mark.parametrize(
    ("exps", "metas"),
    [(None, None), (EXPS, None), (None, METAS), (EXPS, METAS)],
    ids=["plain", "expirations", "metadata", "both"],
)
def test_key_infos_equal_constructed_ones(exps: list[Any] | None, metas: list[Any] | None) -> None:
    built = key_infos(NAMES, exps, metas)
    expected = [
        KeyInfo(name, exps[i] if exps else None, metas[i] if metas else None)
        for i, name in enumerate(NAMES)
    ]
    assert built == expected
    for fast, slow in zip(built, expected, strict=True):
        assert type(fast) is KeyInfo
        for f in dataclasses.fields(KeyInfo):
            assert getattr(fast, f.name) == getattr(slow, f.name)
        assert repr(fast) == repr(slow)
        assert dataclasses.asdict(fast) == dataclasses.asdict(slow)
        assert dataclasses.replace(fast, name="other") == dataclasses.replace(slow, name="other")
        assert pickle.loads(pickle.dumps(fast)) == slow


def test_key_infos_behave_like_constructed_ones_under_assignment_and_hash() -> None:
    fast = key_infos(["k"])[0]
    slow = KeyInfo("k")
    fast.name = slow.name = "renamed"
    assert fast == slow
    with pytest.raises(TypeError):
        hash(fast)
    with pytest.raises(TypeError):
        hash(slow)
    with pytest.raises(AttributeError):
        fast.other = 1  # type: ignore[attr-defined]


def test_key_infos_of_an_empty_page_and_mismatched_columns() -> None:
    assert key_infos([]) == []
    with pytest.raises(ValueError):
        key_infos(["a", "b"], [None])


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[engine.Namespace]:
    with engine.open(tmp_path / "db", clock=FakeClock(NOW)) as db:
        yield db.namespace()


def test_pages_with_and_without_expirations_and_metadata(kv: engine.Namespace) -> None:
    for i in range(5):
        kv.put(f"p{i}", "v")
    kv.put("q0", "v", expiration=NOW + 100)
    kv.put("q1", "v", metadata={"x": "é"})
    kv.put("q2", "v", expiration=NOW + 200, metadata=[1])
    kv.put("q3", "v")
    assert kv.list(prefix="p").keys == [KeyInfo(f"p{i}") for i in range(5)]
    assert kv.list(prefix="q").keys == [
        KeyInfo("q0", NOW + 100),
        KeyInfo("q1", None, {"x": "é"}),
        KeyInfo("q2", NOW + 200, [1]),
        KeyInfo("q3"),
    ]


def test_names_holding_the_namespace_prefix_bytes(kv: engine.Namespace) -> None:
    """A name may contain the bytes of the namespace prefix (here b"\\x00\\x01")."""
    names = sorted(["\x00\x01", "a\x00\x01b", "\x00", "\x01", "\x00\x01\x00\x01", "é\x00\x01"])
    for name in names:
        kv.put(name, "v")
    assert [k.name for k in kv.list().keys] == sorted(names, key=str.encode)


SEPS = [b"\x00\x01", b"\x01\x01", b"\x00\x00", b"ab", b"aba", b"\x00\x80", b"\xc3\xa9", b"\xff\xfe"]
NAME_CHARS = st.sampled_from(["a", "b", "\x00", "\x01", "é", "\x80", "\U0001f600"])


@settings(max_examples=60, deadline=None)
@given(
    sep=st.sampled_from(SEPS),
    names=st.sets(st.text(NAME_CHARS, max_size=5), min_size=1, max_size=25),
    tail=st.sampled_from(["", "a", "\x00"]),
)
def test_list_names_equal_names_cut_at_their_offsets(
    tmp_path_factory: pytest.TempPathFactory, sep: bytes, names: set[str], tail: str
) -> None:
    """Any namespace prefix, names that contain it or pieces of it, and a listing
    prefix that goes beyond the stripped part: the names are the keys less sep."""
    store = LogStore(tmp_path_factory.mktemp("ls") / "store")
    try:
        for name in names:
            store.put(sep + name.encode(), b"v")
        prefix = sep + tail.encode()
        got, exps, metas, more = store.list_names(prefix, b"", NOW, 1000, True, len(sep))
        expect = sorted((n for n in names if n.startswith(tail)), key=str.encode)
        assert got == expect
        assert exps is None and metas is None and not more
    finally:
        store.close()


def test_list_names_reports_a_key_that_is_not_utf8(log_store: LogStore) -> None:
    log_store.put(b"\x00\x01ok", b"v")
    log_store.put(b"\x00\x01\xff", b"v")
    with pytest.raises(UnicodeDecodeError):
        log_store.list_names(b"\x00\x01", b"", NOW, 1000, True, 2)


def test_list_columns_without_strip_keep_bytes_and_expirations(log_store: LogStore) -> None:
    log_store.put(b"a", b"v")
    log_store.put(b"b", b"v", meta=b"m", expiration=NOW + 5)
    keys, more = log_store.list(b"", b"", NOW, 10)
    assert [(k.key, k.expiration, k.meta) for k in keys] == [(b"a", 0, None), (b"b", NOW + 5, b"m")]
    assert not more
    names, exps, metas, _ = log_store.list_names(b"", b"", NOW, 10)
    assert (names, exps, metas) == (["a", "b"], [0, NOW + 5], [None, b"m"])


def test_a_record_whose_metadata_went_bad_after_open_fails_the_page(log_store: LogStore) -> None:
    """kv_list flags the page when an item's status is set; the page then raises
    with the record's file and offset instead of returning."""
    log_store.put(b"a", b"v")
    log_store.put(b"b", b"v", meta=b"META-OF-B")
    segments = sorted(p for p in Path(log_store.path).iterdir() if p.is_file())
    hit = [p for p in segments if b"META-OF-B" in p.read_bytes()]
    assert len(hit) == 1
    data = hit[0].read_bytes()
    offset = data.index(b"META-OF-B")
    with open(hit[0], "r+b") as f:
        f.seek(offset)
        f.write(b"X")
    with pytest.raises(CorruptionError) as exc:
        log_store.list(b"", b"", NOW, 10)
    assert exc.value.path == str(hit[0])
    assert log_store.list(b"", b"", NOW, 10, with_meta=False)[0][0].key == b"a"
