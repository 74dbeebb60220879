"""The registry of kinds: which config class reads each ``kind`` of each family, and who
provided it.

Filled once by :func:`turnout.plugin_manager.load_plugins` from the registration hooks.
Duplicate kinds in a family are refused, naming both providers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .config.schema import ConfigObject, did_you_mean
from .errors import PluginError
from .known_plugins import CONTRIB_KINDS, FIRST_PARTY_KINDS, NOT_PROVIDED
from .naming.namer import Namer


@dataclass(frozen=True)
class Provider:
    """Where a registration came from: the plugin (entry-point or module) name and its
    distribution, when it was loaded from one."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.distribution:
            return f"{self.distribution} {self.version} (plugin '{self.plugin}')"
        return f"plugin '{self.plugin}'"


@dataclass(frozen=True)
class Registration:
    family: str
    kind: str
    cls: type[ConfigObject]
    provider: Provider
    hook: str

    @property
    def qualname(self) -> str:
        return f"{self.cls.__module__}:{self.cls.__qualname__}"


@dataclass(frozen=True)
class GlobalNamerRegistration:
    name: str
    namer: Namer
    provider: Provider


class Registry:
    """Kinds by family, plus the global (``/$/<name>``) namers."""

    def __init__(self) -> None:
        self._families: dict[str, dict[str, Registration]] = {}
        self.global_namers: dict[str, GlobalNamerRegistration] = {}

    # -- filling ---------------------------------------------------------------------------
    def add(self, cls: type[ConfigObject], provider: Provider, hook: str) -> None:
        family, kind = cls.family, cls.kind
        if family is None or not isinstance(kind, str) or not kind:
            raise PluginError(
                f"{provider} returned {cls.__module__}.{cls.__qualname__} from {hook}, but it "
                "does not set both a family (by subclassing a turnout.config base) and a kind"
            )
        kinds = self._families.setdefault(family, {})
        if kind in kinds:
            other = kinds[kind]
            raise PluginError(
                f"{family} {cls.discriminator} '{kind}' is provided twice: by {other.provider} "
                f"({other.qualname}) and by {provider} ({cls.__module__}:{cls.__qualname__}); "
                "uninstall one of them or disable it with TURNOUT_DISABLED_PLUGINS"
            )
        kinds[kind] = Registration(family, kind, cls, provider, hook)

    def add_global_namer(self, name: str, namer: Namer, provider: Provider) -> None:
        if name in self.global_namers:
            other = self.global_namers[name]
            raise PluginError(
                f"global namer /$/{name} is provided twice: by {other.provider} and by {provider}"
            )
        self.global_namers[name] = GlobalNamerRegistration(name, namer, provider)

    # -- lookups (the validator's KindLookup protocol) -------------------------------------
    def config_class(self, family: str, kind: str) -> type[ConfigObject] | None:
        reg = self._families.get(family, {}).get(kind)
        return reg.cls if reg else None

    def kinds(self, family: str) -> list[str]:
        return sorted(self._families.get(family, {}))

    def hint(self, family: str, kind: str) -> str | None:
        """How to get an unknown kind: the ``pip install`` line of a first-party or contrib
        plugin, or why turnout does not provide a Linkerd kind and what to use instead."""
        dist = FIRST_PARTY_KINDS.get((family, kind))
        if dist is not None:
            return f"it is provided by the plugin '{dist}': pip install {dist}"
        dist = CONTRIB_KINDS.get((family, kind))
        if dist is not None:
            return (
                f"it is provided by the community plugin '{dist}' (plugins-contrib/ in "
                f"turnout's repository): pip install {dist}"
            )
        return NOT_PROVIDED.get((family, kind))

    def suggest(self, family: str, kind: str) -> str:
        return did_you_mean(kind, self.kinds(family))

    # -- listing ---------------------------------------------------------------------------
    def families(self) -> list[str]:
        return sorted(self._families)

    def registrations(self) -> Iterable[Registration]:
        for family in self.families():
            yield from (self._families[family][k] for k in self.kinds(family))

    def registration(self, family: str, kind: str) -> Registration | None:
        return self._families.get(family, {}).get(kind)
