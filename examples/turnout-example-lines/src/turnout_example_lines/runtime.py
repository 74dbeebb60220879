"""The running ``lines`` router: the protocol hooks of turnout's request stack.

A client sends ``SERVICE PAYLOAD\\n``; the request is named ``<dstPrefix>/SERVICE`` and handed
to the stack (:meth:`RequestStack.routed`), which binds the name, picks an endpoint and calls
:meth:`LinesRouter.send`. That writes ``PAYLOAD\\n`` on a pooled connection and reads one
answer line: ``OK`` is a success, ``ERR`` a failure, ``RETRY`` a retryable failure; the stack
is told which (:meth:`~RequestStack.complete`, :meth:`~RequestStack.retry`,
:meth:`~RequestStack.requeue_or_fail`). Everything else (deadlines, retries within budgets,
requeues, failure accrual, balancer feedback, stats, spans) is the stack's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from ._turnout import (
    Address,
    Call,
    Client,
    Dtab,
    Endpoint,
    Path,
    RequestStack,
    ServerStats,
    core_router,
    tracing_of,
)

if TYPE_CHECKING:
    from ._turnout import BuildContext, ServerConfig
    from .config import LinesRouterConfig

log = logging.getLogger("turnout.lines")

#: an endpoint's answer word → the status the stack counts it as (``status/<code>``)
STATUS = {b"OK": 200, b"ERR": 500, b"RETRY": 503}


class LineCall(Call):
    """One request line on its way through the stack."""

    def __init__(self, start: float, server: LineServer, peer: Any) -> None:
        Call.__init__(self, start)
        self.server = server
        self.peer = peer
        self.payload = b""
        #: the line the client gets; set by an endpoint's answer or by :meth:`LinesRouter.fail`
        self.answer = b""
        self.done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        #: the attempt in progress: its task and the connection it uses
        self.task: asyncio.Task[None] | None = None
        self.upstream: Upstream | None = None


class Upstream:
    """One connection to an endpoint (one request at a time)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.transport.abort()


class Pool:
    """The idle connections of one endpoint (the core router's ``new_pool`` makes one)."""

    def __init__(self, address: Address, client: Client, router: LinesRouter) -> None:
        self.address = address
        self.client = client
        self.router = router
        self.idle: list[Upstream] = []
        self.closed = False

    async def get(self) -> Upstream:
        while self.idle:
            up = self.idle.pop()
            if up.usable():
                return up
            up.close()  # the endpoint closed it while idle
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                self.address.host, self.address.port, limit=self.router.max_line
            ),
            self.router.connect_timeout,
        )
        self.client.stats.connects.incr()
        return Upstream(reader, writer)

    def release(self, up: Upstream) -> None:
        if self.closed or not up.usable():
            up.close()
        else:
            self.idle.append(up)

    def close(self) -> None:
        """Close the idle connections; those in use close when they are released."""
        self.closed = True
        for up in self.idle:
            up.close()
        self.idle.clear()

    close_when_idle = close


class LineServer:
    """One listening socket of the router."""

    def __init__(self, router: LinesRouter, config: ServerConfig, port: int) -> None:
        self.router = router
        self.ip = config.ip
        self.port = port
        self.timeout = config.timeout_ms / 1000 if config.timeout_ms else None
        self.max_concurrent = config.max_concurrent_requests
        self.server: asyncio.Server | None = None
        self.stats: ServerStats  # (made once the port is known)
        #: open client connections → whether a request of theirs is in progress
        self.connections: dict[asyncio.StreamWriter, bool] = {}
        self.in_flight = 0

    async def start(self) -> None:
        limit = self.router.max_line
        self.server = await asyncio.start_server(self.serve, self.ip, self.port, limit=limit)
        self.port = self.server.sockets[0].getsockname()[1]
        scope = ("rt", self.router.label, "server", self.ip, str(self.port))
        self.stats = ServerStats(self.router.metrics, scope)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer the connection's request lines one after the other."""
        self.stats.connects.incr()
        self.connections[writer] = False
        peer = writer.get_extra_info("peername") or ("-", 0)
        last = False
        try:
            while not last and not self.router.draining:
                try:
                    line = await reader.readuntil(b"\n")
                except asyncio.IncompleteReadError as e:
                    line, last = e.partial, True  # the client closed its side
                    if not line:
                        break
                except asyncio.LimitOverrunError:
                    line, last = b"", True  # answered 400, then the connection closes
                self.connections[writer] = True
                answer = await self.router.handle(self, line, peer)
                writer.write(answer + b"\n")
                await writer.drain()
                self.connections[writer] = False
        except OSError:
            pass
        finally:
            del self.connections[writer]
            writer.close()


class LinesRouter(RequestStack):
    """The runtime of one ``protocol: lines`` router (a :class:`turnout.linker.RouterRuntime`)."""

    def __init__(self, config: LinesRouterConfig, ctx: BuildContext) -> None:
        assert ctx.interpreter is not None
        core = core_router(config, ctx, lambda address, client: Pool(address, client, self))
        tracing = tracing_of(ctx)
        label, timeout = config.effective_label, config.binding_timeout_ms / 1000
        RequestStack.__init__(self, core, ctx.metrics, label, config.dtab, tracing, timeout)
        self.interpreter = ctx.interpreter
        self.prefix = config.dst_prefix
        self.max_line = config.max_line_bytes
        self.connect_timeout = config.connect_timeout_ms / 1000
        self.line_servers = [LineServer(self, s, config.server_port(s)) for s in config.servers]
        self._idle = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    # -- requests ----------------------------------------------------------------------------
    async def handle(self, server: LineServer, line: bytes, peer: Any) -> bytes:
        """Name one request line, hand it to the stack, and return its answer."""
        call = LineCall(time.monotonic(), server, peer)
        server.in_flight += 1
        try:
            service, _, payload = line.rstrip(b"\r\n").partition(b" ")
            labels = [label for label in service.split(b"/") if label]
            if server.max_concurrent is not None and server.in_flight > server.max_concurrent:
                server.stats.rejected.incr()
                call.failure = "rejected"
                self.fail(call, 503, f"max concurrent requests exceeded ({server.max_concurrent})")
            elif not labels:
                call.failure = "bad_request"
                self.fail(call, 400, f"expected 'SERVICE PAYLOAD' (at most {self.max_line} bytes)")
            else:
                call.payload = payload + b"\n"
                call.dst = self.prefix + Path(*labels)
                if self.tracing is not None:
                    call.trace = self.tracing.server(None)  # (lines carry no trace context)
                self.routed(call, self.route_to(call.dst, Dtab.empty), call.start)
            return await call.done
        finally:
            server.in_flight -= 1
            if self.draining and not any(s.in_flight for s in self.line_servers):
                self._idle.set()

    async def _exchange(self, call: LineCall, pool: Pool) -> None:
        """One attempt: a connection, ``PAYLOAD\\n`` out, one answer line in (cancelled by
        :meth:`cancel_attempt` when a deadline passes)."""
        try:
            up = await pool.get()
        except (OSError, TimeoutError) as e:
            call.failure = "connect_timeout" if isinstance(e, TimeoutError) else "connect"
            why = str(e) or type(e).__name__
            self.requeue_or_fail(
                call, f"connect to {pool.address} failed: {why}", never_written=True
            )
            return
        call.upstream = up
        try:
            up.writer.write(call.payload)
            call.written = True
            line = await asyncio.wait_for(
                up.reader.readuntil(b"\n"), pool.client.response_idle_timeout
            )
        except TimeoutError:
            self.cancel_attempt(call)
            call.failure = "response_timeout"
            self.fail(call, 504, f"no answer from {pool.address} in time (responseIdleTimeoutMs)")
            return
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as e:
            self.cancel_attempt(call)
            call.failure = "connection_closed"
            why = f"connection to {pool.address} failed before an answer: {type(e).__name__}"
            self.requeue_or_fail(call, why, never_written=not call.written)
            return
        call.upstream = call.task = None
        pool.release(up)
        self.answered(call, line.rstrip(b"\r\n"), pool.address)

    def answered(self, call: LineCall, line: bytes, address: Address) -> None:
        """The classifier: ``OK`` succeeds, ``ERR`` fails, ``RETRY`` is sent again if the
        stack allows it (budget, time, attempts), else relayed as a failure."""
        word = line.partition(b" ")[0]
        status = STATUS.get(word)
        if status is None:
            call.failure = "malformed_response"
            self.fail(call, 502, f"{address} answered neither OK, ERR nor RETRY")
            return
        call.status = status
        if word == b"RETRY" and self.may_retry(call, time.monotonic()):
            self.release_endpoint(call, success=False)
            self.retry(call)
            return
        call.answer = line
        self.complete(call, word == b"OK")

    # -- protocol hooks of the request stack ----------------------------------------------------
    def send(self, call: Call, endpoint: Endpoint) -> None:
        c = cast(LineCall, call)  # (this router's calls are LineCalls)
        c.task = asyncio.get_running_loop().create_task(self._exchange(c, endpoint.pool))

    def cancel_attempt(self, call: Call) -> None:
        c = cast(LineCall, call)
        task, up = c.task, c.upstream
        c.task = c.upstream = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if up is not None:
            up.close()  # (never reused: an answer may still be on its way)

    def fail(self, call: Call, status: int, message: str, summary: str | None = None) -> None:
        c = cast(LineCall, call)
        self.release_endpoint(c, success=False)
        c.status = status
        c.answer = f"ERR {status} {summary or message}".replace("\n", " ").encode()
        self.finish(c, False)

    def resendable(self, call: Call) -> bool:
        return True  # (the payload is kept whole)

    def server_timeout(self, call: Call) -> float | None:
        return cast(LineCall, call).server.timeout

    def server_stats(self, call: Call) -> ServerStats:
        return cast(LineCall, call).server.stats

    def finished(self, call: Call, success: bool, elapsed_ms: float) -> None:
        c = cast(LineCall, call)
        if not c.done.done():
            c.done.set_result(c.answer)

    def span_name(self, call: Call) -> str:
        return "lines"

    def span_peer(self, call: Call) -> tuple[str | None, int | None]:
        host, port = cast(LineCall, call).peer[:2]
        return (host if host != "-" else None), (port or None)

    # -- RouterRuntime ---------------------------------------------------------------------------
    async def start(self) -> None:
        for server in self.line_servers:
            await server.start()
        self._sweeper = asyncio.get_running_loop().create_task(self.housekeeping())

    def servers(self) -> list[tuple[str, int]]:
        return [(s.ip, s.port) for s in self.line_servers]

    def stop_accepting(self) -> None:
        self.draining = True
        for server in self.line_servers:
            if server.server is not None:
                server.server.close()
            for writer, busy in list(server.connections.items()):
                if not busy:
                    writer.transport.abort()  # waiting for a request line

    async def drain(self) -> None:
        while any(s.in_flight for s in self.line_servers):
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self.line_servers:
            for writer in list(server.connections):
                writer.transport.abort()
            if server.server is not None:
                server.server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.server.wait_closed(), 1.0)
        self.core.close()

    def client_state(self) -> dict[str, Any]:
        return self.core.client_state()
