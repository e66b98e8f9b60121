"""put_many and delete_many: limits with their statuses, validation first, all or nothing."""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from kv_helpers import START

import engine
from engine import BulkPair, KeyInfo, KVError

NOW = math.floor(START)
MAX_VALUE = 26_214_400


def listed(kv: engine.Namespace) -> list[str]:
    return [k.name for k in kv.list().keys]


# -- put_many limits --------------------------------------------------------------------


def test_10000_pairs_accepted_10001_refused_with_400(kv: engine.Namespace) -> None:
    kv.put_many([{"key": f"k{i:05}", "value": "v"} for i in range(10_000)])
    assert db_keys(kv) == 10_000
    with pytest.raises(KVError) as info:
        kv.put_many([{"key": f"n{i:05}", "value": "v"} for i in range(10_001)])
    assert info.value.status == 400
    assert str(info.value) == (
        "KV PUT failed: 400 Bulk write of 10001 pairs exceeds the limit of 10000."
    )
    assert kv.get("n00000") is None


def db_keys(kv: engine.Namespace) -> int:
    return kv._store.stats().namespaces[kv.name].keys


def _pairs_of_total(total: int) -> list[dict[str, object]]:
    """Four pairs whose keys, values and metadata add up to exactly total bytes."""
    big = b"v" * MAX_VALUE  # one object three times: cheap
    items: list[dict[str, object]] = [{"key": f"k{i}", "value": big} for i in range(3)]
    rest = total - 3 * (2 + MAX_VALUE) - len("k3") - len('"m"')
    items.append({"key": "k3", "value": b"w" * rest, "metadata": "m"})
    return items


def test_100_million_bytes_or_more_refused_with_413(kv: engine.Namespace) -> None:
    items = _pairs_of_total(100_000_000)
    with pytest.raises(KVError) as info:
        kv.put_many(items)
    assert info.value.status == 413
    assert str(info.value) == (
        "KV PUT failed: 413 Bulk write of 100000000 bytes exceeds the limit of 100000000."
    )
    assert listed(kv) == []


@pytest.mark.slow
def test_just_under_100_million_bytes_accepted(kv: engine.Namespace) -> None:
    items = _pairs_of_total(99_999_999)
    kv.put_many(items)
    assert len(listed(kv)) == len(items)


def test_bytes_counted_are_keys_values_and_metadata(kv: engine.Namespace) -> None:
    # 4 pairs of one 25 MiB value (the same object: cheap) pass 100 MB.
    big = b"v" * MAX_VALUE
    with pytest.raises(KVError, match="413"):
        kv.put_many([{"key": f"k{i}", "value": big} for i in range(4)])
    assert listed(kv) == []


# -- validation before any write --------------------------------------------------------

BAD_ITEMS = [
    ({"key": "", "value": "v"}, ValueError, None),
    ({"key": ".", "value": "v"}, ValueError, None),
    ({"key": "x" * 513, "value": "v"}, KVError, 414),
    ({"key": "k", "value": b"v" * (MAX_VALUE + 1)}, KVError, 413),
    ({"key": "k", "value": "v", "metadata": "m" * 1023}, KVError, 413),
    ({"key": "k", "value": "v", "expiration_ttl": 59}, KVError, 400),
    ({"key": "k", "value": "v", "expiration": NOW}, KVError, 400),
    ({"key": "k", "value": "v", "expiration": "soon"}, TypeError, None),
    ({"key": "k", "value": "v", "metadata": {1, 2}}, TypeError, None),
    ({"key": "k", "value": "not base64!", "base64": True}, KVError, 400),
    ({"key": "k", "value": 5}, TypeError, None),
    ({"key": "k", "value": iter([b"stream"])}, TypeError, None),
    ({"key": "k"}, TypeError, None),
    ("k=v", TypeError, None),
]


@pytest.mark.parametrize(("bad", "error", "status"), BAD_ITEMS)
@pytest.mark.parametrize("where", [0, 4999, 9999])
def test_one_bad_item_anywhere_writes_nothing(
    kv: engine.Namespace, bad: object, error: type[Exception], status: int | None, where: int
) -> None:
    kv.put("k00001", "old")
    items: list[object] = [{"key": f"k{i:05}", "value": "new"} for i in range(10_000)]
    items[where] = bad
    with pytest.raises(error) as info:
        kv.put_many(items)  # type: ignore[arg-type]
    assert getattr(info.value, "index", None) == where
    if status is not None:
        assert info.value.status == status  # type: ignore[attr-defined]
    assert listed(kv) == ["k00001"]
    assert kv.get("k00001") == "old"


def test_bad_base64_message_names_the_key(kv: engine.Namespace) -> None:
    with pytest.raises(KVError) as info:
        kv.put_many([{"key": "img", "value": "@@@", "base64": True}])
    assert str(info.value) == "KV PUT failed: 400 Could not base64 decode value for key 'img'."


def test_bulk_pairs_and_dicts_mix(kv: engine.Namespace) -> None:
    kv.put_many(
        [
            BulkPair("a", "1", metadata={"m": 1}),
            BulkPair("b", "AQI=", base64=True, expiration_ttl=60),
            {"key": "c", "value": b"\x00"},
            BulkPair("d", bytearray(b"4"), expiration=NOW + 100),
        ]
    )
    assert kv.list().keys == [
        KeyInfo("a", None, {"m": 1}),
        KeyInfo("b", NOW + 60),
        KeyInfo("c"),
        KeyInfo("d", NOW + 100),
    ]
    assert kv.get("b", "bytes") == b"\x01\x02"


def test_later_item_of_the_same_key_wins(kv: engine.Namespace) -> None:
    kv.put_many([{"key": "k", "value": "first"}, {"key": "k", "value": "second"}])
    assert kv.get("k") == "second"


def test_empty_batches_are_fine(kv: engine.Namespace) -> None:
    kv.put_many([])
    kv.delete_many([])
    assert listed(kv) == []


def test_bulk_put_overwrites_value_expiration_and_metadata(kv: engine.Namespace) -> None:
    kv.put("k", "old", metadata={"m": 1}, expiration_ttl=60)
    kv.put_many([{"key": "k", "value": "new"}])
    assert kv.list().keys == [KeyInfo("k")]


# -- delete_many ------------------------------------------------------------------------


def test_delete_many_limit_is_10000(kv: engine.Namespace) -> None:
    kv.put_many([{"key": f"k{i:05}", "value": "v"} for i in range(10_000)])
    with pytest.raises(KVError) as info:
        kv.delete_many([f"k{i:05}" for i in range(10_001)])
    assert info.value.status == 400
    assert str(info.value) == (
        "KV DELETE failed: 400 You can delete maximum of 10000 keys per request"
    )
    assert db_keys(kv) == 10_000
    kv.delete_many(f"k{i:05}" for i in range(10_000))
    assert listed(kv) == []


def test_delete_many_validates_every_key_first(kv: engine.Namespace) -> None:
    kv.put("a", "v")
    for bad, error in [("", ValueError), ("..", ValueError), ("x" * 513, KVError), (7, TypeError)]:
        with pytest.raises(error) as info:
            kv.delete_many(["a", bad])  # type: ignore[list-item]
        assert getattr(info.value, "index", None) == 1
        assert kv.get("a") == "v"
    with pytest.raises(TypeError, match="'name'"):
        kv.delete_many(["a", {"key": "a"}])  # type: ignore[list-item]
    assert kv.get("a") == "v"


def test_delete_many_of_missing_and_repeated_keys(kv: engine.Namespace) -> None:
    kv.put("a", "v")
    kv.delete_many(["a", "a", "missing"])
    assert listed(kv) == []


# -- all or nothing across a crash ------------------------------------------------------

# Overwrites the same 4000 keys again and again, each batch with its generation number.
_WRITER = r"""
import sys
import engine
db = engine.open(sys.argv[1])
kv = db.namespace("bulk")
print("ready", flush=True)
generation = 0
while True:
    generation += 1
    value = str(generation).encode().ljust(4096, b".")
    kv.put_many([{"key": f"k{i:05}", "value": value} for i in range(4000)])
"""


def _kill_mid_batch(path: Path, rng: random.Random) -> tuple[set[bytes | None], list[str]]:
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.03, 0.25))
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    with engine.open(path) as db:
        kv = db.namespace("bulk")
        values = {kv.get(f"k{i:05}", "bytes") for i in range(4000)}
        return values, [d.kind for d in db.stats().damage]


def _check_batches_land_whole(tmp_path: Path, runs: int, seed: int) -> None:
    """At least `runs` kills, and more (up to 4x) until one has landed inside a batch."""
    rng = random.Random(seed)
    cut_batches = 0
    run = 0
    while run < runs or (cut_batches == 0 and run < 4 * runs):
        values, damage = _kill_mid_batch(tmp_path / f"db{run}", rng)
        assert len(values) == 1, f"run {run}: a batch landed in part: {len(values)} versions"
        cut_batches += "uncommitted batch dropped" in damage
        run += 1
    # The kill must land inside a batch for the test to mean something.
    assert cut_batches >= 1


def test_batch_killed_midway_lands_whole_or_not_at_all(tmp_path: Path) -> None:
    _check_batches_land_whole(tmp_path, runs=8, seed=1)


@pytest.mark.slow
def test_batch_killed_midway_many_times(tmp_path: Path) -> None:
    _check_batches_land_whole(tmp_path, runs=100, seed=2)


def test_batch_written_after_a_torn_batch_survives_reopen(tmp_path: Path) -> None:
    """A torn batch's members stay in the file when its tail is cut; the next batch is
    appended right behind them and must not be mistaken for part of the torn one."""
    path = tmp_path / "db"
    with engine.open(path) as db:
        db.namespace("n")
        db.sync()
        (segment,) = path.glob("*.seg")
        start = segment.stat().st_size
        db.namespace("n").put_many([{"key": "a", "value": "torn"}, {"key": "b", "value": "torn"}])
    end = segment.stat().st_size
    # Inside the commit record, after both members: only the commit is torn.
    os.truncate(segment, end - 8)
    with engine.open(path) as db:
        kinds = [d.kind for d in db.stats().damage]
        assert "uncommitted batch dropped" in kinds
        kv = db.namespace("n")
        assert kv.get_many(["a", "b"]) == {"a": None, "b": None}
        kv.put_many([{"key": "a", "value": "new"}])
        kv.put_many([{"key": "c", "value": "new"}, {"key": "d", "value": "new"}])
    with engine.open(path) as db:
        kv = db.namespace("n")
        assert kv.get_many(["a", "b", "c", "d"]) == {"a": "new", "b": None, "c": "new", "d": "new"}
        assert start < end


def _tear_last_write(path: Path, write: Callable[[], object], store: engine.Store) -> None:
    """Makes write the store's last, then cuts its bytes off the newest segment."""
    store.sync()
    (segment,) = path.glob("*.seg")
    start = segment.stat().st_size
    write()
    store.close()
    assert segment.stat().st_size > start
    os.truncate(segment, start)


def test_torn_batch_stays_dropped_through_later_batches_syncs_and_tears(tmp_path: Path) -> None:
    """Found by the state machine: the orphan member of a torn batch came back after the
    namespace was deleted and recreated and a later write was torn in turn."""
    path = tmp_path / "db"
    db = engine.open(path)
    kv = db.namespace("a")
    db.sync()
    (segment,) = path.glob("*.seg")
    start = segment.stat().st_size
    kv.put_many([{"key": "a", "value": "torn"}])
    db.close()
    os.truncate(segment, segment.stat().st_size - 8)  # inside the commit record
    engine.open(path).close()
    db = engine.open(path)
    db.delete_namespace("a")
    kv = db.namespace("a")
    _tear_last_write(path, lambda: kv.put("a", "torn too"), db)
    with engine.open(path) as db:
        assert db.namespace("a").get("a") is None
        assert db.namespace("a").list().keys == []
        assert start < segment.stat().st_size
