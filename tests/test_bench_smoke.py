"""The benchmark harnesses (bench/peer.py, anatomy.py, scan.py, cold_get.py) run and report.

At tiny sizes: this proves the harnesses work, it times nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_bench(tmp_path: Path, script: str, *args: str) -> str:
    """The output of bench/<script> run with args, its stores under tmp_path."""
    env = dict(os.environ, KVENGINE_BENCH_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        check=True, capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    return done.stdout


def test_peer_harness_runs_and_reports_every_workload(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_bench(
        tmp_path, "peer.py", "--tiny", "--stores", "kvengine", "--out", str(out), "--no-chart"
    )
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
    assert "| put 100 B |" in table and "| target | reached | round by round | met |" in table
    assert report["durability"]["kvengine"]


def test_a_ratio_target_reports_the_spread_of_its_rounds() -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import peer_report
    finally:
        sys.path.remove(str(ROOT / "bench"))
    runs = {"get hit": {"kvengine": [2.0, 1.0, 4.0], "lmdb": [1.0, 1.5, 2.0]}}
    medians = {"get hit": {"kvengine": 2.0, "lmdb": 1.5}}
    report = peer_report.build(
        medians, runs, {}, {}, config={}, machine={}, versions={}, durability={}, big_bytes=1
    )
    (target,) = report["targets"]
    assert target["reached"] == "0.75x" and not target["met"]
    assert target["rounds"] == "0.50-1.50x"  # rounds 1, 2, 3: 0.5, 1.5, 0.5


def test_anatomy_times_every_layer_of_a_put_and_a_get(tmp_path: Path) -> None:
    out = run_bench(tmp_path, "anatomy.py", "--keys", "300", "--rounds", "1")
    # Rows: "  kvengine <layer> <ns per call> [<ratio to the fastest peer>x]"
    rows = [line.split() for line in out.splitlines() if line.startswith("  kvengine")]
    layers = {r[1] for r in rows}
    assert {"Namespace.get", "LogStore.get_value", "Namespace.put", "LogStore.put"} <= layers
    assert all(float(r[-2] if r[-1].endswith("x") else r[-1]) > 0 for r in rows)
    assert "pread of 136 B" in out and "pwrite of 136 B" in out


def test_scan_times_a_listing_at_every_layer(tmp_path: Path) -> None:
    out = run_bench(tmp_path, "scan.py", "--keys", "3000", "--pages", "3", "--rounds", "1")
    rows = {line.split()[0]: float(line.split()[-1]) for line in out.splitlines()[1:]}
    assert set(rows) == {"kv_list", "LogStore.list_names", "Namespace.list"}
    assert all(us > 0 for us in rows.values())


def test_cold_get_times_every_layer(tmp_path: Path) -> None:
    out = run_bench(tmp_path, "cold_get.py", "--keys", "2000", "--reads", "200", "--rounds", "1")
    rows = {line[:22].strip(): float(line[22:]) for line in out.splitlines()[1:]}
    assert set(rows) == {
        "Namespace.get", "C call + unpack", "C call, absent key", "os.pread 136 B", "loop alone",
    }  # fmt: skip
    assert all(ns > 0 for ns in rows.values())
