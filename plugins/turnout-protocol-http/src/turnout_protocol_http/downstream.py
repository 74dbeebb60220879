"""The downstream side of the HTTP/1.1 data path: :class:`ServerProtocol`, one client connection.

The data path as a whole (this module, exchange.py, upstream.py, heads.py, the router in
answers.py and runtime.py; see docs/architecture.md, "Concurrency and the data path"):

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
import re
from collections import deque
from typing import TYPE_CHECKING, Final

import httptools

from . import tunnel
from .exchange import (
    BODY,
    CRLF,
    H_AMBIGUOUS,
    H_CL,
    H_CONNECTION,
    H_DROP,
    H_EXPECT,
    H_HOST,
    H_L5D,
    H_MAX_FORWARDS,
    H_PLAIN,
    H_PROXY,
    H_TE,
    H_UPGRADE,
    H_VIA,
    HEAD,
    HIGH_WATER,
    NAME_CACHED,
    NAMES_LIMIT,
    Exchange,
    monotonic,
)
from .wire import HOP_BY_HOP, BadRequest, connection_tokens, is_hop_by_hop, local_response

if TYPE_CHECKING:
    from .runtime import HttpRouter
    from .servers import ServerRuntime

#: how long a connection closed after an early response keeps reading (and dropping) the rest
#: of the client's upload (see ServerProtocol.linger)
LINGER_SECONDS: Final = 2.0

#: header kinds a request trailer may have (not Host, Via, l5d-*, x-forwarded-client-cert...)
_TRAILER_KINDS: Final = frozenset({H_PLAIN})
#: request headers handled specially while parsing (everything else is forwarded as is)
_REQUEST_SPECIAL: Final = {
    b"host": H_HOST,
    b"transfer-encoding": H_TE,
    b"content-length": H_CL,
    b"via": H_VIA,
    b"connection": H_CONNECTION,
    b"expect": H_EXPECT,
    b"max-forwards": H_MAX_FORWARDS,
    **{
        h: H_DROP
        for h in HOP_BY_HOP
        if h not in (b"transfer-encoding", b"content-length", b"connection")
    },
    b"upgrade": H_UPGRADE,
    # set by turnout from the verified client certificate (forwardClientCert), never passed on
    b"x-forwarded-client-cert": H_DROP,
}
#: what a request header name means, by its spelling as received:
#: ``(lower-cased name, kind, b"Name: ")`` (see exchange.NAMES_LIMIT)
_REQUEST_NAMES: Final[dict[bytes, tuple[bytes, int, bytes]]] = {}


def _request_name(name: bytes) -> tuple[bytes, int, bytes]:
    lname = name.lower()
    kind = _REQUEST_SPECIAL.get(lname)
    if kind is None:
        if lname[:4] == b"l5d-":
            kind = H_L5D
        elif lname[:6] == b"proxy-":
            kind = H_PROXY
        elif lname.replace(b"_", b"-") in (b"content-length", b"transfer-encoding"):
            kind = H_AMBIGUOUS
        else:
            kind = H_PLAIN
    entry = (lname, kind, name + b": ")
    if len(name) <= NAME_CACHED:
        if len(_REQUEST_NAMES) >= NAMES_LIMIT:
            _REQUEST_NAMES.clear()
        _REQUEST_NAMES[name] = entry
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
        if special == H_PLAIN:
            ex.lines.append(prefix + value + CRLF)
            ex.lnames.append(lname)
        elif special == H_L5D:
            self._l5d_header(ex, lname, value)
        elif special == H_PROXY:
            return
        elif special == H_AMBIGUOUS:
            raise BadRequest(400, f"ambiguous framing header {name.decode('latin-1')!r}")
        elif special == H_HOST:
            ex.host_count += 1
            ex.host = value
        elif special == H_CL:
            ex.content_length = value
            ex.add(lname, name, value)
        elif special == H_TE:
            ex.te_count += 1
            if value.strip(b" ").lower() != b"chunked" or b"\t" in value:
                # (llhttp refuses a tab after "chunked" only once the head was handed over)
                raise BadRequest(400, f"unsupported Transfer-Encoding: {value.decode('latin-1')!r}")
        elif special == H_VIA:
            if ex.via is None:
                ex.via = []
            ex.via.append(value)
        elif special == H_CONNECTION:
            if ex.connection is None:
                ex.connection = []
            ex.connection.append(value)
        elif special == H_EXPECT:
            if value.strip().lower() == b"100-continue":
                ex.expect_continue = True  # answered by turnout (see HttpRouter.send)
            else:
                ex.add(lname, name, value)
        elif special == H_MAX_FORWARDS:
            ex.max_forwards = value
            ex.add(lname, name, value)
        elif special == H_UPGRADE:
            ex.upgrade = value if ex.upgrade is None else ex.upgrade + b", " + value
        # H_DROP: hop-by-hop, not forwarded

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
