"""Retrying a call that Workers KV refused with 429, as its guide recommends.

Workers KV allows one write per second to a key; the documented remedy is to
retry with exponential backoff.  ``retry`` does that for any callable, so code
written for Workers KV keeps its shape here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from engine.errors import KVError

T = TypeVar("T")


def retry(
    fn: Callable[..., T],
    *args: Any,
    attempts: int = 5,
    first_delay: float = 1.0,
    factor: float = 2.0,
    sleep: Callable[[float], object] = time.sleep,
    **kwargs: Any,
) -> T:
    """Calls fn(*args, **kwargs), retrying while it raises KVError with status 429.

    Waits first_delay seconds before the second attempt, factor times longer
    before each further one, and re-raises the last 429 after `attempts` calls.
    Any other error is raised at once.

    Raises:
        ValueError: attempts < 1 or a negative delay.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    if first_delay < 0 or factor < 0:
        raise ValueError("first_delay and factor must not be negative")
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return fn(*args, **kwargs)
        except KVError as exc:
            if exc.status != 429 or attempt == attempts:
                raise
        sleep(delay)
        delay *= factor
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["retry"]
