"""Delegation: explaining a binding step by step (Linkerd's ``DelegateTree``).

Unlike binding, delegation follows *every* alternative and keeps negative branches, so that an
operator sees why a name went where it went. This is the tree behind ``/delegator.json`` and
``turnout dtab delegate``; it is computed here so that the admin server and the CLI agree.
Algorithm and JSON shape: ``reference/naming-semantics.md`` §8.

Delegation binds every alternative, so a small dtab can describe a huge tree
(``/s0=>/s1 | /s1; /s1=>/s2 | /s2; ...``). The work is bounded like binding's: the same path
under the same dentry at the same depth is delegated once and its subtree shared, the tree may
hold at most :data:`MAX_DELEGATE_NODES` nodes (shared subtrees counted expanded, since the JSON
expands them) and at most :data:`~turnout.naming.binding.MAX_NESTING` nested alternatives or
unions. Beyond that the unexplored branches become ``exception`` nodes saying so and the root
carries a ``note`` (:data:`TRUNCATED_NOTE`): the explainer answers, truncated, instead of
blocking the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import BindingError
from .addr import AddrPending, addr_json
from .binding import MAX_NESTING, tree_size
from .dtab import Dentry, Dtab
from .interpreter import NameInterpreter
from .namer import NameBound
from .nametree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union
from .path import Path
from .var import Failed, Ok, Pending, State, derive_activity, not_ok

MAX_DEPTH = 100
#: Most nodes a delegate tree may hold (shared subtrees counted expanded); the rest is cut.
#: Lower than the binding limit: every node is rendered (JSON, text) for a human to read.
MAX_DELEGATE_NODES = 1_000
#: The root ``note`` of a truncated delegate tree (formatted with the node limit).
TRUNCATED_NOTE = (
    "Delegation truncated: the tree exceeds the limit of {limit} nodes or {nesting} nested "
    "alternatives/unions; the branches not explored are shown as exception nodes"
)
NOP = Dentry.nop
_FAIL_PREFIX = Path.of("$", "fail")


@dataclass(frozen=True)
class DNode:
    """A node of a delegate tree. ``kind`` is the JSON ``type``; fields depend on it.

    ``children`` holds ``(weight, node)`` pairs (weight None outside unions); ``value`` is a
    :class:`NameBound` or :class:`Path` for leaves, the message for exceptions, and the
    bound name before the transformation for ``transformation`` nodes (whose ``name`` is the
    transformer's kind and whose child is the transformed tree). ``note``
    is set on the root of a truncated tree only. Subtrees may be shared (the same object in
    several places); every walk over a tree sees them expanded.
    """

    kind: str
    path: Path
    dentry: Dentry = NOP
    children: tuple[tuple[float | None, DNode], ...] = ()
    value: Any = None
    note: str | None = None
    name: str | None = None

    def with_dentry(self, dentry: Dentry) -> DNode:
        return replace(self, dentry=dentry)

    def with_note(self, note: str | None) -> DNode:
        return replace(self, note=note)

    @property
    def child(self) -> DNode:
        return self.children[0][1]

    def leaves(self) -> list[NameBound]:
        """Every bound leaf under this node, in order (a shared leaf once per place)."""
        out: list[NameBound] = []
        stack: list[DNode] = [self]
        while stack:
            node = stack.pop()
            if node.kind == "leaf" and isinstance(node.value, NameBound):
                out.append(node.value)
            else:
                stack.extend(c for _, c in reversed(node.children))
        return out

    def to_json(self) -> dict[str, Any]:
        """The Linkerd ``/delegator.json`` form of this tree (addresses as currently known)."""
        out: dict[str, Any] = {"type": self.kind}
        if self.kind == "neg":
            out["path"] = "~" if len(self.path) == 0 else str(self.path)
        elif self.kind == "fail":
            out["path"] = str(self.path) if self.path.starts_with(_FAIL_PREFIX) else "!"
        else:
            out["path"] = str(self.path)
        if self.dentry != NOP:
            out["dentry"] = {"prefix": str(self.dentry.prefix), "dst": str(self.dentry.dst)}
        if self.kind == "delegate":
            out["delegate"] = self.child.to_json()
        elif self.kind == "alt":
            alt: list[dict[str, Any]] = []
            for _, c in self.children:  # (loops, not comprehensions: one frame per level)
                alt.append(c.to_json())
            out["alt"] = alt
        elif self.kind == "union":
            union: list[dict[str, Any]] = []
            for w, c in self.children:
                union.append({"weight": w, "tree": c.to_json()})
            out["union"] = union
        elif self.kind == "leaf":
            out["bound"] = _bound_json(self.value)
        elif self.kind == "transformation":
            out["name"] = self.name
            if isinstance(self.value, NameBound):
                out["bound"] = _bound_json(self.value)
            out["tree"] = self.child.to_json()
        elif self.kind == "exception":
            out["message"] = self.value
        if self.note is not None:
            out["note"] = self.note
        return out


def _bound_json(bound: NameBound) -> dict[str, Any]:
    return {"addr": addr_json(bound.addr.value), "id": str(bound.id), "path": str(bound.residual)}


def map_bound_leaves(node: DNode, fn: Callable[[DNode], State[DNode]]) -> State[DNode]:
    """``node`` with every bound leaf replaced by ``fn(leaf)`` (a shared subtree is mapped
    once and stays shared); the first state of ``fn`` that is not Ok is returned instead."""
    memo: dict[int, DNode] = {}

    def walk(n: DNode) -> DNode:
        done = memo.get(id(n))
        if done is not None:
            return done
        out: DNode
        if n.kind == "leaf" and isinstance(n.value, NameBound):
            state = fn(n)
            if not isinstance(state, Ok):
                raise _NotOk(state)
            out = state.value
        elif n.children:
            out = replace(n, children=tuple((w, walk(c)) for w, c in n.children))
        else:
            out = n
        memo[id(n)] = out
        return out

    try:
        return Ok(walk(node))
    except _NotOk as e:
        return e.state


class _NotOk(Exception):
    def __init__(self, state: State[Any]) -> None:
        self.state = state


def _rewrite(entry: Dentry, path: Path) -> NameTree[Path]:
    rest = path.drop(len(entry.prefix))
    return entry.dst.map(lambda q: q + rest)


class _Blocked(Exception):
    """A lookup is pending; the delegation is retried when it changes."""


def _from_tree(path: Path, dentry: Dentry, tree: NameTree[Any]) -> DNode:
    if tree is Empty:
        return DNode("empty", path, dentry)
    if tree is Fail:
        return DNode("fail", path, dentry)
    if tree is Neg:
        return DNode("neg", Path.empty, dentry)
    if isinstance(tree, Leaf):
        return DNode("leaf", path, dentry, value=tree.value)
    if isinstance(tree, Alt):
        alts: tuple[tuple[float | None, DNode], ...] = tuple(
            (None, _from_tree(path, dentry, t)) for t in tree.trees
        )
        return DNode("alt", path, dentry, alts)
    if isinstance(tree, Union):
        kids = tuple((w.weight, _from_tree(path, dentry, w.tree)) for w in tree.trees)
        return DNode("union", path, dentry, kids)
    raise TypeError(f"not a name tree: {tree!r}")  # pragma: no cover


class _Delegation:
    """One delegation: the dtab, the work done so far and the subtrees already delegated."""

    def __init__(self, interpreter: NameInterpreter, dtab: Dtab, max_nodes: int) -> None:
        self.interpreter = interpreter
        self.dtab = dtab
        self.max_nodes = max_nodes
        #: nodes produced so far, shared subtrees counted once per reference
        self.used = 0
        self.truncated = False
        #: the deepest alt/union nesting reached so far (a shared subtree's own nesting is
        #: its deepest minus the nesting it was delegated at)
        self.deepest = 0
        #: (path, id(dentry), depth) -> (tree or recursion error message, size, nesting);
        #: every dentry comes from ``dtab`` (or is NOP): its id is stable in a delegation
        self.memo: dict[tuple[Path, int, int], tuple[DNode | str, int, int]] = {}

    def lookup(self, dentry: Dentry, path: Path) -> DNode:
        matches: list[DNode] = []
        for e in self.dtab.candidates(path):
            if e.prefix.matches(path):
                # (what a lookup builds counts: a wide dst is rebuilt for every lookup)
                self.used += tree_size(e.dst)
                matches.append(_from_tree(path, e, _rewrite(e, path)))
        if len(matches) == 1:
            return DNode("delegate", path, dentry, ((None, matches[0]),))
        if matches:
            return DNode("alt", path, dentry, tuple((None, m) for m in matches))
        state = self.interpreter.namer_lookup(path)
        if state is Pending:
            raise _Blocked
        if isinstance(state, Failed):
            return DNode("exception", path, dentry, value=_message(state.error))
        assert isinstance(state, Ok)
        if state.value is Neg:
            return DNode("neg", path, dentry)
        self.used += tree_size(state.value)
        return _from_tree(path, dentry, state.value)

    def cut(self, n: DNode, why: str) -> DNode:
        """What stands for a subtree that is not explored."""
        self.truncated = True
        return DNode("exception", n.path, n.dentry, value=f"Delegation truncated: {why}")

    @property
    def too_large(self) -> str:
        return f"the tree exceeds the limit of {self.max_nodes} nodes"

    def bind(self, depth: int, n: DNode, nesting: int = 0) -> DNode:
        if depth > MAX_DEPTH:
            raise BindingError("Max recursion level reached.")
        if self.used >= self.max_nodes:
            return self.cut(n, self.too_large)
        self.used += 1
        if n.kind == "leaf":
            if isinstance(n.value, NameBound):
                return n
            return self.bind_path(depth, n, nesting)
        if n.kind == "delegate":
            kid = self.bind(depth, n.child, nesting)
            return DNode("delegate", n.path, n.dentry, ((None, kid),))
        if n.kind in ("alt", "union"):
            if not n.children:
                return DNode("neg", n.path, n.dentry)
            if len(n.children) == 1:
                kid = self.bind(depth, n.child, nesting)
                return DNode("delegate", n.path, n.dentry, ((None, kid),))
            if nesting >= MAX_NESTING:
                return self.cut(n, _TOO_DEEP)
            self.deepest = max(self.deepest, nesting + 1)
            kids: list[tuple[float | None, DNode]] = []
            for i, (w, c) in enumerate(n.children):
                if self.used >= self.max_nodes:  # one node for all the branches left
                    rest = n.children[i:]
                    more = f"{self.too_large}; {len(rest)} more branches not shown"
                    weight = sum(x or 0.0 for x, _ in rest) if n.kind == "union" else None
                    kids.append((weight, self.cut(n, more)))
                    break
                try:
                    kid = self.bind(depth, c, nesting + 1)
                except BindingError as e:
                    kid = DNode("exception", n.path, n.dentry, value=_message(e))
                kids.append((w, kid))
            return DNode(n.kind, n.path, n.dentry, tuple(kids))
        return n  # neg, fail, empty, exception

    def bind_path(self, depth: int, n: DNode, nesting: int) -> DNode:
        """A leaf still holding a path: look it up and delegate the result, once per
        (path, dentry, depth); a repeat shares the subtree (and counts its size again)."""
        key = (n.value, id(n.dentry), depth)
        hit = self.memo.get(key)
        if hit is not None:
            result, size, height = hit
            if self.used + size > self.max_nodes:
                return self.cut(n, self.too_large)
            if nesting + height > MAX_NESTING:
                return self.cut(n, _TOO_DEEP)
            self.used += size
            self.deepest = max(self.deepest, nesting + height)
            if isinstance(result, str):
                raise BindingError(result)
            return result
        start, outer, self.deepest = self.used, self.deepest, nesting
        try:
            node: DNode | str = self.bind(depth + 1, self.lookup(n.dentry, n.value), nesting)
        except BindingError as e:
            node = str(e)
        self.memo[key] = (node, self.used - start, self.deepest - nesting)
        self.deepest = max(outer, self.deepest)
        if isinstance(node, str):
            raise BindingError(node)
        return node


_TOO_DEEP = f"more than {MAX_NESTING} nested alternatives or unions"


def _message(error: BaseException) -> str:
    return str(error) or type(error).__name__


def simplify(n: DNode) -> DNode:
    """Linkerd's ``DelegateTree.simplify`` (§8.2)."""
    if n.kind == "delegate":
        s = simplify(n.child)
        if s.kind not in ("neg", "fail", "empty") and s.path == n.path:
            return s.with_dentry(n.dentry)
        return DNode("delegate", n.path, n.dentry, ((None, s),))
    if n.kind in ("alt", "union"):
        if not n.children:
            return DNode("neg", n.path, n.dentry)
        if len(n.children) == 1:
            return simplify(DNode("delegate", n.path, n.dentry, n.children))
        kids: list[tuple[float | None, DNode]] = []
        for w, c in n.children:  # (a loop, not a comprehension: one frame per level)
            s = simplify(c)
            if n.kind == "alt" and s.kind == "alt" and s.path == n.path:
                kids.extend(s.children)
            else:
                kids.append((w, s))
        return DNode(n.kind, n.path, n.dentry, tuple(kids))
    return n


def delegate_once(
    interpreter: NameInterpreter,
    dtab: Dtab,
    path: Path,
    *,
    max_nodes: int = MAX_DELEGATE_NODES,
) -> State[DNode]:
    """One evaluation of the delegate tree; ``Pending`` while a namer lookup is pending.

    ``dtab`` is the whole dtab to use; an interpreter that owns a stored dtab has it
    prepended. Raises :class:`BindingError` when the recursion limit is hit outside any
    multi-branch node. A tree beyond ``max_nodes`` nodes is truncated: the root's ``note``
    says so (see the module docstring).
    """
    stored = interpreter.stored_dtab()
    if not isinstance(stored, Ok):
        return not_ok(stored)
    full = stored.value + dtab if len(stored.value) else dtab
    root = DNode("leaf", Path.empty, NOP, value=path)
    delegation = _Delegation(interpreter, full, max_nodes)
    try:
        tree = simplify(delegation.bind(0, root))
    except _Blocked:
        return Pending
    if delegation.truncated:
        note = TRUNCATED_NOTE.format(limit=max_nodes, nesting=MAX_NESTING)
        tree = tree.with_note(note)
    # an interpreter's transformers (routers[].interpreter.transformers) show as nodes
    return interpreter.transform_delegate(tree)


async def delegate(
    interpreter: NameInterpreter, dtab: Dtab, path: Path, *, timeout: float = 2.0
) -> DNode:
    """The delegate tree of ``path``, waiting up to ``timeout`` for pending lookups and for
    the first address set of each bound leaf. Raises :class:`TimeoutError` on a lookup that
    stays pending, and :class:`BindingError` on too deep a recursion."""
    activity = derive_activity(lambda: delegate_once(interpreter, dtab, path))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    tree = await activity.wait(timeout)
    leaves = list({id(b): b for b in tree.leaves()}.values())  # (shared leaves once)
    with contextlib.suppress(TimeoutError):  # leaves still pending then show as pending
        await asyncio.wait_for(
            asyncio.gather(*(b.addr.changes(lambda a: a is not AddrPending) for b in leaves)),
            max(deadline - loop.time(), 0.001),
        )
    return tree


__all__ = [
    "MAX_DELEGATE_NODES",
    "TRUNCATED_NOTE",
    "DNode",
    "delegate",
    "delegate_once",
    "map_bound_leaves",
    "simplify",
]
