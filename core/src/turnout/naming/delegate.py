"""Delegation: explaining a binding step by step (Linkerd's ``DelegateTree``).

Unlike binding, delegation follows *every* alternative and keeps negative branches, so that an
operator sees why a name went where it went. This is the tree behind ``/delegator.json`` and
``turnout dtab delegate``; it is computed here so that the admin server and the CLI agree.
Algorithm and JSON shape: ``reference/naming-semantics.md`` §8.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from ..errors import BindingError
from .addr import AddrPending, addr_json
from .dtab import Dentry, Dtab
from .interpreter import NameInterpreter
from .namer import NameBound
from .nametree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union
from .path import Path
from .var import Failed, Ok, Pending, State, derive_activity

MAX_DEPTH = 100
NOP = Dentry.nop
_FAIL_PREFIX = Path.of("$", "fail")


@dataclass(frozen=True)
class DNode:
    """A node of a delegate tree. ``kind`` is the JSON ``type``; fields depend on it.

    ``children`` holds ``(weight, node)`` pairs (weight None outside unions); ``value`` is a
    :class:`NameBound` or :class:`Path` for leaves, and the message for exceptions.
    """

    kind: str
    path: Path
    dentry: Dentry = NOP
    children: tuple[tuple[float | None, DNode], ...] = ()
    value: Any = None

    def with_dentry(self, dentry: Dentry) -> DNode:
        return DNode(self.kind, self.path, dentry, self.children, self.value)

    @property
    def child(self) -> DNode:
        return self.children[0][1]

    def leaves(self) -> list[NameBound]:
        """Every bound leaf under this node."""
        if self.kind == "leaf" and isinstance(self.value, NameBound):
            return [self.value]
        return [b for _, c in self.children for b in c.leaves()]

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
            out["alt"] = [c.to_json() for _, c in self.children]
        elif self.kind == "union":
            out["union"] = [{"weight": w, "tree": c.to_json()} for w, c in self.children]
        elif self.kind == "leaf":
            bound = self.value
            out["bound"] = {
                "addr": addr_json(bound.addr.value),
                "id": str(bound.id),
                "path": str(bound.residual),
            }
        elif self.kind == "exception":
            out["message"] = self.value
        return out


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
        kids = tuple((None, _from_tree(path, dentry, t)) for t in tree.trees)
        return DNode("alt", path, dentry, kids)
    if isinstance(tree, Union):
        kids = tuple((w.weight, _from_tree(path, dentry, w.tree)) for w in tree.trees)
        return DNode("union", path, dentry, kids)
    raise TypeError(f"not a name tree: {tree!r}")  # pragma: no cover


class _Delegation:
    def __init__(self, interpreter: NameInterpreter, dtab: Dtab) -> None:
        self.interpreter = interpreter
        self.dtab = dtab

    def lookup(self, dentry: Dentry, path: Path) -> DNode:
        matches = [
            _from_tree(path, e, _rewrite(e, path))
            for e in reversed(self.dtab)
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
            return DNode("exception", path, dentry, value=_message(state.error))
        assert isinstance(state, Ok)
        if state.value is Neg:
            return DNode("neg", path, dentry)
        return _from_tree(path, dentry, state.value)

    def bind(self, depth: int, n: DNode) -> DNode:
        if depth > MAX_DEPTH:
            raise BindingError("Max recursion level reached.")
        if n.kind == "leaf":
            if isinstance(n.value, NameBound):
                return n
            return self.bind(depth + 1, self.lookup(n.dentry, n.value))
        if n.kind == "delegate":
            return DNode("delegate", n.path, n.dentry, ((None, self.bind(depth, n.child)),))
        if n.kind in ("alt", "union"):
            if not n.children:
                return DNode("neg", n.path, n.dentry)
            if len(n.children) == 1:
                return DNode("delegate", n.path, n.dentry, ((None, self.bind(depth, n.child)),))
            kids = tuple((w, self._guarded(depth, n, c)) for w, c in n.children)
            return DNode(n.kind, n.path, n.dentry, kids)
        return n  # neg, fail, empty, exception

    def _guarded(self, depth: int, parent: DNode, child: DNode) -> DNode:
        try:
            return self.bind(depth, child)
        except BindingError as e:
            return DNode("exception", parent.path, parent.dentry, value=_message(e))


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
        if n.kind == "union":
            kids = tuple((w, simplify(c)) for w, c in n.children)
            return DNode("union", n.path, n.dentry, kids)
        flat: list[tuple[float | None, DNode]] = []
        for _, c in n.children:
            s = simplify(c)
            if s.kind == "alt" and s.path == n.path:
                flat.extend(s.children)
            else:
                flat.append((None, s))
        return DNode("alt", n.path, n.dentry, tuple(flat))
    return n


def delegate_once(interpreter: NameInterpreter, dtab: Dtab, path: Path) -> State[DNode]:
    """One evaluation of the delegate tree; ``Pending`` while a namer lookup is pending.

    ``dtab`` is the whole dtab to use; an interpreter that owns a stored dtab has it
    prepended. Raises :class:`BindingError` when the recursion limit is hit outside any
    multi-branch node.
    """
    stored = interpreter.stored_dtab()
    if not isinstance(stored, Ok):
        return stored
    full = stored.value + dtab if len(stored.value) else dtab
    root = DNode("leaf", Path.empty, NOP, value=path)
    try:
        return Ok(simplify(_Delegation(interpreter, full).bind(0, root)))
    except _Blocked:
        return Pending


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
    leaves = tree.leaves()
    with contextlib.suppress(TimeoutError):  # leaves still pending then show as pending
        await asyncio.wait_for(
            asyncio.gather(*(b.addr.changes(lambda a: a is not AddrPending) for b in leaves)),
            max(deadline - loop.time(), 0.001),
        )
    return tree


__all__ = ["DNode", "delegate", "delegate_once", "simplify"]
