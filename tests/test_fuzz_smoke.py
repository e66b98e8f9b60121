"""Property-based fuzzing of opening a store over arbitrary directory contents.

Hypothesis builds a directory from real segment files (mutated: bytes changed, cut, spliced,
duplicated under other ids) plus arbitrary files under the names the engine looks at (segments,
hints, manifests, temporary files, LOCK).  Opening it, as a writer or read-only, through the
KV layer and the storage layer, must succeed or raise a typed EngineError; so must every read
and listing afterwards.  Nothing may crash, hang or raise anything else.

The libFuzzer harnesses (csrc/fuzz, tools/fuzz_smoke.sh) attack the same parsers from C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _tools import scratch_dir
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.errors import EngineError
from engine.storage import BatchOp, LogStore


def _real_segments() -> list[bytes]:
    base = Path(tempfile.mkdtemp(prefix="kv-fuzz-seed-"))
    try:
        with engine.open(base / "s", max_segment_bytes=4096, auto_compact=False) as db:
            ns = db.namespace("ns")
            for i in range(40):
                ns.put(f"k{i % 9}", "v" * (i * 31 % 250), metadata={"i": i} if i % 3 else None)
                if i % 7 == 6:
                    ns.delete(f"k{(i + 2) % 9}")
            ns.put_many([{"key": f"b{i}", "value": str(i)} for i in range(4)])
        log = LogStore(base / "raw", max_segment_bytes=4096)
        log.write_batch([BatchOp(b"x", b"1"), BatchOp(b"y")])
        log.close()
        files = sorted((base / "s").glob("*.seg")) + sorted((base / "raw").glob("*.seg"))
        return [p.read_bytes() for p in files]
    finally:
        shutil.rmtree(base)


SEGMENTS = _real_segments()
NAMES = [f"{i:016x}.seg" for i in range(1, 6)] + [
    "0000000000000001.hint",
    "0000000000000002.hint",
    "0000000000000003.compact",
    "spool-x.tmp",
    "0000000000000004.seg.tmp",
    "LOCK",
    "README",
    "ffffffffffffffff.seg",
    "000000000000000G.seg",
]


@st.composite
def file_contents(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["segment", "random", "empty", "spliced"]))
    if kind == "empty":
        return b""
    if kind == "random":
        return draw(st.binary(max_size=600))
    data = bytearray(draw(st.sampled_from(SEGMENTS)))
    if kind == "spliced":
        other = draw(st.sampled_from(SEGMENTS))
        cut = draw(st.integers(0, len(other)))
        data += other[64 + cut // 2 : cut]
    for _ in range(draw(st.integers(0, 4))):
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if data:
            data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    return bytes(data)


directories = st.dictionaries(st.sampled_from(NAMES), file_contents(), max_size=5)


@contextlib.contextmanager
def _store_dir(files: dict[str, bytes]) -> Iterator[Path]:
    """A scratch store directory holding exactly `files`."""
    base = Path(scratch_dir("kv-fuzz-"))
    try:
        path = base / "store"
        path.mkdir(mode=0o700)
        for name, data in files.items():
            (path / name).write_bytes(data)
        yield path
    finally:
        shutil.rmtree(base)


def _exercise(path: Path, readonly: bool) -> None:
    try:
        db = engine.open(path, readonly=readonly, auto_compact=False, max_segment_bytes=4096)
    except EngineError:
        return
    try:
        for name in db.namespaces():
            ns = db.namespace(name)
            try:
                for key in ns.list(limit=1000).keys:
                    ns.get_with_metadata(key.name)
            except EngineError:
                pass
        db.stats()
        if not readonly:
            db.namespace("after").put("k", "v")
            assert db.namespace("after").get("k") == "v"
    except EngineError:
        pass
    finally:
        db.close()


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=directories, readonly=st.booleans())
def test_open_over_arbitrary_directory_contents(files: dict[str, bytes], readonly: bool) -> None:
    with _store_dir(files) as path:
        _exercise(path, readonly)
        # The storage layer directly, and a second open after whatever the first one repaired.
        try:
            log = LogStore(path, readonly=readonly, max_segment_bytes=4096)
        except EngineError:
            return
        try:
            for item in log.iter_keys(b"", 0):
                with contextlib.suppress(EngineError):
                    log.get(item.key, 0)
        except EngineError:
            pass
        finally:
            log.close()


@pytest.mark.skipif(
    not os.path.exists(Path(engine.__file__).with_name("cli.py")), reason="no CLI in this build"
)
@settings(deadline=None, max_examples=30, suppress_health_check=[HealthCheck.too_slow])
@given(files=directories)
def test_inspect_over_arbitrary_directory_contents(files: dict[str, bytes]) -> None:
    """`kvengine verify` and `kvengine inspect` report on any directory without a traceback."""
    from click.testing import CliRunner

    from engine.cli import cli

    with _store_dir(files) as path:
        runs = [["verify"]] + [["inspect", str(seg)] for seg in sorted(path.glob("*.seg"))]
        for args in runs:
            result = CliRunner().invoke(cli, ["--db", str(path), *args])
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                args,
                result.output,
            )
