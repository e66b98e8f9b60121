"""The exception hierarchy of kvengine.

Every error the engine raises on its own account derives from EngineError.
Errors that come from the C core are chosen in one place, engine._ffi.check,
from the ``C_NAME`` each class below declares.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every kvengine error."""

    C_NAME: str | None = None


class KVError(EngineError):
    """What the Workers KV service would answer with an HTTP status.

    ``str(err)`` is Workers KV's own message, e.g.
    ``KV PUT failed: 413 Value length of 26214401 exceeds limit of 26214400.``
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class StoreLockedError(EngineError):
    """Another process holds the store's writer lock."""

    C_NAME = "KV_ELOCKED"


class ReadOnlyError(EngineError):
    """A write was attempted on a store opened with ``readonly=True``."""

    C_NAME = "KV_EREADONLY"


class StoreClosedError(EngineError):
    """The store was closed."""

    C_NAME = "KV_ECLOSED"


class CorruptionError(EngineError):
    """Stored data failed validation; ``path`` and ``offset`` say where."""

    C_NAME = "KV_ECORRUPT"

    def __init__(self, message: str, path: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class FormatVersionError(EngineError):
    """A file was written by a format version this build does not read."""

    C_NAME = "KV_EVERSION"


class StoreFailedError(EngineError):
    """A write or sync failed in a way that leaves the handle unusable; reopen the store."""

    C_NAME = "KV_EFAILED"


class LimitError(EngineError, ValueError):
    """A key, metadata, value or batch exceeds the storage format's limits."""

    C_NAME = "KV_ETOOBIG"


class InvalidArgumentError(EngineError, ValueError):
    """The C core refused an argument."""

    C_NAME = "KV_EINVAL"


class BusyError(EngineError):
    """The operation is already running."""

    C_NAME = "KV_EBUSY"


class OutOfMemoryError(EngineError, MemoryError):
    """The C core could not allocate memory."""

    C_NAME = "KV_ENOMEM"


class NotFoundError(EngineError):
    """The core found no such key.  Internal: the public API reports absence by value."""

    C_NAME = "KV_ENOTFOUND"


class EngineIOError(EngineError, OSError):
    """A system call on a store file failed; ``errno`` and ``filename`` say which."""


CODED_ERRORS: tuple[type[EngineError], ...] = (
    StoreLockedError,
    ReadOnlyError,
    StoreClosedError,
    CorruptionError,
    FormatVersionError,
    StoreFailedError,
    LimitError,
    InvalidArgumentError,
    BusyError,
    OutOfMemoryError,
    NotFoundError,
)
