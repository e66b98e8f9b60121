"""The peer comparison harness (bench/peer.py) runs end to end and writes its outputs.

kvengine only, at the tiny preset: this proves the harness works, it times nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_peer_harness_runs_and_reports_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = dict(os.environ, KVENGINE_BENCH_DIR=str(tmp_path))
    subprocess.run(
        [sys.executable, str(ROOT / "bench" / "peer.py"), "--tiny", "--stores", "kvengine",
         "--out", str(out), "--no-chart"],
        check=True, capture_output=True, env=env, timeout=120,
    )  # fmt: skip
    report = json.loads((out / "peer.json").read_text())
    measured = {w for w, per in report["medians"].items() if "kvengine" in per}
    expected = {
        "put 100 B", "put 4 KiB", "overwrite 100 B", "get hit", "get 50% miss",
        "list 1000 by prefix", "put 1 MiB", "get 1 MiB", "disk after fill",
        "disk after overwrite", "open 2000-key store",
    }  # fmt: skip
    assert expected <= measured, expected - measured
    assert all(v > 0 for w in expected for v in report["runs"][w]["kvengine"])
    table = (out / "peer.md").read_text()
    assert "| put 100 B |" in table and "| target | reached | met |" in table
    assert report["durability"]["kvengine"]
