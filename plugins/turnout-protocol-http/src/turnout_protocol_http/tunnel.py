"""``Upgrade``: what turnout does when llhttp stops at a request that asks for one, and the
byte tunnels a ``101`` answer opens.

llhttp stops parsing after the head of a request with ``Upgrade`` and ``Connection: upgrade``
(httptools even makes it skip the body). turnout decides itself what follows:

- A WebSocket upgrade (``GET``, HTTP/1.1, no body, ``Upgrade: websocket``) is forwarded with
  ``Upgrade: websocket`` and ``Connection: Upgrade``. Nothing the client sends afterwards is
  parsed: it is kept (:class:`_Stash`, reading paused past ``HIGH_WATER``) until the answer.
  A ``101`` turns both connections into a byte tunnel (:func:`open_tunnel`) and the kept bytes
  go through it; any other answer ends with ``Connection: close``, the kept bytes dropped.
- Any other request is a plain request: ``Upgrade`` (hop-by-hop) is not forwarded, and its
  body is its body, read by a new parser primed with a head of the same framing
  (:class:`_Resume`), then the connection goes on as usual (pipelining rules included). A
  ``101`` answer to such a request is a 502 (:func:`switch_refused`).

A tunnel (:class:`Tunnel`) takes both transports over (``set_protocol``): bytes are copied
as they come, each side's reading paused while the other's write buffer is above its high
mark; a half-close is passed on (``write_eof``) where the transport allows it, and when
either side closes, both are closed. The exchange that opened it is finished at once (status
101, a success; the endpoint's load and accrual released as for any response); its endpoint
connection leaves the pool for good. Tunnels are not requests: draining does not wait for
them, they are closed when the router stops accepting (and aborted, if still open, when it
closes); idle sweeps leave them alone. Counted in ``rt/<router>/server/<ip>/<port>/upgrades``
and ``.../tunnels`` (open now), and the same two names under the client's scope.

This module is not compiled (the data path is: see setup.py): it runs once per upgrade and
per tunnelled read, never on the per-request path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import httptools

from .exchange import HIGH_WATER
from .wire import CRLF, VIA_TOKEN, connection_tokens

if TYPE_CHECKING:
    from turnout.api import Client

    from .downstream import ServerProtocol
    from .exchange import Exchange
    from .runtime import HttpRouter
    from .servers import ServerRuntime
    from .upstream import UpstreamProtocol

log = logging.getLogger("turnout.http")

_WEBSOCKET = b"websocket"
#: the end of a chunked body with no trailers, as ServerProtocol.on_message_complete adds it
_LAST_CHUNK = b"0\r\n\r\n"


# -- requests ----------------------------------------------------------------------------------


class _Probe:
    read_body = False

    def on_headers_complete(self) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        self.read_body = True


def _skips_upgrade_bodies() -> bool:
    """Whether llhttp, as httptools drives it, stops before the body of an upgrade request
    (httptools 0.6 asks it to skip that body). Asked once: were a version to read the body
    first, there would be nothing to resume, and resuming would read the next request as a
    body."""
    probe = _Probe()
    parser = httptools.HttpRequestParser(probe)
    with contextlib.suppress(httptools.HttpParserUpgrade):
        parser.feed_data(
            b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: x\r\nConnection: upgrade\r\n"
            b"Content-Length: 1\r\n\r\nx"
        )
    return not probe.read_body


#: (see _skips_upgrade_bodies)
SKIPS_UPGRADE_BODIES = _skips_upgrade_bodies()


def _tokens(value: bytes | None) -> list[bytes]:
    if not value:
        return []
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def wants_websocket(ex: Exchange) -> bool:
    """A WebSocket opening handshake (RFC 6455 §4.1): GET, HTTP/1.1, no body, ``Upgrade``
    naming ``websocket`` (llhttp saw ``Connection: upgrade``, or it would not have stopped)."""
    return (
        ex.method == b"GET"
        and ex.version == b"1.1"
        and not ex.has_body
        and _WEBSOCKET in _tokens(ex.upgrade)
    )


def after_upgrade_request(conn: ServerProtocol, rest: bytes) -> bytes:
    """llhttp stopped after the head of an upgrade request (the last exchange queued);
    ``rest`` is what followed it in the same read. Sets ``conn.parser`` for what comes next and
    returns the bytes to parse with it now."""
    queue = conn.queue
    if not queue or conn.closing:
        return b""
    ex = queue[-1]
    if ex.method == b"CONNECT":
        # (llhttp treats CONNECT as an upgrade too; an absolute-form one was refused already)
        conn.current = ex
        conn.refuse(400, "CONNECT is not supported")
        return b""
    if wants_websocket(ex):
        ex.websocket = True
        # not switched (any answer but 101): the connection ends with that answer, and what
        # the client sent after the request is never read as HTTP
        ex.keep_alive = False
        ex.lines += (b"Upgrade: websocket\r\n", b"Connection: Upgrade\r\n")
        ex.lnames += (b"upgrade", b"connection")
        stash = _Stash(conn)
        conn.parser = stash  # type: ignore[assignment]  # (a stand-in: only feed_data is called while switching)
        if rest:
            stash.feed_data(rest)
        return b""
    # a plain request: "Upgrade" was dropped (hop-by-hop); llhttp skipped the body
    if not ex.has_body or not SKIPS_UPGRADE_BODIES:
        conn.parser = httptools.HttpRequestParser(conn)
        return rest
    # llhttp called on_message_complete for a body it never read: undo what that did
    ex.request_complete = False
    pending = ex.pending_body
    if ex.chunked and pending and pending[-1] == _LAST_CHUNK:
        pending.pop()
    conn.current = ex
    if conn.final_received:  # (a request that closes the connection: set again at its end)
        conn.final_received = False
        if len(queue) <= 1:
            conn.resume_reading()
    if ex.chunked:
        framing = b"Transfer-Encoding: chunked\r\n"
    else:
        framing = b"Content-Length: %d\r\n" % int(ex.content_length or b"0")
    closing = b"" if ex.keep_alive else b"Connection: close\r\n"
    parser = httptools.HttpRequestParser(_Resume(conn))
    # a head with the request's framing: llhttp then reads the body (its chunked syntax
    # checked as for any request) and, after it, the next request
    parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + closing + CRLF)
    conn.parser = parser
    return rest


class _Resume:
    """The callbacks of a parser that reads a body llhttp skipped (see after_upgrade_request):
    the primed head's are ignored, everything after it goes to the connection."""

    __slots__ = ("conn", "primed")

    def __init__(self, conn: ServerProtocol) -> None:
        self.conn = conn
        self.primed = False

    def on_message_begin(self) -> None:
        if self.primed:
            self.conn.on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self.primed:
            self.conn.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.primed:  # (trailers of the resumed body, or the heads of the next requests)
            self.conn.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.primed:
            self.conn.on_headers_complete()
        else:
            self.primed = True

    def on_body(self, body: bytes) -> None:
        self.conn.on_body(body)

    def on_message_complete(self) -> None:
        self.conn.on_message_complete()


class _Stash:
    """In place of the request parser while a WebSocket upgrade awaits its answer: keeps
    what the client sends (the new protocol's, if the upgrade happens) without parsing it."""

    __slots__ = ("chunks", "conn", "size")

    def __init__(self, conn: ServerProtocol) -> None:
        self.conn = conn
        self.chunks: list[bytes] = []
        self.size = 0

    def feed_data(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size > HIGH_WATER:
            self.conn.pause_reading()


# -- responses ---------------------------------------------------------------------------------


def switch_refused(ex: Exchange, up: UpstreamProtocol) -> str | None:
    """Why a ``101`` from the endpoint is not relayed (a 502), or None: the WebSocket upgrade
    asked for is accepted, and the tunnel opens once llhttp stops (open_tunnel)."""
    if not ex.websocket or ex.finished:
        return "upstream switched protocols without an Upgrade: websocket request"
    if ex.conn.router.draining:
        return "upstream switched protocols while the router shuts down: no new tunnels"
    offered = [v for lname, _, v in up.special or () if lname == b"upgrade"]
    if not any(_WEBSOCKET in _tokens(v) for v in offered):
        got = b", ".join(offered).decode("latin-1") or "none"
        return f"upstream switched protocols to {got!r}, not to the websocket asked for"
    return None


def _switch_head(up: UpstreamProtocol, clear_context: bool) -> bytes:
    """The ``101`` relayed downstream: the endpoint's end-to-end headers, ``Upgrade`` and
    ``Connection`` for this hop, ``Via``."""
    lines = [b"HTTP/1.1 101 " + (up.reason or b"Switching Protocols") + CRLF]
    plain = up.lines[1:]
    via: bytes | None = None
    remove: set[bytes] = set()
    for lname, name, value in up.special or ():
        if lname == b"via":
            via = value if via is None else via + b", " + value
        elif lname == b"connection":
            remove |= connection_tokens([value])
        elif lname[:4] == b"l5d-" and not clear_context:
            plain.append(name + b": " + value + CRLF)
    remove -= {b"upgrade", b"close", b"keep-alive"}
    if remove:
        plain = [x for x in plain if x[: x.index(b":")].lower() not in remove]
    lines += plain
    lines.append(b"Upgrade: websocket\r\nConnection: Upgrade\r\n")
    lines.append(b"Via: " + (via + b", " if via else b"") + VIA_TOKEN + CRLF)
    lines.append(CRLF)
    return b"".join(lines)


def open_tunnel(up: UpstreamProtocol, ex: Exchange, rest: bytes) -> None:
    """llhttp stopped after a ``101`` that switch_refused accepted (called from
    UpstreamProtocol.data_received, the client connection corked); ``rest`` is what the
    endpoint sent after it. Relay the 101, finish the exchange, and tunnel both connections."""
    conn = ex.conn
    downstream = conn.transport
    upstream = up.transport
    if ex.finished or not ex.websocket or downstream is None or upstream is None:
        up.reusable = False
        up.close()
        return
    router: HttpRouter = conn.router
    server: ServerRuntime = conn.server
    client = ex.client
    # the endpoint connection is the tunnel's now: its protocol object lets go of it (so that
    # releasing it below closes nothing) and it never returns to the pool
    up.transport = None
    up.reusable = False
    ex.status = 101
    ex.response_started = True
    conn.write(_switch_head(up, conn.clear_context))
    if rest:
        conn.write(rest)
    stash = conn.parser
    early = b"".join(stash.chunks) if isinstance(stash, _Stash) else b""
    # HTTP is over on this connection: close() and data_received() of its protocol object do
    # nothing now (the tunnel closes it), sweeps pass it by
    conn.closing = True
    tunnel = Tunnel(router, server, conn, client, downstream, upstream)
    server.tunnels.add(tunnel)
    server.stats.upgrades.value += 1
    if client is not None:
        metrics = router.metrics
        metrics.counter(*client.scope, "upgrades").value += 1
        metrics.gauge(*client.scope, "tunnels", fn=lambda: _open_for(router, client))
    # the request is answered: stats (101, a success), the endpoint's load and accrual, the
    # access log, in-flight counts; the connection is released, and closed (up.transport is
    # None: the transport stays open)
    router.response_complete(ex, up)
    downstream.set_protocol(tunnel.down)  # type: ignore[arg-type]  # (a Protocol by its methods)
    upstream.set_protocol(tunnel.up)  # type: ignore[arg-type]  # (a Protocol by its methods)
    conn.paused_reading = False
    if early:
        upstream.write(early)
    tunnel.start()
    log.debug("tunnel opened: %s %s", ex.method, ex.target)


def _open_for(router: HttpRouter, client: Client) -> int:
    return sum(1 for s in router.server_runtimes for t in s.tunnels if t.client is client)


# -- tunnels -----------------------------------------------------------------------------------


class Tunnel:
    """Two connections copying bytes to each other (see the module docstring)."""

    __slots__ = ("client", "closed", "conn", "down", "router", "server", "up")

    def __init__(
        self,
        router: HttpRouter,
        server: ServerRuntime,
        conn: ServerProtocol,
        client: Client | None,
        downstream: asyncio.Transport,
        upstream: asyncio.Transport,
    ) -> None:
        self.router = router
        self.server = server
        self.conn = conn
        self.client = client
        self.closed = False
        self.down = _End(self, downstream)
        self.up = _End(self, upstream)
        self.down.peer = self.up
        self.up.peer = self.down

    def start(self) -> None:
        """Reading on each side follows the other side's write buffer from now on."""
        for end in (self.down, self.up):
            end.follow()

    def close(self) -> None:
        """Close both connections (what is buffered is written first)."""
        if self.closed:
            return
        self.closed = True
        self.server.tunnels.discard(self)
        for end in (self.down, self.up):
            if not end.transport.is_closing():
                end.transport.close()


class _End:
    """One side of a tunnel: the asyncio Protocol of its transport."""

    __slots__ = ("eof", "lost", "peer", "transport", "tunnel")

    def __init__(self, tunnel: Tunnel, transport: asyncio.Transport) -> None:
        self.tunnel = tunnel
        self.transport = transport
        self.peer: _End = self
        self.eof = False  # the far end sent its last byte
        self.lost = False

    def follow(self) -> None:
        """Read from this side while the other can take more."""
        peer = self.peer.transport
        if self.transport.is_closing():
            return
        if peer.get_write_buffer_size() > HIGH_WATER:  # (both transports' high mark)
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    # -- asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass  # (set_protocol: the transport was connected long ago)

    def data_received(self, data: bytes) -> None:
        peer = self.peer.transport
        if not peer.is_closing():
            peer.write(data)

    def eof_received(self) -> bool | None:
        self.eof = True
        peer = self.peer
        if peer.eof or peer.lost or not peer.transport.can_write_eof():
            self.tunnel.close()
            return None
        if not peer.transport.is_closing():
            peer.transport.write_eof()  # (after what is buffered)
        return True  # the other direction goes on

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        tunnel = self.tunnel
        if self is tunnel.down:
            tunnel.conn.connection_lost(exc)  # (the client connection's bookkeeping)
        tunnel.close()

    def pause_writing(self) -> None:
        peer = self.peer.transport
        if not peer.is_closing():
            peer.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer.transport
        if not peer.is_closing():
            peer.resume_reading()


def close_all(server: ServerRuntime) -> None:
    """Close the server's tunnels (the router stops accepting: tunnels do not hold it up)."""
    for tunnel in list(server.tunnels):
        tunnel.close()


__all__ = [
    "Tunnel",
    "after_upgrade_request",
    "close_all",
    "open_tunnel",
    "switch_refused",
    "wants_websocket",
]
