"""namerd's built-in kinds, registered through the same hooks a pip-installed plugin uses:
the ``io.l5d.inMemory`` dtab store, the ``io.l5d.httpController`` interface and, for
linkers, the ``io.l5d.namerd.http`` interpreter."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any

from .._markers import hookimpl
from ..admin_routes import AdminRoute
from ..config.model import ClientTlsConfig, InterpreterConfig
from ..config.schema import ConfigObject, option
from ..config.source import Loc
from ..context import BuildContext
from ..naming import Dtab, NameInterpreter, Path
from .config import DtabStoreConfig, NamerdInterfaceConfig
from .context import NamerdContext, NamerdInterface
from .in_memory import InMemoryDtabStore
from .store import DtabStore, InvalidNamespace, check_namespace

log = logging.getLogger("turnout.namerd")


class InMemoryDtabStoreConfig(DtabStoreConfig):
    """Dtabs kept in namerd's memory: lost when namerd stops (for tests and demos)."""

    kind = "io.l5d.inMemory"
    namespaces: dict[str, Dtab] = option(
        default_factory=dict, doc="Namespaces to start with: namespace → dtab."
    )

    def check(self) -> Iterable[tuple[str | Loc, str]]:
        for ns in self.namespaces:
            try:
                check_namespace(ns)
            except InvalidNamespace as e:
                yield ("namespaces", ns), str(e)

    def new_store(self, ctx: NamerdContext) -> DtabStore:
        return InMemoryDtabStore(self.namespaces)


class HttpControllerConfig(NamerdInterfaceConfig):
    """namerd's HTTP API (``/api/1``): dtab CRUD, bind, addr, resolve, delegate, watches."""

    kind = "io.l5d.httpController"
    default_port = 4180

    def new_interface(self, ctx: NamerdContext) -> NamerdInterface:
        assert ctx.store is not None
        assert ctx.interpreters is not None
        ssl_context = None
        if self.tls is not None:
            from ..tls import server_context

            ssl_context = server_context(self.tls)
        from .http_api import HttpController  # (aiohttp: imported by a namerd that serves it)

        return HttpController(
            ctx.store,
            ctx.interpreters,
            ip=self.ip,
            port=self.effective_port,
            ssl_context=ssl_context,
            metrics=ctx.metrics,
        )


class NamerdRetryConfig(ConfigObject):
    """Backoff between attempts to reach namerd."""

    base_seconds: int = option(5, min=1, doc="First delay, in seconds.")
    max_seconds: int = option(600, min=1, doc="Longest delay, in seconds.")

    def check(self) -> Iterable[tuple[str | Loc, str]]:
        if self.base_seconds > self.max_seconds:
            yield (
                "maxSeconds",
                (f"must be at least baseSeconds ({self.base_seconds}), got {self.max_seconds}"),
            )


class NamerdHttpInterpreterConfig(InterpreterConfig):
    """Binds through namerd's HTTP streaming API (/api/1/bind and /api/1/addr watches); the
    linker's own namers and the router's dtab are not used. Experimental, as in Linkerd."""

    kind = "io.l5d.namerd.http"
    experimental_required = True

    dst: Path = option(doc="Where namerd's io.l5d.httpController is: /$/inet/<host>/<port>.")
    namespace: str = option("default", doc="The namerd namespace whose dtab binds names.")
    retry: NamerdRetryConfig = option(
        default_factory=NamerdRetryConfig, doc="Backoff between reconnections."
    )
    tls: ClientTlsConfig | None = option(
        None,
        doc="TLS to namerd: commonName (required unless disableValidation), "
        "trustCertsBundle, clientAuth, protocols (see docs/tls.md).",
    )

    def check(self) -> Iterable[tuple[str | Loc, str]]:
        tls = self.tls
        if tls is not None and tls.enabled and tls.common_name and "{" in tls.common_name:
            yield (
                ("tls", "commonName"),
                "the commonName of io.l5d.namerd.http is a plain name ({var} captures exist "
                "only in client prefixes)",
            )
        try:
            check_namespace(self.namespace)
        except InvalidNamespace as e:
            yield "namespace", str(e)

    def new_interpreter(self, ctx: BuildContext) -> NameInterpreter:
        router = ctx.router
        ssl_context, server_name = None, None
        if self.tls is not None and self.tls.enabled:
            from ..tls import new_client_context

            ssl_context = new_client_context(self.tls, alpn=[])
            server_name = self.tls.common_name
            if self.tls.disable_validation:
                log.warning(
                    "INSECURE: io.l5d.namerd.http tls.disableValidation is true: namerd's "
                    "certificate is NOT verified"
                )
        from .interpreter import NamerdHttpInterpreter  # (aiohttp: imported when used)

        interpreter = NamerdHttpInterpreter(
            self.dst,
            self.namespace,
            namers=ctx.namers,
            global_namer=ctx.global_namer,
            retry=(float(self.retry.base_seconds), float(self.retry.max_seconds)),
            label=router.effective_label if router is not None else "",
            ssl_context=ssl_context,
            server_name=server_name,
        )
        metrics = ctx.metrics
        if router is not None and metrics is not None:
            scope = ("rt", router.effective_label, "interpreter", str(self.kind))
            metrics.derived_counter(*scope, "connects", fn=lambda: interpreter.connects)
            metrics.derived_counter(*scope, "failures", fn=lambda: interpreter.failures)
            metrics.derived_counter(*scope, "updates", fn=lambda: interpreter.updates)
            metrics.gauge(*scope, "watches", fn=lambda: float(len(interpreter.watches)))
        return interpreter


@hookimpl
def turnout_register_dtab_stores() -> list[type[DtabStoreConfig]]:
    return [InMemoryDtabStoreConfig]


@hookimpl
def turnout_register_namerd_interfaces() -> list[type[NamerdInterfaceConfig]]:
    return [HttpControllerConfig]


@hookimpl
def turnout_admin_routes(linker: Any) -> list[AdminRoute]:
    """namerd's admin endpoints on a namerd process; on a linker, the state of each
    io.l5d.namerd.http interpreter at ``/<router>/interpreter_state/io.l5d.namerd.http/
    <namespace>.json``."""
    from .admin import interpreter_state_routes, namerd_admin_routes

    runtime = sys.modules.get(f"{__package__}.runtime")  # (loaded when namerd runs)
    if runtime is not None and isinstance(linker, runtime.Namerd):
        return namerd_admin_routes(linker)
    return interpreter_state_routes(linker)


@hookimpl
def turnout_register_interpreters() -> list[type[InterpreterConfig]]:
    return [NamerdHttpInterpreterConfig]


__all__ = [
    "HttpControllerConfig",
    "InMemoryDtabStoreConfig",
    "NamerdHttpInterpreterConfig",
    "NamerdRetryConfig",
]
