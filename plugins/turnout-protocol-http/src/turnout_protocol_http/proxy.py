"""The HTTP/1.1 data path: downstream connections, exchanges, upstream connections and pools.

Design (see DESIGN.md, "Concurrency and the data path"):

- asyncio ``Protocol`` objects driven by httptools (llhttp) callbacks; no Task per request.
  A Task is created only on slow paths: the first request to a name that is still binding,
  and opening a new upstream connection.
- One :class:`Exchange` per request carries it from the downstream parser to an upstream
  connection and back. Bodies stream both ways with back-pressure (a slow reader pauses the
  other side); memory per connection is bounded by the transports' write-buffer limits.
- Writes made while handling one read are merged into one ``transport.write`` ("cork").
- turnout validates framing itself where llhttp is lenient (Host, TE on HTTP/1.0, TE values,
  underscore spellings of framing headers) before anything is sent upstream.
- The per-request path avoids function calls and allocations it can: headers are filtered as
  they are parsed, one clock reading per read event, cached per-route header blocks.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import os
import random
import re
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import httptools
from turnout.naming import Address, Path
from turnout.naming.inet import open_connection
from turnout.router import Client, Endpoint, Route
from turnout.router.policy import DEFAULT_POOL_IDLE_TIME_MS

from . import tunnel, wire
from .tls import pool_tls
from .wire import (
    HOP_BY_HOP,
    BadRequest,
    connection_tokens,
    is_hop_by_hop,
    local_response,
    reason,
)

if TYPE_CHECKING:
    from .runtime import HttpRouter, ServerRuntime

log = logging.getLogger("turnout.http")

# Module constants are ``Final``: the compiled build then reads them from C statics (or inlines
# them) instead of looking them up in the module's dict on every use.
CRLF: Final = wire.CRLF
VIA_TOKEN: Final = wire.VIA_TOKEN
#: the clock of the data path (Final: no module-dict lookup per call in the compiled build)
monotonic: Final = time.monotonic

HIGH_WATER: Final = 65536  # 64 KB
#: hard caps on requeues and on retries of one request, whatever the budgets say (Finagle
#: allows 25 requeues; a broken endpoint should see a few attempts per request, not 25)
MAX_REQUEUES: Final = 5
#: how long a connection closed after an early response keeps reading (and dropping) the rest
#: of the client's upload (see ServerProtocol.linger)
LINGER_SECONDS: Final = 2.0
MAX_RETRIES: Final = 25
_STATUS_META: Final = "turnout.http.status"
_getrandbits: Final = random.getrandbits
_hexlify: Final = binascii.hexlify

_PLAIN_CONNECTION: Final = frozenset({b"close", b"keep-alive"})
_VIA_LINE: Final = b"Via: " + VIA_TOKEN + CRLF

# exchange states
HEAD: Final = 0
BODY: Final = 1

# request headers handled specially while parsing (everything else is forwarded as is)
_H_HOST: Final = 0
_H_TE: Final = 1
_H_CL: Final = 2
_H_VIA: Final = 3
_H_CONNECTION: Final = 4
_H_EXPECT: Final = 5
_H_DROP: Final = 6
_H_MAX_FORWARDS: Final = 11  # kept aside: TRACE and OPTIONS decrement it (RFC 9110 §7.6.2)
_H_UPGRADE: Final = 12  # hop-by-hop, kept aside: a WebSocket upgrade is forwarded (tunnel.py)
# ... and the kinds of the other names (see _request_name)
_H_PLAIN: Final = 7  # forwarded as is
_H_L5D: Final = 8  # l5d-*
_H_PROXY: Final = 9  # proxy-*: dropped
_H_AMBIGUOUS: Final = 10  # an underscore spelling of a framing header: refused
#: header kinds a request trailer may have (not Host, Via, l5d-*, x-forwarded-client-cert...)
_TRAILER_KINDS: Final = frozenset({_H_PLAIN})
_REQUEST_SPECIAL: Final = {
    b"host": _H_HOST,
    b"transfer-encoding": _H_TE,
    b"content-length": _H_CL,
    b"via": _H_VIA,
    b"connection": _H_CONNECTION,
    b"expect": _H_EXPECT,
    b"max-forwards": _H_MAX_FORWARDS,
    **{
        h: _H_DROP
        for h in HOP_BY_HOP
        if h not in (b"transfer-encoding", b"content-length", b"connection")
    },
    b"upgrade": _H_UPGRADE,
    # set by turnout from the verified client certificate (forwardClientCert), never passed on
    b"x-forwarded-client-cert": _H_DROP,
}


# response headers handled specially (the others are forwarded, unless l5d-/proxy- rules apply)
_RESPONSE_SPECIAL: Final = {
    b"content-length": _H_CL,
    b"transfer-encoding": _H_TE,
    b"via": _H_VIA,
    b"connection": _H_CONNECTION,
    **{
        h: _H_DROP
        for h in HOP_BY_HOP
        if h not in (b"content-length", b"transfer-encoding", b"connection")
    },
}


#: what a header name means, by its spelling as received: ``(lower-cased name, kind, b"Name: ")``
#: (so that a request pays neither ``lower()`` nor these tests per header)
_REQUEST_NAMES: Final[dict[bytes, tuple[bytes, int, bytes]]] = {}
#: for responses: ``(lower-cased name if it needs a decision, else b"", b"Name: ", kind)``
#: (kind: ``_H_CL``, ``_H_CONNECTION``, another special kind, or ``_H_PLAIN``)
_RESPONSE_NAMES: Final[dict[bytes, tuple[bytes, bytes, int]]] = {}
_NAMES_LIMIT: Final = 4096
#: longer names are classified each time rather than cached (the caches stay small)
_NAME_CACHED: Final = 64


def _request_name(name: bytes) -> tuple[bytes, int, bytes]:
    lname = name.lower()
    kind = _REQUEST_SPECIAL.get(lname)
    if kind is None:
        if lname[:4] == b"l5d-":
            kind = _H_L5D
        elif lname[:6] == b"proxy-":
            kind = _H_PROXY
        elif lname.replace(b"_", b"-") in (b"content-length", b"transfer-encoding"):
            kind = _H_AMBIGUOUS
        else:
            kind = _H_PLAIN
    entry = (lname, kind, name + b": ")
    if len(name) <= _NAME_CACHED:
        if len(_REQUEST_NAMES) >= _NAMES_LIMIT:
            _REQUEST_NAMES.clear()
        _REQUEST_NAMES[name] = entry
    return entry


def _response_name(name: bytes) -> tuple[bytes, bytes, int]:
    lname = name.lower()
    kind = _RESPONSE_SPECIAL.get(lname)
    if kind is None:
        kind = _H_L5D if lname[:4] == b"l5d-" else _H_PROXY if lname[:6] == b"proxy-" else _H_PLAIN
    entry = (lname if kind != _H_PLAIN else b"", name + b": ", kind)
    if len(name) <= _NAME_CACHED:
        if len(_RESPONSE_NAMES) >= _NAMES_LIMIT:
            _RESPONSE_NAMES.clear()
        _RESPONSE_NAMES[name] = entry
    return entry


_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~!$&'()*+,;=%-]+)(?::(\d{1,5}))?")
_VALID_HOSTS: Final[set[bytes]] = set()


def _check_host(host: bytes) -> None:
    """Refuse a Host that is not ``host[:port]`` (RFC 9110 §7.2); remember good ones."""
    m = _HOST.fullmatch(host)
    if m is None or (m.group(1) is not None and not 0 < int(m.group(1)) < 65536):
        raise BadRequest(400, f"invalid Host header: {host.decode('latin-1')!r}")
    if len(_VALID_HOSTS) > 10_000:
        _VALID_HOSTS.clear()
    _VALID_HOSTS.add(host)


class Exchange:
    """One request/response pair travelling through the proxy.

    A plain class with class-level defaults: creating one sets only what differs per request.
    """

    # request
    method = b""
    target = b""
    version = b"1.1"
    host: bytes | None = None
    host_count = 0
    content_length: bytes | None = None
    te_count = 0
    chunked = False
    has_body = False
    expect_continue = False
    #: turnout sent ``100 Continue`` for this request (it answers Expect itself, as nginx)
    continue_sent = False
    max_forwards: bytes | None = None
    #: TRACE or OPTIONS with ``Max-Forwards: 0``: turnout answers it
    final_recipient = False
    #: the ``Upgrade`` header received (not forwarded), and whether a WebSocket upgrade was
    #: asked upstream (see tunnel.py)
    upgrade: bytes | None = None
    websocket = False
    keep_alive = True
    via: list[bytes] | None = None
    connection: list[bytes] | None = None
    dtab_ctx: list[bytes] | None = None
    dtab_user: list[bytes] | None = None
    trailers: list[tuple[bytes, bytes]] | None = None
    state = HEAD
    request_complete = False
    pending_body: list[bytes] | None = None
    pending_bytes = 0
    request_bytes = 0
    head_size = 0  # bytes of header fields so far (limit: maxHeadersKB)
    # routing
    dst: Path | None = None
    route: Route | None = None
    #: the route's runtime._RouteExtras (set with ``route``)
    extras: Any = None
    client: Client | None = None
    residual: Path | None = None
    endpoint: Endpoint | None = None
    upstream: UpstreamProtocol | None = None
    written = False
    requeues = 0
    counted = False
    head_only = False
    # response
    status = 0
    response_started = False
    response_chunked = False
    response_close = False
    response_bytes = 0
    retryable_header = False
    finished = False
    #: why the exchange failed, for ``failures/<class>`` counters (None: by its status)
    failure: str | None = None
    # retries and timeouts
    #: a copy of the request body, kept while it is small enough to send again (retries)
    replay: list[bytes] | None = None
    attempts = 0
    attempt_start = 0.0
    backoffs: Any = None
    timer: Any = None
    #: the request's trace (a turnout.tracing.ServerTrace) when a tracer sampled it
    trace: Any = None
    #: housekeeping (HttpRouter.sweep): body bytes moved either way at the last sweep, and
    #: since when that count has not changed (request body and response idle timeouts)
    seen = -1
    quiet_since = 0.0

    def __init__(self, conn: ServerProtocol, start: float) -> None:
        self.conn = conn
        self.start = start
        #: forwarded header lines, ready to write (``b"Name: value\r\n"``), and their
        #: lower-cased names in the same order
        self.lines: list[bytes] = []
        self.lnames: list[bytes] = []

    # -- what identifiers read -------------------------------------------------------------
    def header(self, lname: bytes) -> bytes | None:
        if lname == b"host":
            return self.host
        try:
            i = self.lnames.index(lname)
        except ValueError:
            return None
        return self.lines[i][len(lname) + 1 : -2].strip()

    def add(self, lname: bytes, name: bytes, value: bytes) -> None:
        self.lines.append(name + b": " + value + CRLF)
        self.lnames.append(lname)


# ---------------------------------------------------------------------------------------------
# Downstream
# ---------------------------------------------------------------------------------------------


class ServerProtocol:
    """One client connection to an HTTP router server (an :class:`asyncio.Protocol`, by the
    methods it has: not subclassed, so that the class can be compiled)."""

    def __init__(self, router: HttpRouter, server: ServerRuntime) -> None:
        self.router = router
        self.server = server
        self.clear_context = server.config.clear_context
        self.max_line = router.config.max_initial_line_kb * 1024
        self.max_headers = router.config.max_headers_kb * 1024
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.current: Exchange | None = None  # the exchange being parsed
        self.queue: deque[Exchange] = deque()  # exchanges in order; [0] is being answered
        self.out: list[bytes] = []
        self.corked = False
        self.closing = False
        self.paused_reading = False
        self.now = 0.0
        self.head_started = 0.0
        self.head_bytes = 0
        self.last_active = 0.0
        self.served = 0
        self.half_closed = False
        self.final_received = False  # a request without keep-alive was received in full
        self.peer = ("-", 0)
        #: the exchange whose head was parsed in this read, dispatched once the whole read
        #: parsed (so that llhttp's own checks of the head and of a body that arrived with it
        #: run before anything goes upstream)
        self.pending: Exchange | None = None
        #: closing after a response that did not wait for the request body: the response is
        #: sent and the write side shut; what the client still sends is read and dropped for a
        #: moment so that its kernel does not reset the connection before it read the response
        self.lingering = False
        self.linger_since = 0.0
        self.born = 0.0
        #: the ``x-forwarded-client-cert`` line of the verified client certificate (set by
        #: tls.TlsAcceptor before connection_made), sent upstream with forwardClientCert
        self.client_cert: bytes | None = None

    # -- asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]
        self.born = self.last_active = self.head_started = monotonic()
        peer = transport.get_extra_info("peername")
        if peer:
            self.peer = (peer[0], peer[1])
        self.server.connections.add(self)
        self.server.stats.connects.value += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.closing = True
        self.transport = None
        for ex in list(self.queue):
            if not ex.finished:
                self.router.abort(ex, "client disconnected")
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self.now = self.last_active = monotonic()
        current = self.current
        if current is None or current.state == HEAD:
            self.head_bytes += len(data)
        if self.final_received:
            return  # bytes after a request that closes the connection are ignored (RFC 9112 §9.6)
        self.corked = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            self._after_upgrade(data, e)
        except BadRequest as e:
            self.refuse(e.status, str(e))
        except httptools.HttpParserError as e:
            cause = e.__cause__ or e.__context__
            if isinstance(cause, BadRequest):
                self.refuse(cause.status, str(cause))
            elif not self.final_received:  # (llhttp refuses data after a closing request)
                if "HTTP version" in str(e):
                    self.refuse(505, "HTTP version not supported: this router speaks HTTP/1.x")
                else:
                    self.refuse(400, f"malformed request: {e}")
        pending = self.pending
        if pending is not None:
            self.pending = None
            if not self.closing and not pending.finished:
                self.router.dispatch(pending)
        self.corked = False
        if self.out:
            self.flush()
        current = self.current
        if current is not None and current.state == HEAD and not self.closing:
            self._check_head_size(current)

    def _after_upgrade(self, data: bytes, e: httptools.HttpParserUpgrade) -> None:
        # llhttp stops after the head of a request with "Upgrade" (its body unread): turnout
        # decides what follows, a body, the next request or a tunnel's bytes (tunnel.py)
        offset = e.args[0] if e.args else len(data)
        rest = tunnel.after_upgrade_request(self, data[offset:])
        if rest:
            self.corked = False
            self.data_received(rest)

    def _check_head_size(self, ex: Exchange) -> None:
        """A head still incomplete after a read: llhttp buffers a header line (or the request
        line) that is not finished yet, which the callbacks cannot see; bound it here."""
        if self.head_bytes > self.max_line + self.max_headers + 4:
            if not ex.head_size:
                self.refuse(
                    414, f"request line longer than maxInitialLineKB ({self.max_line >> 10} KB)"
                )
            else:
                self.refuse(
                    431, f"request headers larger than maxHeadersKB ({self.max_headers >> 10} KB)"
                )

    def eof_received(self) -> bool | None:
        """The client closed its side. A request whose response has not begun is abandoned
        (as nginx and Finagle do: a half-close cannot be told from a client that went away,
        and an abandoned request must free its endpoint connection at once); a response
        already streaming is finished, then the connection closes."""
        queue = self.queue
        if self.lingering or not queue:
            return None  # close (connection_lost follows)
        head = queue[0]
        if head.response_started and not head.finished:
            self.half_closed = True
            while len(queue) > 1:  # pipelined requests nobody will read the answers of
                queue.pop()
            return True  # keep the transport open for the rest of the response
        return None  # connection_lost aborts what is in flight

    def pause_writing(self) -> None:
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.upstream is not None and ex.upstream.transport is not None:
            ex.upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        ex = self.queue[0] if self.queue else None
        if ex is not None and ex.upstream is not None and ex.upstream.transport is not None:
            ex.upstream.transport.resume_reading()

    # -- writing ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.corked:
            self.out.append(data)
        elif self.transport is not None:
            self.transport.write(data)

    def flush(self) -> None:
        out = self.out
        if out:
            self.out = []
            if self.transport is not None:
                self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def pause_reading(self) -> None:
        if not self.paused_reading and self.transport is not None:
            self.paused_reading = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused_reading and self.transport is not None:
            self.paused_reading = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closing:
            self.closing = True
            self.flush()
            self.transport.close()

    def linger(self) -> None:
        """Close after a response sent before the request body ended: shut the write side
        (the response is flushed first) and drop what the client still sends until it closes
        or ``LINGER_SECONDS`` pass (HttpRouter.sweep); closing at once would make the
        client's kernel answer the rest of its upload with a reset that can destroy the
        response before the client read it (nginx's lingering_close)."""
        transport = self.transport
        if transport is None or self.closing:
            return
        self.flush()
        self.closing = True
        if not transport.can_write_eof():
            transport.close()
            return
        self.lingering = True
        self.linger_since = monotonic()
        transport.write_eof()
        if self.paused_reading:
            self.paused_reading = False
            transport.resume_reading()

    def refuse(self, status: int, message: str) -> None:
        """Answer a request turnout will not forward, then close the connection."""
        ex = self.current
        self.pending = None
        if ex is not None and ex.counted:
            # dispatched already (a malformed body found after the head went upstream): the
            # client's fault, never the endpoint's; 4xx unless the response has begun
            self.router.client_error(ex, status, message)
            self.close()
            return
        if self.queue and self.queue[0] is not ex and not self.queue[0].finished:
            self.close()  # a pipelined request is still being answered; just stop
            return
        self.router.count_local(self.server, status)
        self.write(local_response(status, message, close=True, clear_context=self.clear_context))
        if ex is not None:
            ex.finished = True
        self.close()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        ex = self.current = Exchange(self, self.now)
        self.queue.append(ex)
        self.head_started = self.now
        if len(self.queue) > 1:  # pipelining: don't read further until the first is answered
            self.pause_reading()

    def on_url(self, url: bytes) -> None:
        ex: Exchange = self.current  # type: ignore[assignment]
        ex.target += url
        if len(ex.target) > self.max_line:
            raise BadRequest(
                414, f"request line longer than maxInitialLineKB ({self.max_line >> 10} KB)"
            )

    def on_header(self, name: bytes, value: bytes) -> None:
        ex: Exchange = self.current  # type: ignore[assignment]
        entry = _REQUEST_NAMES.get(name)
        if entry is None:
            entry = _request_name(name)
        lname, special, prefix = entry
        if value and value[-1] in (32, 9):  # llhttp strips leading whitespace only
            value = value.rstrip(b" \t")
        if ex.state:  # trailers of a chunked request
            if ex.trailers is None:
                ex.trailers = []
            # (what turnout sets or drops in the head is not taken from trailers either: a
            # backend may merge trailers into the headers)
            if not is_hop_by_hop(lname) and special in _TRAILER_KINDS:
                ex.trailers.append((name, value))
            return
        ex.head_size += len(name) + len(value) + 4
        if ex.head_size > self.max_headers:
            raise BadRequest(
                431, f"request headers larger than maxHeadersKB ({self.max_headers >> 10} KB)"
            )
        if special == _H_PLAIN:
            ex.lines.append(prefix + value + CRLF)
            ex.lnames.append(lname)
        elif special == _H_L5D:
            self._l5d_header(ex, lname, value)
        elif special == _H_PROXY:
            return
        elif special == _H_AMBIGUOUS:
            raise BadRequest(400, f"ambiguous framing header {name.decode('latin-1')!r}")
        elif special == _H_HOST:
            ex.host_count += 1
            ex.host = value
        elif special == _H_CL:
            ex.content_length = value
            ex.add(lname, name, value)
        elif special == _H_TE:
            ex.te_count += 1
            if value.strip(b" ").lower() != b"chunked" or b"\t" in value:
                # (llhttp refuses a tab after "chunked" only once the head was handed over)
                raise BadRequest(400, f"unsupported Transfer-Encoding: {value.decode('latin-1')!r}")
        elif special == _H_VIA:
            if ex.via is None:
                ex.via = []
            ex.via.append(value)
        elif special == _H_CONNECTION:
            if ex.connection is None:
                ex.connection = []
            ex.connection.append(value)
        elif special == _H_EXPECT:
            if value.strip().lower() == b"100-continue":
                ex.expect_continue = True  # answered by turnout (see HttpRouter._send)
            else:
                ex.add(lname, name, value)
        elif special == _H_MAX_FORWARDS:
            ex.max_forwards = value
            ex.add(lname, name, value)
        elif special == _H_UPGRADE:
            ex.upgrade = value if ex.upgrade is None else ex.upgrade + b", " + value
        # _H_DROP: hop-by-hop, not forwarded

    def _l5d_header(self, ex: Exchange, lname: bytes, value: bytes) -> None:
        if self.clear_context:
            return
        if lname == b"l5d-dtab":
            if ex.dtab_user is None:
                ex.dtab_user = []
            ex.dtab_user.append(value)
        elif lname == b"l5d-ctx-dtab":
            if ex.dtab_ctx is None:
                ex.dtab_ctx = []
            ex.dtab_ctx.append(value)
        elif lname[:8] != b"l5d-dst-" and lname != b"l5d-reqid":  # turnout writes those
            ex.add(lname, lname, value)

    def on_headers_complete(self) -> None:
        ex: Exchange = self.current  # type: ignore[assignment]
        parser = self.parser
        ex.method = parser.get_method()
        v = parser.get_http_version()
        # (the usual versions as constants: no allocation, and later compares are identities)
        if v == "1.1":
            version = ex.version = b"1.1"
        elif v == "1.0":
            version = ex.version = b"1.0"
        else:  # (HTTP/0.9, HTTP/2.0...: the error goes out as an HTTP/1.1 response)
            raise BadRequest(505, f"HTTP/{v} is not supported: this router speaks HTTP/1.x")
        ex.keep_alive = parser.should_keep_alive() and not self.router.draining
        ex.state = BODY
        self.head_bytes = 0
        if ex.host_count != 1 and (version == b"1.1" or ex.host_count):
            raise BadRequest(
                400, "missing Host header" if not ex.host_count else "duplicate Host header"
            )
        host = ex.host
        if host is not None and host not in _VALID_HOSTS:
            _check_host(host)
        if ex.te_count:
            if version == b"1.0":
                raise BadRequest(400, "Transfer-Encoding is not allowed in HTTP/1.0 requests")
            if ex.te_count > 1:
                raise BadRequest(400, "more than one Transfer-Encoding header")
            ex.chunked = ex.has_body = True
        elif ex.content_length is not None and ex.content_length.strip() != b"0":
            ex.has_body = True
        else:
            ex.request_complete = True  # nothing more belongs to this request
        if ex.connection is not None:
            remove = connection_tokens(ex.connection)
            if remove:
                kept = [(n, x) for n, x in zip(ex.lnames, ex.lines, strict=True) if n not in remove]
                ex.lnames = [n for n, _ in kept]
                ex.lines = [x for _, x in kept]
        if ex.target[:1] != b"/":
            self._absolute_form(ex)
        if ex.max_forwards is not None and (ex.method == b"TRACE" or ex.method == b"OPTIONS"):
            self._max_forwards(ex)
        if self.queue[0] is ex:
            self.pending = ex  # dispatched once this read parsed (see data_received)

    def _absolute_form(self, ex: Exchange) -> None:
        """``GET http://host/path`` (http_proxy use): route and forward by the URI's host."""
        target = ex.target
        if target == b"*" and ex.method == b"OPTIONS":
            # asks about this server, not about a service: nothing to route (nginx: 400)
            raise BadRequest(400, "OPTIONS * is not forwarded: it names no service")
        try:
            url = httptools.parse_url(target)
        except httptools.HttpParserInvalidURLError:
            raise BadRequest(400, "invalid request target") from None
        if url.schema not in (b"http", b"https") or not url.host:
            raise BadRequest(400, "unsupported request target (CONNECT is not supported)")
        ex.host = url.host + (b":" + str(url.port).encode() if url.port else b"")
        ex.host_count = 1
        ex.target = (url.path or b"/") + (b"?" + url.query if url.query else b"")

    def _max_forwards(self, ex: Exchange) -> None:
        """TRACE and OPTIONS with ``Max-Forwards`` (RFC 9110 §7.6.2): at 0 turnout is the
        final recipient and answers itself; otherwise the value goes upstream one lower."""
        value = ex.max_forwards.strip()  # type: ignore[union-attr]
        if not value.isdigit():
            raise BadRequest(400, "invalid Max-Forwards header")
        hops = int(value)
        if b"max-forwards" not in ex.lnames:
            return  # (named by Connection: hop-by-hop, already removed)
        i = ex.lnames.index(b"max-forwards")
        if hops > 0:
            ex.lines[i] = b"Max-Forwards: %d\r\n" % (hops - 1)
            return
        del ex.lines[i]
        del ex.lnames[i]
        ex.final_recipient = True  # answered by HttpRouter.dispatch

    def on_body(self, body: bytes) -> None:
        ex: Exchange = self.current  # type: ignore[assignment]
        ex.request_bytes += len(body)
        if ex.finished:
            return  # answered already (413...): the rest of the upload is not forwarded
        replay = ex.replay
        if replay is not None:
            if ex.request_bytes > self.router.replay_limit:
                ex.replay = None  # too big to keep: this request will not be retried
            else:
                replay.append(body)
        data = (b"%x\r\n" % len(body)) + body + CRLF if ex.chunked else body
        up = ex.upstream
        if up is not None and ex.written and up.transport is not None:
            up.transport.write(data)
        else:
            if ex.pending_body is None:
                ex.pending_body = []
            ex.pending_body.append(data)
            ex.pending_bytes += len(data)
            if ex.pending_bytes > HIGH_WATER:
                self.pause_reading()

    def on_message_complete(self) -> None:
        ex: Exchange = self.current  # type: ignore[assignment]
        ex.request_complete = True
        if ex.chunked:
            tail = b"0\r\n"
            if ex.trailers:
                tail += b"".join(n + b": " + v + CRLF for n, v in ex.trailers)
            tail += CRLF
            up = ex.upstream
            if up is not None and ex.written and up.transport is not None:
                up.transport.write(tail)
            else:
                if ex.pending_body is None:
                    ex.pending_body = []
                ex.pending_body.append(tail)
        self.current = None
        self.head_bytes = 0
        self.head_started = self.now
        if not ex.keep_alive:
            self.final_received = True
            self.pause_reading()

    # -- answering -------------------------------------------------------------------------
    def exchange_done(self, ex: Exchange) -> None:
        """Called when the response of the head-of-line exchange was fully written."""
        queue = self.queue
        if queue and queue[0] is ex:
            queue.popleft()
        self.served += 1
        if not ex.request_complete:
            # a response that ended before its request body did: what follows cannot be told
            # apart from the next request
            self.linger()
            return
        life = self.server.life_time  # (serverSession.lifeTimeMs)
        if (
            not ex.keep_alive
            or ex.response_close
            or self.closing
            or self.half_closed
            or (life is not None and self.now - self.born > life)
        ):
            self.close()
            return
        if queue:
            nxt = queue[0]
            if nxt.state:
                self.router.dispatch(nxt)
        if self.paused_reading and len(queue) <= 1:
            self.resume_reading()


# ---------------------------------------------------------------------------------------------
# Upstream
# ---------------------------------------------------------------------------------------------


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
            if isinstance(cause, _Retry):
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
        if kind == _H_PLAIN:
            self.lines.append(entry[1] + value + CRLF)
        elif kind == _H_CL:
            self.content_length = value  # (the last one counts)
        elif kind == _H_CONNECTION and (value == b"keep-alive" or value == b"close"):
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


class BadResponse(Exception):
    """An upstream response turnout will not relay (raised in parser callbacks: 502)."""


class _Retry(Exception):
    """Raised from a callback: this response is dropped and the request sent again."""


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
        self.tls: dict[str, Any] = pool_tls(client.policy) if self.status is None else {}

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
                factory, self.host, self.port, self.router.connect_timeout, **self.tls
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


def request_id() -> bytes:
    # (the same 16 hex digits as ``b"%016x" % _getrandbits(64)``, without bytes formatting)
    return _hexlify(_getrandbits(64).to_bytes(8, "big"))


#: status lines by (version, status, reason): formatting one costs more than a lookup
_STATUS_LINES: Final[dict[tuple[bytes, int, bytes], bytes]] = {}


def _status_line(version: bytes, status: int, reason_phrase: bytes) -> bytes:
    key = (version, status, reason_phrase)
    line = _STATUS_LINES.get(key)
    if line is None:
        line = b"HTTP/%s %d %s\r\n" % key
        if len(reason_phrase) <= 64:  # (reason phrases come from upstreams: keep it small)
            if len(_STATUS_LINES) > 1000:
                _STATUS_LINES.clear()
            _STATUS_LINES[key] = line
    return line


def response_head_bytes(
    ex: Exchange, up: UpstreamProtocol, status: int, clear_context: bool
) -> bytes:
    """The head sent downstream: status line, end-to-end headers, framing, Via.

    (Builds it in ``up.lines``, whose first item is the status line's place.)"""
    version = ex.version
    phrase = up.reason
    if status == up.sl_status and version is up.sl_version and phrase == up.sl_reason:
        head = up.sl_line  # (the same status line as this connection's last response)
    else:
        head = _status_line(version, status, phrase or reason(status))
        up.sl_status = status
        up.sl_version = version
        up.sl_reason = phrase
        up.sl_line = head
    content_length = up.content_length
    chunked = False
    te_codings: bytes | None = None  # codings before the final "chunked" (gzip...)
    via: bytes | None = None
    extra: list[bytes] | None = None
    lines = up.lines
    special = up.special
    if special is not None:
        extra = []
        remove: set[bytes] = set()
        for lname, name, value in special:
            kind = _RESPONSE_SPECIAL.get(lname)
            if kind == _H_TE:
                codings = [c.strip() for c in value.lower().split(b",") if c.strip()]
                chunked = bool(codings) and codings[-1] == b"chunked"
                if chunked and len(codings) > 1:
                    if ex.version != b"1.1":
                        raise BadResponse(
                            "the response has transfer codings an HTTP/1.0 client cannot take"
                        )
                    te_codings = b", ".join(codings[:-1])
            elif kind == _H_VIA:
                via = value if via is None else via + b", " + value
            elif kind == _H_CONNECTION:
                if value.lower() not in _PLAIN_CONNECTION:
                    remove |= connection_tokens([value]) - _PLAIN_CONNECTION
            elif lname[:4] == b"l5d-":
                if lname == b"l5d-retryable":
                    ex.retryable_header = value.strip().lower() == b"true"
                if not clear_context:
                    extra.append(name + b": " + value + CRLF)
            # the other special headers are hop-by-hop: dropped
        if remove:  # the Connection header named more headers to drop
            lines = up.lines = [b""] + [
                x for x in lines[1:] if x[: x.index(b":")].lower() not in remove
            ]
            extra = [x for x in extra if x[: x.index(b":")].lower() not in remove]
        if extra:
            lines += extra
    lines[0] = head
    lines.append(b"Via: " + via + b", " + VIA_TOKEN + CRLF if via else _VIA_LINE)
    if ex.head_only or status == 204 or status == 304:
        if content_length is not None and ex.head_only:
            lines.append(b"Content-Length: ")
            lines.append(content_length)
            lines.append(CRLF)
        up.eof_ends_body = False
    elif content_length is not None and not chunked:
        lines.append(b"Content-Length: ")
        lines.append(content_length)
        lines.append(CRLF)
    elif version == b"1.1":
        # chunked upstream, or a body delimited by the upstream closing: chunk it downstream
        if te_codings is not None:  # the body stays in its other codings; only chunking is redone
            lines += (b"Transfer-Encoding: ", te_codings, b", chunked\r\n")
        else:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        ex.response_chunked = True
        up.eof_ends_body = not chunked
    else:
        ex.response_close = True  # HTTP/1.0 client: the body ends when we close
        up.eof_ends_body = not chunked
    if ex.conn.router.draining or not ex.request_complete:
        # shutting down, or answered before the request body ended: the connection ends here
        ex.keep_alive = False
    if not ex.keep_alive or ex.response_close:
        lines.append(b"Connection: close\r\n")
        ex.response_close = True
    elif version == b"1.0":
        lines.append(b"Connection: keep-alive\r\n")
    lines.append(CRLF)
    return b"".join(lines)
