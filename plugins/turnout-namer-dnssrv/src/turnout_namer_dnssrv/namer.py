"""The ``io.l5d.dnssrv`` namer: one polling watch per SRV name in use.

``/#/io.l5d.dnssrv/<srv name>/<residual...>``: the first label is the SRV record's name
(see :func:`.srv.srv_name`); the bound id is ``/#/io.l5d.dnssrv/<srv name>``, the rest of the
path is the residual. Each poll:

1. queries SRV for the name: NXDOMAIN, no SRV record, or only ``.`` targets → ``AddrNeg``
   (the next dtab alternative is tried), as Linkerd;
2. takes the lowest priority group, and the A/AAAA records of its targets from the
   additional section, querying A and AAAA for targets the server left out;
3. publishes the group's weighted addresses; a group whose targets all are unknown
   (NXDOMAIN, no address) gives way to the next priority group; none left → ``AddrNeg``.

Any other outcome (SERVFAIL, REFUSED, timeout, servers down), of the SRV query or of a target
query, raises: :class:`~turnout.api.DiscoveryNamer` keeps the last good set, shows the
error and staleness, and polls again after a backoff capped at the refresh interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import dns.name
import dns.rdatatype
from turnout.api import (
    Addr,
    AddrBound,
    AddrNeg,
    Counter,
    DiscoveryNamer,
    Histogram,
    InetResolver,
    MetricsTree,
    Path,
    Publish,
    default_resolver,
    reconnect_backoff,
)

from .client import DnsClient, gather
from .inet import Installed, install
from .srv import (
    additional_hosts,
    group_addresses,
    missing_targets,
    priority_groups,
    srv_name,
    srv_records,
)

if TYPE_CHECKING:
    from .config import DnsSrvNamerConfig

log = logging.getLogger("turnout.namer.dnssrv")

#: targets looked up at once when the additional section lacks them
MAX_CONCURRENT_TARGET_QUERIES = 16


class DnsSrvNamer(DiscoveryNamer[dns.name.Name]):
    """Polls SRV records (see the module docstring).

    :param id_prefix: ``/#/<prefix>``.
    :param client: the DNS client (servers, timeouts).
    :param refresh: seconds between two polls of a name.
    :param origin: what names not ending in ``.`` are relative to.
    :param inet: ``/$/inet`` host names are resolved with ``client`` on this resolver while
        the namer lives (None: not).
    """

    kind = "io.l5d.dnssrv"

    def __init__(
        self,
        id_prefix: Path,
        client: DnsClient,
        *,
        refresh: float = 5.0,
        origin: dns.name.Name = dns.name.root,
        metrics: MetricsTree | None = None,
        backoff: Callable[[], Iterator[float]] | None = None,
        inet: InetResolver | None = None,
    ) -> None:
        # a failed poll is retried sooner than the next refresh, never later
        backoff = backoff or reconnect_backoff(start=min(0.1, refresh), maximum=refresh)
        super().__init__(id_prefix, metrics=metrics, backoff=backoff)
        self.client = client
        self.refresh = refresh
        self.origin = origin
        scope = self.stats_scope
        self._successes: Counter | None = None
        self._failures: Counter | None = None
        self._zero: Counter | None = None
        self._unknown_hosts: Counter | None = None
        self._latency: Histogram | None = None
        if metrics is not None:
            self._successes = metrics.counter(*scope, "lookup_successes_total")
            self._failures = metrics.counter(*scope, "lookup_failures_total")
            self._zero = metrics.counter(*scope, "lookup_zero_results_total")
            self._unknown_hosts = metrics.counter(*scope, "unknown_srv_hosts_results_total")
            self._latency = metrics.stat(*scope, "request_duration_ms")
        self._target_slots = asyncio.Semaphore(MAX_CONCURRENT_TARGET_QUERIES)
        self._unknown: set[dns.name.Name] = set()
        self.inet: Installed | None = install(inet, client) if inet is not None else None

    @classmethod
    def from_config(
        cls, config: DnsSrvNamerConfig, id_prefix: Path, *, metrics: MetricsTree | None = None
    ) -> DnsSrvNamer:
        origin = dns.name.root
        if config.domain is not None:
            origin = srv_name(config.domain) or dns.name.root
        return cls(
            id_prefix,
            DnsClient(config.dns_hosts, config.timeout_ms / 1000),
            refresh=config.refresh_interval_seconds,
            origin=origin,
            metrics=metrics,
            inet=default_resolver() if config.resolve_inet else None,
        )

    # -- DiscoveryNamer ----------------------------------------------------------------------
    def key_of(self, path: Path) -> tuple[dns.name.Name, int] | None:
        if len(path) == 0:
            return None
        name = srv_name(path[0], self.origin)
        return None if name is None else (name, 1)

    def label_of(self, key: dns.name.Name) -> str:
        return key.to_text(omit_final_dot=True)

    async def watch(self, key: dns.name.Name, publish: Publish) -> None:
        while True:
            try:
                addr = await self.resolve(key)
            except Exception:
                if self._failures is not None:
                    self._failures.incr()
                raise
            if addr is AddrNeg:
                if self._zero is not None:
                    self._zero.incr()
            elif self._successes is not None:
                self._successes.incr()
            publish(addr)
            await asyncio.sleep(self.refresh)

    async def shutdown(self) -> None:
        if self.inet is not None:
            self.inet.uninstall()

    # -- one poll ------------------------------------------------------------------------
    async def resolve(self, name: dns.name.Name) -> Addr:
        """The address set of SRV name ``name`` now (raises when DNS fails)."""
        answer, ms = await self.client.timed_query(name, dns.rdatatype.SRV)
        if self._latency is not None:
            self._latency.add(ms)
        if answer is None:  # NXDOMAIN
            return AddrNeg
        records = srv_records(answer.rrset)
        if not records:
            return AddrNeg
        hosts = additional_hosts(answer.response)
        for group in priority_groups(records):
            missing = missing_targets(group, hosts)
            if missing:
                found = await gather(*(self._target(t) for t in missing))
                hosts.update(zip(missing, found, strict=True))
            addresses = group_addresses(group, hosts)
            if addresses:
                return AddrBound(addresses)
        return AddrNeg

    async def _target(self, target: dns.name.Name) -> list[str]:
        """A target's addresses, IPv4 first; [] when it does not exist or has none."""
        async with self._target_slots:
            answers = await gather(
                self.client.timed_query(target, dns.rdatatype.A),
                self.client.timed_query(target, dns.rdatatype.AAAA),
            )
        out: list[str] = []
        for answer, _ in answers:
            if answer is not None and answer.rrset is not None:
                out.extend(str(r.address) for r in answer.rrset)
        if not out:
            if target not in self._unknown:  # once, until it has an address again
                self._unknown.add(target)
                log.warning("SRV target %s has no A or AAAA record: left out", target)
            if self._unknown_hosts is not None:
                self._unknown_hosts.incr()
        else:
            self._unknown.discard(target)
        return list(dict.fromkeys(out))

    # -- observability ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        out = super().state()
        out["dnsServers"] = list(self.client.servers) or list(self.client.dns_hosts)
        out["refreshIntervalSeconds"] = self.refresh
        out["timeoutMs"] = round(self.client.timeout * 1000)
        out["resolveInet"] = self.inet is not None
        out["queries"] = self.client.queries
        return out


def addresses_of(addr: Addr) -> Sequence[str]:
    """``ip:port*weight`` strings of a bound set, sorted (for logs and tests)."""
    if not isinstance(addr, AddrBound):
        return []
    return [f"{a}*{a.weight:g}" for a in addr.sorted()]
