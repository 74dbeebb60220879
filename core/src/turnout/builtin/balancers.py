"""Built-in load balancers and failure accrual policies."""

from __future__ import annotations

from ..config.model import (
    BackoffConfig,
    ConstantBackoffConfig,
    FailureAccrualConfig,
    JitteredBackoffConfig,
    LoadBalancerConfig,
)
from ..config.schema import option
from ..hookspecs import hookimpl
from ..router.lb import (
    DEFAULT_ACCRUAL_BACKOFF,
    P2C,
    Backoff,
    Balancer,
    ConsecutiveFailures,
    FailureAccrual,
    NoFailureAccrual,
    constant_backoff,
    decorrelated_jittered_backoff,
)


def backoff_from(config: BackoffConfig | None, default: Backoff) -> Backoff:
    """The backoff stream a ``backoff:`` object describes (``default`` when absent)."""
    if isinstance(config, ConstantBackoffConfig):
        return constant_backoff(config.ms / 1000)
    if isinstance(config, JitteredBackoffConfig):
        return decorrelated_jittered_backoff(config.min_ms / 1000, config.max_ms / 1000)
    return default


class P2CConfig(LoadBalancerConfig):
    """Power of two choices, least loaded: of two random endpoints, the one with fewer
    requests in flight (relative to its weight)."""

    kind = "p2c"
    max_effort: int = option(5, min=1, doc="Tries to find an available endpoint.")

    def new_balancer(self, ctx: object = None) -> Balancer:
        return P2C(self.max_effort)


class ConsecutiveFailuresConfig(FailureAccrualConfig):
    """Eject an endpoint after ``failures`` consecutive failures (the default policy)."""

    kind = "io.l5d.consecutiveFailures"
    failures: int = option(5, min=1, doc="Consecutive failures that eject an endpoint.")

    def new_policy(self) -> FailureAccrual:
        return ConsecutiveFailures(
            self.failures, backoff_from(self.backoff, DEFAULT_ACCRUAL_BACKOFF)
        )


class NoneAccrualConfig(FailureAccrualConfig):
    """Never eject endpoints."""

    kind = "none"

    def new_policy(self) -> FailureAccrual:
        return NoFailureAccrual()


@hookimpl
def turnout_register_load_balancers() -> list[type[LoadBalancerConfig]]:
    return [P2CConfig]


@hookimpl
def turnout_register_failure_accrual() -> list[type[FailureAccrualConfig]]:
    return [ConsecutiveFailuresConfig, NoneAccrualConfig]
