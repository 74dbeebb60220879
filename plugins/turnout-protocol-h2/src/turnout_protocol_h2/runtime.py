"""The running ``h2`` router: the protocol hooks of turnout's request stack, over the
libnghttp2 codec.

A client connection (:class:`Downstream`) is one :class:`~.codec.ServerSession`; each request
stream becomes an :class:`H2Call`, is named by the router's identifiers and handed to the
stack (:meth:`RequestStack.routed`), which binds the name, picks an endpoint and calls
:meth:`H2Router.send`. That opens a stream on a pooled endpoint connection
(:class:`Upstream`, one :class:`~.codec.ClientSession`, streams multiplexed up to the
endpoint's SETTINGS_MAX_CONCURRENT_STREAMS) and the two streams are spliced: headers, DATA and
trailers each way, RST_STREAM propagated both ways.

**Flow control is the backpressure.** The codec never returns receive credit by itself: bytes
received on one side are queued on the other side's stream, and credit goes back to the
sender (``consume``) only once the codec has framed them out to the socket (the call's
``req_owed`` / ``rsp_owed``, settled after each write by :meth:`Conn.settle`). A socket whose
peer does not read pauses writing (asyncio's ``pause_writing``), frames stay in the codec, and
no credit is returned: a slow reader never makes turnout buffer more than one stream window.

All frames are written from one place: connections with something to send are "touched"
(:meth:`H2Router.touch`) and written together at the end of the callback
(:meth:`H2Router.flush_dirty`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from turnout.api import (
    DEFAULT_POOL_IDLE_TIME_MS,
    MAX_REQUEST_DTAB_BYTES,
    MAX_REQUEST_DTAB_ENTRIES,
    RETRYABLE,
    SUCCESS,
    TRACE_HEADERS,
    Address,
    Call,
    Client,
    Dtab,
    Endpoint,
    LineLog,
    ParseError,
    Path,
    RequestStack,
    RollPolicy,
    Route,
    RouteCache,
    ServerStats,
    Tracing,
    client_tls,
    core_router,
    server_context,
    take_over_servers,
    tracing_of,
)

from . import classifiers
from .codec import (
    ClientSession,
    CodecError,
    ConnectionTerminated,
    DataReceived,
    ErrorCode,
    GoAwayReceived,
    H2Options,
    InformationalResponseReceived,
    RequestReceived,
    ResponseReceived,
    ServerSession,
    StreamClosed,
    StreamReset,
    TrailersReceived,
)
from .config import (
    DEFAULT_CLASSIFICATION_TIMEOUT_MS,
    DEFAULT_RETRY_BUFFER,
    AddForwardedHeaderConfig,
    ForwardedLabelConfig,
    H2RouterConfig,
    H2ServerConfig,
    H2Settings,
)
from .identifiers import FirstOf, Identifier, Unidentified

if TYPE_CHECKING:
    from turnout.api import BuildContext

log = logging.getLogger("turnout.h2")

Headers = list[tuple[bytes, bytes]]
#: longest wait for a TCP connection to an endpoint (as the HTTP router's)
CONNECT_TIMEOUT = 3.0
VIA = b"2 turnout"
#: request headers turnout sets itself (an incoming one is dropped)
_DST_HEADERS = frozenset(
    {b"l5d-dst-service", b"l5d-dst-client", b"l5d-dst-residual", b"l5d-reqid", b"l5d-ctx-dtab"}
)
#: gRPC status codes turnout answers with
GRPC_DEADLINE_EXCEEDED = 4
GRPC_INTERNAL = 13
GRPC_UNAVAILABLE = 14
_TIMEOUTS = frozenset({"server_timeout", "total_timeout", "attempt_timeout", "response_timeout"})
#: session statistics counted per server under ``h2/`` (each ended its connection but the
#: stream/frame counts)
_ABUSE_STATS = (
    "rapid_reset",
    "continuation_flood",
    "control_flood",
    "header_list_too_large",
    "too_many_streams",
    "callback_errors",
    "protocol_errors",
)
_GRPC_TIMEOUT_UNITS = {
    b"H": 3600.0,
    b"M": 60.0,
    b"S": 1.0,
    b"m": 1e-3,
    b"u": 1e-6,
    b"n": 1e-9,
}


def grpc_timeout(value: bytes) -> float | None:
    """Seconds of a ``grpc-timeout`` value (``<digits, at most 8><unit>``); None if invalid."""
    if len(value) < 2 or len(value) > 9:
        return None
    unit = _GRPC_TIMEOUT_UNITS.get(value[-1:])
    digits = value[:-1]
    if unit is None or not digits.isdigit():
        return None
    return int(digits) * unit


def _options(s: H2Settings, concurrent: int | None, max_pending: int) -> H2Options:
    window = s.initial_stream_window_bytes
    stream = 65535 if window is None else window
    conn = s.initial_connection_window_bytes or max(65535, min(stream * 4, 2**31 - 1))
    kwargs: dict[str, Any] = {
        "initial_stream_window_bytes": stream,
        "initial_connection_window_bytes": conn,
        "max_pending_stream_bytes": max_pending,
    }
    if s.max_frame_bytes is not None:
        kwargs["max_frame_bytes"] = s.max_frame_bytes
    if s.max_header_list_bytes is not None:
        kwargs["max_header_list_bytes"] = s.max_header_list_bytes
    if concurrent is not None:
        kwargs["max_concurrent_streams_per_connection"] = concurrent
    return H2Options(**kwargs)


# -- per route -------------------------------------------------------------------------------


class H2RouteCache(RouteCache):
    """What the h2 path caches per route: classifier, retry buffer, classification timeout."""

    def __init__(self, route: Route, router: H2Router) -> None:
        RouteCache.__init__(self, route)
        cfg = route.policy.response_classifier
        self.classifier: classifiers.H2Classifier = (
            cfg.new_classifier() if cfg is not None else classifiers.DEFAULT
        )
        service = router.config.service
        extra = service.h2_params(route.path) if service is not None else {}
        buffers = extra.get("retry_buffer_size")
        self.request_buffer = buffers.request_bytes if buffers else DEFAULT_RETRY_BUFFER
        self.response_buffer = buffers.response_bytes if buffers else DEFAULT_RETRY_BUFFER
        ms = extra.get("classification_timeout_ms")
        self.classification_timeout = (
            ms if ms is not None else DEFAULT_CLASSIFICATION_TIMEOUT_MS
        ) / 1000
        self.service_header = (b"l5d-dst-service", str(route.path).encode())
        self.ctx_dtab: Headers = (
            [(b"l5d-ctx-dtab", str(route.local_dtab).encode())] if len(route.local_dtab) else []
        )


# -- one request ------------------------------------------------------------------------------


class H2Call(Call):
    """One request stream on its way through the stack, and the endpoint stream it is spliced
    to."""

    def __init__(self, start: float, conn: Downstream, sid: int, headers: Headers) -> None:
        Call.__init__(self, start)
        self.conn = conn
        self.sid = sid
        self.headers = headers
        self.method = b""
        self.path = b""
        self.authority = b""
        self.grpc = False
        self.local_dtab = Dtab.empty
        #: grpc-timeout (seconds), a deadline of its own
        self.grpc_deadline: float | None = None
        #: the client's side of the stream is still open (the codec has not closed it)
        self.down_open = True
        #: the request stream ended (END_STREAM or trailers received)
        self.req_ended = False
        self.req_trailers: Headers | None = None
        #: request body bytes received and not yet handed to an endpoint stream (no credit
        #: returned for them yet)
        self.pending: list[bytes] = []
        #: the whole request body, kept for a retry while within retryBufferSize (None: not)
        self.body: list[bytes] | None = []
        self.kept = 0
        #: request body bytes handed to any endpoint stream
        self.forwarded = 0
        #: the endpoint stream of the attempt in progress
        self.up: Upstream | None = None
        self.usid = 0
        #: what the response's DATA is credited back to (kept after a detach)
        self.src: Upstream | None = None
        self.src_sid = 0
        #: request bytes queued on the endpoint stream, credit owed to the client
        self.req_owed = 0
        #: response bytes queued on the client stream, credit owed to the endpoint
        self.rsp_owed = 0
        #: response headers held while the classification is awaited (gRPC retries), and the
        #: response DATA held with them (within retryBufferSize.responseBytes; its credit is
        #: returned to the endpoint as it is held)
        self.held: Headers | None = None
        self.held_data: list[bytes] = []
        self.held_bytes = 0
        self.held_timer: asyncio.TimerHandle | None = None
        #: responseIdleTimeoutMs of the attempt: no response headers by then
        self.idle_timer: asyncio.TimerHandle | None = None
        self.response_ended = False
        self.grpc_status: int | None = None
        self.response_bytes = 0
        self.request_bytes = 0
        #: when the request stream ended, the response began and ended (monotonic; 0: not)
        self.req_end_at = 0.0
        self.rsp_start_at = 0.0
        self.rsp_end_at = 0.0
        #: the attempt's connect task, while waiting for a connection
        self.task: asyncio.Task[None] | None = None
        #: when the client last took response bytes (or the first were queued for it)
        self.progress = 0.0
        #: the endpoint wants no more of the request: reset the client's stream (NO_ERROR)
        #: once the response is written
        self.stop_request = False

    def header(self, name: bytes) -> bytes | None:
        found = None
        for k, v in self.headers:
            if k == name:
                found = v
        return found


# -- connections ------------------------------------------------------------------------------


class Conn(asyncio.Protocol):
    """What client and endpoint connections share: the codec session, writing, credit."""

    session: ServerSession | ClientSession

    def __init__(self, router: H2Router) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.paused_since = 0.0
        self.dirty = False
        self.closed = False
        #: calls with bytes queued on this connection whose credit is owed to their source
        self.owing: set[H2Call] = set()
        self.last_active = time.monotonic()

    def pause_writing(self) -> None:
        self.paused = True
        self.paused_since = time.monotonic()

    def resume_writing(self) -> None:
        self.paused = False
        self.router.touch(self)

    def flush(self) -> None:
        transport = self.transport
        if transport is None or self.closed:
            return
        if not self.paused:
            try:
                data = self.session.data_to_send()
            except CodecError:
                log.exception("h2 router %s: codec failed writing", self.router.label)
                self.abort()
                return
            if data:
                transport.write(data)
            if self.owing:
                self.settle()
            self.handle(self.session.events())
        if self.session.is_finished:
            self.closed = True
            transport.close()

    def data_received(self, data: bytes) -> None:
        self.last_active = time.monotonic()
        try:
            events = self.session.feed(data)
        except CodecError:
            log.exception("h2 router %s: codec failed reading", self.router.label)
            self.abort()
            return
        self.handle(events)
        self.router.touch(self)
        self.router.flush_dirty()

    def settle(self) -> None:
        """Return credit to the sources of the bytes this connection has written out."""
        raise NotImplementedError

    def handle(self, events: list[Any]) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Downstream(Conn):
    """One client connection (the server side of HTTP/2)."""

    session: ServerSession

    def __init__(self, server: H2Server) -> None:
        Conn.__init__(self, server.router)
        self.server = server
        self.calls: dict[int, H2Call] = {}
        self.peer: tuple[str, int] = ("-", 0)
        self.local: tuple[str, int] = ("-", 0)
        self.random_label = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = cast(asyncio.Transport, transport)
        self.transport = t
        server = self.server
        ssl_object = t.get_extra_info("ssl_object")
        if ssl_object is not None and ssl_object.selected_alpn_protocol() != "h2":
            server.not_h2.incr()
            t.abort()
            self.closed = True
            return
        peer = t.get_extra_info("peername")
        if peer:
            self.peer = (peer[0], peer[1])
        sock = t.get_extra_info("sockname")
        if sock:
            self.local = (sock[0], sock[1])
        self.session = ServerSession(server.options)
        server.stats.connects.incr()
        server.connections.add(self)
        if server.draining:
            self.session.start_shutdown()
        self.router.touch(self)
        self.router.flush_dirty()

    def handle(self, events: list[Any]) -> None:
        router = self.router
        for ev in events:
            t = type(ev)
            if t is RequestReceived:
                router.on_request(self, ev.stream_id, ev.headers, ev.end_stream)
            elif t is DataReceived:
                call = self.calls.get(ev.stream_id)
                if call is None or (call.finished and call.up is None):
                    self.session.consume(ev.stream_id, len(ev.data))
                    if call is not None and ev.end_stream:
                        call.req_ended = True
                else:
                    router.on_request_data(call, ev.data, ev.end_stream)
            elif t is TrailersReceived:
                call = self.calls.get(ev.stream_id)
                if call is not None:
                    router.on_request_trailers(call, ev.headers)
            elif t is StreamReset:
                call = self.calls.get(ev.stream_id)
                if call is not None:
                    router.on_client_reset(call, ev.error_code)
            elif t is StreamClosed:
                call = self.calls.pop(ev.stream_id, None)
                if call is not None:
                    router.on_client_closed(call, ev.error_code)
            elif t is ConnectionTerminated:
                self.router.touch(self)

    def settle(self) -> None:
        session = self.session
        done = []
        now = time.monotonic()
        for call in self.owing:
            pending = session.pending(call.sid)
            n = call.rsp_owed - (pending if pending > 0 else 0)
            if n > 0:
                call.rsp_owed -= n
                call.progress = now
                self.router.credit_upstream(call, n)
            if call.rsp_owed <= 0:
                done.append(call)
                if call.stop_request:
                    self.router.stop_request(call)
        for call in done:
            self.owing.discard(call)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        server = self.server
        server.connections.discard(self)
        if hasattr(self, "session"):
            stats = self.session.stats()
            for name in _ABUSE_STATS:
                if stats[name]:
                    server.abuse[name].incr(stats[name])
            if stats["goaway_sent"] and stats["goaway_sent_code"]:
                server.goaway_errors.incr()
        for call in list(self.calls.values()):
            self.router.on_client_closed(call, ErrorCode.CANCEL)
        self.calls.clear()
        for call in list(self.owing):
            self.router.credit_upstream(call, call.rsp_owed)
            call.rsp_owed = 0
        self.owing.clear()
        self.router.flush_dirty()
        self.router.idle_check()


class Upstream(Conn):
    """One connection to an endpoint (the client side of HTTP/2); streams multiplexed."""

    session: ClientSession

    def __init__(self, pool: Pool) -> None:
        Conn.__init__(self, pool.router)
        self.pool = pool
        self.session = ClientSession(pool.options)
        self.streams: dict[int, H2Call] = {}
        self.goaway = False
        self.ready = False
        self.born = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.router.touch(self)

    def usable(self) -> bool:
        return (
            not self.closed
            and not self.goaway
            and self.session.request_allowed
            and len(self.streams) < self.limit()
        )

    def limit(self) -> int:
        peer = self.session.remote_max_concurrent_streams()
        mine = self.pool.max_streams
        return min(peer, mine) if mine is not None else peer

    def handle(self, events: list[Any]) -> None:
        router = self.router
        for ev in events:
            t = type(ev)
            if t is DataReceived:
                call = self.streams.get(ev.stream_id)
                if call is None:
                    self.session.consume(ev.stream_id, len(ev.data))
                else:
                    router.on_response_data(call, ev.data, ev.end_stream)
            elif t is ResponseReceived:
                call = self.streams.get(ev.stream_id)
                if call is not None:
                    router.on_response(call, ev.headers, ev.end_stream)
            elif t is TrailersReceived:
                call = self.streams.get(ev.stream_id)
                if call is not None:
                    router.on_response_trailers(call, ev.headers)
            elif t is InformationalResponseReceived:
                call = self.streams.get(ev.stream_id)
                if call is not None and call.down_open and call.held is None:
                    with contextlib.suppress(CodecError):
                        call.conn.session.submit_informational(call.sid, ev.headers)
                        router.touch(call.conn)
            elif t is StreamReset:
                call = self.streams.get(ev.stream_id)
                if call is not None:
                    router.on_upstream_reset(call, ev.error_code)
            elif t is StreamClosed:
                call = self.streams.pop(ev.stream_id, None)
                if call is not None and call.up is self and call.usid == ev.stream_id:
                    router.on_upstream_closed(call, ev.error_code)
                self.pool.maybe_idle(self)
            elif t is GoAwayReceived or t is ConnectionTerminated:
                self.goaway = True
                self.pool.forget(self)

    def settle(self) -> None:
        session = self.session
        done = []
        for call in self.owing:
            if call.up is not self:
                done.append(call)
                continue
            pending = session.pending(call.usid)
            n = call.req_owed - (pending if pending > 0 else 0)
            if n > 0:
                call.req_owed -= n
                self.router.credit_downstream(call, n)
            if call.req_owed <= 0:
                done.append(call)
        for call in done:
            self.owing.discard(call)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        for usid, call in list(self.streams.items()):
            if call.up is self and call.usid == usid:
                self.router.on_upstream_reset(call, ErrorCode.INTERNAL_ERROR, lost=True)
        self.streams.clear()
        self.router.flush_dirty()


class Pool:
    """The connections of one endpoint: streams are multiplexed on them, a new connection is
    opened when every one is at its stream limit (up to hostConnectionPool.maxSize)."""

    def __init__(self, address: Address, client: Client, router: H2Router) -> None:
        self.address = address
        self.client = client
        self.router = router
        config = router.config.client
        params = config.h2_params(client.id) if config is not None else {}
        settings = H2Settings(**{k: v for k, v in params.items() if k in _SETTINGS})
        self.max_streams: int | None = params.get("max_concurrent_streams_per_connection")
        idle_ms = config.response_timeout_ms(client.id) if config is not None else None
        #: responseIdleTimeoutMs when set: the longest wait for the response headers
        self.response_timeout: float | None = idle_ms / 1000 if idle_ms else None
        self.options = _options(settings, None, router.max_pending)
        self.conns: list[Upstream] = []
        self.connecting: asyncio.Future[Upstream] | None = None
        limits = client.policy.host_connection_pool
        self.max_size = limits.max_size
        session = client.policy.client_session
        idle_ms = limits.idle_time_ms
        if idle_ms is None:
            idle_ms = (
                session.idle_time_ms
                if session is not None and session.idle_time_ms
                else DEFAULT_POOL_IDLE_TIME_MS
            )
        self.idle_time: float | None = idle_ms / 1000 if idle_ms else None
        #: TLS to the endpoint (ALPN h2), or None: h2c with prior knowledge
        self.tls = client_tls(client.policy.tls, client.policy.captures, alpn=["h2"])
        self.closed = False
        router.pools.add(self)

    def ready(self) -> Upstream | None:
        for conn in self.conns:
            if conn.usable():
                return conn
        return None

    async def get(self) -> Upstream:
        """A connection with room for a stream (opened if needed; one connect at a time)."""
        while True:
            conn = self.ready()
            if conn is not None:
                return conn
            fut = self.connecting
            if fut is None:
                if self.max_size is not None and len(self.conns) >= self.max_size:
                    raise OSError(
                        f"every connection to {self.address} is at its stream limit "
                        f"(hostConnectionPool.maxSize = {self.max_size})"
                    )
                fut = self.connecting = asyncio.get_running_loop().create_task(self._connect())
                fut.add_done_callback(self._connected)
            await asyncio.shield(fut)

    def _connected(self, fut: asyncio.Future[Upstream]) -> None:
        if self.connecting is fut:
            self.connecting = None
        if not fut.cancelled():
            fut.exception()  # (retrieved: each waiter sees it through the shield)

    async def _connect(self) -> Upstream:
        loop = asyncio.get_running_loop()
        tls = self.tls.kwargs() if self.tls is not None else {}
        transport, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: Upstream(self), self.address.host, self.address.port, **tls
            ),
            CONNECT_TIMEOUT,
        )
        if tls:
            ssl_object = transport.get_extra_info("ssl_object")
            chosen = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
            if chosen != "h2":
                transport.abort()
                raise OSError(
                    f"{self.address} did not negotiate HTTP/2 by ALPN (it chose {chosen!r})"
                )
        self.client.stats.connects.incr()
        if self.closed:
            conn.abort()
            raise OSError("the client was closed")
        self.conns.append(conn)
        self.router.flush_dirty()
        return conn

    def forget(self, conn: Upstream) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        if not conn.streams and not conn.closed:
            conn.session.close()
            self.router.touch(conn)

    def maybe_idle(self, conn: Upstream) -> None:
        conn.last_active = time.monotonic()
        if (conn.goaway or self.closed) and not conn.streams:
            conn.session.close()
            self.router.touch(conn)

    def expire(self, now: float) -> None:
        if self.idle_time is None:
            return
        for conn in list(self.conns):
            if not conn.streams and now - conn.last_active > self.idle_time:
                self.conns.remove(conn)
                conn.session.close()
                self.router.touch(conn)

    def close(self) -> None:
        self.closed = True
        for conn in list(self.conns):
            if not conn.streams:
                self.conns.remove(conn)
                conn.session.close()
                self.router.touch(conn)

    close_when_idle = close


_SETTINGS = frozenset(f.name for f in H2Settings.config_fields().values())


# -- servers ---------------------------------------------------------------------------------


class StreamStats:
    """Linkerd's h2 stream statistics of one server (its ``StreamStatsFilter``), recorded when
    a stream has ended on both sides: ``request/stream/`` and ``response/stream/`` (each
    ``stream_success``, ``stream_failures``, ``stream_duration_ms``, ``data_bytes``) and
    ``stream/`` (``stream_success``, ``stream_failures``, ``total_latency_ms``)."""

    def __init__(self, metrics: Any, scope: tuple[str, ...]) -> None:
        def side(*sub: str) -> tuple[Any, Any, Any, Any]:
            return (
                metrics.counter(*scope, *sub, "stream_success"),
                metrics.counter(*scope, *sub, "stream_failures"),
                metrics.stat(*scope, *sub, "stream_duration_ms"),
                metrics.stat(*scope, *sub, "data_bytes"),
            )

        self.request = side("request", "stream")
        self.response = side("response", "stream")
        self.success = metrics.counter(*scope, "stream", "stream_success")
        self.failures = metrics.counter(*scope, "stream", "stream_failures")
        self.total = metrics.stat(*scope, "stream", "total_latency_ms")

    def record(self, call: H2Call, ok: bool, now: float) -> None:
        ok_req = ok and call.req_end_at > 0
        success, failures, duration, data = self.request
        (success if ok_req else failures).incr()
        duration.add(((call.req_end_at or now) - call.start) * 1000)
        data.add(call.request_bytes)
        if call.rsp_start_at:
            ok_rsp = ok and call.rsp_end_at > 0
            success, failures, duration, data = self.response
            (success if ok_rsp else failures).incr()
            duration.add(((call.rsp_end_at or now) - call.rsp_start_at) * 1000)
            data.add(call.response_bytes)
        (self.success if ok and call.rsp_end_at else self.failures).incr()
        self.total.add((now - call.start) * 1000)


class H2Server:
    """One listening socket of the router."""

    def __init__(self, router: H2Router, config: H2ServerConfig, port: int) -> None:
        self.router = router
        self.ip = config.ip
        self.port = port
        self._configure(config)
        self.server: asyncio.Server | None = None
        self.connections: set[Downstream] = set()
        self.in_flight = 0
        self.draining = False
        self.stats: ServerStats

    def _configure(self, config: H2ServerConfig) -> None:
        self.config = config
        self.options = _options(
            config, config.max_concurrent_streams_per_connection, self.router.max_pending
        )
        self.clear_context = config.clear_context
        self.timeout = config.timeout_ms / 1000 if config.timeout_ms else None
        self.max_concurrent = config.max_concurrent_requests
        self.max_call_depth = config.max_call_depth
        self.send_timeout = config.send_timeout_ms / 1000
        self.forwarded: AddForwardedHeaderConfig | None = config.add_forwarded_header
        session = config.server_session
        self.idle_time = (
            session.idle_time_ms / 1000 if session is not None and session.idle_time_ms else None
        )

    def adopt(self, router: H2Router, config: H2ServerConfig) -> None:
        """A reload: serve for ``router`` (which took over this server's router) with
        ``config`` (same address, TLS and socket options). New connections get the new
        settings and the new router; on open connections the next stream goes to it, streams
        in flight finish on what they started with."""
        self.router = router
        self._configure(config)
        for conn in self.connections:
            conn.router = router

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ssl_ctx = server_context(self.config.tls, alpn=["h2"]) if self.config.tls else None
        kwargs: dict[str, Any] = {"reuse_address": True}
        opts = self.config.socket_options
        if opts is not None:
            kwargs["reuse_port"] = opts.reuse_port or None
            if opts.backlog:
                kwargs["backlog"] = opts.backlog
        self.server = await loop.create_server(
            lambda: Downstream(self), self.ip, self.port, ssl=ssl_ctx, **kwargs
        )
        self.port = getattr(self.server, "sockets")[0].getsockname()[1]  # noqa: B009
        label = self.config.label
        scope = ("rt", self.router.label, "server", label or self.ip, str(self.port))
        metrics = self.router.metrics
        self.stats = ServerStats(metrics, scope)
        self.abuse = {name: metrics.counter(*scope, "h2", name) for name in _ABUSE_STATS}
        self.goaway_errors = metrics.counter(*scope, "h2", "goaway_error")
        self.not_h2 = metrics.counter(*scope, "h2", "alpn_not_h2")
        self.unidentified = metrics.counter(*scope, "unidentified")
        self.resets = metrics.counter(*scope, "stream", "reset_by_client")
        self.streams = StreamStats(metrics, scope)
        self.stalled_streams = metrics.counter(*scope, "h2", "stalled_streams")
        self.stalled_connections = metrics.counter(*scope, "h2", "stalled_connections")
        metrics.gauge(*scope, "connections", fn=lambda: len(self.connections))

    def forwarded_value(self, conn: Downstream) -> bytes:
        cfg = self.forwarded
        assert cfg is not None
        parts = []
        for key, label, addr in (("by", cfg.by, conn.local), ("for", cfg.for_, conn.peer)):
            parts.append(f"{key}={_forwarded_label(label, addr, conn)}")
        return ";".join(parts).encode()


def _forwarded_label(
    label: ForwardedLabelConfig | None, addr: tuple[str, int], conn: Downstream
) -> str:
    kind = label.label_kind if label is not None else "ip"
    if kind == "static":
        return str(label.label) if label is not None else "unknown"
    if kind == "connectionRandom":
        if not conn.random_label:
            conn.random_label = b"_" + os.urandom(6).hex().encode()
        return conn.random_label.decode()
    if kind == "requestRandom":
        return "_" + os.urandom(6).hex()
    host, port = addr
    if host == "-":
        return "unknown"
    v6 = ":" in host
    if kind == "ip":
        return f'"[{host}]"' if v6 else host
    return f'"[{host}]:{port}"' if v6 else f'"{host}:{port}"'


class H2AccessLog(LineLog):
    """``h2AccessLog``: one line per stream, Apache's combined format prefixed by the
    authority."""

    def record(self, call: H2Call) -> None:
        referer = (call.header(b"referer") or b"-").decode("latin-1")
        agent = (call.header(b"user-agent") or b"-").decode("latin-1")
        self.write(
            f"{(call.authority or b'-').decode('latin-1')} {call.conn.peer[0]} - - "
            f'[{self.now()}] "{call.method.decode("latin-1")} {call.path.decode("latin-1")} '
            f'HTTP/2" {call.status} {call.response_bytes} "{referer}" "{agent}"'
        )


# -- the router ------------------------------------------------------------------------------


class H2Router(RequestStack):
    """The runtime of one ``protocol: h2`` router."""

    def __init__(self, config: H2RouterConfig, ctx: BuildContext) -> None:
        assert ctx.interpreter is not None
        self.config = config
        self.interpreter = ctx.interpreter
        self.pools: weakref.WeakSet[Pool] = weakref.WeakSet()
        core = core_router(config.core_config(), ctx, self._new_pool)
        label, timeout = config.effective_label, config.binding_timeout_ms / 1000
        RequestStack.__init__(self, core, ctx.metrics, label, config.dtab, tracing_of(ctx), timeout)
        self.status_tag = "http.status_code"
        identifiers = [c.new_identifier(config.dst_prefix) for c in config.identifiers()]
        self.identifier: Identifier = (
            identifiers[0] if len(identifiers) == 1 else FirstOf(identifiers)
        )
        # what one stream may hold queued beyond the peer's window: the largest receive
        # window of a server (what a client may send before credit) plus a retry buffer
        windows = [s.initial_stream_window_bytes or 65535 for s in config.servers]
        self.max_pending = max(1 << 20, 2 * max(windows, default=65535) + (1 << 20))
        self.h2_servers = [H2Server(self, s, config.server_port(s)) for s in config.servers]
        self.access_log: H2AccessLog | None = None
        self.dirty: list[Conn] = []
        self.flush_scheduled = False
        self._idle = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self.cancelled = ctx.metrics.counter("rt", label, "h2", "client_cancellations")

    def _new_pool(self, address: Address, client: Client) -> Pool:
        return Pool(address, client, self)

    # -- writing ---------------------------------------------------------------------------------
    def touch(self, conn: Conn) -> None:
        if not conn.dirty:
            conn.dirty = True
            self.dirty.append(conn)
            if not self.flush_scheduled:
                self.flush_scheduled = True
                asyncio.get_running_loop().call_soon(self.flush_dirty)

    def flush_dirty(self) -> None:
        self.flush_scheduled = False
        dirty = self.dirty
        while dirty:
            conn = dirty.pop()
            conn.dirty = False
            try:
                conn.flush()
            except Exception:  # a defect: lose this connection, never the router
                log.exception("h2 router %s: writing a connection failed", self.label)
                conn.abort()

    def credit_upstream(self, call: H2Call, n: int) -> None:
        src = call.src
        if src is not None and n > 0 and not src.closed:
            with contextlib.suppress(CodecError):
                src.session.consume(call.src_sid, n)
            self.touch(src)

    def credit_downstream(self, call: H2Call, n: int) -> None:
        conn = call.conn
        if n > 0 and not conn.closed:
            with contextlib.suppress(CodecError):
                conn.session.consume(call.sid, n)
            self.touch(conn)

    # -- requests from clients -------------------------------------------------------------------
    def on_request(self, conn: Downstream, sid: int, headers: Headers, end: bool) -> None:
        server = conn.server
        call = H2Call(time.monotonic(), conn, sid, headers)
        conn.calls[sid] = call
        call.req_ended = end
        if end:
            call.req_end_at = call.start
        server.in_flight += 1
        clear = server.clear_context
        keyed: dict[bytes, bytes] = {}
        dtab_values: list[bytes] = []
        via_count = 0
        vias: list[bytes] = []
        out: Headers = []
        for name, value in headers:
            keyed[name] = value
            if name[:4] == b"l5d-":
                if clear:
                    continue
                if name == b"l5d-dtab" or name == b"l5d-ctx-dtab":
                    dtab_values.append(value)
                    continue
                if name in _DST_HEADERS:
                    continue
            elif name == b"via":
                via_count += value.count(b",") + 1
                vias.append(value)
                continue
            out.append((name, value))
        call.method = keyed.get(b":method", b"")
        call.path = keyed.get(b":path", b"")
        call.authority = keyed.get(b":authority") or keyed.get(b"host") or b""
        content_type = keyed.get(b"content-type", b"")
        call.grpc = content_type[:16] == b"application/grpc"
        # (every Via the request came with, in order, then ours: RFC 9110 §7.6.3)
        out.append((b"via", b", ".join([*vias, VIA])))
        if server.forwarded is not None:
            value = server.forwarded_value(conn)
            old = keyed.get(b"forwarded")
            out = [(k, v) for k, v in out if k != b"forwarded"]
            out.append((b"forwarded", old + b", " + value if old else value))
        call.headers = out
        timeout = keyed.get(b"grpc-timeout")
        if timeout is not None:
            call.grpc_deadline = grpc_timeout(timeout)
        if self.tracing is not None:
            call.trace = self.tracing.server(
                None if clear else Tracing.extract(h for h in headers if h[0] in TRACE_HEADERS)
            )
        if server.max_concurrent is not None and server.in_flight > server.max_concurrent:
            server.stats.rejected.incr()
            call.failure = "rejected"
            self.fail(call, 503, f"max concurrent requests exceeded ({server.max_concurrent})")
            return
        if via_count >= server.max_call_depth:
            call.failure = "max_call_depth"
            self.fail(
                call,
                400,
                f"Maximum number of calls ({server.max_call_depth}) has been exceeded. "
                "Please check for proxy loops.",
            )
            return
        if dtab_values:
            try:
                text = b";".join(dtab_values).decode("utf-8")
                if len(text) > MAX_REQUEST_DTAB_BYTES:
                    raise ValueError(f"longer than {MAX_REQUEST_DTAB_BYTES} bytes")
                dtab = Dtab.read(text)
                if len(dtab) > MAX_REQUEST_DTAB_ENTRIES:
                    raise ValueError(f"more than {MAX_REQUEST_DTAB_ENTRIES} entries")
            except (ParseError, UnicodeDecodeError, ValueError) as e:
                call.failure = "bad_dtab"
                self.fail(call, 400, f"invalid l5d-dtab or l5d-ctx-dtab: {e}")
                return
            call.local_dtab = dtab
        try:
            call.dst = self.identifier.identify(keyed)
        except Unidentified as e:
            server.unidentified.incr()
            call.failure = "unidentified"
            self.fail(call, 400, str(e))
            return
        self.routed(call, self.route_to(call.dst, call.local_dtab), call.start)

    def on_request_data(self, call: H2Call, data: bytes, end: bool) -> None:
        n = len(data)
        call.request_bytes += n
        if end:
            call.req_ended = True
            call.req_end_at = time.monotonic()
        body = call.body
        if body is not None:
            limit = call.extras.request_buffer if call.extras is not None else DEFAULT_RETRY_BUFFER  # type: ignore[attr-defined]
            if call.kept + n <= limit:
                if n:
                    body.append(data)
                call.kept += n
            else:
                call.body = None
        up = call.up
        if up is not None and call.usid:
            try:
                up.session.send_data(call.usid, data, end)
            except CodecError:
                self.credit_downstream(call, n)
                return
            call.forwarded += n
            if n:
                call.req_owed += n
                up.owing.add(call)
            self.touch(up)
        elif call.finished:
            self.credit_downstream(call, n)
        else:
            call.pending.append(data)

    def on_request_trailers(self, call: H2Call, headers: Headers) -> None:
        call.req_ended = True
        call.req_end_at = time.monotonic()
        call.req_trailers = headers
        up = call.up
        if up is not None and call.usid:
            with contextlib.suppress(CodecError):
                up.session.send_trailers(call.usid, headers)
            self.touch(up)

    def on_client_reset(self, call: H2Call, code: int) -> None:
        """The client reset its stream (or its connection went): cancel the endpoint stream."""
        if not call.down_open:
            return
        call.down_open = False
        call.conn.server.resets.incr()
        self._cancel_upstream(call, ErrorCode.CANCEL)
        if not call.finished:
            self.cancelled.incr()
            self.cancel_attempt(call)
            endpoint = call.endpoint
            if endpoint is not None:  # (the client's doing: nothing for failure accrual)
                call.endpoint = None
                endpoint.load -= 1
            call.failure = "cancelled"
            call.status = 499
            self.finish(call, False)
        self._settle_response(call)

    def on_client_closed(self, call: H2Call, code: int) -> None:
        """The client's stream is gone (both sides ended, or reset): its stream stats."""
        call.conn.server.streams.record(call, code == 0, time.monotonic())
        if code:
            self.on_client_reset(call, code)
            return
        call.down_open = False
        self._settle_response(call)
        if not call.finished and not call.response_ended:
            # (the codec closed the stream normally only after the response ended)
            self._cancel_upstream(call, ErrorCode.CANCEL)

    def _settle_response(self, call: H2Call) -> None:
        """The client's stream is gone: the response bytes queued for it will never be taken;
        return their credit to the endpoint connection."""
        if call.rsp_owed:
            self.credit_upstream(call, call.rsp_owed)
            call.rsp_owed = 0
            call.conn.owing.discard(call)
        for data in call.pending:
            self.credit_downstream(call, len(data))
        call.pending = []

    # -- the endpoint side ---------------------------------------------------------------------
    def send(self, call: Call, endpoint: Endpoint) -> None:
        c = cast(H2Call, call)
        pool: Pool = endpoint.pool
        conn = pool.ready()
        if conn is not None:
            self.open_stream(c, conn)
        else:
            c.task = asyncio.get_running_loop().create_task(self._connect_then_send(c, pool))

    async def _connect_then_send(self, call: H2Call, pool: Pool) -> None:
        try:
            conn = await pool.get()
        except (OSError, TimeoutError) as e:
            call.task = None
            call.failure = "connect_timeout" if isinstance(e, TimeoutError) else "connect"
            why = str(e) or type(e).__name__
            self.requeue_or_fail(
                call, f"connect to {pool.address} failed: {why}", never_written=True
            )
            self.flush_dirty()
            return
        call.task = None
        if call.finished or call.endpoint is None:
            return
        self.open_stream(call, conn)
        self.flush_dirty()

    def request_headers(self, call: H2Call) -> Headers:
        extras = cast(H2RouteCache, call.extras)
        client = call.client
        assert client is not None
        out = list(call.headers)
        out.append(extras.service_header)
        out.append((b"l5d-dst-client", client.label.encode()))
        residual = call.residual
        if residual is not None and len(residual):
            out.append((b"l5d-dst-residual", str(residual).encode()))
        if extras.ctx_dtab:
            out.extend(extras.ctx_dtab)
        trace = call.trace
        if trace is not None:
            out = [(k, v) for k, v in out if k not in TRACE_HEADERS]
            block = self.tracing.client_headers(trace)  # type: ignore[union-attr]  # (traced)
            for line in block.split(b"\r\n"):
                if line:
                    name, _, value = line.partition(b": ")
                    out.append((name, value))
            ctx = trace.context
            out.append((b"l5d-reqid", f"{ctx.trace_id:016x}".encode()))
        return out

    def open_stream(self, call: H2Call, conn: Upstream) -> None:
        """Start the attempt's stream on ``conn``: headers, the body received so far (or kept
        for a retry), trailers."""
        resend = call.attempts > 1 and call.body is not None and call.forwarded > 0
        chunks = call.body if resend else call.pending
        assert chunks is not None
        ended = call.req_ended
        trailers = call.req_trailers
        only_headers = ended and trailers is None and not any(chunks)
        try:
            usid = conn.session.submit_request(self.request_headers(call), end_stream=only_headers)
        except CodecError as e:
            call.failure = "bad_request"
            self.release_endpoint(call, success=True)
            self.fail(call, 400, f"the request cannot be sent: {e}")
            return
        call.up = conn
        call.usid = usid
        call.src = conn
        call.src_sid = usid
        call.written = True
        timeout = conn.pool.response_timeout
        if timeout is not None:
            call.idle_timer = asyncio.get_running_loop().call_later(
                timeout, self._response_timeout, call, conn, usid
            )
        conn.streams[usid] = call
        conn.last_active = time.monotonic()
        session = conn.session
        if not only_headers:
            last = len(chunks) - 1
            for i, data in enumerate(chunks):
                session.send_data(usid, data, ended and trailers is None and i == last)
            if not resend and chunks:
                n = sum(len(d) for d in chunks)
                call.forwarded += n
                call.req_owed += n
                conn.owing.add(call)
                call.pending = []
            if trailers is not None:
                session.send_trailers(usid, trailers)
            elif ended and not chunks:
                session.end_stream(usid)
        self.touch(conn)

    def _detach(self, call: H2Call) -> None:
        """The attempt's endpoint stream is over for this call: credit what it still owed."""
        up = call.up
        call.up = None
        call.usid = 0
        if up is not None:
            up.owing.discard(call)
        if call.req_owed:
            self.credit_downstream(call, call.req_owed)
            call.req_owed = 0
        if call.held_timer is not None:
            call.held_timer.cancel()
            call.held_timer = None
        if call.idle_timer is not None:
            call.idle_timer.cancel()
            call.idle_timer = None

    def _response_timeout(self, call: H2Call, conn: Upstream, usid: int) -> None:
        """responseIdleTimeoutMs passed with no response headers from the endpoint."""
        call.idle_timer = None
        if call.finished or call.response_started or call.up is not conn or call.usid != usid:
            return
        pool = conn.pool
        self.cancel_attempt(call)
        call.failure = "response_timeout"
        seconds = pool.response_timeout or 0
        self.fail(
            call,
            504,
            f"no response from {pool.address} within responseIdleTimeoutMs ({seconds * 1000:g} ms)",
        )
        self.flush_dirty()

    def _cancel_upstream(self, call: H2Call, code: int) -> None:
        up = call.up
        if up is not None and call.usid:
            with contextlib.suppress(CodecError):
                up.session.reset_stream(call.usid, code)
            self.touch(up)
        self._detach(call)

    def on_response(self, call: H2Call, headers: Headers, end: bool) -> None:
        status = 0
        grpc_status: int | None = None
        for name, value in headers:
            if name == b":status":
                status = int(value)
            elif name == b"grpc-status" and end:
                grpc_status = _int(value)
        call.status = status
        if end:
            call.grpc_status = grpc_status
        extras = cast(H2RouteCache, call.extras)
        verdict = extras.classifier.early(call.method, status, grpc_status)
        if verdict == RETRYABLE and self._retry_response(call, end):
            return
        if (
            verdict is None
            and not end
            and extras.retries
            and extras.classification_timeout > 0
            and self.resendable(call)
        ):
            # a gRPC response: its status is in the trailers; hold the headers a moment
            # (classificationTimeoutMs) so that a retryable status can still be retried
            call.held = headers
            call.held_timer = asyncio.get_running_loop().call_later(
                extras.classification_timeout, self._release_held, call
            )
            return
        self.start_response(call, headers, end)
        if end:
            self.end_response(call, verdict)

    def _release_held(self, call: H2Call) -> None:
        """classificationTimeoutMs passed: stream the held response unclassified."""
        call.held_timer = None
        if call.held is not None and not call.finished:
            self._unhold(call)
            self.flush_dirty()

    def _unhold(self, call: H2Call) -> None:
        """Relay the held response headers and DATA (their credit was already returned)."""
        held, call.held = call.held, None
        if call.held_timer is not None:
            call.held_timer.cancel()
            call.held_timer = None
        assert held is not None
        self.start_response(call, held, False)
        chunks, call.held_data, call.held_bytes = call.held_data, [], 0
        if call.down_open:
            session = call.conn.session
            for data in chunks:
                call.response_bytes += len(data)
                with contextlib.suppress(CodecError):
                    session.send_data(call.sid, data)
            self.touch(call.conn)

    def _retry_response(self, call: H2Call, ended: bool) -> bool:
        """A retryable response: send the request again if the stack allows (the response is
        dropped and its stream cancelled)."""
        if call.finished or call.response_started or not self.may_retry(call, time.monotonic()):
            return False
        if not ended:
            self._cancel_upstream(call, ErrorCode.CANCEL)
        else:
            self._detach(call)
        call.held = None
        call.held_data, call.held_bytes = [], 0
        self.release_endpoint(call, success=False)
        self.retry(call)
        return True

    def start_response(self, call: H2Call, headers: Headers, end: bool) -> None:
        call.response_started = True
        if call.idle_timer is not None:
            call.idle_timer.cancel()
            call.idle_timer = None
        call.rsp_start_at = time.monotonic()
        self.disarm(call)
        if not call.down_open:
            return
        if call.conn.server.clear_context:
            headers = [(k, v) for k, v in headers if k[:4] != b"l5d-"]
        try:
            call.conn.session.submit_response(call.sid, headers, end_stream=end)
        except CodecError as e:
            log.warning("h2 router %s: response not relayed: %s", self.label, e)
            with contextlib.suppress(CodecError):
                call.conn.session.reset_stream(call.sid, ErrorCode.INTERNAL_ERROR)
        self.touch(call.conn)

    def end_response(self, call: H2Call, verdict: int | None) -> None:
        call.response_ended = True
        call.rsp_end_at = time.monotonic()
        if call.finished:
            return
        if verdict is None:
            extras = cast(H2RouteCache, call.extras)
            verdict = extras.classifier.final(call.method, call.status, call.grpc_status)
        if verdict != SUCCESS and call.grpc_status is not None:
            call.failure = f"grpc_status_{call.grpc_status}"
        self.complete(call, verdict == SUCCESS)

    def on_response_data(self, call: H2Call, data: bytes, end: bool) -> None:
        n = len(data)
        if call.held is not None:
            extras = cast(H2RouteCache, call.extras)
            if not end and call.held_bytes + n <= extras.response_buffer:
                # held with the headers until the trailers tell whether to retry (bounded by
                # retryBufferSize.responseBytes; the endpoint may go on meanwhile)
                call.held_data.append(data)
                call.held_bytes += n
                self.credit_upstream(call, n)
                return
            if end:  # (ended without trailers: classified now)
                verdict = extras.classifier.final(call.method, call.status, call.grpc_status)
                if verdict == RETRYABLE and self._retry_response(call, True):
                    self.credit_upstream(call, n)
                    return
            self._unhold(call)
        call.response_bytes += n
        if call.down_open and call.response_started:
            try:
                call.conn.session.send_data(call.sid, data, end)
            except CodecError:
                self.credit_upstream(call, n)
            else:
                if n:
                    if not call.rsp_owed:
                        call.progress = time.monotonic()
                    call.rsp_owed += n
                    call.conn.owing.add(call)
                self.touch(call.conn)
        else:
            self.credit_upstream(call, n)
        if end:
            self.end_response(call, None)

    def on_response_trailers(self, call: H2Call, headers: Headers) -> None:
        for name, value in headers:
            if name == b"grpc-status":
                call.grpc_status = _int(value)
        if call.held is not None:
            extras = cast(H2RouteCache, call.extras)
            verdict = extras.classifier.final(call.method, call.status, call.grpc_status)
            if verdict == RETRYABLE and self._retry_response(call, True):
                return
            self._unhold(call)
        if call.down_open and call.response_started:
            if call.conn.server.clear_context:
                headers = [(k, v) for k, v in headers if k[:4] != b"l5d-"]
            with contextlib.suppress(CodecError):
                call.conn.session.send_trailers(call.sid, headers)
            self.touch(call.conn)
        self.end_response(call, None)

    def on_upstream_reset(self, call: H2Call, code: int, lost: bool = False) -> None:
        """The endpoint reset the attempt's stream (or its connection was lost)."""
        self._detach(call)
        if call.response_started:
            if not call.response_ended and call.down_open:
                with contextlib.suppress(CodecError):
                    call.conn.session.reset_stream(
                        call.sid, ErrorCode.INTERNAL_ERROR if lost else code
                    )
                self.touch(call.conn)
            elif call.response_ended and call.down_open and not call.req_ended:
                # RFC 9113 §8.1: the endpoint answered in full and wants no more of the
                # request (nginx does this): tell the client to stop sending, once the
                # response is out (a RST_STREAM would drop DATA still queued)
                call.stop_request = True
                call.conn.owing.add(call)  # (settled after the next write: see settle)
                self.touch(call.conn)
            if not call.finished:
                call.failure = "connection_lost" if lost else "reset"
                self.complete(call, False)
            return
        if call.finished:
            return
        call.held = None
        extras = cast(H2RouteCache, call.extras)
        refused = code == ErrorCode.REFUSED_STREAM
        verdict = extras.classifier.reset(call.method, code, call.written)
        what = "lost its connection" if lost else f"was reset ({_code_name(code)})"
        message = f"the stream to {call.client.label if call.client else 'the endpoint'} {what}"
        call.failure = "connection_lost" if lost else "reset"
        if refused:  # (never processed: RFC 9113 §8.7)
            self.requeue_or_fail(call, message, never_written=True)
        elif verdict == RETRYABLE and self.may_retry(call, time.monotonic()):
            call.failure = None
            self.release_endpoint(call, success=False)
            self.retry(call)
        else:
            self.requeue_or_fail(call, message, never_written=False)

    def stop_request(self, call: H2Call) -> None:
        """RST_STREAM NO_ERROR to the client: its response is complete and written, the
        rest of its request is not wanted (RFC 9113 §8.1)."""
        call.stop_request = False
        if call.down_open and not call.req_ended:
            with contextlib.suppress(CodecError):
                call.conn.session.reset_stream(call.sid, ErrorCode.NO_ERROR)
            self.touch(call.conn)

    def on_upstream_closed(self, call: H2Call, code: int) -> None:
        if code:
            self.on_upstream_reset(call, code)
        else:
            self._detach(call)

    # -- protocol hooks of the request stack -------------------------------------------------------
    def route_cache(self, route: Route) -> RouteCache:
        return H2RouteCache(route, self)

    def cancel_attempt(self, call: Call) -> None:
        c = cast(H2Call, call)
        task = c.task
        c.task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._cancel_upstream(c, ErrorCode.CANCEL)
        c.held = None

    def fail(self, call: Call, status: int, message: str, summary: str | None = None) -> None:
        c = cast(H2Call, call)
        self.release_endpoint(c, success=False)
        self._cancel_upstream(c, ErrorCode.CANCEL)
        c.status = status
        if c.down_open:
            session = c.conn.session
            try:
                if c.response_started:
                    session.reset_stream(c.sid, ErrorCode.INTERNAL_ERROR)
                else:
                    c.response_started = True
                    self._answer(c, status, message, summary)
            except CodecError:
                pass
            self.touch(c.conn)
        self.finish(c, False)

    def _answer(self, call: H2Call, status: int, message: str, summary: str | None) -> None:
        err = quote(summary or message.split("\n", 1)[0], safe=" /:=,;'()[]{}").encode()[:1024]
        session = call.conn.session
        clear = call.conn.server.clear_context
        if call.grpc:
            code = (
                GRPC_DEADLINE_EXCEEDED
                if call.failure in _TIMEOUTS
                else GRPC_INTERNAL
                if status == 400
                else GRPC_UNAVAILABLE
            )
            call.grpc_status = code
            headers: Headers = [
                (b":status", b"200"),
                (b"content-type", b"application/grpc"),
                (b"grpc-status", str(code).encode()),
                (b"grpc-message", quote(message, safe=" /:=,;'()[]{}").encode()[:4096]),
            ]
            if not clear:
                headers.append((b"l5d-err", err))
            session.submit_response(call.sid, headers, end_stream=True)
            return
        body = b"" if clear else message.encode() + b"\n"
        headers = [(b":status", str(status).encode()), (b"content-type", b"text/plain")]
        if not clear:
            headers.append((b"l5d-err", err))
        headers.append((b"content-length", str(len(body)).encode()))
        if call.method == b"HEAD" or not body:
            session.submit_response(call.sid, headers, end_stream=True)
        else:
            session.submit_response(call.sid, headers)
            session.send_data(call.sid, body, True)

    def resendable(self, call: Call) -> bool:
        c = cast(H2Call, call)
        return c.req_ended and c.body is not None

    def requeueable(self, call: Call) -> bool:
        c = cast(H2Call, call)
        return c.body is not None or c.forwarded == 0

    def prepare_resend(self, call: Call) -> None:
        c = cast(H2Call, call)
        c.held = None
        c.held_data, c.held_bytes = [], 0
        c.status = 0
        c.grpc_status = None
        c.response_bytes = 0

    def classify_error(self, call: Call) -> int:
        c = cast(H2Call, call)
        extras = cast(H2RouteCache, c.extras)
        return extras.classifier.reset(c.method, ErrorCode.CANCEL, c.written)

    def server_timeout(self, call: Call) -> float | None:
        c = cast(H2Call, call)
        server = c.conn.server.timeout
        grpc = c.grpc_deadline
        if grpc is None:
            return server
        return grpc if server is None or grpc < server else server

    def server_stats(self, call: Call) -> ServerStats:
        return cast(H2Call, call).conn.server.stats

    def closing(self, call: Call) -> bool:
        return cast(H2Call, call).conn.closed

    def flush(self, call: Call) -> None:
        self.flush_dirty()

    def finished(self, call: Call, success: bool, elapsed_ms: float) -> None:
        c = cast(H2Call, call)
        server = c.conn.server
        server.in_flight -= 1
        if c.req_ended is False and not c.up:
            # the request body will not be used: drop what is buffered, credit it
            for data in c.pending:
                self.credit_downstream(c, len(data))
            c.pending = []
        c.body = None
        if self.access_log is not None:
            self.access_log.record(c)
        if self.draining:
            self.idle_check()

    def idle_check(self) -> None:
        if self.draining and not any(s.in_flight for s in self.h2_servers):
            self._idle.set()

    def span_name(self, call: Call) -> str:
        return cast(H2Call, call).method.decode("latin-1") or "h2"

    def span_tags(self, call: Call, server: bool) -> dict[str, str]:
        c = cast(H2Call, call)
        tags = {"http.method": c.method.decode("latin-1"), "http.path": c.path.decode("latin-1")}
        if c.grpc_status is not None:
            tags["grpc.status_code"] = str(c.grpc_status)
        return tags

    def span_peer(self, call: Call) -> tuple[str | None, int | None]:
        host, port = cast(H2Call, call).conn.peer
        return (host if host != "-" else None), (port or None)

    def sweep(self, now: float) -> None:
        RequestStack.sweep(self, now)
        for pool in list(self.pools):
            pool.expire(now)
        for server in self.h2_servers:
            send_timeout = server.send_timeout
            for conn in list(server.connections):
                if conn.paused and now - conn.paused_since > send_timeout:
                    server.stalled_connections.incr()
                    conn.abort()
                    continue
                for call in list(conn.owing):
                    if now - call.progress > send_timeout and call.down_open:
                        server.stalled_streams.incr()
                        with contextlib.suppress(CodecError):
                            conn.session.reset_stream(call.sid, ErrorCode.CANCEL)
                        self.on_client_reset(call, ErrorCode.CANCEL)
                        self.touch(conn)
                idle = server.idle_time
                if idle is not None and not conn.calls and now - conn.last_active > idle:
                    conn.session.close()
                    self.touch(conn)
        if self.access_log is not None:
            self.access_log.flush()
        self.flush_dirty()

    # -- RouterRuntime ---------------------------------------------------------------------------
    async def start(self) -> None:
        self._open_access_log()
        for server in self.h2_servers:
            await server.start()
        self._sweeper = asyncio.get_running_loop().create_task(self.housekeeping())

    def _open_access_log(self) -> None:
        config = self.config
        if config.h2_access_log and self.access_log is None:
            policy = config.h2_access_log_roll_policy
            self.access_log = H2AccessLog(
                config.h2_access_log,
                config.h2_access_log_append,
                RollPolicy.parse(policy) if policy else None,
                config.h2_access_log_rotate_count,
            )

    def take_over_problem(self, old: H2Router) -> str | None:
        """Why this runtime cannot take over ``old`` on a reload (None: it can)."""
        before = {(s.ip, s.port): s.config for s in old.h2_servers}
        for server in self.h2_servers:
            prior = before.get((server.ip, server.port))
            if prior is not None and (
                prior.tls != server.config.tls
                or prior.socket_options != server.config.socket_options
            ):
                return (
                    f"router '{self.label}': the server on {server.ip}:{server.port} changed its "
                    "tls or socketOptions; restart to apply it"
                )
        return None

    async def start_from(
        self, old: H2Router, keep_client: Callable[[Path], bool] | None = None
    ) -> None:
        """Start in place of ``old`` (a running runtime of the same router label), as the
        HTTP/1.1 router does: servers on an address this config keeps move here with their
        listening sockets and connections; with an unchanged ``client`` config, ``old``'s
        clients (those ``keep_client`` accepts) move here with their balancer state,
        ejections and endpoint connections; with an unchanged ``service`` config, the
        per-name stats and retry budgets too; the names ``old`` routes are bound here first
        (``Router.prebind``). New addresses start listening; ``old``'s other servers stop
        accepting (then :meth:`retire_drain` and :meth:`close` end ``old``)."""

        def repoint(endpoint: Endpoint) -> None:
            pool: Pool = endpoint.pool
            pool.router = self
            self.pools.add(pool)
            for conn in pool.conns:
                conn.router = self

        self.core.adopt(
            old.core,
            clients=self.config.client == old.config.client,
            services=self.config.service == old.config.service,
            keep_client=keep_client,
            on_endpoint=repoint,
        )
        await self.core.prebind(old.core)  # (old serves meanwhile)
        servers, moved = take_over_servers(self.h2_servers, old.h2_servers, self)
        old.h2_servers = [s for s in old.h2_servers if s not in moved]
        self.h2_servers = servers
        self._open_access_log()
        for server in servers:
            if server.server is None:
                await server.start()
        self._sweeper = asyncio.get_running_loop().create_task(self.housekeeping())
        old.stop_accepting()  # (the servers it still has: their addresses are gone)

    async def retire_drain(self) -> None:
        """After :meth:`start_from` moved this runtime's work away: wait until its remaining
        servers have no request in flight and its remaining clients no load."""
        await self.drain()
        while any(e.load for c in self.core.clients.values() for e in c.endpoints):
            await asyncio.sleep(0.05)

    def servers(self) -> list[tuple[str, int]]:
        return [(s.ip, s.port) for s in self.h2_servers]

    def stop_accepting(self) -> None:
        self.draining = True
        for server in self.h2_servers:
            server.draining = True
            if server.server is not None:
                server.server.close()
            for conn in list(server.connections):
                conn.session.start_shutdown()
                self.touch(conn)
        self.flush_dirty()
        self.idle_check()

    async def drain(self) -> None:
        """Return when every request is answered and every client connection has ended: a
        response whose endpoint finished may still be queued for a slow client (flow
        control); its connection closes after the final GOAWAY, once its streams are done
        (the linker bounds the wait by ``shutdownGraceMs``)."""
        while any(s.in_flight for s in self.h2_servers):
            self._idle.clear()
            await self._idle.wait()
        while any(s.connections for s in self.h2_servers):
            for server in self.h2_servers:
                for conn in list(server.connections):
                    self.touch(conn)  # (the final GOAWAY goes out once its streams ended)
            self.flush_dirty()
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for server in self.h2_servers:
            for conn in list(server.connections):
                with contextlib.suppress(Exception):
                    conn.session.close()
                    conn.flush()
                conn.abort()
            if server.server is not None:
                server.server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.server.wait_closed(), 1.0)
        for pool in list(self.pools):
            pool.closed = True
            for up in list(pool.conns):
                up.abort()
        if self.access_log is not None:
            self.access_log.close()
        self.core.close()

    def client_state(self) -> dict[str, Any]:
        return self.core.client_state()


def _int(value: bytes) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"
