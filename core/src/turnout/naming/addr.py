"""Addresses: what a bound name resolves to (Finagle's ``Addr``).

An :class:`Addr` is one of :data:`AddrPending` (not known yet), :data:`AddrNeg` (no such
name), :class:`AddrFailed` (the discovery system could not answer) or :class:`AddrBound`
(a set of :class:`Address` es, possibly empty, plus metadata).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: metadata key of an endpoint's weight (Linkerd's name); 1.0 when absent
WEIGHT_KEY = "endpoint_addr_weight"
#: metadata key that binding adds to a leaf's Addr with its enclosing Union weight
NAMETREE_WEIGHT_KEY = "namer_nametree_weight"

_EMPTY: Mapping[str, Any] = {}


class Address:
    """One endpoint: host (an IP literal or name), port and metadata (weight and others)."""

    __slots__ = ("_hash", "host", "meta", "port")

    def __init__(self, host: str, port: int, meta: Mapping[str, Any] | None = None) -> None:
        self.host = host
        self.port = port
        self.meta = dict(meta) if meta else _EMPTY
        self._hash = hash((host, port))

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        default_port: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Address:
        """Read ``host:port`` or ``[v6]:port`` (``10.0.0.1:8080``, ``[::1]:8080``,
        ``web.example.org:80``): the host as written (no lookup), the port from 1 to 65535.

        With ``default_port`` the port may be left out: ``host``, ``[v6]`` and a bare IPv6
        literal (``::1``) get it. Without it, an IPv6 literal must be bracketed
        (``fe80::1:80`` is ambiguous). Surrounding whitespace is not allowed: strip first.

        :raises ValueError: with a message that quotes ``text`` and says what was expected.
        """
        expected = (
            "'host:port' or '[ipv6]:port'"
            if default_port is None
            else ("'host', 'host:port', '[ipv6]' or '[ipv6]:port'")
        )
        host: str
        port: str | None
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"expected {expected}, got {text!r}")
            port = rest[1:] if rest else None
        elif text.count(":") == 1:
            host, _, port = text.partition(":")
        elif ":" in text and default_port is None:
            raise ValueError(f"expected {expected}, got {text!r}: put an IPv6 address in brackets")
        else:  # a host name, an IPv4 address or (with a default port) a bare IPv6 address
            host, port = text, None
        if not host or any(c.isspace() for c in host):
            raise ValueError(f"expected {expected}, got {text!r}")
        if port is None:
            if default_port is None:
                raise ValueError(f"expected {expected}, got {text!r}: the port is missing")
            number = default_port
        elif port.isascii() and port.isdigit() and 0 < int(port) <= 65535:
            number = int(port)
        else:
            raise ValueError(f"expected {expected} with a port from 1 to 65535, got {text!r}")
        return cls(host, number, meta)

    @property
    def weight(self) -> float:
        return float(self.meta.get(WEIGHT_KEY, 1.0))

    def with_meta(self, **meta: Any) -> Address:
        return Address(self.host, self.port, {**self.meta, **meta})

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Address)
            and self.host == other.host
            and self.port == other.port
            and self.meta == other.meta
        )

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def __repr__(self) -> str:
        meta = f", {dict(self.meta)!r}" if self.meta else ""
        return f"Address({self.host!r}, {self.port}{meta})"

    def sort_key(self) -> tuple[str, int]:
        return (self.host, self.port)


class Addr:
    """Base of the four address states."""

    __slots__ = ()


class _AddrPending(Addr):
    __slots__ = ()

    def __repr__(self) -> str:
        return "AddrPending"


class _AddrNeg(Addr):
    __slots__ = ()

    def __repr__(self) -> str:
        return "AddrNeg"


AddrPending: Addr = _AddrPending()
AddrNeg: Addr = _AddrNeg()


class AddrBound(Addr):
    """A set of addresses (possibly empty) and metadata about the whole set."""

    __slots__ = ("addresses", "meta")

    def __init__(self, addresses: Iterable[Address] = (), meta: Mapping[str, Any] | None = None):
        self.addresses = frozenset(addresses)
        self.meta = dict(meta) if meta else _EMPTY

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, AddrBound)
            and self.addresses == other.addresses
            and self.meta == other.meta  # (address metadata is part of Address equality)
        )

    def __hash__(self) -> int:
        return hash(self.addresses)

    def sorted(self) -> list[Address]:
        return sorted(self.addresses, key=Address.sort_key)

    def __repr__(self) -> str:
        meta = f", {dict(self.meta)!r}" if self.meta else ""
        return f"AddrBound({self.sorted()!r}{meta})"


class AddrFailed(Addr):
    """The address set could not be determined; ``cause`` says why."""

    __slots__ = ("cause",)

    def __init__(self, cause: str | BaseException) -> None:
        self.cause = cause if isinstance(cause, str) else (str(cause) or type(cause).__name__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AddrFailed) and other.cause == self.cause

    def __hash__(self) -> int:
        return hash(self.cause)

    def __repr__(self) -> str:
        return f"AddrFailed({self.cause!r})"


def addr_json(addr: Addr) -> dict[str, Any]:
    """The Linkerd JSON form of an Addr (``/delegator.json``, ``turnout dtab bind --json``)."""
    if isinstance(addr, AddrBound):
        return {
            "type": "bound",
            "addrs": [{"ip": a.host, "port": a.port, "meta": dict(a.meta)} for a in addr.sorted()],
            "meta": dict(addr.meta),
        }
    if isinstance(addr, AddrFailed):
        return {"type": "failed", "cause": addr.cause}
    if addr is AddrNeg:
        return {"type": "neg"}
    return {"type": "pending"}
