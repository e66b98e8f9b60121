"""Store and Namespace: Workers KV semantics over the log store.

This layer owns what Workers KV means: namespaces, key and option rules with
their exact errors (engine/validate.py), value types (engine/values.py),
expiry through the store's clock, cursors, bulk writes and the optional
same-key rate limit.  Everything below it (engine/storage.py and the C core)
stores opaque bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from engine import validate as v
from engine.catalog import CATALOG_PREFIX, Catalog, check_name
from engine.errors import KVError, ReadOnlyError, StoreClosedError
from engine.ratelimit import WriteRateLimiter
from engine.results import (
    BulkPair,
    CompactionReport,
    KeyInfo,
    ListResult,
    NamespaceStats,
    ReadCacheStats,
    StoreStats,
    ValueWithMetadata,
    key_infos,
)
from engine.storage import (
    DEFAULT_MAX_SEGMENT_BYTES,
    DEFAULT_READ_CACHE_BYTES,
    HOT_FAILED,
    HOT_SLOW,
    BatchOp,
    LogStore,
    hot_delete,
    hot_get,
    hot_list,
    hot_put,
)
from engine.storage import StreamTooLarge as _StreamTooLarge
from engine.values import as_buffer, decode, decode_metadata, stream_chunks

Clock = Callable[[], float]
DEFAULT_NAMESPACE = "default"


def open(
    path: str | os.PathLike[str],
    *,
    sync: str = "os",
    clock: Clock | None = None,
    readonly: bool = False,
    enforce_write_rate_limit: bool = False,
    max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
    auto_compact: bool = True,
    read_cache_bytes: int = DEFAULT_READ_CACHE_BYTES,
) -> Store:
    """Opens (creating unless readonly) the store in directory path.

    Args:
        path: the store directory (created with mode 0700).
        sync: "os" (default: each write is in the kernel on return, survives a
            killed process), "interval" (fsync at least every second) or
            "always" (each write is on stable storage on return; group commit).
        clock: seconds since the epoch for expiry and the rate limit; time.time.
        readonly: open without the writer lock, beside a writer; a snapshot of
            what was on disk at open.
        enforce_write_rate_limit: refuse a second write to a key within one
            second with KVError 429, as Workers KV does.
        max_segment_bytes: segment size at which a new segment is started.
        auto_compact: reclaim dead space in a background thread.
        read_cache_bytes: memory for recently read records up to 64 KiB, so
            that a repeated get makes no system call; 0 turns the cache off,
            else at least 65536.

    Raises:
        StoreLockedError: another process has the store open for writing.
        EngineIOError: the directory cannot be opened or created.
        ValueError: an option out of its range (sync, read_cache_bytes).
    """
    return Store(
        path,
        sync=sync,
        clock=clock,
        readonly=readonly,
        enforce_write_rate_limit=enforce_write_rate_limit,
        max_segment_bytes=max_segment_bytes,
        auto_compact=auto_compact,
        read_cache_bytes=read_cache_bytes,
    )


class Store:
    """An open store: a set of namespaces in one directory.  Safe to share between threads."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: str = "os",
        clock: Clock | None = None,
        readonly: bool = False,
        enforce_write_rate_limit: bool = False,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        auto_compact: bool = True,
        read_cache_bytes: int = DEFAULT_READ_CACHE_BYTES,
    ) -> None:
        self._clock: Clock = clock if clock is not None else time.time
        self._log = LogStore(
            path,
            sync=sync,
            readonly=readonly,
            max_segment_bytes=max_segment_bytes,
            auto_compact=auto_compact and not readonly,
            clock=self._clock,
            read_cache_bytes=read_cache_bytes,
        )
        try:
            self._catalog = Catalog(self._log)
        except BaseException:
            self._log.close()
            raise
        self._limiter = WriteRateLimiter() if enforce_write_rate_limit else None
        self._handles: dict[str, Namespace] = {}
        self._lock = threading.Lock()
        self.path = self._log.path
        self.readonly = readonly

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Makes every write durable, closes the files and releases the writer lock."""
        self._log.close()

    @property
    def closed(self) -> bool:
        return self._log.closed

    def sync(self) -> None:
        """Everything written so far is on stable storage when this returns."""
        self._log.sync()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "readonly" if self.readonly else "open"
        return f"<engine.Store {self.path!r} {state}>"

    # -- namespaces --------------------------------------------------------------
    def namespace(self, name: str = DEFAULT_NAMESPACE) -> Namespace:
        """The namespace called name, created (on a writer) if it does not exist.

        Raises:
            ValueError: name is not 1-64 ASCII letters, digits, "_", "-", "."
                or starts with ".".
        """
        check_name(name)
        with self._lock:
            handle = self._handles.get(name)
            if handle is None or handle._id != self._catalog.lookup(name):
                old = handle
                handle = Namespace(self, name, self._resolve(name))
                self._handles[name] = handle
                if old is not None:
                    old._retire()
            return handle

    def _check_open(self, what: str) -> None:
        # The catalog answers from memory, so a closed store must say so itself.
        if self._log.closed:
            raise StoreClosedError(f"{what}: store is closed")

    def _resolve(self, name: str) -> int | None:
        self._check_open("namespace")
        if self.readonly:
            return self._catalog.lookup(name)
        return self._catalog.create(name)

    def namespaces(self) -> list[str]:
        """The names of every namespace, sorted.

        Raises:
            StoreClosedError: the store was closed.
        """
        self._check_open("namespaces")
        return self._catalog.names()

    def delete_namespace(self, name: str) -> None:
        """Deletes namespace name and every key in it (nothing happens if it does not exist).

        The namespace disappears at once and atomically, also across a crash;
        handles to it see an empty namespace of that name from then on.
        """
        check_name(name)
        if self.readonly:
            raise ReadOnlyError("delete_namespace: store is open read-only")
        with self._lock:
            self._catalog.drop(name)
            old = self._handles.pop(name, None)
            if old is not None:
                old._retire()

    # -- maintenance -------------------------------------------------------------
    def stats(self) -> StoreStats:
        now = self._clock()
        log = self._log
        raw = log.stats(now)
        per_ns = {}
        for name in self._catalog.names():
            ns_id = self._catalog.lookup(name)
            if ns_id is not None:
                keys, nbytes = log.count_prefix(ns_id.to_bytes(2, "big"), now)
                per_ns[name] = NamespaceStats(keys, nbytes)
        catalog_keys, _ = log.count_prefix(CATALOG_PREFIX, now)
        return StoreStats(
            namespaces=per_ns,
            keys=raw["keys"] - raw["expired_keys"] - catalog_keys,
            live_bytes=raw["live_bytes"] - raw["expired_bytes"],
            expired_bytes=raw["expired_bytes"],
            dead_bytes=raw["dead_bytes"],
            tombstone_bytes=raw["tombstone_bytes"],
            disk_bytes=raw["disk_bytes"],
            index_bytes=raw["index_bytes"],
            segments=log.segments(now),
            torn_bytes_cut=raw["torn_bytes_cut"],
            damage=log.damage(),
            read_cache=ReadCacheStats(
                hits=raw["cache_hits"],
                misses=raw["cache_misses"],
                bytes=raw["cache_bytes"],
                records=raw["cache_records"],
            ),
        )

    def compact(
        self,
        *,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> CompactionReport:
        """Runs a full compaction now: reclaims overwritten, deleted and expired records.

        Expiry is judged at the store clock's now.  With ``dry_run`` nothing is
        written and the report says what a real pass would reclaim.  ``progress``
        is called as progress(done_bytes, total_bytes) while the input is read.
        Reads and writes from other threads carry on during the pass.
        """
        if self.readonly and not dry_run:
            raise ReadOnlyError("compact: store is open read-only")
        return self._log.compact(self._clock(), "all", dry_run=dry_run, progress=progress)


class Namespace:
    """One Workers KV namespace of a store.  Safe to share between threads."""

    __slots__ = (
        "_clock",
        "_hot_get",
        "_hot_put",
        "_id",
        "_limiter",
        "_log",
        "_prefix",
        "_retired",
        "_store",
        "name",
    )

    def __init__(self, store: Store, name: str, ns_id: int | None) -> None:
        self._store = store
        self._log = store._log
        self._limiter = store._limiter
        self._clock = store._clock
        self.name = name
        # True once the store's handle for this name is another one (the
        # namespace was deleted or recreated): calls then go to the live handle.
        # A plain flag, read on every call instead of a lookup in the store.
        self._retired = False
        self._id = ns_id
        # ns_id is None for a namespace a read-only store has never seen: it
        # holds no keys, and writes to it are refused.
        self._prefix = ns_id.to_bytes(2, "big") if ns_id is not None else b""
        # The one-call put, delete and get of plain calls (engine.storage.hot_*),
        # None where every call must take the general path: a namespace a
        # read-only store has never seen; for writes, a read-only store and the
        # write rate limit.
        hot = None
        if ns_id is not None:
            hot = self._log.hot_handle(self._prefix, v.MAX_KEY_BYTES, v.MAX_VALUE_BYTES)
        self._hot_get = hot
        self._hot_put = hot if not store.readonly and self._limiter is None else None

    def __repr__(self) -> str:
        return f"<engine.Namespace {self.name!r} of {self._store.path!r}>"

    def _retire(self) -> None:
        self._hot_get = self._hot_put = None
        self._retired = True

    def _current(self) -> Namespace:
        """This handle, or the live one if the namespace was deleted since it was made."""
        if not self._retired:
            return self
        return self._store.namespace(self.name)

    # -- writes ------------------------------------------------------------------
    def put(
        self,
        key: str,
        value: Any,
        *,
        expiration: int | float | None = None,
        expiration_ttl: int | float | None = None,
        metadata: Any = None,
    ) -> None:
        """Stores value under key, replacing its value, expiration and metadata.

        Args:
            value: str (stored as UTF-8), bytes-like, a binary file-like object
                or an iterable of bytes chunks (read without holding it whole).
            expiration: absolute expiry, seconds since the epoch, >= now + 60.
            expiration_ttl: expiry in seconds from now, >= 60; wins over expiration.
            metadata: any JSON-serializable value, at most 1024 bytes as JSON.

        Raises:
            ValueError: empty, "." or ".." key.
            TypeError: a value, option or metadata of the wrong type.
            KVError: 414 key too long, 413 value or metadata too large,
                400 invalid expiration, 429 same-key write within a second.
        """
        hot = self._hot_put
        if hot is not None and expiration is None and expiration_ttl is None and metadata is None:
            rc = hot_put(hot, key, value)
            if rc is None:
                return
            if isinstance(rc, int):  # else HOT_SLOW: the general path below decides
                self._log.put_failed(rc)
        ns = self._current()
        k = v.key_bytes(key, "PUT")
        data = as_buffer(value)
        exp = 0
        if expiration is not None or expiration_ttl is not None:
            exp = v.expiration_at(expiration, expiration_ttl, ns._store._clock())
        meta = v.metadata_bytes(metadata) if metadata is not None else b""
        if data is not None and len(data) > v.MAX_VALUE_BYTES:
            v.value_too_large(len(data))
        full = (ns._writable_prefix("put") + k,)
        admitted_at = ns._admit(full, "PUT")
        try:
            if data is not None:
                ns._log.put(full[0], data, meta, exp)
            else:
                chunks = stream_chunks(value)
                ns._log.put_stream(full[0], chunks, meta, exp, limit=v.MAX_VALUE_BYTES)
        except BaseException as exc:
            ns._release(full, admitted_at)
            if isinstance(exc, _StreamTooLarge):
                v.value_too_large(exc.size)
            raise

    def delete(self, key: str) -> None:
        """Deletes key; deleting a missing key is not an error."""
        hot = self._hot_put
        if hot is not None:
            rc = hot_delete(hot, key)
            if rc is None:
                return
            if isinstance(rc, int):  # else HOT_SLOW: the general path below decides
                self._log.delete_failed(rc)
        ns = self._current()
        full = (ns._writable_prefix("delete") + v.key_bytes(key, "DELETE"),)
        admitted_at = ns._admit(full, "DELETE")
        try:
            ns._log.delete(full[0])
        except BaseException:
            ns._release(full, admitted_at)
            raise

    def put_many(self, items: Iterable[dict[str, Any] | BulkPair]) -> None:
        """Writes up to 10,000 pairs (under 100,000,000 bytes) all or nothing.

        items are dicts in wrangler's bulk format ({key, value, expiration?,
        expiration_ttl?, metadata?, base64?}) or BulkPair objects.  Every item
        is validated before anything is written; the batch lands whole or not
        at all, also if the process dies in the middle.

        Raises:
            KVError: 400 more than 10,000 pairs, 413 100,000,000 bytes or more;
                an item's error is the one put would raise for it, with
                ``.index`` set to the item's position.
        """
        ns = self._current()
        pairs = list(items)
        if len(pairs) > v.MAX_BULK_PAIRS:
            v.fail(
                "PUT",
                400,
                f"Bulk write of {len(pairs)} pairs exceeds the limit of {v.MAX_BULK_PAIRS}.",
            )
        now = ns._store._clock()
        prefix = ns._writable_prefix("put_many")
        ops: list[BatchOp] = []
        total = 0
        for index, item in enumerate(pairs):
            try:
                op = _bulk_op(item, prefix, now)
            except (ValueError, TypeError, KVError) as exc:
                exc.index = index  # type: ignore[union-attr]
                raise
            total += len(op.key) - len(prefix) + len(op.value or b"") + len(op.meta)
            ops.append(op)
        if total >= v.MAX_BULK_BYTES:
            v.fail(
                "PUT",
                413,
                f"Bulk write of {total} bytes exceeds the limit of {v.MAX_BULK_BYTES}.",
            )
        ns._write_batch(ops, "PUT")

    def delete_many(self, keys: Iterable[str | dict[str, Any] | KeyInfo]) -> None:
        """Deletes up to 10,000 keys all or nothing; missing keys are not an error.

        Keys are given as wrangler's bulk delete file gives them: names, or
        ``{"name": ...}`` objects, so the keys of a list() page can be fed back.
        """
        ns = self._current()
        if isinstance(keys, str):
            raise TypeError("delete_many takes an iterable of keys, not a str")
        names = list(keys)
        if len(names) > v.MAX_BULK_DELETE_KEYS:
            v.fail(
                "DELETE",
                400,
                f"You can delete maximum of {v.MAX_BULK_DELETE_KEYS} keys per request",
            )
        prefix = ns._writable_prefix("delete_many")
        full = []
        for index, key in enumerate(names):
            try:
                full.append(prefix + v.key_bytes(_bulk_delete_name(key), "DELETE"))
            except (ValueError, TypeError, KVError) as exc:
                exc.index = index  # type: ignore[union-attr]
                raise
        ns._write_batch([BatchOp(k) for k in full], "DELETE")

    def _admit(self, keys: tuple[bytes, ...] | list[bytes], op: str) -> float | None:
        """Records a write of keys with the rate limiter (if on); the time it was recorded at."""
        if self._limiter is None:
            return None
        now = self._store._clock()
        self._limiter.admit(keys, now, op)
        return now

    def _release(self, keys: tuple[bytes, ...] | list[bytes], admitted_at: float | None) -> None:
        """A write that did not happen (refused, failed stream, I/O error) is no write."""
        if self._limiter is not None and admitted_at is not None:
            self._limiter.release(keys, admitted_at)

    def _write_batch(self, ops: list[BatchOp], op: str) -> None:
        keys = [o.key for o in ops]
        admitted_at = self._admit(keys, op)
        try:
            self._log.write_batch(ops)
        except BaseException:
            self._release(keys, admitted_at)
            raise

    def _writable_prefix(self, what: str) -> bytes:
        if self._id is None:
            raise ReadOnlyError(f"{what}: store is open read-only")
        return self._prefix

    # -- reads -------------------------------------------------------------------
    def get(self, key: str, type: str = "text", *, cache_ttl: int | None = None) -> Any:
        """The value of key as type ("text", "json", "bytes"/"arrayBuffer", "stream"), or None.

        Raises:
            ValueError: unknown type (also for a missing key), empty, "." or ".." key.
            KVError: 414 key too long; 400 cache_ttl below 30.
            json.JSONDecodeError: type="json" and the value is not JSON.
            CorruptionError: the stored record failed its checksum.
        """
        hot = self._hot_get
        if hot is not None and cache_ttl is None:
            got = hot_get(hot, key, type)
            if got is not HOT_SLOW:
                if got is HOT_FAILED:
                    self._log.get_failed()
                return got
        return self._read(key, type, cache_ttl, False)

    def get_with_metadata(
        self,
        key: str,
        type: str = "text",
        *,
        cache_ttl: int | None = None,
    ) -> ValueWithMetadata:
        """The value and metadata of key; ValueWithMetadata(None, None) when it is missing."""
        result: ValueWithMetadata = self._read(key, type, cache_ttl, True)
        return result

    def _read(self, key: str, kind: str, cache_ttl: Any, with_meta: bool) -> Any:
        if kind not in v.GET_TYPES:
            raise ValueError(v.UNKNOWN_TYPE)
        ns = self._current()
        k = ns._prefix + v.key_bytes(key, "GET")
        if cache_ttl is not None:
            v.cache_ttl(cache_ttl, "GET")
        if ns._id is None:
            return ValueWithMetadata(None, None) if with_meta else None
        now = ns._store._clock()
        if kind == "stream":
            found = ns._log.open_value(k, now)
            if found is None:
                return ValueWithMetadata(None, None) if with_meta else None
            stream, meta, _ = found
            return ValueWithMetadata(stream, decode_metadata(meta)) if with_meta else stream
        record = ns._log.get(k, now)
        if record is None:
            return ValueWithMetadata(None, None) if with_meta else None
        value = decode(record.value, kind)
        return ValueWithMetadata(value, decode_metadata(record.meta)) if with_meta else value

    def get_many(
        self,
        keys: Iterable[str],
        type: str = "text",
        *,
        with_metadata: bool = False,
        cache_ttl: int | None = None,
    ) -> dict[str, Any]:
        """Reads 1..100 keys at once; every requested key is in the result (missing: None).

        With with_metadata, present keys map to ValueWithMetadata(value, metadata).

        Raises:
            KVError: ``KV GET_BULK failed: ...`` for a bad type, key count, key,
                cache_ttl, a non-JSON value under type="json", or values over 25 MiB.
        """
        if isinstance(keys, str):
            raise TypeError("get_many takes an iterable of keys, not a str")
        names = list(keys)
        if type not in v.GET_MANY_TYPES:
            v.fail("GET_BULK", 400, f'"{type}" is not a valid type. Use "json" or "text"')
        if len(names) > v.MAX_GET_MANY_KEYS:
            v.fail("GET_BULK", 400, f"You can request a maximum of {v.MAX_GET_MANY_KEYS} keys")
        if not names:
            v.fail("GET_BULK", 400, "You must request a minimum of 1 key")
        ns = self._current()
        raw_keys = [ns._prefix + v.bulk_key_bytes(name) for name in names]
        if cache_ttl is not None:
            v.cache_ttl(cache_ttl, "GET_BULK")
        now = ns._store._clock()
        out: dict[str, Any] = {}
        total = 0
        log = ns._log
        for name, k in zip(names, raw_keys, strict=True):
            meta = None
            if ns._id is None:
                raw = None
            elif with_metadata:
                record = log.get(k, now)
                raw, meta = (None, None) if record is None else (record.value, record.meta)
            else:
                raw = log.get_value(k, now)  # no Record, no metadata copy
            if raw is None:
                out[name] = None
                continue
            total += len(raw)
            if total > v.MAX_GET_MANY_BYTES:
                v.fail("GET_BULK", 413, "Total size of request exceeds the limit of 25MB")
            try:
                value = decode(raw, type)
            except ValueError:
                v.fail(
                    "GET_BULK",
                    400,
                    "At least one of the requested keys corresponds to a non-json value",
                )
            out[name] = ValueWithMetadata(value, decode_metadata(meta)) if with_metadata else value
        return out

    def list(
        self,
        prefix: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> ListResult:
        """Up to limit (default and maximum 1000) unexpired keys in UTF-8 byte order.

        prefix is a literal, case-sensitive prefix.  cursor continues strictly
        after the last key of the page it came from; None or "" starts at the
        beginning.  The result's cursor is None exactly when list_complete.

        Raises:
            KVError: 400 limit above 1000 or a malformed cursor; 414 prefix over 512 bytes.
        """
        ns = self._current()
        p = v.list_prefix(prefix)
        n = v.list_limit(limit)
        after = _decode_cursor(cursor)
        if ns._id is None:
            return ListResult([], True, None)
        full = ns._prefix + p
        start = ns._prefix + after if after else b""
        hot = ns._hot_get
        if hot is not None:
            got = hot_list(hot, full, start, n, KeyInfo)
            if type(got) is tuple:
                keys, more, has_meta = got
                if has_meta:
                    loads = json.loads
                    for key in keys:
                        if key.metadata is not None:
                            key.metadata = loads(key.metadata)
                if more and keys:
                    return ListResult(keys, False, _encode_cursor(keys[-1].name.encode()))
                return ListResult(keys, True, None)
            if isinstance(got, int):  # else HOT_SLOW: the general path below decides
                ns._log.list_failed(got)
        plen = len(ns._prefix)
        names, exps, metas, more = ns._log.list_names(full, start, ns._clock(), n, True, plen)
        expirations = None if exps is None else [exp or None for exp in exps]
        metadata = None
        if metas is not None:
            loads = json.loads
            metadata = [None if meta is None else loads(meta) for meta in metas]
        keys = key_infos(names, expirations, metadata)
        if more and keys:
            return ListResult(keys, False, _encode_cursor(names[-1].encode()))
        return ListResult(keys, True, None)


def _bulk_op(item: dict[str, Any] | BulkPair, prefix: bytes, now: float) -> BatchOp:
    """Validates one put_many item and turns it into a batch operation."""
    if isinstance(item, BulkPair):
        fields = {
            "key": item.key,
            "value": item.value,
            "expiration": item.expiration,
            "expiration_ttl": item.expiration_ttl,
            "metadata": item.metadata,
            "base64": item.base64,
        }
    elif isinstance(item, dict):
        fields = item
    else:
        raise TypeError(f"a bulk item must be a dict or a BulkPair, not {type(item).__name__}")
    if "key" not in fields or "value" not in fields:
        raise TypeError("a bulk item needs a 'key' and a 'value'")
    key = v.key_bytes(fields["key"], "PUT")
    value = fields["value"]
    if fields.get("base64"):
        if not isinstance(value, str | bytes):
            raise TypeError("a base64 value must be a str")
        try:
            data: bytes | memoryview = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            v.fail("PUT", 400, f"Could not base64 decode value for key {fields['key']!r}.")
    else:
        buf = as_buffer(value)
        if buf is None:
            raise TypeError("a bulk value must be a str or bytes-like, not a stream")
        data = buf
    exp = v.expiration_at(fields.get("expiration"), fields.get("expiration_ttl"), now)
    meta = v.metadata_bytes(fields.get("metadata"))
    if len(data) > v.MAX_VALUE_BYTES:
        v.value_too_large(len(data))
    return BatchOp(prefix + key, bytes(data) if isinstance(data, memoryview) else data, meta, exp)


def _bulk_delete_name(key: Any) -> Any:
    """The name of one delete_many item: a str, a {"name": ...} dict or a KeyInfo."""
    if isinstance(key, KeyInfo):
        return key.name
    if isinstance(key, dict):
        if "name" not in key:
            raise TypeError("a bulk delete item must be a key or a dict with a 'name'")
        return key["name"]
    return key


def _encode_cursor(last_key: bytes) -> str:
    return base64.urlsafe_b64encode(last_key).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> bytes:
    if cursor is None or cursor == "":
        return b""
    if not isinstance(cursor, str):
        raise TypeError(f"cursor must be a str, not {type(cursor).__name__}")
    try:
        after = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        v.fail("GET", 400, "Invalid cursor.")
    if not after or len(after) > v.MAX_KEY_BYTES:
        v.fail("GET", 400, "Invalid cursor.")
    return after


__all__ = ["DEFAULT_NAMESPACE", "Namespace", "Store", "open"]
