"""The ``io.l5d.consul.interpreter`` configuration: Linkerd 1's keys and defaults
(``ConsulDtabInterpreterConfig``)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from turnout.api import (
    Backoff,
    BuildContext,
    ConfigObject,
    InterpreterConfig,
    Path,
    TurnoutError,
    constant_backoff,
    decorrelated_jittered_backoff,
    option,
)
from turnout_namer_consul.config import ConsulTlsConfig
from turnout_namer_consul.tls import TlsSetupError, ssl_context_of

if TYPE_CHECKING:
    from .interpreter import ConsulDtabInterpreter

KIND = "io.l5d.consul.interpreter"

#: Linkerd's ``ConsulDtabStore.namespaceIsValid``
VALID_NAMESPACE = re.compile(r"[A-Za-z0-9_-]+")

ConsistencyMode = Literal["default", "stale", "consistent"]


class BackoffOptions(ConfigObject):
    """Linkerd's ``backoff`` block: ``{kind: constant, ms}`` or ``{kind: jittered, minMs,
    maxMs}`` (decorrelated jitter)."""

    backoff_kind: Literal["constant", "jittered"] = option(
        key="kind", doc="constant (ms) or jittered (minMs, maxMs)."
    )
    ms: int | None = option(None, min=0, doc="kind constant: the delay in milliseconds.")
    min_ms: int | None = option(None, min=0, doc="kind jittered: the smallest delay (ms).")
    max_ms: int | None = option(None, min=0, doc="kind jittered: the largest delay (ms).")

    def check(self) -> Iterable[tuple[str, str]]:
        if self.backoff_kind == "constant":
            if self.ms is None:
                yield "ms", "kind constant needs ms (the delay in milliseconds)"
            for key, value in (("minMs", self.min_ms), ("maxMs", self.max_ms)):
                if value is not None:
                    yield key, f"{key} belongs to kind jittered; kind constant takes ms"
        else:
            if self.min_ms is None:
                yield "minMs", "kind jittered needs minMs and maxMs"
            if self.max_ms is None:
                yield "maxMs", "kind jittered needs minMs and maxMs"
            if self.ms is not None:
                yield "ms", "ms belongs to kind constant; kind jittered takes minMs and maxMs"
            if self.min_ms is not None and self.max_ms is not None and self.max_ms < self.min_ms:
                yield "maxMs", f"must be at least minMs ({self.min_ms}), got {self.max_ms}"

    def new_backoff(self) -> Backoff:
        if self.backoff_kind == "constant":
            return constant_backoff((self.ms or 0) / 1000)
        return decorrelated_jittered_backoff((self.min_ms or 0) / 1000, (self.max_ms or 0) / 1000)


#: Linkerd's default: ``Backoff.decorrelatedJittered(1.millis, 1.minute)``
DEFAULT_BACKOFF = (0.001, 60.0)


class ConsulInterpreterConfig(InterpreterConfig):
    """Binds names like ``default`` (the configured namers, then ``/$``), with a dtab read
    from the Consul KV key ``<pathPrefix>/<namespace>`` and watched with blocking queries:
    writing the key changes routing without a restart (namerd's Consul storage format: the
    dtab's text). The stored dtab comes first; the router's ``dtab`` and per-request
    overrides are appended (so they win). A missing key is an empty dtab (as in Linkerd); a
    value that does not parse, and Consul being unreachable, keep the last good dtab in
    force (logged, counted in ``rt/<router>/interpreter/io.l5d.consul.interpreter/...``,
    shown at ``/<router>/interpreter_state/io.l5d.consul.interpreter.json``)."""

    kind = KIND
    host: str = option("localhost", doc="Consul agent host.")
    port: int = option(8500, min=1, max=65535, doc="Consul agent HTTP port.")
    path_prefix: Path = option(
        default_factory=lambda: Path.read("/namerd/dtabs"),
        doc="KV path under which dtabs are stored, one key per namespace.",
    )
    namespace: str = option("default", doc="The KV key (under pathPrefix) holding the dtab.")
    token: str | None = option(None, secret=True, doc="ACL token, sent as X-Consul-Token.")
    datacenter: str | None = option(
        None, doc="Datacenter of the KV store (?dc=); default: the agent's."
    )
    read_consistency_mode: ConsistencyMode | None = option(
        None, doc="Consistency mode of the reads: default, stale or consistent."
    )
    write_consistency_mode: ConsistencyMode | None = option(
        None,
        doc="Accepted for Linkerd compatibility; no effect: the interpreter never writes "
        "(Linkerd used it only for namerd's writes through the same store).",
    )
    fail_fast: bool | None = option(
        None,
        doc="Accepted for Linkerd compatibility; no effect (turnout's Consul client has no "
        "Finagle fail-fast: it retries with the backoff after each failure, always).",
    )
    backoff: BackoffOptions | None = option(
        None,
        doc="Delays between retries after Consul failed: {kind: constant, ms} or "
        "{kind: jittered, minMs, maxMs}; default jittered 1 ms to 1 minute (Linkerd's).",
    )
    tls: ConsulTlsConfig | None = option(
        None,
        doc="Talk HTTPS to the agent: disableValidation, commonName, trustCerts, "
        "trustCertsBundle, clientAuth {certPath, keyPath}, protocols.",
    )

    def check(self) -> Iterable[tuple[str, str]]:
        if not VALID_NAMESPACE.fullmatch(self.namespace):
            yield (
                "namespace",
                f"invalid namespace {self.namespace!r}: use letters, digits, '_' and '-' "
                "(Linkerd's rule for dtab namespaces)",
            )
        if len(self.path_prefix) == 0:
            yield "pathPrefix", "must not be empty (Linkerd's default is /namerd/dtabs)"
        if self.datacenter == "":
            yield "datacenter", "must not be empty; leave it out to use the agent's datacenter"

    @property
    def key(self) -> str:
        """The KV key, without a leading ``/`` (``namerd/dtabs/default``)."""
        return f"{self.path_prefix.show}/{self.namespace}".lstrip("/")

    def new_interpreter(self, ctx: BuildContext) -> ConsulDtabInterpreter:
        from .interpreter import ConsulDtabInterpreter, DtabWatch

        tls = self.tls if self.tls is not None and self.tls.enabled else None
        ssl_context = None
        if tls is not None:
            try:
                ssl_context = ssl_context_of(tls)
            except TlsSetupError as e:
                raise TurnoutError(f"{self.kind} interpreter: {e.where()}: {e.message}") from None
        router = ctx.router
        label = router.effective_label if router is not None else None
        backoff = (
            self.backoff.new_backoff()
            if self.backoff is not None
            else decorrelated_jittered_backoff(*DEFAULT_BACKOFF)
        )
        watch = DtabWatch(
            host=self.host,
            port=self.port,
            key=self.key,
            namespace=self.namespace,
            token=self.token,
            datacenter=self.datacenter,
            consistency=self.read_consistency_mode or "default",
            backoff=backoff,
            ssl_context=ssl_context,
            server_hostname=tls.common_name if tls is not None else None,
            label=label,
        )
        if label is not None:
            scope = ("rt", label, "interpreter", KIND)
            ctx.metrics.derived_counter(*scope, "updates", fn=lambda: watch.updates)
            ctx.metrics.derived_counter(*scope, "errors", fn=lambda: watch.errors)
            ctx.metrics.derived_counter(*scope, "parse_errors", fn=lambda: watch.parse_errors)
        cls = ctx.plugins.registry.config_class("interpreter", "default")
        if cls is None or not issubclass(cls, InterpreterConfig):
            raise TurnoutError(f"{self.kind}: turnout's 'default' interpreter is not registered")
        inner = cls().new_interpreter(ctx)
        interpreter = ConsulDtabInterpreter(inner, watch)
        if ctx.linker is not None and label is not None:
            from .plugin import remember

            remember(ctx.linker, label, interpreter)
        return interpreter
