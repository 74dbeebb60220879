"""Protocol-independent routing: routes, clients, balancers, failure accrual, budgets, policy."""

from __future__ import annotations

from .accrual import (
    ConsecutiveFailures,
    FailureAccrual,
    NoFailureAccrual,
    SuccessRate,
    SuccessRateWindowed,
)
from .backoff import (
    DEFAULT_ACCRUAL_BACKOFF,
    Backoff,
    constant_backoff,
    decorrelated_jittered_backoff,
    equal_jittered_backoff,
)
from .balancers import P2C, Aperture, Balancer, LeastLoaded, P2CPeakEwma, RoundRobin
from .budget import RetryBudget
from .endpoint import Endpoint
from .policy import ClientPolicy, ServicePolicy, client_policy, service_policy
from .routing import Client, Route, RouteError, Router, asyncio_time, take_over_servers


def balancer_for(policy: ClientPolicy) -> Balancer:
    """The balancer a client policy asks for (p2c when unset)."""
    config = policy.load_balancer
    if config is None:
        return P2C()
    balancer: Balancer = config.new_balancer(None)
    balancer.probation = config.enable_probation
    return balancer


def accrual_for(policy: ClientPolicy) -> FailureAccrual:
    """The failure accrual a client policy asks for (5 consecutive failures when unset)."""
    if policy.failure_accrual is None:
        return ConsecutiveFailures()
    return policy.failure_accrual.new_policy()  # type: ignore[no-any-return]


__all__ = [
    "DEFAULT_ACCRUAL_BACKOFF",
    "P2C",
    "Aperture",
    "Backoff",
    "Balancer",
    "Client",
    "ClientPolicy",
    "ConsecutiveFailures",
    "Endpoint",
    "FailureAccrual",
    "LeastLoaded",
    "NoFailureAccrual",
    "P2CPeakEwma",
    "RetryBudget",
    "RoundRobin",
    "Route",
    "RouteError",
    "Router",
    "ServicePolicy",
    "SuccessRate",
    "SuccessRateWindowed",
    "accrual_for",
    "asyncio_time",
    "balancer_for",
    "client_policy",
    "constant_backoff",
    "decorrelated_jittered_backoff",
    "equal_jittered_backoff",
    "service_policy",
    "take_over_servers",
]
