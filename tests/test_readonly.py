"""readonly=True opens need no writer lock and run beside a writer (DESIGN.md section 1).

A read-only open sees what was on disk when it opened, never writes, never repairs,
and never creates a store that is not there.
"""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import engine
from engine.errors import EngineIOError, ReadOnlyError
from engine.storage import LogStore

WRITER = textwrap.dedent(
    """
    import sys
    from engine.storage import LogStore
    s = LogStore(sys.argv[1])
    for i in range(1000):
        s.put(b"key-%04d" % i, b"value-%04d" % i)
    print("ready", flush=True)
    sys.stdin.readline()          # hold the lock until told to go
    s.put(b"late", b"after the reader opened")
    s.close()
    """
)


def test_readonly_beside_a_writer_in_another_process(store_path: Path) -> None:
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(store_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "ready"
        reader = LogStore(store_path, readonly=True)
        try:
            for i in range(0, 1000, 7):
                assert reader.get(b"key-%04d" % i, 0).value == b"value-%04d" % i
            assert len(list(reader.iter_keys(b"key-", 0))) == 1000
            assert reader.damage() == []
            with pytest.raises(ReadOnlyError):
                reader.put(b"x", b"y")
            writer.stdin.write("go\n")
            writer.stdin.flush()
            assert writer.wait(timeout=60) == 0
            # A snapshot of what was on disk at open.
            assert reader.get(b"late", 0) is None
        finally:
            reader.close()
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    again = LogStore(store_path, readonly=True)
    try:
        assert again.get(b"late", 0).value == b"after the reader opened"
    finally:
        again.close()


def test_readonly_beside_a_writer_in_this_process(store_path: Path) -> None:
    with engine.open(store_path) as db:
        db.namespace("ns").put("k", "v1")
        with engine.open(store_path, readonly=True) as ro:
            assert ro.namespace("ns").get("k") == "v1"
            with pytest.raises(ReadOnlyError):
                ro.namespace("ns").put("k", "v2")
            with pytest.raises(ReadOnlyError):
                ro.namespace("ns").delete("k")
        db.namespace("ns").put("k", "v2")  # the writer is unaffected
        assert db.namespace("ns").get("k") == "v2"


def test_every_write_is_refused(store_path: Path) -> None:
    LogStore(store_path).close()
    ro = LogStore(store_path, readonly=True)
    try:
        for attempt in (
            lambda: ro.put(b"k", b"v"),
            lambda: ro.delete(b"k"),
            lambda: ro.put_stream(b"k", [b"v"]),
            lambda: ro.put_stream(b"k", [bytes(1 << 20)] * 3),  # past the in-memory part
            lambda: ro.write_batch([engine.storage.BatchOp(b"k", b"v")]),
        ):
            with pytest.raises(ReadOnlyError):
                attempt()
        ro.sync()  # nothing to make durable: not an error
    finally:
        ro.close()
    assert sorted(p.suffix for p in store_path.iterdir()) == ["", ".seg"]  # nothing spooled


def test_readonly_never_creates_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(EngineIOError) as info:
        LogStore(missing, readonly=True)
    assert info.value.errno == errno.ENOENT
    assert not missing.exists()


def test_readonly_leaves_leftover_files_alone(store_path: Path) -> None:
    LogStore(store_path).close()
    leftover = store_path / "spool-crashed.tmp"
    leftover.write_bytes(b"partial stream")
    LogStore(store_path, readonly=True).close()
    assert leftover.exists()
    LogStore(store_path).close()  # a writer clears it
    assert not leftover.exists()


def test_readonly_stream_is_refused_before_it_is_read(store_path: Path) -> None:
    # Regression: a streamed put on a read-only store spooled its value into the
    # store directory before the refusal.
    LogStore(store_path).close()
    pulled = []

    def chunks():  # type: ignore[no-untyped-def]
        for i in range(4):
            pulled.append(i)
            yield bytes(1 << 20)

    ro = LogStore(store_path, readonly=True)
    try:
        with pytest.raises(ReadOnlyError):
            ro.put_stream(b"k", chunks())
    finally:
        ro.close()
    assert pulled == []
