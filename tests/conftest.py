"""Shared pytest setup: hypothesis profiles and the fixtures every test module may use.

Hypothesis profile, chosen by the environment variable HYPOTHESIS_PROFILE:

* ``default`` - a quick local run (few examples, random seed each run);
* ``ci``      - reproducible (derandomized) and a little wider, as .ci/run uses it;
* ``nightly`` - many examples, for long unattended runs.

No profile sets a deadline: the suite also runs under ASan + UBSan, several times
slower, and a timing-dependent failure would say nothing about correctness.

Fixtures:

* ``store_path`` - a path for a new store directory that does not exist yet;
* ``clock``      - a ``FakeClock`` to pass as ``clock=`` (or its ``now`` to the storage
  layer), so expiry tests move time instead of sleeping;
* ``log_store``  - a writable ``engine.storage.LogStore`` at ``store_path``, closed after
  the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from kv_helpers import FakeClock

from engine.storage import LogStore

_QUIET = [HealthCheck.too_slow]
settings.register_profile("default", max_examples=30, deadline=None, suppress_health_check=_QUIET)
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=_QUIET
)
settings.register_profile("nightly", max_examples=2000, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

# 2023-11-14T22:13:20Z: a round number, far from 0 (0 means "never expires") and
# from the 32-bit limit, so off-by-one and overflow mistakes both show.
CLOCK_START = 1_700_000_000.0


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where a test may create a store: inside pytest's temporary directory, not yet existing."""
    return tmp_path / "store"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(CLOCK_START)


@pytest.fixture
def log_store(store_path: Path) -> Iterator[LogStore]:
    store = LogStore(store_path)
    try:
        yield store
    finally:
        store.close()
