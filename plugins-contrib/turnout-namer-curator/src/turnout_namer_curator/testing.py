"""Test helpers: register service instances in a real ZooKeeper exactly as Apache Curator's
``ServiceDiscovery.registerService`` does, with kazoo (no JVM client needed).

``ServiceDiscoveryImpl.registerService`` serializes the ``ServiceInstance`` with
``JsonInstanceSerializer`` (Jackson: every bean property, ``null`` included) and calls
``client.create().creatingParentContainersIfNeeded().withMode(mode).forPath(path, bytes)``
with ``path = <basePath>/<name>/<id>``: the parents are CONTAINER znodes (ZooKeeper deletes
them once empty), the instance is EPHEMERAL for ``DYNAMIC`` instances (the default),
PERSISTENT for ``STATIC`` and ``PERMANENT`` ones::

    from turnout_namer_zk.testing import ZooKeeperServer
    from turnout_namer_curator.testing import register_instance

    with ZooKeeperServer() as zk:
        client = KazooClient(zk.hosts); client.start()
        path = register_instance(client, "/curator", "web", "127.0.0.1", 8080)
        client.delete(path)                  # unregisterService
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError
from kazoo.protocol.serialization import Create2
from kazoo.security import OPEN_ACL_UNSAFE

#: ZooKeeper's ``CreateMode.CONTAINER`` flag and the ``createContainer`` request opcode
CONTAINER_FLAGS = 4
CREATE_CONTAINER_OPCODE = 19


class _CreateContainer(Create2):  # type: ignore[misc]  # same body as create2, another opcode (ZooKeeper >= 3.5)
    type = CREATE_CONTAINER_OPCODE


def service_instance_json(
    name: str,
    address: str,
    port: int | None,
    *,
    ssl_port: int | None = None,
    instance_id: str | None = None,
    payload: Any = None,
    service_type: str = "DYNAMIC",
    uri_spec: str | None = None,
    registration_time_ms: int | None = None,
    enabled: bool = True,
) -> bytes:
    """A ``ServiceInstance`` as Curator's ``JsonInstanceSerializer`` writes it (Curator 4/5:
    the ``enabled`` field of CURATOR-275 included; ``uriSpec`` as its parts)."""
    doc: dict[str, Any] = {
        "name": name,
        "id": instance_id or str(uuid.uuid4()),
        "address": address,
        "port": port,
        "sslPort": ssl_port,
        "payload": payload,
        "registrationTimeUTC": registration_time_ms
        if registration_time_ms is not None
        else int(time.time() * 1000),
        "serviceType": service_type,
        "uriSpec": None if uri_spec is None else {"parts": _uri_spec_parts(uri_spec)},
        "enabled": enabled,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _uri_spec_parts(spec: str) -> list[dict[str, Any]]:
    """``{scheme}://foo.com:{port}`` → Curator's ``UriSpec`` parts (``{...}`` are variables)."""
    parts: list[dict[str, Any]] = []
    rest = spec
    while rest:
        start = rest.find("{")
        end = rest.find("}", start)
        if start < 0 or end < 0:
            parts.append({"value": rest, "variable": False})
            break
        if start > 0:
            parts.append({"value": rest[:start], "variable": False})
        parts.append({"value": rest[start + 1 : end], "variable": True})
        rest = rest[end + 1 :]
    return parts


def create_container(client: KazooClient, path: str, timeout: float = 10.0) -> None:
    """Create ``path`` and its missing parents as CONTAINER znodes, as Curator's
    ``creatingParentContainersIfNeeded`` does (an existing node is left as it is)."""
    segments = [s for s in path.split("/") if s]
    for n in range(1, len(segments) + 1):
        node = "/" + "/".join(segments[:n])
        if client.exists(node) is not None:
            continue
        result = client.handler.async_result()
        client._call(_CreateContainer(node, b"", OPEN_ACL_UNSAFE, CONTAINER_FLAGS), result)
        with contextlib.suppress(NodeExistsError):
            result.get(timeout=timeout)


def register_instance(
    client: KazooClient,
    base_path: str,
    name: str,
    address: str,
    port: int | None,
    *,
    data: bytes | None = None,
    **fields: Any,
) -> str:
    """Register an instance the way ``ServiceDiscovery.registerService`` does (see the
    module docstring); its znode path. ``data`` replaces the JSON (to register garbage);
    other keywords go to :func:`service_instance_json`."""
    instance_id = fields.pop("instance_id", None) or str(uuid.uuid4())
    service_type = fields.get("service_type", "DYNAMIC")
    if data is None:
        data = service_instance_json(name, address, port, instance_id=instance_id, **fields)
    parent = f"{base_path.rstrip('/')}/{name}"
    create_container(client, parent)
    path: str = client.create(
        f"{parent}/{instance_id}",
        data,
        ephemeral=service_type in ("DYNAMIC", "DYNAMIC_SEQUENTIAL"),
        sequence=service_type == "DYNAMIC_SEQUENTIAL",
    )
    return path


def update_instance(client: KazooClient, path: str, data: bytes) -> None:
    """``ServiceDiscovery.updateService``: set the instance znode's data."""
    client.set(path, data)
