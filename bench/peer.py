"""kvengine against the embedded stores Python programs use today, in one process run.

Run:  python bench/peer.py [--quick] [--out DIR] [--stores kvengine,lmdb,...]

Every store gets a fresh directory under --dir, the same keys and values in
the same order, and the durability settings listed in bench/peer_stores.py.
Rounds interleave the stores (round 1: every store, round 2: every store, ...)
so that noise from a shared machine spreads over all of them; each figure is
the median over the rounds.  Open time and peak memory are measured in a
fresh child process per store (peak RSS is per process).  Writes
DIR/peer.json, DIR/peer.md and, with matplotlib installed, DIR/peer.png (see bench/peer_report.py).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peer_report
import peer_stores

MIB = 1 << 20
clock = time.perf_counter


class Config:
    """How much work each workload does; --quick and --tiny scale it down."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.keys = args.keys
        self.keys_4k = args.keys_4k
        self.ops = args.ops
        self.lists = args.lists
        self.big_mib = args.big_mib
        self.big_reps = args.big_reps
        self.open_keys = args.open_keys
        self.rounds = args.rounds
        self.seed = args.seed


PRESETS = {
    # keys, keys_4k, ops, lists, big_mib, big_reps, open_keys, rounds
    "full": (100_000, 10_000, 50_000, 100, 25, 3, 1_000_000, 5),
    "quick": (20_000, 4_000, 20_000, 50, 25, 3, 100_000, 3),
    "tiny": (2_000, 200, 1_000, 2, 1, 1, 2_000, 1),
}


def key_of(i: int) -> bytes:
    """16-byte keys; the first 13 bytes are shared by 1000 consecutive keys (the list prefix)."""
    return b"key%013d" % i


def list_prefix_of(i: int) -> bytes:
    return b"key%010d" % i


def dir_bytes(path: str) -> int:
    """Bytes allocated on disk under path (sparse files count what they use)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak_rss() -> bool:
    """Resets VmHWM to the current RSS (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def timed_loop(fn: Callable[..., Any], args: list[Any]) -> float:
    """Seconds per call of fn over args (each a single argument)."""
    t = clock()
    for a in args:
        fn(a)
    return (clock() - t) / len(args)


def timed_puts(put: Callable[[Any, bytes], Any], keys: list[Any], values: list[bytes]) -> float:
    nv = len(values)
    t = clock()
    for i, k in enumerate(keys):
        put(k, values[i % nv])
    return (clock() - t) / len(keys)


class Results:
    """figures[workload][store] = list of per-round values; notes[store] = text."""

    def __init__(self) -> None:
        self.figures: dict[str, dict[str, list[float]]] = {}
        self.notes: dict[str, list[str]] = {}
        self.baselines: dict[str, list[float]] = {}

    def add(self, workload: str, store: str, value: float) -> None:
        self.figures.setdefault(workload, {}).setdefault(store, []).append(value)

    def note(self, store: str, text: str) -> None:
        if text not in self.notes.setdefault(store, []):
            self.notes[store].append(text)

    def medians(self) -> dict[str, dict[str, float]]:
        return {
            w: {s: statistics.median(vals) for s, vals in per.items()}
            for w, per in self.figures.items()
        }


class Bench:
    def __init__(self, cfg: Config, stores: list[str], workdir: str) -> None:
        self.cfg = cfg
        self.stores = stores
        self.workdir = workdir
        self.res = Results()
        rng = random.Random(cfg.seed)
        n = cfg.keys
        self.keys = [key_of(i) for i in range(n)]
        self.fill_order = rng.sample(range(n), n)
        self.overwrite_order = rng.sample(range(n), n)
        ops = min(cfg.ops, n)
        self.hit_order = [rng.randrange(n) for _ in range(ops)]
        # Half the reads ask for keys that were never written (numbers past the last key).
        self.mixed_order = [rng.randrange(n) if i % 2 else n + rng.randrange(n) for i in range(ops)]
        self.prefixes = [list_prefix_of(rng.randrange(n // 1000)) for _ in range(cfg.lists)]
        self.values_100 = _random_values(4096, 100, rng)
        self.values_100b = _random_values(4096, 100, rng)
        self.values_4k = _random_values(256, 4096, rng)
        self.big_value = rng.randbytes(cfg.big_mib * MIB)

    def fresh_dir(self, store: str, what: str) -> str:
        path = os.path.join(self.workdir, f"{store}-{what}")
        shutil.rmtree(path, ignore_errors=True)
        return path

    def open(self, store: str, path: str) -> peer_stores.Store:
        return peer_stores.ALL[store](path)

    # -- workloads ----------------------------------------------------------------
    def small_values(self, store: str) -> None:
        """Fill (100 B), gets, list, overwrite and the disk bytes after each step."""
        res = self.res
        path = self.fresh_dir(store, "small")
        db = self.open(store, path)
        conv = db.key
        keys = [conv(k) for k in self.keys]
        res.add("put 100 B", store, timed_puts(db.put, [keys[i] for i in self.fill_order],
                                                 self.values_100))  # fmt: skip
        db.close()
        res.add("disk after fill", store, dir_bytes(path))
        db = self.open(store, path)
        assert db.get(keys[self.hit_order[0]]) is not None, f"{store}: a written key is missing"
        assert db.get(conv(key_of(len(keys)))) is None, f"{store}: an unwritten key was found"
        res.add("get hit", store, timed_loop(db.get, [keys[i] for i in self.hit_order]))
        mixed = [keys[i] if i < len(keys) else conv(key_of(i)) for i in self.mixed_order]
        res.add("get 50% miss", store, timed_loop(db.get, mixed))
        if db.list1000 is None:
            res.note(store, "list: keys are not stored in order; not measured")
        elif self.prefixes:
            prefixes = [conv(p) for p in self.prefixes]
            got = db.list1000(prefixes[0])
            assert len(got) == 1000, f"{store}: list returned {len(got)} keys, not 1000"
            res.add("list 1000 by prefix", store, timed_loop(db.list1000, prefixes))
        res.add(
            "overwrite 100 B",
            store,
            timed_puts(db.put, [keys[i] for i in self.overwrite_order], self.values_100b),
        )
        db.close()
        res.add("disk after overwrite", store, dir_bytes(path))
        db = self.open(store, path)
        note = db.compact()
        db.close()
        if note is None:
            res.add("disk after compaction", store, dir_bytes(path))
        else:
            res.note(store, f"compaction: {note}")
        shutil.rmtree(path)

    def fill_4k(self, store: str) -> None:
        path = self.fresh_dir(store, "4k")
        db = self.open(store, path)
        n = self.cfg.keys_4k
        keys = [db.key(self.keys[i]) for i in self.fill_order if i < n]
        self.res.add("put 4 KiB", store, timed_puts(db.put, keys, self.values_4k))
        db.close()
        shutil.rmtree(path)

    def big(self, store: str) -> None:
        """Large values: put then get each, as bandwidth.

        Each store starts from a clean page cache (os.sync() first): dirty pages
        left by earlier workloads throttle writes for whoever comes next.  Beside
        kvengine's puts, the same run measures the machine: a `dd`-like write of
        the same bytes to a new file just before each put (the files stay, as the
        values do) and a memcpy of them into an already touched buffer.
        """
        path = self.fresh_dir(store, "big")
        db = self.open(store, path)
        keys = [db.key(b"big%d" % i) for i in range(self.cfg.big_reps)]
        value = self.big_value
        baseline = store == "kvengine"
        puts, gets, writes = [], [], []
        os.sync()
        for i, k in enumerate(keys):
            if baseline:
                writes.append(self._page_cache_write(os.path.join(self.workdir, f"dd-{i}")))
            t = clock()
            db.put(k, value)
            puts.append(clock() - t)
        for k in keys:
            t = clock()
            got = db.get(k)
            gets.append(clock() - t)
            assert got is not None and len(got) == len(value), f"{store}: big value lost"
            del got
        name = f"{self.cfg.big_mib} MiB"
        self.res.add(f"put {name}", store, statistics.median(puts))
        self.res.add(f"get {name}", store, statistics.median(gets))
        db.close()
        shutil.rmtree(path)
        if baseline:
            for i in range(len(keys)):
                os.unlink(os.path.join(self.workdir, f"dd-{i}"))
            self.res.baselines.setdefault("page-cache write", []).append(statistics.median(writes))
            self.res.baselines.setdefault("memcpy", []).append(self._memcpy())

    def _page_cache_write(self, path: str) -> float:
        """Seconds to write the big value to a new file (`dd bs=SIZE count=1`, no fsync)."""
        t = clock()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        view = memoryview(self.big_value)
        while view:
            view = view[os.write(fd, view) :]
        os.close(fd)
        return clock() - t

    def _memcpy(self) -> float:
        """Seconds to copy the big value into an already touched buffer (no page faults)."""
        n = len(self.big_value)
        dst = ctypes.create_string_buffer(n)
        src = ctypes.c_char_p(self.big_value)
        copies = []
        for _ in range(max(3, self.cfg.big_reps)):
            t = clock()
            ctypes.memmove(dst, src, n)
            copies.append(clock() - t)
        return statistics.median(copies)

    def build_large(self, store: str) -> str:
        """The store of open_keys keys for the open test, loaded in bulk (untimed).

        Keys go in in random order, as most programs write them: an index built
        from keys in sorted order is the easy case for every store.
        """
        path = self.fresh_dir(store, "open")
        db = self.open(store, path)
        values = self.values_100
        nv = len(values)
        order = list(range(self.cfg.open_keys))
        random.Random(self.cfg.seed + 1).shuffle(order)
        db.load((key_of(i), values[i % nv]) for i in order)
        db.close()
        return path

    def open_large(self, store: str, path: str) -> None:
        """Open time and the peak memory an open store adds per key, in a fresh process.

        A fresh process because peak RSS is per process, and memory an earlier
        store freed to the allocator would hide what the next one takes.
        """
        n = self.cfg.open_keys
        cmd = [sys.executable, os.path.abspath(__file__), "--open-child", store, path, str(n),
               str(self.cfg.seed)]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        got = json.loads(out)
        self.res.add("open 1M-key store" if n == 1_000_000 else f"open {n}-key store", store,
                     got["open"])  # fmt: skip
        if got["peak"] is not None:
            self.res.add("peak memory per key", store, got["peak"])
        if got["index"] is not None:
            self.res.add("kvengine index bytes per key", store, got["index"])

    # -- the run ------------------------------------------------------------------
    def run(self, progress: Callable[[str], None]) -> Results:
        cfg = self.cfg
        large = {}
        for store in self.stores:
            progress(f"building the {cfg.open_keys}-key store for {store}")
            large[store] = self.build_large(store)
        for r in range(cfg.rounds):
            progress(f"round {r + 1}/{cfg.rounds}")
            for store in self.stores:
                progress(f"  {store}")
                self.small_values(store)
                self.fill_4k(store)
            for store in self.stores:
                self.big(store)
            for store in self.stores:
                self.open_large(store, large[store])
        for path in large.values():
            shutil.rmtree(path, ignore_errors=True)
        return self.res


def _random_values(count: int, size: int, rng: random.Random) -> list[bytes]:
    blob = rng.randbytes(count * size)
    return [blob[i * size : (i + 1) * size] for i in range(count)]


def open_child(store: str, path: str, n: int, seed: int) -> dict[str, float | None]:
    """In a fresh process: open + the first get, 1000 random gets, the peak RSS they added."""
    importlib.import_module(peer_stores.MODULES[store])
    rng = random.Random(seed)
    probes = [key_of(rng.randrange(n)) for _ in range(1000)]
    gc.collect()
    have_peak = reset_peak_rss()
    before = rss_bytes()
    t = clock()
    db = peer_stores.ALL[store](path)
    first = db.get(db.key(key_of(n // 2)))
    opened = clock() - t
    if first is None:
        raise SystemExit(f"{store}: key missing after reopen")
    get, conv = db.get, db.key
    for k in probes:
        get(conv(k))
    peak = (peak_rss_bytes() - before) / n if have_peak else None
    index = db.index_bytes() / n if isinstance(db, peer_stores.KVEngine) else None
    db.close()
    return {"open": opened, "peak": peak, "index": index}


def available(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """The stores whose modules import, and a note for each one that does not."""
    ok, skipped = [], {}
    for name in names:
        if name not in peer_stores.ALL:
            raise SystemExit(f"unknown store {name!r}; known: {', '.join(peer_stores.ALL)}")
        try:
            importlib.import_module(peer_stores.MODULES[name])
        except ImportError as exc:
            skipped[name] = f"skipped: {exc} (pip install -e '.[bench]')"
            continue
        ok.append(name)
    return ok, skipped


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load average at start": os.getloadavg(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller sizes, 3 rounds (~1-2 minutes)")
    p.add_argument("--tiny", action="store_true", help="tiny sizes, 1 round: proves it runs")
    p.add_argument("--out", default="bench/results", help="directory for peer.json/.md/.png")
    p.add_argument("--dir", default=None, help="where the stores live (default: a temp dir)")
    p.add_argument("--stores", default=",".join(peer_stores.ALL), help="comma-separated")
    p.add_argument("--no-chart", action="store_true")
    for i, name in enumerate(
        ["keys", "keys-4k", "ops", "lists", "big-mib", "big-reps", "open-keys", "rounds"]
    ):
        p.add_argument(f"--{name}", type=int, default=None, help=f"override (full: "
                       f"{PRESETS['full'][i]})")  # fmt: skip
    p.add_argument("--seed", type=int, default=20240601)
    args = p.parse_args(argv)
    preset = PRESETS["tiny" if args.tiny else "quick" if args.quick else "full"]
    for i, name in enumerate(
        ["keys", "keys_4k", "ops", "lists", "big_mib", "big_reps", "open_keys", "rounds"]
    ):
        if getattr(args, name) is None:
            setattr(args, name, preset[i])
    if args.keys < 1000:
        p.error("--keys must be at least 1000 (the list workload reads 1000 keys)")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--open-child"]:
        store, path, n, seed = argv[1:5]
        print(json.dumps(open_child(store, path, int(n), int(seed))))
        return 0
    args = parse_args(argv)
    cfg = Config(args)
    wanted = [s.strip() for s in args.stores.split(",") if s.strip()]
    if "kvengine" not in wanted:
        raise SystemExit("kvengine must be among --stores: every ratio is to it")
    stores, skipped = available(wanted)
    for name, text in skipped.items():
        print(f"{name}: {text}", file=sys.stderr)
    info = machine()
    parent = args.dir or os.environ.get("KVENGINE_BENCH_DIR")
    with tempfile.TemporaryDirectory(prefix="kvbench-", dir=parent) as workdir:
        bench = Bench(cfg, stores, workdir)
        res = bench.run(lambda s: print(s, file=sys.stderr, flush=True))
    for name, text in skipped.items():
        res.note(name, text)
    info["load average at end"] = os.getloadavg()
    report = peer_report.build(
        res.medians(),
        {w: dict(per) for w, per in res.figures.items()},
        {k: statistics.median(v) for k, v in res.baselines.items()},
        res.notes,
        config=vars(args),
        machine=info,
        versions={s: peer_stores.version(s) for s in stores},
        durability={s: peer_stores.DURABILITY[s] for s in stores},
        big_bytes=cfg.big_mib * MIB,
    )
    os.makedirs(args.out, exist_ok=True)
    peer_report.write(report, args.out, chart_too=not args.no_chart)
    print(peer_report.markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
