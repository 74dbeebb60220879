"""Linkerd's utility namers under ``/$/``: path rewrites and the HTTP status namer.

Each is a :class:`~turnout.naming.Namer` registered by name through
``turnout_register_global_namers`` (Linkerd reached them by JVM class name):

==================================  ==========================================================
``io.buoyant.rinet``                ``/<port>/<host>/rest`` → ``<host>:<port>`` (id keeps rinet)
``io.buoyant.hostportPfx``          ``/<pfx>/<host>:<port>/rest`` → ``/<pfx>/<host>/<port>/rest``
``io.buoyant.porthostPfx``          ``/<pfx>/<host>:<port>/rest`` → ``/<pfx>/<port>/<host>/rest``
``io.buoyant.http.anyMethod``       ``/<METHOD>/rest`` → ``/rest``
``io.buoyant.http.anyMethodPfx``    ``/<pfx>/<METHOD>/rest`` → ``/<pfx>/rest``
``io.buoyant.http.anyHost``         ``/<host>/rest`` → ``/rest``
``io.buoyant.http.anyHostPfx``      ``/<pfx>/<host>/rest`` → ``/<pfx>/rest``
``io.buoyant.http.subdomainOf``     ``/<domain>/<sub.domain>/rest`` → ``/<sub>/rest``
``io.buoyant.http.subdomainOfPfx``  ``/<domain>/<pfx>/<sub.domain>/rest`` → ``/<pfx>/<sub>/rest``
``io.buoyant.http.domainToPath``    ``/<a.b.c>/rest`` → ``/c/b/a/rest``
``io.buoyant.http.domainToPathPfx`` ``/<pfx>/<a.b.c>/rest`` → ``/<pfx>/c/b/a/rest``
``io.buoyant.http.status``          ``/<code>/...`` → a destination that answers ``<code>``
==================================  ==========================================================

A name that does not have the expected shape is ``Neg``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..hookspecs import hookimpl
from ..naming import (
    Activity,
    Addr,
    AddrBound,
    Address,
    Leaf,
    NameBound,
    Namer,
    NameTree,
    Neg,
    Path,
    Var,
)
from ..naming.inet import default_resolver
from ..naming.namer import Name

_HOST = re.compile(r"[A-Za-z0-9.:_-]+")
_METHOD = re.compile(r"[A-Z]+")
_DNS_LABEL = re.compile(r"[a-z0-9][-a-z0-9]*[a-z0-9]?")

#: address metadata key marking the synthetic endpoint of ``io.buoyant.http.status``
STATUS_META = "turnout.http.status"

Rewrite = Callable[[list[str], Path], Path | None]


class RewritingNamer(Namer):
    """A namer that rewrites a path by a function of its first ``width`` labels."""

    def __init__(self, width: int, rewrite: Rewrite) -> None:
        self.width = width
        self.rewrite = rewrite

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        if len(path) < self.width:
            return Activity.of(Neg)
        try:
            labels = [label.decode("utf-8") for label in path.take(self.width)]
        except UnicodeDecodeError:
            return Activity.of(Neg)
        result = self.rewrite(labels, path.drop(self.width))
        return Activity.of(Neg if result is None else Leaf(result))


def _host_port(text: str) -> tuple[str, str] | None:
    parts = text.split(":")
    if len(parts) == 2 and parts[0] and _DNS_LABEL.fullmatch(parts[1]) and len(parts[1]) <= 63:
        return parts[0], parts[1]
    return None


def _subdomain(domain: str, host: str) -> str | None:
    host = host.split(":", 1)[0] if host.find(":") > 0 else host
    suffix = "." + domain
    if host.endswith(suffix) and len(host) > len(suffix):
        return host[: -len(suffix)]
    return None


def _is(pattern: re.Pattern[str], text: str) -> bool:
    return pattern.fullmatch(text) is not None


def _hostport(labels: list[str], rest: Path) -> Path | None:
    hp = _host_port(labels[1])
    return Path.of(labels[0], hp[0], hp[1]) + rest if hp else None


def _porthost(labels: list[str], rest: Path) -> Path | None:
    hp = _host_port(labels[1])
    return Path.of(labels[0], hp[1], hp[0]) + rest if hp else None


def _any_method(labels: list[str], rest: Path) -> Path | None:
    return rest if _is(_METHOD, labels[0]) else None


def _any_method_pfx(labels: list[str], rest: Path) -> Path | None:
    return Path.of(labels[0]) + rest if _is(_METHOD, labels[1]) else None


def _any_host(labels: list[str], rest: Path) -> Path | None:
    return rest if _is(_HOST, labels[0]) else None


def _any_host_pfx(labels: list[str], rest: Path) -> Path | None:
    return Path.of(labels[0]) + rest if _is(_HOST, labels[1]) else None


def _subdomain_of(labels: list[str], rest: Path) -> Path | None:
    domain, host = labels
    if not (_is(_HOST, domain) and _is(_HOST, host)):
        return None
    sub = _subdomain(domain, host)
    return Path.of(sub) + rest if sub else None


def _subdomain_of_pfx(labels: list[str], rest: Path) -> Path | None:
    domain, pfx, host = labels
    if not (_is(_HOST, domain) and _is(_HOST, host)):
        return None
    sub = _subdomain(domain, host)
    return Path.of(pfx, sub) + rest if sub else None


def _domain_to_path(labels: list[str], rest: Path) -> Path | None:
    host = labels[0]
    if not _is(_HOST, host) or "" in host.split("."):
        return None
    return Path.of(*reversed(host.split("."))) + rest


def _domain_to_path_pfx(labels: list[str], rest: Path) -> Path | None:
    pfx, host = labels
    if not _is(_HOST, host) or "" in host.split("."):
        return None
    return Path.of(pfx, *reversed(host.split("."))) + rest


class RinetNamer(Namer):
    """``/$/io.buoyant.rinet/<port>/<host>/rest``: ``<host>:<port>`` (port first, so that a
    dtab can fix the port and vary the host), bound with id ``/$/io.buoyant.rinet/<port>/<host>``
    as in Linkerd, so that client prefixes like ``/$/io.buoyant.rinet/443/{host}`` match."""

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        if len(path) < 2:
            return Activity.of(Neg)
        try:
            port_text, host = path[0].decode(), path[1].decode()
        except UnicodeDecodeError:
            return Activity.of(Neg)
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            return Activity.of(Neg)
        addr = default_resolver().addr(host, int(port_text))
        bound_id = Path.of("$", "io.buoyant.rinet") + path.take(2)
        return Activity.of(Leaf(NameBound(bound_id, addr, path.drop(2))))


class StatusNamer(Namer):
    """``/$/io.buoyant.http.status/<code>``: binds to a destination that answers ``<code>``.

    The bound name carries one synthetic address whose metadata holds the status; protocol
    clients answer such requests themselves without connecting anywhere.
    """

    def __init__(self) -> None:
        self._vars: dict[int, Var[Addr]] = {}

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        if not path or not path[0].isdigit():
            return Activity.of(Neg)
        code = int(path[0])
        if not 100 <= code <= 599:
            return Activity.of(Neg)
        var = self._vars.get(code)
        if var is None:
            address = Address("0.0.0.0", code, {STATUS_META: code})
            var = self._vars[code] = Var(AddrBound([address]))
        bound = NameBound(Path.of("$", "io.buoyant.http.status", str(code)), var, path.drop(1))
        return Activity.of(Leaf(bound))


@hookimpl
def turnout_register_global_namers() -> dict[str, Namer]:
    return {
        "io.buoyant.rinet": RinetNamer(),
        "io.buoyant.hostportPfx": RewritingNamer(2, _hostport),
        "io.buoyant.porthostPfx": RewritingNamer(2, _porthost),
        "io.buoyant.http.anyMethod": RewritingNamer(1, _any_method),
        "io.buoyant.http.anyMethodPfx": RewritingNamer(2, _any_method_pfx),
        "io.buoyant.http.anyHost": RewritingNamer(1, _any_host),
        "io.buoyant.http.anyHostPfx": RewritingNamer(2, _any_host_pfx),
        "io.buoyant.http.subdomainOf": RewritingNamer(2, _subdomain_of),
        "io.buoyant.http.subdomainOfPfx": RewritingNamer(3, _subdomain_of_pfx),
        "io.buoyant.http.domainToPath": RewritingNamer(1, _domain_to_path),
        "io.buoyant.http.domainToPathPfx": RewritingNamer(2, _domain_to_path_pfx),
        "io.buoyant.http.status": StatusNamer(),
    }
