"""Endpoints, load balancers, failure accrual and backoff: the runtime side of a client.

An :class:`Endpoint` is one address of a bound name with its load (requests in flight), its
failure-accrual state and the protocol's connection pool. A :class:`Balancer` picks an
endpoint per request; failure accrual ejects endpoints that keep failing and lets one probe
request through when their backoff has passed.

Everything here runs on the request path, so it is plain attribute arithmetic: no locks,
no allocation per pick, time passed in by the caller.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..naming import Address

# ---------------------------------------------------------------------------------------------
# Backoff streams
# ---------------------------------------------------------------------------------------------

Backoff = Callable[[], Iterator[float]]


def constant_backoff(seconds: float) -> Backoff:
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
    """Linkerd's ``jittered`` backoff (decorrelated jitter between ``minMs`` and ``maxMs``)."""
    rnd = rng or random.Random()

    def stream() -> Iterator[float]:
        previous = minimum
        while True:
            previous = min(maximum, rnd.uniform(minimum, max(minimum, previous * 3)))
            yield previous

    return stream


DEFAULT_ACCRUAL_BACKOFF = equal_jittered_backoff(5.0, 300.0)


# ---------------------------------------------------------------------------------------------
# Endpoints and failure accrual
# ---------------------------------------------------------------------------------------------


class Endpoint:
    """One address of a client, with the state balancers and failure accrual need."""

    __slots__ = (
        "address",
        "backoffs",
        "dead_until",
        "failures",
        "load",
        "pool",
        "probing",
        "removed",
        "stats",
        "weight",
    )

    def __init__(self, address: Address, pool: Any = None) -> None:
        self.address = address
        self.weight = address.weight
        self.load = 0
        self.pool = pool
        #: 0 when available; otherwise the (loop) time until which it is ejected
        self.dead_until = 0.0
        self.probing = False
        self.failures = 0
        self.backoffs: Iterator[float] | None = None
        self.removed = False
        self.stats: Any = None

    def available(self, now: float) -> bool:
        """Not ejected, or ejected but due for its (single) probe request."""
        return self.dead_until == 0.0 or (now >= self.dead_until and not self.probing)

    def __repr__(self) -> str:
        return f"Endpoint({self.address}, load={self.load}, dead_until={self.dead_until})"


class FailureAccrual:
    """Decides when an endpoint is ejected; subclasses implement :meth:`should_eject`.

    The mechanics are shared: an ejected endpoint is skipped by balancers until its backoff
    ends; then one request probes it; success revives it, failure ejects it again with the
    next (longer) backoff.
    """

    def __init__(self, backoff: Backoff = DEFAULT_ACCRUAL_BACKOFF) -> None:
        self.backoff = backoff
        #: called with (endpoint, event) for "removal", "revival", "probe" (stats)
        self.on_event: Callable[[Endpoint, str], None] | None = None

    def should_eject(self, endpoint: Endpoint, success: bool, now: float) -> bool:
        return False

    def before_request(self, endpoint: Endpoint, now: float) -> None:
        if endpoint.dead_until and now >= endpoint.dead_until and not endpoint.probing:
            endpoint.probing = True
            if self.on_event is not None:
                self.on_event(endpoint, "probe")

    def record(self, endpoint: Endpoint, success: bool, now: float) -> None:
        if endpoint.probing:
            endpoint.probing = False
            if success:
                self._revive(endpoint)
            else:
                self._eject(endpoint, now)
            return
        if endpoint.dead_until:  # a response from before the ejection; already counted
            return
        if self.should_eject(endpoint, success, now):
            self._eject(endpoint, now)

    def _eject(self, endpoint: Endpoint, now: float) -> None:
        if endpoint.backoffs is None:
            endpoint.backoffs = self.backoff()
        endpoint.dead_until = now + next(endpoint.backoffs)
        if self.on_event is not None:
            self.on_event(endpoint, "removal")

    def _revive(self, endpoint: Endpoint) -> None:
        endpoint.dead_until = 0.0
        endpoint.backoffs = None
        endpoint.failures = 0
        if self.on_event is not None:
            self.on_event(endpoint, "revival")


class NoFailureAccrual(FailureAccrual):
    """``none``: never eject."""

    def record(self, endpoint: Endpoint, success: bool, now: float) -> None:
        return


class ConsecutiveFailures(FailureAccrual):
    """Eject after ``failures`` consecutive failed requests (Linkerd's default: 5)."""

    def __init__(self, failures: int = 5, backoff: Backoff = DEFAULT_ACCRUAL_BACKOFF) -> None:
        super().__init__(backoff)
        self.failures = failures

    def should_eject(self, endpoint: Endpoint, success: bool, now: float) -> bool:
        if success:
            endpoint.failures = 0
            return False
        endpoint.failures += 1
        if endpoint.failures >= self.failures:
            endpoint.failures = 0
            return True
        return False


# ---------------------------------------------------------------------------------------------
# Balancers
# ---------------------------------------------------------------------------------------------


class Balancer:
    """Picks an endpoint per request. ``update`` is called when the endpoint set changes."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.endpoints: list[Endpoint] = []
        self.rng = rng or random.Random()

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = list(endpoints)

    def pick(self, now: float) -> Endpoint | None:
        raise NotImplementedError

    def fallback(self, now: float) -> Endpoint | None:
        """When no endpoint is available, behave as Finagle: use one anyway (the least
        loaded) rather than failing every request."""
        if not self.endpoints:
            return None
        return min(self.endpoints, key=lambda e: e.load / (e.weight or 1e-9))


class P2C(Balancer):
    """Power of two choices: pick two endpoints at random (by weight), take the less loaded
    (load divided by weight); try ``max_effort`` times to find an available one."""

    def __init__(self, max_effort: int = 5, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self.max_effort = max_effort
        self._cumulative: list[float] | None = None
        self._total = 0.0

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        super().update(endpoints)
        weights = [e.weight for e in self.endpoints]
        if weights and any(w != weights[0] for w in weights):
            self._cumulative = list(itertools.accumulate(weights))
            self._total = self._cumulative[-1]
        else:
            self._cumulative = None

    def _sample(self) -> Endpoint:
        eps = self.endpoints
        if self._cumulative is None or self._total <= 0:
            return eps[int(self.rng.random() * len(eps))]
        i = bisect.bisect_right(self._cumulative, self.rng.random() * self._total)
        return eps[min(i, len(eps) - 1)]

    def pick(self, now: float) -> Endpoint | None:
        eps = self.endpoints
        n = len(eps)
        if n == 0:
            return None
        if n == 1:
            return eps[0] if eps[0].available(now) else self.fallback(now)
        for _ in range(self.max_effort):
            a = self._sample()
            b = self._sample()
            if a is b:
                b = eps[(eps.index(a) + 1 + int(self.rng.random() * (n - 1))) % n]
            if a.load * (b.weight or 1e-9) > b.load * (a.weight or 1e-9):
                a, b = b, a
            if a.available(now):
                return a
            if b.available(now):
                return b
        for e in eps:  # effort exhausted: any available endpoint, else Finagle's fallback
            if e.available(now):
                return e
        return self.fallback(now)
