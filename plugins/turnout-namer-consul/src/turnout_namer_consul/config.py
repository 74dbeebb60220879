"""The ``io.l5d.consul`` namer's configuration (Linkerd's keys and defaults)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from turnout.config import ConfigObject, NamerConfig, option
from turnout.naming import Path

if TYPE_CHECKING:
    from turnout.linker import BuildContext

    from .namer import ConsulNamer

HealthStatus = Literal["passing", "warning", "critical", "maintenance"]


class TagWeight(ConfigObject):
    """A load-balancing weight for the instances carrying a tag."""

    tag: str = option(doc="A Consul service tag.")
    weight: float = option(
        min=0,
        doc="Weight of instances with this tag (the heaviest of their tags wins; 1 otherwise).",
    )


class ConsulNamerConfig(NamerConfig):
    """Service discovery from Consul: ``/#/io.l5d.consul/<dc>/<service>`` (or
    ``/<dc>/<tag>/<service>`` with ``includeTag``) binds to the service's instances, watched
    with blocking queries. ``.local`` is the agent's datacenter. A service with no instances
    is negative (the next dtab alternative is tried)."""

    kind = "io.l5d.consul"
    host: str = option("localhost", doc="Consul agent host.")
    port: int = option(8500, min=1, max=65535, doc="Consul agent HTTP port.")
    include_tag: bool = option(
        False, doc="Paths are /<dc>/<tag>/<service> and only instances with the tag are used."
    )
    use_health_check: bool = option(
        False,
        doc="Use /v1/health/service and keep instances whose worst check status is in "
        "healthStatuses (default: the catalog, without health filtering).",
    )
    health_statuses: list[HealthStatus] = option(
        default_factory=lambda: ["passing"],
        doc="With useHealthCheck: the statuses kept (passing, warning, critical, maintenance).",
    )
    token: str | None = option(None, secret=True, doc="ACL token, sent as X-Consul-Token.")
    set_host: bool = option(
        False,
        doc="Put the Host rewrite <service>.service.<dc>.<domain> in the address metadata "
        "(key 'authority'); the HTTP router does not apply it yet.",
    )
    consistency_mode: Literal["default", "stale", "consistent"] = option(
        "default", doc="Consul read consistency mode."
    )
    fail_fast: bool = option(
        False,
        doc="Accepted for Linkerd compatibility; no effect (turnout fails fast before the "
        "first answer and keeps the last good set afterwards, always).",
    )
    prefer_service_address: bool = option(
        True,
        doc="Use the service's address (the node's when it has none); false: always the node's.",
    )
    weights: list[TagWeight] = option(
        default_factory=list, doc="Endpoint weights by tag: [{tag: canary, weight: 0.1}]."
    )
    transfer_metadata: bool = option(
        False,
        doc="Copy ServiceMeta and NodeMeta into the address metadata (keys "
        "consul_service_meta, consul_node_meta).",
    )
    fixed_length_streamed_after_kb: int | None = option(
        None,
        key="fixedLengthStreamedAfterKB",
        doc="Linkerd's HTTP client setting for Consul responses; not used.",
        unsupported="fixedLengthStreamedAfterKB is not implemented by turnout's io.l5d.consul "
        "namer and is ignored (responses are read whole)",
    )
    tls: dict[str, Any] | None = option(
        None,
        doc="TLS to the Consul agent: not implemented.",
        unsupported="tls is not implemented by turnout's io.l5d.consul namer: it talks plain "
        "HTTP to the agent (run a local agent, or a TLS-terminating proxy on localhost)",
    )
    blocking_wait_ms: int = option(
        60_000,
        min=1000,
        max=600_000,
        doc="The wait of each blocking query (turnout extension; Consul's default is 5 min).",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not self.health_statuses:
            yield (
                "healthStatuses",
                "give at least one status (passing, warning, critical, maintenance)",
            )

    def new_namer(self, ctx: BuildContext | None) -> ConsulNamer:
        from .namer import ConsulNamer

        return ConsulNamer(
            Path.of("#") + self.effective_prefix,
            host=self.host,
            port=self.port,
            include_tag=self.include_tag,
            use_health_check=self.use_health_check,
            health_statuses=list(self.health_statuses),
            token=self.token,
            set_host=self.set_host,
            consistency=self.consistency_mode,
            prefer_service_address=self.prefer_service_address,
            weights={w.tag: w.weight for w in self.weights},
            transfer_metadata=self.transfer_metadata,
            wait=self.blocking_wait_ms / 1000,
            metrics=ctx.metrics if ctx is not None else None,
        )
