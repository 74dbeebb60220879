"""Wire forms of namerd's HTTP API: dtabs (JSON and text), bound trees and address sets.

These follow Linkerd's ``io.buoyant.namerd.iface`` exactly:

- a dtab as JSON is a list of dentries ``[{"prefix": "/svc", "dst": "/#/io.l5d.fs"}]``; as
  text (``application/dtab``, ``text/plain``) it is ``Dtab.show`` (``/svc=>/#/io.l5d.fs``);
- a bound tree (``/api/1/bind``) is a delegate-tree node without ``path`` fields:
  ``{"type": "leaf", "bound": {"addr": <addr>, "id": "/#/io.l5d.fs/web", "path": "/"}}``,
  ``{"type": "alt", "alt": [...]}``, ``{"type": "union", "union": [{"weight": 1.0,
  "tree": ...}]}``, ``{"type": "neg"}``, ``{"type": "fail"}``, ``{"type": "empty"}``;
- an address set (``/api/1/addr``) is ``{"type": "bound", "addrs": [{"ip", "port",
  "meta"}], "meta": {}}``, ``{"type": "neg"}``, ``{"type": "pending"}`` or
  ``{"type": "failed", "cause": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..errors import ParseError
from ..naming import (
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    AddrPending,
    Alt,
    Dentry,
    Dtab,
    Empty,
    Fail,
    Leaf,
    NameBound,
    NameTree,
    Neg,
    Path,
    Union,
    Var,
    Weighted,
    addr_json,
)
from ..naming.dtab import Prefix

JSON = "application/json"
DTAB = "application/dtab"
TEXT = "text/plain"


class DtabBodyError(ValueError):
    """A dtab body that does not parse; the message says where."""


# -- dtabs -------------------------------------------------------------------------------------
def dtab_to_json(dtab: Dtab) -> list[dict[str, str]]:
    return [{"prefix": e.prefix.show, "dst": e.dst.show} for e in dtab]


def write_dtab(dtab: Dtab, media_type: str) -> str:
    """The body of a dtab in ``media_type`` (JSON or text), newline-terminated as Linkerd's."""
    if media_type == JSON:
        return json.dumps(dtab_to_json(dtab)) + "\n"
    return dtab.show + "\n"


def read_dtab(body: bytes, media_type: str) -> Dtab:
    """Parse a request body; :class:`DtabBodyError` with the position of the problem."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DtabBodyError(f"the body is not UTF-8: {e}") from None
    if media_type != JSON:
        try:
            return Dtab.read(text.strip())
        except ParseError as e:
            raise DtabBodyError(f"Invalid dtab: {e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise DtabBodyError(f"Invalid JSON dtab: {e}") from None
    if not isinstance(data, list):
        raise DtabBodyError("Invalid JSON dtab: expected a list of {prefix, dst} objects")
    entries: list[Dentry] = []
    for i, item in enumerate(data):
        if (
            not isinstance(item, dict)
            or set(item) != {"prefix", "dst"}
            or not all(isinstance(v, str) for v in item.values())
        ):
            raise DtabBodyError(
                f"The dtab contains invalid dentries: entry {i} must be "
                f'{{"prefix": "<prefix>", "dst": "<name tree>"}}, got {json.dumps(item)}'
            )
        try:
            prefix = Prefix.read(item["prefix"])
        except ParseError as e:
            raise DtabBodyError(f"Invalid dtab: entry {i} prefix: {e}") from None
        try:
            dst = NameTree.read(item["dst"])
        except ParseError as e:
            raise DtabBodyError(f"Invalid dtab: entry {i} dst: {e}") from None
        entries.append(Dentry(prefix, dst))
    return Dtab(entries)


def accept_media_type(accept: str) -> str:
    """The dtab media type to answer with for an ``Accept`` header (Linkerd's
    ``DtabCodec.accept``: the first type it knows, JSON by default)."""
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if media in (JSON, DTAB, TEXT):
            return media
    return JSON


def body_media_type(content_type: str) -> str | None:
    """The codec of a request ``Content-Type``, or None when it is not one namerd reads."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media if media in (JSON, DTAB, TEXT) else None


# -- bound trees -------------------------------------------------------------------------------
def bound_tree_to_json(tree: NameTree[NameBound]) -> dict[str, Any]:
    """A bound tree in ``/api/1/bind`` form (see the module docstring)."""
    if isinstance(tree, Leaf):
        b = tree.value
        return {
            "type": "leaf",
            "bound": {"addr": addr_json(b.addr.value), "id": b.id.show, "path": b.residual.show},
        }
    if isinstance(tree, Alt):
        return {"type": "alt", "alt": [bound_tree_to_json(t) for t in tree.trees]}
    if isinstance(tree, Union):
        return {
            "type": "union",
            "union": [{"weight": w.weight, "tree": bound_tree_to_json(w.tree)} for w in tree.trees],
        }
    if tree is Neg:
        return {"type": "neg"}
    if tree is Fail:
        return {"type": "fail"}
    if tree is Empty:
        return {"type": "empty"}
    raise TypeError(f"not a bound tree: {tree!r}")


def bound_tree_from_json(
    data: Any, addr_of: Callable[[Path], Var[Addr]], depth: int = 0
) -> NameTree[NameBound]:
    """Read a bound tree written by :func:`bound_tree_to_json`; each leaf's address set is
    ``addr_of(id)``. Raises :class:`ValueError` on anything else."""
    if depth > 100:
        raise ValueError("bound tree nested too deeply")
    if not isinstance(data, dict):
        raise ValueError(f"expected a tree object, got {data!r}")
    kind = data.get("type")
    if kind == "leaf":
        bound = data.get("bound")
        if not isinstance(bound, dict) or not isinstance(bound.get("id"), str):
            raise ValueError(f"a leaf needs bound.id: {data!r}")
        bound_id = Path.read(bound["id"])
        residual = Path.read(bound.get("path") or "/")
        return Leaf(NameBound(bound_id, addr_of(bound_id), residual))
    if kind == "alt":
        return Alt(*(bound_tree_from_json(t, addr_of, depth + 1) for t in _list(data, "alt")))
    if kind == "union":
        branches = []
        for w in _list(data, "union"):
            if not isinstance(w, dict):
                raise ValueError(f"a union branch must be an object: {w!r}")
            weight = w.get("weight", 1.0)
            if not isinstance(weight, int | float) or isinstance(weight, bool):
                raise ValueError(f"a union weight must be a number: {w!r}")
            branches.append(
                Weighted(weight, bound_tree_from_json(w.get("tree"), addr_of, depth + 1))
            )
        return Union(*branches)
    if kind == "neg":
        return Neg
    if kind == "fail":
        return Fail
    if kind == "empty":
        return Empty
    raise ValueError(f"unknown tree type {kind!r}")


def _list(data: dict[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if not isinstance(value, list):
        raise ValueError(f"'{key}' must be a list: {data!r}")
    return value


def addr_from_json(data: Any) -> Addr:
    """Read an address set written by :func:`turnout.naming.addr_json`."""
    if not isinstance(data, dict):
        raise ValueError(f"expected an addr object, got {data!r}")
    kind = data.get("type")
    if kind == "bound":
        addrs = data.get("addrs")
        if not isinstance(addrs, list):
            raise ValueError(f"a bound addr needs 'addrs': {data!r}")
        out = []
        for a in addrs:
            if (
                not isinstance(a, dict)
                or not isinstance(a.get("ip"), str)
                or not isinstance(a.get("port"), int)
            ):
                raise ValueError(f"an address needs ip and port: {a!r}")
            meta = a.get("meta")
            out.append(Address(a["ip"], a["port"], meta if isinstance(meta, dict) else None))
        meta = data.get("meta")
        return AddrBound(out, meta if isinstance(meta, dict) else None)
    if kind == "neg":
        return AddrNeg
    if kind == "pending":
        return AddrPending
    if kind == "failed":
        return AddrFailed(str(data.get("cause", "failed")))
    raise ValueError(f"unknown addr type {kind!r}")


__all__ = [
    "DTAB",
    "JSON",
    "TEXT",
    "DtabBodyError",
    "accept_media_type",
    "addr_from_json",
    "body_media_type",
    "bound_tree_from_json",
    "bound_tree_to_json",
    "dtab_to_json",
    "read_dtab",
    "write_dtab",
]
