"""The running ``thrift`` router: the protocol hooks of turnout's request stack.

A client connection carries Thrift messages, framed or buffered; several may be in flight
(pipelining), and replies go back in the order the calls arrived (seqids may repeat). Each
call's header (name, type, seqid) is read, the call is named ``dstPrefix [/dest] [/service]
[/method]`` as Linkerd's ``thrift.Identifier`` does and handed to the stack
(:meth:`RequestStack.routed`), which binds the name, picks an endpoint and calls
:meth:`ThriftRouter.send`. That writes the message bytes, unchanged, on a pooled endpoint
connection (one call at a time per connection, as Finagle's Thrift client) and reads the
reply: a REPLY is a success, an EXCEPTION a failure. ONEWAY calls get no reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from . import codec
from ._turnout import (
    DEFAULT_POOL_IDLE_TIME_MS,
    MAX_REQUEST_DTAB_BYTES,
    MAX_REQUEST_DTAB_ENTRIES,
    Address,
    Call,
    Client,
    Dtab,
    Endpoint,
    ParseError,
    Path,
    RequestStack,
    ServerStats,
    Tracing,
    core_router,
    tracing_of,
)

if TYPE_CHECKING:
    from ._turnout import BuildContext
    from .config import ThriftRouterConfig, ThriftServerConfig

log = logging.getLogger("turnout.thrift")

_LEN = struct.Struct(">i")
_READ = 65536
#: calls of one client connection in flight at once; reading pauses beyond it
MAX_PIPELINED = 1000
_MASK64 = (1 << 64) - 1


class ProtocolFailure(Exception):
    """A request that is Thrift but cannot be routed (a bad TTwitter dest or dtab)."""


class Slot:
    """A reply owed to a client connection, in arrival order."""

    __slots__ = ("data", "ready")

    def __init__(self) -> None:
        self.ready = False
        self.data = b""


class ThriftCall(Call):
    """One Thrift call on its way through the stack."""

    def __init__(self, start: float, conn: Connection, head: codec.Header, message: bytes) -> None:
        Call.__init__(self, start)
        self.conn = conn
        self.name = head.name
        self.seqid = head.seqid
        self.oneway = head.mtype == codec.ONEWAY
        #: the message as the client sent it (without frame or TTwitter header)
        self.message = message
        #: the reply message for the client (set by an endpoint's reply or by fail())
        self.answer = b""
        self.slot: Slot | None = None
        self.local_dtab = Dtab.empty
        self.dest = Path()
        self.task: asyncio.Task[None] | None = None
        self.upstream: Upstream | None = None


class Upstream:
    """One connection to an endpoint (one call at a time)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.upgraded = False
        self.buf = bytearray()
        self.born = self.idle_since = time.monotonic()

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing() and not self.buf

    def close(self) -> None:
        self.writer.transport.abort()


class Pool:
    """The idle connections of one endpoint, with its client's Thrift options."""

    def __init__(self, address: Address, client: Client, router: ThriftRouter) -> None:
        self.address = address
        self.client = client
        self.router = router
        config = router.config.client
        self.framed, self.upgrade = (
            config.thrift_options(client.id) if config is not None else (True, False)
        )
        self.idle: list[Upstream] = []
        self.closed = False
        limits = client.policy.host_connection_pool
        session = client.policy.client_session
        idle_ms = limits.idle_time_ms
        if idle_ms is None:
            idle_ms = (
                session.idle_time_ms
                if session is not None and session.idle_time_ms
                else DEFAULT_POOL_IDLE_TIME_MS
            )
        #: idle connections are closed after this (None: kept; hostConnectionPool.idleTimeMs 0)
        self.idle_time: float | None = idle_ms / 1000 if idle_ms else None
        #: connections this old are not reused (clientSession.lifeTimeMs)
        self.life_time: float | None = (
            session.life_time_ms / 1000 if session is not None and session.life_time_ms else None
        )
        router.pools.add(self)

    async def get(self) -> Upstream:
        now = time.monotonic()
        while self.idle:
            up = self.idle.pop()
            if up.usable() and (self.life_time is None or now - up.born < self.life_time):
                return up
            up.close()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self.address.host, self.address.port),
            self.router.connect_timeout,
        )
        self.client.stats.connects.incr()
        up = Upstream(reader, writer)
        if self.upgrade:
            try:
                await asyncio.wait_for(self._probe(up), self.router.connect_timeout)
            except BaseException:
                up.close()
                raise
        return up

    async def _probe(self, up: Upstream) -> None:
        """Finagle's TTwitter upgrade: call ``__can__finagle__trace__v3__``; any answer but an
        EXCEPTION (a plain server's "unknown method") upgrades the connection."""
        compact = self.router.compact
        probe = codec.empty_struct_call(codec.CAN_TRACE, codec.CALL, 0, compact)
        up.writer.write(frame(probe) if self.framed else probe)
        try:
            reply = await self.router.read_reply(up, self.framed, False)
        except codec.Malformed as e:
            raise OSError(f"TTwitter upgrade probe: {e}") from None
        head, _ = codec.read_header(reply, compact)
        up.upgraded = head.mtype != codec.EXCEPTION
        (self.router.upgraded if up.upgraded else self.router.not_upgraded).incr()

    def release(self, up: Upstream) -> None:
        if self.closed or not up.usable():
            up.close()
        else:
            up.idle_since = time.monotonic()
            self.idle.append(up)

    def expire(self, now: float) -> None:
        """Close the connections idle longer than the idle time (the router's sweep)."""
        if self.idle_time is None or not self.idle:
            return
        keep = [up for up in self.idle if now - up.idle_since <= self.idle_time]
        for up in self.idle:
            if now - up.idle_since > self.idle_time:
                up.close()
        self.idle = keep

    def close(self) -> None:
        self.closed = True
        for up in self.idle:
            up.close()
        self.idle.clear()

    close_when_idle = close


def frame(message: bytes) -> bytes:
    return _LEN.pack(len(message)) + message


class Connection:
    """One client connection: reads calls, writes replies in arrival order."""

    def __init__(self, server: ThriftServer, writer: asyncio.StreamWriter, peer: Any) -> None:
        self.server = server
        self.writer = writer
        self.peer = peer
        self.upgraded = False
        self.pending: deque[Slot] = deque()
        self.in_flight = 0
        #: set when in_flight drops below MAX_PIPELINED (or to 0 when the client stopped)
        self.room = asyncio.Event()

    def flush(self) -> None:
        pending = self.pending
        out: list[bytes] = []
        while pending and pending[0].ready:
            out.append(pending.popleft().data)
        if out and not self.writer.is_closing():
            self.writer.write(b"".join(out))

    def reply(self, slot: Slot, message: bytes) -> None:
        if self.upgraded:
            message = codec.empty_struct(self.server.router.compact) + message
        slot.data = frame(message) if self.server.framed else message
        slot.ready = True
        self.flush()


class ThriftServer:
    """One listening socket of the router."""

    def __init__(self, router: ThriftRouter, config: ThriftServerConfig, port: int) -> None:
        self.router = router
        self.ip = config.ip
        self.port = port
        self.framed = config.thrift_framed
        self.clear_context = config.clear_context
        self.timeout = config.timeout_ms / 1000 if config.timeout_ms else None
        self.max_concurrent = config.max_concurrent_requests
        self.server: asyncio.Server | None = None
        self.stats: ServerStats
        self.connections: dict[asyncio.StreamWriter, Connection] = {}
        self.in_flight = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self.serve, self.ip, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        scope = ("rt", self.router.label, "server", self.ip, str(self.port))
        self.stats = ServerStats(self.router.metrics, scope)
        self.malformed = self.router.metrics.counter(*scope, "malformed")
        self.upgrades = self.router.metrics.counter(*scope, "ttwitter_upgrades")

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connects.incr()
        peer = writer.get_extra_info("peername") or ("-", 0)
        conn = Connection(self, writer, peer)
        self.connections[writer] = conn
        router = self.router
        limit = router.max_message
        buf = bytearray()
        try:
            while not router.draining:
                try:
                    while True:
                        taken = self._next(conn, buf, limit)
                        if taken is None:
                            break
                        router.handle(conn, *taken)
                except (codec.Malformed, ProtocolFailure) as e:
                    self.malformed.incr()
                    log.warning(
                        "thrift router %s: closing the connection from %s:%s: malformed "
                        "request: %s",
                        router.label,
                        peer[0],
                        peer[1],
                        e,
                    )
                    break
                while conn.in_flight >= MAX_PIPELINED:
                    conn.room.clear()
                    await conn.room.wait()
                data = await reader.read(_READ)
                if not data:
                    break
                buf += data
                if writer.transport.get_write_buffer_size() > limit:
                    await writer.drain()
            while conn.in_flight and not writer.is_closing():  # answer what was asked
                conn.room.clear()
                await conn.room.wait()
        except OSError:
            pass
        finally:
            del self.connections[writer]
            writer.close()

    def _next(
        self, conn: Connection, buf: bytearray, limit: int
    ) -> tuple[bytes, codec.Header, int] | None:
        """The next whole request of ``buf`` (removed from it): its payload (the frame, or the
        buffered message with its TTwitter header), header and message start; None: more
        bytes needed."""
        compact = self.router.compact
        if self.framed:
            if len(buf) < 4:
                return None
            n = _LEN.unpack_from(buf)[0]
            if n <= 0 or n > limit:
                raise codec.Malformed(
                    f"a frame of {n} bytes (the limit is maxMessageBytes = {limit})"
                    if n > 0
                    else f"a frame length of {n}"
                )
            if len(buf) < 4 + n:
                return None
            payload = bytes(buf[4 : 4 + n])
            del buf[: 4 + n]
            head, body = codec.read_header(payload, compact, conn.upgraded)
            return payload, head, body
        if not buf:
            return None
        try:
            head, body, end = codec.message_end(buf, 0, limit, compact, conn.upgraded)
        except codec.NeedMore:
            return None
        payload = bytes(buf[:end])
        del buf[:end]
        return payload, head, body


class ThriftRouter(RequestStack):
    """The runtime of one ``protocol: thrift`` router."""

    def __init__(self, config: ThriftRouterConfig, ctx: BuildContext) -> None:
        assert ctx.interpreter is not None
        self.config = config
        #: every endpoint's pool, for the idle sweep
        self.pools: weakref.WeakSet[Pool] = weakref.WeakSet()
        core = core_router(
            config.core_config(), ctx, lambda address, client: Pool(address, client, self)
        )
        tracing = tracing_of(ctx)
        label, timeout = config.effective_label, config.binding_timeout_ms / 1000
        RequestStack.__init__(self, core, ctx.metrics, label, config.dtab, tracing, timeout)
        self.status_tag = "thrift.status"
        self.prefix = config.dst_prefix
        self.method_in_dst = config.thrift_method_in_dst
        self.compact = config.thrift_protocol == "compact"
        self.max_message = config.max_message_bytes
        self.connect_timeout = config.connect_timeout_ms / 1000
        self.thrift_servers = [ThriftServer(self, s, config.server_port(s)) for s in config.servers]
        scope = ("rt", self.label, "ttwitter")
        self.upgraded = ctx.metrics.counter(*scope, "upgraded_connections")
        self.not_upgraded = ctx.metrics.counter(*scope, "plain_connections")
        self._idle = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    # -- requests ----------------------------------------------------------------------------
    def handle(self, conn: Connection, payload: bytes, head: codec.Header, body: int) -> None:
        """One request read from ``conn``: answer the TTwitter probe, or route the call."""
        server = conn.server
        if head.mtype not in (codec.CALL, codec.ONEWAY):
            raise codec.Malformed(f"a client sent message type {head.mtype} ({head.name!r})")
        if not conn.upgraded and head.name == codec.CAN_TRACE and head.mtype == codec.CALL:
            slot = Slot()
            conn.pending.append(slot)
            conn.upgraded = True  # (the probe's reply itself has no ResponseHeader)
            reply = codec.empty_struct_call(codec.CAN_TRACE, codec.REPLY, head.seqid, self.compact)
            slot.data = frame(reply) if server.framed else reply
            slot.ready = True
            server.upgrades.incr()
            conn.flush()
            return
        call = ThriftCall(time.monotonic(), conn, head, payload[body:])
        incoming = None
        if conn.upgraded:
            incoming = self._peel(call, payload[:body], server.clear_context)
        if not call.oneway:
            call.slot = Slot()
            conn.pending.append(call.slot)
        conn.in_flight += 1
        server.in_flight += 1
        if self.tracing is not None:
            call.trace = self.tracing.server(incoming)
        if server.max_concurrent is not None and server.in_flight > server.max_concurrent:
            server.stats.rejected.incr()
            call.failure = "rejected"
            self.fail(call, 503, f"max concurrent requests exceeded ({server.max_concurrent})")
            return
        call.dst = self.prefix + call.dest + self.suffix(call.name)
        self.routed(call, self.route_to(call.dst, call.local_dtab), call.start)

    def suffix(self, name: str) -> Path:
        """Linkerd's ``thrift.Identifier``: ``service:method`` (TMultiplexedProtocol) gives
        ``/service[/method]``; a plain name gives ``/method`` with thriftMethodInDst."""
        parts = name.split(":")
        if len(parts) == 2 and all(parts):
            return Path.of(parts[0], parts[1]) if self.method_in_dst else Path.of(parts[0])
        return Path.of(name) if self.method_in_dst and name else Path()

    def _peel(self, call: ThriftCall, header: bytes, clear: bool) -> Any:
        """Read a TTwitter ``RequestHeader``: trace ids (returned, as the tracer's context),
        and unless ``clear`` (``clearContext``) its ``dest`` and ``delegations``."""
        fields, _ = codec.decode_struct(header, self.compact)

        def get(fid: int, default: Any = None) -> Any:
            return fields.get(fid, (0, default))[1]

        if not clear:
            dest = get(9)
            try:
                if isinstance(dest, bytes) and dest not in (b"", b"/"):
                    call.dest = Path.read(dest.decode())
                dentries = get(10) or []
                if len(dentries) > MAX_REQUEST_DTAB_ENTRIES:
                    raise ProtocolFailure(f"more than {MAX_REQUEST_DTAB_ENTRIES} delegations")
                text = ";".join(
                    f"{d.get(1, (0, b''))[1].decode()}=>{d.get(2, (0, b''))[1].decode()}"
                    for d in dentries
                    if isinstance(d, dict) and 1 in d and 2 in d
                )
                if len(text) > MAX_REQUEST_DTAB_BYTES:
                    raise ProtocolFailure(f"delegations longer than {MAX_REQUEST_DTAB_BYTES} bytes")
                if text:
                    call.local_dtab = Dtab.read(text)
            except (ParseError, UnicodeDecodeError, AttributeError) as e:
                raise ProtocolFailure(f"TTwitter request header: {e}") from None
        trace_id, span_id = get(1), get(2)
        if not isinstance(trace_id, int) or not isinstance(span_id, int):
            return None
        high = get(11) or 0
        b3 = [
            (b"x-b3-traceid", f"{((high & _MASK64) << 64) | (trace_id & _MASK64):016x}".encode()),
            (b"x-b3-spanid", f"{span_id & _MASK64:016x}".encode()),
        ]
        parent = get(3)
        if isinstance(parent, int):
            b3.append((b"x-b3-parentspanid", f"{parent & _MASK64:016x}".encode()))
        sampled = get(5)
        if isinstance(sampled, bool):
            b3.append((b"x-b3-sampled", b"1" if sampled else b"0"))
        if (get(7) or 0) & 1:
            b3.append((b"x-b3-flags", b"1"))
        return Tracing.extract(b3)

    async def read_reply(self, up: Upstream, framed: bool, header_struct: bool) -> bytes:
        """One reply payload from an endpoint (its ResponseHeader, if any, still on it)."""
        if framed:
            n = _LEN.unpack(await up.reader.readexactly(4))[0]
            if n <= 0 or n > self.max_message:
                raise codec.Malformed(f"a reply frame of {n} bytes")
            return await up.reader.readexactly(n)
        buf = up.buf
        while True:
            if buf:
                try:
                    _, _, end = codec.message_end(
                        buf, 0, self.max_message, self.compact, header_struct
                    )
                except codec.NeedMore:
                    pass
                else:
                    payload = bytes(buf[:end])
                    del buf[:end]
                    return payload
            data = await up.reader.read(_READ)
            if not data:
                raise asyncio.IncompleteReadError(bytes(buf), None)
            buf += data

    def _request_bytes(self, call: ThriftCall, pool: Pool, up: Upstream) -> bytes:
        message = call.message
        if up.upgraded:
            trace = call.trace
            if trace is not None:
                ctx = trace.context
                span = trace.client_span or Tracing.start_client(trace)
                ids: tuple[int, int, int | None, bool | None, int, int] = (
                    ctx.trace_id & _MASK64,
                    span,
                    ctx.span_id,
                    trace.propagate_sampled,
                    1 if ctx.debug else 0,
                    ctx.trace_id >> 64,
                )
            else:
                rand = int.from_bytes(os.urandom(8), "big") >> 1
                ids = (rand, rand, None, None, 0, 0)
            delegations = [(str(d.prefix), str(d.dst)) for d in call.local_dtab]
            header = codec.request_header(
                self.compact,
                ids[0],
                ids[1],
                ids[2],
                ids[3],
                ids[4],
                str(call.dest),
                delegations,
                ids[5],
            )
            message = header + message
        return frame(message) if pool.framed else message

    @staticmethod
    async def _within(work: Any, timeout: float) -> bytes:
        """``await work`` (a coroutine: a reply, or b"" for None), or :class:`TimeoutError`
        after ``timeout``: :func:`asyncio.wait_for` without its extra task."""
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(timeout, expire)
        try:
            result = await work
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            timer.cancel()
        return result if isinstance(result, bytes) else b""

    async def _exchange(self, call: ThriftCall, pool: Pool) -> None:
        """One attempt: a connection, the call out, its reply in (cancelled by
        :meth:`cancel_attempt` when a deadline passes)."""
        try:
            up = await pool.get()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, codec.Malformed) as e:
            call.failure = "connect_timeout" if isinstance(e, TimeoutError) else "connect"
            why = str(e) or type(e).__name__
            self.requeue_or_fail(
                call, f"connect to {pool.address} failed: {why}", never_written=True
            )
            return
        call.upstream = up
        try:
            up.writer.write(self._request_bytes(call, pool, up))
            call.written = True
            payload = await self._within(
                up.writer.drain() if call.oneway else self.read_reply(up, pool.framed, up.upgraded),
                pool.client.response_idle_timeout,
            )
        except TimeoutError:
            self.cancel_attempt(call)
            call.failure = "response_timeout"
            self.fail(call, 504, f"no reply from {pool.address} in time (responseIdleTimeoutMs)")
            return
        except codec.Malformed as e:
            self.cancel_attempt(call)
            call.failure = "malformed_response"
            log.warning(
                "thrift router %s: malformed reply from %s: %s", self.label, pool.address, e
            )
            self.fail(call, 502, f"malformed reply from {pool.address}: {e}")
            return
        except (asyncio.IncompleteReadError, OSError) as e:
            self.cancel_attempt(call)
            call.failure = "connection_closed"
            why = f"connection to {pool.address} failed before a reply: {type(e).__name__}"
            self.requeue_or_fail(call, why, never_written=not call.written)
            return
        call.upstream = call.task = None
        if call.oneway:
            pool.release(up)
            call.status = 200
            self.complete(call, True)
            return
        try:
            head, body = codec.read_header(payload, self.compact, up.upgraded)
            if head.seqid != call.seqid:
                raise codec.Malformed(f"reply seqid {head.seqid}, expected {call.seqid}")
        except codec.Malformed as e:
            up.close()
            call.failure = "malformed_response"
            log.warning(
                "thrift router %s: malformed reply from %s: %s", self.label, pool.address, e
            )
            self.fail(call, 502, f"malformed reply from {pool.address}: {e}")
            return
        pool.release(up)
        call.answer = payload[body:]
        success = head.mtype == codec.REPLY
        call.status = 200 if success else 500
        if not success:
            call.failure = "exception"
        self.complete(call, success)

    def sweep(self, now: float) -> None:
        RequestStack.sweep(self, now)
        for pool in list(self.pools):
            pool.expire(now)

    # -- protocol hooks of the request stack ----------------------------------------------------
    def send(self, call: Call, endpoint: Endpoint) -> None:
        c = cast(ThriftCall, call)
        c.task = asyncio.get_running_loop().create_task(self._exchange(c, endpoint.pool))

    def cancel_attempt(self, call: Call) -> None:
        c = cast(ThriftCall, call)
        task, up = c.task, c.upstream
        c.task = c.upstream = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        if up is not None:
            up.close()

    def fail(self, call: Call, status: int, message: str, summary: str | None = None) -> None:
        c = cast(ThriftCall, call)
        self.release_endpoint(c, success=False)
        c.status = status
        kind = codec.PROTOCOL_ERROR if status == 400 else codec.INTERNAL_ERROR
        text = f"Internal error processing {c.name}: '{summary or message}'"
        c.answer = codec.exception_message(c.name, c.seqid, kind, text, self.compact)
        self.finish(c, False)

    def resendable(self, call: Call) -> bool:
        return True  # (the message is kept whole)

    def server_timeout(self, call: Call) -> float | None:
        return cast(ThriftCall, call).conn.server.timeout

    def server_stats(self, call: Call) -> ServerStats:
        return cast(ThriftCall, call).conn.server.stats

    def finished(self, call: Call, success: bool, elapsed_ms: float) -> None:
        c = cast(ThriftCall, call)
        conn = c.conn
        conn.in_flight -= 1
        conn.room.set()
        server = conn.server
        server.in_flight -= 1
        if c.slot is not None and not c.slot.ready:
            conn.reply(c.slot, c.answer)
        if self.draining and not any(s.in_flight for s in self.thrift_servers):
            self._idle.set()

    def span_name(self, call: Call) -> str:
        return cast(ThriftCall, call).name

    def span_peer(self, call: Call) -> tuple[str | None, int | None]:
        host, port = cast(ThriftCall, call).conn.peer[:2]
        return (host if host != "-" else None), (port or None)

    # -- RouterRuntime ---------------------------------------------------------------------------
    async def start(self) -> None:
        for server in self.thrift_servers:
            await server.start()
        self._sweeper = asyncio.get_running_loop().create_task(self.housekeeping())

    def servers(self) -> list[tuple[str, int]]:
        return [(s.ip, s.port) for s in self.thrift_servers]

    def stop_accepting(self) -> None:
        self.draining = True
        for server in self.thrift_servers:
            if server.server is not None:
                server.server.close()
            for writer, conn in list(server.connections.items()):
                if not conn.in_flight:
                    writer.transport.abort()

    async def drain(self) -> None:
        while any(s.in_flight for s in self.thrift_servers):
            self._idle.clear()
            await self._idle.wait()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self.thrift_servers:
            for writer in list(server.connections):
                writer.transport.abort()
            if server.server is not None:
                server.server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.server.wait_closed(), 1.0)
        self.core.close()

    def client_state(self) -> dict[str, Any]:
        return self.core.client_state()
