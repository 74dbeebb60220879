"""The ``io.l5d.marathon`` namer's configuration (Linkerd 1's ``MarathonConfig``)."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from turnout.api import (
    BuildContext,
    ClientTlsConfig,
    ConfigError,
    ConfigProblem,
    Failed,
    NamerConfig,
    ParseError,
    Path,
    client_ssl_context,
    option,
)

if TYPE_CHECKING:
    from .dst import DstBinding
    from .namer import MarathonNamer

_INET_DST = re.compile(r"^/\$/inet/(?P<host>[^/]+)/(?P<port>\d+)/?$")
_TLS_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}


def parse_dst(dst: str) -> tuple[str, int]:
    """``/$/inet/<host>/<port>`` → ``(host, port)``: the fixed address Marathon is reached at
    (no binding, as before names were supported); ValueError for any other form."""
    m = _INET_DST.match(dst.strip())
    if m is None or not 0 < int(m["port"]) <= 65535:
        raise ValueError(
            f"dst {dst!r} is not supported as a fixed address: expected /$/inet/<host>/<port> "
            "with a port from 1 to 65535"
        )
    return m["host"], int(m["port"])


def dst_path(dst: str) -> Path:
    """The name of a ``dst`` that is not a fixed ``/$/inet/<host>/<port>``: a path under
    ``/$`` (``/$/inet/...``, ``/$/<global namer>/...``) or ``/#`` (a configured namer).
    ValueError saying what is expected otherwise."""
    expected = (
        "expected /$/inet/<host>/<port>, a global namer's name such as "
        "/$/io.buoyant.namer.zk.leader/<zk host:port>/<leader group znode>, or "
        "/#/<namer prefix>/<name>"
    )
    text = dst.strip()
    if _INET_DST.match(text):  # the fixed form with a bad port
        parse_dst(text)
    try:
        path = Path.read(text)
    except ParseError as e:  # the position is in its message
        raise ValueError(f"dst {dst!r} is not a path ({e}): {expected}") from None
    if len(path) < 2 or path[0] not in (b"$", b"#"):
        raise ValueError(f"dst {dst!r} cannot be bound: {expected}")
    return path


def normalize_uri_prefix(prefix: str) -> str:
    """``marathon/`` → ``/marathon``; ``""`` and ``/`` → ``""``."""
    prefix = prefix.strip().strip("/")
    return f"/{prefix}" if prefix else ""


def ssl_context_of(tls: ClientTlsConfig) -> ssl.SSLContext:
    """An :class:`ssl.SSLContext` for Linkerd's client ``tls`` block, built by turnout's shared
    :func:`~turnout.api.client_ssl_context` (``commonName`` is the name to verify, given by the
    caller per connection). With ``trustCerts`` or ``trustCertsBundle`` only those CAs are
    trusted, else the system's. Raises :class:`~turnout.api.TlsError`."""
    auth = tls.client_auth or {}
    return client_ssl_context(
        ca=[
            *(tls.trust_certs or []),
            *([tls.trust_certs_bundle] if tls.trust_certs_bundle else []),
        ],
        cert=auth.get("certPath"),
        key=auth.get("keyPath"),
        intermediates=auth.get("intermediateCertsPath"),
        verify=not tls.disable_validation,
        protocols=tls.protocols or None,
    )


class MarathonConfig(NamerConfig):
    """Addresses of Marathon apps' tasks: ``/#/io.l5d.marathon/<app id…>[/<residual>]``.

    The namer polls Marathon's ``/v2/apps`` (which app ids exist) and
    ``/v2/apps/<id>?embed=app.tasks`` (the tasks of each app in use) every ``ttlMs``. The
    shortest leading part of the path (lower-cased) that is an app id names the app; each task
    gives ``host:ports[0]`` (``ipAddresses[0]`` and the app's discovery port for IP-per-task
    apps). Credentials come from ``DCOS_SERVICE_ACCOUNT_CREDENTIAL`` (DC/OS service account)
    or ``MARATHON_HTTP_AUTH_CREDENTIAL`` (HTTP basic).
    """

    kind = "io.l5d.marathon"
    host: str = option("marathon.mesos", doc="Marathon's host name (also the Host header).")
    port: int = option(80, min=1, max=65535, doc="Marathon's port.")
    dst: str | None = option(
        None,
        doc="Where to connect instead of host:port: a name, /$/inet/<host>/<port> or any "
        "name the linker binds (/$/io.buoyant.namer.zk.leader/..., /#/<prefix>/...), followed "
        "as it changes.",
    )
    uri_prefix: str = option("", doc="Path Marathon is served under (DC/OS: /marathon).")
    ttl_ms: int = option(5000, min=1, max=3_600_000, doc="Milliseconds between polls.")
    jitter_ms: int = option(50, min=0, max=3_600_000, doc="Each wait is ttlMs ± up to this.")
    use_health_check: bool = option(
        False, doc="Route only to running tasks whose Marathon health checks all pass."
    )
    tls: ClientTlsConfig | None = option(
        None,
        doc="Talk to Marathon over TLS (commonName, trustCerts, disableValidation, clientAuth).",
    )
    request_timeout_ms: int = option(
        10_000,
        min=1,
        max=600_000,
        doc="Give up on one Marathon request after this long (turnout extension).",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if self.dst is not None and not _INET_DST.match(self.dst.strip()):
            try:
                dst_path(self.dst)
            except ValueError as e:
                yield "dst", str(e)
        elif self.dst is not None:
            try:
                parse_dst(self.dst)
            except ValueError as e:
                yield "dst", str(e)
        if self.tls is not None and self.tls.protocols:
            unknown = [p for p in self.tls.protocols if p not in _TLS_VERSIONS]
            if unknown:
                yield "tls", f"unknown TLS protocols {unknown}: use {sorted(_TLS_VERSIONS)}"
        if self.tls is not None and self.tls.client_auth and "certPath" not in self.tls.client_auth:
            yield "tls", "clientAuth needs certPath (and keyPath)"

    def new_namer(self, ctx: BuildContext) -> MarathonNamer:
        return self.new_namer_with(ctx, os.environ)

    def new_namer_with(self, ctx: BuildContext, environ: Mapping[str, str]) -> MarathonNamer:
        """:meth:`new_namer`, with the credentials read from ``environ`` (tests)."""
        from .api import MarathonApi
        from .auth import credentials_from_env
        from .namer import MarathonNamer

        credentials = credentials_from_env(environ)
        tls = self.tls if self.tls is not None and self.tls.enabled else None
        scheme = "https" if tls is not None else "http"
        binding: DstBinding | None = None
        if self.dst is not None and not _INET_DST.match(self.dst.strip()):
            binding = self._dst_binding(ctx)
            base_url = f"{scheme}://{binding.dst.show}"
        else:
            host, port = parse_dst(self.dst) if self.dst is not None else (self.host, self.port)
            connect = f"[{host}]" if ":" in host else host
            base_url = f"{scheme}://{connect}:{port}"
        api = MarathonApi(
            base_url,
            uri_prefix=normalize_uri_prefix(self.uri_prefix),
            host_header=self.host if self.dst is not None else None,
            credentials=credentials,
            ssl_context=ssl_context_of(tls) if tls is not None else None,
            server_hostname=tls.common_name if tls is not None else None,
            timeout=self.request_timeout_ms / 1000,
            resolve=binding.address if binding is not None else None,
            scheme=scheme,
        )
        return MarathonNamer(
            Path.of("#") + self.effective_prefix,
            api,
            ttl=self.ttl_ms / 1000,
            jitter=self.jitter_ms / 1000,
            use_health_check=self.use_health_check,
            metrics=ctx.metrics,
            dst=binding,
        )

    def _dst_binding(self, ctx: BuildContext) -> DstBinding:
        """The followed binding of a ``dst`` name; a start-up error when it names a global
        namer that is not installed."""
        from .dst import DstBinding, namer_lookup

        assert self.dst is not None
        path = dst_path(self.dst)
        if path[0] == b"$" and path[1] not in (b"inet", b"fixedinet", b"nil", b"fail"):
            probe = ctx.global_namer.lookup(path.take(2))  # Failed for an unknown namer
            if isinstance(probe, Failed):
                name = path[1].decode("utf-8", "replace")
                raise ConfigError(
                    [
                        ConfigProblem(
                            f"io.l5d.marathon dst {self.dst!r}: no global namer {name!r} is "
                            f"installed ({probe.error}); install the plugin that provides it "
                            "(/$/io.buoyant.namer.zk.leader: pip install turnout-namer-zk)",
                            path="dst",
                        )
                    ]
                )
        return DstBinding(path, namer_lookup(ctx), wait=self.request_timeout_ms / 1000)
