"""The listening sockets of an HTTP router (:class:`ServerRuntime`) and their stats."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from turnout.api import MetricsTree

from ._stack import ServerStats
from .downstream import ServerProtocol
from .tls import TlsServer

if TYPE_CHECKING:
    from .config import HttpServerConfig
    from .runtime import HttpRouter


class HttpServerStats(ServerStats):
    """``rt/<router>/server/<ip>/<port>/...``: the stack's server stats plus connections,
    pending requests, WebSocket upgrades and open tunnels."""

    def __init__(self, metrics: MetricsTree, scope: tuple[str, ...], server: ServerRuntime) -> None:
        ServerStats.__init__(self, metrics, scope)
        metrics.gauge(*scope, "connections", fn=lambda: len(server.connections))
        metrics.gauge(*scope, "pending", fn=lambda: server.in_flight)
        #: WebSocket upgrades accepted, and the tunnels open now (tunnel.py)
        self.upgrades = metrics.counter(*scope, "upgrades")
        metrics.gauge(*scope, "tunnels", fn=lambda: len(server.tunnels))


class ServerRuntime:
    """One listening socket of the router."""

    def __init__(self, router: HttpRouter, config: HttpServerConfig, port: int) -> None:
        self.router = router
        self.config = config
        self.ip = config.ip
        self.port = port
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[ServerProtocol] = set()
        #: open WebSocket tunnels (tunnel.Tunnel): not requests, not in ``in_flight``
        self.tunnels: set[Any] = set()
        self.in_flight = 0
        self.stats: HttpServerStats = None  # type: ignore[assignment]  # set once the port is known
        self._configure(config)
        #: TLS termination (servers[].tls), see tls.py
        self.tls: TlsServer | None = TlsServer(config.tls) if config.tls is not None else None

    def adopt(self, router: HttpRouter, config: HttpServerConfig) -> None:
        """A reload: serve for ``router`` (which took over this server's router) with
        ``config`` (same address, tls and socket options); new connections are its."""
        self.router = router
        self._configure(config)

    def _configure(self, config: HttpServerConfig) -> None:
        self.config = config
        session = config.server_session
        self.idle_timeout = (
            session.idle_time_ms / 1000
            if session is not None and session.idle_time_ms
            else config.idle_timeout_ms / 1000
        )
        self.header_timeout = config.request_header_timeout_ms / 1000
        self.body_timeout = config.request_body_idle_timeout_ms / 1000
        #: the server's ``timeoutMs`` (a deadline for the response to begin), in seconds
        self.timeout: float | None = config.timeout_ms / 1000 if config.timeout_ms else None
        self.life_time: float | None = (
            session.life_time_ms / 1000 if session is not None and session.life_time_ms else None
        )
        self.max_concurrent = config.max_concurrent_requests
        self.max_call_depth = config.max_call_depth
        self.timestamp_header = (
            config.timestamp_header.encode("latin-1") if config.timestamp_header else None
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        opts = self.config.socket_options
        kwargs: dict[str, Any] = {"reuse_address": True}
        if opts is not None:
            kwargs["reuse_port"] = opts.reuse_port or None
            if opts.backlog:
                kwargs["backlog"] = opts.backlog
        # (typed Any: the protocol is an asyncio Protocol by duck typing, not by inheritance)
        factory: Any = lambda: ServerProtocol(self.router, self)  # noqa: E731
        if self.tls is not None:
            factory = self.tls.factory(factory)
        self.server = await loop.create_server(factory, self.ip, self.port, **kwargs)
        # getattr: uvloop gives a list where typeshed says tuple, and compiled code checks types
        sock = getattr(self.server, "sockets")[0]  # noqa: B009
        self.port = sock.getsockname()[1]
        if opts is None or opts.no_delay:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        scope = ("rt", self.router.label, "server", self.ip, str(self.port))
        self.stats = HttpServerStats(self.router.metrics, scope, self)
        if self.tls is not None:
            self.tls.start(self.router.metrics, scope, f"server {self.ip}:{self.port}")
