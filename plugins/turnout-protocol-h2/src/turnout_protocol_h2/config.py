"""Configuration of ``protocol: h2`` (a ``routers:`` entry), with Linkerd's option names.

Linkerd's h2 router adds options to three sections that core's config classes do not have:
the HTTP/2 settings of a server and of a client (``initialStreamWindowBytes``,
``maxFrameBytes`` ...), and the service's ``classificationTimeoutMs`` and ``retryBufferSize``.
:class:`H2ClientConfig` and :class:`H2ServiceConfig` read the whole section (core's options,
by subclassing core's public classes, plus the h2 ones) and hand core its own config
(``to_core``) for the binding cache, as the thrift plugin does for its client section.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from turnout.api import (
    ClientParams,
    ConfigObject,
    GlobalClientConfig,
    GlobalServiceConfig,
    IdentifierConfig,
    Path,
    ResponseClassifierConfig,
    RollPolicy,
    RouterConfig,
    ServerConfig,
    ServiceParams,
    StaticClientConfig,
    StaticClientEntry,
    StaticServiceConfig,
    StaticServiceEntry,
    access_log_problem,
    option,
)

if TYPE_CHECKING:
    from turnout.api import BuildContext

    from .classifiers import H2Classifier
    from .identifiers import Identifier

KB = 1024
Where = tuple[str | int, ...]

#: the retry buffer of Linkerd's ClassifiedRetryFilter (bytes, request and response)
DEFAULT_RETRY_BUFFER = 16383
#: Linkerd's classificationTimeoutMs
DEFAULT_CLASSIFICATION_TIMEOUT_MS = 100


class H2Settings(ConfigObject):
    """HTTP/2 settings of a server or a client (Linkerd's ``H2EndpointConfig``)."""

    initial_stream_window_bytes: int | None = option(
        None,
        min=0,
        max=2**31 - 1,
        doc="SETTINGS_INITIAL_WINDOW_SIZE: what the peer may send on a stream before turnout "
        "returns credit (default 65535). Credit goes back only when the other side of the "
        "proxy took the bytes: this bounds what turnout buffers per stream.",
    )
    initial_connection_window_bytes: int | None = option(
        None,
        min=65535,
        max=2**31 - 1,
        doc="The connection's receive window (default: the stream window times 4, at least 65535).",
    )
    max_frame_bytes: int | None = option(
        None, min=16384, max=2**24 - 1, doc="SETTINGS_MAX_FRAME_SIZE (default 16384)."
    )
    max_header_list_bytes: int | None = option(
        None,
        min=64,
        max=2**24,
        doc="SETTINGS_MAX_HEADER_LIST_SIZE (default 8192): a larger header block ends the "
        "connection (HPACK bomb).",
    )
    header_table_bytes: int | None = option(
        None,
        supported=(4096,),
        unsupported="headerTableBytes is not implemented: the HPACK table stays at 4096 bytes",
    )
    window_update_ratio: float | None = option(
        None,
        min=0.0,
        max=1.0,
        doc="Accepted for Linkerd compatibility: nghttp2 sends WINDOW_UPDATE once half of a "
        "window is consumed.",
    )


class ForwardedLabelConfig(ConfigObject):
    """How one Forwarded parameter is written (Linkerd's labelers)."""

    label_kind: Literal["ip", "ip:port", "connectionRandom", "requestRandom", "static"] = option(
        key="kind", doc="ip, ip:port, connectionRandom, requestRandom or static."
    )
    label: str | None = option(None, doc="static: the value (an obfuscated identifier).")

    def check(self) -> Iterable[tuple[Where, str]]:
        if self.label_kind == "static" and not self.label:
            yield ("label",), "kind static needs a label"


class AddForwardedHeaderConfig(ConfigObject):
    """``addForwardedHeader``: which parameters the Forwarded header carries."""

    by: ForwardedLabelConfig | None = option(None, doc="The proxy's own address (default: ip).")
    for_: ForwardedLabelConfig | None = option(
        None, key="for", doc="The client's address (default: ip)."
    )


class H2ServerConfig(ServerConfig, H2Settings):
    """A listening socket of an h2 router: h2c with prior knowledge, or TLS with ALPN h2."""

    max_concurrent_streams_per_connection: int = option(
        1000, min=1, doc="SETTINGS_MAX_CONCURRENT_STREAMS; a stream beyond it is refused."
    )
    max_call_depth: int = option(
        10, min=1, doc="Refuse requests that already went through this many proxies (Via)."
    )
    add_forwarded_header: AddForwardedHeaderConfig | None = option(
        None, doc="Add an RFC 7239 Forwarded header to requests (by, for)."
    )
    send_timeout_ms: int = option(
        60_000,
        min=1,
        doc="A client that takes none of the response bytes waiting for it this long (a zero "
        "window, or a socket it does not read) has the stream reset (CANCEL), or the "
        "connection closed; counted in h2/stalled_streams and h2/stalled_connections "
        "(nginx's send_timeout).",
    )
    shutdown_grace_ms: int = option(
        10_000,
        min=0,
        doc="On shutdown or reload, how long open streams may finish after the GOAWAY "
        "notice before the connection is closed.",
    )


class H2ClientParams(H2Settings):
    """The HTTP/2 options of a client."""

    max_concurrent_streams_per_connection: int | None = option(
        None,
        min=1,
        doc="Most streams turnout opens on one endpoint connection (default: what the "
        "endpoint allows); beyond it another connection is opened.",
    )
    request_authorizers: list[dict[str, Any]] | None = option(
        None, unsupported="requestAuthorizers is not implemented by protocol h2"
    )


class H2ClientEntry(StaticClientEntry, H2ClientParams):
    """Client options for the bound names matching ``prefix`` (``io.l5d.static``)."""


#: client options of core that this protocol does not implement (each a located error)
_CLIENT_UNSUPPORTED = {
    "forward_client_cert": "forwardClientCert is not implemented by protocol h2",
    "socket_options": "socketOptions is not implemented by protocol h2 clients",
}


class H2ClientConfig(ClientParams, H2ClientParams):
    """``client:`` of an h2 router: ``io.l5d.global`` or ``io.l5d.static`` (``configs``),
    with core's client options and the HTTP/2 settings."""

    client_kind: Literal["io.l5d.global", "io.l5d.static"] = option(
        "io.l5d.global", key="kind", doc="io.l5d.global or io.l5d.static."
    )
    configs: list[H2ClientEntry] | None = option(
        None, doc="io.l5d.static: prefix configs, in order."
    )

    def core_params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in ClientParams.config_fields().values()}

    def check(self) -> Iterable[tuple[Where, str]]:
        yield from _check_kind(self, ClientParams, H2ClientParams, self.core_params())
        entries: list[tuple[Where, Any]] = (
            [((), self)]
            if self.client_kind == "io.l5d.global"
            else [(("configs", i), e) for i, e in enumerate(self.configs or [])]
        )
        for where, entry in entries:
            for name, why in _CLIENT_UNSUPPORTED.items():
                if getattr(entry, name, None) not in (None, False):
                    yield (*where, _key(ClientParams, name)), why

    def to_core(self) -> Any:
        if self.client_kind == "io.l5d.global":
            return GlobalClientConfig(**self.core_params())
        names = [f.name for f in StaticClientEntry.config_fields().values()]
        return StaticClientConfig(
            configs=[
                StaticClientEntry(**{n: getattr(e, n) for n in names}) for e in self.configs or []
            ]
        )

    def h2_params(self, bound_id: Path) -> dict[str, Any]:
        """The HTTP/2 options that apply to the client of ``bound_id`` (later entries win)."""
        return _h2_values(self, H2ClientParams, bound_id)

    def response_timeout_ms(self, bound_id: Path) -> int | None:
        """``responseIdleTimeoutMs`` as written for the client of ``bound_id`` (None: not
        set; core's 60 s default is not applied to h2 streams, which may be long-lived)."""
        if self.client_kind == "io.l5d.global":
            return self.response_idle_timeout_ms
        found = None
        for entry in self.configs or []:
            if entry.prefix.extract(bound_id) is not None and entry.response_idle_timeout_ms:
                found = entry.response_idle_timeout_ms
        return found


class RetryBufferSizeConfig(ConfigObject):
    """How much of a stream is kept so that it can be sent again (Linkerd's
    ``retryBufferSize``)."""

    request_bytes: int = option(
        DEFAULT_RETRY_BUFFER,
        min=0,
        doc="A request body longer than this is streamed only and never retried.",
    )
    response_bytes: int = option(
        DEFAULT_RETRY_BUFFER,
        min=0,
        doc="Response DATA held with the headers while a response's classification is "
        "awaited (a gRPC status in the trailers); a longer response is streamed unclassified.",
    )


class H2ServiceParams(ConfigObject):
    """The h2 options of a service."""

    classification_timeout_ms: int | None = option(
        None,
        min=0,
        doc="How long a response that could be retried is held (its headers, and DATA within "
        "retryBufferSize.responseBytes) waiting for its classification (the trailers of a gRPC "
        "call) before it is streamed unclassified (default 100).",
    )
    retry_buffer_size: RetryBufferSizeConfig | None = option(
        None, doc="Bytes of a stream kept for a retry (default 16383 each way)."
    )


class H2ServiceEntry(StaticServiceEntry, H2ServiceParams):
    """Service options for the logical names matching ``prefix`` (``io.l5d.static``)."""


class H2ServiceConfig(ServiceParams, H2ServiceParams):
    """``service:`` of an h2 router: core's service options (``responseClassifier`` takes the
    ``io.l5d.h2.*`` classifiers) plus classificationTimeoutMs and retryBufferSize."""

    service_kind: Literal["io.l5d.global", "io.l5d.static"] = option(
        "io.l5d.global", key="kind", doc="io.l5d.global or io.l5d.static."
    )
    configs: list[H2ServiceEntry] | None = option(
        None, doc="io.l5d.static: prefix configs, in order."
    )

    def core_params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in ServiceParams.config_fields().values()}

    def check(self) -> Iterable[tuple[Where, str]]:
        yield from _check_kind(self, ServiceParams, H2ServiceParams, self.core_params())
        entries: list[tuple[Where, Any]] = (
            [((), self)]
            if self.service_kind == "io.l5d.global"
            else [(("configs", i), e) for i, e in enumerate(self.configs or [])]
        )
        for where, entry in entries:
            cfg = entry.response_classifier
            if cfg is not None and type(cfg).protocol != "h2":
                yield (
                    (*where, "responseClassifier"),
                    f"{cfg.kind} classifies HTTP/1.1 responses; protocol h2 takes "
                    "io.l5d.h2.* classifiers (io.l5d.h2.retryableRead5XX, "
                    "io.l5d.h2.grpc.default, ...)",
                )

    def to_core(self) -> Any:
        if self.service_kind == "io.l5d.global":
            return GlobalServiceConfig(**self.core_params())
        names = [f.name for f in StaticServiceEntry.config_fields().values()]
        return StaticServiceConfig(
            configs=[
                StaticServiceEntry(**{n: getattr(e, n) for n in names}) for e in self.configs or []
            ]
        )

    def h2_params(self, name: Path) -> dict[str, Any]:
        return _h2_values(self, H2ServiceParams, name)


def _check_kind(
    section: Any, core: Any, own: Any, core_values: dict[str, Any]
) -> Iterable[tuple[Where, str]]:
    kind = section.client_kind if hasattr(section, "client_kind") else section.service_kind
    if kind == "io.l5d.global":
        if section.configs is not None:
            yield ("configs",), "configs belongs to 'kind: io.l5d.static'"
        return
    if section.configs is None:
        yield ("kind",), "io.l5d.static needs 'configs' (a list of prefix configs)"
    for key, f in own.config_fields().items():
        if getattr(section, f.name) is not None:
            yield (key,), f"with 'kind: io.l5d.static', set {key} in configs[]"
    for name, value in core_values.items():
        if value is not None:
            key = _key(core, name)
            yield (key,), f"with 'kind: io.l5d.static', set {key} in configs[]"


def _h2_values(section: Any, own: Any, path: Path) -> dict[str, Any]:
    names = [f.name for f in own.config_fields().values()]
    out: dict[str, Any] = {}
    kind = section.client_kind if hasattr(section, "client_kind") else section.service_kind
    entries = [section] if kind == "io.l5d.global" else list(section.configs or [])
    for entry in entries:
        if entry is not section and entry.prefix.extract(path) is None:
            continue
        for n in names:
            value = getattr(entry, n)
            if value is not None:
                out[n] = value
    return out


def _key(cls: Any, name: str) -> str:
    return str(next(k for k, f in cls.config_fields().items() if f.name == name))


# -- identifiers --------------------------------------------------------------------------------


class H2IdentifierConfig(IdentifierConfig):
    """Base of h2 identifiers: they turn a request's header block into a name."""

    family = "h2 identifier"

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        raise NotImplementedError


class HeaderTokenIdentifierConfig(H2IdentifierConfig):
    """``/<dstPrefix>/<header value>``: one header's value as one segment (the last value
    wins)."""

    kind = "io.l5d.header.token"
    header: str = option(":authority", doc="The header whose value names the service.")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import HeaderTokenIdentifier

        return HeaderTokenIdentifier(prefix, self.header)


class HeaderPathIdentifierConfig(H2IdentifierConfig):
    """``/<dstPrefix>/<the first N segments of a path header>``: for gRPC, ``segments: 1``
    gives ``/svc/<package.Service>``."""

    kind = "io.l5d.header.path"
    header: str = option(":path", doc="The header holding a URI path (its query is ignored).")
    segments: int | None = option(None, min=1, doc="Leading segments to use (default: all).")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import HeaderPathIdentifier

        return HeaderPathIdentifier(prefix, self.header, self.segments)


class HeaderIdentifierConfig(H2IdentifierConfig):
    """``/<dstPrefix><header value>``: the header's value is a path (``/web/v2``)."""

    kind = "io.l5d.header"
    header: str = option("l5d-name", doc="The header whose value is a path.")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import HeaderNameIdentifier

        return HeaderNameIdentifier(prefix, self.header)


class StaticIdentifierConfig(H2IdentifierConfig):
    """Every request gets the same name: ``/<dstPrefix><path>``."""

    kind = "io.l5d.static"
    path: Path = option(doc="The name, for example /web.")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import StaticIdentifier

        return StaticIdentifier(prefix + self.path)


IDENTIFIERS: list[type[H2IdentifierConfig]] = [
    HeaderTokenIdentifierConfig,
    HeaderPathIdentifierConfig,
    HeaderIdentifierConfig,
    StaticIdentifierConfig,
]


# -- response classifiers -------------------------------------------------------------------------

_READ = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
_IDEMPOTENT = _READ | {b"PUT", b"DELETE"}
_ALL = _IDEMPOTENT | {b"POST", b"PATCH", b"CONNECT"}


class _H2ClassifierConfig(ResponseClassifierConfig):
    protocol = "h2"
    retryable_methods: ClassVar[frozenset[bytes]] = frozenset()
    all_successful: ClassVar[bool] = False

    def new_classifier(self) -> H2Classifier:
        from .classifiers import StatusClassifier

        return StatusClassifier(self.retryable_methods, all_successful=self.all_successful)


class NonRetryable5XXConfig(_H2ClassifierConfig):
    """5XX responses are failures, never retried (the default)."""

    kind = "io.l5d.h2.nonRetryable5XX"


class RetryableRead5XXConfig(_H2ClassifierConfig):
    """5XX are failures; retryable for GET, HEAD, OPTIONS and TRACE."""

    kind = "io.l5d.h2.retryableRead5XX"
    retryable_methods = _READ


class RetryableIdempotent5XXConfig(_H2ClassifierConfig):
    """5XX are failures; retryable for read methods and PUT and DELETE."""

    kind = "io.l5d.h2.retryableIdempotent5XX"
    retryable_methods = _IDEMPOTENT


class RetryableAll5XXConfig(_H2ClassifierConfig):
    """5XX are failures; retryable for every method."""

    kind = "io.l5d.h2.retryableAll5XX"
    retryable_methods = _ALL


class AllSuccessfulConfig(_H2ClassifierConfig):
    """Every response is a success."""

    kind = "io.l5d.h2.allSuccessful"
    all_successful = True


class _GrpcClassifierConfig(_H2ClassifierConfig):
    rule: ClassVar[str] = "default"
    success_status_codes: list[int] = option(
        default_factory=lambda: [0], doc="gRPC status codes that are successes."
    )

    def retryable_codes(self) -> frozenset[int] | None:
        """The retryable gRPC codes (None: every failure)."""
        return frozenset({14})

    def new_classifier(self) -> H2Classifier:
        from .classifiers import GrpcClassifier

        return GrpcClassifier(
            frozenset(self.success_status_codes),
            self.retryable_codes(),
            compliant=self.rule == "compliant",
        )


class GrpcDefaultConfig(_GrpcClassifierConfig):
    """gRPC: status 0 succeeds; UNAVAILABLE (14) is a retryable failure, others are not."""

    kind = "io.l5d.h2.grpc.default"


class GrpcCompliantConfig(_GrpcClassifierConfig):
    """gRPC: as the default, and REFUSED_STREAM resets and HTTP 429, 502, 503, 504 are
    retryable too."""

    kind = "io.l5d.h2.grpc.compliant"
    rule = "compliant"


class GrpcAlwaysRetryableConfig(_GrpcClassifierConfig):
    """gRPC: every failure status is retryable."""

    kind = "io.l5d.h2.grpc.alwaysRetryable"

    def retryable_codes(self) -> frozenset[int] | None:
        return None


class GrpcNeverRetryableConfig(_GrpcClassifierConfig):
    """gRPC: no failure is retryable."""

    kind = "io.l5d.h2.grpc.neverRetryable"

    def retryable_codes(self) -> frozenset[int] | None:
        return frozenset()


class GrpcRetryableStatusCodesConfig(_GrpcClassifierConfig):
    """gRPC: the listed status codes are retryable failures."""

    kind = "io.l5d.h2.grpc.retryableStatusCodes"
    retryable_status_codes: list[int] = option(doc="gRPC status codes to retry.")

    def retryable_codes(self) -> frozenset[int] | None:
        return frozenset(self.retryable_status_codes)


CLASSIFIERS: list[type[ResponseClassifierConfig]] = [
    NonRetryable5XXConfig,
    RetryableRead5XXConfig,
    RetryableIdempotent5XXConfig,
    RetryableAll5XXConfig,
    AllSuccessfulConfig,
    GrpcDefaultConfig,
    GrpcCompliantConfig,
    GrpcAlwaysRetryableConfig,
    GrpcNeverRetryableConfig,
    GrpcRetryableStatusCodesConfig,
]


# -- the router ------------------------------------------------------------------------------------


class H2RouterConfig(RouterConfig):
    """Linkerd's HTTP/2 router (``protocol: h2``, servers on port 4142 by default): HTTP/2
    and gRPC, streamed both ways with flow control, to HTTP/2 endpoints."""

    kind = "h2"
    reuse_port_capable = True
    default_port = 4142

    servers: list[H2ServerConfig] = option(doc="Where the router listens.")  # type: ignore[assignment]  # (read as H2ServerConfig, a ServerConfig)
    client: H2ClientConfig | None = option(  # type: ignore[assignment]  # (core's options + h2's)
        None, doc="Client policy per bound name, with the HTTP/2 settings to endpoints."
    )
    service: H2ServiceConfig | None = option(  # type: ignore[assignment]  # (core's options + h2's)
        None,
        doc="Service policy per logical name, with classificationTimeoutMs and retryBufferSize.",
    )
    identifier: H2IdentifierConfig | list[H2IdentifierConfig] | None = option(
        None,
        doc="How requests are named (default: io.l5d.header.token on :authority); tried in order.",
    )
    h2_access_log: str | None = option(None, doc="File to append one line per stream to.")
    h2_access_log_roll_policy: str | None = option(
        None,
        doc="When the access log is rolled: never, hourly, daily, weekly(N) (1 = Sunday) or a "
        "size (100.megabytes); rolled files are <file>.<YYYYmmdd-HHMMSS>.",
    )
    h2_access_log_append: bool = option(True, doc="Append to an existing access log.")
    h2_access_log_rotate_count: int = option(
        -1, min=-1, doc="Rolled access logs kept (the oldest beyond are removed); -1: all."
    )
    trace_propagator: dict[str, Any] | None = option(
        None,
        unsupported="tracePropagator is not implemented: l5d-ctx-trace, B3 and traceparent "
        "are read and written",
    )

    def check(self) -> Iterable[tuple[Where, str]]:
        if isinstance(self.identifier, list) and not self.identifier:
            yield ("identifier",), "give at least one identifier (or leave the key out)"
        for i, server in enumerate(self.servers):
            if server.server_session is not None and server.server_session.life_time_ms:
                yield (
                    ("servers", i, "serverSession", "lifeTimeMs"),
                    "lifeTimeMs is not implemented by protocol h2 (idleTimeMs is)",
                )
        if self.h2_access_log:
            problem = access_log_problem(self.h2_access_log)
            if problem is not None:
                yield ("h2AccessLog",), problem
        if self.h2_access_log_roll_policy is not None:
            try:
                RollPolicy.parse(self.h2_access_log_roll_policy)
            except ValueError as e:
                yield ("h2AccessLogRollPolicy",), str(e)

    def identifiers(self) -> list[H2IdentifierConfig]:
        if self.identifier is None:
            return [HeaderTokenIdentifierConfig()]
        if isinstance(self.identifier, list):
            return self.identifier
        return [self.identifier]

    def core_config(self) -> RouterConfig:
        """This config as core's binding cache reads it (core's own client and service)."""
        core: Any = copy.copy(self)
        core.client = self.client.to_core() if self.client is not None else None
        core.service = self.service.to_core() if self.service is not None else None
        result: RouterConfig = core
        return result

    def new_router(self, ctx: BuildContext) -> Any:
        from .runtime import H2Router  # (imported only when an h2 router is built)

        return H2Router(self, ctx)
