"""The ``com.example.static`` namer: a fixed list of addresses for each service name.

Configuration (``namers:`` entry)::

    - kind: com.example.static
      services:
        web: ["10.0.0.1:8080", "10.0.0.2:8080"]

Then ``/#/com.example.static/web`` binds to those two addresses; any other name is ``Neg``
(not found here), so the next dtab alternative or namer is tried.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from turnout.api import (
    Activity,
    Addr,
    AddrBound,
    Address,
    BuildContext,
    Leaf,
    Name,
    NameBound,
    Namer,
    NamerConfig,
    NameTree,
    Neg,
    Path,
    Var,
    option,
)

#: lookups remembered before unobserved ones are forgotten (names come from requests)
MAX_CACHED_LOOKUPS = 10_000


class StaticNamerConfig(NamerConfig):
    """Fixed addresses per service: ``/#/com.example.static/<name>`` binds to
    ``services[<name>]``; other names are negative."""

    kind = "com.example.static"
    services: dict[str, list[str]] = option(
        doc="Service name → its addresses, each 'host:port'. An empty list means no endpoints."
    )

    def check(self) -> Iterable[tuple[tuple[str | int, ...], str]]:
        # Runs after the options were read; each problem is reported at its own position.
        for name, addresses in self.services.items():
            for i, text in enumerate(addresses):
                try:
                    Address.parse(text)
                except ValueError as e:
                    yield ("services", name, i), str(e)

    def new_namer(self, ctx: BuildContext) -> StaticNamer:
        services = {
            name: [Address.parse(a) for a in addrs] for name, addrs in self.services.items()
        }
        return StaticNamer(Path.of("#") + self.effective_prefix, services)


class StaticNamer(Namer):
    """Looks the first path label up in a fixed table (see the module docstring)."""

    def __init__(self, id_prefix: Path, services: Mapping[str, list[Address]]) -> None:
        self.id_prefix = id_prefix
        # One Var per service, shared by every binding of it. A namer fed by a discovery
        # system would update() these Vars when the addresses change.
        self.addrs: dict[str, Var[Addr]] = {
            name: Var(AddrBound(addrs)) for name, addrs in services.items()
        }
        self._lookups: dict[Path, Activity[NameTree[Name]]] = {}

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        # The same path must give the same Activity while someone observes it.
        activity = self._lookups.get(path)
        if activity is None:
            if len(self._lookups) >= MAX_CACHED_LOOKUPS:
                self._lookups = {p: a for p, a in self._lookups.items() if a.observed}
            activity = self._lookups[path] = Activity.of(self._tree(path))
        return activity

    def _tree(self, path: Path) -> NameTree[Name]:
        if len(path) == 0:
            return Neg
        var = self.addrs.get(path[0].decode("utf-8", errors="replace"))
        if var is None:
            return Neg
        # The namer consumed one label; the rest of the path is the residual.
        return Leaf(NameBound(self.id_prefix + path.take(1), var, path.drop(1)))

    def bound_names(self) -> Iterable[Path]:
        return [self.id_prefix + Path.of(name) for name in sorted(self.addrs)]

    def state(self) -> dict[str, Any]:
        return {
            name: [str(a) for a in var.value.sorted()] if isinstance(var.value, AddrBound) else []
            for name, var in self.addrs.items()
        }
