"""Values of up to 25 MiB as streams: in from files and iterators, out lazily, in bounded memory."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine import KVError

MAX_VALUE = 26_214_400
CHUNK = bytes(range(256)) * 256  # 64 KiB; 400 of them are exactly 25 MiB
MiB = 1 << 20


@pytest.fixture
def db(tmp_path: Path) -> Iterator[engine.Store]:
    with engine.open(tmp_path / "db") as store:
        yield store


@pytest.fixture
def kv(db: engine.Store) -> engine.Namespace:
    return db.namespace()


@pytest.fixture(scope="module")
def max_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of exactly 25 MiB, written without holding it in memory."""
    path = tmp_path_factory.mktemp("src") / "max.bin"
    with path.open("wb") as f:
        for _ in range(MAX_VALUE // len(CHUNK)):
            f.write(CHUNK)
    return path


def max_digest() -> str:
    h = hashlib.sha256()
    for _ in range(MAX_VALUE // len(CHUNK)):
        h.update(CHUNK)
    return h.hexdigest()


def stream_digest(kv: engine.Namespace, key: str) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with kv.get(key, "stream") as stream:
        while block := stream.read(256 * 1024):
            h.update(block)
            n += len(block)
    return h.hexdigest(), n


def no_spool_files(db: engine.Store) -> bool:
    return not [p for p in Path(db.path).iterdir() if p.name.startswith("spool-")]


# -- in ---------------------------------------------------------------------------------


def test_25_mib_from_a_file(kv: engine.Namespace, max_file: Path) -> None:
    with max_file.open("rb") as f:
        kv.put("k", f)
    assert stream_digest(kv, "k") == (max_digest(), MAX_VALUE)


def test_25_mib_from_an_iterator(kv: engine.Namespace) -> None:
    kv.put("k", itertools.repeat(CHUNK, MAX_VALUE // len(CHUNK)), metadata={"m": 1})
    assert stream_digest(kv, "k") == (max_digest(), MAX_VALUE)
    assert kv.get_with_metadata("k", "bytes").metadata == {"m": 1}


@pytest.mark.parametrize("size", [0, 1, MiB - 1, MiB, MiB + 1, 3 * MiB + 7])
def test_sizes_around_the_spool_threshold(kv: engine.Namespace, size: int) -> None:
    data = (CHUNK * (size // len(CHUNK) + 1))[:size]
    kv.put("k", (data[i : i + 10_000] for i in range(0, size, 10_000)))
    assert kv.get("k", "bytes") == data


@pytest.mark.parametrize(
    "make",
    [
        lambda: itertools.chain(itertools.repeat(CHUNK, 400), [b"!"]),
        lambda: io.BufferedReader(
            io.BytesIO(b"x" * (MAX_VALUE + 1)), buffer_size=MiB
        ),  # 25 reads of 1 MiB, then the odd byte
    ],
    ids=["iterator", "file"],
)
def test_one_byte_over_is_refused_and_the_old_value_kept(
    db: engine.Store, kv: engine.Namespace, make: object
) -> None:
    kv.put("k", "old", metadata="old")
    with pytest.raises(KVError) as info:
        kv.put("k", make(), metadata="new")  # type: ignore[operator]
    assert info.value.status == 413
    assert str(info.value) == (
        "KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400."
    )
    assert kv.get_with_metadata("k") == engine.ValueWithMetadata("old", "old")
    assert no_spool_files(db)


def test_endless_stream_is_refused_without_reading_it_all(
    db: engine.Store, kv: engine.Namespace
) -> None:
    read = 0

    def endless() -> Iterator[bytes]:
        nonlocal read
        while True:
            read += len(CHUNK)
            yield CHUNK

    with pytest.raises(KVError, match="413 Value length of"):
        kv.put("k", endless())
    assert read <= MAX_VALUE + len(CHUNK)
    assert kv.get("k") is None
    assert no_spool_files(db)


def test_refused_stream_leaves_the_log_unchanged(db: engine.Store, kv: engine.Namespace) -> None:
    kv.put("k", "old")
    disk = db.stats().disk_bytes
    with pytest.raises(KVError):
        kv.put("k", itertools.repeat(CHUNK, 401))
    assert db.stats().disk_bytes == disk


# -- out --------------------------------------------------------------------------------


def test_stream_reads_in_small_pieces_and_seeks(kv: engine.Namespace) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB
    kv.put("k", data)
    with kv.get("k", "stream") as stream:
        assert len(stream) == len(data)
        assert stream.read(3) == data[:3]
        stream.seek(1_000_000)
        assert stream.read(10) == data[1_000_000:1_000_010]
        stream.seek(-5, io.SEEK_END)
        assert stream.read() == data[-5:]
        buf = bytearray(7)
        stream.seek(100)
        assert stream.readinto(buf) == 7
        assert bytes(buf) == data[100:107]


def test_opening_a_stream_does_not_load_the_value(kv: engine.Namespace) -> None:
    kv.put("k", itertools.repeat(CHUNK, MAX_VALUE // len(CHUNK)))
    tracemalloc.start()
    try:
        with kv.get("k", "stream") as stream:
            while stream.read(64 * 1024):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * MiB


def test_streamed_put_holds_little_python_memory(kv: engine.Namespace, max_file: Path) -> None:
    tracemalloc.start()
    try:
        kv.put("iter", itertools.repeat(CHUNK, MAX_VALUE // len(CHUNK)))
        with max_file.open("rb") as f:
            kv.put("file", f)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB


# -- peak resident memory, C allocations included (one fresh process per measurement) ---

_MEASURE = r"""
import hashlib, itertools, json, sys
import engine

def peak():
    # VmHWM belongs to this process image; getrusage's ru_maxrss would carry the peak
    # of the forked pytest process across exec.
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")

mode, path, src = sys.argv[1:]
chunk = bytes(range(256)) * 256
# A fresh store: opening one that holds big values may itself take memory.
db = engine.open(path)
kv = db.namespace()
# Warm up every code path at a small size, so the baseline holds their code and buffers.
kv.put("warm", itertools.repeat(chunk, 40))
with kv.get("warm", "stream") as s:
    while s.read(65536):
        pass
hashlib.sha256(kv.get("warm", "bytes")).hexdigest()
if mode.startswith("get-"):
    kv.put("big", itertools.repeat(chunk, 400))
base = peak()
if mode == "put-iter":
    kv.put("big", itertools.repeat(chunk, 400))
elif mode == "put-file":
    with open(src, "rb") as f:
        kv.put("big", f)
elif mode == "get-stream":
    with kv.get("big", "stream") as s:
        while s.read(65536):
            pass
elif mode == "get-bytes":
    kv.get("big", "bytes")
print(json.dumps(peak() - base))
db.close()
"""


def _peak_added(mode: str, tmp_path: Path, src: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _MEASURE, mode, str(tmp_path / mode), str(src)],
        check=True,
        capture_output=True,
        text=True,
    )
    added: int = json.loads(out.stdout)
    return added


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.skipif(
    bool(os.environ.get("KVENGINE_SANITIZED")),
    reason="AddressSanitizer's quarantine and shadow memory make RSS figures meaningless",
)
def test_25_mib_streamed_put_and_get_add_at_most_a_few_mib_rss(
    tmp_path: Path, max_file: Path
) -> None:
    added = {
        mode: _peak_added(mode, tmp_path, max_file)
        for mode in ("put-iter", "put-file", "get-stream", "get-bytes")
    }
    assert added["put-iter"] < 6 * MiB, added
    assert added["put-file"] < 6 * MiB, added
    assert added["get-stream"] < 6 * MiB, added
    # The measurement can see a 25 MiB value: reading it whole does show up.
    assert added["get-bytes"] >= 20 * MiB, added
