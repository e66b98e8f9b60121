"""kvengine: an embedded, durable, log-structured key-value store with Workers KV semantics.

    import engine
    with engine.open("kvdata") as db:
        kv = db.namespace("MY_KV")
        kv.put("first-key", "value", expiration_ttl=600, metadata={"v": 1})
        kv.get("first-key")

Only the names below are public; everything else is internal.
"""

from engine._version import __version__
from engine.backoff import retry
from engine.errors import (
    CorruptionError,
    EngineError,
    EngineIOError,
    FormatVersionError,
    KVError,
    ReadOnlyError,
    StoreClosedError,
    StoreFailedError,
    StoreLockedError,
)
from engine.kv import Namespace, Store, open
from engine.results import (
    BulkPair,
    CompactionReport,
    Damage,
    KeyInfo,
    ListResult,
    NamespaceStats,
    ReadCacheStats,
    SegmentStats,
    StoreStats,
    ValueWithMetadata,
)

__all__ = [
    "BulkPair",
    "CompactionReport",
    "CorruptionError",
    "Damage",
    "EngineError",
    "EngineIOError",
    "FormatVersionError",
    "KVError",
    "KeyInfo",
    "ListResult",
    "Namespace",
    "NamespaceStats",
    "ReadCacheStats",
    "ReadOnlyError",
    "SegmentStats",
    "Store",
    "StoreClosedError",
    "StoreFailedError",
    "StoreLockedError",
    "StoreStats",
    "ValueWithMetadata",
    "__version__",
    "open",
    "retry",
]
