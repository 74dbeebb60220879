"""The exceptions turnout raises.

Every error a user can cause derives from :class:`TurnoutError`, so ``except TurnoutError``
catches all of them. Messages say where the problem is and, where possible, how to fix it.
"""

from __future__ import annotations


class TurnoutError(Exception):
    """Base class of every error turnout raises on purpose."""


class ParseError(TurnoutError, ValueError):
    """Invalid path, dtab or name tree text.

    The message follows Finagle's parser (``'/' expected but 'x' found at 'ab[x]c'``) so that
    operators who know Linkerd recognise it; :attr:`offset` is the 0-based index of the
    offending character in :attr:`text` (``len(text)`` at end of input).
    """

    def __init__(self, text: str, offset: int, expected: str) -> None:
        self.text = text
        self.offset = offset
        self.expected = expected
        if offset >= len(text):
            self.found = "end of input"
            where = f"{text}[]"
        else:
            self.found = f"'{text[offset]}'"
            where = f"{text[:offset]}[{text[offset]}]{text[offset + 1 :]}"
        super().__init__(f"{expected} expected but {self.found} found at '{where}'")


class BindingError(TurnoutError):
    """A name could not be bound (recursion limit, unknown namer, namer failure)."""


class UnknownNamerError(BindingError):
    """``/$/<name>`` names a global namer that no installed plugin provides."""


class ConfigError(TurnoutError):
    """A configuration was refused; :attr:`problems` lists every problem found.

    ``str()`` gives one problem per line, each starting with ``file:line:col``.
    """

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ConfigProblem:
    """One problem in a configuration: where it is, and what is wrong."""

    __slots__ = ("column", "line", "message", "path", "source")

    def __init__(
        self,
        message: str,
        *,
        source: str = "<config>",
        line: int | None = None,
        column: int | None = None,
        path: str = "",
    ) -> None:
        self.message = message
        self.source = source
        self.line = line
        self.column = column
        self.path = path

    def location(self) -> str:
        if self.line is None:
            return self.source
        return f"{self.source}:{self.line}:{self.column}"

    def __str__(self) -> str:
        where = f" {self.path}:" if self.path else ""
        return f"{self.location()}:{where} {self.message}"

    def __repr__(self) -> str:
        return f"ConfigProblem({str(self)!r})"

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "line": self.line,
            "column": self.column,
            "path": self.path,
            "message": self.message,
        }


class PluginError(TurnoutError):
    """A plugin could not be loaded, or two plugins claim the same kind."""
