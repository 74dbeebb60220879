"""A Kubernetes API double: core/v1 Endpoints and Services over HTTP, for discovery tests.

No kube-apiserver can run on the test machines, so this is an aiohttp application written from
the Kubernetes API documentation ("Kubernetes API Concepts": resource versions, efficient
detection of changes, watch bookmarks, 410 Gone; the core/v1 Endpoints and Service
references) and the behaviour of the real server's watch cache. It listens on 127.0.0.1 and
runs either in-process (:class:`KubeApiDouble`: its own thread and event loop) or as a
subprocess (:class:`KubeApiProcess`: ``python -m turnout_namer_k8s.testing --port N``). It
ships with the io.l5d.k8s namers (``from turnout_namer_k8s.testing import KubeApiDouble``),
so that users of the plugin can test their own configurations against it.

What it serves, under ``/api/v1`` (``{resource}`` is ``endpoints`` or ``services``) and, the
same way, under ``/apis/networking.k8s.io/v1`` (``{resource}`` is ``ingresses``: Ingress objects,
stored as given, so that both the ``networking.k8s.io/v1`` and the older ``extensions/v1beta1``
field names can be served):

- ``GET namespaces/{ns}/{resource}/{name}``: the object, or ``404`` with a ``Status``
  (``{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,..}``).
  A ``watch`` parameter on this path is ignored, as in Kubernetes: single objects are watched
  through the list with ``fieldSelector=metadata.name=<name>``.
- ``GET namespaces/{ns}/{resource}`` and ``GET {resource}`` (every namespace): a list
  (``EndpointsList``/``ServiceList``, ``metadata.resourceVersion`` = the store's version; items
  carry no ``kind``/``apiVersion``, as real lists), filtered by ``fieldSelector``
  (``metadata.name``, ``metadata.namespace``; ``=``, ``==``, ``!=``) and ``labelSelector``
  (``k=v``, ``k==v``, ``k!=v``, ``k``, ``!k``, ``k in (a,b)``, ``k notin (a,b)``). Anything else
  is ``400 BadRequest``.
- The same with ``watch=true`` (or ``watch=1``), and the deprecated ``/api/v1/watch/...`` paths
  (a name there becomes a ``metadata.name`` field selector): ``200``, then newline-delimited
  ``{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}`` (chunked).
  ``resourceVersion`` unset or ``0``: synthetic ``ADDED`` events for the current objects, then
  changes. ``resourceVersion=N``: every change after ``N``, replayed from the kept history.
  ``N`` older than the history: an ``ERROR`` event with a ``410``/``Expired`` ``Status`` (what
  the real server does), or an HTTP ``410`` when :attr:`KubeApiDouble.gone_as_status` is set.
  An object that stops (starts) matching the selectors is sent as ``DELETED`` (``ADDED``), with
  the change's resourceVersion. ``timeoutSeconds`` ends the stream cleanly;
  ``allowWatchBookmarks=true`` gets ``BOOKMARK`` events every :attr:`bookmark_interval` s.
- ``POST namespaces/{ns}/{resource}`` (``409 AlreadyExists``), ``PUT .../{name}`` (creates
  Endpoints, ``404`` for a missing Service, as Kubernetes' ``AllowCreateOnUpdate``; a
  ``metadata.resourceVersion`` in the body that is not the object's current one: ``409
  Conflict``, Kubernetes' optimistic concurrency), ``DELETE .../{name}``.
- The same for namerd's ``DTab`` custom resource (io.l5d.k8s dtab store): ``{resource}`` is
  ``dtabs`` under ``/apis/l5d.io/v1alpha1`` (see :func:`dtab_object`); like every custom
  resource, a ``PUT`` does not create it (``404``).

One resourceVersion counter for everything (as etcd's revision), increasing by one per write;
objects get ``metadata.uid``, ``creationTimestamp`` and ``resourceVersion``. The history keeps
the last ``history`` changes (Kubernetes keeps about 5 minutes); :meth:`compact` forgets it.

Test controls (Python methods; ``/_double/...`` HTTP endpoints for the subprocess):
``set_endpoints``/``delete_endpoints``/``set_service``/``delete_service`` (a Service of type
LoadBalancer with ``set_service(..., load_balancer=[ips or LoadBalancerIngress dicts])``: its
``status.loadBalancer.ingress``), ``set_ingress``/``delete_ingress`` (see
:func:`ingress_object`; any other Ingress shape through ``put_object("ingresses", obj)``) (they
work while the server is stopped, so changes can be made during an outage), ``drop_watches``
(reset every watch connection mid-stream), ``end_watches`` (clean end, as on a server-side
timeout), ``expire_watches`` (an ``ERROR`` 410 event on every open watch), ``compact``,
``fail`` (answer every API request with a ``Status`` of the given code, for ``count`` requests
or until ``fail(None)``), ``hang`` (accept requests but do not answer them), ``stop``/``start``
(refused connections, then serving again on the same port with the same objects and history, as
an API server restarted in front of the same etcd).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal as signals
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from turnout.testing.loop import LoopThread
from turnout.testing.net import LOCALHOST, free_port, wait_port
from turnout.testing.process import die_with_parent

__all__ = [
    "API_VERSIONS",
    "RESOURCES",
    "KubeApiDouble",
    "KubeApiProcess",
    "api_path",
    "dtab_object",
    "endpoint_subset",
    "endpoints_object",
    "ingress_backend",
    "ingress_object",
    "ingress_rule",
    "service_object",
    "status_object",
    "subsets_for",
]

#: resource (URL name) → (kind, list kind)
RESOURCES: dict[str, tuple[str, str]] = {
    "endpoints": ("Endpoints", "EndpointsList"),
    "services": ("Service", "ServiceList"),
    "ingresses": ("Ingress", "IngressList"),
    # namerd's io.l5d.k8s dtab store: the DTab custom resource (Linkerd's l5d.io/v1alpha1)
    "dtabs": ("DTab", "DTabList"),
}

#: resource → the API group version serving it (``v1`` under ``/api``, others under ``/apis``)
API_VERSIONS: dict[str, str] = {
    "endpoints": "v1",
    "services": "v1",
    "ingresses": "networking.k8s.io/v1",
    "dtabs": "l5d.io/v1alpha1",
}


def dtab_object(namespace: str, name: str, dentries: Sequence[Mapping[str, str]] | str = ()) -> Obj:
    """A ``DTab`` custom resource (``l5d.io/v1alpha1``) as namerd's io.l5d.k8s store keeps a
    dtab: ``dentries`` is ``[{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]``, or dtab text
    (``/svc=>/#/io.l5d.fs;/a=>/b``, split at ``;`` and the first ``=>``)."""
    if isinstance(dentries, str):
        entries = []
        for part in dentries.split(";"):
            if part.strip():
                prefix, dst = part.split("=>", 1)
                entries.append({"prefix": prefix.strip(), "dst": dst.strip()})
    else:
        entries = [dict(e) for e in dentries]
    return {
        "apiVersion": API_VERSIONS["dtabs"],
        "kind": "DTab",
        "metadata": {"name": name, "namespace": namespace},
        "dentries": entries,
    }


def api_path(resource: str, namespace: str | None = None, name: str | None = None) -> str:
    """The URL path of a resource list (every namespace when ``namespace`` is None) or of one
    object: ``/api/v1/namespaces/default/services/web``,
    ``/apis/networking.k8s.io/v1/ingresses``."""
    version = API_VERSIONS[resource]
    out = "/api/v1" if version == "v1" else f"/apis/{version}"
    if namespace is not None:
        out += f"/namespaces/{namespace}"
    out += f"/{resource}"
    return out if name is None else f"{out}/{name}"


Obj = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Object builders (plain JSON, as the API serves them)
# ---------------------------------------------------------------------------------------------


def status_object(
    code: int, reason: str, message: str, details: Mapping[str, Any] | None = None
) -> Obj:
    """A ``Status`` failure object, as the API server returns with error codes."""
    out: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        out["details"] = dict(details)
    return out


def endpoint_subset(
    addresses: Iterable[str | Mapping[str, Any]] = (),
    ports: Mapping[str, int] | Iterable[Mapping[str, Any]] = (),
    *,
    not_ready: Iterable[str | Mapping[str, Any]] = (),
) -> Obj:
    """One ``EndpointSubset``. Addresses are IPs or ``EndpointAddress`` dicts (``ip``,
    ``nodeName``, ``targetRef``...); ports a ``{name: number}`` mapping (TCP) or
    ``EndpointPort`` dicts. Empty lists are omitted, as the API server omits them."""

    def address(a: str | Mapping[str, Any]) -> Obj:
        return {"ip": a} if isinstance(a, str) else dict(a)

    if isinstance(ports, Mapping):
        port_list = [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports.items()]
    else:
        port_list = [dict(p) for p in ports]
    out: Obj = {}
    ready = [address(a) for a in addresses]
    unready = [address(a) for a in not_ready]
    if ready:
        out["addresses"] = ready
    if unready:
        out["notReadyAddresses"] = unready
    if port_list:
        out["ports"] = port_list
    return out


def subsets_for(
    addresses: Iterable[tuple[str, int]],
    port_name: str = "http",
    *,
    not_ready: Iterable[tuple[str, int]] = (),
) -> list[Obj]:
    """Subsets for ``(ip, port)`` pairs, one subset per port number (how the endpoints
    controller groups pods whose ports differ): lets local test backends, all on 127.0.0.1
    with different ports, be the endpoints of one service."""
    by_port: dict[int, tuple[list[str], list[str]]] = {}
    for ip, port in addresses:
        by_port.setdefault(port, ([], []))[0].append(ip)
    for ip, port in not_ready:
        by_port.setdefault(port, ([], []))[1].append(ip)
    return [
        endpoint_subset(ready, {port_name: port}, not_ready=unready)
        for port, (ready, unready) in sorted(by_port.items())
    ]


def endpoints_object(
    namespace: str,
    name: str,
    subsets: Iterable[Mapping[str, Any]] = (),
    *,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    """An ``Endpoints`` object (``subsets`` omitted when empty, as the API does)."""
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    out: Obj = {"kind": "Endpoints", "apiVersion": "v1", "metadata": meta}
    subset_list = [dict(s) for s in subsets]
    if subset_list:
        out["subsets"] = subset_list
    return out


def service_object(
    namespace: str,
    name: str,
    ports: Iterable[Mapping[str, Any]] = (),
    *,
    labels: Mapping[str, str] | None = None,
    selector: Mapping[str, str] | None = None,
    cluster_ip: str = "10.96.0.10",
    load_balancer: Iterable[str | Mapping[str, Any]] | None = None,
) -> Obj:
    """A ``Service`` of type ClusterIP. Each port is a dict with ``port`` and optionally
    ``name``, ``targetPort`` (a number or a container port name; defaults to ``port``, as the
    API server defaults it) and ``protocol`` (``TCP``).

    With ``load_balancer`` (even empty) it is of type ``LoadBalancer``, and its
    ``status.loadBalancer.ingress`` lists those entries: an IP string, or a
    ``LoadBalancerIngress`` dict (``ip``, ``hostname``); empty: no load balancer provisioned
    yet (the API omits ``ingress`` then)."""
    meta: Obj = {"name": name, "namespace": namespace}
    if labels:
        meta["labels"] = dict(labels)
    port_list = []
    for p in ports:
        q: Obj = {"protocol": "TCP", **p}
        q.setdefault("targetPort", q["port"])
        port_list.append(q)
    spec: Obj = {"ports": port_list, "clusterIP": cluster_ip, "type": "ClusterIP"}
    if selector:
        spec["selector"] = dict(selector)
    lb: Obj = {}
    if load_balancer is not None:
        spec["type"] = "LoadBalancer"
        ingress = [{"ip": e} if isinstance(e, str) else dict(e) for e in load_balancer]
        if ingress:
            lb["ingress"] = ingress
    return {
        "kind": "Service",
        "apiVersion": "v1",
        "metadata": meta,
        "spec": spec,
        "status": {"loadBalancer": lb},
    }


def ingress_backend(service: str, port: int | str) -> Obj:
    """A ``networking.k8s.io/v1`` ``IngressBackend``: ``{"service": {"name": ..., "port":
    {"number": N}}}`` (or ``{"name": "<port name>"}``)."""
    ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service, "port": ref}}


def ingress_rule(
    host: str | None,
    paths: Iterable[tuple[str | None, str | None, Mapping[str, Any]]],
) -> Obj:
    """An ``IngressRule``: ``host`` (omitted when None) and HTTP paths, each ``(path,
    pathType, backend)`` (``path``/``pathType`` omitted when None)."""
    http_paths = []
    for path, path_type, backend in paths:
        entry: Obj = {"backend": dict(backend)}
        if path is not None:
            entry["path"] = path
        if path_type is not None:
            entry["pathType"] = path_type
        http_paths.append(entry)
    out: Obj = {"http": {"paths": http_paths}}
    if host is not None:
        out["host"] = host
    return out


def ingress_object(
    namespace: str,
    name: str,
    rules: Iterable[Mapping[str, Any]] = (),
    *,
    default_backend: Mapping[str, Any] | None = None,
    annotations: Mapping[str, str] | None = None,
    ingress_class_name: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Obj:
    """A ``networking.k8s.io/v1`` ``Ingress`` (``spec.defaultBackend``,
    ``spec.ingressClassName``, ``spec.rules``; see :func:`ingress_rule`)."""
    meta: Obj = {"name": name, "namespace": namespace}
    if annotations:
        meta["annotations"] = dict(annotations)
    if labels:
        meta["labels"] = dict(labels)
    spec: Obj = {}
    rule_list = [dict(r) for r in rules]
    if rule_list:
        spec["rules"] = rule_list
    if default_backend is not None:
        spec["defaultBackend"] = dict(default_backend)
    if ingress_class_name is not None:
        spec["ingressClassName"] = ingress_class_name
    return {
        "kind": "Ingress",
        "apiVersion": API_VERSIONS["ingresses"],
        "metadata": meta,
        "spec": spec,
        "status": {"loadBalancer": {}},
    }


# ---------------------------------------------------------------------------------------------
# Selectors
# ---------------------------------------------------------------------------------------------

_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z"
)
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_SET_REQ = re.compile(r"\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^()]*)\)\s*\Z")

Matcher = Callable[[Mapping[str, str]], bool]


def _split_top(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _check_key(key: str) -> str:
    if len(key) > 316 or not _LABEL_KEY.match(key):
        raise ValueError(f"invalid label key {key!r}")
    return key


def _check_value(value: str) -> str:
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        raise ValueError(f"invalid label value: {value!r}")
    return value


#: one label requirement: (key, operator, values); operators: in, notin, exists, !exists
_Requirement = tuple[str, str, frozenset[str]]


def _satisfied(labels: Mapping[str, str], req: _Requirement) -> bool:
    key, op, values = req
    if op == "exists":
        return key in labels
    if op == "!exists":
        return key not in labels
    if op == "in":
        return labels.get(key) in values
    return labels.get(key) not in values  # notin (and !=: absent labels match)


def parse_label_selector(text: str) -> Matcher:
    """A label selector string → a predicate over labels; ValueError when malformed."""
    reqs: list[_Requirement] = []
    for raw in _split_top(text) if text.strip() else []:
        part = raw.strip()
        if not part:
            raise ValueError(f"empty requirement in label selector {text!r}")
        m = _SET_REQ.match(part)
        if m:
            values = frozenset(_check_value(v.strip()) for v in m.group(3).split(","))
            reqs.append((_check_key(m.group(1)), m.group(2), values))
            continue
        if part.startswith("!"):
            reqs.append((_check_key(part[1:].strip()), "!exists", frozenset()))
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, _, value = part.partition(op)
                values = frozenset([_check_value(value.strip())])
                reqs.append((_check_key(key.strip()), "notin" if op == "!=" else "in", values))
                break
        else:
            reqs.append((_check_key(part), "exists", frozenset()))
    return lambda labels: all(_satisfied(labels, r) for r in reqs)


def parse_field_selector(text: str) -> Callable[[Obj], bool]:
    """A field selector over ``metadata.name`` / ``metadata.namespace``; ValueError else."""
    reqs: list[tuple[str, bool, str]] = []  # (metadata attribute, equal?, value)
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        for op in ("!=", "==", "="):
            if op in part:
                fld, _, value = part.partition(op)
                fld = fld.strip()
                if fld not in ("metadata.name", "metadata.namespace"):
                    raise ValueError(f'field label not supported: "{fld}"')
                reqs.append((fld.split(".", 1)[1], op != "!=", value.strip()))
                break
        else:
            raise ValueError(f"invalid selector: '{text}'; can't understand '{part}'")
    return lambda obj: all((_meta(obj).get(a) == v) == eq for a, eq, v in reqs)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    labels = _meta(obj).get("labels")
    return labels if isinstance(labels, Mapping) else {}


# ---------------------------------------------------------------------------------------------
# The store: objects, one resourceVersion counter, the change history
# ---------------------------------------------------------------------------------------------


@dataclass
class _Change:
    rv: int
    resource: str
    namespace: str
    name: str
    old: Obj | None
    new: Obj | None


@dataclass
class RequestRecord:
    """One API request the double received (``kind``: get, list, watch, write, control)."""

    method: str
    path: str
    query: dict[str, str]
    kind: str
    status: int = 0
    time: float = field(default_factory=time.monotonic)


class _Store:
    """Thread-safe: controls run in the test's thread, the server in its own."""

    def __init__(self, history: int) -> None:
        self.lock = threading.RLock()
        #: the last resourceVersion given (a new cluster's store is not at zero: "0" means
        #: "any version" in a watch or list request)
        self.rv = 1
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.history: deque[_Change] = deque()
        self.history_limit = history
        #: a watch from resourceVersion N is possible while N >= compacted
        self.compacted = 0
        self.on_change: Callable[[], None] = lambda: None
        self.state_file: Path | None = None

    @staticmethod
    def _key(resource: str, obj: Mapping[str, Any]) -> tuple[str, str, str]:
        meta = _meta(obj)
        name, ns = meta.get("name"), meta.get("namespace")
        if not isinstance(name, str) or not name or not isinstance(ns, str) or not ns:
            raise ValueError("metadata.name and metadata.namespace are required")
        if resource not in RESOURCES:
            raise ValueError(f"unknown resource {resource!r}")
        return resource, ns, name

    def put(self, resource: str, obj: Mapping[str, Any]) -> Obj:
        """Create or replace; returns the stored object (with its new resourceVersion)."""
        key = self._key(resource, obj)
        with self.lock:
            old = self.objects.get(key)
            self.rv += 1
            new: Obj = json.loads(json.dumps(obj))  # a private deep copy
            kind, _ = RESOURCES[resource]
            new["kind"], new["apiVersion"] = kind, API_VERSIONS[resource]
            meta = new.setdefault("metadata", {})
            meta["resourceVersion"] = str(self.rv)
            if old is not None:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            else:
                meta["uid"] = str(uuid.uuid4())
                meta["creationTimestamp"] = _now()
            self.objects[key] = new
            self._record(_Change(self.rv, *key, old, new))
            copy: Obj = json.loads(json.dumps(new))
            return copy

    def delete(self, resource: str, namespace: str, name: str) -> Obj | None:
        """Delete; returns the deleted object (None when it did not exist: no change)."""
        with self.lock:
            old = self.objects.pop((resource, namespace, name), None)
            if old is None:
                return None
            self.rv += 1
            self._record(_Change(self.rv, resource, namespace, name, old, None))
            gone: Obj = json.loads(json.dumps(old))
            gone["metadata"]["resourceVersion"] = str(self.rv)
            return gone

    def _record(self, change: _Change) -> None:
        self.history.append(change)
        while len(self.history) > self.history_limit:
            self.compacted = self.history.popleft().rv
        self._save()
        self.on_change()

    def compact(self) -> None:
        with self.lock:
            self.history.clear()
            self.compacted = self.rv

    def matching(self, resource: str, match: Callable[[Obj], bool]) -> list[Obj]:
        with self.lock:
            return [
                json.loads(json.dumps(o))
                for (r, _, _), o in sorted(self.objects.items())
                if r == resource and match(o)
            ]

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.lock:
            obj = self.objects.get((resource, namespace, name))
            return None if obj is None else json.loads(json.dumps(obj))

    def changes_after(self, rv: int) -> tuple[list[_Change], int] | None:
        """Changes after ``rv`` and the current version; None when ``rv`` is too old."""
        with self.lock:
            if rv < self.compacted:
                return None
            return [c for c in self.history if c.rv > rv], self.rv

    # -- persistence (subprocess mode: an API server restarted in front of the same etcd) --
    def _save(self) -> None:
        if self.state_file is None:
            return
        data = {
            "resourceVersion": self.rv,
            "objects": [[r, o] for (r, _, _), o in sorted(self.objects.items())],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_file)

    def load(self, path: Path) -> None:
        self.state_file = path
        if not path.exists():
            return
        data = json.loads(path.read_text())
        with self.lock:
            self.rv = int(data["resourceVersion"])
            self.objects = {self._key(r, o): o for r, o in data["objects"]}
            self.history.clear()
            self.compacted = self.rv  # the restarted server's watch cache has no history


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------------
# Watches
# ---------------------------------------------------------------------------------------------


class _Watcher:
    __slots__ = ("request", "signal", "wake")

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.wake = asyncio.Event()
        #: None, or what a control asked: "drop", "end", "expire", "close"
        self.signal: str | None = None

    def poke(self, signal: str | None = None) -> None:
        if signal is not None and self.signal is None:
            self.signal = signal
        self.wake.set()


def _event_for(change: _Change, matches: Callable[[Obj], bool]) -> Obj | None:
    old_ok = change.old is not None and matches(change.old)
    new_ok = change.new is not None and matches(change.new)
    if new_ok and not old_ok:
        return {"type": "ADDED", "object": change.new}
    if new_ok:
        return {"type": "MODIFIED", "object": change.new}
    if old_ok:
        # as the watch cache does: the previous content with the change's resourceVersion
        assert change.old is not None
        gone = json.loads(json.dumps(change.old))
        gone["metadata"]["resourceVersion"] = str(change.rv)
        return {"type": "DELETED", "object": gone}
    return None


def _too_old(requested: int, compacted: int) -> Obj:
    return status_object(410, "Expired", f"too old resource version: {requested} ({compacted})")


# ---------------------------------------------------------------------------------------------
# The server
# ---------------------------------------------------------------------------------------------


class _Editing:
    """What both doubles (in-process and subprocess) offer on top of ``put_object``."""

    def put_object(self, resource: str, obj: Mapping[str, Any]) -> Obj:
        raise NotImplementedError

    def set_endpoints(
        self,
        namespace: str,
        name: str,
        subsets: Iterable[Mapping[str, Any]] = (),
        *,
        labels: Mapping[str, str] | None = None,
    ) -> int:
        """Create or replace an Endpoints object; returns its resourceVersion."""
        obj = self.put_object(
            "endpoints", endpoints_object(namespace, name, subsets, labels=labels)
        )
        return int(obj["metadata"]["resourceVersion"])


class KubeApiDouble(_Editing):
    """The API double in a background thread (see the module docstring).

    :param port: where to listen on 127.0.0.1 (a free port by default; kept across restarts).
    :param history: how many changes are kept for watches to resume from.
    :param bookmark_interval: seconds between ``BOOKMARK`` events (to watches that allow them).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        history: int = 1000,
        bookmark_interval: float = 60.0,
    ) -> None:
        self.host = LOCALHOST
        self.port = port or free_port()
        self.bookmark_interval = bookmark_interval
        #: answer a too-old resourceVersion with HTTP 410 instead of an ERROR event
        self.gone_as_status = False
        self.store = _Store(history)
        self.store.on_change = self._changed
        self.log: list[RequestRecord] = []
        self.errors: list[str] = []
        self._log_lock = threading.Lock()
        self._fail_status: int | None = None
        self._fail_count: int | None = None
        self._hang = False
        self._unhung: asyncio.Event | None = None
        self._watchers: set[_Watcher] = set()
        self._streams_opened = 0
        self._loops = LoopThread("kube-api-double", self._loop_error)
        self._runner: web.AppRunner | None = None

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    @property
    def _loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loops.loop

    def start(self, timeout: float = 10.0) -> KubeApiDouble:
        """Start serving (again) on :attr:`port`."""
        self._loops.start(timeout)
        if self._runner is None:
            self._call(self._serve(), timeout)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: every connection is cut, new ones are refused. The objects and the
        history stay (use :meth:`start` to serve again)."""
        if self._loop is not None and self._runner is not None:
            self._call(self._unserve(), timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop serving and end the thread (idempotent)."""
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self.stop(timeout)
        self._loops.close(timeout)

    def __enter__(self) -> KubeApiDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return self._loops.call(coro, timeout)

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(str(context.get("exception") or context.get("message")))

    async def _serve(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/_double/{op}", self._control)
        app.router.add_route("*", "/api/v1/{rest:.*}", self._api)
        app.router.add_route("*", "/apis/{group}/{version}/{rest:.*}", self._api)
        app.router.add_route("*", "/{rest:.*}", self._not_found)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def _unserve(self) -> None:
        runner, self._runner = self._runner, None
        self._unhung = None  # (requests held by hang() are cut with their connections)
        for w in list(self._watchers):
            transport = w.request.transport
            if transport is not None:
                transport.abort()
            w.poke("close")
        if runner is not None:
            if runner.server is not None:
                for handler in runner.server.connections:
                    if handler.transport is not None:
                        handler.transport.abort()
            await runner.cleanup()

    # -- what tests look at ----------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        """The store's current resourceVersion."""
        return self.store.rv

    @property
    def active_watches(self) -> int:
        """How many watch streams are open now."""
        return len(self._watchers)

    @property
    def watch_streams_opened(self) -> int:
        """How many watch streams were opened so far (answered 200 and following changes)."""
        return self._streams_opened

    @property
    def open_connections(self) -> int:
        """How many client connections the server holds now."""
        runner = self._runner
        if runner is None or runner.server is None:
            return 0
        return len(runner.server.connections)

    def requests(self, kind: str | None = None, resource: str | None = None) -> list[RequestRecord]:
        """The requests received, optionally only one kind (``get``, ``list``, ``watch``,
        ``write``, ``control``) and one resource (``endpoints``, ``services``)."""
        with self._log_lock:
            out = list(self.log)
        return [
            r
            for r in out
            if (kind is None or r.kind == kind) and (resource is None or f"/{resource}" in r.path)
        ]

    def clear_log(self) -> None:
        with self._log_lock:
            self.log.clear()

    # -- test controls ---------------------------------------------------------------------
    def put_object(self, resource: str, obj: Mapping[str, Any]) -> Obj:
        """Create or replace an object (works while stopped); returns it as stored."""
        return self.store.put(resource, obj)

    def delete_object(self, resource: str, namespace: str, name: str) -> Obj | None:
        """Delete an object (works while stopped); the deleted object or None."""
        return self.store.delete(resource, namespace, name)

    def delete_endpoints(self, namespace: str, name: str) -> None:
        self.delete_object("endpoints", namespace, name)

    def set_service(
        self,
        namespace: str,
        name: str,
        ports: Iterable[Mapping[str, Any]] = (),
        *,
        labels: Mapping[str, str] | None = None,
        load_balancer: Iterable[str | Mapping[str, Any]] | None = None,
    ) -> int:
        """Create or replace a Service (of type LoadBalancer with ``load_balancer``: see
        :func:`service_object`); returns its resourceVersion."""
        obj = self.put_object(
            "services",
            service_object(namespace, name, ports, labels=labels, load_balancer=load_balancer),
        )
        return int(obj["metadata"]["resourceVersion"])

    def delete_service(self, namespace: str, name: str) -> None:
        self.delete_object("services", namespace, name)

    def set_ingress(
        self,
        namespace: str,
        name: str,
        rules: Iterable[Mapping[str, Any]] = (),
        *,
        default_backend: Mapping[str, Any] | None = None,
        annotations: Mapping[str, str] | None = None,
        ingress_class_name: str | None = None,
    ) -> int:
        """Create or replace an Ingress (see :func:`ingress_object`); its resourceVersion.
        For other shapes (``extensions/v1beta1`` field names), ``put_object("ingresses",
        obj)``."""
        obj = self.put_object(
            "ingresses",
            ingress_object(
                namespace,
                name,
                rules,
                default_backend=default_backend,
                annotations=annotations,
                ingress_class_name=ingress_class_name,
            ),
        )
        return int(obj["metadata"]["resourceVersion"])

    def delete_ingress(self, namespace: str, name: str) -> None:
        self.delete_object("ingresses", namespace, name)

    def drop_watches(self) -> None:
        """Cut every open watch connection mid-stream (no terminating chunk)."""
        self._signal_watches("drop")

    def end_watches(self) -> None:
        """End every open watch stream cleanly (as when ``timeoutSeconds`` passes)."""
        self._signal_watches("end")

    def expire_watches(self) -> None:
        """Send an ``ERROR`` event with a 410 ``Expired`` Status on every open watch, then end
        it (what the server does when a watcher falls behind the watch cache)."""
        self._signal_watches("expire")

    def compact(self) -> None:
        """Forget the history: watches from any earlier resourceVersion get 410."""
        self.store.compact()

    def hang(self, on: bool = True) -> None:
        """While on, API requests are accepted but not answered (a wedged server or a
        black-holed proxy); they are answered normally once it is turned off."""
        self._hang = on
        loop = self._loop
        if not on and loop is not None and self._runner is not None:

            async def release() -> None:
                if self._unhung is not None:
                    self._unhung.set()
                    self._unhung = None

            self._call(release())

    def fail(self, status: int | None = 500, count: int | None = None) -> None:
        """Answer API requests with a ``Status`` of code ``status`` (the next ``count`` ones,
        or all until ``fail(None)``). Open watch streams are not affected."""
        self._fail_status = status
        self._fail_count = count if status is not None else None

    def wait_watches(self, n: int, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` watch streams are open."""
        deadline = time.monotonic() + timeout
        while self.active_watches < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _signal_watches(self, signal: str) -> None:
        loop = self._loop
        if loop is None or self._runner is None:
            return

        async def poke() -> None:
            for w in list(self._watchers):
                w.poke(signal)

        self._call(poke())

    def _changed(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for w in self._watchers:
            w.poke()

    # -- HTTP ------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        kind = _request_kind(request)
        record = RequestRecord(request.method, request.path, dict(request.query), kind)
        with self._log_lock:
            self.log.append(record)
        if kind != "control" and self._hang:
            if self._unhung is None:
                self._unhung = asyncio.Event()
            await self._unhung.wait()
        if kind != "control" and self._fail_status is not None:
            status = self._fail_status
            if self._fail_count is not None:
                self._fail_count -= 1
                if self._fail_count <= 0:
                    self._fail_status = self._fail_count = None
            record.status = status
            return _status_response(
                status_object(status, _REASONS.get(status, "InternalError"), "injected failure")
            )
        response: web.StreamResponse = await handler(request)
        record.status = response.status
        return response

    async def _not_found(self, request: web.Request) -> web.Response:
        return _status_response(
            status_object(404, "NotFound", "the server could not find the requested resource")
        )

    async def _api(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.match_info["rest"].split("/") if p]
        group = request.match_info.get("group")
        api_version = "v1" if group is None else f"{group}/{request.match_info['version']}"
        watch_path = bool(parts) and parts[0] == "watch"
        if watch_path:
            parts = parts[1:]
        namespace: str | None = None
        if len(parts) >= 2 and parts[0] == "namespaces":
            namespace, parts = parts[1], parts[2:]
        if (
            not parts
            or parts[0] not in RESOURCES
            or len(parts) > 2
            or API_VERSIONS[parts[0]] != api_version
        ):
            return await self._not_found(request)
        resource = parts[0]
        name = parts[1] if len(parts) == 2 else None
        method = request.method
        if method in ("POST", "PUT", "DELETE"):
            if namespace is None or watch_path:
                return _status_response(status_object(405, "MethodNotAllowed", "not allowed"))
            return await self._write(request, resource, namespace, name)
        if method != "GET":
            return _status_response(status_object(405, "MethodNotAllowed", "not allowed"))
        query = request.query
        if name is not None and not watch_path:
            if namespace is None:
                return await self._not_found(request)
            obj = self.store.get(resource, namespace, name)
            if obj is None:
                return _not_found_object(resource, name)
            return web.json_response(obj)
        try:
            fields = parse_field_selector(query.get("fieldSelector", ""))
            labels = parse_label_selector(query.get("labelSelector", ""))
        except ValueError as e:
            return _status_response(status_object(400, "BadRequest", str(e)))

        def matches(obj: Obj) -> bool:
            meta = _meta(obj)
            return (
                (namespace is None or meta.get("namespace") == namespace)
                and (name is None or meta.get("name") == name)
                and fields(obj)
                and labels(_labels(obj))
            )

        if watch_path or query.get("watch", "").lower() in ("true", "1"):
            return await self._watch(request, resource, matches)
        with self.store.lock:
            items = self.store.matching(resource, matches)
            rv = self.store.rv
        for item in items:  # items of a list carry no kind/apiVersion
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return web.json_response(
            {
                "kind": RESOURCES[resource][1],
                "apiVersion": API_VERSIONS[resource],
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )

    async def _write(
        self, request: web.Request, resource: str, namespace: str, name: str | None
    ) -> web.StreamResponse:
        kind = RESOURCES[resource][0]
        if request.method == "DELETE":
            if name is None:
                return _status_response(status_object(405, "MethodNotAllowed", "not allowed"))
            gone = self.store.delete(resource, namespace, name)
            if gone is None:
                return _not_found_object(resource, name)
            return web.json_response(gone)
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
        except ValueError as e:
            return _status_response(status_object(400, "BadRequest", f"bad body: {e}"))
        meta = body.setdefault("metadata", {})
        if not isinstance(meta, dict):
            return _status_response(status_object(400, "BadRequest", "bad metadata"))
        if meta.get("namespace", namespace) != namespace:
            return _status_response(
                status_object(400, "BadRequest", "the namespace of the object does not match")
            )
        meta["namespace"] = namespace
        if request.method == "POST":
            if name is not None or not meta.get("name"):
                return _status_response(status_object(400, "BadRequest", "name required"))
            with self.store.lock:
                if self.store.get(resource, namespace, meta["name"]) is not None:
                    return _status_response(
                        status_object(
                            409,
                            "AlreadyExists",
                            f'{resource} "{meta["name"]}" already exists',
                            {"name": meta["name"], "kind": resource},
                        )
                    )
                stored = self.store.put(resource, body)
            return web.json_response(stored, status=201)
        if name is None:
            return _status_response(status_object(405, "MethodNotAllowed", "not allowed"))
        if meta.setdefault("name", name) != name:
            return _status_response(
                status_object(400, "BadRequest", "the name of the object does not match")
            )
        with self.store.lock:
            current = self.store.get(resource, namespace, name)
            exists = current is not None
            if not exists and kind != "Endpoints":  # AllowCreateOnUpdate: endpoints only
                return _not_found_object(resource, name)
            wanted = meta.get("resourceVersion")
            if (
                current is not None
                and wanted not in (None, "")
                and str(wanted) != current["metadata"]["resourceVersion"]
            ):
                # optimistic concurrency: an update must carry the current resourceVersion
                group = API_VERSIONS[resource].rpartition("/")[0]
                what = f"{resource}.{group}" if group else resource
                return _status_response(
                    status_object(
                        409,
                        "Conflict",
                        f'Operation cannot be fulfilled on {what} "{name}": the object has '
                        "been modified; please apply your changes to the latest version and "
                        "try again",
                        {"name": name, "kind": resource},
                    )
                )
            stored = self.store.put(resource, body)
        return web.json_response(stored, status=200 if exists else 201)

    async def _watch(
        self, request: web.Request, resource: str, matches: Callable[[Obj], bool]
    ) -> web.StreamResponse:
        query = request.query
        rv_text = query.get("resourceVersion", "")
        try:
            timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
            requested = int(rv_text) if rv_text not in ("", "0") else None
            if requested is not None and requested < 0:
                raise ValueError
        except ValueError:
            return _status_response(
                status_object(400, "BadRequest", "invalid resourceVersion or timeoutSeconds")
            )
        bookmarks = query.get("allowWatchBookmarks", "").lower() in ("true", "1")
        initial: list[Obj] = []
        expired: Obj | None = None
        with self.store.lock:
            if requested is None:
                since = self.store.rv
                initial = [
                    {"type": "ADDED", "object": o} for o in self.store.matching(resource, matches)
                ]
            elif requested < self.store.compacted:
                since = requested
                expired = _too_old(requested, self.store.compacted)
            else:
                since = requested
        if expired is not None and self.gone_as_status:
            return _status_response(expired)
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if expired is not None:
            await _send(response, {"type": "ERROR", "object": expired})
            await response.write_eof()
            return response
        watcher = _Watcher(request)
        self._watchers.add(watcher)
        self._streams_opened += 1
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        try:
            for event in initial:
                await _send(response, event)
            while True:
                got = self.store.changes_after(since)
                if got is None:
                    await _send(
                        response, {"type": "ERROR", "object": _too_old(since, self.store.compacted)}
                    )
                    break
                changes, current = got
                for change in changes:
                    if change.resource == resource:
                        change_event = _event_for(change, matches)
                        if change_event is not None:
                            await _send(response, change_event)
                since = max(since, current)
                signal = watcher.signal
                if signal == "drop" or signal == "close":
                    transport = request.transport
                    if transport is not None:
                        transport.abort()
                    return response
                if signal == "end":
                    break
                if signal == "expire":
                    await _send(response, {"type": "ERROR", "object": _too_old(since, since + 1)})
                    break
                now = loop.time()
                if bookmarks and now >= next_bookmark:
                    kind = RESOURCES[resource][0]
                    await _send(
                        response,
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": kind,
                                "apiVersion": API_VERSIONS[resource],
                                "metadata": {"resourceVersion": str(since)},
                            },
                        },
                    )
                    next_bookmark = now + self.bookmark_interval
                wait = next_bookmark - now if bookmarks else None
                if deadline is not None:
                    if now >= deadline:
                        break
                    wait = deadline - now if wait is None else min(wait, deadline - now)
                watcher.wake.clear()
                if watcher.signal is None and self.store.changes_after(since) == ([], since):
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await watcher.wake.wait()
        finally:
            self._watchers.discard(watcher)
        await response.write_eof()
        return response

    async def _control(self, request: web.Request) -> web.StreamResponse:
        op = request.match_info["op"]
        if op == "state" and request.method == "GET":
            return web.json_response(
                {
                    "resourceVersion": self.store.rv,
                    "compacted": self.store.compacted,
                    "activeWatches": self.active_watches,
                    "openConnections": self.open_connections,
                    "requests": [
                        {
                            "method": r.method,
                            "path": r.path,
                            "query": r.query,
                            "kind": r.kind,
                            "status": r.status,
                        }
                        for r in self.requests()
                    ],
                }
            )
        if request.method != "POST":
            return _status_response(status_object(405, "MethodNotAllowed", "POST"))
        body: Any = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return _status_response(status_object(400, "BadRequest", "bad JSON"))
        if op in ("drop", "end", "expire"):
            for w in list(self._watchers):
                w.poke(op)
        elif op == "compact":
            self.compact()
        elif op == "hang":
            self._hang = bool(body.get("value", True))
            if not self._hang and self._unhung is not None:
                self._unhung.set()
                self._unhung = None
        elif op == "fail":
            self.fail(body.get("status"), body.get("count"))
        elif op == "gone-as-status":
            self.gone_as_status = bool(body.get("value", True))
        else:
            return await self._not_found(request)
        return web.json_response({"ok": True})


_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _request_kind(request: web.Request) -> str:
    path = request.path
    if path.startswith("/_double/"):
        return "control"
    if request.method != "GET":
        return "write"
    if "/watch/" in path or request.query.get("watch", "").lower() in ("true", "1"):
        return "watch"
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == "apis":  # /apis/{group}/{version}/...: as /api/v1/...
        parts = parts[1:]
    # /api/v1/namespaces/{ns}/{resource}/{name} or /api/v1/{resource}
    if len(parts) == 6 and parts[2] == "namespaces":
        return "get"
    return "list"


def _status_response(status: Obj) -> web.Response:
    return web.json_response(status, status=int(status["code"]))


def _not_found_object(resource: str, name: str) -> web.Response:
    return _status_response(
        status_object(
            404, "NotFound", f'{resource} "{name}" not found', {"name": name, "kind": resource}
        )
    )


async def _send(response: web.StreamResponse, event: Obj) -> None:
    await response.write(json.dumps(event, separators=(",", ":")).encode() + b"\n")


# ---------------------------------------------------------------------------------------------
# Subprocess mode
# ---------------------------------------------------------------------------------------------


class KubeApiProcess(_Editing):
    """The double as a subprocess (``python -m turnout_namer_k8s.testing``), for tests that
    kill the API server for real (SIGKILL by PID). With ``state_file``, objects and the
    resourceVersion survive a restart (an API server in front of the same etcd), but the
    history does not: watches resuming from before the restart get 410 and must re-list.
    Controls go through the real write verbs and ``/_double/...``."""

    def __init__(self, port: int | None = None, *, state_file: str | os.PathLike[str]) -> None:
        self.host = LOCALHOST
        self.port = port or free_port()
        self.state_file = Path(state_file)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 15.0) -> KubeApiProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = [
            sys.executable,
            "-m",
            "turnout_namer_k8s.testing",
            "--port",
            str(self.port),
            "--state-file",
            str(self.state_file),
        ]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        try:
            wait_port(self.host, self.port, timeout)
        except TimeoutError:
            self.kill()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the process (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signals.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def __enter__(self) -> KubeApiProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def _http(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return json.loads(e.read() or b"null")

    def put_object(self, resource: str, obj: Mapping[str, Any]) -> Obj:
        meta = _meta(obj)
        return dict(self._http("PUT", api_path(resource, meta["namespace"], meta["name"]), obj))

    def delete_endpoints(self, namespace: str, name: str) -> None:
        self._http("DELETE", f"/api/v1/namespaces/{namespace}/endpoints/{name}")

    def state(self) -> dict[str, Any]:
        return dict(self._http("GET", "/_double/state"))

    def drop_watches(self) -> None:
        self._http("POST", "/_double/drop", {})

    def compact(self) -> None:
        self._http("POST", "/_double/compact", {})

    def fail(self, status: int | None = 500, count: int | None = None) -> None:
        self._http("POST", "/_double/fail", {"status": status, "count": count})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A Kubernetes API double (core/v1 Endpoints "
        "and Services) on 127.0.0.1, for tests."
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-file", help="keep objects and the resourceVersion here")
    parser.add_argument("--history", type=int, default=1000)
    args = parser.parse_args(argv)
    double = KubeApiDouble(args.port, history=args.history)
    if args.state_file:
        double.store.load(Path(args.state_file))
    double.start()
    stop = threading.Event()
    signals.signal(signals.SIGTERM, lambda *_: stop.set())
    signals.signal(signals.SIGINT, lambda *_: stop.set())
    print(f"kube api double listening on {double.url}", flush=True)
    stop.wait()
    double.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
