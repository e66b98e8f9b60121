"""Simulated power loss (tools/power_loss.py): every state a power cut could leave at every
journaled I/O call keeps every write acknowledged under sync="always", and nothing else.

The default run explores a few seeded workloads per sync mode; the slow run 25 longer ones.
The harness is shown to have teeth: with an fsync removed from the journal, or writes
acknowledged before their fsync, it finds lost acknowledged writes.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator

import pytest
from _tools import load_tool

from engine._ffi import lib
from engine.storage import LogStore

pl = load_tool("power_loss")
COMPACTION = callable(getattr(LogStore, "compact", None))


@pytest.fixture
def base() -> Iterator[str]:
    path = pl.scratch_base()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _run(base: str, seed: int, ops: int, compaction: bool = COMPACTION):  # type: ignore[no-untyped-def]
    return pl.record(os.path.join(base, f"w{seed}"), pl.workload(seed, ops, compaction))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_crash_point(base: str, seed: int) -> None:
    run = _run(base, seed, 30)
    figures = pl.explore(run, os.path.join(base, "state"), seed)
    assert figures.crash_points == len(run.events) + 1
    assert figures.states > figures.crash_points


@pytest.mark.parametrize("seed", [4, 5])
def test_buffered_writes_with_explicit_syncs(base: str, seed: int) -> None:
    """sync="os": what sync() covered survives; the rest is a prefix, or a reported hole."""
    ops = pl.workload(seed, 30, COMPACTION, syncs=True)
    assert any(op.kind == "sync" for op in ops)
    run = pl.record(os.path.join(base, "w"), ops, "os")
    figures = pl.explore(run, os.path.join(base, "state"), seed)
    assert figures.states > figures.crash_points


@pytest.mark.slow
def test_every_crash_point_of_25_workloads(base: str) -> None:
    figures = pl.Figures()
    for seed in range(100, 125):
        pl.explore(_run(base, seed, 60), os.path.join(base, "state"), seed, figures=figures)
    assert figures.damage_reports > 0  # torn writes were among the states


@pytest.mark.skipif(not COMPACTION, reason="this build has no compactor")
def test_compaction_protocol_under_power_loss(base: str) -> None:
    ops = [pl.Op("put", ((b"k%02d" % (i % 6), b"v%d" % i * 50),)) for i in range(40)]
    ops += [pl.Op("delete", ((b"k01", None),)), pl.Op("compact"), pl.Op("put", ((b"k02", b"x"),))]
    run = pl.record(os.path.join(base, "w"), ops)
    assert any(e.kind == lib.KV_IO_EV_RENAME for e in run.events)
    pl.explore(run, os.path.join(base, "state"), 7)


def _without(run, kind: int):  # type: ignore[no-untyped-def]
    events = [dataclasses.replace(e, kind=0) if e.kind == kind else e for e in run.events]
    return dataclasses.replace(run, events=events)


def _acked_after_write(run):  # type: ignore[no-untyped-def]
    ack = []
    for i in range(len(run.ops)):
        pos = run.ack[i]
        for j in range(run.start[i], run.ack[i]):
            if run.events[j].kind == lib.KV_IO_EV_WRITE:
                pos = j + 1
        ack.append(pos)
    return dataclasses.replace(run, ack=ack)


@pytest.mark.parametrize("bug", ["no directory fsync", "no file fdatasync", "ack before fsync"])
def test_seeded_durability_bugs_are_detected(base: str, bug: str) -> None:
    run = _run(base, 1, 20, compaction=False)
    mutant = {
        "no directory fsync": lambda: _without(run, lib.KV_IO_EV_DIRSYNC),
        "no file fdatasync": lambda: _without(run, lib.KV_IO_EV_SYNC),
        "ack before fsync": lambda: _acked_after_write(run),
    }[bug]()
    with pytest.raises(pl.Violation):
        pl.explore(mutant, os.path.join(base, "state"), 1)


def test_journal_records_each_call_in_order(base: str) -> None:
    run = pl.record(os.path.join(base, "w"), [pl.Op("put", ((b"k", b"hello"),))])
    kinds = [e.kind for e in run.events]
    put = kinds[run.start[0] : run.ack[0]]
    assert put == [lib.KV_IO_EV_WRITE, lib.KV_IO_EV_SYNC]  # sync="always": write, then fdatasync
    write = run.events[run.start[0]]
    assert write.off == 64 and b"k" in write.data and b"hello" in write.data
    # Creating the segment: open, header write, its fdatasync, then the directory fsync.
    assert kinds[1:5] == [
        lib.KV_IO_EV_OPEN,
        lib.KV_IO_EV_WRITE,
        lib.KV_IO_EV_SYNC,
        lib.KV_IO_EV_DIRSYNC,
    ]
    assert run.events[1].name == "0000000000000001.seg"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fsync_discipline(base: str, seed: int) -> None:
    """Every op returns only after its files are fdatasynced and new names are in a synced
    directory (DURABILITY.md G10), checked on the journal rather than by crashing."""
    run = _run(base, seed, 60)
    assert pl.audit_fsync_discipline(run) == []
    # The audit is not vacuous: without the directory fsyncs it finds the new segments.
    assert pl.audit_fsync_discipline(_without(run, lib.KV_IO_EV_DIRSYNC))
    assert pl.audit_fsync_discipline(_without(run, lib.KV_IO_EV_SYNC))


def test_replay_models_unsynced_data_as_losable() -> None:
    """The state model itself: unsynced writes may vanish, tear or be reordered."""
    node = pl.Inode(b"abc", [("w", 3, b"d" * 1000), ("w", 1003, b"e")])
    variants = list(pl.content_variants(node, pl.random.Random(1)))
    assert b"abc" in variants  # nothing reached the disk
    assert b"abc" + b"d" * 1000 + b"e" in variants  # everything did
    assert b"abc" + bytes(1000) + b"e" in variants  # the second write, not the first
    assert any(v.startswith(b"abc" + b"d" * 509) and v[512:1003] == bytes(491) for v in variants)
