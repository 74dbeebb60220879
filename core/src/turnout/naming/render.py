"""Human and JSON renderings of bound trees and delegate trees (CLI and admin)."""

from __future__ import annotations

from typing import Any

from .addr import Addr, AddrBound, AddrFailed, AddrNeg, addr_json
from .delegate import NOP, DNode
from .namer import NameBound
from .nametree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union
from .nametree import format_weight as _fmt


def bound_addr_json(addr: Addr) -> dict[str, Any]:
    """Addr for ``turnout dtab bind --json``: addresses as ``"ip:port"`` strings."""
    if isinstance(addr, AddrBound):
        return {"type": "bound", "addrs": [str(a) for a in addr.sorted()], "meta": dict(addr.meta)}
    return addr_json(addr)


def bound_tree_json(tree: NameTree[NameBound]) -> dict[str, Any]:
    """A bound tree as ``{"type": "leaf", "id", "residual", "addr"}``, ``{"type": "union",
    "trees": [{"weight", "tree"}]}``, ``neg``, ``fail`` or ``empty``."""
    if isinstance(tree, Leaf):
        b = tree.value
        return {
            "type": "leaf",
            "id": str(b.id),
            "residual": str(b.residual),
            "addr": bound_addr_json(b.addr.value),
        }
    if isinstance(tree, Union):
        return {
            "type": "union",
            "trees": [{"weight": w.weight, "tree": bound_tree_json(w.tree)} for w in tree.trees],
        }
    if isinstance(tree, Alt):  # not produced by binding, but render it faithfully
        return {"type": "alt", "trees": [bound_tree_json(t) for t in tree.trees]}
    if tree is Neg:
        return {"type": "neg"}
    if tree is Fail:
        return {"type": "fail"}
    if tree is Empty:
        return {"type": "empty"}
    raise TypeError(f"not a bound tree: {tree!r}")  # pragma: no cover


def describe_addr(addr: Addr) -> str:
    if isinstance(addr, AddrBound):
        if not addr.addresses:
            return "no endpoints"
        parts = []
        for a in addr.sorted():
            weight = a.meta.get("endpoint_addr_weight")
            parts.append(f"{a} (weight {weight})" if weight is not None else str(a))
        return ", ".join(parts)
    if isinstance(addr, AddrFailed):
        return f"failed: {addr.cause}"
    if addr is AddrNeg:
        return "no such name (neg)"
    return "pending"


def bound_tree_text(tree: NameTree[NameBound], indent: str = "") -> list[str]:
    """Indented lines describing a bound tree."""
    if isinstance(tree, Leaf):
        b = tree.value
        residual = f" residual {b.residual}" if len(b.residual) else ""
        return [f"{indent}{b.id}{residual} -> {describe_addr(b.addr.value)}"]
    if isinstance(tree, Union | Alt):
        label = "union (weighted split)" if isinstance(tree, Union) else "alt"
        lines = [f"{indent}{label}"]
        if isinstance(tree, Union):
            for w in tree.trees:
                sub = bound_tree_text(w.tree, indent + "    ")
                lines.append(f"{indent}  {_fmt(w.weight)} * {sub[0].lstrip()}")
                lines.extend(sub[1:])
        else:
            for t in tree.trees:
                lines.extend(bound_tree_text(t, indent + "  "))
        return lines
    words = {
        id(Neg): "~ (no route: negative)",
        id(Fail): "! (fail)",
        id(Empty): "$ (empty: no endpoints)",
    }
    return [indent + words[id(tree)]]


def delegate_text(node: DNode, indent: str = "") -> list[str]:
    """Indented lines explaining a delegate tree, one node per line (after the root's note,
    if the tree was truncated)."""
    if node.note is not None:
        return [f"{indent}note: {node.note}", *delegate_text(node.with_note(None), indent)]
    dentry = ""
    if node.dentry != NOP:
        dentry = f"  (via {node.dentry.prefix}=>{node.dentry.dst})"
    path = "~" if node.kind == "neg" and len(node.path) == 0 else str(node.path)
    kind = node.kind
    if kind == "leaf":
        b = node.value
        residual = f" residual {b.residual}" if len(b.residual) else ""
        return [
            f"{indent}{path}{dentry}",
            f"{indent}  => bound {b.id}{residual}: {describe_addr(b.addr.value)}",
        ]
    if kind == "neg":
        return [f"{indent}{path}{dentry}  => ~ no match"]
    if kind == "fail":
        return [f"{indent}{path}{dentry}  => ! fail"]
    if kind == "empty":
        return [f"{indent}{path}{dentry}  => $ empty (no endpoints)"]
    if kind == "exception":
        return [f"{indent}{path}{dentry}  => error: {node.value}"]
    if kind == "delegate":
        return [f"{indent}{path}{dentry}", *delegate_text(node.child, indent + "  ")]
    if kind == "transformation":
        return [
            f"{indent}{path}  (transformed by {node.name})",
            *delegate_text(node.child, indent + "  "),
        ]
    if kind == "alt":
        lines = [f"{indent}{path}{dentry}  (alternatives, first non-negative wins)"]
        for _, child in node.children:
            lines.extend(delegate_text(child, indent + "  | "))
        return lines
    lines = [f"{indent}{path}{dentry}  (weighted union)"]
    for weight, child in node.children:
        sub = delegate_text(child, indent + "    ")
        lines.append(f"{indent}  {_fmt(weight or 0.0)} * {sub[0].lstrip()}")
        lines.extend(sub[1:])
    return lines
