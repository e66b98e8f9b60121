"""kvengine compact [--dry-run]: the prediction, the report and its errors."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner, Result

import engine
from engine.cli import cli
from engine.inspect import segment_paths
from engine.storage import LogStore

pytestmark = pytest.mark.skipif(
    not hasattr(LogStore, "compact"), reason="this build has no compactor (LogStore.compact)"
)


def run(db: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--db", db, *args], catch_exceptions=False)


@pytest.fixture
def store(tmp_path):
    """A store of several sealed segments holding overwritten, deleted and expired records."""
    db = str(tmp_path / "store")
    past = time.time() - 120  # keys written "then" with a 60 s TTL are expired now
    with engine.open(db, max_segment_bytes=8192, clock=lambda: past, auto_compact=False) as s:
        kv = s.namespace()
        for i in range(40):
            kv.put(f"expired-{i}", "e" * 90, expiration_ttl=60)
    with engine.open(db, max_segment_bytes=8192, auto_compact=False) as s:
        kv = s.namespace()
        for round_ in range(3):
            for i in range(60):
                kv.put(f"key-{i}", f"{round_}" * 120)
        for i in range(0, 60, 3):
            kv.delete(f"key-{i}")
        for i in range(30):
            kv.put(f"filler-{i}", "f" * 100)
    return db


def sizes(db: str) -> dict[str, int]:
    return {p: os.path.getsize(p) for p in segment_paths(db)}


def test_dry_run_predicts_within_five_percent_and_changes_nothing(store):
    before = sizes(store)
    dry = run(store, "compact", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    predicted = json.loads(dry.stdout)
    assert predicted["dry_run"] is True
    assert sizes(store) == before
    done = run(store, "compact", "--json")
    assert done.exit_code == 0, done.stderr
    actual = json.loads(done.stdout)
    assert actual["dry_run"] is False
    assert actual["bytes_reclaimed"] > 0
    assert abs(predicted["bytes_reclaimed"] - actual["bytes_reclaimed"]) <= (
        0.05 * actual["bytes_reclaimed"]
    )
    assert set(actual["bytes_dropped"]) <= {"overwritten", "deleted", "expired", "tombstone"}
    for reason in ("overwritten", "expired"):
        assert actual["bytes_dropped"].get(reason, 0) > 0, reason
    assert sum(sizes(store).values()) < sum(before.values())
    assert run(store, "get", "key-1").stdout == "2" * 120
    assert run(store, "get", "key-0").exit_code == 1


def test_text_report_lists_reasons(store):
    result = run(store, "compact")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("reclaimed ")
    assert "REASON" in result.stdout and "overwritten" in result.stdout
    assert run(store, "verify").exit_code == 0


def test_compact_refuses_a_locked_store(store):
    with engine.open(store):
        result = run(store, "compact")
    assert result.exit_code == 1
    assert "open for writing by another process" in result.stderr


def test_compact_needs_a_store(tmp_path):
    result = run(str(tmp_path / "none"), "compact")
    assert result.exit_code == 1 and result.stderr.startswith("no store at")


def test_progress_bar_on_a_terminal(store):
    """On a terminal, compact draws a progress bar on stderr; elsewhere it does not."""
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "engine", "--db", store, "compact"],
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=120,
        )
        os.close(secondary)
        secondary = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other side is closed
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert proc.returncode == 0
    assert b"compacting" in drawn and b"100%" in drawn
    assert proc.stdout.startswith(b"reclaimed ")
