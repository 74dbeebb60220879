"""Reading configuration text into plain data, remembering where every value came from.

The YAML composer (PyYAML's, in C when available) gives us nodes with line and column marks.
We walk those nodes ourselves instead of using ``yaml.safe_load`` so that we can:

- record the position of every key and value (for ``file:line:col`` in error messages),
- report *every* duplicate key rather than stopping at the first (Linkerd is strict here too),
- expand ``${VAR}`` and ``${VAR:-default}`` in string values, naming the place of a missing one,
- bound alias expansion, so a "billion laughs" document is refused instead of eating memory.

JSON is read by the same composer (JSON is, in practice, a subset of YAML); tab characters
between JSON tokens are turned into spaces first because YAML does not allow them there.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..errors import ConfigProblem

try:  # the C composer is much faster; fall back to pure Python where libyaml is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader

#: Upper bound on the number of values a document may expand to through aliases.
MAX_VALUES = 200_000

Key = str | int
Loc = tuple[Key, ...]

_ENV_RE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


@dataclass
class Source:
    """A parsed configuration document: its data and where each piece of it was written."""

    name: str
    data: Any
    #: position (1-based line, 1-based column) of the value at each location
    values: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    #: position of the key that introduces the value at each location (mappings only)
    keys: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    #: the text of each plain/quoted scalar as written, before ``${}`` expansion, by location;
    #: used to point inside a string (for example at the bad character of a dtab).
    raw: dict[Loc, str] = field(default_factory=dict)
    #: locations whose scalar was written on one line without quotes or escapes, so that a
    #: character offset inside the value is also a column offset in the file
    exact: set[Loc] = field(default_factory=set)
    #: locations whose value already had a problem while reading (not reported twice)
    failed: set[Loc] = field(default_factory=set)

    def position(self, loc: Loc, *, key: bool = False) -> tuple[int, int] | None:
        """The position of ``loc`` (of its key when ``key``), or of its nearest ancestor."""
        table = self.keys if key else self.values
        while True:
            if loc in table:
                return table[loc]
            if not key and loc in self.keys:
                return self.keys[loc]
            if not loc:
                return None
            loc = loc[:-1]

    def problem(
        self, loc: Loc, message: str, *, key: bool = False, offset: int = 0
    ) -> ConfigProblem:
        pos = self.position(loc, key=key)
        line, col = pos if pos else (None, None)
        if col is not None and offset and loc in self.exact:
            col += offset
        return ConfigProblem(message, source=self.name, line=line, column=col, path=dotted(loc))


def dotted(loc: Loc) -> str:
    """``("routers", 0, "servers", 1, "port")`` → ``routers[0].servers[1].port``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_text(
    text: str, name: str = "<config>", *, environ: Mapping[str, str] | None = None
) -> tuple[Source, list[ConfigProblem]]:
    """Parse YAML or JSON ``text``. Returns the source and the problems found while reading.

    A syntax error is a single problem and leaves ``source.data`` as ``None``; duplicate keys
    and unresolvable ``${VAR}`` references are reported all together with their positions.
    """
    source = Source(name, None)
    if text.lstrip().startswith("{"):
        text = text.replace("\t", " ")  # JSON allows tabs between tokens; YAML flow style does not
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        msg = " ".join(x for x in (e.context, e.problem) if x) or str(e)
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return source, [ConfigProblem(f"invalid YAML: {msg}", source=name, line=line, column=col)]
    except yaml.reader.ReaderError as e:  # a character YAML does not allow (no mark)
        line, col = _line_col(text, e.position, encoded=_Loader is not yaml.SafeLoader)
        what = str(e).split("\n", 1)[0]
        return source, [ConfigProblem(f"invalid YAML: {what}", source=name, line=line, column=col)]
    except yaml.YAMLError as e:  # pragma: no cover - no other unmarked error is known
        return source, [ConfigProblem(f"invalid YAML: {e}", source=name, line=1, column=1)]
    except UnicodeEncodeError as e:  # a lone surrogate (text decoded with surrogateescape)
        line, col = _line_col(text, e.start)
        bad = ord(text[e.start])
        return source, [
            ConfigProblem(
                f"invalid character U+{bad:04X}: the configuration must be UTF-8 text",
                source=name,
                line=line,
                column=col,
            )
        ]
    walker = _Walker(source, os.environ if environ is None else environ)
    if node is None:
        source.data = None
    else:
        try:
            source.data = walker.convert(node, ())
        except _TooBig as e:
            mark = e.node.start_mark
            return source, [
                ConfigProblem(
                    f"the document expands to more than {MAX_VALUES} values (through YAML "
                    "aliases); refusing to load it",
                    source=name,
                    line=mark.line + 1,
                    column=mark.column + 1,
                )
            ]
    return source, walker.problems


def _line_col(text: str, position: int, *, encoded: bool = False) -> tuple[int, int]:
    """1-based line and column of ``position`` in ``text`` (a UTF-8 byte offset when
    ``encoded``: libyaml counts bytes)."""
    if encoded:
        before = text.encode("utf-8", "surrogatepass")[:position].decode("utf-8", "replace")
    else:
        before = text[:position]
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1


class _TooBig(Exception):
    def __init__(self, node: yaml.Node) -> None:
        super().__init__()
        self.node = node


#: values nested deeper than this are refused (no configuration needs more than a dozen; the
#: walker and the validator recurse once or twice per level)
MAX_DEPTH = 100

#: what YAML's scalar constructors raise on a value they cannot build: an explicit tag they do
#: not know or whose text does not fit (``!!int abc``; ``!!int`` alone raises IndexError,
#: ``!!timestamp`` alone AttributeError), an integer too long for ``int()``... PyYAML's
#: constructors promise nothing narrower
_CONSTRUCT_ERRORS = (Exception,)


class _Walker:
    def __init__(self, source: Source, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.problems: list[ConfigProblem] = []
        self.count = 0
        self.constructor = yaml.SafeLoader("")  # only its scalar constructors are used
        #: the collection nodes being converted (an alias to one of them is a cycle)
        self.open: set[int] = set()

    def convert(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise _TooBig(node)
        mark = node.start_mark
        self.source.values.setdefault(loc, (mark.line + 1, mark.column + 1))
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        if id(node) in self.open:
            return self._fail(node, loc, "a YAML alias refers to a value that contains it")
        if len(self.open) >= MAX_DEPTH:
            return self._fail(node, loc, f"values are nested more than {MAX_DEPTH} levels deep")
        self.open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, loc)
            return [self.convert(child, (*loc, i)) for i, child in enumerate(node.value)]
        finally:
            self.open.discard(id(node))

    def _fail(self, node: yaml.Node, loc: Loc, message: str) -> None:
        """Report a value that cannot be read; validation skips its location."""
        self.source.failed.add(loc)
        self.problems.append(self.source_problem(node, loc, message))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Key, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._key(key_node)
            if key in seen:
                first = seen[key].start_mark
                self.problems.append(
                    self.source_problem(
                        key_node,
                        (*loc, key),
                        f"duplicate key '{key}' (first defined at line {first.line + 1}, "
                        f"column {first.column + 1}); each key may appear once",
                    )
                )
            else:
                seen[key] = key_node
        try:
            self.constructor.flatten_mapping(node)  # resolves "<<: *anchor" merge keys
        except (yaml.YAMLError, RecursionError) as e:
            what = e.problem if isinstance(e, yaml.MarkedYAMLError) else "a recursive merge"
            self._fail(node, loc, f"invalid YAML merge key ('<<'): {what}")
            node.value = [(k, v) for k, v in node.value if k.tag != "tag:yaml.org,2002:merge"]
        out: dict[Key, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            child = (*loc, key)
            mark = key_node.start_mark
            self.source.keys[child] = (mark.line + 1, mark.column + 1)
            self.source.values.pop(child, None)  # a later (overriding) value wins
            out[key] = self.convert(value_node, child)
        return out

    def _key(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            try:
                value = self.constructor.construct_object(node)
            except _CONSTRUCT_ERRORS:
                return node.value  # (the key is reported unknown, with its text)
            return value if isinstance(value, str | int) else str(value)
        # (not repr(node.value): a key may contain an alias to its own mapping)
        kind = "mapping" if isinstance(node, yaml.MappingNode) else "list"
        mark = node.start_mark
        return f"<a {kind} at line {mark.line + 1}, column {mark.column + 1}>"

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        self.source.raw[loc] = node.value
        if not node.style and "\n" not in node.value:  # plain style: None or "" by parser
            self.source.exact.add(loc)
        try:
            value = self.constructor.construct_object(node)
        except _CONSTRUCT_ERRORS as e:
            what = e.problem if isinstance(e, yaml.MarkedYAMLError) else str(e)
            return self._fail(node, loc, f"invalid YAML value {node.tag!r}: {what}")
        if isinstance(value, str) and "${" in value:
            value = self._expand(value, node, loc)
        return value

    def _expand(self, value: str, node: yaml.Node, loc: Loc) -> str:
        def sub(m: re.Match[str]) -> str:
            if m.group(1):  # "$${X}" is an escaped, literal "${X}"
                return m.group(0)[1:]
            name, default = m.group(2), m.group(3)
            if name in self.environ and (self.environ[name] != "" or default is None):
                return self.environ[name]
            if default is not None:
                return default
            self.source.failed.add(loc)
            self.problems.append(
                self.source_problem(
                    node,
                    loc,
                    f"environment variable '{name}' is not set; set it or write "
                    f"'${{{name}:-default}}' to give a default",
                )
            )
            return ""

        return _ENV_RE.sub(sub, value)

    def source_problem(self, node: yaml.Node, loc: Loc, message: str) -> ConfigProblem:
        mark = node.start_mark
        return ConfigProblem(
            message,
            source=self.source.name,
            line=mark.line + 1,
            column=mark.column + 1,
            path=dotted(loc),
        )
