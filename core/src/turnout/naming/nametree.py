"""Name trees (Finagle ``NameTree``): parsing, canonical printing, simplification, evaluation.

A tree is a :class:`Leaf`, an ordered fallback :class:`Alt`, a weighted :class:`Union` of
:class:`Weighted` branches, or one of the constants :data:`Neg` (``~``, no such name),
:data:`Fail` (``!``, stop and fail) and :data:`Empty` (``$``, exists without endpoints).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, ClassVar, Generic, TypeVar

from turnout.naming._scanner import Scanner, is_java_digit, parse_all
from turnout.naming.path import Path

T = TypeVar("T")
U = TypeVar("U")
#: trees are immutable: a tree of NameBound leaves is a tree of Name (Path | NameBound) leaves
T_co = TypeVar("T_co", covariant=True)

DEFAULT_WEIGHT = 1.0
#: Most parentheses a name tree may nest (the parser and tree walks recurse; Finagle has no
#: such limit but nothing real comes close).
MAX_PARENS = 50


class NameTree(ABC, Generic[T_co]):
    """Base class of name trees over leaf values of type ``T``; trees are immutable."""

    __slots__ = ()

    @classmethod
    def read(cls, text: str) -> NameTree[Path]:
        """Parse a name tree such as ``/a | 0.3*/b & 0.7*/c``.

        Raises :class:`turnout.errors.ParseError` on invalid text.
        """
        return parse_all(text, read_tree)

    @property
    def show(self) -> str:
        """The canonical text of this tree (lossy for weights and single-child nodes)."""
        return _show(self)

    def __str__(self) -> str:
        return _show(self)

    @property
    def simplified(self) -> NameTree[T_co]:
        """An evaluation-equivalent tree: Neg branches and empty or single-child nodes removed,
        an Alt cut after its first Fail, Fail dropped from Unions (spec §3.3). Idempotent; no
        flattening or de-duplication."""
        return self._simplify()

    def eval(self) -> frozenset[T_co] | None:
        """The set of leaf values this tree resolves to, or None for Neg and Fail."""
        result = self._eval()
        return result if isinstance(result, frozenset) else None

    @abstractmethod
    def map(self, fn: Callable[[T_co], U]) -> NameTree[U]:
        """This tree with every leaf value replaced by ``fn(value)``, keeping weights."""

    @abstractmethod
    def _simplify(self) -> NameTree[T_co]: ...

    @abstractmethod
    def _eval(self) -> NameTree[Any] | frozenset[T_co]:
        """``Neg``, ``Fail`` or the set of leaf values."""


class _Constant(NameTree[Any]):
    """A leafless tree; each subclass has exactly one instance."""

    __slots__ = ()
    symbol: ClassVar[str]

    def map(self, fn: Callable[[Any], U]) -> NameTree[U]:
        return self

    def _simplify(self) -> NameTree[Any]:
        return self

    def _eval(self) -> NameTree[Any] | frozenset[Any]:
        return self

    def __repr__(self) -> str:
        return type(self).__name__.lstrip("_")

    def __reduce__(self) -> str:
        return repr(self)  # pickle and copy keep the singleton


class _Neg(_Constant):
    """``~``: no such name here; alternatives fall back past it."""

    __slots__ = ()
    symbol = "~"


class _Fail(_Constant):
    """``!``: stop and fail; alternatives do not fall back past it."""

    __slots__ = ()
    symbol = "!"


class _Empty(_Constant):
    """``$``: the name exists but has no endpoints."""

    __slots__ = ()
    symbol = "$"

    def _eval(self) -> frozenset[Any]:
        return frozenset()


Neg: NameTree[Any] = _Neg()
Fail: NameTree[Any] = _Fail()
Empty: NameTree[Any] = _Empty()


@dataclass(frozen=True, slots=True, repr=False)
class Leaf(NameTree[T_co]):
    """A tree holding one value (a :class:`Path` when parsed)."""

    value: T_co

    def map(self, fn: Callable[[T_co], U]) -> NameTree[U]:
        return Leaf(fn(self.value))

    def _simplify(self) -> NameTree[T_co]:
        return self

    def _eval(self) -> frozenset[T_co]:
        return frozenset((self.value,))

    def __repr__(self) -> str:
        return f"Leaf({self.value!r})"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Alt(NameTree[T_co]):
    """Ordered fallback: the first alternative that is not Neg decides."""

    trees: tuple[NameTree[T_co], ...]

    def __init__(self, *trees: NameTree[T_co]) -> None:
        for tree in trees:
            if not isinstance(tree, NameTree):
                raise TypeError(f"Alt children must be NameTrees, got {tree!r}")
        object.__setattr__(self, "trees", trees)

    def map(self, fn: Callable[[T_co], U]) -> NameTree[U]:
        return Alt(*(tree.map(fn) for tree in self.trees))

    def _simplify(self) -> NameTree[T_co]:
        kept: list[NameTree[T_co]] = []
        for tree in self.trees:
            simple = tree._simplify()
            if simple is Fail:
                kept.append(Fail)
                break
            if simple is not Neg:
                kept.append(simple)
        return Neg if not kept else kept[0] if len(kept) == 1 else Alt(*kept)

    def _eval(self) -> NameTree[Any] | frozenset[T_co]:
        for tree in self.trees:
            result = tree._eval()
            if result is not Neg:
                return result
        return Neg

    def __repr__(self) -> str:
        return f"Alt({', '.join(map(repr, self.trees))})"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Weighted(Generic[T_co]):
    """A :class:`Union` branch: a tree with a load-balancing weight (default 1.0)."""

    weight: float
    tree: NameTree[T_co]

    def __init__(self, weight: float, tree: NameTree[T_co]) -> None:
        if not isinstance(tree, NameTree):
            raise TypeError(f"a Weighted branch needs a NameTree, got {tree!r}")
        object.__setattr__(self, "weight", float(weight))
        object.__setattr__(self, "tree", tree)

    def __repr__(self) -> str:
        return f"Weighted({self.weight!r}, {self.tree!r})"


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Union(NameTree[T_co]):
    """Weighted load-balanced union of :class:`Weighted` branches."""

    trees: tuple[Weighted[T_co], ...]

    def __init__(self, *weighted: Weighted[T_co]) -> None:
        for branch in weighted:
            if not isinstance(branch, Weighted):
                raise TypeError(f"Union children must be Weighted, got {branch!r}")
        object.__setattr__(self, "trees", weighted)

    def map(self, fn: Callable[[T_co], U]) -> NameTree[U]:
        return Union(*(Weighted(w.weight, w.tree.map(fn)) for w in self.trees))

    def _simplify(self) -> NameTree[T_co]:
        if len(self.trees) == 1:
            return self.trees[0].tree._simplify()
        kept = [Weighted(w.weight, s) for w in self.trees if _useful(s := w.tree._simplify())]
        return Neg if not kept else kept[0].tree if len(kept) == 1 else Union(*kept)

    def _eval(self) -> NameTree[Any] | frozenset[T_co]:
        if len(self.trees) == 1:
            return self.trees[0].tree._eval()
        sets = [r for w in self.trees if isinstance(r := w.tree._eval(), frozenset)]
        return frozenset().union(*sets) if sets else Neg

    def __repr__(self) -> str:
        return f"Union({', '.join(map(repr, self.trees))})"


def _useful(tree: NameTree[Any]) -> bool:
    return tree is not Neg and tree is not Fail


# --- canonical printing (Finagle's show / show1 / showSimple) ---

_CENTS = Decimal("0.01")
_WIDE = Context(prec=400)  # room for every finite double with two decimals


def format_weight(weight: float) -> str:
    """Java ``String.format("%.2f", weight)``: HALF_UP from the shortest decimal repr."""
    if math.isnan(weight):
        return "NaN"
    if math.isinf(weight):
        return "Infinity" if weight > 0 else "-Infinity"
    cents = Decimal(repr(weight)).quantize(_CENTS, rounding=ROUND_HALF_UP, context=_WIDE)
    return f"{cents:f}"


def _unwrap(tree: NameTree[Any]) -> NameTree[Any]:
    """Strip single-child Alt and Union wrappers."""
    while isinstance(tree, (Alt, Union)) and len(tree.trees) == 1:
        child = tree.trees[0]
        tree = child.tree if isinstance(child, Weighted) else child
    return tree


def _show(tree: NameTree[Any]) -> str:
    tree = _unwrap(tree)
    if isinstance(tree, Alt):
        return " | ".join(map(_show1, tree.trees))
    return _show1(tree)


def _show1(tree: NameTree[Any]) -> str:
    tree = _unwrap(tree)
    if isinstance(tree, Union):
        return " & ".join(_show_weight(w.weight) + _show_simple(w.tree) for w in tree.trees)
    if isinstance(tree, Alt):
        return f"({_show(tree)})"
    return _show_simple(tree)


def _show_simple(tree: NameTree[Any]) -> str:
    tree = _unwrap(tree)
    if isinstance(tree, (Alt, Union)):
        return f"({_show(tree)})"
    if isinstance(tree, Leaf):
        return str(tree.value)
    assert isinstance(tree, _Constant)
    return tree.symbol


def _show_weight(weight: float) -> str:
    return "" if weight == DEFAULT_WEIGHT else format_weight(weight) + "*"


# --- parsing (Finagle's parseTree / parseTree1 / parseWeighted / parseSimple) ---

_CONSTANTS: dict[str, NameTree[Any]] = {"!": Fail, "~": Neg, "$": Empty}


def read_tree(s: Scanner) -> NameTree[Path]:
    """``tree = tree1 ws {"|" tree1 ws}``; used by the dtab parser too."""
    trees = _separated(s, _read_tree1, "|")
    return trees[0] if len(trees) == 1 else Alt(*trees)


def _read_tree1(s: Scanner) -> NameTree[Path]:
    branches = _separated(s, _read_weighted, "&")
    return branches[0].tree if len(branches) == 1 else Union(*branches)


def _separated(s: Scanner, item: Callable[[Scanner], T], sep: str) -> list[T]:
    items = [item(s)]
    s.ws()
    while s.maybe_eat(sep):
        items.append(item(s))
        s.ws()
    return items


def _read_weighted(s: Scanner) -> Weighted[Path]:
    s.ws()
    weight = DEFAULT_WEIGHT
    if _is_number_char(s.peek()):
        weight = _read_number(s)
        s.ws()
        s.eat("*")
        s.ws()
    return Weighted(weight, _read_simple(s))


def _read_simple(s: Scanner) -> NameTree[Path]:
    s.ws()
    c = s.peek()
    if c == "(":
        if s.nesting >= MAX_PARENS:
            s.fail(f"at most {MAX_PARENS} nested parentheses")
        s.nesting += 1
        s.advance()
        tree = read_tree(s)
        s.ws()
        s.eat(")")
        s.nesting -= 1
        return tree
    if c == "/":
        return Leaf(Path(*s.path()))
    if c not in _CONSTANTS:
        s.fail("simple")
    s.advance()
    return _CONSTANTS[c]


def _is_number_char(c: str) -> bool:
    return c == "." or is_java_digit(c)


def _read_number(s: Scanner) -> float:
    start = s.pos
    seen_dot = False
    while _is_number_char(c := s.peek()):
        if c == ".":
            if seen_dot:
                s.fail("number char")
            seen_dot = True
        s.advance()
    text = s.text[start : s.pos]
    if text == ".":
        s.fail("weight", start)
    for i, c in enumerate(text):
        if not c.isascii():
            s.fail("ASCII digit", start + i)
    return float(text)
