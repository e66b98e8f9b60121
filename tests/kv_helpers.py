"""Shared pieces of the KV-layer tests: a clock the test moves by hand."""

from __future__ import annotations

# A fractional start, so that every test also checks floor(now) where the spec asks for it.
START = 1_700_000_000.25


class FakeClock:
    """A store clock that only moves when the test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
