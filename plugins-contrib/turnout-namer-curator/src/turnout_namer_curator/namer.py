"""The ``io.l5d.curator`` namer: Curator's service registry, watched in ZooKeeper.

Built on the ``turnout-namer-zk`` plugin's :class:`~turnout_namer_zk.namer.ZkNamer`: one
kazoo client (one session) per namer, a child watch on the service's znode and a data watch
on each instance, the last good set kept while ZooKeeper is unreachable, everything read
again (with new watches) after a reconnection or a new session.

What Curator's ``ServiceDiscovery.registerService`` writes, and how it is read (Linkerd's
``CuratorNamer`` on Curator's ``ServiceCache``):

- one znode per instance, ``<basePath>/<serviceName>/<instanceId>`` (EPHEMERAL for the
  default ``DYNAMIC`` instances), holding the ``ServiceInstance`` as JSON::

    {"name": "web", "id": "7f0c…", "address": "10.0.0.1", "port": 8080, "sslPort": null,
     "payload": null, "registrationTimeUTC": 1700000000000, "serviceType": "DYNAMIC",
     "uriSpec": null, "enabled": true}

- an instance's address is ``address`` with ``sslPort`` when it is set, else ``port``
  (Linkerd's ``getAddress``); the address set's metadata ``ssl`` is true when any instance
  has an ``sslPort`` (Linkerd's ``Addr.Metadata("ssl")``);
- an instance whose data is not such JSON (not an object, no ``address``, no usable port) is
  left out, logged once per version of its znode, and counted in
  ``namer/#/<prefix>/malformed_instances``;
- the service's znode missing is ``Neg`` (the next dtab alternative is tried: Linkerd's
  "should return NameTree.Neg if service does not exist"); a service with no instance is an
  empty bound set.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from kazoo.exceptions import NoNodeError
from turnout.api import Addr, AddrBound, Address, AddrNeg, MetricsTree, Path, Publish
from turnout_namer_zk.namer import CONNECT_TIMEOUT, KeyWatch, Run, ZkNamer
from turnout_namer_zk.serverset import zk_path

log = logging.getLogger("turnout.namer.curator")


class BadInstance(ValueError):
    """An instance znode's data is not a usable Curator ``ServiceInstance``."""


@dataclass(frozen=True)
class Instance:
    """What the namer uses of one ``ServiceInstance``."""

    id: str | None
    address: Address
    ssl: bool


def _port(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 65535:
        raise BadInstance(f"{field} {value!r} is not a port (1-65535)")
    return value


def parse_instance(data: bytes) -> Instance:
    """Read one instance znode's data (see the module docstring); :class:`BadInstance`."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise BadInstance(f"not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadInstance(f"not a JSON object but {type(doc).__name__}")
    address = doc.get("address")
    if not isinstance(address, str) or not address.strip():
        raise BadInstance("no 'address'")
    ssl_port = _port(doc.get("sslPort"), "sslPort")
    port = ssl_port if ssl_port is not None else _port(doc.get("port"), "port")
    if port is None:
        raise BadInstance("neither 'port' nor 'sslPort' is set")
    instance_id = doc.get("id")
    return Instance(
        instance_id if isinstance(instance_id, str) else None,
        Address(address.strip(), port),
        ssl_port is not None,
    )


def instances_addr(instances: list[Instance | None]) -> AddrBound:
    """The address set of a service's instances (None: unusable ones, left out)."""
    usable = [i for i in instances if i is not None]
    return AddrBound((i.address for i in usable), {"ssl": any(i.ssl for i in usable)})


class CuratorNamer(ZkNamer[str]):
    """``/#/io.l5d.curator/<serviceName>[/<residual>]`` (see the module docstring). Keys are
    service names.

    :param id_prefix: ``/#/<prefix>``.
    :param hosts: kazoo connect string. :param base_path: Curator's ``basePath``, normalized
        (``/`` or ``/a/b``).
    """

    kind = "io.l5d.curator"

    def __init__(
        self,
        id_prefix: Path,
        hosts: str,
        base_path: str = "/",
        *,
        session_timeout: float = 10.0,
        connect_timeout: float = CONNECT_TIMEOUT,
        metrics: MetricsTree | None = None,
    ) -> None:
        super().__init__(
            id_prefix,
            hosts,
            session_timeout=session_timeout,
            connect_timeout=connect_timeout,
            metrics=metrics,
        )
        self.base_path = base_path
        #: instances read in the current attempt at watching a service, by child name
        self._read: dict[str, tuple[Run, dict[str, Instance | None]]] = {}
        #: instance znode versions found unusable (each counted once)
        self.malformed = 0
        self._malformed = (
            metrics.counter(*self.stats_scope, "malformed_instances") if metrics else None
        )

    # -- keys ------------------------------------------------------------------------------
    def key_of(self, path: Path) -> tuple[str, int] | None:
        if len(path) == 0 or zk_path(path.take(1)) is None:
            return None
        return path[0].decode("utf-8"), 1

    def znode_of(self, key: str) -> str:
        return f"{self.base_path.rstrip('/')}/{key}"

    # -- reading -----------------------------------------------------------------------------
    async def read(self, key: str, watch: KeyWatch, run: Run) -> Addr:
        znode = self.znode_of(key)
        cached = self._read.get(key)
        if cached is None or cached[0] is not run:  # a new attempt reads everything again
            cached = self._read[key] = (run, {})
        instances = cached[1]
        children = await self._children(znode, watch)
        if children is None:
            instances.clear()
            return AddrNeg
        names = sorted(children)
        for name in [n for n in instances if n not in children]:
            del instances[name]
        stale, run.dirty = run.dirty, set()
        todo = [n for n in names if n not in instances or n in stale]
        zk = self.zk
        client = zk.client
        assert client is not None
        pending = [
            (name, zk.submit(client.get_async, f"{znode}/{name}", watch.callback)) for name in todo
        ]
        try:
            for name, fut in pending:
                try:
                    data, stat = await fut
                except NoNodeError:  # gone since the listing; the child watch has fired
                    instances.pop(name, None)
                    continue
                instances[name] = self._instance(key, f"{znode}/{name}", data, stat.mzxid)
        finally:
            for _, fut in pending:
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()
        return instances_addr([instances.get(n) for n in names])

    def _instance(self, key: str, path: str, data: bytes, mzxid: int) -> Instance | None:
        try:
            return parse_instance(data or b"")
        except BadInstance as e:
            if self._warned.get(path) != mzxid:  # count each version of the node once
                self.malformed += 1
                if self._malformed is not None:
                    self._malformed.incr()
            self._warn_once(key, path, mzxid, f"not a Curator ServiceInstance ({e})")
            return None

    async def watch(self, key: str, publish: Publish) -> None:
        try:
            await super().watch(key, publish)
        finally:
            self._read.pop(key, None)

    def state(self) -> dict[str, Any]:
        out = super().state()
        out["curator"] = {"basePath": self.base_path, "malformedInstances": self.malformed}
        return out
