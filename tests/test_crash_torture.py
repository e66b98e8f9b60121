"""SIGKILL the writer at random instants; every acked write must survive (tools/crash_torture.py).

The default run is a few dozen cycles per sync mode; the slow run is the 1,000-cycle figure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _tools import load_tool, scratch_dir

from engine.storage import LogStore

torture = load_tool("crash_torture")


@pytest.mark.parametrize("sync", ["os", "always"])
def test_short_crash_torture(sync: str) -> None:
    base = scratch_dir("kv-torture-")
    try:
        figures = torture.torture(os.path.join(base, "store"), sync, cycles=40, seed=11)
    finally:
        shutil.rmtree(base)
    assert figures.cycles == 40
    assert figures.acked_ops > 40


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["os", "always"])
def test_long_crash_torture(tmp_path: Path, sync: str) -> None:
    figures = torture.torture(str(tmp_path / "store"), sync, cycles=1000, seed=12)
    assert figures.cycles == 1000


def test_oracle_catches_a_lost_acked_write(tmp_path: Path) -> None:
    """The checker is not vacuous: a store missing an acked put is a violation."""
    path = str(tmp_path / "store")
    op = torture.operation(3, 0, False)
    model = torture.apply({}, torture.Op(-1, "put", puts=((b"key-01", b"v", b"", 0),)))
    LogStore(path).close()
    with pytest.raises(torture.OracleViolation):
        torture.check_cycle(path, "os", model, op, torture.Figures())


def test_oracle_catches_a_wrong_value(tmp_path: Path) -> None:
    path = str(tmp_path / "store")
    model = torture.apply({}, torture.Op(-1, "put", puts=((b"key-01", b"v", b"", 0),)))
    store = LogStore(path)
    store.put(b"key-01", b"w")
    store.close()
    op = torture.Op(0, "delete", deletes=(b"key-02",))
    with pytest.raises(torture.OracleViolation):
        torture.check_cycle(path, "os", model, op, torture.Figures())
