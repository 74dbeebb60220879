"""The two ``io.l5d.mesh`` kinds' configuration, with Linkerd 1's keys and defaults:
namerd's interface (``MeshIfaceConfig``: loopback port 4321) and the linker's interpreter
(``MeshInterpreterConfig``: ``dst``, ``root`` ``/default``, ``tls``, ``retry`` 1 s to 10 min,
``failureThreshold``, ``initialStreamWindowSizeKB`` 10240)."""

# mypy: disable-error-code="import-untyped"
# (grpcio ships no type information: grpc is Any here)

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from turnout.api import (
    BuildContext,
    ClientTlsConfig,
    ConfigObject,
    InterpreterConfig,
    InvalidNamespace,
    NameInterpreter,
    NamerdContext,
    NamerdInterface,
    NamerdInterfaceConfig,
    Path,
    TurnoutError,
    option,
)

if TYPE_CHECKING:
    from .interpreter import MeshInterpreter

log = logging.getLogger("turnout.namerd.mesh")

KIND = "io.l5d.mesh"

#: turnout's rule for namespace names (``turnout.namerd.check_namespace``, not in turnout.api)
_NAMESPACE = re.compile(r"[A-Za-z0-9_.-]+")

#: Key = the YAML location type of ``check``
Key = str | tuple[str | int, ...]


def check_namespace(ns: str) -> str:
    """``ns`` if it is a valid namespace name, else :class:`InvalidNamespace`."""
    if not _NAMESPACE.fullmatch(ns) or ns in (".", "..") or len(ns) > 255:
        raise InvalidNamespace(ns)
    return ns


def root_namespace(root: Path) -> str:
    """The namespace a ``root`` names: its one element (Linkerd's ``Path.Utf8(ns)``).
    Raises :class:`ValueError` saying why when it is not one UTF-8 element."""
    if len(root) != 1:
        raise ValueError(f"`root` may only contain a single path element (for now): {root.show}")
    try:
        return root.elems[0].decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"`root` must be UTF-8 text: {root.show}") from None


# -- namerd: the interface -----------------------------------------------------------------------
class MeshInterfaceConfig(NamerdInterfaceConfig):
    """namerd's gRPC API (``io.linkerd.mesh``: Interpreter, Resolver, Delegator and Codec
    services, streaming included) over HTTP/2, served by grpcio."""

    kind = KIND
    default_port = 4321

    h2_access_log: str | None = option(
        None, doc="Not implemented: an access log of the gRPC requests (refused when set)."
    )
    h2_access_log_roll_policy: str | None = option(None, doc="Not implemented (with h2AccessLog).")
    h2_access_log_append: bool | None = option(None, doc="Not implemented (with h2AccessLog).")
    h2_access_log_rotate_count: int | None = option(None, doc="Not implemented (with h2AccessLog).")

    def check(self) -> Iterable[tuple[Key, str]]:
        for key, value in (
            ("h2AccessLog", self.h2_access_log),
            ("h2AccessLogRollPolicy", self.h2_access_log_roll_policy),
            ("h2AccessLogAppend", self.h2_access_log_append),
            ("h2AccessLogRotateCount", self.h2_access_log_rotate_count),
        ):
            if value is not None:
                yield (
                    key,
                    f"{key} is not implemented by turnout's io.l5d.mesh interface (no access log "
                    "of gRPC requests yet); remove it",
                )
        tls = self.tls
        if tls is not None:
            if tls.protocols is not None:
                yield (
                    ("tls", "protocols"),
                    "the io.l5d.mesh interface (grpcio) cannot restrict TLS versions: it offers "
                    "TLS 1.2 and 1.3; remove 'protocols'",
                )
            if tls.ciphers is not None:
                yield (
                    ("tls", "ciphers"),
                    "the io.l5d.mesh interface (grpcio) cannot choose cipher suites; remove "
                    "'ciphers'",
                )

    def new_interface(self, ctx: NamerdContext) -> NamerdInterface:
        from .service import MeshInterface

        assert ctx.store is not None
        assert ctx.interpreters is not None
        credentials = server_credentials(self) if self.tls is not None else None
        return MeshInterface(
            ctx.store,
            ctx.interpreters,
            ip=self.ip,
            port=self.effective_port,
            credentials=credentials,
            metrics=ctx.metrics,
        )


def _read(path: str, key: str) -> bytes:
    try:
        return FsPath(path).read_bytes()
    except OSError as e:
        raise TurnoutError(f"{KIND}: cannot read {key} {path}: {e.strerror or e}") from None


def server_credentials(cfg: MeshInterfaceConfig) -> Any:
    """grpcio's server credentials for ``cfg.tls`` (certificate chain with the intermediates;
    with ``requireClientAuth``, client certificates verified by ``caCertPath``)."""
    import grpc

    tls = cfg.tls
    assert tls is not None
    chain = _read(tls.cert_path, "certPath")
    if tls.intermediate_certs_path:
        chain = (
            chain.rstrip(b"\n")
            + b"\n"
            + _read(tls.intermediate_certs_path, "intermediateCertsPath")
        )
    key = _read(tls.key_path, "keyPath")
    ca = _read(tls.ca_cert_path, "caCertPath") if tls.ca_cert_path else None
    if tls.require_client_auth and ca is None:
        raise TurnoutError(f"{KIND}: tls.requireClientAuth needs caCertPath")
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=tls.require_client_auth
    )


# -- linkers: the interpreter --------------------------------------------------------------------
class MeshRetryConfig(ConfigObject):
    """Backoff between attempts to reach namerd (Finagle's exponential jittered backoff)."""

    base_seconds: int = option(1, min=1, doc="First delay, in seconds.")
    max_seconds: int = option(600, min=1, doc="Longest delay, in seconds.")

    def check(self) -> Iterable[tuple[Key, str]]:
        if self.base_seconds > self.max_seconds:
            yield (
                "maxSeconds",
                f"must be at least baseSeconds ({self.base_seconds}), got {self.max_seconds}",
            )


class FailureThresholdConfig(ConfigObject):
    """Linkerd's session failure detector: a ping every ``minPeriodMs``; no answer within
    ``closeTimeoutMs`` closes the connection (here: gRPC keepalive pings)."""

    min_period_ms: int | None = option(
        None, min=1, doc="Interval between pings (default 5000 when the block is given)."
    )
    close_timeout_ms: int | None = option(
        None, min=1, doc="How long a ping may stay unanswered (default 6000)."
    )


#: Linkerd's ``FailureThresholdConfig`` defaults
DEFAULT_MIN_PERIOD_MS = 5_000
DEFAULT_CLOSE_TIMEOUT_MS = 6_000
#: Linkerd's ``MeshInterpreterConfig.defaultWindowSizeKB``
DEFAULT_WINDOW_KB = 10_240
#: longest message accepted from namerd (a bound tree, an address set)
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class MeshInterpreterConfig(InterpreterConfig):
    """Binds through namerd's gRPC API: a ``StreamBoundTree`` stream for each name the router
    binds and a ``StreamReplicas`` stream for each bound id; the linker's own namers only
    find namerd (``dst``). Keeps the last good tree and address sets while namerd is
    unreachable, and reconnects after the ``retry`` backoff."""

    kind = KIND

    dst: Path = option(doc="Where namerd's io.l5d.mesh interface is: /$/inet/<host>/<port>.")
    root: Path = option(
        default_factory=lambda: Path.of("default"),
        doc="The namerd namespace whose dtab binds names, as a one-element path.",
    )
    tls: ClientTlsConfig | None = option(
        None,
        doc="TLS to namerd: commonName (required), trustCertsBundle (default: grpcio's CA "
        "roots), clientAuth {certPath, keyPath}.",
    )
    retry: MeshRetryConfig = option(
        default_factory=MeshRetryConfig, doc="Backoff between reconnections."
    )
    failure_threshold: FailureThresholdConfig | None = option(
        None, doc="Ping namerd and close a connection whose pings go unanswered."
    )
    initial_stream_window_size_kb: int = option(
        DEFAULT_WINDOW_KB,
        min=1,
        max=1024 * 1024,
        key="initialStreamWindowSizeKB",
        doc="HTTP/2 initial stream window, in KB.",
    )

    def check(self) -> Iterable[tuple[Key, str]]:
        try:
            check_namespace(root_namespace(self.root))
        except (ValueError, InvalidNamespace) as e:
            yield "root", str(e)
        tls = self.tls
        if tls is not None and tls.enabled:
            if tls.disable_validation:
                yield (
                    ("tls", "disableValidation"),
                    "the io.l5d.mesh interpreter (grpcio) cannot skip certificate validation; "
                    "give namerd's CA in trustCertsBundle and its name in commonName",
                )
            if tls.protocols is not None:
                yield (
                    ("tls", "protocols"),
                    "the io.l5d.mesh interpreter (grpcio) cannot restrict TLS versions: it "
                    "offers TLS 1.2 and 1.3; remove 'protocols'",
                )
            if tls.common_name and "{" in tls.common_name:
                yield (
                    ("tls", "commonName"),
                    "the commonName of io.l5d.mesh is a plain name ({var} captures exist only "
                    "in client prefixes)",
                )

    def channel_options(self) -> list[tuple[str, Any]]:
        """grpcio channel arguments for these options."""
        options: list[tuple[str, Any]] = [
            ("grpc.enable_http_proxy", 0),  # (never through an HTTP proxy of the environment)
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.http2.lookahead_bytes", self.initial_stream_window_size_kb * 1024),
            # each channel its own connection (not shared with another interpreter's)
            ("grpc.use_local_subchannel_pool", 1),
        ]
        ft = self.failure_threshold
        if ft is not None:
            options += [
                ("grpc.keepalive_time_ms", ft.min_period_ms or DEFAULT_MIN_PERIOD_MS),
                ("grpc.keepalive_timeout_ms", ft.close_timeout_ms or DEFAULT_CLOSE_TIMEOUT_MS),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.max_pings_without_data", 0),
            ]
        tls = self.tls
        if tls is not None and tls.enabled and tls.common_name:
            options.append(("grpc.ssl_target_name_override", tls.common_name))
        return options

    def channel_credentials(self) -> Any:
        """grpcio channel credentials for ``tls``, or None for plain text."""
        import grpc

        tls = self.tls
        if tls is None or not tls.enabled:
            return None
        roots = b""
        for key, path in [("trustCertsBundle", tls.trust_certs_bundle)] + [
            ("trustCerts", p) for p in tls.trust_certs or ()
        ]:
            if path:
                roots += _read(path, f"tls.{key}").rstrip(b"\n") + b"\n"
        key_pem = chain = None
        auth = tls.client_auth
        if auth is not None:
            unknown = sorted(set(auth) - {"certPath", "keyPath", "intermediateCertsPath"})
            if unknown or "certPath" not in auth or "keyPath" not in auth:
                raise TurnoutError(
                    f"{KIND}: tls.clientAuth needs certPath and keyPath (and optionally "
                    "intermediateCertsPath)"
                )
            chain = _read(auth["certPath"], "tls.clientAuth.certPath")
            if auth.get("intermediateCertsPath"):
                chain = (
                    chain.rstrip(b"\n")
                    + b"\n"
                    + _read(auth["intermediateCertsPath"], "tls.clientAuth.intermediateCertsPath")
                )
            key_pem = _read(auth["keyPath"], "tls.clientAuth.keyPath")
        return grpc.ssl_channel_credentials(
            root_certificates=roots or None, private_key=key_pem, certificate_chain=chain
        )

    def new_interpreter(self, ctx: BuildContext) -> NameInterpreter:
        from .interpreter import MeshInterpreter

        default = ctx.plugins.registry.config_class("interpreter", "default")
        if default is None or not issubclass(default, InterpreterConfig):
            raise TurnoutError(f"{KIND}: turnout's 'default' interpreter is not registered")
        # dst is bound through the linker's own namers (and /$), without the router's dtab
        dst_binder = default().new_interpreter(ctx)
        router = ctx.router
        label = router.effective_label if router is not None else ""
        interpreter = MeshInterpreter(
            self.dst,
            self.root,
            dst_binder=dst_binder,
            retry=(float(self.retry.base_seconds), float(self.retry.max_seconds)),
            label=label,
            credentials=self.channel_credentials(),
            channel_options=self.channel_options(),
        )
        if router is not None:
            _metrics(ctx, label, interpreter)
        return interpreter


def _metrics(ctx: BuildContext, label: str, interpreter: MeshInterpreter) -> None:
    scope = ("rt", label, "interpreter", KIND)
    ctx.metrics.derived_counter(*scope, "connects", fn=lambda: interpreter.connects)
    ctx.metrics.derived_counter(*scope, "failures", fn=lambda: interpreter.failures)
    ctx.metrics.derived_counter(*scope, "updates", fn=lambda: interpreter.updates)
    ctx.metrics.gauge(*scope, "watches", fn=lambda: float(len(interpreter.watches)))


__all__ = [
    "KIND",
    "FailureThresholdConfig",
    "MeshInterfaceConfig",
    "MeshInterpreterConfig",
    "MeshRetryConfig",
    "check_namespace",
    "root_namespace",
    "server_credentials",
]
