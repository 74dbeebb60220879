"""The ``io.l5d.consul`` namer: service addresses from Consul's catalog or health API.

Paths (after ``/#/<prefix>``): ``/<dc>/<service>``, or ``/<dc>/<tag>/<service>`` with
``includeTag: true``; the rest of the path is the residual. The datacenter ``.local`` is the
agent's own (``GET /v1/agent/self``). Service names and tags are lower-cased, as Linkerd does
(Consul matches both case-insensitively).

Each observed name is one blocking-query loop (``index`` + explicit ``wait``) on
``/v1/catalog/service/<service>`` or, with ``useHealthCheck``, ``/v1/health/service/<service>``,
following Consul's blocking-query rules: an index that goes backwards resets to 0, an index
below 1 is used as 1, and the loop is rate limited (token bucket). Outages, reconnection
backoff, the last good set and ``/namer_state`` come from :class:`turnout.api.DiscoveryNamer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from turnout.api import (
    WEIGHT_KEY,
    Addr,
    AddrBound,
    Address,
    AddrNeg,
    DiscoveryNamer,
    MetricsTree,
    Path,
    Publish,
)

from .client import ConsulClient, TokenBucket

log = logging.getLogger("turnout.namer.consul")

#: the datacenter label meaning "the agent's datacenter"
LOCAL_DC = ".local"
#: Consul's answer to ``?dc=`` naming a datacenter it cannot reach
NO_DC_PATH = "No path to datacenter"
#: address (and address-set) metadata key of the Host rewrite value when ``setHost: true``
#: (Linkerd's ``Metadata.authority``)
AUTHORITY_KEY = "authority"
#: address metadata keys of Consul's ServiceMeta / NodeMeta when ``transferMetadata: true``
SERVICE_META_KEY = "consul_service_meta"
NODE_META_KEY = "consul_node_meta"

#: health statuses from best to worst (Linkerd's ``HealthStatus`` order)
HEALTH_ORDER = {"passing": 0, "warning": 1, "critical": 2, "maintenance": 3}
#: check ids Consul gives maintenance mode (their status is ``critical``)
MAINTENANCE_CHECKS = ("_service_maintenance:", "_node_maintenance")


@dataclass(frozen=True)
class SvcKey:
    """What one watch observes: a service (and tag) in a datacenter (``.local`` or a name)."""

    dc: str
    service: str
    tag: str | None = None

    def __str__(self) -> str:
        if self.tag is None:
            return f"/{self.dc}/{self.service}"
        return f"/{self.dc}/{self.tag}/{self.service}"


def parse_path(path: Path, include_tag: bool) -> tuple[SvcKey, int] | None:
    """``/<dc>/<service>`` (or ``/<dc>/<tag>/<service>``) → (key, labels consumed); None when
    the path is too short or not UTF-8 (the lookup is then ``Neg``)."""
    n = 3 if include_tag else 2
    if len(path) < n:
        return None
    try:
        labels = [path[i].decode("utf-8") for i in range(n)]
    except UnicodeDecodeError:
        return None
    if include_tag:
        return SvcKey(labels[0], labels[2].lower(), labels[1].lower()), n
    return SvcKey(labels[0], labels[1].lower()), n


def next_index(previous: int, returned: int | None) -> int:
    """The ``index`` of the next blocking query, after an answer carrying ``returned`` (Consul's
    blocking-query rules: below 1 counts as 1; going backwards resets to 0)."""
    if returned is None:
        return 0
    returned = max(returned, 1)
    return 0 if returned < previous else returned


def parse_index(header: str | None) -> int:
    """The ``X-Consul-Index`` header as an int (ValueError when absent or malformed)."""
    if header is None:
        raise ValueError("consul did not return an index (no X-Consul-Index)")
    try:
        return int(header)
    except ValueError:
        raise ValueError(f"consul returned a malformed index {header!r}") from None


@dataclass(frozen=True)
class Instance:
    """One service instance, from a catalog or a health entry."""

    node_address: str
    service_address: str
    port: int
    tags: tuple[str, ...] = ()
    service_meta: Mapping[str, str] | None = None
    node_meta: Mapping[str, str] | None = None
    #: the worst status of its checks (health API only; None from the catalog)
    status: str | None = None


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _tags(value: Any) -> tuple[str, ...]:
    return tuple(str(t) for t in value) if isinstance(value, list) else ()


def _meta(value: Any) -> dict[str, str] | None:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else None


def check_status(check: Mapping[str, Any]) -> str:
    """One check's status: maintenance-mode checks count as ``maintenance``; an unknown or
    missing status counts as ``passing`` (Linkerd's ``HealthStatus.withNameSafe``)."""
    check_id = str(check.get("CheckID") or "")
    if check_id.startswith(MAINTENANCE_CHECKS):
        return "maintenance"
    status = str(check.get("Status") or "").lower()
    return status if status in HEALTH_ORDER else "passing"


def worst_status(checks: Iterable[Mapping[str, Any]]) -> str:
    """The worst status of ``checks`` (maintenance > critical > warning > passing); an
    entry without checks is ``passing``."""
    return max((check_status(c) for c in checks), key=HEALTH_ORDER.__getitem__, default="passing")


def from_catalog(node: Mapping[str, Any]) -> Instance:
    """An entry of ``/v1/catalog/service/<name>``."""
    return Instance(
        node_address=str(node.get("Address") or ""),
        service_address=str(node.get("ServiceAddress") or ""),
        port=_int(node.get("ServicePort")),
        tags=_tags(node.get("ServiceTags")),
        service_meta=_meta(node.get("ServiceMeta")),
        node_meta=_meta(node.get("NodeMeta")),
    )


def from_health(entry: Mapping[str, Any]) -> Instance:
    """An entry of ``/v1/health/service/<name>``."""
    node = entry.get("Node") or {}
    service = entry.get("Service") or {}
    checks = entry.get("Checks") or []
    return Instance(
        node_address=str(node.get("Address") or ""),
        service_address=str(service.get("Address") or ""),
        port=_int(service.get("Port")),
        tags=_tags(service.get("Tags")),
        service_meta=_meta(service.get("Meta")),
        node_meta=_meta(node.get("Meta")),
        status=worst_status(c for c in checks if isinstance(c, dict)),
    )


def filter_health(instances: Iterable[Instance], statuses: Iterable[str]) -> list[Instance]:
    """Keep the instances whose worst check status is one of ``statuses``. Exactly
    ``{passing}`` keeps everything: Consul already filtered with ``?passing`` (Linkerd)."""
    allowed = set(statuses)
    if allowed == {"passing"}:
        return list(instances)
    return [i for i in instances if (i.status or "passing") in allowed]


def choose_host(instance: Instance, prefer_service_address: bool) -> str | None:
    """The service address, or the node's when the service has none (``""``); only the
    node's with ``preferServiceAddress: false``. None when there is no address at all."""
    if prefer_service_address and instance.service_address:
        return instance.service_address
    return instance.node_address or None


def weight_of(tags: Iterable[str], weights: Mapping[str, float]) -> float | None:
    """The heaviest weight among the instance's tags (None when no tag has one: weight 1)."""
    found = [weights[t] for t in tags if t in weights]
    return max(found) if found else None


def authority(key: SvcKey, dc: str, domain: str) -> str:
    """The Host rewrite of ``setHost``: ``<svc>.service.<dc>.<domain>`` (with a tag:
    ``<tag>.<svc>.service.<dc>.<domain>``, Consul's DNS name for it)."""
    name = key.service if key.tag is None else f"{key.tag}.{key.service}"
    return f"{name}.service.{dc}.{domain}"


def to_addr(
    instances: Iterable[Instance],
    *,
    prefer_service_address: bool = True,
    weights: Mapping[str, float] | None = None,
    transfer_metadata: bool = False,
    host_authority: str | None = None,
) -> Addr:
    """The address set of ``instances``; ``AddrNeg`` when there is none (Linkerd: a service
    with no instances is negative, so the next dtab alternative is tried)."""
    addresses = []
    for instance in instances:
        host = choose_host(instance, prefer_service_address)
        if host is None or not 0 < instance.port <= 65535:
            continue  # Linkerd skips instances without an address or a port
        meta: dict[str, Any] = {}
        weight = weight_of(instance.tags, weights or {})
        if weight is not None:
            meta[WEIGHT_KEY] = weight
        if host_authority is not None:
            meta[AUTHORITY_KEY] = host_authority
        if transfer_metadata:
            meta[SERVICE_META_KEY] = dict(instance.service_meta or {})
            meta[NODE_META_KEY] = dict(instance.node_meta or {})
        addresses.append(Address(host, instance.port, meta))
    if not addresses:
        return AddrNeg
    set_meta = {AUTHORITY_KEY: host_authority} if host_authority is not None else None
    return AddrBound(addresses, set_meta)


class ConsulNamer(DiscoveryNamer[SvcKey]):
    """The ``io.l5d.consul`` namer (see the module docstring and ``ConsulNamerConfig``).

    :param rate: blocking queries per second allowed to one watch, after a burst of
        ``burst`` (Consul's recommended rate limit of the loop).
    :param missing_dc_retry: seconds between asking again for a datacenter Consul says it
        has no path to.
    :param ssl_context: talk HTTPS to the agent with this context (the ``tls`` block, built
        once by the configuration); plain HTTP when None.
    :param server_hostname: with ``ssl_context``: the name the agent's certificate must be
        valid for (``commonName``); None: ``host``.
    """

    kind = "io.l5d.consul"

    def __init__(
        self,
        id_prefix: Path,
        *,
        host: str = "localhost",
        port: int = 8500,
        include_tag: bool = False,
        use_health_check: bool = False,
        health_statuses: Sequence[str] = ("passing",),
        token: str | None = None,
        set_host: bool = False,
        consistency: str = "default",
        prefer_service_address: bool = True,
        weights: Mapping[str, float] | None = None,
        transfer_metadata: bool = False,
        wait: float = 60.0,
        rate: float = 5.0,
        burst: int = 2,
        missing_dc_retry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        metrics: MetricsTree | None = None,
        backoff: Callable[[], Iterator[float]] | None = None,
    ) -> None:
        super().__init__(id_prefix, metrics=metrics, backoff=backoff)
        self.host = host
        self.port = port
        self.include_tag = include_tag
        self.use_health_check = use_health_check
        self.health_statuses = tuple(health_statuses)
        self.token = token
        self.set_host = set_host
        self.consistency = consistency
        self.prefer_service_address = prefer_service_address
        self.weights = dict(weights or {})
        self.transfer_metadata = transfer_metadata
        self.wait = wait
        self.rate = rate
        self.burst = burst
        self.missing_dc_retry = missing_dc_retry
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname
        self.client: ConsulClient | None = None
        #: the agent's datacenter and DNS domain (from /v1/agent/self, asked once)
        self.local_dc: str | None = None
        self.domain: str | None = None
        #: the blocking index each watch will send next
        self.indexes: dict[SvcKey, int] = {}
        self._agent_lock: asyncio.Lock | None = None
        self._requests = (
            metrics.counter(*self.stats_scope, "consul", "requests")
            if metrics is not None
            else None
        )

    # -- DiscoveryNamer ----------------------------------------------------------------------
    def key_of(self, path: Path) -> tuple[SvcKey, int] | None:
        return parse_path(path, self.include_tag)

    def label_of(self, key: SvcKey) -> str:
        return str(key)

    async def watch(self, key: SvcKey, publish: Publish) -> None:
        client = self._client()
        dc = key.dc
        host_authority = None
        if dc == LOCAL_DC or self.set_host:
            local_dc, domain = await self._agent(client)
            if dc == LOCAL_DC:
                dc = local_dc
            if self.set_host:
                host_authority = authority(key, dc, domain)
        index = 0
        self.indexes[key] = index
        bucket = TokenBucket(self.rate, self.burst)
        while True:
            await bucket.acquire()
            try:
                returned, instances = await self._query(client, dc, key, index)
            except Exception as e:
                if NO_DC_PATH in str(e) and not self._serving(key):
                    # Linkerd: a datacenter Consul cannot reach is a name that does not exist.
                    # Once the name had addresses, the base keeps them through the error.
                    publish(AddrNeg)
                    await asyncio.sleep(self.missing_dc_retry)
                    index = 0
                    continue
                raise
            publish(
                to_addr(
                    instances,
                    prefer_service_address=self.prefer_service_address,
                    weights=self.weights,
                    transfer_metadata=self.transfer_metadata,
                    host_authority=host_authority,
                )
            )
            new = next_index(index, returned)
            if new == 0 and index > 0:
                log.info(
                    "consul %s: the index went backwards (%d → %s); reset", key, index, returned
                )
            index = self.indexes[key] = new

    async def close(self) -> None:
        # The client first: its connections, blocking queries in progress included, are
        # aborted and the watches end quietly (CancelledError). Cancelled first, a query
        # over TLS would close its connection gracefully (a close_notify exchange with the
        # agent) and that could outlive close(): an unclosed socket if the loop ends next.
        client = self.client
        if client is not None:
            await client.close()
        await super().close()

    async def shutdown(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.close()

    # -- Consul ------------------------------------------------------------------------------
    def _client(self) -> ConsulClient:
        if self.client is None:  # built in the running loop (python-consul2 needs it)
            self.client = ConsulClient(
                self.host,
                self.port,
                token=self.token,
                consistency=self.consistency,
                wait=self.wait,
                ssl_context=self.ssl_context,
                server_hostname=self.server_hostname,
            )
        return self.client

    def _serving(self, key: SvcKey) -> bool:
        watch = self.watches.get(key)
        return watch is not None and isinstance(watch.var.value, AddrBound)

    async def _agent(self, client: ConsulClient) -> tuple[str, str]:
        """The agent's datacenter and DNS domain (asked once, then remembered)."""
        if self._agent_lock is None:
            self._agent_lock = asyncio.Lock()
        async with self._agent_lock:  # watches starting together ask once
            if self.local_dc is None or self.domain is None:
                self._count()
                info = await client.agent_self()
                config = info.get("Config") or {}
                dc = config.get("Datacenter")
                if not dc:
                    raise ValueError("consul /v1/agent/self has no Config.Datacenter")
                self.local_dc = str(dc)
                self.domain = str(config.get("Domain") or "consul").strip(".") or "consul"
        return self.local_dc, self.domain

    async def _query(
        self, client: ConsulClient, dc: str, key: SvcKey, index: int
    ) -> tuple[int, list[Instance]]:
        self._count()
        if self.use_health_check:
            passing = set(self.health_statuses) == {"passing"}
            header, entries = await client.health_service(
                key.service, dc=dc, tag=key.tag, index=index, passing=passing
            )
            instances = [from_health(e) for e in entries or () if isinstance(e, dict)]
            instances = filter_health(instances, self.health_statuses)
        else:
            header, nodes = await client.catalog_service(
                key.service, dc=dc, tag=key.tag, index=index
            )
            instances = [from_catalog(n) for n in nodes or () if isinstance(n, dict)]
        return parse_index(header), instances

    def _count(self) -> None:
        if self._requests is not None:
            self._requests.incr()

    # -- observability -----------------------------------------------------------------------
    def _tls_state(self) -> dict[str, Any] | None:
        context = self.ssl_context
        if context is None:
            return None
        verify = context.verify_mode != ssl.CERT_NONE
        return {
            "verify": verify,
            "name": (self.server_hostname or self.host) if verify else None,
        }

    def state(self) -> dict[str, Any]:
        out = super().state()
        out.update(
            {
                "consul": f"{self.host}:{self.port}",
                "tls": self._tls_state(),
                "api": "health" if self.use_health_check else "catalog",
                "localDc": self.local_dc,
                "domain": self.domain,
            }
        )
        for watch in self.watches.values():
            with contextlib.suppress(KeyError):
                out["watches"][watch.label]["index"] = self.indexes.get(watch.key)
        return out
