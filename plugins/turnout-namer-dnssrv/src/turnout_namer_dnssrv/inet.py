"""``resolveInet: true``: ``/$/inet`` host names resolved over DNS, re-resolved on their TTL.

:class:`DnsInetLookup` is a :data:`turnout.api.Lookup`: it queries A and AAAA at
once and returns the addresses (IPv4 first) with the smallest TTL of the two answers, so
that :class:`~turnout.api.InetResolver` looks the name up again when that TTL runs
out (bounded by its ``min_refresh``/``max_refresh``). NXDOMAIN, or a name with neither A
nor AAAA records, raises ``socket.gaierror(EAI_NONAME)`` (the name is ``Neg``); any other
failure, of either query, raises an ``OSError`` (the last good addresses stay).

``localhost`` and ``*.localhost`` never go to DNS (RFC 6761): they are passed to the lookup
that was in place before (the system resolver by default).

:func:`install` puts a lookup on a resolver and returns the :class:`Installed` handle whose
``uninstall()`` puts the previous one back, also when another lookup was installed on top
of it meanwhile.
"""

from __future__ import annotations

import socket

import dns.exception
import dns.name
import dns.rdatatype
import dns.resolver
from turnout.api import InetResolver, Lookup, ip_literal

from .client import DnsClient, DnsError, gather

#: errno of "the name exists but has no address" (not on every platform)
EAI_NODATA = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)


def is_localhost(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


class DnsInetLookup:
    """A and AAAA lookups through ``client``; ``fallback`` answers ``localhost`` names."""

    def __init__(self, client: DnsClient, fallback: Lookup) -> None:
        self.client = client
        self.fallback = fallback

    async def __call__(self, host: str) -> tuple[list[str], float | None]:
        literal = ip_literal(host)
        if literal is not None:
            return [literal], None
        if is_localhost(host):
            return await self.fallback(host)
        try:
            name = dns.name.from_text(host)
        except (dns.exception.DNSException, UnicodeError, ValueError):
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: not a valid DNS name") from None
        try:
            a, aaaa = await gather(
                self.client.query(name, dns.rdatatype.A),
                self.client.query(name, dns.rdatatype.AAAA),
            )
        except dns.resolver.NXDOMAIN:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: NXDOMAIN") from None
        except OSError:
            raise
        except Exception as e:  # the inet resolver only handles OSError: never let one out
            raise DnsError(f"{type(e).__name__}: {e}") from e
        addresses: list[str] = []
        ttls: list[int] = []
        for answer in (a, aaaa):
            if answer.rrset is None:
                continue
            ttls.append(answer.chaining_result.minimum_ttl)
            for rdata in answer.rrset:
                address = str(rdata.address)
                if address not in addresses:
                    addresses.append(address)
        if not addresses:
            raise socket.gaierror(EAI_NODATA, f"{host}: no A or AAAA record")
        return addresses, float(min(ttls))


class Installed:
    """A lookup installed on a resolver by :func:`install`."""

    def __init__(self, resolver: InetResolver, lookup: DnsInetLookup) -> None:
        self.resolver = resolver
        self.lookup = lookup

    def uninstall(self) -> None:
        """Put back the lookup this one replaced (idempotent). If another
        :class:`DnsInetLookup` was installed on top of this one, it falls back to ours'
        fallback from now on; otherwise the resolver's lookup is left alone."""
        current = self.resolver.lookup
        if current is self.lookup:
            self.resolver.use(self.lookup.fallback)
            return
        while isinstance(current, DnsInetLookup):
            if current.fallback is self.lookup:
                current.fallback = self.lookup.fallback
                return
            current = current.fallback


def install(resolver: InetResolver, client: DnsClient) -> Installed:
    """Resolve ``resolver``'s host names with ``client`` from now on."""
    lookup = DnsInetLookup(client, resolver.lookup)
    resolver.use(lookup)
    return Installed(resolver, lookup)
