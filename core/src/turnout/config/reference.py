"""The configuration reference, generated from the config classes of the installed plugins.

``python -m turnout.config.reference > docs/configuration-reference.md`` writes it; a test
checks that the committed file equals what the code generates, so the reference cannot drift
from the options turnout actually accepts.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Iterable
from typing import Any, get_args, get_origin

from .model import AdminConfig, LinkerConfig
from .schema import ConfigObject, Field, RegisteredDefault, describe_type


def _default(f: Field) -> str:
    if f.required:
        return "**required**"
    if isinstance(f.default_factory, RegisteredDefault):
        return "(see below)"  # the family's default kind, from the registry
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if isinstance(value, ConfigObject):
            return "(see below)" if value.config_fields() else "`{}`"
        if value in ([], {}):
            return "`[]`" if value == [] else "`{}`"
        text = str(value)
        return f"`{text}`" if text else "empty"
    if f.default is None:
        return "none"
    if isinstance(f.default, bool):
        return f"`{str(f.default).lower()}`"
    return f"`{f.default}`"


def _doc(cls: type) -> str:
    return inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")


def _table(cls: type[ConfigObject]) -> list[str]:
    fields = cls.config_fields()
    if not fields:
        return ["No options.", ""]
    lines = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, f in fields.items():
        doc = f.doc
        if f.unsupported:
            doc = f"{doc} *Accepted; {f.unsupported}.*".strip()
        cells = (describe_type(f.type), _default(f), doc)
        # a "|" inside a cell (Literal choices, "a | b" in a doc) would end the cell
        typ, default, doc = (str(c).replace("|", "\\|") for c in cells)
        lines.append(f"| `{key}` | {typ} | {default} | {doc} |")
    return [*lines, ""]


def _nested(cls: type[ConfigObject]) -> Iterable[type[ConfigObject]]:
    for f in cls.config_fields().values():
        for tp in _types(f.type):
            if isinstance(tp, type) and issubclass(tp, ConfigObject) and not tp.is_polymorphic():
                yield tp


def _types(tp: Any) -> Iterable[Any]:
    args = get_args(tp)
    if get_origin(tp) is not None and args:
        for a in args:
            yield from _types(a)
    else:
        yield tp


def generate(registry: Any) -> str:
    """The Markdown reference for every family and kind in ``registry``."""
    out = [
        "# Configuration reference",
        "",
        "Generated from the config classes by `python -m turnout.config.reference` (a test keeps",
        "this file in step with the code). Keys are Linkerd 1's; unknown keys are errors.",
        "",
    ]
    seen: set[type] = set()

    def section(title: str, cls: type[ConfigObject], level: str = "##") -> None:
        if cls in seen:
            return
        seen.add(cls)
        out.extend([f"{level} {title}", "", _doc(cls), "", *_table(cls)])
        for sub in _nested(cls):
            section(f"`{sub.__name__.removesuffix('Config')}` options", sub, "###")

    section("Top level", LinkerConfig)
    section("`admin`", AdminConfig)
    for family in registry.families():
        out.extend([f"## Family: {family}", ""])
        for kind in registry.kinds(family):
            reg = registry.registration(family, kind)
            cls = reg.cls
            where = reg.provider.distribution or reg.provider.plugin
            out.extend(
                [
                    f"### `{cls.discriminator}: {kind}`",
                    "",
                    f"{_doc(cls)} *(from {where})*",
                    "",
                    *_table(cls),
                ]
            )
            for sub in _nested(cls):
                section(f"`{sub.__name__.removesuffix('Config')}` options", sub, "####")
    return "\n".join(out).rstrip() + "\n"


def first_party_registry() -> Any:
    """The registry of core and the first-party plugins only (what the docs describe)."""
    from ..known_plugins import FIRST_PARTY_KINDS
    from ..plugin_manager import load_plugins

    dists = ",".join(sorted(set(FIRST_PARTY_KINDS.values())))
    return load_plugins({"TURNOUT_PLUGINS": dists}).registry


def main() -> int:
    sys.stdout.write(generate(first_party_registry()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
