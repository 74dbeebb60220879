"""namerd's configuration: the whole file (:class:`NamerdConfig`) and the two families of
kinds only namerd has, dtab stores (``storage:``) and interfaces (``interfaces:``).

The file is read by the linker's validator (strict, every problem with ``file:line:col``)
with the same registry of kinds, so ``namers:`` and ``telemetry:`` accept every namer and
telemeter kind a linker accepts. Store and interface kinds are registered by the
``turnout_register_dtab_stores`` and ``turnout_register_namerd_interfaces`` hooks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..config.loader import read_config_text
from ..config.model import (
    LOOPBACK,
    AdminConfig,
    NamerConfig,
    SocketOptionsConfig,
    TelemeterConfig,
    TlsServerConfig,
)
from ..config.schema import INVALID, ConfigObject, KindLookup, Validator, option
from ..config.source import Loc, Source, read_text
from ..errors import ConfigError, ConfigProblem
from ..naming import Path

if TYPE_CHECKING:
    from .context import NamerdContext, NamerdInterface
    from .store import DtabStore

#: namerd's admin port (Linkerd's ``NamerdConfig.DefaultAdminAddress``)
DEFAULT_ADMIN_PORT = 9991


class DtabStoreConfig(ConfigObject):
    """Base of ``storage:`` configs. Registered by ``turnout_register_dtab_stores``."""

    family = "dtab store"
    experimental: bool = option(False, doc="Required to use a kind marked experimental.")

    def new_store(self, ctx: NamerdContext) -> DtabStore:
        """Build the store (a :class:`turnout.namerd.DtabStore`)."""
        raise NotImplementedError(f"dtab store {self.kind!r} does not implement new_store()")


class NamerdInterfaceConfig(ConfigObject):
    """Base of ``interfaces:`` entries. Registered by ``turnout_register_namerd_interfaces``.

    Every interface listens on ``ip``:``port`` (loopback and the kind's ``default_port``
    unless set) and may serve TLS."""

    family = "namerd interface"
    #: the port used when ``port`` is not set
    default_port: ClassVar[int] = 0

    ip: str = option(LOOPBACK, doc="Address to bind (loopback by default; 0.0.0.0 for all).")
    port: int | None = option(None, min=0, max=65535, doc="Port; the kind's default when absent.")
    tls: TlsServerConfig | None = option(None, doc="Serve over TLS (see docs/tls.md).")
    socket_options: SocketOptionsConfig | None = option(
        None,
        unsupported="socketOptions of namerd interfaces are not implemented yet; ignored",
        doc="Accepted for Linkerd compatibility; not applied yet.",
    )
    experimental: bool = option(False, doc="Required to use a kind marked experimental.")

    @property
    def effective_port(self) -> int:
        return self.port if self.port is not None else self.default_port

    def new_interface(self, ctx: NamerdContext) -> NamerdInterface:
        """Build the interface (a :class:`turnout.namerd.NamerdInterface`)."""
        raise NotImplementedError(f"interface {self.kind!r} does not implement new_interface()")


class NamerdAdminConfig(AdminConfig):
    """namerd's admin server: the linker's, on port 9991 by default."""

    port: int = option(DEFAULT_ADMIN_PORT, min=0, max=65535, doc="Port of the admin server.")


class NamerdConfig(ConfigObject):
    """A whole namerd configuration file."""

    admin: NamerdAdminConfig = option(
        default_factory=NamerdAdminConfig, doc="The admin server (port 9991 by default)."
    )
    storage: DtabStoreConfig = option(doc="Where the dtabs are stored.")
    namers: list[NamerConfig] = option(default_factory=list, doc="Service-discovery namers.")
    interfaces: list[NamerdInterfaceConfig] = option(doc="How linkers reach namerd (at least one).")
    telemetry: list[TelemeterConfig] = option(
        default_factory=list, doc="Telemeters (their tracers are not used: namerd traces nothing)."
    )

    def check(self) -> Iterable[tuple[str | Loc, str]]:
        if not self.interfaces:
            yield "interfaces", "at least one interface is required (io.l5d.httpController)"
        seen: list[tuple[int, Path]] = []
        for i, namer in enumerate(self.namers):
            prefix = namer.effective_prefix
            if len(prefix) == 0:
                yield ("namers", i, "prefix"), "namers must not have an empty prefix"
                continue
            for j, other in seen:
                if prefix.starts_with(other) or other.starts_with(prefix):
                    yield (
                        ("namers", i),
                        f"namers must not have overlapping prefixes: {other.show} "
                        f"(namers[{j}]) and {prefix.show}; give one a distinct 'prefix'",
                    )
            seen.append((i, prefix))
        bound: dict[tuple[str, int], str] = {}
        if self.admin.port:
            bound[(self.admin.ip, self.admin.port)] = "the admin server"
        for i, iface in enumerate(self.interfaces):
            port = iface.effective_port
            if not port:
                continue
            clash = next(
                (
                    what
                    for (ip, p), what in bound.items()
                    if p == port and (ip == iface.ip or "0.0.0.0" in (ip, iface.ip))
                ),
                None,
            )
            if clash is not None:
                yield (
                    ("interfaces", i, "port"),
                    f"interface conflict on {iface.ip}:{port}: {clash} already listens there; "
                    "choose another port",
                )
            else:
                bound[(iface.ip, port)] = f"interfaces[{i}]"


@dataclass
class LoadedNamerdConfig:
    """A valid namerd configuration, where it came from, and warnings."""

    config: NamerdConfig
    source: Source
    warnings: list[ConfigProblem] = field(default_factory=list)


def is_namerd_data(data: Any) -> bool:
    """Whether parsed config data is a namerd file: top-level ``storage`` or ``interfaces``
    and no ``routers``."""
    return (
        isinstance(data, dict)
        and "routers" not in data
        and bool({"storage", "interfaces"} & set(data))
    )


def looks_like_namerd(location: str) -> bool:
    """Whether the file at ``location`` (``-`` is not peeked at) is a namerd config."""
    if location == "-":
        return False
    try:
        text, name = read_config_text(location)
    except ConfigError:
        return False
    source, _ = read_text(text, name, environ={})
    return is_namerd_data(source.data)


def load_namerd_text(
    text: str,
    name: str = "<config>",
    *,
    registry: KindLookup,
    environ: Mapping[str, str] | None = None,
) -> LoadedNamerdConfig:
    """Validate namerd configuration ``text``; :class:`ConfigError` listing every problem."""
    source, problems = read_text(text, name, environ=environ)
    if source.data is None and problems:
        raise ConfigError(problems)
    if source.data is None:
        raise ConfigError(
            [
                ConfigProblem(
                    "the configuration is empty; namerd needs 'storage' and 'interfaces'",
                    source=name,
                )
            ]
        )
    validator = Validator(source, registry)
    config = validator.build(NamerdConfig, source.data)
    problems = problems + validator.problems
    if problems or config is INVALID:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0, p.path))
        raise ConfigError(problems)
    return LoadedNamerdConfig(config, source, validator.warnings)


def load_namerd_file(
    location: str, *, registry: KindLookup, environ: Mapping[str, str] | None = None
) -> LoadedNamerdConfig:
    text, name = read_config_text(location)
    return load_namerd_text(text, name, registry=registry, environ=environ)


__all__ = [
    "DEFAULT_ADMIN_PORT",
    "DtabStoreConfig",
    "LoadedNamerdConfig",
    "NamerdAdminConfig",
    "NamerdConfig",
    "NamerdInterfaceConfig",
    "is_namerd_data",
    "load_namerd_file",
    "load_namerd_text",
    "looks_like_namerd",
]
