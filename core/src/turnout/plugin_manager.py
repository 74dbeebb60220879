"""Loading plugins: built-ins first, then the ``turnout`` entry points, into a :class:`Plugins`.

Entry points are loaded one by one (not with pluggy's ``load_setuptools_entrypoints``) so that a
plugin that fails to import is reported with its entry point and distribution, and so that the
environment switches below apply by distribution *or* entry-point name:

- ``TURNOUT_DISABLE_PLUGIN_AUTOLOAD`` (any non-empty value but ``0``): load no entry points;
- ``TURNOUT_PLUGINS=a,b``: load only these (naming one that is not installed is an error);
- ``TURNOUT_DISABLED_PLUGINS=a,b``: skip these;
- ``TURNOUT_PLUGIN_MODULES=pkg.mod,other.mod``: also load these importable modules as plugins
  (no distribution needed; like ``PYTEST_PLUGINS``), after the entry points.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .config.model import (
    AnnouncerConfig,
    ConstantBackoffConfig,
    FailureAccrualConfig,
    GlobalClientConfig,
    GlobalServiceConfig,
    IdentifierConfig,
    InterpreterConfig,
    JitteredBackoffConfig,
    LoadBalancerConfig,
    NamerConfig,
    ResponseClassifierConfig,
    RouterConfig,
    StaticClientConfig,
    StaticServiceConfig,
    TelemeterConfig,
    TransformerConfig,
)
from .config.schema import ConfigObject
from .entry_points import entry_points
from .errors import PluginError
from .namerd.config import DtabStoreConfig, NamerdInterfaceConfig
from .registry import Provider, Registry

GROUP = "turnout"

#: Modules of built-in kinds, registered through the same hooks as outside plugins.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "turnout.builtin.namers",
    "turnout.builtin.interpreters",
    "turnout.builtin.transformers",
    "turnout.builtin.global_namers",
    "turnout.builtin.balancers",
    "turnout.builtin.telemeters",
    "turnout.namerd.builtin",  # namerd's store and interface, the io.l5d.namerd.http interpreter
)

#: Each registration hook and the config base class its results must subclass.
REGISTRATION_HOOKS: dict[str, type[ConfigObject]] = {
    "turnout_register_namers": NamerConfig,
    "turnout_register_protocols": RouterConfig,
    "turnout_register_identifiers": IdentifierConfig,
    "turnout_register_load_balancers": LoadBalancerConfig,
    "turnout_register_failure_accrual": FailureAccrualConfig,
    "turnout_register_response_classifiers": ResponseClassifierConfig,
    "turnout_register_interpreters": InterpreterConfig,
    "turnout_register_transformers": TransformerConfig,
    "turnout_register_telemeters": TelemeterConfig,
    "turnout_register_announcers": AnnouncerConfig,
    "turnout_register_dtab_stores": DtabStoreConfig,
    "turnout_register_namerd_interfaces": NamerdInterfaceConfig,
}

#: Families of core's own configuration objects (not plugin kinds).
CORE_KINDS: tuple[type[ConfigObject], ...] = (
    ConstantBackoffConfig,
    JitteredBackoffConfig,
    GlobalClientConfig,
    StaticClientConfig,
    GlobalServiceConfig,
    StaticServiceConfig,
)


@dataclass
class PluginInfo:
    """One loaded plugin, for ``turnout plugins``."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    builtin: bool
    hooks: list[str] = field(default_factory=list)
    kinds: list[tuple[str, str]] = field(default_factory=list)
    #: what the plugin's ``turnout_build_info`` said (see :meth:`Plugins.build_infos`)
    build: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "hooks": self.hooks,
            "kinds": [{"family": f, "kind": k} for f, k in self.kinds],
            "build": self.build,
        }


@dataclass
class Plugins:
    """The loaded plugins: the pluggy manager, the kind registry and what came from where."""

    manager: pluggy.PluginManager
    registry: Registry
    infos: list[PluginInfo]

    @property
    def hook(self) -> Any:
        return self.manager.hook

    def build_infos(self) -> list[PluginInfo]:
        """Ask every plugin's ``turnout_build_info`` how it was built (fills ``info.build``);
        the plugins that answered."""
        by_name = {info.name: info for info in self.infos}
        answered = []
        for impl in self.manager.hook.turnout_build_info.get_hookimpls():
            info = by_name.get(impl.plugin_name)
            if info is None:
                continue
            result = impl.function()
            if result:
                info.build = str(result)
                answered.append(info)
        return answered


def _switch(env: Mapping[str, str], name: str) -> set[str]:
    return {p.strip() for p in env.get(name, "").split(",") if p.strip()}


def new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def load_plugins(
    env: Mapping[str, str] | None = None,
    *,
    extra: Sequence[ModuleType | object] = (),
    autoload: bool | None = None,
) -> Plugins:
    """Load built-in plugins, then entry-point plugins (subject to the switches), then
    ``extra`` plugin objects (tests use this), and fill the kind registry.

    Raises :class:`~turnout.errors.PluginError` when a plugin cannot be imported, implements a
    hook that does not exist, returns something that is not a config class, or registers a
    kind that another plugin already registered.
    """
    env = os.environ if env is None else env
    pm = new_manager()
    infos: list[PluginInfo] = []
    for modname in BUILTIN_PLUGINS:
        module = importlib.import_module(modname)
        _register(pm, module, modname, "built-in")
        infos.append(PluginInfo(modname, modname, "turnout", _core_version(), True))

    if autoload is None:
        autoload = env.get("TURNOUT_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    if autoload:
        infos.extend(_load_entry_points(pm, env))
    for modname in sorted(_switch(env, "TURNOUT_PLUGIN_MODULES")):
        try:
            module = importlib.import_module(modname)
        except Exception as e:
            raise PluginError(
                f"TURNOUT_PLUGIN_MODULES names '{modname}', which failed to import: "
                f"{type(e).__name__}: {e}"
            ) from e
        if not pm.is_registered(module):
            _register(pm, module, modname, "TURNOUT_PLUGIN_MODULES")
            infos.append(PluginInfo(modname, modname, None, None, False))
    for i, plugin in enumerate(extra):
        name = getattr(plugin, "__name__", f"extra-{i}")
        _register(pm, plugin, name, "extra")
        infos.append(PluginInfo(name, name, None, None, False))

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        name = pm.get_name(e.plugin) or repr(e.plugin)
        raise PluginError(
            f"plugin '{name}' implements a hook turnout does not define: {e}. "
            "Check the spelling against turnout.hookspecs"
        ) from e
    registry = _fill_registry(pm, infos)
    return Plugins(pm, registry, infos)


def _register(pm: pluggy.PluginManager, plugin: object, name: str, where: str) -> None:
    """Register one plugin; a hook implementation that does not fit its spec is a PluginError."""
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as e:
        raise PluginError(f"turnout plugin '{name}' ({where}) is invalid: {e}") from e


def _core_version() -> str:
    from . import __version__

    return __version__


def _load_entry_points(pm: pluggy.PluginManager, env: Mapping[str, str]) -> list[PluginInfo]:
    only = _switch(env, "TURNOUT_PLUGINS")
    disabled = _switch(env, "TURNOUT_DISABLED_PLUGINS")
    seen: set[str] = set()
    infos: list[PluginInfo] = []
    for ep in sorted(entry_points(GROUP), key=lambda e: e.name):
        dist_name, version = ep.dist_name, ep.version
        names = {ep.name} | ({dist_name} if dist_name is not None else set())
        seen |= names
        if only and not names & only:
            continue
        if names & disabled:
            continue
        where = f"entry point '{ep.name} = {ep.value}' of distribution {dist_name} {version}"
        try:
            plugin = ep.load()
        except Exception as e:
            raise PluginError(
                f"the turnout plugin {where} failed to import: {type(e).__name__}: {e}. "
                f"Reinstall or upgrade {dist_name}, or skip it with "
                f"TURNOUT_DISABLED_PLUGINS={ep.name}"
            ) from e
        if pm.is_registered(plugin):
            continue
        other = pm.get_plugin(ep.name)
        if other is not None:
            raise PluginError(
                f"two turnout plugins are named '{ep.name}': {where} and "
                f"{getattr(other, '__name__', other)}"
            )
        _register(pm, plugin, ep.name, where)
        infos.append(
            PluginInfo(ep.name, getattr(plugin, "__name__", ep.value), dist_name, version, False)
        )
    missing = only - seen
    if missing:
        raise PluginError(
            f"TURNOUT_PLUGINS names {', '.join(sorted(missing))}, but no such turnout plugin "
            f"is installed (installed: {', '.join(sorted(seen)) or 'none'})"
        )
    return infos


def _fill_registry(pm: pluggy.PluginManager, infos: Iterable[PluginInfo]) -> Registry:
    registry = Registry()
    by_name = {info.name: info for info in infos}
    core = Provider("turnout", "turnout", _core_version())
    for cls in CORE_KINDS:
        registry.add(cls, core, "core")
    for hook_name, base in REGISTRATION_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            info = by_name[impl.plugin_name]
            info.hooks.append(hook_name)
            provider = Provider(info.name, info.distribution, info.version)
            result = _call(impl, hook_name, provider)
            for cls in _as_list(result):
                if not (isinstance(cls, type) and issubclass(cls, base)):
                    raise PluginError(
                        f"{provider} returned {cls!r} from {hook_name}; expected subclasses of "
                        f"turnout.config.{base.__name__}"
                    )
                registry.add(cls, provider, hook_name)
                info.kinds.append((str(cls.family), str(cls.kind)))
    for impl in pm.hook.turnout_register_global_namers.get_hookimpls():
        info = by_name[impl.plugin_name]
        info.hooks.append("turnout_register_global_namers")
        provider = Provider(info.name, info.distribution, info.version)
        for name, namer in (_call(impl, "turnout_register_global_namers", provider) or {}).items():
            registry.add_global_namer(name, namer, provider)
            info.kinds.append(("global namer", f"/$/{name}"))
    for info in infos:
        for hook in pm.get_hookcallers(pm.get_plugin(info.name)) or ():
            if hook.name not in info.hooks:
                info.hooks.append(hook.name)
    return registry


def _call(impl: Any, hook_name: str, provider: Provider) -> Any:
    try:
        return impl.function()
    except Exception as e:
        raise PluginError(f"{provider} raised in {hook_name}: {type(e).__name__}: {e}") from e


def _as_list(result: Any) -> list[Any]:
    if result is None:
        return []
    if isinstance(result, list | tuple):
        return list(result)
    return [result]
