"""Transformers: rewrites of bound name trees (Linkerd's ``NameTreeTransformer``).

A transformer takes the bound tree of an interpreter (``routers[].interpreter.transformers``)
or of one namer (``namers[].transformers``) and returns another: the ``io.l5d.port``
transformer replaces the port of every address, ``io.l5d.localhost`` keeps the local ones.
Transformers are applied in configuration order, each to the previous one's output.

A transformed bound name gets the id ``/%<prefix><original id>`` (``/%/io.l5d.port/4141/#/
io.l5d.fs/web``) and an address set derived from the original: it stays live, updating
whenever the namer publishes a new address set.

- :class:`NameTreeTransformer` is the interface (``transform`` a bound tree, and
  ``transform_delegate`` a delegate tree so that ``/delegator.json`` shows ``transformation``
  nodes); :class:`AddrTransformer` is the common case that maps each bound name's Addr.
- :class:`TransformingInterpreter` and :class:`TransformingNamer` apply a list of transformers
  to an interpreter's or a namer's results.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from .addr import Addr
from .delegate import NOP, DNode, map_bound_leaves
from .dtab import Dtab
from .interpreter import NameInterpreter
from .namer import Name, NameBound, Namer
from .nametree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted
from .path import Path
from .var import Activity, Ok, State, Var, derive_activity, not_ok

#: the first element of every transformed id (Linkerd's ``Paths.TransformerPrefix``)
TRANSFORMER_PREFIX = Path.of("%")


class NameTreeTransformer:
    """Rewrites bound name trees; ``prefix`` is the full id prefix (``/%/io.l5d.port/4141``)
    and ``name`` what delegation shows (the transformer's kind)."""

    def __init__(self, prefix: Path, name: str) -> None:
        self.prefix = prefix
        self.name = name

    def transform(self, tree: NameTree[NameBound]) -> State[NameTree[NameBound]]:
        """The transformed tree. May sample Vars (it runs inside a derived Activity)."""
        raise NotImplementedError

    def transform_delegate(self, node: DNode) -> State[DNode]:
        """The delegate tree with this transformation shown; the default replaces every bound
        leaf by a ``transformation`` node holding the leaf's transformed tree."""

        def one(leaf: DNode) -> State[DNode]:
            state = self.transform(Leaf(leaf.value))
            if not isinstance(state, Ok):
                return not_ok(state)
            tree = state.value
            if isinstance(tree, Leaf):
                inner = DNode("leaf", tree.value.id, leaf.dentry, value=tree.value)
            else:
                inner = dnode_of(leaf.path, tree)
            return Ok(
                DNode(
                    "transformation", leaf.path, NOP, ((None, inner),), leaf.value, name=self.name
                )
            )

        return map_bound_leaves(node, one)

    async def close(self) -> None:
        """Release what the transformer holds (watches); called once at shutdown."""


def dnode_of(path: Path, tree: NameTree[NameBound]) -> DNode:
    """The delegate tree that shows bound tree ``tree`` (reached at ``path``)."""
    if isinstance(tree, Leaf):
        return DNode("leaf", tree.value.id, NOP, value=tree.value)
    if tree is Neg:
        return DNode("neg", Path.empty)
    if tree is Fail:
        return DNode("fail", path)
    if tree is Empty:
        return DNode("empty", path)
    if isinstance(tree, Alt):
        return DNode("alt", path, NOP, tuple((None, dnode_of(path, t)) for t in tree.trees))
    assert isinstance(tree, Union)
    kids = tuple((w.weight, dnode_of(path, w.tree)) for w in tree.trees)
    return DNode("union", path, NOP, kids)


class _BoundCache:
    """Transformed names by original (the original's address Var, id and residual), so that
    re-binding the same names keeps the same transformed Vars (and their observers)."""

    def __init__(self) -> None:
        self._by_var: weakref.WeakKeyDictionary[Var[Addr], dict[tuple[Path, Path], NameBound]]
        self._by_var = weakref.WeakKeyDictionary()

    def get(self, bound: NameBound, make: Callable[[NameBound], NameBound]) -> NameBound:
        names = self._by_var.get(bound.addr)
        if names is None:
            names = self._by_var[bound.addr] = {}
        key = (bound.id, bound.residual)
        out = names.get(key)
        if out is None:
            out = names[key] = make(bound)
        return out


class AddrTransformer(NameTreeTransformer):
    """A transformer that maps each bound name's address set with :meth:`map_addr` (``Pending``,
    ``Neg`` and failures pass through unless ``map_addr`` changes them)."""

    def __init__(self, prefix: Path, name: str) -> None:
        super().__init__(prefix, name)
        self._cache = _BoundCache()

    def map_addr(self, addr: Addr) -> Addr:
        raise NotImplementedError

    def _make(self, bound: NameBound) -> NameBound:
        return NameBound(self.prefix + bound.id, bound.addr.map(self.map_addr), bound.residual)

    def map_bound(self, bound: NameBound) -> NameBound:
        return self._cache.get(bound, self._make)

    def transform(self, tree: NameTree[NameBound]) -> State[NameTree[NameBound]]:
        return Ok(tree.map(self.map_bound))


def replace_leaves(tree: NameTree[Any], replacement: NameTree[Any]) -> NameTree[Any]:
    """``tree`` with every leaf replaced by ``replacement`` (Linkerd's ReplaceTransformer)."""
    if isinstance(tree, Leaf):
        return replacement
    if isinstance(tree, Alt):
        return Alt(*(replace_leaves(t, replacement) for t in tree.trees))
    if isinstance(tree, Union):
        return Union(*(Weighted(w.weight, replace_leaves(w.tree, replacement)) for w in tree.trees))
    return tree


def apply_transformers(
    state: State[NameTree[NameBound]], transformers: Iterable[NameTreeTransformer]
) -> State[NameTree[NameBound]]:
    """``state`` transformed by each transformer in order (a non-Ok state stops there)."""
    for t in transformers:
        if not isinstance(state, Ok):
            return state
        state = t.transform(state.value)
    return state


def _is_bound(tree: NameTree[Name]) -> bool:
    if isinstance(tree, Leaf):
        return isinstance(tree.value, NameBound)
    if isinstance(tree, Alt):
        return all(_is_bound(t) for t in tree.trees)
    if isinstance(tree, Union):
        return all(_is_bound(w.tree) for w in tree.trees)
    return True


class TransformingInterpreter(NameInterpreter):
    """An interpreter whose bound trees (and delegate trees) go through ``transformers``."""

    def __init__(
        self, underlying: NameInterpreter, transformers: Sequence[NameTreeTransformer]
    ) -> None:
        self.underlying = underlying
        self.transformers = list(transformers)

    def bind(self, dtab: Dtab, path: Path) -> Activity[NameTree[NameBound]]:
        source = self.underlying.bind(dtab, path)
        return derive_activity(lambda: apply_transformers(source.sample(), self.transformers))

    def stored_dtab(self) -> State[Dtab]:
        return self.underlying.stored_dtab()

    def namer_lookup(self, path: Path) -> State[NameTree[Name]]:
        return self.underlying.namer_lookup(path)

    def transform_delegate(self, node: DNode) -> State[DNode]:
        state = self.underlying.transform_delegate(node)
        for t in self.transformers:
            if not isinstance(state, Ok):
                return state
            state = t.transform_delegate(state.value)
        return state

    @property
    def can_delegate(self) -> bool:
        return self.underlying.can_delegate

    async def remote_delegate(self, dtab: Dtab, path: Path) -> Any:
        """The remote tree, without this linker's transformers (they apply to what the
        router binds, after namerd's answer)."""
        return await self.underlying.remote_delegate(dtab, path)

    def __getattr__(self, name: str) -> Any:  # the underlying interpreter's other attributes
        if name == "underlying":
            raise AttributeError(name)
        return getattr(self.underlying, name)

    async def close(self) -> None:
        for t in self.transformers:
            await t.close()
        await self.underlying.close()


class TransformingNamer(Namer):
    """A namer whose fully bound results go through ``transformers`` (a result that still
    holds paths to bind further is returned as is, as in Linkerd)."""

    def __init__(self, underlying: Namer, transformers: Sequence[NameTreeTransformer]) -> None:
        self.underlying = underlying
        self.transformers = list(transformers)
        self._activities: dict[Path, Activity[NameTree[Name]]] = {}

    def lookup(self, path: Path) -> Activity[NameTree[Name]]:
        act = self._activities.get(path)
        if act is None:
            if len(self._activities) > 10_000:
                self._activities = {k: a for k, a in self._activities.items() if a.observed}
            source = self.underlying.lookup(path)

            def compute() -> State[NameTree[Name]]:
                state = source.sample()
                if isinstance(state, Ok) and _is_bound(state.value):
                    return apply_transformers(state, self.transformers)
                return state

            act = self._activities[path] = derive_activity(compute)
        return act

    def bound_names(self) -> Iterable[Path] | None:
        return self.underlying.bound_names()

    def state(self) -> dict[str, Any]:
        return self.underlying.state()

    def __getattr__(self, name: str) -> Any:  # the underlying namer's other attributes
        if name == "underlying":
            raise AttributeError(name)
        return getattr(self.underlying, name)

    async def close(self) -> None:
        for t in self.transformers:
            await t.close()
        await self.underlying.close()


__all__ = [
    "TRANSFORMER_PREFIX",
    "AddrTransformer",
    "NameTreeTransformer",
    "TransformingInterpreter",
    "TransformingNamer",
    "apply_transformers",
    "dnode_of",
    "replace_leaves",
]
