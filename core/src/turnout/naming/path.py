"""Paths: sequences of non-empty byte-string labels (Finagle ``Path``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from typing import ClassVar, overload

from turnout.naming._scanner import SHOWABLE_BYTES, parse_all


def show_label(label: bytes) -> str:
    """A label verbatim if every byte is showable, else every byte as ``\\xNN``."""
    if all(b in SHOWABLE_BYTES for b in label):
        return label.decode("ascii")
    return "".join(f"\\x{b:02x}" for b in label)


class Path:
    """An immutable path such as ``/s/users``; labels are non-empty ``bytes``.

    Paths compare, hash and order by their label tuple. The hash is computed once: paths are
    dictionary keys on the request path (routes, identifier caches).
    """

    __slots__ = ("_hash", "elems")

    elems: tuple[bytes, ...]
    _hash: int
    empty: ClassVar[Path]

    def __init__(self, *elems: bytes) -> None:
        for elem in elems:
            if not isinstance(elem, bytes) or not elem:
                raise ValueError(f"path labels must be non-empty bytes, got {elem!r}")
        object.__setattr__(self, "elems", elems)
        object.__setattr__(self, "_hash", hash(elems))

    @classmethod
    def _of_valid(cls, elems: tuple[bytes, ...]) -> Path:
        """A path from labels already known to be valid (taken from other paths)."""
        path = object.__new__(cls)
        object.__setattr__(path, "elems", elems)
        object.__setattr__(path, "_hash", hash(elems))
        return path

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}: Path is immutable")

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Path):
            return NotImplemented
        return self._hash == other._hash and self.elems == other.elems

    def __lt__(self, other: Path) -> bool:
        return self.elems < other.elems

    def __le__(self, other: Path) -> bool:
        return self.elems <= other.elems

    def __gt__(self, other: Path) -> bool:
        return self.elems > other.elems

    def __ge__(self, other: Path) -> bool:
        return self.elems >= other.elems

    def __reduce__(self) -> tuple[type[Path], tuple[bytes, ...]]:
        return (Path, self.elems)

    @classmethod
    def of(cls, *labels: str | bytes) -> Path:
        """A path from labels; ``str`` labels are UTF-8 encoded."""
        return cls(*(lb.encode() if isinstance(lb, str) else lb for lb in labels))

    @classmethod
    def read(cls, text: str) -> Path:
        """Parse a path such as ``/s/users`` (``/`` alone is the empty path).

        Raises :class:`turnout.errors.ParseError` on invalid text.
        """
        return cls(*parse_all(text, lambda s: s.path()))

    def __len__(self) -> int:
        return len(self.elems)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.elems)

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Path: ...

    def __getitem__(self, index: int | slice) -> bytes | Path:
        if isinstance(index, slice):
            return Path._of_valid(self.elems[index])
        return self.elems[index]

    def __add__(self, other: object) -> Path:
        if not isinstance(other, Path):
            return NotImplemented
        if not other.elems:
            return self
        return Path._of_valid(self.elems + other.elems)

    def take(self, n: int) -> Path:
        """The first ``n`` labels."""
        return self[: max(n, 0)]

    def drop(self, n: int) -> Path:
        """This path without its first ``n`` labels."""
        return self[max(n, 0) :]

    def starts_with(self, prefix: Path) -> bool:
        """Whether ``prefix`` is an element-wise prefix of this path."""
        return self.elems[: len(prefix.elems)] == prefix.elems

    def labels(self) -> tuple[str, ...]:
        """The labels decoded as UTF-8 (undecodable bytes become surrogate escapes)."""
        return tuple(elem.decode("utf-8", errors="surrogateescape") for elem in self.elems)

    @property
    def show(self) -> str:
        """The canonical text of this path; :meth:`read` parses it back to an equal path."""
        return "/" + "/".join(map(show_label, self.elems))

    def __str__(self) -> str:
        return self.show

    def __repr__(self) -> str:
        return f"Path({self.show!r})"


Path.empty = Path()
