"""Bound names and the :class:`Namer` interface that service-discovery plugins implement."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from .addr import Addr
from .nametree import NameTree
from .path import Path
from .var import Activity, Var


class NameBound:
    """A bound name (Finagle's ``Name.Bound``): an id, a live address set and a residual.

    ``id`` is the path the namer consumed (``/#/io.l5d.fs/web``), ``residual`` the rest of the
    path that was not consumed, and ``addr`` a :class:`Var` of :class:`Addr` that the namer
    keeps current. Equality and hashing use ``id`` only, as in Finagle.
    """

    __slots__ = ("addr", "id", "residual")

    def __init__(self, id: Path, addr: Var[Addr], residual: Path = Path.empty) -> None:
        self.id = id
        self.addr = addr
        self.residual = residual

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NameBound) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __str__(self) -> str:
        return str(self.id)

    def __repr__(self) -> str:
        residual = f", residual={self.residual}" if len(self.residual) else ""
        return f"NameBound({self.id}{residual})"


#: A name in a tree returned by a namer: an unbound path (to be bound further) or bound.
Name = Path | NameBound


class Namer(ABC):
    """A service-discovery adapter: turns a path into a tree of names.

    ``lookup`` receives the path *after* the namer's prefix (for ``/#/io.l5d.fs/web/x`` and
    prefix ``/io.l5d.fs``, the path ``/web/x``) and returns an :class:`Activity` of a
    :class:`NameTree` whose leaves are :class:`NameBound` (found: an id, a live address set
    and the unconsumed residual) or :class:`Path` (a rewrite, bound again through the dtab).
    ``Neg`` means "not here": the next configured namer is tried.

    Return the *same* Activity for the same path while it is in use (cache it): the binder
    subscribes to it and a new object each time would restart the watch. Start watches lazily
    with ``Var(..., start=...)`` so that nothing is watched that nobody routes to.

    Example::

        class StaticNamer(Namer):
            def __init__(self, addrs):
                self.addrs = Var(AddrBound(addrs))

            def lookup(self, path):
                if len(path) == 0:
                    return Activity.of(Neg)
                bound_id = Path.of("#", "static") + path.take(1)
                bound = NameBound(bound_id, self.addrs, path.drop(1))
                return Activity.of(Leaf(bound))
    """

    @abstractmethod
    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        """Look ``path`` up; see the class docstring."""

    def bound_names(self) -> Iterable[Path] | None:
        """Ids this namer can enumerate (``/bound-names.json``), or None when it cannot."""
        return None

    def state(self) -> dict[str, Any]:
        """What this namer currently knows, for ``/namer_state/<prefix>.json``."""
        return {}

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release resources (watches, sessions). Called once at shutdown."""
