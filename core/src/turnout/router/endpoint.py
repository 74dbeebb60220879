"""An endpoint: one address of a client, with the state balancers and failure accrual need.

Everything here is plain attributes: balancers and failure accrual read and update them on the
request path, with the current time passed in (``time.monotonic()``), never a clock call of
their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..naming import Address


class Endpoint:
    """One address of a client."""

    __slots__ = (
        "address",
        "backoffs",
        "cost",
        "cost_at",
        "dead_until",
        "ejections",
        "failures",
        "load",
        "pool",
        "probing",
        "removed",
        "requests",
        "sr",
        "sr_window",
        "weight",
    )

    def __init__(self, address: Address, pool: Any = None) -> None:
        self.address = address
        self.weight = address.weight
        #: requests in flight
        self.load = 0
        #: the protocol's connection pool
        self.pool = pool
        #: 0.0 when available; otherwise the time until which it is ejected
        self.dead_until = 0.0
        #: a probe request is in flight (the backoff ended; one request decides)
        self.probing = False
        self.backoffs: Iterator[float] | None = None
        #: how many times failure accrual ejected it
        self.ejections = 0
        #: removed from service discovery but kept on probation (``enableProbation``)
        self.removed = False
        # failure-accrual state: consecutive failures; success rate and its sample count;
        # windowed counts [(second, successes, total), ...]
        self.failures = 0
        self.sr = 1.0
        self.requests = 0
        self.sr_window: list[list[float]] | None = None
        # peak-EWMA latency (seconds) and when it was last updated (balancer ``ewma``)
        self.cost = 0.0
        self.cost_at = 0.0

    def available(self, now: float) -> bool:
        """Not ejected, or ejected but due for its (single) probe request."""
        return self.dead_until == 0.0 or (now >= self.dead_until and not self.probing)

    def state(self, now: float) -> str:
        if self.dead_until == 0.0:
            return "removed (probation)" if self.removed else "open"
        return "probing" if self.probing or now >= self.dead_until else "ejected"

    def __repr__(self) -> str:
        return f"Endpoint({self.address}, load={self.load}, dead_until={self.dead_until})"
