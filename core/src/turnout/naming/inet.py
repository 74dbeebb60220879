"""Address sets for ``host:port`` names (``/$/inet``), re-resolved while in use.

IP literals (``127.0.0.1``, ``127.1``, ``::1``) are bound at once. Host names are resolved
with the event loop's resolver when first observed and again every ``refresh`` seconds while
observed (Finagle's ``inet`` polls too); ``fixedinet`` resolves once. An unknown host is
``AddrNeg``; any other resolver error is ``AddrFailed``; a failure after a good answer keeps
the last good addresses (a flapping resolver must not empty a live set).

A plugin may replace how host names are looked up (:meth:`InetResolver.use`): a lookup
returns the addresses and, when it knows it, how long they stay valid (a DNS TTL); the next
lookup then happens when that time is up (within ``min_refresh``..``max_refresh``) instead of
every ``refresh`` seconds.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

from .addr import Addr, AddrBound, Address, AddrFailed, AddrNeg, AddrPending
from .var import Stop, Var

REFRESH_SECONDS = 5.0


def ip_literal(host: str) -> str | None:
    """The canonical form of an IPv4/IPv6 literal (``127.1`` → ``127.0.0.1``), or None."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    try:  # inet_aton accepts the short forms Java does (127.1, 10.1.2)
        if host and host[0].isdigit() and all(c.isdigit() or c == "." for c in host):
            return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        pass
    return None


async def resolve_host(host: str) -> list[str]:
    """All addresses of ``host`` (IPv4 first), via the loop's resolver. Raises OSError."""
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    seen: dict[str, None] = {}
    for *_, sockaddr in sorted(infos, key=lambda i: i[0] != socket.AF_INET):
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def classify_error(error: BaseException) -> Addr:
    if isinstance(error, socket.gaierror) and error.errno in (
        socket.EAI_NONAME,
        getattr(socket, "EAI_NODATA", socket.EAI_NONAME),
    ):
        return AddrNeg
    return AddrFailed(f"{type(error).__name__}: {error}")


#: a host-name lookup: the addresses (raise OSError, or socket.gaierror EAI_NONAME for an
#: unknown host) and how many seconds they stay valid (None: unknown)
Lookup = Callable[[str], Awaitable[tuple[list[str], float | None]]]


async def system_lookup(host: str) -> tuple[list[str], float | None]:
    """The default lookup: the event loop's resolver (getaddrinfo), no TTL."""
    return await resolve_host(host), None


_DEFAULT: list[InetResolver] = []


def default_resolver() -> InetResolver:
    """The process-wide resolver shared by ``/$/inet`` and the namers built on it."""
    if not _DEFAULT:
        _DEFAULT.append(InetResolver())
    return _DEFAULT[0]


class InetResolver:
    """Shares one lazily resolving ``Var[Addr]`` per (host, port, fixed)."""

    def __init__(self, refresh: float = REFRESH_SECONDS) -> None:
        self.refresh = refresh
        self.lookup: Lookup = system_lookup
        #: bounds on a TTL-driven refresh (a TTL of 0 must not mean a busy loop)
        self.min_refresh = 0.5
        self.max_refresh = 300.0
        self._vars: dict[tuple[str, int, bool], Var[Addr]] = {}

    def use(self, lookup: Lookup) -> Lookup:
        """Resolve host names with ``lookup`` from now on (watches pick it up at their next
        refresh); returns the lookup it replaces (to restore it later)."""
        previous, self.lookup = self.lookup, lookup
        return previous

    def addr(self, host: str, port: int, *, fixed: bool = False) -> Var[Addr]:
        key = (host, port, fixed)
        var = self._vars.get(key)
        if var is None:
            literal = ip_literal(host) if host else "127.0.0.1"
            if literal is not None:
                var = Var(AddrBound([Address(literal, port)]))
            else:
                var = Var(AddrPending, start=self._starter(host, port, fixed))
            if len(self._vars) > 10_000:
                self._vars = {k: v for k, v in self._vars.items() if v.observed}
            self._vars[key] = var
        return var

    def _starter(self, host: str, port: int, fixed: bool) -> Callable[[Var[Addr]], Stop]:
        def start(var: Var[Addr]) -> Stop:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (a synchronous caller): resolve right here
                var.update(self._resolve_blocking(host, port))
                return lambda: None
            task = loop.create_task(self._poll(var, host, port, fixed))
            return task.cancel

        return start

    async def _poll(self, var: Var[Addr], host: str, port: int, fixed: bool) -> None:
        while True:
            delay = self.refresh
            try:
                hosts, ttl = await self.lookup(host)
                var.update(AddrBound(Address(h, port) for h in hosts))
                if ttl is not None:
                    delay = min(max(ttl, self.min_refresh), self.max_refresh)
            except Exception as e:  # any lookup failure (a plugin's lookup may raise anything)
                if not isinstance(var.value, AddrBound):  # keep the last good answer
                    var.update(classify_error(e))
            if fixed and isinstance(var.value, AddrBound):
                return
            await asyncio.sleep(delay)

    @staticmethod
    def _resolve_blocking(host: str, port: int) -> Addr:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as e:
            return classify_error(e)
        return AddrBound(Address(str(i[4][0]), port) for i in infos)
