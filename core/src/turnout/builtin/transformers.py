"""Built-in transformers (Linkerd's ``io.l5d.*`` transformers), listed under ``transformers:``
of an interpreter or a namer: ``io.l5d.localhost``, ``io.l5d.specificHost``, ``io.l5d.port``,
``io.l5d.replace`` and ``io.l5d.const``. See :mod:`turnout.naming.transformer`."""

from __future__ import annotations

import ipaddress
import logging
import shutil
import socket
import subprocess
from collections.abc import Iterable
from typing import Any

from ..config.model import TransformerConfig
from ..config.schema import option
from ..context import BuildContext
from ..hookspecs import hookimpl
from ..naming import (
    Activity,
    ConfiguredNamersInterpreter,
    Dtab,
    NameTree,
    Path,
    State,
)
from ..naming.addr import Addr, AddrBound, Address, AddrNeg
from ..naming.delegate import NOP, DNode
from ..naming.namer import NameBound
from ..naming.transformer import AddrTransformer, NameTreeTransformer, dnode_of, replace_leaves
from ..naming.var import Ok, not_ok

log = logging.getLogger("turnout.transformer")

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(host: str) -> IP | None:
    text = host.strip("[]").split("%")[0]
    ip: IP
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        # the IPv4 shorthands getaddrinfo and Java accept ("127.1", as Linkerd's own
        # examples write endpoints), which ipaddress refuses
        if not text or not all(c.isdigit() or c in ".xXabcdefABCDEF" for c in text):
            return None
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class HostFilter(AddrTransformer):
    """Keeps the addresses whose host is one of ``ips`` (or, for a host that is a name, one of
    ``names``); an address set left empty becomes ``Neg``, as in Linkerd."""

    def __init__(
        self,
        prefix: Path,
        name: str,
        ips: Iterable[IP],
        names: Iterable[str] = (),
        *,
        loopback: bool = False,
    ) -> None:
        super().__init__(prefix, name)
        self.ips = frozenset(ips)
        self.names = frozenset(n.lower() for n in names)
        self.loopback = loopback

    def keeps(self, address: Address) -> bool:
        ip = _ip(address.host)
        if ip is None:
            return address.host.lower() in self.names
        return ip in self.ips or (self.loopback and ip.is_loopback)

    def map_addr(self, addr: Addr) -> Addr:
        if not isinstance(addr, AddrBound):
            return addr
        kept = [a for a in addr.addresses if self.keeps(a)]
        if not kept:
            return AddrNeg
        return AddrBound(kept, addr.meta)


class PortTransformer(AddrTransformer):
    """Replaces the port of every address with ``port``."""

    def __init__(self, prefix: Path, name: str, port: int) -> None:
        super().__init__(prefix, name)
        self.port = port

    def map_addr(self, addr: Addr) -> Addr:
        if not isinstance(addr, AddrBound):
            return addr
        return AddrBound((Address(a.host, self.port, a.meta) for a in addr.addresses), addr.meta)


class ReplaceTransformer(NameTreeTransformer):
    """Replaces every bound name of a tree with the binding of ``path`` (ids ``prefix ++ path``);
    a tree without bound names (``~``, ``$``, ``!``) stays as it is. ``const`` replaces the
    whole tree, whatever it is."""

    def __init__(
        self, prefix: Path, name: str, path: Path, binder: Any, *, const: bool = False
    ) -> None:
        super().__init__(prefix, name)
        self.path = path
        self.const = const
        self._binder = binder
        self._bound: Activity[NameTree[NameBound]] | None = None
        self._names: dict[int, NameBound] = {}

    def _rename(self, bound: NameBound) -> NameBound:
        key = id(bound.addr)
        out = self._names.get(key)
        if out is None or out.addr is not bound.addr or out.residual != bound.residual:
            if len(self._names) > 1_000:
                self._names.clear()
            out = self._names[key] = NameBound(self.prefix + self.path, bound.addr, bound.residual)
        return out

    def replacement(self) -> State[NameTree[NameBound]]:
        if self._bound is None:
            self._bound = self._binder.bind(Dtab.empty, self.path)
        state = self._bound.sample()
        if isinstance(state, Ok):
            return Ok(state.value.map(self._rename))
        return state

    def transform(self, tree: NameTree[NameBound]) -> State[NameTree[NameBound]]:
        state = self.replacement()
        if not isinstance(state, Ok) or self.const:
            return state
        return Ok(replace_leaves(tree, state.value))

    def transform_delegate(self, node: DNode) -> State[DNode]:
        if not self.const:
            return super().transform_delegate(node)
        state = self.replacement()
        if not isinstance(state, Ok):
            return not_ok(state)
        inner = dnode_of(self.path, state.value)
        return Ok(DNode("transformation", node.path, NOP, ((None, inner),), name=self.name))


# ---------------------------------------------------------------------------------------------
# Config classes
# ---------------------------------------------------------------------------------------------


def local_addresses() -> tuple[set[IP], set[str]]:
    """This host's IP addresses (of the interfaces that are up, from ``ip -o addr``, and of
    its hostname) and its names; loopback addresses are local in any case."""
    ips: set[IP] = set()
    names = {"localhost"}
    try:
        hostname = socket.gethostname()
        names |= {hostname.lower(), socket.getfqdn().lower()}
        for info in socket.getaddrinfo(hostname, None):
            ip = _ip(str(info[4][0]))
            if ip is not None:
                ips.add(ip)
    except OSError as e:
        log.debug("io.l5d.localhost: cannot resolve the hostname: %s", e)
    ip_cmd = shutil.which("ip")
    if ip_cmd is not None:
        try:
            out = subprocess.run(
                [ip_cmd, "-o", "addr", "show", "up"],
                capture_output=True,
                text=True,
                timeout=5,
                check=False,
            ).stdout
        except (OSError, subprocess.SubprocessError) as e:
            log.debug("io.l5d.localhost: 'ip addr' failed: %s", e)
            out = ""
        for line in out.splitlines():
            words = line.split()
            for i, word in enumerate(words[:-1]):
                if word in ("inet", "inet6"):
                    ip = _ip(words[i + 1].split("/")[0])
                    if ip is not None:
                        ips.add(ip)
    return ips, names


class LocalhostTransformerConfig(TransformerConfig):
    """Keeps only the addresses of this host: its interfaces' IPs and loopback."""

    kind = "io.l5d.localhost"

    def new_transformer(self, ctx: BuildContext) -> NameTreeTransformer:
        ips, names = local_addresses()
        return HostFilter(self.effective_prefix, str(self.kind), ips, names, loopback=True)


class SpecificHostTransformerConfig(TransformerConfig):
    """Keeps only the addresses of ``host`` (an IP, or a name resolved once at start)."""

    kind = "io.l5d.specificHost"
    host: str = option(doc="The host (IP address or name) whose addresses are kept.")

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.host.strip():
            yield "host", "must not be empty"

    def new_transformer(self, ctx: BuildContext) -> NameTreeTransformer:
        ip = _ip(self.host)
        ips: set[IP] = {ip} if ip is not None else set()
        if ip is None:
            try:
                for info in socket.getaddrinfo(self.host, None):
                    resolved = _ip(str(info[4][0]))
                    if resolved is not None:
                        ips.add(resolved)
            except OSError as e:
                log.warning("io.l5d.specificHost: cannot resolve %s: %s", self.host, e)
        return HostFilter(self.effective_prefix, str(self.kind), ips, {self.host})


class PortTransformerConfig(TransformerConfig):
    """Replaces the port of every address with ``port``."""

    kind = "io.l5d.port"
    port: int = option(min=1, max=65535, doc="The port every address is sent to.")

    def default_prefix(self) -> Path:
        return Path.of(str(self.kind), str(self.port))

    def new_transformer(self, ctx: BuildContext) -> NameTreeTransformer:
        return PortTransformer(self.effective_prefix, str(self.kind), self.port)


def _binder(ctx: BuildContext) -> ConfiguredNamersInterpreter:
    # (ctx.namers is the linker's list: namers configured later are in it when binding runs)
    binder = ConfiguredNamersInterpreter([], ctx.global_namer)
    binder.namers = _HashedNamers(ctx.namers)  # type: ignore[assignment]  # iterates like a list
    return binder


class _HashedNamers:
    """The linker's namers as the default interpreter holds them (``/#``-prefixed), read when
    iterated so that namers built after the transformer are included."""

    def __init__(self, namers: list[Any]) -> None:
        self.namers = namers

    def __iter__(self) -> Any:
        return iter([(Path.of("#") + prefix, namer) for prefix, namer in self.namers])


class ReplaceTransformerConfig(TransformerConfig):
    """Replaces every bound name with the binding of ``path`` (a tree that binds to nothing
    stays as it is)."""

    kind = "io.l5d.replace"
    path: Path = option(doc="Bound names are replaced with this path, bound with an empty dtab.")

    def new_transformer(self, ctx: BuildContext) -> NameTreeTransformer:
        return ReplaceTransformer(self.effective_prefix, str(self.kind), self.path, _binder(ctx))


class ConstTransformerConfig(TransformerConfig):
    """Ignores the bound tree and always answers the binding of ``path`` (even for ``~``)."""

    kind = "io.l5d.const"
    path: Path = option(doc="The path every name binds to, bound with an empty dtab.")

    def new_transformer(self, ctx: BuildContext) -> NameTreeTransformer:
        binder = _binder(ctx)
        return ReplaceTransformer(
            self.effective_prefix, str(self.kind), self.path, binder, const=True
        )


@hookimpl
def turnout_register_transformers() -> list[type[TransformerConfig]]:
    return [
        LocalhostTransformerConfig,
        SpecificHostTransformerConfig,
        PortTransformerConfig,
        ReplaceTransformerConfig,
        ConstTransformerConfig,
    ]


__all__ = [
    "ConstTransformerConfig",
    "HostFilter",
    "LocalhostTransformerConfig",
    "PortTransformer",
    "PortTransformerConfig",
    "ReplaceTransformer",
    "ReplaceTransformerConfig",
    "SpecificHostTransformerConfig",
    "local_addresses",
]
