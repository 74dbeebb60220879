"""Ingress objects → rules → a compiled matcher (pure; no I/O).

Linkerd 1's ``io.buoyant.k8s.IngressCache`` semantics, for Ingress objects of
``networking.k8s.io/v1`` and of the older ``extensions/v1beta1`` (whose field names are read
too, so objects written either way work):

- **Which Ingresses.** One whose ``kubernetes.io/ingress.class`` annotation names another
  class than ``ingressClassAnnotation`` is left out; one without the annotation is used
  (Linkerd). turnout also reads ``spec.ingressClassName`` (v1's replacement of the annotation)
  the same way when the annotation is absent.
- **Rules.** Each ``spec.rules[].http.paths[]`` entry, in order, is a rule: the rule's
  ``host`` (any host when absent) and the entry's ``path``, matched by ``pathType``:

  - ``Exact``: the request path equals ``path``;
  - ``Prefix``: Kubernetes' element-wise prefix (``/foo`` matches ``/foo``, ``/foo/`` and
    ``/foo/bar``, not ``/foobar``; ``/`` matches every path; a trailing ``/`` is ignored);
  - ``ImplementationSpecific`` or absent (every ``extensions/v1beta1`` object): Linkerd's
    rule, ``path`` is a regular expression that must match the **whole** request path
    (``/`` matches only ``/``; ``/api/.*`` matches under ``/api/``), and an empty or absent
    ``path`` matches every request.

  The host matches the request's ``Host`` without its port, case-insensitively; a v1
  wildcard host ``*.example.com`` matches one more DNS label (``a.example.com``, not
  ``example.com`` nor ``a.b.example.com``). The request path is the target's path (without
  the query), percent-decoded when it has a ``%``, as Finagle's ``Request.path`` is.
- **Backends.** ``backend.service.name`` with ``backend.service.port.number`` or
  ``.port.name`` (v1), or ``backend.serviceName`` with ``backend.servicePort`` (v1beta1),
  name the request ``<prefix>/<namespace of the Ingress>/<port>/<service>``. A rule whose
  backend is not a service (a v1 ``resource`` backend) or is incomplete is left out (and
  counted).
- **Order.** The first rule that matches wins, Ingresses taken in ``(namespace, name)`` order
  (the order the API lists them in) and rules and paths in their written order. When none
  matches, the first Ingress (in that order) with a default backend (``spec.defaultBackend``,
  v1beta1 ``spec.backend``) names the request, unless ``ignoreDefaultBackends``. Else the
  request is not named.

Differences from Linkerd, on purpose: Linkerd appended added and modified Ingresses at the end
of its list, so the precedence between Ingresses depended on the order they were last edited
(and changed on a restart); here it is always ``(namespace, name)``. Linkerd kept the previous
version of an Ingress edited to another class; here the edit removes it. ``pathType`` did not
exist in Linkerd.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from turnout.api import Path

log = logging.getLogger("turnout.identifier.ingress")

#: the annotation naming the controller an Ingress is for (Linkerd's ``annotationKey``)
CLASS_ANNOTATION: Final = "kubernetes.io/ingress.class"
#: the namespace of an object whose metadata has none (Linkerd's default)
DEFAULT_NAMESPACE: Final = "default"
#: distinct Host header values whose rule lists are remembered per snapshot
MAX_CACHED_HOSTS: Final = 10_000

# how a rule matches the request path
ANY: Final = 0
EXACT: Final = 1
PREFIX: Final = 2
REGEX: Final = 3


@dataclass(frozen=True)
class IngressPath:
    """One rule of one Ingress, as read (what ``state()`` shows and tests compare)."""

    namespace: str
    ingress: str
    host: str | None
    path: str | None
    path_type: str | None
    service: str
    port: str

    def name(self, prefix: Path) -> Path:
        return prefix + Path.of(self.namespace, self.port, self.service)


@dataclass(frozen=True)
class IngressSpec:
    """The rules and default backend of one Ingress that this identifier uses."""

    namespace: str
    name: str
    rules: tuple[IngressPath, ...]
    default_backend: IngressPath | None
    #: what was left out, and why (shown in ``state()``)
    skipped: tuple[str, ...] = ()


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _backend(backend: Any) -> tuple[str, str] | str:
    """``(service, port)`` of an IngressBackend of either version, or why it cannot route."""
    b = _mapping(backend)
    service = _mapping(b.get("service"))
    if service:  # networking.k8s.io/v1
        name = _text(service.get("name"))
        port = _mapping(service.get("port"))
        number = port.get("number")
        if isinstance(number, int) and not isinstance(number, bool) and 0 < number <= 65535:
            port_text: str | None = str(number)
        else:
            port_text = _text(port.get("name"))
        if name is None or port_text is None:
            return "a service backend without a name or a port"
        return name, port_text
    name = _text(b.get("serviceName"))  # extensions/v1beta1
    port_value = b.get("servicePort")
    if isinstance(port_value, int) and not isinstance(port_value, bool):
        port_text = str(port_value)
    else:
        port_text = _text(port_value)
    if name is not None and port_text is not None:
        return name, port_text
    if b.get("resource") is not None:
        return "a resource backend (not a service)"
    return "a backend without a service name or port"


def for_class(obj: Mapping[str, Any], ingress_class: str) -> bool:
    """Whether the Ingress is for this class: its ``kubernetes.io/ingress.class`` annotation,
    else its ``spec.ingressClassName``, is absent or names ``ingress_class``."""
    annotations = _mapping(_mapping(obj.get("metadata")).get("annotations"))
    annotated = annotations.get(CLASS_ANNOTATION)
    if isinstance(annotated, str):
        return annotated == ingress_class
    class_name = _mapping(obj.get("spec")).get("ingressClassName")
    return not isinstance(class_name, str) or class_name == ingress_class


def ingress_spec(
    obj: Mapping[str, Any], ingress_class: str, ignore_default_backends: bool
) -> IngressSpec | None:
    """The rules of one Ingress object, or None when it is for another class."""
    if not for_class(obj, ingress_class):
        return None
    meta = _mapping(obj.get("metadata"))
    namespace = _text(meta.get("namespace")) or DEFAULT_NAMESPACE
    name = _text(meta.get("name")) or ""
    spec = _mapping(obj.get("spec"))
    rules: list[IngressPath] = []
    skipped: list[str] = []
    for i, rule in enumerate(_list(spec.get("rules"))):
        rule_map = _mapping(rule)
        host = _text(rule_map.get("host"))
        for j, entry in enumerate(_list(_mapping(rule_map.get("http")).get("paths"))):
            e = _mapping(entry)
            target = _backend(e.get("backend"))
            if isinstance(target, str):
                skipped.append(f"rules[{i}].http.paths[{j}]: {target}")
                continue
            path = e.get("path")
            path_type = _text(e.get("pathType"))
            ingress_path = IngressPath(
                namespace,
                name,
                host.lower() if host else None,
                path if isinstance(path, str) else None,
                path_type,
                *target,
            )
            problem = _path_problem(ingress_path)
            if problem is not None:
                skipped.append(f"rules[{i}].http.paths[{j}]: {problem}")
                continue
            rules.append(ingress_path)
    default = None
    raw_default = spec.get("defaultBackend", spec.get("backend"))
    if raw_default is not None and not ignore_default_backends:
        target = _backend(raw_default)
        if isinstance(target, str):
            skipped.append(f"defaultBackend: {target}")
        else:
            default = IngressPath(namespace, name, None, None, None, *target)
    return IngressSpec(namespace, name, tuple(rules), default, tuple(skipped))


def _path_problem(p: IngressPath) -> str | None:
    if p.path_type in ("Exact", "Prefix"):
        if not p.path or not p.path.startswith("/"):
            return f"pathType {p.path_type} needs an absolute path, not {p.path!r}"
        return None
    if p.path_type not in (None, "ImplementationSpecific"):
        return f"unknown pathType {p.path_type!r}"
    if p.path:
        try:
            re.compile(p.path.encode("utf-8"))
        except re.error as e:
            return f"path {p.path!r} is not a regular expression: {e}"
    return None


# -- compiled matching -------------------------------------------------------------------------

#: a compiled rule: (host or None, how the path matches, its argument, the name)
_Rule = tuple[str | None, int, Any, Path]


def _compile(p: IngressPath, prefix: Path) -> _Rule:
    name = p.name(prefix)
    if p.path_type == "Exact":
        return p.host, EXACT, p.path.encode("utf-8") if p.path else b"", name
    if p.path_type == "Prefix":
        stem = (p.path or "/").rstrip("/").encode("utf-8")
        return p.host, (PREFIX if stem else ANY), stem, name
    if not p.path:
        return p.host, ANY, None, name
    return p.host, REGEX, re.compile(p.path.encode("utf-8")), name


def _host_matches(rule_host: str, host: str) -> bool:
    if rule_host.startswith("*."):
        suffix = rule_host[1:]  # ".example.com"
        return host.endswith(suffix) and "." not in host[: -len(suffix)] and len(host) > len(suffix)
    return rule_host == host


def request_host(value: bytes) -> str:
    """A Host header value without its port, lowercased (``Web:80`` → ``web``; ``[::1]:80``
    → ``[::1]``)."""
    text = value.decode("latin-1").strip()
    if text.startswith("["):
        end = text.find("]")
        return text[: end + 1].lower() if end >= 0 else text.lower()
    return text.partition(":")[0].lower()


class Matcher:
    """One snapshot of the Ingresses, compiled: :meth:`match` names a request.

    Per Host header value, the rules that can apply to that host are computed once (bounded
    cache); a request then costs one dict lookup and a scan of those rules over the target's
    bytes, with no allocation on the common path (no ``%`` in the path).
    """

    __slots__ = ("_by_host", "_no_host", "fallback", "rules", "specs")

    def __init__(self, specs: Iterable[IngressSpec], prefix: Path) -> None:
        self.specs = tuple(specs)
        self.rules: tuple[_Rule, ...] = tuple(
            _compile(p, prefix) for spec in self.specs for p in spec.rules
        )
        self.fallback: Path | None = next(
            (s.default_backend.name(prefix) for s in self.specs if s.default_backend), None
        )
        self._no_host: tuple[_Rule, ...] = tuple(r for r in self.rules if r[0] is None)
        self._by_host: dict[bytes, tuple[_Rule, ...]] = {}

    def rules_for(self, host: bytes | None) -> tuple[_Rule, ...]:
        """The rules that can apply to a request with this Host header (in order)."""
        if host is None:
            return self._no_host
        rules = self._by_host.get(host)
        if rules is None:
            name = request_host(host)
            rules = tuple(r for r in self.rules if r[0] is None or _host_matches(r[0], name))
            if len(self._by_host) >= MAX_CACHED_HOSTS:
                self._by_host.clear()
            self._by_host[host] = rules
        return rules

    def match(self, host: bytes | None, target: bytes) -> Path | None:
        """The name of a request for ``target`` with this Host header, or None."""
        rules = self.rules_for(host)
        if rules:
            if not target.startswith(b"/") and target.startswith((b"http://", b"https://")):
                # absolute form (rare): the path begins at the first "/" after the authority
                start = target.find(b"/", target.find(b"//") + 2)
                target = target[start:] if start >= 0 else b"/"
            end = target.find(b"?")
            if end < 0:
                end = len(target)
            if target.find(b"%", 0, end) >= 0:
                target = unquote_to_bytes(target[:end])
                end = len(target)
            for _, how, arg, name in rules:
                if how == ANY:
                    return name
                if how == PREFIX:
                    n = len(arg)
                    # element-wise: the stem, then the end of the path or a "/" (47)
                    if end >= n and target.startswith(arg) and (end == n or target[n] == 47):
                        return name
                elif how == EXACT:
                    if end == len(arg) and target.startswith(arg):
                        return name
                elif arg.fullmatch(target, 0, end) is not None:
                    return name
        return self.fallback


def compile_ingresses(
    objects: Mapping[tuple[str, str], Mapping[str, Any]],
    prefix: Path,
    ingress_class: str,
    ignore_default_backends: bool,
) -> Matcher:
    """The matcher of a set of Ingress objects keyed by ``(namespace, name)``."""
    specs = []
    for key in sorted(objects):
        spec = ingress_spec(objects[key], ingress_class, ignore_default_backends)
        if spec is not None:
            specs.append(spec)
    return Matcher(specs, prefix)
