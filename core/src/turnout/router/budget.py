"""Retry budgets: how many retries (or requeues) a service may make, relative to its traffic.

Linkerd's (Finagle's) ``RetryBudget``: over the last ``ttl`` seconds, every request deposits
``percent_can_retry`` of a retry, and ``min_retries_per_sec`` retries per second are always
allowed; a retry withdraws one. When the balance is empty, failures are returned instead of
retried, so that retries can never multiply the load on a struggling service by more than
``1 + percent_can_retry`` (plus the small floor).

Deposits cost nothing on the request path: the budget reads a request counter that exists
anyway (``requests``, a function returning a count that only grows) once per second.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class RetryBudget:
    """A sliding-window budget (see the module docstring); times are ``time.monotonic()``."""

    __slots__ = ("_buckets", "_count", "_requests", "_withdrawn", "min_per_sec", "percent", "ttl")

    def __init__(
        self,
        ttl: float = 10.0,
        min_retries_per_sec: float = 10,
        percent_can_retry: float = 0.2,
        requests: Callable[[], int] | None = None,
    ) -> None:
        self.ttl = ttl
        self.min_per_sec = min_retries_per_sec
        self.percent = percent_can_retry
        self._count = 0
        self._requests = requests if requests is not None else (lambda: self._count)
        #: per second: [second, request count when it started, retries withdrawn in it]
        self._buckets: deque[list[float]] = deque()
        self._withdrawn = 0.0

    def deposit(self, now: float = 0.0) -> None:
        """One request was made (only needed without a ``requests`` counter)."""
        self._count += 1

    def _current(self, now: float) -> list[float]:
        second = float(int(now))
        buckets = self._buckets
        if buckets and buckets[-1][0] == second:
            return buckets[-1]
        horizon = now - self.ttl
        while buckets and buckets[0][0] <= horizon:
            self._withdrawn -= buckets.popleft()[2]
        bucket = [second, float(self._requests()), 0.0]
        buckets.append(bucket)
        return bucket

    def balance(self, now: float) -> float:
        """Retries allowed right now (may be fractional)."""
        self._current(now)
        deposits = self._requests() - self._buckets[0][1]
        return self.min_per_sec * self.ttl + self.percent * deposits - self._withdrawn

    def try_withdraw(self, now: float) -> bool:
        """Take one retry from the budget if there is one."""
        if self.balance(now) < 1:
            return False
        self._buckets[-1][2] += 1
        self._withdrawn += 1
        return True
