"""Configuration of the ``http`` protocol: router, server, identifier and classifier kinds."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from turnout.api import (
    IdentifierConfig,
    Path,
    ResponseClassifierConfig,
    RouterConfig,
    ServerConfig,
    option,
)

if TYPE_CHECKING:
    from turnout.api import BuildContext

    from .classifiers import Classifier
    from .identifiers import Identifier


class HttpServerConfig(ServerConfig):
    """A listener of an HTTP router."""

    max_call_depth: int = option(
        1000, min=1, doc="Refuse (400) requests that already went through this many proxies (Via)."
    )
    timestamp_header: str | None = option(
        None, doc="Add this request header with the time the request arrived (ms since epoch)."
    )
    add_forwarded_header: dict[str, Any] | None = option(
        None, unsupported="addForwardedHeader is not implemented yet; no Forwarded header is added"
    )
    request_header_timeout_ms: int = option(
        10_000, min=1, doc="Answer 408 and close when a request's headers take longer than this."
    )
    request_body_idle_timeout_ms: int = option(
        30_000,
        min=1,
        doc="Answer 408 (or cut the exchange, once its response has begun) and close when a "
        "request body stops arriving for this long; the endpoint connection is closed too.",
    )
    idle_timeout_ms: int = option(
        75_000,
        min=1,
        doc="Close keep-alive connections idle this long (serverSession.idleTimeMs wins).",
    )


class HttpIdentifierConfig(IdentifierConfig):
    """Base of HTTP identifiers: they turn a request into a name under ``dstPrefix``."""

    family = "http identifier"

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        raise NotImplementedError


class HeaderTokenIdentifierConfig(HttpIdentifierConfig):
    """``/<dstPrefix>/<header value>``: the value of one header as one segment."""

    kind = "io.l5d.header.token"
    header: str = option("Host", doc="The header whose value names the service.")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import HeaderTokenIdentifier

        return HeaderTokenIdentifier(prefix, self.header)


class MethodAndHostIdentifierConfig(HttpIdentifierConfig):
    """``/<dstPrefix>/1.1/<METHOD>/<host>[/<uri path>]`` (HTTP/1.0: no host)."""

    kind = "io.l5d.methodAndHost"
    http_uri_in_dst: bool = option(False, doc="Append the request path's segments to the name.")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import MethodAndHostIdentifier

        return MethodAndHostIdentifier(prefix, self.http_uri_in_dst)


class PathIdentifierConfig(HttpIdentifierConfig):
    """``/<dstPrefix>/<first N segments of the request path>``."""

    kind = "io.l5d.path"
    segments: int = option(1, min=1, doc="How many leading path segments name the service.")
    consume: bool = option(False, doc="Remove those segments from the path sent upstream.")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import PathIdentifier

        return PathIdentifier(prefix, self.segments, self.consume)


class HeaderIdentifierConfig(HttpIdentifierConfig):
    """``/<dstPrefix><header value>``: the header's value is a path (``/web/v2``)."""

    kind = "io.l5d.header"
    header: str = option("l5d-name", doc="The header whose value is a path.")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import HeaderPathIdentifier

        return HeaderPathIdentifier(prefix, self.header)


class StaticIdentifierConfig(HttpIdentifierConfig):
    """Every request gets the same name: ``/<dstPrefix><path>``."""

    kind = "io.l5d.static"
    path: Path = option(doc="The name, for example /web.")

    def new_identifier(self, prefix: Path) -> Identifier:  # type: ignore[override]
        from .identifiers import StaticIdentifier

        return StaticIdentifier(prefix + self.path)


class HttpRouterConfig(RouterConfig):
    """An HTTP/1.1 router (``protocol: http``, servers on port 4140 by default)."""

    kind = "http"
    reuse_port_capable = True  # (servers.py: socketOptions.reusePort)
    default_port = 4140

    servers: list[HttpServerConfig] = option(doc="Where the router listens.")  # type: ignore[assignment]  # (the loader reads items as HttpServerConfig, a ServerConfig)
    identifier: HttpIdentifierConfig | list[HttpIdentifierConfig] | None = option(
        None,
        doc="How requests are named (default: io.l5d.header.token on Host); tried in order.",
    )
    http_access_log: str | None = option(None, doc="File to append one line per request to.")
    http_access_log_format: Literal["combined", "json"] = option(
        "combined", doc="Access log lines: Apache combined format (prefixed by Host) or JSON."
    )
    http_access_log_roll_policy: str | None = option(
        None,
        doc="When the access log is rolled: never, hourly, daily, weekly(N) (1 = Sunday) or a "
        "size (100.megabytes); rolled files are <file>.<YYYYmmdd-HHMMSS>.",
    )
    http_access_log_append: bool = option(True, doc="Append to an existing access log.")
    http_access_log_rotate_count: int = option(
        -1, min=-1, doc="Rolled access logs kept (the oldest beyond are removed); -1: all."
    )
    max_headers_kb: int = option(8, key="maxHeadersKB", min=1, doc="Largest request head (431).")
    max_initial_line_kb: int = option(
        4, key="maxInitialLineKB", min=1, doc="Longest request line (414)."
    )
    max_err_response_kb: int = option(
        5120, key="maxErrResponseKB", min=0, doc="Accepted for Linkerd compatibility."
    )
    stream_after_content_length_kb: int = option(
        5,
        key="streamAfterContentLengthKB",
        min=0,
        doc="Request bodies up to this size (with a Content-Length) are also kept, so that a "
        "retry can send them again; larger and chunked bodies are only streamed, never retried. "
        "Bodies are always streamed to the endpoint as they arrive.",
    )
    streaming_enabled: bool = option(True, doc="Accepted for Linkerd compatibility (always on).")
    compression_level: int = option(-1, min=-1, max=9, doc="Accepted; turnout does not compress.")
    trace_propagator: dict[str, Any] | None = option(
        None, unsupported="tracePropagator is not implemented yet"
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if isinstance(self.identifier, list) and not self.identifier:
            yield "identifier", "give at least one identifier (or leave the key out)"
        if self.http_access_log:
            from .accesslog import access_log_problem

            problem = access_log_problem(self.http_access_log)
            if problem is not None:
                yield "httpAccessLog", problem
        if self.http_access_log_roll_policy is not None:
            from turnout.api import RollPolicy

            try:
                RollPolicy.parse(self.http_access_log_roll_policy)
            except ValueError as e:
                yield "httpAccessLogRollPolicy", str(e)

    def identifiers(self) -> list[HttpIdentifierConfig]:
        if self.identifier is None:
            return [HeaderTokenIdentifierConfig()]
        if isinstance(self.identifier, list):
            return self.identifier
        return [self.identifier]

    def new_router(self, ctx: BuildContext) -> Any:
        from .runtime import HttpRouter

        return HttpRouter(self, ctx)


# -- response classifiers ----------------------------------------------------------------------


class _HttpClassifierConfig(ResponseClassifierConfig):
    protocol = "http"
    retryable_methods: ClassVar[frozenset[bytes]] = frozenset()

    def new_classifier(self) -> Classifier:
        from .classifiers import Classifier

        return Classifier(self.retryable_methods, all_successful=False)


class NonRetryable5XXConfig(_HttpClassifierConfig):
    """5XX responses are failures, never retried (the default)."""

    kind = "io.l5d.http.nonRetryable5XX"


class RetryableRead5XXConfig(_HttpClassifierConfig):
    """5XX are failures; retryable for GET, HEAD, OPTIONS and TRACE."""

    kind = "io.l5d.http.retryableRead5XX"
    retryable_methods = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})


class RetryableIdempotent5XXConfig(_HttpClassifierConfig):
    """5XX are failures; retryable for read methods and PUT and DELETE."""

    kind = "io.l5d.http.retryableIdempotent5XX"
    retryable_methods = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


class RetryableAll5XXConfig(_HttpClassifierConfig):
    """5XX are failures; retryable for every method."""

    kind = "io.l5d.http.retryableAll5XX"
    retryable_methods = frozenset(
        {b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE", b"POST", b"PATCH", b"CONNECT"}
    )


class AllSuccessfulConfig(_HttpClassifierConfig):
    """Every response is a success."""

    kind = "io.l5d.http.allSuccessful"

    def new_classifier(self) -> Classifier:
        from .classifiers import Classifier

        return Classifier(frozenset(), all_successful=True)


IDENTIFIERS: list[type[HttpIdentifierConfig]] = [
    HeaderTokenIdentifierConfig,
    MethodAndHostIdentifierConfig,
    PathIdentifierConfig,
    HeaderIdentifierConfig,
    StaticIdentifierConfig,
]

CLASSIFIERS: list[type[ResponseClassifierConfig]] = [
    NonRetryable5XXConfig,
    RetryableRead5XXConfig,
    RetryableIdempotent5XXConfig,
    RetryableAll5XXConfig,
    AllSuccessfulConfig,
]
