"""The ``io.l5d.k8s.localnode`` and ``io.l5d.k8s.daemonset`` transformers (Linkerd's).

- ``io.l5d.k8s.localnode`` keeps the addresses on this pod's node: those in the same /24 as
  ``POD_IP`` (each Kubernetes node is its own /24), or with ``hostNetwork: true`` those whose
  Endpoints ``nodeName`` is ``NODE_NAME``.
- ``io.l5d.k8s.daemonset`` replaces each address with the daemonset pod on the same node (the
  same /24, or the same ``nodeName`` with ``hostNetwork: true``), found through the
  daemonset's service, watched like the ``io.l5d.k8s`` namer watches any service: to send
  traffic to the per-node proxy (a turnout daemonset) instead of straight to the pod.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Iterable
from typing import Any

from turnout.api import (
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    AddrPending,
    AddrTransformer,
    BuildContext,
    Failed,
    NameBound,
    Namer,
    NameTreeTransformer,
    Ok,
    Path,
    TransformerConfig,
    TurnoutError,
    Var,
    derive,
    option,
)

from .model import NODE_NAME_KEY, parse_port, valid_namespace, valid_service

Same = Callable[[Address, Address], bool]


def _subnet(host: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The /24 of an IPv4 address (/120 for IPv6), or None for a name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return ipaddress.ip_network(f"{ip}/{24 if ip.version == 4 else 120}", strict=False)


def same_subnet(a: Address, b: Address) -> bool:
    net = _subnet(a.host)
    return net is not None and net == _subnet(b.host)


def same_node(a: Address, b: Address) -> bool:
    node = a.meta.get(NODE_NAME_KEY)
    return node is not None and node == b.meta.get(NODE_NAME_KEY)


class LocalNodeFilter(AddrTransformer):
    """Keeps the addresses that are ``same`` as ``local``; none left is ``Neg``."""

    def __init__(self, prefix: Path, name: str, local: Address, same: Same) -> None:
        super().__init__(prefix, name)
        self.local = local
        self.same = same

    def map_addr(self, addr: Addr) -> Addr:
        if not isinstance(addr, AddrBound):
            return addr
        kept = [a for a in addr.addresses if self.same(a, self.local)]
        return AddrBound(kept, addr.meta) if kept else AddrNeg


class GatewayTransformer(NameTreeTransformer):
    """Replaces each address with the gateways (the daemonset's addresses) that are ``same``
    as it; none is ``Neg`` (Linkerd's ``GatewayTransformer``). The gateways are the live
    result of ``namer.lookup(gateway_path)``."""

    def __init__(
        self, prefix: Path, name: str, namer: Namer, gateway_path: Path, same: Same
    ) -> None:
        super().__init__(prefix, name)
        self.namer = namer
        self.gateway_path = gateway_path
        self.same = same
        self.gateways: Var[Addr] = derive(self._gateways)
        self._names: dict[tuple[Path, Path], tuple[Var[Addr], NameBound]] = {}

    def _gateways(self) -> Addr:
        state = self.namer.lookup(self.gateway_path).sample()
        if isinstance(state, Failed):
            return AddrFailed(state.error)
        if not isinstance(state, Ok):
            return AddrPending
        names = state.value.eval() or frozenset()
        addrs = [b.addr.sample() for b in names if isinstance(b, NameBound)]
        if addrs and all(a is AddrPending for a in addrs):
            return AddrPending
        return AddrBound(x for a in addrs if isinstance(a, AddrBound) for x in a.addresses)

    def _select(self, addr: Addr, gateways: Addr) -> Addr:
        if not isinstance(addr, AddrBound):
            return addr
        if not isinstance(gateways, AddrBound):
            return gateways
        chosen = {g for a in addr.addresses for g in gateways.addresses if self.same(a, g)}
        return AddrBound(chosen, addr.meta) if chosen else AddrNeg

    def map_bound(self, bound: NameBound) -> NameBound:
        key = (bound.id, bound.residual)
        known = self._names.get(key)
        if known is not None and known[0] is bound.addr:
            return known[1]
        source = bound.addr
        addr = derive(lambda: self._select(source.sample(), self.gateways.sample()))
        out = NameBound(self.prefix + bound.id, addr, bound.residual)
        if len(self._names) > 10_000:
            self._names.clear()
        self._names[key] = (source, out)
        return out

    def transform(self, tree: Any) -> Any:
        return Ok(tree.map(self.map_bound))

    async def close(self) -> None:
        await self.namer.close()


def _env(name: str, kind: str, why: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise TurnoutError(
            f"transformer {kind}: the environment variable {name} is not set; it must hold "
            f"{why} (in a pod, set it from the downward API)"
        )
    return value


class LocalNodeTransformerConfig(TransformerConfig):
    """Keeps only the addresses on this pod's node: the /24 of ``POD_IP`` or, with
    ``hostNetwork``, the Endpoints ``nodeName`` equal to ``NODE_NAME``."""

    kind = "io.l5d.k8s.localnode"
    host_network: bool = option(
        False, doc="Match by the node name in NODE_NAME instead of the /24 of POD_IP."
    )

    def new_transformer(self, ctx: BuildContext) -> NameTreeTransformer:
        if self.host_network:
            node = _env("NODE_NAME", str(self.kind), "the node's name (spec.nodeName)")
            local = Address("0.0.0.0", 0, {NODE_NAME_KEY: node})
            return LocalNodeFilter(
                self.effective_prefix + Path.of(node), str(self.kind), local, same_node
            )
        ip = _env("POD_IP", str(self.kind), "the pod's IP (status.podIP)")
        if _subnet(ip) is None:
            raise TurnoutError(f"transformer {self.kind}: POD_IP={ip!r} is not an IP address")
        local = Address(ip, 0)
        return LocalNodeFilter(
            self.effective_prefix + Path.of(ip), str(self.kind), local, same_subnet
        )


class DaemonSetTransformerConfig(TransformerConfig):
    """Sends to the daemonset pod on each destination's node (same /24 or, with
    ``hostNetwork``, same Endpoints ``nodeName``), found through the daemonset's service."""

    kind = "io.l5d.k8s.daemonset"
    k8s_host: str = option("localhost", doc="The Kubernetes API host (usually kubectl proxy).")
    k8s_port: int = option(8001, min=1, max=65535, doc="The Kubernetes API port.")
    namespace: str = option(doc="The namespace of the daemonset.")
    service: str = option(doc="The Kubernetes service of the daemonset.")
    port: str = option(doc="The name (or number) of the daemonset's port to use.")
    host_network: bool = option(
        False, doc="Match by node name instead of /24 (the daemonset runs with hostNetwork)."
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not valid_namespace(self.namespace):
            yield "namespace", f"{self.namespace!r} is not a Kubernetes namespace name"
        if not valid_service(self.service):
            yield "service", f"{self.service!r} is not a Kubernetes service name"
        if parse_port(self.port) is None:
            yield "port", f"{self.port!r} is neither a port name nor a port number"
        if not self.k8s_host:
            yield "k8sHost", "must not be empty"

    def default_prefix(self) -> Path:
        return Path.of(str(self.kind), self.namespace, self.port, self.service)

    def new_transformer(self, ctx: BuildContext) -> NameTreeTransformer:
        from .namer import K8sNamer

        namer = K8sNamer(
            Path.of("#", str(self.kind)),
            host=self.k8s_host,
            port=self.k8s_port,
            metrics=ctx.metrics,
        )
        return GatewayTransformer(
            self.effective_prefix,
            str(self.kind),
            namer,
            Path.of(self.namespace, self.port, self.service),
            same_node if self.host_network else same_subnet,
        )


__all__ = [
    "DaemonSetTransformerConfig",
    "GatewayTransformer",
    "LocalNodeFilter",
    "LocalNodeTransformerConfig",
    "same_node",
    "same_subnet",
]
