"""Power-loss simulation: rebuild every disk state a power cut could leave, and check each one.

The C core's I/O seam journals every call that changes files (csrc/kv_io.c, kv_io_record): each
write syscall with its bytes, truncate, fdatasync/fsync, directory fsync, open (create), rename,
unlink.  Replaying a prefix of the journal gives, for a crash at that point, what each file holds
in the page cache and what is known to be on disk.  A power cut keeps the synced state plus any
part of the rest, so the states built here (the model of the SQLite crash VFS and ALICE) are:

* directory: the entries as of the last directory fsync plus each prefix of the later creates,
  renames and unlinks (a rename is atomic);
* each file: its synced bytes plus none, all, each prefix, all-but-one (reordering) of the writes
  and truncates since its last sync, and each prefix followed by the next write torn at a
  512-byte sector boundary, the rest of that write's extent zero-filled or garbage.

One file varies at a time (the others all synced-only, or all complete).  Each state is written
to a scratch directory and opened (twice); with sync="always" the store must hold every write
acknowledged before the crash point, plus possibly the one in flight, and nothing else.  With
sync="os" only what an explicit sync() (or close) covered is promised: the store must hold that
plus a prefix of the later ops, or, when out-of-order loss left a hole, report damage and still
hold nothing that was never written.

    python tools/power_loss.py --ops 40 --seed 1          # one workload, every crash point
    python tools/power_loss.py --workloads 25             # 25 seeded workloads
    python tools/power_loss.py --workloads 25 --sync os   # buffered writes and explicit syncs
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from engine._ffi import ffi, lib
from engine.errors import CorruptionError
from engine.storage import BatchOp, LogStore

SECTOR = 512
SEGMENT = 4096
NOW = 2_000_000_000

Model = dict[bytes, bytes]
CORRUPT = b"<read raised CorruptionError>"  # stands for such a read in a recovered state


@dataclass(frozen=True)
class Event:
    kind: int
    fd: int
    flags: int
    off: int
    data: bytes
    name: str
    name2: str


def read_journal() -> list[Event]:
    ev = ffi.new("kv_io_event *")
    out = []
    for i in range(lib.kv_io_record_count()):
        if lib.kv_io_record_get(i, ev) != 0:
            raise RuntimeError(f"journal event {i} unreadable")
        data = bytes(ffi.buffer(ev.data, ev.len)) if ev.kind == lib.KV_IO_EV_WRITE else b""
        out.append(
            Event(
                ev.kind,
                ev.fd,
                ev.flags,
                ev.off,
                data,
                ffi.string(ev.name).decode(),
                ffi.string(ev.name2).decode(),
            )
        )
    return out


# -- replaying a journal prefix ---------------------------------------------------------------
Change = tuple[str, int, bytes]  # ("w", offset, bytes) or ("t", length, b"")


def apply_changes(base: bytes, changes: list[Change]) -> bytes:
    data = bytearray(base)
    for kind, off, payload in changes:
        if kind == "t":
            del data[off:]
            data.extend(bytes(max(0, off - len(data))))
        else:
            if len(data) < off:
                data.extend(bytes(off - len(data)))
            data[off : off + len(payload)] = payload
    return bytes(data)


@dataclass
class Inode:
    synced: bytes = b""
    pending: list[Change] = field(default_factory=list)


@dataclass
class FsState:
    """The file system as a replayed journal prefix left it."""

    inodes: list[Inode]
    names: dict[str, int]  # what the directory holds now
    synced_names: dict[str, int]  # as of the last directory fsync
    dir_pending: list[tuple[str, str, str | int]]  # ("link", name, inode) / rename / unlink


def replay(initial: dict[str, bytes], events: list[Event]) -> FsState:
    inodes = [Inode(data) for data in initial.values()]
    names = {name: i for i, name in enumerate(initial)}
    st = FsState(inodes, names, dict(names), [])
    fds: dict[int, int] = {}
    for ev in events:
        if ev.kind == lib.KV_IO_EV_OPEN:
            if ev.name not in st.names:
                st.inodes.append(Inode())
                st.names[ev.name] = len(st.inodes) - 1
                st.dir_pending.append(("link", ev.name, st.names[ev.name]))
            fds[ev.fd] = st.names[ev.name]
        elif ev.kind == lib.KV_IO_EV_CLOSE:
            fds.pop(ev.fd, None)
        elif ev.kind == lib.KV_IO_EV_WRITE:
            st.inodes[fds[ev.fd]].pending.append(("w", ev.off, ev.data))
        elif ev.kind == lib.KV_IO_EV_TRUNCATE:
            st.inodes[fds[ev.fd]].pending.append(("t", ev.off, b""))
        elif ev.kind == lib.KV_IO_EV_SYNC:
            node = st.inodes[fds[ev.fd]]
            node.synced = apply_changes(node.synced, node.pending)
            node.pending = []
        elif ev.kind == lib.KV_IO_EV_DIRSYNC:
            st.synced_names = dict(st.names)
            st.dir_pending = []
        elif ev.kind == lib.KV_IO_EV_RENAME:
            st.names[ev.name2] = st.names.pop(ev.name)
            st.dir_pending.append(("rename", ev.name, ev.name2))
        elif ev.kind == lib.KV_IO_EV_UNLINK:
            st.names.pop(ev.name, None)
            st.dir_pending.append(("unlink", ev.name, ""))
    return st


def directory_variants(st: FsState) -> Iterator[dict[str, int]]:
    """The synced entries plus each prefix of the later directory operations."""
    names = dict(st.synced_names)
    yield dict(names)
    for op, a, b in st.dir_pending:
        if op == "link":
            names[a] = int(b)
        elif op == "rename":
            if a in names:
                names[str(b)] = names.pop(a)
        else:
            names.pop(a, None)
        yield dict(names)


def content_variants(node: Inode, rng: random.Random) -> Iterator[bytes]:
    """What a power cut may leave of one file: see the module docstring."""
    pending = node.pending
    seen: set[bytes] = set()

    def fresh(data: bytes) -> bool:
        if data in seen:
            return False
        seen.add(data)
        return True

    for k in range(len(pending) + 1):
        prefix = apply_changes(node.synced, pending[:k])
        if fresh(prefix):
            yield prefix
        if k < len(pending) and pending[k][0] == "w":
            _, off, payload = pending[k]
            for cut in range(SECTOR - off % SECTOR, len(payload), SECTOR):
                for fill in (b"\0", None):
                    rest = len(payload) - cut
                    tail = fill * rest if fill is not None else rng.randbytes(rest)
                    torn = apply_changes(prefix, [("w", off, payload[:cut] + tail)])
                    if fresh(torn):
                        yield torn
    for skip in range(len(pending) - 1):
        reordered = apply_changes(node.synced, pending[:skip] + pending[skip + 1 :])
        if fresh(reordered):
            yield reordered


def crash_states(st: FsState, rng: random.Random) -> Iterator[dict[str, bytes]]:
    """Every state built for this crash point, as file name -> bytes."""
    synced = [n.synced for n in st.inodes]
    complete = [apply_changes(n.synced, n.pending) for n in st.inodes]
    for names in directory_variants(st):
        live = sorted(set(names.values()))
        for base in (synced, complete):
            yield {name: base[i] for name, i in names.items()}
        for focus in live:
            if not st.inodes[focus].pending:
                continue
            for data in content_variants(st.inodes[focus], rng):
                for base in (synced, complete):
                    contents = list(base)
                    contents[focus] = data
                    yield {name: contents[i] for name, i in names.items()}


# -- workloads --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    kind: str  # put, delete, batch, compact, reopen
    items: tuple[tuple[bytes, bytes | None], ...] = ()


def workload(seed: int, n: int, compaction: bool, syncs: bool = False) -> list[Op]:
    """A seeded op list; `syncs` adds explicit store.sync() calls (for sync="os")."""
    rng = random.Random(seed)
    ops: list[Op] = []
    for i in range(n):
        roll = rng.random()
        key = b"k%02d" % rng.randrange(12)
        if syncs and rng.random() < 0.15:
            ops.append(Op("sync"))
        elif compaction and roll < 0.05:
            ops.append(Op("compact"))
        elif roll < 0.08:
            ops.append(Op("reopen"))
        elif roll < 0.6:
            ops.append(Op("put", ((key, b"%d:" % i * rng.choice((1, 9, 60, 300))),)))
        elif roll < 0.8:
            ops.append(Op("delete", ((key, None),)))
        else:
            members = {b"k%02d" % rng.randrange(12): b"b%d" % i for _ in range(rng.randrange(2, 5))}
            ops.append(Op("batch", tuple(members.items())))
    return ops


def apply_op(model: Model, op: Op) -> Model:
    out = dict(model)
    for key, value in op.items:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@dataclass
class Run:
    sync: str  # "always": every op is durable when it returns; "os": only up to a sync op
    initial: dict[str, bytes]
    events: list[Event]
    ops: list[Op]
    start: list[int]  # journal position when op i began
    ack: list[int]  # journal position when op i returned


def record(path: str, ops: list[Op], sync: str = "always") -> Run:
    """Runs the workload on a fresh store at path, journaling its I/O."""
    os.makedirs(path)
    start, ack = [], []
    lib.kv_io_record(1)
    try:
        store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT)
        for op in ops:
            start.append(lib.kv_io_record_count())
            if op.kind == "put":
                store.put(op.items[0][0], op.items[0][1] or b"")
            elif op.kind == "delete":
                store.delete(op.items[0][0])
            elif op.kind == "batch":
                store.write_batch([BatchOp(k, v) for k, v in op.items])
            elif op.kind == "compact":
                store.compact(NOW, segments="all")  # type: ignore[attr-defined]
            elif op.kind == "sync":
                store.sync()
            else:
                store.close()
                store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT)
            ack.append(lib.kv_io_record_count())
        store.close()
    finally:
        if lib.kv_io_record(0) != 0:
            raise RuntimeError("the I/O journal is incomplete (out of memory)")
    events = read_journal()
    lib.kv_io_record_free()
    return Run(sync, {}, events, ops, start, ack)


class Violation(AssertionError):
    pass


@dataclass
class Figures:
    crash_points: int = 0
    states: int = 0
    in_flight_landed: int = 0  # states holding more than the durable ops
    damage_reports: int = 0
    holes: int = 0  # sync="os": states that are no prefix of the history (damage reported)


def allowed_models(run: Run, point: int) -> list[Model]:
    """The states a crash at `point` may recover to, the one that must be reached first: the
    history up to the last op known durable, then each longer prefix up to the op in flight."""
    durable = 0  # ops [0, durable) are promised to survive
    issued = 0  # ops [0, issued) had started by the crash
    for i, op in enumerate(run.ops):
        if run.start[i] >= point:
            break
        issued = i + 1
        if run.ack[i] <= point and (run.sync == "always" or op.kind in ("sync", "reopen")):
            durable = i + 1
    model: Model = {}
    for op in run.ops[:durable]:
        model = apply_op(model, op)
    allowed = [model]
    for op in run.ops[durable:issued]:
        model = apply_op(model, op)
        allowed.append(model)
    return allowed


def check_state(
    scratch: str, files: dict[str, bytes], allowed: list[Model], sync: str = "always"
) -> tuple[bool, int, bool]:
    """Opens the state; returns whether an op beyond the durable ones landed, how many damage
    reports the open made, and whether the state has a hole.

    With sync="os", unsynced writes may reach the disk out of order, and recovery keeps the
    valid records after a lost one (FORMAT.md section 5): a state that is not a prefix of the
    history (a hole) is then allowed, but only with damage reported, and only with values that
    the durable state or a later op wrote."""
    shutil.rmtree(scratch, ignore_errors=True)
    os.makedirs(scratch)
    for name, data in files.items():
        with open(os.path.join(scratch, name), "wb") as f:
            f.write(data)
    keys = {k for m in allowed for k in m} | {b"k%02d" % i for i in range(12)}
    for attempt in range(2):  # the second open checks that recovery is repeatable
        store = LogStore(scratch, sync=sync, max_segment_bytes=SEGMENT)
        try:
            got: Model = {}
            damage = len(store.damage())
            for k in keys:
                try:
                    rec = store.get(k, NOW)
                except CorruptionError as exc:
                    # Damage that a read reports rather than serve a torn value is allowed for
                    # a key nothing durable was promised for, with sync="os" only.
                    if sync != "os" or allowed[0].get(k) is not None:
                        raise Violation(f"{k!r} unreadable: {exc}") from None
                    got[k] = CORRUPT
                    continue
                if rec is not None:
                    got[k] = rec.value
        finally:
            store.close()
        if got not in allowed and not (
            sync == "os" and damage and _no_lost_or_foreign(got, allowed)
        ):
            lost = sorted(k for k in allowed[0] if got.get(k) != allowed[0][k])
            raise Violation(f"open #{attempt + 1}: keys {lost[:6]} differ from acked state")
    return got != allowed[0], damage, got not in allowed


def _no_lost_or_foreign(got: Model, allowed: list[Model]) -> bool:
    """Every key holds a value some allowed state gives it (durable or later), and no durable
    key is missing unless a later op may have deleted it."""
    return all(
        got.get(k) == CORRUPT or any(m.get(k) == got.get(k) for m in allowed)
        for k in set(got) | set(allowed[0])
    )


def explore(
    run: Run,
    scratch: str,
    seed: int,
    points: Callable[[Run], list[int]] | None = None,
    figures: Figures | None = None,
) -> Figures:
    """Checks every crash state of every crash point of a recorded run."""
    figures = figures or Figures()
    rng = random.Random(seed)
    for point in points(run) if points else range(len(run.events) + 1):
        st = replay(run.initial, run.events[:point])
        allowed = allowed_models(run, point)
        figures.crash_points += 1
        for files in crash_states(st, rng):
            try:
                landed, damage, hole = check_state(scratch, files, allowed, run.sync)
            except Violation as exc:
                raise Violation(
                    f"crash at journal event {point}/{len(run.events)}: {exc}"
                ) from None
            figures.states += 1
            figures.in_flight_landed += landed
            figures.damage_reports += damage
            figures.holes += hole
    return figures


def scratch_base() -> str:
    """Where states are written: tmpfs when there is one (thousands of small files)."""
    return tempfile.mkdtemp(
        prefix="kv-powerloss-", dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", type=int, default=1)
    parser.add_argument("--ops", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sync", choices=["always", "os"], default="always")
    args = parser.parse_args(argv)
    compaction = callable(getattr(LogStore, "compact", None))
    base = scratch_base()
    figures = Figures()
    started = time.monotonic()
    try:
        for w in range(args.workloads):
            seed = args.seed + w
            ops = workload(seed, args.ops, compaction, syncs=args.sync == "os")
            run = record(os.path.join(base, f"w{w}"), ops, args.sync)
            try:
                explore(run, os.path.join(base, "state"), seed, figures=figures)
            except Violation as exc:
                print(f"VIOLATION (workload seed {seed}): {exc}", file=sys.stderr)
                return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(
        {
            "sync": args.sync,
            "workloads": args.workloads,
            "ops_per_workload": args.ops,
            "crash_points": figures.crash_points,
            "states": figures.states,
            "in_flight_landed": figures.in_flight_landed,
            "damage_reports": figures.damage_reports,
            "holes_reported": figures.holes,
            "compaction": compaction,
            "seconds": round(time.monotonic() - started, 1),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())


def audit_fsync_discipline(run: Run) -> list[str]:
    """DURABILITY.md G10 over a sync="always" journal: when an op returns, every file written
    since has been fdatasynced after its last write, and every file created or renamed has had
    its directory entry fsynced.  Returns the breaches, as text."""
    breaches: list[str] = []
    names: dict[int, str] = {}
    seen: set[str] = set()
    unsynced: set[str] = set()  # files written after their last sync
    undurable: set[str] = set()  # names created or renamed after the last directory fsync
    acks = {pos: i for i, pos in enumerate(run.ack)}
    for pos, ev in enumerate([*run.events, None]):
        if pos in acks and (unsynced or undurable):
            op = run.ops[acks[pos]]
            breaches.append(
                f"op {acks[pos]} ({op.kind}) returned with {sorted(unsynced)} unsynced and "
                f"{sorted(undurable)} not in a synced directory"
            )
        if ev is None:
            break
        if ev.kind == lib.KV_IO_EV_OPEN:
            names[ev.fd] = ev.name
            if ev.name not in seen:
                undurable.add(ev.name)
            seen.add(ev.name)
        elif ev.kind == lib.KV_IO_EV_WRITE or ev.kind == lib.KV_IO_EV_TRUNCATE:
            unsynced.add(names[ev.fd])
        elif ev.kind == lib.KV_IO_EV_SYNC:
            unsynced.discard(names[ev.fd])
        elif ev.kind == lib.KV_IO_EV_DIRSYNC:
            undurable.clear()
        elif ev.kind == lib.KV_IO_EV_RENAME:
            undurable.discard(ev.name)
            undurable.add(ev.name2)
            seen.add(ev.name2)
            if ev.name in unsynced:
                unsynced.discard(ev.name)
                unsynced.add(ev.name2)
            names = {fd: ev.name2 if n == ev.name else n for fd, n in names.items()}
        elif ev.kind == lib.KV_IO_EV_UNLINK:
            undurable.discard(ev.name)
            unsynced.discard(ev.name)
            seen.discard(ev.name)
    return breaches
