"""Routing state shared by every protocol: routes (bound logical names) and clients.

::

    request ─► identifier ─► Router.route(dst, local dtab) ─► Route (cached, kept bound)
            ─► Route.choose() ─► (Client, residual) ─► Client.pick() ─► Endpoint ─► pool

A :class:`Route` observes the interpreter's binding Activity for its name: it is bound once
and then updated in place when a namer publishes a new tree. A :class:`Client` (one per
bound id, shared by routes) observes the bound name's address Var and keeps its balancer's
endpoint list current. Protocols supply the connection pool of each endpoint.

Nothing here is asynchronous except :meth:`Route.wait`, used only while a name is still
binding (the first request to a new name).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..config.model import BackoffConfig, RetriesConfig, RouterConfig
from ..metrics import Histogram, MetricsTree, RequestCounts
from ..naming import (
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Dtab,
    Empty,
    Fail,
    Failed,
    Leaf,
    NameBound,
    NameInterpreter,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    Union,
)
from ..naming.var import Observation
from .accrual import FailureAccrual
from .backoff import Backoff, constant_backoff
from .balancers import Balancer
from .budget import RetryBudget
from .endpoint import Endpoint
from .policy import ClientPolicy, ServicePolicy, client_policy, service_policy

log = logging.getLogger("turnout.router")
_EMPTY_DTAB = Dtab.empty


class RouteError(Exception):
    """Why a request cannot be routed; ``kind`` is ``neg``, ``fail``, ``empty``, ``failed``,
    ``timeout`` or ``no-endpoints``."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    def fresh(self) -> RouteError:
        """A new error like this one, to raise: raising a stored exception instance hangs
        the raising frames on it (``__traceback__``), and through them the request and its
        connection, for as long as the route keeps the instance."""
        return RouteError(self.kind, str(self))


def _stat_path(path: Path) -> tuple[str, ...]:
    return tuple(label.decode("utf-8", "replace") for label in path.elems)


# ---------------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------------


class ClientStats:
    """The metrics of one client (``rt/<router>/client/<id>/...``)."""

    __slots__ = (
        "budget_exhausted",
        "connects",
        "counts",
        "failures",
        "latency",
        "pending",
        "requests",
        "requeues",
        "success",
    )

    def __init__(
        self,
        metrics: MetricsTree,
        scope: tuple[str, ...],
        client: Client,
        counts_factory: Callable[[Histogram], Any] = RequestCounts,
    ) -> None:
        #: what the data path increments (``counts.success += 1``...); ``success``,
        #: ``failures`` and ``requests`` are derived from it
        made = metrics.request_counts(*scope, factory=counts_factory)
        self.counts, self.success, self.failures, self.requests, self.latency = made
        self.connects = metrics.counter(*scope, "connects")
        self.requeues = metrics.counter(*scope, "retries", "requeues")
        self.budget_exhausted = metrics.counter(*scope, "retries", "budget_exhausted")
        self.pending = metrics.gauge(
            *scope, "pending", fn=lambda: sum(e.load for e in client.endpoints)
        )
        metrics.gauge(*scope, "loadbalancer", "size", fn=lambda: len(client.endpoints))
        metrics.gauge(*scope, "loadbalancer", "available", fn=client.available_count)
        metrics.gauge(*scope, "loadbalancer", "load", fn=client.total_load)
        metrics.gauge(*scope, "available", fn=client.available_count)
        metrics.gauge(
            *scope,
            "retries",
            "budget",
            fn=lambda: max(client.requeue_budget.balance(time.monotonic()), 0),
        )


class Client:
    """The client of one bound name: endpoints, balancer, failure accrual, pools, stats."""

    def __init__(
        self,
        bound: NameBound,
        policy: ClientPolicy,
        balancer: Balancer,
        accrual: FailureAccrual,
        new_pool: Callable[[Address, Client], Any],
        metrics: MetricsTree,
        scope: tuple[str, ...],
        counts_factory: Callable[[Histogram], Any] = RequestCounts,
    ) -> None:
        self.id = bound.id
        self.label = str(bound.id)
        self.policy = policy
        self.balancer = balancer
        self.accrual = accrual
        #: a success of a healthy endpoint (no failures, not ejected, not probing) changes
        #: nothing in :meth:`record`: the data path may skip the call (and its clock reading)
        self.quiet_success: bool = accrual.quiet_success and not balancer.wants_latency
        self.new_pool = new_pool
        self.metrics = metrics
        self.scope = scope
        self.endpoints: list[Endpoint] = []
        #: the endpoint when there is exactly one (the common sidecar case), else None
        self.single: Endpoint | None = None
        self._by_address: dict[tuple[str, int], Endpoint] = {}
        self.addr: Addr = AddrPending
        self.last_used = time.monotonic()
        attempt = policy.request_attempt_timeout_ms
        #: ``requestAttemptTimeoutMs`` in seconds (None: no per-attempt deadline)
        self.attempt_timeout: float | None = attempt / 1000 if attempt else None
        #: ``responseIdleTimeoutMs`` in seconds (enforced by the protocol's housekeeping)
        self.response_idle_timeout: float = policy.response_idle_timeout_ms / 1000
        self.stats = ClientStats(metrics, scope, self, counts_factory)
        budget = policy.requeue_budget
        success, failures = self.stats.success, self.stats.failures
        #: immediate retries of requests that were never written (connection failures)
        self.requeue_budget = RetryBudget(
            budget.ttl_secs,
            budget.min_retries_per_sec,
            budget.percent_can_retry,
            requests=lambda: success.value + failures.value,
        )
        self._removals = metrics.counter(*scope, "failure_accrual", "removals")
        self._revivals = metrics.counter(*scope, "failure_accrual", "revivals")
        self._probes = metrics.counter(*scope, "failure_accrual", "probes")
        self._lb_adds = metrics.counter(*scope, "loadbalancer", "adds")
        self._lb_removes = metrics.counter(*scope, "loadbalancer", "removes")
        self._lb_updates = metrics.counter(*scope, "loadbalancer", "updates")
        accrual.on_event = self._accrual_event
        self._waiters: list[asyncio.Future[None]] = []
        self._observation: Observation | None = bound.addr.observe(self._on_addr)

    # -- outcomes --------------------------------------------------------------------------
    def record(self, endpoint: Endpoint, success: bool, now: float, latency: float) -> None:
        """The outcome of one request to ``endpoint`` (called once per response)."""
        accrual = self.accrual
        if not (
            success
            and accrual.quiet_success
            and not endpoint.failures
            and not endpoint.dead_until
            and not endpoint.probing
        ):
            accrual.record(endpoint, success, now)
        balancer = self.balancer
        if balancer.wants_latency:
            balancer.observe(endpoint, latency, now)
        if endpoint.removed and not success and endpoint in self.endpoints:
            self._drop(endpoint)  # on probation: its first failure ends it

    def _accrual_event(self, endpoint: Endpoint, event: str) -> None:
        if event == "removal":
            self._removals.incr()
            log.info("%s: ejected %s after failures", self.label, endpoint.address)
        elif event == "revival":
            self._revivals.incr()
            log.info("%s: %s is back", self.label, endpoint.address)
        else:
            self._probes.incr()

    def available_count(self) -> int:
        now = asyncio_time()
        return sum(1 for e in self.endpoints if e.available(now))

    def total_load(self) -> float:
        now = asyncio_time()
        return sum(self.balancer.load(e, now) for e in self.endpoints)

    # -- address changes -------------------------------------------------------------------
    def _on_addr(self, addr: Addr) -> None:
        self.addr = addr
        if isinstance(addr, AddrBound):
            self._set_addresses(addr.addresses)
        elif addr is AddrNeg:
            self._set_addresses(frozenset())
        # Pending or Failed: keep what we have (a failing discovery backend must not empty it)
        if addr is not AddrPending:
            waiters, self._waiters = self._waiters, []
            for w in waiters:
                if not w.done():
                    w.set_result(None)

    def _set_addresses(self, addresses: frozenset[Address]) -> None:
        current = {(a.host, a.port): a for a in addresses}
        changed = False
        probation = self.balancer.probation
        for key, endpoint in list(self._by_address.items()):
            if key not in current and not endpoint.removed:
                if probation and endpoint.available(asyncio_time()):
                    endpoint.removed = True  # kept until it fails (enableProbation)
                else:
                    self._forget(key, endpoint)
                changed = True
        for key, address in current.items():
            existing = self._by_address.get(key)
            if existing is None:
                endpoint = Endpoint(address)
                endpoint.pool = self.new_pool(address, self)
                self._by_address[key] = endpoint
                self._publish(endpoint)
                self._lb_adds.incr()
                changed = True
            elif existing.removed or existing.address.meta != address.meta:
                existing.removed = False  # back in service discovery (off probation)
                existing.address = address
                existing.weight = address.weight
                changed = True
        if changed:
            self._rebuild()

    def _rebuild(self) -> None:
        self.endpoints = sorted(self._by_address.values(), key=lambda e: e.address.sort_key())
        self.single = self.endpoints[0] if len(self.endpoints) == 1 else None
        self.balancer.update(self.endpoints)
        self._lb_updates.incr()

    def _forget(self, key: tuple[str, int], endpoint: Endpoint) -> None:
        del self._by_address[key]
        endpoint.removed = True
        if endpoint.pool is not None:
            endpoint.pool.close_when_idle()  # in-flight requests finish; then it closes
        self.metrics.prune(*self.scope, "endpoint", str(endpoint.address))
        self._lb_removes.incr()

    def _drop(self, endpoint: Endpoint) -> None:
        key = (endpoint.address.host, endpoint.address.port)
        if self._by_address.get(key) is endpoint:
            self._forget(key, endpoint)
            self._rebuild()

    def _publish(self, endpoint: Endpoint) -> None:
        """Per-endpoint gauges: ``endpoint/<host:port>/{load,available,ejections}``."""
        scope = (*self.scope, "endpoint", str(endpoint.address))
        self.metrics.gauge(*scope, "load", fn=lambda: endpoint.load)
        self.metrics.gauge(*scope, "available", fn=lambda: int(endpoint.available(asyncio_time())))
        self.metrics.gauge(*scope, "ejections", fn=lambda: endpoint.ejections)

    async def wait_bound(self, timeout: float) -> None:
        """Wait (up to ``timeout``) while the address set is still pending."""
        if self.addr is not AddrPending:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await asyncio.wait_for(fut, timeout)

    def pick(self, now: float) -> Endpoint:
        """An endpoint for one request, or :class:`RouteError`."""
        single = self.single
        if single is not None and not single.dead_until:
            return single  # one healthy endpoint: nothing to balance
        endpoint = self.balancer.pick(now)
        if endpoint is None:
            addr = self.addr
            if isinstance(addr, AddrFailed):
                raise RouteError("failed", f"{self.label}: {addr.cause}")
            if addr is AddrPending:
                raise RouteError("pending", f"{self.label}: addresses are not known yet")
            raise RouteError("no-endpoints", f"No hosts are available for {self.label}")
        self.accrual.before_request(endpoint, now)
        return endpoint

    def state(self) -> dict[str, Any]:
        """The ``/client_state.json`` entry of this client: Linkerd's ``state`` and
        ``addresses``, plus each endpoint's balancer load, state and ejections."""
        addr = self.addr
        now = asyncio_time()
        if isinstance(addr, AddrBound):
            out: dict[str, Any] = {
                "state": "bound",
                "addresses": [str(a) for a in addr.sorted()],
            }
        elif isinstance(addr, AddrFailed):
            out = {
                "state": f"Failed: {addr.cause}",
                "addresses": [str(e.address) for e in self.endpoints],
            }
        else:
            out = {"state": "Neg" if addr is AddrNeg else "Pending", "addresses": []}
        out["balancer"] = type(self.balancer).__name__
        out["endpoints"] = [
            {
                "address": str(e.address),
                "weight": e.weight,
                "load": e.load,
                "balancerLoad": round(self.balancer.load(e, now), 6),
                "state": e.state(now),
                "ejections": e.ejections,
                "ejectedForMs": max(0, round((e.dead_until - now) * 1000)) if e.dead_until else 0,
            }
            for e in self.endpoints
        ]
        return out

    def close(self, *, prune: bool = True) -> None:
        """Stop watching addresses and close the pools; ``prune`` removes the client's
        metrics (and those of clients nested under its id: callers that keep those prune
        with :meth:`MetricsTree.prune_scopes` instead)."""
        if self._observation is not None:
            self._observation.close()
            self._observation = None
        for endpoint in self.endpoints:
            if endpoint.pool is not None:
                endpoint.pool.close()
        if prune:
            self.metrics.prune(*self.scope)


def backoff_of(config: BackoffConfig | None) -> Backoff:
    """The backoff stream of a ``backoff:`` config object."""
    return config.new_backoff() if config is not None else constant_backoff(0.0)


def asyncio_time() -> float:
    """The clock balancers and failure accrual compare against (``time.monotonic``)."""
    return time.monotonic()


# ---------------------------------------------------------------------------------------------
# Routes
# ---------------------------------------------------------------------------------------------


class ServiceStats:
    """The metrics of one logical name (``rt/<router>/service/<name>/...``)."""

    __slots__ = (
        "budget_exhausted",
        "counts",
        "failures",
        "latency",
        "per_request",
        "requests",
        "retries",
        "scope",
        "success",
    )

    def __init__(
        self,
        metrics: MetricsTree,
        scope: tuple[str, ...],
        counts_factory: Callable[[Histogram], Any] = RequestCounts,
    ) -> None:
        self.scope = scope
        self.budget_exhausted = metrics.counter(*scope, "retries", "budget_exhausted")
        self.per_request = metrics.stat(*scope, "retries", "per_request")
        #: what the data path increments; ``success``, ``failures``, ``requests`` derive from it
        made = metrics.request_counts(*scope, factory=counts_factory)
        self.counts, self.success, self.failures, self.requests, self.latency = made
        self.retries = metrics.counter(*scope, "retries", "total")


class Route:
    """One logical name (plus local dtab), bound and kept bound (see module docstring).

    ``choose()`` returns ``(client, residual)`` for one request, weighted across a Union.
    """

    def __init__(self, router: Router, path: Path, local_dtab: Dtab) -> None:
        self.router = router
        self.path = path
        self.local_dtab = local_dtab
        self.state: State[NameTree[NameBound]] = Pending
        #: bound (or failed), or still serving its last targets while it rebinds: a plain
        #: attribute, kept by ``_on_state``, since the data path reads it per request
        self.ready = False
        self.error: RouteError | None = RouteError("pending", "binding")
        self.last_used = time.monotonic()
        #: whatever the protocol caches per route (header blocks, classifier)
        self.protocol_data: Any = None
        #: set by close(): the router no longer serves this route (evicted, idle or closing),
        #: so a protocol that cached it must look the name up again
        self.closed = False
        #: (client, residual) when the name is bound to exactly one bound name, else None:
        #: what ``choose()`` returns without choosing
        self.single: tuple[Client, Path] | None = None
        self._targets: list[tuple[Client, Path] | RouteError] = []
        self._cumulative: list[float] = []
        self._total = 0.0
        self._waiters: list[asyncio.Future[None]] = []
        self.policy: ServicePolicy = router.service_policy(path)
        self.service = router.service_stats(path)
        #: retries of retryable failures (``service.retries``): the service's budget and the
        #: backoff between attempts; None when the service does not retry
        self.retry_budget: RetryBudget | None = None
        self.retry_backoff: Backoff = constant_backoff(0.0)
        retries = self.policy.retries
        if retries is not None:
            self.retry_budget = router.retry_budget(path, retries)
            if retries.backoff is not None:
                self.retry_backoff = backoff_of(retries.backoff)
        timeout = self.policy.total_timeout_ms
        #: ``totalTimeoutMs`` in seconds (None: no deadline)
        self.total_timeout: float | None = timeout / 1000 if timeout else None
        self.activity = router.interpreter.bind(router.dtab + local_dtab, path)
        self._observation: Observation | None = self.activity.observe(self._on_state)

    def _on_state(self, state: State[NameTree[NameBound]]) -> None:
        self.state = state
        if state is Pending:
            self.ready = bool(self._targets)
            if not self._targets:
                self.error = RouteError("pending", "binding")
            return
        self.ready = True
        if isinstance(state, Failed):
            self.error = RouteError("failed", str(state.error) or type(state.error).__name__)
            self._targets = []
            self.single = None
        else:
            assert isinstance(state, Ok)
            self._build(state.value)
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _build(self, tree: NameTree[NameBound]) -> None:
        targets: list[tuple[Client, Path] | RouteError] = []
        weights: list[float] = []

        def add(t: NameTree[NameBound], weight: float) -> None:
            if isinstance(t, Leaf):
                targets.append((self.router.client(t.value), t.value.residual))
            elif isinstance(t, Union):
                for w in t.trees:
                    if w.weight > 0:
                        add(w.tree, weight * w.weight)
                return
            elif t is Neg:
                targets.append(RouteError("neg", f"no route to {self.path}"))
            elif t is Fail:
                targets.append(RouteError("fail", f"{self.path} bound to fail (!)"))
            elif t is Empty:
                targets.append(RouteError("empty", f"{self.path} bound to an empty set ($)"))
            else:  # pragma: no cover - bound trees contain no Alt
                targets.append(RouteError("failed", f"unexpected tree {t!r}"))
            weights.append(weight)

        add(tree, 1.0)
        self._targets = targets
        self.single = targets[0] if len(targets) == 1 and isinstance(targets[0], tuple) else None
        self._cumulative = list(itertools.accumulate(weights))
        self._total = self._cumulative[-1] if self._cumulative else 0.0
        self.error = None if targets else RouteError("neg", f"no route to {self.path}")
        if len(targets) == 1 and isinstance(targets[0], RouteError):
            self.error = targets[0]

    def choose(self, rng: Callable[[], float] = random.random) -> tuple[Client, Path]:
        """The client (and residual) for one request, or raise :class:`RouteError`."""
        targets = self._targets
        if len(targets) == 1:
            target = targets[0]
        elif not targets:
            error = self.error
            raise error.fresh() if error else RouteError("neg", f"no route to {self.path}")
        else:
            i = bisect.bisect_right(self._cumulative, rng() * self._total)
            target = targets[min(i, len(targets) - 1)]
        if isinstance(target, RouteError):
            raise target.fresh()
        return target

    async def wait(self, timeout: float) -> None:
        """Wait until the name is bound (or failed); raise TimeoutError after ``timeout``."""
        if self.ready:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        await asyncio.wait_for(fut, timeout)

    def close(self) -> None:
        self.closed = True
        if self._observation is not None:
            self._observation.close()
            self._observation = None


class Router:
    """Routes and clients of one router, with the binding-cache limits of its config."""

    def __init__(
        self,
        config: RouterConfig,
        interpreter: NameInterpreter,
        metrics: MetricsTree,
        *,
        new_pool: Callable[[Address, Client], Any],
        balancer_factory: Callable[[ClientPolicy], Balancer],
        accrual_factory: Callable[[ClientPolicy], FailureAccrual],
        counts_factory: Callable[[Histogram], Any] = RequestCounts,
    ) -> None:
        self.config = config
        self.label = config.effective_label
        self.interpreter = interpreter
        self.dtab = config.dtab
        self.metrics = metrics
        self.new_pool = new_pool
        self.balancer_factory = balancer_factory
        self.accrual_factory = accrual_factory
        #: the class of the request counts of clients and services (see metrics.RequestCounts)
        self.counts_factory = counts_factory
        self.routes: OrderedDict[tuple[Path, Dtab], Route] = OrderedDict()
        #: routes without a local dtab, by name (protocols may read it for a faster lookup)
        self.plain: dict[Path, Route] = {}
        self.clients: OrderedDict[Path, Client] = OrderedDict()
        self._services: dict[Path, ServiceStats] = {}
        self._budgets: dict[Path, RetryBudget] = {}
        #: routes per logical name (one per local dtab): a name whose last route goes loses
        #: its stats and budget too (see _drop_services)
        self._route_counts: dict[Path, int] = {}
        #: names whose last route the LRU evicted, for the next expire_idle
        self._unused: list[Path] = []
        self.max_routes = config.binding_cache.paths
        self.max_clients = config.binding_cache.clients
        self.idle_ttl = float(config.binding_cache.idle_ttl_secs)
        self._evicts = {
            kind: metrics.counter("rt", self.label, "bindcache", kind, "evicts")
            for kind in ("path", "client")
        }
        self._misses = {
            kind: metrics.counter("rt", self.label, "bindcache", kind, "misses")
            for kind in ("path", "client")
        }

    def route(self, path: Path, local_dtab: Dtab) -> Route:
        """The (cached) route of a logical name and local dtab."""
        if local_dtab is _EMPTY_DTAB:  # the common case: one dict lookup on a cached hash
            route = self.plain.get(path)
            if route is not None:
                return route
        key = (path, local_dtab)
        route = self.routes.get(key)
        if route is None:
            self._misses["path"].incr()
            route = self.routes[key] = Route(self, path, local_dtab)
            self._route_counts[path] = self._route_counts.get(path, 0) + 1
            if not local_dtab:
                self.plain[path] = route
            if len(self.routes) > self.max_routes:
                (old_path, old_dtab), old = self.routes.popitem(last=False)
                if self._forget(old_path, old_dtab, old):
                    # (its stats go at the next expire_idle: pruning metrics walks the whole
                    # tree, too much to do per request when names churn past ``paths``)
                    self._unused.append(old_path)
        return route

    def _forget(self, path: Path, local_dtab: Dtab, route: Route) -> bool:
        """Close an evicted route; True when it was the last route of its logical name."""
        route.close()
        if not local_dtab:
            self.plain.pop(path, None)
        self._evicts["path"].incr()
        left = self._route_counts.get(path, 1) - 1
        if left > 0:
            self._route_counts[path] = left
            return False
        self._route_counts.pop(path, None)
        return True

    def _drop_services(self, paths: list[Path]) -> None:
        """Forget the stats and retry budgets of logical names no route uses any more, and
        prune their ``rt/<router>/service/<name>/...`` metrics: a name seen once must not
        cost memory forever (logical names come from requests: Host headers are the
        clients' to choose)."""
        scopes = []
        for path in paths:
            if path in self._route_counts:
                continue  # routed again meanwhile: the new route uses these stats
            self._budgets.pop(path, None)
            stats = self._services.pop(path, None)
            if stats is not None:
                scopes.append(stats.scope)
        if scopes:
            keep = [stats.scope for stats in self._services.values()]
            self.metrics.prune_scopes(scopes, keep)

    def client(self, bound: NameBound) -> Client:
        client = self.clients.get(bound.id)
        if client is None:
            self._misses["client"].incr()
            policy = client_policy(self.config.client, bound.id)
            scope = ("rt", self.label, "client", *_stat_path(bound.id))
            client = Client(
                bound,
                policy,
                self.balancer_factory(policy),
                self.accrual_factory(policy),
                self.new_pool,
                self.metrics,
                scope,
                self.counts_factory,
            )
            self.clients[bound.id] = client
            if len(self.clients) > self.max_clients:
                _, old = self.clients.popitem(last=False)
                old.close()
                self._evicts["client"].incr()
        return client

    def service_policy(self, path: Path) -> ServicePolicy:
        return service_policy(self.config.service, path)

    def retry_budget(self, path: Path, retries: RetriesConfig) -> RetryBudget:
        """The retry budget of a logical name, shared by its routes (one per service)."""
        budget = self._budgets.get(path)
        if budget is None:
            stats = self.service_stats(path)
            success, failures = stats.success, stats.failures
            b = retries.budget
            budget = self._budgets[path] = RetryBudget(
                b.ttl_secs,
                b.min_retries_per_sec,
                b.percent_can_retry,
                requests=lambda: success.value + failures.value,
            )
            self.metrics.gauge(
                *stats.scope,
                "retries",
                "budget",
                fn=lambda: max(budget.balance(time.monotonic()), 0),
            )
        return budget

    def service_stats(self, path: Path) -> ServiceStats:
        stats = self._services.get(path)
        if stats is None:
            stats = self._services[path] = ServiceStats(
                self.metrics,
                ("rt", self.label, "service", *_stat_path(path)),
                self.counts_factory,
            )
        return stats

    def expire_idle(self, now: float | None = None) -> None:
        """Close routes and clients unused for ``idleTtlSecs`` (and prune their metrics)."""
        now = time.monotonic() if now is None else now
        unused, self._unused = self._unused, []
        for key, route in list(self.routes.items()):
            if now - route.last_used > self.idle_ttl:
                del self.routes[key]
                if self._forget(key[0], key[1], route):
                    unused.append(key[0])
        if unused:
            self._drop_services(unused)
        in_use = {
            id(t[0]) for r in self.routes.values() for t in r._targets if isinstance(t, tuple)
        }
        closed: list[tuple[str, ...]] = []
        for bound_id, client in list(self.clients.items()):
            if id(client) not in in_use and now - client.last_used > self.idle_ttl:
                client.close(prune=False)
                del self.clients[bound_id]
                closed.append(client.scope)
                self._evicts["client"].incr()
        if closed:  # (a client nested under a closed one's id keeps its metrics)
            self.metrics.prune_scopes(closed, keep=[c.scope for c in self.clients.values()])

    def client_state(self) -> dict[str, Any]:
        return {str(cid): c.state() for cid, c in self.clients.items()}

    def adopt(
        self,
        old: Router,
        *,
        clients: bool,
        services: bool,
        keep_client: Callable[[Path], bool] | None = None,
        on_endpoint: Callable[[Endpoint], None] | None = None,
    ) -> None:
        """A reload (a protocol's ``start_from``): take over ``old``'s routing state that the
        new config did not change. With ``clients`` (an equal ``client`` section), ``old``'s
        clients that ``keep_client`` accepts move here with their balancer state, ejections
        and endpoints (their pools made by this router from now on; ``on_endpoint`` re-points
        each existing endpoint's pool at the new protocol runtime). With ``services`` (an equal
        ``service`` section), the per-name stats and retry budgets move too."""
        if clients:
            for client_id, client in list(old.clients.items()):
                if keep_client is not None and not keep_client(client_id):
                    continue
                client.new_pool = self.new_pool
                if on_endpoint is not None:
                    for endpoint in client.endpoints:
                        on_endpoint(endpoint)
                self.clients[client_id] = client
                del old.clients[client_id]
        if services:
            self._services.update(old._services)
            self._budgets.update(old._budgets)

    async def prebind(self, old: Router, timeout: float = 2.0) -> int:
        """A reload, after :meth:`adopt` and before the servers move here: bind, under this
        router's dtab and interpreter, every name ``old`` has a route for (the most recently
        used ``bindingCache.paths``), and wait up to ``timeout`` seconds until they are bound,
        so that the first requests after the swap find their names bound (those whose binding
        did not change, on the clients adopted with their balancer state). A name still
        binding then is waited for by its requests, as any new name is. Returns how many
        names were bound here."""
        made: list[Route] = []
        for path, local_dtab in list(old.routes)[-self.max_routes :]:
            key = (path, local_dtab)
            if key in self.routes:
                continue
            route = self.routes[key] = Route(self, path, local_dtab)
            self._route_counts[path] = self._route_counts.get(path, 0) + 1
            if not local_dtab:
                self.plain[path] = route
            made.append(route)
        waiting = [r.wait(timeout) for r in made if not r.ready]
        if waiting:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), timeout)
        return len(made)

    def close(self) -> None:
        for route in self.routes.values():
            route.close()
        for client in self.clients.values():
            client.close()
        self.routes.clear()
        self.plain.clear()
        self.clients.clear()
        self._route_counts.clear()
        self._unused.clear()


def take_over_servers(new: list[Any], old: list[Any], runtime: Any) -> tuple[list[Any], list[Any]]:
    """A reload (a protocol's ``start_from``): the servers of the new runtime, where each of
    ``new`` whose address (``ip``, ``port``; not port 0) a running server of ``old`` has is
    replaced by that server, told ``adopt(runtime, config)`` (it keeps its listening socket
    and connections); and the servers moved. The caller removes the moved ones from the old
    runtime and starts the others (those whose ``server`` is None)."""
    by_address = {(s.ip, s.port): s for s in old if s.server is not None}
    servers: list[Any] = []
    moved: list[Any] = []
    for server in new:
        prior = by_address.pop((server.ip, server.port), None) if server.port else None
        if prior is None:
            servers.append(server)
            continue
        prior.adopt(runtime, server.config)
        moved.append(prior)
        servers.append(prior)
    return servers, moved
