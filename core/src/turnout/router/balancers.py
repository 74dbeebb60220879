"""Load balancers: which endpoint serves the next request.

Every balancer honours endpoint weights (``* weight`` in fs files, SRV weights, Consul tag
weights: an endpoint of weight 2 takes about twice the share of one of weight 1) and skips
ejected endpoints; when every endpoint is ejected, it uses one anyway, as Finagle does,
rather than failing every request.

- :class:`P2C` (``p2c``): of two random endpoints, the one with fewer requests in flight.
- :class:`P2CPeakEwma` (``ewma``): of two random endpoints, the one with the lower
  *peak-EWMA latency x (requests in flight + 1)*; slow endpoints lose traffic at once.
- :class:`Aperture` (``aperture``): p2c over a window of the endpoints whose size follows the
  load (``lowLoad``/``highLoad`` requests in flight per endpoint), so that a lightly loaded
  client keeps few connections open.
- :class:`LeastLoaded` (``heap``): always the least loaded endpoint.
- :class:`RoundRobin` (``roundRobin``): each endpoint in turn (smooth weighted round robin
  when weights differ).

Balancers are plain objects on the request path: no allocation per pick, time passed in.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections.abc import Sequence

from .endpoint import Endpoint

_TINY = 1e-9


class Balancer:
    """Base class: ``update`` when the endpoint set changes, ``pick`` per request."""

    #: the data path calls :meth:`observe` with each response's latency when True
    wants_latency = False
    #: keep endpoints removed from service discovery while they stay healthy
    probation = False

    def __init__(self, rng: random.Random | None = None) -> None:
        self.endpoints: list[Endpoint] = []
        self.rng = rng or random.Random()

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        self.endpoints = list(endpoints)

    def pick(self, now: float) -> Endpoint | None:
        raise NotImplementedError

    def observe(self, endpoint: Endpoint, latency: float, now: float) -> None:
        """A response from ``endpoint`` took ``latency`` seconds (only if wants_latency)."""

    def load(self, endpoint: Endpoint, now: float) -> float:
        """The figure this balancer minimises (also exported as the endpoint's load)."""
        return endpoint.load / (endpoint.weight or _TINY)

    def fallback(self, now: float) -> Endpoint | None:
        """No endpoint is available: the least loaded one anyway (Finagle's behaviour)."""
        if not self.endpoints:
            return None
        return min(self.endpoints, key=lambda e: self.load(e, now))


class P2C(Balancer):
    """Power of two choices, least loaded (``maxEffort`` tries to find an available pair)."""

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

    def _index(self, eps: list[Endpoint]) -> int:
        """A random index into ``eps``, in proportion to weight (``eps`` is the whole set)."""
        rnd = self.rng.random()
        if self._cumulative is None or self._total <= 0 or eps is not self.endpoints:
            return int(rnd * len(eps))
        return min(bisect.bisect_right(self._cumulative, rnd * self._total), len(eps) - 1)

    def _two(self, eps: list[Endpoint], now: float) -> Endpoint | None:
        """The less loaded of two distinct random endpoints that is available (``maxEffort``
        draws), or None."""
        n = len(eps)
        for _ in range(self.max_effort):
            i = self._index(eps)
            j = self._index(eps)
            if i == j:
                j = (i + 1 + int(self.rng.random() * (n - 1))) % n
            a, b = eps[i], eps[j]
            if self.load(a, now) > self.load(b, now):
                a, b = b, a
            if a.available(now):
                return a
            if b.available(now):
                return b
        return None

    def pick(self, now: float) -> Endpoint | None:
        eps = self.endpoints
        if not eps:
            return None
        if len(eps) == 1:
            return eps[0] if eps[0].available(now) else self.fallback(now)
        chosen = self._two(eps, now)
        if chosen is not None:
            return chosen
        available = [e for e in eps if e.available(now)]  # effort exhausted: scan
        if available:
            return min(available, key=lambda e: self.load(e, now))
        return self.fallback(now)


class P2CPeakEwma(P2C):
    """p2c on peak-EWMA latency: an endpoint's cost jumps to a slower response at once and
    decays toward faster ones over ``decay`` seconds; the load of an endpoint is its cost
    times (requests in flight + 1). Unmeasured endpoints with requests in flight get a large
    penalty, so that new endpoints are tried but not flooded (Finagle's rule)."""

    wants_latency = True
    PENALTY = 1e6  # seconds: "certainly slower than anything measured"

    def __init__(self, decay: float = 10.0, max_effort: int = 5, rng: random.Random | None = None):
        super().__init__(max_effort, rng)
        self.decay = decay

    def observe(self, endpoint: Endpoint, latency: float, now: float) -> None:
        cost = endpoint.cost
        if latency > cost:
            endpoint.cost = latency
        else:
            w = math.exp(-max(now - endpoint.cost_at, 0.0) / self.decay)
            endpoint.cost = cost * w + latency * (1.0 - w)
        endpoint.cost_at = now

    def load(self, endpoint: Endpoint, now: float) -> float:
        cost = endpoint.cost
        if cost == 0.0:
            return (self.PENALTY + endpoint.load if endpoint.load else 0.0) / (
                endpoint.weight or _TINY
            )
        # the cost decays toward zero while no response is observed (Finagle's get())
        w = math.exp(-max(now - endpoint.cost_at, 0.0) / self.decay)
        return cost * w * (endpoint.load + 1) / (endpoint.weight or _TINY)


class Aperture(P2C):
    """p2c over an aperture: the first ``size`` endpoints of a fixed pseudo-random order.

    The average load per endpoint in the aperture, smoothed over ``smooth_window`` seconds,
    widens the aperture above ``high_load`` and narrows it below ``low_load``, never below
    ``min_aperture``. Unavailable endpoints in the aperture are skipped; when none in it is
    available the whole set is searched.
    """

    def __init__(
        self,
        smooth_window: float = 5.0,
        low_load: float = 0.5,
        high_load: float = 2.0,
        min_aperture: int = 1,
        max_effort: int = 5,
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(max_effort, rng)
        self.smooth_window = smooth_window
        self.low_load = low_load
        self.high_load = high_load
        self.min_aperture = min_aperture
        self.size = min_aperture
        self.smoothed = 0.0
        self._at = 0.0
        self._salt = str(self.rng.random()).encode()
        self._ring: list[Endpoint] = []

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        super().update(endpoints)
        salt = self._salt
        self._ring = sorted(
            self.endpoints,
            key=lambda e: hashlib.blake2b(salt + str(e.address).encode(), digest_size=8).digest(),
        )
        self.size = max(min(self.size, len(self._ring)), min(self.min_aperture, len(self._ring)))

    def _adjust(self, now: float) -> None:
        ring = self._ring
        size = self.size
        average = sum(e.load for e in ring[:size]) / size
        w = math.exp(-max(now - self._at, 0.0) / self.smooth_window) if self._at else 0.0
        self.smoothed = self.smoothed * w + average * (1.0 - w)
        self._at = now
        if self.smoothed >= self.high_load and size < len(ring):
            self.size = size + 1
        elif self.smoothed <= self.low_load and size > max(self.min_aperture, 1):
            self.size = size - 1

    def pick(self, now: float) -> Endpoint | None:
        ring = self._ring
        if not ring:
            return None
        if self.size < 1:
            self.size = 1
        self._adjust(now)
        window = ring[: self.size]
        if len(window) == 1:
            if window[0].available(now):
                return window[0]
        else:
            chosen = self._two(window, now)
            if chosen is not None:
                return chosen
        return super().pick(now)  # nothing available in the aperture: the whole set

    def load(self, endpoint: Endpoint, now: float) -> float:
        return endpoint.load / (endpoint.weight or _TINY)


class LeastLoaded(Balancer):
    """The least loaded available endpoint (load divided by weight); ties in turn."""

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self._turn = 0

    def pick(self, now: float) -> Endpoint | None:
        eps = self.endpoints
        if not eps:
            return None
        n = len(eps)
        self._turn = (self._turn + 1) % n
        best: Endpoint | None = None
        best_load = math.inf
        for i in range(n):
            e = eps[(self._turn + i) % n]
            if e.available(now):
                load = e.load / (e.weight or _TINY)
                if load < best_load:
                    best, best_load = e, load
        return best if best is not None else self.fallback(now)


class RoundRobin(Balancer):
    """Each available endpoint in turn; with unequal weights, smooth weighted round robin
    (nginx's algorithm): an endpoint of weight 3 is picked three times as often, spread out."""

    def __init__(self, max_effort: int = 5, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self.max_effort = max_effort
        self._cursor = 0
        self._weighted = False
        self._current: dict[int, float] = {}

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        super().update(endpoints)
        weights = {e.weight for e in self.endpoints}
        self._weighted = len(weights) > 1
        self._current = {id(e): 0.0 for e in self.endpoints}

    def pick(self, now: float) -> Endpoint | None:
        eps = self.endpoints
        if not eps:
            return None
        if self._weighted:
            return self._pick_weighted(now)
        n = len(eps)
        for _ in range(min(n, max(self.max_effort, n))):
            e = eps[self._cursor % n]
            self._cursor += 1
            if e.available(now):
                return e
        return self.fallback(now)

    def _pick_weighted(self, now: float) -> Endpoint | None:
        current = self._current
        total = 0.0
        best: Endpoint | None = None
        for e in self.endpoints:
            if not e.available(now):
                continue
            c = current.get(id(e), 0.0) + e.weight
            current[id(e)] = c
            total += e.weight
            if best is None or c > current[id(best)]:
                best = e
        if best is None:
            return self.fallback(now)
        current[id(best)] -= total
        return best
