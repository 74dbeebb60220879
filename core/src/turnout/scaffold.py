"""``turnout plugin new KIND NAME``: write a complete, installable plugin skeleton.

The skeleton is a distribution that a user edits instead of copying the example plugin by
hand: ``pyproject.toml`` (hatchling, the ``turnout`` entry point, ``py.typed``), the import
package (``plugin.py`` with the registration hook, a module with the config class and the
runtime object), a README (install line, YAML example, options table) and tests
(registration, configuration with located errors, behaviour) that pass as generated.

Names are derived from the kind, so that two plugins never collide::

    turnout plugin new namer com.example.myNamer
    # directory and distribution  turnout-namer-com-example-my-namer
    # import package              turnout_namer_com_example_my_namer
    # entry point                 namer-com-example-my-namer
    # config class, runtime       MyNamerNamerConfig, MyNamerNamer
    # tests                       tests/test_namer_com_example_my_namer.py

The templates are package data (``turnout/scaffold_templates/<kind>/*.tmpl``) with
``{{placeholder}}`` fields; :func:`new_plugin` fills them and writes the files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .errors import TurnoutError

TEMPLATES = "scaffold_templates"

#: a kind is dotted labels, each a letter followed by letters and digits (``com.example.demo``)
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z][A-Za-z0-9]*)+")
#: kinds in this namespace belong to turnout's own plugins (docs/writing-plugins.md)
RESERVED_PREFIX = "io.l5d."
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


class ScaffoldError(TurnoutError):
    """``turnout plugin new`` refused its arguments (unknown kind, bad name, existing path)."""


@dataclass(frozen=True)
class KindSpec:
    """One kind family that ``turnout plugin new`` can generate."""

    #: the KIND argument (``namer``, ``load-balancer``)
    name: str
    #: the registry family (``turnout plugins`` shows it): ``namer``, ``http identifier``
    family: str
    #: the registration hook that ``plugin.py`` implements
    hook: str
    #: the module of the package holding the config class and the runtime object
    module: str
    #: suffix of the runtime class (``Namer``) and, with ``Config``, of the config class
    suffix: str
    #: what the generated kind does (a verb phrase), for ``--help`` and the README
    summary: str
    #: distributions needed besides turnout itself
    requires: tuple[str, ...] = ()


KINDS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec(
            "namer",
            "namer",
            "turnout_register_namers",
            "namer",
            "Namer",
            "binds every name to a configured set of addresses",
        ),
        KindSpec(
            "identifier",
            "http identifier",
            "turnout_register_identifiers",
            "identifier",
            "Identifier",
            "names HTTP requests by a header's first label (Host: web.example.com → /svc/web)",
            requires=("turnout-protocol-http",),
        ),
        KindSpec(
            "telemeter",
            "telemeter",
            "turnout_register_telemeters",
            "telemeter",
            "Telemeter",
            "counts sampled spans and serves the counts on the admin server",
        ),
        KindSpec(
            "load-balancer",
            "load balancer",
            "turnout_register_load_balancers",
            "balancer",
            "Balancer",
            "fills endpoints in address order, spilling to the next one when busy",
        ),
        KindSpec(
            "failure-accrual",
            "failure accrual",
            "turnout_register_failure_accrual",
            "accrual",
            "Accrual",
            "ejects endpoints whose failures outrun their successes",
        ),
    )
}


@dataclass(frozen=True)
class PluginNames:
    """Every name of a generated plugin, derived from its family and kind."""

    spec: KindSpec
    kind: str
    #: directory and distribution name: ``turnout-namer-com-example-demo``
    distribution: str
    #: import package: ``turnout_namer_com_example_demo``
    package: str
    #: entry-point name in the ``turnout`` group: ``namer-com-example-demo``
    entry_point: str
    #: class-name stem from the last label of the kind: ``Demo``
    stem: str

    @property
    def config_class(self) -> str:
        return f"{self.stem}{self.spec.suffix}Config"

    @property
    def runtime_class(self) -> str:
        return f"{self.stem}{self.spec.suffix}"

    @property
    def test_file(self) -> str:
        return f"tests/test_{self.package.removeprefix('turnout_')}.py"


def check_kind_name(kind: str) -> str:
    """``kind`` when it is a dotted kind a plugin may use; :class:`ScaffoldError` otherwise."""
    if not _KIND.fullmatch(kind):
        raise ScaffoldError(
            f"invalid kind {kind!r}: expected a dotted name in a namespace you own, such as "
            "com.example.demo (labels separated by '.', each a letter followed by letters "
            "or digits, at least two labels)"
        )
    if kind.startswith(RESERVED_PREFIX):
        raise ScaffoldError(
            f"invalid kind {kind!r}: {RESERVED_PREFIX}* kinds belong to turnout's own plugins; "
            "choose a namespace you own, such as com.example.demo"
        )
    return kind


def plugin_names(kind_family: str, kind: str) -> PluginNames:
    """The names of a plugin of ``kind_family`` (``namer``...) providing ``kind``."""
    spec = KINDS.get(kind_family)
    if spec is None:
        raise ScaffoldError(
            f"unknown plugin kind {kind_family!r}; supported kinds: {', '.join(KINDS)}"
        )
    check_kind_name(kind)
    labels = kind.split(".")
    words = [w for label in labels for w in _words(label)]
    slug = "-".join(words)
    distribution = f"turnout-{spec.name}-{slug}"
    package = distribution.replace("-", "_")
    assert package.isidentifier(), package
    stem = labels[-1][0].upper() + labels[-1][1:]
    return PluginNames(spec, kind, distribution, package, f"{spec.name}-{slug}", stem)


def _words(label: str) -> list[str]:
    """``myNamer`` → ``["my", "namer"]``; ``HTTPThing`` → ``["http", "thing"]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", label)
    return spaced.lower().split("-")


def render_plugin(names: PluginNames) -> dict[str, str]:
    """The files of the plugin, relative path → text."""
    spec = names.spec
    major, minor = (int(p) for p in __version__.split(".")[:2])
    version_range = f">={major}.{minor},<{major}.{minor + 1}"
    dependencies = [f"turnout{version_range}", *(f"{d}{version_range}" for d in spec.requires)]
    fields = {
        "kind": names.kind,
        "family": spec.family,
        "kind_family": spec.name,
        "distribution": names.distribution,
        "package": names.package,
        "entry_point": names.entry_point,
        "module": spec.module,
        "hook": spec.hook,
        "config_class": names.config_class,
        "runtime_class": names.runtime_class,
        "summary": spec.summary,
        "dependencies": ", ".join(f'"{d}"' for d in dependencies),
        "turnout_version": __version__,
    }
    from importlib.resources import files  # (tempfile, shutil...: only when writing a plugin)

    template = files("turnout").joinpath(TEMPLATES)
    common, own = template.joinpath("common"), template.joinpath(spec.name)
    body = own.joinpath("README.md.tmpl").read_text("utf-8")
    fields["readme_body"] = _fill(body, fields).rstrip("\n") + "\n"
    src = f"src/{names.package}"
    out = {
        "pyproject.toml": common.joinpath("pyproject.toml.tmpl"),
        "README.md": common.joinpath("README.md.tmpl"),
        f"{src}/__init__.py": common.joinpath("__init__.py.tmpl"),
        f"{src}/plugin.py": common.joinpath("plugin.py.tmpl"),
        f"{src}/{spec.module}.py": own.joinpath("module.py.tmpl"),
        "tests/conftest.py": common.joinpath("conftest.py.tmpl"),
        names.test_file: own.joinpath("test.py.tmpl"),
    }
    rendered = {path: _fill(t.read_text("utf-8"), fields) for path, t in out.items()}
    rendered[f"{src}/py.typed"] = ""
    return rendered


def _fill(template: str, fields: dict[str, str]) -> str:
    def field(match: re.Match[str]) -> str:
        return fields[match.group(1)]  # a KeyError here is a bug in a template

    return _PLACEHOLDER.sub(field, template)


def new_plugin(kind_family: str, kind: str, parent: str | Path = ".") -> tuple[Path, PluginNames]:
    """Write the skeleton of a ``kind_family`` plugin providing ``kind`` into a new directory
    under ``parent`` (created if needed); returns that directory and the names used.

    Refuses (:class:`ScaffoldError`) an unknown family, an invalid kind and a directory that
    already exists: nothing is ever overwritten."""
    names = plugin_names(kind_family, kind)
    root = Path(parent) / names.distribution
    rendered = render_plugin(names)
    if root.exists() or root.is_symlink():
        raise ScaffoldError(f"{root} already exists; choose another --dir or remove it first")
    if root.parent.exists() and not root.parent.is_dir():
        raise ScaffoldError(f"{root.parent} is not a directory")
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ScaffoldError(f"cannot create {root.parent}: {e.strerror or e}") from None
    try:
        root.mkdir()
    except FileExistsError:
        raise ScaffoldError(
            f"{root} already exists; choose another --dir or remove it first"
        ) from None
    except OSError as e:
        raise ScaffoldError(f"cannot create {root}: {e.strerror or e}") from None
    for relative, text in rendered.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root, names


def kinds_help() -> str:
    """The supported kinds, one a line, for ``turnout plugin new --help``."""
    width = max(len(k) for k in KINDS)
    return "\n".join(f"  {k:<{width}}  {spec.summary}" for k, spec in KINDS.items())


def summary(root: Path, names: PluginNames) -> str:
    """What ``turnout plugin new`` prints: what was written and what to do next."""
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    lines = [
        f"created {root}/: the {names.spec.family} {names.kind}",
        f"  distribution {names.distribution}, package {names.package}, "
        f"entry point {names.entry_point}",
        *(f"  {path}" for path in written),
        "next:",
        f"  cd {root}",
        "  pip install -e '.[test]'",
        "  pytest                # the generated tests pass as they are",
        f"  turnout plugins       # lists {names.entry_point} with {names.kind}",
        f"then edit src/{names.package}/{names.spec.module}.py, its tests and README.md",
    ]
    return "\n".join(lines)
