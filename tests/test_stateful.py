"""A hypothesis state machine: a store against a dict model that knows expiry.

Steps: put, put_many, delete, delete_many, get, get_with_metadata, get_many,
list pages with cursors (writes may land between the pages of one walk),
clock advances, delete_namespace, reopen, compaction (once LogStore has one)
and a crash.  A crash closes the store in the middle of one more write and
cuts the newest segment at a random point inside that write's bytes: the torn
write must vanish whole (a batch too) and every earlier write must survive,
so the model stays exact.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)
from kv_helpers import FakeClock

import engine
from engine import KeyInfo, ValueWithMetadata
from engine.storage import LogStore

NAMESPACES = ("a", "b")
# A small alphabet: keys collide often; one and four UTF-8 bytes apart in order.
KEYS = st.text(alphabet="ab€\U0001f600", min_size=1, max_size=3)
VALUES = st.binary(max_size=40)
METADATA = (
    st.none()
    | st.integers(-5, 5)
    | st.text(max_size=4)
    | st.dictionaries(st.sampled_from("xy"), st.booleans(), max_size=2)
)
# (kind, amount): no expiry, a TTL, or an absolute expiration this far after floor(now).
EXPIRY = st.sampled_from([None, ("ttl", 60), ("ttl", 61), ("ttl", 600), ("at", 60), ("at", 150)])
STEPS = st.sampled_from([0.25, 1, 30, 59.75, 60, 61, 600])

Entry = tuple[bytes, Any, int]  # value, metadata, expiration (0 = never)


class KVMachine(RuleBasedStateMachine):
    pages = Bundle("pages")

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="kv-stateful-"))
        self.path = self.dir / "db"
        self.clock = FakeClock()
        self.db = self._open()
        self.model: dict[str, dict[str, Entry]] = {ns: {} for ns in NAMESPACES}

    def _open(self) -> engine.Store:
        # Small segments: the log rolls over often, so several segments take part.
        return engine.open(self.path, clock=self.clock, max_segment_bytes=4096)

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- model --------------------------------------------------------------------------
    def live(self, ns: str) -> dict[str, Entry]:
        now = self.clock()
        return {k: e for k, e in self.model[ns].items() if e[2] == 0 or now < e[2]}

    def expiration(self, expiry: tuple[str, int] | None) -> dict[str, int]:
        if expiry is None:
            return {}
        kind, amount = expiry
        if kind == "ttl":
            return {"expiration_ttl": amount}
        return {"expiration": math.floor(self.clock()) + amount}

    def stored(self, value: bytes, meta: Any, options: dict[str, int]) -> Entry:
        floor_now = math.floor(self.clock())
        if "expiration_ttl" in options:
            return (value, meta, floor_now + options["expiration_ttl"])
        return (value, meta, options.get("expiration", 0))

    def kv(self, ns: str) -> engine.Namespace:
        return self.db.namespace(ns)

    # -- writes -------------------------------------------------------------------------
    def _put(self, ns: str, key: str, value: bytes, meta: Any, expiry: Any, as_text: bool) -> None:
        options = self.expiration(expiry)
        entry = self.stored(value, meta, options)
        data: Any = value
        if as_text:
            with contextlib.suppress(UnicodeDecodeError):
                data = value.decode()
        self.kv(ns).put(key, data, metadata=meta, **options)
        self.model[ns][key] = entry

    @rule(
        ns=st.sampled_from(NAMESPACES),
        key=KEYS,
        value=VALUES,
        meta=METADATA,
        expiry=EXPIRY,
        as_text=st.booleans(),
    )
    def put(self, ns: str, key: str, value: bytes, meta: Any, expiry: Any, as_text: bool) -> None:
        self._put(ns, key, value, meta, expiry, as_text)

    @rule(
        ns=st.sampled_from(NAMESPACES),
        items=st.lists(st.tuples(KEYS, VALUES, METADATA, EXPIRY), max_size=5),
    )
    def put_many(self, ns: str, items: list[tuple[str, bytes, Any, Any]]) -> None:
        self._put_many(ns, items)

    def _put_many(self, ns: str, items: list[tuple[str, bytes, Any, Any]]) -> None:
        batch = []
        entries = []
        for key, value, meta, expiry in items:
            options = self.expiration(expiry)
            batch.append({"key": key, "value": value, "metadata": meta, **options})
            entries.append((key, self.stored(value, meta, options)))
        self.kv(ns).put_many(batch)
        for key, entry in entries:
            self.model[ns][key] = entry

    @rule(ns=st.sampled_from(NAMESPACES), key=KEYS)
    def delete(self, ns: str, key: str) -> None:
        self.kv(ns).delete(key)
        self.model[ns].pop(key, None)

    @rule(ns=st.sampled_from(NAMESPACES), keys=st.lists(KEYS, max_size=5))
    def delete_many(self, ns: str, keys: list[str]) -> None:
        self.kv(ns).delete_many(keys)
        for key in keys:
            self.model[ns].pop(key, None)

    @rule(ns=st.sampled_from(NAMESPACES))
    def delete_namespace(self, ns: str) -> None:
        self.db.delete_namespace(ns)
        self.model[ns] = {}

    # -- reads --------------------------------------------------------------------------
    @rule(ns=st.sampled_from(NAMESPACES), key=KEYS)
    def get(self, ns: str, key: str) -> None:
        entry = self.live(ns).get(key)
        kv = self.kv(ns)
        if entry is None:
            assert kv.get(key, "bytes") is None
            assert kv.get(key) is None
            assert kv.get_with_metadata(key) == ValueWithMetadata(None, None)
            return
        assert kv.get(key, "bytes") == entry[0]
        assert kv.get(key) == entry[0].decode(errors="replace")
        assert kv.get_with_metadata(key, "bytes") == ValueWithMetadata(entry[0], entry[1])

    @rule(ns=st.sampled_from(NAMESPACES), key=KEYS)
    def get_stream(self, ns: str, key: str) -> None:
        entry = self.live(ns).get(key)
        stream = self.kv(ns).get(key, "stream")
        if entry is None:
            assert stream is None
            return
        with stream:
            assert stream.read() == entry[0]

    @rule(ns=st.sampled_from(NAMESPACES), keys=st.lists(KEYS, min_size=1, max_size=5))
    def get_many(self, ns: str, keys: list[str]) -> None:
        live = self.live(ns)
        got = self.kv(ns).get_many(keys, with_metadata=True)
        assert got == {
            k: ValueWithMetadata(live[k][0].decode(errors="replace"), live[k][1])
            if k in live
            else None
            for k in keys
        }

    # -- list pages: a walk is started, continued by later steps, checked page by page --
    def expected_page(self, ns: str, prefix: str, after: str | None, limit: int) -> list[KeyInfo]:
        names = sorted(
            (k for k in self.live(ns) if k.startswith(prefix)),
            key=str.encode,
        )
        if after is not None:
            names = [k for k in names if k.encode() > after.encode()]
        live = self.live(ns)
        return [KeyInfo(k, live[k][2] or None, live[k][1]) for k in names[: limit + 1]]

    def check_page(
        self, ns: str, prefix: str, after: str | None, limit: int, cursor: str | None
    ) -> tuple[str, str, str | None, int, str | None] | None:
        page = self.kv(ns).list(prefix=prefix, limit=limit, cursor=cursor)
        expected = self.expected_page(ns, prefix, after, limit)
        assert page.keys == expected[:limit]
        assert page.list_complete == (len(expected) <= limit)
        assert (page.cursor is None) == page.list_complete
        if page.list_complete:
            return None
        return (ns, prefix, page.keys[-1].name, limit, page.cursor)

    @rule(
        target=pages,
        ns=st.sampled_from(NAMESPACES),
        prefix=st.sampled_from(["", "a", "b", "€"]),
        limit=st.integers(1, 4),
    )
    def list_first_page(self, ns: str, prefix: str, limit: int) -> Any:
        return self.check_page(ns, prefix, None, limit, None)

    @rule(target=pages, walk=pages, limit=st.integers(1, 4))
    def list_next_page(self, walk: Any, limit: int) -> Any:
        if walk is None:
            return None
        ns, prefix, after, _, cursor = walk
        return self.check_page(ns, prefix, after, limit, cursor)

    @invariant()
    def full_listing_matches(self) -> None:
        for ns in NAMESPACES:
            expected = self.expected_page(ns, "", None, 1000)
            assert self.kv(ns).list().keys == expected

    # -- time, lifecycle, crashes -------------------------------------------------------
    @rule(seconds=STEPS)
    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = self._open()

    @precondition(lambda self: hasattr(LogStore, "compact"))
    @rule()
    def compact(self) -> None:
        self.db.compact()

    @rule(
        ns=st.sampled_from(NAMESPACES),
        torn=st.one_of(
            st.tuples(st.just("put"), KEYS, VALUES, METADATA, EXPIRY),
            st.tuples(st.just("put_many"), st.lists(st.tuples(KEYS, VALUES, METADATA, EXPIRY))),
            st.tuples(st.just("delete"), KEYS),
        ),
        where=st.floats(0, 1),
    )
    def crash_during_a_write(self, ns: str, torn: tuple[Any, ...], where: float) -> None:
        """Closes the store mid-write: the write's record bytes are cut at a random point."""
        self.kv(ns)  # the namespace's catalog entry is an earlier, whole write
        self.db.sync()
        before = self._segment_sizes()
        saved = {n: dict(m) for n, m in self.model.items()}
        if torn[0] == "put":
            self._put(ns, *torn[1:], as_text=False)
        elif torn[0] == "put_many":
            self._put_many(ns, torn[1])
        else:
            self.delete(ns, torn[1])
        self.db.close()
        after = self._segment_sizes()
        newest = max(after)
        if newest in before and after[newest] > before[newest]:
            # A cut in the last 8 bytes might take only padding, leaving the record whole;
            # at or before end - 8 it always takes record bytes.
            start, end = before[newest], after[newest]
            os.truncate(newest, start + int(where * (end - 8 - start)))
            self.model = saved  # the torn write vanishes whole
        # else: nothing written, or the write began a segment: a clean close.
        self.db = self._open()

    def _segment_sizes(self) -> dict[Path, int]:
        return {p: p.stat().st_size for p in self.path.glob("*.seg")}


def _settings() -> settings:
    try:
        settings.get_profile("ci")
    except InvalidArgument:
        # No profiles from tests/conftest.py: a small run that stays quick by default.
        return settings(
            max_examples=30,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
    # The loaded profile (HYPOTHESIS_PROFILE) decides how many runs.
    return settings(
        stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


KVMachine.TestCase.settings = _settings()
TestKVStateMachine = KVMachine.TestCase
