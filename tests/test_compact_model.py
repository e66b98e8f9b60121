"""Model-based test of compaction: puts, deletes, batches, expiry, partial and full
compactions (random subsets of sealed segments) and reopens, interleaved at random,
with every key checked against a dict model after every step.

No compaction may lose, change or resurrect a key, for any subset of segments and
across reopen; a dry run predicts exactly what the real pass then does.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from engine.storage import BatchOp, LogStore

KEYS = st.sampled_from([b"k%d" % i for i in range(12)])
VALUES = st.binary(max_size=700)
SEG = 4096


class CompactionModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="kv-model-")
        self.store = LogStore(self.dir, max_segment_bytes=SEG)
        self.now = 1_000_000
        self.model: dict[bytes, tuple[bytes, int]] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _visible(self, key: bytes) -> bytes | None:
        found = self.model.get(key)
        if found is None:
            return None
        value, expiration = found
        return None if expiration and self.now >= expiration else value

    @rule(key=KEYS, value=VALUES, ttl=st.one_of(st.just(0), st.integers(1, 200)))
    def put(self, key: bytes, value: bytes, ttl: int) -> None:
        expiration = self.now + ttl if ttl else 0
        self.store.put(key, value, expiration=expiration)
        self.model[key] = (value, expiration)

    @rule(key=KEYS)
    def delete(self, key: bytes) -> None:
        self.store.delete(key)
        self.model.pop(key, None)

    @rule(ops=st.lists(st.tuples(KEYS, st.one_of(st.none(), VALUES)), min_size=1, max_size=5))
    def batch(self, ops: list[tuple[bytes, bytes | None]]) -> None:
        self.store.write_batch([BatchOp(k, v) for k, v in ops])
        for k, v in ops:
            if v is None:
                self.model.pop(k, None)
            else:
                self.model[k] = (v, 0)

    @rule(seconds=st.integers(1, 150))
    def advance_clock(self, seconds: int) -> None:
        self.now += seconds

    @rule(data=st.data())
    def compact_some(self, data: st.DataObject) -> None:
        sealed = [s.id for s in self.store.segments(self.now) if not s.active]
        chosen = data.draw(
            st.lists(st.sampled_from(sealed), unique=True) if sealed else st.just([])
        )
        if chosen:
            self.store.compact(self.now, chosen)

    @rule(dry_first=st.booleans())
    def compact_all(self, dry_first: bool) -> None:
        if dry_first:
            predicted = self.store.compact(self.now, "all", dry_run=True)
        report = self.store.compact(self.now, "all")
        if dry_first:
            assert predicted.records_dropped == report.records_dropped
            assert predicted.bytes_after == report.bytes_after
        # A full pass leaves nothing reclaimable but what the new active segment holds.
        for seg in self.store.segments(self.now):
            if not seg.active:
                assert seg.dead_bytes == 0 and seg.tombstone_bytes == 0

    @precondition(lambda self: True)
    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = LogStore(self.dir, max_segment_bytes=SEG)
        assert not self.store.damage()

    @invariant()
    def every_key_matches(self) -> None:
        for i in range(12):
            key = b"k%d" % i
            record = self.store.get(key, self.now)
            assert (record.value if record else None) == self._visible(key), key

    @invariant()
    def no_temporary_files_left(self) -> None:
        assert not [n for n in os.listdir(self.dir) if n.endswith((".tmp", ".compact"))]


CompactionModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("KV_MODEL_EXAMPLES", "30")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCompactionModel = CompactionModel.TestCase


class LongCompactionModel(CompactionModel):
    """The same model, for nightly runs."""


LongCompactionModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("KV_MODEL_EXAMPLES_SLOW", "500")),
    stateful_step_count=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLongCompactionModel = pytest.mark.slow(LongCompactionModel.TestCase)
