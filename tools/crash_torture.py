"""Crash torture: SIGKILL a writer at random instants and check the store against what it acked.

A forked child opens the store and writes a seeded, deterministic stream of operations (puts with
and without metadata, puts that are already expired or expire far in the future, deletes, atomic
batches and, when the storage layer has one, full compactions).  After each operation returns it
writes ``A <i>`` to a pipe; the parent holds the read end, so acknowledgements survive the kill.
The parent kills the child at a random instant (sometimes while it is still opening the store,
i.e. during recovery), reopens the store itself and checks the oracle of DURABILITY.md section 2:

* durability: the recovered state equals the model after every acked operation, plus possibly the
  one operation in flight (a process dies with at most one call outstanding);
* integrity: every value, metadata and expiration is byte-identical to the model's;
* batches are all or nothing; deleted and expired keys never come back; `list` agrees with `get`;
* availability: open succeeds, and the only damage reported is a torn tail or an uncommitted batch.

The stream is a function of (seed, operation index), so a failure is reproduced by its seed.

    python tools/crash_torture.py --cycles 1000 --sync os
    python tools/crash_torture.py --cycles 1000 --sync always --seed 7
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import select
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine.storage import BatchOp, LogStore

NOW = 2_000_000_000  # the checking clock: expirations are chosen around it
KEYS = 48
SEGMENT_BYTES = 16 * 1024  # small segments: rollover happens every few dozen writes
ALLOWED_DAMAGE = {"torn tail cut off", "uncommitted batch dropped"}

Entry = tuple[bytes, bytes | None, int]  # value, metadata, expiration
Model = dict[bytes, Entry]


def has_compaction() -> bool:
    return callable(getattr(LogStore, "compact", None))


@dataclass(frozen=True)
class Op:
    """One operation of the stream: kind is put, delete, batch or compact."""

    index: int
    kind: str
    puts: tuple[tuple[bytes, bytes, bytes, int], ...] = ()  # key, value, meta, expiration
    deletes: tuple[bytes, ...] = ()


def _value(index: int, key: bytes, size: int) -> bytes:
    """Self-identifying content: which operation wrote it to which key."""
    seed = hashlib.blake2b(b"%d:" % index + key, digest_size=32).digest()
    return (seed * (size // 32 + 1))[:size]


def _put(rng: random.Random, index: int, key: bytes) -> tuple[bytes, bytes, bytes, int]:
    size = rng.choice((0, 1, 7, 8, 100, 1000, 3000, rng.randrange(20_000, 70_000)))
    meta = b'{"op":%d}' % index if rng.random() < 0.4 else b""
    roll = rng.random()
    expiration = 0 if roll < 0.7 else NOW + 10**6 if roll < 0.85 else NOW - rng.randrange(1, 999)
    return key, _value(index, key, size), meta, expiration


def operation(seed: int, index: int, compaction: bool) -> Op:
    rng = random.Random(f"{seed}:{index}")
    roll = rng.random()

    def key() -> bytes:
        return b"key-%02d" % rng.randrange(KEYS)

    if compaction and roll < 0.03:
        return Op(index, "compact")
    if roll < 0.6:
        return Op(index, "put", puts=(_put(rng, index, key()),))
    if roll < 0.8:
        return Op(index, "delete", deletes=(key(),))
    members: dict[bytes, tuple[bytes, bytes, bytes, int] | None] = {}
    for _ in range(rng.randrange(2, 9)):
        k = key()
        members[k] = _put(rng, index, k) if rng.random() < 0.7 else None
    puts = tuple(p for p in members.values() if p is not None)
    deletes = tuple(k for k, p in members.items() if p is None)
    return Op(index, "batch", puts=puts, deletes=deletes)


def apply(model: Model, op: Op) -> Model:
    out = dict(model)
    for k in op.deletes:
        out.pop(k, None)
    for k, value, meta, expiration in op.puts:
        out[k] = (value, meta or None, expiration)
    return out


def visible(model: Model) -> Model:
    """The entries a read at NOW returns (expired ones read as absent)."""
    return {k: e for k, e in model.items() if e[2] == 0 or e[2] > NOW}


# -- the child -------------------------------------------------------------------------------
def run_child(path: str, sync: str, seed: int, first: int, ack_fd: int, compaction: bool) -> None:
    out = os.fdopen(ack_fd, "w", buffering=1)
    store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT_BYTES)
    out.write("O\n")
    index = first
    while True:
        op = operation(seed, index, compaction)
        if op.kind == "compact":
            out.write(f"C {index}\n")
            store.compact(NOW, segments="all")  # type: ignore[attr-defined]
        elif op.kind == "put":
            k, value, meta, expiration = op.puts[0]
            store.put(k, value, meta, expiration)
        elif op.kind == "delete":
            store.delete(op.deletes[0])
        else:
            ops = [BatchOp(k, v, m, e) for k, v, m, e in op.puts]
            ops += [BatchOp(k) for k in op.deletes]
            store.write_batch(ops)
        out.write(f"A {index}\n")
        index += 1


# -- the parent ------------------------------------------------------------------------------
class OracleViolation(AssertionError):
    pass


def read_state(store: LogStore) -> Model:
    state: Model = {}
    for k in (b"key-%02d" % i for i in range(KEYS)):
        rec = store.get(k, NOW)
        if rec is not None:
            state[k] = (rec.value, rec.meta, rec.expiration)
    listed = {item.key for item in store.iter_keys(b"", NOW, page=17)}
    if listed != set(state):
        raise OracleViolation(f"list disagrees with get: {sorted(listed ^ set(state))}")
    return state


def _describe(expected: Model, got: Model) -> str:
    diffs = []
    for k in sorted(set(expected) | set(got)):
        e, g = expected.get(k), got.get(k)
        if e != g:
            show = [None if x is None else (len(x[0]), x[1], x[2]) for x in (e, g)]
            diffs.append(f"{k!r}: expected {show[0]} got {show[1]}")
    return "; ".join(diffs[:5])


@dataclass
class Figures:
    cycles: int = 0
    acked_ops: int = 0
    in_flight_landed: int = 0
    in_flight_lost: int = 0
    kills_by_phase: Counter[str] = field(default_factory=Counter)
    damage: Counter[str] = field(default_factory=Counter)
    torn_bytes_cut: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles,
            "acked_ops": self.acked_ops,
            "in_flight_landed": self.in_flight_landed,
            "in_flight_lost": self.in_flight_lost,
            "kills_by_phase": dict(self.kills_by_phase),
            "damage_seen": dict(self.damage),
            "torn_bytes_cut": self.torn_bytes_cut,
        }


def _read_acks(fd: int, deadline: float, want: int, acks: list[str]) -> bytes:
    """Collects pipe lines until `want` acks arrived, the deadline passed or the pipe closed."""
    pending = b""
    while time.monotonic() < deadline and sum(a[0] == "A" for a in acks) < want:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        pending += chunk
        *lines, pending = pending.split(b"\n")
        acks.extend(line.decode() for line in lines)
    return pending


def _drain(fd: int, pending: bytes, acks: list[str]) -> None:
    while chunk := os.read(fd, 65536):
        pending += chunk
    acks.extend(line.decode() for line in pending.split(b"\n") if line)


def one_cycle(
    path: str, sync: str, seed: int, first: int, rng: random.Random, compaction: bool
) -> tuple[list[str], int]:
    """Runs the child from op `first` and kills it; returns its pipe lines and exit status."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(r)
        code = 0
        try:
            run_child(path, sync, seed, first, w, compaction)
        except BaseException as exc:  # a child error must reach the parent, not a test runner
            sys.stderr.write(f"crash torture child failed: {exc!r}\n")
            code = 3
        os._exit(code)
    os.close(w)
    acks: list[str] = []
    # Kill after a random number of acks, or at a random instant, or (rarely) during open.
    roll = rng.random()
    if roll < 0.1:
        time.sleep(rng.random() * 0.004)
        pending = b""
    else:
        want = rng.randrange(1, 40)
        pending = _read_acks(r, time.monotonic() + 5.0, want, acks)
        time.sleep(rng.random() * 0.002)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    _drain(r, pending, acks)
    os.close(r)
    return acks, status


def check_cycle(
    path: str, sync: str, acked_model: Model, next_op: Op, figures: Figures
) -> tuple[Model, bool]:
    """Reopens the store; returns the model it matches and whether the in-flight op landed."""
    store = LogStore(path, sync=sync, max_segment_bytes=SEGMENT_BYTES)
    try:
        for d in store.damage():
            figures.damage[d.kind] += 1
            if d.kind not in ALLOWED_DAMAGE:
                raise OracleViolation(f"unexpected damage after a kill: {d}")
        figures.torn_bytes_cut += store.stats(NOW)["torn_bytes_cut"]
        got = read_state(store)
    finally:
        store.close()
    with_in_flight = visible(apply(acked_model, next_op))
    if got == visible(acked_model):
        if got != with_in_flight:
            figures.in_flight_lost += 1
        return acked_model, False
    if got == with_in_flight:
        figures.in_flight_landed += 1
        return apply(acked_model, next_op), True
    raise OracleViolation(
        f"state after kill matches neither the acked history nor acked + op {next_op.index} "
        f"({next_op.kind}): {_describe(visible(acked_model), got)}"
    )


def torture(
    path: str,
    sync: str,
    cycles: int,
    seed: int,
    compaction: bool | None = None,
    cycles_per_store: int = 150,
) -> Figures:
    """Runs `cycles` kill/reopen/check cycles, starting a fresh store at path every
    `cycles_per_store` cycles (without compaction a store only grows, and so would each reopen)."""
    if compaction is None:
        compaction = has_compaction()
    rng = random.Random(seed)
    figures = Figures()
    model: Model = {}
    next_index = 0  # the first operation not yet known to be in the store
    for cycle in range(cycles):
        if cycle and cycle % cycles_per_store == 0:
            shutil.rmtree(path)
            model = {}
        acks, status = one_cycle(path, sync, seed, next_index, rng, compaction)
        if os.WIFEXITED(status):
            raise OracleViolation(f"child exited by itself with status {os.WEXITSTATUS(status)}")
        acked = [int(a.split()[1]) for a in acks if a.startswith("A ")]
        expected = list(range(next_index, next_index + len(acked)))
        if acked != expected:
            raise OracleViolation(f"acks out of order: {acked[:5]}... expected {expected[:5]}...")
        for i in acked:
            model = apply(model, operation(seed, i, compaction))
        in_flight = next_index + len(acked)
        figures.acked_ops += len(acked)
        if "O" not in acks:
            phase = "open"
        elif acks and acks[-1].startswith("C "):
            phase = "compaction"
        else:
            phase = operation(seed, in_flight, compaction).kind
        figures.kills_by_phase[phase] += 1
        op = operation(seed, in_flight, compaction)
        model, landed = check_cycle(path, sync, model, op, figures)
        # An op that did not visibly land is issued again: the stream is deterministic.
        next_index = in_flight + 1 if landed else in_flight
        figures.cycles += 1
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--sync", choices=["os", "always"], default="os")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cycles-per-store", type=int, default=150)
    parser.add_argument("--dir", help="store directory (default: a fresh temporary one)")
    args = parser.parse_args(argv)
    base = args.dir or tempfile.mkdtemp(prefix="crash-torture-")
    path = os.path.join(base, "store")
    started = time.monotonic()
    try:
        figures = torture(
            path, args.sync, args.cycles, args.seed, cycles_per_store=args.cycles_per_store
        )
    except OracleViolation as exc:
        print(f"VIOLATION (seed {args.seed}, sync {args.sync}): {exc}", file=sys.stderr)
        print(f"store kept at {path}", file=sys.stderr)
        return 1
    summary = figures.summary()
    summary.update(sync=args.sync, seed=args.seed, compaction=has_compaction())
    summary["seconds"] = round(time.monotonic() - started, 1)
    print(summary)
    if not args.dir:
        shutil.rmtree(base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
