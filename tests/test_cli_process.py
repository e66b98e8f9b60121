"""The CLI as a user runs it: `python -m engine` and the `kvengine` console script
in a real subprocess, and `kvengine bench --quick`."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from engine.cli import cli
from engine.inspect import SegmentInspector, segment_paths

KVENGINE = os.path.join(os.path.dirname(sys.executable), "kvengine")


def python_m_engine(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_m_engine_runs_a_session_twice_and_leaves_the_store(tmp_path):
    first = python_m_engine("./kvdata", cwd=str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert 'kv.get("greeting")' in first.stdout and "'hello, world'" in first.stdout
    assert "kvengine --db ./kvdata" in first.stdout
    second = python_m_engine("./kvdata", cwd=str(tmp_path))
    assert second.returncode == 0, second.stderr
    got = python_m_engine("--db", "./kvdata", "get", "greeting", cwd=str(tmp_path))
    assert got.returncode == 0 and got.stdout == "hello, world"
    listed = python_m_engine("--db", "./kvdata", "list", "--json", cwd=str(tmp_path))
    names = [k["name"] for k in json.loads(listed.stdout)]
    assert names == ["greeting", "session:42", "user:1", "user:2"]


def test_python_m_engine_help_and_usage_errors(tmp_path):
    helped = python_m_engine("--help", cwd=str(tmp_path))
    assert helped.returncode == 0 and "Example:" in helped.stdout
    assert "bench" in helped.stdout and "verify" in helped.stdout
    wrong = python_m_engine("put", cwd=str(tmp_path))
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr


def test_python_m_engine_will_not_write_into_a_foreign_directory(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    result = python_m_engine(str(tmp_path), cwd=str(tmp_path))
    assert result.returncode == 1
    assert "holds no kvengine store" in result.stderr and "Traceback" not in result.stderr
    assert os.listdir(tmp_path) == ["notes.txt"]


@pytest.mark.skipif(not os.path.exists(KVENGINE), reason="kvengine console script not installed")
def test_console_script_verify_on_a_damaged_store(tmp_path):
    db = str(tmp_path / "kvdata")
    subprocess.run([KVENGINE, "--db", db, "put", "a", "x" * 100], check=True, timeout=60)
    subprocess.run([KVENGINE, "--db", db, "put", "b", "y" * 100], check=True, timeout=60)
    clean = subprocess.run([KVENGINE, "--db", db, "verify"], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout
    (path,) = segment_paths(db)
    with SegmentInspector(path) as seg:
        victim = next(i for i in seg if i.key.endswith(b"a") and i.type == "PUT")
    with open(path, "r+b") as f:
        f.seek(victim.end - 20)
        f.write(b"!")
    damaged = subprocess.run([KVENGINE, "--db", db, "verify"], capture_output=True, text=True)
    assert damaged.returncode == 1
    assert f"{path} offset {victim.offset}" in damaged.stdout
    assert "Traceback" not in damaged.stderr
    env = {**os.environ, "KVENGINE_DB": db}
    got = subprocess.run([KVENGINE, "get", "b"], capture_output=True, env=env, timeout=60)
    assert got.returncode == 0 and got.stdout == b"y" * 100


def test_bench_quick_prints_a_summary_table():
    result = CliRunner().invoke(cli, ["bench", "--quick"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    for phase in ("fill", "read", "overwrite", "list"):
        assert f"\n{phase} " in result.stdout
    assert "OPS/S" in result.stdout and "MB/S" in result.stdout
    assert "bytes per key" in result.stdout
    assert "fill: 20000 operations" in result.stderr


def test_bench_json_into_an_explicit_store_leaves_it_clean(tmp_path):
    db = str(tmp_path / "db")
    runner = CliRunner()
    assert runner.invoke(cli, ["--db", db, "put", "mine", "kept"]).exit_code == 0
    result = runner.invoke(cli, ["--db", db, "bench", "--keys", "300", "--json"])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["keys"] == 300
    phases = {p["name"]: p for p in data["phases"]}
    assert {"fill", "read", "overwrite", "list"} <= set(phases)
    assert all(p["ops"] > 0 and p["seconds"] > 0 for p in phases.values())
    assert all(p["ops_per_second"] > 0 and p["mb_per_second"] > 0 for p in phases.values())
    assert data["index_bytes_per_key"] > 0
    names = runner.invoke(cli, ["--db", db, "namespaces"]).stdout.split()
    assert names == ["default"]
    assert runner.invoke(cli, ["--db", db, "get", "mine"]).stdout == "kept"


def test_a_reader_that_goes_away_is_no_error_worth_a_traceback(tmp_path):
    db = str(tmp_path / "kvdata")
    blob = tmp_path / "blob"
    blob.write_bytes(b"z" * (4 << 20))  # far more than a pipe holds
    put = python_m_engine("--db", db, "put", "big", "--path", str(blob), cwd=str(tmp_path))
    assert put.returncode == 0, put.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "--db", db, "get", "big"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(10) == b"z" * 10
    proc.stdout.close()
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert b"Traceback" not in err and b"Broken pipe" not in err


def test_session_path_that_is_a_file(tmp_path, capsys):
    from engine.__main__ import run

    target = tmp_path / "afile"
    target.write_text("mine")
    with pytest.raises(SystemExit) as exited:
        run([str(target)])
    assert exited.value.code == 1
    assert capsys.readouterr().err.strip() == f"{target} is not a directory"
    assert target.read_text() == "mine"
