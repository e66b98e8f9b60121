"""Killed at any instant of a compaction, the store reopens with exactly the data it had.

A child process opens a prepared store and compacts it, with the I/O seam set to
SIGKILL the process just before its Nth write, sync, rename or unlink
(kv_io_fault_set with KV_IO_FAULT_KILL).  For every N until the compaction runs to
its end, the parent reopens the store and checks every key against the model,
then compacts it fully and checks again (so a half-finished compaction can be
finished by the next one without losing or resurrecting a key).  The prepared
store holds overwritten, deleted, expired and batch-written keys, with older
versions spread over segments that a partial compaction leaves out.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine._ffi import lib
from engine.storage import BatchOp, LogStore

NOW = 1_000_000
SEG = 4096

CHILD = textwrap.dedent(
    """
    import sys
    from engine._ffi import lib
    from engine.storage import LogStore

    path, op, nth, which = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    now = int(sys.argv[5])
    store = LogStore(path, max_segment_bytes=int(sys.argv[6]))
    if which == "all":
        segments = "all"
    else:
        sealed = [s.id for s in store.segments(now) if not s.active]
        segments = sealed[int(which) :: 2]
    lib.kv_io_fault_set(op, nth, lib.KV_IO_FAULT_KILL, 0)
    store.compact(now, segments)
    lib.kv_io_fault_set(0, 0, 0, 0)
    store.close()
    print("completed")
    """
)


def build_store(path: Path) -> dict[bytes, bytes | None]:
    """A store whose history needs every rule of FORMAT.md section 7.1; returns the model."""
    model: dict[bytes, tuple[bytes, int] | None] = {}
    store = LogStore(path, max_segment_bytes=SEG)

    def put(key: bytes, value: bytes, expiration: int = 0) -> None:
        store.put(key, value, expiration=expiration)
        model[key] = (value, expiration)

    for round_ in range(4):
        for i in range(24):
            key = b"key-%02d" % i
            put(key, b"%s-r%d-" % (key, round_) * 6)
        for i in range(0, 24, 5 + round_):
            store.delete(b"key-%02d" % i)
            model[b"key-%02d" % i] = None
        # Newer versions that expire before NOW shadow older, unexpired ones.
        for i in range(round_, 24, 7):
            put(b"key-%02d" % i, b"short-lived", expiration=NOW - 10 - round_)
        put(b"ttl-%d" % round_, b"still here", expiration=NOW + 3600)
        ops = [BatchOp(b"batch-%d" % j, b"b%d" % round_ * 9) for j in range(5)]
        ops.append(BatchOp(b"key-%02d" % (round_ * 3 + 1)))
        store.write_batch(ops)
        for op in ops:
            model[op.key] = None if op.value is None else (op.value, 0)
    store.close()
    return {k: (None if v is None or (v[1] and v[1] <= NOW) else v[0]) for k, v in model.items()}


def check_state(path: Path, expected: dict[bytes, bytes | None]) -> None:
    """A read-only open (which honours a manifest without completing it) and then a
    writer open (which completes it and clears leftovers) both read exactly `expected`."""
    for readonly in (True, False):
        store = LogStore(path, max_segment_bytes=SEG, readonly=readonly)
        try:
            assert not store.damage()
            for key, value in expected.items():
                record = store.get(key, NOW)
                assert (record.value if record else None) == value, key
        finally:
            store.close()
    leftovers = [n for n in os.listdir(path) if n.endswith((".tmp", ".compact"))]
    assert not leftovers


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[bytes, bytes | None]]:
    path = tmp_path_factory.mktemp("template") / "store"
    return path, build_store(path)


OPS = {
    "write": lib.KV_IO_OP_WRITE,
    "sync": lib.KV_IO_OP_SYNC,
    "rename": lib.KV_IO_OP_RENAME,
    "unlink": lib.KV_IO_OP_UNLINK,
}


def run_kills(
    template: tuple[Path, dict[bytes, bytes | None]], work: Path, op: str, which: str
) -> int:
    """Kills the child at every call of class op in turn; returns the number of kills."""
    src, expected = template
    kills = 0
    for nth in range(1, 400):
        store = work / f"{op}-{which}-{nth}"
        shutil.copytree(src, store)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(store), str(OPS[op]), str(nth), which,
             str(NOW), str(SEG)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert proc.returncode == 0 and "completed" in proc.stdout, proc.stderr
        check_state(store, expected)
        # The next compaction finishes whatever the killed one left.
        again = LogStore(store, max_segment_bytes=SEG)
        again.compact(NOW, "all")
        again.close()
        check_state(store, expected)
        shutil.rmtree(store)
        if proc.returncode == 0:
            return kills
    raise AssertionError("the compaction never completed")


@pytest.mark.parametrize("op", sorted(OPS))
def test_kill_during_full_compaction(
    template: tuple[Path, dict[bytes, bytes | None]], tmp_path: Path, op: str
) -> None:
    assert run_kills(template, tmp_path, op, "all") > 0


@pytest.mark.slow
@pytest.mark.parametrize("which", ["0", "1"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_kill_during_partial_compaction(
    template: tuple[Path, dict[bytes, bytes | None]], tmp_path: Path, op: str, which: str
) -> None:
    assert run_kills(template, tmp_path, op, which) > 0


def test_partial_compactions_keep_exact_data(
    template: tuple[Path, dict[bytes, bytes | None]], tmp_path: Path
) -> None:
    """Every other segment compacted (both halves in turn), then reopen: nothing changes."""
    src, expected = template
    store_path = tmp_path / "store"
    shutil.copytree(src, store_path)
    store = LogStore(store_path, max_segment_bytes=SEG)
    for start in (0, 1):
        sealed = [s.id for s in store.segments(NOW) if not s.active]
        report = store.compact(NOW, sealed[start::2])
        assert report.segments_in == len(sealed[start::2])
    tombstones = sum(s.tombstone_bytes for s in store.segments(NOW))
    store.close()
    check_state(store_path, expected)
    assert tombstones > 0


CHILD_OPEN = textwrap.dedent(
    """
    import sys
    from engine._ffi import lib
    from engine.storage import LogStore

    path, op, nth, seg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    lib.kv_io_fault_set(op, nth, lib.KV_IO_FAULT_KILL, 0)
    LogStore(path, max_segment_bytes=seg).close()
    print("completed")
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("op", ["sync", "unlink"])
def test_kill_during_the_open_that_completes_a_compaction(
    template: tuple[Path, dict[bytes, bytes | None]], tmp_path: Path, op: str
) -> None:
    """A store left with a manifest (killed between retiring inputs) is killed again at
    every call of the open that completes it; the next open still reads exactly."""
    src, expected = template
    crashed = tmp_path / "crashed"
    for nth in range(1, 400):
        shutil.copytree(src, crashed)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, str(crashed), str(OPS["unlink"]), str(nth), "all",
             str(NOW), str(SEG)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if list(crashed.glob("*.compact")):
            break
        shutil.rmtree(crashed)
    else:
        raise AssertionError("no kill left a manifest behind")
    kills = 0
    for nth in range(1, 400):
        store = tmp_path / f"reopen-{nth}"
        shutil.copytree(crashed, store)
        proc = subprocess.run(
            [sys.executable, "-c", CHILD_OPEN, str(store), str(OPS[op]), str(nth), str(SEG)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        check_state(store, expected)
        shutil.rmtree(store)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        kills += 1
    assert kills > 0
