"""A Store is safe to share between threads (DESIGN.md section 1, csrc/kv_db.h locking).

Writers and readers run at once on one handle: a read returns the exact value of some
write of that key (never a mixture, never another key's value), every write is there
afterwards, and listing under concurrent writes stays in order.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path

import engine
from engine.errors import StoreClosedError
from engine.storage import BatchOp, LogStore

WRITERS = 4
READERS = 4
PER_WRITER = 400
KEYS_PER_WRITER = 50  # each key is overwritten several times


def value_of(writer: int, key: int, version: int) -> bytes:
    # Size varies with the version, so a torn or mixed read cannot look right.
    head = b"w%d-k%d-v%d|" % (writer, key, version)
    return head * (1 + version % 13)


def run_all(targets: list[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]


def test_threads_writing_and_reading_at_once(log_store: LogStore) -> None:
    done = threading.Event()
    last: dict[bytes, bytes] = {}

    def writer(w: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(w)
            for version in range(PER_WRITER):
                k = rng.randrange(KEYS_PER_WRITER)
                key = b"w%d-k%d" % (w, k)
                value = value_of(w, k, version)
                if version % 10 == 9:
                    log_store.write_batch([BatchOp(key, value), BatchOp(key + b"-twin", value)])
                    last[key + b"-twin"] = value
                else:
                    log_store.put(key, value)
                last[key] = value
                # A thread reads its own write at once.
                assert log_store.get(key, 0).value == value

        return run

    def reader(r: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(100 + r)
            reads = 0
            while not done.is_set() or reads < 200:
                w, k = rng.randrange(WRITERS), rng.randrange(KEYS_PER_WRITER)
                key = b"w%d-k%d" % (w, k)
                rec = log_store.get(key, 0)
                reads += 1
                if rec is not None:
                    head, _, _ = rec.value.partition(b"|")
                    version = int(head.rsplit(b"-v", 1)[1])
                    assert rec.value == value_of(w, k, version)
                if reads % 50 == 0:
                    keys = [item.key for item in log_store.iter_keys(b"w%d-" % w, 0)]
                    assert keys == sorted(keys)

        return run

    writers = [writer(w) for w in range(WRITERS)]

    def writers_then_done() -> None:
        try:
            run_all(writers)
        finally:
            done.set()

    run_all([writers_then_done] + [reader(r) for r in range(READERS)])
    for key, value in last.items():
        assert log_store.get(key, 0).value == value
    assert log_store.stats(0)["keys"] == len(last)


def test_threads_share_one_kv_store(store_path: Path) -> None:
    with engine.open(store_path) as db:
        kv = db.namespace("shared")

        def worker(t: int) -> Callable[[], None]:
            def run() -> None:
                for i in range(100):
                    kv.put(f"t{t}-{i}", f"value {t} {i}")
                    assert kv.get(f"t{t}-{i}") == f"value {t} {i}"

            return run

        run_all([worker(t) for t in range(4)])
        names = [k.name for k in kv.list().keys]
        assert names == sorted(f"t{t}-{i}" for t in range(4) for i in range(100))[:1000]


def test_close_while_threads_read(store_path: Path) -> None:
    store = LogStore(store_path)
    for i in range(200):
        store.put(b"k%d" % i, b"v%d" % i)
    started = threading.Barrier(5)

    def reader() -> None:
        started.wait()
        while True:
            try:
                rec = store.get(b"k7", 0)
            except StoreClosedError:
                return
            assert rec is not None and rec.value == b"v7"

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    store.close()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
