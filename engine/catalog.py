"""The namespace catalog: which namespace names exist and the id each one's keys carry.

Every key of namespace ``n`` is stored as ``id(n) ‖ key`` (id: 2 bytes
big-endian), so a namespace is a contiguous range of the ordered index and
listing it never sees another namespace.  Id 0 is the catalog itself
(docs/FORMAT.md section 8):

* ``00 00 ‖ name``     -> value: the namespace's id (2 bytes big-endian);
* ``00 00 00 ‖ id``    -> value empty: namespace ``id`` was deleted and its keys
  are still being removed.  Names never start with a NUL byte, so the two
  kinds cannot collide.

Deleting a namespace first removes its name and writes the marker in one
atomic batch (the namespace is gone at that instant, also across a crash),
then deletes its keys in batches, then the marker.  A writer that opens a store
finishes any deletion a crash interrupted; an id is not reused while its
marker exists, so no old key can ever appear in a new namespace.
"""

from __future__ import annotations

import re
import threading

from engine.errors import EngineError
from engine.storage import BatchOp, LogStore

CATALOG_PREFIX = b"\x00\x00"
_DROPPED_PREFIX = CATALOG_PREFIX + b"\x00"
_MAX_ID = 0xFFFF
_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_\-.]{0,63}")
_DELETE_BATCH = 10_000


def check_name(name: object) -> str:
    """Returns name when it is a valid namespace name.

    Raises:
        TypeError: name is not a str.
        ValueError: name is not 1-64 ASCII letters, digits, "_", "-", "." or starts with ".".
    """
    if not isinstance(name, str):
        raise TypeError(f"namespace name must be a str, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"invalid namespace name {name!r}: use 1 to 64 ASCII letters, digits, '_', '-' "
            "or '.', not starting with '.'"
        )
    return name


def _id_bytes(ns_id: int) -> bytes:
    return ns_id.to_bytes(2, "big")


class Catalog:
    """Namespace names and ids of one open store; safe to share between threads."""

    def __init__(self, log: LogStore) -> None:
        self._log = log
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._dropped: set[int] = set()
        for item in log.iter_keys(CATALOG_PREFIX, now=0):
            if item.key.startswith(_DROPPED_PREFIX) and len(item.key) == 5:
                self._dropped.add(int.from_bytes(item.key[3:], "big"))
                continue
            record = log.get(item.key, now=0)
            if record is None or len(record.value) != 2:
                continue  # not a catalog entry this version wrote; leave it alone
            self._ids[item.key[2:].decode()] = int.from_bytes(record.value, "big")
        if not log.readonly:
            for ns_id in sorted(self._dropped):
                self._purge(ns_id)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._ids)

    def lookup(self, name: str) -> int | None:
        return self._ids.get(name)

    def create(self, name: str) -> int:
        """The id of namespace name, creating the namespace when it does not exist."""
        with self._lock:
            ns_id = self._ids.get(name)
            if ns_id is not None:
                return ns_id
            taken = set(self._ids.values()) | self._dropped
            ns_id = next((i for i in range(1, _MAX_ID + 1) if i not in taken), None)
            if ns_id is None:
                raise EngineError(f"cannot create namespace {name!r}: {_MAX_ID} namespaces exist")
            self._log.put(CATALOG_PREFIX + name.encode(), _id_bytes(ns_id))
            self._ids[name] = ns_id
            return ns_id

    def drop(self, name: str) -> bool:
        """Deletes namespace name and all its keys; False when it did not exist."""
        with self._lock:
            ns_id = self._ids.get(name)
            if ns_id is None:
                return False
            marker = _DROPPED_PREFIX + _id_bytes(ns_id)
            self._log.write_batch([BatchOp(CATALOG_PREFIX + name.encode()), BatchOp(marker, b"")])
            del self._ids[name]
            self._dropped.add(ns_id)
            self._purge(ns_id)
            return True

    def _purge(self, ns_id: int) -> None:
        prefix = _id_bytes(ns_id)
        while True:
            # now=0: expired keys are listed too, so they get their tombstones as well.
            keys, more = self._log.list(prefix, b"", 0, _DELETE_BATCH, with_meta=False)
            if keys:
                self._log.write_batch([BatchOp(k.key) for k in keys])
            if not more:
                break
        self._log.delete(_DROPPED_PREFIX + prefix)
        self._dropped.discard(ns_id)


__all__ = ["CATALOG_PREFIX", "Catalog", "check_name"]
