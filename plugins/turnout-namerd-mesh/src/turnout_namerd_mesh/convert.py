"""Between turnout's naming values and the ``io.linkerd.mesh`` messages (Linkerd's
``io.linkerd.mesh.Converters`` and the conversions of its mesh services and client).

Every ``from_*`` function raises :class:`ValueError` with a message for a message that does
not describe a valid value (an empty path label, a dentry without prefix or dst, a tree node
that is not set); the services answer ``INVALID_ARGUMENT`` with it.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable
from typing import Any

from turnout.api import (
    WEIGHT_KEY,
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
    ip_literal,
)

from .generated import dtab_pb2, interpreter_pb2, resolver_pb2

#: the ``*`` element of dentry prefixes and the prefix class, taken from a parsed dentry:
#: turnout.api does not export them (yet)
_WILDCARD_PREFIX = Dentry.read("/* => /x").prefix
ANY: Any = _WILDCARD_PREFIX.elems[0]
Prefix: Any = type(_WILDCARD_PREFIX)

#: deepest tree converted (bound trees and dtab dsts nest far less; a hostile message cannot
#: exhaust the stack)
MAX_DEPTH = 100

#: metadata key of an endpoint's node name (Linkerd's ``Metadata.nodeName``)
NODE_NAME_KEY = "nodeName"


# -- paths and dtabs -----------------------------------------------------------------------------
def to_path(path: Path) -> dtab_pb2.Path:
    return dtab_pb2.Path(elems=list(path.elems))


def from_path(msg: dtab_pb2.Path) -> Path:
    elems = tuple(bytes(e) for e in msg.elems)
    if any(not e for e in elems):
        raise ValueError("a path label must not be empty")
    return Path(*elems)


def to_path_tree(tree: NameTree[Path]) -> dtab_pb2.PathNameTree:
    out = dtab_pb2.PathNameTree()
    if tree is Neg:
        out.neg.SetInParent()
    elif tree is Fail:
        out.fail.SetInParent()
    elif tree is Empty:
        out.empty.SetInParent()
    elif isinstance(tree, Leaf):
        out.leaf.id.CopyFrom(to_path(tree.value))
    elif isinstance(tree, Alt):
        out.alt.SetInParent()
        out.alt.trees.extend(to_path_tree(t) for t in tree.trees)
    elif isinstance(tree, Union):
        out.union.SetInParent()
        for w in tree.trees:
            out.union.trees.add(weight=w.weight, tree=to_path_tree(w.tree))
    else:  # pragma: no cover - every tree is one of the above
        raise TypeError(f"not a name tree: {tree!r}")
    return out


def from_path_tree(msg: dtab_pb2.PathNameTree, depth: int = 0) -> NameTree[Path]:
    if depth > MAX_DEPTH:
        raise ValueError(f"a name tree nests deeper than {MAX_DEPTH} levels")
    node = msg.WhichOneof("node")
    if node == "neg":
        return Neg
    if node == "fail":
        return Fail
    if node == "empty":
        return Empty
    if node == "leaf":
        if not msg.leaf.HasField("id"):
            raise ValueError("illegal name tree: a leaf without id")
        return Leaf(from_path(msg.leaf.id))
    if node == "alt":
        return Alt(*(from_path_tree(t, depth + 1) for t in msg.alt.trees))
    if node == "union":
        # (Linkerd drops branches without a tree)
        return Union(
            *(
                Weighted(_weight(w.weight), from_path_tree(w.tree, depth + 1))
                for w in msg.union.trees
                if w.HasField("tree")
            )
        )
    raise ValueError("illegal name tree: no node set")


def _weight(value: float) -> float:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a union weight must be a finite number >= 0, got {value}")
    return value


def to_dentry(dentry: Dentry) -> dtab_pb2.Dtab.Dentry:
    out = dtab_pb2.Dtab.Dentry()
    out.prefix.SetInParent()
    for elem in dentry.prefix.elems:
        if elem is ANY:
            out.prefix.elems.add().wildcard.SetInParent()
        else:
            out.prefix.elems.add(label=elem)
    out.dst.CopyFrom(to_path_tree(dentry.dst))
    return out


def from_dentry(msg: dtab_pb2.Dtab.Dentry) -> Dentry:
    if not msg.HasField("prefix") or not msg.HasField("dst"):
        raise ValueError("illegal dentry: it needs a prefix and a dst")
    elems: list[Any] = []
    for elem in msg.prefix.elems:
        which = elem.WhichOneof("value")
        if which == "wildcard":
            elems.append(ANY)
        elif which == "label" and elem.label:
            elems.append(bytes(elem.label))
        else:
            raise ValueError("illegal prefix element: neither a label nor a wildcard")
    return Dentry(Prefix(*elems), from_path_tree(msg.dst))


def to_dtab(dtab: Dtab) -> dtab_pb2.Dtab:
    return dtab_pb2.Dtab(dentries=[to_dentry(d) for d in dtab])


def from_dtab(msg: dtab_pb2.Dtab) -> Dtab:
    return Dtab(from_dentry(d) for d in msg.dentries)


# -- bound trees ---------------------------------------------------------------------------------
def to_bound_tree(tree: NameTree[NameBound]) -> interpreter_pb2.BoundNameTree:
    """Linkerd's ``InterpreterService.toBoundNameTree``."""
    out = interpreter_pb2.BoundNameTree()
    if tree is Neg:
        out.neg.SetInParent()
    elif tree is Fail:
        out.fail.SetInParent()
    elif tree is Empty:
        out.empty.SetInParent()
    elif isinstance(tree, Leaf):
        bound: NameBound = tree.value
        out.leaf.id.CopyFrom(to_path(bound.id))
        out.leaf.residual.CopyFrom(to_path(bound.residual))
    elif isinstance(tree, Alt):
        out.alt.SetInParent()
        out.alt.trees.extend(to_bound_tree(t) for t in tree.trees)
    elif isinstance(tree, Union):
        out.union.SetInParent()
        for w in tree.trees:
            out.union.trees.add(weight=w.weight, tree=to_bound_tree(w.tree))
    else:  # pragma: no cover
        raise TypeError(f"not a name tree: {tree!r}")
    return out


def from_bound_tree(
    msg: interpreter_pb2.BoundNameTree, addr_of: Callable[[Path], Var[Addr]], depth: int = 0
) -> NameTree[NameBound]:
    """Linkerd's client ``mkFromBoundNameTree``: each leaf's address set is ``addr_of(id)``."""
    if depth > MAX_DEPTH:
        raise ValueError(f"a bound tree nests deeper than {MAX_DEPTH} levels")
    node = msg.WhichOneof("node")
    if node == "neg":
        return Neg
    if node == "fail":
        return Fail
    if node == "empty":
        return Empty
    if node == "leaf":
        if not msg.leaf.HasField("id"):
            raise ValueError("illegal bound tree: a leaf without id")
        bound_id = from_path(msg.leaf.id)
        residual = from_path(msg.leaf.residual) if msg.leaf.HasField("residual") else Path.empty
        return Leaf(NameBound(bound_id, addr_of(bound_id), residual))
    if node == "alt":
        return Alt(*(from_bound_tree(t, addr_of, depth + 1) for t in msg.alt.trees))
    if node == "union":
        return Union(
            *(
                Weighted(_weight(w.weight), from_bound_tree(w.tree, addr_of, depth + 1))
                for w in msg.union.trees
                if w.HasField("tree")
            )
        )
    raise ValueError("No bound tree")


# -- replicas ------------------------------------------------------------------------------------
def to_replicas(addr: Addr) -> resolver_pb2.Replicas:
    """Linkerd's ``ResolverService.toReplicas``. Addresses whose host is not an IP literal
    are left out (Linkerd's endpoints carry resolved IPs only)."""
    out = resolver_pb2.Replicas()
    if isinstance(addr, AddrBound):
        out.bound.SetInParent()
        for a in addr.sorted():
            endpoint = to_endpoint(a)
            if endpoint is not None:
                out.bound.endpoints.append(endpoint)
        for key, value in addr.meta.items():
            out.bound.metadata[str(key)] = str(value)
    elif isinstance(addr, AddrFailed):
        out.failed.message = addr.cause
    elif addr is AddrNeg:
        out.neg.SetInParent()
    else:
        out.pending.SetInParent()
    return out


def to_endpoint(address: Address) -> resolver_pb2.Endpoint | None:
    literal = ip_literal(address.host)
    if literal is None:
        return None
    ip = ipaddress.ip_address(literal)
    family = resolver_pb2.Endpoint.INET6 if ip.version == 6 else resolver_pb2.Endpoint.INET4
    endpoint = resolver_pb2.Endpoint(inet_af=family, address=ip.packed, port=address.port)
    node_name = address.meta.get(NODE_NAME_KEY)
    endpoint.meta.SetInParent()
    if node_name is not None:
        endpoint.meta.nodeName = str(node_name)
    for key, value in address.meta.items():
        endpoint.metadata[str(key)] = str(value)
    return endpoint


def from_replicas(msg: resolver_pb2.Replicas) -> Addr:
    """Linkerd's client ``fromReplicas``: no result is ``Neg``; endpoints without an address
    or port are left out."""
    result = msg.WhichOneof("result")
    if result is None or result == "neg":
        return AddrNeg
    if result == "pending":
        return AddrPending
    if result == "failed":
        return AddrFailed(msg.failed.message or "unknown")
    addresses: list[Address] = []
    for e in msg.bound.endpoints:
        if len(e.address) not in (4, 16) or not 0 < e.port <= 65535:
            continue
        host = str(ipaddress.ip_address(bytes(e.address)))
        meta: dict[str, Any] = dict(e.metadata)
        if e.HasField("meta") and e.meta.nodeName and NODE_NAME_KEY not in meta:
            meta[NODE_NAME_KEY] = e.meta.nodeName
        if WEIGHT_KEY in meta:  # (sent as text: the weight is a number)
            try:
                meta[WEIGHT_KEY] = float(meta[WEIGHT_KEY])
            except ValueError:
                del meta[WEIGHT_KEY]
        addresses.append(Address(host, e.port, meta))
    return AddrBound(addresses, dict(msg.bound.metadata))


__all__ = [
    "ANY",
    "MAX_DEPTH",
    "Prefix",
    "from_bound_tree",
    "from_dentry",
    "from_dtab",
    "from_path",
    "from_path_tree",
    "from_replicas",
    "to_bound_tree",
    "to_dentry",
    "to_dtab",
    "to_endpoint",
    "to_path",
    "to_path_tree",
    "to_replicas",
]
