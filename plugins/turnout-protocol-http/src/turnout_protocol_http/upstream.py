"""The upstream side of the HTTP/1.1 data path: :class:`UpstreamProtocol` (one connection to
an endpoint, one exchange at a time) and the :class:`Pool` of those connections per endpoint."""

from __future__ import annotations

import asyncio
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import httptools
from turnout.api import DEFAULT_POOL_IDLE_TIME_MS, Address, Client, open_connection

from . import tunnel
from .exchange import (
    CRLF,
    H_CL,
    H_CONNECTION,
    H_L5D,
    H_PLAIN,
    H_PROXY,
    HIGH_WATER,
    NAME_CACHED,
    NAMES_LIMIT,
    Exchange,
    monotonic,
)
from .heads import RESPONSE_SPECIAL, BadResponse
from .tls import no_tls, pool_tls
from .wire import is_hop_by_hop

if TYPE_CHECKING:
    from .runtime import HttpRouter

_STATUS_META: Final = "turnout.http.status"

#: what a response header name means, by its spelling as received: ``(lower-cased name if it
#: needs a decision, else b"", b"Name: ", kind)`` (kind: ``H_CL``, ``H_CONNECTION``, another
#: special kind, or ``H_PLAIN``; see exchange.NAMES_LIMIT)
_RESPONSE_NAMES: Final[dict[bytes, tuple[bytes, bytes, int]]] = {}


def _response_name(name: bytes) -> tuple[bytes, bytes, int]:
    lname = name.lower()
    kind = RESPONSE_SPECIAL.get(lname)
    if kind is None:
        kind = H_L5D if lname[:4] == b"l5d-" else H_PROXY if lname[:6] == b"proxy-" else H_PLAIN
    entry = (lname if kind != H_PLAIN else b"", name + b": ", kind)
    if len(name) <= NAME_CACHED:
        if len(_RESPONSE_NAMES) >= NAMES_LIMIT:
            _RESPONSE_NAMES.clear()
        _RESPONSE_NAMES[name] = entry
    return entry


class UpstreamProtocol:
    """One connection to an endpoint; carries one exchange at a time (an asyncio Protocol)."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.ex: Exchange | None = None
        self.reason = b""
        #: forwarded response header lines (after a place for the status line), and the
        #: headers that need a decision (but Content-Length, and a plain Connection)
        self.lines: list[bytes] = [b""]
        self.special: list[tuple[bytes, bytes, bytes]] | None = None
        #: the last Content-Length value of the response
        self.content_length: bytes | None = None
        #: the last status line sent downstream, and what it was made of
        self.sl_version = b""
        self.sl_status = 0
        self.sl_reason = b""
        self.sl_line = b""
        self.trailers: list[tuple[bytes, bytes]] | None = None
        self.in_body = False
        self.eof_ends_body = False
        self.reusable = True
        self.closed = False
        self.idle_since = 0.0
        self.born = 0.0
        #: exchanges this connection completed (a reused connection that closes before
        #: answering most likely raced the endpoint's idle close: worth one more try)
        self.served = 0
        #: bytes of the response head so far, and the limit (maxHeadersKB + maxInitialLineKB)
        self.head_bytes = 0
        self.head_size = 0
        self.max_head: int = pool.router.max_response_head

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]
        self.born = monotonic()

    def connection_lost(self, exc: Exception | None) -> None:
        transport = self.transport
        ex = self.ex
        if exc is not None and transport is not None and ex is not None and not ex.finished:
            # a write failed (the endpoint answered early and closed, and our upload met its
            # reset): the transport gives up before reading what already arrived, which may be
            # the whole response. Read it from the socket, still open during this call.
            self._salvage(transport)
            ex = self.ex
        self.closed = True
        self.transport = None
        self.pool.forget(self)
        if ex is None or ex.finished:
            return
        self.ex = None
        router = ex.conn.router
        if ex.response_started:
            if self.eof_ends_body:  # a close-delimited body ends here
                self.reusable = False
                router.response_complete(ex, self)
                ex.conn.flush()
            else:
                router.abort(ex, "upstream closed the connection mid-response")
        else:
            router.upstream_failed(ex, self, f"connection closed by {self.pool.address}")
            ex.conn.flush()

    def _salvage(self, transport: asyncio.Transport) -> None:
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        chunks: list[bytes] = []
        try:
            # (a duplicate descriptor: the transport's own socket object refuses recv())
            with socket.socket(fileno=os.dup(sock.fileno())) as raw:
                raw.setblocking(False)
                for _ in range(64):  # (bounded: at most 4 MB)
                    data = raw.recv(65536)
                    if not data:
                        break
                    chunks.append(data)
        except OSError:
            pass  # (nothing more to read, or the reset that came after it)
        if chunks:
            self.data_received(b"".join(chunks))

    def eof_received(self) -> bool | None:
        return None  # the endpoint half-closed: close; connection_lost decides what it means

    def pause_writing(self) -> None:
        ex = self.ex
        if ex is not None:
            ex.conn.pause_reading()

    def resume_writing(self) -> None:
        ex = self.ex
        if ex is not None and not ex.request_complete and len(ex.conn.queue) <= 1:
            ex.conn.resume_reading()

    def send(self, ex: Exchange, head: bytes) -> None:
        """Write a request head and whatever body arrived so far."""
        self.ex = ex
        ex.upstream = self
        pending = ex.pending_body
        if pending:
            ex.pending_body = None
            ex.pending_bytes = 0
            self.transport.write(head + b"".join(pending))  # type: ignore[union-attr]
            if len(ex.conn.queue) <= 1:
                ex.conn.resume_reading()
        else:
            self.transport.write(head)  # type: ignore[union-attr]
        ex.written = True

    def data_received(self, data: bytes) -> None:
        ex = self.ex
        if ex is None:  # bytes nobody asked for: this connection cannot be trusted
            self.reusable = False
            self.close()
            return
        conn = ex.conn
        conn.corked = True
        in_head = not self.in_body
        if in_head:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:  # after a 101 response_head accepted
            tunnel.open_tunnel(self, ex, data[e.args[0] :] if e.args else b"")
        except httptools.HttpParserError as e:
            self.reusable = False
            cause = e.__cause__ or e.__context__
            if isinstance(cause, Retry):
                self.ex = None  # the dropped response's connection closes quietly
                ex.upstream = None
                self.close()
                conn.router.retry(ex)
            elif not ex.finished and not isinstance(cause, _HeadDone):
                if isinstance(cause, BadResponse):
                    message = f"bad response from {self.pool.address}: {cause}"
                else:
                    message = f"malformed response from {self.pool.address}: {e}"
                conn.router.bad_response(ex, self, message)
            self.close()
        else:
            if in_head and not self.in_body and self.head_bytes > self.max_head:
                # (llhttp keeps an unfinished header line to itself: bound it here)
                self.reusable = False
                conn.router.bad_response(ex, self, self._head_too_large())
                self.close()
        conn.corked = False
        out = conn.out
        if out:  # (conn.flush(), inlined: once per response)
            conn.out = []
            transport = conn.transport
            if transport is not None:
                transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.closed = True
        self.pool.forget(self)

    # -- httptools callbacks ---------------------------------------------------------------
    def _head_too_large(self) -> str:
        return (
            f"response head from {self.pool.address} larger than maxHeadersKB + "
            f"maxInitialLineKB ({self.max_head >> 10} KB)"
        )

    def on_message_begin(self) -> None:
        self.head_size = 0
        self.lines = [b""]  # ([0]: the status line's place, see response_head_bytes)
        self.special = None
        self.content_length = None
        self.trailers = None
        self.in_body = False
        self.reason = b""

    def on_status(self, status: bytes) -> None:
        self.reason += status
        if len(self.reason) > 1024:
            raise BadResponse("response status line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if value and value[-1] in (32, 9):  # space, tab
            value = value.rstrip(b" \t")
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.max_head:
            raise BadResponse(self._head_too_large())
        if self.in_body:
            if not is_hop_by_hop(name.lower()):
                if self.trailers is None:
                    self.trailers = []
                self.trailers.append((name, value))
            return
        entry = _RESPONSE_NAMES.get(name)
        if entry is None:
            entry = _response_name(name)
        kind = entry[2]
        if kind == H_PLAIN:
            self.lines.append(entry[1] + value + CRLF)
        elif kind == H_CL:
            self.content_length = value  # (the last one counts)
        elif kind == H_CONNECTION and (value == b"keep-alive" or value == b"close"):
            pass  # names no header to drop (the framing of this hop is llhttp's)
        else:  # a header that needs a decision (see response_head_bytes)
            if self.special is None:
                self.special = []
            self.special.append((entry[0], name, value))

    def on_headers_complete(self) -> None:
        ex: Exchange = self.ex  # type: ignore[assignment]
        self.in_body = True
        self.head_bytes = 0
        ex.conn.router.response_head(ex, self, self.parser.get_status_code())
        if ex.head_only and ex.status >= 200 and not ex.finished:
            # a response to HEAD has no body, but llhttp cannot be told so: stop parsing here
            # and never reuse this connection
            self.reusable = False
            ex.conn.router.response_complete(ex, self)
            raise _HeadDone

    def on_body(self, body: bytes) -> None:
        ex = self.ex
        if ex is None or not body:
            return
        ex.response_bytes += len(body)
        if ex.response_chunked:
            body = (b"%x\r\n" % len(body)) + body + CRLF
        conn = ex.conn
        if conn.corked:
            conn.out.append(body)  # (conn.write(), inlined)
        else:
            conn.write(body)

    def on_message_complete(self) -> None:
        ex: Exchange = self.ex  # type: ignore[assignment]
        if ex.status < 200:
            ex.status = 0
            return  # an interim (1xx) response; the final one follows
        ex.conn.router.response_complete(ex, self)


class Retry(Exception):
    """Raised from a callback (by ``HttpAnswers.response_head``): this response is dropped and
    the request sent again."""


class _HeadDone(Exception):
    """Raised from a callback to stop parsing after the head of a response to HEAD."""


class Pool:
    """Keep-alive connections to one endpoint (LIFO: the warmest connection first), within
    the client's ``hostConnectionPool`` limits: at most ``max_size`` open connections, at most
    ``max_waiters`` requests waiting for one, ``min_size`` kept open, idle ones closed after
    ``idle_time`` seconds."""

    __slots__ = (
        "address",
        "client",
        "closed",
        "connecting",
        "host",
        "idle",
        "idle_time",
        "life_time",
        "max_size",
        "max_waiters",
        "min_size",
        "open",
        "port",
        "router",
        "status",
        "tls",
        "waited",
        "waiters",
    )

    def __init__(self, address: Address, router: HttpRouter, client: Client) -> None:
        self.address = address
        self.host = address.host
        self.port = address.port
        self.router = router
        self.client = client
        self.idle: list[UpstreamProtocol] = []
        self.open: set[UpstreamProtocol] = set()
        self.connecting = 0
        self.closed = False
        limits = client.policy.host_connection_pool
        self.max_size: int | None = limits.max_size
        self.max_waiters: int | None = limits.max_waiters
        self.min_size: int = limits.min_size
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
        #: requests waiting for a connection: (exchange, request head)
        self.waiters: deque[tuple[Exchange, bytes]] = deque()
        self.waited = 0
        #: set for the synthetic endpoint of /$/io.buoyant.http.status/<code>
        self.status: int | None = address.meta.get(_STATUS_META)
        #: ``ssl``/``server_hostname`` for create_connection ({}: plain text); one client,
        #: one policy, so a pool's connections are all TLS or all plain text
        self.tls: Callable[[], dict[str, Any]] = (
            pool_tls(client.policy) if self.status is None else no_tls
        )

    def can_open(self) -> bool:
        return self.max_size is None or len(self.open) + self.connecting < self.max_size

    def can_wait(self) -> bool:
        return self.max_waiters is None or len(self.waiters) < self.max_waiters

    async def connect(self) -> UpstreamProtocol:
        """Open a connection (the caller counted it in ``connecting``).

        The host is resolved first (``open_connection``): a name that cannot be resolved
        fails with ``cannot resolve host <host>: <reason>`` instead of a bare TimeoutError,
        and no resolver future is left behind when the attempt is cancelled."""
        factory: Any = lambda: UpstreamProtocol(self)  # noqa: E731 - a Protocol by duck typing
        try:
            _, protocol = await open_connection(
                factory, self.host, self.port, self.router.connect_timeout, **self.tls()
            )
        finally:
            self.connecting -= 1
        self.open.add(protocol)
        return protocol  # type: ignore[no-any-return]

    def release(self, conn: UpstreamProtocol) -> None:
        """A connection finished its exchange: give it to a waiter, keep it, or close it."""
        conn.ex = None
        conn.served += 1
        life = self.life_time
        old = life is not None and monotonic() - conn.born > life
        if not conn.reusable or conn.closed or old:
            conn.close()  # (forget() serves the next waiter)
            return
        waiters = self.waiters
        while waiters:
            ex, head = waiters.popleft()
            if not ex.finished:
                conn.send(ex, head)
                return
        if self.closed:
            conn.close()
            return
        conn.idle_since = monotonic()
        self.idle.append(conn)

    def _serve_waiter(self) -> None:
        """A connection went away: open one for the first live waiter; when the endpoint has
        left the address set and no connection is left, requeue the waiters elsewhere."""
        waiters = self.waiters
        while waiters and waiters[0][0].finished:
            waiters.popleft()
        if not waiters:
            return
        if not self.closed:
            if self.can_open():
                ex, head = waiters.popleft()
                self.router.open_and_send(ex, self, head)
        elif not self.open and not self.connecting:
            while waiters:
                ex, _ = waiters.popleft()
                if not ex.finished:
                    self.router.requeue(ex, f"endpoint {self.address} left the address set")

    def forget(self, conn: UpstreamProtocol) -> None:
        self.open.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if self.waiters:
            self._serve_waiter()

    def close_when_idle(self) -> None:
        """The endpoint left the address set: close idle connections now, busy ones when done."""
        self.closed = True
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()
        self._serve_waiter()

    def close(self) -> None:
        self.closed = True
        self.waiters.clear()  # (the router is closing: their connections are aborted)
        for conn in list(self.open):
            conn.close()
        self.idle.clear()

    def expire_idle(self, now: float) -> None:
        """Close connections idle longer than ``idle_time`` (keeping ``min_size`` open)."""
        if self.idle_time is None:
            return
        for conn in list(self.idle):
            if len(self.open) <= self.min_size:
                break
            if now - conn.idle_since > self.idle_time:
                conn.close()
