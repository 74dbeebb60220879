"""A Consul HTTP API double, for tests of everything that talks to Consul (no real agent
runs here). Written from Consul's API documentation (``api-docs/features/blocking``,
``catalog``, ``health``, ``agent/service``, ``agent/check``, ``kv``) and from what Linkerd 1's
consul module calls; it is the specification in ``reference/components.md`` §5. It ships with
the io.l5d.consul namer (``from turnout_namer_consul.testing import ConsulDouble``), so that
users of the plugin can test their own configurations against it.

What it reproduces:

- **One global raft-like index**, bumped by every write. Every ``/v1/catalog``, ``/v1/health``
  and ``/v1/kv`` answer carries ``X-Consul-Index``, ``X-Consul-KnownLeader: true``,
  ``X-Consul-LastContact: 0`` (and ``X-Consul-Effective-Consistency``).
- **Blocking queries**: ``?index=N`` (N > 0) holds the request until the index exceeds N or
  ``wait`` passes (Go durations: ``10s``, ``5m``, ``100ms``, ``1m30s``; default 5 min, capped
  at 10 min, plus up to wait/16 of jitter as Consul adds); on timeout the unchanged body comes
  back with the same index. Any write wakes every blocked query (Consul's wake-ups need not
  mean a change of *your* result either).
- ``GET /v1/agent/self``, ``/v1/catalog/datacenters``, ``/v1/catalog/services``,
  ``/v1/catalog/service/:name?tag=``, ``/v1/health/service/:name?passing=&tag=``,
  ``PUT /v1/agent/service/register`` (JSON keys matched case-insensitively, as Consul does:
  python-consul2 sends ``name``/``id``/``port``), ``/v1/agent/service/deregister/:id``,
  ``/v1/agent/service/maintenance/:id``, ``/v1/agent/check/{pass,warn,fail}/:id`` and
  ``/v1/agent/check/update/:id`` (TTL checks), ``PUT /v1/catalog/register|deregister``, and
  the KV store (``GET ?raw|?recurse|?keys&separator=``, ``PUT ?cas=&flags=``,
  ``DELETE ?recurse&cas=``; a missing key is 404 *with* ``X-Consul-Index``). As Consul's KVS
  endpoint, a KV read's ``X-Consul-Index`` (and what a blocking query on it waits for) is the
  key's ``ModifyIndex`` when it exists, the highest index under the prefix for ``?keys`` and
  ``?recurse`` (deletions count, through tombstones), the KV table's index otherwise.
- Service names and ``tag`` filters match case-insensitively (Consul's catalog does);
  ``ServiceAddress`` is ``""`` when a service was registered without an address; a check
  registered without a ``Status`` starts ``critical`` (as on a real agent); every node has a
  passing ``serfHealth`` check; ``?passing`` drops entries with any non-passing check.
- ``?dc=<other>`` → 500 ``No path to datacenter``; ``?stale`` and ``?consistent`` accepted
  (both at once → 400); malformed ``index``/``wait`` → 400.
- Optional ACL enforcement (``acl_token=``): a ``/v1`` request without the token
  (``X-Consul-Token``, ``Authorization: Bearer`` or ``?token=``) → 403 ``Permission denied``,
  with a wrong one → 403 ``ACL not found``.
- Optional HTTPS, as an agent with ``tls { defaults { cert_file, key_file } }`` serves its
  HTTPS port (``tls_cert=``, ``tls_key=``), and with ``verify_incoming`` (``tls_client_ca=``):
  the TLS handshake fails unless the client presents a certificate issued by that CA. The
  subject common name of a verified client certificate is recorded with each request.

Test controls (not Consul API): flip check status, inject 5xx answers, delays, connections
closed without an answer, drop the connections of blocked queries or all connections, make
the index go backwards (waking blocked queries with the lower index) or answer index 0, stop
listening (refused) and start again with the state kept, and a log of every request.

Three ways to run it:

- :class:`ConsulServer` in the test's own event loop (``await server.start()``);
- :class:`ConsulDouble`: the same in a background thread, with a synchronous API (most tests);
- :class:`ConsulDoubleProcess`: ``python -m turnout_namer_consul.testing --port N
  [--data-dir D]`` as a subprocess (state persisted in ``D`` across ``kill -9`` and
  restart), controlled over HTTP (``POST /test/control``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import signal as signals
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler
from turnout.testing.loop import LoopThread
from turnout.testing.net import LOCALHOST, free_port, port_open
from turnout.testing.process import die_with_parent

__all__ = [
    "DEFAULT_WAIT",
    "MAX_WAIT",
    "ConsulDouble",
    "ConsulDoubleProcess",
    "ConsulServer",
    "ConsulState",
    "RecordedCall",
    "parse_wait",
    "server_ssl_context",
]

#: Consul's default and maximum blocking wait, in seconds
DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0

HEALTH_STATUSES = ("passing", "warning", "critical", "maintenance")

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_wait(text: str) -> float:
    """A Go duration (``10s``, ``5m``, ``100ms``, ``1m30s``) in seconds; ValueError otherwise."""
    if not text:
        raise ValueError("empty duration")
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION.match(text, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total


class ApiError(Exception):
    """An HTTP error answer of the API: ``status`` and a plain-text body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _ci(data: Any) -> dict[str, Any]:
    """A JSON object with lower-cased keys (Consul decodes field names case-insensitively)."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ApiError(400, "Request decode failed: expected a JSON object")
    return {str(k).lower(): v for k, v in data.items()}


def _str_map(value: Any) -> dict[str, str]:
    if not value:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, "Request decode failed: expected a map of strings")
    return {str(k): str(v) for k, v in value.items()}


# ---------------------------------------------------------------------------------------------
# State
# ---------------------------------------------------------------------------------------------


class ConsulState:
    """The catalog, checks and KV store of one datacenter, and the global index.

    Not thread-safe: use it from the event loop that serves it. Every write bumps
    :attr:`index` and wakes blocked queries (through ``on_change``).
    """

    def __init__(
        self,
        *,
        datacenter: str = "dc1",
        node: str = "node1",
        node_address: str = LOCALHOST,
        domain: str = "consul.",
    ) -> None:
        self.datacenter = datacenter
        self.agent_node = node
        self.domain = domain
        self.index = 1
        self.nodes: dict[str, dict[str, Any]] = {}
        #: (node, service id) → service
        self.services: dict[tuple[str, str], dict[str, Any]] = {}
        #: (node, check id) → check
        self.checks: dict[tuple[str, str], dict[str, Any]] = {}
        #: key → {Key, Flags, Value (bytes or None), CreateIndex, ModifyIndex, LockIndex}
        self.kv: dict[str, dict[str, Any]] = {}
        #: deleted key → the index of its deletion (Consul's tombstones, never reaped here)
        self.kv_tombstones: dict[str, int] = {}
        self.on_change: Callable[[], None] = lambda: None
        self.ensure_node(node, node_address)

    # -- index -----------------------------------------------------------------------------
    def bump(self) -> int:
        self.index += 1
        self.on_change()
        return self.index

    # -- nodes -----------------------------------------------------------------------------
    def ensure_node(
        self,
        name: str,
        address: str,
        *,
        tagged_addresses: Mapping[str, str] | None = None,
        meta: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        node = self.nodes.get(name)
        index = self.bump()
        if node is None:
            node = self.nodes[name] = {
                "ID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{self.datacenter}")),
                "Node": name,
                "Address": address,
                "Datacenter": self.datacenter,
                "TaggedAddresses": dict(tagged_addresses or {"lan": address, "wan": address}),
                "Meta": dict(meta or {}),
                "CreateIndex": index,
                "ModifyIndex": index,
            }
            self.checks[(name, "serfHealth")] = {
                "Node": name,
                "CheckID": "serfHealth",
                "Name": "Serf Health Status",
                "Status": "passing",
                "Notes": "",
                "Output": "Agent alive and reachable",
                "ServiceID": "",
                "ServiceName": "",
                "ServiceTags": [],
                "Type": "",
                "CreateIndex": index,
                "ModifyIndex": index,
            }
        else:
            node["Address"] = address
            if tagged_addresses is not None:
                node["TaggedAddresses"] = dict(tagged_addresses)
            if meta is not None:
                node["Meta"] = dict(meta)
            node["ModifyIndex"] = index
        return node

    def remove_node(self, name: str) -> bool:
        if name not in self.nodes:
            return False
        del self.nodes[name]
        for key in [k for k in self.services if k[0] == name]:
            del self.services[key]
        for key in [k for k in self.checks if k[0] == name]:
            del self.checks[key]
        self.bump()
        return True

    # -- services --------------------------------------------------------------------------
    def put_service(
        self,
        node: str,
        name: str,
        *,
        service_id: str | None = None,
        address: str = "",
        port: int = 0,
        tags: Iterable[str] = (),
        meta: Mapping[str, str] | None = None,
        enable_tag_override: bool = False,
    ) -> dict[str, Any]:
        if node not in self.nodes:
            raise ApiError(500, f"Unknown node {node!r}")
        if not name:
            raise ApiError(400, "Missing service name")
        sid = service_id or name
        index = self.bump()
        old = self.services.get((node, sid))
        service = self.services[(node, sid)] = {
            "ID": sid,
            "Service": name,
            "Tags": list(tags),
            "Address": address or "",
            "Meta": dict(meta or {}),
            "Port": int(port or 0),
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": bool(enable_tag_override),
            "CreateIndex": old["CreateIndex"] if old else index,
            "ModifyIndex": index,
        }
        for check in self.checks.values():
            if check["Node"] == node and check["ServiceID"] == sid:
                check["ServiceName"] = name
                check["ServiceTags"] = list(tags)
        return service

    def remove_service(self, node: str, service_id: str) -> bool:
        if self.services.pop((node, service_id), None) is None:
            return False
        for key in [
            k for k, c in self.checks.items() if k[0] == node and c["ServiceID"] == service_id
        ]:
            del self.checks[key]
        self.bump()
        return True

    def find_services(self, service_id: str) -> list[tuple[str, str]]:
        return [k for k in self.services if k[1] == service_id]

    # -- checks ----------------------------------------------------------------------------
    def put_check(
        self,
        node: str,
        check_id: str,
        *,
        name: str = "",
        status: str = "critical",
        service_id: str = "",
        notes: str = "",
        output: str = "",
        check_type: str = "",
    ) -> dict[str, Any]:
        if status not in HEALTH_STATUSES:
            raise ApiError(400, f"Invalid check status: {status!r}")
        service = self.services.get((node, service_id)) if service_id else None
        if service_id and service is None:
            raise ApiError(500, f"Unknown service ID {service_id!r} for check")
        index = self.bump()
        old = self.checks.get((node, check_id))
        check = self.checks[(node, check_id)] = {
            "Node": node,
            "CheckID": check_id,
            "Name": name or check_id,
            "Status": status,
            "Notes": notes,
            "Output": output,
            "ServiceID": service_id,
            "ServiceName": service["Service"] if service else "",
            "ServiceTags": list(service["Tags"]) if service else [],
            "Type": check_type,
            "CreateIndex": old["CreateIndex"] if old else index,
            "ModifyIndex": index,
        }
        return check

    def set_check_status(self, node: str, check_id: str, status: str, output: str = "") -> None:
        check = self.checks.get((node, check_id))
        if check is None:
            raise ApiError(404, f'Unknown check ID "{check_id}"')
        if status not in HEALTH_STATUSES:
            raise ApiError(400, f"Invalid check status: {status!r}")
        check["Status"] = status
        if output:
            check["Output"] = output
        check["ModifyIndex"] = self.bump()

    def remove_check(self, node: str, check_id: str) -> bool:
        if self.checks.pop((node, check_id), None) is None:
            return False
        self.bump()
        return True

    def register_checks(
        self, node: str, service_id: str, service_name: str, definitions: Sequence[Any]
    ) -> None:
        """Agent-style check definitions (``Check``/``Checks`` of a service registration)."""
        for i, raw in enumerate(definitions, 1):
            d = _ci(raw)
            if len(definitions) == 1:
                default_id = f"service:{service_id}"
            else:
                default_id = f"service:{service_id}:{i}"
            check_type = next(
                (t for t in ("ttl", "http", "tcp", "grpc", "args", "script") if d.get(t)), ""
            )
            self.put_check(
                node,
                str(d.get("checkid") or d.get("id") or default_id),
                name=str(d.get("name") or f"Service '{service_name}' check"),
                status=str(d.get("status") or "critical"),
                service_id=service_id,
                notes=str(d.get("notes") or ""),
                check_type="script" if check_type == "args" else check_type,
            )

    # -- queries ---------------------------------------------------------------------------
    def instances(
        self, name: str, tags: Sequence[str] = ()
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(node, service) of every instance of ``name`` carrying all ``tags`` (both
        case-insensitively), ordered by node then service id."""
        lname = name.lower()
        ltags = [t.lower() for t in tags]
        out = []
        for (node_name, _), service in sorted(self.services.items()):
            if service["Service"].lower() != lname:
                continue
            service_tags = {t.lower() for t in service["Tags"]}
            if any(t not in service_tags for t in ltags):
                continue
            out.append((self.nodes[node_name], service))
        return out

    def service_checks(self, node: str, service_id: str) -> list[dict[str, Any]]:
        """The node's own checks, then the service's, as ``/v1/health/service`` lists them."""
        node_checks = [
            c for (n, _), c in sorted(self.checks.items()) if n == node and not c["ServiceID"]
        ]
        svc_checks = [
            c
            for (n, _), c in sorted(self.checks.items())
            if n == node and c["ServiceID"] == service_id
        ]
        return [dict(c) for c in node_checks + svc_checks]

    def catalog_services(self) -> dict[str, list[str]]:
        out: dict[str, set[str]] = {}
        for service in self.services.values():
            out.setdefault(service["Service"], set()).update(service["Tags"])
        return {name: sorted(tags) for name, tags in sorted(out.items())}

    def catalog_service(self, name: str, tags: Sequence[str] = ()) -> list[dict[str, Any]]:
        out = []
        for node, service in self.instances(name, tags):
            out.append(
                {
                    "ID": node["ID"],
                    "Node": node["Node"],
                    "Address": node["Address"],
                    "Datacenter": node["Datacenter"],
                    "TaggedAddresses": dict(node["TaggedAddresses"]),
                    "NodeMeta": dict(node["Meta"]),
                    "ServiceKind": "",
                    "ServiceID": service["ID"],
                    "ServiceName": service["Service"],
                    "ServiceTags": list(service["Tags"]),
                    "ServiceAddress": service["Address"],
                    "ServiceWeights": dict(service["Weights"]),
                    "ServiceMeta": dict(service["Meta"]),
                    "ServicePort": service["Port"],
                    "ServiceEnableTagOverride": service["EnableTagOverride"],
                    "ServiceProxy": {},
                    "ServiceConnect": {},
                    "CreateIndex": service["CreateIndex"],
                    "ModifyIndex": service["ModifyIndex"],
                }
            )
        return out

    def health_service(
        self, name: str, tags: Sequence[str] = (), passing: bool = False
    ) -> list[dict[str, Any]]:
        out = []
        for node, service in self.instances(name, tags):
            checks = self.service_checks(node["Node"], service["ID"])
            if passing and any(c["Status"] != "passing" for c in checks):
                continue
            out.append(
                {
                    "Node": {
                        "ID": node["ID"],
                        "Node": node["Node"],
                        "Address": node["Address"],
                        "Datacenter": node["Datacenter"],
                        "TaggedAddresses": dict(node["TaggedAddresses"]),
                        "Meta": dict(node["Meta"]),
                        "CreateIndex": node["CreateIndex"],
                        "ModifyIndex": node["ModifyIndex"],
                    },
                    "Service": {
                        "ID": service["ID"],
                        "Service": service["Service"],
                        "Tags": list(service["Tags"]),
                        "Address": service["Address"],
                        "Meta": dict(service["Meta"]),
                        "Port": service["Port"],
                        "Weights": dict(service["Weights"]),
                        "EnableTagOverride": service["EnableTagOverride"],
                        "CreateIndex": service["CreateIndex"],
                        "ModifyIndex": service["ModifyIndex"],
                    },
                    "Checks": checks,
                }
            )
        return out

    # -- KV --------------------------------------------------------------------------------
    def kv_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        value = entry["Value"]
        return {
            "LockIndex": entry["LockIndex"],
            "Key": entry["Key"],
            "Flags": entry["Flags"],
            "Value": None if value is None else base64.b64encode(value).decode("ascii"),
            "CreateIndex": entry["CreateIndex"],
            "ModifyIndex": entry["ModifyIndex"],
        }

    def kv_put(self, key: str, value: bytes, *, flags: int = 0, cas: int | None = None) -> bool:
        old = self.kv.get(key)
        if cas is not None:
            if cas == 0 and old is not None:
                return False
            if cas > 0 and (old is None or old["ModifyIndex"] != cas):
                return False
        index = self.bump()
        self.kv[key] = {
            "Key": key,
            "Flags": flags,
            "Value": value,
            "CreateIndex": old["CreateIndex"] if old else index,
            "ModifyIndex": index,
            "LockIndex": 0,
        }
        return True

    def kv_delete(self, key: str, *, recurse: bool = False, cas: int | None = None) -> bool:
        if recurse:
            keys = [k for k in self.kv if k.startswith(key)]
        else:
            old = self.kv.get(key)
            if cas is not None and (old is None or old["ModifyIndex"] != cas):
                return False
            keys = [key] if old is not None else []
        index = self.bump()  # Consul bumps the index for a delete even of a missing key
        for k in keys:
            del self.kv[k]
            self.kv_tombstones[k] = index
        return True

    def kv_table_index(self, prefix: str = "") -> int:
        """The highest index of a KV write under ``prefix`` (entries and tombstones), as
        Consul's ``kvsMaxIndex`` / the graveyard's max index; at least 1."""
        found = [v["ModifyIndex"] for k, v in self.kv.items() if k.startswith(prefix)]
        found += [i for k, i in self.kv_tombstones.items() if k.startswith(prefix)]
        return max(found, default=1)

    def kv_result_index(self, key: str, *, listing: bool) -> int:
        """``X-Consul-Index`` of a KV read, as Consul's KVS endpoint sets it: the key's
        ``ModifyIndex`` for a single key that exists; for a listing (``?recurse``, ``?keys``)
        the highest index under the prefix, tombstones included; for a missing key (or an
        empty listing) the index of the whole KV table."""
        if not listing:
            entry = self.kv.get(key)
            if entry is not None:
                return int(entry["ModifyIndex"])
            return self.kv_table_index()
        under = self.kv_table_index(key)
        return under if under > 1 else self.kv_table_index()

    # -- persistence -----------------------------------------------------------------------
    def dump(self) -> dict[str, Any]:
        return {
            "datacenter": self.datacenter,
            "agent_node": self.agent_node,
            "domain": self.domain,
            "index": self.index,
            "nodes": self.nodes,
            "services": [[n, s, v] for (n, s), v in self.services.items()],
            "checks": [[n, c, v] for (n, c), v in self.checks.items()],
            "kv": [
                {
                    **v,
                    "Value": None if v["Value"] is None else base64.b64encode(v["Value"]).decode(),
                }
                for v in self.kv.values()
            ],
            "kv_tombstones": self.kv_tombstones,
        }

    @classmethod
    def load(cls, data: Mapping[str, Any]) -> ConsulState:
        state = cls.__new__(cls)
        state.datacenter = data["datacenter"]
        state.agent_node = data["agent_node"]
        state.domain = data["domain"]
        state.index = int(data["index"])
        state.nodes = dict(data["nodes"])
        state.services = {(n, s): v for n, s, v in data["services"]}
        state.checks = {(n, c): v for n, c, v in data["checks"]}
        state.kv = {
            v["Key"]: {**v, "Value": None if v["Value"] is None else base64.b64decode(v["Value"])}
            for v in data["kv"]
        }
        state.kv_tombstones = {k: int(i) for k, i in dict(data.get("kv_tombstones", {})).items()}
        state.on_change = lambda: None
        return state


# ---------------------------------------------------------------------------------------------
# Faults and the request log
# ---------------------------------------------------------------------------------------------


@dataclass
class _Fault:
    kind: str  # "status", "delay" or "drop"
    path: str
    remaining: int | None  # None: until cleared
    status: int = 500
    body: str = ""
    seconds: float = 0.0

    def matches(self, path: str) -> bool:
        return path.startswith(self.path) and (self.remaining is None or self.remaining > 0)

    def use(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


@dataclass
class RecordedCall:
    """One API request the double received."""

    method: str
    path: str
    query: dict[str, list[str]]
    token: str | None
    at: float = field(default_factory=time.monotonic)
    #: the HTTP status answered (None: connection closed without an answer, or still open)
    status: int | None = None
    #: the subject common name of the client certificate (HTTPS with ``tls_client_ca``)
    client_cert: str | None = None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "token": self.token,
            "at": self.at,
            "status": self.status,
            "client_cert": self.client_cert,
        }


# ---------------------------------------------------------------------------------------------
# The server (one event loop)
# ---------------------------------------------------------------------------------------------


class ConsulServer:
    """The Consul API double as an aiohttp app, served in the running event loop.

    :param acl_token: when set, every ``/v1`` request must carry it (403 otherwise).
    :param jitter: add up to wait/16 to blocking waits, as Consul does.
    :param data_dir: persist the state there after every write (and load it at start).
    :param tls_cert: serve HTTPS with this PEM certificate chain (and ``tls_key``), as an
        agent's HTTPS port does.
    :param tls_key: the PEM private key of ``tls_cert`` (default: in ``tls_cert``).
    :param tls_client_ca: with ``tls_cert``: require a client certificate issued by this PEM
        CA (Consul's ``verify_incoming``); the handshake fails without one.
    """

    def __init__(
        self,
        *,
        host: str = LOCALHOST,
        port: int | None = None,
        datacenter: str = "dc1",
        node: str = "node1",
        node_address: str = LOCALHOST,
        domain: str = "consul.",
        acl_token: str | None = None,
        jitter: bool = True,
        data_dir: str | os.PathLike[str] | None = None,
        state: ConsulState | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        tls_client_ca: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.acl_token = acl_token
        self.ssl_context = server_ssl_context(tls_cert, tls_key, tls_client_ca)
        self.jitter = jitter
        self.data_dir = Path(data_dir) if data_dir is not None else None
        if state is None and self.data_dir is not None and (self.data_dir / "state.json").exists():
            state = ConsulState.load(json.loads((self.data_dir / "state.json").read_text()))
        self.state = state or ConsulState(
            datacenter=datacenter, node=node, node_address=node_address, domain=domain
        )
        self.state.on_change = self._changed
        self.faults: list[_Fault] = []
        #: answer ``X-Consul-Index: 0`` (a Consul bug clients must survive)
        self.zero_index = False
        self.calls: list[RecordedCall] = []
        self._changed_event: asyncio.Event | None = None
        self._wake_generation = 0
        self._blocked: dict[int, web.Request] = {}
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._started_at = time.time()
        self._save_handle: asyncio.Handle | None = None
        self.app = self._make_app()

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._site is not None

    async def start(self) -> ConsulServer:
        """Listen on ``host:port`` (again, after :meth:`stop`, with the state kept)."""
        if self._runner is not None:
            return self
        self._changed_event = asyncio.Event()
        runner = web.AppRunner(
            self.app, handle_signals=False, handler_cancellation=True, access_log=None
        )
        await runner.setup()
        site = web.TCPSite(
            runner, self.host, self.port, reuse_address=True, ssl_context=self.ssl_context
        )
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner, self._site = runner, site
        return self

    async def stop(self) -> None:
        """Stop as a killed agent would: close the listener (connections are refused) and
        abort every open connection, blocked queries included. The state is kept."""
        runner, site = self._runner, self._site
        if runner is None:
            return
        if site is not None:
            await site.stop()
        self.drop_connections()
        self._runner = self._site = None
        await runner.cleanup()
        self._blocked.clear()

    # -- controls (call from the server's loop) -------------------------------------------
    def control(self, op: str, **args: Any) -> Any:
        """Run control operation ``op`` (a method of this class listed in ``CONTROLS``)."""
        if op not in CONTROLS:
            raise ApiError(400, f"unknown control {op!r}; known: {', '.join(sorted(CONTROLS))}")
        result = getattr(self, op)(**args)
        return result

    def register(
        self,
        name: str,
        port: int,
        *,
        service_id: str | None = None,
        address: str = "",
        tags: Iterable[str] = (),
        meta: Mapping[str, str] | None = None,
        node: str | None = None,
        node_address: str | None = None,
        node_meta: Mapping[str, str] | None = None,
        check: str | None = None,
    ) -> str:
        """Register an instance (on the agent's node unless ``node`` is given, creating that
        node at ``node_address``); ``check``: add a check ``service:<id>`` with this status.
        Returns the service id."""
        node = node or self.state.agent_node
        if node not in self.state.nodes or node_address is not None or node_meta is not None:
            current = self.state.nodes.get(node)
            self.state.ensure_node(
                node,
                node_address or (current["Address"] if current else LOCALHOST),
                meta=node_meta,
            )
        sid = service_id or name
        self.state.put_service(
            node, name, service_id=sid, address=address, port=port, tags=tags, meta=meta
        )
        if check is not None:
            self.state.put_check(
                node,
                f"service:{sid}",
                name=f"Service '{name}' check",
                status=check,
                service_id=sid,
                check_type="ttl",
            )
        return sid

    def deregister(self, service_id: str, *, node: str | None = None) -> bool:
        """Remove a service instance (and its checks); False if there was none."""
        node = node or self.state.agent_node
        return self.state.remove_service(node, service_id)

    def set_check(
        self,
        check_id: str | None = None,
        status: str = "passing",
        *,
        service_id: str | None = None,
        node: str | None = None,
    ) -> None:
        """Set a check's status (``check_id``, or the checks of ``service_id``: its
        ``service:<id>`` check is created when it has none)."""
        node = node or self.state.agent_node
        if check_id is not None:
            self.state.set_check_status(node, check_id, status)
            return
        if service_id is None:
            raise ApiError(400, "give check_id or service_id")
        ids = [
            c
            for (n, c), v in self.state.checks.items()
            if n == node and v["ServiceID"] == service_id
        ]
        if not ids:
            self.state.put_check(
                node, f"service:{service_id}", status=status, service_id=service_id
            )
        for cid in ids:
            self.state.set_check_status(node, cid, status)

    def fail(
        self,
        status: int = 500,
        body: str = "injected failure",
        *,
        count: int | None = None,
        path: str = "/v1/",
    ) -> None:
        """Answer ``status`` with ``body`` to the next ``count`` requests under ``path``
        (every one until :meth:`clear_faults` when ``count`` is None)."""
        self.faults.append(_Fault("status", path, count, status=status, body=body))

    def delay(self, seconds: float, *, count: int | None = None, path: str = "/v1/") -> None:
        """Wait ``seconds`` before answering requests under ``path``."""
        self.faults.append(_Fault("delay", path, count, seconds=seconds))

    def drop(self, *, count: int | None = None, path: str = "/v1/") -> None:
        """Close the connection of requests under ``path`` without answering."""
        self.faults.append(_Fault("drop", path, count))

    def clear_faults(self) -> None:
        self.faults.clear()
        self.zero_index = False

    def drop_blocking(self) -> int:
        """Close the connection of every query blocked right now; how many there were."""
        dropped = 0
        for request in list(self._blocked.values()):
            transport = request.transport
            if transport is not None:
                transport.abort()
                dropped += 1
        self._blocked.clear()
        return dropped

    def drop_connections(self) -> int:
        """Abort every open connection (blocked or idle keep-alive); how many there were."""
        server = self._runner.server if self._runner is not None else None
        if server is None:
            return 0
        n = 0
        for handler in server.connections:
            transport = handler.transport
            if transport is not None:
                transport.abort()
                n += 1
        return n

    def set_index(self, index: int, *, wake: bool = True) -> None:
        """Set the global index (lower, to make it go backwards); ``wake``: blocked queries
        return now, with the new index."""
        self.state.index = int(index)
        if wake:
            self._wake_generation += 1
        self._changed()

    def set_zero_index(self, on: bool = True) -> None:
        """Answer ``X-Consul-Index: 0`` (on) or the real index (off)."""
        self.zero_index = bool(on)

    def open_connections(self) -> int:
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    def blocked(self) -> int:
        return len(self._blocked)

    def index(self) -> int:
        return self.state.index

    def requests(self, path: str = "/v1/") -> list[dict[str, Any]]:
        return [c.as_dict() for c in self.calls if c.path.startswith(path)]

    def clear_requests(self) -> None:
        self.calls.clear()

    def dump_state(self) -> dict[str, Any]:
        return self.state.dump()

    # -- internals -------------------------------------------------------------------------
    def _changed(self) -> None:
        event = self._changed_event
        if event is not None:
            event.set()
            self._changed_event = asyncio.Event()
        if self.data_dir is not None and self._save_handle is None:
            # after the write that bumped the index has been applied
            self._save_handle = asyncio.get_running_loop().call_soon(self._save)

    def _save(self) -> None:
        self._save_handle = None
        assert self.data_dir is not None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.data_dir / "state.json.tmp"
        tmp.write_text(json.dumps(self.state.dump()))
        os.replace(tmp, self.data_dir / "state.json")

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/v1/agent/self", self._agent_self)
        r.add_get("/v1/agent/services", self._agent_services)
        r.add_put("/v1/agent/service/register", self._agent_register)
        r.add_put("/v1/agent/service/deregister/{id}", self._agent_deregister)
        r.add_put("/v1/agent/service/maintenance/{id}", self._agent_maintenance)
        r.add_put("/v1/agent/check/{action:pass|warn|fail}/{id:.+}", self._agent_check_ttl)
        r.add_put("/v1/agent/check/update/{id:.+}", self._agent_check_update)
        r.add_get("/v1/catalog/datacenters", self._catalog_datacenters)
        r.add_get("/v1/catalog/nodes", self._catalog_nodes)
        r.add_get("/v1/catalog/services", self._catalog_services)
        r.add_get("/v1/catalog/service/{name}", self._catalog_service)
        r.add_put("/v1/catalog/register", self._catalog_register)
        r.add_put("/v1/catalog/deregister", self._catalog_deregister)
        r.add_get("/v1/health/service/{name}", self._health_service)
        r.add_get("/v1/status/leader", self._status_leader)
        r.add_get("/v1/kv/{key:.*}", self._kv_get)
        r.add_put("/v1/kv/{key:.*}", self._kv_put)
        r.add_delete("/v1/kv/{key:.*}", self._kv_delete)
        r.add_post("/test/control", self._test_control)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)  # test controls: no faults, no ACL, not logged
        call = RecordedCall(
            request.method,
            request.path,
            {k: request.query.getall(k) for k in request.query},
            _token_of(request),
            client_cert=_client_cert_of(request),
        )
        self.calls.append(call)
        if len(self.calls) > 20_000:
            del self.calls[:10_000]
        for fault in list(self.faults):
            if not fault.matches(request.path):
                continue
            fault.use()
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "drop":
                if request.transport is not None:
                    request.transport.abort()
                raise asyncio.CancelledError  # the connection is gone: nothing to answer
            elif fault.kind == "status":
                call.status = fault.status
                return web.Response(status=fault.status, text=fault.body)
        try:
            if self.acl_token is not None:
                token = call.token
                if not token:
                    raise ApiError(403, "Permission denied")
                if token != self.acl_token:
                    raise ApiError(403, "ACL not found")
            response = await handler(request)
        except ApiError as e:
            response = web.Response(status=e.status, text=e.text)
        except web.HTTPException as e:
            response = web.Response(status=e.status, text=e.text or e.reason)
        call.status = response.status
        return response

    # -- helpers of the API handlers ------------------------------------------------------
    def _check_dc(self, request: web.Request) -> None:
        dc = request.query.get("dc")
        if dc and dc != self.state.datacenter:
            raise ApiError(500, "No path to datacenter")

    def _consistency(self, request: web.Request) -> str:
        stale = "stale" in request.query
        consistent = "consistent" in request.query
        if stale and consistent:
            raise ApiError(400, "Cannot specify ?stale with ?consistent, conflicting semantics.")
        return "stale" if stale else "consistent" if consistent else "leader"

    def _headers(self, consistency: str, index: int | None = None) -> dict[str, str]:
        shown = self.state.index if index is None else index
        return {
            "X-Consul-Index": "0" if self.zero_index else str(shown),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
            "X-Consul-Effective-Consistency": consistency,
        }

    async def _blocking(
        self,
        request: web.Request,
        render: Callable[[], tuple[int, Any]],
        index_of: Callable[[], int] | None = None,
    ) -> web.Response:
        """Validate dc/consistency/index/wait, block as Consul does, then answer ``render()``
        (status, JSON value or bytes) with the index headers. ``index_of``: the result's own
        index (a KV read's: see :meth:`ConsulState.kv_result_index`), which must pass the
        requested ``index`` to end the wait; the global index by default."""
        current = index_of if index_of is not None else (lambda: self.state.index)
        self._check_dc(request)
        consistency = self._consistency(request)
        min_index = 0
        if "index" in request.query:
            try:
                min_index = int(request.query["index"])
                if min_index < 0:
                    raise ValueError
            except ValueError:
                raise ApiError(400, "Invalid index") from None
        wait = DEFAULT_WAIT
        if "wait" in request.query:
            try:
                wait = parse_wait(request.query["wait"])
            except ValueError:
                raise ApiError(400, "Invalid wait time") from None
        wait = min(wait, MAX_WAIT)
        if min_index > 0 and current() <= min_index:
            if self.jitter:
                wait += random.uniform(0, wait / 16)
            deadline = asyncio.get_running_loop().time() + wait
            generation = self._wake_generation
            self._blocked[id(request)] = request
            try:
                while current() <= min_index and generation == self._wake_generation:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0 or self._changed_event is None:
                        break
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed_event.wait(), remaining)
            finally:
                self._blocked.pop(id(request), None)
        status, value = render()
        headers = self._headers(consistency, current() if index_of is not None else None)
        if isinstance(value, bytes | bytearray):
            return web.Response(status=status, body=bytes(value), headers=headers)
        if value is None:
            return web.Response(status=status, headers=headers)
        return web.Response(
            status=status, text=json.dumps(value), headers=headers, content_type="application/json"
        )

    async def _json_body(self, request: web.Request) -> Any:
        text = await request.text()
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as e:
            raise ApiError(400, f"Request decode failed: {e}") from None

    # -- agent -----------------------------------------------------------------------------
    async def _agent_self(self, request: web.Request) -> web.Response:
        node = self.state.nodes.get(self.state.agent_node, {})
        return web.json_response(
            {
                "Config": {
                    "Datacenter": self.state.datacenter,
                    "PrimaryDatacenter": self.state.datacenter,
                    "NodeName": self.state.agent_node,
                    "NodeID": node.get("ID", ""),
                    "Domain": self.state.domain,
                    "Revision": "double",
                    "Server": True,
                    "Version": "1.15.0",
                },
                "DebugConfig": {},
                "Coord": {
                    "Vec": [0, 0, 0, 0, 0, 0, 0, 0],
                    "Error": 1.5,
                    "Adjustment": 0,
                    "Height": 1e-05,
                },
                "Member": {
                    "Name": self.state.agent_node,
                    "Addr": node.get("Address", LOCALHOST),
                    "Port": 8301,
                    "Tags": {"dc": self.state.datacenter, "role": "consul"},
                    "Status": 1,
                },
                "Meta": dict(node.get("Meta", {})),
                "Stats": {},
            }
        )

    async def _agent_services(self, request: web.Request) -> web.Response:
        out = {}
        for (node, sid), service in sorted(self.state.services.items()):
            if node == self.state.agent_node:
                out[sid] = {**service, "Datacenter": self.state.datacenter}
        return web.json_response(out)

    async def _agent_register(self, request: web.Request) -> web.Response:
        d = _ci(await self._json_body(request))
        name = d.get("name")
        if not name or not isinstance(name, str):
            raise ApiError(400, "Missing service name")
        sid = str(d.get("id") or name)
        port = d.get("port") or 0
        if not isinstance(port, int):
            raise ApiError(400, "Request decode failed: Port must be a number")
        node = self.state.agent_node
        self.state.put_service(
            node,
            name,
            service_id=sid,
            address=str(d.get("address") or ""),
            port=port,
            tags=[str(t) for t in d.get("tags") or ()],
            meta=_str_map(d.get("meta")),
            enable_tag_override=bool(d.get("enabletagoverride")),
        )
        definitions = []
        if d.get("check"):
            definitions.append(d["check"])
        definitions.extend(d.get("checks") or ())
        # a re-registration replaces the service's checks
        for key in [
            k for k, c in self.state.checks.items() if k[0] == node and c["ServiceID"] == sid
        ]:
            del self.state.checks[key]
        self.state.register_checks(node, sid, name, definitions)
        return web.Response(status=200)

    async def _agent_deregister(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        if not self.state.remove_service(self.state.agent_node, sid):
            raise ApiError(
                404,
                f'Unknown service ID "{sid}". Ensure that the service ID is passed, '
                "not the service name.",
            )
        return web.Response(status=200)

    async def _agent_maintenance(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        node = self.state.agent_node
        if (node, sid) not in self.state.services:
            raise ApiError(404, f'Unknown service ID "{sid}"')
        enable = request.query.get("enable")
        if enable not in ("true", "false"):
            raise ApiError(400, "Missing value for enable")
        check_id = f"_service_maintenance:{sid}"
        if enable == "true":
            self.state.put_check(
                node,
                check_id,
                name="Service Maintenance Mode",
                status="critical",
                service_id=sid,
                notes=request.query.get("reason", "Maintenance mode is enabled for this service"),
            )
        else:
            self.state.remove_check(node, check_id)
        return web.Response(status=200)

    async def _agent_check_ttl(self, request: web.Request) -> web.Response:
        status = {"pass": "passing", "warn": "warning", "fail": "critical"}[
            request.match_info["action"]
        ]
        self.state.set_check_status(
            self.state.agent_node, request.match_info["id"], status, request.query.get("note", "")
        )
        return web.Response(status=200)

    async def _agent_check_update(self, request: web.Request) -> web.Response:
        d = _ci(await self._json_body(request))
        status = d.get("status")
        if status not in ("passing", "warning", "critical"):
            raise ApiError(400, f'Invalid check status: "{status}"')
        self.state.set_check_status(
            self.state.agent_node, request.match_info["id"], status, str(d.get("output") or "")
        )
        return web.Response(status=200)

    # -- catalog ---------------------------------------------------------------------------
    async def _catalog_datacenters(self, request: web.Request) -> web.Response:
        return web.json_response([self.state.datacenter])

    async def _status_leader(self, request: web.Request) -> web.Response:
        return web.json_response(f"{LOCALHOST}:8300")

    async def _catalog_nodes(self, request: web.Request) -> web.Response:
        return await self._blocking(
            request,
            lambda: (200, [dict(n) for _, n in sorted(self.state.nodes.items())]),
        )

    async def _catalog_services(self, request: web.Request) -> web.Response:
        return await self._blocking(request, lambda: (200, self.state.catalog_services()))

    async def _catalog_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        tags = request.query.getall("tag", [])
        return await self._blocking(request, lambda: (200, self.state.catalog_service(name, tags)))

    async def _catalog_register(self, request: web.Request) -> web.Response:
        self._check_dc_body(request)
        d = _ci(await self._json_body(request))
        node, address = d.get("node"), d.get("address")
        if not node or not address:
            raise ApiError(400, "Must provide node and address")
        self._check_dc_value(d.get("datacenter"))
        if not d.get("skipnodeupdate") or node not in self.state.nodes:
            self.state.ensure_node(
                str(node),
                str(address),
                tagged_addresses=_str_map(d.get("taggedaddresses")) or None,
                meta=_str_map(d.get("nodemeta")) if d.get("nodemeta") is not None else None,
            )
        service = _ci(d.get("service")) if d.get("service") else None
        sid = ""
        if service is not None:
            name = service.get("service")
            if not name:
                raise ApiError(400, "Must provide service name with ID")
            sid = str(service.get("id") or name)
            self.state.put_service(
                str(node),
                str(name),
                service_id=sid,
                address=str(service.get("address") or ""),
                port=int(service.get("port") or 0),
                tags=[str(t) for t in service.get("tags") or ()],
                meta=_str_map(service.get("meta")),
            )
        checks = []
        if d.get("check"):
            checks.append(d["check"])
        checks.extend(d.get("checks") or ())
        for raw in checks:
            c = _ci(raw)
            self.state.put_check(
                str(node),
                str(c.get("checkid") or c.get("name") or "check"),
                name=str(c.get("name") or c.get("checkid") or "check"),
                status=str(c.get("status") or "critical"),
                service_id=str(c.get("serviceid") or ""),
                notes=str(c.get("notes") or ""),
                output=str(c.get("output") or ""),
            )
        return web.json_response(True)

    async def _catalog_deregister(self, request: web.Request) -> web.Response:
        self._check_dc_body(request)
        d = _ci(await self._json_body(request))
        node = d.get("node")
        if not node:
            raise ApiError(400, "Must provide node")
        self._check_dc_value(d.get("datacenter"))
        node = str(node)
        if d.get("serviceid"):
            self.state.remove_service(node, str(d["serviceid"]))
        elif d.get("checkid"):
            self.state.remove_check(node, str(d["checkid"]))
        else:
            self.state.remove_node(node)
        return web.json_response(True)

    def _check_dc_body(self, request: web.Request) -> None:
        self._check_dc(request)

    def _check_dc_value(self, dc: Any) -> None:
        if dc and dc != self.state.datacenter:
            raise ApiError(500, "No path to datacenter")

    # -- health ----------------------------------------------------------------------------
    async def _health_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        tags = request.query.getall("tag", [])
        passing = False
        if "passing" in request.query:
            value = request.query["passing"].strip().lower()
            if value in ("", "1", "t", "true"):
                passing = True
            elif value in ("0", "f", "false"):
                passing = False
            else:
                raise ApiError(400, f"Invalid value for ?passing: {value!r}")
        return await self._blocking(
            request, lambda: (200, self.state.health_service(name, tags, passing))
        )

    # -- KV --------------------------------------------------------------------------------
    async def _kv_get(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        q = request.query

        def render() -> tuple[int, Any]:
            kv = self.state.kv
            if "keys" in q:
                separator = q.get("separator", "")
                found: list[str] = []
                for k in sorted(kv):
                    if not k.startswith(key):
                        continue
                    if separator:
                        cut = k.find(separator, len(key))
                        if cut >= 0:
                            k = k[: cut + len(separator)]
                    if not found or found[-1] != k:
                        found.append(k)
                return (200, found) if found else (404, None)
            if "recurse" in q:
                entries = [self.state.kv_entry(kv[k]) for k in sorted(kv) if k.startswith(key)]
                return (200, entries) if entries else (404, None)
            entry = kv.get(key)
            if entry is None:
                return 404, None
            if "raw" in q:
                return 200, entry["Value"] or b""
            return 200, [self.state.kv_entry(entry)]

        listing = "keys" in q or "recurse" in q
        return await self._blocking(
            request, render, lambda: self.state.kv_result_index(key, listing=listing)
        )

    async def _kv_put(self, request: web.Request) -> web.Response:
        self._check_dc(request)
        key = request.match_info["key"]
        if not key:
            raise ApiError(400, "Missing key name")
        try:
            cas = int(request.query["cas"]) if "cas" in request.query else None
            flags = int(request.query.get("flags", "0"))
        except ValueError:
            raise ApiError(400, "Invalid cas or flags") from None
        body = await request.read()
        return web.json_response(self.state.kv_put(key, body, flags=flags, cas=cas))

    async def _kv_delete(self, request: web.Request) -> web.Response:
        self._check_dc(request)
        key = request.match_info["key"]
        try:
            cas = int(request.query["cas"]) if "cas" in request.query else None
        except ValueError:
            raise ApiError(400, "Invalid cas") from None
        recurse = "recurse" in request.query
        return web.json_response(self.state.kv_delete(key, recurse=recurse, cas=cas))

    # -- test controls over HTTP -----------------------------------------------------------
    async def _test_control(self, request: web.Request) -> web.Response:
        try:
            d = await request.json()
            result = self.control(str(d["op"]), **dict(d.get("args") or {}))
        except ApiError as e:
            return web.json_response({"error": e.text}, status=e.status)
        except (KeyError, TypeError, ValueError) as e:
            return web.json_response({"error": f"{type(e).__name__}: {e}"}, status=400)
        return web.json_response({"result": result})


#: operations :meth:`ConsulServer.control` accepts (also over ``POST /test/control``)
CONTROLS = frozenset(
    {
        "register",
        "deregister",
        "set_check",
        "fail",
        "delay",
        "drop",
        "clear_faults",
        "drop_blocking",
        "drop_connections",
        "set_index",
        "set_zero_index",
        "open_connections",
        "blocked",
        "index",
        "requests",
        "clear_requests",
        "dump_state",
    }
)


def server_ssl_context(
    cert: str | os.PathLike[str] | None,
    key: str | os.PathLike[str] | None = None,
    client_ca: str | os.PathLike[str] | None = None,
) -> ssl.SSLContext | None:
    """The double's HTTPS context (None without ``cert``): serve ``cert``/``key``; with
    ``client_ca``, require a client certificate issued by it."""
    if cert is None:
        if key is not None or client_ca is not None:
            raise ValueError("tls_key and tls_client_ca need tls_cert")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    if client_ca is not None:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _client_cert_of(request: web.Request) -> str | None:
    """The subject common name of the verified client certificate, if any."""
    transport = request.transport
    peer = transport.get_extra_info("peercert") if transport is not None else None
    if not peer:
        return None
    for rdn in peer.get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return str(value)
    return None


def _token_of(request: web.Request) -> str | None:
    token = request.headers.get("X-Consul-Token")
    if token:
        return token
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.query.get("token") or None


# ---------------------------------------------------------------------------------------------
# Synchronous front ends: a background thread, or a subprocess
# ---------------------------------------------------------------------------------------------


class _Controls:
    """The synchronous control API shared by :class:`ConsulDouble` and
    :class:`ConsulDoubleProcess` (each operation is :meth:`ConsulServer.control`)."""

    host: str
    port: int
    scheme: str = "http"

    def _control(self, op: str, **args: Any) -> Any:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def register(self, name: str, port: int, **kw: Any) -> str:
        """See :meth:`ConsulServer.register`."""
        if "tags" in kw:
            kw["tags"] = list(kw["tags"])
        return str(self._control("register", name=name, port=port, **kw))

    def deregister(self, service_id: str, *, node: str | None = None) -> bool:
        return bool(self._control("deregister", service_id=service_id, node=node))

    def set_check(
        self,
        check_id: str | None = None,
        status: str = "passing",
        *,
        service_id: str | None = None,
        node: str | None = None,
    ) -> None:
        self._control(
            "set_check", check_id=check_id, status=status, service_id=service_id, node=node
        )

    def fail(
        self,
        status: int = 500,
        body: str = "injected failure",
        *,
        count: int | None = None,
        path: str = "/v1/",
    ) -> None:
        self._control("fail", status=status, body=body, count=count, path=path)

    def delay(self, seconds: float, *, count: int | None = None, path: str = "/v1/") -> None:
        self._control("delay", seconds=seconds, count=count, path=path)

    def drop(self, *, count: int | None = None, path: str = "/v1/") -> None:
        self._control("drop", count=count, path=path)

    def clear_faults(self) -> None:
        self._control("clear_faults")

    def drop_blocking(self) -> int:
        return int(self._control("drop_blocking"))

    def drop_connections(self) -> int:
        return int(self._control("drop_connections"))

    def set_index(self, index: int, *, wake: bool = True) -> None:
        self._control("set_index", index=index, wake=wake)

    def set_zero_index(self, on: bool = True) -> None:
        self._control("set_zero_index", on=on)

    def open_connections(self) -> int:
        return int(self._control("open_connections"))

    def blocked(self) -> int:
        """How many queries are blocked right now."""
        return int(self._control("blocked"))

    @property
    def index(self) -> int:
        return int(self._control("index"))

    def requests(self, path: str = "/v1/") -> list[dict[str, Any]]:
        """Every API request received under ``path`` (method, path, query, token, status)."""
        return list(self._control("requests", path=path))

    def clear_requests(self) -> None:
        self._control("clear_requests")

    def dump_state(self) -> dict[str, Any]:
        return dict(self._control("dump_state"))


class ConsulDouble(_Controls):
    """A :class:`ConsulServer` in a background thread (its own event loop), with a
    synchronous API: ``start()``, ``stop()`` (refusing, state kept), ``start()`` again,
    ``close()``, and the controls. Use as a context manager. Keyword arguments go to
    :class:`ConsulServer` (``tls_cert=`` etc. for HTTPS; :attr:`url` is then ``https://``)."""

    def __init__(self, *, port: int | None = None, host: str = LOCALHOST, **kw: Any) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.scheme = "https" if kw.get("tls_cert") is not None else "http"
        self._kw = kw
        self.server: ConsulServer | None = None
        self._loops = LoopThread(f"consul-double-{self.port}")

    def _run(self, coro: Any, timeout: float = 15.0) -> Any:
        return self._loops.call(coro, timeout)

    def _control(self, op: str, **args: Any) -> Any:
        server = self.server
        assert server is not None, "not started"

        async def call() -> Any:
            return server.control(op, **args)

        return self._run(call())

    def start(self, timeout: float = 15.0) -> ConsulDouble:
        """Start the thread (first time) and listen (every time)."""
        if self._loops.loop is None:
            self._loops.start(timeout)

            async def make() -> ConsulServer:
                return ConsulServer(host=self.host, port=self.port, **self._kw)

            self.server = self._run(make(), timeout)
        assert self.server is not None
        self._run(self.server.start(), timeout)
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop listening and abort every connection; the state is kept (see
        :meth:`ConsulServer.stop`)."""
        if self.server is not None and self._loops.loop is not None:
            self._run(self.server.stop(), timeout)

    @property
    def listening(self) -> bool:
        return self.server is not None and self.server.listening

    def call(self, fn: Callable[[ConsulServer], Any], timeout: float = 15.0) -> Any:
        """Run ``fn(server)`` on the server's loop (for direct state edits) and return its
        result; works while the double is stopped (changes made "while it was down")."""
        server = self.server
        assert server is not None, "not started"

        async def run() -> Any:
            return fn(server)

        return self._run(run(), timeout)

    def close(self, timeout: float = 15.0) -> None:
        """Stop and end the thread (idempotent)."""
        if self._loops.loop is None:
            return
        with contextlib.suppress(Exception):
            self.stop(timeout)
        self._loops.close(timeout)

    def __enter__(self) -> ConsulDouble:
        return self.start() if not self.listening else self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ConsulDoubleProcess(_Controls):
    """``python -m turnout_namer_consul.testing`` as a subprocess; its state persists in
    ``data_dir`` so that :meth:`kill` (SIGKILL) and :meth:`start` again behave like a Consul
    agent restarted on its data. Controlled over HTTP (``POST /test/control``)."""

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = LOCALHOST,
        data_dir: str | os.PathLike[str] | None = None,
        acl_token: str | None = None,
        datacenter: str = "dc1",
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.acl_token = acl_token
        self.datacenter = datacenter
        self.log_path = Path(log_path) if log_path is not None else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> ConsulDoubleProcess:
        """Start the process and wait until it answers (RuntimeError if it does not)."""
        if self.running():
            return self
        cmd = [
            sys.executable,
            "-m",
            "turnout_namer_consul.testing",
            "--host",
            self.host,
            "--port",
            str(self.port),
        ]
        cmd += ["--datacenter", self.datacenter]
        if self.data_dir is not None:
            cmd += ["--data-dir", str(self.data_dir)]
        if self.acl_token is not None:
            cmd += ["--acl-token", self.acl_token]
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            out = open(self.log_path, "ab")  # noqa: SIM115 (closed below, the child keeps it)
        try:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=out, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout
        while not port_open(self.host, self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"consul double exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"consul double not listening on {self.port} after {timeout}s")
            time.sleep(0.02)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the process (by PID) and reap it (idempotent)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signals.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    close = kill

    def edit_state(self, fn: Callable[[ConsulState], Any]) -> None:
        """While the process is down: apply ``fn`` to its persisted state (changes another
        server made meanwhile), e.g. ``lambda s: s.put_service("node1", "web", port=80)``."""
        if self.running():
            raise RuntimeError("edit_state() needs the process stopped (kill() it first)")
        if self.data_dir is None:
            raise RuntimeError("edit_state() needs a data_dir")
        path = self.data_dir / "state.json"
        state = ConsulState.load(json.loads(path.read_text()))
        fn(state)
        tmp = path.with_name("state.json.tmp")
        tmp.write_text(json.dumps(state.dump()))
        os.replace(tmp, path)

    def _control(self, op: str, **args: Any) -> Any:
        data = json.dumps({"op": op, "args": args}).encode()
        req = urllib.request.Request(
            self.url + "/test/control", data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=15) as r:
                return json.loads(r.read())["result"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(
                f"control {op} failed: {e.code} {e.read().decode(errors='replace')}"
            ) from None

    def __enter__(self) -> ConsulDoubleProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


# ---------------------------------------------------------------------------------------------
# python -m turnout_namer_consul.testing
# ---------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m turnout_namer_consul.testing", description="Serve the Consul API double."
    )
    parser.add_argument("--host", default=LOCALHOST)
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--datacenter", default="dc1")
    parser.add_argument("--node", default="node1")
    parser.add_argument("--node-address", default=LOCALHOST)
    parser.add_argument("--acl-token", default=None)
    parser.add_argument("--data-dir", default=None, help="persist the state here across restarts")
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = ConsulServer(
            host=args.host,
            port=args.port,
            datacenter=args.datacenter,
            node=args.node,
            node_address=args.node_address,
            acl_token=args.acl_token,
            data_dir=args.data_dir,
        )
        await server.start()
        print(f"consul double on {server.url} (dc {server.state.datacenter})", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signals.SIGTERM, signals.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
