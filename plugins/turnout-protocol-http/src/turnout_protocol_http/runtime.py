"""The running HTTP router: servers, dispatch of exchanges, responses, stats, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import time
import types
from typing import TYPE_CHECKING, Any, Final

from turnout.linker import BuildContext
from turnout.metrics import BOUNDS, Histogram, MetricsTree, bucket
from turnout.naming import Address, Dtab, Path
from turnout.router import Client, Endpoint, Route, RouteError, Router, accrual_for, balancer_for
from turnout.tracing import TRACE_HEADERS, ServerTrace, Span, Tracing

from . import classifiers, tunnel
from .accesslog import AccessLog
from .identifiers import HeaderTokenIdentifier, Identifier
from .proxy import (
    CRLF,
    LINGER_SECONDS,
    MAX_REQUEUES,
    MAX_RETRIES,
    BadResponse,
    Exchange,
    Pool,
    ServerProtocol,
    UpstreamProtocol,
    _getrandbits,
    _hexlify,
    _Retry,
    monotonic,
    response_head_bytes,
)
from .tls import TlsServer
from .wire import VIA_TOKEN, BadRequest, local_response, reason, via_hops

if TYPE_CHECKING:
    from .config import HttpRouterConfig, HttpServerConfig

log = logging.getLogger("turnout.http")

# (Final: C statics in the compiled build, not module-dict lookups)
_IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
#: request headers a TRACE answered by turnout does not echo (RFC 9110 §9.3.8)
_NOT_ECHOED: Final = frozenset({b"authorization", b"cookie", b"proxy-authorization"})
_ALLOW: Final = b"GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"
_SUCCESS: Final = classifiers.SUCCESS
_EMPTY_DTAB: Final = Dtab.empty
_VIA_LINE: Final = b"Via: " + VIA_TOKEN + CRLF

_BOUNDS: Final[list[float]] = list(BOUNDS)
_N_BOUNDS: Final = len(_BOUNDS)
_FIRST_BOUND: Final = _BOUNDS[0]
_LAST_BOUND: Final = _BOUNDS[-1]
_INV_LOG_RATIO: Final = 1.0 / math.log(_BOUNDS[1] / _BOUNDS[0])


def _native_bucket(value: float) -> int:
    """``turnout.metrics.bucket(value)`` (``bisect_left`` into the histogram bounds), found
    from the bounds' geometric progression and settled by comparing with the bounds
    themselves: the same index, for a fraction of the bisection's comparisons.

    Used only by the compiled build (see :data:`_COMPILED`): interpreted, this arithmetic
    costs more than ``metrics.bucket``'s bisection in C."""
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


class _Counts:
    """:class:`turnout.metrics.RequestCounts` for this data path (servers, services and
    clients of HTTP routers): compiled, ``success`` and ``failures`` are native ints, and
    the metrics tree reads them as derived counters."""

    __slots__ = ("failures", "latency", "success")

    def __init__(self, latency: Histogram) -> None:
        self.success = 0
        self.failures = 0
        #: (a new ``counts`` array each window: telemeters tell windows apart by identity)
        self.latency: Any = latency


class _Tally:
    """One ``status/<code>`` count (a native int when compiled; exported as a derived
    counter)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0


class ServerStats:
    """``rt/<router>/server/<ip>/<port>/...``"""

    def __init__(self, metrics: MetricsTree, scope: tuple[str, ...], server: ServerRuntime) -> None:
        self.metrics = metrics
        self.scope = scope
        made = metrics.request_counts(*scope, factory=_Counts)
        #: what the data path increments; ``success``/``failures``/``requests`` derive from it
        self.counts: _Counts = made[0]
        self.success, self.failures, self.requests, self.latency = made[1:]
        self.connects = metrics.counter(*scope, "connects")
        self.rejected = metrics.counter(*scope, "rejected")
        metrics.gauge(*scope, "connections", fn=lambda: len(server.connections))
        metrics.gauge(*scope, "pending", fn=lambda: server.in_flight)
        #: WebSocket upgrades accepted, and the tunnels open now (tunnel.py)
        self.upgrades = metrics.counter(*scope, "upgrades")
        metrics.gauge(*scope, "tunnels", fn=lambda: len(server.tunnels))
        #: ``status/<code>`` counts; ``status/<N>XX`` are their sums
        self.codes: dict[int, _Tally] = {}

    def status(self, code: int) -> _Tally:
        counter = self.codes.get(code)
        if counter is None:
            m, s = self.metrics, self.scope
            tally = counter = self.codes[code] = _Tally()
            m.derived_counter(*s, "status", str(code), fn=lambda: tally.value)
            klass = code // 100
            m.sum_counter(
                *s,
                "status",
                f"{klass}XX",
                parts=lambda: [c for k, c in self.codes.items() if k // 100 == klass],
            )
        return counter


class ServerRuntime:
    """One listening socket of the router."""

    def __init__(self, router: HttpRouter, config: HttpServerConfig, port: int) -> None:
        self.router = router
        self.config = config
        self.ip = config.ip
        self.port = port
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[ServerProtocol] = set()
        #: open WebSocket tunnels (tunnel.Tunnel): not requests, not in ``in_flight``
        self.tunnels: set[Any] = set()
        self.in_flight = 0
        self.stats: ServerStats = None  # type: ignore[assignment]  # set once the port is known
        session = config.server_session
        self.idle_timeout = (
            session.idle_time_ms / 1000
            if session is not None and session.idle_time_ms
            else config.idle_timeout_ms / 1000
        )
        self.header_timeout = config.request_header_timeout_ms / 1000
        self.body_timeout = config.request_body_idle_timeout_ms / 1000
        #: the server's ``timeoutMs`` (a deadline for the response to begin), in seconds
        self.timeout: float | None = config.timeout_ms / 1000 if config.timeout_ms else None
        self.life_time: float | None = (
            session.life_time_ms / 1000 if session is not None and session.life_time_ms else None
        )
        self.max_concurrent = config.max_concurrent_requests
        self.max_call_depth = config.max_call_depth
        self.timestamp_header = (
            config.timestamp_header.encode("latin-1") if config.timestamp_header else None
        )
        #: TLS termination (servers[].tls), see tls.py
        self.tls: TlsServer | None = TlsServer(config.tls) if config.tls is not None else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        opts = self.config.socket_options
        kwargs: dict[str, Any] = {"reuse_address": True}
        if opts is not None:
            kwargs["reuse_port"] = opts.reuse_port or None
            if opts.backlog:
                kwargs["backlog"] = opts.backlog
        # (typed Any: the protocol is an asyncio Protocol by duck typing, not by inheritance)
        factory: Any = lambda: ServerProtocol(self.router, self)  # noqa: E731
        if self.tls is not None:
            factory = self.tls.factory(factory)
        self.server = await loop.create_server(factory, self.ip, self.port, **kwargs)
        # getattr: uvloop gives a list where typeshed says tuple, and compiled code checks types
        sock = getattr(self.server, "sockets")[0]  # noqa: B009
        self.port = sock.getsockname()[1]
        if opts is None or opts.no_delay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        scope = ("rt", self.router.label, "server", self.ip, str(self.port))
        self.stats = ServerStats(self.router.metrics, scope, self)
        if self.tls is not None:
            self.tls.start(self.router.metrics, scope, f"server {self.ip}:{self.port}")


class HttpRouter:
    """The runtime of one ``protocol: http`` router (a :class:`turnout.linker.RouterRuntime`)."""

    def __init__(self, config: HttpRouterConfig, ctx: BuildContext) -> None:
        self.config = config
        self.label = config.effective_label
        self.metrics = ctx.metrics
        assert ctx.interpreter is not None
        self.interpreter = ctx.interpreter
        self.dtab = config.dtab
        self.core = Router(
            config,
            ctx.interpreter,
            ctx.metrics,
            new_pool=self._new_pool,
            balancer_factory=balancer_for,
            accrual_factory=accrual_for,
            counts_factory=_Counts,
        )
        self.identifiers: list[Identifier] = [
            c.new_identifier(config.dst_prefix) for c in config.identifiers()
        ]
        # the default identifier (Host as one segment) gets a fast path in dispatch
        first = self.identifiers[0]
        self._host_cache: dict[bytes, Path] | None = (
            first._cache
            if len(self.identifiers) == 1
            and isinstance(first, HeaderTokenIdentifier)
            and first.lname == b"host"
            else None
        )
        #: with that identifier, routes without a local dtab by Host: ``(name, route)``
        #: (no Path to hash per request; an entry whose route was closed is looked up again)
        self._host_routes: dict[bytes, tuple[Path, Route]] | None = (
            {} if self._host_cache is not None else None
        )
        #: the linker's tracers, or None: then nothing on the request path traces
        self.tracing: Tracing | None = ctx.linker.tracing if ctx.linker is not None else None
        self.binding_timeout = config.binding_timeout_ms / 1000
        #: request bodies up to this size are kept for retries (streamAfterContentLengthKB)
        self.replay_limit = config.stream_after_content_length_kb * 1024
        self.connect_timeout = 3.0
        #: the largest response head accepted from an endpoint (maxHeadersKB applies both ways)
        self.max_response_head = (config.max_headers_kb + config.max_initial_line_kb) * 1024
        self.server_runtimes = [
            ServerRuntime(self, s, config.server_port(s)) for s in config.servers
        ]
        self.draining = False
        self._idle = asyncio.Event()
        self._dtab_cache: dict[bytes, Dtab] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.access_log = (
            AccessLog(
                config.http_access_log, config.http_access_log_format, config.http_access_log_append
            )
            if config.http_access_log
            else None
        )

    # -- RouterRuntime ---------------------------------------------------------------------
    async def start(self) -> None:
        for server in self.server_runtimes:
            await server.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    def servers(self) -> list[tuple[str, int]]:
        return [(s.ip, s.port) for s in self.server_runtimes]

    def stop_accepting(self) -> None:
        self.draining = True
        for server in self.server_runtimes:
            if server.server is not None:
                server.server.close()
            for conn in list(server.connections):
                if not conn.queue:
                    conn.close()  # idle keep-alive connection
            tunnel.close_all(server)  # (draining waits for requests, not for tunnels)

    async def drain(self) -> None:
        while any(s.in_flight for s in self.server_runtimes):
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for server in self.server_runtimes:
            if server.tls is not None:
                server.tls.close()
            for conn in list(server.connections):
                if conn.transport is not None:
                    conn.transport.abort()
            if server.server is not None:
                server.server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.server.wait_closed(), 1.0)
        self.core.close()
        if self.access_log is not None:
            self.access_log.close()

    def client_state(self) -> dict[str, Any]:
        return self.core.client_state()

    # -- building blocks -------------------------------------------------------------------
    def _new_pool(self, address: Address, client: Client) -> Pool:
        if not client.endpoints:  # the client's first endpoint: publish its pool gauges
            m, scope = self.metrics, client.scope

            def pools() -> list[Pool]:
                return [e.pool for e in client.endpoints]

            m.gauge(*scope, "connections", fn=lambda: sum(len(p.open) for p in pools()))
            # Finagle's names: pool_size (open), pool_cached (idle), pool_waiters, pool_num_waited
            m.gauge(*scope, "pool_size", fn=lambda: sum(len(p.open) for p in pools()))
            m.gauge(*scope, "pool_cached", fn=lambda: sum(len(p.idle) for p in pools()))
            m.gauge(*scope, "pool_waiters", fn=lambda: sum(len(p.waiters) for p in pools()))
            m.gauge(*scope, "pool_num_waited", fn=lambda: sum(p.waited for p in pools()))
        pool = Pool(address, self, client)
        if pool.min_size and pool.status is None:
            asyncio.get_running_loop().call_soon(self.warm, pool)
        return pool

    def identify(self, ex: Exchange) -> Path | None:
        for identifier in self.identifiers:
            path = identifier.identify(ex)
            if path is not None:
                return path
        return None

    def local_dtab(self, ex: Exchange) -> Dtab:
        """The request's dtab (``l5d-ctx-dtab`` then ``l5d-dtab``), within the size limits
        of ``turnout.naming.dtab`` (a larger one is a 400: binding it would cost too much)."""
        from turnout.naming.dtab import MAX_REQUEST_DTAB_BYTES, MAX_REQUEST_DTAB_ENTRIES

        values = (*(ex.dtab_ctx or ()), *(ex.dtab_user or ()))
        size = sum(len(v) for v in values)
        if size > MAX_REQUEST_DTAB_BYTES:
            raise BadRequest(
                400, f"dtab headers too large: {size} bytes (limit {MAX_REQUEST_DTAB_BYTES})"
            )
        if len(values) > MAX_REQUEST_DTAB_ENTRIES:
            raise BadRequest(
                400, f"too many dtab headers: {len(values)} (limit {MAX_REQUEST_DTAB_ENTRIES})"
            )
        out = Dtab.empty
        for value in values:
            dtab = self._dtab_cache.get(value)
            if dtab is None:
                try:
                    dtab = Dtab.read(value.decode("utf-8", "surrogateescape"))
                except ValueError as e:
                    raise BadRequest(400, f"Invalid dtab header: {e}") from None
                if len(self._dtab_cache) > 1000:
                    self._dtab_cache.clear()
                self._dtab_cache[value] = dtab
            out = out + dtab
        if len(out) > MAX_REQUEST_DTAB_ENTRIES:
            raise BadRequest(
                400,
                f"dtab headers have too many dentries: {len(out)} "
                f"(limit {MAX_REQUEST_DTAB_ENTRIES})",
            )
        return out

    @staticmethod
    def _route_extras(route: Route) -> _RouteExtras:
        """Per-route data the HTTP path caches on the route: classifier and header blocks."""
        extras = route.protocol_data
        if extras is None:
            extras = route.protocol_data = _RouteExtras(route)
        return extras  # type: ignore[no-any-return]

    # -- dispatch --------------------------------------------------------------------------
    def dispatch(self, ex: Exchange) -> None:
        """Route a request whose head is complete (called in order per connection)."""
        conn = ex.conn
        server = conn.server
        if ex.finished:
            return
        if server.max_concurrent is not None and server.in_flight >= server.max_concurrent:
            server.stats.rejected.value += 1
            ex.failure = "rejected"
            self.respond_local(
                ex, 503, f"max concurrent requests exceeded ({server.max_concurrent})"
            )
            return
        server.in_flight += 1
        ex.counted = True
        ex.head_only = ex.method == b"HEAD"
        if ex.final_recipient:
            self._answer_final(ex)
            return
        try:
            if ex.via is not None and via_hops(ex.via) >= server.max_call_depth:
                raise BadRequest(
                    400, f"Maximum number of calls ({server.max_call_depth}) exceeded: loop?"
                )
            host = ex.host
            host_routes = self._host_routes
            cached: tuple[Path, Route] | None = None
            if (
                host_routes is not None
                and host is not None
                and ex.dtab_ctx is None
                and ex.dtab_user is None
            ):
                cached = host_routes.get(host)
                if cached is not None and cached[1].closed:
                    del host_routes[host]  # (its route expired: look it up again)
                    cached = None
            if cached is None:
                cache = self._host_cache
                found = cache.get(host) if cache is not None and host is not None else None  # type: ignore[arg-type]
                if found is None:
                    found = self.identify(ex)
                    if found is None:
                        raise BadRequest(
                            400, "Unable to identify request: no identifier could name it"
                        )
                dst = found
                local = (
                    self.local_dtab(ex)
                    if ex.dtab_ctx is not None or ex.dtab_user is not None
                    else _EMPTY_DTAB
                )
        except BadRequest as e:
            self.respond_local(ex, e.status, str(e))
            return
        if cached is not None:
            # (what identify() and core.route() find, without hashing a Path)
            dst, route = cached
            ex.dst = dst
            if self.tracing is not None:
                self._trace_start(ex, self.tracing)
        else:
            ex.dst = dst
            if self.tracing is not None:
                self._trace_start(ex, self.tracing)
            route = (self.core.plain.get(dst) if local is _EMPTY_DTAB else None) or self.core.route(
                dst, local
            )
            if host_routes is not None and local is _EMPTY_DTAB and host is not None:
                if len(host_routes) > 10_000:
                    host_routes.clear()
                host_routes[host] = (dst, route)
        self._routed(ex, conn, route)

    def _routed(self, ex: Exchange, conn: ServerProtocol, route: Route) -> None:
        route.last_used = conn.now
        ex.route = route
        extras: _RouteExtras = route.protocol_data or self._route_extras(route)
        ex.extras = extras
        if extras.retries and ex.has_body and not ex.chunked:
            length = ex.content_length
            limit = self.replay_limit
            if length is not None and length.strip().isdigit() and int(length) <= limit:
                ex.replay = list(ex.pending_body or ())  # what arrived so far; on_body adds
        if not route.ready:
            conn.pause_reading()
            asyncio.get_running_loop().create_task(self._await_route(ex))
            return
        self._choose(ex)

    async def _await_route(self, ex: Exchange) -> None:
        route = ex.route
        assert route is not None
        try:
            await route.wait(self.binding_timeout)
        except TimeoutError:
            self.no_route(
                ex,
                RouteError(
                    "timeout",
                    f"Exceeded {self.binding_timeout:g}s binding timeout while resolving name: "
                    f"{ex.dst}",
                ),
            )
        else:
            if not ex.finished:
                self._choose(ex)
        ex.conn.flush()

    def _choose(self, ex: Exchange) -> None:
        route: Route = ex.route  # type: ignore[assignment]
        single = route.single
        if single is not None:
            client, residual = single
        else:
            try:
                client, residual = route.choose()
            except RouteError as e:
                self.no_route(ex, e)
                return
        ex.client = client
        ex.residual = residual
        now = ex.conn.now
        client.last_used = now
        endpoint = client.single
        try:
            if endpoint is None or endpoint.dead_until:
                endpoint = client.pick(now)
        except RouteError as e:
            if e.kind == "pending":
                asyncio.get_running_loop().create_task(self._await_client(ex, client))
            else:
                self.no_route(ex, e)
            return
        self._send(ex, endpoint)

    async def _await_client(self, ex: Exchange, client: Client) -> None:
        with contextlib.suppress(TimeoutError):
            await client.wait_bound(self.binding_timeout)
        if not ex.finished:
            try:
                endpoint = client.pick(monotonic())
            except RouteError as e:
                self.no_route(ex, e)
            else:
                self._send(ex, endpoint)
        ex.conn.flush()

    def _send(self, ex: Exchange, endpoint: Endpoint) -> None:
        endpoint.load += 1
        ex.endpoint = endpoint
        ex.attempts += 1
        ex.attempt_start = now = monotonic()
        pool: Pool = endpoint.pool
        if pool.status is not None:  # /$/io.buoyant.http.status/<code>
            self.respond_local(ex, pool.status, "", l5d_err=False)
            return
        extras: _RouteExtras = ex.extras
        conn = ex.conn
        server_timeout = conn.server.timeout
        if (
            extras.total_timeout is not None
            or ex.client.attempt_timeout is not None  # type: ignore[union-attr]
            or server_timeout is not None
        ):
            self._arm(ex, now)
        if ex.expect_continue and not ex.continue_sent and not ex.request_complete:
            # Expect: 100-continue is answered here, not forwarded: the client sends its body
            # now instead of waiting for a 100 the endpoint may never send (nginx does so)
            ex.continue_sent = True
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        head = self._request_head(ex, pool)
        idle = pool.idle
        while idle:
            up = idle.pop()
            if up.transport is not None and not up.closed:
                life = pool.life_time  # (clientSession.lifeTimeMs)
                if life is not None and now - up.born > life:
                    up.close()
                    continue
                up.send(ex, head)
                return
        if pool.can_open():
            self.open_and_send(ex, pool, head)
        elif pool.can_wait():
            pool.waiters.append((ex, head))
            pool.waited += 1
        else:
            scope = ex.client.scope  # type: ignore[union-attr]
            self.metrics.counter(*scope, "pool_num_too_many_waiters").value += 1
            ex.failure = "pool_full"
            self._release_endpoint(ex, success=True)  # not the endpoint's fault
            self.respond_local(
                ex,
                503,
                f"connection pool of {pool.address} is full ({len(pool.open)} connections, "
                f"{len(pool.waiters)} waiting: hostConnectionPool maxSize/maxWaiters)",
            )

    def open_and_send(self, ex: Exchange, pool: Pool, head: bytes) -> None:
        """Open a new upstream connection for ``ex`` (in a task: the slow path)."""
        pool.connecting += 1
        # (reading the client goes on while connecting: a reset must be noticed, and a body is
        # buffered up to HIGH_WATER before on_body pauses it)
        asyncio.get_running_loop().create_task(self._connect_and_send(ex, pool, head, ex.attempts))

    def warm(self, pool: Pool) -> None:
        """Open ``hostConnectionPool.minSize`` connections ahead of traffic."""
        for _ in range(pool.min_size - len(pool.open) - pool.connecting):
            pool.connecting += 1
            asyncio.get_running_loop().create_task(self._warm_one(pool))

    async def _warm_one(self, pool: Pool) -> None:
        try:
            up = await pool.connect()
        except (OSError, TimeoutError):
            return
        pool.release(up)

    async def _connect_and_send(self, ex: Exchange, pool: Pool, head: bytes, attempt: int) -> None:
        """Connect, then send ``ex`` unless it ended or moved on to another attempt (a
        timeout, a retry) meanwhile; the connection then joins the pool."""
        try:
            up = await pool.connect()
        except (OSError, TimeoutError) as e:
            if not ex.finished and ex.attempts == attempt and ex.endpoint is not None:
                why = str(e) or type(e).__name__
                ex.failure = "connect_timeout" if isinstance(e, TimeoutError) else "connect"
                self._requeue_or_fail(
                    ex, f"connect to {pool.address} failed: {why}", never_written=True
                )
                ex.conn.flush()
            return
        pool.client.stats.connects.value += 1
        endpoint = ex.endpoint
        if (
            ex.finished
            or ex.attempts != attempt
            or ex.upstream is not None
            or endpoint is None  # (waiting for a retry's backoff)
            or endpoint.pool is not pool
        ):
            pool.release(up)  # the request ended (or moved on) while connecting
            return
        up.send(ex, head)
        if len(ex.conn.queue) <= 1 and not ex.request_complete:
            ex.conn.resume_reading()

    def _request_head(self, ex: Exchange, pool: Pool) -> bytes:
        parts = [ex.method, b" ", ex.target, b" HTTP/1.1\r\nHost: "]
        parts.append(ex.host if ex.host else f"{pool.host}:{pool.port}".encode())
        parts.append(CRLF)
        parts += ex.lines
        if ex.chunked:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        if ex.via is not None:
            parts += (b"Via: ", b", ".join(ex.via), b", ", VIA_TOKEN, CRLF)
        else:
            parts.append(_VIA_LINE)
        extras: _RouteExtras = ex.extras
        client, residual = ex.client, ex.residual
        if client is extras.last_client and residual is extras.last_residual:
            parts.append(extras.last_block)  # (extras.headers(), its common case inlined)
        else:
            parts.append(extras.headers(client, residual))  # type: ignore[arg-type]
        # (request_id(), inlined)
        parts.append(b"l5d-reqid: ")
        parts.append(_hexlify(_getrandbits(64).to_bytes(8, "big")))
        parts.append(CRLF)
        if ex.trace is not None:
            parts.append(self.tracing.client_headers(ex.trace))  # type: ignore[union-attr]
        cert = ex.conn.client_cert
        if cert is not None and client.policy.forward_client_cert:  # type: ignore[union-attr]
            parts.append(cert)
        stamp = ex.conn.server.timestamp_header
        if stamp is not None:
            parts += (stamp, b": ", str(int(time.time() * 1000)).encode(), CRLF)
        parts.append(CRLF)
        return b"".join(parts)

    # -- failures before a response --------------------------------------------------------
    def upstream_failed(self, ex: Exchange, up: UpstreamProtocol, message: str) -> None:
        """The connection closed before any response byte. A request that was written goes
        again only when that is safe (idempotent, no body), and then once, or more often
        only on pooled connections (which the endpoint may have closed for being idle just
        as the request left): an endpoint that closes fresh connections without answering
        sees two attempts per request, not a storm."""
        ex.failure = "connection_closed"
        safe = (up.served > 0 or ex.requeues == 0) and not ex.has_body and ex.method in _IDEMPOTENT
        self._requeue_or_fail(ex, message, never_written=not ex.written or safe)

    def requeue(self, ex: Exchange, message: str) -> None:
        """A request waiting for a connection lost its endpoint: send it elsewhere."""
        ex.failure = "endpoint_removed"
        self._requeue_or_fail(ex, message, never_written=True)
        ex.conn.flush()

    def _requeue_or_fail(self, ex: Exchange, message: str, *, never_written: bool) -> None:
        """A request failed at the connection level: requeue it at once on another endpoint
        (within the client's requeue budget) when it was never written, else answer 502."""
        client = ex.client
        now = monotonic()
        self._release_endpoint(ex, success=False)
        ex.upstream = None
        ex.written = False
        if (
            never_written
            and (not ex.has_body or not ex.request_bytes or ex.replay is not None)
            and ex.requeues < MAX_REQUEUES
            and client is not None
            and not ex.conn.closing
        ):
            if client.requeue_budget.try_withdraw(now):
                ex.requeues += 1
                client.stats.requeues.value += 1
                try:
                    endpoint = client.pick(now)
                except RouteError:
                    pass
                else:
                    if ex.replay is not None:
                        ex.pending_body = list(ex.replay)
                    self._send(ex, endpoint)
                    return
            else:
                client.stats.budget_exhausted.value += 1
        self.respond_local(ex, 502, message)

    def bad_response(self, ex: Exchange, up: UpstreamProtocol, message: str) -> None:
        ex.failure = "malformed_response"
        if ex.response_started:
            self.abort(ex, message)
        else:
            up.reusable = False
            self._release_endpoint(ex, success=False)
            ex.upstream = None
            self.respond_local(ex, 502, message)

    def no_route(self, ex: Exchange, err: RouteError) -> None:
        ex.failure = "binding_timeout" if err.kind == "timeout" else "no_route"
        route = ex.route
        local = route.local_dtab if route is not None else Dtab.empty
        full = self.dtab + local
        lines = [
            "Unable to route request!",
            "",
            f"service name: {ex.dst}",
            f"reason: {err}",
            "dtab:",
            f"  {full}" if len(full) else "  (empty)",
            "base dtab:",
            f"  {self.dtab}" if len(self.dtab) else "  (empty)",
            "override dtab:",
            f"  {local}" if len(local) else "  (empty)",
            "",
            f"explain it with: turnout dtab delegate --config <config> --router {self.label} "
            f"{ex.dst}  (or the admin's /delegator.json?namespace={self.label}&path={ex.dst})",
        ]
        self.respond_local(ex, 502, "\n".join(lines), err=f"Unable to route request! {err}")

    def count_local(self, server: ServerRuntime, status: int) -> None:
        """Stats of a request refused before it became an exchange (malformed)."""
        stats = server.stats
        stats.counts.failures += 1
        stats.status(status).value += 1

    # -- responses -------------------------------------------------------------------------
    def respond_local(
        self,
        ex: Exchange,
        status: int,
        message: str,
        *,
        l5d_err: bool = True,
        err: str | None = None,
        success: bool | None = None,
        body: bytes | None = None,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        """Answer ``ex`` from turnout itself (errors, status namer, TRACE/OPTIONS as final
        recipient). ``success`` (default: below 500) is what the stats count it as."""
        if ex.finished:
            return
        conn = ex.conn
        clear = conn.clear_context or not l5d_err
        if not ex.request_complete or self.draining:
            ex.keep_alive = False  # the rest of the body would be read as the next request
        up = ex.upstream
        if up is not None:
            up.reusable = False
            up.close()
            ex.upstream = None
        data = local_response(
            status,
            message,
            err=err,
            close=not ex.keep_alive,
            clear_context=clear,
            version=ex.version,
            head_only=ex.head_only,
            body=body,
            extra=extra,
        )
        if success is None:
            success = status < 500
        ex.status = status
        ex.response_started = True
        ex.response_close = not ex.keep_alive
        ex.response_bytes = len(data)
        conn.write(data)
        self._release_endpoint(ex, success=status < 500)
        self._finish(ex, success)

    def client_error(self, ex: Exchange, status: int, message: str) -> None:
        """The client broke a request already dispatched (a malformed body, a body that
        stopped arriving): the attempt ends without counting against the endpoint (a
        client's fault must never eject a healthy endpoint); ``status`` answers it unless
        the response has begun, and the stats count a failure."""
        if ex.finished:
            return
        self._cancel_attempt(ex)
        ex.failure = "request_timeout" if status == 408 else "bad_request"
        if ex.response_started:
            self.abort(ex, message)
        else:
            self.respond_local(ex, status, message, success=False)

    def _cancel_attempt(self, ex: Exchange) -> None:
        """Stop the attempt in progress: its connection closes (never reused), a wait for a
        connection is withdrawn, and the endpoint's load drops with nothing recorded."""
        up = ex.upstream
        if up is not None:
            up.reusable = False
            up.ex = None
            up.close()
            ex.upstream = None
        endpoint = ex.endpoint
        if endpoint is not None:
            pool = endpoint.pool
            if pool.waiters:
                pool.waiters = type(pool.waiters)(w for w in pool.waiters if w[0] is not ex)
            ex.endpoint = None
            endpoint.load -= 1

    def _answer_final(self, ex: Exchange) -> None:
        """TRACE or OPTIONS with ``Max-Forwards: 0``: turnout is the final recipient (RFC 9110
        §7.6.2). TRACE echoes the request head it received as ``message/http`` (less the
        credentials, §9.3.8); OPTIONS lists the methods this router forwards."""
        if ex.method == b"TRACE":
            lines = [b"TRACE " + ex.target + b" HTTP/" + ex.version + CRLF]
            if ex.host is not None:
                lines.append(b"Host: " + ex.host + CRLF)
            lines += [
                line
                for name, line in zip(ex.lnames, ex.lines, strict=True)
                if name not in _NOT_ECHOED
            ]
            self.respond_local(
                ex,
                200,
                "",
                l5d_err=False,
                body=b"".join(lines) + CRLF,
                extra=[(b"Content-Type", b"message/http")],
            )
        else:
            self.respond_local(ex, 200, "", l5d_err=False, body=b"", extra=[(b"Allow", _ALLOW)])

    def response_head(self, ex: Exchange, up: UpstreamProtocol, status: int) -> None:
        if status < 200:
            ex.status = status
            if status == 101:
                up.reusable = False
                why = tunnel.switch_refused(ex, up)
                if why is not None:
                    raise BadResponse(why)
                return  # a WebSocket tunnel opens where llhttp stops (tunnel.open_tunnel)
            if ex.version == b"1.1" and status != 100:  # (turnout answers Expect itself)
                head = b"HTTP/1.1 %d %s\r\n" % (status, up.reason or reason(status))
                ex.conn.write(head + b"".join(up.lines) + CRLF)
            return
        extras: _RouteExtras = ex.extras
        if extras.retries and self._retryable(ex, up, status):
            ex.status = status
            self._release_endpoint(ex, success=False)
            up.reusable = False
            raise _Retry  # data_received closes this connection and calls retry()
        ex.status = status
        ex.response_started = True
        if ex.timer is not None:  # the response has begun: deadlines no longer apply
            ex.timer.cancel()
            ex.timer = None
        conn = ex.conn
        head = response_head_bytes(ex, up, status, conn.clear_context)
        if conn.corked:
            conn.out.append(head)  # (conn.write(), inlined)
        else:
            conn.write(head)

    # -- retries and timeouts ----------------------------------------------------------------
    def _retryable(self, ex: Exchange, up: UpstreamProtocol, status: int) -> bool:
        """A final response the classifier calls retryable, for a request that can be sent
        again, with budget left (service ``retries``)."""
        retryable_header = up.special is not None and any(
            n == b"l5d-retryable" and v.strip().lower() == b"true" for n, _, v in up.special
        )
        classifier = self._route_extras(ex.route).classifier  # type: ignore[arg-type]
        if classifier.classify(ex.method, status, retryable_header) != classifiers.RETRYABLE:
            return False
        return self._may_retry(ex, monotonic())

    def _may_retry(self, ex: Exchange, now: float) -> bool:
        route: Route = ex.route  # type: ignore[assignment]
        budget = route.retry_budget
        if budget is None or ex.conn.closing or self.draining:
            return False
        if not ex.request_complete or (ex.has_body and ex.replay is None):
            return False  # a streamed body cannot be sent again
        if ex.attempts - ex.requeues > MAX_RETRIES:
            return False
        if route.total_timeout is not None and monotonic() >= ex.start + route.total_timeout:
            return False
        if not budget.try_withdraw(now):
            route.service.budget_exhausted.value += 1
            return False
        return True

    def retry(self, ex: Exchange) -> None:
        """Send ``ex`` again, after the service's retry backoff (called after _Retry)."""
        if ex.finished:
            return
        route: Route = ex.route  # type: ignore[assignment]
        ex.upstream = None
        ex.written = False
        route.service.retries.value += 1
        if ex.backoffs is None:
            ex.backoffs = route.retry_backoff()
        delay = next(ex.backoffs)
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._retry_now, ex)
        else:
            self._retry_now(ex)

    def _retry_now(self, ex: Exchange) -> None:
        if ex.finished:
            return
        ex.status = 0
        ex.retryable_header = False
        ex.pending_body = list(ex.replay) if ex.replay else None
        self._choose(ex)
        ex.conn.flush()

    def _arm(self, ex: Exchange, now: float) -> None:
        """One timer per attempt, at the nearest of totalTimeoutMs and requestAttemptTimeoutMs."""
        deadline = self._deadline(ex, now)
        if ex.timer is not None:
            ex.timer.cancel()
        ex.timer = asyncio.get_running_loop().call_later(
            max(deadline - now, 0.0), self._on_timeout, ex
        )

    @staticmethod
    def _deadline(ex: Exchange, attempt_start: float) -> float:
        """The nearest of totalTimeoutMs, the server's timeoutMs and requestAttemptTimeoutMs."""
        total = ex.route.total_timeout  # type: ignore[union-attr]
        attempt = ex.client.attempt_timeout  # type: ignore[union-attr]
        server = ex.conn.server.timeout
        deadline = ex.start + total if total is not None else float("inf")
        if server is not None and ex.start + server < deadline:
            deadline = ex.start + server
        if attempt is not None and attempt_start + attempt < deadline:
            deadline = attempt_start + attempt
        return deadline

    def _on_timeout(self, ex: Exchange) -> None:
        ex.timer = None
        if ex.finished or ex.response_started:
            return
        now = monotonic()
        deadline = self._deadline(ex, ex.attempt_start)
        if now < deadline:
            # the loop's timers may fire early by up to a clock tick (uvloop counts in
            # milliseconds): a deadline never passes before its time
            ex.timer = asyncio.get_running_loop().call_later(deadline - now, self._on_timeout, ex)
            return
        route: Route = ex.route  # type: ignore[assignment]
        client = ex.client
        total = route.total_timeout
        server_timeout = ex.conn.server.timeout
        up = ex.upstream
        if up is not None:  # abandon the attempt: its connection is closed, never reused
            up.reusable = False
            up.ex = None
            up.close()
            ex.upstream = None
        endpoint = ex.endpoint
        if endpoint is not None:
            pool = endpoint.pool
            if pool.waiters:
                pool.waiters = type(pool.waiters)(w for w in pool.waiters if w[0] is not ex)
        self._release_endpoint(ex, success=False)
        if server_timeout is not None and now >= ex.start + server_timeout:
            ex.failure = "server_timeout"
            self.respond_local(
                ex, 503, f"exceeded the server's timeoutMs of {server_timeout * 1000:g} ms"
            )
        elif total is not None and now >= ex.start + total:
            ex.failure = "total_timeout"
            self.respond_local(ex, 503, f"exceeded totalTimeoutMs of {total * 1000:g} ms")
        else:
            attempt = client.attempt_timeout if client is not None else None
            ex.failure = "attempt_timeout"
            classifier = self._route_extras(route).classifier
            if classifier.classify_error(
                ex.method, True
            ) == classifiers.RETRYABLE and self._may_retry(ex, now):
                ex.failure = None
                self.retry(ex)
            else:
                self.respond_local(
                    ex, 503, f"exceeded requestAttemptTimeoutMs of {(attempt or 0) * 1000:g} ms"
                )
        ex.conn.flush()

    def response_complete(self, ex: Exchange, up: UpstreamProtocol) -> None:
        conn = ex.conn
        if ex.response_chunked:
            trailers = up.trailers
            if trailers:
                conn.write(b"0\r\n" + b"".join(n + b": " + v + CRLF for n, v in trailers) + CRLF)
            else:
                conn.write(b"0\r\n\r\n")
        ex.upstream = None
        endpoint = ex.endpoint
        if endpoint is not None:
            up.reusable = up.reusable and ex.request_complete and up.parser.should_keep_alive()
            endpoint.pool.release(up)
        extras: _RouteExtras = ex.extras
        below = extras.success_below
        success = (
            ex.status < below
            if below >= 0
            else extras.classifier.classify(ex.method, ex.status, ex.retryable_header) == _SUCCESS
        )
        if endpoint is not None:
            ex.endpoint = None
            endpoint.load -= 1
            client: Client = ex.client  # type: ignore[assignment]
            if not (
                success
                and client.quiet_success
                and not endpoint.failures
                and not endpoint.dead_until
                and not endpoint.probing
            ):  # (otherwise record() would change nothing)
                now = monotonic()
                client.record(endpoint, success, now, now - ex.attempt_start)
            if ex.trace is not None:
                self._trace_client(ex, endpoint, ex.status, None)
        self._finish(ex, success)

    def _release_endpoint(self, ex: Exchange, *, success: bool) -> None:
        endpoint = ex.endpoint
        if endpoint is None:
            return
        ex.endpoint = None
        endpoint.load -= 1
        client = ex.client
        if client is not None:
            now = monotonic()
            client.record(endpoint, success, now, now - ex.attempt_start)
        if ex.trace is not None:
            self._trace_client(ex, endpoint, ex.status, ex.failure or "failed")

    def abort(self, ex: Exchange, message: str) -> None:
        """End an exchange that cannot be answered (client gone, upstream cut mid-response)."""
        if ex.finished:
            return
        up = ex.upstream
        if up is not None:
            up.reusable = False
            up.close()
            ex.upstream = None
        self._release_endpoint(ex, success=False)
        if not ex.status:
            ex.status = 499 if ex.conn.transport is None else 502
        if ex.failure is None:
            ex.failure = "client_gone" if ex.conn.transport is None else "aborted"
        ex.response_close = True
        log.debug("aborted %s %s: %s", ex.method, ex.target, message)
        self._finish(ex, False)

    def _finish(self, ex: Exchange, success: bool) -> None:
        ex.finished = True
        if ex.timer is not None:
            ex.timer.cancel()
            ex.timer = None
        conn = ex.conn
        server = conn.server
        elapsed = (monotonic() - ex.start) * 1000
        slot = _native_bucket(elapsed) if _COMPILED else bucket(elapsed)
        stats = server.stats
        counts = stats.counts
        if success:
            counts.success += 1
        else:
            counts.failures += 1
        counts.latency.counts[slot] += 1
        tally = stats.codes.get(ex.status)
        if tally is None:
            tally = stats.status(ex.status)
        tally.value += 1
        route = ex.route
        client = ex.client
        extras: _RouteExtras | None = None
        if route is not None:
            extras = ex.extras  # (set with ex.route)
            if extras is not None:
                sc = extras.service_counts
                retries = extras.retries
            else:
                sc = route.service.counts
                retries = route.retry_budget is not None
            if success:
                sc.success += 1
            else:
                sc.failures += 1
            sc.latency.counts[slot] += 1
            if retries:
                route.service.per_request.counts[bucket(max(ex.attempts - 1, 0))] += 1
        if client is not None:
            last = (
                extras.last_counts if extras is not None and client is extras.last_client else None
            )
            cc: _Counts = last if last is not None else client.stats.counts
            if success:
                cc.success += 1
            else:
                cc.failures += 1
            cc.latency.counts[slot] += 1
        if not success:
            self._count_failure(ex)
        if ex.trace is not None:
            self._trace_server(ex, success)
        if self.access_log is not None:
            self.access_log.record(ex, elapsed)
        if ex.counted:
            server.in_flight -= 1
            if not server.in_flight and self.draining:
                self._idle.set()
        conn.exchange_done(ex)

    def _count_failure(self, ex: Exchange) -> None:
        """``failures/<class>`` under the server, service and client (the failure path only)."""
        kind = ex.failure or f"status_{ex.status // 100}XX"
        metrics = self.metrics
        metrics.counter(*ex.conn.server.stats.scope, "failures", kind).value += 1
        if ex.route is not None:
            metrics.counter(*ex.route.service.scope, "failures", kind).value += 1
        if ex.client is not None:
            metrics.counter(*ex.client.scope, "failures", kind).value += 1

    # -- tracing (only with a tracing telemeter; see turnout.tracing) --------------------------
    def _trace_start(self, ex: Exchange, tracing: Tracing) -> None:
        """Decide whether ``ex`` is traced; if so, take its incoming trace headers out (each
        attempt upstream gets a child span's headers instead)."""
        lnames = ex.lnames
        found = [i for i, n in enumerate(lnames) if n in TRACE_HEADERS]
        incoming = None
        if found:
            lines = ex.lines
            incoming = tracing.extract(
                (lnames[i], lines[i].split(b":", 1)[1].strip()) for i in found
            )
        trace = tracing.server(incoming)
        if trace is None:
            return  # not traced here: the headers travel on untouched
        ex.trace = trace
        if found:
            drop = set(found)
            ex.lines = [x for i, x in enumerate(ex.lines) if i not in drop]
            ex.lnames = [x for i, x in enumerate(ex.lnames) if i not in drop]

    def _trace_client(
        self, ex: Exchange, endpoint: Endpoint, status: int, error: str | None
    ) -> None:
        trace: ServerTrace = ex.trace
        if not trace.client_span or not trace.tracers:
            # the attempt ended before its request head was built, or the request is not
            # sampled (its trace only carries the decision upstream)
            return
        now = time.time_ns() // 1000
        tags = {"http.method": ex.method.decode("latin-1"), "l5d.client": str(ex.client.id)}  # type: ignore[union-attr]
        if status:
            tags["http.status_code"] = str(status)
        if ex.attempts > 1:
            tags["l5d.attempt"] = str(ex.attempts)
        address = endpoint.address
        span = Span(
            trace.context.trace_id,
            trace.client_span,
            trace.context.span_id,
            ex.method.decode("latin-1").lower(),
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
        self.tracing.record(trace, span)  # type: ignore[union-attr]

    def _trace_server(self, ex: Exchange, success: bool) -> None:
        trace: ServerTrace = ex.trace
        ex.trace = None
        if not trace.tracers:
            return  # not sampled: nothing to record
        now = time.time_ns() // 1000
        target = ex.target.split(b"?", 1)[0].decode("latin-1")
        tags = {
            "http.method": ex.method.decode("latin-1"),
            "http.path": target,
            "http.status_code": str(ex.status),
            "l5d.router": self.label,
        }
        if ex.dst is not None:
            tags["l5d.service"] = str(ex.dst)
        if ex.client is not None:
            tags["l5d.client"] = str(ex.client.id)
        if ex.attempts > 1:
            tags["l5d.retries"] = str(ex.attempts - 1)
        peer = ex.conn.peer
        ctx = trace.context
        span = Span(
            ctx.trace_id,
            ctx.span_id,
            ctx.parent_id,
            ex.method.decode("latin-1").lower(),
            "SERVER",
            trace.start_us,
            max(now - trace.start_us, 1),
            self.label,
            peer[0] if peer[0] != "-" else None,
            peer[1] or None,
            tags,
            shared=trace.shared,
            debug=ctx.debug,
            error=None if success else (ex.failure or f"status {ex.status}"),
        )
        self.tracing.record(trace, span)  # type: ignore[union-attr]

    # -- housekeeping ----------------------------------------------------------------------
    def _sweep_exchange(self, ex: Exchange, server: ServerRuntime, now: float) -> None:
        """The idle timeouts of an exchange in progress, checked once a second from the count
        of body bytes it moved (nothing on the request path): a request body that stopped
        arriving (requestBodyIdleTimeoutMs), an endpoint silent while a response is awaited
        or streamed (the client's responseIdleTimeoutMs)."""
        if ex.finished or ex.state == 0:
            return
        progress = ex.request_bytes + ex.response_bytes
        if progress != ex.seen:
            ex.seen = progress
            ex.quiet_since = now
            return
        quiet = now - ex.quiet_since
        conn = ex.conn
        if not ex.request_complete and quiet > server.body_timeout:
            self.client_error(
                ex,
                408,
                f"request body not received in time (requestBodyIdleTimeoutMs: "
                f"{server.body_timeout * 1000:g} ms)",
            )
            conn.flush()
            return
        client = ex.client
        if client is None or ex.endpoint is None or quiet <= client.response_idle_timeout:
            return
        limit = f"responseIdleTimeoutMs: {client.response_idle_timeout * 1000:g} ms"
        address = ex.endpoint.address
        if ex.response_started:
            ex.failure = "response_timeout"
            self.abort(ex, f"response from {address} stalled ({limit})")
            conn.flush()
            return
        ex.failure = "response_timeout"
        up = ex.upstream
        if up is not None:  # its connection is closed, never reused
            up.reusable = False
            up.ex = None
            up.close()
            ex.upstream = None
        pool = ex.endpoint.pool
        if pool.waiters:
            pool.waiters = type(pool.waiters)(w for w in pool.waiters if w[0] is not ex)
        self._release_endpoint(ex, success=False)
        self.respond_local(ex, 504, f"no response from {address} in time ({limit})")
        conn.flush()

    async def _sweep(self) -> None:
        """Once a second: header and idle timeouts, idle routes, access log flush."""
        while True:
            await asyncio.sleep(1.0)
            try:
                self.sweep(monotonic())
            except Exception:  # the sweeper must survive anything
                log.exception("sweep failed")

    def sweep(self, now: float) -> None:
        for server in self.server_runtimes:
            for conn in list(server.connections):
                if conn.lingering:
                    if now - conn.linger_since > LINGER_SECONDS and conn.transport is not None:
                        conn.transport.close()
                    continue
                ex = conn.current
                slow_head = now - conn.head_started > server.header_timeout
                if ex is not None and ex.state == 0 and slow_head:
                    conn.refuse(408, "request headers not received in time")
                    conn.flush()
                elif not conn.queue:
                    if (
                        self.draining
                        or now - conn.last_active > server.idle_timeout
                        or (conn.served == 0 and slow_head)
                    ):
                        conn.close()
                else:
                    self._sweep_exchange(conn.queue[0], server, now)
        for client in self.core.clients.values():
            for endpoint in client.endpoints:
                endpoint.pool.expire_idle(now)
        self.core.expire_idle()
        host_routes = self._host_routes
        if host_routes:  # routes by Host whose route expired: forget them (and their stats)
            for host in [h for h, (_, route) in host_routes.items() if route.closed]:
                del host_routes[host]
        if self.access_log is not None:
            self.access_log.flush()


class _RouteExtras:
    """What the HTTP path caches per route: its classifier and ``l5d-dst-*`` header blocks."""

    __slots__ = (
        "_blocks",
        "classifier",
        "ctx_header",
        "last_block",
        "last_client",
        "last_counts",
        "last_residual",
        "retries",
        "route",
        "service_counts",
        "service_header",
        "success_below",
        "total_timeout",
    )

    def __init__(self, route: Route) -> None:
        self.route = route
        cfg = route.policy.response_classifier
        classifier = cfg.new_classifier() if cfg is not None else classifiers.DEFAULT  # type: ignore[attr-defined]
        self.classifier: classifiers.Classifier = classifier
        #: for a plain Classifier, a response is a success when its status is below this (so
        #: the data path compares instead of calling classify); -1: call classify
        self.success_below = -1
        if type(classifier) is classifiers.Classifier:
            self.success_below = 1 << 30 if classifier.all_successful else 500
        self._blocks: dict[tuple[int, Path | None], bytes] = {}
        #: the last block handed out, by identity (the common case: one client, one residual;
        #: the data path reads these before calling headers())
        self.last_client: Client | None = None
        self.last_residual: Path | None = None
        self.last_block = b""
        #: ``last_client.stats.counts``
        self.last_counts: _Counts | None = None
        #: ``route.service.counts``, and whether the service retries (its counts to update)
        self.service_counts: _Counts = route.service.counts
        self.retries = route.retry_budget is not None
        #: ``route.total_timeout``
        self.total_timeout: float | None = route.total_timeout
        self.service_header = b"l5d-dst-service: " + str(route.path).encode() + CRLF
        self.ctx_header = (
            b"l5d-ctx-dtab: " + str(route.local_dtab).encode() + CRLF
            if len(route.local_dtab)
            else b""
        )

    def headers(self, client: Client, residual: Path | None) -> bytes:
        if client is self.last_client and residual is self.last_residual:
            return self.last_block
        key = (id(client), residual)
        block = self._blocks.get(key)
        if block is None:
            block = self.service_header + b"l5d-dst-client: " + str(client.id).encode() + CRLF
            if residual is not None and len(residual):
                block += b"l5d-dst-residual: " + str(residual).encode() + CRLF
            block += self.ctx_header
            if len(self._blocks) > 1000:
                self._blocks.clear()
            self._blocks[key] = block
        self.last_client = client
        self.last_residual = residual
        self.last_block = block
        self.last_counts = client.stats.counts
        return block
