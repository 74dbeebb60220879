"""A ``BoundDelegateTree`` message in the ``/delegator.json`` form (``type``, ``path``,
``dentry``, and ``delegate``/``alt``/``union``/``bound``/``message`` by type), for the
interpreter's delegate page."""

from __future__ import annotations

from typing import Any

from .convert import MAX_DEPTH, from_dentry, from_path
from .generated import delegator_pb2


def delegate_tree_json(msg: delegator_pb2.BoundDelegateTree, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        return {"type": "exception", "path": "/", "message": "tree nested too deeply"}
    path = from_path(msg.path)
    node = msg.WhichOneof("node")
    out: dict[str, Any] = {"type": node or "neg", "path": path.show}
    if msg.HasField("dentry"):
        dentry = from_dentry(msg.dentry)
        if dentry.prefix.elems != (b"/",):  # (not Dentry.nop)
            out["dentry"] = {"prefix": dentry.prefix.show, "dst": dentry.dst.show}
    if node == "neg":
        out["path"] = "~" if len(path) == 0 else path.show
    elif node == "fail":
        out["path"] = path.show if path.elems[:2] == (b"$", b"fail") else "!"
    elif node == "delegate":
        out["delegate"] = delegate_tree_json(msg.delegate, depth + 1)
    elif node == "alt":
        out["alt"] = [delegate_tree_json(t, depth + 1) for t in msg.alt.trees]
    elif node == "union":
        out["union"] = [
            {"weight": w.weight, "tree": delegate_tree_json(w.tree, depth + 1)}
            for w in msg.union.trees
        ]
    elif node == "leaf":
        out["bound"] = {
            "id": from_path(msg.leaf.id).show,
            "path": from_path(msg.leaf.residual).show,
        }
    elif node == "exception":
        out["message"] = msg.exception
    elif node == "transformation":
        out["name"] = msg.transformation.name
        out["tree"] = delegate_tree_json(msg.transformation.tree, depth + 1)
    return out


__all__ = ["delegate_tree_json"]
