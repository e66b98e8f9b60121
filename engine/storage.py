"""The bytes-level log store: a thin, thread-safe Python face of the C handle.

Keys, metadata and values are bytes here; this layer knows nothing of Workers
KV.  It adds what does not belong in C: the background maintenance thread (the
``"interval"`` sync mode, writing the hint files of sealed segments, and the
compaction policy of ``auto_compact``), the driving of a compaction pass in
slices (progress, stopping at close), spooling of streamed values of unknown
length, and conversion of results to Python objects.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import os
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import add
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, NoReturn

from engine._ffi import check, ffi, hotpath, lib, raise_error
from engine.compaction import CompactionPolicy, choose_segments
from engine.errors import LimitError, StoreClosedError
from engine.rawbytes import new_bytes

if TYPE_CHECKING:
    from engine.results import CompactionReport

SYNC_MODES = {"os": lib.KV_SYNC_OS, "interval": lib.KV_SYNC_OS, "always": lib.KV_SYNC_ALWAYS}
DEFAULT_MAX_SEGMENT_BYTES = 256 * 1024 * 1024
# Memory for recently read small records, so a hot key's get makes no system
# call: about 100,000 records of 100-byte values.  LevelDB's block cache is
# 8 MiB by default, RocksDB's 32 MiB.
DEFAULT_READ_CACHE_BYTES = 32 * 1024 * 1024
_LOG = logging.getLogger("engine")
SPOOL_IN_MEMORY = 1 << 20  # streamed values up to this size never touch a spool file
_COMPACT_SLICE = 8 << 20  # input bytes per C call of a compaction pass (one progress report)
_DROP_REASONS = {
    "overwritten": lib.KV_DROP_OVERWRITTEN,
    "deleted": lib.KV_DROP_DELETED,
    "expired": lib.KV_DROP_EXPIRED,
    "tombstone": lib.KV_DROP_TOMBSTONE,
}
_ENOTFOUND = lib.KV_ENOTFOUND  # a module constant: read on every miss
# The plain get's C entry points, bound once: a module global is cheaper than lib.x.
_get_tl = lib.kv_get_tl
_get_tl_data = lib.kv_get_tl_data
_unpack = ffi.unpack
_GET_MISSING = lib.KV_GET_MISSING
_GET_LARGE = lib.KV_GET_LARGE
_GET_FAILED = lib.KV_GET_FAILED
_NOW_SYSTEM = lib.KV_NOW_SYSTEM
_MIN_READ_CACHE = lib.KV_MIN_READ_CACHE_BYTES
# One-call put, delete, get and list page for the layer above
# (csrc/py_hotpath.c): see LogStore.hot_handle.
hot_put = hotpath.put
hot_delete = hotpath.delete
hot_get = hotpath.get
hot_list = hotpath.list
HOT_SLOW = hotpath.SLOW
HOT_FAILED = hotpath.FAILED


class Record(NamedTuple):
    """A stored value with its metadata bytes (None when absent) and expiration (0 = never).

    A named tuple: one is made per read, and a frozen dataclass costs 1 us more.
    """

    value: bytes
    meta: bytes | None
    expiration: int


class ListedKey(NamedTuple):
    """One listed key: its bytes, expiration (0 = never) and metadata bytes (None when absent)."""

    key: bytes
    expiration: int
    meta: bytes | None


@dataclass(frozen=True, slots=True)
class Damage:
    """A damaged place found at open: segment file, byte offset, length and kind."""

    path: str
    offset: int
    length: int
    kind: str


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    id: int
    path: str
    size: int
    live_bytes: int
    live_records: int
    expired_bytes: int
    tombstone_bytes: int
    dead_bytes: int
    compacted: bool
    active: bool
    min_seq: int = 0
    damaged: bool = False
    hinted: bool = False


@dataclass(frozen=True, slots=True)
class BatchOp:
    """One operation of an atomic batch: a put when value is not None, else a delete."""

    key: bytes
    value: bytes | None = None
    meta: bytes = b""
    expiration: int = 0


_DAMAGE_KINDS = {
    lib.KV_DAMAGE_RECORD: "damaged record",
    lib.KV_DAMAGE_REGION: "damaged region",
    lib.KV_DAMAGE_TAIL: "torn tail cut off",
    lib.KV_DAMAGE_HEADER: "bad segment header",
    lib.KV_DAMAGE_BATCH: "uncommitted batch dropped",
    lib.KV_DAMAGE_SEALED_TAIL: "invalid bytes at end of sealed segment",
    lib.KV_DAMAGE_MANIFEST: "invalid compaction manifest ignored",
}


# kv_list_item of csrc/kv.h: expiration, seg_id, offset, key_off, klen, meta_off, mlen,
# status, reserved
_LIST_ITEM = struct.Struct("<QQQIIIIiI")
assert _LIST_ITEM.size == ffi.sizeof("kv_list_item")
# The same fields as 32-bit word indexes, to cut one column out of the array at C speed.
_WORDS = _LIST_ITEM.size // 4
_W_KEY_OFF, _W_KLEN, _W_META_OFF, _W_MLEN = 6, 7, 8, 9
_LIST_EXPIRING, _LIST_META, _LIST_BAD = lib.KV_LIST_EXPIRING, lib.KV_LIST_META, lib.KV_LIST_BAD
# kv_list writes every field of the items it returns: zeroing the array first is waste.
_new_uncleared = ffi.new_allocator(should_clear_after_alloc=False)


def _split_keys(region: bytes, sep: bytes, count: int) -> builtins.list[str] | None:
    """The `count` keys laid back to back in region, each starting with sep, with
    sep cut off and decoded from UTF-8; None when splitting at sep cannot be
    trusted, and the keys must be cut out by their offsets.

    One split makes every string at C speed.  It finds the key starts exactly
    when sep cannot overlap itself (no proper prefix of sep is also its suffix):
    then its occurrences are disjoint, split finds all of them, the key starts
    are among them, and count + 1 pieces mean there is no other.
    """
    if any(sep[:i] == sep[-i:] for i in range(1, len(sep))):
        return None
    parts: builtins.list[str]
    if region.isascii():
        parts = region.decode("ascii").split(sep.decode("ascii"))
    elif sep.isascii():
        # An ASCII byte is never inside a UTF-8 sequence, so the keys' boundaries
        # are character boundaries and one decode serves them all.
        parts = region.decode().split(sep.decode())
    else:
        pieces = region.split(sep)
        if len(pieces) != count + 1:
            return None
        parts = builtins.list(map(bytes.decode, pieces))
    if len(parts) != count + 1:
        return None
    del parts[0]  # the empty piece before the first key
    return parts


def _slice_keys(blob: bytes, words: memoryview, strip: int, text: bool) -> builtins.list[Any]:
    """The keys cut out of blob at the offsets of the item array's words, each
    without its first `strip` bytes; decoded from UTF-8 when text."""
    key_offs = words[_W_KEY_OFF::_WORDS].tolist()
    key_lens = words[_W_KLEN::_WORDS].tolist()
    # A comprehension slices in fewer instructions than map(slice ...) here.
    if text and blob.isascii():
        # Byte offsets are character offsets: one decode for the whole page.
        chars = blob.decode("ascii")
        return [chars[ko + strip : ko + kl] for ko, kl in zip(key_offs, key_lens, strict=True)]
    keys = [blob[ko + strip : ko + kl] for ko, kl in zip(key_offs, key_lens, strict=True)]
    return builtins.list(map(bytes.decode, keys)) if text else keys


class _ThreadBuffers(threading.local):
    """Per-thread scratch the C core reads into (a kv_buf is single-threaded)."""

    def __init__(self) -> None:
        self.buf = ffi.gc(ffi.new("kv_buf *"), lib.kv_buf_free)
        self.value = ffi.new("kv_value *")


class ValueStream(io.RawIOBase):
    """A binary file object over one verified value, read lazily from its segment.

    It holds its own descriptor of the segment, so it stays readable if the
    segment is compacted away meanwhile.
    """

    def __init__(self, fd: int, offset: int, length: int) -> None:
        super().__init__()
        self._fd = fd
        self._start = offset
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._length

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        n = min(len(view), self._length - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [view[:n]], self._start + self._pos)
        self._pos += got
        return got

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()


class LogStore:
    """An open store directory: a log of segments and the index over it."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: str = "os",
        readonly: bool = False,
        max_segment_bytes: int = DEFAULT_MAX_SEGMENT_BYTES,
        auto_compact: bool = False,
        clock: Callable[[], float] | None = None,
        compaction_policy: CompactionPolicy | None = None,
        read_cache_bytes: int = DEFAULT_READ_CACHE_BYTES,
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {sorted(SYNC_MODES)}, not {sync!r}")
        if read_cache_bytes.__class__ is not int:
            raise TypeError(f"read_cache_bytes must be an int, not {read_cache_bytes!r}")
        if not (read_cache_bytes == 0 or _MIN_READ_CACHE <= read_cache_bytes < 1 << 63):
            raise ValueError(
                f"read_cache_bytes must be 0 (no cache) or at least {_MIN_READ_CACHE},"
                f" not {read_cache_bytes}"
            )
        self.path = os.fspath(path)
        self.readonly = readonly
        self.sync_mode = sync
        self.auto_compact = auto_compact and not readonly
        self.clock = clock if clock is not None else time.time
        # With time.time as its clock a read lets the C core read that clock.
        self._read_now: int | None = _NOW_SYSTEM if self.clock is time.time else None
        self.compaction_policy = compaction_policy or CompactionPolicy()
        opts = ffi.new("kv_options *")
        opts.max_segment_bytes = max_segment_bytes
        opts.sync_mode = SYNC_MODES[sync]
        opts.readonly = int(readonly)
        opts.read_cache_bytes = read_cache_bytes
        out = ffi.new("kv_db **")
        check(lib.kv_open(os.fsencode(self.path), opts, out), "open", self.path)
        self._db = ffi.gc(out[0], lib.kv_free)
        self._tls = _ThreadBuffers()
        self._closed = False
        for damage in self.damage():  # also in stats(); a log line makes it seen
            _LOG.warning(
                "%s: %s at offset %d (%d bytes)",
                damage.path, damage.kind, damage.offset, damage.length,
            )  # fmt: skip
        self._stop = threading.Event()
        # One compaction at a time, and close() waits for the one running.
        self._compact_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        if not readonly:
            self._worker = threading.Thread(
                target=self._maintain, name="kvengine-maintenance", daemon=True
            )
            self._worker.start()

    # -- lifecycle ---------------------------------------------------------------
    def _maintain(self) -> None:
        """Background duties of a writer: sync once a second ("interval" mode); within a
        second of a rollover, make the sealed segment durable and write its hint (so a
        crash costs the next open no scan of it); with ``auto_compact``, run the
        compaction policy every ``policy.interval`` seconds.
        """
        policy = self.compaction_policy
        next_look = time.monotonic() + policy.interval
        while not self._stop.wait(min(1.0, policy.interval)):
            if self.sync_mode == "interval" and lib.kv_sync(self._db) != 0:
                return  # the error surfaces on the next write or close
            # A hint that could not be written is no loss: its segment is scanned at open.
            lib.kv_hint_flush(self._db)
            if self.auto_compact and time.monotonic() >= next_look:
                next_look = time.monotonic() + policy.interval
                try:
                    self.compact(self.clock(), "auto")
                except StoreClosedError:
                    return
                except Exception:
                    # A failed pass must not end the thread.  A fatal error surfaces on
                    # the next write; damage found in an input is in damage(), and that
                    # segment is not chosen again.
                    continue

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
        with self._compact_lock:  # a compaction in another thread stops at its next slice
            check(lib.kv_close(self._db), "close", self.path)

    @property
    def closed(self) -> bool:
        return self._closed

    def sync(self) -> None:
        check(lib.kv_sync(self._db), "sync", self.path)

    def _segment_path(self, seg_id: int) -> str:
        return os.path.join(self.path, f"{seg_id:016x}.seg")

    # -- writes ------------------------------------------------------------------
    def put(self, key: bytes, value: Any, meta: bytes = b"", expiration: int = 0) -> None:
        """value: bytes, or any object exporting a contiguous buffer."""
        if not isinstance(value, bytes):
            value = ffi.from_buffer("char[]", value)
        rc = lib.kv_put(self._db, key, len(key), meta, len(meta), value, len(value), expiration)
        if rc:
            raise_error(rc, "put", self.path)

    def hot_handle(self, prefix: bytes, max_key: int, max_value: int) -> Any:
        """A handle for hot_put, hot_delete, hot_get and hot_list on keys under prefix.

        hot_put, hot_delete and hot_get take only the plain case: a str key of
        1..max_key UTF-8 bytes other than "." and "..", a bytes or str value of
        at most max_value bytes, no metadata or expiration.  For anything else
        they answer HOT_SLOW, and the caller takes its general path.  hot_put
        answers None when the value was written, or the core's return code, for
        put_failed; hot_delete likewise, for delete_failed; hot_get answers
        HOT_FAILED when the read failed, for get_failed.
        hot_list(handle, full_prefix, full_after, limit, cls) answers (objects,
        more, has_meta), with each key's metadata as raw bytes, or a return
        code for list_failed, or HOT_SLOW (a damaged record or a key that is
        not UTF-8: list_names raises for it).
        """
        clock = None if self.clock is time.time else self.clock
        address = int(ffi.cast("uintptr_t", self._db))
        return hotpath.Handle(self._db, address, prefix, clock, max_key, max_value)

    def get_failed(self) -> NoReturn:
        """Raises the error of this thread's last read, which hot_get answered HOT_FAILED."""
        self._raise_read_error(lib.kv_get_tl_rc(), lib.kv_get_tl_value())

    def put_failed(self, rc: int) -> NoReturn:
        """Raises the error of a put that the core refused with rc."""
        raise_error(rc, "put", self.path)

    def delete_failed(self, rc: int) -> NoReturn:
        """Raises the error of a delete that the core refused with rc."""
        raise_error(rc, "delete", self.path)

    def list_failed(self, rc: int) -> NoReturn:
        """Raises the error of a listing that the core refused with rc."""
        raise_error(rc, "list", self.path)

    def put_stream(
        self,
        key: bytes,
        chunks: Iterable[bytes],
        meta: bytes = b"",
        expiration: int = 0,
        limit: int | None = None,
    ) -> int:
        """Stores a value that arrives in chunks, holding at most ~1 MiB in memory.

        Returns the value's length.  Past `limit` bytes it raises LimitError with
        the length counted so far and writes nothing.
        """
        if self.readonly:  # refused before a spool file is made in a directory not ours to write
            raise_error(lib.KV_EREADONLY, "put", self.path)
        held: list[bytes] = []
        size = 0
        spool: tempfile._TemporaryFileWrapper[bytes] | None = None
        try:
            for chunk in chunks:
                size += len(chunk)
                if limit is not None and size > limit:
                    raise StreamTooLarge(size)
                if spool is None:
                    held.append(bytes(chunk))
                    if size > SPOOL_IN_MEMORY:
                        spool = self._new_spool()
                        spool.writelines(held)
                        held = []
                else:
                    spool.write(chunk)
            if spool is None:
                self.put(key, b"".join(held), meta, expiration)
                return size
            spool.flush()
            rc = lib.kv_put_fd(
                self._db, key, len(key), meta, len(meta), spool.fileno(), size, expiration
            )
            if rc:
                raise_error(rc, "put", self.path)
            return size
        finally:
            if spool is not None:
                spool.close()

    def _new_spool(self) -> tempfile._TemporaryFileWrapper[bytes]:
        # In the store directory: same file system (no cross-device copy), mode
        # 0600, and removed by the next open if this process dies.
        return tempfile.NamedTemporaryFile(dir=self.path, prefix="spool-", suffix=".tmp")

    def delete(self, key: bytes) -> bool:
        existed = ffi.new("int *")
        check(lib.kv_delete(self._db, key, len(key), existed), "delete", self.path)
        return bool(existed[0])

    def write_batch(self, ops: list[BatchOp]) -> None:
        """Applies all ops or none, also across a crash."""
        if not ops:
            return
        arr = ffi.new("kv_op[]", len(ops))
        keep: list[Any] = []  # the cdata that arr points into must outlive the call
        for i, op in enumerate(ops):
            item = arr[i]
            item.key = key = ffi.from_buffer("char[]", op.key)
            item.klen = len(op.key)
            keep.append(key)
            if op.value is None:
                item.type = lib.KV_OP_DELETE
                continue
            item.type = lib.KV_OP_PUT
            value = ffi.from_buffer("char[]", op.value)
            meta = ffi.from_buffer("char[]", op.meta)
            keep += (value, meta)
            item.value, item.vlen = value, len(op.value)
            item.meta, item.mlen = meta, len(op.meta)
            item.expiration = op.expiration
        check(lib.kv_write_batch(self._db, arr, len(ops)), "batch write", self.path)

    # -- reads -------------------------------------------------------------------
    def get(self, key: bytes, now: float) -> Record | None:
        """The value of key with its metadata and expiration."""
        while True:
            n = _get_tl(self._db, key, len(key), int(now))
            if n == _GET_MISSING:
                return None
            out = lib.kv_get_tl_value()
            if n == _GET_FAILED:
                self._raise_read_error(lib.kv_get_tl_rc(), out)
            head = _get_tl_data() - out.value_off  # this thread's copy of the record
            meta = _unpack(head + out.meta_off, out.mlen) if out.mlen else None
            if n >= 0:
                return Record(_unpack(head + out.value_off, n), meta, out.expiration)
            seq, expiration = out.seq, out.expiration
            got = self._read_large(key, int(now), out.vlen)
            if got is None:
                return None
            if got[1] == seq:
                return Record(got[0], meta, expiration)
            # Overwritten between the metadata's read and the value's: both again.

    def get_value(self, key: bytes, now: float | None = None) -> bytes | None:
        """The value of key alone (no metadata, no Record): the KV layer's plain get.

        now: seconds since the epoch for expiry; None asks the store's clock."""
        # One crossing into C per hit or miss: the C core reads into this
        # thread's own buffer, so no buffer or out struct is passed or read here.
        if now is None:
            t = self._read_now
            if t is None:
                t = int(self.clock())
        else:
            t = int(now)
        n = _get_tl(self._db, key, len(key), t)
        if n >= 0:
            value: bytes = _unpack(_get_tl_data(), n)
            return value
        if n == _GET_MISSING:
            return None
        if n == _GET_LARGE:
            got = self._read_large(key, t, lib.kv_get_tl_value().vlen)
            return None if got is None else got[0]
        self._raise_read_error(lib.kv_get_tl_rc(), lib.kv_get_tl_value())

    def _read_large(self, key: bytes, now: int, size: int) -> tuple[bytes, int] | None:
        """A large value, read by the C core straight into the bytes object returned,
        with the sequence number of its record; None when the key is gone."""
        out = ffi.new("kv_value *")
        while True:
            if size > 1:
                value, dst = new_bytes(size)
            else:  # overwritten meanwhile by a value of 0 or 1 byte
                value, dst = b"", ffi.new("char[]", 2)
            rc = lib.kv_get_into(self._db, key, len(key), now, dst, size, out)
            if rc == _ENOTFOUND:
                return None
            if rc:
                self._raise_read_error(rc, out)
            if out.vlen == size:
                return (value if size > 1 else _unpack(dst, size)), out.seq
            size = out.vlen  # overwritten since it was sized: again, at its new size

    def open_value(self, key: bytes, now: float) -> tuple[ValueStream, bytes | None, int] | None:
        """A lazily read, already verified stream of key's value, with meta and expiration."""
        tls = self._tls
        out = tls.value
        fd = ffi.new("int *")
        rc = lib.kv_open_value(self._db, key, len(key), int(now), tls.buf, out, fd)
        if rc:
            if rc == lib.KV_ENOTFOUND:
                return None
            self._raise_read_error(rc, out)
        meta = ffi.buffer(tls.buf.data + out.meta_off, out.mlen)[:] if out.mlen else None
        return ValueStream(fd[0], out.value_off, out.vlen), meta, out.expiration

    def _raise_read_error(self, rc: int, out: Any) -> NoReturn:
        if rc == lib.KV_ECORRUPT:
            raise_error(rc, "get", self._segment_path(out.seg_id), out.offset)
        raise_error(rc, "get", self.path)

    def list(
        self, prefix: bytes, after: bytes, now: float, limit: int, with_meta: bool = True
    ) -> tuple[builtins.list[ListedKey], bool]:
        """Up to `limit` unexpired keys starting with prefix, in byte order, after `after`.

        Returns the keys and whether more follow.
        """
        keys, exps, metas, more = self._list_columns(prefix, after, now, limit, with_meta, 0, False)
        listed = map(ListedKey, keys, exps or [0] * len(keys), metas or [None] * len(keys))
        return builtins.list(listed), more

    def list_names(
        self,
        prefix: bytes,
        after: bytes,
        now: float,
        limit: int,
        with_meta: bool = True,
        strip: int = 0,
    ) -> tuple[
        builtins.list[str], builtins.list[int] | None, builtins.list[bytes | None] | None, bool
    ]:
        """The KV layer's listing path, column by column: the keys (each without
        its first `strip` bytes, decoded from UTF-8: UnicodeDecodeError if one is
        not), their expirations (0 = never; None instead of the list when no key
        has one), their metadata (None instead of the list when no key has any)
        and whether more follow.
        """
        return self._list_columns(prefix, after, now, limit, with_meta, strip, True)

    def _list_columns(
        self,
        prefix: bytes,
        after: bytes,
        now: float,
        limit: int,
        with_meta: bool,
        strip: int,
        text: bool,
    ) -> tuple[
        builtins.list[Any], builtins.list[int] | None, builtins.list[bytes | None] | None, bool
    ]:
        # Columns are cut out of the C item array by memoryview slicing; the
        # ones the C core reports all zero are not looked at.
        tls = self._tls
        items = _new_uncleared("kv_list_item[]", max(limit, 1))
        n = ffi.new("uint32_t *")
        more = ffi.new("int *")
        found = ffi.new("uint32_t *")
        rc = lib.kv_list(
            self._db, prefix, len(prefix), after, len(after), int(now), limit,
            int(with_meta), tls.buf, items, n, more, found,
        )  # fmt: skip
        check(rc, "list", self.path)
        count = n[0]
        if count == 0:
            return [], None, None, bool(more[0])
        flags = found[0]
        raw = memoryview(ffi.buffer(items, count * _LIST_ITEM.size))
        words = raw.cast("I")
        if flags & _LIST_BAD:
            for _, seg_id, offset, *_, status, _ in _LIST_ITEM.iter_unpack(raw):
                if status:
                    raise_error(status, "list", self._segment_path(seg_id), offset)
        last = (count - 1) * _WORDS
        keys_end = words[last + _W_KEY_OFF] + words[last + _W_KLEN]
        meta_offs = meta_lens = None
        end = keys_end
        if flags & _LIST_META:
            meta_offs = words[_W_META_OFF::_WORDS].tolist()
            meta_lens = words[_W_MLEN::_WORDS].tolist()
            end = max(end, max(map(add, meta_offs, meta_lens)))
        blob = ffi.buffer(tls.buf.data, end)[:]
        keys: builtins.list[Any] | None = None
        if text and 0 < strip <= len(prefix):
            keys = _split_keys(blob if end == keys_end else blob[:keys_end], prefix[:strip], count)
        if keys is None:
            keys = _slice_keys(blob, words, strip, text)
        exps = None
        if flags & _LIST_EXPIRING:
            exps = raw.cast("Q")[0 :: _LIST_ITEM.size // 8].tolist()
        metas = None
        if meta_offs is not None and meta_lens is not None:
            metas = [
                blob[mo : mo + ml] if ml else None
                for mo, ml in zip(meta_offs, meta_lens, strict=True)
            ]
        return keys, exps, metas, bool(more[0])

    def iter_keys(self, prefix: bytes, now: float, page: int = 1000) -> Iterator[ListedKey]:
        after = b""
        after_empty_key = False
        while True:
            # An empty `after` means "from the start", so a page ending at the empty
            # key (the smallest there is) is followed by one that starts with it again.
            keys, more = self.list(prefix, after, now, page + after_empty_key)
            if after_empty_key and keys and keys[0].key == b"":
                keys = keys[1:]
            yield from keys
            if not more or not keys:
                return
            after = keys[-1].key
            after_empty_key = after == b""

    def count_prefix(self, prefix: bytes, now: float) -> tuple[int, int]:
        """(unexpired keys with prefix, their record bytes)."""
        keys = ffi.new("uint64_t *")
        nbytes = ffi.new("uint64_t *")
        rc = lib.kv_count_prefix(self._db, prefix, len(prefix), int(now), keys, nbytes)
        check(rc, "count", self.path)
        return int(keys[0]), int(nbytes[0])

    # -- inspection --------------------------------------------------------------
    def stats(self, now: float) -> dict[str, int]:
        out = ffi.new("kv_stats *")
        check(lib.kv_stats_get(self._db, int(now), out), "stats", self.path)
        return {name: int(getattr(out, name)) for name in dir(out)}

    def segments(self, now: float) -> builtins.list[SegmentInfo]:
        n = ffi.new("uint32_t *")
        check(lib.kv_segments(self._db, int(now), ffi.NULL, 0, n), "segments", self.path)
        arr = ffi.new("kv_seg_info[]", max(n[0], 1))
        check(lib.kv_segments(self._db, int(now), arr, n[0], n), "segments", self.path)
        return [
            SegmentInfo(
                id=s.id,
                path=self._segment_path(s.id),
                size=s.size,
                live_bytes=s.live_bytes,
                live_records=s.live_records,
                expired_bytes=s.expired_bytes,
                tombstone_bytes=s.tombstone_bytes,
                dead_bytes=s.dead_bytes,
                compacted=bool(s.flags & 1),
                active=bool(s.active),
                min_seq=s.min_seq,
                damaged=bool(s.damaged),
                hinted=bool(s.hinted),
            )
            for s in (arr[i] for i in range(min(n[0], len(arr))))
        ]

    # -- compaction --------------------------------------------------------------
    def compact(
        self,
        now: float,
        segments: Literal["all", "auto"] | builtins.list[int] = "all",
        *,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> CompactionReport:
        """Rewrites sealed segments without their overwritten, deleted and expired records.

        segments: "all" seals the active segment and compacts every undamaged segment
            (a full pass: afterwards no tombstone is left that nothing needs); "auto"
            takes the policy's choice (``compaction_policy``); or a list of segment ids.
        now: expiry is judged at this time (seconds since the epoch).
        dry_run: decide and count exactly as a real pass would, writing nothing.
        progress: called as progress(done_bytes, total_bytes) from this thread as the
            input is read.

        Reads and writes carry on meanwhile; a write racing the pass wins.  Raises
        CorruptionError when an input turns out damaged (it is then left alone and
        reported by damage()), BusyError when another compaction runs.
        """
        from engine.results import CompactionReport

        started = time.perf_counter()
        with self._compact_lock:
            if self._closed:
                raise StoreClosedError("compact: store is closed")
            flags = lib.KV_COMPACT_DRY_RUN if dry_run else 0
            if segments == "all":
                ids: builtins.list[int] = []
                flags |= lib.KV_COMPACT_SEAL_ACTIVE
            elif segments == "auto":
                policy = self.compaction_policy
                ids = choose_segments(self.segments(now - policy.expiry_grace), policy)
            else:
                ids = [int(i) for i in segments]
            before = self._disk_bytes()
            if segments != "all" and not ids:
                report = ffi.new("kv_compact_report *")
            else:
                report = self._run_compaction(now, ids, flags, progress)
            after = before - report.bytes_in + report.bytes_out
            if not dry_run:
                after = self._disk_bytes()
        return CompactionReport(
            segments_in=int(report.segments_in),
            segments_out=int(report.segments_out),
            bytes_before=before,
            bytes_after=after,
            bytes_read=int(report.bytes_read),
            bytes_written=int(report.bytes_written),
            records_dropped={k: int(report.dropped_records[v]) for k, v in _DROP_REASONS.items()},
            bytes_dropped={k: int(report.dropped_bytes[v]) for k, v in _DROP_REASONS.items()},
            seconds=time.perf_counter() - started,
            dry_run=dry_run,
            expire_tombstones=int(report.expire_tombstones),
            raced=int(report.raced),
        )

    def _run_compaction(
        self,
        now: float,
        ids: builtins.list[int],
        flags: int,
        progress: Callable[[int, int], None] | None,
    ) -> Any:
        """Drives one pass slice by slice (each C call releases the GIL). Caller holds
        _compact_lock."""
        ctx = ffi.new("kv_compact **")
        arr = ffi.new("uint64_t[]", ids) if ids else ffi.NULL
        check(lib.kv_compact_begin(self._db, int(now), arr, len(ids), flags, ctx), "compact")
        c = ctx[0]
        report = ffi.new("kv_compact_report *")
        finished = ffi.new("int *")
        try:
            while not finished[0]:
                if self._stop.is_set() and self._closed:
                    raise StoreClosedError("compact: store is closing")
                rc = lib.kv_compact_step(c, _COMPACT_SLICE, finished)
                if rc:
                    self._raise_compaction_error(rc)
                if progress is not None:
                    lib.kv_compact_progress(c, report)
                    progress(int(report.bytes_read), int(report.bytes_total))
            rc = lib.kv_compact_finish(c, report)
            if rc:
                self._raise_compaction_error(rc)
            return report
        finally:
            lib.kv_compact_free(c)

    def _raise_compaction_error(self, rc: int) -> None:
        if rc == lib.KV_ECORRUPT:
            found = [d for d in self.damage() if d.kind in ("damaged record", "damaged region")]
            where = found[-1] if found else None
            raise_error(
                rc, "compact", where.path if where else self.path, where.offset if where else None
            )
        raise_error(rc, "compact", self.path)

    def _disk_bytes(self) -> int:
        """Bytes of the segment files, from the directory: no index walk, no lock."""
        total = 0
        with os.scandir(self.path) as entries:
            for entry in entries:
                if entry.name.endswith(".seg"):
                    with contextlib.suppress(FileNotFoundError):
                        total += entry.stat().st_size
        return total

    def flush_hints(self) -> None:
        """Writes the hint files of segments sealed since the last flush (the
        maintenance thread and close do this on their own)."""
        check(lib.kv_hint_flush(self._db), "write hints", self.path)

    def damage(self) -> builtins.list[Damage]:
        out = ffi.new("kv_damage *")
        result = []
        for i in range(lib.kv_damage_count(self._db)):
            if lib.kv_damage_get(self._db, i, out) == 0:
                result.append(
                    Damage(
                        path=self._segment_path(out.seg_id),
                        offset=out.offset,
                        length=out.length,
                        kind=_DAMAGE_KINDS.get(out.kind, "damage"),
                    )
                )
        return result


def check_hint(store_dir: str, seg_id: int) -> None:
    """Checks the hint file of segment ``seg_id`` in ``store_dir`` without opening the store.

    Reads ``<seg_id>.hint`` and its segment's size, and validates the hint whole
    (docs/FORMAT.md section 6: header, whole-file checksum, every entry within
    bounds of the segment, entry count, recorded segment size).  Returns None
    when the hint is valid.  Raises CorruptionError whose ``path`` is the hint
    file and ``offset`` the byte offset in it of the first problem found, and
    EngineIOError (errno ENOENT) when the hint or its segment does not exist.
    Safe to run while a writer has the store open: it only reads.
    """
    path = os.path.join(os.fspath(store_dir), f"{seg_id:016x}.hint")
    bad = ffi.new("uint64_t *")
    rc = lib.kv_hint_check(os.fsencode(os.fspath(store_dir)), seg_id, bad)
    if rc == lib.KV_ECORRUPT:
        raise_error(rc, "check hint", path, int(bad[0]))
    if rc:
        raise_error(rc, "check hint", path)


class StreamTooLarge(LimitError):
    """A streamed value passed its limit; `size` is the length counted so far."""

    def __init__(self, size: int) -> None:
        super().__init__(f"streamed value exceeds the limit ({size} bytes so far)")
        self.size = size


__all__ = [
    "HOT_FAILED",
    "HOT_SLOW",
    "BatchOp",
    "CompactionPolicy",
    "Damage",
    "ListedKey",
    "LogStore",
    "Record",
    "SegmentInfo",
    "StreamTooLarge",
    "ValueStream",
    "check_hint",
    "hot_get",
    "hot_list",
    "hot_put",
]
