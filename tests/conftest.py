"""Shared pytest setup: hypothesis profiles and the fixtures every test module may use.

Hypothesis profile, chosen by the environment variable HYPOTHESIS_PROFILE:

* ``default`` - a quick local run (few examples, random seed each run);
* ``ci``      - reproducible (derandomized) and a little wider, as .ci/run uses it;
* ``nightly`` - many examples, for long unattended runs.

No profile sets a deadline: the suite also runs under ASan + UBSan, several times
slower, and a timing-dependent failure would say nothing about correctness.

Fixtures:

* ``store_path`` - a path for a new store directory that does not exist yet;
* ``clock``      - a ``FakeClock`` at ``kv_helpers.START`` (a quarter past a whole
  second, so flooring mistakes show) to pass as ``clock=``, so expiry tests move time
  instead of sleeping;
* ``db``         - a store on ``clock`` in ``tmp_path``, closed after the test (a module
  that needs other options overrides it);
* ``kv``         - the default namespace of ``db``;
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

import engine
from engine.storage import LogStore

_QUIET = [HealthCheck.too_slow]
settings.register_profile("default", max_examples=30, deadline=None, suppress_health_check=_QUIET)
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=_QUIET
)
settings.register_profile("nightly", max_examples=2000, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Where a test may create a store: inside pytest's temporary directory, not yet existing."""
    return tmp_path / "store"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path, clock: FakeClock) -> Iterator[engine.Store]:
    with engine.open(tmp_path / "db", clock=clock) as store:
        yield store


@pytest.fixture
def kv(db: engine.Store) -> engine.Namespace:
    return db.namespace()


@pytest.fixture
def log_store(store_path: Path) -> Iterator[LogStore]:
    store = LogStore(store_path)
    try:
        yield store
    finally:
        store.close()
