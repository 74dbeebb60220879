"""The ``io.l5d.k8s.external`` namer: a Service's LoadBalancer ingress addresses, watched.

Linkerd 1's ``io.buoyant.k8s.ServiceNamer``. A name is
``/<namespace>/<port>/<service>[/<label value>]`` (the rest is the residual):

- It binds to one address per entry of the Service's ``status.loadBalancer.ingress``: the
  entry's ``hostname`` when it has one, else its ``ip`` (Linkerd's ``hostname.orElse(ip)``),
  each at the Service port's ``port`` (the port the load balancer listens on, not the
  ``targetPort`` or ``nodePort``).
- ``<port>`` is a Service port's ``name``, or a number: the Service port whose ``port`` it is.
- ``Neg`` (the dtab's next alternative is tried) when the Service does not exist (or was
  deleted, or does not match the label selector), when it has no such port, and when its load
  balancer has no ingress address yet (Linkerd: the port is then absent from its map). It
  turns into a bound set when the address appears, and the set follows the address.
- The labels that make the key are lowercased (one watch per service, whatever the case);
  the bound id keeps the case of the name, as Linkerd's ServiceNamer does.

Watching is the first-party ``io.l5d.k8s`` namer's (:class:`turnout_namer_k8s.namer.K8sNamer`),
following only the Service: ``GET /api/v1/namespaces/<ns>/services?fieldSelector=
metadata.name=<svc>`` (plus ``labelSelector``), then the watch from the list's
resourceVersion, resumed after a clean end, re-listed on ``410 Gone``; any other failure keeps
the last good set and reconnects with backoff.

Differences from Linkerd, on purpose:

- Every ingress entry gives an address. Linkerd builds a map from port name to *one* address,
  so with several entries (a load balancer with two IPs) only the last was used.
- A numbered port is the Service port with that ``port``. Linkerd mapped the number to the
  port's ``targetPort`` and looked that up as a port *name*, so ``/ns/80/svc`` only bound when
  the target port was a name equal to a port's name (a copy of the Endpoints namer's logic
  that does not fit load balancers).
- Only TCP ports count (a UDP load balancer port cannot carry a router's traffic).
- Port names may be any Service port name (a DNS label, up to 63 characters).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from turnout.api import (
    Activity,
    Addr,
    AddrBound,
    Address,
    AddrNeg,
    DiscoveryNamer,
    Name,
    NameTree,
    Path,
    Publish,
)
from turnout_namer_k8s.model import (
    ServiceKey,
    valid_label_value,
    valid_namespace,
    valid_service,
)
from turnout_namer_k8s.namer import Followed, K8sNamer, KeyState

#: a Service port name (DNS_LABEL)
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")


def port_label(text: str) -> str | None:
    """A name's (lowercased) port label if it can name a Service port: a number 1-65535 or a
    DNS label; None otherwise."""
    if text.isascii() and text.isdigit():
        return text if 0 < int(text) <= 65535 else None
    if len(text) <= 63 and _PORT_NAME.match(text):
        return text
    return None


def _tcp(port: Mapping[str, Any]) -> bool:
    protocol = port.get("protocol")
    return protocol is None or (isinstance(protocol, str) and protocol.upper() == "TCP")


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def service_port(service: Mapping[str, Any], port: str) -> int | None:
    """The ``port`` of the Service's TCP port named ``port`` (or whose number it is)."""
    number = int(port) if port.isdigit() else None
    for p in _list(_mapping(service.get("spec")).get("ports")):
        if not isinstance(p, Mapping) or not _tcp(p):
            continue
        value = p.get("port")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 65535:
            continue
        if (number is not None and value == number) or (number is None and p.get("name") == port):
            return value
    return None


def ingress_hosts(service: Mapping[str, Any]) -> list[str]:
    """The hosts of ``status.loadBalancer.ingress``: each entry's hostname, else its ip (in
    order, without repeats)."""
    lb = _mapping(_mapping(service.get("status")).get("loadBalancer"))
    hosts: list[str] = []
    for entry in _list(lb.get("ingress")):
        if not isinstance(entry, Mapping):
            continue
        for field in ("hostname", "ip"):
            value = entry.get(field)
            if isinstance(value, str) and value:
                if value not in hosts:
                    hosts.append(value)
                break
    return hosts


def external_addr(key: ServiceKey, service: Mapping[str, Any] | None) -> Addr:
    """The address set of ``key`` given its Service (None: it does not exist)."""
    if service is None:
        return AddrNeg
    port = service_port(service, key.port)
    hosts = ingress_hosts(service)
    if port is None or not hosts:
        return AddrNeg
    return AddrBound([Address(host, port) for host in hosts])


class K8sExternalNamer(K8sNamer):
    """See the module docstring. Options as :class:`K8sNamer` (no fixed namespace)."""

    kind = "io.l5d.k8s.external"

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        # the id keeps the name's case (Linkerd's ServiceNamer); key_of lowercases the key
        return DiscoveryNamer.lookup(self, path)

    def key_of(self, path: Path) -> tuple[ServiceKey, int] | None:
        n = self.prefix_length
        if len(path) < n:
            return None  # (with labelSelector, a name without the label value is Neg)
        try:
            labels = [label.decode("utf-8").lower() for label in path.take(n)]
        except UnicodeDecodeError:
            return None
        namespace, port, service = labels[0], port_label(labels[1]), labels[2]
        if port is None or not valid_namespace(namespace) or not valid_service(service):
            return None
        selector = None
        if self.label_selector:
            if not valid_label_value(labels[3]):
                return None
            selector = f"{self.label_selector}={labels[3]}"
        return ServiceKey(namespace, port, service, selector), n

    async def watch(self, key: ServiceKey, publish: Publish) -> None:
        state = self._keys.get(key)
        if state is None:
            # one followed object: the Service (in the slot the Endpoints namer uses)
            state = self._keys[key] = KeyState(endpoints=Followed("services"))
        me = state.owner = asyncio.current_task()
        followed = state.endpoints

        def changed() -> None:
            if followed.listed:
                publish(external_addr(key, followed.obj))

        try:
            await self._follow(key, followed, changed)
        except asyncio.CancelledError:
            # stopped (nothing routes to it any more, or closing): start afresh next time
            if self._keys.get(key) is state and state.owner is me:
                del self._keys[key]
            raise
