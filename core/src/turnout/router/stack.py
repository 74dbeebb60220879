"""The request stack: everything that happens to a request between "a protocol read it and
named it" and "its answer was written" that is not about the protocol's bytes.

Finagle builds a client and a server from a ``Stack`` of modules; turnout keeps the same
pieces but lays them out flat, as methods of one class, so that a compiled data path calls
them directly (see docs/architecture.md and docs/performance.md). The pieces, in the order
a request meets them:

========================  ====================================================================
piece                     methods
========================  ====================================================================
routing                   :meth:`RequestStack.route_to`, :meth:`~RequestStack.choose`,
                          :meth:`~RequestStack.no_route` (binding waits, balancer pick)
attempt                   :meth:`~RequestStack.attempt` (endpoint load, attempt count, timers)
deadline                  :meth:`~RequestStack.arm`, :meth:`~RequestStack.deadline`,
                          :meth:`~RequestStack.on_timeout` (``totalTimeoutMs``, the server's
                          ``timeoutMs``, ``requestAttemptTimeoutMs``; never early)
retry                     :meth:`~RequestStack.may_retry`, :meth:`~RequestStack.retry`
                          (classifier verdict, budget, backoff, ``MAX_RETRIES``)
requeue                   :meth:`~RequestStack.requeue_or_fail` (a request never written goes
                          to another endpoint at once, within the client's requeue budget)
feedback                  :meth:`~RequestStack.release_endpoint`, :meth:`~RequestStack.complete`
                          (endpoint load, failure accrual and balancer latency)
stats                     :meth:`~RequestStack.finish` (server, service and client counts,
                          latency histograms, ``failures/<class>``)
spans                     :meth:`~RequestStack.trace_client`, :meth:`~RequestStack.trace_server`
========================  ====================================================================

A protocol router subclasses :class:`RequestStack` and implements its *protocol hooks*
(the methods that raise :class:`NotImplementedError` here): write an attempt to an endpoint
(:meth:`~RequestStack.send`), stop one (:meth:`~RequestStack.cancel_attempt`), answer a
failure itself (:meth:`~RequestStack.fail`), say whether a request can be sent again
(:meth:`~RequestStack.resendable`), and what its spans are called. Its request object
subclasses :class:`Call`. It calls the stack at three moments: when a request is named
(:meth:`~RequestStack.route_to`, then :meth:`~RequestStack.routed`), when an attempt's
response is classified (:meth:`~RequestStack.complete` or :meth:`~RequestStack.retry`), and
when an attempt breaks (:meth:`~RequestStack.requeue_or_fail`). Retries, deadlines, requeues,
failure accrual, balancer feedback, stats and spans then come by construction.

This module is compiled together with the HTTP data path in the mypyc build (the plugin's
``setup.py`` compiles a copy of this file): keep it free of relative imports and of
per-request allocations that can be avoided.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import math
import time
import types
from collections.abc import Callable
from typing import Any, Final

from turnout.metrics import BOUNDS, Histogram, MetricsTree
from turnout.naming import Address, Dtab, Path
from turnout.router.endpoint import Endpoint
from turnout.router.routing import Client, Route, RouteError, Router
from turnout.tracing import ServerTrace, Span, Tracing

#: a response classifier's verdicts (``turnout_protocol_http.classifiers`` uses the same)
SUCCESS: Final = 0
FAILURE: Final = 1
RETRYABLE: Final = 2

#: connection-level failures a request may be requeued for (never written), per request
MAX_REQUEUES: Final = 5
#: retries of one request, whatever the budget says (a budget can be configured very large)
MAX_RETRIES: Final = 25

monotonic: Final = time.monotonic
_EMPTY_DTAB: Final = Dtab.empty
log = logging.getLogger("turnout.router")

_BOUNDS: Final[list[float]] = list(BOUNDS)
_N_BOUNDS: Final = len(_BOUNDS)
_FIRST_BOUND: Final = _BOUNDS[0]
_LAST_BOUND: Final = _BOUNDS[-1]
_INV_LOG_RATIO: Final = 1.0 / math.log(_BOUNDS[1] / _BOUNDS[0])


def _native_bucket(value: float) -> int:
    """``turnout.metrics.bucket(value)`` (``bisect_left`` into the histogram bounds), found
    from the bounds' geometric progression and settled by comparing with the bounds
    themselves: the same index, for a fraction of the bisection's comparisons.

    Used only when this module is compiled (see :data:`_COMPILED`): interpreted, this
    arithmetic costs more than ``bisect``'s in C."""
    if not value > _FIRST_BOUND:  # (NaN included, as bisect_left has it)
        return 0
    if value > _LAST_BOUND:
        return _N_BOUNDS
    i = int(math.log(value / _FIRST_BOUND) * _INV_LOG_RATIO)
    if i > _N_BOUNDS:
        i = _N_BOUNDS
    bounds = _BOUNDS
    while i > 0 and bounds[i - 1] >= value:
        i -= 1
    while i < _N_BOUNDS and bounds[i] < value:
        i += 1
    return i


#: this module was compiled by mypyc (its functions are not Python functions)
_COMPILED: Final = not isinstance(_native_bucket, types.FunctionType)


class Counts:
    """:class:`turnout.metrics.RequestCounts` of the stack (servers, services and clients):
    compiled, ``success`` and ``failures`` are native ints, and the metrics tree reads them as
    derived counters. Pass it as the core router's ``counts_factory``."""

    __slots__ = ("failures", "latency", "success")

    def __init__(self, latency: Histogram) -> None:
        self.success = 0
        self.failures = 0
        #: (a new ``counts`` array each window: telemeters tell windows apart by identity)
        self.latency: Any = latency


class Tally:
    """One ``status/<code>`` count (a native int when compiled; exported as a derived
    counter)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class ServerStats:
    """``rt/<router>/server/<ip>/<port>/...``: what every server of every protocol counts
    (requests, success, failures, latency, ``status/<code>``, connects, rejected). A protocol
    may subclass it to add its own."""

    def __init__(self, metrics: MetricsTree, scope: tuple[str, ...]) -> None:
        self.metrics = metrics
        self.scope = scope
        made = metrics.request_counts(*scope, factory=Counts)
        #: what the data path increments; ``success``/``failures``/``requests`` derive from it
        self.counts: Counts = made[0]
        self.success, self.failures, self.requests, self.latency = made[1:]
        self.connects = metrics.counter(*scope, "connects")
        self.rejected = metrics.counter(*scope, "rejected")
        #: ``status/<code>`` counts; ``status/<N>XX`` are their sums
        self.codes: dict[int, Tally] = {}

    def status(self, code: int) -> Tally:
        counter = self.codes.get(code)
        if counter is None:
            m, s = self.metrics, self.scope
            tally = counter = self.codes[code] = Tally()
            m.derived_counter(*s, "status", str(code), fn=lambda: tally.value)
            klass = code // 100
            m.sum_counter(
                *s,
                "status",
                f"{klass}XX",
                parts=lambda: [c for k, c in self.codes.items() if k // 100 == klass],
            )
        return counter


class RouteCache:
    """What the stack caches per route (in ``Route.protocol_data``) so that the common path
    reads plain attributes: the service's counts, whether it retries, its total timeout, and
    the last client's counts. A protocol may subclass it (:meth:`RequestStack.route_cache`)."""

    def __init__(self, route: Route) -> None:
        self.route = route
        #: ``route.service.counts``, and whether the service retries (its counts to update)
        self.service_counts: Counts = route.service.counts
        self.retries = route.retry_budget is not None
        #: ``route.total_timeout``
        self.total_timeout: float | None = route.total_timeout
        #: the last client seen on this route, and its counts
        self.last_client: Client | None = None
        self.last_counts: Counts | None = None


class Call:
    """The protocol-independent state of one request in the stack.

    A protocol's request object subclasses it and adds its framing state. Class-level
    defaults: creating one sets only what differs per request (``start``).
    """

    #: the name the request was identified as, its route, client and residual path
    dst: Path | None = None
    route: Route | None = None
    #: the route's :class:`RouteCache` (set with ``route``)
    extras: RouteCache | None = None
    client: Client | None = None
    residual: Path | None = None
    #: the endpoint of the attempt in progress (its ``load`` counts this request)
    endpoint: Endpoint | None = None
    attempts = 0
    requeues = 0
    attempt_start = 0.0
    #: the service's retry backoff stream, made at the first retry
    backoffs: Any = None
    #: the one deadline timer of the attempt in progress (see RequestStack.arm)
    timer: Any = None
    #: the request's trace (a turnout.tracing.ServerTrace) when a tracer sampled it
    trace: Any = None
    #: the attempt's request was (at least partly) written to its endpoint
    written = False
    #: the answer's status (an HTTP status code, or the protocol's equivalent mapped to one)
    status = 0
    response_started = False
    finished = False
    #: why the request failed, for ``failures/<class>`` counters (None: by its status)
    failure: str | None = None

    def __init__(self, start: float) -> None:
        self.start = start


def core_router(
    config: Any, ctx: Any, new_pool: Callable[[Address, Client], Any], counts_factory: Any = Counts
) -> Router:
    """The binding cache of a protocol router built from its ``RouterConfig`` and the
    ``BuildContext`` its ``new_router(ctx)`` received: the policy's balancer and failure
    accrual per client, the stack's :class:`Counts`. ``new_pool(address, client)`` makes the
    protocol's connection pool of a new endpoint (``Endpoint.pool``)."""
    from turnout.router import accrual_for, balancer_for

    return Router(
        config,
        ctx.interpreter,
        ctx.metrics,
        new_pool=new_pool,
        balancer_factory=balancer_for,
        accrual_factory=accrual_for,
        counts_factory=counts_factory,
    )


def tracing_of(ctx: Any) -> Tracing | None:
    """The linker's tracers from a ``BuildContext`` (None: nothing traces)."""
    linker = ctx.linker
    return linker.tracing if linker is not None else None


class RequestStack:
    """The protocol-independent request policy of one router; see the module docstring."""

    def __init__(
        self,
        core: Router,
        metrics: MetricsTree,
        label: str,
        dtab: Dtab,
        tracing: Tracing | None,
        binding_timeout: float,
    ) -> None:
        self.core = core
        self.metrics = metrics
        self.label = label
        self.dtab = dtab
        #: the linker's tracers, or None: then nothing on the request path traces
        self.tracing = tracing
        self.binding_timeout = binding_timeout
        self.draining = False
        #: the span tag that carries a request's status (HTTP: ``http.status_code``)
        self.status_tag = "l5d.status"

    # == protocol hooks ========================================================================
    def send(self, call: Call, endpoint: Endpoint) -> None:
        """Protocol hook: write the request of ``call`` to ``endpoint`` (the stack has counted
        the attempt and armed its deadline). Report what happens next through
        :meth:`complete`, :meth:`retry` or :meth:`requeue_or_fail`."""
        raise NotImplementedError

    def cancel_attempt(self, call: Call) -> None:
        """Protocol hook: stop the I/O of the attempt in progress (close its connection, never
        to be reused; withdraw a wait for a connection). The stack releases the endpoint."""
        raise NotImplementedError

    def fail(self, call: Call, status: int, message: str, summary: str | None = None) -> None:
        """Protocol hook: answer ``call`` with a failure of turnout's own (``status`` as HTTP
        names it: 502 cannot route or reach, 503 timeouts and refusals; ``summary``: a
        one-line form of a long ``message``, for a header) and then call :meth:`finish`."""
        raise NotImplementedError

    def resendable(self, call: Call) -> bool:
        """Protocol hook: the request can be written again in full (its body is complete and
        was kept, or it has none): a condition of retries."""
        raise NotImplementedError

    def requeueable(self, call: Call) -> bool:
        """Protocol hook: a request never written can still go elsewhere (nothing of its body
        was consumed, or what was is kept). By default :meth:`resendable`."""
        return self.resendable(call)

    def classify_error(self, call: Call) -> int:
        """Protocol hook: the verdict for an attempt that ended without a response (timeout,
        reset): :data:`RETRYABLE` or :data:`FAILURE`. By default retryable only when it was
        never written."""
        return FAILURE if call.written else RETRYABLE

    def prepare_resend(self, call: Call) -> None:
        """Protocol hook: reset per-attempt protocol state before a retry or a requeue is
        sent (put back the kept body, forget the last response)."""

    def server_timeout(self, call: Call) -> float | None:
        """Protocol hook: the server's ``timeoutMs`` (seconds) for ``call``, if any."""
        return None

    def server_stats(self, call: Call) -> ServerStats:
        """Protocol hook: the stats of the server ``call`` arrived on."""
        raise NotImplementedError

    def route_cache(self, route: Route) -> RouteCache:
        """Protocol hook: a new :class:`RouteCache` for ``route`` (a protocol's subclass may
        cache more: classifier, header blocks)."""
        return RouteCache(route)

    def closing(self, call: Call) -> bool:
        """Protocol hook: the connection ``call`` arrived on is closing (no retry then)."""
        return False

    def flush(self, call: Call) -> None:
        """Protocol hook: write out what was buffered for ``call``'s connection (called after
        work done outside the protocol's own callbacks: timers, binding waits)."""

    def finished(self, call: Call, success: bool, elapsed_ms: float) -> None:
        """Protocol hook: ``call`` is over and counted (access log, connection bookkeeping)."""

    def span_name(self, call: Call) -> str:
        """Protocol hook: the name of ``call``'s spans (HTTP: the method)."""
        return "request"

    def span_tags(self, call: Call, server: bool) -> dict[str, str]:
        """Protocol hook: tags of ``call``'s server span (``server``) or client span."""
        return {}

    def span_peer(self, call: Call) -> tuple[str | None, int | None]:
        """Protocol hook: the downstream peer of ``call`` (its server span's remote end)."""
        return None, None

    # == housekeeping ==========================================================================
    def sweep(self, now: float) -> None:
        """Once a second (see :meth:`housekeeping`): routes and clients unused for
        ``bindingCache.idleTtlSecs`` go. A protocol extends it with its own idle timeouts."""
        self.core.expire_idle(now)

    async def housekeeping(self) -> None:
        """Run :meth:`sweep` once a second until cancelled (a router starts it as a task in
        ``start()`` and cancels it in ``close()``)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                self.sweep(monotonic())
            except Exception:  # the sweeper must survive anything
                log.exception("sweep of router %s failed", self.label)

    # == routing ===============================================================================
    def route_to(self, dst: Path, local: Dtab) -> Route:
        """The route of ``dst`` under the request's own dtab ``local`` (shared and cached by
        the core router; a name without one is looked up without calling into it)."""
        if local is _EMPTY_DTAB:
            route = self.core.plain.get(dst)
            if route is not None:
                return route
        return self.core.route(dst, local)

    def routed(self, call: Call, route: Route, now: float) -> None:
        """Send ``call`` on ``route``: at once when the route is bound, else after binding
        (within ``bindingTimeoutMs``; the protocol may pause reading meanwhile)."""
        route.last_used = now
        call.route = route
        extras = route.protocol_data
        if extras is None:
            extras = route.protocol_data = self.route_cache(route)
        call.extras = extras
        if not route.ready:
            asyncio.get_running_loop().create_task(self._await_route(call))
            return
        self.choose(call, now)

    async def _await_route(self, call: Call) -> None:
        route = call.route
        assert route is not None
        try:
            await route.wait(self.binding_timeout)
        except TimeoutError:
            self.no_route(
                call,
                RouteError(
                    "timeout",
                    f"Exceeded {self.binding_timeout:g}s binding timeout while resolving name: "
                    f"{call.dst}",
                ),
            )
        else:
            if not call.finished:
                self.choose(call, monotonic())
        self.flush(call)

    def choose(self, call: Call, now: float) -> None:
        """Pick a client of the route (by weight) and an endpoint of it (by the balancer)."""
        route: Route = call.route  # type: ignore[assignment]  # (set by routed())
        single = route.single
        if single is not None:
            client, residual = single
        else:
            try:
                client, residual = route.choose()
            except RouteError as e:
                self.no_route(call, e)
                return
        call.client = client
        call.residual = residual
        client.last_used = now
        endpoint = client.single
        try:
            if endpoint is None or endpoint.dead_until:
                endpoint = client.pick(now)
        except RouteError as e:
            if e.kind == "pending":
                asyncio.get_running_loop().create_task(self._await_client(call, client))
            else:
                self.no_route(call, e)
            return
        self.attempt(call, endpoint)

    async def _await_client(self, call: Call, client: Client) -> None:
        with contextlib.suppress(TimeoutError):
            await client.wait_bound(self.binding_timeout)
        if not call.finished:
            try:
                endpoint = client.pick(monotonic())
            except RouteError as e:
                self.no_route(call, e)
            else:
                self.attempt(call, endpoint)
        self.flush(call)

    def no_route(self, call: Call, err: RouteError) -> None:
        """Answer 502 with Linkerd's explanation of a name that did not bind."""
        call.failure = "binding_timeout" if err.kind == "timeout" else "no_route"
        self.fail(call, 502, self.explain(call, err), f"Unable to route request! {err}")

    def explain(self, call: Call, err: RouteError) -> str:
        route = call.route
        local = route.local_dtab if route is not None else Dtab.empty
        full = self.dtab + local
        lines = [
            "Unable to route request!",
            "",
            f"service name: {call.dst}",
            f"reason: {err}",
            "dtab:",
            f"  {full}" if len(full) else "  (empty)",
            "base dtab:",
            f"  {self.dtab}" if len(self.dtab) else "  (empty)",
            "override dtab:",
            f"  {local}" if len(local) else "  (empty)",
            "",
            f"explain it with: turnout dtab delegate --config <config> --router {self.label} "
            f"{call.dst}  (or the admin's /delegator.json?namespace={self.label}&path={call.dst})",
        ]
        return "\n".join(lines)

    # == attempt ===============================================================================
    def attempt(self, call: Call, endpoint: Endpoint) -> None:
        """Start an attempt on ``endpoint``: count it, arm its deadline, let the protocol
        write it."""
        endpoint.load += 1
        call.endpoint = endpoint
        call.attempts += 1
        call.attempt_start = now = monotonic()
        if call.trace is not None:
            Tracing.start_client(call.trace)
        extras: RouteCache = call.extras  # type: ignore[assignment]  # (set by routed())
        if (
            extras.total_timeout is not None
            or call.client.attempt_timeout is not None  # type: ignore[union-attr]  # (set by choose())
            or self.server_timeout(call) is not None
        ):
            self.arm(call, now)
        self.send(call, endpoint)

    # == deadline ==============================================================================
    def arm(self, call: Call, now: float) -> None:
        """One timer per attempt, at the nearest of its deadlines."""
        deadline = self.deadline(call, now)
        if call.timer is not None:
            call.timer.cancel()
        call.timer = asyncio.get_running_loop().call_later(
            max(deadline - now, 0.0), self.on_timeout, call
        )

    def deadline(self, call: Call, attempt_start: float) -> float:
        """The nearest of totalTimeoutMs, the server's timeoutMs and, while an attempt is in
        progress, requestAttemptTimeoutMs (``inf`` when none applies)."""
        total = call.route.total_timeout  # type: ignore[union-attr]  # (set by routed())
        attempt = call.client.attempt_timeout  # type: ignore[union-attr]  # (set by choose())
        server = self.server_timeout(call)
        deadline = call.start + total if total is not None else float("inf")
        if server is not None and call.start + server < deadline:
            deadline = call.start + server
        if attempt is not None and call.endpoint is not None and attempt_start + attempt < deadline:
            deadline = attempt_start + attempt
        return deadline

    def disarm(self, call: Call) -> None:
        """The response has begun (or the request ended): deadlines no longer apply."""
        timer = call.timer
        if timer is not None:
            timer.cancel()
            call.timer = None

    def on_timeout(self, call: Call) -> None:
        call.timer = None
        if call.finished or call.response_started:
            return
        now = monotonic()
        deadline = self.deadline(call, call.attempt_start)
        if now < deadline:
            # the loop's timers may fire early by up to a clock tick (uvloop counts in
            # milliseconds): a deadline never passes before its time
            call.timer = asyncio.get_running_loop().call_later(
                deadline - now, self.on_timeout, call
            )
            return
        route: Route = call.route  # type: ignore[assignment]  # (a timer is armed after routing)
        client = call.client
        total = route.total_timeout
        server_timeout = self.server_timeout(call)
        self.cancel_attempt(call)
        self.release_endpoint(call, success=False)
        if server_timeout is not None and now >= call.start + server_timeout:
            call.failure = "server_timeout"
            self.fail(call, 503, f"exceeded the server's timeoutMs of {server_timeout * 1000:g} ms")
        elif total is not None and now >= call.start + total:
            call.failure = "total_timeout"
            self.fail(call, 503, f"exceeded totalTimeoutMs of {total * 1000:g} ms")
        else:
            attempt = client.attempt_timeout if client is not None else None
            call.failure = "attempt_timeout"
            if self.classify_error(call) == RETRYABLE and self.may_retry(call, now):
                call.failure = None
                self.retry(call)
            else:
                self.fail(
                    call, 503, f"exceeded requestAttemptTimeoutMs of {(attempt or 0) * 1000:g} ms"
                )
        self.flush(call)

    # == retry =================================================================================
    def may_retry(self, call: Call, now: float) -> bool:
        """A failed attempt may be sent again: the service retries, the request can be
        written again, fewer than MAX_RETRIES retries, time left, and budget withdrawn."""
        route: Route = call.route  # type: ignore[assignment]  # (retries follow an attempt)
        budget = route.retry_budget
        if budget is None or self.draining or self.closing(call):
            return False
        if not self.resendable(call):
            return False
        if call.attempts - call.requeues > MAX_RETRIES:
            return False
        if route.total_timeout is not None and now >= call.start + route.total_timeout:
            return False
        if not budget.try_withdraw(now):
            route.service.budget_exhausted.value += 1
            return False
        return True

    def retry(self, call: Call) -> None:
        """Send ``call`` again after the service's retry backoff (its previous attempt was
        released: see :meth:`release_endpoint`; :meth:`may_retry` said yes)."""
        if call.finished:
            return
        route: Route = call.route  # type: ignore[assignment]  # (retries follow an attempt)
        call.written = False
        route.service.retries.value += 1
        # the last attempt's deadline is over; during the backoff only the request's own
        # deadlines (total, server) run
        self.disarm(call)
        if call.backoffs is None:
            call.backoffs = route.retry_backoff()
        delay = next(call.backoffs)
        if delay > 0:
            now = monotonic()
            if self.deadline(call, now) != float("inf"):
                self.arm(call, now)
            asyncio.get_running_loop().call_later(delay, self._retry_now, call)
        else:
            self._retry_now(call)

    def _retry_now(self, call: Call) -> None:
        if call.finished:
            return
        call.status = 0
        self.prepare_resend(call)
        self.choose(call, monotonic())
        self.flush(call)

    # == requeue ===============================================================================
    def requeue_or_fail(self, call: Call, message: str, *, never_written: bool) -> None:
        """An attempt failed at the connection level: send it at once to another endpoint
        (within the client's requeue budget and MAX_REQUEUES) when the request was never
        written, else answer 502 with ``message``. Set ``call.failure`` first."""
        client = call.client
        now = monotonic()
        self.release_endpoint(call, success=False)
        call.written = False
        if (
            never_written
            and call.requeues < MAX_REQUEUES
            and client is not None
            and not self.closing(call)
            and self.requeueable(call)
        ):
            if client.requeue_budget.try_withdraw(now):
                call.requeues += 1
                client.stats.requeues.value += 1
                try:
                    endpoint = client.pick(now)
                except RouteError:
                    pass
                else:
                    self.prepare_resend(call)
                    self.attempt(call, endpoint)
                    return
            else:
                client.stats.budget_exhausted.value += 1
        self.fail(call, 502, message)

    # == feedback ==============================================================================
    def release_endpoint(self, call: Call, *, success: bool) -> None:
        """The attempt in progress is over: the endpoint's load drops, and its outcome and
        latency go to failure accrual and the balancer (and to a client span)."""
        endpoint = call.endpoint
        if endpoint is None:
            return
        call.endpoint = None
        endpoint.load -= 1
        client = call.client
        if client is not None:
            now = monotonic()
            client.record(endpoint, success, now, now - call.attempt_start)
        if call.trace is not None:
            self.trace_client(call, endpoint, call.status, call.failure or "failed")

    def complete(self, call: Call, success: bool) -> None:
        """The response of the attempt in progress is complete (``success``: the classifier's
        verdict): feed it back and finish the request."""
        endpoint = call.endpoint
        if endpoint is not None:
            call.endpoint = None
            endpoint.load -= 1
            client: Client = call.client  # type: ignore[assignment]  # (set with the endpoint)
            if not (
                success
                and client.quiet_success
                and not endpoint.failures
                and not endpoint.dead_until
                and not endpoint.probing
            ):  # (otherwise record() would change nothing)
                now = monotonic()
                client.record(endpoint, success, now, now - call.attempt_start)
            if call.trace is not None:
                self.trace_client(call, endpoint, call.status, None)
        self.finish(call, success)

    # == stats =================================================================================
    def finish(self, call: Call, success: bool) -> None:
        """``call`` is over: count it under its server, service and client, record its server
        span, then tell the protocol (:meth:`finished`)."""
        call.finished = True
        timer = call.timer
        if timer is not None:
            timer.cancel()
            call.timer = None
        elapsed = (monotonic() - call.start) * 1000
        slot = _native_bucket(elapsed) if _COMPILED else bisect.bisect_left(_BOUNDS, elapsed)
        stats = self.server_stats(call)
        counts = stats.counts
        if success:
            counts.success += 1
        else:
            counts.failures += 1
        counts.latency.counts[slot] += 1
        tally = stats.codes.get(call.status)
        if tally is None:
            tally = stats.status(call.status)
        tally.value += 1
        route = call.route
        extras = call.extras
        if route is not None and extras is not None:
            sc = extras.service_counts
            if success:
                sc.success += 1
            else:
                sc.failures += 1
            sc.latency.counts[slot] += 1
            if extras.retries:
                route.service.per_request.counts[
                    bisect.bisect_left(_BOUNDS, max(call.attempts - 1, 0))
                ] += 1
        client = call.client
        if client is not None:
            last = (
                extras.last_counts if extras is not None and client is extras.last_client else None
            )
            if last is None:
                last = client.stats.counts
                if extras is not None:
                    extras.last_client = client
                    extras.last_counts = last
            cc: Counts = last
            if success:
                cc.success += 1
            else:
                cc.failures += 1
            cc.latency.counts[slot] += 1
        if not success:
            self.count_failure(call, stats.scope)
        if call.trace is not None:
            self.trace_server(call, success)
        self.finished(call, success, elapsed)

    def count_failure(self, call: Call, server_scope: tuple[str, ...]) -> None:
        """``failures/<class>`` under the server, service and client (the failure path only)."""
        kind = call.failure or f"status_{call.status // 100}XX"
        metrics = self.metrics
        metrics.counter(*server_scope, "failures", kind).value += 1
        if call.route is not None:
            metrics.counter(*call.route.service.scope, "failures", kind).value += 1
        if call.client is not None:
            metrics.counter(*call.client.scope, "failures", kind).value += 1

    # == spans =================================================================================
    def trace_client(self, call: Call, endpoint: Endpoint, status: int, error: str | None) -> None:
        """Record the client span of the attempt that just ended on ``endpoint``."""
        trace: ServerTrace = call.trace
        if not trace.client_span or not trace.tracers:
            # the attempt ended before its request was written, or the request is not
            # sampled (its trace only carries the decision upstream)
            return
        now = time.time_ns() // 1000
        tags = self.span_tags(call, False)
        tags["l5d.client"] = str(call.client.id) if call.client is not None else "-"
        if status:
            tags[self.status_tag] = str(status)
        if call.attempts > 1:
            tags["l5d.attempt"] = str(call.attempts)
        address = endpoint.address
        span = Span(
            trace.context.trace_id,
            trace.client_span,
            trace.context.span_id,
            self.span_name(call),
            "CLIENT",
            trace.client_start_us,
            max(now - trace.client_start_us, 1),
            self.label,
            address.host,
            address.port,
            tags,
            debug=trace.context.debug,
            error=error or (f"status {status}" if status >= 500 else None),
        )
        trace.client_span = 0
        self.tracing.record(trace, span)  # type: ignore[union-attr]  # (traced: tracing is set)

    def trace_server(self, call: Call, success: bool) -> None:
        """Record the server span of ``call`` (it is finishing)."""
        trace: ServerTrace = call.trace
        call.trace = None
        if not trace.tracers:
            return  # not sampled: nothing to record
        now = time.time_ns() // 1000
        tags = self.span_tags(call, True)
        tags[self.status_tag] = str(call.status)
        tags["l5d.router"] = self.label
        if call.dst is not None:
            tags["l5d.service"] = str(call.dst)
        if call.client is not None:
            tags["l5d.client"] = str(call.client.id)
        if call.attempts > 1:
            tags["l5d.retries"] = str(call.attempts - 1)
        host, port = self.span_peer(call)
        ctx = trace.context
        span = Span(
            ctx.trace_id,
            ctx.span_id,
            ctx.parent_id,
            self.span_name(call),
            "SERVER",
            trace.start_us,
            max(now - trace.start_us, 1),
            self.label,
            host,
            port,
            tags,
            shared=trace.shared,
            debug=ctx.debug,
            error=None if success else (call.failure or f"status {call.status}"),
        )
        self.tracing.record(trace, span)  # type: ignore[union-attr]  # (traced: tracing is set)


__all__ = [
    "FAILURE",
    "MAX_REQUEUES",
    "MAX_RETRIES",
    "RETRYABLE",
    "SUCCESS",
    "Call",
    "Counts",
    "RequestStack",
    "RouteCache",
    "ServerStats",
    "Tally",
    "core_router",
    "tracing_of",
]
