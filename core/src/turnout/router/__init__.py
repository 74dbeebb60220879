"""Protocol-independent routing: routes, clients, balancers, failure accrual, policies."""

from __future__ import annotations

from .lb import P2C, Balancer, ConsecutiveFailures, Endpoint, FailureAccrual
from .policy import ClientPolicy, ServicePolicy, client_policy, service_policy
from .routing import Client, Route, RouteError, Router, asyncio_time


def balancer_for(policy: ClientPolicy) -> Balancer:
    """The balancer a client policy asks for (p2c when unset)."""
    if policy.load_balancer is None:
        return P2C()
    return policy.load_balancer.new_balancer(None)  # type: ignore[no-any-return]


def accrual_for(policy: ClientPolicy) -> FailureAccrual:
    """The failure accrual a client policy asks for (5 consecutive failures when unset)."""
    if policy.failure_accrual is None:
        return ConsecutiveFailures()
    return policy.failure_accrual.new_policy()  # type: ignore[no-any-return]


__all__ = [
    "P2C",
    "Balancer",
    "Client",
    "ClientPolicy",
    "ConsecutiveFailures",
    "Endpoint",
    "FailureAccrual",
    "Route",
    "RouteError",
    "Router",
    "ServicePolicy",
    "accrual_for",
    "asyncio_time",
    "balancer_for",
    "client_policy",
    "service_policy",
]
