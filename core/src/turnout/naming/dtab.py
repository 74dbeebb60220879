"""Delegation tables (Finagle ``Dtab``): prefixes, dentries, parsing and lookup."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import ClassVar, final, overload

from turnout.naming._scanner import Scanner, is_label_char, parse_all
from turnout.naming.nametree import Alt, NameTree, Neg, read_tree
from turnout.naming.path import Path, show_label

#: Most bytes of dtab text one request may carry: every ``l5d-dtab`` and ``l5d-ctx-dtab``
#: header value together. A larger request is refused (HTTP 400).
MAX_REQUEST_DTAB_BYTES = 4096
#: Most dentries one request's dtab may hold (the headers' dentries together).
MAX_REQUEST_DTAB_ENTRIES = 100


@final
class AnyElem:
    """The ``*`` prefix element, matching exactly one label; its only instance is :data:`ANY`."""

    __slots__ = ()
    _instance: ClassVar[AnyElem]

    def __new__(cls) -> AnyElem:
        try:
            return cls._instance
        except AttributeError:
            cls._instance = object.__new__(cls)
            return cls._instance

    def __repr__(self) -> str:
        return "ANY"

    def __str__(self) -> str:
        return "*"

    def __reduce__(self) -> str:
        return "ANY"


ANY = AnyElem()

PrefixElem = bytes | AnyElem


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Prefix:
    """A dentry prefix: labels and ``*`` wildcards, matched against whole path elements."""

    elems: tuple[PrefixElem, ...]
    empty: ClassVar[Prefix]

    def __init__(self, *elems: PrefixElem) -> None:
        for elem in elems:
            if elem is not ANY and (not isinstance(elem, bytes) or not elem):
                raise ValueError(f"prefix elements must be ANY or non-empty bytes, got {elem!r}")
        object.__setattr__(self, "elems", elems)

    @classmethod
    def of(cls, *elems: str | PrefixElem) -> Prefix:
        """A prefix from literal labels (``str`` is UTF-8 encoded) and :data:`ANY`."""
        return cls(*(e.encode() if isinstance(e, str) else e for e in elems))

    @classmethod
    def read(cls, text: str) -> Prefix:
        """Parse a prefix such as ``/s/*/users``.

        Raises :class:`turnout.errors.ParseError` on invalid text.
        """
        return parse_all(text, _read_prefix)

    def __len__(self) -> int:
        return len(self.elems)

    def matches(self, path: Path) -> bool:
        """Whether the path starts with this prefix, element by element (``*`` = one label)."""
        elems = self.elems
        labels = path.elems
        if len(elems) > len(labels):
            return False
        if labels[: len(elems)] == elems:  # (the common case: no wildcard)
            return True
        return ANY in elems and all(
            elem is ANY or elem == label for elem, label in zip(elems, labels, strict=False)
        )

    @property
    def show(self) -> str:
        """The canonical text: ``*`` for a wildcard, ``\\x2a`` for a literal ``*`` label."""
        return "/" + "/".join("*" if isinstance(e, AnyElem) else show_label(e) for e in self.elems)

    def __str__(self) -> str:
        return self.show

    def __repr__(self) -> str:
        return f"Prefix({self.show!r})"


Prefix.empty = Prefix()


@dataclass(frozen=True, slots=True, repr=False)
class Dentry:
    """A delegation rule ``prefix => dst``."""

    prefix: Prefix
    dst: NameTree[Path]
    nop: ClassVar[Dentry]

    @classmethod
    def read(cls, text: str) -> Dentry:
        """Parse one entry such as ``/s => /$/inet/127.1/8080``.

        Raises :class:`turnout.errors.ParseError` on invalid text.
        """
        return parse_all(text, _read_dentry)

    @property
    def show(self) -> str:
        """The canonical text ``prefix=>dst``."""
        return f"{self.prefix.show}=>{self.dst.show}"

    def __str__(self) -> str:
        return self.show

    def __repr__(self) -> str:
        return f"Dentry.read({self.show!r})"


Dentry.nop = Dentry(Prefix(b"/"), Neg)


@dataclass(frozen=True, slots=True, init=False, repr=False)
class Dtab(Sequence[Dentry]):
    """An immutable sequence of dentries; later entries take precedence."""

    entries: tuple[Dentry, ...]
    #: built by the first lookup: the entries that may match a path, by its first label
    _index: _Index | None = field(init=False, compare=False, hash=False, repr=False)
    empty: ClassVar[Dtab]

    def __init__(self, entries: Iterable[Dentry] = ()) -> None:
        entries = tuple(entries)
        for entry in entries:
            if not isinstance(entry, Dentry):
                raise TypeError(f"Dtab entries must be Dentry, got {entry!r}")
        object.__setattr__(self, "entries", entries)
        object.__setattr__(self, "_index", None)

    @classmethod
    def read(cls, text: str) -> Dtab:
        """Parse ``dentry;dentry...`` (one trailing ``;`` allowed, ``""`` is empty).

        Raises :class:`turnout.errors.ParseError` on invalid text.
        """
        return parse_all(text, _read_dtab)

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Dentry]:
        return iter(self.entries)

    @overload
    def __getitem__(self, index: int) -> Dentry: ...

    @overload
    def __getitem__(self, index: slice) -> Dtab: ...

    def __getitem__(self, index: int | slice) -> Dentry | Dtab:
        if isinstance(index, slice):
            return Dtab(self.entries[index])
        return self.entries[index]

    def __add__(self, other: object) -> Dtab:
        if not isinstance(other, Dtab):
            return NotImplemented
        return Dtab(self.entries + other.entries)

    def lookup(self, path: Path) -> NameTree[Path]:
        """Rewrite ``path`` with every matching entry, the last entry first.

        No match gives ``Neg``, one match its rewritten dst, several an unsimplified ``Alt``.
        """
        matches = [_rewrite(e, path) for e in self.candidates(path) if e.prefix.matches(path)]
        if not matches:
            return Neg
        return matches[0] if len(matches) == 1 else Alt(*matches)

    def candidates(self, path: Path) -> Sequence[Dentry]:
        """The entries whose prefix may match ``path``, the last entry first.

        A superset of the matching entries (those whose first prefix element is the path's
        first label, a ``*`` or nothing), found without scanning the whole dtab: a binding may
        look up thousands of paths in a dtab of hundreds of entries.
        """
        index = self._index
        if index is None:
            index = _Index(self.entries)
            object.__setattr__(self, "_index", index)
        return index.candidates(path)

    @property
    def simplified(self) -> Dtab:
        """Every dst simplified; entries whose dst became ``Neg`` are dropped."""
        simple = (Dentry(e.prefix, e.dst.simplified) for e in self.entries)
        return Dtab(e for e in simple if e.dst is not Neg)

    def strip_prefix(self, other: Dtab) -> Dtab:
        """This dtab without ``other`` if ``other`` is an entry-wise prefix of it."""
        if self.entries[: len(other.entries)] != other.entries:
            return self
        return Dtab(self.entries[len(other.entries) :])

    @property
    def show(self) -> str:
        """The canonical text: entries joined by ``;``."""
        return ";".join(e.show for e in self.entries)

    def __str__(self) -> str:
        return self.show

    def __repr__(self) -> str:
        return f"Dtab.read({self.show!r})"


Dtab.empty = Dtab()


class _Index:
    """A dtab's entries by the first element of their prefix (see :meth:`Dtab.candidates`)."""

    __slots__ = ("by_label", "wild", "wild_entries")

    def __init__(self, entries: tuple[Dentry, ...]) -> None:
        #: label -> (position, entry) for prefixes starting with that label, last first
        self.by_label: dict[bytes, list[tuple[int, Dentry]]] = {}
        #: (position, entry) for prefixes that are empty or start with ``*``, last first
        self.wild: list[tuple[int, Dentry]] = []
        for pos in range(len(entries) - 1, -1, -1):
            entry = entries[pos]
            elems = entry.prefix.elems
            first = elems[0] if elems else ANY
            if isinstance(first, AnyElem):
                self.wild.append((pos, entry))
            else:
                self.by_label.setdefault(first, []).append((pos, entry))
        self.wild_entries = [e for _, e in self.wild]

    def candidates(self, path: Path) -> Sequence[Dentry]:
        own = self.by_label.get(path.elems[0]) if path.elems else None
        if not own:
            return self.wild_entries
        if not self.wild:
            return [e for _, e in own]
        return [e for _, e in sorted(own + self.wild, key=itemgetter(0), reverse=True)]


def _rewrite(entry: Dentry, path: Path) -> NameTree[Path]:
    suffix = path.drop(len(entry.prefix))
    return entry.dst.map(lambda p: p + suffix)


# --- parsing (Finagle's parseDentryPrefix / parseDentry / parseDtab) ---


def _read_prefix_elem(s: Scanner) -> PrefixElem:
    return ANY if s.maybe_eat("*") else s.label()


def _read_prefix(s: Scanner) -> Prefix:
    return Prefix(*s.elements(_is_prefix_elem_char, lambda: _read_prefix_elem(s)))


def _is_prefix_elem_char(c: str) -> bool:
    return is_label_char(c) or c == "*"


def _read_dentry(s: Scanner) -> Dentry:
    prefix = _read_prefix(s)
    s.ws()
    s.eat("=")
    s.eat(">")
    return Dentry(prefix, read_tree(s))


def _read_dtab(s: Scanner) -> Dtab:
    entries: list[Dentry] = []
    while True:
        s.ws()
        if not s.at_end:
            entries.append(_read_dentry(s))
            s.ws()
        if not s.maybe_eat(";"):
            return Dtab(entries)
