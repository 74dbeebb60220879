"""Plugins use turnout only through its public API, and core uses its built-in kinds only
through the registry.

The plugin rule: the runtime code of every plugin and example distribution of this repository
(each ``plugins/*/src``, ``plugins-contrib/*/src`` and ``examples/*/src`` tree) imports from
turnout only

- ``turnout.api`` (any name of its ``__all__``),
- ``turnout`` itself, for the names of ``turnout.api.__all__`` (``turnout.hookimpl``,
  ``from turnout import Path``),
- and, in test support modules only (a module named ``testing`` or inside a ``testing``
  package, such as ``turnout_namer_zk.testing``: the doubles a plugin ships for its users'
  tests), the test kit ``turnout.testing``.

The check is an ``ast`` walk over the source files rather than import-linter (or grimp, which
it is built on): those analyse *installed, importable* packages, so a plugin in
``plugins-contrib/`` that is not installed in the environment would silently escape the rule;
their contracts are written per package, while here one rule covers every distribution that
appears; the test-support exception is a rule about module names, not about packages; and the
walk also sees imports inside functions and ``if TYPE_CHECKING:`` blocks and attribute use such
as ``turnout.config.NamerConfig`` after ``import turnout``. It needs nothing installed and
reports the file and line of each offending import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import turnout.api

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "core" / "src" / "turnout"

#: Distributions whose runtime code still imports turnout's internals. Each entry says who
#: removes it and when; the test fails once such a distribution is clean, so that the entry
#: is removed then, not forgotten.
PENDING: set[str] = set()

#: Core modules that still import a built-in kind's module (turnout.builtin.*) instead of
#: looking the kind up in the registry; same rule as PENDING.
PENDING_CORE: set[str] = set()

PUBLIC = frozenset(turnout.api.__all__)


@dataclass(frozen=True)
class Violation:
    file: Path
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.file.relative_to(ROOT)}:{self.line}: {self.what}"


def source_trees() -> list[Path]:
    return sorted(
        [
            *ROOT.glob("plugins/*/src"),
            *ROOT.glob("plugins-contrib/*/src"),
            *ROOT.glob("examples/*/src"),
        ]
    )


def distribution_of(tree: Path) -> str:
    return tree.parent.name


def is_test_support(tree: Path, file: Path) -> bool:
    """A module named ``testing`` or inside a ``testing`` package."""
    return "testing" in file.relative_to(tree).with_suffix("").parts


def _allowed_module(module: str, test_support: bool) -> bool:
    if module == "turnout.api":
        return True
    return test_support and (module == "turnout.testing" or module.startswith("turnout.testing."))


def violations(tree: Path, file: Path) -> Iterator[Violation]:
    """The imports of turnout in ``file`` that the plugin rule forbids."""
    test_support = is_test_support(tree, file)
    module = ast.parse(file.read_text(encoding="utf-8"), str(file))
    binds_turnout = False  # "import turnout": then turnout.<name> is checked
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                if name == "turnout":
                    binds_turnout = binds_turnout or alias.asname is None
                elif name.startswith("turnout.") and not _allowed_module(name, test_support):
                    yield Violation(file, node.lineno, f"import {name}")
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mod = node.module
            if mod == "turnout":
                for alias in node.names:
                    full = f"turnout.{alias.name}"
                    if alias.name not in PUBLIC and not _allowed_module(full, test_support):
                        yield Violation(file, node.lineno, f"from turnout import {alias.name}")
            elif mod == "turnout.api":
                for alias in node.names:
                    if alias.name not in PUBLIC:
                        yield Violation(file, node.lineno, f"turnout.api has no {alias.name}")
            elif mod.startswith("turnout.") and not _allowed_module(mod, test_support):
                names = ", ".join(a.name for a in node.names)
                yield Violation(file, node.lineno, f"from {mod} import {names}")
    if binds_turnout:
        for node in ast.walk(module):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "turnout"
                and node.attr not in PUBLIC
                and node.attr not in ("__version__", "api")
                and not (test_support and node.attr == "testing")
            ):
                yield Violation(file, node.lineno, f"turnout.{node.attr}")


def distribution_violations() -> dict[str, list[Violation]]:
    out: dict[str, list[Violation]] = {}
    for tree in source_trees():
        found = out.setdefault(distribution_of(tree), [])
        for file in sorted(tree.rglob("*.py")):
            found.extend(violations(tree, file))
    return out


def test_every_source_tree_is_found() -> None:
    found = {distribution_of(t) for t in source_trees()}
    assert {"turnout-namer-consul", "turnout-telemeter-prometheus"} <= found
    assert "turnout-example-plugin" in found


def test_plugins_import_only_the_public_api() -> None:
    found = distribution_violations()
    problems = [str(v) for dist, vs in sorted(found.items()) if dist not in PENDING for v in vs]
    assert not problems, (
        "plugin runtime code imports turnout internals; import these names from turnout.api "
        "(add a name to turnout.api.__all__ if plugins really need it):\n  " + "\n  ".join(problems)
    )


def test_pending_distributions_are_still_pending() -> None:
    found = distribution_violations()
    for dist in sorted(PENDING):
        assert found.get(dist), f"{dist} imports only turnout.api now: remove it from PENDING"


def test_the_walk_sees_what_it_must(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    (tree / "pkg" / "testing").mkdir(parents=True)
    (tree / "pkg" / "mod.py").write_text(
        "import turnout\n"
        "import turnout.naming\n"
        "from turnout import Path, hookimpl, config\n"
        "from turnout.api import Namer\n"
        "from turnout.linker import BuildContext\n"
        "from turnout.testing import free_port\n"
        "from . import sibling\n"
        "def f():\n"
        "    from turnout.metrics import Counter\n"
        "    return turnout.config.NamerConfig, turnout.hookimpl\n"
    )
    (tree / "pkg" / "testing" / "double.py").write_text(
        "from turnout.testing.net import free_port\nfrom turnout.naming import Path\n"
    )
    found = [v.what for v in violations(tree, tree / "pkg" / "mod.py")]
    assert sorted(found) == sorted(
        [
            "import turnout.naming",
            "from turnout import config",
            "from turnout.linker import BuildContext",
            "from turnout.testing import free_port",
            "from turnout.metrics import Counter",
            "turnout.config",
        ]
    )
    found = [v.what for v in violations(tree, tree / "pkg" / "testing" / "double.py")]
    assert found == ["from turnout.naming import Path"]


# -- core: built-in kinds through the registry ----------------------------------------------


def builtin_imports(file: Path) -> Iterator[Violation]:
    """Imports of ``turnout.builtin`` (absolute or relative) in a core module."""
    rel = file.relative_to(CORE.parent)
    package = list(rel.with_suffix("").parts[:-1])
    if rel.name == "__init__.py":
        package = list(rel.parts[:-1])
    for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join([*base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for target in targets:
            if target == "turnout.builtin" or target.startswith("turnout.builtin."):
                yield Violation(file, node.lineno, f"imports {target}")
                break


def test_core_uses_built_in_kinds_only_through_the_registry() -> None:
    """Built-in kinds are plugins like any other: registered by their modules (listed by
    name in ``turnout.plugin_manager.BUILTIN_PLUGINS``) and looked up in the registry."""
    problems = []
    for file in sorted(CORE.rglob("*.py")):
        rel = str(file.relative_to(CORE.parent))
        if rel.startswith("turnout/builtin/"):
            continue
        found = list(builtin_imports(file))
        if rel in PENDING_CORE:
            assert found, f"{rel} no longer imports turnout.builtin: remove it from PENDING_CORE"
            continue
        problems += [str(v) for v in found]
    assert not problems, "\n".join(problems)


def test_importing_turnout_does_not_import_the_api() -> None:
    """``import turnout`` (what a plugin module does first) stays cheap: the public API
    module, which imports most of turnout, is imported when one of its names is used."""
    code = (
        "import sys, turnout\n"
        "assert turnout.hookimpl is not None\n"
        "assert 'turnout.config' not in sys.modules, sorted(sys.modules)\n"
        "from turnout import testing\n"
        "assert 'turnout.api' not in sys.modules, sorted(sys.modules)\n"
        "turnout.Path\n"
        "assert 'turnout.api' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
