"""Path patterns with wildcards and captures (Linkerd's ``PathMatcher``).

A pattern is a ``/``-separated path whose segments may be ``*`` (any one segment) or contain
``{name}`` captures (greedy, possibly part of a segment: ``{service}-{zone}``). A pattern
matches a path when it matches the path's first segments; the rest of the path is ignored.
Captured values can be substituted into templates (``/srv/{service}``).

Used by ``io.l5d.static`` client and service configs (``prefix``) and the ``io.l5d.rewrite``
namer (``pattern`` / ``name``).

Trailing ``/`` are ignored (``/%/io.l5d.port/4141/#/io.l5d.fs/`` is
``/%/io.l5d.port/4141/#/io.l5d.fs``), as Linkerd's ``PathMatcher`` splits the pattern with
Java's ``String.split``, which drops trailing empty strings; Linkerd's TLS documentation
writes such prefixes. Only patterns do this: :meth:`Path.read` still refuses ``/foo/``, as
Finagle's does.
"""

from __future__ import annotations

import re

from ..errors import ParseError
from .path import Path, show_label

_CAPTURE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.-]*)\}")


class PathMatcher:
    """A compiled path pattern (see the module docstring)."""

    __slots__ = ("_segments", "names", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        stripped = text.strip()
        if not stripped.startswith("/"):
            raise ParseError(text, 0, "'/'")
        self._segments: list[re.Pattern[str] | None] = []
        self.names: list[str] = []
        offset = text.index("/") + 1
        body = stripped[1:].rstrip("/")  # trailing '/' are ignored (see the module docstring)
        for segment in body.split("/") if body else []:
            if not segment:
                raise ParseError(text, offset, "path segment")
            if segment == "*":
                self._segments.append(None)
            else:
                self._segments.append(self._compile(segment, text, offset))
            offset += len(segment) + 1

    def _compile(self, segment: str, text: str, offset: int) -> re.Pattern[str]:
        out, pos = "", 0
        for m in _CAPTURE.finditer(segment):
            out += re.escape(segment[pos : m.start()])
            name = m.group(1)
            group = "v" + str(len(self.names))
            self.names.append(name)
            out += f"(?P<{group}>.+)"
            pos = m.end()
        rest = segment[pos:]
        if "{" in rest or "}" in rest:
            bad = segment.index("{" if "{" in rest else "}", pos)
            raise ParseError(text, offset + bad, "'{name}' capture")
        out += re.escape(rest)
        return re.compile(out)

    @classmethod
    def read(cls, text: str) -> PathMatcher:
        return cls(text)

    def __len__(self) -> int:
        return len(self._segments)

    def extract(self, path: Path) -> dict[str, str] | None:
        """The captured variables if the pattern matches the start of ``path``, else None."""
        if len(path) < len(self._segments):
            return None
        out: dict[str, str] = {}
        for pattern, label in zip(self._segments, path.elems, strict=False):
            if pattern is None:
                continue
            m = pattern.fullmatch(show_label(label))
            if m is None:
                return None
            for group, value in m.groupdict().items():
                out[self.names[int(group[1:])]] = value
        return out

    def matches(self, path: Path) -> bool:
        return self.extract(path) is not None

    @staticmethod
    def substitute(variables: dict[str, str], template: str) -> str:
        """``template`` with every ``{name}`` replaced by its captured value."""
        return _CAPTURE.sub(lambda m: variables.get(m.group(1), m.group(0)), template)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"PathMatcher({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathMatcher) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)
