"""DNS queries on dnspython's asyncio resolver: no cache, explicit timeouts, EDNS0.

:class:`DnsClient` builds its resolver at the first query (so that a configuration is
checked without touching the network): the ``dnsHosts`` servers (host names among them are
resolved once with the system resolver), or the ``nameserver`` lines of
``/etc/resolv.conf`` when there are none. Names are always queried as absolute names (no
search list).

Outcomes: an :class:`~dns.resolver.Answer` (``rrset`` None when the name exists without
records of that type), :class:`~dns.resolver.NXDOMAIN` (the name does not exist), or
:class:`DnsError` (an ``OSError``) for everything else: SERVFAIL, REFUSED, timeouts, servers
that cannot be reached.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from .config import parse_dns_host

RESOLV_CONF = "/etc/resolv.conf"
#: EDNS0 UDP payload size (DNS flag day 2020); bigger answers come over TCP (truncation)
EDNS_PAYLOAD = 1232
#: one try of one server never waits longer than this (the lifetime bounds the whole query)
MAX_ATTEMPT_SECONDS = 2.0

T = TypeVar("T")


class DnsError(OSError):
    """A DNS query failed: no server gave an answer (SERVFAIL, REFUSED, timeout, down)."""


class DnsClient:
    """Queries the configured servers (see the module docstring).

    :param dns_hosts: ``host`` or ``host:port`` (``[v6]:port``) entries; empty: resolv.conf.
    :param timeout: seconds one query may take, every server and retry included.
    """

    def __init__(
        self, dns_hosts: Sequence[str], timeout: float, *, resolv_conf: str = RESOLV_CONF
    ) -> None:
        self.dns_hosts = list(dns_hosts)
        self.timeout = timeout
        self.resolv_conf = resolv_conf
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._lock = asyncio.Lock()
        #: queries sent (one per name and type, retries not counted)
        self.queries = 0
        #: the servers in use, ``ip:port`` (empty until the first query)
        self.servers: list[str] = []

    async def resolver(self) -> dns.asyncresolver.Resolver:
        """The resolver, built at the first call (raises :class:`DnsError` when no server
        can be determined; the next call tries again)."""
        if self._resolver is not None:
            return self._resolver
        async with self._lock:
            if self._resolver is None:
                servers = await self._servers()
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [
                    dns.nameserver.Do53Nameserver(ip, port) for ip, port in servers
                ]
                resolver.cache = None
                resolver.lifetime = self.timeout
                resolver.timeout = min(self.timeout, MAX_ATTEMPT_SECONDS)
                resolver.retry_servfail = False
                resolver.use_search_by_default = False
                resolver.use_edns(0, 0, EDNS_PAYLOAD)
                self.servers = [f"[{ip}]:{p}" if ":" in ip else f"{ip}:{p}" for ip, p in servers]
                self._resolver = resolver
        return self._resolver

    async def _servers(self) -> list[tuple[str, int]]:
        if not self.dns_hosts:
            try:
                system = dns.resolver.Resolver(filename=self.resolv_conf, configure=True)
            except (dns.exception.DNSException, OSError) as e:
                raise DnsError(f"no DNS server in {self.resolv_conf}: {e}") from None
            return [(str(ns), 53) for ns in system.nameservers]
        loop = asyncio.get_running_loop()
        out: list[tuple[str, int]] = []
        for entry in self.dns_hosts:
            host, port = parse_dns_host(entry)
            if _is_ip(host):
                out.append((host, port))
                continue
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
            except OSError as e:
                raise DnsError(f"cannot resolve DNS server {host!r}: {e}") from None
            for info in sorted(infos, key=lambda i: i[0] != socket.AF_INET):
                ip = str(info[4][0])
                if (ip, port) not in out:
                    out.append((ip, port))
        return out

    async def query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.resolver.Answer:
        """One query (see the module docstring for the outcomes)."""
        resolver = await self.resolver()
        self.queries += 1
        try:
            # dnspython may sleep past its lifetime between retries: this bound is exact
            async with asyncio.timeout(self.timeout):
                return await resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            raise
        except dns.exception.DNSException as e:
            raise DnsError(f"{type(e).__name__}: {e}") from None
        except TimeoutError:
            servers = ", ".join(self.servers)
            raise DnsError(
                f"Timeout: no answer to {name} {dns.rdatatype.to_text(rdtype)} from {servers} "
                f"within {self.timeout:g}s"
            ) from None

    async def timed_query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> tuple[dns.resolver.Answer | None, float]:
        """:meth:`query` with NXDOMAIN as None, and how long it took (milliseconds)."""
        start = time.monotonic()
        try:
            answer: dns.resolver.Answer | None = await self.query(name, rdtype)
        except dns.resolver.NXDOMAIN:
            answer = None
        return answer, (time.monotonic() - start) * 1000


async def gather(*aws: Awaitable[T]) -> list[T]:
    """Run ``aws`` concurrently; the first failure cancels the others and is raised as is
    (not wrapped in an ExceptionGroup). Nothing keeps running after it returns."""
    if len(aws) == 1:
        return [await aws[0]]
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(a)) for a in aws]
    except BaseExceptionGroup as eg:
        first: BaseException = eg
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [t.result() for t in tasks]


async def _awaited(aw: Awaitable[T]) -> T:
    return await aw


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True
