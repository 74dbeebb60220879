"""The hand-written recursive-descent scanner shared by all naming parsers.

It mirrors Finagle's ``NameTreeParsers``: one cursor over the text, Java whitespace, ``#``
comments wherever whitespace may appear, and Finagle's error wording. The grammar productions
for paths live here; name trees and dtabs build on them in their own modules.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from typing import NoReturn, TypeVar

from turnout.errors import ParseError

E = TypeVar("E")

#: Characters for which Java's ``Character.isWhitespace`` is true (all in the BMP).
JAVA_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2008\u2009\u200a\u2028\u2029\u205f\u3000"
)
#: Characters a label may contain unescaped (Finagle's ``Path.isShowable``).
SHOWABLE = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_:.#$%-")
SHOWABLE_BYTES = frozenset(map(ord, SHOWABLE))
_HEX = frozenset("0123456789ABCDEFabcdef")


def is_label_char(c: str) -> bool:
    """Whether ``c`` can start (or continue) a label: a showable char or an escape."""
    return c in SHOWABLE or c == "\\"


def is_java_digit(c: str) -> bool:
    """Java's ``Character.isDigit`` on one UTF-16 unit: a BMP decimal digit of any script."""
    return c != "" and ord(c) <= 0xFFFF and unicodedata.category(c) == "Nd"


class Scanner:
    """A cursor over ``text``; ``peek()`` returns ``""`` at end of input."""

    __slots__ = ("nesting", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        #: parentheses open at the cursor (name trees; see nametree.MAX_PARENS)
        self.nesting = 0

    @property
    def at_end(self) -> bool:
        """Whether the whole text has been consumed."""
        return self.pos >= len(self.text)

    def peek(self) -> str:
        """The current character, or ``""`` at end of input."""
        return "" if self.at_end else self.text[self.pos]

    def advance(self) -> None:
        """Move past the current character."""
        self.pos += 1

    def fail(self, expected: str, offset: int | None = None) -> NoReturn:
        """Raise a :class:`ParseError` at ``offset`` (default: the current position)."""
        raise ParseError(self.text, self.pos if offset is None else offset, expected)

    def maybe_eat(self, c: str) -> bool:
        """Consume ``c`` if it is the current character."""
        if self.peek() != c:
            return False
        self.advance()
        return True

    def eat(self, c: str) -> None:
        """Consume ``c`` or fail with ``'c' expected``."""
        if not self.maybe_eat(c):
            self.fail(f"'{c}'")

    def ws(self) -> None:
        """Skip whitespace and ``#`` comments (a comment runs up to and including a LF)."""
        while (c := self.peek()) in JAVA_WHITESPACE or c == "#":
            if c == "#":
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end + 1
            else:
                self.advance()

    def finish(self) -> None:
        """Skip trailing whitespace and require the end of input."""
        self.ws()
        if not self.at_end:
            self.fail("end of input")

    def hex_digit(self) -> int:
        """One hex digit of an escape."""
        c = self.peek()
        if c not in _HEX:
            self.fail("hex char")
        self.advance()
        return int(c, 16)

    def label(self) -> bytes:
        """A non-empty label of showable characters and ``\\xNN`` escapes."""
        out = bytearray()
        while True:
            c = self.peek()
            if c in SHOWABLE:
                self.advance()
                out += c.encode()
            elif c == "\\":
                self.advance()
                self.eat("x")
                out.append(self.hex_digit() << 4 | self.hex_digit())
            else:
                self.fail("label char")
            if not is_label_char(self.peek()):
                return bytes(out)

    def elements(self, starts: Callable[[str], bool], element: Callable[[], E]) -> list[E]:
        """``ws "/" [element {"/" element}]``: a path-like list; ``/`` alone gives ``[]``."""
        self.ws()
        self.eat("/")
        if not starts(self.peek()):
            return []
        out = [element()]
        while self.maybe_eat("/"):
            out.append(element())
        return out

    def path(self) -> list[bytes]:
        """The labels of a path."""
        return self.elements(is_label_char, self.label)


def parse_all(text: str, production: Callable[[Scanner], E]) -> E:
    """Run ``production`` over the whole of ``text`` (trailing whitespace and comments allowed)."""
    scanner = Scanner(text)
    result = production(scanner)
    scanner.finish()
    return result
