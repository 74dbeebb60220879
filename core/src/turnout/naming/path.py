"""Paths: sequences of non-empty byte-string labels (Finagle ``Path``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, overload

from turnout.naming._scanner import SHOWABLE_BYTES, parse_all


def show_label(label: bytes) -> str:
    """A label verbatim if every byte is showable, else every byte as ``\\xNN``."""
    if all(b in SHOWABLE_BYTES for b in label):
        return label.decode("ascii")
    return "".join(f"\\x{b:02x}" for b in label)


@dataclass(frozen=True, slots=True, order=True, init=False, repr=False)
class Path:
    """An immutable path such as ``/s/users``; labels are non-empty ``bytes``.

    Paths compare, hash and order by their label tuple.
    """

    elems: tuple[bytes, ...]
    empty: ClassVar[Path]

    def __init__(self, *elems: bytes) -> None:
        for elem in elems:
            if not isinstance(elem, bytes) or not elem:
                raise ValueError(f"path labels must be non-empty bytes, got {elem!r}")
        object.__setattr__(self, "elems", elems)

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
            return Path(*self.elems[index])
        return self.elems[index]

    def __add__(self, other: object) -> Path:
        if not isinstance(other, Path):
            return NotImplemented
        return Path(*self.elems, *other.elems)

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
