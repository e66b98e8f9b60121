"""Namespaces: the name rule, isolation, namespaces(), delete_namespace and read-only stores."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine import ReadOnlyError
from engine.catalog import Catalog


@pytest.fixture
def db(tmp_path: Path) -> Iterator[engine.Store]:
    with engine.open(tmp_path / "db") as store:
        yield store


VALID = ["default", "a", "MY_KV", "k-v.2", "_x", "-y", "0", "a..b", "x" * 64, "a."]
INVALID = [
    "",
    ".",
    "..",
    ".hidden",
    "x" * 65,
    "a/b",
    "../up",
    "/abs",
    "a\\b",
    "a b",
    "é",
    "a\x00",
    "tab\t",
    "name\n",
    "ns:1",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_names(db: engine.Store, name: str) -> None:
    kv = db.namespace(name)
    kv.put("k", name)
    assert kv.get("k") == name
    assert name in db.namespaces()


@pytest.mark.parametrize("name", INVALID)
def test_invalid_names_raise_value_error_and_touch_nothing(db: engine.Store, name: str) -> None:
    before = sorted(os.listdir(db.path))
    with pytest.raises(ValueError, match="invalid namespace name"):
        db.namespace(name)
    with pytest.raises(ValueError, match="invalid namespace name"):
        db.delete_namespace(name)
    assert sorted(os.listdir(db.path)) == before
    assert db.namespaces() == []


@pytest.mark.parametrize("name", [None, 1, b"bytes"])
def test_non_str_name_is_a_type_error(db: engine.Store, name: object) -> None:
    with pytest.raises(TypeError, match="namespace name must be a str"):
        db.namespace(name)  # type: ignore[arg-type]


def test_default_namespace(db: engine.Store) -> None:
    db.namespace().put("k", "v")
    assert db.namespace("default").get("k") == "v"
    assert db.namespaces() == ["default"]


def test_namespaces_lists_every_name_sorted(db: engine.Store) -> None:
    for name in ["b", "a", "C", "a.b"]:
        db.namespace(name)
    assert db.namespaces() == ["C", "a", "a.b", "b"]


def test_isolation_of_keys_lists_and_deletes(db: engine.Store) -> None:
    a, b = db.namespace("a"), db.namespace("b")
    a.put_many([{"key": f"k{i}", "value": "a"} for i in range(5)])
    b.put("k0", "b")
    b.delete("k1")
    b.delete_many(["k2", "k3"])
    assert a.get_many([f"k{i}" for i in range(5)]) == {f"k{i}": "a" for i in range(5)}
    assert [k.name for k in b.list().keys] == ["k0"]
    assert [k.name for k in a.list(prefix="k").keys] == [f"k{i}" for i in range(5)]


def test_namespaces_survive_reopen(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        db.namespace("one").put("k", "1")
        db.namespace("two").put("k", "2")
    with engine.open(tmp_path / "db") as db:
        assert db.namespaces() == ["one", "two"]
        assert db.namespace("one").get("k") == "1"
        assert db.namespace("two").get("k") == "2"


# -- delete_namespace -------------------------------------------------------------------


def test_delete_namespace_removes_name_and_keys(db: engine.Store) -> None:
    kv = db.namespace("gone")
    kv.put_many([{"key": f"k{i:05}", "value": "v"} for i in range(10_000)])
    kv.put("more", "v")
    keep = db.namespace("kept")
    keep.put("k", "v")
    db.delete_namespace("gone")
    assert db.namespaces() == ["kept"]
    assert "gone" not in db.stats().namespaces
    assert db.stats().keys == 1
    assert keep.get("k") == "v"


def test_old_handle_sees_an_empty_namespace(db: engine.Store) -> None:
    kv = db.namespace("n")
    kv.put("k", "v")
    db.delete_namespace("n")
    assert kv.get("k") is None
    assert kv.list().keys == []
    kv.put("k2", "new")
    assert db.namespace("n").get("k2") == "new"
    assert db.namespace("n").get("k") is None


def test_deleting_a_missing_namespace_is_fine(db: engine.Store) -> None:
    db.delete_namespace("never")
    assert db.namespaces() == []


def test_deleted_namespace_stays_deleted_across_reopen(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        db.namespace("n").put("k", "v")
        db.namespace("other").put("k", "o")
        db.delete_namespace("n")
    with engine.open(tmp_path / "db") as db:
        assert db.namespaces() == ["other"]
        assert db.namespace("n").get("k") is None  # recreated, empty
    with engine.open(tmp_path / "db") as db:
        assert db.namespaces() == ["n", "other"]
        assert db.namespace("n").list().keys == []


def test_deletion_cut_short_is_finished_at_next_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name goes in one atomic step; the keys after it: a crash between is repaired."""

    class Crash(Exception):
        pass

    def crash(self: Catalog, ns_id: int) -> None:
        raise Crash

    with engine.open(tmp_path / "db") as db:
        db.namespace("n").put_many([{"key": f"k{i}", "value": "v"} for i in range(100)])
        db.namespace("other").put("k0", "o")
        with monkeypatch.context() as patch:
            patch.setattr(Catalog, "_purge", crash)
            with pytest.raises(Crash):
                db.delete_namespace("n")
    with engine.open(tmp_path / "db", readonly=True) as ro:
        # The name is gone at once, even before the keys are removed.
        assert ro.namespaces() == ["other"]
        assert ro.namespace("n").get("k0") is None
    with engine.open(tmp_path / "db") as db:
        assert db.namespaces() == ["other"]
        stats = db.stats()
        assert stats.keys == 1
        fresh = db.namespace("n")
        assert fresh.list().keys == []
        assert fresh.get("k0") is None
        assert db.namespace("other").get("k0") == "o"


def test_recreated_namespace_never_sees_old_keys(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        for round_ in range(3):
            kv = db.namespace("n")
            assert kv.list().keys == []
            kv.put(f"k{round_}", "v", expiration_ttl=600)
            db.delete_namespace("n")
    with engine.open(tmp_path / "db") as db:
        assert db.namespace("n").list().keys == []


# -- read-only stores -------------------------------------------------------------------


def test_readonly_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        db.namespace("n").put("k", "v", metadata={"m": 1})
    with engine.open(tmp_path / "db", readonly=True) as ro:
        assert ro.namespaces() == ["n"]
        kv = ro.namespace("n")
        assert kv.get("k") == "v"
        assert [k.name for k in kv.list().keys] == ["k"]
        for write in (
            lambda: kv.put("k", "x"),
            lambda: kv.delete("k"),
            lambda: kv.put_many([{"key": "k", "value": "x"}]),
            lambda: kv.delete_many(["k"]),
            lambda: ro.delete_namespace("n"),
        ):
            with pytest.raises(ReadOnlyError):
                write()
        assert kv.get("k") == "v"


def test_readonly_store_unknown_namespace_is_empty_and_not_created(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        db.namespace("n")
    with engine.open(tmp_path / "db", readonly=True) as ro:
        kv = ro.namespace("unknown")
        assert kv.get("k") is None
        assert kv.get_with_metadata("k") == engine.ValueWithMetadata(None, None)
        assert kv.get_many(["k"]) == {"k": None}
        assert kv.list() == engine.ListResult([], True, None)
        with pytest.raises(ReadOnlyError):
            kv.put("k", "v")
        assert ro.namespaces() == ["n"]


def test_readonly_beside_a_writer(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        db.namespace("n").put("k", "v")
        db.sync()
        with engine.open(tmp_path / "db", readonly=True) as ro:
            assert ro.namespace("n").get("k") == "v"


def test_namespaces_of_a_closed_store_raise(tmp_path: Path) -> None:
    db = engine.open(tmp_path / "db")
    db.namespace("a")
    db.close()
    with pytest.raises(engine.StoreClosedError):
        db.namespaces()
