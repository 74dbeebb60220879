"""How an HTTP router answers: responses relayed from endpoints, answers turnout writes itself
(errors, the status namer, TRACE/OPTIONS as final recipient), failures before and during a
response, and the HTTP/1.1 protocol hooks of the core request stack
(:mod:`turnout.router.stack`). :class:`HttpAnswers` is the base of
:class:`~turnout_protocol_http.runtime.HttpRouter`, which adds servers, dispatch and sending."""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from turnout.api import Route

from . import classifiers, tunnel
from ._stack import Call, RequestStack, RouteCache, ServerStats
from .accesslog import AccessLog
from .exchange import CRLF, Exchange, monotonic
from .heads import BadResponse, response_head_bytes
from .routecache import RouteExtras
from .servers import ServerRuntime
from .upstream import Retry, UpstreamProtocol
from .wire import local_response, reason

log = logging.getLogger("turnout.http")

# (Final: C statics in the compiled build, not module-dict lookups)
_IDEMPOTENT: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})
#: request headers a TRACE answered by turnout does not echo (RFC 9110 §9.3.8)
_NOT_ECHOED: Final = frozenset({b"authorization", b"cookie", b"proxy-authorization"})
_ALLOW: Final = b"GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH"
_SUCCESS: Final = classifiers.SUCCESS


class HttpAnswers(RequestStack):
    """The answer and failure paths of an HTTP router, and its protocol hooks of the request
    stack but :meth:`~turnout.router.stack.RequestStack.send` (see
    :class:`~turnout_protocol_http.runtime.HttpRouter`, which sets the attributes below)."""

    #: the access log (``httpAccessLog``), or None
    access_log: AccessLog | None = None
    #: set when the last request in flight finished while draining (``HttpRouter.drain``)
    drained: asyncio.Event

    def route_cache(self, route: Route) -> RouteCache:
        """Per-route data the HTTP path caches on the route: classifier and header blocks."""
        return RouteExtras(route)

    # -- protocol hooks of the request stack (see turnout.router.stack) -------------------------
    def cancel_attempt(self, call: Call) -> None:
        """Abandon the attempt's connection (closed, never reused) or its wait for one."""
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
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

    def fail(self, call: Call, status: int, message: str, summary: str | None = None) -> None:
        self.respond_local(call, status, message, err=summary)  # type: ignore[arg-type]  # (an Exchange)

    def resendable(self, call: Call) -> bool:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        # (a streamed body cannot be sent again)
        return ex.request_complete and (not ex.has_body or ex.replay is not None)

    def requeueable(self, call: Call) -> bool:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        return not ex.has_body or not ex.request_bytes or ex.replay is not None

    def classify_error(self, call: Call) -> int:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        extras: RouteExtras = ex.extras  # type: ignore[assignment]  # (routed: one of ours)
        return extras.classifier.classify_error(ex.method, True)

    def prepare_resend(self, call: Call) -> None:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        ex.upstream = None
        ex.retryable_header = False
        if ex.replay is not None:
            ex.pending_body = list(ex.replay)

    def server_timeout(self, call: Call) -> float | None:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        return ex.conn.server.timeout

    def server_stats(self, call: Call) -> ServerStats:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        return ex.conn.server.stats

    def closing(self, call: Call) -> bool:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        return ex.conn.closing

    def flush(self, call: Call) -> None:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        ex.conn.flush()

    def finished(self, call: Call, success: bool, elapsed_ms: float) -> None:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        if self.access_log is not None:
            self.access_log.record(ex, elapsed_ms)
        conn = ex.conn
        if ex.counted:
            server = conn.server
            server.in_flight -= 1
            if not server.in_flight and self.draining:
                self.drained.set()
        conn.exchange_done(ex)

    def span_name(self, call: Call) -> str:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        return ex.method.decode("latin-1").lower()

    def span_tags(self, call: Call, server: bool) -> dict[str, str]:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        tags = {"http.method": ex.method.decode("latin-1")}
        if server:
            tags["http.path"] = ex.target.split(b"?", 1)[0].decode("latin-1")
        return tags

    def span_peer(self, call: Call) -> tuple[str | None, int | None]:
        ex: Exchange = call  # type: ignore[assignment]  # (this router's calls are Exchanges)
        peer = ex.conn.peer
        return (peer[0] if peer[0] != "-" else None), (peer[1] or None)

    # -- failures before a response --------------------------------------------------------
    def upstream_failed(self, ex: Exchange, up: UpstreamProtocol, message: str) -> None:
        """The connection closed before any response byte. A request that was written goes
        again only when that is safe (idempotent, no body), and then once, or more often
        only on pooled connections (which the endpoint may have closed for being idle just
        as the request left): an endpoint that closes fresh connections without answering
        sees two attempts per request, not a storm."""
        ex.failure = "connection_closed"
        ex.upstream = None
        safe = (up.served > 0 or ex.requeues == 0) and not ex.has_body and ex.method in _IDEMPOTENT
        self.requeue_or_fail(ex, message, never_written=not ex.written or safe)

    def requeue(self, ex: Exchange, message: str) -> None:
        """A request waiting for a connection lost its endpoint: send it elsewhere."""
        ex.failure = "endpoint_removed"
        self.requeue_or_fail(ex, message, never_written=True)
        ex.conn.flush()

    def bad_response(self, ex: Exchange, up: UpstreamProtocol, message: str) -> None:
        ex.failure = "malformed_response"
        if ex.response_started:
            self.abort(ex, message)
        else:
            up.reusable = False
            self.release_endpoint(ex, success=False)
            ex.upstream = None
            self.respond_local(ex, 502, message)

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
        self.release_endpoint(ex, success=status < 500)
        self.finish(ex, success)

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
        self.cancel_attempt(ex)
        endpoint = ex.endpoint
        if endpoint is not None:
            ex.endpoint = None
            endpoint.load -= 1

    def answer_final(self, ex: Exchange) -> None:
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
        extras: RouteExtras = ex.extras  # type: ignore[assignment]  # (routed: one of ours)
        if extras.retries and self._retryable(ex, up, status):
            ex.status = status
            self.release_endpoint(ex, success=False)
            up.reusable = False
            raise Retry  # data_received closes this connection and calls retry()
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
        extras: RouteExtras = ex.extras  # type: ignore[assignment]  # (routed: one of ours)
        classifier = extras.classifier
        if classifier.classify(ex.method, status, retryable_header) != classifiers.RETRYABLE:
            return False
        return self.may_retry(ex, monotonic())

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
        extras: RouteExtras = ex.extras  # type: ignore[assignment]  # (routed: one of ours)
        below = extras.success_below
        success = (
            ex.status < below
            if below >= 0
            else extras.classifier.classify(ex.method, ex.status, ex.retryable_header) == _SUCCESS
        )
        self.complete(ex, success)

    def abort(self, ex: Exchange, message: str) -> None:
        """End an exchange that cannot be answered (client gone, upstream cut mid-response)."""
        if ex.finished:
            return
        up = ex.upstream
        if up is not None:
            up.reusable = False
            up.close()
            ex.upstream = None
        self.release_endpoint(ex, success=False)
        if not ex.status:
            ex.status = 499 if ex.conn.transport is None else 502
        if ex.failure is None:
            ex.failure = "client_gone" if ex.conn.transport is None else "aborted"
        ex.response_close = True
        log.debug("aborted %s %s: %s", ex.method, ex.target, message)
        self.finish(ex, False)
