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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import BindingError
from .addr import NAMETREE_WEIGHT_KEY, Addr, AddrBound, AddrFailed, AddrNeg, AddrPending
from .namer import Name, NameBound
from .nametree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted
from .path import Path
from .var import Failed, Ok, Pending, State

MAX_DEPTH = 100

Lookup = Callable[[Path], State[NameTree[Name]]]


def bind_once(
    lookup: Lookup, tree: NameTree[Name], max_depth: int = MAX_DEPTH
) -> State[NameTree[NameBound]]:
    """Bind ``tree`` once, calling ``lookup`` for each path (see the module docstring)."""
    return _bind(lookup, tree, 0, None, max_depth)


def _bind(
    lookup: Lookup, t: NameTree[Any], depth: int, weight: float | None, max_depth: int
) -> State[NameTree[NameBound]]:
    if depth > max_depth:
        return Failed(BindingError(f"Max recursion level: {max_depth} reached in Namer lookup"))
    if isinstance(t, Leaf):
        value = t.value
        if isinstance(value, NameBound):
            return Ok(Leaf(_weighted(value, weight)))
        state = lookup(value)
        if isinstance(state, Ok):
            return _bind(lookup, state.value, depth + 1, weight, max_depth)
        return state
    if t is Neg or t is Fail or t is Empty:
        return Ok(t)
    if isinstance(t, Union):
        if not t.trees:
            return Ok(Neg)
        if len(t.trees) == 1:
            return _bind(lookup, t.trees[0].tree, depth, t.trees[0].weight, max_depth)
        results = [(w.weight, _bind(lookup, w.tree, depth, w.weight, max_depth)) for w in t.trees]
        oks = [Weighted(w, s.value) for w, s in results if isinstance(s, Ok)]
        if oks:
            return Ok(Union(*oks).simplified)
        for _, s in results:
            if isinstance(s, Failed):
                return s
        return Pending
    if isinstance(t, Alt):
        for branch in t.trees:
            state = _bind(lookup, branch, depth, weight, max_depth)
            if not isinstance(state, Ok):
                return state
            if state.value is Neg:
                continue
            return state
        return Ok(Neg)
    raise TypeError(f"not a name tree: {t!r}")  # pragma: no cover


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
