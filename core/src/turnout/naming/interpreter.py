"""Name interpreters: how a router binds a path (dtab, configured namers, global namers).

- :class:`GlobalNamer` answers ``/$/...``: ``inet``/``fixedinet`` addresses, ``nil``, ``fail``
  and named global namers registered by plugins (``/$/io.buoyant.rinet/...``).
- :class:`ConfiguredNamersInterpreter` is Linkerd's ``default`` interpreter: a path is looked
  up in the dtab; when the dtab has nothing for it (exactly ``Neg``), the configured namers
  mounted at ``/#/<prefix>`` are asked in configuration order (``Neg`` falls through to the
  next), then the global namer.
- Interpreters that own a stored dtab (``io.l5d.fs``) bind with ``stored ++ request dtab``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import BindingError, UnknownNamerError
from .binding import MAX_BIND_NODES, MAX_DEPTH, bind_once
from .dtab import Dtab
from .inet import InetResolver, default_resolver
from .namer import Name, NameBound, Namer
from .nametree import Empty, Fail, Leaf, NameTree, Neg
from .path import Path
from .var import Activity, Failed, Ok, State, derive_activity, not_ok

_INT = re.compile(rb"[+-]?[0-9]+")
_HASH = Path.of("#")


class GlobalNamer:
    """The ``/$`` namespace (Finagle's ``Namer.global``, §7.1 of the naming reference)."""

    def __init__(
        self, named: Mapping[str, Namer] | None = None, resolver: InetResolver | None = None
    ):
        self.named = dict(named or {})
        self.resolver = resolver or default_resolver()
        self._activities: dict[tuple[str, Path], Activity[NameTree[Name]]] = {}

    def lookup(self, path: Path) -> State[NameTree[Name]]:
        """Look ``path`` up; samples named namers' activities (so it can run in a binding)."""
        e = path.elems
        if not e or e[0] != b"$":
            return Ok(Neg)
        if len(e) >= 2 and e[1] in (b"inet", b"fixedinet"):
            fixed = e[1] == b"fixedinet"
            if len(e) >= 4 and _port(e[3]) is not None:
                return self._inet(path, 4, e[2].decode(errors="replace"), e[3], fixed)
            if len(e) >= 3 and _port(e[2]) is not None:
                return self._inet(path, 3, "", e[2], fixed)
        if len(e) >= 2 and e[1] == b"fail":
            return Ok(Fail)
        if len(e) >= 2 and e[1] == b"nil":
            return Ok(Empty)
        if len(e) >= 2:
            name = e[1].decode(errors="replace")
            namer = self.named.get(name)
            if namer is None:
                return Failed(UnknownNamerError(f"Unknown namer: {name} for path: {path}"))
            key = (name, path.drop(2))
            act = self._activities.get(key)
            if act is None:  # the same Activity per path, so a binding subscribes once
                if len(self._activities) > 10_000:
                    self._activities = {k: a for k, a in self._activities.items() if a.observed}
                act = self._activities[key] = namer.lookup(key[1])
            return act.sample()
        return Ok(Neg)

    def _inet(self, path: Path, n: int, host: str, port_label: bytes, fixed: bool) -> State[Any]:
        port = _port(port_label)
        assert port is not None
        if not 0 <= port <= 65535:
            return Failed(BindingError(f"port out of range: {port} in {path}"))
        var = self.resolver.addr(host, port, fixed=fixed)
        return Ok(Leaf(NameBound(path.take(n), var, path.drop(n))))


def _port(label: bytes) -> int | None:
    if not _INT.fullmatch(label):
        return None
    value = int(label)
    return value if -(2**31) <= value < 2**31 else None


class NameInterpreter:
    """Binds paths for a router. Subclasses implement :meth:`bind` (and may delegate)."""

    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree[NameBound]]:
        raise NotImplementedError

    def stored_dtab(self) -> State[Dtab]:
        """The dtab this interpreter owns (prepended to the router's), if any."""
        return Ok(Dtab.empty)

    def namer_lookup(self, path: Path) -> State[NameTree[Name]]:
        """Look ``path`` up in the namers only (no dtab): what delegation calls."""
        raise NotImplementedError

    def transform_delegate(self, node: Any) -> State[Any]:
        """The delegate tree (a :class:`~turnout.naming.delegate.DNode`) as this interpreter's
        transformers change it (``transformation`` nodes); unchanged by default."""
        return Ok(node)

    @property
    def can_delegate(self) -> bool:
        return True

    async def remote_delegate(self, dtab: Dtab, path: Path) -> Any:
        """For an interpreter that binds elsewhere (namerd) and so cannot delegate here
        (``can_delegate`` false): the delegate tree of ``path`` with ``dtab`` appended to the
        remote one, as ``/delegator.json`` JSON, asked of that place. ``None``: not supported
        (the admin answers 501). Raises :class:`ValueError` for a request the remote side
        refused as malformed (the admin answers 400), any other exception when it could not
        answer (502)."""
        return None

    async def close(self) -> None:
        """Release what the interpreter holds."""


class ConfiguredNamersInterpreter(NameInterpreter):
    """Linkerd's ``default`` interpreter (see the module docstring)."""

    def __init__(
        self,
        namers: Sequence[tuple[Path, Namer]],
        global_namer: GlobalNamer,
        *,
        max_depth: int = MAX_DEPTH,
        max_nodes: int = MAX_BIND_NODES,
    ) -> None:
        self.namers = [(_HASH + prefix, namer) for prefix, namer in namers]
        self.global_namer = global_namer
        self.max_depth = max_depth
        #: most name-tree nodes one binding may visit (see turnout.naming.binding)
        self.max_nodes = max_nodes
        self._activities: dict[tuple[int, Path], Activity[NameTree[Name]]] = {}

    def _namer_activity(self, index: int, namer: Namer, rest: Path) -> Activity[NameTree[Name]]:
        key = (index, rest)
        act = self._activities.get(key)
        if act is None:
            if len(self._activities) > 10_000:
                self._activities = {k: a for k, a in self._activities.items() if a.observed}
            act = self._activities[key] = namer.lookup(rest)
        return act

    def namer_lookup(self, path: Path) -> State[NameTree[Name]]:
        for index, (prefix, namer) in enumerate(self.namers):
            if path.starts_with(prefix):
                state = self._namer_activity(index, namer, path.drop(len(prefix))).sample()
                if isinstance(state, Ok) and state.value is Neg:
                    continue
                return state
        return self.global_namer.lookup(path)

    def lookup(self, dtab: Dtab, path: Path) -> State[NameTree[Name]]:
        tree = dtab.lookup(path)
        if tree is Neg:
            return self.namer_lookup(path)
        return Ok(tree)

    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree[NameBound]]:
        def compute() -> State[NameTree[NameBound]]:
            stored = self.stored_dtab()
            if not isinstance(stored, Ok):
                return not_ok(stored)
            full = stored.value + dtab if len(stored.value) else dtab
            return bind_once(
                lambda p: self.lookup(full, p), Leaf(path), self.max_depth, max_nodes=self.max_nodes
            )

        return derive_activity(compute)


class DtabFileInterpreter(ConfiguredNamersInterpreter):
    """Like the default interpreter, with a dtab that lives in an :class:`Activity`."""

    def __init__(
        self,
        namers: Sequence[tuple[Path, Namer]],
        global_namer: GlobalNamer,
        dtab: Activity[Dtab],
        *,
        max_depth: int = MAX_DEPTH,
        max_nodes: int = MAX_BIND_NODES,
    ) -> None:
        super().__init__(namers, global_namer, max_depth=max_depth, max_nodes=max_nodes)
        self.dtab = dtab

    def stored_dtab(self) -> State[Dtab]:
        return self.dtab.sample()
