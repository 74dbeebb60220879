"""Built-in load balancers and failure accrual policies (Linkerd's kinds and defaults)."""

from __future__ import annotations

from collections.abc import Iterable

from ..config.model import (
    BackoffConfig,
    FailureAccrualConfig,
    LoadBalancerConfig,
)
from ..config.schema import option
from ..context import BuildContext
from ..hookspecs import hookimpl
from ..router.accrual import (
    ConsecutiveFailures,
    FailureAccrual,
    NoFailureAccrual,
    SuccessRate,
    SuccessRateWindowed,
)
from ..router.backoff import (
    DEFAULT_ACCRUAL_BACKOFF,
    Backoff,
)
from ..router.balancers import P2C, Aperture, Balancer, LeastLoaded, P2CPeakEwma, RoundRobin


def backoff_from(config: BackoffConfig | None, default: Backoff) -> Backoff:
    """The backoff stream a ``backoff:`` object describes (``default`` when absent)."""
    return config.new_backoff() if config is not None else default


# -- load balancers -----------------------------------------------------------------------------


class P2CConfig(LoadBalancerConfig):
    """Power of two choices, least loaded: of two random endpoints (chosen by weight), the
    one with fewer requests in flight relative to its weight."""

    kind = "p2c"
    max_effort: int = option(5, min=1, doc="Tries to find an available endpoint.")

    def new_balancer(self, ctx: BuildContext | None = None) -> Balancer:
        return P2C(self.max_effort)


class EwmaConfig(LoadBalancerConfig):
    """Power of two choices on peak-EWMA latency x (requests in flight + 1): routes around
    slow endpoints as soon as they slow down."""

    kind = "ewma"
    decay_time_ms: int = option(10_000, min=1, doc="How fast a latency peak is forgotten.")
    max_effort: int = option(5, min=1, doc="Tries to find an available endpoint.")

    def new_balancer(self, ctx: BuildContext | None = None) -> Balancer:
        return P2CPeakEwma(self.decay_time_ms / 1000, self.max_effort)


class ApertureConfig(LoadBalancerConfig):
    """p2c over a window of endpoints sized by load: few connections when traffic is light."""

    kind = "aperture"
    smooth_window_ms: int = option(5000, min=1, doc="Window over which load is averaged.")
    low_load: float = option(0.5, min=0, doc="Shrink the aperture below this load per endpoint.")
    high_load: float = option(2.0, min=0, doc="Widen the aperture above this load per endpoint.")
    min_aperture: int = option(1, min=1, doc="Smallest aperture.")
    max_effort: int = option(5, min=1, doc="Tries to find an available endpoint.")

    def check(self) -> Iterable[tuple[str, str]]:
        if self.low_load > self.high_load:
            yield "lowLoad", f"must not exceed highLoad ({self.high_load}), got {self.low_load}"

    def new_balancer(self, ctx: BuildContext | None = None) -> Balancer:
        return Aperture(
            self.smooth_window_ms / 1000,
            self.low_load,
            self.high_load,
            self.min_aperture,
            self.max_effort,
        )


class HeapConfig(LoadBalancerConfig):
    """Always the least loaded endpoint (requests in flight relative to weight)."""

    kind = "heap"

    def new_balancer(self, ctx: BuildContext | None = None) -> Balancer:
        return LeastLoaded()


class RoundRobinConfig(LoadBalancerConfig):
    """Each available endpoint in turn (smooth weighted round robin with unequal weights)."""

    kind = "roundRobin"
    max_effort: int = option(5, min=1, doc="Tries to find an available endpoint.")

    def new_balancer(self, ctx: BuildContext | None = None) -> Balancer:
        return RoundRobin(self.max_effort)


# -- failure accrual ----------------------------------------------------------------------------


class ConsecutiveFailuresConfig(FailureAccrualConfig):
    """Eject an endpoint after ``failures`` consecutive failures (the default policy)."""

    kind = "io.l5d.consecutiveFailures"
    failures: int = option(5, min=1, doc="Consecutive failures that eject an endpoint.")

    def new_policy(self) -> FailureAccrual:
        return ConsecutiveFailures(
            self.failures, backoff_from(self.backoff, DEFAULT_ACCRUAL_BACKOFF)
        )


class SuccessRateConfig(FailureAccrualConfig):
    """Eject an endpoint whose success rate over the last ``requests`` requests (a moving
    average) falls below ``successRate``."""

    kind = "io.l5d.successRate"
    success_rate: float = option(min=0.0, max=1.0, doc="Lowest acceptable success rate (0..1).")
    requests: int = option(min=1, doc="Requests the success rate is computed over.")

    def new_policy(self) -> FailureAccrual:
        return SuccessRate(
            self.success_rate, self.requests, backoff_from(self.backoff, DEFAULT_ACCRUAL_BACKOFF)
        )


class SuccessRateWindowedConfig(FailureAccrualConfig):
    """Eject an endpoint whose success rate over the last ``window`` seconds falls below
    ``successRate`` (once at least 5 requests were seen in the window)."""

    kind = "io.l5d.successRateWindowed"
    success_rate: float = option(min=0.0, max=1.0, doc="Lowest acceptable success rate (0..1).")
    window: int = option(min=1, doc="Seconds the success rate is computed over.")

    def new_policy(self) -> FailureAccrual:
        return SuccessRateWindowed(
            self.success_rate,
            float(self.window),
            backoff_from(self.backoff, DEFAULT_ACCRUAL_BACKOFF),
        )


class NoneAccrualConfig(FailureAccrualConfig):
    """Never eject endpoints."""

    kind = "none"

    def new_policy(self) -> FailureAccrual:
        return NoFailureAccrual()


@hookimpl
def turnout_register_load_balancers() -> list[type[LoadBalancerConfig]]:
    return [P2CConfig, EwmaConfig, ApertureConfig, HeapConfig, RoundRobinConfig]


@hookimpl
def turnout_register_failure_accrual() -> list[type[FailureAccrualConfig]]:
    return [
        ConsecutiveFailuresConfig,
        SuccessRateConfig,
        SuccessRateWindowedConfig,
        NoneAccrualConfig,
    ]
