"""The running HTTP router (:class:`HttpRouter`): its servers, dispatch of requests whose head
is read (identification, local dtabs, routing), sending them upstream (pools, connections,
request heads), tracing, and the once-a-second sweep of timeouts. How it answers is
:class:`~turnout_protocol_http.answers.HttpAnswers`, its base."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from turnout.api import (
    TRACE_HEADERS,
    Address,
    BuildContext,
    Client,
    Dtab,
    Endpoint,
    Path,
    RollPolicy,
    Route,
    Router,
    Tracing,
    accrual_for,
    balancer_for,
    take_over_servers,
)

from . import tunnel
from ._stack import Call, Counts, RequestStack
from .accesslog import AccessLog
from .answers import HttpAnswers
from .downstream import LINGER_SECONDS, ServerProtocol
from .exchange import CRLF, VIA_LINE, VIA_TOKEN, Exchange, monotonic
from .heads import getrandbits, hexlify
from .identifiers import HeaderTokenIdentifier, Identifier
from .routecache import RouteExtras
from .servers import ServerRuntime
from .upstream import Pool
from .wire import BadRequest, via_hops

if TYPE_CHECKING:
    from .config import HttpRouterConfig

log = logging.getLogger("turnout.http")

# (Final: C statics in the compiled build, not module-dict lookups)
_EMPTY_DTAB: Final = Dtab.empty


class HttpRouter(HttpAnswers):
    """The runtime of one ``protocol: http`` router (a :class:`turnout.linker.RouterRuntime`):
    the HTTP/1.1 protocol hooks of the core request stack (:mod:`turnout.router.stack`; the
    answers and most hooks in :class:`~turnout_protocol_http.answers.HttpAnswers`, ``send``
    here), its servers, and dispatch (identification, local dtabs) of requests whose head is
    read."""

    def __init__(self, config: HttpRouterConfig, ctx: BuildContext) -> None:
        assert ctx.interpreter is not None
        core = Router(
            config,
            ctx.interpreter,
            ctx.metrics,
            new_pool=self._new_pool,
            balancer_factory=balancer_for,
            accrual_factory=accrual_for,
            counts_factory=Counts,
        )
        RequestStack.__init__(
            self,
            core,
            ctx.metrics,
            config.effective_label,
            config.dtab,
            ctx.linker.tracing if ctx.linker is not None else None,
            config.binding_timeout_ms / 1000,
        )
        self.status_tag = "http.status_code"
        self.config = config
        self.interpreter = ctx.interpreter
        self.identifiers: list[Identifier] = [
            c.new_identifier(config.dst_prefix) for c in config.identifiers()
        ]
        # the default identifier (Host as one segment) gets a fast path in dispatch
        first = self.identifiers[0]
        self._host_cache: dict[bytes, Path] | None = (
            first.cache
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
        #: request bodies up to this size are kept for retries (streamAfterContentLengthKB)
        self.replay_limit = config.stream_after_content_length_kb * 1024
        self.connect_timeout = 3.0
        #: the largest response head accepted from an endpoint (maxHeadersKB applies both ways)
        self.max_response_head = (config.max_headers_kb + config.max_initial_line_kb) * 1024
        self.server_runtimes = [
            ServerRuntime(self, s, config.server_port(s)) for s in config.servers
        ]
        self.drained = asyncio.Event()
        #: the runtime that took this one over on a reload (see start_from)
        self.successor: HttpRouter | None = None
        self._dtab_cache: dict[bytes, Dtab] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.access_log = (
            AccessLog(
                config.http_access_log,
                config.http_access_log_format,
                config.http_access_log_append,
                RollPolicy.parse(config.http_access_log_roll_policy)
                if config.http_access_log_roll_policy
                else None,
                config.http_access_log_rotate_count,
            )
            if config.http_access_log
            else None
        )

    # -- RouterRuntime ---------------------------------------------------------------------
    async def start(self) -> None:
        for server in self.server_runtimes:
            await server.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    # -- reload (turnout.reload): taking over a running router ------------------------------
    def take_over_problem(self, old: HttpRouter) -> str | None:
        """Why this runtime (not started) cannot take ``old`` over, or None."""
        by_address = {(s.ip, s.port): s for s in old.server_runtimes}
        for config in self.config.servers:
            prior = by_address.get((config.ip, self.config.server_port(config)))
            if prior is None:
                continue
            if (
                prior.config.tls != config.tls
                or prior.config.socket_options != config.socket_options
            ):
                return (
                    f"router '{self.label}': server {config.ip}:{prior.port} changed its tls or "
                    "socketOptions, which a listening socket cannot change; restart to apply it"
                )
        return None

    async def start_from(
        self, old: HttpRouter, keep_client: Callable[[Path], bool] | None = None
    ) -> None:
        """Start in place of ``old`` (a running runtime of the same router label).

        Servers listening on an address this config keeps move here with their sockets and
        connections (the next request on a kept-alive connection is dispatched here; one in
        flight finishes on the objects it started with). With an unchanged ``client`` config,
        ``old``'s clients (those ``keep_client`` accepts) move here with their balancer state,
        ejections and pooled connections; with an unchanged ``service`` config, the per-name
        stats and retry budgets too. The names ``old`` routes are bound here first
        (``Router.prebind``). New addresses start listening; ``old``'s other servers stop
        accepting (then :meth:`retire_drain` and :meth:`close` end ``old``).
        """
        self.core.adopt(
            old.core,
            clients=self.config.client == old.config.client,
            services=self.config.service == old.config.service,
            keep_client=keep_client,
            on_endpoint=self._repoint,
        )
        await self.core.prebind(old.core)  # (old serves meanwhile)
        runtimes, moved = take_over_servers(self.server_runtimes, old.server_runtimes, self)
        old.server_runtimes = [s for s in old.server_runtimes if s not in moved]
        self.server_runtimes = runtimes
        for server in runtimes:
            if server.server is None:
                await server.start()
        for server in moved:
            for conn in list(server.connections):
                conn.router = self  # (its next request is dispatched here)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        old.successor = self
        old.stop_accepting()  # (the servers it still has: their addresses are gone)

    def _repoint(self, endpoint: Endpoint) -> None:
        """A client moved here on a reload: its endpoint's pool now serves this runtime."""
        endpoint.pool.router = self

    async def retire_drain(self) -> None:
        """After :meth:`start_from` moved this runtime's work away: wait until its remaining
        servers have no request in flight and its remaining clients no load."""
        await self.drain()
        while any(e.load for c in self.core.clients.values() for e in c.endpoints):
            await asyncio.sleep(0.05)

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
            self.drained.clear()
            await self.drained.wait()

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
        successor = self.successor
        if successor is not None:
            # (metrics of clients and names the successor also has are its own now)
            for client_id, client in list(self.core.clients.items()):
                if client_id in successor.core.clients:
                    client.close(prune=False)
                    del self.core.clients[client_id]
            # (servers it kept: their addresses are gone from the configuration)
            for server in self.server_runtimes:
                self.metrics.prune("rt", self.label, "server", server.ip, str(server.port))
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
        from turnout.api import MAX_REQUEST_DTAB_BYTES, MAX_REQUEST_DTAB_ENTRIES

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
            self.answer_final(ex)
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
                found = cache.get(host) if cache is not None and host is not None else None
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
            route = self.route_to(dst, local)
            if host_routes is not None and local is _EMPTY_DTAB and host is not None:
                if len(host_routes) > 10_000:
                    host_routes.clear()
                host_routes[host] = (dst, route)
        self._routed(ex, conn, route)

    def _routed(self, ex: Exchange, conn: ServerProtocol, route: Route) -> None:
        """A body kept for retries, then the stack's routing (:meth:`RequestStack.routed`)."""
        if ex.has_body and not ex.chunked and route.retry_budget is not None:
            length = ex.content_length
            limit = self.replay_limit
            if length is not None and length.strip().isdigit() and int(length) <= limit:
                ex.replay = list(ex.pending_body or ())  # what arrived so far; on_body adds
        if not route.ready:
            conn.pause_reading()  # (until the name binds)
        self.routed(ex, route, conn.now)

    # -- sending: the stack's send hook, pools and connections ----------------------------------
    def send(self, call: Call, endpoint: Endpoint) -> None:
        """Write the request head (and the body so far) on a pooled or new connection."""
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        pool: Pool = endpoint.pool
        if pool.status is not None:  # /$/io.buoyant.http.status/<code>
            self.respond_local(ex, pool.status, "", l5d_err=False)
            return
        conn = ex.conn
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
                if life is not None and ex.attempt_start - up.born > life:
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
            scope = ex.client.scope  # type: ignore[union-attr]  # (set with the endpoint)
            self.metrics.counter(*scope, "pool_num_too_many_waiters").value += 1
            ex.failure = "pool_full"
            self.release_endpoint(ex, success=True)  # not the endpoint's fault
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
                self.requeue_or_fail(
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
            parts.append(VIA_LINE)
        extras: RouteExtras = ex.extras  # type: ignore[assignment]  # (routed: one of ours)
        client, residual = ex.client, ex.residual
        if client is extras.block_client and residual is extras.block_residual:
            parts.append(extras.last_block)  # (extras.headers(), its common case inlined)
        else:
            parts.append(extras.headers(client, residual))  # type: ignore[arg-type]
        # (request_id(), inlined)
        parts.append(b"l5d-reqid: ")
        parts.append(hexlify(getrandbits(64).to_bytes(8, "big")))
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
        self.release_endpoint(ex, success=False)
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
