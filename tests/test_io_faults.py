"""I/O errors at every call site: a failed write acknowledges nothing it did not store.

The I/O seam (csrc/kv_io.c, kv_io_fault_set) makes the nth call of a class fail with an errno,
once or from then on.  A fixed workload runs with a fault at every call index of every class;
then the store is reopened without faults and compared with the writes that returned success:

* every acknowledged write is there, with its exact value;
* a write that failed is absent, except one whose record was written before its fdatasync failed
  (sync="always"): that one may be present, but not partly;
* after any fdatasync/fsync error the handle is fail-stop (R9): every later write raises
  StoreFailedError, also after a failed sync of a new segment's header, whose file is removed;
* after a single (non-persistent) write or open error, writing resumes;
* no file descriptor is leaked.

Also a real full disk: RLIMIT_FSIZE with SIGXFSZ ignored makes write() return EFBIG midway.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import resource
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from _tools import scratch_dir

from engine._ffi import ffi, lib
from engine.errors import EngineError, EngineIOError, StoreFailedError
from engine.storage import SPOOL_IN_MEMORY, BatchOp, LogStore

Model = dict[bytes, bytes]
Op = tuple[str, object]

CLASSES = {
    "write": lib.KV_IO_OP_WRITE,
    "sync": lib.KV_IO_OP_SYNC,
    "truncate": lib.KV_IO_OP_TRUNCATE,
    "open": lib.KV_IO_OP_OPEN,
    "read": lib.KV_IO_OP_READ,
}
SEGMENT = 4096  # the smallest segment size: a rollover every few writes


def workload() -> list[Op]:
    ops: list[Op] = []
    for i in range(40):
        key = b"k%02d" % (i % 13)
        if i % 7 == 3:
            ops.append(("delete", key))
        elif i % 5 == 4:
            ops.append(("batch", [(b"b%02d" % (i + j), b"batch-%d-%d" % (i, j)) for j in range(3)]))
        elif i in (12, 33):
            # Past the in-memory limit: spooled to a file, then copied in 1 MiB writes.
            ops.append(("stream", (key, bytes([i]) * (SPOOL_IN_MEMORY + 4099))))
        else:
            ops.append(("put", (key, (b"value-%d-" % i) * (1 + i * 7))))
    return ops


def apply(model: Model, op: Op) -> Model:
    out = dict(model)
    kind, arg = op
    if kind in ("put", "stream"):
        k, v = arg  # type: ignore[misc]
        out[k] = v
    elif kind == "delete":
        out.pop(arg, None)  # type: ignore[call-overload]
    else:
        for k, v in arg:  # type: ignore[attr-defined]
            out[k] = v
    return out


def run_op(store: LogStore, op: Op) -> None:
    kind, arg = op
    if kind == "put":
        k, v = arg  # type: ignore[misc]
        store.put(k, v)
    elif kind == "stream":
        k, v = arg  # type: ignore[misc]
        store.put_stream(k, (v[i : i + 65536] for i in range(0, len(v), 65536)))
    elif kind == "delete":
        store.delete(arg)  # type: ignore[arg-type]
    else:
        store.write_batch([BatchOp(k, v) for k, v in arg])  # type: ignore[attr-defined]


def state(store: LogStore, keys: set[bytes]) -> Model:
    out = {}
    for k in keys:
        rec = store.get(k, 0)
        if rec is not None:
            out[k] = rec.value
    return out


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def _clear_faults() -> Iterator[None]:
    lib.kv_io_fault_set(0, 0, 0, 0)
    yield
    lib.kv_io_fault_set(0, 0, 0, 0)


def calls_made(path: Path, sync: str) -> dict[str, int]:
    """How many calls of each class the workload makes without faults."""
    before = {name: lib.kv_io_fault_set(op, 0, 0, 0) for name, op in CLASSES.items()}
    store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT)
    for op in workload():
        run_op(store, op)
    store.close()
    return {name: lib.kv_io_fault_set(op, 0, 0, 0) - before[name] for name, op in CLASSES.items()}


def run_with_fault(path: Path, sync: str, cls: str, nth: int, err: int, persistent: bool) -> None:
    fds = open_fds()
    ops = workload()
    keys = {k for kind, arg in ops for k in _keys(kind, arg)}
    acked_log: list[tuple[Op, int | None]] = []  # ops in order; int: index among the doubtful
    maybe: list[Op] = []
    failed_stop = False
    failures = 0
    lib.kv_io_fault_set(CLASSES[cls], nth, err, int(persistent))
    store: LogStore | None = None
    try:
        store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT)
    except EngineIOError as exc:
        assert exc.errno == err, exc
    if store is not None:
        for op in ops:
            try:
                run_op(store, op)
            except StoreFailedError:
                failed_stop = True
                continue
            except EngineIOError as exc:
                failures += 1
                assert exc.errno == err, f"{op[0]} raised {exc} after {cls} fault #{nth}"
                assert not failed_stop, "a write after fail-stop reached the disk layer"
                if cls == "sync":
                    maybe.append(op)
                    acked_log.append((op, len(maybe) - 1))
                    # R9: whichever file the failed sync was for, the handle stops.
                    failed_stop = True
                continue
            assert not failed_stop, f"{op[0]} succeeded after the handle failed (#{nth})"
            acked_log.append((op, None))
        with contextlib.suppress(EngineError):
            store.close()
    lib.kv_io_fault_set(0, 0, 0, 0)
    assert open_fds() == fds, f"file descriptor leaked after {cls} fault #{nth}"
    store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT)
    try:
        got = state(store, keys)
        damage = store.damage()
    finally:
        store.close()
    # Failed ops are interleaved with acked ones only before fail-stop, and a failed sync stops
    # the handle: so at most a couple of ops are in doubt.
    assert len(maybe) <= 3, maybe
    candidates = [
        _replay(acked_log, set(chosen))
        for n in range(len(maybe) + 1)
        for chosen in itertools.combinations(range(len(maybe)), n)
    ]
    assert got in candidates, f"after {cls} fault #{nth}: {_diff(candidates[0], got)}; {damage}"
    if not persistent and cls in ("write", "open"):
        # A single failed append or file creation costs only its own operation.
        assert failures <= 1 and not failed_stop, f"writing did not resume after {cls} #{nth}"


def _replay(log: list[tuple[Op, int | None]], chosen: set[int]) -> Model:
    """The state after the acked ops and the doubtful ones in `chosen`, in issue order."""
    model: Model = {}
    for op, doubt in log:
        if doubt is None or doubt in chosen:
            model = apply(model, op)
    return model


def _keys(kind: str, arg: object) -> list[bytes]:
    if kind in ("put", "stream"):
        return [arg[0]]  # type: ignore[index]
    if kind == "delete":
        return [arg]  # type: ignore[list-item]
    return [k for k, _ in arg]  # type: ignore[attr-defined]


def _diff(expected: Model, got: Model) -> str:
    keys = sorted(set(expected) | set(got))
    return ", ".join(
        f"{k!r}: {len(expected.get(k) or b'') if k in expected else None} vs "
        f"{len(got.get(k) or b'') if k in got else None}"
        for k in keys
        if expected.get(k) != got.get(k)
    )[:400]


FAULTS = [
    ("write", errno.ENOSPC),
    ("write", errno.EIO),
    ("sync", errno.EIO),
    ("open", errno.EMFILE),
    ("truncate", errno.EIO),
    ("read", errno.EIO),
]


@pytest.mark.parametrize("sync", ["os", "always"])
@pytest.mark.parametrize("persistent", [False, True], ids=["once", "persistent"])
@pytest.mark.parametrize(
    ("cls", "err"), FAULTS, ids=[f"{c}-{errno.errorcode[e]}" for c, e in FAULTS]
)
def test_fault_at_every_call(sync: str, persistent: bool, cls: str, err: int) -> None:
    base = Path(scratch_dir("kv-faults-"))
    try:
        calls = calls_made(base / "count", sync)[cls]
        for nth in range(1, calls + 2):
            run_with_fault(base / f"s{nth}", sync, cls, nth, err, persistent)
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("sync", ["os", "always"])
def test_failed_sync_of_written_records_stops_the_handle(tmp_path: Path, sync: str) -> None:
    store = LogStore(tmp_path / "s", sync=sync, max_segment_bytes=SEGMENT)
    store.put(b"a", b"1")
    lib.kv_io_fault_set(lib.KV_IO_OP_SYNC, 1, errno.EIO, 0)
    # "always" syncs after each put; "os" when a segment is sealed or at the latest on sync().
    with pytest.raises(EngineIOError):
        for i in range(100):
            store.put(b"k%d" % i, b"x" * 500)
        store.sync()
    for _ in range(3):
        with pytest.raises(StoreFailedError):
            store.put(b"b", b"2")
    with pytest.raises(StoreFailedError):
        store.sync()
    store.close()
    lib.kv_io_fault_set(0, 0, 0, 0)
    store = LogStore(tmp_path / "s")
    assert store.get(b"a", 0).value == b"1"  # type: ignore[union-attr]
    assert store.get(b"b", 0) is None
    store.close()


def _first_directory_fsync(path: Path, puts: int) -> int:
    """Which call of the sync class, counted from after open, is the first directory fsync
    made by `puts` puts of 1000 bytes: found from the I/O journal of a dry run."""
    store = LogStore(path, max_segment_bytes=SEGMENT)
    store.put(b"a", b"1")
    lib.kv_io_record(1)
    try:
        for i in range(puts):
            store.put(b"k%d" % i, b"x" * 1000)
    finally:
        lib.kv_io_record(0)
    ev = ffi.new("kv_io_event *")
    syncs = 0
    for i in range(lib.kv_io_record_count()):
        lib.kv_io_record_get(i, ev)
        if ev.kind in (lib.KV_IO_EV_SYNC, lib.KV_IO_EV_DIRSYNC):
            syncs += 1
            if ev.kind == lib.KV_IO_EV_DIRSYNC:
                store.close()
                lib.kv_io_record_free()
                return syncs
    raise AssertionError("no directory fsync: the puts did not roll the log over")


def test_failed_directory_fsync_after_segment_creation(tmp_path: Path) -> None:
    """Regression: the new segment's descriptor leaked and the handle carried on."""
    nth = _first_directory_fsync(tmp_path / "dry", 20)
    store = LogStore(tmp_path / "s", max_segment_bytes=SEGMENT)
    store.put(b"a", b"1")
    fds = open_fds()
    # Filling the segment: a put rolls the log over; the directory fsync after creating the
    # new segment fails.
    lib.kv_io_fault_set(lib.KV_IO_OP_SYNC, nth, errno.EIO, 0)
    with pytest.raises(EngineIOError):
        for i in range(20):
            store.put(b"k%d" % i, b"x" * 1000)
    with pytest.raises(StoreFailedError):
        store.put(b"b", b"2")
    assert open_fds() == fds
    store.close()
    lib.kv_io_fault_set(0, 0, 0, 0)
    store = LogStore(tmp_path / "s", max_segment_bytes=SEGMENT)
    assert store.get(b"a", 0).value == b"1"  # type: ignore[union-attr]
    store.put(b"c", b"3")
    store.close()


def test_truncate_failure_after_failed_write_stops_the_handle(tmp_path: Path) -> None:
    """If a failed append cannot be cut off, the file's end is unknown: no more appends."""
    store = LogStore(tmp_path / "s")
    store.put(b"a", b"1")
    lib.kv_io_fault_set(lib.KV_IO_OP_WRITE, 1, errno.ENOSPC, 0)
    lib.kv_io_fault_set(lib.KV_IO_OP_TRUNCATE, 1, errno.EIO, 0)
    with pytest.raises(EngineIOError):
        store.put(b"b", b"2")
    with pytest.raises(StoreFailedError):
        store.put(b"c", b"3")
    store.close()
    lib.kv_io_fault_set(0, 0, 0, 0)
    store = LogStore(tmp_path / "s")
    assert store.get(b"a", 0) is not None and store.get(b"b", 0) is None
    store.close()


def _fill_until_full(path: Path, limit: int, report: int) -> None:  # pragma: no cover - child
    """In a child: writes until the file size limit refuses, then writes on after it is lifted."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    store = LogStore(path, max_segment_bytes=1 << 20)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    acked = 0
    error = 0
    for i in range(10_000):
        try:
            store.put(b"key-%05d" % i, bytes([i % 251]) * 1000)
        except EngineIOError as exc:
            error = exc.errno or -1
            break
        acked += 1
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    store.put(b"after", b"space returned")
    store.close()
    os.write(report, b"%d %d" % (acked, error))


def test_file_size_limit_fails_cleanly_and_writing_resumes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            _fill_until_full(path, 300_000 + 777, w)
        except BaseException as exc:
            os.write(w, repr(exc).encode())
            code = 1
        os._exit(code)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    report = os.read(r, 4096).decode()
    os.close(r)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, report
    acked, error = map(int, report.split())
    assert error == errno.EFBIG
    assert 200 < acked < 300
    store = LogStore(path)
    try:
        assert store.damage() == []
        for i in range(acked):
            rec = store.get(b"key-%05d" % i, 0)
            assert rec is not None and rec.value == bytes([i % 251]) * 1000
        assert store.get(b"key-%05d" % acked, 0) is None
        assert store.get(b"after", 0).value == b"space returned"  # type: ignore[union-attr]
    finally:
        store.close()


@pytest.mark.parametrize("sync", ["os", "always"])
def test_failed_rollover_keeps_the_sealed_segments_records(tmp_path: Path, sync: str) -> None:
    """Regression: after a failed creation of the next segment the sealed one stayed active,
    took the next small record and was sealed again; its second hint, of only the records
    after the first seal, replaced the first, and the earlier keys were gone after reopen."""
    path = tmp_path / "s"
    store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT)
    # Three 1200-byte values nearly fill a segment; the fourth rolls the log over and the
    # creation of the next segment (the first file opened since open()) fails; the small
    # value after it would still fit in the sealed segment.
    sizes = [1200] * 4 + [40] + [1200] * 6
    lib.kv_io_fault_set(lib.KV_IO_OP_OPEN, 1, errno.EMFILE, 0)
    written: Model = {}
    failed_at = []
    for i, size in enumerate(sizes):
        key, value = b"k%02d" % i, bytes([65 + i]) * size
        try:
            store.put(key, value)
        except EngineIOError as exc:
            assert exc.errno == errno.EMFILE
            failed_at.append(i)
            continue
        written[key] = value
    lib.kv_io_fault_set(0, 0, 0, 0)
    assert failed_at == [3], "the fault did not hit the first rollover"
    store.close()  # writes the hints of the sealed segments
    assert (path / "0000000000000001.hint").exists(), "without a hint the regression is unseen"
    store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT)
    try:
        assert state(store, set(written)) == written
        assert store.damage() == []
    finally:
        store.close()
