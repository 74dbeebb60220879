"""A strict InfluxDB line protocol parser, for tests of what ``/admin/metrics/influxdb``
serves (no InfluxDB or Telegraf needed).

Written from the line protocol reference (InfluxDB 2,
``reference/syntax/line-protocol``): ``measurement[,tag=value...] field=value[,...]
[timestamp]``; in the measurement a backslash escapes a comma, a space or a backslash; in
tag keys, tag values and field keys it escapes a comma, an equals sign, a space or a
backslash (a backslash before another character is a literal backslash); an unescaped
comma, space or equals sign where it cannot be is an error. Field values are floats
(``1``, ``-1.5``, ``1e-05``), integers (``1i``), unsigned integers (``1u``), booleans
(``t``, ``T``, ``true``, ``True``, ``TRUE``, ``f``...) or double-quoted strings (``\\"`` and
``\\\\`` escaped). Keys and the measurement may not be empty, may not begin with ``_``
(InfluxDB reserves those), and a line may not repeat a tag key or a field key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["LineProtocolError", "Point", "parse_line", "parse_lines"]

FieldValue = float | int | bool | str


class LineProtocolError(ValueError):
    """A line that is not valid line protocol; ``line`` is its number (1-based)."""

    def __init__(self, line: int, column: int, message: str, text: str) -> None:
        super().__init__(f"line {line}, column {column}: {message}: {text!r}")
        self.line = line
        self.column = column


@dataclass
class Point:
    measurement: str
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, FieldValue] = field(default_factory=dict)
    timestamp: int | None = None
    #: the tag keys in the order written
    tag_order: list[str] = field(default_factory=list)


_FLOAT = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_INT = re.compile(r"[-+]?\d+i")
_UINT = re.compile(r"\d+u")
_TRUE = {"t", "T", "true", "True", "TRUE"}
_FALSE = {"f", "F", "false", "False", "FALSE"}


class _Scanner:
    def __init__(self, text: str, number: int) -> None:
        self.text = text
        self.pos = 0
        self.number = number

    def fail(self, message: str) -> LineProtocolError:
        return LineProtocolError(self.number, self.pos + 1, message, self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def name(self, stops: str, escapable: str, what: str, forbidden: str = "") -> str:
        """Read up to an unescaped character of ``stops``."""
        out = []
        text = self.text
        while self.pos < len(text):
            ch = text[self.pos]
            if ch == "\\" and self.pos + 1 < len(text) and text[self.pos + 1] in escapable:
                out.append(text[self.pos + 1])
                self.pos += 2
                continue
            if ch in stops:
                break
            if ch in forbidden:
                raise self.fail(f"unescaped {ch!r} in {what}")
            if ch in "\n\r":
                raise self.fail(f"newline in {what}")
            out.append(ch)
            self.pos += 1
        value = "".join(out)
        if not value:
            raise self.fail(f"empty {what}")
        if value.startswith("_"):
            raise self.fail(f"{what} {value!r} begins with '_' (reserved by InfluxDB)")
        return value

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            raise self.fail(f"expected {ch!r}, found {self.peek() or 'end of line'!r}")
        self.pos += 1

    def field_value(self) -> FieldValue:
        if self.peek() == '"':
            self.pos += 1
            out = []
            text = self.text
            while True:
                if self.pos >= len(text):
                    raise self.fail("unterminated string field value")
                ch = text[self.pos]
                if ch == "\\" and self.pos + 1 < len(text) and text[self.pos + 1] in '"\\':
                    out.append(text[self.pos + 1])
                    self.pos += 2
                    continue
                if ch == '"':
                    self.pos += 1
                    return "".join(out)
                out.append(ch)
                self.pos += 1
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ", ":
            self.pos += 1
        raw = self.text[start : self.pos]
        if _INT.fullmatch(raw):
            return int(raw[:-1])
        if _UINT.fullmatch(raw):
            return int(raw[:-1])
        if _FLOAT.fullmatch(raw):
            return float(raw)
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        self.pos = start
        raise self.fail(f"invalid field value {raw!r}")


def parse_line(text: str, number: int = 1) -> Point:
    """One line (without its newline)."""
    s = _Scanner(text, number)
    if text.startswith("#"):
        raise s.fail("a comment is not a point")
    measurement = s.name(", ", ", \\", "measurement")
    point = Point(measurement)
    while s.peek() == ",":
        s.pos += 1
        key = s.name("=", ",= \\", "tag key", forbidden=", ")
        s.expect("=")
        tag_value = s.name(", ", ",= \\", "tag value", forbidden="=")
        if key in point.tags:
            raise s.fail(f"tag key {key!r} repeated")
        point.tags[key] = tag_value
        point.tag_order.append(key)
    s.expect(" ")
    while True:
        key = s.name("=", ",= \\", "field key", forbidden=", ")
        s.expect("=")
        value = s.field_value()
        if key in point.fields:
            raise s.fail(f"field key {key!r} repeated")
        point.fields[key] = value
        if s.peek() == ",":
            s.pos += 1
            continue
        break
    if s.peek() == " ":
        s.pos += 1
        start = s.pos
        while s.pos < len(text) and text[s.pos] in "-0123456789":
            s.pos += 1
        raw = text[start : s.pos]
        if not re.fullmatch(r"-?\d+", raw):
            raise s.fail("invalid timestamp")
        point.timestamp = int(raw)
    if s.pos != len(text):
        raise s.fail("unexpected text after the fields")
    return point


def parse_lines(body: str) -> list[Point]:
    """Every line of ``body``: each must be a valid point (no blank lines but a final
    newline, no comments); raises :class:`LineProtocolError` at the first bad one."""
    if body and not body.endswith("\n"):
        raise LineProtocolError(body.count("\n") + 1, 1, "the last line has no newline", body)
    lines = body.split("\n")[:-1] if body else []
    return [parse_line(line, i) for i, line in enumerate(lines, 1)]
