"""Backoff streams: the delays between attempts (failure-accrual probes, retries).

A backoff is a function returning a fresh iterator of delays in seconds, so that each
endpoint (or each request) walks its own sequence.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator

Backoff = Callable[[], Iterator[float]]


def constant_backoff(seconds: float) -> Backoff:
    """The same delay every time (Linkerd's ``constant``; ``0`` retries immediately)."""
    return lambda: itertools.repeat(seconds)


def equal_jittered_backoff(
    start: float, maximum: float, rng: random.Random | None = None
) -> Backoff:
    """Finagle's ``Backoff.equalJittered``: half the doubling delay plus random up to half."""
    rnd = rng or random.Random()

    def stream() -> Iterator[float]:
        base = start
        while True:
            yield base / 2 + rnd.uniform(0, base / 2)
            base = min(base * 2, maximum)

    return stream


def decorrelated_jittered_backoff(
    minimum: float, maximum: float, rng: random.Random | None = None
) -> Backoff:
    """Linkerd's ``jittered`` backoff: decorrelated jitter between ``minMs`` and ``maxMs``."""
    rnd = rng or random.Random()

    def stream() -> Iterator[float]:
        previous = minimum
        while True:
            previous = min(maximum, rnd.uniform(minimum, max(minimum, previous * 3)))
            yield previous

    return stream


def exponential_jittered_backoff(
    start: float, maximum: float, rng: random.Random | None = None
) -> Backoff:
    """Finagle's ``Backoff.exponentialJittered``: ``start`` first, then a random delay between
    ``start`` and ``min(start * 2**n, maximum)`` (the namerd interpreters' ``retry``)."""
    rnd = rng or random.Random()

    def stream() -> Iterator[float]:
        yield start
        n = 1
        while True:
            yield rnd.uniform(start, min(start * 2**n, maximum))
            n = min(n + 1, 62)

    return stream


#: failure accrual's default: equal-jittered from 5 s up to 300 s
DEFAULT_ACCRUAL_BACKOFF = equal_jittered_backoff(5.0, 300.0)
