"""What a name means, and which addresses an Endpoints object (and a Service) give it.

Pure functions over the API's JSON, with Linkerd 1's semantics (``io.buoyant.k8s``
``EndpointsNamer``):

- A name is ``<namespace>/<port>/<service>[/<label value>]``, lowercased (Linkerd lowercases
  those labels; Kubernetes names are lowercase anyway). Labels that cannot be Kubernetes names
  make the name ``Neg`` here, before any request (this also keeps selector syntax such as
  ``,`` or ``!=`` out of the ``labelSelector`` query).
- A **port name** is looked up in the Endpoints object's subsets (``ports[].name``, TCP only).
- A **port number** is a *Service* port: the Service's ``spec.ports`` entry with that ``port``
  gives its ``targetPort``; a numeric target port is used as is for every ready address, a
  named one is looked up in the Endpoints object as above.
- Only ready ``addresses`` count; ``notReadyAddresses`` never do.
- ``Neg`` (the route tries its next alternative) when the Endpoints object does not exist, when
  no subset has the port name, when (for a port number) the Service does not exist or has no
  such port. An Endpoints object whose subsets have the port but no ready address gives an
  empty bound set.

One difference from Linkerd, on purpose: Linkerd merges the ports of every subset into one
map, so when subsets give the same port name different numbers (pods of two versions during a
rollout) every address gets the last subset's number. Here each subset's addresses get that
subset's own number, which is what the Endpoints object says.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from turnout.api import Addr, AddrBound, Address, AddrNeg

#: RFC 1123 label (namespaces, service names)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
#: IANA_SVC_NAME (a named port): at most 15, lowercase alphanumerics and '-'
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
#: a label value (may be empty)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
#: a label key: an optional DNS subdomain prefix and '/', then a name
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z"
)

#: metadata key of an address's node (Linkerd's ``Metadata.nodeName``)
NODE_NAME_KEY = "nodeName"


def valid_namespace(text: str) -> bool:
    return len(text) <= 63 and bool(_DNS_LABEL.match(text))


def valid_service(text: str) -> bool:
    return len(text) <= 63 and bool(_DNS_LABEL.match(text))


def valid_label_key(text: str) -> bool:
    prefix, _, name = text.rpartition("/")
    return len(name) <= 63 and len(prefix) <= 253 and bool(_LABEL_KEY.match(text))


def valid_label_value(text: str) -> bool:
    return len(text) <= 63 and bool(_LABEL_VALUE.match(text))


def parse_port(text: str) -> int | str | None:
    """A path's port label: a number (a Service port), a port name, or None if neither."""
    if text.isascii() and text.isdigit():
        number = int(text)
        return number if 0 < number <= 65535 else None
    if len(text) <= 15 and _PORT_NAME.match(text) and any(c.isalpha() for c in text):
        return text
    return None


@dataclass(frozen=True)
class ServiceKey:
    """What one watch follows: a port of a service, optionally with a label selector."""

    namespace: str
    #: the port label as written (lowercased): a port name or a Service port number
    port: str
    service: str
    #: ``"<key>=<value>"`` sent as the API's ``labelSelector``, or None
    label_selector: str | None = None

    @property
    def port_number(self) -> int | None:
        """The Service port number the name uses, or None for a port name."""
        port = parse_port(self.port)
        return port if isinstance(port, int) else None

    def __str__(self) -> str:
        text = f"{self.namespace}/{self.port}/{self.service}"
        return f"{text}:{self.label_selector}" if self.label_selector else text


def service_key(
    namespace: str,
    port: str,
    service: str,
    label_key: str | None = None,
    label_value: str | None = None,
) -> ServiceKey | None:
    """The key of a (lowercased) name, or None when it cannot name a Kubernetes service."""
    if not valid_namespace(namespace) or not valid_service(service) or parse_port(port) is None:
        return None
    selector = None
    if label_key is not None:
        if label_value is None or not valid_label_value(label_value):
            return None
        selector = f"{label_key}={label_value}"
    return ServiceKey(namespace, port, service, selector)


def _name_of(obj: Mapping[str, Any] | None) -> str | None:
    if not isinstance(obj, Mapping):
        return None
    meta = obj.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) else None


def resource_version(obj: Mapping[str, Any] | None) -> str | None:
    """``metadata.resourceVersion`` of an object or a list (None when absent)."""
    if not isinstance(obj, Mapping):
        return None
    meta = obj.get("metadata")
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return rv if isinstance(rv, str) and rv else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _tcp(port: Mapping[str, Any]) -> bool:
    protocol = port.get("protocol")
    return protocol is None or (isinstance(protocol, str) and protocol.upper() == "TCP")


def _valid_port(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= 65535


def _ready(subset: Mapping[str, Any], port: int) -> list[Address]:
    out = []
    for a in _list(subset.get("addresses")):
        if not isinstance(a, Mapping) or not isinstance(a.get("ip"), str) or not a["ip"]:
            continue
        node = a.get("nodeName")
        meta = {NODE_NAME_KEY: node} if isinstance(node, str) and node else None
        out.append(Address(a["ip"], port, meta))
    return out


def named_port_addresses(endpoints: Mapping[str, Any], port_name: str) -> Addr:
    """Ready addresses of every subset that has a TCP port named ``port_name``, each with
    its subset's number; ``AddrNeg`` when no subset has that port."""
    found = False
    addresses: list[Address] = []
    for subset in _list(endpoints.get("subsets")):
        if not isinstance(subset, Mapping):
            continue
        number: int | None = None
        for p in _list(subset.get("ports")):
            if isinstance(p, Mapping) and p.get("name") == port_name and _tcp(p):
                value = p.get("port")
                number = value if _valid_port(value) else None
                break
        if number is None:
            continue
        found = True
        addresses += _ready(subset, number)
    return AddrBound(addresses) if found else AddrNeg


def numbered_port_addresses(endpoints: Mapping[str, Any], port: int) -> AddrBound:
    """Every ready address of every subset, at ``port``."""
    addresses: list[Address] = []
    for subset in _list(endpoints.get("subsets")):
        if isinstance(subset, Mapping):
            addresses += _ready(subset, port)
    return AddrBound(addresses)


def target_port(service: Mapping[str, Any], port: int) -> int | str | None:
    """The ``targetPort`` of the Service's TCP port ``port`` (a number, or a container port
    name); it defaults to ``port`` as the API server defaults it. None: no such port."""
    spec = service.get("spec")
    if not isinstance(spec, Mapping):
        return None
    for p in _list(spec.get("ports")):
        if not isinstance(p, Mapping) or p.get("port") != port or not _tcp(p):
            continue
        target = p.get("targetPort", port)
        if isinstance(target, str) and target.isascii() and target.isdigit():
            target = int(target)  # as Linkerd: a target port that reads as a number is one
        if _valid_port(target) or (isinstance(target, str) and target):
            found: int | str = target
            return found
        return port if target in (None, 0) else None
    return None


def select(
    key: ServiceKey,
    endpoints: Mapping[str, Any] | None,
    service: Mapping[str, Any] | None = None,
) -> Addr:
    """The address set of ``key`` given its Endpoints object and (for a port number) its
    Service, either None when it does not exist (see the module docstring)."""
    if endpoints is None:
        return AddrNeg
    number = key.port_number
    if number is None:
        return named_port_addresses(endpoints, key.port)
    if service is None:
        return AddrNeg
    target = target_port(service, number)
    if target is None:
        return AddrNeg
    if isinstance(target, int):
        return numbered_port_addresses(endpoints, target)
    return named_port_addresses(endpoints, target)


def object_named(obj: Any, name: str) -> bool:
    """Whether a watch event's object is the one named ``name``."""
    return _name_of(obj) == name
