"""Configuration of ``protocol: thrift`` (a ``routers:`` entry), with Linkerd's option names.

Linkerd puts two Thrift options in the *client* section (``thriftFramed`` and
``attemptTTwitterUpgrade``, per ``io.l5d.global`` client or per ``io.l5d.static`` prefix), which
core's client config does not have. :class:`ThriftClientConfig` reads the whole ``client:``
section: every option of core's client config (subclassing core's public classes from
``turnout.api``, so nothing is copied) plus the two Thrift ones, and
:meth:`ThriftClientConfig.to_core` hands core its own client config for the binding cache.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from ._turnout import (
    ClientParams,
    ConfigObject,
    GlobalClientConfig,
    Path,
    RouterConfig,
    ServerConfig,
    StaticClientConfig,
    StaticClientEntry,
    option,
)

if TYPE_CHECKING:
    from ._turnout import BuildContext

KB = 1024
MB = KB * KB


#: client options of core that this protocol does not implement (each a located error)
_CLIENT_UNSUPPORTED = {
    "tls": "protocol thrift does not originate TLS (a security option is never dropped)",
    "socket_options": "socketOptions is not implemented by protocol thrift",
    "forward_client_cert": "forwardClientCert is an HTTP option",
}
#: hostConnectionPool options that this protocol does not implement (idleTimeMs it does)
_POOL_UNSUPPORTED = {
    "max_size": "maxSize",
    "min_size": "minSize",
    "max_waiters": "maxWaiters",
}


class ThriftClientParams(ConfigObject):
    """The Thrift options of a client (Linkerd's ``ThriftClientConfig``)."""

    thrift_framed: bool | None = option(
        None, doc="Framed transport to endpoints (default true); false: buffered (unframed)."
    )
    attempt_t_twitter_upgrade: bool | None = option(
        None,
        key="attemptTTwitterUpgrade",
        doc="Probe each new endpoint connection with Finagle's TTwitter upgrade and, when "
        "the endpoint accepts, send trace ids, dest and delegations in a RequestHeader "
        "(default false).",
    )


class ThriftClientEntry(StaticClientEntry, ThriftClientParams):
    """Client options for the bound names matching ``prefix`` (``io.l5d.static``)."""


class ThriftClientConfig(ClientParams, ThriftClientParams):
    """``client:`` of a thrift router: ``io.l5d.global`` (these options for every bound name)
    or ``io.l5d.static`` (``configs``: per-prefix options, later entries win)."""

    client_kind: Literal["io.l5d.global", "io.l5d.static"] = option(
        "io.l5d.global", key="kind", doc="io.l5d.global or io.l5d.static."
    )
    configs: list[ThriftClientEntry] | None = option(
        None, doc="io.l5d.static: prefix configs, in order."
    )

    def params(self) -> dict[str, Any]:
        """The core client options set at this level."""
        return {f.name: getattr(self, f.name) for f in ClientParams.config_fields().values()}

    def check(self) -> Iterable[tuple[tuple[str | int, ...], str]]:
        if self.client_kind == "io.l5d.global":
            if self.configs is not None:
                yield ("configs",), "configs belongs to 'kind: io.l5d.static'"
            entries: list[tuple[tuple[str | int, ...], Any]] = [((), self)]
        else:
            if self.configs is None:
                yield ("kind",), "io.l5d.static needs 'configs' (a list of prefix configs)"
            for key, f in ThriftClientParams.config_fields().items():
                if getattr(self, f.name) is not None:
                    yield (key,), f"with 'kind: io.l5d.static', set {key} in configs[]"
            for name, value in self.params().items():
                if value is not None:
                    key = _key(ClientParams, name)
                    yield (key,), f"with 'kind: io.l5d.static', set {key} in configs[]"
            entries = [(("configs", i), e) for i, e in enumerate(self.configs or [])]
        for where, entry in entries:
            for name, why in _CLIENT_UNSUPPORTED.items():
                if getattr(entry, name, None) not in (None, False):
                    yield (*where, _key(ClientParams, name)), why
            pool = entry.host_connection_pool
            for name, key in _POOL_UNSUPPORTED.items():
                if pool is not None and getattr(pool, name, None) not in (None, 0):
                    yield (
                        (*where, "hostConnectionPool", key),
                        f"protocol thrift implements only idleTimeMs of hostConnectionPool "
                        f"(one call per connection, connections opened as needed): remove {key}",
                    )

    def to_core(self) -> Any:
        """Core's client config for the same options (without the Thrift ones)."""
        if self.client_kind == "io.l5d.global":
            return GlobalClientConfig(**self.params())
        core_fields = [f.name for f in StaticClientEntry.config_fields().values()]
        return StaticClientConfig(
            configs=[
                StaticClientEntry(**{n: getattr(e, n) for n in core_fields})
                for e in self.configs or []
            ]
        )

    def thrift_options(self, bound_id: Path) -> tuple[bool, bool]:
        """(thriftFramed, attemptTTwitterUpgrade) of the client of ``bound_id``."""
        framed: bool | None = None
        upgrade: bool | None = None
        if self.client_kind == "io.l5d.global":
            framed, upgrade = self.thrift_framed, self.attempt_t_twitter_upgrade
        else:
            for entry in self.configs or []:
                if entry.prefix.extract(bound_id) is not None:
                    if entry.thrift_framed is not None:
                        framed = entry.thrift_framed
                    if entry.attempt_t_twitter_upgrade is not None:
                        upgrade = entry.attempt_t_twitter_upgrade
        return (True if framed is None else framed), bool(upgrade)


def _key(cls: Any, name: str) -> str:
    return str(next(k for k, f in cls.config_fields().items() if f.name == name))


class ThriftServerConfig(ServerConfig):
    """A listening socket of a thrift router."""

    thrift_framed: bool = option(
        True, doc="Framed transport from clients; false: buffered (unframed)."
    )


class ThriftRouterConfig(RouterConfig):
    """Linkerd's Thrift router: routes each Thrift call by ``dstPrefix`` [+ TTwitter dest]
    [+ method], forwarding the message bytes unchanged."""

    kind = "thrift"
    default_port = 4114

    servers: list[ThriftServerConfig] = option(doc="Where the router listens.")  # type: ignore[assignment]  # (read as ThriftServerConfig, a ServerConfig)
    # (read as ThriftClientConfig: core's client options plus Thrift's, in one class that takes
    # io.l5d.global and io.l5d.static alike; core gets its own config from to_core())
    client: ThriftClientConfig | None = option(  # type: ignore[assignment]
        None, doc="Client policy per bound name, with thriftFramed and attemptTTwitterUpgrade."
    )
    thrift_method_in_dst: bool = option(
        False, doc="Append the method name to the destination (/svc/<method>)."
    )
    thrift_protocol: Literal["binary", "compact"] = option(
        "binary", doc="TBinaryProtocol or TCompactProtocol, for servers and clients."
    )
    max_message_bytes: int = option(
        16 * MB,
        min=64,
        max=1024 * MB,
        doc="Largest request or reply message (frame, or buffered message walked field by "
        "field); a larger or malformed request closes its connection.",
    )
    connect_timeout_ms: int = option(
        3000, min=1, doc="Longest wait for a connection to an endpoint (then requeued)."
    )

    def check(self) -> Iterable[tuple[tuple[str | int, ...], str]]:
        for i, server in enumerate(self.servers):
            if server.tls is not None:
                yield ("servers", i, "tls"), "protocol thrift does not terminate TLS"
            if server.server_session is not None:
                yield (
                    ("servers", i, "serverSession"),
                    "serverSession is not implemented by protocol thrift",
                )
            if server.socket_options is not None:
                yield (
                    ("servers", i, "socketOptions"),
                    "socketOptions is not implemented by protocol thrift",
                )
        service = self.service
        if service is not None:
            entries = getattr(service, "configs", None) or [service]
            for j, entry in enumerate(entries):
                if getattr(entry, "response_classifier", None) is not None:
                    where: tuple[str | int, ...] = ("service",)
                    if entry is not service:
                        where = ("service", "configs", j)
                    yield (
                        (*where, "responseClassifier"),
                        "protocol thrift classifies replies itself (an EXCEPTION reply is a "
                        "failure, never retried; Linkerd had no thrift classifiers): remove "
                        "responseClassifier",
                    )

    def core_config(self) -> RouterConfig:
        """This config as core's binding cache reads it (core's own client config)."""
        core: Any = copy.copy(self)
        core.client = self.client.to_core() if self.client is not None else None
        result: RouterConfig = core
        return result

    def new_router(self, ctx: BuildContext) -> Any:
        from .runtime import ThriftRouter  # (imported only when a thrift router is built)

        return ThriftRouter(self, ctx)
