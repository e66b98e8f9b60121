"""Expiry through the store's clock: gone everywhere from the instant now >= expiration."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kv_helpers import START, FakeClock

import engine
from engine import KeyInfo, ValueWithMetadata

NOW = math.floor(START)


def _stream(kv: engine.Namespace, key: str) -> Any:
    stream = kv.get(key, "stream")
    if stream is None:
        return None
    with stream:
        return stream.read()


# Each read path, and what it gives for the key "k" holding "v" / for a gone key.
READS: dict[str, tuple[Callable[[engine.Namespace], Any], Any, Any]] = {
    "get": (lambda kv: kv.get("k"), "v", None),
    "get-bytes": (lambda kv: kv.get("k", "bytes"), b"v", None),
    "get-stream": (lambda kv: _stream(kv, "k"), b"v", None),
    "get_with_metadata": (
        lambda kv: kv.get_with_metadata("k"),
        ValueWithMetadata("v", {"m": 1}),
        ValueWithMetadata(None, None),
    ),
    "get_many": (lambda kv: kv.get_many(["k"]), {"k": "v"}, {"k": None}),
    "get_many-meta": (
        lambda kv: kv.get_many(["k"], with_metadata=True),
        {"k": ValueWithMetadata("v", {"m": 1})},
        {"k": None},
    ),
    "list": (lambda kv: [k.name for k in kv.list().keys], ["k"], []),
    "list-prefix": (lambda kv: [k.name for k in kv.list(prefix="k").keys], ["k"], []),
}


@pytest.mark.parametrize("read", sorted(READS))
@pytest.mark.parametrize("how", ["ttl", "expiration"])
def test_gone_from_the_expiration_instant(
    kv: engine.Namespace, clock: FakeClock, read: str, how: str
) -> None:
    if how == "ttl":
        kv.put("k", "v", expiration_ttl=100, metadata={"m": 1})
    else:
        kv.put("k", "v", expiration=NOW + 100, metadata={"m": 1})
    call, present, gone = READS[read]
    clock.now = NOW + 99.999
    assert call(kv) == present
    clock.now = NOW + 100
    assert call(kv) == gone
    clock.now = NOW + 10_000
    assert call(kv) == gone


@pytest.mark.parametrize("read", sorted(READS))
def test_gone_after_reopen(tmp_path: Path, clock: FakeClock, read: str) -> None:
    with engine.open(tmp_path / "db", clock=clock) as db:
        db.namespace().put("k", "v", expiration_ttl=60, metadata={"m": 1})
    call, present, gone = READS[read]
    with engine.open(tmp_path / "db", clock=clock) as db:
        assert call(db.namespace()) == present
    clock.advance(60)
    with engine.open(tmp_path / "db", clock=clock) as db:
        assert call(db.namespace()) == gone
    with engine.open(tmp_path / "db", clock=clock, readonly=True) as db:
        assert call(db.namespace()) == gone


def test_ttl_is_counted_from_floor_of_now(kv: engine.Namespace, clock: FakeClock) -> None:
    clock.now = NOW + 0.999
    kv.put("k", "v", expiration_ttl=60)
    assert kv.list().keys == [KeyInfo("k", NOW + 60)]
    clock.now = NOW + 60
    assert kv.get("k") is None


def test_ttl_wins_over_expiration(kv: engine.Namespace, clock: FakeClock) -> None:
    kv.put("short", "v", expiration=NOW + 10_000, expiration_ttl=60)
    kv.put("long", "v", expiration=NOW + 60, expiration_ttl=10_000)
    clock.advance(60)
    assert kv.get("short") is None
    assert kv.get("long") == "v"


def test_expired_key_can_be_written_again(kv: engine.Namespace, clock: FakeClock) -> None:
    kv.put("k", "old", expiration_ttl=60, metadata="old")
    clock.advance(60)
    kv.put("k", "new")
    assert kv.get_with_metadata("k") == ValueWithMetadata("new", None)
    assert kv.list().keys == [KeyInfo("k")]


def test_expired_key_stays_gone_after_overwrite_is_deleted(
    kv: engine.Namespace, clock: FakeClock
) -> None:
    kv.put("k", "v1", expiration_ttl=60)
    kv.put("k", "v2", expiration_ttl=120)
    clock.advance(60)
    assert kv.get("k") == "v2"
    clock.advance(60)
    assert kv.get("k") is None
    kv.delete("k")
    assert kv.get("k") is None


def test_clock_going_back_shows_the_key_again(kv: engine.Namespace, clock: FakeClock) -> None:
    # Expiry is a pure function of the clock: nothing is erased at read time.
    kv.put("k", "v", expiration_ttl=60)
    clock.advance(60)
    assert kv.get("k") is None
    clock.now = START
    assert kv.get("k") == "v"


def test_bulk_expirations_follow_the_same_rules(kv: engine.Namespace, clock: FakeClock) -> None:
    kv.put_many(
        [
            {"key": "ttl", "value": "v", "expiration_ttl": 60},
            {"key": "abs", "value": "v", "expiration": NOW + 120},
            {"key": "both", "value": "v", "expiration": NOW + 120, "expiration_ttl": 60},
            {"key": "never", "value": "v"},
        ]
    )
    clock.advance(60)
    assert kv.get_many(["ttl", "abs", "both", "never"]) == {
        "ttl": None,
        "abs": "v",
        "both": None,
        "never": "v",
    }
    clock.advance(60)
    assert [k.name for k in kv.list().keys] == ["never"]


def test_expiry_is_per_namespace_key(db: engine.Store, clock: FakeClock) -> None:
    a, b = db.namespace("a"), db.namespace("b")
    a.put("k", "a", expiration_ttl=60)
    b.put("k", "b")
    clock.advance(60)
    assert (a.get("k"), b.get("k")) == (None, "b")
