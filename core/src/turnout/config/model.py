"""The configuration schema: Linkerd 1's top-level keys and the base class of each plugin kind.

Plugin config classes subclass one of the ``*Config`` bases below; the base fixes the family
(and so the hook that registers it) and holds the options every kind of that family shares,
as Linkerd's ``NamerConfig`` holds ``prefix`` and ``experimental``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar, Literal

from ..announcer import Announcer
from ..context import BuildContext, RouterRuntime
from ..naming import Dtab, NameInterpreter, Namer, NameTree, Path, PathMatcher
from ..naming.transformer import NameTreeTransformer
from ..telemetry import Telemeter
from .schema import ConfigObject, RegisteredDefault, option
from .source import Loc

LOOPBACK = "127.0.0.1"
_LATER = "not implemented yet; ignored"


# ---------------------------------------------------------------------------------------------
# Plugin families
# ---------------------------------------------------------------------------------------------


class NamerConfig(ConfigObject):
    """Base of namer configs (``namers:`` entries). Registered by ``turnout_register_namers``."""

    family = "namer"
    prefix: Path | None = option(
        None, doc="Where the namer is mounted, under /#. Defaults to /<kind>."
    )
    experimental: bool = option(False, doc="Required to use a kind marked experimental.")
    transformers: list[TransformerConfig] = option(
        default_factory=list, doc="Transformers applied to every address set this namer binds."
    )

    @property
    def effective_prefix(self) -> Path:
        """The prefix this namer answers under ``/#`` (``/io.l5d.fs`` by default)."""
        return self.prefix if self.prefix is not None else Path.of(str(self.kind))

    def new_namer(self, ctx: BuildContext) -> Namer:
        """Build the runtime namer. Plugins must override this."""
        raise NotImplementedError(f"namer kind {self.kind!r} does not implement new_namer()")


class InterpreterConfig(ConfigObject):
    """Base of ``router.interpreter`` configs. Registered by ``turnout_register_interpreters``."""

    family = "interpreter"
    default_kind = "default"
    experimental: bool = option(False, doc="Required to use a kind marked experimental.")
    transformers: list[TransformerConfig] = option(
        default_factory=list, doc="Transformers applied to every bound address set."
    )

    def new_interpreter(self, ctx: BuildContext) -> NameInterpreter:
        """Build the runtime interpreter of ``ctx.router``."""
        raise NotImplementedError(f"interpreter {self.kind!r} does not implement new_interpreter()")


class IdentifierConfig(ConfigObject):
    """Base of identifier configs; each protocol subclasses it with its own ``family``."""

    family = "identifier"

    def new_identifier(self, ctx: BuildContext) -> Any:
        """Build the runtime identifier of ``ctx.router`` (whose ``dst_prefix`` starts the
        names it produces); what it is depends on the protocol."""
        raise NotImplementedError(f"identifier {self.kind!r} does not implement new_identifier()")


class TransformerConfig(ConfigObject):
    """Base of transformer configs. Registered by ``turnout_register_transformers``."""

    family = "transformer"
    prefix: Path | None = option(
        None,
        doc="Prefix of the transformed ids, after /%. Defaults to /<kind> "
        "(/io.l5d.port/<port> for io.l5d.port).",
    )

    def default_prefix(self) -> Path:
        """The prefix used when ``prefix`` is not set (Linkerd's ``defaultPrefix``)."""
        return Path.of(str(self.kind))

    @property
    def effective_prefix(self) -> Path:
        """What transformed ids start with: ``/%`` and the prefix (``/%/io.l5d.localhost``)."""
        return Path.of("%") + (self.prefix if self.prefix is not None else self.default_prefix())

    def new_transformer(self, ctx: BuildContext) -> NameTreeTransformer:
        """Build the runtime transformer."""
        raise NotImplementedError(f"transformer {self.kind!r} does not implement new_transformer()")


class TelemeterConfig(ConfigObject):
    """Base of ``telemetry:`` entries. Registered by ``turnout_register_telemeters``."""

    family = "telemeter"
    experimental: bool = option(False, doc="Required to use a kind marked experimental.")

    def new_telemeter(self, ctx: BuildContext) -> Telemeter:
        """Build the runtime telemeter."""
        raise NotImplementedError(f"telemeter {self.kind!r} does not implement new_telemeter()")


class AnnouncerConfig(ConfigObject):
    """Base of ``router.announcers`` entries. Registered by ``turnout_register_announcers``."""

    family = "announcer"
    prefix: Path | None = option(
        None, doc="Names under /#<prefix> are announced by this announcer. Defaults to /<kind>."
    )

    @property
    def effective_prefix(self) -> Path:
        """The prefix this announcer answers under ``/#`` (``/io.l5d.serversets`` by default)."""
        return self.prefix if self.prefix is not None else Path.of(str(self.kind))

    def new_announcer(self, ctx: BuildContext) -> Announcer:
        """Build the runtime announcer of ``ctx.router``."""
        raise NotImplementedError(f"announcer {self.kind!r} does not implement new_announcer()")


class LoadBalancerConfig(ConfigObject):
    """Base of ``client.loadBalancer`` configs; ``p2c`` when absent."""

    family = "load balancer"
    default_kind = "p2c"
    enable_probation: bool = option(
        False, doc="Keep endpoints removed by service discovery while they stay healthy."
    )

    def new_balancer(self, ctx: BuildContext | None = None) -> Any:
        """Build a new :class:`turnout.router.Balancer` for one client. Clients are created
        while routing, outside any build: ``ctx`` is None then."""
        raise NotImplementedError(f"load balancer {self.kind!r} does not implement new_balancer()")


class BackoffConfig(ConfigObject):
    """Base of backoff configs: ``constant`` or ``jittered``."""

    family = "backoff"

    def new_backoff(self) -> Callable[[], Iterator[float]]:
        """The backoff stream (a :data:`turnout.router.backoff.Backoff`) this config describes."""
        raise NotImplementedError(f"backoff {self.kind!r} does not implement new_backoff()")


class ConstantBackoffConfig(BackoffConfig):
    """The same delay every time."""

    kind = "constant"
    ms: int = option(0, min=0, doc="Delay in milliseconds.")

    def new_backoff(self) -> Callable[[], Iterator[float]]:
        from ..router.backoff import constant_backoff

        return constant_backoff(self.ms / 1000)


class JitteredBackoffConfig(BackoffConfig):
    """Decorrelated jitter between ``minMs`` and ``maxMs``."""

    kind = "jittered"
    min_ms: int = option(min=0, doc="Smallest delay in milliseconds.")
    max_ms: int = option(min=0, doc="Largest delay in milliseconds.")

    def check(self) -> Iterable[tuple[str, str]]:
        if self.max_ms < self.min_ms:
            yield "maxMs", f"must be at least minMs ({self.min_ms}), got {self.max_ms}"

    def new_backoff(self) -> Callable[[], Iterator[float]]:
        from ..router.backoff import decorrelated_jittered_backoff

        return decorrelated_jittered_backoff(self.min_ms / 1000, self.max_ms / 1000)


class FailureAccrualConfig(ConfigObject):
    """Base of ``client.failureAccrual`` configs; ``io.l5d.consecutiveFailures`` when absent."""

    family = "failure accrual"
    default_kind = "io.l5d.consecutiveFailures"
    backoff: BackoffConfig | None = option(
        None, doc="How long an ejected endpoint stays out (default: jittered 5 s to 300 s)."
    )

    def new_policy(self) -> Any:
        """Build a new :class:`turnout.router.FailureAccrual` for one client."""
        raise NotImplementedError(f"failure accrual {self.kind!r} does not implement new_policy()")


class ResponseClassifierConfig(ConfigObject):
    """Base of ``service.responseClassifier`` configs."""

    family = "response classifier"
    #: the protocol whose responses this classifier reads ("http", "h2")
    protocol: ClassVar[str | None] = None

    def new_classifier(self) -> Any:
        """Build the response classifier (what it is depends on the protocol)."""
        raise NotImplementedError(f"classifier {self.kind!r} does not implement new_classifier()")


# ---------------------------------------------------------------------------------------------
# Servers, clients, services
# ---------------------------------------------------------------------------------------------


class SocketOptionsConfig(ConfigObject):
    """TCP socket options."""

    no_delay: bool = option(True, doc="TCP_NODELAY.")
    reuse_addr: bool = option(True, doc="SO_REUSEADDR.")
    reuse_port: bool = option(
        False, doc="SO_REUSEPORT: lets a new process bind the port before the old one stops."
    )
    keep_alive: bool = option(False, doc="SO_KEEPALIVE.")
    backlog: int | None = option(None, min=1, doc="Listen backlog.")
    read_timeout_ms: int | None = option(None, min=1, doc="Close a connection idle this long.")
    write_timeout_ms: int | None = option(None, min=1, doc="Close a connection that cannot write.")


class TlsServerConfig(ConfigObject):
    """Terminate TLS on a server."""

    cert_path: str = option(doc="PEM certificate (chain), leaf first.")
    key_path: str = option(doc="PEM private key of the certificate (PKCS#8 or PKCS#1).")
    intermediate_certs_path: str | None = option(
        None, doc="PEM intermediate certificates, sent after the certificate."
    )
    ca_cert_path: str | None = option(
        None,
        doc="PEM CA certificates that verify client certificates (asked for, not required, "
        "unless requireClientAuth).",
    )
    require_client_auth: bool = option(
        False, doc="Require a client certificate that caCertPath verifies (mTLS)."
    )
    protocols: list[str] | None = option(
        None, doc="TLS versions to accept: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 (default 1.2 and 1.3)."
    )
    ciphers: list[str] | None = option(
        None, doc="OpenSSL cipher names for TLS 1.2 and lower (TLS 1.3 suites are OpenSSL's)."
    )

    def check(self) -> Iterable[tuple[str | Loc, str]]:
        from .. import tls

        return tls.check_server(self)


class SessionConfig(ConfigObject):
    """Connection lifetime limits."""

    idle_time_ms: int | None = option(None, min=1, doc="Close connections idle this long.")
    life_time_ms: int | None = option(None, min=1, doc="Close connections this old.")


class ServerConfig(ConfigObject):
    """One listening socket of a router (``routers[].servers[]``)."""

    port: int | None = option(
        None, min=0, max=65535, doc="Port; the protocol's default when absent."
    )
    ip: str = option(LOOPBACK, doc="Address to bind. Loopback by default; use 0.0.0.0 for all.")
    tls: TlsServerConfig | None = option(None, doc="Terminate TLS (see docs/tls.md).")
    max_concurrent_requests: int | None = option(
        None, min=1, doc="Reject requests beyond this many in flight (503, no queueing)."
    )
    clear_context: bool = option(
        False, doc="Drop l5d-* context headers from requests and responses (edge servers)."
    )
    announce: list[Path] = option(
        default_factory=list,
        doc="Names to announce (/#/<announcer prefix>/...) through the router's announcers "
        "while the server listens; withdrawn when draining starts.",
    )
    timeout_ms: int | None = option(
        None,
        min=1,
        doc="Server-side deadline: a request whose response has not begun this long after it "
        "arrived is answered 503 with l5d-err (no default: totalTimeoutMs and the client's "
        "responseIdleTimeoutMs bound requests already).",
    )
    server_session: SessionConfig | None = option(
        None,
        doc="Client connection limits: idleTimeMs closes idle keep-alive connections, "
        "lifeTimeMs closes a connection after the response in progress once it is this old.",
    )
    socket_options: SocketOptionsConfig | None = option(None, doc="TCP socket options.")
    label: str | None = option(None, doc="Name of the server in metrics.")


class BudgetConfig(ConfigObject):
    """A retry budget: how many retries are allowed relative to requests."""

    ttl_secs: int = option(10, min=1, max=60, doc="Window over which requests are counted.")
    min_retries_per_sec: int = option(10, min=0, doc="Retries always allowed per second.")
    percent_can_retry: float = option(
        0.2, min=0.0, max=1000.0, doc="Extra retries allowed, as a fraction of requests."
    )


class RetriesConfig(ConfigObject):
    """Application-level retries of retryable failures."""

    budget: BudgetConfig = option(default_factory=BudgetConfig, doc="The retry budget.")
    backoff: BackoffConfig | None = option(None, doc="Delay between retries (default: none).")


class PoolConfig(ConfigObject):
    """Connection pool per endpoint."""

    min_size: int = option(0, min=0, doc="Connections kept open even when idle.")
    max_size: int | None = option(None, min=1, doc="Most connections per endpoint.")
    idle_time_ms: int | None = option(None, min=0, doc="Close idle connections after this.")
    max_waiters: int | None = option(None, min=0, doc="Requests that may wait for a connection.")


class ClientTlsConfig(ConfigObject):
    """Originate TLS to endpoints."""

    enabled: bool = option(True, doc="Set false to turn TLS off for a sub-prefix.")
    common_name: str | None = option(
        None,
        doc="Name the endpoints' certificates must carry, also sent as SNI; {var} is a "
        "capture of the client prefix. Required unless disableValidation.",
    )
    disable_validation: bool = option(
        False, doc="Do not verify endpoint certificates (insecure; logged loudly at start)."
    )
    trust_certs_bundle: str | None = option(
        None, doc="PEM bundle of trusted CAs (default: the system's)."
    )
    trust_certs: list[str] | None = option(None, doc="Trusted CA files (deprecated).")
    client_auth: dict[str, str] | None = option(
        None, doc="certPath, keyPath (and intermediateCertsPath) of a client certificate (mTLS)."
    )
    protocols: list[str] | None = option(
        None, doc="TLS versions: TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 (default 1.2 and 1.3)."
    )

    def check(self) -> Iterable[tuple[str | Loc, str]]:
        from .. import tls

        return tls.check_client(self)


class ClientParams(ConfigObject):
    """Options of the client for one bound name (all optional so that prefix configs merge)."""

    load_balancer: LoadBalancerConfig | None = option(None, doc="Load balancer (default p2c).")
    failure_accrual: FailureAccrualConfig | None = option(
        None, doc="Failure accrual (default 5 consecutive failures)."
    )
    host_connection_pool: PoolConfig | None = option(None, doc="Connection pool per endpoint.")
    request_attempt_timeout_ms: int | None = option(
        None,
        min=1,
        doc="Timeout of each attempt.",
    )
    requeue_budget: BudgetConfig | None = option(
        None, doc="Budget for immediate requeues of requests that were never written."
    )
    fail_fast: bool | None = option(
        None,
        doc="Mark endpoints down on connect failure.",
        unsupported=f"failFast: true is {_LATER}",
        supported=(False,),
    )
    client_session: SessionConfig | None = option(
        None,
        doc="Endpoint connection limits: idleTimeMs closes pooled connections idle this long "
        "(default 60000, as hostConnectionPool.idleTimeMs), lifeTimeMs stops reusing a "
        "connection once it is this old.",
    )
    response_idle_timeout_ms: int | None = option(
        None,
        min=1,
        doc="Longest an endpoint may stay silent while a response is awaited or streamed "
        "(default 60000): no response head this long after the request was sent is answered "
        "504 with l5d-err; a response body stalled this long is cut. Checked once a second.",
    )
    socket_options: SocketOptionsConfig | None = option(None, doc="TCP socket options.")
    tls: ClientTlsConfig | None = option(
        None, doc="Originate TLS to the endpoints (see docs/tls.md)."
    )
    forward_client_cert: bool | None = option(
        None,
        doc="Send the verified client certificate of the downstream TLS connection upstream "
        "in x-forwarded-client-cert (an incoming one is always removed).",
    )


class ServiceParams(ConfigObject):
    """Options of the service for one logical name (all optional so that prefix configs merge)."""

    total_timeout_ms: int | None = option(
        None,
        min=1,
        doc="Timeout of a request with its retries.",
    )
    retries: RetriesConfig | None = option(None, doc="Retries of retryable failures.")
    response_classifier: ResponseClassifierConfig | None = option(
        None, doc="Decides success, failure and retryability of responses."
    )


class ClientConfig(ConfigObject):
    """``router.client``: ``io.l5d.global`` (one set of options) or ``io.l5d.static``."""

    family = "client"
    default_kind = "io.l5d.global"


class ServiceConfig(ConfigObject):
    """``router.service``: ``io.l5d.global`` (one set of options) or ``io.l5d.static``."""

    family = "service"
    default_kind = "io.l5d.global"


class GlobalClientConfig(ClientParams, ClientConfig):
    """The same client options for every bound name."""

    kind = "io.l5d.global"


class StaticClientEntry(ClientParams):
    """Client options for the bound names matching ``prefix``."""

    prefix: PathMatcher = option(doc="Bound-id pattern: '*' is one segment, {var} captures.")


class StaticClientConfig(ClientConfig):
    """Client options per bound-id prefix; all matching entries merge, later ones win."""

    kind = "io.l5d.static"
    configs: list[StaticClientEntry] = option(doc="Prefix configs, in order.")


class GlobalServiceConfig(ServiceParams, ServiceConfig):
    """The same service options for every logical name."""

    kind = "io.l5d.global"


class StaticServiceEntry(ServiceParams):
    """Service options for the logical names matching ``prefix``."""

    prefix: PathMatcher = option(doc="Logical-name pattern: '*' is one segment, {var} captures.")


class StaticServiceConfig(ServiceConfig):
    """Service options per logical-name prefix; all matching entries merge, later ones win."""

    kind = "io.l5d.static"
    configs: list[StaticServiceEntry] = option(doc="Prefix configs, in order.")


class BindingCacheConfig(ConfigObject):
    """Sizes of the router's binding caches."""

    paths: int = option(1000, min=1, doc="Cached logical names.")
    trees: int = option(1000, min=1, doc="Cached name trees.")
    bounds: int = option(1000, min=1, doc="Cached bound names.")
    clients: int = option(1000, min=1, doc="Cached clients (one per bound name).")
    idle_ttl_secs: int = option(600, min=1, doc="Expire entries unused for this long.")


class RouterConfig(ConfigObject):
    """Base of router configs; ``protocol:`` selects the registered subclass."""

    family = "router"
    discriminator = "protocol"
    #: the protocol's default server port
    default_port: ClassVar[int] = 0
    #: whether the protocol's servers honour ``socketOptions.reusePort`` (SO_REUSEPORT), as
    #: ``workers: N`` needs: every worker listens on the same ports
    reuse_port_capable: ClassVar[bool] = False

    label: str | None = option(None, doc="Name of the router in metrics; defaults to the protocol.")
    servers: list[ServerConfig] = option(doc="Where the router listens.")
    dtab: Dtab = option(default_factory=lambda: Dtab.empty, doc="The router's base dtab.")
    dst_prefix: Path = option(
        default_factory=lambda: Path.of("svc"), doc="Prefix of the names identifiers produce."
    )
    interpreter: InterpreterConfig = option(
        default_factory=RegisteredDefault(InterpreterConfig), doc="How names are bound."
    )
    client: ClientConfig | None = option(None, doc="Client policy per bound name.")
    service: ServiceConfig | None = option(None, doc="Service policy per logical name.")
    binding_timeout_ms: int = option(10000, min=1, doc="Longest wait for a name to bind (502).")
    binding_cache: BindingCacheConfig = option(
        default_factory=BindingCacheConfig, doc="Binding cache sizes."
    )
    announcers: list[AnnouncerConfig] = option(default_factory=list, doc="Announcers.")
    originator: bool = option(False, doc="Publish the gauge rt/<label>/originator = 1.")
    experimental: bool = option(False, doc="Required to use an experimental protocol.")

    @property
    def effective_label(self) -> str:
        return self.label if self.label is not None else str(self.kind)

    def server_port(self, server: ServerConfig) -> int:
        return server.port if server.port is not None else self.default_port

    def new_router(self, ctx: BuildContext) -> RouterRuntime:
        """Build the runtime router of ``ctx.router`` (its servers and protocol client), with
        ``ctx.interpreter``."""
        raise NotImplementedError(f"protocol {self.kind!r} does not implement new_router()")


# ---------------------------------------------------------------------------------------------
# Admin and the whole file
# ---------------------------------------------------------------------------------------------


class AdminSecurityConfig(ConfigObject):
    """Which admin endpoints are served (denied → 404)."""

    ui_enabled: bool = option(True, doc="Dashboard, metrics, config and delegator pages.")
    control_enabled: bool = option(True, doc="/admin/shutdown and /logging.json.")
    diagnostics_enabled: bool = option(True, doc="Every other endpoint.")
    path_whitelist: list[str] = option(default_factory=list, doc="Regexes always allowed.")
    path_blacklist: list[str] = option(default_factory=list, doc="Regexes always denied.")


class AdminConfig(ConfigObject):
    """The admin server (``admin:``)."""

    ip: str = option(LOOPBACK, doc="Address of the admin server (loopback by default).")
    port: int = option(9990, min=0, max=65535, doc="Port of the admin server.")
    shutdown_grace_ms: int = option(10000, min=0, doc="Time in-flight requests get at shutdown.")
    security: AdminSecurityConfig = option(
        default_factory=AdminSecurityConfig, doc="Endpoint categories and path filters."
    )
    socket_options: SocketOptionsConfig | None = option(None, doc="TCP socket options.")
    tls: TlsServerConfig | None = option(None, doc="Serve the admin over TLS (docs/tls.md).")
    http_identifier_port: int | None = option(
        None, min=0, max=65535, unsupported="admin.httpIdentifierPort is not implemented yet"
    )
    worker_threads: int | None = option(
        None, min=1, doc="Accepted for Linkerd compatibility; turnout's admin is one event loop."
    )


class UsageConfig(ConfigObject):
    """Linkerd's anonymous usage reporting; accepted and ignored (turnout never phones home)."""

    org_id: str | None = option(None, doc="Ignored.")
    enabled: bool = option(True, doc="Ignored.")


class LinkerConfig(ConfigObject):
    """A whole turnout (Linkerd 1) configuration file."""

    admin: AdminConfig = option(default_factory=AdminConfig, doc="The admin server.")
    routers: list[RouterConfig] = option(doc="Routers (at least one).")
    namers: list[NamerConfig] = option(default_factory=list, doc="Service-discovery namers.")
    telemetry: list[TelemeterConfig] = option(default_factory=list, doc="Telemeters.")
    usage: UsageConfig | None = option(None, doc="Accepted and ignored.")
    workers: int | Literal["auto"] = option(
        1,
        doc="Worker processes serving the same ports (SO_REUSEPORT), each with its own event "
        "loop, under a supervisor that owns the admin port; auto: one per CPU "
        "(docs/operations.md). turnout run --workers overrides it.",
    )

    def check(self) -> Iterable[tuple[str | Loc, str]]:
        if not self.routers:
            yield "routers", "at least one router is required"
        if isinstance(self.workers, int) and not 1 <= self.workers <= 256:
            yield "workers", "must be a number of processes from 1 to 256, or auto"
        routers = [
            (
                r.effective_label,
                [(s.ip, r.server_port(s)) for s in r.servers],
            )
            for r in self.routers
        ]
        yield from listener_conflicts((self.admin.ip, self.admin.port), routers)
        yield from unannounced_names(self.routers)

    def insecure_tls_warnings(self) -> list[str]:
        """Loud warnings about TLS options that weaken security on purpose
        (``client.tls.disableValidation``)."""
        out: list[str] = []
        for router in self.routers:
            client = router.client
            entries: list[tuple[str, ClientParams]] = []
            if isinstance(client, GlobalClientConfig):
                entries.append(("client", client))
            elif isinstance(client, StaticClientConfig):
                entries += [(f"client prefix {e.prefix}", e) for e in client.configs]
            for where, params in entries:
                tls = params.tls
                if tls is not None and tls.enabled and tls.disable_validation:
                    out.append(
                        f"router '{router.effective_label}' {where}: tls.disableValidation is "
                        "true: endpoint certificates are NOT verified; traffic can be "
                        "intercepted by anyone on the path. Use it only for testing."
                    )
        return out


Listener = tuple[str, int]


def unannounced_names(routers: list[RouterConfig]) -> Iterator[tuple[Loc, str]]:
    """``servers[].announce`` names that no announcer of the router answers."""
    for i, router in enumerate(routers):
        prefixes = [Path.of("#") + a.effective_prefix for a in router.announcers]
        for j, server in enumerate(router.servers):
            for k, name in enumerate(server.announce):
                if any(name.starts_with(p) for p in prefixes):
                    continue
                known = ", ".join(p.show for p in prefixes) or "none: add router.announcers"
                yield (
                    ("routers", i, "servers", j, "announce", k),
                    f"no announcer of router '{router.effective_label}' announces {name.show}; "
                    f"a name must start with the /#/<prefix> of one of its announcers "
                    f"(announcer prefixes: {known})",
                )


def listener_conflicts(
    admin: Listener | None, routers: list[tuple[str, list[Listener]]]
) -> Iterator[tuple[Loc, str]]:
    """Duplicate router labels and servers that would bind the same ip:port.

    Shared by :meth:`LinkerConfig.check` and by the loader, which runs it on the raw data of
    a config that has other errors too, so that every problem is reported in one pass.
    """
    labels: dict[str, int] = {}
    for i, (label, _) in enumerate(routers):
        if label in labels:
            yield (
                ("routers", i, "label"),
                f"router label '{label}' is already used by routers[{labels[label]}]; "
                "give each router a unique 'label'",
            )
        else:
            labels[label] = i
    bound: dict[Listener, str] = {}
    if admin is not None and admin[1]:
        bound[admin] = "the admin server"
    for i, (_, servers) in enumerate(routers):
        for j, (ip, port) in enumerate(servers):
            if port == 0:
                continue
            clash = next(
                (
                    other
                    for (oip, oport), other in bound.items()
                    if oport == port and (oip == ip or "0.0.0.0" in (oip, ip))
                ),
                None,
            )
            if clash is not None:
                yield (
                    ("routers", i, "servers", j, "port"),
                    f"server conflict on {ip}:{port}: {clash} already listens there; "
                    "choose another port",
                )
            else:
                bound[(ip, port)] = f"routers[{i}].servers[{j}]"


__all__ = [
    "AdminConfig",
    "AdminSecurityConfig",
    "AnnouncerConfig",
    "BackoffConfig",
    "BindingCacheConfig",
    "BudgetConfig",
    "ClientConfig",
    "ClientParams",
    "ConstantBackoffConfig",
    "FailureAccrualConfig",
    "GlobalClientConfig",
    "GlobalServiceConfig",
    "IdentifierConfig",
    "InterpreterConfig",
    "JitteredBackoffConfig",
    "LinkerConfig",
    "LoadBalancerConfig",
    "NameTree",
    "NamerConfig",
    "PoolConfig",
    "ResponseClassifierConfig",
    "RetriesConfig",
    "RouterConfig",
    "ServerConfig",
    "ServiceConfig",
    "ServiceParams",
    "SocketOptionsConfig",
    "StaticClientConfig",
    "StaticServiceConfig",
    "TelemeterConfig",
    "TransformerConfig",
]
