"""The stores the comparison harness (bench/peer.py) measures, behind one small interface.

Every adapter opens its store in a fresh directory with the durability
settings in DURABILITY (no fsync per write for anyone) and exposes the
operations as plain callables, so the timing loops in bench/peer.py do the
same work for every store: one call per put and per get, each standing alone
(its own transaction where the store has transactions).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

# What each store is asked to guarantee on return of a write: it is in the
# kernel (survives a killed process), nothing is fsynced per write.
DURABILITY = {
    "kvengine": 'engine.open(sync="os"): each put is write()n to the segment before it returns,'
    " no fsync; defaults otherwise",
    "lmdb": "sync=False, metasync=False, map_size 64 GiB (sparse), one write/read transaction"
    " per operation",
    "sqlite": "journal_mode=WAL, synchronous=NORMAL, autocommit (one transaction per"
    " statement), table kv(k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID, one key per row",
    "rocksdb": "rocksdict Rdict, raw_mode=True, default options: WAL on, no sync per write",
    "leveldb": "plyvel DB(create_if_missing=True), default options: sync=False",
    "diskcache": "diskcache.Cache defaults (SQLite WAL, synchronous=NORMAL; values >= 32 KiB"
    " in their own files)",
}

ORDERED = {"kvengine", "lmdb", "sqlite", "rocksdb", "leveldb"}


class Store:
    """One open store: put(key, value), get(key) -> bytes | None, list1000(prefix) -> keys."""

    name = ""
    put: Callable[[Any, bytes], Any]
    get: Callable[[Any], bytes | None]
    list1000: Callable[[Any], list[Any]] | None = None

    def __init__(self, path: str) -> None:
        self.path = path

    def key(self, k: bytes) -> Any:
        """The form this store's API takes a key in."""
        return k

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Bulk load, untimed (to build the large stores for the open test)."""
        put = self.put
        for k, val in items:
            put(self.key(k), val)

    def compact(self) -> str | None:
        """Reclaims dead space; returns a note when the store has no such operation."""
        return "no compaction operation"

    def close(self) -> None:
        raise NotImplementedError


class KVEngine(Store):
    name = "kvengine"

    def __init__(self, path: str) -> None:
        import engine

        super().__init__(path)
        self.db = engine.open(path, sync="os")
        ns = self.db.namespace()
        self.ns = ns
        self.put = ns.put
        get = ns.get

        def get_bytes(k: str) -> bytes | None:
            return get(k, "bytes")  # type: ignore[no-any-return]

        self.get = get_bytes

        ns_list = ns.list

        def list1000(prefix: str) -> list[str]:
            return [info.name for info in ns_list(prefix, 1000).keys]

        self.list1000 = list1000

    def key(self, k: bytes) -> str:
        return k.decode()

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        batch: list[dict[str, Any]] = []
        for k, val in items:
            batch.append({"key": k.decode(), "value": val})
            if len(batch) == 10_000:
                self.ns.put_many(batch)
                batch = []
        if batch:
            self.ns.put_many(batch)

    def compact(self) -> str | None:
        try:
            self.db.compact()
        except AttributeError:
            return "compaction is not in this build"
        return None

    def index_bytes(self) -> int:
        return self.db.stats().index_bytes

    def close(self) -> None:
        self.db.close()


class LMDB(Store):
    name = "lmdb"

    def __init__(self, path: str) -> None:
        import lmdb

        super().__init__(path)
        env = lmdb.open(path, map_size=64 << 30, sync=False, metasync=False)
        self.env = env
        begin = env.begin

        def put(k: bytes, val: bytes) -> None:
            with begin(write=True) as txn:
                txn.put(k, val)

        def get(k: bytes) -> bytes | None:
            with begin() as txn:
                return txn.get(k)  # type: ignore[no-any-return]

        def list1000(prefix: bytes) -> list[bytes]:
            out: list[bytes] = []
            with begin() as txn:
                cur = txn.cursor()
                if not cur.set_range(prefix):
                    return out
                for k in cur.iternext(keys=True, values=False):
                    if not k.startswith(prefix) or len(out) == 1000:
                        break
                    out.append(k)
            return out

        self.put, self.get, self.list1000 = put, get, list1000

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            for k, val in items:
                txn.put(k, val)

    def compact(self) -> str | None:
        return "reuses freed pages in place; no compaction operation"

    def close(self) -> None:
        self.env.close()


class SQLite(Store):
    name = "sqlite"

    def __init__(self, path: str) -> None:
        import sqlite3

        super().__init__(path)
        os.makedirs(path, exist_ok=True)
        conn = sqlite3.connect(os.path.join(path, "kv.sqlite"), isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")
        self.conn = conn
        execute = conn.execute
        put_sql = "INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)"
        get_sql = "SELECT v FROM kv WHERE k = ?"
        list_sql = "SELECT k FROM kv WHERE k >= ? AND k < ? ORDER BY k LIMIT 1000"

        def put(k: bytes, val: bytes) -> None:
            execute(put_sql, (k, val))

        def get(k: bytes) -> bytes | None:
            row = execute(get_sql, (k,)).fetchone()
            return None if row is None else row[0]  # type: ignore[no-any-return]

        def list1000(prefix: bytes) -> list[bytes]:
            return [r[0] for r in execute(list_sql, (prefix, _prefix_end(prefix)))]

        self.put, self.get, self.list1000 = put, get, list1000

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", items)
        self.conn.execute("COMMIT")

    def compact(self) -> str | None:
        self.conn.execute("VACUUM")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return None

    def close(self) -> None:
        self.conn.close()


class RocksDB(Store):
    name = "rocksdb"

    def __init__(self, path: str) -> None:
        from rocksdict import Options, Rdict, WriteBatch

        super().__init__(path)
        self._batch = WriteBatch
        db = Rdict(path, options=Options(raw_mode=True))
        self.db = db
        self.put = db.put
        self.get = db.get

        def list1000(prefix: bytes) -> list[bytes]:
            out: list[bytes] = []
            it = db.iter()
            it.seek(prefix)
            while it.valid() and len(out) < 1000:
                k = it.key()
                if not k.startswith(prefix):
                    break
                out.append(k)
                it.next()
            return out

        self.list1000 = list1000

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        wb = self._batch(raw_mode=True)
        for i, (k, val) in enumerate(items, 1):
            wb.put(k, val)
            if i % 10_000 == 0:
                self.db.write(wb)
                wb = self._batch(raw_mode=True)
        self.db.write(wb)

    def compact(self) -> str | None:
        self.db.compact_range(None, None)
        return None

    def close(self) -> None:
        self.db.close()


class LevelDB(Store):
    name = "leveldb"

    def __init__(self, path: str) -> None:
        import plyvel

        super().__init__(path)
        db = plyvel.DB(path, create_if_missing=True)
        self.db = db
        self.put = db.put
        self.get = db.get

        def list1000(prefix: bytes) -> list[bytes]:
            out: list[bytes] = []
            with db.iterator(prefix=prefix, include_value=False) as it:
                for k in it:
                    out.append(k)
                    if len(out) == 1000:
                        break
            return out

        self.list1000 = list1000

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        wb = self.db.write_batch()
        for i, (k, val) in enumerate(items, 1):
            wb.put(k, val)
            if i % 10_000 == 0:
                wb.write()
                wb = self.db.write_batch()
        wb.write()

    def compact(self) -> str | None:
        self.db.compact_range()
        return None

    def close(self) -> None:
        self.db.close()


class DiskCache(Store):
    name = "diskcache"

    def __init__(self, path: str) -> None:
        import diskcache

        super().__init__(path)
        cache = diskcache.Cache(path)
        self.cache = cache
        self.put = cache.set
        self.get = cache.get
        self.list1000 = None  # keys are hashed into rows; no ordered listing

    def load(self, items: Iterable[tuple[bytes, bytes]]) -> None:
        with self.cache.transact():
            for k, val in items:
                self.cache.set(k, val)

    def compact(self) -> str | None:
        return "no compaction operation"

    def close(self) -> None:
        self.cache.close()


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string starting with prefix."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b"\xff" * 1024
    p[-1] += 1
    return bytes(p)


ALL: dict[str, type[Store]] = {
    cls.name: cls for cls in (KVEngine, LMDB, SQLite, RocksDB, LevelDB, DiskCache)
}

# The import each store needs; a store whose module is missing is skipped with a note.
MODULES = {
    "kvengine": "engine",
    "lmdb": "lmdb",
    "sqlite": "sqlite3",
    "rocksdb": "rocksdict",
    "leveldb": "plyvel",
    "diskcache": "diskcache",
}


def version(name: str) -> str:
    """The Python package and version a store is used through, for the record."""
    import importlib.metadata as md

    if name == "sqlite":
        import sqlite3

        return f"sqlite3 (SQLite {sqlite3.sqlite_version})"
    dist = {"rocksdb": "rocksdict", "leveldb": "plyvel"}.get(name, name)
    try:
        text = f"{dist} {md.version(dist)}"
    except md.PackageNotFoundError:
        text = f"{dist} (version unknown)"
    if name == "lmdb":
        import lmdb

        text += " (LMDB " + ".".join(map(str, lmdb.version())) + ")"
    return text
