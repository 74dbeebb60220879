"""The Consul API client of the namer: python-consul2's asyncio client (``consul.aio``), with
its HTTP layer replaced through its own extension point (``Consul.http_connect``).

Why not ``consul.aio.Consul`` as it comes (python-consul2 0.1.5):

- its ``HTTPClient`` opens a new ``TCPConnector`` and ``ClientSession`` for every request
  (no keep-alive: a TCP connection per blocking query), and its ``__del__`` always emits
  ``ResourceWarning: Unclosed connector``, even when nothing leaked;
- aiohttp's default total timeout (300 s) would cut a Consul blocking query (default wait
  5 min plus jitter) and cannot be set through the library;
- ``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_TOKEN``, ``CONSUL_HTTP_SSL`` and
  ``CONSUL_HTTP_SSL_VERIFY`` from the environment silently override the host, port, token,
  scheme and certificate verification given in the configuration;
- its TLS settings are aiohttp's ``verify_ssl`` flag only: no CA file, client certificate or
  name to verify other than the host connected to;
- ``Health.service`` has no consistency-mode parameter.

:class:`ConsulClient` keeps the library's API classes, parameter building and response
callbacks (``catalog.service``, ``agent.self``, ``CB.json``) and gives them one aiohttp
session per namer (keep-alive, closed by :meth:`ConsulClient.close`), a read timeout
derived from the blocking wait, the configured address and token, HTTPS with the namer's
:class:`ssl.SSLContext` (built once from the ``tls`` block) and the name to verify
(``commonName``), and a health query that sends the consistency mode.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import warnings
from typing import Any

import aiohttp
import consul.aio
import consul.base

__all__ = ["ConsulClient", "TokenBucket", "consistency_params"]


class _SessionHTTPClient(consul.aio.HTTPClient):  # type: ignore[misc]  # python-consul: untyped
    """python-consul2's aio HTTP client over one long-lived aiohttp session."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: aiohttp.ClientTimeout,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        scheme = "https" if ssl_context is not None else "http"
        consul.base.HTTPClient.__init__(self, host, port, scheme)
        self._loop = asyncio.get_running_loop()
        self._server_hostname = server_hostname if ssl_context is not None else None
        # limit=0: one connection per blocking query, however many services are watched
        connector = aiohttp.TCPConnector(
            limit=0, ssl=ssl_context if ssl_context is not None else True
        )
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)

    async def _request(
        self,
        callback: Any,
        method: str,
        uri: str,
        data: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        try:
            async with self._session.request(
                method, uri, data=data, headers=headers, server_hostname=self._server_hostname
            ) as resp:
                content = await resp.read()
                body = content.decode("utf-8", errors="replace")
                status, resp_headers = resp.status, resp.headers
        except Exception:
            if self._session.closed:  # closed under the request: the namer is closing
                raise asyncio.CancelledError from None
            raise
        if status == 599:
            raise consul.base.Timeout
        return callback(consul.base.Response(status, resp_headers, body, content))

    def __del__(self) -> None:  # the library's warns unconditionally; close() releases all
        pass

    @property
    def closed(self) -> bool:
        return bool(self._session.closed)

    async def close(self) -> None:
        if not self._session.closed:
            await self._session.close()


class _Consul(consul.aio.Consul):  # type: ignore[misc]  # python-consul is untyped
    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str | None,
        consistency: str,
        timeout: aiohttp.ClientTimeout,
        ssl_context: ssl.SSLContext | None,
        server_hostname: str | None,
    ) -> None:
        self._address = (host, port)
        self._timeout = timeout
        self._tls = (ssl_context, server_hostname)
        with warnings.catch_warnings():
            # building it warns about API families we never call (legacy ACL, discovery chain)
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"consul\.")
            super().__init__(
                host=host,
                port=port,
                token=token,
                consistency=consistency,
                loop=asyncio.get_running_loop(),
            )
        self.token = token  # python-consul2 lets CONSUL_HTTP_TOKEN override the argument

    def http_connect(
        self, host: Any, port: Any, scheme: Any, verify: bool = True, cert: Any = None, **kw: Any
    ) -> Any:
        # not CONSUL_HTTP_ADDR / CONSUL_HTTP_SSL*: the configuration says where and how
        host, port = self._address
        ssl_context, server_hostname = self._tls
        return _SessionHTTPClient(
            host,
            port,
            timeout=self._timeout,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
        )


def consistency_params(mode: str) -> list[tuple[str, str]]:
    """Query parameters of a consistency mode (``default`` sends none)."""
    return [(mode, "1")] if mode in ("stale", "consistent") else []


class ConsulClient:
    """What the namer asks Consul; construct it inside a running event loop.

    :param wait: the blocking ``wait`` sent with every indexed query, in seconds.
    :param ssl_context: talk HTTPS with this context (plain HTTP when None).
    :param server_hostname: the name the agent's certificate must be valid for (and SNI);
        None: the host connected to.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: str | None = None,
        consistency: str = "default",
        wait: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.consistency = consistency
        self.wait = wait
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        # Consul answers a blocking query within wait + wait/16; a connection that says
        # nothing for longer than that (plus slack) is dead
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=wait * 17 / 16 + 10)
        self.api = _Consul(
            host,
            port,
            token=token,
            consistency=consistency,
            timeout=timeout,
            ssl_context=ssl_context,
            server_hostname=server_hostname,
        )
        self.requests = 0

    @property
    def wait_param(self) -> str:
        return f"{round(self.wait * 1000)}ms"

    @property
    def closed(self) -> bool:
        return bool(self.api.http.closed)

    async def agent_self(self) -> dict[str, Any]:
        """``GET /v1/agent/self``."""
        self.requests += 1
        result: dict[str, Any] = await self.api.agent.self()
        return result

    async def catalog_service(
        self, service: str, *, dc: str, tag: str | None, index: int
    ) -> tuple[str | None, list[dict[str, Any]] | None]:
        """``GET /v1/catalog/service/<service>`` (blocking when ``index`` > 0): (index
        header, nodes)."""
        self.requests += 1
        result: tuple[str | None, list[dict[str, Any]] | None] = await self.api.catalog.service(
            service,
            index=str(index) if index > 0 else None,
            wait=self.wait_param,
            tag=tag,
            dc=dc,
        )
        return result

    async def health_service(
        self, service: str, *, dc: str, tag: str | None, index: int, passing: bool
    ) -> tuple[str | None, list[dict[str, Any]] | None]:
        """``GET /v1/health/service/<service>`` (blocking when ``index`` > 0): (index
        header, entries). Built like python-consul2's ``health.service``, plus the
        consistency mode, through the same HTTP client and response callback."""
        params: list[tuple[str, str]] = [("dc", dc)]
        if tag is not None:
            params.append(("tag", tag))
        if index > 0:
            params += [("index", str(index)), ("wait", self.wait_param)]
        params.append(("passing", "1" if passing else "0"))
        params += consistency_params(self.consistency)
        headers = {"X-Consul-Token": self.token} if self.token else {}
        self.requests += 1
        result: tuple[str | None, list[dict[str, Any]] | None] = await self.api.http.get(
            consul.base.CB.json(index=True),
            path=f"/v1/health/service/{service}",
            params=params,
            headers=headers,
        )
        return result

    async def close(self) -> None:
        """Close the session, aborting its connections (a query in progress then raises
        CancelledError, not an error: see :meth:`ConsulNamer.close`). Idempotent."""
        await self.api.http.close()


class TokenBucket:
    """Rate limit of a blocking-query loop (Consul's docs: "a token bucket with a small
    burst"): ``burst`` requests at once, then ``rate`` per second."""

    def __init__(self, rate: float = 5.0, burst: int = 2) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = time.monotonic()

    def delay(self) -> float:
        """Take a token; how long to wait before using it (0 when one was available)."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    async def acquire(self) -> None:
        wait = self.delay()
        if wait > 0:
            await asyncio.sleep(wait)
