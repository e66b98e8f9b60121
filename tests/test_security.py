"""Security checks: names and paths cannot escape the store, planted symlinks are not followed,
modes are private, one writer at a time (also across a crash), and hostile length fields cannot
make the engine allocate or read beyond the file."""

from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash

import engine
from engine.errors import EngineError, EngineIOError, StoreLockedError
from engine.storage import LogStore


def _hostile_names() -> list[str]:
    """More than 200 names an attacker might try as a namespace."""
    bases = [
        "..", ".", "/", "\\", "\0", "../x", "..\\x", "/etc/passwd", "C:\\x", "a/b", "a\\b",
        "a\0b", "x" * 65, "x" * 256, "x" * 4096, "", " ", "\n", "\t", "\x7f", "~", "~root",
        "$HOME", "%2e%2e", "%2f", "..%2f", "\u2024\u2024", "\uff0e\uff0e", "\u2215etc",
        "\u0000", "con", "nul", ".hidden", "-rf", "a" * 64 + "/", "LOCK", "0000000000000001.seg",
        "x.tmp", "\ud800".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
    ]  # fmt: skip
    names = list(bases)
    for prefix in ("", "ok", ".", "..", "/"):
        for sep in ("/", "\\", "\0", "\n", "\x01", "\u202e", " ", "\u00a0"):
            names.append(f"{prefix}{sep}../../escape")
            names.append(f"{prefix}{sep}x")
    names += [chr(c) for c in range(0, 0x80) if not chr(c).isalnum()]
    names += [f"../{'../' * n}tmp" for n in range(10)]
    names += [f"{'.' * n}" for n in range(3, 10)] + [f"ns{c}" for c in "/\\\0:*?<>|\"'`"]
    return names


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size)
    return out


def test_hostile_namespace_names_stay_inside_the_store(tmp_path: Path) -> None:
    names = _hostile_names()
    assert len(names) >= 200
    store_dir = tmp_path / "store"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("untouched")
    before = _tree(outside)
    accepted = 0
    with engine.open(store_dir, auto_compact=False) as db:
        for name in names:
            try:
                ns = db.namespace(name)
            except (ValueError, TypeError):
                continue
            accepted += 1
            ns.put("k", "v")
            assert ns.get("k") == "v"
    assert _tree(outside) == before
    # Only the store's own files: namespaces are key prefixes, never file names.
    for name in os.listdir(store_dir):
        assert name == "LOCK" or name.endswith((".seg", ".hint", ".compact")), name
    assert accepted < len(names)


@pytest.mark.parametrize("umask", [0o000, 0o022])
def test_directory_0700_and_files_0600(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        with engine.open(tmp_path / "store", auto_compact=False) as db:
            db.namespace().put("k", "v")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "store").st_mode) == 0o700
    for p in (tmp_path / "store").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p.name


def test_symlinked_data_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    LogStore(real).close()
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(EngineIOError) as exc:
        LogStore(tmp_path / "link")
    assert exc.value.errno in (errno.ELOOP, errno.ENOTDIR)  # O_NOFOLLOW | O_DIRECTORY


@pytest.mark.parametrize("planted", ["0000000000000001.seg", "0000000000000009.seg", "LOCK"])
def test_planted_symlink_is_not_followed(tmp_path: Path, planted: str) -> None:
    """A symlink under a store file name never makes the engine read or write its target."""
    path = tmp_path / "store"
    store = LogStore(path)
    store.put(b"k", b"v")
    store.close()
    target = tmp_path / "target"
    # The target is a valid segment, so following the link would load its records.
    seg = (path / "0000000000000001.seg").read_bytes()
    target.write_bytes(seg[:64] + seg[64:])
    before = target.read_bytes()
    if planted == "0000000000000001.seg":
        (path / planted).unlink()
    elif planted == "LOCK":
        (path / "LOCK").unlink()
    (path / planted).symlink_to(target)
    for readonly in (True, False):
        try:
            store = LogStore(path, readonly=readonly)
        except EngineError as exc:
            assert isinstance(exc, EngineIOError) and exc.errno == errno.ELOOP, exc
            continue
        try:
            if planted != "0000000000000001.seg":
                assert store.get(b"k", 0) is not None
            store.put(b"new", b"x") if not readonly else None
        finally:
            store.close()
    assert target.read_bytes() == before
    assert (path / planted).is_symlink()


def test_second_writer_is_refused_fast(tmp_path: Path) -> None:
    path = tmp_path / "store"
    first = LogStore(path)
    try:
        for _ in range(200):
            started = time.monotonic()
            with pytest.raises(StoreLockedError):
                LogStore(path)
            assert time.monotonic() - started < 0.1
        LogStore(path, readonly=True).close()  # readers need no lock
    finally:
        first.close()
    LogStore(path).close()


def _fork(fn) -> int:  # type: ignore[no-untyped-def]
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 1
        try:
            code = fn()
        finally:
            os._exit(code)
    return pid


def test_lock_held_by_another_process_and_freed_by_its_crash(tmp_path: Path) -> None:
    path = tmp_path / "store"
    LogStore(path).close()
    r, w = os.pipe()

    def hold() -> int:
        store = LogStore(path)
        os.write(w, b"locked")
        time.sleep(60)
        store.close()
        return 0

    pid = _fork(hold)
    try:
        assert os.read(r, 6) == b"locked"
        with pytest.raises(StoreLockedError):
            LogStore(path)
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        os.close(w)
    LogStore(path).close()  # no stale lock after the holder died


def test_racing_writers_never_both_hold_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "store"
    LogStore(path).close()
    r, w = os.pipe()

    def race() -> int:
        won = 0
        for _ in range(100):
            try:
                s = LogStore(path)
            except StoreLockedError:
                continue
            os.write(w, b"+")
            time.sleep(0.0005)
            os.write(w, b"-")
            s.close()
            won += 1
        return 0

    pids = [_fork(race) for _ in range(3)]
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    os.close(w)
    log = b""
    while chunk := os.read(r, 65536):
        log += chunk
    os.close(r)
    # Holding is bracketed by + and -: a second + before a - would be two writers at once.
    assert log and log == b"+-" * (len(log) // 2)


def _crafted_record(klen: int, mlen: int, vlen: int) -> bytes:
    """A record header whose lengths are at the format's maxima, with a valid hcheck."""
    key, meta = b"k" * klen, b"m" * mlen
    hdr = bytearray(
        struct.pack("<IIBBHHHIIQQQ", 0xEC4B5652, 0, 1, 0, klen, mlen, 0, vlen, 0, 1, 0, 0)
    )
    hcheck = xxhash.xxh64(bytes(hdr[8:48]) + key + meta).intdigest() & 0xFFFFFFFF
    struct.pack_into("<I", hdr, 4, hcheck)
    return bytes(hdr) + key + meta


@pytest.fixture
def crafted_store(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "store"
    store = LogStore(path, max_segment_bytes=4096)
    for i in range(30):
        store.put(b"k%d" % i, b"v" * 300)
    store.close()
    segs = sorted(path.glob("*.seg"))
    # Huge declared lengths in a sealed segment and in the newest one.
    for seg in (segs[0], segs[-1]):
        seg.write_bytes(seg.read_bytes() + _crafted_record(2047, 65535, 32 * 1024 * 1024))
    yield path


def test_huge_length_fields_allocate_nothing_big(crafted_store: Path) -> None:
    r, w = os.pipe()

    def probe() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for readonly in (True, False):
            store = LogStore(crafted_store, readonly=readonly, max_segment_bytes=4096)
            store.damage()
            store.close()
        grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        os.write(w, b"%d" % grown_kib)
        return 0

    pid = _fork(probe)
    _, status = os.waitpid(pid, 0)
    os.close(w)
    grown = int(os.read(r, 64) or b"-1")
    os.close(r)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert 0 <= grown < 8 * 1024, f"opening grew the process by {grown} KiB"
    store = LogStore(crafted_store, max_segment_bytes=4096)
    try:
        assert store.get(b"k0", 0) is not None
        assert store.damage()
    finally:
        store.close()
