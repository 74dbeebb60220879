"""TLS on the HTTP router: handshakes on the servers, the client identity they verified
(``x-forwarded-client-cert``), certificate rotation, and the per-pool client TLS settings.

Contexts come from :mod:`turnout.tls` (one builder for servers, clients and namers). This
module is not compiled: it runs once per connection, not per request.

Why the servers do not pass ``ssl=`` to ``loop.create_server``: both asyncio and uvloop then
drop failed handshakes silently (asyncio logs them only in debug mode, and the application
protocol never hears of the connection), so they could be neither counted nor logged with the
peer's address; and the context would be fixed for the server's life. Instead each accepted
connection starts as a :class:`TlsAcceptor` that, before anything is read, puts the loop's own
TLS protocol (what ``create_server(ssl=...)`` would have used) with the server's *current*
context (rotation replaces it) on the socket and watches the handshake; the router's
:class:`~turnout_protocol_http.downstream.ServerProtocol` gets the TLS transport once it succeeded.
(``loop.start_tls`` from a task would be too late: uvloop starts reading right after
``connection_made``, so the ClientHello would reach the wrong protocol.)
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from turnout.api import FileWatcher, TlsError, TurnoutError, client_tls, server_context

if TYPE_CHECKING:
    from turnout.api import ClientPolicy, ClientTlsConfig, Counter, MetricsTree, TlsServerConfig

log = logging.getLogger("turnout.http.tls")

#: a handshake not finished this long after the connection was accepted is a failure
HANDSHAKE_TIMEOUT = 10.0
#: a peer's handshake failures are logged at most once per this many seconds
LOG_EVERY = 60.0
XFCC = b"x-forwarded-client-cert"


class TlsServer:
    """The TLS side of one listening socket (``servers[].tls``)."""

    def __init__(self, config: TlsServerConfig) -> None:
        self.config = config
        #: the context new handshakes use (replaced when the certificate files change)
        try:
            self.context: ssl.SSLContext = server_context(config)
        except TlsError as e:  # (checked with the config; a file changed since)
            raise TurnoutError(f"server tls.{e.key}: {e.message}") from None
        #: client certificates are asked for (caCertPath set): their identity can be forwarded
        self.verifies_clients = config.ca_cert_path is not None
        self.pending: set[TlsAcceptor] = set()
        self.failures: Counter | None = None
        self.watcher: FileWatcher | None = None
        self._logged: dict[str, float] = {}

    def start(self, metrics: MetricsTree, scope: tuple[str, ...], what: str) -> None:
        """Once listening: counters under ``scope`` + ``tls/``, and the file watcher."""
        self.failures = metrics.counter(*scope, "tls", "handshake_failures")
        cfg = self.config
        paths = [cfg.cert_path, cfg.key_path]
        if cfg.intermediate_certs_path is not None:
            paths.append(cfg.intermediate_certs_path)
        self.watcher = FileWatcher(
            what,
            paths,
            lambda: server_context(cfg),
            self._install,
            metrics.counter(*scope, "tls", "reloads"),
            metrics.counter(*scope, "tls", "reload_failures"),
            also=[cfg.ca_cert_path] if cfg.ca_cert_path is not None else [],  # (client CAs)
        )
        self.watcher.start()

    def _install(self, context: ssl.SSLContext) -> None:
        self.context = context

    def factory(self, app_factory: Callable[[], Any]) -> Callable[[], TlsAcceptor]:
        return lambda: TlsAcceptor(self, app_factory)

    def handshake_failed(self, peer: tuple[str, int] | None, exc: BaseException) -> None:
        if self.failures is not None:
            self.failures.value += 1
        host = peer[0] if peer else "-"
        now = time.monotonic()
        last = self._logged.get(host)
        if last is not None and now - last < LOG_EVERY:
            return
        if len(self._logged) > 10_000:
            self._logged.clear()
        self._logged[host] = now
        where = f"{peer[0]}:{peer[1]}" if peer else "-"
        log.warning(
            "TLS handshake with %s failed: %s (further failures of this peer are not logged "
            "for %d s)",
            where,
            _describe(exc),
            LOG_EVERY,
        )

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        for acceptor in list(self.pending):
            acceptor.abort()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no handshake within {HANDSHAKE_TIMEOUT:g} s"
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return f"{exc.reason} ({exc.library or 'ssl'})"
    return str(exc) or type(exc).__name__


def _ssl_protocol_class(loop: asyncio.AbstractEventLoop) -> Any:
    """The loop's own TLS protocol: uvloop's (compiled) under uvloop, asyncio's otherwise
    (which works over any loop's transports)."""
    if type(loop).__module__.startswith("uvloop"):
        cls = getattr(sys.modules.get("uvloop.loop"), "SSLProtocol", None)
        if cls is not None:
            return cls
    return asyncio.sslproto.SSLProtocol  # type: ignore[attr-defined]  # (asyncio's SSL protocol class: not in typeshed)


class TlsAcceptor:
    """One accepted connection (an asyncio Protocol by duck typing, for an instant): it puts
    the loop's TLS protocol between the socket and the router's protocol, before anything is
    read, and watches the handshake: a failure is counted and logged with the peer's
    address; on success the router's protocol is created and takes the TLS transport."""

    def __init__(self, server: TlsServer, app_factory: Callable[[], Any]) -> None:
        self.server = server
        self.raw: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self._app_factory = app_factory

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw: asyncio.Transport = transport  # type: ignore[assignment]
        self.raw = raw
        peer = raw.get_extra_info("peername")
        if peer:
            self.peer = (peer[0], peer[1])
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        protocol = _ssl_protocol_class(loop)(
            loop,
            _Handoff(self.server, self._app_factory),
            self.server.context,
            waiter,
            server_side=True,
            ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
        )
        # (before the loop reads anything: uvloop starts reading after connection_made)
        raw.set_protocol(protocol)
        protocol.connection_made(raw)
        self.server.pending.add(self)
        waiter.add_done_callback(self._handshake_done)

    def _handshake_done(self, waiter: asyncio.Future[None]) -> None:
        self.server.pending.discard(self)
        if waiter.cancelled() or waiter.exception() is None:
            return
        exc = waiter.exception()
        assert exc is not None
        if self.raw is not None:
            self.raw.abort()
        if isinstance(exc, ssl.SSLError | TimeoutError) or "handshake is taking" in str(exc):
            self.server.handshake_failed(self.peer, exc)
        else:  # the peer went away (or a port probe closed) before a handshake
            log.debug("TLS connection from %s closed before its handshake: %r", self.peer, exc)

    def abort(self) -> None:
        if self.raw is not None:
            self.raw.abort()

    # (the socket's protocol is replaced in connection_made: these are never called)
    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class _Handoff:
    """The TLS layer's first application protocol: on a completed handshake it creates the
    router's protocol, gives it the client's identity and hands it the TLS transport (data
    that came with the handshake is delivered after, to the new protocol)."""

    def __init__(self, server: TlsServer, app_factory: Callable[[], Any]) -> None:
        self.server = server
        self.app_factory = app_factory

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        app = self.app_factory()
        if self.server.verifies_clients:
            app.client_cert = client_cert_header(transport)
        transport.set_protocol(app)
        app.connection_made(transport)

    def data_received(self, data: bytes) -> None:  # (not called: replaced first)
        pass

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        pass


def client_cert_header(transport: asyncio.BaseTransport) -> bytes | None:
    """The ``x-forwarded-client-cert`` header line for the verified client certificate of
    ``transport`` (None when the client sent none):
    ``Hash=<sha256 of the DER, hex>;SAN=<each subject alternative name>;Subject="<DN>"``."""
    sslobj = transport.get_extra_info("ssl_object")
    if sslobj is None:
        return None
    der = sslobj.getpeercert(binary_form=True)
    if not der or not sslobj.getpeercert():  # (the dict form is empty unless verified)
        return None
    # (imported here, per verified connection, not with the module: cryptography holds about
    # 8 MB of memory that a router without forwardClientCert does not need)
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    parts = [f"Hash={hashlib.sha256(der).hexdigest()}"]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        for name in san:
            parts.append(f"SAN={name.value}")
    except x509.ExtensionNotFound:
        pass
    subject = cert.subject.rfc4514_string().replace("\\", "\\\\").replace('"', '\\"')
    parts.append(f'Subject="{subject}"')
    value = ";".join(parts).encode("latin-1", "replace")
    value = value.replace(b"\r", b"").replace(b"\n", b"")
    return XFCC + b": " + value + b"\r\n"


def no_tls() -> dict[str, Any]:
    """The connection arguments of plain text (none)."""
    return {}


def pool_tls(policy: ClientPolicy) -> Callable[[], dict[str, Any]]:
    """What gives the ``loop.create_connection`` keyword arguments of each new connection of
    one client's pools: ``{}`` for plain text, else ``ssl`` and ``server_hostname`` (commonName
    with the prefix's captures; the context follows its certificate files, see
    :class:`turnout.api.ClientTls`). A pool belongs to one client, and a client has one
    policy, so a pool's connections are all TLS or all plain text."""
    cfg: ClientTlsConfig | None = policy.tls
    try:
        made = client_tls(cfg, policy.captures)
    except TlsError as e:  # (checked with the config; a file changed since)
        # never plain text instead: a context that trusts nothing fails every handshake
        log.error("client tls.%s: %s; connections to this client will fail", e.key, e.message)
        refused = {"ssl": ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), "server_hostname": "invalid"}
        return lambda: refused
    return made.kwargs if made is not None else no_tls
