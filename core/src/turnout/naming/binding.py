"""Binding: turning a name tree of paths into a tree of bound names (Finagle ``Namer.bind``).

:func:`bind_once` evaluates a binding once, *sampling* the lookups it needs. Run inside
:func:`~turnout.naming.var.derive_activity` (as the interpreters do) it becomes a live
binding: every namer Activity it sampled is a dependency, so when a namer publishes a new tree
the binding is recomputed, and when only an address set changes nothing is re-bound at all
(the bound leaf carries the namer's address Var).

The rules, from ``reference/naming-semantics.md`` §6:

- a ``Leaf(Path)`` is looked up (depth + 1) and the result bound in turn; errors and pending
  lookups propagate;
- ``Alt`` binds its branches in order and takes the first that is not ``Neg``; an error, a
  pending lookup, ``Fail`` or ``Empty`` stops the fallback;
- ``Union`` binds every branch; branches that fail or bind to ``Neg``/``Fail`` disappear;
- a bound leaf under a Union records that weight in its address metadata
  (``namer_nametree_weight``);
- more than ``max_depth`` (100) nested lookups fail the binding.

Binding runs on the event loop and a request can bring its own dtab, so the work is bounded
as well (a turnout addition; Finagle bounds the depth only):

- identical subtrees are shared: the same path at the same depth and weight is bound once per
  binding, so ``/s0=>/s1 & /s1; /s1=>/s2 & /s2; ...`` costs linear work, not exponential;
- a binding visits at most ``max_nodes`` (:data:`MAX_BIND_NODES`) tree nodes (the nodes each
  lookup builds count too), and its bound tree may hold at most that many nodes counted with
  shared subtrees expanded (what the load balancer and ``eval`` walk);
- at most :data:`MAX_NESTING` Alt/Union nodes may be nested on one branch.

Exceeding a bound fails the whole binding with :class:`NameTreeTooLarge`, whose message names
the limit; unlike a recursion failure it is not skipped by an enclosing Union.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import BindingError
from .addr import NAMETREE_WEIGHT_KEY, Addr, AddrBound, AddrFailed, AddrNeg, AddrPending
from .namer import Name, NameBound
from .nametree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted
from .path import Path
from .var import Failed, Ok, Pending, State, not_ok

#: Most nested lookups in one binding (Finagle's ``namerMaxDepth``).
MAX_DEPTH = 100
#: Most name-tree nodes one binding may visit, and most nodes its bound tree may hold
#: (shared subtrees counted expanded).
MAX_BIND_NODES = 5_000
#: Most Alt/Union nodes nested on one branch of a binding (keeps recursion bounded).
MAX_NESTING = 100

Lookup = Callable[[Path], State[NameTree[Name]]]


class NameTreeTooLarge(BindingError):
    """A binding exceeded its work bounds (nodes or nesting); delegation truncates instead."""


def bind_once(
    lookup: Lookup,
    tree: NameTree[Name],
    max_depth: int = MAX_DEPTH,
    *,
    max_nodes: int = MAX_BIND_NODES,
) -> State[NameTree[NameBound]]:
    """Bind ``tree`` once, calling ``lookup`` for each path (see the module docstring)."""
    binder = _Binder(lookup, max_depth, max_nodes)
    try:
        return binder.bind(tree, 0, None, 0)[0]
    except NameTreeTooLarge as e:
        return Failed(e)
    except RecursionError:  # pragma: no cover - MAX_NESTING keeps well below the limit
        return Failed(NameTreeTooLarge("Name tree too deep: Python recursion limit reached"))


#: what binding one subtree gives: its state, and the size (shared nodes expanded) and the
#: Union nesting of its bound tree
_Result = tuple[State[NameTree[NameBound]], int, int]


class _Binder:
    """One binding: the lookup, the limits, the work done so far and the shared subtrees."""

    __slots__ = ("lookup", "max_depth", "max_nodes", "memo", "visited")

    def __init__(self, lookup: Lookup, max_depth: int, max_nodes: int) -> None:
        self.lookup = lookup
        self.max_depth = max_depth
        self.max_nodes = max_nodes
        self.visited = 0
        #: (path, depth, weight) -> result: a path is bound once per binding at each depth
        self.memo: dict[tuple[Path, int, float | None], _Result] = {}

    def too_large(self, what: str) -> NameTreeTooLarge:
        return NameTreeTooLarge(
            f"Name tree too large: {what} exceeds the limit of {self.max_nodes} nodes"
        )

    def bind(self, t: NameTree[Any], depth: int, weight: float | None, nesting: int) -> _Result:
        if depth > self.max_depth:
            error = BindingError(f"Max recursion level: {self.max_depth} reached in Namer lookup")
            return Failed(error), 1, 0
        self.visited += 1
        if self.visited > self.max_nodes:
            raise self.too_large("binding")
        if isinstance(t, Leaf):
            value = t.value
            if isinstance(value, NameBound):
                return Ok(Leaf(_weighted(value, weight))), 1, 0
            key = (value, depth, weight)
            result = self.memo.get(key)
            if result is None:
                state = self.lookup(value)
                if isinstance(state, Ok):
                    # (what the lookup built counts too: a wide dst is rebuilt per lookup)
                    self.visited += tree_size(state.value)
                    if self.visited > self.max_nodes:
                        raise self.too_large("binding")
                    result = self.bind(state.value, depth + 1, weight, nesting)
                else:
                    result = not_ok(state), 1, 0
                self.memo[key] = result
            return result
        if t is Neg or t is Fail or t is Empty:
            return Ok(t), 1, 0
        if nesting >= MAX_NESTING:
            raise _too_deep()
        if isinstance(t, Union):
            return self.bind_union(t, depth, nesting + 1)
        if isinstance(t, Alt):
            for branch in t.trees:
                result = self.bind(branch, depth, weight, nesting + 1)
                state = result[0]
                if not isinstance(state, Ok) or state.value is not Neg:
                    return result
            return Ok(Neg), 1, 0
        raise TypeError(f"not a name tree: {t!r}")  # pragma: no cover

    def bind_union(self, t: Union[Any], depth: int, nesting: int) -> _Result:
        if not t.trees:
            return Ok(Neg), 1, 0
        if len(t.trees) == 1:
            only = t.trees[0]
            return self.bind(only.tree, depth, only.weight, nesting)
        # Ok(simplify(Union(ok branches))); the branches are bound, so already simplified
        oks: list[Weighted[NameBound]] = []
        kept: list[Weighted[NameBound]] = []
        size, height = 1, 0
        failure: State[NameTree[NameBound]] | None = None
        for branch in t.trees:
            state, n, h = self.bind(branch.tree, depth, branch.weight, nesting)
            if isinstance(state, Ok):
                ok = Weighted(branch.weight, state.value)
                oks.append(ok)
                if state.value is not Neg and state.value is not Fail:
                    kept.append(ok)
                    size += n
                    height = max(height, h)
                    if size > self.max_nodes:
                        raise self.too_large("the bound tree")
            elif failure is None and isinstance(state, Failed):
                failure = state
        if len(oks) == 1:  # Union(x).simplified is x simplified, Neg and Fail included
            return Ok(oks[0].tree), max(size - 1, 1), height
        if len(kept) == 1:
            return Ok(kept[0].tree), size - 1, height
        if kept:
            if height >= MAX_NESTING:
                raise _too_deep()
            return Ok(Union(*kept)), size, height + 1
        if oks:
            return Ok(Neg), 1, 0
        return (failure or Pending), 1, 0


def tree_size(tree: NameTree[Any]) -> int:
    """The number of nodes of ``tree`` (shared subtrees counted once per reference)."""
    if isinstance(tree, Alt):
        return 1 + sum(tree_size(t) for t in tree.trees)
    if isinstance(tree, Union):
        return 1 + sum(tree_size(w.tree) for w in tree.trees)
    return 1


def _too_deep() -> NameTreeTooLarge:
    return NameTreeTooLarge(
        f"Name tree too deep: more than {MAX_NESTING} nested alternatives or unions"
    )


def _weighted(bound: NameBound, weight: float | None) -> NameBound:
    """``bound`` with the Union weight recorded in its address metadata (Finagle does this)."""
    if weight is None:
        return bound

    def annotate(addr: Addr) -> Addr:
        if isinstance(addr, AddrBound):
            return AddrBound(addr.addresses, {**addr.meta, NAMETREE_WEIGHT_KEY: weight})
        return addr

    return NameBound(bound.id, bound.addr.map(annotate), bound.residual)


def resolve(tree: NameTree[NameBound]) -> Addr:
    """The address of a bound tree (Finagle ``Namer.resolve``), as the current value.

    ``eval`` of the tree: none → ``AddrNeg``; empty → bound to nothing; one name → its Addr;
    several → the union of the bound ones.
    """
    names = tree.eval()
    if names is None:
        return AddrNeg
    if not names:
        return AddrBound()
    addrs = [n.addr.value for n in names]
    if len(addrs) == 1:
        return addrs[0]
    bound = [a for a in addrs if isinstance(a, AddrBound)]
    if bound:
        return AddrBound(x for a in bound for x in a.addresses)
    if all(a is AddrNeg for a in addrs):
        return AddrNeg
    if all(isinstance(a, AddrFailed) for a in addrs):
        return addrs[0]
    return AddrPending
