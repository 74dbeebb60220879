"""Finagle naming: paths, dtabs, name trees, binding and delegation.

``from turnout.naming import Path, Dtab, Dentry, NameTree`` and ``X.read(text)`` /
``str(x)`` follow Finagle exactly (``reference/naming-semantics.md``). The dynamic side
(:class:`Var`, :class:`Activity`, :class:`Addr`, :class:`Namer`, interpreters) carries
discovery updates to whatever is bound.
"""

from .addr import (
    Addr,
    AddrBound,
    Address,
    AddrFailed,
    AddrNeg,
    AddrPending,
    addr_json,
)
from .binding import MAX_BIND_NODES, MAX_DEPTH, MAX_NESTING, NameTreeTooLarge, bind_once, resolve
from .delegate import MAX_DELEGATE_NODES, DNode, delegate, delegate_once
from .dtab import (
    ANY,
    MAX_REQUEST_DTAB_BYTES,
    MAX_REQUEST_DTAB_ENTRIES,
    AnyElem,
    Dentry,
    Dtab,
    Prefix,
)
from .inet import InetResolver
from .interpreter import (
    ConfiguredNamersInterpreter,
    DtabFileInterpreter,
    GlobalNamer,
    NameInterpreter,
)
from .matcher import PathMatcher
from .namer import Name, NameBound, Namer
from .nametree import Alt, Empty, Fail, Leaf, NameTree, Neg, Union, Weighted
from .path import Path
from .var import Activity, Failed, Ok, Pending, State, Var, derive, derive_activity

__all__ = [
    "ANY",
    "MAX_BIND_NODES",
    "MAX_DELEGATE_NODES",
    "MAX_DEPTH",
    "MAX_NESTING",
    "MAX_REQUEST_DTAB_BYTES",
    "MAX_REQUEST_DTAB_ENTRIES",
    "Activity",
    "Addr",
    "AddrBound",
    "AddrFailed",
    "AddrNeg",
    "AddrPending",
    "Address",
    "Alt",
    "AnyElem",
    "ConfiguredNamersInterpreter",
    "DNode",
    "Dentry",
    "Dtab",
    "DtabFileInterpreter",
    "Empty",
    "Fail",
    "Failed",
    "GlobalNamer",
    "InetResolver",
    "Leaf",
    "Name",
    "NameBound",
    "NameInterpreter",
    "NameTree",
    "NameTreeTooLarge",
    "Namer",
    "Neg",
    "Ok",
    "Path",
    "PathMatcher",
    "Pending",
    "Prefix",
    "State",
    "Union",
    "Var",
    "Weighted",
    "addr_json",
    "bind_once",
    "delegate",
    "delegate_once",
    "derive",
    "derive_activity",
    "resolve",
]
