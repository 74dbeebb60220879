"""The delegate tree of ``Delegator.GetDelegateTree``: how a name tree is rewritten step by
step through a namespace's dtab and namerd's namers (Linkerd's ``DelegateTree``).

turnout computes the same tree for ``/delegator.json``, but that code is not part of
``turnout.api``; this module follows its algorithm (and its JSON shapes' node kinds) with the
public naming API: every matching dentry is followed (the last first, as an ``alt`` when
several match), a path no dentry matches is looked up in the namers, and negative branches are
kept. The work is bounded: at most :data:`MAX_NODES` nodes and :data:`MAX_DEPTH` rewrites deep;
past that a branch becomes an ``exception`` node saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from turnout.api import (
    Alt,
    Dentry,
    Dtab,
    Empty,
    Fail,
    Failed,
    Leaf,
    NameBound,
    NameInterpreter,
    NameTree,
    Neg,
    Ok,
    Path,
    Pending,
    State,
    Union,
)

from .convert import Prefix, to_dentry, to_path
from .generated import delegator_pb2

MAX_DEPTH = 100
MAX_NODES = 1_000
#: Finagle's ``Dentry.nop`` (prefix: the one label ``/``; dst: Neg): the dentry of the nodes
#: no dentry produced
NOP = Dentry(Prefix(b"/"), Neg)


@dataclass(frozen=True)
class DNode:
    """A delegate tree node: ``kind`` is neg, fail, empty, leaf, alt, union, delegate or
    exception; ``children`` are ``(weight, node)`` pairs; ``value`` is the leaf's
    :class:`NameBound` or :class:`Path`, or an exception's message."""

    kind: str
    path: Path
    dentry: Dentry = NOP
    children: tuple[tuple[float | None, DNode], ...] = ()
    value: Any = None


class _Blocked(Exception):
    """A namer lookup is pending."""


class _TooDeep(Exception):
    pass


def _from_tree(path: Path, dentry: Dentry, tree: NameTree[Any]) -> DNode:
    if tree is Empty:
        return DNode("empty", path, dentry)
    if tree is Fail:
        return DNode("fail", path, dentry)
    if tree is Neg:
        return DNode("neg", path, dentry)
    if isinstance(tree, Leaf):
        return DNode("leaf", path, dentry, value=tree.value)
    if isinstance(tree, Alt):
        return DNode(
            "alt", path, dentry, tuple((None, _from_tree(path, dentry, t)) for t in tree.trees)
        )
    if isinstance(tree, Union):
        kids = tuple((w.weight, _from_tree(path, dentry, w.tree)) for w in tree.trees)
        return DNode("union", path, dentry, kids)
    raise TypeError(f"not a name tree: {tree!r}")  # pragma: no cover


def _rewrite(entry: Dentry, path: Path) -> NameTree[Path]:
    rest = path.drop(len(entry.prefix))
    return entry.dst.map(lambda q: q + rest)


class _Delegation:
    def __init__(self, interpreter: NameInterpreter, dtab: Dtab) -> None:
        self.interpreter = interpreter
        self.dtab = dtab
        self.used = 0

    def lookup(self, dentry: Dentry, path: Path) -> DNode:
        matches = [
            _from_tree(path, e, _rewrite(e, path))
            for e in self.dtab.candidates(path)
            if e.prefix.matches(path)
        ]
        if len(matches) == 1:
            return DNode("delegate", path, dentry, ((None, matches[0]),))
        if matches:
            return DNode("alt", path, dentry, tuple((None, m) for m in matches))
        state = self.interpreter.namer_lookup(path)
        if state is Pending:
            raise _Blocked
        if isinstance(state, Failed):
            return DNode("exception", path, dentry, value=str(state.error) or "failed")
        assert isinstance(state, Ok)
        if state.value is Neg:
            return DNode("neg", path, dentry)
        return _from_tree(path, dentry, state.value)

    def bind(self, depth: int, n: DNode) -> DNode:
        if depth > MAX_DEPTH:
            raise _TooDeep
        self.used += 1
        if self.used > MAX_NODES:
            return DNode(
                "exception",
                n.path,
                n.dentry,
                value=f"Delegation truncated: the tree exceeds the limit of {MAX_NODES} nodes",
            )
        if n.kind == "leaf":
            if isinstance(n.value, NameBound):
                return n
            try:
                return self.bind(depth + 1, self.lookup(n.dentry, n.value))
            except _TooDeep:
                if depth == 0:
                    raise
                return DNode("exception", n.path, n.dentry, value="Max recursion level reached.")
        if n.kind in ("delegate", "alt", "union"):
            kids = tuple((w, self.bind(depth, c)) for w, c in n.children)
            return replace(n, children=kids)
        return n


def simplify(n: DNode) -> DNode:
    """Linkerd's ``DelegateTree.simplify``."""
    if n.kind == "delegate":
        s = simplify(n.children[0][1])
        if s.kind not in ("neg", "fail", "empty") and s.path == n.path:
            return replace(s, dentry=n.dentry)
        return replace(n, children=((None, s),))
    if n.kind in ("alt", "union"):
        if not n.children:
            return DNode("neg", n.path, n.dentry)
        if len(n.children) == 1:
            return simplify(DNode("delegate", n.path, n.dentry, n.children))
        kids: list[tuple[float | None, DNode]] = []
        for w, c in n.children:
            s = simplify(c)
            if n.kind == "alt" and s.kind == "alt" and s.path == n.path:
                kids.extend(s.children)
            else:
                kids.append((w, s))
        return replace(n, children=tuple(kids))
    return n


def delegate_once(interpreter: NameInterpreter, dtab: Dtab, tree: NameTree[Path]) -> State[DNode]:
    """The delegate tree of ``tree``; ``Pending`` while a namer lookup is pending. The
    interpreter's stored dtab (the namespace's) comes first, then ``dtab``."""
    stored = interpreter.stored_dtab()
    if not isinstance(stored, Ok):
        return stored  # type: ignore[return-value]  # Pending or Failed: no value inside
    full = stored.value + dtab if len(stored.value) else dtab
    root = _from_tree(Path.empty, NOP, tree)
    try:
        return Ok(simplify(_Delegation(interpreter, full).bind(0, root)))
    except _Blocked:
        return Pending
    except _TooDeep:
        return Failed(ValueError("Max recursion level reached."))


def to_delegate_tree(n: DNode) -> delegator_pb2.BoundDelegateTree:
    """Linkerd's ``DelegatorService.toDelegateTree``."""
    out = delegator_pb2.BoundDelegateTree()
    out.path.CopyFrom(to_path(n.path))
    out.dentry.CopyFrom(to_dentry(n.dentry))
    if n.kind == "neg":
        out.neg.SetInParent()
    elif n.kind == "fail":
        out.fail.SetInParent()
    elif n.kind == "empty":
        out.empty.SetInParent()
    elif n.kind == "exception":
        out.exception = (
            f"BoundDelegateTree Exception: {n.value or 'No underlying exception message'}"
        )
    elif n.kind == "delegate":
        out.delegate.CopyFrom(to_delegate_tree(n.children[0][1]))
    elif n.kind == "alt":
        out.alt.SetInParent()
        out.alt.trees.extend(to_delegate_tree(c) for _, c in n.children)
    elif n.kind == "union":
        out.union.SetInParent()
        for w, c in n.children:
            out.union.trees.add(weight=w if w is not None else 1.0, tree=to_delegate_tree(c))
    elif n.kind == "leaf" and isinstance(n.value, NameBound):
        out.leaf.id.CopyFrom(to_path(n.value.id))
        out.leaf.residual.CopyFrom(to_path(n.value.residual))
    else:  # a leaf still holding a path (not reached after binding): Linkerd writes Neg
        out.neg.SetInParent()
    return out


__all__ = ["MAX_DEPTH", "MAX_NODES", "DNode", "delegate_once", "simplify", "to_delegate_tree"]
