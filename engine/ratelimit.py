"""Workers KV's limit of one write per second to the same key (status 429).

Off by default: an embedded store has no reason to slow its own writer down.
With ``enforce_write_rate_limit=True`` a program can check, before it moves to
Workers KV, that it never writes one key twice within a second.  Time comes
from the store's clock, so tests move it without sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from engine.validate import fail

WINDOW_SECONDS = 1.0
_PRUNE_AT = 1 << 16  # entries kept before old ones are dropped


class WriteRateLimiter:
    """Remembers the last write time of recently written keys; thread-safe."""

    def __init__(self) -> None:
        self._last: dict[bytes, float] = {}
        self._lock = threading.Lock()

    def admit(self, keys: Iterable[bytes], now: float, op: str) -> None:
        """Records a write of every key at now, or raises KVError 429 and records nothing.

        A key that appears twice in one call is a second write within the window.
        """
        with self._lock:
            last = self._last
            seen: set[bytes] = set()
            for key in keys:
                t = last.get(key)
                if key in seen or (t is not None and now - t < WINDOW_SECONDS):
                    fail(op, 429, "Too Many Requests")
                seen.add(key)
            if len(last) + len(seen) > _PRUNE_AT:
                self._last = last = {k: t for k, t in last.items() if now - t < WINDOW_SECONDS}
            for key in seen:
                last[key] = now

    def release(self, keys: Iterable[bytes], now: float) -> None:
        """Forgets the writes admit() recorded at now: they were refused after all.

        An earlier write of such a key lay at least a window before now, so
        forgetting it instead of restoring it refuses nothing that should pass.
        """
        with self._lock:
            for key in keys:
                if self._last.get(key) == now:
                    del self._last[key]


__all__ = ["WINDOW_SECONDS", "WriteRateLimiter"]
