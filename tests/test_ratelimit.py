"""The same-key write limit (429, measured with the store's clock) and engine.retry."""

from __future__ import annotations

import errno
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from kv_helpers import FakeClock

import engine
from engine import KVError
from engine._ffi import lib

TOO_MANY = "KV {op} failed: 429 Too Many Requests"


@pytest.fixture
def db(tmp_path: Path, clock: FakeClock) -> Iterator[engine.Store]:
    with engine.open(tmp_path / "db", clock=clock, enforce_write_rate_limit=True) as store:
        yield store


def expect_429(op: str) -> pytest.RaisesExc[KVError]:
    return pytest.raises(KVError, match=f"^{TOO_MANY.format(op=op)}$")


def test_second_put_within_a_second_is_429(kv: engine.Namespace, clock: FakeClock) -> None:
    kv.put("k", "1")
    clock.advance(0.999)
    with expect_429("PUT") as info:
        kv.put("k", "2")
    assert info.value.status == 429
    assert kv.get("k") == "1"
    clock.advance(0.001)
    kv.put("k", "3")
    assert kv.get("k") == "3"


def test_delete_counts_as_a_write(kv: engine.Namespace, clock: FakeClock) -> None:
    kv.put("k", "1")
    with expect_429("DELETE"):
        kv.delete("k")
    assert kv.get("k") == "1"
    clock.advance(1)
    kv.delete("k")
    with expect_429("PUT"):
        kv.put("k", "again")


def test_other_keys_and_namespaces_are_independent(db: engine.Store) -> None:
    a, b = db.namespace("a"), db.namespace("b")
    a.put("k", "v")
    a.put("k2", "v")
    b.put("k", "v")
    assert (a.get("k"), a.get("k2"), b.get("k")) == ("v", "v", "v")


def test_reads_are_not_limited(kv: engine.Namespace) -> None:
    kv.put("k", "v")
    for _ in range(5):
        assert kv.get("k") == "v"
    kv.list()
    kv.get_many(["k"])


def test_bulk_items_count_and_a_refused_batch_writes_nothing(
    kv: engine.Namespace, clock: FakeClock
) -> None:
    kv.put("hot", "1")
    with expect_429("PUT"):
        kv.put_many([{"key": "cold", "value": "x"}, {"key": "hot", "value": "x"}])
    assert (kv.get("cold"), kv.get("hot")) == (None, "1")
    # The refused batch was not a write: "cold" can be written at once.
    kv.put("cold", "ok")
    with expect_429("DELETE"):
        kv.delete_many(["hot"])
    clock.advance(1)
    kv.delete_many(["hot", "cold"])
    assert kv.list().keys == []


def test_the_same_key_twice_in_one_batch_is_429(kv: engine.Namespace) -> None:
    with expect_429("PUT"):
        kv.put_many([{"key": "k", "value": "1"}, {"key": "k", "value": "2"}])
    with expect_429("DELETE"):
        kv.delete_many(["k", "k"])
    assert kv.get("k") is None


def test_a_refused_put_is_not_a_write(kv: engine.Namespace) -> None:
    with pytest.raises(KVError, match="400"):
        kv.put("k", "v", expiration_ttl=1)
    with pytest.raises(KVError, match="413"):
        kv.put("k", b"x" * (26_214_400 + 1))
    with pytest.raises(KVError, match="413"):
        kv.put("k", itertools.repeat(b"x" * 65536, 401))  # refused while streaming
    with pytest.raises(TypeError):
        kv.put("k", iter(["text chunk"]))
    kv.put("k", "accepted")
    assert kv.get("k") == "accepted"


WRITES = {
    "put": lambda kv: kv.put("k", "v"),
    "put-stream": lambda kv: kv.put("k", iter([b"v"])),
    "delete": lambda kv: kv.delete("k"),
    "put_many": lambda kv: kv.put_many([{"key": "k", "value": "v"}]),
    "delete_many": lambda kv: kv.delete_many(["k"]),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_write_that_failed_on_disk_is_not_a_write(
    kv: engine.Namespace, clock: FakeClock, write: str
) -> None:
    kv.put("k", "present")
    clock.advance(1)
    lib.kv_io_fault_set(lib.KV_IO_OP_WRITE, 1, errno.ENOSPC, 0)
    try:
        with pytest.raises(engine.EngineIOError):
            WRITES[write](kv)
    finally:
        lib.kv_io_fault_set(0, 0, 0, 0)
    WRITES[write](kv)  # at once: the failed attempt did not count


def test_off_by_default(tmp_path: Path) -> None:
    with engine.open(tmp_path / "db") as db:
        kv = db.namespace()
        for i in range(5):
            kv.put("k", str(i))
            kv.delete("k")
        kv.put_many([{"key": "k", "value": "1"}, {"key": "k", "value": "2"}])
        assert kv.get("k") == "2"


def test_many_keys_over_time_keep_being_limited(kv: engine.Namespace, clock: FakeClock) -> None:
    # More keys than the limiter keeps before pruning: recent ones are still refused.
    kv.put_many([{"key": f"k{i}", "value": "v"} for i in range(10_000)])
    for batch in range(7):
        clock.advance(1)
        kv.put_many([{"key": f"b{batch}-{i}", "value": "v"} for i in range(10_000)])
    with expect_429("PUT"):
        kv.put("b6-9999", "again")
    kv.put("k0", "old enough")


# -- engine.retry -----------------------------------------------------------------------


class Flaky:
    """Raises 429 a given number of times, then returns its arguments."""

    def __init__(self, failures: int, status: int = 429) -> None:
        self.failures = failures
        self.status = status
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> tuple[object, ...]:
        self.calls += 1
        if self.calls <= self.failures:
            raise KVError(self.status, TOO_MANY.format(op="PUT"))
        return args, kwargs


def test_retry_backs_off_exponentially() -> None:
    delays: list[float] = []
    fn = Flaky(3)
    result = engine.retry(fn, "a", attempts=5, first_delay=0.5, sleep=delays.append, key="b")
    assert result == (("a",), {"key": "b"})
    assert fn.calls == 4
    assert delays == [0.5, 1.0, 2.0]


def test_retry_gives_up_after_attempts_with_the_last_429() -> None:
    delays: list[float] = []
    fn = Flaky(10)
    with pytest.raises(KVError) as info:
        engine.retry(fn, attempts=3, first_delay=0.1, factor=3, sleep=delays.append)
    assert info.value.status == 429
    assert fn.calls == 3
    assert delays == pytest.approx([0.1, 0.3])


def test_retry_does_not_retry_other_errors() -> None:
    delays: list[float] = []
    fn = Flaky(1, status=413)
    with pytest.raises(KVError, match="429"):  # the text is the fake's; the status is 413
        engine.retry(fn, sleep=delays.append)
    assert (fn.calls, delays) == (1, [])

    def boom() -> None:
        raise ValueError("bad key")

    with pytest.raises(ValueError, match="bad key"):
        engine.retry(boom, sleep=delays.append)
    assert delays == []


def test_retry_default_first_delay_is_one_second() -> None:
    delays: list[float] = []
    engine.retry(Flaky(2), sleep=delays.append)
    assert delays == [1.0, 2.0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "attempts must be at least 1"),
        ({"first_delay": -1}, "must not be negative"),
        ({"factor": -2}, "must not be negative"),
    ],
)
def test_retry_checks_its_arguments(kwargs: dict[str, float], message: str) -> None:
    fn = Flaky(0)
    with pytest.raises(ValueError, match=message):
        engine.retry(fn, **kwargs)  # type: ignore[arg-type]
    assert fn.calls == 0


def test_retry_on_a_rate_limited_store(kv: engine.Namespace, clock: FakeClock) -> None:
    kv.put("k", "1")
    # The store's clock moves while retry waits.
    engine.retry(kv.put, "k", "2", attempts=3, first_delay=0.6, sleep=clock.advance)
    assert kv.get("k") == "2"
