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

:func:`open_connection` is what protocols connect to an endpoint with: the endpoint's host
name (a namer may give one, ``web.internal 8080`` in an ``io.l5d.fs`` file) is resolved
first, so that a resolver failure says so (:class:`ResolveError`: ``cannot resolve host
web.internal: Name or service not known``) instead of ending as a bare ``TimeoutError``, and
no resolver future is left behind to log ``Future exception was never retrieved``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

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


def classify_error(error: BaseException, host: str | None = None) -> Addr:
    """What a failed lookup of ``host`` means: ``AddrNeg`` for an unknown host, else
    ``AddrFailed`` saying why (``cannot resolve host web: Temporary failure in name
    resolution``)."""
    if isinstance(error, socket.gaierror) and error.errno in (
        socket.EAI_NONAME,
        getattr(socket, "EAI_NODATA", socket.EAI_NONAME),
    ):
        return AddrNeg
    if host is None:
        return AddrFailed(f"{type(error).__name__}: {error}")
    return AddrFailed(f"cannot resolve host {host}: {_reason(error)}")


def _reason(error: BaseException) -> str:
    """An error's text without Python's ``[Errno -3]`` prefix."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__


class ResolveError(OSError):
    """A host name could not be resolved; ``str()`` names the host and the reason.

    ``errno`` is the resolver's code (``socket.EAI_*``), or ``ETIMEDOUT`` when no answer came
    in time.
    """

    def __init__(self, host: str, reason: str, code: int | None = None) -> None:
        super().__init__(f"cannot resolve host {host}: {reason}")
        self.host = host
        self.errno = code


async def resolve_for_connect(host: str, timeout: float | None = None) -> list[str]:
    """The addresses to connect to for ``host`` (itself when it is an IP literal), resolved
    with the loop's resolver within ``timeout`` seconds. Raises :class:`ResolveError`."""
    literal = ip_literal(host)
    if literal is not None:
        return [literal]
    try:
        async with asyncio.timeout(timeout):
            addresses = await resolve_host(host)
    except TimeoutError:
        raise ResolveError(host, f"no answer within {timeout:g}s", errno.ETIMEDOUT) from None
    except OSError as e:
        raise ResolveError(host, _reason(e), e.errno) from None
    if not addresses:  # (getaddrinfo does not answer an empty list, but a patched one might)
        raise ResolveError(host, "no address", getattr(socket, "EAI_NODATA", socket.EAI_NONAME))
    return addresses


async def open_connection(
    factory: Callable[[], Any], host: str, port: int, timeout: float, **kwargs: Any
) -> tuple[asyncio.Transport, Any]:
    """``loop.create_connection(factory, host, port, **kwargs)`` within ``timeout`` seconds,
    the host name resolved first (within the same ``timeout``).

    - A host that cannot be resolved raises :class:`ResolveError` (an ``OSError``) naming it
      and the resolver's reason, also when the resolver is too slow.
    - A connection not established in time raises ``TimeoutError`` saying so.
    - Otherwise the error of the last address tried (``ConnectionRefusedError``...).

    Resolving separately also means that nothing is left running when the connection
    attempt is cancelled: uvloop's ``create_connection`` cancelled while it resolves leaves
    its resolver future behind, which logs ``Future exception was never retrieved`` when the
    lookup fails (MagicStack/uvloop#437). With ``ssl``, the certificate is checked against
    ``host`` (``server_hostname``), not against the address connected to.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    addresses = await resolve_for_connect(host, timeout)
    if kwargs.get("ssl") and kwargs.get("server_hostname") is None and ip_literal(host) is None:
        kwargs["server_hostname"] = host
    error: OSError | None = None
    for address in addresses:
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            async with asyncio.timeout(remaining):
                transport, protocol = await loop.create_connection(factory, address, port, **kwargs)
            return transport, protocol
        except TimeoutError:
            break
        except OSError as e:
            error = e
    if error is not None and loop.time() < deadline:
        raise error
    raise TimeoutError(f"no connection within {timeout:g}s")


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

            def stop() -> None:
                task.cancel()

            return stop

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
                    var.update(classify_error(e, host))
            if fixed and isinstance(var.value, AddrBound):
                return
            await asyncio.sleep(delay)

    @staticmethod
    def _resolve_blocking(host: str, port: int) -> Addr:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except OSError as e:
            return classify_error(e, host)
        return AddrBound(Address(str(i[4][0]), port) for i in infos)
