"""Configuration of the ZooKeeper namers (Linkerd's keys: ``zkAddrs: [{host, port}]``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from turnout.api import AnnouncerConfig, BuildContext, ConfigObject, NamerConfig, Path, option

if TYPE_CHECKING:  # kazoo is imported only when a namer is built
    from .announcer import ServersetsAnnouncer
    from .namer import ZkNamer


class ZkAddrConfig(ConfigObject):
    """One ZooKeeper server: ``{host: zk1.example.com, port: 2181}``."""

    host: str = option(doc="The ZooKeeper server's host name or IP address.")
    port: int = option(2181, min=1, max=65535, doc="Its client port.")

    @property
    def connect(self) -> str:
        """``host:port`` as a kazoo connect string wants it (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class _ZkNamerConfig(NamerConfig):
    """Options both ZooKeeper namers share (not a kind itself)."""

    zk_addrs: list[ZkAddrConfig] = option(
        doc="The ZooKeeper ensemble: a list of {host, port} (port defaults to 2181)."
    )
    session_timeout_ms: int = option(
        10_000,
        min=1000,
        max=60_000,
        doc="ZooKeeper session timeout asked for (turnout extension; the server bounds it).",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.zk_addrs:
            yield "zkAddrs", "give at least one ZooKeeper server ({host, port})"

    @property
    def connect_string(self) -> str:
        """The kazoo connect string of ``zkAddrs``: ``"h1:2181,h2:2181"``."""
        return ",".join(addr.connect for addr in self.zk_addrs)


class ServersetsConfig(_ZkNamerConfig):
    """Twitter ServerSets in ZooKeeper: ``/#/io.l5d.serversets/<znode path>[:<endpoint>]``
    binds to the ALIVE members (``member_*`` children) of the serverset at that znode, their
    ``serviceEndpoint``, or the named endpoint of ``additionalEndpoints`` after a ``:`` in the
    last label. Watched: members joining, leaving or changing status take effect at once. A
    znode that does not exist, or has no ALIVE member with that endpoint, is ``Neg``."""

    kind = "io.l5d.serversets"

    def new_namer(self, ctx: BuildContext) -> ZkNamer[tuple[str, str | None]]:
        from .namer import ServersetsNamer

        prefix = Path.of("#") + self.effective_prefix
        return ServersetsNamer(
            prefix,
            self.connect_string,
            session_timeout=self.session_timeout_ms / 1000,
            metrics=ctx.metrics,
        )


class ZkLeaderConfig(_ZkNamerConfig):
    """A ZooKeeper leader-election group: ``/#/io.l5d.zkLeader/<znode path>`` binds to the
    address published by the group's leader, the child with the lowest sequence number
    (its data is ``host:port``, or ServerSet JSON). Watched: a new leader takes effect at
    once. A znode that does not exist or has no candidate is ``Neg``."""

    kind = "io.l5d.zkLeader"

    def new_namer(self, ctx: BuildContext) -> ZkNamer[str]:
        from .namer import ZkLeaderNamer

        prefix = Path.of("#") + self.effective_prefix
        return ZkLeaderNamer(
            prefix,
            self.connect_string,
            session_timeout=self.session_timeout_ms / 1000,
            metrics=ctx.metrics,
        )


class ServersetsAnnouncerConfig(AnnouncerConfig):
    """Announces a router's servers in ZooKeeper as Twitter ServerSet members (Linkerd's
    ``io.l5d.serversets`` announcer): ``servers[].announce: [/#/io.l5d.serversets/<name>]``
    creates an EPHEMERAL_SEQUENTIAL ``<pathPrefix><name>/member_<seq>`` znode with the
    server's address, again in each new session, deleted when turnout starts draining."""

    kind = "io.l5d.serversets"

    zk_addrs: list[ZkAddrConfig] = option(
        doc="The ZooKeeper ensemble: a list of {host, port} (port defaults to 2181)."
    )
    path_prefix: Path = option(
        default_factory=lambda: Path.of("discovery"),
        doc="The znode path under which names are announced.",
    )
    session_timeout_ms: int = option(
        10_000,
        min=1000,
        max=60_000,
        doc="ZooKeeper session timeout asked for (turnout extension): how long a member "
        "outlives a turnout that was killed.",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.zk_addrs:
            yield "zkAddrs", "give at least one ZooKeeper server ({host, port})"

    def new_announcer(self, ctx: BuildContext) -> ServersetsAnnouncer:
        from .announcer import ServersetsAnnouncer

        hosts = ",".join(addr.connect for addr in self.zk_addrs)
        return ServersetsAnnouncer(
            hosts, self.path_prefix, session_timeout=self.session_timeout_ms / 1000
        )
