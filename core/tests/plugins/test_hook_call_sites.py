"""Every hook of the plugin contract (:mod:`turnout.hookspecs`) is called somewhere in core
(issue 12: ``turnout_register_transformers`` was documented and never acted on).

A call site is, found by an ``ast`` scan of ``core/src/turnout``:

- ``<something>.hook.<name>(...)`` or ``<something>.hook.<name>.<method>(...)`` (pluggy's hook
  caller, e.g. ``pm.hook.turnout_register_global_namers.get_hookimpls()``);
- a key of ``plugin_manager.REGISTRATION_HOOKS``: ``_fill_registry`` calls each of those through
  ``getattr(pm.hook, hook_name).get_hookimpls()`` (checked below as well).
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import turnout
import turnout.hookspecs
from turnout import plugin_manager

SRC = Path(turnout.__file__).resolve().parent
SPEC_ATTR = f"{turnout.hookspecs.PROJECT}_spec"

#: hooks allowed to have no call site yet, each with the reason (keep this empty)
KNOWN_UNCALLED: dict[str, str] = {}


def hookspec_names() -> set[str]:
    return {
        name
        for name, obj in inspect.getmembers(turnout.hookspecs, inspect.isfunction)
        if hasattr(obj, SPEC_ATTR)
    }


def _is_hook(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "hook") or (
        isinstance(node, ast.Name) and node.id == "hook"
    )


def called_hooks() -> dict[str, list[str]]:
    """Hook name -> the places (``file:line``) that call it through ``.hook.<name>``."""
    found: dict[str, list[str]] = {}
    for file in sorted(SRC.rglob("*.py")):
        if file.name == "hookspecs.py":
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_hook(node.value):
                where = f"{file.relative_to(SRC)}:{node.lineno}"
                found.setdefault(node.attr, []).append(where)
    return found


def test_registration_hooks_are_called_by_fill_registry() -> None:
    source = inspect.getsource(plugin_manager._fill_registry)
    assert "for hook_name, base in REGISTRATION_HOOKS.items()" in source
    assert "getattr(pm.hook, hook_name).get_hookimpls()" in source


def test_every_hookspec_has_a_call_site_in_core() -> None:
    called = set(called_hooks()) | set(plugin_manager.REGISTRATION_HOOKS)
    uncalled = sorted(hookspec_names() - called - set(KNOWN_UNCALLED))
    assert not uncalled, (
        f"hooks defined in turnout.hookspecs but never called by core: {', '.join(uncalled)}. "
        "Call them (pm.hook.<name>(...)) or list them in REGISTRATION_HOOKS"
    )


def test_known_uncalled_hooks_are_still_uncalled() -> None:
    called = set(called_hooks()) | set(plugin_manager.REGISTRATION_HOOKS)
    assert not (set(KNOWN_UNCALLED) & called), "remove these from KNOWN_UNCALLED"


def test_the_scan_finds_the_lifecycle_hooks() -> None:
    called = called_hooks()
    for name in ("turnout_configure", "turnout_startup", "turnout_shutdown"):
        assert name in called, name
    assert "turnout_register_global_namers" in called


def test_registration_hooks_are_all_hookspecs() -> None:
    assert set(plugin_manager.REGISTRATION_HOOKS) <= hookspec_names()
