"""One writer process per store directory (docs/FORMAT.md section 1, DESIGN.md section 1).

The writer holds flock(LOCK_EX) on LOCK: a second writer, in another process or in
this one, gets StoreLockedError at once instead of waiting; the lock dies with its
holder, even one killed by SIGKILL, so no stale lock or PID file survives a crash.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import engine
from engine.errors import StoreLockedError
from engine.storage import LogStore

# Tries to open the store for writing; prints "locked" or "opened".
PROBE = textwrap.dedent(
    """
    import sys
    from engine.errors import StoreLockedError
    from engine.storage import LogStore
    try:
        LogStore(sys.argv[1]).close()
    except StoreLockedError as exc:
        print("locked", exc)
    else:
        print("opened")
    """
)

# Opens the store, writes a key, says so, then waits to be killed.
HOLDER = textwrap.dedent(
    """
    import sys, time
    from engine.storage import LogStore
    s = LogStore(sys.argv[1])
    s.put(b"written-by", b"holder")
    print("ready", flush=True)
    time.sleep(120)
    """
)


def probe(path: Path) -> str:
    # The timeout is far above any real open: it turns a writer that waits for the
    # lock (instead of failing at once) into a failure rather than a hang.
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_second_writer_in_another_process_is_refused_at_once(store_path: Path) -> None:
    with engine.open(store_path):
        answer = probe(store_path)
        assert answer.startswith("locked")
        assert "lock" in answer
    assert probe(store_path) == "opened"  # released by close


def test_second_writer_in_the_same_process_is_refused(store_path: Path) -> None:
    first = LogStore(store_path)
    try:
        with pytest.raises(StoreLockedError):
            LogStore(store_path)
        with pytest.raises(StoreLockedError):
            engine.open(store_path)
        first.put(b"k", b"still usable")  # a refused open does not disturb the holder
        assert first.get(b"k", 0).value == b"still usable"
    finally:
        first.close()
    LogStore(store_path).close()


def test_lock_dies_with_a_killed_holder(store_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        assert probe(store_path).startswith("locked")
        os.kill(holder.pid, signal.SIGKILL)
        assert holder.wait(timeout=60) == -signal.SIGKILL
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    store = LogStore(store_path)
    try:
        # sync="os": the write was in the kernel when put returned; the kill loses nothing.
        assert store.get(b"written-by", 0).value == b"holder"
    finally:
        store.close()


def test_no_pid_file_only_the_lock_file(store_path: Path) -> None:
    with engine.open(store_path) as db:
        db.namespace().put("k", "v")
        names = sorted(os.listdir(store_path))
    assert "LOCK" in names
    assert all(n.endswith(".seg") for n in names if n != "LOCK")
    assert (store_path / "LOCK").stat().st_size == 0
