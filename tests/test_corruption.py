"""Damaged files: open never crashes, never returns a value that was not written, reports each
bad record with file and offset, and keeps serving every record the damage did not touch.

A small store (two sealed segments and an active one, puts with metadata and expirations, a
batch, deletes) is damaged one way at a time, in place, and restored after each variant:

* every byte of each segment XOR 0xFF (sampled bit flips in the slow run: every bit);
* truncation at every offset; zero-filled tails; appended garbage.

The oracle parses the intact segments itself (an independent reader of docs/FORMAT.md sections
2-4) to know where each key's newest record lies.  After each variant, for every key:

* if the damage does not touch the key's newest record (or the batch it belongs to), the read is
  exact: value, metadata and expiration;
* otherwise the read is exact, or raises CorruptionError naming the segment file and an offset,
  or (only when damage was reported) returns an older version that was really written, or
  nothing;
* damage inside a record's bytes is reported with the file's path and a range that covers it.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.errors import CorruptionError
from engine.storage import BatchOp, LogStore

NOW = 1_900_000_000
SEGMENT = 4096
HDR = struct.Struct("<IIBBHHHIIQQQ")  # docs/FORMAT.md section 3
SEG_HDR = 64
Version = tuple[bytes, bytes | None, int] | None  # value, meta, expiration; None = deleted


@dataclass(frozen=True)
class Rec:
    file: str
    off: int
    end: int  # padded end
    type: int
    flags: int
    seq: int
    key: bytes
    batch_first: int = 0
    batch_count: int = 0
    raw_end: int = 0  # end without padding


@dataclass
class Store:
    path: Path
    files: dict[str, bytes]  # name -> intact bytes
    history: dict[bytes, list[Version]]  # every version written, oldest first
    model: dict[bytes, Version]  # the newest version
    newest_rec: dict[bytes, Rec]  # where the newest version lies
    batch_of: dict[int, Rec]  # member seq -> its BATCH_COMMIT record
    by_seq: dict[int, Rec]  # every record of the intact store

    def restore(self) -> None:
        for name in os.listdir(self.path):
            if name not in self.files:
                os.unlink(self.path / name)
        for name, data in self.files.items():
            (self.path / name).write_bytes(data)

    def segments(self) -> list[str]:
        return sorted(n for n in self.files if n.endswith(".seg"))


def parse_segment(name: str, data: bytes) -> list[Rec]:
    recs = []
    off = SEG_HDR
    while off + HDR.size <= len(data):
        _, _, rtype, flags, klen, mlen, _, vlen, _, seq, _, _ = HDR.unpack_from(data, off)
        size = HDR.size + klen + mlen + vlen
        end = min(off + (size + 7) // 8 * 8, len(data))
        key = data[off + HDR.size : off + HDR.size + klen]
        first = count = 0
        if rtype == 4:
            first, count = struct.unpack_from("<QI", data, off + HDR.size)
        recs.append(Rec(name, off, end, rtype, flags, seq, key, first, count, off + size))
        off = end
    assert off == len(data), f"{name} does not parse to its end"
    return recs


def build(path: Path) -> Store:
    rng = random.Random(5)
    history: dict[bytes, list[Version]] = {}
    store = LogStore(path, max_segment_bytes=SEGMENT)

    def put(key: bytes, value: bytes, meta: bytes = b"", exp: int = 0) -> None:
        store.put(key, value, meta, exp)
        history.setdefault(key, []).append((value, meta or None, exp))

    for i in range(70):
        key = b"key-%02d" % (i % 17)
        value = rng.randbytes(rng.choice((0, 5, 40, 200, 400, 700)))
        meta = b'{"i":%d}' % i if i % 3 == 0 else b""
        exp = NOW + 1000 if i % 4 == 1 else 0
        put(key, value, meta, exp)
        if i % 9 == 8:
            store.delete(b"key-%02d" % ((i + 3) % 17))
            history.setdefault(b"key-%02d" % ((i + 3) % 17), []).append(None)
        if i == 20:
            ops = [BatchOp(b"batch-%d" % j, b"member %d" % j, b"", 0) for j in range(4)]
            store.write_batch(ops)
            for op in ops:
                history.setdefault(op.key, []).append((op.value or b"", None, 0))
    store.close()
    files = {n: (path / n).read_bytes() for n in sorted(os.listdir(path))}
    segs = sorted(n for n in files if n.endswith(".seg"))
    assert len(segs) >= 3, "the store needs sealed segments and an active one"
    newest_rec: dict[bytes, Rec] = {}
    batch_of: dict[int, Rec] = {}
    by_seq: dict[int, Rec] = {}
    for name in segs:
        for rec in parse_segment(name, files[name]):
            by_seq[rec.seq] = rec
            if rec.type == 4:
                for s in range(rec.batch_first, rec.batch_first + rec.batch_count):
                    batch_of[s] = rec
            elif rec.key not in newest_rec or newest_rec[rec.key].seq < rec.seq:
                newest_rec[rec.key] = rec
    model = {k: versions[-1] for k, versions in history.items()}
    return Store(path, files, history, model, newest_rec, batch_of, by_seq)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    # Thousands of opens, each possibly cutting a tail with ftruncate + fdatasync: on tmpfs,
    # where a sync costs nothing, when the machine has one.
    if os.access("/dev/shm", os.W_OK):
        base = Path(tempfile.mkdtemp(prefix="kv-corrupt-", dir="/dev/shm"))
    else:
        base = tmp_path_factory.mktemp("corrupt")
    try:
        yield build(base / "store")
    finally:
        shutil.rmtree(base, ignore_errors=True)


def visible(version: Version) -> Version:
    if version is None or (version[2] and version[2] <= NOW):
        return None
    return version


def touched(s: Store, key: bytes, name: str, lo: int, hi: int) -> bool:
    """Whether bytes [lo, hi) of file `name` overlap key's newest record or its batch (any
    member or the commit: a batch that lost a member is dropped whole, all or nothing)."""
    rec = s.newest_rec.get(key)
    if rec is None:
        return False
    spans = [rec]
    if rec.flags & 1 and rec.seq in s.batch_of:
        commit = s.batch_of[rec.seq]
        spans.append(commit)
        first, count = commit.batch_first, commit.batch_count
        spans += [s.by_seq[q] for q in range(first, first + count) if q in s.by_seq]
    return any(r.file == name and r.off < hi and lo < r.end for r in spans)


def check(s: Store, name: str, lo: int, hi: int, *, readonly: bool, boundary: bool = False) -> None:
    """Opens the damaged store and applies the oracle; [lo, hi) is the damaged byte range."""
    where = f"{name} bytes [{lo}, {hi})"
    log = LogStore(s.path, readonly=readonly, max_segment_bytes=SEGMENT)
    try:
        damage = log.damage()
        for d in damage:
            assert d.path == str(s.path / (d.path.rsplit("/", 1)[-1])), d
        hit_in_record = any(
            r.file == name and r.off < hi and lo < r.end for r in parse_segment(name, s.files[name])
        )
        if hit_in_record and not boundary and not _hinted(s, name):
            # The damage itself, or the tail it left, is reported in the right file.  (A segment
            # with a valid hint is not read at open: its reads verify each record instead.)
            assert any(d.path.endswith(name) for d in damage) or _harmless(s, log), where
        for key, expected in s.model.items():
            # A boundary cut is indistinguishable from writes that never happened: no report.
            reported = damage != [] or boundary
            _check_key(s, log, key, expected, reported, touched(s, key, name, lo, hi), where)
        # Listing runs over the damaged index without crashing or inventing keys.
        try:
            listed = {k.key for k in log.iter_keys(b"", NOW)}
            assert listed <= set(s.model), where
        except CorruptionError as exc:
            assert exc.path and exc.offset is not None
    finally:
        log.close()
        s.restore()


def _hinted(s: Store, name: str) -> bool:
    return name.replace(".seg", ".hint") in s.files


def _harmless(s: Store, log: LogStore) -> bool:
    """True when every key still reads exactly (damage in padding, or a no-op change)."""
    for key, expected in s.model.items():
        try:
            rec = log.get(key, NOW)
        except CorruptionError:
            return False
        got = None if rec is None else (rec.value, rec.meta, rec.expiration)
        if got != visible(expected):
            return False
    return True


def _check_key(
    s: Store, log: LogStore, key: bytes, expected: Version, reported: bool, hit: bool, where: str
) -> None:
    try:
        rec = log.get(key, NOW)
    except CorruptionError as exc:
        assert hit, f"{key!r} corrupt but the damage ({where}) is elsewhere"
        assert exc.path and exc.path.endswith(".seg") and exc.offset is not None
        return
    got = None if rec is None else (rec.value, rec.meta, rec.expiration)
    if got == visible(expected):
        return
    assert hit, f"{key!r} changed although the damage ({where}) is elsewhere: {got!r}"
    assert reported, f"{key!r} changed silently ({where})"
    older = [visible(v) for v in s.history[key][:-1]] + [None]
    assert got in older, f"{key!r} returned a value never written ({where}): {got!r}"


def mutate(s: Store, name: str, change: Callable[[bytearray], bytes | bytearray]) -> None:
    data = bytearray(s.files[name])
    (s.path / name).write_bytes(change(data))


def flip_offsets(size: int, stride: int) -> range:
    return range(0, size, stride)


def _flip(store: Store, name: str, offsets: range, mask: int) -> int:
    variants = 0
    for off in offsets:

        def change(d: bytearray, off: int = off) -> bytearray:
            d[off] ^= mask
            return d

        mutate(store, name, change)
        check(store, name, off, off + 1, readonly=variants % 2 == 1)
        variants += 1
    return variants


@pytest.mark.parametrize("which", ["first", "middle", "active"])
def test_flip_every_byte(store: Store, which: str) -> None:
    segs = store.segments()
    name = {"first": segs[0], "middle": segs[len(segs) // 2], "active": segs[-1]}[which]
    size = len(store.files[name])
    # The default run flips every byte of the active segment and every 5th of sealed ones.
    stride = 1 if which == "active" else 5
    assert _flip(store, name, flip_offsets(size, stride), 0xFF) == len(range(0, size, stride))


@pytest.mark.slow
def test_flip_every_bit_of_every_segment(store: Store) -> None:
    for name in store.segments():
        for bit in range(8):
            _flip(store, name, flip_offsets(len(store.files[name]), 1), 1 << bit)


def _truncate(store: Store, name: str, stride: int) -> None:
    data = store.files[name]
    newest = name == store.segments()[-1]
    # A record followed by a cut anywhere in its padding is whole.
    bounds = {SEG_HDR}.union(*(range(r.raw_end, r.end + 1) for r in parse_segment(name, data)))
    for cut in range(0, len(data), stride):
        mutate(store, name, lambda d, cut=cut: d[:cut])
        # A cut at a record boundary looks like fewer writes; the newest segment cut inside its
        # header looks like an interrupted segment creation, which a writer removes.
        boundary = cut in bounds or (newest and cut < SEG_HDR)
        check(store, name, cut, len(data), readonly=cut % 2 == 1, boundary=boundary)


@pytest.mark.parametrize("which", ["sealed", "active"])
def test_truncate_at_every_offset(store: Store, which: str) -> None:
    segs = store.segments()
    # Every offset of the active segment; every 4th of a sealed one (all in the slow run).
    _truncate(store, segs[-1] if which == "active" else segs[0], 1 if which == "active" else 4)


@pytest.mark.slow
def test_truncate_every_segment_at_every_offset(store: Store) -> None:
    for name in store.segments():
        _truncate(store, name, 1)


@pytest.mark.parametrize("which", ["sealed", "active"])
@pytest.mark.parametrize("fill", [0x00, 0xFF])
def test_fill_tail(store: Store, which: str, fill: int) -> None:
    segs = store.segments()
    name = segs[0] if which == "sealed" else segs[-1]
    data = store.files[name]
    for start in range(SEG_HDR, len(data), 8):
        mutate(store, name, lambda d, s=start: d[:s] + bytes([fill]) * (len(d) - s))
        check(store, name, start, len(data), readonly=False)


@pytest.mark.parametrize("which", ["sealed", "active"])
def test_append_garbage(store: Store, which: str) -> None:
    segs = store.segments()
    name = segs[0] if which == "sealed" else segs[-1]
    rng = random.Random(9)
    # Garbage of every kind: random bytes, zeros, a copy of a valid record (a duplicate).
    first = parse_segment(name, store.files[name])[0]
    tails = [rng.randbytes(n) for n in (1, 7, 8, 48, 49, 300)] + [bytes(64)]
    tails.append(store.files[name][first.off : first.end])
    for tail in tails:
        mutate(store, name, lambda d, t=tail: d + t)
        size = len(store.files[name])
        check(store, name, size, size + len(tail), readonly=False)


def test_damage_reports_name_file_and_offset(store: Store) -> None:
    """A damaged value in a sealed segment: reported as a damaged record at its exact offset,
    its key reads as corrupt, and every other key is served."""
    name = store.segments()[0]
    recs = [r for r in parse_segment(name, store.files[name]) if r.type == 1]
    target = next(r for r in recs if r.end - r.off > HDR.size + len(r.key) + 8)
    pos = target.end - 1 - (target.end - target.off - HDR.size - len(target.key)) // 2

    def change(d: bytearray) -> bytearray:
        d[pos] ^= 0x01
        return d

    mutate(store, name, change)
    log = LogStore(store.path, max_segment_bytes=SEGMENT)
    try:
        reports = [(d.path, d.offset, d.kind) for d in log.damage()]
        if not _hinted(store, name):
            assert reports == [(str(store.path / name), target.off, "damaged record")]
        if store.newest_rec[target.key] == target:
            with pytest.raises(CorruptionError) as exc:
                log.get(target.key, NOW)
            assert exc.value.path == str(store.path / name)
            assert exc.value.offset == target.off
    finally:
        log.close()
        store.restore()


def test_hint_file_damage_falls_back_to_the_segment(tmp_path: Path) -> None:
    """Hint files are a cache: any damage to one must leave reads exact (FORMAT.md section 6)."""
    path = tmp_path / "store"
    log = LogStore(path, max_segment_bytes=SEGMENT)
    expected = {}
    for i in range(60):
        key, value = b"k%02d" % (i % 25), b"v%d" % i * (i % 13)
        log.put(key, value)
        expected[key] = value
    compact = getattr(log, "compact", None)
    if compact is not None:
        compact(NOW, segments="all")
    log.close()
    hints = sorted(path.glob("*.hint"))
    if not hints:
        pytest.skip("this build writes no hint files")
    for hint in hints:
        intact = hint.read_bytes()
        for pos in range(len(intact)):
            damaged = bytearray(intact)
            damaged[pos] ^= 0xFF
            hint.write_bytes(damaged)
            log = LogStore(path, readonly=True, max_segment_bytes=SEGMENT)
            try:
                for key, value in expected.items():
                    rec = log.get(key, NOW)
                    assert rec is not None and rec.value == value, (hint.name, pos, key)
            finally:
                log.close()
        for cut in range(len(intact)):
            hint.write_bytes(intact[:cut])
            log = LogStore(path, readonly=True, max_segment_bytes=SEGMENT)
            try:
                assert {k: log.get(k, NOW).value for k in expected} == expected  # type: ignore[union-attr]
            finally:
                log.close()
        hint.write_bytes(intact)
