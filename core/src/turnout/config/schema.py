"""Declarative config classes and the strict validator that builds them.

A config class is a plain class whose annotated attributes are its options::

    class FsNamerConfig(NamerConfig):
        \"\"\"Reads each service's addresses from a file named after it.\"\"\"

        kind = "io.l5d.fs"
        root_dir: str = option(doc="Directory holding one file per service.")

Attributes become keyword-only dataclass fields. The YAML key is the attribute name in
camelCase (``root_dir`` → ``rootDir``) unless ``option(key=...)`` says otherwise. An option
without a default is required. Types may be ``str``, ``int``, ``float``, ``bool``,
``Literal[...]``, ``list[T]``, ``dict[str, T]``, ``T | None``, another config class, or one
of the naming types (``Path``, ``Dtab``, ``NameTree``), which are parsed from strings.

A config class that declares ``family`` is *polymorphic*: the object's ``kind`` key (or the
key named by ``discriminator``) selects, through the plugin registry, which registered
subclass reads the rest of the object.

Validation is strict and complete: unknown keys, wrong types, values out of range and unknown
kinds are all reported in one pass, each with its file position and dotted path.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, get_args, get_origin

from ..errors import ConfigProblem, ParseError
from .source import Loc, Source, dotted

_MISSING = dataclasses.MISSING


class _Invalid:
    def __repr__(self) -> str:
        return "<invalid>"


#: Returned by conversions that reported a problem; never stored in a config object.
INVALID: Any = _Invalid()


def option(
    default: Any = _MISSING,
    *,
    default_factory: Callable[[], Any] | None = None,
    key: str | None = None,
    doc: str = "",
    min: float | None = None,
    max: float | None = None,
    secret: bool = False,
    unsupported: str | None = None,
    supported: tuple[Any, ...] = (),
) -> Any:
    """Declare an option of a config class.

    :param default: value when the key is absent; no default makes the option required.
    :param default_factory: for mutable defaults (lists, dicts, config objects).
    :param key: the YAML key, when it is not the camelCase form of the attribute name.
    :param doc: one or two sentences for the configuration reference.
    :param min: smallest accepted number (inclusive). :param max: largest (inclusive).
    :param secret: redact the value wherever the config is shown (``/config.json``).
    :param unsupported: accept the key (so Linkerd configs load) but warn with this text.
    :param supported: values of an ``unsupported`` key that ask for what turnout does anyway
        (no warning for them; compared by type and value, so ``0`` is not ``False``).
    """
    metadata = {
        "key": key,
        "doc": doc,
        "min": min,
        "max": max,
        "secret": secret,
        "unsupported": unsupported,
        "supported": supported,
    }
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


class RegisteredDefault:
    """The default of an option holding an object of a polymorphic family: the family's
    ``default_kind``, read through the plugin registry like a written ``{}`` would be.

    Use it as ``option(default_factory=RegisteredDefault(InterpreterConfig))``. The validator
    builds the default when the key is absent, so that the module declaring the option never
    imports the class of the default kind (built-in kinds are registered plugins like any
    other). Constructing the config object directly, without the option, is an error: only the
    registry knows which class implements the default kind.
    """

    def __init__(self, base: type[ConfigObject]) -> None:
        if not base.is_polymorphic() or base.default_kind is None:
            raise TypeError(f"{base.__name__} is not a polymorphic family with a default_kind")
        self.base = base

    def __call__(self) -> ConfigObject:
        raise TypeError(
            f"the default {self.base.family} ({self.base.default_kind!r}) is a registered kind, "
            "chosen when a configuration is read; pass the option explicitly"
        )

    def __repr__(self) -> str:
        return f"RegisteredDefault({self.base.__name__})"


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@dataclasses.dataclass(frozen=True)
class Field:
    """What the validator knows about one option."""

    name: str
    key: str
    type: Any
    default: Any
    default_factory: Any
    doc: str
    min: float | None
    max: float | None
    secret: bool
    unsupported: str | None
    supported: tuple[Any, ...] = ()

    @property
    def required(self) -> bool:
        return self.default is _MISSING and self.default_factory is _MISSING

    def make_default(self) -> Any:
        if self.default_factory is not _MISSING:
            return self.default_factory()
        return self.default


class ConfigObject:
    """Base class of every configuration class (see the module docstring)."""

    #: set on a base class to make it polymorphic: the registry family its subclasses join
    family: ClassVar[str | None] = None
    #: the key that selects the subclass of a polymorphic family
    discriminator: ClassVar[str] = "kind"
    #: kind used when the discriminator key is absent (Linkerd's ``defaultImpl``)
    default_kind: ClassVar[str | None] = None
    #: the value of the discriminator that selects this class
    kind: ClassVar[str | None] = None
    #: require ``experimental: true`` on objects of this kind
    experimental_required: ClassVar[bool] = False

    _fields_cache: ClassVar[dict[str, Field] | None] = None

    if typing.TYPE_CHECKING:
        # Each subclass becomes a keyword-only dataclass when it is defined (below); type
        # checkers see this constructor instead. (typing.dataclass_transform would describe
        # it exactly, but type checkers only see a default given as option(default=...),
        # not the usual option(5, ...).)
        def __init__(self, **options: Any) -> None: ...

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._fields_cache = None
        dataclasses.dataclass(kw_only=True, eq=True, repr=True)(cls)

    @classmethod
    def config_fields(cls) -> dict[str, Field]:
        """The options of this class, by YAML key, in declaration order."""
        cached: dict[str, Field] | None = cls.__dict__.get("_fields_cache")
        if cached is not None:
            return cached
        hints = typing.get_type_hints(cls, include_extras=False)
        out: dict[str, Field] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]  # made a dataclass at run time
            md = f.metadata
            key = md.get("key") or camel(f.name)
            out[key] = Field(
                name=f.name,
                key=key,
                type=hints.get(f.name, Any),
                default=f.default,
                default_factory=f.default_factory,
                doc=md.get("doc", ""),
                min=md.get("min"),
                max=md.get("max"),
                secret=md.get("secret", False),
                unsupported=md.get("unsupported"),
                supported=md.get("supported", ()),
            )
        cls._fields_cache = out
        return out

    @classmethod
    def is_polymorphic(cls) -> bool:
        return cls.family is not None and cls.kind is None

    def check(self) -> Iterable[tuple[str | Loc, str]]:
        """Semantic checks after the fields were read: yield ``(key or loc, message)``.

        Called only when every field of this object was valid. Override to add rules that
        involve several fields; the key (or a location tuple relative to this object) says
        where the problem is reported.
        """
        return ()

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """The object as plain data with YAML keys, omitting unset (``None``) options."""
        out: dict[str, Any] = {}
        cls = type(self)
        if cls.kind is not None and cls.family is not None:
            out[cls.discriminator] = cls.kind
        for key, f in cls.config_fields().items():
            value = getattr(self, f.name)
            if value is None:
                continue
            out[key] = "<redacted>" if (f.secret and redact) else plain(value, redact=redact)
        return out


def plain(value: Any, *, redact: bool = True) -> Any:
    """Turn config values into JSON-ready data (naming types become their strings)."""
    if isinstance(value, ConfigObject):
        return value.to_dict(redact=redact)
    if isinstance(value, list | tuple):
        return [plain(v, redact=redact) for v in value]
    if isinstance(value, dict):
        return {k: plain(v, redact=redact) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


class KindLookup(typing.Protocol):
    """What the validator needs from the plugin registry."""

    def config_class(self, family: str, kind: str) -> type[ConfigObject] | None: ...

    def kinds(self, family: str) -> list[str]: ...

    def hint(self, family: str, kind: str) -> str | None: ...


#: parsers for naming types, filled in by :mod:`turnout.config` to avoid an import cycle
SCALAR_PARSERS: dict[type, Callable[[str], Any]] = {}


class Validator:
    """Builds config objects from a :class:`Source`, collecting every problem."""

    def __init__(self, source: Source, registry: KindLookup) -> None:
        self.source = source
        self.registry = registry
        self.problems: list[ConfigProblem] = []
        self.warnings: list[ConfigProblem] = []
        #: classes whose semantic ``check()`` ran (their fields were all valid)
        self.checked: set[type[ConfigObject]] = set()

    # -- reporting -------------------------------------------------------------------------
    def error(self, loc: Loc, message: str, *, key: bool = False, offset: int = 0) -> Any:
        self.problems.append(self.source.problem(loc, message, key=key, offset=offset))
        return INVALID

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(self.source.problem(loc, message, key=True))

    # -- entry point -----------------------------------------------------------------------
    def build(self, cls: type[ConfigObject], data: Any, loc: Loc = ()) -> Any:
        """Convert ``data`` into an instance of ``cls`` (or INVALID after reporting)."""
        return self.convert(cls, data, loc)

    # -- conversions -----------------------------------------------------------------------
    def convert(self, tp: Any, value: Any, loc: Loc) -> Any:
        if loc in self.source.failed:
            return INVALID
        origin = get_origin(tp)
        if tp is Any:
            return value
        if origin in (typing.Union, types.UnionType):
            return self._union(tp, value, loc)
        if origin is Literal:
            return self._literal(get_args(tp), value, loc)
        if origin in (list, tuple) or tp in (list, tuple):
            return self._list(get_args(tp)[0] if get_args(tp) else Any, value, loc)
        if origin in (dict, Mapping) or tp is dict:
            args = get_args(tp)
            return self._dict(args[1] if args else Any, value, loc)
        if isinstance(tp, type) and issubclass(tp, ConfigObject):
            return self._object(tp, value, loc)
        if tp is bool:
            return self._bool(value, loc)
        if tp is int:
            return self._int(value, loc)
        if tp is float:
            return self._float(value, loc)
        if tp is str:
            return self._str(value, loc)
        parser = SCALAR_PARSERS.get(tp)
        if parser is not None:
            return self._parsed(tp, parser, value, loc)
        raise TypeError(f"config option at {dotted(loc)} has unsupported type {tp!r}")

    def _union(self, tp: Any, value: Any, loc: Loc) -> Any:
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            if len(args) < len(get_args(tp)):
                return None
            return self.error(loc, f"a value is required here ({describe_type(tp)})")
        if len(args) == 1:
            return self.convert(args[0], value, loc)
        # "int | Literal['auto']": a word is one of the literal's choices
        literals = tuple(c for a in args if get_origin(a) is Literal for c in get_args(a))
        if literals and isinstance(value, str):
            if value in literals:
                return value
            others = " or ".join(describe_type(a) for a in args if get_origin(a) is not Literal)
            choices = ", ".join(map(repr, literals))
            return self.error(
                loc,
                f"expected {others} or {choices}, got {_show(value)}"
                + did_you_mean(value, [str(c) for c in literals]),
            )
        # "X | list[X]": choose by the shape of the value
        for a in args:
            is_list = get_origin(a) in (list, tuple)
            if is_list == isinstance(value, list):
                return self.convert(a, value, loc)
        return self.convert(args[0], value, loc)

    def _literal(self, choices: tuple[Any, ...], value: Any, loc: Loc) -> Any:
        if (value in choices and not isinstance(value, bool)) or (
            isinstance(value, bool) and any(c is value for c in choices)
        ):
            return value
        names = [str(c) for c in choices]
        hint = did_you_mean(str(value), names)
        return self.error(
            loc, f"expected one of {', '.join(map(repr, names))}, got {_show(value)}{hint}"
        )

    def _list(self, item: Any, value: Any, loc: Loc) -> Any:
        if not isinstance(value, list):
            return self.error(loc, f"expected a list, got {_show(value)}")
        out = [self.convert(item, v, (*loc, i)) for i, v in enumerate(value)]
        return INVALID if any(v is INVALID for v in out) else out

    def _dict(self, item: Any, value: Any, loc: Loc) -> Any:
        if not isinstance(value, dict):
            return self.error(loc, f"expected a mapping, got {_show(value)}")
        out = {str(k): self.convert(item, v, (*loc, k)) for k, v in value.items()}
        return INVALID if any(v is INVALID for v in out.values()) else out

    def _bool(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return self.error(loc, f"expected true or false, got {_show(value)}")

    def _int(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, bool):
            return self.error(loc, f"expected an integer, got {_show(value)}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            value = int(value)
        if not isinstance(value, int):
            return self.error(loc, f"expected an integer, got {_show(value)}")
        return value

    def _float(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, bool):
            return self.error(loc, f"expected a number, got {_show(value)}")
        shown = _show(value)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return self.error(loc, f"expected a number, got {shown}")
        if not isinstance(value, int | float):
            return self.error(loc, f"expected a number, got {shown}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond the range of floats
            number = math.inf
        if not math.isfinite(number):  # (.nan would pass every range check)
            return self.error(loc, f"expected a finite number, got {shown}")
        return number

    def _str(self, value: Any, loc: Loc) -> Any:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(self.source.raw.get(loc, value))
        hint = ""
        if isinstance(value, bool) or value is None:
            raw = self.source.raw.get(loc)
            if raw:
                hint = f"; YAML reads '{raw}' as {_show(value)}, quote it: \"{raw}\""
        return self.error(loc, f"expected a string, got {_show(value)}{hint}")

    def _parsed(self, tp: type, parser: Callable[[str], Any], value: Any, loc: Loc) -> Any:
        if not isinstance(value, str):
            return self.error(loc, f"expected a {tp.__name__} string, got {_show(value)}")
        try:
            return parser(value)
        except ParseError as e:
            offset = e.offset if self.source.raw.get(loc) == value else 0
            return self.error(loc, f"invalid {tp.__name__.lower()}: {e}", offset=offset)

    # -- objects ---------------------------------------------------------------------------
    def _object(self, cls: type[ConfigObject], value: Any, loc: Loc) -> Any:
        if value is None and not any(f.required for f in cls.config_fields().values()):
            value = {}
        if not isinstance(value, dict):
            return self.error(loc, f"expected a mapping ({_article(cls)}), got {_show(value)}")
        if cls.is_polymorphic():
            chosen = self._choose(cls, value, loc)
            if chosen is None:
                return INVALID
            cls = chosen
        fields = cls.config_fields()
        kwargs: dict[str, Any] = {}
        ok = True
        poly_key = cls.discriminator if cls.family is not None else None
        for key in value:
            if key == poly_key or key in fields:
                continue
            ok = False
            allowed = sorted(fields) + ([poly_key] if poly_key else [])
            self.error(
                (*loc, key),
                f"unknown key '{key}'{did_you_mean(str(key), allowed)}; allowed keys of "
                f"{_where(cls)}: {', '.join(allowed) or 'none'}",
                key=True,
            )
        for key, f in fields.items():
            if key in value:
                given = value[key]
                if f.unsupported and not any(
                    type(given) is type(ok) and given == ok for ok in f.supported
                ):
                    self.warn((*loc, key), f.unsupported)
                converted = self.convert(f.type, value[key], (*loc, key))
                if converted is not INVALID:
                    converted = self._range(f, converted, (*loc, key))
                if converted is INVALID:
                    ok = False
                    continue
                kwargs[f.name] = converted
            elif f.required:
                ok = False
                self.error(
                    loc, f"missing required key '{key}' ({_where(cls)}): {f.doc}".rstrip(": ")
                )
            elif isinstance(f.default_factory, RegisteredDefault):
                # the family's default kind, looked up in the registry as if '{}' was written
                converted = self.convert(f.type, {}, (*loc, key))
                if converted is INVALID:
                    ok = False
                    continue
                kwargs[f.name] = converted
        if not ok:
            return INVALID
        obj = cls(**kwargs)
        if cls.experimental_required and not getattr(obj, "experimental", False):
            return self.error(
                loc,
                f"{_where(cls)} is experimental and must be enabled explicitly: add "
                "'experimental: true' to this object",
            )
        failed = False
        self.checked.add(cls)
        for where, message in obj.check():
            sub = (where,) if isinstance(where, str) else tuple(where)
            self.error((*loc, *sub), message)
            failed = True
        return INVALID if failed else obj

    def _range(self, f: Field, value: Any, loc: Loc) -> Any:
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if is_number and (
            (f.min is not None and value < f.min) or (f.max is not None and value > f.max)
        ):
            lo = "" if f.min is None else f"at least {_num(f.min)}"
            hi = "" if f.max is None else f"at most {_num(f.max)}"
            span = f"between {_num(f.min)} and {_num(f.max)}" if lo and hi else lo or hi
            return self.error(loc, f"must be {span}, got {_num(value)}")
        return value

    def _choose(self, base: type[ConfigObject], value: dict[Any, Any], loc: Loc) -> Any:
        family = base.family
        assert family is not None
        key = base.discriminator
        if (*loc, key) in self.source.failed:
            return None  # its ${VAR} was already reported
        kind = value.get(key, base.default_kind)
        if kind is None:
            known = ", ".join(self.registry.kinds(family)) or "none installed"
            self.error(loc, f"missing required key '{key}' ({family} {key}; installed: {known})")
            return None
        if not isinstance(kind, str):
            self.error((*loc, key), f"expected a {family} {key} name, got {_show(kind)}")
            return None
        cls = self.registry.config_class(family, kind)
        if cls is not None:
            return cls
        installed = self.registry.kinds(family)
        message = f"unknown {family} {key} '{kind}'"
        hint = self.registry.hint(family, kind)
        if hint:
            message += f"; {hint}"
        else:
            message += did_you_mean(kind, installed)
        message += f"; installed {family} {key}s: {', '.join(installed) or 'none'}"
        self.error((*loc, key) if key in value else loc, message)
        return None


# -- helpers ---------------------------------------------------------------------------------
def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the closest candidate, or ``""``."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    if word.lower() in lowered:
        return f" (did you mean '{lowered[word.lower()]}'?)"
    import difflib  # (only when a key is wrong)

    match = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int) and value.bit_length() > 100:
        return _big(value)
    return str(value)


def _big(x: int) -> str:
    """An integer too long to show (or to convert: beyond 4300 digits ``str()`` raises)."""
    return f"{'-' if x < 0 else ''}an integer of about {int(x.bit_length() * 0.30103) + 1} digits"


def _num(x: float | None) -> str:
    if x is None:
        return ""
    if isinstance(x, int) and x.bit_length() > 100:
        return _big(x)
    return str(int(x)) if float(x).is_integer() else str(x)


def _where(cls: type[ConfigObject]) -> str:
    if cls.kind is not None and cls.family is not None:
        return f"{cls.family} {cls.discriminator} '{cls.kind}'"
    return _article(cls)


def _article(cls: type[ConfigObject]) -> str:
    name = re.sub(r"Config$", "", cls.__name__)
    words = re.sub(r"(?<!^)(?=[A-Z][a-z])", " ", name).lower()
    return f"{words} options"


def describe_type(tp: Any) -> str:
    """A short human description of an option type, for errors and the reference docs."""
    origin = get_origin(tp)
    if tp is Any:
        return "any"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(describe_type(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (list, tuple):
        return f"list of {describe_type(get_args(tp)[0])}"
    if origin in (dict, Mapping):
        return f"map of {describe_type(get_args(tp)[1])}"
    if isinstance(tp, type) and issubclass(tp, ConfigObject):
        if tp.is_polymorphic():
            return f"{tp.family} object"
        return "object"
    names = {bool: "boolean", int: "integer", float: "number", str: "string"}
    if tp in names:
        return names[tp]
    return getattr(tp, "__name__", str(tp)).lower()
