"""The ``io.l5d.consul`` namer's configuration (Linkerd's keys and defaults)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from turnout.api import (
    AnnouncerConfig,
    BuildContext,
    ConfigObject,
    NamerConfig,
    Path,
    TurnoutError,
    option,
)

from .tls import TLS_VERSIONS, TlsSetupError, file_problem, files_of, ssl_context_of

if TYPE_CHECKING:
    from .announcer import ConsulAnnouncer
    from .namer import ConsulNamer

HealthStatus = Literal["passing", "warning", "critical", "maintenance"]


class TagWeight(ConfigObject):
    """A load-balancing weight for the instances carrying a tag."""

    tag: str = option(doc="A Consul service tag.")
    weight: float = option(
        min=0,
        doc="Weight of instances with this tag (the heaviest of their tags wins; 1 otherwise).",
    )


class ClientAuthConfig(ConfigObject):
    """The client certificate presented to an agent that verifies incoming connections
    (Consul's ``verify_incoming``)."""

    cert_path: str = option(doc="PEM file of the client certificate.")
    key_path: str = option(
        doc="PEM file of its private key (PKCS#8 in Linkerd; PKCS#1 and SEC1 work too)."
    )
    intermediate_certs_path: str | None = option(
        None, doc="PEM file of intermediate certificates sent after the client certificate."
    )


class ConsulTlsConfig(ConfigObject):
    """HTTPS to the Consul agent (Linkerd 1's client TLS keys). Without ``trustCerts`` and
    ``trustCertsBundle`` the system CAs are trusted; with them, only those CAs."""

    enabled: bool = option(True, doc="false: plain HTTP, as if there were no tls block.")
    disable_validation: bool = option(
        False, doc="Accept any server certificate, without checking its issuer or name (unsafe)."
    )
    common_name: str | None = option(
        None,
        doc="The name the agent's certificate must be valid for (also sent as SNI); default: host.",
    )
    trust_certs: list[str] | None = option(
        None, doc="PEM files of the CAs to trust (Linkerd deprecated it for trustCertsBundle)."
    )
    trust_certs_bundle: str | None = option(None, doc="PEM file of the CAs to trust.")
    client_auth: ClientAuthConfig | None = option(
        None, doc="Client certificate and key: {certPath, keyPath}."
    )
    protocols: list[str] | None = option(
        None, doc=f"TLS versions to allow ({', '.join(TLS_VERSIONS)}); default: both."
    )

    def check(self) -> Iterable[tuple[str | tuple[str | int, ...], str]]:
        if not self.enabled:
            return
        unusable = False
        for i, p in enumerate(self.protocols or ()):
            if p not in TLS_VERSIONS:
                unusable = True
                yield ("protocols", i), f"unknown TLS protocol '{p}': use {', '.join(TLS_VERSIONS)}"
        if self.protocols == []:
            yield "protocols", f"give at least one of {', '.join(TLS_VERSIONS)}, or leave it out"
        if self.common_name == "":
            yield "commonName", "must not be empty; leave it out to check the name 'host'"
        for loc, path, what in files_of(self):  # every missing file at once
            problem = file_problem(path, what)
            if problem is not None:
                unusable = True
                yield loc, problem
        if unusable:
            return
        try:  # the contents: PEM, a key that matches the certificate, not encrypted
            ssl_context_of(self)
        except TlsSetupError as e:
            yield e.loc, e.message


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
    tls: ConsulTlsConfig | None = option(
        None,
        doc="Talk HTTPS to the agent: disableValidation, commonName, trustCerts, "
        "trustCertsBundle, clientAuth {certPath, keyPath}, protocols.",
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

    def new_namer(self, ctx: BuildContext) -> ConsulNamer:
        from .namer import ConsulNamer

        tls = self.tls if self.tls is not None and self.tls.enabled else None
        ssl_context = None
        if tls is not None:
            try:  # once, for every connection of the namer
                ssl_context = ssl_context_of(tls)
            except TlsSetupError as e:
                raise TurnoutError(f"{self.kind} namer: {e.where()}: {e.message}") from None
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
            ssl_context=ssl_context,
            server_hostname=tls.common_name if tls is not None else None,
            metrics=ctx.metrics,
        )


class ConsulAnnouncerConfig(AnnouncerConfig):
    """Registers a router's servers with the local Consul agent (a turnout extension):
    ``servers[].announce: [/#/io.l5d.consul/<dc>/<service>]`` registers the server's address
    as an instance of ``<service>`` while it listens, and deregisters it when turnout starts
    draining. The agent registers in its own datacenter (``.local``)."""

    kind = "io.l5d.consul"
    host: str = option("localhost", doc="Consul agent host.")
    port: int = option(8500, min=1, max=65535, doc="Consul agent HTTP port.")
    token: str | None = option(None, secret=True, doc="ACL token, sent as X-Consul-Token.")
    tags: list[str] = option(default_factory=list, doc="Tags of the registered instances.")
    ttl_ms: int | None = option(
        None,
        min=1000,
        doc="Register with a TTL check that turnout passes every ttlMs/3 (default: no check).",
    )
    deregister_critical_service_after_ms: int | None = option(
        None,
        min=1000,
        doc="With ttlMs: Consul removes a registration whose check stayed critical this long "
        "(a turnout that was killed).",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if self.deregister_critical_service_after_ms is not None and self.ttl_ms is None:
            yield "deregisterCriticalServiceAfterMs", "needs ttlMs (a check to turn critical)"

    def new_announcer(self, ctx: BuildContext) -> ConsulAnnouncer:
        from .announcer import ConsulAnnouncer

        after = self.deregister_critical_service_after_ms
        return ConsulAnnouncer(
            self.host,
            self.port,
            token=self.token,
            tags=list(self.tags),
            ttl=self.ttl_ms / 1000 if self.ttl_ms is not None else None,
            deregister_after=after / 1000 if after is not None else None,
        )
