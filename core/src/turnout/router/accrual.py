"""Failure accrual ("circuit breaking"): when to take an endpoint out, and how it comes back.

The mechanics are shared by every policy: an ejected endpoint is skipped by balancers until
its backoff ends; then one request probes it; a successful probe restores it, a failed one
ejects it again with the next, longer, backoff. Policies only decide *when* to eject, from
the outcome of each response (:meth:`FailureAccrual.should_eject`).

Finagle's rule when every endpoint is ejected is kept: balancers then use one anyway rather
than failing every request (see :meth:`turnout.router.balancers.Balancer.fallback`).
"""

from __future__ import annotations

from collections.abc import Callable

from .backoff import DEFAULT_ACCRUAL_BACKOFF, Backoff
from .endpoint import Endpoint


class FailureAccrual:
    """Base policy (subclasses implement :meth:`should_eject`)."""

    #: recording a success for a healthy endpoint changes nothing (lets the data path skip it)
    quiet_success = False

    def __init__(self, backoff: Backoff = DEFAULT_ACCRUAL_BACKOFF) -> None:
        self.backoff = backoff
        #: called with (endpoint, event) for "removal", "revival", "probe" (stats, logs)
        self.on_event: Callable[[Endpoint, str], None] | None = None

    def should_eject(self, endpoint: Endpoint, success: bool, now: float) -> bool:
        return False

    def before_request(self, endpoint: Endpoint, now: float) -> None:
        """Called when a balancer picked ``endpoint``: starts its probe if it is due."""
        if endpoint.dead_until and now >= endpoint.dead_until and not endpoint.probing:
            endpoint.probing = True
            if self.on_event is not None:
                self.on_event(endpoint, "probe")

    def record(self, endpoint: Endpoint, success: bool, now: float) -> None:
        """The outcome of one request to ``endpoint``."""
        if endpoint.probing:
            endpoint.probing = False
            if success:
                self.revive(endpoint)
            else:
                self.eject(endpoint, now)
            return
        if endpoint.dead_until:  # a response from before the ejection; already counted
            return
        if self.should_eject(endpoint, success, now):
            self.eject(endpoint, now)

    def eject(self, endpoint: Endpoint, now: float) -> None:
        if endpoint.backoffs is None:
            endpoint.backoffs = self.backoff()
        endpoint.dead_until = now + next(endpoint.backoffs)
        endpoint.ejections += 1
        if self.on_event is not None:
            self.on_event(endpoint, "removal")

    def revive(self, endpoint: Endpoint) -> None:
        endpoint.dead_until = 0.0
        endpoint.backoffs = None
        endpoint.failures = 0
        endpoint.sr = 1.0
        endpoint.requests = 0
        endpoint.sr_window = None
        if self.on_event is not None:
            self.on_event(endpoint, "revival")


class NoFailureAccrual(FailureAccrual):
    """``none``: never eject."""

    quiet_success = True

    def record(self, endpoint: Endpoint, success: bool, now: float) -> None:
        return


class ConsecutiveFailures(FailureAccrual):
    """Eject after ``failures`` consecutive failed requests (Linkerd's default: 5)."""

    quiet_success = True

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


class SuccessRate(FailureAccrual):
    """Eject when the success rate, an exponential moving average over about ``requests``
    requests, falls below ``success_rate`` (after at least ``requests`` requests)."""

    def __init__(
        self, success_rate: float, requests: int, backoff: Backoff = DEFAULT_ACCRUAL_BACKOFF
    ) -> None:
        super().__init__(backoff)
        self.success_rate = success_rate
        self.window = requests
        self._alpha = 1.0 / requests

    def should_eject(self, endpoint: Endpoint, success: bool, now: float) -> bool:
        a = self._alpha
        endpoint.sr = endpoint.sr * (1 - a) + (a if success else 0.0)
        endpoint.requests += 1
        if endpoint.requests >= self.window and endpoint.sr < self.success_rate:
            endpoint.sr = 1.0
            endpoint.requests = 0
            return True
        return False


class SuccessRateWindowed(FailureAccrual):
    """Eject when the success rate over the last ``window`` seconds falls below
    ``success_rate`` (counted once at least ``min_requests`` requests were seen)."""

    def __init__(
        self,
        success_rate: float,
        window: float,
        backoff: Backoff = DEFAULT_ACCRUAL_BACKOFF,
        min_requests: int = 5,
    ) -> None:
        super().__init__(backoff)
        self.success_rate = success_rate
        self.window = window
        self.min_requests = min_requests

    def should_eject(self, endpoint: Endpoint, success: bool, now: float) -> bool:
        second = float(int(now))
        buckets = endpoint.sr_window
        if buckets is None:
            buckets = endpoint.sr_window = []
        if buckets and buckets[-1][0] == second:
            bucket = buckets[-1]
        else:
            bucket = [second, 0.0, 0.0]
            buckets.append(bucket)
            horizon = now - self.window
            while buckets and buckets[0][0] <= horizon:
                buckets.pop(0)
        bucket[1] += 1.0 if success else 0.0
        bucket[2] += 1.0
        total = sum(b[2] for b in buckets)
        if total < self.min_requests:
            return False
        if sum(b[1] for b in buckets) / total < self.success_rate:
            endpoint.sr_window = None
            return True
        return False
